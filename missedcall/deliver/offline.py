"""Mailing a call while the database is down: with the last known recipients, and a spool file for retry.

The hook (and the FastAGI service) come here only when the database did not answer in time; ``retry``
imports the spool file later and records what happened. Never raises for expected trouble.
"""

from __future__ import annotations

from missedcall import budget, log
from missedcall.deliver import lastknown, mail, notify, spool, targets, transport
from missedcall.record.model import utcnow

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from missedcall.config import Settings
    from missedcall.record.model import CallRecord


def send(settings: Settings, call: CallRecord, *, deadline: float, reason: str) -> notify.Outcome:
    """Mail ``call`` without the database, with what is known locally, and spool it; never raises for
    expected trouble."""
    call.last_error = f"database unreachable: {reason}"[:512]
    rows = lastknown.load(settings.spool_dir)
    try:
        the_plan = notify.plan(call, settings, None, known_rows=rows or [])
    except mail.TemplateError as exc:
        call.status, call.last_error = "pending", str(exc)[:512]
        return notify.Outcome("pending", str(exc), _spool(settings, call))
    if the_plan.message is None:
        call.status, call.last_error = "skipped", the_plan.skip_reason[:512]
        return notify.Outcome("skipped", the_plan.skip_reason, _spool(settings, call))
    if not the_plan.recipients:
        call.status = "pending"
        call.last_error = f"{call.last_error}; no recipients known locally"[:512]
        return notify.Outcome("pending", "no recipients known locally", _spool(settings, call))
    call.status = "pending"
    spooled = _spool(settings, call)
    left = budget.left(deadline) - 0.3  # keep time to rewrite the spool file, report, exit
    if left < notify.SEND_RESERVE:
        call.last_error = f"{call.last_error}; {notify.DEFERRED}"[:512]
        if spooled:
            _spool(settings, call)
        return notify.Outcome("pending", notify.DEFERRED, spooled)
    call.attempts += 1
    call.recipients = tuple(the_plan.recipients)
    timeout = max(0.1, min(settings.smtp_timeout, left))
    mails = [a for a in the_plan.recipients if not targets.is_chat(a)]  # chat targets need the database
    try:
        transport.send(the_plan.message, mails, settings, timeout=timeout)
    except transport.TransportError as exc:
        call.last_error = f"{call.last_error}; mail not sent: {exc}"[:512]
        return notify.Outcome("pending", f"mail not sent: {exc}", _spool(settings, call))
    call.status = "sent"
    call.notified_at = utcnow()
    source = "the last known recipients" if rows is not None else "MISSEDCALL_FALLBACK_TO (no local copy yet)"
    said = f"mailed {len(the_plan.recipients)} recipient(s) from {source}"
    return notify.Outcome("sent", said, _spool(settings, call))


def _spool(settings: Settings, call: CallRecord) -> bool:
    try:
        spool.write(settings.spool_dir, call)
    except spool.SpoolError as exc:
        log.error(f"call {call.callid}: cannot spool it ({exc}); only the queue_log sweeper can record it now")
        return False
    return True
