"""``missedcall-admin report``: how each missed call ended, per queue and per repeat caller; printed or mailed.

``--mail`` sends each recipient one plain-text mail covering the queues they
get alerts for (an address on ``*`` gets every queue in one mail, not one per
queue). One address that fails is logged and the others still get theirs.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta, tzinfo

from missedcall import log
from missedcall.admin.args import parse_since, queue_arg
from missedcall.admin.common import UserError, load_settings, open_store, zone_label
from missedcall.config import Settings
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.storage import Store
from missedcall.resolve.match import RESOLUTIONS

#: Calls in one report at most (a year of a busy box); --since narrows it.
LIMIT = 100_000
_SUBJECT = {
    "en": "Missed calls report: {calls}, {open} open",
    "ru": "Отчёт о пропущенных звонках: {calls}, открыто {open}",
}


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--since", type=parse_since, help="from then on: 30m, 24h, 7d ago or YYYY-MM-DD (default: 24h before --until)"
    )
    sub.add_argument("--until", type=parse_since, help="before then: 30m, 24h, 7d ago or YYYY-MM-DD (default now)")
    sub.add_argument("--queue", type=queue_arg, help="only this queue")
    sub.add_argument("--status", choices=RESOLUTIONS, help="only calls that ended so (open: not resolved)")
    shape = sub.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="JSON: calls, queues and repeat_callers, times in UTC")
    shape.add_argument("--csv", action="store_true", help="CSV of the calls, with the --json keys as header")
    shape.add_argument("--mail", action="store_true", help="mail the report to each queue's recipients")


def cmd_report(args: argparse.Namespace) -> int:
    from missedcall.deliver import notify
    from missedcall.resolve import report

    settings = load_settings()
    now = utcnow()
    until = args.until or now
    since = args.since or until - timedelta(hours=24)
    if until <= since:
        raise UserError("--until must be later than --since")
    zone = notify.zone(settings)
    zone_name = settings.timezone or zone_label(zone)
    with open_store(settings, create=False) as store:
        try:
            calls = _calls(store, args, since, until)
            if args.mail:
                return _mail(store, settings, calls, since=since, until=until, zone=zone, zone_name=zone_name)
        except StorageError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        json.dump(report.as_json(calls, since=since, until=until, zone_name=zone_name), sys.stdout,
                  ensure_ascii=False, indent=2)  # fmt: skip
        sys.stdout.write("\n")
    elif args.csv:
        import csv

        rows = [report.call_json(c) for c in calls]
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(rows[0].keys() if rows else report.call_json(CallRecord("", "", "", "")).keys())
        for row in rows:
            writer.writerow("" if v is None else v for v in row.values())
    else:
        sys.stdout.write(report.render_text(calls, since=since, until=until, zone=zone, zone_name=zone_name,
                                            language=settings.language))  # fmt: skip
    return 0


def _calls(store: Store, args: argparse.Namespace, since: datetime, until: datetime) -> list[CallRecord]:
    from missedcall.record import resolutions

    wanted = None if args.status is None else ("" if args.status == "open" else args.status)
    return resolutions.report_calls(store, since=since, until=until, queue=args.queue, resolution=wanted, limit=LIMIT)


def _mail(
    store: Store, settings: Settings, calls: list[CallRecord], *, since: datetime, until: datetime,
    zone: tzinfo | None, zone_name: str,
) -> int:  # fmt: skip
    """One mail per recipient address with the calls of their queues; exit 1 when every one failed."""
    from missedcall.deliver import lastknown, mail, mime, plural, recipients, transport
    from missedcall.resolve import report

    if not calls:
        print("report: no calls in this period; nothing mailed")
        return 0
    if not settings.mail_from:
        raise UserError("MISSEDCALL_FROM is not set: the report cannot be mailed")
    rows = lastknown.all_rows(store)
    queues_of: dict[str, list[str]] = {}
    for queue in sorted({c.queue for c in calls}):
        own, star = lastknown.split(rows, queue)
        for address in recipients.resolve(own, star, settings.fallback_to):
            if not mail.address_problem(address):
                queues_of.setdefault(address, []).append(queue)
    if not queues_of:
        raise UserError("nobody to mail: no recipients for these queues (missedcall-admin recipients add)")
    language = settings.language if settings.language in _SUBJECT else "en"
    sent, failed = 0, 0
    for address, queues in sorted(queues_of.items()):
        mine = [c for c in calls if c.queue in queues]
        try:
            body = report.render_text(mine, since=since, until=until, zone=zone, zone_name=zone_name,
                                      language=language)  # fmt: skip
            subject = _SUBJECT[language].format(
                calls=plural.count(len(mine), "missed call", language), open=sum(1 for c in mine if not c.resolution)
            )
            message = mime.Draft()
            mail.set_headers(message, sender=settings.mail_from, to=[address], subject=subject, now=utcnow(),
                             kind="missedcall-report")  # fmt: skip
            mail.set_body(message, body)
            transport.send(message, [address], settings, timeout=settings.smtp_timeout)
        except Exception as exc:  # one address's failure never stops the others
            failed += 1
            log.error(f"report: mail to {address} failed: {exc.__class__.__name__}: {str(exc)[:200]}")
            print(f"report: mail to {address} failed: {str(exc)[:200]}", file=sys.stderr)
            continue
        sent += 1
    print(f"report: {sent} mail(s) sent" + (f", {failed} failed" if failed else ""))
    return 1 if failed and not sent else 0
