"""``missedcall-admin test QUEUE --target TARGET``: send the sample notification to one target only.

TARGET is a target as ``recipients add`` takes it (an address, ``telegram:ID``,
``slack:URL`` ...), a key as ``recipients list`` shows it (its URL is then read
from the table, so a webhook URL need not be typed again), or ``-`` to read it
from stdin. Nothing is recorded.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from missedcall.admin.common import UserError, open_store
from missedcall.config import ConfigError, Settings
from missedcall.deliver import targets
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord


def resolve(given: str, settings: Settings) -> tuple[str, str]:
    """(key, stored target) of what --target names; raises UserError."""
    if given == "-":
        given = sys.stdin.readline(8192).strip()
    if targets.is_chat(given) and "/~" in given and "://" not in given:
        if targets.problem(given):
            raise UserError(f"{targets.redact(given)!r} is not a target")
        with open_store(settings, create=False) as store:
            from missedcall.record import deliveries

            try:
                stored = deliveries.urls(store, [given]).get(given, "")
            except StorageError as exc:
                raise UserError(str(exc)) from None
        if not stored:
            raise UserError(f"{given} is not in the recipients table (missedcall-admin recipients list)")
        return given, stored
    try:
        target = targets.parse(given)
    except targets.TargetError as exc:
        raise UserError(str(exc)) from None
    return target.key, target.stored_target


def run(args: argparse.Namespace, settings: Settings, call: CallRecord, now: datetime) -> int:
    key, stored = resolve(args.target, settings)
    if not targets.is_chat(key):
        from missedcall.deliver import mail, notify, transport

        templates = mail.load_templates(settings.language, settings.template_dir)
        subject, body = mail.render(call, label="", language=settings.language, templates=templates,
                                    zone=notify.zone(settings), host="missedcall-test")  # fmt: skip
        message = mail.build_message(subject=subject, body=body, sender=settings.mail_from, recipients=[key],
                                     callid=call.callid, now=now)  # fmt: skip
        if args.dry_run:
            sys.stdout.write(message.as_string())
            return 0
        try:
            transport.send(message, [key], settings, timeout=settings.smtp_timeout)
        except transport.TransportError as exc:
            raise UserError(f"mail not sent: {exc}") from None
        print(f"test notification sent to {key} via {settings.transport}")
        return 0
    from missedcall.deliver import chatformat, chatsend, notify

    document = chatformat.single(targets.scheme_of(key), targets.chat_id(key), call, label="",
                                 language=settings.language, zone=notify.zone(settings), now=now)  # fmt: skip
    if args.dry_run:
        import json

        print(json.dumps(document, ensure_ascii=False, indent=2))
        print(f"\n(dry run: nothing sent to {targets.show(key)})", file=sys.stderr)
        return 0
    try:
        opts = chatsend.options(settings)
        chatsend.send(key, stored, document, opts, timeout=settings.smtp_timeout)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    except chatsend.ChatError as exc:
        raise UserError(f"not sent to {targets.show(key)}: {exc}") from None
    print(f"test notification sent to {targets.show(key)}")
    return 0


def each_chat(args: argparse.Namespace, settings: Settings, call: CallRecord, now: datetime, keys: list[str]) -> int:
    """The sample to every chat target of the queue (``test QUEUE`` without --target); one line each."""
    failed = []
    for key in keys:
        args.target = key  # a listed key: resolve() reads a URL target's URL from the table
        try:
            run(args, settings, call, now)
        except UserError as exc:
            print(f"{exc}", file=sys.stderr)
            failed.append(targets.show(key))
    if failed:
        raise UserError(f"not sent to {len(failed)} chat target(s): {', '.join(failed)}")
    return 0
