"""Guards (SPEC §2): rate limit, body limits, JSON errors, request ids, access log."""

import io
import logging
import re
import sqlite3

import pytest
from conftest import CHROME

import prisme_lite

PAGE = "http://localhost/a"  # localhost is registered on every server by default


def pageview(client, ip="198.51.100.1", **headers):
    return client.post(
        "/api/v1/events/pageviews",
        headers={"Origin": "http://localhost", "X-Prisme-Referrer": PAGE, "User-Agent": CHROME, **headers},
        extra_environ={"REMOTE_ADDR": ip},
        expect_errors=True,
    )


def test_sixty_pass_then_429_with_retry_after_and_another_ip_is_unaffected(server, client):
    answers = [pageview(client, **{"X-Prisme-Referrer": f"{PAGE}/{n}"}) for n in range(60)]  # no reloads (§3.3a)
    assert {answer.status_int for answer in answers} == {200}
    assert answers[0].headers["X-RateLimit-Limit"] == "60"
    assert [answer.headers["X-RateLimit-Remaining"] for answer in answers[-2:]] == ["1", "0"]
    refused = pageview(client)
    assert refused.status_int == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "rate limit of 60 events a minute" in refused.json["error"]
    assert pageview(client, ip="198.51.100.2").status_int == 200
    assert len(server.events()) == 61  # the refused one is not stored


def test_the_rate_limit_is_shared_by_every_browser_route(server, client):
    for _ in range(59):
        assert pageview(client).status_int == 200
    gif = client.get(
        "/api/v1/noscript/events/pageviews",
        headers={"Referer": PAGE, "User-Agent": CHROME},
        extra_environ={"REMOTE_ADDR": "198.51.100.1"},
        expect_errors=True,
    )
    assert gif.status_int == 200
    gif = client.get(
        "/api/v1/noscript/events/pageviews",
        headers={"Referer": PAGE, "User-Agent": CHROME},
        extra_environ={"REMOTE_ADDR": "198.51.100.1"},
        expect_errors=True,
    )
    assert (gif.status_int, gif.body) == (429, prisme_lite.GIF)


def test_bucket_refills_with_time():
    limiter = prisme_lite.RateLimiter(60, 1000)
    for _ in range(60):
        assert limiter.take("ip", now=100.0)[0]
    allowed, _remaining, retry_after = limiter.take("ip", now=100.0)
    assert (allowed, retry_after) == (False, 1)
    assert limiter.take("ip", now=101.0)[0]  # one token a second at 60/min
    assert not limiter.take("ip", now=101.0)[0]


def test_rate_limit_zero_is_off(make_server):
    server = make_server(rate_limit=0)
    assert all(pageview(server.client).status_int == 200 for _ in range(100))
    assert "X-RateLimit-Limit" not in pageview(server.client).headers


def test_bucket_table_stays_bounded_under_200000_spoofed_ips():
    """With trust_proxy on, every request may claim a new address: memory must not follow them."""
    config = prisme_lite.load_config({"trust_proxy": "true", "db": "unused.db"}, environ={})
    limiter = prisme_lite.RateLimiter(config["rate_limit"], config["rate_limit_buckets"])
    now = 1000.0
    for n in range(200_000):
        environ = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}
        ip = prisme_lite.client_ip(environ, config)
        assert limiter.take(ip, now=now + n / 100_000)[0]
    assert len(limiter.buckets) == config["rate_limit_buckets"] == 100_000  # the last second's addresses
    # A second later every one of those buckets is full again, the same as none: all are forgotten.
    limiter.take("192.0.2.1", now=now + 3)
    assert list(limiter.buckets) == ["192.0.2.1"]


def test_a_bucket_is_forgotten_once_it_is_full_again_and_not_before():
    limiter = prisme_lite.RateLimiter(60, 1000)
    for _ in range(30):
        limiter.take("busy", now=10.0)  # 30 tokens short: full again in 30 s
    limiter.take("other", now=39.0)
    assert set(limiter.buckets) == {"busy", "other"}
    assert limiter.take("busy", now=39.0)[1] == 58  # 29 refilled of 30, minus this one
    limiter.take("third", now=100.0)
    assert list(limiter.buckets) == ["third"]


def test_a_flooded_table_still_limits_the_active_address():
    limiter = prisme_lite.RateLimiter(60, 1000)
    for _ in range(60):
        limiter.take("attacker", now=5.0)
    for n in range(500):  # fewer spoofed addresses than the cap: the attacker's bucket is kept
        limiter.take(f"spoof-{n}", now=5.0)
    assert not limiter.take("attacker", now=5.0)[0]


