"""One bounded connection to MariaDB (PyMySQL) or SQLite (stdlib), with one way to run a query.

Queries are written once with ``?`` placeholders; the MySQL connection turns
them into PyMySQL's ``%s``. All times are stored as UTC ``DATETIME`` values
(``YYYY-MM-DD HH:MM:SS`` text in SQLite) and handed to callers as aware
``datetime`` objects (missedcall.record.model). :meth:`Database.execute` and
:meth:`Database.rows` are for the modules of missedcall.record only: every
other module asks :class:`missedcall.record.storage.Store` for what it needs.
"""

from __future__ import annotations

import os
import time

from missedcall.record import schema
from missedcall.record.model import db_value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, TypeVar

    from missedcall.dburl import DbTarget

    _D = TypeVar("_D", bound="Database")


class StorageError(RuntimeError):
    """The database could not be reached or refused a query; the message has no secret."""


class DuplicateError(StorageError):
    """A unique key refused the row."""


class ConflictError(StorageError):
    """InnoDB chose this transaction as a deadlock victim (or it waited too long for a lock): run it again."""


class BusyError(StorageError):
    """The server is there but has no room right now (too many connections): worth another try."""


def _ddl_mark() -> int:
    """A number that changes whenever the CREATE statements do (a 31-bit CRC of them), for PRAGMA user_version."""
    import binascii

    return binascii.crc32("\n".join(schema.ddl("sqlite")).encode()) & 0x7FFFFFFF


def _loopback(host: str) -> bool:
    """A host name or address that is this machine (a connection that never leaves it)."""
    return host in ("localhost", "::1") or (host.startswith("127.") and host.replace(".", "").isdigit())


def _is_integrity_error(exc: Exception) -> bool:
    return exc.__class__.__name__ == "IntegrityError"


def _mysql_reason(exc: Exception) -> str:
    # PyMySQL errors are (code, message); the message never holds the password,
    # but it may hold the user name and host, which are fine to show.
    args = getattr(exc, "args", ())
    if len(args) >= 2:
        return f"({args[0]}) {args[1]}"
    return str(exc) or exc.__class__.__name__


def _db_reason(exc: Exception) -> str:
    if exc.__class__.__module__.startswith("pymysql"):
        return _mysql_reason(exc)
    return f"{exc.__class__.__name__}: {exc}"


def connect_options(target: DbTarget, timeout: float) -> dict[str, Any]:
    """PyMySQL's keyword arguments for ``target`` (the password among them: never shown)."""
    kwargs: dict[str, Any] = {
        "user": target.user,
        "password": target.password,
        "database": target.database,
        "charset": "utf8mb4",
        # PyMySQL accepts float seconds: the AGI needs sub-second bounds.
        "connect_timeout": timeout,
        "read_timeout": timeout,
        "write_timeout": timeout,
        "autocommit": True,
    }
    if target.unix_socket:
        kwargs["unix_socket"] = target.unix_socket
    else:
        kwargs["host"] = target.host
        kwargs["port"] = target.port
    if target.ssl_ca:
        # Required and checked: PyMySQL refuses a server without TLS, a certificate not from this CA,
        # or one made out to another name than the URL's host.
        kwargs["ssl_ca"] = target.ssl_ca
        kwargs["ssl_verify_cert"] = True
        kwargs["ssl_verify_identity"] = True
    elif target.unix_socket or _loopback(target.host):
        # PyMySQL 1.2 tries TLS whenever the server offers it ("preferred", unverified): on the same
        # box it protects nothing and costs each hang-up a CA bundle load and a handshake (15-20 ms),
        # and without it the process need not load OpenSSL at all (missedcall.record.mysqlimport).
        # A remote server keeps PyMySQL's default.
        kwargs["ssl_disabled"] = True
    if kwargs.get("ssl_disabled") or (not target.unix_socket and target.host.isascii()):
        kwargs["defer_connect"] = True  # the socket comes from _socket_for; a name not in ASCII is PyMySQL's
    return kwargs


def _socket_for(target: DbTarget, timeout: float, *, plain: bool) -> Any:
    """The connected socket for PyMySQL: in the clear, one of missedcall.record.mysqlsock (no socket.py
    at all); where TLS may follow, a ``socket.socket`` (what ``ssl`` wraps)."""
    if plain:
        from missedcall.record import mysqlsock

        if target.unix_socket:
            return mysqlsock.unix(target.unix_socket, timeout)
        return mysqlsock.tcp(target.host, target.port, timeout)
    return _tcp_socket(target, timeout)


