"""doctor's business-hours check: MISSEDCALL_AFTER_HOURS readable, every stored schedule readable.

Silent on a box with no hours set and the setting fine, so a plain install's report stays as it was."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from missedcall.admin.checks_access import FAIL, OK, WARN, Check
from missedcall.config import ConfigError, shown
from missedcall.deliver import afterhours, hours
from missedcall.record import queues
from missedcall.record.db import StorageError

if TYPE_CHECKING:
    from missedcall.admin.doctor import Doctor


def check_hours(doc: Doctor) -> Check | None:
    name = "business hours"
    if doc.settings is None:
        return None
    try:
        mode = afterhours.mode(doc.settings)
    except ConfigError as exc:
        return Check(FAIL, name, str(exc), "set MISSEDCALL_AFTER_HOURS to digest, mail or ignore")
    if doc.store is None:
        return None
    try:
        rows = queues.stored_hours(doc.store)
    except StorageError:
        return None  # an older schema: the database check already says so
    for queue, stored in rows:
        schedule, holidays = queues.split_hours(str(stored or ""))
        try:
            hours.parse_schedule(schedule, holidays, where=f"queue {queue}")
        except hours.HoursError as exc:
            return Check(
                WARN, name, f"{shown(str(exc), 200)}: its calls are handled as within hours",
                f"missedcall-admin hours set {shlex.quote(str(queue))} 'mon-fri 09:00-18:00'",
            )  # fmt: skip
    if not rows:
        return None  # nothing set: nothing to say (FreePBX's Time Groups are read where a route has them)
    return Check(OK, name, f"{len(rows)} schedule(s) readable; outside hours: {mode}")
