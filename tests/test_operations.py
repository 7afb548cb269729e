"""Operations (SPEC §1, §8): online backup with everything acknowledged, and the integrity check."""

import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import CHROME, cli, make_config
from test_server import acknowledged_at_least, load, stored_paths
from test_storage import stored_then_killed

import prisme_lite


def restore(backup, db):
    """What the README says: put the backup and its journal (and dead-letter) file where the database goes."""
    shutil.copy(backup, db)
    for beside in [*backup.parent.glob(backup.name + ".journal-*"), *backup.parent.glob(backup.name + ".dead-letters")]:
        shutil.copy(beside, str(db) + beside.name[len(backup.name) :])


@pytest.mark.server
def test_an_online_backup_holds_every_event_acknowledged_before_it_began(run, tmp_path):
    process = run("--rate-limit", "0")
    acknowledged = []
    workers = load(process, threads=4, per_thread=100_000, acknowledged=acknowledged)
    acknowledged_at_least(acknowledged, 101)  # then a backup in the middle of the traffic
    before = set(acknowledged)  # acknowledged before the backup began
    backup = tmp_path / "copy" / "backup.db"
    backup.parent.mkdir()
    result = cli("backup", str(backup), db=tmp_path / "prisme.db")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backed up {tmp_path / 'prisme.db'} to {backup}")
    assert process.stop() == 0
    for worker in workers:
        worker.join()
    restored = tmp_path / "restored" / "prisme.db"
    restored.parent.mkdir()
    restore(backup, restored)
    assert cli("check", db=restored).returncode == 0  # replays the journal tail, then checks
    paths = stored_paths(restored)
    assert before <= set(paths), f"{len(before - set(paths))} acknowledged events missing from the backup"
    assert len(paths) == len(set(paths)), "an event is in the backup twice"


def test_a_backup_includes_journal_lines_not_yet_folded(tmp_path):
    config = make_config(tmp_path)
    stored_then_killed(config, range(3), range(3, 5))  # 3 and 4 acknowledged; the server died before folding them
    backup = tmp_path / "b" / "backup.db"
    backup.parent.mkdir()
    assert prisme_lite.main(["backup", str(backup), "--db", config["db"]]) == 0
    restored = tmp_path / "r" / "prisme.db"
    restored.parent.mkdir()
    restore(backup, restored)
    ctx = prisme_lite.Context(make_config(restored.parent))
    ctx.close()
    with sqlite3.connect(restored) as conn:
        assert [row[0] for row in conn.execute("SELECT path FROM events ORDER BY ts")] == [f"/{n}" for n in range(5)]
    assert prisme_lite.main(["backup", str(backup), "--db", config["db"]]) == 2  # never over an existing file


def test_check_passes_a_healthy_database_and_names_each_broken_invariant(server, client, capsys):
    client.post(
        "/api/v1/events/pageviews",
        headers={"Origin": "http://localhost", "Referer": "http://localhost/", "User-Agent": CHROME},
        status=200,
    )
    server.ctx.writer.flush()
    assert prisme_lite.main(["check", "--db", server.config["db"]]) == 0
    healthy = capsys.readouterr().out.splitlines()
    assert healthy[0] == "ok: integrity_check" and all(line.startswith("ok: ") for line in healthy)
    with sqlite3.connect(server.config["db"]) as conn:
        conn.execute("UPDATE events SET session_id = 999")
        conn.execute("INSERT INTO counters VALUES ('cl_x', 'likes', 'p', 3)")
        conn.execute("INSERT INTO counter_days VALUES ('cl_x', 'likes', 'p', 1, 2)")
    assert prisme_lite.main(["check", "--db", server.config["db"]]) == 1
    broken = capsys.readouterr().out.splitlines()
    assert "problem: every event's session exists: not so for 1" in broken
    assert "problem: each counter equals the sum of its days: not so for cl_x likes p" in broken
    assert prisme_lite.main(["check", "--db", str(server.config["db"]) + ".missing"]) == 2


