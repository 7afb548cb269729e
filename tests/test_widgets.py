"""Widget tracking (SPEC §6, seeds/003): widget, media, shop and checkout beacons in .json, .gif and bare form."""

import json
import re
import sqlite3
from urllib.parse import quote

import pytest
from conftest import CHROME, GOOGLEBOT, NOT_BROWSERS, agent_header, cli

import prisme_lite

ENVELOPE_KEYS = {"metadata", "data"}


@pytest.fixture
def token(server):
    with sqlite3.connect(server.config["db"]) as conn:
        return prisme_lite.create_access_token(conn, ["track_public"], "shop")


def get(client, path, token, status=200, ua=CHROME, **params):
    """GET a beacon with its query; `token` is (id, token) as create_access_token returns it, or None."""
    pairs = ([("auth_token", token[1])] if token else []) + list(params.items())
    query = "&".join(f"{quote(key, safe='[]')}={quote(str(value), safe='')}" for key, value in pairs)
    return client.get(f"{path}?{query}", headers=agent_header(ua), status=status, expect_errors=True)


def widget_rows(server):
    return server.rows("SELECT * FROM widget_events ORDER BY id")


ROUTES = [
    # (path without format, query, expected stored fields)
    ("/track/widget/inst-1/category/12/render", {"pics": 8}, {"widget": "category", "source_id": 12, "media_id": None, "action": "render", "pics": 8}),
    ("/track/widget/inst-1/category/12/view_all", {"pics": 8}, {"widget": "category", "source_id": 12, "action": "view_all"}),
    ("/track/widget/inst-1/stream/34/move", {"pics": 2}, {"widget": "stream", "source_id": 34, "action": "move", "pics": 2}),
    ("/track/widget/inst-1/stream/34/upload_click", {"pics": 2}, {"widget": "stream", "action": "upload_click"}),
    ("/track/widget/inst-1/best/filter_click", {"pics": 0}, {"widget": "best", "source_id": None, "action": "filter_click", "pics": 0}),
    ("/track/widget/inst-1/stream/not_found/render", {}, {"widget": "stream", "source_id": None, "action": "render", "pics": None}),
    ("/track/widget/inst-1/category/12/media/777/view", {"pics": 8}, {"widget": "category", "source_id": 12, "media_id": 777, "action": "view"}),
    ("/track/widget/inst-1/stream/34/media/777/play_click", {"pics": 8}, {"widget": "stream", "media_id": 777, "action": "play_click"}),
    ("/track/widget/inst-1/best/media/777/close", {"pics": 8}, {"widget": "best", "media_id": 777, "action": "close"}),
    ("/track/widget/inst-1/category/12/media/777/shop", {"pics": 8}, {"widget": "category", "media_id": 777, "action": "shop", "redirect_host": None}),
    ("/track/widget/inst-1/stream/34/media/777/shop", {"pics": 8}, {"widget": "stream", "action": "shop"}),
    ("/track/widget/inst-1/best/media/777/shop", {"pics": 8}, {"widget": "best", "action": "shop"}),
]  # fmt: skip


@pytest.mark.parametrize("fmt", [".json", ".gif", ""])
@pytest.mark.parametrize(("path", "params", "stored"), ROUTES, ids=[route[0][21:] for route in ROUTES])
def test_each_widget_route_in_each_format(server, client, token, fmt, path, params, stored):
    answer = get(
        client, path + fmt, token, analytics_id="visitor-9", ab_testing=3, **{"segments[]": "country:US"}, **params
    )
    assert answer.status_int == 200
    if fmt == ".gif":
        assert (answer.content_type, answer.body) == ("image/gif", prisme_lite.GIF)
    else:
        body = answer.json
        assert answer.content_type == "application/json" and set(body) == ENVELOPE_KEYS
        assert body["metadata"] == {"code": 200, "message": "OK", "version": "v1.0"}
        assert body["data"]["analytics_id"] == "visitor-9"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{4}", body["data"]["timestamp"])
    [row] = widget_rows(server)
    assert {key: row[key] for key in stored} == stored
    assert (row["instance_id"], row["analytics_id"], row["ab_testing"]) == ("inst-1", "visitor-9", 3)
    assert json.loads(row["segments"]) == {"country": "US"}
    assert row["token_id"] == token[0]


