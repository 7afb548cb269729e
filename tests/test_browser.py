"""Browser tests in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): the README's snippets,
pasted into a page of a registered origin, store what they promise."""

import contextlib
import datetime
import json
import os
import re
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as make_wsgi_server

import pytest
from conftest import CHROME, IPHONE, cli, new_token
from test_dashboard import EXPECTED, PINNED, store_edges, utc
from test_share import NOW as SHARE_NOW
from test_share import SITE as SHARE_SITE
from test_share import store_counts

import prisme_lite

CHROMIUM = "/usr/bin/chromium"
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()

if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

playwright_api = pytest.importorskip("playwright.sync_api")
sync_playwright, expect = playwright_api.sync_playwright, playwright_api.expect
pytestmark = pytest.mark.server


def readme_snippet(marker):
    """The README's ```html block that contains `marker`."""
    blocks = re.findall(r"```html\n(.*?)```", README, re.DOTALL)
    [block] = [block for block in blocks if marker in block]
    return block


class Pages:
    """A site of our own on another port: it serves whatever HTML a test gives it."""

    def __init__(self):
        self.html = {}
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.html.get(self.path.split("?")[0], "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def pages():
    site = Pages()
    yield site
    site.close()


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


def rows_eventually(db, sql, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(sql).fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_the_readme_noscript_pixel_stores_a_pageview(run, pages, chromium, tmp_path):
    process = run()
    snippet = readme_snippet("noscript/events/pageviews").replace(
        "https://stats.example.com", f"http://127.0.0.1:{process.port}"
    )
    pages.html["/blog/first-post"] = f"<!doctype html><title>post</title><p>Hello</p>{snippet}"
    context = chromium.new_context(user_agent=CHROME)  # a real visitor's browser, not HeadlessChrome (a bot)
    page = context.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request))
    # localhost is a registered origin by default; the image is cross-origin (127.0.0.1), and sends no Origin.
    page.goto(f"http://localhost:{pages.port}/blog/first-post?utm_source=readme", wait_until="load")
    [pixel] = [request for request in requests if "/noscript/" in request.url]
    assert "origin" not in {name.lower() for name in pixel.headers}
    assert pixel.response().status == 200
    context.close()
    rows = rows_eventually(tmp_path / "prisme.db", "SELECT site, host, path, utm_source, browser, kind FROM events", 1)
    assert rows == [("localhost", f"localhost:{pages.port}", "/blog/first-post", "readme", "Chrome", "pageview")]


def test_the_readme_fetch_snippet_stores_a_pageview_through_a_cors_preflight(run, pages, chromium, tmp_path):
    process = run()
    snippet = readme_snippet("X-Prisme-Referrer").replace(
        "https://stats.example.com", f"http://127.0.0.1:{process.port}"
    )
    pages.html["/landing"] = f"<!doctype html><title>landing</title>{snippet}"
    pages.html["/"] = '<!doctype html><a id="go" href="/landing">go</a>'
    context = chromium.new_context(user_agent=CHROME)
    page = context.new_page()
    page.goto(f"http://localhost:{pages.port}/", wait_until="load")
    with page.expect_response(lambda response: "/api/v1/events/pageviews" in response.url) as answer:
        page.click("#go")
    assert answer.value.status == 200
    context.close()
    rows = rows_eventually(tmp_path / "prisme.db", "SELECT path, referrer, kind FROM events", 1)
    # the document referrer is a page of the same site, which has no session yet: its host, as in Prisme (§3.3a)
    assert rows == [("/landing", f"localhost:{pages.port}", "pageview")]


def register_counter(process, domain):
    import http.client
    import json

    admin = process.banner[2].split(": ", 1)[1].strip()

    def post(path, body, **headers):
        conn = http.client.HTTPConnection("127.0.0.1", process.port, timeout=10)
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **headers})
        answer = conn.getresponse()
        return json.loads(answer.read())

    client = post(
        "/api/v1/register",
        {"clientName": "blog", "domainName": domain, "emailId": "me@example.com"},
        Authorization=f"Bearer {admin}",
    )
    post("/api/v1/configure", {**client, "validPageIds": ["intro"], "validActionIds": ["likes"]})


def test_the_readme_like_button_counts_and_the_count_survives_kill_9(run, pages, chromium, tmp_path):
    process = run()
    register_counter(process, "localhost")

    def open_page(port, visitor):
        snippet = readme_snippet('id="like"').replace("https://stats.example.com", f"http://127.0.0.1:{port}")
        pages.html["/intro"] = f"<!doctype html><title>intro</title>{snippet}"
        context = chromium.new_context(user_agent=f"{CHROME} visitor-{visitor}")
        page = context.new_page()
        page.goto(f"http://localhost:{pages.port}/intro", wait_until="load")
        return context, page

    for visitor in range(3):
        context, page = open_page(process.port, visitor)
        page.wait_for_function(f"document.getElementById('likes').textContent === '{visitor}'")
        page.click("#like")
        page.wait_for_function(f"document.getElementById('likes').textContent === '{visitor + 1}'")
        page.click("#like")  # the same visitor again within 15 minutes: no second like
        page.wait_for_timeout(300)
        assert page.text_content("#likes") == str(visitor + 1)
        context.close()
    process.proc.kill()
    process.proc.wait()
    restarted = run()
    context, page = open_page(restarted.port, 99)
    page.wait_for_function("document.getElementById('likes').textContent === '3'")
    context.close()


