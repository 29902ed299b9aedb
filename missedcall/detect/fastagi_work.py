"""The blocking half of the FastAGI service: judge and record a call, then mail it. Runs in threads.

Two stages, so that Asterisk's channel is held only for the first:

* :func:`record` (the channel is still held): the verdict from queue_log or the
  channel variables, exactly as the process hook judges (missedcall.detect.hook), then
  the claim of the row; when the database does not answer, the call is spooled
  ``pending`` instead (a local file, durable before the channel is released).
* :func:`deliver` (the channel is gone): the one notifier, with the hook's offline
  path when the database is unreachable.

Between the two the call is durable (a pending row under its claim lease, or a
spool file), so anything the service holds in memory ``retry`` would redo: a full
mail queue, a SIGTERM or a SIGKILL leaves the call to ``retry``.

Each worker thread keeps its own database connection; its look-ups of recipients and
per-queue settings come from a copy a few seconds old at most (missedcall.detect.fastagi_cache).
A database that failed is left alone for :data:`DB_PAUSE` seconds (:class:`Breaker`): calls
go straight to the spool, so a black-holed MariaDB costs one timeout, not one per call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from missedcall import config, log
from missedcall.deliver import notify, spool
from missedcall.detect import judge as judge_step
from missedcall.detect.fastagi_cache import CachedStore
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord

#: Seconds a failed database is left alone before the next call tries it again.
DB_PAUSE = 5.0
#: Bound on connecting and on every query while the channel is held.
DB_TIMEOUT = 1.0
#: ... and once it is released (mailing): SQLite's lock waits between the service's own threads.
MAIL_DB_TIMEOUT = 5.0
#: The variables the hook asks for, in one round trip (docs/design.md §4): the very same.
ASKED = judge_step.ASKED


@dataclass
class Job:
    """One session's facts, as read from Asterisk."""

    env: dict[str, str]
    args: list[str]
    values: list[str]
    peer: str
    callid: str = ""

    @property
    def session(self) -> str:
        """The session's name in logs: the uniqueid and the PBX it came from (a fleet shares one service)."""
        return f"{self.callid or '?'}@{self.peer}"


@dataclass
class Recorded:
    """What :func:`record` did. ``kind``: ``claimed``, ``spooled`` (database down), ``done`` (nothing to mail)."""

    kind: str
    message: str
    error: bool = False
    call: CallRecord | None = None
    settings: config.Settings | None = None
    db_error: str = ""
    session: str = ""
    notes: list[tuple[str, bool]] = field(default_factory=list)


class Breaker:
    """Remembers that the database failed, for :data:`DB_PAUSE` seconds."""

    def __init__(self, pause: float = DB_PAUSE) -> None:
        self.pause = pause
        self._until = 0.0
        self._why = ""
        self._lock = threading.Lock()

    def down(self) -> str:
        """Why the database is being left alone, or "" when it may be tried."""
        with self._lock:
            return self._why if time.monotonic() < self._until else ""

    def trip(self, why: str) -> None:
        with self._lock:
            self._until = time.monotonic() + self.pause
            self._why = why

    def reset(self) -> None:
        with self._lock:
            self._until = 0.0


_local = threading.local()
_T = TypeVar("_T")


def _store(settings: config.Settings, timeout: float, breaker: Breaker) -> CachedStore:
    """This thread's connection to the configured database (a new one after a reload or a failure).

    Only a failed connect trips the breaker: a query that timed out (a lock, a slow
    moment) drops the connection, and the next call finds out whether the server is gone.
    """
    held: tuple[object, CachedStore] | None = getattr(_local, "store", None)
    if held is not None and (held[0] is settings.db or held[0] == settings.db):  # `is`: no field-by-field compare
        return held[1]
    drop_store()
    try:
        store = CachedStore.open(settings.db, timeout=timeout)
    except StorageError as exc:
        breaker.trip(str(exc))
        raise
    _local.store = (settings.db, store)
    return store


def _using(settings: config.Settings, timeout: float, breaker: Breaker, work: Callable[[CachedStore], _T]) -> _T:
    """``work`` on this thread's connection. A connection held from earlier calls that fails at once
    is opened again and ``work`` runs once more: the server closed it (a restart, MariaDB's
    ``wait_timeout`` after a quiet night), so the call needs no spool. A failure that took half the
    bound or more is the server being slow, not gone: no second wait on the channel.

    ``work`` must be safe to run twice: a claim whose INSERT landed before the connection died finds
    its row (then "already recorded"; the pending row is ``retry``'s after its claim lease), and the
    notifier raises only before anything was sent."""
    held = getattr(_local, "store", None) is not None
    store = _store(settings, timeout, breaker)
    started = time.monotonic()
    try:
        return work(store)
    except StorageError:
        drop_store()
        if not held or time.monotonic() - started >= timeout / 2:
            raise
    return work(_store(settings, timeout, breaker))


def _claim(store: CachedStore, call: CallRecord) -> bool:
    try:
        return store.claim_call(call)
    except StorageError:
        store.init()  # tables missing (init never ran) or older: once, as the hook does
        return store.claim_call(call)


def warm(settings: config.Settings | None, timeout: float, breaker: Breaker, gate: threading.Barrier) -> None:
    """Open this thread's connection before the first call needs it (``gate`` keeps every thread of
    the pool here at once, so each opens its own): the first sessions of a burst then pay no connect."""
    try:
        if settings is not None and not breaker.down():
            _store(settings, timeout, breaker)
    except StorageError as exc:
        log.warning(f"fastagi: database not reachable at start ({exc}); calls are spooled until it is")
    finally:
        try:
            gate.wait(timeout + 1)
        except threading.BrokenBarrierError:
            pass


