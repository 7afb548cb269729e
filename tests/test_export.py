"""Export and retention (SPEC §7): streamed CSV and NDJSON in constant memory, safe in spreadsheets; pruning."""

import csv
import io
import json
import sqlite3

import pytest
import webtest
from conftest import CHROME

import prisme_lite

DAY = 86_400_000
NOW = 1_795_000_000_000


def fill(db, rows, start=NOW - 10 * DAY, step=1000):
    """`rows` pageview rows straight into the database (export reads what is there, however it came), counted."""
    with sqlite3.connect(db) as conn:
        last_event, last_session = conn.execute(
            "SELECT (SELECT max(id) FROM events), (SELECT max(id) FROM sessions)"
        ).fetchone()
        conn.executemany(
            "INSERT INTO events (ts, site, kind, name, host, path, referrer, visitor_id, browser, os, device, country, status)"
            " VALUES (?, 'localhost', 'pageview', NULL, 'localhost', ?, 'direct', ?, 'Chrome', 'Linux', 'desktop', 'XX', 200)",
            ((start + n * step, f"/page/{n % 500}", f"v{n % 1000}") for n in range(rows)),
        )
        prisme_lite.count_stored_rows(conn, last_event or 0, last_session or 0)


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def export_growth(conn, fmt):
    """Bytes written, lines, and how far resident memory rose above where it started, sampled after every chunk."""
    written = lines = 0
    baseline = highest = resident_bytes()
    for chunk in prisme_lite.export_chunks(conn, "events", 0, NOW + DAY, fmt):
        written += len(chunk)
        lines += chunk.count("\n")
        highest = max(highest, resident_bytes())
    return written, lines, highest - baseline


def test_exporting_200000_rows_takes_constant_memory(tmp_path):
    db = str(tmp_path / "big.db")
    prisme_lite.open_database(db)
    fill(db, 200_000)
    conn = sqlite3.connect(db)
    for fmt in ("csv", "ndjson"):
        size, lines, growth = export_growth(conn, fmt)
        assert lines == 200_000 + (fmt == "csv")  # with the CSV header
        assert size > 25_000_000  # what went through: a whole export held in memory would show here
        assert growth < 8_000_000, (fmt, growth)  # a chunk of 1,000 rows at a time


def test_csv_round_trips_and_is_safe_in_spreadsheets(server):
    hostile = [
        '=HYPERLINK("https://evil.example")',
        "+1+1",
        "-2+3",
        "@SUM(A1)",
        "\tTab",
        'plain, with "quotes"\nand a newline',
    ]
    with sqlite3.connect(server.config["db"]) as conn:
        conn.executemany(
            "INSERT INTO events (ts, site, kind, name, host, path, referrer, visitor_id, browser, os, device, country, status, props)"
            " VALUES (?, 'localhost', 'custom', ?, 'localhost', '/', 'direct', 'v', 'Chrome', 'Linux', 'desktop', 'XX', 200, ?)",
            [(NOW + n, name, json.dumps({"é": name})) for n, name in enumerate(hostile)],
        )
    text = "".join(prisme_lite.export_chunks(sqlite3.connect(server.config["db"]), "custom", 0, NOW + DAY, "csv"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["name"] for row in rows] == ["'" + hostile[0], "'+1+1", "'-2+3", "'@SUM(A1)", "'\tTab", hostile[5]]
    assert rows[0]["time"] == prisme_lite.iso_time(NOW) and rows[0]["ts"] == str(NOW)
    assert json.loads(rows[5]["props"]) == {"é": hostile[5]}
    assert rows[0]["status"] == "200"  # numbers are left alone, even negative ones would be


def test_the_export_route_streams_for_the_admin_only(server):
    fill(server.config["db"], 2500)
    client = webtest.TestApp(server.app)
    client.get("/api/v1/export", status=401)
    admin = {"Authorization": f"Bearer {server.ctx.admin_token()}"}
    answer = client.get("/api/v1/export?format=ndjson&kind=pageview", headers=admin)
    assert answer.content_type == "application/x-ndjson"
    assert 'filename="prisme-pageview.ndjson"' in answer.headers["Content-Disposition"]
    records = [json.loads(line) for line in answer.text.splitlines()]
    assert len(records) == 2500 and records[0]["path"] == "/page/0" and records[-1]["visitor_id"] == "v499"
    window = client.get(
        f"/api/v1/export?format=csv&from={prisme_lite.iso_time(NOW - 10 * DAY + 1000 * 1000)}", headers=admin
    )
    assert window.text.count("\n") == 1 + 1500
    assert (
        "format must be csv or ndjson"
        in client.get("/api/v1/export?format=xml", headers=admin, status=400).json["error"]
    )
    assert (
        "kind must be one of" in client.get("/api/v1/export?kind=everything", headers=admin, status=400).json["error"]
    )
    # A misspelt parameter is refused, not ignored: `form=ndjson` would otherwise export every row as CSV.
    refused = client.get("/api/v1/export?form=ndjson", headers=admin, status=400).json["error"]
    assert refused == "unknown parameter 'form'; known: format, from, kind, to"


def test_export_on_the_command_line(server, tmp_path, capsys):
    fill(server.config["db"], 10)
    out = tmp_path / "out.csv"
    assert prisme_lite.main(["export", "--db", server.config["db"], "--format", "csv", "-o", str(out)]) == 0
    assert len(list(csv.reader(out.open()))) == 11
    assert prisme_lite.main(["export", "--db", server.config["db"], "--format", "ndjson", "--kind", "sessions"]) == 0
    assert capsys.readouterr().out == ""  # no sessions in this database
    assert prisme_lite.main(["export", "--db", server.config["db"], "--from", "soon"]) == 2


def count(db, table):
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*), min(ts) FROM {table}").fetchone()


