"""Shared dashboards (issue 21): `share create|list|revoke`, the page /share/<token> without a login, the stats it may
read (its site's, nothing else), every count under share_min_count suppressed, and one 404 for a token unknown,
expired or revoked."""

import hashlib
import json
import re
import sqlite3

import pytest
from conftest import cli, migrated_from
from test_dashboard import utc

import prisme_lite

NOW = utc("2026-11-20T12:00:00")
SITE = "blog.example.com"
# Visits of one pageview each unless said (visitor, minute, path, referrer, custom event or None, its props), so that
# the counts of pages, referrers, events, properties, goals, chart buckets and the live count are 12, 5, 4 and 1:
# 12 on /twelve (11-18 01:00) from news.example; 5 on /five (11-19 01:00) from direct, each with a signup {plan:
# pro}; 4 on /four in the last 30 minutes from friend.example, each with a play; 1 on /one then /one-more (11-17
# 01:00) from one.example, with a buy {plan: free}. And localhost's 7 pageviews, never in a share of the blog.
VISITS = (
    [(f"a{n}", utc("2026-11-18T01:00:00") + n, "/twelve", "news.example", None, None) for n in range(12)]
    + [(f"b{n}", utc("2026-11-19T01:00:00") + n, "/five", "direct", "signup", {"plan": "pro"}) for n in range(5)]
    + [(f"c{n}", utc("2026-11-20T11:50:00") + n, "/four", "friend.example", "play", None) for n in range(4)]
    + [("d", utc("2026-11-17T01:00:00"), "/one", "one.example", "buy", {"plan": "free"})]
)
GOALS = [("event", "signup"), ("event", "play"), ("path", "/one"), ("path", "/nowhere"), ("path", "/twelve")]


def web_event(site, visitor, ts, kind, path, name=None, referrer="direct", props=None):
    return {
        "ts": ts, "site": site, "kind": kind, "host": site, "path": path, "name": name, "referrer": referrer,
        "utm_source": None, "utm_medium": None, "utm_campaign": None, "utm_term": None, "utm_content": None,
        "visitor_id": f"visitor-{visitor}", "browser": "Chrome", "os": "Linux", "device": "desktop", "country": "FR",
        "status": 200, "props": json.dumps(props) if props else None,
    }  # fmt: skip


def store_counts(server):
    """VISITS, localhost's pageviews and the GOALS, through the writer as the web events API stores them."""
    for visitor, ts, path, referrer, event, props in VISITS:
        server.ctx.writer.append("web", web_event(SITE, visitor, ts, "pageview", path, referrer=referrer))
        if event:
            server.ctx.writer.append("web", web_event(SITE, visitor, ts + 1000, "custom", path, event, props=props))
    server.ctx.writer.append("web", web_event(SITE, "d", utc("2026-11-17T01:02:00"), "pageview", "/one-more"))
    for n in range(7):
        server.ctx.writer.append("web", web_event("localhost", f"l{n}", utc("2026-11-19T02:00:00"), "pageview", "/x"))
    server.ctx.writer.flush()
    with sqlite3.connect(server.config["db"]) as conn:
        prisme_lite.add_origin(conn, SITE)
        for kind, target in GOALS:
            prisme_lite.add_goal(conn, SITE, kind, target)
    server.ctx.origins.reload()


@pytest.fixture
def clock(monkeypatch):
    now = [NOW]
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: now[0])
    return now


@pytest.fixture
def shared(make_server, clock):
    """A server with the counts, and a token of a share of the blog for 30 days."""
    server = make_server()
    store_counts(server)
    with sqlite3.connect(server.config["db"]) as conn:
        server.token = prisme_lite.create_share(conn, SITE, 30)
    return server


def read(server, metric, token=None, status=200, extra_environ=None, **params):
    """/api/v1/stats/<metric> as the share's page asks it: the token in X-Prisme-Share, no login."""
    headers = {"X-Prisme-Share": token or server.token}
    answer = server.client.get(f"/api/v1/stats/{metric}", params, headers, status=status, extra_environ=extra_environ)
    return answer.json


