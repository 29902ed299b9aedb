"""Asterisk's queue_log: parse its lines, and find one call's lines near the end of a big file.

Lines are ``time|callid|queue|agent|event|data...``. Parsing is pure and never
raises: a line that is not a queue_log line is ``None``, so garbage and unknown
events are simply skipped by the callers.
"""

from __future__ import annotations

import os
from typing import NamedTuple

#: Events that end a call's stay in a queue (docs/design.md).
EXIT_EVENTS = frozenset(
    {"ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY", "CONNECT", "COMPLETEAGENT", "COMPLETECALLER"}
)
#: Events the product uses; everything else is skipped.
CALL_EVENTS = EXIT_EVENTS | {"ENTERQUEUE", "DID", "TRANSFER"}

# A call's lines are within its channel's life; the uniqueid starts with the
# channel's creation time, so reading backwards can stop a little before it.
_CLOCK_SLACK = 120
_CHUNK = 64 * 1024
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


class QueueLogEvent(NamedTuple):
    """One line. A NamedTuple, not a frozen dataclass: the sweeper makes one per line of a
    million-line log, and a frozen dataclass costs seven times as much to build."""

    time: int
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]


def parse_line(line: str) -> QueueLogEvent | None:
    """One queue_log line, or None for anything that is not one."""
    line = line.rstrip("\r\n")
    parts = line.split("|")
    if len(parts) < 5:
        return None
    stamp, callid, queue, agent, event = parts[:5]
    # ASCII digits, and no more than a time needs: int() refuses "²" and 4300+ digits (ValueError).
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12) or not event or not callid:
        return None
    if not event.replace("_", "").isalnum() or not event.isupper():
        return None
    return QueueLogEvent(int(stamp), callid, queue, agent, event, tuple(parts[5:]))


def callid_epoch(callid: str) -> int | None:
    """The creation time that an Asterisk uniqueid (``1795659185.13``) starts with."""
    head = callid.split(".", 1)[0]
    if head.isascii() and head.isdigit() and 9 <= len(head) <= 12:
        return int(head)
    return None


def read_call_events(path: str, callid: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[QueueLogEvent] | None:
    """The lines of ``callid`` in ``path``, oldest first; None when the file cannot be read.

    Reads backwards from the end in chunks and stops once lines are older than
    the call itself (or ``max_bytes`` were read), so a years-old log costs the
    same as a fresh one.
    """
    needle = ("|" + callid + "|").encode("utf-8", "surrogateescape")
    started = callid_epoch(callid)
    stop_before = started - _CLOCK_SLACK if started is not None else None
    found: list[QueueLogEvent] = []
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            position = end
            carry = b""
            read_total = 0
            while position > 0 and read_total < max_bytes:
                size = min(_CHUNK, position)
                position -= size
                handle.seek(position)
                block = handle.read(size) + carry
                read_total += size
                lines = block.split(b"\n")
                # The first piece may be the tail of a line that starts in the next chunk back.
                carry = lines.pop(0) if position > 0 else b""
                done = False
                for raw in reversed(lines):
                    if needle in raw:
                        event = parse_line(raw.decode("utf-8", "replace"))
                        if event is not None and event.callid == callid:
                            found.append(event)
                    elif stop_before is not None:
                        stamp = raw.split(b"|", 1)[0]
                        if stamp.isdigit() and len(stamp) <= 12 and int(stamp) < stop_before:
                            done = True
                            break
                if done:
                    break
            if carry and needle in carry:
                event = parse_line(carry.decode("utf-8", "replace"))
                if event is not None and event.callid == callid:
                    found.append(event)
    except OSError:
        return None
    found.reverse()
    return found
