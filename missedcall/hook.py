"""The AGI hook: what ``agi-bin/missed.py`` runs at hang-up. It never raises into Asterisk.

One run: read the AGI headers, ask Asterisk for the few variables the verdict
may need (one round trip), judge the call from queue_log (or the variables),
claim its row, mail, record the outcome, exit 0. Every wait is bounded so the
whole run stays well under ``BUDGET`` seconds even when Asterisk, the database
or the relay hangs.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily at run time: the AGI pays for every import
    from missedcall.agi import AgiSession
    from missedcall.config import Settings
    from missedcall.storage import CallRecord

BUDGET = 2.7  # seconds for everything after start-up; DESIGN §4 allows 3 in all
_ID = re.compile(r"[^A-Za-z0-9._-]")


def main(argv: Sequence[str], *, fd_in: int = 0, fd_out: int = 1) -> int:
    """Run the hook; always returns 0, whatever happened (Asterisk must never be held up)."""
    deadline = time.monotonic() + BUDGET
    session = None
    try:
        _silence_stderr()
        from missedcall.agi import AgiSession

        session = AgiSession(fd_in, fd_out, deadline)
        _run(session, list(argv), deadline)
    except Exception as exc:  # the last line of defence: log it, never show Asterisk a traceback
        _report(session, f"internal error: {exc.__class__.__name__}: {exc}", error=True)
    return 0


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


def clean_id(text: str) -> str:
    """Callids and queue names as they may appear in a row or a header: no separators, bounded."""
    return _ID.sub("_", text.strip())[:64]


def _run(session: AgiSession, argv: list[str], deadline: float) -> None:
    from missedcall import config, queuelog, verdict
    from missedcall.agi import header_value
    from missedcall.storage import CallRecord

    env = session.env
    queue_arg = clean_id(argv[0]) if argv else ""
    reason_arg = argv[1].strip().upper() if len(argv) > 1 else ""
    if reason_arg and reason_arg not in verdict.ARGUMENT_REASONS:
        _report(session, f"ignoring unknown REASON argument {clean_id(reason_arg)!r}", error=True)
        reason_arg = ""
    callid = clean_id(env.get("agi_uniqueid", ""))
    if not callid:
        _report(session, "no agi_uniqueid in the AGI headers; nothing to record", error=True)
        return

    # One round trip for everything the verdict or the record may need.
    asked = ["${ABANDONED}", "${QUEUEPOSITION}", "${CHANNEL(linkedid)}", "${QUEUEJOINTIME}"]
    values = session.fetch(asked) or [""] * len(asked)
    abandoned, position, linkedid, jointime = values

    try:
        settings = config.load_settings()
    except config.ConfigError as exc:
        _report(session, f"configuration error: {exc}", error=True)
        return

    events = queuelog.read_call_events(settings.queue_log, callid)
    judged = verdict.judge_events(events) if events else None
    if judged is None:
        judged = verdict.judge_channel(queue_arg, reason_arg=reason_arg, abandoned=abandoned, position=position)
    if not judged.missed:
        _report(session, f"call {callid}: answered or not missed; nothing to do")
        return

    now = datetime.now(timezone.utc).replace(microsecond=0)
    entered = _epoch(judged.entered_at) or _epoch(int(jointime) if jointime.isdigit() else None)
    wait = judged.wait_seconds
    if wait is None and entered is not None:
        wait = max(0, int((now - entered).total_seconds()))
    call = CallRecord(
        callid=callid,
        linkedid=clean_id(linkedid),
        queue=clean_id(judged.queue) or queue_arg or "unknown",
        path=tuple(clean_id(q) for q in judged.path),
        caller_num=header_value(env, "agi_callerid") or judged.caller_num,
        caller_name=header_value(env, "agi_calleridname"),
        reason=judged.reason,
        wait_seconds=wait,
        position=judged.position,
        entered_at=entered,
        ended_at=_epoch(judged.ended_at) or now,
        source="agi",
        extra={"did": judged.did} if judged.did else {},
    )
    _record_and_notify(session, settings, call, deadline)


def _record_and_notify(session: AgiSession, settings: Settings, call: CallRecord, deadline: float) -> None:
    from missedcall import notify
    from missedcall.storage import StorageError, Store

    remaining = deadline - time.monotonic()
    try:
        store = Store.open(settings.db, timeout=max(0.3, min(1.0, remaining / 3)))
    except StorageError as exc:
        _report(session, f"call {call.callid}: database unreachable: {exc}", error=True)
        return
    try:
        try:
            claimed = store.claim_call(call)
        except StorageError:
            # Tables missing (init never ran): create them once and try again.
            store.init()
            claimed = store.claim_call(call)
        if not claimed:
            _report(session, f"call {call.callid}: already recorded; nothing sent")
            return
        remaining = deadline - time.monotonic()
        done = notify.notify(store, settings, call, timeout=max(0.3, min(settings.smtp_timeout, remaining - 0.1)))
        _report(
            session,
            f"missed call {call.callid} in queue {call.queue} ({call.reason}): {done.status}"
            + (f" - {done.last_error}" if done.last_error else ""),
            error=done.status in ("pending", "failed"),
        )
    finally:
        store.close()


def _epoch(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, timezone.utc)
