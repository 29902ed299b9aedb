"""The digest: one message to one address listing the calls held for it. Pure.

Two reasons to hold a call: storm control (missedcall.deliver.flood) and a
queue closed for the night (missedcall.deliver.afterhours: the morning
summary). Each row is short enough not to wrap on a phone: time, number, the
caller's name clipped, wait; the date and zone stand above the rows of each
day, the queue only when the digest lists more than one, and the call ids
(for ``missedcall-admin log``) come at the end. Caller-controlled text goes
through ``mail.clean`` like in single mails, and the only recipient is the
one address the digest is for.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from datetime import datetime, tzinfo

from missedcall.deliver import mail, mime, phone, plural
from missedcall.record.model import CallRecord

# {calls}, {notifications} and {minutes} are a count with its noun in the right form (plural.count).
_TEXT = {
    "en": {
        "subject": "Digest: {calls} — {queues}",
        "intro": (
            "You already got {notifications} within {minutes}, so the following {calls}\n"
            "were collected into this one message instead of one mail each.\n"
        ),
        "outro": "Sent by missedcall on {host}. `missedcall-admin log` shows every call.",
        "closed_subject": "Missed while closed: {calls} — {queues}",
        "closed_intro": "Outside business hours: {calls}, collected in this one message.\n",
        "ids": "Call IDs:",
    },
    "ru": {
        "subject": "Сводка: {calls} — {queues}",
        "intro": (
            "За {minutes} вы уже получили {notifications} о пропущенных звонках, поэтому\n"
            "следующие звонки ({calls}) собраны в одно письмо.\n"
        ),
        "outro": "Отправлено missedcall на {host}. Все звонки: `missedcall-admin log`.",
        "closed_subject": "Пропущено в нерабочее время: {calls} — {queues}",
        "closed_intro": "В нерабочее время — {calls}, в одном письме.\n",
        "ids": "ID звонков:",
    },
}


#: A row's caller name is clipped to this many characters (a row stays within a phone's width).
NAME_WIDTH = 16
_IDS_MARK = ("Call IDs:", "ID звонков:")


def row(call: CallRecord, *, zone: tzinfo | None, language: str, with_queue: bool, region: str = "") -> str:
    """``06:17  +7 916 123-45-67  Ivan Petrov  42 s`` (the queue first when the digest has several)."""
    when = mail.format_time(call.ended_at or call.entered_at, zone, language)
    clock = when[11:16] if when[:4].isdigit() else when
    number = phone.read(mail.clean(call.caller_num, 32), region)[0] or "—"
    name = mail.clean(call.caller_name, NAME_WIDTH)
    parts = [clock, *([mail.clean(call.queue, 16)] if with_queue else []), number]
    if name and name != number:
        parts.append(name)
    parts.append(mail.format_wait(call.wait_seconds, language))
    return "  ".join(parts)


def build(
    calls: Sequence[CallRecord],
    *,
    to: str,
    sender: str,
    language: str,
    limit: int,
    window: int,
    zone: tzinfo | None,
    now: datetime,
    host: str | None = None,
    after_hours: bool = False,
    region: str = "",
) -> mime.Draft:
    """``after_hours``: the morning summary of a closed queue's calls, rather than storm control's digest."""
    language = language if language in _TEXT else "en"
    words = _TEXT[language]
    counts = {
        "calls": plural.count(len(calls), "missed call", language),
        "notifications": plural.count(limit, "notification", language),
        "minutes": plural.count(window, "minute-acc", language),
    }
    host = mail.clean(host or socket.gethostname(), 255)
    queues: list[str] = []
    for call in calls:
        queue = mail.clean(call.queue, 64)
        if queue not in queues:
            queues.append(queue)
    shown = ", ".join(queues[:5]) + (", …" if len(queues) > 5 else "")
    lines = [words["closed_intro" if after_hours else "intro"].format(**counts).rstrip("\n")]
    day = ""
    for call in calls:
        when = mail.format_time(call.ended_at or call.entered_at, zone, language)
        heading = f"{when[:10]} {when[20:]}".strip() if when[:4].isdigit() else when
        if heading != day:
            lines += ["", heading]
            day = heading
        lines.append(row(call, zone=zone, language=language, with_queue=len(queues) > 1, region=region))
    lines += ["", words["ids"], *(mail.clean(call.callid, 64) for call in calls)]
    lines += ["", words["outro"].format(host=host)]
    body = "\n".join(lines) + "\n"
    message = mime.Draft()
    subject = words["closed_subject" if after_hours else "subject"].format(queues=shown, **counts)
    mail.set_headers(message, sender=sender, to=[to], subject=mail.clean(subject, 200), now=now,
                     kind="missedcall-digest")  # fmt: skip
    message["X-Missedcall-Digest"] = str(len(calls))
    mail.set_body(message, body)
    return message


def listed_callids(body: str) -> list[str]:
    """The call ids a digest body lists (the lines after "Call IDs:"), for tests and tools."""
    found: list[str] = []
    listing = False
    for line in body.splitlines():
        if line.strip() in _IDS_MARK:
            listing = True
        elif listing and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", line.strip()):
            found.append(line.strip())
        elif listing:
            break
    return found
