"""The callback report: per call how it ended, per queue the counts and the median time to a callback,
and the callers who tried more than once. Pure: calls in, rows and text out.

Times are shown in MISSEDCALL_TIMEZONE with the zone named; counts a person reads go
through missedcall.deliver.plural (1 звонок, 2 звонка, 5 звонков).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from statistics import median
from typing import Any

from missedcall.deliver import plural
from missedcall.deliver.mail import clean, describe_caller
from missedcall.record.model import CallRecord
from missedcall.resolve.match import CALLED_BACK, GOT_THROUGH, OPEN
from missedcall.text import caller_key, printable

_WORDS = {
    "en": {
        "title": "Missed calls {since} – {until} ({zone})",
        "summary": "{calls}: {open} open, {back} called back, {through} got through.",
        "header": ("TIME", "QUEUE", "CALLER", "STATUS", "AFTER", "BY", "TALK"),
        "queues": ("QUEUE", "MISSED", "OPEN", "CALLED BACK", "GOT THROUGH", "RESOLVED", "MEDIAN TO CALLBACK"),
        "repeat": "Callers who tried more than once:",
        "none": "No missed calls in this period.",
        OPEN: "open",
        CALLED_BACK: "called back",
        GOT_THROUGH: "got through",
        "h": "h",
        "min": "min",
    },
    "ru": {
        "title": "Пропущенные звонки {since} – {until} ({zone})",
        "summary": "{calls}: открыто {open}, перезвонили {back}, дозвонились сами {through}.",
        "header": ("ВРЕМЯ", "ОЧЕРЕДЬ", "АБОНЕНТ", "СТАТУС", "ЧЕРЕЗ", "КТО", "РАЗГОВОР"),
        "queues": ("ОЧЕРЕДЬ", "ПРОПУЩЕНО", "ОТКРЫТО", "ПЕРЕЗВОНИЛИ", "ДОЗВОНИЛИСЬ", "РЕШЕНО", "МЕДИАНА ДО ЗВОНКА"),
        "repeat": "Звонили несколько раз:",
        "none": "За этот период пропущенных звонков нет.",
        OPEN: "открыт",
        CALLED_BACK: "перезвонили",
        GOT_THROUGH: "дозвонился",
        "h": "ч",
        "min": "мин",
    },
}


def _field(text: str, limit: int) -> str:
    """One table cell: one line, no control or bidi characters (a caller name is untrusted), capped."""
    return printable(clean(text, limit)).strip()


def status_of(call: CallRecord) -> str:
    """The call's resolution as the report names it: open, called-back or got-through."""
    return call.resolution or OPEN


def seconds_to_resolve(call: CallRecord) -> int | None:
    if not call.resolution or call.resolved_at is None or call.ended_at is None:
        return None
    return max(0, int((call.resolved_at - call.ended_at).total_seconds()))


def duration(seconds: int | None, language: str) -> str:
    """``14 min``, ``1 h 05 min``; ``-`` for none."""
    if seconds is None:
        return "-"
    words = _WORDS.get(language, _WORDS["en"])
    minutes = (seconds + 30) // 60
    if minutes < 60:
        return f"{minutes} {words['min']}"
    return f"{minutes // 60} {words['h']} {minutes % 60:02d} {words['min']}"


def talk(seconds: int | None) -> str:
    return "-" if seconds is None or seconds <= 0 else f"{seconds // 60}:{seconds % 60:02d}"


@dataclass(frozen=True)
class QueueLine:
    queue: str
    missed: int
    open: int
    called_back: int
    got_through: int
    median_to_callback: int | None  # seconds

    @property
    def share_resolved(self) -> float:
        return (self.called_back + self.got_through) / self.missed if self.missed else 0.0


def queue_lines(calls: Sequence[CallRecord]) -> list[QueueLine]:
    by_queue: dict[str, list[CallRecord]] = {}
    for call in calls:
        by_queue.setdefault(call.queue, []).append(call)
    lines = []
    for queue in sorted(by_queue):
        mine = by_queue[queue]
        waits = [s for c in mine if c.resolution == CALLED_BACK and (s := seconds_to_resolve(c)) is not None]
        lines.append(
            QueueLine(
                queue=queue,
                missed=len(mine),
                open=sum(1 for c in mine if not c.resolution),
                called_back=sum(1 for c in mine if c.resolution == CALLED_BACK),
                got_through=sum(1 for c in mine if c.resolution == GOT_THROUGH),
                median_to_callback=int(median(waits)) if waits else None,
            )
        )
    return lines


