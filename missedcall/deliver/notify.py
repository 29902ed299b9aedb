"""The one notifier behind both detectors: decide whether to mail, mail, record the outcome.

The AGI hook, the queue_log sweeper, ``test`` and ``retry`` all come here with
a recorded ``CallRecord``; this module turns it into a sent, skipped or
pending/failed row. Filters (MISSEDCALL_REASONS, MISSEDCALL_MIN_WAIT) and
recipient resolution live here so both detectors apply them alike; so do storm
control (missedcall.deliver.flood: ``held`` calls, digests), the attempt counting and
back-off that ``retry`` relies on, and the adoption of a call the hook mailed
while the database was down (missedcall.deliver.spool), which is never mailed again.

:func:`notify` records the outcome on the call's row; :func:`offline` is the
same notifier without a database (the AGI could not reach it): recipients come
from the last known copy (missedcall.deliver.lastknown) plus
MISSEDCALL_FALLBACK_TO, and the call is spooled *before* the mail goes (status
``pending``) and again after (``sent``, or ``pending`` with the error), so a
process killed in between leaves a file that ``retry`` turns into a row and, at
worst, one duplicate mail; one killed before the first write is left to the
queue_log sweeper. Storm control needs the database's counters, so mails sent
offline are not counted (the README says so).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, tzinfo

from missedcall import budget, log, text
from missedcall.config import Settings
from missedcall.deliver import flood, hoursgate, lastknown, mail, recipients, spool, targets, threads, transport
from missedcall.record import queues
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.queues import QueueSettings
from missedcall.record.storage import Store
from missedcall.slots import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Sequence

    from missedcall.deliver.mime import Draft

if TYPE_CHECKING:
    from missedcall.deliver.afterhours import Closed

MAX_ATTEMPTS = 5
#: Seconds before attempt N+1 when attempt N failed (index N-1; the last one repeats):
#: 1, 5, 15, 60 minutes, so the five attempts span about 80 minutes of relay trouble.
BACKOFF = (60, 300, 900, 3600)
#: With a deadline (the AGI), the least time worth starting a transport with. With less, the
#: call is left pending for ``retry`` rather than having its mail program killed half-way,
#: which might already have queued the mail (and the retry would then send it twice).
SEND_RESERVE = 0.5
DEFERRED = "not sent yet: the AGI ran out of time (an overloaded box?); retry sends it"


class Outcome(Frozen):
    """What :func:`offline` did: the status its spool file says, in words, and whether it is spooled."""

    __slots__ = ("status", "detail", "spooled")  # noqa: RUF023

    def __init__(self, status: str, detail: str, spooled: bool) -> None:  # status: sent | pending | skipped
        self._set(status=status, detail=detail, spooled=spooled)


class Plan(Frozen):
    """What would happen to a call: its recipients, the message, or why nothing is sent."""

    __slots__ = ("recipients", "message", "skip_reason", "closed")  # noqa: RUF023
    _uncompared = ("recipients", "message", "closed")  # unhashable; a plan is never compared

    def __init__(
        self, recipients: list[str], message: Draft | None, skip_reason: str = "", closed: Closed | None = None
    ) -> None:
        # closed: the queue was closed when the call ended (business hours)
        self._set(recipients=recipients, message=message, skip_reason=skip_reason, closed=closed)


def skip_reason(call: CallRecord, settings: Settings, own: QueueSettings | None = None) -> str:
    """Why this call is recorded but not mailed; "" when it should be mailed. ``own``: the queue's settings."""
    if own is not None and not own.enabled:
        return f"queue {call.queue} is switched off (missedcall-admin queues set {call.queue} --on)"
    if call.reason not in settings.reasons:
        return f"reason {call.reason} is not in MISSEDCALL_REASONS"
    # Only a known wait is filtered: an unknown one is not zero, and a missed call nobody hears of is the worse error.
    waited = call.wait_seconds
    min_wait = own.min_wait if own is not None else settings.min_wait
    if call.reason == "ABANDON" and min_wait and waited is not None and waited < min_wait:
        if own is not None and own.sources.get("min_wait") == "queue":
            return f"waited {waited} s, less than queue {call.queue}'s minimum wait of {min_wait} s"
        return f"waited {waited} s, less than MISSEDCALL_MIN_WAIT={min_wait}"
    if call.voicemail and threads.voicemail_mode(settings) == "suppress":
        return "the caller left a voicemail (MISSEDCALL_VOICEMAIL=suppress)"
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


