"""Argument types of ``missedcall-admin``: each turns a command-line word into a value or one usage error."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from missedcall import config
from missedcall.admin.common import printable, text_arg
from missedcall.deliver import mail, recipients

#: No call is older; a --since before it means "everything" (and stays a date every database stores).
_NO_CALL_BEFORE = datetime(1970, 1, 2, tzinfo=timezone.utc)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``24h``, ``7d`` ago, or a local date ``YYYY-MM-DD`` (from its midnight)."""
    now = now or datetime.now(timezone.utc)
    match = re.fullmatch(r"(\d{1,6})([mhd])", text.strip())
    if match:
        amount = int(match.group(1))
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        try:
            return max(now - timedelta(**{unit: amount}), _NO_CALL_BEFORE)
        except OverflowError:  # 999999d reaches before the year 1: everything there is
            return _NO_CALL_BEFORE
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"--since takes 30m, 24h, 7d or YYYY-MM-DD, not {text[:40]!r}") from None
    try:
        return max(day.astimezone(), _NO_CALL_BEFORE)  # local midnight
    except (ValueError, OverflowError):  # the years 1 and 9999, where local time has no room
        return max(day.replace(tzinfo=timezone.utc), _NO_CALL_BEFORE)


def queue_arg(text: str) -> str:
    if not recipients.valid_queue(text):
        raise argparse.ArgumentTypeError(
            f"{printable(text)!r} is not a queue (a queue number or name of letters, digits, '-', '_' or '.', or '*')"
        )
    return text


def email_arg(text: str) -> str:
    text = text.strip()
    if not config.is_address(text):
        example = "" if len(text) > config.ADDRESS_MAX else " (like ops@example.com)"
        raise argparse.ArgumentTypeError(f"{printable(text, 60)!r} {config.why_not_address(text)}{example}")
    return text


def target_arg(text: str) -> str:
    """An e-mail address or a chat target (missedcall.deliver.targets); errors never show a URL's secret part."""
    if text == "-":
        return text  # read from stdin by the command, so a webhook URL stays out of argv and shell history
    from missedcall.deliver import targets

    if not targets.is_chat(text.strip()) and not text.strip().lower().startswith("mailto:"):
        return email_arg(text)

    try:
        targets.parse(text_arg(text))
        return text.strip()
    except targets.TargetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def stored_email_arg(text: str) -> str:
    """An address as it may already sit in the table: any one-line text, matched exactly."""
    text = text_arg(text).strip()
    if not text or len(text) > 320:
        raise argparse.ArgumentTypeError(f"{printable(text, 60)!r} is not an e-mail address")
    return text
