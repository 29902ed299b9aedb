"""Did the caller leave a voicemail after the queue? Asked by the sweeper before it mails a miss.

On FreePBX a queue's failover to voicemail leaves ``[ext-queues]``, so the hook never
runs for that call and never sees ``VMSTATUS``; the sweeper mails it from queue_log.
By then Asterisk has written the caller's CDR, whose ``lastapp`` is ``VoiceMail``: one
indexed lookup in FreePBX's CDR table, or a look at the end of Master.csv. Best effort
and bounded: any trouble reads as "no voicemail", and the miss is mailed as before.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from missedcall import log
from missedcall.config import ConfigError, Settings
from missedcall.record.model import CallRecord

if TYPE_CHECKING:
    from missedcall.record.storage import Store
    from missedcall.resolve.settings import CdrSource

#: How much of the end of Master.csv is read: the rows of the last minutes on a busy PBX.
CSV_TAIL = 512 * 1024
#: CDR rows are stamped with the call's start: look back this far before the queue entry.
MARGIN = timedelta(minutes=10)


def mark(store: Store, settings: Settings, call: CallRecord) -> None:
    """Set ``call.voicemail`` (and its row's) from the CDR before the sweeper mails it; never raises."""
    if call.voicemail or not left(settings, call):
        return
    call.voicemail = True
    try:
        store.update_call(call.callid, voicemail=1)
    except Exception as exc:  # the mail still says so; only the stored flag is missing
        log.warning(f"call {call.callid}: voicemail not stored: {exc.__class__.__name__}")


def left(settings: Settings, call: CallRecord) -> bool:
    """True when the call's CDR shows it ended in VoiceMail; False when not, or when nobody can tell."""
    from missedcall.resolve.settings import cdr_source

    ids = [i for i in (call.callid, call.linkedid) if i]
    start = (call.entered_at or call.ended_at or datetime.now(timezone.utc)) - MARGIN
    try:
        source = cdr_source(settings)
        if source.kind == "mysql" and source.target is not None:
            return _mysql(source, ids, start)
        if source.kind == "csv":
            return _csv(source.path, ids)
    except (ConfigError, OSError, ValueError) as exc:
        log.warning(f"call {call.callid}: cannot tell whether a voicemail was left: {exc}")
    except Exception as exc:  # the CDR is a nicety here: never a reason not to mail
        log.warning(f"call {call.callid}: cannot tell whether a voicemail was left: {exc.__class__.__name__}")
    return False


def _mysql(source: CdrSource, ids: list[str], start: datetime) -> bool:
    from missedcall.record import cdr
    from missedcall.record.db import Database, StorageError

    assert source.target is not None
    zone = source.zone()
    since = (start.astimezone(zone) if zone else start.astimezone()).replace(tzinfo=None)
    try:
        with Database.open(source.target, timeout=5.0, create=False) as db:
            return cdr.voicemail_left(db, source.table, ids, since)
    except StorageError as exc:
        raise ValueError(f"CDR {source.describe()}: {exc}") from None


def _csv(path: str, ids: list[str]) -> bool:
    from missedcall.resolve import cdrcsv

    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - CSV_TAIL))
        data = handle.read(CSV_TAIL)
    text = data.decode("utf-8", errors="replace")
    if size > CSV_TAIL:
        text = text.split("\n", 1)[-1]  # the first line is cut: skip it
    wanted = set(ids)
    for row in cdrcsv.parse_text(text):
        if row.lastapp == "VoiceMail" and (row.uniqueid in wanted or (row.linkedid and row.linkedid in wanted)):
            return True
    return False
