"""Storage (SPEC §8): the journal, the writer, exactly-once replay, recovery, and the schema version."""

import errno
import json
import os
import resource
import signal
import sqlite3
import threading

import pytest
from conftest import make_config

import prisme_lite


def web_event(n, site="localhost"):
    return {
        "ts": 1_790_000_000_000 + n,
        "site": site,
        "kind": "pageview",
        "name": None,
        "host": site,
        "path": f"/{n}",
        "referrer": "direct",
        "utm_source": None,
        "utm_medium": None,
        "utm_campaign": None,
        "utm_term": None,
        "utm_content": None,
        "visitor_id": f"v{n % 7}",
        "browser": "Chrome",
        "os": "Linux",
        "device": "desktop",
        "country": "XX",
        "status": 200,
        "props": None,
    }


def write_unfolded(db, records):
    """What a kill -9 leaves: lines acknowledged (written to the journal) that the writer had not yet folded."""
    with open(f"{db}.journal-1", "ab") as file:
        for record in records:
            file.write(json.dumps(["web", record]).encode() + b"\n")


def stored_then_killed(config, stored, unfolded):
    """Events `stored` by a server that then stopped, and journal lines of events `unfolded` it acknowledged but
    never folded (what a kill -9 leaves); events are web_event(n) for n in each range."""
    ctx = prisme_lite.Context(config)
    for n in stored:
        ctx.writer.append("web", web_event(n))
    ctx.close()
    write_unfolded(config["db"], [web_event(n) for n in unfolded])


def paths(db):
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT path FROM events ORDER BY id")]


def test_appended_events_reach_the_database(tmp_path):
    ctx = prisme_lite.Context(make_config(tmp_path))
    for n in range(1000):
        ctx.writer.append("web", web_event(n))
    ctx.writer.flush()
    assert paths(ctx.config["db"]) == [f"/{n}" for n in range(1000)]
    ctx.close()


def test_journal_lines_not_yet_folded_are_replayed_once_at_start_up(tmp_path):
    """What a kill -9 leaves: lines in the journal past the committed position. A restart folds exactly those."""
    config = make_config(tmp_path)
    # Acknowledged after the last commit, then the process died: the lines are in the journal only.
    stored_then_killed(config, range(10), range(10, 15))
    journal = config["db"] + ".journal-1"
    with open(journal, "ab") as file:
        file.write(b'["web", {"ts": 17')  # a torn line: its write never returned, so it was never acknowledged
    for _restart in range(2):
        ctx = prisme_lite.Context(config)
        ctx.close()
    assert paths(config["db"]) == [f"/{n}" for n in range(15)]
    assert os.path.getsize(journal) == sum(len(prisme_lite.journal_line("web", web_event(n))) for n in range(10)) + sum(
        len(json.dumps(["web", web_event(n)])) + 1 for n in range(10, 15)
    )


def test_a_database_copied_without_its_journal_stores_what_it_acknowledges_next(tmp_path):
    """`cp prisme.db elsewhere.db`: the copy's position counts lines of a journal it does not have. New lines must
    not start below that position, where the writer would take them for folded (bench/run found 300 of 300 lost)."""
    first = make_config(tmp_path)
    ctx = prisme_lite.Context(first)
    for n in range(300):
        ctx.writer.append("web", web_event(n))
    ctx.close()
    (tmp_path / "copy").mkdir()
    copy = make_config(tmp_path / "copy")
    with open(first["db"], "rb") as source, open(copy["db"], "wb") as target:
        target.write(source.read())
    ctx = prisme_lite.Context(copy)
    for n in range(300, 600):
        ctx.writer.append("web", web_event(n))
    ctx.close()
    assert paths(copy["db"]) == [f"/{n}" for n in range(600)]
    ctx = prisme_lite.Context(copy)  # and a restart replays nothing twice
    ctx.close()
    assert len(paths(copy["db"])) == 600


