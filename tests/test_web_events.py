"""The Prisme web-events routes (SPEC §3.1–3.2): each success stores exactly its row; each failure stores nothing."""

import json
import re

import pytest
from conftest import CHROME, GOOGLEBOT, IPHONE, NOT_BROWSERS, agent_header

import prisme_lite

PAGE = "https://blog.example.com/posts//2024/./hello/../world?utm_source=news&utm_medium=email&id=7#top"


def browser(url=PAGE, origin="https://blog.example.com", ua=CHROME, **extra):
    headers = {"User-Agent": ua, "X-Prisme-Referrer": url}
    if origin:
        headers["Origin"] = origin
    headers.update(extra)
    return headers


def test_pageview_stores_one_row_with_every_column(server, client):
    before = prisme_lite.now_ms()
    response = client.post(
        "/api/v1/events/pageviews",
        headers=browser(**{"X-Prisme-Document-Referrer": "https://news.ycombinator.com/item?id=1"}),
    )
    assert response.status_int == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://blog.example.com"
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["X-Request-Id"])
    [row] = server.events()
    assert before <= row.pop("ts") <= prisme_lite.now_ms()
    assert re.fullmatch(r"prisme_[0-9a-f]{16}", row.pop("visitor_id"))
    assert row.pop("session_id") == 1
    assert row == {
        "id": 1,
        "site": "blog.example.com",
        "kind": "pageview",
        "name": None,
        "host": "blog.example.com",
        "path": "/posts/2024/world",
        "referrer": "news.ycombinator.com",
        "utm_source": "news",
        "utm_medium": "email",
        "utm_campaign": None,
        "utm_term": None,
        "utm_content": None,
        "browser": "Chrome",
        "os": "Linux",
        "device": "desktop",
        "country": "XX",
        "status": 200,
        "props": None,
    }


def test_pageview_takes_visitor_id_status_and_referer_fallback(server, client):
    headers = {
        "Origin": "https://blog.example.com",
        "Referer": "https://blog.example.com/missing?ref=twitter",
        "User-Agent": IPHONE,
        "X-Prisme-Visitor-Id": "user-42",
        "X-Prisme-Status": "404",
        "X-Prisme-Document-Referrer": "https://blog.example.com/elsewhere",
    }
    client.post("/api/v1/events/pageviews", headers=headers, status=200)
    [row] = server.events()
    assert (row["visitor_id"], row["status"], row["path"]) == ("user-42", 404, "/missing")
    # ref= stands in; the own host with no session yet referred it, as in Prisme (tests/test_parity.py)
    assert (row["utm_source"], row["referrer"]) == ("twitter", "blog.example.com")
    assert (row["browser"], row["os"], row["device"]) == ("Mobile Safari", "iOS", "mobile")


def test_custom_event_stores_name_and_properties(server, client):
    body = json.dumps({"plan": "pro", "seats": 3, "tags": ["a", "b"], "é": "ü"})
    headers = browser(**{"Content-Type": "application/json; charset=utf-8"})
    client.post("/api/v1/events/custom/signup", body, headers=headers, status=200)
    [row] = server.events()
    assert (row["kind"], row["name"], row["path"]) == ("custom", "signup", "/posts/2024/world")
    assert json.loads(row["props"]) == {"plan": "pro", "seats": 3, "tags": ["a", "b"], "é": "ü"}


