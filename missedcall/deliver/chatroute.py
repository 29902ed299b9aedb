"""Deliver one call to mail *and* chat targets, each target on its own, remembering who has it.

notify() comes here instead of its single transport.send when a call has a
chat target (or on any retry, so a call whose chat target was removed meanwhile
still does not mail twice). Storm control has already split the keys;
this module sends to the ``single`` ones that do not have the call yet:

- the mail addresses in one message, as notify would (one outcome for all);
- each chat target with its own request, bounded by what is left of the
  AGI's budget (a target with no time left stays pending for ``retry``).

Each outcome is written to ``missedcall_deliveries`` (missedcall.record.deliveries)
at once, so a crash or a 5xx on one target never resends to those that got it.
A permanent refusal (4xx) fails that target at once with its reason; 429 sets
the next attempt no earlier than ``retry_after``; Telegram's
``migrate_to_chat_id`` moves the stored recipient to the new chat and sends there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from missedcall import budget, log
from missedcall.config import ConfigError, Settings
from missedcall.deliver import mime, targets, transport
from missedcall.record.model import CallRecord

if TYPE_CHECKING:
    from missedcall.deliver.chatsend import Options
    from missedcall.record.storage import Store

#: Seconds of budget a chat request needs to be worth starting (see notify.SEND_RESERVE).
SEND_RESERVE = 0.5
DEFERRED = "not sent yet: no time left in this run; retry sends it"


@dataclass
class Result:
    status: str  # sent | pending | failed (notify turns sent into held when digests wait)
    error: str
    notified: bool  # some target has the call (now or before)
    next_attempt_at: datetime | None


def deliver(store: Store, settings: Settings, call: CallRecord, message: mime.Draft, single: Sequence[str], *,
            held: bool, timeout: float, deadline: float | None, now: datetime, max_attempts: int,
            backoff: timedelta) -> Result:  # fmt: skip
    """Send to the ``single`` keys that lack the call; ``held``: some keys wait for a digest (then a call
    whose single messages all went is ``held``, not ``sent``)."""
    result = _deliver(store, settings, call, message, single, timeout=timeout, deadline=deadline, now=now,
                      max_attempts=max_attempts, backoff=backoff)  # fmt: skip
    if result.status == "sent" and held:
        from missedcall.deliver import flood
        from missedcall.record.db import StorageError

        try:
            result.status = "held" if flood.waiting(store, call.callid) else "sent"
        except StorageError:
            result.status = "held"
    return result


def _deliver(store: Store, settings: Settings, call: CallRecord, message: mime.Draft, single: Sequence[str], *,
             timeout: float, deadline: float | None, now: datetime, max_attempts: int,
             backoff: timedelta) -> Result:  # fmt: skip
    from missedcall.record import deliveries

    states = deliveries.states(store, call.callid)
    done = {k for k, (s, _) in states.items() if s == "sent"}
    refused = {k: e for k, (s, e) in states.items() if s == "failed"}
    todo = [k for k in single if k not in done and k not in refused]
    outcomes: dict[str, tuple[str, str]] = {k: ("failed", refused[k]) for k in single if k in refused}
    retry_after = 0
    mails = [k for k in todo if not targets.is_chat(k)]
    if mails:
        outcomes.update(_mail(store, settings, call, message, mails, timeout=timeout, deadline=deadline, now=now))
    chats = [k for k in todo if targets.is_chat(k)]
    if chats:
        got, retry_after = _chats(store, settings, call, chats, timeout=timeout, deadline=deadline, now=now)
        outcomes.update(got)
    notified = bool(done) or any(s == "sent" for s, _ in outcomes.values())
    waiting = {k: e for k, (s, e) in outcomes.items() if s == "pending"}
    failed = {k: e for k, (s, e) in outcomes.items() if s == "failed"}
    problems = "; ".join(f"{targets.show(k)}: {e}" for k, e in [*failed.items(), *waiting.items()])
    if waiting and call.attempts < max_attempts:
        later = now + max(backoff, timedelta(seconds=retry_after))
        return Result("pending", problems, notified, later)
    if waiting or failed:
        return Result("failed", problems, notified, None)
    return Result("sent", "", notified, None)


def _left(timeout: float, deadline: float | None) -> float:
    if deadline is None:
        return timeout
    return min(timeout, budget.left(deadline) - 0.25)


def _mail(store: Store, settings: Settings, call: CallRecord, message: mime.Draft, mails: list[str], *,
          timeout: float, deadline: float | None, now: datetime) -> dict[str, tuple[str, str]]:  # fmt: skip
    from missedcall.record import deliveries

    left = _left(timeout, deadline)
    if left < SEND_RESERVE:
        return {k: ("pending", DEFERRED) for k in mails}
    del message["To"]
    message["To"] = ", ".join(mails)
    try:
        transport.send(message, mails, settings, timeout=max(0.1, left))
    except transport.TransportError as exc:
        status = "pending" if exc.temporary else "failed"
        log.warning(f"call {call.callid}: mail not sent ({exc})")
        outcome = (status, f"mail not sent: {exc}")
    else:
        log.info(f"call {call.callid} in queue {call.queue}: mailed {len(mails)} recipient(s)")
        outcome = ("sent", "")
    for key in mails:
        deliveries.mark(store, call.callid, key, outcome[0], outcome[1], now)
    return {k: outcome for k in mails}


def _chats(store: Store, settings: Settings, call: CallRecord, keys: list[str], *, timeout: float,
           deadline: float | None, now: datetime) -> tuple[dict[str, tuple[str, str]], int]:  # fmt: skip
    """Each chat target on its own: one that fails (or raises) costs only itself."""
    from missedcall.deliver import chatsend
    from missedcall.record import deliveries

    outcomes: dict[str, tuple[str, str]] = {}
    retry_after = 0
    try:
        opts = chatsend.options(settings)
        urls = deliveries.urls(store, keys)
    except ConfigError as exc:
        for key in keys:
            outcomes[key] = ("pending", str(exc))
            deliveries.mark(store, call.callid, key, "pending", str(exc), now)
        log.warning(f"call {call.callid}: chat targets not notified: {exc}")
        return outcomes, 0
    label, language, zone = _look(store, settings, call)
    for key in keys:
        left = _left(timeout, deadline)
        if left < SEND_RESERVE:
            outcomes[key] = ("pending", DEFERRED)
            continue
        try:
            outcome, wait, ref = _one(store, call, key, urls.get(key, ""), opts, label=label, language=language,
                                      zone=zone, now=now, timeout=left)  # fmt: skip
        except Exception as exc:  # one bad target (a bug, a hostile answer) costs only itself
            reason = chatsend.webpost.scrub(f"{exc.__class__.__name__}: {exc}", [urls.get(key, ""), *opts.secrets])
            outcome, wait, ref = ("failed", f"unexpected error: {reason}"), 0, ""
        retry_after = max(retry_after, wait)
        outcomes[key] = outcome
        deliveries.mark(store, call.callid, key, outcome[0], outcome[1], now, ref=ref)
        if outcome[0] == "sent":
            log.info(f"call {call.callid} in queue {call.queue}: sent to {targets.show(key)}")
        else:
            log.warning(f"call {call.callid}: {targets.show(key)} not notified ({outcome[1]}); {outcome[0]}")
    return outcomes, retry_after


def _one(store: Store, call: CallRecord, key: str, stored: str, opts: Options, *, label: str, language: str,
         zone: tzinfo | None,
         now: datetime, timeout: float) -> tuple[tuple[str, str], int, str]:  # fmt: skip
    """Send one call to one chat target: ((status, reason), seconds to wait at least, the message's id)."""
    from missedcall.deliver import chatformat, chatsend
    from missedcall.record import deliveries

    scheme = targets.scheme_of(key)
    chat = targets.chat_id(key)
    document = chatformat.single(scheme, chat, call, label=label, language=language, zone=zone, now=now)
    try:
        ref = chatsend.send(key, stored, document, opts, timeout=timeout)
    except chatsend.ChatError as exc:
        if not exc.migrate_to:
            return ("pending" if exc.temporary else "failed", str(exc)), exc.retry_after, ""
        new_key = f"telegram:{exc.migrate_to}"
        moved = deliveries.rename(store, key, new_key)
        log.warning(f"{targets.show(key)} became {new_key} (a supergroup); {moved} recipient row(s) updated")
        document = chatformat.single(scheme, exc.migrate_to, call, label=label, language=language, zone=zone, now=now)
        try:
            ref = chatsend.send(new_key, stored, document, opts, timeout=timeout)
        except chatsend.ChatError as again:
            return ("pending" if again.temporary else "failed", f"moved to {new_key}: {again}"), again.retry_after, ""
    return ("sent", ""), 0, ref


def _look(store: Store, settings: Settings, call: CallRecord) -> tuple[str, str, tzinfo | None]:
    """The queue's label and language, and the zone: what the mail says, for the chat message."""
    from missedcall.deliver import notify
    from missedcall.record import queues

    own = queues.effective(store, call.queue, language=settings.language, min_wait=settings.min_wait)
    return own.label, own.language, notify.zone(settings)


def send_digest(store: Store, settings: Settings, key: str, calls: Sequence[CallRecord], *, now: datetime,
                timeout: float) -> None:  # fmt: skip
    """One digest to one chat target; raises transport.TransportError (temporary or not) like a mail would."""
    from missedcall.deliver import chatformat, chatsend, notify
    from missedcall.record import deliveries

    try:
        opts = chatsend.options(settings)
        stored = deliveries.urls(store, [key]).get(key, "")
        document = chatformat.digest(targets.scheme_of(key), targets.chat_id(key), calls, language=settings.language,
                                     zone=notify.zone(settings), now=now)  # fmt: skip
        _send_following(store, key, stored, document, opts, timeout=timeout)
    except ConfigError as exc:
        raise transport.TransportError(str(exc)) from None
    except chatsend.ChatError as exc:
        raise transport.TransportError(str(exc), temporary=exc.temporary) from None


def reopen_after_offline(store: Store, call: CallRecord, now: datetime) -> bool:
    """A call the AGI mailed while the database was down, with chat targets it could not reach then: record
    the mail addresses as having it and put the call back to pending, so retry sends to the chat targets only.
    False when the call has no chat target (nothing to do)."""
    from missedcall.record import deliveries

    chats = [k for k in call.recipients if targets.is_chat(k)]
    if not chats:
        return False
    for key in call.recipients:
        if not targets.is_chat(key):
            deliveries.mark(store, call.callid, key, "sent", "", now)
    store.update_call(call.callid, status="pending", next_attempt_at=now,
                      last_error="mailed while the database was down; chat targets not yet")  # fmt: skip
    call.status, call.next_attempt_at = "pending", now
    log.info(f"call {call.callid}: mailed offline; {len(chats)} chat target(s) left to retry")
    return True


def followup(store: Store, settings: Settings, call: CallRecord, line: str, *, timeout: float,
             event: str = "missed_call.resolved") -> dict[str, str]:  # fmt: skip
    """Tell every chat target that has ``call`` how it ended (``line``: e.g. "called back by 102 after 14 min").

    Telegram replies to its first message (reply_parameters); webhooks get ``event`` with the call's JSON
    (same callid); Slack, Mattermost and Teams get a short message. Each target on its own; returns
    {key: "" when sent, else the reason}. For the resolution tracker to call once a miss is resolved.
    """
    from missedcall.deliver import chatformat, chatsend
    from missedcall.record import deliveries

    outcomes: dict[str, str] = {}
    chats = [(k, ref) for k, ref in deliveries.delivered(store, call.callid) if targets.is_chat(k)]
    if not chats:
        return outcomes
    try:
        opts = chatsend.options(settings)
    except ConfigError as exc:
        return {k: str(exc) for k, _ in chats}
    urls = deliveries.urls(store, [k for k, _ in chats])
    now = call.resolved_at or datetime.now().astimezone()
    for key, ref in chats:
        try:
            document = chatformat.followup(targets.scheme_of(key), targets.chat_id(key), call, line, ref=ref,
                                           language=settings.language, now=now, event=event)  # fmt: skip
            _send_following(store, key, urls.get(key, ""), document, opts, timeout=timeout)
            outcomes[key] = ""
        except chatsend.ChatError as exc:
            outcomes[key] = str(exc)
        except Exception as exc:  # one target costs only itself
            said = f"{exc.__class__.__name__}: {exc}"
            outcomes[key] = chatsend.webpost.scrub(said, [urls.get(key, ""), *opts.secrets])
        if outcomes[key]:
            log.warning(f"call {call.callid}: follow-up to {targets.show(key)} not sent ({outcomes[key]})")
    return outcomes


def _send_following(store: Store, key: str, stored: str, document: dict, opts: Options, *, timeout: float) -> None:
    """chatsend.send, following a Telegram group that became a supergroup (the stored recipient moves too)."""
    from missedcall.deliver import chatsend
    from missedcall.record import deliveries

    try:
        chatsend.send(key, stored, document, opts, timeout=timeout)
    except chatsend.ChatError as exc:
        if not exc.migrate_to:
            raise
        new_key = f"telegram:{exc.migrate_to}"
        if targets.problem(new_key):
            raise
        deliveries.rename(store, key, new_key)
        document["chat_id"] = int(exc.migrate_to)
        chatsend.send(new_key, stored, document, opts, timeout=timeout)