def _tcp_socket(target: DbTarget, timeout: float) -> Any:
    """The TCP connection PyMySQL would open, minus its IDNA codec: a ``str`` host makes
    getaddrinfo() import ``encodings.idna`` (with stringprep and unicodedata, 1.5 ms a call);
    the ASCII bytes of the same name resolve the same way (DbTarget hosts are ASCII names or
    addresses, which IDNA leaves as they are)."""
    import socket

    sock = socket.create_connection((target.host.encode("ascii"), target.port), timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except OSError:
        sock.close()
        raise
    return sock


class Database:
    """One open connection: open, run parameterised SQL, transactions, close."""

    def __init__(self, conn: Any, kind: str, target: DbTarget) -> None:
        self._conn = conn
        self.kind = kind
        self.target = target
        self._in_transaction = False

    @classmethod
    def open(cls: type[_D], target: DbTarget, *, timeout: float = 5.0, create: bool = True) -> _D:
        """Connect, bounded by ``timeout`` seconds for connect and for every read and write."""
        if target.kind == "sqlite":
            return cls._open_sqlite(target, timeout, create)
        return cls._open_mysql(target, timeout)

    @classmethod
    def _open_sqlite(cls: type[_D], target: DbTarget, timeout: float, create: bool) -> _D:
        import sqlite3

        if not create and not os.path.exists(target.path):
            raise StorageError(f"database {target.path} does not exist (run: missedcall-admin init)")
        try:
            if create:
                os.makedirs(os.path.dirname(target.path) or ".", mode=0o750, exist_ok=True)
            # isolation_level=None: we issue BEGIN ourselves, so a claim is one short transaction.
            conn = sqlite3.connect(target.path, timeout=timeout, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            # WAL lets the sweeper read while many AGI processes write.
            mode = conn.execute("PRAGMA journal_mode = WAL" if create else "PRAGMA journal_mode").fetchone()
            if mode and str(mode[0]).lower() == "wal":
                # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit costs microseconds
                # instead of an fsync (5-12 ms each here, and the hook commits four or five times), the
                # file is never corrupted, and an application crash loses nothing. A power cut may undo
                # the last commits: then the queue_log sweeper finds those calls again (the mail, if it
                # went, goes once more), as after any crash before the row was written.
                conn.execute("PRAGMA synchronous = NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open {target.path}: {exc}") from None
        store = cls(conn, "sqlite", target)
        if create and not store._tables_made():
            store.create_tables()
        return store

    @classmethod
    def _open_mysql(cls: type[_D], target: DbTarget, timeout: float) -> _D:
        from missedcall.record import mysqlimport

        local = bool(target.unix_socket) or _loopback(target.host)
        pymysql = mysqlimport.load(tls=bool(target.ssl_ca) or not local)
        kwargs = connect_options(target, timeout)
        plain = bool(kwargs.get("ssl_disabled"))
        try:
            try:
                conn = pymysql.connect(**kwargs)
            except TypeError:  # a PyMySQL without ssl_disabled (1.0): it does not try TLS unasked either
                kwargs.pop("ssl_disabled", None)
                conn = pymysql.connect(**kwargs)
            if kwargs.get("defer_connect"):
                if target.unix_socket:
                    # What PyMySQL's own connect of a Unix socket sets: caching_sha2_password and
                    # sha256_password may send the password over it as over TLS.
                    conn.host_info, conn._secure = "Localhost via UNIX socket", True
                conn.connect(_socket_for(target, timeout, plain=plain))
            if target.ssl_ca and not conn.server_capabilities & pymysql.constants.CLIENT.SSL:
                # PyMySQL 1.2 refuses this itself, before the login; 1.0 would go on in the clear.
                conn.close()
                raise StorageError(f"cannot connect to {target.describe()}: the server offers no TLS")
        except pymysql.MySQLError as exc:
            # 1040 too many connections, 1203/1226 max_user_connections: a moment later may work.
            kind = BusyError if getattr(exc, "args", (None,))[0] in (1040, 1203, 1226) else StorageError
            raise kind(f"cannot connect to {target.describe()}: {_mysql_reason(exc)}") from None
        except OSError as exc:
            raise StorageError(f"cannot connect to {target.describe()}: {exc.strerror or exc}") from None
        return cls(conn, "mysql", target)

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: S110 - closing a broken connection has nothing left to report
            pass

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "mysql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        params = tuple(db_value(p) for p in params)
        for attempt in range(4):
            try:
                if self.kind == "mysql":
                    cursor = self._conn.cursor()
                    cursor.execute(self._sql(sql), params)
                    return cursor
                return self._conn.execute(sql, params)
            except Exception as exc:
                if _is_integrity_error(exc):
                    raise DuplicateError(str(exc)) from None
                code = getattr(exc, "args", (None,))[0] if self.kind == "mysql" else None
                if code in (1213, 1205):  # deadlock victim, lock wait timeout: InnoDB undid the statement
                    if not self._in_transaction and attempt < 3:
                        time.sleep(0.01 * (attempt + 1))
                        continue  # a statement on its own: running it again is all InnoDB asks
                    raise ConflictError(f"{self.target.describe()}: {_db_reason(exc)}") from None
                raise StorageError(f"{self.target.describe()}: {_db_reason(exc)}") from None
        raise AssertionError("unreachable")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self.execute(sql, params)
        try:
            return [tuple(row) for row in cursor.fetchall()]
        except Exception as exc:
            raise StorageError(f"{self.target.describe()}: {_db_reason(exc)}") from None

    def transaction(self) -> _Transaction:
        """``with db.transaction():`` commits the block's statements together, or rolls them all back."""
        return _Transaction(self)

    def create_tables(self) -> None:
        """CREATE TABLE IF NOT EXISTS for every table (no migration: see Store.init)."""
        for statement in schema.ddl(self.kind):
            self.execute(statement)
        if self.kind == "sqlite":
            self.execute(f"PRAGMA user_version = {_ddl_mark()}")

    def _tables_made(self) -> bool:
        """SQLite: did create_tables run on this file with this version's statements? One pragma read, where
        a dozen CREATE ... IF NOT EXISTS on every hang-up cost more than the call's own writes."""
        row = self.execute("PRAGMA user_version").fetchone()
        return bool(row) and row[0] == _ddl_mark()


class _Transaction:
    """The context manager behind ``Database.transaction`` (a class: contextlib would cost the AGI its import)."""

    __slots__ = ("db",)

    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> None:
        if self.db.kind == "sqlite":
            # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
            # instead of one failing half-way through.
            self.db.execute("BEGIN IMMEDIATE")
        else:
            self.db.execute("START TRANSACTION")
        self.db._in_transaction = True

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.db._in_transaction = False
        if kind is None:
            self.db.execute("COMMIT")
            return
        try:
            self.db.execute("ROLLBACK")
        except StorageError:
            pass