def test_a_custom_events_properties_are_broken_down_by_value(server, client):
    """custom-event-properties: name=value keys by count for the events the `event` filter names (every custom event
    without it), each value as text (JSON for numbers, booleans, lists), whatever else the visits sent."""
    sent = [("signup", {"plan": "pro", "seats": 3}), ("signup", {"plan": "pro", "trial": True}),
            ("signup", {"plan": "free", "tags": ["a", "b"]}), ("play", {"plan": "video"}), ("signup", {})]  # fmt: skip
    for name, props in sent:
        headers = browser(**{"Content-Type": "application/json", "X-Prisme-Visitor-Id": "one-visitor"})
        client.post(f"/api/v1/events/custom/{name}", json.dumps(props), headers=headers, status=200)
    client.post("/api/v1/events/pageviews", headers=browser(), status=200)
    server.ctx.writer.flush()
    admin = {"Authorization": f"Bearer {server.ctx.admin_token()}"}
    signup = client.get("/api/v1/stats/custom-event-properties?event=signup", headers=admin).json
    assert (signup["keys"], signup["values"]) == (["plan=pro", "plan=free", "seats=3", "tags=[\"a\",\"b\"]",
                                                   "trial=true"], [2, 1, 1, 1, 1])  # fmt: skip
    assert signup["details"][0] == {"event": "signup", "property": "plan", "value": "pro", "count": 2}
    every = client.get("/api/v1/stats/custom-event-properties?limit=2", headers=admin).json
    assert (every["keys"], every["values"]) == (["plan=pro", "plan=video"], [2, 1])  # ties by event: play first
    assert [
        row["event"] for row in client.get("/api/v1/stats/custom-event-properties", headers=admin).json["details"]
    ].count("play") == 1
    nothing = client.get("/api/v1/stats/custom-event-properties?event=nope", headers=admin).json
    assert (nothing["keys"], nothing["values"]) == ([], [])
    document = client.get("/api/v1/openapi.json").json
    [metric] = [p for p in document["paths"]["/api/v1/stats/{metric}"]["get"]["parameters"] if p["name"] == "metric"]
    assert "custom-event-properties" in metric["schema"]["enum"] and "custom-event-properties" in metric["description"]


def test_custom_event_with_empty_body_has_no_properties(server, client):
    client.post("/api/v1/events/custom/click", b"", headers=browser(**{"Content-Type": "application/json"}))
    [row] = server.events()
    assert (row["name"], row["props"]) == ("click", None)


def test_a_custom_event_body_of_white_space_is_not_json(server, client):
    """Empty is `{}`; a line break is a malformed body, as the OpenAPI document says (schemathesis found it)."""
    answer = client.post(
        "/api/v1/events/custom/click", b"\n", headers=browser(**{"Content-Type": "application/json"}), status=400
    )
    assert answer.json["error"].startswith("body is not valid JSON")
    assert server.events() == []


@pytest.mark.parametrize(("route", "kind"), [("file-downloads", "download"), ("outbound-links", "outbound")])
def test_link_events_store_the_link(server, client, route, kind):
    target = "https://files.example.org/report.pdf"
    client.post(f"/api/v1/events/{route}", target, headers=browser(**{"Content-Type": "text/plain"}), status=200)
    [row] = server.events()
    assert (row["kind"], row["name"], row["host"], row["path"]) == (
        kind,
        target,
        "blog.example.com",
        "/posts/2024/world",
    )


@pytest.mark.parametrize("route", ["file-downloads", "outbound-links"])
def test_ping_mode_takes_the_browser_ping_headers(server, client, route):
    headers = {
        "Origin": "https://blog.example.com",
        "Content-Type": "text/ping",
        "User-Agent": CHROME,
        "Ping-From": "https://blog.example.com/downloads",
        "Ping-To": "https://cdn.example.net/app.zip",
    }
    client.post(f"/api/v1/events/{route}", "PING", headers=headers, status=200)
    [row] = server.events()
    assert (row["name"], row["path"]) == ("https://cdn.example.net/app.zip", "/downloads")


def test_noscript_pageview_answers_the_35_byte_gif(server, client):
    url = "/api/v1/noscript/events/pageviews?referrer=https%3A%2F%2Fblog.example.com%2Fa&visitor-id=v1&status=201"
    response = client.get(url, headers={"User-Agent": CHROME, "Referer": "https://blog.example.com/a"})
    assert response.status_int == 200
    assert response.body == prisme_lite.GIF and len(response.body) == 35
    assert response.headers["Content-Type"] == "image/gif"
    assert response.headers["Cache-Control"] == "no-store, no-cache, max-age=0, must-revalidate, proxy-revalidate"
    [row] = server.events()
    assert (row["site"], row["path"], row["visitor_id"], row["status"]) == ("blog.example.com", "/a", "v1", 201)


