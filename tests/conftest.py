"""Shared fixtures: an application on a fresh database, a webtest client, and the rows it stored; a real ClickHouse
server as a process."""

import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import webtest

import prisme_lite

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36"
)
# Clients that are no browser (SPEC §3.1): each browser-facing route drops them like bots. None: no User-Agent at all.
NOT_BROWSERS = [
    None, "", "curl/8.5.0", "Wget/1.21.4", "python-requests/2.31.0", "Go-http-client/1.1", "Python/3.11 aiohttp/3.9.1",
    "python-httpx/0.27.0", "okhttp/4.12.0", "Java-http-client/17.0.2", "libwww-perl/6.72", "PostmanRuntime/7.36.0",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "undici", "node", "axios/1.6.2", HEADLESS_CHROME,
]  # fmt: skip


def agent_header(ua):
    """The User-Agent header of `ua`, or none at all for None."""
    return {} if ua is None else {"User-Agent": ua}


def make_config(tmp_path, **settings):
    """Defaults, on a database in tmp_path, with `settings` as if given as flags."""
    flags = {"db": str(tmp_path / "prisme.db"), "access_log": "false"}
    flags.update({key: value if isinstance(value, str) else _flag(value) for key, value in settings.items()})
    return prisme_lite.load_config(flags, environ={})


def _flag(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


class Server:
    """An application, its webtest client and a reader of its database."""

    def __init__(self, config):
        self.config = config
        self.app = prisme_lite.make_app(config)
        self.ctx = self.app.ctx
        self.client = webtest.TestApp(
            prisme_lite.RequestLog(self.app, access_log=False), extra_environ={"REMOTE_ADDR": "203.0.113.9"}
        )

    def rows(self, sql, params=()):
        """Rows of a query, once every acknowledged event has reached the database (as dicts)."""
        self.ctx.writer.flush()
        conn = sqlite3.connect(self.config["db"])
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute(sql, params)]
        finally:
            conn.close()

    def events(self):
        return self.rows("SELECT * FROM events ORDER BY id")

    def close(self):
        self.ctx.close()


@pytest.fixture
def make_server(tmp_path):
    """Build servers on tmp_path's database (several, one after another, to test restarts); all closed after."""
    servers = []

    def build(**settings):
        server = Server(make_config(tmp_path, **settings))
        servers.append(server)
        return server

    yield build
    for server in servers:
        server.close()


@pytest.fixture
def server(make_server):
    """A server whose registered origins are the defaults plus blog.example.com and *.shop.example."""
    built = make_server()
    with sqlite3.connect(built.config["db"]) as conn:
        prisme_lite.add_origin(conn, "blog.example.com")
        prisme_lite.add_origin(conn, "*.shop.example")
    built.ctx.origins.reload()
    return built


@pytest.fixture
def client(server):
    return server.client


def command():
    """The installed `prisme-lite` command, or the module itself when running from a checkout."""
    script = Path(sys.executable).with_name("prisme-lite")
    return [str(script)] if script.exists() else [sys.executable, prisme_lite.__file__]


