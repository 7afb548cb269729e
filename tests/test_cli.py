"""The command line (SPEC §1): what each command prints, its exit code, and what it leaves on disk."""

import os
import subprocess

import pytest
from conftest import cli, command

NOT_CREATING = [
    ["admin-token"], ["admin-token", "--rotate"], ["origins", "list"], ["origins", "add", "blog.example.com"],
    ["origins", "remove", "blog.example.com"], ["tokens", "create", "--scope", "admin"], ["tokens", "list"],
    ["tokens", "revoke", "tk_x"], ["counters", "list"], ["counters", "show", "likes", "intro"], ["stats"],
    ["export"], ["prune", "--older-than", "7"], ["backup", "copy.db"], ["check"],
]  # fmt: skip


@pytest.mark.parametrize("args", NOT_CREATING, ids=" ".join)
def test_only_serve_and_init_create_a_database(tmp_path, args):
    typo = tmp_path / "typo.db"
    result = cli(*[str(tmp_path / arg) if arg == "copy.db" else arg for arg in args], db=typo)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"prisme-lite: {args[0]}: no database at {typo}; point --db (or PRISME_DB) at the server's database,"
        f" or create one with `prisme-lite init --db {typo}`\n"
    )
    assert os.listdir(tmp_path) == []  # no database, no WAL, no journal, no backup


def test_a_command_run_from_another_directory_names_the_database_it_looked_for(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PRISME_")}
    result = subprocess.run(
        [*command(), "admin-token"], cwd=elsewhere, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"prisme-lite: admin-token: no database at {elsewhere / 'prisme.db'}; ")
    assert os.listdir(elsewhere) == []
    assert cli("init", db=elsewhere / "prisme.db").returncode == 0  # init does create it, and then the rest works
    assert cli("admin-token", db=elsewhere / "prisme.db").stdout.startswith("pla_")


def test_a_backup_into_a_missing_directory_says_so(tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    result = cli("backup", str(tmp_path / "nowhere" / "copy.db"), db=db)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"prisme-lite: backup: directory {tmp_path / 'nowhere'} does not exist; create it, or choose a FILE in another\n"
    )
    assert not (tmp_path / "nowhere").exists()


def test_removing_an_origin_of_the_settings_says_where_it_comes_from(tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    where = "origins = [...] in the config file, PRISME_ORIGINS or serve --origins"
    default = cli("origins", "remove", "localhost", db=db)
    assert (default.returncode, default.stdout) == (1, "")
    assert default.stderr == (
        "localhost is a built-in default origin, not one added with `origins add`; to stop accepting it, start the"
        f" server with the origins setting listing the hosts you want ({where}; empty for none)\n"
    )
    configured = cli("origins", "remove", "blog.example.com", "--origins", "blog.example.com", db=db)
    assert (configured.returncode, configured.stderr) == (
        1,
        f"blog.example.com comes from the origins setting, not `origins add`; take it out ({where}) and restart"
        " the server\n",
    )
