"""The storm-control tables, ``missedcall_flood`` and ``missedcall_held``: every query on them.

The rule (who gets a single mail, who waits for a digest) is
missedcall.deliver.flood's; this module only reads and writes its state. A
``missedcall_flood`` row is one address's counting window; a
``missedcall_held`` row is one (call, address) that waits for that address's
digest, leased by ``retry`` while the digest is being sent.
"""

from __future__ import annotations

from datetime import datetime, timezone

from missedcall.record.model import db_time
from missedcall.record.storage import Store
from missedcall.slots import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Sequence

#: "No window yet" (1970-01-01 underflows some zones).
EPOCH = datetime(1970, 1, 2, tzinfo=timezone.utc)
#: Rows changed per statement at most (SQLite's limit on parameters is 999 in old builds).
_CHUNK = 500


class Window(Frozen):
    __slots__ = ("start", "sent")  # noqa: RUF023

    def __init__(self, start: datetime, sent: int) -> None:
        self._set(start=start, sent=sent)


def _insert_ignore(store: Store) -> str:
    return "INSERT IGNORE" if store.kind == "mysql" else "INSERT OR IGNORE"


def _chunks(items: Sequence[str]) -> list[list[str]]:
    return [list(items[i : i + _CHUNK]) for i in range(0, len(items), _CHUNK)]


def ensure_windows(store: Store, keys: Sequence[str]) -> None:
    """Make sure every address has a window row (outside a transaction: see flood.reserve)."""
    if keys:
        store.execute(
            f"{_insert_ignore(store)} INTO missedcall_flood (email, window_start, sent) VALUES "
            + ", ".join("(?, ?, 0)" for _ in keys),
            [value for key in keys for value in (key, EPOCH)],
        )


def lock_windows(store: Store, keys: Sequence[str]) -> dict[str, Window]:
    """The windows of ``keys``, locked for this transaction, read in key order (no deadlock between callers)."""
    marks = ", ".join("?" for _ in keys)
    lock = " FOR UPDATE" if store.kind == "mysql" else ""  # SQLite: BEGIN IMMEDIATE already serialises
    rows = store.rows(
        f"SELECT email, window_start, sent FROM missedcall_flood WHERE email IN ({marks}) ORDER BY email{lock}",
        sorted(keys),
    )
    return {str(r[0]): Window(db_time(r[1]) or EPOCH, int(r[2] or 0)) for r in rows}


def set_window(store: Store, key: str, start: datetime, sent: int) -> None:
    store.execute("UPDATE missedcall_flood SET window_start = ?, sent = ? WHERE email = ?", (start, sent, key))


def hold(store: Store, callid: str, email: str, now: datetime, due_at: datetime, kind: str = "") -> None:
    """``kind``: "" for storm control, "hours" for a call that came while the queue was closed."""
    store.execute(
        f"{_insert_ignore(store)} INTO missedcall_held (callid, email, held_at, due_at, kind) VALUES (?, ?, ?, ?, ?)",
        (callid, email, now, due_at, kind),
    )


def held_addresses(store: Store, callid: str) -> list[str]:
    """Every address this call was held for (whatever became of its digest)."""
    return [str(r[0]) for r in store.rows("SELECT email FROM missedcall_held WHERE callid = ?", (callid,))]


def waiting(store: Store, callid: str) -> int:
    """How many of this call's digests have not gone yet."""
    rows = store.rows("SELECT COUNT(*) FROM missedcall_held WHERE callid = ? AND status = 'held'", (callid,))
    return int(rows[0][0]) if rows else 0


def count(store: Store) -> int:
    rows = store.rows("SELECT COUNT(*) FROM missedcall_held")
    return int(rows[0][0]) if rows else 0


def due_addresses(store: Store, now: datetime) -> list[str]:
    rows = store.rows(
        "SELECT DISTINCT email FROM missedcall_held WHERE status = 'held' AND due_at <= ? ORDER BY email", (now,)
    )
    return [str(r[0]) for r in rows]