def test_the_journal_rotates_and_old_files_are_deleted(tmp_path, monkeypatch):
    monkeypatch.setattr(prisme_lite, "JOURNAL_ROTATE", 2000)
    config = make_config(tmp_path)
    ctx = prisme_lite.Context(config)
    for n in range(100):
        ctx.writer.append("web", web_event(n))
        if n % 10 == 9:
            ctx.writer.flush()
    ctx.close()
    journals = sorted(name for name in os.listdir(tmp_path) if ".journal-" in name)
    assert len(journals) == 1 and journals[0] != "prisme.db.journal-1"
    ctx = prisme_lite.Context(config)  # nothing replayed twice after rotations
    ctx.close()
    assert paths(config["db"]) == [f"/{n}" for n in range(100)]


def test_a_line_that_cannot_be_stored_is_skipped_without_losing_its_batch(tmp_path, caplog):
    config = make_config(tmp_path)
    ctx = prisme_lite.Context(config)
    ctx.writer.close()  # stop the writer so the three lines fold in one batch at the next start
    bad = dict(web_event(1), path=None)  # NOT NULL
    write_unfolded(config["db"], [web_event(0), bad, web_event(2)])
    ctx = prisme_lite.Context(config)
    ctx.close()
    assert paths(config["db"]) == ["/0", "/2"]
    assert "journal line skipped" in caplog.text


def test_jobs_that_wait_get_their_result_or_their_own_error(tmp_path):
    ctx = prisme_lite.Context(make_config(tmp_path))
    assert ctx.writer.run(lambda conn: conn.execute("SELECT 41 + 1").fetchone()[0]) == 42

    def failing(conn):
        prisme_lite.set_meta(conn, "half", "written")
        raise ValueError("no")

    with pytest.raises(ValueError):
        ctx.writer.run(failing)
    assert ctx.writer.run(prisme_lite.get_meta, "half") is None  # nothing of the failed job stayed
    ctx.close()


