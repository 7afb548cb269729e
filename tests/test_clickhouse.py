"""The ClickHouse mirror (SPEC §10), against a real clickhouse-server process (the `clickhouse` fixture): what
ClickHouse holds, read with FINAL, is exactly what SQLite holds, through restarts and kill -9 of either side."""

import http.client
import json
import random
import re
import sqlite3
import threading
import time

import pytest
from conftest import CHROME, cli, migrated_from, new_token
from test_journal import retry_with_the_fix, without_status
from test_reliability import Load, request
from test_storage import web_event, write_unfolded

import prisme_lite

pytestmark = pytest.mark.server

TABLES = ["checkouts", "counter_increments", "events", "server_events", "sessions", "widget_events"]
CAUGHT_UP = 90.0  # seconds the mirror may take to catch up on a crowded machine (it polls, never sleeps blindly)


def test_init_creates_every_table_and_running_it_again_changes_nothing(clickhouse, tmp_path):
    database, url = clickhouse.database()
    for _ in range(2):
        done = cli("clickhouse", "init", "--clickhouse-url", url, db=tmp_path / "absent.db")
        assert done.returncode == 0, done.stderr
        assert database in done.stdout
    assert clickhouse.query("SHOW TABLES", database).split() == TABLES
    assert not (tmp_path / "absent.db").exists()  # init needs ClickHouse only
    engines = clickhouse.rows(f"SELECT name, engine FROM system.tables WHERE database = '{database}'")
    assert {row["engine"] for row in engines} == {"ReplacingMergeTree"}


def test_insert_ships_rows_that_final_reads_once_at_their_latest_version(clickhouse):
    database, url = clickhouse.database()
    target = prisme_lite.ClickHouseTarget.parse(url)
    prisme_lite.clickhouse_init(target)
    row = {"client_id": "c", "action_id": "like", "page_id": "p", "day": 20424, "node_id": "n1"}
    assert target.insert("counter_increments", [row | {"count": 1, "version": 1}]) == 1
    target.insert("counter_increments", [row | {"count": 3, "version": 2}, row | {"count": 1, "version": 1}])
    assert clickhouse.rows("SELECT count, version FROM counter_increments FINAL", database) == [
        {"count": 3, "version": 2}
    ]
    with pytest.raises(prisme_lite.ClickHouseError, match="answered 4"):
        target.insert("no_such_table", [row])


def test_a_url_with_a_password_is_masked_and_sent_as_basic_auth():
    url = "http://alice:s3cret@127.0.0.1:8123/?database=stats&max_insert_block_size=1000"
    target = prisme_lite.ClickHouseTarget.parse(url)
    assert target.endpoint == "http://127.0.0.1:8123/"
    assert target.database == "stats"
    assert target.settings == (("max_insert_block_size", "1000"),)
    assert target.headers == {"Authorization": "Basic YWxpY2U6czNjcmV0"}
    assert prisme_lite.masked_url(url) == "http://alice:***@127.0.0.1:8123/?database=stats&max_insert_block_size=1000"
    with pytest.raises(prisme_lite.ConfigError, match="database must be"):
        prisme_lite.ClickHouseTarget.parse("http://127.0.0.1:8123/?database=a;DROP")
    for wrong in ("127.0.0.1:8123", "ftp://h/", "http://h:port/", "http://:pw@h:99999/"):
        with pytest.raises(prisme_lite.ConfigError, match="must be an http"):
            prisme_lite.ClickHouseTarget.parse(wrong)


# What the mirror must have shipped ------------------------------------------------------------------------------


def sqlite_rows(db):
    """Each mirrored table's rows in SQLite, as ClickHouse should hold them (the mirror's own column lists)."""
    columns = prisme_lite.clickhouse_columns()
    with sqlite3.connect(db) as conn:
        return {
            table.name: {
                tuple(row) for row in conn.execute(f"SELECT {', '.join(columns[table.name])} FROM {table.source}")
            }
            for table in prisme_lite.MIRRORED
        }


