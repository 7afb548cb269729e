"""Export and retention (SPEC §7): streamed CSV and NDJSON in constant memory, safe in spreadsheets; pruning."""

import csv
import io
import json
import sqlite3

import webtest

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
