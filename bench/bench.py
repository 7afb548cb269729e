"""prisme-lite benchmark (bench/run): every ingest route against a bare Bottle baseline on the same HTTP server.

Starts the baseline and then `prisme-lite serve` on fresh databases, loads each from a second process on loopback
with wrk (Debian's package; Lua scripts for headers and bodies), and reports, per route: requests/s, p50/p99
latency, non-2xx answers, rows stored against requests acknowledged, and the ratio to the baseline; then resident
memory under load, bytes per stored event, and the latency of every dashboard query of SPEC §3.4 over a 30-day
database of N events written through the real storage code. Prints a table and writes a JSON report.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import prisme_lite  # noqa: E402

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
OVERVIEW = [
    "pageviews", "visitors", "sessions", "bounces", "sessions-duration", "live-visitors", "top-pages",
    "top-entry-pages", "top-exit-pages", "top-referrers", "top-utm-sources", "top-utm-mediums", "top-utm-campaigns",
    "top-countries", "top-operating-systems", "top-browsers",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lua_script(path: str, method: str, headers: dict, bodies: list[str] | None = None) -> str:
    """A wrk script: fixed method and headers, and bodies taken in turn (one per request)."""
    lines = [f'wrk.method = "{method}"'] + [
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()
    ]
    if bodies:
        lines.append("local bodies = {" + ",".join(json.dumps(body) for body in bodies) + "}")
        lines.append("local n = 0")
        lines.append("request = function() n = n % #bodies + 1; return wrk.format(nil, nil, nil, bodies[n]) end")
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
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "requests": requests,
        "non_2xx": non_2xx,
    }


def resident_bytes(pid: int) -> int:
    """A process's resident memory now (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1)) * 1024


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


CLI = [sys.executable, os.path.join(ROOT, "prisme_lite.py")]


def create_tokens(db: str) -> dict[str, str]:
    """An access token for server events and a public one for widgets, made with the command line."""
    subprocess.run([*CLI, "init", "--db", db], capture_output=True, check=True)  # only serve and init create it
    return {
        scope: subprocess.run(
            [*CLI, "tokens", "create", "--scope", scope, "--db", db], capture_output=True, text=True, check=True
        ).stdout.strip()
        for scope in ("capture_publish", "track_public")
    }  # fmt: skip