def backoff(attempts: int) -> timedelta:
    """How long to wait after ``attempts`` attempts before the next one."""
    return timedelta(seconds=BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1])


def plan(
    call: CallRecord,
    settings: Settings,
    store: Store | None,
    *,
    now: datetime | None = None,
    cache_dir: str = "",
    known_rows: Sequence[tuple[str, str]] | None = None,
) -> Plan:
    """Recipients and message for ``call``.

    ``store`` None means no database: recipients come from ``known_rows`` (the last
    known copy, see missedcall.deliver.lastknown) or only the fallback. With ``cache_dir``,
    a successful look-up refreshes that copy.
    """
    per_queue = None
    if store is not None:
        per_queue = queues.effective(store, call.queue, language=settings.language, min_wait=settings.min_wait)
    reason = skip_reason(call, settings, per_queue)
    if reason:
        return Plan([], None, reason)
    own: list[str] = []
    star: list[str] = []
    label = per_queue.label if per_queue is not None else ""
    language = per_queue.language if per_queue is not None else settings.language
    if store is not None:
        rows = lastknown.all_rows(store)
        if cache_dir:
            lastknown.save(cache_dir, rows)
        own, star = lastknown.split(rows, call.queue)
    elif known_rows is not None:
        own, star = lastknown.split(list(known_rows), call.queue)
    addresses = []
    for address in recipients.resolve(own, star, settings.fallback_to):
        problem = targets.problem(address)
        if problem:
            shown = text.printable(address, limit=254, replace="?")
            log.warning(f"call {call.callid}: recipient {shown!r} skipped: it {problem} (missedcall-admin recipients)")
        else:
            addresses.append(address)
    templates = mail.load_templates(language, settings.template_dir)
    subject, body, html = mail.compose(
        call,
        label=label,
        language=language,
        templates=templates,
        zone=zone(settings),
        host=os.uname().nodename,  # what socket.gethostname() answers, without importing socket
        region=str(settings.raw.get("MISSEDCALL_REGION", "") or ""),
    )
    thread, subject = threads.alert_thread(call, settings, store, subject=subject, label=label, language=language,
                                           templates=templates, zone=zone(settings), now=now or utcnow())  # fmt: skip
    message = mail.build_message(
        subject=subject,
        body=body,
        sender=settings.mail_from,
        recipients=[a for a in addresses if not targets.is_chat(a)],
        callid=call.callid,
        now=now or utcnow(),
        html=html,
        message_id=thread.message_id,
    )
    threads.set_thread(message, thread)
    if not addresses:
        return Plan([], message, f"queue {call.queue} has no recipients and MISSEDCALL_FALLBACK_TO is empty")
    return Plan(addresses, message, closed=hoursgate.closed_now(call, settings, store, per_queue, zone(settings)))


