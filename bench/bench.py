"""prisme-lite benchmark (bench/run): the ingest routes of `prisme-lite serve` against the machine's ceiling.

In one run, from wrk (Debian's package; Lua scripts for headers and bodies) on loopback, on this machine:
- the ceiling: a bare Bottle route answering the GIF (bench/baseline.py) on bjoern (C), on granian in-process
  (the server `prisme-lite serve` runs) and on waitress (for reference);
- every ingest route of `prisme-lite serve` on a fresh database: requests/s, its ratio to the ceiling and to the
  pixel, p50/p99 latency (the pixel at 16 and at 256 connections), server CPU ms per request (/proc/PID/stat),
  peak resident memory, and rows stored against events acknowledged;
- the dashboard's queries over a 30-day database written through the real storage code, and ingest while a second
  wrk reads the 30-day dashboard from the stats API (ingest against ingest alone, the dashboard's p99 meanwhile);
- the writer's own fold rate (time to drain a journal) on an empty database and on the largest one;
- the pixel with the ClickHouse mirror on (into a clickhouse-server bench starts) against it off, alternating.
Prints a table and SPEC §9's targets as met or GAP, and writes a JSON report.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import prisme_lite  # noqa: E402

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
OVERVIEW = [
    "pageviews", "visitors", "sessions", "bounces", "sessions-duration", "live-visitors", "top-pages",
    "top-entry-pages", "top-exit-pages", "top-referrers", "top-utm-sources", "top-utm-mediums", "top-utm-campaigns",
    "top-countries", "top-operating-systems", "top-browsers",
]  # fmt: skip
PIXEL = "/api/v1/noscript/events/pageviews"
# prisme_lite imported, as the `prisme-lite` command does: run as a script (`python prisme_lite.py`), the interpreter
# keeps the file's syntax tree, some 20 MB, until the script ends (measured: 60 MB idle against 40).
CLI = [sys.executable, "-c", f"import sys; sys.path[:0] = [{ROOT!r}]; import prisme_lite; sys.exit(prisme_lite.main())"]
# The HTTP server `prisme-lite serve` runs: its `server` setting once it has one, else waitress (the former server).
SERVER = prisme_lite.SETTINGS["server"].default if "server" in prisme_lite.SETTINGS else "waitress"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process on 127.0.0.1:`port`: started, its first `banner` lines read, and answering connections."""

    def __init__(self, argv: list[str], port: int, banner: int):
        self.port, self.warm = port, False  # warm: loaded once already (caches filled, threads started)
        self.idle = False  # known to have folded everything it acknowledged (nothing sent since)
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True
        )
        self.pid = self.process.pid
        self.banner = [self.process.stdout.readline() for _ in range(banner)]
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"bench: {argv[1:3]} did not start: {''.join(self.banner)}") from None
                time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, then its exit code (a server finishes its requests and folds its journal first)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


def start_server(db: str, *flags: str) -> Server:
    """`prisme-lite serve` on `db` and a free port, without an access log; its banner holds the admin token."""
    port = free_port()
    argv = [*CLI, "serve", "--db", db, "--port", str(port), "--access-log", "false", *flags]
    return Server(argv, port, banner=5)


def start_baseline(server: str) -> Server:
    """The bare Bottle GIF route (bench/baseline.py) on `server`: bjoern, granian or waitress."""
    port = free_port()
    return Server([sys.executable, os.path.join(ROOT, "bench", "baseline.py"), server, str(port)], port, banner=1)


def lua_script(path: str, method: str, headers: dict, bodies: list[str] | None = None,
               paths: list[str] | None = None, page_header: str | None = None) -> str:  # fmt: skip
    """A wrk script: fixed method and headers; bodies, and paths, taken in turn (one per request). The page URL in
    `page_header` gets a new path each request: the same page again in a visit is a reload, which stores nothing."""
    lines = [f'wrk.method = "{method}"'] + [
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()
    ]
    if page_header:
        lines.append(f"local page, n = {json.dumps(headers[page_header])}, 0")
        lines.append(
            "local at = page:find('?', 1, true)\n"
            f"request = function() n = n + 1; wrk.headers[{json.dumps(page_header)}] ="
            " at and (page:sub(1, at - 1) .. '/' .. n .. page:sub(at)) or (page .. '/' .. n); return wrk.format() end"
        )
    elif bodies or paths:
        lines.append("local bodies = {" + ",".join(json.dumps(body) for body in bodies or [""]) + "}")
        lines.append("local paths = {" + ",".join(json.dumps(p) for p in paths or []) + "}")
        lines.append("local n = 0")
        lines.append(
            "request = function() n = n + 1; local body = bodies[n % #bodies + 1]; if body == '' then body = nil end;"
            " return wrk.format(nil, #paths > 0 and paths[n % #paths + 1] or nil, nil, body) end"
        )
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")
    return path


def wrk(url: str, script: str, seconds: int, connections: int) -> dict:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip

    def latency(percent: str) -> float:
        number, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE).groups()
        return round(float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit], 2)

    requests = int(re.search(r"(\d+) requests in", output).group(1))
    non_2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", output) or [0, 0])[1])
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "requests": requests,
        "non_2xx": non_2xx,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "connections": connections,
    }


def resident_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory now: all of it (VmRSS), or its heap and stacks alone (RssAnon)."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(rf"{field}:\s+(\d+)", status.read()).group(1)) * 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process (all its threads) has used so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14 and 15)


class MemoryWatch:
    """The highest resident size of a process, sampled every 0.2 s while it runs."""

    def __init__(self, pid: int):
        self.pid, self.highest, self.running = pid, 0, True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while self.running:
            try:
                self.highest = max(self.highest, resident_bytes(self.pid))
            except (OSError, AttributeError):
                return
            time.sleep(0.2)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return self.highest


def measure(
    server: Server,
    path: str,
    script: str,
    seconds: int,
    connections: int,
    db: str | None = None,
    sql: str | None = None,
    per_request: int = 1,
    alongside: Callable[[], None] | None = None,
    stores_each: bool = True,
) -> dict:
    """One wrk load of `server` at `path`: wrk's figures, the server's CPU ms per request and peak resident memory;
    with `db` and `sql`, also the rows stored meanwhile (counted once the writer has folded everything) against
    the events acknowledged (2xx answers × `per_request`). Stored may exceed acknowledged by the requests in
    flight when wrk stopped; "lost" must be 0. `alongside` is called as the load starts (a second load).
    `stores_each`: every acknowledged request stores its rows (not so for counter increments that repeat)."""
    url = f"http://127.0.0.1:{server.port}{path}"
    if not server.warm:  # a first second of load, not measured: every server starts cold
        wrk(url, script, 1, connections)
        server.warm, server.idle = True, False
    before = (count(db, sql) if server.idle else settled(db, sql)) if sql else 0
    cpu, memory = cpu_seconds(server.pid), MemoryWatch(server.pid)
    if alongside:
        alongside()
    result = wrk(url, script, seconds, connections)
    server.idle = bool(sql)  # once the count below has settled
    if sql:
        result["acknowledged"] = (result["requests"] - result["non_2xx"]) * per_request
        # the CPU below includes the writer's folding of them
        result["stored"] = settled(db, sql, before + result["acknowledged"] if stores_each else None) - before
        result["lost"] = max(0, result["acknowledged"] - result["stored"])
    result["cpu_ms_per_request"] = round((cpu_seconds(server.pid) - cpu) * 1000 / max(1, result["requests"]), 3)
    result["peak_rss_mb"] = round(memory.stop() / 2**20, 1)
    return result


def create_tokens(db: str) -> dict[str, str]:
    """Access tokens for server events and for reading stats, and a public one for widgets, made with the CLI."""
    subprocess.run([*CLI, "init", "--db", db], capture_output=True, check=True)  # only serve and init create it
    return {
        scope: subprocess.run(
            [*CLI, "tokens", "create", "--scope", scope, "--db", db], capture_output=True, text=True, check=True
        ).stdout.strip()
        for scope in ("capture_publish", "track_public", "stats_read")
    }  # fmt: skip


def count(db: str, sql: str) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchone()[0] or 0


