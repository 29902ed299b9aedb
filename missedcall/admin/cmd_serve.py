"""``missedcall-admin serve``: run the FastAGI service in the foreground (systemd runs it; docs/fastagi.md)."""

from __future__ import annotations

import argparse

from missedcall import config
from missedcall.admin.args import bounded_int
from missedcall.admin.common import UserError, load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address to listen on (default: MISSEDCALL_FASTAGI_LISTEN, else 127.0.0.1:4574)",
    )
    parser.add_argument(
        "--workers", type=bounded_int(1, 64), default=4, help="threads handing mails to the relay (default 4)"
    )
    parser.add_argument(
        "--backlog",
        type=bounded_int(1, 100_000),
        default=1000,
        help="recorded calls waiting for a mail thread; past it a call is left to retry (default 1000)",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from missedcall.detect import fastagi, listen

    settings = load_settings()  # a broken configuration: one line and exit 1 (the dialplan falls back)
    try:
        where = listen.parse_listen(args.listen, key="--listen") if args.listen else listen.from_raw(settings.raw)
        listen.max_sessions(settings.raw)  # a bad cap stops the start here, in one line; SIGHUP re-reads it
        listen.cache_seconds(settings.raw)  # the same for the bound on the copy of recipients and queue settings
    except config.ConfigError as exc:
        raise UserError(str(exc)) from None
    try:
        return fastagi.serve(where, workers=args.workers, backlog=args.backlog)
    except OSError as exc:
        raise UserError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    except config.ConfigError as exc:
        raise UserError(str(exc)) from None
