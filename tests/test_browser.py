"""Browser tests in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): the README's snippets,
pasted into a page of a registered origin, store what they promise."""

import os
import re
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import CHROME

CHROMIUM = "/usr/bin/chromium"
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()

if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
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
    assert rows == [("localhost", "localhost", "/blog/first-post", "readme", "Chrome", "pageview")]


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
    assert rows == [("/landing", "direct", "pageview")]  # the document referrer is the same site: direct


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


def test_the_readme_gallery_and_checkout_beacons_store_their_rows(run, pages, chromium, tmp_path):
    import subprocess

    from conftest import command

    db = tmp_path / "prisme.db"
    made = subprocess.run(
        [*command(), "tokens", "create", "--scope", "track_public", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    token = made.stdout.strip()
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
    assert widget_rows == [
        ("category", 12, None, "render", "visitor-42", 8, 2, '{"country":"US"}', None),
        ("category", 12, 9001, "view", "visitor-42", 8, None, None, None),
        ("category", 12, 9001, "shop", "visitor-42", 8, None, None, "shop.example.com"),
    ]
    with sqlite3.connect(db) as conn:
        assert conn.execute(
            "SELECT transaction_id, analytics_id, currency, total_e4, referrer FROM checkouts"
        ).fetchall() == [("ORDER-1001", "visitor-42", "EUR", 1_304_900, "shop.example.com/thanks")]
        assert conn.execute("SELECT product_id, amount_e4 FROM checkout_products ORDER BY line").fetchall() == [
            ("product-123", 1_205_000),
            ("socks", 99_900),
        ]
