"""``missedcall-admin resolve``: one resolver pass on its own (retry's minute run does the same every minute)."""

from __future__ import annotations

import argparse

from missedcall.admin.common import UserError, load_settings, open_store, print_json
from missedcall.config import ConfigError
from missedcall.record.db import StorageError


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--dry-run", action="store_true", help="find callbacks but record nothing")
    sub.add_argument("--json", action="store_true", help="the pass's counts and each resolved call as JSON")


def cmd_resolve(args: argparse.Namespace) -> int:
    from missedcall.resolve import run

    settings = load_settings()
    with open_store(settings) as store:
        try:
            outcome = run.run(store, settings, dry_run=args.dry_run)
        except ConfigError as exc:
            raise UserError(f"configuration: {exc}") from None
        except (run.CdrError, StorageError) as exc:
            raise UserError(str(exc)) from None
    if args.json:
        from dataclasses import asdict

        print_json([{**asdict(outcome), "summary": outcome.summary()}])
    else:
        print(outcome.summary())
        for done in outcome.resolved:
            by = f" by {done['resolved_by']}" if done["resolved_by"] else ""
            print(f"  {done['callid']}  queue {done['queue']}: {done['resolution']}{by} at {done['resolved_at']}")
    return 1 if outcome.failed and not (outcome.called_back or outcome.got_through) else 0
