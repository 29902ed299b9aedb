"""What every ``missedcall-admin`` verb shares: the one-line error, settings, the store, and output shapes."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone, tzinfo
from typing import Any

from missedcall import config
from missedcall.deliver import mail
from missedcall.record import model
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord, Recipient
from missedcall.record.storage import Store

PROG = "missedcall-admin"


class UserError(Exception):
    """A failure the user can act on: printed as one line, exit 1."""


def load_settings() -> config.Settings:
    try:
        return config.load_settings(strict=True)
    except config.ConfigError as exc:
        raise UserError(f"configuration: {exc}") from None


def open_store(settings: config.Settings, *, create: bool = True) -> Store:
    try:
        return Store.open(settings.db, timeout=5.0, create=create)
    except StorageError as exc:
        raise UserError(str(exc)) from None


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat() if moment else None


def local(moment: datetime | None, zone: tzinfo | None = None) -> str:
    """The time as the mails show it: in MISSEDCALL_TIMEZONE (``zone``), else the system's zone."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def zone_label(zone: tzinfo | None) -> str:
    """The zone's short name for a column header, e.g. ``MSK`` or ``UTC+03``."""
    return datetime.now(timezone.utc).astimezone(zone).strftime("%Z") or "local"


def call_json(call: CallRecord) -> dict[str, Any]:
    return model.to_dict(call)  # the one JSON form of a call, shared with the spool


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


def text_arg(text: str) -> str:
    """Free text from the command line: bytes that are not UTF-8 (which Python keeps as lone
    surrogates) become U+FFFD, so they cannot crash an encoder later on."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def read_bounded(path: str, limit: int, what: str) -> bytes:
    """A file the user named ('-' = stdin), read whole but never past ``limit`` bytes (/dev/zero has no end)."""
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as handle:
                raw = handle.read(limit + 1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise UserError(f"{path}: larger than {limit >> 20} MB, not {what}")
    return raw
