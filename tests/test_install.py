"""The five ways to have prisme_lite (a checkout, a wheel, `pip install --user`, `pip install --target DIR`, an
editable install) each start a real server that stores a pixel and serves its static/ files (issue 19).

Everything is built from a copy of the repository whose tracker and login form carry a mark, so a served file can
only have come from the layout under test, never from the copy the test run itself imports. Nothing is fetched:
pip installs with --no-index --no-deps, and the dependencies come from this test run's own environment, seen
through a directory of links that leaves prisme_lite out.
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CHROME

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[1]
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)  # the interpreter this run's venv was made from
MARK = {"wa.js": "\n/* built by test_install */\n", "login.html": "<!-- built by test_install -->\n"}


def pip(*args, env=None):
    """This run's pip, offline."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args, "--no-index", "--no-deps"],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A marked copy of the repository, a view of this run's dependencies without prisme_lite, and a wheel."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in ("prisme_lite.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "static", source / "static", ignore=shutil.ignore_patterns("__pycache__"))
    for name, mark in MARK.items():
        with open(source / "static" / name, "a") as file:
            file.write(mark)
    deps = root / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("prisme_lite", "__editable__")):
            (deps / entry.name).symlink_to(entry)
    pip("wheel", "--no-build-isolation", "--wheel-dir", str(root / "wheel"), str(source))
    return {"root": root, "source": source, "deps": deps, "wheel": next((root / "wheel").glob("*.whl"))}


def venv(work, name):
    """A new venv of its own whose only other packages are the dependencies (a .pth line to the view)."""
    path = work["root"] / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    python = path / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "dependencies.pth").write_text(f"{work['deps']}\n")
    return path, python


@dataclass
class Layout:
    """How to start one layout's server, and where its module and its static/ files are."""

    argv: list
    static: Path
    env: dict | None = None
    cwd: Path | None = None
    python: Path | str | None = None  # the interpreter that runs it, to ask where it imports prisme_lite from
    module_in: Path | None = None


def checkout(work):
    """The repository itself, not installed: `python prisme_lite.py serve` from its parent directory."""
    env = {**os.environ, "PYTHONPATH": str(work["deps"])}
    return Layout([BASE_PYTHON, "-s", str(REPO / "prisme_lite.py")], REPO / "static", env, cwd=REPO.parent)


def wheel(work):
    """The wheel, installed by pip into a venv; its `prisme-lite` command."""
    path, python = venv(work, "wheel-venv")
    pip("--python", str(python), "install", str(work["wheel"]))
    return Layout([str(path / "bin" / "prisme-lite")], work["source"] / "static", python=python, module_in=path)


def user(work):
    """The wheel installed with `pip install --user` by the base interpreter, into a PYTHONUSERBASE of its own."""
    base = work["root"] / "user"
    env = {**os.environ, "PYTHONUSERBASE": str(base), "PYTHONPATH": str(work["deps"])}
    pip("--python", BASE_PYTHON, "install", "--user", str(work["wheel"]), env=env)
    argv = [BASE_PYTHON, str(base / "bin" / "prisme-lite")]
    return Layout(argv, work["source"] / "static", env, python=BASE_PYTHON, module_in=base)


def target(work):
    """`pip install --target DIR` from the source, run as `PYTHONPATH=DIR DIR/bin/prisme-lite serve`."""
    into = work["root"] / "target"
    pip("install", "--no-build-isolation", "--target", str(into), str(work["source"]))
    env = {**os.environ, "PYTHONPATH": str(into)}
    return Layout(
        [str(into / "bin" / "prisme-lite")], work["source"] / "static", env, python=sys.executable, module_in=into
    )


def editable(work):
    """`pip install -e` of the source into a venv of its own; its `prisme-lite` command."""
    path, python = venv(work, "editable-venv")
    pip("--python", str(python), "install", "--no-build-isolation", "-e", str(work["source"]))
    static = work["source"] / "static"
    return Layout([str(path / "bin" / "prisme-lite")], static, python=python, module_in=work["source"])


def module_file(layout, cwd):
    """Where the layout's interpreter imports prisme_lite from (`-c` puts cwd first on the path: not the repo)."""
    found = subprocess.run(
        [layout.python, "-c", "import prisme_lite; print(prisme_lite.__file__)"], capture_output=True, text=True,
        env=layout.env, cwd=cwd,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    return Path(found.stdout.strip())


def get(conn, path, headers=None):
    conn.request("GET", path, headers=headers or {})
    answer = conn.getresponse()
    return answer.status, answer.getheader("Content-Type"), answer.read()


@pytest.mark.parametrize("layout", [checkout, wheel, user, target, editable], ids=lambda layout: layout.__name__)
def test_each_install_layout_serves_its_files_and_stores_a_pixel(work, run, tmp_path, layout):
    layout = layout(work)
    if layout.python:  # the module comes from where this layout put it
        assert module_file(layout, work["root"]).is_relative_to(layout.module_in)
    process = run(argv=layout.argv, env=layout.env, cwd=layout.cwd)
    conn = process.connection()
    static = layout.static
    status, content_type, body = get(conn, "/static/wa.js")
    assert (status, content_type, body) == (
        200,
        "application/javascript; charset=utf-8",
        (static / "wa.js").read_bytes(),
    )
    assert body.endswith(MARK["wa.js"].encode()) == (static != REPO / "static")
    assert get(conn, "/static/dashboard.css")[2] == (static / "dashboard.css").read_bytes()
    page = (
        (static / "page.html")
        .read_text()
        .format(title="prisme-lite: log in", body=(static / "login.html").read_text().format(error=""))
    )
    assert get(conn, "/dashboard") == (200, "text/html; charset=utf-8", page.encode())
    pixel = get(
        conn, "/api/v1/noscript/events/pageviews", {"Referer": "http://localhost/installed", "User-Agent": CHROME}
    )
    assert pixel[0] == 200
    assert process.stop() == 0
    with sqlite3.connect(tmp_path / "prisme.db") as db:  # schema.sql was found: the table exists
        assert [row[0] for row in db.execute("SELECT path FROM events")] == ["/installed"]
