"""The queries the product needs, on MariaDB and SQLite alike: schema, state, recipients, calls.

Every module outside missedcall.record asks :class:`Store` for what it needs and
never writes SQL of its own; the storm-control tables are queried by
missedcall.record.held. The row and JSON forms of a call live in
missedcall.record.model, the tables in missedcall.record.schema, the
connection in missedcall.record.db.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from missedcall.record.db import Database, DuplicateError, StorageError
from missedcall.record.model import (
    CALL_COLUMNS,
    CallRecord,
    Recipient,
    db_time,
    from_row,
    row_fields,
    to_row,
    utcnow,
)
from missedcall.record.schema import ADDED_COLUMNS, ADDED_INDEXES, DROPPED_INDEXES, SCHEMA_VERSION

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["CLAIM_LEASE", "Store"]

#: Seconds a fresh claim keeps ``retry`` away from a call, so that the detector that claimed
#: it (the AGI: 3 s at most; the sweeper: one relay timeout) sends it alone. Longer than
#: spool.SETTLE, so a retry imports a spooled copy of a call before it may resend its row.
CLAIM_LEASE = 60


class Store(Database):
    """One open connection and the queries the product needs."""

    # -- schema ------------------------------------------------------------

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
        self.create_tables()
        for table, column, mysql_type, sqlite_type in ADDED_COLUMNS:
            if not self.has_column(table, column):
                try:
                    self.execute(
                        f"ALTER TABLE {table} ADD COLUMN {column} {mysql_type if self.kind == 'mysql' else sqlite_type}"
                    )
                except StorageError:
                    if not self.has_column(table, column):  # not another process's ALTER winning the race
                        raise
        for name, table, columns in ADDED_INDEXES:
            self._index_to_be(name, table, present=True, statement=f"CREATE INDEX {name} ON {table} ({columns})")
        for name, table in DROPPED_INDEXES:
            on = f" ON {table}" if self.kind == "mysql" else ""
            self._index_to_be(name, table, present=False, statement=f"DROP INDEX {name}{on}")
        if before is None or before < SCHEMA_VERSION:
            self.set_state("schema_version", str(SCHEMA_VERSION))
        return before, max(before or 0, SCHEMA_VERSION)

    def has_column(self, table: str, column: str) -> bool:
        if self.kind == "sqlite":
            return any(row[1] == column for row in self.rows(f"PRAGMA table_info({table})"))
        rows = self.rows(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?"
            " AND column_name = ?",
            (table, column),
        )
        return bool(rows)

    def _index_to_be(self, name: str, table: str, *, present: bool, statement: str) -> None:
        """Run ``statement`` unless index ``name`` already is (``present``) or is not; looked up rather than
        "IF [NOT] EXISTS", which MariaDB parses only since 10.1.4 (older FreePBX distributions ship older
        servers). A failure is another init winning the race when the index ends up as wanted."""
        if (name in self.index_names(table)) == present:
            return
        try:
            self.execute(statement)
        except StorageError:
            if (name in self.index_names(table)) != present:
                raise

    def index_names(self, table: str) -> set[str]:
        """The names of ``table``'s indexes (SQLite's automatic ones included)."""
        if self.kind == "sqlite":
            rows = self.rows("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,))
        else:
            rows = self.rows(
                "SELECT DISTINCT index_name FROM information_schema.statistics"
                " WHERE table_schema = DATABASE() AND table_name = ?",
                (table,),
            )
        return {str(row[0]) for row in rows}

    def table_exists(self, name: str) -> bool:
        if self.kind == "sqlite":
            rows = self.rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        else:
            rows = self.rows(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
                (name,),
            )
        return bool(rows)

    # -- state -------------------------------------------------------------

    def get_state(self, name: str) -> str | None:
        rows = self.rows("SELECT value FROM missedcall_state WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def answers(self) -> bool:
        """Does the database still answer? (Then an error on one item was that item's, not the database's.)"""
        try:
            self.get_state("schema_version")
        except StorageError:
            return False
        return True

    def set_state(self, name: str, value: str) -> None:
        if self.kind == "sqlite":
            # Not an UPSERT (SQLite 3.24+): CentOS 7's SQLite is 3.7.17, and for a row that is only its key
            # and one value, REPLACE is the same.
            sql = "INSERT OR REPLACE INTO missedcall_state (name, value) VALUES (?, ?)"
        else:
            sql = (
                "INSERT INTO missedcall_state (name, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value)"
            )
        self.execute(sql, (name, value))

    # -- recipients --------------------------------------------------------

    def recipients(self, queue: str | None = None) -> list[Recipient]:
        sql = "SELECT id, queue, email, name, created_at FROM missedcall_recipients"
        params: tuple[str, ...] = ()
        if queue is not None:
            sql += " WHERE queue = ?"
            params = (queue,)
        rows = self.rows(sql + " ORDER BY queue, email", params)
        return [Recipient(id=r[0], queue=r[1], email=r[2], name=r[3] or "", created_at=db_time(r[4])) for r in rows]

    def recipient_rows(self) -> list[tuple[str, str]]:
        """Every (queue, email) row in the table's order: one query, whatever the queue."""
        return [(str(q), str(e)) for q, e in self.rows("SELECT queue, email FROM missedcall_recipients ORDER BY id")]

    def _same_email(self) -> str:
        # MariaDB's utf8mb4_general_ci compares addresses without case, SQLite's default does not: both the same.
        return "email = ? COLLATE NOCASE" if self.kind == "sqlite" else "email = ?"

    def add_recipient(self, queue: str, email: str, name: str = "") -> bool:
        """False when the (queue, email) pair is already there (the address compared without case)."""
        if self.kind == "sqlite" and self.rows(
            f"SELECT 1 FROM missedcall_recipients WHERE queue = ? AND {self._same_email()}", (queue, email)
        ):
            return False
        try:
            self.execute(
                "INSERT INTO missedcall_recipients (queue, email, name, created_at) VALUES (?, ?, ?, ?)",
                (queue, email, name, utcnow()),
            )
        except DuplicateError:
            return False
        return True

    def remove_recipient(self, queue: str, email: str) -> bool:
        cursor = self.execute(
            f"DELETE FROM missedcall_recipients WHERE queue = ? AND {self._same_email()}", (queue, email)
        )
        return bool(cursor.rowcount)

    # -- FreePBX -----------------------------------------------------------

    def freepbx_queues(self) -> dict[str, str] | None:
        """FreePBX ``queues_config`` as {queue: label}; None when this database has no such table."""
        if self.kind != "mysql" or not self.table_exists("queues_config"):
            return None
        rows = self.rows("SELECT extension, descr FROM queues_config ORDER BY extension")
        return {str(r[0]): str(r[1] or "") for r in rows}

    def queue_label(self, queue: str) -> str:
        """The queue's description from FreePBX, or "" (one query, no table check first)."""
        if self.kind != "mysql":
            return ""
        try:
            rows = self.rows("SELECT descr FROM queues_config WHERE extension = ?", (queue,))
        except StorageError:
            return ""  # not a FreePBX database: no labels
        return str(rows[0][0] or "") if rows else ""

    # -- calls -------------------------------------------------------------

    def claim_call(self, call: CallRecord) -> bool:
        """Insert the call; False when that callid is already recorded (someone else owns it)."""
        values = to_row(call)
        # Every claim starts with a lease: retry leaves the call to its claimer for a while.
        values["next_attempt_at"] = call.next_attempt_at or utcnow() + timedelta(seconds=CLAIM_LEASE)
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        try:
            cursor = self.execute(
                f"INSERT INTO missedcall_calls ({columns}) VALUES ({marks})",
                list(values.values()),
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
        cursor = self.execute(
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
        fields = row_fields(fields)
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self.execute(
            f"UPDATE missedcall_calls SET {assignments} WHERE callid = ?",
            [*fields.values(), callid],
        )

    def get_call(self, callid: str) -> CallRecord | None:
        calls = self._select_calls("WHERE callid = ?", (callid,))
        return calls[0] if calls else None

    def calls(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        queue: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[CallRecord]:
        """Newest first; ``since`` (inclusive) and ``until`` (exclusive) filter on the call's own time
        (when it ended, else entered)."""
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("COALESCE(ended_at, entered_at) >= ?")
            params.append(since)
        if until is not None:
            clauses.append("COALESCE(ended_at, entered_at) < ?")
            params.append(until)
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

    def calls_by_ids(self, callids: Iterable[str]) -> list[CallRecord]:
        """These calls (the unknown ones left out), oldest first."""
        wanted = list(callids)
        found: list[CallRecord] = []
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ", ".join("?" for _ in part)
            found += self._select_calls(f"WHERE callid IN ({marks}) ORDER BY COALESCE(ended_at, entered_at), id", part)
        return found

    def open_misses(self, caller_key: str, since: datetime, until: datetime, *, exclude: str,
                    limit: int = 20) -> list[CallRecord]:  # fmt: skip
        """The caller's still open misses that ended in [since, until], oldest first, ``exclude`` left out:
        the thread a repeat miss joins. One query on the (caller_key, resolution, ended_at) index; the hook runs it."""
        return self._select_calls(
            "WHERE caller_key = ? AND ended_at >= ? AND ended_at <= ? AND resolution = '' AND callid <> ?"
            f" ORDER BY ended_at, id LIMIT {int(limit)}",
            (caller_key, since, until, exclude),
        )

    def requeue_unsent(self, now: datetime) -> int:
        """Failed calls whose own mail never went start again from scratch; returns how many."""
        cursor = self.execute(
            "UPDATE missedcall_calls SET status = 'pending', attempts = 0, next_attempt_at = ?"
            " WHERE status = 'failed' AND notified_at IS NULL",
            (now,),
        )
        return max(0, cursor.rowcount or 0)

    def status_counts(self) -> dict[str, int]:
        """{status: calls} over the whole table."""
        return {str(s): int(n) for s, n in self.rows("SELECT status, COUNT(*) FROM missedcall_calls GROUP BY status")}

    def overdue(self, before: datetime) -> int:
        """Pending calls that were due before ``before`` (retry is not running, or cannot keep up)."""
        rows = self.rows(
            "SELECT COUNT(*) FROM missedcall_calls WHERE status = 'pending' AND next_attempt_at < ?", (before,)
        )
        return int(rows[0][0]) if rows else 0

    # -- uninstall ---------------------------------------------------------

    def own_tables(self) -> list[str]:
        """The missedcall_* tables this database has, from its catalogue."""
        if self.kind == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        else:
            sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        return sorted(name for name in (str(row[0]) for row in self.rows(sql)) if name.startswith("missedcall_"))

    def drop_own_tables(self) -> list[str]:
        """Drop every missedcall_* table (uninstall --purge); returns their names."""
        tables = self.own_tables()
        if tables and self.kind == "mysql":
            self.execute("SET FOREIGN_KEY_CHECKS = 0")
        for table in tables:
            # Names come from the catalogue and start with missedcall_: safe to quote into the statement.
            self.execute(f'DROP TABLE IF EXISTS "{table}"' if self.kind == "sqlite" else f"DROP TABLE `{table}`")
        return tables

    def _select_calls(self, clause: str, params: Iterable[Any]) -> list[CallRecord]:
        rows = self.rows(f"SELECT {', '.join(CALL_COLUMNS)} FROM missedcall_calls {clause}", tuple(params))
        return [from_row(row) for row in rows]