class Process:
    """A running `prisme-lite serve` (`argv` instead of command(), and its env and cwd), its port and what it printed."""

    def __init__(self, db, *flags, argv=None, env=None, cwd=None):
        self.log = open(Path(db).with_suffix(".log"), "ab")  # noqa: SIM115 -- closed in stop() or by the fixture
        self.proc = subprocess.Popen(
            [*(argv or command()), "serve", "--db", str(db), "--port", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.banner = [self.proc.stdout.readline() for _ in range(5)]
        assert "listening on http://127.0.0.1:" in self.banner[0], self.banner
        self.port = int(self.banner[0].split("http://127.0.0.1:")[1].split(" ")[0])

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code


@pytest.fixture
def run(tmp_path):
    processes = []

    def start(*flags, db=tmp_path / "prisme.db", **launch):
        process = Process(db, *flags, **launch)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()
        process.log.close()


def clear_of_the_hour(seconds=60):
    """Counter tokens expire at the top of the hour (SPEC §4): a test that asks a real server for tokens and uses
    them within `seconds` starts after the hour turns when it would otherwise straddle it."""
    left = 3600 - time.time() % 3600
    if left < seconds:
        time.sleep(left + 0.5)


@pytest.fixture(autouse=True)
def _clear_of_the_hour():
    """No test starts in the last half minute of an hour, where a counter token it takes would expire under it."""
    clear_of_the_hour(30)


def cli(*args, db, timeout=120):
    """Run a `prisme-lite` command on the database `db`, as a user would (no standard input)."""
    return subprocess.run(
        [*command(), *args, "--db", str(db)], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def new_token(db, scope):
    """`prisme-lite tokens create --scope SCOPE`: the token it prints alone on its line."""
    made = cli("tokens", "create", "--scope", scope, db=db)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


CLICKHOUSE_SERVER = "/usr/sbin/clickhouse-server"
CLICKHOUSE_CONFIG = Path("/etc/clickhouse-server")
# The ports clickhouse-server listens on, by the names config.xml gives them (old and current versions).
CLICKHOUSE_PORTS = (
    "http_port", "tcp_port", "https_port", "tcp_port_secure", "interserver_http_port", "interserver_https_port",
    "mysql_port", "postgresql_port", "grpc_port", "prometheus_port", "tcp_with_proxy_port",
)  # fmt: skip
CLICKHOUSE_START = 60.0  # seconds a start may take (18.16 answers in ~3 s alone; the machine is shared)
CLICKHOUSE_STOP = 20.0  # seconds a SIGTERM may take before SIGKILL


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ClickHouse:
    """A clickhouse-server process of its own under `root` (data, logs, config), on free loopback ports; kill() and
    start() again keep its data, like a crash and a restart of the real thing."""

    databases = itertools.count(1)

    def __init__(self, root):
        self.root = Path(root)
        self.proc = None
        self.ports = {name: free_port() for name in CLICKHOUSE_PORTS}
        self.url = f"http://127.0.0.1:{self.ports['http_port']}/"
        self.config = self._write_config()
        self.start()

    def _write_config(self):
        """config.xml and users.xml copied into root, with the data and log paths under root and free ports."""
        etc = self.root / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        shutil.copy(CLICKHOUSE_CONFIG / "users.xml", etc / "users.xml")
        text = (CLICKHOUSE_CONFIG / "config.xml").read_text()
        text = text.replace("/var/lib/clickhouse/", f"{self.root}/data/")
        text = text.replace("/var/log/clickhouse-server/", f"{self.root}/log/")
        for name, port in self.ports.items():
            text = re.sub(rf"<{name}>\d+</{name}>", f"<{name}>{port}</{name}>", text)
        # Loopback only, whatever the packaged file listens on.
        text = re.sub(r"<listen_host>[^<]*</listen_host>", "", text)
        text = re.sub(r"(<(yandex|clickhouse)>)", r"\1<listen_host>127.0.0.1</listen_host>", text, count=1)
        config = etc / "config.xml"
        config.write_text(text)
        return config

    def start(self):
        """Start the server (again) and wait, bounded, until it answers SELECT 1."""
        self.log = open(self.root / "stderr.log", "ab")  # noqa: SIM115 -- closed in stop()/kill()
        self.proc = subprocess.Popen(
            [CLICKHOUSE_SERVER, f"--config-file={self.config}"],
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + CLICKHOUSE_START
        while True:
            try:
                if self.query("SELECT 1").strip() == "1":
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"clickhouse-server did not start: see {self.root}/stderr.log and {self.root}/log")
            time.sleep(0.1)

    def query(self, sql, database=None, body=None, timeout=30, **settings):
        """The answer's text of one statement over HTTP (`body` the data of an INSERT)."""
        params = {"query": sql} | ({"database": database} if database else {}) | settings
        target = self.url + "?" + urllib.parse.urlencode(params)
        data = body.encode() if isinstance(body, str) else body or b""  # a POST: a GET is read-only
        try:
            with urllib.request.urlopen(urllib.request.Request(target, data=data), timeout=timeout) as answer:
                return answer.read().decode()
        except urllib.error.HTTPError as error:
            raise AssertionError(f"ClickHouse refused {sql!r}: {error.read().decode()[:500]}") from None

    def rows(self, sql, database=None):
        """The rows of a SELECT as dicts (JSONEachRow; Int64 as numbers)."""
        text = self.query(f"{sql} FORMAT JSONEachRow", database, output_format_json_quote_64bit_integers=0)
        return [json.loads(line) for line in text.splitlines() if line]

    def database(self, prefix="prisme"):
        """A new database name (not created) and the clickhouse_url that points at it."""
        name = f"{prefix}_{os.getpid()}_{next(self.databases)}"
        return name, f"{self.url}?database={name}"

    def kill(self):
        """kill -9, as a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=CLICKHOUSE_STOP)
        self.log.close()

    def stop(self):
        """SIGTERM by its pid, then SIGKILL if it does not end in time."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=CLICKHOUSE_STOP)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=CLICKHOUSE_STOP)
        self.log.close()


def clickhouse_available():
    """Whether clickhouse-server is installed; without it ClickHouse tests skip, except in CI where they fail."""
    if os.path.exists(CLICKHOUSE_SERVER):
        return True
    if os.environ.get("CI"):
        pytest.fail(f"{CLICKHOUSE_SERVER} is missing in CI (.ci/run installs the clickhouse-server package)")
    pytest.skip(f"{CLICKHOUSE_SERVER} is not installed")


@pytest.fixture(scope="session")
def clickhouse(tmp_path_factory):
    """One ClickHouse server for the whole run: each test takes its own database (clickhouse.database())."""
    clickhouse_available()
    server = ClickHouse(tmp_path_factory.mktemp("clickhouse"))
    yield server
    server.stop()


@pytest.fixture
def start_clickhouse(tmp_path):
    """A ClickHouse server of the test's own, for tests that kill and restart it; stopped after the test."""
    clickhouse_available()
    servers = []

    def start():
        server = ClickHouse(tmp_path / f"clickhouse{len(servers)}")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def migrated_from(db, version, table):
    """A database of schema `version`, without the `table` its next version adds, opened (migrated) by this
    prisme_lite; the migration must have brought it to the current version."""
    prisme_lite.open_database(str(db))
    with sqlite3.connect(db) as conn:
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"PRAGMA user_version = {version}")
    prisme_lite.open_database(str(db))
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (prisme_lite.SCHEMA_VERSION,)