def test_the_cards_hide_counts_under_five_and_the_rates_of_them(shared):
    overview = lambda **filters: read(shared, "overview", **filters)["values"]  # noqa: E731
    # 22 visits of 23 pageviews; the bounce rate (95 %) would tell the one visit that did not bounce.
    visitors, pageviews, sessions, bounce_rate, duration = overview()
    assert (visitors, pageviews, sessions, bounce_rate) == (22, 23, 22, None) and duration > 0
    assert overview(path="/twelve") == [12, 12, 12, 100, 0]
    assert overview(path="/five") == [5, 5, 5, 100, 1]  # a second from pageview to signup
    assert overview(path="/four") == ["< 5", "< 5", "< 5", None, None]
    assert overview(path="/one") == ["< 5", "< 5", "< 5", None, None]
    assert overview(path="/nowhere") == [0, 0, 0, 0, 0]  # 0 is 0
    assert read(shared, "live-count")["values"] == ["< 5"]  # the four visitors of the last 30 minutes
    # The same API with a login tells everything.
    token = shared.ctx.admin_token()
    full = shared.client.get("/api/v1/stats/overview", {"site": SITE, "path": "/four"},
                             headers={"Authorization": f"Bearer {token}"}).json  # fmt: skip
    assert full["values"] == [4, 4, 4, 100, 1]


def test_each_chart_point_under_five_is_hidden(shared):
    for metric, last in (("pageviews", "< 5"), ("visitors", "< 5")):
        report = read(shared, metric)
        points = {prisme_lite.iso_time(key): value for key, value in zip(report["keys"], report["values"], strict=True)}
        assert points.pop("2026-11-18T00:00:00Z") == 12
        assert points.pop("2026-11-19T00:00:00Z") == 5
        assert points.pop("2026-11-20T06:00:00Z") == last  # c's four, at 11:50
        assert points.pop("2026-11-17T00:00:00Z") == "< 5"  # d's two pageviews (one visitor)
        assert set(points.values()) == {0}


def test_table_rows_under_five_are_left_out_and_the_panel_says_so(shared):
    pages = read(shared, "top-site-pages")
    assert pages["keys"] == [f"{SITE} /twelve", f"{SITE} /five"] and pages["values"] == [12, 5]
    assert [row["path"] for row in pages["details"]] == ["/twelve", "/five"]
    assert pages["note"] == "Rows under 5 are left out."
    referrers = read(shared, "top-visit-referrers")
    assert (referrers["keys"], referrers["values"]) == (["news.example", "direct"], [12, 5])
    events = read(shared, "top-custom-events")
    assert (events["keys"], events["values"]) == (["signup"], [5])
    properties = read(shared, "custom-event-properties")
    assert properties["keys"] == ["plan=pro"] and [row["count"] for row in properties["details"]] == [5]
    assert "note" in properties
    countries = read(shared, "top-countries")
    assert (countries["keys"], countries["values"], "note" in countries) == (["FR"], [23], False)  # nothing left out
    assert read(shared, "top-entry-pages", path="/one")["keys"] == []  # the filter works, and the row stays out


def test_goals_stay_with_their_small_counts_hidden(shared):
    details = {row["target"]: (row["conversions"], row["visitors"], row["conversion_rate"])
               for row in read(shared, "goals")["details"]}  # fmt: skip
    assert details == {
        "/twelve": (12, 12, round(12 / 22, 4)),
        "signup": (5, 5, round(5 / 22, 4)),
        "play": ("< 5", "< 5", None),
        "/one": ("< 5", "< 5", None),
        "/nowhere": (0, 0, 0.0),
    }
    assert read(shared, "goals")["values"] == [12, 5, "< 5", "< 5", 0]


def test_share_min_count_sets_the_threshold(make_server, clock):
    server = make_server(share_min_count=13)
    store_counts(server)
    with sqlite3.connect(server.config["db"]) as conn:
        server.token = prisme_lite.create_share(conn, SITE, None)
    assert read(server, "overview", path="/twelve")["values"] == ["< 13", "< 13", "< 13", None, None]
    assert read(server, "top-site-pages")["keys"] == []


def test_a_share_reads_its_own_site_only_and_only_the_dashboard(shared):
    assert read(shared, "overview", site=SITE)["values"][1] == 23  # localhost's 7 are not in it
    refused = read(shared, "overview", site="localhost", status=403)
    assert refused == {"error": f"this shared dashboard is of {SITE} only"}
    for metric in ("top-widgets", "revenue", "top-server-labels", "top-pages", "sessions-duration"):
        assert "is not part of a shared dashboard" in read(shared, metric, status=404)["error"]
    shared.client.post("/api/v1/stats/overview", headers={"X-Prisme-Share": shared.token}, status=405)  # GET only
    # No share token, no login: the stats are not public.
    shared.client.get("/api/v1/stats/overview", status=401)


