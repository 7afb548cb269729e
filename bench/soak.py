"""prisme-lite soak (bench/soak): a steady mixed load for a bounded time, the server's memory sampled every second.

Starts `prisme-lite serve` on a fresh database behind a pretend proxy (trust_proxy, so every request can come from
a new client IP), and loads it from a second process on loopback at a steady rate with every API family: pixels
and POSTed pageviews from ever new visitors, IPs, pages and user agents, custom events, counter tokens and
increments, server-event batches and widget beacons. Every second it samples the server's resident memory and the
size of its -wal and journal files. At the end it stops the server with SIGTERM and compares the rows stored with
the requests acknowledged. Memory must plateau: every table in memory (rate-limit buckets, the user-agent cache,
read connections) is bounded, so after its warm-up the resident size stops growing while the database does.

The warm-up is made, not waited for: before the steady load the load process sends, as fast as the server
answers, more requests with distinct user agents than the parse cache holds and more client IPs than the rate
limiter keeps (run at its smallest bound, `rate_limit_buckets` 1000, so that its eviction runs within seconds).
At 200 requests/s these tables would otherwise take 50 s (the 10,000-entry cache) and 500 s (100,000 buckets) to
fill, and a one-minute soak would see them filling and call it growth. Growth is judged on the steady load alone.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prisme_lite  # noqa: E402
from bench import ROOT, SERVER, count, create_tokens, http_json, resident_bytes, start_server  # noqa: E402

FAMILIES = ("pageview", "custom", "counter", "server", "widget")
MIX = ["pageview"] * 12 + ["custom"] * 3 + ["counter"] * 2 + ["server"] * 1 + ["widget"] * 2  # of 20 requests
BROWSERS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.{b}.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.{b}",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{b} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.0 "
    "Mobile/15E148 Safari/604.1",
]


def user_agent(rng: random.Random) -> str:
    """One of ~60,000 user agents: more than the server's parse cache holds, so the cache must stay bounded."""
    return rng.choice(BROWSERS).format(v=rng.randrange(90, 130), b=rng.randrange(500))


