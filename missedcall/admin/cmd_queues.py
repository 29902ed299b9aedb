"""``missedcall-admin queues``: every queue's effective settings, and ``queues set`` to change one queue's.

A queue's own value (``missedcall_queues``) beats FreePBX's description (for
the label) and the global settings (``MISSEDCALL_LANGUAGE``,
``MISSEDCALL_MIN_WAIT``); the listing says where each value comes from, so an
admin never wonders why a queue behaves as it does.
"""

from __future__ import annotations

import argparse
from typing import Any

from missedcall.admin.args import bounded_int, name_arg, queue_arg
from missedcall.admin.common import UserError, load_settings, open_store, print_json, print_table, printable
from missedcall.record import queues
from missedcall.record.db import StorageError

CLEARABLE = ("label", "language", "min_wait", "enabled", "all")


def add_arguments(sub: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> Any:
    """The options and actions of ``queues``; returns the actions (for options every parser takes)."""
    sub.add_argument("--json", action="store_true", help="JSON: each queue's values and where each comes from")
    actions = sub.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    one = actions.add_parser("list", help="each queue's label, language, minimum wait, on/off and recipients")
    one.add_argument(  # SUPPRESS: a --json before 'list' stays
        "--json", action="store_true", default=argparse.SUPPRESS, help="JSON: each queue's values and sources"
    )
    one = actions.add_parser(
        "set",
        help="set QUEUE's own label, language, minimum wait or on/off (the rest stays as the global settings say)",
        description="Per-queue values beat FreePBX's queue description and the global settings."
        " Example: queues set 600 --label Support --language ru --min-wait 5 --off",
    )
    one.add_argument("queue", metavar="QUEUE", type=queue_arg, help="the queue's number (or name)")
    one.add_argument("--label", type=name_arg, help="the name mails show for the queue (instead of FreePBX's)")
    one.add_argument("--language", choices=queues.LANGUAGES, help="the language of this queue's mails")
    one.add_argument(
        "--min-wait", type=bounded_int(0, queues.MIN_WAIT_MAX), help="seconds: shorter abandons are not mailed"
    )
    switch = one.add_mutually_exclusive_group()
    switch.add_argument("--off", action="store_true", help="record this queue's misses but mail nobody")
    switch.add_argument("--on", action="store_true", help="mail this queue's misses again")
    one.add_argument(
        "--clear",
        action="append",
        choices=CLEARABLE,
        default=[],
        help="back to the global value (repeat for several; 'all' for every one)",
    )
    return actions


def cmd_queues(args: argparse.Namespace) -> int:
    settings = load_settings()
    if getattr(args, "action", None) == "set":
        return _set(args, settings)
    with open_store(settings, create=False) as store:  # read-only: never creates the database
        try:
            counts: dict[str, int] = {}
            for row in store.recipients():
                counts[row.queue] = counts.get(row.queue, 0) + 1
            found = queues.listing(store, list(counts), language=settings.language, min_wait=settings.min_wait)
        except StorageError as exc:
            raise UserError(str(exc)) from None
    listing = [_as_json(q, counts.get(q.queue, 0)) for q in found]
    if args.json:
        print_json(listing)
    elif not listing:
        print("no queues known: no FreePBX queues_config table, no recipients and no queue settings yet")
    else:
        fallback = ", ".join(settings.fallback_to) or "none"
        print_table(
            ["QUEUE", "LABEL", "LANGUAGE", "MIN WAIT", "MAILS", "RECIPIENTS"],
            [
                [
                    q.queue,
                    _from(printable(q.label) or "-", q.sources["label"]),
                    _from(q.language, q.sources["language"]),
                    _from(f"{q.min_wait} s", q.sources["min_wait"]),
                    _from("on" if q.enabled else "OFF", q.sources["enabled"]),
                    str(counts[q.queue]) if counts.get(q.queue) else f"0 (fallback: {fallback})",
                ]
                for q in found
            ],
        )
    return 0


def _from(value: str, source: str) -> str:
    return value if source == "global" else f"{value} ({source})"


def _as_json(q: queues.QueueSettings, recipients: int) -> dict[str, Any]:
    return {
        "queue": q.queue,
        "label": q.label,
        "language": q.language,
        "min_wait": q.min_wait,
        "enabled": q.enabled,
        "recipients": recipients,
        "sources": dict(q.sources),
    }


def _set(args: argparse.Namespace, settings: Any) -> int:
    changes: dict[str, Any] = {}
    for column in CLEARABLE[:-1] if "all" in args.clear else args.clear:  # hours are `hours clear`'s
        changes[column] = None
    given = {"label": args.label, "language": args.language, "min_wait": args.min_wait}
    for column, value in given.items():
        if value is not None:
            if column in changes:
                raise UserError(f"--{column.replace('_', '-')} and --clear {column} contradict each other")
            changes[column] = value
    if args.off or args.on:
        if "enabled" in changes:
            raise UserError("--on/--off and --clear enabled contradict each other")
        changes["enabled"] = 1 if args.on else 0
    if not changes:
        raise UserError("nothing to set: give --label, --language, --min-wait, --on, --off or --clear")
    if args.queue == "*":
        raise UserError("'*' is not a queue: per-queue settings name one queue (the global ones are in the config)")
    with open_store(settings) as store:
        try:
            queues.update(store, args.queue, changes)
            now = queues.effective(store, args.queue, language=settings.language, min_wait=settings.min_wait)
        except StorageError as exc:
            raise UserError(str(exc)) from None
    shown = ", ".join(
        f"{column}={'global' if value is None else value}" for column, value in changes.items()
    )
    print(f"queue {args.queue}: {shown}")
    print(
        f"now: label {now.label or '-'!r}, language {now.language}, minimum wait {now.min_wait} s,"
        f" mails {'on' if now.enabled else 'OFF'}"
    )
    return 0
