"""The scripted AGI peer tested against what a real Asterisk 22 did: the recorded header
blocks replayed byte for byte, every recorded command answered as Asterisk answered it,
dead-channel refusals, res_agi's argument parsing, and every bound (hung peer, SIGHUP, EOF,
a child left behind). If the peer is wrong, every hook test built on it proves nothing."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.agipeer import (
    REPLY_DEAD,
    REPLY_UNKNOWN,
    AgiPeer,
    header_args,
    make_headers,
    parse_agi_args,
    parse_header_block,
)
from tests.paths import AGI_FIXTURES

FIXTURE_FILES = sorted(AGI_FIXTURES.glob("*.json"))


def fixture_path(name: str) -> Path:
    path = AGI_FIXTURES / name
    assert path.exists(), f"missing recorded AGI session {path} (tests/fixtures is part of the repo)"
    return path


def fixture_ids() -> list[Path | None]:
    # An empty list would only skip; missing recordings must fail instead.
    return list(FIXTURE_FILES) or [None]


def write_script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


# A throw-away AGI client that behaves like the probe that recorded the fixtures:
# one line per command, plus more while a line does not start with a status code.
PROBE = """
    import json, re, signal, sys
    events = []
    signal.signal(signal.SIGHUP, lambda *_: events.append("SIGNAL SIGHUP received"))
    commands, out_path = json.loads(sys.argv[1]), sys.argv[2]
    stdin = sys.stdin.buffer
    header = b""
    while True:
        line = stdin.readline()
        header += line
        if line in (b"\\n", b""):
            break
    exchanges = []
    for command in commands:
        sys.stdout.write(command + "\\n")
        sys.stdout.flush()
        recv = [stdin.readline().decode()]
        while recv[-1] and not re.match(r"\\d{3}[ -]", recv[-1]):
            recv.append(stdin.readline().decode())
        if recv[-1].startswith("520-"):  # a multi-line usage reply runs to "520 "
            while recv[-1] and not recv[-1].startswith("520 "):
                recv.append(stdin.readline().decode())
        exchanges.append({"send": command, "recv": recv})
    with open(out_path, "w") as handle:
        json.dump({"header": header.decode(), "exchanges": exchanges, "events": events}, handle)
