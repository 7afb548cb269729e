"""Fuzzing every route family (SPEC §2, §8): whatever arrives, the answer is a 2xx/3xx/4xx, never a 5xx or a
traceback, a JSON answer stays JSON, and the database still passes `prisme-lite check` afterwards."""

import io
import json
import sqlite3
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prisme_lite

pytestmark = pytest.mark.reliability

# Header values as a WSGI server hands them over: Latin-1 text, no line breaks (the server refuses those earlier).
LATIN1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300)
URLISH = st.one_of(
    LATIN1,
    st.builds(
        lambda host, path: f"https://{host}/{path}",
        st.sampled_from(["localhost", "127.0.0.1", "evil.example", ""]),
        LATIN1,
    ),
)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=50)),
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=30,
)
BODIES = st.one_of(
    st.binary(max_size=2000),
    JSONISH.map(lambda value: json.dumps(value).encode()),
    st.sampled_from(
        [b"PING", b"[" * 3000, b'{"a": 1, "a": 2}', b'{"x": NaN}', b'"\\ud800"', b"\x00" * 10, b"1" * 5000]
    ),
)
ROUTES = [
    ("POST", "/api/v1/events/pageviews"), ("POST", "/api/v1/events/custom/{name}"), ("POST", "/api/v1/events/file-downloads"),
    ("POST", "/api/v1/events/outbound-links"), ("GET", "/api/v1/noscript/events/pageviews"),
    ("GET", "/api/v1/noscript/events/custom/{name}"), ("GET", "/api/v1/noscript/events/outbound-links"),
    ("GET", "/api/v1/noscript/events/file-downloads"), ("POST", "/api/v1/register"), ("POST", "/api/v1/configure"),
    ("GET", "/api/v1/token"), ("POST", "/api/v1/token"), ("POST", "/api/v1/{name}/{name}/increment"),
    ("GET", "/api/v1/{name}/{name}/value"), ("POST", "/events"), ("GET", "/track/{name}"),
    ("GET", "/track/widget/{name}/category/{name}/render.json"), ("GET", "/track/transaction/{name}/checkout.gif"),
    ("GET", "/api/v1/stats/{name}"), ("GET", "/api/v1/export"), ("GET", "/dashboard"), ("POST", "/dashboard/login"),
    ("GET", "/api/v1/healthcheck"), ("OPTIONS", "/api/v1/{name}"), ("GET", "/static/{name}"), ("PUT", "/{name}"),
]  # fmt: skip


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "prisme.db"
    config = prisme_lite.load_config(
        {"db": str(path), "rate_limit": "0", "events_rate_limit": "0", "access_log": "false"}, environ={}
    )
    app = prisme_lite.make_app(config)
    with sqlite3.connect(path) as conn:
        tokens = {scope: prisme_lite.create_access_token(conn, [scope], "fuzz")[1] for scope in prisme_lite.SCOPES}
    yield app, tokens
    app.ctx.close()
    assert prisme_lite.check(str(path)) == 0, "the fuzzed database breaks an invariant"


def call(app, method, path, query, headers, body):
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "localhost",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "203.0.113.5", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }  # fmt: skip
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE",) else "HTTP_" + key] = value
    answer = {}

    def start_response(status, header_list, exc_info=None):
        answer.update(status=int(status.split()[0]), headers=dict(header_list))

    data = b"".join(prisme_lite.RequestLog(app, access_log=False)(environ, start_response))
    return answer["status"], answer["headers"], data


