"""Reads from ClickHouse (SPEC §10, stats_source = clickhouse): on the same events every metric, report and filter
answers what SQLite answers, through the stats API of one real app switched between its two sources."""

import json
import random
import sqlite3
import time

import pytest
import webtest
from conftest import CHROME, IPHONE, clear_of_the_hour, free_port, make_config
from test_browser import Served, chromium  # noqa: F401 -- a fixture

import prisme_lite

pytestmark = pytest.mark.server

DAY, HOUR, MINUTE = 86_400_000, 3_600_000, 60_000
# The start of the hour the module was imported in (counter tokens, checked by the real clock, are issued at the time
# they are asked: store_the_other_families).
NOW = prisme_lite.now_ms() // HOUR * HOUR + 1000
SITES = {"blog.example.com": ["blog.example.com"], "*.shop.example": ["a.shop.example", "b.shop.example"]}
PATHS = ["/", "/about", "/blog/one", "/blog/two", "/pricing", "/docs/é", "/it's\\100%"]  # a quote and a backslash
REFERRERS = ["direct", "news.ycombinator.com", "google.com", "twitter.com"]
AGENTS = [("Chrome", "Linux", "desktop"), ("Firefox", "Windows", "desktop"), ("Mobile Safari", "iOS", "mobile")]
COUNTRIES = ["FR", "US", "DE", "XX"]
UTM = [
    {},
    {},
    {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "winter"},
    {"utm_source": "twitter", "utm_medium": "social", "utm_term": "analytics", "utm_content": "banner"},
]
PROPS = [None, {"plan": "pro"}, {"plan": "free", "seats": 3}, {"price": 9.5, "trial": True, "tags": ["a", "b"]},
         {"plan": "pro", "ratio": 2.0, "extra": None, "nested": {"k": 1.25}}]  # fmt: skip
# Windows of every shape the dashboard asks: whole days, partial days at both ends, the last 30 days up to now, hours.
WINDOWS = [
    {"from": "now-7d/d", "to": "now/d+1d"},
    {"from": "now-36h", "to": "now-3h"},
    {"from": "now-30d", "to": "now"},
    {"from": "now-1d", "to": "now"},
    {"from": "now-20d/d", "to": "now-12d/d"},
]


def web_events(rng):
    """Visits on two sites over 40 days: pageviews with referrers and campaigns, custom events with properties,
    outbound links and downloads; some visitors give their own id, some come back after the session timeout."""
    events = []
    for site, hosts in SITES.items():
        for _visit in range(150):
            visitor = f"{site[:4]}-v{rng.randrange(30)}"
            browser, os_name, device = AGENTS[rng.randrange(3)]
            ts = NOW - rng.randrange(40 * DAY)
            utm = rng.choice(UTM)
            country = rng.choice(COUNTRIES)
            for n in range(rng.randint(1, 5)):
                kind = "pageview" if n == 0 else rng.choice(["pageview", "pageview", "custom", "outbound", "download"])
                props = rng.choice(PROPS) if kind == "custom" else None
                events.append({
                    "ts": ts, "site": site, "kind": kind, "host": rng.choice(hosts), "path": rng.choice(PATHS),
                    "name": {"custom": rng.choice(["signup", "play"]), "outbound": "https://ext.example/",
                             "download": rng.choice(["https://cdn.example/a.zip", "https://cdn.example/b.pdf"])}.get(kind),
                    "referrer": rng.choice(REFERRERS) if n == 0 else "direct",
                    **{f"utm_{k}": (utm.get(f"utm_{k}") if n == 0 else None)
                       for k in ("source", "medium", "campaign", "term", "content")},
                    "visitor_id": visitor, "browser": browser, "os": os_name, "device": device, "country": country,
                    "status": 200, "props": json.dumps(props, separators=(",", ":")) if props else None,
                })  # fmt: skip
                ts += rng.randrange(1, 50) * MINUTE
    return sorted(events, key=lambda event: event["ts"])


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


