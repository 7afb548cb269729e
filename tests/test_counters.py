"""Action counters (SPEC §4, seeds/000): register, configure, token, increment, value; exact under concurrency."""

import http.client
import json
import sqlite3
import threading
import time

import jwt
import pytest
from conftest import CHROME, NOT_BROWSERS, agent_header, clear_of_the_hour

import prisme_lite

BLOG = "https://blog.example.com"


@pytest.fixture
def clock(monkeypatch):
    # The start of this hour: the minutes a test moves on stay in the hour its tokens are issued for, and PyJWT,
    # which checks exp against the real clock, finds them valid (no test starts in an hour's last 30 s).
    now = [prisme_lite.now_ms() // 3_600_000 * 3_600_000 + 1000]
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: now[0])
    return now


@pytest.fixture
def admin(server):
    return {"Authorization": f"Bearer {server.ctx.admin_token()}"}


def register(client, admin, domain="blog.example.com", status=201):
    body = {"clientName": "My blog", "domainName": domain, "emailId": "me@example.com"}
    return client.post_json("/api/v1/register", body, headers=admin, status=status)


@pytest.fixture
def registered(client, admin):
    """A client for blog.example.com with pages and actions configured; its id and secret."""
    answer = register(client, admin).json
    client.post_json(
        "/api/v1/configure",
        {**answer, "validPageIds": ["intro", "guide"], "validActionIds": ["likes", "claps"]},
        status=200,
    )
    return answer


def token_for(client, ua=CHROME, ip="203.0.113.9", origin=BLOG):
    answer = client.get(
        "/api/v1/token", headers={"Origin": origin, "User-Agent": ua}, extra_environ={"REMOTE_ADDR": ip}
    )
    return answer.json["token"]


def increment(client, token, action="likes", page="intro", status=200, ua=CHROME, **headers):
    return client.post(
        f"/api/v1/{action}/{page}/increment",
        json.dumps({"token": token}),
        status=status,
        headers={"Content-Type": "application/json", **agent_header(ua), **headers},
    )


def test_the_documented_flow(server, client, admin):
    answer = register(client, admin).json
    assert set(answer) == {"clientId", "clientSecret"}
    configured = client.post_json(
        "/api/v1/configure",
        {**answer, "validPageIds": ["article-introduction-to-ssr-in-nextjs"], "validActionIds": ["likes", "likes"]},
    ).json
    assert configured == {
        "clientId": answer["clientId"],
        "clientName": "My blog",
        "domainName": "blog.example.com",
        "emailId": "me@example.com",
        "validPageIds": ["article-introduction-to-ssr-in-nextjs"],
        "validActionIds": ["likes"],
    }
    issued = client.get("/api/v1/token", headers={"Origin": BLOG, "User-Agent": CHROME}).json
    assert 0 < issued["expiresIn"] <= 3600
    first = increment(client, issued["token"], page="article-introduction-to-ssr-in-nextjs")
    assert first.json == {"count": 1}
    value = client.get(
        "/api/v1/likes/article-introduction-to-ssr-in-nextjs/value", headers={"Authorization": issued["token"]}
    )
    assert value.json == {"count": 1}
    bearer = client.get(
        "/api/v1/likes/article-introduction-to-ssr-in-nextjs/value",
        headers={"Authorization": f"Bearer {issued['token']}"},
    )
    assert bearer.json == {"count": 1}
    [row] = server.rows("SELECT * FROM counters")
    assert row == {
        "client_id": answer["clientId"],
        "action_id": "likes",
        "page_id": "article-introduction-to-ssr-in-nextjs",
        "count": 1,
    }


def test_the_secret_is_shown_once_and_stored_hashed(server, client, admin):
    answer = register(client, admin).json
    [row] = server.rows("SELECT * FROM counter_clients")
    assert answer["clientSecret"] not in json.dumps(row)
    assert row["secret_hash"] == prisme_lite.hash_secret(answer["clientSecret"])