HEADER_NAMES = ["Origin", "Referer", "X-Prisme-Referrer", "X-Prisme-Document-Referrer", "X-Prisme-Visitor-Id",
                "X-Prisme-Status", "User-Agent", "Content-Type", "Authorization", "Ping-From", "Ping-To",
                "Sec-Purpose", "X-Forwarded-For", "Accept-Encoding", "If-None-Match", "Cookie"]  # fmt: skip


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(ROUTES),
    name=st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF, blacklist_characters="/?#"), min_size=1, max_size=40),
    query=st.one_of(LATIN1, st.lists(st.tuples(st.sampled_from(
        ["referrer", "url", "prop-a", "analytics_id", "pics", "segments[]", "products[]", "currency_code", "from", "to",
         "limit", "format", "kind", "auth_token", "access_token", "redirect_url", "clientId", "clientSecret", "site"]),
        LATIN1), max_size=8).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), st.one_of(URLISH, LATIN1), max_size=8),
    body=BODIES,
    use_token=st.sampled_from([None, *prisme_lite.SCOPES]),
)  # fmt: skip
def test_no_input_gets_a_server_error(target, route, name, query, headers, body, use_token):
    app, tokens = target
    method, template = route
    path = template.format(name=name)
    if use_token:
        headers = {**headers, "Authorization": f"Bearer {tokens[use_token]}"}
        query = query.replace("TOKEN", tokens[use_token])
    status, response_headers, data = call(app, method, path, query, headers, body)
    assert status < 500, (status, method, path, query, headers, body[:200], data[:300])
    assert b"Traceback" not in data
    if response_headers.get("Content-Type", "").startswith("application/json") and data:
        json.loads(data)
    assert "X-Request-Id" in response_headers


@settings(max_examples=300, deadline=None)
@given(text=st.text(string.printable + "é€\u2028", max_size=60))
def test_time_expressions_are_parsed_or_refused_never_crash(text):
    try:
        prisme_lite.parse_time(text, 1_795_000_000_000, "from")
    except prisme_lite.Rejected as refusal:
        assert refusal.status == 400 and refusal.message.startswith("from")


FUZZ_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, blacklist_categories=["Cs"]), max_size=80)
PATHS = st.lists(st.sampled_from(["a", "..", ".", "", "%2e", "x y", "é", "<b>", "&", "?"]) | FUZZ_TEXT, max_size=6).map(
    lambda parts: "/" + "/".join(parts)
)


