"""`prisme-lite import` (Import): access logs become the pageviews, sessions and daily counts live traffic makes."""

import datetime
import gzip
import json
import sqlite3

import pytest
from conftest import CHROME, GOOGLEBOT, IPHONE, cli

import prisme_lite

MINUTE = 60_000
DAY = 86_400_000
START = 1_790_000_000_000  # 2026-09-21T14:13:20Z
SITE = "blog.example.com"
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def combined(ts, target, ip="203.0.113.5", status=200, referrer="-", ua=CHROME, method="GET"):
    """A line of the combined format at unix ms `ts` (whole seconds), written in a -0700 time zone as nginx would."""
    moment = datetime.datetime.fromtimestamp(ts / 1000, datetime.timezone(datetime.timedelta(hours=-7)))
    when = f"{moment:%d}/{MONTHS[moment.month - 1]}/{moment:%Y:%H:%M:%S} -0700"
    agent = "" if ua is None else f' "{referrer}" "{ua}"'
    return f'{ip} - - [{when}] "{method} {target} HTTP/1.1" {status} 512{agent}'


def caddy(ts, uri, host=SITE, ip="203.0.113.5", status=200, referrer=None, ua=CHROME, method="GET", **headers):
    """A line of Caddy's JSON access log."""
    sent = {"User-Agent": [ua], **{name.replace("_", "-"): [value] for name, value in headers.items()}}
    if referrer:
        sent["Referer"] = [referrer]
    request = {"remote_ip": "10.0.0.1", "client_ip": ip, "proto": "HTTP/2.0", "method": method, "host": host,
               "uri": uri, "headers": sent, "tls": {"resumed": False, "proto": "h2"}}  # fmt: skip
    entry = {"level": "info", "ts": ts / 1000, "logger": "http.log.access", "msg": "handled request",
             "request": request, "duration": 0.001, "size": 512, "status": status}  # fmt: skip
    return json.dumps(entry)


def write(path, lines, gzipped=False):
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path


@pytest.fixture
def db(tmp_path):
    """A database with blog.example.com registered."""
    path = str(tmp_path / "imported.db")
    prisme_lite.open_database(path)
    with sqlite3.connect(path) as conn:
        prisme_lite.add_origin(conn, SITE)
    return path


def run_import(capsys, db, *args):
    """`prisme-lite import ARGS` in this process: its exit code, standard output and standard error."""
    code = prisme_lite.main(["import", *map(str, args), "--db", db])
    out, err = capsys.readouterr()
    return code, out, err


def skipped(out):
    """The summary's skipped lines by reason."""
    counts = {}
    for line in out.splitlines():
        for reason in prisme_lite.SKIP_REASONS:
            if line.startswith(f"  {reason} "):
                counts[reason] = int(line[len(reason) + 2 :].split()[0].replace(",", ""))
    return counts


def rows(db, sql, params=()):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def renumbered(values):
    """Ids replaced by the order they first appear in: equal partitions (same visitor, same session) compare equal."""
    seen = {}
    return [seen.setdefault(value, len(seen)) for value in values]


def stored(db):
    """What a database holds of web traffic, but the ids (visitor ids are keyed by another salt, ids by rowid): the
    events and sessions in time order with who and which session they belong to, and the daily counts."""
    columns = [c for c in prisme_lite.EVENT_COLUMNS if c not in ("visitor_id", "session_id")]
    events = rows(db, f"SELECT {', '.join(columns)}, visitor_id, session_id FROM events ORDER BY ts, id")
    session_columns = [c for c in prisme_lite.SESSION_COLUMNS if c not in ("id", "visitor_id")]
    sessions = rows(db, f"SELECT {', '.join(session_columns)}, visitor_id FROM sessions ORDER BY started_at, id")
    return {
        "events": [row[:-2] for row in events],
        "event visitors": renumbered(row[-2] for row in events),
        "event sessions": renumbered(row[-1] for row in events),
        "sessions": [row[:-1] for row in sessions],
        "session visitors": renumbered(row[-1] for row in sessions),
        "daily counts": sorted(rows(db, "SELECT site, dim, day, value, n FROM daily_counts WHERE n != 0")),
    }


