"""Asterisk's queue_log: the one parser of its records, and one call's records near the end of a big file.

A record is ``time|callid|queue|agent|event|data...``. Asterisk writes the
fields raw, so a caller number that carries a line break (from a SIP header, a
``Set()`` in custom dialplan) splits its ENTERQUEUE record over two physical
lines, and the second can be shaped like a record of another call. So records
are parsed by the field count Asterisk writes for each event (13 to 22, and
FreePBX's DID line): an ENTERQUEUE with too few fields takes the next physical
lines as the rest of its caller number, and a line that does not start with a
plausible ``epoch|callid|queue|agent|EVENT`` is never a record of its own.
Times before 2000 or more than a few minutes ahead of this box's clock are not
believed (:func:`missedcall.text.epoch`): such a record is skipped and counted.

:class:`Reader` is the only parser; the sweeper feeds it whole blocks of lines
(a million-line log in seconds: the bulk, RINGNOANSWER and the like, is dropped
on the event name without being decoded), :func:`read_call_events` (the hook)
and :func:`parse_line` use the same code. Parsing is pure and never raises.
"""

from __future__ import annotations

import os
import time
from collections import namedtuple
from operator import length_hint

from missedcall.text import epoch, epoch_bounds, plausible_epoch, printable

#: Events that end a call's stay in a queue (docs/design.md).
EXIT_EVENTS = frozenset(
    {"ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY", "CONNECT", "COMPLETEAGENT", "COMPLETECALLER"}
)
#: Events the product uses; everything else is skipped.
CALL_EVENTS = EXIT_EVENTS | {"ENTERQUEUE", "DID", "TRANSFER"}
#: Events Asterisk (and FreePBX) write that the verdict does not use: skipped, not counted as unknown.
OTHER_EVENTS = frozenset(
    {
        "RINGNOANSWER", "RINGCANCELED", "QUEUESTART", "QUEUESTOP", "CONFIGRELOAD", "ADDMEMBER", "REMOVEMEMBER",
        "PAUSE", "UNPAUSE", "PAUSEALL", "UNPAUSEALL", "PENALTY", "RINGINUSE", "AGENTLOGIN", "AGENTLOGOFF",
        "AGENTCALLBACKLOGIN", "AGENTCALLBACKLOGOFF", "AGENTCALLED", "AGENTDUMP", "SYSCOMPAT", "ATTENDEDTRANSFER",
        "BLINDTRANSFER", "INFO", "MIXMONITOR", "CALLERONHOLD", "CALLEROFFHOLD",
    }
)  # fmt: skip
#: Data fields app_queue writes after the event name (Asterisk 13-22; DID is FreePBX's QueueLog()).
#: Only ENTERQUEUE carries text from the caller (its number, between the URL and the position).
DATA_FIELDS = {
    "ENTERQUEUE": 3,  # url|callerid|position
    "DID": 1,  # did
    "CONNECT": 3,  # holdtime|bridged uniqueid|ringtime
    "ABANDON": 3,  # position|origposition|waittime
    "EXITWITHTIMEOUT": 3,  # position|origposition|waittime
    "EXITEMPTY": 3,  # position|origposition|waittime
    "EXITWITHKEY": 4,  # key|position|origposition|waittime
    "COMPLETEAGENT": 3,  # holdtime|calltime|origposition
    "COMPLETECALLER": 3,  # holdtime|calltime|origposition
    "TRANSFER": 5,  # extension|context|holdtime|calltime|origposition
}
#: A record split by line breaks in its caller number is joined from at most this many physical lines.
MAX_PIECES = 8
MAX_RECORD = 64 * 1024

# A call's lines are within its channel's life; the uniqueid starts with the
# channel's creation time, so reading backwards can stop a little before it.
_CLOCK_SLACK = 120
_CHUNK = 64 * 1024
DEFAULT_MAX_BYTES = 16 * 1024 * 1024

_ENTER = b"ENTERQUEUE"
_ENTER_BARS = DATA_FIELDS["ENTERQUEUE"] - 1  # "|" in the data of a whole ENTERQUEUE
_AFTER_ANSWER = frozenset({b"COMPLETEAGENT", b"COMPLETECALLER", b"TRANSFER"})
_AFTER_ANSWER_TEXT = frozenset(e.decode() for e in _AFTER_ANSWER)
_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() strips


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of every hang-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Container, Iterator
    from typing import NamedTuple

    class QueueLogEvent(NamedTuple):
        time: int
        callid: str
        queue: str
        agent: str
        event: str
        data: tuple[str, ...]

