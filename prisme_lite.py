"""prisme_lite: a small, self-hosted web analytics server.

One Bottle application on one SQLite file in WAL mode. Browsers and backends send events over Prisme's web-events
API; every event is committed to the database before its request is answered, by one writer thread that commits
the events of all concurrent requests together. `prisme-lite serve` starts a demo on 127.0.0.1:8000 with
./prisme.db; `prisme-lite --help` lists the rest.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import csv
import ctypes
import datetime
import errno
import fcntl
import functools
import gc
import gzip
import hashlib
import hmac
import html
import http.client
import importlib.resources
import io
import ipaddress
import itertools
import json
import logging
import math
import mmap
import os
import queue
import re
import resource
import secrets
import signal
import socket
import sqlite3
import stat
import sys
import threading
import time
import tomllib
import traceback
import urllib.error
import urllib.request
import zlib
from array import array
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Any, NotRequired, TypedDict
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

import bottle
import jwt
from bottle import request, response

__version__ = "0.1.0"

log = logging.getLogger("prisme_lite")


###############################################################################
# Constants ###################################################################
###############################################################################

# The smallest valid transparent GIF (35 bytes): the cheapest image a browser will accept for an <img> beacon.
GIF = bytes.fromhex("4749463839610100010000000021f90401000000002c00000000010001000002010000")
GIF_HEADERS = {
    "Content-Type": "image/gif",
    "Cache-Control": "no-store, no-cache, max-age=0, must-revalidate, proxy-revalidate",
}

SCHEMA_VERSION = 13
# MIGRATIONS[n] brings a database from schema version n to n + 1 (SQL, or a function that returns it). Version 0
# is an empty file, built from schema.sql as a whole.
MIGRATIONS: dict[int, str | Callable[[], str]] = {
    1: lambda: rollup_schema() + "".join(f"{sql};" for sql in rollup_count_sql()),  # 2: the daily counts ("@rollups")
    # 3: the writer counts what it inserts (WebEventStore), a batch at a time; the counts stay as they are.
    2: "".join(
        f"DROP TRIGGER IF EXISTS {name};"
        for name in ("pageview_counted", "event_counted", "visitor_counted", "session_counted", "session_recounted")
    ),
    # 4: logins kept on the server, so that they can be ended; the key that signed the cookies goes
    3: lambda: schema_part("@dashboard_sessions") + "DELETE FROM meta WHERE key = 'dashboard_key';",
    # 5: sessions counted by their referrer and campaign too (the visit_* dims); their delete trigger takes them off
    # (a database built at version 1 already has them: counted once, again)
    4: lambda: (
        "DROP TRIGGER IF EXISTS session_uncounted;"
        + schema_trigger("session_uncounted")
        + (
            f"DELETE FROM daily_counts WHERE dim IN ({', '.join(map(repr, VISIT_DIMS))});"
            "INSERT INTO daily_counts (site, dim, day, value, n) SELECT * FROM ("
            + " UNION ALL ".join(visit_recount("sessions"))
            + ") WHERE true ON CONFLICT DO UPDATE SET n = n + excluded.n;"
        )
    ),
    5: lambda: schema_part("@goals"),  # 6: goals (conversions)
    6: lambda: schema_part("@shares"),  # 7: shared dashboards
    7: lambda: schema_part("@imports"),  # 8: access logs imported, and how far (`prisme-lite import`)
    8: lambda: schema_part("@mirror"),  # 9: the ClickHouse mirror's pending rows
    9: lambda: schema_part("@slices"),  # 10: the daily counts per filter value (SealDays fills them in the background)
    10: lambda: schema_part("@sessionless"),  # 11: an index of the events stored without a session
    11: lambda: schema_part("@prefixes"),  # 12: today's slices up to the last hour (PrefixSlices)
    12: lambda: schema_part("@edges"),  # 13: counted days' visitors by first and last pageview (SealDays adds them)
}
MINUTE_MS = 60_000
# The upper bounds (seconds) of /metrics' request duration histogram: from the pixel's tenths of a millisecond to a
# filtered report over a million pageviews (seconds; MEASUREMENTS.md).
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS  # a UTC day in unix ms: the unit of the daily tables (`day` columns)

MAX_NAME_LENGTH = 128  # custom event name, action id, page id, label
MAX_PROPERTIES = 50
MAX_PROPERTY_KEY_LENGTH = 64
MAX_PROPERTY_VALUE_BYTES = 1024
MAX_URL_LENGTH = 2048
MAX_UTM_LENGTH = 256  # longer utm_* values are cut, not refused: a long campaign name is no reason to lose a visit
MAX_VISITOR_ID_LENGTH = 64
PAGE_STATUS = re.compile(r"[1-5][0-9][0-9]")  # X-Prisme-Status / status: empty means 200
MAX_USER_AGENT_LENGTH = 1024
MAX_QUERY_FIELDS = 200

WRITE_TIMEOUT = 10.0  # seconds a request waits for the writer before it answers 503
WRITER_BATCH = 512  # waiting jobs committed together at most
# Seconds the writer lets new journal lines gather before it folds them (a job that waits for its answer is not
# kept waiting): events are acknowledged once in the journal, so this costs no request anything, and folding a
# few hundred lines a transaction rather than a few costs the writer a fraction per event (statements, commits,
# and GIL hand-offs with the request threads).
FOLD_DELAY = 0.02
GATHER_BYTES = 256 << 10  # no gathering once this much journal waits: it folds at once
# Bytes of journal folded in one transaction at most (some 5,000 events). A transaction writes each index page it
# changes once, however many of its rows land there (the tails of sessions_referrer, events_hour_referrer, …), so a
# bigger one folds faster: a drain of 50,000 events (bench.timed_fold) 8,600 -> 11,900 events/s on an empty database
# from 1 to 2 MiB, 4,100 -> 4,800 at 10 M; 4 MiB did 15,200 / 5,500 but held 22 MB more while it folded, 2 MiB 9 MB.
JOURNAL_CHUNK = 2 << 20
JOURNAL_ROTATE = 16 << 20  # start a new journal file once this much is folded
JOURNAL_BACKLOG = 64 << 20  # refuse events (503) rather than let the journal outgrow a database that is down
WAKE, STOP = "wake", "stop"  # writer signals; jobs are tuples
# A journal line's JSON, made once: json.dumps with these options builds a new encoder per call (a third of its time);
# no check for cycles (a record is made of plain values): 15 % of its time.
JOURNAL_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
WAL_LIMIT = 64 << 20  # bytes of -wal file before the writer truncates it (see Writer._checkpoint)
MAINTENANCE_INTERVAL = 60.0  # seconds between the writer's clean-ups (expired counter claims)
ORIGINS_REFRESH = 1.0  # seconds: how soon `prisme-lite origins add` reaches a running server
THREADS_DEFAULT = 4  # Python threads under granian: ingest with the dashboard read kept 0.77 of its rate, 2 kept 0.34
LISTEN_BACKLOG = 1024
STOP_GRACE = 5.0  # seconds a stop waits for requests in progress before the writer closes
MAX_CONNECTIONS = 10_000  # open connections at once (granian); the file limit is raised to match at start
URL_CACHE_SIZE = 2048  # page URLs parsed and origins' hosts: a site's pageviews repeat a few hundred pages
UA_CACHE_SIZE = 2048  # real traffic repeats a few hundred user agents; a new one costs ~0.5 ms to parse

BOT_PATTERN = re.compile(r"bot|spider|crawl|headless", re.IGNORECASE)
# Every browser in use names itself Mozilla/5.0 (Presto's Opera, Opera/9.80); curl, Wget and the HTTP libraries
# (python-requests, Go-http-client, aiohttp, okhttp, Java-http-client, PostmanRuntime, axios, …) name themselves.
BROWSER_PATTERN = re.compile(r"Mozilla/|Opera/")
HOST_PATTERN = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
TERMINAL_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # what terminal_text escapes: C1 controls too
SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})  # WHATWG: where `\\` is `/`
DEFAULT_PORTS = {"http": 80, "https": 443}  # the ports a browser leaves out of a URL
NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")  # a last label a browser reads as (part of) an IPv4 address
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
SCOPES = ("capture_publish", "stats_read", "admin", "track_public", "metrics_read")

# What every API answer carries, besides Access-Control-Allow-Origin (the request's own Origin, or *).
API_HEADERS = {
    "Vary": "Origin",
    "Access-Control-Expose-Headers": (
        "X-Request-Id, X-Prisme-Dropped, X-RateLimit-Limit, X-RateLimit-Remaining, Retry-After"
    ),
}
# The headers the tracking script and Prisme's clients send on a cross-origin POST.
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": (
        "Content-Type, Authorization, X-Prisme-Referrer, X-Prisme-Document-Referrer, "
        "X-Prisme-Visitor-Id, X-Prisme-Status"
    ),
    "Access-Control-Expose-Headers": API_HEADERS["Access-Control-Expose-Headers"],
    "Access-Control-Max-Age": "86400",
}


###############################################################################
# Configuration ###############################################################
###############################################################################


class ConfigError(Exception):
    """A setting with a value that is not allowed; the message names the setting and what it may be."""


class CommandError(Exception):
    """A command that cannot do what its arguments ask (a backup file that exists, a server in its way); the message
    says what to do instead."""


@dataclass(frozen=True)
class Setting:
    """One configuration key: its default, its type and the one line that config.example.toml says about it."""

    default: Any
    value_type: str  # str | int | bool | list | choice
    help: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()


SETTINGS: dict[str, Setting] = {
    "db": Setting("./prisme.db", "str", "path of the SQLite database file (serve and init create it if missing)"),
    "host": Setting("127.0.0.1", "str", "address to listen on; 0.0.0.0 to accept connections from other machines"),
    "port": Setting(8000, "int", "TCP port to listen on (0 picks a free one)", 0, 65535),
    "origins": Setting(
        ["localhost", "127.0.0.1"],
        "list",
        "sites allowed to send events, besides those added with `prisme-lite origins add`",
    ),
    "redirect_hosts": Setting(
        [], "list", "hosts a widget's shop click may redirect to; empty = the registered origins"
    ),
    "trust_proxy": Setting(False, "bool", "take the client IP from proxy_header: only behind your own proxy"),
    "proxy_header": Setting("X-Forwarded-For", "str", "header that your reverse proxy sets to the client IP"),
    "proxy_hops": Setting(
        1, "int", "how many trusted proxies append to proxy_header (1 = the right-most entry)", 1, 16
    ),
    "country_header": Setting("", "str", "header your proxy sets to the visitor's country code, e.g. CF-IPCountry"),
    "geoip_db": Setting("", "str", "MaxMind-format country database (.mmdb); needs `pip install maxminddb`"),
    "admin_token": Setting("", "str", "admin bearer token; empty = generated once and kept in the database"),
    "open_registration": Setting(False, "bool", "let anyone register a counter client without the admin token"),
    "jwt_secret": Setting(
        "", "str", "key of counter tokens (at least 32 bytes); empty = generated once, kept in the database"
    ),
    "rate_limit": Setting(60, "int", "events per minute per client IP on the browser-facing routes; 0 = off", 0),
    "events_rate_limit": Setting(3000, "int", "events per minute per access token on POST /events; 0 = off", 0),
    "retention_days": Setting(
        0, "int", "delete raw events older than this many days, in the background; 0 = keep all", 0
    ),
    "ipv6_prefix": Setting(
        64,
        "int",
        "IPv6 clients share a rate limit per network of this prefix (64: a subscriber; 128: an address)",
        32,
        128,
    ),
    "rate_limit_buckets": Setting(
        100_000, "int", "most client IPs the rate limiter remembers at once (bounds its memory)", 1000
    ),
    "max_body_bytes": Setting(32_768, "int", "largest request body accepted; larger gets 413", 1024, 16 * 1024 * 1024),
    "session_timeout": Setting(
        30, "int", "minutes of inactivity after which a visitor's next pageview opens a new session", 1, 24 * 60
    ),
    "server": Setting(
        "granian",
        "choice",
        "HTTP server: granian (Rust, the fast default) or waitress (pure Python: `pip install waitress`)",
        choices=("granian", "waitress"),
    ),
    "threads": Setting(THREADS_DEFAULT, "int", "Python threads that run requests (waitress: 8 is better)", 1, 256),
    "pin_cpu": Setting(
        False, "bool", "keep the server on one CPU core (helps waitress on a 2-core machine; granian needs 2)", None
    ),
    "header_timeout": Setting(
        10, "int", "seconds a client has to send a request's headers, idle keep-alive included (granian)", 1, 3600
    ),
    "synchronous": Setting(
        "normal",
        "choice",
        "normal survives a crash of the server; full also survives power loss, at about a sixth of the write rate",
        choices=("normal", "full"),
    ),
    "access_log": Setting(True, "bool", "log one line per request to standard error"),
    "share_min_count": Setting(
        5, "int", 'counts below this show as "< N" on shared dashboards (`share create`); 1 shows them all', 1, 1000
    ),
    "clickhouse_url": Setting(
        "",
        "str",
        "mirror every stored row to this ClickHouse (http://user:pass@host:8123/?database=prisme); empty = off",
    ),
    "node_id": Setting(
        "", "str", "this server's name in ClickHouse rows, unique per node; empty = a random one kept in the database"
    ),
    "stats_source": Setting(
        "sqlite",
        "choice",
        "where the stats API and the dashboard read: sqlite (this file) or clickhouse (clickhouse_url, every node)",
        choices=("sqlite", "clickhouse"),
    ),
    "clickhouse_retention_days": Setting(
        0, "int", "delete rows older than this many days from ClickHouse (the mirror does it hourly); 0 = keep all", 0
    ),
}

BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def parse_setting(key: str, raw: Any, source: str, typed: bool = False) -> Any:
    """Convert one raw value to the setting's type: a string from the environment or a flag, or (`typed`) TOML's."""
    setting = SETTINGS[key]
    where = f"{key} (from {source})"
    if typed:
        # In a TOML file a value has its own type: port = "8000" is a mistake worth pointing out, not guessing.
        expected = {"bool": bool, "int": int, "list": list}.get(setting.value_type, str)
        if not isinstance(raw, expected) or (expected is int and isinstance(raw, bool)):
            article = {"bool": "true or false", "int": "an integer", "list": "a list of strings"}.get(
                setting.value_type
            )
            raise ConfigError(f"{where} must be {article or 'a string'}, got {raw!r}")
    if setting.value_type == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in BOOL_WORDS:
            return BOOL_WORDS[raw.strip().lower()]
        raise ConfigError(f"{where} must be true or false, got {raw!r}")
    if setting.value_type == "int":
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise ConfigError(f"{where} must be an integer, got {raw!r}")
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{where} must be an integer, got {raw!r}") from None
        low, high = setting.minimum, setting.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{where} must be {allowed}, got {value}")
        return value
    if setting.value_type == "list":
        if isinstance(raw, str):
            items = [item.strip() for item in raw.split(",") if item.strip()]
        elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            items = raw
        else:
            raise ConfigError(f"{where} must be a list of strings, got {raw!r}")
        if key in ("origins", "redirect_hosts"):
            try:
                return [normalise_origin(item) for item in items]
            except ValueError as error:
                raise ConfigError(f"{where}: {error}") from None
        return items
    if not isinstance(raw, str):
        raise ConfigError(f"{where} must be a string, got {raw!r}")
    if setting.value_type == "choice" and raw.lower() not in setting.choices:
        raise ConfigError(f"{where} must be one of {', '.join(setting.choices)}, got {raw!r}")
    return raw.lower() if setting.value_type == "choice" else raw


def load_config(flags: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Settings with their precedence: command-line flag > PRISME_* environment variable > TOML file > default."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    path = flags.get("config") or environ.get("PRISME_CONFIG")
    from_file: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as file:
                from_file = tomllib.load(file)
        except OSError as error:
            raise ConfigError(f"config file {path}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {path}: {error}") from None
        for key in from_file:
            if key not in SETTINGS:
                raise ConfigError(f"{key} (from {path}) is not a setting; config.example.toml lists them all")
    config: dict[str, Any] = {}
    for key, setting in SETTINGS.items():
        env_name = "PRISME_" + key.upper()
        if flags.get(key) is not None:
            config[key] = parse_setting(key, flags[key], "--" + key.replace("_", "-"))
        elif env_name in environ:
            config[key] = parse_setting(key, environ[env_name], env_name)
        elif key in from_file:
            config[key] = parse_setting(key, from_file[key], path, typed=True)
        else:
            config[key] = setting.default
    if config["jwt_secret"] and len(config["jwt_secret"].encode()) < 32:
        raise ConfigError("jwt_secret must be at least 32 bytes long; leave it empty to have one generated")
    if config["country_header"] and not config["trust_proxy"]:
        raise ConfigError("country_header needs trust_proxy = true: only your own proxy may set the visitor's country")
    if config["stats_source"] == "clickhouse" and not config["clickhouse_url"]:
        raise ConfigError("stats_source = clickhouse needs clickhouse_url: the ClickHouse that the stats read")
    return config


def normalise_origin(value: str) -> str:
    """`https://Blog.Example.com:443/` → `blog.example.com`; `*.example.com` stays a wildcard; ValueError: no host."""
    text = value.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0]
    if text.startswith("["):  # [::1]:8000
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    text = text.rstrip(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not HOST_PATTERN.match(text) or len(text) > 253:
        raise ValueError(f"{value!r} is not a host name (example.com) or a wildcard (*.example.com)")
    return text


###############################################################################
# Application #################################################################
###############################################################################


def journal_appliers(config: dict) -> dict[str, Callable[[sqlite3.Connection, list], Any]]:
    """What stores each family's journal records (JOURNAL_VERSION's shapes), by the family named in the line."""
    return {family.name: family.applier(config) for family in FAMILIES if family.applier}


class Context:
    """Everything one running server holds: settings, the writer, read connections, origins, salt, rate limiter."""

    def __init__(self, config: dict):
        self.config = config
        open_database(config["db"])
        self.local = threading.local()
        # Each family's clean-ups, the dashboard's, then retention, which prunes the raw rows of every family.
        maintenance = tuple(task(config) for family in FAMILIES for task in family.maintenance)
        mirrored = bool(config["clickhouse_url"])
        if mirrored:  # a wrong URL or node id stops the start before the writer has begun
            ClickHouseTarget.parse(config["clickhouse_url"])
            node_id_of(config, None)
        maintenance += (forget_expired_logins, Retention(config["retention_days"], mirrored))
        self.writer = Writer(
            config["db"],
            config["synchronous"],
            journal_appliers(config),
            maintenance,
            prepare_mirror if mirrored else None,
        )
        secret = config["jwt_secret"]
        self.jwt_secret = secret.encode() if secret else bytes.fromhex(self.writer.run(stored_secret, "jwt_secret"))
        self.origins = OriginRegistry(config["origins"], self.read)
        # Shop clicks may send visitors to redirect_hosts, or by default to the registered origins.
        self.redirect_hosts = (
            OriginRegistry(config["redirect_hosts"], None) if config["redirect_hosts"] else self.origins
        )
        self.salt = DailySalt(self.writer)
        self.limiter = RateLimiter(config["rate_limit"], config["rate_limit_buckets"])
        self.token_limiter = RateLimiter(config["events_rate_limit"], config["rate_limit_buckets"])
        self.auth_failures = RateLimiter(AUTH_FAILURES_PER_MINUTE, config["rate_limit_buckets"])
        self.share_limiter = RateLimiter(SHARE_READS_PER_MINUTE, config["rate_limit_buckets"])
        self.country = CountryLookup(config)
        self.telemetry = Telemetry()
        self.readers: list[sqlite3.Connection] = []
        self.mirror: Mirror | None = None
        if mirrored:
            self.mirror = Mirror(config, self.writer, node_id_of(config, self.read()))
        else:
            self.writer.run(note_mirror_off)
        self.verified_tokens: dict[str, dict] = {}  # counter tokens → aud, jti, exp (verify_counter_token)
        self.counter_clients = CounterClients(self.read)
        self.counter_claims = CounterClaims()
        self.known_tokens = KnownTokens(config["db"])  # public tokens found valid (public_token)

    def read(self) -> sqlite3.Connection:
        """This thread's read-only connection: in WAL mode readers never wait for the writer, nor it for them."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = connect(self.config["db"])
            conn.execute("PRAGMA query_only = ON")
            self.local.conn = conn
            self.readers.append(conn)
        return conn

    def admin_token(self) -> str:
        """From the configuration, else the database (read each time: `admin-token --rotate` applies at once)."""
        return self.config["admin_token"] or get_meta(self.read(), "admin_token") or self.writer.run(admin_token)

    def close(self) -> None:
        if self.mirror:
            self.mirror.stop()
        self.writer.close()
        for conn in self.readers:
            conn.close()
        self.known_tokens.close()


def make_app(config: dict) -> bottle.Bottle:
    """A Bottle application on `config`'s database, with every route; `app.ctx` is its Context."""
    app = bottle.Bottle(catchall=True, autojson=True)
    app.ctx = Context(config)
    app.default_error_handler = json_error_page
    # Bottle tries routes in the order they are added: here, the order of their precedence, not of the file.
    for entry in sorted(ROUTES, key=Route.precedence):
        app.route(entry.path, list(entry.methods), entry.handler)
    return app


@dataclass(frozen=True)
class Route:
    """One line of the route table: Bottle's path and methods, the handler, and the OpenAPI paths it answers."""

    path: str
    methods: tuple[str, ...]
    handler: Callable
    openapi: dict[str, dict]  # OpenAPI path → its operations by method

    def precedence(self) -> tuple[int, ...]:
        """Of two routes that match a URL, the one whose path has a fixed segment where the other has a wildcard,
        at the first place they differ; a wildcard with a filter (it may take several segments) comes last. So
        /api/v1/events/custom/<name> takes /api/v1/events/custom/increment from /api/v1/<action_id>/<page_id>/…,
        whose action ids may not be a fixed segment of another route (reserved_action_ids)."""
        return tuple(0 if "<" not in part else 2 if ":" in part else 1 for part in self.path.split("/"))


ROUTES: list[Route] = []  # every family's, and the read side's (make_app mounts them all)


def route(path: str, methods: str | tuple[str, ...] = "GET", doc: dict | None = None, paths: dict | None = None):
    """Make the handler below a Route; `doc` is its OpenAPI operations by method (`{"get": operation(…)}`), and
    `paths` replaces it for a route that stands for several OpenAPI paths (a catch-all)."""

    def make(handler: Callable) -> Route:
        openapi = paths if paths is not None else {re.sub(r"<(\w+)>", r"{\1}", path): doc} if doc else {}
        return Route(path, (methods,) if isinstance(methods, str) else methods, handler, openapi)

    return make


@functools.cache
def reserved_action_ids() -> frozenset[str]:
    """The fixed first segments of the /api/v1/ routes: /api/v1/<action_id>/… must never shadow another route."""
    firsts = (entry.path.split("/")[3] for entry in ROUTES if entry.path.startswith("/api/v1/"))
    return frozenset(first.lower() for first in firsts if "<" not in first)


@dataclass(frozen=True)
class Family:
    """An API family as its section registers it: everything it adds to the server, its stats, the dashboard and
    the OpenAPI document, so that nothing outside its section names it."""

    name: str  # also the first field of its journal lines
    routes: tuple[Route, ...] = ()
    applier: Callable[[dict], Callable] | None = None  # config → what the writer folds its journal lines with
    maintenance: tuple[Callable[[dict], Callable], ...] = ()  # config → a task the writer runs once a minute
    exports: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)  # see EXPORTS
    pruned: tuple[tuple[str, str, str, str, bool], ...] = ()  # see PRUNED_TABLES
    invariants: tuple[tuple[str, str], ...] = ()  # (what must hold, a query of the rows that break it)
    filters: tuple[str, ...] = ()  # the stats parameters it adds
    metrics: dict[str, Callable] = field(default_factory=dict)  # /api/v1/stats/<metric>
    metric_schemas: dict[str, str] = field(default_factory=dict)  # a metric → its answer's own OpenAPI schema
    # The dashboard's tables: (title, metric, columns, filter[, empty]), `filter` the stats filter a row sets (its
    # key, or the key up to a separator: "client ", "instance (" ), "" for rows that filter nothing; `empty` what the
    # panel says when its list is (default: nothing yet in this period).
    panels: tuple[tuple[Any, ...], ...] = ()
    summary: Callable[..., None] | None = None  # its part of `prisme-lite stats` (see print_summary)
    schemas: dict[str, dict] = field(default_factory=dict)  # OpenAPI components it names
    security: dict[str, dict] = field(default_factory=dict)  # OpenAPI security schemes it names


FAMILIES: list[Family] = []


def register(family: Family) -> None:
    """Add a family: the last line of its section."""
    FAMILIES.append(family)
    ROUTES.extend(family.routes)


class Telemetry:
    """What /metrics reports of the requests: counts that each thread keeps for itself (plain increments, no lock on
    the way of a request), added up when they are read."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.threads: list[Counter] = []
        self.lock = threading.Lock()  # taken once per thread, at its first count, and to read

    def counts(self) -> Counter:
        """This thread's counts. Keys: (route family, status, duration bucket) → requests; route family → seconds
        spent answering them; ("dropped", reason) → events dropped. One increment per request, one addition."""
        counts = getattr(self.local, "counts", None)
        if counts is None:
            counts = self.local.counts = Counter()
            with self.lock:
                self.threads.append(counts)
        return counts

    def total(self) -> Counter:
        with self.lock:
            threads = list(self.threads)
        total: Counter = Counter()
        for counts in threads:
            total.update(dict(counts))  # copied in one C call: its thread may add a key meanwhile
        return total


class RequestLog:
    """WSGI middleware: an X-Request-Id on every response, one access-log line per request, and its status and
    duration counted for /metrics by the family of its route (else the route's handler: stats, dashboard, …)."""

    def __init__(self, app: bottle.Bottle, access_log: AccessLog | None):
        self.app = app
        self.access_log = access_log
        self.telemetry: Telemetry = app.ctx.telemetry
        self.groups = {entry.handler: family.name for family in FAMILIES for entry in family.routes}
        for entry in ROUTES:
            self.groups.setdefault(entry.handler, entry.handler.__name__)
        # Request ids: a random prefix for this process and a counter, cheaper than 8 random bytes per request.
        self.ids = map(f"{secrets.randbits(32):08x}{{:08x}}".format, itertools.count())
        self.dispatch = IngestRoutes(app)

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        request_id = next(self.ids)
        environ["prisme.request_id"] = request_id
        started = time.perf_counter()
        status_line = ["-"]

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            headers.append(("X-Request-Id", request_id))
            status_line[0] = status[:3]
            return start_response(status, headers, exc_info)

        result = self.dispatch(environ, start)
        seconds = time.perf_counter() - started
        matched = environ.get("bottle.route")
        group = self.groups.get(matched.callback, "other") if matched else "none"
        status = status_line[0]
        counts = self.telemetry.counts()
        counts[group, status, bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        counts[group] += seconds
        if self.access_log:
            self.access_log.write(
                environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-"), status, seconds * 1000, request_id
            )
        return result


class IngestRoutes:
    """WSGI: the ingest routes (those `api` rate-limits) answered without Bottle's per-request machinery; every other
    request, and anything unusual, goes through Bottle as it comes.

    Bottle spent a third of the pixel's request time on what these routes never use (py-spy, bench/run): the before-
    and after-request hooks (this app registers none), the general output cast and a header list rebuilt through
    case-folding accessors. Here Bottle's own router matches the route, its own request and response are bound (the
    handlers are unchanged) and the route is called through its plugins; only the answer is made here, as Bottle
    makes it, for what these routes return (text, bytes, nothing). Whatever else one returns or raises is cast by
    Bottle itself."""

    def __init__(self, app: bottle.Bottle):
        self.app = app
        self.ingest = {entry.handler for entry in ROUTES if getattr(entry.handler, "ingest", False)}

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        path = environ["PATH_INFO"]
        if environ["REQUEST_METHOD"] not in ("GET", "POST") or not path.isascii():  # HEAD's body, a UTF-8 path
            return self.app(environ, start_response)
        try:
            route, args = self.app.router.match(environ)
        except bottle.HTTPError:  # no such route, or not by this method
            return self.app(environ, start_response)
        if route.callback not in self.ingest:
            return self.app(environ, start_response)
        environ["bottle.raw_path"] = path  # what Bottle's _handle sets: an ASCII path is the same decoded
        environ["bottle.app"] = self.app
        environ["route.handle"] = environ["bottle.route"] = route
        environ["route.url_args"] = args
        request.bind(environ)
        response.bind()
        try:
            out = route.call(**args)
        except bottle.HTTPResponse as answer:  # an HTTPError too, which _cast turns into its page
            out = answer
            answer.apply(response)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as error:  # as Bottle's _handle: the traceback to wsgi.errors, the 500 to the client
            stacktrace = traceback.format_exc()
            environ["wsgi.errors"].write(stacktrace)
            environ["wsgi.errors"].flush()
            out = bottle.HTTPError(500, "Internal Server Error", error, stacktrace)
            out.apply(response)
        if type(out) is str:
            out = out.encode(response.charset)
        headers = response._headers
        if type(out) is bytes:
            if "Content-Length" not in headers:
                headers["Content-Length"] = [str(len(out))]
            body = [out] if out else []
        else:
            body = self.app._cast(out)
        status = response._status_code
        if status in response.bad_headers or response._cookies:  # a 204 or 304, a cookie: as Bottle lists them
            start_response(response._wsgi_status_line(), response.headerlist)
            return [] if status in (100, 101, 204, 304) else body
        listed = [(name, value) for name, values in headers.items() for value in values]
        if "Content-Type" not in headers:
            listed.append(("Content-Type", response.default_content_type))
        start_response(
            response._wsgi_status_line(),
            [pair if pair[1].isascii() else (pair[0], pair[1].encode().decode("latin-1")) for pair in listed],
        )
        return body


class AccessLog:
    """Access-log lines to standard error, written together a few times a second rather than one write(2) each."""

    FLUSH_INTERVAL = 0.2  # seconds

    def __init__(self, stream: Any = None):
        self.stream = stream or sys.stderr
        self.lines: deque[str] = deque()  # appended by request threads, emptied by this one's thread: both atomic
        self.stamp = (0, "")
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="prisme-access-log", daemon=True)
        self.thread.start()

    def write(self, method: str, path: str, status: str, ms: float, request_id: str) -> None:
        second = int(time.time())
        if self.stamp[0] != second:
            self.stamp = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
        if path.startswith("/share/"):  # a share's token opens its dashboard: a log keeps what `share list` shows
            path = f"/share/{path[7 : 7 + SHARE_PREFIX]}…" if len(path) > 7 + SHARE_PREFIX else path
        if not path.isprintable() or " " in path:  # one request is one line, whatever its path holds
            path = path.encode("unicode_escape").decode("ascii").replace(" ", "\\x20")
        line = f"{self.stamp[1]} prisme_lite.access {method[:16]} {path[:2048]} {status} {ms:.1f}ms {request_id}\n"
        self.lines.append(line)

    def flush(self) -> None:
        lines = [self.lines.popleft() for _ in range(len(self.lines))]
        if lines:
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # standard error closed: nothing to log to

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.flush()

    def _run(self) -> None:
        while not self.stopping.wait(self.FLUSH_INTERVAL):
            self.flush()


class Rejected(Exception):
    """A request refused with `status` and a message the sender can act on; nothing of it is stored."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class Dropped(Exception):
    """A well-formed event that is deliberately not counted (a bot, a prefetch): answered as success, with why."""


@dataclass(frozen=True)
class Shape:
    """How a family's routes answer what they do not store: a dropped event (as a success) and a refusal (after
    its status and headers are set); and what the OpenAPI document says a refusal's body is."""

    dropped: Callable[[], Any]
    refused: Callable[[int, str], Any]
    documented: Callable[[int], dict]


def error_body(message: str) -> str:
    return json.dumps({"error": message})


def json_refusal(status: int, message: str) -> str:
    response.content_type = "application/json"
    return error_body(message)


def pixel() -> bytes:
    set_headers(GIF_HEADERS)
    return GIF


def set_headers(headers: dict[str, str]) -> None:
    """Set constant response headers at once: Bottle's set_header checks and title-cases each name and value on
    every call, and the pixel sets five. The names must be as Bottle keeps them (title case) and the values safe."""
    response._headers.update({name: [value] for name, value in headers.items()})


def gif_refusal(status: int, message: str) -> bytes:
    response.set_header("X-Prisme-Error", message)  # an <img> shows nothing: the reason is for whoever looks
    return pixel()


GIF_CONTENT = {"image/gif": {"schema": {"type": "string", "format": "binary"}}}
AS_JSON = Shape(lambda: "", json_refusal, lambda status: {"application/json": {"schema": schema_ref("Error")}})
AS_PIXEL = Shape(pixel, gif_refusal, lambda status: GIF_CONTENT)


def api(shape: Shape | Callable[..., Shape] = AS_JSON, rate_limited: bool = False) -> Callable:
    """Wrap a route: CORS, the client IP, the rate limit if `rate_limited`, and drops and refusals in its `shape`.

    `shape` is a Shape, or a function of the route's URL arguments that picks one (a widget's .gif path is refused
    with the pixel). Every browser-facing ingest route is `rate_limited`, so one client IP has one bucket across
    all of them.
    """

    def decorate(route: Callable) -> Callable:
        @functools.wraps(route)
        def handler(*args: Any, **kwargs: Any) -> Any:
            ctx: Context = request.app.ctx
            environ = request.environ
            response.set_header("Access-Control-Allow-Origin", environ.get("HTTP_ORIGIN") or "*")
            set_headers(API_HEADERS)
            ip = client_ip(environ, ctx.config)
            environ["prisme.client_ip"] = ip
            allowed, remaining, retry_after = (
                ctx.limiter.take(rate_key(ip, ctx.config["ipv6_prefix"])) if rate_limited else (True, 0, 0)
            )
            if rate_limited and ctx.config["rate_limit"]:
                response.set_header("X-RateLimit-Limit", str(ctx.config["rate_limit"]))
                response.set_header("X-RateLimit-Remaining", str(remaining))
            try:
                utf8_headers(environ)
                if not allowed:
                    raise over_limit(f"over the rate limit of {ctx.config['rate_limit']} events a minute", retry_after)
                return route(ctx, *args, **kwargs)
            except Dropped as why:
                response.set_header("X-Prisme-Dropped", str(why))
                ctx.telemetry.counts()["dropped", str(why)] += 1
                return (shape if isinstance(shape, Shape) else shape(**kwargs)).dropped()
            except (Rejected, Unavailable) as refusal:
                status, message = (
                    (refusal.status, refusal.message) if isinstance(refusal, Rejected) else (503, str(refusal))
                )
                response.status = status
                for name, value in getattr(refusal, "headers", {}).items():
                    response.set_header(name, value)
                return (shape if isinstance(shape, Shape) else shape(**kwargs)).refused(status, message)

        handler.ingest = rate_limited  # answered by IngestRoutes
        return handler

    return decorate


def redirect_target(target: str) -> str:
    response.status = 302
    response.set_header("Location", target)
    response.set_header("Cache-Control", "no-store")
    return ""


def json_error_page(error: bottle.HTTPError) -> str:
    """Bottle's error handler: JSON instead of an HTML page; an unexpected failure is logged with its request id."""
    request_id = request.environ.get("prisme.request_id", "-")
    response.content_type = "application/json"
    if error.status_code >= 500:
        log.error("request %s failed: %s\n%s", request_id, error.exception, error.traceback or "")
        message = f"internal error; the server log has the details under request id {request_id}"
        return json.dumps({"error": message, "request_id": request_id})
    if error.status_code == 405 and response.get_header("Allow") == "OPTIONS":
        response.status = 404  # only the CORS preflight, which takes any /api/v1/ path, would have matched
        del response["Allow"]
    if response.status_code == 404:
        return error_body(f"no route for {request.method} {request.path}")
    if error.status_code == 405:
        return error_body(f"{request.method} is not allowed on {request.path}")
    return error_body(str(error.body or error.status_line))


@route("/api/v1/<path:re:[\\s\\S]+>", "OPTIONS")  # any path, even one with a line break in it
def preflight(path: str) -> None:
    """CORS preflight: any origin may call the API; origins and tokens are checked on the request itself."""
    response.status = 204
    response.set_header("Access-Control-Allow-Origin", request.environ.get("HTTP_ORIGIN") or "*")
    response.set_header("Vary", "Origin")
    for name, value in CORS_HEADERS.items():
        response.set_header(name, value)


ROUTES.append(preflight)  # the OpenAPI document gives every /api/v1/ path its OPTIONS (openapi_document)


# How a route describes itself in the OpenAPI document (/api/v1/openapi.json), beside its handler.
BEARER = [{"bearer": []}]
REFUSALS = {
    400: "bad input, named", 401: "no valid credential", 403: "a credential without the scope", 404: "not found",
    409: "already recorded", 413: "body over the size limit", 415: "the body is not JSON",
    429: "over a rate limit (Retry-After)", 503: "the database cannot take it now (disk full, writer stopped)",
}  # fmt: skip
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"  # names and ids: no control characters
TEXT = {"type": "string"}
REDIRECT_ANSWER = {"302": {"description": "counted; redirect to `url`", "headers": {"Location": {"schema": {}}}}}


def operation(
    tag: str, summary: str, responses: dict, *, security: Iterable[dict] = (), parameters: Iterable[dict] | None = None,
    body: dict | None = None,
) -> dict:  # fmt: skip
    """One OpenAPI operation; `security` empty means no credential is needed."""
    described = {"tags": [tag], "summary": summary, "security": list(security), "responses": responses}
    if parameters is not None:
        described["parameters"] = list(parameters)
    if body is not None:
        described["requestBody"] = body
    return described


def schema_ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_request(schema: dict, required: bool = True) -> dict:
    """A JSON request body of `schema`."""
    return {**({"required": True} if required else {}), "content": {"application/json": {"schema": schema}}}


def parameter(name: str, where: str, description: str, required: bool = False, **schema: Any) -> dict:
    return {
        "name": name, "in": where, "required": required or where == "path", "description": description,
        "schema": {"type": "string", **schema},  # a value in a path, query or header is text unless told
    }  # fmt: skip


def may_be_empty(query_parameter: dict, meaning: str) -> dict:
    """An optional query parameter that may be sent empty (`name=`), read as `meaning`."""
    described = f"{query_parameter['description']}; empty: {meaning}"
    return {**query_parameter, "description": described, "allowEmptyValue": True}


def answers(success: dict, *refusals: int, shape: Shape = AS_JSON) -> dict:
    """Responses: `success` by status, and each refusal with its body in the route's shape."""
    result = dict(success)
    for status in refusals:
        result[str(status)] = {"description": REFUSALS[status], "content": shape.documented(status)}
    return result


def ok(description: str, media: str | None = None, schema: dict | None = None, status: int = 200) -> dict:
    described: dict = {"description": description}
    if media:
        described["content"] = {media: {"schema": schema or {"type": "string"}}}
    return {str(status): described}


###############################################################################
# Storage #####################################################################
###############################################################################


class Unavailable(Exception):
    """The database cannot take this write now (read-only, full, locked): the request gets 503 with the reason."""


def schema_text() -> str:
    """static/schema.sql, found by asset() in every install layout."""
    return asset("schema.sql").decode("utf-8")


def schema_part(marker: str) -> str:
    """The part of schema.sql after the line of `marker`, to the next part (what the migration to its version adds)."""
    return schema_text().split(f"-- {marker}", 1)[1].split("\n", 1)[1].split("\n-- @", 1)[0]


def rollup_schema() -> str:
    """The part of schema.sql that schema version 2 added: the daily counts and the triggers that take deletes off."""
    return schema_text().split("-- @rollups", 1)[1].split("\n", 1)[1]


# Day-salted visitor ids (make_visitor_id): `prisme_` and 16 hex digits, in SQL and in Python (the writer's counts).
SALTED_ID = "length({0}) = 23 AND {0} GLOB 'prisme_*' AND NOT substr({0}, 8) GLOB '*[^0-9a-f]*'"
SALTED_VISITOR = re.compile(r"prisme_[0-9a-f]{16}")
ROLLUP_EVENT_DIMS = ("path", "referrer", "utm_source", "utm_medium", "utm_campaign", "country", "os", "browser")
# Sessions by the day they started, per what their first pageview brought (a visit's source): dim -> column.
VISIT_DIMS = {
    "visit_referrer": "referrer", "visit_utm_source": "utm_source", "visit_utm_medium": "utm_medium",
    "visit_utm_campaign": "utm_campaign",
}  # fmt: skip


def schema_trigger(name: str) -> str:
    """One CREATE TRIGGER of schema.sql, whole."""
    start = schema_text().index(f"CREATE TRIGGER IF NOT EXISTS {name} ")
    return schema_text()[start : schema_text().index("\nEND;", start) + 5]


def visit_recount(sessions: str) -> list[str]:
    """The visit_* daily counts of `sessions` (site, dim, day, value, n); NULL campaigns are not counted."""
    return [
        f"SELECT site, '{dim}', started_at / {DAY_MS}, {column}, count(*) FROM {sessions}"
        f" WHERE {column} IS NOT NULL GROUP BY 1, 3, 4"
        for dim, column in VISIT_DIMS.items()
    ]


def rollup_recount(events: str = "events", sessions: str = "sessions") -> str:
    """What daily_counts holds, counted again from the raw rows (site, dim, day, value, n), but the visitors."""
    return " UNION ALL ".join(
        [
            f"SELECT site, 'pageviews' AS dim, ts / {DAY_MS} AS day, '' AS value, count(*) AS n FROM {events}"
            " WHERE kind = 'pageview' GROUP BY 1, 3",
            *(
                f"SELECT site, '{column}', ts / {DAY_MS}, {column}, count(*) FROM {events}"
                f" WHERE kind = 'pageview' AND {column} IS NOT NULL GROUP BY 1, 3, 4"
                for column in ROLLUP_EVENT_DIMS
            ),
            f"SELECT site, kind, ts / {DAY_MS}, name, count(*) FROM {events}"
            " WHERE kind != 'pageview' AND name IS NOT NULL GROUP BY 1, 2, 3, 4",
            f"SELECT site, 'sessions', started_at / {DAY_MS}, '', count(*) FROM {sessions} GROUP BY 1, 3",
            f"SELECT site, 'bounces', started_at / {DAY_MS}, '', sum(pageviews = 1) FROM {sessions} GROUP BY 1, 3",
            f"SELECT site, 'duration', started_at / {DAY_MS}, '', sum(last_seen - started_at) FROM {sessions}"
            " GROUP BY 1, 3",
            f"SELECT site, 'entry_path', started_at / {DAY_MS}, entry_path, count(*) FROM {sessions} GROUP BY 1, 3, 4",
            f"SELECT site, 'exit_path', started_at / {DAY_MS}, exit_path, count(*) FROM {sessions} GROUP BY 1, 3, 4",
            *visit_recount(sessions),
        ]
    )


# `check` compares daily_counts with these.
ROLLUP_RECOUNT = rollup_recount()
VISITORS_RECOUNT = (
    f"SELECT site, 'visitors' AS dim, ts / {DAY_MS} AS day, '' AS value, count(DISTINCT visitor_id) AS n FROM events"
    f" WHERE kind = 'pageview' AND {SALTED_ID.format('visitor_id')} GROUP BY 1, 3"
)


def rollup_count_sql(events_after: int = 0, sessions_after: int = 0) -> list[str]:
    """The statements that count into daily_counts the events and sessions with ids past these, stored some other
    way than by the writer (which counts its own batches): the migration to schema version 2, bench's copies, tests'
    fixtures. A visitor counts once a day, as daily_visitors has seen them."""
    events = f"(SELECT * FROM events WHERE id > {int(events_after)})"
    sessions = f"(SELECT * FROM sessions WHERE id > {int(sessions_after)})"
    return [
        f"""INSERT INTO daily_counts (site, dim, day, value, n)
        SELECT site, 'visitors', day, '', count(*) FROM (
            SELECT DISTINCT site, ts / {DAY_MS} AS day, visitor_id FROM {events}
            WHERE kind = 'pageview' AND {SALTED_ID.format("visitor_id")}
        ) AS seen
        WHERE NOT EXISTS (SELECT 1 FROM daily_visitors AS d WHERE d.site = seen.site AND d.salted = 1
                          AND d.day = seen.day AND d.visitor_id = seen.visitor_id)
        GROUP BY 1, 3
        ON CONFLICT DO UPDATE SET n = n + excluded.n""",
        f"""INSERT OR IGNORE INTO daily_visitors (site, salted, day, visitor_id)
        SELECT DISTINCT site, {SALTED_ID.format("visitor_id")}, ts / {DAY_MS}, visitor_id FROM {events}
        WHERE kind = 'pageview'""",
        f"""INSERT INTO daily_counts (site, dim, day, value, n)
        SELECT * FROM ({rollup_recount(events, sessions)}) WHERE true
        ON CONFLICT DO UPDATE SET n = n + excluded.n""",
    ]


def count_stored_rows(conn: sqlite3.Connection, events_after: int, sessions_after: int) -> None:
    """Count into daily_counts the rows past these ids that were stored without the writer (rollup_count_sql).
    Run it in the transaction that stored them."""
    for sql in rollup_count_sql(events_after, sessions_after):
        conn.execute(sql)
    touch_days(conn, conn.execute(
        f"SELECT site, ts / {DAY_MS} FROM events WHERE id > ? UNION SELECT site, started_at / {DAY_MS} FROM sessions"
        " WHERE id > ?", (events_after, sessions_after)).fetchall())  # fmt: skip


def connect(path: str, synchronous: str = "normal") -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, waiting up to 5 s for a lock."""
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
    return conn


def check_writable(path: str) -> None:
    """One line for a database that cannot be written: its directory missing, or the file or directory read-only."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(f"db: directory {directory} does not exist")
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ConfigError(f"db: {path} is read-only (prisme-lite writes the database, its WAL and its journal)")


def private_file(path: str, truncate: bool = False) -> int:
    """Open `path` for writing (emptied if `truncate`), created readable by its owner only (0600, whatever the
    umask) if it is missing."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else 0), 0o600)


# What prisme_lite keeps next to the database.
BESIDE_THE_DATABASE = ("-wal", "-shm", ".journal-", ".lock", ".tokens", ".dead-letters")


def make_private(db_path: str) -> None:
    """The database and the files beside it (WAL, shared memory, journals, lock) readable by their owner only: they
    hold the JWT key, the salt of the day and the admin token. SQLite gives the WAL and -shm files the database's
    mode, so a new database is created 0600; files an older prisme_lite left 0644 are tightened, when they are
    ours and not symlinks (a file someone else put there is left to them)."""
    directory, base = os.path.split(os.path.abspath(db_path))
    if not os.path.exists(db_path):
        os.close(private_file(db_path))
    for name in os.listdir(directory):
        if name == base or (name.startswith(base) and name[len(base) :].startswith(BESIDE_THE_DATABASE)):
            info = os.lstat(os.path.join(directory, name))
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and info.st_mode & 0o077:
                os.chmod(os.path.join(directory, name), stat.S_IMODE(info.st_mode) & 0o700)


def open_database(path: str) -> None:
    """Create the database or bring its schema up to date; refuse one written by a newer prisme_lite."""
    check_writable(path)
    try:
        make_private(path)
        conn = connect(path)
    except (sqlite3.Error, OSError) as error:
        raise ConfigError(f"db: cannot open {path}: {error}") from None
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"db: {path} has schema version {version}, newer than this prisme-lite ({SCHEMA_VERSION}); upgrade it"
            )
        if version == 0:
            conn.executescript("BEGIN IMMEDIATE;" + schema_text() + f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            version = SCHEMA_VERSION
        while version < SCHEMA_VERSION:
            step = MIGRATIONS[version]
            sql = step() if callable(step) else step
            log.info("db: %s: schema version %d to %d (on a large database, a minute a million events)", path,
                     version, version + 1)  # fmt: skip
            started = time.monotonic()
            conn.executescript(f"BEGIN IMMEDIATE; {sql} PRAGMA user_version = {version + 1}; COMMIT;")
            log.info("db: %s: schema version %d in %.1f s", path, version + 1, time.monotonic() - started)
            version += 1
    except sqlite3.DatabaseError as error:
        raise ConfigError(f"db: {path} is not a usable SQLite database: {error}") from None
    finally:
        conn.close()


def journal_file(db_path: str, generation: int | str) -> str:
    """The journal file of one generation beside a database: prisme.db.journal-N."""
    return f"{db_path}.journal-{generation}"


def journal_generations(db_path: str) -> list[int]:
    """The generations of the journal files beside a database (prisme.db.journal-N), oldest first."""
    directory, base = os.path.split(journal_file(os.path.abspath(db_path), ""))
    return sorted(
        int(name[len(base) :])
        for name in os.listdir(directory)
        if name[len(base) :].isascii() and name[len(base) :].isdigit() and name.startswith(base)
    )


def gil_holding_write() -> Callable[[int, bytes], int]:
    """write(2) that keeps the GIL, for the journal: os.write releases it for the syscall, and a thread that has
    released it waits for whoever took it meanwhile to give it back (up to the switch interval, 5 ms, if that one
    runs Python) while holding the journal's lock, so every other request thread queued behind the lock (a convoy:
    py-spy found half the pixel's samples waiting there). An append to the page cache takes a few µs; keeping the
    GIL for them costs less than the hand-over. The price: should the kernel make a write wait (dirty pages
    throttled under heavy writeback), every Python thread waits with it. Raises OSError as os.write does (retrying
    EINTR, as it does); where libc's write cannot be found, it is os.write. (With synchronous=full, fdatasync still
    releases the GIL: it takes milliseconds, and holds the journal's lock all that time anyway.)
    """
    try:
        write = ctypes.PyDLL(None, use_errno=True).write  # PyDLL: a call that does not release the GIL
    except (OSError, AttributeError):
        return os.write
    write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
    write.restype = ctypes.c_ssize_t

    def journal_write(fd: int, data: bytes) -> int:
        while (written := write(fd, data, len(data))) < 0:
            code = ctypes.get_errno()
            if code != errno.EINTR:
                raise OSError(code, os.strerror(code))
        return written

    return journal_write


journal_write = gil_holding_write()


def format_position(generation: int, offset: int) -> str:
    """A journal position as it is stored and shown, `G:O`: the journal file's generation and a byte offset in it."""
    return f"{generation}:{offset}"


def parse_position(value: str | None) -> tuple[int, int]:
    """(generation, offset) of a `G:O` position; none yet is the start of the first journal."""
    if value is None:
        return 1, 0
    generation, offset = value.split(":")
    return int(generation), int(offset)


def journal_position(conn: sqlite3.Connection) -> tuple[int, int]:
    """How far the journal is folded into this database (committed with what it folded)."""
    return parse_position(get_meta(conn, "journal_position"))


def set_journal_position(conn: sqlite3.Connection, generation: int, offset: int) -> None:
    set_meta(conn, "journal_position", format_position(generation, offset))


# The journal's line format, as the appliers above take it. A record whose shape changes (a key of WebEvent, say)
# gets a new version: JOURNAL_UPGRADES[n] turns a (family, record) of version n into version n + 1, so that lines an
# older prisme-lite wrote (a crash before an upgrade, a backup's FILE.journal-N) replay forever; as MIGRATIONS does
# for the schema.
JOURNAL_VERSION = 2
JOURNAL_UPGRADES: dict[int, Callable[[str, Any], tuple[str, Any]]] = {
    1: lambda kind, record: (kind, record),  # 2: the line starts with its version; the records are unchanged
}


def journal_line(kind: str, record: dict) -> bytes:
    """One journal line as this version writes it: `[JOURNAL_VERSION, family, record]`, compact JSON, newline."""
    return (JOURNAL_ENCODER.encode([JOURNAL_VERSION, kind, record]) + "\n").encode()


def upgraded_line(line: Any) -> list:
    """A journal line of an older format as this version writes it, through JOURNAL_UPGRADES one version at a time.
    Version 1 lines carry no number (`[family, record]`); a line newer than this prisme-lite cannot be applied."""
    if isinstance(line, list) and len(line) == 2 and isinstance(line[0], str):
        line = [1, *line]
    if not isinstance(line, list) or len(line) != 3 or type(line[0]) is not int or line[0] < 1:
        raise ValueError("not a journal line: [version, family, record] expected")
    version, kind, record = line
    if version > JOURNAL_VERSION:
        raise ValueError(f"journal format {version} is newer than this prisme-lite's ({JOURNAL_VERSION}): upgrade it")
    while version < JOURNAL_VERSION:
        kind, record = JOURNAL_UPGRADES[version](kind, record)
        version += 1
    return [version, kind, record]


def apply_journal_lines(conn: sqlite3.Connection, appliers: dict[str, Callable], lines: list[bytes]) -> Counter:
    """Hand the records to their family's applier, a whole batch per family (few statements, see insert_rows);
    how many each family's were."""
    batches: dict[str, list[dict]] = {}
    for line in json.loads(b"[" + b",".join(lines) + b"]"):  # one call: half the time of one a line
        if line[0] != JOURNAL_VERSION:  # the one check per line: older lines are upgraded first
            line = upgraded_line(line)
        batches.setdefault(line[1], []).append(line[2])
    for kind, records in batches.items():
        appliers[kind](conn, records)
    return Counter({kind: len(records) for kind, records in batches.items()})


# What a journal line that cannot be applied raises (a record an applier or SQLite refuses, a format unknown here):
# the line goes to the dead-letter file. Any other error (disk full, a lock) undoes the commit, which is retried.
LINE_REFUSALS = (ValueError, KeyError, IndexError, TypeError, AttributeError, sqlite3.IntegrityError)


def dead_letters_file(db_path: str) -> str:
    """Where journal lines that cannot be applied are kept, beside the database: prisme.db.dead-letters."""
    return db_path + ".dead-letters"


def dead_letter(line: bytes, position: str, error: Exception) -> dict:
    """A dead-letter entry: the line's original bytes (surrogate-escaped, so that they survive JSON exactly), where
    it was in the journal, when, and why it could not be applied."""
    return {
        "at": iso_time(now_ms()),
        "position": position,
        "reason": refusal(error),
        "line": line.decode("utf-8", "surrogateescape"),
    }


def refusal(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def dead_letter_key(entry: dict) -> str:
    """One line kept twice (its commit was undone, then redone) is one dead letter: the same position and bytes."""
    return hashlib.sha256(f"{entry['position']}\n{entry['line']}".encode("utf-8", "surrogateescape")).hexdigest()


def keep_dead_letters(path: str, entries: list[dict]) -> None:
    """Append entries to a dead-letter file, durably (fsync) before returning: the journal position passes their
    lines only afterwards. A torn last entry (a crash while writing it, its position never passed) is cut first."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.ftruncate(fd, os.pread(fd, size, 0).rfind(b"\n") + 1)
        data = b"".join(json.dumps(entry).encode() + b"\n" for entry in entries)
        if os.write(fd, data) != len(data):
            raise OSError(errno.ENOSPC, f"short write to {path} (disk full?)")
        os.fsync(fd)
    finally:
        os.close(fd)
    if not size:
        sync_directory(path)


def sync_directory(path: str) -> None:
    """Make a file's creation, rename or removal durable: fsync the directory that holds it."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_dead_letters(db_path: str) -> list[dict]:
    """The dead letters kept beside a database, oldest first, each once; a torn last entry is none."""
    path = dead_letters_file(db_path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return []
    kept: dict[str, dict] = {}
    for number, text in enumerate(data[: data.rfind(b"\n") + 1].splitlines(), 1):
        try:
            entry = json.loads(text)
            kept.setdefault(dead_letter_key(entry), entry)
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"dead letters: line {number} of {path} is not a dead letter; repair or move it"
            ) from None
    return list(kept.values())


class Writer:
    """The one thread that writes to the database, fed by a journal and by jobs that wait for their answer.

    An event is acknowledged once `append` has written it to the journal: one write(2) to an append-only file,
    which survives a kill -9 of the server just as a WAL commit at synchronous=NORMAL does (with synchronous=full
    it is also fdatasync'ed). The writer folds new journal lines into SQLite in batches, and records how far it
    has folded in the same transaction, so a restart replays exactly the lines that were not yet committed.
    Jobs given to `run` (a counter increment that must answer with its count) share those transactions.
    SQLite allows one writer; request threads never touch the write lock, so they never wait on each other.
    """

    def __init__(
        self,
        db_path: str,
        synchronous: str,
        appliers: dict[str, Callable[[sqlite3.Connection, list], Any]],
        maintenance: tuple[Callable[[sqlite3.Connection, int], Any], ...] = (),
        prepare: Callable[[sqlite3.Connection], Any] | None = None,
    ):
        self.conn = connect(db_path, synchronous)
        self.conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")  # what a WAL reset leaves on disk at most
        if prepare:  # before the replay: what it stores must go through what prepare sets up (the mirror's triggers)
            prepare(self.conn)
        self.db_path = db_path
        self.appliers = appliers
        self.maintenance = maintenance  # run in a transaction of the writer's once a minute, or while behind
        self.maintained_at = -math.inf
        self.maintenance_due = False
        self.sync_each = synchronous == "full"
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.append_lock = threading.Lock()
        self.closing = False  # set by close(): the last fold must see every line that was acknowledged
        self.woken = False  # a WAKE is in the queue and the writer has not read the journal since
        self.failure: str | None = None  # why the last commit failed, until one succeeds
        self.dead_lettered: set[str] = set()  # positions of lines this process kept in the dead-letter file
        # What /metrics reports: journal records acknowledged (under append_lock) and stored (by this thread), by
        # family; since when the oldest line not yet folded has waited (at most); when the last commit was.
        self.acknowledged: Counter = Counter()
        self.stored: Counter = Counter()
        self.behind_since = self.committed_at = self.fold_started = time.monotonic()
        self.generation, self.folded = journal_position(self.conn)
        self._replay()
        self.fd = os.open(journal_file(db_path, self.generation), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.appended = os.fstat(self.fd).st_size
        self.thread = threading.Thread(target=self._run, name="prisme-writer", daemon=True)
        self.thread.start()

    def ensure_running(self) -> None:
        if not self.thread.is_alive():
            raise Unavailable("the database writer has stopped")

    def append(self, kind: str, record: dict) -> None:
        """Make `record` durable in the journal and return; the writer stores it in the database moments later."""
        line = journal_line(kind, record)
        self.ensure_running()
        with self.append_lock:
            if self.closing:
                raise Unavailable("the server is stopping")
            if self.appended - self.folded > JOURNAL_BACKLOG:
                raise Unavailable(f"events are not reaching the database ({self.failure or 'writer behind'})")
            written = 0
            if self.appended == self.folded:  # nothing waits: this line is the oldest that will
                self.behind_since = time.monotonic()
            try:
                written = journal_write(self.fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, "short write (disk full?)")
                if self.sync_each:
                    os.fdatasync(self.fd)
            except OSError as error:
                if written:  # a cut-off or unsynced line is not acknowledged, so it must not be stored either
                    os.ftruncate(self.fd, self.appended)
                raise Unavailable(f"the journal cannot be written: {error.strerror}") from None
            self.appended += written
            self.acknowledged[kind] += 1
        # One wake-up at a time, not one per event: jobs waiting for an answer must not queue behind thousands.
        # The writer clears the flag before it reads how far the journal goes, so no append is ever missed.
        if not self.woken:
            self.woken = True
            self.jobs.put(WAKE)

    def run(self, job: Callable[..., Any], *args: Any, committed: Callable[[Future], None] | None = None) -> Any:
        """Run `job(connection, *args)` in the writer's next transaction; return its result once committed.
        `committed` is called with the job's Future (its result, or why it failed) in the writer's thread once the
        transaction has ended, committed or not, even when this call has given up waiting: for what a cache keeps
        of the job's changes. In job order, before the next transaction."""
        self.ensure_running()
        future: Future = Future()
        if committed is not None:
            future.add_done_callback(committed)
        self.jobs.put((job, args, future))
        try:
            return future.result(WRITE_TIMEOUT)
        except FutureTimeout:
            raise Unavailable(f"the database did not commit within {WRITE_TIMEOUT:.0f} s ({self.failure})") from None

    def flush(self) -> None:
        """Wait until everything appended so far is in the database."""
        with self.append_lock:
            target = (self.generation, self.appended)
        while (self.generation, self.folded) < target:  # a rotation starts the offsets of a new file at 0
            self.run(lambda conn: None)

    def close(self) -> None:
        """Refuse new events, fold the whole journal and commit every queued job, then stop."""
        with self.append_lock:  # an event acknowledged after the last fold would wait in the journal for a restart
            self.closing = True
        if self.thread.is_alive():
            self.jobs.put(STOP)
            self.thread.join()
        with self.append_lock:  # never closed under an append that holds the lock
            if self.fd >= 0:
                os.close(self.fd)
                os.close(self.fd_read)
                self.fd = self.fd_read = -1

    def _run(self) -> None:
        stopping = False
        while not stopping:
            # While commits fail (disk full, read-only, locked), retry every second until the fault clears; while
            # the journal or maintenance has a backlog, go on at once; and wake at least once a minute anyway.
            behind = self.folded < self.appended or self.maintenance_due
            timeout = 1.0 if self.failure else 0.0 if behind else MAINTENANCE_INTERVAL
            try:
                items = [self.jobs.get(timeout=timeout) if timeout else self.jobs.get_nowait()]
            except queue.Empty:
                items = []
            if items == [WAKE] and self.appended - self.folded < GATHER_BYTES and not self.maintenance_due:
                items += self._gather(self.fold_started + FOLD_DELAY)
            while len(items) < WRITER_BATCH:
                try:
                    items.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            stopping = STOP in items
            self._commit([item for item in items if isinstance(item, tuple)])
            while stopping and self.folded < self.appended and self.failure is None:
                self._commit([])
        self.conn.close()

    def _gather(self, until: float) -> list:
        """What the queue brings until `until`, or up to the first item that is not a WAKE (a job, a STOP)."""
        items = []
        while (left := until - time.monotonic()) > 0:
            try:
                items.append(self.jobs.get(timeout=left))
            except queue.Empty:
                break
            if items[-1] is not WAKE:
                break
        return items

    def lag(self) -> float:
        """Seconds the oldest acknowledged event not yet in the database has waited at most (0: none waits)."""
        return 0.0 if self.folded >= self.appended else time.monotonic() - self.behind_since

    def _commit(self, jobs: list) -> None:
        self.woken = False
        started = self.fold_started = time.monotonic()
        end = self.appended  # every byte before this offset belongs to a complete, acknowledged line
        data = os.pread(self.fd_read, min(end - self.folded, JOURNAL_CHUNK), self.folded) if end > self.folded else b""
        cut = data.rfind(b"\n") + 1
        records = data[:cut].splitlines()
        conn = self.conn
        outcomes = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            stored = self._fold(records)
            set_journal_position(conn, self.generation, self.folded + cut)
            checkpoint_due = self.maintenance_due or time.monotonic() - self.maintained_at > MAINTENANCE_INTERVAL
            if checkpoint_due:
                # A task that returns True has more to do: it runs again in the next transaction.
                self.maintenance_due = any([bool(task(conn, now_ms())) for task in self.maintenance])
                self.maintained_at = time.monotonic()
            for job, args, future in jobs:
                # A savepoint per job: one failing job leaves nothing behind and does not undo its neighbours.
                conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((future, True, job(conn, *args)))
                except Exception as error:  # the job's own failure goes back to its request
                    conn.execute("ROLLBACK TO job")
                    outcomes.append((future, False, error))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as error:  # OSError: the dead-letter file could not be written
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._reset_appliers()
            for task in self.maintenance:  # what a task found done was rolled back too
                getattr(task, "reset", lambda: None)()
            if self.failure is None:
                log.error("database write failed, will retry: %s", error)
            self.failure = str(error)
            failure = Unavailable(f"the database cannot take writes: {error}")
            for _job, _args, future in jobs:
                future.set_exception(failure)
            return
        if self.failure is not None:
            log.info("database writes work again")
        self.failure = None
        self.committed_at = time.monotonic()
        self.stored.update(stored)
        if cut and self.folded + cut == end:  # what waits now was appended after this commit started
            self.behind_since = started
        self.folded += cut
        for future, ok, value in outcomes:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if self.folded >= JOURNAL_ROTATE and self.folded == self.appended:
            self._rotate()
        if checkpoint_due:
            self._checkpoint()

    def _fold(self, lines: list[bytes]) -> Counter:
        """Apply journal lines from the folded position on; if the batch fails, redo it a line at a time, and keep a
        line that still cannot be applied in the dead-letter file (durably, before the position passes it). How
        many records of each family it stored."""
        conn = self.conn
        try:
            conn.execute("SAVEPOINT fold")
            stored = self._apply(lines)
            conn.execute("RELEASE fold")
            return stored
        except LINE_REFUSALS:
            conn.execute("ROLLBACK TO fold")
            conn.execute("RELEASE fold")
            self._reset_appliers()
        kept, offset, stored = [], self.folded, Counter()
        for line in lines:
            conn.execute("SAVEPOINT line")
            try:
                stored.update(self._apply([line]))
            except LINE_REFUSALS as error:
                conn.execute("ROLLBACK TO line")
                self._reset_appliers()
                position = format_position(self.generation, offset)
                if position not in self.dead_lettered:  # kept already, by a commit that was then undone
                    kept.append(dead_letter(line, position, error))
                where = dead_letters_file(self.db_path)
                log.error("journal line skipped, kept in %s to retry (%s): %.300r", where, error, line)
            conn.execute("RELEASE line")
            offset += len(line) + 1
        if kept:
            keep_dead_letters(dead_letters_file(self.db_path), kept)
            self.dead_lettered.update(entry["position"] for entry in kept)
        return stored

    def _apply(self, lines: list[bytes]) -> Counter:
        return apply_journal_lines(self.conn, self.appliers, lines)

    def _reset_appliers(self) -> None:
        for applier in self.appliers.values():
            getattr(applier, "reset", lambda: None)()

    def _checkpoint(self) -> None:
        """Keep the -wal file bounded: past WAL_LIMIT, copy it into the database and truncate it.

        SQLite's automatic checkpoints copy pages back but can only start the WAL over when no reader is inside
        it; under steady load with dashboard readers it can keep growing. A TRUNCATE checkpoint waits for those
        readers, so it gets only a short busy timeout here: when readers are in the way, it tries again later.
        """
        try:
            if os.path.getsize(self.db_path + "-wal") <= WAL_LIMIT:
                return
            self.conn.execute("PRAGMA busy_timeout = 200")
            busy, _pages, _done = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                log.info("WAL checkpoint deferred: readers are still inside the WAL")
        except (OSError, sqlite3.Error) as error:
            log.warning("WAL checkpoint failed, will retry: %s", error)
        finally:
            self.conn.execute("PRAGMA busy_timeout = 5000")

    def _rotate(self) -> None:
        """Start a new journal file once everything in the current one is folded, and delete the old one."""
        with self.append_lock:
            if self.folded != self.appended:
                return
            old = self.generation
            # The new position is committed first: a crash at any point after it finds nothing left to replay.
            self.conn.execute("BEGIN IMMEDIATE")
            set_journal_position(self.conn, old + 1, 0)
            self.conn.execute("COMMIT")
            fd = os.open(journal_file(self.db_path, old + 1), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.close(self.fd)
            os.close(self.fd_read)
            self.fd, self.generation, self.folded, self.appended = fd, old + 1, 0, 0
            self.fd_read = os.open(journal_file(self.db_path, self.generation), os.O_RDONLY)
            os.unlink(journal_file(self.db_path, old))

    def _replay(self) -> None:
        """At start-up: fold what an earlier run acknowledged but had not committed, and drop a torn last line."""
        for generation in journal_generations(self.db_path):
            if generation < self.generation:
                os.unlink(journal_file(self.db_path, generation))  # folded before a rotation finished
        path = journal_file(self.db_path, self.generation)
        if (os.path.getsize(path) if os.path.exists(path) else 0) < self.folded:
            # The database was copied without its journal (or the journal deleted): everything its position counts
            # is in the database already, and new lines must not start below that position, or they would count as
            # folded and never be stored. A new generation starts at 0.
            log.warning(
                "journal: %s is shorter than the database's position; starting journal %d", path, self.generation + 1
            )
            self.generation = max([self.generation, *journal_generations(self.db_path)]) + 1  # a file of its own
            self.folded = 0
            self.conn.execute("BEGIN IMMEDIATE")
            set_journal_position(self.conn, self.generation, 0)
            self.conn.execute("COMMIT")
            path = journal_file(self.db_path, self.generation)
        if os.path.exists(path):
            with open(path, "rb") as file:
                file.seek(self.folded)
                data = file.read()
            complete = data[: data.rfind(b"\n") + 1]
            if len(complete) < len(data):
                log.warning(
                    "journal: dropping a torn last line of %d bytes (never acknowledged)", len(data) - len(complete)
                )
                os.truncate(path, self.folded + len(complete))
            if complete:
                records = complete.splitlines()
                self.conn.execute("BEGIN IMMEDIATE")
                self.stored.update(self._fold(records))
                set_journal_position(self.conn, self.generation, self.folded + len(complete))
                self.conn.execute("COMMIT")
                log.info("journal: replayed %d event(s) into the database", len(records))
                self.folded += len(complete)
        else:
            os.close(private_file(path))
        self.fd_read = os.open(path, os.O_RDONLY)


def insert_rows(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: list[tuple], tail: str = ""
) -> list[tuple]:
    """Insert many rows with few statements: multi-row VALUES in fixed chunk sizes, so each is prepared once.
    Returns what a RETURNING `tail` returns.

    Few statements matter more than few rows: Python's sqlite3 lets go of the GIL for every statement, and under
    load each hand-back can wait a whole thread switch interval (5 ms).
    """
    most = max(1, min(256, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(columns)))
    one_row = "(" + ", ".join("?" * len(columns)) + ")"
    done = 0
    returned = []
    while done < len(rows):
        size = next(size for size in (most, 64, 16, 4, 1) if size <= min(most, len(rows) - done))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one_row] * size)} {tail}"
        returned += conn.execute(sql, list(chain.from_iterable(rows[done : done + size]))).fetchall()
        done += size
    return returned


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def admin_token(conn: sqlite3.Connection, rotate: bool = False) -> str:
    """The admin token kept in the database, made on first use (or anew with `rotate`)."""
    token = get_meta(conn, "admin_token")
    if token is None or rotate:
        token = "pla_" + secrets.token_urlsafe(24)
        set_meta(conn, "admin_token", token)
        end_dashboard_sessions(conn, "token_id", ADMIN_IDENTITY["id"])  # the old token's logins end with it
    return token


def stored_secret(conn: sqlite3.Connection, key: str) -> str:
    """A random 32-byte key (hex) kept in the database, made on first use."""
    value = get_meta(conn, key)
    if value is None:
        value = secrets.token_bytes(32).hex()
        set_meta(conn, key, value)
    return value


def add_origin(conn: sqlite3.Connection, origin: str) -> bool:
    """Register an origin; False if it was registered already."""
    cursor = conn.execute(
        "INSERT INTO origins (origin, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING", (origin, now_ms())
    )
    return cursor.rowcount == 1


def remove_origin(conn: sqlite3.Connection, origin: str) -> bool:
    return conn.execute("DELETE FROM origins WHERE origin = ?", (origin,)).rowcount == 1


def stored_origins(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT origin FROM origins ORDER BY origin")]


###############################################################################
# Request context #############################################################
###############################################################################


def now_ms() -> int:
    """The current UTC time in unix milliseconds (tests move it forward)."""
    return time.time_ns() // 1_000_000


def client_ip(environ: dict, config: dict) -> str:
    """The socket peer; behind a trusted proxy, the entry that proxy appended to its header (right-most, or N-th)."""
    peer = environ.get("REMOTE_ADDR") or "0.0.0.0"
    if not config["trust_proxy"]:
        return peer
    value = environ.get("HTTP_" + config["proxy_header"].upper().replace("-", "_"), "")
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if len(entries) < config["proxy_hops"]:
        return peer
    entry = entries[-config["proxy_hops"]]
    if config["proxy_header"].lower() == "forwarded":  # RFC 7239: for=192.0.2.60;proto=http
        match = re.search(r'for="?\[?([^\]";]+)', entry, re.IGNORECASE)
        entry = match.group(1) if match else ""
    if entry.startswith("["):  # [2001:db8::5]:443
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:  # 203.0.113.7:51234
        entry = entry.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return peer


@functools.lru_cache(maxsize=URL_CACHE_SIZE)
def rate_key(ip: str, ipv6_prefix: int) -> str:
    """Whom a rate limit or a lockout counts: the IPv4 address, or the IPv6 network of `ipv6_prefix` bits around
    the address (a subscriber is given a whole /64 and may send from any of its addresses)."""
    if ":" not in ip:
        return ip
    try:
        address = ipaddress.IPv6Address(ip)
    except ValueError:
        return ip
    if address.ipv4_mapped:  # ::ffff:192.0.2.1 is that IPv4 client
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))


class OriginRegistry:
    """Answers which registered origin (site) a host belongs to: exact hosts, then `*.` wildcards, longest first."""

    def __init__(self, configured: list[str], read: Callable[[], sqlite3.Connection] | None):
        self.configured = list(configured)
        self.read = read
        self.loaded_at = -math.inf
        self.exact: set[str] = set()
        self.wildcards: list[tuple[str, str]] = []

    def site_of(self, host: str) -> str | None:
        if time.monotonic() - self.loaded_at > ORIGINS_REFRESH:
            self.reload()
        if host in self.exact:
            return host
        for suffix, origin in self.wildcards:
            # `*.example.com` matches a.example.com and a.b.example.com, never example.com itself.
            if host.endswith(suffix):
                return origin
        return None

    def reload(self) -> None:
        origins = set(self.configured) | (set(stored_origins(self.read())) if self.read else set())
        self.exact = {origin for origin in origins if not origin.startswith("*.")}
        self.wildcards = sorted(
            ((origin[1:], origin) for origin in origins if origin.startswith("*.")), key=lambda pair: -len(pair[0])
        )
        self.loaded_at = time.monotonic()


# The common page URL: http(s), a lower-case host name and maybe a port, a path, and no character urlsplit or a
# browser would treat otherwise (controls, spaces, backslashes): split by this alone, it is what urlsplit makes of
# it (tests/test_context.py compares the two), for a fraction of the time. Anything else takes the long way.
PLAIN_URL = re.compile(
    r"(https?)://([a-z0-9.-]+(?::[0-9]*)?)"  # scheme, host and port (no user, no IPv6 brackets, no escapes)
    r"(/[^?#\\\x00-\x20]*)?(?:\?([^#\\\x00-\x20]*))?(?:#([^\\\x00-\x20]*))?"  # path, query, fragment
)
C0_OR_SPACE = "".join(map(chr, range(33)))  # what a browser strips from both ends of a URL


@functools.lru_cache(maxsize=URL_CACHE_SIZE)  # a page's document referrer is split for its host and again for its path
def browser_split(url: str) -> SplitResult:
    """A URL split where a browser's URL parser (WHATWG) splits it, which urlsplit alone does not: the ends are
    stripped of controls and spaces, tabs and line breaks dropped, and in an http(s) URL (any special scheme) a
    backslash before the query is a slash, so `https://evil.example\\@blog.example/` is at evil.example. Where that
    moves the host, ValueError: other software (a mail client, a proxy) would read the URL another way."""
    plain = PLAIN_URL.fullmatch(url)
    if plain:
        scheme, netloc, path, query, fragment = plain.groups(default="")
        return SplitResult(scheme, netloc, path, query, fragment)
    text = url.strip(C0_OR_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() not in SPECIAL_SCHEMES or "\\" not in rest:
        return urlsplit(text)
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    parts = urlsplit(f"{scheme}:{rest[:end].replace(chr(92), '/')}{rest[end:]}")
    if parts.netloc != urlsplit(text).netloc:
        raise ValueError("a backslash in its host part, which browsers read as / and other software does not")
    return parts


def browser_host(parts: SplitResult) -> str | None:
    """The host of a split URL if a browser would go to that same host, else None: no user name or password (a
    phishing disguise), no percent escapes or non-ASCII (a browser decodes and maps them: `%2E`, `。` become dots),
    a name or an IP address, and no number where a browser would read an IPv4 address (`0x7f.1`)."""
    return netloc_host(parts.netloc)


@functools.lru_cache(maxsize=URL_CACHE_SIZE)  # a site's page URLs differ by path, not by host: 2 µs once per host
def netloc_host(netloc: str) -> str | None:
    """browser_host of a URL with this netloc (user, host and port), which is all it reads."""
    parts = SplitResult("", netloc, "", "", "")
    try:
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError:
        return None
    if not host or "@" in parts.netloc:
        return None
    host = host.rstrip(".")
    if parts.netloc.startswith("["):
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            return None
    if not host.isascii() or not HOST_PATTERN.match(host) or host.startswith("*."):
        return None
    if NUMERIC_LABEL.match(host.rpartition(".")[2]):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            return None
    return host


@functools.lru_cache(maxsize=URL_CACHE_SIZE)
def host_of(url: str) -> str | None:
    """The lower-cased host of an absolute URL of any scheme as a browser reads it (browser_host), or None."""
    try:
        return browser_host(browser_split(url))
    except ValueError:
        return None


def with_port(parts: SplitResult, host: str) -> str:
    """`host` with the URL's port when it is not its scheme's default (`localhost:3000`), as Prisme stores a host
    (its uri.Host()); a browser leaves a default port out of a URL, and so does this."""
    port = parts.port
    if port is None or port == DEFAULT_PORTS.get(parts.scheme.lower()):
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.lru_cache(maxsize=URL_CACHE_SIZE)
def authority_of(url: str) -> str | None:
    """host_of(url) with its port (with_port), or None."""
    try:
        parts = browser_split(url)
        host = browser_host(parts)
    except ValueError:
        return None
    return None if host is None else with_port(parts, host)


def site_of_request(origins: OriginRegistry, environ: dict, page_url: str | None) -> str:
    """The registered origin the request comes from: its Origin header, else the page's own host."""
    origin = environ.get("HTTP_ORIGIN")
    host = host_of(origin) if origin and origin != "null" else None
    host = host or (host_of(page_url) if page_url else None)
    site = origins.site_of(host) if host else None
    if site is None:
        raise Rejected(
            400, f"origin not registered: {host or origin or 'none'} (add it with `prisme-lite origins add`)"
        )
    return site


@dataclass(frozen=True)
class Page:
    """A page URL as stored: host (with a port that is not the default), normalised path, and the UTM parameters of
    its query."""

    host: str
    path: str
    utm: tuple[str | None, ...]


def split_http_url(value: str | None, what: str) -> tuple[SplitResult, str]:
    """The one URL check, for every URL stored or redirected to: absolute http(s), split as a browser splits it
    (`parts.geturl()` is the URL the browser would go to), a host it would go to, a numeric port, no control
    characters, not over-long."""
    if not value:
        raise Rejected(400, f"{what} is missing")
    if len(value) > MAX_URL_LENGTH or CONTROL_CHARS.search(value):
        raise Rejected(400, f"{what} is not a valid URL (over {MAX_URL_LENGTH} characters, or control characters)")
    try:
        parts = browser_split(value)
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError as error:
        raise Rejected(400, f"{what} is not a valid URL ({error}): {value[:200]!r}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Rejected(400, f"{what} must be an absolute http(s) URL with a host, got {value[:200]!r}")
    host = browser_host(parts)
    if host is None:
        raise Rejected(
            400,
            f"{what} is not a valid URL: {value[:200]!r} has no host a browser would go to as written (a user name"
            " or password, % escapes, or non-ASCII: use the xn-- form)",
        )
    return parts, host


def redirect_location(url: str | None, what: str, allowed: OriginRegistry | None = None) -> tuple[str, str]:
    """The one check of a URL we redirect a visitor to: the Location to send and its host. Absolute http(s) by
    split_http_url's rules, on a host of `allowed` when given; otherwise a 400, and no redirect is made. The
    Location is the URL as a browser reads it (browser_split): what was checked is where the browser goes."""
    parts, host = split_http_url(url, what)
    if allowed is not None and allowed.site_of(host) is None:
        raise Rejected(400, f"{what} host {host} is not allowed (see redirect_hosts)")
    return parts.geturl(), host


@functools.lru_cache(maxsize=URL_CACHE_SIZE)  # a site's visitors see the same pages: most requests hit the cache
def parse_page_url(value: str | None) -> Page:
    """The page of an event: host, normalised path, and utm_* (ref as utm_source); the rest of the query is dropped."""
    if not value:
        raise Rejected(400, "page URL is missing: send it in X-Prisme-Referrer or Referer (or the referrer parameter)")
    parts, host = split_http_url(value, "page URL")
    query = dict(parse_qsl(parts.query)) if parts.query else {}
    utm = [query.get(key) for key in UTM_KEYS]
    if utm[0] is None:
        utm[0] = query.get("ref")
    return Page(
        with_port(parts, host), normalise_path(parts.path), tuple(v[:MAX_UTM_LENGTH] if v else None for v in utm)
    )


def normalise_path(path: str) -> str:
    """Fold repeated slashes and resolve `.` and `..` (RFC 3986 §5.2.4); an empty path is `/`."""
    if path[:1] == "/" and "//" not in path and "/." not in path:
        return path  # the common path: nothing to fold, no dot segment
    segments = re.sub(r"/{2,}", "/", path).split("/")
    kept: list[str] = []
    for segment in segments[1:] if path.startswith("/") else segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in (".", ".."):
        kept.append("")  # /a/b/.. is the directory /a/
    return "/" + "/".join(kept)


def referrer_host(value: str | None, page_host: str) -> str:
    """The host a visitor came from (with_port), or `direct` (no referrer, or a link within the same host)."""
    if not value:
        return "direct"
    host = authority_of(value)
    if host is None:
        raise Rejected(400, f"document referrer is not a valid URL: {value[:200]!r}")
    return "direct" if host == page_host else host


@dataclass(frozen=True)
class Agent:
    """What a User-Agent string says about the visitor's software."""

    browser: str
    os: str
    device: str  # desktop | mobile | tablet | bot | other
    is_bot: bool


@functools.lru_cache(maxsize=UA_CACHE_SIZE)
def parse_user_agent(text: str) -> Agent:
    """What a User-Agent says; a bot, a headless browser, a client that is no browser or none at all is a bot."""
    import user_agents  # imported on first use: it compiles hundreds of regexes

    parsed = user_agents.parse(text)
    is_bot = parsed.is_bot or bool(BOT_PATTERN.search(text)) or not BROWSER_PATTERN.search(text)
    if is_bot:
        device = "bot"
    elif parsed.is_tablet:
        device = "tablet"
    elif parsed.is_mobile:
        device = "mobile"
    elif parsed.is_pc:
        device = "desktop"
    else:
        device = "other"
    return Agent(parsed.browser.family or "Other", parsed.os.family or "Other", device, is_bot)


def is_prefetch(environ: dict) -> bool:
    """A page the browser loads speculatively: not a visit until the user opens it."""
    purpose = environ.get("HTTP_SEC_PURPOSE") or environ.get("HTTP_PURPOSE") or environ.get("HTTP_X_MOZ") or ""
    return "prefetch" in purpose.lower()


def countable_agent(environ: dict) -> tuple[str, Agent]:
    """The request's User-Agent and what it says, unless it is a bot, no browser or a prefetch: those raise Dropped."""
    user_agent = environ.get("HTTP_USER_AGENT", "")[:MAX_USER_AGENT_LENGTH]
    agent = parse_user_agent(user_agent)
    if agent.is_bot:
        raise Dropped("bot")
    if is_prefetch(environ):
        raise Dropped("prefetch")
    return user_agent, agent


def query_pairs(environ: dict) -> list[tuple[str, str]]:
    """The query string as (name, value) pairs decoded as UTF-8 (Bottle's request.query decodes Latin-1)."""
    if not environ.get("QUERY_STRING"):
        return []  # the common pixel
    try:
        return parse_qsl(
            environ.get("QUERY_STRING", ""), keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS
        )
    except UnicodeDecodeError:
        raise Rejected(400, "query string is not valid UTF-8") from None
    except ValueError:
        raise Rejected(400, f"query string has more than {MAX_QUERY_FIELDS} parameters") from None


def query_value(pairs: list[tuple[str, str]], name: str) -> str | None:
    for key, value in pairs:  # a loop, not next() over a generator: the pixel asks four times of an empty list
        if key == name:
            return value
    return None


def refuse_unknown(pairs: list[tuple[str, str]], known: Iterable[str]) -> None:
    """400 naming the first parameter a read does not take: a misspelt one would otherwise be silently ignored."""
    for key, _value in pairs:
        if key not in known:
            raise Rejected(400, f"unknown parameter {key[:40]!r}; known: {', '.join(sorted(known))}")


class DailySalt:
    """The key of visitor ids: random, rotated at UTC midnight, kept in the database so restarts keep visitors."""

    def __init__(self, writer: Writer):
        self.writer = writer
        self.day = -1
        self.key = b""
        self.lock = threading.Lock()

    def for_time(self, ms: int) -> bytes:
        day = ms // DAY_MS
        if day != self.day:
            with self.lock:
                if day != self.day:
                    self.key = self.writer.run(rotate_salt, day)
                    self.day = day
        return self.key


def rotate_salt(conn: sqlite3.Connection, day: int) -> bytes:
    """The salt of `day`; a new one replaces (and so deletes) the previous day's."""
    stored = get_meta(conn, "visitor_salt")
    if stored:
        stored_day, key = stored.split(":", 1)
        if int(stored_day) == day:
            return bytes.fromhex(key)
    key = secrets.token_bytes(32)
    set_meta(conn, "visitor_salt", f"{day}:{key.hex()}")
    return key


def make_visitor_id(salt: bytes, site: str, ip: str, user_agent: str) -> str:
    """`prisme_` + a keyed hash: the same visitor all day, unlinkable across days, the IP never kept."""
    digest = hashlib.blake2b(f"{site}\0{ip}\0{user_agent}".encode(), key=salt, digest_size=8)
    return "prisme_" + digest.hexdigest()


class CountryLookup:
    """The visitor's ISO country code: from the trusted proxy's header, a MaxMind database, or XX."""

    def __init__(self, config: dict):
        self.header = "HTTP_" + config["country_header"].upper().replace("-", "_") if config["country_header"] else ""
        self.reader = None
        if config["geoip_db"]:
            try:
                import maxminddb
            except ImportError:
                raise ConfigError("geoip_db needs the maxminddb package: pip install maxminddb") from None
            try:
                self.reader = maxminddb.open_database(config["geoip_db"])
            except (OSError, ValueError) as error:
                raise ConfigError(f"geoip_db: cannot open {config['geoip_db']}: {error}") from None

    def __call__(self, environ: dict, ip: str) -> str:
        if self.header:
            code = environ.get(self.header, "").strip().upper()
            if len(code) == 2 and code.isalpha() and code != "XX":
                return code
        if self.reader is not None:
            try:
                record = self.reader.get(ip)
            except ValueError:
                record = None
            code = ((record or {}).get("country") or {}).get("iso_code")
            if isinstance(code, str) and len(code) == 2:
                return code.upper()
        return "XX"


###############################################################################
# Guards ######################################################################
###############################################################################


class RateLimiter:
    """Token buckets per client IP, `per_minute` events a minute with bursts of as many, in bounded memory.

    A bucket is kept as one number, the moment it will be full again; a full bucket is the same as none, so it is
    forgotten then (one request at 60 a minute is remembered for a second). Buckets are kept in least-recently-
    used order: the expired ones at the front go on every take, and past `max_buckets` the least recently used
    goes first, so a flood of spoofed addresses costs a fixed amount of memory.
    """

    def __init__(self, per_minute: int, max_buckets: int):
        self.capacity = float(per_minute)
        self.refill = per_minute / 60.0
        self.max_buckets = max_buckets
        self.buckets: OrderedDict[str, float] = OrderedDict()  # key → when its bucket is full again
        self.lock = threading.Lock()

    def _tokens(self, full_at: float | None, now: float) -> float:
        """A bucket's tokens at `now`: full when unknown or past `full_at`, else short by the refill still due."""
        return self.capacity if full_at is None else self.capacity - max(0.0, full_at - now) * self.refill

    def _seconds_until(self, tokens: float, cost: float) -> int:
        return 0 if tokens >= cost else math.ceil((cost - tokens) / self.refill)

    def wait(self, key: str, now: float | None = None) -> int:
        """Seconds until `key` has a token again (0: it has one now); spends nothing."""
        if not self.capacity:
            return 0
        with self.lock:
            full_at = self.buckets.get(key)
        return self._seconds_until(self._tokens(full_at, time.monotonic() if now is None else now), 1)

    def take(self, key: str, now: float | None = None, cost: int = 1) -> tuple[bool, int, int]:
        """Spend `cost` tokens: (allowed, tokens left, seconds until enough are available)."""
        if not self.capacity:
            return True, 0, 0
        now = time.monotonic() if now is None else now
        with self.lock:
            buckets = self.buckets
            tokens = self._tokens(buckets.pop(key, None), now)
            allowed = tokens >= cost
            if allowed:
                tokens -= cost
            buckets[key] = now + (self.capacity - tokens) / self.refill
            while buckets:
                oldest_key, full_at = next(iter(buckets.items()))
                if len(buckets) <= self.max_buckets and full_at > now:
                    break
                del buckets[oldest_key]
        return allowed, int(tokens), 0 if allowed else self._seconds_until(tokens, cost)


def read_body(environ: dict, limit: int) -> bytes:
    """The request body, refused with 413 beyond `limit` bytes: before it is read when its length is declared, and
    after `limit` + 1 bytes when it is not (a chunked body)."""
    declared = environ.get("CONTENT_LENGTH")
    if not declared:
        data = environ["wsgi.input"].read(limit + 1) if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "") else b""
        if len(data) > limit:
            raise Rejected(413, f"request body is over the limit of {limit} bytes")
        return data
    try:
        length = int(declared) if declared.isascii() and len(declared) <= 18 else None
    except ValueError:
        length = None
    if length is None:
        raise Rejected(400, "Content-Length is not a number")
    if length > limit:
        raise Rejected(413, f"request body of {length} bytes is over the limit of {limit} bytes")
    return environ["wsgi.input"].read(length) if length > 0 else b""


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in object")
    return result


def no_constants(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 is inf, which would be stored as Infinity: not JSON
        raise ValueError(f"number {text[:40]} is out of range (at most about 1.8e308)")
    return number


# Made once: json.loads and json.dumps with options build a decoder or an encoder on every call.
STRICT_JSON = json.JSONDecoder(object_pairs_hook=no_duplicates, parse_constant=no_constants, parse_float=finite)
TEXT_JSON = json.JSONEncoder(ensure_ascii=False)  # as stored: UTF-8 text, not \u escapes


def parse_json(data: bytes, what: str = "body") -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN, no absurd nesting; every failure is a 400 that says why."""
    try:
        text = data.decode("utf-8")
        if text.startswith("\ufeff"):  # as json.loads refuses it; the decoder alone would not check
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = STRICT_JSON.decode(text)
        # Lone surrogates (\ud800) parse but cannot be stored as UTF-8: find them now, not in the database. Only
        # an escape makes one (the UTF-8 decoder refuses an encoded surrogate), so text without `\u` has none.
        if "\\u" in text:
            TEXT_JSON.encode(value).encode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, f"{what} is not valid UTF-8") from None
    except UnicodeEncodeError:
        raise Rejected(
            400, f"{what} has an unpaired surrogate escape (like \\ud800), which is not valid Unicode"
        ) from None
    except RecursionError:
        raise Rejected(400, f"{what} is nested too deeply") from None
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise Rejected(400, f"{what} is not valid JSON: {error}") from None
    return value


def body_text(environ: dict, limit: int) -> str:
    """The request body as text (read_body's limits); 400 when it is not UTF-8."""
    try:
        return read_body(environ, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "body is not valid UTF-8") from None


def json_body(environ: dict, limit: int, missing: str | None = None, typed: bool = False) -> Any:
    """The body as JSON (read_body's limits, parse_json's rules): no body is {}, and white space is malformed (as
    the OpenAPI document says), but where a body is required (`missing`) both are a 400 saying `missing`.
    `typed`: 415 unless the Content-Type is application/json, once the body is read; no body needs no type (as in
    Prisme, whose script and e2e tests send a custom event with neither)."""
    body = read_body(environ, limit)
    content_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if typed and body and content_type != "application/json":
        raise Rejected(415, f"Content-Type must be application/json, got {content_type or 'none'!r}")
    if missing and not body.strip():
        raise Rejected(400, missing)
    return parse_json(body) if body else {}


def check_properties(props: Any) -> str | None:
    """A custom event's properties as stored JSON text, after the limits of SPEC §2; None when empty."""
    if not isinstance(props, dict):
        raise Rejected(
            400, f"properties must be a JSON object, got {type(props).__name__ if props is not None else 'null'}"
        )
    if len(props) > MAX_PROPERTIES:
        raise Rejected(400, f"{len(props)} properties is over the limit of {MAX_PROPERTIES}")
    for key in props:
        if not printable(key, MAX_PROPERTY_KEY_LENGTH):
            raise Rejected(
                400, f"property name {key[:80]!r} must be 1 to {MAX_PROPERTY_KEY_LENGTH} printable characters"
            )
    stored = JOURNAL_ENCODER.encode(props)  # compact, as the journal writes it
    # A value's size is counted as TEXT_JSON writes it, with a space after each separator: at most twice its
    # compact size, which `stored` holds. So only a long `stored` can hold a value over the limit.
    if 2 * len(stored.encode("utf-8")) > MAX_PROPERTY_VALUE_BYTES:
        for key, value in props.items():
            size = len(TEXT_JSON.encode(value).encode("utf-8"))
            if size > MAX_PROPERTY_VALUE_BYTES:
                raise Rejected(400, f"property {key!r} is {size} bytes, over the limit of {MAX_PROPERTY_VALUE_BYTES}")
    return stored if props else None


def printable(value: Any, most: int = MAX_NAME_LENGTH, least: int = 1) -> bool:
    """Whether `value` is a string of `least` to `most` characters, none a control character: the one check of
    names, ids, labels and segments, whatever family they come in."""
    return isinstance(value, str) and least <= len(value) <= most and not CONTROL_CHARS.search(value)


def check_name(name: str, what: str = "event name") -> str:
    if not printable(name):
        raise Rejected(400, f"{what} must be 1 to {MAX_NAME_LENGTH} printable characters")
    return name


def over_limit(why: str, wait: int) -> Rejected:
    """The one 429: why, and in how many seconds to try again (in the message and in Retry-After)."""
    return Rejected(429, f"{why}: retry in {wait} s", {"Retry-After": str(wait)})


def utf8_headers(environ: dict) -> None:
    """Header values as the UTF-8 text they are: WSGI hands their bytes over as Latin-1 text, so `café` would
    arrive as `cafÃ©`, and a Latin-1 `é` byte would pass as text; one that is not UTF-8 is a 400."""
    for key, value in environ.items():  # the common request has none: one cheap check a variable
        if type(value) is str and not value.isascii() and key.startswith("HTTP_"):
            try:
                environ[key] = value.encode("latin-1").decode("utf-8")
            except UnicodeError:
                name = key[5:].replace("_", "-").title()
                raise Rejected(400, f"header {name} is not valid UTF-8") from None


def bearer_token(environ: dict) -> str | None:
    """The token of `Authorization: Bearer <token>` (or, where a route allows it, the bare header value)."""
    value = environ.get("HTTP_AUTHORIZATION", "").strip()
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return value or None


AUTH_FAILURES_PER_MINUTE = 10  # unknown tokens or wrong secrets one client IP may send a minute; then 429
ADMIN_IDENTITY = {"id": "admin", "name": "admin token", "scopes": ["admin"]}


def client_key(ctx: Context) -> str:
    """The request's client as the rate limits and the lockout count it (rate_key)."""
    return rate_key(client_ip(request.environ, ctx.config), ctx.config["ipv6_prefix"])


def refuse_guessing(ctx: Context) -> None:
    """429 for a client IP that sent too many unknown tokens or wrong secrets in the last minute (brute force)."""
    wait = ctx.auth_failures.wait(client_key(ctx))
    if wait:
        raise over_limit("too many unknown tokens or wrong secrets from this address", wait)


def wrong_credential(ctx: Context) -> None:
    ctx.auth_failures.take(client_key(ctx))


def token_identity(ctx: Context, token: str) -> dict | None:
    """What a presented token is: the admin token (compared in constant time), an access token, or None, which
    counts against the sender's address (see refuse_guessing, which is asked first)."""
    refuse_guessing(ctx)
    if hmac.compare_digest(token.encode(), ctx.admin_token().encode()):
        return ADMIN_IDENTITY
    found = find_access_token(ctx.read(), token)
    if found is None:
        wrong_credential(ctx)
    return found


def is_admin(ctx: Context, token: str | None) -> bool:
    """The admin token, or an access token with the admin scope."""
    return bool(token) and "admin" in (token_identity(ctx, token) or {}).get("scopes", ())


def require_admin(ctx: Context) -> None:
    """The admin token, or an access token with the admin scope; 401 otherwise."""
    if is_admin(ctx, bearer_token(request.environ)):
        return
    raise Rejected(401, "admin token required: send Authorization: Bearer <token> (see `prisme-lite admin-token`)")


def authorize(ctx: Context, scope: str, token: str | None) -> dict:
    """The token granting `scope` (the admin token and admin-scoped tokens grant all): 401 when it is missing or
    unknown, 403 when it lacks the scope."""
    if not token:
        raise Rejected(401, "access token missing: send Authorization: Bearer <token> (`prisme-lite tokens create`)")
    found = token_identity(ctx, token)
    if found is None:
        raise Rejected(401, "access token is unknown or revoked")
    if scope not in found["scopes"] and "admin" not in found["scopes"]:
        raise Rejected(403, f"access token {found['id']} lacks the {scope} scope")
    return found


def create_access_token(conn: sqlite3.Connection, scopes: list[str], name: str) -> tuple[str, str]:
    """A new access token: (its id, the token itself, which is shown this once and kept only as a hash)."""
    token_id, token = "tk_" + secrets.token_hex(4), "pl_" + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO access_tokens (id, name, scopes, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        (token_id, name, " ".join(scopes), hash_secret(token), now_ms()),
    )
    return token_id, token


def find_access_token(conn: sqlite3.Connection, token: str) -> dict | None:
    # Looked up by its SHA-256: comparing hashes in SQL reveals nothing an attacker can steer towards a token.
    row = conn.execute(
        "SELECT id, name, scopes FROM access_tokens WHERE token_hash = ? AND revoked_at IS NULL", (hash_secret(token),)
    ).fetchone()
    return {"id": row[0], "name": row[1], "scopes": row[2].split()} if row else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


KNOWN_TOKENS = 256  # public tokens a server remembers as valid: a site has one or a few
KNOWN_TOKEN_RECHECK = 1.0  # seconds: a remembered token is looked up again at least this often


class KnownTokens:
    """The public tokens (track_public) a server found valid, so that a widget beacon needs no database read: two
    SQLite reads per request (the admin token, the token's row) released the GIL twice, and each waited for it
    back behind the other request threads (the widget route ran at half the pixel's rate, py-spy found 64 % of
    its samples there).

    A revoke must stop a token at once, and it comes from another process (`tokens revoke`): that command adds one
    to a counter in DB.tokens once it has committed, which a running server maps (MAP_SHARED) and reads from
    memory per request, without a system call. A token is remembered with the counter as it was before its
    lookup, and forgotten when the counter has moved; a revoke by hand in SQL is seen within KNOWN_TOKEN_RECHECK.
    Where the file cannot be mapped, nothing is remembered: every request looks its token up.
    """

    def __init__(self, db: str):
        self.tokens: dict[str, tuple[dict, bytes, float]] = {}  # token → its identity, the counter, recheck time
        self.changes: mmap.mmap | None = None
        try:
            fd = os.open(os.path.abspath(db) + ".tokens", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # not while `tokens revoke` writes it
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self.changes = mmap.mmap(fd, 8, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError:
            pass
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # the map keeps a duplicate of fd, and with it the lock, if not let go
            os.close(fd)

    def counter(self) -> bytes:
        return self.changes[:8] if self.changes is not None else b""

    def get(self, token: str) -> dict | None:
        known = self.tokens.get(token)
        if known is None or known[1] != self.counter() or time.monotonic() >= known[2]:
            return None
        return known[0]

    def add(self, token: str, identity: dict, counter: bytes) -> None:
        if self.changes is None:
            return
        if len(self.tokens) >= KNOWN_TOKENS:
            self.tokens.clear()  # whole, as the user agents' cache is: no order to keep between threads
        self.tokens[token] = (identity, counter, time.monotonic() + KNOWN_TOKEN_RECHECK)

    def close(self) -> None:
        if self.changes is not None:
            self.changes.close()

    @staticmethod
    def changed(db: str) -> None:
        """Tell a running server on `db` that tokens changed (after the change is committed): it forgets them."""
        try:
            fd = os.open(os.path.abspath(db) + ".tokens", os.O_RDWR)
        except FileNotFoundError:
            return  # no server has run on it: none remembers a token
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # two commands at once each add their one
            count = int.from_bytes(os.pread(fd, 8, 0).ljust(8, b"\0"), "little")
            os.pwrite(fd, ((count + 1) % 2**64).to_bytes(8, "little"), 0)
        finally:
            os.close(fd)


###############################################################################
# Reports #####################################################################
###############################################################################

# A `+` sent unencoded in a query string arrives as a space (now+1h as "now 1h"): a space where a sign goes is +.
TIME_STEP = re.compile(r"([+ -])([0-9]{1,6})([smhdwMy])|/([smhdwMy])")  # ASCII digits: int() reads others too
# 2026-03-01T10:00:00 02:00 → +02:00
UNENCODED_OFFSET = re.compile(r"(:[0-9][0-9](?:\.[0-9]+)?) ([0-9][0-9]:?[0-9][0-9])$")
UNIT_DELTAS = {
    "s": datetime.timedelta(seconds=1),
    "m": datetime.timedelta(minutes=1),
    "h": datetime.timedelta(hours=1),
    "d": datetime.timedelta(days=1),
    "w": datetime.timedelta(weeks=1),
}  # months and years are calendar steps, see shift_time
BUCKET_STEPS = [
    MINUTE_MS, 5 * MINUTE_MS, 15 * MINUTE_MS, 30 * MINUTE_MS, HOUR_MS, 3 * HOUR_MS, 6 * HOUR_MS, 12 * HOUR_MS, DAY_MS,
    7 * DAY_MS, 14 * DAY_MS, 28 * DAY_MS, 91 * DAY_MS,
]  # fmt: skip
MAX_BUCKETS = 40  # "about 32": the smallest step that gives at most this many
MAX_WINDOW_MS = 10 * 366 * DAY_MS
DEFAULT_LIMIT, MAX_LIMIT, MAX_FILTER_VALUES = 10, 1000, 50


@dataclass(frozen=True)
class Source:
    """Where reports read, and the SQL that differs there: the SQLite file with its daily counts, or ClickHouse (the
    mirror's raw rows of every node, each read at its latest version, so that a duplicate insert changes nothing).
    A metric is written once; its source names its tables, divides, and replaces what its dialect cannot say."""

    name: str
    final: str  # what follows a table's alias so that each row is read once, at its latest version
    divide: str  # integer division of {0} by {1}
    nodes: bool  # rows are named (node_id, id): several nodes' ids share the tables
    daily_counts: bool  # whole days may be read from the daily counts
    filter_indexes: bool  # it has the filters' own indexes (schema.sql: events_hour_path, sessions_referrer, …)
    # By name: a table this source does not store, as a subquery; or a fragment of SQL in its own dialect.
    views: dict[str, str] = field(default_factory=dict)

    def table(self, name: str, alias: str = "") -> str:
        """A FROM item: the table `name` (as `alias`) as this source reads it."""
        named = f" AS {alias}" if alias else ""
        return f"({self.views[name]}){named}" if name in self.views else f"{name}{named}{self.final}"

    def row_id(self, column: str, alias: str = "") -> str:
        """How a row (or the row `column` points to) is named: its id, and in ClickHouse its node's id too."""
        prefix = f"{alias}." if alias else ""
        return f"({prefix}node_id, {prefix}{column})" if self.nodes else f"{prefix}{column}"

    def row_ids(self, column: str, table: str) -> str:
        """A subquery's SELECT of the row ids in `column` of `table`, for `row_id(...) IN (...)`."""
        return f"SELECT {'node_id, ' if self.nodes else ''}{column} FROM {self.table(table)}"

    def sql(self, name: str, default: str) -> str:
        """A fragment of SQL this source says in its own dialect, else `default`."""
        return self.views.get(name, default)


SQLITE = Source("sqlite", "", "{0} / {1}", nodes=False, daily_counts=True, filter_indexes=True)
CLICKHOUSE = Source("clickhouse", " FINAL", "intDiv({0}, {1})", nodes=True, daily_counts=False, filter_indexes=False)


@dataclass
class StatsQuery:
    """A stats request: the window [start, end) in unix ms, its bucket step, the site and filters, and `limit`."""

    start: int
    end: int
    step: int
    site: str | None
    filters: dict[str, list[str]]
    limit: int
    now: int = 0  # when the query was asked: a window that reaches it may take today's daily counts whole
    site_of: Callable[[str], str | None] | None = None  # which site a host belongs to (OriginRegistry.site_of)
    # What the report was asked but its rows cannot answer ("site" or a filter: why), set by window_where and named
    # in the answer; shared by the copies `replace` makes of the query.
    unapplied: dict[str, str] = field(default_factory=dict)
    source: Source = SQLITE

    def values(self, name: str) -> list[str]:
        return self.filters.get(name, [])


def shift_time(moment: datetime.datetime, amount: int, unit: str) -> datetime.datetime:
    if unit in UNIT_DELTAS:
        return moment + amount * UNIT_DELTAS[unit]
    months = moment.year * 12 + moment.month - 1 + amount * (12 if unit == "y" else 1)
    year, month = divmod(months, 12)
    last_day = (datetime.date(year + (month == 11), (month + 1) % 12 + 1, 1) - datetime.timedelta(days=1)).day
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last_day))


def round_time(moment: datetime.datetime, unit: str) -> datetime.datetime:
    """Round down to the start of the unit: /d is midnight UTC, /w Monday, /M the 1st, /y the 1st of January."""
    moment = moment.replace(microsecond=0)
    fields = {"m": {"second": 0}, "h": {"second": 0, "minute": 0}}.get(unit, {})
    if unit in ("d", "w", "M", "y"):
        fields = {"second": 0, "minute": 0, "hour": 0}
    moment = moment.replace(**fields)
    if unit == "w":
        moment -= datetime.timedelta(days=moment.weekday())
    if unit in ("M", "y"):
        moment = moment.replace(day=1, month=1 if unit == "y" else moment.month)
    return moment


def rfc3339(text: str) -> datetime.datetime:
    """An RFC 3339 time (`Z` or `z` for UTC); ValueError when it is not one, naive when it has no time zone."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


def parse_time(expression: str, now: int, name: str) -> int:
    """Prisme's time expressions: now, now-7d, now+1h, now-7d/d, now-1M-2d/h, RFC 3339, or YYYY-MM-DD (UTC)."""
    text = expression.strip()
    if text.startswith("now"):
        moment = datetime.datetime.fromtimestamp(now / 1000, datetime.UTC)
        position = 3
        while position < len(text):
            step = TIME_STEP.match(text, position)
            if step is None:
                raise Rejected(400, f"{name}: cannot read {text[position:][:20]!r} in {text[:60]!r} (try now-7d/d)")
            if step[4]:
                moment = round_time(moment, step[4])
            else:
                try:
                    moment = shift_time(moment, int(step[2]) * (-1 if step[1] == "-" else 1), step[3])
                except (OverflowError, ValueError):
                    raise Rejected(400, f"{name}: {text[:60]!r} is out of range") from None
            position = step.end()
        return int(moment.timestamp() * 1000)
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9][0-9]-[0-9][0-9]", text):
            return int(datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC).timestamp() * 1000)
        text = UNENCODED_OFFSET.sub(r"\1+\2", text)
        moment = rfc3339(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise Rejected(400, f"{name}: {text[:60]!r} is not now[+/-N(s|m|h|d|w|M|y)][/unit], RFC 3339, or YYYY-MM-DD")
    return int(moment.timestamp() * 1000)


def parse_stats_query(query: list[tuple[str, str]], now: int, default_from: str = "now-7d") -> StatsQuery:
    """from, to, site, limit and the filters (comma lists); every refusal names the parameter."""
    names = stats_filters()
    refuse_unknown(query, {"from", "to", "site", "limit", *names})
    start = parse_time(query_value(query, "from") or default_from, now, "from")
    end = parse_time(query_value(query, "to") or "now", now, "to")
    if not start < end or end - start > MAX_WINDOW_MS:
        raise Rejected(400, "from must be before to, and at most ten years before it")
    limit_text = query_value(query, "limit") or str(DEFAULT_LIMIT)
    # ASCII digits of a bounded length only: isdigit() takes ² (which int() refuses) and 5,000 digits (too many).
    if not INTEGER_ID.fullmatch(limit_text) or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise Rejected(400, f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit_text[:20]!r}")
    filters = {}
    for name in names:
        given = [value.strip() for key, value in query if key == name for value in value.split(",") if value.strip()]
        if len(given) > MAX_FILTER_VALUES:
            raise Rejected(400, f"{name} has more than {MAX_FILTER_VALUES} values")
        if given:
            filters[name] = given
    step = next((step for step in BUCKET_STEPS if (end - start) / step <= MAX_BUCKETS), BUCKET_STEPS[-1])
    return StatsQuery(start, end, step, query_value(query, "site"), filters, int(limit_text), now)


def stats_filters() -> list[str]:
    """The filters every family adds (web events' page, referrer, …, server events' label, …), in their order."""
    return [name for family in FAMILIES for name in family.filters]


def placeholders(values: list) -> str:
    return ", ".join("?" * len(values))


@dataclass(frozen=True, slots=True)
class Table:
    """What a report reads: its FROM, its time column (in units of `unit` ms), its site and the filters it applies."""

    source: str
    time: str
    site: str | Callable | None  # a column, a function (conn, q) -> (condition, params), or None: not stored per site
    filters: dict[str, str | Callable]  # by name: a column, or a function (q, values) -> (condition, params)
    note: str = ""  # asked for one site, why these rows answer for every site
    unit: int = 1

    def rows(self, q: StatsQuery) -> str:
        """The FROM item of this table where q reads."""
        return q.source.table(*self.source.split())


def window_where(q: StatsQuery, table: Table, conn: sqlite3.Connection | None = None) -> tuple[str, list]:
    """The one WHERE of every report: q's window on `table`'s time, q's site and q's filters. What the table does not
    store is not filtered, and q.unapplied says so (the answer names it): no site or filter is dropped silently."""
    conditions, params = [f"{table.time} >= ?", f"{table.time} < ?"], [q.start // table.unit, -(-q.end // table.unit)]
    if q.site and table.site is None:
        q.unapplied["site"] = table.note
    elif q.site:
        condition, values = (f"{table.site} = ?", [q.site]) if isinstance(table.site, str) else table.site(conn, q)
        conditions.insert(0, condition)
        params[:0] = values
    if any(getattr(table.filters.get(name), "drives", lambda q, values: False)(q, values)
           for name, values in q.filters.items()):  # fmt: skip
        # an index of the filter's finds fewer rows than the window's: `+` keeps SQLite off the window's index
        conditions = [condition if condition.startswith(("+", "(")) else f"+{condition}" for condition in conditions]
    for name, values in q.filters.items():
        applied = table.filters.get(name)
        if applied is None:
            q.unapplied[name] = f"{table.source.split()[0]} do not record {name}"
            continue
        condition, values = (f"{applied} IN ({placeholders(values)})", values) if isinstance(applied, str) else (
            applied(q, values)
        )  # fmt: skip
        conditions.append(condition)
        params += values
    return " AND ".join(conditions), params


def bucketed(conn: sqlite3.Connection, q: StatsQuery, time_column: str, value: str, source: str, where: str,
             params: list) -> tuple[list, list]:  # fmt: skip
    """A time series: one value per bucket of q.step from the bucket holding q.start, empty buckets as 0."""
    sql = f"SELECT {bucket_of(q, time_column)} AS bucket, {value} FROM {source} WHERE {where} GROUP BY bucket"
    return bucket_keys(q, dict(conn.execute(sql, params).fetchall()))


def ranked(conn: sqlite3.Connection, q: StatsQuery, key: str, value: str, source: str, where: str,
           params: list) -> tuple[list, list]:  # fmt: skip
    """A top-N: keys by descending value (ties by key), at most q.limit."""
    sql = (
        f"SELECT {key} AS k, {value} AS n FROM {source} WHERE {where} AND k IS NOT NULL"
        " GROUP BY k ORDER BY n DESC, k LIMIT ?"
    )
    rows = conn.execute(sql, [*params, q.limit]).fetchall()
    return [row[0] for row in rows], [row[1] for row in rows]


def series(scope: Callable, time_column: str, value: str) -> Callable:
    """A time-series metric: `value` per bucket of `time_column` over what `scope` selects."""

    def metric(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
        return bucketed(conn, q, time_column, value, *scope(q))

    return metric


def top(scope: Callable, column: str) -> Callable:
    """A top-N metric: rows per `column` over what `scope` selects."""

    def metric(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
        return ranked(conn, q, column, "count(*)", *scope(q))

    return metric


def bucket_keys(q: StatsQuery, found: dict) -> tuple[list, list]:
    keys = list(range(q.start - q.start % q.step, q.end, q.step))
    return keys, [found.get(key) or 0 for key in keys]


def iso_time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_date(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


###############################################################################
# Web events ##################################################################
###############################################################################


class WebEvent(TypedDict):
    """A web event as record_web_event makes it, the journal keeps it and the writer stores it (EVENT_COLUMNS). A
    dict, not an object: the journal holds it as JSON, and its row is read out in C (EVENT_ROW)."""

    ts: int
    site: str
    kind: str
    name: str | None
    host: str
    path: str
    referrer: str
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    visitor_id: str
    session_id: NotRequired[int | None]  # the writer's to set
    browser: str
    os: str
    device: str
    country: str | None
    status: int
    props: str | None
    # For the writer only, not columns: what it needs to place the event in its visitor's session.
    ping: NotRequired[bool]  # a browser's <a ping>: its path is the session's (Ping-From has the whole URL)
    from_path: NotRequired[str]  # a pageview's document referrer on its own host (referrer `direct`): its path
    salted_id: NotRequired[str]  # the day-salted id of the device, when the event came with a visitor id


JOURNAL_ONLY = ("ping", "from_path", "salted_id")
EVENT_COLUMNS = tuple(name for name in WebEvent.__annotations__ if name not in JOURNAL_ONLY)


@dataclass(slots=True)
class Session:
    """A row of `sessions` (SESSION_COLUMNS) as a batch proposes it to UPSERT_SESSIONS."""

    id: int
    site: str
    visitor_id: str
    started_at: int
    last_seen: int
    entry_path: str
    exit_path: str
    pageviews: int  # of this batch: the upsert adds them on
    host: str
    referrer: str
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    browser: str
    os: str
    device: str
    country: str | None


SESSION_COLUMNS = tuple(Session.__annotations__)
EVENT_ROW = itemgetter(*EVENT_COLUMNS)  # an event's row, in C
SESSION_ROW = attrgetter(*SESSION_COLUMNS)  # a session's row, in C too
SESSION_EXTRAS = itemgetter(*SESSION_COLUMNS[8:])  # what a session takes from the event that opens it


@dataclass(slots=True)
class LatestSession:
    """What the writer keeps of a visitor's latest session (LATEST_SESSIONS): enough to extend it and to count what a
    batch changed."""

    id: int
    last_seen: int
    started_at: int
    pageviews: int
    exit_path: str
    exit_host: str  # of its last pageview (known to the writer; from the database, the host it started on)
    visitor_id: str  # whose it is: a session a visitor id was given to is cached under the device's id too


# A batch's sessions in one statement: new ones are inserted; for known ones the batch's activity is added on.
# `pageviews` of the proposed row is what this batch adds; with none, the exit path stays as it was.
UPSERT_SESSIONS = """
ON CONFLICT (id) DO UPDATE SET
    last_seen = max(last_seen, excluded.last_seen),
    exit_path = CASE WHEN excluded.pageviews > 0 THEN excluded.exit_path ELSE exit_path END,
    pageviews = pageviews + excluded.pageviews
"""

# The latest session of each visitor in a JSON list of [site, visitor_id] pairs (the other columns are of the row
# with the latest last_seen, SQLite's rule for bare columns beside max()).
LATEST_SESSIONS = """
SELECT s.site, s.visitor_id, s.id, max(s.last_seen), s.started_at, s.pageviews, s.exit_path, s.host, s.visitor_id
FROM json_each(?) AS wanted
JOIN sessions AS s ON s.site = json_extract(wanted.value, '$[0]') AND s.visitor_id = json_extract(wanted.value, '$[1]')
GROUP BY s.site, s.visitor_id
"""


# A batch's daily counts (schema.sql, daily_counts), one row per key; and the visitors it saw, of whom only those
# new to their day come back (RETURNING leaves out the rows DO NOTHING skipped).
UPSERT_DAILY_COUNTS = "ON CONFLICT DO UPDATE SET n = n + excluded.n"
NEW_DAILY_VISITORS = "ON CONFLICT DO NOTHING RETURNING site, salted, day"
DAILY_VISITOR_COLUMNS = ("site", "salted", "day", "visitor_id")


def count_events(counts: Counter, events: list[dict]) -> list[tuple]:
    """Add a batch's events to `counts` ((site, dim, day, value) → n; None values are dropped later); return the
    distinct (site, salted, day, visitor_id) of its pageviews. Counter.update counts in C: no Python per event."""
    pageviews = [event for event in events if event["kind"] == "pageview"]
    sites = [event["site"] for event in pageviews]
    days = [event["ts"] // DAY_MS for event in pageviews]
    counts.update(zip(sites, repeat("pageviews"), days, repeat("")))
    for dim in ROLLUP_EVENT_DIMS:
        counts.update(zip(sites, repeat(dim), days, map(itemgetter(dim), pageviews)))
    if len(pageviews) < len(events):
        counts.update(
            (event["site"], event["kind"], event["ts"] // DAY_MS, event["name"])
            for event in events
            if event["kind"] != "pageview"
        )
    seen = set(zip(sites, days, map(itemgetter("visitor_id"), pageviews), strict=True))
    return [(site, bool(SALTED_VISITOR.fullmatch(visitor)), day, visitor) for site, day, visitor in seen]


def count_session(counts: Counter, row: Session, before: LatestSession | None, after: LatestSession) -> None:
    """Add to `counts` what a session's batch changed: it was `before` (None for a session this batch opened) and is
    `after` now."""
    site, day = row.site, after.started_at // DAY_MS
    if before is None:
        counts[(site, "sessions", day, "")] += 1
        counts[(site, "bounces", day, "")] += after.pageviews == 1
        counts[(site, "duration", day, "")] += after.last_seen - after.started_at
        counts[(site, "entry_path", day, row.entry_path)] += 1
        counts[(site, "exit_path", day, after.exit_path)] += 1
        for dim, column in VISIT_DIMS.items():  # None (no campaign) is dropped by upsert_daily_counts
            counts[(site, dim, day, getattr(row, column))] += 1
        return
    counts[(site, "bounces", day, "")] += (after.pageviews == 1) - (before.pageviews == 1)
    counts[(site, "duration", day, "")] += after.last_seen - before.last_seen
    if after.exit_path != before.exit_path:
        counts[(site, "exit_path", day, before.exit_path)] -= 1
        counts[(site, "exit_path", day, after.exit_path)] += 1


def upsert_daily_counts(conn: sqlite3.Connection, counts: Counter, new_visitors: list[tuple]) -> None:
    for site, salted, day in new_visitors:
        if salted:  # other visitors are counted distinct over a window's days, at read time
            counts[(site, "visitors", day, "")] += 1
    rows = [(*key, n) for key, n in counts.items() if n and key[3] is not None]
    insert_rows(conn, "daily_counts", ("site", "dim", "day", "value", "n"), rows, UPSERT_DAILY_COUNTS)


def is_reload(pageview: WebEvent, session: LatestSession) -> bool:
    """Whether a pageview is a reload or a repeated landing: of the page its open session is on, and not from that
    page itself (a link or pushState to it). Prisme stores nothing for it (its events_pageviews.go: no session on the
    referrer's path, one on this page's: "user refresh pages or a tab is duplicated"); neither does the writer."""
    return (
        pageview["path"] == session.exit_path
        and pageview["host"] == session.exit_host
        and pageview.get("from_path") != pageview["path"]
    )


# An event may reach the journal just before its page's pageview (Prisme's script triggers on DOMContentLoaded,
# beside the pageview's request). Stored at once without a session, it joins the session that its visitor's
# pageview of the same page opens at most this long after it, in the same fold batch or a later one.
SESSION_LOOKAHEAD = 5_000

# The events of a visitor stored without a session in the look-ahead before a pageview that opens one, on its page.
ATTACH_EARLIER_EVENTS = """
UPDATE events SET session_id = ?
WHERE site = ? AND ts >= ? AND ts <= ? AND visitor_id = ? AND path = ? AND session_id IS NULL AND kind != 'pageview'
"""


class WebEventStore:
    """Writer applier: stores a batch of web events, attaching each to its visitor's session (SPEC §3.3), and adds
    what the batch changed to the daily counts, one upsert per key.

    A pageview continues the visitor's latest session when it was active within the timeout, else opens one;
    other events join the open session, or none. Sessions being followed are kept in a bounded cache (only the
    writer changes sessions, so it is exact); a visitor it does not know is looked up once per batch. The cache
    also holds what the daily counts need of a session the batch extends (bounce, duration, exit path before it).
    """

    def __init__(self, session_timeout_ms: int, max_cached: int = 20_000):
        self.timeout = session_timeout_ms
        self.max_cached = max_cached
        self.latest: OrderedDict[tuple[str, str], LatestSession] = OrderedDict()  # by (site, visitor)
        self.next_id: int | None = None
        # visitors with events stored without a session, and the time of the latest; what came before `known_from`
        # (a start, a rollback) is not known here, so a session opened within the look-ahead of it looks it up.
        self.sessionless: dict[tuple[str, str], int] = {}
        self.known_from: int | None = None

    def reset(self) -> None:
        """Forget everything cached: the transaction it came from was rolled back."""
        self.latest.clear()
        self.next_id = None
        self.sessionless.clear()
        self.known_from = None

    def __call__(self, conn: sqlite3.Connection, events: list[WebEvent]) -> None:
        keys = {(event["site"], event["visitor_id"]) for event in events}
        self._look_up(conn, keys.union((e["site"], e["salted_id"]) for e in events if "salted_id" in e))
        sessions: dict[int, Session] = {}  # by id: its row, with this batch's activity
        # session id → what it was before this batch (None if it opened it), and its cache entry, which follows the
        # row as the upsert leaves it (the visitor's latest may be newer by then)
        before: dict[int, tuple[LatestSession | None, LatestSession]] = {}
        kept: list[WebEvent] = []  # the events stored: all but reloads
        waiting: dict[tuple[str, str], list[WebEvent]] = {}  # this batch's events without a session, by visitor
        if self.known_from is None and events:
            self.known_from = events[0]["ts"]
        for event in events:
            key = (event["site"], event["visitor_id"])
            latest = self.latest.get(key)
            is_open = latest is not None and event["ts"] - latest.last_seen <= self.timeout
            if not is_open and "salted_id" in event:  # a visitor id with no open session: the device's, if it has one
                device = self.latest.get((event["site"], event["salted_id"]))
                if device is not None and event["ts"] - device.last_seen <= self.timeout:
                    latest, is_open = device, True
            if is_open and event["kind"] == "pageview" and is_reload(event, latest):
                continue
            kept.append(event)
            if is_open and latest.visitor_id != event["visitor_id"]:
                if event["kind"] == "pageview" and "salted_id" in event:  # identify, as Prisme's IdentifySession
                    self._identify(conn, key[0], latest, event["visitor_id"], kept, sessions)
                    self.latest[key] = latest
                else:  # as Prisme stores an event: under its session's visitor
                    event["visitor_id"] = latest.visitor_id
            if event["kind"] == "pageview" and not is_open:
                if "from_path" in event:  # internal traffic with no session: the site's host referred it (Prisme)
                    event["referrer"] = event["host"]
                if self.next_id is None:
                    self.next_id = (conn.execute("SELECT max(id) FROM sessions").fetchone()[0] or 0) + 1
                latest = self.latest[key] = LatestSession(
                    self.next_id, event["ts"], event["ts"], 0, event["path"], event["host"], key[1]
                )
                self.next_id += 1
                sessions[latest.id] = Session(
                    latest.id, *key, event["ts"], event["ts"], event["path"], event["path"], 0, *SESSION_EXTRAS(event)
                )
                before[latest.id] = (None, latest)
                self._attach_earlier(conn, key, event, latest.id, waiting.pop(key, ()))
            elif not is_open:
                event["session_id"] = None  # custom events, links and downloads are stored without a session too
                waiting.setdefault(key, []).append(event)
                continue
            event["session_id"] = latest.id
            if event.get("ping"):  # as Prisme stores a ping: on the page its session is on
                event["path"] = latest.exit_path
            if self.latest.get(key) is latest:  # not when it joined the device's session under another id
                self.latest.move_to_end(key)
            row = sessions.get(latest.id)
            if row is None:  # an existing session: a placeholder row whose conflict branch adds the activity
                row = sessions[latest.id] = Session(
                    latest.id, *key, 0, 0, event["path"], event["path"], 0, *SESSION_EXTRAS(event)
                )
                was = replace(latest)
                before[latest.id] = (was, latest)
            latest.last_seen = max(latest.last_seen, event["ts"])
            row.last_seen = max(row.last_seen, event["ts"])
            if event["kind"] == "pageview":
                latest.pageviews += 1
                latest.exit_path = row.exit_path = event["path"]
                latest.exit_host = event["host"]
                row.pageviews += 1
        insert_rows(conn, "sessions", SESSION_COLUMNS, list(map(SESSION_ROW, sessions.values())), UPSERT_SESSIONS)
        insert_rows(conn, "events", EVENT_COLUMNS, list(map(EVENT_ROW, kept)))
        forget_prefixes(conn, kept)
        counts: Counter = Counter()
        seen = count_events(counts, kept)
        for session_id, (was, now) in before.items():
            count_session(counts, sessions[session_id], was, now)
        upsert_daily_counts(
            conn, counts, insert_rows(conn, "daily_visitors", DAILY_VISITOR_COLUMNS, seen, NEW_DAILY_VISITORS)
        )
        days = {(event["site"], event["ts"] // DAY_MS) for event in kept}
        days.update((sessions[i].site, now.started_at // DAY_MS) for i, (was, now) in before.items() if was is not None)
        touch_days(conn, days)
        while len(self.latest) > self.max_cached:
            self.latest.popitem(last=False)
        if waiting:
            newest = events[-1]["ts"]
            self.sessionless = {k: ts for k, ts in self.sessionless.items() if newest - ts <= SESSION_LOOKAHEAD}
            self.sessionless.update((k, early[-1]["ts"]) for k, early in waiting.items())

    def _attach_earlier(
        self, conn: sqlite3.Connection, key: tuple[str, str], pageview: WebEvent, session_id: int, early: Iterable
    ) -> None:
        """Give the session a pageview opens the visitor's events of its page from the look-ahead before it: of this
        batch (`early`), and of earlier ones when some may be stored (ATTACH_EARLIER_EVENTS)."""
        since = pageview["ts"] - SESSION_LOOKAHEAD
        for event in early:
            if event["ts"] >= since and event["path"] == pageview["path"]:
                event["session_id"] = session_id
        if self.sessionless.get(key, -math.inf) >= since or since < (self.known_from or 0):
            conn.execute(ATTACH_EARLIER_EVENTS, (session_id, key[0], since, pageview["ts"], key[1], pageview["path"]))

    def _identify(
        self, conn: sqlite3.Connection, site: str, session: LatestSession, visitor_id: str, batch: list, rows: dict
    ) -> None:
        """A pageview gave the device's open session a visitor id: the session and the events it stored take it, and
        the id they had stops counting as a visitor on a day it has no other pageview (VISITORS_RECOUNT stays exact).
        Rare (a login), so what it reads is not cached: the old id's pageviews of that day."""
        old, session.visitor_id = session.visitor_id, visitor_id
        for event in batch:
            if event.get("session_id") == session.id and event["visitor_id"] == old:
                event["visitor_id"] = visitor_id
        if session.id in rows:
            rows[session.id].visitor_id = visitor_id  # opened in this batch: stored as it is now
        conn.execute("UPDATE sessions SET visitor_id = ? WHERE id = ?", (visitor_id, session.id))
        renamed = conn.execute(
            "UPDATE events SET visitor_id = ? WHERE site = ? AND ts >= ? AND session_id = ? AND visitor_id = ?"
            " RETURNING kind, ts",
            (visitor_id, site, session.started_at, session.id, old),
        ).fetchall()
        salted = bool(SALTED_VISITOR.fullmatch(old))
        touch_days(conn, ((site, ts // DAY_MS) for _kind, ts in renamed))
        for day in {ts // DAY_MS for kind, ts in renamed if kind == "pageview"}:
            conn.execute("INSERT OR IGNORE INTO daily_visitors VALUES (?, 0, ?, ?)", (site, day, visitor_id))
            if conn.execute(
                "SELECT 1 FROM events WHERE site = ? AND ts >= ? AND ts < ? AND visitor_id = ? AND kind = 'pageview'",
                (site, day * DAY_MS, (day + 1) * DAY_MS, old),
            ).fetchone():
                continue
            conn.execute(
                "DELETE FROM daily_visitors WHERE site = ? AND salted = ? AND day = ? AND visitor_id = ?",
                (site, salted, day, old),
            )
            if salted:
                conn.execute(
                    "UPDATE daily_counts SET n = n - 1 WHERE site = ? AND dim = 'visitors' AND day = ? AND value = ''",
                    (site, day),
                )

    def _look_up(self, conn: sqlite3.Connection, keys: set[tuple[str, str]]) -> None:
        missing = [key for key in keys if key not in self.latest]
        if missing:
            for site, visitor_id, *session in conn.execute(LATEST_SESSIONS, (json.dumps(missing),)):
                self.latest[(site, visitor_id)] = LatestSession(*session)


def record_web_event(
    ctx: Context,
    kind: str,
    page_url: str | None,
    *,
    name: str | None = None,
    props: str | None = None,
    document_referrer: str | None = None,
    visitor_id: str | None = None,
    status: str | None = None,
    target: str | None = None,
    ping: bool = False,
) -> None:
    """Validate one web event from the current request and store it (or drop it, saying why)."""
    environ = request.environ
    page = parse_page_url(page_url)
    site = site_of_request(ctx.origins, environ, page_url)
    if kind in ("outbound", "download"):
        parts, target_host = split_http_url(target, "link URL")
        target = parts.geturl()  # as the browser follows it
        if kind == "outbound" and with_port(parts, target_host) == page.host:  # Prisme: host and port
            raise Rejected(400, f"outbound link {target[:200]!r} points to the page's own host {page.host}")
    if status and not PAGE_STATUS.fullmatch(status):
        raise Rejected(400, f"page status must be an HTTP status code (100-599), got {status[:20]!r}")
    page_status = int(status) if status else 200
    if visitor_id is not None and not printable(visitor_id, MAX_VISITOR_ID_LENGTH, least=0):
        raise Rejected(400, f"visitor id must be at most {MAX_VISITOR_ID_LENGTH} printable characters")
    referrer = referrer_host(document_referrer, page.host)
    user_agent, agent = countable_agent(environ)
    ts = now_ms()
    ip = environ["prisme.client_ip"]
    salted_id = make_visitor_id(ctx.salt.for_time(ts), site, ip, user_agent)
    event = web_event(
        ts, site, kind, page, (referrer, document_referrer), agent, visitor_id or salted_id,
        ctx.country(environ, ip), page_status, target or name, props,
    )  # fmt: skip
    if ping:
        event["ping"] = True
    if visitor_id and visitor_id != salted_id:  # the writer may find the device's session (identify)
        event["salted_id"] = salted_id
    ctx.writer.append("web", event)


def web_event(
    ts: int,
    site: str,
    kind: str,
    page: Page,
    referrers: tuple[str, str | None],
    agent: Agent,
    visitor_id: str,
    country: str | None,
    status: int,
    name: str | None = None,
    props: str | None = None,
) -> WebEvent:
    """The record of one web event, the one place it is made: live (record_web_event) and from access logs
    (`prisme-lite import`). `referrers`: the referrer host as stored (referrer_host) and the document referrer."""
    referrer, document_referrer = referrers
    event: WebEvent = {
        "ts": ts,
        "site": site,
        "kind": kind,
        "name": name,
        "host": page.host,
        "path": page.path,
        "referrer": referrer,
        "visitor_id": visitor_id,
        "browser": agent.browser,
        "os": agent.os,
        "device": agent.device,
        "country": country,
        "status": status,
        "props": props,
    }
    event.update(zip(UTM_KEYS, page.utm, strict=True))
    if referrer == "direct" and document_referrer:  # a link within the host: the writer decides what it is
        event["from_path"] = normalise_path(browser_split(document_referrer).path)
    return event


def page_url_from_headers(environ: dict) -> str | None:
    return environ.get("HTTP_X_PRISME_REFERRER") or environ.get("HTTP_REFERER")


STATUS_PATTERN = f"^({PAGE_STATUS.pattern})?$"


def page_headers(kind: str) -> list[dict]:
    """The headers a web-event route reads: the page and visitor for all, the rest for its kind."""
    headers = [
        parameter("Origin", "header", "the page's origin; it must be a registered site"),
        parameter("X-Prisme-Referrer", "header", "the page URL (absolute http(s)); else Referer"),
        parameter("Referer", "header", "the page URL when X-Prisme-Referrer is absent"),
        parameter("X-Prisme-Visitor-Id", "header", "a visitor id of your own", maxLength=MAX_VISITOR_ID_LENGTH),
    ]
    if kind == "pageview":
        headers += [
            parameter("X-Prisme-Document-Referrer", "header", "where the visitor came from"),
            parameter("X-Prisme-Status", "header", "the page's HTTP status (default 200)", pattern=STATUS_PATTERN),
        ]
    if kind == "link":  # <a ping>: body PING, the page and the link in these
        headers += [parameter("Ping-From", "header", "the page"), parameter("Ping-To", "header", "the link")]
    return headers


def link_body() -> dict:
    return {
        "required": True,
        "content": {"text/plain": {"schema": {"type": "string", "description": "absolute URL, or PING"}}},
    }


STORED = ok("stored")
GIF_ANSWER = ok("the 35-byte transparent GIF", "image/gif", {"type": "string", "format": "binary"})
INGEST_REFUSALS = (400, 413, 429, 503)
NAME_PARAMETER = parameter("name", "path", "the event's name", pattern=PRINTABLE, maxLength=MAX_NAME_LENGTH)
PAGE_PARAMETER = parameter("referrer", "query", "the page URL (else the Referer header)")
LINK_QUERY = [
    parameter("url", "query", "where the link goes (absolute http(s))", required=True),
    parameter("referrer", "query", "the page of the link; its Referer must be a registered site too"),
]


@route("/api/v1/events/pageviews", "POST", doc={"post": operation(
    "web events", "a pageview", answers(STORED, *INGEST_REFUSALS), parameters=page_headers("pageview"),
)})  # fmt: skip
@api(AS_JSON, rate_limited=True)
def post_pageview(ctx: Context) -> str:
    environ = request.environ
    record_web_event(
        ctx,
        "pageview",
        page_url_from_headers(environ),
        document_referrer=environ.get("HTTP_X_PRISME_DOCUMENT_REFERRER"),
        visitor_id=environ.get("HTTP_X_PRISME_VISITOR_ID"),
        status=environ.get("HTTP_X_PRISME_STATUS"),
    )
    return ""


@route("/api/v1/events/custom/<name>", "POST", doc={"post": operation(
    "web events", "a custom event with properties", answers(STORED, *INGEST_REFUSALS, 415),
    parameters=[NAME_PARAMETER, *page_headers("custom")], body=json_request({"type": "object"}, required=False),
)})  # fmt: skip
@api(AS_JSON, rate_limited=True)
def post_custom_event(ctx: Context, name: str) -> str:
    environ = request.environ
    name = check_name(name, "custom event name")
    props = check_properties(json_body(environ, ctx.config["max_body_bytes"], typed=True))
    record_web_event(
        ctx,
        "custom",
        page_url_from_headers(environ),
        name=name,
        props=props,
        visitor_id=environ.get("HTTP_X_PRISME_VISITOR_ID"),
    )
    return ""


def post_link_event(ctx: Context, kind: str) -> str:
    """A file download or outbound link: the URL in the body, or a browser's `<a ping>` (body PING, Ping-To)."""
    environ = request.environ
    text = body_text(environ, ctx.config["max_body_bytes"]).strip()
    ping = text == "PING"
    if ping:  # <a ping>: the browser names the page and the link in headers
        page_url, target = environ.get("HTTP_PING_FROM"), environ.get("HTTP_PING_TO")
    else:
        page_url, target = page_url_from_headers(environ), text
    record_web_event(ctx, kind, page_url, target=target, visitor_id=environ.get("HTTP_X_PRISME_VISITOR_ID"), ping=ping)
    return ""


def posted_link_route(kind: str, path: str, summary: str) -> Route:
    """The script's route for one kind of link click (a download, an outbound link): POST, the URL in the body."""

    @route(path, "POST", doc={"post": operation(
        "web events", summary, answers(STORED, *INGEST_REFUSALS), parameters=page_headers("link"), body=link_body(),
    )})  # fmt: skip
    @api(AS_JSON, rate_limited=True)
    def post_link(ctx: Context) -> str:
        return post_link_event(ctx, kind)

    return post_link


post_file_download = posted_link_route("download", "/api/v1/events/file-downloads", "a file download")
post_outbound_link = posted_link_route("outbound", "/api/v1/events/outbound-links", "an outbound link")


@route("/api/v1/noscript/events/pageviews", doc={"get": operation(
    "web events", "a pageview from an <img>", answers(GIF_ANSWER, *INGEST_REFUSALS, shape=AS_PIXEL), parameters=[
        PAGE_PARAMETER,
        parameter("document-referrer", "query", "where the visitor came from"),
        parameter("visitor-id", "query", "a visitor id of your own", maxLength=MAX_VISITOR_ID_LENGTH),
        parameter("status", "query", "the page's HTTP status (default 200)", pattern=STATUS_PATTERN),
    ],
)})  # fmt: skip
@api(AS_PIXEL, rate_limited=True)
def noscript_pageview(ctx: Context) -> bytes:
    query = query_pairs(request.environ)
    record_web_event(
        ctx,
        "pageview",
        query_value(query, "referrer") or request.environ.get("HTTP_REFERER"),
        document_referrer=query_value(query, "document-referrer"),
        visitor_id=query_value(query, "visitor-id"),
        status=query_value(query, "status"),
    )
    return pixel()


@route("/api/v1/noscript/events/custom/<name>", doc={"get": operation(
    "web events", "a custom event from an <img>; properties as prop-<key>=<JSON value>",
    answers(GIF_ANSWER, *INGEST_REFUSALS, shape=AS_PIXEL), parameters=[NAME_PARAMETER, PAGE_PARAMETER],
)})  # fmt: skip
@api(AS_PIXEL, rate_limited=True)
def noscript_custom_event(ctx: Context, name: str) -> bytes:
    name = check_name(name, "custom event name")
    query = query_pairs(request.environ)
    props = {}
    for key, value in query:
        if key.startswith("prop-"):
            props[key[5:]] = parse_json(value.encode("utf-8"), f"property {key!r}")
    record_web_event(
        ctx,
        "custom",
        query_value(query, "referrer") or request.environ.get("HTTP_REFERER"),
        name=name,
        props=check_properties(props),
        visitor_id=query_value(query, "visitor-id"),
    )
    return pixel()


def noscript_link(ctx: Context, kind: str) -> Any:
    """Record a link click and redirect to it, but only for a page of a registered site (no open redirector)."""
    query = query_pairs(request.environ)
    target = query_value(query, "url") or ""
    referer = request.environ.get("HTTP_REFERER")
    referer_host = host_of(referer) if referer else None
    if not referer_host or ctx.origins.site_of(referer_host) is None:
        raise Rejected(400, "redirect refused: the request's Referer is not a page of a registered origin")
    target, _host = redirect_location(target, "url parameter")
    record_web_event(ctx, kind, query_value(query, "referrer") or referer, target=target)
    return redirect_target(target)


def follow_dropped_link() -> str:
    """A click that is not counted (a bot's) still goes where its link goes: the url, checked before any drop."""
    location, _host = redirect_location(query_value(query_pairs(request.environ), "url"), "url parameter")
    return redirect_target(location)


# A link that cannot be followed safely is not followed at all: its refusal is JSON, never a redirect.
AS_REDIRECT = Shape(follow_dropped_link, AS_JSON.refused, AS_JSON.documented)


def followed_link_route(kind: str, path: str, summary: str) -> Route:
    """The <a href> route for one kind of link click: counted, then redirected to its `url`."""

    @route(path, doc={"get": operation(
        "web events", summary, answers(REDIRECT_ANSWER, *INGEST_REFUSALS), parameters=LINK_QUERY,
    )})  # fmt: skip
    @api(AS_REDIRECT, rate_limited=True)
    def follow_link(ctx: Context) -> Any:
        return noscript_link(ctx, kind)

    return follow_link


noscript_outbound_link = followed_link_route(
    "outbound", "/api/v1/noscript/events/outbound-links", "count an outbound link, then follow it"
)
noscript_file_download = followed_link_route(
    "download", "/api/v1/noscript/events/file-downloads", "count a download, then follow it"
)


class ForgetSaltedVisitors:
    """Writer maintenance: a day-salted visitor id cannot come back after its day, so its daily_visitors row is not
    needed then (the day keeps its count). Yesterday's stay, for events still in the journal across midnight."""

    def __init__(self) -> None:
        self.done_before: int | None = None

    def reset(self) -> None:
        self.done_before = None  # its delete was rolled back

    def __call__(self, conn: sqlite3.Connection, now: int) -> None:
        before = now // DAY_MS - 1
        if before != self.done_before:  # once a day
            conn.execute("DELETE FROM daily_visitors WHERE salted = 1 AND day < ?", (before,))
            self.done_before = before


def session_sent(kind: str) -> tuple[Callable, Callable]:
    """A filter on the visits that sent an event of `kind` with one of these names, for (events, sessions): a
    session that sent it in the window; every event of such a session, and those events themselves (one sent
    without a session too)."""

    def sent(q: StatsQuery, names: list[str]) -> tuple[str, list]:
        sessions = (
            f"{q.source.row_ids('session_id', 'events')} WHERE ts >= ? AND kind = ? AND name IN ({placeholders(names)})"
        )
        return sessions, [q.start, kind, *names]

    def of_events(q: StatsQuery, names: list[str]) -> tuple[str, list]:
        sessions, params = sent(q, names)
        condition = (
            f"({q.source.row_id('session_id', 'e')} IN ({sessions})"
            f" OR (e.kind = ? AND e.name IN ({placeholders(names)})))"
        )
        return condition, [*params, kind, *names]

    def of_sessions(q: StatsQuery, names: list[str]) -> tuple[str, list]:
        sessions, params = sent(q, names)
        return f"{q.source.row_id('id', 's')} IN ({sessions})", params

    return of_events, of_sessions


def every_hour(start: int, end: int) -> tuple[str, list]:
    """A subquery of the hours (unix ms // HOUR_MS) from the one holding `start` to the one holding `end`."""
    return (
        "(WITH RECURSIVE hours(h) AS (SELECT ? UNION ALL SELECT h + 1 FROM hours WHERE h < ?) SELECT h FROM hours)",
        [start // HOUR_MS, end // HOUR_MS],
    )


class Indexed:
    """A filter on `column` that an index of its own finds (schema.sql: sessions_referrer, …), for rows that a value
    picks few of. `left_out`: the value a partial index leaves out (the one most rows have), filtered as a plain
    column. A filter object of window_where: it `drives` the query (its index, not the window's, finds the rows)
    where the source has the index (SQLite's file, not ClickHouse)."""

    def __init__(self, column: str, left_out: str | None = None):
        self.column, self.left_out = column, left_out

    def drives(self, q: StatsQuery, values: list[str]) -> bool:
        return q.source.filter_indexes and self.left_out not in values

    def __call__(self, q: StatsQuery, values: list[str]) -> tuple[str, list]:
        condition = f"{self.column} IN ({placeholders(values)})"
        if self.left_out and self.drives(q, values):
            condition += f" AND {self.column} != '{self.left_out}'"  # as the index's WHERE says it
        return condition, list(values)


class ByHour(Indexed):
    """A filter on `column` that an index grouped by hour finds (schema.sql: events_hour_path, …): one seek per hour
    of the window for each value, instead of every row of the window."""

    def __init__(self, column: str, time: str, left_out: str | None = None):
        super().__init__(column, left_out)
        self.time = time

    def __call__(self, q: StatsQuery, values: list[str]) -> tuple[str, list]:
        condition, params = super().__call__(q, values)
        if self.drives(q, values):
            hours, hour_params = every_hour(q.start, q.end - 1)
            condition += f" AND {self.time} / {HOUR_MS} IN {hours}"
            params += hour_params
        return condition, params


class VisitIndexed(Indexed):
    """A filter on what an event's visit came from (its session's `column`): the sessions that an index finds, then
    their events by events_session. A session has events in the window when it started before its end (or up to
    SESSION_LOOKAHEAD after: the events it took from just before its first pageview) and was last seen after its
    start."""

    def __call__(self, q: StatsQuery, values: list[str]) -> tuple[str, list]:
        if not self.drives(q, values):
            return visit_came_from(self.column)[0](q, values)
        condition, params = super().__call__(q, values)
        sessions = f"SELECT id FROM sessions WHERE {condition} AND started_at < ? AND last_seen >= ?"
        return f"e.session_id IN ({sessions})", [*params, q.end + SESSION_LOOKAHEAD, q.start]


def visit_came_from(column: str) -> tuple[Callable, str]:
    """A filter on what a visit came from (its session's first referrer or campaign), or where it entered or left,
    for (events, sessions)."""

    def of_events(q: StatsQuery, values: list[str]) -> tuple[str, list]:
        sessions = f"{q.source.row_ids('id', 'sessions')} WHERE {column} IN"
        return f"{q.source.row_id('session_id', 'e')} IN ({sessions} ({placeholders(values)}))", values

    return of_events, f"s.{column}"


# Filters by name: the column of an event row, and of a session row (None: see SESSIONS_TABLE), or functions (q,
# values) -> (condition, params). `domain` is the page's host, not its site: the site *.example.com has pages on
# a.example.com and b.example.com (the `site` parameter). `referrer` and `utm-*` are each event's own (a click to
# another page of the site is "direct"); `visit-*` are the visit's, what its first pageview came from.
FILTERS = {
    "domain": ("e.host", "s.host"),
    "path": (ByHour("e.path", "e.ts"), None),
    "entry-path": (VisitIndexed("entry_path"), Indexed("s.entry_path")),
    "exit-path": visit_came_from("exit_path"),
    "referrer": (ByHour("e.referrer", "e.ts", "direct"), Indexed("s.referrer", "direct")),
    "os": ("e.os", "s.os"),
    "browser": ("e.browser", "s.browser"),
    "country": ("e.country", "s.country"),
    "utm-source": ("e.utm_source", "s.utm_source"),
    "utm-medium": ("e.utm_medium", "s.utm_medium"),
    "utm-campaign": ("e.utm_campaign", "s.utm_campaign"),
    "utm-term": ("e.utm_term", "s.utm_term"),
    "utm-content": ("e.utm_content", "s.utm_content"),
    "visit-referrer": (VisitIndexed("referrer", "direct"), Indexed("s.referrer", "direct")),
    "visit-utm-source": visit_came_from("utm_source"),
    "visit-utm-medium": visit_came_from("utm_medium"),
    "visit-utm-campaign": visit_came_from("utm_campaign"),
    "event": session_sent("custom"),  # visits that sent this custom event
    "outbound-link": session_sent("outbound"),
    "file-download": session_sent("download"),
}


class SessionSawPath(ByHour):
    """`path` of a session: it viewed one of these pages (found by hour from the window's start to now: a session
    started in the window may view pages after it, and no row is stored later than its arrival)."""

    def __init__(self) -> None:
        super().__init__("path", "ts")

    def __call__(self, q: StatsQuery, paths: list[str]) -> tuple[str, list]:
        pageviews, params = super().__call__(replace(q, end=max(q.end, q.now, now_ms()) + 1), paths)
        return (
            f"{q.source.row_id('id', 's')} IN ({q.source.row_ids('session_id', 'events')}"
            f" WHERE ts >= ? AND kind = 'pageview' AND {pageviews})",
            [q.start, *params],
        )


session_saw_path = SessionSawPath()


EVENTS_TABLE = Table("events e", "e.ts", "e.site", {name: columns[0] for name, columns in FILTERS.items()})
# Sessions started in the window; `path` means the session saw that page.
SESSIONS_TABLE = Table(
    "sessions s", "s.started_at", "s.site", {name: columns[1] or session_saw_path for name, columns in FILTERS.items()}
)


def event_where(q: StatsQuery, kinds: tuple[str, ...] | None = ("pageview",)) -> tuple[str, list]:
    """WHERE for event-based metrics (on `events e`): (conditions, parameters)."""
    where, params = window_where(q, EVENTS_TABLE)
    if kinds:
        where += f" AND e.kind IN ({placeholders(kinds)})"
        params += kinds
    return where, params


def events_scope(kinds: tuple[str, ...] | None = ("pageview",)) -> Callable:
    """What an event metric reads: events of `kinds` (None: all) in the window, with the query's filters."""

    def scope(q: StatsQuery) -> tuple[str, str, list]:
        return (EVENTS_TABLE.rows(q), *event_where(q, kinds))

    return scope


def sessions_scope(q: StatsQuery) -> tuple[str, str, list]:
    return (SESSIONS_TABLE.rows(q), *window_where(q, SESSIONS_TABLE))


# Slices (schema.sql, slice_counts): the daily counts per value of one filter, counted by the writer's maintenance
# once a day is over, so that a view filtered by that value reads its whole days from them. A filter is sliced when
# its values are few (a country, a browser, a campaign): a page or a referrer picks few rows, which an index finds.
# By filter name: what it filters on, for an event `e` (a column of the event, or `v.` of its session, which the
# join brings), and for a session (its column).
VISIT_JOIN = " JOIN sessions v ON v.id = e.session_id"
SLICED_FILTERS = {
    **{name: (columns[0], "", columns[1].removeprefix("s.")) for name, columns in FILTERS.items()
       if name in ("domain", "country", "browser", "os", "utm-source", "utm-medium", "utm-campaign")},
    **{f"visit-utm-{part}": (f"v.utm_{part}", VISIT_JOIN, f"utm_{part}") for part in ("source", "medium", "campaign")},
    "visit-referrer": ("v.referrer", VISIT_JOIN, "referrer"),  # only `direct`: other referrers are few rows each
}  # fmt: skip
# The one value a filter's slices count, where its other values are found by an index (VisitIndexed).
SLICED_VALUE = {"visit-referrer": "direct"}
WILDCARD = "*."  # a site of every subdomain: the only kind with more than one host, so the only one `domain` slices


def sliced_filters(site: str) -> list[str]:
    """The filters whose slices a site has."""
    return [name for name in SLICED_FILTERS if name != "domain" or site.startswith(WILDCARD)]


def sealed_filters(site: str) -> list[str]:
    """What SealDays counts a day of a site for: its edges (SITE_EDGES), and its sliced filters."""
    return [SITE_EDGES, *sliced_filters(site)]


SEAL_DELAY_MS = 2 * HOUR_MS  # a day is counted this long after it ends (or after its rows last changed)
PAGEVIEW_DIMS = ("pageviews", "sessions", "custom", "outbound", "download")  # a day has rows when one of these counts


# `check`: the slices of a filter whose column is never NULL partition the day's rows, so that, visitors aside (a
# visitor may be seen with two values), each dim's counts of all its values add up to the day's. Totals by dim and
# day, not by value: one pass in the primary key's order (2.6 s at 1 M pageviews, against 11.5 s by value). What a
# slice holds value by value is tested against raw rows (tests/test_slices.py).
PARTITIONS = ", ".join(repr(name) for name in ("domain", "country", "browser", "os"))
# slice_counts.dim: the daily counts' dim by its place here (a byte, not its name: slices hold millions of rows).
# Only ever appended to.
SLICE_DIMS = (
    "pageviews", "visitors", *ROLLUP_EVENT_DIMS, "custom", "outbound", "download", "sessions", "bounces", "duration",
    "entry_path", "exit_path", *VISIT_DIMS,
)  # fmt: skip
SLICE_DIM = {name: code for code, name in enumerate(SLICE_DIMS)}
SLICE_DIM_NAME = f"CASE t.dim {' '.join(f'WHEN {code} THEN {name!r}' for code, name in enumerate(SLICE_DIMS))} END"
SLICED_TOTALS = (
    f"SELECT k.site, k.fdim, {SLICE_DIM_NAME} AS dim, t.day, sum(t.n) FROM (SELECT slice, dim, day, sum(n) AS n"
    f" FROM slice_counts WHERE dim != {SLICE_DIM['visitors']} GROUP BY slice, dim, day) AS t"
    " JOIN slice_keys k ON k.id = t.slice"
    " JOIN slice_days d ON d.site = k.site AND d.day = t.day AND d.fdim = k.fdim AND d.touched_at IS NULL"
    f" WHERE k.fdim IN ({PARTITIONS}) GROUP BY 1, 2, 3, 4 HAVING sum(t.n) != 0"
)
DAY_TOTALS = (
    "SELECT c.site, d.fdim, c.dim, c.day, sum(c.n) FROM daily_counts c JOIN slice_days d"
    " ON d.site = c.site AND d.day = c.day AND d.touched_at IS NULL"
    f" WHERE d.fdim IN ({PARTITIONS}) AND c.dim != 'visitors' GROUP BY 1, 2, 3, 4 HAVING sum(c.n) != 0"
)
SLICES_ADD_UP = (
    "SELECT fdim || ' ' || dim || ' on day ' || day FROM"
    f" (SELECT * FROM ({SLICED_TOTALS}) EXCEPT SELECT * FROM ({DAY_TOTALS})"
    f" UNION ALL SELECT * FROM (SELECT * FROM ({DAY_TOTALS}) EXCEPT SELECT * FROM ({SLICED_TOTALS}))) LIMIT 5"
)


def sliced_values(fdim: str) -> str:
    """SQL that follows a column to say which of its values the slices of `fdim` count."""
    return f"= '{SLICED_VALUE[fdim]}'" if fdim in SLICED_VALUE else "IS NOT NULL"


def slice_event_counts(fdim: str, rows: str, lead: tuple[str, ...] = ()) -> list[str]:
    """SELECT [lead…,] f, d, v, n: the counts of events (visitors aside) per value f of the filter `fdim`, as
    rollup_recount counts them, over `rows` (FROM events e … WHERE …, with the filter's value not NULL); a statement
    per dim or two. `lead`: columns selected and grouped by before f."""
    e = SLICED_FILTERS[fdim][0]
    first = ", ".join((*lead, e))
    by = ", ".join(str(n) for n in range(1, len(lead) + 2))
    return [
        f"SELECT {first}, 'pageviews', '', count(*) {rows} AND e.kind = 'pageview' GROUP BY {by}",
        *(
            f"SELECT {first}, '{column}', e.{column}, count(*) {rows} AND e.kind = 'pageview'"
            f" AND e.{column} IS NOT NULL GROUP BY {by}, {len(lead) + 3}"
            for column in ROLLUP_EVENT_DIMS
        ),
        f"SELECT {first}, e.kind, e.name, count(*) {rows} AND e.kind != 'pageview' AND e.name IS NOT NULL"
        f" GROUP BY {by}, {len(lead) + 2}, {len(lead) + 3}",
    ]


def slice_recount(fdim: str) -> list[str]:
    """SELECT f, d, v, n: the daily counts of one site's day (parameters: site, start, end, for each FROM) per value f
    of the filter `fdim`, as rollup_recount counts them for the whole site; a statement per dim or three, each a step
    of SealDays."""
    e, join, s = SLICED_FILTERS[fdim]
    only = sliced_values(fdim)
    events = f"FROM events e{join} WHERE e.site = ? AND e.ts >= ? AND e.ts < ? AND {e} {only}"
    sessions = f"FROM sessions WHERE site = ? AND started_at >= ? AND started_at < ? AND {s} {only}"
    pageviews, *others = slice_event_counts(fdim, events)
    return [
        pageviews,
        f"SELECT {e}, 'visitors', '', count(DISTINCT e.visitor_id) {events} AND e.kind = 'pageview'"
        f" AND {SALTED_ID.format('e.visitor_id')} GROUP BY 1",
        *others,
        f"SELECT {s}, 'sessions', '', count(*) {sessions} GROUP BY 1 UNION ALL"
        f" SELECT {s}, 'bounces', '', sum(pageviews = 1) {sessions} GROUP BY 1 UNION ALL"
        f" SELECT {s}, 'duration', '', sum(last_seen - started_at) {sessions} GROUP BY 1",
        f"SELECT {s}, 'entry_path', entry_path, count(*) {sessions} GROUP BY 1, 3",
        f"SELECT {s}, 'exit_path', exit_path, count(*) {sessions} GROUP BY 1, 3",
        *(
            f"SELECT {s}, '{dim}', {column}, count(*) {sessions} AND {column} IS NOT NULL GROUP BY 1, 3"
            for dim, column in VISIT_DIMS.items()
        ),
    ]


SLICE_KEY = "SELECT id FROM slice_keys WHERE site = ? AND fdim = ? AND fvalue = ?"
COUNTING = -1  # slice_days.touched_at of a day SealDays is counting: not read yet, and touch_days still marks it


def slice_table(q: StatsQuery, sliced: tuple[str, str], prefix_day: int | None = None) -> tuple[str, list]:
    """The slice_counts of q's filter value as a table like daily_counts (site, dim, day, value, n), and its
    parameters: SQLite flattens it, so that the primary key is searched by slice, dim and day. With `prefix_day`:
    its prefix (slice_prefix_counts), as the counts of that day."""
    if prefix_day is not None:
        sql = f"(SELECT ? AS site, dim, ? AS day, value, n FROM slice_prefix_counts WHERE slice = ({SLICE_KEY}))"
        return sql, [q.site, prefix_day, q.site, *sliced]
    sql = f"(SELECT ? AS site, dim, day, value, n FROM slice_counts WHERE slice = ({SLICE_KEY}))"
    return sql, [q.site, q.site, *sliced]


def slice_ids(conn: sqlite3.Connection, site: str, fdim: str, values: set[str], ids: dict[str, int]) -> dict[str, int]:
    """`ids` (fvalue → slice_keys id of one site's filter, as far as known) with these values in it, made where
    missing."""
    if not values <= ids.keys():
        conn.executemany("INSERT OR IGNORE INTO slice_keys (site, fdim, fvalue) VALUES (?, ?, ?)",
                         [(site, fdim, value) for value in values - ids.keys()])  # fmt: skip
        ids.update(conn.execute("SELECT fvalue, id FROM slice_keys WHERE site = ? AND fdim = ?", (site, fdim)))
    return ids


SLICE_DAY_TABLES = ("slice_counts", "slice_visitors", "slice_edges")  # what a (slice, day) has counted


def seal_steps(conn: sqlite3.Connection, site: str, day: int, fdim: str, recount: bool) -> Iterator[None]:
    """Count one site's day into the slices of `fdim` (again, when `recount`: its rows changed since), a statement
    at a time: each step runs in the writer transaction of the call that takes it, so that counting a day of a
    large database stalls the writer a fraction of a second at a time. The day is marked COUNTING first; a change to
    its rows while it is counted leaves it touched (touch_days), and it is counted again later. SITE_EDGES has its
    edges alone: the site's own counts are the daily counts."""
    if recount:  # the primary key leads with the slice, then the dim: a day's rows are found slice by slice
        forget_slice_day(conn, site, day, fdim, SLICE_DAY_TABLES)
    conn.execute("INSERT OR REPLACE INTO slice_days VALUES (?, ?, ?, ?)", (site, day, fdim, COUNTING))
    conn.execute("DELETE FROM edge_days WHERE site = ? AND day = ? AND fdim = ?", (site, day, fdim))
    ids: dict[str, int] = {}
    if fdim != SITE_EDGES:
        yield from count_slices(conn, site, day, fdim, ids)
    yield
    count_edges(conn, site, day, fdim, ids)
    conn.execute(
        "UPDATE slice_days SET touched_at = NULL WHERE site = ? AND day = ? AND fdim = ? AND touched_at = ?",
        (site, day, fdim, COUNTING),
    )


def forget_slice_day(conn: sqlite3.Connection, site: str, day: int, fdim: str, tables: Iterable[str]) -> None:
    for table in tables:
        conn.execute(
            f"DELETE FROM {table} WHERE slice IN (SELECT id FROM slice_keys WHERE site = ? AND fdim = ?) AND day = ?",
            (site, fdim, day),
        )


def edge_steps(conn: sqlite3.Connection, site: str, day: int, fdim: str, _recount: bool) -> Iterator[None]:
    """Add its edges to a day whose slices were counted without them (before schema version 13), in one step."""
    yield
    if conn.execute("SELECT 1 FROM slice_days WHERE site = ? AND day = ? AND fdim = ? AND touched_at IS NULL",
                    (site, day, fdim)).fetchone():  # fmt: skip
        forget_slice_day(conn, site, day, fdim, ("slice_edges",))
        count_edges(conn, site, day, fdim, {})


def count_slices(conn: sqlite3.Connection, site: str, day: int, fdim: str, ids: dict[str, int]) -> Iterator[None]:
    """The steps of seal_steps that count a day's slice_counts and slice_visitors."""
    window = (site, day * DAY_MS, (day + 1) * DAY_MS)
    for sql in slice_recount(fdim):
        yield
        counts = [row for row in conn.execute(sql, window * (sql.count("?") // 3)).fetchall() if row[3]]
        slices = slice_ids(conn, site, fdim, {row[0] for row in counts}, ids)
        conn.executemany("INSERT INTO slice_counts VALUES (?, ?, ?, ?, ?)",
                         [(slices[f], SLICE_DIM[d], day, v, n) for f, d, v, n in counts])  # fmt: skip
    yield
    e, join, _s = SLICED_FILTERS[fdim]
    only = sliced_values(fdim)
    visitors = conn.execute(
        f"SELECT DISTINCT {e}, e.visitor_id FROM events e{join} WHERE e.site = ? AND e.ts >= ? AND e.ts < ?"
        f" AND {e} {only} AND e.kind = 'pageview' AND NOT ({SALTED_ID.format('e.visitor_id')})",
        window,
    ).fetchall()
    slices = slice_ids(conn, site, fdim, {row[0] for row in visitors}, ids)
    conn.executemany("INSERT INTO slice_visitors VALUES (?, ?, ?)", [(slices[f], day, v) for f, v in visitors])


# Edges (schema.sql, slice_edges): a counted day's visitors by their first and last pageview, for a window's partial
# past day. SITE_EDGES: the slice_days.fdim and slice_keys.fdim of the whole site's (no filter, value '').
SITE_EDGES = ""


def edge_rows(fdim: str) -> str:
    """SELECT f, first, last, id: each visitor's first and last pageview of one site's day in ms into it
    (parameters: the day's start twice, site, start, end), per value f of `fdim`; id is the visitor's when a client
    gave it, NULL for a day-salted one."""
    e, join, _s = SLICED_FILTERS.get(fdim, ("''", "", ""))
    only = sliced_values(fdim) if fdim != SITE_EDGES else "IS NOT NULL"
    return (
        f"SELECT {e}, min(e.ts) - ?, max(e.ts) - ?, iif({SALTED_ID.format('e.visitor_id')}, NULL, e.visitor_id)"
        f" FROM events e{join} WHERE e.site = ? AND e.ts >= ? AND e.ts < ? AND {e} {only} AND e.kind = 'pageview'"
        f" GROUP BY {e}, e.visitor_id"
    )


def edge_times(times: Iterable[int]) -> bytes:
    """slice_edges' firsts or lasts: the times sorted, 4-byte little-endian, compressed."""
    packed = array("I", sorted(times))
    if sys.byteorder == "big":
        packed.byteswap()
    return zlib.compress(packed.tobytes())


def edge_array(blob: bytes) -> array:
    times = array("I")
    times.frombytes(zlib.decompress(blob))
    if sys.byteorder == "big":
        times.byteswap()
    return times


def edge_holds(blob: bytes | None, n: int, total: int) -> bool:
    """`check`'s SQL function: whether an edge's times are n times of a day, in order, adding up to `total`."""
    if blob is None:  # no row: checked by its count
        return True
    times = edge_array(blob)
    in_order = all(a <= b for a, b in itertools.pairwise(times)) and (not times or times[-1] < DAY_MS)
    return in_order and len(times) == n and sum(times) == total


# `check`: every counted (slice, day) holds as many visitors in its edges as its counts have (daily_counts for the
# site's, slice_counts for a filter's), and its times are in order and add up to the sums kept with them; the site's
# are recounted from the raw rows (a filter's would be one pass over every event per filter).
EDGES_HOLD_VISITORS = (
    "SELECT k.fdim || ' ' || k.fvalue || ' on day ' || d.day FROM slice_days d"
    " JOIN edge_days x ON x.site = d.site AND x.day = d.day AND x.fdim = d.fdim"
    " JOIN slice_keys k ON k.site = d.site AND k.fdim = d.fdim"
    " LEFT JOIN slice_edges e ON e.slice = k.id AND e.day = d.day"
    " WHERE d.touched_at IS NULL AND (coalesce(e.n, 0) != coalesce(CASE k.fdim"
    f" WHEN '{SITE_EDGES}' THEN (SELECT n FROM daily_counts c WHERE c.site = d.site AND c.dim = 'visitors'"
    " AND c.day = d.day AND c.value = '') ELSE (SELECT n FROM slice_counts c WHERE c.slice = k.id"
    f" AND c.dim = {SLICE_DIM['visitors']} AND c.day = d.day AND c.value = '') END, 0)"
    " OR NOT edge_holds(e.firsts, e.n, e.first_sum) OR NOT edge_holds(e.lasts, e.n, e.last_sum)) LIMIT 5"
)
SITE_EDGES_RECOUNTED = (
    "SELECT 'day ' || r.day FROM (SELECT site, day, count(*) AS n, sum(f) AS fs, sum(l) AS ls FROM"
    f" (SELECT site, ts / {DAY_MS} AS day, min(ts) % {DAY_MS} AS f, max(ts) % {DAY_MS} AS l FROM events"
    f" WHERE kind = 'pageview' AND {SALTED_ID.format('visitor_id')} GROUP BY site, day, visitor_id)"
    " GROUP BY site, day) r"
    f" JOIN slice_days d ON d.site = r.site AND d.day = r.day AND d.fdim = '{SITE_EDGES}' AND d.touched_at IS NULL"
    " JOIN edge_days x ON x.site = d.site AND x.day = d.day AND x.fdim = d.fdim"
    f" LEFT JOIN slice_keys k ON k.site = r.site AND k.fdim = '{SITE_EDGES}' AND k.fvalue = ''"
    " LEFT JOIN slice_edges e ON e.slice = k.id AND e.day = r.day"
    " WHERE e.n IS NOT r.n OR e.first_sum IS NOT r.fs OR e.last_sum IS NOT r.ls LIMIT 5"
)


def count_edges(conn: sqlite3.Connection, site: str, day: int, fdim: str, ids: dict[str, int]) -> None:
    """Count one site's day into the edges of `fdim`'s slices (`ids`: slice_keys ids known so far)."""
    start = day * DAY_MS
    found: dict[str, tuple[array, array, list]] = {}
    for value, first, last, visitor in conn.execute(edge_rows(fdim), (start, start, site, start, start + DAY_MS)):
        firsts, lasts, others = found.get(value) or found.setdefault(value, (array("I"), array("I"), []))
        if visitor is None:
            firsts.append(first)
            lasts.append(last)
        else:
            others.append([visitor, first, last])
    slices = slice_ids(conn, site, fdim, set(found), ids)
    conn.execute("INSERT OR IGNORE INTO edge_days VALUES (?, ?, ?)", (site, day, fdim))
    conn.executemany(
        "INSERT INTO slice_edges VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(slices[value], day, len(firsts), edge_times(firsts), edge_times(lasts), sum(firsts), sum(lasts),
          json.dumps(others, separators=(",", ":"))) for value, (firsts, lasts, others) in found.items()],
    )  # fmt: skip


def touch_days(conn: sqlite3.Connection, days: Iterable[tuple[str, int]]) -> None:
    """The rows of these (site, day) changed: their slices, counted or being counted, are out of date until SealDays
    counts them again. A probe per distinct day of a batch: nearly always today's, which no slice has counted yet."""
    now = now_ms()
    conn.executemany(
        "UPDATE slice_days SET touched_at = ? WHERE site = ? AND day = ? AND (touched_at IS NULL OR touched_at < 0)",
        [(now, site, day) for site, day in set(days)],
    )


class SealDays:
    """Writer maintenance: count the slices of every day that is over (SEAL_DELAY_MS after it ends), newest first,
    a step of seal_steps a transaction; count again a day whose rows changed, once they have been left alone for
    SEAL_DELAY_MS; forget the slices of days that no longer have rows (pruned)."""

    def __init__(self) -> None:
        self.todo: list[tuple[Callable, str, int, str, bool]] = []  # (steps, site, day, fdim, recount), next last
        self.steps: Iterator[None] | None = None  # of the one being counted
        self.listed_at: int | None = None
        self.sealed = 0  # (site, day, filter) counted

    def reset(self) -> None:
        """The transaction was rolled back: what the steps did with it. Days left COUNTING are counted again."""
        self.todo, self.steps, self.listed_at = [], None, None

    def __call__(self, conn: sqlite3.Connection, now: int) -> bool:
        if self.steps is None:
            if not self.todo and (self.listed_at is None or now - self.listed_at >= MAINTENANCE_INTERVAL * 1000):
                self.todo, self.listed_at = self._list(conn, now), now
            if not self.todo:
                return False
            steps, *unit = self.todo.pop()
            self.steps = steps(conn, *unit)
        if next(self.steps, False) is False:  # its last step taken
            self.steps = None
            self.sealed += 1
        return self.steps is not None or bool(self.todo)

    @staticmethod
    def _list(conn: sqlite3.Connection, now: int) -> list[tuple[Callable, str, int, str, bool]]:
        over = (now - SEAL_DELAY_MS) // DAY_MS  # days before this one are over
        sealed: dict[tuple[str, int, str], tuple[int | None, int]] = {
            (site, day, fdim): (touched, edges) for site, day, fdim, touched, edges in conn.execute(
                "SELECT d.*, x.day IS NOT NULL FROM slice_days d LEFT JOIN edge_days x USING (site, day, fdim)")
        }  # fmt: skip
        todo = []
        for (site,) in conn.execute(ALL_SITES).fetchall():
            firsts = [conn.execute("SELECT min(day) FROM daily_counts WHERE site = ? AND dim = ?", (site, dim))
                      .fetchone()[0] for dim in PAGEVIEW_DIMS]  # fmt: skip
            first = min((day for day in firsts if day is not None), default=over)
            if any(key[0] == site and key[1] < first for key in sealed):  # what pruning left of older days
                for table in SLICE_DAY_TABLES:
                    conn.execute(
                        f"DELETE FROM {table} WHERE slice IN (SELECT id FROM slice_keys WHERE site = ?) AND day < ?",
                        (site, first),
                    )
                for table in ("slice_days", "edge_days"):
                    conn.execute(f"DELETE FROM {table} WHERE site = ? AND day < ?", (site, first))
            for day in range(first, over):
                for fdim in sealed_filters(site):
                    key = (site, day, fdim)
                    touched, edges = sealed.get(key, (None, None))
                    if edges is None:
                        todo.append((seal_steps, *key, False))
                    elif touched is not None and now - touched >= SEAL_DELAY_MS:  # touched, or COUNTING
                        todo.append((seal_steps, *key, True))
                    elif touched is None and not edges:
                        todo.append((edge_steps, *key, False))
        return todo  # oldest first: popped from the end


def run_to_the_end(task: Callable[[sqlite3.Connection, int], bool], conn: sqlite3.Connection, now: int) -> None:
    """Take every step of a writer maintenance task at once (bench, tests), each in a transaction of its own as the
    writer does; `conn` is in autocommit mode (connect())."""
    more = True
    while more:
        conn.execute("BEGIN IMMEDIATE")
        more = task(conn, now)
        conn.execute("COMMIT")


def seal_days(conn: sqlite3.Connection, now: int) -> int:
    """Count every slice SealDays would count by `now`, at once: how many (site, day, filter)."""
    sealer = SealDays()
    run_to_the_end(sealer, conn, now)
    return sealer.sealed


# Prefixes (schema.sql, slice_prefixes): today's slices up to the last whole hour, for the filters on an event's own
# column, so that a filtered view reads today's raw rows from that hour on only. Counts of events alone: a visitor
# id may change (a login) and a session goes on, so visitors and sessions are read raw as before.
PREFIX_FILTERS = tuple(name for name, (_e, join, _s) in SLICED_FILTERS.items() if not join and name not in SLICED_VALUE)
PREFIX_DIMS = frozenset(("pageviews", *ROLLUP_EVENT_DIMS, "custom", "outbound", "download"))
PREFIX_DELAY_MS = 5 * MINUTE_MS  # an hour is added this long after it ends: lines acknowledged in it are stored by then


# `check`: each complete prefix against a recount of the events it counts, (site, filter, value, dim, value, n).
PREFIX_RECOUNT = " UNION ALL ".join(
    sql
    for fdim in PREFIX_FILTERS
    for sql in slice_event_counts(
        fdim,
        "FROM slice_prefixes p JOIN events e ON e.site = p.site AND e.ts >= p.day * 86400000 AND e.ts < p.until"
        f" WHERE p.fdim = '{fdim}' AND p.complete = 1 AND {SLICED_FILTERS[fdim][0]} IS NOT NULL",
        ("p.site", "p.fdim"),
    )
)
PREFIX_STORED = (
    f"SELECT k.site, k.fdim, k.fvalue, {SLICE_DIM_NAME.replace('t.dim', 'c.dim')}, c.value, c.n"
    " FROM slice_prefix_counts c JOIN slice_keys k ON k.id = c.slice"
    " JOIN slice_prefixes p ON p.site = k.site AND p.fdim = k.fdim AND p.complete = 1 WHERE c.n != 0"
)
PREFIXES_RECOUNTED = (
    f"WITH stored (site, fdim, fvalue, dim, value, n) AS ({PREFIX_STORED}),"
    f" recount (site, fdim, fvalue, dim, value, n) AS ({PREFIX_RECOUNT})"
    " SELECT fdim || ' ' || fvalue || ' ' || dim || ' ' || value FROM (SELECT * FROM stored EXCEPT SELECT * FROM"
    " recount UNION ALL SELECT * FROM (SELECT * FROM recount WHERE n != 0 EXCEPT SELECT * FROM stored)) LIMIT 5"
)


def prefix_counts(fdim: str) -> list[str]:
    """SELECT f, d, v, n of one site's events in [start, end) (parameters: site, start, end), by PrefixSlices."""
    rows = f"FROM events e WHERE e.site = ? AND e.ts >= ? AND e.ts < ? AND {SLICED_FILTERS[fdim][0]} IS NOT NULL"
    return slice_event_counts(fdim, rows)


def forget_prefixes(conn: sqlite3.Connection, events: list[WebEvent]) -> None:
    """Events stored (the one place they are: WebEventStore) inside a prefix of their site delete it, in the same
    transaction: one statement a batch, by each site's earliest and latest event (a batch with rows on both sides of
    a prefix and none in it deletes it too; it is counted again). Deleted events do it by a trigger (schema.sql)."""
    spans: dict[str, list[int]] = {}
    for event in events:
        span = spans.setdefault(event["site"], [event["ts"], event["ts"]])
        span[0], span[1] = min(span[0], event["ts"]), max(span[1], event["ts"])
    if spans:
        conn.execute(
            "DELETE FROM slice_prefixes WHERE "
            + " OR ".join(["(site = ? AND until > ? AND day * 86400000 <= ?)"] * len(spans)),
            [value for site, (first, last) in spans.items() for value in (site, first, last)],
        )


class PrefixSlices:
    """Writer maintenance: keep each site's prefixes of today (PREFIX_FILTERS) up to the last whole hour that ended
    PREFIX_DELAY_MS ago. A prefix that holds today goes on by the hours since its end, in one transaction; one that
    does not (a new day, a first start, a late row's trigger deleted it) is counted from the start of the day again,
    a statement a transaction (complete = 0 meanwhile, and a row stored before `until` still deletes it)."""

    def __init__(self) -> None:
        self.steps: Iterator[None] | None = None
        self.checked_at: int | None = None

    def reset(self) -> None:
        self.steps, self.checked_at = None, None

    def __call__(self, conn: sqlite3.Connection, now: int) -> bool:
        if self.steps is None:
            if self.checked_at is not None and now - self.checked_at < MAINTENANCE_INTERVAL * 1000:
                return False
            self.checked_at = now
            self.steps = self._steps(conn, now)
        if next(self.steps, False) is False:
            self.steps = None
            return False
        return True

    @staticmethod
    def _steps(conn: sqlite3.Connection, now: int) -> Iterator[None]:
        until = (now - PREFIX_DELAY_MS) // HOUR_MS * HOUR_MS
        day = until // DAY_MS
        if until == day * DAY_MS:  # no hour of today is over yet: yesterday's prefix serves until it is
            return
        kept = {(site, fdim): (d, u, complete) for site, fdim, d, u, complete in conn.execute(
            "SELECT site, fdim, day, until, complete FROM slice_prefixes")}  # fmt: skip
        for (site,) in conn.execute(ALL_SITES).fetchall():
            for fdim in (name for name in PREFIX_FILTERS if name in sliced_filters(site)):
                d, u, complete = kept.get((site, fdim), (None, None, 0))
                if d == day and complete and u >= until:
                    continue
                if d == day and complete:  # the hours since it ended, added in this transaction
                    add_to_prefix(conn, site, fdim, u, until)
                    conn.execute("UPDATE slice_prefixes SET until = ? WHERE site = ? AND fdim = ?", (until, site, fdim))
                else:
                    yield from count_prefix(conn, site, fdim, day, until)
                yield


def add_to_prefix(conn: sqlite3.Connection, site: str, fdim: str, start: int, end: int,
                  statements: list[str] | None = None) -> None:  # fmt: skip
    """Add the counts of one site's events in [start, end) to its prefix of `fdim` (`statements` of
    prefix_counts(fdim), all by default)."""
    ids: dict[str, int] = {}
    for sql in statements if statements is not None else prefix_counts(fdim):
        counts = [row for row in conn.execute(sql, (site, start, end)).fetchall() if row[3]]
        if counts:
            slices = slice_ids(conn, site, fdim, {row[0] for row in counts}, ids)
            conn.executemany(
                "INSERT INTO slice_prefix_counts VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
                [(slices[f], SLICE_DIM[d], v, n) for f, d, v, n in counts],
            )


def count_prefix(conn: sqlite3.Connection, site: str, fdim: str, day: int, until: int) -> Iterator[None]:
    """Count one site's prefix of `fdim` from the start of `day` to `until`, a statement a step; it is complete
    after the last, unless a row stored or deleted before `until` meanwhile deleted it (it is counted again)."""
    conn.execute(
        "DELETE FROM slice_prefix_counts WHERE slice IN (SELECT id FROM slice_keys WHERE site = ? AND fdim = ?)",
        (site, fdim),
    )
    conn.execute("INSERT OR REPLACE INTO slice_prefixes VALUES (?, ?, ?, ?, 0)", (site, fdim, day, until))
    for sql in prefix_counts(fdim):
        yield
        if conn.execute("SELECT 1 FROM slice_prefixes WHERE site = ? AND fdim = ?", (site, fdim)).fetchone() is None:
            return  # deleted by a row stored in it: the next round counts it again
        add_to_prefix(conn, site, fdim, day * DAY_MS, until, [sql])
    conn.execute("UPDATE slice_prefixes SET complete = 1 WHERE site = ? AND fdim = ?", (site, fdim))


def count_prefixes(conn: sqlite3.Connection, now: int) -> None:
    """Bring every prefix up to `now` at once, as PrefixSlices would."""
    run_to_the_end(PrefixSlices(), conn, now)


# Reading through the daily counts (schema.sql, daily_counts): whole days come from them, and only what a window
# has beyond whole days (a partial first or last day) is read from the raw rows; a filter reads raw rows, but for
# one value of a sliced filter, whose counted days come from its slices. A metric that adds rows up (not distinct
# visitors) may take a partial edge day whole and subtract the raw rows of the part outside the window, when that
# part is the shorter: a window from 05:00 thirty days back reads 5 hours of raw rows, not 19.
# All parts yield rows (k, v0[, v1]) that one outer query adds up, so the answer is the same either way.
ALL_SITES = (
    "WITH RECURSIVE s(site) AS (SELECT min(site) FROM daily_counts"
    " UNION ALL SELECT (SELECT min(site) FROM daily_counts WHERE site > s.site) FROM s WHERE s.site IS NOT NULL)"
    " SELECT site FROM s WHERE site IS NOT NULL"
)  # every site in daily_counts, one index probe each (a loose index scan)


def slice_of(q: StatsQuery) -> tuple[str, str] | None:
    """The (filter, value) of q's slices: q has one filter, of one value, on one site, and it is sliced."""
    if q.site is None or len(q.filters) != 1:
        return None
    ((name, values),) = q.filters.items()
    if name not in sliced_filters(q.site) or len(values) != 1 or SLICED_VALUE.get(name, values[0]) != values[0]:
        return None
    return name, values[0]


def rollup_days(conn: sqlite3.Connection, q: StatsQuery, subtract: bool = False) -> tuple[int, int] | None:
    """The UTC days [first, last) the daily counts answer for q (its slices, when it is filtered), or None.

    A day is taken whole when it lies in the window, or when the window reaches the time of the query (nothing is
    stored later than its arrival, so the rest of today is empty). With `subtract` (a metric that adds rows up), a
    partial day at an edge is taken whole too when the part of it outside the window holds less time than the part
    inside: raw_parts then subtracts the outside part's raw rows. A filtered query takes the longest run of days its
    slices have counted (slice_days), and reads the others from raw rows: a day touched by late rows (an import, a
    clock) splits the run, and the days after it, often the most, stay counted.
    """
    if not q.source.daily_counts:
        return None
    first = -(-q.start // DAY_MS)
    last = -(-q.end // DAY_MS) if q.end >= q.now else q.end // DAY_MS
    if subtract:
        first, last = subtracted_edges(q, first, last)
    if first >= last or not q.filters:
        return (first, last) if first < last else None
    if (sliced := slice_of(q)) is None:
        return None
    counted = [day for (day,) in conn.execute(
        "SELECT day FROM slice_days WHERE site = ? AND day >= ? AND day < ? AND fdim = ? AND touched_at IS NULL"
        " ORDER BY day", (q.site, first, last, sliced[0]))]  # fmt: skip
    if not counted:
        return None
    runs = [[counted[0], counted[0] + 1]]
    for day in counted[1:]:
        if day == runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([day, day + 1])
    start, end = max(runs, key=lambda run: run[1] - run[0])  # the fewest raw days around it; the first of equals
    return start, end


def subtracted_edges(q: StatsQuery, first: int, last: int) -> tuple[int, int]:
    """first and last (rollup_days) moved out by a day at each edge whose partial day is more inside the window than
    outside it, counted in time that can hold rows (up to q.now). Only where the window holds that day's whole rest
    (or whole beginning): a window within one day is read as it is."""
    start_day, end_day = q.start // DAY_MS, q.end // DAY_MS
    if q.start % DAY_MS and (q.end >= (start_day + 1) * DAY_MS or q.end >= q.now):
        inside = min((start_day + 1) * DAY_MS, q.now) - q.start
        if q.start - start_day * DAY_MS < inside:
            first = start_day
    if q.end < q.now and q.end % DAY_MS and q.start <= end_day * DAY_MS:
        outside = min((end_day + 1) * DAY_MS, q.now) - q.end
        if outside < q.end - end_day * DAY_MS:
            last = end_day + 1
    return first, last


def raw_parts(q: StatsQuery, days: tuple[int, int] | None) -> list[tuple[StatsQuery, int]]:
    """The windows left to read from raw rows, each with its sign: all of q (+1), or its edges around the days of
    the daily counts, +1 for a part of the window beyond them, -1 for a part of a whole day outside the window."""
    if days is None:
        return [(q, 1)]
    begin, end = days[0] * DAY_MS, days[1] * DAY_MS
    parts = []
    if q.start != begin:
        parts.append((replace(q, start=min(q.start, begin), end=max(q.start, begin)), 1 if q.start < begin else -1))
    if end < q.end:
        parts.append((replace(q, start=end, end=q.end), 1))
    elif q.end < end and q.end < q.now:  # a last day taken whole (subtracted_edges): the rest of it is not stored
        parts.append((replace(q, start=q.end, end=end), -1))
    return parts


def daily_site(q: StatsQuery, alias: str) -> tuple[str, list]:
    """The condition on a daily table's site: q's site, or every site."""
    return (f"{alias}.site = ?", [q.site]) if q.site else (f"{alias}.site IN ({ALL_SITES})", [])


def bucket_of(q: StatsQuery, time_column: str) -> str:
    """SQL for the start of the q.step bucket holding `time_column` (unix ms)."""
    return f"{q.source.divide.format(time_column, f'{q.step:d}')} * {q.step:d}"


def day_bucket_of(q: StatsQuery, alias: str) -> str:
    """The same bucket for the `day` of a daily table (q.step is then a whole number of days)."""
    return bucket_of(q, f"{alias}.day * {DAY_MS}")


def daily_rows(
    q: StatsQuery, days: tuple[int, int], dims: tuple[str, ...], key: str, prefix: bool = False
) -> tuple[str, list]:
    """SELECT k, v0[, v1]: the daily counts of `dims` (one value column each) on `days`, q's slices if filtered;
    with `prefix`, the prefix of q's slice, on its day (days[0])."""
    values = ", ".join(f"CASE c.dim WHEN ? THEN c.n ELSE 0 END AS v{n}" for n in range(len(dims)))
    site, site_params = daily_site(q, "c")
    sliced = slice_of(q)
    table, table_params = (
        ("daily_counts", []) if sliced is None else slice_table(q, sliced, days[0] if prefix else None)
    )
    if sliced:
        dims = tuple(SLICE_DIM[dim] for dim in dims)
    sql = (
        f"SELECT {key} AS k, {values} FROM {table} c"
        f" WHERE {site} AND c.dim IN ({placeholders(dims)}) AND c.day >= ? AND c.day < ?"
    )
    return sql, [*dims, *table_params, *site_params, *dims, *days]


def prefix_of(conn: sqlite3.Connection, q: StatsQuery) -> tuple[int, int] | None:
    """(day, until) of the complete prefix of q's slice (q has one filter of PREFIX_FILTERS, one value), or None."""
    if not q.source.daily_counts or (sliced := slice_of(q)) is None or sliced[0] not in PREFIX_FILTERS:
        return None
    return conn.execute(
        "SELECT day, until FROM slice_prefixes WHERE site = ? AND fdim = ? AND complete = 1", (q.site, sliced[0])
    ).fetchone()


def split_at_prefix(
    parts: list[tuple[StatsQuery, int]], day: int, until: int
) -> tuple[list[tuple[StatsQuery, int]], bool]:
    """The raw parts with a prefix's time [start of `day`, until) taken out of the part that holds it whole, and
    whether one did; a part subtracted (-1) is left as it is."""
    start = day * DAY_MS
    for n, (part, sign) in enumerate(parts):
        if sign > 0 and part.start <= start and until <= part.end:
            around = [(replace(part, end=start), 1)] if part.start < start else []
            around += [(replace(part, start=until), 1)] if until < part.end else []
            return parts[:n] + around + parts[n + 1 :], True
    return parts, False


def rolled_up(
    conn: sqlite3.Connection, q: StatsQuery, days: tuple[int, int] | None, scope: Callable, raw_key: str,
    raw_values: str, dims: tuple[str, ...], daily_key: str, totals: str, tail: str = "", tail_params: tuple = (),
    prefixed: bool = False,
) -> list[tuple]:  # fmt: skip
    """Rows (k, totals) over the daily counts of `dims` on `days` and the raw rows of `scope` around them (less
    those of a whole day's part outside the window); `raw_values` names one sum per dim, v0, v1, …; with
    `prefixed` (raw rows of events, counted by whole days), today's prefix stands for the raw rows it counts."""
    parts, params = [], []
    raw = raw_parts(q, days)
    if prefixed and set(dims) <= PREFIX_DIMS and (prefix := prefix_of(conn, q)) is not None:
        raw, prefix_part = split_at_prefix(raw, *prefix)
        if prefix_part:
            sql, prefix_params = daily_rows(q, (prefix[0], prefix[0] + 1), dims, daily_key, prefix=True)
            parts.append(sql)
            params += prefix_params
    for part, sign in raw:
        source, where, where_params = scope(part)
        rows = f"SELECT {raw_key} AS k, {raw_values} FROM {source} WHERE {where} AND k IS NOT NULL GROUP BY k"
        if sign < 0:
            rows = f"SELECT k, {', '.join(f'-v{n} AS v{n}' for n in range(len(dims)))} FROM ({rows})"
        parts.append(rows)
        params += where_params
    if days is not None:
        sql, daily_params = daily_rows(q, days, dims, daily_key)
        parts.append(sql)
        params += daily_params
    sql = f"SELECT k, {totals} FROM ({' UNION ALL '.join(parts)}) GROUP BY k {tail}"
    return conn.execute(sql, [*params, *tail_params]).fetchall()


def daily_series(scope: Callable, time_column: str, raw_values: str, dims: tuple[str, ...],
                 totals: str | Callable[[Source], str]) -> Callable:  # fmt: skip
    """A time series read through the daily counts when its buckets are whole days (else from the raw rows);
    `totals` of a bucket, or a function of the source that says them in its dialect."""

    def metric(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
        # a bucket of hours: no daily count answers it
        days = rollup_days(conn, q, subtract=True) if q.step % DAY_MS == 0 else None
        found = rolled_up(
            conn, q, days, scope, bucket_of(q, time_column), raw_values, dims, day_bucket_of(q, "c"),
            totals if isinstance(totals, str) else totals(q.source), prefixed=q.step % DAY_MS == 0,
        )  # fmt: skip
        return bucket_keys(q, dict(found))

    return metric


def daily_top(scope: Callable, column: str, dim: str, daily_key: str = "c.value") -> Callable:
    """A top-N read through the daily counts of `dim` (`column` of the raw rows is `daily_key` of the counts)."""

    def metric(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
        rows = rolled_up(
            conn, q, rollup_days(conn, q, subtract=True), scope, column, "count(*) AS v0", (dim,), daily_key,
            "sum(v0) AS n",
            "HAVING n > 0 ORDER BY n DESC, k LIMIT ?", (q.limit,), prefixed=True,
        )  # fmt: skip
        return [row[0] for row in rows], [row[1] for row in rows]

    return metric


def top_site_pages(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    """top-pages by site and path (`site path` keys: a site has no space), so that equal paths of two sites stay
    two rows; details [{site, path, pageviews}]."""
    keys, values = daily_top(events_scope(), "e.site || ' ' || e.path", "path", "c.site || ' ' || c.value")(conn, q)
    pairs = [key.split(" ", 1) for key in keys]
    details = [{"site": site, "path": path, "pageviews": n} for (site, path), n in zip(pairs, values, strict=True)]
    return keys, values, details


def distinct_visitors(conn: sqlite3.Connection, q: StatsQuery, kinds: tuple[str, ...], per_bucket: bool) -> dict:
    """Distinct visitors per bucket of q.step (or in the whole window, key 0), {k: n}.

    Day-salted ids never repeat on another day, so their daily counts add up; ids a client gave are counted
    distinct over daily_visitors and the raw rows of the window's edges together. A partial past day at an edge is
    counted from its edges (slice_edges) when it has them.
    """

    def day_key(alias: str) -> str:
        return day_bucket_of(q, alias) if per_bucket else "0"

    days = rollup_days(conn, q) if kinds == ("pageview",) and not (per_bucket and q.step % DAY_MS) else None
    ids, params = [], []
    parts, salted, given = raw_parts(q, days), Counter(), []
    if days is not None:
        parts, salted, given = visitors_at_edges(conn, q, parts, per_bucket)
    if given:
        ids.append("SELECT json_extract(value, '$[0]') AS k, json_extract(value, '$[1]') AS id FROM json_each(?)")
        params.append(json.dumps(given))
    for part, _sign in parts:  # every sign +1: distinct visitors do not subtract
        where, where_params = event_where(part, kinds)
        raw_key = bucket_of(q, "e.ts") if per_bucket else "0"
        ids.append(f"SELECT {raw_key} AS k, e.visitor_id AS id FROM {EVENTS_TABLE.rows(q)} WHERE {where}")
        params += where_params
    counted = ""
    if days is not None:
        site, site_params = daily_site(q, "d")
        if sliced := slice_of(q):  # ids a client gave, seen with the filter's value
            ids.append(f"SELECT {day_key('d')} AS k, d.visitor_id AS id FROM slice_visitors d"
                       f" WHERE d.slice = ({SLICE_KEY}) AND d.day >= ? AND d.day < ?")  # fmt: skip
            params += [q.site, *sliced, *days]
        else:
            ids.append(f"SELECT {day_key('d')} AS k, d.visitor_id AS id FROM daily_visitors d WHERE {site}"
                       " AND d.salted = 0 AND d.day >= ? AND d.day < ?")  # fmt: skip
            params += [*site_params, *days]
        sql, daily_params = daily_rows(q, days, ("visitors",), day_key("c"))
        counted = f" UNION ALL SELECT k, v0 FROM ({sql})"
        params += daily_params
    sql = (
        f"SELECT k, sum(n) FROM (SELECT k, count(DISTINCT id) AS n FROM ({' UNION ALL '.join(ids)}) GROUP BY k"
        f"{counted}) GROUP BY k"
    )
    found = Counter(dict(conn.execute(sql, params).fetchall()))
    found.update(salted)
    return dict(found)


EDGES_OF = (
    "SELECT e.n, e.firsts, e.lasts, e.others FROM slice_days d"
    " JOIN edge_days x ON x.site = d.site AND x.day = d.day AND x.fdim = d.fdim"
    f" LEFT JOIN slice_edges e ON e.slice = ({SLICE_KEY}) AND e.day = d.day"
    " WHERE d.site = ? AND d.day = ? AND d.fdim = ? AND d.touched_at IS NULL"
)


def visitors_at_edges(
    conn: sqlite3.Connection, q: StatsQuery, parts: list[tuple[StatsQuery, int]], per_bucket: bool
) -> tuple[list[tuple[StatsQuery, int]], Counter, list[tuple[int, str]]]:
    """The raw parts (raw_parts) edges do not answer; for those they do, the day-salted visitors (bucket key → n)
    and the ids a client gave, [(key, id)]. A part they answer lies within one counted past day and begins at its
    start (visitors whose first pageview is before the part's end) or ends at its end (last at its start or later)."""
    sliced = slice_of(q) or ((SITE_EDGES, "") if not q.filters else None)
    if q.site is None or sliced is None:
        return parts, Counter(), []
    left, salted, given = [], Counter(), []
    for part, sign in parts:
        day = part.start // DAY_MS
        start, end = day * DAY_MS, (day + 1) * DAY_MS
        row = None
        if part.end <= end and (part.start == start or part.end == end):
            row = conn.execute(EDGES_OF, (q.site, *sliced, q.site, day, sliced[0])).fetchone()
        if row is None:  # not counted, or touched since
            left.append((part, sign))
            continue
        n, firsts, lasts, others = row
        if n is None:  # no pageview of the slice that day
            continue
        key = part.start // q.step * q.step if per_bucket else 0
        if part.start == start:
            cut = part.end - start
            salted[key] += bisect.bisect_left(edge_array(firsts), cut)
            given += [(key, visitor) for visitor, first, _last in json.loads(others) if first < cut]
        else:
            cut = part.start - start
            times = edge_array(lasts)
            salted[key] += len(times) - bisect.bisect_left(times, cut)
            given += [(key, visitor) for visitor, _first, last in json.loads(others) if last >= cut]
    return left, salted, given


def visitors_series(kinds: tuple[str, ...]) -> Callable:
    def metric(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
        return bucket_keys(q, distinct_visitors(conn, q, kinds, per_bucket=True))

    return metric


def json_value_text(value: Any) -> str:
    """A JSON object's member value as text, as SQLite's json_each gives it: a string bare, a number as SQLite casts
    it (a real with 15 digits and a `.0`), anything else its JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        mantissa, e, exponent = format(value, ".15g").partition("e") if value else ("0.0", "", "")
        return (mantissa if "." in mantissa else mantissa + ".0") + e + exponent
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def object_members(conn: sqlite3.Connection, group: str, column: str, source: str, where: str, params: list,
                   sums: tuple[str, ...]) -> dict[tuple, list]:  # fmt: skip
    """The members of the JSON objects in `column`: {(group, key, value as text): the `sums` of their rows}. Taken
    apart here, not in SQL, so that every source answers alike (ClickHouse 18 cannot): each distinct object once."""
    found: dict[tuple, list] = {}
    sql = (
        f"SELECT {group} AS g, {column} AS j, {', '.join(sums)} FROM {source} WHERE {where} AND j IS NOT NULL"
        " GROUP BY g, j"
    )
    for group_value, text, *values in conn.execute(sql, params):
        for key, value in json.loads(text).items():
            totals = found.setdefault((group_value, key, json_value_text(value)), [0] * len(sums))
            totals[:] = [total + n for total, n in zip(totals, values, strict=True)]
    return found


def custom_event_properties(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    """The properties of the custom events named by the `event` filter (all of them without it): `name=value` keys
    by count, most first; details [{event, property, value, count}]. A value is its JSON text but for strings."""
    names = q.values("event")
    where, params = event_where(replace(q, filters={k: v for k, v in q.filters.items() if k != "event"}), ("custom",))
    if names:  # the events themselves: the visits that sent them would bring in their other custom events
        where += f" AND e.name IN ({placeholders(names)})"
        params += names
    found = object_members(conn, "e.name", "e.props", EVENTS_TABLE.rows(q), where, params, ("count(*)",))
    rows = sorted(((*member, n) for member, (n,) in found.items()), key=lambda row: (-row[3], *row[:3]))[: q.limit]
    details = [{"event": name, "property": key, "value": value, "count": n} for name, key, value, n in rows]
    return [f"{key}={value}" for _name, key, value, _n in rows], [row[3] for row in rows], details


def live_count(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    """Distinct visitors of any event in the window (by default the last 30 minutes): the dashboard's live count."""
    return ["visitors"], [distinct_visitors(conn, q, (), per_bucket=False).get(0, 0)]


def overview(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    """The window's totals: visitors, pageviews, sessions, bounce rate (%) and average visit (seconds)."""
    visitors = distinct_visitors(conn, q, ("pageview",), per_bucket=False).get(0, 0)
    days = rollup_days(conn, q, subtract=True)
    found = rolled_up(
        conn, q, days, events_scope(), "0", "count(*) AS v0", ("pageviews",), "0", "sum(v0)", prefixed=True
    )
    pageviews = found[0][1] if found else 0
    found = rolled_up(
        conn, q, days, sessions_scope, "0",
        "count(*) AS v0, sum(s.pageviews = 1) AS v1, sum(s.last_seen - s.started_at) AS v2",
        ("sessions", "bounces", "duration"), "0", "sum(v0), sum(v1), sum(v2)",
    )  # fmt: skip
    sessions, bounces, duration = found[0][1:] if found else (0, 0, 0)
    bounce_rate = round(100 * bounces / sessions) if sessions else 0
    return (
        ["visitors", "pageviews", "sessions", "bounce_rate", "visit_duration"],
        [visitors, pageviews, sessions, bounce_rate, round(duration / sessions / 1000) if sessions else 0],
    )


def summarise_web_traffic(conn: sqlite3.Connection, site: str | None, days: int, now: int, origins: list) -> None:
    """`prisme-lite stats`: each site's visitors, pageviews, sessions and top lists, as the stats API counts them."""
    since = now - days * DAY_MS
    sites = (
        [site] if site else [row[0] for row in conn.execute("SELECT DISTINCT site FROM events WHERE ts >= ?", (since,))]
    )
    for name in sites:
        # The same metrics as the stats API and the dashboard: one definition of a visitor, a bounce, a top list.
        q = parse_stats_query([("site", name), ("from", f"now-{days}d"), ("limit", "6")], now)
        _keys, (visitors, pageviews, sessions, bounce_rate, seconds) = overview(conn, q)
        print(f"\nweb traffic at {terminal_text(name)}")
        bounces = f"{bounce_rate}%" if sessions else "-"
        print(f"  {visitors:,} {plural('visitor', visitors)}, {pageviews:,} {plural('pageview', pageviews)}, "
              f"{sessions:,} {plural('session', sessions)}, "
              f"bounce rate {bounces}, average visit {seconds // 60}m {seconds % 60:02d}s")  # fmt: skip
        for title, metric in (("top pages", "top-pages"), ("top referrers", "top-referrers"),
                              ("custom events", "top-custom-events")):  # fmt: skip
            keys, values = METRICS[metric](conn, q)
            # Six fetched, five shown: a referrer list leaves out "direct" (not a referrer), the others keep all.
            shown = [
                (key, n) for key, n in zip(keys, values, strict=True) if metric != "top-referrers" or key != "direct"
            ]
            if shown:
                print(f"  {title}: " + ", ".join(f"{terminal_text(key)} {count:,}" for key, count in shown[:5]))
    if not sites:
        print("\nno web traffic yet: paste the snippet that `prisme-lite serve` prints into a page")


register(Family(
    "web",
    routes=(
        post_pageview, post_custom_event, post_file_download, post_outbound_link, noscript_pageview,
        noscript_custom_event, noscript_outbound_link, noscript_file_download,
    ),
    applier=lambda config: WebEventStore(config["session_timeout"] * MINUTE_MS),
    maintenance=(lambda config: ForgetSaltedVisitors(), lambda config: SealDays(), lambda config: PrefixSlices()),
    exports={
        "events": ("events", "ts", "", "rowid"),
        "pageview": ("events", "ts", "kind = 'pageview'", "rowid"),
        "custom": ("events", "ts", "kind = 'custom'", "rowid"),
        "outbound": ("events", "ts", "kind = 'outbound'", "rowid"),
        "download": ("events", "ts", "kind = 'download'", "rowid"),
        "sessions": ("sessions", "started_at", "", "rowid"),
    },
    # Events and sessions are stored as they arrive, so their first row is their oldest (a session by its start:
    # one still going must not hide the ended ones behind it).
    pruned=(
        ("events", "events WHERE ts < ?", "rowid", "SELECT ts FROM events ORDER BY rowid LIMIT 1", True),
        ("sessions", "sessions WHERE last_seen < ?", "rowid",
         "SELECT started_at FROM sessions ORDER BY rowid LIMIT 1", True),
    ),
    invariants=(
        ("every event's session exists", "SELECT id FROM events WHERE session_id IS NOT NULL"
         " AND session_id NOT IN (SELECT id FROM sessions) LIMIT 5"),
        ("a session has at least the pageviews stored for it", "SELECT s.id FROM sessions s JOIN"
         " (SELECT session_id, count(*) n FROM events WHERE kind = 'pageview' GROUP BY session_id) e"
         " ON e.session_id = s.id WHERE s.pageviews < e.n LIMIT 5"),
        ("sessions end after they start", "SELECT id FROM sessions WHERE last_seen < started_at LIMIT 5"),
        ("the daily counts equal the rows they count", "SELECT * FROM (SELECT dim || ' ' || value || ' on day ' || day"
         f" FROM (SELECT * FROM daily_counts WHERE n != 0 EXCEPT SELECT * FROM ({ROLLUP_RECOUNT} UNION ALL"
         f" {VISITORS_RECOUNT}) WHERE n != 0) UNION ALL SELECT dim || ' ' || value || ' on day ' || day"
         f" FROM (SELECT * FROM ({ROLLUP_RECOUNT} UNION ALL {VISITORS_RECOUNT}) WHERE n != 0"
         " EXCEPT SELECT * FROM daily_counts WHERE n != 0)) LIMIT 5"),
        ("the slices of each counted day add up to its daily counts", SLICES_ADD_UP),
        ("today's prefixes equal the events they count", PREFIXES_RECOUNTED),
        ("a counted day's edges hold its visitors, in order", EDGES_HOLD_VISITORS),
        ("the site's edges are its visitors' first and last pageviews", SITE_EDGES_RECOUNTED),
    ),
    filters=tuple(FILTERS),
    metrics={
        "overview": overview,
        # time series
        "pageviews": daily_series(events_scope(), "e.ts", "count(*) AS v0", ("pageviews",), "sum(v0)"),
        "visitors": visitors_series(("pageview",)),
        "live-visitors": visitors_series(()),
        "live-count": live_count,
        "sessions": daily_series(sessions_scope, "s.started_at", "count(*) AS v0", ("sessions",), "sum(v0)"),
        "bounces": daily_series(sessions_scope, "s.started_at", "sum(s.pageviews = 1) AS v0", ("bounces",), "sum(v0)"),
        "sessions-duration": daily_series(
            sessions_scope,
            "s.started_at",
            "sum(s.last_seen - s.started_at) AS v0, count(*) AS v1",
            ("duration", "sessions"),
            lambda source: source.divide.format("sum(v0)", "sum(v1)"),  # whole milliseconds, as SQLite divides
        ),
        # top-N
        "top-pages": daily_top(events_scope(), "e.path", "path"),
        "top-site-pages": top_site_pages,
        "top-entry-pages": daily_top(sessions_scope, "s.entry_path", "entry_path"),
        "top-exit-pages": daily_top(sessions_scope, "s.exit_path", "exit_path"),
        "top-referrers": daily_top(events_scope(), "e.referrer", "referrer"),
        "top-utm-sources": daily_top(events_scope(), "e.utm_source", "utm_source"),
        "top-utm-mediums": daily_top(events_scope(), "e.utm_medium", "utm_medium"),
        "top-utm-campaigns": daily_top(events_scope(), "e.utm_campaign", "utm_campaign"),
        "top-countries": daily_top(events_scope(), "e.country", "country"),
        "top-operating-systems": daily_top(events_scope(), "e.os", "os"),
        "top-browsers": daily_top(events_scope(), "e.browser", "browser"),
        "top-custom-events": daily_top(events_scope(("custom",)), "e.name", "custom"),
        "top-outbound-links": daily_top(events_scope(("outbound",)), "e.name", "outbound"),
        "top-file-downloads": daily_top(events_scope(("download",)), "e.name", "download"),
        # visits (sessions started in the window) by what they came from: the first pageview's referrer, campaign
        "top-visit-referrers": daily_top(sessions_scope, "s.referrer", "visit_referrer"),
        "top-visit-utm-sources": daily_top(sessions_scope, "s.utm_source", "visit_utm_source"),
        "top-visit-utm-mediums": daily_top(sessions_scope, "s.utm_medium", "visit_utm_medium"),
        "top-visit-utm-campaigns": daily_top(sessions_scope, "s.utm_campaign", "visit_utm_campaign"),
        "custom-event-properties": custom_event_properties,
    },
    panels=(
        ("Top pages", "top-site-pages", ("Page", "Pageviews"), "path"),
        ("Referrers", "top-visit-referrers", ("Referrer", "Visits"), "visit-referrer"),
        ("Entry pages", "top-entry-pages", ("Page", "Visits"), "entry-path"),
        ("Exit pages", "top-exit-pages", ("Page", "Visits"), "exit-path"),
        ("Countries", "top-countries", ("Country", "Pageviews"), "country"),
        ("Browsers", "top-browsers", ("Browser", "Pageviews"), "browser"),
        ("Operating systems", "top-operating-systems", ("OS", "Pageviews"), "os"),
        ("Campaign sources", "top-visit-utm-sources", ("Source", "Visits"), "visit-utm-source"),
        ("Campaign mediums", "top-visit-utm-mediums", ("Medium", "Visits"), "visit-utm-medium"),
        ("Campaigns", "top-visit-utm-campaigns", ("Campaign", "Visits"), "visit-utm-campaign"),
        ("Custom events", "top-custom-events", ("Event", "Count"), "event"),
        ("Outbound links", "top-outbound-links", ("Link", "Clicks"), "outbound-link"),
        ("File downloads", "top-file-downloads", ("File", "Downloads"), "file-download"),
    ),
    summary=summarise_web_traffic,
))  # fmt: skip


###############################################################################
# Goals #######################################################################
###############################################################################

# A goal's kind → the web events that convert it, and the column that must equal its target.
GOAL_EVENTS = {"event": ("custom", "e.name"), "path": ("pageview", "e.path")}


@dataclass(frozen=True)
class Goal:
    """One conversion a site counts: a custom event by its name, or a pageview of a path."""

    id: int
    site: str
    kind: str  # event | path
    target: str  # the event's name, or the path

    def label(self, with_site: bool) -> str:
        """What the dashboard calls it: `signup`, `Visit /thanks`; with the site's name when every site shows."""
        name = self.target if self.kind == "event" else f"Visit {self.target}"
        return f"{name} ({self.site})" if with_site else name


def goal_target(kind: str, value: str) -> str:
    """A goal's target as the events store it, or ValueError: an event name as sent, a path as normalised."""
    if kind == "event":
        if not printable(value):
            raise ValueError(f"an event name is 1 to {MAX_NAME_LENGTH} printable characters, got {value[:60]!r}")
        return value
    if not value.startswith("/") or not printable(value, MAX_URL_LENGTH):
        raise ValueError(f"a path starts with / and has no control characters, got {value[:60]!r}")
    return normalise_path(value.split("?", 1)[0].split("#", 1)[0])  # pageviews are stored without either


def add_goal(conn: sqlite3.Connection, site: str, kind: str, target: str) -> Goal | None:
    """A new goal, or None when the site has it already."""
    row = conn.execute(
        "INSERT INTO goals (site, kind, target, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
        (site, kind, target, now_ms()),
    ).fetchone()
    return Goal(row[0], site, kind, target) if row else None


def remove_goal(conn: sqlite3.Connection, goal_id: int) -> bool:
    return conn.execute("DELETE FROM goals WHERE id = ?", (goal_id,)).rowcount == 1


def stored_goals(conn: sqlite3.Connection, site: str | None = None) -> list[Goal]:
    """The goals of one site, or of every site, in the order they were added."""
    where, params = ("WHERE site = ?", [site]) if site else ("", [])
    return [Goal(*row) for row in conn.execute(f"SELECT id, site, kind, target FROM goals {where} ORDER BY id", params)]


def goal_conversions(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    """Each goal's conversions (its events in the window), converting visitors (distinct visitors among them) and
    conversion rate: converting visitors over the visitors of the goal's site, the stats filters applied to both.
    Keys are the goals' labels, values their converting visitors, most first."""
    found, site_visitors = [], {}
    for goal in stored_goals(configured(conn), q.site):
        part = q if q.site else replace(q, site=goal.site)
        kind, column = GOAL_EVENTS[goal.kind]
        where, params = event_where(part, (kind,))
        conversions, visitors = conn.execute(
            f"SELECT count(*), count(DISTINCT e.visitor_id) FROM {EVENTS_TABLE.rows(q)} WHERE {where} AND {column} = ?",
            [*params, goal.target],
        ).fetchone()
        if goal.site not in site_visitors:
            site_visitors[goal.site] = distinct_visitors(conn, part, ("pageview",), per_bucket=False).get(0, 0)
        total = site_visitors[goal.site]
        found.append((goal, conversions, visitors, round(visitors / total, 4) if total else None))
    found.sort(key=lambda row: (-row[2], -row[1], row[0].id))
    details = [
        {"goal": goal.label(not q.site), "conversions": conversions, "visitors": visitors, "conversion_rate": rate,
         "id": goal.id, "site": goal.site, "kind": goal.kind, "target": goal.target}
        for goal, conversions, visitors, rate in found[: q.limit]
    ]  # fmt: skip
    return [row["goal"] for row in details], [row["visitors"] for row in details], details


register(Family(
    "goals",
    metrics={"goals": goal_conversions},
    metric_schemas={"goals": "GoalStats"},
    panels=(("Goals", "goals", ("Goal", "Conversions", "Visitors", "Rate"), "",
             "No goals yet: `prisme-lite goals add --site SITE --event NAME` (or --path PATH) adds one."),),
    schemas={"GoalStats": {"allOf": [schema_ref("Stats"), {"type": "object", "properties": {
        "keys": {"type": "array", "items": TEXT, "description": "each goal's label"},
        "values": {"type": "array", "items": {"type": "integer"}, "description": "its converting visitors"},
        "details": {"type": "array", "items": {"type": "object", "required": [
            "goal", "conversions", "visitors", "conversion_rate", "id", "site", "kind", "target"], "properties": {
            "goal": TEXT, "conversions": {"type": "integer", "description": "its events in the period"},
            "visitors": {"type": "integer", "description": "distinct visitors among them"},
            "conversion_rate": {"type": ["number", "null"],
                                "description": "visitors over the site's visitors (0 to 1); null: no visitors"},
            "id": {"type": "integer"}, "site": TEXT, "kind": {"enum": ["event", "path"]},
            "target": {"type": "string", "description": "the event's name, or the path"}}}}}}]}},
))  # fmt: skip


###############################################################################
# Server events ###############################################################
###############################################################################

MAX_BATCH_EVENTS = 100
MAX_FUTURE_MS = DAY_MS  # a timestamp more than a day ahead is a mistake (milliseconds for seconds, often)
RELATIONS = {
    "Like": ("like", True),
    "Unlike": ("like", False),
    "Bookmark": ("bookmark", True),
    "Unbookmark": ("bookmark", False),
    "Subscribe": ("subscribe", True),
    "Unsubscribe": ("subscribe", False),
}  # any other label is a custom label, stored as sent
SCREEN = re.compile(r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$")
LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}$")
SERVER_EVENT_COLUMNS = (
    "ts", "received_at", "label", "content_id", "locale", "customer_id", "utm_source", "utm_medium", "utm_campaign",
    "utm_term", "utm_content", "referrer", "screen", "token_id",
)  # fmt: skip


def event_time(value: Any, field: str, now: int) -> int:
    """Unix seconds (a number) or an RFC 3339 string, as unix milliseconds; at most a day in the future."""
    if value is None:
        return now
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Rejected(400, f"{field} must be unix seconds or an RFC 3339 time")
    if isinstance(value, str):
        try:
            parsed = rfc3339(value)
        except ValueError:
            raise Rejected(400, f"{field} {value[:40]!r} is not an RFC 3339 time (2024-01-02T03:04:05Z)") from None
        if parsed.tzinfo is None:
            raise Rejected(400, f"{field} {value[:40]!r} needs a time zone (Z or +01:00)")
        ms = int(parsed.timestamp() * 1000)
    elif not math.isfinite(value) or not 0 <= value < 1e12:
        hint = " (milliseconds? send seconds)" if isinstance(value, (int, float)) and value >= 1e12 else ""
        raise Rejected(400, f"{field} {value!r} is out of range{hint}")
    else:
        ms = int(value * 1000)
    if ms > now + MAX_FUTURE_MS:
        raise Rejected(400, f"{field} is more than a day in the future")
    if ms < 0:
        raise Rejected(400, f"{field} is before 1970")
    return ms


def optional_text(event: dict, name: str, field: str, most: int = MAX_UTM_LENGTH) -> str | None:
    value = event.get(name)
    if value is None:
        return None
    if not printable(value, most, least=0):
        raise Rejected(400, f"{field} must be a string of at most {most} printable characters")
    return value or None


def id_field(parent: Any, parent_field: str, required: bool) -> tuple[dict, str | None]:
    """`parent.id` of content_item or customer: an object with a string id of 1 to 128 characters."""
    if parent is None and not required:
        return {}, None
    if not isinstance(parent, dict):
        raise Rejected(400, f"{parent_field} is required: an object with an id")
    value = parent.get("id")
    if not printable(value):
        raise Rejected(400, f"{parent_field}.id is required: a string of 1 to {MAX_NAME_LENGTH} characters")
    return parent, value


def check_server_event(event: Any, where: str, now: int, token_id: str) -> dict:
    """One event of a POST /events body as its stored row; 400 naming the field (`events[3].customer.id`)."""
    prefix = f"{where}." if where else ""
    if not isinstance(event, dict):
        raise Rejected(400, f"{where or 'body'} must be a JSON object")
    label = event.get("label")
    if not printable(label):
        raise Rejected(400, f"{prefix}label is required: a string of 1 to {MAX_NAME_LENGTH} characters")
    content, content_id = id_field(event.get("content_item"), f"{prefix}content_item", required=label != "SignUp")
    _customer, customer_id = id_field(event.get("customer"), f"{prefix}customer", required=True)
    locale = optional_text(content, "locale", f"{prefix}content_item.locale", 35)
    if locale and not LOCALE.match(locale):
        raise Rejected(400, f"{prefix}content_item.locale {locale!r} is not a locale like en-GB")
    screen = optional_text(event, "sr", f"{prefix}sr", 11)
    if screen and not SCREEN.match(screen):
        raise Rejected(400, f"{prefix}sr {screen!r} is not a screen resolution like 1680x1050")
    referrer_url = optional_text(event, "rl", f"{prefix}rl", MAX_URL_LENGTH)
    referrer = host_of(referrer_url) if referrer_url else "direct"
    if referrer is None:
        raise Rejected(400, f"{prefix}rl {referrer_url[:100]!r} is not a URL like https://example.com/")
    row = {
        "ts": event_time(event.get("timestamp"), f"{prefix}timestamp", now),
        "received_at": now,
        "label": label,
        "content_id": content_id,
        "locale": locale,
        "customer_id": customer_id,
        "referrer": referrer,
        "screen": screen,
        "token_id": token_id,
    }
    for key in UTM_KEYS:
        row[key] = optional_text(event, key, prefix + key)
    return row


def store_server_events(conn: sqlite3.Connection, requests: list[dict]) -> None:
    """Writer applier: the events as sent; their customers; likes, bookmarks and subscriptions, in arrival order."""
    events = [event for batch in requests for event in batch["events"]]
    insert_rows(
        conn, "server_events", SERVER_EVENT_COLUMNS, [tuple(e[c] for c in SERVER_EVENT_COLUMNS) for e in events]
    )
    customers: dict[str, list] = {}
    # Each relation as the batch leaves it, event after event: (standing, made at, undone in this batch). A repeat
    # of what stands changes nothing, so a relation is made at its first event since it was last undone, whichever
    # batch the writer put them in (ClickHouse, which has the events only, finds the same).
    relations: dict[tuple[str, str, str], tuple[bool, int, bool]] = {}
    for event in events:
        seen = customers.setdefault(event["customer_id"], [event["customer_id"], event["ts"], event["ts"], 0])
        seen[1], seen[2], seen[3] = min(seen[1], event["ts"]), max(seen[2], event["ts"]), seen[3] + 1
        if event["label"] in RELATIONS and event["content_id"] is not None:
            relation, present = RELATIONS[event["label"]]
            key = (event["customer_id"], event["content_id"], relation)
            was = relations.get(key)
            if not present:
                relations[key] = (False, event["ts"], True)
            elif was is None or not was[0]:
                relations[key] = (True, event["ts"], was is not None)
    insert_rows(
        conn, "customers", ("id", "first_seen", "last_seen", "events"), list(customers.values()),
        "ON CONFLICT (id) DO UPDATE SET first_seen = min(first_seen, excluded.first_seen),"
        " last_seen = max(last_seen, excluded.last_seen), events = events + excluded.events",
    )  # fmt: skip
    for remade in (False, True):  # undone and made again in this batch: made anew
        added = [(*key, ts) for key, (present, ts, undone) in relations.items() if present and undone == remade]
        insert_rows(
            conn, "customer_relations", ("customer_id", "content_id", "relation", "created_at"), added,
            "ON CONFLICT DO UPDATE SET created_at = excluded.created_at" if remade else "ON CONFLICT DO NOTHING",
        )  # fmt: skip
    removed = [key for key, (present, _ts, _undone) in relations.items() if not present]
    if removed:
        conn.executemany(
            "DELETE FROM customer_relations WHERE customer_id = ? AND content_id = ? AND relation = ?", removed
        )


@route("/events", "POST", doc={"post": operation(
    "server events", "one server event, or an array of up to 100", answers(
        ok("accepted and durable", "application/json", {"type": "object"}, 202), 400, 401, 403, 413, 429, 503,
    ), security=[*BEARER, {"accessToken": []}], body=json_request({"oneOf": [
        schema_ref("ServerEvent"),
        {"type": "array", "items": schema_ref("ServerEvent"), "minItems": 1, "maxItems": MAX_BATCH_EVENTS},
    ]}),
)})  # fmt: skip
@api()
def post_server_events(ctx: Context) -> dict:
    environ = request.environ
    token = authorize(
        ctx, "capture_publish", bearer_token(environ) or query_value(query_pairs(environ), "access_token")
    )
    given = json_body(
        environ, ctx.config["max_body_bytes"], "body is empty: send one event object, or an array of up to 100"
    )
    now = now_ms()
    if isinstance(given, list):
        if not 1 <= len(given) <= MAX_BATCH_EVENTS:
            raise Rejected(400, f"a batch holds 1 to {MAX_BATCH_EVENTS} events, this one {len(given)}")
        events = [check_server_event(event, f"events[{n}]", now, token["id"]) for n, event in enumerate(given)]
    else:
        events = [check_server_event(given, "", now, token["id"])]
    allowed, _left, retry_after = ctx.token_limiter.take(token["id"], cost=len(events))
    if not allowed:
        raise over_limit(
            f"over the rate limit of {ctx.config['events_rate_limit']} events a minute for token {token['id']}",
            retry_after,
        )
    ctx.writer.append("server", {"events": events})  # one journal line: the batch is stored whole or not at all
    response.status = 202
    return {"accepted": len(events)}


# A Like, Bookmark or Subscribe counts once per customer and content item while it stands (SPEC §5): of a server
# event `x` with such a label, only the one that made a relation still in customer_relations is counted (its time is
# the relation's created_at; the first such event if several share it); a repeat, or one undone since, is not.
MAKING = ", ".join(repr(label) for label, (_relation, made) in RELATIONS.items() if made)  # 'Like', 'Bookmark', …
COUNTED_ONCE = (
    f"(x.label NOT IN ({MAKING})"
    " OR (EXISTS (SELECT 1 FROM customer_relations r WHERE r.customer_id = x.customer_id"
    " AND r.content_id = x.content_id AND r.relation = lower(x.label) AND r.created_at = x.ts)"
    " AND NOT EXISTS (SELECT 1 FROM server_events y WHERE y.label = x.label AND y.ts = x.ts"
    " AND y.customer_id = x.customer_id AND y.content_id = x.content_id AND y.id < x.id)))"
)


# ClickHouse cannot correlate a subquery: there the counted event of each relation still standing is found from the
# events themselves, in the order they arrived. A relation is made by its first event after its last undoing (the
# created_at the writer keeps), and counted on the first event of that time; its last event must have made it.
CLICKHOUSE.views["counted-once"] = (
    f"(x.label NOT IN ({MAKING}) OR (x.node_id, x.id) IN (SELECT tupleElement(made_by, 3), tupleElement(made_by, 2)"
    " FROM (SELECT arraySort(e -> (e.1, e.2), groupArray((received_at, id, node_id, made, ts))) AS seq,"
    " arrayReduce('max', arrayMap((e, i) -> if(e.4, 0, i), seq, arrayEnumerate(seq))) AS undone,"
    # indexOf, not arrayFirst with `undone` in its lambda: 18.16 loses a captured column once the outer query prunes it
    " seq[indexOf(arrayMap(e -> (e.4, e.5), seq), (toUInt8(1), tupleElement(seq[undone + 1], 5)))] AS made_by"
    f" FROM (SELECT received_at, id, node_id, ts, customer_id, content_id, label IN ({MAKING}) AS made,"
    f" multiIf({', '.join(f'label = {label!r}, {relation!r}' for label, (relation, _m) in RELATIONS.items())}, '')"
    f" AS relation FROM server_events FINAL WHERE label IN ({', '.join(repr(label) for label in RELATIONS)})"
    " AND content_id IS NOT NULL) GROUP BY customer_id, content_id, relation"
    " HAVING tupleElement(seq[length(seq)], 4))))"
)


# Server events carry only the access token they came with, and tokens belong to no site.
SERVER_EVENTS_NOTE = "Server events are not recorded per site (their access tokens have none): these are every site's."
SERVER_EVENTS_TABLE = Table(
    "server_events x", "x.ts", None,
    {"label": "x.label", "referrer": "x.referrer",
     **{f: f"x.{c[0][2:]}" for f, c in FILTERS.items() if f.startswith("utm-")}},
    SERVER_EVENTS_NOTE,
)  # fmt: skip
CUSTOMERS_TABLE = Table("customers c", "c.first_seen", None, {}, SERVER_EVENTS_NOTE)
# ClickHouse has server events only: a customer is first seen at its first event, as the writer keeps it.
CLICKHOUSE.views["customers"] = "SELECT customer_id AS id, min(ts) AS first_seen FROM server_events FINAL GROUP BY id"


def server_where(q: StatsQuery, counted: bool = True) -> tuple[str, list]:
    """WHERE for server-event reports; `counted`: relation labels once per customer and item (COUNTED_ONCE)."""
    where, params = window_where(q, SERVER_EVENTS_TABLE)
    return f"{where} AND {q.source.sql('counted-once', COUNTED_ONCE)}" if counted else where, params


def server_scope(q: StatsQuery) -> tuple[str, str, list]:
    return (SERVER_EVENTS_TABLE.rows(q), *server_where(q))


def server_activity_scope(q: StatsQuery) -> tuple[str, str, list]:
    """Every server event, a repeated Like too: a customer who sent anything was active."""
    return (SERVER_EVENTS_TABLE.rows(q), *server_where(q, counted=False))


def new_customers(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    return bucketed(conn, q, "c.first_seen", "count(*)", CUSTOMERS_TABLE.rows(q), *window_where(q, CUSTOMERS_TABLE))


def summarise_server_events(conn: sqlite3.Connection, site: str | None, days: int, now: int, origins: list) -> None:
    """`prisme-lite stats`: server events per label, each like, bookmark or subscription counted once."""
    labels = conn.execute(
        "SELECT x.label, count(*), count(DISTINCT x.customer_id), max(x.ts) FROM server_events x"
        f" WHERE x.ts >= ? AND {COUNTED_ONCE} GROUP BY x.label ORDER BY 2 DESC, 1",
        (now - days * DAY_MS,),
    ).fetchall()
    if labels:
        print("\nserver events by label" + (" (of every site: they are not recorded per site)" if site else ""))
        print_table(
            ["  LABEL", "EVENTS", "CUSTOMERS", "LAST"],
            [
                (f"  {label}", f"{count:,}", f"{customers:,}", utc_date(last))
                for label, count, customers, last in labels
            ],
        )


register(Family(
    "server",
    routes=(post_server_events,),
    applier=lambda config: store_server_events,
    exports={"server": ("server_events", "ts", "", "rowid")},
    # A server event carries the time its sender gives (the README's example is from 2021): its time index.
    pruned=(("server_events", "server_events WHERE ts < ?", "rowid", "SELECT min(ts) FROM server_events", False),),
    invariants=(
        ("each like, bookmark or subscription has its customer", "SELECT customer_id FROM customer_relations"
         " WHERE customer_id NOT IN (SELECT id FROM customers) LIMIT 5"),
    ),
    filters=("label",),
    metrics={
        "server-events": series(server_scope, "x.ts", "count(*)"),
        "active-customers": series(server_activity_scope, "x.ts", "count(DISTINCT x.customer_id)"),
        "new-customers": new_customers,
        "top-server-labels": top(server_scope, "x.label"),
        "top-content-items": top(server_scope, "x.content_id"),
        "top-server-utm-sources": top(server_scope, "x.utm_source"),
    },
    panels=(("Server events", "top-server-labels", ("Label", "Events"), "label"),),
    summary=summarise_server_events,
    schemas={
        "ServerEvent": {"type": "object", "required": ["label", "customer"], "properties": {
            "label": TEXT, "timestamp": {"type": ["integer", "string"]},
            "content_item": {"type": "object", "properties": {"id": TEXT, "locale": TEXT}},
            "customer": {"type": "object", "properties": {"id": TEXT}, "required": ["id"]},
            **{field: TEXT for field in (
                "utm_medium", "utm_source", "utm_campaign", "utm_term", "utm_content", "rl", "sr")}}},
    },
    security={"accessToken": {"type": "apiKey", "in": "query", "name": "access_token"}},
))  # fmt: skip


###############################################################################
# Counters ####################################################################
###############################################################################

COUNTER_ID = re.compile(r"^[^\s/?#%\\\x00-\x1f\x7f]{1,128}$")  # one URL path segment, no control characters
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_COUNTER_IDS = 10_000
TOKEN_ISSUER = "prisme-lite"
TOKEN_LIFETIME = 3600  # seconds; a token is the same for a visitor for the whole clock hour
TOKEN_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]  # all required on decode
CLAIM_WINDOW_MS = 15 * MINUTE_MS  # a token counts once per action and page in this long
VERIFIED_TOKENS = 2048  # counter tokens whose signature and claims were checked, kept until they expire


def json_object(environ: dict, limit: int, missing: str | None = None) -> dict:
    """The body as a JSON object (json_body)."""
    value = json_body(environ, limit, missing)
    if not isinstance(value, dict):
        raise Rejected(400, "body must be a JSON object")
    return value


def text_field(body: dict, name: str, most: int = MAX_NAME_LENGTH) -> str:
    value = body.get(name)
    if not printable(value, most) or not value.strip():
        raise Rejected(400, f"{name} is required: a string of 1 to {most} printable characters")
    return value.strip()


def id_list(body: dict, name: str, reserved: frozenset = frozenset()) -> list[str]:
    values = body.get(name)
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise Rejected(400, f"{name} is required: a list of strings")
    if len(values) > MAX_COUNTER_IDS:
        raise Rejected(400, f"{name} has {len(values)} ids, over the limit of {MAX_COUNTER_IDS}")
    for value in values:
        if not COUNTER_ID.match(value):
            raise Rejected(
                400, f"{name}: {value[:140]!r} must be 1 to 128 characters without spaces, controls, / ? # % or \\"
            )
        if value.lower() in reserved:
            raise Rejected(400, f"{name}: {value!r} is reserved (it would shadow the /api/v1/{value} route)")
    return list(dict.fromkeys(values))


def client_view(client: dict) -> dict:
    """A client as the API shows it: everything but the secret."""
    return {
        "clientId": client["id"],
        "clientName": client["name"],
        "domainName": client["domain"],
        "emailId": client["email"],
        "validPageIds": json.loads(client["page_ids"]),
        "validActionIds": json.loads(client["action_ids"]),
    }


class CounterClients:
    """The registered counter clients, by id or domain, each read once and kept until a write changes one (register,
    configure: `changed`, after their transaction). Every increment looks its client up: under the writer's commits
    that statement cost a quarter of the route's time (py-spy on bench's counter load). Only this process writes
    them while it serves (lock_database); a client not found is not kept (a forged token's audience is not cached)."""

    LIMIT = 10_000  # clients kept; past it, all are forgotten at once (read again on use)

    def __init__(self, read: Callable[[], sqlite3.Connection]):
        self.read = read
        self.lock = threading.Lock()
        self.known: dict[tuple[str, str], dict] = {}
        self.generation = 0  # changed() since a read began: what it read may be older than the write, not kept

    def find(self, column: str, value: str) -> dict | None:
        client = self.known.get((column, value))
        if client is not None:
            return client
        generation = self.generation
        client = find_client(self.read(), column, value)
        if client is not None:
            with self.lock:
                if generation == self.generation:
                    if len(self.known) >= self.LIMIT:
                        self.known.clear()
                    self.known[column, value] = client
        return client

    def changed(self, _done: Future | None = None) -> None:
        """Forget every client (called by Writer.run once a write to them has ended, with its Future)."""
        with self.lock:
            self.generation += 1
            self.known.clear()


def find_client(conn: sqlite3.Connection, column: str, value: str) -> dict | None:
    assert column in ("id", "domain")
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute(f"SELECT * FROM counter_clients WHERE {column} = ?", (value,)).fetchone()
    finally:
        conn.row_factory = None
    return dict(row) if row else None


def authenticate_client(ctx: Context, client_id: Any, secret: Any) -> dict:
    """The client whose id and secret these are; 401 otherwise, in the same time whether or not the id exists."""
    if not isinstance(client_id, str) or not isinstance(secret, str):
        raise Rejected(400, "clientId and clientSecret are required strings")
    refuse_guessing(ctx)
    client = find_client(ctx.read(), "id", client_id)  # not the cache: a known id would answer sooner
    expected = client["secret_hash"] if client else hash_secret("no such client")
    if not hmac.compare_digest(hash_secret(secret), expected) or client is None:
        wrong_credential(ctx)
        raise Rejected(401, "unknown clientId or wrong clientSecret")
    return client


def insert_client(conn: sqlite3.Connection, client: dict) -> bool:
    cursor = conn.execute(
        "INSERT INTO counter_clients (id, name, domain, email, secret_hash, created_at)"
        " VALUES (:id, :name, :domain, :email, :secret_hash, :created_at) ON CONFLICT (domain) DO NOTHING",
        client,
    )
    return cursor.rowcount == 1


def configure_client(conn: sqlite3.Connection, client_id: str, page_ids: list, action_ids: list) -> dict:
    conn.execute(
        "UPDATE counter_clients SET page_ids = ?, action_ids = ? WHERE id = ?",
        (json.dumps(page_ids), json.dumps(action_ids), client_id),
    )
    return find_client(conn, "id", client_id)


def increment_counter(
    conn: sqlite3.Connection, client_id: str, action_id: str, page_id: str, jti: str, now: int
) -> tuple[int, int]:
    """Writer job: count one, unless this token already counted here in the last 15 minutes; the count after, and
    when the token's claim on it is over."""
    key = (client_id, action_id, page_id)
    counted = counted_already(conn, client_id, action_id, page_id, jti, now)
    if counted is not None:
        return counted
    conn.execute(
        "INSERT INTO counter_claims (jti, action_id, page_id, expires_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET expires_at = excluded.expires_at",
        (jti, action_id, page_id, now + CLAIM_WINDOW_MS),
    )
    conn.execute(
        "INSERT INTO counter_days (client_id, action_id, page_id, day, count) VALUES (?, ?, ?, ?, 1)"
        " ON CONFLICT DO UPDATE SET count = count + 1",
        (*key, now // DAY_MS),
    )
    count = conn.execute(
        "INSERT INTO counters (client_id, action_id, page_id, count) VALUES (?, ?, ?, 1)"
        " ON CONFLICT DO UPDATE SET count = count + 1 RETURNING count",
        key,
    ).fetchone()[0]
    return count, now + CLAIM_WINDOW_MS


def counted_already(
    conn: sqlite3.Connection, client_id: str, action_id: str, page_id: str, jti: str, now: int
) -> tuple[int, int] | None:
    """The count and when the claim is over, if this token has counted here within its 15 minutes (and so counts
    nothing now), else None.

    A request asks this on its own read connection before it queues an increment for the writer: a claim that is
    there and not over stays so until it is over (only the writer adds claims, and pruning takes over ones), so a
    replayed increment is answered without the writer's round trip, as the writer would answer it.
    """
    return conn.execute(
        "SELECT coalesce((SELECT count FROM counters WHERE client_id = ? AND action_id = ? AND page_id = ?), 0),"
        " expires_at FROM counter_claims WHERE jti = ? AND action_id = ? AND page_id = ? AND expires_at > ?",
        (client_id, action_id, page_id, jti, action_id, page_id, now),
    ).fetchone()


class CounterClaims:
    """The claims the writer committed (a token's increment of an action on a page, for 15 minutes) and the counts
    it committed with them, so that a replayed increment is answered from memory. The count is the latest committed
    one: only the writer's increments change counters, and each records here once committed (Writer.run's
    `committed`, in commit order). What is not here (older than this process, or forgotten at LIMIT) is asked of
    the database, as counted_already does. A statement on a reader connection was a third of a replay's time
    (py-spy on bench's counter load)."""

    LIMIT = 20_000  # claims, and counts, kept (some 5 MB); past it, all are forgotten at once

    def __init__(self) -> None:
        self.claims: dict[tuple[str, str, str], int] = {}  # (jti, action, page) → when the claim is over
        self.counts: dict[tuple[str, str, str], int] = {}  # (client, action, page) → its count

    def answer(self, client_id: str, action_id: str, page_id: str, jti: str, now: int) -> int | None:
        """The count, if this token has a claim here that is not over, as counted_already answers; else None."""
        over = self.claims.get((jti, action_id, page_id))
        return None if over is None or over <= now else self.counts.get((client_id, action_id, page_id))

    def recorder(self, client_id: str, action_id: str, page_id: str, jti: str) -> Callable[[Future], None]:
        """What Writer.run calls with increment_counter's outcome once its transaction has ended."""

        def record(done: Future) -> None:
            if done.exception() is not None:  # rolled back: nothing was counted
                return
            count, over = done.result()
            for kept in (self.claims, self.counts):
                if len(kept) >= self.LIMIT:
                    kept.clear()
            self.claims[jti, action_id, page_id] = over
            self.counts[client_id, action_id, page_id] = count

        return record


def prune_counter_claims(conn: sqlite3.Connection, now: int) -> None:
    """Writer maintenance: forget claims whose 15 minutes are over, a bounded slice at a time."""
    conn.execute(
        "DELETE FROM counter_claims WHERE (jti, action_id, page_id) IN"
        " (SELECT jti, action_id, page_id FROM counter_claims WHERE expires_at <= ? LIMIT 20000)",
        (now,),
    )


def make_counter_token(secret: bytes, client_id: str, subject: str, now_s: int) -> tuple[str, int]:
    """An HS256 JWT for `subject` at `client_id`, the same for the whole clock hour; and its seconds left."""
    issued = now_s - now_s % TOKEN_LIFETIME
    jti = hashlib.blake2b(f"{client_id}\0{subject}\0{issued}".encode(), key=secret, digest_size=16).hexdigest()
    claims = {
        "iss": TOKEN_ISSUER,
        "aud": client_id,
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + TOKEN_LIFETIME,
        "jti": jti,
    }
    return jwt.encode(claims, secret, algorithm="HS256"), issued + TOKEN_LIFETIME - now_s


def verify_counter_token(ctx: Context, token: str | None) -> tuple[dict, dict]:
    """The claims and client of a valid token; 401 for a missing, forged, expired or foreign one."""
    if not token:
        raise Rejected(401, "token missing: get one from /api/v1/token")
    verified = ctx.verified_tokens.get(token)
    if verified is not None and verified["exp"] <= time.time():  # PyJWT's rule: expired from `exp` on
        verified = None
    try:
        audience = verified["aud"] if verified else jwt.decode(token, options={"verify_signature": False}).get("aud")
    except jwt.PyJWTError:
        raise Rejected(401, "token is not a valid JWT") from None
    client = ctx.counter_clients.find("id", audience) if isinstance(audience, str) else None
    if client is None:
        raise Rejected(401, "token is not for a registered client")
    caller = counter_client_of_request(ctx)
    if caller is not None and caller["id"] != client["id"]:
        raise Rejected(401, f"token is for another client than {caller['domain']}")
    if verified:  # checked before, in full, against this client: its signature and claims have not changed
        return verified, client
    try:
        claims = jwt.decode(
            token,
            ctx.jwt_secret,
            algorithms=["HS256"],  # a fixed list: never "none", never what the token's header asks for
            audience=client["id"],
            issuer=TOKEN_ISSUER,
            options={"require": TOKEN_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise Rejected(401, "token expired: get a new one from /api/v1/token") from None
    except jwt.PyJWTError as error:
        raise Rejected(401, f"token is invalid: {error}") from None
    if not isinstance(claims["jti"], str):
        raise Rejected(401, "token is invalid: jti must be a string")
    if len(ctx.verified_tokens) >= VERIFIED_TOKENS:
        ctx.verified_tokens.clear()  # whole, as user-agents' cache is: no order to keep between threads
    ctx.verified_tokens[token] = {key: claims[key] for key in ("aud", "jti", "exp")}  # what a hit needs, small
    return claims, client


def counter_client_of_request(ctx: Context) -> dict | None:
    """The client whose domain the request comes from (Origin, else Referer), if any."""
    host = request_host(request.environ)
    return ctx.counter_clients.find("domain", host) if host else None


def request_host(environ: dict) -> str | None:
    """The host of the page a browser request comes from: its Origin, else its Referer."""
    return host_of(environ.get("HTTP_ORIGIN") or "") or host_of(environ.get("HTTP_REFERER") or "")


def configured_counter(client: dict, action_id: str, page_id: str) -> None:
    if action_id not in json.loads(client["action_ids"]):
        raise Rejected(404, f"{action_id} is not a valid action")
    if page_id not in json.loads(client["page_ids"]):
        raise Rejected(404, f"{page_id} is not a page configured for this client")


COUNTER_IDS = [
    parameter("action_id", "path", "a configured action", pattern=COUNTER_ID.pattern),
    parameter("page_id", "path", "a configured page", pattern=COUNTER_ID.pattern),
]


@route("/api/v1/register", "POST", doc={"post": operation(
    "counters", "register a counter client (admin token unless open registration)", answers(
        ok("registered; the secret is shown once", "application/json", schema_ref("Client"), 201),
        400, 401, 409, 413, 429, 503,
    ), security=[*BEARER, {}], body=json_request(schema_ref("Register")),
)})  # fmt: skip
@api()
def register_client(ctx: Context) -> dict:
    if not ctx.config["open_registration"]:
        require_admin(ctx)
    body = json_object(request.environ, ctx.config["max_body_bytes"])
    name = text_field(body, "clientName")
    try:
        domain = normalise_origin(text_field(body, "domainName", 253))
    except ValueError as error:
        raise Rejected(400, f"domainName: {error}") from None
    if domain.startswith("*."):
        raise Rejected(400, "domainName must be one host, not a wildcard")
    email = text_field(body, "emailId", 254)
    if not EMAIL.match(email):
        raise Rejected(400, f"emailId {email[:100]!r} is not an email address")
    client_id, secret = "cl_" + secrets.token_hex(8), "cs_" + secrets.token_urlsafe(32)
    client = {"id": client_id, "name": name, "domain": domain, "email": email, "secret_hash": hash_secret(secret)}
    if not ctx.writer.run(insert_client, {**client, "created_at": now_ms()}, committed=ctx.counter_clients.changed):
        raise Rejected(409, f"domainName {domain} is already registered")
    response.status = 201
    return {"clientId": client_id, "clientSecret": secret}


@route("/api/v1/configure", "POST", doc={"post": operation(
    "counters", "set a client's pages and actions",
    answers(ok("the configuration", "application/json", {"type": "object"}), 400, 401, 413, 429, 503),
    body=json_request(schema_ref("Configure")),
)})  # fmt: skip
@api()
def configure_counters(ctx: Context) -> dict:
    body = json_object(request.environ, ctx.config["max_body_bytes"])
    client = authenticate_client(ctx, body.get("clientId"), body.get("clientSecret"))
    page_ids = id_list(body, "validPageIds")
    action_ids = id_list(body, "validActionIds", reserved_action_ids())
    configured = ctx.writer.run(
        configure_client, client["id"], page_ids, action_ids, committed=ctx.counter_clients.changed
    )
    return client_view(configured)


TOKEN_ANSWERS = answers(
    ok("a token; for a bot or a client that is no browser, an empty body and X-Prisme-Dropped: bot",
       "application/json", schema_ref("Token")),
    400, 401, 413, 429,
)  # fmt: skip


@route("/api/v1/token", ("GET", "POST"), doc={
    "get": operation("counters", "a counter token for this visitor (one hour)", TOKEN_ANSWERS, parameters=[
        parameter("clientId", "query", "else the client of the Origin/Referer domain"),
        parameter("clientSecret", "query", "with clientId"),
    ]),
    "post": operation("counters", "a counter token for this visitor (one hour)", TOKEN_ANSWERS, parameters=[],
                      body=json_request({"type": "object"}, required=False)),
})  # fmt: skip
@api(AS_JSON, rate_limited=True)  # one bucket with the likes it leads to: a new User-Agent is no new allowance
def issue_counter_token(ctx: Context) -> dict:
    environ = request.environ
    if request.method == "POST":
        given = json_object(environ, ctx.config["max_body_bytes"])
    else:
        query = query_pairs(environ)
        given = {key: query_value(query, key) for key in ("clientId", "clientSecret")}
    if given.get("clientId") is not None or given.get("clientSecret") is not None:
        client = authenticate_client(ctx, given.get("clientId"), given.get("clientSecret"))
    else:
        host = request_host(environ)
        if not host:
            raise Rejected(400, "send the request from your registered domain (Origin), or clientId and clientSecret")
        client = ctx.counter_clients.find("domain", host)
        if client is None:
            raise Rejected(401, f"no client is registered for the domain {host}")
    user_agent, _agent = countable_agent(environ)  # a bot or a script gets no token
    now_s = now_ms() // 1000
    visitor = make_visitor_id(ctx.salt.for_time(now_s * 1000), client["id"], environ["prisme.client_ip"], user_agent)
    token, expires_in = make_counter_token(ctx.jwt_secret, client["id"], visitor, now_s)
    return {"token": token, "expiresIn": expires_in}


@route("/api/v1/<action_id>/<page_id>/increment", "POST", doc={"post": operation(
    "counters", "count once per token, action and page in 15 minutes", answers(
        ok("the count; for a bot or a client that is no browser, nothing counted, an empty body and"
           " X-Prisme-Dropped: bot", "application/json", schema_ref("Count")),
        400, 401, 404, 413, 429, 503,
    ), parameters=COUNTER_IDS,
    body=json_request({"type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]}),
)})  # fmt: skip
@api(AS_JSON, rate_limited=True)
def increment_action(ctx: Context, action_id: str, page_id: str) -> dict:
    # The seed: 400 for a missing body, 401 for a body without a (valid) token.
    missing = 'body is missing: send {"token": "<a token from /api/v1/token>"}'
    body = json_object(request.environ, ctx.config["max_body_bytes"], missing)
    token = body.get("token")
    if token is not None and not isinstance(token, str):
        raise Rejected(400, "token must be a string")
    claims, client = verify_counter_token(ctx, token)
    configured_counter(client, action_id, page_id)
    countable_agent(request.environ)  # a browser's token replayed by a script counts nothing
    args = (client["id"], action_id, page_id, claims["jti"], now_ms())
    count = ctx.counter_claims.answer(*args)
    if count is None:
        counted = counted_already(ctx.read(), *args) or ctx.writer.run(
            increment_counter, *args, committed=ctx.counter_claims.recorder(*args[:4])
        )
        count = counted[0]
    return {"count": count}


@route("/api/v1/<action_id>/<page_id>/value", doc={"get": operation(
    "counters", "the count", answers(ok("the count", "application/json", schema_ref("Count")), 400, 401, 404, 429),
    security=[{"counterToken": []}], parameters=COUNTER_IDS,
)})  # fmt: skip
@api()
def action_value(ctx: Context, action_id: str, page_id: str) -> dict:
    _claims, client = verify_counter_token(ctx, bearer_token(request.environ))
    configured_counter(client, action_id, page_id)
    row = (
        ctx.read()
        .execute(
            "SELECT count FROM counters WHERE client_id = ? AND action_id = ? AND page_id = ?",
            (client["id"], action_id, page_id),
        )
        .fetchone()
    )
    return {"count": row[0] if row else 0}


def counter_site(conn: sqlite3.Connection, q: StatsQuery) -> tuple[str, list]:
    """A counter belongs to the site its client's domainName belongs to, by the rule the web events follow."""
    site_of = q.site_of or (lambda host: host)
    ids = [i for i, domain in conn.execute("SELECT id, domain FROM counter_clients") if site_of(domain) == q.site]
    return f"d.client_id IN ({placeholders(ids)})" if ids else "0", ids


COUNTER_DAYS_TABLE = Table("counter_days d", "d.day", counter_site, {"client": "d.client_id"}, unit=DAY_MS)
CLICKHOUSE.views["counter_days"] = "SELECT client_id, action_id, page_id, day, count FROM counter_increments FINAL"


def counter_totals(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    """Increments in the window per client, action and page (`client action page` keys); details name the client
    (its name and domain, the id of one no longer registered)."""
    where, params = window_where(q, COUNTER_DAYS_TABLE, configured(conn))
    keys, values = ranked(
        conn,
        q,
        "d.client_id || ' ' || d.action_id || ' ' || d.page_id",
        "sum(d.count)",
        COUNTER_DAYS_TABLE.rows(q),
        where,
        params,
    )
    clients = {
        id_: (name, domain)
        for id_, name, domain in configured(conn).execute("SELECT id, name, domain FROM counter_clients")
    }
    details = []
    for key, added in zip(keys, values, strict=True):
        client_id, action_id, page_id = key.split(" ", 2)
        name, domain = clients.get(client_id, (client_id, None))
        details.append({"client": name, "domain": domain, "action": action_id, "page": page_id, "added": added})
    return keys, values, details


def counter_series(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    """Increments per bucket; counters are kept per day, so a bucket is at least a day."""
    q = replace(q, step=max(q.step, DAY_MS))
    where, params = window_where(q, COUNTER_DAYS_TABLE, configured(conn))
    return bucketed(conn, q, f"(d.day * {DAY_MS})", "sum(d.count)", COUNTER_DAYS_TABLE.rows(q), where, params)


def summarise_counters(conn: sqlite3.Connection, site: str | None, days: int, now: int, origins: list) -> None:
    """`prisme-lite stats`: the counters most added to in these days (with `site`, those of its clients)."""
    site_of = OriginRegistry(list(origins), lambda: conn).site_of
    counters = [
        row
        for row in conn.execute(
            "SELECT cl.domain, d.action_id, d.page_id, sum(d.count) FROM counter_days d"
            " JOIN counter_clients cl ON cl.id = d.client_id WHERE d.day >= ? GROUP BY 1, 2, 3 ORDER BY 4 DESC",
            ((now - days * DAY_MS) // DAY_MS,),
        )
        if not site or site_of(row[0]) == site
    ][:10]
    if counters:
        print("\ncounters (added in these days)")
        print_table(["  DOMAIN", "ACTION", "PAGE", "ADDED"], [(f"  {d}", a, p, f"{n:,}") for d, a, p, n in counters])


register(Family(
    "counters",
    routes=(register_client, configure_counters, issue_counter_token, increment_action, action_value),
    maintenance=(lambda config: prune_counter_claims,),
    invariants=(
        ("each counter equals the sum of its days", "SELECT c.client_id || ' ' || c.action_id || ' ' || c.page_id"
         " FROM counters c"
         " LEFT JOIN (SELECT client_id, action_id, page_id, sum(count) n FROM counter_days GROUP BY 1, 2, 3) d"
         " USING (client_id, action_id, page_id) WHERE c.count != coalesce(d.n, 0) LIMIT 5"),
    ),
    filters=("client",),
    metrics={"counters": counter_totals, "counter-increments": counter_series},
    panels=(("Counters", "counters", ("Client", "Domain", "Action", "Page", "Added"), "client "),),
    summary=summarise_counters,
    schemas={
        "Count": {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]},
        "Token": {"type": "object", "properties": {"token": TEXT, "expiresIn": {"type": "integer"}},
                  "required": ["token", "expiresIn"]},
        "Register": {"type": "object", "required": ["clientName", "domainName", "emailId"], "properties": {
            "clientName": TEXT, "domainName": TEXT, "emailId": TEXT}},
        "Client": {"type": "object", "properties": {"clientId": TEXT, "clientSecret": TEXT},
                   "required": ["clientId", "clientSecret"]},
        "Configure": {"type": "object", "required": ["clientId", "clientSecret"], "properties": {
            "clientId": TEXT, "clientSecret": TEXT, "validPageIds": {"type": "array", "items": TEXT},
            "validActionIds": {"type": "array", "items": TEXT}}},
    },
    security={"counterToken": {"type": "apiKey", "in": "header", "name": "Authorization"}},
))  # fmt: skip


###############################################################################
# Widget tracking #############################################################
###############################################################################

WIDGET_ACTIONS = frozenset({"render", "move", "upload_click", "filter_click", "view_all"})
MEDIA_ACTIONS = frozenset({"render", "view", "move", "click", "close", "play_click", "shop"})
WIDGET_PATH = re.compile(
    r"^widget/(?P<instance>[^/]+)/(?:(?P<widget>category|stream)/(?P<source>[^/]+)|(?P<best>best))"
    r"(?:/media/(?P<media>[^/]+))?/(?P<action>[^/.]+)(?P<fmt>\.json|\.gif)?$"
)
CHECKOUT_PATH = re.compile(r"^transaction/(?P<transaction>[^/]+)/checkout(?P<fmt>\.json|\.gif)?$")
INSTANCE_ID = re.compile(r"^[A-Za-z0-9_.~-]{1,64}$")
INTEGER_ID = re.compile(r"^[0-9]{1,18}$")
AMOUNT = re.compile(r"^[0-9]{1,12}(?:\.[0-9]{1,4})?$")  # up to 4 decimals: ISO 4217 minor units go to 4
MAX_SEGMENTS = 20
MAX_PRODUCTS = 100
OLAPIC_MESSAGES = {
    200: "OK", 302: "Found", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
    413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}  # fmt: skip
# ISO 4217 alphabetic codes in use (funds and metals included; XTS and XXX, "testing" and "no currency", are not).
CURRENCIES = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD
    CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP
    GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP
    LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
    PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS
    TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD
    XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG ZWL""".split()
)
WIDGET_EVENT_COLUMNS = (
    "ts", "instance_id", "widget", "source_id", "media_id", "action", "analytics_id", "pics", "ab_testing",
    "segments", "redirect_host", "token_id",
)  # fmt: skip


def olapic_envelope(code: int, analytics_id: str) -> str:
    """The widget API's answer: metadata, and data with the time and the analytics id."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-2]  # 2014-06-25 15:19:08.3000
    metadata = {"code": code, "message": OLAPIC_MESSAGES.get(code, ""), "version": "v1.0"}
    response.content_type = "application/json"
    return json.dumps({"metadata": metadata, "data": {"timestamp": stamp, "analytics_id": analytics_id}})


def olapic_error(status: int, message: str) -> str:
    """Seed's 400 body, plus the parameter at fault in `detail`; other refusals keep the metadata envelope."""
    if status == 400:
        return json.dumps([{"error": "Invalid params", "detail": message}])
    metadata = {"code": status, "message": OLAPIC_MESSAGES.get(status, ""), "version": "v1.0"}
    return json.dumps({"metadata": metadata, "error": message})


def olapic_refusal(status: int, message: str) -> str:
    response.content_type = "application/json"
    return olapic_error(status, message)


def olapic_dropped() -> str:
    """A beacon that is not counted (a bot's) is answered as a counted one, with the analytics_id it sent (checked
    before anything is dropped)."""
    return olapic_envelope(200, query_value(query_pairs(request.environ), "analytics_id") or "")


def olapic_documented(status: int) -> dict:
    """A widget's .gif request is refused with the pixel, any other with the envelope."""
    return {
        "application/json": {"schema": schema_ref("OlapicInvalid" if status == 400 else "OlapicError")},
        **GIF_CONTENT,
    }


AS_OLAPIC = Shape(olapic_dropped, olapic_refusal, olapic_documented)


def public_token(ctx: Context, query: list[tuple[str, str]]) -> dict:
    """The site's public auth_token (scope track_public): 403 when missing, unknown or of another scope."""
    token = query_value(query, "auth_token")
    found = ctx.known_tokens.get(token) if token else None
    if found is not None:
        refuse_guessing(ctx)  # as token_identity asks first
        return found
    counter = ctx.known_tokens.counter()  # before the lookup: a revoke committed meanwhile moves it
    found = token_identity(ctx, token) if token else None
    if found is None or "track_public" not in found["scopes"]:
        raise Rejected(
            403, "auth_token missing or not a public tracking token (`prisme-lite tokens create --scope track_public`)"
        )
    ctx.known_tokens.add(token, found, counter)
    return found


def int_param(value: str | None, name: str, required: bool) -> int | None:
    if value is None or value == "":
        if required:
            raise Rejected(400, f"{name} is required: an integer >= 0")
        return None
    if not INTEGER_ID.match(value):
        raise Rejected(400, f"{name} must be an integer >= 0, got {value[:40]!r}")
    return int(value)


def segments_param(query: list[tuple[str, str]]) -> str | None:
    """`segments[]=key:value` (or `segment`): one value per key, as a JSON object."""
    segments: dict[str, str] = {}
    for key, value in query:
        if key not in ("segments[]", "segments", "segment", "segment[]"):
            continue
        name, colon, given = value.partition(":")
        if not colon or not printable(name, 64) or not printable(given, 128):
            raise Rejected(400, f"segment {value[:80]!r} must be key:value (key up to 64, value up to 128 characters)")
        if name in segments:
            raise Rejected(400, f"segment key {name!r} has more than one value")
        segments[name] = given
    if len(segments) > MAX_SEGMENTS:
        raise Rejected(400, f"{len(segments)} segments is over the limit of {MAX_SEGMENTS}")
    return json.dumps(segments, ensure_ascii=False, separators=(",", ":")) if segments else None


def analytics_id_param(query: list[tuple[str, str]]) -> str:
    value = query_value(query, "analytics_id")
    if not printable(value, 64):
        raise Rejected(400, "analytics_id is required: an opaque string of 1 to 64 characters")
    return value


def amount_e4(text: str) -> int:
    """`120.50` as 1205000: exact, in units of 1/10,000."""
    whole, _dot, fraction = text.partition(".")
    return int(whole) * 10_000 + int(fraction.ljust(4, "0") or 0)


def store_widget_events(conn: sqlite3.Connection, events: list[dict]) -> None:
    """Writer applier: widget and media beacons, as they came."""
    insert_rows(
        conn, "widget_events", WIDGET_EVENT_COLUMNS, [tuple(e[c] for c in WIDGET_EVENT_COLUMNS) for e in events]
    )


def store_checkout(conn: sqlite3.Connection, checkout: dict, products: list[tuple[str, int]]) -> bool:
    """Writer job: store a checkout and its products, unless its transaction is already stored (then False)."""
    cursor = conn.execute(
        "INSERT INTO checkouts (transaction_id, ts, analytics_id, currency, total_e4, referrer, segments, token_id)"
        " VALUES (:transaction_id, :ts, :analytics_id, :currency, :total_e4, :referrer, :segments, :token_id)"
        " ON CONFLICT DO NOTHING",
        checkout,
    )
    if cursor.rowcount == 0:
        return False
    insert_rows(
        conn, "checkout_products", ("transaction_id", "line", "product_id", "amount_e4"),
        [(checkout["transaction_id"], line, product, amount) for line, (product, amount) in enumerate(products, 1)],
    )  # fmt: skip
    return True


def widget_paths() -> dict:
    """The Olapic paths the /track/ route answers: each widget with its widget and media actions, and the checkout."""
    token = parameter("auth_token", "query", "a public token (scope track_public)", required=True)
    common = [
        token,
        parameter("analytics_id", "query", "the visitor's id", required=True, pattern=PRINTABLE, maxLength=64),
        # The seed's own examples send `ab_testing=` when the widget runs no A/B test.
        may_be_empty(parameter("ab_testing", "query", "A/B group", type="integer", minimum=0), "no group"),
        parameter("segments[]", "query", "key:value", type="array", items={"type": "string"}),
    ]
    pics = parameter("pics", "query", "photos shown", required=True, type="integer", minimum=0)

    def actions(names: Iterable[str]) -> dict:
        return {"type": "string", "enum": sorted(f"{name}{fmt}" for name in names for fmt in ("", ".json", ".gif"))}

    def beacon(summary: str, ids: list[str], action_names: Iterable[str], extra: list[dict]) -> dict:
        path_ids = [
            parameter(name, "path", "the widget instance", pattern=INSTANCE_ID.pattern)
            if name == "instance_id"
            else parameter(name, "path", name.replace("_", " "), type="integer", minimum=0)
            for name in ids
        ]
        envelope = ok("counted", "application/json", schema_ref("OlapicSuccess"))
        envelope["200"]["content"].update(GIF_CONTENT)
        return {"get": operation(
            "widgets", summary, answers({**envelope, **REDIRECT_ANSWER}, 400, 403, 404, 409, 429, 503, shape=AS_OLAPIC),
            parameters=[*path_ids, parameter("action", "path", "action and format", **actions(action_names)),
                        *common, *extra],
        )}  # fmt: skip

    redirect = parameter("redirect_url", "query", "shop: where to send the visitor (a registered host)")
    paths = {}
    for widget, ids in (("category", ["category_id"]), ("stream", ["stream_id"]), ("best", [])):
        base = "/track/widget/{instance_id}/" + widget + "".join(f"/{{{name}}}" for name in ids)
        paths[base + "/{action}"] = beacon(f"{widget} widget action", ["instance_id", *ids], WIDGET_ACTIONS, [pics])
        paths[base + "/media/{media_id}/{action}"] = beacon(
            f"{widget} widget media action", ["instance_id", *ids, "media_id"], MEDIA_ACTIONS, [pics, redirect]
        )
    paths["/track/widget/{instance_id}/stream/not_found/{action}"] = beacon(
        "a stream that was not found", ["instance_id"], ["render"], []
    )
    paths["/track/transaction/{transaction_id}/{action}"] = beacon(
        "a checkout",
        [],
        ["checkout"],
        [
            parameter("transaction_id", "path", "the shop's id", pattern=PRINTABLE, maxLength=MAX_NAME_LENGTH),
            parameter("products[]", "query", "id:amount", required=True, type="array", items={"type": "string"}),
            may_be_empty(
                parameter("currency_code", "query", "ISO 4217, any case (default USD)", pattern="^[A-Za-z]{3}$"),
                "USD",
            ),
            parameter("referrer", "query", "the page of the checkout"),
        ],
    )
    return paths


def tracked(path: str) -> re.Match | None:
    """The widget action or the checkout a /track/ path names; None for a path no tracking route takes."""
    widget = WIDGET_PATH.match(path)
    if widget:
        return widget if widget_action_exists(widget) else None
    return CHECKOUT_PATH.match(path)


def track_shape(path: str) -> Shape:
    """A tracking route's path ending in .gif is answered with the pixel, even when refused; any other with JSON."""
    found = tracked(path)
    return AS_PIXEL if found and found["fmt"] == ".gif" else AS_OLAPIC


def counted(found: re.Match, analytics_id: str) -> Any:
    """What a stored beacon is answered with: the pixel for a .gif path, else the envelope."""
    return pixel() if found["fmt"] == ".gif" else olapic_envelope(200, analytics_id)


@route("/track/<path:path>", paths=widget_paths())
@api(track_shape, rate_limited=True)
def track(ctx: Context, path: str) -> Any:
    environ = request.environ
    found = tracked(path)
    if found is None:
        raise Rejected(404, f"no tracking route /track/{path[:200]}")
    query = query_pairs(environ)
    token = public_token(ctx, query)
    analytics_id = analytics_id_param(query)
    if found.re is CHECKOUT_PATH:
        return track_checkout(ctx, found, query, token, analytics_id)
    widget = found
    not_found = widget["source"] == "not_found"
    if not INSTANCE_ID.match(widget["instance"]):
        raise Rejected(400, "instance_id must be 1 to 64 letters, digits, or . _ ~ -")
    event = {
        "ts": now_ms(),
        "instance_id": widget["instance"],
        "widget": widget["widget"] or "best",
        "source_id": None
        if not_found or widget["best"]
        else int_param(widget["source"], f"{widget['widget']}_id", True),
        "media_id": int_param(widget["media"], "media_id", True) if widget["media"] is not None else None,
        "action": widget["action"],
        "analytics_id": analytics_id,
        "pics": int_param(query_value(query, "pics"), "pics", required=not not_found),
        "ab_testing": int_param(query_value(query, "ab_testing"), "ab_testing", required=False),
        "segments": segments_param(query),
        "redirect_host": None,
        "token_id": token["id"],
    }
    redirect_to = query_value(query, "redirect_url") if widget["action"] == "shop" else None
    if redirect_to:
        redirect_to, event["redirect_host"] = redirect_location(redirect_to, "redirect_url", ctx.redirect_hosts)
    countable_agent(environ)
    ctx.writer.append("widget", event)
    if redirect_to:
        response.status = 302
        response.set_header("Location", redirect_to)
        return "" if found["fmt"] == ".gif" else olapic_envelope(302, analytics_id)
    return counted(widget, analytics_id)


def widget_action_exists(widget: re.Match) -> bool:
    if widget["source"] == "not_found":
        return widget["widget"] == "stream" and widget["media"] is None and widget["action"] == "render"
    return widget["action"] in (MEDIA_ACTIONS if widget["media"] is not None else WIDGET_ACTIONS)


def track_checkout(ctx: Context, found: re.Match, query: list, token: dict, analytics_id: str) -> Any:
    transaction = found["transaction"]
    if not printable(transaction):
        raise Rejected(400, f"transaction_id must be 1 to {MAX_NAME_LENGTH} printable characters")
    products = []
    for key, value in query:
        if key in ("products[]", "products"):
            product, colon, amount = value.rpartition(":")
            if not colon or not printable(product) or not AMOUNT.match(amount):
                raise Rejected(400, f"product {value[:80]!r} must be id:amount, like product-123:120.50")
            products.append((product, amount_e4(amount)))
    if not 1 <= len(products) <= MAX_PRODUCTS:
        raise Rejected(400, f"products[] is required: 1 to {MAX_PRODUCTS} of id:amount, got {len(products)}")
    currency = (query_value(query, "currency_code") or "USD").upper()
    if currency not in CURRENCIES:
        raise Rejected(400, f"currency_code {currency[:10]!r} is not an ISO 4217 currency code")
    page = query_value(query, "referrer")  # the page of the checkout, kept as host and path
    if page:
        _parts, host = split_http_url(page, "referrer")
        page = host + normalise_path(_parts.path)
    checkout = {
        "transaction_id": transaction,
        "ts": now_ms(),
        "analytics_id": analytics_id,
        "currency": currency,
        "total_e4": sum(amount for _product, amount in products),
        "referrer": page or None,
        "segments": segments_param(query),
        "token_id": token["id"],
    }
    countable_agent(request.environ)
    if not ctx.writer.run(store_checkout, checkout, products):
        raise Rejected(409, f"transaction {transaction} is already recorded")
    return counted(found, analytics_id)


# Widget beacons and checkouts store no page they were sent from.
WIDGETS_NOTE = "Widget beacons and checkouts are not recorded per site: these are every site's."
WIDGET_EVENTS_TABLE = Table("widget_events w", "w.ts", None, {"instance": "w.instance_id"}, WIDGETS_NOTE)
CHECKOUTS_TABLE = Table("checkouts c", "c.ts", None, {}, WIDGETS_NOTE)


def widget_table(group: str, label: str) -> Callable:
    """Per `group`: renders, interactions (every other action) and click-through rate; values are the renders."""

    def metric(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
        where, params = window_where(q, WIDGET_EVENTS_TABLE)
        rows = conn.execute(
            f"SELECT {group} AS k, sum(w.action = 'render') AS renders, sum(w.action != 'render') AS acts"
            f" FROM {WIDGET_EVENTS_TABLE.rows(q)} WHERE {where} AND k IS NOT NULL"
            " GROUP BY k ORDER BY renders DESC, acts DESC, k LIMIT ?",
            [*params, q.limit],
        ).fetchall()
        details = [
            {label: key, "renders": renders, "interactions": acts, "ctr": round(acts / renders, 4) if renders else None}
            for key, renders, acts in rows
        ]
        return [row[0] for row in rows], [row[1] for row in rows], details

    return metric


def top_media(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    where, params = window_where(q, WIDGET_EVENTS_TABLE)
    rows = conn.execute(
        "SELECT w.media_id AS k, sum(w.action = 'view') AS views, sum(w.action = 'click') AS clicks,"
        f" sum(w.action = 'shop') FROM {WIDGET_EVENTS_TABLE.rows(q)}"
        f" WHERE {where} AND k IS NOT NULL GROUP BY k ORDER BY views DESC, clicks DESC, k LIMIT ?",
        [*params, q.limit],
    ).fetchall()
    details = [{"media_id": m, "views": v, "clicks": c, "shop_clicks": s} for m, v, c, s in rows]
    return [row[0] for row in rows], [row[1] for row in rows], details


def decimal_text(amount_e4: int) -> str:
    """1205000 → "120.50": exact, at least two decimals."""
    whole, fraction = divmod(amount_e4, 10_000)
    return f"{whole}.{fraction:04d}".rstrip("0").ljust(len(str(whole)) + 3, "0")


def revenue(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    """Checkouts and revenue per currency; values are the revenue as exact decimal strings."""
    where, params = window_where(q, CHECKOUTS_TABLE)
    rows = conn.execute(
        f"SELECT c.currency AS k, count(*), sum(c.total_e4) AS total FROM {CHECKOUTS_TABLE.rows(q)} WHERE {where}"
        " GROUP BY k ORDER BY total DESC, k",
        params,
    ).fetchall()
    details = [{"currency": c, "checkouts": n, "revenue": decimal_text(total)} for c, n, total in rows]
    return [row[0] for row in rows], [decimal_text(row[2]) for row in rows], details


CONVERSION = (
    "SELECT count(*), sum(EXISTS (SELECT 1 FROM widget_events w WHERE w.analytics_id = c.analytics_id"
    " AND w.ts <= c.ts AND w.action != 'render')) FROM checkouts c WHERE {where}"
)
# ClickHouse has no correlated subqueries: each analytics_id's first interaction, joined to the checkouts.
CLICKHOUSE.views["conversion"] = (
    "SELECT count(), sum(first_interaction != 0 AND first_interaction <= c.ts) FROM checkouts AS c FINAL"
    " ANY LEFT JOIN (SELECT analytics_id, min(ts) AS first_interaction FROM widget_events FINAL"
    " WHERE action != 'render' GROUP BY analytics_id) AS f USING (analytics_id) WHERE {where}"
)


def conversion(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    """Checkouts, and those whose analytics_id interacted with a widget (any action but render) before them."""
    where, params = window_where(q, CHECKOUTS_TABLE)
    total, converted = conn.execute(q.source.sql("conversion", CONVERSION).format(where=where), params).fetchone()
    rate = round((converted or 0) / total, 4) if total else None
    return ["checkouts", "after_widget_interaction"], [total, converted or 0], [{"conversion_rate": rate}]


def widget_segments(conn: sqlite3.Connection, q: StatsQuery) -> tuple:
    """Renders and interactions per segment key:value."""
    where, params = window_where(q, WIDGET_EVENTS_TABLE)
    found = object_members(conn, "''", "w.segments", WIDGET_EVENTS_TABLE.rows(q), where, params,
                           ("sum(w.action = 'render')", "sum(w.action != 'render')"))  # fmt: skip
    segments: dict[str, list] = {}
    for (_group, key, value), (renders, interactions) in found.items():
        totals = segments.setdefault(f"{key}:{value}", [0, 0])
        totals[:] = [totals[0] + renders, totals[1] + interactions]
    rows = sorted(((k, r, i) for k, (r, i) in segments.items()), key=lambda row: (-row[1], -row[2], row[0]))
    rows = rows[: q.limit]
    details = [
        {"segment": k, "renders": r, "interactions": i, "ctr": round(i / r, 4) if r else None} for k, r, i in rows
    ]
    return [row[0] for row in rows], [row[1] for row in rows], details


# A checkout with its products: a JSON list of `id:amount` in the order given, amounts exact to 4 decimals.
CHECKOUTS_EXPORTED = (
    "(SELECT c.*, (SELECT json_group_array(product) FROM (SELECT p.product_id || ':' || (p.amount_e4 / 10000) || '.'"
    " || printf('%04d', p.amount_e4 % 10000) AS product FROM checkout_products p"
    " WHERE p.transaction_id = c.transaction_id ORDER BY p.line)) AS products FROM checkouts c)"
)


register(Family(
    "widget",
    routes=(track,),
    applier=lambda config: store_widget_events,
    exports={
        "widget": ("widget_events", "ts", "", "rowid"),
        "checkouts": (CHECKOUTS_EXPORTED, "ts", "", "ts, transaction_id"),  # WITHOUT ROWID: in time order (its index)
    },
    # Beacons are stored as they arrive: the first row is the oldest. Checkout products go with their checkout.
    pruned=(
        ("widget_events", "widget_events WHERE ts < ?", "rowid",
         "SELECT ts FROM widget_events ORDER BY rowid LIMIT 1", True),
        ("checkout_products", "checkouts WHERE ts < ?", "transaction_id", "SELECT min(ts) FROM checkouts", False),
        ("checkouts", "checkouts WHERE ts < ?", "transaction_id", "SELECT min(ts) FROM checkouts", False),
    ),
    invariants=(
        ("each checkout's total is the sum of its products", "SELECT c.transaction_id FROM checkouts c"
         " LEFT JOIN (SELECT transaction_id, sum(amount_e4) n FROM checkout_products GROUP BY 1) p"
         " USING (transaction_id) WHERE c.total_e4 != coalesce(p.n, 0) LIMIT 5"),
    ),
    filters=("instance",),
    metrics={
        "widget-renders": lambda conn, q: bucketed(
            conn, q, "w.ts", "sum(w.action = 'render')", WIDGET_EVENTS_TABLE.rows(q),
            *window_where(q, WIDGET_EVENTS_TABLE),
        ),  # fmt: skip
        "checkouts": lambda conn, q: bucketed(
            conn, q, "c.ts", "count(*)", CHECKOUTS_TABLE.rows(q), *window_where(q, CHECKOUTS_TABLE)
        ),
        "top-widgets": widget_table("w.instance_id || ' (' || w.widget || ')'", "widget"),
        "top-media": top_media,
        "revenue": revenue,
        "conversion": conversion,
        "widget-segments": widget_segments,
        "widget-ab-groups": widget_table("w.ab_testing", "ab_testing"),
    },
    panels=(
        ("Widgets", "top-widgets", ("Widget", "Renders", "Interactions", "CTR"), "instance ("),
        ("Revenue", "revenue", ("Currency", "Checkouts", "Revenue"), ""),
    ),
    schemas={
        "OlapicSuccess": {"type": "object", "required": ["metadata", "data"], "properties": {
            "metadata": {"type": "object"}, "data": {"type": "object"}}},
        "OlapicInvalid": {"type": "array", "items": {"type": "object", "properties": {
            "error": TEXT, "detail": TEXT}}},
        "OlapicError": {"type": "object", "properties": {"metadata": {"type": "object"}, "error": TEXT}},
    },
))  # fmt: skip


###############################################################################
# Stats and reports ###########################################################
###############################################################################

METRICS: dict[str, Callable[[sqlite3.Connection, StatsQuery], tuple]] = {
    name: metric for family in FAMILIES for name, metric in family.metrics.items()
}
LIVE_WINDOW = "now-30m"


def require_reader(ctx: Context) -> None:
    """The admin token, an access token with stats_read (or admin), or the dashboard's login cookie."""
    token = bearer_token(request.environ)
    if not token and dashboard_login_valid(ctx):
        return
    authorize(ctx, "stats_read", token)


STATS_QUERY = [
    parameter("from", "query", "start: now, now-7d, now-6d/d, RFC 3339 or YYYY-MM-DD (default now-7d)"),
    parameter("to", "query", "end, exclusive, same forms (default now; now/d+1d is the end of today)"),
    parameter("site", "query", "one registered origin (default: all)"),
    may_be_empty(
        parameter("limit", "query", "rows of a top-N list", type="integer", minimum=1, maximum=MAX_LIMIT),
        f"the default, {DEFAULT_LIMIT}",
    ),
    *(parameter(name, "query", "filter: a comma list of values") for name in stats_filters()),
]


METRIC_MEANING = (
    "what to count. top-referrers and top-utm-* count pageviews by their own referrer and campaign (a click to the"
    " site's next page is `direct`); top-visit-referrers and top-visit-utm-* count visits (sessions started in the"
    " window) by what their first pageview came from, and the filters visit-referrer and visit-utm-* keep every event"
    " of those visits. The filters event, outbound-link and file-download keep the visits that sent that custom"
    " event, link click or download (and those events). custom-event-properties: `property=value` keys by count for"
    " the custom events that `event` names (every custom event without it), details [{event, property, value,"
    " count}], a value as text (JSON for numbers, booleans, lists and objects). live-count: the distinct visitors"
    " of any event in the window (default the last 30 minutes), one key `visitors`. top-site-pages: top-pages by site"
    " and path (`site path` keys), details [{site, path, pageviews}]. counters' details name each client."
)


# A shared dashboard's reads need no other credential; a token unknown, expired or revoked is 404, like a wrong link.
SHARE_PARAMETER = parameter("X-Prisme-Share", "header", (
    "instead of a credential, a shared dashboard's token (`share create`): its site's cards, chart and tables only,"
    ' each count under share_min_count as the string "< N", a rate or average of one null, table rows under it left'
    " out; 404 when the token is unknown, expired or revoked, 403 for another site"))  # fmt: skip


def stats_operation(summary: str, schema: str, parameters: list[dict]) -> dict:
    return {"get": operation(
        "read", summary, answers(ok("the series or list", "application/json", schema_ref(schema)), 400, 401, 403, 404,
                                 429),
        security=[*BEARER, {"dashboard": []}], parameters=[*parameters, SHARE_PARAMETER],
    )}  # fmt: skip


# One route; the metrics whose answer has a shape of its own (goals) are documented at their own path too.
@route("/api/v1/stats/<metric>", paths={
    "/api/v1/stats/{metric}": stats_operation(
        "a time series or a top-N list", "Stats",
        [parameter("metric", "path", METRIC_MEANING, enum=list(METRICS)), *STATS_QUERY],
    ),
    **{f"/api/v1/stats/{metric}": stats_operation(f"the {metric} report", schema, STATS_QUERY)
       for family in FAMILIES for metric, schema in family.metric_schemas.items()},
})  # fmt: skip
@api()
def stats(ctx: Context, metric: str) -> dict:
    share = shared_stats(ctx, metric)  # a shared dashboard's read (X-Prisme-Share), or None
    if share is None:
        require_reader(ctx)
    measure = METRICS.get(metric)
    if measure is None:
        raise Rejected(404, f"unknown metric {metric[:60]!r}; metrics: {', '.join(METRICS)}")
    q = parse_stats_query(
        query_pairs(request.environ), now_ms(), LIVE_WINDOW if metric in ("live-visitors", "live-count") else "now-7d"
    )
    if share is not None:
        q.site = share.site
    conn, source = stats_reader(ctx)
    snapshot = isinstance(conn, sqlite3.Connection)  # one read of the database: a metric reads tables the writer's
    try:  # maintenance changes together (a day's slices and the days they count, today's prefix and its end)
        if snapshot:
            conn.execute("BEGIN")
        keys, values, *details = measure(conn, replace(q, site_of=ctx.origins.site_of, source=source))
    except ClickHouseError as error:
        raise Rejected(503, f"stats_source is clickhouse: {error}") from None
    finally:
        if snapshot and conn.in_transaction:
            conn.execute("COMMIT")
    report = {"from": iso_time(q.start), "to": iso_time(q.end), "keys": keys, "values": values}
    if details:
        report["details"] = details[0]
    say_unapplied(report, q.unapplied)
    return report if share is None else suppressed_report(share, metric, report)


# ClickHouse 18.16 has no query parameters over HTTP: they are inlined as literals. Every count of distinct ids is
# exact (uniqExact, never the approximate uniq), and 64-bit integers come back as JSON numbers.
CLICKHOUSE_READ_SETTINGS = (("count_distinct_implementation", "uniqExact"),
                            ("output_format_json_quote_64bit_integers", "0"))  # fmt: skip


def clickhouse_literal(value: Any) -> str:
    """A parameter as a ClickHouse literal: a number as itself, text quoted with its quotes and backslashes escaped."""
    if value is None:
        return "NULL"
    if isinstance(value, int | float):
        return repr(int(value) if isinstance(value, bool) else value)
    escaped = str(value).replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0")
    return f"'{escaped}'"


class ClickHouseRows(list):
    """A query's rows as tuples, read like a sqlite3 cursor."""

    def fetchall(self) -> list:
        return list(self)

    def fetchone(self) -> tuple | None:
        return self[0] if self else None


class ClickHouseReader:
    """The reports' connection with stats_source = clickhouse: the same SQL (its Source, CLICKHOUSE, names tables
    and dialect), `?` parameters inlined; `local` is this node's SQLite file, which keeps what is configured here
    (goals, counter clients)."""

    def __init__(self, target: ClickHouseTarget, local: sqlite3.Connection):
        self.target = replace(target, settings=(*target.settings, *CLICKHOUSE_READ_SETTINGS))
        self.local = local

    def execute(self, sql: str, params: Iterable = ()) -> ClickHouseRows:
        parts, values = sql.split("?"), list(params)
        if len(parts) != len(values) + 1:
            raise ValueError(f"{len(parts) - 1} placeholders for {len(values)} parameters")
        inlined = parts[0] + "".join(clickhouse_literal(v) + part for v, part in zip(values, parts[1:], strict=True))
        answer = json.loads(self.target.request(f"{inlined} FORMAT JSONCompact"))
        return ClickHouseRows(tuple(row) for row in answer["data"])


def configured(conn: sqlite3.Connection | ClickHouseReader) -> sqlite3.Connection:
    """The SQLite file that keeps what is configured on this node (goals, counter clients), whatever the source."""
    return getattr(conn, "local", conn)


def stats_reader(ctx: Context) -> tuple[sqlite3.Connection | ClickHouseReader, Source]:
    """Where this server's reports read (stats_source): its SQLite file, or the ClickHouse of clickhouse_url."""
    if ctx.config["stats_source"] == "clickhouse":
        return ClickHouseReader(ClickHouseTarget.parse(ctx.config["clickhouse_url"]), ctx.read()), CLICKHOUSE
    return ctx.read(), SQLITE


def say_unapplied(report: dict, unapplied: dict[str, str]) -> None:
    """What is not stored with a report's rows cannot filter it: asked for one site, or for a filter its rows do not
    record, a report answers without it and says so (`per_site: false`, `unfiltered`, and a note the dashboard shows
    on the panel)."""
    notes = []
    if "site" in unapplied:
        report["per_site"] = False
        notes.append(unapplied["site"])
    unfiltered = [name for name in unapplied if name != "site"]
    if unfiltered:
        report["unfiltered"] = unfiltered
        notes.append(f"Not filtered by {', '.join(unfiltered)}: {'; '.join(unapplied[name] for name in unfiltered)}.")
    if notes:
        report["note"] = " ".join(notes)


ROUTES.append(stats)


###############################################################################
# Dashboard and static files ##################################################
###############################################################################


def asset(name: str) -> bytes:
    """A file of the repository's static/ (the tracker, the dashboard, schema.sql): beside this module in a checkout
    or an editable install, else the package prisme_lite_static that a wheel, --user and --target install beside it."""
    checkout = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", name)
    if os.path.isfile(checkout):
        with open(checkout, "rb") as file:
            return file.read()
    try:
        return importlib.resources.files("prisme_lite_static").joinpath(name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise FileNotFoundError(
            f"{name} is in neither static/ beside prisme_lite.py nor the package prisme_lite_static"
        ) from None


def static_asset(content_type: str, name: str) -> tuple[str, bytes, bytes, str]:
    """(content type, body, gzipped body, ETag) of a file of static/, computed once at import."""
    body = asset(name)
    return content_type, body, gzip.compress(body, 9, mtime=0), '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


STATIC_FILES = {
    "wa.js": static_asset("application/javascript; charset=utf-8", "wa.js"),  # SPEC §3.5; at most 2 KiB gzipped
    "dashboard.js": static_asset("application/javascript; charset=utf-8", "dashboard.js"),
    "dashboard.css": static_asset("text/css; charset=utf-8", "dashboard.css"),
    "favicon.svg": static_asset("image/svg+xml", "favicon.svg"),  # the dashboard's tab (no 404 in its console)
}
STATIC_ALIASES = {"m.js": "wa.js"}  # Prisme's old embed name, still on pages (its pkg/embedded/static.go)
DASHBOARD_COOKIE = "prisme_dashboard"
DASHBOARD_LOGIN_SECONDS = 30 * 86_400
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
# Nothing external, nothing inline: the dashboard's script and styles are files served from here.
DASHBOARD_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# The HTML around every page ({title}, {body}), the login form ({error}) and the dashboard's body.
PAGE, LOGIN_BODY, APP_BODY = (asset(name).decode("utf-8") for name in ("page.html", "login.html", "app.html"))
# The tables below the chart, each family's (static/dashboard.js reads them from the page).
DASHBOARD_PANELS = html.escape(json.dumps([panel for family in FAMILIES for panel in family.panels]))


@route("/static/<name>", doc={"get": operation(
    "read", "the tracking script and the dashboard's files", {
        "200": {"description": "the file", "content": {
            media.split(";")[0]: {"schema": {"type": "string"}} for media, *_rest in STATIC_FILES.values()}},
        "304": {"description": "not modified (If-None-Match)"},
        "404": {"description": "no such file", "content": {"application/json": {"schema": schema_ref("Error")}}},
    }, parameters=[parameter("name", "path", "the file", enum=[*STATIC_FILES, *STATIC_ALIASES])],
)})  # fmt: skip
def static_file(name: str) -> Any:
    asset = STATIC_FILES.get(STATIC_ALIASES.get(name, name))
    if asset is None:
        response.status = 404
        response.content_type = "application/json"
        return error_body(f"no static file {name[:60]!r}")
    content_type, body, zipped, etag = asset
    response.set_header("Content-Type", content_type)
    response.set_header("Cache-Control", "public, max-age=3600")
    response.set_header("ETag", etag)
    response.set_header("Vary", "Accept-Encoding")
    response.set_header("Cross-Origin-Resource-Policy", "cross-origin")  # pages of any site embed wa.js
    if request.environ.get("HTTP_IF_NONE_MATCH") == etag:
        response.status = 304
        return b""
    if "gzip" in request.environ.get("HTTP_ACCEPT_ENCODING", ""):
        response.set_header("Content-Encoding", "gzip")
        return zipped
    return body


def open_dashboard_session(conn: sqlite3.Connection, session: dict) -> None:
    conn.execute(
        "INSERT INTO dashboard_sessions (id_hash, token_id, credential_hash, created_at, expires_at)"
        " VALUES (:id_hash, :token_id, :credential_hash, :created_at, :expires_at)",
        session,
    )


def end_dashboard_sessions(conn: sqlite3.Connection, column: str, value: str) -> int:
    """Writer job or command: end the logins of one cookie (`id_hash`) or of one token (`token_id`)."""
    assert column in ("id_hash", "token_id")
    return conn.execute(f"DELETE FROM dashboard_sessions WHERE {column} = ?", (value,)).rowcount


def forget_expired_logins(conn: sqlite3.Connection, now: int) -> None:
    """Writer maintenance: dashboard logins past their 30 days."""
    conn.execute("DELETE FROM dashboard_sessions WHERE expires_at <= ?", (now,))


def dashboard_session_id() -> str | None:
    """The session id of the request's login cookie, if it has the shape of one (43 URL-safe characters)."""
    value = request.get_cookie(DASHBOARD_COOKIE) or ""
    return value if SESSION_ID.fullmatch(value) else None


def dashboard_login_valid(ctx: Context) -> bool:
    """The login cookie names a session the server holds, not expired, whose token still logs in."""
    session_id = dashboard_session_id()
    if session_id is None:
        return False
    row = (
        ctx.read()
        .execute(
            "SELECT token_id, credential_hash FROM dashboard_sessions WHERE id_hash = ? AND expires_at > ?",
            (hash_secret(session_id), now_ms()),
        )
        .fetchone()
    )
    if row is None:
        return False
    if row[0] == ADMIN_IDENTITY["id"]:  # the admin token rotated (or changed in the configuration): logged out
        return hmac.compare_digest(row[1], hash_secret(ctx.admin_token()))
    return True  # revoking an access token deletes the sessions it opened


def is_https(ctx: Context) -> bool:
    environ = request.environ
    forwarded = environ.get("HTTP_X_FORWARDED_PROTO", "") if ctx.config["trust_proxy"] else ""
    return environ.get("wsgi.url_scheme") == "https" or forwarded.lower() == "https"


def html_page(title: str, body: str, status: int = 200) -> str:
    response.status = status
    response.content_type = "text/html; charset=utf-8"
    for name, value in DASHBOARD_HEADERS.items():
        response.set_header(name, value)
    return PAGE.format(title=title, body=body)


@route("/", doc={"get": operation("read", "to the dashboard", {
    "302": {"description": "to /dashboard", "headers": {"Location": {"schema": {}}}},
})})  # fmt: skip
def home() -> str:
    """A person who opens the server's address wants the dashboard."""
    response.status = 302
    response.set_header("Location", "/dashboard")
    return ""


@route("/dashboard", doc={"get": operation("read", "the dashboard, or its login page", ok("a page", "text/html"))})
def dashboard() -> str:
    ctx: Context = request.app.ctx
    if not dashboard_login_valid(ctx):
        return html_page("prisme-lite: log in", LOGIN_BODY.format(error=""))
    return html_page("prisme-lite", dashboard_body())


@route("/dashboard/opted", doc={"get": operation(
    "read", "back from a site's page opened with #prisme-opt-out or #prisme-opt-in (wa.js): on to the dashboard", {
        **ok("a page that goes on to /dashboard#opted-out=HOST (or -in)", "text/html"),
        "400": {"description": "neither out nor in names a host", "content": {"text/html": {"schema": TEXT}}}},
    parameters=[parameter(choice, "query", f"the host this browser opted {choice} on") for choice in ("out", "in")],
)})  # fmt: skip
def dashboard_opted() -> str:
    """A hop of its own, not a redirect: the login cookie (SameSite=Strict) is not sent on the way back from the
    site, and is on the refresh this page makes. The dashboard's script remembers the choice (static/dashboard.js)."""
    query = query_pairs(request.environ)
    for choice in ("out", "in"):
        host = query_value(query, choice)
        if host and printable(host, 253):
            target = html.escape(f"/dashboard#opted-{choice}={quote(host, safe='')}")
            body = (
                f'<meta http-equiv="refresh" content="0; url={target}"><p>On to <a href="{target}">the dashboard</a>.'
            )
            return html_page("prisme-lite", body + "</p>\n")
    return html_page("prisme-lite", "<p>Nothing to remember: ?out=HOST or ?in=HOST.</p>\n", 400)


@route("/dashboard/login", "POST", doc={"post": operation(
    "read", "log in with the admin token", {
        "303": {"description": "logged in; to /dashboard"},
        **{str(status): {"description": why, "content": {"text/html": {"schema": {"type": "string"}}}}
           for status, why in ((401, "wrong token"), (429, "too many tries"))},
    }, body={"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]}}}},
)})  # fmt: skip
def dashboard_login() -> Any:
    ctx: Context = request.app.ctx
    allowed, _left, retry_after = ctx.limiter.take(client_key(ctx))
    try:
        form = dict(parse_qsl(body_text(request.environ, 4096), errors="strict"))
    except (Rejected, ValueError):
        form = {}
    token = form.get("token", "").strip()
    try:
        if not allowed:  # the per-IP limit also bounds guessing the token
            raise over_limit("too many attempts from this address", retry_after)
        identity = token_identity(ctx, token) if token else None
    except Rejected as refused:  # over the limit, or too many wrong tokens from this address (refuse_guessing)
        response.set_header("Retry-After", refused.headers["Retry-After"])
        error = f"{refused.message[0].upper()}{refused.message[1:]}."
        return html_page("prisme-lite: log in", LOGIN_BODY.format(error=error), 429)
    if identity is None or "admin" not in identity["scopes"]:
        return html_page("prisme-lite: log in", LOGIN_BODY.format(error="That is not the admin token."), 401)
    session_id, now = secrets.token_urlsafe(32), now_ms()
    session = {"id_hash": hash_secret(session_id), "token_id": identity["id"], "credential_hash": hash_secret(token)}
    ctx.writer.run(
        open_dashboard_session, {**session, "created_at": now, "expires_at": now + DASHBOARD_LOGIN_SECONDS * 1000}
    )
    response.set_cookie(
        DASHBOARD_COOKIE, session_id, path="/", max_age=DASHBOARD_LOGIN_SECONDS, httponly=True, samesite="Strict",
        secure=is_https(ctx),
    )  # fmt: skip
    response.status = 303
    response.set_header("Location", "/dashboard")
    return ""


@route("/dashboard/logout", "POST", doc={"post": operation(
    "read", "log out", {"303": {"description": "logged out; to /dashboard"}},
)})  # fmt: skip
def dashboard_logout() -> str:
    ctx: Context = request.app.ctx
    session_id = dashboard_session_id()
    if session_id is not None:  # ended on the server: a copy of the cookie is worth nothing either
        ctx.writer.run(end_dashboard_sessions, "id_hash", hash_secret(session_id))
    response.delete_cookie(DASHBOARD_COOKIE, path="/", httponly=True, samesite="Strict", secure=is_https(ctx))
    response.status = 303
    response.set_header("Location", "/dashboard")
    return ""


@route("/api/v1/sites", doc={"get": operation(
    "read", "the registered sites", answers(ok("the sites", "application/json", schema_ref("Sites")), 401, 403, 429),
    security=[*BEARER, {"dashboard": []}],
)})  # fmt: skip
@api()
def sites(ctx: Context) -> dict:
    require_reader(ctx)
    return {"sites": sorted(set(ctx.config["origins"]) | set(stored_origins(ctx.read())))}


# Shared dashboards: /share/<token> is the dashboard of one site for anyone with the link, read-only, and its
# script reads the stats API with the token in X-Prisme-Share. What a share answers, and how each answer's counts
# are suppressed (suppressed_report): the cards, the chart's two series, the live count, and the tables of the
# families whose rows are each a site's (widgets and server events are every site's: never shared).
SHARE_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")  # secrets.token_urlsafe(24)
SHARE_PREFIX = 8  # characters of a token kept as they are, for `share list` and `share revoke`
MAX_SHARE_DAYS = 3650
SHARE_READS_PER_MINUTE = 600  # stats answers per minute per client IP on shares (a dashboard load asks ~20)
SHARED_PANELS = tuple(panel for family in FAMILIES if family.name in ("web", "goals", "counters")
                      for panel in family.panels)  # fmt: skip
SHARED_SERIES = ("pageviews", "visitors", "live-count")
SHARED_METRICS = frozenset(("overview", *SHARED_SERIES, "custom-event-properties", *(p[1] for p in SHARED_PANELS)))
NO_SHARE = "no such shared dashboard"  # unknown, expired or revoked alike: a token cannot be probed


@dataclass(frozen=True)
class Share:
    """A shared dashboard: its site, and the counts below `least` that its answers suppress."""

    site: str
    least: int

    def hidden(self, count: Any) -> Any:
        """A count as a share shows it: "< 5" from 1 to 4, 0 as 0, the rest as they are."""
        return f"< {self.least}" if self.small(count) else count

    def small(self, count: Any) -> bool:
        """From 1 to least - 1, whatever number type the stats' source gave (a text or None is no count)."""
        return isinstance(count, int | float) and not isinstance(count, bool) and 0 < count < self.least


def create_share(conn: sqlite3.Connection, site: str, days: int | None) -> str:
    """A new share of `site` for `days` (None: until revoked): the token, shown this once and kept as a hash."""
    token, now = secrets.token_urlsafe(24), now_ms()
    while token.startswith("-"):  # `share revoke -abc…` would be an option to the command line, not a token
        token = secrets.token_urlsafe(24)
    conn.execute(
        "INSERT INTO shares (token_hash, prefix, site, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (hash_secret(token), token[:SHARE_PREFIX], site, now, now + days * DAY_MS if days else None),
    )
    return token


def find_share(ctx: Context, token: str | None) -> Share | None:
    """The share a token opens: None for a token unknown, expired or revoked (read at each request: a revoke
    from the command line applies at once)."""
    if not token or not SHARE_TOKEN.fullmatch(token):
        return None
    sql = "SELECT site FROM shares WHERE token_hash = ? AND revoked_at IS NULL AND coalesce(expires_at > ?, 1)"
    row = ctx.read().execute(sql, (hash_secret(token), now_ms())).fetchone()
    return Share(row[0], ctx.config["share_min_count"]) if row else None


def shared_stats(ctx: Context, metric: str) -> Share | None:
    """The share of a stats request sent with X-Prisme-Share, None for one without it. A share reads its own
    site's SHARED_METRICS and nothing else (404; 403 for another site), at most SHARE_READS_PER_MINUTE a client IP."""
    token = request.environ.get("HTTP_X_PRISME_SHARE")
    if token is None:
        return None
    share = find_share(ctx, token.strip())
    if share is None:
        raise Rejected(404, NO_SHARE)
    allowed, _left, retry_after = ctx.share_limiter.take(client_key(ctx))
    if not allowed:
        raise over_limit(f"over the rate limit of {SHARE_READS_PER_MINUTE} reads a minute", retry_after)
    if metric not in SHARED_METRICS:
        raise Rejected(404, f"{metric[:60]!r} is not part of a shared dashboard; it shows {', '.join(SHARED_METRICS)}")
    asked = query_value(query_pairs(request.environ), "site")
    if asked and asked != share.site:
        raise Rejected(403, f"this shared dashboard is of {share.site} only")
    return share


def suppressed_report(share: Share, metric: str, report: dict) -> dict:
    """A stats answer as a share gives it: each count from 1 to share_min_count - 1 as the string "< N" (0 stays 0);
    a rate or average of such a count as null; a table row whose count is such is left out, for its name alone
    could single a visitor out (a page one person saw, a referrer of one company), and the note says so. Goals are
    the site's own names: their rows stay, suppressed."""
    if report.get("per_site") is False:  # a metric whose rows are every site's never reaches a share
        raise Rejected(404, f"{metric} is not recorded per site")
    values, small = report["values"], share.small
    if metric == "overview":
        visitors, pageviews, sessions, bounce_rate, duration = values
        bounces = round(bounce_rate * sessions / 100)  # to the nearest visit below 200 sessions: enough to tell
        rate_hidden = small(sessions) or small(bounces) or small(sessions - bounces)
        report["values"] = [share.hidden(visitors), share.hidden(pageviews), share.hidden(sessions),
                            None if rate_hidden else bounce_rate, None if small(sessions) else duration]  # fmt: skip
    elif metric in SHARED_SERIES:
        report["values"] = [share.hidden(value) for value in values]
    elif metric == "goals":
        for row in report["details"]:
            if small(row["visitors"]):
                row["conversion_rate"] = None
            row["conversions"], row["visitors"] = share.hidden(row["conversions"]), share.hidden(row["visitors"])
        report["values"] = [share.hidden(value) for value in values]
    else:
        kept = [n for n, value in enumerate(values) if not small(value)]
        if len(kept) < len(values):
            left_out = f"Rows under {share.least} are left out."
            report["note"] = f"{report['note']} {left_out}" if report.get("note") else left_out
        for name in ("keys", "values", "details"):
            if name in report:
                report[name] = [report[name][n] for n in kept]
    return report


def dashboard_body(share: Share | None = None, token: str = "") -> str:
    """The dashboard's body: with every control for a login, or a share's (its site named, read-only)."""
    if share is None:
        return APP_BODY.format(
            site='<select id="site" aria-label="site"></select>', panels=DASHBOARD_PANELS, share="", share_site="",
            least=0,
            account='<form method="post" action="/dashboard/logout"><button type="submit" id="logout">Log out</button>'
                    "</form>",
            footer='<footer id="exclusion"></footer>',
        )  # fmt: skip
    site, panels = html.escape(share.site), html.escape(json.dumps(SHARED_PANELS))
    return APP_BODY.format(
        site=f'<span id="site-name" class="site-name">{site}</span>', panels=panels, account="",
        share=html.escape(token), share_site=site, least=share.least,
        footer=f'<footer id="shared">A shared, read-only view of {site}: counts under {share.least} show as'
               f" &lt; {share.least}, and rows counted fewer times are left out.</footer>",
    )  # fmt: skip


@route("/share/<token>", doc={"get": operation(
    "read", "a shared dashboard (`prisme-lite share create`): one site's, read-only, without a login", {
        **ok("the dashboard; its script reads /api/v1/stats/{metric} with the token in X-Prisme-Share", "text/html"),
        "404": {"description": "a token unknown, expired or revoked (one answer for all three)",
                "content": {"text/html": {"schema": TEXT}}}},
    parameters=[parameter("token", "path", "what `share create` printed", pattern=f"^{SHARE_TOKEN.pattern}$")],
)})  # fmt: skip
def shared_dashboard(token: str) -> str:
    ctx: Context = request.app.ctx
    share = find_share(ctx, token)
    if share is None:
        return html_page("prisme-lite", "<p>No such shared dashboard: wrong, expired or revoked.</p>\n", 404)
    return html_page(f"prisme-lite: {html.escape(share.site)}", dashboard_body(share, token))


ROUTES.extend((static_file, home, dashboard, dashboard_opted, dashboard_login, dashboard_logout, sites))
ROUTES.append(shared_dashboard)


###############################################################################
# OpenAPI document ############################################################
###############################################################################


def openapi_document() -> dict:
    """What /api/v1/openapi.json serves: every route, its parameters, answers and credentials (OpenAPI 3.1), as
    each route describes itself, with the schemas and credentials the families name."""
    paths: dict[str, dict] = {}
    for entry in ROUTES:
        for path, operations in entry.openapi.items():
            paths.setdefault(path, {}).update(operations)
    for path, operations in paths.items():  # CORS preflight: any /api/v1 route
        if path.startswith("/api/v1/"):
            operations["options"] = {
                "tags": ["operations"], "summary": "CORS preflight", "security": [],
                "parameters": [parameter(name[1:-1], "path", "as above") for name in re.findall(r"\{\w+\}", path)],
                "responses": {"204": {"description": "the CORS headers"}},
            }  # fmt: skip
    schemes = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "the admin token or an access token"},
        "dashboard": {"type": "apiKey", "in": "cookie", "name": DASHBOARD_COOKIE},
    }
    schemas = {
        "Error": {"type": "object", "properties": {"error": TEXT}, "required": ["error"]},
        "Health": {"type": "object", "properties": {"status": {"enum": ["ok", "unavailable"]}, "error": TEXT,
                   "clickhouse": {"type": "object", "description": "with clickhouse_url: how far behind the mirror is",
                                  "properties": {"node_id": TEXT, "behind_rows": {"type": "integer"},
                                                 "behind_seconds": {"type": "number"}, "tables": {"type": "object"},
                                                 "error": {"type": ["string", "null"]}}}},
                   "required": ["status"]},
        "Stats": {"type": "object", "required": ["from", "to", "keys", "values"], "properties": {
            "from": TEXT, "to": TEXT, "keys": {"type": "array"}, "values": {"type": "array"},
            "details": {}, "per_site": {"type": "boolean"}, "note": TEXT,
            "unfiltered": {"type": "array", "items": TEXT}}},
        "Sites": {"type": "object", "properties": {"sites": {"type": "array", "items": TEXT}}},
    }  # fmt: skip
    for family in FAMILIES:
        schemes.update(family.security)
        schemas.update(family.schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "prisme-lite", "version": __version__, "description": (
            "Web events (Prisme), action counters (Prefetch), server events (Prepr), widget beacons (Olapic), "
            "and the stats, export and dashboard routes that read them.")},
        "paths": paths,
        "components": {"securitySchemes": schemes, "schemas": schemas},
    }  # fmt: skip


@functools.cache
def openapi_json() -> str:
    return json.dumps(openapi_document())


@route("/api/v1/openapi.json", doc={"get": operation(
    "operations", "this document", ok("OpenAPI 3.1", "application/json", {"type": "object"}),
)})  # fmt: skip
def openapi() -> Any:
    response.content_type = "application/json"
    response.set_header("Access-Control-Allow-Origin", "*")
    return openapi_json()  # built on first request: commands that never serve it skip the work


ROUTES.append(openapi)


###############################################################################
# Operations ##################################################################
###############################################################################

HEALTHY_FREE_BYTES = 1 << 20  # less room than this for the database, its WAL and journal: unhealthy


@route("/api/v1/healthcheck", "ANY", doc={
    method: operation("operations", "is the database answering", {
        **ok("ok", "application/json", schema_ref("Health")),
        "503": {"description": "unavailable", "content": {"application/json": {"schema": schema_ref("Health")}}},
    }) for method in ("get", "head")
})  # fmt: skip
def healthcheck() -> Any:
    ctx: Context = request.app.ctx
    response.content_type = "application/json"
    try:
        ctx.read().execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        ctx.writer.ensure_running()
        if ctx.writer.failure:
            raise Unavailable(f"the database cannot take writes: {ctx.writer.failure}")
        disk = os.statvfs(os.path.dirname(os.path.abspath(ctx.config["db"])))
        if disk.f_flag & os.ST_RDONLY:
            raise Unavailable("the database's file system is read-only")
        if disk.f_bavail * disk.f_frsize < HEALTHY_FREE_BYTES:
            raise Unavailable(f"the disk is full: {disk.f_bavail * disk.f_frsize // 1024} KiB left")
        # ClickHouse behind or down is no reason to stop sending this node events: still 200, with how far behind
        mirror = {"clickhouse": ctx.mirror.status(ctx.read())} if ctx.mirror else {}
    except (sqlite3.Error, OSError, Unavailable) as error:
        response.status = 503
        return json.dumps({"status": "unavailable", "error": str(error)})
    return json.dumps({"status": "ok", **mirror})


# /metrics: Prometheus' text exposition format 0.0.4. Counters start at 0 with each server process.
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def label_text(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(name: str, kind: str, about: str, samples: Iterable[tuple[str, dict, float]]) -> str:
    """One metric family: its HELP and TYPE lines, then a line per (suffix, labels, value)."""
    lines = [f"# HELP {name} {about}", f"# TYPE {name} {kind}"]
    for suffix, labels, value in samples:
        labelled = ",".join(f'{key}="{label_text(text)}"' for key, text in labels.items())
        lines.append(f"{name}{suffix}{{{labelled}}} {value}" if labelled else f"{name}{suffix} {value}")
    return "\n".join(lines) + "\n"


def duration_histogram(requests: Counter, seconds: dict[str, float]) -> Iterator[tuple[str, dict, float]]:
    """The request duration histogram's samples, cumulative per route family, as the format wants them."""
    buckets = Counter()
    for (group, _status, bucket), n in requests.items():
        buckets[group, bucket] += n
    for group in sorted(seconds):
        seen = 0
        for n, bound in enumerate((*map(repr, DURATION_BUCKETS), "+Inf")):
            seen += buckets[group, n]
            yield "_bucket", {"family": group, "le": bound}, seen
        yield "_sum", {"family": group}, seconds[group]
        yield "_count", {"family": group}, seen


def labelled(counts: Counter, *names: str) -> list[tuple[str, dict, float]]:
    """A sample per key of `counts` (tuples of as many labels as `names`), in order."""
    return [("", dict(zip(names, key, strict=True)), n) for key, n in sorted(counts.items())]


def by_family(counts: Counter) -> list[tuple[str, dict, float]]:
    return [("", {"family": family}, n) for family, n in sorted(counts.items())]


def metrics_text(ctx: Context) -> str:
    writer, counts = ctx.writer, ctx.telemetry.total()
    requests, seconds, dropped, responses, limited = Counter(), {}, Counter(), Counter(), Counter()
    for key, value in counts.items():
        if isinstance(key, str):
            seconds[key] = value
        elif key[0] == "dropped":
            dropped[key[1:]] += value
        else:
            requests[key] += value
            responses[key[0], key[1][0] + "xx"] += value
            limited[key[:1]] += value if key[1] == "429" else 0
    now = time.monotonic()
    db = ctx.config["db"]
    files = {"database": db, "wal": db + "-wal", "journal": journal_file(db, writer.generation)}
    sizes = [("", {"file": name}, os.path.getsize(path)) for name, path in files.items() if os.path.exists(path)]
    return "".join((
        exposition("prisme_events_acknowledged_total", "counter",
                   "journal records acknowledged (one an event; a server-events batch is one), by family",
                   by_family(writer.acknowledged)),
        exposition("prisme_events_stored_total", "counter", "journal records committed to the database, by family",
                   by_family(writer.stored)),
        exposition("prisme_events_dropped_total", "counter", "well-formed events not counted, by reason"
                   " (X-Prisme-Dropped)", labelled(dropped, "reason")),
        exposition("prisme_dead_letters_total", "counter", "journal lines the database refused, kept in the"
                   " dead-letter file", [("", {}, len(writer.dead_lettered))]),
        exposition("prisme_rate_limited_total", "counter", "requests answered 429, by route family",
                   labelled(+limited, "family")),
        exposition("prisme_http_responses_total", "counter", "responses by route family and status class",
                   labelled(responses, "family", "code")),
        exposition("prisme_http_request_duration_seconds", "histogram", "time to answer a request, by route family",
                   duration_histogram(requests, seconds)),
        exposition("prisme_journal_backlog_bytes", "gauge", "acknowledged journal bytes not yet in the database",
                   [("", {}, max(0, writer.appended - writer.folded))]),
        exposition("prisme_writer_lag_seconds", "gauge", "how long the oldest event not yet in the database has"
                   " waited, at most", [("", {}, round(writer.lag(), 6))]),
        exposition("prisme_last_commit_age_seconds", "gauge", "seconds since the writer last committed (it does at"
                   " least once a minute)", [("", {}, round(now - writer.committed_at, 6))]),
        exposition("prisme_writer_failing", "gauge", "1 while commits fail (disk full, read-only), else 0",
                   [("", {}, int(writer.failure is not None))]),
        exposition("prisme_database_bytes", "gauge", "size of the database's files", sizes),
        mirror_metrics(ctx),
    ))  # fmt: skip


@route("/metrics", doc={"get": operation(
    "operations", "Prometheus metrics: events, drops, responses, durations, the writer's backlog and lag",
    answers(ok("the text exposition format 0.0.4", "text/plain"), 401, 403, 429), security=BEARER,
)})  # fmt: skip
@api()
def metrics(ctx: Context) -> str:
    authorize(ctx, "metrics_read", bearer_token(request.environ))
    response.content_type = PROMETHEUS_TEXT
    response.set_header("Cache-Control", "no-store")
    return metrics_text(ctx)


ROUTES.append(metrics)


# What can be exported, by the name the `kind` parameter gives it: (table, time column, extra condition, order: the
# table's own, so that rows stream without a sort).
EXPORTS = {name: dataset for family in FAMILIES for name, dataset in family.exports.items()}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheet apps run as a formula
EXPORT_CHUNK = 1000


def export_chunks(conn: sqlite3.Connection, dataset: str, start: int, end: int, fmt: str) -> Iterator[str]:
    """The rows of `dataset` in [start, end) as CSV or NDJSON text, a chunk of rows at a time (constant memory)."""
    table, time_column, condition, order = EXPORTS[dataset]
    where = f"{time_column} >= ? AND {time_column} < ?" + (f" AND {condition}" if condition else "")
    cursor = conn.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY {order}", (start, end))
    columns = ["time", *(description[0] for description in cursor.description)]
    if fmt == "csv":
        yield csv_line(columns)
    while rows := cursor.fetchmany(EXPORT_CHUNK):
        lines = []
        for row in rows:
            record = [iso_time(row[columns.index(time_column) - 1]), *row]
            lines.append(
                csv_line(record)
                if fmt == "csv"
                else json.dumps(dict(zip(columns, record, strict=True)), ensure_ascii=False) + "\n"
            )
        yield "".join(lines)


def csv_line(values: list) -> str:
    """One CSV record, ending in \n; text that a spreadsheet would run as a formula is quoted with a leading
    apostrophe, and a cell with a line break in it (a lone CR included) is quoted."""
    buffer = io.StringIO()
    safe = ["'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value for value in values]
    # The writer quotes a cell holding any character of its line terminator: with "\r\n" that takes a lone CR too,
    # which would otherwise end the row in a spreadsheet and start the next one with a formula.
    csv.writer(buffer, lineterminator="\r\n").writerow(safe)
    return buffer.getvalue()[:-2] + "\n"


def export_window(query: list[tuple[str, str]], now: int) -> tuple[str, str, int, int]:
    refuse_unknown(query, ("format", "kind", "from", "to"))
    fmt = query_value(query, "format") or "csv"
    dataset = query_value(query, "kind") or "events"
    if fmt not in ("csv", "ndjson"):
        raise Rejected(400, f"format must be csv or ndjson, got {fmt[:20]!r}")
    if dataset not in EXPORTS:
        raise Rejected(400, f"kind must be one of {', '.join(EXPORTS)}, got {dataset[:20]!r}")
    start = parse_time(query_value(query, "from"), now, "from") if query_value(query, "from") else 0
    end = parse_time(query_value(query, "to"), now, "to") if query_value(query, "to") else now + DAY_MS
    if start >= end:
        raise Rejected(400, "from must be before to")
    return fmt, dataset, start, end


@route("/api/v1/export", doc={"get": operation(
    "read", "raw rows, streamed (admin)", answers(
        {"200": {"description": "the rows", "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        }}},
        400, 401, 403, 429,
    ), security=BEARER, parameters=[
        may_be_empty(parameter("format", "query", "csv (default) or ndjson", enum=["csv", "ndjson"]), "csv"),
        may_be_empty(parameter("kind", "query", "which rows (default events)", enum=list(EXPORTS)), "events"),
        parameter("from", "query", "start (default: the first row)"),
        parameter("to", "query", "end (default: tomorrow)"),
    ],
)})  # fmt: skip
@api()
def export(ctx: Context) -> Any:
    require_admin(ctx)
    fmt, dataset, start, end = export_window(query_pairs(request.environ), now_ms())
    response.content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson; charset=utf-8"
    response.set_header("Content-Disposition", f'attachment; filename="prisme-{dataset}.{fmt}"')
    # Its own connection: the export outlives this request's turn on the thread's reader.
    conn = connect(ctx.config["db"])
    conn.execute("PRAGMA query_only = ON")

    def stream() -> Iterator[bytes]:
        try:
            for chunk in export_chunks(conn, dataset, start, end, fmt):
                yield chunk.encode("utf-8")
        finally:
            conn.close()

    return stream()


ROUTES.extend((healthcheck, export))


# Every family's raw tables: (table, its rows older than the cutoff, key, probe, stored in time order). The probe
# reads the time of the table's oldest row from one row or one index entry, so a table with nothing to prune costs
# no scan.
PRUNED_TABLES = tuple(table for family in FAMILIES for table in family.pruned)
PRUNE_BATCH = 5000


def retention_cutoff(now: int, days: int) -> int:
    """Where retention cuts: the start of the UTC day `days` days ago, so whole days go (and their daily counts)."""
    return (now // DAY_MS - days) * DAY_MS


def prune_batch(
    conn: sqlite3.Connection, cutoff: int, batch: int | None = None, done: set | None = None, kept: dict | None = None
) -> int:
    """Delete up to `batch` rows older than `cutoff` (a UTC midnight) from each raw table; how many in all.

    Triggers take deleted events and sessions off the daily counts; the visitors of the days before the cutoff
    go once no event of those days is left. `done`, kept by the caller for one cutoff, collects the tables that
    arrive in time order and have nothing older left: later batches do not look at them again. `kept`: a table's
    rows that must stay all the same (MIRROR_UNSHIPPED), as a condition on the rows that may go.
    """
    batch = batch or PRUNE_BATCH
    done = set() if done is None else done
    deleted: dict[str, int] = {}
    for table, older, key, probe, in_order in PRUNED_TABLES:
        if table in done:
            continue
        oldest = (conn.execute(probe).fetchone() or (None,))[0]
        if oldest is not None and oldest < cutoff:
            # Rows arrive roughly in time order: the oldest are at the start of a table, where the scan begins.
            may_go = f" AND {kept[table]}" if kept and table in kept else ""
            deleted[table] = conn.execute(
                f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {older}{may_go} LIMIT ?)", (cutoff, batch)
            ).rowcount
        if in_order and deleted.get(table, 0) < batch:  # nothing older can arrive later for this cutoff
            done.add(table)
    # Fewer than asked for means no event before the cutoff is left; a full batch needs a look (at once if one is).
    if "visitors" not in done and (
        deleted.get("events", 0) < batch
        or not conn.execute("SELECT 1 FROM events WHERE ts < ? LIMIT 1", (cutoff,)).fetchone()
    ):
        day = cutoff // DAY_MS
        conn.execute("DELETE FROM daily_visitors WHERE day < ?", (day,))
        conn.execute("DELETE FROM daily_counts WHERE day < ? AND (dim = 'visitors' OR n = 0)", (day,))
        done.add("visitors")
    return sum(deleted.values())


class Retention:
    """Writer maintenance: prune raw rows of every family older than retention_days, a small batch per transaction."""

    def __init__(self, days: int, mirrored: bool = False):
        self.days = days
        self.kept = MIRROR_UNSHIPPED if mirrored else {}  # with the mirror on, rows not yet shipped stay
        self.cutoff: int | None = None
        self.done: set[str] = set()  # what prune_batch found clean for this cutoff
        self.deleted = 0

    def __call__(self, conn: sqlite3.Connection, now: int) -> bool:
        if not self.days:
            return False
        cutoff = retention_cutoff(now, self.days)
        if cutoff != self.cutoff:  # a new day: every table is looked at again
            self.cutoff, self.done = cutoff, set()
        deleted = prune_batch(conn, cutoff, done=self.done, kept=self.kept)  # a few probes a minute when idle
        self.deleted += deleted
        return deleted > 0  # True: more may remain, run again at the next commit

    def reset(self) -> None:
        """Forget which tables were found clean: the transaction that found it was rolled back."""
        self.cutoff, self.done = None, set()


###############################################################################
# Backup and check ############################################################
###############################################################################


def plural(word: str, count: int) -> str:
    """The word for `count` of them in what the commands print: `row` for 1, `rows` for 0 or 2."""
    return word if count == 1 else word + "s"


def journal_end(db: str) -> tuple[int, int]:
    """The newest journal file's generation and how many of its bytes are whole lines (all acknowledged)."""
    generations = journal_generations(db)
    if not generations:
        return 0, 0
    generation = max(generations)
    with open(journal_file(db, generation), "rb") as file:
        data = file.read()
    return generation, data.rfind(b"\n") + 1


NOT_BACKED_UP = ("visitor_salt", "dashboard_key")  # meta keys a restore does not need (dashboard_key: before v4)


def backup(db: str, target: str) -> int:
    """Copy the database while the server runs, with every event acknowledged before the copy began.

    SQLite's online backup gives a consistent snapshot; events acknowledged but not yet folded into it are
    still in the journal, so their lines are copied beside the backup (TARGET.journal-N), and a server
    started on the backup replays them. Dead letters go with it (TARGET.dead-letters), but for those lines. The copy
    holds no secret a restore does not need (NOT_BACKED_UP).
    """
    if os.path.exists(target):
        raise CommandError(f"backup: {target} exists; choose a new file")
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise CommandError(f"backup: directory {directory} does not exist; create it, or choose a FILE in another")
    if not os.access(directory, os.W_OK):
        raise CommandError(f"backup: directory {directory} is not writable; choose a FILE in another")
    started_generation, started_end = journal_end(db)  # acknowledged before this point: must be in the backup
    source = connect(db)
    os.close(private_file(target))  # a copy of the database holds its secrets too: readable by its owner only
    destination = sqlite3.connect(target)
    try:
        source.backup(destination, pages=1024, sleep=0.005)  # in steps: the server's writer keeps writing between
        generation, offset = journal_position(destination)
        tail = b""
        if generation == started_generation and offset < started_end:
            with open(journal_file(db, generation), "rb") as file:
                file.seek(offset)
                tail = file.read(started_end - offset)
        with open(private_file(journal_file(target, generation), truncate=True), "wb") as file:
            file.write(tail)
            file.flush()
            os.fsync(file.fileno())
        # Read after the copy: every line its position passes was kept before that commit. A line of the tail is
        # left out, since the backup replays the tail (and would keep that line again, at its new offset).
        carried = tail_keys(tail, generation, offset)
        letters = [letter for letter in read_dead_letters(db) if dead_letter_key(letter) not in carried]
        rewrite_dead_letters(dead_letters_file(target), letters)  # over one another backup may have left there
        # Secrets a restore does not need stay behind, overwritten (secure_delete) before the WAL is folded into the
        # file: with the day's salt, visitor ids turn back into IP addresses; a restored server starts a new salt.
        destination.execute("PRAGMA secure_delete = ON")
        destination.execute(f"DELETE FROM meta WHERE key IN ({placeholders(NOT_BACKED_UP)})", NOT_BACKED_UP)
        destination.execute("DELETE FROM dashboard_sessions")  # logins belong to the server they were opened on
        destination.commit()
        destination.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        set_journal_position(destination, generation, 0)
        destination.commit()
    finally:
        destination.close()
        source.close()
    lines = tail.count(b"\n")
    notes = []
    if lines:
        notes.append(f"+{lines} {plural('event', lines)} not yet folded, in {journal_file(target, generation)}")
    if letters:
        notes.append(f"+{len(letters)} {plural('dead letter', len(letters))}, in {dead_letters_file(target)}")
    print(f"backed up {db} to {target}" + "".join(f" ({note})" for note in notes))
    return 0


def tail_keys(tail: bytes, generation: int, offset: int) -> set[str]:
    """The dead-letter keys the lines of a journal tail starting at `offset` would have."""
    keys = set()
    for line in tail.splitlines():
        text = line.decode("utf-8", "surrogateescape")
        keys.add(dead_letter_key({"position": format_position(generation, offset), "line": text}))
        offset += len(line) + 1
    return keys


# What must hold of every family's rows: (name, query returning the rows that break it).
INVARIANTS = tuple(invariant for family in FAMILIES for invariant in family.invariants)


def check(db: str) -> int:
    """SQLite's integrity check, then prisme_lite's own invariants; one line each, exit 1 on any problem."""
    conn = connect(db)
    conn.execute("PRAGMA query_only = ON")
    conn.create_function("edge_holds", 3, edge_holds, deterministic=True)
    problems = 0
    try:
        results = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        problems += results != ["ok"]
        print("ok: integrity_check" if results == ["ok"] else "problem: integrity_check: " + "; ".join(results[:5]))
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        problems += version != SCHEMA_VERSION
        print(f"{'ok' if version == SCHEMA_VERSION else 'problem'}: schema version {version}")
        for name, sql in INVARIANTS:
            found = [str(row[0]) for row in conn.execute(sql)]
            problems += bool(found)
            print(f"ok: {name}" if not found else f"problem: {name}: not so for {', '.join(found)}")
        generation, offset = journal_position(conn)
        path = journal_file(db, generation)
        size = os.path.getsize(path) if os.path.exists(path) else 0
        problems += offset > size
        print(f"{'ok' if offset <= size else 'problem'}: journal {path}: {size - offset} bytes to fold from {offset}")
        # Kept, not lost, and no flaw of the database: a warning, whose fix is prisme-lite's (often an upgrade).
        letters = len(read_dead_letters(db))
        print(
            f"warning: {letters} journal {plural('line', letters)} could not be stored, kept in"
            f" {dead_letters_file(db)}: `prisme-lite dead-letters list` says why; fix that, then"
            " `prisme-lite dead-letters retry`"
            if letters
            else "ok: no dead letters (journal lines that could not be stored)"
        )
    finally:
        conn.close()
    return 1 if problems else 0


def list_dead_letters(db: str) -> int:
    """One line per dead letter: its journal position, when it was kept, why, and the line (escaped)."""
    letters = read_dead_letters(db)
    for letter in letters:
        reason, line = (text.encode("unicode_escape").decode("ascii") for text in (letter["reason"], letter["line"]))
        print(f"{letter['position']}  {letter['at']}  {reason}  {line}")
    if not letters:
        print(f"no dead letters beside {db}")
    return 0


def retry_dead_letters(config: dict) -> int:
    """Apply each dead letter again, in one transaction; those that now apply leave the file, the others stay.

    The keys of the lines stored are committed with them (meta `dead_letters_stored`) and forgotten only once the
    file no longer holds them, so a retry cut short between the two never stores a line twice.
    """
    db = config["db"]
    with no_server_on(db, "dead-letters retry", "retry, then start it again"):
        letters = read_dead_letters(db)
        if not letters:
            print(f"no dead letters beside {db}")
            return 0
        conn = connect(db, config["synchronous"])
        try:
            record_for_mirror(conn)
            appliers = journal_appliers(config)
            conn.execute("BEGIN IMMEDIATE")
            stored = set(json.loads(get_meta(conn, "dead_letters_stored") or "[]"))  # by a retry cut short
            left = []
            for letter in letters:
                if dead_letter_key(letter) in stored:
                    continue
                conn.execute("SAVEPOINT line")
                try:
                    apply_journal_lines(conn, appliers, [letter["line"].encode("utf-8", "surrogateescape")])
                    stored.add(dead_letter_key(letter))
                except LINE_REFUSALS as error:
                    conn.execute("ROLLBACK TO line")
                    for applier in appliers.values():
                        getattr(applier, "reset", lambda: None)()
                    left.append(dict(letter, reason=refusal(error)))
                conn.execute("RELEASE line")
            set_meta(conn, "dead_letters_stored", json.dumps(sorted(stored)))
            conn.execute("COMMIT")
            rewrite_dead_letters(dead_letters_file(db), left)
            conn.execute("DELETE FROM meta WHERE key = 'dead_letters_stored'")
        finally:
            conn.close()
    done = len(letters) - len(left)
    print(f"stored {done} of {len(letters)} {plural('dead letter', len(letters))}", end="")
    if not left:
        print()
        return 0
    print(f"; {len(left)} still cannot be stored (`prisme-lite dead-letters list` says why): {left[0]['reason']}")
    return 1


def rewrite_dead_letters(path: str, letters: list[dict]) -> None:
    """Replace a dead-letter file with `letters` at once (a new file renamed over it), or remove it when none."""
    if letters:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + ".new")  # left by a retry cut short
        keep_dead_letters(path + ".new", letters)
        os.replace(path + ".new", path)
    elif os.path.exists(path):
        os.unlink(path)
    sync_directory(path)


###############################################################################
# ClickHouse ##################################################################
###############################################################################
# With clickhouse_url set, SQLite stays the durable store and a mirror ships its rows to ClickHouse over the HTTP
# interface (INSERT ... FORMAT JSONEachRow). The tables are in static/clickhouse.sql: ReplacingMergeTree on each
# row's identity (node_id, id) with a version, so a row shipped twice, or again after it changed, is one row to a
# reader that uses FINAL.


class ClickHouseError(Exception):
    """ClickHouse did not answer 2xx (or could not be reached): the message says what it answered."""


CLICKHOUSE_TIMEOUT = 30.0  # seconds one request to ClickHouse may take
CLICKHOUSE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a database name we put in SQL unquoted


@dataclass(frozen=True)
class ClickHouseTarget:
    """Where the mirror writes: the HTTP endpoint without credentials, the database, and the auth header."""

    endpoint: str  # scheme://host:port/path, no user, no password, no query
    database: str
    settings: tuple[tuple[str, str], ...]  # the URL's other query parameters, sent with every request
    headers: dict[str, str]

    @classmethod
    def parse(cls, url: str) -> ClickHouseTarget:
        """`http://user:pass@host:8123/?database=prisme`: user and password become HTTP basic auth (18.16 and
        current ClickHouse both take it), `database` the database (default `prisme`)."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:  # not a number, or out of range
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ConfigError(f"clickhouse_url must be an http(s) URL, got {masked_url(url)!r}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        database = dict(query).get("database", "prisme")
        if not CLICKHOUSE_NAME.match(database):
            raise ConfigError(f"clickhouse_url: database must be letters, digits and _, got {database[:40]!r}")
        headers = {}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc += f":{port}" if port else ""
        endpoint = f"{parts.scheme}://{netloc}{parts.path or '/'}"
        return cls(endpoint, database, tuple((k, v) for k, v in query if k != "database"), headers)

    def request(self, sql: str, body: bytes = b"", database: bool = True, timeout: float = CLICKHOUSE_TIMEOUT) -> str:
        """POST one statement (`body` the data of an INSERT) and return the answer's text; ClickHouseError unless
        ClickHouse answered 2xx."""
        params = [*self.settings, ("query", sql), *([("database", self.database)] if database else [])]
        target = self.endpoint + "?" + urlencode(params)
        try:
            with urllib.request.urlopen(  # noqa: S310 -- an http(s) URL, checked in parse()
                urllib.request.Request(target, data=body, headers=self.headers, method="POST"), timeout=timeout
            ) as answer:
                return answer.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            detail = error.read(2000).decode("utf-8", "replace").strip()
            raise ClickHouseError(f"ClickHouse answered {error.code}: {detail[:500]}") from None
        except (OSError, http.client.HTTPException) as error:
            raise ClickHouseError(f"ClickHouse at {self.endpoint} did not answer: {error}") from None

    def insert(self, table: str, rows: Iterable[dict]) -> int:
        """Insert `rows` into `table` in one request (JSONEachRow); the number of rows; ClickHouseError unless 2xx."""
        return self.insert_json(table, [CLICKHOUSE_ENCODER.encode(row) for row in rows])

    def insert_json(self, table: str, lines: list[str]) -> int:
        """Insert rows given as JSON objects, one a line, into `table` in one request; ClickHouseError unless 2xx."""
        if lines:
            self.request(f"INSERT INTO {self.database}.{table} FORMAT JSONEachRow", "\n".join(lines).encode() + b"\n")
        return len(lines)


CLICKHOUSE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def masked_url(url: str) -> str:
    """`url` with its password as `***`: what logs and commands print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}").geturl()


def clickhouse_statements() -> list[str]:
    """The statements of clickhouse.sql, one by one (the HTTP interface takes one statement a request)."""
    text = asset("clickhouse.sql").decode()
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def clickhouse_init(target: ClickHouseTarget) -> list[str]:
    """Create the database and the tables (IF NOT EXISTS: running it again changes nothing); the tables' names."""
    target.request(f"CREATE DATABASE IF NOT EXISTS {target.database}", database=False)
    for statement in clickhouse_statements():
        target.request(statement)
    return re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", "\n".join(clickhouse_statements()))


def clickhouse_columns() -> dict[str, tuple[str, ...]]:
    """Each table's columns in clickhouse.sql that the mirror sends: all but node_id, version and derived ones."""
    tables = {}
    for statement in clickhouse_statements():
        found = re.match(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*)\) ENGINE", statement, re.DOTALL)
        if found:
            columns = [line.strip().split()[0] for line in found[2].splitlines() if line.strip()]
            derived = {line.strip().split()[0] for line in found[2].splitlines() if "MATERIALIZED" in line}
            tables[found[1]] = tuple(c for c in columns if c not in ("node_id", "version", *derived))
    return tables


JSON_KEYS = "(SELECT value FROM json_each(?))"  # the keys of a JSON list, for an IN


@dataclass(frozen=True)
class MirroredTable:
    """A ClickHouse table and where the mirror finds its rows in SQLite."""

    name: str  # in ClickHouse (clickhouse.sql) and in mirror_pending.tbl
    table: str  # the SQLite table it mirrors
    source: str  # what its rows are selected from (the table, or the export's query of it)
    key: str  # the row's identity in mirror_pending, an expression of `{row}` columns ({row}: "NEW." in a trigger)
    time: str  # the row's time (ms) in SQLite: for the lag
    clickhouse_time: str  # the same in ClickHouse, for clickhouse_retention_days
    changes: tuple[str, ...]  # the writes after which a row is pending: after them it is shipped again
    positioned: bool = True  # new rows are found from the stored position (by id)
    by_key: str = f"id IN {JSON_KEYS}"  # the pending rows of a JSON list of keys
    made_by_json: tuple[str, ...] = ()  # columns a JSON function made: sent as the text they are, like the export

    def as_json(self, columns: tuple[str, ...]) -> str:
        """Each row as the JSON object ClickHouse takes, made by SQLite (in C, outside the GIL: the mirror costs
        the request threads little); node_id and version are the two parameters that come first."""
        values = [f"'{c}', {c} || ''" if c in self.made_by_json else f"'{c}', {c}" for c in columns]
        return f"json_object({', '.join(values)}, 'node_id', ?, 'version', ?)"


# New rows of the id tables are shipped from a position; a row that changes after it is stored (a session goes on;
# an event joins a session, or takes the visitor id a login gave) and the rows of the tables keyed by text are shipped
# from mirror_pending, where the writer's triggers put them.
MIRRORED = (
    MirroredTable("events", "events", "events", "{row}id", "ts", "ts", ("UPDATE OF session_id, visitor_id",)),
    MirroredTable("sessions", "sessions", "sessions", "{row}id", "last_seen", "started_at", ("UPDATE",)),
    MirroredTable("server_events", "server_events", "server_events", "{row}id", "received_at", "ts", ()),
    MirroredTable("widget_events", "widget_events", "widget_events", "{row}id", "ts", "ts", ()),
    MirroredTable(
        "checkouts", "checkouts", CHECKOUTS_EXPORTED, "{row}transaction_id", "ts", "ts", ("INSERT",), positioned=False,
        by_key=f"transaction_id IN {JSON_KEYS}", made_by_json=("products",),
    ),
    MirroredTable(
        "counter_increments", "counter_days", "counter_days",
        "json_array({row}client_id, {row}action_id, {row}page_id, {row}day)", f"(day * {DAY_MS})",
        f"(day * {DAY_MS})", ("INSERT", "UPDATE"), positioned=False,
        # a row value of the JSON key's four parts, so that the primary key finds the rows
        by_key="(client_id, action_id, page_id, day) IN (SELECT json_extract(value, '$[0]'),"
        " json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(?))",
    ),
)  # fmt: skip
MIRROR_BATCH = 2000  # rows of each table in one insert at most: a few MB held, and ClickHouse wants >= 1000 an insert
MIRROR_INTERVAL = 1.0  # seconds between rounds when the mirror has caught up
MIRROR_BACKOFF = (1.0, 30.0)  # seconds between tries while ClickHouse fails: the first, doubled up to the last
MIRROR_STOP = 5.0  # seconds a stop waits for a request to ClickHouse in progress
MIRROR_RETENTION_INTERVAL = 3600.0  # seconds between the mirror's deletions of rows past clickhouse_retention_days
NOW_SQL = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"  # unix ms in SQL (3.40 has no unixepoch ms)
NODE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def mirror_triggers() -> list[str]:
    """TEMP triggers of the writer's connection: only it writes rows, and only while the mirror is on do they cost."""
    triggers = []
    for table in MIRRORED:
        for n, change in enumerate(table.changes):
            triggers.append(
                f"CREATE TEMP TRIGGER IF NOT EXISTS mirror_{table.name}_{n} AFTER {change} ON main.{table.table} BEGIN"
                f" INSERT INTO mirror_pending (tbl, key, changes, since) VALUES"
                f" ('{table.name}', {table.key.format(row='NEW.')}, 1, {NOW_SQL})"
                " ON CONFLICT DO UPDATE SET changes = changes + 1; END"
            )
    return triggers


def mirror_positions(conn: sqlite3.Connection) -> dict[str, int]:
    """The last id shipped of each id table (none yet: the mirror was never on)."""
    stored = json.loads(get_meta(conn, "mirror_position") or "{}")
    return {table.name: stored.get(table.name, 0) for table in MIRRORED if table.positioned}


def pend_rows(conn: sqlite3.Connection, table: MirroredTable, where: str = "true", params: tuple = ()) -> None:
    conn.execute(
        f"INSERT INTO mirror_pending (tbl, key, changes, since) SELECT '{table.name}', {table.key.format(row='')}, 1,"
        f" {NOW_SQL} FROM {table.table} WHERE {where} ON CONFLICT DO UPDATE SET changes = changes + 1",
        params,
    )


def prepare_mirror(conn: sqlite3.Connection) -> None:
    """The writer's start with the mirror on, before it replays the journal: its triggers; the first time, the rows
    keyed by text already stored (the id tables' history comes from position 0); after a time with the mirror off,
    what may have changed in it (found by time: sessions that went on, their events, that days' counters)."""
    for trigger in mirror_triggers():
        conn.execute(trigger)
    conn.execute("BEGIN IMMEDIATE")
    if get_meta(conn, "mirror_position") is None:
        for table in MIRRORED:
            if not table.positioned:
                pend_rows(conn, table)
        set_meta(conn, "mirror_position", json.dumps(mirror_positions(conn)))
    elif (off := get_meta(conn, "mirror_off_since")) is not None:
        since, positions = int(off), mirror_positions(conn)
        for table in MIRRORED:
            if table.name == "events":
                where = "session_id IN (SELECT id FROM sessions WHERE last_seen >= ?) AND id <= ?"
                pend_rows(conn, table, where, (since, positions["events"]))
            elif table.changes:
                pend_rows(conn, table, f"{table.time} >= ?", (since - DAY_MS,))
    conn.execute("DELETE FROM meta WHERE key = 'mirror_off_since'")
    if get_meta(conn, "node_id") is None:
        set_meta(conn, "node_id", "node-" + secrets.token_hex(4))
    conn.execute("COMMIT")


def record_for_mirror(conn: sqlite3.Connection) -> None:
    """A command that writes rows with the server stopped (import, dead-letters retry) records its changes for the
    mirror as the writer does, when the mirror was on when the server last ran: a row it changes (a session that goes
    on) or one keyed by text (a checkout, a day's counter) is shipped at the server's next start. New rows of the id
    tables need nothing: the mirror finds them from its position. Off, the server's next start with the mirror on
    finds what changed by time (prepare_mirror)."""
    if get_meta(conn, "mirror_position") is not None and get_meta(conn, "mirror_off_since") is None:
        for trigger in mirror_triggers():
            conn.execute(trigger)


def note_mirror_off(conn: sqlite3.Connection) -> None:
    """Writer job at a start with the mirror off, once it has been on: from when changes go unrecorded."""
    if get_meta(conn, "mirror_position") is not None and get_meta(conn, "mirror_off_since") is None:
        set_meta(conn, "mirror_off_since", str(now_ms()))


def node_id_of(config: dict, conn: sqlite3.Connection | None) -> str:
    """node_id from the settings, else the one made for this database (without `conn`: only a setting is checked)."""
    if conn is None and not config["node_id"]:
        return ""
    node = config["node_id"] or get_meta(conn, "node_id") or ""
    if not NODE_ID.match(node):
        raise ConfigError(f"node_id must be 1 to 64 letters, digits, '.', '_' or '-', got {node[:70]!r}")
    return node


def mirror_lag(conn: sqlite3.Connection, now: int) -> dict:
    """How far behind the mirror is: rows not yet shipped (of each table) and the seconds the oldest has waited."""
    positions, behind, oldest = mirror_positions(conn), {}, []
    for table in MIRRORED:
        if table.positioned:
            rows, first = conn.execute(
                f"SELECT count(*), min({table.time}) FROM {table.table} WHERE id > ?", (positions[table.name],)
            ).fetchone()
            behind[table.name] = rows
            oldest += [first] if first is not None else []
    for name, rows, first in conn.execute("SELECT tbl, count(*), min(since) FROM mirror_pending GROUP BY tbl"):
        behind[name] = behind.get(name, 0) + rows
        oldest.append(first)
    seconds = max(0.0, (now - min(oldest)) / 1000) if oldest else 0.0
    return {"behind_rows": sum(behind.values()), "behind_seconds": round(seconds, 1), "tables": behind}


def unshipped_kept() -> dict[str, str]:
    """For prune with the mirror on, by table: the rows that may go, the others being not yet shipped. The newest
    row of an id table stays too: SQLite gives a new row the largest id + 1, and an emptied table would give ids
    again that ClickHouse already holds (a new row would replace an old one there)."""
    pending = "{} NOT IN (SELECT key FROM mirror_pending WHERE tbl = '{}')"
    kept = {}
    for table in MIRRORED:
        if table.positioned:
            kept[table.table] = (
                f"rowid <= (SELECT json_extract(value, '$.{table.name}') FROM meta WHERE key = 'mirror_position')"
                f" AND rowid < (SELECT max(rowid) FROM {table.table}) AND {pending.format('rowid', table.name)}"
            )
    kept["checkouts"] = kept["checkout_products"] = pending.format("transaction_id", "checkouts")
    return kept


def mirror_advance(conn: sqlite3.Connection, positions: dict, shipped: list[tuple], version: int) -> None:
    """Writer job after ClickHouse took a round: the new positions; pending rows that did not change meanwhile go."""
    set_meta(conn, "mirror_position", json.dumps(positions))
    set_meta(conn, "mirror_version", str(version))
    conn.executemany("DELETE FROM mirror_pending WHERE tbl = ? AND key = ? AND changes = ?", shipped)


MIRROR_UNSHIPPED = unshipped_kept()


class Mirror:
    """The thread that ships committed rows to ClickHouse: a round reads one snapshot of what is new or changed (up
    to MIRROR_BATCH rows a table), inserts each table's rows with this node's id and a new version, and only once
    every insert answered 2xx moves the stored position on (a job of the writer's). A round that fails is tried
    again, with a backoff; rows it had inserted come again with a larger version, which FINAL reads once."""

    def __init__(self, config: dict, writer: Writer, node_id: str):
        self.target = ClickHouseTarget.parse(config["clickhouse_url"])
        self.url = masked_url(config["clickhouse_url"])
        self.db_path = config["db"]
        self.writer = writer
        self.node_id = node_id
        self.retention_days = config["clickhouse_retention_days"]
        self.columns = clickhouse_columns()
        self.version = 0
        self.error: str | None = None  # why the last round failed, until one succeeds
        self.shipped: Counter = Counter()  # rows ClickHouse took, by table (this process)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="prisme-mirror", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn = connect(self.db_path)
        conn.execute("PRAGMA query_only = ON")
        self.version = int(get_meta(conn, "mirror_version") or 0)
        delay, pruned_at = MIRROR_BACKOFF[0], -math.inf
        log.info("mirror: shipping rows to %s as node %s", self.url, self.node_id)
        try:
            while not self.stopping.is_set():
                try:
                    if self.retention_days and time.monotonic() - pruned_at > MIRROR_RETENTION_INTERVAL:
                        self._prune()
                        pruned_at = time.monotonic()
                    more = self.ship(conn)
                except Exception as error:  # whatever it is, the thread goes on: it alone ships
                    if not isinstance(error, ClickHouseError | Unavailable | sqlite3.Error):
                        log.exception("mirror: unexpected failure, retrying")
                    elif self.error is None:
                        log.warning("mirror: %s; ingest goes on, the mirror retries", error)
                    self.error = str(error)
                    self.stopping.wait(delay)  # never a hot loop: ClickHouse down costs a request every 30 s at most
                    delay = min(delay * 2, MIRROR_BACKOFF[1])
                    continue
                if self.error is not None:
                    log.info("mirror: ClickHouse takes rows again")
                self.error, delay = None, MIRROR_BACKOFF[0]
                if not more:
                    self.stopping.wait(MIRROR_INTERVAL)
        finally:
            conn.close()

    def ship(self, conn: sqlite3.Connection) -> bool:
        """One round; whether a table had more rows than a round takes (then the next starts at once)."""
        version = max(self.version + 1, time.time_ns() // 1000)  # µs: larger after a restart too
        batches: dict[str, list[str]] = {}
        shipped: list[tuple] = []
        more = False
        conn.execute("BEGIN")  # one snapshot: positions, pending rows and the rows themselves agree
        try:
            positions = mirror_positions(conn)
            for table in MIRRORED:
                as_json = table.as_json(self.columns[table.name])
                lines = []
                if table.positioned:
                    rows = conn.execute(
                        f"SELECT id, {as_json} FROM {table.source} WHERE id > ? ORDER BY id LIMIT ?",
                        (self.node_id, version, positions[table.name], MIRROR_BATCH),
                    ).fetchall()
                    if rows:
                        positions[table.name] = rows[-1][0]
                    lines = [line for _, line in rows]
                    more |= len(rows) == MIRROR_BATCH
                keys = conn.execute(
                    "SELECT key, changes FROM mirror_pending WHERE tbl = ? LIMIT ?", (table.name, MIRROR_BATCH)
                ).fetchall()
                if keys:
                    more |= len(keys) == MIRROR_BATCH
                    lines += [
                        line
                        for (line,) in conn.execute(
                            f"SELECT {as_json} FROM {table.source} WHERE {table.by_key}",
                            (self.node_id, version, json.dumps([key for key, _ in keys])),
                        )
                    ]
                    shipped += [(table.name, key, changes) for key, changes in keys]
                batches[table.name] = lines
        finally:
            conn.execute("ROLLBACK")
        if not shipped and not any(batches.values()):
            return False
        self.version = version
        for name, lines in batches.items():
            self.target.insert_json(name, lines)
        self.writer.run(mirror_advance, positions, shipped, version)
        self.shipped.update({name: len(lines) for name, lines in batches.items()})
        return more

    def _prune(self) -> None:
        """This node's rows older than clickhouse_retention_days, deleted in ClickHouse (a mutation: in the
        background there)."""
        cutoff = retention_cutoff(now_ms(), self.retention_days)
        for table in MIRRORED:
            self.target.request(
                f"ALTER TABLE {self.target.database}.{table.name} DELETE"
                f" WHERE {table.clickhouse_time} < {cutoff} AND node_id = '{self.node_id}'"
            )

    def status(self, conn: sqlite3.Connection) -> dict:
        """What healthcheck and /metrics say of the mirror."""
        return {"node_id": self.node_id, **mirror_lag(conn, now_ms()), "error": self.error}

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(MIRROR_STOP)


def mirror_metrics(ctx: Context) -> str:
    """/metrics' part of the mirror (none when it is off)."""
    if not ctx.mirror:
        return ""
    lag = mirror_lag(ctx.read(), now_ms())
    return "".join((
        exposition("prisme_clickhouse_shipped_total", "counter", "rows ClickHouse took from this process, by table",
                   [("", {"table": name}, n) for name, n in sorted(ctx.mirror.shipped.items())]),
        exposition("prisme_clickhouse_behind_rows", "gauge", "rows stored or changed, not yet in ClickHouse",
                   [("", {}, lag["behind_rows"])]),
        exposition("prisme_clickhouse_behind_seconds", "gauge", "how long the oldest of them has waited",
                   [("", {}, lag["behind_seconds"])]),
        exposition("prisme_clickhouse_failing", "gauge", "1 while ClickHouse refuses or does not answer, else 0",
                   [("", {}, int(ctx.mirror.error is not None))]),
    ))  # fmt: skip


###############################################################################
# Import ######################################################################
###############################################################################

# `prisme-lite import`: access logs (nginx/Apache combined, Caddy's JSON) become the pageviews live traffic would
# have made, through the same code (web_event, then the writer's WebEventStore, a batch per transaction).
IMPORT_BATCH = 5_000  # log lines read per transaction
IMPORT_KEY_BYTES = 64 << 10  # a file is known by the SHA-256 of this much of its start, and its size
IMPORT_PROGRESS = 10.0  # seconds between progress lines when stderr is no terminal (a terminal's line: 0.2 s)
# Requests for files, not pages: by extension of the last path segment, or by folder.
ASSET_EXTENSIONS = frozenset(
    "css js mjs map png jpg jpeg gif svg ico webp avif bmp woff woff2 ttf otf eot xml txt json webmanifest".split()
)
ASSET_FOLDERS = ("/static/", "/assets/", "/wp-content/", "/wp-includes/", "/_next/", "/.well-known/")
# prisme-lite's own routes, when it is served on the site's host: its API, dashboard, widget tracking and metrics
# (and /count, GoatCounter's pixel, for logs of a site that moved from it). /static/wa.js is an asset already.
OWN_ROUTES = ("/api/", "/dashboard", "/track/", "/metrics", "/count")
# Why a line is no pageview, in the order they are checked, with what the summary says of each.
SKIP_REASONS = {
    "unparseable": "not a line of the log's format",
    "unregistered site": "a host that is no registered origin (`prisme-lite origins add HOST`)",
    "duplicate": "in a file imported before (by its first 64 KiB and size), not read again",
    "before last import": "at or before the latest line imported for its site (an overlapping log)",
    "past retention": "older than retention_days: the server would delete it",
    "method": "not a GET",
    "status": "not 2xx or 304",
    "own route": "prisme-lite's own routes (/api/, /dashboard, /track/, /metrics, /count)",
    "asset": "a static file (.css, .js, images, fonts, /static/, /assets/, /wp-content/ …)",
    "common format": "no referrer and user agent (the common log format): a visitor cannot be told from a bot",
    "prefetch": "a speculative load (Sec-Purpose: prefetch), not a visit",
    "bot": "a crawler, a headless browser or a client that is no browser (the live rule)",
    "invalid": "a page URL or referrer the live API refuses",
}
QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # a quoted field, \" inside (unrolled: twice as fast as (a|b)*)
COMBINED_LINE = re.compile(
    rf"(\S+) \S+ \S+ \[(\d\d/[A-Z][a-z]{{2}}/\d{{4}}:\d\d:\d\d:\d\d [+-]\d{{4}})\] {QUOTED} (\d{{3}}) \S+"
    rf"(?: {QUOTED} {QUOTED})?"
)
LOG_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})|\\(.)")  # nginx writes \x22, Apache \" and \\
MONTHS = {name: number for number, name in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


@dataclass(slots=True)
class LogLine:
    """One request of an access log, as both formats give it."""

    ts: int  # unix ms
    ip: str
    method: str
    target: str  # the request target: /path?query, or an absolute URL
    host: str | None  # the Host header (Caddy); a combined log has none
    status: int
    referrer: str | None
    user_agent: str | None  # None: the log has no such field (the common format)
    scheme: str = "https"
    prefetch: bool = False


class Skipped(Exception):
    """A log line that becomes no pageview; its one argument is the reason (SKIP_REASONS)."""


def combined_time(text: str) -> int:
    """Unix ms of a combined log's time, `10/Oct/2026:13:55:36 -0700` (COMBINED_LINE checked its shape)."""
    hours, minutes, seconds = int(text[12:14]), int(text[15:17]), int(text[18:20])
    if hours > 23 or minutes > 59 or seconds > 60:  # 60: a leap second
        raise ValueError(f"no time of day: {text[12:20]}")
    return local_midnight(text[:11], text[21:]) + (hours * 3600 + minutes * 60 + seconds) * 1000


@functools.lru_cache(maxsize=64)  # a log's lines share a few days: a datetime per day, not per line
def local_midnight(date: str, zone: str) -> int:
    """Unix ms of the start of a day (`10/Oct/2026`) in a time zone of the log (`-0700`)."""
    midnight = datetime.datetime(int(date[7:11]), MONTHS[date[3:6]], int(date[:2]), tzinfo=datetime.UTC)
    offset = (int(zone[1:3]) * 60 + int(zone[3:5])) * MINUTE_MS
    return int(midnight.timestamp()) * 1000 - (offset if zone[0] == "+" else -offset)


def log_text(value: str) -> str:
    """A quoted field of a combined log as the client sent it: the servers' escapes undone (\\xHH are bytes)."""
    if "\\" not in value:
        return value
    raw = LOG_ESCAPE.sub(lambda found: chr(int(found[1], 16)) if found[1] else found[2], value)
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:  # not UTF-8 once unescaped: as it was in the log
        return raw


def parse_combined(text: str) -> LogLine | None:
    """A line of nginx's or Apache's combined format (or the common format, without referrer and user agent)."""
    found = COMBINED_LINE.match(text)
    if found is None:
        return None
    ip, when, request_line, status, referrer, user_agent = found.groups()
    try:
        ts = combined_time(when)
    except (KeyError, ValueError):
        return None
    method, _, rest = log_text(request_line).partition(" ")
    target = rest.rpartition(" ")[0] if rest.rpartition(" ")[2].startswith("HTTP/") else rest
    referrer = None if referrer in (None, "-", "") else log_text(referrer)
    user_agent = None if user_agent is None else "" if user_agent == "-" else log_text(user_agent)
    return LogLine(ts, ip, method, target, None, int(status), referrer, user_agent)


def parse_caddy(text: str) -> LogLine | None:
    """A line of Caddy's JSON access log: request.method, uri, host, headers, client_ip (or remote_ip), status, ts
    (seconds, or an ISO 8601 time)."""
    try:
        entry = json.loads(text)
        req = entry["request"]
        headers = req.get("headers") or {}

        def header(name: str) -> str | None:
            values = headers.get(name)
            return values[0] if isinstance(values, list) and values and isinstance(values[0], str) else None

        ts = entry["ts"]
        ts = int(ts * 1000) if type(ts) in (int, float) else int(datetime.datetime.fromisoformat(ts).timestamp() * 1000)
        ip, method, target, host = req.get("client_ip") or req["remote_ip"], req["method"], req["uri"], req["host"]
        status = entry["status"]
        if not all(isinstance(value, str) for value in (ip, method, target, host)) or type(status) is not int:
            return None
        prefetch = "prefetch" in (header("Sec-Purpose") or header("Purpose") or header("X-Moz") or "").lower()
        scheme = "https" if req.get("tls") else "http"
        user_agent = header("User-Agent") or ""
        return LogLine(ts, ip, method, target, host, status, header("Referer"), user_agent, scheme, prefetch)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None


LOG_FORMATS: dict[str, Callable[[str], LogLine | None]] = {"combined": parse_combined, "caddy": parse_caddy}


def is_asset(path: str) -> bool:
    """A request for a file rather than a page (ASSET_EXTENSIONS, ASSET_FOLDERS)."""
    last = path.rpartition("/")[2]
    return ("." in last and last.rpartition(".")[2].lower() in ASSET_EXTENSIONS) or path.startswith(ASSET_FOLDERS)


OWN_ROUTE_STARTS = tuple(route.rstrip("/") + "/" for route in OWN_ROUTES)


def is_own_route(path: str) -> bool:
    """One of OWN_ROUTES, or under it: /dashboard and /dashboard/login, not /dashboards-we-like."""
    return path.startswith(OWN_ROUTE_STARTS) or path in OWN_ROUTES


@dataclass
class LogFile:
    """A log to import: where, what is known of it before reading (format, first time), and its key."""

    path: str
    key: str
    gzipped: bool
    format: str
    first_ts: float  # of its first line that parses (inf: none in its first lines), to import the oldest first

    def lines(self) -> Iterator[bytes]:
        with gzip.open(self.path, "rb") if self.gzipped else open(self.path, "rb") as file:
            yield from file


def open_log(path: str, fmt: str | None) -> LogFile:
    """What import needs to know of a log before reading it; one line (CommandError) for a file it cannot read."""
    if os.path.isdir(path):
        raise CommandError(f"import: {path} is a directory; give the log files in it")
    try:
        with open(path, "rb") as file:
            head = file.read(IMPORT_KEY_BYTES)
            size = os.fstat(file.fileno()).st_size
    except OSError as error:
        raise CommandError(f"import: cannot read {path}: {error.strerror}") from None
    key = f"{hashlib.sha256(head).hexdigest()}:{size}"
    log_file = LogFile(path, key, head[:2] == b"\x1f\x8b", fmt or "combined", math.inf)
    try:
        first = list(itertools.islice((line for line in log_file.lines() if line.strip()), 100))
    except (OSError, EOFError, zlib.error) as error:
        raise CommandError(f"import: {path} is not readable gzip data ({error})") from None
    if first and fmt is None and first[0].lstrip().startswith(b"{"):
        log_file.format = "caddy"
    parse = LOG_FORMATS[log_file.format]
    log_file.first_ts = next((line.ts for text in first if (line := parse(text.decode("utf-8", "replace")))), math.inf)
    return log_file


class Progress:
    """Import progress on stderr: one line refreshed in place on a terminal, a line every IMPORT_PROGRESS s else."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = self.shown = time.monotonic()

    def show(self, name: str, lines: int, pageviews: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.shown < (0.2 if self.tty else IMPORT_PROGRESS):
            return
        self.shown = now
        rate = lines / max(now - self.started, 1e-6)
        text = f"import: {name}: {lines:,} lines, {rate:,.0f} lines/s, {pageviews:,} pageviews"
        if self.tty:
            sys.stderr.write(f"\r{text}\x1b[K" + ("\n" if final else ""))
        elif not final:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


class Importer:
    """One run of `prisme-lite import`, with no server on the database: log lines to pageviews, stored a batch per
    transaction by the writer's own applier, so sessions and daily counts are what live traffic makes.

    Visitors: live ids are keyed by the day's salt, which is deleted at midnight; so a past day's salt is drawn
    afresh, once per run and day, and never stored: visitors are distinct within a run's day and cannot be linked
    to live ones, nor to another run's (a visitor whose day spans two runs counts twice that day). The IP address
    goes only into that hash. Each site's latest line imported is kept (import_marks): lines at or before it are
    taken as imported, so a log overlapping an earlier one adds only what is new, and a run cut short resumes.
    """

    def __init__(self, conn: sqlite3.Connection, config: dict, site_host: str | None):
        self.conn = conn
        self.store = WebEventStore(config["session_timeout"] * MINUTE_MS)
        self.origins = OriginRegistry(config["origins"], lambda: conn)
        self.country = CountryLookup(config)
        self.site_host = site_host
        self.cutoff = retention_cutoff(now_ms(), config["retention_days"]) if config["retention_days"] else None
        self.salts: dict[int, bytes] = {}
        self.sites: dict[str, str | None] = {}  # host → registered origin (None: none)
        self.marks = {site: (ts, n) for site, ts, n in conn.execute("SELECT site, ts, lines FROM import_marks")}
        self.read = self.pageviews = self.parsed = 0
        self.skipped: Counter = Counter()
        self.unregistered: Counter = Counter()
        self.progress = Progress()

    def site_of(self, host: str) -> str | None:
        if host not in self.sites:
            self.sites[host] = self.origins.site_of(host_of(f"http://{host}/") or host)
        return self.sites[host]

    def salt(self, ts: int) -> bytes:
        """The salt of `ts`'s day in this run: drawn when first needed, held in memory only."""
        day = ts // DAY_MS
        if day not in self.salts:
            self.salts[day] = secrets.token_bytes(32)
        return self.salts[day]

    def import_file(self, log_file: LogFile) -> None:
        """Import one file, a batch of IMPORT_BATCH lines per transaction."""
        done = self.conn.execute(
            "SELECT lines FROM imports WHERE file_key = ? AND finished_at IS NOT NULL", (log_file.key,)
        ).fetchone()
        if done:
            self.skipped["duplicate"] += done[0]
            print(f"import: {log_file.path}: imported before, skipped", file=sys.stderr)
            return
        self.conn.execute(
            "INSERT INTO imports (file_key, name, lines, pageviews, started_at) VALUES (?, ?, 0, 0, ?)"
            " ON CONFLICT DO NOTHING",
            (log_file.key, log_file.path, now_ms()),
        )
        parse = LOG_FORMATS[log_file.format]
        # This file's latest time per site and how many of its lines had it; and lines at the mark's time so far.
        file_marks: dict[str, tuple[int, int]] = {}
        at_mark: Counter = Counter()
        batch: list[WebEvent] = []
        lines = pageviews = 0
        whole = True
        try:
            for raw in log_file.lines():
                lines += 1
                if not raw.strip():
                    continue
                try:
                    batch.append(self.pageview(parse(raw.decode("utf-8", "replace")), file_marks, at_mark))
                except Skipped as skipped:
                    self.skipped[skipped.args[0]] += 1
                if lines % IMPORT_BATCH == 0:
                    pageviews += self.commit(log_file, batch, file_marks, lines, pageviews)
                    batch = []
        except (OSError, EOFError, zlib.error) as error:  # a gzip file cut short: what came before it is kept
            print(f"import: {log_file.path}: stopped reading after line {lines}: {error}", file=sys.stderr)
            whole = False  # not finished: run again, it is read again (and its marks skip what is in)
        pageviews += self.commit(log_file, batch, file_marks, lines, pageviews, finished=whole)
        self.read += lines
        self.pageviews += pageviews
        self.progress.show(log_file.path, self.read, self.pageviews, final=True)
        for site, mark in file_marks.items():
            self.marks[site] = max(mark, self.marks.get(site, mark))

    def pageview(self, line: LogLine | None, file_marks: dict, at_mark: Counter) -> WebEvent:
        """The pageview a log line makes, as record_web_event makes it live; else Skipped, saying why."""
        if line is None:
            raise Skipped("unparseable")
        self.parsed += 1
        host = self.site_host or line.host or ""
        site = self.site_of(host)
        if site is None:
            self.unregistered[host] += 1
            raise Skipped("unregistered site")
        latest, count = file_marks.get(site, (line.ts, 0))
        file_marks[site] = (line.ts, 1) if line.ts > latest else (latest, count + (line.ts == latest))
        mark = self.marks.get(site)
        if mark and line.ts <= mark[0]:
            at_mark[site] += line.ts == mark[0]
            if line.ts < mark[0] or at_mark[site] <= mark[1]:
                raise Skipped("before last import")
        if self.cutoff is not None and line.ts < self.cutoff:
            raise Skipped("past retention")
        if line.method != "GET":
            raise Skipped("method")
        if not (200 <= line.status < 300 or line.status == 304):
            raise Skipped("status")
        path = line.target.partition("?")[0].partition("#")[0]
        if path.startswith(("http://", "https://")):  # a request in absolute form (to a proxy)
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        if is_own_route(path):
            raise Skipped("own route")
        if is_asset(path):
            raise Skipped("asset")
        if line.user_agent is None:
            raise Skipped("common format")
        if line.prefetch:
            raise Skipped("prefetch")
        user_agent = line.user_agent[:MAX_USER_AGENT_LENGTH]
        agent = parse_user_agent(user_agent)
        if agent.is_bot:
            raise Skipped("bot")
        url = line.target if line.target.startswith(("http://", "https://")) else f"{line.scheme}://{host}{line.target}"
        try:
            page = parse_page_url(url) if line.target.startswith(("/", "http://", "https://")) else None
            if page is None:
                raise Skipped("invalid")
            referrer = referrer_host(line.referrer, page.host)
        except Rejected:
            raise Skipped("invalid") from None
        visitor_id = make_visitor_id(self.salt(line.ts), site, line.ip, user_agent)
        country = self.country({}, line.ip)
        return web_event(
            line.ts, site, "pageview", page, (referrer, line.referrer), agent, visitor_id, country, line.status
        )

    def commit(
        self, log_file: LogFile, batch: list[WebEvent], marks: dict, lines: int, before: int, finished: bool = False
    ) -> int:
        """Store a batch in time order, with how far the file and each site's mark got, in one transaction."""
        batch.sort(key=itemgetter("ts"))  # a log is in time order but for requests that overlapped
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            self.store(conn, batch)
            conn.executemany(
                "INSERT INTO import_marks VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET lines = CASE"
                " WHEN excluded.ts > ts THEN excluded.lines WHEN excluded.ts = ts THEN max(lines, excluded.lines)"
                " ELSE lines END, ts = max(ts, excluded.ts)",
                [(site, ts, n) for site, (ts, n) in marks.items()],
            )
            conn.execute(
                "UPDATE imports SET lines = ?, pageviews = pageviews + ?, finished_at = ? WHERE file_key = ?",
                (lines, len(batch), now_ms() if finished else None, log_file.key),
            )
            conn.execute("COMMIT")
        except BaseException:  # an error or Ctrl-C: this batch is undone whole, the ones before stay
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.store.reset()
            raise
        self.progress.show(log_file.path, self.read + lines, self.pageviews + before + len(batch))
        return len(batch)


def import_logs(config: dict, paths: list[str], fmt: str | None, site: str | None) -> int:
    """`prisme-lite import`: every file, oldest first, then a summary of what was imported and skipped, and why."""
    db = config["db"]
    files = sorted((open_log(path, fmt) for path in paths), key=attrgetter("first_ts"))
    with command_connection(config) as conn, no_server_on(db, "import", "import with it stopped, then start it"):
        site_host = None
        if site is not None:
            try:
                site_host = normalise_origin(site)
            except ValueError as error:
                raise CommandError(f"import: --site: {error}") from None
            if site_host.startswith("*."):
                raise CommandError(f"import: --site takes the site's host (www.example.com), not {site_host}")
            if OriginRegistry(config["origins"], lambda: conn).site_of(site_host) is None:
                raise CommandError(
                    f"import: --site {site_host} is not a registered origin's host; add it with"
                    f" `prisme-lite origins add {site_host}`"
                )
        combined = [log_file.path for log_file in files if log_file.format == "combined"]
        if combined and site_host is None:
            raise CommandError(f"import: {combined[0]} is a combined log, which names no host: give --site SITE")
        record_for_mirror(conn)
        importer = Importer(conn, config, site_host)
        events_before, sessions_before = (
            conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0] for table in ("events", "sessions")
        )
        try:
            for log_file in files:
                importer.import_file(log_file)
        except KeyboardInterrupt:
            print("import: interrupted; what was stored stays, and running it again goes on", file=sys.stderr)
            return 130
        stored = conn.execute("SELECT count(*) FROM events WHERE id > ?", (events_before,)).fetchone()[0]
        visits = conn.execute("SELECT count(*) FROM sessions WHERE id > ?", (sessions_before,)).fetchone()[0]
    print_import_summary(importer, len(files), stored, visits)
    if importer.parsed == 0 and not importer.skipped["duplicate"]:
        names = ", ".join(paths)
        print(f"prisme-lite: import: no line of {names} is an access log line (combined or caddy)", file=sys.stderr)
        return 1
    return 0


def print_import_summary(importer: Importer, files: int, stored: int, visits: int) -> None:
    seconds = time.monotonic() - importer.progress.started
    reloads = importer.pageviews - stored
    print(
        f"read {importer.read:,} {plural('line', importer.read)} of {files} {plural('file', files)} in"
        f" {seconds:.1f} s; imported {stored:,} {plural('pageview', stored)} in {visits:,} {plural('visit', visits)}"
        + (f" (and {reloads:,} {plural('reload', reloads)} of the page a visit is on, stored as nothing, as live)"
           if reloads else "")
    )  # fmt: skip
    skipped = sum(importer.skipped.values())
    if skipped:
        print(f"skipped {skipped:,} {plural('line', skipped)}:")
        width = max(len(reason) for reason in importer.skipped)
        for reason, about in SKIP_REASONS.items():
            if importer.skipped[reason]:
                print(f"  {reason.ljust(width)}  {importer.skipped[reason]:>9,}  {about}")
    if importer.unregistered:
        hosts = ", ".join(terminal_text(host) or "(none)" for host, _ in importer.unregistered.most_common(5))
        print(f"hosts that are no registered origin: {hosts}; add a site with `prisme-lite origins add HOST`")
    if importer.skipped["before last import"]:
        print("lines at or before a site's latest imported line count as imported: import older logs first")


###############################################################################
# Command line and server #####################################################
###############################################################################


def embed_snippet(base_url: str) -> str:
    return (
        f'<img src="{base_url}/api/v1/noscript/events/pageviews" alt="" '
        'referrerpolicy="no-referrer-when-downgrade" style="position:absolute;top:-100px;">'
    )


def banner_token(ctx: Context) -> str:
    """The admin token on the first start only: under systemd the banner ends up in the journal, every start."""
    if ctx.config["admin_token"]:
        return "the admin_token of your configuration"
    token = ctx.admin_token()
    if get_meta(ctx.read(), "admin_token_shown"):
        return f"printed on the first start only; `prisme-lite admin-token --db {ctx.config['db']}` prints it again"
    ctx.writer.run(set_meta, "admin_token_shown", "1")
    return token


def pin_to_one_cpu() -> int | None:
    """Run on one core: threaded Python servers lose up to half their throughput to the GIL moving between cores."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    os.sched_setaffinity(0, {cpus[-1]})
    return cpus[-1]


def lock_database(db: str) -> int:
    """Hold an exclusive lock on DB.lock for the life of this process; the kernel lets go at exit, kill -9 included.

    Two servers on one database would both replay and fold the same journal, storing its events twice.
    """
    check_writable(db)
    try:
        fd = os.open(os.path.abspath(db) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise ConfigError(f"db: cannot create {db}.lock beside the database: {error.strerror}") from None
    holder = lock_holder(fd, fcntl.LOCK_EX)
    if holder:
        os.close(fd)
        raise ConfigError(f"{db} is in use by another prisme-lite server (pid {holder}): stop it first")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def lock_holder(fd: int, mode: int) -> str | None:
    """Take the lock of `fd` in `mode` without waiting: None when taken, else the pid its holder wrote in it."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.pread(fd, 40, 0).decode("ascii", "replace").strip() or "unknown"


@contextlib.contextmanager
def no_server_on(db: str, command: str, why: str = "") -> Iterator[None]:
    """Run `command`'s body while no server runs on `db`, and keep one from starting meanwhile (a shared lock on
    DB.lock): it would change rows under a server's writer, which caches and folds them."""
    fd = os.open(os.path.abspath(db) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        holder = lock_holder(fd, fcntl.LOCK_SH)
        if holder:
            raise CommandError(
                f"{command}: a server (pid {holder}) is running on {db}; stop it first" + (f" ({why})" if why else "")
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}, prisme-lite {command}\n".encode(), 0)  # what a server starting now names
        yield
    finally:
        os.close(fd)


def listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound here so that a port in use is one clear line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        in_use = error.errno == errno.EADDRINUSE
        hint = " (another program is listening there: pick another with --port)" if in_use else ""
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}{hint}") from None
    sock.listen(LISTEN_BACKLOG)
    return sock


def granian_callback(app: Callable, running: list) -> Callable:
    """What granian's Rust worker calls per request: the WSGI app, with the environ built from the request alone.

    granian's own wrapper copies the whole process environment into every request's environ; this does not.
    `running[0]` counts the calls in progress, so that a stop can let them finish before the writer closes.
    """
    base = {
        "SCRIPT_NAME": "",
        "SERVER_SOFTWARE": "prisme-lite",
        "wsgi.errors": sys.stderr,
        "wsgi.input_terminated": True,
        "wsgi.multiprocess": False,
        "wsgi.multithread": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }

    from granian.wsgi import ResponseIterWrap

    lock = threading.Lock()

    def call(protocol: Any, scope: dict) -> int:
        head: list = [200, []]  # the status and headers the application starts its response with

        def start_response(status: str, headers: list, exc_info: Any = None) -> None:
            head[0], head[1] = int(status[:3]), headers

        with lock:
            running[0] += 1
        try:
            body = app(base | scope, start_response)
            if isinstance(body, list):
                protocol.response_bytes(head[0], head[1], b"".join(body))
            else:  # a stream (an export): sent as it is produced, never held whole
                protocol.response_iter(head[0], head[1], ResponseIterWrap(body))
        finally:
            with lock:
                running[0] -= 1
        return head[0]

    return call


def run_http_server(app: Callable, sock: socket.socket, config: dict) -> None:
    """Serve `app` on the listening `sock` until SIGTERM or SIGINT.

    granian's Rust worker runs inside this process (not in a child, as its command line would): the rate limiter,
    the writer and the caches live in one process, and a kill -9 of this pid leaves nothing behind. Its event loop
    holds idle and slow connections without a Python thread each; `threads` Python threads run the requests.
    """
    catch_stop_signals()
    if config["server"] == "waitress":
        import waitress.server

        server = waitress.server.create_server(
            app,
            sockets=[sock],
            threads=config["threads"],
            ident="prisme-lite",
            max_request_body_size=config["max_body_bytes"] + 1024,
            clear_untrusted_proxy_headers=False,
        )
        try:
            if not STOPPING.is_set():  # a stop asked during start-up whose KeyboardInterrupt was lost
                server.run()  # returns after SIGTERM or Ctrl-C, once the worker threads have finished their requests
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
        return
    from granian._futures import _new_cbscheduler
    from granian._granian import SocketHolder, WorkerSignal, WSGIWorker
    from granian._loops import loops
    from granian.http import HTTP1Settings

    shutdown = WorkerSignal()
    worker = WSGIWorker(
        1,
        (None, SocketHolder(os.dup(sock.fileno()), False, LISTEN_BACKLOG)),  # granian closes the one it holds
        None,
        threads=1,  # the Rust runtime's threads: one does the HTTP of this machine's ceiling (bench/run)
        py_threads=config["threads"],
        # granian takes one of these permits per open connection, idle ones included: 128 (its default) idle
        # sockets would lock every other client out until header_timeout. Requests still queue for `threads`.
        backpressure=MAX_CONNECTIONS,
        http_mode="1",
        http1_opts=HTTP1Settings(
            header_read_timeout=config["header_timeout"] * 1000,
            keep_alive=True,
            max_buffer_size=65_536,
            pipeline_flush=False,
        ),
    )
    loop = loops.get("auto")
    running = [0]
    try:
        worker.serve_mtr(_new_cbscheduler(loop, granian_callback(app, running), impl_asyncio=False), loop, shutdown)
        # The Rust worker serves on threads of its own. A signal may be delivered to any of them, and then Python
        # runs its handler only when this thread next wakes: so it wakes a few times a second.
        while not STOPPING.is_set():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        shutdown.set()  # no new connections; then the requests in progress finish, for a few seconds at most
        deadline = time.monotonic() + STOP_GRACE
        while running[0] and time.monotonic() < deadline:
            time.sleep(0.01)


def give_back_freed_memory() -> None:
    """Hand the C heap that start-up freed back to the kernel (glibc's malloc_trim; elsewhere, nothing).

    Importing this module from source (wherever no .pyc can be written) takes some 20 MB that glibc keeps once
    freed: without this a server measured 54 MB idle and 86–88 MB at the end of 8 s of the pixel's load (a new
    visitor each), with it 40 and 73–74 MB, at the same rate. Run as a script (`python prisme_lite.py serve`),
    CPython holds the file's syntax tree until the script ends, and there is nothing freed to give back."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): it has no malloc_trim
        pass


# A stop was asked (SIGTERM, SIGINT). The KeyboardInterrupt stop_on_signal raises can be lost: raised where Python
# ignores exceptions (seen: in an import's module-lock callback, while granian's modules load at start), it is
# printed and dropped, and the server would serve on until killed. The server's loop ends on this as well.
STOPPING = threading.Event()


def stop_on_signal(signum: int, frame: Any) -> None:
    STOPPING.set()
    raise KeyboardInterrupt


def catch_stop_signals() -> None:
    """SIGTERM and SIGINT stop the server (stop_on_signal)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop_on_signal)


def raise_file_limit() -> None:
    """Each open connection is a file descriptor: allow as many as the hard limit lets, up to MAX_CONNECTIONS."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_CONNECTIONS + 256 if hard == resource.RLIM_INFINITY else min(hard, MAX_CONNECTIONS + 256)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def serve(config: dict) -> int:
    lock = lock_database(config["db"])
    raise_file_limit()
    cpu = pin_to_one_cpu() if config["pin_cpu"] else None  # before any thread starts: threads inherit it
    sock = listen(config["host"], config["port"])
    app = make_app(config)
    ctx: Context = app.ctx
    host, port = sock.getsockname()[:2]
    base_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    parse_user_agent("Mozilla/5.0")  # compile user-agents' regexes now, not during the first visitor's request
    origins = sorted(set(config["origins"]) | set(stored_origins(ctx.read())))
    # What is loaded by now (modules, routes, regexes, the schema) lives as long as the server: out of the garbage
    # collector's sight, a full collection under load walks only what requests and caches made since, and holds
    # every thread that long rather than the whole heap's.
    gc.collect()
    gc.freeze()
    give_back_freed_memory()
    access_log = AccessLog() if config["access_log"] else None
    STOPPING.clear()
    catch_stop_signals()  # from here on, a stop is a clean one
    try:
        print(
            f"prisme-lite {__version__} listening on {base_url} (database {config['db']}, {config['server']}"
            f"{f', pinned to CPU {cpu}' if cpu is not None else ''})\n"
            f"registered origins: {', '.join(origins) or 'none (add one with `prisme-lite origins add HOST`)'}\n"
            f"admin token: {banner_token(ctx)}\n"
            f"paste this into a page of a registered origin to count its visits:\n{embed_snippet(base_url)}\n"
            f"the dashboard: {base_url}/dashboard (log in with the admin token)",
            flush=True,
        )
        run_http_server(RequestLog(app, access_log), sock, config)
    except KeyboardInterrupt:
        pass  # a stop that came before the server loop started: nothing was in flight
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):  # a second Ctrl-C must not cut the writer's last fold short
            signal.signal(signum, signal.SIG_IGN)
        sock.close()
        ctx.close()  # commits whatever the writer still holds
        if access_log:
            access_log.close()
        log.info("stopped")
        os.close(lock)
    return 0


def add_settings(parser: argparse.ArgumentParser, keys: tuple[str, ...]) -> None:
    """A flag for each setting in `keys` (`--rate-limit 120`, `--trust-proxy`), with its default, in one group."""
    group = parser.add_argument_group(
        "settings", "each also PRISME_<NAME> in the environment or <name> in the --config file; flags win"
    )
    group.add_argument("--config", metavar="FILE", help="TOML configuration file (default: $PRISME_CONFIG)")
    for key in keys:
        setting, flag = SETTINGS[key], "--" + key.replace("_", "-")
        default = setting.default
        if isinstance(default, list):
            default = ", ".join(default)
        elif isinstance(default, bool):
            default = str(default).lower()
        text = f"{setting.help} (default: {default if default != '' else 'none'})".replace("%", "%%")
        if setting.value_type == "bool":
            group.add_argument(flag, dest=key, nargs="?", const="true", metavar="BOOL", help=text)
        else:
            metavar = "FILE" if key.endswith("db") else "|".join(setting.choices) or key.split("_")[-1].upper()
            group.add_argument(flag, dest=key, metavar=metavar, help=text)


# The settings each command reads; its --help shows them after its own arguments (serve reads them all).
WRITES = ("db", "synchronous")
COMMAND_SETTINGS = {
    "init": WRITES, "origins add": WRITES, "origins list": ("db", "origins"),
    "origins remove": (*WRITES, "origins"), "tokens create": WRITES, "tokens revoke": WRITES,
    "prune": (*WRITES, "retention_days", "clickhouse_url"), "admin-token": (*WRITES, "admin_token"),
    "stats": ("db", "origins"),
    "dead-letters retry": (*WRITES, "session_timeout"), "goals add": (*WRITES, "origins"), "goals remove": WRITES,
    "clickhouse init": ("db", "clickhouse_url"), "clickhouse status": ("db", "clickhouse_url", "node_id"),
    "share create": (*WRITES, "origins", "host", "port"), "share revoke": WRITES,
    "import": (*WRITES, "origins", "session_timeout", "geoip_db", "retention_days"),
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prisme-lite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"prisme-lite {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    with_settings: list[tuple[argparse.ArgumentParser, tuple[str, ...]]] = []

    def command(group: Any, name: str, summary: str) -> argparse.ArgumentParser:
        made = group.add_parser(name, help=summary, description=summary)
        full_name = made.prog.split(" ", 1)[1]  # "origins add"
        keys = tuple(SETTINGS) if name == "serve" else COMMAND_SETTINGS.get(full_name, ("db",))
        with_settings.append((made, keys))
        return made

    command(commands, "serve", "run the HTTP server")
    command(commands, "init", "create the database (and its admin token) and exit")
    origins = commands.add_parser("origins", help="manage the sites allowed to send events")
    actions = origins.add_subparsers(dest="action", metavar="ACTION", required=True)
    command(actions, "add", "register hosts").add_argument("hosts", nargs="+", metavar="HOST")
    command(actions, "list", "list registered hosts")
    command(actions, "remove", "unregister hosts").add_argument("hosts", nargs="+", metavar="HOST")
    counters = commands.add_parser("counters", help="show action counters")
    counter_actions = counters.add_subparsers(dest="action", metavar="ACTION", required=True)
    counter_list = command(counter_actions, "list", "every counter with its count")
    counter_list.add_argument("--client", metavar="ID", help="only this client's counters")
    counter_show = command(counter_actions, "show", "one counter, with its last 30 days")
    counter_show.add_argument("action_id", metavar="ACTION")
    counter_show.add_argument("page_id", metavar="PAGE")
    counter_show.add_argument("--client", metavar="ID", help="only this client's counter")
    tokens = commands.add_parser("tokens", help="manage access tokens for the APIs")
    token_actions = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = command(token_actions, "create", "create a token and print it, once")
    create.add_argument(
        "--scope", action="append", required=True, metavar="SCOPE", help=f"one of {', '.join(SCOPES)} (repeatable)"
    )
    create.add_argument("--name", default="", help="what the token is for")
    command(token_actions, "list", "list tokens (never the tokens themselves)")
    command(token_actions, "revoke", "revoke a token by its id").add_argument("token_id", metavar="ID")
    stats = command(commands, "stats", "a summary of the last days, for reading")
    stats.add_argument("--site", help="only this registered origin's web traffic")
    stats.add_argument("--days", type=int, default=30, help="how many days back (default 30)")
    exporter = command(commands, "export", "write raw rows as CSV or NDJSON")
    exporter.add_argument("--format", dest="export_format", choices=("csv", "ndjson"), default="csv")
    exporter.add_argument("--kind", default="events", choices=list(EXPORTS), help="what to export (default events)")
    exporter.add_argument("--from", dest="start", metavar="WHEN", help="now-30d/d, 2024-01-31, RFC 3339 (default: all)")
    exporter.add_argument("--to", dest="end", metavar="WHEN", help="as --from (default: now)")
    exporter.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    pruner = command(commands, "prune", "delete raw rows older than N days, now")
    pruner.add_argument("--older-than", type=int, metavar="DAYS", help="default: retention_days")
    command(commands, "backup", "copy the database, online and consistent").add_argument(
        "file", metavar="FILE", help="the new backup file"
    )
    command(commands, "check", "integrity check and prisme-lite's own invariants")
    letters = commands.add_parser("dead-letters", help="journal lines that could not be stored: why, and retry")
    letter_actions = letters.add_subparsers(dest="action", metavar="ACTION", required=True)
    command(letter_actions, "list", "each kept line: its journal position, when, why it was not stored")
    command(letter_actions, "retry", "store the lines that now can (with no server running); the others stay")
    goals = commands.add_parser("goals", help="manage the conversions each site counts")
    goal_actions = goals.add_subparsers(dest="action", metavar="ACTION", required=True)
    goal_add = command(goal_actions, "add", "count a custom event, or a visit of a page, as a conversion")
    goal_add.add_argument("--site", required=True, help="a registered origin")
    goal_target = goal_add.add_mutually_exclusive_group(required=True)
    goal_target.add_argument("--event", metavar="NAME", help="the custom event's name")
    goal_target.add_argument("--path", metavar="PATH", help="the page's path, such as /thanks")
    command(goal_actions, "list", "every goal with its id").add_argument("--site", help="only this site's goals")
    command(goal_actions, "remove", "remove a goal by its id").add_argument("goal_id", type=int, metavar="ID")
    clickhouse = commands.add_parser("clickhouse", help="the mirror to ClickHouse (clickhouse_url)")
    clickhouse_actions = clickhouse.add_subparsers(dest="action", metavar="ACTION", required=True)
    command(clickhouse_actions, "init", "create the ClickHouse database and tables (clickhouse.sql); again is fine")
    command(clickhouse_actions, "status", "how far behind the mirror is: rows and seconds not yet shipped")
    importer = command(commands, "import", "import history from access logs (nginx/Apache combined, Caddy JSON)")
    importer.add_argument("files", nargs="+", metavar="FILE", help="access logs, gzipped or not, in any order")
    importer.add_argument(
        "--format", dest="log_format", choices=tuple(LOG_FORMATS), help="default: caddy if a line starts with {"
    )
    importer.add_argument("--site", metavar="HOST", help="the site's host (required for combined logs)")
    share = commands.add_parser("share", help="manage shared dashboards: read-only links to one site's, no login")
    share_actions = share.add_subparsers(dest="action", metavar="ACTION", required=True)
    share_create = command(share_actions, "create", "create a link /share/<token> and print it, once")
    share_create.add_argument("--site", required=True, help="a registered origin")
    share_create.add_argument("--expires", metavar="DAYS", help="days the link works (default: until revoked)")
    command(share_actions, "list", "every share: its token's start, site, dates (never the tokens themselves)")
    command(share_actions, "revoke", "end a share: its link answers 404 at once").add_argument(
        "token", metavar="TOKEN", help="the token, or its start as `share list` shows it"
    )
    token = command(commands, "admin-token", "print the admin token")
    token.add_argument("--rotate", action="store_true", help="replace it with a new one first")
    for made, keys in with_settings:  # last, so that a command's --help shows its own arguments first
        add_settings(made, keys)
    return parser


def run_command(args: argparse.Namespace, config: dict) -> int:
    """Run the command `args` names (COMMANDS), on a database that exists: only serve and init create one."""
    if args.command == "clickhouse" and args.action == "init":  # ClickHouse alone: no SQLite database needed
        return clickhouse_command(args, config)
    if args.command not in ("serve", "init") and not os.path.exists(config["db"]):
        # Any other command on a mistyped path, or run from another directory, would make an empty database and
        # answer from it (a token the running server has never heard of).
        raise ConfigError(
            f"{args.command}: no database at {os.path.abspath(config['db'])}; point --db (or PRISME_DB) at the"
            f" server's database, or create one with `prisme-lite init --db {config['db']}`"
        )
    if args.command != "serve":  # the server opens it itself (make_app)
        open_database(config["db"])
    return COMMANDS[args.command](args, config)


@contextlib.contextmanager
def command_connection(config: dict) -> Iterator[sqlite3.Connection]:
    """A command's connection to the database, in autocommit mode: each statement is its own transaction."""
    conn = connect(config["db"], config["synchronous"])
    try:
        yield conn
    finally:
        conn.close()


def serve_command(args: argparse.Namespace, config: dict) -> int:
    return serve(config)


def init_command(args: argparse.Namespace, config: dict) -> int:
    with command_connection(config) as conn:
        admin_token(conn)
    print(f"database ready: {config['db']} (schema version {SCHEMA_VERSION})")
    return 0


def origins_command(args: argparse.Namespace, config: dict) -> int:
    """`origins add`, `list` and `remove`: the sites registered in the database, beside the origins setting."""
    with command_connection(config) as conn:
        if args.action == "list":
            configured = set(config["origins"])
            for origin in sorted(configured | set(stored_origins(conn))):
                print(origin + ("  (from configuration)" if origin in configured else ""))
            return 0
        try:
            hosts = [normalise_origin(host) for host in args.hosts]
        except ValueError as error:
            raise CommandError(f"origins {args.action}: {error}") from None
        for host in hosts:
            if args.action == "add":
                print(f"{'added' if add_origin(conn, host) else 'already registered'}: {host}")
            elif remove_origin(conn, host):
                print(f"removed: {host}")
            elif host in config["origins"]:
                print(origin_from_setting(host, config["origins"]), file=sys.stderr)
                return 1
            else:
                print(f"not registered: {host}", file=sys.stderr)
                return 1
    return 0


def counters_command(args: argparse.Namespace, config: dict) -> int:
    with command_connection(config) as conn:
        return show_counters(conn, args)


def tokens_command(args: argparse.Namespace, config: dict) -> int:
    with command_connection(config) as conn:
        code = manage_tokens(conn, args)
    if args.action == "revoke":
        KnownTokens.changed(config["db"])  # a running server forgets the tokens it knew valid
    return code


def stats_command(args: argparse.Namespace, config: dict) -> int:
    with command_connection(config) as conn:
        return print_summary(conn, args.site, args.days, config["origins"])


def export_command(args: argparse.Namespace, config: dict) -> int:
    with command_connection(config) as conn:
        return export_to_file(conn, args)


def prune_command(args: argparse.Namespace, config: dict) -> int:
    days = args.older_than if args.older_than is not None else config["retention_days"]
    if days < 1:
        raise CommandError("prune: give --older-than DAYS (at least 1), or set retention_days")
    pruner, now = Retention(days, bool(config["clickhouse_url"])), now_ms()
    with (
        command_connection(config) as conn,
        no_server_on(config["db"], "prune", "with retention_days set, the server prunes by itself"),
    ):
        while pruner(conn, now):  # autocommit: each batch is its own short transaction
            pass
    deleted = pruner.deleted
    print(f"deleted {deleted} {plural('row', deleted)} older than {days} {plural('day', days)}")
    return 0


def backup_command(args: argparse.Namespace, config: dict) -> int:
    return backup(config["db"], args.file)


def check_command(args: argparse.Namespace, config: dict) -> int:
    return check(config["db"])


def dead_letters_command(args: argparse.Namespace, config: dict) -> int:
    return list_dead_letters(config["db"]) if args.action == "list" else retry_dead_letters(config)


def goals_command(args: argparse.Namespace, config: dict) -> int:
    """`goals add`, `list` and `remove`. A running server reads the goals at each request: no restart needed, and
    nothing of the writer's to change under it (like `origins add`)."""
    with command_connection(config) as conn:
        try:
            site = getattr(args, "site", None) and normalise_origin(args.site)
        except ValueError as error:
            raise CommandError(f"goals {args.action}: {error}") from None
        if args.action == "list":
            goals = stored_goals(conn, site)
            if not goals:
                print("no goals yet: add one with `prisme-lite goals add --site SITE --event NAME`", file=sys.stderr)
                return 1
            print_table(["ID", "SITE", "KIND", "TARGET"], [(g.id, g.site, g.kind, g.target) for g in goals])
            return 0
        if args.action == "remove":
            if not remove_goal(conn, args.goal_id):
                print(f"no goal {args.goal_id} (see `prisme-lite goals list`)", file=sys.stderr)
                return 1
            print(f"removed goal {args.goal_id}")
            return 0
        kind, value = ("event", args.event) if args.event is not None else ("path", args.path)
        try:
            target = goal_target(kind, value)
        except ValueError as error:
            raise CommandError(f"goals add: {error}") from None
        if site not in set(config["origins"]) | set(stored_origins(conn)):
            raise CommandError(f"goals add: {site} is not a registered origin (`prisme-lite origins list`)")
        goal = add_goal(conn, site, kind, target)
        print(f"added goal {goal.id}: {goal.label(True)}" if goal else f"already a goal of {site}: {kind} {target}")
    return 0


def clickhouse_command(args: argparse.Namespace, config: dict) -> int:
    """`clickhouse init` creates the tables; `clickhouse status` says how far behind the mirror is."""
    if not config["clickhouse_url"]:
        raise CommandError(f"clickhouse {args.action}: set clickhouse_url (PRISME_CLICKHOUSE_URL) first")
    target = ClickHouseTarget.parse(config["clickhouse_url"])
    try:
        if args.action == "init":
            tables = clickhouse_init(target)
            print(
                f"ClickHouse ready: {', '.join(tables)} in {target.database} at {masked_url(config['clickhouse_url'])}"
            )
            return 0
    except ClickHouseError as error:
        raise CommandError(f"clickhouse {args.action}: {error}") from None
    with command_connection(config) as conn:
        lag = mirror_lag(conn, now_ms())
        node = node_id_of(config, conn) if config["node_id"] or get_meta(conn, "node_id") else "(none yet)"
        started = get_meta(conn, "mirror_position") is not None
    print(f"mirror to {masked_url(config['clickhouse_url'])} (database {target.database}), node {node}")
    try:
        print(f"ClickHouse answers: version {target.request('SELECT version()', database=False).strip()}")
    except ClickHouseError as error:
        print(f"ClickHouse does not answer: {error}")
    if not started:
        print("never started: `prisme-lite serve` with clickhouse_url set ships the rows already stored")
    tables = ", ".join(f"{name} {rows}" for name, rows in lag["tables"].items() if rows)
    print(
        f"behind: {lag['behind_rows']} {plural('row', lag['behind_rows'])}, {lag['behind_seconds']} s"
        + (f" ({tables})" if tables else "")
    )
    return 0


def import_command(args: argparse.Namespace, config: dict) -> int:
    return import_logs(config, args.files, args.log_format, args.site)


def share_command(args: argparse.Namespace, config: dict) -> int:
    """`share create`, `list` and `revoke`. A running server reads the shares at each request: a link created or
    revoked works, or stops, at once (like `goals add`)."""
    with command_connection(config) as conn:
        if args.action == "create":
            return create_share_command(conn, args, config)
        if args.action == "list":
            return list_shares(conn)
        return revoke_share(conn, args.token.strip())


def create_share_command(conn: sqlite3.Connection, args: argparse.Namespace, config: dict) -> int:
    """The path alone on standard output (a script captures it), and where to open it on standard error."""
    try:
        site = normalise_origin(args.site)
    except ValueError as error:
        raise CommandError(f"share create: {error}") from None
    if site not in set(config["origins"]) | set(stored_origins(conn)):
        raise CommandError(f"share create: {site} is not a registered origin (`prisme-lite origins list`)")
    days = args.expires
    if days is not None and not (INTEGER_ID.fullmatch(days) and 1 <= int(days) <= MAX_SHARE_DAYS):
        raise CommandError(f"share create: --expires must be a number of days from 1 to {MAX_SHARE_DAYS}, got {days!r}")
    token = create_share(conn, site, int(days) if days else None)
    until = f"for {days} {plural('day', int(days))}" if days else "until revoked"
    host = config["host"] if config["host"] not in ("0.0.0.0", "::") else "SERVER"
    base = f"http://{f'[{host}]' if ':' in host else host}:{config['port']}"
    print(f"shared {site} read-only, {until}; the link is shown only now: open it at the server's address, such as"
          f" {base}/share/{token} (behind a proxy: your public address)", file=sys.stderr)  # fmt: skip
    print(f"/share/{token}")
    return 0


def list_shares(conn: sqlite3.Connection) -> int:
    sql = "SELECT prefix, site, created_at, expires_at, revoked_at FROM shares ORDER BY created_at, prefix"
    rows = conn.execute(sql)
    now, stamp = now_ms(), lambda ms: time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000))
    print_table(["TOKEN", "SITE", "CREATED", "EXPIRES", "STATUS"], [
        (f"{prefix}…", site, stamp(created), stamp(expires) if expires else "never",
         f"revoked {stamp(revoked)}" if revoked else "expired" if expires and expires <= now else "active")
        for prefix, site, created, expires, revoked in rows
    ])  # fmt: skip
    return 0


def revoke_share(conn: sqlite3.Connection, given: str) -> int:
    """By the whole token, or by its start (4 characters at least, as `share list` shows it) when one share has it."""
    given = given.rstrip("…")
    if SHARE_TOKEN.fullmatch(given):
        sql = "SELECT token_hash, prefix FROM shares WHERE token_hash = ?"
        found = conn.execute(sql, (hash_secret(given),)).fetchall()
    elif len(given) >= 4:
        found = conn.execute(
            "SELECT token_hash, prefix FROM shares WHERE substr(prefix, 1, ?) = ? AND revoked_at IS NULL",
            (min(len(given), SHARE_PREFIX), given[:SHARE_PREFIX]),
        ).fetchall()
    else:
        raise CommandError("share revoke: give the token, or at least its first 4 characters (`share list`)")
    if len(found) > 1:
        raise CommandError(f"share revoke: {len(found)} shares start with {given!r}; give more of the token")
    revoke = "UPDATE shares SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL"
    if not found or not conn.execute(revoke, (now_ms(), found[0][0])).rowcount:
        print(f"no active share {terminal_text(given)} (see `prisme-lite share list`)", file=sys.stderr)
        return 1
    print(f"revoked: {found[0][1]}…; its link answers 404 now")
    return 0


def admin_token_command(args: argparse.Namespace, config: dict) -> int:
    if config["admin_token"]:
        print(config["admin_token"])
        if args.rotate:
            raise CommandError("admin-token --rotate: the token comes from admin_token in the configuration")
        return 0
    with command_connection(config) as conn:
        print(admin_token(conn, rotate=args.rotate))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, dict], int]] = {
    "serve": serve_command,
    "init": init_command,
    "origins": origins_command,
    "counters": counters_command,
    "tokens": tokens_command,
    "stats": stats_command,
    "export": export_command,
    "prune": prune_command,
    "backup": backup_command,
    "check": check_command,
    "dead-letters": dead_letters_command,
    "goals": goals_command,
    "share": share_command,
    "import": import_command,
    "admin-token": admin_token_command,
    "clickhouse": clickhouse_command,
}


def origin_from_setting(host: str, origins: list[str]) -> str:
    """Why `origins remove` cannot remove `host`, and what does: the origins setting, read when the server starts."""
    where = "origins = [...] in the config file, PRISME_ORIGINS or serve --origins"
    if origins == SETTINGS["origins"].default:
        return (
            f"{host} is a built-in default origin, not one added with `origins add`; to stop accepting it, start the"
            f" server with the origins setting listing the hosts you want ({where}; empty for none)"
        )
    return f"{host} comes from the origins setting, not `origins add`; take it out ({where}) and restart the server"


def export_to_file(conn: sqlite3.Connection, args: argparse.Namespace) -> int:
    query = [("format", args.export_format), ("kind", args.kind)]
    query += [(name, value) for name, value in (("from", args.start), ("to", args.end)) if value]
    try:
        fmt, dataset, start, end = export_window(query, now_ms())
    except Rejected as refusal:
        raise CommandError(f"export: {refusal.message}") from None
    conn.execute("BEGIN")  # one snapshot for the whole export, while the server goes on writing
    output = (
        open(private_file(args.output, truncate=True), "w", encoding="utf-8", newline="")  # noqa: SIM115 -- closed below
        if args.output
        else sys.stdout
    )
    try:
        for chunk in export_chunks(conn, dataset, start, end, fmt):
            output.write(chunk)
    finally:
        conn.execute("ROLLBACK")
        if args.output:
            output.close()
    return 0


def print_summary(conn: sqlite3.Connection, site: str | None, days: int, origins: Iterable[str] = ()) -> int:
    """`prisme-lite stats`: each family's summary of the last `days` (web traffic per site, server events per label,
    counters); with `site`, what is recorded per site is that site's, and a family that is not says so."""
    if days < 1:
        raise CommandError("stats: --days must be at least 1")
    now = now_ms()
    last = "day" if days == 1 else f"{days} days"
    print(f"prisme-lite stats: the last {last} ({utc_date(now - days * DAY_MS)} to {utc_date(now)}, UTC)")
    for family in FAMILIES:
        if family.summary:
            family.summary(conn, site, days, now, list(origins))
    return 0


def manage_tokens(conn: sqlite3.Connection, args: argparse.Namespace) -> int:
    """`tokens create` prints the token alone on standard output, so that a script can capture it."""
    if args.action == "create":
        scopes = list(
            dict.fromkeys(scope.strip() for given in args.scope for scope in given.split(",") if scope.strip())
        )
        unknown = [scope for scope in scopes if scope not in SCOPES]
        if unknown or not scopes:
            raise CommandError(
                f"tokens create: --scope must be one of {', '.join(SCOPES)}, got {', '.join(unknown) or 'none'}"
            )
        token_id, token = create_access_token(conn, scopes, args.name)
        print(f"created {token_id} ({' '.join(scopes)}); the token is shown only now:", file=sys.stderr)
        print(token)
    elif args.action == "list":
        rows = conn.execute(
            "SELECT id, name, scopes, created_at, revoked_at FROM access_tokens ORDER BY created_at"
        ).fetchall()
        stamp = lambda ms: time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000))  # noqa: E731
        print_table(
            ["ID", "NAME", "SCOPES", "CREATED", "STATUS"],
            [(i, n or "-", sc, stamp(c), f"revoked {stamp(r)}" if r else "active") for i, n, sc, c, r in rows],
        )
    elif conn.execute(
        "UPDATE access_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now_ms(), args.token_id)
    ).rowcount:
        ended = end_dashboard_sessions(conn, "token_id", args.token_id)
        print(f"revoked: {args.token_id}" + (f" (ended {ended} dashboard {plural('login', ended)})" if ended else ""))
    else:
        print(f"no active token {args.token_id}", file=sys.stderr)
        return 1
    return 0


def show_counters(conn: sqlite3.Connection, args: argparse.Namespace) -> int:
    """`counters list` and `counters show ACTION PAGE`: aligned columns a person can read."""
    where, params = "", []
    if args.client:
        where, params = " AND c.client_id = ?", [args.client]
    if args.action == "show":
        where += " AND c.action_id = ? AND c.page_id = ?"
        params += [args.action_id, args.page_id]
    rows = conn.execute(
        "SELECT cl.domain, c.client_id, c.action_id, c.page_id, c.count FROM counters c"
        " JOIN counter_clients cl ON cl.id = c.client_id WHERE 1 = 1"
        + where
        + " ORDER BY cl.domain, c.action_id, c.page_id",
        params,
    ).fetchall()
    if args.action == "show":
        # A counter that is configured but was never incremented is there all the same, at 0.
        counted = {row[1] for row in rows}
        configured = conn.execute(
            "SELECT domain, id, ?, ?, 0 FROM counter_clients WHERE ? IN (SELECT value FROM json_each(action_ids))"
            " AND ? IN (SELECT value FROM json_each(page_ids))" + (" AND id = ?" if args.client else ""),
            [args.action_id, args.page_id, args.action_id, args.page_id, *([args.client] if args.client else [])],
        ).fetchall()
        rows = sorted([*rows, *(row for row in configured if row[1] not in counted)])
    if not rows:
        print(
            "no counters" + (" match" if where else " yet: configure some with POST /api/v1/configure"), file=sys.stderr
        )
        return 1
    if args.action == "list":
        print_table(["DOMAIN", "CLIENT", "ACTION", "PAGE", "COUNT"], rows)
        return 0
    today = now_ms() // DAY_MS
    for domain, client_id, action_id, page_id, count in rows:
        print(terminal_text(f"{action_id} on {page_id} at {domain} ({client_id}): {count} in all"))
        days = dict(
            conn.execute(
                "SELECT day, count FROM counter_days WHERE client_id = ? AND action_id = ? AND page_id = ? AND day > ?",
                (client_id, action_id, page_id, today - 30),
            ).fetchall()
        )
        for day in range(today - 29, today + 1):
            print(f"  {time.strftime('%Y-%m-%d', time.gmtime(day * 86_400))}  {days.get(day, 0)}")
    return 0


def terminal_text(value: Any) -> str:
    """`value` as text safe on a terminal: control characters (C0, DEL, C1) shown as \\xNN, never sent raw, so
    text stored as sent (or by an older prisme-lite) cannot move the cursor, retitle the window or fake a line."""
    return TERMINAL_UNSAFE.sub(lambda found: f"\\x{ord(found[0]):02x}", str(value))


def print_table(header: list[str], rows: list[tuple]) -> None:
    rows = [tuple(map(terminal_text, row)) for row in [header, *rows]]
    widths = [max(len(value) for value in column) for column in zip(*rows, strict=True)]
    for row in rows:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    flags = {key: getattr(args, key, None) for key in (*SETTINGS, "config")}
    try:
        config = load_config(flags)
        return run_command(args, config)
    except BrokenPipeError:
        # The reader stopped early (`prisme-lite export | head`): not an error. Point stdout at /dev/null so that
        # Python's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ConfigError, CommandError) as error:
        print(f"prisme-lite: {error}", file=sys.stderr)
        return 2
    except sqlite3.Error as error:
        print(f"prisme-lite: database error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"prisme-lite: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
