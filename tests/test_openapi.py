"""The OpenAPI document at /api/v1/openapi.json describes every route, and schemathesis holds the server to it
(SPEC §2, §8): for every operation, requests generated from the document, valid and invalid, get only documented
statuses, content types and bodies, never a 5xx; afterwards the database passes `prisme-lite check`."""

import re
import sqlite3

import pytest
import schemathesis
from conftest import CHROME
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import ComponentInfo
from schemathesis.specs.openapi.checks import positive_data_acceptance

import prisme_lite

pytestmark = pytest.mark.reliability

DOCUMENT = prisme_lite.openapi_document()
OPERATIONS = [
    pytest.param(path, method, mode, id=f"{method.upper()} {path} {mode.value}")
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
    # Invalid requests need something to make invalid: a parameter or a body (a preflight takes any path).
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE
    or (method != "options" and (operation.get("parameters") or operation.get("requestBody")))
]
POSITIVE = ComponentInfo(GenerationMode.POSITIVE)
EXAMPLES = 25  # per operation and mode: about 2,000 requests in all, bounded for CI
STORED = (
    "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM server_events) + (SELECT count(*) FROM widget_events)"
)


class Target:
    """An application on a fresh database, the schema schemathesis read from it, and credentials for its cases."""

    def __init__(self, path):
        self.db = str(path)
        config = prisme_lite.load_config(
            {"db": self.db, "rate_limit": "0", "events_rate_limit": "0", "access_log": "false"}, environ={}
        )
        self.app = prisme_lite.make_app(config)
        with sqlite3.connect(self.db) as conn:
            self.public_token = prisme_lite.create_access_token(conn, ["track_public"], "widgets")[1]
        self.admin = self.app.ctx.admin_token()
        self.schema = schemathesis.openapi.from_wsgi(
            "/api/v1/openapi.json", prisme_lite.RequestLog(self.app, access_log=False)
        )
        self.calls = 0

    def send(self, case):
        """Real credentials where the document asks for them, so that valid requests reach the storage code."""
        if case.query and "auth_token" in case.query:
            case.query["auth_token"] = self.public_token
        headers = {"User-Agent": CHROME}  # a browser: not dropped as a bot
        # The admin's token, unless the case negates its headers (leaves Authorization out, say): it then expects a
        # refusal, and a token added here would make the invalid request an accepted one.
        if not (case.meta and case.meta.components.get(ParameterLocation.HEADER, POSITIVE).mode.is_negative):
            headers["Authorization"] = f"Bearer {self.admin}"
        if case.path.startswith("/api/v1/events/") or case.path.startswith("/api/v1/noscript/"):
            headers["Referer"] = "http://localhost/schemathesis"  # a registered page, unless the case says otherwise
        headers.update(case.headers or {})
        self.calls += 1
        # Whether schema-valid data is accepted depends on state the document cannot carry (registered origins,
        # configured counters); every other check applies: no 5xx, documented statuses, types and bodies.
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    built = Target(tmp_path_factory.mktemp("openapi") / "prisme.db")
    yield built
    built.app.ctx.close()
    assert prisme_lite.check(built.db) == 0, "the generated requests broke an invariant of the database"


def test_the_document_is_served_and_describes_every_route(server, client):
    answer = client.get("/api/v1/openapi.json")
    assert answer.content_type == "application/json"
    assert answer.json == DOCUMENT and DOCUMENT["openapi"] == "3.1.0"
    documented = {(path, method.upper()) for path, operations in DOCUMENT["paths"].items() for method in operations}
    # Every documented operation reaches the route meant for it, with example values in its path...
    for path, method in documented:
        example = path
        for name in ("instance_id", "category_id", "stream_id", "media_id"):
            example = example.replace("{" + name + "}", "7")
        example = example.replace("{action}", "render.gif" if "/widget/" in path else "checkout")
        for name in ("name", "metric", "action_id", "page_id", "transaction_id"):
            example = example.replace("{" + name + "}", {"metric": "pageviews", "name": "wa.js"}.get(name, "x"))
        assert routed(server.app, method, example) is not None, (method, path)
    # ...and every route is documented: Bottle's templates in OpenAPI's spelling, the catch-alls by their members.
    for path, methods in ((route.path, route.methods) for route in prisme_lite.ROUTES):
        for method in [methods] if isinstance(methods, str) else methods:
            if path.startswith("/track/") or "<path:" in path:
                assert any(p.startswith(path.split("<")[0]) and m == method for p, m in documented), path
            elif method == "ANY":
                assert (path, "GET") in documented and (path, "HEAD") in documented
            else:
                assert (path.replace("<", "{").replace(">", "}"), method) in documented, (method, path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/track/widget/%0A/best/render.json"),  # no route takes a line break: 404, not a 500
        ("GET", "/track/transaction/%0A/checkout"),
        ("POST", "/api/v1/a/b/c/increment"),  # only the CORS preflight takes any /api/v1/ path: 404, not 405
        ("GET", "/api/v1/no/such/route"),
    ],
)
def test_a_path_no_route_takes_is_a_json_404(client, method, path):
    answer = client.request(path, method=method, expect_errors=True)
    assert (answer.status_int, answer.content_type, "Allow" in answer.headers) == (404, "application/json", False)
    assert answer.json["error"].startswith(f"no route for {method}")