def notify(
    store: Store,
    settings: Settings,
    call: CallRecord,
    *,
    timeout: float,
    now: datetime | None = None,
    deadline: float | None = None,
) -> CallRecord:
    """Mail a recorded (claimed, or pending) call and record the outcome on its row; returns the record.

    Order matters for "exactly once": a copy the AGI already mailed while the
    database was down is adopted, not resent; storm control splits the addresses
    into single mails and digest entries (first attempt only); the attempt is
    counted on the row *before* the mail goes, so a crash right after sending
    costs one duplicate at most and never a loop. ``deadline`` (time.monotonic)
    bounds the send for the AGI. Raises StorageError only before anything was sent.
    """
    now = now or utcnow()
    spooled = spool.find(settings.spool_dir, call.callid) if settings.spool_dir else None
    if spooled is not None and spooled.mailed:
        return _adopt(store, call, spooled)  # mailed while the database was down, or not recorded then
    try:
        the_plan = plan(call, settings, store, cache_dir=settings.spool_dir)
    except mail.TemplateError as exc:
        if not store.begin_attempt(call, next_attempt_at=now + backoff(call.attempts + 1)):
            return call
        status = "failed" if call.attempts >= MAX_ATTEMPTS else "pending"
        return _record(store, call, status=status, error=str(exc))
    if the_plan.message is None or not the_plan.recipients:
        if not the_plan.recipients and the_plan.message is not None:
            log.warning(f"call {call.callid}: {the_plan.skip_reason}; recorded, not mailed")
        return _record(store, call, status="skipped", error=the_plan.skip_reason)
    if call.attempts >= MAX_ATTEMPTS:
        # Every attempt was counted before it was made; a row still pending here lost its
        # process after the last one (a crash): give up rather than risk a loop.
        return _record(store, call, status="failed", error=call.last_error or f"gave up after {call.attempts} attempts")
    everyone = the_plan.recipients
    closed = the_plan.closed
    if closed is not None and (closed.mode == "ignore" or (closed.mode == "digest" and closed.opens_at)):
        return after_hours(store, call, closed, everyone, now=now)
    if deadline is not None and budget.left(deadline) - 0.25 < SEND_RESERVE:
        return _record(store, call, status="pending", error=DEFERRED, recipients=everyone, next_attempt_at=now)
    # The attempt is ours from here (another process that read the same row gets False).
    if not store.begin_attempt(call, next_attempt_at=now + backoff(call.attempts + 1)):
        log.info(f"call {call.callid}: another process is sending it")
        return call
    if call.attempts == 1:  # the first attempt makes the storm-control decision, once
        split = flood.reserve(
            store, call, everyone, limit=settings.flood_limit, window_minutes=settings.flood_window, now=now
        )
        single, held = split.single, split.held
    else:
        held_now = {a.lower() for a in flood.held_addresses(store, call.callid)}
        single = [a for a in everyone if a.lower() not in held_now]
        held = [a for a in everyone if a.lower() in held_now]
    if held:
        log.info(f"call {call.callid}: flood limit reached for {', '.join(held)}; held for the digest")
    if not single:
        status = "held" if flood.waiting(store, call.callid) else "sent"
        return _record(store, call, status=status, error="", recipients=everyone, notified=status == "sent")
    message = the_plan.message
    assert message is not None
    if any(targets.is_chat(k) for k in everyone) or (call.attempts > 1 and _per_target(store, call)):
        from missedcall.deliver import chatroute

        done = chatroute.deliver(
            store, settings, call, message, single, held=bool(held), timeout=timeout, deadline=deadline, now=now,
            max_attempts=MAX_ATTEMPTS, backoff=backoff(call.attempts),
        )  # fmt: skip
        return _record(
            store, call, status=done.status, error=done.error, recipients=everyone, notified=done.notified,
            next_attempt_at=done.next_attempt_at, spool_dir=settings.spool_dir if done.notified else "",
        )  # fmt: skip
    if deadline is not None:
        timeout = max(0.1, min(timeout, budget.left(deadline) - 0.25))  # then record, report, exit
    if single != everyone:
        del message["To"]
        message["To"] = ", ".join(single)
    try:
        transport.send(message, single, settings, timeout=timeout)
    except transport.TransportError as exc:
        status = "failed" if (not exc.temporary or call.attempts >= MAX_ATTEMPTS) else "pending"
        log.warning(f"call {call.callid}: mail not sent ({exc}); status {status}, attempt {call.attempts}")
        return _record(store, call, status=status, error=str(exc), recipients=everyone)
    log.info(f"call {call.callid} in queue {call.queue}: mailed {len(single)} recipient(s)")
    status = "sent"
    if held:
        try:
            status = "held" if flood.waiting(store, call.callid) else "sent"
        except StorageError:
            status = "held"
    return _record(
        store, call, status=status, error="", recipients=everyone, notified=True, spool_dir=settings.spool_dir
    )


def _per_target(store: Store, call: CallRecord) -> bool:
    """Was this call delivered target by target before (it had a chat target then)? Only asked on a retry."""
    from missedcall.record import deliveries

    try:
        return bool(deliveries.states(store, call.callid))
    except StorageError:  # tables from before chat targets (init adds them): nothing was recorded per target
        return False


