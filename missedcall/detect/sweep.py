"""The queue_log sweeper, ``missedcall-admin sweep``: the catch-all detector of docs/design.md §3.

The AGI hook only runs when the caller hangs up inside ``[ext-queues]``; queue_log
sees every queue call. The sweeper reads queue_log from where its last run
stopped, judges each call (callid) with the same verdict as the hook
(:func:`missedcall.detect.verdict.judge_events`) once the call is over, and records and
notifies through the same notifier (:func:`missedcall.deliver.notify.notify`) with
``source='queue_log'``. Whoever records a call first owns it, so the two
detectors never mail twice.

Three parts, each usable on its own:

* :class:`Tail` reads complete lines from a saved :class:`FileMark` onwards and
  survives rotation (rename, copy+truncate, delete+recreate) and partial lines.
* :class:`Book` holds the calls still open and says which are decided.
* :class:`Sweeper` glues them to the database: claim, notify, correct, persist.

When is a call decided? Once it has an exit line (ABANDON, EXITWITHTIMEOUT,
EXITEMPTY, EXITWITHKEY, CONNECT, COMPLETE*), no ENTERQUEUE after it, and its last
exit is more than ``grace`` seconds old. "Old" is measured two ways, both safe:
while reading, against the newest line already read (a line written ``grace``
seconds later proves the call did not go on to another queue); at the end of
the file, against the wall clock (nothing newer has been written). Replaying a
years-old log with ``--from-start`` therefore decides its calls as it streams,
and memory stays bounded by the calls still open, not by the file.

State, in ``missedcall_state`` (see :func:`save_state`):

* ``queue_log_position``: JSON ``{"v": 1, "path": ..., "file": MARK, "prev": MARK|null,
  "pending_chunks": N, "pending_calls": C, "saved_at": ISO}`` where a MARK is
  ``{"dev", "ino", "offset", "head_len", "head"}``: the file's identity, the byte
  offset after the last complete line read, and a hash of its first ``head_len``
  (<= 1024) bytes, which tells a truncated or recreated file (same inode, new
  content) from the one we were reading. ``prev`` is the file rotated away last,
  kept while it exists because Asterisk may write to it until it reopens its log.
* ``queue_log_pending`` (and ``queue_log_pending.1``, ... when it is long): JSON
  ``{"v": 1, "lines": [...]}``, the raw queue_log lines of the calls still open
  (exit seen but grace not over, or still waiting). Re-reading the file from the
  oldest open call instead would re-read hours of log every minute while one
  caller waits; the lines of the open calls are a few hundred bytes each and
  bounded (``MAX_OPEN_CALLS``, and a day's ``HORIZON``), and the value is split
  into ASCII chunks below MariaDB's 64 KiB TEXT limit.

Position and pending lines are saved together in one transaction after the
calls they imply were recorded. A run that dies half-way re-reads the same lines
next time; claims are idempotent, so nothing is mailed twice.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import heapq
import json
import os
import re
import shlex
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Callable

from missedcall import log
from missedcall.config import Settings
from missedcall.deliver import mail, notify
from missedcall.detect import queuelog, verdict
from missedcall.detect.queuelog import EXIT_EVENTS, QueueLogEvent, parse_line
from missedcall.record.storage import SCHEMA_VERSION, StorageError, Store

POSITION_KEY = "queue_log_position"
PENDING_KEY = "queue_log_pending"
STATE_VERSION = 1

DEFAULT_GRACE = 60
#: A caller still waiting stays open this long after its last line, then is dropped (and counted).
HORIZON = 24 * 3600
#: Open calls kept at most; beyond, the oldest are dropped (and counted). Pathological logs only.
MAX_OPEN_CALLS = 20_000
HEAD_BYTES = 1024
READ_CHUNK = 1 << 20
MAX_LINE = 64 * 1024
#: Pending-state chunk size, in ASCII characters: below MariaDB's TEXT limit of 65,535 bytes.
STATE_CHUNK = 60_000
CORRECTED = "answered later (queue_log CONNECT)"

#: What a call's verdict needs; every other line is skipped without being parsed.
_WANTED = frozenset(e.encode() for e in queuelog.CALL_EVENTS)
#: Events Asterisk (and FreePBX) write that the verdict does not use: skipped, not counted as unknown.
_KNOWN = frozenset(
    e.encode()
    for e in (
        "RINGNOANSWER", "RINGCANCELED", "QUEUESTART", "QUEUESTOP", "CONFIGRELOAD", "ADDMEMBER", "REMOVEMEMBER",
        "PAUSE", "UNPAUSE", "PAUSEALL", "UNPAUSEALL", "PENALTY", "RINGINUSE", "AGENTLOGIN", "AGENTLOGOFF",
        "AGENTCALLBACKLOGIN", "AGENTCALLBACKLOGOFF", "AGENTCALLED", "AGENTDUMP", "SYSCOMPAT", "ATTENDEDTRANSFER",
        "BLINDTRANSFER", "INFO", "MIXMONITOR", "CALLERONHOLD", "CALLEROFFHOLD",
    )
)  # fmt: skip
#: The end of an answered call, often long after its CONNECT decided it: alone, it says nothing new.
_AFTER_ANSWER = frozenset({b"COMPLETEAGENT", b"COMPLETECALLER", b"TRANSFER"})
_NON_ANSWER_EXITS = EXIT_EVENTS - verdict.ANSWER_EVENTS
_EVENT_NAME = re.compile(rb"[A-Z][A-Z0-9_]*")
_ROTATED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z")


class SweepError(Exception):
    """A failure the admin can act on (unreadable queue_log, say): one line, exit 1."""


# ============================================================================ reading


@dataclass
class FileMark:
    """Where we are in one file: its identity, the offset after the last complete line, its head's hash."""

    dev: int
    ino: int
    offset: int = 0
    head_len: int = 0
    head: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> FileMark | None:
        if not isinstance(data, dict):
            return None
        try:
            mark = cls(int(data["dev"]), int(data["ino"]), int(data["offset"]))
            mark.head_len = int(data.get("head_len", 0))
            mark.head = str(data.get("head", ""))
        except (KeyError, TypeError, ValueError):
            return None
        return mark if mark.offset >= 0 and 0 <= mark.head_len <= HEAD_BYTES else None


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _head_ok(handle: IO[bytes], mark: FileMark) -> bool:
    """Does this file start with the bytes the mark saw? (Always, for a mark at 0.)"""
    if mark.head_len == 0:
        return True
    data = os.pread(handle.fileno(), mark.head_len, 0)
    return len(data) == mark.head_len and _digest(data) == mark.head


