"""Server events (SPEC §5, seeds/001): POST /events with access tokens, 202 once durable, customers and relations."""

import http.client
import json
import sqlite3
import threading

import pytest
from conftest import NOT_BROWSERS, agent_header, cli, new_token

import prisme_lite


@pytest.fixture
def tokens(server):
    """Access tokens by scope, created as `prisme-lite tokens create` does."""
    with sqlite3.connect(server.config["db"]) as conn:
        made = {scope: prisme_lite.create_access_token(conn, [scope], scope)[1] for scope in prisme_lite.SCOPES}
    return made


def post(client, body, token, status=202, raw=False, **headers):
    data = body if raw else json.dumps(body)
    return client.post(
        "/events", data, status=status,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers},
    )  # fmt: skip


def event(label="View", content="76a5e261", customer="x-21381723243-PRP", **fields):
    given = {"label": label, "content_item": {"id": content}, "customer": {"id": customer}}
    given.update(fields)
    return given


def test_the_seed_example_is_accepted_and_stored(server, client, tokens, monkeypatch):
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: 1_700_000_000_000)
    body = event(
        timestamp=1609588800, utm_source="newsletter", utm_medium="email", utm_campaign="launch", utm_term="t",
        utm_content="c", rl="https://prepr.io/blog", sr="1680x1050",
    )  # fmt: skip
    body["content_item"]["locale"] = "en-GB"
    answer = post(client, body, tokens["capture_publish"])
    assert answer.json == {"accepted": 1}
    [row] = server.rows("SELECT * FROM server_events")
    assert row == {
        "id": 1, "ts": 1609588800000, "received_at": 1_700_000_000_000, "label": "View", "content_id": "76a5e261",
        "locale": "en-GB", "customer_id": "x-21381723243-PRP", "utm_source": "newsletter", "utm_medium": "email",
        "utm_campaign": "launch", "utm_term": "t", "utm_content": "c", "referrer": "prepr.io", "screen": "1680x1050",
        "token_id": row["token_id"],
    }  # fmt: skip
    assert row["token_id"].startswith("tk_")
    assert server.rows("SELECT * FROM customers") == [
        {"id": "x-21381723243-PRP", "first_seen": 1609588800000, "last_seen": 1609588800000, "events": 1}
    ]


@pytest.mark.parametrize("ua", NOT_BROWSERS)
def test_a_backend_is_no_browser_and_its_events_are_stored(server, client, tokens, ua):
    answer = post(client, event(), tokens["capture_publish"], **agent_header(ua))
    assert answer.json == {"accepted": 1}
    assert "X-Prisme-Dropped" not in answer.headers
    assert [row["label"] for row in server.rows("SELECT * FROM server_events")] == ["View"]


def test_timestamp_defaults_to_the_request_time_and_takes_rfc_3339(server, client, tokens, monkeypatch):
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: 1_800_000_000_000)
    post(client, [event(), event(timestamp="2024-01-02T03:04:05Z"), event(timestamp="2024-01-02T04:04:05+01:00"),
                  event(timestamp=1609588800.5)], tokens["capture_publish"])  # fmt: skip
    assert [row["ts"] for row in server.rows("SELECT ts FROM server_events ORDER BY id")] == [
        1_800_000_000_000,
        1704164645000,
        1704164645000,
        1609588800500,
    ]


