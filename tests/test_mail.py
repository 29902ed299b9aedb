"""Building the message: parsed back with the email package and checked field by field."""

from __future__ import annotations

import email
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from missedcall.deliver import mail
from missedcall.record.model import CallRecord
from tests.support.readme import template_placeholders

HOSTILE_NAMES = [
    'Doe, John "JJ" O\'Neil',
    "Иван Петров",
    "Line1\nLine2",
    "evil\r\nBcc: victim@example.com",
    "x\r\n\r\nInjected body",
    "=?utf-8?b?Qm9zcw==?=",
    '"boss@example.com" <evil@example.com>',
    "a" * 300,
    "\x00nul\x07bell\x1b[31mred",
    "$caller_num ${callid} $$",
]


def call(**overrides: object) -> CallRecord:
    values: dict[str, object] = {
        "callid": "1795659185.13",
        "linkedid": "1795659185.12",
        "queue": "601",
        "path": ("600", "601"),
        "caller_num": "79161234567",
        "caller_name": "Иван Петров",
        "reason": "ABANDON",
        "wait_seconds": 75,
        "position": 2,
        "entered_at": datetime(2026, 11, 26, 9, 0, 5, tzinfo=timezone.utc),
        "ended_at": datetime(2026, 11, 26, 9, 1, 20, tzinfo=timezone.utc),
        "source": "agi",
        "extra": {"did": "5559000"},
    }
    values.update(overrides)
    return CallRecord(**values)  # type: ignore[arg-type]


def build(
    record: CallRecord, language: str = "en", recipients: list[str] | None = None, template_dir: str = ""
) -> EmailMessage:
    templates = mail.load_templates(language, template_dir)
    subject, body = mail.render(
        record, label="Sales", language=language, templates=templates, zone=ZoneInfo("Europe/Moscow"), host="pbx1"
    )
    message = mail.build_message(
        subject=subject,
        body=body,
        sender="asterisk@pbx.example.com",
        recipients=recipients if recipients is not None else ["ops@example.com", "boss@example.com"],
        callid=record.callid,
        now=datetime(2026, 11, 26, 9, 1, 21, tzinfo=timezone.utc),
    )
    # Round trip through bytes, as a mail server would see it.
    parsed = email.message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_english_message_fields() -> None:
    msg = build(call())
    assert msg["From"] == "asterisk@pbx.example.com"
    assert msg["To"] == "ops@example.com, boss@example.com"
    assert msg["Subject"] == "Missed: Sales (601) — Иван Петров +7 916 123-45-67, waited 1 min 15 s"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"  # Exchange's out-of-office replies
    assert msg["X-Missedcall-Callid"] == "1795659185.13"
    assert msg["Message-ID"].endswith("@pbx.example.com>")
    assert email.utils.parsedate_to_datetime(msg["Date"]) == datetime(2026, 11, 26, 9, 1, 21, tzinfo=timezone.utc)
    body = msg.get_content()
    assert "Иван Петров <79161234567>" in body
    assert "the caller hung up while waiting" in body
    assert "1 min 15 s (position 2 in the queue)" in body
    assert "2026-11-26 12:00:05 MSK (UTC+03:00)" in body  # local time with the zone
    assert "600 > 601" in body and "5559000" in body and "1795659185.13" in body
    assert msg.get_content_charset() == "utf-8"


def test_russian_message_is_readable() -> None:
    msg = build(call(reason="TIMEOUT"), language="ru")
    assert msg["Subject"] == "Пропущен: Sales (601) — Иван Петров +7 916 123-45-67, ждал 1 мин 15 с"
    body = msg.get_content()
    assert "истекло максимальное время ожидания в очереди" in body
    assert "1 мин 15 с" in body
    # Raw bytes stay 7-bit: no relay can mangle them.
    assert all(b < 128 for b in build(call(), language="ru").as_bytes())


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("language", ["en", "ru"])
def test_hostile_caller_names_cannot_add_headers_or_recipients(name: str, language: str) -> None:
    msg = build(call(caller_name=name, caller_num="555\r\nCc: x@example.com"), language=language)
    assert sorted(k.lower() for k in msg.keys()) == sorted(
        [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "auto-submitted",
            "x-auto-response-suppress",
            "x-missedcall-callid",
            "content-type",
            "content-transfer-encoding",
            "mime-version",
        ]
    )
    assert msg["To"] == "ops@example.com, boss@example.com"
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert len(msg["Subject"]) <= 200
    assert msg.get_content().count("\n-- \n") == 1


def test_unknown_caller_and_missing_numbers() -> None:
    msg = build(call(caller_num="", caller_name="", wait_seconds=None, position=None, extra={}))
    assert msg["Subject"] == "Missed: Sales (601) — unknown caller"
    body = msg.get_content()
    assert "Waited:    unknown (position — in the queue)" in body


def test_template_override_and_placeholders(tmp_path: Path) -> None:
    (tmp_path / "subject.txt").write_text("[$queue] $reason $caller_num $nosuch\n")
    msg = build(call(), template_dir=str(tmp_path))
    assert msg["Subject"] == "[601] ABANDON 79161234567 $nosuch"
    assert "the caller hung up while waiting" in msg.get_content()  # body.txt still bundled


def test_every_documented_placeholder_is_filled() -> None:
    documented = template_placeholders()  # the README's table, not the code's own list
    assert documented, "the README documents no placeholder"
    templates = mail.Templates(subject="s", body=" ".join(f"<${p}>" for p in documented))
    _, body = mail.render(call(), label="Sales", language="en", templates=templates, zone=timezone.utc, host="h")
    assert "$" not in body
    for placeholder in documented:
        assert f"<${placeholder}>" not in body


def test_template_dir_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(mail.TemplateError):
        mail.load_templates("en", str(tmp_path / "nope"))


def test_callid_header_is_sanitised() -> None:
    msg = build(call(callid="1.2\r\nBcc: evil@example.com"))
    assert msg["X-Missedcall-Callid"] == "1.2__Bcc__evil_example.com"
    assert msg["Bcc"] is None
