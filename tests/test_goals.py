"""Goals (issue 21): conversions, converting visitors and conversion rate, against answers computed here; the goals
commands; the schema's migration."""

import json
import sqlite3
import time

import pytest
from conftest import CHROME, cli, migrated_from
from test_cli import help_of
from test_stats import MONTH_START, NOW, month, stats  # noqa: F401 -- fixtures

import prisme_lite

GOALS = [("blog.example.com", "event", "signup"), ("blog.example.com", "path", "/pricing"),
         ("*.shop.example", "event", "play"), ("*.shop.example", "path", "/nowhere")]  # fmt: skip


@pytest.fixture
def goals(month):  # noqa: F811
    """The GOALS added to the month's database, as `goals add` adds them; removed after."""
    app = month[0]
    with sqlite3.connect(app.ctx.config["db"]) as conn:
        added = [prisme_lite.add_goal(conn, *goal) for goal in GOALS]
    yield added
    with sqlite3.connect(app.ctx.config["db"]) as conn:
        conn.execute("DELETE FROM goals")


def expected(events, site, kind, target, keep=lambda event: True):
    """(conversions, converting visitors, rate) of one goal over the month's window, counted here."""
    window = [e for e in events if e["site"] == site and MONTH_START <= e["ts"] < NOW and keep(e)]
    hits = [e for e in window if (e["kind"], e["name"] if kind == "event" else e["path"]) == (
        "custom" if kind == "event" else "pageview", target)]  # fmt: skip
    visitors = {e["visitor_id"] for e in hits}
    everyone = {e["visitor_id"] for e in window if e["kind"] == "pageview"}
    return len(hits), len(visitors), round(len(visitors) / len(everyone), 4) if everyone else None


def rows(report):
    return {(row["site"], row["kind"], row["target"]): (row["conversions"], row["visitors"], row["conversion_rate"])
            for row in report["details"]}  # fmt: skip


def test_each_goal_counts_its_conversions_visitors_and_rate(month, stats, goals):  # noqa: F811
    events = month[1]
    report = stats("goals", **{"from": "now-30d/d"})
    assert rows(report) == {goal: expected(events, *goal) for goal in GOALS}
    assert all(
        rate is not None and 0 < rate < 1 for goal, (_c, _v, rate) in rows(report).items() if goal[2] != "/nowhere"
    )
    assert rows(report)["*.shop.example", "path", "/nowhere"][:2] == (0, 0)  # a goal never reached is there, at 0
    # Most converting visitors first; labels say what and, for all sites, where.
    assert report["values"] == sorted(report["values"], reverse=True)
    assert report["values"] == [row["visitors"] for row in report["details"]]
    assert "signup (blog.example.com)" in report["keys"] and "Visit /pricing (blog.example.com)" in report["keys"]


def test_a_site_and_filters_apply_to_conversions_and_to_the_visitors_they_are_a_rate_of(month, stats, goals):  # noqa: F811
    events = month[1]
    report = stats("goals", site="blog.example.com", **{"from": "now-30d/d"})
    assert rows(report) == {goal: expected(events, *goal) for goal in GOALS[:2]}
    assert set(report["keys"]) == {"signup", "Visit /pricing"}
    report = stats("goals", site="blog.example.com", country="FR,US", **{"from": "now-30d/d"})
    in_country = lambda event: event["country"] in ("FR", "US")  # noqa: E731
    assert rows(report) == {goal: expected(events, *goal, keep=in_country) for goal in GOALS[:2]}
    assert rows(report) != {goal: expected(events, *goal) for goal in GOALS[:2]}  # the filter changed something
    assert "unfiltered" not in report
    assert stats("goals", limit=1)["keys"] == stats("goals")["keys"][:1]


def test_no_goals_is_an_empty_report_and_bad_parameters_are_400(stats):  # noqa: F811
    assert stats("goals")["keys"] == [] and stats("goals")["details"] == []
    assert stats("goals", status=400, colour="red")["error"].startswith("unknown parameter 'colour'")


