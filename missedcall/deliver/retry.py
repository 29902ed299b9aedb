"""``missedcall-admin retry`` (cron, every minute): finish what the detectors could not.

Four steps, each safe to run in several processes at once and after any crash:

1. **Import the spool.** Calls the AGI spooled while the database was down
   become rows. ``claim_call`` is the idempotency key: a call already recorded
   (by the sweeper, or by the AGI's claim whose answer was lost) is not
   recorded twice, and one the AGI already mailed is recorded ``sent``, never
   mailed again. Only files older than spool.SETTLE are taken.
2. **Resend due pending calls** through notify(): back-off 1, 5, 15, 60 minutes
   (notify.BACKOFF) after each failed attempt; after notify.MAX_ATTEMPTS the
   call is ``failed``. Each attempt is counted on the row before the mail goes
   (Store.begin_attempt), which is also the lock between concurrent retries.
3. **Send due flood digests** (missedcall.deliver.flood): one message per address
   listing every call held for it, once its window is over.
4. **Send due follow-ups** (missedcall.deliver.followup): one mail in the thread of
   each resolved miss, with the same back-off and attempt limit.

``--failed`` first puts failed calls and digests back in the queue (after the
relay was fixed): a call whose own mail never went is retried from scratch, one
whose digest failed gets its digest again.

One spool file, one call and one digest are each the unit of failure: an
unexpected error on one is logged with its id and the item is *parked* (a spool
file moved aside as ``bad-…``, a row ``failed`` with last_error starting with
:data:`PARKED`, a digest's held rows ``failed``) so that it is never retried in
a hot loop and never stops the others; ``doctor`` names it (:func:`health`). A
database error is an item's fault only when the database still answers right
after it; otherwise the run stops there and the next one starts again.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from missedcall import log, text
from missedcall.config import Settings
from missedcall.deliver import digest, flood, followup, notify, spool, targets, transport
from missedcall.record import deliveries, followups, held
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.schema import SCHEMA_VERSION
from missedcall.record.storage import Store

#: Pending calls handled per run at most; the next run (a minute later) takes the rest.
BATCH = 1000
#: A digest that is being sent is leased for this long (a crash mid-send: resent after it).
DIGEST_LEASE = 300
#: Pending calls are sent by this many connections at once when there are at least PARALLEL_FROM of them.
WORKERS = 4
PARALLEL_FROM = 20
#: How the last_error of a call parked by this module starts (doctor reports those as FAIL).
PARKED = "parked: "


@dataclass
class Report:
    imported: int = 0  # spool files that became rows
    adopted: int = 0  # ... of which the AGI had already mailed (recorded sent, not resent)
    known: int = 0  # spool files whose call was already recorded
    bad: int = 0  # unreadable spool files moved aside
    requeued: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # notify() results by status
    digests: int = 0
    digest_calls: int = 0
    digest_failures: int = 0
    followups: dict[str, int] = field(default_factory=dict)  # follow-up threads by result (followup.send_due)
    parked: list[str] = field(default_factory=list)  # ids of items set aside by an unexpected error
    handled: int = 0  # items that went through without one
    errors: list[str] = field(default_factory=list)
    resolved: int = 0  # open misses the resolver found called back or got through
    resolve_error: str = ""

    def all_failed(self) -> bool:
        """Every item this run touched was parked or set aside (the exit code says so)."""
        return bool(self.parked or self.bad) and not self.handled

    def tally(self, status: str) -> None:
        self.outcomes[status] = self.outcomes.get(status, 0) + 1

    def did_something(self) -> bool:
        return bool(
            self.imported or self.known or self.bad or self.requeued or self.outcomes or self.digests
            or self.digest_failures or self.parked or self.resolved or self.resolve_error or self.followups
        )  # fmt: skip

    def summary(self) -> str:
        parts = []
        if self.imported or self.known or self.bad:
            parts.append(
                f"spool: {self.imported} call(s) recorded ({self.adopted} already mailed by the AGI),"
                f" {self.known} already known" + (f", {self.bad} unreadable file(s) set aside" if self.bad else "")
            )
        if self.requeued:
            parts.append(f"{self.requeued} failed call(s)/digest(s) queued again")
        if self.outcomes:
            parts.append("pending calls: " + ", ".join(f"{n} {s}" for s, n in sorted(self.outcomes.items())))
        if self.digests or self.digest_failures:
            parts.append(
                f"digests: {self.digests} sent listing {self.digest_calls} call(s)"
                + (f", {self.digest_failures} failed" if self.digest_failures else "")
            )
        if self.resolved:
            parts.append(f"{self.resolved} missed call(s) resolved by a callback or a later call")
        if self.resolve_error:
            parts.append(f"resolver failed: {self.resolve_error}")
        if self.followups:
            parts.append("follow-ups: " + ", ".join(f"{n} {s}" for s, n in sorted(self.followups.items())))
        if self.parked:
            shown = ", ".join(self.parked[:5]) + (", …" if len(self.parked) > 5 else "")
            parts.append(f"{len(self.parked)} item(s) parked after an unexpected error: {shown} (see doctor)")
        return "retry: " + ("; ".join(parts) if parts else "nothing to do")


def run(
    store: Store,
    settings: Settings,
    *,
    now: datetime | None = None,
    settle: float = spool.SETTLE,
    failed: bool = False,
    timeout: float | None = None,
) -> Report:
    """One retry pass; raises StorageError when the database fails (the spool is left as it was)."""
    now = now or utcnow()
    report = Report()
    version = store.schema_version()
    if version is None or version < SCHEMA_VERSION:
        store.init()
    import_spool(store, settings, report, now=now, settle=settle)
    if failed:
        report.requeued = requeue_failed(store, now)
    timeout = settings.smtp_timeout if timeout is None else timeout
    for callid, status in resend(store, settings, store.due_calls(now, limit=BATCH), now=now, timeout=timeout):
        if status.startswith(PARKED):
            report.parked.append(f"call {callid}")
        else:
            report.handled += 1
            report.tally(status)
    send_digests(store, settings, report, now=now, timeout=timeout)
    from missedcall.resolve import run as resolver

    report.resolved, report.resolve_error = resolver.run_isolated(store, settings, now=now)
    # After the resolver: a miss resolved in this run gets its follow-up in this run.
    send_followups(store, settings, report, now=now, timeout=timeout)
    if report.did_something():
        log.info(report.summary())
    return report


def resend(
    store: Store, settings: Settings, calls: list[CallRecord], *, now: datetime, timeout: float
) -> list[tuple[str, str]]:
    """notify() each call, [(callid, status)]; a backlog (after an outage) is shared by WORKERS connections, so
    a slow relay or mail program is not waited for one call at a time. begin_attempt() keeps each call to one
    of them. A call that raises is parked (status ``PARKED...``) and the others go on."""
    if len(calls) < PARALLEL_FROM:
        return [(call.callid, _resend_one(store, settings, call, now=now, timeout=timeout)) for call in calls]

    def work(share: list[CallRecord]) -> list[tuple[str, str]]:
        with Store.open(settings.db, timeout=30.0) as own:
            return [(call.callid, _resend_one(own, settings, call, now=now, timeout=timeout)) for call in share]

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return [done for part in pool.map(work, [calls[i::WORKERS] for i in range(WORKERS)]) for done in part]


def _resend_one(store: Store, settings: Settings, call: CallRecord, *, now: datetime, timeout: float) -> str:
    try:
        return notify.notify(store, settings, call, timeout=timeout, now=now).status
    except Exception as exc:
        if isinstance(exc, StorageError) and not store.answers():
            raise  # the database went away: not this call's fault, the next run starts again
        reason = f"{PARKED}{_describe(exc)}"
        log.error(f"retry: call {call.callid}: {reason}; set aside (doctor shows it)")
        try:
            store.update_call(call.callid, status="failed", last_error=reason)
        except StorageError as why:
            log.error(f"retry: call {call.callid}: could not park it: {why}")
        return reason



def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:400]


def import_spool(store: Store, settings: Settings, report: Report, *, now: datetime, settle: float) -> None:
    try:
        paths = spool.ready(settings.spool_dir, now=now.timestamp(), settle=settle)
    except spool.SpoolError as exc:
        report.errors.append(str(exc))
        log.error(f"retry: {exc}")
        return
    for path in paths:
        try:
            readable = _import_one(store, path, report, now=now)
        except Exception as exc:
            if isinstance(exc, StorageError) and not store.answers():
                raise  # the database went away: the file stays for the next run
            kept = spool.quarantine(path)
            report.parked.append(f"spool file {os.path.basename(path)}")
            log.error(f"retry: spool file {path}: {_describe(exc)}; moved to {kept}")
            continue
        report.handled += readable


def _import_one(store: Store, path: str, report: Report, *, now: datetime) -> bool:
    """Record one spool file; False when it was not a call of ours (set aside) or is gone."""
    try:
        item = spool.read(path)
    except spool.SpoolGone:
        return False  # another retry took it
    except spool.SpoolError as exc:
        kept = spool.quarantine(path)
        report.bad += 1
        log.error(f"retry: {exc}; moved to {kept}")
        return False
    call = item.call
    call.next_attempt_at = now  # a pending one is due at once: its back-off was spent waiting here
    if store.claim_call(call):
        report.imported += 1
        report.adopted += item.mailed
        log.info(f"retry: spooled call {call.callid} recorded as {call.status}")
        if item.mailed:
            _chat_after_offline(store, call, now)
    else:
        report.known += 1
        existing = store.get_call(call.callid)
        if item.mailed and existing is not None and existing.status == "pending":
            # The row never heard that the mail went (its writer lost the database): it did.
            store.update_call(
                call.callid,
                status="held" if call.status == "held" and flood.waiting(store, call.callid) else "sent",
                last_error="",
                recipients=list(call.recipients),
                notified_at=call.notified_at or now,
                attempts=max(existing.attempts, call.attempts),
                message_id=call.message_id or existing.message_id,
            )
            report.adopted += 1
    spool.remove(path)
    return True


def _chat_after_offline(store: Store, call: CallRecord, now: datetime) -> None:
    """A call the AGI mailed offline still owes its chat targets (see chatroute.reopen_after_offline)."""
    if any(targets.is_chat(k) for k in call.recipients):
        from missedcall.deliver import chatroute

        chatroute.reopen_after_offline(store, call, now)


def requeue_failed(store: Store, now: datetime) -> int:
    """Put failed calls and digests back in the queue; returns how many rows changed."""
    return (
        held.requeue_failed(store, now)
        + store.requeue_unsent(now)
        + deliveries.requeue_failed(store, now)
        + followups.requeue_failed(store, now)
    )


def send_followups(store: Store, settings: Settings, report: Report, *, now: datetime, timeout: float) -> None:
    """The follow-ups of resolved misses; whatever goes wrong there never stops the alerts' work."""
    try:
        done = followup.send_due(store, settings, now=now, timeout=timeout)
    except Exception as exc:
        if isinstance(exc, StorageError) and not store.answers():
            raise
        report.errors.append(f"follow-ups: {_describe(exc)}")
        log.error(f"retry: follow-ups: {_describe(exc)}; the next run tries again")
        return
    report.followups = done.counts
    report.handled += sum(done.counts.values())
    report.parked += [f"follow-up of call {key}" for key in done.parked]


