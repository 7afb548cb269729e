"""Stats API and reports (SPEC §3.4, §4–§6): every metric against answers computed here, independently of its SQL."""

import datetime
import hashlib
import random
import sqlite3
import zlib
from collections import Counter, defaultdict

import pytest

import prisme_lite

DAY, MINUTE = 86_400_000, 60_000
NOW = int(datetime.datetime(2026, 11, 20, 12, 0, tzinfo=datetime.UTC).timestamp() * 1000)
TIMEOUT = 30 * MINUTE
PATHS = ["/", "/about", "/blog/one", "/blog/two", "/pricing", "/docs"]
REFERRERS = ["direct", "news.ycombinator.com", "google.com", "twitter.com"]
BROWSERS = [("Chrome", "Linux"), ("Firefox", "Windows"), ("Mobile Safari", "iOS")]
COUNTRIES = ["FR", "US", "DE", "XX"]


def day_salted(visitor, ts):
    """What make_visitor_id gives: `prisme_` + 16 hex digits, another id the next day."""
    return "prisme_" + hashlib.blake2b(f"{visitor}{ts // DAY}".encode(), digest_size=8).hexdigest()


def month_of_events(seed=7):
    """30 days of visits on two sites: pageviews, custom events, outbound links and downloads, sorted by time.

    The blog's visitors have day-salted ids, as the server makes them; the shop's give their own (visitor-id)."""
    rng = random.Random(seed)
    events = []
    for site, hosts in (
        ("blog.example.com", ["blog.example.com"]),
        ("*.shop.example", ["a.shop.example", "b.shop.example"]),
    ):
        for _visit in range(400):
            visitor = f"{site[:4]}-v{rng.randrange(40)}"
            # crc32, not hash(): a str's hash() changes with PYTHONHASHSEED, so each run drew other data (and 1 run
            # in 20 had no Firefox visitor in the last 6 hours, which test_the_live_count… needs)
            look = zlib.crc32(visitor.encode())
            browser, os_name = BROWSERS[look % 3]
            ts = NOW - rng.randrange(31 * DAY)
            utm = rng.choice([None, None, "newsletter", "twitter"])
            for n in range(rng.randint(1, 4)):
                kind = "pageview" if n == 0 else rng.choice(["pageview", "pageview", "custom", "outbound", "download"])
                events.append({
                    "ts": ts, "site": site, "kind": kind, "host": rng.choice(hosts), "path": rng.choice(PATHS),
                    "name": {"custom": rng.choice(["signup", "play"]), "outbound": "https://ext.example/",
                             "download": "https://cdn.example/a.zip"}.get(kind),
                    "referrer": rng.choice(REFERRERS) if n == 0 else "direct", "utm_source": utm if n == 0 else None,
                    "utm_medium": "email" if utm == "newsletter" and n == 0 else None, "utm_campaign": None,
                    "utm_term": None, "utm_content": None, "visitor_id": day_salted(visitor, ts) if site.startswith("blog")
                    else visitor, "browser": browser, "os": os_name,
                    "device": "desktop", "country": COUNTRIES[look % 4], "status": 200, "props": None,
                })  # fmt: skip
                ts += rng.randrange(1, 45) * MINUTE  # sometimes past the 30-minute timeout
    events.sort(key=lambda event: event["ts"])
    return events


RELOAD = "reload"


