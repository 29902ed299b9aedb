"""The pure halves of the FastAGI service: missedcall.detect.agiproto (shared with the hook) and
missedcall.detect.listen (MISSEDCALL_FASTAGI_LISTEN)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from missedcall.config import ConfigError
from missedcall.detect import agiproto, listen
from tests.agipeer import parse_header_block
from tests.paths import AGI_FIXTURES


@pytest.mark.parametrize("name", sorted(p.name for p in AGI_FIXTURES.glob("*.json")))
def test_recorded_header_blocks_read_as_asterisk_wrote_them(name: str) -> None:
    lines = json.loads((AGI_FIXTURES / name).read_text())["header_lines"]
    body = [line.rstrip("\n") for line in lines]
    body = body[: body.index("")]
    assert agiproto.parse_headers(body) == parse_header_block(lines)


def test_first_line_of_a_key_wins_and_a_forged_key_is_dropped() -> None:
    env = agiproto.parse_headers(["agi_uniqueid: 1.1", "agi_calleridname: x", "agi_uniqueid: 666", "tail", "agi_z:v"])
    assert env == {"agi_uniqueid": "1.1", "agi_calleridname": "x", "agi_z": "v"}
    assert agiproto.agi_args({"agi_arg_1": "600", "agi_arg_2": "TIMEOUT", "agi_arg_4": "x"}) == ["600", "TIMEOUT"]


@pytest.mark.parametrize(
    ("line", "result"),
    [
        ("200 result=1 (TRUE)", ("1", "TRUE")),
        ("200 result=0", ("0", "")),
        ("200 result=-1", ("-1", "")),
        ("200 result=1 (a (b) c)", ("1", "a (b) c")),
        ("511 Command Not Permitted on a dead channel or intercept routine", ("", "")),
    ],
)
def test_results(line: str, result: tuple[str, str]) -> None:
    assert agiproto.is_status(line)
    assert agiproto.parse_result(line) == result


def test_framed_reply_skips_strays_and_keeps_newlines() -> None:
    framed = agiproto.Framed(["${A}", "${B}"], "mcX")
    assert framed.line == 'GET FULL VARIABLE "mcX|${A}|${B}|mcX"\n'
    assert framed.feed("HANGUP") is None
    assert framed.feed("200 result=1 (mcY|stale|x|mcY)") is None
    assert framed.feed("200 result=1 (mcX|one") is None
    assert framed.feed("two|three|mcX)") == ["one\ntwo", "three"]


@given(st.text(max_size=300))
def test_verbose_line_is_always_one_quoted_argument(message: str) -> None:
    line = agiproto.verbose_line(message)
    assert line.startswith('VERBOSE "missedcall: ') and line.endswith('" 1\n')
    inner = line[len('VERBOSE "') : -len('" 1\n')]
    assert '"' not in inner and "\\" not in inner and all(ord(ch) >= 32 for ch in inner)


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("", "127.0.0.1", 4574, True),
        ("127.0.0.1:4574", "127.0.0.1", 4574, True),
        ("localhost:1", "localhost", 1, True),
        ("[::1]:4600", "::1", 4600, True),
        ("10.0.0.5:4574", "10.0.0.5", 4574, False),
        ("0.0.0.0:4574", "0.0.0.0", 4574, False),
    ],
)
def test_listen_addresses(text: str, host: str, port: int, loopback: bool) -> None:
    where = listen.parse_listen(text)
    assert (where.host, where.port, where.loopback) == (host, port, loopback)


@pytest.mark.parametrize(
    "text", ["4574", "example.com:4574", "127.0.0.1:0", "127.0.0.1:65536", "::1:4574", "[::1]4574", "1.2.3.4:x"]
)
def test_bad_listen_addresses_name_the_key(text: str) -> None:
    with pytest.raises(ConfigError, match="MISSEDCALL_FASTAGI_LISTEN"):
        listen.parse_listen(text)


def test_url() -> None:
    assert listen.parse_listen("[::1]:4600").url() == "agi://[::1]:4600/missed"
    assert listen.from_raw({}).url("version") == "agi://127.0.0.1:4574/version"


HOSTILE_ARGS = ['"missedcall: x"', "", " lead and trail ", "Иван Петров", 'a"b\\c', "x\ty", 0, 1, 42, "\u202e"]


@pytest.mark.parametrize("value", HOSTILE_ARGS)
def test_commands_are_written_exactly_as_pyst2_writes_them(value: object) -> None:
    """pyst2 is no longer imported by the hook, but what goes to Asterisk is still its encoding, byte for byte."""
    import io

    from asterisk.agi import AGI

    agi = object.__new__(AGI)  # its __init__ reads the AGI headers from stdin: not wanted here
    agi.stderr = io.StringIO()
    assert agiproto.quote(str(value)) == agi._quote(value)
    quoted = agiproto.quote(str(value))
    for command, args in (("VERBOSE", (quoted, 1)), ("GET FULL VARIABLE", (quoted,)), (" NOOP ", (value,)),
                          ("ANSWER", ())):  # fmt: skip
        agi.stdout = io.StringIO()
        agi.send_command(command, *args)
        assert agiproto.command_line(command, *args) == agi.stdout.getvalue()
