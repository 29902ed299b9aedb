"""``missedcall-admin hours``: business hours per queue (or ``*``), and where each queue's come from.

A queue's own schedule beats FreePBX's Time Groups (read from the Time
Condition an inbound route passes before the queue), which beat the ``*``
schedule; a queue with none of them is always open. What happens to a miss
outside the hours is MISSEDCALL_AFTER_HOURS's (missedcall.deliver.afterhours).
"""

from __future__ import annotations

import argparse
from typing import Any

from missedcall.admin.args import queue_arg
from missedcall.admin.common import UserError, load_settings, open_store, print_json, print_table, printable
from missedcall.deliver import hours
from missedcall.record import queues
from missedcall.record.db import StorageError
from missedcall.record.schema import SCHEMA_VERSION

EXAMPLE = "hours set 600 'mon-fri 09:00-18:00, sat 10:00-14:00' --holidays 01-01,01-07,2026-12-31"


def add_arguments(sub: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> Any:
    """The options and actions of ``hours``; returns the actions (for options every parser takes)."""
    sub.add_argument("--json", action="store_true", help="JSON: each queue's schedule and where it comes from")
    actions = sub.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    one = actions.add_parser("list", help="each queue's business hours and where they come from")
    one.add_argument(  # SUPPRESS: a --json before 'list' stays
        "--json", action="store_true", default=argparse.SUPPRESS, help="JSON: each queue's schedule and source"
    )
    one = actions.add_parser(
        "set",
        help="set QUEUE's business hours ('*' for every queue without its own)",
        description="Days mon..sun or пн..вс, single or ranges, then a time range; rules separated by ','"
        " or ';'. FreePBX's Time Group form (09:00-18:00|mon-fri|*|*) works too. Example: " + EXAMPLE,
    )
    one.add_argument("queue", metavar="QUEUE", type=queue_arg, help="the queue number, or '*' for the default")
    one.add_argument("schedule", metavar="SCHEDULE", help="e.g. 'mon-fri 09:00-18:00, sat 10:00-14:00'")
    one.add_argument(
        "--holidays", default="", metavar="DATES", help="closed all day: 2026-12-31 or yearly 01-07, comma-separated"
    )
    one = actions.add_parser("clear", help="remove QUEUE's own hours (then FreePBX's or the '*' hours apply)")
    one.add_argument("queue", metavar="QUEUE", type=queue_arg, help="the queue number, or '*'")
    return actions


def cmd_hours(args: argparse.Namespace) -> int:
    settings = load_settings()
    action = getattr(args, "action", None)
    if action == "set":
        return _set(args, settings)
    if action == "clear":
        return _change(settings, args.queue, None, f"queue {args.queue}: own hours cleared")
    with open_store(settings, create=False) as store:  # read-only: never creates the database
        try:
            names = sorted({r.queue for r in store.recipients()})
            found = queues.listing(store, names, language=settings.language, min_wait=settings.min_wait)
            rows = [_effective(store, q, freepbx=settings.is_freepbx) for q in found]
        except StorageError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        print_json(rows)
    elif not rows:
        print("no queues known: no FreePBX queues, no recipients and no hours set yet")
    else:
        print_table(
            ["QUEUE", "HOURS", "HOLIDAYS", "FROM"],
            [
                [r["queue"], printable(r["schedule"], 200) or "always open", printable(r["holidays"], 200) or "-",
                 r["source"]]
                for r in rows
            ],
        )  # fmt: skip
    return 0


def _effective(store: Any, q: queues.QueueSettings, *, freepbx: bool) -> dict[str, Any]:
    """One queue's schedule as the notifier would apply it, and its source: queue, freepbx, * or none."""
    source = q.hours_source
    rules = queues.freepbx_hours(store, q.queue) if freepbx and source != "queue" and q.queue != "*" else None
    if rules:
        return {"queue": q.queue, "schedule": "; ".join(rules), "holidays": "", "source": "freepbx"}
    schedule, holidays = queues.split_hours(q.hours)
    return {
        "queue": q.queue,
        "schedule": schedule,
        "holidays": holidays,
        "source": source if schedule and source != "global" else "none",
    }


def _set(args: argparse.Namespace, settings: Any) -> int:
    schedule, holidays = args.schedule.strip(), args.holidays.strip()
    for what, value in (("schedule", schedule), ("--holidays", holidays)):
        if not value.isprintable():
            raise UserError(f"{what}: control characters (a line break?) are not allowed")
    try:
        hours.parse_schedule(schedule, holidays)
    except hours.HoursError as exc:
        raise UserError(f"{printable(str(exc), 300)} (example: {EXAMPLE})") from None
    stored = queues.join_hours(schedule, holidays)
    if len(stored) > queues.HOURS_MAX:
        raise UserError(f"schedule and holidays are longer than {queues.HOURS_MAX} characters")
    shown = f"{schedule}" + (f", closed on {holidays}" if holidays else "")
    return _change(settings, args.queue, stored, f"queue {args.queue}: hours {printable(shown, 300)}")


def _change(settings: Any, queue: str, stored: str | None, said: str) -> int:
    with open_store(settings) as store:
        try:
            if (store.schema_version() or 0) < SCHEMA_VERSION:
                store.init()  # a database from before business hours: add the column first
            queues.update(store, queue, {"hours": stored})
        except StorageError as exc:
            raise UserError(str(exc)) from None
    print(said)
    return 0