@pytest.mark.parametrize("fmt", [".json", ".gif", ""])
def test_checkout_in_each_format_stores_exact_amounts(server, client, token, fmt):
    answer = client.get(
        f"/track/transaction/T-1001/checkout{fmt}?auth_token={token[1]}&analytics_id=visitor-9"
        "&products[]=product-123:120.50&products[]=sock:0.1&products[]=gift:19.9999&currency_code=eur"
        "&referrer=https%3A%2F%2Fshop.example.com%2F%2Fthanks%3Forder%3D1&segment=country:DE",
        headers={"User-Agent": CHROME},
    )
    assert answer.status_int == 200
    assert answer.content_type == ("image/gif" if fmt == ".gif" else "application/json")
    [checkout] = server.rows("SELECT * FROM checkouts")
    assert checkout == {
        "transaction_id": "T-1001", "ts": checkout["ts"], "analytics_id": "visitor-9", "currency": "EUR",
        "total_e4": 1_205_000 + 1_000 + 199_999, "referrer": "shop.example.com/thanks", "segments": '{"country":"DE"}',
        "token_id": token[0],
    }  # fmt: skip
    products = server.rows("SELECT line, product_id, amount_e4 FROM checkout_products ORDER BY line")
    assert products == [
        {"line": 1, "product_id": "product-123", "amount_e4": 1_205_000},
        {"line": 2, "product_id": "sock", "amount_e4": 1_000},
        {"line": 3, "product_id": "gift", "amount_e4": 199_999},
    ]


def test_checkout_defaults_to_usd_and_a_repeat_is_409_counted_once(server, client, token):
    url = f"/track/transaction/T-7/checkout.json?auth_token={token[1]}&analytics_id=a&products[]=p:10"
    client.get(url, headers={"User-Agent": CHROME}, status=200)
    again = client.get(url.replace("p:10", "p:99"), headers={"User-Agent": CHROME}, status=409)
    assert again.json["metadata"] == {"code": 409, "message": "Conflict", "version": "v1.0"}
    assert server.rows("SELECT currency, total_e4 FROM checkouts") == [{"currency": "USD", "total_e4": 100_000}]
    assert len(server.rows("SELECT * FROM checkout_products")) == 1


def test_a_shop_click_redirects_to_a_registered_origin(server, client, token):
    for fmt in (".json", ".gif", ""):
        answer = get(client, f"/track/widget/i/best/media/5/shop{fmt}", token, analytics_id="a", pics=1,
                     redirect_url="https://blog.example.com/products/42?ref=gallery")  # fmt: skip
        assert answer.status_int == 302
        assert answer.headers["Location"] == "https://blog.example.com/products/42?ref=gallery"
    assert [row["redirect_host"] for row in widget_rows(server)] == ["blog.example.com"] * 3


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/phish",
        "javascript:alert(1)",
        "//evil.example/x",
        "/relative/path",
        "https%3A%2F%2Fevil.example",
        "https://blog.example.com.evil.example/",
        "https://blog.example.com\\@evil.example/",
        "data:text/html,<script>alert(1)</script>",
        "https://shop.example/",  # the apex of the *.shop.example wildcard
        # A browser reads a backslash as a slash in an http(s) URL (WHATWG): these go to evil.example.
        "https://evil.example\\@blog.example.com/",
        "https://evil.example\\.a.shop.example/",
        "https:\\\\evil.example\\blog.example.com",
        "https://blog.example.com@evil.example/",  # userinfo: the host is evil.example
        "https://blog.example.com:x@a.shop.example/",  # userinfo at an allowed host: refused too (phishing)
        "https://evil%2Eexample%2F.a.shop.example/",  # a browser decodes the host
        "https://a.shop.example%E3%80%82evil.example/",  # a browser maps an ideographic full stop to a dot
        "https://a.shop.。evil.example/",
    ],
)
def test_open_redirect_attempts_get_400_and_no_redirect(server, client, token, target):
    answer = get(client, "/track/widget/i/best/media/5/shop.json", token, status=400, analytics_id="a", pics=1,
                 redirect_url=target)  # fmt: skip
    assert "Location" not in answer.headers
    assert answer.json[0]["error"] == "Invalid params" and "redirect_url" in answer.json[0]["detail"]
    assert widget_rows(server) == []


def test_a_redirect_sends_the_url_as_a_browser_reads_it(server, client, token):
    """What was checked is what the browser gets: a backslash in the path is a slash (WHATWG), kept in the query."""
    answer = get(client, "/track/widget/i/best/media/5/shop", token, status=302, analytics_id="a", pics=1,
                 redirect_url="https://blog.example.com/products\\42?q=a\\b")  # fmt: skip
    assert answer.headers["Location"] == "https://blog.example.com/products/42?q=a\\b"
    assert [row["redirect_host"] for row in widget_rows(server)] == ["blog.example.com"]


