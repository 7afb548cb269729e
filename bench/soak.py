"""prisme-lite soak (bench/soak): a steady mixed load for a bounded time, the server's memory sampled every second.

Starts `prisme-lite serve` on a fresh database behind a pretend proxy (trust_proxy, so every request can come from
a new client IP), and loads it from a second process on loopback at a steady rate with every API family: pixels
and POSTed pageviews from ever new visitors, IPs, pages and user agents, custom events, counter tokens and
increments, server-event batches and widget beacons. Every second it samples the server's resident memory and the
size of its -wal and journal files. At the end it stops the server with SIGTERM and compares the rows stored with
the requests acknowledged. Memory must plateau: every table in memory (rate-limit buckets, the user-agent cache,
read connections) is bounded, so after its warm-up the resident size stops growing while the database does.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import ROOT, count, create_tokens, http_json, resident_bytes, start_server  # noqa: E402

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


class Load:
    """The load generator (run in its own process): `threads` clients keeping to a steady total `rate`."""

    def __init__(self, port: int, rate: float, seconds: float, threads: int, tokens: dict):
        self.port, self.rate, self.seconds, self.threads, self.tokens = port, rate, seconds, threads, tokens
        self.acked = dict.fromkeys(FAMILIES, 0)  # events acknowledged (a server batch counts its events)
        self.answers: dict[str, int] = {}
        self.lock = threading.Lock()

    def run(self) -> dict:
        started = time.monotonic()
        workers = [threading.Thread(target=self.client, args=(n, started)) for n in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return {"acked": self.acked, "answers": self.answers, "seconds": round(time.monotonic() - started, 1)}

    def client(self, number: int, started: float) -> None:
        rng = random.Random(number)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        interval = self.threads / self.rate
        sent = 0
        while (due := started + number * interval / self.threads + sent * interval) < started + self.seconds:
            time.sleep(max(0.0, due - time.monotonic()))
            family = rng.choice(MIX)
            try:
                status, events = self.send(conn, rng, family)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                status, events = "connection error", 0
            with self.lock:
                self.answers[str(status)] = self.answers.get(str(status), 0) + 1
                if isinstance(status, int) and status < 300:
                    self.acked[family] += events
            sent += 1
        conn.close()

    def request(self, conn, method: str, path: str, body: str | None, headers: dict) -> tuple[int, bytes]:
        conn.request(method, path, body, headers)
        answer = conn.getresponse()
        return answer.status, answer.read()

    def send(self, conn, rng: random.Random, family: str) -> tuple[int, int]:
        ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        headers = {"User-Agent": user_agent(rng), "X-Forwarded-For": ip}
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


def plateau(samples: list[dict]) -> dict:
    """How resident memory moved after warm-up: the halves' peaks and the slope of the second half (MB/minute)."""
    rss = [sample["rss_mb"] for sample in samples]
    half = len(rss) // 2
    first, second = rss[:half] or rss, rss[half:] or rss
    xs = list(range(len(second)))
    mean_x, mean_y = sum(xs) / len(xs), sum(second) / len(second)
    spread = sum((x - mean_x) ** 2 for x in xs) or 1
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, second, strict=True)) / spread * 60
    growth = max(second) - max(first)
    return {
        "first_half_peak_mb": max(first), "second_half_peak_mb": max(second),
        "second_half_growth_mb": round(growth, 1), "second_half_slope_mb_per_min": round(slope, 2),
        "plateau": growth <= max(2.0, 0.05 * max(first)),
    }  # fmt: skip


def soak(args: argparse.Namespace) -> dict:
    work = tempfile.mkdtemp(prefix="prisme-soak-")
    db = os.path.join(work, "soak.db")
    try:
        tokens = create_tokens(db)
        server = start_server(db, "--trust-proxy", "true", "--events-rate-limit", "0")
        port, banner = server.port, server.banner
        admin = banner[2].split(": ", 1)[1].strip()
        registration = {"clientName": "soak", "domainName": "localhost", "emailId": "soak@example.com"}
        client = http_json(port, "POST", "/api/v1/register", registration, Authorization=f"Bearer {admin}")
        http_json(port, "POST", "/api/v1/configure", {**client, "validPageIds": ["p"], "validActionIds": ["likes"]})
        loader = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--load", str(port), "--rate", str(args.rate),
             "--seconds", str(args.seconds), "--threads", str(args.threads), "--tokens", json.dumps(tokens)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        samples, started = [], time.monotonic()
        while loader.poll() is None:
            samples.append({
                "t": round(time.monotonic() - started, 1), "rss_mb": round(resident_bytes(server.pid) / 2**20, 1),
                "wal_mb": round(file_size(db + "-wal") / 2**20, 1),
                "journal_mb": round(sum(file_size(os.path.join(work, name)) for name in os.listdir(work)
                                        if ".journal-" in name) / 2**20, 1),
            })  # fmt: skip
            time.sleep(max(0.0, started + len(samples) - time.monotonic()))
        load = json.loads(loader.stdout.read())
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
        "conditions": f"{args.rate:g} requests/s for {args.seconds} s from {args.threads} client threads in a second "
        "process on loopback; every request from a new client IP (X-Forwarded-For, trust_proxy) with one of "
        "~60,000 user agents; rate limit 60/min per IP on; waitress 8 threads; synchronous=NORMAL",
        "load": load, "stored": stored, "server_exit_code": exit_code, "database_mb": database_mb,
        "lost": {family: max(0, load["acked"][family] - stored[family]) for family in FAMILIES},
        "memory": plateau(samples), "peak_rss_mb": max(s["rss_mb"] for s in samples),
        "peak_wal_mb": max(s["wal_mb"] for s in samples), "peak_journal_mb": max(s["journal_mb"] for s in samples),
        "samples": samples,
    }  # fmt: skip


def print_report(report: dict) -> None:
    memory = report["memory"]
    print(f"soak: {report['conditions']}")
    print(f"answers: {report['load']['answers']} in {report['load']['seconds']} s")
    for family in FAMILIES:
        print(f"  {family:9} acknowledged {report['load']['acked'][family]:>8,}  stored {report['stored'][family]:>8,}"
              f"  lost {report['lost'][family]}")  # fmt: skip
    samples = report["samples"]
    marks = sorted({0, len(samples) // 4, len(samples) // 2, 3 * len(samples) // 4, len(samples) - 1})
    print("resident memory: " + ", ".join(f"{samples[i]['rss_mb']} MB at {samples[i]['t']:.0f} s" for i in marks))
    print(
        f"  peak {report['peak_rss_mb']} MB; first half peak {memory['first_half_peak_mb']} MB, second half peak "
        f"{memory['second_half_peak_mb']} MB ({memory['second_half_growth_mb']:+} MB), second-half slope "
        f"{memory['second_half_slope_mb_per_min']} MB/min: {'plateau' if memory['plateau'] else 'STILL GROWING'}"
    )
    print(f"  -wal peak {report['peak_wal_mb']} MB, journal peak {report['peak_journal_mb']} MB, database "
          f"{report['database_mb']} MB; server exit code {report['server_exit_code']} after SIGTERM")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=600, help="how long to load (default 600)")
    parser.add_argument("--rate", type=float, default=300, help="requests a second (default 300)")
    parser.add_argument("--threads", type=int, default=8, help="client threads of the load process")
    parser.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "soak.json"))
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)  # the load process: the server's port
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(Load(args.load, args.rate, args.seconds, args.threads, json.loads(args.tokens)).run()))
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
