"""Which thread an alert belongs to: its own Message-ID, or a reply to the caller's open miss.

A repeat miss (the same caller key, an earlier miss still open, mailed, within
MISSEDCALL_RESOLVE_HOURS) is mailed as a reply in that miss's thread: one
indexed query on the connection the notifier already holds. An empty caller key
(anonymous, an extension) never threads. The headers themselves are built by
missedcall.deliver.mail; this module only decides. It is on the hook's path:
nothing beyond what notify imports anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from missedcall import log, text
from missedcall.config import ConfigError, Settings
from missedcall.deliver import mail
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord
from missedcall.record.storage import Store

DEFAULT_HOURS = 24


def voicemail_mode(settings: Settings) -> str:
    """MISSEDCALL_VOICEMAIL, read where a call is judged; a bad value mentions (doctor FAILs on it)."""
    from missedcall.deliver import threadsettings  # only for a call with a voicemail

    try:
        return threadsettings.voicemail_mode(settings)
    except ConfigError as exc:
        log.warning(f"{exc}; mentioning the voicemail")
        return "mention"


def resolve_hours(settings: Settings) -> int:
    """MISSEDCALL_RESOLVE_HOURS; the default costs the hook no import, a bad value is the default."""
    if not settings.raw.get("MISSEDCALL_RESOLVE_HOURS", "").strip():
        return DEFAULT_HOURS
    from missedcall.deliver import threadsettings

    try:
        return threadsettings.resolve_hours(settings)
    except ConfigError:
        return DEFAULT_HOURS  # doctor FAILs on it


def alert_thread(
    call: CallRecord,
    settings: Settings,
    store: Store | None,
    *,
    subject: str,
    label: str,
    language: str,
    templates: mail.Templates,
    zone: tzinfo | None,
    now: datetime,
) -> tuple[mail.Thread, str]:
    """The alert's threading headers and subject. Its Message-ID comes from its callid; a repeat miss (the
    caller has an open, mailed miss within MISSEDCALL_RESOLVE_HOURS) replies in that miss's thread, and
    ``call.message_id`` / ``call.thread_of`` are set for the row."""
    call.message_id = call.message_id or mail.message_id(call.callid, settings.mail_from)
    ended = call.ended_at or call.entered_at or now
    root, earlier = _open_thread(call, settings, store, ended) if store is not None else (None, [])
    if root is None:
        call.thread_of = ""
        return mail.Thread(call.message_id, mail.thread_index(call.callid, ended), mail.topic(subject)), subject
    call.thread_of = root.callid
    first, _ = mail.render(root, label=label if root.queue == call.queue else "", language=language,
                           templates=templates, zone=zone, host="")  # fmt: skip
    started = root.ended_at or root.entered_at or ended
    template = mail.load_template(language, "repeat_subject.txt", settings.template_dir)
    subject = mail.repeat_subject(template, subject=first, call=call, number=len(earlier) + 2, first=started,
                                  zone=zone, language=language)  # fmt: skip
    references = tuple([root.message_id, *(c.message_id for c in earlier if c.message_id)][-10:])
    thread = mail.Thread(
        call.message_id,
        mail.thread_index(root.callid, started, reply_at=ended, reply_key=call.callid),
        mail.topic(first),
        in_reply_to=references[-1],
        references=references,
    )
    return thread, subject


def _open_thread(
    call: CallRecord, settings: Settings, store: Store, ended: datetime
) -> tuple[CallRecord | None, list[CallRecord]]:
    """The first open, mailed miss of this caller within the horizon, and the repeats already in its thread."""
    key = call.caller_key or text.caller_key(call.caller_num)
    if not key or call.source == "test":
        return None, []  # anonymous or internal: never threaded; `missedcall-admin test` never joins a real thread
    hours = resolve_hours(settings)
    try:
        found = store.open_misses(key, ended - timedelta(hours=hours), ended, exclude=call.callid)
    except StorageError as exc:  # threading is a nicety: the alert goes out on its own
        log.warning(f"call {call.callid}: cannot look for an earlier miss of this caller: {exc}")
        return None, []
    roots = [c for c in found if not c.thread_of and c.message_id and c.status in ("sent", "held")]
    if call.thread_of:  # a resend keeps the thread its first attempt chose
        roots = [c for c in roots if c.callid == call.thread_of] or roots
    if not roots:
        return None, []
    return roots[0], [c for c in found if c.thread_of == roots[0].callid]
