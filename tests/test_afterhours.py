"""Business hours: a miss while the queue is closed waits for one morning summary per recipient (or is mailed,
or only recorded, as MISSEDCALL_AFTER_HOURS says), on SQLite and MariaDB, with FreePBX's Time Groups read
when a route has them. Time is driven with explicit ``now`` arguments; the mails are the sendmail stand-in's.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from missedcall import config
from missedcall.dburl import parse_db_url
from missedcall.deliver import afterhours, digest, notify, retry
from missedcall.record.model import CallRecord
from tests.agibox import Pbx, abandon_peer, make_pbx
from tests.mailbox import StoredMail
from tests.support.freepbx import add_direct_route, add_time_condition
from tests.support.mariadb import MariaDBDatabase

# 2026-11-30 is a Monday. Moscow is UTC+3 all year.
MON_0300_MSK = datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)
MON_0900_MSK = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
MON_1200_MSK = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
OFFICE = "mon-fri 09:00-18:00"


@pytest.fixture
def box(tmp_path: Path, db_url: str) -> Pbx:
    return make_pbx(tmp_path, db_url, MISSEDCALL_TIMEZONE="Europe/Moscow")


def settings_of(box: Pbx, monkeypatch: pytest.MonkeyPatch, **keys: str) -> config.Settings:
    if keys:
        box.configure(**keys)
    return box.in_this_process(monkeypatch)


def miss(box: Pbx, settings: config.Settings, callid: str, queue: str, ended: datetime) -> CallRecord:
    call = CallRecord(callid=callid, queue=queue, reason="ABANDON", source="agi", caller_num="79161234567",
                      caller_name="Ivan Petrov", wait_seconds=42, entered_at=ended - timedelta(seconds=42),
                      ended_at=ended)  # fmt: skip
    with box.store() as store:
        assert store.claim_call(call)
        return notify.notify(store, settings, call, timeout=5, now=ended + timedelta(seconds=1))


def to(mails: list[StoredMail], address: str) -> list[StoredMail]:
    return [m for m in mails if address in m.recipients]


def hours_set(box: Pbx, *argv: str) -> None:
    done = box.admin("hours", "set", *argv)
    assert done.returncode == 0, done.stderr


# ============================================================================ the setting


def raw_settings(value: str) -> config.Settings:
    return config.Settings(db=parse_db_url("sqlite:////nonexistent/x.sqlite3"), raw={"MISSEDCALL_AFTER_HOURS": value})


@pytest.mark.parametrize(("raw", "expected"), [("", "digest"), ("MAIL", "mail"), (" ignore ", "ignore")])
def test_after_hours_setting(raw: str, expected: str) -> None:
    assert afterhours.mode(raw_settings(raw)) == expected


def test_a_bad_after_hours_setting_is_one_line_naming_the_key() -> None:
    with pytest.raises(config.ConfigError) as caught:
        afterhours.mode(raw_settings("later\nBcc: x"))
    assert str(caught.value).startswith("MISSEDCALL_AFTER_HOURS: ") and "\n" not in str(caught.value)


# ============================================================================ the morning summary


def test_night_misses_become_one_morning_summary_per_recipient(box: Pbx, monkeypatch: pytest.MonkeyPatch) -> None:
    hours_set(box, "600", OFFICE)
    settings = settings_of(box, monkeypatch)
    for i in range(3):
        done = miss(box, settings, f"1797000000.{i}", "600", MON_0300_MSK + timedelta(minutes=i))
        assert (done.status, done.last_error) == (
            "held", "outside business hours of queue 600 (queue); opens 2026-11-30 09:00; MISSEDCALL_AFTER_HOURS=digest"
        )
    assert box.stored() == []  # nobody woken at 3 a.m.
    with box.store() as store:
        assert retry.run(store, settings, now=MON_0900_MSK - timedelta(seconds=1)).digests == 0
        assert box.stored() == []
        report = retry.run(store, settings, now=MON_0900_MSK)
        assert (report.digests, report.digest_calls) == (2, 6)  # ops600 and boss (*), three calls each
        assert Counter(c.status for c in store.calls()) == {"sent": 3}
        assert all(c.notified_at == MON_0900_MSK for c in store.calls())
        assert retry.run(store, settings, now=MON_0900_MSK + timedelta(hours=1)).digests == 0
    mails = box.stored()
    for address in ("ops600@example.com", "boss@example.com"):
        [summary] = to(mails, address)
        assert summary.recipients == [address]
        assert summary.message["Subject"] == "Missed while closed: 3 missed calls — 600"
        body = summary.message.get_content()
        assert digest.listed_callids(body) == [f"1797000000.{i}" for i in range(3)]
        assert "03:00  +7 916 123-45-67  Ivan Petrov  42 s" in body  # Moscow time, one short row per call


def test_russian_summary_counts_right(box: Pbx, monkeypatch: pytest.MonkeyPatch) -> None:
    hours_set(box, "600", "пн-пт 09:00-18:00")
    settings = settings_of(box, monkeypatch, MISSEDCALL_LANGUAGE="ru")
    for i in range(2):
        miss(box, settings, f"1797000100.{i}", "600", MON_0300_MSK + timedelta(minutes=i))
    with box.store() as store:
        retry.run(store, settings, now=MON_0900_MSK)
    [summary] = to(box.stored(), "ops600@example.com")
    assert summary.message["Subject"] == "Пропущено в нерабочее время: 2 пропущенных звонка — 600"
    assert summary.message.get_content().startswith("В нерабочее время — 2 пропущенных звонка, в одном письме.")


def test_a_miss_in_hours_is_mailed_at_once(box: Pbx, monkeypatch: pytest.MonkeyPatch) -> None:
    hours_set(box, "600", OFFICE)
    settings = settings_of(box, monkeypatch)
    assert miss(box, settings, "1797000200.1", "600", MON_1200_MSK).status == "sent"
    assert len(box.stored()) == 1 and box.stored()[0].message["X-Missedcall-Digest"] is None


def test_a_queue_without_hours_behaves_as_before(box: Pbx, monkeypatch: pytest.MonkeyPatch) -> None:
    hours_set(box, "601", OFFICE)  # another queue's hours change nothing for 600
    settings = settings_of(box, monkeypatch)
    assert miss(box, settings, "1797000300.1", "600", MON_0300_MSK).status == "sent"
    assert len(box.stored()) == 1


def test_holidays_are_closed_all_day(box: Pbx, monkeypatch: pytest.MonkeyPatch) -> None:
    hours_set(box, "600", OFFICE, "--holidays", "2026-12-31, 01-01")
    settings = settings_of(box, monkeypatch)
    thursday_noon = datetime(2026, 12, 31, 9, 0, tzinfo=timezone.utc)  # 12:00 in Moscow, a holiday
    assert miss(box, settings, "1797000400.1", "600", thursday_noon).status == "held"
    with box.store() as store:
        # Not on New Year's Day (a yearly holiday) and not on the weekend: Monday 2027-01-04, 09:00 Moscow.
        assert retry.run(store, settings, now=datetime(2027, 1, 4, 5, 59, tzinfo=timezone.utc)).digests == 0
        assert retry.run(store, settings, now=datetime(2027, 1, 4, 6, 0, tzinfo=timezone.utc)).digests == 2


def test_mail_and_ignore(box: Pbx, monkeypatch: pytest.MonkeyPatch) -> None:
    hours_set(box, "600", OFFICE)
    settings = settings_of(box, monkeypatch, MISSEDCALL_AFTER_HOURS="mail")
    assert miss(box, settings, "1797000500.1", "600", MON_0300_MSK).status == "sent"
    assert len(box.stored()) == 1
    settings = settings_of(box, monkeypatch, MISSEDCALL_AFTER_HOURS="ignore")
    done = miss(box, settings, "1797000500.2", "600", MON_0300_MSK)
    assert done.status == "skipped"
    assert done.last_error.startswith("outside business hours of queue 600 (queue); opens 2026-11-30 09:00")
    assert done.last_error.endswith("MISSEDCALL_AFTER_HOURS=ignore")
    assert len(box.stored()) == 1


def test_star_hours_apply_to_queues_without_their_own(box: Pbx, monkeypatch: pytest.MonkeyPatch) -> None:
    hours_set(box, "*", "mon-sun 08:00-20:00")
    hours_set(box, "601", "* 00:00-24:00")
    settings = settings_of(box, monkeypatch)
    assert miss(box, settings, "1797000600.1", "600", MON_0300_MSK).status == "held"
    assert miss(box, settings, "1797000600.2", "601", MON_0300_MSK).status == "sent"
    listed = {q["queue"]: q for q in json.loads(box.admin("hours", "--json").stdout)}
    assert (listed["600"]["schedule"], listed["600"]["source"]) == ("mon-sun 08:00-20:00", "*")
    assert (listed["601"]["schedule"], listed["601"]["source"]) == ("* 00:00-24:00", "queue")
    assert listed["*"]["source"] == "queue"
    assert box.admin("hours", "clear", "601").returncode == 0
    listed = {q["queue"]: q for q in json.loads(box.admin("hours", "list", "--json").stdout)}
    assert listed["601"]["source"] == "*"


# ============================================================================ the command


def test_set_list_clear(box: Pbx) -> None:
    done = box.admin("hours", "set", "600", "mon-fri 09:00-18:00, sat 10:00-14:00", "--holidays", "01-07")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "queue 600: hours mon-fri 09:00-18:00, sat 10:00-14:00, closed on 01-07\n"
    table = box.admin("hours").stdout.splitlines()
    assert table[0].split() == ["QUEUE", "HOURS", "HOLIDAYS", "FROM"]
    row = next(line for line in table if line.startswith("600"))
    assert "mon-fri 09:00-18:00, sat 10:00-14:00" in row and "01-07" in row and row.rstrip().endswith("queue")
    assert any(line.startswith("601") and "always open" in line for line in table)
    assert box.admin("hours", "clear", "600").returncode == 0
    listed = {q["queue"]: q for q in json.loads(box.admin("hours", "--json").stdout)}
    assert listed["600"] == {"queue": "600", "schedule": "", "holidays": "", "source": "none"}


HOSTILE_SCHEDULES = [
    "",
    "   ",
    "mon-fri 9-18",
    "mon-fri 25:00-26:00",
    "mon-fri 09:00-09:00",
    "xyz 09:00-18:00",
    "mon-fri 09:00-18:00\nholidays: 01-01",
    "mon-fri 09:00-18:00\x1b[31m",
    "09:00-18:00|mon-fri|32|*",
    "09:00-18:00|mon-fri|*|smarch",
    "; ".join(["mon 09:00-10:00"] * 65),
    "mon-fri 09:00-18:00 " + "x" * 2000,
    "'; DROP TABLE missedcall_queues; --",
    "понедельник 09:00-18:00",
    "mon-fri ٠٩:٠٠-١٨:٠٠",  # Arabic-Indic digits are digits to str.isdigit, not to a clock
]


@pytest.mark.parametrize("schedule", HOSTILE_SCHEDULES)
def test_bad_schedules_are_one_line_and_store_nothing(box: Pbx, schedule: str) -> None:
    done = box.admin("hours", "set", "600", schedule)
    assert done.returncode == 1, (schedule, done.stdout, done.stderr)
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    listed = {q["queue"]: q for q in json.loads(box.admin("hours", "--json").stdout)}
    assert listed["600"]["source"] == "none"


@pytest.mark.parametrize("holidays", ["2026-02-30", "12/31", "tomorrow", "01-07\n02-23"])
def test_bad_holidays_are_refused(box: Pbx, holidays: str) -> None:
    done = box.admin("hours", "set", "600", OFFICE, "--holidays", holidays)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_hours_usage_errors_exit_2(box: Pbx) -> None:
    assert box.admin("hours", "set", "600").returncode == 2
    assert box.admin("hours", "set", "6 00", OFFICE).returncode == 2


def test_a_broken_stored_schedule_still_mails(box: Pbx, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row edited by hand into nonsense never costs a mail: the call is handled as within hours."""
    hours_set(box, "600", OFFICE)
    with box.store() as store:
        store.execute("UPDATE missedcall_queues SET hours = ? WHERE queue = '600'", ("mon-fri 9 to 5",))
    settings = settings_of(box, monkeypatch)
    assert miss(box, settings, "1797000700.1", "600", MON_0300_MSK).status == "sent"
    doctor = box.admin("doctor", "--json")
    checks = {c["check"]: c for c in json.loads(doctor.stdout)}
    assert checks["business hours"]["status"] == "WARN"
    assert "missedcall-admin hours set 600" in checks["business hours"]["fix"]


