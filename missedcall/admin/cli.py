"""``missedcall-admin``: a thin command line over the library (DESIGN §7).

Exit 0 on success, 1 on failure, 2 on usage errors; every failure is one line
on stderr. Listings take ``--json``: an array of objects keyed by the table's
column names, times in ISO 8601 with offset.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from missedcall import __version__, config
from missedcall.deliver import mail, notify, recipients
from missedcall.record import model
from missedcall.record.model import CALL_STATUSES, CallRecord, Recipient, utcnow
from missedcall.record.storage import StorageError, Store

PROG = "missedcall-admin"
CSV_MAX = 10 << 20  # bytes of a recipients CSV


class UserError(Exception):
    """A failure the user can act on: printed as one line, exit 1."""


# --- helpers ----------------------------------------------------------------


def load_settings() -> config.Settings:
    try:
        return config.load_settings()
    except config.ConfigError as exc:
        raise UserError(f"configuration: {exc}") from None


def open_store(settings: config.Settings, *, create: bool = True) -> Store:
    try:
        return Store.open(settings.db, timeout=5.0, create=create)
    except StorageError as exc:
        raise UserError(str(exc)) from None


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat() if moment else None


def local(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def call_json(call: CallRecord) -> dict[str, Any]:
    return model.to_dict(call)


def recipient_json(row: Recipient) -> dict[str, Any]:
    return {"id": row.id, "queue": row.queue, "email": row.email, "name": row.name, "created_at": iso(row.created_at)}


def print_json(rows: list[dict[str, Any]]) -> None:
    json.dump(rows, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    for row in [headers, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def printable(text: str, limit: int = 40) -> str:
    return mail.clean(text, limit)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``24h``, ``7d`` ago, or a local date ``YYYY-MM-DD`` (from its midnight)."""
    now = now or datetime.now(timezone.utc)
    match = re.fullmatch(r"(\d{1,6})([mhd])", text.strip())
    if match:
        amount = int(match.group(1))
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now - timedelta(**{unit: amount})
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"--since takes 30m, 24h, 7d or YYYY-MM-DD, not {text[:40]!r}") from None
    return day.astimezone()  # local midnight


def queue_arg(text: str) -> str:
    if not recipients.valid_queue(text):
        raise argparse.ArgumentTypeError(
            f"{printable(text)!r} is not a queue (a queue number or name of letters, digits, '-', '_' or '.', or '*')"
        )
    return text


def email_arg(text: str) -> str:
    text = text.strip()
    if not config.is_address(text):
        raise argparse.ArgumentTypeError(
            f"{printable(text, 60)!r} is not a plain e-mail address (like ops@example.com)"
        )
    return text


