-- prisme_lite's ClickHouse tables: the mirror of the SQLite rows (schema.sql), one table per exported kind.
-- `prisme-lite clickhouse init` runs these statements one by one in the database the URL's `database` names.
-- Runs on ClickHouse 18.16 (Debian's package) and on current ClickHouse: old syntax, no LowCardinality.
--
-- Columns are the export's NDJSON records (GET /api/v1/export?format=ndjson) with their SQLite types: times are
-- UTC unix milliseconds as Int64 exactly as SQLite has them, so answers compare equal. Plus:
--   node_id  the prisme_lite node that stored the row (PRISME_NODE_ID): (node_id, id) is a row's identity;
--   version  larger for a later state of the same row (a session's pageviews grow): ReplacingMergeTree keeps the
--            largest, so read with FINAL (or argMax(..., version)) and a row shipped twice counts once;
--   time     the export's `time`, derived (MATERIALIZED: not in SELECT *, not sent by the mirror).
-- ORDER BY starts with what the stats read (site, time) and ends with the row's identity, and holds only columns
-- that never change once a row is stored: the replacing key is the row's identity.

CREATE TABLE IF NOT EXISTS events (
    id           Int64,
    ts           Int64,
    site         String,
    kind         String,
    name         Nullable(String),
    host         String,
    path         String,
    referrer     String,
    utm_source   Nullable(String),
    utm_medium   Nullable(String),
    utm_campaign Nullable(String),
    utm_term     Nullable(String),
    utm_content  Nullable(String),
    visitor_id   String,
    session_id   Nullable(Int64),
    browser      String,
    os           String,
    device       String,
    country      String,
    status       Int64,
    props        Nullable(String),
    node_id      String,
    version      UInt64,
    time         DateTime MATERIALIZED toDateTime(intDiv(ts, 1000), 'UTC')
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC'))
ORDER BY (site, ts, node_id, id);

-- A session is shipped again each time it changes (pageviews, exit_path, last_seen).
CREATE TABLE IF NOT EXISTS sessions (
    id           Int64,
    site         String,
    host         String,
    visitor_id   String,
    started_at   Int64,
    last_seen    Int64,
    entry_path   String,
    exit_path    String,
    pageviews    Int64,
    referrer     String,
    utm_source   Nullable(String),
    utm_medium   Nullable(String),
    utm_campaign Nullable(String),
    utm_term     Nullable(String),
    utm_content  Nullable(String),
    browser      String,
    os           String,
    device       String,
    country      String,
    node_id      String,
    version      UInt64,
    time         DateTime MATERIALIZED toDateTime(intDiv(started_at, 1000), 'UTC')
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(started_at, 1000), 'UTC'))
ORDER BY (site, started_at, node_id, id);

-- Server events are not recorded per site: every report reads a time range.
CREATE TABLE IF NOT EXISTS server_events (
    id           Int64,
    ts           Int64,
    received_at  Int64,
    label        String,
    content_id   Nullable(String),
    locale       Nullable(String),
    customer_id  String,
    utm_source   Nullable(String),
    utm_medium   Nullable(String),
    utm_campaign Nullable(String),
    utm_term     Nullable(String),
    utm_content  Nullable(String),
    referrer     String,
    screen       Nullable(String),
    token_id     String,
    node_id      String,
    version      UInt64,
    time         DateTime MATERIALIZED toDateTime(intDiv(ts, 1000), 'UTC')
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC'))
ORDER BY (ts, node_id, id);

CREATE TABLE IF NOT EXISTS widget_events (
    id            Int64,
    ts            Int64,
    instance_id   String,
    widget        String,
    source_id     Nullable(Int64),
    media_id      Nullable(Int64),
    action        String,
    analytics_id  String,
    pics          Nullable(Int64),
    ab_testing    Nullable(Int64),
    segments      Nullable(String),
    redirect_host Nullable(String),
    token_id      String,
    node_id       String,
    version       UInt64,
    time          DateTime MATERIALIZED toDateTime(intDiv(ts, 1000), 'UTC')
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC'))
ORDER BY (ts, node_id, id);

-- One row per transaction (its id is the row's identity); products: a JSON list of `id:amount`, as exported.
CREATE TABLE IF NOT EXISTS checkouts (
    transaction_id String,
    ts             Int64,
    analytics_id   String,
    currency       String,
    total_e4       Int64,
    referrer       Nullable(String),
    segments       Nullable(String),
    token_id       String,
    products       String,
    node_id        String,
    version        UInt64,
    time           DateTime MATERIALIZED toDateTime(intDiv(ts, 1000), 'UTC')
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC'))
ORDER BY (ts, node_id, transaction_id);

-- SQLite keeps no row per increment (a counter token counts once per action and page in 15 minutes, and only the
-- counts are kept): this is counter_days, the increments of one action on one page of one client in one UTC day
-- (day = unix days), shipped again with a larger version each time its count grows. The sum of `count` over days
-- is the counter (SQLite's counters table). A client's site is its domain, looked up by the reader.
CREATE TABLE IF NOT EXISTS counter_increments (
    client_id String,
    action_id String,
    page_id   String,
    day       Int64,
    count     Int64,
    node_id   String,
    version   UInt64,
    time      DateTime MATERIALIZED toDateTime(day * 86400, 'UTC')
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(day * 86400, 'UTC'))
ORDER BY (client_id, day, action_id, page_id, node_id);