def scrape(client, token, status=200):
    """GET /metrics, parsed by prometheus_client's parser of the text format: {name: {labels (sorted): value}}."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"} if token else {}, status=status)
    if status != 200:
        return answer
    assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    metrics = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            metrics.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return metrics


def test_metrics_count_what_the_server_acknowledged_stored_dropped_and_refused(server, client):
    page = {"User-Agent": CHROME, "Referer": "http://localhost/a"}
    for n in range(3):  # three pages: the same one again would be a reload, not stored
        client.get("/api/v1/noscript/events/pageviews", headers={**page, "Referer": f"http://localhost/{n}"})
    client.get("/api/v1/noscript/events/pageviews", headers={**page, "User-Agent": "Googlebot/2.1"})  # dropped: bot
    client.get("/api/v1/noscript/events/pageviews", headers={**page, "Sec-Purpose": "prefetch"})  # dropped: prefetch
    client.post("/api/v1/events/pageviews", headers={**page, "Referer": "http://elsewhere.example/"}, status=400)
    client.get("/api/v1/stats/overview", status=401)
    server.ctx.writer.flush()
    assert scrape(client, None, status=401).json["error"].startswith("access token missing")
    with sqlite3.connect(server.config["db"]) as conn:
        stats_token = prisme_lite.create_access_token(conn, ["stats_read"], "dashboards")[1]
        token = prisme_lite.create_access_token(conn, ["metrics_read"], "prometheus")[1]
    assert "lacks the metrics_read scope" in scrape(client, stats_token, status=403).json["error"]
    with sqlite3.connect(server.config["db"]) as conn:
        stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    metrics = scrape(client, token)
    assert stored == 3
    assert metrics["prisme_events_acknowledged_total"] == {(("family", "web"),): 3.0}
    assert metrics["prisme_events_stored_total"] == {(("family", "web"),): 3.0}
    assert metrics["prisme_events_dropped_total"] == {(("reason", "bot"),): 1.0, (("reason", "prefetch"),): 1.0}
    responses = metrics["prisme_http_responses_total"]
    assert responses[(("code", "2xx"), ("family", "web"))] == 5.0
    assert responses[(("code", "4xx"), ("family", "web"))] == 1.0
    assert responses[(("code", "4xx"), ("family", "stats"))] == 1.0
    assert responses[(("code", "4xx"), ("family", "metrics"))] == 2.0  # the two refused scrapes before this one
    durations = metrics["prisme_http_request_duration_seconds_bucket"]
    bounds = [*map(repr, prisme_lite.DURATION_BUCKETS), "+Inf"]
    web = [durations[("family", "web"), ("le", bound)] for bound in bounds]
    assert web == sorted(web) and web[-1] == 6.0  # cumulative, to every request
    assert metrics["prisme_http_request_duration_seconds_count"][(("family", "web"),)] == 6.0
    assert metrics["prisme_http_request_duration_seconds_sum"][(("family", "web"),)] > 0
    assert metrics["prisme_journal_backlog_bytes"] == {(): 0.0}
    assert metrics["prisme_writer_lag_seconds"] == {(): 0.0}  # everything acknowledged is stored
    assert metrics["prisme_writer_failing"] == {(): 0.0}
    assert metrics["prisme_last_commit_age_seconds"][()] >= 0
    sizes = metrics["prisme_database_bytes"]
    assert sizes[(("file", "database"),)] == Path(server.config["db"]).stat().st_size
    assert metrics["prisme_dead_letters_total"] == {(): 0.0}


def test_metrics_count_rate_limited_requests(make_server):
    server = make_server(rate_limit=2)
    page = {"User-Agent": CHROME, "Referer": "http://localhost/a"}
    for status in (200, 200, 429):
        server.client.get("/api/v1/noscript/events/pageviews", headers=page, status=status)
    metrics = scrape(server.client, server.ctx.admin_token())
    assert metrics["prisme_rate_limited_total"] == {(("family", "web"),): 1.0}
    assert metrics["prisme_events_acknowledged_total"] == {(("family", "web"),): 2.0}


def test_the_writer_lag_and_backlog_grow_while_commits_fail_and_fall_back_after(server, client, monkeypatch):
    """While the database refuses writes, acknowledged events wait in the journal: /metrics says how many bytes,
    for how long, and that commits fail; once they work again, all of it is stored and the gauges are back at 0."""
    writer, token = server.ctx.writer, server.ctx.admin_token()  # the admin token is made by the writer: before
    failing = [True]
    real_fold = writer._fold

    def fold(lines):
        if failing[0] and lines:
            raise sqlite3.OperationalError("disk I/O error")
        return real_fold(lines)

    monkeypatch.setattr(writer, "_fold", fold)
    client.get("/api/v1/noscript/events/pageviews", headers={"User-Agent": CHROME, "Referer": "http://localhost/a"})
    deadline = time.monotonic() + 10
    while writer.failure is None and time.monotonic() < deadline:  # until the writer has tried, and failed
        time.sleep(0.01)
    metrics = scrape(client, token)
    assert metrics["prisme_journal_backlog_bytes"][()] > 0
    assert metrics["prisme_writer_lag_seconds"][()] > 0
    assert metrics["prisme_writer_failing"] == {(): 1.0}
    assert "prisme_events_stored_total" not in metrics  # none yet: the family has no sample
    failing[0] = False
    while writer.failure is not None and time.monotonic() < deadline + 10:  # its next retry (once a second) works
        time.sleep(0.01)
    writer.flush()
    metrics = scrape(client, token)
    assert metrics["prisme_journal_backlog_bytes"] == {(): 0.0} and metrics["prisme_writer_lag_seconds"] == {(): 0.0}
    assert metrics["prisme_events_stored_total"] == {(("family", "web"),): 1.0}
    assert metrics["prisme_writer_failing"] == {(): 0.0}