def settled(db: str, sql: str, expected: int | None = None) -> int:
    """The count once the writer has folded everything: unchanged for a second, or, short of `expected`, for ten
    (a WAL checkpoint on a crowded machine can hold the writer longer than a second: that is no loss)."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < (1.0 if expected is None or last >= expected else 10.0):
        now = count(db, sql)
        if now != last:
            last, since = now, time.monotonic()
        time.sleep(0.1)
    return last


def http_json(port: int, method: str, path: str, body: dict | None = None, **headers: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        method, path, json.dumps(body) if body is not None else None, {"Content-Type": "application/json", **headers}
    )
    return json.loads(conn.getresponse().read() or b"null")


def run_ceiling(args: argparse.Namespace, work: str) -> list[dict]:
    """The bare Bottle GIF route on bjoern (the ceiling), granian and waitress; a server that cannot be imported
    is reported as missing."""
    script = lua_script(os.path.join(work, "baseline.lua"), "GET", {"User-Agent": UA, "Referer": "http://localhost/"})
    results = []
    for name in ("bjoern", "granian", "waitress"):
        try:
            __import__(name)
        except ImportError:
            results.append(
                {"name": name, "missing": f"pip install {name}" + (" (needs libev-dev)" * (name == "bjoern"))}
            )
            continue
        server = start_baseline(name)
        results.append({"name": name, **measure(server, PIXEL, script, args.seconds, args.connections)})
        server.stop()
        print(f"  {name}: {results[-1]['requests_per_s']:.0f} req/s", file=sys.stderr)
    return results


def fold_events(events: int, now: int, shape: str = "visits", seed: int = 2) -> list[dict]:
    """Pageviews as the writer takes them, from `now` on, 2 ms apart. "visits": 2,000 visits open at a time, each
    of 1 to 6 pages (day-salted ids, 3,000 paths, 300 referrers, 40 user agents), so a batch both opens sessions and
    extends earlier ones; "pixel": what bench's pixel load sends, every pageview a new visitor (a given id)."""
    rng = random.Random(seed)
    paths = [f"/post/{n}" for n in range(3000)]
    referrers = ["direct"] * 10 + [f"ref{n}.example" for n in range(300)]
    agents = [
        (browser, system)
        for browser in ("Chrome", "Firefox", "Safari", "Edge", "Mobile Safari")
        for system in ("Linux", "Windows", "Mac OS X", "iOS", "Android", "Chrome OS", "FreeBSD", "Other")
    ]
    countries = ("FR", "US", "DE", "GB", "IN", "BR", "XX")
    open_visits: list[list] = []  # [visitor, pages left, browser, os, country, campaign]
    out = []
    for n in range(events):
        if shape == "pixel":
            out.append(pageview(ts=now + 2 * n, path="/a", referrer="direct", visitor_id=f"v{rng.randrange(10**9)}",
                                browser="Chrome", os="Linux", country="XX"))  # fmt: skip
            continue
        if len(open_visits) < 2000:
            browser, system = rng.choice(agents)
            visit = [f"prisme_{rng.getrandbits(64):016x}", rng.choice((1, 1, 1, 2, 2, 3, 4, 6)), browser, system,
                     rng.choice(countries), rng.random() < 0.1]  # fmt: skip
            open_visits.append(visit)
            first = True
        else:
            visit, first = open_visits[rng.randrange(len(open_visits))], False
        out.append(pageview(
            ts=now + 2 * n, path=rng.choice(paths), referrer=rng.choice(referrers) if first else "direct",
            utm_source="newsletter" if visit[5] else None, utm_medium="email" if visit[5] else None,
            utm_campaign="november" if visit[5] else None, visitor_id=visit[0], browser=visit[2], os=visit[3],
            country=visit[4],
        ))  # fmt: skip
        visit[1] -= 1
        if visit[1] == 0:
            open_visits.remove(visit)
    return out


def fold_rate(db: str, events: int = 100_000, shape: str = "visits", seed: int = 2) -> float:
    """Events a second the writer folds from its journal into `db` (timed_fold)."""
    return timed_fold(db, events, shape, seed)["wall"]


def timed_fold(db: str, events: int = 100_000, shape: str = "visits", seed: int = 2) -> dict:
    """Events a second the writer folds from its journal into `db`, nothing else running: no HTTP, no appends.

    The writer is held inside a transaction while `events` journal lines are appended (as `append` writes them),
    then let go; the time is from then until the last line is committed, in the writer's own batches. "wall" is
    by the clock; "cpu" by this process's CPU time meanwhile (the writer's: the main thread only waits), which
    moves less when other work shares the machine. A database folded into again needs another `seed`: the same
    visitors again would extend the sessions the last fold opened (or be reloads), not open new ones.
    """
    ctx = prisme_lite.Context(prisme_lite.load_config({"db": db, "access_log": "false"}, environ={}))
    lines = fold_events(events, max(prisme_lite.now_ms(), count(db, "SELECT max(ts) FROM events") + 1), shape, seed)
    held, holding = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        holding.set()
        held.wait()

    ctx.writer.jobs.put((hold, (), prisme_lite.Future()))
    holding.wait()
    for event in lines:
        ctx.writer.append("web", event)
    started, cpu = time.monotonic(), time.process_time()
    held.set()
    ctx.writer.flush()
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    ctx.close()
    return {"wall": round(events / seconds), "cpu": round(events / cpu)}


def fold_only(args: argparse.Namespace, work: str) -> dict:
    """The writer's fold rate on an empty database and on one of `--events` pageviews (30 days, generated), each
    shape `--repeat` times, alternating; medians, and the spread (min–max)."""
    big = os.path.join(work, "dashboard.db")
    size = args.events[0] if args.events and args.events[0] else GENERATED
    print(f"generating {size:,} pageviews…", file=sys.stderr)
    generated = round(size / generate(big, size, prisme_lite.now_ms() - 3_600_000))
    runs: dict[str, list[dict]] = {}
    for run in range(args.repeat):
        for shape in ("visits", "pixel"):
            for name in ("empty", f"{size}"):
                db = os.path.join(work, "empty.db") if name == "empty" else big
                if name == "empty":
                    for leftover in [p for p in os.listdir(work) if p.startswith("empty.db")]:
                        os.remove(os.path.join(work, leftover))
                rate = timed_fold(db, args.fold_events, shape, seed=2 + run)
                runs.setdefault(f"{shape} on {name}", []).append(rate)
                print(f"  {shape} on {name}: {rate['wall']:,} events/s, {rate['cpu']:,} per CPU-s", file=sys.stderr)
    return {"generated_events_per_s": generated} | {
        key: {
            f"{clock}_{measure}": round(function(run[clock] for run in done))
            for clock in ("wall", "cpu")
            for measure, function in (("median", statistics.median), ("min", min), ("max", max))
        }
        for key, done in runs.items()
    }


def pixel_script(work: str) -> str:
    """The noscript pixel with a new visitor id on every request (a new session each). Each wrk run seeds its
    random ids from /dev/urandom: unseeded, every run would send the same ids again, which the server stores as
    nothing (a reload of the page a visit is on) and bench counted as lost."""
    script = os.path.join(work, "pixel-new-visitors.lua")
    with open(script, "w") as file:
        file.write(
            "local random = io.open('/dev/urandom', 'rb'); local bytes = random:read(4); random:close()\n"
            "math.randomseed(((bytes:byte(1) * 256 + bytes:byte(2)) * 256 + bytes:byte(3)) * 256 + bytes:byte(4))\n"
            f"wrk.headers['User-Agent'] = {json.dumps(UA)}\nwrk.headers['Referer'] = 'http://localhost/a'\n"
            f"request = function() return wrk.format(nil, '{PIXEL}?visitor-id=v' .."
            " math.random(1, 1000000000)) end\n"
        )
    return script


def remove_database(path: str) -> None:
    """A database and everything beside it (-wal, -shm, journals)."""
    for leftover in glob.glob(glob.escape(path) + "*"):
        os.remove(leftover)


