"""The journal's format (SPEC §8): versioned lines, older lines upgraded and replayed, and dead letters for a line
that cannot be applied, which `check` reports, a backup carries and `dead-letters retry` stores once after a fix."""

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time

import pytest
from conftest import cli, make_config
from test_operations import restore
from test_storage import paths, stored_then_killed, web_event, write_unfolded

import prisme_lite

# A prisme-lite of a later release, as far as these tests need one: its upgrade of version 1 lines fills in the
# page status, which (in this story) an older prisme-lite did not write. The command line is the real one.
FIXED_RELEASE = """
import sys
import prisme_lite

def upgrade_1(kind, record):
    if kind == "web":
        record.setdefault("status", 200)
    return kind, record

prisme_lite.JOURNAL_UPGRADES[1] = upgrade_1
sys.exit(prisme_lite.main())
"""


def without_status(n):
    """A web event as an older prisme-lite might have journaled it: no `status`, which the applier needs."""
    event = web_event(n)
    del event["status"]
    return event


def retry_with_the_fix(tmp_path, db):
    """`prisme-lite dead-letters retry` by the later release (FIXED_RELEASE), its command line the real one."""
    fixed_release = tmp_path / "fixed_release.py"
    fixed_release.write_text(FIXED_RELEASE)
    return subprocess.run(
        [sys.executable, str(fixed_release), "dead-letters", "retry", "--db", str(db)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def dead_letters(db):
    with open(f"{db}.dead-letters", encoding="ascii") as file:
        return [json.loads(line) for line in file]


def test_new_lines_carry_the_version_and_unversioned_ones_still_replay(tmp_path):
    config = make_config(tmp_path)
    ctx = prisme_lite.Context(config)
    ctx.writer.append("web", web_event(0))
    ctx.close()
    with open(config["db"] + ".journal-1", "rb") as file:
        assert json.loads(file.readline())[:2] == [prisme_lite.JOURNAL_VERSION, "web"]
    write_unfolded(config["db"], [web_event(1), web_event(2)])  # the format before versions: ["web", {...}]
    ctx = prisme_lite.Context(config)
    ctx.close()
    assert paths(config["db"]) == ["/0", "/1", "/2"]
    assert not os.path.exists(config["db"] + ".dead-letters")


@pytest.mark.server
def test_unversioned_lines_of_every_family_replay_into_rows_after_a_restart(run, tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    server = dict.fromkeys(prisme_lite.SERVER_EVENT_COLUMNS, None)
    server.update(
        ts=1_790_000_000_000,
        received_at=1_790_000_000_000,
        label="View",
        customer_id="c1",
        referrer="direct",
        token_id="t",
    )
    widget = dict.fromkeys(prisme_lite.WIDGET_EVENT_COLUMNS, None)
    widget.update(ts=1_790_000_000_000, instance_id="i1", widget="w", action="render", analytics_id="a", token_id="t")
    with open(f"{db}.journal-1", "ab") as file:  # what a prisme-lite before journal versions left unfolded
        for kind, record in (("web", web_event(0)), ("server", {"events": [server]}), ("widget", widget)):
            file.write(json.dumps([kind, record]).encode() + b"\n")
    assert run(db=db).stop() == 0
    with sqlite3.connect(db) as conn:
        assert [row[0] for row in conn.execute("SELECT path FROM events")] == ["/0"]
        assert conn.execute("SELECT label, customer_id FROM server_events").fetchall() == [("View", "c1")]
        assert conn.execute("SELECT instance_id, action FROM widget_events").fetchall() == [("i1", "render")]
    assert not os.path.exists(f"{db}.dead-letters")


@pytest.mark.server
def test_a_line_that_cannot_be_applied_is_kept_reported_backed_up_and_stored_once_after_the_fix(run, tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    write_unfolded(db, [web_event(0), without_status(1), web_event(2)])
    bad_line = json.dumps(["web", without_status(1)])
    assert run(db=db).stop() == 0  # replays the three lines: two are stored, one is kept
    assert paths(db) == ["/0", "/2"]
    [letter] = dead_letters(db)
    assert letter["line"] == bad_line  # the original bytes
    assert letter["position"] == f"1:{len(json.dumps(['web', web_event(0)])) + 1}"  # where the line starts
    assert letter["reason"] == "KeyError: 'status'"
    assert stat.S_IMODE(os.stat(f"{db}.dead-letters").st_mode) == 0o600

    checked = cli("check", db=db)
    assert checked.returncode == 0, checked.stdout  # the database is sound: the line is kept, not lost
    assert (
        f"warning: 1 journal line could not be stored, kept in {db}.dead-letters: `prisme-lite dead-letters list`"
        " says why; fix that, then `prisme-lite dead-letters retry`\n"
    ) in checked.stdout
    listed = cli("dead-letters", "list", db=db)
    assert listed.returncode == 0 and listed.stdout.startswith(letter["position"] + "  "), listed
    assert "KeyError: 'status'" in listed.stdout

    process = run(db=db)  # a restart neither loses the dead letter nor keeps it twice
    refused = cli("dead-letters", "retry", db=db)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"prisme-lite: dead-letters retry: a server (pid {process.proc.pid}) is running on {db}; stop it first"
        " (retry, then start it again)\n"
    )
    assert process.stop() == 0
    assert dead_letters(db) == [letter] and paths(db) == ["/0", "/2"]

    backup = tmp_path / "backups" / "copy.db"
    backup.parent.mkdir()
    backed_up = cli("backup", str(backup), db=db)
    assert backed_up.returncode == 0, backed_up.stderr
    assert f"(+1 dead letter, in {backup}.dead-letters)" in backed_up.stdout
    assert dead_letters(backup) == [letter]

    unfixed = cli("dead-letters", "retry", db=db)
    assert unfixed.returncode == 1
    assert unfixed.stdout == (
        "stored 0 of 1 dead letter; 1 still cannot be stored (`prisme-lite dead-letters list` says why):"
        " KeyError: 'status'\n"
    )
    assert [entry["line"] for entry in dead_letters(db)] == [bad_line] and paths(db) == ["/0", "/2"]

    retried = retry_with_the_fix(tmp_path, db)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout == "stored 1 of 1 dead letter\n"
    assert sorted(paths(db)) == ["/0", "/1", "/2"]
    assert not os.path.exists(f"{db}.dead-letters")
    assert cli("dead-letters", "retry", db=db).stdout == f"no dead letters beside {db}\n"
    assert run(db=db).stop() == 0  # nor does a restart store it again
    assert sorted(paths(db)) == ["/0", "/1", "/2"]
    checked = cli("check", db=db)
    assert checked.returncode == 0 and "ok: no dead letters" in checked.stdout, checked.stdout

    # The backup still holds its own dead letter, and the same fix stores it there too.
    restored = tmp_path / "restored.db"
    for suffix in ("", ".journal-1", ".dead-letters"):
        os.replace(f"{backup}{suffix}", f"{restored}{suffix}")
    assert paths(restored) == ["/0", "/2"]
    assert retry_with_the_fix(tmp_path, restored).returncode == 0
    assert sorted(paths(restored)) == ["/0", "/1", "/2"]


def test_a_retry_cut_short_after_its_commit_never_stores_a_line_twice(tmp_path, monkeypatch, capsys):
    config = make_config(tmp_path)
    prisme_lite.Context(config).close()
    write_unfolded(config["db"], [without_status(1)])
    prisme_lite.Context(config).close()
    assert len(dead_letters(config["db"])) == 1
    monkeypatch.setitem(prisme_lite.JOURNAL_UPGRADES, 1, lambda kind, record: (kind, {"status": 200, **record}))

    def power_cut(path, letters):
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as cut:
        cut.setattr(prisme_lite, "rewrite_dead_letters", power_cut)
        assert prisme_lite.main(["dead-letters", "retry", "--db", config["db"]]) == 1
    assert paths(config["db"]) == ["/1"]  # committed, but still in the file
    assert len(dead_letters(config["db"])) == 1
    assert prisme_lite.main(["dead-letters", "retry", "--db", config["db"]]) == 0
    assert paths(config["db"]) == ["/1"]  # once
    assert not os.path.exists(config["db"] + ".dead-letters")
    with sqlite3.connect(config["db"]) as conn:
        assert prisme_lite.get_meta(conn, "dead_letters_stored") is None
    assert capsys.readouterr().out.endswith("stored 1 of 1 dead letter\n")


def test_a_line_of_a_newer_format_is_kept_until_prisme_lite_knows_it(tmp_path, monkeypatch, capsys):
    """A backup's journal from a newer release restored into this one: kept, then stored after the upgrade."""
    config = make_config(tmp_path)
    prisme_lite.Context(config).close()
    newer = prisme_lite.JOURNAL_VERSION + 1
    with open(config["db"] + ".journal-1", "ab") as file:
        file.write(json.dumps([newer, "web", web_event(1)]).encode() + b"\n")
    prisme_lite.Context(config).close()
    assert paths(config["db"]) == []
    [letter] = dead_letters(config["db"])
    assert letter["reason"] == (
        f"ValueError: journal format {newer} is newer than this prisme-lite's ({newer - 1}): upgrade it"
    )
    monkeypatch.setattr(prisme_lite, "JOURNAL_VERSION", newer)  # the upgrade: a release that writes that format
    monkeypatch.setitem(prisme_lite.JOURNAL_UPGRADES, newer - 1, lambda kind, record: (kind, record))
    assert prisme_lite.main(["dead-letters", "retry", "--db", config["db"]]) == 0
    assert paths(config["db"]) == ["/1"]


def test_a_dead_letter_that_cannot_be_written_holds_the_journal_position_until_it_can(tmp_path, caplog):
    """Disk full, or here a directory in the way: the commit is undone and retried, the line never passed over."""
    config = make_config(tmp_path)
    ctx = prisme_lite.Context(config)
    os.mkdir(config["db"] + ".dead-letters")
    ctx.writer.append("web", without_status(1))
    deadline = time.monotonic() + 10
    while ctx.writer.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "Is a directory" in ctx.writer.failure
    with sqlite3.connect(config["db"]) as conn:
        assert prisme_lite.journal_position(conn) == (1, 0)
    os.rmdir(config["db"] + ".dead-letters")
    ctx.writer.append("web", web_event(2))
    ctx.writer.flush()
    ctx.close()
    assert paths(config["db"]) == ["/2"]
    assert [letter["line"] for letter in dead_letters(config["db"])] == [
        prisme_lite.journal_line("web", without_status(1)).decode().rstrip("\n")
    ]


def test_dead_letters_are_read_once_each_and_a_torn_last_entry_is_cut(tmp_path):
    """A line kept again after its commit was undone (or a crash) is one dead letter; a torn entry is none."""
    db = str(tmp_path / "prisme.db")
    path = prisme_lite.dead_letters_file(db)
    line = b'["web",{"path":"/caf\xc3\xa9\xff"}]'  # not UTF-8 at the end: the bytes survive all the same
    letter = prisme_lite.dead_letter(line, prisme_lite.format_position(3, 120), ValueError("no"))
    prisme_lite.keep_dead_letters(path, [letter])
    with open(path, "ab") as file:
        file.write(b'{"at": "2026-')  # a crash in the middle of the next write
    prisme_lite.keep_dead_letters(path, [letter])
    assert prisme_lite.read_dead_letters(db) == [letter]
    assert letter["line"].encode("utf-8", "surrogateescape") == line
    assert prisme_lite.parse_position(letter["position"]) == (3, 120)


def test_a_line_kept_before_its_commit_is_one_dead_letter_in_the_database_and_in_a_backup(tmp_path, capsys):
    """A crash between keeping a line and committing past it: the restart keeps it again, as the same dead letter;
    a backup taken meanwhile replays that line from its journal tail, so it does not copy the dead letter too."""
    config = make_config(tmp_path)
    stored_then_killed(config, range(2), [])
    write_unfolded(config["db"], [web_event(2), without_status(3)])
    with open(config["db"] + ".journal-1", "rb") as file:
        lines = file.read().splitlines(keepends=True)
    start = sum(len(line) for line in lines[:-1])
    crashed = prisme_lite.dead_letter(lines[-1].rstrip(b"\n"), f"1:{start}", KeyError("status"))
    prisme_lite.keep_dead_letters(config["db"] + ".dead-letters", [crashed])  # and then the process died
    backup = tmp_path / "b" / "backup.db"
    backup.parent.mkdir()
    assert prisme_lite.main(["backup", str(backup), "--db", config["db"]]) == 0
    assert capsys.readouterr().out == (
        f"backed up {config['db']} to {backup} (+2 events not yet folded, in {backup}.journal-1)\n"
    )
    assert not os.path.exists(f"{backup}.dead-letters")
    prisme_lite.Context(config).close()
    assert paths(config["db"]) == ["/0", "/1", "/2"]
    assert prisme_lite.read_dead_letters(config["db"]) == [crashed]
    restored = tmp_path / "r" / "prisme.db"
    restored.parent.mkdir()
    restore(backup, restored)
    prisme_lite.Context(make_config(restored.parent)).close()
    assert paths(restored) == ["/0", "/1", "/2"]
    assert [letter["line"] for letter in prisme_lite.read_dead_letters(str(restored))] == [crashed["line"]]