def _refresh_head(handle: IO[bytes], mark: FileMark) -> None:
    if mark.head_len < HEAD_BYTES and mark.offset > mark.head_len:
        data = os.pread(handle.fileno(), min(mark.offset, HEAD_BYTES), 0)
        mark.head_len, mark.head = len(data), _digest(data)


def _line_start(handle: IO[bytes], size: int) -> int:
    """The offset just after the last newline before ``size`` (where a first run starts)."""
    if size == 0:
        return 0
    start = max(0, size - MAX_LINE)
    block = os.pread(handle.fileno(), size - start, start)
    cut = block.rfind(b"\n")
    return start + cut + 1 if cut >= 0 else size


class Tail:
    """Complete queue_log lines from a saved mark onwards, across log rotation.

    * Same file, grown: read from the mark to the last complete line; a partial
      last line is left for next time.
    * Same file but shorter than the mark, or its first bytes changed (truncated by
      ``copytruncate``, or recreated on the same inode): finish the old content from
      the rotated copy whose first bytes match, if there is one, then read from 0.
    * Another file at the path, or none (renamed or deleted): finish the old file
      (a file held open, or a sibling ``queue_log*`` with the same inode and head),
      then read the new one from 0. The old one is remembered as ``prev`` and read
      again while it exists: Asterisk writes to it until it reopens its log.

    Handles stay open between :meth:`batches` calls (``--follow``), so a rotated
    file is finished even after it was deleted. :meth:`close` closes them.
    """

    def __init__(
        self, path: str, mark: FileMark | None = None, prev: FileMark | None = None, *, from_start: bool = False
    ) -> None:
        self.path = path
        self.mark = mark
        self.prev = prev
        self.from_start = from_start
        self.notes: list[str] = []
        self.garbage = 0  # over-long lines skipped by the reader itself
        self._handles: dict[tuple[int, int], IO[bytes]] = {}
        self._seen: tuple[int, int, int, int] | None = None

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    # -- what is there

    def _open_path(self) -> tuple[IO[bytes] | None, os.stat_result | None]:
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise SweepError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        st = os.fstat(handle.fileno())
        held = self._handles.get((st.st_dev, st.st_ino))
        if held is not None:
            handle.close()
            return held, st
        self._handles[(st.st_dev, st.st_ino)] = handle
        return handle, st

    def _siblings(self) -> list[tuple[str, os.stat_result]]:
        """Other files in the log's folder whose name starts with its name (rotated copies), newest first."""
        folder, base = os.path.split(os.path.abspath(self.path))
        found: list[tuple[str, os.stat_result]] = []
        try:
            names = os.listdir(folder)
        except OSError:
            return found
        for name in names:
            if name == base or not name.startswith(base) or name.endswith(_ROTATED_SUFFIXES):
                continue
            full = os.path.join(folder, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            if os.path.isfile(full):
                found.append((full, st))
        found.sort(key=lambda item: item[1].st_mtime_ns, reverse=True)
        return found

    def _hold(self, full: str, st: os.stat_result, mark: FileMark) -> IO[bytes] | None:
        try:
            handle = open(full, "rb")
        except OSError:
            return None
        now = os.fstat(handle.fileno())
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not _head_ok(handle, mark):
            handle.close()
            return None
        self._handles[(now.st_dev, now.st_ino)] = handle
        return handle

    def _find(self, mark: FileMark) -> tuple[IO[bytes], str] | None:
        """The file a mark was taken on, wherever it went: held open, or renamed beside the log."""
        held = self._handles.get((mark.dev, mark.ino))
        if held is not None and _head_ok(held, mark):
            return held, "the rotated file"
        for full, st in self._siblings():
            if (st.st_dev, st.st_ino) == (mark.dev, mark.ino):
                handle = self._hold(full, st, mark)
                if handle is not None:
                    return handle, full
        return None

    def _find_copy(self, mark: FileMark, exclude: tuple[int, int]) -> tuple[IO[bytes], str, FileMark] | None:
        """A rotated copy (``copytruncate``) of the content a mark was taken on: same first bytes, long enough."""
        if mark.head_len == 0:
            return None
        for full, st in self._siblings():
            if (st.st_dev, st.st_ino) == exclude or st.st_size < mark.offset:
                continue
            handle = self._hold(full, st, mark)
            if handle is not None:
                copy = FileMark(st.st_dev, st.st_ino, mark.offset, mark.head_len, mark.head)
                return handle, full, copy
        return None

    def changed(self) -> bool:
        """Anything new since the last :meth:`batches`? One stat (and an fstat of a held rotated file)."""
        try:
            st = os.stat(self.path)
            seen: tuple[int, int, int, int] | None = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            seen = None
        if seen != self._seen:
            return True
        for mark in (self.mark, self.prev):
            # A rotated file that Asterisk still writes to (the path is gone, or already a new file).
            if mark is None or (seen is not None and (seen[0], seen[1]) == (mark.dev, mark.ino)):
                continue
            held = self._handles.get((mark.dev, mark.ino))
            if held is not None and os.fstat(held.fileno()).st_size > mark.offset:
                return True
        return False

    # -- reading

    def batches(self) -> Iterator[bytes]:
        """Complete lines in file order, a block at a time: lines joined by newlines, without the last one.

        The marks advance past a batch once the caller asks for the next one (or
        the generator ends), so what :attr:`mark` says has been handed over.
        """
        handle, st = self._open_path()
        self._seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else None
        try:
            yield from self._batches(handle, st)
        finally:
            self._collect()

    def _batches(self, handle: IO[bytes] | None, st: os.stat_result | None) -> Iterator[bytes]:
        if self.prev is not None:
            found = None
            if st is None or (st.st_dev, st.st_ino) != (self.prev.dev, self.prev.ino):
                found = self._find(self.prev)
            if found is None:
                self.prev = None  # compressed or deleted: Asterisk has long moved on
            else:
                yield from self._read(found[0], self.prev, final=False)

        if self.mark is None:
            if handle is None or st is None:
                raise SweepError(f"cannot read {self.path}: no such file (is MISSEDCALL_QUEUE_LOG right?)")
            start = 0 if self.from_start else _line_start(handle, st.st_size)
            self.mark = FileMark(st.st_dev, st.st_ino, start)
            _refresh_head(handle, self.mark)
            yield from self._read(handle, self.mark, final=False)
            return

        mark = self.mark
        if handle is not None and st is not None and (st.st_dev, st.st_ino) == (mark.dev, mark.ino):
            if st.st_size < mark.offset or not _head_ok(handle, mark):
                copy = self._find_copy(mark, exclude=(st.st_dev, st.st_ino))
                if copy is not None:
                    self.notes.append(f"{self.path} was truncated; finished its old lines from {copy[1]}")
                    yield from self._read(copy[0], copy[2], final=True)
                else:
                    self.notes.append(f"{self.path} was truncated; reading it again from the start")
                self.mark = mark = FileMark(st.st_dev, st.st_ino, 0)
            yield from self._read(handle, mark, final=False)
            return

        # The file we followed is no longer at the path: rotated (renamed or deleted).
        old = self._find(mark)
        if old is not None:
            yield from self._read(old[0], mark, final=False)
        if handle is None or st is None:
            # Renamed and not recreated yet: Asterisk still writes to the old file; keep following it.
            if old is None:
                self.notes.append(f"{self.path} is gone and its last file was not found")
            return
        if old is not None:
            self.notes.append(f"{self.path} was rotated; finished the old file ({old[1]}) first")
            self.prev = mark
        else:
            self.notes.append(f"{self.path} was rotated and the old file is gone; its unread lines are lost")
            self.prev = None
        self.mark = mark = FileMark(st.st_dev, st.st_ino, 0)
        yield from self._read(handle, mark, final=False)

    def _read(self, handle: IO[bytes], mark: FileMark, *, final: bool) -> Iterator[bytes]:
        """Lines from ``mark.offset`` to the file's size at this moment; ``final`` also hands over a last
        line without its newline (a file that is done being written)."""
        end = os.fstat(handle.fileno()).st_size
        pos = mark.offset  # first byte not handed over yet
        carry = b""
        skipping = False  # inside an over-long line: drop everything up to its newline
        handle.seek(pos)
        while pos + len(carry) < end:
            block = handle.read(min(READ_CHUNK, end - pos - len(carry)))
            if not block:
                break
            data = carry + block
            carry = b""
            if skipping:
                newline = data.find(b"\n")
                if newline < 0:
                    pos += len(data)
                    continue
                pos += newline + 1
                data = data[newline + 1 :]
                skipping = False
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) > MAX_LINE:
                    self.garbage += 1
                    skipping = True
                    pos += len(data)
                else:
                    carry = data
                continue
            carry = data[cut + 1 :]
            yield data[:cut]
            pos += cut + 1
            mark.offset = pos
        if carry and final:
            yield carry
            pos += len(carry)
        mark.offset = pos
        _refresh_head(handle, mark)

    def _collect(self) -> None:
        """Close handles of files that are neither followed nor a rotated file we may still finish."""
        keep = {(m.dev, m.ino) for m in (self.mark, self.prev) if m is not None}
        for key in [k for k in self._handles if k not in keep]:
            self._handles.pop(key).close()