def start_server(db: str, *flags: str) -> tuple[subprocess.Popen, int, list[str]]:
    """`prisme-lite serve` on `db` and a free port, without an access log: (process, port, its banner lines)."""
    port = free_port()
    server = subprocess.Popen(
        [*CLI, "serve", "--db", db, "--port", str(port), "--access-log", "false", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    return server, port, [server.stdout.readline() for _ in range(5)]


def count(db: str, sql: str) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchone()[0] or 0


def settled(db: str, sql: str) -> int:
    """The count once the writer has folded everything (unchanged for a second)."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < 1.0:
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


def run_baseline(args: argparse.Namespace, work: str) -> dict:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bench", "baseline.py"), str(port), str(args.threads), "true"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    process.stdout.readline()
    time.sleep(0.5)
    script = lua_script(os.path.join(work, "baseline.lua"), "GET", {"User-Agent": UA, "Referer": "http://localhost/"})
    result = wrk(f"http://127.0.0.1:{port}/api/v1/noscript/events/pageviews", script, args.seconds, args.connections)
    process.terminate()
    process.wait()
    return result


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


def fold_rate(db: str, events: int = 100_000, shape: str = "visits") -> float:
    """Events a second the writer folds from its journal into `db` (timed_fold)."""
    return timed_fold(db, events, shape)["wall"]


def timed_fold(db: str, events: int = 100_000, shape: str = "visits") -> dict:
    """Events a second the writer folds from its journal into `db`, nothing else running: no HTTP, no appends.

    The writer is held inside a transaction while `events` journal lines are appended (as `append` writes them),
    then let go; the time is from then until the last line is committed, in the writer's own batches. "wall" is
    by the clock; "cpu" by this process's CPU time meanwhile (the writer's: the main thread only waits), which
    moves less when other work shares the machine.
    """
    ctx = prisme_lite.Context(prisme_lite.load_config({"db": db, "access_log": "false"}, environ={}))
    lines = fold_events(events, max(prisme_lite.now_ms(), count(db, "SELECT max(ts) FROM events") + 1), shape)
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
    for _ in range(args.repeat):
        for shape in ("visits", "pixel"):
            for name in ("empty", f"{size}"):
                db = os.path.join(work, "empty.db") if name == "empty" else big
                if name == "empty":
                    for leftover in [p for p in os.listdir(work) if p.startswith("empty.db")]:
                        os.remove(os.path.join(work, leftover))
                rate = timed_fold(db, args.fold_events, shape)
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


def measure_pixel(args: argparse.Namespace, work: str, db: str) -> dict:
    """Ingest on `db`, then on a fresh database in the same minute: the noscript pixel over HTTP, every request a
    new visitor (given visitor ids: a new session each), and the writer's own rate. Does ingest grow with size?"""
    script = os.path.join(work, "pixel.lua")
    with open(script, "w") as file:
        file.write(
            f"wrk.headers['User-Agent'] = {json.dumps(UA)}\nwrk.headers['Referer'] = 'http://localhost/a'\n"
            "request = function() return wrk.format(nil, '/api/v1/noscript/events/pageviews?visitor-id=v' .."
            " math.random(1, 1000000000)) end\n"
        )
    runs: dict[str, list[dict]] = {"full": [], "empty": []}
    sql = "SELECT count(*) FROM events"
    for name, path in [("full", db), ("empty", os.path.join(work, "empty.db"))] * 2:  # alternating, best of two
        server, port, _banner = start_server(path, "--rate-limit", "0", "--threads", str(args.threads))
        before = settled(path, sql)
        result = wrk(f"http://127.0.0.1:{port}/", script, args.seconds, args.connections)
        result["lost"] = max(0, result["requests"] - result["non_2xx"] - (settled(path, sql) - before))
        server.terminate()
        server.wait()
        result["writer_events_per_s"] = fold_rate(path)
        runs[name].append(result)
        if name == "empty":
            for leftover in [p for p in os.listdir(work) if p.startswith("empty.db")]:
                os.remove(os.path.join(work, leftover))
    results: dict = {
        name: {**{measure: max(run[measure] for run in done) for measure in done[0]},
               "lost": sum(run["lost"] for run in done)}
        for name, done in runs.items()
    }  # fmt: skip
    for measure in ("requests_per_s", "writer_events_per_s"):
        results[f"{measure}_ratio"] = round(results["full"][measure] / results["empty"][measure], 3)
    return results


def run_routes(args: argparse.Namespace, work: str, baseline: dict) -> tuple[list[dict], dict]:
    db = os.path.join(work, "ingest.db")
    tokens = create_tokens(db)
    server, port, banner = start_server(
        db, "--rate-limit", "0", "--events-rate-limit", "0", "--threads", str(args.threads)
    )
    admin = banner[2].split(": ", 1)[1].strip()
    registration = {"clientName": "bench", "domainName": "localhost", "emailId": "b@e.ch"}
    client = http_json(port, "POST", "/api/v1/register", registration, Authorization=f"Bearer {admin}")
    http_json(port, "POST", "/api/v1/configure", {**client, "validPageIds": ["p"], "validActionIds": ["likes"]})
    counter_tokens = [
        http_json(port, "GET", "/api/v1/token", None, Origin="http://localhost", **{"User-Agent": f"{UA} n{n}"})[
            "token"
        ]
        for n in range(args.counter_tokens)
    ]
    page = {
        "User-Agent": UA,
        "Origin": "http://localhost",
        "X-Prisme-Referrer": "http://localhost/blog/post?utm_source=bench",
    }
    batch = json.dumps(
        [{"label": "View", "content_item": {"id": f"a{n}"}, "customer": {"id": f"c{n}"}} for n in range(10)]
    )
    scenarios = [
        # (name, method, path, headers, bodies, rows counted, events per request)
        ("noscript pixel", "GET", "/api/v1/noscript/events/pageviews", {"User-Agent": UA, "Referer": "http://localhost/blog/post"},
         None, "SELECT count(*) FROM events", 1),
        ("POST pageview", "POST", "/api/v1/events/pageviews", page, None, "SELECT count(*) FROM events", 1),
        ("custom event", "POST", "/api/v1/events/custom/signup", {**page, "Content-Type": "application/json"},
         ['{"plan": "pro"}'], "SELECT count(*) FROM events", 1),
        ("counter increment", "POST", "/api/v1/likes/p/increment", {"Content-Type": "application/json"},
         [json.dumps({"token": token}) for token in counter_tokens], "SELECT coalesce(sum(count), 0) FROM counters", 1),
        ("server events (10/batch)", "POST", "/events", {"Authorization": f"Bearer {tokens['capture_publish']}",
         "Content-Type": "application/json"}, [batch], "SELECT count(*) FROM server_events", 10),
        ("widget render.gif", "GET", f"/track/widget/home/category/1/render.gif?auth_token={tokens['track_public']}"
         "&analytics_id=u1&pics=8", {"User-Agent": UA}, None, "SELECT count(*) FROM widget_events", 1),
    ]  # fmt: skip
    results, memory = [], MemoryWatch(server.pid)
    for name, method, path, headers, bodies, sql, per_request in scenarios:
        before = settled(db, sql)
        script = lua_script(os.path.join(work, "scenario.lua"), method, headers, bodies)
        result = wrk(f"http://127.0.0.1:{port}{path}", script, args.seconds, args.connections)
        stored = settled(db, sql) - before
        acknowledged = (result["requests"] - result["non_2xx"]) * per_request
        if name == "counter increment":  # each token counts once per 15 minutes: the rest answer the same count
            acknowledged = min(acknowledged, len(counter_tokens))
        # Stored may exceed acknowledged by the requests in flight when wrk stopped; "lost" must be 0.
        result.update(name=name, stored=stored, events_per_request=per_request, acknowledged=acknowledged,
                      lost=max(0, acknowledged - stored),
                      ratio_to_baseline=round(result["requests_per_s"] / baseline["requests_per_s"], 3))  # fmt: skip
        results.append(result)
        print(f"  {name}: {result['requests_per_s']:.0f} req/s", file=sys.stderr)
    peak = memory.stop()
    server.terminate()
    server.wait()
    size = sum(os.path.getsize(path) for path in (db, db + "-wal") if os.path.exists(path))
    stored_events = count(db, "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM server_events)"
                          " + (SELECT count(*) FROM widget_events)")  # fmt: skip
    return results, {
        "peak_resident_mb": round(peak / 2**20, 1),
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


def time_queries(conn: sqlite3.Connection, now: int, window: str) -> dict:
    """Median of 3 runs of each overview metric over `window` (to now), in ms."""
    timings = {}
    for metric in OVERVIEW:
        params = [("site", "blog.example.com")] + ([] if metric == "live-visitors" else [("from", window)])
        q = prisme_lite.parse_stats_query(params, now, prisme_lite.LIVE_WINDOW)
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            prisme_lite.METRICS[metric](conn, q)
            runs.append((time.perf_counter() - started) * 1000)
        timings[metric] = round(statistics.median(runs), 1)
    return timings


def run_queries(args: argparse.Namespace, work: str, events: int, now: int) -> dict:
    """The dashboard database of `events` pageviews (generated, or copies of the last one), its size and queries."""
    db = os.path.join(work, "dashboard.db")
    have = count(db, "SELECT count(*) FROM events") if os.path.exists(db) else 0
    if have == 0:
        seconds = generate(db, min(events, GENERATED), now)
        have, generated_per_s = min(events, GENERATED), round(min(events, GENERATED) / seconds)
    else:
        generated_per_s = None
    if events > have:
        if events % have:
            raise SystemExit(f"bench/run: {events:,} events is not a multiple of {have:,}")
        replicate(db, events // have - 1)
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
    try:  # where the bytes are, table by table and index by index (SQLite's dbstat, where it is compiled in)
        by_object = {name: round(used / pageviews, 1) for name, used in conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 8")}  # fmt: skip
    except sqlite3.OperationalError:
        by_object = {}
    dashboard = time_queries(conn, now, "now-30d/d")  # what the dashboard asks: whole days, today up to now
    partial = time_queries(conn, now, "now-30d")  # a partial first day, read from raw rows
    conn.close()
    return {"events": events, "sessions": sessions, "generated_events_per_s": generated_per_s,
            "copied": generated_per_s is None, "bytes_per_pageview": round(size / pageviews, 1),
            "bytes_per_pageview_by_object": by_object,
            "query_ms": dashboard, "overview_total_ms": round(sum(dashboard.values()), 1),
            "partial_day_query_ms": partial, "partial_day_total_ms": round(sum(partial.values()), 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="load per route (default 10)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8, help="server threads, for both servers")
    parser.add_argument("--counter-tokens", type=int, default=2000)
    parser.add_argument(
        "--events",
        type=int,
        nargs="*",
        default=[1_000_000, 10_000_000],
        help="dashboard databases: the first 1,000,000 generated, the rest copies (0 = none)",
    )
    parser.add_argument("--dashboard-only", action="store_true", help="skip the HTTP routes")
    parser.add_argument("--fold-only", action="store_true", help="only the writer's fold rate (no HTTP, no wrk)")
    parser.add_argument("--fold-events", type=int, default=100_000, help="journal lines per fold run")
    parser.add_argument("--repeat", type=int, default=3, help="fold runs of each kind (--fold-only)")
    parser.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "latest.json"))
    args = parser.parse_args()
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
    report = {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
              "conditions": f"wrk -t1 -c{args.connections} -d{args.seconds}s on loopback, same machine; waitress "
                            f"{args.threads} threads pinned to one CPU; rate limits off; "
                            "synchronous=NORMAL"}  # fmt: skip
    try:
        if not args.dashboard_only:
            print("baseline: bare Bottle GIF route", file=sys.stderr)
            report["baseline"] = run_baseline(args, work)
            print("routes", file=sys.stderr)
            report["routes"], report["server"] = run_routes(args, work, report["baseline"])
        report["dashboard"] = []
        now = prisme_lite.now_ms()
        for events in sorted(n for n in args.events if n):
            print(f"dashboard queries over {events:,} events (generating…)", file=sys.stderr)
            report["dashboard"].append(run_queries(args, work, events, now))
        if report["dashboard"]:  # last: it adds events to the database
            print("ingest on the largest database and on an empty one", file=sys.stderr)
            report["ingest_at_size"] = {"events": report["dashboard"][-1]["events"],
                                        **measure_pixel(args, work, os.path.join(work, "dashboard.db"))}  # fmt: skip
        if not args.dashboard_only and py_spy():
            print("profile of the pixel route (py-spy)", file=sys.stderr)
            report["pixel_profile"] = profile_pixel(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["targets"] = targets(report)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as file:
        json.dump(report, file, indent=2)
    print_table(report)
    print(f"\nJSON report: {args.json}")
    return 0


def py_spy() -> str | None:
    """py-spy from the environment bench/run runs in (pip install py-spy), else from PATH; None without it."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.access(beside, os.X_OK) else shutil.which("py-spy")


def profile_pixel(args: argparse.Namespace, work: str, top: int = 12) -> dict:
    """Where the server's time goes under the pixel's load: py-spy samples every thread for `args.seconds`.

    Returns the functions with the most samples on the stack (inclusive) and at its top (self), in percent of
    all samples of busy threads (idle waits excluded)."""
    server, port, _banner = start_server(
        os.path.join(work, "profile.db"), "--rate-limit", "0", "--threads", str(args.threads)
    )
    raw = os.path.join(work, "profile.txt")
    spy = subprocess.Popen(
        [py_spy(), "record", "--pid", str(server.pid), "--duration", str(args.seconds), "--rate", "250",
         "--format", "raw", "--output", raw, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    script = lua_script(os.path.join(work, "pixel.lua"), "GET", {"User-Agent": UA, "Referer": "http://localhost/a"})
    wrk(f"http://127.0.0.1:{port}/api/v1/noscript/events/pageviews", script, args.seconds, args.connections)
    spy.wait(timeout=60)
    server.terminate()
    server.wait()
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = 0
    idle = ("wait (threading.py", "select (selectors.py", "poll (selectors.py", "get (queue.py", "_wait_for_tstate")
    plumbing = ("(threading.py)", "main (prisme_lite.py)", "run_command (prisme_lite.py)", "serve (prisme_lite.py)")
    with open(raw) as file:
        for line in file:
            stack, _space, samples = line.rstrip("\n").rpartition(" ")
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")[1:]]  # drop the thread name
            if not frames or any(name in frames[-1] for name in idle):  # a thread waiting for work
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

    def target(name: str, measured: float | None, goal: float, at_least: bool, unit: str) -> None:
        if measured is not None:
            met = measured >= goal if at_least else measured <= goal
            goal_text = f"{'≥' if at_least else '≤'} {goal:g} {unit}".strip()
            rows.append({"target": name, "measured": measured, "goal": goal_text, "met": met})

    routes = {route["name"]: route for route in report.get("routes", [])}
    pixel = routes.get("noscript pixel")
    if pixel:
        target("pixel / baseline", pixel["ratio_to_baseline"], 0.5, True, "")
        target("pixel events/s", pixel["requests_per_s"], 10_000, True, "")
        target("pixel p99", pixel["p99_ms"], 20, False, "ms")
        for name, route in routes.items():
            if name != "noscript pixel":
                events_per_s = route["requests_per_s"] * route.get("events_per_request", 1)
                target(f"{name} / pixel (events/s)", round(events_per_s / pixel["requests_per_s"], 2), 0.7, True, "")
        target("acknowledged but lost", sum(route["lost"] for route in routes.values()), 0, False, "events")
        target("resident memory under load", report["server"]["peak_resident_mb"], 80, False, "MB")
    for dashboard in report.get("dashboard", []):
        events = f"{dashboard['events'] / 1e6:g} M"
        target(f"30-day overview at {events} events", dashboard["overview_total_ms"], 300, False, "ms")
        target(f"bytes per pageview at {events}", dashboard["bytes_per_pageview"], 120, False, "B")
    ingest = report.get("ingest_at_size")
    if ingest:
        events = f"{ingest['events'] / 1e6:g} M"
        target(f"pixel at {events} / empty", ingest["requests_per_s_ratio"], 0.9, True, "")
        target(f"writer at {events} / empty", ingest["writer_events_per_s_ratio"], 0.9, True, "")
    return rows


def print_table(report: dict) -> None:
    if "baseline" in report:
        print_routes(report)
    for dashboard in report["dashboard"]:
        made = (
            "the first database copied with new visitors and sessions"
            if dashboard["copied"]
            else f"generated through the journal and writer at {dashboard['generated_events_per_s']:,} events/s"
        )
        print(f"\nDashboard queries over {dashboard['events']:,} pageviews ({dashboard['sessions']:,} sessions;"
              f" {made});"
              f" {dashboard['bytes_per_pageview']} bytes per stored pageview (pages in use: tables, indexes, sessions,"
              " daily counts); median of 3, ms:")  # fmt: skip
        if dashboard["bytes_per_pageview_by_object"]:
            print("  bytes per pageview by table and index: " + ", ".join(
                f"{name} {size}" for name, size in dashboard["bytes_per_pageview_by_object"].items()))  # fmt: skip
        print(f"  {'metric':24} {'now-30d/d':>10} {'now-30d':>10}")
        for metric, ms in dashboard["query_ms"].items():
            print(f"  {metric:24} {ms:10.1f} {dashboard['partial_day_query_ms'][metric]:10.1f}")
        print(f"  {'all of them':24} {dashboard['overview_total_ms']:10.1f} {dashboard['partial_day_total_ms']:10.1f}")
        print("  (now-30d/d is the dashboard's window: whole days from the daily counts; now-30d adds a partial"
              " first day read from raw rows)")  # fmt: skip
    if "ingest_at_size" in report:
        ingest = report["ingest_at_size"]
        print(f"\nIngest with {ingest['events']:,} pageviews stored, against an empty database in the same minute:")
        for measure, label in (("requests_per_s", "pixel req/s, a new visitor each"), ("writer_events_per_s",
                               "writer events/s, 50,000 new visitors")):  # fmt: skip
            print(f"  {label}: {ingest['full'][measure]:,.0f} full, {ingest['empty'][measure]:,.0f} empty:"
                  f" ratio {ingest[measure + '_ratio']}")  # fmt: skip
    if "pixel_profile" in report:
        profile = report["pixel_profile"]
        print(f"\nProfile of the server under the pixel's load (py-spy, {profile['busy_samples']:,} busy samples):")
        print("  inclusive (on the stack)                                        self (top of the stack)")
        for (frame, share), (leaf, own) in zip(profile["inclusive_percent"], profile["self_percent"], strict=True):
            print(f"  {share:5.1f}% {frame[:58]:58} {own:5.1f}% {leaf[:58]}")
    print("\nSPEC §9 targets:")
    for row in report["targets"]:
        print(f"  {'met ' if row['met'] else 'GAP '} {row['target']:44} {row['measured']:>10} (goal {row['goal']})")


def print_routes(report: dict) -> None:
    print(f"\n{report['conditions']}")
    print(
        f"{'route':26} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8} {'stored/acked':>16} lost"
    )
    rows = [{**report["baseline"], "name": "baseline (bare Bottle GIF)", "ratio_to_baseline": 1.0}, *report["routes"]]
    for r in rows:
        line = f"{r['name']:26} {r['requests_per_s']:8.0f} {r['ratio_to_baseline']:6.2f} {r['p50_ms']:7.2f}"
        line += f" {r['p99_ms']:7.2f} {r['non_2xx']:8}"
        if "stored" in r:
            line += f" {r['stored']:>7}/{r['acknowledged']:<8} {r['lost']:>4}"
        print(line)
    server = report["server"]
    print(f"peak resident memory under load: {server['peak_resident_mb']} MB; "
          f"{server['bytes_per_stored_event']} bytes per stored event (database + WAL)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
