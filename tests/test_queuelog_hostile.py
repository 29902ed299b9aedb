"""queue_log written by a hostile caller or a broken clock, read by the real hook (agi-bin/missed.py against the
scripted Asterisk peer) and the real ``missedcall-admin sweep``, each in its own process.

* A line break in a caller number: Asterisk writes the ENTERQUEUE's fields raw, so the record is split over two
  physical lines and the second can read like a record of another call. A forged CONNECT must not silence a real
  abandon; a forged ABANDON must not mail a call that never was.
* Times out of range: a 12-digit epoch (datetime raises on it) and a line a day ahead (it held the grace period
  open for every later call) are skipped with a WARN; the calls around them are mailed once, the position saved.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.agibox import Pbx, abandon_peer, callids_mailed, make_pbx

NOW = int(time.time())
OLD = NOW - 600
A = f"{OLD}.11"  # the real abandon
B = f"{OLD + 1}.12"  # the caller whose number carries the line break; answered
FAKE = f"{OLD + 2}.99"  # a call that never was


@pytest.fixture
def box(tmp_path: Path, sqlite_url: str) -> Pbx:
    return make_pbx(tmp_path, sqlite_url, MISSEDCALL_TIMEZONE="UTC", MISSEDCALL_FLOOD_LIMIT="100")


# A caller number as it reaches queue_log ({t}: a plausible time; {a}: the real abandon's callid; {fake}: a call
# that never was). Each splits the ENTERQUEUE record; the piece after the break is shaped like a record.
FORGED_CONNECT = [
    "5551234\n{t}|{a}|600|Agent One|CONNECT|0|{a}9|0",
    "\n{t}|{a}|600|NONE|CONNECT|0|x|0",
    "555\r\n{t}|{a}|600|NONE|CONNECT|1|{a}7|1",
    "a\nb\n{t}|{a}|600|NONE|COMPLETECALLER|0|5",
    "+7 916\n{t}|{a}|600|Agent One|COMPLETEAGENT|0|5|1\n",
]
FORGED_ABANDON = [
    "555\n{t}|{fake}|600|NONE|ABANDON|1|1|3",
    "\n{t}|{fake}|600|NONE|EXITWITHTIMEOUT|1|1|9",
    "x\n{t}|{fake}|600|NONE|EXITEMPTY|1|1|4\n",
    "555\n{t}|{fake}|600|NONE|EXITWITHKEY|5|1|1|4",
]


def hostile_log(caller: str) -> list[str]:
    """A waits in 600 and hangs up; B, who called meanwhile, is answered; B's number is ``caller``."""
    number = caller.format(t=OLD + 2, a=A, fake=FAKE)
    return [
        f"{OLD}|{A}|600|NONE|DID|5559000",
        f"{OLD}|{A}|600|NONE|ENTERQUEUE||5551234|1",
        f"{OLD + 1}|{B}|600|NONE|DID|5559000",
        f"{OLD + 1}|{B}|600|NONE|ENTERQUEUE||{number}|2",
        f"{OLD + 3}|{B}|600|Agent Two|CONNECT|2|{B}5|1",
        f"{OLD + 5}|{A}|600|NONE|ABANDON|1|1|5",
        f"{OLD + 40}|{B}|600|Agent Two|COMPLETEAGENT|2|37|2",
    ]


def sweep(box: Pbx, *args: str) -> str:
    done = box.admin("sweep", "--grace", "0", *args)
    assert done.returncode == 0 and done.stderr == "", done
    return done.stdout


