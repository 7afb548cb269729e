-- prisme_lite database schema. Applied to a new database as a whole; an older database is brought up to date by
-- the numbered migrations in prisme_lite.py (MIGRATIONS), and PRAGMA user_version records which one it has.
-- Times are UTC unix milliseconds. Raw IP addresses are never stored anywhere.

-- Small facts the server keeps between restarts: the visitor salt of the day, the admin token.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Registered origins (sites): an exact host, or `*.example.com` for every subdomain of example.com.
CREATE TABLE IF NOT EXISTS origins (
    origin     TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per visit: opened by a pageview, continued by the visitor's activity within the session timeout.
CREATE TABLE IF NOT EXISTS sessions (
    id           INTEGER PRIMARY KEY,
    site         TEXT NOT NULL,
    host         TEXT NOT NULL,
    visitor_id   TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    entry_path   TEXT NOT NULL,
    exit_path    TEXT NOT NULL,
    pageviews    INTEGER NOT NULL,
    referrer     TEXT NOT NULL,
    utm_source   TEXT,
    utm_medium   TEXT,
    utm_campaign TEXT,
    utm_term     TEXT,
    utm_content  TEXT,
    browser      TEXT NOT NULL,
    os           TEXT NOT NULL,
    device       TEXT NOT NULL,
    country      TEXT NOT NULL
);
-- The writer looks up a visitor's latest session for every event.
CREATE INDEX IF NOT EXISTS sessions_visitor ON sessions (site, visitor_id, last_seen);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (site, started_at);

-- Every stored event of the web-events family.
-- kind: pageview | custom | outbound | download.
-- name: the custom event's name, or the URL of the outbound link or downloaded file.
-- referrer: the host the visitor came from, or `direct`.
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY,
    ts           INTEGER NOT NULL,
    site         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    name         TEXT,
    host         TEXT NOT NULL,
    path         TEXT NOT NULL,
    referrer     TEXT NOT NULL,
    utm_source   TEXT,
    utm_medium   TEXT,
    utm_campaign TEXT,
    utm_term     TEXT,
    utm_content  TEXT,
    visitor_id   TEXT NOT NULL,
    session_id   INTEGER REFERENCES sessions (id),
    browser      TEXT NOT NULL,
    os           TEXT NOT NULL,
    device       TEXT NOT NULL,
    country      TEXT NOT NULL,
    status       INTEGER NOT NULL,
    props        TEXT
);
-- Every report reads one site over a time range.
CREATE INDEX IF NOT EXISTS events_site_ts ON events (site, ts);

-- Action counters (Prefetch API): clients registered for a domain, and what they configured.
-- secret_hash: SHA-256 of the client secret, which is shown once at registration (it is 32 random bytes, so a
-- fast hash is enough); page_ids and action_ids: JSON lists.
CREATE TABLE IF NOT EXISTS counter_clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    domain      TEXT NOT NULL UNIQUE,
    email       TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    page_ids    TEXT NOT NULL DEFAULT '[]',
    action_ids  TEXT NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- The count of each action on each page, exact: only the writer changes it, one increment per committed job.
CREATE TABLE IF NOT EXISTS counters (
    client_id TEXT NOT NULL,
    action_id TEXT NOT NULL,
    page_id   TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (client_id, action_id, page_id)
) WITHOUT ROWID;

-- The same counts per UTC day (day = unix days), for the daily series.
CREATE TABLE IF NOT EXISTS counter_days (
    client_id TEXT NOT NULL,
    action_id TEXT NOT NULL,
    page_id   TEXT NOT NULL,
    day       INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (client_id, action_id, page_id, day)
) WITHOUT ROWID;