def test_noscript_pageview_falls_back_to_the_referer_header(server, client):
    """An <img> sends no Origin: the page is the Referer, and so is the site."""
    client.get(
        "/api/v1/noscript/events/pageviews",
        headers={"User-Agent": CHROME, "Referer": "https://blog.example.com/from-img"},
        status=200,
    )
    assert [row["path"] for row in server.events()] == ["/from-img"]


def test_noscript_custom_event_parses_json_properties(server, client):
    query = 'referrer=https://blog.example.com/x&prop-name="John"&prop-age=42&prop-vip=true'
    client.get(f"/api/v1/noscript/events/custom/visit?{query}", headers={"User-Agent": CHROME}, status=200)
    [row] = server.events()
    assert (row["name"], json.loads(row["props"])) == ("visit", {"name": "John", "age": 42, "vip": True})


@pytest.mark.parametrize(("route", "kind"), [("outbound-links", "outbound"), ("file-downloads", "download")])
def test_noscript_link_records_and_redirects(server, client, route, kind):
    response = client.get(
        f"/api/v1/noscript/events/{route}?url=https%3A%2F%2Fexample.org%2Fdocs",
        headers={"User-Agent": CHROME, "Referer": "https://blog.example.com/links"},
    )
    assert response.status_int == 302
    assert response.headers["Location"] == "https://example.org/docs"
    [row] = server.events()
    assert (row["kind"], row["name"], row["path"]) == (kind, "https://example.org/docs", "/links")


@pytest.mark.parametrize(
    ("url", "referer"),
    [
        ("https://evil.example/phish", None),  # no Referer at all
        ("https://evil.example/phish", "https://evil.example/page"),  # Referer of an unregistered site
        ("javascript:alert(1)", "https://blog.example.com/a"),
        ("//evil.example/x", "https://blog.example.com/a"),
        ("/relative", "https://blog.example.com/a"),
        ("https%3A%2F%2Fevil.example", "https://blog.example.com/a"),  # still encoded once decoded: no scheme
        ("", "https://blog.example.com/a"),
        ("https://user:pass@example.org/", "https://blog.example.com/a"),  # userinfo: a phishing link
        ("https://exa%2Fmple.org/", "https://blog.example.com/a"),  # a host a browser cannot go to
    ],
)
def test_noscript_redirect_is_refused_without_a_safe_referer_and_url(server, client, url, referer):
    from urllib.parse import quote

    headers = {"User-Agent": CHROME}
    if referer:
        headers["Referer"] = referer
    response = client.get(
        f"/api/v1/noscript/events/outbound-links?url={quote(url, safe='')}", headers=headers, expect_errors=True
    )
    assert response.status_int == 400
    assert "Location" not in response.headers
    assert response.json["error"]
    assert server.events() == []


def test_wildcard_origin_matches_subdomains_at_any_depth_but_not_the_apex(server, client):
    for host in ("a.shop.example", "x.y.shop.example"):
        client.post("/api/v1/events/pageviews", headers=browser(f"https://{host}/", f"https://{host}"), status=200)
    response = client.post(
        "/api/v1/events/pageviews", headers=browser("https://shop.example/", "https://shop.example"), status=400
    )
    assert response.json == {"error": "origin not registered: shop.example (add it with `prisme-lite origins add`)"}
    assert [(row["site"], row["host"]) for row in server.events()] == [
        ("*.shop.example", "a.shop.example"),
        ("*.shop.example", "x.y.shop.example"),
    ]


