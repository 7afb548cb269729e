"""Reports of the counter, server-event and widget families, as stats metrics (SPEC §4–§6)."""

import sqlite3
import time

import pytest
import webtest
from conftest import CHROME

import prisme_lite

DAY = 86_400_000


@pytest.fixture
def reports(server):
    client = webtest.TestApp(server.app)
    token = server.ctx.admin_token()

    def get(metric, **params):
        # A window ends before `now`, exclusive: an event sent in this very millisecond would fall outside it.
        sent_by = time.time_ns() // 1_000_000
        while time.time_ns() // 1_000_000 == sent_by:
            time.sleep(0.0002)
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return client.get(f"/api/v1/stats/{metric}?{query}", headers={"Authorization": f"Bearer {token}"}).json

    return get


def test_counter_reports(server, reports):
    today = prisme_lite.now_ms() // DAY
    with sqlite3.connect(server.config["db"]) as conn:
        conn.executemany(
            "INSERT INTO counter_days (client_id, action_id, page_id, day, count) VALUES (?, ?, ?, ?, ?)",
            [("cl_a", "likes", "intro", today, 5), ("cl_a", "likes", "intro", today - 2, 3), ("cl_a", "claps", "guide", today - 1, 4),
             ("cl_b", "likes", "intro", today, 1), ("cl_a", "likes", "intro", today - 40, 100)],
        )  # fmt: skip
    totals = reports("counters", **{"from": "now-30d"})
    assert (totals["keys"], totals["values"]) == (
        ["cl_a likes intro", "cl_a claps guide", "cl_b likes intro"],
        [8, 4, 1],
    )
    assert reports("counters", client="cl_b", **{"from": "now-30d"})["values"] == [1]
    with sqlite3.connect(server.config["db"]) as conn:  # a registered client is named; another keeps its id
        conn.execute("INSERT INTO counter_clients (id, name, domain, email, secret_hash, created_at)"
                     " VALUES ('cl_a', 'Docs', 'docs.example', 'a@example.com', 'x', 0)")  # fmt: skip
    assert reports("counters", **{"from": "now-30d"})["details"] == [
        {"client": "Docs", "domain": "docs.example", "action": "likes", "page": "intro", "added": 8},
        {"client": "Docs", "domain": "docs.example", "action": "claps", "page": "guide", "added": 4},
        {"client": "cl_b", "domain": None, "action": "likes", "page": "intro", "added": 1},
    ]
    series = reports("counter-increments", **{"from": "now-7d/d"})
    assert series["keys"][1] - series["keys"][0] == DAY
    assert series["values"][-3:] == [3, 4, 6]


def test_server_event_reports(server, reports):
    with sqlite3.connect(server.config["db"]) as conn:
        token = prisme_lite.create_access_token(conn, ["capture_publish"], "b")[1]
    client = server.client
    now = prisme_lite.now_ms() // 1000
    batch = [
        {
            "label": "View",
            "timestamp": now - 3600,
            "content_item": {"id": "a"},
            "customer": {"id": "c1"},
            "utm_source": "nl",
        },
        {"label": "View", "timestamp": now - 3600, "content_item": {"id": "a"}, "customer": {"id": "c2"}},
        {"label": "View", "timestamp": now - 2 * 86400, "content_item": {"id": "b"}, "customer": {"id": "c1"}},
        {"label": "Like", "timestamp": now - 60, "content_item": {"id": "a"}, "customer": {"id": "c3"}},
    ]
    client.post_json("/events", batch, headers={"Authorization": f"Bearer {token}"}, status=202)
    server.ctx.writer.flush()
    labels = reports("top-server-labels", **{"from": "now-7d"})
    assert (labels["keys"], labels["values"]) == (["View", "Like"], [3, 1])
    items = reports("top-content-items", label="View", **{"from": "now-7d"})
    assert (items["keys"], items["values"]) == (["a", "b"], [2, 1])
    assert sum(reports("server-events", label="View", **{"from": "now-7d"})["values"]) == 3
    assert sum(reports("active-customers", **{"from": "now-1d"})["values"]) == 3  # c1, c2, c3 in the last day
    assert sum(reports("new-customers", **{"from": "now-7d"})["values"]) == 3
    assert reports("top-server-utm-sources", **{"from": "now-7d"})["keys"] == ["nl"]


