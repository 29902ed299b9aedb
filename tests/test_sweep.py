"""The queue_log sweeper (``missedcall-admin sweep``) against real files, the real databases and the sendmail
stand-in; the AGI hook, where a case needs it, is the real agi-bin/missed.py against the scripted Asterisk peer.

Queue_log lines are written the way Asterisk 22 and FreePBX 17 write them (tests/fixtures/queue_log), with
times relative to now so that the grace period means what it says.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from missedcall import config
from missedcall.admin import cli
from missedcall.detect import queuelog, sweep, sweepstate, verdict
from missedcall.detect.book import Book
from missedcall.detect.sweeper import CORRECTED, Sweeper
from missedcall.detect.tail import Tail
from missedcall.record.model import CallRecord
from tests.agibox import Pbx, make_pbx
from tests.agipeer import AgiPeer, make_headers
from tests.mailbox import text_part, wait_for_mail
from tests.paths import AGI_FIXTURES, QUEUE_LOG_FIXTURES

ROOT = Path(__file__).resolve().parents[1]
MISSED = ROOT / "agi-bin" / "missed.py"
LAB_LOG = QUEUE_LOG_FIXTURES / "asterisk22-lab.queue_log"
FREEPBX_LOG = QUEUE_LOG_FIXTURES / "freepbx17-shaped.queue_log"
BENCH = ROOT / "bench" / "sweep_bench.py"


# ============================================================================ queue_log lines


def line(t: int, callid: str, queue: str, event: str, *data: str, agent: str = "NONE") -> str:
    return "|".join([str(t), callid, queue, agent, event, *data])


def enter(t: int, callid: str, queue: str, caller: str = "5551234", did: str = "5559000") -> list[str]:
    """FreePBX writes the DID line right before each ENTERQUEUE."""
    return [line(t, callid, queue, "DID", did), line(t, callid, queue, "ENTERQUEUE", "", caller, "1")]


def abandon(t: int, callid: str, queue: str = "600", wait: int = 3, **kw: str) -> list[str]:
    return [
        *enter(t, callid, queue, **kw),
        line(t + 1, callid, queue, "RINGNOANSWER", "1000", agent="Agent One"),
        line(t + wait, callid, queue, "ABANDON", "1", "1", str(wait)),
    ]


def timeout(t: int, callid: str, queue: str = "600", wait: int = 8, **kw: str) -> list[str]:
    return [
        *enter(t, callid, queue, **kw),
        line(t + wait, callid, queue, "RINGNOANSWER", "8000", agent="Agent Two"),
        line(t + wait, callid, queue, "EXITWITHTIMEOUT", "1", "1", str(wait)),
    ]


def answered(t: int, callid: str, queue: str = "602", talk: int = 30) -> list[str]:
    return [
        *enter(t, callid, queue),
        line(t, callid, queue, "CONNECT", "0", f"{callid}9", "0", agent="Answer Agent"),
        line(t + talk, callid, queue, "COMPLETEAGENT", "0", str(talk), "1", agent="Answer Agent"),
    ]


# ============================================================================ a configured box


class Box(Pbx):
    """The shared test box (tests/agibox.py) with what the sweeper's tests add: queue_log written whole or
    appended to, ``sweep`` run in this process, calls by callid, the state table."""

    def write(self, lines: list[str], *, end: str = "\n") -> None:
        self.queue_log.write_text("".join(x + "\n" for x in lines[:-1]) + (lines[-1] + end if lines else ""))

    def append(self, lines: list[str], *, raw: str = "") -> None:
        with open(self.queue_log, "a", encoding="utf-8") as handle:
            handle.write(raw + "".join(x + "\n" for x in lines))

    def sweep(self, *args: str) -> tuple[int, str, str]:
        """``missedcall-admin sweep ARGS`` in this process: (exit status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["sweep", *args])
        return code, out.getvalue(), err.getvalue()

    def by_callid(self) -> dict[str, CallRecord]:
        return {c.callid: c for c in self.calls()}

    def state(self, name: str) -> str | None:
        with self.store() as store:
            return store.get_state(name)

    def run_agi(self, peer: AgiPeer, args: list[str], **env: str) -> None:
        run = self.run(peer, list(args), **env)
        assert run.returncode == 0 and run.stdout_garbage == [], run


SWEEP_RECIPIENTS = (("600", "ops600@example.com", ""), ("601", "ops601@example.com", ""), ("*", "boss@example.com", ""))


def make_box(tmp_path: Path, db_url: str, maildir: Path, monkeypatch: pytest.MonkeyPatch) -> Box:
    box = make_pbx(
        tmp_path,
        db_url,
        recipients=SWEEP_RECIPIENTS,
        maildir=maildir,
        kind=Box,
        MISSEDCALL_TIMEZONE="UTC",
    )
    box.in_this_process(monkeypatch)
    return box


def _made(tmp_path: Path, db_url: str, maildir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Box]:
    made = make_box(tmp_path, db_url, maildir, monkeypatch)
    yield made
    with contextlib.suppress(OSError):
        os.unlink(sweep.lock_path(config.load_settings()))


@pytest.fixture
def box(tmp_path: Path, db_url: str, maildir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Box]:
    """A box on each database backend."""
    yield from _made(tmp_path, db_url, maildir, monkeypatch)


@pytest.fixture
def lite(tmp_path: Path, sqlite_url: str, maildir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Box]:
    """A box on SQLite only, for what does not depend on the database."""
    yield from _made(tmp_path, sqlite_url, maildir, monkeypatch)


NOW = int(time.time())
OLD = NOW - 600  # well past any grace period


def cid(t: int, n: int) -> str:
    """A callid as Asterisk makes it: the channel's creation time, a dot, a sequence number."""
    return f"{t}.{n}"


# ============================================================================ the cases of the issue


