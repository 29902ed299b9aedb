"""Was a missed caller called back, or did they get through later? Decided from CDR rows. Pure.

A *callback* is an outbound call to the caller's number, answered with talk time
(disposition ANSWERED, billsec > 0), that started after the miss ended; the
agent is the extension that placed it (FreePBX keeps the agent's own number in
``cnum`` while ``src``/``clid`` may carry the trunk's outbound caller ID, so
``cnum`` and the calling channel's device are asked before ``src``). *Got
through* is a later inbound call from the same number that was answered. Calls
between extensions never count, and nothing before the miss counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from missedcall.resolve.numbers import NumberKey, is_extension, key
from missedcall.text import printable

CALLED_BACK = "called-back"
GOT_THROUGH = "got-through"
OPEN = "open"
RESOLUTIONS = (OPEN, CALLED_BACK, GOT_THROUGH)

# PJSIP/102-0000002a, SIP/102-…, IAX2/102-…, Local/102@from-internal-…
_CLID = re.compile(r'^"([^"]*)"\s*<([^>]*)>$')
_DEVICE = re.compile(r"^(?:PJSIP|SIP|IAX2|DAHDI|Local)/([0-9]{2,6})(?:[-@;]|$)")


@dataclass(frozen=True)
class CdrRow:
    """The CDR columns resolution needs, as FreePBX's ``cdr`` table and Asterisk's Master.csv both have them."""

    start: datetime  # aware, UTC
    src: str
    dst: str
    cnum: str = ""
    cnam: str = ""
    clid: str = ""
    channel: str = ""
    dstchannel: str = ""
    disposition: str = ""
    billsec: int = 0
    lastapp: str = ""
    uniqueid: str = ""
    linkedid: str = ""


@dataclass(frozen=True)
class OpenMiss:
    callid: str
    linkedid: str
    caller: str  # the number as recorded
    ended_at: datetime  # aware, UTC: nothing before this counts


@dataclass(frozen=True)
class Resolution:
    callid: str
    resolution: str  # CALLED_BACK or GOT_THROUGH
    at: datetime
    by: str  # the extension that called back or answered ("" when unknown)
    talk_seconds: int


def _extension_of_channel(channel: str) -> str:
    match = _DEVICE.match(channel)
    return match.group(1) if match else ""


def agent_of(row: CdrRow) -> str:
    """The extension that placed an outbound call: cnum, then the calling channel's device, then src."""
    for candidate in (row.cnum, _extension_of_channel(row.channel), row.src):
        if candidate and is_extension(candidate) and candidate.isdigit():
            return candidate
    return ""


def agent_label(row: CdrRow, agent: str) -> str:
    """``102 (Ivan Petrov)``: the agent's extension with the name FreePBX gave it, when the row has one.

    FreePBX keeps the user's own caller ID in cnum/cnam even when the trunk's outbound caller ID
    replaced src/clid; Master.csv has no cnam, but its clid (``"Ivan Petrov" <102>``) carries the
    name while the number in it is still the extension. The name is an admin's text, yet it is
    shown in mails: control characters go, and it is clipped.
    """
    name = row.cnam.strip()
    if not name:
        match = _CLID.match(row.clid.strip())
        if match and match.group(2) == agent:
            name = match.group(1).strip()
    name = printable(name, limit=60).strip()
    if not name or name == agent:
        return agent
    return f"{agent} ({name})"


def answerer_of(row: CdrRow) -> str:
    """The extension that answered an inbound call (its channel's device), or "".

    Not ``dst``: that is the queue or ring group the call was sent to, and a queue
    answers the channel itself, so an abandoned call's own row reads ANSWERED too.
    """
    return _extension_of_channel(row.dstchannel)


def _answered(row: CdrRow) -> bool:
    return row.disposition.strip().upper() == "ANSWERED" and row.billsec > 0


def resolve(misses: Sequence[OpenMiss], rows: Iterable[CdrRow], region: str) -> list[Resolution]:
    """The first callback or later answered call for each miss that has one; misses without stay open.

    ``rows`` may come in any order and be any number (they are streamed); each
    miss takes the earliest qualifying row. Several misses from one number are
    all resolved by the same callback: the caller wanted one conversation.
    """
    by_caller: dict[str, list[tuple[NumberKey, OpenMiss]]] = {}
    own_calls: set[str] = set()
    for miss in misses:
        found = key(miss.caller, region)
        if found is None:
            continue  # anonymous or internal: nobody can call it back
        by_caller.setdefault(found.tail, []).append((found, miss))
        own_calls.update(x for x in (miss.callid, miss.linkedid) if x)
    best: dict[str, Resolution] = {}
    for row in rows:
        if not _answered(row) or row.uniqueid in own_calls or (row.linkedid and row.linkedid in own_calls):
            continue
        outbound = bool(agent_of(row)) and not is_extension(row.dst)
        inbound = not outbound and not is_extension(row.src) and bool(answerer_of(row))
        if not (outbound or inbound):
            continue  # extension to extension, or nobody of ours on it
        number = row.dst if outbound else row.src
        other = key(number, region)
        if other is None:
            continue
        for mine, miss in by_caller.get(other.tail, ()):
            if row.start < miss.ended_at or not mine.matches(other):
                continue
            current = best.get(miss.callid)
            if current is None or row.start < current.at:
                best[miss.callid] = Resolution(
                    miss.callid,
                    CALLED_BACK if outbound else GOT_THROUGH,
                    row.start,
                    agent_label(row, agent_of(row)) if outbound else answerer_of(row),
                    row.billsec,
                )
    return [best[m.callid] for m in misses if m.callid in best]
