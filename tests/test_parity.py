"""Parity with Prisme's own tracker and end-to-end tests (SPEC §3.3a, issue 17): pages that use Prisme's script or
its API count the same here. Each case names what Prisme does (prismelabs/analytics, pkg/handlers, tracker/)."""

import pytest
from conftest import CHROME

import prisme_lite


def page_headers(url="https://blog.example.com/post", origin="https://blog.example.com", **extra):
    return {"User-Agent": CHROME, "Origin": origin, "X-Prisme-Referrer": url, **extra}


def test_the_old_embed_m_js_is_an_alias_of_wa_js(server, client):
    """Prisme serves static/m.js as wa.js (pkg/embedded/static.go), so pages with the old embed keep counting."""
    tracker = client.get("/static/wa.js")
    old = client.get("/static/m.js")
    assert (old.status_int, old.content_type, old.body) == (200, "application/javascript", tracker.body)
    assert old.headers["ETag"] == tracker.headers["ETag"]
    assert old.headers["Cache-Control"] == "public, max-age=3600"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_custom_event_without_a_body_needs_no_content_type(server, client, content_type):
    """Prisme's e2e case "valid custom event request without body and Content-Type header": it checks the type only
    of a body (events_custom.go: ContentLength() != 0), and an empty one is {}."""
    headers = page_headers(**({"Content-Type": content_type} if content_type else {}))
    client.post("/api/v1/events/custom/click", headers=headers, status=200)
    [row] = server.events()
    assert (row["kind"], row["name"], row["props"]) == ("custom", "click", None)


def test_a_custom_event_with_a_body_of_another_type_is_still_415(server, client):
    headers = page_headers(**{"Content-Type": "text/plain"})
    answer = client.post("/api/v1/events/custom/click", '{"a": 1}', headers=headers, status=415)
    assert answer.json["error"] == "Content-Type must be application/json, got 'text/plain'"
    assert server.events() == []