def test_widget_reports(server, reports):
    with sqlite3.connect(server.config["db"]) as conn:
        token = prisme_lite.create_access_token(conn, ["track_public"], "s")[1]

    def beacon(path, **params):
        query = "&".join(f"{k}={v}" for k, v in {"auth_token": token, **params}.items())
        server.client.get(f"/track/{path}?{query}", headers={"User-Agent": CHROME}, status=200)

    for visitor in ("u1", "u2", "u3", "u4"):
        beacon("widget/home/category/1/render.json", analytics_id=visitor, pics=6, ab_testing=1 if visitor < "u3" else 2,
               **{"segments[]": "country:US" if visitor != "u4" else "country:FR"})  # fmt: skip
    beacon("widget/side/best/render", analytics_id="u1", pics=3)
    beacon(
        "widget/home/category/1/media/77/view", analytics_id="u1", pics=6, ab_testing=1, **{"segments[]": "country:US"}
    )
    beacon("widget/home/category/1/media/77/click", analytics_id="u1", pics=6)
    beacon("widget/home/category/1/media/88/view", analytics_id="u2", pics=6)
    beacon("widget/home/category/1/media/77/shop", analytics_id="u1", pics=6)
    beacon("transaction/T1/checkout", analytics_id="u1", **{"products[]": "p:10.50"})
    beacon("transaction/T2/checkout", analytics_id="u9", **{"products[]": "p:0.25"}, currency_code="EUR")
    beacon("transaction/T3/checkout", analytics_id="u2", **{"products[]": "p:4"})
    server.ctx.writer.flush()
    widgets = reports("top-widgets")
    assert widgets["details"] == [
        {"widget": "home (category)", "renders": 4, "interactions": 4, "ctr": 1.0},
        {"widget": "side (best)", "renders": 1, "interactions": 0, "ctr": 0.0},
    ]
    media = reports("top-media")
    assert media["details"] == [
        {"media_id": 77, "views": 1, "clicks": 1, "shop_clicks": 1},
        {"media_id": 88, "views": 1, "clicks": 0, "shop_clicks": 0},
    ]
    revenue = reports("revenue")
    assert revenue["details"] == [
        {"currency": "USD", "checkouts": 2, "revenue": "14.50"},
        {"currency": "EUR", "checkouts": 1, "revenue": "0.25"},
    ]
    assert reports("conversion")["values"] == [3, 2]  # u1 and u2 viewed media before buying; u9 never saw a widget
    segments = reports("widget-segments")
    assert (segments["keys"], segments["values"]) == (["country:US", "country:FR"], [3, 1])
    groups = reports("widget-ab-groups")
    assert groups["details"] == [
        {"ab_testing": 1, "renders": 2, "interactions": 1, "ctr": 0.5},
        {"ab_testing": 2, "renders": 2, "interactions": 0, "ctr": 0.0},
    ]
    assert sum(reports("widget-renders")["values"]) == 5
    assert sum(reports("checkouts")["values"]) == 3


WIDGET_METRICS = ("widget-renders", "checkouts", "top-widgets", "top-media", "revenue", "conversion",
                  "widget-segments", "widget-ab-groups")  # fmt: skip


