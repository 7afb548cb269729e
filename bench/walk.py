"""How far a reader walks through prisme_lite.py to follow one request (issue 19).

Runs requests in process through `make_app` (a fresh database in a temporary directory) and records, with
sys.setprofile, every call of a function defined in prisme_lite.py: the request thread's from the WSGI entry to its
answer, then the writer thread's until it has committed what the request appended (down to the SQLite row). For
each walk it prints the stops (function and the line it starts on, with its section), the number of section changes,
how many of those go back up the file, and the lines travelled between consecutive stops against the file's length.

    python bench/walk.py                      # this checkout's prisme_lite.py
    python bench/walk.py --root /work/main    # another checkout's
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
BANNER = re.compile(r"^# (.+?) #{3,}$")


def sections(path: str) -> list[tuple[int, str]]:
    """(first line, name) of each `# Name ####` banner of the file, in file order."""
    with open(path, encoding="utf-8") as file:
        return [(n, m[1]) for n, line in enumerate(file, 1) if (m := BANNER.match(line.rstrip("\n")))]


def section_of(banners: list[tuple[int, str]], line: int) -> tuple[int, str]:
    found = (0, "(module top)")
    for banner in banners:
        if banner[0] > line:
            break
        found = banner
    return found


class Recorder:
    """A profile hook for every thread: calls of prisme_lite.py's functions, per thread, while recording."""

    def __init__(self, module_file: str):
        self.file = module_file
        self.recording = False
        self.stops: dict[str, list[tuple[str, int]]] = {}
        self.writer_done = threading.Event()
        self.folded = False
        self.lock = threading.Lock()

    def stop_of(self, frame) -> tuple[str, int] | None:
        code = frame.f_code
        if code.co_filename != self.file or code.co_name.startswith("<"):  # lambdas, generator expressions
            return None
        return getattr(code, "co_qualname", code.co_name), code.co_firstlineno

    def hook(self, frame, event, _arg) -> None:
        if not self.recording or event not in ("call", "return"):
            return
        thread = threading.current_thread().name
        if thread not in ("MainThread", "prisme-writer") or (thread == "prisme-writer" and self.writer_done.is_set()):
            return
        stop = self.stop_of(frame)
        if stop is None:
            return
        with self.lock:
            if event == "return":
                if thread == "prisme-writer" and stop[0] == "Writer._commit" and self.folded:
                    self.writer_done.set()  # the transaction that stored the request's rows is committed
                return
            walk = self.stops.get(thread)
            if walk is None:  # the first call seen on this thread: the frames it runs inside come first
                walk = self.stops[thread] = []
                outer, above = [], frame.f_back
                while above is not None:
                    if (found := self.stop_of(above)) is not None:
                        outer.append(found)
                    above = above.f_back
                walk.extend(reversed(outer))
            if stop[0] == "Writer._apply":
                self.folded = True
            if not walk or walk[-1] != stop:  # a function called again at once (a loop) is one stop
                walk.append(stop)


def trace(recorder: Recorder, app, environ: dict, writes: bool) -> list[tuple[str, int]]:
    """One request's stops: the request thread's, then (when it `writes`) the writer thread's fold of it."""
    recorder.stops, recorder.folded = {}, False
    recorder.writer_done.clear()
    app.app.ctx.origins.reload()  # a steady state's request: the origins are reloaded once a second, not each time
    answer: list = []
    recorder.recording = True
    try:
        body = app(environ, lambda status, headers, exc_info=None: answer.append(status))
        b"".join(body)
        main_walk = recorder.stops.get("MainThread", [])
        recorder.stops["MainThread"] = list(main_walk)  # the flush below is the bench's, not the request's
        if writes and not recorder.writer_done.wait(10):
            raise SystemExit("the writer did not fold the request's event within 10 s")
    finally:
        recorder.recording = False
    assert answer and answer[0][:3] in ("200", "204"), answer
    return main_walk + recorder.stops.get("prisme-writer", [])


def report(title: str, walk: list[tuple[str, int]], banners: list[tuple[int, str]], length: int) -> None:
    print(f"\n{title}: {len(walk)} stops")
    changes = up = travelled = 0
    previous: tuple[str, int] | None = None
    for n, (name, line) in enumerate(walk, 1):
        section = section_of(banners, line)
        mark = ""
        if previous is not None:
            travelled += abs(line - previous[1])
            before = section_of(banners, previous[1])
            if section != before:
                changes += 1
                up += section[0] < before[0]
                mark = "  ↑" if section[0] < before[0] else "  ↓"
        print(f"  {n:3d}  {name:<40} {line:5d}  {section[1]}{mark}")
        previous = (name, line)
    print(
        f"  {changes} section changes, {up} of them back up the file; "
        f"{travelled:,} lines travelled / {length:,} lines = {travelled / length:.1f} × the file"
    )


def environ_for(path: str, query: str = "", **headers: str) -> dict:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
        "wsgi.url_scheme": "http",
        "wsgi.input": sys.stdin.buffer,
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    environ.update({"HTTP_" + name.upper(): value for name, value in headers.items()})
    return environ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--root", default=here, help="the checkout whose prisme_lite.py to walk (default: this one)")
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.root))
    import prisme_lite

    module_file = prisme_lite.__file__
    with open(module_file, encoding="utf-8") as file:
        length = sum(1 for _line in file)
    banners = sections(module_file)
    recorder = Recorder(module_file)
    threading.setprofile(recorder.hook)  # the writer thread, started by make_app, runs with the hook
    sys.setprofile(recorder.hook)
    with tempfile.TemporaryDirectory() as directory:
        config = prisme_lite.load_config({"db": os.path.join(directory, "prisme.db"), "access_log": "false"}, {})
        app = prisme_lite.RequestLog(prisme_lite.make_app(config), access_log=None)
        ctx = app.app.ctx
        token = ctx.admin_token()
        pixel = "/api/v1/noscript/events/pageviews"
        stats = ("/api/v1/stats/overview", "from=now-29d/d")
        bearer = {"AUTHORIZATION": f"Bearer {token}"}
        # Warm-up: the day's salt, the origins, the reader's connection; the traced requests are a steady state's,
        # with a page and a browser not seen before (their parses are not cached).
        trace(recorder, app, environ_for(pixel, REFERER="http://localhost/warm", USER_AGENT=CHROME), writes=True)
        trace(recorder, app, environ_for(*stats, **bearer), writes=False)
        ctx.writer.flush()
        time.sleep(0.1)
        walks = [
            (
                "noscript pixel: GET /api/v1/noscript/events/pageviews, Referer http://localhost/…, to its rows",
                trace(recorder, app, environ_for(pixel, REFERER="http://localhost/pricing", USER_AGENT=FIREFOX), True),
            ),
            (
                "dashboard stats: GET /api/v1/stats/overview?from=now-29d/d with the admin token",
                trace(recorder, app, environ_for(*stats, **bearer), writes=False),
            ),
        ]
        stored = ctx.read().execute("SELECT count(*) FROM events WHERE path = '/pricing'").fetchone()[0]
        threading.setprofile(None)
        sys.setprofile(None)
        ctx.close()
    assert stored == 1, "the traced pixel's row is not in the database"
    print(f"{module_file}: {length:,} lines, {len(banners)} sections")
    for title, walk in walks:
        report(title, walk, banners, length)
    return 0


if __name__ == "__main__":
    sys.exit(main())