"""


def run_probe(peer: AgiPeer, tmp_path: Path, commands: list[str]) -> dict:
    script = write_script(tmp_path, "probe.py", PROBE)
    out = tmp_path / "probe-out.json"
    result = peer.run([sys.executable, str(script), json.dumps(commands), str(out)], timeout=20)
    assert result.returncode == 0, result.stderr
    assert not result.timed_out and not result.pipes_left_open
    return json.loads(out.read_text())


# ============================================================================ AGI peer


@pytest.mark.parametrize("path", fixture_ids(), ids=lambda p: p.name if p else "no-fixtures")
def test_peer_replays_each_header_block_byte_exactly(path: Path | None, tmp_path: Path) -> None:
    assert path is not None, f"no recorded AGI sessions found in {AGI_FIXTURES}"
    data = json.loads(path.read_text(encoding="utf-8"))
    script = write_script(
        tmp_path,
        "dump_header.py",
        """
        import sys
        data = b""
        while not (data.endswith(b"\\n\\n") or data == b"\\n"):
            chunk = sys.stdin.buffer.read(1)
            if not chunk:
                break
            data += chunk
        open(sys.argv[1], "wb").write(data)
        """,
    )
    out = tmp_path / "header.bin"
    result = AgiPeer.from_fixture(path).run([sys.executable, str(script), str(out)], timeout=10)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == "".join(data["header_lines"]).encode("utf-8")


@pytest.mark.parametrize("path", fixture_ids(), ids=lambda p: p.name if p else "no-fixtures")
def test_peer_answers_every_recorded_command_as_asterisk_did(path: Path | None, tmp_path: Path) -> None:
    assert path is not None, f"no recorded AGI sessions found in {AGI_FIXTURES}"
    peer = AgiPeer.from_fixture(path)
    recorded = peer.fixture
    assert recorded is not None
    got = run_probe(peer, tmp_path, [exchange["send"] for exchange in recorded["exchanges"]])
    assert got["header"] == "".join(recorded["header_lines"])
    assert got["exchanges"] == recorded["exchanges"]
    recorded_signals = [event for event in recorded["events"] if event.startswith("SIGNAL")]
    assert got["events"] == recorded_signals


def test_newline_in_caller_name_gives_a_two_line_reply(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        "name.py",
        """
        import json, sys
        stdin = sys.stdin.buffer
        while stdin.readline() not in (b"\\n", b""):
            pass
        def send(command):
            sys.stdout.write(command + "\\n")
            sys.stdout.flush()
            return stdin.readline().decode()
        first = send("GET FULL VARIABLE ${CALLERID(name)}")
        # A one-line reader is now one reply behind:
        behind = send("GET VARIABLE ABANDONED")
        caught_up = stdin.readline().decode()
        json.dump([first, behind, caught_up], open(sys.argv[1], "w"))
        """,
    )
    out = tmp_path / "out.json"
    result = AgiPeer.from_fixture(fixture_path("4600-h.json")).run([sys.executable, str(script), str(out)])
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == ["200 result=1 (Line1\n", "Line2)\n", "200 result=1 (TRUE)\n"]
    assert result.exchanges[0] == ("GET FULL VARIABLE ${CALLERID(name)}", "200 result=1 (Line1\nLine2)\n")


@pytest.mark.parametrize(
    "command",
    ["ANSWER", "CHANNEL STATUS", 'STREAM FILE beep ""', 'SAY NUMBER 1 ""', 'SET CALLERID "x" <1>', "HANGUP",
     "WAIT FOR DIGIT 100"],
)  # fmt: skip
def test_dead_channel_refuses_what_asterisk_refuses(command: str, tmp_path: Path) -> None:
    headers = make_headers(uniqueid="1700000000.1", callerid="5551234", args=["600"])
    dead = run_probe(AgiPeer(headers, {}), tmp_path, [command, "NOOP"])
    assert [e["recv"] for e in dead["exchanges"]] == [[REPLY_DEAD], ["200 result=0\n"]]
    # NOOP after it: HANGUP on a live channel brings a SIGHUP, which must land
    # before the probe exits (during interpreter shutdown it would kill it).
    live = run_probe(AgiPeer(headers, {}, dead=False), tmp_path, [command, "NOOP"])
    assert live["exchanges"][0]["recv"][0].startswith("200 result=")
    assert live["events"] == (["SIGNAL SIGHUP received"] if command == "HANGUP" else [])


def test_dead_channel_allows_the_safe_commands(tmp_path: Path) -> None:
    headers = make_headers(uniqueid="1700000000.1", callerid="5551234", calleridname="John Doe", args=["600"])
    peer = AgiPeer(headers, {"ABANDONED": "TRUE", "QUEUEPOSITION": "2"})
    got = run_probe(
        peer,
        tmp_path,
        [
            "GET VARIABLE ABANDONED",
            "get variable QUEUESTATUS",
            "GET VARIABLE CALLERID(num)",
            "GET FULL VARIABLE ${CALLERID(name)}|${UNIQUEID}|${CHANNEL(linkedid)}|${QUEUEPOSITION}|${NOPE}",
            'SET VARIABLE MC_DONE "yes it is"',
            "GET VARIABLE MC_DONE",
            'VERBOSE "missed call recorded" 1',
            'EXEC NoOp "x"',
            "NOOP",
            "DATABASE PUT missedcall last 42",
            "DATABASE GET missedcall last",
            "GET FULL VARIABLE ${DB(missedcall/last)}",
            "DATABASE DEL missedcall last",
            "DATABASE GET missedcall last",
            "GET VARIABLE",
            "FROBNICATE",
        ],
    )
    replies = ["".join(e["recv"]) for e in got["exchanges"]]
    assert replies == [
        "200 result=1 (TRUE)\n",
        "200 result=0\n",
        "200 result=1 (5551234)\n",
        "200 result=1 (John Doe|1700000000.1|1700000000.1|2|)\n",
        "200 result=1\n",
        "200 result=1 (yes it is)\n",
        "200 result=1\n",
        "200 result=0\n",
        "200 result=0\n",
        "200 result=1\n",
        "200 result=1 (42)\n",
        "200 result=1 (42)\n",
        "200 result=1\n",
        "200 result=0\n",
        "520-Invalid command syntax.  Proper usage follows:\n Usage: GET VARIABLE\n520 End of proper usage.\n",
        REPLY_UNKNOWN,
    ]


def test_stdout_noise_is_reported_and_answered_510(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        "noisy.py",
        """
        import sys
        while sys.stdin.readline() not in ("\\n", ""):
            pass
        print("Traceback: something went wrong", flush=True)
        print(sys.stdin.readline(), end="", file=sys.stderr)
        sys.stdout.write("GET VARIABLE ABANDONED\\r\\n")  # CR stays part of the name, as in Asterisk
        sys.stdout.flush()
        print(sys.stdin.readline(), end="", file=sys.stderr)
        sys.stdout.write("NOOP")  # never terminated: Asterisk never sees it
        """,
    )
    peer = AgiPeer(make_headers(uniqueid="1.1"), {"ABANDONED": "TRUE"})
    result = peer.run([sys.executable, str(script)], timeout=10)
    assert result.returncode == 0
    assert result.stdout_garbage == ["Traceback: something went wrong", "NOOP"]
    assert result.commands == ["GET VARIABLE ABANDONED\r"]
    assert result.stderr == REPLY_UNKNOWN + "200 result=0\n"


def test_from_fixture_derives_the_channel_variables() -> None:
    peer = AgiPeer.from_fixture(fixture_path("4600-h.json"))
    assert peer.dead is True
    assert peer.variables["CALLERID(name)"] == "Line1\nLine2"
    assert peer.variables["CALLERID(num)"] == "5550004"
    assert peer.variables["ABANDONED"] == "TRUE"
    assert peer.variables["UNIQUEID"] == "1795659297.83"
    assert peer.variables["CHANNEL(linkedid)"] == "1795659297.82"
    assert peer.variables["QUEUEPOSITION"] == "1"
    assert "QUEUESTATUS" not in peer.variables
    assert peer.args == ["h", "5550004", "Line1\nLine2"]

    cont = AgiPeer.from_fixture(fixture_path("1603-cont.json"), variables={"QUEUENUM": "600"})
    assert cont.dead is False
    assert cont.variables["QUEUESTATUS"] == "TIMEOUT"
    assert cont.variables["QUEUENUM"] == "600"
    assert AgiPeer.from_fixture(fixture_path("0600-h.json")).variables["CALLERID(num)"] == ""


def test_from_fixture_can_swap_arguments_and_keep_the_rest() -> None:
    path = fixture_path("4600-h.json")
    original = json.loads(path.read_text(encoding="utf-8"))["header_lines"]
    peer = AgiPeer.from_fixture(path, args=["600", "TIMEOUT"], request="missed.py")
    assert peer.args == ["600", "TIMEOUT"]
    assert peer.header_lines[0] == "agi_request: missed.py\n"
    # The corrupted caller-name lines stay, only the agi_arg_* block is new.
    assert peer.header_lines[1:21] == original[1:21]
    assert peer.header_lines[-3:] == ["agi_arg_1: 600\n", "agi_arg_2: TIMEOUT\n", "\n"]


@pytest.mark.parametrize("name", ["0600-h.json", "1600-h.json", "1602-hh.json", "2600-h.json", "4600-h.json",
                                  "5600-h.json", "1603-cont.json"])  # fmt: skip
def test_make_headers_writes_what_asterisk_wrote(name: str) -> None:
    recorded = json.loads(fixture_path(name).read_text(encoding="utf-8"))
    headers = parse_header_block(recorded["header_lines"])

    def unknown_to_empty(value: str) -> str:
        return "" if value == "unknown" else value

    made = make_headers(
        uniqueid=headers["agi_uniqueid"],
        callerid=unknown_to_empty(headers["agi_callerid"]),
        calleridname=unknown_to_empty(headers["agi_calleridname"]),
        args=header_args(recorded["header_lines"]),
        context=headers["agi_context"],
        extension=headers["agi_extension"],
        channel=headers["agi_channel"],
        request=headers["agi_request"],
        priority=headers["agi_priority"],
        threadid=headers["agi_threadid"],
    )
    assert made == recorded["header_lines"]


def test_make_headers_defaults() -> None:
    lines = make_headers(uniqueid="1700000000.5", args=["600"])
    headers = parse_header_block(lines)
    assert lines[-1] == "\n"
    assert headers["agi_callerid"] == headers["agi_calleridname"] == "unknown"
    assert headers["agi_callingpres"] == "67"
    assert headers["agi_context"] == "ext-queues" and headers["agi_extension"] == "h"
    assert headers["agi_priority"] == "2" and headers["agi_request"] == "missed.py"
    assert headers["agi_type"] == "PJSIP"
    assert header_args(lines) == ["600"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET VARIABLE ABANDONED", ["GET", "VARIABLE", "ABANDONED"]),
        ('STREAM FILE beep ""', ["STREAM", "FILE", "beep", ""]),
        ('VERBOSE "two  words" 1', ["VERBOSE", "two  words", "1"]),
        ('SET VARIABLE X "a \\"quoted\\" \\\\ word"', ["SET", "VARIABLE", "X", 'a "quoted" \\ word']),
        ("SET VARIABLE X a\\ b", ["SET", "VARIABLE", "X", "a b"]),
        ('EXEC NoOp ab"c d"e', ["EXEC", "NoOp", "abc de"]),
        ("  NOOP \t ", ["NOOP"]),
        ("", []),
    ],
)
def test_command_lines_split_like_res_agi(line: str, expected: list[str]) -> None:
    assert parse_agi_args(line) == expected


def test_hung_asterisk_is_bounded_and_the_child_killed(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        "waits.py",
        """
        import os, sys
        open(sys.argv[1], "w").write(str(os.getpid()))
        while sys.stdin.readline() not in ("\\n", ""):
            pass
        for command in ("GET VARIABLE ABANDONED", "GET VARIABLE QUEUESTATUS"):
            print(command, flush=True)
            sys.stdin.readline()  # the second reply never comes
        """,
    )
    pid_file = tmp_path / "pid"
    peer = AgiPeer(make_headers(uniqueid="1.1"), {"ABANDONED": "TRUE"}, no_reply_after=1)
    started = time.monotonic()
    result = peer.run([sys.executable, str(script), str(pid_file)], timeout=1.5)
    assert time.monotonic() - started < 1.5 + 6  # timeout plus the bounded kill
    assert result.timed_out and result.returncode is None and not result.ok
    assert 1.4 <= result.duration < 3
    assert result.commands == ["GET VARIABLE ABANDONED", "GET VARIABLE QUEUESTATUS"]
    assert result.unanswered == ["GET VARIABLE QUEUESTATUS"]
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_eof_after_headers(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        "eof.py",
        """
        import sys
        while sys.stdin.readline() not in ("\\n", ""):
            pass
        print("GET VARIABLE ABANDONED", flush=True)
        sys.exit(3 if sys.stdin.readline() == "" else 0)
        """,
    )
    result = AgiPeer(make_headers(uniqueid="1.1"), {}, eof_after_headers=True).run([sys.executable, str(script)])
    assert result.returncode == 3
    assert result.unanswered == ["GET VARIABLE ABANDONED"]


SIGHUP_SCRIPT = """
    import json, sys, signal, time
    if sys.argv[2] == "ignore":
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while sys.stdin.readline() not in ("\\n", ""):
        pass
    replies = []
    for command in ("NOOP", "CHANNEL STATUS", "ANSWER", "GET VARIABLE ABANDONED"):
        print(command, flush=True)
        replies.append(sys.stdin.readline())
        time.sleep(0.1)  # the signal lands while we work, as on a real hangup
    json.dump(replies, open(sys.argv[1], "w"))