def measure_at_size(args: argparse.Namespace, work: str, db: str) -> dict:
    """Ingest on `db`, then on a fresh database in the same minute: the noscript pixel over HTTP, every request a
    new visitor (best of two, one with --quick), and the writer's fold rate (best of three, alternating: a drain
    takes a second or two, so one hiccup of the shared machine would decide a single one). Does ingest slow down
    as the database grows?"""
    script, sql, empty = pixel_script(work), "SELECT count(*) FROM events", os.path.join(work, "empty.db")
    runs: dict[str, list[dict]] = {"full": [], "empty": []}
    for name, path in [("full", db), ("empty", empty)] * (1 if args.quick else 2):
        remove_database(empty)
        server = start_server(path, "--rate-limit", "0", *args.server_flags)
        runs[name].append(measure(server, "/", script, args.seconds, args.connections, path, sql))
        server.stop()
    folds: dict[str, list[float]] = {"full": [], "empty": []}
    for run, (name, path) in enumerate([("full", db), ("empty", empty)] * 3):
        remove_database(empty)
        folds[name].append(fold_rate(path, args.fold_events, seed=2 + run // 2))  # the same events into both
    remove_database(empty)
    results: dict = {
        name: {"requests_per_s": max(run["requests_per_s"] for run in done), "lost": sum(run["lost"] for run in done),
               "writer_events_per_s": max(folds[name]), "writer_runs": folds[name]}
        for name, done in runs.items()
    }  # fmt: skip
    for measure_name in ("requests_per_s", "writer_events_per_s"):
        results[f"{measure_name}_ratio"] = round(results["full"][measure_name] / results["empty"][measure_name], 3)
    return results


def dashboard_paths() -> list[str]:
    """What the dashboard's page asks the stats API for over 30 days: its cards, as its script asks for them
    (static/dashboard.js), and the panels every family registers."""
    script = prisme_lite.asset("dashboard.js").decode()
    cards = [
        metric
        for metric in dict.fromkeys(re.findall(r'stat\("([a-z-]+)"', script))
        if metric != "custom-event-properties"
    ]
    metrics = cards + [panel[1] for family in prisme_lite.FAMILIES for panel in family.panels]
    if len(metrics) < 10:
        raise SystemExit("bench: cannot read the dashboard's metrics from static/dashboard.js")
    return [f"/api/v1/stats/{metric}?from=now-30d%2Fd&to=now&limit=10" for metric in metrics]


def ingest_with_dashboard(args: argparse.Namespace, work: str, db: str, token: str) -> dict:
    """The pixel (a new visitor each) on `db` alone, then again while a second wrk reads the 30-day dashboard from
    the stats API with `args.dashboard_connections` connections (every request one metric of the page, in turn)."""
    server = start_server(db, "--rate-limit", "0", *args.server_flags)
    pixel, sql = pixel_script(work), "SELECT count(*) FROM events"
    paths = dashboard_paths()
    reader = lua_script(os.path.join(work, "dashboard.lua"), "GET", {"Authorization": f"Bearer {token}"}, paths=paths)
    dashboard: Future = Future()

    def read() -> None:
        try:
            dashboard.set_result(
                wrk(f"http://127.0.0.1:{server.port}/", reader, args.seconds, args.dashboard_connections)
            )
        except Exception as error:  # raised below, in the caller's thread
            dashboard.set_exception(error)

    def start_reading() -> None:
        threading.Thread(target=read, daemon=True).start()

    before = measure(server, "/", pixel, args.seconds, args.connections, db, sql)
    meanwhile = measure(server, "/", pixel, args.seconds, args.connections, db, sql, alongside=start_reading)
    after = measure(server, "/", pixel, args.seconds, args.connections, db, sql)
    server.stop()
    alone = (before["requests_per_s"] + after["requests_per_s"]) / 2
    return {
        "events_in_database": count(db, "SELECT count(*) FROM events"), "dashboard_metrics": len(paths),
        "alone_before": before, "with_dashboard": meanwhile, "alone_after": after,
        "dashboard": dashboard.result(timeout=60), "alone_requests_per_s": round(alone),
        "ratio": round(meanwhile["requests_per_s"] / alone, 3),
    }  # fmt: skip


def run_routes(args: argparse.Namespace, work: str, ceiling: float | None) -> tuple[list[dict], dict]:
    """Every ingest route of `prisme-lite serve` on one fresh database, one after the other."""
    db = os.path.join(work, "ingest.db")
    tokens = create_tokens(db)
    server = start_server(db, "--rate-limit", "0", "--events-rate-limit", "0", *args.server_flags)
    admin = server.banner[2].split(": ", 1)[1].strip()
    registration = {"clientName": "bench", "domainName": "localhost", "emailId": "b@e.ch"}
    client = http_json(server.port, "POST", "/api/v1/register", registration, Authorization=f"Bearer {admin}")
    http_json(server.port, "POST", "/api/v1/configure", {**client, "validPageIds": ["p"], "validActionIds": ["likes"]})
    counter_tokens = [
        http_json(server.port, "GET", "/api/v1/token", None, Origin="http://localhost",
                  **{"User-Agent": f"{UA} n{n}"})["token"]
        for n in range(args.counter_tokens)
    ]  # fmt: skip
    page = {
        "User-Agent": UA,
        "Origin": "http://localhost",
        "X-Prisme-Referrer": "http://localhost/blog/post?utm_source=bench",
    }
    batch = json.dumps(
        [{"label": "View", "content_item": {"id": f"a{n}"}, "customer": {"id": f"c{n}"}} for n in range(10)]
    )
    events = "SELECT count(*) FROM events"
    pixel = (
        "noscript pixel",
        "GET",
        PIXEL,
        {"User-Agent": UA, "Referer": "http://localhost/blog/post"},
        None,
        events,
        1,
    )
    scenarios = [
        # (name, method, path, headers, bodies, rows counted, events per request)
        pixel,
        ("POST pageview", "POST", "/api/v1/events/pageviews", page, None, events, 1),
        ("custom event", "POST", "/api/v1/events/custom/signup", {**page, "Content-Type": "application/json"},
         ['{"plan": "pro"}'], events, 1),
        ("outbound link", "POST", "/api/v1/events/outbound-links", {**page, "Content-Type": "text/plain"},
         ["https://example.org/elsewhere"], events, 1),
        ("file download", "POST", "/api/v1/events/file-downloads", {**page, "Content-Type": "text/plain"},
         ["http://localhost/files/report.pdf"], events, 1),
        ("counter increment", "POST", "/api/v1/likes/p/increment", {"Content-Type": "application/json",
         "User-Agent": UA},
         [json.dumps({"token": token}) for token in counter_tokens], "SELECT coalesce(sum(count), 0) FROM counters", 1),
        ("server events (10/batch)", "POST", "/events", {"Authorization": f"Bearer {tokens['capture_publish']}",
         "Content-Type": "application/json"}, [batch], "SELECT count(*) FROM server_events", 10),
        ("widget render.gif", "GET", f"/track/widget/home/category/1/render.gif?auth_token={tokens['track_public']}"
         "&analytics_id=u1&pics=8", {"User-Agent": UA}, None, "SELECT count(*) FROM widget_events", 1),
    ]  # fmt: skip
    runs = [(scenario, args.connections, ()) for scenario in scenarios] + [(pixel, args.many_connections, ())]
    if "server" in prisme_lite.SETTINGS and SERVER != "waitress":  # the pixel on the fallback server, for reference
        reference = ("--server", "waitress", "--threads", "8", "--pin-cpu", "true")  # its best measured settings
        runs.append(((f"{pixel[0]} (waitress)", *pixel[1:]), args.connections, reference))
    results = []
    for (name, method, path, headers, bodies, sql, per_request), connections, flags in runs:
        if flags:
            server.stop()
            server = start_server(db, "--rate-limit", "0", "--events-rate-limit", "0", *flags)
        page_header = {"noscript pixel": "Referer", "POST pageview": "X-Prisme-Referrer"}.get(name.split(" (")[0])
        script = lua_script(os.path.join(work, "scenario.lua"), method, headers, bodies, page_header=page_header)
        repeats = name == "counter increment"
        result = measure(server, path, script, args.seconds, connections, db, sql, per_request, stores_each=not repeats)
        if repeats:  # each token counts once per 15 minutes: the rest answer the same count
            result["acknowledged"] = min(result["acknowledged"], len(counter_tokens))
            result["lost"] = max(0, result["acknowledged"] - result["stored"])
        result.update(
            name=name, events_per_request=per_request, events_per_s=round(result["requests_per_s"] * per_request)
        )
        results.append(result)
        print(f"  {name} -c{connections}: {result['requests_per_s']:.0f} req/s", file=sys.stderr)
    server.stop()
    base = next(r for r in results if r["name"] == "noscript pixel" and r["connections"] == args.connections)
    for result in results:
        result["ratio_to_ceiling"] = round(result["requests_per_s"] / ceiling, 3) if ceiling else None
        result["events_ratio_to_pixel"] = round(result["events_per_s"] / base["requests_per_s"], 3)
    size = sum(os.path.getsize(path) for path in (db, db + "-wal") if os.path.exists(path))
    stored_events = count(db, "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM server_events)"
                          " + (SELECT count(*) FROM widget_events)")  # fmt: skip
    return results, {
        "peak_resident_mb": max(result["peak_rss_mb"] for result in results),
        "bytes_per_stored_event": round(size / max(1, stored_events)),
    }


def pageview(**fields: object) -> dict:
    """A stored pageview of blog.example.com as the writer takes it: `fields` over the defaults."""
    return {
        "site": "blog.example.com", "kind": "pageview", "name": None, "host": "blog.example.com", "referrer": "direct",
        "utm_source": None, "utm_medium": None, "utm_campaign": None, "utm_term": None, "utm_content": None,
        "device": "desktop", "status": 200, "props": None, **fields,
    }  # fmt: skip


def append_waiting(ctx: prisme_lite.Context, event: dict) -> None:
    """Append to the journal; while the writer is too far behind, wait, as a client would retry."""
    while True:
        try:
            return ctx.writer.append("web", event)
        except prisme_lite.Unavailable:
            time.sleep(0.05)


def generate(db: str, events: int, now: int) -> float:
    """`events` pageviews over 30 days through the real storage code (the journal and the writer), as visits:
    a day-salted visitor reads 1 to 6 pages a minute or two apart; 3,000 paths, 300 referrers, 40 user agents."""
    config = prisme_lite.load_config({"db": db, "access_log": "false"}, environ={})
    ctx = prisme_lite.Context(config)
    rng = random.Random(1)
    paths = [f"/post/{n}" for n in range(3000)]
    referrers = ["direct"] * 10 + [f"ref{n}.example" for n in range(300)]
    browsers = ("Chrome", "Firefox", "Safari", "Edge", "Mobile Safari")
    systems = ("Linux", "Windows", "Mac OS X", "iOS", "Android", "Chrome OS", "FreeBSD", "Other")
    agents = [(browser, system) for browser in browsers for system in systems]
    started = time.monotonic()
    step = 30 * 86_400_000 / events
    n = 0
    while n < events:
        browser, system = rng.choice(agents)
        visitor = f"prisme_{rng.getrandbits(64):016x}"
        referrer, campaign = rng.choice(referrers), rng.random() < 0.1
        country = rng.choice(("FR", "US", "DE", "GB", "IN", "BR", "XX"))
        visit_start = now - 30 * 86_400_000 + n * step
        for page in range(min(rng.choice((1, 1, 1, 2, 2, 3, 4, 6)), events - n)):
            event = pageview(
                ts=int(visit_start + page * rng.randrange(20_000, 180_000)), path=rng.choice(paths),
                referrer=referrer if page == 0 else "direct", utm_source="newsletter" if campaign else None,
                utm_medium="email" if campaign else None, utm_campaign="november" if campaign else None,
                visitor_id=visitor, browser=browser, os=system, country=country,
            )  # fmt: skip
            append_waiting(ctx, event)
            n += 1
    ctx.writer.flush()
    ctx.close()
    return time.monotonic() - started


GENERATED = 1_000_000  # pageviews written through the real storage code; larger databases copy them


def replicate(db: str, copies: int) -> float:
    """Make the database `copies` + 1 times larger: every visit again with a new visitor and new session ids.

    The copies are written with INSERT … SELECT and counted into the daily counts in the same transaction
    (prisme_lite.count_stored_rows); a copied visitor keeps the shape of a day-salted id (its first hex digit
    becomes the copy's number).
    """
    started = time.monotonic()
    conn = sqlite3.connect(db, isolation_level=None)
    events_columns = [row[1] for row in conn.execute("PRAGMA table_info(events)") if row[1] != "id"]
    session_columns = [row[1] for row in conn.execute("PRAGMA table_info(sessions)")]
    last_session = conn.execute("SELECT max(id) FROM sessions").fetchone()[0]
    last_event = conn.execute("SELECT max(id) FROM events").fetchone()[0]
    for copy in range(1, copies + 1):
        visitor = f"substr(visitor_id, 1, 7) || '{copy:x}' || substr(visitor_id, 9)"
        renamed = {"visitor_id": visitor, "id": f"id + {copy * last_session}",
                   "session_id": f"session_id + {copy * last_session}"}  # fmt: skip
        conn.execute("BEGIN")
        events_before, sessions_before = conn.execute(
            "SELECT (SELECT max(id) FROM events), (SELECT max(id) FROM sessions)"
        ).fetchone()
        conn.execute(
            f"INSERT INTO sessions ({', '.join(session_columns)}) SELECT "
            f"{', '.join(renamed.get(column, column) for column in session_columns)} FROM sessions WHERE id <= ?",
            (last_session,),
        )
        conn.execute(
            f"INSERT INTO events ({', '.join(events_columns)}) SELECT "
            f"{', '.join(renamed.get(column, column) for column in events_columns)} FROM events WHERE id <= ?",
            (last_event,),
        )
        prisme_lite.count_stored_rows(conn, events_before, sessions_before)
        conn.execute("COMMIT")
        print(f"  copy {copy} of {copies}", file=sys.stderr)
    conn.close()
    return time.monotonic() - started


# The overview's filter cases (SPEC §3.4 filters, as the stats API takes them) and its two windows: the dashboard's
# (whole days, today up to now) and one with a partial first day.
FILTER_CASES = {
    "none": [],
    "country=FR": [("country", "FR")],
    "browser=Firefox": [("browser", "Firefox")],
    "path=/post/7": [("path", "/post/7")],
    "referrer=ref1.example": [("referrer", "ref1.example")],
    "country=FR + path=/post/7": [("country", "FR"), ("path", "/post/7")],
}
# The dashboard's window, whole days; SPEC's partial-day window; and one whose first day has rows before its start, as
# a real site's has: the generated rows begin at now-30d, so that window's first day holds nothing outside it (and
# costs nothing to subtract, rollup_days(subtract=True)).
WINDOWS = ("now-30d/d", "now-30d", "now-29d")
ONCE_MS = 2000  # a metric whose first run takes longer is run once (its median of 3 would not change a verdict)


def time_queries(conn: sqlite3.Connection, now: int, window: str, filters: list[tuple[str, str]]) -> dict:
    """Each overview metric over `window` (to now) with `filters`: the median of 3 runs in ms (one run past
    ONCE_MS), the filters some metric did not apply (q.unapplied: none expected), and the pageviews counted."""
    timings, unapplied, pageviews = {}, {}, None
    for metric in OVERVIEW:
        params = [("site", "blog.example.com"), *filters] + ([] if metric == "live-visitors" else [("from", window)])
        q = prisme_lite.parse_stats_query(params, now, prisme_lite.LIVE_WINDOW)
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            _keys, values = prisme_lite.METRICS[metric](conn, q)
            runs.append((time.perf_counter() - started) * 1000)
            if runs[0] > ONCE_MS:
                break
        timings[metric] = round(statistics.median(runs), 1)
        if q.unapplied:
            unapplied[metric] = dict(q.unapplied)
        if metric == "pageviews":
            pageviews = sum(values)
    slowest = max(timings, key=timings.get)
    return {"total_ms": round(sum(timings.values()), 1), "slowest": [slowest, timings[slowest]],
            "query_ms": timings, "unapplied": unapplied, "pageviews": pageviews}  # fmt: skip


GENERATOR = 1  # what generate and replicate write: a kept database made by another version is made again


def size_label(events: int) -> str:
    return f"{events / 1e6:g}M" if events >= 1_000_000 else f"{events / 1e3:g}k"


def made_by(path: str) -> dict | None:
    """What bench recorded of a database's making (PATH.bench.json), if it still holds what that says: the same
    schema version (PRAGMA user_version) as this prisme_lite and the same GENERATOR; None otherwise."""
    try:
        with open(path + ".bench.json") as file:
            made = json.load(file)
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except (OSError, ValueError, sqlite3.Error):
        return None
    if version != prisme_lite.SCHEMA_VERSION or made.get("schema_version") != version:
        print(f"  {os.path.basename(path)}: schema version {version}, this prisme_lite's is "
              f"{prisme_lite.SCHEMA_VERSION}: made again", file=sys.stderr)  # fmt: skip
        return None
    if made.get("generator") != GENERATOR:
        print(f"  {os.path.basename(path)}: made by an older bench generator: made again", file=sys.stderr)
        return None
    return made


def record_making(path: str, made: dict) -> None:
    with open(path + ".bench.json", "w") as file:
        json.dump(made, file, indent=2)


def set_aside(path: str) -> None:
    """A database made by another schema version, moved to DB.schemaN.db with its WAL, journal and record (one of a
    version, the newer one kept): a database of that schema at this size, to try a migration on."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return
    if version in (0, prisme_lite.SCHEMA_VERSION):
        return
    aside = f"{path.removesuffix('.db')}.schema{version}.db"
    remove_database(aside)
    for leftover in glob.glob(glob.escape(path) + "*"):
        os.rename(leftover, aside + leftover.removeprefix(path))
    print(f"  {os.path.basename(path)} (schema version {version}) kept as {aside}", file=sys.stderr)


def dashboard_database(directory: str, events: int, base: int, now: int) -> tuple[str, dict]:
    """The dashboard database of `events` pageviews in `directory` (dashboard-1M.db, dashboard-10M.db, …) and what
    is known of its making: kept from an earlier run if made_by says it still holds, else made, the older one
    removed: `base` pageviews generated (at `now`), more copied from the database of `base` (made first if need be)
    with `prisme-lite backup` then replicate. A copy keeps its base's `now`: its events are the same days."""
    path = os.path.join(directory, f"dashboard-{size_label(events)}.db")
    made = made_by(path)
    copied_from = None if events <= base else f"dashboard-{size_label(base)}.db"
    if made is not None and made.get("events") == events and made.get("copied_from") == copied_from:
        return path, {**made, "kept": True}
    set_aside(path)
    remove_database(path)
    started = time.monotonic()
    if events <= base:
        print(f"  generating {events:,} pageviews into {path}…", file=sys.stderr)
        seconds = generate(path, events, now)
        made = {"events": events, "now": now, "generated_events_per_s": round(events / seconds)}
    else:
        if events % base:
            raise SystemExit(f"bench/run: {events:,} events is not a multiple of {base:,}")
        source, source_made = dashboard_database(directory, base, base, now)
        print(f"  copying {source} {events // base - 1} times into {path}…", file=sys.stderr)
        started = time.monotonic()
        # `prisme-lite backup`, not a file copy: a copy without its journal would trust a stored journal position
        # past the end of its new, empty journal (and skip the first events appended to it).
        subprocess.run([*CLI, "backup", "--db", source, path], check=True, capture_output=True)
        replicate(path, events // base - 1)
        made = {"events": events, "now": source_made["now"], "copied_from": copied_from}
    made |= {
        "made_seconds": round(time.monotonic() - started, 1),
        "schema_version": prisme_lite.SCHEMA_VERSION,
        "generator": GENERATOR,
        "made_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    record_making(path, made)
    return path, {**made, "kept": False}


def seal(db: str, now: int) -> dict | None:
    """prisme_lite.seal_days over `db` (every closed day's filtered daily counts), timed; None before it exists."""
    if not hasattr(prisme_lite, "seal_days"):
        return None
    prisme_lite.open_database(db)  # a kept database made by an older schema: brought up to date, as a server would
    conn = sqlite3.connect(db, isolation_level=None)  # autocommit: seal_days runs its own transactions
    try:
        # The generator writes a day's rows minutes before `now`, after the writer may have counted the day, which
        # marks it touched then and leaves it to raw rows for SEAL_DELAY_MS more. A server fed live would have seen
        # a day's last row arrive when the day ended: as it would have marked it (2 hours after, it is counted).
        conn.execute(
            "UPDATE slice_days SET touched_at = (day + 1) * ? WHERE touched_at > (day + 1) * ?",
            (prisme_lite.DAY_MS, prisme_lite.DAY_MS),
        )
        started = time.monotonic()
        units = prisme_lite.seal_days(conn, now)
        if conn.in_transaction:
            conn.execute("COMMIT")
        sealed = {"units": units, "seconds": round(time.monotonic() - started, 2)}
        if hasattr(prisme_lite, "count_prefixes"):  # today's prefixes, to the last hour, as the writer keeps them
            started = time.monotonic()
            prisme_lite.count_prefixes(conn, now)
            sealed["prefix_seconds"] = round(time.monotonic() - started, 2)
        return sealed
    finally:
        conn.close()


def storage_by_object(conn: sqlite3.Connection, pageviews: int) -> dict[str, float]:
    """Bytes per pageview of every table and index (SQLite's dbstat, where it is compiled in), largest first, and
    "slice_* (all)": the slice tables with their indexes together; {} without dbstat."""
    try:
        rows = conn.execute(
            "SELECT d.name, coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d"
            " LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY d.name ORDER BY 3 DESC"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    by_object = {name: round(used / pageviews, 1) for name, _table, used in rows}
    slices = sum(used for name, table, used in rows if name.startswith("slice_") or table.startswith("slice_"))
    if slices:
        by_object["slice_* (all)"] = round(slices / pageviews, 1)
    return by_object


def run_queries(db: str, made: dict) -> dict:
    """The dashboard database `db` (dashboard_database's): sealed (seal), its size, and the overview of every
    filter case over both windows, at the time it was made for."""
    now = made["now"]
    sealed = seal(db, now)
    if sealed is not None and not made.get("sealed"):  # when it was made: kept databases seal nothing more
        made["sealed"] = sealed
        record_making(db, {key: value for key, value in made.items() if key != "kept"})
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    prisme_lite.ForgetSaltedVisitors()(conn, now)  # what maintenance keeps: today's and yesterday's visitors
    conn.commit()
    pageviews, sessions = (
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("events", "sessions")
    )
    pages, free, page_size = (conn.execute(f"PRAGMA {name}").fetchone()[0]
                              for name in ("page_count", "freelist_count", "page_size"))  # fmt: skip
    size = (pages - free) * page_size  # pages in use: the free ones are reused by the next inserts
    by_object = storage_by_object(conn, pageviews)
    cases = {}
    for case, filters in FILTER_CASES.items():
        cases[case] = {"filters": filters, **{window: time_queries(conn, now, window, filters) for window in WINDOWS}}
        print(f"  {case}: " + ", ".join(f"{window} {cases[case][window]['total_ms']:,.0f} ms" for window in WINDOWS),
              file=sys.stderr)  # fmt: skip
    conn.close()
    dashboard, partial, filled = (cases["none"][window] for window in WINDOWS)
    return {"events": made["events"], "sessions": sessions, "database": db, "made": made,
            "generated_events_per_s": made.get("generated_events_per_s"), "copied": "copied_from" in made,
            "bytes_per_pageview": round(size / pageviews, 1), "bytes_per_pageview_by_object": by_object,
            "seal": sealed, "slice_bytes_per_pageview": by_object.get("slice_* (all)", 0.0) if sealed else None,
            "query_ms": dashboard["query_ms"], "overview_total_ms": dashboard["total_ms"],
            "partial_day_query_ms": partial["query_ms"], "partial_day_total_ms": partial["total_ms"],
            "filled_partial_day_query_ms": filled["query_ms"], "filled_partial_day_total_ms": filled["total_ms"],
            "filtered": cases}  # fmt: skip


def run_mirror(args: argparse.Namespace, work: str) -> dict:
    """The pixel (a new visitor each) with the ClickHouse mirror off and on, alternating on fresh databases (best of
    two each, one with --quick), into a clickhouse-server of its own (the tests' fixture class); after each run with
    it on, how long the mirror took to catch up and whether ClickHouse then holds every stored event once."""
    try:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from conftest import CLICKHOUSE_SERVER, ClickHouse
    except ImportError as error:
        return {"missing": f"tests/conftest.py cannot be imported ({error}): pip install -e '.[test]'"}
    if not os.path.exists(CLICKHOUSE_SERVER):
        return {"missing": f"{CLICKHOUSE_SERVER} (apt-get install clickhouse-server)"}
    clickhouse = ClickHouse(os.path.join(work, "clickhouse"))
    script, sql = pixel_script(work), "SELECT count(*) FROM events"
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    try:
        for name in ["off", "on"] * (1 if args.quick else 2):
            db = os.path.join(work, "mirror.db")
            remove_database(db)
            flags = ["--rate-limit", "0", *args.server_flags]
            if name == "on":
                database, url = clickhouse.database("bench")
                prisme_lite.clickhouse_init(prisme_lite.ClickHouseTarget.parse(url))
                flags += ["--clickhouse-url", url, "--node-id", "bench"]
            server = start_server(db, *flags)
            result = measure(server, "/", script, args.seconds, args.connections, db, sql)
            if name == "on":
                started = time.monotonic()
                while http_json(server.port, "GET", "/api/v1/healthcheck")["clickhouse"]["behind_rows"]:
                    if time.monotonic() - started > 300:
                        break
                    time.sleep(0.1)
                result["caught_up_s"] = round(time.monotonic() - started, 1)
                final = clickhouse.rows("SELECT count() AS n FROM events FINAL", database)[0]["n"]
                result["in_clickhouse"], result["in_sqlite"] = final, count(db, sql)
            server.stop()
            runs[name].append(result)
        version = clickhouse.query("SELECT version()").strip()
    finally:
        clickhouse.stop()
        remove_database(os.path.join(work, "mirror.db"))
    off, on = (max(run["requests_per_s"] for run in runs[name]) for name in ("off", "on"))
    return {"clickhouse": version, "off_requests_per_s": off, "on_requests_per_s": on, "ratio": round(on / off, 3),
            "runs": runs}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="for development (~2 minutes): 3 s a load, a 50,000-event dashboard, no profile",
    )
    parser.add_argument("--seconds", type=int, help="load per measurement (default 10; 3 with --quick)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--many-connections", type=int, default=256, help="the pixel again at this many")
    parser.add_argument("--dashboard-connections", type=int, default=2, help="the dashboard reader's (default 2)")
    parser.add_argument("--threads", type=int, help="the server's Python threads (default: the server's own)")
    parser.add_argument("--counter-tokens", type=int, default=2000)
    parser.add_argument("--fold-events", type=int, help="journal drained to time the writer (default 50,000)")
    parser.add_argument(
        "--events", type=int, nargs="*",
        help="dashboard databases: the first (up to 1,000,000) generated, the rest copies; 0 = none "
             "(default 1,000,000 and 10,000,000; 50,000 with --quick)",
    )  # fmt: skip
    parser.add_argument("--dashboard-only", action="store_true", help="skip the HTTP routes")
    parser.add_argument("--fold-only", action="store_true", help="only the writer's fold rate (no HTTP, no wrk)")
    parser.add_argument("--mirror-only", action="store_true", help="only the pixel with the ClickHouse mirror on/off")
    parser.add_argument("--repeat", type=int, default=3, help="fold runs of each kind (--fold-only)")
    parser.add_argument(
        "--keep", metavar="DIR",
        help="keep the dashboard databases in DIR (dashboard-1M.db, …) and use them again in later runs, unless made "
             "by another schema version or generator (default: a temporary directory, removed)",
    )  # fmt: skip
    parser.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "latest.json"))
    args = parser.parse_args()
    args.seconds = args.seconds or (3 if args.quick else 10)
    args.events = args.events if args.events is not None else [50_000] if args.quick else [1_000_000, 10_000_000]
    args.fold_events = args.fold_events or (20_000 if args.quick else 50_000)
    args.server_flags = ["--threads", str(args.threads)] if args.threads else []
    if args.keep:
        args.keep = os.path.abspath(args.keep)
        os.makedirs(args.keep, exist_ok=True)
    if args.fold_only:
        work = tempfile.mkdtemp(prefix="prisme-bench-")
        try:
            report = fold_only(args, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(report, indent=2))
        return 0
    if shutil.which("wrk") is None:
        print("bench/run needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="prisme-bench-")
    threads = args.threads or prisme_lite.SETTINGS["threads"].default
    report = {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
              "quick": args.quick, "server": SERVER, "threads": threads,
              "conditions": f"wrk -t1 -c{args.connections} -d{args.seconds}s --latency on 127.0.0.1, on the same "
                            f"{os.cpu_count()}-CPU machine; `prisme-lite serve` on {SERVER}, {threads} threads; "
                            "rate limits and access log off; synchronous=NORMAL"}  # fmt: skip
    started = time.monotonic()
    try:
        if args.mirror_only:
            args.events, args.dashboard_only = [], True
        if not args.dashboard_only:
            print("ceiling: the bare Bottle GIF route", file=sys.stderr)
            report["ceiling"] = run_ceiling(args, work)
            bjoern = next((r for r in report["ceiling"] if r["name"] == "bjoern" and "missing" not in r), None)
            report["ceiling_requests_per_s"] = bjoern["requests_per_s"] if bjoern else None
            print("ingest routes of prisme-lite serve", file=sys.stderr)
            report["routes"], report["ingest_server"] = run_routes(args, work, report["ceiling_requests_per_s"])
        report["dashboard"] = []
        sizes, databases = sorted(n for n in args.events if n), []
        if sizes:  # all made first: a copy is made of its base before the base is sealed
            print(f"dashboard databases in {args.keep or work}", file=sys.stderr)
            base = min(sizes[0], GENERATED)
            databases = [dashboard_database(args.keep or work, events, base, prisme_lite.now_ms()) for events in sizes]
        for n, (db, made) in enumerate(databases):
            print(f"dashboard queries over {made['events']:,} events", file=sys.stderr)
            report["dashboard"].append(run_queries(db, made))
            if n == 0 and not args.dashboard_only:
                print(f"ingest while the 30-day dashboard is read ({made['events']:,} events)", file=sys.stderr)
                copy = os.path.join(work, "dashboard-copy.db")
                # `prisme-lite backup`, not a file copy: a copy without its journal would trust a stored journal
                # position past the end of its new, empty journal (and skip the first events appended to it).
                subprocess.run([*CLI, "backup", "--db", db, copy], check=True, capture_output=True)
                token = create_tokens(copy)["stats_read"]
                report["ingest_with_dashboard"] = ingest_with_dashboard(args, work, copy, token)
                remove_database(copy)
        if report["dashboard"]:  # last: it adds events to the database (to a copy of one kept)
            print("ingest and the writer's fold on the largest database and on an empty one", file=sys.stderr)
            largest = databases[-1][0]
            if args.keep:
                subprocess.run([*CLI, "backup", "--db", largest, os.path.join(work, "at-size.db")], check=True,
                               capture_output=True)  # fmt: skip
                largest = os.path.join(work, "at-size.db")
            report["ingest_at_size"] = {"events": report["dashboard"][-1]["events"], "fold_events": args.fold_events,
                                        **measure_at_size(args, work, largest)}  # fmt: skip
        if not args.dashboard_only or args.mirror_only:
            print("the pixel with the ClickHouse mirror off and on", file=sys.stderr)
            report["mirror"] = run_mirror(args, work)
        if not args.dashboard_only and not args.quick and py_spy():
            print("profile of the pixel route (py-spy)", file=sys.stderr)
            report["pixel_profile"] = profile_pixel(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["seconds_taken"] = round(time.monotonic() - started)
    report["targets"] = targets(report)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as file:
        json.dump(report, file, indent=2)
    print_table(report)
    print(f"\nJSON report: {args.json} ({report['seconds_taken']} s)")
    return 0


def py_spy() -> str | None:
    """py-spy from the environment bench/run runs in (pip install py-spy), else from PATH; None without it."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.access(beside, os.X_OK) else shutil.which("py-spy")


def profile_pixel(args: argparse.Namespace, work: str, top: int = 12) -> dict:
    """Where the server's time goes under the pixel's load: py-spy samples every thread for `args.seconds`.

    Returns the functions with the most samples on the stack (inclusive) and at its top (self), in percent of
    all samples of busy threads (idle waits excluded)."""
    server = start_server(os.path.join(work, "profile.db"), "--rate-limit", "0", *args.server_flags)
    raw = os.path.join(work, "profile.txt")
    spy = subprocess.Popen(
        [py_spy(), "record", "--pid", str(server.pid), "--duration", str(args.seconds), "--rate", "250",
         "--format", "raw", "--output", raw, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    script = lua_script(os.path.join(work, "pixel.lua"), "GET", {"User-Agent": UA, "Referer": "http://localhost/a"})
    wrk(f"http://127.0.0.1:{server.port}{PIXEL}", script, args.seconds, args.connections)
    spy.wait(timeout=60)
    server.stop()
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = 0
    idle = ("wait (threading.py", "select (selectors.py", "poll (selectors.py", "get (queue.py", "_wait_for_tstate")
    plumbing = (
        "(threading.py)",
        "main (prisme_lite.py)",
        "run_command (prisme_lite.py)",
        "serve_command (prisme_lite.py)",
        "serve (prisme_lite.py)",
    )
    with open(raw) as file:
        for line in file:
            stack, _space, samples = line.rstrip("\n").rpartition(" ")
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")[1:]]  # drop the thread name
            # A thread waiting for work; the writer waits in SimpleQueue.get (C), so its own frame is on top.
            waiting = frames and frames[-1].startswith(("Writer._run (", "Writer._gather ("))
            if not frames or waiting or any(name in frames[-1] for name in idle):
                continue
            count, total = int(samples), total + int(samples)
            for frame in set(frames):
                if not frame.endswith(plumbing):
                    inclusive[frame] = inclusive.get(frame, 0) + count
            leaf[frames[-1]] = leaf.get(frames[-1], 0) + count

    def ranked(table: dict[str, int]) -> list[list]:
        best = sorted(table.items(), key=lambda item: -item[1])[:top]
        return [[frame, round(100 * count / max(1, total), 1)] for frame, count in best]

    return {"busy_samples": total, "inclusive_percent": ranked(inclusive), "self_percent": ranked(leaf)}


def targets(report: dict) -> list[dict]:
    """SPEC §9, target by target: what was measured here, and whether it is met."""
    rows = []

    def target(name: str, measured: float | None, goal: float, at_least: bool, unit: str = "", note: str = "") -> None:
        if measured is not None:
            met = measured >= goal if at_least else measured <= goal
            goal_text = f"{'≥' if at_least else '≤'} {goal:g} {unit}".strip()
            rows.append({"target": name, "measured": measured, "goal": goal_text, "met": met, "note": note})

    routes = report.get("routes", [])
    pixels = {r["connections"]: r for r in routes if r["name"] == "noscript pixel"}
    pixel = pixels.get(min(pixels)) if pixels else None
    if pixel:
        ratio = pixel["ratio_to_ceiling"]
        floor = "" if ratio is None or ratio >= 0.35 else "above the 0.25 floor" if ratio >= 0.25 else "below the floor"
        target("pixel / bjoern's bare route", ratio, 0.35, True, note=floor)
        for connections, run in sorted(pixels.items()):
            target(f"pixel p99 at {connections} connections", run["p99_ms"], 20 if connections <= 16 else 50, False,
                   "ms")  # fmt: skip
        target("server CPU per pixel", pixel["cpu_ms_per_request"], 0.1, False, "ms")
        for route in routes:
            if not route["name"].startswith("noscript pixel"):
                target(f"{route['name']} / pixel (events/s)", route["events_ratio_to_pixel"], 0.7, True)
        target("resident memory under load", report["ingest_server"]["peak_resident_mb"], 80, False, "MB")
    both = report.get("ingest_with_dashboard")
    if both:
        target("ingest while the dashboard is read / alone", both["ratio"], 0.7, True)
        target("dashboard p99 meanwhile (one metric)", both["dashboard"]["p99_ms"], 1000, False, "ms")
    at_size = report.get("ingest_at_size")
    if at_size and pixel:
        fold = at_size["empty"]["writer_events_per_s"]
        target("writer fold, empty database / pixel", round(fold / pixel["requests_per_s"], 2), 3, True)
    if at_size:
        size = at_size["events"]
        note = "" if size >= 10_000_000 else "SPEC asks at 10 M"
        target(f"writer fold at {size / 1e6:g} M events / empty", at_size["writer_events_per_s_ratio"], 0.9, True,
               note=note)  # fmt: skip
    for dashboard in report.get("dashboard", []):
        events, size = f"{dashboard['events'] / 1e6:g} M", dashboard["events"]
        note = "" if size in (1_000_000, 10_000_000) else "SPEC asks at 1 M and 10 M"
        goal = 1000 if size >= 10_000_000 else 300
        for case, cases in dashboard["filtered"].items():
            for window in WINDOWS:
                slowest, ms = cases[window]["slowest"]
                target(f"overview, {case}, {window}, at {events}", cases[window]["total_ms"], goal, False, "ms",
                       note or f"slowest {slowest} {ms:,.1f} ms")  # fmt: skip
                if size >= 10_000_000:
                    target(f"slowest metric, {case}, {window}, at {events}", ms, 300, False, "ms", slowest)
        target(f"bytes per pageview at {events}", dashboard["bytes_per_pageview"], 120, False, "B")
    both, at_size = both or {}, at_size or {}
    runs = [*routes, *(both.get(k, {}) for k in ("alone_before", "with_dashboard", "alone_after")),
            *(at_size.get(k, {}) for k in ("full", "empty"))]  # fmt: skip
    if routes or both or at_size:
        target("acknowledged but not stored, every load", sum(run.get("lost", 0) for run in runs), 0, False, "events")
    mirror = report.get("mirror", {})
    if "ratio" in mirror:
        target("pixel with the ClickHouse mirror on / off", mirror["ratio"], 0.8, True)
        lost = sum(run["in_sqlite"] - run["in_clickhouse"] for run in mirror["runs"]["on"])
        target("stored but not in ClickHouse once caught up", lost, 0, False, "events")
    for row in rows:
        row["verdict"] = "met" if row["met"] else "GAP"
    return rows


def print_table(report: dict) -> None:
    if "ceiling" in report:
        print_routes(report)
    if "ingest_with_dashboard" in report:
        both = report["ingest_with_dashboard"]
        before, meanwhile, after, reader = (
            both[k] for k in ("alone_before", "with_dashboard", "alone_after", "dashboard")
        )
        print(
            f"\nIngest while the 30-day dashboard is read ({both['events_in_database']:,} events stored; the pixel, "
            f"a new visitor each, -c{meanwhile['connections']}; a second wrk -c{reader['connections']} asks the "
            f"{both['dashboard_metrics']} metrics of the dashboard's page in turn, with a stats_read token):"
        )
        print(f"  pixel alone {before['requests_per_s']:,.0f} before and {after['requests_per_s']:,.0f} after (p99 "
              f"{before['p99_ms']} and {after['p99_ms']} ms); with the dashboard {meanwhile['requests_per_s']:,.0f} "
              f"req/s (p99 {meanwhile['p99_ms']} ms): ratio {both['ratio']}; lost "
              f"{before['lost'] + meanwhile['lost'] + after['lost']}")  # fmt: skip
        print(f"  dashboard meanwhile: {reader['requests_per_s']:,.1f} metrics/s, p50 {reader['p50_ms']} ms, p99 "
              f"{reader['p99_ms']} ms, non-2xx {reader['non_2xx']}")  # fmt: skip
    for dashboard in report["dashboard"]:
        print_dashboard(dashboard)
    if "ingest_at_size" in report:
        ingest = report["ingest_at_size"]
        print(f"\nIngest with {ingest['events']:,} pageviews stored, against an empty database in the same minute"
              f" (the pixel best of {1 if report['quick'] else 2}, the writer best of 3):")  # fmt: skip
        for measure_name, label in (
            ("requests_per_s", "pixel req/s, a new visitor each"),
            (
                "writer_events_per_s",
                f"writer fold events/s, a journal of {ingest['fold_events']:,} new visitors drained",
            ),
        ):
            print(
                f"  {label}: {ingest['full'][measure_name]:,.0f} full, {ingest['empty'][measure_name]:,.0f} empty:"
                f" ratio {ingest[measure_name + '_ratio']}"
            )
    if "pixel_profile" in report:
        profile = report["pixel_profile"]
        print(f"\nProfile of the server under the pixel's load (py-spy, {profile['busy_samples']:,} busy samples):")
        print("  inclusive (on the stack)                                        self (top of the stack)")
        for (frame, share), (leaf, own) in zip(profile["inclusive_percent"], profile["self_percent"], strict=True):
            print(f"  {share:5.1f}% {frame[:58]:58} {own:5.1f}% {leaf[:58]}")
    mirror = report.get("mirror")
    if mirror and "missing" in mirror:
        print(f"\nThe ClickHouse mirror: not measured: {mirror['missing']}")
    elif mirror:
        print(f"\nThe pixel with the ClickHouse mirror (clickhouse-server {mirror['clickhouse']} here), a new"
              f" visitor each, fresh databases, alternating, best of {len(mirror['runs']['on'])}:")  # fmt: skip
        print(f"  off {mirror['off_requests_per_s']:,.0f} req/s, on {mirror['on_requests_per_s']:,.0f} req/s:"
              f" ratio {mirror['ratio']}")  # fmt: skip
        for run in mirror["runs"]["on"]:
            print(f"  on: p99 {run['p99_ms']} ms, CPU {run['cpu_ms_per_request']} ms/req, peak {run['peak_rss_mb']} MB;"
                  f" caught up {run['caught_up_s']} s after the load; ClickHouse {run['in_clickhouse']:,} events"
                  f" (FINAL), SQLite {run['in_sqlite']:,}")  # fmt: skip
    print("\nSPEC §9 targets (not measured here: kill -9 and fault tests):")
    for row in report["targets"]:
        note = f"  [{row['note']}]" if row["note"] else ""
        print(f"  {row['verdict']:4} {row['target']:58} {row['measured']:>10} (target {row['goal']}){note}")


def print_dashboard(dashboard: dict) -> None:
    made = dashboard["made"]
    how = (
        f"copies of {made['copied_from']} with new visitors and sessions"
        if dashboard["copied"]
        else f"generated through the journal and writer at {dashboard['generated_events_per_s']:,} events/s"
    )
    when = f"kept from {made['made_at']}, made" if made["kept"] else "made"
    print(f"\nDashboard queries over {dashboard['events']:,} pageviews ({dashboard['sessions']:,} sessions; {how};"
          f" {when} in {made['made_seconds']:,} s, {dashboard['database']});"
          f" {dashboard['bytes_per_pageview']} bytes per stored pageview (pages in use: tables, indexes, sessions,"
          " daily counts)")  # fmt: skip
    by_object = dashboard["bytes_per_pageview_by_object"]
    if by_object:
        shown = {name: size for name, size in by_object.items() if size >= 0.5 or name.startswith("slice_")}
        rest = [size for name, size in by_object.items() if name not in shown]
        print("  bytes per pageview by table and index: " + ", ".join(f"{name} {size}" for name, size in shown.items())
              + (f", {len(rest)} others {sum(rest):.1f}" if rest else ""))  # fmt: skip
    sealed, first = dashboard["seal"], made.get("sealed")
    if sealed is None:
        print("  seal_days: not in this prisme_lite")
    else:
        print(
            f"  seal_days: {sealed['units']:,} (site, day, filter) units in {sealed['seconds']} s"
            + (f" (when it was made: {first['units']:,} in {first['seconds']} s)" if first != sealed else "")
            + f"; slice tables and indexes {dashboard['slice_bytes_per_pageview']} bytes per pageview"
        )
    filled = dashboard.get("filled_partial_day_query_ms", {})  # not in reports of older runs (bench/compare)
    print(f"  {'unfiltered metric, ms':24} {'now-30d/d':>10} {'now-30d':>10} {'now-29d':>10}")
    for metric, ms in dashboard["query_ms"].items():
        print(f"  {metric:24} {ms:10.1f} {dashboard['partial_day_query_ms'][metric]:10.1f}"
              f" {filled.get(metric, float('nan')):10.1f}")  # fmt: skip
    print(f"  {'all of them':24} {dashboard['overview_total_ms']:10.1f} {dashboard['partial_day_total_ms']:10.1f}"
          f" {dashboard.get('filled_partial_day_total_ms', float('nan')):10.1f}")  # fmt: skip
    print("  (now-30d/d is the dashboard's window: whole days from the daily counts; now-30d adds a partial"
          " first day read from raw rows, now-29d one with rows on both sides of its start)")  # fmt: skip
    print(f"  the 30-day overview by filter: the {len(OVERVIEW)} metrics' medians of 3 summed (one run of a metric"
          f" past {ONCE_MS:,} ms), and the slowest; ms")  # fmt: skip
    print(f"  {'filter':26} {'pageviews':>9}" + "".join(f" {window + ' total':>15} {'slowest':>30}"
                                                        for window in WINDOWS))  # fmt: skip
    for case, cases in dashboard["filtered"].items():
        cells = ""
        for window in WINDOWS:
            slowest, ms = cases[window]["slowest"]
            cells += f" {cases[window]['total_ms']:15,.1f} {f'{slowest} {ms:,.1f}':>30}"
        print(f"  {case:26} {cases[WINDOWS[0]]['pageviews'] or 0:9,}{cells}")
        for window in WINDOWS:
            if cases[window]["unapplied"]:
                print(f"    {window}: not applied: {cases[window]['unapplied']}")


def print_routes(report: dict) -> None:
    print(f"\n{report['conditions']}")
    print("\nThe ceiling: a bare Bottle route answering the GIF (bench/baseline.py)")
    print(f"  {'server':10} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10} {'peak MB':>8}")
    for r in report["ceiling"]:
        if "missing" in r:
            print(f"  {r['name']:10} not measured: {r['missing']}")
        else:
            print(f"  {r['name']:10} {r['requests_per_s']:8.0f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f}"
                  f" {r['cpu_ms_per_request']:10.3f} {r['peak_rss_mb']:8.1f}")  # fmt: skip
    print(f"\n`prisme-lite serve` ({report['server']}), one fresh database; ratios: events/s to bjoern's bare route and"
          " to the pixel at the same connections")  # fmt: skip
    print(f"  {'route':26} {'conns':>5} {'req/s':>7} {'/bjoern':>7} {'/pixel':>6} {'p50 ms':>7} {'p99 ms':>7}"
          f" {'CPU ms/req':>10} {'peak MB':>7} {'non-2xx':>7} {'stored/acked':>17} lost")  # fmt: skip
    for r in report["routes"]:
        ceiling = "-" if r["ratio_to_ceiling"] is None else f"{r['ratio_to_ceiling']:.2f}"
        print(
            f"  {r['name']:26} {r['connections']:5} {r['requests_per_s']:7.0f} {ceiling:>7}"
            f" {r['events_ratio_to_pixel']:6.2f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {r['cpu_ms_per_request']:10.3f}"
            f" {r['peak_rss_mb']:7.1f} {r['non_2xx']:7} {r['stored']:>8}/{r['acknowledged']:<8} {r['lost']:>4}"
        )
    server = report["ingest_server"]
    print(f"  peak resident memory under load: {server['peak_resident_mb']} MB; "
          f"{server['bytes_per_stored_event']} bytes per stored event (database + WAL)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
