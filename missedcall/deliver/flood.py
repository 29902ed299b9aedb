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
SQLite), so 200 processes at once cannot all slip under the limit. The tables'
queries live in missedcall.record.held.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

from missedcall.record import held
from missedcall.record.db import ConflictError
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.storage import Store
from missedcall.slots import Frozen, Value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


class Decision(Frozen):
    __slots__ = ("single", "window_start", "sent", "due_at")  # noqa: RUF023

    def __init__(self, single: bool, window_start: datetime, sent: int, due_at: datetime) -> None:
        # due_at: when this window's digest goes (meaningful when not single)
        self._set(single=single, window_start=window_start, sent=sent, due_at=due_at)


def decide(window_start: datetime, sent: int, now: datetime, *, limit: int, window_minutes: int) -> Decision:
    """May one more single mail go to an address whose window opened at ``window_start`` with ``sent`` mails?"""
    length = timedelta(minutes=window_minutes)
    if now >= window_start + length or now < window_start:  # closed (or a clock step back): a new window
        return Decision(True, now, 1, now + length)
    if sent < limit:
        return Decision(True, window_start, sent + 1, window_start + length)
    return Decision(False, window_start, sent, window_start + length)


class Split(Value):
    """``single``: addresses mailed on their own now; ``held``: those that get this call in their digest."""

    __slots__ = ("single", "held")  # noqa: RUF023

    def __init__(self, single: list[str], held: list[str]) -> None:
        object.__setattr__(self, "single", single)
        object.__setattr__(self, "held", held)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen Split")


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
    held.ensure_windows(store, keys)
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


def _decide_all(
    store: Store, call: CallRecord, by_key: dict[str, str], now: datetime, *, limit: int, window_minutes: int
) -> dict[str, bool]:
    """One transaction: {lower-case address: True for a single mail, False for held}."""
    decided: dict[str, bool] = {}
    with store.transaction():
        already = {a.lower() for a in held.held_addresses(store, call.callid)}
        windows = held.lock_windows(store, sorted(by_key))
        for key in sorted(by_key):
            if key in already:
                decided[key] = False
                continue
            window = windows.get(key, held.Window(held.EPOCH, 0))
            decision = decide(window.start, window.sent, now, limit=limit, window_minutes=window_minutes)
            if decision.single:
                held.set_window(store, key, decision.window_start, decision.sent)
            else:
                held.hold(store, call.callid, by_key[key], now, decision.due_at)
            decided[key] = decision.single
    return decided


def hold_until(store: Store, call: CallRecord, addresses: Sequence[str], due_at: datetime, *,
               now: datetime) -> None:  # fmt: skip
    """Hold ``call`` for every address until ``due_at`` (business hours: the queue's next opening), uncounted."""
    with store.transaction():
        for address in addresses:
            held.hold(store, call.callid, address, now, due_at, kind="hours")


def admit(store: Store, addresses: Sequence[str], *, limit: int, window_minutes: int,
          now: datetime | None = None) -> tuple[Split, datetime | None]:  # fmt: skip
    """Count one mail that is not a missed call (a follow-up) against the addresses' windows, holding nothing.

    Returns (the addresses it may go to now, counted; those whose window is full), and when the first
    of those windows closes: a follow-up waits for it rather than joining a digest.
    """
    now = now or utcnow()
    by_key: dict[str, str] = {}
    for address in addresses:
        by_key.setdefault(address.lower(), address)
    if not by_key:
        return Split([], []), None
    held.ensure_windows(store, sorted(by_key))
    for attempt in range(4):
        try:
            decided: dict[str, Decision] = {}
            with store.transaction():
                windows = held.lock_windows(store, sorted(by_key))
                for key in sorted(by_key):
                    window = windows.get(key, held.Window(held.EPOCH, 0))
                    decided[key] = decide(window.start, window.sent, now, limit=limit, window_minutes=window_minutes)
                    if decided[key].single:
                        held.set_window(store, key, decided[key].window_start, decided[key].sent)
            break
        except ConflictError:
            if attempt == 3:
                raise
            time.sleep(0.02 * (attempt + 1))
    waits = [d.due_at for d in decided.values() if not d.single]
    split = Split(
        [a for a in by_key.values() if decided[a.lower()].single],
        [a for a in by_key.values() if not decided[a.lower()].single],
    )
    return split, min(waits) if waits else None


held_addresses = held.held_addresses
waiting = held.waiting
due_addresses = held.due_addresses


# --- digests (sent by retry) -----------------------------------------------------------------


class Batch(Value):
    """One address's due held calls, leased to this process by ``token``."""

    __slots__ = ("email", "token", "callids", "attempts", "kinds")  # noqa: RUF023

    def __init__(
        self, email: str, token: str, callids: list[str], attempts: int, kinds: frozenset[str] = frozenset()
    ) -> None:
        self.email = email
        self.token = token
        self.callids = callids
        self.attempts = attempts
        self.kinds = kinds  # "" storm control, "hours" a closed queue's morning summary


def lease(store: Store, email: str, now: datetime, until: datetime) -> Batch | None:
    """Take this address's due held rows for one digest; None when another retry took them first."""
    token = os.urandom(8).hex()  # not secrets: this module is on the AGI's import path (see spool.atomic_write)
    rows = held.lease(store, email, token, now, until)
    if not rows:
        return None
    return Batch(
        email=email,
        token=token,
        callids=[c for c, _, _ in rows],
        attempts=max(n for _, n, _ in rows),
        kinds=frozenset(k for _, _, k in rows),
    )


def calls(store: Store, callids: Iterable[str]) -> list[CallRecord]:
    return store.calls_by_ids(list(callids))


def digest_sent(store: Store, batch: Batch, now: datetime) -> int:
    """Mark the batch sent; calls with no digest left waiting become ``sent``. Returns how many did."""
    held.mark_sent(store, batch.email, batch.token, now)
    return held.finish(store, batch.callids, now)


def digest_failed(store: Store, batch: Batch, error: str, *, give_up: bool, retry_at: datetime) -> None:
    """Record a digest that did not go: tried again at ``retry_at``, or given up (its held calls fail)."""
    held.mark_failed(store, batch.email, batch.token, batch.callids, error, give_up=give_up, retry_at=retry_at)
