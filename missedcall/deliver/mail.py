"""Build the notification e-mail: template text in, a well-formed UTF-8 message out. Pure.

Everything a caller controls (number, name) is cleaned of control characters
before it reaches a template, and headers are set on a ``mime.Draft``, which
refuses CR/LF: a caller ID can change words in the subject, never add a header
or a recipient. The message is written by missedcall.deliver.mime, not by the
``email`` package, whose import alone cost a hang-up more than the rest of it.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone, tzinfo

from missedcall.deliver import htmlpart, mime, phone
from missedcall.deliver.placeholders import substitute
from missedcall.record.model import CallRecord
from missedcall.slots import Frozen
from missedcall.text import WORD_CHARS, only, printable

#: The reasons in words, per language (the vocabulary of docs/design.md).
REASON_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "ABANDON": "the caller hung up while waiting",
        "TIMEOUT": "the queue's maximum wait time ran out",
        "EXITEMPTY": "no agents were left in the queue",
        "JOINEMPTY": "the queue had no agents when the call arrived",
        "LEAVEEMPTY": "all agents left the queue while the caller waited",
        "JOINUNAVAIL": "no agent was available when the call arrived",
        "LEAVEUNAVAIL": "no agent was available while the caller waited",
        "FULL": "the queue was full",
        "EXITWITHKEY": "the caller left the queue by pressing a key",
    },
    "ru": {
        "ABANDON": "абонент положил трубку, не дождавшись ответа",
        "TIMEOUT": "истекло максимальное время ожидания в очереди",
        "EXITEMPTY": "в очереди не осталось операторов",
        "JOINEMPTY": "в очереди не было операторов, когда поступил звонок",
        "LEAVEEMPTY": "все операторы покинули очередь во время ожидания",
        "JOINUNAVAIL": "ни один оператор не был доступен, когда поступил звонок",
        "LEAVEUNAVAIL": "ни один оператор не был доступен во время ожидания",
        "FULL": "очередь была переполнена",
        "EXITWITHKEY": "абонент вышел из очереди нажатием клавиши",
    },
}
_WORDS = {
    "en": {"unknown": "unknown", "no_caller": "unknown caller", "min": "min", "s": "s", "none": "—",
           "waited": ", waited "},
    "ru": {"unknown": "неизвестно", "no_caller": "номер не определён", "min": "мин", "s": "с", "none": "—",
           "waited": ", ждал "},
}
#: The placeholders a template may use (documented in the README).
PLACEHOLDERS = (
    "caller", "caller_num", "caller_name", "queue", "queue_label", "queue_display", "reason",
    "reason_text", "wait", "wait_seconds", "position", "entered_at", "ended_at", "path", "did",
    "callid", "linkedid", "host", "caller_intl", "caller_tel", "caller_link", "caller_short", "queue_title",
    "waited", "voicemail",
)  # fmt: skip
_NAME_SHORT = 40
#: The sentence ``$voicemail`` stands for when the caller left one (empty otherwise).
VOICEMAIL_TEXT = {"en": "The caller left a voicemail.", "ru": "Абонент оставил голосовое сообщение."}
#: Template files beside subject.txt / body.txt / body.html that MISSEDCALL_TEMPLATE_DIR may also replace.
EXTRA_TEMPLATES = ("repeat_subject.txt", "followup_body.txt")
_SUBJECT_MAX = 200
_FIELD_MAX = 1000
#: C0 and C1 controls and the two Unicode line breaks: each run of them becomes one space in ``clean``.
_CONTROL = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029], "\x00")
#: What a callid keeps in X-Missedcall-Callid.
_CALLID_CHARS = WORD_CHARS | {"."}


class TemplateError(ValueError):
    """A template folder that cannot be used."""


class Templates(Frozen):
    __slots__ = ("subject", "body", "html")  # noqa: RUF023

    def __init__(self, subject: str, body: str, html: str = "") -> None:  # html "": the text part alone
        self._set(subject=subject, body=body, html=html)


def clean(text: str, limit: int = _FIELD_MAX) -> str:
    """One line of printable text: control characters become a space, length is capped."""
    marked = text.translate(_CONTROL)  # in C, like the regex it replaces; a split joins each run into one space
    text = (" ".join(filter(None, marked.split("\x00"))) if "\x00" in marked else marked).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def header_text(text: str) -> str:
    """Text that is safe as a header value: no RFC 2047 encoded-word can start in it.

    Python's email package decodes ``=?charset?q?...?=`` in a header value it is
    given, and writes what it decoded (a CR/LF, say) raw: a caller name
    ``=?utf-8?q?x=0D=0ABcc:_evil@example.com?=`` would add a Bcc header. "=?" becomes
    "= ?", which no decoder takes for an encoded-word.
    """
    while "=?" in text:
        text = text.replace("=?", "= ?")
    return text


def load_templates(language: str, template_dir: str = "") -> Templates:
    """The bundled templates of ``language``, each replaced by the override folder's file if present."""
    html = load_template(language, "body.html", template_dir)
    if template_dir and os.path.isfile(os.path.join(template_dir, "body.txt")):
        if not os.path.isfile(os.path.join(template_dir, "body.html")):
            html = ""  # a text of the admin's own is what they want read: the bundled HTML would contradict it
    return Templates(
        subject=load_template(language, "subject.txt", template_dir),
        body=load_template(language, "body.txt", template_dir),
        html=html,
    )