# ============================================================================ judging


def _last_exit(events: list[QueueLogEvent]) -> int:
    """Index of the call's last exit line, or -1."""
    for index in range(len(events) - 1, -1, -1):
        if events[index].event in EXIT_EVENTS:
            return index
    return -1


def _settled(events: list[QueueLogEvent]) -> bool:
    """Has an exit line and no ENTERQUEUE after it (so it is not waiting in a next queue)?"""
    index = _last_exit(events)
    return index >= 0 and not any(e.event == "ENTERQUEUE" for e in events[index + 1 :])


def may_be_recorded(callid: str, events: list[QueueLogEvent], grace: int) -> bool:
    """Could a detector have recorded this call as missed before it was answered?

    The hook records a call whose queue timed out (REASON argument) before an
    overflow queue answered it; and a sweeper decides a timeout whose caller
    spent longer than the grace period (in an IVR, say) before the next queue.
    Either shows as a non-answer exit line before the CONNECT, or as lines that
    start well after the channel was created. Other answered calls cost no query.
    """
    first = events[0].time
    for event in events:
        if event.event in _NON_ANSWER_EXITS:
            return True
        if event.time < first:
            first = event.time
    born = queuelog.callid_epoch(callid)
    return born is None or first > born + grace


@dataclass
class Decided:
    callid: str
    events: list[QueueLogEvent]
    verdict: verdict.Verdict | None  # None: a CONNECT after this process decided the call missed
    late_connect: bool = False


