"""The ``missedcall-admin`` verbs other than ``recipients``: init, queues, test, log, retry, doctor, sweep."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Any

from missedcall.admin.common import (
    PROG,
    UserError,
    call_json,
    load_settings,
    local,
    open_store,
    print_json,
    print_table,
    printable,
    zone_label,
)
from missedcall.deliver import mail, notify
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.storage import Store


def cmd_init(args: argparse.Namespace) -> int:
    settings = load_settings()
    sender_line = ""
    with open_store(settings) as store:
        try:
            before, now = store.init()
            from missedcall.admin import sender

            if settings.is_freepbx:  # FreePBX's own From address, copied where the hook reads it
                sender_line = sender.refresh(settings, store)
            elif not settings.raw.get("MISSEDCALL_FROM", "").strip():  # this host's FQDN, found once
                sender_line = f"From: {sender.keep_host(settings)} (this host's name; MISSEDCALL_FROM sets another)"
        except StorageError as exc:
            raise UserError(str(exc)) from None
    if before is None:
        state = "created"
    elif before == now:
        state = "already current"
    else:
        state = f"migrated from version {before}"
    print(f"tables in {settings.db.describe()}: schema version {now} ({state})")
    if sender_line:
        print(sender_line)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    settings = load_settings()
    now = utcnow()
    call = CallRecord(
        callid=f"test-{int(now.timestamp())}",
        queue=args.queue,
        path=(args.queue,),
        caller_num=args.caller,
        caller_name=args.caller_name,
        reason=args.reason,
        wait_seconds=args.wait,
        position=1,
        entered_at=now - timedelta(seconds=args.wait),
        ended_at=now,
        source="test",
    )
    if getattr(args, "target", None):
        from missedcall.admin import cmd_target

        return cmd_target.run(args, settings, call, now)
    store: Store | None = None
    try:
        store = Store.open(settings.db, timeout=5.0, create=not args.dry_run)
    except StorageError as exc:
        if not args.dry_run:
            raise UserError(str(exc)) from None
        print(f"note: {exc}; recipients from the database are unknown", file=sys.stderr)
    try:
        try:
            the_plan = notify.plan(call, settings, store, now=now)
        except StorageError as exc:
            if not args.dry_run:
                raise UserError(str(exc)) from None
            print(f"note: {exc}; recipients from the database are unknown", file=sys.stderr)
            the_plan = notify.plan(call, settings, None, now=now)
        except mail.TemplateError as exc:
            raise UserError(str(exc)) from None
    finally:
        if store is not None:
            store.close()
    if the_plan.skip_reason:
        print(f"note: {the_plan.skip_reason}", file=sys.stderr)
        if not the_plan.recipients and the_plan.message is not None:
            print(f"      add one with: {PROG} recipients add {args.queue} you@example.com", file=sys.stderr)
    if args.dry_run:
        if the_plan.message is not None:
            sys.stdout.write(render_for_terminal(the_plan.message, raw=args.raw))
        print(f"\n(dry run: nothing sent, nothing recorded; transport would be {settings.transport})", file=sys.stderr)
        return 0
    if the_plan.message is None or not the_plan.recipients:
        raise UserError("nothing to send: " + the_plan.skip_reason)
    from missedcall.deliver import targets, transport

    mails = [a for a in the_plan.recipients if not targets.is_chat(a)]
    if mails:
        try:
            transport.send(the_plan.message, mails, settings, timeout=settings.smtp_timeout)
        except transport.TransportError as exc:
            raise UserError(f"mail not sent: {exc}") from None
        print(f"test notification for queue {args.queue} sent to {', '.join(mails)} via {settings.transport}")
    if len(mails) < len(the_plan.recipients):
        from missedcall.admin import cmd_target

        return cmd_target.each_chat(args, settings, call, now, [a for a in the_plan.recipients if a not in mails])
    return 0


def render_for_terminal(message: Any, *, raw: bool) -> str:
    """The message as a person reads it (decoded headers and body), or the exact bytes."""
    if raw:
        return message.as_bytes().decode("ascii", "replace")
    # The headers as set (the MIME structure is --raw's business); the body as the email package reads
    # what missedcall.deliver.mime wrote, the way a mail reader would.
    lines = [f"{name}: {value}" for name, value in message.items()]
    parsed = message.to_email()
    text = parsed.get_body(("plain",)) or parsed  # the HTML alternative is shown by --raw
    return "\n".join(lines) + "\n\n" + text.get_content()


def cmd_log(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.since and args.until and args.until <= args.since:
        raise UserError("--until must be later than --since")
    with open_store(settings, create=False) as store:  # read-only: never creates the database
        try:
            calls = store.calls(
                since=args.since, until=args.until, queue=args.queue, status=args.status, limit=args.limit
            )
        except StorageError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        print_json([call_json(c) for c in calls])
        return 0
    if args.csv:
        _print_csv([call_json(c) for c in calls])
        return 0
    if not calls:
        filtered = args.since or args.until or args.queue or args.status
        print("no missed calls recorded" + (" for that filter" if filtered else ""))
        return 0
    zone = notify.zone(settings)  # the zone the mails show
    print_table(
        [f"TIME ({zone_label(zone)})", "QUEUE", "CALLER", "REASON", "WAIT", "STATUS", "DETAIL"],
        [
            [
                local(c.ended_at or c.entered_at, zone),
                " > ".join(c.path) if len(c.path) > 1 else c.queue,
                printable(mail.describe_caller(c.caller_num, c.caller_name, "en"), 40),
                c.reason,
                "-" if c.wait_seconds is None else f"{c.wait_seconds}s",
                c.status,
                printable(c.last_error or ", ".join(c.recipients), 60),
            ]
            for c in calls
        ],
    )
    return 0


def _print_csv(rows: list[dict[str, Any]]) -> None:
    """The --json objects as CSV rows, same keys and values; lists joined with a space."""
    import csv

    if not rows:
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(rows[0].keys())
    for row in rows:
        writer.writerow(
            " ".join(str(v) for v in value) if isinstance(value, list) else "" if value is None else value
            for value in row.values()
        )


def cmd_retry(args: argparse.Namespace) -> int:
    from missedcall.deliver import retry

    settings = load_settings()
    with open_store(settings) as store:
        try:
            report = retry.run(store, settings, failed=args.failed)
        except StorageError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        from dataclasses import asdict

        print_json([{**asdict(report), "summary": report.summary()}])
    else:
        print(report.summary())
    return 1 if report.all_failed() else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from missedcall.admin import doctor

    return doctor.run(args.state, as_json=args.json)


def cmd_sweep(args: argparse.Namespace) -> int:
    from missedcall.detect import sweep

    settings = load_settings()
    try:
        return sweep.run(
            settings,
            grace=args.grace,
            from_start=args.from_start,
            dry_run=args.dry_run,
            follow=args.follow,
            interval=args.interval,
            verbose=args.verbose,
            record_only=args.record_only,
            as_json=args.json,
        )
    except sweep.SweepError as exc:
        raise UserError(str(exc)) from None