# Two visitors over two days: a search visit, pages within it, a reload, a return after the session timeout, a
# campaign, a phone; (minutes after START, ip, user agent, target, referrer).
VISITS = [
    (0, "203.0.113.5", CHROME, "/", "https://www.google.com/search?q=blog"),
    (2, "203.0.113.5", CHROME, "/posts/one?utm_source=news&utm_campaign=fall", f"https://{SITE}/"),
    (3, "203.0.113.5", CHROME, "/posts/one?utm_source=news&utm_campaign=fall", None),  # a reload
    (5, "198.51.100.7", IPHONE, "/about", None),
    (6, "203.0.113.5", CHROME, "/posts/two", f"https://{SITE}/posts/one"),
    (45, "203.0.113.5", CHROME, "/", None),  # 39 minutes later: a new visit
    (46, "198.51.100.7", IPHONE, "/posts/one", f"https://{SITE}/about"),  # 41 minutes later: a new visit too
    (24 * 60 + 1, "203.0.113.5", CHROME, "/posts/two", "https://news.example/"),  # the next day
]


def test_imported_pageviews_are_the_rows_the_same_pageviews_sent_live_make(make_server, monkeypatch, tmp_path, db,
                                                                           capsys):  # fmt: skip
    now = [START]
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: now[0])
    live = make_server()
    with sqlite3.connect(live.config["db"]) as conn:
        prisme_lite.add_origin(conn, SITE)
    live.ctx.origins.reload()
    for minutes, ip, ua, target, referrer in VISITS:
        now[0] = START + minutes * MINUTE
        headers = {"Origin": f"https://{SITE}", "X-Prisme-Referrer": f"https://{SITE}{target}", "User-Agent": ua}
        if referrer:
            headers["X-Prisme-Document-Referrer"] = referrer
        live.client.post("/api/v1/events/pageviews", headers=headers, extra_environ={"REMOTE_ADDR": ip}, status=200)
    live.ctx.writer.flush()
    log = write(tmp_path / "access.log", [
        combined(START + m * MINUTE, target, ip, referrer=referrer or "-", ua=ua) for m, ip, ua, target, referrer in VISITS
    ])  # fmt: skip

    code, out, err = run_import(capsys, db, log, "--site", SITE)

    assert code == 0, err
    assert out.startswith("read 8 lines of 1 file in ") and "imported 7 pageviews in 5 visits" in out, out
    assert "(and 1 reload of the page a visit is on, stored as nothing, as live)" in out
    assert stored(db) == stored(live.config["db"])
    assert len(stored(db)["events"]) == 7 and max(stored(db)["event sessions"]) == 4  # 7 pageviews, 5 visits
    assert prisme_lite.main(["check", "--db", db]) == 0, capsys.readouterr().out


def test_a_caddy_log_gzipped_is_found_by_its_first_line_and_takes_each_line_s_host(tmp_path, db, capsys):
    log = write(tmp_path / "access.log.1.gz", [
        caddy(START + 1_250, "/?ref=mastodon", referrer="https://mastodon.example/@me"),
        caddy(START + 60_000, "/shop", host="other.example"),  # not a registered origin
        caddy(START + 61_000, "/next", Sec_Purpose="prefetch;prerender"),
        caddy(START + 62_000, "/next", host=f"{SITE}:8443", referrer=f"https://{SITE}/"),
    ], gzipped=True)  # fmt: skip

    code, out, _err = run_import(capsys, db, log)

    assert code == 0
    assert "imported 2 pageviews in 1 visit" in out
    assert skipped(out) == {"unregistered site": 1, "prefetch": 1}
    assert "hosts that are no registered origin: other.example; add a site with `prisme-lite origins add HOST`" in out
    assert rows(db, "SELECT ts, site, host, path, referrer, utm_source, browser, device, status FROM events") == [
        (START + 1_250, SITE, SITE, "/", "mastodon.example", "mastodon", "Chrome", "desktop", 200),
        (START + 62_000, SITE, f"{SITE}:8443", "/next", SITE, None, "Chrome", "desktop", 200),
    ]