class Book:
    """The calls not decided yet, keyed by callid, and a day's memory of the calls decided.

    A CONNECT is final (docs/design.md §3: answered, whatever comes after), so an answered
    call is decided at its CONNECT and forgotten, unless a detector may have
    recorded it as missed: that one waits for the grace period (the hook may still
    be writing its row) and is then checked. Every other call waits for the grace
    period after its last exit line, and is judged by :func:`verdict.judge_events`.

    Lines of a call decided earlier by this process (a COMPLETE long after the
    CONNECT, or the caller transferred into another queue) never start a second
    decision; only a CONNECT after a missed decision is handed back, to correct
    the row. That memory holds callids for ``horizon`` seconds: across runs, the
    database (claims) and a look back in the file do the same job.
    """

    def __init__(self, grace: int, *, horizon: int = HORIZON, max_open: int = MAX_OPEN_CALLS) -> None:
        self.grace = grace
        self.horizon = horizon
        self.max_open = max_open
        self.calls: dict[str, list[QueueLogEvent]] = {}
        self.watermark = 0  # the newest line time read so far
        self.answered = 0  # answered calls decided at their CONNECT, not yet counted by the sweeper
        self.dropped_waiting = 0
        self.dropped_overflow = 0
        self.not_queued = 0
        self._decided: dict[str, tuple[int, bool]] = {}  # callid -> (when, missed)
        self._decided_order: deque[tuple[int, str]] = deque()
        self._ready: list[Decided] = []
        self._due: list[tuple[int, int, str]] = []  # (exit time, tie-break, callid); stale entries are skipped
        self._seq = 0

    def _remember(self, callid: str, when: int, missed: bool) -> None:
        self._decided[callid] = (when, missed)
        self._decided_order.append((when, callid))

    def add(self, event: QueueLogEvent) -> None:
        callid, when, name = event.callid, event.time, event.event
        if when > self.watermark:
            self.watermark = when
        earlier = self._decided.get(callid)
        if earlier is not None:
            if earlier[1] and name == "CONNECT":
                self._remember(callid, when, False)
                self._ready.append(Decided(callid, [event], None, late_connect=True))
            return
        events = self.calls.get(callid)
        if events is None:
            if len(self.calls) >= self.max_open:
                del self.calls[next(iter(self.calls))]
                self.dropped_overflow += 1
            events = self.calls[callid] = []
        events.append(event)
        if name in EXIT_EVENTS:
            if name in verdict.ANSWER_EVENTS and not may_be_recorded(callid, events, self.grace):
                del self.calls[callid]
                self._remember(callid, when, False)
                self.answered += 1
                return
            self._seq += 1
            heapq.heappush(self._due, (when, self._seq, callid))

    def next_due(self) -> int | None:
        """The exit time of the call that will be decided first (stale entries included)."""
        if self._ready:
            return 0
        return self._due[0][0] if self._due else None

    def take_due(self, until: float) -> list[Decided]:
        """Decide the calls whose last exit line is at ``until`` or before, and forget them."""
        decided, self._ready = self._ready, []
        while self._due and self._due[0][0] <= until:
            _, _, callid = heapq.heappop(self._due)
            events = self.calls.get(callid)
            if events is None:
                continue
            index = _last_exit(events)
            if index < 0 or events[index].time > until:
                continue  # a later exit line has its own entry
            judged = verdict.judge_events(events)
            if judged is None:
                continue  # in a next queue now: decided after its next exit
            del self.calls[callid]
            self._remember(callid, events[index].time, judged.missed)
            decided.append(Decided(callid, events, judged))
        return decided

    def expire(self, clock: float) -> None:
        """Forget calls that will never be decided (waiting past the horizon, never in a queue),
        and decided callids older than the horizon."""
        for callid in list(self.calls):
            events = self.calls[callid]
            if _settled(events):
                continue  # decided through the heap
            last = max(e.time for e in events)
            if not any(e.event == "ENTERQUEUE" for e in events) and _last_exit(events) < 0:
                if last + self.grace < clock:  # a DID line and nothing else: not a queue call
                    del self.calls[callid]
                    self.not_queued += 1
            elif last + self.horizon < clock:
                del self.calls[callid]
                self.dropped_waiting += 1
        order, decided = self._decided_order, self._decided
        while order and order[0][0] + self.horizon < clock:
            when, callid = order.popleft()
            if decided.get(callid, (None,))[0] == when:
                del decided[callid]

    def counts(self) -> tuple[int, int]:
        """(calls within their grace period, calls still waiting in a queue)."""
        in_grace = sum(1 for events in self.calls.values() if _settled(events))
        return in_grace, len(self.calls) - in_grace

    def lines(self) -> list[str]:
        """The open calls' lines, as queue_log wrote them (what :func:`save_state` keeps)."""
        return [
            "|".join((str(e.time), e.callid, e.queue, e.agent, e.event, *e.data))
            for events in self.calls.values()
            for e in events
        ]


