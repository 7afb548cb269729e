"""The tracking script and the dashboard, at the HTTP level (SPEC §3.5, §7); the browser tests drive them for real."""

import datetime
import gzip
import re
import sqlite3
from pathlib import Path

import pytest
import webtest

import prisme_lite


def raw_get(app, path, headers):
    """Status, headers and body exactly as the application answered them."""
    answer = {}

    def start_response(status, header_list, exc_info=None):
        answer.update(status=status, headers=dict(header_list))

    body = b"".join(app(webtest.TestRequest.blank(path, headers=headers).environ, start_response))
    return answer["status"], answer["headers"], body


def test_the_tracking_script_is_small_cached_and_gzipped(server, client):
    plain = client.get("/static/wa.js")
    assert plain.content_type == "application/javascript"
    assert plain.headers["Cache-Control"] == "public, max-age=3600"
    assert "window.prisme" in plain.text and "prismeAnalytics.tracking.enable" in plain.text
    status, headers, zipped = raw_get(
        server.app, "/static/wa.js", {"Accept-Encoding": "gzip, br"}
    )  # webtest would unzip
    assert (status, headers["Content-Encoding"], headers["Vary"]) == ("200 OK", "gzip", "Accept-Encoding")
    assert len(zipped) <= 2048
    assert gzip.decompress(zipped) == plain.body
    again = client.get("/static/wa.js", headers={"If-None-Match": plain.headers["ETag"]}, status=304)
    assert again.body == b""
    assert client.get("/static/nope.js", status=404).json["error"] == "no static file 'nope.js'"


def login(client, token, **environ):
    return client.post("/dashboard/login", {"token": token}, extra_environ=environ, expect_errors=True)


def test_the_dashboard_asks_for_the_admin_token_and_sets_a_strict_cookie(server, client):
    page = client.get("/dashboard")
    assert 'name="token"' in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    wrong = login(client, "nope")
    assert wrong.status_int == 401 and "That is not the admin token." in wrong.text
    assert "Set-Cookie" not in wrong.headers
    right = login(client, server.ctx.admin_token())
    assert (right.status_int, right.headers["Location"]) == (303, "/dashboard")
    cookie = right.headers["Set-Cookie"]
    assert cookie.startswith("prisme_dashboard=") and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie  # plain http on localhost: a Secure cookie would never come back
    assert server.ctx.admin_token() not in cookie
    app = client.get("/dashboard")
    assert 'src="/static/dashboard.js"' in app.text and "<script>" not in app.text
    assert client.get("/api/v1/stats/overview").json["keys"][0] == "visitors"  # the cookie reads the stats
    assert client.get("/api/v1/sites").json == {
        "sites": ["*.shop.example", "127.0.0.1", "blog.example.com", "localhost"]
    }


def test_the_cookie_is_secure_behind_https(make_server):
    server = make_server(trust_proxy=True)
    client = webtest.TestApp(server.app)
    assert "Secure" in login(client, server.ctx.admin_token(), **{"wsgi.url_scheme": "https"}).headers["Set-Cookie"]
    forwarded = client.post(
        "/dashboard/login", {"token": server.ctx.admin_token()}, headers={"X-Forwarded-Proto": "https"}
    )
    assert "Secure" in forwarded.headers["Set-Cookie"]


def test_logout_and_a_rotated_admin_token_end_the_login(server, client):
    login(client, server.ctx.admin_token())
    client.get("/api/v1/stats/overview", status=200)
    logout = client.post("/dashboard/logout", status=303)
    assert logout.headers["Set-Cookie"].startswith('prisme_dashboard=""; expires=Thu, 01 Jan 1970')
    client.get("/api/v1/stats/overview", status=401)
    login(client, server.ctx.admin_token())
    with sqlite3.connect(server.config["db"]) as conn:
        prisme_lite.admin_token(conn, rotate=True)
    client.get("/api/v1/stats/overview", status=401)
    assert 'name="token"' in client.get("/dashboard").text