def test_redirect_hosts_replace_the_origins_when_set(make_server):
    server = make_server(redirect_hosts=["store.example.net"])
    with sqlite3.connect(server.config["db"]) as conn:
        token = prisme_lite.create_access_token(conn, ["track_public"], "shop")
    ok = get(
        server.client,
        "/track/widget/i/best/media/5/shop",
        token,
        analytics_id="a",
        pics=1,
        redirect_url="https://store.example.net/x",
    )
    assert ok.status_int == 302
    refused = get(
        server.client,
        "/track/widget/i/best/media/5/shop",
        token,
        status=400,
        analytics_id="a",
        pics=1,
        redirect_url="http://localhost/x",
    )
    assert "not allowed" in refused.json[0]["detail"]


WIDGET = "/track/widget/inst/category/12/render.json"
CHECKOUT = "/track/transaction/T-9/checkout.json"
INVALID = [
    ("/track/widget/inst/category/twelve/render.json", {"analytics_id": "a", "pics": 1}, "category_id must be an integer"),
    ("/track/widget/inst/stream/-4/render.json", {"analytics_id": "a", "pics": 1}, "stream_id must be an integer"),
    ("/track/widget/inst/best/media/1.5/view.json", {"analytics_id": "a", "pics": 1}, "media_id must be an integer"),
    ("/track/widget/in st/best/render.json", {"analytics_id": "a", "pics": 1}, "instance_id"),
    (WIDGET, {"pics": 1}, "analytics_id is required"),
    (WIDGET, {"analytics_id": "a" * 65, "pics": 1}, "analytics_id is required"),
    (WIDGET, {"analytics_id": "a"}, "pics is required"),
    (WIDGET, {"analytics_id": "a", "pics": -1}, "pics must be an integer"),
    (WIDGET, {"analytics_id": "a", "pics": "many"}, "pics must be an integer"),
    (WIDGET, {"analytics_id": "a", "pics": 1, "ab_testing": "B"}, "ab_testing must be an integer"),
    (WIDGET, {"analytics_id": "a", "pics": 1, "segments[]": "country"}, "must be key:value"),
    (WIDGET, {"analytics_id": "a", "pics": 1, "segments[]": ":US"}, "must be key:value"),
    (CHECKOUT, {"analytics_id": "a", "products[]": "p"}, "must be id:amount"),
    (CHECKOUT, {"analytics_id": "a", "products[]": "p:12,50"}, "must be id:amount"),
    (CHECKOUT, {"analytics_id": "a", "products[]": "p:-3"}, "must be id:amount"),
    (CHECKOUT, {"analytics_id": "a", "products[]": "p:1.00001"}, "must be id:amount"),
    (CHECKOUT, {"analytics_id": "a", "products[]": ":5"}, "must be id:amount"),
    (CHECKOUT, {"analytics_id": "a"}, "products[] is required"),
    (CHECKOUT, {"products[]": "p:1"}, "analytics_id is required"),
    (CHECKOUT, {"analytics_id": "a", "products[]": "p:1", "currency_code": "EURO"}, "not an ISO 4217"),
    (CHECKOUT, {"analytics_id": "a", "products[]": "p:1", "currency_code": "XXX"}, "not an ISO 4217"),
    (CHECKOUT, {"analytics_id": "a", "products[]": "p:1", "referrer": "not a url"}, "referrer"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "params", "words"), INVALID, ids=[words + str(n) for n, (_p, _q, words) in enumerate(INVALID)]
)
def test_invalid_parameters_are_400_naming_the_parameter_and_nothing_is_stored(
    server, client, token, path, params, words
):
    answer = get(client, path, token, status=400, **params)
    [error] = answer.json
    assert error["error"] == "Invalid params" and words in error["detail"]
    assert widget_rows(server) == [] and server.rows("SELECT * FROM checkouts") == []


def test_a_duplicate_segment_key_is_400(server, client, token):
    answer = client.get(f"{WIDGET}?auth_token={token[1]}&analytics_id=a&pics=1&segments[]=country:US&segments[]=country:FR",
                        headers={"User-Agent": CHROME}, status=400)  # fmt: skip
    assert "segment key 'country' has more than one value" in answer.json[0]["detail"]
    assert widget_rows(server) == []


def test_a_gif_request_with_bad_params_answers_the_gif_with_400(server, client, token):
    answer = get(client, "/track/widget/inst/category/x/render.gif", token, status=400, analytics_id="a", pics=1)
    assert (answer.content_type, answer.body) == ("image/gif", prisme_lite.GIF)
    assert "category_id must be an integer" in answer.headers["X-Prisme-Error"]