def after_hours(store: Store, call: CallRecord, closed: Closed, everyone: list[str], *, now: datetime) -> CallRecord:
    """Outside business hours: ``skipped`` (ignore), or held for every recipient until the queue opens, when
    ``retry`` sends each one summary (digest); holding twice (a retry after a crash) holds nothing twice."""
    if closed.mode == "ignore":
        log.info(f"call {call.callid}: {closed.reason}; recorded, not mailed")
        return _record(store, call, status="skipped", error=closed.reason)
    if not store.begin_attempt(call, next_attempt_at=now + backoff(call.attempts + 1)):
        return call
    assert closed.opens_at is not None
    flood.hold_until(store, call, everyone, closed.opens_at, now=now)
    log.info(f"call {call.callid}: {closed.reason}; held for the summary of {len(everyone)} recipient(s)")
    # The reason stays on the row (also once the summary went): `log` says why nobody was mailed at night.
    return _record(store, call, status="held", error=closed.reason, recipients=everyone)


def offline(settings: Settings, call: CallRecord, *, deadline: float, reason: str) -> Outcome:
    """Mail ``call`` without the database and spool it (missedcall.deliver.offline); never raises for expected
    trouble. Imported only when the database is down, which is rare."""
    from missedcall.deliver import offline as without_database

    return without_database.send(settings, call, deadline=deadline, reason=reason)


def _adopt(store: Store, call: CallRecord, spooled: spool.Spooled) -> CallRecord:
    """This call was mailed but its row never said so (the database was down or refused the write):
    record that, never send it again."""
    copy = spooled.call
    # "held" when it was written; its digests may have gone since.
    status = "held" if copy.status == "held" and flood.waiting(store, call.callid) else "sent"
    call.status, call.last_error = status, ""
    call.attempts = max(call.attempts, copy.attempts)
    call.recipients = copy.recipients
    call.notified_at = copy.notified_at or utcnow()
    call.message_id = copy.message_id or call.message_id  # what a follow-up will reply to
    try:
        store.update_call(
            call.callid,
            status=status,
            last_error="",
            attempts=call.attempts,
            recipients=list(call.recipients),
            notified_at=call.notified_at,
            message_id=call.message_id,
        )
    except StorageError as exc:
        log.error(f"call {call.callid}: could not record status {status}: {exc}")
        return call
    log.info(f"call {call.callid}: mailed before but not recorded then; recorded as {status}")
    if any(targets.is_chat(k) for k in call.recipients):  # chat targets need the database: they still wait
        from missedcall.deliver import chatroute

        chatroute.reopen_after_offline(store, call, utcnow())
    spool.remove(spooled.path)
    return call


def _record(
    store: Store,
    call: CallRecord,
    *,
    status: str,
    error: str,
    attempts: int | None = None,
    recipients: list[str] | None = None,
    notified: bool | datetime = False,
    next_attempt_at: datetime | None = None,
    spool_dir: str = "",
) -> CallRecord:
    """Write the outcome on the row. With ``spool_dir`` (the mail went), a row that cannot be
    written (a lock timeout under load, the database gone that instant) gets a spool file
    saying so instead, so that retry records it rather than mailing it again."""
    fields: dict[str, object] = {"status": status, "last_error": error[:512]}
    if call.message_id:  # set by plan(): what a follow-up or a repeat miss replies to
        fields["message_id"] = call.message_id
        fields["thread_of"] = call.thread_of
    if next_attempt_at is not None:
        fields["next_attempt_at"] = next_attempt_at
        call.next_attempt_at = next_attempt_at
    if attempts is not None:
        fields["attempts"] = attempts
        call.attempts = attempts
    if recipients is not None:
        fields["recipients"] = recipients
        call.recipients = tuple(recipients)
    if notified:
        fields["notified_at"] = notified if isinstance(notified, datetime) else utcnow()
        call.notified_at = fields["notified_at"]  # type: ignore[assignment]
    call.status = status
    call.last_error = error[:512]
    try:
        store.update_call(call.callid, **fields)
    except StorageError as exc:
        # The row stays as it was (pending); say so, and keep the truth about a mail that went.
        kept = ""
        if spool_dir:
            try:
                kept = "; kept in " + spool.write(spool_dir, call)
            except spool.SpoolError as why:
                kept = f"; not spooled either ({why}): retry may send it again"
        log.error(f"call {call.callid}: could not record status {status}: {exc}{kept}")
    return call