else:
    # One record. A named tuple, not a frozen dataclass: the sweeper makes one per record of a
    # million-line log, and a frozen dataclass costs seven times as much to build; and
    # collections', not typing's: typing costs the AGI a fifth of its imports.
    QueueLogEvent = namedtuple("QueueLogEvent", "time callid queue agent event data")


def _event_name(name: bytes) -> bool:
    """Shaped like an event name (``SOMENEWEVENT``): ASCII capitals, digits, underscores."""
    return bool(name) and name[:1].isupper() and name.isupper() and name.replace(b"_", b"").isalnum()


def _event_name_text(name: str) -> bool:
    """:func:`_event_name` for an ASCII ``str``."""
    return name[:1].isupper() and name.isupper() and name.replace("_", "").isalnum()


class Reader:
    """queue_log records from blocks of physical lines (newline-separated, without the last newline).

    ``events``: the event names handed over (None: every plausible record); the names in
    ``OTHER_EVENTS`` are then skipped silently, other well-formed ones counted as ``unknown``.
    ``callid``: only that call's records (the hook's look back). ``open_calls``: COMPLETE* and
    TRANSFER, which say nothing new once a CONNECT decided the call, are handed over only for
    callids in it (the sweeper's book). Counters: ``lines``, ``garbage``, ``unknown``,
    ``out_of_range`` (with the first few such records in ``bad_times``, printable).
    """

    def __init__(
        self,
        *,
        events: frozenset[str] | None = CALL_EVENTS,
        callid: str | None = None,
        open_calls: Container[str] | None = None,
        now: float | None = None,
    ) -> None:
        self.wanted = None if events is None else frozenset(e.encode() for e in events)
        self.ignore = frozenset(e.encode() for e in OTHER_EVENTS - (events or frozenset())) if events else frozenset()
        self._wanted_text = frozenset(e.decode() for e in self.wanted or ())
        self._ignore_text = frozenset(e.decode() for e in self.ignore)
        self.callid = callid
        self._needle = None if callid is None else ("|" + callid + "|").encode("utf-8", "surrogateescape")
        self.open_calls = open_calls
        self.now = time.time() if now is None else now
        self.lines = 0
        self.garbage = 0
        self.unknown = 0
        self.out_of_range = 0
        self.bad_times: list[str] = []
        self.first_time: int | None = None  # the time of the first plausible record read
        self._pending: list[bytes] | None = None  # an ENTERQUEUE waiting for the rest of its caller number

    def feed(self, block: bytes, add: Callable[[QueueLogEvent], object]) -> None:
        """Parse a block of lines; hand each record over to ``add``, in file order."""
        if self._pending is None and self._needle is None and self.wanted is not None:
            self._feed_bulk(block, add)
            return
        lines = block.split(b"\n")
        self.lines += len(lines)
        self._feed_lines(iter(lines), add)

    def _feed_bulk(self, block: bytes, add: Callable[[QueueLogEvent], object]) -> None:
        """:meth:`_feed_lines` for the sweeper's million lines: the same decisions, fewer steps per line.

        No look back for one call, a fixed set of events. The block is decoded once, in C: a
        line's text is the same whether its line or its whole block is decoded (a newline ends
        any invalid sequence), and every check below is the bytes one (ASCII digits, ASCII
        whitespace, ASCII capitals). An ENTERQUEUE whose caller number goes on on the next line
        (rare: a line break in a caller ID) hands the rest of the block to :meth:`_feed_lines`.
        """
        wanted, ignore, open_calls = self._wanted_text, self._ignore_text, self.open_calls
        text = block.decode("utf-8", "replace")
        lines = text.split("\n")
        self.lines += len(lines)
        ascii_only, crlf = text.isascii(), "\r" in text  # per block, in C: most logs are ASCII and LF only
        earliest, latest = epoch_bounds(self.now)
        first = self.first_time
        make = tuple.__new__
        garbage = unknown = 0
        rows = iter(lines)
        try:
            for raw in rows:
                parts = raw.split("|", 5)
                try:
                    name = parts[4]
                except IndexError:
                    if raw.strip(_ASCII_SPACE):
                        garbage += 1
                    continue
                if name in ignore:
                    continue  # the bulk (RINGNOANSWER...): not even its time is looked at
                if crlf and raw[-1] == "\r":  # a CRLF file (raw holds four "|" at least: never empty)
                    raw = raw[:-1]
                    parts = raw.split("|", 5)
                    name = parts[4]
                    if name in ignore:
                        continue
                if name not in wanted:
                    if name.isascii() and _event_name_text(name) and parts[0].isascii() and parts[0].isdigit():
                        unknown += 1
                    else:
                        garbage += 1
                    continue
                stamp, callid = parts[0], parts[1]
                if not (stamp.isdigit() and (ascii_only or stamp.isascii()) and len(stamp) <= 12 and callid):
                    garbage += 1
                    continue
                if name == "ENTERQUEUE" and (len(parts) < 6 or parts[5].count("|") < _ENTER_BARS):
                    # Its caller number goes on on the next line: the bytes from this line on, to the joiner.
                    rest = block.split(b"\n")[len(lines) - length_hint(rows) - 1 :]
                    self._pending = [rest[0][:-1] if rest[0][-1:] == b"\r" else rest[0]]
                    self._feed_lines(iter(rest[1:]), add)
                    return
                when = int(stamp)
                if not earliest <= when <= latest:
                    self._out_of_range_text(raw)
                    continue
                if first is None:
                    first = self.first_time = when
                if callid == "NONE" or (
                    open_calls is not None and name in _AFTER_ANSWER_TEXT and callid not in open_calls
                ):
                    continue  # a line about no call, or the end of a call decided earlier
                try:
                    data = tuple(parts[5].split("|"))
                except IndexError:
                    data = ()
                add(make(QueueLogEvent, (when, callid, parts[2], parts[3], name, data)))
        finally:
            self.garbage += garbage
            self.unknown += unknown

    def _feed_lines(self, lines: Iterator[bytes], add: Callable[[QueueLogEvent], object]) -> None:
        """Every case: the look back for one call (``callid``), any event, records split over lines."""
        wanted, ignore, needle, open_calls = self.wanted, self.ignore, self._needle, self.open_calls
        earliest, latest = epoch_bounds(self.now)
        own = self.callid
        pending = self._pending
        for raw in lines:
            if pending is not None:
                pending.append(raw)
                joined = b"\n".join(pending)
                pieces = joined.split(b"|", 5)  # "ENTERQUEUE" may end its line: no data field yet
                if len(pieces) == 6 and pieces[5].count(b"|") >= _ENTER_BARS:
                    pending = self._pending = None
                    self._take(joined, add)
                elif len(pending) >= MAX_PIECES or len(joined) > MAX_RECORD:
                    self.garbage += len(pending)
                    pending = self._pending = None
                continue
            if needle is not None and needle not in raw and _ENTER not in raw:
                continue  # the look back for one call: another call's line (an ENTERQUEUE may swallow ours)
            parts = raw.split(b"|", 5)
            if len(parts) < 5:
                if raw.strip():
                    self.garbage += 1
                continue
            name = parts[4]
            if name in ignore:
                continue  # the bulk (RINGNOANSWER...): not even its time is looked at
            if raw[-1:] == b"\r":  # a CRLF file
                raw = raw[:-1]
                parts = raw.split(b"|", 5)
                name = parts[4]
                if name in ignore:
                    continue
            if (name in wanted) if wanted is not None else _event_name(name):
                stamp, callid = parts[0], parts[1]
                if not (stamp.isdigit() and len(stamp) <= 12 and callid):
                    self.garbage += 1
                    continue
                if name == _ENTER and (len(parts) < 6 or parts[5].count(b"|") < _ENTER_BARS):
                    pending = self._pending = [raw]  # its caller number goes on on the next line
                    continue
                if needle is not None and needle not in raw:
                    continue
                when = int(stamp)
                if not earliest <= when <= latest:
                    self._out_of_range(raw)
                    continue
                if self.first_time is None:
                    self.first_time = when
                if callid == b"NONE" or (
                    open_calls is not None
                    and name in _AFTER_ANSWER
                    and callid.decode("utf-8", "replace") not in open_calls
                ):
                    continue  # a line about no call, or the end of a call decided earlier
                # The same as _take(), inline: this is the sweeper's hot loop.
                fields = raw.decode("utf-8", "replace").split("|")
                if own is None or fields[1] == own:
                    add(QueueLogEvent(when, fields[1], fields[2], fields[3], fields[4], tuple(fields[5:])))
            elif _event_name(name) and parts[0].isdigit():
                self.unknown += 1
            else:
                self.garbage += 1

    def finish(self, add: Callable[[QueueLogEvent], object]) -> None:
        """The end of what there is to read: an ENTERQUEUE still short is taken as it stands."""
        if self._pending is not None:
            joined, self._pending = b"\n".join(self._pending), None
            self._take(joined, add)

    def _take(self, raw: bytes, add: Callable[[QueueLogEvent], object]) -> None:
        stamp, callid = raw.split(b"|", 2)[:2]
        when = int(stamp)  # ASCII digits, at most 12: checked in feed()
        if self.callid is not None and callid.decode("utf-8", "replace") != self.callid:
            return
        if not plausible_epoch(when, self.now):
            self._out_of_range(raw)
            return
        if self.first_time is None:
            self.first_time = when
        fields = raw.decode("utf-8", "replace").split("|")
        if fields[1] == "NONE":
            return  # a line about no call (QUEUESTART...)
        add(QueueLogEvent(when, fields[1], fields[2], fields[3], fields[4], tuple(fields[5:])))

    def _out_of_range_text(self, raw: str) -> None:
        self.out_of_range += 1
        if len(self.bad_times) < 3:
            self.bad_times.append(printable(raw, limit=120))

    def _out_of_range(self, raw: bytes) -> None:
        # A time from before 2000 or from the future would raise in datetime or hold the
        # grace period open for every later call: never believed.
        self.out_of_range += 1
        if len(self.bad_times) < 3:
            self.bad_times.append(printable(raw.decode("utf-8", "replace"), limit=120))