JSON = {"Content-Type": "application/json"}
FAILURES = [
    # (name, method, path, body, headers, status, words in the error)
    (
        "bad origin",
        "POST",
        "/api/v1/events/pageviews",
        b"",
        browser(origin="https://evil.example"),
        400,
        "origin not registered",
    ),
    ("relative URL", "POST", "/api/v1/events/pageviews", b"", browser(url="/just/a/path"), 400, "absolute http(s) URL"),
    (
        "malformed URL",
        "POST",
        "/api/v1/events/pageviews",
        b"",
        browser(url="https://blog.example.com:port/"),
        400,
        "not a valid URL",
    ),
    (
        "ftp URL",
        "POST",
        "/api/v1/events/pageviews",
        b"",
        browser(url="ftp://blog.example.com/f"),
        400,
        "absolute http(s) URL",
    ),
    (
        "no page URL",
        "POST",
        "/api/v1/events/pageviews",
        b"",
        {"Origin": "https://blog.example.com", "User-Agent": CHROME},
        400,
        "page URL is missing",
    ),
    ("bad status", "POST", "/api/v1/events/pageviews", b"", browser(**{"X-Prisme-Status": "9000"}), 400, "page status"),
    (
        "signed status",
        "POST",
        "/api/v1/events/pageviews",
        b"",
        browser(**{"X-Prisme-Status": "+200"}),
        400,
        "page status",
    ),
    (
        "status not digits",
        "POST",
        "/api/v1/events/pageviews",
        b"",
        browser(**{"X-Prisme-Status": "2e2"}),
        400,
        "page status",
    ),
    (
        "long visitor id",
        "POST",
        "/api/v1/events/pageviews",
        b"",
        browser(**{"X-Prisme-Visitor-Id": "v" * 65}),
        400,
        "visitor id",
    ),
    (
        "bad document referrer",
        "POST",
        "/api/v1/events/pageviews",
        b"",
        browser(**{"X-Prisme-Document-Referrer": "not a url"}),
        400,
        "document referrer",
    ),
    (
        "wrong content type",
        "POST",
        "/api/v1/events/custom/x",
        b"{}",
        browser(**{"Content-Type": "text/plain"}),
        415,
        "application/json",
    ),
    ("non-object JSON", "POST", "/api/v1/events/custom/x", b"[1, 2]", browser(**JSON), 400, "JSON object"),
    ("invalid JSON", "POST", "/api/v1/events/custom/x", b"{nope", browser(**JSON), 400, "not valid JSON"),
    ("duplicate keys", "POST", "/api/v1/events/custom/x", b'{"a": 1, "a": 2}', browser(**JSON), 400, "duplicate key"),
    ("NaN", "POST", "/api/v1/events/custom/x", b'{"a": NaN}', browser(**JSON), 400, "not valid JSON"),
    ("invalid UTF-8", "POST", "/api/v1/events/custom/x", b'{"a": "\xff"}', browser(**JSON), 400, "UTF-8"),
    (
        "lone surrogate",
        "POST",
        "/api/v1/events/custom/x",
        b'{"a": "\\ud800"}',
        browser(**JSON),
        400,
        "not valid Unicode",
    ),
    (
        "deep nesting",
        "POST",
        "/api/v1/events/custom/x",
        b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        browser(**JSON),
        400,
        "nested too deeply",
    ),
    (
        "too many properties",
        "POST",
        "/api/v1/events/custom/x",
        json.dumps({f"k{i}": i for i in range(51)}).encode(),
        browser(**JSON),
        400,
        "over the limit of 50",
    ),
    (
        "long property key",
        "POST",
        "/api/v1/events/custom/x",
        json.dumps({"k" * 65: 1}).encode(),
        browser(**JSON),
        400,
        "property name",
    ),
    (
        "long property value",
        "POST",
        "/api/v1/events/custom/x",
        json.dumps({"k": "v" * 1100}).encode(),
        browser(**JSON),
        400,
        "over the limit of 1024",
    ),
    ("long event name", "POST", "/api/v1/events/custom/" + "n" * 129, b"{}", browser(**JSON), 400, "custom event name"),
    (
        "oversize body",
        "POST",
        "/api/v1/events/custom/x",
        json.dumps({"k": "v" * 40_000}).encode(),
        browser(**JSON),
        413,
        "over the limit of 32768 bytes",
    ),
    (
        "internal outbound link",
        "POST",
        "/api/v1/events/outbound-links",
        b"https://blog.example.com/other",
        browser(),
        400,
        "own host",
    ),
    ("relative link", "POST", "/api/v1/events/file-downloads", b"/files/a.pdf", browser(), 400, "absolute http(s) URL"),
    ("empty link", "POST", "/api/v1/events/file-downloads", b"", browser(), 400, "link URL is missing"),
    (
        "ping without Ping-To",
        "POST",
        "/api/v1/events/outbound-links",
        b"PING",
        {"Origin": "https://blog.example.com", "Ping-From": PAGE},
        400,
        "link URL is missing",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "words"),
    [failure[1:] for failure in FAILURES],
    ids=[failure[0] for failure in FAILURES],
)
def test_failures_answer_their_status_with_a_reason_and_store_nothing(
    server, client, method, path, body, headers, status, words
):
    response = client.request(path, method=method, body=body, headers=headers, expect_errors=True)
    assert response.status_int == status
    assert response.content_type == "application/json"
    assert words in response.json["error"]
    assert server.events() == []


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("referrer=https://evil.example/", "origin not registered"),
        ("referrer=relative/path", "absolute http(s) URL"),
        ("referrer=https://blog.example.com/&status=abc", "page status"),
    ],
)
def test_noscript_pageview_failures_answer_the_gif_with_the_error_status(server, client, query, words):
    response = client.get(
        f"/api/v1/noscript/events/pageviews?{query}", headers={"User-Agent": CHROME}, expect_errors=True
    )
    assert (response.status_int, response.body, response.content_type) == (400, prisme_lite.GIF, "image/gif")
    assert words in response.headers["X-Prisme-Error"]
    assert server.events() == []