def test_prune_removes_exactly_the_rows_older_than_n_days(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: NOW)
    db = str(tmp_path / "p.db")
    prisme_lite.open_database(db)
    fill(db, 12_000, start=NOW - 12 * DAY, step=DAY // 1000)  # 1,000 rows a day for 12 days
    cutoff = (NOW // DAY - 7) * DAY  # "older than 7 days": before the start of the day 7 days ago
    with sqlite3.connect(db) as conn:
        kept_before = conn.execute("SELECT count(*) FROM events WHERE ts >= ?", (cutoff,)).fetchone()[0]
    assert prisme_lite.main(["prune", "--db", db, "--older-than", "7"]) == 0
    assert capsys.readouterr().out == f"deleted {12_000 - kept_before} rows older than 7 days\n"
    total, oldest = count(db, "events")
    assert total == kept_before and 7_000 < total < 8_000 and cutoff <= oldest < cutoff + DAY // 1000
    assert prisme_lite.main(["prune", "--db", db]) == 2  # no retention_days, no --older-than


def test_retention_prunes_in_the_background_in_batches(make_server, monkeypatch):
    server = make_server(retention_days=3)
    monkeypatch.setattr(prisme_lite, "PRUNE_BATCH", 500)
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: NOW)
    fill(server.config["db"], 6000, start=NOW - 6 * DAY, step=DAY // 1000)  # 6 days, 1,000 a day
    cutoff = (NOW // DAY - 3) * DAY
    with sqlite3.connect(server.config["db"]) as conn:
        kept = conn.execute("SELECT count(*) FROM events WHERE ts >= ?", (cutoff,)).fetchone()[0]
    server.ctx.writer.maintained_at = float("-inf")
    server.ctx.writer.run(lambda conn: None)  # one batch per transaction, repeated until done
    for _ in range(20):
        server.ctx.writer.run(lambda conn: None)
    total, oldest = count(server.config["db"], "events")
    assert total == kept and 3000 < total < 4000 and cutoff <= oldest < cutoff + DAY // 1000
    assert server.ctx.writer.maintenance_due is False


def test_pruning_keeps_the_daily_counts_equal_to_the_rows(make_server, monkeypatch, capsys):
    """Events and sessions written by the writer over 12 days, pruned to 5: `check` recounts every daily count."""
    server = make_server()
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: NOW)
    for n in range(3000):
        ts = NOW - 12 * DAY + n * (12 * DAY // 3000)
        visitor = f"prisme_{(n % 40) * 1000 + ts // DAY:016x}" if n % 3 else f"given-{n % 7}"
        server.ctx.writer.append("web", {
            "ts": ts, "site": "localhost", "kind": "pageview" if n % 5 else "custom", "name": None if n % 5 else "e",
            "host": "localhost", "path": f"/p{n % 9}", "referrer": "direct", "utm_source": None, "utm_medium": None,
            "utm_campaign": None, "utm_term": None, "utm_content": None, "visitor_id": visitor, "browser": "Chrome",
            "os": "Linux", "device": "desktop", "country": "XX", "status": 200, "props": None,
        })  # fmt: skip
    server.ctx.writer.flush()
    db = server.config["db"]
    assert prisme_lite.check(db) == 0 and "ok: the daily counts equal the rows they count" in capsys.readouterr().out
    assert prisme_lite.main(["prune", "--db", db, "--older-than", "5"]) == 0
    assert prisme_lite.check(db) == 0, capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT min(day) FROM daily_counts WHERE n != 0").fetchone()[0] == NOW // DAY - 5
        assert conn.execute("SELECT min(ts) FROM events").fetchone()[0] >= (NOW // DAY - 5) * DAY


def test_an_export_piped_into_head_ends_quietly(server):
    import subprocess

    from conftest import command

    fill(server.config["db"], 20_000)
    pipeline = subprocess.run(
        f"{' '.join(command())} export --db {server.config['db']} | head -n 2",
        shell=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert pipeline.stdout.startswith("time,id,ts,") and pipeline.stdout.count("\n") == 2
    assert pipeline.stderr == ""  # no "Broken pipe"


def send_one_of_each_family(server, transaction="ORDER-1", web=True):
    """Real rows of every export kind, each through its own API: web events (and so a session), server events, a
    widget beacon and a checkout (with two products); `web=False` leaves out the web events."""
    client = server.client
    page = {
        "User-Agent": CHROME,
        "Origin": "https://blog.example.com",
        "X-Prisme-Referrer": "https://blog.example.com/a",
    }
    if web:
        client.post("/api/v1/events/pageviews", headers=page, status=200)
        client.post_json("/api/v1/events/custom/signup", {"plan": "pro"}, headers=page, status=200)
        text = {**page, "Content-Type": "text/plain"}
        client.post("/api/v1/events/outbound-links", "https://other.example.org/x", headers=text, status=200)
        client.post("/api/v1/events/file-downloads", "https://blog.example.com/f.pdf", headers=text, status=200)
    with sqlite3.connect(server.config["db"]) as conn:
        capture = prisme_lite.create_access_token(conn, ["capture_publish"], "backend")[1]
        public = prisme_lite.create_access_token(conn, ["track_public"], "shop")[1]
    events = [
        {"label": "View", "timestamp": 1609588800, "content_item": {"id": "c-1"}, "customer": {"id": "u-1"}},
        {"label": "Like", "content_item": {"id": "c-1"}, "customer": {"id": "u-2"}},
    ]
    client.post_json("/events", events, headers={"Authorization": f"Bearer {capture}"}, status=202)
    beacon = f"auth_token={public}&analytics_id=visitor-42"
    client.get(f"/track/widget/w-1/category/12/render.json?{beacon}&pics=8", headers={"User-Agent": CHROME})
    client.get(
        f"/track/transaction/{transaction}/checkout.json?{beacon}&products[]=p-1:120.50&products[]=socks:9.99"
        "&currency_code=EUR",
        headers={"User-Agent": CHROME},
    )
    server.ctx.writer.flush()


# kind: (rows it exports, a column, its values in order)
EXPORTED = {
    "events": (4, "kind", ["pageview", "custom", "outbound", "download"]),
    "pageview": (1, "path", ["/a"]),
    "custom": (1, "name", ["signup"]),
    "outbound": (1, "name", ["https://other.example.org/x"]),
    "download": (1, "name", ["https://blog.example.com/f.pdf"]),
    "sessions": (1, "entry_path", ["/a"]),
    "server": (2, "label", ["View", "Like"]),
    "widget": (1, "instance_id", ["w-1"]),
    "checkouts": (1, "products", ['["p-1:120.5000","socks:9.9900"]']),
}


def test_every_export_kind_is_covered_here():
    assert set(EXPORTED) == set(prisme_lite.EXPORTS)


@pytest.mark.parametrize("kind", list(EXPORTED))
def test_every_kind_exports_its_rows_on_the_command_line_and_over_http(server, tmp_path, kind, capsys):
    send_one_of_each_family(server)
    db, admin = server.config["db"], {"Authorization": f"Bearer {server.ctx.admin_token()}"}
    rows, column, values = EXPORTED[kind]
    exported = {}
    for fmt in ("csv", "ndjson"):
        out = tmp_path / f"{kind}.{fmt}"
        assert prisme_lite.main(["export", "--db", db, "--kind", kind, "--format", fmt, "-o", str(out)]) == 0, (
            capsys.readouterr().err
        )
        answer = server.client.get(f"/api/v1/export?kind={kind}&format={fmt}", headers=admin, status=200)
        assert answer.text == out.read_text(encoding="utf-8")  # the same rows, whichever way they leave
        if fmt == "csv":
            exported[fmt] = list(csv.DictReader(io.StringIO(answer.text)))
        else:
            exported[fmt] = [{k: "" if v is None else str(v) for k, v in json.loads(line).items()}
                             for line in answer.text.splitlines()]  # fmt: skip
        assert len(exported[fmt]) == rows
        assert [row[column] for row in exported[fmt]] == values
    assert exported["csv"] == exported["ndjson"]


RAW_TABLES = {  # every family's raw rows, by the time retention goes by
    "events": "ts", "sessions": "last_seen", "server_events": "ts", "widget_events": "ts", "checkouts": "ts",
}  # fmt: skip


def raw_rows(server):
    """The times of every raw row, per table (checkout products under their checkout's time)."""
    found = {table: sorted(r["t"] for r in server.rows(f"SELECT {column} AS t FROM {table}"))
             for table, column in RAW_TABLES.items()}  # fmt: skip
    found["checkout_products"] = sorted(
        r["t"] for r in server.rows("SELECT c.ts AS t FROM checkout_products JOIN checkouts c USING (transaction_id)")
    )
    return found


def old_and_new_rows_of_every_family(make_server, monkeypatch, **settings):
    """A server with rows of every family but web events from 10 days ago, then every family's rows from now (with
    a server event from 2021, as in the README): the oldest web event is recent."""
    server = make_server(**settings)
    with sqlite3.connect(server.config["db"]) as conn:
        prisme_lite.add_origin(conn, "blog.example.com")
    server.ctx.origins.reload()
    clock = [NOW - 10 * DAY]
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: clock[0])
    send_one_of_each_family(server, "ORDER-OLD", web=False)
    clock[0] = NOW
    send_one_of_each_family(server, "ORDER-NEW")
    rows = raw_rows(server)
    assert {table: len(times) for table, times in rows.items()} == {
        "events": 4, "sessions": 1, "server_events": 4, "widget_events": 2, "checkouts": 2, "checkout_products": 4
    }  # fmt: skip
    assert rows["server_events"][0] == 1609588800_000 and rows["events"][0] == NOW
    return server


def only_recent_rows_are_left(server, capsys):
    cutoff = (NOW // DAY - 3) * DAY
    assert {table: len(times) for table, times in raw_rows(server).items()} == {
        "events": 4, "sessions": 1, "server_events": 1, "widget_events": 1, "checkouts": 1, "checkout_products": 2
    }  # fmt: skip
    assert all(t >= cutoff for times in raw_rows(server).values() for t in times)
    # The Like of 10 days ago is pruned as an event; the relation it made is kept (like counters and customers).
    assert len(server.rows("SELECT * FROM customer_relations")) == 1
    capsys.readouterr()
    assert prisme_lite.check(server.config["db"]) == 0, capsys.readouterr().out


def test_background_retention_prunes_every_family_not_only_web_events(make_server, monkeypatch, capsys):
    server = old_and_new_rows_of_every_family(make_server, monkeypatch, retention_days=3)
    server.ctx.writer.maintained_at = float("-inf")
    for _ in range(5):
        server.ctx.writer.run(lambda conn: None)
    only_recent_rows_are_left(server, capsys)
    assert server.ctx.writer.maintenance_due is False


def test_prune_on_the_command_line_prunes_every_family(make_server, monkeypatch, capsys):
    server = old_and_new_rows_of_every_family(make_server, monkeypatch)
    capsys.readouterr()
    assert prisme_lite.main(["prune", "--db", server.config["db"], "--older-than", "3"]) == 0
    # 3 server events (both of 2021, and the old Like), 1 beacon, 1 checkout and its 2 products
    assert capsys.readouterr().out == "deleted 7 rows older than 3 days\n"
    only_recent_rows_are_left(server, capsys)


def test_old_server_events_are_pruned_in_small_batches_while_recent_pageviews_exist(make_server, monkeypatch):
    server = make_server()
    monkeypatch.setattr(prisme_lite, "PRUNE_BATCH", 2)
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: NOW)
    fill(server.config["db"], 3, start=NOW - 1000)
    with sqlite3.connect(server.config["db"]) as conn:
        token = prisme_lite.create_access_token(conn, ["capture_publish"], "backend")[1]
    old = [{"label": "View", "timestamp": 1609588800 + n, "content_item": {"id": "c"}, "customer": {"id": "u"}}
           for n in range(5)]  # fmt: skip
    server.client.post_json("/events", old, headers={"Authorization": f"Bearer {token}"}, status=202)
    server.ctx.writer.flush()
    retention, conn, left = prisme_lite.Retention(3), sqlite3.connect(server.config["db"]), []
    while retention(conn, NOW):  # what the writer runs in its transactions, one batch each
        left.append(conn.execute("SELECT count(*) FROM server_events").fetchone()[0])
    assert left == [3, 1, 0]
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3  # the recent pageviews stay


def test_a_session_still_going_does_not_keep_the_ended_ones_behind_it(tmp_path):
    db = str(tmp_path / "s.db")
    prisme_lite.open_database(db)
    old = NOW - 10 * DAY
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO sessions (site, host, visitor_id, started_at, last_seen, entry_path, exit_path, pageviews,"
            " referrer, browser, os, device, country)"
            " VALUES ('localhost', 'localhost', ?, ?, ?, '/', '/', 2, 'direct', 'Chrome', 'Linux', 'desktop', 'XX')",
            [("still-here", old, NOW - 60_000), ("gone", old + 1000, old + 2000)],
        )
    conn = sqlite3.connect(db)
    retention = prisme_lite.Retention(3)
    while retention(conn, NOW):
        pass
    assert [row[0] for row in conn.execute("SELECT visitor_id FROM sessions")] == ["still-here"]
    assert retention.deleted == 1


def test_a_lone_carriage_return_stays_inside_its_cell(server, client):
    """`utm_source=x%0D=1+1`: unquoted, the CR ends the row and the next one starts with a formula (issue 18.2)."""
    client.post(
        "/api/v1/events/pageviews",
        headers={
            "Origin": "https://blog.example.com",
            "X-Prisme-Referrer": "https://blog.example.com/a?utm_source=x%0D=1+1&utm_medium=%0D%0A@SUM(A1)",
            "User-Agent": CHROME,
        },
        status=200,
    )
    admin = {"Authorization": f"Bearer {server.ctx.admin_token()}"}
    text = client.get("/api/v1/export?format=csv&kind=pageview", headers=admin).text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert len(rows) == 2  # the header and the pageview, however a reader splits lines
    assert not any(cell.startswith(prisme_lite.FORMULA_START) for row in rows for cell in row)
    record = dict(zip(rows[0], rows[1], strict=True))
    assert (record["utm_source"], record["utm_medium"]) == ("x\r=1 1", "'\r\n@SUM(A1)")


def test_export_to_an_existing_file_replaces_it(server, client, tmp_path):
    from conftest import cli

    out = tmp_path / "out.csv"
    out.write_text("x" * 100_000)
    assert cli("export", "-o", str(out), db=server.config["db"]).returncode == 0
    assert out.read_text().startswith("time,") and "x" not in out.read_text()