def store_the_other_families(app, client, clock, rng):
    """Server events (likes undone and redone), counters, widget beacons and checkouts, through their routes."""
    with sqlite3.connect(app.ctx.config["db"]) as conn:
        server_token = prisme_lite.create_access_token(conn, ["capture_publish"], "cms")[1]
        widget_token = prisme_lite.create_access_token(conn, ["track_public"], "shop")[1]
    admin = {"Authorization": f"Bearer {app.ctx.admin_token()}"}
    labels = ["View", "Like", "Unlike", "Bookmark", "Unbookmark", "Subscribe", "SignUp", "Like"]
    for n in range(120):
        clock.now = NOW - 35 * DAY + n * 7 * HOUR  # they arrive in order; each carries its sender's timestamp
        label = rng.choice(labels)
        event = {"label": label, "timestamp": clock.now // 1000 - rng.randrange(3600),
                 "customer": {"id": f"cust-{rng.randrange(12)}"}, "rl": rng.choice(["https://google.com/", None])}  # fmt: skip
        if label != "SignUp":
            event["content_item"] = {"id": f"item-{rng.randrange(4)}"}
        if n % 3 == 0:
            event |= {"utm_source": rng.choice(["newsletter", "ads"]), "utm_medium": "email"}
        event = {k: v for k, v in event.items() if v is not None}
        client.post_json("/events", event, headers={"Authorization": f"Bearer {server_token}"}, status=202)
    for domain in ("blog.example.com", "a.shop.example"):
        clock.now = NOW
        answer = client.post_json(
            "/api/v1/register", {"clientName": domain, "domainName": domain, "emailId": "a@example.com"},
            headers=admin, status=201,
        ).json  # fmt: skip
        client.post_json(
            "/api/v1/configure", {**answer, "validPageIds": ["intro", "guide"], "validActionIds": ["likes", "claps"]}
        )
        clear_of_the_hour(60)  # the tokens below expire at the top of the hour, checked by the real clock
        issued = int(time.time() * 1000)  # not NOW: the module may have been imported in the hour before
        for n in range(40):
            clock.now = issued + n
            token = client.get(
                "/api/v1/token", headers={"Origin": f"https://{domain}", "User-Agent": CHROME},
                extra_environ={"REMOTE_ADDR": f"198.51.100.{n}"},
            ).json["token"]  # fmt: skip
            client.post(
                f"/api/v1/{rng.choice(['likes', 'claps'])}/{rng.choice(['intro', 'guide'])}/increment",
                json.dumps({"token": token}), headers={"Content-Type": "application/json", "User-Agent": CHROME},
            )  # fmt: skip
    for n in range(150):
        clock.now = NOW - rng.randrange(30 * DAY)
        analytics_id = f"a-{rng.randrange(25)}"
        where = rng.choice(["category/12", "stream/34", "best"])
        action = rng.choice(["render", "render", "move", "media/77/view", "media/78/click", "media/77/shop"])
        params = {"auth_token": widget_token, "analytics_id": analytics_id, "pics": 8}
        if n % 2:
            params |= {"ab_testing": rng.randrange(2), "segments[]": rng.choice(["country:US", "plan:pro"])}
        if action.endswith("shop"):
            params["redirect_url"] = "https://blog.example.com/product"
        client.get(f"/track/widget/inst-{rng.randrange(3)}/{where}/{action}.json", params,
                   headers={"User-Agent": rng.choice([CHROME, IPHONE])}, status=[200, 302])  # fmt: skip
    for n in range(30):
        clock.now = NOW - rng.randrange(30 * DAY)
        client.get(
            f"/track/transaction/T-{n}/checkout.json",
            {"auth_token": widget_token, "analytics_id": f"a-{rng.randrange(25)}", "products[]": f"p{n % 4}:1{n}.25",
             "currency_code": rng.choice(["USD", "EUR"])}, headers={"User-Agent": CHROME},
        )  # fmt: skip


def shipped(app, timeout=120.0):
    """Once the mirror has shipped every stored and changed row (the mirror of issue 20, running in the app)."""
    deadline = time.monotonic() + timeout
    with sqlite3.connect(app.ctx.config["db"]) as conn:
        while prisme_lite.mirror_lag(conn, prisme_lite.now_ms())["behind_rows"]:
            assert time.monotonic() < deadline, prisme_lite.mirror_lag(conn, prisme_lite.now_ms())
            time.sleep(0.2)