def test_a_token_by_client_id_and_secret(client, registered, clock):
    by_secret = client.post_json("/api/v1/token", registered, headers={"User-Agent": CHROME}).json
    by_query = client.get("/api/v1/token", registered, headers={"User-Agent": CHROME}).json
    assert by_secret["token"] == by_query["token"]
    assert increment(client, by_secret["token"]).json == {"count": 1}
    wrong = client.post_json("/api/v1/token", {**registered, "clientSecret": "cs_wrong"}, status=401)
    assert wrong.json == {"error": "unknown clientId or wrong clientSecret"}


@pytest.mark.parametrize("ua", NOT_BROWSERS)
def test_clients_that_are_no_browser_get_no_token_and_count_nothing(server, client, registered, ua):
    for answer in (
        client.get("/api/v1/token", headers={"Origin": BLOG, **agent_header(ua)}, status=200),
        client.get("/api/v1/token", registered, headers=agent_header(ua), status=200),  # by id and secret too
    ):
        assert (answer.headers["X-Prisme-Dropped"], answer.body) == ("bot", b"")
    token = token_for(client)  # a browser's token, replayed by a script
    dropped = increment(client, token, ua=ua, Origin=BLOG)
    assert (dropped.headers["X-Prisme-Dropped"], dropped.body) == ("bot", b"")
    assert server.rows("SELECT * FROM counters") == []
    assert server.rows("SELECT * FROM counter_claims") == []
    assert increment(client, token).json == {"count": 1}  # the browser's own click still counts


def test_the_same_visitor_gets_the_same_token_within_the_hour(client, registered, clock):
    first = token_for(client)
    clock[0] += 60_000
    assert token_for(client) == first
    assert token_for(client, ip="203.0.113.10") != first
    assert token_for(client, ua=CHROME + " extra") != first
    claims = jwt.decode(first, options={"verify_signature": False})
    assert set(claims) == {"iss", "aud", "sub", "iat", "nbf", "exp", "jti"}
    assert (claims["aud"], claims["exp"] - claims["iat"]) == (registered["clientId"], 3600)
    assert "203.0.113.9" not in json.dumps(claims)


def test_a_token_counts_once_per_action_and_page_per_15_minutes(server, client, registered, clock):
    token = token_for(client)
    assert increment(client, token).json == {"count": 1}
    assert increment(client, token).json == {"count": 1}  # a repeat: 200 and the count unchanged
    assert increment(client, token, action="claps").json == {"count": 1}  # another action counts
    assert increment(client, token, page="guide").json == {"count": 1}
    assert increment(client, token_for(client, ip="203.0.113.77")).json == {"count": 2}  # another visitor counts
    clock[0] += 14 * 60_000
    assert increment(client, token).json == {"count": 2 - 0}  # still inside the window
    clock[0] += 2 * 60_000
    assert increment(client, token).json == {"count": 3}
    series = server.rows("SELECT day, count FROM counter_days WHERE action_id = 'likes' AND page_id = 'intro'")
    assert sum(row["count"] for row in series) == 3


def test_a_replay_is_answered_from_the_claims_the_writer_committed(server, client, registered, clock, monkeypatch):
    """CounterClaims: a replay within the 15 minutes answers the latest committed count without asking the database;
    a claim it does not hold (an earlier process's, or forgotten) is asked of the database as before."""
    token, other = token_for(client), token_for(client, ip="203.0.113.77")
    assert increment(client, token).json == {"count": 1}
    assert increment(client, other).json == {"count": 2}
    asked = []
    read_claim = prisme_lite.counted_already
    monkeypatch.setattr(prisme_lite, "counted_already", lambda *args: asked.append(args[4]) or read_claim(*args))
    assert increment(client, token).json == {"count": 2}  # the count the other token's increment committed
    assert asked == []
    server.ctx.counter_claims.claims.clear()  # as after a restart, or past LIMIT
    assert increment(client, token).json == {"count": 2}
    assert asked == [server.ctx.verified_tokens[token]["jti"]]  # the reader's claim, once; nothing counted again
    clock[0] += 16 * 60_000
    assert increment(client, other).json == {"count": 3}  # its claim is over, in memory as in the database
    assert server.rows("SELECT count FROM counters") == [{"count": 3}]