def test_the_readme_like_button_gets_a_new_token_before_its_own_expires_and_after_a_401(run, pages, chromium, tmp_path):
    process = run()
    register_counter(process, "localhost")
    snippet = readme_snippet('id="like"').replace("https://stats.example.com", f"http://127.0.0.1:{process.port}")
    pages.html["/intro"] = f"<!doctype html><title>intro</title>{snippet}"

    def open_page(visitor):
        context = chromium.new_context(user_agent=f"{CHROME} visitor-{visitor}")
        page = context.new_page()
        page.clock.install()  # the page's clock: it runs as the real one until a test moves it
        asked = []  # what the page asked the counter API for, in order (preflights aside)

        def ask(request):
            if "/api/v1/" in request.url and request.method != "OPTIONS":
                asked.append(request.url.split("/api/v1/")[1])

        page.on("request", ask)
        page.goto(f"http://localhost:{pages.port}/intro", wait_until="load")
        return context, page, asked

    def after(asked, first):
        """What the page asked for from its request `first` on (a token fetched at load may come before it)."""
        return asked[asked.index(first) :]

    # A 401 (as when a token expires on the server before the page thinks it has): a new token, the same increment.
    context, page, asked = open_page(1)
    page.wait_for_function("document.getElementById('likes').textContent === '0'")
    refused = []

    def refuse_the_first(route):
        if refused:
            return route.continue_()
        refused.append(route.request.url)
        body = '{"error": "token expired: get a new one from /api/v1/token"}'
        route.fulfill(
            status=401, content_type="application/json", body=body, headers={"Access-Control-Allow-Origin": "*"}
        )

    page.route("**/api/v1/likes/intro/increment", refuse_the_first)
    page.click("#like")
    page.wait_for_function("document.getElementById('likes').textContent === '1'")
    assert len(refused) == 1
    assert after(asked, "likes/intro/increment") == ["likes/intro/increment", "token", "likes/intro/increment"]
    context.close()

    # The top of the hour passes on the page's clock: the next click fetches a new token first.
    context, page, asked = open_page(2)
    page.wait_for_function("document.getElementById('likes').textContent === '1'")
    page.clock.fast_forward("01:00:00")
    asked.clear()
    page.click("#like")
    page.wait_for_function("document.getElementById('likes').textContent === '2'")
    assert asked == ["token", "likes/intro/increment"]
    context.close()
    with sqlite3.connect(tmp_path / "prisme.db") as conn:
        assert conn.execute("SELECT count FROM counters").fetchall() == [(2,)]