def test_noscript_custom_event_with_invalid_property_json_is_refused(server, client):
    query = "referrer=https://blog.example.com/&prop-name=John"  # a JSON string needs its quotes
    response = client.get(
        f"/api/v1/noscript/events/custom/visit?{query}", headers={"User-Agent": CHROME}, expect_errors=True
    )
    assert response.status_int == 400
    assert "property 'prop-name' is not valid JSON" in response.headers["X-Prisme-Error"]
    assert server.events() == []


@pytest.mark.parametrize("ua", [GOOGLEBOT, "Mozilla/5.0 HeadlessChrome/120.0", "my-crawler/1.0", "SpiderThing"])
def test_bots_get_success_and_are_not_stored(server, client, ua):
    response = client.post("/api/v1/events/pageviews", headers=browser(ua=ua), status=200)
    assert response.headers["X-Prisme-Dropped"] == "bot"
    gif = client.get("/api/v1/noscript/events/pageviews", headers={"User-Agent": ua, "Referer": PAGE}, status=200)
    assert (gif.headers["X-Prisme-Dropped"], gif.body) == ("bot", prisme_lite.GIF)
    assert server.events() == []


@pytest.mark.parametrize("ua", NOT_BROWSERS)
def test_clients_that_are_no_browser_get_success_and_are_not_stored(server, client, ua):
    headers = {name: value for name, value in browser(ua=ua).items() if value is not None}
    answers = [
        client.post("/api/v1/events/pageviews", headers=headers, status=200),
        client.post("/api/v1/events/custom/signup", "{}", headers={**headers, "Content-Type": "application/json"}),
        client.post("/api/v1/events/outbound-links", "https://example.org/", headers=headers, status=200),
        client.get("/api/v1/noscript/events/pageviews", headers={**agent_header(ua), "Referer": PAGE}, status=200),
    ]
    assert [answer.headers.get("X-Prisme-Dropped") for answer in answers] == ["bot"] * 4
    assert answers[-1].body == prisme_lite.GIF
    link = client.get(
        "/api/v1/noscript/events/outbound-links?url=https%3A%2F%2Fexample.org%2F",
        headers={**agent_header(ua), "Referer": PAGE},
        status=302,
    )  # not counted, but the person (or script) still gets where the link goes
    assert (link.headers["Location"], link.headers["X-Prisme-Dropped"]) == ("https://example.org/", "bot")
    assert server.events() == []
    assert server.rows("SELECT * FROM sessions") == []


