"""The follow-up: one short mail in the alert's thread once a miss was resolved (called back, got through).

``retry`` calls :func:`send_due` every minute. The resolver marks a resolved,
mailed miss ``followup = 'pending'``; here every thread (a miss and the repeat
misses that replied to it) gets one follow-up, to the addresses its alerts went
to, as ``Re: <the alert's subject>`` with In-Reply-To/References pointing at the
alerts and Outlook's Thread-Topic/Thread-Index. The guarantees are the alerts':

- each thread is the unit of failure: an unexpected error parks it (``failed``,
  the reason on its missedcall_followups row) and the others go on;
- storm control counts it (missedcall.deliver.flood.admit): an address whose
  window is full gets it when the window closes, singly, never in a digest;
- the attempt is counted before the mail goes (the lock between two retries), a
  relay failure leaves it ``pending`` with the alerts' back-off, and after
  notify.MAX_ATTEMPTS (or a permanent refusal) it is ``failed`` with the reason;
  a sent follow-up is never sent again (a crash between the send and the write
  costs one duplicate at most, as for alerts);
- MISSEDCALL_FOLLOWUP=off: nothing is sent, pending ones become ``off``.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from missedcall import log, text
from missedcall.config import ConfigError, Settings
from missedcall.deliver import flood, mail, mime, notify, plural, targets, threads, threadsettings, transport
from missedcall.deliver.placeholders import substitute
from missedcall.record import followups, queues
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.storage import Store

#: Threads handled per run at most; the next run takes the rest.
BATCH = 1000
PARKED = "parked: "

_TEXT = {
    "en": {
        "called-back": "Called back{by} {after} after the miss",
        "called-back-by": " by {who}",
        "talked": ", talked {talk}",
        "got-through": "Called again at {time} and was answered{by}",
        "got-through-by": (" by {who}", ""),
        "closes": "This closes {count} from this number.",
        "span": ("{s} s", "{m} min", "{h} h {m:02d} min"),
    },
    "ru": {
        "called-back": "Перезвонили{by} через {after} после пропущенного звонка",
        "called-back-by": " с {who}",
        "talked": ", разговор {talk}",
        "got-through": "Абонент позвонил снова в {time}{by}",
        "got-through-by": (", ответил {who}", ", звонок принят"),
        "closes": "Закрыто: {count} с этого номера.",
        "span": ("{s} с", "{m} мин", "{h} ч {m:02d} мин"),
    },
}


@dataclass
class Outcome:
    """What one :func:`send_due` run did: threads by result, and the keys of those it parked."""

    counts: dict[str, int] = field(default_factory=dict)
    parked: list[str] = field(default_factory=list)

    def tally(self, status: str, n: int = 1) -> None:
        if n:
            self.counts[status] = self.counts.get(status, 0) + n


def span(seconds: float, language: str) -> str:
    """14 min, 45 s, 2 h 05 min."""
    seconds = max(0, int(seconds))
    forms = _TEXT[language]["span"]
    if seconds < 60:
        return forms[0].format(s=seconds)
    if seconds < 3600:
        return forms[1].format(m=seconds // 60)
    return forms[2].format(h=seconds // 3600, m=seconds % 3600 // 60)


def talk_time(seconds: int) -> str:
    """3:20, 1:02:03."""
    hours, rest = divmod(max(0, seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def outcome_text(call: CallRecord, *, language: str, zone: tzinfo | None) -> str:
    """The sentence that closes the miss, from its resolution columns (written by the resolver: untrusted)."""
    words = _TEXT[language]
    who = mail.clean(call.resolved_by, 128)
    missed = call.ended_at or call.entered_at
    resolved = call.resolved_at or missed
    if call.resolution == "got-through":
        moment = (resolved or utcnow()).astimezone(zone)
        local_missed = (missed or resolved or utcnow()).astimezone(zone)
        shown = f"{moment:%H:%M}" if moment.date() == local_missed.date() else f"{moment:%Y-%m-%d %H:%M}"
        known, unknown = words["got-through-by"]
        return words["got-through"].format(time=shown, by=known.format(who=who) if who else unknown) + "."
    after = (resolved - missed).total_seconds() if resolved and missed else 0
    by = words["called-back-by"].format(who=who) if who else ""
    sentence = words["called-back"].format(by=by, after=span(after, language))
    if call.talk_seconds:
        sentence += words["talked"].format(talk=talk_time(call.talk_seconds))
    return sentence + "."


def build(root: CallRecord, members: Sequence[CallRecord], settings: Settings, *, to: list[str], label: str,
          language: str, now: datetime, host: str | None = None) -> mime.Draft:  # fmt: skip
    """The follow-up of the thread that ``root`` started; ``members`` are its resolved calls, oldest first."""
    zone = notify.zone(settings)
    templates = mail.load_templates(language, settings.template_dir)
    host = host or socket.gethostname()
    first, _ = mail.render(root, label=label, language=language, templates=templates, zone=zone, host=host)
    last = members[-1]
    closed = last if last.resolution else next((m for m in members if m.resolution), last)
    notes = []
    if len(members) > 1:
        notes.append(_TEXT[language]["closes"].format(count=plural.count(len(members), "missed call", language)))
    if any(m.voicemail for m in members) and threads.voicemail_mode(settings) == "mention":
        notes.append(mail.VOICEMAIL_TEXT[language])
    queue = mail.clean(last.queue, 64)
    label = mail.clean(label, 128)
    values = {
        "outcome": outcome_text(closed, language=language, zone=zone),
        "notes": "".join(f"{line}\n" for line in notes),
        "caller": mail.describe_caller(last.caller_num, last.caller_name, language),
        "queue_display": f"{queue} ({label})" if label and label != queue else queue,
        "ended_at": mail.format_time(last.ended_at or last.entered_at, zone, language),
        "callid": mail.clean(last.callid, 64),
        "resolved_by": mail.clean(closed.resolved_by, 128),
        "host": mail.clean(host, 255),
    }
    body = substitute(mail.load_template(language, "followup_body.txt", settings.template_dir), values)
    references = tuple(
        m.message_id or threads.message_id(m.callid, settings.mail_from) for m in _thread_order(root, members)
    )[-10:]
    started = root.ended_at or root.entered_at or now
    thread = threads.Thread(
        threads.message_id(root.callid, settings.mail_from, "missedcall-followup"),
        threads.thread_index(
            root.callid, started, reply_at=closed.resolved_at or now, reply_key=f"followup:{root.callid}"
        ),
        threads.topic(first),
        in_reply_to=references[-1],
        references=references,
    )
    message = mail.build_message(subject=threads.reply_subject(threads.topic(first)), body=body,
                                 sender=settings.mail_from, recipients=to, callid=root.callid, now=now,
                                 message_id=thread.message_id)  # fmt: skip
    threads.set_thread(message, thread)
    return message


def _thread_order(root: CallRecord, members: Sequence[CallRecord]) -> list[CallRecord]:
    return [root, *(m for m in members if m.callid != root.callid)]


def send_due(store: Store, settings: Settings, *, now: datetime | None = None, timeout: float | None = None,
             limit: int = BATCH) -> Outcome:  # fmt: skip
    """Send every due follow-up, one thread at a time; raises StorageError only when the database is gone."""
    now = now or utcnow()
    timeout = settings.smtp_timeout if timeout is None else timeout
    outcome = Outcome()
    try:
        enabled = threadsettings.followup_enabled(settings)
    except ConfigError as exc:
        log.error(f"follow-ups: {exc}; none sent until it is fixed")
        return outcome
    if not enabled:
        outcome.tally("off", followups.switch_off(store))
        return outcome
    groups: dict[str, list[CallRecord]] = {}
    for call in followups.due(store, now, limit=limit):
        groups.setdefault(call.thread_of or call.callid, []).append(call)
    for key, members in groups.items():
        try:
            status = _send_thread(store, settings, key, members, now=now, timeout=timeout)
        except Exception as exc:
            if isinstance(exc, StorageError) and not store.answers():
                raise
            _park(store, key, members, f"{PARKED}{exc.__class__.__name__}: {exc}"[:400])
            outcome.parked.append(key)
            continue
        outcome.tally(status)
    if outcome.counts or outcome.parked:
        shown = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts.items()))
        log.info(f"follow-ups: {shown}" + (f"; {len(outcome.parked)} parked" if outcome.parked else ""))
    return outcome


def _send_thread(store: Store, settings: Settings, key: str, members: list[CallRecord], *, now: datetime,
                 timeout: float) -> str:  # fmt: skip
    """One thread's follow-up; returns sent, pending (relay trouble), held (storm control), failed or busy."""
    members.sort(key=lambda m: (m.ended_at or m.entered_at or now, m.id or 0))
    root = next((m for m in members if m.callid == key), None) or store.get_call(key) or members[0]
    callids = [m.callid for m in members]
    addresses = _addresses([root, *members])
    existing = followups.get(store, key)
    state = existing or followups.start(store, key, addresses)
    told = _tell_chats(store, settings, [root, *members], timeout=timeout) if existing is None else 0
    # The row is text anyone with database access may edit: only addresses fit for a header are mailed.
    state.waiting = tuple(a for a in state.waiting if not mail.address_problem(a))
    state.granted = tuple(a for a in state.granted if not mail.address_problem(a))
    if not addresses and not state.waiting and not state.granted:
        if told:  # the alert went to chats only, and they have heard how it ended
            followups.finish(store, state, callids, "sent", now)
            return "sent"
        state.last_error = "nobody was mailed about this miss"
        followups.finish(store, state, callids, "failed", now)
        return "failed"
    if not state.waiting and not state.granted:
        # Everyone has it: another retry sent it a moment ago, or a crash came between the send and this write.
        followups.finish(store, state, callids, "sent", now)
        return "already sent"
    if state.attempts >= notify.MAX_ATTEMPTS:
        state.last_error = state.last_error or f"gave up after {state.attempts} attempts"
        followups.finish(store, state, callids, "failed", now)
        return "failed"
    if not followups.begin_attempt(store, state, now + notify.backoff(state.attempts + 1), now):
        return "busy"  # another retry is on it
    opens = None
    if state.waiting:
        split, opens = flood.admit(store, state.waiting, limit=settings.flood_limit,
                                   window_minutes=settings.flood_window, now=now)  # fmt: skip
        state.granted, state.waiting = (*state.granted, *split.single), tuple(split.held)
    if not state.granted:
        state.attempts -= 1  # storm control, not the relay: no attempt spent
        state.next_attempt_at = opens or now + timedelta(minutes=settings.flood_window)
        followups.save(store, state)
        return "held"
    followups.save(store, state)  # the addresses counted are kept, so a retry does not count them again
    own = queues.effective(store, root.queue, language=settings.language, min_wait=settings.min_wait)
    try:
        # A template folder that cannot be read is an admin's to fix, like a relay: retried with back-off.
        message = build(root, members, settings, to=list(state.granted), label=own.label, language=own.language,
                        now=now)  # fmt: skip
        transport.send(message, list(state.granted), settings, timeout=timeout)
    except (transport.TransportError, mail.TemplateError) as exc:
        state.last_error = str(exc)
        log.warning(f"follow-up of call {key}: not sent ({exc}); attempt {state.attempts}")
        if not getattr(exc, "temporary", True) or state.attempts >= notify.MAX_ATTEMPTS:
            followups.finish(store, state, callids, "failed", now)
            return "failed"
        followups.save(store, state)
        return "pending"
    log.info(f"follow-up of call {key}: mailed {len(state.granted)} recipient(s)")
    state.granted, state.attempts, state.last_error = (), 0, ""
    if state.waiting:
        state.next_attempt_at = opens or now + timedelta(minutes=settings.flood_window)
        followups.save(store, state)
        return "held"
    followups.finish(store, state, callids, "sent", now)
    return "sent"