# ============================================================================ FreePBX's Time Groups


@pytest.fixture
def freepbx_box(tmp_path: Path, freepbx_database: MariaDBDatabase, freepbx_conf: Path) -> Pbx:
    # A FreePBX box: its freepbx.conf is what tells missedcall that FreePBX's tables are there to read.
    return make_pbx(tmp_path, freepbx_database.url, MISSEDCALL_TIMEZONE="Europe/Moscow",
                    MISSEDCALL_FREEPBX_CONF=str(freepbx_conf))  # fmt: skip


def test_freepbx_time_groups_apply_when_the_queue_has_no_hours(
    freepbx_box: Pbx, freepbx_database: MariaDBDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_time_condition(freepbx_database, did="74951234567", queue="600",
                       rules=["09:00-18:00|mon-fri|*|*", "10:00-14:00|sat|*|*"])  # fmt: skip
    add_direct_route(freepbx_database, did="74951230000", queue="601")  # 601 is reached at any hour
    listed = {q["queue"]: q for q in json.loads(freepbx_box.admin("hours", "--json").stdout)}
    assert listed["600"] == {
        "queue": "600", "schedule": "09:00-18:00|mon-fri|*|*; 10:00-14:00|sat|*|*", "holidays": "",
        "source": "freepbx",
    }  # fmt: skip
    assert listed["601"]["source"] == "none" and listed["602"]["source"] == "none"
    settings = settings_of(freepbx_box, monkeypatch)
    held = miss(freepbx_box, settings, "1797000800.1", "600", MON_0300_MSK)
    assert held.status == "held"
    assert miss(freepbx_box, settings, "1797000800.2", "601", MON_0300_MSK).status == "sent"
    saturday_1100_msk = datetime(2026, 12, 5, 8, 0, tzinfo=timezone.utc)
    assert miss(freepbx_box, settings, "1797000800.3", "600", saturday_1100_msk).status == "sent"
    # Our own hours beat FreePBX's.
    hours_set(freepbx_box, "600", "* 00:00-24:00")
    assert miss(freepbx_box, settings, "1797000800.4", "600", MON_0300_MSK).status == "sent"
    with freepbx_box.store() as store:
        assert retry.run(store, settings, now=MON_0900_MSK).digests == 2


def test_time_groups_are_not_read_without_freepbx(
    tmp_path: Path, freepbx_database: MariaDBDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tables that look like FreePBX's on a box without freepbx.conf: not FreePBX, so no query on them per call."""
    add_time_condition(freepbx_database, did="74951234567", queue="600", rules=["09:00-18:00|mon-fri|*|*"])
    box = make_pbx(tmp_path, freepbx_database.url, MISSEDCALL_TIMEZONE="Europe/Moscow")
    listed = {q["queue"]: q for q in json.loads(box.admin("hours", "--json").stdout)}
    assert listed["600"]["source"] == "none"
    settings = settings_of(box, monkeypatch)
    assert miss(box, settings, "1797000850.1", "600", MON_0300_MSK).status == "sent"


def test_doctor_names_a_bad_after_hours_setting_and_the_hook_still_mails(
    box: Pbx, monkeypatch: pytest.MonkeyPatch
) -> None:
    hours_set(box, "600", OFFICE)
    settings = settings_of(box, monkeypatch, MISSEDCALL_AFTER_HOURS="tomorrow")
    assert miss(box, settings, "1797000900.1", "600", MON_0300_MSK).status == "sent"
    checks = {c["check"]: c for c in json.loads(box.admin("doctor", "--json").stdout)}
    assert checks["business hours"]["status"] == "FAIL"
    assert checks["business hours"]["detail"] == "MISSEDCALL_AFTER_HOURS: 'tomorrow' is not one of digest, mail, ignore"


def test_the_real_hook_holds_a_miss_while_closed(box: Pbx) -> None:
    """Through agi-bin/missed.py on the real clock: a schedule open only two days from now is closed today."""
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(datetime.now(ZoneInfo("Europe/Moscow")).weekday() + 2) % 7]
    hours_set(box, "600", f"{day} 09:00-10:00")
    assert box.run(abandon_peer("1797001000.1"), ["600"]).ok
    [call] = box.calls()
    assert (call.status, sorted(call.recipients)) == ("held", ["boss@example.com", "ops600@example.com"])
    assert box.stored() == []
    assert box.run(abandon_peer("1797001000.2", "601"), ["601"]).ok  # 601 has no hours: mailed at once
    assert len(box.stored()) == 1


@pytest.mark.parametrize(
    ("language", "n", "subject", "intro"),
    [
        ("ru", 1, "Пропущено в нерабочее время: 1 пропущенный звонок — 600",
         "В нерабочее время — 1 пропущенный звонок, в одном письме."),
        ("ru", 5, "Пропущено в нерабочее время: 5 пропущенных звонков — 600",
         "В нерабочее время — 5 пропущенных звонков, в одном письме."),
        ("ru", 22, "Пропущено в нерабочее время: 22 пропущенных звонка — 600",
         "В нерабочее время — 22 пропущенных звонка, в одном письме."),
        ("en", 1, "Missed while closed: 1 missed call — 600", "Outside business hours: 1 missed call, collected"),
    ],
)  # fmt: skip
def test_summary_counts_read_right(language: str, n: int, subject: str, intro: str) -> None:
    calls = [CallRecord(callid=f"1797.{i}", queue="600", reason="ABANDON", source="agi", ended_at=MON_0300_MSK)
             for i in range(n)]  # fmt: skip
    message = digest.build(calls, to="a@example.com", sender="pbx@example.com", language=language, limit=3,
                           window=5, zone=timezone.utc, now=MON_0900_MSK, host="pbx", after_hours=True)  # fmt: skip
    assert message["Subject"] == subject
    assert message.to_email().get_content().startswith(intro)