def lease(store: Store, email: str, token: str, now: datetime, until: datetime) -> list[tuple[str, int, str]]:
    """Lease this address's due held rows to ``token``; their (callid, attempts, kind), [] when another took them."""
    cursor = store.execute(
        "UPDATE missedcall_held SET lease = ?, attempts = attempts + 1, due_at = ?"
        " WHERE email = ? AND status = 'held' AND due_at <= ?",
        (token, until, email, now),
    )
    if not cursor.rowcount:
        return []
    rows = store.rows(
        "SELECT callid, attempts, kind FROM missedcall_held WHERE lease = ? AND email = ? ORDER BY held_at, callid",
        (token, email),
    )
    return [(str(r[0]), int(r[1]), str(r[2] or "")) for r in rows]


def mark_sent(store: Store, email: str, token: str, now: datetime) -> None:
    store.execute(
        "UPDATE missedcall_held SET status = 'sent', sent_at = ?, last_error = '' WHERE lease = ? AND email = ?",
        (now, token, email),
    )


def mark_failed(store: Store, email: str, token: str, callids: Sequence[str], error: str, *, give_up: bool,
                retry_at: datetime) -> None:  # fmt: skip
    """A digest that did not go: due again at ``retry_at``, or given up (its held calls become ``failed``)."""
    store.execute(
        "UPDATE missedcall_held SET status = ?, last_error = ?, due_at = ? WHERE lease = ? AND email = ?",
        ("failed" if give_up else "held", error[:512], retry_at, token, email),
    )
    if give_up:
        for part in _chunks(callids):
            marks = ", ".join("?" for _ in part)
            store.execute(
                f"UPDATE missedcall_calls SET status = 'failed', last_error = ? WHERE status = 'held'"
                f" AND callid IN ({marks})",
                [f"digest to {email} failed: {error}"[:512], *part],
            )


def finish(store: Store, callids: Sequence[str], now: datetime) -> int:
    """Held calls with no digest left waiting become ``sent``; returns how many did."""
    done = 0
    for part in _chunks(callids):
        marks = ", ".join("?" for _ in part)
        cursor = store.execute(
            "UPDATE missedcall_calls SET status = 'sent', notified_at = COALESCE(notified_at, ?)"
            f" WHERE status = 'held' AND callid IN ({marks}) AND NOT EXISTS"
            " (SELECT 1 FROM missedcall_held h WHERE h.callid = missedcall_calls.callid AND h.status = 'held')",
            [now, *part],
        )
        done += max(0, cursor.rowcount or 0)
    return done


def requeue_failed(store: Store, now: datetime) -> int:
    """Failed digests due again now, and their calls back to ``held``; returns how many rows changed."""
    cursor = store.execute(
        "UPDATE missedcall_held SET status = 'held', attempts = 0, due_at = ?, last_error = '' WHERE status = 'failed'",
        (now,),
    )
    changed = max(0, cursor.rowcount or 0)
    # The call's own mail went; only a digest failed: it waits for that digest again.
    cursor = store.execute(
        "UPDATE missedcall_calls SET status = 'held' WHERE status = 'failed' AND notified_at IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM missedcall_held h WHERE h.callid = missedcall_calls.callid"
        " AND h.status = 'held')"
    )
    return changed + max(0, cursor.rowcount or 0)


def failed_digests(store: Store, limit: int = 5) -> list[tuple[str, int, str]]:
    """(address, calls, reason) of digests given up, for doctor."""
    rows = store.rows(
        "SELECT email, COUNT(*), MAX(last_error) FROM missedcall_held WHERE status = 'failed'"
        f" GROUP BY email ORDER BY email LIMIT {int(limit)}"
    )
    return [(str(r[0]), int(r[1]), str(r[2] or "")) for r in rows]