# ============================================================================ state


def _state_name(index: int) -> str:
    return PENDING_KEY if index == 0 else f"{PENDING_KEY}.{index}"


@dataclass
class SavedState:
    mark: FileMark | None = None
    prev: FileMark | None = None
    lines: list[str] = field(default_factory=list)
    chunks: int = 0  # pending rows written last time (so that shorter state blanks the rest)
    note: str = ""


def load_state(store: Store, path: str) -> SavedState:
    """What the last run saved; an empty state (start at the end) when there is none or it is unusable."""
    raw = store.get_state(POSITION_KEY)
    if not raw:
        return SavedState()
    try:
        data = json.loads(raw)
        chunks = int(data.get("pending_chunks", 0))
    except (ValueError, TypeError, AttributeError):
        return SavedState(note=f"{POSITION_KEY} is unreadable; starting at the end of the file")
    state = SavedState(chunks=chunks)
    if data.get("path") != os.path.abspath(path):
        state.note = f"queue_log moved (was {data.get('path')}); starting at the end of {path}"
        return state
    state.mark = FileMark.from_json(data.get("file"))
    state.prev = FileMark.from_json(data.get("prev"))
    text = "".join(store.get_state(_state_name(i)) or "" for i in range(chunks))
    if text:
        try:
            lines = json.loads(text)["lines"]
            state.lines = [line for line in lines if isinstance(line, str)]
        except (ValueError, TypeError, KeyError):
            state.note = f"{PENDING_KEY} is unreadable; calls open at the last run are forgotten"
    return state


def save_state(store: Store, path: str, tail: Tail, book: Book, previous_chunks: int) -> int:
    """Position and open calls, in one transaction; returns how many pending rows it wrote."""
    text = json.dumps({"v": STATE_VERSION, "lines": book.lines()}, ensure_ascii=True, separators=(",", ":"))
    chunks = [text[i : i + STATE_CHUNK] for i in range(0, len(text), STATE_CHUNK)]
    position = {
        "v": STATE_VERSION,
        "path": os.path.abspath(path),
        "file": tail.mark.to_json() if tail.mark else None,
        "prev": tail.prev.to_json() if tail.prev else None,
        "pending_chunks": len(chunks),
        "pending_calls": len(book.calls),
        "saved_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    with store.transaction():
        store.set_state(POSITION_KEY, json.dumps(position, separators=(",", ":")))
        for index, chunk in enumerate(chunks):
            store.set_state(_state_name(index), chunk)
        for index in range(len(chunks), previous_chunks):
            store.set_state(_state_name(index), "")
    return len(chunks)


# ============================================================================ the sweeper


@dataclass
class Stats:
    lines: int = 0
    garbage: int = 0
    unknown: int = 0
    missed: int = 0
    recorded: dict[str, int] = field(default_factory=dict)  # status -> count
    already: int = 0
    answered: int = 0
    corrected: int = 0

    def any_calls(self) -> bool:
        return bool(self.missed or self.answered)


def _fmt_time(epoch: int | None) -> str:
    """Local time with its offset, ISO 8601."""
    if epoch is None:
        return "-"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(epoch))
    return stamp[:-2] + ":" + stamp[-2:]


_SAFE = re.compile(r"[A-Za-z0-9_.+:@/-]+")


def _quote(text: str) -> str:
    """As the shell would need it, without quotes when it needs none."""
    return text if _SAFE.fullmatch(text) else shlex.quote(text)