def test_abandon_already_recorded_by_the_agi_gets_no_second_mail(box: Box) -> None:
    lab = [x.rstrip("\n") for x in LAB_LOG.read_text().splitlines() if "|1795659165.1|" in x]
    box.write(lab)
    box.run_agi(AgiPeer.from_fixture(AGI_FIXTURES / "1600-h.json"), ["600"])
    assert len(box.stored()) == 1
    code, out, _ = box.sweep("--from-start", "-v")
    assert code == 0
    assert "already recorded: 1795659165.1" in out
    assert len(box.stored()) == 1
    [call] = box.by_callid().values()
    assert (call.source, call.status, call.reason) == ("agi", "sent", "ABANDON")


def test_timeout_with_nothing_after_is_mailed_only_after_the_grace_period(box: Box) -> None:
    box.write(["1|NONE|NONE|NONE|QUEUESTART|"])
    box.sweep()  # first run: starts at the end of the file
    start = int(time.time())
    callid = cid(start, 11)
    box.append(timeout(start - 8, callid, "600", wait=8))  # its exit line is dated now
    code, out, _ = box.sweep("--grace", "3", "-v")
    assert code == 0 and box.stored() == [] and box.by_callid() == {}
    assert "1 within the grace period" in out
    time.sleep(max(0.0, start + 3 + 1.05 - time.time()))
    code, out, _ = box.sweep("--grace", "3", "-v")
    [mail] = box.stored()
    assert sorted(mail.recipients) == ["boss@example.com", "ops600@example.com"]
    assert "maximum wait time" in text_part(mail.message)
    call = box.by_callid()[callid]
    assert (call.queue, call.reason, call.source, call.status, call.wait_seconds) == (
        "600", "TIMEOUT", "queue_log", "sent", 8,
    )  # fmt: skip
    assert call.path == ("600",) and call.caller_num == "5551234"
    box.sweep("--grace", "3")
    assert len(box.stored()) == 1


def test_timeout_then_second_queue_answered_sends_nothing(box: Box) -> None:
    callid = cid(OLD, 19)
    box.write([*timeout(OLD, callid, "603", wait=5), *answered(OLD + 5, callid, "602")])
    code, out, _ = box.sweep("--from-start", "-v")
    assert code == 0 and box.stored() == [] and box.by_callid() == {}
    assert "0 missed" in out and "1 answered" in out


def test_timeout_then_second_queue_abandon_is_one_mail_for_the_second_queue(box: Box) -> None:
    callid = cid(OLD, 11)
    box.write([*timeout(OLD, callid, "600", wait=8), *abandon(OLD + 8, callid, "601", wait=3)])
    box.sweep("--from-start")
    [mail] = box.stored()
    assert sorted(mail.recipients) == ["boss@example.com", "ops601@example.com"]
    body = text_part(mail.message)
    assert "600 > 601" in body and "5559000" in body and "the caller hung up while waiting" in body
    call = box.by_callid()[callid]
    assert (call.queue, call.reason, call.path, call.wait_seconds, call.source, call.extra) == (
        "601", "ABANDON", ("600", "601"), 3, "queue_log", {"did": "5559000"},
    )  # fmt: skip


def test_the_freepbx_fixture_replayed(lite: Box) -> None:
    """The recorded FreePBX 17 log: 42 missed calls, 2 answered, the overflow abandon with its whole path."""
    lite.queue_log.write_text(FREEPBX_LOG.read_text())
    lite.configure(MISSEDCALL_FLOOD_LIMIT="100")  # a 30-call burst: no digest here
    code, out, _ = lite.sweep("--from-start", "-v")
    assert code == 0
    calls = lite.by_callid()
    assert len(calls) == 42 and len(lite.stored()) == 42
    assert calls["1795661261.11"].path == ("600", "601") and calls["1795661261.11"].queue == "601"
    assert calls["1795661286.25"].reason == "TIMEOUT"
    assert "1795661276.19" not in calls and "1795661255.7" not in calls  # answered
    assert "42 missed" in out and "2 answered" in out


@pytest.mark.parametrize(
    ("event", "data", "reason", "words"),
    [
        ("EXITEMPTY", ("1", "1", "7"), "EXITEMPTY", "no agent"),
        ("EXITWITHKEY", ("5", "1", "1", "7"), "EXITWITHKEY", "key"),
    ],
)
def test_exitempty_and_exitwithkey(box: Box, event: str, data: tuple[str, ...], reason: str, words: str) -> None:
    callid = cid(OLD, 31)
    box.write([*enter(OLD, callid, "600"), line(OLD + 7, callid, "600", event, *data)])
    box.sweep("--from-start")
    [mail] = box.stored()
    call = box.by_callid()[callid]
    assert (call.reason, call.wait_seconds, call.position) == (reason, 7, 1)
    assert words in text_part(mail.message).lower()


def test_min_wait_records_without_mailing(box: Box) -> None:
    box.configure(MISSEDCALL_MIN_WAIT="10")
    short, long = cid(OLD, 1), cid(OLD + 20, 2)
    box.write([*abandon(OLD, short, wait=3), *abandon(OLD + 20, long, wait=12)])
    box.sweep("--from-start")
    calls = box.by_callid()
    assert calls[short].status == "skipped" and "MISSEDCALL_MIN_WAIT" in calls[short].last_error
    assert calls[long].status == "sent"
    [mail] = box.stored()
    assert mail.message["X-Missedcall-Callid"] == long


def test_two_runs_in_a_row_the_second_sends_nothing(box: Box) -> None:
    box.write([*abandon(OLD, cid(OLD, 1)), *timeout(OLD + 30, cid(OLD + 30, 2))])
    box.sweep("--from-start")
    assert len(box.stored()) == 2
    code, out, _ = box.sweep("-v")
    assert code == 0 and "read 0 line(s)" in out
    assert len(box.stored()) == 2
    # Even re-reading everything sends nothing twice: the rows are claimed.
    code, out, _ = box.sweep("--from-start", "-v")
    assert "already recorded: 2" in out and len(box.stored()) == 2


