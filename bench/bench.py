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


class MemoryWatch:
    """The highest resident size of a process, sampled every 0.2 s while it runs."""

    def __init__(self, pid: int):
        self.pid, self.highest, self.running = pid, 0, True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while self.running:
            try:
                with open(f"/proc/{self.pid}/status") as status:
                    kib = int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1))
                self.highest = max(self.highest, kib * 1024)
            except (OSError, AttributeError):
                return
            time.sleep(0.2)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return self.highest


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


def run_routes(args: argparse.Namespace, work: str, baseline: dict) -> tuple[list[dict], dict]:
    db = os.path.join(work, "ingest.db")
    cli = [sys.executable, os.path.join(ROOT, "prisme_lite.py")]
    tokens = {
        scope: subprocess.run(
            [*cli, "tokens", "create", "--scope", scope, "--db", db], capture_output=True, text=True, check=True
        ).stdout.strip()
        for scope in ("capture_publish", "track_public")
    }  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--db", db, "--port", str(port), "--rate-limit", "0", "--events-rate-limit", "0",
         "--access-log", "false", "--threads", str(args.threads)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    banner = [server.stdout.readline() for _ in range(5)]
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
        result.update(name=name, stored=stored, acknowledged=acknowledged, lost=max(0, acknowledged - stored),
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
            event = {
                "ts": int(visit_start + page * rng.randrange(20_000, 180_000)), "site": "blog.example.com",
                "kind": "pageview", "name": None, "host": "blog.example.com", "path": rng.choice(paths),
                "referrer": referrer if page == 0 else "direct",
                "utm_source": "newsletter" if campaign else None, "utm_medium": "email" if campaign else None,
                "utm_campaign": "november" if campaign else None, "utm_term": None, "utm_content": None,
                "visitor_id": visitor, "browser": browser, "os": system, "device": "desktop", "country": country,
                "status": 200, "props": None,
            }  # fmt: skip
            while True:
                try:
                    ctx.writer.append("web", event)
                    break
                except prisme_lite.Unavailable:  # the writer is behind: wait, as a client would retry
                    time.sleep(0.05)
            n += 1
    ctx.writer.flush()
    ctx.close()
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


def run_queries(args: argparse.Namespace, work: str, events: int) -> dict:
    db = os.path.join(work, f"dashboard-{events}.db")
    now = prisme_lite.now_ms()
    seconds = generate(db, events, now)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pageviews, sessions = (
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("events", "sessions")
    )
    size = os.path.getsize(db)
    dashboard = time_queries(conn, now, "now-30d/d")  # what the dashboard asks: whole days, today up to now
    partial = time_queries(conn, now, "now-30d")  # a partial first day, read from raw rows
    conn.close()
    return {"events": events, "sessions": sessions, "generated_in_s": round(seconds, 1),
            "ingest_events_per_s": round(events / seconds), "bytes_per_pageview": round(size / pageviews, 1),
            "query_ms": dashboard, "overview_total_ms": round(sum(dashboard.values()), 1),
            "partial_day_query_ms": partial, "partial_day_total_ms": round(sum(partial.values()), 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="load per route (default 10)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8, help="server threads, for both servers")
    parser.add_argument("--counter-tokens", type=int, default=2000)
    parser.add_argument("--events", type=int, nargs="*", default=[1_000_000], help="dashboard databases (0 = none)")
    parser.add_argument("--dashboard-only", action="store_true", help="skip the HTTP routes")
    parser.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "latest.json"))
    args = parser.parse_args()
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
        for events in [n for n in args.events if n]:
            print(f"dashboard queries over {events:,} events (generating…)", file=sys.stderr)
            report["dashboard"].append(run_queries(args, work, events))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as file:
        json.dump(report, file, indent=2)
    print_table(report)
    print(f"\nJSON report: {args.json}")
    return 0


def print_table(report: dict) -> None:
    if "baseline" in report:
        print_routes(report)
    for dashboard in report["dashboard"]:
        print(f"\nDashboard queries over {dashboard['events']:,} pageviews ({dashboard['sessions']:,} sessions),"
              f" written at {dashboard['ingest_events_per_s']:,} events/s; {dashboard['bytes_per_pageview']} bytes"
              " per stored pageview (database, indexes, sessions and daily counts); median of 3, ms:")  # fmt: skip
        print(f"  {'metric':24} {'now-30d/d':>10} {'now-30d':>10}")
        for metric, ms in dashboard["query_ms"].items():
            print(f"  {metric:24} {ms:10.1f} {dashboard['partial_day_query_ms'][metric]:10.1f}")
        print(f"  {'all of them':24} {dashboard['overview_total_ms']:10.1f} {dashboard['partial_day_total_ms']:10.1f}")
        print("  (now-30d/d is the dashboard's window: whole days from the daily counts; now-30d adds a partial"
              " first day read from raw rows)")  # fmt: skip


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