def model_sessions(events):
    """SPEC §3.3 done by hand: each event's session number (RELOAD for a pageview of the page its session is on,
    which is not stored: §3.3a), and the sessions (start, last, entry, exit, pageviews)."""
    open_session, sessions, of_event = {}, [], []
    for event in events:
        key = (event["site"], event["visitor_id"])
        current = open_session.get(key)
        is_open = current is not None and event["ts"] - current["last"] <= TIMEOUT
        if event["kind"] == "pageview" and is_open and current["on"] == (event["host"], event["path"]):
            of_event.append(RELOAD)
            continue
        if event["kind"] == "pageview":
            if not is_open:
                current = {"site": event["site"], "host": event["host"], "start": event["ts"], "last": event["ts"],
                           "entry": event["path"], "exit": event["path"], "pageviews": 0, "referrer": event["referrer"],
                           "utm_source": event["utm_source"], "utm_medium": event["utm_medium"],
                           "os": event["os"], "country": event["country"]}  # fmt: skip
                sessions.append(current)
                open_session[key] = current
            current["pageviews"] += 1
            current["exit"] = event["path"]
            current["on"] = (event["host"], event["path"])
        elif not is_open:
            of_event.append(None)
            continue
        current["last"] = max(current["last"], event["ts"])
        of_event.append(current)
    return of_event, sessions


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """A server with the month stored through the real writer; the events, and the modelled sessions."""
    path = tmp_path_factory.mktemp("stats") / "prisme.db"
    config = prisme_lite.load_config({"db": str(path), "access_log": "false"}, environ={})
    app = prisme_lite.make_app(config)
    events = month_of_events()
    for event in events:
        app.ctx.writer.append("web", dict(event))
    app.ctx.writer.flush()
    of_event, sessions = model_sessions(events)
    stored = [(event, session) for event, session in zip(events, of_event, strict=True) if session != RELOAD]
    yield app, [event for event, _ in stored], [session for _, session in stored], sessions
    app.ctx.close()


@pytest.fixture
def stats(month, monkeypatch):
    import webtest

    app = month[0]
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: NOW)
    client = webtest.TestApp(app)
    token = app.ctx.admin_token()

    def get(metric, status=200, **params):
        query = "&".join(f"{key.replace('_', '-')}={value}" for key, value in params.items())
        answer = client.get(
            f"/api/v1/stats/{metric}?{query}", headers={"Authorization": f"Bearer {token}"}, status=status
        )
        return answer.json

    return get


def buckets(start, end, step, values):
    """Expected series: {bucket start: value} → keys and values with every bucket from start's to end."""
    keys = list(range(start - start % step, end, step))
    return {"keys": keys, "values": [values.get(key, 0) for key in keys]}


MONTH_START = NOW - NOW % DAY - 30 * DAY  # now-30d/d


def in_month(event, kind="pageview", site=None):
    return event["kind"] == kind and MONTH_START <= event["ts"] < NOW and (site is None or event["site"] == site)


