"""Mail that reads well on a phone: the subject leads with queue, caller and wait; the number is international
with a ``tel:`` link in a small HTML part next to the unchanged text part; whatever the caller sends is inert
in the HTML. Mails are read back from the sendmail stand-in and a loopback SMTP server with ``email``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from missedcall.deliver import digest, htmlpart, mail, phone
from missedcall.record.model import CallRecord
from tests.agibox import Pbx, abandon_peer, make_pbx
from tests.mailbox import html_part, text_part
from tests.test_hostile import HOSTILE


@pytest.mark.parametrize(
    ("number", "region", "shown", "tel"),
    [
        ("79161234567", "", "+7 916 123-45-67", "tel:+79161234567"),
        ("+79161234567", "", "+7 916 123-45-67", "tel:+79161234567"),
        ("89161234567", "RU", "+7 916 123-45-67", "tel:+79161234567"),
        ("9161234567", "ru", "+7 916 123-45-67", "tel:+79161234567"),
        ("89161234567", "", "89161234567", "tel:89161234567"),  # 8 is a trunk prefix only in RU/KZ
        ("+15551234567", "", "+1 555 123 4567", "tel:+15551234567"),
        ("5551234567", "US", "+1 555 123 4567", "tel:+15551234567"),
        ("004930123456", "", "+4930123456", "tel:+4930123456"),
        ("+49 (30) 123-456", "", "+4930123456", "tel:+4930123456"),
        ("5550004", "", "5550004", "tel:5550004"),
        ("102", "", "102", ""),  # an extension
        ("", "", "", ""),
        ("555 12,34", "", "555 12,34", ""),
        ("+7916abc", "", "+7916abc", ""),
        ("٧٩١٦١٢٣٤٥٦٧", "", "٧٩١٦١٢٣٤٥٦٧", ""),  # digits to str.isdigit, not to a phone
        ("+" + "9" * 20, "", "+" + "9" * 20, ""),
    ],
)
def test_numbers_read_for_people(number: str, region: str, shown: str, tel: str) -> None:
    assert phone.read(number, region) == (shown, tel)


# ============================================================================ through the real hook


@pytest.fixture
def box(tmp_path: Path, sqlite_url: str) -> Pbx:
    return make_pbx(tmp_path, sqlite_url)


@pytest.mark.parametrize(
    ("language", "subject", "text_line"),
    [
        ("en", "Missed: Поддержка (600) — Ivan Petrov +7 916 123-45-67",
         "Caller:    Ivan Petrov <79161234567>"),
        ("ru", "Пропущен: Поддержка (600) — Ivan Petrov +7 916 123-45-67",
         "Кто звонил:   Ivan Petrov <79161234567>"),
    ],
)  # fmt: skip
def test_the_mail_has_a_short_subject_and_a_tel_link(box: Pbx, language: str, subject: str, text_line: str) -> None:
    box.configure(MISSEDCALL_LANGUAGE=language)
    assert box.admin("queues", "set", "600", "--label", "Поддержка").returncode == 0
    assert box.run(abandon_peer("1797100000.1", caller="79161234567", name="Ivan Petrov"), ["600"]).ok
    [stored] = box.stored()
    message = stored.message
    assert message["Subject"] == subject
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert text_line in text_part(message).splitlines()  # the text part reads as before
    html = html_part(message)
    assert html is not None and '<a href="tel:+79161234567">+7 916 123-45-67</a>' in html
    assert "Поддержка (600)" in html
    assert message["Auto-Submitted"] == "auto-generated" and message["X-Auto-Response-Suppress"] == "All"
    assert all(b < 128 for b in stored.raw)  # 7-bit on the wire


def test_over_smtp_too(box: Pbx, smtp_server) -> None:  # type: ignore[no-untyped-def]
    box.configure(MISSEDCALL_TRANSPORT="smtp", MISSEDCALL_SMTP_HOST=smtp_server.host,
                  MISSEDCALL_SMTP_PORT=str(smtp_server.port), MISSEDCALL_LANGUAGE="ru")  # fmt: skip
    assert box.run(abandon_peer("1797100001.1", caller="+79161234567", name="Иван Петров"), ["600"]).ok
    [received] = smtp_server.messages
    assert received.message["Subject"] == "Пропущен: 600 — Иван Петров +7 916 123-45-67"
    assert 'href="tel:+79161234567"' in (html_part(received.message) or "")


def test_the_subject_keeps_its_spaces_when_folded() -> None:
    """A long all-Cyrillic subject is folded into several encoded words; no space between words is lost."""
    message = build(call(caller_name="Иван Петрович Сидоров-Длинная-Фамилия"), "ru")
    assert message["Subject"] == (
        "Пропущен: Продажи (600) — Иван Петрович Сидоров-Длинная-Фамилия +7 916 123-45-67, ждал 1 мин 15 с"
    )


# ============================================================================ hostile callers


ALLOWED_TAGS = {"html", "head", "meta", "body", "p", "b", "a"}


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def call(**overrides: object) -> CallRecord:
    values: dict[str, object] = {
        "callid": "1797100002.1", "queue": "600", "reason": "ABANDON", "source": "agi",
        "caller_num": "79161234567", "caller_name": "Ivan Petrov", "wait_seconds": 75,
        "ended_at": datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc),
    }  # fmt: skip
    values.update(overrides)
    return CallRecord(**values)  # type: ignore[arg-type]


def build(record: CallRecord, language: str = "en", template_dir: str = "") -> EmailMessage:
    templates = mail.load_templates(language, template_dir)
    subject, body, html = mail.compose(record, label="Продажи", language=language, templates=templates,
                                       zone=ZoneInfo("Europe/Moscow"), host="pbx1")  # fmt: skip
    message = mail.build_message(subject=subject, body=body, sender="pbx@example.com", recipients=["a@example.com"],
                                 callid=record.callid, now=datetime(2026, 11, 30, 9, 1, tzinfo=timezone.utc),
                                 html=html)  # fmt: skip
    parsed = BytesParser(policy=policy.default).parsebytes(message.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def baseline(language: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    parser = Tags()
    parser.feed(html_part(build(call(), language)) or "")
    return parser.tags


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_caller_ids_are_inert_in_the_html(value: str) -> None:
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # as the AGI hands it over
    for language in ("en", "ru"):
        message = build(call(caller_name=value, caller_num=value[:128]), language)
        html = html_part(message)
        assert html is not None
        parser = Tags()
        parser.feed(html)
        assert {tag for tag, _ in parser.tags} <= ALLOWED_TAGS, value
        for tag, attrs in parser.tags:
            names = {name for name, _ in attrs}
            assert names <= {"lang", "charset", "name", "content", "style", "href"}, (value, tag, attrs)
            href = dict(attrs).get("href")
            if href is not None:
                assert tag == "a" and href.startswith("tel:") and href[4:].lstrip("+").isdigit(), (value, href)
        # Apart from the link, the markup is the template's, attribute for attribute, whatever the caller sent.
        assert [t for t in parser.tags if t[0] != "a"] == [t for t in baseline(language) if t[0] != "a"], value
        assert sorted(message.keys()) == sorted(
            ["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "X-Auto-Response-Suppress",
             "X-Missedcall-Callid", "MIME-Version", "Content-Type"]
        )  # fmt: skip
        assert "\n" not in str(message["Subject"])


def test_escape_is_complete() -> None:
    assert htmlpart.escape("<a href='x'>&\"</a>") == "&lt;a href=&#x27;x&#x27;&gt;&amp;&quot;&lt;/a&gt;"


# ============================================================================ templates


def test_an_admins_own_text_template_goes_alone(tmp_path: Path) -> None:
    (tmp_path / "body.txt").write_text("Call $caller_intl back: $caller_tel\n", encoding="utf-8")
    message = build(call(), template_dir=str(tmp_path))
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Call +7 916 123-45-67 back: tel:+79161234567\n"


def test_an_admins_own_html_template_is_used_and_escaped(tmp_path: Path) -> None:
    (tmp_path / "body.html").write_text("<p>$caller_link from $caller_name</p>", encoding="utf-8")
    html = html_part(build(call(caller_name="<b>Boss</b>"), template_dir=str(tmp_path)))
    assert html == '<p><a href="tel:+79161234567">+7 916 123-45-67</a> from &lt;b&gt;Boss&lt;/b&gt;</p>\n'


# ============================================================================ digest rows


@pytest.mark.parametrize("language", ["en", "ru"])
def test_digest_rows_fit_a_phone(language: str) -> None:
    ended = datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)
    calls = [
        CallRecord(callid=f"1797.{i}", queue=queue, reason="ABANDON", source="agi", caller_num=number,
                   caller_name=name, wait_seconds=wait, ended_at=ended + timedelta(minutes=i))
        for i, (queue, number, name, wait) in enumerate([
            ("600", "79161234567", "Константин Константинопольский", 3599),
            ("601", "+15551234567", "A" * 300, None),
            ("600", "", "", 5),
            ("600", "x\r\nBcc: evil@example.com", "\x1b[31mred", 42),
        ])
    ]  # fmt: skip
    message = digest.build(calls, to="a@example.com", sender="pbx@example.com", language=language, limit=3,
                           window=5, zone=ZoneInfo("Europe/Moscow"), now=ended, host="pbx")  # fmt: skip
    body = message.to_email().get_content()
    rows = [line for line in body.splitlines() if line[:2].isdigit() and line[2:3] == ":"]
    assert len(rows) == 4
    assert all(len(row) <= 60 for row in rows), rows
    assert rows[0].startswith("03:00  600  +7 916 123-45-67  Константин Конс…")
    assert digest.listed_callids(body) == [f"1797.{i}" for i in range(4)]
    assert "Bcc" not in message.keys()
