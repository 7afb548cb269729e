"""Faults (SPEC §8): a full disk, a read-only file system or a locked database gets 503 with a reason, never an
acknowledgement of what was not stored, the healthcheck says why, and the server recovers by itself when the fault
clears. The disk tests run real processes on a small tmpfs (mounting one needs root)."""

import errno
import json
import os
import sqlite3
import subprocess
import time
from collections import Counter

import pytest
from conftest import CHROME, cli, command

import prisme_lite

pytestmark = [pytest.mark.server, pytest.mark.reliability]


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:  # a container without the right to mount
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def send_event(server, n):
    """A custom event with 2 KiB of properties, so that the disk fills after a few hundred; (status, body)."""
    body = json.dumps({"n": n, "padding": "x" * 1000, "more": "y" * 1000})
    connection = server.connection()
    try:
        connection.request(
            "POST", "/api/v1/events/custom/fill", body=body,
            headers={"Content-Type": "application/json", "X-Prisme-Referrer": "http://localhost/", "User-Agent": CHROME},
        )  # fmt: skip
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def test_a_full_disk_is_503_with_a_reason_and_the_server_recovers_by_itself(small_disk, run):
    db = small_disk / "prisme.db"
    server = run("--rate-limit", "0", db=db)
    acknowledged, statuses, reasons = [], Counter(), Counter()
    refused_in_a_row, n = 0, 0
    while refused_in_a_row < 30 and n < 20_000:
        status, body = send_event(server, n)
        statuses[status] += 1
        if status == 200:
            acknowledged.append(n)
            refused_in_a_row = 0
        else:
            assert status == 503, (status, body)  # never a 500, never a hang (the client times out at 10 s)
            reasons[json.loads(body)["error"].split(":")[0]] += 1
            refused_in_a_row += 1
        n += 1
    assert refused_in_a_row == 30 and len(acknowledged) > 100, statuses
    assert set(reasons) <= {"the journal cannot be written", "events are not reaching the database"}, reasons
    health = server.connection()
    health.request("GET", "/api/v1/healthcheck")
    answer = health.getresponse()
    assert answer.status == 503  # the process is up, and tells monitoring why it refuses
    assert json.loads(answer.read())["error"].startswith(("the disk is full", "the database cannot take writes"))

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space comes back
    deadline = time.monotonic() + 30
    while (status := send_event(server, n)[0]) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 200
    acknowledged.append(n)
    for more in range(n + 1, n + 50):  # and keeps taking events
        assert send_event(server, more)[0] == 200
        acknowledged.append(more)
    health = server.connection()
    health.request("GET", "/api/v1/healthcheck")
    assert health.getresponse().status == 200
    assert server.stop() == 0
    with sqlite3.connect(db) as conn:
        stored = [json.loads(props)["n"] for (props,) in conn.execute("SELECT props FROM events ORDER BY id")]
    assert sorted(stored) == acknowledged  # every acknowledged event once, and none that was refused
    checked = cli("check", db=db)
    assert checked.returncode == 0, checked.stdout


def test_a_read_only_database_is_a_one_line_refusal_and_serves_again_once_writable(small_disk, run):
    db = small_disk / "prisme.db"
    assert cli("init", db=db).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    refused = subprocess.run(
        [*command(), "serve", "--db", str(db), "--port", "0"], capture_output=True, text=True, timeout=30,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        refused.stderr.strip()
        == f"prisme-lite: db: {db} is read-only (prisme-lite writes the database, its WAL and its journal)"
    )
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    server = run("--rate-limit", "0", db=db)
    assert send_event(server, 1)[0] == 200
    assert server.stop() == 0


def test_a_locked_database_makes_the_healthcheck_say_why_until_it_clears(server, client):
    """A long write lock from elsewhere (a backup, a migration): the healthcheck tells monitoring, then heals."""
    blocker = sqlite3.connect(server.config["db"], isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    server.ctx.writer.conn.execute("PRAGMA busy_timeout = 50")
    try:
        with pytest.raises(prisme_lite.Unavailable):
            server.ctx.writer.run(lambda conn: None)
        health = client.get("/api/v1/healthcheck", status=503)
        assert health.json == {"status": "unavailable", "error": "the database cannot take writes: database is locked"}
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    server.ctx.writer.run(lambda conn: None)  # the next commit goes through
    assert client.get("/api/v1/healthcheck").json == {"status": "ok"}


def test_a_file_system_gone_read_only_is_503_with_the_reason_and_nothing_is_stored(server, client, monkeypatch):
    """Linux refuses `mount -o remount,ro` while the server holds its files open for writing; the kernel still
    forces it after disk errors (errors=remount-ro). Every write then fails with EROFS: simulated here."""
    page = {"X-Prisme-Referrer": "http://localhost/a", "User-Agent": CHROME}
    client.post("/api/v1/events/pageviews", headers=page, status=200)
    real_write, real_statvfs = prisme_lite.journal_write, os.statvfs
    journal = server.ctx.writer.fd

    def read_only_write(fd, data):
        if fd == journal:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_write(fd, data)

    def read_only_statvfs(path):
        values = list(real_statvfs(path))
        values[8] |= os.ST_RDONLY  # f_flag
        return os.statvfs_result(values)

    monkeypatch.setattr(prisme_lite, "journal_write", read_only_write)
    monkeypatch.setattr(prisme_lite.os, "statvfs", read_only_statvfs)
    refused = client.post("/api/v1/events/pageviews", headers=page, status=503)
    assert refused.json == {"error": "the journal cannot be written: Read-only file system"}
    pixel = client.get(
        "/api/v1/noscript/events/pageviews", headers={"Referer": "http://localhost/b", **page}, status=503
    )
    assert pixel.headers["X-Prisme-Error"] == "the journal cannot be written: Read-only file system"
    health = client.get("/api/v1/healthcheck", status=503)
    assert health.json["error"] == "the database's file system is read-only"
    monkeypatch.undo()  # writable again
    client.post("/api/v1/events/pageviews", headers={**page, "X-Prisme-Referrer": "http://localhost/c"}, status=200)
    assert client.get("/api/v1/healthcheck").json == {"status": "ok"}
    assert [event["path"] for event in server.events()] == ["/a", "/c"]
