"""Shared fixtures: real MariaDB, SQLite, a sendmail stand-in, a real SMTP server,
and what it takes to run agi-bin/missed.py like Asterisk does.

Helpers are importable too (``from tests.conftest import temporary_mariadb``).
Everything a fixture starts it stops by its own handle or pid; every database
and user it creates it drops, and checks that they are gone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Callable, cast
from urllib.parse import quote

import pymysql
import pytest

from tests.paths import REPO_ROOT

SENDMAIL_BIN = REPO_ROOT / "tests" / "bin" / "sendmail"
MISSED_PY = REPO_ROOT / "agi-bin" / "missed.py"

MARIADBD = "/usr/sbin/mariadbd"
MARIADB_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock")
MARIADB_HOST = "127.0.0.1"
MARIADB_PORT = 3306


def pytest_configure(config: pytest.Config) -> None:
    # The "auth" SMTP mode is AUTH without TLS on purpose.
    config.addinivalue_line("filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning")


def missed_argv(*args: str) -> list[str]:
    """argv for running agi-bin/missed.py with this interpreter, as AGI(missed.py,ARGS...)."""
    return [sys.executable, str(MISSED_PY), *args]


# ============================================================================ MariaDB


@dataclass(frozen=True)
class MariaDBServer:
    unix_socket: str
    host: str = MARIADB_HOST
    port: int = MARIADB_PORT

    def root(self, database: str | None = None) -> pymysql.connections.Connection:
        """A root connection over the socket (unix_socket auth: no password anywhere)."""
        return pymysql.connect(
            unix_socket=self.unix_socket,
            user="root",
            database=database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
            read_timeout=30,
            write_timeout=30,
        )


@dataclass(frozen=True)
class MariaDBDatabase:
    """A throw-away database and the password-protected user that owns it."""

    server: MariaDBServer
    name: str
    user: str
    password: str = field(repr=False)

    @property
    def url(self) -> str:
        return (
            f"mysql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.server.host}:{self.server.port}/{self.name}"
        )

    def connect(self) -> pymysql.connections.Connection:
        """Connect as the database's own user over TCP, the way the product does."""
        return pymysql.connect(
            host=self.server.host,
            port=self.server.port,
            user=self.user,
            password=self.password,
            database=self.name,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
            read_timeout=30,
            write_timeout=30,
        )


def _root_socket() -> str | None:
    for path in MARIADB_SOCKETS:
        if not os.path.exists(path):
            continue
        try:
            MariaDBServer(path).root().close()
        except pymysql.err.MySQLError:
            continue
        return path
    return None