def test_the_stored_host_keeps_a_port_that_is_not_the_default(server, client):
    """Prisme stores uri.Host(), host:port (pkg/uri/uri.go), for the page and the referrer: localhost:3000 during
    development is not localhost:8000. A browser leaves a default port out, and so does the stored host."""
    page = page_headers(url="http://localhost:3000/app", origin="http://localhost:3000")
    client.post("/api/v1/events/pageviews", headers={**page, "X-Prisme-Document-Referrer": "http://localhost:4000/"})
    client.get(
        "/api/v1/noscript/events/pageviews",
        {"referrer": "https://blog.example.com:443/post", "document-referrer": "https://news.example:8443/x"},
        headers={"User-Agent": CHROME},
        extra_environ={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert [(e["site"], e["host"], e["referrer"]) for e in server.events()] == [
        ("localhost", "localhost:3000", "localhost:4000"),
        ("blog.example.com", "blog.example.com", "news.example:8443"),
    ]
    assert [(s["host"], s["referrer"]) for s in server.rows("SELECT * FROM sessions ORDER BY id")] == [
        ("localhost:3000", "localhost:4000"),
        ("blog.example.com", "news.example:8443"),
    ]


@pytest.mark.parametrize("route", ["outbound-links", "file-downloads"])
def test_a_ping_takes_the_path_of_the_session_it_joins(server, client, route):
    """Prisme's e2e "valid ping request" expects the session's path, not Ping-From's (Ping-From holds the whole URL,
    where the page's pageview may have named it by data-path); with no session, Ping-From's path is all there is."""
    client.post("/api/v1/events/pageviews", headers=page_headers(url="https://blog.example.com/pets/:name"))
    ping = {"User-Agent": CHROME, "Origin": "https://blog.example.com", "Content-Type": "text/ping"}
    from_felix = {**ping, "Ping-From": "https://blog.example.com/pets/felix", "Ping-To": "https://ext.example/a"}
    client.post(f"/api/v1/events/{route}", "PING", headers=from_felix, status=200)
    client.post(f"/api/v1/events/{route}", "PING", headers=from_felix, extra_environ={"REMOTE_ADDR": "198.51.100.8"})
    assert [(e["kind"], e["path"], e["session_id"]) for e in server.events()] == [
        ("pageview", "/pets/:name", 1),
        (route.replace("outbound-links", "outbound").replace("file-downloads", "download"), "/pets/:name", 1),
        (route.replace("outbound-links", "outbound").replace("file-downloads", "download"), "/pets/felix", None),
    ]


@pytest.mark.parametrize("route", ["outbound-links", "file-downloads"])
def test_a_link_to_the_same_host_on_another_port_is_external(server, client, route):
    """Prisme compares host and port (events_outbound_links.go: outboundUri.Host() == PageUri.Host(), host:port),
    and its script sends such links (tracker/web_analytics.js: url.host !== loc.host)."""
    page = page_headers(url="http://localhost:3000/app", origin="http://localhost:3000")
    client.post(f"/api/v1/events/{route}", "http://localhost:8080/admin", headers=page, status=200)
    [row] = server.events()
    assert (row["name"], row["path"]) == ("http://localhost:8080/admin", "/app")


@pytest.mark.parametrize("link", ["http://localhost:3000/other", "http://LOCALHOST:3000/x"])
def test_a_link_to_the_same_host_and_port_is_still_refused(server, client, link):
    page = page_headers(url="http://localhost:3000/app", origin="http://localhost:3000")
    answer = client.post("/api/v1/events/outbound-links", link, headers=page, status=400)
    assert "points to the page's own host localhost:3000" in answer.json["error"]
    assert server.events() == []


def test_a_default_port_is_no_other_port(server, client):
    """A browser drops :443 from https URLs, so a link to https://host:443/ is to the page's own host."""
    page = page_headers(url="https://blog.example.com/post")
    client.post("/api/v1/events/outbound-links", "https://blog.example.com:443/x", headers=page, status=400)
    assert server.events() == []


def test_internal_traffic_without_a_session_keeps_the_sites_host_as_referrer(server, client):
    """Prisme's e2e "valid internal pageview traffic with no session associated": the session it opens has the
    site's own host as referrer_domain (events_pageviews.go: a new session takes the ReferrerUri as sent). Within a
    session, a link between its pages is no referral: `direct`, as before."""
    inside = {"X-Prisme-Document-Referrer": "https://blog.example.com/foo?bar=baz#qux"}
    client.post("/api/v1/events/pageviews", headers=page_headers(url="https://blog.example.com/foo", **inside))
    inside = {"X-Prisme-Document-Referrer": "https://blog.example.com/foo"}
    client.post("/api/v1/events/pageviews", headers=page_headers(url="https://blog.example.com/bar", **inside))
    assert [(e["path"], e["referrer"], e["session_id"]) for e in server.events()] == [
        ("/foo", "blog.example.com", 1),
        ("/bar", "direct", 1),
    ]
    [session] = server.rows("SELECT referrer, pageviews FROM sessions")
    assert session == {"referrer": "blog.example.com", "pageviews": 2}
    top = server.rows("SELECT value, n FROM daily_counts WHERE dim = 'referrer' ORDER BY value")
    assert top == [{"value": "blog.example.com", "n": 1}, {"value": "direct", "n": 1}]


def test_a_reload_or_a_repeated_landing_is_not_a_pageview(server, client):
    """Prisme stores nothing for a pageview of the page the visitor's session is on, unless it comes from that page
    itself (events_pageviews.go: no session on the referrer's path, but one on this page's, is a reload or a duplicated
    tab; a session on the referrer's path is continued, so a link from a page to itself counts)."""

    def view(path, referrer=None):
        extra = {"X-Prisme-Document-Referrer": referrer} if referrer else {}
        client.post("/api/v1/events/pageviews", headers=page_headers(url=f"https://blog.example.com{path}", **extra))

    view("/a")
    view("/a")  # F5 after a landing: the document referrer stays empty
    view("/b", "https://blog.example.com/a")
    view("/b", "https://blog.example.com/a")  # F5 on /b: the document referrer is still /a
    view("/b", "https://search.example/?q=b")  # the same landing again, in another tab
    view("/b?page=2", "https://blog.example.com/b")  # a link (or pushState) from /b to itself
    view("/a", "https://blog.example.com/b")
    assert [(e["path"], e["session_id"]) for e in server.events()] == [("/a", 1), ("/b", 1), ("/b", 1), ("/a", 1)]
    [session] = server.rows("SELECT entry_path, exit_path, pageviews FROM sessions")
    assert session == {"entry_path": "/a", "exit_path": "/a", "pageviews": 4}
    counted = server.rows("SELECT value, n FROM daily_counts WHERE dim IN ('pageviews', 'path') ORDER BY dim, value")
    assert counted == [{"value": "", "n": 4}, {"value": "/a", "n": 2}, {"value": "/b", "n": 2}]


def stats_total(server, metric):
    token = server.ctx.admin_token()
    server.ctx.writer.flush()
    answer = server.client.get(f"/api/v1/stats/{metric}?from=now-1d", headers={"Authorization": f"Bearer {token}"})
    return sum(answer.json["values"])


@pytest.mark.parametrize("route", ["header", "noscript"])
def test_a_visitor_id_given_on_a_later_pageview_continues_the_session_under_it(server, client, route):
    """Identify after login: Prisme continues the device's session and gives it the new visitor id
    (events_pageviews.go: IdentifySession; e2e "valid consecutive pageviews with visitor id defined on second
    event"): one visitor, one session, no bounce. What the session stored before takes the id too, and events that
    still come without it (prisme.trigger after prisme.pageview({visitorId})) join it under it."""
    client.post("/api/v1/events/pageviews", headers=page_headers(url="https://blog.example.com/"))
    if route == "header":
        login = page_headers(
            url="https://blog.example.com/foo",
            **{"X-Prisme-Visitor-Id": "user-42", "X-Prisme-Document-Referrer": "https://blog.example.com/"},
        )
        client.post("/api/v1/events/pageviews", headers=login)
    else:
        query = {"referrer": "https://blog.example.com/foo", "visitor-id": "user-42"}
        client.get("/api/v1/noscript/events/pageviews", query, headers={"User-Agent": CHROME})
    client.post("/api/v1/events/custom/signup", headers=page_headers(url="https://blog.example.com/foo"))
    assert [(e["kind"], e["path"], e["visitor_id"], e["session_id"]) for e in server.events()] == [
        ("pageview", "/", "user-42", 1),
        ("pageview", "/foo", "user-42", 1),
        ("custom", "/foo", "user-42", 1),
    ]
    [session] = server.rows("SELECT visitor_id, entry_path, exit_path, pageviews FROM sessions")
    assert session == {"visitor_id": "user-42", "entry_path": "/", "exit_path": "/foo", "pageviews": 2}
    assert [stats_total(server, metric) for metric in ("visitors", "sessions", "bounces")] == [1, 1, 0]
    assert prisme_lite.check(server.config["db"]) == 0


def test_an_identified_visitor_keeps_their_own_session_and_the_device_opens_none(server, client):
    """A visitor id with a session of its own open continues that one; a device with no open session gets a new one."""
    given = page_headers(url="https://blog.example.com/a", **{"X-Prisme-Visitor-Id": "user-7"})
    client.post("/api/v1/events/pageviews", headers=given, extra_environ={"REMOTE_ADDR": "198.51.100.1"})
    client.post("/api/v1/events/pageviews", headers=page_headers(url="https://blog.example.com/b"))
    client.post("/api/v1/events/pageviews", headers={**given, "X-Prisme-Referrer": "https://blog.example.com/c"})
    assert [(e["path"], e["visitor_id"][:7], e["session_id"]) for e in server.events()] == [
        ("/a", "user-7", 1),
        ("/b", "prisme_", 2),
        ("/c", "user-7", 1),
    ]
    assert prisme_lite.check(server.config["db"]) == 0