@pytest.mark.parametrize(("header", "value"), [("Sec-Purpose", "prefetch;prerender"), ("Purpose", "prefetch")])
def test_browser_prefetches_are_not_counted(server, client, header, value):
    response = client.post("/api/v1/events/pageviews", headers=browser(**{header: value}), status=200)
    assert response.headers["X-Prisme-Dropped"] == "prefetch"
    assert server.events() == []


def test_preflight_allows_any_origin_with_the_tracker_headers(client):
    response = client.options(
        "/api/v1/events/custom/signup",
        headers={"Origin": "https://anywhere.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_int == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://anywhere.example"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    for header in ("Content-Type", "X-Prisme-Referrer", "X-Prisme-Document-Referrer", "X-Prisme-Visitor-Id"):
        assert header in response.headers["Access-Control-Allow-Headers"]


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_healthcheck(client, method):
    response = client.request("/api/v1/healthcheck", method=method)
    assert response.status_int == 200
    if method != "HEAD":
        assert response.json == {"status": "ok"}


def test_healthcheck_is_503_when_the_writer_is_gone(server, client):
    server.ctx.writer.close()
    response = client.get("/api/v1/healthcheck", expect_errors=True)
    assert response.status_int == 503
    assert response.json["status"] == "unavailable"


def test_noscript_query_values_are_utf_8(server, client):
    """Bottle's request.query decodes Latin-1: "é" would arrive as "Ã©" if the routes used it."""
    client.get(
        "/api/v1/noscript/events/custom/visit?referrer=https://blog.example.com/caf%C3%A9&prop-name=%22%C3%A9%22",
        headers={"User-Agent": CHROME},
        status=200,
    )
    [row] = server.events()
    assert (row["path"], json.loads(row["props"])) == ("/café", {"name": "é"})
    invalid = client.get(
        "/api/v1/noscript/events/custom/visit?prop-name=%ff", headers={"User-Agent": CHROME}, expect_errors=True
    )
    assert invalid.status_int == 400 and invalid.headers["X-Prisme-Error"] == "query string is not valid UTF-8"


def test_urls_are_read_as_a_browser_reads_them(server, client):
    """WHATWG: in an http(s) URL a backslash is a slash, so the page below is at evil.example, not blog.example.com."""
    refused = client.get(
        "/api/v1/noscript/events/pageviews",
        {"referrer": "https://evil.example\\@blog.example.com/a"},
        headers={"User-Agent": CHROME},
        status=400,
    )
    assert "evil.example" in refused.headers["X-Prisme-Error"]
    client.get(
        "/api/v1/noscript/events/pageviews",
        {
            "referrer": "https://blog.example.com/posts\\1?utm_source=a\\b",
            "document-referrer": "https://news.example/x\\y",
        },
        headers={"User-Agent": CHROME},
        status=200,
    )
    [row] = server.events()
    assert (row["host"], row["path"], row["utm_source"], row["referrer"]) == (
        "blog.example.com", "/posts/1", "a\\b", "news.example"
    )  # fmt: skip
    client.get(
        "/api/v1/noscript/events/pageviews",
        {"referrer": "https://blog.example.com/", "document-referrer": "https://news.example\\@x.example/"},
        headers={"User-Agent": CHROME},
        status=400,
    )  # urlsplit and a browser would disagree on its host: refused, not guessed
    redirect = client.get(
        "/api/v1/noscript/events/outbound-links",
        {"url": "https://example.org/docs\\a?b\\c"},
        headers={"User-Agent": CHROME, "Referer": "https://blog.example.com/links"},
        status=302,
    )
    assert redirect.headers["Location"] == "https://example.org/docs/a?b\\c"
    assert server.events()[-1]["name"] == "https://example.org/docs/a?b\\c"
    client.get(
        "/api/v1/noscript/events/outbound-links",
        {"url": "https://example.org\\@blog.example.com/"},
        headers={"User-Agent": CHROME, "Referer": "https://blog.example.com/links"},
        status=400,
    )


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("v" * 1022, True),  # 1,024 bytes with its quotes: the limit
        ("v" * 1023, False),
        ("é" * 511, True),  # bytes, not characters
        ("é" * 512, False),
        ([0] * 256, True),  # counted with a space after each comma: 768 bytes, 513 compact
        ([0] * 342, False),  # 1,026 bytes spaced, 685 compact: compact size alone would pass it
        ({"a": [[1, 2]] * 100}, True),
        ({"a": [[1, 2]] * 200}, False),
    ],
)
def test_a_property_value_is_at_most_1024_bytes_of_json(server, client, value, stored):
    body = json.dumps({"small": 1, "v": value})
    headers = {**browser(), "Content-Type": "application/json"}
    answer = client.post("/api/v1/events/custom/signup", body, headers=headers, status=200 if stored else 400)
    if stored:
        assert [json.loads(row["props"]) for row in server.events()] == [{"small": 1, "v": value}]
    else:
        assert "property 'v' is" in answer.json["error"] and "over the limit of 1024" in answer.json["error"]
        assert server.events() == []


