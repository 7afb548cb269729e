"""Stored sessions (SPEC §3.3): continued within the timeout, new after it, whole across a restart."""

import sqlite3

import pytest
from conftest import CHROME, IPHONE

import prisme_lite

MINUTE = 60_000
START = 1_790_000_000_000


@pytest.fixture
def clock(monkeypatch):
    """The server's clock, moved by the test."""
    now = [START]
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: now[0])
    return now


def visit(server, path, ua=CHROME, ip="203.0.113.9", referrer=None):
    headers = {"Origin": "http://localhost", "X-Prisme-Referrer": f"http://localhost{path}", "User-Agent": ua}
    if referrer:
        headers["X-Prisme-Document-Referrer"] = referrer
    server.client.post("/api/v1/events/pageviews", headers=headers, extra_environ={"REMOTE_ADDR": ip}, status=200)


def test_pageviews_within_the_timeout_share_a_session_and_after_it_do_not(make_server, clock):
    server = make_server()
    visit(server, "/", referrer="https://search.example/?q=x")
    clock[0] += 29 * MINUTE
    visit(server, "/about")
    clock[0] += 29 * MINUTE  # 58 minutes after the start, but only 29 after the last activity
    visit(server, "/contact")
    clock[0] += 31 * MINUTE
    visit(server, "/again")
    events = server.events()
    assert [event["session_id"] for event in events] == [1, 1, 1, 2]
    assert len({event["visitor_id"] for event in events}) == 1
    sessions = server.rows("SELECT * FROM sessions ORDER BY id")
    assert [
        (s["entry_path"], s["exit_path"], s["pageviews"], s["started_at"], s["last_seen"], s["referrer"])
        for s in sessions
    ] == [
        ("/", "/contact", 3, START, START + 58 * MINUTE, "search.example"),
        ("/again", "/again", 1, START + 89 * MINUTE, START + 89 * MINUTE, "direct"),
    ]
    assert (sessions[0]["browser"], sessions[0]["os"], sessions[0]["device"], sessions[0]["country"]) == (
        "Chrome",
        "Linux",
        "desktop",
        "XX",
    )


def test_session_timeout_is_configurable(make_server, clock):
    server = make_server(session_timeout=5)
    visit(server, "/")
    clock[0] += 6 * MINUTE
    visit(server, "/b")
    assert [event["session_id"] for event in server.events()] == [1, 2]


def test_visitors_have_their_own_sessions(make_server, clock):
    server = make_server()
    visit(server, "/", ip="203.0.113.1")
    visit(server, "/", ip="203.0.113.2")
    visit(server, "/", ua=IPHONE, ip="203.0.113.1")
    visit(server, "/x", ip="203.0.113.1")
    assert [event["session_id"] for event in server.events()] == [1, 2, 3, 1]


def test_a_restart_does_not_split_a_visitor_or_a_session(make_server, clock):
    first = make_server()
    visit(first, "/")
    first.close()
    clock[0] += 10 * MINUTE
    second = make_server()
    visit(second, "/later")
    events = second.events()
    assert events[0]["visitor_id"] == events[1]["visitor_id"]
    assert [event["session_id"] for event in events] == [1, 1]
    [session] = second.rows("SELECT pageviews, exit_path FROM sessions")
    assert session == {"pageviews": 2, "exit_path": "/later"}


def test_other_events_join_the_open_session_at_once_or_are_stored_without_one(make_server, clock):
    server = make_server()
    headers = {
        "Origin": "http://localhost",
        "Referer": "http://localhost/p",
        "User-Agent": CHROME,
        "Content-Type": "application/json",
    }
    server.client.post("/api/v1/events/custom/early", "{}", headers=headers)  # no session yet
    visit(server, "/p")
    clock[0] += 1000
    server.client.post("/api/v1/events/custom/signup", "{}", headers=headers)
    server.client.post("/api/v1/events/outbound-links", "https://example.org/", headers=headers)
    clock[0] += 31 * MINUTE
    server.client.post("/api/v1/events/file-downloads", "https://example.org/a.zip", headers=headers)
    assert [(e["kind"], e["session_id"]) for e in server.events()] == [
        ("custom", 1),  # just before the pageview that opened the session: it joins it (SESSION_LOOKAHEAD)
        ("pageview", 1),
        ("custom", 1),
        ("outbound", 1),
        ("download", None),
    ]
    [session] = server.rows("SELECT pageviews, exit_path, last_seen FROM sessions")
    assert session == {"pageviews": 1, "exit_path": "/p", "last_seen": START + 1000}


def test_sessions_are_exact_when_the_cache_forgets(make_server, clock):
    """The writer's session cache is bounded; a visitor it dropped is found in the database again."""
    server = make_server()
    server.ctx.writer.appliers["web"].max_cached = 2
    for ip in range(1, 6):
        visit(server, "/", ip=f"203.0.113.{ip}")
    server.ctx.writer.flush()
    assert len(server.ctx.writer.appliers["web"].latest) == 2
    clock[0] += MINUTE
    for ip in range(1, 6):
        visit(server, "/2", ip=f"203.0.113.{ip}")
    assert [e["session_id"] for e in server.events()] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
    assert {row["pageviews"] for row in server.rows("SELECT pageviews FROM sessions")} == {2}