def _tell_chats(store: Store, settings: Settings, calls: Sequence[CallRecord], *, timeout: float) -> int:
    """The chat targets of the thread's alerts hear how it ended (Telegram replies to its first message, a
    webhook gets ``missed_call.resolved``), once, when the thread's follow-up starts: best effort, each
    target on its own, a failure logged, never holding back the mail. Returns how many targets heard it."""
    chatty = [c for c in calls if any(targets.is_chat(k) for k in c.recipients)]
    if not chatty:
        return 0  # the chat code is never imported for mail-only threads
    from missedcall.deliver import chatroute

    told = 0
    for call in {c.callid: c for c in chatty}.values():
        line = outcome_text(call, language=settings.language, zone=notify.zone(settings))
        try:
            outcomes = chatroute.followup(store, settings, call, line, timeout=timeout)
        except Exception as exc:  # one call's chats cost only themselves
            log.warning(f"follow-up of call {call.callid} to chat targets: {exc.__class__.__name__}: {exc}")
            continue
        for target, why in outcomes.items():
            if why:
                log.warning(f"follow-up of call {call.callid} to {target}: {why}")
            else:
                told += 1
    return told


def _addresses(calls: Sequence[CallRecord]) -> list[str]:
    """Everyone the thread's alerts went to, each once, only addresses fit for a header."""
    found: list[str] = []
    for call in calls:
        for address in call.recipients:
            if address.lower() not in {a.lower() for a in found} and not mail.address_problem(address):
                found.append(address)
    return found


def _park(store: Store, key: str, members: list[CallRecord], reason: str) -> None:
    log.error(f"follow-up of call {text.printable(key, limit=64)}: {reason}; set aside (doctor shows it)")
    try:
        # Whoever has not had it stays on the row, so that `retry --failed` sends it to them later.
        state = followups.get(store, key) or followups.start(store, key, _addresses(members))
        state.last_error = reason
        followups.finish(store, state, [m.callid for m in members], "failed", utcnow())
    except StorageError as why:
        log.error(f"follow-up of call {key}: could not park it: {why}")

