"""One resolver pass: watch the open misses, read the CDR, record who called back or got through.

Run by ``retry``'s minute run (isolated there: a failure here never stops mail
retries) and alone by ``missedcall-admin resolve``. Each pass:

1. takes the misses still open that ended within MISSEDCALL_RESOLVE_HOURS;
2. reads the CDR rows that may resolve them: from MariaDB one indexed query
   over that window (missedcall.record.cdr), from Master.csv the lines appended
   since the last pass *plus the last few passes' lines again*, because a miss
   the sweeper records a minute late must still see a callback that was
   written before it was recorded;
3. matches them (missedcall.resolve.match) and records each resolution; a
   callback resolves every open miss of that number.

A CDR row that does not read as one, and a miss whose update fails, is logged
with its id and skipped; the others go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from missedcall import log
from missedcall.config import Settings
from missedcall.record import resolutions
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.schema import SCHEMA_VERSION
from missedcall.record.storage import Store
from missedcall.resolve import match
from missedcall.resolve import settings as keys
from missedcall.resolve.settings import CdrSource

CSV_STATE = "cdr_csv_position"
#: Master.csv passes re-read each time (see step 2 above): about this many minutes of CDR.
CSV_REREAD = 5
#: Chunks (cdrcsv.CHUNK each) read from Master.csv in one pass at most; the next pass goes on.
CSV_MAX_CHUNKS = 8
#: Extra CDR time read before the oldest open miss: a DST change shifts a local calldate by an hour.
MARGIN = timedelta(hours=1)
#: Resolutions written per transaction.
RECORD_BATCH = 500


class CdrError(RuntimeError):
    """The CDR source could not be read; the message has no secret."""


@dataclass
class Outcome:
    source: str = "off"
    watched: int = 0  # open misses looked at
    rows: int = 0  # CDR rows that could match one
    bad_rows: int = 0  # rows that did not read as CDR
    called_back: int = 0
    got_through: int = 0
    failed: list[str] = field(default_factory=list)  # callids whose update failed
    resolved: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        if self.source == "off":
            return "resolve: off (no CDR source; see MISSEDCALL_CDR_URL)"
        verb = "would be" if self.dry_run else ""
        parts = [
            f"{self.watched} open miss(es) watched",
            f"{self.rows} CDR row(s) read",
            f"{self.called_back} called back",
            f"{self.got_through} got through",
        ]
        if verb:
            parts[-2] = f"{self.called_back} {verb} called back"
            parts[-1] = f"{self.got_through} {verb} got through"
        if self.bad_rows:
            parts.append(f"{self.bad_rows} unreadable CDR row(s) skipped")
        if self.failed:
            parts.append(f"{len(self.failed)} could not be recorded: {', '.join(self.failed[:5])}")
        return f"resolve ({self.source}): " + ", ".join(parts) + (" (dry run)" if self.dry_run else "")


def run(store: Store, settings: Settings, *, now: datetime | None = None, dry_run: bool = False) -> Outcome:
    """One pass; raises ConfigError for a bad key, CdrError when the source cannot be read, StorageError when
    our database fails."""
    now = now or utcnow()
    source = keys.cdr_source(settings)
    region = keys.region(settings)
    hours = keys.resolve_hours(settings)
    followup_on = keys.followup_enabled(settings)
    outcome = Outcome(source=source.describe(), dry_run=dry_run)
    if source.kind == "off":
        return outcome
    version = store.schema_version()
    if version is None or version < SCHEMA_VERSION:
        store.init()  # the columns resolution writes came with schema 5
    since = now - timedelta(hours=hours)
    misses = resolutions.open_misses(store, since)
    outcome.watched = len(misses)
    if source.kind == "csv":
        rows, save = _csv_rows(store, source, outcome)
    else:
        rows, save = _mysql_rows(source, misses, since, region, outcome), None
    if misses:
        own = resolutions.miss_ids_since(store, since - MARGIN)
        found = match.resolve([_open(m) for m in misses], _not_own(rows, own), region)
        _record_all(store, found, {m.callid: m for m in misses}, followup_on, outcome)
    # Without open misses a Master.csv pass still saves its position: the next miss reads from here.
    if save is not None and not dry_run:
        save()
    if outcome.called_back or outcome.got_through or outcome.failed or outcome.bad_rows:
        log.info(outcome.summary())
    return outcome


def _open(call: CallRecord) -> match.OpenMiss:
    return match.OpenMiss(call.callid, call.linkedid, call.caller_num, call.ended_at or utcnow())


def _not_own(rows: Iterable[match.CdrRow], own: set[str]) -> Iterator[match.CdrRow]:
    for row in rows:
        if row.uniqueid not in own and row.linkedid not in own:
            yield row


def _record_all(
    store: Store, found: list[match.Resolution], by_callid: dict[str, CallRecord], followup_on: bool, outcome: Outcome
) -> None:
    """Record the resolutions RECORD_BATCH to a transaction (one commit each, not one per call: on MariaDB a commit
    is a disk flush); a batch that fails is done again one call at a time, so only the bad call is left out."""
    for start in range(0, len(found), RECORD_BATCH):
        part = found[start : start + RECORD_BATCH]
        if outcome.dry_run:
            for done in part:
                _count(outcome, by_callid[done.callid], done)
            continue
        try:
            with store.transaction():
                changed = [_write(store, done, followup_on) for done in part]
        except StorageError:
            changed = []
            for done in part:
                try:
                    changed.append(_write(store, done, followup_on))
                except StorageError as exc:
                    log.error(f"resolve: call {done.callid}: could not record {done.resolution}: {exc}")
                    outcome.failed.append(done.callid)
                    changed.append(False)
        for done, wrote in zip(part, changed):
            if wrote:  # False: another resolver got there first, or it failed (counted above)
                _count(outcome, by_callid[done.callid], done)


def _write(store: Store, done: match.Resolution, followup_on: bool) -> bool:
    return resolutions.record_resolution(
        store,
        done.callid,
        resolution=done.resolution,
        at=done.at,
        by=done.by,
        talk_seconds=done.talk_seconds,
        followup_on=followup_on,
    )


def _count(outcome: Outcome, call: CallRecord, done: match.Resolution) -> None:
    if done.resolution == match.CALLED_BACK:
        outcome.called_back += 1
    else:
        outcome.got_through += 1
    outcome.resolved.append(
        {
            "callid": call.callid,
            "queue": call.queue,
            "caller": call.caller_num,
            "resolution": done.resolution,
            "resolved_at": done.at.astimezone(timezone.utc).isoformat(),
            "resolved_by": done.by,
            "talk_seconds": done.talk_seconds,
        }
    )


# --- MariaDB ----------------------------------------------------------------------------------


def _aware(value: Any, zone: tzinfo | None) -> datetime:
    if isinstance(value, str):
        value = datetime.strptime(value[:19], "%Y-%m-%d %H:%M:%S")
    if not isinstance(value, datetime):
        raise ValueError(f"calldate {str(value)[:40]!r} is not a time")
    # No zone: the box's local time, which is what Asterisk writes calldate in.
    return (value.replace(tzinfo=zone) if zone else value.astimezone()).astimezone(timezone.utc)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)[:256]


def cdr_row(values: dict[str, Any], zone: tzinfo | None) -> match.CdrRow:
    """One CDR table row as a CdrRow; raises ValueError when it does not read as one."""
    billsec = int(values["billsec"])
    if not 0 <= billsec < 10**7:
        raise ValueError(f"billsec {billsec} out of range")
    return match.CdrRow(
        start=_aware(values["calldate"], zone),
        billsec=billsec,
        **{name: _text(values[name]) for name in ("src", "dst", "cnum", "cnam", "clid", "channel", "dstchannel",
                                                   "disposition", "lastapp", "uniqueid", "linkedid")},
    )  # fmt: skip


def _suffixes(misses: list[CallRecord], region: str) -> set[str]:
    from missedcall.record.cdr import SUFFIX
    from missedcall.resolve.numbers import key

    found = set()
    for call in misses:
        number = key(call.caller_num, region)
        if number is not None and len(number.tail) >= SUFFIX:
            found.add(number.tail[-SUFFIX:])
    return found


def _mysql_rows(
    source: CdrSource, misses: list[CallRecord], since: datetime, region: str, outcome: Outcome
) -> list[match.CdrRow]:
    from missedcall.record import cdr
    from missedcall.record.db import Database

    suffixes = _suffixes(misses, region)
    if not suffixes or source.target is None:
        return []
    zone = source.zone()
    start = min(m.ended_at or since for m in misses) - MARGIN
    start_local = (start.astimezone(zone) if zone else start.astimezone()).replace(tzinfo=None)
    rows: list[match.CdrRow] = []
    try:
        with Database.open(source.target, timeout=60.0, create=False) as db:
            have = cdr.columns(db, source.table)
            for values in cdr.answered_rows(db, source.table, have, start_local, sorted(suffixes)):
                try:
                    rows.append(cdr_row(values, zone))
                except (ValueError, TypeError, KeyError, OverflowError) as exc:
                    outcome.bad_rows += 1
                    log.warning(f"resolve: CDR row {_text(values.get('uniqueid'))[:40]!r} skipped: {exc}")
    except StorageError as exc:
        raise CdrError(f"CDR {source.describe()}: {exc}") from None
    outcome.rows = len(rows)
    return rows


# --- Master.csv -------------------------------------------------------------------------------


def _csv_rows(store: Store, source: CdrSource, outcome: Outcome) -> tuple[list[match.CdrRow], Any]:
    from missedcall.resolve import cdrcsv

    state = _load_csv_state(store.get_state(CSV_STATE), source.path)
    marks: list[int] = state["marks"]
    inode = int(state["inode"])
    offset = marks[0] if marks else 0
    rows: list[match.CdrRow] = _rotated_rest(source, inode, offset)
    try:
        for _ in range(CSV_MAX_CHUNKS):
            found, new_offset, new_inode = cdrcsv.read_new(source.path, offset, inode, source.zone() or timezone.utc)
            if new_inode != inode:
                marks = []
            rows += found
            done = new_offset == offset and new_inode == inode
            offset, inode = new_offset, new_inode
            if done:
                break
    except OSError as exc:
        raise CdrError(f"CDR {source.describe()}: cannot read: {exc.strerror or exc}") from None
    outcome.rows = len(rows)
    kept = [*marks, offset][-CSV_REREAD:]
    value = json.dumps({"v": 1, "path": source.path, "inode": inode, "marks": kept})
    return rows, lambda: store.set_state(CSV_STATE, value)


def _rotated_rest(source: CdrSource, inode: int, offset: int) -> list[match.CdrRow]:
    """What was written to the file we were reading after our last pass, when logrotate has since renamed it
    to ``Master.csv.1``: a callback in the last minute before rotation still counts."""
    import os

    from missedcall.resolve import cdrcsv

    old = source.path + ".1"
    try:
        if not inode or os.stat(source.path).st_ino == inode or os.stat(old).st_ino != inode:
            return []
        return cdrcsv.read_new(old, offset, inode, source.zone() or timezone.utc)[0]
    except OSError:
        return []


def _load_csv_state(text: str | None, path: str) -> dict[str, Any]:
    fresh: dict[str, Any] = {"inode": 0, "marks": []}
    if not text:
        return fresh
    try:
        data = json.loads(text)
        marks = [int(m) for m in data["marks"]][-CSV_REREAD:]
        if data.get("path") != path or any(m < 0 for m in marks):
            return fresh
        return {"inode": int(data["inode"]), "marks": marks}
    except (ValueError, TypeError, KeyError):
        log.warning(f"resolve: saved {CSV_STATE} unreadable; reading Master.csv afresh")
        return fresh


def run_isolated(store: Store, settings: Settings, *, now: datetime | None = None) -> tuple[int, str]:
    """``run`` for retry's minute run: (misses resolved, "" or the one-line error). Never raises, so a
    resolver failure (a CDR database down, a bad key) never stops mail retries."""
    try:
        outcome = run(store, settings, now=now)
    except Exception as exc:  # the resolver is an extra: whatever it hits, retry goes on
        reason = f"{exc.__class__.__name__}: {exc}" if not isinstance(exc, (CdrError, StorageError)) else str(exc)
        log.error(f"resolve: {reason[:300]}")
        return 0, reason[:300]
    return outcome.called_back + outcome.got_through, ""