"""


def test_sighup_on_a_live_channel_kills_a_default_script(tmp_path: Path) -> None:
    script = write_script(tmp_path, "hup.py", SIGHUP_SCRIPT)
    peer = AgiPeer(make_headers(uniqueid="1.1"), {}, dead=False, sighup_after_commands=2)
    result = peer.run([sys.executable, str(script), str(tmp_path / "out"), "default"])
    assert result.sighup_sent
    assert result.returncode == -signal.SIGHUP
    assert result.commands == ["NOOP", "CHANNEL STATUS"]


def test_after_sighup_the_channel_is_dead(tmp_path: Path) -> None:
    script = write_script(tmp_path, "hup.py", SIGHUP_SCRIPT)
    out = tmp_path / "out"
    peer = AgiPeer(make_headers(uniqueid="1.1"), {"ABANDONED": "TRUE"}, dead=False, sighup_after_commands=2)
    result = peer.run([sys.executable, str(script), str(out), "ignore"])
    assert result.returncode == 0 and result.sighup_sent
    assert json.loads(out.read_text()) == ["200 result=0\n", "200 result=6\n", REPLY_DEAD, "200 result=1 (TRUE)\n"]

    quiet = AgiPeer(make_headers(uniqueid="1.1"), {"AGISIGHUP": "no"}, dead=False, sighup_after_commands=2)
    result = quiet.run([sys.executable, str(script), str(out), "default"])
    assert result.returncode == 0 and not result.sighup_sent
    assert json.loads(out.read_text())[2] == REPLY_DEAD

    with pytest.raises(ValueError):
        AgiPeer(make_headers(uniqueid="1.1"), {}, dead=True, sighup_after_commands=1)


def test_reply_delay_slows_every_reply(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        "slow.py",
        """
        import sys
        while sys.stdin.readline() not in ("\\n", ""):
            pass
        for _ in range(3):
            print("NOOP", flush=True)
            sys.stdin.readline()
        """,
    )
    result = AgiPeer(make_headers(uniqueid="1.1"), {}, reply_delay=0.2).run([sys.executable, str(script)])
    assert result.returncode == 0
    assert result.duration >= 0.6


def test_a_child_left_behind_is_reported(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        "leaves.py",
        """
        import subprocess, sys
        # The grandchild inherits stdout/stderr, like a careless background sender.
        child = subprocess.Popen(["sleep", "30"])
        open(sys.argv[1], "w").write(str(child.pid))
        """,
    )
    pid_file = tmp_path / "pid"
    try:
        result = AgiPeer(make_headers(uniqueid="1.1"), {}).run([sys.executable, str(script), str(pid_file)], timeout=10)
        assert result.returncode == 0
        assert result.pipes_left_open and not result.ok
        assert result.duration < 5
    finally:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