def test_a_share_reads_at_most_its_rate_a_minute_per_client_ip(shared):
    shared.ctx.share_limiter = prisme_lite.RateLimiter(3, 100)  # 600 a minute is too many to send here
    for _ in range(3):
        read(shared, "live-count")
    refused = shared.client.get("/api/v1/stats/live-count", headers={"X-Prisme-Share": shared.token}, status=429)
    assert int(refused.headers["Retry-After"]) > 0 and "rate limit" in refused.json["error"]
    # Another address has its own; a login's reads are not a share's.
    read(shared, "live-count", extra_environ={"REMOTE_ADDR": "198.51.100.7"})


def test_the_share_page_is_the_dashboard_logged_out_and_read_only(shared):
    page = shared.client.get(f"/share/{shared.token}")
    assert page.status_int == 200 and page.content_type == "text/html"
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"
    assert f'data-share="{shared.token}"' in page.text and f'data-share-site="{SITE}"' in page.text
    assert 'id="site-name"' in page.text and SITE in page.text
    for control in ('id="site"', "/dashboard/logout", 'id="exclusion"', 'id="token"'):
        assert control not in page.text, control
    panels = json.loads(re.search(r'data-panels="([^"]*)"', page.text)[1].replace("&quot;", '"'))
    metrics = [panel[1] for panel in panels]
    assert "top-site-pages" in metrics and "goals" in metrics
    assert "top-widgets" not in metrics and "top-server-labels" not in metrics
    # The logged-in dashboard keeps its controls.
    login = shared.client.post("/dashboard/login", {"token": shared.ctx.admin_token()})
    dashboard = shared.client.get("/dashboard", headers={"Cookie": login.headers["Set-Cookie"].split(";")[0]})
    assert 'id="site"' in dashboard.text and "/dashboard/logout" in dashboard.text
    assert 'data-share=""' in dashboard.text  # no share token on the login's dashboard


def refusals(server, token):
    page = server.client.get(f"/share/{token}", status=404)
    api = server.client.get("/api/v1/stats/overview", headers={"X-Prisme-Share": token}, status=404)
    return page.content_type, page.text, api.content_type, api.json


def test_unknown_expired_and_revoked_tokens_get_one_and_the_same_404(shared, clock, tmp_path):
    unknown = refusals(shared, "A" * 32)
    assert unknown[0] == "text/html" and "No such shared dashboard" in unknown[1]
    assert unknown[2:] == ("application/json", {"error": "no such shared dashboard"})
    assert refusals(shared, "x") == unknown and refusals(shared, shared.token[:-1] + "%0A") == unknown
    clock[0] = NOW + 30 * 86_400_000 - 1  # the last millisecond of its 30 days
    assert shared.client.get(f"/share/{shared.token}").status_int == 200
    clock[0] = NOW + 30 * 86_400_000
    assert refusals(shared, shared.token) == unknown
    clock[0] = NOW
    # Revoked from the command line while the server runs: its link stops at once.
    assert read(shared, "overview")["values"][1] == 23
    revoked = cli("share", "revoke", shared.token[:6], db=shared.config["db"])
    assert revoked.returncode == 0, revoked.stderr
    assert refusals(shared, shared.token) == unknown


def shares_of(db):
    with sqlite3.connect(db) as conn:
        sql = "SELECT token_hash, prefix, site, expires_at, revoked_at FROM shares ORDER BY created_at, prefix"
        return conn.execute(sql).fetchall()