def test_the_readme_gallery_and_checkout_beacons_store_their_rows(run, pages, chromium, tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    token = new_token(db, "track_public")
    process = run("--redirect-hosts", "shop.example.com")
    base = f"http://127.0.0.1:{process.port}"
    gallery = readme_snippet("home-carousel").replace("https://stats.example.com", base).replace("pl_…", token)
    checkout = readme_snippet("/checkout.gif").replace("https://stats.example.com", base).replace("pl_…", token)
    pages.html["/gallery"] = f"<!doctype html><title>gallery</title>{gallery}"
    pages.html["/thanks"] = f"<!doctype html><title>thanks</title>{checkout}"
    context = chromium.new_context(user_agent=CHROME)
    # The shop is not on this machine: answer its product page here, so nothing leaves loopback.
    context.route(
        "https://shop.example.com/**",
        lambda route: route.fulfill(body="<title>product 123</title>", content_type="text/html"),
    )
    page = context.new_page()
    page.goto(f"http://localhost:{pages.port}/gallery", wait_until="load")
    page.click("text=Shop this product")
    page.wait_for_url("https://shop.example.com/p/123")
    page.goto(f"http://localhost:{pages.port}/thanks", wait_until="load")
    context.close()
    widget_rows = rows_eventually(
        db,
        "SELECT widget, source_id, media_id, action, analytics_id, pics, ab_testing, segments, redirect_host FROM widget_events ORDER BY id",
        3,
    )
    # The page's two images load in parallel: their rows may arrive in either order.
    assert sorted(widget_rows, key=repr) == sorted(
        [
            ("category", 12, None, "render", "visitor-42", 8, 2, '{"country":"US"}', None),
            ("category", 12, 9001, "view", "visitor-42", 8, None, None, None),
            ("category", 12, 9001, "shop", "visitor-42", 8, None, None, "shop.example.com"),
        ],
        key=repr,
    )
    with sqlite3.connect(db) as conn:
        assert conn.execute(
            "SELECT transaction_id, analytics_id, currency, total_e4, referrer FROM checkouts"
        ).fetchall() == [("ORDER-1001", "visitor-42", "EUR", 1_304_900, "shop.example.com/thanks")]
        assert conn.execute("SELECT product_id, amount_e4 FROM checkout_products ORDER BY line").fetchall() == [
            ("product-123", 1_205_000),
            ("socks", 99_900),
        ]


def tracked_page(port):
    return f"""<!doctype html><title>app</title>
<script defer src="http://127.0.0.1:{port}/static/wa.js"></script>
<a id="download" href="https://cdn.example/files/report.pdf?token=secret">report</a>
<a id="outbound" href="https://ext.example/page?utm=x#top">elsewhere</a>
<a id="internal" href="/app/third">third</a>"""


def outside(context):
    """The other hosts of these pages, answered here: nothing leaves loopback."""
    context.route("https://cdn.example/**", lambda route: route.fulfill(body="%PDF-1.4", content_type="text/plain"))
    context.route(
        "https://ext.example/**", lambda route: route.fulfill(body="<title>ext</title>", content_type="text/html")
    )


def test_the_tracking_script_records_pageviews_spa_links_and_custom_events(run, pages, chromium, tmp_path):
    process = run()
    pages.html["/app"] = tracked_page(process.port)
    context = chromium.new_context(user_agent=CHROME)
    outside(context)
    page = context.new_page()
    db = tmp_path / "prisme.db"
    with page.expect_response(lambda r: r.url.endswith("/api/v1/events/pageviews")) as first:
        page.goto(f"http://localhost:{pages.port}/app?utm_source=test", wait_until="load")
    assert first.value.status == 200
    with page.expect_response(lambda r: r.url.endswith("/api/v1/events/pageviews")):
        page.evaluate("history.pushState({}, '', '/app/second')")
    with page.expect_response(lambda r: "/api/v1/events/custom/signup" in r.url) as custom:
        page.evaluate("prisme.trigger('signup', {plan: 'pro'})")
    assert custom.value.status == 200
    page.click("#download")  # the page goes on to the file; the keepalive request outlives it
    assert len(rows_eventually(db, "SELECT id FROM events", 4)) == 4
    page.goto(f"http://localhost:{pages.port}/app", wait_until="load")
    assert len(rows_eventually(db, "SELECT id FROM events", 5)) == 5
    page.click("#outbound")
    rows = rows_eventually(db, "SELECT kind, name, path, props, utm_source FROM events ORDER BY id", 6)
    context.close()
    assert rows == [
        ("pageview", None, "/app", None, "test"),
        ("pageview", None, "/app/second", None, None),
        ("custom", "signup", "/app/second", '{"plan":"pro"}', None),
        ("download", "https://cdn.example/files/report.pdf", "/app/second", None, None),  # no query string
        ("pageview", None, "/app", None, None),
        ("outbound", "https://ext.example/page", "/app", None, None),
    ]


def test_a_reload_is_not_a_pageview_of_the_tracking_script(run, pages, chromium, tmp_path):
    """F5 (Chromium keeps the document referrer of the first load) sends a pageview that Prisme does not store, nor
    do we (SPEC §3.3a); a link to another page and a pushState are pageviews."""
    process = run()
    pages.html["/app"] = pages.html["/app/third"] = tracked_page(process.port)
    context = chromium.new_context(user_agent=CHROME)
    outside(context)
    page = context.new_page()
    db = tmp_path / "prisme.db"

    def pageview_answered(action):
        with page.expect_response(lambda r: r.url.endswith("/api/v1/events/pageviews")) as answer:
            action()
        assert answer.value.status == 200

    pageview_answered(lambda: page.goto(f"http://localhost:{pages.port}/app", wait_until="load"))
    pageview_answered(lambda: page.reload(wait_until="load"))
    pageview_answered(lambda: page.click("#internal"))
    pageview_answered(lambda: page.reload(wait_until="load"))
    pageview_answered(lambda: page.evaluate("history.pushState({}, '', '/app/fourth')"))
    rows = rows_eventually(db, "SELECT path, referrer, session_id FROM events ORDER BY id", 3)
    context.close()
    assert rows == [("/app", "direct", 1), ("/app/third", "direct", 1), ("/app/fourth", "direct", 1)]
    assert cli("check", db=db).returncode == 0


def test_identify_after_login_continues_the_session_of_the_tracking_script(run, pages, chromium, tmp_path):
    """Manual mode, as Prisme documents identify: prisme.pageview() on load, prisme.pageview({visitorId}) once the
    visitor logged in; one visitor, one session of two pageviews, and what follows joins it (SPEC §3.3a)."""
    process = run()
    pages.html["/app"] = f"""<!doctype html><title>app</title>
<script defer src="http://127.0.0.1:{process.port}/static/wa.js" data-manual="true"></script>"""
    context = chromium.new_context(user_agent=CHROME)
    page = context.new_page()
    db = tmp_path / "prisme.db"
    page.goto(f"http://localhost:{pages.port}/app", wait_until="load")
    for call in ("prisme.pageview()", "prisme.pageview({visitorId: 'user-42'})", "prisme.trigger('signup')"):
        with page.expect_response(lambda r: "/api/v1/events/" in r.url) as answer:
            page.evaluate(call)
        assert answer.value.status == 200
    rows = rows_eventually(db, "SELECT kind, visitor_id, session_id FROM events ORDER BY id", 3)
    context.close()
    assert rows == [("pageview", "user-42", 1), ("pageview", "user-42", 1), ("custom", "user-42", 1)]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT visitor_id, pageviews FROM sessions").fetchall() == [("user-42", 2)]
    assert cli("check", db=db).returncode == 0


def test_the_tracking_script_honours_the_opt_out(run, pages, chromium, tmp_path):
    process = run()
    pages.html["/app"] = tracked_page(process.port)
    context = chromium.new_context(user_agent=CHROME)
    outside(context)
    context.add_init_script("localStorage.setItem('prismeAnalytics.tracking.enable', 'false')")
    page = context.new_page()
    sent = []
    page.on("request", lambda request: sent.append(request.url) if "/api/v1/events/" in request.url else None)
    page.goto(f"http://localhost:{pages.port}/app", wait_until="load")
    page.wait_for_function("window.prisme !== undefined")
    page.evaluate("history.pushState({}, '', '/app/second'); prisme.trigger('signup', {plan: 'pro'})")
    page.click("#outbound")
    page.wait_for_timeout(500)
    context.close()
    assert sent == []
    with sqlite3.connect(tmp_path / "prisme.db") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_the_dashboard_shows_what_is_stored(run, pages, chromium, tmp_path):
    import http.client

    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    assert cli("origins", "add", "blog.example.com", db=db).returncode == 0
    process = run()
    token = process.banner[2].split(": ", 1)[1].strip()

    def pageview(site, path, ip):
        conn = http.client.HTTPConnection("127.0.0.1", process.port, timeout=10)
        conn.request("POST", "/api/v1/events/pageviews", headers={
            "Origin": f"https://{site}", "X-Prisme-Referrer": f"https://{site}{path}", "User-Agent": CHROME,
            "X-Prisme-Visitor-Id": f"visitor-{ip}"})  # fmt: skip
        assert conn.getresponse().status == 200

    for n in range(5):
        pageview("blog.example.com", f"/post/{n % 2}", n % 3)
    pageview("localhost", "/<img src=x onerror=window.pwned=1>", 9)
    pageview("localhost", "/", 9)
    assert len(rows_eventually(db, "SELECT id FROM events", 7)) == 7  # acknowledged, then folded: wait for all
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT site, count(*), count(DISTINCT visitor_id) FROM events GROUP BY site ORDER BY site"
        ).fetchall()
    assert stored == [("blog.example.com", 5, 3), ("localhost", 2, 1)]
    with sqlite3.connect(db) as conn:  # and one visit three weeks ago: in 30 days, not in 7
        last_event, last_session = conn.execute(
            "SELECT (SELECT max(id) FROM events), (SELECT max(id) FROM sessions)"
        ).fetchone()
        conn.execute(
            "INSERT INTO events (ts, site, kind, host, path, referrer, visitor_id, browser, os, device, country, status)"
            " SELECT ts - 21 * 86400000, site, kind, host, '/old', referrer, 'old-visitor', browser, os, device, country, status"
            " FROM events WHERE site = 'blog.example.com' LIMIT 1"
        )
        prisme_lite.count_stored_rows(conn, last_event or 0, last_session or 0)  # stored past the writer: counted here
    context = chromium.new_context(user_agent=CHROME, viewport={"width": 1100, "height": 1400})
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{process.port}/dashboard")
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    assert page.text_content("#login-error") == "That is not the admin token."
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#pageviews-total")
    assert (page.text_content("#pageviews-total"), page.text_content("#visitors-total")) == ("7", "4")
    assert page.locator("#chart rect").count() == 28  # 7 days in 6-hour buckets, at any hour
    page.select_option("#site", "blog.example.com")
    expect(page.locator("#pageviews-total")).to_have_text("5")
    assert page.text_content("#visitors-total") == "3"
    page.click("[data-period='30d']")
    expect(page.locator("#pageviews-total")).to_have_text("6")
    assert page.locator("#chart rect").count() == 30
    page.select_option("#site", "localhost")
    expect(page.locator("#pageviews-total")).to_have_text("2")
    assert page.get_by_text("/<img src=x onerror=window.pwned=1>").count() >= 1  # shown as text (pages, entries)
    assert page.locator("img").count() == 0  # and never made into an element
    assert page.evaluate("window.pwned") is None
    page.select_option("#site", "127.0.0.1")
    page.wait_for_selector("#empty")
    assert "/static/wa.js" in page.text_content("#empty pre")
    page.select_option("#site", "")
    page.click("[data-period='7d']")
    expect(page.locator("#pageviews-total")).to_have_text("7")
    artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    page.click("#logout")
    page.wait_for_selector("#token")
    assert page.evaluate("fetch('/api/v1/stats/overview').then(r => r.status)") == 401
    context.close()