def test_rotation_by_rename(box: Box) -> None:
    a, b, c, d = (cid(OLD + i * 40, i) for i in range(4))
    box.write(abandon(OLD, a))
    box.sweep("--from-start")
    # logrotate renames the file; Asterisk writes on to the old one until it reopens its log...
    rotated = box.queue_log.with_name("queue_log.1")
    box.queue_log.rename(rotated)
    with open(rotated, "a") as old:
        old.write("\n".join([*abandon(OLD + 40, b), *enter(OLD + 80, c, "600")]) + "\n")
    code, out, _ = box.sweep("-v")  # ...the path is empty meanwhile
    assert code == 0 and set(box.by_callid()) == {a, b}
    # ...then it starts a new file, where the call waiting in 600 ends.
    with open(rotated, "a") as old:
        old.write(line(OLD + 81, c, "600", "RINGNOANSWER", "1000", agent="Agent One") + "\n")
    box.write([line(OLD + 84, c, "600", "ABANDON", "1", "1", "4"), *abandon(OLD + 120, d)])
    code, out, _ = box.sweep("-v")
    assert code == 0 and "rotated" in out
    calls = box.by_callid()
    assert set(calls) == {a, b, c, d}
    assert calls[c].wait_seconds == 4 and calls[c].caller_num == "5551234"  # its ENTERQUEUE was in the old file
    assert len(box.stored()) == 4
    box.sweep()
    assert len(box.stored()) == 4


def test_rotation_by_copytruncate(box: Box) -> None:
    a, b, c = (cid(OLD + i * 40, i) for i in range(3))
    box.write(abandon(OLD, a))
    box.sweep("--from-start")
    box.append(abandon(OLD + 40, b))  # written after the last run, before the rotation
    copy = box.queue_log.with_name("queue_log-20261126")
    copy.write_bytes(box.queue_log.read_bytes())
    with open(box.queue_log, "r+") as handle:
        handle.truncate(0)
    box.append(abandon(OLD + 80, c))
    code, out, _ = box.sweep("-v")
    assert code == 0 and "truncated" in out and "queue_log-20261126" in out
    assert set(box.by_callid()) == {a, b, c} and len(box.stored()) == 3


def test_truncated_without_a_copy_starts_again_at_zero(box: Box) -> None:
    a, b = cid(OLD, 1), cid(OLD + 40, 2)
    box.write([*abandon(OLD, a), *abandon(OLD - 3000, cid(OLD - 3000, 9))])
    box.sweep("--from-start")
    box.write(abandon(OLD + 40, b))  # shorter than before: truncated and rewritten
    _code, out, _ = box.sweep("-v")
    assert "truncated" in out and b in box.by_callid()


def test_recreated_file_with_the_same_size_is_read_from_the_start(lite: Box) -> None:
    """Same inode, same length, other content: only the head's hash can tell."""
    a, b = cid(OLD, 1), cid(OLD + 1, 2)
    lite.write(abandon(OLD, a))
    lite.sweep("--from-start")
    size = lite.queue_log.stat().st_size
    text = "\n".join(abandon(OLD + 1, b)) + "\n"
    assert len(text) == size
    with open(lite.queue_log, "r+") as handle:
        handle.write(text)
    lite.sweep()
    assert set(lite.by_callid()) == {a, b}


def test_partial_last_line_is_left_for_the_next_run(box: Box) -> None:
    callid = cid(OLD, 5)
    lines = abandon(OLD, callid)
    box.write([*lines[:-1], lines[-1][:25]], end="")  # Asterisk is half-way through the ABANDON line
    code, out, _ = box.sweep("--from-start", "-v")
    assert code == 0 and box.by_callid() == {} and "1 waiting" in out
    box.append([], raw=lines[-1][25:] + "\n")
    box.sweep()
    assert callid in box.by_callid() and box.by_callid()[callid].wait_seconds == 3
    assert len(box.stored()) == 1


def test_garbage_and_unknown_events_are_skipped_and_counted(box: Box) -> None:
    good = cid(OLD, 7)
    junk = [
        "not a queue_log line",
        "12345",
        "abc|1.2|600|NONE|ABANDON|1|1|3",  # no timestamp
        f"{OLD}||600|NONE|ENTERQUEUE||5551234|1",  # no callid
        f"{OLD}|1.3|600|NONE|lowercase|x",
        "\x00\x01\x02|||||",
        "²|1.2|600|NONE|ABANDON\r",  # a Unicode digit is no timestamp
        f"{OLD}000000000000|{good}|600|NONE|ABANDON|1|1|3",  # nor is a 22-digit one
        "x" * 2_500_000,  # a runaway line, longer than a read
        "",
    ]
    unknown = [f"{OLD}|{good}|600|NONE|SOMENEWEVENT|x", f"{OLD}|NONE|600|NONE|FUTUREMEMBERTHING"]
    box.write([*junk[:4], *abandon(OLD, good)[:2], *unknown, *junk[4:], abandon(OLD, good)[-1]])
    with open(box.queue_log, "ab") as handle:
        handle.write(b"\xff\xfe|\xc3\x28|600|NONE|ABANDON\n")  # invalid UTF-8
    code, out, err = box.sweep("--from-start", "-v")
    assert code == 0 and err == ""
    assert "skipped 10 garbage line(s) and 2 unknown event(s)" in out
    assert list(box.by_callid()) == [good] and len(box.stored()) == 1


def test_first_run_starts_at_the_end_of_an_old_file(box: Box) -> None:
    years_ago = NOW - 3 * 365 * 86400
    box.write([*abandon(years_ago, cid(years_ago, 1)), *timeout(OLD, cid(OLD, 2))])
    code, out, _ = box.sweep("-v")
    assert code == 0 and "read 0 line(s)" in out and box.by_callid() == {}
    position = json.loads(box.state(sweepstate.POSITION_KEY) or "{}")
    assert position["file"]["offset"] == box.queue_log.stat().st_size
    fresh = cid(OLD + 100, 3)
    box.append(abandon(OLD + 100, fresh))
    box.sweep()
    assert list(box.by_callid()) == [fresh]


def test_first_run_at_the_end_finds_the_start_of_a_call_in_progress(lite: Box) -> None:
    """The call entered before the first run; its ENTERQUEUE is looked up backwards in the file."""
    callid = cid(OLD, 3)
    lines = timeout(OLD, callid, "600") + abandon(OLD + 8, callid, "601")
    lite.write(lines[:4])
    lite.sweep()
    lite.append(lines[4:])
    lite.sweep()
    call = lite.by_callid()[callid]
    assert call.path == ("600", "601") and call.caller_num == "5551234" and call.queue == "601"


