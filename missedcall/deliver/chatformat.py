"""The message for each chat channel, as the JSON document its API takes. Pure.

Every value is first made one printable line (``mail.clean``, surrogates of
undecodable bytes replaced), then escaped for its channel, so a caller ID is
text and nothing else:

- Telegram (parse_mode HTML): ``&``, ``<``, ``>``, ``"`` become entities and
  caller text sits in ``<code>``, where Telegram detects no link, mention or
  command; the number is a ``tel:`` link whose target holds only ``+`` and
  digits. Within 4,096 characters.
- Slack: ``&``, ``<``, ``>`` become entities (so no ``<!channel>`` or
  ``<url|text>``) and values sit in inline code, where Slack links and pings
  nothing. Mattermost: inline code as well (Mattermost's Markdown shows its
  content literally, so no entities there), which stops ``@channel`` and links.
- Teams (Workflows, Adaptive Card): a FactSet whose values have ``](``,
  ``://``, ``www.`` and ``@`` broken by a zero-width space, so no link is made.
- webhook: the call's JSON form (missedcall.record.model.to_dict), sent as is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

from missedcall.deliver import mail
from missedcall.record import model
from missedcall.record.model import CallRecord

TELEGRAM_MAX = 4096
#: Room kept under the limit for a digest's last line ("… and N more").
_DIGEST_ROOM = 3800
_WORDS = {
    "en": {"title": "Missed call", "caller": "Caller", "number": "Number", "queue": "Queue", "reason": "Reason",
           "waited": "Waited", "time": "Time", "callid": "Call id", "digest": "Digest: {n} missed call(s)",
           "more": "… and {n} more (missedcall-admin log)"},
    "ru": {"title": "Пропущенный звонок", "caller": "Абонент", "number": "Номер", "queue": "Очередь",
           "reason": "Причина", "waited": "Ожидание", "time": "Время", "callid": "Id звонка",
           "digest": "Сводка: пропущенных звонков: {n}", "more": "… и ещё {n} (missedcall-admin log)"},
}  # fmt: skip


def safe(text: str, limit: int = 300) -> str:
    """One printable line, no lone surrogates (bytes that were not UTF-8 become '?')."""
    return mail.clean(text.encode("utf-8", "replace").decode("utf-8"), limit)


def facts(call: CallRecord, *, label: str, language: str, zone: tzinfo | None) -> list[tuple[str, str]]:
    """(title, value) pairs every channel shows, plain text."""
    words = _WORDS.get(language, _WORDS["en"])
    queue = safe(call.queue, 64)
    label = safe(label, 128)
    reasons = mail.REASON_TEXT.get(language, mail.REASON_TEXT["en"])
    return [
        (words["caller"], safe(mail.describe_caller(call.caller_num, call.caller_name, language), 400)),
        (words["queue"], f"{queue} ({label})" if label and label != queue else queue),
        (words["reason"], reasons.get(call.reason, safe(call.reason, 16))),
        (words["waited"], mail.format_wait(call.wait_seconds, language if language in _WORDS else "en")),
        (words["time"], mail.format_time(call.ended_at or call.entered_at, zone, language)),
        (words["callid"], safe(call.callid, 64)),
    ]


def title(call: CallRecord, language: str) -> str:
    return _WORDS.get(language, _WORDS["en"])["title"]


# --- Telegram ----------------------------------------------------------------------------------


def html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def tel_href(number: str) -> str:
    """``tel:`` target of a caller number: '+' and digits only; "" when it has no digits."""
    digits = re.sub(r"[^0-9]", "", number)[:20]
    if not digits:
        return ""
    return "tel:" + ("+" if number.strip().startswith("+") else "") + digits


def telegram_text(call: CallRecord, *, label: str, language: str, zone: tzinfo | None) -> str:
    lines = [f"<b>{html(title(call, language))}</b>"]
    number = safe(call.caller_num, 128)
    href = tel_href(number)
    for name, value in facts(call, label=label, language=language, zone=zone):
        lines.append(f"{html(name)}: <code>{html(value)}</code>")
    if href:
        words = _WORDS.get(language, _WORDS["en"])
        lines.insert(2, f'{html(words["number"])}: <a href="{href}">{html(number)}</a>')
    return "\n".join(lines)


def telegram(chat: str, call: CallRecord, *, label: str, language: str, zone: tzinfo | None) -> dict[str, Any]:
    return telegram_payload(chat, telegram_text(call, label=label, language=language, zone=zone))


def telegram_payload(chat: str, text: str) -> dict[str, Any]:
    return {
        "chat_id": int(chat) if chat.lstrip("-").isdigit() else chat,
        "text": text,
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": True},
    }


def telegram_length(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units of the text without tags and with entities decoded)."""
    plain = re.sub(r"<[^>]*>", "", text).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    return len(plain.replace("&amp;", "&").encode("utf-16-le")) // 2


# --- Slack and Mattermost ---------------------------------------------------------------------------


def slack_code(text: str) -> str:
    """Inline code Slack shows literally: entities for & < >, no backtick inside."""
    text = text.replace("`", "'").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"`{text}`" if text.strip() else "—"


def mattermost_code(text: str) -> str:
    text = text.replace("`", "'")
    return f"`{text}`" if text.strip() else "—"


def slack(call: CallRecord, *, label: str, language: str, zone: tzinfo | None, mattermost: bool = False) -> dict:
    code = mattermost_code if mattermost else slack_code
    lines = [f"*{title(call, language)}*"]
    lines += [f"{name}: {code(value)}" for name, value in facts(call, label=label, language=language, zone=zone)]
    return {"text": "\n".join(lines)}


