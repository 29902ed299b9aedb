"""Counts read by people: Russian one/few/many and English one/other, as a Russian or English speaker writes them."""

from __future__ import annotations

import pytest

from missedcall.deliver.plural import count


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
