"""A miss outside business hours: MISSEDCALL_AFTER_HOURS says whether it is mailed, summarised or only recorded.

``digest`` (the default) holds the call for every recipient until the queue
opens again: ``retry`` then sends each recipient one morning summary (the
storm-control digest, missedcall.deliver.digest); ``mail`` mails at once as if
the queue were open; ``ignore`` records the call ``skipped`` with the reason.

The schedule is judged at the moment the call ended, in MISSEDCALL_TIMEZONE,
so a call retried later is judged as it happened. A schedule that cannot be
read never costs a mail: the call is treated as in hours, and the log says so.
The notifier imports this module (and missedcall.deliver.hours) only for a
queue that has a schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo

from missedcall import log
from missedcall.config import ConfigError, Settings
from missedcall.deliver import hours
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.queues import split_hours

KEY = "MISSEDCALL_AFTER_HOURS"
MODES = ("digest", "mail", "ignore")


def mode(settings: Settings) -> str:
    """MISSEDCALL_AFTER_HOURS, checked: digest (the default), mail or ignore."""
    value = str(settings.raw.get(KEY, "") or "digest").strip().lower()
    if value not in MODES:
        raise ConfigError(f"{KEY}: {value[:40]!r} is not one of {', '.join(MODES)}")
    return value


@dataclass(frozen=True)
class Closed:
    """The queue was closed when the call ended: what to do, why, and when it opens again (UTC)."""

    mode: str
    reason: str
    opens_at: datetime | None


def schedule_of(stored: str, freepbx_rules: Sequence[str] | None, source: str) -> tuple[str, str, str]:
    """(schedule, holidays, where): ours when set for the queue, else FreePBX's Time Groups, else ``*``'s."""
    if source == "queue" or not freepbx_rules:
        schedule, holidays = split_hours(stored)
        return schedule, holidays, "queue" if source == "queue" else source
    return ";".join(freepbx_rules), "", "freepbx"


def judge(
    call: CallRecord, schedule: str, holidays: str, where: str, settings: Settings, zone: tzinfo | None
) -> Closed | None:
    """None when the call ended within hours (or no schedule applies); otherwise what to do with it."""
    if not schedule:
        return None
    try:
        parsed = hours.parse_schedule(schedule, holidays, where=f"hours of queue {call.queue} ({where})")
        what = mode(settings)
    except (hours.HoursError, ConfigError) as exc:
        log.warning(f"call {call.callid}: {exc}; handled as within business hours")
        return None
    ended = call.ended_at or call.entered_at or utcnow()
    if ended.tzinfo is None:
        ended = ended.replace(tzinfo=timezone.utc)
    local = ended.astimezone(zone)
    if parsed.is_open(local):
        return None
    opens = parsed.next_open(local)
    opens_utc = opens.astimezone(timezone.utc) if opens is not None else None
    when = f"{opens:%Y-%m-%d %H:%M}" if opens is not None else "not within a year"
    reason = f"outside business hours of queue {call.queue} ({where}); opens {when}"
    return Closed(what, f"{reason}; {KEY}={what}", opens_utc)