class Sweeper:
    """One queue_log, one database: read what is new, decide, record and notify, save the position."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None,
        *,
        grace: int = DEFAULT_GRACE,
        from_start: bool = False,
        dry_run: bool = False,
        verbose: bool = False,
        out: IO[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.grace = grace
        self.from_start = from_start
        self.dry_run = dry_run
        self.verbose = verbose
        self.out = out if out is not None else sys.stdout
        self.clock = clock
        self.book = Book(grace)
        self.tail = Tail(settings.queue_log, from_start=from_start)
        self.stats = Stats()
        self._chunks = 0
        self._loaded = False
        self.read_from: int | None = None  # the time of the first line this process read from the file
        self._any_recorded = True

    # -- state

    def load(self) -> None:
        """Resume from the saved position and open calls (``--from-start``: from byte 0, nothing open)."""
        state = SavedState()
        if self.store is not None:
            try:
                state = load_state(self.store, self.settings.queue_log)
            except StorageError:
                if not self.dry_run:
                    raise
                state = SavedState(note="no saved position (tables missing?)")
        self._chunks = state.chunks
        if state.note:
            self._note(state.note)
        if self.dry_run and self.store is not None:
            # A dry run looks each missed call up ("already recorded?"); with no call recorded at all, none need be.
            try:
                self._any_recorded = bool(self.store.calls(limit=1))
            except StorageError:
                self._any_recorded = False
        if not self.from_start:
            self.tail = Tail(self.settings.queue_log, state.mark, state.prev)
            for line in state.lines:
                event = parse_line(line)
                if event is not None:
                    self.book.add(event)
        self._loaded = True

    def close(self) -> None:
        self.tail.close()

    # -- one pass

    def has_work(self) -> bool:
        """For --follow: new bytes, or an open call whose grace is over."""
        due = self.book.next_due()
        return self.tail.changed() or (due is not None and due + self.grace <= self.clock())

    def cycle(self) -> Stats:
        """Read what is new, decide what can be decided, record it, save the position. Returns this pass's counts."""
        if not self._loaded:
            self.load()
        self.stats = stats = Stats()
        book, grace = self.book, self.grace
        since_expire = 0
        for batch in self.tail.batches():
            self._feed(batch)
            # While reading, a line written `grace` seconds after a call's last exit decides it.
            self._handle_all(book.take_due(book.watermark - grace - 1))
            since_expire += len(batch)
            if since_expire >= 8 * READ_CHUNK:
                book.expire(book.watermark)
                since_expire = 0
        stats.garbage += self.tail.garbage
        self.tail.garbage = 0
        for note in self.tail.notes:
            self._note(note)
        self.tail.notes.clear()
        # At the end of the file nothing newer exists: the wall clock decides.
        now = self.clock()
        self._handle_all(book.take_due(now - grace))
        book.expire(now)
        if not self.dry_run and self.store is not None:
            self._chunks = save_state(self.store, self.settings.queue_log, self.tail, book, self._chunks)
        self._report()
        return stats

    def _feed(self, block: bytes) -> None:
        """Count and classify a block of lines; only the lines a verdict needs become Python objects."""
        stats, add, calls = self.stats, self.book.add, self.book.calls
        wanted, known, after_answer = _WANTED, _KNOWN, _AFTER_ANSWER
        lines = block.split(b"\n")
        stats.lines += len(lines)
        if self.read_from is None:
            # A 12-digit cap: int() on thousands of digits raises, and no real epoch is that long.
            stamp = next(
                (
                    x.split(b"|", 1)[0]
                    for x in lines
                    if x.split(b"|", 1)[0].isdigit() and len(x.split(b"|", 1)[0]) <= 12
                ),
                None,
            )
            self.read_from = int(stamp) if stamp is not None else None
        for raw in lines:
            parts = raw.split(b"|", 5)
            if len(parts) < 5:
                if raw.strip():
                    stats.garbage += 1
                continue
            name = parts[4]
            if name in known:
                continue  # the bulk (RINGNOANSWER...): not even its time is looked at
            if name in wanted and parts[0].isdigit() and len(parts[0]) <= 12 and parts[1]:
                callid = parts[1].decode("utf-8", "replace")
                if (name in after_answer and callid not in calls) or callid == "NONE":
                    continue  # the end of a call decided earlier, or a line about no call
                # What parse_line() makes of this line, its shape being checked already.
                fields = raw.decode("utf-8", "replace").split("|")
                if raw.endswith(b"\r"):
                    fields[-1] = fields[-1][:-1]
                add(QueueLogEvent(int(parts[0]), callid, fields[2], fields[3], fields[4], tuple(fields[5:])))
            elif name.rstrip(b"\r") in wanted or name.rstrip(b"\r") in known:
                event = parse_line(raw.decode("utf-8", "replace"))  # a CRLF line, say: the slow, exact way
                if event is None:
                    stats.garbage += 1
                elif event.event in queuelog.CALL_EVENTS and event.callid != "NONE":
                    add(event)
            elif parts[0].isdigit() and parts[1] and _EVENT_NAME.fullmatch(name):
                stats.unknown += 1
            else:
                stats.garbage += 1

    # -- decisions

    def _handle_all(self, decided: list[Decided]) -> None:
        self.stats.answered += self.book.answered
        self.book.answered = 0
        for item in decided:
            self._handle(item)

    def _handle(self, item: Decided) -> None:
        if item.late_connect:
            self._correct(item.callid, item.events[0].queue)
            return
        judged, events = item.verdict, item.events
        assert judged is not None
        if judged.missed and self._partly_read(item.callid, events):
            # The call began before the first line this process read (a first run starting at the end of
            # the file, or a call whose start an earlier run decided): judge its whole history, as the hook
            # does, from a look back in the file (bounded, and near its end: this is the cron case).
            found = queuelog.read_call_events(self.settings.queue_log, item.callid) or []
            whole = verdict.judge_events(found) if found else None
            if whole is not None and min(e.time for e in found) < min(e.time for e in events):
                judged = whole
        if not judged.missed:
            self.stats.answered += 1
            self._correct(item.callid, judged.queue)
            return
        self.stats.missed += 1
        now = datetime.now(timezone.utc).replace(microsecond=0)
        call = verdict.call_record(item.callid, judged, source="queue_log", now=now)
        if self.dry_run:
            existing = self._lookup(call.callid)
            action = f"already recorded ({existing.source}, {existing.status})" if existing else "would record"
            self._say(action, call, judged)
            return
        assert self.store is not None
        if not self.store.claim_call(call):
            self.stats.already += 1
            if self.verbose:
                self._say("already recorded", call, judged)
            return
        done = notify.notify(self.store, self.settings, call, timeout=self.settings.smtp_timeout)
        self.stats.recorded[done.status] = self.stats.recorded.get(done.status, 0) + 1
        log.info(
            f"sweep: missed call {call.callid} in queue {call.queue} ({call.reason}): {done.status}"
            + (f" - {done.last_error}" if done.last_error else "")
        )
        if self.verbose:
            self._say(f"recorded, {done.status}", call, judged)

    def _partly_read(self, callid: str, events: list[QueueLogEvent]) -> bool:
        """May this call have lines before the first one we hold, that this process never read?

        Only a call born before the first line this process read (and whose first line we hold is
        later than its birth) can: a replay from the start of a file has a handful, a cron run the
        few calls in progress when it began."""
        if not any(e.event == "ENTERQUEUE" for e in events):
            return True  # only its tail
        born = queuelog.callid_epoch(callid)
        if born is None:
            return False
        return born < (self.read_from if self.read_from is not None else born) and min(e.time for e in events) > born

    def _correct(self, callid: str, queue: str) -> None:
        """A call answered in the end: if a detector recorded it as missed, say so on its row; never mail."""
        row = self._lookup(verdict.clean_id(callid))
        if row is None or row.last_error.startswith(CORRECTED):
            return
        if self.dry_run:
            self._line(f"would correct {row.callid} ({row.source}, {row.status}): {CORRECTED}")
            return
        assert self.store is not None
        if row.status == "sent":
            # The mail went already; say so on the row, keep the truth about the mail.
            self.store.update_call(row.callid, last_error=f"{CORRECTED}; the mail had already gone")
        else:
            self.store.update_call(row.callid, status="skipped", last_error=CORRECTED)
        self.stats.corrected += 1
        log.info(f"sweep: call {row.callid} was answered later in queue {queue}; row corrected")
        if self.verbose:
            self._line(f"corrected {row.callid} ({row.source}, was {row.status}): {CORRECTED}")

    def _lookup(self, callid: str) -> Any:
        if self.store is None or not self._any_recorded:
            return None
        try:
            return self.store.get_call(callid)
        except StorageError:
            if self.dry_run:
                return None
            raise

    # -- output

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")

    def _say(self, action: str, call: Any, judged: verdict.Verdict) -> None:
        caller = mail.clean(call.caller_num, 40) or "-"
        wait = "-" if call.wait_seconds is None else str(call.wait_seconds)
        self._line(
            f"{action}: {call.callid} queue={call.queue} reason={call.reason} wait={wait}"
            f" path={_quote(' > '.join(call.path))} caller={_quote(caller)}"
            f" did={_quote(judged.did) if judged.did else '-'} ended={_fmt_time(judged.ended_at)}"
        )

    def _note(self, text: str) -> None:
        log.warning(f"sweep: {text}")
        if self.verbose or self.dry_run:
            self._line(f"note: {text}")

    def summary(self) -> str:
        s, book = self.stats, self.book
        in_grace, waiting = book.counts()
        parts = [f"read {s.lines} line(s) of {self.settings.queue_log}"]
        if s.garbage or s.unknown:
            parts.append(f"skipped {s.garbage} garbage line(s) and {s.unknown} unknown event(s)")
        recorded = ", ".join(f"{n} {status}" for status, n in sorted(s.recorded.items())) or "none"
        if self.dry_run:
            parts.append(f"{s.missed} missed (dry run: nothing recorded), {s.answered} answered")
        else:
            parts.append(
                f"{s.missed} missed (recorded: {recorded}; already recorded: {s.already}), "
                f"{s.answered} answered ({s.corrected} corrected)"
            )
        parts.append(f"open: {in_grace} within the grace period, {waiting} waiting")
        if book.dropped_waiting or book.dropped_overflow:
            parts.append(
                f"dropped {book.dropped_waiting} call(s) waiting over {HORIZON // 3600} h"
                f" and {book.dropped_overflow} over the {MAX_OPEN_CALLS} open-call limit"
            )
        return "sweep: " + "; ".join(parts)

    def _report(self) -> None:
        s = self.stats
        if s.any_calls() or s.garbage or s.unknown:
            log.info(self.summary())
        if self.verbose or self.dry_run:
            self._line(self.summary())


