"""The one notifier behind both detectors: decide whether to mail, mail, record the outcome.

The AGI hook, the queue_log sweeper, ``test`` and ``retry`` all come here with
a recorded ``CallRecord``; this module turns it into a sent, skipped or
pending/failed row. Filters (MISSEDCALL_REASONS, MISSEDCALL_MIN_WAIT) and
recipient resolution live here so both detectors apply them alike.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email.message import EmailMessage

from missedcall import log, mail, recipients, transport
from missedcall.config import Settings
from missedcall.storage import CallRecord, StorageError, Store, utcnow

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Plan:
    """What would happen to a call: its recipients, the message, or why nothing is sent."""

    recipients: list[str]
    message: EmailMessage | None
    skip_reason: str = ""


def skip_reason(call: CallRecord, settings: Settings) -> str:
    """Why this call is recorded but not mailed; "" when it should be mailed."""
    if call.reason not in settings.reasons:
        return f"reason {call.reason} is not in MISSEDCALL_REASONS"
    if call.reason == "ABANDON" and settings.min_wait and (call.wait_seconds or 0) < settings.min_wait:
        return f"waited {call.wait_seconds or 0} s, less than MISSEDCALL_MIN_WAIT={settings.min_wait}"
    return ""


def zone(settings: Settings) -> tzinfo | None:
    if not settings.timezone:
        return None
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(settings.timezone)
    except Exception:  # an unknown zone name: the system's zone is still right more often than UTC
        log.warning(f"unknown MISSEDCALL_TIMEZONE {settings.timezone!r}; using the system time zone")
        return None


def plan(call: CallRecord, settings: Settings, store: Store | None, *, now: datetime | None = None) -> Plan:
    """Recipients and message for ``call``; ``store`` None means recipients unknown (no database)."""
    reason = skip_reason(call, settings)
    if reason:
        return Plan([], None, reason)
    own: list[str] = []
    star: list[str] = []
    label = ""
    if store is not None:
        own, star = store.recipients_for(call.queue)
        label = store.queue_label(call.queue)
    addresses = recipients.resolve(own, star, settings.fallback_to)
    templates = mail.load_templates(settings.language, settings.template_dir)
    subject, body = mail.render(
        call,
        label=label,
        language=settings.language,
        templates=templates,
        zone=zone(settings),
        host=socket.gethostname(),
    )
    message = mail.build_message(
        subject=subject,
        body=body,
        sender=settings.mail_from,
        recipients=addresses,
        callid=call.callid,
        now=now or utcnow(),
    )
    if not addresses:
        return Plan([], message, f"queue {call.queue} has no recipients and MISSEDCALL_FALLBACK_TO is empty")
    return Plan(addresses, message)


def notify(store: Store, settings: Settings, call: CallRecord, *, timeout: float) -> CallRecord:
    """Mail a recorded call and record the outcome on its row; returns the updated record."""
    try:
        the_plan = plan(call, settings, store)
    except mail.TemplateError as exc:
        return _record(store, call, status="pending", error=str(exc))
    if the_plan.message is None or not the_plan.recipients:
        if not the_plan.recipients and the_plan.message is not None:
            log.warning(f"call {call.callid}: {the_plan.skip_reason}; recorded, not mailed")
        return _record(store, call, status="skipped", error=the_plan.skip_reason)
    try:
        transport.send(the_plan.message, the_plan.recipients, settings, timeout=timeout)
    except transport.TransportError as exc:
        attempts = call.attempts + 1
        status = "failed" if (not exc.temporary or attempts >= MAX_ATTEMPTS) else "pending"
        log.warning(f"call {call.callid}: mail not sent ({exc}); status {status}")
        return _record(store, call, status=status, error=str(exc), attempts=attempts, recipients=the_plan.recipients)
    log.info(f"call {call.callid} in queue {call.queue}: mailed {len(the_plan.recipients)} recipient(s)")
    return _record(
        store, call, status="sent", error="", attempts=call.attempts + 1, recipients=the_plan.recipients, notified=True
    )


def _record(
    store: Store,
    call: CallRecord,
    *,
    status: str,
    error: str,
    attempts: int | None = None,
    recipients: list[str] | None = None,
    notified: bool = False,
) -> CallRecord:
    fields: dict[str, object] = {"status": status, "last_error": error[:512]}
    if attempts is not None:
        fields["attempts"] = attempts
        call.attempts = attempts
    if recipients is not None:
        fields["recipients"] = recipients
        call.recipients = tuple(recipients)
    if notified:
        fields["notified_at"] = utcnow()
        call.notified_at = fields["notified_at"]  # type: ignore[assignment]
    call.status = status
    call.last_error = error[:512]
    try:
        store.update_call(call.callid, **fields)
    except StorageError as exc:
        # The mail went (or not) but the row could not be updated: say so; the row stays as claimed.
        log.error(f"call {call.callid}: could not record status {status}: {exc}")
    return call
