"""The real MariaDB the tests use: the running server (started if need be) and
throw-away databases with their own password-protected users.

Everything made here is dropped by the same handle, and :func:`mariadb_leftovers`
lets a fixture check that nothing survived.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pymysql

MARIADBD = "/usr/sbin/mariadbd"
MARIADB_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock")
MARIADB_HOST = "127.0.0.1"
MARIADB_PORT = 3306


class MariaDBUnavailable(RuntimeError):
    """No server answers and this process cannot start one (the fixture fails with it)."""


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


def ensure_mariadb(workdir: Path) -> tuple[MariaDBServer, int | None]:
    """Return the server and, when this function had to start it, the pid to stop."""
    found = _root_socket()
    if found:
        return MariaDBServer(found), None
    if _mariadbd_alive():
        found = _wait_for_root_socket(60)
        if found:
            return MariaDBServer(found), None
        raise MariaDBUnavailable("mariadbd is running but root cannot connect over its socket (unix_socket auth?)")
    if os.geteuid() != 0:
        raise MariaDBUnavailable(
            "MariaDB is not answering on its socket and only root can start it (run tests/run as root)"
        )
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
        raise MariaDBUnavailable("started mariadbd but it did not answer on its socket within 60 s")
    pid = int(pidfile.read_text().strip()) if pidfile.exists() else None
    return MariaDBServer(found), pid


def stop_pid(pid: int, seconds: float) -> None:
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


def mariadb_leftovers(server: MariaDBServer, name: str, user: str) -> list[str]:
    """What is left of a temporary database and its user (empty when all is gone)."""
    left: list[str] = []
    with contextlib.closing(server.root()) as conn, conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
        left += [f"database {row[0]}" for row in cur.fetchall()]
        cur.execute("SELECT User, Host FROM mysql.user WHERE User = %s", (user,))
        left += [f"user {row[0]}@{row[1]}" for row in cur.fetchall()]
    return left


TOO_MANY_CONNECTIONS = 1040


def _root_once_there_is_room(server: MariaDBServer, seconds: float = 60) -> pymysql.connections.Connection:
    """A root connection for a teardown, waiting out "Too many connections": a test that filled the server
    (1,000 FastAGI sessions, a burst of hooks) is still letting go of them, and the database must not stay."""
    until = time.monotonic() + seconds
    while True:
        try:
            return server.root()
        except pymysql.err.OperationalError as exc:
            if exc.args[0] != TOO_MANY_CONNECTIONS or time.monotonic() > until:
                raise
            time.sleep(0.2)


#: What MariaDB 5.5 (SNG7, so FreePBX 13 to 16) and 10.1 do by default and today's server does not: rows in
#: COMPACT format, whose index columns hold at most 767 bytes (innodb_large_prefix off, Antelope), no InnoDB
#: strict mode and no SQL strict mode (a value too long for its column is cut with a warning, not refused).
OLD_SERVER_DEFAULTS = {"innodb_default_row_format": "compact", "innodb_strict_mode": 0, "sql_mode": ""}


@contextlib.contextmanager
def old_server_defaults(server: MariaDBServer) -> Iterator[None]:
    """The server behaves like MariaDB 5.5's defaults (:data:`OLD_SERVER_DEFAULTS`) for connections and tables
    made inside; the settings are global (row format has no session value), so they are put back on exit.
    Safe because the suite runs one test at a time."""
    names = list(OLD_SERVER_DEFAULTS)
    with contextlib.closing(server.root()) as conn, conn.cursor() as cur:
        cur.execute("SELECT " + ", ".join(f"@@GLOBAL.{name}" for name in names))
        before = dict(zip(names, cur.fetchone() or ()))
        try:
            for name, value in OLD_SERVER_DEFAULTS.items():
                cur.execute(f"SET GLOBAL {name} = %s", (value,))  # names are ours, values parameters
            yield
        finally:
            for name, value in before.items():
                cur.execute(f"SET GLOBAL {name} = %s", (value,))


def undo_interrupted_old_defaults(server: MariaDBServer) -> bool:
    """A run killed inside :func:`old_server_defaults` left them set for every later test: put the server's own
    defaults back (the suite's first step). True when there was something to undo."""
    names = list(OLD_SERVER_DEFAULTS)
    with contextlib.closing(server.root()) as conn, conn.cursor() as cur:
        cur.execute("SELECT " + ", ".join(f"@@GLOBAL.{name}" for name in names))
        now = dict(zip(names, cur.fetchone() or ()))
        if any(str(now[name]).lower() != str(value) for name, value in OLD_SERVER_DEFAULTS.items()):
            return False
        for name in names:
            cur.execute(f"SET GLOBAL {name} = DEFAULT")
    return True


@contextlib.contextmanager
def temporary_mariadb(
    server: MariaDBServer, *, password: str | None = None, prefix: str = "mc_test_", charset: str = "utf8mb4"
) -> Iterator[MariaDBDatabase]:
    """A new database plus a user made the way FreePBX makes ``freepbxuser``.

    ``CREATE USER ... IDENTIFIED BY`` at localhost and 127.0.0.1 and
    ``GRANT ALL PRIVILEGES ON db.*``; dropped (sessions killed first) on exit. ``charset``: the database's
    default, latin1 as a 5.5 server made it (the tables must then say utf8mb4 themselves).
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
            collation = {"utf8mb4": "utf8mb4_unicode_ci", "latin1": "latin1_swedish_ci"}[charset]
            cur.execute(f"CREATE DATABASE `{db.name}` CHARACTER SET {charset} COLLATE {collation}")
            for host in ("localhost", "127.0.0.1"):
                cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (db.user, host, db.password))
                cur.execute(f"GRANT ALL PRIVILEGES ON `{db.name}`.* TO %s@%s", (db.user, host))
        yield db
    finally:
        with contextlib.closing(_root_once_there_is_room(server)) as conn, conn.cursor() as cur:
            # A leaked connection holding a lock would make DROP DATABASE wait.
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (db.user,))
            for (session_id,) in cur.fetchall():
                with contextlib.suppress(pymysql.err.MySQLError):
                    cur.execute("KILL CONNECTION %s", (int(session_id),))
            cur.execute(f"DROP DATABASE IF EXISTS `{db.name}`")
            for host in ("localhost", "127.0.0.1"):
                cur.execute("DROP USER IF EXISTS %s@%s", (db.user, host))