def send_digests(store: Store, settings: Settings, report: Report, *, now: datetime, timeout: float) -> None:
    for email in flood.due_addresses(store, now):
        batch = None
        try:
            batch = flood.lease(store, email, now, now + timedelta(seconds=DIGEST_LEASE))
            if batch is None:
                continue  # another retry took it
            _send_digest(store, settings, report, batch, now=now, timeout=timeout)
        except Exception as exc:
            if isinstance(exc, StorageError) and not store.answers():
                raise
            reason = f"{PARKED}{_describe(exc)}"
            report.parked.append(f"digest to {email}")
            log.error(f"retry: digest to {email}: {reason}; its held calls are set aside (doctor shows them)")
            if batch is not None:
                try:
                    flood.digest_failed(store, batch, reason, give_up=True, retry_at=now)
                except StorageError as why:
                    log.error(f"retry: digest to {email}: could not park it: {why}")
            continue
        report.handled += 1


def _send_digest(
    store: Store, settings: Settings, report: Report, batch: flood.Batch, *, now: datetime, timeout: float
) -> None:
    email = batch.email
    problem = targets.problem(email)
    if problem:
        raise ValueError(f"address {text.printable(email, limit=254, replace='?')!r} {problem}")
    calls = flood.calls(store, batch.callids)
    try:
        after_hours = bool(batch.kinds) and batch.kinds <= {"hours"}
        _digest_out(store, settings, email, calls, now=now, timeout=timeout, after_hours=after_hours)
    except transport.TransportError as exc:
        give_up = batch.attempts >= notify.MAX_ATTEMPTS or (targets.is_chat(email) and not exc.temporary)
        flood.digest_failed(store, batch, str(exc), give_up=give_up, retry_at=now + notify.backoff(batch.attempts))
        report.digest_failures += 1
        log.warning(f"retry: digest of {len(calls)} call(s) to {email} not sent: {exc}")
        return
    flood.digest_sent(store, batch, now)
    report.digests += 1
    report.digest_calls += len(calls)
    log.info(f"retry: digest of {len(calls)} held call(s) sent to {email}")


def _digest_out(store: Store, settings: Settings, email: str, calls: list[CallRecord], *, now: datetime,
                timeout: float, after_hours: bool = False) -> None:  # fmt: skip
    """Send one digest to a mail address or a chat target; raises transport.TransportError."""
    if targets.is_chat(email):
        from missedcall.deliver import chatroute

        chatroute.send_digest(store, settings, email, calls, now=now, timeout=timeout)
        return
    message = digest.build(
        calls,
        to=email,
        sender=settings.mail_from,
        language=settings.language,
        limit=settings.flood_limit,
        window=settings.flood_window,
        zone=notify.zone(settings),
        now=now,
        after_hours=after_hours,
        region=str(settings.raw.get("MISSEDCALL_REGION", "") or ""),
    )
    transport.send(message, [email], settings, timeout=timeout)
