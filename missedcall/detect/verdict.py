"""Was this call missed? Pure decisions from queue_log lines or, failing those, channel variables.

docs/design.md: with queue_log lines for the call, it is missed iff no agent
CONNECTed, and the reason and wait come from its last exit line. Without them,
the channel variables describe only the last queue, and QUEUESTATUS may be a
stale TIMEOUT from an earlier queue, so only ABANDONED or an explicit REASON
argument count.
"""

from __future__ import annotations

from datetime import datetime, timezone

from missedcall.detect.queuelog import EXIT_EVENTS, QueueLogEvent
from missedcall.slots import Frozen
from missedcall.text import small_int

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Sequence

    from missedcall.record.model import CallRecord

# queue_log event -> the reason we report
_EXIT_REASON = {
    "ABANDON": "ABANDON",
    "EXITWITHTIMEOUT": "TIMEOUT",
    "EXITEMPTY": "EXITEMPTY",
    "EXITWITHKEY": "EXITWITHKEY",
}
#: Lines that only an answered call has: a tail that starts after its CONNECT is still answered.
ANSWER_EVENTS = frozenset({"CONNECT", "COMPLETEAGENT", "COMPLETECALLER"})
#: Reasons an AGI argument may name (passed right after Queue() returned).
ARGUMENT_REASONS = frozenset(
    {"TIMEOUT", "JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL", "LEAVEUNAVAIL", "FULL", "EXITWITHKEY", "ABANDON", "EXITEMPTY"}
)


class Verdict(Frozen):
    __slots__ = (  # noqa: RUF023
        "missed", "queue", "reason", "path", "wait_seconds", "position", "entered_at", "ended_at", "caller_num",
        "did", "source",
    )  # fmt: skip

    def __init__(
        self,
        missed: bool,
        queue: str,
        reason: str = "",
        path: tuple[str, ...] = (),
        wait_seconds: int | None = None,
        position: int | None = None,
        entered_at: int | None = None,  # epoch seconds
        ended_at: int | None = None,
        caller_num: str = "",
        did: str = "",
        source: str = "queue_log",  # what the verdict rests on: "queue_log" or "channel"
    ) -> None:
        # Field by field, not _set(**...): the sweeper makes one per call of a million-line log.
        put = object.__setattr__
        put(self, "missed", missed)
        put(self, "queue", queue)
        put(self, "reason", reason)
        put(self, "path", path)
        put(self, "wait_seconds", wait_seconds)
        put(self, "position", position)
        put(self, "entered_at", entered_at)
        put(self, "ended_at", ended_at)
        put(self, "caller_num", caller_num)
        put(self, "did", did)
        put(self, "source", source)


def _int(text: str) -> int | None:
    # queue_log and channel variables are outside input: missedcall.text's digit guard.
    return small_int(text.strip())


def _exit_numbers(event: QueueLogEvent) -> tuple[int | None, int | None]:
    """(position, wait seconds) of an exit line."""
    data = event.data
    if event.event == "EXITWITHKEY":
        # EXITWITHKEY|key|position|origposition|waittime
        data = data[1:]
    position = _int(data[0]) if len(data) > 0 else None
    wait = _int(data[2]) if len(data) > 2 else None
    return position, wait


def path_of(events: Sequence[QueueLogEvent]) -> tuple[str, ...]:
    """The queues the call entered, in order, repeated entries of the same queue folded."""
    path: list[str] = []
    for event in events:
        if event.event == "ENTERQUEUE" and event.queue and (not path or path[-1] != event.queue):
            path.append(event.queue)
    return tuple(path)