# ============================================================================ entry points


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``missedcall-admin sweep`` (docs/design.md §7)."""

    def seconds(text: str) -> int:
        if not text.strip().isdigit() or int(text) > HORIZON:
            raise argparse.ArgumentTypeError(f"--grace takes whole seconds from 0 to {HORIZON}, not {text[:20]!r}")
        return int(text)

    def interval(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0.05 <= value <= 3600:
            raise argparse.ArgumentTypeError(f"--interval takes seconds from 0.05 to 3600, not {text[:20]!r}")
        return value

    parser.add_argument(
        "--grace",
        type=seconds,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"decide a call this long after its last exit line (a timeout may lead to another queue; "
        f"default {DEFAULT_GRACE})",
    )
    parser.add_argument(
        "--from-start",
        action="store_true",
        help="read the whole file, not just what is new (a first run otherwise starts at its end)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the verdicts; record and send nothing")
    parser.add_argument("--follow", action="store_true", help="keep running and read new lines as they come")
    parser.add_argument(
        "--interval", type=interval, default=1.0, metavar="SECONDS", help="with --follow: how often to look (default 1)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print each call recorded and a summary")


def _lock_path(settings: Settings) -> str:
    key = _digest(f"{settings.db.describe()}\0{os.path.abspath(settings.queue_log)}".encode())[:12]
    folder = "/run/lock" if os.path.isdir("/run/lock") and os.access("/run/lock", os.W_OK) else "/tmp"  # noqa: S108
    return os.path.join(folder, f"missedcall-sweep-{key}.lock")


@contextlib.contextmanager
def _exclusive(settings: Settings, *, wait: Callable[[], bool] | None) -> Iterator[bool]:
    """One sweeper per database and queue_log. Yields False when another holds it (and ``wait`` is None)."""
    path = _lock_path(settings)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY)  # someone else's lock file in a sticky folder: flock works read-only
        except OSError:
            yield True  # no lock to be had: run anyway; claims keep mails single
            return
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait is None or not wait():
                    yield False
                    return
        yield True
    finally:
        os.close(fd)


def run(
    settings: Settings,
    *,
    grace: int = DEFAULT_GRACE,
    from_start: bool = False,
    dry_run: bool = False,
    follow: bool = False,
    interval: float = 1.0,
    verbose: bool = False,
    out: IO[str] | None = None,
) -> int:
    """``missedcall-admin sweep``; raises SweepError for what the admin must fix."""
    out = out if out is not None else sys.stdout
    if follow:
        return _follow(
            settings, grace=grace, dry_run=dry_run, interval=interval, verbose=verbose, out=out, from_start=from_start
        )
    if dry_run:
        return _once(settings, grace=grace, from_start=from_start, dry_run=True, verbose=verbose, out=out)
    with _exclusive(settings, wait=None) as mine:
        if not mine:
            log.info("sweep: another sweep is running; this one does nothing")
            if verbose:
                out.write("sweep: another sweep is running (cron overlap or a --follow service); nothing done\n")
            return 0
        return _once(settings, grace=grace, from_start=from_start, dry_run=False, verbose=verbose, out=out)


def _open(settings: Settings, *, dry_run: bool) -> Store | None:
    try:
        store = Store.open(settings.db, timeout=10.0, create=not dry_run)
    except StorageError as exc:
        if dry_run:
            print(f"note: {exc}; no saved position and no check against recorded calls", file=sys.stderr)
            return None
        raise SweepError(str(exc)) from None
    if not dry_run and (store.schema_version() or 0) < SCHEMA_VERSION:
        store.init()  # as the hook does: the tables appear, or catch up, on first use
    return store


def _once(settings: Settings, *, grace: int, from_start: bool, dry_run: bool, verbose: bool, out: IO[str]) -> int:
    store = _open(settings, dry_run=dry_run)
    sweeper = Sweeper(settings, store, grace=grace, from_start=from_start, dry_run=dry_run, verbose=verbose, out=out)
    try:
        sweeper.cycle()
    except StorageError as exc:
        raise SweepError(str(exc)) from None
    finally:
        sweeper.close()
        if store is not None:
            store.close()
    return 0


def _follow(
    settings: Settings, *, grace: int, dry_run: bool, interval: float, verbose: bool, out: IO[str], from_start: bool
) -> int:
    """Run until SIGTERM/SIGINT: look at the file every ``interval`` s (one stat when idle), cycle when
    something is new or due. Database trouble is logged and retried with back-off; the in-memory state is
    then dropped and rebuilt from the last saved one, so nothing decided is lost."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        lock = contextlib.nullcontext(True) if dry_run else _exclusive(settings, wait=lambda: not stop.wait(interval))
        with lock as mine:
            if not mine:
                return 0  # stopped while waiting for the lock
            store: Store | None = None
            sweeper: Sweeper | None = None
            delay = interval
            last_cycle = 0.0
            first = True
            while not stop.is_set():
                try:
                    if sweeper is None:
                        store = _open(settings, dry_run=dry_run)
                        sweeper = Sweeper(
                            settings,
                            store,
                            grace=grace,
                            from_start=from_start and first,
                            dry_run=dry_run,
                            verbose=verbose,
                            out=out,
                        )
                        sweeper.load()
                        first = False
                        sweeper.cycle()
                        last_cycle = time.monotonic()
                    elif sweeper.has_work() or time.monotonic() - last_cycle >= 60:
                        sweeper.cycle()
                        last_cycle = time.monotonic()
                    out.flush()
                    delay = interval
                except StorageError as exc:
                    log.error(f"sweep --follow: {exc}; retrying in {delay:.0f} s")
                    print(f"sweep: {exc}; retrying", file=sys.stderr, flush=True)
                    if sweeper is not None:
                        sweeper.close()
                    if store is not None:
                        store.close()
                    sweeper, store = None, None
                    delay = min(max(delay * 2, 1.0), 60.0)
                stop.wait(delay)
            if sweeper is not None:
                sweeper.close()
            if store is not None:
                store.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
