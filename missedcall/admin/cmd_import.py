"""``missedcall-admin import-script``: move the recipients of a hand-written hook script into missedcall.

The script is read, never run (:mod:`missedcall.admin.scriptimport`). Every
address is checked at the same door as ``recipients add``; one bad address
refuses the whole import, naming the script's line, so nothing is half-imported.
Labels the script sets per queue (a ``label=``/``name=`` variable) become the
queues' labels (``missedcall-admin queues``). The script's default branch
(``*)`` or ``else``) becomes ``MISSEDCALL_FALLBACK_TO`` (mailed for queues without
rows of their own, as the script did) or, with ``--default star``, ``*`` rows
(copied on every queue's mail).
"""

from __future__ import annotations

import argparse
import os

from missedcall import config
from missedcall.admin.common import UserError, load_settings, open_store, printable, read_bounded
from missedcall.admin.scriptimport import QueueRule, ScriptError, read_script
from missedcall.deliver import recipients
from missedcall.record import queues
from missedcall.record.db import StorageError

SCRIPT_MAX = 1 << 20  # bytes: a hook script is a few kilobytes


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("script", metavar="SCRIPT", help="the hook script (e.g. /var/lib/asterisk/bin/noanswer.sh)")
    sub.add_argument(
        "--default",
        choices=("fallback", "star"),
        default="fallback",
        help="where the script's default branch goes: 'fallback' (default) sets MISSEDCALL_FALLBACK_TO in the"
        " config file, mailed for queues without recipients of their own, as the script did; 'star' adds '*' rows,"
        " which are copied on EVERY queue's mail",
    )
    sub.add_argument("--dry-run", action="store_true", help="print what would be imported and change nothing")


def _read(path: str) -> str:
    raw = read_bounded(path, SCRIPT_MAX, "a hook script")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1251")  # older Russian-locale boxes; the addresses themselves are ASCII either way


def _checked(path: str, rules: list[QueueRule]) -> None:
    for rule in rules:
        if not recipients.valid_queue(rule.queue):
            raise UserError(f"{path}:{rule.line}: {printable(rule.queue)!r} is not a queue")
        for address in rule.addresses:
            if not config.is_address(address):
                raise UserError(f"{path}:{rule.line}: {printable(address, 60)!r} {config.why_not_address(address)}")


def cmd_import_script(args: argparse.Namespace) -> int:
    path = args.script
    try:
        imported = read_script(_read(path))
    except ScriptError as exc:
        raise UserError(f"{path}: {exc}") from None
    rules = [rule for rule in imported.rules if rule.addresses]
    _checked(path, rules)
    default = next((rule for rule in rules if rule.queue == "*"), None)
    queue_rows = [(rule.queue, address, rule) for rule in rules if rule.queue != "*" for address in rule.addresses]
    if default is not None and args.default == "star":
        queue_rows += [("*", address, default) for address in default.addresses]
    for note in imported.notes:
        print(f"note: {path}: {note}")
    for queue, address, rule in queue_rows:
        extra = f"  label {printable(rule.label)!r}" if rule.label else ""
        print(f"queue {queue:<8} {address}  (line {rule.line}){extra}")
    if default is not None and args.default == "fallback":
        print(f"default  MISSEDCALL_FALLBACK_TO={','.join(default.addresses)}  (line {default.line})")
    if args.dry_run:
        print("dry run: nothing changed")
        return 0
    settings = load_settings()
    with open_store(settings) as store:
        try:
            with store.transaction():
                added = sum(1 for queue, address, _ in queue_rows if store.add_recipient(queue, address, ""))
            labelled = [rule for rule in rules if rule.label and rule.queue != "*"]
            for rule in labelled:
                queues.update(store, rule.queue, {"label": rule.label[: queues.LABEL_MAX]})
        except StorageError as exc:
            raise UserError(str(exc)) from None
        from missedcall.deliver import lastknown

        lastknown.refresh(store, settings.spool_dir)  # the AGI mails from this copy when the database is down
    print(f"imported {added} new recipient(s), {len(queue_rows) - added} already present")
    for rule in labelled:
        print(f"queue {rule.queue} is labelled {printable(rule.label)!r} (missedcall-admin queues)")
    if default is not None and args.default == "fallback":
        _set_fallback(settings, default.addresses)
    return 0


def _set_fallback(settings: config.Settings, addresses: list[str]) -> None:
    wanted = ",".join(addresses)
    if list(settings.fallback_to) == addresses:
        print(f"MISSEDCALL_FALLBACK_TO is already {wanted}")
        return
    path = os.environ.get("MISSEDCALL_CONFIG", "") or config.DEFAULT_CONFIG
    if settings.fallback_to:
        # Never overwrite what the admin chose: say what to do instead.
        print(
            f"MISSEDCALL_FALLBACK_TO is {','.join(settings.fallback_to)}; left as it is. To use the script's default"
            f" instead, set MISSEDCALL_FALLBACK_TO={wanted} in {path}, or re-run with --default star"
        )
        return
    if not os.path.isfile(path):
        print(f"no config file at {path}: set MISSEDCALL_FALLBACK_TO={wanted} there to keep the script's default")
        return
    import dotenv

    st = os.stat(path)
    try:
        dotenv.set_key(path, "MISSEDCALL_FALLBACK_TO", wanted, quote_mode="never")
        # set_key rewrites through a new file: give it back the config file's owner and 0640.
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, st.st_mode & 0o7777)
    except OSError as exc:
        raise UserError(f"cannot update {path}: {exc.strerror or exc}") from None
    print(f"set MISSEDCALL_FALLBACK_TO={wanted} in {path}")
