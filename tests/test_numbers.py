"""Same caller or not: numbers as a Russian PBX writes them on the way in and on the way back out."""

from __future__ import annotations

import pytest

from missedcall.resolve.numbers import international, is_extension, key, same_caller

MISS = "+79161234567"


@pytest.mark.parametrize(
    "callback",
    [
        "89161234567",  # national, with the trunk prefix 8
        "79161234567",  # country code without the plus
        "+79161234567",
        "9161234567",  # ten digits, no prefix at all
        "989161234567",  # outside-line 9, then national
        "0089161234567",  # outside-line 0 twice: only the last digits tell
        "+7 (916) 123-45-67",  # as a person types it
    ],
)
def test_every_way_of_writing_the_callers_number_matches(callback: str) -> None:
    assert same_caller(MISS, callback, "RU")


@pytest.mark.parametrize(
    "other",
    ["89161234568", "+74951234567", "102", "", "anonymous", "+449161234567", "12345678901234567890"],
)
def test_other_numbers_and_extensions_never_match(other: str) -> None:
    assert not same_caller(MISS, other, "RU")


def test_extensions_are_not_callers() -> None:
    assert is_extension("102") and is_extension("5001")
    assert not is_extension("89161234567")
    assert key("102") is None and key("") is None and key("<unknown>") is None


def test_region_decides_what_a_national_number_means() -> None:
    assert key("02079460958", "GB").e164 == "+442079460958"  # type: ignore[union-attr]
    assert same_caller("+442079460958", "02079460958", "GB")
    # In Russia the same digits are no valid number: only the last-ten-digits fallback can match them.
    assert key("02079460958", "RU").e164 == ""  # type: ignore[union-attr]


def test_international_format_for_people() -> None:
    assert international("89161234567") == "+7 916 123-45-67"
    assert international("102") == "102"
    assert international(" not a number ") == "not a number"


@pytest.mark.parametrize("hostile", ["1" * 5000, "+7916\n1234567", "٩١٦١٢٣٤٥٦٧", "+7916'; DROP TABLE cdr;--1234567"])
def test_hostile_text_never_raises(hostile: str) -> None:
    key(hostile)
    same_caller(MISS, hostile)
    international(hostile)