def insert_stale_copies(db, target, node_id):
    """Every row SQLite holds once more, as the mirror sent it but at an older version, twice (a retried insert), and
    a session at an older state: what reads with FINAL must not see."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    tables = {
        "events": "events", "sessions": "sessions", "server_events": "server_events",
        "widget_events": "widget_events", "checkouts": prisme_lite.CHECKOUTS_EXPORTED,
        "counter_increments": "counter_days",
    }  # fmt: skip
    for table, source in tables.items():
        rows = [dict(row) | {"node_id": node_id, "version": 1} for row in conn.execute(f"SELECT * FROM {source}")]
        assert rows, table
        for _ in range(2):
            target.insert(table, rows)
    stale = dict(conn.execute("SELECT * FROM sessions LIMIT 1").fetchone())
    target.insert("sessions", [stale | {"pageviews": 99, "exit_path": "/stale", "node_id": node_id, "version": 0}])
    conn.close()


@pytest.fixture(scope="module")
def sources(clickhouse, tmp_path_factory):
    """One app on one database, its events stored through the real writer and routes and shipped to ClickHouse by
    its mirror; get(source, metric, **params) asks its stats API with stats_source switched to `source`."""
    database, url = clickhouse.database()
    target = prisme_lite.ClickHouseTarget.parse(url)
    prisme_lite.clickhouse_init(target)
    path = tmp_path_factory.mktemp("chreads") / "prisme.db"
    flags = {"db": str(path), "access_log": "false", "rate_limit": "0", "events_rate_limit": "0",
             "origins": "localhost,blog.example.com,*.shop.example", "clickhouse_url": url}  # fmt: skip
    config = prisme_lite.load_config(flags, environ={})
    app = prisme_lite.make_app(config)
    client = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": "203.0.113.9"})
    rng = random.Random(20)
    clock = Clock()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prisme_lite, "now_ms", clock)
        for event in web_events(rng):
            app.ctx.writer.append("web", event)
        store_the_other_families(app, client, clock, rng)
        app.ctx.writer.flush()
        with sqlite3.connect(path) as conn:
            prisme_lite.add_goal(conn, "blog.example.com", "event", "signup")
            prisme_lite.add_goal(conn, "*.shop.example", "path", "/pricing")
        shipped(app)
        assert (
            int(clickhouse.query("SELECT count() FROM events", database))
            == app.ctx.read().execute("SELECT count(*) FROM events").fetchone()[0]
        )
        insert_stale_copies(path, target, app.ctx.mirror.node_id)
        token = app.ctx.admin_token()
        clock.now = NOW

        def get(source, metric, status=200, **params):
            app.ctx.config["stats_source"] = source
            answer = client.get(
                f"/api/v1/stats/{metric}", params, headers={"Authorization": f"Bearer {token}"}, status=status
            )
            return answer.json

        get.app = app
        yield get
    app.ctx.close()


def same(get, metric, **params):
    """The answer of both sources, which must be equal (the tests check that the data set reaches each metric)."""
    sqlite, clickhouse = get("sqlite", metric, **params), get("clickhouse", metric, **params)
    assert clickhouse == sqlite, (metric, params)
    return sqlite


# A value of each filter that the data set holds, and two that combine.
FILTER_VALUES = {
    "domain": "a.shop.example", "path": "/pricing", "entry-path": "/", "exit-path": "/about",
    "referrer": "google.com", "os": "iOS", "browser": "Firefox", "country": "FR", "utm-source": "newsletter",
    "utm-medium": "social", "utm-campaign": "winter", "utm-term": "analytics", "utm-content": "banner",
    "visit-referrer": "twitter.com", "visit-utm-source": "twitter", "visit-utm-medium": "email",
    "visit-utm-campaign": "winter", "event": "signup", "outbound-link": "https://ext.example/",
    "file-download": "https://cdn.example/a.zip,https://cdn.example/b.pdf", "label": "Like", "instance": "inst-1",
}  # fmt: skip
COMBINED = [{"country": "FR", "browser": "Chrome"}, {"path": "/", "visit-referrer": "google.com"},
            {"event": "signup", "os": "Linux"}, {"label": "View", "utm-source": "ads"}]  # fmt: skip


def test_every_filter_has_a_value_here():
    assert set(FILTER_VALUES) | {"client"} == set(prisme_lite.stats_filters())


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: f"{w['from']}..{w['to']}")
def test_every_metric_answers_alike_in_every_window(sources, window):
    answered = {metric: same(sources, metric, limit=50, **window) for metric in prisme_lite.METRICS}
    # The data set reaches every metric: none of them compared empty answers only.
    if window["from"] == "now-30d":
        assert [metric for metric, answer in answered.items() if not any(answer["values"])] == []


@pytest.mark.parametrize("name", sorted(FILTER_VALUES))
def test_every_metric_answers_alike_under_each_filter(sources, name):
    for metric in prisme_lite.METRICS:
        same(sources, metric, **{"from": "now-30d", name: FILTER_VALUES[name]})
    same(sources, "overview", **WINDOWS[1], **{name: FILTER_VALUES[name]})


@pytest.mark.parametrize("filters", COMBINED, ids=lambda f: "+".join(f))
def test_two_filters_together_and_one_site(sources, filters):
    for metric in prisme_lite.METRICS:
        for window in (WINDOWS[0], WINDOWS[2]):
            same(sources, metric, **window, **filters)
        same(sources, metric, site="*.shop.example", **WINDOWS[2], **filters)


def test_a_counter_client_filter_and_each_site(sources):
    clients = same(sources, "counters", **{"from": "now-30d"})["details"]
    assert len({row["client"] for row in clients}) == 2
    for site in SITES:
        for metric in prisme_lite.METRICS:
            same(sources, metric, site=site, **{"from": "now-30d"})
    client_id = same(sources, "counters", **{"from": "now-30d"})["keys"][0].split(" ")[0]
    for metric in ("counters", "counter-increments"):
        assert any(same(sources, metric, client=client_id, **{"from": "now-30d"})["values"])


def test_a_duplicate_or_stale_row_changes_nothing(sources, clickhouse):
    """FINAL reads each row once at its latest version: the doubled inserts and the stale session are not counted."""
    overview = same(sources, "overview", **{"from": "now-60d"})
    assert overview["values"][2] > 0
    exits = same(sources, "top-exit-pages", **{"from": "now-60d"}, limit=100)["keys"]
    assert "/stale" not in exits


def test_a_filter_value_with_quotes_and_backslashes_is_a_value_not_sql(sources):
    assert any(same(sources, "pageviews", path="/it's\\100%", **{"from": "now-30d"})["values"])
    assert same(sources, "top-pages", path="/it' OR '1'='1", **{"from": "now-30d"})["keys"] == []


# What the dashboard asks for each period (static/dashboard.js PERIODS): its cards, chart, live count and panels.
DASHBOARD_PERIODS = [("now/d", "now/d+1d"), ("now-6d/d", "now/d+1d"), ("now-29d/d", "now/d+1d"),
                     ("now-11M/M", "now/M+1M")]  # fmt: skip


def test_the_dashboard_reads_the_same_answers_from_clickhouse(sources):
    """Logged in with the dashboard's cookie: the page, and every call it makes for each period, alike."""
    panels = [panel[1] for family in prisme_lite.FAMILIES for panel in family.panels]
    assert "top-site-pages" in panels and "goals" in panels and "top-widgets" in panels
    for start, end in DASHBOARD_PERIODS:
        window = {"from": start, "to": end}
        for metric in ("overview", "pageviews", "visitors"):
            same(sources, metric, **window)
        for metric in panels:
            same(sources, metric, limit=10, **window)
        same(sources, "custom-event-properties", limit=20, event="signup", **window)
    same(sources, "live-count")