def test_the_dashboard_says_which_panels_are_not_per_site(run, chromium, tmp_path):
    import http.client
    import json

    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    assert cli("origins", "add", "blog.example.com", db=db).returncode == 0
    capture = new_token(db, "capture_publish")
    process = run()
    token = process.banner[2].split(": ", 1)[1].strip()
    conn = http.client.HTTPConnection("127.0.0.1", process.port, timeout=10)
    event = {"label": "Purchase", "content_item": {"id": "sku-1"}, "customer": {"id": "c-1"}}
    conn.request("POST", "/events", json.dumps(event), {"Authorization": f"Bearer {capture}"})
    assert conn.getresponse().status == 202
    assert len(rows_eventually(db, "SELECT id FROM server_events", 1)) == 1
    context = chromium.new_context(user_agent=CHROME, viewport={"width": 1100, "height": 1400})
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{process.port}/dashboard")
    page.fill("#token", token)
    page.click("button[type=submit]")
    panel = page.locator("section.panel", has=page.locator("h2", has_text="Server events"))
    expect(panel.locator("td").first).to_have_text("Purchase")
    assert panel.locator(".note").count() == 0  # all sites: nothing to say
    page.select_option("#site", "blog.example.com")
    expect(panel.locator(".note")).to_have_text(
        "Server events are not recorded per site (their access tokens have none): these are every site's."
    )
    assert panel.locator("td").first.text_content() == "Purchase"  # every site's numbers, as the note says
    widgets = page.locator("section.panel", has=page.locator("h2", has_text="Widgets"))
    expect(widgets.locator(".note")).to_contain_text("not recorded per site")
    counters = page.locator("section.panel", has=page.locator("h2", has_text="Counters"))
    assert counters.locator(".note").count() == 0  # counters are per site, by their client's domain
    context.close()


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Served:
    """An application served from this process, so that a test can pin its clock (prisme_lite.now_ms)."""

    def __init__(self, app):
        self.httpd = make_wsgi_server("127.0.0.1", 0, app, ThreadingWSGIServer, QuietHandler)
        self.port = self.httpd.server_port
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# Each period's chart at any pinned hour, 1100 px wide: its first and last bar (start, pageviews), and its axis
# labels (a day's start by its date, hours within it; ~64 px apart at least).
CHARTS = {
    "today": (
        "2026-11-20 00:00: 1 pageviews",
        "2026-11-20 23:00: 0 pageviews",
        ["Nov 20", *(f"{h:02d}:00" for h in range(2, 24, 2))],
    ),
    "7d": ("2026-11-14 00:00: 1 pageviews", "2026-11-20 18:00: 0 pageviews", [f"Nov {d}" for d in range(14, 21)]),
    "30d": (
        "2026-10-22: 1 pageviews",
        "2026-11-20: 2 pageviews",
        [*(f"Oct {d}" for d in range(22, 31, 2)), *(f"Nov {d}" for d in range(1, 20, 2))],
    ),
}


@contextlib.contextmanager
def dashboard_page(server, chromium, monkeypatch, pinned, **context_options):
    """A page logged in to `server`'s dashboard, served from this process, its clock [ms] pinned (and settable)."""
    clock = [utc(pinned)]
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: clock[0])
    served = Served(prisme_lite.RequestLog(server.app, access_log=False))
    context = chromium.new_context(
        **{"user_agent": CHROME, "viewport": {"width": 1100, "height": 1400}, **context_options}
    )
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{served.port}/dashboard")
    page.fill("#token", server.ctx.admin_token())
    page.click("button[type=submit]")
    page.wait_for_selector("#pageviews-total")
    try:
        yield page, clock
    finally:
        context.close()
        served.close()


@pytest.fixture
def pinned_dashboard(make_server, chromium, monkeypatch):
    """A page logged in to a dashboard served from this process, on the EDGES, its clock [ms] pinned (and settable)."""
    server = make_server()
    store_edges(server)
    with dashboard_page(server, chromium, monkeypatch, PINNED[0]) as (page, clock):
        yield page, clock


def test_the_dashboard_periods_are_whole_days_at_any_hour(pinned_dashboard):
    """The server's clock pinned to 05:59, 06:01, noon and 23:59 UTC (the browser's too): every period shows the
    same days, cards and bars."""
    page, clock = pinned_dashboard
    for pinned in PINNED:
        clock[0] = utc(pinned)
        page.clock.set_fixed_time(datetime.datetime.fromisoformat(pinned).replace(tzinfo=datetime.UTC))
        page.reload()
        for period, (pageviews, _first, _last, _step, count) in EXPECTED.items():
            page.click(f"[data-period='{period}']")
            expect(page.locator("#pageviews-total")).to_have_text(str(pageviews))
            if period in CHARTS:
                first, last, labels = CHARTS[period]
                bars = page.locator("#chart rect title")
                assert bars.count() == count, (pinned, period)
                assert bars.first.text_content().startswith(first), (pinned, period)
                assert bars.last.text_content().startswith(last), (pinned, period)
                assert page.locator("#chart text.x").all_text_contents() == labels, (pinned, period)
    # A browser whose clock is already past midnight still sees the server's today.
    page.clock.set_fixed_time(datetime.datetime(2026, 11, 21, 0, 1, tzinfo=datetime.UTC))
    page.click("[data-period='today']")
    expect(page.locator("#pageviews-total")).to_have_text("2")
    assert page.locator("#chart rect title").first.text_content().startswith("2026-11-20 00:00: 1 pageviews")