def test_a_write_failure_is_503_and_the_writer_recovers_when_it_clears(tmp_path):
    """A long write lock from elsewhere (a backup, a migration): events wait in the journal, then arrive."""
    config = make_config(tmp_path)
    ctx = prisme_lite.Context(config)
    blocker = sqlite3.connect(config["db"], isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    ctx.writer.conn.execute("PRAGMA busy_timeout = 50")
    ctx.writer.append("web", web_event(1))  # acknowledged: it is in the journal
    with pytest.raises(prisme_lite.Unavailable, match="cannot take writes: database is locked"):
        ctx.writer.run(lambda conn: None)
    blocker.execute("ROLLBACK")
    blocker.close()
    ctx.writer.flush()
    assert ctx.writer.failure is None
    assert paths(config["db"]) == ["/1"]
    ctx.close()


def test_appends_from_many_threads_are_all_stored_once(tmp_path):
    ctx = prisme_lite.Context(make_config(tmp_path))

    def send(start):
        for n in range(start, start + 500):
            ctx.writer.append("web", web_event(n))

    threads = [threading.Thread(target=send, args=(k * 500,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ctx.close()
    assert sorted(paths(ctx.config["db"]), key=lambda p: int(p[1:])) == [f"/{n}" for n in range(4000)]


def test_the_journal_write_keeps_the_gil_and_raises_the_kernels_error():
    """journal_write calls libc's write(2) without releasing the GIL; its failures are OSErrors like os.write's."""
    assert prisme_lite.journal_write is not os.write  # libc's write was found: the ctypes path is the one tested
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    try:
        with pytest.raises(OSError) as raised:
            prisme_lite.journal_write(full, b"line\n")
        assert (raised.value.errno, raised.value.strerror) == (errno.ENOSPC, os.strerror(errno.ENOSPC))
    finally:
        os.close(full)
    with pytest.raises(OSError) as raised:
        prisme_lite.journal_write(full, b"line\n")  # closed
    assert raised.value.errno == errno.EBADF


def test_a_short_journal_write_acknowledges_nothing_and_leaves_no_torn_line(tmp_path):
    """The kernel writes only part of a line (here: a file size limit, as a full disk can): the append is refused,
    the part is cut off again, and the next append is stored whole, once."""
    config = make_config(tmp_path)
    ctx = prisme_lite.Context(config)
    ctx.writer.append("web", web_event(1))
    ctx.writer.flush()  # the writer is idle: nothing else of this process writes while the limit is low
    journal = prisme_lite.journal_file(config["db"], ctx.writer.generation)
    size = os.path.getsize(journal)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    ignored = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead of EFBIG
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, limits[1]))  # room for 20 bytes of the next line
        with pytest.raises(prisme_lite.Unavailable, match="the journal cannot be written: .*short write"):
            ctx.writer.append("web", web_event(2))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, ignored)
    assert os.path.getsize(journal) == size == ctx.writer.appended  # the 20 bytes are gone
    ctx.writer.append("web", web_event(3))
    ctx.close()
    assert paths(config["db"]) == ["/1", "/3"]
    with open(journal, "rb") as file:
        assert [json.loads(line)[2]["path"] for line in file] == ["/1", "/3"]


class ConnectionClosedLate:
    """The writer's connection, but its close() first runs `before_close`: the moment the last fold is done."""

    def __init__(self, conn, before_close):
        self.conn, self.before_close = conn, before_close

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def close(self):
        self.before_close()
        self.conn.close()


def test_an_event_that_arrives_while_the_writer_stops_is_stored_or_refused_never_left_behind(tmp_path):
    """A stop under load: a request that reaches the journal after the writer's last fold was answered 200 and
    stayed out of the database until a restart. From the moment close() begins, appends are refused (503)."""
    ctx = prisme_lite.Context(make_config(tmp_path))
    ctx.writer.append("web", web_event(1))
    late = []

    def append_late():
        try:
            ctx.writer.append("web", web_event(2))
            late.append("acknowledged")
        except prisme_lite.Unavailable as error:
            late.append(str(error))

    ctx.writer.conn = ConnectionClosedLate(ctx.writer.conn, append_late)
    ctx.close()
    assert late == ["the server is stopping"]
    assert paths(ctx.config["db"]) == ["/1"]


def test_schema_version_is_recorded_and_a_newer_database_is_refused(tmp_path):
    db = str(tmp_path / "v.db")
    prisme_lite.open_database(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == prisme_lite.SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA user_version = {prisme_lite.SCHEMA_VERSION + 1}")
    with pytest.raises(prisme_lite.ConfigError, match="newer than this prisme-lite"):
        prisme_lite.open_database(db)


def test_an_older_database_is_migrated_in_order(tmp_path, monkeypatch):
    db = str(tmp_path / "m.db")
    prisme_lite.open_database(db)  # at the current version, v
    with sqlite3.connect(db) as conn:
        prisme_lite.add_origin(conn, "kept.example")
    v = prisme_lite.SCHEMA_VERSION
    monkeypatch.setattr(prisme_lite, "SCHEMA_VERSION", v + 2)
    monkeypatch.setattr(
        prisme_lite,
        "MIGRATIONS",
        {v: "ALTER TABLE meta ADD COLUMN note TEXT;", v + 1: lambda: "UPDATE meta SET note = 'migrated';"},
    )
    prisme_lite.set_meta(sqlite3.connect(db, isolation_level=None), "k", "v")
    prisme_lite.open_database(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == v + 2
        assert conn.execute("SELECT note FROM meta WHERE key = 'k'").fetchone() == ("migrated",)
        assert prisme_lite.stored_origins(conn) == ["kept.example"]


def test_a_version_1_database_gets_its_daily_counts_from_the_rows_it_has(tmp_path, capsys):
    """Schema version 2 added the daily counts: the migration counts what a version 1 database already holds."""
    db = str(tmp_path / "v1.db")
    with sqlite3.connect(db) as conn:  # the writer's rows, without what version 2 added (which it also writes now)
        conn.executescript(prisme_lite.schema_text())
        store = prisme_lite.WebEventStore(30 * 60_000)
        day = 86_400_000
        store(conn, [
            {**web_event(n), "ts": 20_000 * day + n * 600_000, "visitor_id": f"prisme_{n % 5 + n // 144:016x}"}
            for n in range(300)
        ])  # fmt: skip
        store(conn, [{**web_event(n), "ts": 20_001 * day + n, "kind": "custom", "name": "signup"} for n in range(7)])
        query = (
            "SELECT type, name FROM sqlite_master WHERE name IN ('daily_counts', 'daily_visitors') OR type = 'trigger'"
        )
        for kind, name in conn.execute(query).fetchall():
            conn.execute(f"DROP {kind} {name}")
        conn.execute("PRAGMA user_version = 1")
    prisme_lite.open_database(db)
    assert prisme_lite.check(db) == 0, capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == prisme_lite.SCHEMA_VERSION
        assert conn.execute("SELECT sum(n) FROM daily_counts WHERE dim = 'pageviews'").fetchone()[0] == 300
        assert conn.execute("SELECT sum(n) FROM daily_counts WHERE dim = 'custom'").fetchone()[0] == 7
        assert conn.execute("SELECT n FROM daily_counts WHERE dim = 'visitors' AND day = 20000").fetchone()[0] == 5


# Schema version 4's delete trigger of sessions, before the visit_* counts.
VERSION_4_SESSION_TRIGGER = """
CREATE TRIGGER session_uncounted AFTER DELETE ON sessions BEGIN
    INSERT INTO daily_counts (site, dim, day, value, n)
    SELECT OLD.site, column1, OLD.started_at / 86400000, column2, -column3 FROM (VALUES
        ('sessions', '', 1), ('bounces', '', OLD.pageviews = 1), ('duration', '', OLD.last_seen - OLD.started_at),
        ('entry_path', OLD.entry_path, 1), ('exit_path', OLD.exit_path, 1)
    ) WHERE true
    ON CONFLICT DO UPDATE SET n = n + excluded.n;
END;
"""


def test_the_migration_to_version_5_counts_visits_by_referrer_and_its_trigger_takes_them_off(tmp_path, capsys):
    """A version 4 database: its sessions are counted by referrer and campaign, and a pruned one is taken off."""
    db = str(tmp_path / "v4.db")
    with sqlite3.connect(db) as conn:
        conn.executescript(prisme_lite.schema_text())
        store = prisme_lite.WebEventStore(30 * 60_000)
        store(conn, [
            {**web_event(n), "ts": 20_000 * 86_400_000 + n * 3_600_000, "visitor_id": f"v{n}",
             "referrer": "google.com" if n % 3 else "direct", "utm_source": "news" if n % 2 else None}
            for n in range(12)
        ])  # fmt: skip
        conn.execute("DELETE FROM daily_counts WHERE dim LIKE 'visit%'")
        conn.executescript("DROP TRIGGER session_uncounted;" + VERSION_4_SESSION_TRIGGER + "PRAGMA user_version = 4;")
    prisme_lite.open_database(db)
    assert prisme_lite.check(db) == 0, capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        counted = conn.execute("SELECT dim, value, sum(n) FROM daily_counts WHERE dim LIKE 'visit%' GROUP BY 1, 2")
        assert sorted(counted.fetchall()) == [
            ("visit_referrer", "direct", 4),
            ("visit_referrer", "google.com", 8),
            ("visit_utm_source", "news", 6),
        ]
        conn.execute("DELETE FROM events WHERE visitor_id = 'v1'")
        conn.execute("DELETE FROM sessions WHERE visitor_id = 'v1'")  # google.com, news
    assert prisme_lite.check(db) == 0, capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        counted = conn.execute("SELECT dim, value, sum(n) FROM daily_counts WHERE dim LIKE 'visit%' GROUP BY 1, 2")
        assert ("visit_referrer", "google.com", 7) in counted.fetchall()


# What schema version 2 counted new rows with, before the writer did (version 3 drops these triggers).
VERSION_2_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS pageview_counted AFTER INSERT ON events WHEN NEW.kind = 'pageview' BEGIN
    INSERT INTO daily_counts (site, dim, day, value, n)
    SELECT NEW.site, column1, NEW.ts / 86400000, column2, 1 FROM (VALUES
        ('pageviews', ''), ('path', NEW.path), ('referrer', NEW.referrer), ('utm_source', NEW.utm_source),
        ('utm_medium', NEW.utm_medium), ('utm_campaign', NEW.utm_campaign), ('country', NEW.country),
        ('os', NEW.os), ('browser', NEW.browser)
    ) WHERE column2 IS NOT NULL
    ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT OR IGNORE INTO daily_visitors (site, salted, day, visitor_id) VALUES (
        NEW.site,
        length(NEW.visitor_id) = 23 AND NEW.visitor_id GLOB 'prisme_*' AND NOT substr(NEW.visitor_id, 8) GLOB '*[^0-9a-f]*',
        NEW.ts / 86400000, NEW.visitor_id
    );
END;
CREATE TRIGGER IF NOT EXISTS event_counted AFTER INSERT ON events
WHEN NEW.kind != 'pageview' AND NEW.name IS NOT NULL BEGIN
    INSERT INTO daily_counts (site, dim, day, value, n) VALUES (NEW.site, NEW.kind, NEW.ts / 86400000, NEW.name, 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS visitor_counted AFTER INSERT ON daily_visitors WHEN NEW.salted BEGIN
    INSERT INTO daily_counts (site, dim, day, value, n) VALUES (NEW.site, 'visitors', NEW.day, '', 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS session_counted AFTER INSERT ON sessions BEGIN
    INSERT INTO daily_counts (site, dim, day, value, n)
    SELECT NEW.site, column1, NEW.started_at / 86400000, column2, column3 FROM (VALUES
        ('sessions', '', 1), ('bounces', '', NEW.pageviews = 1), ('duration', '', NEW.last_seen - NEW.started_at),
        ('entry_path', NEW.entry_path, 1), ('exit_path', NEW.exit_path, 1)
    ) WHERE true
    ON CONFLICT DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER IF NOT EXISTS session_recounted AFTER UPDATE OF last_seen, exit_path, pageviews ON sessions BEGIN
    INSERT INTO daily_counts (site, dim, day, value, n)
    SELECT NEW.site, column1, NEW.started_at / 86400000, column2, column3 FROM (VALUES
        ('bounces', '', (NEW.pageviews = 1) - (OLD.pageviews = 1)),
        ('duration', '', (NEW.last_seen - NEW.started_at) - (OLD.last_seen - OLD.started_at)),
        ('exit_path', OLD.exit_path, -(OLD.exit_path != NEW.exit_path)),
        ('exit_path', NEW.exit_path, OLD.exit_path != NEW.exit_path)
    ) WHERE column3 != 0
    ON CONFLICT DO UPDATE SET n = n + excluded.n;
END;
"""
DAY = 86_400_000
T0 = 20_000 * DAY + DAY - 20 * 60_000  # twenty minutes before midnight: some sessions run into the next day


def visit_event(minute, visitor, kind="pageview", path="/", name=None, t0=T0, **fields):
    """A web event `minute` minutes after t0 of `visitor`: `prisme_` + 16 hex digits is a day-salted id."""
    return {**web_event(0), "ts": t0 + minute * 60_000, "kind": kind, "path": path, "name": name,
            "visitor_id": visitor, **fields}  # fmt: skip


SALTED_A, SALTED_B, SALTED_C = (f"prisme_{n:016x}" for n in (10, 11, 12))


def mixed_batches(t0=T0):
    return [[{**event, "ts": event["ts"] - T0 + t0} for event in batch] for batch in MIXED_BATCHES]


def yesterday_evening():
    """Twenty minutes before last midnight: days the writer's maintenance keeps every daily_visitors row of."""
    return prisme_lite.now_ms() // DAY * DAY - 20 * 60_000


MIXED_BATCHES = [
    [  # new sessions: A bounces for now, B reads two pages; a custom event with no session is stored without one
        visit_event(0, SALTED_A, path="/a", referrer="news.example", utm_source="letter", country="FR"),
        visit_event(1, SALTED_B, path="/b"),
        visit_event(2, SALTED_B, path="/c", browser="Firefox"),
        visit_event(3, "nobody", kind="custom", name="signup"),
    ],
    [  # A's bounce turns into a two-page visit past midnight (its exit path moves); a client-given id (twice)
        visit_event(25, SALTED_A, path="/d"),
        visit_event(26, SALTED_A, kind="custom", name="play"),
        visit_event(27, "given-id", path="/a"),
        visit_event(28, "given-id", path="/a/more"),
        visit_event(29, SALTED_B, kind="outbound", name="https://ext.example/"),
    ],
    [  # events that only move B's last activity; a download; C opens and A reloads its page (not stored, §3.3a)
        visit_event(30, SALTED_B, kind="download", name="https://cdn.example/a.zip"),
        visit_event(31, SALTED_C, path="/c", utm_medium="email", utm_campaign="nov"),
        visit_event(32, SALTED_A, path="/d"),
    ],
    [  # past the timeout: new sessions for A, the client-given id and C
        visit_event(90, SALTED_A, path="/e"),
        visit_event(91, "given-id", path="/b"),
        visit_event(92, SALTED_C, path="/a"),
        visit_event(93, SALTED_C, kind="custom", name="signup"),
    ],
]


def rollups(conn):
    return sorted(conn.execute("SELECT * FROM daily_counts WHERE n != 0"))


def recounted(conn):
    sql = f"SELECT * FROM ({prisme_lite.ROLLUP_RECOUNT} UNION ALL {prisme_lite.VISITORS_RECOUNT}) WHERE n != 0"
    return sorted(conn.execute(sql))


def version_2_database(db):
    """A database as schema version 2 left it: triggers counted its rows (one old visit, stored before 3)."""
    with sqlite3.connect(db) as conn:
        conn.executescript(prisme_lite.schema_text() + VERSION_2_TRIGGERS + "PRAGMA user_version = 2;")
        store_old_visit(conn)


def store_old_visit(conn):
    conn.execute(
        "INSERT INTO sessions VALUES (1, 'localhost', 'localhost', ?, ?, ?, '/old', '/older', 2, 'direct',"
        " NULL, NULL, NULL, NULL, NULL, 'Chrome', 'Linux', 'desktop', 'XX')",
        (SALTED_A, T0 - 3 * DAY, T0 - 3 * DAY + 60_000),
    )
    for minute, path in ((0, "/old"), (1, "/older")):
        conn.execute(
            "INSERT INTO events (ts, site, kind, host, path, referrer, visitor_id, session_id, browser, os, device,"
            " country, status) VALUES (?, 'localhost', 'pageview', 'localhost', ?, 'direct', ?, 1, 'Chrome',"
            " 'Linux', 'desktop', 'XX', 200)",
            (T0 - 3 * DAY + minute * 60_000, path, SALTED_A),
        )


def database_with_an_old_visit(db, start):
    """A database holding store_old_visit's rows: made fresh (counted as the writer counts), or by version 2's
    triggers and then migrated."""
    if start == "fresh":
        prisme_lite.open_database(db)
        with sqlite3.connect(db) as conn:
            store_old_visit(conn)
            prisme_lite.count_stored_rows(conn, 0, 0)
    else:
        version_2_database(db)
        prisme_lite.open_database(db)


@pytest.mark.parametrize("start", ["fresh", "migrated from version 2"])
def test_the_daily_counts_equal_a_recount_after_every_mixed_batch(tmp_path, start, capsys):
    db = str(tmp_path / "counts.db")
    database_with_an_old_visit(db, start)
    conn = prisme_lite.connect(db)
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%\\_counted'"
                        " ESCAPE '\\'").fetchall() == []  # fmt: skip
    store = prisme_lite.WebEventStore(30 * 60_000, max_cached=2)  # a small cache: visitors are looked up again too
    for n, batch in enumerate(MIXED_BATCHES):
        if n == 2:
            store = prisme_lite.WebEventStore(30 * 60_000)  # a restart: every session's state comes from its row
        conn.execute("BEGIN IMMEDIATE")
        store(conn, [dict(event) for event in batch])
        conn.execute("COMMIT")
        assert rollups(conn) == recounted(conn), f"after batch {n}"
    sessions = conn.execute("SELECT visitor_id, pageviews, exit_path FROM sessions ORDER BY id").fetchall()
    assert sessions == [(SALTED_A, 2, "/older"), (SALTED_A, 2, "/d"), (SALTED_B, 2, "/c"), ("given-id", 2, "/a/more"),
                        (SALTED_C, 1, "/c"), (SALTED_A, 1, "/e"), ("given-id", 1, "/b"),
                        (SALTED_C, 1, "/a")]  # fmt: skip
    day = T0 // DAY  # A's and B's sessions started on it; A's ran into the next day, with its exit path
    counts = {(dim, d, value): n for _site, dim, d, value, n in rollups(conn)}
    assert [counts.get((dim, day, ""), 0) for dim in ("bounces", "sessions", "visitors")] == [0, 2, 2]
    assert counts[("exit_path", day, "/d")] == 1 and ("exit_path", day, "/a") not in counts
    assert prisme_lite.check(db) == 0, capsys.readouterr().out
    conn.execute("BEGIN IMMEDIATE")
    prisme_lite.prune_batch(conn, T0 - DAY)  # the old visit goes, with its counts
    conn.execute("COMMIT")
    assert rollups(conn) == recounted(conn)
    assert conn.execute("SELECT count(*) FROM daily_counts WHERE day < ? AND n != 0", (day - 1,)).fetchone()[0] == 0
    assert prisme_lite.check(db) == 0, capsys.readouterr().out
    conn.close()


def test_fresh_and_migrated_databases_count_the_same(tmp_path):
    results = []
    for name in ("fresh.db", "migrated.db"):
        db = str(tmp_path / name)
        database_with_an_old_visit(db, "fresh" if name == "fresh.db" else "migrated from version 2")
        config = make_config(tmp_path, db=db)
        ctx = prisme_lite.Context(config)
        for batch in mixed_batches(yesterday_evening()):
            for event in batch:
                ctx.writer.append("web", event)
            ctx.writer.flush()
        ctx.close()
        with sqlite3.connect(db) as conn:
            results.append((rollups(conn), sorted(conn.execute("SELECT * FROM daily_visitors"))))
            assert conn.execute("PRAGMA user_version").fetchone()[0] == prisme_lite.SCHEMA_VERSION
    assert results[0] == results[1]
    assert results[0][0]  # and they did count something


def test_a_rolled_back_batch_leaves_nothing_in_the_session_cache(tmp_path, caplog, capsys):
    """A batch that fails after the applier followed its sessions is undone, and so is what the cache learnt."""
    config = make_config(tmp_path)
    ctx = prisme_lite.Context(config)
    t0 = yesterday_evening()
    ctx.writer.append("web", visit_event(0, SALTED_A, path="/a", t0=t0))  # a bounce, for now
    ctx.close()
    # One fold of three lines: A's custom event and pageview, then a line SQLite refuses (NOT NULL) after the
    # sessions were upserted. The batch is undone and redone a line at a time, without the bad one.
    write_unfolded(
        config["db"],
        [
            visit_event(5, SALTED_A, kind="custom", name="play", t0=t0),
            visit_event(6, SALTED_A, path="/b", t0=t0),
            visit_event(7, SALTED_B, browser=None, t0=t0),
        ],
    )
    ctx = prisme_lite.Context(config)
    assert "journal line skipped" in caplog.text
    ctx.writer.append("web", visit_event(8, SALTED_A, path="/c", t0=t0))
    ctx.writer.flush()
    ctx.close()
    with sqlite3.connect(config["db"]) as conn:
        assert conn.execute("SELECT pageviews, exit_path, last_seen - started_at FROM sessions").fetchall() == [
            (3, "/c", 8 * 60_000)
        ]
        assert rollups(conn) == recounted(conn)
    assert prisme_lite.check(config["db"]) == 0, capsys.readouterr().out


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    db = str(tmp_path / "f.db")
    prisme_lite.open_database(db)
    v = prisme_lite.SCHEMA_VERSION
    monkeypatch.setattr(prisme_lite, "SCHEMA_VERSION", v + 1)
    monkeypatch.setattr(prisme_lite, "MIGRATIONS", {v: "ALTER TABLE meta ADD COLUMN x TEXT; SELECT nope FROM nowhere;"})
    with pytest.raises((prisme_lite.ConfigError, sqlite3.Error)):
        prisme_lite.open_database(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == v
        assert "x" not in [row[1] for row in conn.execute("PRAGMA table_info(meta)")]


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(prisme_lite.ConfigError, match=r"junk\.db.*not a (usable SQLite )?database"):
        prisme_lite.open_database(str(path))


def test_the_wal_is_truncated_past_its_limit_once_readers_let_go(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(prisme_lite, "WAL_LIMIT", 100_000)
    config = make_config(tmp_path)
    ctx = prisme_lite.Context(config)
    wal = config["db"] + "-wal"
    reader = sqlite3.connect(config["db"], isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()  # a long dashboard query or export, holding a snapshot
    for n in range(3000):
        ctx.writer.append("web", web_event(n))
    ctx.writer.flush()
    assert os.path.getsize(wal) > 100_000
    ctx.writer.maintained_at = float("-inf")
    with caplog.at_level("INFO", logger="prisme_lite"):
        ctx.writer.run(lambda conn: None)  # answered before the checkpoint runs: requests never wait for it
        ctx.writer.run(lambda conn: None)  # so this one returns after that checkpoint has been tried
    assert "WAL checkpoint deferred" in caplog.text  # it did not wait for the reader
    assert os.path.getsize(wal) > 100_000
    reader.execute("ROLLBACK")
    reader.close()
    ctx.writer.maintained_at = float("-inf")
    ctx.writer.run(lambda conn: None)
    ctx.writer.run(lambda conn: None)
    assert os.path.getsize(wal) <= 100_000
    assert len(paths(config["db"])) == 3000
    ctx.close()


def test_a_copy_without_its_journal_never_appends_to_another_journal_beside_it(tmp_path):
    """The copy's next generation is past every journal file already there, so no old line is replayed twice."""
    first = make_config(tmp_path)
    ctx = prisme_lite.Context(first)
    for n in range(5):
        ctx.writer.append("web", web_event(n))
    ctx.close()
    stale = first["db"] + ".journal-2"  # a journal of some other run, left beside the file
    with open(stale, "w") as file:
        file.write(json.dumps(["web", web_event(99)]) + "\n")
    os.remove(first["db"] + ".journal-1")  # as if the database alone had been copied here
    ctx = prisme_lite.Context(first)
    ctx.writer.append("web", web_event(5))
    ctx.close()
    assert paths(first["db"]) == [f"/{n}" for n in range(6)]


def test_a_server_cannot_start_while_prune_runs(tmp_path):
    db = str(tmp_path / "prisme.db")
    prisme_lite.open_database(db)
    with prisme_lite.no_server_on(db, "prune"), pytest.raises(prisme_lite.ConfigError) as refused:
        prisme_lite.lock_database(db)
    assert str(refused.value) == (
        f"{db} is in use by another prisme-lite server (pid {os.getpid()}, prisme-lite prune): stop it first"
    )
    os.close(prisme_lite.lock_database(db))  # and once prune is done, it can
