"""The tables of docs/design.md §6 on MariaDB (PyMySQL) and SQLite (stdlib), with one set of queries.

Queries are written once with ``?`` placeholders; the MySQL connection turns
them into PyMySQL's ``%s``. All times are stored as UTC ``DATETIME`` values
(``YYYY-MM-DD HH:MM:SS`` text in SQLite) and handed to callers as aware
``datetime`` objects.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from missedcall.dburl import DbTarget

# 2: missedcall_calls.next_attempt_at (back-off and claim lease); missedcall_flood and
#    missedcall_held (storm control, see missedcall/deliver/flood.py).
# 3: missedcall_calls.did (the DID from FreePBX's queue_log lines), so a mail sent later by
#    retry says what the first one would have said.
SCHEMA_VERSION = 3
#: Seconds a fresh claim keeps ``retry`` away from a call, so that the detector that claimed
#: it (the AGI: 3 s at most; the sweeper: one relay timeout) sends it alone. Longer than
#: spool.SETTLE, so a retry imports a spooled copy of a call before it may resend its row.
CLAIM_LEASE = 60
CALL_STATUSES = ("pending", "held", "sent", "skipped", "failed")
CALL_COLUMNS = (
    "id", "callid", "linkedid", "queue", "path", "caller_num", "caller_name", "reason",
    "wait_seconds", "position", "entered_at", "ended_at", "source", "status", "attempts",
    "last_error", "recipients", "notified_at", "next_attempt_at", "did",
)  # fmt: skip
RECIPIENT_COLUMNS = ("id", "queue", "email", "name", "created_at")
_TIME_COLUMNS = ("entered_at", "ended_at", "notified_at", "created_at", "next_attempt_at")


class StorageError(RuntimeError):
    """The database could not be reached or refused a query; the message has no secret."""


@dataclass
class CallRecord:
    """One missed call, as recorded in ``missedcall_calls``."""

    callid: str
    queue: str
    reason: str
    source: str
    linkedid: str = ""
    path: tuple[str, ...] = ()
    caller_num: str = ""
    caller_name: str = ""
    wait_seconds: int | None = None
    position: int | None = None
    entered_at: datetime | None = None
    ended_at: datetime | None = None
    status: str = "pending"
    attempts: int = 0
    last_error: str = ""
    recipients: tuple[str, ...] = ()
    notified_at: datetime | None = None
    next_attempt_at: datetime | None = None  # pending: not retried before then (back-off / claim lease)
    id: int | None = None
    extra: dict[str, str] = field(default_factory=dict)  # "did": stored in the did column


@dataclass(frozen=True)
class Recipient:
    queue: str
    email: str
    name: str = ""
    id: int | None = None
    created_at: datetime | None = None


# --- DDL ------------------------------------------------------------------

_DDL_MYSQL = (
    """CREATE TABLE IF NOT EXISTS missedcall_state (
        name VARCHAR(64) NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS missedcall_recipients (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        queue VARCHAR(64) NOT NULL,
        email VARCHAR(254) NOT NULL,
        name VARCHAR(128) NOT NULL DEFAULT '',
        created_at DATETIME NOT NULL,
        UNIQUE KEY missedcall_recipients_queue_email (queue, email)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS missedcall_calls (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        callid VARCHAR(64) NOT NULL,
        linkedid VARCHAR(64) NOT NULL DEFAULT '',
        queue VARCHAR(64) NOT NULL,
        path VARCHAR(1024) NOT NULL DEFAULT '',
        caller_num VARCHAR(128) NOT NULL DEFAULT '',
        caller_name VARCHAR(512) NOT NULL DEFAULT '',
        reason VARCHAR(16) NOT NULL,
        wait_seconds INT NULL,
        position INT NULL,
        entered_at DATETIME NULL,
        ended_at DATETIME NULL,
        source VARCHAR(16) NOT NULL,
        status VARCHAR(16) NOT NULL DEFAULT 'pending',
        attempts INT NOT NULL DEFAULT 0,
        last_error VARCHAR(512) NOT NULL DEFAULT '',
        recipients TEXT NULL,
        notified_at DATETIME NULL,
        next_attempt_at DATETIME NULL,
        did VARCHAR(64) NOT NULL DEFAULT '',
        UNIQUE KEY missedcall_calls_callid (callid),
        KEY missedcall_calls_ended (ended_at),
        KEY missedcall_calls_status (status)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    # Storm control (missedcall/deliver/flood.py): one counting window per recipient address ...
    """CREATE TABLE IF NOT EXISTS missedcall_flood (
        email VARCHAR(254) NOT NULL PRIMARY KEY,
        window_start DATETIME NOT NULL,
        sent INT NOT NULL DEFAULT 0
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    # ... and one row per (call, address) that waits for that address's digest.
    """CREATE TABLE IF NOT EXISTS missedcall_held (
        callid VARCHAR(64) NOT NULL,
        email VARCHAR(254) NOT NULL,
        held_at DATETIME NOT NULL,
        due_at DATETIME NOT NULL,
        status VARCHAR(16) NOT NULL DEFAULT 'held',
        attempts INT NOT NULL DEFAULT 0,
        last_error VARCHAR(512) NOT NULL DEFAULT '',
        lease VARCHAR(32) NOT NULL DEFAULT '',
        sent_at DATETIME NULL,
        PRIMARY KEY (callid, email),
        KEY missedcall_held_due (status, due_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)

_DDL_SQLITE = (
    """CREATE TABLE IF NOT EXISTS missedcall_state (
        name TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS missedcall_recipients (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        email TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        UNIQUE (queue, email)
    )""",
    """CREATE TABLE IF NOT EXISTS missedcall_calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        callid TEXT NOT NULL UNIQUE,
        linkedid TEXT NOT NULL DEFAULT '',
        queue TEXT NOT NULL,
        path TEXT NOT NULL DEFAULT '',
        caller_num TEXT NOT NULL DEFAULT '',
        caller_name TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL,
        wait_seconds INTEGER NULL,
        position INTEGER NULL,
        entered_at TEXT NULL,
        ended_at TEXT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        recipients TEXT NULL,
        notified_at TEXT NULL,
        next_attempt_at TEXT NULL,
        did TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS missedcall_calls_ended ON missedcall_calls (ended_at)",
    "CREATE INDEX IF NOT EXISTS missedcall_calls_status ON missedcall_calls (status)",
    """CREATE TABLE IF NOT EXISTS missedcall_flood (
        email TEXT NOT NULL PRIMARY KEY,
        window_start TEXT NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS missedcall_held (
        callid TEXT NOT NULL,
        email TEXT NOT NULL,
        held_at TEXT NOT NULL,
        due_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'held',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        lease TEXT NOT NULL DEFAULT '',
        sent_at TEXT NULL,
        PRIMARY KEY (callid, email)
    )""",
    "CREATE INDEX IF NOT EXISTS missedcall_held_due ON missedcall_held (status, due_at)",
)
#: Columns added after version 1, as (table, column, MariaDB type, SQLite type): ``init`` adds
#: whichever a table lacks, so it is idempotent and safe when several processes run it at once.
_ADDED_COLUMNS = (
    ("missedcall_calls", "next_attempt_at", "DATETIME NULL", "TEXT NULL"),
    ("missedcall_calls", "did", "VARCHAR(64) NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
)

# Column limits shared by both engines, so SQLite keeps what MariaDB would keep.
_LIMITS = {"callid": 64, "linkedid": 64, "did": 64, "queue": 64, "path": 1024, "caller_num": 128,
           "caller_name": 512, "reason": 16, "source": 16, "status": 16, "last_error": 512}  # fmt: skip


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _to_db(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


def _from_db(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.strptime(value[:19], "%Y-%m-%d %H:%M:%S")
    return value.replace(tzinfo=timezone.utc)


def _clip(column: str, value: Any) -> Any:
    limit = _LIMITS.get(column)
    if limit is not None and isinstance(value, str) and len(value) > limit:
        return value[:limit]
    return value


class Store:
    """One open connection and the queries the product needs."""

    def __init__(self, conn: Any, kind: str, target: DbTarget) -> None:
        self._conn = conn
        self.kind = kind
        self.target = target
        self._in_transaction = False

    # -- plumbing ----------------------------------------------------------

    @classmethod
    def open(cls, target: DbTarget, *, timeout: float = 5.0, create: bool = True) -> Store:
        """Connect, bounded by ``timeout`` seconds for connect and for every read and write."""
        if target.kind == "sqlite":
            return cls._open_sqlite(target, timeout, create)
        return cls._open_mysql(target, timeout)

    @classmethod
    def _open_sqlite(cls, target: DbTarget, timeout: float, create: bool) -> Store:
        import sqlite3

        if not create and not os.path.exists(target.path):
            raise StorageError(f"database {target.path} does not exist (run: missedcall-admin init)")
        try:
            if create:
                os.makedirs(os.path.dirname(target.path) or ".", mode=0o750, exist_ok=True)
            # isolation_level=None: we issue BEGIN ourselves, so a claim is one short transaction.
            conn = sqlite3.connect(target.path, timeout=timeout, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if create:
                # WAL lets the sweeper read while many AGI processes write.
                conn.execute("PRAGMA journal_mode = WAL")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open {target.path}: {exc}") from None
        store = cls(conn, "sqlite", target)
        if create:
            store._create_tables()
        return store

    @classmethod
    def _open_mysql(cls, target: DbTarget, timeout: float) -> Store:
        import pymysql

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
        try:
            conn = pymysql.connect(**kwargs)
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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "mysql" else sql

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        params = tuple(_to_db(p) for p in params)
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

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._execute(sql, params)
        try:
            return [tuple(row) for row in cursor.fetchall()]
        except Exception as exc:
            raise StorageError(f"{self.target.describe()}: {_db_reason(exc)}") from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self.kind == "sqlite":
            # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
            # instead of one failing half-way through.
            self._execute("BEGIN IMMEDIATE")
        else:
            self._execute("START TRANSACTION")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            try:
                self._execute("ROLLBACK")
            except StorageError:
                pass
            raise
        self._in_transaction = False
        self._execute("COMMIT")

    # -- schema ------------------------------------------------------------

    def _create_tables(self) -> None:
        for statement in _DDL_SQLITE if self.kind == "sqlite" else _DDL_MYSQL:
            self._execute(statement)

    def schema_version(self) -> int | None:
        """The recorded schema version; None when the tables are absent."""
        try:
            value = self.get_state("schema_version")
        except StorageError:
            return None
        return int(value) if value and value.isdigit() else None

    def init(self) -> tuple[int | None, int]:
        """Create or migrate the tables; idempotent. Returns (version before, version now)."""
        before = self.schema_version()
        self._create_tables()
        for table, column, mysql_type, sqlite_type in _ADDED_COLUMNS:
            if not self._has_column(table, column):
                try:
                    self._execute(
                        f"ALTER TABLE {table} ADD COLUMN {column} {mysql_type if self.kind == 'mysql' else sqlite_type}"
                    )
                except StorageError:
                    if not self._has_column(table, column):  # not another process's ALTER winning the race
                        raise
        if before is None or before < SCHEMA_VERSION:
            self.set_state("schema_version", str(SCHEMA_VERSION))
        return before, max(before or 0, SCHEMA_VERSION)

    def _has_column(self, table: str, column: str) -> bool:
        if self.kind == "sqlite":
            return any(row[1] == column for row in self._rows(f"PRAGMA table_info({table})"))
        rows = self._rows(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?"
            " AND column_name = ?",
            (table, column),
        )
        return bool(rows)

    def table_exists(self, name: str) -> bool:
        if self.kind == "sqlite":
            rows = self._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        else:
            rows = self._rows(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
                (name,),
            )
        return bool(rows)

    # -- state -------------------------------------------------------------

    def get_state(self, name: str) -> str | None:
        rows = self._rows("SELECT value FROM missedcall_state WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def set_state(self, name: str, value: str) -> None:
        if self.kind == "sqlite":
            sql = (
                "INSERT INTO missedcall_state (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value"
            )
        else:
            sql = (
                "INSERT INTO missedcall_state (name, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value)"
            )
        self._execute(sql, (name, value))

    # -- recipients --------------------------------------------------------

    def recipients(self, queue: str | None = None) -> list[Recipient]:
        sql = "SELECT id, queue, email, name, created_at FROM missedcall_recipients"
        params: tuple[str, ...] = ()
        if queue is not None:
            sql += " WHERE queue = ?"
            params = (queue,)
        rows = self._rows(sql + " ORDER BY queue, email", params)
        return [Recipient(id=r[0], queue=r[1], email=r[2], name=r[3] or "", created_at=_from_db(r[4])) for r in rows]

    def recipients_for(self, queue: str) -> tuple[list[str], list[str]]:
        """(the queue's own addresses, the ``*`` addresses), each in a stable order."""
        rows = self._rows(
            "SELECT queue, email FROM missedcall_recipients WHERE queue = ? OR queue = '*' ORDER BY id",
            (queue,),
        )
        own = [email for q, email in rows if q == queue and queue != "*"]
        star = [email for q, email in rows if q == "*"]
        return own, star

    def add_recipient(self, queue: str, email: str, name: str = "") -> bool:
        """False when the (queue, email) pair is already there."""
        try:
            self._execute(
                "INSERT INTO missedcall_recipients (queue, email, name, created_at) VALUES (?, ?, ?, ?)",
                (queue, email, name, utcnow()),
            )
        except DuplicateError:
            return False
        return True

    def remove_recipient(self, queue: str, email: str) -> bool:
        cursor = self._execute("DELETE FROM missedcall_recipients WHERE queue = ? AND email = ?", (queue, email))
        return bool(cursor.rowcount)

    # -- FreePBX -----------------------------------------------------------

    def freepbx_queues(self) -> dict[str, str] | None:
        """FreePBX ``queues_config`` as {queue: label}; None when this database has no such table."""
        if self.kind != "mysql" or not self.table_exists("queues_config"):
            return None
        rows = self._rows("SELECT extension, descr FROM queues_config ORDER BY extension")
        return {str(r[0]): str(r[1] or "") for r in rows}

    def queue_label(self, queue: str) -> str:
        """The queue's description from FreePBX, or "" (one query, no table check first)."""
        if self.kind != "mysql":
            return ""
        try:
            rows = self._rows("SELECT descr FROM queues_config WHERE extension = ?", (queue,))
        except StorageError:
            return ""  # not a FreePBX database: no labels
        return str(rows[0][0] or "") if rows else ""

    # -- calls -------------------------------------------------------------

    def claim_call(self, call: CallRecord) -> bool:
        """Insert the call; False when that callid is already recorded (someone else owns it)."""
        values = {
            "callid": call.callid,
            "linkedid": call.linkedid,
            "queue": call.queue,
            "path": " > ".join(call.path),
            "caller_num": call.caller_num,
            "caller_name": call.caller_name,
            "reason": call.reason,
            "wait_seconds": call.wait_seconds,
            "position": call.position,
            "entered_at": call.entered_at,
            "ended_at": call.ended_at,
            "source": call.source,
            "status": call.status,
            "attempts": call.attempts,
            "last_error": call.last_error,
            "recipients": ",".join(call.recipients),
            "notified_at": call.notified_at,
            # Every claim starts with a lease: retry leaves the call to its claimer for a while.
            "next_attempt_at": call.next_attempt_at or utcnow() + timedelta(seconds=CLAIM_LEASE),
            "did": call.extra.get("did", ""),
        }
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        try:
            cursor = self._execute(
                f"INSERT INTO missedcall_calls ({columns}) VALUES ({marks})",
                [_clip(k, v) for k, v in values.items()],
            )
        except DuplicateError:
            return False
        call.id = cursor.lastrowid
        call.next_attempt_at = values["next_attempt_at"]  # type: ignore[assignment]
        return True

    def begin_attempt(self, call: CallRecord, *, next_attempt_at: datetime) -> bool:
        """Count one more delivery attempt *before* it is made; False when another process got there first.

        The row must still be ``pending`` with the attempts this process read, so two
        retries (or a retry and a late detector) never mail the same call at once, and
        a crash after the mail left costs at most the attempts left, never a loop.
        """
        cursor = self._execute(
            "UPDATE missedcall_calls SET attempts = attempts + 1, next_attempt_at = ?"
            " WHERE callid = ? AND status = 'pending' AND attempts = ?",
            (next_attempt_at, call.callid, call.attempts),
        )
        if cursor.rowcount != 1:
            return False
        call.attempts += 1
        call.next_attempt_at = next_attempt_at
        return True

    def due_calls(self, now: datetime, *, limit: int = 1000) -> list[CallRecord]:
        """Pending calls whose back-off (or claim lease) is over, oldest first."""
        return self._select_calls(
            "WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            f" ORDER BY id LIMIT {int(limit)}",
            (now,),
        )

    def update_call(self, callid: str, **fields: Any) -> None:
        unknown = set(fields) - set(CALL_COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}")
        if "recipients" in fields and not isinstance(fields["recipients"], str):
            fields["recipients"] = ",".join(fields["recipients"])
        if "path" in fields and not isinstance(fields["path"], str):
            fields["path"] = " > ".join(fields["path"])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._execute(
            f"UPDATE missedcall_calls SET {assignments} WHERE callid = ?",
            [*(_clip(k, v) for k, v in fields.items()), callid],
        )

    def get_call(self, callid: str) -> CallRecord | None:
        calls = self._select_calls("WHERE callid = ?", (callid,))
        return calls[0] if calls else None

    def calls(
        self,
        *,
        since: datetime | None = None,
        queue: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[CallRecord]:
        """Newest first; ``since`` filters on the call's own time (when it ended, else entered)."""
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("COALESCE(ended_at, entered_at) >= ?")
            params.append(since)
        if queue is not None:
            clauses.append("queue = ?")
            params.append(queue)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        tail = " ORDER BY COALESCE(ended_at, entered_at) DESC, id DESC"
        if limit is not None:
            tail += f" LIMIT {int(limit)}"
        return self._select_calls(where + tail, params)

    def _select_calls(self, clause: str, params: Iterable[Any]) -> list[CallRecord]:
        rows = self._rows(f"SELECT {', '.join(CALL_COLUMNS)} FROM missedcall_calls {clause}", tuple(params))
        return [_call_from_row(dict(zip(CALL_COLUMNS, row))) for row in rows]


def _call_from_row(row: dict[str, Any]) -> CallRecord:
    return CallRecord(
        id=row["id"],
        callid=row["callid"],
        linkedid=row["linkedid"] or "",
        queue=row["queue"],
        path=tuple(p for p in (row["path"] or "").split(" > ") if p),
        caller_num=row["caller_num"] or "",
        caller_name=row["caller_name"] or "",
        reason=row["reason"],
        wait_seconds=row["wait_seconds"],
        position=row["position"],
        entered_at=_from_db(row["entered_at"]),
        ended_at=_from_db(row["ended_at"]),
        source=row["source"],
        status=row["status"],
        attempts=int(row["attempts"] or 0),
        last_error=row["last_error"] or "",
        recipients=tuple(a for a in (row["recipients"] or "").split(",") if a),
        notified_at=_from_db(row["notified_at"]),
        next_attempt_at=_from_db(row["next_attempt_at"]),
        extra={"did": row["did"]} if row["did"] else {},
    )


class DuplicateError(StorageError):
    """A unique key refused the row."""


class ConflictError(StorageError):
    """InnoDB chose this transaction as a deadlock victim (or it waited too long for a lock): run it again."""


class BusyError(StorageError):
    """The server is there but has no room right now (too many connections): worth another try."""


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