def test_a_custom_range_takes_its_last_day_whole_and_a_reversed_one_is_explained(pinned_dashboard):
    page, _clock = pinned_dashboard
    asked = []
    page.on("request", lambda request: asked.append(request.url) if "/api/v1/stats/" in request.url else None)
    page.click("[data-period='custom']")
    page.fill("#from", "2026-11-13")
    page.fill("#to", "2026-11-19")
    page.click("#custom button[type=submit]")
    expect(page.locator("#pageviews-total")).to_have_text("3")  # 11-19 23:59:59.999 is on its last day
    assert page.locator("#chart rect").count() == 28  # seven days in 6-hour buckets
    asked.clear()
    page.fill("#from", "2026-11-20")
    page.fill("#to", "2026-11-14")
    page.click("#custom button[type=submit]")
    expect(page.locator("#range-error")).to_have_text(
        "The start (2026-11-20) is after the end (2026-11-14): pick a start on or before the end."
    )
    assert page.locator("#pageviews-total").count() == 0 and asked == []  # nothing asked of the server


def test_a_period_picked_while_another_loads_is_the_one_shown(pinned_dashboard):
    """The answers for a period picked before (they may come last) never replace the last picked period's."""
    page, _clock = pinned_dashboard
    held, asked, answered = [], [], []
    seven_days = "from=now-6d%2Fd"
    page.route(
        "**/api/v1/stats/**", lambda route: held.append(route) if seven_days in route.request.url else route.continue_()
    )
    page.on("request", lambda request: asked.append(request) if "/api/v1/stats/" in request.url else None)
    page.on("requestfinished", lambda request: answered.append(request) if "/api/v1/stats/" in request.url else None)

    def until(condition, what):
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, what
            page.wait_for_timeout(20)  # lets Playwright deliver the page's events meanwhile

    page.click("[data-period='7d']")
    until(lambda: len(held) == 3, "the 7 days' first three questions")
    page.click("[data-period='today']")
    expect(page.locator("#pageviews-total")).to_have_text("2")
    for route in held:  # the 7 days' answers now arrive, after today's
        route.continue_()
    for _ in range(3):  # every answer in, and whatever the page asked after them (a page task between)
        until(lambda: len(answered) == len(asked), "every question answered")
        page.evaluate("() => new Promise((done) => setTimeout(done, 0))")
    assert page.text_content("#pageviews-total") == "2"
    assert page.locator("#chart rect title").first.text_content().startswith("2026-11-20 00:00: 1 pageviews")


# Four visits on 2026-11-19 and one on 11-10 (the 7 days before the 7 days), seen on 2026-11-20 at noon: (visitor,
# site, [(minute from 11-19 09:00, kind, path or name, props)], what the visit came from (referrer, utm_source,
# utm_medium, utm_campaign), browser).
LONG_PATH = "/docs/a-page-whose-name-is-far-too-long-for-one-line-of-a-panel-on-a-phone"
VISITS = [
    ("a", "blog.example.com", [(0, "pageview", "/", None), (2, "pageview", "/pricing", None),
                               (3, "custom", "signup", {"plan": "pro"})],
     ("google.com", "news", "email", "launch"), "Chrome"),
    ("b", "blog.example.com", [(10, "pageview", "/", None), (11, "pageview", LONG_PATH, None)],
     ("direct", None, None, None), "Chrome"),
    ("c", "blog.example.com", [(20, "pageview", "/pricing", None), (21, "custom", "signup", {"plan": "free"})],
     ("twitter.com", None, None, None), "Firefox"),
    ("d", "localhost", [(30, "pageview", "/", None)], ("direct", None, None, None), "Firefox"),
    ("e", "blog.example.com", [(-12960, "pageview", "/", None), (-12959, "pageview", "/docs", None),
                               (-12958, "pageview", "/", None)], ("direct", None, None, None), "Chrome"),
]  # fmt: skip


def store_visits(server):
    """VISITS through the writer, as the web events API stores them: a visit's later pageviews are "direct"."""
    start = utc("2026-11-19T09:00:00")
    for visitor, site, events, (referrer, source, medium, campaign), browser in VISITS:
        for n, (minute, kind, what, props) in enumerate(events):
            first = n == 0
            server.ctx.writer.append("web", {
                "ts": start + minute * 60_000, "site": site, "kind": kind, "host": site,
                "path": what if kind == "pageview" else "/", "name": None if kind == "pageview" else what,
                "referrer": referrer if first else "direct", "utm_source": source if first else None,
                "utm_medium": medium if first else None, "utm_campaign": campaign if first else None,
                "utm_term": None, "utm_content": None, "visitor_id": f"visitor-{visitor}", "browser": browser,
                "os": "Linux", "device": "desktop", "country": "XX" if visitor == "d" else "FR", "status": 200,
                "props": json.dumps(props) if props else None,
            })  # fmt: skip
    server.ctx.writer.flush()


def explored_server(make_server):
    """A server with the VISITS, a counter client's likes and a widget's renders and clicks."""
    server = make_server()
    day = utc("2026-11-19T00:00:00") // 86_400_000
    with sqlite3.connect(server.config["db"]) as conn:
        prisme_lite.add_origin(conn, "blog.example.com")
        conn.execute(
            "INSERT INTO counter_clients (id, name, domain, email, secret_hash, created_at)"
            " VALUES ('cl_0123456789abcdef', 'Blog likes', 'blog.example.com', 'me@example.com', 'x', 0)"
        )
        conn.execute("INSERT INTO counter_days VALUES ('cl_0123456789abcdef', 'likes', 'intro', ?, 3)", (day,))
        conn.executemany(
            "INSERT INTO widget_events (ts, instance_id, widget, action, analytics_id, token_id) VALUES (?, 'w1',"
            " 'gallery', ?, 'a1', 'tk')",
            [(utc("2026-11-19T10:00:00"), "render")] * 8 + [(utc("2026-11-19T10:01:00"), "click")],
        )
    server.ctx.origins.reload()
    store_visits(server)
    return server