def load_template(language: str, name: str, template_dir: str = "") -> str:
    """One template file: the override folder's when it has one, else the bundled one of ``language``."""
    if name not in ("subject.txt", "body.txt", "body.html", *EXTRA_TEMPLATES):
        raise TemplateError(f"no template named {name}")  # only these names are ever opened
    if template_dir:
        if not os.path.isdir(template_dir):
            shown = printable(template_dir, limit=100, replace="?")
            raise TemplateError(f"MISSEDCALL_TEMPLATE_DIR {shown} is not a folder")
        path = os.path.join(template_dir, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    return handle.read(256 * 1024)  # a template is small; never read a huge file whole
            except (OSError, UnicodeDecodeError) as exc:
                raise TemplateError(f"cannot read template {path}: {exc}") from None
    return _bundled(language, name)


_BUNDLED: dict[tuple[str, str], str] = {}


def _bundled(language: str, name: str) -> str:
    """A template shipped with the package, read once per process (the FastAGI service asks for the same
    three at every call); os.path, not pathlib or importlib.resources: pathlib brings urllib to the AGI."""
    key = (language, name)
    if key not in _BUNDLED:
        path = os.path.join(os.path.dirname(os.path.realpath(__file__)), "templates", language, name)
        with open(path, encoding="utf-8") as handle:
            _BUNDLED[key] = handle.read()
    return _BUNDLED[key]


def format_wait(seconds: int | None, language: str) -> str:
    words = _WORDS[language]
    if seconds is None:
        return words["unknown"]
    minutes, secs = divmod(max(0, seconds), 60)
    if minutes:
        return f"{minutes} {words['min']} {secs:02d} {words['s']}"
    return f"{secs} {words['s']}"


def format_time(moment: datetime | None, zone: tzinfo | None, language: str) -> str:
    """Local time with the zone's name and offset, e.g. ``2026-11-26 06:17:05 MSK (UTC+03:00)``."""
    if moment is None:
        return _WORDS[language]["unknown"]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    local = moment.astimezone(zone)  # None: the system's local zone
    offset = local.strftime("%z")
    offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    name = local.tzname() or ""
    if name in ("UTC", "GMT") and offset == "UTC+00:00":
        shown = "UTC"
    elif name and not name.startswith(("+", "-", "UTC")):
        shown = f"{name} ({offset})"
    else:
        shown = offset
    return f"{local:%Y-%m-%d %H:%M:%S} {shown}"


def describe_caller(num: str, name: str, language: str) -> str:
    num, name = clean(num, 128), clean(name, 300)
    if name and num and name != num:
        return f"{name} <{num}>"
    return name or num or _WORDS[language]["no_caller"]


def values(call: CallRecord, *, label: str, language: str, zone: tzinfo | None, host: str,
           region: str = "") -> dict[str, str]:  # fmt: skip
    """Every placeholder's text for ``call`` (caller-controlled parts cleaned, not yet escaped for HTML)."""
    words = _WORDS[language]
    queue = clean(call.queue, 64)
    label = clean(label, 128)
    shown, tel = phone.read(clean(call.caller_num, 128), region)
    name = clean(call.caller_name, 300)
    return {
        "caller": describe_caller(call.caller_num, call.caller_name, language),
        "caller_num": clean(call.caller_num, 128) or words["unknown"],
        "caller_name": name or words["unknown"],
        "caller_intl": shown or words["unknown"],
        "caller_tel": tel,
        "caller_link": shown or words["unknown"],  # a tel: link in body.html (missedcall.deliver.htmlpart)
        "caller_short": short_caller(name, shown, language),
        "queue": queue,
        "queue_label": label,
        "queue_display": f"{queue} ({label})" if label and label != queue else queue,
        "queue_title": f"{label} ({queue})" if label and label != queue else queue,
        "reason": call.reason,
        "reason_text": REASON_TEXT[language].get(call.reason, call.reason),
        "wait": format_wait(call.wait_seconds, language),
        # For subjects: ", waited 42 s", or nothing when the wait is unknown ("waited unknown" reads badly).
        "waited": "" if call.wait_seconds is None else words["waited"] + format_wait(call.wait_seconds, language),
        "wait_seconds": "" if call.wait_seconds is None else str(call.wait_seconds),
        "position": words["none"] if call.position is None else str(call.position),
        "entered_at": format_time(call.entered_at or call.ended_at, zone, language),
        "ended_at": format_time(call.ended_at, zone, language),
        "path": " > ".join(clean(q, 64) for q in call.path) or queue,
        "did": clean(call.extra.get("did", ""), 64) or words["none"],
        "callid": clean(call.callid, 64),
        "linkedid": clean(call.linkedid, 64) or words["none"],
        "host": clean(host, 255),
        "voicemail": VOICEMAIL_TEXT[language] if call.voicemail else "",
    }


def short_caller(name: str, shown_number: str, language: str) -> str:
    """``Ivan Petrov +7 916 123-45-67``: the name clipped for a phone's subject line, then the number."""
    name = clean(name, _NAME_SHORT)
    if name and shown_number and name != shown_number:
        return f"{name} {shown_number}"
    return name or shown_number or _WORDS[language]["no_caller"]


def render(
    call: CallRecord, *, label: str, language: str, templates: Templates, zone: tzinfo | None, host: str,
    region: str = "",
) -> tuple[str, str]:  # fmt: skip
    """(subject, body) for ``call``; unknown ``$names`` in a template stay as they are."""
    filled = values(call, label=label, language=language, zone=zone, host=host, region=region)
    subject = clean(substitute(templates.subject, filled), _SUBJECT_MAX)
    return subject, _with_voicemail(call, templates.body, substitute(templates.body, filled), filled)


def _with_voicemail(call: CallRecord, template: str, body: str, filled: dict[str, str]) -> str:
    if call.voicemail and "$voicemail" not in template and "${voicemail}" not in template:
        # A template from before $voicemail existed still says so, on top where a phone shows it.
        return f"{filled['voicemail']}\n\n{body}"
    return body


def compose(
    call: CallRecord, *, label: str, language: str, templates: Templates, zone: tzinfo | None, host: str,
    region: str = "",
) -> tuple[str, str, str]:  # fmt: skip
    """(subject, text body, HTML body or "") for ``call``."""
    filled = values(call, label=label, language=language, zone=zone, host=host, region=region)
    subject = clean(substitute(templates.subject, filled), _SUBJECT_MAX)
    text = _with_voicemail(call, templates.body, substitute(templates.body, filled), filled)
    html = templates.html
    if html and call.voicemail and "$voicemail" not in html and "${voicemail}" not in html:
        html = "<p><b>$voicemail</b></p>\n" + html  # the placeholder, so htmlpart escapes it like the rest
    return subject, text, htmlpart.render(html, filled)


def address_problem(address: str) -> str:
    """Why ``address`` cannot be a recipient of our mails; "" when it can.

    It must be a bare ASCII addr-spec of RFC 5322 atoms (config.is_plain_address): missedcall.deliver.mime
    writes it into To as it is, so it has to read back from that header as exactly itself, and it goes
    to the mail program's argv after "--". No RFC 2047 encoded word, comment, quoting, space or control
    character. Checked one address at a time, so one bad row costs only itself.
    """
    from missedcall.config import ADDRESS_MAX, is_plain_address

    if len(address) > ADDRESS_MAX:
        return f"is longer than {ADDRESS_MAX} characters"
    if not address or "=?" in address:
        return "is not a plain address (an RFC 2047 encoded word?)"
    if not address.isprintable() or any(ch in address for ch in ' "(),;<>[]\\'):
        return "holds a space, quote, bracket or control character"
    if not address.isascii() or not is_plain_address(address):
        return "does not read back from a header as itself"
    return ""


def set_headers(message: mime.Draft, *, sender: str, to: list[str], subject: str, now: datetime,
                kind: str, message_id: str = "") -> None:  # fmt: skip
    """The header block every mail of ours carries, single or digest (``kind`` names a random Message-ID;
    ``message_id``, when given, is used instead)."""
    message["From"] = sender
    if to:
        message["To"] = ", ".join(to)
    message["Subject"] = header_text(clean(subject, _SUBJECT_MAX))
    message["Date"] = mime.format_date((now if now.tzinfo else now.replace(tzinfo=timezone.utc)).astimezone())
    message["Message-ID"] = message_id or mime.make_msgid(kind, domain=sender.rsplit("@", 1)[-1])
    # RFC 3834: no vacation responder answers, no loop with a ticket system. Exchange ignores
    # Auto-Submitted for its out-of-office replies and reads its own header instead.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"


def set_body(message: mime.Draft, body: str) -> None:
    # Quoted-printable (mime writes it) keeps the message 7-bit clean: no relay can refuse or mangle Cyrillic.
    message.set_content(body)


def build_message(
    *, subject: str, body: str, sender: str, recipients: list[str], callid: str, now: datetime, html: str = "",
    message_id: str = "",
) -> mime.Draft:
    """The message itself; ``recipients`` are already validated bare addresses. With ``html``, the text and
    the HTML are the two parts of a multipart/alternative (text first: the last part is the preferred one).
    ``message_id``: the call's own (missedcall.deliver.threads), else a random one."""
    message = mime.Draft()
    set_headers(message, sender=sender, to=recipients, subject=subject, now=now, kind="missedcall",
                message_id=message_id)  # fmt: skip
    message["X-Missedcall-Callid"] = only(callid[:64], _CALLID_CHARS, "_")
    set_body(message, body)
    if html:
        message.add_alternative(html)
    return message