@pytest.mark.parametrize("key", ["a\x00b", "a\rb", "a\nb", "\x1b[31mred", "del\x7f"])
def test_property_names_with_control_characters_are_refused(server, client, key):
    """A property name is an identifier; a value is free text, stored as sent (issue 18.7)."""
    refused = client.post(
        "/api/v1/events/custom/signup",
        json.dumps({key: 1}),
        headers={**browser(), "Content-Type": "application/json"},
        status=400,
    )
    assert "property name" in refused.json["error"]
    client.post(
        "/api/v1/events/custom/signup",
        json.dumps({"plan": "x\x1b[31m\r\n"}),
        headers={**browser(), "Content-Type": "application/json"},
        status=200,
    )
    assert [json.loads(row["props"]) for row in server.events()] == [{"plan": "x\x1b[31m\r\n"}]


def test_a_document_referrer_with_control_characters_in_its_host_is_refused(server, client):
    for referrer in ("https://evil\x1b[31m.example/", "https://a%1b.example/"):
        client.post(
            "/api/v1/events/pageviews",
            headers=browser(**{"X-Prisme-Document-Referrer": referrer}),
            status=400,
        )
    assert server.events() == []


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1E+999"])
def test_a_number_out_of_range_is_refused_not_stored_as_infinity(server, client, number):
    """`{"n": 1e400}` was stored as `{"n":Infinity}`, which is not JSON (issue 18.11)."""
    refused = client.post(
        "/api/v1/events/custom/signup",
        '{"n": ' + number + "}",
        headers={**browser(), "Content-Type": "application/json"},
        status=400,
    )
    assert "out of range" in refused.json["error"]
    gif = client.get(
        f"/api/v1/noscript/events/custom/signup?prop-n={number.replace('+', '%2B')}&referrer={PAGE.split('?')[0]}",
        headers={"User-Agent": CHROME},
        status=400,
    )
    assert "out of range" in gif.headers["X-Prisme-Error"]
    client.post(
        "/api/v1/events/custom/signup",
        '{"n": 1e300}',
        headers={**browser(), "Content-Type": "application/json"},
        status=200,
    )
    [row] = server.rows("SELECT props, json_valid(props) AS valid FROM events")
    assert row == {"props": '{"n":1e+300}', "valid": 1}