def test_counts_and_claims_survive_a_restart(make_server, clock):
    first = make_server()
    admin = {"Authorization": f"Bearer {first.ctx.admin_token()}"}
    answer = register(first.client, admin, domain="localhost").json
    first.client.post_json("/api/v1/configure", {**answer, "validPageIds": ["p"], "validActionIds": ["likes"]})
    token = token_for(first.client, origin="http://localhost")
    increment(first.client, token, page="p")
    first.close()
    second = make_server()
    assert token_for(second.client, origin="http://localhost") == token  # same secret, same salt, same token
    assert increment(second.client, token, page="p").json == {"count": 1}  # the claim survived the restart
    assert increment(
        second.client, token_for(second.client, origin="http://localhost", ip="198.51.100.1"), page="p"
    ).json == {"count": 2}


def test_expired_claims_are_cleaned_up(server, client, registered, clock):
    increment(client, token_for(client))
    increment(client, token_for(client, ip="198.51.100.4"))
    assert len(server.rows("SELECT * FROM counter_claims")) == 2
    clock[0] += 16 * 60_000
    server.ctx.writer.maintained_at = float("-inf")  # as if a minute had passed
    server.ctx.writer.run(lambda conn: None)
    assert server.rows("SELECT * FROM counter_claims") == []
    assert server.rows("SELECT count FROM counters") == [{"count": 2}]


def test_register_errors(server, client, admin):
    body = {"clientName": "x", "domainName": "a.example", "emailId": "me@example.com"}
    assert client.post_json("/api/v1/register", body, status=401).json["error"].startswith("admin token required")
    assert client.post_json("/api/v1/register", body, headers={"Authorization": "Bearer nope"}, status=401)
    for broken, words in [
        ({**body, "clientName": ""}, "clientName is required"),
        ({**body, "domainName": "not a domain"}, "domainName"),
        ({**body, "domainName": "*.example.com"}, "not a wildcard"),
        ({**body, "emailId": "nobody"}, "not an email address"),
        ({key: value for key, value in body.items() if key != "emailId"}, "emailId is required"),
    ]:
        assert words in client.post_json("/api/v1/register", broken, headers=admin, status=400).json["error"]
    malformed = client.post(
        "/api/v1/register", "{nope", headers={**admin, "Content-Type": "application/json"}, status=400
    )
    assert "not valid JSON" in malformed.json["error"]
    assert client.post_json("/api/v1/register", [body], headers=admin, status=400).json == {
        "error": "body must be a JSON object"
    }
    client.post_json("/api/v1/register", body, headers=admin, status=201)
    again = client.post_json("/api/v1/register", {**body, "domainName": "A.Example"}, headers=admin, status=409)
    assert again.json == {"error": "domainName a.example is already registered"}
    assert len(server.rows("SELECT * FROM counter_clients")) == 1


def test_open_registration_needs_no_admin_token(make_server):
    server = make_server(open_registration=True)
    register(server.client, {}, domain="open.example")


def test_configure_errors(client, registered):
    def configure(status, **changes):
        return client.post_json(
            "/api/v1/configure",
            {**registered, "validPageIds": ["p"], "validActionIds": ["likes"], **changes},
            status=status,
        ).json["error"]

    assert configure(401, clientSecret="cs_nope") == "unknown clientId or wrong clientSecret"
    assert configure(401, clientId="cl_nope") == "unknown clientId or wrong clientSecret"
    assert configure(400, clientId=None) == "clientId and clientSecret are required strings"
    assert configure(400, validPageIds="p") == "validPageIds is required: a list of strings"
    assert "must be 1 to 128 characters" in configure(400, validPageIds=["a/b"])
    assert "must be 1 to 128 characters" in configure(400, validActionIds=["x" * 129])
    for reserved in ("events", "noscript", "stats", "healthcheck", "register", "configure", "token"):
        assert f"{reserved!r} is reserved" in configure(400, validActionIds=["likes", reserved])