def test_the_dashboard_page_shows_the_same_numbers_from_clickhouse(sources, chromium):  # noqa: F811
    """The dashboard in Chromium, its 30 days read from SQLite and then from ClickHouse: the same page."""
    served = Served(prisme_lite.RequestLog(sources.app, access_log=False))
    context = chromium.new_context(user_agent=CHROME, viewport={"width": 1100, "height": 1400})
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{served.port}/dashboard")
        page.fill("#token", sources.app.ctx.admin_token())
        page.click("button[type=submit]")
        shown = {}
        for source in ("sqlite", "clickhouse"):
            sources.app.ctx.config["stats_source"] = source
            page.goto(f"http://127.0.0.1:{served.port}/dashboard?period=30d")
            page.wait_for_selector("#pageviews-total")
            page.wait_for_selector("section.panel >> nth=12")
            shown[source] = page.inner_text("#report")
        assert shown["clickhouse"] == shown["sqlite"]
        assert "Top pages" in shown["sqlite"] and "/pricing" in shown["sqlite"]
    finally:
        context.close()
        served.close()


def test_a_shared_dashboard_reads_the_same_suppressed_answers_from_clickhouse(sources):
    """A share link's API (its site, small counts as "< 5") over ClickHouse: the share wraps the answer alike."""
    app = sources.app
    with sqlite3.connect(app.ctx.config["db"]) as conn:
        token = prisme_lite.create_share(conn, "*.shop.example", None)
    client = webtest.TestApp(app)
    for metric in ("overview", "pageviews", "top-site-pages", "top-countries", "goals", "top-custom-events"):
        answers = []
        for source in ("sqlite", "clickhouse"):
            app.ctx.config["stats_source"] = source
            answers.append(
                client.get(f"/api/v1/stats/{metric}", {"from": "now-30d"}, headers={"X-Prisme-Share": token}).json
            )
        assert answers[1] == answers[0], metric
        assert answers[0]["values"]


