"""``missedcall-admin``: the parser, the dispatch to each verb, and the one-line error (docs/design.md).

Exit 0 on success, 1 on failure, 2 on usage errors; every failure is one line
on stderr. Listings take ``--json``: an array of objects keyed by the table's
column names, times in ISO 8601 with offset.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from missedcall import __version__, config
from missedcall.admin import cmd_hours, cmd_import, cmd_queues, cmd_report, cmd_resolve, cmd_serve
from missedcall.admin.args import bounded_int, name_arg, parse_since, queue_arg, stored_email_arg, target_arg
from missedcall.admin.cmd_recipients import cmd_recipients
from missedcall.admin.commands import cmd_doctor, cmd_init, cmd_log, cmd_retry, cmd_sweep, cmd_test
from missedcall.admin.common import PROG, UserError, printable, text_arg
from missedcall.record.model import CALL_STATUSES

__all__ = ["PROG", "UserError", "build_parser", "main"]

QUEUE_HELP = "the queue's number (or name)"
CONFIG_HELP = (
    "configuration file (default: $MISSEDCALL_CONFIG or /etc/missedcall/missedcall.env); before or after the verb"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line and exit 2, as docs/design.md asks (argparse would print the whole usage too).
        # argparse quotes the offending value in full: keep the line short and printable.
        self.exit(2, f"{self.prog}: error: {printable(text_arg(message), 300)} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Manage missedcall: who gets told about missed queue calls, and what was sent.",
        epilog="Configuration: /etc/missedcall/missedcall.env (or MISSEDCALL_CONFIG); see the README.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
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
    one = actions.add_parser(
        "add",
        help="add EMAIL (or a chat TARGET) as a recipient of QUEUE ('*' = every queue)",
        description="EMAIL is an address or a target: mailto:ADDRESS, telegram:CHAT_ID, slack:URL, mattermost:URL,"
        " teams:WORKFLOW_URL or webhook:URL (docs/chat.md); '-' reads it from stdin, keeping a webhook URL (a secret)"
        " out of argv. URLs are stored, and shown cut to host and first segment.",
    )
    one.add_argument("queue", metavar="QUEUE", type=queue_arg, help=QUEUE_HELP + "; '*' = a copy of every queue's mail")
    one.add_argument("email", metavar="EMAIL", type=target_arg, help="an e-mail address or a chat target")
    one.add_argument("--name", type=name_arg, default="", help="a label for the person")
    one = actions.add_parser("remove", help="remove EMAIL (or a chat target, as given to add or as listed) from QUEUE")
    one.add_argument("queue", metavar="QUEUE", type=queue_arg, help=QUEUE_HELP + " ('*' for a '*' row)")
    # Not email_arg: a row that an older version let in (and doctor now names) must be removable.
    one.add_argument("email", metavar="EMAIL", type=stored_email_arg, help="the address exactly as 'list' shows it")
    one = actions.add_parser(
        "import",
        help="add rows from a CSV file: queue,email[,name] ('-' = stdin); all rows or none",
        description="Rows of queue,email[,name]; ',' ';' or tab between fields (judged on the first row, so"
        " Excel's semicolon CSV works), UTF-8 or Windows-1251; '#' lines and a 'queue,...' header are skipped."
        " One bad row refuses the whole file, naming its line.",
    )
    one.add_argument("csv", metavar="CSV", help="the CSV file, or '-' for standard input")
    one = actions.add_parser("export", help="print all recipients as CSV")
    one.set_defaults(queue=None)
    sub.set_defaults(func=cmd_recipients)

    sub = verbs.add_parser(
        "import-script",
        help="import the queue -> address rules of a hand-written hook script (the article's noanswer.sh)",
        description="Read (never run) a bash hook of the article's shape: a case or if/elif on the queue number"
        " choosing addresses for mail/mutt/sendmail. Prints every row it imports; --dry-run changes nothing.",
    )
    cmd_import.add_arguments(sub)
    sub.set_defaults(func=cmd_import.cmd_import_script)

    sub = verbs.add_parser(
        "queues", help="list queues with their effective settings, or 'queues set QUEUE ...' to change one"
    )
    queue_actions = cmd_queues.add_arguments(sub, _Parser)
    sub.set_defaults(func=cmd_queues.cmd_queues)

    sub = verbs.add_parser(
        "hours", help="business hours per queue: list them, or 'hours set QUEUE SCHEDULE' / 'hours clear QUEUE'"
    )
    hours_actions = cmd_hours.add_arguments(sub, _Parser)
    sub.set_defaults(func=cmd_hours.cmd_hours)

    sub = verbs.add_parser("test", help="send (or, with --dry-run, print) a sample notification for QUEUE")
    sub.add_argument("queue", metavar="QUEUE", type=queue_arg, help=QUEUE_HELP + ": its recipients, label, language")
    sub.add_argument("--caller", type=text_arg, default="5551234", help="caller number to show (default 5551234)")
    sub.add_argument("--caller-name", type=text_arg, default="Test Caller", help="caller name to show")
    sub.add_argument("--reason", default="ABANDON", choices=config.REASONS, help="reason to show (default ABANDON)")
    sub.add_argument("--wait", type=bounded_int(0, 86400), default=42, help="seconds waited to show (default 42)")
    sub.add_argument(
        "--target",
        type=text_arg,
        help="send only to this target: an address, telegram:ID, slack:URL ..., a key as 'recipients list' shows"
        " it, or '-' to read it from stdin (docs/chat.md)",
    )
    sub.add_argument("--dry-run", action="store_true", help="print the mail instead of sending it")
    sub.add_argument("--raw", action="store_true", help="with --dry-run: print the exact bytes (MIME-encoded)")
    sub.set_defaults(func=cmd_test)

    sub = verbs.add_parser("log", help="list recorded missed calls, newest first")
    sub.add_argument("--since", type=parse_since, help="from then on: 30m, 24h, 7d ago or YYYY-MM-DD (local midnight)")
    sub.add_argument(
        "--until", type=parse_since, help="before then: 30m, 24h, 7d ago or YYYY-MM-DD (that day not included)"
    )
    sub.add_argument("--queue", type=queue_arg, help="only calls that ended in this queue")
    sub.add_argument("--status", choices=CALL_STATUSES, help="only calls with this status")
    sub.add_argument("--limit", type=bounded_int(1, 1_000_000), default=50, help="at most N calls (default 50)")
    shape = sub.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="JSON: one object per call, times in ISO 8601 (UTC)")
    shape.add_argument("--csv", action="store_true", help="CSV with the --json keys as its header row")
    sub.set_defaults(func=cmd_log)

    sub = verbs.add_parser(
        "retry",
        help="cron's minute run: record spooled calls, resend pending ones, send due digests, find callbacks,"
        " send follow-ups",
    )
    sub.add_argument(
        "--failed",
        action="store_true",
        help="first queue failed calls, digests and follow-ups again (after fixing the relay)",
    )
    sub.add_argument("--json", action="store_true", help="the run's counts as JSON instead of the summary line")
    sub.set_defaults(func=cmd_retry)

    sub = verbs.add_parser("resolve", help="find callbacks and later answered calls for open misses (retry does too)")
    cmd_resolve.add_arguments(sub)
    sub.set_defaults(func=cmd_resolve.cmd_resolve)

    sub = verbs.add_parser("report", help="how missed calls ended: per call, per queue, repeat callers; or --mail it")
    cmd_report.add_arguments(sub)
    sub.set_defaults(func=cmd_report.cmd_report)

    from missedcall.detect import sweep

    sub = verbs.add_parser("sweep", help="record missed calls the hook did not see, from queue_log (cron or --follow)")
    sweep.add_arguments(sub)
    sub.set_defaults(func=cmd_sweep)

    sub = verbs.add_parser(
        "serve",
        help="run the FastAGI service in the foreground (systemd starts it; see docs/fastagi.md)",
        description="Answer AGI(agi://127.0.0.1:4574/missed,QUEUE[,REASON]) like the process hook, from one"
        " process: the channel is released once the call is recorded, the mail follows. SIGTERM stops it"
        " gracefully, SIGHUP re-reads the configuration.",
    )
    cmd_serve.add_arguments(sub)
    sub.set_defaults(func=cmd_serve.cmd_serve)

    sub = verbs.add_parser("doctor", help="check the installation: one OK/WARN/FAIL line per check, exit 1 on FAIL")
    sub.add_argument(
        "--state", metavar="FILE", help="install.sh's record of paths (default: install.state beside the config file)"
    )
    sub.add_argument("--json", action="store_true", help="one object per check: status, check, detail, fix")
    sub.set_defaults(func=cmd_doctor)

    # --config after the verb too (`missedcall-admin log --config FILE`): SUPPRESS keeps a value given
    # before the verb when none is given after it.
    for verb in verbs.choices.values():
        groups = {"recipients": [actions], "queues": [queue_actions], "hours": [hours_actions]}
        nested = groups.get(verb.prog.split()[-1], [])
        nested = [group.choices.values() for group in nested]
        for one in [verb, *(p for group in nested for p in group)]:
            one.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    before = os.environ.get("MISSEDCALL_CONFIG")
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
    finally:
        # --config is for this command only: a caller that runs main() in-process (tests,
        # scripts) must not run its next command on it.
        if args.config:
            if before is None:
                os.environ.pop("MISSEDCALL_CONFIG", None)
            else:
                os.environ["MISSEDCALL_CONFIG"] = before


if __name__ == "__main__":
    sys.exit(main())