def test_a_forged_or_expired_cookie_is_refused(server, client, monkeypatch):
    client.set_cookie("prisme_dashboard", "9999999999.deadbeef")
    client.get("/api/v1/stats/overview", status=401)
    client.set_cookie("prisme_dashboard", "9" * 5000)  # a number too long to parse was a 500 (issue 18.6)
    client.get("/api/v1/stats/overview", status=401)
    assert 'name="token"' in client.get("/dashboard").text
    login(client, server.ctx.admin_token())
    client.get("/api/v1/stats/overview", status=200)
    later = prisme_lite.now_ms() + prisme_lite.DASHBOARD_LOGIN_SECONDS * 1000 + 1000
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: later)
    client.get("/api/v1/stats/overview", status=401)


def cookie_of(answer):
    return answer.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]


def test_logout_ends_the_session_on_the_server(server, client):
    """A copy of the cookie taken before logout no longer reads anything (issue 18.3)."""
    copy = cookie_of(login(client, server.ctx.admin_token()))
    other = webtest.TestApp(server.app)
    other.set_cookie("prisme_dashboard", copy)
    other.get("/api/v1/stats/overview", status=200)
    client.post("/dashboard/logout", status=303)
    other.get("/api/v1/stats/overview", status=401)
    assert 'name="token"' in other.get("/dashboard").text
    assert server.rows("SELECT * FROM dashboard_sessions") == []


def test_revoking_an_admin_access_token_ends_the_sessions_it_opened(server, client, tmp_path):
    from conftest import cli

    db = server.config["db"]
    with sqlite3.connect(db) as conn:
        token_id, token = prisme_lite.create_access_token(conn, ["admin"], "ops")
        other_id, other = prisme_lite.create_access_token(conn, ["admin"], "backup ops")
    login(client, token)
    client.get("/api/v1/stats/overview", status=200)
    second = webtest.TestApp(server.app)
    login(second, other)
    assert cli("tokens", "revoke", token_id, db=db).returncode == 0
    client.get("/api/v1/stats/overview", status=401)
    second.get("/api/v1/stats/overview", status=200)  # another token's session goes on
    assert [row["token_id"] for row in server.rows("SELECT token_id FROM dashboard_sessions")] == [other_id]


def test_a_version_3_database_gets_the_sessions_table(tmp_path):
    from conftest import cli

    db = tmp_path / "old.db"
    prisme_lite.open_database(str(db))
    with sqlite3.connect(db) as conn:  # what a version 3 database was: no dashboard_sessions
        conn.execute("DROP TABLE dashboard_sessions")
        conn.execute("INSERT INTO meta VALUES ('dashboard_key', 'ab')")
        conn.execute("PRAGMA user_version = 3")
    checked = cli("check", db=db)
    assert checked.returncode == 0 and f"ok: schema version {prisme_lite.SCHEMA_VERSION}" in checked.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM dashboard_sessions").fetchone() == (0,)
        assert conn.execute("SELECT value FROM meta WHERE key = 'dashboard_key'").fetchone() is None


def test_login_attempts_are_rate_limited(server, client):
    for _ in range(60):
        login(client, "guess")
    refused = login(client, server.ctx.admin_token())
    assert refused.status_int == 429 and "Set-Cookie" not in refused.headers


def test_an_admin_access_token_also_logs_in(server, client):
    with sqlite3.connect(server.config["db"]) as conn:
        token = prisme_lite.create_access_token(conn, ["admin"], "ops")[1]
        reader = prisme_lite.create_access_token(conn, ["stats_read"], "grafana")[1]
    assert login(client, reader).status_int == 401
    assert login(client, token).status_int == 303


# The dashboard's periods, as its script defines them: {button: (from, to)}.
PERIODS = {
    name: (start, end)
    for name, start, end in re.findall(
        r'"?(\w+)"?: \["([^"]+)", "([^"]+)"\]',
        re.search(r"const PERIODS = \{(.*?)\};", prisme_lite.asset("dashboard.js").decode(), re.S)[1],
    )
}
HOUR, DAY = 3_600_000, 86_400_000


def utc(text):
    """Unix ms of an ISO time in UTC."""
    return int(datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC).timestamp() * 1000)


