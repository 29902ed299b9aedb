"""What the AGI does when it cannot use the database: mail anyway, and spool the call for ``retry``.

Recipients come from the last known copy (missedcall.deliver.lastknown) plus
MISSEDCALL_FALLBACK_TO. The call is spooled *before* the mail goes (status
``pending``) and again after (``sent``, or ``pending`` with the error), so a
process killed in between leaves a file that ``retry`` turns into a row and,
at worst, one duplicate mail; one killed before the first write is left to
the queue_log sweeper. Storm control needs the database's counters, so mails
sent from here are not counted (the README says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from missedcall import budget, log
from missedcall.config import Settings
from missedcall.deliver import lastknown, mail, notify, spool, transport
from missedcall.record.model import CallRecord, utcnow


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | pending | skipped (what the spool file says)
    detail: str
    spooled: bool


def deliver(settings: Settings, call: CallRecord, *, deadline: float, reason: str) -> Outcome:
    """Mail ``call`` with what is known locally and spool it; never raises for expected trouble."""
    call.last_error = f"database unreachable: {reason}"[:512]
    rows = lastknown.load(settings.spool_dir)
    try:
        the_plan = notify.plan(call, settings, None, known_rows=rows or [])
    except mail.TemplateError as exc:
        call.status, call.last_error = "pending", str(exc)[:512]
        return Outcome("pending", str(exc), _spool(settings, call))
    if the_plan.message is None:
        call.status, call.last_error = "skipped", the_plan.skip_reason[:512]
        return Outcome("skipped", the_plan.skip_reason, _spool(settings, call))
    if not the_plan.recipients:
        call.status = "pending"
        call.last_error = f"{call.last_error}; no recipients known locally"[:512]
        return Outcome("pending", "no recipients known locally", _spool(settings, call))

    call.status = "pending"
    spooled = _spool(settings, call)
    left = budget.left(deadline) - 0.3  # keep time to rewrite the spool file, report, exit
    if left < notify.SEND_RESERVE:
        call.last_error = f"{call.last_error}; {notify.DEFERRED}"[:512]
        if spooled:
            _spool(settings, call)
        return Outcome("pending", notify.DEFERRED, spooled)
    call.attempts += 1
    call.recipients = tuple(the_plan.recipients)
    try:
        timeout = max(0.1, min(settings.smtp_timeout, left))
        transport.send(the_plan.message, the_plan.recipients, settings, timeout=timeout)
    except transport.TransportError as exc:
        call.last_error = f"{call.last_error}; mail not sent: {exc}"[:512]
        return Outcome("pending", f"mail not sent: {exc}", _spool(settings, call))
    call.status = "sent"
    call.notified_at = utcnow()
    source = "the last known recipients" if rows is not None else "MISSEDCALL_FALLBACK_TO (no local copy yet)"
    detail = f"mailed {len(the_plan.recipients)} recipient(s) from {source}"
    return Outcome("sent", detail, _spool(settings, call))


def _spool(settings: Settings, call: CallRecord) -> bool:
    try:
        spool.write(settings.spool_dir, call)
    except spool.SpoolError as exc:
        log.error(f"call {call.callid}: cannot spool it ({exc}); only the queue_log sweeper can record it now")
        return False
    return True