def test_pageviews_and_visitors_per_day_over_30_days(month, stats):
    _app, events, _of, _sessions = month
    pageviews = Counter(e["ts"] // DAY * DAY for e in events if in_month(e))
    visitors = defaultdict(set)
    for event in events:
        if in_month(event):
            visitors[event["ts"] // DAY * DAY].add(event["visitor_id"])
    answer = stats("pageviews", **{"from": "now-30d/d"})
    assert (answer["from"], answer["to"]) == ("2026-10-21T00:00:00Z", "2026-11-20T12:00:00Z")
    assert {"keys": answer["keys"], "values": answer["values"]} == buckets(MONTH_START, NOW, DAY, pageviews)
    assert len(answer["keys"]) == 31
    answer = stats("visitors", **{"from": "now-30d/d"})
    assert answer["values"] == buckets(MONTH_START, NOW, DAY, {k: len(v) for k, v in visitors.items()})["values"]


def test_session_metrics_match_the_model(month, stats):
    _app, _events, _of, sessions = month
    started = [s for s in sessions if MONTH_START <= s["start"] < NOW]
    count = Counter(s["start"] // DAY * DAY for s in started)
    bounces = Counter(s["start"] // DAY * DAY for s in started if s["pageviews"] == 1)
    durations = defaultdict(list)
    for session in started:
        durations[session["start"] // DAY * DAY].append(session["last"] - session["start"])
    assert stats("sessions", **{"from": "now-30d/d"})["values"] == buckets(MONTH_START, NOW, DAY, count)["values"]
    assert stats("bounces", **{"from": "now-30d/d"})["values"] == buckets(MONTH_START, NOW, DAY, bounces)["values"]
    average = {k: int(sum(v) / len(v)) for k, v in durations.items()}
    got = stats("sessions-duration", **{"from": "now-30d/d"})["values"]
    assert got == buckets(MONTH_START, NOW, DAY, average)["values"]


def top(counter, limit=10):
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return {"keys": [key for key, _n in ranked], "values": [n for _key, n in ranked]}


@pytest.mark.parametrize(
    ("metric", "field", "kind"),
    [("top-pages", "path", "pageview"), ("top-referrers", "referrer", "pageview"), ("top-utm-sources", "utm_source", "pageview"),
     ("top-utm-mediums", "utm_medium", "pageview"), ("top-countries", "country", "pageview"), ("top-operating-systems", "os", "pageview"),
     ("top-browsers", "browser", "pageview"), ("top-custom-events", "name", "custom"), ("top-outbound-links", "name", "outbound"),
     ("top-file-downloads", "name", "download")],
)  # fmt: skip
def test_top_lists(month, stats, metric, field, kind):
    events = month[1]
    expected = Counter(e[field] for e in events if in_month(e, kind) and e[field] is not None)
    answer = stats(metric, **{"from": "now-30d/d"})
    assert {"keys": answer["keys"], "values": answer["values"]} == top(expected)


def test_top_entry_and_exit_pages_and_limit(month, stats):
    sessions = [s for s in month[3] if MONTH_START <= s["start"] < NOW]
    entry = stats("top-entry-pages", limit=3, **{"from": "now-30d/d"})
    assert {"keys": entry["keys"], "values": entry["values"]} == top(Counter(s["entry"] for s in sessions), 3)
    exits = stats("top-exit-pages", **{"from": "now-30d/d"})
    assert {"keys": exits["keys"], "values": exits["values"]} == top(Counter(s["exit"] for s in sessions))


def test_each_filter_narrows_pageviews(month, stats):
    events, of_event = month[1], month[2]
    cases = {
        "domain": ("a.shop.example", lambda e, s: e["host"] == "a.shop.example"),
        "path": ("/about,/docs", lambda e, s: e["path"] in ("/about", "/docs")),
        "referrer": ("google.com", lambda e, s: e["referrer"] == "google.com"),
        "os": ("iOS", lambda e, s: e["os"] == "iOS"),
        "browser": ("Firefox,Chrome", lambda e, s: e["browser"] in ("Firefox", "Chrome")),
        "country": ("FR", lambda e, s: e["country"] == "FR"),
        "utm_source": ("newsletter", lambda e, s: e["utm_source"] == "newsletter"),
        "utm_medium": ("email", lambda e, s: e["utm_medium"] == "email"),
        "entry_path": ("/pricing", lambda e, s: s is not None and s["entry"] == "/pricing"),
        "exit_path": ("/,/blog/one", lambda e, s: s is not None and s["exit"] in ("/", "/blog/one")),
    }
    for name, (value, keep) in cases.items():
        expected = sum(1 for e, s in zip(events, of_event, strict=True) if in_month(e) and keep(e, s))
        got = sum(stats("pageviews", **{"from": "now-30d/d", name: value})["values"])
        assert got == expected, name
        assert 0 < expected < sum(1 for e in events if in_month(e)), name  # the filter did filter


@pytest.mark.parametrize(
    ("metric", "field"),
    [("top-visit-referrers", "referrer"), ("top-visit-utm-sources", "utm_source"),
     ("top-visit-utm-mediums", "utm_medium")],
)  # fmt: skip
def test_visits_count_by_what_their_first_pageview_came_from(month, stats, metric, field):
    """A visit is counted once, by its session's referrer or campaign: a click to the site's next page is no
    "direct" visit (top-referrers, which counts pageviews by their own referrer, keeps its meaning)."""
    for site in (None, "blog.example.com"):
        sessions = [s for s in month[3] if MONTH_START <= s["start"] < NOW and site in (None, s["site"])]
        expected = Counter(s[field] for s in sessions if s[field] is not None)
        answer = stats(metric, **{"from": "now-30d/d"}, **({"site": site} if site else {}))
        assert {"keys": answer["keys"], "values": answer["values"]} == top(expected), site
    if field == "referrer":
        pageviews = stats("top-referrers", **{"from": "now-30d/d"})
        assert pageviews["values"][pageviews["keys"].index("direct")] > expected["direct"]


def test_visit_filters_keep_the_visits_that_came_from_there(month, stats):
    """visit-referrer=google.com: every pageview of the visits that came from Google, not only their first."""
    events, of_event = month[1], month[2]
    for name, value, field in (("visit_referrer", "google.com", "referrer"), ("visit_utm_source", "newsletter",
                                                                              "utm_source")):  # fmt: skip
        expected = sum(1 for e, s in zip(events, of_event, strict=True) if in_month(e) and s and s[field] == value)
        own = sum(1 for e in events if in_month(e) and e[field] == value)
        got = sum(stats("pageviews", **{"from": "now-30d/d", name: value})["values"])
        assert got == expected > own, name  # more than the pageviews that carried it themselves
        sessions = [s for s in month[3] if MONTH_START <= s["start"] < NOW and s[field] == value]
        assert sum(stats("sessions", **{"from": "now-30d/d", name: value})["values"]) == len(sessions)


def test_event_filters_keep_the_visits_that_sent_them(month, stats):
    """event=signup: the pageviews of visits that sent a signup in the window, and the signups themselves."""
    events, of_event = month[1], month[2]
    for name, value, kind in (("event", "signup", "custom"), ("outbound_link", "https://ext.example/", "outbound"),
                              ("file_download", "https://cdn.example/a.zip", "download")):  # fmt: skip
        sent = {id(s) for e, s in zip(events, of_event, strict=True)
                if s and e["kind"] == kind and e["name"] == value and e["ts"] >= MONTH_START}  # fmt: skip
        expected = sum(1 for e, s in zip(events, of_event, strict=True) if in_month(e) and id(s) in sent)
        got = sum(stats("pageviews", **{"from": "now-30d/d", name: value})["values"])
        assert 0 < got == expected < sum(1 for e in events if in_month(e)), name
        kinds = Counter(e["name"] for e, s in zip(events, of_event, strict=True)
                        if in_month(e, kind) and (id(s) in sent or e["name"] == value))  # fmt: skip
        metric = {"custom": "top-custom-events", "outbound": "top-outbound-links", "download": "top-file-downloads"}
        answer = stats(metric[kind], **{"from": "now-30d/d", name: value})
        assert {"keys": answer["keys"], "values": answer["values"]} == top(kinds), name


def test_top_site_pages_keep_equal_paths_of_two_sites_apart(month, stats):
    expected = Counter(f"{e['site']} {e['path']}" for e in month[1] if in_month(e))
    answer = stats("top-site-pages", limit=20, **{"from": "now-30d/d"})
    assert {"keys": answer["keys"], "values": answer["values"]} == top(expected, 20)
    assert len(answer["keys"]) == 2 * len(PATHS)  # every path on both sites, each its own row
    site, path = answer["keys"][0].split(" ")
    assert answer["details"][0] == {"site": site, "path": path, "pageviews": answer["values"][0]}


def test_site_and_combined_filters(month, stats):
    events = month[1]
    expected = Counter(e["path"] for e in events if in_month(e, site="*.shop.example") and e["os"] == "iOS")
    answer = stats("top-pages", site="*.shop.example", os="iOS", **{"from": "now-30d/d"})
    assert {"keys": answer["keys"], "values": answer["values"]} == top(expected)


def test_session_metrics_take_filters_too(month, stats):
    sessions = [s for s in month[3] if MONTH_START <= s["start"] < NOW]
    assert sum(stats("sessions", country="DE", **{"from": "now-30d/d"})["values"]) == sum(
        1 for s in sessions if s["country"] == "DE"
    )
    assert sum(stats("sessions", domain="b.shop.example", **{"from": "now-30d/d"})["values"]) == sum(
        1 for s in sessions if s["host"] == "b.shop.example"
    )


def test_time_windows_choose_about_32_buckets(month, stats):
    for window, step in (
        ("now-1h", 300_000),
        ("now-24h", 3_600_000),
        ("now-7d", 6 * 3_600_000),
        ("now-30d", DAY),
        ("now-1y", 14 * DAY),
    ):
        answer = stats("pageviews", **{"from": window})
        assert answer["keys"][1] - answer["keys"][0] == step, window
        assert 10 <= len(answer["keys"]) <= 41
    live = stats("live-visitors")
    assert live["from"] == "2026-11-20T11:30:00Z" and len(live["keys"]) == 30  # the last 30 minutes by the minute


def test_live_visitors_counts_any_activity(month, stats):
    events = month[1]
    start = NOW - 6 * 3_600_000
    seen = defaultdict(set)
    for event in events:
        if start <= event["ts"] < NOW:
            seen[event["ts"] // 900_000 * 900_000].add(event["visitor_id"])
    answer = stats("live-visitors", **{"from": "now-6h"})
    assert answer["values"] == buckets(start, NOW, 900_000, {k: len(v) for k, v in seen.items()})["values"]


def test_the_live_count_is_the_distinct_visitors_of_the_last_30_minutes(month, stats):
    """live-count: any event in the window (the last 30 minutes unless told), each visitor once; filters apply."""
    events = month[1]
    for window, start in (({}, NOW - 30 * MINUTE), ({"from": "now-6h"}, NOW - 360 * MINUTE)):
        seen = {e["visitor_id"] for e in events if start <= e["ts"] < NOW}
        answer = stats("live-count", **window)
        assert (answer["from"], answer["keys"], answer["values"]) == (
            prisme_lite.iso_time(start),
            ["visitors"],
            [len(seen)],
        )
        assert sum(stats("live-visitors", **window)["values"]) >= len(seen)  # a series counts a visitor per bucket
    seen = {e["visitor_id"] for e in events if NOW - 360 * MINUTE <= e["ts"] < NOW and e["browser"] == "Firefox"}
    assert stats("live-count", browser="Firefox", **{"from": "now-6h"})["values"] == [len(seen)]
    assert len(seen) > 0


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("now", "2026-11-20T12:00:00Z"),
        ("now-7d", "2026-11-13T12:00:00Z"),
        ("now+1h", "2026-11-20T13:00:00Z"),
        ("now-7d/d", "2026-11-13T00:00:00Z"),
        ("now-1M-2d/h", "2026-10-18T12:00:00Z"),
        ("now/w", "2026-11-16T00:00:00Z"),  # a Monday
        ("now/M", "2026-11-01T00:00:00Z"),
        ("now-1y/y", "2025-01-01T00:00:00Z"),
        ("now-90m", "2026-11-20T10:30:00Z"),
        ("2026-03-01", "2026-03-01T00:00:00Z"),
        ("2026-03-01T10:00:00+02:00", "2026-03-01T08:00:00Z"),
    ],
)
def test_time_expressions(expression, expected):
    assert prisme_lite.iso_time(prisme_lite.parse_time(expression, NOW, "from")) == expected


def test_a_plus_sent_unencoded_is_read_as_the_plus_it_was(stats):
    # In a query string `+` means a space: now+1h arrives as "now 1h", an RFC 3339 offset +02:00 as " 02:00".
    answer = stats("pageviews", **{"from": "2026-11-20T10:00:00+02:00", "to": "now+1h"})
    assert (answer["from"], answer["to"]) == ("2026-11-20T08:00:00Z", "2026-11-20T13:00:00Z")
    assert answer == stats("pageviews", **{"from": "2026-11-20T10:00:00%2B02:00", "to": "now%2B1h"})
    assert stats("pageviews", **{"from": "now-1d 2h"})["from"] == "2026-11-19T14:00:00Z"
    assert stats("pageviews", **{"from": "2026-11-20+10:00:00Z"})["from"] == "2026-11-20T10:00:00Z"  # + as space


def test_month_arithmetic_clamps_the_day():
    march_31 = int(datetime.datetime(2026, 3, 31, tzinfo=datetime.UTC).timestamp() * 1000)
    assert prisme_lite.iso_time(prisme_lite.parse_time("now-1M", march_31, "from")) == "2026-02-28T00:00:00Z"


@pytest.mark.parametrize(
    ("metric", "params", "words"),
    [
        ("pageviews", {"from": "yesterday"}, "from: 'yesterday' is not"),
        ("pageviews", {"from": "now-7x"}, "from: cannot read"),
        ("pageviews", {"to": "2026-02-30"}, "to: '2026-02-30' is not"),
        ("pageviews", {"from": "now", "to": "now-1d"}, "from must be before to"),
        ("pageviews", {"from": "now-11y"}, "at most ten years"),
        ("top-pages", {"limit": "0"}, "limit must be an integer from 1 to 1000"),
        ("top-pages", {"limit": "many"}, "limit must be"),
        # Numbers are ASCII digits of a bounded length (issue 18.6): these were 500s, or read as numbers.
        ("top-pages", {"limit": "\u00b2"}, "limit must be"),  # isdigit() is true, int() fails
        ("top-pages", {"limit": "9" * 5000}, "limit must be"),  # over int()'s 4,300 digits
        ("top-pages", {"limit": "\u0663"}, "limit must be"),  # ARABIC-INDIC DIGIT THREE, which int() reads as 3
        ("pageviews", {"from": "now-\u0663d"}, "from: cannot read"),
        ("top-pages", {"colour": "red"}, "unknown parameter 'colour'"),
    ],
)
def test_bad_parameters_are_400_naming_them(stats, metric, params, words):
    query = {key: value for key, value in params.items()}
    assert words in stats(metric, status=400, **query)["error"]


def test_auth_and_unknown_metrics(month):
    import webtest

    app = month[0]
    client = webtest.TestApp(app)
    assert client.get("/api/v1/stats/pageviews", status=401).json["error"].startswith("access token missing")
    with sqlite3.connect(app.ctx.config["db"]) as conn:
        reader = prisme_lite.create_access_token(conn, ["stats_read"], "grafana")[1]
        writer = prisme_lite.create_access_token(conn, ["capture_publish"], "backend")[1]
    client.get("/api/v1/stats/pageviews", headers={"Authorization": f"Bearer {reader}"}, status=200)
    client.get("/api/v1/stats/pageviews", headers={"Authorization": f"Bearer {writer}"}, status=403)
    unknown = client.get("/api/v1/stats/nope", headers={"Authorization": f"Bearer {reader}"}, status=404)
    assert unknown.json["error"].startswith("unknown metric 'nope'")


class PlanRecorder:
    """A connection stand-in that records the query plan of every statement before running it."""

    def __init__(self, conn):
        self.conn, self.plans = conn, []

    def execute(self, sql, params=()):
        self.plans += [row[3] for row in self.conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
        return self.conn.execute(sql, params)


WEB_METRICS = [name for name in prisme_lite.METRICS if name in (
    "overview", "pageviews", "visitors", "sessions", "bounces", "sessions-duration", "top-pages", "top-entry-pages",
    "top-exit-pages", "top-referrers", "top-utm-sources", "top-utm-mediums", "top-utm-campaigns", "top-countries",
    "top-operating-systems", "top-browsers", "top-custom-events", "top-outbound-links", "top-file-downloads",
    "top-visit-referrers", "top-visit-utm-sources", "top-visit-utm-mediums", "top-visit-utm-campaigns",
    "top-site-pages",
)]  # fmt: skip


def plans_of(app, name, q):
    recorder = PlanRecorder(app.ctx.read())
    prisme_lite.METRICS[name](recorder, q)
    return recorder.plans


def test_the_dashboard_window_reads_only_the_daily_counts(month):
    """The dashboard's 30 days (now-29d/d to now/d+1d) come from daily counts by primary key: no raw row is read."""
    q = prisme_lite.parse_stats_query([("site", "blog.example.com"), ("from", "now-29d/d"), ("to", "now/d+1d")], NOW)
    for name in WEB_METRICS:
        plans = plans_of(month[0], name, q)
        assert any("USING PRIMARY KEY (site=? AND dim=? AND day>? AND day<?)" in plan for plan in plans), (name, plans)
        assert not any(" e " in f"{plan} " or " s " in f"{plan} " for plan in plans), (name, plans)
        assert not any(plan.startswith(("SCAN c", "SCAN d ")) for plan in plans), (name, plans)


def test_partial_days_and_filters_read_raw_rows_through_the_time_indexes(month):
    """A window's partial first day, and any filter, read raw rows of the site's window by index, never a table."""
    app = month[0]
    indexed = ("USING INDEX events_site_ts (site=? AND ts>? AND ts<?)", "sessions_started (site=? AND started_at>?")
    for params in ([("from", "now-30d")], [("from", "now-30d/d"), ("os", "iOS")]):
        q = prisme_lite.parse_stats_query([("site", "blog.example.com"), *params], NOW)
        for name in WEB_METRICS:
            plans = plans_of(app, name, q)
            assert any(index in plan for plan in plans for index in indexed), (name, params, plans)
            assert not any(plan.startswith(("SCAN e", "SCAN s")) for plan in plans), (name, params, plans)


@pytest.mark.parametrize(
    "window",
    [
        {"from": "now-29d/d", "to": "now/d+1d"},  # the dashboard's 30 days: whole days, today's too
        {"from": "now-30d/d"},  # whole days, today up to now
        {"from": "now-30d"},  # a partial first day
        {"from": "now-20d/d", "to": "now-3d-5h"},  # a partial last day, in the past
        {"from": "now-40d", "to": "now-2d/d"},  # both edges, and days before the first event
        {"from": "now-7d/d"},  # buckets of hours: raw rows for the series, daily counts for the rest
        {"from": "now-6d/d", "to": "now/d+1d"},  # the dashboard's 7 days, in buckets of hours too
        {"from": "now-1y"},  # buckets of 14 days
        {"from": "now-6h"},  # less than a day: raw rows only
        # a partial edge day more inside the window than outside: whole, less the raw rows outside (subtracted_edges)
        {"from": "now-30d-7h"},  # from 05:00: the first day less its 5 hours before
        {"from": "now-20d/d", "to": "now-3d+6h"},  # to 18:00: the last day less its 6 hours after
        {"from": "now-10d-9h", "to": "now-2d/d+23h"},  # both edges
        {"from": "now-9h"},  # today from 03:00: today's counts less 00:00-03:00
        {"from": "now-30h", "to": "now-1h"},  # yesterday from 06:00, today to an hour ago
        {"from": "now-1d-3h", "to": "now-1d+9h"},  # within one day: raw rows only
    ],
)
@pytest.mark.parametrize("site", [None, "blog.example.com", "*.shop.example"])
def test_daily_counts_answer_exactly_what_raw_rows_do(month, monkeypatch, window, site):
    """Every web metric over daily counts equals the same metric read from raw rows only (no daily counts)."""
    conn = month[0].ctx.read()
    q = prisme_lite.parse_stats_query([*window.items(), *([("site", site)] if site else [])], NOW)
    with_counts = {name: prisme_lite.METRICS[name](conn, q) for name in WEB_METRICS}
    monkeypatch.setattr(prisme_lite, "rollup_days", lambda conn, q, subtract=False: None)
    for name in WEB_METRICS:
        assert with_counts[name] == prisme_lite.METRICS[name](conn, q), (name, window, site)
    assert with_counts["overview"][1][1] > 0