@pytest.fixture
def explored(make_server, chromium, monkeypatch):
    server = explored_server(make_server)
    with dashboard_page(server, chromium, monkeypatch, "2026-11-20T12:00:00") as (page, _clock):
        page.server = server
        yield page


def panel(page, title):
    return page.locator("section.panel", has=page.locator("h2", has_text=re.compile(f"^{re.escape(title)}$")))


def rows(page, title):
    """A panel's rows as (first cell, first number)."""
    return [(row.locator("td").first.text_content(), row.locator("td.n").first.text_content())
            for row in panel(page, title).locator("tbody tr").all()]  # fmt: skip


def test_clicking_a_row_filters_every_panel_and_the_url_keeps_the_filters(explored):
    page = explored
    expect(page.locator("#pageviews-total")).to_have_text("6")
    # Referrers count visits by where they came from: b's click to /docs is no second "direct".
    assert rows(page, "Referrers") == [("direct", "2"), ("google.com", "1"), ("twitter.com", "1")]
    assert rows(page, "Campaigns") == [("launch", "1")] and rows(page, "Campaign mediums") == [("email", "1")]
    asked = []
    page.on("request", lambda request: asked.append(request.url) if "/api/v1/stats/" in request.url else None)
    panel(page, "Referrers").get_by_role("button", name="google.com").click()
    expect(page.locator("#pageviews-total")).to_have_text("2")  # both of a's pageviews, not only the first
    assert page.text_content("#visitors-total") == "1"
    expect(page.locator("#filters .chip")).to_have_text(["Referrer: google.com×"])
    assert "visit-referrer=google.com" in page.url
    assert rows(page, "Top pages") == [("blog.example.com /", "1"), ("blog.example.com /pricing", "1")]
    assert rows(page, "Custom events") == [("signup", "1")]
    assert (
        sum(int(title.split(": ")[1].split()[0]) for title in page.locator("#chart rect title").all_text_contents())
        == 2
    )
    # Every panel asked with the filter; those that cannot apply it say so.
    assert len(asked) >= 3 + len(page.locator("section.panel[data-metric]").all()) - 1
    assert all("visit-referrer=google.com" in url for url in asked), asked
    expect(panel(page, "Server events").locator(".note")).to_contain_text("Not filtered by visit-referrer")
    # Filters combine, and the URL keeps them: a reload (a bookmark) shows the same view. A page of "All sites"
    # picks its site too.
    panel(page, "Top pages").get_by_role("button", name="/pricing").click()
    expect(page.locator("#pageviews-total")).to_have_text("1")
    assert "path=%2Fpricing" in page.url and "site=blog.example.com" in page.url
    assert page.input_value("#site") == "blog.example.com"
    assert rows(page, "Top pages") == [("/pricing", "1")]  # one site: no site beside its paths
    page.reload()
    expect(page.locator("#pageviews-total")).to_have_text("1")
    expect(page.locator("#filters .chip-value")).to_have_text(["google.com", "/pricing"])
    # A chip removes its filter; the back button brings it back.
    page.locator("#filters .chip[data-filter='visit-referrer']").click()
    expect(page.locator("#pageviews-total")).to_have_text("2")  # /pricing: a's and c's
    assert "visit-referrer" not in page.url
    page.go_back()
    expect(page.locator("#pageviews-total")).to_have_text("1")
    expect(page.locator("#filters .chip-value")).to_have_text(["google.com", "/pricing"])
    page.click("#clear-filters")
    expect(page.locator("#pageviews-total")).to_have_text("5")  # the blog's
    assert page.locator("#filters").is_hidden() and page.url.endswith("/dashboard?site=blog.example.com")


def test_a_shared_link_opens_its_site_period_and_filters(explored):
    page = explored
    base = page.url.split("?")[0]
    page.goto(f"{base}?site=blog.example.com&period=30d&browser=Firefox")
    expect(page.locator("#pageviews-total")).to_have_text("1")  # c's one pageview on the blog
    assert page.input_value("#site") == "blog.example.com"
    assert page.locator("[data-period].active").text_content() == "30 days"
    assert page.locator("#chart rect").count() == 30
    page.goto(f"{base}?period=custom&from=2026-11-19&to=2026-11-19&os=Linux")
    expect(page.locator("#pageviews-total")).to_have_text("6")
    assert (page.input_value("#from"), page.input_value("#to")) == ("2026-11-19", "2026-11-19")
    assert page.locator("[data-period].active").text_content() == "Custom" and page.locator("#custom").is_visible()
    page.goto(f"{base}?period=forever&nonsense=1&path=")  # what it cannot read it leaves out: 7 days, unfiltered
    expect(page.locator("#pageviews-total")).to_have_text("6")
    assert page.locator("[data-period].active").text_content() == "7 days" and page.locator("#filters").is_hidden()


def test_a_custom_event_row_opens_the_breakdown_of_its_properties(explored):
    page = explored
    assert page.locator("#properties").count() == 0
    panel(page, "Custom events").get_by_role("button", name="signup").click()
    expect(page.locator("#properties h2")).to_have_text("Properties of signup")
    assert rows(page, "Properties of signup") == [("plan", "1"), ("plan", "1")]
    assert page.locator("#properties td").all_text_contents() == ["plan", "free", "1", "plan", "pro", "1"]
    assert page.text_content("#pageviews-total") == "3"  # the visits that signed up: a's two pageviews, c's one
    page.locator("#filters .chip").click()
    expect(page.locator("#properties")).to_have_count(0)