@pytest.mark.parametrize("caller", FORGED_CONNECT + FORGED_ABANDON)
def test_the_hook_mails_the_real_abandon_once_whatever_the_caller_number(box: Pbx, caller: str) -> None:
    box.write_queue_log(hostile_log(caller))
    run = box.run(abandon_peer(A), ["600"])
    assert run.ok and run.stdout_garbage == [], run
    assert callids_mailed(box.stored()) == [A]
    [call] = box.calls()
    assert (call.callid, call.status, call.reason, call.wait_seconds) == (A, "sent", "ABANDON", 5)
    # The sweeper reads the same file afterwards: nothing new, nothing twice, the forged call never recorded.
    out = sweep(box, "--from-start", "-v")
    assert "1 answered" in out, out
    assert callids_mailed(box.stored()) == [A]
    assert [c.callid for c in box.calls()] == [A]


@pytest.mark.parametrize("caller", FORGED_CONNECT + FORGED_ABANDON)
def test_the_sweeper_alone_mails_the_real_abandon_once_and_never_the_forged_call(box: Pbx, caller: str) -> None:
    box.write_queue_log(hostile_log(caller))
    out = sweep(box, "--from-start", "-v")
    assert "1 missed" in out and "1 answered" in out, out
    assert callids_mailed(box.stored()) == [A]
    [call] = box.calls()
    assert (call.callid, call.source, call.status, call.reason, call.wait_seconds) == (
        A, "queue_log", "sent", "ABANDON", 5,
    )  # fmt: skip
    sweep(box)
    assert callids_mailed(box.stored()) == [A]


def test_a_split_caller_number_is_kept_whole(box: Pbx) -> None:
    """B abandons too: its number, line break and all, is one caller ID (the mail builder makes it printable)."""
    number = "555\n1234"
    box.write_queue_log(
        [
            f"{OLD}|{B}|600|NONE|ENTERQUEUE||{number}|1",
            f"{OLD + 4}|{B}|600|NONE|ABANDON|1|1|4",
        ]
    )
    sweep(box, "--from-start")
    [call] = box.calls()
    assert (call.callid, call.caller_num, call.position) == (B, number, 1)
    [mail] = box.stored()
    assert mail.message["X-Missedcall-Callid"] == B and "555" in str(mail.message["Subject"])


# ============================================================================ times out of range

GOOD_1, GOOD_2 = f"{OLD}.1", f"{OLD + 100}.2"


def abandon(callid: str, at: int, wait: int = 3) -> list[str]:
    return [f"{at}|{callid}|600|NONE|ENTERQUEUE||5551234|1", f"{at + wait}|{callid}|600|NONE|ABANDON|1|1|{wait}"]


@pytest.mark.parametrize(
    "poison",
    [
        "999999999999|{c}|600|NONE|ABANDON|1|1|3",  # 12 digits: year 33658, datetime raises
        "253402300800|{c}|600|NONE|ENTERQUEUE||5551234|1",  # 10000-01-01: one past datetime's range
        "0|{c}|600|NONE|ABANDON|1|1|3",
        "946684799|{c}|600|NONE|EXITWITHTIMEOUT|1|1|3",  # a second before 2000
        "{day}|{c}|600|NONE|ABANDON|1|1|3",  # a day ahead
    ],
)
def test_a_poisoned_time_between_good_calls_is_skipped_and_the_position_saved(box: Pbx, poison: str) -> None:
    bad = f"{OLD + 50}.7"
    box.write_queue_log([*abandon(GOOD_1, OLD), poison.format(c=bad, day=NOW + 86400), *abandon(GOOD_2, OLD + 100)])
    done = box.admin("sweep", "--from-start", "-v")
    assert done.returncode == 0 and done.stderr == "", done
    assert "skipped 1 record(s) dated before 2000 or in the future" in done.stdout, done.stdout
    assert sorted(callids_mailed(box.stored())) == sorted([GOOD_1, GOOD_2])
    assert {c.callid for c in box.calls()} == {GOOD_1, GOOD_2}
    with box.store() as store:
        position = json.loads(store.get_state("queue_log_position") or "{}")
    assert position["file"]["offset"] == box.queue_log.stat().st_size  # not frozen: the next run goes on
    box.write_queue_log(abandon(f"{OLD + 200}.3", OLD + 200))
    done = box.admin("sweep", "-v")
    assert done.returncode == 0 and "read 2 line(s)" in done.stdout, done.stdout
    assert len(box.stored()) == 3