@st.composite
def plausible_requests(draw):
    """A request right in every part but one or two: the code behind the first checks gets exercised too."""
    family = draw(
        st.sampled_from(["pageview", "custom", "link", "noscript", "server", "widget", "checkout", "counter", "stats"])
    )
    page = "http://localhost" + draw(PATHS) + draw(st.sampled_from(["", "?utm_source=", "?ref="])) + draw(FUZZ_TEXT)
    browser = {
        "Origin": "http://localhost",
        "X-Prisme-Referrer": page.encode("utf-8").decode("latin-1"),
        "User-Agent": draw(
            st.sampled_from(
                [
                    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
                    "",
                    "curl/8",
                ]
            )
        ),
    }
    if family == "pageview":
        extra = draw(
            st.dictionaries(
                st.sampled_from(["X-Prisme-Document-Referrer", "X-Prisme-Visitor-Id", "X-Prisme-Status"]),
                LATIN1,
                max_size=3,
            )
        )
        return "POST", "/api/v1/events/pageviews", "", {**browser, **extra}, b"", None
    if family == "custom":
        return (
            "POST",
            "/api/v1/events/custom/"
            + draw(
                st.text(
                    st.characters(min_codepoint=0x21, max_codepoint=0xFF, blacklist_characters="/?#"),
                    min_size=1,
                    max_size=20,
                )
            ),
            "",
            {**browser, "Content-Type": "application/json"},
            json.dumps(draw(JSONISH)).encode(),
            None,
        )
    if family == "link":
        route = draw(st.sampled_from(["file-downloads", "outbound-links"]))
        return "POST", f"/api/v1/events/{route}", "", browser, draw(URLISH).encode("latin-1"), None
    if family == "noscript":
        route = draw(st.sampled_from(["pageviews", "custom/x", "outbound-links", "file-downloads"]))
        pairs = [
            ("referrer", page),
            *draw(
                st.lists(
                    st.tuples(st.sampled_from(["prop-a", "prop-é", "url", "status", "visitor-id"]), FUZZ_TEXT),
                    max_size=4,
                )
            ),
        ]
        from urllib.parse import urlencode

        return (
            "GET",
            f"/api/v1/noscript/events/{route}",
            urlencode(pairs),
            {"Referer": "http://localhost/x", "User-Agent": browser["User-Agent"]},
            b"",
            None,
        )
    if family == "server":
        events = draw(st.lists(st.fixed_dictionaries(
            {"label": st.sampled_from(["View", "Like", "Unlike", "SignUp"]) | FUZZ_TEXT, "customer": st.fixed_dictionaries({"id": FUZZ_TEXT}) | JSONISH},
            optional={"content_item": st.fixed_dictionaries({"id": FUZZ_TEXT}, optional={"locale": FUZZ_TEXT}) | JSONISH,
                      "timestamp": st.integers() | st.floats() | FUZZ_TEXT, "sr": FUZZ_TEXT, "rl": URLISH, "utm_source": JSONISH}),
            min_size=1, max_size=5))  # fmt: skip
        return (
            "POST",
            "/events",
            "",
            {"Content-Type": "application/json"},
            json.dumps(events).encode(),
            "capture_publish",
        )
    if family in ("widget", "checkout"):
        from urllib.parse import urlencode

        pairs = [("analytics_id", draw(FUZZ_TEXT)), ("pics", draw(st.sampled_from(["1", "0", "-1", "x", ""])))]
        pairs += draw(
            st.lists(
                st.tuples(
                    st.sampled_from(
                        [
                            "segments[]",
                            "segment",
                            "ab_testing",
                            "products[]",
                            "currency_code",
                            "referrer",
                            "redirect_url",
                        ]
                    ),
                    FUZZ_TEXT,
                ),
                max_size=5,
            )
        )
        path = (
            "/track/widget/"
            + draw(st.sampled_from(["home", "h%20", "x" * 70]))
            + draw(st.sampled_from(["/category/1", "/stream/2", "/best", "/stream/not_found"]))
            + draw(st.sampled_from(["", "/media/3", "/media/x"]))
            + "/"
            + draw(st.sampled_from(["render", "view", "shop", "move", "click"]))
            + draw(st.sampled_from(["", ".json", ".gif"]))
        )
        if family == "checkout":
            path = (
                "/track/transaction/"
                + draw(st.sampled_from(["T1", "T2", "é"]))
                + "/checkout"
                + draw(st.sampled_from(["", ".json", ".gif"]))
            )
        return (
            "GET",
            path,
            urlencode(pairs) + "&auth_token=TOKEN",
            {"User-Agent": browser["User-Agent"]},
            b"",
            "track_public",
        )
    if family == "counter":
        body = draw(st.fixed_dictionaries({}, optional={"token": FUZZ_TEXT | JSONISH, "clientId": FUZZ_TEXT, "clientSecret": FUZZ_TEXT,
                                                        "validPageIds": JSONISH, "validActionIds": JSONISH}))  # fmt: skip
        route = draw(
            st.sampled_from(["/api/v1/likes/p/increment", "/api/v1/configure", "/api/v1/token", "/api/v1/register"])
        )
        return (
            "POST",
            route,
            "",
            {"Origin": "http://localhost", "Content-Type": "application/json"},
            json.dumps(body).encode(),
            "admin",
        )
    from urllib.parse import urlencode

    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["from", "to", "limit", "site", "path", "country", "label", "instance", "client"]),
                FUZZ_TEXT,
            ),
            max_size=5,
        )
    )
    metric = draw(st.sampled_from(sorted(prisme_lite.METRICS)))
    return "GET", f"/api/v1/stats/{metric}", urlencode(pairs), {}, b"", "stats_read"


@settings(
    max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(request=plausible_requests())
def test_plausible_requests_never_get_a_server_error(target, request):
    app, tokens = target
    method, path, query, headers, body, scope = request
    if scope:
        headers = {**headers, "Authorization": f"Bearer {tokens[scope]}"}
        query = query.replace("TOKEN", tokens[scope])
    path = path.encode("utf-8").decode("latin-1")  # as a WSGI server hands over a UTF-8 path
    status, response_headers, data = call(app, method, path, query, headers, body)
    assert status < 500, (status, method, path, query, headers, body[:300], data[:300])
    assert b"Traceback" not in data