def drop_store() -> None:
    held = getattr(_local, "store", None)
    _local.store = None
    if held is not None:
        held[1].close()


Notes = list[tuple[str, bool]]  # (line to report, is it an error)


def judge(job: Job, settings: config.Settings | None, queue_log: str) -> tuple[CallRecord | None, Notes]:
    """The call's row when it was missed, and the lines to report: the process hook's decision itself."""
    return judge_step.missed_call(job.env, job.args, job.values, queue_log, quiet_answer=settings is not None)


def record(job: Job, settings: config.Settings | None, settings_error: str, breaker: Breaker) -> Recorded:
    """Judge the call and make it durable (a claimed row, or a spool file); never raises for expected trouble."""
    if settings is None:
        spool_dir, queue_log = config.salvage_paths()
    else:
        spool_dir, queue_log = settings.spool_dir, settings.queue_log
    call, notes = judge(job, settings, queue_log)
    if call is None:
        message, error = notes.pop() if notes else ("nothing to record", True)
        if settings is None:
            message = f"configuration error: {settings_error}; {message}"
        return Recorded("done", message, error, notes=notes)
    if settings is None:
        return _salvage(call, spool_dir, f"configuration error: {settings_error}", notes)
    why = breaker.down()
    if not why:
        try:
            claimed = _using(settings, DB_TIMEOUT, breaker, lambda store: _claim(store, call))
        except StorageError as exc:
            drop_store()
            why = str(exc)
        else:
            if not claimed:
                return Recorded("done", f"call {call.callid}: already recorded; nothing sent", notes=notes)
            return Recorded("claimed", "", call=call, settings=settings, notes=notes)
    # The database does not answer: keep the call in the spool before the channel goes.
    call.status = "pending"
    call.last_error = f"database unreachable: {why}"[:512]
    try:
        spool.write(settings.spool_dir, call)
    except spool.SpoolError as exc:
        message = f"missed call {call.callid} in queue {call.queue}: database unreachable ({why}), NOT spooled ({exc})"
        return Recorded("spooled", message, True, call=call, settings=settings, db_error=why, notes=notes)
    return Recorded("spooled", "", call=call, settings=settings, db_error=why, notes=notes)


def _salvage(call: CallRecord, spool_dir: str, reason: str, notes: list[tuple[str, bool]]) -> Recorded:
    """Settings that do not load: no database or relay is known, so the call waits in the spool for ``retry``."""
    call.status = "pending"
    call.last_error = reason[:500]
    try:
        spool.write(spool_dir, call, create_dir=False)
    except (OSError, spool.SpoolError) as exc:
        message = f"{reason}; missed call {call.callid} in queue {call.queue}: NOT spooled ({exc})"
        return Recorded("done", message, True, notes=notes)
    message = (
        f"{reason}; missed call {call.callid} in queue {call.queue} ({call.reason}): spooled in {spool_dir};"
        " retry records and mails it once the configuration is fixed"
    )
    return Recorded("done", message, True, notes=notes)


def deliver(done: Recorded, breaker: Breaker) -> tuple[str, bool]:
    """Mail a recorded call; the syslog line (and whether it is an error). Never raises for expected trouble."""
    call, settings = done.call, done.settings
    assert call is not None and settings is not None
    if done.kind == "claimed":
        try:
            sent = _using(
                settings, MAIL_DB_TIMEOUT, breaker,
                lambda store: notify.notify(store, settings, call, timeout=settings.smtp_timeout),
            )  # fmt: skip
        except StorageError as exc:
            # notify raises only before anything was sent: mail from the local copy, as the hook does.
            drop_store()
            return _offline(settings, call, str(exc))
        detail = f" - {sent.last_error}" if sent.last_error else ""
        line = f"missed call {call.callid} in queue {call.queue} ({call.reason}): {sent.status}{detail}"
        return line, sent.status in ("pending", "failed")
    return _offline(settings, call, done.db_error)


def _offline(settings: config.Settings, call: CallRecord, reason: str) -> tuple[str, bool]:
    deadline = time.monotonic() + settings.smtp_timeout + 2
    outcome = notify.offline(settings, call, deadline=deadline, reason=reason)
    kept = "spooled for retry" if outcome.spooled else "NOT spooled"
    if outcome.status == "sent" and not outcome.spooled:
        from missedcall.detect import mailedmark

        noted = mailedmark.leave(settings.spool_dir, call.callid)
        kept += "; noted so that the sweeper does not mail it again" if noted else "; the sweeper may mail it again"
    line = (
        f"missed call {call.callid} in queue {call.queue} ({call.reason}): database unreachable ({reason});"
        f" {outcome.status}: {outcome.detail}; {kept}"
    )
    return line, True


def left_for_retry(done: Recorded) -> str:
    """The syslog line of a call the mail queue had no room for: recorded, and ``retry`` sends it."""
    call = done.call
    assert call is not None
    where = "its row is pending" if done.kind == "claimed" else "spooled pending"
    return f"missed call {call.callid} in queue {call.queue} ({call.reason}): service busy; {where}, retry mails it"


def report(message: str, error: bool) -> None:
    (log.error if error else log.info)(message)