def test_oversize_body_is_413_before_it_is_read(server, client):
    response = client.post(
        "/api/v1/events/custom/x",
        b"{}",
        headers={"Content-Type": "application/json", "Content-Length": "40000"},
        expect_errors=True,
    )
    assert response.status_int == 413
    assert "over the limit of 32768 bytes" in response.json["error"]


def test_body_limit_is_configurable(make_server):
    server = make_server(max_body_bytes=2048)
    body = '{"k": "' + "v" * 1000 + '", "j": "' + "v" * 1100 + '"}'  # 2,118 bytes
    response = server.client.post(
        "/api/v1/events/custom/x",
        body,
        headers={"Content-Type": "application/json", "Origin": "http://localhost", "Referer": "http://localhost/"},
        expect_errors=True,
    )
    assert response.status_int == 413


def test_unknown_route_and_method_are_json_errors(client):
    missing = client.get("/nowhere", expect_errors=True)
    assert (missing.status_int, missing.json) == (404, {"error": "no route for GET /nowhere"})
    wrong = client.get("/api/v1/events/pageviews", expect_errors=True)
    assert wrong.status_int == 405
    assert wrong.json == {"error": "GET is not allowed on /api/v1/events/pageviews"}


def test_an_unexpected_failure_is_a_json_500_whose_request_id_is_in_the_log(client, monkeypatch, caplog):
    def broken(text):
        raise RuntimeError("boom")

    monkeypatch.setattr(prisme_lite, "parse_user_agent", broken)
    with caplog.at_level(logging.ERROR, logger="prisme_lite"):
        response = pageview(client)
    assert response.status_int == 500
    request_id = response.headers["X-Request-Id"]
    assert response.json["request_id"] == request_id
    assert "Traceback" not in response.text and "boom" not in response.text
    assert any(request_id in record.getMessage() and "boom" in record.getMessage() for record in caplog.records)