def test_token_errors(client, registered):
    assert (
        client.get("/api/v1/token", status=400).json["error"].startswith("send the request from your registered domain")
    )
    unknown = client.get("/api/v1/token", headers={"Origin": "https://elsewhere.example"}, status=401)
    assert unknown.json == {"error": "no client is registered for the domain elsewhere.example"}


def test_increment_and_value_errors(client, registered, clock):
    token = token_for(client)
    assert increment(client, token, action="shares", status=404).json == {"error": "shares is not a valid action"}
    assert increment(client, token, page="nope", status=404).json == {
        "error": "nope is not a page configured for this client"
    }
    malformed = client.post(
        "/api/v1/likes/intro/increment", "{bad", headers={"Content-Type": "application/json"}, status=400
    )
    assert "not valid JSON" in malformed.json["error"]
    assert client.post_json("/api/v1/likes/intro/increment", {"token": 5}, status=400).json == {
        "error": "token must be a string"
    }
    assert client.post_json("/api/v1/likes/intro/increment", {}, status=401).json["error"].startswith("token missing")
    assert increment(client, token).json == {"count": 1}  # nothing above counted


def test_an_increment_without_a_body_is_400_and_a_body_without_a_token_401(server, client, registered):
    """The seed: 400 when "the request body is missing", 401 when "the token is invalid or missing"."""
    for headers in ({}, {"Content-Type": "application/json"}):
        missing = client.post("/api/v1/likes/intro/increment", headers=headers, status=400)
        assert missing.json == {"error": 'body is missing: send {"token": "<a token from /api/v1/token>"}'}
    assert client.post("/api/v1/likes/intro/increment", "  \n", status=400).json["error"].startswith("body is missing")
    assert client.post_json("/api/v1/likes/intro/increment", [], status=400).json == {
        "error": "body must be a JSON object"
    }
    assert client.post_json("/api/v1/likes/intro/increment", {}, status=401).json["error"].startswith("token missing")
    assert client.post_json("/api/v1/likes/intro/increment", {"other": 1}, status=401)
    assert server.rows("SELECT * FROM counters") == []
    assert increment(client, "not.a.jwt", status=401).json == {"error": "token is not a valid JWT"}
    assert client.get("/api/v1/likes/intro/value", status=401).json["error"].startswith("token missing")
    assert client.get("/api/v1/likes/intro/value", headers={"Authorization": "Bearer x.y.z"}, status=401)


def forged(server, registered, secret=None, algorithm="HS256", drop=(), **changes):
    now = int(time.time())
    claims = {
        "iss": "prisme-lite",
        "aud": registered["clientId"],
        "sub": "v",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": "forged",
        **changes,
    }
    for name in drop:
        del claims[name]
    key = server.ctx.jwt_secret if secret is None else secret
    return jwt.encode(claims, key if algorithm != "none" else None, algorithm=algorithm)


@pytest.mark.parametrize(
    ("attack", "words"),
    [
        ({"algorithm": "none"}, "token is invalid"),
        ({"secret": b"another key of thirty-two bytes!!"}, "Signature verification failed"),
        ({"drop": ("exp",)}, 'missing the "exp" claim'),
        ({"drop": ("jti",)}, 'missing the "jti" claim'),
        ({"exp": int(time.time()) - 10}, "token expired"),
        ({"iss": "someone-else"}, "Invalid issuer"),
        ({"aud": "cl_other"}, "not for a registered client"),
        ({"algorithm": "HS512"}, "token is invalid"),
    ],
)
def test_forged_tokens_are_refused(server, client, registered, attack, words):
    token = forged(server, registered, **attack)
    assert words in increment(client, token, status=401).json["error"]
    assert words in client.get("/api/v1/likes/intro/value", headers={"Authorization": token}, status=401).json["error"]
    assert server.rows("SELECT * FROM counters") == []


