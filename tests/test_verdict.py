"""queue_log parsing and the verdict, on the queue_logs recorded from a real Asterisk 22."""

from __future__ import annotations

from pathlib import Path

import pytest

from missedcall.detect import queuelog, verdict
from tests.paths import QUEUE_LOG_FIXTURES

FIXTURES = QUEUE_LOG_FIXTURES
LAB = FIXTURES / "asterisk22-lab.queue_log"
FREEPBX = FIXTURES / "freepbx17-shaped.queue_log"


def judge(path: Path, callid: str) -> verdict.Verdict | None:
    events = queuelog.read_call_events(str(path), callid)
    assert events is not None
    return verdict.judge_events(events)


def test_plain_abandon() -> None:
    v = judge(LAB, "1795659165.1")
    assert v is not None and v.missed
    assert (v.queue, v.reason, v.wait_seconds, v.position, v.path) == ("600", "ABANDON", 3, 1, ("600",))
    assert v.entered_at == 1795659165 and v.ended_at == 1795659168
    assert v.caller_num == "5551234"


def test_timeout_with_nothing_after() -> None:
    v = judge(LAB, "1795659192.19")
    assert v is not None and v.missed and v.reason == "TIMEOUT" and v.wait_seconds == 5


def test_answered_calls_are_not_missed() -> None:
    for callid in ("1795659228.35", "1795659248.43"):
        v = judge(LAB, callid)
        assert v is not None and not v.missed


def test_timeout_then_overflow_abandon_is_attributed_to_the_overflow_queue() -> None:
    v = judge(FREEPBX, "1795661261.11")
    assert v is not None and v.missed
    assert v.queue == "601" and v.reason == "ABANDON" and v.path == ("600", "601") and v.wait_seconds == 3
    assert v.did == "5559000"


def test_timeout_then_overflow_answered_is_not_missed() -> None:
    v = judge(FREEPBX, "1795661276.19")
    assert v is not None and not v.missed and v.path == ("603", "602")


def test_caller_id_with_comma_in_enterqueue() -> None:
    v = judge(FREEPBX, "1795661331.59")
    assert v is not None and v.caller_num == "555 12,34"


def test_unknown_callid_gives_no_lines_and_absent_file_gives_none(tmp_path: Path) -> None:
    assert queuelog.read_call_events(str(LAB), "1795659999.999") == []
    assert queuelog.read_call_events(str(tmp_path / "missing"), "1.2") is None


def test_every_call_in_the_fixtures_gets_a_consistent_verdict() -> None:
    for path in (LAB, FREEPBX):
        callids = {
            e.callid for e in map(queuelog.parse_line, path.read_text().splitlines()) if e and e.callid != "NONE"
        }
        assert len(callids) > 40
        for callid in callids:
            events = queuelog.read_call_events(str(path), callid)
            assert events
            v = verdict.judge_events(events)
            assert v is not None, callid
            connected = any(e.event == "CONNECT" for e in events)
            assert v.missed is not connected


def test_tail_reader_stops_early_on_a_big_old_log(tmp_path: Path) -> None:
    """A year of old lines before the call: read backwards, stop at the call's own start time."""
    log = tmp_path / "queue_log"
    old = "".join(f"{1700000000 + i}|{1700000000 + i}.{i}|600|NONE|ABANDON|1|1|3\n" for i in range(200_000))
    recent = LAB.read_text()
    log.write_text(old + recent)
    # max_bytes smaller than the file: the call is still found because it is near the end.
    events = queuelog.read_call_events(str(log), "1795659165.1", max_bytes=len(recent) + 200_000)
    assert events is not None and [e.event for e in events][-1] == "ABANDON"


def test_tail_reader_finds_lines_across_chunk_boundaries(tmp_path: Path) -> None:
    log = tmp_path / "queue_log"
    filler = "x" * 100
    lines = []
    for i in range(3000):
        lines.append(f"1795659165|1795659165.{i % 7}|600|NONE|RINGNOANSWER|{filler}")
    lines.append("1795659165|1795659165.1|600|NONE|ENTERQUEUE||5551234|1")
    lines.insert(0, "1795659165|1795659165.1|600|NONE|DID|5559000")
    lines.append("1795659170|1795659165.1|600|NONE|ABANDON|2|1|5")
    log.write_text("\n".join(lines) + "\n")
    events = queuelog.read_call_events(str(log), "1795659165.1")
    assert events is not None
    assert events[0].event == "DID" and events[-1].event == "ABANDON"
    assert len(events) == 2 + 1 + sum(1 for i in range(3000) if i % 7 == 1)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        "abc|1.2|600|NONE|ABANDON",
        "1795659165|1.2|600|NONE",
        "1795659165||600|NONE|ABANDON|1|1|3",
        "1795659165|1.2|600|NONE|abandon|1",
        "\x00\x01|||||",
    ],
)
def test_garbage_lines_are_none(line: str) -> None:
    assert queuelog.parse_line(line) is None


def test_still_waiting_in_the_next_queue_has_no_verdict() -> None:
    lines = [
        "1795659100|1.1|600|NONE|ENTERQUEUE||555|1",
        "1795659108|1.1|600|NONE|EXITWITHTIMEOUT|1|1|8",
        "1795659108|1.1|601|NONE|ENTERQUEUE||555|1",
    ]
    events = [e for e in map(queuelog.parse_line, lines) if e]
    assert verdict.judge_events(events) is None
    assert verdict.judge_events(events[:2]) is not None


def test_exitwithkey_and_exitempty_fields() -> None:
    key = queuelog.parse_line("1795659100|1.1|600|NONE|EXITWITHKEY|5|2|1|17")
    empty = queuelog.parse_line("1795659100|1.2|600|NONE|EXITEMPTY|3|1|9")
    assert key and empty
    v1 = verdict.judge_events([key])
    v2 = verdict.judge_events([empty])
    assert v1 and (v1.reason, v1.position, v1.wait_seconds) == ("EXITWITHKEY", 2, 17)
    assert v2 and (v2.reason, v2.position, v2.wait_seconds) == ("EXITEMPTY", 3, 9)


def test_channel_fallback_ignores_stale_queuestatus() -> None:
    assert verdict.judge_channel("601", reason_arg="", abandoned="TRUE").reason == "ABANDON"
    assert not verdict.judge_channel("602", reason_arg="", abandoned="").missed
    assert verdict.judge_channel("600", reason_arg="TIMEOUT", abandoned="TRUE").reason == "TIMEOUT"