def event_on(server, kind, path="/p", **extra):
    headers = {"Origin": "http://localhost", "Referer": f"http://localhost{path}", "User-Agent": CHROME, **extra}
    route, body = {"custom": ("custom/early", b""), "outbound": ("outbound-links", b"https://example.org/")}[kind]
    server.client.post(f"/api/v1/events/{route}", body, headers=headers, status=200)


def test_an_event_just_before_its_pages_pageview_joins_the_session_it_opens(make_server, clock):
    """Prisme's script sends prisme.trigger on DOMContentLoaded, and its request may reach the journal before the
    pageview's; Prisme waits for the session. The writer stores the event at once, and attaches it to the session
    its visitor's pageview of the same page opens within SESSION_LOOKAHEAD (another fold batch, or after a restart,
    too). Older events, or from another page, stay without a session."""
    server = make_server()
    event_on(server, "custom")
    clock[0] += 10_000
    event_on(server, "custom")  # 6 s before the pageview: too early
    event_on(server, "outbound", path="/other")  # another page
    clock[0] += prisme_lite.SESSION_LOOKAHEAD
    event_on(server, "custom")
    event_on(server, "outbound")
    server.ctx.writer.flush()  # a batch of its own
    server.close()
    restarted = make_server()
    clock[0] += 1000
    visit(restarted, "/p")
    event_on(restarted, "custom")
    assert [(e["kind"], e["path"], e["session_id"]) for e in restarted.events()] == [
        ("custom", "/p", None),
        ("custom", "/p", None),
        ("outbound", "/other", None),
        ("custom", "/p", 1),
        ("outbound", "/p", 1),
        ("pageview", "/p", 1),
        ("custom", "/p", 1),
    ]
    [session] = restarted.rows("SELECT started_at, last_seen, pageviews FROM sessions")
    assert session == {"started_at": clock[0], "last_seen": clock[0], "pageviews": 1}
    assert prisme_lite.check(restarted.config["db"]) == 0


def test_the_look_ahead_works_within_one_fold_batch_and_across_batches(tmp_path):
    db = str(tmp_path / "batch.db")
    prisme_lite.open_database(db)
    conn = prisme_lite.connect(db)
    store = prisme_lite.WebEventStore(30 * MINUTE)

    def event(kind, visitor, ts, path="/p"):
        return {"ts": START + ts, "site": "localhost", "kind": kind, "name": None if kind == "pageview" else "x",
                "host": "localhost", "path": path, "referrer": "direct", "utm_source": None, "utm_medium": None,
                "utm_campaign": None, "utm_term": None, "utm_content": None, "visitor_id": visitor,
                "browser": "Chrome", "os": "Linux", "device": "desktop", "country": "XX", "status": 200,
                "props": None}  # fmt: skip

    batches = [
        [event("custom", "a", 0), event("pageview", "a", 50), event("custom", "b", 100)],
        [event("custom", "c", 200), event("pageview", "b", 300)],
        [event("pageview", "c", 400)],
    ]
    for batch in batches:
        conn.execute("BEGIN IMMEDIATE")
        store(conn, batch)
        conn.execute("COMMIT")
    stored = conn.execute("SELECT visitor_id, kind, session_id FROM events ORDER BY id").fetchall()
    assert stored == [("a", "custom", 1), ("a", "pageview", 1), ("b", "custom", 2), ("c", "custom", 3),
                      ("b", "pageview", 2), ("c", "pageview", 3)]  # fmt: skip
    conn.close()
    assert prisme_lite.check(db) == 0


def test_the_look_back_finds_a_visitors_sessionless_events_by_their_own_index(tmp_path):
    """A pageview that opens a session looks back for its visitor's sessionless events of its page. Read through
    events_site_ts, that UPDATE read every event of the site in its 5 s, once per new session: for the first seconds
    after a start, at 15,000 new visitors/s, the writer fell minutes behind. It seeks events_sessionless, on a new
    database and on one migrated from schema version 10."""
    fresh, migrated = str(tmp_path / "fresh.db"), str(tmp_path / "migrated.db")
    for db in (fresh, migrated):
        prisme_lite.open_database(db)
    with sqlite3.connect(migrated) as conn:
        conn.executescript("DROP INDEX events_sessionless; PRAGMA user_version = 10;")
    prisme_lite.open_database(migrated)
    for db in (fresh, migrated):
        with sqlite3.connect(db) as conn:
            plan = conn.execute(
                "EXPLAIN QUERY PLAN " + prisme_lite.ATTACH_EARLIER_EVENTS, (1, "localhost", 0, 5000, "v", "/p")
            ).fetchall()
            [(*_ids, detail)] = plan
            assert detail.startswith("SEARCH events USING INDEX events_sessionless (site=? AND visitor_id=?")
            assert conn.execute("PRAGMA user_version").fetchone()[0] == prisme_lite.SCHEMA_VERSION