def distinct_user_agent(n: int) -> str:
    """The n-th of the same ~60,000 user agents, each n below 60,000 a different one (for the warm-up)."""
    return BROWSERS[n % 3].format(v=90 + n // 3 % 40, b=n // 120 % 500)


BUCKETS = 1000  # the rate limiter's smallest bound (rate_limit_buckets), so that it is full after the warm-up
WARM_UP = max(prisme_lite.UA_CACHE_SIZE, BUCKETS) * 3 // 2  # requests: every bounded table full, and evicting


class Load:
    """The load generator (run in its own process): `threads` clients keeping to a steady total `rate`."""

    def __init__(self, port: int, rate: float, seconds: float, threads: int, tokens: dict, warm_up: int = WARM_UP):
        self.port, self.rate, self.seconds, self.threads, self.tokens = port, rate, seconds, threads, tokens
        self.warm_up = warm_up  # requests sent unpaced before the steady load, each with a new user agent
        self.acked = dict.fromkeys(FAMILIES, 0)  # events acknowledged (a server batch counts its events)
        self.answers: dict[str, int] = {}
        self.lock = threading.Lock()

    def run(self) -> dict:
        """The warm-up, then "warm" on standard output, then the steady load; returns what was answered."""
        warm_up_started = time.monotonic()
        self.clients(self.warm_up_client)
        warm_up = round(time.monotonic() - warm_up_started, 1)
        print("warm", flush=True)
        started = time.monotonic()
        self.clients(lambda number: self.client(number, started))
        return {"acked": self.acked, "answers": self.answers, "seconds": round(time.monotonic() - started, 1),
                "warm_up_requests": self.warm_up, "warm_up_seconds": warm_up}  # fmt: skip

    def clients(self, target: Callable[[int], None]) -> None:
        workers = [threading.Thread(target=target, args=(n,)) for n in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def warm_up_client(self, number: int) -> None:
        rng, conn = random.Random(-1 - number), None
        for n in range(number, self.warm_up, self.threads):
            conn = self.answer(conn, rng, rng.choice(MIX), distinct_user_agent(n))

    def client(self, number: int, started: float) -> None:
        rng, conn = random.Random(number), None
        interval = self.threads / self.rate
        sent = 0
        while (due := started + number * interval / self.threads + sent * interval) < started + self.seconds:
            time.sleep(max(0.0, due - time.monotonic()))
            conn = self.answer(conn, rng, rng.choice(MIX), user_agent(rng))
            sent += 1
        conn and conn.close()

    def answer(self, conn, rng: random.Random, family: str, agent: str) -> http.client.HTTPConnection:
        """Send one request of `family` and count its answer; returns the connection to go on with."""
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            status, events = self.send(conn, rng, family, agent)
        except (OSError, http.client.HTTPException):
            conn.close()
            conn, status, events = None, "connection error", 0
        with self.lock:
            self.answers[str(status)] = self.answers.get(str(status), 0) + 1
            if isinstance(status, int) and status < 300:
                self.acked[family] += events
        return conn

    def request(self, conn, method: str, path: str, body: str | None, headers: dict) -> tuple[int, bytes]:
        conn.request(method, path, body, headers)
        answer = conn.getresponse()
        return answer.status, answer.read()

    def send(self, conn, rng: random.Random, family: str, agent: str) -> tuple[int, int]:
        ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        headers = {"User-Agent": agent, "X-Forwarded-For": ip}
        page = f"http://localhost/post/{rng.randrange(20_000)}?utm_source=s{rng.randrange(50)}"
        if family == "pageview" and rng.random() < 0.5:
            path = "/api/v1/noscript/events/pageviews"
            return self.request(conn, "GET", path, None, {**headers, "Referer": page})[0], 1
        if family == "pageview":
            headers.update({"Origin": "http://localhost", "X-Prisme-Referrer": page})
            return self.request(conn, "POST", "/api/v1/events/pageviews", None, headers)[0], 1
        if family == "custom":
            headers.update({"Origin": "http://localhost", "X-Prisme-Referrer": page})
            headers["Content-Type"] = "application/json"
            body = json.dumps({"plan": rng.choice(["free", "pro"]), "seats": rng.randrange(100)})
            path = f"/api/v1/events/custom/signup-{rng.randrange(20)}"
            return self.request(conn, "POST", path, body, headers)[0], 1
        if family == "counter":  # a new visitor: a token, then a like (the token is the visitor's one count)
            status, body = self.request(conn, "GET", "/api/v1/token", None, {**headers, "Origin": "http://localhost"})
            if status != 200:
                return status, 0
            token = json.dumps({"token": json.loads(body)["token"]})
            path = "/api/v1/likes/p/increment"
            return self.request(conn, "POST", path, token, {**headers, "Content-Type": "application/json"})[0], 1
        if family == "server":
            batch = [
                {"label": rng.choice(["View", "Like", "Subscribe", "Purchase"]),
                 "content_item": {"id": f"article-{rng.randrange(5000)}"},
                 "customer": {"id": f"customer-{rng.randrange(1_000_000)}"}}
                for _ in range(5)
            ]  # fmt: skip
            headers["Authorization"] = f"Bearer {self.tokens['capture_publish']}"
            headers["Content-Type"] = "application/json"
            return self.request(conn, "POST", "/events", json.dumps(batch), headers)[0], len(batch)
        path = (
            f"/track/widget/home/category/{rng.randrange(20)}/render.gif?auth_token={self.tokens['track_public']}"
            f"&analytics_id=a{rng.randrange(10**9)}&pics=8&segments[]=plan:{rng.choice(['free', 'pro'])}"
        )
        return self.request(conn, "GET", path, None, headers)[0], 1


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


SETTLE = 5  # seconds of steady load after the warm-up before memory is judged
SHORTEST = 20  # seconds of steady load to judge at all


def plateau(samples: list[dict], rate: float) -> dict:
    """Did resident memory stop growing? Judged on the steady load only (the warm-up and `SETTLE` seconds after it
    left out): the peak of its second half may exceed the peak of its first by at most max(2 MB, 5 %). A leak of
    `detects_bytes_per_request` or more per request would have shown; the slope (MB/minute) is for reading."""
    steady = [sample for sample in samples if sample["steady_s"] is not None and sample["steady_s"] >= SETTLE]
    if len(steady) < SHORTEST:
        return {"judged": False, "plateau": False, "steady_samples": len(steady),
                "why": f"fewer than {SHORTEST} s of steady load after the warm-up"}  # fmt: skip
    rss = [sample["rss_mb"] for sample in steady]
    half = len(rss) // 2
    first, second = rss[:half], rss[half:]
    xs = [sample["t"] for sample in steady]
    mean_x, mean_y = sum(xs) / len(xs), sum(rss) / len(rss)
    spread = sum((x - mean_x) ** 2 for x in xs) or 1
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, rss, strict=True)) / spread * 60
    growth, tolerance = max(second) - max(first), max(2.0, 0.05 * max(first))
    return {
        "judged": True, "steady_samples": len(steady), "judged_from_s": steady[0]["t"],
        "first_half_peak_mb": max(first), "second_half_peak_mb": max(second),
        "second_half_growth_mb": round(growth, 1), "tolerance_mb": round(tolerance, 1),
        "steady_slope_mb_per_min": round(slope, 2),
        "detects_bytes_per_request": round(tolerance * 2**20 / (rate * (len(rss) - half))),
        "plateau": growth <= tolerance,
    }  # fmt: skip


