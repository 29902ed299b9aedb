"""The AGI hook: what ``agi-bin/missed.py`` runs at hang-up. It never raises into Asterisk.

One run: read the AGI headers, ask Asterisk for the few variables the verdict
may need (one round trip), judge the call from queue_log (or the variables),
claim its row, mail, record the outcome, exit 0. Every wait is bounded so the
whole run stays well under ``BUDGET`` seconds even when Asterisk, the database
or the relay hangs.
"""

from __future__ import annotations

import os
import time

from missedcall.detect.verdict import clean_id  # shared with the sweeper; stdlib-only, as cheap as the regex was

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI pays for every import
if TYPE_CHECKING:  # imported lazily at run time
    from collections.abc import Sequence
    from typing import NoReturn

    from missedcall.config import Settings
    from missedcall.detect.agi import AgiSession
    from missedcall.record.model import CallRecord
    from missedcall.record.storage import Store

BUDGET = 2.7  # seconds for everything after start-up; docs/design.md allows 3 in all
TOTAL = 2.8  # ... and from the exec itself: on a busy box start-up alone can take a good part of a second


_leaving = False  # set by run(): the process ends with os._exit as soon as main() returns


def run(argv: Sequence[str]) -> NoReturn:
    """The AGI process's entry (agi-bin/missed.py): :func:`main`, then leave at once (``os._exit``).

    By then everything the call needs is committed, spooled, mailed and reported (each AGI command
    is flushed as it is written). Leaving skips the interpreter's teardown and, above all, SQLite's
    checkpoint of its WAL when the last connection closes: a copy and two fsyncs, 15 ms a call on
    this project's test box. The committed rows are in the WAL already; the next writer's
    autocheckpoint moves them, once every thousand pages instead of at every hang-up.
    """
    global _leaving
    _leaving = True
    code = main(argv)
    import atexit  # built in: free

    atexit._run_exitfuncs()  # what a sitecustomize registered still runs; the package registers nothing
    os._exit(code)


def main(argv: Sequence[str], *, fd_in: int = 0, fd_out: int = 1) -> int:
    """Run the hook; always returns 0, whatever happened (Asterisk must never be held up)."""
    deadline = min(time.monotonic() + BUDGET, _started() + TOTAL)
    session = None
    try:
        _silence_stderr()
        from missedcall.detect.agi import AgiSession

        session = AgiSession(fd_in, fd_out, deadline)
        _run(session, list(argv), deadline)
    except Exception as exc:  # the last line of defence: log it, never show Asterisk a traceback
        _report(session, f"internal error: {exc.__class__.__name__}: {exc}", error=True)
    return 0


