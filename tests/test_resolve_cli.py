"""``missedcall-admin resolve`` and ``report`` (and retry running the resolver), on SQLite and MariaDB,
with Asterisk's Master.csv as the CDR source."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from missedcall.record.model import CallRecord, utcnow
from tests.agibox import Pbx, make_pbx

UTC = timezone.utc


def csv_line(start: datetime, src: str, dst: str, channel: str, dstchannel: str, billsec: int, disposition: str,
             uniqueid: str) -> str:  # fmt: skip
    """One Master.csv line as cdr_csv writes it (usegmtime=yes, loguniqueid, loguserfield)."""
    begin, end = f"{start:%Y-%m-%d %H:%M:%S}", f"{start + timedelta(seconds=billsec):%Y-%m-%d %H:%M:%S}"
    fields = ["", src, dst, "from-internal", f'"" <{src}>', channel, dstchannel, "Dial", "x", begin, begin, end,
              str(billsec + 5), str(billsec), disposition, "DOCUMENTATION", uniqueid, ""]  # fmt: skip
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(fields)
    return out.getvalue().replace(f'"{billsec + 5}"', str(billsec + 5), 1)


@pytest.fixture
def box(tmp_path: Path, db_url: str) -> Pbx:
    master = tmp_path / "Master.csv"
    made = make_pbx(tmp_path, db_url, MISSEDCALL_CDR_URL=f"csv:{master}", MISSEDCALL_REGION="RU",
                    MISSEDCALL_TIMEZONE="Europe/Moscow")  # fmt: skip
    ended = utcnow() - timedelta(hours=2)
    with made.store() as store:
        for callid, queue, caller, when, status in (
            ("c.1", "600", "+79161234567", ended, "sent"),
            ("c.2", "600", "89161234567", ended + timedelta(minutes=3), "held"),
            ("c.3", "601", "+79035550000", ended, "sent"),
            ("c.4", "601", "+79267778899", ended, "skipped"),
        ):
            store.claim_call(CallRecord(callid=callid, linkedid=callid, queue=queue, reason="ABANDON", source="agi",
                                        caller_num=caller, caller_name="Иван\x1b[31m", ended_at=when,
                                        entered_at=when - timedelta(seconds=30), status=status))  # fmt: skip
    master.write_text(
        csv_line(ended - timedelta(minutes=30), "102", "89161234567", "PJSIP/102-1", "PJSIP/trunk-1", 50, "ANSWERED",
                 "1.1")  # before the miss
        + csv_line(ended + timedelta(minutes=5), "102", "89161234567", "PJSIP/102-2", "PJSIP/trunk-2", 0, "NO ANSWER",
                   "1.2")
        + "not a CDR line\n"
        + csv_line(ended + timedelta(minutes=14), "74951234567", "989161234567", "PJSIP/103-3", "PJSIP/trunk-3", 200,
                   "ANSWERED", "1.3")
        + csv_line(ended + timedelta(minutes=20), "79035550000", "600", "PJSIP/trunk-4", "Local/105@from-queue-4;1",
                   111, "ANSWERED", "1.4"),
        encoding="utf-8",
    )  # fmt: skip
    return made


def test_resolve_dry_run_then_for_real(box: Pbx) -> None:
    dry = box.admin("resolve", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "2 would be called back, 1 would be got through" in dry.stdout and "(dry run)" in dry.stdout
    assert {c.callid: c.resolution for c in box.calls()} == dict.fromkeys(("c.1", "c.2", "c.3", "c.4"), "")
    done = box.admin("resolve", "--json")
    assert done.returncode == 0, done.stderr
    [outcome] = json.loads(done.stdout)
    assert (outcome["called_back"], outcome["got_through"], outcome["watched"]) == (2, 1, 4)
    calls = {c.callid: c for c in box.calls()}
    assert {k: (c.resolution, c.resolved_by, c.talk_seconds, c.followup) for k, c in calls.items()} == {
        "c.1": ("called-back", "103", 200, "pending"),
        "c.2": ("called-back", "103", 200, "pending"),
        "c.3": ("got-through", "105", 111, "pending"),
        "c.4": ("", "", None, ""),
    }
    again = box.admin("resolve")  # nothing left to find; the position kept in missedcall_state
    assert again.returncode == 0 and "0 called back, 0 got through" in again.stdout


def test_retry_runs_the_resolver_and_survives_a_broken_source(box: Pbx) -> None:
    box.configure(MISSEDCALL_CDR_URL="mysql://u:s3cret-pw@127.0.0.1:1/asteriskcdrdb")
    broken = box.admin("retry")
    assert broken.returncode == 0, broken.stderr
    assert "resolver failed" in broken.stdout and "s3cret-pw" not in broken.stdout + broken.stderr
    box.configure(MISSEDCALL_CDR_URL=f"csv:{box.tmp / 'Master.csv'}")
    done = box.admin("retry")
    assert done.returncode == 0, done.stderr
    assert "3 missed call(s) resolved" in done.stdout


def test_report_text_json_csv_and_filters(box: Pbx) -> None:
    box.admin("resolve")
    text = box.admin("report", "--since", "1d")
    assert text.returncode == 0, text.stderr
    assert "(Europe/Moscow)" in text.stdout and "\x1b" not in text.stdout
    assert "4 missed calls: 1 open, 2 called back, 1 got through." in text.stdout
    assert "Callers who tried more than once:" in text.stdout and "2 calls (called back, called back)" in text.stdout
    data = json.loads(box.admin("report", "--json").stdout)
    assert sorted((c["callid"], c["resolution"]) for c in data["calls"]) == [
        ("c.1", "called-back"), ("c.2", "called-back"), ("c.3", "got-through"), ("c.4", "open")]  # fmt: skip
    q600 = next(q for q in data["queues"] if q["queue"] == "600")
    assert (q600["missed"], q600["share_resolved"], q600["median_seconds_to_callback"]) == (2, 1.0, 12 * 60 + 30)
    assert data["repeat_callers"] == [{"caller_key": "9161234567", "calls": 2, "callids": ["c.1", "c.2"], "open": 0}]
    only_open = json.loads(box.admin("report", "--json", "--status", "open").stdout)
    assert [c["callid"] for c in only_open["calls"]] == ["c.4"]
    rows = list(csv.DictReader(io.StringIO(box.admin("report", "--csv", "--queue", "601").stdout)))
    assert sorted(r["callid"] for r in rows) == ["c.3", "c.4"] and list(rows[0]) == list(data["calls"][0])


def test_report_in_russian_with_right_plurals(box: Pbx) -> None:
    box.configure(MISSEDCALL_LANGUAGE="ru")
    box.admin("resolve")
    text = box.admin("report").stdout
    assert "4 пропущенных звонка: открыто 1, перезвонили 2, дозвонились сами 1." in text
    assert "2 звонка (перезвонили, перезвонили)" in text


def test_report_mail_goes_to_each_queues_recipients_once(box: Pbx) -> None:
    done = box.admin("report", "--mail", "--status", "open")
    assert done.returncode == 0, done.stderr
    assert "3 mail(s) sent" in done.stdout
    mails = {m["To"]: m for m in box.mails()}
    assert sorted(mails) == ["boss@example.com", "ops600@example.com", "ops601@example.com"]
    assert "4 missed calls, 4 open" in mails["boss@example.com"]["Subject"]
    assert "2 missed calls, 2 open" in mails["ops601@example.com"]["Subject"]
    body = mails["ops600@example.com"].get_content()
    assert "601" not in body.split("QUEUE", 1)[1]
    box.admin("resolve")
    nothing = box.admin("report", "--mail", "--status", "open", "--queue", "600")
    assert nothing.returncode == 0 and "nothing mailed" in nothing.stdout


@pytest.mark.parametrize(
    ("argv", "config", "code", "says"),
    [
        (("report", "--since", "2026-12-02", "--until", "2026-12-01"), {}, 1, "--until must be later than --since"),
        (("report", "--status", "closed"), {}, 2, "invalid choice"),
        (("report", "--queue", "6;rm -rf /"), {}, 2, "is not a queue"),
        (("report", "--json", "--mail"), {}, 2, "not allowed with"),
        (("resolve",), {"MISSEDCALL_CDR_URL": "mysql://u:hunter2@h/db?table=cdr;DROP"}, 1, "plain table name"),
        (("resolve",), {"MISSEDCALL_CDR_URL": "csv:relative/Master.csv"}, 1, "absolute path"),
        (("resolve",), {"MISSEDCALL_REGION": "Russia"}, 1, "two-letter country code"),
        (("resolve",), {"MISSEDCALL_RESOLVE_HOURS": "-1"}, 1, "MISSEDCALL_RESOLVE_HOURS"),
        (("resolve",), {"MISSEDCALL_CDR_URL": "csv:/nonexistent/Master.csv"}, 1, "cannot read"),
    ],
)
def test_bad_input_is_one_line(box: Pbx, argv: tuple[str, ...], config: dict[str, str], code: int, says: str) -> None:
    box.configure(**config)
    done = box.admin(*argv)
    assert done.returncode == code
    assert says in done.stderr and done.stderr.count("\n") == 1 and "hunter2" not in done.stderr