def test_a_caller_still_waiting_stays_open_across_runs(box: Box) -> None:
    callid = cid(NOW - 7200, 9)
    box.write(enter(NOW - 7200, callid, "600"))  # entered two hours ago, nothing since
    _code, out, _ = box.sweep("--from-start", "-v")
    assert "1 waiting" in out and box.by_callid() == {}
    pending = json.loads(box.state(sweepstate.PENDING_KEY) or "{}")
    assert len(pending["lines"]) == 2 and callid in pending["lines"][1]
    _code, out, _ = box.sweep("-v")
    assert "1 waiting" in out
    box.append([line(NOW - 60, callid, "600", "ABANDON", "1", "1", "7140")])
    box.sweep()
    assert box.by_callid()[callid].wait_seconds == 7140


def test_many_open_calls_survive_in_chunks(box: Box) -> None:
    """Over 60,000 characters of open calls: split over several state rows (MariaDB TEXT holds 64 KiB)."""
    lines = []
    for n in range(400):
        lines += enter(NOW - 100, cid(NOW - 100, n), "600", caller="Иван Петров 79161234567")
    box.write(lines)
    box.sweep("--from-start")
    position = json.loads(box.state(sweepstate.POSITION_KEY) or "{}")
    assert position["pending_chunks"] > 1 and position["pending_calls"] == 400
    box.append([line(NOW - 50, cid(NOW - 100, n), "600", "ABANDON", "1", "1", "50") for n in range(400)])
    _code, out, _ = box.sweep("--dry-run")  # the open calls came back from the chunks
    assert out.count("would record:") == 400 and "caller='Иван Петров 79161234567'" in out
    box.configure(MISSEDCALL_REASONS="FULL")  # recorded as skipped: no 400 mails
    box.sweep()
    calls = box.by_callid()
    assert len(calls) == 400 and calls[cid(NOW - 100, 5)].caller_num == "Иван Петров 79161234567"
    position = json.loads(box.state(sweepstate.POSITION_KEY) or "{}")
    assert position["pending_chunks"] == 1 and box.state(f"{sweepstate.PENDING_KEY}.1") == ""


def test_answered_later_corrects_an_agi_row_without_mailing(box: Box) -> None:
    """The hook recorded a timeout (REASON argument right after Queue() returned); the overflow queue answered."""
    callid = cid(OLD, 19)
    box.write(timeout(OLD, callid, "600", wait=5))
    headers = make_headers(uniqueid=callid, callerid="5551234", calleridname="J", args=["600", "TIMEOUT"])
    box.run_agi(AgiPeer(headers, {}), ["600", "TIMEOUT"], FAKE_SENDMAIL_EXIT="75")  # the mail did not go
    assert box.by_callid()[callid].status == "pending"
    box.append(answered(OLD + 5, callid, "602"))
    _code, out, _ = box.sweep("--from-start", "-v")
    assert "1 corrected" in out
    call = box.by_callid()[callid]
    assert (call.source, call.status, call.last_error) == ("agi", "skipped", CORRECTED)
    assert box.stored() == []
    box.sweep("--from-start")
    assert box.by_callid()[callid].status == "skipped" and box.stored() == []


def test_answered_later_after_the_mail_went_keeps_sent(box: Box) -> None:
    callid = cid(OLD, 21)
    box.write(timeout(OLD, callid, "600", wait=5))
    headers = make_headers(uniqueid=callid, callerid="5551234", calleridname="J", args=["600", "TIMEOUT"])
    box.run_agi(AgiPeer(headers, {}), ["600", "TIMEOUT"])
    box.append(answered(OLD + 5, callid, "602"))
    box.sweep("--from-start")
    call = box.by_callid()[callid]
    assert call.status == "sent" and call.last_error.startswith(CORRECTED)
    assert len(box.stored()) == 1


def test_transferred_back_into_a_queue_after_an_answer_is_not_missed(lite: Box) -> None:
    """docs/design.md: a CONNECT in any queue means answered, whatever comes after."""
    callid = cid(OLD, 3)
    lite.write(
        [
            *answered(OLD, callid, "602", talk=200)[:3],
            line(OLD + 200, callid, "602", "BLINDTRANSFER", "ext-queues", "600", "0", "200", "1"),
            *abandon(OLD + 201, callid, "600"),
        ]
    )
    lite.sweep("--from-start")
    assert lite.by_callid() == {} and lite.stored() == []


def test_dry_run_prints_and_records_nothing(box: Box) -> None:
    box.write([*timeout(OLD, cid(OLD, 11), "600"), *abandon(OLD + 8, cid(OLD, 11), "601"), *abandon(OLD, cid(OLD, 12))])
    code, out, _ = box.sweep("--from-start", "--dry-run")
    assert code == 0
    assert f"would record: {cid(OLD, 11)} queue=601 reason=ABANDON wait=3 path='600 > 601'" in out
    assert f"would record: {cid(OLD, 12)} queue=600" in out and "did=5559000" in out
    assert box.by_callid() == {} and box.stored() == [] and box.state(sweepstate.POSITION_KEY) is None


def test_a_missing_queue_log_is_one_line_and_exit_1(box: Box) -> None:
    code, _out, err = box.sweep()
    assert code == 1 and err.count("\n") == 1 and "no such file" in err and str(box.queue_log) in err


def test_a_second_sweep_at_the_same_time_does_nothing(lite: Box) -> None:
    lite.write(abandon(OLD, cid(OLD, 1)))
    with sweep.exclusive(config.load_settings(), wait=None) as mine:
        assert mine
        code, _out, _err = lite.sweep("--from-start")
    assert code == 0 and lite.by_callid() == {}
    lite.sweep("--from-start")
    assert len(lite.by_callid()) == 1


def test_bad_grace_is_a_usage_error(lite: Box) -> None:
    with pytest.raises(SystemExit) as exc:
        lite.sweep("--grace", "-5")
    assert exc.value.code == 2


