"""Storm control: at most MISSEDCALL_FLOOD_LIMIT single mails per recipient per MISSEDCALL_FLOOD_WINDOW.

The decision is per recipient *address*, not per call: in a storm the manager
who is a ``*`` copy of every queue hits the limit long before a queue's own
team does, and the team must keep getting its mails one by one.

Counting uses fixed windows, one per address (``missedcall_flood``): a window
opens with the first single mail after the previous one closed and lasts
WINDOW minutes; the first LIMIT calls in it are mailed singly, every further
call is *held* for that address (a ``missedcall_held`` row, due when the
window ends). ``retry`` sends each address one digest listing all its held
calls once they are due. So within one window an address gets at most
LIMIT + 1 mails, and every call is in exactly one of them. A call keeps the
status ``held`` until every digest it is in has gone (then ``sent``).

:func:`decide` is the pure rule; :func:`reserve` applies it atomically for
all addresses of one call (row locks on MariaDB, the single writer lock on
SQLite), so 200 processes at once cannot all slip under the limit. The SQL
here uses the Store's query helpers directly: these two tables belong to
this module alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from missedcall.record.model import CallRecord, db_time, utcnow
from missedcall.record.storage import ConflictError, StorageError, Store

_EPOCH = datetime(1970, 1, 2, tzinfo=timezone.utc)  # "no window yet" (1970-01-01 underflows some zones)


@dataclass(frozen=True)
class Decision:
    single: bool
    window_start: datetime
    sent: int
    due_at: datetime  # when this window's digest goes (meaningful when not single)


def decide(window_start: datetime, sent: int, now: datetime, *, limit: int, window_minutes: int) -> Decision:
    """May one more single mail go to an address whose window opened at ``window_start`` with ``sent`` mails?"""
    length = timedelta(minutes=window_minutes)
    if now >= window_start + length or now < window_start:  # closed (or a clock step back): a new window
        return Decision(True, now, 1, now + length)
    if sent < limit:
        return Decision(True, window_start, sent + 1, window_start + length)
    return Decision(False, window_start, sent, window_start + length)


@dataclass(frozen=True)
class Split:
    single: list[str]  # addresses mailed on their own now
    held: list[str]  # addresses that get this call in their digest


def reserve(store: Store, call: CallRecord, addresses: Sequence[str], *, limit: int, window_minutes: int,
            now: datetime | None = None) -> Split:  # fmt: skip
    """Split one call's addresses into single mails and digest entries, counting the single ones.

    Idempotent per call: an address already held for this call stays held (a retry
    after a crash must not mail it singly as well).
    """
    now = now or utcnow()
    if not addresses:
        return Split([], [])
    by_key: dict[str, str] = {}
    for address in addresses:
        by_key.setdefault(address.lower(), address)
    keys = sorted(by_key)
    # A row must exist before it can be locked; creating it inside the transaction would take
    # gap locks on MariaDB, which deadlock when two calls create the same address at once.
    store.execute(
        f"{_insert_ignore(store)} INTO missedcall_flood (email, window_start, sent) VALUES "
        + ", ".join("(?, ?, 0)" for _ in keys),
        [value for key in keys for value in (key, _EPOCH)],
    )
    for attempt in range(4):
        try:
            decided = _decide_all(store, call, by_key, now, limit=limit, window_minutes=window_minutes)
            break
        except ConflictError:  # a deadlock victim: InnoDB rolled the transaction back, so run it again
            if attempt == 3:
                raise
            time.sleep(0.02 * (attempt + 1))
    # Back in the call's order, which is the order of its To header.
    return Split(
        [a for a in addresses if decided.get(a.lower()) is True and by_key[a.lower()] == a],
        [a for a in addresses if decided.get(a.lower()) is False and by_key[a.lower()] == a],
    )


def _insert_ignore(store: Store) -> str:
    return "INSERT IGNORE" if store.kind == "mysql" else "INSERT OR IGNORE"


def _decide_all(
    store: Store, call: CallRecord, by_key: dict[str, str], now: datetime, *, limit: int, window_minutes: int
) -> dict[str, bool]:
    """One transaction: {lower-case address: True for a single mail, False for held}."""
    decided: dict[str, bool] = {}
    keys = sorted(by_key)
    marks = ", ".join("?" for _ in keys)
    lock = " FOR UPDATE" if store.kind == "mysql" else ""  # SQLite: BEGIN IMMEDIATE already serialises
    with store.transaction():
        already = {
            str(row[0]).lower()
            for row in store.rows("SELECT email FROM missedcall_held WHERE callid = ?", (call.callid,))
        }
        # One locking read in key order: every process locks addresses in the same order.
        rows = store.rows(
            f"SELECT email, window_start, sent FROM missedcall_flood WHERE email IN ({marks}) ORDER BY email{lock}",
            keys,
        )
        state = {str(r[0]): (db_time(r[1]) or _EPOCH, int(r[2] or 0)) for r in rows}
        for key in keys:
            if key in already:
                decided[key] = False
                continue
            start, sent = state.get(key, (_EPOCH, 0))
            decision = decide(start, sent, now, limit=limit, window_minutes=window_minutes)
            if decision.single:
                store.execute(
                    "UPDATE missedcall_flood SET window_start = ?, sent = ? WHERE email = ?",
                    (decision.window_start, decision.sent, key),
                )
            else:
                store.execute(
                    f"{_insert_ignore(store)} INTO missedcall_held (callid, email, held_at, due_at)"
                    " VALUES (?, ?, ?, ?)",
                    (call.callid, by_key[key], now, decision.due_at),
                )
            decided[key] = decision.single
    return decided


def held_addresses(store: Store, callid: str) -> list[str]:
    """Every address this call was held for (whatever became of its digest)."""
    return [str(r[0]) for r in store.rows("SELECT email FROM missedcall_held WHERE callid = ?", (callid,))]


def waiting(store: Store, callid: str) -> int:
    """How many of this call's digests have not gone yet."""
    rows = store.rows("SELECT COUNT(*) FROM missedcall_held WHERE callid = ? AND status = 'held'", (callid,))
    return int(rows[0][0]) if rows else 0