def test_quotes_and_bytes_the_web_server_escaped_are_read_as_the_client_sent_them(tmp_path, db, capsys):
    nginx = combined(
        START, "/caf\\xC3\\xA9", referrer="https://news.example/?q=\\x22a\\x22", ua=CHROME + " \\x22x\\x22"
    )
    apache = combined(START + MINUTE, "/b", ip="198.51.100.2", referrer=r"https://r.example/\"q\"", ua=IPHONE)
    log = write(tmp_path / "access.log", [nginx, apache])

    code, out, _err = run_import(capsys, db, log, "--site", SITE)

    assert code == 0 and "imported 2 pageviews" in out and skipped(out) == {}, out
    assert rows(db, "SELECT path, referrer, browser FROM events ORDER BY ts") == [
        ("/café", "news.example", "Chrome"), ("/b", "r.example", "Mobile Safari"),
    ]  # fmt: skip


def test_each_line_that_is_no_pageview_is_counted_under_its_reason(tmp_path, db, capsys):
    t = START
    log = write(tmp_path / "access.log", [
        "\x00\x01 garbage \xff",
        f'203.0.113.5 - - [21/Sep/2026:25:13:20 +0000] "GET /no-such-hour HTTP/1.1" 200 512 "-" "{CHROME}"',
        f'203.0.113.5 - - [21/Foo/2026:14:13:20 +0000] "GET /no-such-month HTTP/1.1" 200 512 "-" "{CHROME}"',
        combined(t - 400 * DAY, "/old"),  # retention_days 365
        combined(t, "/login", method="POST"),
        combined(t, "/missing", status=404),
        combined(t, "/moved", status=301),
        combined(t, "/api/v1/events/pageviews"),
        combined(t, "/dashboard"),
        combined(t, "/static/wa.js"),
        combined(t, "/style.css?v=3"),
        combined(t, "/wp-content/uploads/cat"),
        combined(t, "/favicon.ico"),
        combined(t, "/common", ua=None),
        combined(t, "/", ua=GOOGLEBOT),
        combined(t, "/", ua="curl/8.5.0"),
        combined(t, "/", ua="-"),
        combined(t, "/page", referrer="not a url"),
        combined(t, "*", method="GET"),
        combined(t, "/dashboards-we-like"),  # a page, not the dashboard
        combined(t + 1_000, "/cached", status=304),
        "",
    ])  # fmt: skip

    code, out, _err = run_import(capsys, db, log, "--site", SITE, "--retention-days", "365")

    assert code == 0
    assert out.startswith("read 22 lines of 1 file") and "imported 2 pageviews in 1 visit" in out, out
    assert skipped(out) == {
        "unparseable": 3, "past retention": 1, "method": 1, "status": 2, "own route": 2, "asset": 4,
        "common format": 1, "bot": 3, "invalid": 2,
    }  # fmt: skip
    assert rows(db, "SELECT path, status FROM events ORDER BY ts") == [("/dashboards-we-like", 200), ("/cached", 304)]


def test_a_file_imported_twice_is_imported_once(tmp_path, db, capsys):
    log = write(tmp_path / "access.log", [combined(START + i * MINUTE, f"/p{i}") for i in range(5)])
    assert run_import(capsys, db, log, "--site", SITE)[0] == 0
    before = stored(db)

    code, out, err = run_import(capsys, db, log, "--site", SITE)

    assert code == 0 and f"import: {log}: imported before, skipped" in err
    assert skipped(out) == {"duplicate": 5} and "imported 0 pageviews" in out
    assert stored(db) == before
    # The same lines in another file (compressed by logrotate): each is at or before the last import.
    code, out, _err = run_import(capsys, db, write(tmp_path / "access.log.2.gz", log.read_text().splitlines(), True),
                                 "--site", SITE)  # fmt: skip
    assert code == 0 and skipped(out) == {"before last import": 5}
    assert "import older logs first" in out
    assert stored(db) == before