-- A token counts once per action and page until expires_at (15 minutes after it counted).
CREATE TABLE IF NOT EXISTS counter_claims (
    jti        TEXT NOT NULL,
    action_id  TEXT NOT NULL,
    page_id    TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (jti, action_id, page_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counter_claims_expiry ON counter_claims (expires_at);

-- Access tokens for the server-to-server APIs, kept as the SHA-256 of the token (shown once, at creation).
-- scopes: space-separated, from capture_publish, stats_read, admin, track_public.
CREATE TABLE IF NOT EXISTS access_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;

-- Server events (Prepr REST API), stored as sent. ts is the event's time, received_at when it arrived.
-- referrer: the host of `rl`, or `direct`; screen: `sr` as WIDTHxHEIGHT.
CREATE TABLE IF NOT EXISTS server_events (
    id           INTEGER PRIMARY KEY,
    ts           INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    label        TEXT NOT NULL,
    content_id   TEXT,
    locale       TEXT,
    customer_id  TEXT NOT NULL,
    utm_source   TEXT,
    utm_medium   TEXT,
    utm_campaign TEXT,
    utm_term     TEXT,
    utm_content  TEXT,
    referrer     TEXT NOT NULL,
    screen       TEXT,
    token_id     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS server_events_label_ts ON server_events (label, ts);
CREATE INDEX IF NOT EXISTS server_events_ts ON server_events (ts);

-- Customers, created on first sight.
CREATE TABLE IF NOT EXISTS customers (
    id         TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    events     INTEGER NOT NULL
) WITHOUT ROWID;

-- What a customer likes, bookmarks or subscribes to: once per customer and content item, until undone.
CREATE TABLE IF NOT EXISTS customer_relations (
    customer_id TEXT NOT NULL,
    content_id  TEXT NOT NULL,
    relation    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (customer_id, content_id, relation)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS customer_relations_content ON customer_relations (content_id, relation);

-- Widget tracking (Olapic analytics API): one row per widget or media beacon.
-- widget: category | stream | best; source_id: the category or stream id (NULL for best, and for a stream
-- widget whose stream was not found); media_id: set on media beacons; segments: JSON object, one value per key;
-- redirect_host: where a shop click sent the visitor.
CREATE TABLE IF NOT EXISTS widget_events (
    id            INTEGER PRIMARY KEY,
    ts            INTEGER NOT NULL,
    instance_id   TEXT NOT NULL,
    widget        TEXT NOT NULL,
    source_id     INTEGER,
    media_id      INTEGER,
    action        TEXT NOT NULL,
    analytics_id  TEXT NOT NULL,
    pics          INTEGER,
    ab_testing    INTEGER,
    segments      TEXT,
    redirect_host TEXT,
    token_id      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS widget_events_instance_ts ON widget_events (instance_id, ts);
CREATE INDEX IF NOT EXISTS widget_events_analytics ON widget_events (analytics_id, ts);

-- Checkouts, once per transaction. Amounts are exact: integers in units of 1/10,000 of the currency.
CREATE TABLE IF NOT EXISTS checkouts (
    transaction_id TEXT PRIMARY KEY,
    ts             INTEGER NOT NULL,
    analytics_id   TEXT NOT NULL,
    currency       TEXT NOT NULL,
    total_e4       INTEGER NOT NULL,
    referrer       TEXT,
    segments       TEXT,
    token_id       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS checkouts_ts ON checkouts (ts);

CREATE TABLE IF NOT EXISTS checkout_products (
    transaction_id TEXT NOT NULL REFERENCES checkouts (transaction_id),
    line           INTEGER NOT NULL,
    product_id     TEXT NOT NULL,
    amount_e4      INTEGER NOT NULL,
    PRIMARY KEY (transaction_id, line)
) WITHOUT ROWID;

-- @rollups (schema version 2; 3 moved the counting of new rows from triggers to the writer) ---------------------
-- Daily counts kept exact in the same transaction as the rows they count, so the 30-day dashboard reads a few
-- thousand rows instead of millions. The writer adds up each batch's counts and upserts each key once
-- (WebEventStore); rows stored another way are counted with rollup_count_sql() in prisme_lite.py; deleted rows
-- (pruning) are taken off by the triggers below. day = unix days (UTC). dim and value:
--   from pageviews: pageviews '', path, referrer, utm_source, utm_medium, utm_campaign, country, os, browser
--     (value: the event's column; NULLs are not counted), visitors '' (distinct day-salted visitor ids);
--   from other events: custom, outbound, download (value: the event's name);
--   from sessions, by the day they started: sessions '', bounces '' (sessions of one pageview), duration ''
--     (sum of last_seen - started_at, ms), entry_path, exit_path, and (schema version 5) what the visit came from:
--     visit_referrer, visit_utm_source, visit_utm_medium, visit_utm_campaign (NULLs are not counted).
-- n may fall to 0 (an exit path a session moved away from, pruned rows): readers skip those.
CREATE TABLE IF NOT EXISTS daily_counts (
    site  TEXT NOT NULL,
    dim   TEXT NOT NULL,
    day   INTEGER NOT NULL,
    value TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (site, dim, day, value)
) WITHOUT ROWID;

-- Who was seen on a day, so a visitor counts once a day. Day-salted ids (salted = 1, `prisme_` + 16 hex digits)
-- never repeat on another day, so the distinct visitors of a window are the sum of its days; their rows are only
-- needed while their day can still get events and are deleted after it (Writer maintenance). Ids a client gave
-- (salted = 0) can come back any day: those rows stay, and a window counts them distinct.
CREATE TABLE IF NOT EXISTS daily_visitors (
    site       TEXT NOT NULL,
    salted     INTEGER NOT NULL,
    day        INTEGER NOT NULL,
    visitor_id TEXT NOT NULL,
    PRIMARY KEY (site, salted, day, visitor_id)
) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS pageview_uncounted AFTER DELETE ON events WHEN OLD.kind = 'pageview' BEGIN
    UPDATE daily_counts SET n = n - 1 WHERE site = OLD.site AND day = OLD.ts / 86400000 AND (dim, value) IN (VALUES
        ('pageviews', ''), ('path', OLD.path), ('referrer', OLD.referrer), ('utm_source', OLD.utm_source),
        ('utm_medium', OLD.utm_medium), ('utm_campaign', OLD.utm_campaign), ('country', OLD.country),
        ('os', OLD.os), ('browser', OLD.browser)
    );
END;

CREATE TRIGGER IF NOT EXISTS event_uncounted AFTER DELETE ON events
WHEN OLD.kind != 'pageview' AND OLD.name IS NOT NULL BEGIN
    UPDATE daily_counts SET n = n - 1
    WHERE site = OLD.site AND dim = OLD.kind AND day = OLD.ts / 86400000 AND value = OLD.name;
END;

CREATE TRIGGER IF NOT EXISTS session_uncounted AFTER DELETE ON sessions BEGIN
    INSERT INTO daily_counts (site, dim, day, value, n)
    SELECT OLD.site, column1, OLD.started_at / 86400000, column2, -column3 FROM (VALUES
        ('sessions', '', 1), ('bounces', '', OLD.pageviews = 1), ('duration', '', OLD.last_seen - OLD.started_at),
        ('entry_path', OLD.entry_path, 1), ('exit_path', OLD.exit_path, 1), ('visit_referrer', OLD.referrer, 1),
        ('visit_utm_source', OLD.utm_source, 1), ('visit_utm_medium', OLD.utm_medium, 1),
        ('visit_utm_campaign', OLD.utm_campaign, 1)
    ) WHERE column2 IS NOT NULL
    ON CONFLICT DO UPDATE SET n = n + excluded.n;
END;

-- @dashboard_sessions (schema version 4) ---------------------------------------------------------------------------
-- Dashboard logins. The cookie holds a random id, kept here as its SHA-256; token_id is `admin` for the admin token
-- (credential_hash: the SHA-256 of that token, so a rotated one ends its logins) or the access token's id. Logout
-- deletes its row, revoking a token deletes the rows it opened; expired rows go in the writer's maintenance.
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    id_hash         TEXT PRIMARY KEY,
    token_id        TEXT NOT NULL,
    credential_hash TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dashboard_sessions_token ON dashboard_sessions (token_id);

-- @goals (schema version 6) ---------------------------------------------------------------------------------------
-- What counts as a conversion on a site (`prisme-lite goals add`): a custom event of this name (kind `event`), or a
-- pageview of this path (kind `path`). The stats read them at each request, so a goal added applies at once, to the
-- events already stored too.
CREATE TABLE IF NOT EXISTS goals (
    id         INTEGER PRIMARY KEY,
    site       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('event', 'path')),
    target     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (site, kind, target)
);

-- @shares (schema version 7) --------------------------------------------------------------------------------------
-- Shared dashboards (`prisme-lite share create`): a link /share/<token> shows one site's dashboard without a login,
-- read-only, small counts suppressed. The token is kept as its SHA-256 only, and its first 8 characters (`prefix`)
-- for `share list` and `share revoke`. A revoked or expired row stays (what was shared, and until when), answered 404.
CREATE TABLE IF NOT EXISTS shares (
    token_hash TEXT PRIMARY KEY,
    prefix     TEXT NOT NULL,
    site       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
) WITHOUT ROWID;

-- @imports (schema version 8) -------------------------------------------------------------------------------------
-- Access logs imported by `prisme-lite import`. A file is known by the SHA-256 of its first 64 KiB and its size
-- (file_key): once finished_at is set, importing it again reads nothing. import_marks, per site: the time of the
-- latest log line imported and how many of that site's lines carried that very time, so that a log overlapping one
-- imported before (a rotated file that grew, a run cut short) adds only the lines after them. Neither holds an IP.
CREATE TABLE IF NOT EXISTS imports (
    file_key    TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    lines       INTEGER NOT NULL,  -- read, of its last run
    pageviews   INTEGER NOT NULL,  -- given to the writer, over its runs (reloads among them are stored as nothing)
    started_at  INTEGER NOT NULL,
    finished_at INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS import_marks (
    site  TEXT PRIMARY KEY,
    ts    INTEGER NOT NULL,
    lines INTEGER NOT NULL
) WITHOUT ROWID;

-- @mirror (schema version 9) ----------------------------------------------------------------------------------------
-- The ClickHouse mirror (clickhouse_url): rows changed since the mirror last shipped them. New rows of events,
-- sessions, server_events and widget_events are shipped from a position (meta mirror_position, by id); what this
-- table holds is what a position cannot see: a session or an event changed after it was stored, and the rows of
-- checkouts and counter_days (keyed by text). Filled by the writer's own triggers only while the mirror is on.
-- key: the row's id, the transaction id, or for counter_days the JSON [client_id, action_id, page_id, day];
-- changes: how many times it changed (the mirror deletes an entry only if it did not change again while shipping);
-- since: when it first changed (ms), for the lag.
CREATE TABLE IF NOT EXISTS mirror_pending (
    tbl     TEXT NOT NULL,
    key     ANY NOT NULL,
    changes INTEGER NOT NULL,
    since   INTEGER NOT NULL,
    PRIMARY KEY (tbl, key)
) WITHOUT ROWID;

-- @slices (schema version 10) -------------------------------------------------------------------------------------
-- The daily counts again, per value of one filter (fdim: country, browser, os, domain, utm-source, utm-medium,
-- utm-campaign), so that a dashboard filtered by one of them reads whole days from here instead of raw rows.
-- slice_keys names each (site, filter, value) once: fvalue is the event's column for the counts of events, the
-- session's for those of sessions. slice_counts: dim (coded), value, n as in daily_counts, visitors among them
-- (distinct day-salted ids with that value on that day).
-- They are not kept up to date by the writer: the writer's maintenance (SealDays) counts a day once it is over
-- (slice_days: counted when touched_at is NULL), and anything that changes a counted day's rows afterwards (a late
-- event, a session going on past midnight, an import, a prune) sets touched_at, so readers take that day from the
-- raw rows until it is counted again. touched_at is -1 while SealDays counts the day, a step at a time.
CREATE TABLE IF NOT EXISTS slice_keys (
    id     INTEGER PRIMARY KEY,
    site   TEXT NOT NULL,
    fdim   TEXT NOT NULL,
    fvalue TEXT NOT NULL,
    UNIQUE (site, fdim, fvalue)
);
CREATE TABLE IF NOT EXISTS slice_counts (
    slice INTEGER NOT NULL,
    dim   INTEGER NOT NULL,  -- the daily counts' dim, by its place in SLICE_DIMS (prisme_lite.py)
    day   INTEGER NOT NULL,
    value TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (slice, dim, day, value)
) WITHOUT ROWID;
-- Visitor ids a client gave (not day-salted: they can come back another day), per slice and day, so that a window
-- counts them distinct, as daily_visitors does for the whole site.
CREATE TABLE IF NOT EXISTS slice_visitors (
    slice      INTEGER NOT NULL,
    day        INTEGER NOT NULL,
    visitor_id TEXT NOT NULL,
    PRIMARY KEY (slice, day, visitor_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slice_days (
    site       TEXT NOT NULL,
    day        INTEGER NOT NULL,
    fdim       TEXT NOT NULL,
    touched_at INTEGER,
    PRIMARY KEY (site, day, fdim)
) WITHOUT ROWID;
-- A filter on a page or a referrer picks few rows: these find them with a seek per hour of the window (ByHour in
-- prisme_lite.py). Grouped by the hour, an insert lands at the end of the index, as in events_site_ts. `direct`,
-- most pageviews' referrer, is left out: a filter on it reads the window's rows.
CREATE INDEX IF NOT EXISTS events_hour_path ON events (ts / 3600000, path);
CREATE INDEX IF NOT EXISTS events_hour_referrer ON events (ts / 3600000, referrer) WHERE referrer != 'direct';
-- What a visit came from and where it entered: its session found by value (VisitIndexed), then its events.
CREATE INDEX IF NOT EXISTS sessions_referrer ON sessions (referrer, started_at) WHERE referrer != 'direct';
CREATE INDEX IF NOT EXISTS sessions_entry ON sessions (entry_path, started_at);
CREATE INDEX IF NOT EXISTS events_session ON events (session_id) WHERE session_id IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS event_unsealed AFTER DELETE ON events BEGIN
    UPDATE slice_days SET touched_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE site = OLD.site AND day = OLD.ts / 86400000 AND (touched_at IS NULL OR touched_at < 0);
END;
CREATE TRIGGER IF NOT EXISTS session_unsealed AFTER DELETE ON sessions BEGIN
    UPDATE slice_days SET touched_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE site = OLD.site AND day = OLD.started_at / 86400000 AND (touched_at IS NULL OR touched_at < 0);
END;

-- @sessionless (schema version 11) ---------------------------------------------------------------------------------
-- A pageview that opens a session gives it its visitor's events of the same page stored just before it without one
-- (ATTACH_EARLIER_EVENTS in prisme_lite.py). Few events are ever stored so; without this index, that UPDATE read
-- every event of the site in its seconds, once per new session: at 15,000 pageviews/s the writer fell minutes behind.
CREATE INDEX IF NOT EXISTS events_sessionless ON events (site, visitor_id, ts)
WHERE session_id IS NULL AND kind != 'pageview';

-- @prefixes (schema version 12) ------------------------------------------------------------------------------------
-- Today's slices so far, for the filters on an event's own column (country, browser, os, domain, utm-*): each slice's
-- counts of events from the start of `day` (unix days) to `until` (unix ms, a whole hour), dim and value as in
-- slice_counts, without visitors (an id a login gives changes an event's) or anything of sessions (a visit goes on).
-- The writer's maintenance (PrefixSlices) adds each hour once it is over, so that a filtered view reads today's rows
-- from here up to the last hour, and only the rest raw. An event stored or deleted between the start of `day` and
-- `until` (an import, a late line, an erasure) deletes its site's prefixes, in the same transaction (forget_prefixes
-- as the writer stores events, the trigger below as rows are deleted); they are counted again from the start of the
-- day. Rows of slice_prefix_counts without a prefix are left for PrefixSlices to replace: nothing reads them.
CREATE TABLE IF NOT EXISTS slice_prefixes (
    site     TEXT NOT NULL,
    fdim     TEXT NOT NULL,
    day      INTEGER NOT NULL,
    until    INTEGER NOT NULL,
    complete INTEGER NOT NULL,  -- 0 while PrefixSlices counts it from the start of the day, a statement at a time
    PRIMARY KEY (site, fdim)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slice_prefix_counts (
    slice INTEGER NOT NULL,
    dim   INTEGER NOT NULL,
    value TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (slice, dim, value)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS event_deleted_from_prefix AFTER DELETE ON events
WHEN OLD.ts < (SELECT max(until) FROM slice_prefixes)
    AND OLD.ts >= (SELECT min(day) FROM slice_prefixes) * 86400000 BEGIN
    DELETE FROM slice_prefixes WHERE site = OLD.site AND OLD.ts >= day * 86400000 AND OLD.ts < until;
END;

-- @edges (schema version 13) ---------------------------------------------------------------------------------------
-- A counted day's visitors by the time of their first and of their last pageview, per slice (and for the whole site:
-- fdim ''), so that a window that begins or ends partway through a past day counts that day's distinct visitors
-- without reading its rows: those of [t, midnight) are the ones whose last pageview is at t or later. n: the
-- day-salted visitors; firsts, lasts: their times in ms into the day, sorted, as 4-byte little-endian integers,
-- zlib-compressed (edge_times in prisme_lite.py); first_sum, last_sum: the sums of those times, for `check`; others:
-- JSON [[visitor_id, first, last], ...] of the ids a client gave, which are counted distinct over days.
-- SealDays counts them with a day's slices and lists the day in edge_days; they are read while slice_days has the
-- day counted, and a day touched later is read raw until counted again, as its slices are. A value with no row on
-- a day so counted had no pageviews.
CREATE TABLE IF NOT EXISTS slice_edges (
    slice     INTEGER NOT NULL,
    day       INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    firsts    BLOB NOT NULL,
    lasts     BLOB NOT NULL,
    first_sum INTEGER NOT NULL,
    last_sum  INTEGER NOT NULL,
    others    TEXT NOT NULL,
    PRIMARY KEY (slice, day)
);
CREATE TABLE IF NOT EXISTS edge_days (
    site TEXT NOT NULL,
    day  INTEGER NOT NULL,
    fdim TEXT NOT NULL,
    PRIMARY KEY (site, day, fdim)
) WITHOUT ROWID;
