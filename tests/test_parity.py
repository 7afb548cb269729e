"""Parity with Prisme's own tracker and end-to-end tests (SPEC §3.3a, issue 17): pages that use Prisme's script or
its API count the same here. Each case names what Prisme does (prismelabs/analytics, pkg/handlers, tracker/)."""


def test_the_old_embed_m_js_is_an_alias_of_wa_js(server, client):
    """Prisme serves static/m.js as wa.js (pkg/embedded/static.go), so pages with the old embed keep counting."""
    tracker = client.get("/static/wa.js")
    old = client.get("/static/m.js")
    assert (old.status_int, old.content_type, old.body) == (200, "application/javascript", tracker.body)
    assert old.headers["ETag"] == tracker.headers["ETag"]
    assert old.headers["Cache-Control"] == "public, max-age=3600"