def test_clickhouse_down_is_a_503_that_says_so(make_server):
    server = make_server(stats_source="clickhouse", clickhouse_url=f"http://127.0.0.1:{free_port()}/?database=x")
    answer = server.client.get(
        "/api/v1/stats/overview", headers={"Authorization": f"Bearer {server.ctx.admin_token()}"}, status=503
    )
    assert "stats_source is clickhouse" in answer.json["error"] and "did not answer" in answer.json["error"]


def test_stats_source_clickhouse_needs_a_clickhouse_url(tmp_path):
    with pytest.raises(prisme_lite.ConfigError, match="needs clickhouse_url"):
        make_config(tmp_path, stats_source="clickhouse")
    with pytest.raises(prisme_lite.ConfigError, match="stats_source"):
        make_config(tmp_path, stats_source="postgres")
    config = prisme_lite.load_config(
        {"db": str(tmp_path / "p.db")},
        environ={"PRISME_STATS_SOURCE": "clickhouse", "PRISME_CLICKHOUSE_URL": "http://127.0.0.1:8123/"},
    )
    assert config["stats_source"] == "clickhouse"


def test_two_nodes_read_together_and_their_equal_session_ids_stay_apart(clickhouse, tmp_path):
    """Two nodes on two databases mirror into one ClickHouse; each numbers its sessions from 1. Read from ClickHouse,
    either node shows both nodes' events, and a visit filter keeps each event with its own node's session."""
    _database, url = clickhouse.database()
    prisme_lite.clickhouse_init(prisme_lite.ClickHouseTarget.parse(url))
    apps = {}
    for node, entry in (("east", "/east-entry"), ("west", "/west-entry")):
        (tmp_path / node).mkdir()
        config = make_config(tmp_path / node, clickhouse_url=url, node_id=node, stats_source="clickhouse")
        app = apps[node] = prisme_lite.make_app(config)
        for n, path in enumerate((entry, "/shared")):
            app.ctx.writer.append("web", {
                "ts": NOW - HOUR + n * MINUTE, "site": "localhost", "kind": "pageview", "name": None,
                "host": "localhost", "path": path, "referrer": "direct", "utm_source": None, "utm_medium": None,
                "utm_campaign": None, "utm_term": None, "utm_content": None, "visitor_id": f"{node}-visitor",
                "browser": "Chrome", "os": "Linux", "device": "desktop", "country": "FR", "status": 200, "props": None,
            })  # fmt: skip
        app.ctx.writer.flush()
    try:
        for app in apps.values():
            shipped(app)
            assert app.ctx.read().execute("SELECT id FROM sessions").fetchall() == [(1,)]
        token = apps["east"].ctx.admin_token()
        client = webtest.TestApp(apps["east"])

        def get(metric, **params):
            answer = client.get(f"/api/v1/stats/{metric}", {"from": "now-1d", **params},
                                headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            return dict(zip(answer.json["keys"], answer.json["values"], strict=True))

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(prisme_lite, "now_ms", lambda: NOW)
            assert get("overview")["pageviews"] == 4 and get("overview")["visitors"] == 2
            assert get("top-pages", **{"entry-path": "/east-entry"}) == {"/east-entry": 1, "/shared": 1}
            assert get("top-pages", **{"visit-referrer": "direct"})["/shared"] == 2
            assert get("top-entry-pages", path="/west-entry") == {"/west-entry": 1}
            apps["east"].ctx.config["stats_source"] = "sqlite"
            assert get("overview")["pageviews"] == 2  # a node's own file: its own events
    finally:
        for app in apps.values():
            app.ctx.close()
