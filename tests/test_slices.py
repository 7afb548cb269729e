"""Slices (schema.sql, slice_counts): a view filtered by one value of a sliced filter reads the days the writer's
maintenance has counted (SealDays) from them, and answers exactly what the raw rows answer, before, while and after
the rows of a counted day change."""

import dataclasses
import math

import pytest
from test_stats import DAY, MINUTE, NOW, WEB_METRICS, PlanRecorder, month_of_events

import prisme_lite

WINDOWS = [
    {"from": "now-29d/d", "to": "now/d+1d"},  # the dashboard's 30 days
    {"from": "now-30d/d"},
    {"from": "now-30d"},  # a partial first day
    {"from": "now-20d/d", "to": "now-3d-5h"},  # a partial last day, in the past
    {"from": "now-7d/d"},  # buckets of hours for the series
    {"from": "now-1y"},  # buckets of 14 days
    {"from": "now-30d-7h"},  # a first day more inside the window than outside: its slices less 5 hours of raw rows
    {"from": "now-10d-9h", "to": "now-2d/d+23h"},  # both edges so
]
SLICED = [
    ("blog.example.com", "country", "FR"),
    ("blog.example.com", "browser", "Firefox"),
    ("blog.example.com", "os", "iOS"),
    ("blog.example.com", "utm-source", "newsletter"),
    ("blog.example.com", "utm-medium", "email"),
    ("blog.example.com", "visit-utm-source", "newsletter"),  # the events of visits that came from it
    ("blog.example.com", "visit-utm-medium", "email"),
    ("blog.example.com", "visit-referrer", "direct"),  # the one value of visit-referrer sliced
    ("*.shop.example", "domain", "a.shop.example"),  # the shop's visitors give their own ids (slice_visitors)
    ("*.shop.example", "country", "DE"),
]


class NoSealing:
    """SealDays held off: the writer's own would count days by the wall clock as the events come in, and how far it
    got would depend on how many batches a busy machine folds them in. The tests count at NOW (seal_days)."""

    def __call__(self, conn, now):
        return False


def store(path, events):
    """The events stored through the real writer (touch_days and all), its slice counting held off."""
    config = prisme_lite.load_config({"db": str(path), "access_log": "false"}, environ={})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prisme_lite, "SealDays", NoSealing)
        patch.setattr(prisme_lite, "PrefixSlices", NoSealing)  # the same for today's prefixes (count_prefixes)
        app = prisme_lite.make_app(config)
        for event in events:
            app.ctx.writer.append("web", dict(event))
        app.ctx.writer.flush()
        app.ctx.close()


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    path = tmp_path_factory.mktemp("slices") / "prisme.db"
    store(path, month_of_events(seed=11))
    conn = prisme_lite.connect(str(path))
    prisme_lite.seal_days(conn, NOW)
    yield path, conn
    conn.close()


def answers(conn, site, params):
    q = prisme_lite.parse_stats_query([("site", site), *params], NOW)
    return {name: prisme_lite.METRICS[name](conn, q) for name in WEB_METRICS}