def test_widget_reports_say_what_they_cannot_filter_by_and_answer_for_everything(server, reports):
    """Widget beacons and checkouts store no page: asked for one site they answer for every site, asked for a filter
    their rows do not record (path, country, a checkout's widget instance) they answer without it, and say both."""
    with sqlite3.connect(server.config["db"]) as conn:
        token = prisme_lite.create_access_token(conn, ["track_public"], "s")[1]
    for path, params in (
        ("widget/home/category/1/render", "analytics_id=u1&pics=6&ab_testing=1&segments[]=country:US"),
        ("widget/home/category/1/media/77/view", "analytics_id=u1&pics=6"),
        ("widget/side/best/render", "analytics_id=u2&pics=3"),
        ("transaction/T1/checkout", "analytics_id=u1&products[]=p:10.50"),
    ):
        server.client.get(f"/track/{path}?auth_token={token}&{params}", headers={"User-Agent": CHROME}, status=200)
    server.ctx.writer.flush()
    week = {"from": "now-7d"}
    for metric in WIDGET_METRICS:
        every = reports(metric, **week)
        assert {"per_site", "unfiltered", "note"}.isdisjoint(every), metric  # nothing asked that they cannot answer
        one = reports(metric, site="localhost", path="/pricing", country="US", **week)
        assert (one["keys"], one["values"]) == (every["keys"], every["values"]), metric  # every site's, unfiltered
        assert one["per_site"] is False and one["unfiltered"] == ["path", "country"], metric
        assert one["note"].startswith("Widget beacons and checkouts are not recorded per site"), metric
        assert "Not filtered by path, country" in one["note"], metric
    # The instance filter is what widget beacons record: it filters them, and only the checkouts say they are not.
    home = reports("top-widgets", instance="home", **week)
    assert (home["keys"], "unfiltered" in home) == (["home (category)"], False)
    assert sum(reports("widget-renders", instance="side", **week)["values"]) == 1
    revenue = reports("revenue", instance="home", **week)
    assert (revenue["values"], revenue["unfiltered"]) == (["10.50"], ["instance"])
    assert "checkouts do not record instance" in revenue["note"] and "per_site" not in revenue
    # Web reports store their site and page, but no widget instance: the same rule, the other way round.
    pages = reports("top-pages", site="localhost", instance="home", **week)
    assert (pages["unfiltered"], "per_site" in pages) == (["instance"], False)


@pytest.mark.parametrize(
    ("amount", "text"), [(1_205_000, "120.50"), (1_000, "0.10"), (199_999, "19.9999"), (0, "0.00"), (50_000, "5.00")]
)
def test_decimal_text_is_exact(amount, text):
    assert prisme_lite.decimal_text(amount) == text


def test_likes_bookmarks_and_subscriptions_count_once_per_customer_and_item(server, reports, monkeypatch, capsys):
    now = 1_795_000_000  # unix seconds, pinned
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: now * 1000)
    with sqlite3.connect(server.config["db"]) as conn:
        token = prisme_lite.create_access_token(conn, ["capture_publish"], "b")[1]

    def send(*events):
        batch = [{"label": label, "timestamp": now - 3600 + n, "content_item": {"id": item}, "customer": {"id": who}}
                 for n, (label, item, who) in enumerate(events)]  # fmt: skip
        server.client.post_json("/events", batch, headers={"Authorization": f"Bearer {token}"}, status=202)
        server.ctx.writer.flush()

    send(("Like", "a", "u"), ("Like", "a", "u"))  # twice in one batch
    send(("Like", "a", "u"))  # and again later: still one like of u on a
    send(("Like", "a", "v"), ("Bookmark", "a", "v"), ("Subscribe", "s", "v"), ("Subscribe", "s", "w"))
    send(("Unlike", "a", "v"), ("Unsubscribe", "s", "w"))  # undone: not counted any more
    send(("Like", "b", "w"), ("View", "a", "w"), ("View", "a", "w"))  # any other label counts every event
    week = {"from": "now-7d"}
    labels = reports("top-server-labels", **week)
    assert dict(zip(labels["keys"], labels["values"], strict=True)) == {
        "Like": 2, "Bookmark": 1, "Subscribe": 1, "View": 2, "Unlike": 1, "Unsubscribe": 1,
    }  # fmt: skip
    items = reports("top-content-items", label="Like", **week)
    assert (items["keys"], items["values"]) == (["a", "b"], [1, 1])
    assert sum(reports("server-events", label="Like", **week)["values"]) == 2
    assert sum(reports("server-events", label="Like,Bookmark,Subscribe", **week)["values"]) == 4
    assert sum(reports("active-customers", **week)["values"]) == 3  # u, v and w all sent something
    # `prisme-lite stats` counts the same way.
    assert prisme_lite.main(["stats", "--db", server.config["db"], "--days", "7"]) == 0
    table = capsys.readouterr().out.split("server events by label\n")[1].splitlines()
    assert {line.split()[0]: line.split()[1:3] for line in table[1:7]} == {
        "Like": ["2", "2"], "View": ["2", "1"], "Bookmark": ["1", "1"], "Subscribe": ["1", "1"],
        "Unlike": ["1", "1"], "Unsubscribe": ["1", "1"],
    }  # fmt: skip
    # The raw events are all kept as sent: the export has every Like.
    assert len(server.rows("SELECT * FROM server_events WHERE label = 'Like'")) == 5