def test_overlapping_rotated_logs_add_only_their_new_lines_even_within_one_second(tmp_path, db, capsys):
    # Lines 4 to 6 share a second: the first log ends inside it, the second begins before it.
    times = [START + i * MINUTE for i in range(4)] + [START + 4 * MINUTE] * 3 + [START + i * MINUTE for i in (5, 6)]
    lines = [combined(ts, f"/p{i}", ip=f"203.0.113.{i}") for i, ts in enumerate(times)]
    once = tmp_path / "once.db"
    prisme_lite.open_database(str(once))
    with sqlite3.connect(once) as conn:
        prisme_lite.add_origin(conn, SITE)
    assert run_import(capsys, str(once), write(tmp_path / "all.log", lines), "--site", SITE)[0] == 0

    assert run_import(capsys, db, write(tmp_path / "access.log.1", lines[:5]), "--site", SITE)[0] == 0
    code, out, _err = run_import(capsys, db, write(tmp_path / "access.log", lines[2:]), "--site", SITE)

    assert code == 0 and skipped(out) == {"before last import": 3} and "imported 4 pageviews" in out
    assert stored(db)["events"] == stored(str(once))["events"]
    assert rows(db, "SELECT ts, lines FROM import_marks") == [(START + 6 * MINUTE, 1)]
    # An older log, imported after: all of it counts as imported, and the mark stays where it was.
    code, out, _err = run_import(capsys, db, write(tmp_path / "older.log", [combined(START, "/x")] * 3), "--site", SITE)
    assert code == 0 and skipped(out) == {"before last import": 3}
    assert rows(db, "SELECT ts, lines FROM import_marks") == [(START + 6 * MINUTE, 1)]


def test_logs_given_newest_first_are_imported_oldest_first(tmp_path, db, capsys):
    old = write(tmp_path / "access.log.1", [combined(START + i * MINUTE, f"/old{i}") for i in range(3)])
    new = write(tmp_path / "access.log", [combined(START + DAY + i * MINUTE, f"/new{i}") for i in range(3)])

    code, out, _err = run_import(capsys, db, new, old, "--site", SITE)

    assert code == 0 and "imported 6 pageviews" in out and skipped(out) == {}
    assert [path for (path,) in rows(db, "SELECT path FROM events ORDER BY id")] == [
        "/old0", "/old1", "/old2", "/new0", "/new1", "/new2",
    ]  # fmt: skip