def parse_line(line: str, now: float | None = None) -> QueueLogEvent | None:
    """One whole queue_log record (any event), or None for anything that is not one."""
    found: list[QueueLogEvent] = []
    reader = Reader(events=None, now=now)
    reader.feed(line.rstrip("\n").encode("utf-8", "surrogateescape"), found.append)
    reader.finish(found.append)
    return found[0] if len(found) == 1 and reader.lines == 1 else None


def callid_epoch(callid: str) -> int | None:
    """The creation time that an Asterisk uniqueid (``1795659185.13``) starts with."""
    head = callid.partition(".")[0]
    return int(head) if 9 <= len(head) <= 12 and head.isdigit() and head.isascii() else None


def _older_than(chunk: bytes, whole_first: bool, limit: int) -> bool:
    """Does a line that starts in ``chunk`` carry a plausible time before ``limit``?"""
    pieces = chunk.split(b"\n")
    for raw in pieces if whole_first else pieces[1:]:
        when = epoch(raw.split(b"|", 1)[0])
        if when is not None and when < limit:
            return True
    return False


def read_call_events(
    path: str, callid: str, *, max_bytes: int = DEFAULT_MAX_BYTES, now: float | None = None
) -> list[QueueLogEvent] | None:
    """The records of ``callid`` in ``path``, oldest first; None when the file cannot be read.

    Reads backwards from the end in chunks until lines are older than the call
    itself (or ``max_bytes`` were read), so a years-old log costs the same as a
    fresh one; then parses that window forwards with :class:`Reader`.
    """
    started = callid_epoch(callid)
    stop_before = started - _CLOCK_SLACK if started is not None else None
    chunks: list[bytes] = []
    try:
        with open(path, "rb") as handle:
            position = handle.seek(0, os.SEEK_END)
            read_total = 0
            while position > 0 and read_total < max_bytes:
                size = min(_CHUNK, position)
                position -= size
                chunk = os.pread(handle.fileno(), size, position)
                chunks.append(chunk)
                read_total += size
                if stop_before is not None and _older_than(chunk, position == 0, stop_before):
                    break
    except OSError:
        return None
    chunks.reverse()
    window = b"".join(chunks)
    if position > 0:
        cut = window.find(b"\n")  # the first piece is the tail of a line that starts further back
        window = window[cut + 1 :] if cut >= 0 else b""
    found: list[QueueLogEvent] = []
    reader = Reader(events=None, callid=callid, now=now)
    reader.feed(window[:-1] if window.endswith(b"\n") else window, found.append)
    reader.finish(found.append)
    return found