def test_a_batch_is_stored_whole_and_the_access_token_may_be_a_query_parameter(server, client, tokens):
    batch = [event(customer=f"c{n}") for n in range(100)]
    answer = client.post(
        f"/events?access_token={tokens['capture_publish']}", json.dumps(batch), status=202,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.json == {"accepted": 100}
    assert len(server.rows("SELECT * FROM server_events")) == 100
    assert len(server.rows("SELECT * FROM customers")) == 100


def test_signup_needs_no_content_item_and_other_labels_are_stored_as_sent(server, client, tokens):
    post(client, {"label": "SignUp", "customer": {"id": "new"}}, tokens["capture_publish"])
    post(client, event(label="Downloaded the brochure"), tokens["capture_publish"])
    rows = server.rows("SELECT label, content_id FROM server_events ORDER BY id")
    assert rows == [
        {"label": "SignUp", "content_id": None},
        {"label": "Downloaded the brochure", "content_id": "76a5e261"},
    ]


def relations(server):
    return server.rows("SELECT customer_id, content_id, relation FROM customer_relations ORDER BY 1, 2, 3")


def test_like_twice_is_one_and_unlike_removes_it(server, client, tokens):
    token = tokens["capture_publish"]
    post(client, event(label="Like", content="a", customer="u"), token)
    post(client, event(label="Like", content="a", customer="u"), token)
    assert relations(server) == [{"customer_id": "u", "content_id": "a", "relation": "like"}]
    post(client, event(label="Unlike", content="a", customer="u"), token)
    assert relations(server) == []
    post(client, event(label="Unlike", content="a", customer="u"), token)  # nothing to undo: no error
    assert relations(server) == []
    assert len(server.rows("SELECT * FROM server_events")) == 4  # the events themselves are all kept


def test_relations_in_one_batch_follow_its_order(server, client, tokens):
    sequence = [("Bookmark", "a", "u"), ("Unbookmark", "a", "u"), ("Subscribe", "s", "u"), ("Unsubscribe", "s", "u"),
                ("Subscribe", "s", "u"), ("Like", "b", "v")]  # fmt: skip
    post(client, [event(label=label, content=content, customer=who) for label, content, who in sequence],
         tokens["capture_publish"])  # fmt: skip
    assert relations(server) == [
        {"customer_id": "u", "content_id": "s", "relation": "subscribe"},
        {"customer_id": "v", "content_id": "b", "relation": "like"},
    ]


FIELD_ERRORS = [
    ({"content_item": {"id": "a"}, "customer": {"id": "u"}}, "label is required"),
    (event(label=""), "label is required"),
    (event(label=5), "label is required"),
    (event(label="x" * 129), "label is required: a string of 1 to 128"),
    ({"label": "View", "customer": {"id": "u"}}, "content_item is required"),
    (event(content_item={"locale": "en"}), "content_item.id is required"),
    (event(content_item={"id": 7}), "content_item.id is required"),
    ({"label": "View", "content_item": {"id": "a"}}, "customer is required"),
    (event(customer={}), "customer.id is required"),
    ({"label": "View", "content_item": {"id": "a"}, "customer": "u"}, "customer is required"),
    (event(content_item={"id": "a", "locale": "not a locale"}), "content_item.locale 'not a locale' is not a locale"),
    (event(sr="wide"), "sr 'wide' is not a screen resolution"),
    (event(sr="0x100"), "sr '0x100' is not a screen resolution"),
    (event(rl="not a url"), "rl 'not a url' is not a URL"),
    (event(utm_source=["a"]), "utm_source must be a string"),
    (event(utm_campaign="c" * 257), "utm_campaign must be a string of at most 256"),
    (event(timestamp=True), "timestamp must be unix seconds or an RFC 3339 time"),
    (event(timestamp="yesterday"), "timestamp 'yesterday' is not an RFC 3339 time"),
    (event(timestamp="2024-01-02T03:04:05"), "needs a time zone"),
    (event(timestamp=1609588800000), "out of range (milliseconds? send seconds)"),
    (event(timestamp=-5), "out of range"),
    (event(timestamp=4_000_000_000), "more than a day in the future"),
    ([], "a batch holds 1 to 100 events, this one 0"),
    ([event()] * 101, "a batch holds 1 to 100 events, this one 101"),
    ([event(), "View"], "events[1] must be a JSON object"),
    ([event(), event(), event(customer={"id": ""})], "events[2].customer.id is required"),
    ("View", "body must be a JSON object"),
]


@pytest.mark.parametrize(("body", "words"), FIELD_ERRORS, ids=[words for _body, words in FIELD_ERRORS])
def test_each_field_rule_is_a_400_naming_the_field_and_nothing_is_stored(server, client, tokens, body, words):
    answer = post(client, body, tokens["capture_publish"], status=400)
    assert words in answer.json["error"]
    assert server.rows("SELECT * FROM server_events") == []
    assert server.rows("SELECT * FROM customers") == []


@pytest.mark.parametrize(
    ("body", "words"),
    [(b"", "body is empty"), (b"{nope", "not valid JSON"), (b'{"label": "\xff"}', "not valid UTF-8")],
)
def test_malformed_bodies_are_400(server, client, tokens, body, words):
    assert words in post(client, body, tokens["capture_publish"], status=400, raw=True).json["error"]


def test_an_oversize_body_is_413(client, tokens):
    batch = [event(customer="c" * 120, content="x" * 120, utm_campaign="u" * 250) for _ in range(100)]
    assert len(json.dumps(batch)) > 32768
    assert "over the limit" in post(client, batch, tokens["capture_publish"], status=413).json["error"]


def test_tokens_401_and_403(server, client, tokens):
    assert client.post("/events", json.dumps(event()), status=401).json["error"].startswith("access token missing")
    assert post(client, event(), "pl_forged", status=401).json == {"error": "access token is unknown or revoked"}
    refused = post(client, event(), tokens["stats_read"], status=403).json["error"]
    assert refused.endswith("lacks the capture_publish scope")
    post(client, event(), tokens["track_public"], status=403)
    post(client, event(), tokens["admin"], status=202)  # admin may do anything
    with sqlite3.connect(server.config["db"]) as conn:
        conn.execute("UPDATE access_tokens SET revoked_at = 1")
    post(client, event(), tokens["capture_publish"], status=401)
    assert len(server.rows("SELECT * FROM server_events")) == 1


def test_the_rate_limit_is_per_token_and_counts_events(make_server):
    server = make_server(events_rate_limit=150)
    with sqlite3.connect(server.config["db"]) as conn:
        first = prisme_lite.create_access_token(conn, ["capture_publish"], "a")[1]
        second = prisme_lite.create_access_token(conn, ["capture_publish"], "b")[1]
    post(server.client, [event()] * 100, first)
    refused = post(server.client, [event()] * 51, first, status=429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert "rate limit of 150 events a minute" in refused.json["error"]
    post(server.client, [event()] * 50, first)
    post(server.client, [event()] * 100, second)  # another token has its own bucket
    assert len(server.rows("SELECT * FROM server_events")) == 250


def test_tokens_on_the_command_line(tmp_path):
    db = tmp_path / "t.db"
    assert cli("init", db=db).returncode == 0  # only serve and init create a database
    made = cli("tokens", "create", "--scope", "capture_publish", "--scope", "stats_read", "--name", "backend", db=db)
    assert made.returncode == 0
    token = made.stdout.strip()
    assert made.stdout == token + "\n" and token.startswith("pl_")  # alone on its line: $(prisme-lite tokens create …)
    assert "capture_publish stats_read" in made.stderr
    listed = cli("tokens", "list", db=db).stdout.splitlines()
    assert listed[0].split() == ["ID", "NAME", "SCOPES", "CREATED", "STATUS"]
    token_id = listed[1].split()[0]
    assert listed[1].split()[1:3] == ["backend", "capture_publish"] and listed[1].endswith("active")
    assert token not in cli("tokens", "list", db=db).stdout
    with sqlite3.connect(db) as conn:
        assert token not in json.dumps(conn.execute("SELECT * FROM access_tokens").fetchall())
    assert cli("tokens", "revoke", token_id, db=db).stdout == f"revoked: {token_id}\n"
    assert "revoked" in cli("tokens", "list", db=db).stdout.splitlines()[1]
    again = cli("tokens", "revoke", token_id, db=db)
    assert (again.returncode, again.stderr) == (1, f"no active token {token_id}\n")
    bad = cli("tokens", "create", "--scope", "everything", db=db)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "must be one of capture_publish" in bad.stderr


@pytest.mark.server
def test_every_202_is_stored_exactly_once_under_concurrency(run, tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    token = new_token(db, "capture_publish")
    process = run("--events-rate-limit", "0")
    accepted, lock = [], threading.Lock()

    def worker(k):
        conn = http.client.HTTPConnection("127.0.0.1", process.port, timeout=30)
        for n in range(500):
            batch = [event(customer=f"w{k}-b{n}-e{e}") for e in range(4)]
            conn.request("POST", "/events", json.dumps(batch),
                         {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
            answer = conn.getresponse()
            answer.read()
            if answer.status == 202:
                with lock:
                    accepted.extend(item["customer"]["id"] for item in batch)

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert process.stop() == 0
    with sqlite3.connect(db) as conn:
        stored = [row[0] for row in conn.execute("SELECT customer_id FROM server_events")]
    assert len(accepted) == 4 * 500 * 4
    assert sorted(stored) == sorted(accepted)


def readme_python():
    """The README's Python example, without its last line (the call with a placeholder token)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    [block] = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "def send_events" in b]
    return block.rsplit("\n\nsend_events(", 1)[0]


@pytest.mark.server
def test_a_day_of_events_with_the_readme_example_shows_in_stats_per_label(run, tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    token = new_token(db, "capture_publish")
    process = run()
    example = {}
    exec(readme_python(), example)  # noqa: S102 -- our own README, the point of the test
    url = f"http://127.0.0.1:{process.port}/events"
    day_start = int(__import__("time").time()) - 86_400
    sent = 0
    for hour in range(24):
        batch = [
            {"label": label, "timestamp": day_start + hour * 3600 + n, "content_item": {"id": f"article-{n % 3}"},
             "customer": {"id": f"crm-{(hour * 7 + n) % 40}"}}
            for n, label in enumerate(["View"] * 5 + ["Like"] * 2 + ["Purchase"])
        ]  # fmt: skip
        sent += example["send_events"](batch, token, url=url)
    assert sent == 24 * 8
    assert process.stop() == 0
    summary = cli("stats", db=db)
    assert summary.returncode == 0
    lines = summary.stdout.splitlines()
    start = lines.index("server events by label")
    assert [line.split() for line in lines[start + 1 : start + 5]] == [
        ["LABEL", "EVENTS", "CUSTOMERS", "LAST"],
        ["View", "120", "40", lines[start + 2].split()[-1]],
        ["Like", "48", "40", lines[start + 3].split()[-1]],
        ["Purchase", "24", "24", lines[start + 4].split()[-1]],
    ]


def test_stats_summarises_web_traffic_per_site(server, client, capsys):
    from conftest import CHROME

    for n, path in enumerate(["/", "/", "/about", "/blog"]):
        client.post(
            "/api/v1/events/pageviews",
            headers={"Origin": "https://blog.example.com", "X-Prisme-Referrer": f"https://blog.example.com{path}",
                     "X-Prisme-Document-Referrer": "https://news.example/" if n == 0 else "", "User-Agent": CHROME},
            extra_environ={"REMOTE_ADDR": f"203.0.113.{n % 2}"},
        )  # fmt: skip
    server.ctx.writer.flush()
    assert prisme_lite.main(["stats", "--db", server.config["db"], "--days", "7"]) == 0
    out = capsys.readouterr().out
    assert "web traffic at blog.example.com" in out
    assert "2 visitors, 4 pageviews, 2 sessions, bounce rate 0%" in out
    assert "top pages: / 2, /about 1, /blog 1" in out
    assert "top referrers: news.example 1" in out