def test_each_card_compares_with_the_previous_period_and_the_chart_can_overlay_it(explored):
    """7 days at noon: the 6.5 days before them (11-07 to 11-13 noon) hold e's visit of 3 pageviews."""
    page = explored
    expect(page.locator("#pageviews-total")).to_have_text("6")
    changes = {name: page.text_content(f"#{name}-change") for name in ("visitors-total", "pageviews-total",
                                                                       "sessions-total", "bounce-rate")}  # fmt: skip
    assert changes == {"visitors-total": "+300 %", "pageviews-total": "+100 %", "sessions-total": "+300 %",
                       "bounce-rate": "new"}  # fmt: skip
    assert page.get_attribute("#pageviews-total-change", "class") == "change up"
    assert page.get_attribute("#pageviews-total-change", "title") == "3 in the previous period of the same length"
    assert page.locator("#chart .previous").count() == 0
    page.check("#compare")
    expect(page.locator("#chart .previous")).to_have_count(1)
    assert "compare=1" in page.url
    assert page.locator(".legend li").all_text_contents()[:3] == ["Pageviews", "Visitors", "Pageviews, previous period"]
    titles = page.locator("#chart rect title").all_text_contents()
    assert titles[13] == "2026-11-17 06:00: 0 pageviews, 0 visitors; previous period 3 pageviews"  # 11-10 06:00
    assert sum(int(title.rsplit("period ", 1)[1].split()[0]) for title in titles) == 3
    page.click("[data-period='today']")  # today so far (nothing) against yesterday to noon (11-19's 5 pageviews)
    expect(page.locator("#pageviews-total-change")).to_have_text("-100 %")
    assert page.get_attribute("#pageviews-total-change", "class") == "change down"
    assert page.get_attribute("#bounce-rate-change", "class") == "change up"  # fewer bounces: better
    page.reload()
    expect(page.locator("#chart .previous")).to_have_count(1)  # compare is in the URL too


def test_the_live_count_refreshes_without_a_reload(explored):
    page = explored
    page.clock.install()
    page.reload()
    expect(page.locator("#live-count")).to_have_text("0")  # nothing since 11:30
    page.server.ctx.writer.append("web", {
        "ts": utc("2026-11-20T11:55:00"), "site": "localhost", "kind": "custom", "host": "localhost", "path": "/",
        "name": "ping", "referrer": "direct", "utm_source": None, "utm_medium": None, "utm_campaign": None,
        "utm_term": None, "utm_content": None, "visitor_id": "visitor-live", "browser": "Chrome", "os": "Linux",
        "device": "desktop", "country": "FR", "status": 200, "props": None,
    })  # fmt: skip
    page.server.ctx.writer.flush()
    loads = []
    page.on("load", lambda _page: loads.append(1))
    page.clock.run_for(31_000)
    expect(page.locator("#live-count")).to_have_text("1")
    assert loads == [] and page.text_content("#pageviews-total") == "6"  # the page stayed


def test_the_dashboard_reads_well_on_a_phone_in_dark_mode(make_server, chromium, monkeypatch):
    server = explored_server(make_server)
    options = {"viewport": {"width": 390, "height": 844}, "color_scheme": "dark"}
    with dashboard_page(server, chromium, monkeypatch, "2026-11-20T12:00:00", **options) as (page, _clock):
        failed = []
        page.on("response", lambda answer: failed.append(answer.url) if answer.status >= 400 else None)
        page.reload()
        expect(page.locator("#pageviews-total")).to_have_text("6")
        assert failed == []  # the favicon too
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(12, 17, 29)"  # dark
        assert page.evaluate("document.querySelector('header').getBoundingClientRect().height") < 100  # of 844
        # The chart is drawn at the phone's width: its labels are 12 px on the screen, and there are few enough.
        box = page.evaluate(
            "(() => { const r = document.querySelector('#chart text.x').getBoundingClientRect();"
            " return [r.height, document.querySelector('#chart').getBoundingClientRect().width]; })()"
        )
        assert box[0] >= 11 and box[1] <= 390
        assert page.locator("#chart text.x").all_text_contents() == ["Nov 14", "Nov 16", "Nov 18", "Nov 20"]
        assert page.locator("#chart text.y").all_text_contents() == ["0", "2", "4", "6"]  # 6 in one bar
        # Shares, in bars and percentages of the period's visits (pageviews).
        referrers = panel(page, "Referrers")
        assert referrers.locator("td.share-text").all_text_contents() == ["50 %", "25 %", "25 %"]
        assert referrers.locator(".share").first.evaluate("(bar) => bar.style.width") == "50%"
        # A long path ends in an ellipsis on one line, whole on hover; no word is broken.
        long = panel(page, "Top pages").locator(".key", has_text="a-page-whose-name")
        assert long.get_attribute("title") == f"blog.example.com {LONG_PATH}"
        sizes = long.evaluate(
            "(key) => [key.scrollWidth, key.clientWidth, key.getBoundingClientRect().height,"
            " getComputedStyle(key).textOverflow, getComputedStyle(key.closest('td')).wordBreak]"
        )
        assert sizes[0] > sizes[1] and sizes[2] < 30 and sizes[3:] == ["ellipsis", "normal"]
        # Countries without GeoIP: "Unknown", and how to get them.
        countries = panel(page, "Countries")
        assert [row[0] for row in rows(page, "Countries")] == ["FR", "Unknown"]
        expect(countries.locator(".hint")).to_contain_text("geoip_db")
        countries.get_by_role("button", name="Unknown").click()
        expect(page.locator("#filters .chip")).to_have_text(["Country: Unknown×"])
        assert "country=XX" in page.url
        page.locator("#filters .chip").click()
        # A widget's click-through rate as a percentage; counters by their client's name.
        expect(panel(page, "Widgets").locator("td").last).to_have_text("12.5 %")
        assert panel(page, "Counters").locator("td").all_text_contents() == [
            "Blog likes", "blog.example.com", "likes", "intro", "3"
        ]  # fmt: skip
    answer = server.client.get("/static/favicon.svg")
    assert answer.content_type == "image/svg+xml" and answer.body.startswith(b"<svg")


@pytest.fixture
def chromium_public(chromium):
    """Chromium that lets a page of a public site (routed here) reach the server on 127.0.0.1, as a real site's pages
    reach a real server: its local network access checks are off."""
    browser = chromium.browser_type.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-features=LocalNetworkAccessChecks"]
    )
    yield browser
    browser.close()