# ============================================================================ --follow


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_follow_reads_new_lines_as_they_come_and_stops_on_sigterm(lite: Box) -> None:
    lite.write(["1|NONE|NONE|NONE|QUEUESTART|"])
    argv = [sys.executable, "-m", "missedcall.admin.cli", "sweep", "--follow", "--grace", "1", "--interval", "0.2"]
    proc = subprocess.Popen(argv, env=lite.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while lite.state(sweepstate.POSITION_KEY) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        now = int(time.time())
        lite.append(abandon(now - 3, cid(now - 3, 1)))
        assert len(wait_for_mail(lite.maildir, 1, timeout=10)) == 1
        # Idle: a stat five times a second costs next to nothing.
        time.sleep(0.5)
        before = _cpu_seconds(proc.pid)
        time.sleep(2)
        assert _cpu_seconds(proc.pid) - before < 0.2
        now = int(time.time())
        lite.append(timeout(now - 8, cid(now - 8, 2)))  # decided once its grace has passed, with no new line
        assert len(wait_for_mail(lite.maildir, 2, timeout=10)) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert len(lite.by_callid()) == 2
    position = json.loads(lite.state(sweepstate.POSITION_KEY) or "{}")
    assert position["file"]["offset"] == lite.queue_log.stat().st_size


def test_follow_finishes_a_rotated_file_even_after_it_was_deleted(lite: Box) -> None:
    """Unit level: the reader holds the file open, so a rotated-then-deleted log is still finished."""
    lite.write(abandon(OLD, cid(OLD, 1)))
    settings = config.load_settings()
    with lite.store() as store:
        sweeper = Sweeper(settings, store, from_start=True, out=io.StringIO())
        sweeper.cycle()
        with open(lite.queue_log, "a") as handle:
            handle.write("\n".join(abandon(OLD + 10, cid(OLD + 10, 2))) + "\n")
        lite.queue_log.unlink()
        lite.write(abandon(OLD + 20, cid(OLD + 20, 3)))
        assert sweeper.has_work()
        sweeper.cycle()
        sweeper.close()
    assert set(lite.by_callid()) == {cid(OLD, 1), cid(OLD + 10, 2), cid(OLD + 20, 3)}


# ============================================================================ pure parts

T = 1795659000  # a time as Asterisk's uniqueids start with it


def events(lines: list[str]) -> list[queuelog.QueueLogEvent]:
    parsed = [queuelog.parse_line(x) for x in lines]
    return [e for e in parsed if e is not None and e.event in queuelog.CALL_EVENTS]


def test_book_waits_for_the_grace_period_then_follows_a_timeout_into_the_next_queue() -> None:
    book = Book(60)
    callid = cid(T, 1)
    for e in events(timeout(T, callid, "600")):  # EXITWITHTIMEOUT at T + 8
        book.add(e)
    assert book.take_due(T + 7) == [] and len(book.calls) == 1
    overflow = events(abandon(T + 10, callid, "601"))  # enters 601 at T + 10, gives up at T + 13
    for e in overflow[:-1]:
        book.add(e)
    assert book.take_due(T + 4000) == [] and len(book.calls) == 1  # waiting in 601: not decided however late
    book.add(overflow[-1])
    assert book.take_due(T + 12) == []
    [decided] = book.take_due(T + 13)
    assert decided.verdict is not None and decided.verdict.queue == "601" and decided.verdict.path == ("600", "601")
    # A late line of a decided call starts nothing new.
    book.add(events([line(T + 200, callid, "601", "ABANDON", "1", "1", "3")])[0])
    assert book.calls == {} and book.take_due(10**10) == []


def test_book_decides_a_plain_answer_at_once_and_drops_callers_waiting_past_the_horizon() -> None:
    book = Book(60, horizon=3600)
    for e in events(answered(T, cid(T, 1))):
        book.add(e)
    assert book.calls == {} and book.answered == 1
    for e in events(enter(T, cid(T, 2), "600")):
        book.add(e)
    book.expire(T + 3599)
    assert len(book.calls) == 1
    book.expire(T + 3601)
    assert book.calls == {} and book.dropped_waiting == 1


def test_book_remembers_open_calls_as_their_own_lines() -> None:
    book = Book(60)
    lines = [*enter(T, cid(T, 1), "600"), line(T + 5, cid(T, 1), "600", "EXITWITHKEY", "5", "1", "1", "5")]
    for e in events(lines):
        book.add(e)
    assert book.lines() == lines


def test_tail_reads_complete_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    path.write_bytes(b"1|a|q|NONE|DID|1\n2|a|q|NONE|ENTER")
    tail = Tail(str(path), from_start=True)
    assert list(tail.batches()) == [b"1|a|q|NONE|DID|1"]
    assert tail.mark is not None and tail.mark.offset == len(b"1|a|q|NONE|DID|1\n")
    with open(path, "ab") as handle:
        handle.write(b"QUEUE||5|1\n")
    assert list(tail.batches()) == [b"2|a|q|NONE|ENTERQUEUE||5|1"]
    assert list(tail.batches()) == []
    tail.close()


def test_block_reading_matches_parse_line() -> None:
    """The one parser read a block at a time (the sweeper) gives what it gives a line at a time."""
    text = LAB_LOG.read_text() + FREEPBX_LOG.read_text() + "1795659000|x|600|NONE|ABANDON|1|1|3\r\n"
    reader = queuelog.Reader(open_calls={})
    fed: list[queuelog.QueueLogEvent] = []
    reader.feed(text.encode().rstrip(b"\n"), fed.append)
    reader.finish(fed.append)
    expected = [
        e
        for e in (queuelog.parse_line(x) for x in text.splitlines())
        if e is not None
        and e.event in queuelog.CALL_EVENTS - {"COMPLETEAGENT", "COMPLETECALLER", "TRANSFER"}  # alone: skipped
    ]
    assert len(fed) > 250
    assert fed == expected
    assert reader.garbage == 0 and reader.unknown == 0 and reader.out_of_range == 0


def test_block_reading_keeps_hostile_lines_apart_and_counts_them_as_line_reading_does() -> None:
    """The sweeper's block reader decodes a whole block at once; each line is still judged alone, by bytes rules:
    ASCII digits only, ASCII whitespace only, an invalid byte in one line touches no other."""
    good = line(T, cid(T, 1), "600", "ABANDON", "1", "1", "3").encode()
    block = b"\n".join(
        [
            good,
            b"",  # blank: not even garbage
            b" \t\x0b\x0c",  # ASCII whitespace only: blank too
            "\u00a0\u2003".encode(),  # Unicode spaces are not ASCII whitespace: garbage
            b"\x00\x00\x00",  # garbage
            "１７９５６５９０００|x|600|NONE|ABANDON|1|1|3".encode(),  # fullwidth digits: garbage
            f"{T}|{cid(T, 2)}|600|NONE|ABANDO\xc9|1|1|3".encode("latin-1"),  # invalid UTF-8 in the event: garbage
            f"{T}|{cid(T, 3)}|600|NONE|NEWEVENT_2|x".encode(),  # well-formed, unknown
            f"{T}|{cid(T, 3)}|600|NONE|RINGNOANSWER|1000\r".encode(),  # skipped, CR or not
            f"{T}|{cid(T, 4)}|600|NONE|DID|555\xff9000\r".encode("latin-1"),  # invalid byte in the data: kept
            f"{T}|ab\xffc|600|NONE|EXITEMPTY|1|1|2".encode("latin-1"),  # in the callid: kept, replaced
            f"{T}|{cid(T, 5)}|600|NONE|COMPLETEAGENT|1|2|1".encode(),  # the end of a call not open: dropped
            f"{T}|{cid(T, 6)}|600|NONE|COMPLETECALLER|1|2|1".encode(),  # ... of an open one: kept
            b"0|x|600|NONE|ABANDON|1|1|3",  # out of range
            f"{T}|{cid(T, 7)}|600|NONE|ENTERQUEUE||555".encode(),  # its caller number goes on on the next line
        ]
    )
    rest = b"1234|1\n" + good
    reader = queuelog.Reader(open_calls={cid(T, 6)}, now=T + 100)
    fed: list[queuelog.QueueLogEvent] = []
    reader.feed(block, fed.append)
    reader.feed(rest, fed.append)  # the joined record spans two blocks
    reader.finish(fed.append)
    assert [(e.callid, e.event, e.data) for e in fed] == [
        (cid(T, 1), "ABANDON", ("1", "1", "3")),
        (cid(T, 4), "DID", ("555\ufffd9000",)),
        ("ab\ufffdc", "EXITEMPTY", ("1", "1", "2")),
        (cid(T, 6), "COMPLETECALLER", ("1", "2", "1")),
        (cid(T, 7), "ENTERQUEUE", ("", "555\n1234", "1")),
        (cid(T, 1), "ABANDON", ("1", "1", "3")),
    ]
    assert (reader.lines, reader.garbage, reader.unknown, reader.out_of_range) == (17, 4, 1, 1)
    assert reader.first_time == T


# ============================================================================ a million lines


def _bench_module():
    spec = importlib.util.spec_from_file_location("sweep_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_log_verdicts_match_judging_each_call_whole(tmp_path: Path, sqlite_url: str) -> None:
    """100,000 generated lines: the streaming sweeper decides exactly what judge_events says on each call."""
    bench = _bench_module()
    log = tmp_path / "queue_log"
    bench.generate(log, 100_000)
    grouped: dict[str, list[queuelog.QueueLogEvent]] = defaultdict(list)
    for e in events(log.read_text().splitlines()):
        if e.callid != "NONE":
            grouped[e.callid].append(e)
    expected = set()
    for callid, evs in grouped.items():
        judged = verdict.judge_events(evs)
        if judged is not None and judged.missed:
            expected.add(callid)
    settings = config.load_settings({"MISSEDCALL_CONFIG": str(tmp_path / "none.env"),
                                     "MISSEDCALL_DB_URL": sqlite_url, "MISSEDCALL_QUEUE_LOG": str(log),
                                     "MISSEDCALL_FREEPBX_CONF": str(tmp_path / "none.conf")})  # fmt: skip
    out = io.StringIO()
    sweeper = Sweeper(settings, None, from_start=True, dry_run=True, out=out)
    sweeper.cycle()
    got = {x.split()[2] for x in out.getvalue().splitlines() if x.startswith("would record:")}
    assert got == expected and len(expected) > 3000


def test_a_million_lines_from_the_start_in_seconds_and_bounded_memory(tmp_path: Path) -> None:
    bench = _bench_module()
    big, small = tmp_path / "big.log", tmp_path / "small.log"
    bench.generate(big, 1_000_000)
    bench.generate(small, 100_000)
    results = {}
    for name, log in (("big", big), ("small", small)):
        conf = tmp_path / f"{name}.env"
        conf.write_text(
            f"MISSEDCALL_DB_URL=sqlite:///{tmp_path}/{name}.sqlite3\nMISSEDCALL_QUEUE_LOG={log}\n"
            f"MISSEDCALL_FREEPBX_CONF={tmp_path}/none.conf\n"
        )
        env = {**os.environ, "MISSEDCALL_CONFIG": str(conf)}
        admin = [sys.executable, "-m", "missedcall.admin.cli"]
        subprocess.run([*admin, "init"], env=env, check=True, capture_output=True)
        results[name] = bench.measure([*admin, "sweep", "--from-start", "--dry-run"], env)
    print(f"\nsweep --from-start --dry-run: {results}")
    # About 6-9 s of CPU on a busy 2-core box; CPU, not wall time, so a loaded CI box does not fail it.
    assert results["big"]["cpu"] < 30
    assert results["big"]["rss_mb"] < 120
    assert results["big"]["rss_mb"] < results["small"]["rss_mb"] + 40  # not proportional to the file


# ============================================================================ one call is the unit of failure

# A fault at the real step, for the one poisoned callid: no hostile value makes storage or the mail builder raise
# any more (storage cuts to its column limits, the builder cleans), so the step itself is made to raise.
FAULT = """
import os
exec(open({tap!r}).read())
_step, _, _callid = os.environ["MISSEDCALL_TEST_FAULT"].partition(":")
if _step == "notify":
    from missedcall.deliver import notify as _module
    _real = _module.notify
    def notify(store, settings, call, **kw):
        if call.callid == _callid:
            raise RuntimeError("injected fault in notify")
        return _real(store, settings, call, **kw)
    _module.notify = notify
elif _step == "storage":
    from missedcall.record import storage as _storage
    _real_claim = _storage.Store.claim_call
    def claim_call(self, call):
        if call.callid == _callid:
            from missedcall.record.db import StorageError
            raise StorageError("injected: database or disk is full")
        return _real_claim(self, call)
    _storage.Store.claim_call = claim_call
elif _step == "claim":
    from missedcall.record import storage as _storage
    _real_claim = _storage.Store.claim_call
    def claim_call(self, call):
        if call.callid == _callid:
            raise ValueError("injected fault before the row")
        return _real_claim(self, call)
    _storage.Store.claim_call = claim_call
"""


@pytest.mark.parametrize("step", ["notify", "claim"])
def test_a_call_that_raises_is_parked_and_the_calls_around_it_are_mailed(box: Box, step: str) -> None:
    first, poisoned, last = cid(OLD, 1), cid(OLD + 30, 2), cid(OLD + 60, 3)
    box.write([*abandon(OLD, first), *timeout(OLD + 30, poisoned), *abandon(OLD + 60, last)])
    fault = box.tmp / "fault"
    fault.mkdir()
    (fault / "sitecustomize.py").write_text(FAULT.format(tap=str(ROOT / "tests" / "syslogtap" / "sitecustomize.py")))
    syslog = box.tmp / "syslog.txt"
    env = {
        "PYTHONPATH": str(fault),
        "MISSEDCALL_TEST_FAULT": f"{step}:{poisoned}",
        "MISSEDCALL_TEST_SYSLOG": str(syslog),
    }
    done = box.admin("sweep", "--from-start", "-v", **env)
    assert done.returncode == 0 and done.stderr == "", done
    assert sorted(str(m.message["X-Missedcall-Callid"]) for m in box.stored()) == sorted([first, last])
    calls = box.by_callid()
    assert calls[first].status == "sent" and calls[last].status == "sent"
    logged = syslog.read_text()
    assert f"call {poisoned}: sweep: " in logged and "injected fault" in logged
    if step == "notify":  # it had a row: failed, with the reason
        assert calls[poisoned].status == "failed" and "injected fault in notify" in calls[poisoned].last_error
    else:  # no row: a WARN line names it
        assert poisoned not in calls and f"call {poisoned} has no row" in logged
    assert "1 call(s) failed and parked" in done.stdout
    # The position was saved: the next run reads nothing again and mails nothing twice, poisoned call included.
    done = box.admin("sweep", "-v", **env)
    assert done.returncode == 0 and "read 0 line(s)" in done.stdout, done.stdout
    assert len(box.stored()) == 2


def test_a_pass_where_every_call_fails_exits_1_with_one_line(box: Box) -> None:
    poisoned = cid(OLD, 1)
    box.write(abandon(OLD, poisoned))
    fault = box.tmp / "fault"
    fault.mkdir()
    (fault / "sitecustomize.py").write_text(FAULT.format(tap=str(ROOT / "tests" / "syslogtap" / "sitecustomize.py")))
    done = box.admin("sweep", "--from-start", PYTHONPATH=str(fault), MISSEDCALL_TEST_FAULT=f"notify:{poisoned}")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "every call of this pass failed" in done.stderr
    assert box.by_callid()[poisoned].status == "failed" and box.stored() == []


def test_a_database_error_is_not_one_call_s_fault_the_pass_stops_before_the_position_moves(box: Box) -> None:
    """Parking is for a call that raises; a database that fails (full, down) stops the pass unsaved, so the
    calls are decided again next time instead of being parked for ever."""
    first, middle, last = cid(OLD, 1), cid(OLD + 30, 2), cid(OLD + 60, 3)
    box.write([*abandon(OLD, first), *abandon(OLD + 30, middle), *abandon(OLD + 60, last)])
    fault = box.tmp / "fault"
    fault.mkdir()
    (fault / "sitecustomize.py").write_text(FAULT.format(tap=str(ROOT / "tests" / "syslogtap" / "sitecustomize.py")))
    done = box.admin("sweep", "--from-start", PYTHONPATH=str(fault), MISSEDCALL_TEST_FAULT=f"storage:{middle}")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "disk is full" in done.stderr, done
    assert box.state(sweepstate.POSITION_KEY) is None
    done = box.admin("sweep", "--from-start")
    assert done.returncode == 0, done
    assert sorted(str(m.message["X-Missedcall-Callid"]) for m in box.stored()) == sorted([first, middle, last])
    assert {c.status for c in box.calls()} == {"sent"}


# ============================================================================ a full disk

FULL_DISK_DRIVER = r'''
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, os.environ["ROOT"])
from tests.agibox import make_pbx
from tests.mailbox import SENDMAIL
mnt, out = Path(sys.argv[1]), Path(sys.argv[2])
maildir = out / "mail"
maildir.mkdir(parents=True, exist_ok=True)
# The disk fills the moment the first mail has left: the worst time, nothing can record that it went.
wrapper = out / "sendmail-then-fill"
wrapper.write_text(f"""#!/bin/sh
"{SENDMAIL}" "$@"; rc=$?
if [ ! -e "{out}/filled" ] && [ -e "{out}/arm" ]; then
  touch "{out}/filled"; dd if=/dev/zero of="{mnt}/filler" bs=4096 2>/dev/null
fi
exit $rc
""")
wrapper.chmod(0o755)
box = make_pbx(mnt, f"sqlite:///{mnt}/db.sqlite3", maildir=maildir, MISSEDCALL_TIMEZONE="UTC",
               MISSEDCALL_SPOOL_DIR=str(mnt / "spool"))
box.queue_log = out / "queue_log"
box.configure(MISSEDCALL_QUEUE_LOG=str(box.queue_log), MISSEDCALL_SENDMAIL=str(wrapper))
now = int(time.time())
old = now - 600
ids = [f"{old + i * 30}.{i}" for i in range(3)]
box.queue_log.write_text("0|NONE|NONE|NONE|QUEUESTART|\n")
runs = []
def run(*argv):
    done = box.admin(*argv)
    runs.append([list(argv), done.returncode, done.stderr[-300:]])
run("sweep")
with open(box.queue_log, "a") as handle:
    for i, c in enumerate(ids):
        t = old + i * 30
        handle.write(f"{t}|{c}|600|NONE|ENTERQUEUE||555{i}|1\n{t + 3}|{c}|600|NONE|ABANDON|1|1|3\n")
(out / "arm").touch()
run("sweep")
run("sweep")  # still full
(mnt / "filler").unlink()
run("sweep")
run("sweep")
with box.store() as store:  # as if retry ran an hour later: every back-off over
    for c in box.calls():
        if c.status == "pending":
            store.update_call(c.callid, next_attempt_at=c.ended_at)
box.age_spool()
run("retry")
run("sweep")
run("retry")
print(json.dumps({"runs": runs, "ids": ids, "mailed": [str(m.message["X-Missedcall-Callid"]) for m in box.stored()],
                  "rows": {c.callid: c.status for c in box.calls()}}))
'''


HOOK_FULL_DISK_DRIVER = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, os.environ["ROOT"])
from tests.agibox import abandon_peer, make_pbx
mnt, out = Path(sys.argv[1]), Path(sys.argv[2])
maildir = out / "mail"
maildir.mkdir(parents=True, exist_ok=True)
box = make_pbx(mnt, f"sqlite:///{mnt}/db.sqlite3", maildir=maildir, MISSEDCALL_TIMEZONE="UTC",
               MISSEDCALL_SPOOL_DIR=str(mnt / "spool"))
box.queue_log = out / "queue_log"
box.configure(MISSEDCALL_QUEUE_LOG=str(box.queue_log))
box.queue_log.write_text("0|NONE|NONE|NONE|QUEUESTART|\n")
box.admin("sweep")
box.run(abandon_peer("1795000000.1"), ["600"])  # a working day: the hook keeps the recipients locally
now = int(time.time())
old = now - 600
ids = [f"{old + i * 30}.{i}" for i in range(3)]
with open(mnt / "filler", "wb", buffering=0) as handle:  # the disk fills
    try:
        while True:
            handle.write(bytes(4096))
    except OSError:
        pass
with open(box.queue_log, "a") as handle:  # queue_log lives elsewhere
    for i, c in enumerate(ids):
        t = old + i * 30
        handle.write(f"{t}|{c}|600|NONE|ENTERQUEUE||555{i}|1\n{t + 3}|{c}|600|NONE|ABANDON|1|1|3\n")
runs = []
for c in ids:  # the hook mails each call, and can record it nowhere
    run = box.run(abandon_peer(c), ["600"])
    runs.append([c, run.returncode, [x for x in run.commands if x.startswith("VERBOSE")][-1:]])
done = box.admin("sweep")
runs.append(["sweep", done.returncode, done.stderr[-300:]])
(mnt / "filler").unlink()  # space returns
for argv in (["sweep"], ["retry"], ["sweep"]):
    done = box.admin(*argv)
    runs.append([argv, done.returncode, done.stderr[-300:]])
print(json.dumps({"runs": runs, "ids": ids, "mailed": [str(m.message["X-Missedcall-Callid"]) for m in box.stored()],
                  "rows": {c.callid: [c.status, c.last_error] for c in box.calls()}}))
"""


def _in_a_full_disk_namespace(tmp_path: Path, driver: str) -> dict[str, Any]:
    """Run ``driver`` in a private mount namespace with a 2 MB tmpfs for the database, spool and state (and a
    private /dev/shm); the mounts go with the namespace, and are unmounted first. Its JSON report."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare")
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    (tmp_path / "driver.py").write_text(driver)
    script = (
        'mount -t tmpfs -o size=2m tmpfs "$1" || exit 97; mount -t tmpfs -o size=1m tmpfs /dev/shm || exit 97;'
        ' "$3" "$4" "$1" "$2"; rc=$?; umount /dev/shm; umount "$1"; exit $rc'
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(mnt), str(out), sys.executable, str(tmp_path / "driver.py")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "ROOT": str(ROOT)}, check=False,
    )  # fmt: skip
    if done.returncode == 97:
        pytest.skip(f"no tmpfs mounts in a private namespace here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not os.path.ismount(mnt)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_full_disk_mails_each_call_at_most_once_more_and_loses_none(tmp_path: Path) -> None:
    """The disk fills right after the sweeper's first mail left. Afterwards every call is sent; only the call
    whose mail went while nothing could be written may go once more (the README's duplicate rule), and no
    later sweep or retry sends anything again."""
    report = _in_a_full_disk_namespace(tmp_path, FULL_DISK_DRIVER)
    runs = report["runs"]
    assert runs[1][1] == 1 and "disk is full" in runs[1][2], runs  # one line, exit 1, position not saved
    mailed, ids = report["mailed"], report["ids"]
    assert set(mailed) == set(ids), report  # none lost
    assert all(mailed.count(c) <= 2 for c in ids) and len(mailed) <= len(ids) + 1, report
    assert set(report["rows"].values()) == {"sent"}, report


def test_calls_the_hook_mailed_on_a_full_disk_are_not_mailed_again_by_the_sweeper(tmp_path: Path) -> None:
    """The issue's case: the hook mails three calls it can record nowhere (no row, no spool file); once space
    returns the sweeper finds them in queue_log. It records them as sent and mails none again: 3 mails, not 6."""
    report = _in_a_full_disk_namespace(tmp_path, HOOK_FULL_DISK_DRIVER)
    ids, mailed = report["ids"], report["mailed"]
    for _callid, code, said in report["runs"][:3]:
        assert code == 0 and "NOT spooled; noted" in said[0], report["runs"]
    assert sorted(c for c in mailed if c in ids) == sorted(ids), report  # each once
    assert {c: report["rows"][c][0] for c in ids} == dict.fromkeys(ids, "sent"), report
    assert all("mailed by the AGI" in report["rows"][c][1] for c in ids), report
