"""Callback tracking: which misses were called back or got through, read from CDR rows as Asterisk writes them.

Every expected value is read off the rows by eye: who dialled whom, when, and
whether it was answered with talk time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from missedcall.resolve import cdrcsv
from missedcall.resolve.match import CALLED_BACK, GOT_THROUGH, CdrRow, OpenMiss, resolve
from tests.paths import FIXTURES

UTC = timezone.utc
MISS_END = datetime(2026, 11, 30, 7, 0, 42, tzinfo=UTC)


def miss(caller: str = "+79161234567", callid: str = "1796022000.1", ended: datetime = MISS_END) -> OpenMiss:
    return OpenMiss(callid=callid, linkedid=callid, caller=caller, ended_at=ended)


def row(minutes: float, src: str, dst: str, **kw: object) -> CdrRow:
    fields: dict[str, object] = {"disposition": "ANSWERED", "billsec": 30, **kw}
    return CdrRow(start=MISS_END + timedelta(minutes=minutes), src=src, dst=dst, **fields)  # type: ignore[arg-type]


def test_master_csv_as_asterisk_writes_it() -> None:
    rows = list(cdrcsv.parse_text((FIXTURES / "cdr" / "Master.csv").read_text(encoding="utf-8")))
    # Five CDR rows; the garbage line and the one from 2099 (an implausible time) are not rows.
    assert [r.uniqueid for r in rows] == [
        "1796022000.1", "1796022300.2", "1796022600.4", "1796022840.6", "1796023200.8",
    ]
    callback = rows[3]
    assert callback.start == datetime(2026, 11, 30, 7, 14, tzinfo=UTC)
    assert (callback.src, callback.dst, callback.channel, callback.billsec) == (
        "4959876543", "989161234567", "PJSIP/103-00000006", 200,
    )
    assert callback.clid == '"Company" <4959876543>'


def test_the_csv_fixture_resolves_the_miss_by_the_answered_callback() -> None:
    rows = cdrcsv.parse_text((FIXTURES / "cdr" / "Master.csv").read_text(encoding="utf-8"))
    # The miss itself, an internal call, an unanswered attempt by 102, then 103 gets through (trunk CID in src).
    [done] = resolve([miss("89161234567")], rows, "RU")
    assert (done.resolution, done.by, done.talk_seconds) == (CALLED_BACK, "103", 200)
    assert done.at == datetime(2026, 11, 30, 7, 14, tzinfo=UTC)


def test_agent_comes_from_cnum_when_src_is_the_trunk_caller_id() -> None:
    [done] = resolve([miss()], [row(5, "4959876543", "89161234567", cnum="104", channel="PJSIP/trunk-1")], "RU")
    assert (done.resolution, done.by) == (CALLED_BACK, "104")


def test_callbacks_before_the_miss_unanswered_or_silent_never_count() -> None:
    rows = [
        row(-10, "102", "89161234567", channel="PJSIP/102-1"),  # before the miss
        row(3, "102", "89161234567", channel="PJSIP/102-2", disposition="NO ANSWER", billsec=0),
        row(4, "102", "89161234567", channel="PJSIP/102-3", disposition="BUSY", billsec=0),
        row(5, "102", "89161234567", channel="PJSIP/102-4", disposition="ANSWERED", billsec=0),  # voicemail greeting
        row(6, "102", "105", channel="PJSIP/102-5"),  # internal
    ]
    assert resolve([miss()], rows, "RU") == []


def test_the_earliest_of_two_agents_calling_back_resolves_it() -> None:
    rows = [
        row(30, "105", "+79161234567", channel="PJSIP/105-2", billsec=90),
        row(12, "102", "9161234567", channel="PJSIP/102-1", billsec=45),
    ]
    [done] = resolve([miss()], rows, "RU")
    assert (done.by, done.talk_seconds, done.at) == ("102", 45, MISS_END + timedelta(minutes=12))


def test_a_later_answered_inbound_call_means_got_through() -> None:
    rows = [row(20, "89161234567", "600", channel="PJSIP/trunk-9", dstchannel="Local/107@from-queue-1;1")]
    [done] = resolve([miss()], rows, "RU")
    assert (done.resolution, done.by) == (GOT_THROUGH, "107")


def test_the_missed_call_itself_is_never_its_own_resolution() -> None:
    own = row(0, "89161234567", "600", dstchannel="PJSIP/102-1", uniqueid="1796022000.1")
    assert resolve([miss()], [own], "RU") == []


def test_one_callback_resolves_every_open_miss_of_that_number() -> None:
    first = miss(callid="a.1", ended=MISS_END)
    second = miss(callid="a.2", ended=MISS_END + timedelta(minutes=5))
    other = miss(caller="+79035550000", callid="b.1")
    done = resolve([first, second, other], [row(10, "102", "89161234567", channel="PJSIP/102-1")], "RU")
    assert sorted(d.callid for d in done) == ["a.1", "a.2"]


def test_anonymous_and_internal_misses_stay_open() -> None:
    rows = [row(1, "102", "", channel="PJSIP/102-1"), row(2, "103", "101", channel="PJSIP/103-1")]
    assert resolve([miss(caller=""), miss(caller="101", callid="x")], rows, "RU") == []


def test_incremental_reading_picks_up_appended_rows_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    lines = (FIXTURES / "cdr" / "Master.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:2]), encoding="utf-8")
    rows, offset, inode = cdrcsv.read_new(str(path), 0, 0)
    assert [r.uniqueid for r in rows] == ["1796022000.1", "1796022300.2"]
    with path.open("a", encoding="utf-8") as handle:
        handle.write(lines[2])
        handle.write(lines[3][:40])  # half a line: left for the next read
    rows, offset, inode = cdrcsv.read_new(str(path), offset, inode)
    assert [r.uniqueid for r in rows] == ["1796022600.4"]
    with path.open("a", encoding="utf-8") as handle:
        handle.write(lines[3][40:])
    rows, offset, inode = cdrcsv.read_new(str(path), offset, inode)
    assert [r.uniqueid for r in rows] == ["1796022840.6"]
    path.rename(tmp_path / "Master.csv.1")  # logrotate: a new file from the start
    path.write_text(lines[4], encoding="utf-8")
    rows, offset, inode = cdrcsv.read_new(str(path), offset, inode)
    assert [r.uniqueid for r in rows] == ["1796023200.8"]


def test_the_agent_is_named_from_cnam_or_from_a_clid_that_still_shows_the_extension() -> None:
    from missedcall.resolve.match import agent_label

    assert agent_label(row(1, "74951234567", "89161234567", cnam="Ivan Petrov"), "102") == "102 (Ivan Petrov)"
    # Master.csv has no cnam: the clid names the agent only while its number is still the extension
    assert agent_label(row(1, "102", "89161234567", clid='"Ivan Petrov" <102>'), "102") == "102 (Ivan Petrov)"
    assert agent_label(row(1, "7495", "89161234567", clid='"Office" <74951234567>'), "102") == "102"
    assert agent_label(row(1, "102", "8916", cnam="102"), "102") == "102"
    assert agent_label(row(1, "102", "8916", cnam="\x1b[31m" + "Я" * 500), "102") == "102 ([31m" + "Я" * 55 + ")"