def soak(args: argparse.Namespace) -> dict:
    work = tempfile.mkdtemp(prefix="prisme-soak-")
    db = os.path.join(work, "soak.db")
    try:
        tokens = create_tokens(db)
        server = start_server(db, "--trust-proxy", "true", "--events-rate-limit", "0",
                              "--rate-limit-buckets", str(BUCKETS))  # fmt: skip
        admin = server.banner[2].split(": ", 1)[1].strip()
        registration = {"clientName": "soak", "domainName": "localhost", "emailId": "soak@example.com"}
        client = http_json(server.port, "POST", "/api/v1/register", registration, Authorization=f"Bearer {admin}")
        configuration = {**client, "validPageIds": ["p"], "validActionIds": ["likes"]}
        http_json(server.port, "POST", "/api/v1/configure", configuration)
        loader = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--load", str(server.port), "--rate", str(args.rate),
             "--seconds", str(args.seconds), "--threads", str(args.threads), "--tokens", json.dumps(tokens),
             "--warm-up", str(args.warm_up)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        said: list[str] = []  # the loader's lines: "warm" once the warm-up is done, then its report
        reader = threading.Thread(target=lambda: said.extend(loader.stdout), daemon=True)
        reader.start()
        samples, started, steady_since = [], time.monotonic(), None
        while loader.poll() is None:
            now = time.monotonic()
            if steady_since is None and said:
                steady_since = now
            steady = None if steady_since is None else round(now - steady_since, 1)
            samples.append({
                "t": round(now - started, 1), "steady_s": steady,
                "rss_mb": round(resident_bytes(server.pid) / 2**20, 1),
                "anon_mb": round(resident_bytes(server.pid, "RssAnon") / 2**20, 1),
                "wal_mb": round(file_size(db + "-wal") / 2**20, 1),
                "journal_mb": round(sum(file_size(os.path.join(work, name)) for name in os.listdir(work)
                                        if ".journal-" in name) / 2**20, 1),
            })  # fmt: skip
            time.sleep(max(0.0, started + len(samples) - time.monotonic()))
        reader.join()
        load = json.loads(said[-1])
        exit_code = server.stop()
        stored = {
            "pageview": count(db, "SELECT count(*) FROM events WHERE kind = 'pageview'"),
            "custom": count(db, "SELECT count(*) FROM events WHERE kind = 'custom'"),
            "counter": count(db, "SELECT coalesce(sum(count), 0) FROM counters"),
            "server": count(db, "SELECT count(*) FROM server_events"),
            "widget": count(db, "SELECT count(*) FROM widget_events"),
        }
        database_mb = round(file_size(db) / 2**20, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "conditions": f"a warm-up of {load['warm_up_requests']:,} requests as fast as answered (a new user agent "
        f"each), then {args.rate:g} requests/s for {args.seconds} s, from {args.threads} client threads in a second "
        "process on loopback; every request from a new client IP (X-Forwarded-For, trust_proxy) with one of "
        f"~60,000 user agents; rate limit 60/min per IP on, {BUCKETS} buckets; `prisme-lite serve` on {SERVER}; "
        "synchronous=NORMAL",
        "load": load, "stored": stored, "server_exit_code": exit_code, "database_mb": database_mb,
        "lost": {family: max(0, load["acked"][family] - stored[family]) for family in FAMILIES},
        "memory": plateau(samples, args.rate), "peak_rss_mb": max(s["rss_mb"] for s in samples),
        "peak_wal_mb": max(s["wal_mb"] for s in samples), "peak_journal_mb": max(s["journal_mb"] for s in samples),
        "samples": samples,
    }  # fmt: skip