def repeat_callers(calls: Sequence[CallRecord]) -> list[tuple[str, list[CallRecord]]]:
    """(caller key, their calls oldest first) for every caller with two or more misses, most misses first."""
    groups: dict[str, list[CallRecord]] = {}
    for call in calls:
        found = call.caller_key or caller_key(call.caller_num)
        if found:
            groups.setdefault(found, []).append(call)
    repeated = [(k, sorted(v, key=lambda c: (c.ended_at or datetime.min.replace(tzinfo=timezone.utc))))
                for k, v in groups.items() if len(v) > 1]  # fmt: skip
    return sorted(repeated, key=lambda item: (-len(item[1]), item[0]))


def call_json(call: CallRecord) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.astimezone(timezone.utc).isoformat() if moment else None

    return {
        "callid": call.callid,
        "queue": call.queue,
        "caller_num": call.caller_num,
        "caller_name": call.caller_name,
        "caller_key": call.caller_key or caller_key(call.caller_num),
        "ended_at": iso(call.ended_at),
        "status": call.status,
        "resolution": status_of(call),
        "resolved_at": iso(call.resolved_at),
        "resolved_by": call.resolved_by,
        "seconds_to_resolve": seconds_to_resolve(call),
        "talk_seconds": call.talk_seconds,
        "followup": call.followup,
    }


def as_json(calls: Sequence[CallRecord], *, since: datetime, until: datetime, zone_name: str) -> dict[str, Any]:
    return {
        "since": since.astimezone(timezone.utc).isoformat(),
        "until": until.astimezone(timezone.utc).isoformat(),
        "timezone": zone_name,
        "calls": [call_json(c) for c in calls],
        "queues": [
            {
                "queue": q.queue,
                "missed": q.missed,
                "open": q.open,
                "called_back": q.called_back,
                "got_through": q.got_through,
                "share_resolved": round(q.share_resolved, 4),
                "median_seconds_to_callback": q.median_to_callback,
            }
            for q in queue_lines(calls)
        ],
        "repeat_callers": [
            {
                "caller_key": k,
                "calls": len(group),
                "callids": [c.callid for c in group],
                "open": sum(1 for c in group if not c.resolution),
            }
            for k, group in repeat_callers(calls)
        ],
    }


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [headers, *rows]]


def render_text(
    calls: Sequence[CallRecord], *, since: datetime, until: datetime, zone: tzinfo | None, zone_name: str,
    language: str,
) -> str:  # fmt: skip
    """The report as a person reads it, in a terminal or a plain-text mail."""
    language = language if language in _WORDS else "en"
    words = _WORDS[language]

    def local(moment: datetime | None) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else "-"

    lines = [words["title"].format(since=local(since), until=local(until), zone=zone_name), ""]
    if not calls:
        return "\n".join([*lines, words["none"]]) + "\n"
    lines.append(
        words["summary"].format(
            calls=plural.count(len(calls), "missed call", language),
            open=sum(1 for c in calls if not c.resolution),
            back=sum(1 for c in calls if c.resolution == CALLED_BACK),
            through=sum(1 for c in calls if c.resolution == GOT_THROUGH),
        )
    )
    lines.append("")
    rows = [
        [
            local(c.ended_at),
            _field(c.queue, 32),
            _field(describe_caller(c.caller_num, c.caller_name, language), 40),
            words[status_of(c)],
            duration(seconds_to_resolve(c), language),
            _field(c.resolved_by, 32) or "-",
            talk(c.talk_seconds),
        ]
        for c in calls
    ]
    lines += _table(words["header"], rows)
    lines.append("")
    lines += _table(
        words["queues"],
        [
            [_field(q.queue, 32), str(q.missed), str(q.open), str(q.called_back), str(q.got_through),
             f"{round(100 * q.share_resolved)}%", duration(q.median_to_callback, language)]
            for q in queue_lines(calls)
        ],
    )  # fmt: skip
    repeated = repeat_callers(calls)
    if repeated:
        lines += ["", words["repeat"]]
        for _, group in repeated:
            first = group[-1]
            who = _field(describe_caller(first.caller_num, first.caller_name, language), 60)
            states = ", ".join(words[status_of(c)] for c in group)
            lines.append(f"  {who}: {plural.count(len(group), 'call', language)} ({states})")
    return "\n".join(lines) + "\n"
