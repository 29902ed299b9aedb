"""Counts read by people: Russian one/few/many and English one/other, as a Russian or English speaker writes them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from missedcall.deliver import digest
from missedcall.deliver.plural import count
from missedcall.record.model import CallRecord


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 звонков"), (1, "1 звонок"), (2, "2 звонка"), (4, "4 звонка"), (5, "5 звонков"),
        (11, "11 звонков"), (12, "12 звонков"), (14, "14 звонков"), (21, "21 звонок"), (22, "22 звонка"),
        (25, "25 звонков"), (101, "101 звонок"), (111, "111 звонков"), (112, "112 звонков"), (1004, "1004 звонка"),
    ],
)
def test_russian_call(n: int, expected: str) -> None:
    assert count(n, "call", "ru") == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, "1 пропущенный звонок"),
        (2, "2 пропущенных звонка"),
        (5, "5 пропущенных звонков"),
        (31, "31 пропущенный звонок"),
    ],
)
def test_russian_missed_call(n: int, expected: str) -> None:
    assert count(n, "missed call", "ru") == expected


@pytest.mark.parametrize(("n", "expected"), [(0, "0 calls"), (1, "1 call"), (2, "2 calls"), (21, "21 calls")])
def test_english(n: int, expected: str) -> None:
    assert count(n, "call", "en") == expected


def test_minutes_in_russian() -> None:
    assert [count(n, "minute", "ru") for n in (1, 3, 5)] == ["1 минута", "3 минуты", "5 минут"]
    assert [count(n, "minute-acc", "ru") for n in (1, 3, 5)] == ["1 минуту", "3 минуты", "5 минут"]


def _calls(n: int) -> list[CallRecord]:
    ended = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    return [
        CallRecord(callid=f"1796.{i}", queue="600", reason="ABANDON", source="agi", ended_at=ended, wait_seconds=10)
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("language", "n", "subject", "intro"),
    [
        ("ru", 2, "Сводка: 2 пропущенных звонка — 600", "За 5 минут вы уже получили 21 уведомление"),
        ("ru", 5, "Сводка: 5 пропущенных звонков — 600", "За 5 минут вы уже получили 21 уведомление"),
        ("ru", 21, "Сводка: 21 пропущенный звонок — 600", "За 5 минут вы уже получили 21 уведомление"),
        ("en", 1, "Digest: 1 missed call — 600", "You already got 21 notifications within 5 minutes"),
        ("en", 3, "Digest: 3 missed calls — 600", "You already got 21 notifications within 5 minutes"),
    ],
)
def test_digest_counts_read_right(language: str, n: int, subject: str, intro: str) -> None:
    message = digest.build(
        _calls(n), to="a@example.com", sender="pbx@example.com", language=language, limit=21, window=5,
        zone=timezone.utc, now=datetime(2026, 11, 30, 9, 5, tzinfo=timezone.utc), host="pbx",
    )
    assert message["Subject"] == subject
    assert message.to_email().get_content().startswith(intro)
