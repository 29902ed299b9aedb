"""Follow-ups on their way: every query on ``missedcall_followups`` and on the calls' ``followup`` column.

A call whose miss was resolved gets ``followup = 'pending'`` (the resolver sets
it); missedcall.deliver.followup mails one follow-up per thread (keyed by the
thread's first callid) and sets the column to ``sent`` or ``failed``. The
``missedcall_followups`` row keeps what a retry needs: the attempts (counted
before each send, which is also the lock between two retries), the back-off,
the last error, the addresses storm control made wait (``waiting``) and those
it let through but whose mail has not gone yet (``granted``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from missedcall.record.db import DuplicateError
from missedcall.record.model import CALL_COLUMNS, CallRecord, db_time, from_row
from missedcall.record.storage import Store

_CHUNK = 500


@dataclass
class State:
    key: str  # the thread's first callid
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str = ""
    waiting: tuple[str, ...] = ()
    granted: tuple[str, ...] = ()


def _split(value: object) -> tuple[str, ...]:
    return tuple(a for a in str(value or "").split(",") if a)


def due(store: Store, now: datetime, *, limit: int = 1000) -> list[CallRecord]:
    """Calls whose follow-up is pending and due (no row yet, or its back-off over), oldest first."""
    columns = ", ".join(f"c.{name}" for name in CALL_COLUMNS)
    rows = store.rows(
        f"SELECT {columns} FROM missedcall_calls c LEFT JOIN missedcall_followups f"
        " ON f.callid = (CASE WHEN c.thread_of <> '' THEN c.thread_of ELSE c.callid END)"
        " WHERE c.followup = 'pending' AND (f.next_attempt_at IS NULL OR f.next_attempt_at <= ?)"
        f" ORDER BY c.id LIMIT {int(limit)}",
        (now,),
    )
    return [from_row(row) for row in rows]


def get(store: Store, key: str) -> State | None:
    rows = store.rows(
        "SELECT attempts, next_attempt_at, last_error, waiting, granted FROM missedcall_followups WHERE callid = ?",
        (key,),
    )
    if not rows:
        return None
    attempts, next_at, error, waiting, granted = rows[0]
    return State(key, int(attempts or 0), db_time(next_at), str(error or ""), _split(waiting), _split(granted))


def start(store: Store, key: str, addresses: Sequence[str]) -> State:
    """The follow-up's row, created with every address waiting when there is none yet."""
    try:
        store.execute(
            "INSERT INTO missedcall_followups (callid, attempts, waiting, granted) VALUES (?, 0, ?, '')",
            (key, ",".join(addresses)),
        )
    except DuplicateError:
        pass  # another retry made it first
    state = get(store, key)
    assert state is not None
    return state


def begin_attempt(store: Store, state: State, next_attempt_at: datetime, now: datetime) -> bool:
    """Count one more attempt before it is made; False when another process counted this one first.

    The row must still be due: the process that counts an attempt also moves ``next_attempt_at`` ahead,
    so another retry that read the same row a moment earlier finds it taken, not due again."""
    cursor = store.execute(
        "UPDATE missedcall_followups SET attempts = attempts + 1, next_attempt_at = ?"
        " WHERE callid = ? AND attempts = ? AND (next_attempt_at IS NULL OR next_attempt_at <= ?)",
        (next_attempt_at, state.key, state.attempts, now),
    )
    if cursor.rowcount != 1:
        return False
    state.attempts += 1
    state.next_attempt_at = next_attempt_at
    return True


def save(store: Store, state: State) -> None:
    store.execute(
        "UPDATE missedcall_followups SET attempts = ?, next_attempt_at = ?, last_error = ?, waiting = ?, granted = ?"
        " WHERE callid = ?",
        (state.attempts, state.next_attempt_at, state.last_error[:512], ",".join(state.waiting),
         ",".join(state.granted), state.key),
    )  # fmt: skip


def finish(store: Store, state: State, callids: Sequence[str], status: str, now: datetime) -> None:
    """The thread's follow-up is over (``sent`` or ``failed``): its calls say so, its row keeps the reason."""
    store.execute(
        "UPDATE missedcall_followups SET last_error = ?, waiting = ?, granted = ?, sent_at = ? WHERE callid = ?",
        (state.last_error[:512], ",".join(state.waiting), ",".join(state.granted),
         now if status == "sent" else None, state.key),
    )  # fmt: skip
    set_state(store, callids, status)


def set_state(store: Store, callids: Sequence[str], status: str) -> None:
    """These calls' follow-up becomes ``status`` (only where it is still pending: never undo a sent one)."""
    for start_at in range(0, len(callids), _CHUNK):
        part = list(callids[start_at : start_at + _CHUNK])
        marks = ", ".join("?" for _ in part)
        store.execute(
            f"UPDATE missedcall_calls SET followup = ? WHERE followup = 'pending' AND callid IN ({marks})",
            [status, *part],
        )


def switch_off(store: Store) -> int:
    """MISSEDCALL_FOLLOWUP=off: every pending follow-up becomes ``off``; returns how many."""
    cursor = store.execute("UPDATE missedcall_calls SET followup = 'off' WHERE followup = 'pending'")
    return max(0, cursor.rowcount or 0)


def failed(store: Store, limit: int = 5) -> list[tuple[str, str]]:
    """(thread key, reason) of follow-ups given up, newest first, for doctor and tests."""
    rows = store.rows(
        "SELECT f.callid, f.last_error FROM missedcall_followups f WHERE EXISTS (SELECT 1 FROM missedcall_calls c"
        " WHERE c.callid = f.callid AND c.followup = 'failed')"
        f" ORDER BY f.next_attempt_at DESC LIMIT {int(limit)}"
    )
    return [(str(r[0]), str(r[1] or "")) for r in rows]


def requeue_failed(store: Store, now: datetime) -> int:
    """``retry --failed``: failed follow-ups are tried again from scratch; returns how many calls changed."""
    store.execute(
        "UPDATE missedcall_followups SET attempts = 0, next_attempt_at = ?, last_error = '' WHERE EXISTS"
        " (SELECT 1 FROM missedcall_calls c WHERE c.followup = 'failed' AND c.callid = missedcall_followups.callid)",
        (now,),
    )
    cursor = store.execute("UPDATE missedcall_calls SET followup = 'pending' WHERE followup = 'failed'")
    return max(0, cursor.rowcount or 0)
