"""Business hours: when a queue is open, read from our short syntax or FreePBX's Time Groups. Pure.

Two spellings of the same thing, both accepted wherever a schedule is read:

* ours, for ``missedcall-admin hours set``: ``mon-fri 09:00-18:00, sat 10:00-14:00``
  (rules separated by ``,`` or ``;``; days ``mon``..``sun`` or ``пн``..``вс``,
  single or ranges, ``*`` or ``daily`` for every day; a range past midnight like
  ``22:00-06:00`` runs into the next day);
* Asterisk's ``GotoIfTime`` form that FreePBX's Time Groups store, one rule per
  entry: ``09:00-18:00|mon-fri|*|*`` (times|weekdays|days of month|months).

Holidays are dates (``2026-12-31``) or yearly dates (``01-07``) on which the
queue is closed all day. Times are wall-clock times in the schedule's zone; the
caller converts. Nothing here reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

DAYS = {
    "mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6,
    "пн": 0, "вт": 1, "ср": 2, "чт": 3, "пт": 4, "сб": 5, "вс": 6,
}
MONTHS = {name: n for n, name in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                            "nov", "dec"), start=1)}
MAX_RULES = 64


class HoursError(ValueError):
    """A schedule that cannot be read (one line, naming the part that is wrong)."""


@dataclass(frozen=True)
class Rule:
    """Open on ``days`` (0 = Monday) of ``months`` / ``monthdays`` from ``start`` to ``end`` (minutes)."""

    days: frozenset[int]
    start: int  # minutes after midnight
    end: int  # may be <= start: the interval runs past midnight into the next day
    monthdays: frozenset[int] | None = None
    months: frozenset[int] | None = None

    def covers_day(self, day: date) -> bool:
        return (
            day.weekday() in self.days
            and (self.monthdays is None or day.day in self.monthdays)
            and (self.months is None or day.month in self.months)
        )


@dataclass(frozen=True)
class Schedule:
    rules: tuple[Rule, ...]
    holidays: frozenset[str] = frozenset()  # "YYYY-MM-DD" or "MM-DD"

    def _holiday(self, day: date) -> bool:
        return day.isoformat() in self.holidays or day.isoformat()[5:] in self.holidays

    def is_open(self, when: datetime) -> bool:
        """Whether ``when`` (a wall-clock time in the schedule's zone) falls in open hours."""
        minute = when.hour * 60 + when.minute
        today = when.date()
        yesterday = today - timedelta(days=1)
        for rule in self.rules:
            if rule.end > rule.start:
                if rule.covers_day(today) and not self._holiday(today) and rule.start <= minute < rule.end:
                    return True
            else:  # past midnight: open from start today, or until end for what began yesterday
                if rule.covers_day(today) and not self._holiday(today) and minute >= rule.start:
                    return True
                if rule.covers_day(yesterday) and not self._holiday(yesterday) and minute < rule.end:
                    return True
        return False

    def next_open(self, when: datetime, *, horizon_days: int = 400) -> datetime | None:
        """The first moment at or after ``when`` that is open (same tzinfo as ``when``), or None within the horizon."""
        if self.is_open(when):
            return when
        candidates: list[datetime] = []
        for offset in range(horizon_days + 1):
            day = when.date() + timedelta(days=offset)
            if self._holiday(day):
                continue
            for rule in self.rules:
                if rule.covers_day(day):
                    start = datetime.combine(day, time(rule.start // 60, rule.start % 60), tzinfo=when.tzinfo)
                    if start >= when:
                        candidates.append(start)
            if candidates:
                return min(candidates)
        return None


def _minutes(text: str, where: str) -> int:
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not (hours.isascii() and hours.isdigit() and minutes.isascii() and minutes.isdigit()):
        raise HoursError(f"{where}: {text.strip()!r} is not a time like 09:00")
    value = int(hours) * 60 + int(minutes)
    if int(hours) > 24 or int(minutes) > 59 or value > 24 * 60:
        raise HoursError(f"{where}: {text.strip()!r} is not a time of day")
    return value


def _span(text: str, where: str) -> tuple[int, int]:
    if text.strip() in ("*", ""):
        return 0, 24 * 60
    first, sep, last = text.partition("-")
    if not sep:
        raise HoursError(f"{where}: {text.strip()!r} is not a time range like 09:00-18:00")
    start, end = _minutes(first, where), _minutes(last, where)
    if start == end:
        raise HoursError(f"{where}: {text.strip()!r} is an empty time range")
    return start, end % (24 * 60) if end == 24 * 60 else end


def _set(text: str, names: dict[str, int], low: int, high: int, where: str, what: str) -> frozenset[int] | None:
    """A set from ``a``, ``a-b`` and ``a&b`` items (names or numbers); None for ``*`` (every one)."""
    text = text.strip().lower()
    if text in ("*", "", "daily", "ежедневно"):
        return None
    found: set[int] = set()
    for item in text.replace("&", ",").split(","):
        first, sep, last = item.strip().partition("-")
        try:
            a = names[first.strip()] if first.strip() in names else int(first)
            b = (names[last.strip()] if last.strip() in names else int(last)) if sep else a
        except ValueError:
            raise HoursError(f"{where}: {item.strip()!r} is not a {what}") from None
        if not (low <= a <= high and low <= b <= high):
            raise HoursError(f"{where}: {item.strip()!r} is not a {what}")
        span = range(a, b + 1) if a <= b else [*range(a, high + 1), *range(low, b + 1)]  # fri-mon wraps
        found.update(span)
    return frozenset(found)


def _days(text: str, where: str) -> frozenset[int]:
    days = _set(text, DAYS, 0, 6, where, "weekday (mon..sun)")
    return frozenset(range(7)) if days is None else days


def parse_rule(text: str, where: str = "schedule") -> Rule:
    """One rule, in our form (``mon-fri 09:00-18:00``) or Asterisk's (``09:00-18:00|mon-fri|*|*``)."""
    text = text.strip()
    if "|" in text:
        fields = [*text.split("|"), "*", "*", "*"][:4]
        start, end = _span(fields[0], where)
        return Rule(
            _days(fields[1], where),
            start,
            end,
            _set(fields[2], {}, 1, 31, where, "day of the month"),
            _set(fields[3], MONTHS, 1, 12, where, "month"),
        )
    days_text, _, span_text = text.rpartition(" ")
    if not days_text:
        days_text, span_text = ("*", text) if any(ch.isdigit() for ch in text) else (text, "*")
    start, end = _span(span_text, where)
    return Rule(_days(days_text, where), start, end)


def _holiday(text: str, where: str) -> str:
    text = text.strip()
    yearly = len(text) == 5
    try:
        # Yearly dates are checked against 2000, a leap year, so 02-29 is a valid holiday.
        parsed = datetime.strptime(f"2000-{text}" if yearly else text, "%Y-%m-%d")
    except ValueError:
        raise HoursError(f"{where}: {text!r} is not a date like 2026-12-31 or a yearly date like 01-07") from None
    return parsed.strftime("%m-%d") if yearly else parsed.strftime("%Y-%m-%d")


def parse_schedule(text: str, holidays: str = "", where: str = "schedule") -> Schedule:
    """A whole schedule: rules separated by ``,`` or ``;`` (Asterisk-form rules by ``;`` or new lines)."""
    text = text.strip()
    if not text:
        raise HoursError(f"{where}: empty schedule (say 'mon-fri 09:00-18:00', or '*' for always open)")
    if text in ("*", "always", "24/7"):
        return Schedule((Rule(frozenset(range(7)), 0, 0),), _holidays(holidays, where))
    separators = ";\n" if "|" in text else ";,\n"
    parts = [text]
    for sep in separators:
        parts = [piece for part in parts for piece in part.split(sep)]
    pieces = [p for p in (x.strip() for x in parts) if p]
    if "|" not in text:
        pieces = _join_day_lists(pieces)
    if len(pieces) > MAX_RULES:
        raise HoursError(f"{where}: more than {MAX_RULES} rules")
    rules = tuple(parse_rule(piece, where) for piece in pieces)
    return Schedule(rules, _holidays(holidays, where))


def _join_day_lists(pieces: list[str]) -> list[str]:
    """``mon, wed 09:00-12:00`` was split at the comma: a piece of only days belongs to the next rule's days."""
    joined: list[str] = []
    pending: list[str] = []
    for piece in pieces:
        if _only_days(piece):
            pending.append(piece)
            continue
        if pending:
            days, _, span = piece.rpartition(" ")
            piece = ",".join([*pending, days]).strip(",") + " " + span if days else ",".join(pending) + " " + span
            pending = []
        joined.append(piece)
    joined.extend(f"{p} *" for p in pending)
    return joined


def _only_days(piece: str) -> bool:
    return all(part.strip().lower() in DAYS for word in piece.split() for part in word.split("-"))


def _holidays(text: str, where: str) -> frozenset[str]:
    return frozenset(_holiday(item, where) for item in text.replace(";", ",").split(",") if item.strip())