def test_share_create_list_and_revoke(tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    assert cli("origins", "add", SITE, db=db).returncode == 0
    made = cli("share", "create", "--site", "https://Blog.Example.com/", "--expires", "7", db=db)
    assert made.returncode == 0, made.stderr
    [path] = made.stdout.splitlines()  # the path alone on standard output: a script can capture it
    token = re.fullmatch(r"/share/([A-Za-z0-9_-]{32})", path)[1]
    assert made.stderr == (
        f"shared {SITE} read-only, for 7 days; the link is shown only now: open it at the server's address, such as"
        f" http://127.0.0.1:8000{path} (behind a proxy: your public address)\n"
    )
    [(token_hash, prefix, site, expires, revoked)] = shares_of(db)
    assert (token_hash, prefix, site, revoked) == (hashlib.sha256(token.encode()).hexdigest(), token[:8], SITE, None)
    assert all(token.encode() not in file.read_bytes() for file in tmp_path.iterdir())  # kept as its hash only
    forever = cli("share", "create", "--site", "localhost", db=db)
    assert forever.returncode == 0 and "until revoked" in forever.stderr
    listed = cli("share", "list", db=db).stdout.splitlines()
    assert listed[0].split() == ["TOKEN", "SITE", "CREATED", "EXPIRES", "STATUS"]
    assert listed[1].startswith(f"{token[:8]}…  {SITE}") and listed[1].endswith("active")
    assert " never " in listed[2]
    assert cli("share", "revoke", token[:5], db=db).stdout == f"revoked: {token[:8]}…; its link answers 404 now\n"
    assert re.search(r"revoked \d{4}-\d\d-\d\d \d\d:\d\d$", cli("share", "list", db=db).stdout.splitlines()[1])
    again = cli("share", "revoke", token, db=db)
    assert (again.returncode, again.stderr) == (1, f"no active share {token} (see `prisme-lite share list`)\n")
    assert shares_of(db)[0][4] is not None and shares_of(db)[1][4] is None  # the other one still works


def test_share_revoke_by_a_start_two_shares_have_refuses(tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO shares (token_hash, prefix, site, created_at) VALUES (?, ?, 'localhost', 0)",
                         [("h1", "abcdEFGH"), ("h2", "abcdXYZW")])  # fmt: skip
    both = cli("share", "revoke", "abcd", db=db)
    assert (both.returncode, both.stderr) == (2, "prisme-lite: share revoke: 2 shares start with 'abcd'; give more"
                                                 " of the token\n")  # fmt: skip
    short = cli("share", "revoke", "abc", db=db)
    assert short.returncode == 2 and short.stderr.count("\n") == 1
    assert cli("share", "revoke", "abcdX", db=db).returncode == 0
    assert [row[4] is None for row in shares_of(db)] == [True, False]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--site", "shop.example"], "share create: shop.example is not a registered origin"),
        (["--site", "bad host"], "share create: 'bad host' is not a host name"),
        (["--site", "localhost", "--expires", "0"], "share create: --expires must be a number of days from 1 to 3650"),
        (["--site", "localhost", "--expires", "x"], "share create: --expires must be a number of days from 1 to 3650"),
        (["--site", "localhost", "--expires", "3651"], "share create: --expires must be a number of days"),
        (["--site", "localhost", "--expires", "-1"], "share create: --expires must be a number of days"),
    ],
)
def test_share_create_refuses_a_bad_site_or_expiry_in_one_line(tmp_path, args, says):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    refused = cli("share", "create", *args, db=db)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.startswith(f"prisme-lite: {says}") and refused.stderr.count("\n") == 1, refused.stderr
    assert shares_of(db) == []


def test_a_schema_6_database_gets_the_shares_table_and_a_backup_keeps_the_hashes(tmp_path):
    db = tmp_path / "prisme.db"
    migrated_from(db, 6, "shares")
    with sqlite3.connect(db) as conn:
        token = prisme_lite.create_share(conn, "localhost", None)
    assert cli("backup", str(tmp_path / "copy.db"), db=db).returncode == 0
    assert shares_of(tmp_path / "copy.db") == shares_of(db)  # configuration, like goals: a restore keeps its links
    assert shares_of(db)[0][0] == hashlib.sha256(token.encode()).hexdigest()


def test_a_token_never_starts_with_a_dash_which_the_command_line_would_read_as_an_option(tmp_path, monkeypatch):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    drawn = iter(["-dashfirst" + "x" * 22, "Letterfirst" + "x" * 21])
    monkeypatch.setattr(prisme_lite.secrets, "token_urlsafe", lambda size: next(drawn))
    with sqlite3.connect(db) as conn:
        token = prisme_lite.create_share(conn, SITE, None)
    assert token == "Letterfirst" + "x" * 21
    assert cli("share", "revoke", token[:5], db=db).stdout == f"revoked: {token[:8]}…; its link answers 404 now\n"


def test_the_access_log_keeps_a_share_token_as_share_list_shows_it_never_whole(shared):
    import io

    import webtest

    stream = io.StringIO()
    access_log = prisme_lite.AccessLog(stream)
    client = webtest.TestApp(prisme_lite.RequestLog(shared.app, access_log))
    assert client.get(f"/share/{shared.token}").status_int == 200
    access_log.close()
    [line] = stream.getvalue().splitlines()
    assert shared.token not in line
    assert f" GET /share/{shared.token[:8]}… 200 " in line
