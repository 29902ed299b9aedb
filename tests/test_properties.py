"""Property-based tests (hypothesis): the AGI header parser, the verdict, the message builders.

For any input: the parser never raises and a caller name cannot change the
uniqueid or the number; the verdict never raises and "missed" means exactly
what docs/design.md §3 says; the message is well-formed and addressed to exactly the
configured recipients, with no other header.
"""

from __future__ import annotations

from datetime import datetime, timezone
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from missedcall.config import REASONS, Settings
from missedcall.dburl import DbTarget
from missedcall.deliver import digest, notify
from missedcall.detect import queuelog, verdict
from missedcall.detect.agi import header_value, parse_headers
from missedcall.detect.queuelog import QueueLogEvent
from missedcall.record.model import CallRecord
from tests.agipeer import make_headers

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SINGLE_HEADERS = {"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "X-Auto-Response-Suppress",
                  "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Thread-Topic",
                  "Thread-Index"}  # fmt: skip
VALID = ["ops@example.com", "OPS@example.com", "boss@example.com", "a.b+c@sub.example.org", "x@y.io"]
INVALID = ["not an address", "evil@example.com\r\nBcc: z@example.com", '"boss@example.com" <evil@example.com>']
POOL = VALID + INVALID
any_text = st.text(max_size=300)


def read_block(lines: list[str]) -> dict[str, str]:
    """What AgiSession reads: the bytes split at LF, a trailing CR dropped, up to the first empty line."""
    data = "".join(lines).encode("utf-8", "surrogatepass")
    block = []
    for raw in data.split(b"\n"):
        line = raw.rstrip(b"\r").decode("utf-8", "replace")
        if line == "":
            break
        block.append(line)
    return parse_headers(block)


# ============================================================================ AGI header parser


@PROPERTY
@given(st.lists(st.text(max_size=80), max_size=40))
def test_header_parser_never_raises(lines: list[str]) -> None:
    env = parse_headers(lines)
    assert all(key.startswith("agi_") and isinstance(value, str) for key, value in env.items())


@PROPERTY
@given(
    uniqueid=st.from_regex(r"\A[0-9]{9,10}\.[0-9]{1,5}\Z"),
    number=st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s),
    name=any_text,
    arg=any_text,
)
def test_a_caller_name_cannot_change_the_uniqueid_or_the_number(
    uniqueid: str, number: str, name: str, arg: str
) -> None:
    env = read_block(make_headers(uniqueid=uniqueid, callerid=number, calleridname=name, args=[arg]))
    assert env["agi_uniqueid"] == uniqueid
    assert header_value(env, "agi_callerid") == ("" if number in ("", "unknown") else number)
    first_line = name.split("\n", 1)[0].rstrip("\r") if name else "unknown"
    assert env["agi_calleridname"].split("\n", 1)[0] == first_line


# ============================================================================ verdict

EVENTS = sorted(queuelog.CALL_EVENTS | {"RINGNOANSWER", "RINGCANCELED", "NONE", "FOO"})
events_strategy = st.builds(
    QueueLogEvent,
    time=st.integers(0, 2**40),
    callid=st.just("1795659165.1"),
    queue=st.text(max_size=8),
    agent=st.text(max_size=5),
    event=st.sampled_from(EVENTS),
    data=st.lists(st.one_of(st.text(max_size=8), st.integers(-5, 10**30).map(str)), max_size=5).map(tuple),
)


@PROPERTY
@given(st.lists(events_strategy, max_size=15))
def test_verdict_on_any_queue_log_lines(events: list[QueueLogEvent]) -> None:
    judged = verdict.judge_events(events)
    exits = [i for i, e in enumerate(events) if e.event in queuelog.EXIT_EVENTS]
    if judged is None:
        assert not exits or any(e.event == "ENTERQUEUE" for e in events[exits[-1] :])
        return
    answered = any(e.event in ("CONNECT", "COMPLETEAGENT", "COMPLETECALLER") for e in events)
    assert judged.missed is not answered
    if judged.missed:
        assert judged.reason in REASONS or judged.reason in queuelog.EXIT_EVENTS
        assert judged.wait_seconds is None or 0 <= judged.wait_seconds < 10**9
        assert judged.position is None or 0 <= judged.position < 10**9


@PROPERTY
@given(st.text(max_size=400))
def test_queue_log_parser_never_raises(line: str) -> None:
    event = queuelog.parse_line(line)
    if event is not None:
        assert isinstance(event.time, int) and event.callid and event.event.isupper()


@PROPERTY
@given(queue=any_text, reason=any_text, abandoned=any_text, position=any_text)
def test_channel_verdict(queue: str, reason: str, abandoned: str, position: str) -> None:
    judged = verdict.judge_channel(queue, reason_arg=reason, abandoned=abandoned, position=position)
    assert judged.missed == bool(reason or abandoned.strip().upper() == "TRUE")


