"""Request context (SPEC §2, §3.1, §3.3): client IP, origins, page URLs, user agents, visitor ids, country."""

import sqlite3
from urllib.parse import urlsplit

import pytest
from conftest import CHROME, IPHONE

import prisme_lite


def config(**settings):
    flags = {"db": "unused.db", **settings}
    return prisme_lite.load_config(flags, environ={})


@pytest.mark.parametrize(
    ("settings", "header", "expected"),
    [
        ({}, "1.2.3.4", "10.0.0.1"),  # not behind a proxy: the header is anybody's to forge
        ({"trust_proxy": "true"}, "1.2.3.4", "1.2.3.4"),
        ({"trust_proxy": "true"}, "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the client forged the left entry
        ({"trust_proxy": "true", "proxy_hops": "2"}, "6.6.6.6, 1.2.3.4, 172.16.0.2", "1.2.3.4"),
        ({"trust_proxy": "true", "proxy_hops": "3"}, "1.2.3.4, 172.16.0.2", "10.0.0.1"),  # too few entries
        ({"trust_proxy": "true"}, "not-an-ip", "10.0.0.1"),
        ({"trust_proxy": "true"}, "", "10.0.0.1"),
        ({"trust_proxy": "true"}, "2001:db8::1", "2001:db8::1"),
        ({"trust_proxy": "true"}, "1.2.3.4:5678", "1.2.3.4"),
    ],
)
def test_client_ip(settings, header, expected):
    environ = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": header}
    assert prisme_lite.client_ip(environ, config(**settings)) == expected


def test_client_ip_from_a_custom_header_and_from_forwarded():
    cf = config(trust_proxy="true", proxy_header="CF-Connecting-IP")
    assert prisme_lite.client_ip({"REMOTE_ADDR": "10.0.0.1", "HTTP_CF_CONNECTING_IP": "9.9.9.9"}, cf) == "9.9.9.9"
    rfc = config(trust_proxy="true", proxy_header="Forwarded")
    environ = {"REMOTE_ADDR": "10.0.0.1", "HTTP_FORWARDED": 'for=6.6.6.6, for="[2001:db8::7]:4711";proto=https'}
    assert prisme_lite.client_ip(environ, rfc) == "2001:db8::7"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Example.COM", "example.com"),
        ("https://blog.example.com:8443/path", "blog.example.com"),
        ("*.Example.com", "*.example.com"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("example.com.", "example.com"),
    ],
)
def test_origins_are_normalised(given, stored):
    assert prisme_lite.normalise_origin(given) == stored


@pytest.mark.parametrize("bad", ["", "*", "exa mple.com", "*.*.example.com", "a..b", "-x.com", "ex@mple.com"])
def test_bad_origins_are_refused(bad):
    with pytest.raises(ValueError):
        prisme_lite.normalise_origin(bad)


def test_exact_origin_wins_over_a_wildcard(tmp_path):
    db = str(tmp_path / "o.db")
    prisme_lite.open_database(db)
    with sqlite3.connect(db) as conn:
        for origin in ("*.example.com", "*.eu.example.com", "shop.eu.example.com"):
            prisme_lite.add_origin(conn, origin)
    registry = prisme_lite.OriginRegistry([], lambda: sqlite3.connect(db))
    assert registry.site_of("shop.eu.example.com") == "shop.eu.example.com"
    assert registry.site_of("a.eu.example.com") == "*.eu.example.com"
    assert registry.site_of("a.example.com") == "*.example.com"
    assert registry.site_of("example.com") is None
    assert registry.site_of("badexample.com") is None


@pytest.mark.parametrize(
    ("path", "normalised"),
    [
        ("", "/"),
        ("/", "/"),
        ("//a///b", "/a/b"),
        ("/a/./b/../c", "/a/c"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/../../x", "/x"),
        ("/a/b/", "/a/b/"),
        ("/%2e%2e/x", "/%2e%2e/x"),  # encoded dots are a name, not a segment
    ],
)
def test_page_paths_are_normalised(path, normalised):
    assert prisme_lite.normalise_path(path) == normalised


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/blog/post/1",
        "https://a.example:8080/x/y?utm_source=a&b=c#frag",
        "http://h",
        "http://h?x",
        "http://h#f?x",
        "http://h:",
        "http://h:99999/",
        "http://h/a#b#c",
        "http://h/a?b?c#d?e",
        "http://h/é?q=ü#ä",
        "http://a..b/-/",
    ],
)
def test_a_plain_url_is_split_as_urlsplit_splits_it(url):
    """browser_split's shortcut (PLAIN_URL) gives what urlsplit gives, for the URLs it takes."""
    assert prisme_lite.PLAIN_URL.fullmatch(url)
    assert prisme_lite.browser_split.__wrapped__(url) == urlsplit(url)


@pytest.mark.parametrize(
    "url",
    ["HTTP://h/", "http://User@h/", "http://h/a b", " http://h/", "http://h\\@x/", "http://[::1]/", "http://h:1:2/"],
)
def test_other_urls_take_the_long_way(url):
    assert not prisme_lite.PLAIN_URL.fullmatch(url)