def test_a_line_from_the_future_does_not_end_the_grace_period_of_later_calls(box: Pbx) -> None:
    """A timeout that the overflow queue then answers must wait out its grace period, future line or not."""
    start = int(time.time())
    late = f"{start - 8}.5"
    box.write_queue_log(
        [
            *abandon(GOOD_1, OLD),
            f"{start + 86400}|{FAKE}|600|NONE|ABANDON|1|1|3",  # a day ahead
            f"{start - 8}|{late}|600|NONE|ENTERQUEUE||5551234|1",
            f"{start}|{late}|600|NONE|EXITWITHTIMEOUT|1|1|8",  # just now: within the grace period
        ]
    )
    done = box.admin("sweep", "--from-start", "--grace", "60", "-v")
    assert done.returncode == 0 and "1 within the grace period" in done.stdout, done.stdout
    assert callids_mailed(box.stored()) == [GOOD_1]
    box.write_queue_log(
        [
            f"{start + 1}|{late}|602|NONE|ENTERQUEUE||5551234|1",
            f"{start + 2}|{late}|602|Agent Two|CONNECT|1|{late}9|1",
        ]
    )
    done = box.admin("sweep", "--grace", "60", "-v")
    assert done.returncode == 0, done
    assert callids_mailed(box.stored()) == [GOOD_1]
    assert {c.callid for c in box.calls()} == {GOOD_1}


@pytest.mark.parametrize("jointime", ["999999999999", "253402300800", "12", str(NOW + 86400)])
def test_the_hook_ignores_an_implausible_queuejointime_and_still_mails(box: Pbx, jointime: str) -> None:
    callid = f"{NOW - 30}.3"
    peer = abandon_peer(callid)
    peer.variables["QUEUEJOINTIME"] = jointime
    run = box.run(peer, ["600"])
    assert run.ok and run.stdout_garbage == [], run
    assert callids_mailed(box.stored()) == [callid]
    [call] = box.calls()
    assert (call.callid, call.status, call.entered_at) == (callid, "sent", None)
    assert any("ignoring QUEUEJOINTIME" in c for c in run.commands), run.commands


def test_the_hook_uses_a_plausible_queuejointime(box: Pbx) -> None:
    callid = f"{NOW - 30}.4"
    peer = abandon_peer(callid)
    peer.variables["QUEUEJOINTIME"] = str(NOW - 25)
    run = box.run(peer, ["600"])
    assert run.ok, run
    [call] = box.calls()
    assert call.entered_at is not None and int(call.entered_at.timestamp()) == NOW - 25


# ============================================================================ an ENTERQUEUE cut short


@pytest.mark.parametrize("after", ["not a record", "", "5551234"])
def test_an_enterqueue_without_data_then_a_line_without_fields_stops_nothing(box: Pbx, after: str) -> None:
    """The joiner looked for the data of an ENTERQUEUE that had none and raised: the sweep died on this line
    at every run, the position never moved. Now the pieces stay garbage and the calls around them are mailed."""
    cut = f"{OLD + 50}.7"
    box.write_queue_log([*abandon(GOOD_1, OLD), f"{OLD + 50}|{cut}|600|NONE|ENTERQUEUE", after,
                         *abandon(GOOD_2, OLD + 100)])  # fmt: skip
    done = box.admin("sweep", "--from-start", "-v")
    assert done.returncode == 0 and done.stderr == "", done
    assert sorted(callids_mailed(box.stored())) == sorted([GOOD_1, GOOD_2])
    with box.store() as store:
        position = json.loads(store.get_state("queue_log_position") or "{}")
    assert position["file"]["offset"] == box.queue_log.stat().st_size