def test_a_checked_token_is_trusted_only_until_it_expires(server, client, registered):
    token = token_for(client)
    assert increment(client, token).json == {"count": 1}
    assert server.ctx.verified_tokens[token]["jti"]  # checked once in full: not again while it is valid
    forged_token = forged(server, registered, secret=b"another key of thirty-two bytes!!")
    claims = jwt.decode(forged_token, options={"verify_signature": False})
    server.ctx.verified_tokens[forged_token] = {**claims, "exp": int(time.time()) - 1}  # as if checked, and over
    assert "Signature verification failed" in increment(client, forged_token, status=401).json["error"]
    assert server.rows("SELECT count FROM counters") == [{"count": 1}]


def test_a_new_configuration_applies_to_the_next_increment(server, client, registered, clock):
    """Clients are kept in memory once looked up (CounterClients): configure forgets them, so the next increment reads
    the new pages and actions, never the ones it replaced."""
    token = token_for(client)
    assert increment(client, token, page="intro").json == {"count": 1}
    assert ("id", registered["clientId"]) in server.ctx.counter_clients.known  # looked up once, then kept
    client.post_json(
        "/api/v1/configure", {**registered, "validPageIds": ["outro"], "validActionIds": ["likes"]}, status=200
    )
    assert not server.ctx.counter_clients.known
    refused = increment(client, token, page="guide", status=404).json
    assert refused == {"error": "guide is not a page configured for this client"}
    increment(client, token, action="claps", page="outro", status=404)
    assert increment(client, token, page="outro").json == {"count": 1}
    assert server.rows("SELECT page_id, count FROM counters ORDER BY page_id") == [
        {"page_id": "intro", "count": 1}, {"page_id": "outro", "count": 1},
    ]  # fmt: skip


def test_a_client_is_kept_only_when_it_was_read_after_the_last_change(server, registered):
    """A lookup that began before a change (configure's commit) does not keep what it read: it may be the old row."""
    clients = server.ctx.counter_clients
    clients.changed()
    read = clients.read

    def read_then_change():
        conn = read()
        clients.changed()  # the write commits after the lookup took its generation
        return conn

    clients.read = read_then_change
    assert clients.find("id", registered["clientId"])["id"] == registered["clientId"]
    assert not clients.known  # not kept: read before the change's end
    clients.read = read
    assert clients.find("id", registered["clientId"])["id"] == registered["clientId"]
    assert ("id", registered["clientId"]) in clients.known  # read after it: kept
    assert clients.find("domain", "nobody.example") is None
    assert ("domain", "nobody.example") not in clients.known


def test_another_clients_token_is_refused(server, client, admin, registered):
    other = register(client, admin, domain="other.example").json
    client.post_json("/api/v1/configure", {**other, "validPageIds": ["intro"], "validActionIds": ["likes"]})
    foreign = token_for(client, origin="https://other.example")
    refused = increment(client, foreign, status=401, Origin=BLOG)
    assert refused.json == {"error": "token is for another client than blog.example.com"}
    assert server.rows("SELECT * FROM counters") == []


