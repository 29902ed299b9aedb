"""``missedcall-admin recipients``: list, add, remove, import and export who gets mailed."""

from __future__ import annotations

import argparse
import csv
import io
import sys

from missedcall import config
from missedcall.admin.common import (
    UserError,
    load_settings,
    open_store,
    print_json,
    print_table,
    printable,
    read_bounded,
    recipient_json,
)
from missedcall.deliver import mail, recipients, targets
from missedcall.record.db import StorageError
from missedcall.record.storage import Store

CSV_MAX = 10 << 20  # bytes of a recipients CSV


def cmd_recipients(args: argparse.Namespace) -> int:
    settings = load_settings()
    # list and export only read: they must not create a database (or its folder) that is not there.
    with open_store(settings, create=args.action in ("add", "remove", "import")) as store:
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
        return _add(store, args.queue, args.email, args.name or "")
    if action == "remove":
        key = _stored_key(args.email)
        if not store.remove_recipient(args.queue, key):
            raise UserError(f"{targets.show(key)} is not a recipient of queue {args.queue}")
        print(f"removed {targets.show(key)} from queue {args.queue}")
        return 0
    if action == "import":
        return _import_csv(args.csv, store)
    rows = store.recipients(args.queue)
    if action == "export":
        # A backup that import takes back: URL targets in full (their keys alone could not be sent to).
        from missedcall.record import deliveries

        full = deliveries.urls(store, [r.email for r in rows if targets.is_chat(r.email)])
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["queue", "email", "name"])
        for row in rows:
            writer.writerow([row.queue, full.get(row.email, row.email), row.name])
        return 0
    if args.json:
        print_json([recipient_json(r) for r in rows])
    elif not rows:
        print("no recipients yet; add one with: missedcall-admin recipients add QUEUE EMAIL")
    else:
        print_table(["QUEUE", "EMAIL", "NAME"], [[r.queue, r.email, printable(r.name)] for r in rows])
    return 0


def _add(store: Store, queue: str, given: str, name: str) -> int:
    if given == "-":
        given = sys.stdin.readline(8192).strip()
    try:
        target = targets.parse(given)
    except targets.TargetError as exc:
        raise UserError(str(exc)) from None
    if target.is_chat:
        from missedcall.record import deliveries

        if not store.has_column("missedcall_recipients", "target"):
            store.init()  # tables from before chat targets (same schema number): add the column and table now
        added = deliveries.add(store, queue, target.key, target.stored_target, name)
    else:
        added = store.add_recipient(queue, target.key, name)
    print(f"{'added' if added else 'already there:'} {target.key} for queue {queue}")
    if target.scheme == "telegram" and not load_settings().raw.get("MISSEDCALL_TELEGRAM_TOKEN"):
        print("note: set MISSEDCALL_TELEGRAM_TOKEN in the config file (docs/chat.md)", file=sys.stderr)
    return 0


def _stored_key(given: str) -> str:
    """The stored key of what ``remove`` was given: a target as given to add, or a key as listed."""
    if targets.is_chat(given) and "://" in given:
        try:
            return targets.parse(given).key
        except targets.TargetError:
            return given
    return given.removeprefix("mailto:")


def _import_csv(path: str, store: Store) -> int:
    """All rows or none: a file with one bad row changes nothing and says which row."""
    raw = read_bounded(path, CSV_MAX, "a recipients list")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1251")  # what Excel saves as CSV on a Russian-locale Windows
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a UTF-8 (or Windows-1251) CSV file") from None
    handle = io.StringIO(text, newline="")
    wanted: list[tuple[str, str, str]] = []
    chats: list[tuple[str, targets.Target, str]] = []
    with handle:
        try:
            for number, row in enumerate(csv.reader(handle, delimiter=delimiter_of(text)), start=1):
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                if number == 1 and row[0].strip().lower() == "queue":
                    continue  # header line
                if len(row) < 2:
                    raise UserError(f"{path}:{number}: expected queue,email[,name]")
                queue, email = row[0].strip(), row[1].strip()
                if not recipients.valid_queue(queue):
                    raise UserError(f"{path}:{number}: {printable(queue)!r} is not a queue")
                if targets.is_chat(email):
                    try:
                        chat = targets.parse(email)
                    except targets.TargetError as exc:
                        raise UserError(f"{path}:{number}: {exc}") from None
                    chats.append((queue, chat, mail.clean(row[2], 128) if len(row) > 2 else ""))
                    continue
                if not config.is_address(email.removeprefix("mailto:")):
                    why = config.why_not_address(email.removeprefix("mailto:"))
                    raise UserError(f"{path}:{number}: {printable(email, 60)!r} {why}")
                wanted.append((queue, email.removeprefix("mailto:"), mail.clean(row[2], 128) if len(row) > 2 else ""))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"{path}: not a UTF-8 CSV file ({exc.__class__.__name__})") from None
    added = sum(1 for queue, email, name in wanted if store.add_recipient(queue, email, name))
    if chats:
        from missedcall.record import deliveries

        added += sum(1 for q, t, name in chats if deliveries.add(store, q, t.key, t.stored_target, name))
    print(f"imported {added} new recipient(s), {len(wanted) + len(chats) - added} already present")
    return 0


def delimiter_of(text: str) -> str:
    """``,``, ``;`` (Excel in a locale with a decimal comma, e.g. Russian) or a tab, judged on the first row."""
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            # Quoted text (a name with a comma in it) does not count.
            bare = "".join(part for index, part in enumerate(line.split('"')) if index % 2 == 0)
            counts = {sep: bare.count(sep) for sep in (",", ";", "\t")}
            best = max(counts, key=lambda sep: counts[sep])
            return best if counts[best] else ","
    return ","