@pytest.mark.parametrize(
    "path",
    ["/track/widget/i/category/1/explode.json", "/track/widget/i/category/1/media/2/view_all", "/track/widget/i/best/media/2/upload_click",
     "/track/widget/i/stream/not_found/move", "/track/widget/i/stream/not_found/media/2/render", "/track/widget/i/category/1/render.xml",
     "/track/transaction/T/refund.json", "/track/elsewhere"],
)  # fmt: skip
def test_unknown_routes_and_actions_are_404(server, client, token, path):
    answer = get(client, path, token, status=404, analytics_id="a", pics=1)
    assert answer.json["metadata"] == {"code": 404, "message": "Not Found", "version": "v1.0"}
    assert widget_rows(server) == []


def test_auth_token_missing_unknown_or_of_another_scope_is_403(server, client, token):
    with sqlite3.connect(server.config["db"]) as conn:
        other = prisme_lite.create_access_token(conn, ["capture_publish"], "backend")
    for given in (None, ("x", "pl_unknown"), other):
        answer = get(client, WIDGET, given, status=403, analytics_id="a", pics=1)
        assert answer.json["metadata"]["code"] == 403
    assert widget_rows(server) == []


def test_a_revoked_public_token_is_refused_at_once_though_the_server_knew_it(server, client, token):
    get(client, WIDGET, token, analytics_id="a", pics=1)  # known valid now: its next beacons read no database
    get(client, WIDGET, token, analytics_id="a", pics=1)
    assert cli("tokens", "revoke", token[0], db=server.config["db"]).returncode == 0
    assert get(client, WIDGET, token, status=403, analytics_id="a", pics=1).json["metadata"]["code"] == 403
    assert len(widget_rows(server)) == 2


def test_a_public_token_revoked_by_hand_in_sql_is_refused_once_the_server_looks_it_up_again(
    server, client, token, monkeypatch
):
    monkeypatch.setattr(prisme_lite, "KNOWN_TOKEN_RECHECK", 0.0)  # looked up again at every request
    get(client, WIDGET, token, analytics_id="a", pics=1)
    with sqlite3.connect(server.config["db"]) as conn:
        conn.execute("UPDATE access_tokens SET revoked_at = 1")
    get(client, WIDGET, token, status=403, analytics_id="a", pics=1)
    assert len(widget_rows(server)) == 1


def test_bots_are_answered_and_not_stored(server, client, token):
    answer = get(client, WIDGET, token, ua=GOOGLEBOT, analytics_id="a", pics=1)
    assert answer.headers["X-Prisme-Dropped"] == "bot"
    assert answer.json["data"]["analytics_id"] == "a"
    gif = get(client, WIDGET.replace(".json", ".gif"), token, ua=GOOGLEBOT, analytics_id="a", pics=1)
    assert gif.body == prisme_lite.GIF
    assert widget_rows(server) == []


@pytest.mark.parametrize("ua", NOT_BROWSERS)
def test_clients_that_are_no_browser_are_answered_and_not_stored(server, client, token, ua):
    answer = get(client, WIDGET, token, ua=ua, analytics_id="a", pics=1)
    assert (answer.headers["X-Prisme-Dropped"], answer.json["data"]["analytics_id"]) == ("bot", "a")
    gif = get(client, WIDGET.replace(".json", ".gif"), token, ua=ua, analytics_id="a", pics=1)
    assert (gif.headers["X-Prisme-Dropped"], gif.body) == ("bot", prisme_lite.GIF)
    checkout = get(client, CHECKOUT, token, ua=ua, analytics_id="a", **{"products[]": "p:1"})
    assert (checkout.status_int, checkout.headers["X-Prisme-Dropped"]) == (200, "bot")
    assert widget_rows(server) == []
    assert server.rows("SELECT * FROM checkouts") == []


def test_the_rate_limit_is_shared_with_web_events(server, client, token):
    for _ in range(30):
        client.get(
            "/api/v1/noscript/events/pageviews", headers={"User-Agent": CHROME, "Referer": "https://blog.example.com/"}
        )
    for _ in range(30):
        get(client, WIDGET, token, analytics_id="a", pics=1)
    refused = get(client, WIDGET, token, status=429, analytics_id="a", pics=1)
    assert refused.json["metadata"]["code"] == 429 and int(refused.headers["Retry-After"]) >= 1


def test_503_when_the_database_cannot_take_the_checkout(server, client, token):
    blocker = sqlite3.connect(server.config["db"], isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    server.ctx.writer.conn.execute("PRAGMA busy_timeout = 50")
    try:
        answer = get(client, CHECKOUT, token, status=503, analytics_id="a", **{"products[]": "p:1"})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert answer.json["metadata"] == {"code": 503, "message": "Service Unavailable", "version": "v1.0"}
    assert "database is locked" in answer.json["error"]
    get(client, CHECKOUT, token, analytics_id="a", **{"products[]": "p:1"})  # recovered by itself
    assert len(server.rows("SELECT * FROM checkouts")) == 1
