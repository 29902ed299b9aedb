"""Mail threads: the headers that tie an alert, a repeat alert and a follow-up together, and which thread an
alert joins.

The headers are pure: a Message-ID made from the callid, Outlook's Thread-Index
and Thread-Topic, In-Reply-To/References for a reply. Deciding the thread takes
one indexed query on the connection the notifier already holds: a repeat miss
(the same caller key, an earlier miss still open, mailed, within
MISSEDCALL_RESOLVE_HOURS) replies in that miss's thread; an empty caller key
(anonymous, an extension) never threads. This module is on the hook's path: it
imports nothing notify does not import anyway, and the settings parser only for
a non-default value.
"""

from __future__ import annotations

import binascii
from datetime import datetime, timedelta, timezone, tzinfo

from missedcall import log, text
from missedcall.config import ConfigError, Settings
from missedcall.deliver import mail, mime
from missedcall.deliver.placeholders import substitute
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord
from missedcall.record.storage import Store

DEFAULT_HOURS = 24
SUBJECT_MAX = 200  # as mail caps a subject


# --- the headers (pure) -------------------------------------------------------------------
# Every alert has a Message-ID made from its callid, so a resend after a crash carries the same
# one and the row can store it before the mail goes. Replies (a repeat miss, a follow-up) point at
# it with In-Reply-To/References, which Thunderbird, Gmail and Apple Mail thread by; Outlook
# threads by Thread-Index, whose 16-byte GUID is derived from the first call's callid, so the
# alert and everything after it share it without anything else being stored.

_FILETIME_OFFSET = 11_644_473_600  # seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01
_FNV_OFFSET = 0x6C62272E07BB014262B821756295C58D
_FNV_PRIME = 0x0000000001000000000000000000013B


