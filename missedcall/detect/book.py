"""The call book: the calls of a queue_log not decided yet, and which of them a verdict can now decide. Pure.

When is a call decided? Once it has an exit line (ABANDON, EXITWITHTIMEOUT,
EXITEMPTY, EXITWITHKEY, CONNECT, COMPLETE*), no ENTERQUEUE after it, and its last
exit is more than ``grace`` seconds old. "Old" is measured by the caller: while
reading, against the newest line already read (:attr:`Book.watermark`); at the end
of the file, against the wall clock. Memory stays bounded by the calls still open.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from missedcall.detect import queuelog, verdict
from missedcall.detect.queuelog import EXIT_EVENTS, QueueLogEvent

#: A caller still waiting stays open this long after its last line, then is dropped (and counted).
HORIZON = 24 * 3600
#: Open calls kept at most; beyond, the oldest are dropped (and counted). Pathological logs only.
MAX_OPEN_CALLS = 20_000
_NON_ANSWER_EXITS = EXIT_EVENTS - verdict.ANSWER_EVENTS
_ANSWER_EVENTS = verdict.ANSWER_EVENTS


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

    A CONNECT is final (docs/design.md: answered, whatever comes after), so an answered
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
        when, callid, _, _, name, _ = event  # one unpacking: this runs for every record the sweeper reads
        if when > self.watermark:
            self.watermark = when
        if callid in self._decided:
            if self._decided[callid][1] and name == "CONNECT":
                self._remember(callid, when, False)
                self._ready.append(Decided(callid, [event], None, late_connect=True))
            return
        calls = self.calls
        events = calls.get(callid)
        if events is None:
            if len(calls) >= self.max_open:
                del calls[next(iter(calls))]
                self.dropped_overflow += 1
            events = calls[callid] = [event]
        else:
            events.append(event)
        if name in EXIT_EVENTS:
            if name in _ANSWER_EVENTS and not may_be_recorded(callid, events, self.grace):
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
