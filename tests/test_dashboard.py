"""The tracking script and the dashboard, at the HTTP level (SPEC §3.5, §7); the browser tests drive them for real."""

import gzip
import sqlite3

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


def test_a_forged_or_expired_cookie_is_refused(server, client):
    client.set_cookie("prisme_dashboard", "9999999999.deadbeef")
    client.get("/api/v1/stats/overview", status=401)
    expired = 1000
    client.set_cookie("prisme_dashboard", f"{expired}.{prisme_lite.dashboard_signature(server.ctx, expired)}")
    client.get("/api/v1/stats/overview", status=401)


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