def test_the_site_picker_filters_counters_and_says_which_panels_are_not_per_site(server, reports, capsys):
    """Two sites: blog.example.com and *.shop.example. Counters belong to the site of their client's domainName;
    server events and widget beacons are stored with no site, so asked for one site they say so."""
    client, admin = server.client, {"Authorization": f"Bearer {server.ctx.admin_token()}"}
    clients = {}
    for domain in ("blog.example.com", "a.shop.example"):
        body = {"clientName": domain, "domainName": domain, "emailId": "me@example.com"}
        made = client.post_json("/api/v1/register", body, headers=admin, status=201).json
        client.post_json("/api/v1/configure", {**made, "validPageIds": ["intro"], "validActionIds": ["likes"]})
        clients[domain] = made["clientId"]
    for domain, visitors in (("blog.example.com", 2), ("a.shop.example", 1)):
        for n in range(visitors):
            token = client.get(
                "/api/v1/token", headers={"Origin": f"https://{domain}", "User-Agent": CHROME},
                extra_environ={"REMOTE_ADDR": f"198.51.100.{n}"},
            ).json["token"]  # fmt: skip
            client.post_json("/api/v1/likes/intro/increment", {"token": token}, headers={"User-Agent": CHROME})
    with sqlite3.connect(server.config["db"]) as conn:
        capture = prisme_lite.create_access_token(conn, ["capture_publish"], "b")[1]
        public = prisme_lite.create_access_token(conn, ["track_public"], "s")[1]
    event = {"label": "View", "content_item": {"id": "a"}, "customer": {"id": "c"}}
    client.post_json("/events", event, headers={"Authorization": f"Bearer {capture}"}, status=202)
    client.get(f"/track/widget/w/best/render?auth_token={public}&analytics_id=v&pics=1", headers={"User-Agent": CHROME})
    server.ctx.writer.flush()

    def counters(**site):
        answer = reports("counters", **{"from": "now-7d"}, **site)
        assert "per_site" not in answer and "note" not in answer
        return dict(zip(answer["keys"], answer["values"], strict=True))

    blog, shop = f"{clients['blog.example.com']} likes intro", f"{clients['a.shop.example']} likes intro"
    assert counters() == {blog: 2, shop: 1}
    assert counters(site="blog.example.com") == {blog: 2}
    assert counters(site="%2A.shop.example") == {shop: 1}  # a.shop.example belongs to the wildcard site
    assert counters(site="localhost") == {}
    assert sum(reports("counter-increments", site="blog.example.com", **{"from": "now-7d"})["values"]) == 2
    assert sum(reports("counter-increments", site="localhost", **{"from": "now-7d"})["values"]) == 0

    for metric, words in (("top-server-labels", "Server events are"), ("server-events", "Server events are"),
                          ("top-widgets", "Widget beacons and checkouts are"), ("revenue", "Widget beacons and checkouts are"),
                          ("conversion", "Widget beacons and checkouts are")):  # fmt: skip
        every = reports(metric, **{"from": "now-7d"})
        assert "per_site" not in every and "note" not in every  # every site asked for: nothing to say
        for site in ("blog.example.com", "localhost"):
            one = reports(metric, site=site, **{"from": "now-7d"})
            assert one["per_site"] is False and one["note"].startswith(words + " not recorded per site")
            assert (one["keys"], one["values"]) == (every["keys"], every["values"])  # every site's, as the note says
    assert reports("top-server-labels", site="localhost", **{"from": "now-7d"})["values"] == [1]
    # The web families stay per site: nothing was viewed at blog.example.com.
    assert reports("overview", site="blog.example.com", **{"from": "now-7d"})["values"][1] == 0

    assert prisme_lite.main(["stats", "--db", server.config["db"], "--site", "blog.example.com"]) == 0
    out = capsys.readouterr().out
    assert "server events by label (of every site: they are not recorded per site)" in out
    counted = out.split("counters (added in these days)\n")[1].splitlines()
    assert [line.split() for line in counted[1:]] == [["blog.example.com", "likes", "intro", "2"]]
