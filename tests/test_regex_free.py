"""The AGI path's checks written with character sets give what their regexes gave.

``re`` (with the ``enum`` and ``functools`` it imports) left the hook's path; each rule it held is
now a few string operations. The regexes live on here, as the specification each rewrite is held
to, on generated and hostile text: the mail's one-line cleaner, the address check, and the callid
as a header value and as a Message-ID.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from missedcall.config import is_plain_address
from missedcall.dburl import DbUrlError, parse_db_url
from missedcall.deliver import mail, threads

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS = rf"(?P<local>{ATEXT}(?:\.{ATEXT})*)@{LABEL}(?:\.{LABEL})*"

PROPERTY = settings(max_examples=2000, deadline=None)
#: Text with the characters each rule is about, and everything else Unicode has.
tricky = st.text(
    alphabet=st.sampled_from("ab.@-_=?!#$ \t\n\r\x00\x1f\x7f\x85\x9f\xa0\u2028\u2029\u212aж😀+")
    | st.characters(codec="utf-8"),
    max_size=80,
)


def old_clean(text: str, limit: int = 1000) -> str:
    text = CONTROL.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def old_is_address(text: str) -> bool:
    match = re.fullmatch(ADDRESS, text)
    return match is not None and len(text) <= 191 and len(match["local"]) <= 64 and "=?" not in text


def old_id_part(callid: str) -> str:
    part = ".".join(label for label in re.sub(r"[^A-Za-z0-9_-]", ".", callid[:64]).split(".") if label)
    return part or "call"


@PROPERTY
@given(tricky, st.integers(min_value=1, max_value=90))
def test_clean_is_the_regex_cleaner(text: str, limit: int) -> None:
    assert mail.clean(text, limit) == old_clean(text, limit)


@PROPERTY
@given(
    st.lists(st.sampled_from(["a", "Z9", ".", "@", "-", "=", "?", "ж", "\u212a", "x" * 63, "y" * 64, "!#", " "]))
    .map("".join)
    | tricky
)
def test_address_check_is_the_regex_check(text: str) -> None:
    assert is_plain_address(text) == old_is_address(text)


@pytest.mark.parametrize(
    "text",
    [
        "ops@example.com", "a.b@c.d", "a..b@c.d", ".a@c.d", "a.@c.d", "a@-c.d", "a@c-.d", "a@c..d", "a@", "@c",
        "a@b@c", "a@" + "b" * 63, "a@" + "b" * 64, "x" * 64 + "@c", "x" * 65 + "@c", "a@" + ".".join(["b" * 60] * 5),
        "a=?b@c", "ops@example.com\n", "Ops@EXAMPLE.com", "ж@c.d", "a@c.рф", "a\u212a@c.d",
    ],
)
def test_address_edge_cases(text: str) -> None:
    assert is_plain_address(text) == old_is_address(text)


@PROPERTY
@given(tricky)
def test_callid_in_a_message_id_is_the_regex_one(callid: str) -> None:
    assert threads.message_id(callid, "pbx@example.com") == f"<missedcall.{old_id_part(callid)}@example.com>"


@PROPERTY
@given(tricky)
def test_callid_header_is_the_regex_one(callid: str) -> None:
    message = mail.build_message(
        subject="s", body="b\n", sender="pbx@example.com", recipients=["ops@example.com"], callid=callid,
        now=datetime(2026, 12, 4, tzinfo=timezone.utc),
    )  # fmt: skip
    assert message["X-Missedcall-Callid"] == re.sub(r"[^A-Za-z0-9._-]", "_", callid)[:64]


HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?"
DATABASE = r"[A-Za-z0-9_$-]{1,64}"
#: Percent-encoding, ports and the URL's stripped ends are the parser's own rules: only the character rules here.
url_parts = st.lists(st.sampled_from(["a", "Z9", ".", "-", "_", "$", "ж", "\u212a", "x" * 60, "a b", "*", "\x00"]),
                     max_size=8).map("".join)  # fmt: skip


def old_db_url_ok(host: str, database: str) -> bool:
    return re.fullmatch(HOST, host) is not None and re.fullmatch(DATABASE, database) is not None


@PROPERTY
@given(url_parts, url_parts)
def test_mysql_url_host_and_database_checks_are_the_regex_ones(host: str, database: str) -> None:
    url = f"mysql://user:pw@{host}/{database}"
    try:
        target = parse_db_url(url)
    except DbUrlError:
        accepted = False
    else:
        accepted = True
        assert (target.host, target.database) == (host, database)
    assert accepted == old_db_url_ok(host, database)