def raw_answers(conn, site, params, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(prisme_lite, "rollup_days", lambda conn, q, subtract=False: None)
        patch.setattr(prisme_lite, "prefix_of", lambda conn, q: None)
        return answers(conn, site, params)


def test_every_day_that_is_over_is_counted_for_every_sliced_filter(sealed):
    _path, conn = sealed
    today = NOW // DAY
    counted = conn.execute(
        "SELECT site, fdim, min(day), max(day), count(*) FROM slice_days JOIN edge_days USING (site, day, fdim)"
        " WHERE touched_at IS NULL GROUP BY 1, 2"
    ).fetchall()
    first = {site: day for site, day in conn.execute(
        "SELECT site, min(day) FROM daily_counts WHERE dim = 'pageviews' GROUP BY site")}  # fmt: skip
    assert sorted(counted) == sorted(
        (site, fdim, first[site], today - 1, today - first[site])
        for site in first
        for fdim in prisme_lite.sealed_filters(site)  # and the site's edges
    )
    assert prisme_lite.seal_days(conn, NOW) == 0  # nothing left to count


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize(("site", "name", "value"), SLICED)
def test_a_sliced_filter_answers_exactly_what_raw_rows_do(sealed, monkeypatch, window, site, name, value):
    _path, conn = sealed
    params = [*window.items(), (name, value)]
    assert answers(conn, site, params) == raw_answers(conn, site, params, monkeypatch)


def test_whole_days_come_from_the_slices_and_only_today_from_raw_rows(sealed):
    _path, conn = sealed
    q = prisme_lite.parse_stats_query([("site", "blog.example.com"), ("from", "now-30d/d"), ("country", "FR")], NOW)
    assert prisme_lite.rollup_days(conn, q) == (NOW // DAY - 30, NOW // DAY)
    for name in ("top-pages", "top-entry-pages", "overview", "visitors"):
        recorder = PlanRecorder(conn)
        prisme_lite.METRICS[name](recorder, q)
        slices = "SEARCH slice_counts USING PRIMARY KEY (slice=? AND dim="
        assert any(plan.startswith(slices) for plan in recorder.plans), (name, recorder.plans)
        assert not any(plan.startswith(("SCAN e", "SCAN s", "SCAN c")) for plan in recorder.plans), recorder.plans


@pytest.mark.parametrize(
    "params",
    [
        [("country", "FR"), ("browser", "Firefox")],  # two filters
        [("country", "FR"), ("country", "DE")],  # two values
        [("path", "/about")],  # not sliced: a page picks few rows
        [("visit-referrer", "google.com")],
        [("exit-path", "/docs")],
        [("domain", "blog.example.com")],  # a site of one host has no domain slices: it would be the site's counts
    ],
)
def test_what_slices_do_not_answer_reads_raw_rows(sealed, monkeypatch, params):
    _path, conn = sealed
    params = [("from", "now-30d/d"), *params]
    q = prisme_lite.parse_stats_query([("site", "blog.example.com"), *params], NOW)
    assert prisme_lite.rollup_days(conn, q) is None
    assert answers(conn, "blog.example.com", params) == raw_answers(conn, "blog.example.com", params, monkeypatch)


def late_pageview(ts, visitor="prisme_00000000000000aa", country="FR"):
    return {
        "ts": ts, "site": "blog.example.com", "kind": "pageview", "host": "blog.example.com", "path": "/late",
        "name": None, "referrer": "late.example", "utm_source": None, "utm_medium": None, "utm_campaign": None,
        "utm_term": None, "utm_content": None, "visitor_id": visitor, "browser": "Firefox", "os": "Windows",
        "device": "desktop", "country": country, "status": 200, "props": None,
    }  # fmt: skip


def test_rows_added_to_a_counted_day_take_it_out_of_the_slices_until_it_is_counted_again(tmp_path, monkeypatch):
    path = tmp_path / "prisme.db"
    events = month_of_events(seed=5)
    store(path, events)
    conn = prisme_lite.connect(str(path))
    prisme_lite.seal_days(conn, NOW)
    day = NOW // DAY - 10
    params = [("from", "now-30d/d"), ("country", "FR")]
    before = answers(conn, "blog.example.com", params)

    monkeypatch.setattr(prisme_lite, "now_ms", lambda: NOW)  # when the late rows are stored: touched_at
    store(path, [late_pageview(day * DAY + 5 * MINUTE), late_pageview(day * DAY + 7 * MINUTE)])
    touched = conn.execute(
        "SELECT fdim, touched_at FROM slice_days WHERE site = 'blog.example.com' AND day = ?", (day,)
    ).fetchall()
    assert sorted(touched) == sorted((fdim, NOW) for fdim in prisme_lite.sealed_filters("blog.example.com"))
    q = prisme_lite.parse_stats_query([("site", "blog.example.com"), *params], NOW)
    assert prisme_lite.rollup_days(conn, q) == (NOW // DAY - 30, day)  # the longest run of counted days
    now = answers(conn, "blog.example.com", params)
    assert now == raw_answers(conn, "blog.example.com", params, monkeypatch)
    assert now["pageviews"][1] != before["pageviews"][1]
    assert "/late" in now["top-pages"][0]

    # counted again only once the day's rows have been left alone for SEAL_DELAY_MS
    assert prisme_lite.seal_days(conn, NOW + prisme_lite.SEAL_DELAY_MS - 1) == 0
    assert prisme_lite.seal_days(conn, NOW + prisme_lite.SEAL_DELAY_MS) == len(prisme_lite.sealed_filters("blog.x"))
    assert prisme_lite.rollup_days(conn, q) == (NOW // DAY - 30, NOW // DAY)
    assert answers(conn, "blog.example.com", params) == now
    assert prisme_lite.check(str(path)) == 0
    conn.close()


def test_pruned_days_leave_the_slices_and_check_finds_a_wrong_count(tmp_path, monkeypatch, capsys):
    path = tmp_path / "prisme.db"
    store(path, month_of_events(seed=3))
    conn = prisme_lite.connect(str(path))
    prisme_lite.seal_days(conn, NOW)
    assert prisme_lite.check(str(path)) == 0

    cutoff = (NOW // DAY - 20) * DAY
    conn.execute("BEGIN IMMEDIATE")
    prisme_lite.prune_batch(conn, cutoff, done=set(), kept={}, batch=10**9)
    conn.execute("COMMIT")
    prisme_lite.seal_days(conn, NOW + prisme_lite.SEAL_DELAY_MS)
    assert conn.execute("SELECT count(*) FROM slice_days WHERE day < ?", (cutoff // DAY,)).fetchone() == (0,)
    for table in prisme_lite.SLICE_DAY_TABLES:
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE day < ?", (cutoff // DAY,)).fetchone() == (0,)
    params = [("from", "now-30d/d"), ("browser", "Chrome")]
    assert answers(conn, "blog.example.com", params) == raw_answers(conn, "blog.example.com", params, monkeypatch)
    assert prisme_lite.check(str(path)) == 0

    conn.execute(
        "UPDATE slice_counts SET n = n + 1 WHERE (slice, dim, day, value) = (SELECT slice, dim, day, value"
        " FROM slice_counts WHERE slice = (SELECT min(id) FROM slice_keys WHERE fdim = 'country') AND dim = ?"
        " LIMIT 1)",
        (prisme_lite.SLICE_DIM["path"],),
    )
    capsys.readouterr()
    assert prisme_lite.check(str(path)) == 1
    assert "problem: the slices of each counted day add up to its daily counts" in capsys.readouterr().out
    conn.close()


@pytest.mark.parametrize(
    ("params", "indexes"),
    [
        ([("path", "/about")], {"events_hour_path"}),
        ([("referrer", "google.com")], {"events_hour_referrer", "sessions_referrer"}),
        ([("visit-referrer", "google.com")], {"sessions_referrer", "events_session"}),
        ([("entry-path", "/pricing")], {"sessions_entry", "events_session"}),
        ([("browser", "Firefox"), ("entry-path", "/docs")], {"sessions_entry", "events_session"}),
        ([("country", "FR"), ("path", "/pricing")], {"events_hour_path"}),
        ([("path", "/about"), ("path", "/docs")], {"events_hour_path"}),
    ],
)
@pytest.mark.parametrize("window", [{"from": "now-30d/d"}, {"from": "now-30d"}, {"from": "now-6h"}])
def test_a_page_or_a_referrer_is_found_by_its_index_not_by_reading_the_window(sealed, window, params, indexes):
    """A filter on a page, a referrer or where a visit came from or entered seeks an index of its own (a page or a
    referrer once an hour), and answers what reading every row of the window does."""
    _path, conn = sealed
    q = prisme_lite.parse_stats_query([("site", "blog.example.com"), *window.items(), *params], NOW)
    unindexed = dataclasses.replace(q, source=dataclasses.replace(prisme_lite.SQLITE, filter_indexes=False))
    for name in WEB_METRICS:
        recorder = PlanRecorder(conn)
        assert prisme_lite.METRICS[name](recorder, q) == prisme_lite.METRICS[name](conn, unindexed), name
        used = {index for index in indexes for plan in recorder.plans if f"USING INDEX {index} " in plan}
        assert used, (name, recorder.plans)
        assert not any(plan.startswith(("SCAN e", "SCAN s", "SCAN events", "SCAN sessions")) for plan in recorder.plans)
        assert not any("USING INDEX events_site_ts" in plan or "sessions_started" in plan for plan in recorder.plans)


def test_a_filter_on_direct_reads_the_window_rows(sealed, monkeypatch):
    _path, conn = sealed
    params = [("from", "now-30d/d"), ("referrer", "direct")]
    q = prisme_lite.parse_stats_query([("site", "blog.example.com"), *params], NOW)
    recorder = PlanRecorder(conn)
    prisme_lite.METRICS["top-pages"](recorder, q)
    assert any("USING INDEX events_site_ts" in plan for plan in recorder.plans)
    assert answers(conn, "blog.example.com", params)["pageviews"][1]


def test_a_day_touched_while_it_is_counted_stays_out_of_the_slices(tmp_path, monkeypatch):
    """SealDays counts a day a statement a transaction: rows that change it meanwhile leave it to be counted again,
    and so does a rollback halfway (the steps it took stay COUNTING, never read)."""
    path = tmp_path / "prisme.db"
    store(path, month_of_events(seed=9))
    conn = prisme_lite.connect(str(path))
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: NOW)
    sealer, yesterday = prisme_lite.SealDays(), NOW // DAY - 1

    def step():
        conn.execute("BEGIN IMMEDIATE")
        more = sealer(conn, NOW)
        conn.execute("COMMIT")
        return more

    def state(fdim):
        return conn.execute(
            "SELECT touched_at FROM slice_days WHERE site = 'blog.example.com' AND day = ? AND fdim = ?",
            (yesterday, fdim),
        ).fetchone()

    step()  # the newest day that is over, first filter: marked, and its first statement
    first = next(f for f in prisme_lite.sliced_filters("blog.example.com") if state(f) == (prisme_lite.COUNTING,))
    step()
    prisme_lite.touch_days(conn, [("blog.example.com", yesterday)])  # a late row, as the writer stores it
    while sealer.steps is not None:
        step()
    assert state(first) == (NOW,)  # counted all the same, but not read
    q = prisme_lite.parse_stats_query([("site", "blog.example.com"), ("from", "now-1d/d"), (first, "x")], NOW)
    assert prisme_lite.rollup_days(conn, q) is None

    conn.execute("BEGIN IMMEDIATE")  # the next filter's first steps, rolled back halfway by a failing commit
    sealer(conn, NOW)
    sealer(conn, NOW)
    conn.execute("COMMIT")
    second = next(f for f in prisme_lite.sliced_filters("blog.example.com") if state(f) == (prisme_lite.COUNTING,))
    conn.execute("BEGIN IMMEDIATE")
    sealer(conn, NOW)
    conn.execute("ROLLBACK")
    sealer.reset()
    assert state(second) == (prisme_lite.COUNTING,)
    prisme_lite.seal_days(conn, NOW + prisme_lite.SEAL_DELAY_MS)
    assert state(first) == state(second) == (None,)
    params = [("from", "now-30d/d"), (second, "x")]
    assert answers(conn, "blog.example.com", params) == raw_answers(conn, "blog.example.com", params, monkeypatch)
    assert prisme_lite.check(str(path)) == 0
    conn.close()


def test_the_writer_counts_the_slices_in_its_own_maintenance(tmp_path, monkeypatch):
    """SealDays is the web family's writer maintenance: once a minute it lists the days that are over, then every
    commit takes a step while days are left, until each is counted for every filter."""
    clock = [NOW]
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: clock[0])
    config = prisme_lite.load_config({"db": str(tmp_path / "prisme.db"), "access_log": "false"}, environ={})
    app = prisme_lite.make_app(config)  # its first commit lists the days of an empty database: none
    for event in month_of_events(seed=13):
        app.ctx.writer.append("web", dict(event))
    app.ctx.writer.flush()
    clock[0] = NOW + 61_000  # a minute on: the next maintenance lists the month's days
    app.ctx.writer.maintained_at = -math.inf  # as at the writer's start (its minute is on the monotonic clock)
    conn = app.ctx.read()
    expected = 31 * len(prisme_lite.sealed_filters("blog.example.com"))
    for _commit in range(20_000):  # a step a commit: 31 days x 9 filters x 20 steps, well inside
        counted = conn.execute(
            "SELECT count(*) FROM slice_days WHERE site = 'blog.example.com' AND touched_at IS NULL"
        ).fetchone()[0]
        if counted == expected:
            break
        app.ctx.writer.run(lambda conn: None)
    assert counted == expected
    expected = 2 * len(prisme_lite.PREFIX_FILTERS) - 1  # both sites; domain only for the shop's subdomains
    for _commit in range(1_000):  # PrefixSlices, in the same maintenance: today's prefixes, complete
        prefixes = conn.execute("SELECT until FROM slice_prefixes WHERE complete = 1").fetchall()
        if len(prefixes) == expected:
            break
        app.ctx.writer.run(lambda conn: None)
    assert prefixes == [(NOW - prisme_lite.HOUR_MS,)] * expected  # to 11:00
    params = [("from", "now-30d/d"), ("country", "FR")]
    assert answers(conn, "blog.example.com", params) == raw_answers(conn, "blog.example.com", params, monkeypatch)
    app.ctx.close()


def test_a_touched_early_day_leaves_the_longer_run_after_it_counted(tmp_path, monkeypatch):
    path = tmp_path / "prisme.db"
    store(path, month_of_events(seed=6))
    conn = prisme_lite.connect(str(path))
    prisme_lite.seal_days(conn, NOW)
    day = NOW // DAY - 25
    monkeypatch.setattr(prisme_lite, "now_ms", lambda: NOW)
    store(path, [late_pageview(day * DAY + 5 * MINUTE, country="DE")])
    params = [("from", "now-30d/d"), ("country", "DE")]
    q = prisme_lite.parse_stats_query([("site", "blog.example.com"), *params], NOW)
    assert prisme_lite.rollup_days(conn, q) == (day + 1, NOW // DAY)  # 24 days after it, not the 5 before
    found = answers(conn, "blog.example.com", params)
    assert found == raw_answers(conn, "blog.example.com", params, monkeypatch)
    assert "/late" in found["top-pages"][0]
    conn.close()


PREFIXED = [case for case in SLICED if case[1] in prisme_lite.PREFIX_FILTERS]


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory):
    """The month of events with its days counted and today's prefixes up to 11:00 (NOW is 12:00)."""
    path = tmp_path_factory.mktemp("prefixes") / "prisme.db"
    store(path, month_of_events(seed=11))
    conn = prisme_lite.connect(str(path))
    prisme_lite.seal_days(conn, NOW)
    prisme_lite.count_prefixes(conn, NOW)
    yield path, conn
    conn.close()


def test_todays_prefixes_are_counted_to_the_last_hour_for_the_filters_on_an_events_column(prefixed):
    path, conn = prefixed
    until = NOW - NOW % (3_600_000) - 3_600_000  # 11:00: the hour to 12:00 is not PREFIX_DELAY_MS over
    assert sorted(conn.execute("SELECT site, fdim, day, until, complete FROM slice_prefixes")) == sorted(
        (site, fdim, NOW // DAY, until, 1)
        for site in ("blog.example.com", "*.shop.example")
        for fdim in prisme_lite.PREFIX_FILTERS
        if fdim in prisme_lite.sliced_filters(site)
    )
    assert conn.execute("SELECT count(*) FROM slice_prefix_counts").fetchone()[0] > 100
    assert prisme_lite.check(str(path)) == 0


@pytest.mark.parametrize(
    "window",
    [
        {"from": "now-30d/d"},  # the dashboard's window: today from its prefix and an hour of raw rows
        {"from": "now/d"},  # today alone
        {"from": "now-29d"},  # a partial first day, subtracted
        {"from": "now-7d/d"},  # buckets of hours: the series read raw, the lists from the prefix
        {"from": "now-2d/d", "to": "now-30m"},  # ends after the prefix
        {"from": "now/d", "to": "now-90m"},  # ends inside the prefix: raw rows
        {"from": "now-3h"},  # begins after the start of the day: raw rows
    ],
)
@pytest.mark.parametrize(("site", "name", "value"), PREFIXED)
def test_a_prefixed_filter_answers_exactly_what_raw_rows_do(prefixed, monkeypatch, window, site, name, value):
    _path, conn = prefixed
    params = [*window.items(), (name, value)]
    assert answers(conn, site, params) == raw_answers(conn, site, params, monkeypatch)


def test_the_dashboard_reads_today_from_the_prefix_and_the_last_hour_raw(prefixed):
    _path, conn = prefixed
    q = prisme_lite.parse_stats_query([("site", "blog.example.com"), ("from", "now-30d/d"), ("country", "FR")], NOW)
    for name in ("top-pages", "overview", "pageviews", "top-referrers"):
        recorder = PlanRecorder(conn)
        prisme_lite.METRICS[name](recorder, q)
        assert any(plan.startswith("SEARCH slice_prefix_counts") for plan in recorder.plans), (name, recorder.plans)


def test_a_row_stored_or_deleted_in_a_prefix_deletes_it_until_it_is_counted_again(tmp_path, monkeypatch, capsys):
    path = tmp_path / "prisme.db"
    store(path, month_of_events(seed=5))
    conn = prisme_lite.connect(str(path))
    prisme_lite.seal_days(conn, NOW)
    prisme_lite.count_prefixes(conn, NOW)
    params = [("from", "now-30d/d"), ("country", "FR")]
    before = answers(conn, "blog.example.com", params)
    today = NOW - NOW % DAY
    store(path, [late_pageview(today + 3 * 3_600_000), late_pageview(NOW - 30 * MINUTE)])  # a late line; one after
    assert conn.execute("SELECT DISTINCT site FROM slice_prefixes").fetchall() == [("*.shop.example",)]
    late = answers(conn, "blog.example.com", params)
    assert late == raw_answers(conn, "blog.example.com", params, monkeypatch)
    assert late["pageviews"][1][-1] == before["pageviews"][1][-1] + 2
    prisme_lite.count_prefixes(conn, NOW)  # counted again from the start of the day
    assert (
        conn.execute("SELECT count(*) FROM slice_prefixes WHERE complete = 1").fetchone()[0]
        == 2 * len([f for f in prisme_lite.PREFIX_FILTERS if f != "domain"]) + 1
    )
    assert answers(conn, "blog.example.com", params) == late
    assert prisme_lite.check(str(path)) == 0

    conn.execute("DELETE FROM events WHERE ts = ?", (today + 3 * 3_600_000,))  # an erasure
    assert conn.execute("SELECT DISTINCT site FROM slice_prefixes").fetchall() == [("*.shop.example",)]
    assert answers(conn, "blog.example.com", params) == raw_answers(conn, "blog.example.com", params, monkeypatch)
    prisme_lite.count_prefixes(conn, NOW + prisme_lite.HOUR_MS)  # and goes on by the hour since
    assert answers(conn, "blog.example.com", params) == raw_answers(conn, "blog.example.com", params, monkeypatch)
    assert prisme_lite.check(str(path)) == 0
    capsys.readouterr()

    conn.execute(
        "UPDATE slice_prefix_counts SET n = n + 1"
        " WHERE (slice, dim, value) = (SELECT slice, dim, value FROM slice_prefix_counts LIMIT 1)"
    )
    assert prisme_lite.check(str(path)) == 1
    assert "problem: today's prefixes equal the events they count: not so for" in capsys.readouterr().out
    conn.close()


# Edges (schema.sql, slice_edges): a window that begins or ends partway through a counted day takes that day's
# distinct visitors from the times of their first and last pageviews, the site's own or a slice's.
# To the start of today at most: the generated visits go on past NOW, which the daily counts of today hold (nothing
# is stored later than it arrives) and a window to NOW does not. The sliced filters' tests above end at NOW too.
EDGE_WINDOWS = [
    {"from": "now-30d", "to": "now/d"},  # a partial first day
    {"from": "now-29d-13h", "to": "now/d"},
    {"from": "now-20d-5h", "to": "now-3d-7h"},  # both edges partial
    {"from": "now-12d/d+20h", "to": "now-1d/d+2h"},  # buckets of a day: each edge in its own
    {"from": "now-1y", "to": "now-2d-1h"},  # buckets of 14 days, and a first day before the rows
]
EDGE_CASES = [
    ("blog.example.com", None, None),
    ("*.shop.example", None, None),  # visitor ids the shop's clients give: counted distinct with other days'
    ("blog.example.com", "country", "FR"),
    ("blog.example.com", "visit-referrer", "direct"),
    ("*.shop.example", "domain", "a.shop.example"),
]


def edge_params(window, name, value):
    return [*window.items(), *([(name, value)] if name else [])]


@pytest.mark.parametrize("window", EDGE_WINDOWS)
@pytest.mark.parametrize(("site", "name", "value"), EDGE_CASES)
def test_a_partial_day_counts_its_visitors_from_its_edges_as_raw_rows_do(sealed, monkeypatch, window, site, name,
                                                                         value):  # fmt: skip
    _path, conn = sealed
    params = edge_params(window, name, value)
    assert answers(conn, site, params) == raw_answers(conn, site, params, monkeypatch)


@pytest.mark.parametrize("window", EDGE_WINDOWS[:4])
@pytest.mark.parametrize(("site", "name", "value"), EDGE_CASES)
def test_the_visitors_of_a_window_between_counted_days_read_no_event(sealed, window, site, name, value):
    _path, conn = sealed
    q = prisme_lite.parse_stats_query([("site", site), *edge_params(window, name, value)], NOW)
    for per_bucket in (False, True) if q.step % DAY == 0 else (False,):  # the overview's, the series' by day
        recorder = PlanRecorder(conn)
        prisme_lite.distinct_visitors(recorder, q, ("pageview",), per_bucket)
        assert not any("events" in plan for plan in recorder.plans), (per_bucket, recorder.plans)


def reads_events(conn, q):
    recorder = PlanRecorder(conn)
    found = prisme_lite.distinct_visitors(recorder, q, ("pageview",), per_bucket=False)
    return found, any("events" in plan for plan in recorder.plans)


def test_a_touched_day_counts_its_visitors_raw_until_its_edges_are_counted_again(tmp_path, monkeypatch, capsys):
    path = tmp_path / "prisme.db"
    store(path, month_of_events(seed=5))
    conn = prisme_lite.connect(str(path))
    prisme_lite.seal_days(conn, NOW)
    params = [("from", "now-30d"), ("to", "now/d")]  # its first day from 12:00 (NOW's time of day)
    q = prisme_lite.parse_stats_query([("site", "blog.example.com"), *params], NOW)
    before, read = reads_events(conn, q)
    assert not read

    monkeypatch.setattr(prisme_lite, "now_ms", lambda: NOW)
    first_day = NOW // DAY - 30
    store(path, [late_pageview(first_day * DAY + 13 * 60 * MINUTE, visitor="prisme_00000000000000ab")])  # a new visitor
    after, read = reads_events(conn, q)
    assert read and after == {0: before[0] + 1}
    assert answers(conn, "blog.example.com", params) == raw_answers(conn, "blog.example.com", params, monkeypatch)
    prisme_lite.seal_days(conn, NOW + prisme_lite.SEAL_DELAY_MS)
    assert reads_events(conn, q) == (after, False)
    assert prisme_lite.check(str(path)) == 0

    site, os = (
        conn.execute(f"SELECT min(id) FROM slice_keys WHERE fdim = '{fdim}'").fetchone()[0] for fdim in ("", "os")
    )
    kept = {key: conn.execute("SELECT n, lasts, last_sum FROM slice_edges WHERE slice = ? AND day = ?",
                              (key, first_day)).fetchone() for key in (site, os)}  # fmt: skip
    times = list(prisme_lite.edge_array(kept[site][1]))
    moved = prisme_lite.edge_times([*times[:-1], times[-1] - 1])  # a visitor's last pageview a millisecond earlier
    held, recounted = "a counted day's edges hold its visitors, in order", "the site's edges are its visitors' first"
    for key, n, lasts, last_sum, problem in [
        (site, kept[site][0] + 1, kept[site][1], kept[site][2], held),  # a count
        (os, kept[os][0] - 1, kept[os][1], kept[os][2], held),  # a filter's count
        (site, kept[site][0], moved, kept[site][2], held),  # a time, its sum kept
        (site, kept[site][0], moved, kept[site][2] - 1, recounted),  # and its sum
    ]:
        update = "UPDATE slice_edges SET n = ?, lasts = ?, last_sum = ? WHERE slice = ? AND day = ?"
        conn.execute(update, (n, lasts, last_sum, key, first_day))
        capsys.readouterr()
        assert prisme_lite.check(str(path)) == 1
        assert f"problem: {problem}" in capsys.readouterr().out, (key, n, last_sum)
        conn.execute(update, (*kept[key], key, first_day))
    assert prisme_lite.check(str(path)) == 0
    conn.close()


def test_days_counted_before_the_edges_get_them_from_the_writers_maintenance(tmp_path, monkeypatch):
    """A database of schema version 12, its days counted: the migration leaves them counted, and SealDays adds
    their edges a day and filter a step (the site's own, which version 12 had not, as a new count)."""
    path = tmp_path / "prisme.db"
    store(path, month_of_events(seed=5))
    conn = prisme_lite.connect(str(path))
    prisme_lite.seal_days(conn, NOW)
    conn.executescript(
        "DELETE FROM slice_days WHERE fdim = ''; DROP TABLE slice_edges; DROP TABLE edge_days; PRAGMA user_version = 12;"
    )
    conn.close()
    prisme_lite.open_database(str(path))
    conn = prisme_lite.connect(str(path))
    assert conn.execute("SELECT count(*) FROM edge_days").fetchone() == (0,)
    q = prisme_lite.parse_stats_query([("site", "blog.example.com"), ("from", "now-30d"), ("to", "now/d")], NOW)
    assert reads_events(conn, q)[1]
    units = conn.execute("SELECT count(*) FROM slice_days").fetchone()[0]
    days = conn.execute("SELECT count(DISTINCT site || day) FROM slice_days").fetchone()[0]
    assert prisme_lite.seal_days(conn, NOW) == units + days
    assert conn.execute(
        "SELECT DISTINCT x.day IS NOT NULL, touched_at FROM slice_days LEFT JOIN edge_days x USING (site, day, fdim)"
    ).fetchall() == [(1, None)]
    assert not reads_events(conn, q)[1]
    params = [("from", "now-30d"), ("to", "now/d"), ("country", "FR")]
    assert answers(conn, "blog.example.com", params) == raw_answers(conn, "blog.example.com", params, monkeypatch)
    assert prisme_lite.check(str(path)) == 0
    conn.close()