def clickhouse_rows(clickhouse, database, node_id, final=True):
    columns = prisme_lite.clickhouse_columns()
    return {
        name: {
            tuple(row[c] for c in columns[name])
            for row in clickhouse.rows(
                f"SELECT {', '.join(columns[name])} FROM {name} {'FINAL' if final else ''} WHERE node_id = '{node_id}'",
                database,
            )
        }
        for name in TABLES
    }


def wait_mirrored(clickhouse, database, node_id, db):
    """Wait (bounded) until ClickHouse holds exactly SQLite's rows of every table; then they are asserted equal."""
    deadline = time.monotonic() + CAUGHT_UP
    while True:
        expected, found = sqlite_rows(db), clickhouse_rows(clickhouse, database, node_id)
        if expected == found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for name in TABLES:
        missing, extra = expected[name] - found[name], found[name] - expected[name]
        assert not missing and not extra, (
            f"{name}: {len(missing)} missing, e.g. {sorted(missing)[:2]}; {len(extra)} extra"
        )
    return found


def healthcheck(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/api/v1/healthcheck")
    answer = conn.getresponse()
    return answer.status, json.loads(answer.read())


class Families:
    """Events of every family sent to a running server, each checked acknowledged."""

    def __init__(self, process, db):
        self.process = process
        self.public, self.backend = new_token(db, "track_public"), new_token(db, "capture_publish")
        self.admin = cli("admin-token", db=db).stdout.strip()

    def send(self, method, path, body=None, headers=None, status=200):
        conn = self.process.connection()
        conn.request(method, path, body, headers or {})
        answer = conn.getresponse()
        text = answer.read()
        assert answer.status == status, (path, answer.status, text[:300])
        return text

    def web(self, tag):
        browser = {"Origin": "http://localhost", "User-Agent": CHROME, "Content-Type": "application/json"}
        for n in range(3):  # one visit of three pages: its session changes after it is stored
            page = {"X-Prisme-Referrer": f"http://localhost/{tag}/{n}?utm_source=news"}
            self.send("POST", "/api/v1/events/pageviews", None, browser | page)
        page = {"X-Prisme-Referrer": f"http://localhost/{tag}/2"}
        self.send("POST", f"/api/v1/events/custom/signup-{tag}", json.dumps({"plan": "pro"}), browser | page)
        for route in ("outbound-links", "file-downloads"):
            self.send("POST", f"/api/v1/events/{route}", f"https://files.example.org/{tag}.pdf", browser | page)

    def server_events(self, tag):
        body = json.dumps([{"label": "View", "content_item": {"id": f"c-{tag}"}, "customer": {"id": f"u-{tag}"}}])
        auth = {"Authorization": f"Bearer {self.backend}", "Content-Type": "application/json"}
        self.send("POST", "/events", body, auth, status=202)

    def widgets(self, tag):
        beacon = f"auth_token={self.public}&analytics_id=v-{tag}"
        self.send("GET", f"/track/widget/inst-{tag}/category/12/render.gif?{beacon}&pics=8&segments[]=country:US")
        self.send("GET", f"/track/widget/inst-{tag}/best/media/777/view.json?{beacon}&ab_testing=2&pics=8")
        self.send(
            "GET", f"/track/transaction/T-{tag}/checkout.json?{beacon}&products[]=sock:0.1&products[]=hat:12.5"
            "&currency_code=eur&segment=country:DE", headers={"User-Agent": CHROME},
        )  # fmt: skip

    def counters(self, tag):
        admin = {"Authorization": f"Bearer {self.admin}", "Content-Type": "application/json"}
        client = json.loads(
            self.send("POST", "/api/v1/register", json.dumps(
                {"clientName": tag, "domainName": f"{tag}.localhost", "emailId": "a@b.cd"}), admin, 201)
        )  # fmt: skip
        configure = {**client, "validPageIds": ["p"], "validActionIds": ["likes"]}
        self.send("POST", "/api/v1/configure", json.dumps(configure), {"Content-Type": "application/json"})
        for n in range(2):  # two visitors: the day's count grows after its row is stored
            origin = {"Origin": f"http://{tag}.localhost", "User-Agent": f"{CHROME} {tag}{n}"}
            token = json.loads(self.send("GET", "/api/v1/token", headers=origin))["token"]
            body = json.dumps({"token": token})
            self.send("POST", "/api/v1/likes/p/increment", body, origin | {"Content-Type": "application/json"})

    def every_family(self, tag):
        self.web(tag)
        self.server_events(tag)
        self.widgets(tag)
        self.counters(tag)


def initialised(clickhouse, prefix="prisme"):
    database, url = clickhouse.database(prefix)
    prisme_lite.clickhouse_init(prisme_lite.ClickHouseTarget.parse(url))
    return database, url


def test_every_family_reaches_clickhouse_with_exactly_the_sqlite_rows_history_included(clickhouse, run, tmp_path):
    db = tmp_path / "prisme.db"
    database, url = initialised(clickhouse)
    before = run("--rate-limit", "0", "--origins", "localhost,a.localhost,b.localhost")
    Families(before, db).every_family("a")  # stored before the mirror is switched on
    assert before.stop() == 0
    process = run("--rate-limit", "0", "--origins", "localhost,a.localhost,b.localhost", "--clickhouse-url", url,
                  "--node-id", "node-a")  # fmt: skip
    Families(process, db).every_family("b")
    found = wait_mirrored(clickhouse, database, "node-a", db)
    assert {len(rows) for rows in found.values()} > {0}  # every table has rows
    # one visit of six pageviews: begun before the switch-on, it went on after and is shipped as it is now
    assert [row[8] for row in found["sessions"]] == [6]
    assert sorted(row[4] for row in found["counter_increments"]) == [2, 2]
    status, health = healthcheck(process.port)
    assert (status, health["clickhouse"]["behind_rows"], health["clickhouse"]["error"]) == (200, 0, None)
    metrics = (
        Families(process, db)
        .send("GET", "/metrics", headers={"Authorization": f"Bearer {new_token(db, 'metrics_read')}"})
        .decode()
    )
    assert "\nprisme_clickhouse_behind_rows 0\n" in metrics and "\nprisme_clickhouse_failing 0\n" in metrics
    shipped = re.search(r'\nprisme_clickhouse_shipped_total\{table="events"\} (\d+)\n', metrics)
    assert int(shipped[1]) >= 12  # this process shipped the history too
    shown = cli("clickhouse", "status", "--clickhouse-url", url, "--node-id", "node-a", db=db)
    assert "behind: 0 rows, 0.0 s" in shown.stdout, shown.stdout + shown.stderr
    assert "node node-a" in shown.stdout


def test_a_password_in_the_url_is_never_printed(clickhouse, run, tmp_path):
    _, url = initialised(clickhouse)
    secret_url = url.replace("http://", "http://default:hunter2@")  # the default user has no password: any is refused
    process = run("--clickhouse-url", secret_url)
    shown = cli("clickhouse", "status", "--clickhouse-url", secret_url, db=tmp_path / "prisme.db")
    assert process.stop() == 0
    printed = shown.stdout + shown.stderr + (tmp_path / "prisme.log").read_text() + "".join(process.banner)
    assert "default:***@" in shown.stdout
    assert "hunter2" not in printed


def stored_once(clickhouse, database, node_id, db, acknowledged):
    """ClickHouse holds every acknowledged event, each once (FINAL), and what duplicates a retry left are extra
    copies of the same rows (without FINAL, at least as many)."""
    found = wait_mirrored(clickhouse, database, node_id, db)
    paths = {row[6] for row in found["events"]}
    assert acknowledged["web"] <= paths
    assert acknowledged["server"] <= {row[6] for row in found["server_events"]}
    assert acknowledged["widget"] <= {row[7] for row in found["widget_events"]}
    for name in ("events", "server_events", "widget_events"):
        [counts] = clickhouse.rows(
            f"SELECT count() AS all_rows, uniqExact(id) AS ids FROM {name} WHERE node_id = '{node_id}'", database
        )
        [final] = clickhouse.rows(f"SELECT count() AS n FROM {name} FINAL WHERE node_id = '{node_id}'", database)
        assert final["n"] == counts["ids"] == len(found[name]) <= counts["all_rows"]


@pytest.mark.reliability
def test_kill_9_of_prisme_lite_under_load_then_restart_leaves_exactly_the_acknowledged_events(
    clickhouse, run, tmp_path
):
    db = tmp_path / "prisme.db"
    database, url = initialised(clickhouse)
    assert cli("init", db=db).returncode == 0
    public, backend = new_token(db, "track_public"), new_token(db, "capture_publish")
    flags = ("--rate-limit", "0", "--events-rate-limit", "0", "--clickhouse-url", url, "--node-id", "n1")
    acknowledged = {"web": set(), "server": set(), "widget": set()}
    rng = random.Random(9)
    for round_ in range(3):
        process = run(*flags)
        load = Load(process.port, round_, acknowledged, [], public, backend)
        workers = [threading.Thread(target=load.web, args=(k,)) for k in range(2)]
        workers += [threading.Thread(target=f) for f in (load.batches, load.widgets)]
        for worker in workers:
            worker.start()
        time.sleep(rng.uniform(0.5, 1.5))  # the mirror is shipping by then: a different moment each round
        process.proc.kill()
        process.proc.wait()
        load.stop.set()
        for worker in workers:
            worker.join()
    process = run(*flags)  # replays the journal, then the mirror ships from its stored position
    assert min(len(keys) for keys in acknowledged.values()) > 10
    stored_once(clickhouse, database, "n1", db, acknowledged)
    assert process.stop() == 0


class Pageviews:
    """Pageviews sent from a thread until stopped; every answer's status is kept."""

    def __init__(self, port):
        self.port, self.stop, self.statuses, self.acknowledged = port, threading.Event(), [], set()
        self.thread = threading.Thread(target=self._send)
        self.thread.start()

    def _send(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        n = 0
        while not self.stop.is_set():
            path = f"/ch-down/{n}"
            headers = {
                "Origin": "http://localhost",
                "X-Prisme-Referrer": f"http://localhost{path}",
                "User-Agent": CHROME,
            }
            status = request(conn, "POST", "/api/v1/events/pageviews", None, headers)
            self.statuses.append(status)
            if status == 200:
                self.acknowledged.add(path)
            n += 1

    def wait_for(self, count, timeout=60):
        deadline = time.monotonic() + timeout
        target = len(self.statuses) + count
        while len(self.statuses) < target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.statuses) >= target, f"only {len(self.statuses)} answers in {timeout} s"

    def end(self):
        self.stop.set()
        self.thread.join()


def poll(check, what, timeout=CAUGHT_UP):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"not {what} within {timeout} s"
        time.sleep(0.1)
    return found


@pytest.mark.reliability
def test_kill_9_of_clickhouse_under_load_ingest_goes_on_the_lag_shows_and_the_mirror_catches_up(
    start_clickhouse, run, tmp_path
):
    clickhouse = start_clickhouse()
    database, url = initialised(clickhouse)
    process = run("--rate-limit", "0", "--clickhouse-url", url, "--node-id", "n1")
    load = Pageviews(process.port)
    load.wait_for(200)
    clickhouse.kill()
    load.wait_for(500)  # ClickHouse is down meanwhile
    lagging = poll(
        lambda: (h := healthcheck(process.port)[1]["clickhouse"])["behind_rows"] > 0 and h["error"] and h, "lagging"
    )
    assert lagging["behind_seconds"] >= 0
    shown = cli("clickhouse", "status", "--clickhouse-url", url, db=tmp_path / "prisme.db")
    assert "ClickHouse does not answer" in shown.stdout and "behind: 0 rows" not in shown.stdout, shown.stdout
    clickhouse.start()  # on the same data: what it took before the crash is still there
    load.wait_for(200)
    load.end()
    assert set(load.statuses) == {200}, "ingest refused events while ClickHouse was down"
    stored_once(
        clickhouse, database, "n1", tmp_path / "prisme.db", {"web": load.acknowledged, "server": set(), "widget": set()}
    )
    assert poll(lambda: healthcheck(process.port)[1]["clickhouse"]["error"] is None, "recovered")
    assert process.stop() == 0


def test_two_nodes_on_two_databases_share_one_clickhouse(clickhouse, run, tmp_path):
    database, url = initialised(clickhouse)
    nodes = {}
    for name in ("east", "west"):
        db = tmp_path / f"{name}.db"
        process = run("--rate-limit", "0", "--clickhouse-url", url, "--node-id", name, db=db)
        Families(process, db).web(name)
        nodes[name] = (db, process)
    for name, (db, process) in nodes.items():
        wait_mirrored(clickhouse, database, name, db)
        assert process.stop() == 0
    rows = clickhouse.rows("SELECT node_id, id, path FROM events FINAL ORDER BY node_id, id", database)
    assert [(row["node_id"], row["id"]) for row in rows] == [("east", i) for i in range(1, 7)] + [
        ("west", i) for i in range(1, 7)
    ]  # the same ids on both nodes: (node_id, id) tells them apart
    assert {row["path"].split("/")[1] for row in rows} == {"east", "west"}


def test_a_node_id_is_made_once_and_kept_in_the_database(clickhouse, run, tmp_path):
    database, url = initialised(clickhouse)
    for _ in range(2):
        process = run("--clickhouse-url", url)
        assert process.stop() == 0
    with sqlite3.connect(tmp_path / "prisme.db") as conn:
        [(node,)] = conn.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchall()
    assert node.startswith("node-") and len(node) == 13
    bad = cli(
        "serve", "--port", "0", "--clickhouse-url", url, "--node-id", "bad id", db=tmp_path / "prisme.db", timeout=60
    )
    assert bad.returncode == 2 and "node_id must be" in bad.stderr


def test_prune_keeps_the_rows_not_yet_shipped(clickhouse, run, tmp_path):
    db = tmp_path / "prisme.db"
    database, url = clickhouse.database()  # not initialised yet: every insert fails, nothing is shipped
    process = run("--rate-limit", "0", "--clickhouse-url", url, "--node-id", "n1")
    Families(process, db).web("old")
    assert process.stop() == 0
    with sqlite3.connect(db) as conn:  # ten days ago, as if the mirror had been down since
        conn.execute("UPDATE events SET ts = ts - 10 * 86400000")
        conn.execute(
            "UPDATE sessions SET started_at = started_at - 10 * 86400000, last_seen = last_seen - 10 * 86400000"
        )
    pruned = cli("prune", "--older-than", "1", "--clickhouse-url", url, db=db)
    assert pruned.stdout == "deleted 0 rows older than 1 day\n", pruned.stdout + pruned.stderr
    prisme_lite.clickhouse_init(prisme_lite.ClickHouseTarget.parse(url))
    process = run("--rate-limit", "0", "--clickhouse-url", url, "--node-id", "n1")
    wait_mirrored(clickhouse, database, "n1", db)
    assert process.stop() == 0
    pruned = cli("prune", "--older-than", "1", "--clickhouse-url", url, db=db)
    # all shipped: they go, but for the newest event and session (their ids must never be given again: ClickHouse
    # holds them)
    assert pruned.stdout == "deleted 5 rows older than 1 day\n", pruned.stdout + pruned.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id FROM events").fetchall() == [(6,)]
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (1,)
    [count] = clickhouse.rows("SELECT count() AS n FROM events FINAL", database)
    assert count["n"] == 6  # ClickHouse keeps them (clickhouse_retention_days apart)


def test_clickhouse_retention_deletes_this_nodes_old_rows_there(clickhouse, run, tmp_path):
    database, url = initialised(clickhouse)
    target = prisme_lite.ClickHouseTarget.parse(url)
    old = prisme_lite.now_ms() - 10 * prisme_lite.DAY_MS
    row = {"client_id": "c", "action_id": "likes", "page_id": "p", "count": 1, "version": 1}
    target.insert("counter_increments", [
        row | {"day": old // prisme_lite.DAY_MS, "node_id": "n1"}, row | {"day": old // prisme_lite.DAY_MS, "node_id": "n2"},
    ])  # fmt: skip
    process = run("--rate-limit", "0", "--clickhouse-url", url, "--node-id", "n1", "--clickhouse-retention-days", "3")
    Families(process, tmp_path / "prisme.db").web("new")
    poll(
        lambda: clickhouse.rows("SELECT node_id FROM counter_increments", database) == [{"node_id": "n2"}],
        "the old row of n1 deleted",
    )  # another node's rows are its own to prune
    wait_mirrored(clickhouse, database, "n1", tmp_path / "prisme.db")  # today's rows stay
    assert process.stop() == 0


def test_switched_off_then_on_again_the_rows_that_changed_meanwhile_are_shipped_again(clickhouse, run, tmp_path):
    db = tmp_path / "prisme.db"
    database, url = initialised(clickhouse)
    mirrored = ("--rate-limit", "0", "--clickhouse-url", url, "--node-id", "n1")
    process = run(*mirrored)
    Families(process, db).web("on")
    wait_mirrored(clickhouse, database, "n1", db)
    assert process.stop() == 0
    process = run("--rate-limit", "0")  # off: the visit goes on, unrecorded by any trigger
    Families(process, db).web("off")
    assert process.stop() == 0
    process = run(*mirrored)
    found = wait_mirrored(clickhouse, database, "n1", db)
    assert [row[8] for row in found["sessions"]] == [6]
    assert process.stop() == 0


def test_an_older_database_gets_the_mirrors_table(tmp_path):
    migrated_from(tmp_path / "prisme.db", 8, "mirror_pending")
    with sqlite3.connect(tmp_path / "prisme.db") as conn:
        assert conn.execute("SELECT count(*) FROM mirror_pending").fetchone() == (0,)


def test_a_dead_letter_stored_by_a_retry_reaches_clickhouse_with_the_session_it_joined(clickhouse, run, tmp_path):
    """dead-letters retry runs with the server stopped: the visit its line goes on with is shipped again."""
    db = tmp_path / "prisme.db"
    database, url = initialised(clickhouse)
    mirrored = ("--rate-limit", "0", "--clickhouse-url", url, "--node-id", "n1")
    assert cli("init", db=db).returncode == 0
    write_unfolded(db, [web_event(0), without_status(7), web_event(14)])  # one visitor's visit; 7 cannot be stored
    process = run(*mirrored, db=db)
    found = wait_mirrored(clickhouse, database, "n1", db)
    assert [row[8] for row in found["sessions"]] == [2]
    assert process.stop() == 0
    retried = retry_with_the_fix(tmp_path, db)
    assert retried.stdout == "stored 1 of 1 dead letter\n", retried.stderr
    process = run(*mirrored, db=db)
    found = wait_mirrored(clickhouse, database, "n1", db)
    assert [row[8] for row in found["sessions"]] == [3]  # as SQLite has it: the visit went on
    assert process.stop() == 0
