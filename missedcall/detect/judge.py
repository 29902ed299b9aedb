"""From one AGI session to the missed call it reports, or to nothing: the step both detectors at hang-up share.

The process hook (missedcall.detect.hook) and the FastAGI service (missedcall.detect.fastagi_work)
read the same arguments and channel variables, judge the call from queue_log first and the channel
second, and build the same row; this is that step, once. Pure but for reading queue_log. On the
hook's path: no typing, no dataclasses, nothing compiled at import.
"""

from __future__ import annotations

from datetime import datetime, timezone

from missedcall.detect import queuelog, verdict
from missedcall.detect.agiproto import header_value
from missedcall.text import epoch, printable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from missedcall.record.model import CallRecord

#: Everything the verdict or the row may need, asked in one round trip. VMSTATUS: app_voicemail's
#: outcome, SUCCESS when the caller left a message after the queue.
ASKED = ("${ABANDONED}", "${QUEUEPOSITION}", "${CHANNEL(linkedid)}", "${QUEUEJOINTIME}", "${VMSTATUS}")


def missed_call(
    env: Mapping[str, str], argv: Sequence[str], values: Sequence[str], queue_log: str, *, quiet_answer: bool = True
) -> tuple[CallRecord | None, list[tuple[str, bool]]]:
    """(the call's row when it was missed, else None; the lines to report, each with "is it an error").

    ``values`` answer :data:`ASKED` (missing ones count as empty). ``quiet_answer``: an answered call
    is reported as information, not as an error (it is an error only where the settings are broken
    and the call could not even be looked at properly).
    """
    notes: list[tuple[str, bool]] = []
    queue_arg = verdict.clean_id(argv[0]) if argv else ""
    reason_arg = argv[1].strip().upper() if len(argv) > 1 else ""
    if reason_arg and reason_arg not in verdict.ARGUMENT_REASONS:
        notes.append((f"ignoring unknown REASON argument {verdict.clean_id(reason_arg)!r}", True))
        reason_arg = ""
    callid = verdict.clean_id(env.get("agi_uniqueid", ""))
    if not callid:
        notes.append(("no agi_uniqueid in the AGI headers; nothing to record", True))
        return None, notes
    abandoned, position, linkedid, jointime, vmstatus = (list(values) + [""] * len(ASKED))[: len(ASKED)]
    events = queuelog.read_call_events(queue_log, callid)
    judged = verdict.judge_events(events) if events else None
    if judged is None:
        judged = verdict.judge_channel(queue_arg, reason_arg=reason_arg, abandoned=abandoned, position=position)
    if not judged.missed:
        notes.append((f"call {callid}: answered or not missed; nothing to do", not quiet_answer))
        return None, notes
    # FreePBX's join time, from the channel: a time before 2000 or in the future is not believed
    # (a 12-digit one would raise in datetime).
    joined = epoch(jointime.strip()) if jointime.strip() else None
    if jointime.strip() and joined is None:
        notes.append((f"call {callid}: ignoring QUEUEJOINTIME {printable(jointime, limit=24)!r}: not a plausible time",
                      False))  # fmt: skip
    call = verdict.call_record(
        callid,
        judged,
        source="agi",
        now=datetime.now(timezone.utc).replace(microsecond=0),
        queue_fallback=queue_arg,
        linkedid=linkedid,
        caller_num=header_value(env, "agi_callerid"),
        caller_name=header_value(env, "agi_calleridname"),
        entered_fallback=joined,
    )
    call.voicemail = vmstatus.strip() == "SUCCESS"
    return call, notes
