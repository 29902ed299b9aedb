"""Business hours: our short syntax and FreePBX Time Group rules, read the way an office manager means them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from missedcall.deliver.hours import HoursError, parse_schedule

MSK = timezone(timedelta(hours=3))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=MSK)


# 2026-11-30 is a Monday; 2026-12-05 a Saturday.
@pytest.mark.parametrize(
    ("when", "open_"),
    [
        ("2026-11-30 08:59", False),
        ("2026-11-30 09:00", True),
        ("2026-11-30 17:59", True),
        ("2026-11-30 18:00", False),
        ("2026-12-04 12:00", True),  # Friday
        ("2026-12-05 11:00", True),  # Saturday's short day
        ("2026-12-05 15:00", False),
        ("2026-12-06 11:00", False),  # Sunday
    ],
)
def test_weekdays_and_a_short_saturday(when: str, open_: bool) -> None:
    schedule = parse_schedule("mon-fri 09:00-18:00, sat 10:00-14:00")
    assert schedule.is_open(at(when)) is open_


def test_russian_day_names_and_a_list_of_days() -> None:
    schedule = parse_schedule("пн,ср 09:00-12:00; пт 13:00-15:00")
    assert schedule.is_open(at("2026-11-30 10:00"))  # пн
    assert not schedule.is_open(at("2026-12-01 10:00"))  # вт
    assert schedule.is_open(at("2026-12-02 11:59"))  # ср
    assert schedule.is_open(at("2026-12-04 14:00"))  # пт


def test_night_shift_runs_past_midnight() -> None:
    schedule = parse_schedule("mon-fri 22:00-06:00")
    assert schedule.is_open(at("2026-11-30 23:30"))  # Monday night
    assert schedule.is_open(at("2026-12-01 05:59"))  # ... into Tuesday morning
    assert not schedule.is_open(at("2026-12-01 06:00"))
    assert schedule.is_open(at("2026-12-05 03:00"))  # Friday's shift ends Saturday 06:00
    assert not schedule.is_open(at("2026-12-06 03:00"))  # nothing began on Saturday


def test_freepbx_time_group_rules() -> None:
    # As FreePBX stores Time Group entries: times|weekdays|days of month|months.
    schedule = parse_schedule("09:00-18:00|mon-fri|*|*\n10:00-14:00|sat|*|*\n*|*|31|dec")
    assert schedule.is_open(at("2026-11-30 09:30"))
    assert schedule.is_open(at("2026-12-05 10:30"))
    assert schedule.is_open(at("2026-12-31 03:00"))  # the whole of 31 December (a Thursday)
    assert not schedule.is_open(at("2026-12-06 10:30"))


def test_holidays_close_the_whole_day() -> None:
    schedule = parse_schedule("mon-fri 09:00-18:00", holidays="2026-12-31, 01-01, 01-07")
    assert not schedule.is_open(at("2026-12-31 10:00"))
    assert not schedule.is_open(at("2027-01-01 10:00"))  # yearly
    assert not schedule.is_open(at("2027-01-07 10:00"))
    assert schedule.is_open(at("2027-01-08 10:00"))


def test_next_open_is_the_next_morning_or_after_the_weekend() -> None:
    schedule = parse_schedule("mon-fri 09:00-18:00", holidays="12-07")
    assert schedule.next_open(at("2026-11-30 03:00")) == at("2026-11-30 09:00")
    assert schedule.next_open(at("2026-11-30 19:00")) == at("2026-12-01 09:00")
    assert schedule.next_open(at("2026-12-04 18:30")) == at("2026-12-08 09:00")  # weekend, then Monday's holiday
    assert schedule.next_open(at("2026-12-01 10:00")) == at("2026-12-01 10:00")  # already open


def test_always_open() -> None:
    schedule = parse_schedule("*")
    assert schedule.is_open(at("2026-12-06 03:00"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "schedule: empty schedule (say 'mon-fri 09:00-18:00', or '*' for always open)"),
        ("mon-fri 9-18", "schedule: '9' is not a time like 09:00"),
        ("mon-fri 09:00-25:00", "schedule: '25:00' is not a time of day"),
        ("mon-fri 09:00-09:00", "schedule: '09:00-09:00' is an empty time range"),
        ("moon 09:00-18:00", "schedule: 'moon' is not a weekday (mon..sun)"),
        ("09:00-18:00|mon-fri|32|*", "schedule: '32' is not a day of the month"),
        ("09:00-18:00|mon-fri|*|smarch", "schedule: 'smarch' is not a month"),
        ("mon 09:00-10:00;" * 65, "schedule: more than 64 rules"),
    ],
)
def test_bad_schedules_give_one_line(text: str, message: str) -> None:
    with pytest.raises(HoursError) as caught:
        parse_schedule(text)
    assert str(caught.value) == message


@pytest.mark.parametrize("holiday", ["2026-02-30", "13-01", "tomorrow", "2026/12/31", "1" * 40])
def test_bad_holidays_give_one_line(holiday: str) -> None:
    with pytest.raises(HoursError) as caught:
        parse_schedule("*", holidays=holiday)
    assert "is not a date like 2026-12-31 or a yearly date like 01-07" in str(caught.value)


def test_a_leap_day_is_a_valid_yearly_holiday() -> None:
    assert not parse_schedule("*", holidays="02-29").is_open(at("2028-02-29 12:00"))