def test_a_gzip_log_cut_short_keeps_what_it_had_and_the_whole_file_adds_the_rest(tmp_path, db, capsys):
    lines = [combined(START + i * 1000, f"/p{i}", ip=f"198.51.100.{i % 200}") for i in range(12_000)]
    whole = gzip.compress("".join(line + "\n" for line in lines).encode())
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(whole[: len(whole) * 3 // 4])

    code, out, err = run_import(capsys, db, cut, "--site", SITE)

    assert code == 0 and f"import: {cut}: stopped reading after line" in err
    first = rows(db, "SELECT count(*) FROM events")[0][0]
    assert 0 < first < 12_000
    assert run_import(capsys, db, cut, "--site", SITE)[0] == 0  # read again: nothing new, and no duplicate either
    assert rows(db, "SELECT count(*) FROM events") == [(first,)]
    (tmp_path / "whole.log.gz").write_bytes(whole)
    code, out, _err = run_import(capsys, db, tmp_path / "whole.log.gz", "--site", SITE)
    assert code == 0 and skipped(out) == {"before last import": first}
    assert rows(db, "SELECT count(*), count(DISTINCT path) FROM events") == [(12_000, 12_000)]
    assert prisme_lite.main(["check", "--db", db]) == 0


def test_no_ip_address_of_the_log_reaches_the_disk(tmp_path, db, capsys):
    ips = ["198.51.100.77", "2001:db8::77", "203.0.113.178"]
    log = write(tmp_path / "access.log", [
        combined(START + i * MINUTE, f"/p{i}", ip=ip, referrer=f"https://{SITE}/") for i, ip in enumerate(ips)
    ] + [caddy(START + 9 * MINUTE, "/c", ip=ips[0])])  # fmt: skip
    assert run_import(capsys, db, log, "--site", SITE, "--format", "combined")[0] == 0
    assert rows(db, "SELECT count(*) FROM events") == [(3,)]

    data = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("imported.db"))
    for ip in ips:
        assert ip.encode() not in data and ip.encode("utf-16-le") not in data


def test_bad_files_get_one_clear_line(tmp_path, db, capsys):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 64)
    empty = write(tmp_path / "empty.log", [])
    fake_gzip = tmp_path / "fake.gz"
    fake_gzip.write_bytes(b"\x1f\x8b" + b"\x00" * 40)

    code, out, err = run_import(capsys, db, garbage, "--site", SITE)
    assert code == 1 and skipped(out)["unparseable"] >= 1
    assert (
        err.strip().splitlines()[-1]
        == f"prisme-lite: import: no line of {garbage} is an access log line (combined or caddy)"
    )
    code, out, err = run_import(capsys, db, empty, "--site", SITE)
    assert code == 1 and "no line of" in err and out.startswith("read 0 lines of 1 file")
    for path, says in [
        (tmp_path / "missing.log", f"prisme-lite: import: cannot read {tmp_path / 'missing.log'}: No such file"),
        (fake_gzip, f"prisme-lite: import: {fake_gzip} is not readable gzip data"),
        (tmp_path, f"prisme-lite: import: {tmp_path} is a directory"),
    ]:
        code, out, err = run_import(capsys, db, path, "--site", SITE)
        assert code == 2 and err.startswith(says) and err.count("\n") == 1 and out == "", err
    assert rows(db, "SELECT count(*) FROM events") == [(0,)]


def test_a_combined_log_needs_a_registered_site(tmp_path, db, capsys):
    log = write(tmp_path / "access.log", [combined(START, "/")])
    code, _out, err = run_import(capsys, db, log)
    assert (code, err) == (2, f"prisme-lite: import: {log} is a combined log, which names no host: give --site SITE\n")
    code, _out, err = run_import(capsys, db, log, "--site", "www.example.org")
    assert code == 2 and err == (
        "prisme-lite: import: --site www.example.org is not a registered origin's host; add it with"
        " `prisme-lite origins add www.example.org`\n"
    )
    with sqlite3.connect(db) as conn:
        prisme_lite.add_origin(conn, "*.example.org")
    code, _out, err = run_import(capsys, db, log, "--site", "*.example.org")
    assert (code, err) == (
        2,
        "prisme-lite: import: --site takes the site's host (www.example.com), not *.example.org\n",
    )
    code, out, _err = run_import(capsys, db, log, "--site", "www.example.org")
    assert code == 0 and rows(db, "SELECT site, host FROM events") == [("*.example.org", "www.example.org")]


def test_import_refuses_while_a_server_runs_on_the_database(tmp_path, run):
    db = tmp_path / "prisme.db"
    server = run()
    log = write(tmp_path / "access.log", [combined(START, "/")])
    done = cli("import", str(log), "--site", "localhost", db=db)
    assert done.returncode == 2
    assert done.stderr == (
        f"prisme-lite: import: a server (pid {server.proc.pid}) is running on {db}; stop it first"
        " (import with it stopped, then start it)\n"
    )
    assert server.stop() == 0
    done = cli("import", str(log), "--site", "localhost", db=db)
    assert done.returncode == 0, done.stderr
    assert "imported 1 pageview in 1 visit" in done.stdout