def test_goals_show_their_rate_and_a_browser_excludes_itself_from_the_dashboard(run, chromium_public, tmp_path):
    """The site is https://blog.example.com, answered here (context.route) with a page that loads wa.js from the
    server; a second visitor signs up, the first does not: the goal converts one visitor of two. The dashboard's link
    opens the site with #prisme-opt-out, which comes back to the dashboard saying this browser is excluded: its next
    visit sends nothing, until "Count it again"."""
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    assert cli("origins", "add", "blog.example.com", db=db).returncode == 0
    assert cli("goals", "add", "--site", "blog.example.com", "--event", "signup", db=db).returncode == 0
    process = run()
    token = process.banner[2].split(": ", 1)[1].strip()
    site = (
        f'<!doctype html><title>blog</title><script defer src="http://127.0.0.1:{process.port}/static/wa.js"></script>'
        "<script>addEventListener('load', () => location.search === '?signup' && prisme.trigger('signup'))</script>"
    )

    def visitor(agent=CHROME):  # one IP address here: a visitor is a user agent
        context = chromium_public.new_context(user_agent=agent, viewport={"width": 1100, "height": 1400})
        context.route("https://blog.example.com/**", lambda route: route.fulfill(body=site, content_type="text/html"))
        sent = []
        context.on("request", lambda request: sent.append(request.url) if "/api/v1/events/" in request.url else None)
        return context, context.new_page(), sent

    me, page, sent = visitor()
    page.goto("https://blog.example.com/")
    other, other_page, _ = visitor(IPHONE)
    other_page.goto("https://blog.example.com/?signup")
    assert len(rows_eventually(db, "SELECT id FROM events", 3)) == 3
    other.close()
    page.goto(f"http://127.0.0.1:{process.port}/dashboard")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#pageviews-total")
    assert page.text_content("#exclusion").startswith("Pick a site")
    page.select_option("#site", "blog.example.com")
    goals = page.locator("section.panel", has=page.locator("h2", has_text="Goals"))
    expect(goals.locator("tbody td")).to_have_text(
        ["signup", "1", "1", "50 %"]
    )  # conversions, visitors, rate: one of two
    assert [th.text_content() for th in goals.locator("th").all()] == [
        "Goal",
        "Conversions",
        "Visitors",
        "Rate",
    ]
    assert page.text_content("#counted") == "This browser's visits to blog.example.com are counted."
    assert page.get_attribute("#exclude", "href") == "https://blog.example.com/#prisme-opt-out"
    artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "goals-and-exclusion.png"), full_page=True)
    sent.clear()
    page.click("#exclude")  # to the site, where wa.js keeps the opt-out, and back
    page.wait_for_selector("#excluded")
    assert page.url == f"http://127.0.0.1:{process.port}/dashboard?site=blog.example.com"  # by /dashboard/opted
    assert page.input_value("#site") == "blog.example.com"  # back on the site whose link it followed
    assert page.text_content("#excluded") == (
        "This browser is excluded from blog.example.com: its visits are not counted."
    )
    assert sent == []  # the page opened to opt out counted nothing
    page.reload()
    page.select_option("#site", "blog.example.com")
    expect(page.locator("#excluded")).to_be_visible()  # remembered by this browser
    page.goto("https://blog.example.com/?signup")
    page.wait_for_function("window.prisme !== undefined")
    page.wait_for_timeout(500)
    assert sent == []
    page.goto(f"http://127.0.0.1:{process.port}/dashboard")
    page.select_option("#site", "blog.example.com")
    page.click("#include")
    page.wait_for_selector("#counted")
    page.goto("https://blog.example.com/after")  # another page: the same one again would be a reload, not counted
    assert len(rows_eventually(db, "SELECT id FROM events", 4)) == 4  # counted again
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE kind = 'custom'").fetchone() == (1,)
    me.close()


def test_a_share_link_opens_logged_out_hides_small_counts_and_filters_by_a_click(make_server, chromium, monkeypatch):
    """The counts of tests/test_share.py (12, 5, 4, 1 of each kind) in a browser with no login: "< 5" where a count
    is under 5, in the cards, the goals panel and the chart; a row click filters every panel, as on the dashboard."""
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: SHARE_NOW)
    server = make_server()
    store_counts(server)
    with sqlite3.connect(server.config["db"]) as conn:
        token = prisme_lite.create_share(conn, SHARE_SITE, 30)
    served = Served(prisme_lite.RequestLog(server.app, access_log=False))
    context = chromium.new_context(user_agent=CHROME, viewport={"width": 1100, "height": 1400})
    try:
        page = context.new_page()
        failed = []
        page.on("response", lambda answer: failed.append(answer.url) if answer.status >= 400 else None)
        page.goto(f"http://127.0.0.1:{served.port}/share/{token}")
        expect(page.locator("#pageviews-total")).to_have_text("23")
        assert context.cookies() == [] and failed == []  # no login, nothing refused
        assert page.text_content("#site-name") == SHARE_SITE
        for control in ("#site", "#logout", "#exclusion", "#token"):
            assert page.locator(control).count() == 0, control
        assert page.text_content("#bounce-rate") == "-"  # 95 % of 22 would tell the one visit that did not bounce
        expect(page.locator("#live-count")).to_have_text("< 5")
        expect(panel(page, "Goals").locator("tbody tr", has_text="play").locator("td")).to_have_text(
            ["play", "< 5", "< 5", "-"]
        )
        assert rows(page, "Top pages") == [("/twelve", "12"), ("/five", "5")]  # /four and /one are left out
        expect(panel(page, "Top pages").locator(".note")).to_have_text("Rows under 5 are left out.")
        hidden = page.locator("#chart rect.hidden title").all_text_contents()
        assert [title.split(": ", 1)[1].split(",")[0] for title in hidden] == ["< 5 pageviews", "< 5 pageviews"]
        assert panel(page, "Widgets").count() == 0 and panel(page, "Server events").count() == 0  # every site's
        panel(page, "Top pages").get_by_role("button", name="/twelve").click()
        expect(page.locator("#pageviews-total")).to_have_text("12")
        assert rows(page, "Referrers") == [("news.example", "12")]
        assert "path=%2Ftwelve" in page.url and "site=" not in page.url
        page.goto(f"http://127.0.0.1:{served.port}/share/{token}?path=/four")  # a filter in the URL works too
        expect(page.locator("#pageviews-total")).to_have_text("< 5")
        assert page.text_content("#visitors-total") == "< 5" and page.locator("#pageviews-total-change").count() == 0
    finally:
        context.close()
        served.close()