# --- Teams (Workflows: Adaptive Card) --------------------------------------------------------------

_BREAK = re.compile(r"(?i)(\]\s*)(\()|(:)(//)|(www)(\.)|(@)(\w)")


def teams_text(text: str) -> str:
    """Adaptive Card Markdown made inert, readable: a zero-width space breaks ``](`` (a link), ``://`` and
    ``www.`` (autolinks) and ``@name``. Teams mentions need card entities, which we never send."""
    return _BREAK.sub(lambda m: "\u200b".join(g for g in m.groups() if g), text)


def teams_card(heading: str, pairs: Sequence[tuple[str, str]], lines: Sequence[str] = ()) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": teams_text(heading), "weight": "Bolder", "size": "Medium", "wrap": True}
    ]
    if pairs:
        body.append({"type": "FactSet", "facts": [{"title": teams_text(t), "value": teams_text(v)} for t, v in pairs]})
    body += [{"type": "TextBlock", "text": teams_text(line), "wrap": True} for line in lines]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                },
            }
        ],
    }


def teams(call: CallRecord, *, label: str, language: str, zone: tzinfo | None) -> dict[str, Any]:
    return teams_card(title(call, language), facts(call, label=label, language=language, zone=zone))


# --- webhook -------------------------------------------------------------------------------------


def call_json(call: CallRecord) -> dict[str, Any]:
    """model.to_dict with every text made valid UTF-8 (a lone surrogate would break strict JSON parsers)."""

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return value.encode("utf-8", "replace").decode("utf-8")
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return {k: fix(v) for k, v in model.to_dict(call).items()}


def webhook(call: CallRecord, *, now: datetime, event: str = "missed_call") -> dict[str, Any]:
    return {"event": event, "sent_at": model.iso(now), "call": call_json(call)}


# --- one entry point per message kind --------------------------------------------------------------


def single(scheme: str, address: str, call: CallRecord, *, label: str, language: str, zone: tzinfo | None,
           now: datetime) -> dict[str, Any]:  # fmt: skip
    """The JSON document for one call to one target of ``scheme`` (``address``: the Telegram chat id)."""
    language = language if language in _WORDS else "en"
    if scheme == "telegram":
        return telegram(address, call, label=label, language=language, zone=zone)
    if scheme in ("slack", "mattermost"):
        return slack(call, label=label, language=language, zone=zone, mattermost=scheme == "mattermost")
    if scheme == "teams":
        return teams(call, label=label, language=language, zone=zone)
    return webhook(call, now=now)


def digest_line(call: CallRecord, language: str, zone: tzinfo | None) -> str:
    reasons = mail.REASON_TEXT.get(language, mail.REASON_TEXT["en"])
    return " | ".join(
        (
            mail.format_time(call.ended_at or call.entered_at, zone, language),
            safe(call.queue, 64),
            safe(mail.describe_caller(call.caller_num, call.caller_name, language), 200),
            reasons.get(call.reason, safe(call.reason, 16)),
            mail.format_wait(call.wait_seconds, language),
        )
    )


def digest(scheme: str, address: str, calls: Sequence[CallRecord], *, language: str, zone: tzinfo | None,
           now: datetime) -> dict[str, Any]:  # fmt: skip
    """One message listing the calls storm control held for this target."""
    language = language if language in _WORDS else "en"
    words = _WORDS[language]
    heading = words["digest"].format(n=len(calls))
    if scheme == "webhook":
        return {"event": "missed_call.digest", "sent_at": model.iso(now), "calls": [call_json(c) for c in calls]}
    lines = [digest_line(call, language, zone) for call in calls]
    if scheme == "telegram":
        text = f"<b>{html(heading)}</b>"
        for index, line in enumerate(lines):
            more = f"\n<code>{html(line)}</code>"
            if telegram_length(text + more) > _DIGEST_ROOM:
                text += "\n" + html(words["more"].format(n=len(lines) - index))
                break
            text += more
        return telegram_payload(address, text)
    if scheme in ("slack", "mattermost"):
        code = mattermost_code if scheme == "mattermost" else slack_code
        return {"text": "\n".join([f"*{heading}*", *(code(line) for line in lines)])}
    return teams_card(heading, [], lines)


def followup(scheme: str, address: str, call: CallRecord, line: str, *, ref: str, language: str, now: datetime,
             event: str = "missed_call.resolved") -> dict[str, Any]:  # fmt: skip
    """How a miss ended, for a target that had it: a Telegram reply to ``ref`` (its first message), a
    webhook ``event`` with the call's JSON, or a short message with the caller and ``line``."""
    language = language if language in _WORDS else "en"
    caller = safe(mail.describe_caller(call.caller_num, call.caller_name, language), 400)
    line = safe(line, 300)
    if scheme == "webhook":
        return {"event": event, "sent_at": model.iso(now), "call": call_json(call), "text": line}
    if scheme == "telegram":
        document = telegram_payload(address, f"<code>{html(caller)}</code>: {html(line)}")
        if ref.isdigit():
            document["reply_parameters"] = {"message_id": int(ref), "allow_sending_without_reply": True}
        return document
    if scheme in ("slack", "mattermost"):
        code = mattermost_code if scheme == "mattermost" else slack_code
        return {"text": f"{code(caller)}: {code(line)}"}
    return teams_card(line, [(_WORDS[language]["caller"], caller)])
