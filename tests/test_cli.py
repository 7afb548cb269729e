"""The command line (SPEC §1): what each command prints, its exit code, and what it leaves on disk."""

import os
import re
import shlex
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import cli, command, make_config
from test_storage import stored_then_killed, web_event

import prisme_lite

DAY = 86_400_000
NOW = 1_795_000_000_000  # 2026-11-18T08:26:40Z

NOT_CREATING = [
    ["admin-token"], ["admin-token", "--rotate"], ["origins", "list"], ["origins", "add", "blog.example.com"],
    ["origins", "remove", "blog.example.com"], ["tokens", "create", "--scope", "admin"], ["tokens", "list"],
    ["tokens", "revoke", "tk_x"], ["counters", "list"], ["counters", "show", "likes", "intro"], ["stats"],
    ["export"], ["prune", "--older-than", "7"], ["backup", "copy.db"], ["check"], ["dead-letters", "list"],
    ["dead-letters", "retry"], ["share", "create", "--site", "localhost"], ["share", "list"], ["share", "revoke", "abcd"],
    ["import", "access.log", "--site", "localhost"],
]  # fmt: skip


@pytest.mark.parametrize("args", NOT_CREATING, ids=" ".join)
def test_only_serve_and_init_create_a_database(tmp_path, args):
    typo = tmp_path / "typo.db"
    result = cli(*[str(tmp_path / arg) if arg == "copy.db" else arg for arg in args], db=typo)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"prisme-lite: {args[0]}: no database at {typo}; point --db (or PRISME_DB) at the server's database,"
        f" or create one with `prisme-lite init --db {typo}`\n"
    )
    assert os.listdir(tmp_path) == []  # no database, no WAL, no journal, no backup