def routed(app, method, path):
    """The handler Bottle gives a method and path (None for none): the document must not name a path it lacks."""
    try:
        route, _args = app.router.match({"REQUEST_METHOD": method, "PATH_INFO": path})
    except prisme_lite.bottle.HTTPError:
        return None
    return route.callback


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS)
def test_generated_requests_get_documented_answers(target, path, method, mode):
    operation = target.schema[path][method.upper()]

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )  # fmt: skip
    @given(case=operation.as_strategy(mode))
    def run(case):
        target.send(case)

    run()


def test_the_generated_requests_reached_the_database(target):
    if target.calls < len(OPERATIONS) * 5:
        pytest.skip("measures what the generated requests above stored; run the whole module")
    with sqlite3.connect(target.db) as conn:
        assert conn.execute(STORED).fetchone()[0] > 0


@pytest.fixture
def widgets(server):
    """A fresh server's client, with the credentials the widget routes and the admin routes take."""
    with sqlite3.connect(server.config["db"]) as conn:
        public_token = prisme_lite.create_access_token(conn, ["track_public"], "widgets")[1]
    return server, public_token, server.ctx.admin_token()


def documented_parameter(path, name):
    operation = DOCUMENT["paths"][path]["get"]
    [found] = [p for p in operation["parameters"] if p["name"] == name and p["in"] == "query"]
    return found


@pytest.mark.parametrize(
    ("path", "url", "name"),
    [
        # The seed's own examples send `ab_testing=` when there is no A/B test.
        ("/track/widget/{instance_id}/stream/{stream_id}/{action}", "/track/widget/home/stream/7/render.json?pics=1&ab_testing=", "ab_testing"),
        ("/track/widget/{instance_id}/best/media/{media_id}/{action}", "/track/widget/home/best/media/9/view?pics=1&ab_testing=", "ab_testing"),
        ("/track/widget/{instance_id}/stream/not_found/{action}", "/track/widget/home/stream/not_found/render?ab_testing=", "ab_testing"),
        ("/track/transaction/{transaction_id}/{action}", "/track/transaction/T-1/checkout?products[]=p:1:2&currency_code=", "currency_code"),
        ("/api/v1/stats/{metric}", "/api/v1/stats/top-pages?limit=", "limit"),
        ("/api/v1/export", "/api/v1/export?format=", "format"),
        ("/api/v1/export", "/api/v1/export?kind=", "kind"),
    ],
)  # fmt: skip
def test_an_optional_parameter_sent_empty_is_read_as_absent_and_documented_so(widgets, path, url, name):
    """`name=` is read as no value (the default): the document says so, so that no generated request disagrees."""
    server, public_token, admin = widgets
    if url.startswith("/track/"):
        url += f"&auth_token={public_token}&analytics_id=visitor-1"
    answer = server.client.get(url, headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_int == 200
    assert documented_parameter(path, name).get("allowEmptyValue") is True


def test_a_lower_case_currency_code_is_read_and_documented(widgets):
    server, public_token, _admin = widgets
    url = f"/track/transaction/T-eur/checkout?products[]=p:1:2&currency_code=eur&auth_token={public_token}"
    assert server.client.get(url + "&analytics_id=visitor-1", headers={"User-Agent": CHROME}).status_int == 200
    assert server.rows("SELECT transaction_id, currency FROM checkouts") == [
        {"transaction_id": "T-eur", "currency": "EUR"}
    ]
    pattern = documented_parameter("/track/transaction/{transaction_id}/{action}", "currency_code")["schema"]["pattern"]
    assert re.fullmatch(pattern, "eur") and re.fullmatch(pattern, "EUR") and not re.fullmatch(pattern, "EURO")


def test_an_ab_testing_group_is_an_integer_from_0(widgets):
    server, public_token, _admin = widgets
    base = f"/track/widget/home/best/render?pics=1&auth_token={public_token}&analytics_id=visitor-1"
    browser = {"User-Agent": CHROME}
    assert server.client.get(base + "&ab_testing=-1", headers=browser, expect_errors=True).status_int == 400
    assert server.client.get(base + "&ab_testing=0", headers=browser).status_int == 200
    assert server.rows("SELECT ab_testing FROM widget_events") == [{"ab_testing": 0}]
    assert documented_parameter("/track/widget/{instance_id}/best/{action}", "ab_testing")["schema"]["minimum"] == 0


def test_every_parameter_says_its_type():
    """A path, query or header value is text unless its schema says otherwise: without a type, schemathesis sends
    numbers and lists as valid values (a list in a path became `['?']`, a query string, and failed the call)."""
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            for described in operation.get("parameters", []):
                assert described["schema"].get("type") in ("string", "integer", "array"), (method, path, described)