def test_the_openapi_document_describes_the_goals_report():
    document = prisme_lite.openapi_document()
    answer = document["paths"]["/api/v1/stats/goals"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/GoalStats"}
    row = document["components"]["schemas"]["GoalStats"]["allOf"][1]["properties"]["details"]["items"]
    assert set(row["required"]) == {
        "goal",
        "conversions",
        "visitors",
        "conversion_rate",
        "id",
        "site",
        "kind",
        "target",
    }
    assert "goals" in document["paths"]["/api/v1/stats/{metric}"]["get"]["parameters"][0]["schema"]["enum"]


def test_goals_add_list_and_remove(tmp_path):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    assert cli("origins", "add", "blog.example.com", db=db).returncode == 0
    added = cli("goals", "add", "--site", "https://Blog.Example.com/", "--event", "signup", db=db)
    assert (added.returncode, added.stdout) == (0, "added goal 1: signup (blog.example.com)\n")
    added = cli("goals", "add", "--site", "localhost", "--path", "/thanks//you/?ref=x#top", db=db)
    assert (added.returncode, added.stdout) == (0, "added goal 2: Visit /thanks/you/ (localhost)\n")  # as stored
    again = cli("goals", "add", "--site", "blog.example.com", "--event", "signup", db=db)
    assert (again.returncode, again.stdout) == (0, "already a goal of blog.example.com: event signup\n")
    listed = cli("goals", "list", db=db)
    assert listed.stdout.splitlines() == [
        "ID  SITE              KIND   TARGET", "1   blog.example.com  event  signup", "2   localhost         path   /thanks/you/",
    ]  # fmt: skip
    assert cli("goals", "list", "--site", "localhost", db=db).stdout.splitlines()[1:] == [
        "2   localhost  path  /thanks/you/"
    ]
    assert cli("goals", "remove", "1", db=db).stdout == "removed goal 1\n"
    missing = cli("goals", "remove", "1", db=db)
    assert (missing.returncode, missing.stderr) == (1, "no goal 1 (see `prisme-lite goals list`)\n")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT site, kind, target FROM goals").fetchall() == [
            ("localhost", "path", "/thanks/you/")
        ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--site", "shop.example", "--event", "x"], "goals add: shop.example is not a registered origin"),
        (["--site", "bad host", "--event", "x"], "goals add: 'bad host' is not a host name"),
        (["--site", "localhost", "--event", "a\x01b"], "goals add: an event name is 1 to 128 printable characters"),
        (["--site", "localhost", "--event", "x" * 129], "goals add: an event name is 1 to 128 printable characters"),
        (["--site", "localhost", "--path", "thanks"], "goals add: a path starts with /"),
    ],
)
def test_goals_add_refuses_what_would_never_convert(tmp_path, args, says):
    db = tmp_path / "prisme.db"
    assert cli("init", db=db).returncode == 0
    refused = cli("goals", "add", *args, db=db)
    assert refused.returncode == 2 and refused.stderr.startswith(f"prisme-lite: {says}"), refused.stderr
    both = cli("goals", "add", "--site", "localhost", "--event", "x", "--path", "/x", db=db)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM goals").fetchone() == (0,)


@pytest.mark.parametrize(
    ("args", "own", "keys"),
    [
        (["goals", "add"], ["--site", "--event", "--path"], ["db", "synchronous", "origins"]),
        (["goals", "list"], ["--site"], ["db"]),
        (["goals", "remove"], ["ID"], ["db", "synchronous"]),
    ],
    ids=" ".join,
)
def test_goals_help_shows_only_the_settings_each_reads(args, own, keys):
    text, settings = help_of(*args)
    for argument in own:
        assert f"  {argument}" in text
    assert list(settings) == ["--config", *(f"--{key}" for key in keys)]


@pytest.mark.server
def test_a_goal_added_while_the_server_runs_counts_at_once(run, tmp_path):
    db = tmp_path / "prisme.db"
    process = run()
    token = process.banner[2].split(": ", 1)[1].strip()

    def send(path, body=None, visitor="a"):
        conn = process.connection()
        conn.request("POST", path, body, {"Origin": "http://localhost", "X-Prisme-Referrer": "http://localhost/shop",
                                          "User-Agent": CHROME, "X-Prisme-Visitor-Id": visitor,
                                          "Content-Type": "application/json"})  # fmt: skip
        assert conn.getresponse().status == 200

    send("/api/v1/events/pageviews", visitor="a")
    send("/api/v1/events/pageviews", visitor="b")
    send("/api/v1/events/custom/buy", "{}", visitor="a")
    send("/api/v1/events/custom/buy", "{}", visitor="a")
    assert cli("goals", "add", "--site", "localhost", "--event", "buy", db=db).returncode == 0

    def report():
        conn = process.connection()
        conn.request("GET", "/api/v1/stats/goals?site=localhost", headers={"Authorization": f"Bearer {token}"})
        answer = conn.getresponse()
        assert answer.status == 200
        return json.loads(answer.read())

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # acknowledged, then folded by the writer: read until all four are in
        with sqlite3.connect(db) as conn:
            if conn.execute("SELECT count(*) FROM events").fetchone() == (4,):
                break
        time.sleep(0.05)
    found = report()
    assert [(r["goal"], r["conversions"], r["visitors"], r["conversion_rate"]) for r in found["details"]] == [
        ("buy", 2, 1, 0.5)
    ]
    assert process.stop() == 0


def test_a_schema_5_database_gets_the_goals_table(tmp_path):
    db = tmp_path / "prisme.db"
    migrated_from(db, 5, "goals")
    with sqlite3.connect(db) as conn:
        assert prisme_lite.add_goal(conn, "localhost", "event", "x").id == 1


def test_the_dashboard_has_a_goals_panel_that_says_how_to_add_one():
    panels = [panel for family in prisme_lite.FAMILIES for panel in family.panels]
    [goals] = [panel for panel in panels if panel[1] == "goals"]
    assert goals[2] == ("Goal", "Conversions", "Visitors", "Rate")
    assert goals[3] == "" and "prisme-lite goals add" in goals[4]  # the real dashboard shows it: tests/test_browser.py