# --- digests (sent by retry) -----------------------------------------------------------------


@dataclass
class Batch:
    """One address's due held calls, leased to this process by ``token``."""

    email: str
    token: str
    callids: list[str]
    attempts: int


def due_addresses(store: Store, now: datetime) -> list[str]:
    rows = store.rows(
        "SELECT DISTINCT email FROM missedcall_held WHERE status = 'held' AND due_at <= ? ORDER BY email", (now,)
    )
    return [str(r[0]) for r in rows]


def lease(store: Store, email: str, now: datetime, until: datetime) -> Batch | None:
    """Take this address's due held rows for one digest; None when another retry took them first."""
    token = os.urandom(8).hex()  # not secrets: this module is on the AGI's import path (see spool.atomic_write)
    cursor = store.execute(
        "UPDATE missedcall_held SET lease = ?, attempts = attempts + 1, due_at = ?"
        " WHERE email = ? AND status = 'held' AND due_at <= ?",
        (token, until, email, now),
    )
    if not cursor.rowcount:
        return None
    rows = store.rows(
        "SELECT callid, attempts FROM missedcall_held WHERE lease = ? AND email = ? ORDER BY held_at, callid",
        (token, email),
    )
    if not rows:
        return None
    return Batch(email=email, token=token, callids=[str(r[0]) for r in rows], attempts=max(int(r[1]) for r in rows))


def calls(store: Store, callids: Iterable[str]) -> list[CallRecord]:
    wanted = list(callids)
    found: list[CallRecord] = []
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        marks = ", ".join("?" for _ in part)
        found += store._select_calls(f"WHERE callid IN ({marks}) ORDER BY COALESCE(ended_at, entered_at), id", part)
    return found


def digest_sent(store: Store, batch: Batch, now: datetime) -> int:
    """Mark the batch sent; calls with no digest left waiting become ``sent``. Returns how many did."""
    store.execute(
        "UPDATE missedcall_held SET status = 'sent', sent_at = ?, last_error = '' WHERE lease = ? AND email = ?",
        (now, batch.token, batch.email),
    )
    return _finish(store, batch.callids, now)


def digest_failed(store: Store, batch: Batch, error: str, *, give_up: bool, retry_at: datetime) -> None:
    """Record a digest that did not go: tried again at ``retry_at``, or given up (its held calls fail)."""
    store.execute(
        "UPDATE missedcall_held SET status = ?, last_error = ?, due_at = ? WHERE lease = ? AND email = ?",
        ("failed" if give_up else "held", error[:512], retry_at, batch.token, batch.email),
    )
    if give_up:
        for start in range(0, len(batch.callids), 500):
            part = batch.callids[start : start + 500]
            marks = ", ".join("?" for _ in part)
            store.execute(
                f"UPDATE missedcall_calls SET status = 'failed', last_error = ? WHERE status = 'held'"
                f" AND callid IN ({marks})",
                [f"digest to {batch.email} failed: {error}"[:512], *part],
            )


def _finish(store: Store, callids: Sequence[str], now: datetime) -> int:
    done = 0
    for start in range(0, len(callids), 500):
        part = list(callids[start : start + 500])
        marks = ", ".join("?" for _ in part)
        cursor = store.execute(
            "UPDATE missedcall_calls SET status = 'sent', notified_at = COALESCE(notified_at, ?)"
            f" WHERE status = 'held' AND callid IN ({marks}) AND NOT EXISTS"
            " (SELECT 1 FROM missedcall_held h WHERE h.callid = missedcall_calls.callid AND h.status = 'held')",
            [now, *part],
        )
        done += max(0, cursor.rowcount or 0)
    return done


def finish_if_done(store: Store, callid: str, now: datetime) -> bool:
    """A held call whose single mail and digests have all gone becomes ``sent``."""
    try:
        return _finish(store, [callid], now) > 0
    except StorageError:
        return False
