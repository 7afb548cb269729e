"""Crash safety (SPEC §8): kill -9 at a random moment under load from every API family, twenty times; after each
restart every acknowledged event is stored exactly once and the counter never skips or doubles."""

import http.client
import json
import random
import sqlite3
import threading
import time

import pytest
from conftest import CHROME, Process, cli, new_token

import prisme_lite

pytestmark = [pytest.mark.server, pytest.mark.reliability]
ROUNDS = 20


def request(conn, method, path, body=None, headers=None):
    try:
        conn.request(method, path, body, headers or {})
        answer = conn.getresponse()
        answer.read()
        return answer.status
    except (OSError, http.client.HTTPException):
        return None  # the server died mid-request: not acknowledged


class Load:
    """One round's load from every family; what was acknowledged goes into `acknowledged`."""

    def __init__(self, port, round_, acknowledged, tokens, public, backend):
        self.port, self.round, self.acknowledged, self.tokens = port, round_, acknowledged, tokens
        self.public, self.backend = public, backend
        self.stop, self.lock = threading.Event(), threading.Lock()
        self.increments_acked = self.increments_sent = 0

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def keep(self, name, keys):
        with self.lock:
            self.acknowledged[name].update(keys)

    def web(self, k):
        conn = self.connection()
        for n in range(100_000):
            if self.stop.is_set():
                return
            key = f"/r{self.round}/w{k}/{n}"
            headers = {
                "Origin": "http://localhost",
                "X-Prisme-Referrer": f"http://localhost{key}",
                "User-Agent": CHROME,
            }
            if request(conn, "POST", "/api/v1/events/pageviews", None, headers) == 200:
                self.keep("web", [key])

    def batches(self):
        conn = self.connection()
        for n in range(100_000):
            if self.stop.is_set():
                return
            ids = [f"r{self.round}-b{n}-{e}" for e in range(5)]
            body = json.dumps([{"label": "View", "content_item": {"id": "x"}, "customer": {"id": i}} for i in ids])
            headers = {"Authorization": f"Bearer {self.backend}", "Content-Type": "application/json"}
            if request(conn, "POST", "/events", body, headers) == 202:
                self.keep("server", ids)

    def widgets(self):
        conn = self.connection()
        for n in range(100_000):
            if self.stop.is_set():
                return
            analytics_id = f"r{self.round}-g{n}"
            path = f"/track/widget/home/best/render.gif?auth_token={self.public}&analytics_id={analytics_id}&pics=1"
            if request(conn, "GET", path, None, {"User-Agent": CHROME}) == 200:
                self.keep("widget", [analytics_id])

    def increments(self):
        conn = self.connection()
        for token in self.tokens:
            if self.stop.is_set():
                return
            self.increments_sent += 1
            body = json.dumps({"token": token})
            headers = {"Content-Type": "application/json", "User-Agent": CHROME}
            if request(conn, "POST", "/api/v1/likes/p/increment", body, headers) == 200:
                self.increments_acked += 1


def test_kill_9_twenty_times_loses_and_doubles_nothing(tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    public, backend = new_token(db, "track_public"), new_token(db, "capture_publish")
    server = Process(db, "--rate-limit", "0", "--events-rate-limit", "0")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    admin = {
        "Authorization": f"Bearer {server.banner[2].split(': ', 1)[1].strip()}",
        "Content-Type": "application/json",
    }
    conn.request(
        "POST",
        "/api/v1/register",
        json.dumps({"clientName": "c", "domainName": "localhost", "emailId": "a@b.cd"}),
        admin,
    )
    client = json.loads(conn.getresponse().read())
    conn.request(
        "POST",
        "/api/v1/configure",
        json.dumps({**client, "validPageIds": ["p"], "validActionIds": ["likes"]}),
        {"Content-Type": "application/json"},
    )
    conn.getresponse().read()
    acknowledged = {"web": set(), "server": set(), "widget": set()}
    increments_acked = increments_sent = 0
    rng = random.Random(20)
    for round_ in range(ROUNDS):
        tokens = []
        for n in range(40):  # distinct tokens: each may count once
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request(
                "GET", "/api/v1/token", headers={"Origin": "http://localhost", "User-Agent": f"{CHROME} r{round_} n{n}"}
            )
            tokens.append(json.loads(conn.getresponse().read())["token"])
        load = Load(server.port, round_, acknowledged, tokens, public, backend)
        workers = [threading.Thread(target=load.web, args=(k,)) for k in range(3)]
        workers += [threading.Thread(target=f) for f in (load.batches, load.widgets, load.increments)]
        for worker in workers:
            worker.start()
        time.sleep(rng.uniform(0.2, 1.2))  # a different moment each round
        server.proc.kill()
        server.proc.wait()
        load.stop.set()
        for worker in workers:
            worker.join()
        increments_acked += load.increments_acked
        increments_sent += load.increments_sent
        server.log.close()
        server = Process(db, "--rate-limit", "0", "--events-rate-limit", "0")  # replays the journal
        with sqlite3.connect(db) as check:
            web_rows = [row[0] for row in check.execute("SELECT path FROM events")]
            server_rows = [row[0] for row in check.execute("SELECT customer_id FROM server_events")]
            widget_rows = [row[0] for row in check.execute("SELECT analytics_id FROM widget_events")]
            count = check.execute("SELECT coalesce(sum(count), 0) FROM counters").fetchone()[0]
        for name, rows in (("web", web_rows), ("server", server_rows), ("widget", widget_rows)):
            assert len(rows) == len(set(rows)), f"round {round_}: a {name} event stored twice"
            missing = acknowledged[name] - set(rows)
            assert not missing, f"round {round_}: {len(missing)} acknowledged {name} events lost"
        assert increments_acked <= count <= increments_sent, (round_, increments_acked, count, increments_sent)
    assert server.stop() == 0
    assert prisme_lite.check(str(db)) == 0
    assert min(len(rows) for rows in acknowledged.values()) > 50
    print(f"{ROUNDS} kill -9 rounds: acknowledged and stored once: " + ", ".join(
        f"{len(rows)} {name}" for name, rows in acknowledged.items()
    ) + f"; counter {count} (acknowledged {increments_acked}, sent {increments_sent})")  # fmt: skip
