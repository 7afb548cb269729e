"""Parity with Prisme's own tracker and end-to-end tests (SPEC §3.3a, issue 17): pages that use Prisme's script or
its API count the same here. Each case names what Prisme does (prismelabs/analytics, pkg/handlers, tracker/)."""

import pytest
from conftest import CHROME


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