def _started() -> float:
    """time.monotonic() when this process was exec'd (Linux /proc), or now when that is unknown."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat", "rb") as handle:
            stat = handle.read()
        start_ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])  # field 22: starttime
        with open("/proc/uptime", "rb") as handle:
            uptime = float(handle.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - min(max(age, 0.0), 5.0)


def _silence_stderr() -> None:
    """Asterisk logs whatever an AGI writes on stderr; send ours to syslog instead."""
    from missedcall import log

    log.redirect_stderr()
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass


def _report(session: AgiSession | None, message: str, *, error: bool = False) -> None:
    from missedcall import log

    (log.error if error else log.info)(message)
    if session is not None:
        session.say(message)


def _run(session: AgiSession, argv: list[str], deadline: float) -> None:
    from missedcall import config
    from missedcall.detect import judge

    # One round trip for everything the verdict or the record may need (none without a call to judge).
    values = session.fetch(list(judge.ASKED)) if clean_id(session.env.get("agi_uniqueid", "")) else None
    settings: Settings | None = None
    broken = ""
    try:
        settings = config.load_settings()
    except config.ConfigError as exc:
        broken = f"configuration error: {exc}"  # said once, in the call's own line below
        spool_dir, queue_log = config.salvage_paths()
    else:
        queue_log = settings.queue_log

    call, notes = judge.missed_call(session.env, argv, values or [], queue_log, quiet_answer=settings is not None)
    if call is None:
        for message, error in notes[:-1]:
            _report(session, message, error=error)
        if notes:
            message, error = notes[-1]
            _report(session, f"{broken}; {message}" if broken else message, error=error)
        return
    for message, error in notes:
        _report(session, message, error=error)
    if settings is None:
        _salvage(session, call, spool_dir, broken)
        return
    _record_and_notify(session, settings, call, deadline)


def _salvage(session: AgiSession, call: CallRecord, spool_dir: str, reason: str) -> None:
    """Settings that do not load: no database or relay is known, so keep the call in the spool for ``retry``."""
    from missedcall.deliver import spool

    call.status = "pending"
    call.last_error = reason[:500]
    try:
        spool.write(spool_dir, call, create_dir=False)  # a folder guessed from broken settings is not made
    except (OSError, spool.SpoolError) as exc:
        _report(session, f"{reason}; missed call {call.callid} in queue {call.queue}: NOT spooled ({exc})", error=True)
        return
    _report(
        session,
        f"{reason}; missed call {call.callid} in queue {call.queue} ({call.reason}): spooled in {spool_dir};"
        " retry records and mails it once the configuration is fixed",
        error=True,
    )


def _record_and_notify(session: AgiSession, settings: Settings, call: CallRecord, deadline: float) -> None:
    from missedcall.deliver import notify
    from missedcall.record.db import StorageError

    try:
        store = _open_store(settings, deadline)
    except StorageError as exc:
        _offline(session, settings, call, deadline, str(exc))
        return
    try:
        try:
            claimed = store.claim_call(call)
        except StorageError:
            # Tables missing (init never ran) or older: create or migrate them once and try again.
            store.init()
            claimed = store.claim_call(call)
        if not claimed:
            _report(session, f"call {call.callid}: already recorded; nothing sent")
            return
        # notify() raises StorageError only before anything was sent: then mail from the local copy.
        done = notify.notify(store, settings, call, timeout=settings.smtp_timeout, deadline=deadline)
        _report(
            session,
            f"missed call {call.callid} in queue {call.queue} ({call.reason}): {done.status}"
            + (f" - {done.last_error}" if done.last_error else ""),
            error=done.status in ("pending", "failed"),
        )
    except StorageError as exc:
        _offline(session, settings, call, deadline, str(exc))
    finally:
        if not (_leaving and store.kind == "sqlite"):  # see run(): os._exit leaves it unclosed, unchecked
            store.close()


def _open_store(settings: Settings, deadline: float) -> Store:
    """Connect within the budget. A server that is merely full (too many connections) is tried
    again after a short random pause while enough time is left to mail from the local copy."""
    from missedcall import budget
    from missedcall.record.db import BusyError
    from missedcall.record.storage import Store

    pause = 0.05
    while True:
        remaining = budget.left(deadline)
        try:
            # A third of what is left, at most 1 s: a database that accepts and never answers
            # (PyMySQL bounds the handshake by read_timeout) still leaves time for the mail.
            return Store.open(settings.db, timeout=max(0.3, min(1.0, remaining / 3)))
        except BusyError:
            if budget.left(deadline) < 1.2 + pause:
                raise
            # Jitter from os.urandom: importing random costs every call, and this pause is rare.
            time.sleep(pause / 2 + pause / 2 * int.from_bytes(os.urandom(2), "big") / 65535)
            pause = min(pause * 2, 0.4)


def _offline(session: AgiSession, settings: Settings, call: CallRecord, deadline: float, reason: str) -> None:
    from missedcall.deliver import notify

    outcome = notify.offline(settings, call, deadline=deadline, reason=reason)
    kept = "spooled for retry" if outcome.spooled else "NOT spooled"
    if outcome.status == "sent" and not outcome.spooled:
        from missedcall.detect import mailedmark

        # Mailed, and recorded nowhere (a full disk): tell the sweeper, or it mails the call again.
        noted = mailedmark.leave(settings.spool_dir, call.callid)
        kept += "; noted so that the sweeper does not mail it again" if noted else "; the sweeper may mail it again"
    _report(
        session,
        f"missed call {call.callid} in queue {call.queue} ({call.reason}): database unreachable ({reason});"
        f" {outcome.status}: {outcome.detail}; {kept}",
        error=True,
    )
