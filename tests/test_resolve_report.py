"""The report's pure parts: durations, per-queue figures, repeat callers, Russian plural forms."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from missedcall.record.model import CallRecord
from missedcall.resolve import report

UTC = timezone.utc
T0 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)


def call(i: int, caller: str, queue: str = "600", resolution: str = "", after: int = 0, **more: object) -> CallRecord:
    ended = T0 + timedelta(minutes=i)
    return CallRecord(callid=f"c.{i}", queue=queue, reason="ABANDON", source="agi", caller_num=caller, ended_at=ended,
                      resolution=resolution, resolved_at=ended + timedelta(seconds=after) if resolution else None,
                      **more)  # type: ignore[arg-type]  # fmt: skip


def test_durations_and_talk() -> None:
    assert [report.duration(s, "en") for s in (None, 0, 29, 30, 840, 3600, 3930)] == [
        "-", "0 min", "0 min", "1 min", "14 min", "1 h 00 min", "1 h 06 min"]  # fmt: skip
    assert report.duration(3930, "ru") == "1 ч 06 мин"
    assert [report.talk(s) for s in (None, 0, 5, 200, 3725)] == ["-", "-", "0:05", "3:20", "62:05"]


def test_queue_figures_and_repeat_callers_by_key() -> None:
    calls = [
        call(0, "+79161234567", resolution="called-back", after=600),
        call(1, "8 (916) 123-45-67", resolution="called-back", after=1200),
        call(2, "89161234567", resolution="got-through", after=60),
        call(3, "+79035550000", queue="601"),
        call(4, "anonymous", queue="601"),
    ]
    [q600, q601] = report.queue_lines(calls)
    assert (q600.missed, q600.open, q600.called_back, q600.got_through, q600.median_to_callback) == (3, 0, 2, 1, 900)
    assert (q601.missed, q601.open, q601.share_resolved, q601.median_to_callback) == (2, 2, 0.0, None)
    [(key, group)] = report.repeat_callers(calls)
    assert key == "9161234567" and [c.callid for c in group] == ["c.0", "c.1", "c.2"]
    assert report.call_json(calls[3])["resolution"] == "open"


@pytest.mark.parametrize(
    ("n", "words"),
    [(1, "1 пропущенный звонок"), (2, "2 пропущенных звонка"), (5, "5 пропущенных звонков"),
     (11, "11 пропущенных звонков"), (21, "21 пропущенный звонок"), (22, "22 пропущенных звонка")],
)  # fmt: skip
def test_russian_plurals_in_the_summary(n: int, words: str) -> None:
    calls = [call(i, f"+7916000{i:04d}") for i in range(n)]
    text = report.render_text(calls, since=T0, until=T0 + timedelta(days=1), zone=UTC, zone_name="UTC", language="ru")
    assert f"{words}: открыто {n}," in text


def test_hostile_names_are_cleaned_and_the_zone_named() -> None:
    calls = [call(0, "+79161234567", caller_name="\x1b[2J\u202eIvan\nEvil", resolved_by="102\r\n")]
    moscow = timezone(timedelta(hours=3))
    text = report.render_text(calls, since=T0, until=T0 + timedelta(days=1), zone=moscow, zone_name="Europe/Moscow",
                              language="en")  # fmt: skip
    assert "(Europe/Moscow)" in text and "2026-11-30 10:00" in text
    assert "\x1b" not in text and "\u202e" not in text and "\r" not in text
    # title, blank, summary, blank, header, the call, blank, queue header, queue: the name broke no line
    assert len(text.splitlines()) == 9
