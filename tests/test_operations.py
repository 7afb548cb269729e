"""Operations (SPEC §1, §8): online backup with everything acknowledged, and the integrity check."""

import shutil
import sqlite3

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
