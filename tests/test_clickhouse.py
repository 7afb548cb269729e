"""The ClickHouse mirror (SPEC §10), against a real clickhouse-server process (the `clickhouse` fixture)."""

import pytest
from conftest import cli

import prisme_lite

pytestmark = pytest.mark.server

TABLES = ["checkouts", "counter_increments", "events", "server_events", "sessions", "widget_events"]


def test_init_creates_every_table_and_running_it_again_changes_nothing(clickhouse, tmp_path):
    database, url = clickhouse.database()
    for _ in range(2):
        done = cli("clickhouse", "init", "--clickhouse-url", url, db=tmp_path / "absent.db")
        assert done.returncode == 0, done.stderr
        assert database in done.stdout
    assert clickhouse.query("SHOW TABLES", database).split() == TABLES
    assert not (tmp_path / "absent.db").exists()  # init needs ClickHouse only
    engines = clickhouse.rows(f"SELECT name, engine FROM system.tables WHERE database = '{database}'")
    assert {row["engine"] for row in engines} == {"ReplacingMergeTree"}


def test_insert_ships_rows_that_final_reads_once_at_their_latest_version(clickhouse):
    database, url = clickhouse.database()
    target = prisme_lite.ClickHouseTarget.parse(url)
    prisme_lite.clickhouse_init(target)
    row = {"client_id": "c", "action_id": "like", "page_id": "p", "day": 20424, "node_id": "n1"}
    assert target.insert("counter_increments", [row | {"count": 1, "version": 1}]) == 1
    target.insert("counter_increments", [row | {"count": 3, "version": 2}, row | {"count": 1, "version": 1}])
    assert clickhouse.rows("SELECT count, version FROM counter_increments FINAL", database) == [
        {"count": 3, "version": 2}
    ]
    with pytest.raises(prisme_lite.ClickHouseError, match="answered 4"):
        target.insert("no_such_table", [row])


def test_a_url_with_a_password_is_masked_and_sent_as_basic_auth():
    url = "http://alice:s3cret@127.0.0.1:8123/?database=stats&max_insert_block_size=1000"
    target = prisme_lite.ClickHouseTarget.parse(url)
    assert target.endpoint == "http://127.0.0.1:8123/"
    assert target.database == "stats"
    assert target.settings == (("max_insert_block_size", "1000"),)
    assert target.headers == {"Authorization": "Basic YWxpY2U6czNjcmV0"}
    assert prisme_lite.masked_url(url) == "http://alice:***@127.0.0.1:8123/?database=stats&max_insert_block_size=1000"
    with pytest.raises(prisme_lite.ConfigError, match="database must be"):
        prisme_lite.ClickHouseTarget.parse("http://127.0.0.1:8123/?database=a;DROP")
