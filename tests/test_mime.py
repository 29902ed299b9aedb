"""missedcall.deliver.mime writes our mails without the email package; the email package reads them back.

Every property here is checked by parsing the written bytes with ``email``'s own parser
(policy.default), the way a mail reader would: values come back as they were set, spaces between
Cyrillic words survive folding, caller text can never become a header, an encoded word or a
recipient, every line fits the RFC's limit, and the bodies decode to the text that was set.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, parsedate_to_datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from missedcall.config import is_plain_address
from missedcall.deliver import mime

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: What a header value can hold once mail.clean has been at it: printable text, Cyrillic, emoji, "=?".
header_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=250
).map(str.strip).filter(bool)


def read(draft: mime.Draft, linesep: str = "\n") -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(draft.as_bytes(linesep=linesep))
    assert isinstance(parsed, EmailMessage)
    return parsed


def draft_with(subject: str, body: str = "body\n", html: str = "") -> mime.Draft:
    draft = mime.Draft()
    draft["From"] = "pbx@example.com"
    draft["To"] = "ops@example.com"
    draft["Subject"] = subject
    draft.set_content(body)
    if html:
        draft.add_alternative(html)
    return draft


@PROPERTY
@given(header_values)
def test_any_subject_reads_back_as_itself_on_lines_of_at_most_78(subject: str) -> None:
    draft = draft_with(subject)
    parsed = read(draft)
    assert parsed["Subject"] == " ".join(subject.split(" ")), subject  # white space inside is kept as set
    assert list(parsed.keys()).count("Subject") == 1 and parsed["To"] == "ops@example.com"
    assert parsed["Bcc"] is None and not parsed.defects
    for line in draft.as_bytes().split(b"\n"):
        # a single word longer than a line (a 200-character ASCII run) cannot be folded; nothing else is long
        assert len(line) <= 78 or b" " not in line.strip(), line


def test_spaces_between_cyrillic_words_survive_the_folds() -> None:
    subject = "Пропущен: Поддержка (600) — Иван Петров +7 916 123-45-67, ждал 42 с " * 3
    draft = draft_with(subject.strip())
    assert draft.as_bytes().count(b"\n ") >= 3  # folded into several encoded words
    assert read(draft)["Subject"] == subject.strip()


@pytest.mark.parametrize(
    "value",
    [
        "=?utf-8?q?x=0D=0ABcc:_evil@example.com?=",  # an encoded word of the caller's that would decode to CR/LF
        "Call from =?utf-8?b?QmNjOiBldmlsQGV4YW1wbGUuY29t?= now",
        "=?",
    ],
)
def test_caller_text_that_looks_like_an_encoded_word_stays_text(value: str) -> None:
    parsed = read(draft_with(value))
    assert parsed["Subject"] == value
    assert parsed["Bcc"] is None and [a.addr_spec for a in parsed["To"].addresses] == ["ops@example.com"]


@pytest.mark.parametrize("value", ["x\r\nBcc: evil@example.com", "x\nBcc: evil@example.com", "x\rY", "x\0y"])
def test_a_line_break_or_nul_in_a_value_is_refused(value: str) -> None:
    draft = mime.Draft()
    with pytest.raises(ValueError):
        draft["Subject"] = value
    assert draft.items() == []


@pytest.mark.parametrize(("name", "value"), [("To", "борис@example.com"), ("From", "pbx@пример.рф"),
                                             ("References", "<a@b> <ц@d>")])  # fmt: skip
def test_an_address_or_id_header_takes_ascii_only(name: str, value: str) -> None:
    draft = draft_with("s")
    with pytest.raises(ValueError, match="ASCII"):
        draft[name] = value
    assert draft.as_bytes().isascii()  # what was set before is still a whole message


@pytest.mark.parametrize("name", ["", "Bad Name", "X:Y", "Тема", "X\r\nBcc"])
def test_a_header_name_that_is_not_a_token_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        mime.Draft()[name] = "x"


@PROPERTY
@given(st.text(max_size=3000), st.text(max_size=2000))
def test_both_parts_decode_to_the_text_that_was_set(body: str, html: str) -> None:
    draft = draft_with("s", body=body, html=html)
    parsed = read(draft)
    expected = body.replace("\r\n", "\n").replace("\r", "\n")
    text_part = parsed.get_body(("plain",))
    assert text_part is not None and text_part.get_content_charset() == "utf-8"
    got = text_part.get_content()
    assert got == (expected + "\n" if expected and not expected.endswith("\n") else expected)
    if html:
        html_part = parsed.get_body(("html",))
        assert html_part is not None and parsed.get_content_type() == "multipart/alternative"
        wanted = html.replace("\r\n", "\n").replace("\r", "\n")
        assert html_part.get_content().rstrip("\n") == wanted.rstrip("\n")
    assert all(len(line) <= 998 for line in draft.as_bytes().split(b"\n"))
    assert draft.as_bytes().isascii()  # 7-bit clean: no relay can refuse or mangle it


def test_crlf_for_smtp_and_lf_for_sendmail() -> None:
    draft = draft_with("Пропущен звонок", body="Строка\nещё строка\n", html="<p>x</p>")
    lf, crlf = draft.as_bytes("\n"), draft.as_bytes("\r\n")
    assert b"\r" not in lf and crlf.replace(b"\r\n", b"\n") == lf and crlf.count(b"\n") == crlf.count(b"\r\n")
    assert read(draft, "\r\n")["Subject"] == "Пропущен звонок"


def test_headers_can_be_read_replaced_and_removed_like_a_message() -> None:
    draft = draft_with("s")
    draft["Comments"] = "one"
    draft["Comments"] = "two"
    assert draft["comments"] == "one" and draft.get_all("Comments") == ["one", "two"] and "Comments" in draft
    del draft["To"]
    draft["To"] = "a@example.com, b@example.com"
    assert [a.addr_spec for a in read(draft)["To"].addresses] == ["a@example.com", "b@example.com"]
    assert draft.keys()[-1] == "To" and draft["Missing"] is None and draft.get("Missing", "x") == "x"


def test_a_long_recipient_list_folds_between_addresses_only() -> None:
    addresses = [f"user{i}.with.a.long.name@department{i}.example.com" for i in range(40)]
    draft = draft_with("s")
    del draft["To"]
    draft["To"] = ", ".join(addresses)
    assert [a.addr_spec for a in read(draft)["To"].addresses] == addresses


@pytest.mark.parametrize(
    "address",
    ["ops@example.com", "a.b+c@sub.example.org", "o'brien@example.ie", "x_y-z@e-x.example", "#!$%&*/=^`{|}~@ex.io"],
)
def test_every_address_config_accepts_reads_back_from_the_header_as_itself(address: str) -> None:
    assert is_plain_address(address)
    draft = mime.Draft()
    draft["From"] = address
    draft["To"] = f"{address}, ops@example.com"
    parsed = read(draft)
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [("", address), ("", "ops@example.com")]
    assert [a.addr_spec for a in parsed["From"].addresses] == [address] and not parsed["To"].defects


@pytest.mark.parametrize(
    "address", ["Boss <boss@example.com>", "a@b@example.com", "борис@example.com", "x@[127.0.0.1]", "a=?b@example.com",
                '"quoted"@example.com', "a b@example.com", "a@example.com, evil@example.com"],
)  # fmt: skip
def test_addresses_that_would_not_read_back_are_not_accepted(address: str) -> None:
    assert not is_plain_address(address)


@pytest.mark.parametrize("offset", [0, 3 * 60, -(5 * 60 + 30), 14 * 60])
def test_the_date_header_is_what_email_utils_writes(offset: int) -> None:
    moment = datetime(2026, 12, 3, 9, 5, 7, tzinfo=timezone(timedelta(minutes=offset)))
    assert mime.format_date(moment) == format_datetime(moment)
    assert parsedate_to_datetime(mime.format_date(moment)) == moment


def test_message_ids_are_unique_and_well_formed() -> None:
    ids = {mime.make_msgid("missedcall-digest", "example.com") for _ in range(500)}
    assert len(ids) == 500
    for value in list(ids)[:20]:
        draft = mime.Draft()
        draft["Message-ID"] = value
        header = read(draft)["Message-ID"]
        assert header == value and not header.defects


def test_to_email_is_the_same_message_read_back() -> None:
    draft = draft_with("Пропущен", body="Текст\n", html="<p>Текст</p>")
    parsed = draft.to_email()
    assert parsed["Subject"] == "Пропущен" and parsed.get_body(("plain",)).get_content() == "Текст\n"


def test_the_encoding_header_is_decided_on_the_text_as_written() -> None:
    # Lone CRs become line ends before the part's encoding is chosen: 2,000 characters with "=" in them
    # are 7bit-plain once split, and must not be announced as quoted-printable (a reader would decode "=4").
    body = "\r".join(["a=41 " * 100] * 4)
    parsed = read(draft_with("s", body=body))
    assert parsed["Content-Transfer-Encoding"] == "7bit"
    assert parsed.get_content() == body.replace("\r", "\n") + "\n"