# ============================================================================ message builders


def _settings(fallback: list[str], language: str) -> Settings:
    return Settings(
        db=DbTarget(kind="sqlite", path="/nonexistent/missedcall.sqlite3"),
        mail_from="pbx@example.com",
        fallback_to=tuple(a for a in fallback if a in VALID),  # config refuses the others at the door
        language=language,
        timezone="Europe/Moscow",
    )


def assert_well_formed(raw: bytes, expected: list[str]) -> None:
    head = raw.split(b"\n\n", 1)[0]
    assert head.isascii() and b"\r" not in head
    assert all(len(line) <= 998 for line in raw.split(b"\n"))
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed.defects == []
    names = [name for name in parsed.keys() if not name.startswith("X-Missedcall-")]
    assert set(names) <= SINGLE_HEADERS and len(names) == len(set(names)), names
    assert {a for _, a in getaddresses(parsed.get_all("To", []))} == set(expected)
    assert parsed["From"] == "pbx@example.com"
    (parsed.get_body(("plain",)) or parsed).get_content()


call_strategy = st.builds(
    CallRecord,
    callid=st.text(max_size=80),
    queue=st.one_of(st.sampled_from(["600", "601", "*"]), st.text(max_size=70)),
    reason=st.sampled_from(REASONS),
    source=st.just("agi"),
    linkedid=st.text(max_size=80),
    path=st.lists(st.text(max_size=20), max_size=4).map(tuple),
    caller_num=any_text,
    caller_name=any_text,
    wait_seconds=st.one_of(st.none(), st.integers(-100, 10**7)),
    position=st.one_of(st.none(), st.integers(-5, 10**6)),
    ended_at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
    ),
    extra=st.dictionaries(st.just("did"), st.text(max_size=30)),
)


def expected_recipients(queue: str, rows: list[tuple[str, str]], fallback: list[str]) -> list[str]:
    """The README's rule, stated here on its own: the queue's own rows, else MISSEDCALL_FALLBACK_TO,
    plus every '*' row; each address once (case-insensitively); an address that is no address
    is nobody's (an own row that is invalid still counts as the queue having rows)."""
    own = [address for q, address in rows if q == queue and q != "*"]
    star = [address for q, address in rows if q == "*"]
    fallback = [address for address in fallback if address in VALID]
    chosen = own if own else fallback
    return sorted({address.lower() for address in chosen + star if address in VALID})


@PROPERTY
@given(
    call=call_strategy,
    own=st.lists(st.sampled_from(POOL), max_size=4),
    star=st.lists(st.sampled_from(POOL), max_size=3),
    fallback=st.lists(st.sampled_from(POOL), max_size=3),
    language=st.sampled_from(["en", "ru"]),
)
def test_message_goes_to_exactly_the_configured_recipients(
    call: CallRecord, own: list[str], star: list[str], fallback: list[str], language: str
) -> None:
    config = _settings(fallback, language)
    rows = [(call.queue, a) for a in own] + [("*", a) for a in star]
    expected = expected_recipients(call.queue, rows, fallback)
    the_plan = notify.plan(call, config, None, known_rows=rows)
    got = [a.lower() for a in the_plan.recipients]
    assert len(got) == len(set(got)), f"an address twice: {the_plan.recipients}"
    assert sorted(got) == expected
    assert the_plan.message is not None
    if expected:
        assert_well_formed(the_plan.message.as_bytes(), the_plan.recipients)


@PROPERTY
@given(calls=st.lists(call_strategy, min_size=1, max_size=20), language=st.sampled_from(["en", "ru"]))
def test_digest_goes_to_its_one_address(calls: list[CallRecord], language: str) -> None:
    message = digest.build(
        calls,
        to="boss@example.com",
        sender="pbx@example.com",
        language=language,
        limit=20,
        window=5,
        zone=None,
        now=datetime(2026, 11, 26, tzinfo=timezone.utc),
    )
    assert_well_formed(message.as_bytes(), ["boss@example.com"])
    assert message["X-Missedcall-Digest"] == str(len(calls))


def test_caller_key_groups_one_number_written_many_ways() -> None:
    from missedcall import text

    keys = {text.caller_key(n) for n in ("8 916 123-45-67", "+7 916 1234567", "79161234567", "9161234567")}
    assert keys == {"9161234567"}
    assert text.caller_key("102") == "" and text.caller_key("anonymous") == "" and text.caller_key("") == ""
    assert text.caller_key("٩١٦١٢٣٤٥٦٧") == ""  # Arabic-Indic digits are not dialled digits