@pytest.mark.server
def test_concurrent_increments_are_exact_and_survive_kill_9(run, tmp_path):
    process = run("--rate-limit", "0")
    db = tmp_path / "prisme.db"
    admin = {"Authorization": f"Bearer {process.banner[2].split(': ')[1].strip()}", "Content-Type": "application/json"}

    def call(method, path, body=None, **headers):
        conn = http.client.HTTPConnection("127.0.0.1", process.port, timeout=30)
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"null")

    status, client_answer = call(
        "POST", "/api/v1/register", {"clientName": "b", "domainName": "localhost", "emailId": "a@b.cd"}, **admin
    )
    assert status == 201
    status, _ = call("POST", "/api/v1/configure", {**client_answer, "validPageIds": ["p"], "validActionIds": ["likes"]})
    assert status == 200
    clear_of_the_hour()
    tokens = [
        call("GET", "/api/v1/token", Origin="http://localhost", **{"User-Agent": f"{CHROME} n{n}"})[1]["token"]
        for n in range(2000)
    ]
    assert len(set(tokens)) == 2000
    counts, lock = [], threading.Lock()

    def worker(k):
        conn = http.client.HTTPConnection("127.0.0.1", process.port, timeout=30)
        for token in tokens[k * 250 : (k + 1) * 250]:
            conn.request(
                "POST",
                "/api/v1/likes/p/increment",
                json.dumps({"token": token}),
                {"Content-Type": "application/json", "User-Agent": CHROME},
            )
            answer = conn.getresponse()
            body = json.loads(answer.read())
            with lock:
                counts.append((answer.status, body["count"]))

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert {status for status, _count in counts} == {200}
    assert sorted(count for _status, count in counts) == list(range(1, 2001))  # every count answered exactly once
    assert call("POST", "/api/v1/likes/p/increment", {"token": tokens[0]}, **{"User-Agent": CHROME})[1] == {
        "count": 2000
    }  # a repeat adds nothing
    process.proc.kill()  # SIGKILL right after the last acknowledged increment
    process.proc.wait()
    restarted = run("--rate-limit", "0")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count FROM counters").fetchone() == (2000,)
    conn = http.client.HTTPConnection("127.0.0.1", restarted.port, timeout=30)
    conn.request("GET", "/api/v1/likes/p/value", headers={"Authorization": tokens[0]})
    assert json.loads(conn.getresponse().read()) == {"count": 2000}


def test_counters_list_and_show_on_the_command_line(server, client, registered, capsys):
    increment(client, token_for(client))
    increment(client, token_for(client, ip="198.51.100.9"))
    increment(client, token_for(client), action="claps", page="guide")
    server.ctx.writer.flush()
    db = server.config["db"]
    assert prisme_lite.main(["counters", "list", "--db", db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["DOMAIN", "CLIENT", "ACTION", "PAGE", "COUNT"]
    assert [line.split() for line in lines[1:]] == [
        ["blog.example.com", registered["clientId"], "claps", "guide", "1"],
        ["blog.example.com", registered["clientId"], "likes", "intro", "2"],
    ]
    assert prisme_lite.main(["counters", "show", "likes", "intro", "--db", db]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f"likes on intro at blog.example.com ({registered['clientId']}): 2 in all"
    assert len(shown) == 31 and shown[-1].endswith("  2")  # 30 days, today last
    assert prisme_lite.main(["counters", "list", "--client", "cl_nobody", "--db", db]) == 1
    assert capsys.readouterr().err == "no counters match\n"


def test_a_configured_counter_never_incremented_shows_0(server, client, registered, admin, capsys):
    db = server.config["db"]
    increment(client, token_for(client))  # likes on intro: 1; likes on guide is configured and never counted
    server.ctx.writer.flush()
    assert prisme_lite.main(["counters", "show", "likes", "guide", "--db", db]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f"likes on guide at blog.example.com ({registered['clientId']}): 0 in all"
    assert len(shown) == 31 and all(line.endswith("  0") for line in shown[1:])
    assert prisme_lite.main(["counters", "show", "likes", "guide", "--client", registered["clientId"], "--db", db]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(": 0 in all")
    # Not configured (an unknown page, an unknown action, another client): still no counter.
    for args in (["likes", "outro"], ["shares", "guide"], ["likes", "guide", "--client", "cl_nobody"]):
        assert prisme_lite.main(["counters", "show", *args, "--db", db]) == 1
        assert capsys.readouterr().err == "no counters match\n"


def test_ids_with_control_characters_are_refused(server, client, admin):
    """`pg\x1b]0;PWNED\x07` would retitle the terminal of whoever runs `counters list` (issue 18.7)."""
    answer = register(client, admin).json
    for field, ids in (("validPageIds", ["pg\x1b]0;PWNED\x07"]), ("validActionIds", ["like\x00s"])):
        body = {**answer, "validPageIds": ["intro"], "validActionIds": ["likes"], field: ids}
        refused = client.post_json("/api/v1/configure", body, status=400).json["error"]
        assert refused.startswith(field)
    assert server.rows("SELECT page_ids, action_ids FROM counter_clients") == [{"page_ids": "[]", "action_ids": "[]"}]