def text_arg(text: str) -> str:
    """Free text from the command line: bytes that are not UTF-8 (which Python keeps as lone
    surrogates) become U+FFFD, so they cannot crash an encoder later on."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def name_arg(text: str) -> str:
    cleaned = mail.clean(text_arg(text), 128)
    return cleaned


def bounded_int(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{printable(text_arg(text))!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


# --- verbs ------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    settings = load_settings()
    with open_store(settings) as store:
        try:
            before, now = store.init()
        except StorageError as exc:
            raise UserError(str(exc)) from None
    if before is None:
        state = "created"
    elif before == now:
        state = "already current"
    else:
        state = f"migrated from version {before}"
    print(f"tables in {settings.db.describe()}: schema version {now} ({state})")
    return 0


def cmd_recipients(args: argparse.Namespace) -> int:
    settings = load_settings()
    with open_store(settings) as store:
        try:
            done = _recipients(args, store)
            if args.action in ("add", "remove", "import"):
                # The AGI mails from this copy when it cannot reach the database.
                from missedcall.deliver import lastknown

                lastknown.refresh(store, settings.spool_dir)
            return done
        except StorageError as exc:
            raise UserError(str(exc)) from None


def _recipients(args: argparse.Namespace, store: Store) -> int:
    action = args.action
    if action == "add":
        added = store.add_recipient(args.queue, args.email, args.name or "")
        print(f"{'added' if added else 'already there:'} {args.email} for queue {args.queue}")
        return 0
    if action == "remove":
        if not store.remove_recipient(args.queue, args.email):
            raise UserError(f"{args.email} is not a recipient of queue {args.queue}")
        print(f"removed {args.email} from queue {args.queue}")
        return 0
    if action == "import":
        return _import_csv(args.csv, store)
    rows = store.recipients(args.queue)
    if action == "export":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["queue", "email", "name"])
        for row in rows:
            writer.writerow([row.queue, row.email, row.name])
        return 0
    if args.json:
        print_json([recipient_json(r) for r in rows])
    elif not rows:
        print("no recipients yet; add one with: missedcall-admin recipients add QUEUE EMAIL")
    else:
        print_table(["QUEUE", "EMAIL", "NAME"], [[r.queue, r.email, printable(r.name)] for r in rows])
    return 0


def _import_csv(path: str, store: Store) -> int:
    """All rows or none: a file with one bad row changes nothing and says which row."""
    # Read whole but bounded (a path to /dev/zero, or a NUL stream on stdin, has no end of line).
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(CSV_MAX + 1)
        else:
            with open(path, "rb") as binary:
                raw = binary.read(CSV_MAX + 1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > CSV_MAX:
        raise UserError(f"{path}: larger than {CSV_MAX >> 20} MB, not a recipients list")
    try:
        handle = io.StringIO(raw.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 CSV file") from None
    wanted: list[tuple[str, str, str]] = []
    with handle:
        try:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                if number == 1 and row[0].strip().lower() == "queue":
                    continue  # header line
                if len(row) < 2:
                    raise UserError(f"{path}:{number}: expected queue,email[,name]")
                queue, email = row[0].strip(), row[1].strip()
                if not recipients.valid_queue(queue):
                    raise UserError(f"{path}:{number}: {printable(queue)!r} is not a queue")
                if not config.is_address(email):
                    raise UserError(f"{path}:{number}: {printable(email, 60)!r} is not a plain e-mail address")
                wanted.append((queue, email, mail.clean(row[2], 128) if len(row) > 2 else ""))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"{path}: not a UTF-8 CSV file ({exc.__class__.__name__})") from None
    added = sum(1 for queue, email, name in wanted if store.add_recipient(queue, email, name))
    print(f"imported {added} new recipient(s), {len(wanted) - added} already present")
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    settings = load_settings()
    with open_store(settings) as store:
        try:
            labels = store.freepbx_queues() or {}
            rows = store.recipients()
        except StorageError as exc:
            raise UserError(str(exc)) from None
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.queue] = counts.get(row.queue, 0) + 1
    names = sorted(set(labels) | set(counts), key=lambda q: (q == "*", q.zfill(12)))
    listing = [{"queue": q, "label": labels.get(q, ""), "recipients": counts.get(q, 0)} for q in names]
    if args.json:
        print_json(listing)
    elif not listing:
        print("no queues known: no FreePBX queues_config table and no recipients yet")
    else:
        fallback = ", ".join(settings.fallback_to) or "none"
        print_table(
            ["QUEUE", "LABEL", "RECIPIENTS"],
            [
                [
                    x["queue"],
                    printable(x["label"]),
                    str(x["recipients"]) if x["recipients"] else f"0 (fallback: {fallback})",
                ]
                for x in listing
            ],
        )
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
    from missedcall.deliver import transport

    try:
        transport.send(the_plan.message, the_plan.recipients, settings, timeout=settings.smtp_timeout)
    except transport.TransportError as exc:
        raise UserError(f"mail not sent: {exc}") from None
    print(f"test notification for queue {args.queue} sent to {', '.join(the_plan.recipients)} via {settings.transport}")
    return 0


def render_for_terminal(message: Any, *, raw: bool) -> str:
    """The message as a person reads it (decoded headers and body), or the exact bytes."""
    if raw:
        return message.as_bytes().decode("ascii", "replace")
    lines = [f"{name}: {value}" for name, value in message.items()]
    return "\n".join(lines) + "\n\n" + message.get_content()


def cmd_log(args: argparse.Namespace) -> int:
    settings = load_settings()
    with open_store(settings) as store:
        try:
            calls = store.calls(since=args.since, queue=args.queue, status=args.status, limit=args.limit)
        except StorageError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        print_json([call_json(c) for c in calls])
        return 0
    if not calls:
        print("no missed calls recorded" + (" for that filter" if (args.since or args.queue or args.status) else ""))
        return 0
    print_table(
        ["TIME", "QUEUE", "CALLER", "REASON", "WAIT", "STATUS", "DETAIL"],
        [
            [
                local(c.ended_at or c.entered_at),
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


def cmd_retry(args: argparse.Namespace) -> int:
    from missedcall.deliver import retry

    settings = load_settings()
    with open_store(settings) as store:
        try:
            report = retry.run(store, settings, failed=args.failed)
        except StorageError as exc:
            raise UserError(str(exc)) from None
    print(report.summary())
    return 1 if report.all_failed() else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from missedcall.admin import doctor

    return doctor.run(args.state)


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
        )
    except sweep.SweepError as exc:
        raise UserError(str(exc)) from None


# --- parser -----------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line and exit 2, as DESIGN §7 asks (argparse would print the whole usage too).
        # argparse quotes the offending value in full: keep the line short and printable.
        self.exit(2, f"{self.prog}: error: {printable(text_arg(message), 300)} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Manage missedcall: who gets told about missed queue calls, and what was sent.",
        epilog="Configuration: /etc/missedcall/missedcall.env (or MISSEDCALL_CONFIG); see the README.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: $MISSEDCALL_CONFIG or /etc/missedcall/missedcall.env)",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True

    sub = verbs.add_parser("init", help="create or migrate the tables (safe to run again)")
    sub.set_defaults(func=cmd_init)

    sub = verbs.add_parser("recipients", help="list, add, remove, import or export who gets mailed")
    actions = sub.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    one = actions.add_parser("list", help="list recipients")
    one.add_argument("--queue", type=queue_arg, help="only this queue")
    one.add_argument("--json", action="store_true", help="JSON output")
    one = actions.add_parser("add", help="add EMAIL as a recipient of QUEUE ('*' = every queue)")
    one.add_argument("queue", metavar="QUEUE", type=queue_arg)
    one.add_argument("email", metavar="EMAIL", type=email_arg)
    one.add_argument("--name", type=name_arg, default="", help="a label for the person")
    one = actions.add_parser("remove", help="remove EMAIL from QUEUE")
    one.add_argument("queue", metavar="QUEUE", type=queue_arg)
    one.add_argument("email", metavar="EMAIL", type=email_arg)
    one = actions.add_parser("import", help="add rows from a CSV file: queue,email[,name] ('-' = stdin)")
    one.add_argument("csv", metavar="CSV")
    one = actions.add_parser("export", help="print all recipients as CSV")
    one.set_defaults(queue=None)
    sub.set_defaults(func=cmd_recipients)

    sub = verbs.add_parser("queues", help="list queues (FreePBX's and those with recipients)")
    sub.add_argument("--json", action="store_true", help="JSON output")
    sub.set_defaults(func=cmd_queues)

    sub = verbs.add_parser("test", help="send (or, with --dry-run, print) a sample notification for QUEUE")
    sub.add_argument("queue", metavar="QUEUE", type=queue_arg)
    sub.add_argument("--caller", type=text_arg, default="5551234", help="caller number to show (default 5551234)")
    sub.add_argument("--caller-name", type=text_arg, default="Test Caller", help="caller name to show")
    sub.add_argument("--reason", default="ABANDON", choices=config.REASONS, help="reason to show (default ABANDON)")
    sub.add_argument("--wait", type=bounded_int(0, 86400), default=42, help="seconds waited to show (default 42)")
    sub.add_argument("--dry-run", action="store_true", help="print the mail instead of sending it")
    sub.add_argument("--raw", action="store_true", help="with --dry-run: print the exact bytes (MIME-encoded)")
    sub.set_defaults(func=cmd_test)

    sub = verbs.add_parser("log", help="list recorded missed calls, newest first")
    sub.add_argument("--since", type=parse_since, help="30m, 24h, 7d or YYYY-MM-DD")
    sub.add_argument("--queue", type=queue_arg)
    sub.add_argument("--status", choices=CALL_STATUSES)
    sub.add_argument("--limit", type=bounded_int(1, 1_000_000), default=50, help="at most N calls (default 50)")
    sub.add_argument("--json", action="store_true", help="JSON output")
    sub.set_defaults(func=cmd_log)

    sub = verbs.add_parser(
        "retry", help="record spooled calls, resend pending ones whose back-off is over, send due flood digests"
    )
    sub.add_argument(
        "--failed", action="store_true", help="first queue failed calls and digests again (after fixing the relay)"
    )
    sub.set_defaults(func=cmd_retry)

    from missedcall.detect import sweep

    sub = verbs.add_parser("sweep", help="record missed calls the hook did not see, from queue_log (cron or --follow)")
    sweep.add_arguments(sub)
    sub.set_defaults(func=cmd_sweep)

    sub = verbs.add_parser("doctor", help="check the installation: one OK/WARN/FAIL line per check, exit 1 on FAIL")
    sub.add_argument(
        "--state", metavar="FILE", help="install.sh's record of paths (default: install.state beside the config file)"
    )
    sub.set_defaults(func=cmd_doctor)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        os.environ["MISSEDCALL_CONFIG"] = args.config
    try:
        return int(args.func(args))
    except UserError as exc:
        # One line, whatever the message quotes (a path, a value from the command line).
        print(f"{PROG}: error: {printable(text_arg(str(exc)), 500)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