def test_page_url_keeps_host_path_and_utm_only():
    page = prisme_lite.parse_page_url(
        "HTTPS://Blog.Example.com:443//x/?utm_campaign=launch&utm_term=t&utm_content=c&q=secret#frag"
    )
    assert page == prisme_lite.Page("blog.example.com", "/x/", (None, None, "launch", "t", "c"))
    long = prisme_lite.parse_page_url("http://a.example/?utm_source=" + "s" * 1000)
    assert len(long.utm[0]) == prisme_lite.MAX_UTM_LENGTH


@pytest.mark.parametrize(
    ("ua", "browser", "os", "device", "bot"),
    [
        (CHROME, "Chrome", "Linux", "desktop", False),
        (IPHONE, "Mobile Safari", "iOS", "mobile", False),
        (
            "Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 Version/16.0 "
            "Mobile/15E148 Safari/604.1",
            "Mobile Safari",
            "iOS",
            "tablet",
            False,
        ),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bingbot", "Other", "bot", True),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36",
            "HeadlessChrome",
            "Linux",
            "bot",
            True,
        ),
        ("", "Other", "Other", "bot", True),  # no User-Agent at all is no browser
        ("curl/8.5.0", "curl", "Other", "bot", True),
        ("Opera/9.80 (Windows NT 6.1; U; en) Presto/2.12.388 Version/12.16", "Opera", "Windows", "desktop", False),
    ],
)
def test_user_agents(ua, browser, os, device, bot):
    assert prisme_lite.parse_user_agent(ua) == prisme_lite.Agent(browser, os, device, bot)


def test_user_agent_parses_are_cached():
    prisme_lite.parse_user_agent.cache_clear()
    for _ in range(3):
        prisme_lite.parse_user_agent(CHROME)
    info = prisme_lite.parse_user_agent.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (2, 1, prisme_lite.UA_CACHE_SIZE)


def test_visitor_id_is_a_keyed_hash_of_site_ip_and_agent():
    salt = b"k" * 32
    one = prisme_lite.make_visitor_id(salt, "blog.example.com", "1.2.3.4", CHROME)
    assert one == prisme_lite.make_visitor_id(salt, "blog.example.com", "1.2.3.4", CHROME)
    assert one.startswith("prisme_") and len(one) == 23
    assert "1.2.3.4" not in one
    others = {
        prisme_lite.make_visitor_id(b"j" * 32, "blog.example.com", "1.2.3.4", CHROME),
        prisme_lite.make_visitor_id(salt, "other.example", "1.2.3.4", CHROME),
        prisme_lite.make_visitor_id(salt, "blog.example.com", "1.2.3.5", CHROME),
        prisme_lite.make_visitor_id(salt, "blog.example.com", "1.2.3.4", IPHONE),
    }
    assert one not in others and len(others) == 4


def test_daily_salt_is_kept_across_restarts_and_replaced_the_next_day(make_server):
    day = 20_000 * 86_400_000
    first = make_server()
    salt = first.ctx.salt.for_time(day + 1000)
    assert first.ctx.salt.for_time(day + 86_399_999) == salt
    first.close()
    second = make_server()
    assert second.ctx.salt.for_time(day + 5000) == salt  # a restart keeps the day's visitors whole
    tomorrow = second.ctx.salt.for_time(day + 86_400_000)
    assert tomorrow != salt and len(tomorrow) == 32
    [stored] = second.rows("SELECT value FROM meta WHERE key = 'visitor_salt'")
    assert stored["value"] == f"{20_001}:{tomorrow.hex()}"  # yesterday's salt is gone from the database
    assert salt.hex() not in str(second.rows("SELECT * FROM meta"))


def test_no_raw_ip_reaches_the_disk(make_server, tmp_path):
    server = make_server()
    for n in range(20):
        server.client.post(
            "/api/v1/events/pageviews",
            headers={"Origin": "http://localhost", "Referer": f"http://localhost/{n}", "User-Agent": CHROME},
            extra_environ={"REMOTE_ADDR": "198.51.100.77"},
        )
    server.close()
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert b"198.51.100.77" not in data, path.name
        assert "198.51.100.77".encode("utf-16-le") not in data, path.name


def test_country_from_the_proxy_header(make_server):
    server = make_server(trust_proxy=True, country_header="CF-IPCountry")
    for code in ("fr", "XX", "T1"):
        server.client.post(
            "/api/v1/events/pageviews",
            headers={
                "Origin": "http://localhost",
                "Referer": f"http://localhost/{code}",  # three pages: a reload of one is no pageview
                "User-Agent": CHROME,
                "CF-IPCountry": code,
            },
        )
    assert [row["country"] for row in server.events()] == ["FR", "XX", "XX"]


def test_country_from_a_maxmind_database(monkeypatch):
    class Reader:
        def get(self, ip):
            return {"2.2.2.2": {"country": {"iso_code": "DE"}}}.get(ip)

    lookup = prisme_lite.CountryLookup(config())
    lookup.reader = Reader()
    assert lookup({}, "2.2.2.2") == "DE"
    assert lookup({}, "3.3.3.3") == "XX"


def test_country_header_without_trust_proxy_is_a_config_error():
    with pytest.raises(prisme_lite.ConfigError, match="country_header needs trust_proxy"):
        config(country_header="CF-IPCountry")