class Thread:
    """The threading headers of one message. ``in_reply_to`` empty: it starts its conversation.

    A plain class, not a dataclass: making a dataclass costs the hook half a millisecond at import."""

    __slots__ = ("in_reply_to", "index", "message_id", "references", "topic")

    def __init__(self, message_id: str, index: str, topic: str, *, in_reply_to: str = "",
                 references: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.message_id = message_id
        self.index = index  # Thread-Index, base64
        self.topic = topic  # Thread-Topic: the conversation's subject without "Re:"
        self.in_reply_to = in_reply_to
        self.references = references


def _id_part(callid: str) -> str:
    """The callid as the left part of a Message-ID: a dot-atom (no empty label between dots)."""
    part = ".".join(label for label in text.only(callid[:64], text.WORD_CHARS, ".").split(".") if label)
    return part or "call"


def message_id(callid: str, sender: str, kind: str = "missedcall") -> str:
    """The Message-ID of the alert (``kind`` "missedcall") or follow-up of ``callid``; the same every time."""
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else "localhost"
    return f"<{kind}.{_id_part(callid)}@{domain}>"


def thread_guid(callid: str) -> bytes:
    """16 bytes from the conversation's first callid (FNV-1a, 128 bits: no import on the hook's path)."""
    value = _FNV_OFFSET
    for byte in f"missedcall:{callid}".encode():
        value = ((value ^ byte) * _FNV_PRIME) & ((1 << 128) - 1)
    return value.to_bytes(16, "big")


def _filetime(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0, int((moment.timestamp() + _FILETIME_OFFSET) * 10_000_000))


def thread_index(root_callid: str, started: datetime, *, reply_at: datetime | None = None, reply_key: str = "") -> str:
    """Outlook's Thread-Index ([MS-OXOMSG] 2.2.1.3), base64: a 22-byte header (0x01, the 40 high bits of
    the conversation's FILETIME, the GUID) and, for a reply, one 5-byte child block (the time since)."""
    head_time = (_filetime(started) >> 24) & ((1 << 40) - 1)
    raw = b"\x01" + head_time.to_bytes(5, "big") + thread_guid(root_callid)
    if reply_at is not None:
        delta = max(0, _filetime(reply_at) - (head_time << 24))
        # Below 2**49 (about 1.8 years) the difference is kept from bit 18, else from bit 23 with the flag set.
        code = (delta >> 18) & 0x7FFFFFFF if delta < 1 << 49 else (1 << 31) | ((delta >> 23) & 0x7FFFFFFF)
        nibble = thread_guid(reply_key or root_callid)[0] & 0xF0  # "random" bits, the same for a resend
        raw += code.to_bytes(4, "big") + bytes([nibble | 1])
    return binascii.b2a_base64(raw, newline=False).decode("ascii")  # not base64: its import brings struct


def set_thread(message: mime.Draft, thread: Thread) -> None:
    message["Thread-Topic"] = mail.header_text(mail.clean(thread.topic, SUBJECT_MAX))
    message["Thread-Index"] = thread.index
    if thread.in_reply_to:
        message["In-Reply-To"] = thread.in_reply_to
        message["References"] = " ".join(thread.references or (thread.in_reply_to,))


_WHEN = {"en": ("today", "since {0:%Y-%m-%d %H:%M}"), "ru": ("сегодня", "с {0:%Y-%m-%d %H:%M}")}


def ordinal(n: int, language: str) -> str:
    """2nd, 3rd, 11th; 2-й, 3-й."""
    if language == "ru":
        return f"{n}-й"
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def repeat_subject(template: str, *, subject: str, call: CallRecord, number: int, first: datetime,
                   zone: tzinfo | None, language: str) -> str:  # fmt: skip
    """The subject of the ``number``-th miss of a caller whose first open miss was mailed as ``subject``."""
    ended = call.ended_at or first
    if first.tzinfo is None:
        first = first.replace(tzinfo=timezone.utc)
    same_day = first.astimezone(zone).date() == (ended if ended.tzinfo else ended.replace(tzinfo=timezone.utc)
                                                 ).astimezone(zone).date()  # fmt: skip
    today, since = _WHEN.get(language, _WHEN["en"])
    values = {
        "subject": topic(mail.clean(subject, SUBJECT_MAX)),
        "ordinal": ordinal(number, language),
        "when": today if same_day else since.format(first.astimezone(zone)),
        "caller": mail.describe_caller(call.caller_num, call.caller_name, language),
    }
    return mail.clean(substitute(template, values), SUBJECT_MAX)


def reply_subject(subject: str) -> str:
    """``Re: subject``, never ``Re: Re: subject``."""
    return subject if subject[:3].lower() == "re:" else f"Re: {subject}"


def topic(subject: str) -> str:
    """The subject without reply prefixes (Outlook's normalised subject)."""
    while subject[:3].lower() == "re:":
        subject = subject[3:].lstrip()
    return subject


# --- which thread (one query) ---------------------------------------------------------------


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
) -> tuple[Thread, str]:
    """The alert's threading headers and subject. Its Message-ID comes from its callid; a repeat miss (the
    caller has an open, mailed miss within MISSEDCALL_RESOLVE_HOURS) replies in that miss's thread, and
    ``call.message_id`` / ``call.thread_of`` are set for the row."""
    call.message_id = call.message_id or message_id(call.callid, settings.mail_from)
    ended = call.ended_at or call.entered_at or now
    root, earlier = _open_thread(call, settings, store, ended) if store is not None else (None, [])
    if root is None:
        call.thread_of = ""
        return Thread(call.message_id, thread_index(call.callid, ended), topic(subject)), subject
    call.thread_of = root.callid
    first, _ = mail.render(root, label=label if root.queue == call.queue else "", language=language,
                           templates=templates, zone=zone, host="")  # fmt: skip
    started = root.ended_at or root.entered_at or ended
    template = mail.load_template(language, "repeat_subject.txt", settings.template_dir)
    subject = repeat_subject(template, subject=first, call=call, number=len(earlier) + 2, first=started,
                                  zone=zone, language=language)  # fmt: skip
    references = tuple([root.message_id, *(c.message_id for c in earlier if c.message_id)][-10:])
    thread = Thread(
        call.message_id,
        thread_index(root.callid, started, reply_at=ended, reply_key=call.callid),
        topic(first),
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