def test_every_response_has_a_request_id_and_one_access_log_line(server):
    import webtest

    stream = io.StringIO()
    access_log = prisme_lite.AccessLog(stream)
    client = webtest.TestApp(prisme_lite.RequestLog(server.app, access_log))
    paths = ("/api/v1/healthcheck", "/x", "/a%0Afake%20200%1B[31m")
    ids = [client.get(path, expect_errors=True).headers["X-Request-Id"] for path in paths]
    access_log.close()
    assert len(set(ids)) == 3
    lines = [line.split(" prisme_lite.access ", 1)[1] for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    assert re.fullmatch(rf"GET /api/v1/healthcheck 200 \d+\.\dms {ids[0]}", lines[0])
    assert re.fullmatch(rf"GET /x 404 \d+\.\dms {ids[1]}", lines[1])
    # A path cannot forge a line of its own, nor send escapes to a terminal (SPEC §2: one request, one line).
    assert re.fullmatch(rf"GET /a\\nfake\\x20200\\x1b\[31m 404 \d+\.\dms {ids[2]}", lines[2])


def test_a_bad_content_length_is_a_400_and_a_negative_one_reads_nothing():
    with pytest.raises(prisme_lite.Rejected) as refused:
        prisme_lite.read_body({"CONTENT_LENGTH": "abc"}, 1024)
    assert (refused.value.status, refused.value.message) == (400, "Content-Length is not a number")
    assert prisme_lite.read_body({"CONTENT_LENGTH": "-5", "wsgi.input": None}, 1024) == b""


def test_guessing_tokens_and_secrets_gets_429_after_ten_failures_per_address(server):
    """Every credential check counts unknown tokens and wrong secrets per client IP: ten a minute, then 429 with
    Retry-After, even for the right credential from there; another address is unaffected."""
    client = server.client
    admin = server.ctx.admin_token()
    with sqlite3.connect(server.config["db"]) as conn:
        public = prisme_lite.create_access_token(conn, ["track_public"], "site")[1]
    registered = client.post_json(
        "/api/v1/register", {"clientName": "b", "domainName": "localhost", "emailId": "a@b.example"},
        headers={"Authorization": f"Bearer {admin}"}, status=201,
    ).json  # fmt: skip
    attempts = {
        # route: (how to send one credential, status of a wrong one)
        "stats": (lambda token, ip: client.get("/api/v1/stats/pageviews", headers={"Authorization": f"Bearer {token}"},
                                               extra_environ={"REMOTE_ADDR": ip}, expect_errors=True), 401),
        "export": (lambda token, ip: client.get("/api/v1/export", headers={"Authorization": f"Bearer {token}"},
                                                extra_environ={"REMOTE_ADDR": ip}, expect_errors=True), 401),
        "events": (lambda token, ip: client.post_json("/events", {"label": "View", "content_item": {"id": "i"}, "customer": {"id": "c"}},
                                                      headers={"Authorization": f"Bearer {token}"},
                                                      extra_environ={"REMOTE_ADDR": ip}, expect_errors=True), 401),
        "widget": (lambda token, ip: client.get(f"/track/widget/w1/best/render.json?auth_token={token}&pics=3"
                                                "&analytics_id=a1", extra_environ={"REMOTE_ADDR": ip},
                                                expect_errors=True), 403),
        "counter secret": (lambda secret, ip: client.post_json(
            "/api/v1/configure", {"clientId": registered["clientId"], "clientSecret": secret, "validPageIds": ["p"],
                                  "validActionIds": ["like"]}, extra_environ={"REMOTE_ADDR": ip}, expect_errors=True), 401),
    }  # fmt: skip
    right = {"stats": admin, "export": admin, "events": admin, "widget": public,
             "counter secret": registered["clientSecret"]}  # fmt: skip
    for n, (name, (send, wrong_status)) in enumerate(attempts.items()):
        ip = f"198.51.100.{n + 10}"
        for _ in range(prisme_lite.AUTH_FAILURES_PER_MINUTE):
            assert send(f"pl_guess{_}", ip).status_int == wrong_status, name
        refused = send("pl_guess-more", ip)
        assert refused.status_int == 429 and int(refused.headers["Retry-After"]) >= 1, name
        assert "too many unknown tokens or wrong secrets" in refused.text, name
        assert send(right[name], ip).status_int == 429, name  # the right one too: guessing stops for a while
        assert send(right[name], "192.0.2.77").status_int in (200, 202), name  # another address is unaffected
    with sqlite3.connect(server.config["db"]) as conn:
        assert conn.execute("SELECT count(*) FROM counter_clients WHERE page_ids = '[\"p\"]'").fetchone()[0] == 1


def test_the_dashboard_login_counts_wrong_tokens_too(server):
    client = server.client
    for _ in range(prisme_lite.AUTH_FAILURES_PER_MINUTE):
        client.post("/dashboard/login", {"token": "nope"}, extra_environ={"REMOTE_ADDR": "198.51.100.40"}, status=401)
    client.post("/dashboard/login", {"token": server.ctx.admin_token()},
                extra_environ={"REMOTE_ADDR": "198.51.100.40"}, status=429)  # fmt: skip
    client.post("/dashboard/login", {"token": server.ctx.admin_token()},
                extra_environ={"REMOTE_ADDR": "198.51.100.41"}, status=303)  # fmt: skip


def test_ipv6_clients_are_limited_per_64(server, make_server):
    """One /64 is one subscriber: 70 of its addresses share one bucket, and one lockout (issue 18.9)."""
    client = server.client
    answers = [pageview(client, ip=f"2001:db8:1:2::{n:x}").status_int for n in range(70)]
    assert answers.count(200) == 60 and answers[60:] == [429] * 10
    assert pageview(client, ip="2001:db8:1:3::1").status_int == 200  # the next /64 is another subscriber
    for n in range(prisme_lite.AUTH_FAILURES_PER_MINUTE):
        client.get("/api/v1/stats/pageviews", headers={"Authorization": f"Bearer pl_guess{n}"},
                   extra_environ={"REMOTE_ADDR": f"2001:db8:9:9::{n + 1:x}"}, status=401)  # fmt: skip
    client.get("/api/v1/stats/pageviews", headers={"Authorization": "Bearer pl_guess"},
               extra_environ={"REMOTE_ADDR": "2001:db8:9:9:ffff::1"}, status=429)  # fmt: skip
    per_address = make_server(ipv6_prefix=128)  # the setting may say otherwise
    assert [pageview(per_address.client, ip=f"2001:db8:1:2::{n:x}").status_int for n in range(70)] == [200] * 70


@pytest.mark.parametrize("entry", ["[2001:db8::5]:443", "[2001:db8::5]", "2001:db8::5"])
def test_a_bracketed_ipv6_address_with_a_port_is_the_client(make_server, entry):
    """It fell back to the proxy's address, so that every such client shared its bucket (issue 18.10)."""
    server = make_server(trust_proxy=True)
    headers = {"X-Forwarded-For": entry}
    assert [pageview(server.client, ip="10.0.0.1", **headers).status_int for _ in range(61)][-2:] == [200, 429]
    other = {"X-Forwarded-For": "[2001:db8:0:1::6]:443"}
    assert pageview(server.client, ip="10.0.0.1", **other).status_int == 200  # another client behind the proxy


def test_token_requests_share_the_per_ip_bucket(server):
    """Each new User-Agent got a fresh token, so one address added as many likes as it had UAs (issue 18.12)."""
    client = server.client
    admin = {"Authorization": f"Bearer {server.ctx.admin_token()}"}
    client.post_json("/api/v1/register", {"clientName": "b", "domainName": "localhost", "emailId": "a@b.example"},
                     headers=admin, status=201)  # fmt: skip
    ip = {"REMOTE_ADDR": "198.51.100.60"}
    for n in range(59):
        headers = {"Origin": "http://localhost", "User-Agent": CHROME.replace("120.0", f"120.{n}")}
        assert client.get("/api/v1/token", headers=headers, extra_environ=ip).status_int == 200
    assert pageview(client, ip=ip["REMOTE_ADDR"]).status_int == 200  # the 60th of the minute
    refused = client.get("/api/v1/token", headers={"Origin": "http://localhost", "User-Agent": CHROME},
                         extra_environ=ip, status=429)  # fmt: skip
    assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["X-RateLimit-Remaining"] == "0"


def test_ingest_routes_answer_as_bottle_does(make_server):
    """IngestRoutes answers the ingest routes without most of Bottle: each answer, stored, dropped or refused, has
    the status, headers and body that Bottle itself gives (on a second server: the same requests)."""
    import webtest

    environ = {"REMOTE_ADDR": "203.0.113.9"}
    routes = prisme_lite.IngestRoutes(make_server().app)
    assert {"noscript_pageview", "post_pageview", "increment_action"} <= {handler.__name__ for handler in routes.ingest}
    fast = webtest.TestApp(routes, extra_environ=environ)
    bottle_only = webtest.TestApp(make_server().app, extra_environ=environ)
    page = {"User-Agent": CHROME, "Referer": "http://localhost/a", "Origin": "http://localhost"}
    requests = [
        ("GET", "/api/v1/noscript/events/pageviews?visitor-id=v1", page, None),  # stored: the GIF
        ("GET", "/api/v1/noscript/events/pageviews?status=999", page, None),  # refused: the GIF, X-Prisme-Error
        ("GET", "/api/v1/noscript/events/pageviews", {**page, "User-Agent": "curl/8.5.0"}, None),  # dropped
        ("GET", "/api/v1/noscript/events/pageviews", {**page, "Referer": "http://caf\xc3\xa9.example/"}, None),
        ("GET", "/api/v1/noscript/events/custom/signup?visitor-id=v2", page, None),
        ("POST", "/api/v1/events/pageviews", {**page, "X-Prisme-Referrer": "http://localhost/b"}, b""),
        ("POST", "/api/v1/events/custom/signup", {**page, "Content-Type": "application/json"}, b"{not json"),
        ("POST", "/api/v1/events/pageviews", {**page, "X-Prisme-Referrer": "http://unknown.example/"}, b""),
    ]
    answers = {}
    for name, client in (("fast", fast), ("bottle", bottle_only)):
        answers[name] = []
        for method, path, headers, body in requests:
            sent = (
                client.get(path, headers=headers, expect_errors=True)
                if method == "GET"
                else client.post(path, body, headers=headers, expect_errors=True)
            )
            answers[name].append((sent.status, sorted(sent.headerlist), sent.body))
    assert answers["fast"] == answers["bottle"]
    statuses = [int(status[:3]) for status, _headers, _body in answers["fast"]]
    assert statuses == [200, 400, 200, 400, 200, 200, 400, 200]
    refusal = dict(answers["fast"][3][1])["X-Prisme-Error"]  # a UTF-8 header value, sent as WSGI's Latin-1 text
    assert "cafÃ©.example" in refusal


def test_an_unexpected_failure_of_an_ingest_route_is_bottles_json_500(server, monkeypatch):
    def broken(text):
        raise RuntimeError("boom")

    import webtest

    monkeypatch.setattr(prisme_lite, "parse_user_agent", broken)
    fast = webtest.TestApp(prisme_lite.IngestRoutes(server.app), extra_environ={"REMOTE_ADDR": "203.0.113.9"})
    headers = {"User-Agent": CHROME, "Referer": "http://localhost/a"}
    answer = fast.get("/api/v1/noscript/events/pageviews", headers=headers, expect_errors=True)
    assert answer.status_int == 500
    assert answer.content_type == "application/json"
    assert answer.json["error"].startswith("internal error")
    assert "boom" not in answer.text
