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
