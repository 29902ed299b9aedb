"""The notifier's gate to business hours: cheap for a queue without hours, which never imports their code.

A queue's hours are its own or the ``*`` row's (both come with the per-queue
settings query), else FreePBX's Time Groups (one read-only query, on FreePBX only).
Only when one of them exists is missedcall.deliver.afterhours (and the schedule
parser) imported.
"""

from __future__ import annotations

from datetime import tzinfo

from missedcall import log
from missedcall.config import Settings
from missedcall.record import queues
from missedcall.record.model import CallRecord
from missedcall.record.queues import QueueSettings
from missedcall.record.storage import Store

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from missedcall.deliver.afterhours import Closed


def closed_now(
    call: CallRecord, settings: Settings, store: Store | None, own: QueueSettings | None, zone: tzinfo | None
) -> Closed | None:
    """Business hours: None when the queue is open (or has no hours); the hours' code is imported only if it has."""
    if store is None or own is None:
        return None  # offline: no schedule known, mailed as always
    # FreePBX's tables are read only on FreePBX: elsewhere the query could only fail, on every call.
    rules = queues.freepbx_hours(store, call.queue) if settings.is_freepbx and own.hours_source != "queue" else None
    if not own.hours and not rules:
        return None
    from missedcall.deliver import afterhours

    try:
        schedule, holidays, where = afterhours.schedule_of(own.hours, rules, own.hours_source)
        return afterhours.judge(call, schedule, holidays, where, settings, zone)
    except Exception as exc:  # business hours never cost a mail: mailed as if open
        log.error(f"call {call.callid}: business hours not judged ({exc.__class__.__name__}: {exc}); mailed")
        return None