def judge_events(events: Sequence[QueueLogEvent]) -> Verdict | None:
    """The verdict on one call's lines (oldest first); None while the call has no exit line."""
    # One pass (the sweeper judges a hundred thousand calls a run). By position, not events.index():
    # two identical lines (a duplicated log line) compare equal.
    last = first_enter = None
    waiting_again = answered = False  # an ENTERQUEUE after the last exit: it is waiting in the next queue
    path: list[str] = []
    did = ""
    for event in events:
        name = event.event
        if name in EXIT_EVENTS:
            last, waiting_again = event, False
            if name in ANSWER_EVENTS:
                answered = True
        elif name == "ENTERQUEUE":
            waiting_again = True
            if first_enter is None:
                first_enter = event
            queue = event.queue
            if queue and (not path or path[-1] != queue):  # repeated entries of the same queue folded
                path.append(queue)
        elif name == "DID" and event.data:
            did = event.data[0]  # the last one: the number dialled into the queue that decided
    if last is None or waiting_again:
        return None
    entered_at = first_enter.time if first_enter is not None else None
    caller_num = ""
    if first_enter is not None and len(first_enter.data) >= 2:
        # ENTERQUEUE|url|callerid|position: a "|" in the caller ID shifts the fields,
        # so the caller ID is everything between the URL and the position.
        data = first_enter.data
        caller_num = "|".join(data[1:-1]) if len(data) > 2 else data[1]
    queue = last.queue or (path[-1] if path else "")
    if answered:
        return Verdict(
            missed=False,
            queue=queue,
            path=tuple(path),
            entered_at=entered_at,
            ended_at=last.time,
            caller_num=caller_num,
            did=did,
        )
    position, wait = _exit_numbers(last)
    return Verdict(
        missed=True,
        queue=queue,
        reason=_EXIT_REASON.get(last.event, last.event),
        path=tuple(path) or (queue,),
        wait_seconds=wait,
        position=position,
        entered_at=entered_at,
        ended_at=last.time,
        caller_num=caller_num,
        did=did,
    )


def judge_channel(queue: str, *, reason_arg: str, abandoned: str, position: str = "") -> Verdict:
    """The fallback verdict from what the channel knows about its last queue."""
    reason = ""
    if reason_arg:
        reason = reason_arg
    elif abandoned.strip().upper() == "TRUE":
        reason = "ABANDON"
    return Verdict(
        missed=bool(reason),
        queue=queue,
        reason=reason,
        path=(queue,) if queue else (),
        position=_int(position),
        source="channel",
    )


_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def clean_id(text: str) -> str:
    """Callids and queue names as they may appear in a row or a header: no separators, bounded.

    Each character outside ``[A-Za-z0-9._-]`` becomes "_" (no regex: the AGI calls this first thing).
    """
    text = text.strip()[:64]  # one character for one: cutting first changes nothing
    if _ID_CHARS.issuperset(text):
        return text
    return "".join(ch if ch in _ID_CHARS else "_" for ch in text)


def _when(epoch: int | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)


def call_record(
    callid: str,
    judged: Verdict,
    *,
    source: str,
    now: datetime,
    queue_fallback: str = "",
    linkedid: str = "",
    caller_num: str = "",
    caller_name: str = "",
    entered_fallback: int | None = None,
) -> CallRecord:
    """The row for a missed verdict, built alike by both detectors (the AGI hook and the sweeper).

    ``caller_num`` (the AGI's header) wins over the queue_log's; ``entered_fallback``
    (FreePBX's QUEUEJOINTIME) stands in when no ENTERQUEUE line was seen; without a
    wait in the exit line, the wait runs from entering to ``now``.
    """
    from missedcall.record.model import CallRecord

    entered = _when(judged.entered_at) or _when(entered_fallback)
    wait = judged.wait_seconds
    if wait is None and entered is not None:
        wait = max(0, int((now - entered).total_seconds()))
    return CallRecord(
        callid=clean_id(callid),
        linkedid=clean_id(linkedid),
        queue=clean_id(judged.queue) or queue_fallback or "unknown",
        path=tuple(clean_id(q) for q in judged.path),
        caller_num=caller_num or judged.caller_num,
        caller_name=caller_name,
        reason=judged.reason,
        wait_seconds=wait,
        position=judged.position,
        entered_at=entered,
        ended_at=_when(judged.ended_at) or now,
        source=source,
        extra={"did": judged.did} if judged.did else {},
    )