# One pageview at each edge of each period, on a server whose clock says 2026-11-20 (a Friday) at any hour
# from 05:59: the first and last millisecond that belong to a period, and the one just outside it.
EDGES = [
    "2025-11-30T23:59:59.999",  # before the 12 months
    "2025-12-01T00:00:00",  # the 12 months: this month and the eleven before
    "2026-10-21T23:59:59.999",  # before the 30 days
    "2026-10-22T00:00:00",  # the 30 days: today and the 29 before
    "2026-11-13T23:59:59.999",  # before the 7 days
    "2026-11-14T00:00:00",  # the 7 days: today and the six before
    "2026-11-19T23:59:59.999",  # yesterday
    "2026-11-20T00:00:00",  # today
    "2026-11-20T05:58:00",  # today, before every pinned time
]
# What each period holds of EDGES, its window, and its chart: (pageviews, from, to, bucket step, buckets).
EXPECTED = {
    "today": (2, "2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z", HOUR, 24),
    "7d": (4, "2026-11-14T00:00:00Z", "2026-11-21T00:00:00Z", 6 * HOUR, 28),
    "30d": (6, "2026-10-22T00:00:00Z", "2026-11-21T00:00:00Z", DAY, 30),
    "12mo": (8, "2025-12-01T00:00:00Z", "2026-12-01T00:00:00Z", 14 * DAY, None),  # two weeks, from the epoch's
}
PINNED = ["2026-11-20T05:59:00", "2026-11-20T06:01:00", "2026-11-20T12:00:00", "2026-11-20T23:59:00"]


def store_edges(server):
    """The EDGES as pageviews through the writer, as the web events API stores them."""
    for n, moment in enumerate(EDGES):
        server.ctx.writer.append("web", {
            "ts": utc(moment), "site": "blog.example.com", "kind": "pageview", "host": "blog.example.com",
            "path": f"/edge/{n}", "name": None, "referrer": "direct", "utm_source": None, "utm_medium": None,
            "utm_campaign": None, "utm_term": None, "utm_content": None, "visitor_id": f"visitor-{n}",
            "browser": "Chrome", "os": "Linux", "device": "desktop", "country": "FR", "status": 200, "props": None,
        })  # fmt: skip
    server.ctx.writer.flush()


@pytest.mark.parametrize("pinned", PINNED)
def test_each_dashboard_period_is_whole_days_at_any_hour(server, client, monkeypatch, pinned):
    """Today, 7 days, 30 days and 12 months are today and the days (months) before: the same window, cards and
    chart buckets at 05:59, 06:01, noon and 23:59."""
    store_edges(server)
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: utc(pinned))
    assert sorted(PERIODS) == sorted(EXPECTED)
    admin = {"Authorization": f"Bearer {server.ctx.admin_token()}"}
    for period, (start, end) in PERIODS.items():
        pageviews, first, last, step, count = EXPECTED[period]
        window = {"from": start, "to": end}
        overview = client.get("/api/v1/stats/overview", window, headers=admin).json
        assert (overview["from"], overview["to"]) == (first, last), period
        assert dict(zip(overview["keys"], overview["values"], strict=True))["pageviews"] == pageviews, period
        chart = client.get("/api/v1/stats/pageviews", window, headers=admin).json
        keys = chart["keys"]
        assert {keys[n + 1] - keys[n] for n in range(len(keys) - 1)} == {step}, period
        if count is None:  # buckets of two weeks: the first and last hold the period's edges
            assert keys[0] <= utc(first[:-1]) < keys[1] and keys[-1] < utc(last[:-1]) <= keys[-1] + step, period
        else:  # buckets of whole days (or of hours that make up days): exactly the period's
            assert (len(keys), keys[0], keys[-1] + step) == (count, utc(first[:-1]), utc(last[:-1])), period
        assert sum(chart["values"]) == pageviews, period


def test_the_readme_documents_the_dashboard_periods():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for start, end in PERIODS.values():
        assert f"`from={start}&to={end.replace('+', '%2B')}`" in readme, (start, end)