def print_report(report: dict) -> None:
    memory, load = report["memory"], report["load"]
    print(f"soak: {report['conditions']}")
    print(f"answers: {load['answers']} (warm-up {load['warm_up_seconds']} s, then {load['seconds']} s steady)")
    for family in FAMILIES:
        print(f"  {family:9} acknowledged {report['load']['acked'][family]:>8,}  stored {report['stored'][family]:>8,}"
              f"  lost {report['lost'][family]}")  # fmt: skip
    samples = report["samples"]
    marks = sorted({0, len(samples) // 4, len(samples) // 2, 3 * len(samples) // 4, len(samples) - 1})
    print("resident memory (anonymous): " + ", ".join(
        f"{samples[i]['rss_mb']} ({samples[i]['anon_mb']}) MB at {samples[i]['t']:.0f} s" for i in marks))  # fmt: skip
    if not memory["judged"]:
        print(f"  peak {report['peak_rss_mb']} MB; NOT JUDGED: {memory['why']}")
    else:
        print(
            f"  peak {report['peak_rss_mb']} MB; steady load from {memory['judged_from_s']:.0f} s: first half peak "
            f"{memory['first_half_peak_mb']} MB, second half peak {memory['second_half_peak_mb']} MB "
            f"({memory['second_half_growth_mb']:+} MB, tolerance {memory['tolerance_mb']} MB; a leak of "
            f"{memory['detects_bytes_per_request']:,} bytes a request or more would show), slope "
            f"{memory['steady_slope_mb_per_min']} MB/min: {'plateau' if memory['plateau'] else 'STILL GROWING'}"
        )
    print(f"  -wal peak {report['peak_wal_mb']} MB, journal peak {report['peak_journal_mb']} MB, database "
          f"{report['database_mb']} MB; server exit code {report['server_exit_code']} after SIGTERM")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=600, help="how long to load (default 600)")
    parser.add_argument("--rate", type=float, default=300, help="requests a second (default 300)")
    parser.add_argument("--threads", type=int, default=8, help="client threads of the load process")
    parser.add_argument(
        "--warm-up",
        type=int,
        default=WARM_UP,
        help=f"requests sent as fast as answered before the steady load (default {WARM_UP:,})",
    )
    parser.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "soak.json"))
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)  # the load process: the server's port
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(
            json.dumps(
                Load(args.load, args.rate, args.seconds, args.threads, json.loads(args.tokens), args.warm_up).run()
            )
        )
        return 0
    report = soak(args)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as file:
        json.dump(report, file, indent=1)
    print_report(report)
    print(f"\nJSON report: {args.json}")
    lost = sum(report["lost"].values())
    return 0 if not lost and report["memory"]["plateau"] and report["server_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
