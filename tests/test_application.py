"""The application object: the route table, its precedence, and the families that register into it (issue 19)."""

import random
import sqlite3

import pytest
from conftest import CHROME

import prisme_lite


def test_route_precedence_is_the_routes_own_not_the_order_they_are_listed_in(make_server, monkeypatch):
    """/api/v1/events/custom/increment is a custom event named increment, never the counter increment of the action
    `events` on the page `custom`, whichever order the route table lists them in."""
    reversed_routes = list(reversed(prisme_lite.ROUTES))
    assert reversed_routes.index(_route("/api/v1/<action_id>/<page_id>/increment")) < reversed_routes.index(
        _route("/api/v1/events/custom/<name>")
    )
    shuffled = random.Random(19).sample(prisme_lite.ROUTES, len(prisme_lite.ROUTES))
    for times, listed in enumerate((reversed_routes, shuffled), 1):
        monkeypatch.setattr(prisme_lite, "ROUTES", listed)
        server = make_server()
        headers = {"User-Agent": CHROME, "Referer": "http://localhost/post", "Content-Type": "application/json"}
        server.client.post("/api/v1/events/custom/increment", "{}", headers=headers, status=200)
        assert [(e["kind"], e["name"]) for e in server.events()] == [("custom", "increment")] * times
        server.close()


def _route(path):
    return next(entry for entry in prisme_lite.ROUTES if entry.path == path)


def test_the_reserved_action_ids_are_the_first_segments_of_the_other_api_routes(server, client):
    """An action id may not be what another /api/v1/ route starts with, or its counter's URL would be that route's."""
    firsts = {entry.path.split("/")[3] for entry in prisme_lite.ROUTES if entry.path.startswith("/api/v1/")}
    reserved = {first for first in firsts if "<" not in first}
    assert {"events", "noscript", "stats", "sites", "openapi.json"} <= reserved
    assert prisme_lite.reserved_action_ids() == reserved
    admin = {"Authorization": f"Bearer {server.ctx.admin_token()}"}
    body = {"clientName": "blog", "domainName": "blog.example.com", "emailId": "me@example.com"}
    made = client.post_json("/api/v1/register", body, headers=admin, status=201).json
    for action in sorted(reserved):
        refused = client.post_json(
            "/api/v1/configure", {**made, "validPageIds": ["p"], "validActionIds": [action.upper()]}, status=400
        )
        assert f"{action.upper()!r} is reserved" in refused.json["error"]
    client.post_json("/api/v1/configure", {**made, "validPageIds": ["p"], "validActionIds": ["likes"]}, status=200)


def test_each_family_is_in_every_registry_that_reads_the_families():
    """What a family's section registers is what the server, the stats, the checks and the document use: nothing is
    listed a second time elsewhere."""
    assert [family.name for family in prisme_lite.FAMILIES] == ["web", "server", "counters", "widget"]
    document = prisme_lite.openapi_document()
    for family in prisme_lite.FAMILIES:
        for entry in family.routes:
            assert entry in prisme_lite.ROUTES
            assert set(entry.openapi) <= set(document["paths"]), entry.path
        assert family.exports.items() <= prisme_lite.EXPORTS.items()
        assert set(family.pruned) <= set(prisme_lite.PRUNED_TABLES)
        assert set(family.invariants) <= set(prisme_lite.INVARIANTS)
        assert set(family.filters) <= set(prisme_lite.stats_filters())
        assert family.metrics.items() <= prisme_lite.METRICS.items()
        assert family.schemas.items() <= document["components"]["schemas"].items()
        assert family.security.items() <= document["components"]["securitySchemes"].items()
    # ...and only they: the registries hold nothing no family (or the read side) registered.
    assert len(prisme_lite.METRICS) == sum(len(family.metrics) for family in prisme_lite.FAMILIES)
    assert len(prisme_lite.INVARIANTS) == sum(len(family.invariants) for family in prisme_lite.FAMILIES)


def test_the_writer_folds_each_familys_journal_lines_with_its_applier(server, client):
    """The journal's first field names the family; Context gives the writer each family's applier under it."""
    appliers = server.ctx.writer.appliers
    assert set(appliers) == {family.name for family in prisme_lite.FAMILIES if family.applier}
    assert isinstance(appliers["web"], prisme_lite.WebEventStore)
    client.get("/api/v1/noscript/events/pageviews", headers={"User-Agent": CHROME, "Referer": "http://localhost/a"})
    assert [event["path"] for event in server.events()] == ["/a"]
    with sqlite3.connect(server.config["db"]) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (1,)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/track/widget/w/best/render.gif", "image/gif"),  # a refusal of a .gif beacon is the pixel
        ("/track/widget/w/best/render.json", "application/json"),
        ("/track/widget/w/best/nope.gif", "application/json"),  # no such action: no such route, the envelope
    ],
)
def test_a_tracking_path_picks_its_answer_shape(client, path, content_type):
    answer = client.get(path, headers={"User-Agent": CHROME}, expect_errors=True)
    assert answer.status_int in (403, 404) and answer.content_type == content_type