def test_a_command_run_from_another_directory_names_the_database_it_looked_for(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PRISME_")}
    result = subprocess.run(
        [*command(), "admin-token"], cwd=elsewhere, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"prisme-lite: admin-token: no database at {elsewhere / 'prisme.db'}; ")
    assert os.listdir(elsewhere) == []
    assert cli("init", db=elsewhere / "prisme.db").returncode == 0  # init does create it, and then the rest works
    assert cli("admin-token", db=elsewhere / "prisme.db").stdout.startswith("pla_")


def test_a_backup_into_a_missing_directory_says_so(tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    result = cli("backup", str(tmp_path / "nowhere" / "copy.db"), db=db)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"prisme-lite: backup: directory {tmp_path / 'nowhere'} does not exist; create it, or choose a FILE in another\n"
    )
    assert not (tmp_path / "nowhere").exists()


def test_removing_an_origin_of_the_settings_says_where_it_comes_from(tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    where = "origins = [...] in the config file, PRISME_ORIGINS or serve --origins"
    default = cli("origins", "remove", "localhost", db=db)
    assert (default.returncode, default.stdout) == (1, "")
    assert default.stderr == (
        "localhost is a built-in default origin, not one added with `origins add`; to stop accepting it, start the"
        f" server with the origins setting listing the hosts you want ({where}; empty for none)\n"
    )
    configured = cli("origins", "remove", "blog.example.com", "--origins", "blog.example.com", db=db)
    assert (configured.returncode, configured.stderr) == (
        1,
        f"blog.example.com comes from the origins setting, not `origins add`; take it out ({where}) and restart"
        " the server\n",
    )


def help_of(*args):
    """A command's --help at 100 columns: its own part, and its settings as {flag: help text on one line}."""
    result = subprocess.run(
        [*command(), *args, "--help"], capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "100"}
    )
    assert (result.returncode, result.stderr) == (0, "")
    own, settings = result.stdout.split("\nsettings:\n")
    flags = re.split(r"\n  (--[a-z0-9-]+) ?", settings)[1:]
    return own, {flag: " ".join(text.split()) for flag, text in zip(flags[::2], flags[1::2], strict=True)}


def flag(key):
    return "--" + key.replace("_", "-")


# Every server setting with the default its --help shows.
DEFAULTS = {
    "db": "./prisme.db", "host": "127.0.0.1", "port": "8000", "origins": "localhost, 127.0.0.1",
    "redirect_hosts": "none", "trust_proxy": "false", "proxy_header": "X-Forwarded-For", "proxy_hops": "1",
    "country_header": "none", "geoip_db": "none", "admin_token": "none", "open_registration": "false",
    "jwt_secret": "none", "rate_limit": "60", "events_rate_limit": "3000", "retention_days": "0",
    "ipv6_prefix": "64", "rate_limit_buckets": "100000", "max_body_bytes": "32768", "session_timeout": "30", "server": "granian",
    "threads": "4", "pin_cpu": "false", "header_timeout": "10", "synchronous": "normal", "access_log": "true",
    "share_min_count": "5",
    "clickhouse_url": "none", "node_id": "none", "stats_source": "sqlite", "clickhouse_retention_days": "0",
}  # fmt: skip


@pytest.mark.parametrize(
    ("args", "own", "keys"),
    [
        (["backup"], ["FILE"], ["db"]),
        (["check"], [], ["db"]),
        (["init"], [], ["db", "synchronous"]),
        (["admin-token"], ["--rotate"], ["db", "synchronous", "admin_token"]),
        (["prune"], ["--older-than"], ["db", "synchronous", "retention_days", "clickhouse_url"]),
        (["export"], ["--format", "--kind", "--from", "--to", "--output"], ["db"]),
        (["stats"], ["--site", "--days"], ["db", "origins"]),
        (["origins", "add"], ["HOST"], ["db", "synchronous"]),
        (["origins", "list"], [], ["db", "origins"]),
        (["origins", "remove"], ["HOST"], ["db", "synchronous", "origins"]),
        (["tokens", "create"], ["--scope", "--name"], ["db", "synchronous"]),
        (["tokens", "list"], [], ["db"]),
        (["counters", "show"], ["ACTION", "PAGE", "--client"], ["db"]),
        (["dead-letters", "list"], [], ["db"]),
        (["dead-letters", "retry"], [], ["db", "synchronous", "session_timeout"]),
        (["clickhouse", "init"], [], ["db", "clickhouse_url"]),
        (["clickhouse", "status"], [], ["db", "clickhouse_url", "node_id"]),
        (["share", "create"], ["--site", "--expires"], ["db", "synchronous", "origins", "host", "port"]),
        (["share", "list"], [], ["db"]),
        (["share", "revoke"], ["TOKEN"], ["db", "synchronous"]),
        (["serve"], [], list(DEFAULTS)),
    ],
    ids=" ".join,
)
def test_help_shows_the_commands_own_arguments_then_the_settings_it_reads_with_defaults(args, own, keys):
    text, settings = help_of(*args)
    assert text.startswith(f"usage: prisme-lite {' '.join(args)} ")
    for argument in own:
        assert re.search(rf"^  (-\w \w+, )?{argument}\b", text, re.MULTILINE), argument
    assert list(settings) == ["--config", *map(flag, keys)]
    for key in keys:
        assert settings[flag(key)].endswith(f"{prisme_lite.SETTINGS[key].help} (default: {DEFAULTS[key]})"), key


def test_serve_help_lists_every_setting_and_backup_help_is_short():
    assert list(DEFAULTS) == list(prisme_lite.SETTINGS)  # so serve's case above is all of them
    text, _settings = help_of("backup")
    assert text.splitlines()[:6] == [
        "usage: prisme-lite backup [-h] [--config FILE] [--db FILE] FILE",
        "",
        "copy the database, online and consistent",
        "",
        "positional arguments:",
        "  FILE           the new backup file",
    ]


def test_a_setting_a_command_does_not_read_is_refused(tmp_path):
    result = cli("backup", str(tmp_path / "copy.db"), "--port", "9000", db=tmp_path / "prisme.db")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == "prisme-lite: error: unrecognized arguments: --port 9000"


def pageviews(tmp_path, *times):
    """One pageview at each of `times` by a visitor of its own, stored through the writer (with its session)."""
    ctx = prisme_lite.Context(make_config(tmp_path))
    for n, ts in enumerate(times):
        ctx.writer.append("web", {**web_event(n), "ts": ts})
    ctx.close()
    return ctx.config["db"]


def test_counts_of_one_are_singular(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: NOW)
    db = pageviews(tmp_path, NOW - 3 * DAY, NOW - 60_000)
    assert prisme_lite.main(["stats", "--days", "1", "--db", db]) == 0
    summary = capsys.readouterr().out.splitlines()
    assert summary[:3] == [
        "prisme-lite stats: the last day (2026-11-17 to 2026-11-18, UTC)",
        "",
        "web traffic at localhost",
    ]
    assert summary[3].startswith("  1 visitor, 1 pageview, 1 session, bounce rate 100%")
    assert prisme_lite.main(["stats", "--days", "2", "--db", db]) == 0
    assert capsys.readouterr().out.startswith("prisme-lite stats: the last 2 days (2026-11-16 to 2026-11-18, UTC)")
    assert prisme_lite.main(["prune", "--older-than", "1", "--db", db]) == 0
    assert capsys.readouterr().out == "deleted 2 rows older than 1 day\n"  # the old pageview and its session
    db = str(tmp_path / "other.db")
    prisme_lite.open_database(db)
    with sqlite3.connect(db) as conn:  # a custom event that joined no session: one row
        conn.execute(
            "INSERT INTO events (ts, site, kind, name, host, path, referrer, visitor_id, browser, os, device, country,"
            " status) VALUES (?, 'localhost', 'custom', 'signup', 'localhost', '/', 'direct', 'v9', 'Chrome', 'Linux',"
            " 'desktop', 'XX', 200)",
            (NOW - 3 * DAY,),
        )
    assert prisme_lite.main(["prune", "--older-than", "2", "--db", db]) == 0
    assert capsys.readouterr().out == "deleted 1 row older than 2 days\n"


def test_a_backup_of_one_unfolded_event_says_event(tmp_path, capsys):
    config = make_config(tmp_path)
    stored_then_killed(config, range(2), range(2, 3))  # one event acknowledged, never folded
    backup = tmp_path / "backup.db"
    assert prisme_lite.main(["backup", str(backup), "--db", config["db"]]) == 0
    assert capsys.readouterr().out == (
        f"backed up {config['db']} to {backup} (+1 event not yet folded, in {backup}.journal-1)\n"
    )


def test_the_readme_names_the_dependencies_to_run_from_a_checkout():
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    [line] = [line for line in readme.splitlines() if line.endswith("&& python prisme_lite.py serve")]
    words = shlex.split(line)
    assert words[:2] == ["pip", "install"]
    with open(root / "pyproject.toml", "rb") as file:
        assert words[2 : words.index("&&")] == tomllib.load(file)["project"]["dependencies"]


def test_a_backup_holds_no_salt_and_the_restored_server_starts_a_new_one(tmp_path, server, client):
    """With the salt, a visitor id (a keyed hash of site, IP and UA) turns back into an IP address (issue 18.5)."""
    from conftest import CHROME, Server

    headers = {"Origin": "http://localhost", "X-Prisme-Referrer": "http://localhost/a", "User-Agent": CHROME}
    client.post("/api/v1/events/pageviews", headers=headers, status=200)
    client.post("/dashboard/login", {"token": server.ctx.admin_token()}, status=303)
    [before] = server.events()
    copy = tmp_path / "copy.db"
    assert cli("backup", str(copy), db=server.config["db"]).returncode == 0
    raw = copy.read_bytes()
    with sqlite3.connect(server.config["db"]) as conn:
        salt = conn.execute("SELECT value FROM meta WHERE key = 'visitor_salt'").fetchone()[0].split(":")[1]
    assert salt.encode() not in raw  # not in a freed page either
    with sqlite3.connect(copy) as conn:
        keys = {row[0] for row in conn.execute("SELECT key FROM meta")}
        assert conn.execute("SELECT count(*) FROM dashboard_sessions").fetchone() == (0,)
    assert "visitor_salt" not in keys and "dashboard_key" not in keys
    assert {"admin_token", "jwt_secret"} <= keys  # what the restore needs: scripts' token, counter tokens of the hour
    checked = cli("check", db=copy)
    assert checked.returncode == 0, checked.stdout
    restored = Server(make_config(tmp_path, db=str(copy)))
    try:
        restored.client.post("/api/v1/events/pageviews", headers=headers, status=200)
        again = restored.events()
    finally:
        restored.close()
    assert [row["id"] for row in again[:1]] == [before["id"]]
    assert again[1]["visitor_id"] != before["visitor_id"]  # a new salt: the same visitor gets a new id


def test_text_from_outside_is_escaped_on_the_terminal(tmp_path, monkeypatch):
    """A database an older prisme-lite filled (or rows stored as sent) prints no control character raw (issue 18.7)."""
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: NOW)
    db = tmp_path / "prisme.db"
    prisme_lite.open_database(str(db))
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO counter_clients (id, name, domain, email, secret_hash, created_at, page_ids, action_ids)"
            " VALUES ('cl_1', 'n', 'blog.example.com', 'a@b.example', 'x', 0, '[\"pg\\u001b]0;PWNED\\u0007\"]', '[\"likes\"]')"
        )
        conn.execute("INSERT INTO counters VALUES ('cl_1', 'likes', 'pg\x1b]0;PWNED\x07', 3)")
        conn.execute(
            "INSERT INTO events (ts, site, kind, name, host, path, referrer, visitor_id, browser, os, device, country,"
            " status) VALUES (?, 'localhost', 'pageview', NULL, 'localhost', '/a\x1b[2J', 'evil\x1b[31m.example',"
            " 'v1', 'Chrome', 'Linux', 'desktop', 'XX', 200)",
            (prisme_lite.now_ms() - 1000,),
        )
        prisme_lite.count_stored_rows(conn, 0, 0)
    for args in (["counters", "list"], ["counters", "show", "likes", "pg\x1b]0;PWNED\x07"], ["stats"]):
        printed = cli(*args, db=db)
        assert printed.returncode == 0, printed.stderr
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", printed.stdout), printed.stdout
        assert "\\x1b" in printed.stdout