def _wait_for_root_socket(seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    while True:
        found = _root_socket()
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


def _mariadbd_alive() -> bool:
    # The server's own pid file tells whether one is merely slow to answer.
    try:
        pid = int(Path("/run/mysqld/mysqld.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, timeout=900, env=env)
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    subprocess.run(install, check=True, timeout=1800, env=env)


def _ensure_mariadb(workdir: Path) -> tuple[MariaDBServer, int | None]:
    """Return the server and, when this function had to start it, the pid to stop."""
    found = _root_socket()
    if found:
        return MariaDBServer(found), None
    if _mariadbd_alive():
        found = _wait_for_root_socket(60)
        if found:
            return MariaDBServer(found), None
        pytest.fail("mariadbd is running but root cannot connect over its socket (unix_socket auth?)")
    if os.geteuid() != 0:
        pytest.fail("MariaDB is not answering on its socket and only root can start it (run tests/run as root)")
    if not os.path.exists(MARIADBD):
        _apt_install("mariadb-server")
        found = _wait_for_root_socket(10)  # the package's postinst may have started it
        if found:
            return MariaDBServer(found), None
    run_dir = Path("/run/mysqld")
    run_dir.mkdir(mode=0o755, exist_ok=True)
    with contextlib.suppress(LookupError, OSError):
        shutil.chown(run_dir, "mysql", "mysql")
    pidfile = workdir / "mariadbd.pid"
    subprocess.run(
        [
            "start-stop-daemon", "--start", "--oknodo", "--background",
            "--make-pidfile", "--pidfile", str(pidfile), "--exec", MARIADBD,
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    found = _wait_for_root_socket(60)
    if not found:
        pytest.fail("started mariadbd but it did not answer on its socket within 60 s")
    pid = int(pidfile.read_text().strip()) if pidfile.exists() else None
    return MariaDBServer(found), pid


def _stop_pid(pid: int, seconds: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """A running MariaDB reachable as root over its socket; started (and later stopped) if needed."""
    server, started_pid = _ensure_mariadb(tmp_path_factory.mktemp("mariadb"))
    yield server
    if started_pid is not None:
        _stop_pid(started_pid, 60)


def mariadb_leftovers(server: MariaDBServer, name: str, user: str) -> list[str]:
    """What is left of a temporary database and its user (empty when all is gone)."""
    left: list[str] = []
    with contextlib.closing(server.root()) as conn, conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
        left += [f"database {row[0]}" for row in cur.fetchall()]
        cur.execute("SELECT User, Host FROM mysql.user WHERE User = %s", (user,))
        left += [f"user {row[0]}@{row[1]}" for row in cur.fetchall()]
    return left


@contextlib.contextmanager
def temporary_mariadb(
    server: MariaDBServer, *, password: str | None = None, prefix: str = "mc_test_"
) -> Iterator[MariaDBDatabase]:
    """A new database plus a user made the way FreePBX makes ``freepbxuser``.

    ``CREATE USER ... IDENTIFIED BY`` at localhost and 127.0.0.1 and
    ``GRANT ALL PRIVILEGES ON db.*``; dropped (sessions killed first) on exit.
    """
    token = secrets.token_hex(5)
    db = MariaDBDatabase(
        server=server,
        name=f"{prefix}{token}",
        user=f"mc_user_{token}",
        password=password if password is not None else secrets.token_hex(16),
    )
    try:
        with contextlib.closing(server.root()) as conn, conn.cursor() as cur:
            # Identifiers cannot be parameters; these are made of [a-z0-9_] only.
            cur.execute(f"CREATE DATABASE `{db.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            for host in ("localhost", "127.0.0.1"):
                cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (db.user, host, db.password))
                cur.execute(f"GRANT ALL PRIVILEGES ON `{db.name}`.* TO %s@%s", (db.user, host))
        yield db
    finally:
        with contextlib.closing(server.root()) as conn, conn.cursor() as cur:
            # A leaked connection holding a lock would make DROP DATABASE wait.
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (db.user,))
            for (session_id,) in cur.fetchall():
                with contextlib.suppress(pymysql.err.MySQLError):
                    cur.execute("KILL CONNECTION %s", (int(session_id),))
            cur.execute(f"DROP DATABASE IF EXISTS `{db.name}`")
            for host in ("localhost", "127.0.0.1"):
                cur.execute("DROP USER IF EXISTS %s@%s", (db.user, host))


@pytest.fixture
def mariadb_database(mariadb_server: MariaDBServer) -> Iterator[MariaDBDatabase]:
    """A temporary database and user; verified gone after the test."""
    with temporary_mariadb(mariadb_server) as db:
        yield db
    left = mariadb_leftovers(mariadb_server, db.name, db.user)
    assert not left, f"temporary MariaDB objects survived teardown: {left}"


@pytest.fixture
def mariadb_url(mariadb_database: MariaDBDatabase) -> str:
    """``mysql://user:pass@127.0.0.1:3306/mc_test_<random>`` for a fresh database."""
    return mariadb_database.url


# ---------------------------------------------------------------------- FreePBX


# FreePBX's queues module (module.xml, <database>): queues_config and queues_details.
QUEUES_CONFIG_DDL = """
CREATE TABLE IF NOT EXISTS `queues_config` (
  `extension` varchar(20) NOT NULL DEFAULT '',
  `descr` varchar(35) NOT NULL DEFAULT '',
  `grppre` varchar(100) NOT NULL DEFAULT '',
  `alertinfo` varchar(254) NOT NULL DEFAULT '',
  `ringing` tinyint(1) NOT NULL DEFAULT 0,
  `maxwait` varchar(8) NOT NULL DEFAULT '',
  `password` varchar(20) NOT NULL DEFAULT '',
  `ivr_id` varchar(8) NOT NULL DEFAULT '0',
  `dest` varchar(50) NOT NULL DEFAULT '',
  `cwignore` tinyint(1) NOT NULL DEFAULT 0,
  `queuewait` tinyint(1) DEFAULT 0,
  `use_queue_context` tinyint(1) DEFAULT 0,
  `togglehint` tinyint(1) DEFAULT 0,
  `qnoanswer` tinyint(1) DEFAULT 0,
  `callconfirm` tinyint(1) DEFAULT 0,
  `callconfirm_id` int(11) DEFAULT NULL,
  `qregex` varchar(255) DEFAULT NULL,
  `agentannounce_id` int(11) DEFAULT NULL,
  `joinannounce_id` int(11) DEFAULT NULL,
  `monitor_type` varchar(5) DEFAULT NULL,
  `monitor_heard` int(11) DEFAULT NULL,
  `monitor_spoken` int(11) DEFAULT NULL,
  `callback_id` varchar(8) NOT NULL DEFAULT '',
  PRIMARY KEY (`extension`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
QUEUES_DETAILS_DDL = """
CREATE TABLE IF NOT EXISTS `queues_details` (
  `id` varchar(45) NOT NULL DEFAULT '-1',
  `keyword` varchar(30) NOT NULL DEFAULT '',
  `data` varchar(150) NOT NULL DEFAULT '',
  `flags` int(11) NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`, `keyword`, `data`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
# The queues of tests/fixtures/queue_log/freepbx17-shaped.queue_log.
DEFAULT_FREEPBX_QUEUES: tuple[tuple[str, str], ...] = (
    ("600", "Sales"),
    ("601", "Sales overflow"),
    ("602", "Support"),
    ("603", "Billing"),
)


def make_freepbx_like(
    db: MariaDBDatabase, queues: Iterable[tuple[str, str]] = DEFAULT_FREEPBX_QUEUES
) -> None:
    """Give a database FreePBX's queue tables, with ``(extension, descr)`` rows."""
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute(QUEUES_CONFIG_DDL)
        cur.execute(QUEUES_DETAILS_DDL)
        for extension, descr in queues:
            cur.execute(
                "INSERT INTO queues_config (extension, descr, maxwait, dest) VALUES (%s, %s, %s, %s)",
                (extension, descr, "300", "app-blackhole,hangup,1"),
            )
            cur.execute(
                "INSERT INTO queues_details (id, keyword, data) VALUES (%s, 'strategy', 'ringall')",
                (extension,),
            )


def write_freepbx_conf(path: Path, db: MariaDBDatabase, *, host: str = "localhost") -> Path:
    """An /etc/freepbx.conf in FreePBX's own shape, pointing at ``db``."""
    def php(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    path.write_text(
        "<?php\n"
        "$amp_conf['AMPDBUSER'] = " + php(db.user) + ";\n"
        "$amp_conf['AMPDBPASS'] = " + php(db.password) + ";\n"
        "$amp_conf['AMPDBHOST'] = " + php(host) + ";\n"
        "$amp_conf['AMPDBPORT'] = '3306';\n"
        "$amp_conf['AMPDBNAME'] = " + php(db.name) + ";\n"
        "$amp_conf['AMPDBENGINE'] = 'mysql';\n"
        "$amp_conf['datasource'] = ''; //for sqlite3\n"
        "require_once('/var/www/html/admin/bootstrap.php');\n",
        encoding="utf-8",
    )
    path.chmod(0o640)
    return path


@pytest.fixture
def freepbx_database(mariadb_database: MariaDBDatabase) -> MariaDBDatabase:
    """A temporary database that looks like FreePBX's ``asterisk`` (queues_config filled)."""
    make_freepbx_like(mariadb_database)
    return mariadb_database


@pytest.fixture
def freepbx_conf(freepbx_database: MariaDBDatabase, tmp_path: Path) -> Path:
    """A freepbx.conf for :func:`freepbx_database`: point MISSEDCALL_FREEPBX_CONF at it."""
    return write_freepbx_conf(tmp_path / "freepbx.conf", freepbx_database)


# ============================================================================ SQLite / both


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/missedcall.sqlite3"  # tmp_path is absolute: four slashes


@pytest.fixture(params=["mariadb", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each storage test runs on both backends; MariaDB is only touched for its own case."""
    name = "mariadb_url" if request.param == "mariadb" else "sqlite_url"
    return cast(str, request.getfixturevalue(name))


# ============================================================================ sendmail


@pytest.fixture
def maildir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where tests/bin/sendmail stores messages; MISSEDCALL_TEST_MAILDIR is set to it."""
    path = tmp_path / "maildir"
    path.mkdir()
    monkeypatch.setenv("MISSEDCALL_TEST_MAILDIR", str(path))
    return path


@pytest.fixture
def sendmail_bin(maildir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sendmail stand-in; MISSEDCALL_SENDMAIL and MISSEDCALL_TEST_MAILDIR point at it."""
    monkeypatch.setenv("MISSEDCALL_SENDMAIL", str(SENDMAIL_BIN))
    monkeypatch.delenv("FAKE_SENDMAIL_EXIT", raising=False)
    monkeypatch.delenv("FAKE_SENDMAIL_SLEEP", raising=False)
    return SENDMAIL_BIN


# ============================================================================ SMTP


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert.pem, key.pem)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed for the TLS fixtures (tests/run installs it)")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    login: str | None
    """The AUTH user the client logged in as, if it did."""
    tls: bool
    """Whether the message came over TLS (STARTTLS or implicit)."""


SMTP_MODES = ("plain", "starttls", "ssl", "auth", "starttls+auth", "ssl+auth")


class SmtpServer:
    """A real aiosmtpd server on 127.0.0.1 that keeps what it receives.

    Modes: ``plain``, ``starttls``, ``ssl`` (implicit TLS), and ``+auth``
    variants (``auth`` alone is AUTH LOGIN/PLAIN without TLS) that require
    ``user`` / ``password`` before MAIL FROM.
    """

    user = "relayuser"
    password = "s3cret pass"  # a space, as real relay passwords sometimes have

    def __init__(self, mode: str, certificate: tuple[Path, Path] | None) -> None:
        if mode not in SMTP_MODES:
            raise ValueError(f"unknown SMTP mode {mode!r}; one of {SMTP_MODES}")
        self.mode = mode
        self.security = "ssl" if mode.startswith("ssl") else "starttls" if mode.startswith("starttls") else "none"
        self.auth = mode.endswith("auth")
        self.host = "127.0.0.1"
        self.port = 0
        self.cafile: Path | None = certificate[0] if certificate else None
        self._certificate = certificate
        self._messages: list[ReceivedMail] = []
        self._cond = threading.Condition()
        self.reply: str | None = None
        """Set to e.g. ``"451 4.3.0 try again later"`` to answer DATA with it instead of 250."""
        self._controller: Any = None

    # -- aiosmtpd hooks

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        message = cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(raw))
        mail = ReceivedMail(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            message=message,
            login=session.auth_data if session.authenticated else None,
            tls=self.security == "ssl" or session.ssl is not None,
        )
        if self.reply is not None:
            return self.reply
        with self._cond:
            self._messages.append(mail)
            self._cond.notify_all()
        return "250 OK"

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            if login == self.user and auth_data.password.decode("utf-8", "replace") == self.password:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    # -- control

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        with socket.socket() as probe:
            # aiosmtpd's readiness probe needs the real port up front.
            probe.bind((self.host, 0))
            self.port = probe.getsockname()[1]
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": True, "ready_timeout": 10}
        if self.security != "none":
            assert self._certificate is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self._certificate[0]), str(self._certificate[1]))
            if self.security == "ssl":
                kwargs["ssl_context"] = context
            else:
                kwargs["tls_context"] = context
                kwargs["require_starttls"] = True
        if self.auth:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                # A relay offering STARTTLS wants it before AUTH; plain "auth" mode
                # (and implicit TLS, which aiosmtpd does not count) must allow it.
                auth_require_tls=self.security == "starttls",
            )
        self._controller = Controller(self, hostname=self.host, port=self.port, **kwargs)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._cond:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Block until ``count`` messages arrived or ``timeout`` passed; return what arrived."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._messages) >= count, timeout=timeout)
            return list(self._messages)

    def config(self) -> dict[str, str]:
        """The MISSEDCALL_* settings that point the product at this server."""
        conf = {
            "MISSEDCALL_TRANSPORT": "smtp",
            "MISSEDCALL_SMTP_HOST": self.host,
            "MISSEDCALL_SMTP_PORT": str(self.port),
            "MISSEDCALL_SMTP_SECURITY": self.security,
        }
        if self.auth:
            conf["MISSEDCALL_SMTP_USER"] = self.user
            conf["MISSEDCALL_SMTP_PASSWORD"] = self.password
        return conf

    def client_env(self) -> dict[str, str]:
        """Environment that makes OpenSSL in a child process trust this server's certificate."""
        return {"SSL_CERT_FILE": str(self.cafile)} if self.cafile else {}

    def client_context(self) -> ssl.SSLContext:
        """An SSL context (for smtplib in the test process) that trusts this server."""
        return ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest, tls_certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """An SMTP server; plain by default, or ``@pytest.mark.parametrize("smtp_server",
    ["starttls", "ssl", "auth", ...], indirect=True)``."""
    mode = getattr(request, "param", "plain")
    server = SmtpServer(mode, tls_certificate)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def silent_tcp_server() -> Iterator[tuple[str, int]]:
    """(host, port) of a listener that accepts connections and never says a word.

    The kernel completes the handshake from the backlog, so an SMTP or MySQL
    client connects fine and then waits for a greeting that never comes: a hung
    relay or database, for the "bounded waits" tests.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield "127.0.0.1", listener.getsockname()[1]
    finally:
        listener.close()


# ============================================================================ AGI environment


def _dotenv_quote(value: str) -> str:
    # Single quotes: python-dotenv reads no escapes there but \\ and \', and a
    # newline may stand in them literally. (Nothing stops ${...} expansion in any
    # quoting: read such files with interpolate=False, as missedcall.config does.)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_env_file(directory: Path, filename: str = "missedcall.env", /, **keys: str) -> Path:
    """Write ``KEY='value'`` lines as python-dotenv reads them, mode 0640; return the path."""
    path = Path(directory) / filename
    lines = []
    for key, value in keys.items():
        if not key.isidentifier() or not key.isascii():
            raise ValueError(f"not an environment variable name: {key!r}")
        lines.append(f"{key}={_dotenv_quote(str(value))}\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o640)  # whatever the umask
        handle.writelines(lines)
    return path


@dataclass
class AgiEnvironment:
    env: dict[str, str]
    config_file: Path
    config: dict[str, str]
    home: Path


def make_agi_env(
    tmp_path: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
    **config: str | None,
) -> AgiEnvironment:
    """The environment Asterisk would give agi-bin/missed.py, plus a config file.

    Hermetic defaults keep the script off the host (its own SQLite, spool and
    queue_log in ``tmp_path``, the sendmail stand-in, no FreePBX); a keyword
    overrides one, ``None`` removes it. ``extra_env`` goes to the real
    environment (which wins over the file).
    """
    base = tmp_path / "agi"
    for sub in ("home", "spool", "maildir"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    defaults: dict[str, str | None] = {
        "MISSEDCALL_DB_URL": f"sqlite:///{base}/missedcall.sqlite3",
        "MISSEDCALL_TRANSPORT": "sendmail",
        "MISSEDCALL_SENDMAIL": str(SENDMAIL_BIN),
        "MISSEDCALL_FROM": "asterisk@pbx.example.com",
        "MISSEDCALL_SPOOL_DIR": str(base / "spool"),
        "MISSEDCALL_QUEUE_LOG": str(base / "queue_log"),
        "MISSEDCALL_FREEPBX_CONF": str(base / "no-freepbx.conf"),
    }
    defaults.update(config)
    final = {key: value for key, value in defaults.items() if value is not None}
    config_file = write_env_file(base, "missedcall.env", **final)
    env = {
        # Asterisk runs scripts with a bare environment: no LANG, a short PATH.
        "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(base / "home"),
        "MISSEDCALL_CONFIG": str(config_file),
        "MISSEDCALL_TEST_MAILDIR": str(base / "maildir"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra_env or {})
    return AgiEnvironment(env=env, config_file=config_file, config=final, home=base / "home")


@pytest.fixture
def agi_env(tmp_path: Path) -> Callable[..., AgiEnvironment]:
    """``agi_env(**config)`` -> :class:`AgiEnvironment`; ``.env`` goes to ``AgiPeer.run(env=...)``.

    Mail sent through the stand-in lands in ``Path(result.env["MISSEDCALL_TEST_MAILDIR"])``.
    """

    def make(*, extra_env: Mapping[str, str] | None = None, **config: str | None) -> AgiEnvironment:
        return make_agi_env(tmp_path, extra_env=extra_env, **config)

    return make
