"""The flood digest: one message to one address listing the calls held for it. Pure.

Caller-controlled text goes through ``mail.clean`` like in single mails, and
the only recipient is the one address the digest is for.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from datetime import datetime, tzinfo
from email.message import EmailMessage

from missedcall.deliver import mail, plural
from missedcall.record.model import CallRecord

# {calls}, {notifications} and {minutes} are a count with its noun in the right form (plural.count).
_TEXT = {
    "en": {
        "subject": "Digest: {calls} — {queues}",
        "intro": (
            "You already got {notifications} within {minutes}, so the following {calls}\n"
            "were collected into this one message instead of one mail each.\n"
        ),
        "header": "time | queue | caller | reason | waited | call id",
        "outro": "Sent by missedcall on {host}. `missedcall-admin log` shows every call.",
    },
    "ru": {
        "subject": "Сводка: {calls} — {queues}",
        "intro": (
            "За {minutes} вы уже получили {notifications} о пропущенных звонках, поэтому\n"
            "следующие звонки ({calls}) собраны в одно письмо.\n"
        ),
        "header": "время | очередь | абонент | причина | ожидание | id звонка",
        "outro": "Отправлено missedcall на {host}. Все звонки: `missedcall-admin log`.",
    },
}


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
) -> EmailMessage:
    language = language if language in _TEXT else "en"
    words = _TEXT[language]
    counts = {
        "calls": plural.count(len(calls), "missed call", language),
        "notifications": plural.count(limit, "notification", language),
        "minutes": plural.count(window, "minute-acc", language),
    }
    host = mail.clean(host or socket.gethostname(), 255)
    queues = []
    for call in calls:
        queue = mail.clean(call.queue, 64)
        if queue not in queues:
            queues.append(queue)
    shown = ", ".join(queues[:5]) + (", …" if len(queues) > 5 else "")
    lines = [words["intro"].format(**counts), words["header"]]
    for call in calls:
        lines.append(
            " | ".join(
                (
                    mail.format_time(call.ended_at or call.entered_at, zone, language),
                    " > ".join(mail.clean(q, 64) for q in call.path) or mail.clean(call.queue, 64),
                    mail.describe_caller(call.caller_num, call.caller_name, language),
                    mail.REASON_TEXT.get(language, mail.REASON_TEXT["en"]).get(call.reason, call.reason),
                    mail.format_wait(call.wait_seconds, language),
                    mail.clean(call.callid, 64),
                )
            )
        )
    lines += ["", words["outro"].format(host=host)]
    body = "\n".join(lines) + "\n"
    message = EmailMessage()
    subject = mail.clean(words["subject"].format(queues=shown, **counts), 200)
    mail.set_headers(message, sender=sender, to=[to], subject=subject, now=now, kind="missedcall-digest")
    message["X-Missedcall-Digest"] = str(len(calls))
    mail.set_body(message, body)
    return message


def listed_callids(body: str) -> list[str]:
    """The call ids a digest body lists (its last column), for tests and tools."""
    found = []
    for line in body.splitlines():
        parts = line.rsplit(" | ", 1)
        if len(parts) == 2 and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", parts[1].strip()):
            found.append(parts[1].strip())
    return found
