"""One pass of the queue_log sweeper: read what is new, decide, record and notify, save the position.

:class:`Sweeper` glues the reader (:mod:`missedcall.detect.tail`), the call book
(:mod:`missedcall.detect.book`) and the saved state (:mod:`missedcall.detect.sweepstate`)
to the database. Each missed call is judged with the same verdict as the hook
(:func:`missedcall.detect.verdict.judge_events`) and recorded and notified through
the same notifier (:func:`missedcall.deliver.notify.notify`) with ``source='queue_log'``.
Whoever records a call first owns it, so the two detectors never mail twice.

Position and pending lines are saved together after the calls they imply were
recorded. A run that dies half-way re-reads the same lines next time; claims
are idempotent, so nothing is mailed twice.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Callable

from missedcall import log
from missedcall.config import Settings
from missedcall.deliver import notify
from missedcall.detect import mailedmark, queuelog, verdict
from missedcall.detect.book import HORIZON, MAX_OPEN_CALLS, Book, Decided
from missedcall.detect.queuelog import QueueLogEvent
from missedcall.detect.sweepstate import SavedState, load_state, save_state
from missedcall.detect.tail import READ_CHUNK, Tail
from missedcall.record.db import StorageError
from missedcall.record.storage import Store
from missedcall.resolve import voicemail
from missedcall.text import printable

DEFAULT_GRACE = 60
CORRECTED = "answered later (queue_log CONNECT)"
MAILED_BY_HOOK = "mailed by the AGI while nothing could be recorded (disk full?); not mailed again"


#: last_error of a call that ``sweep --record-only`` recorded as history.
RECORD_ONLY = "recorded by sweep --record-only (history): not mailed"


@dataclass
class Stats:
    lines: int = 0
    garbage: int = 0
    unknown: int = 0
    out_of_range: int = 0
    missed: int = 0
    recorded: dict[str, int] = field(default_factory=dict)  # status -> count
    already: int = 0
    answered: int = 0
    corrected: int = 0
    handled: int = 0  # calls decided in this pass
    failed: int = 0  # ... of which raised, and were parked

    def all_failed(self) -> bool:
        return self.failed > 0 and self.failed == self.handled

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
        record_only: bool = False,
    ) -> None:
        self.settings = settings
        self.record_only = record_only
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
            # The open calls' records, as queue_log wrote them: the same parser reads them back.
            reader = queuelog.Reader(now=self.clock())
            reader.feed("\n".join(state.lines).encode("utf-8", "surrogateescape"), self.book.add)
            reader.finish(self.book.add)
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
        # Only the records a verdict needs become Python objects.
        reader = queuelog.Reader(open_calls=book.calls, now=self.clock())
        for batch in self.tail.batches():
            reader.feed(batch, book.add)
            # While reading, a line written `grace` seconds after a call's last exit decides it.
            self._handle_all(book.take_due(book.watermark - grace - 1))
            since_expire += len(batch)
            if since_expire >= 8 * READ_CHUNK:
                book.expire(book.watermark)
                since_expire = 0
        reader.finish(book.add)
        self._count(reader)
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
            self._chunks = save_state(
                self.store,
                self.settings.queue_log,
                (self.tail.mark, self.tail.prev),
                book.lines(),
                len(book.calls),
                self._chunks,
            )
        self._report()
        return stats

    def _count(self, reader: queuelog.Reader) -> None:
        stats = self.stats
        stats.lines += reader.lines
        stats.garbage += reader.garbage
        stats.unknown += reader.unknown
        stats.out_of_range += reader.out_of_range
        if self.read_from is None:
            self.read_from = reader.first_time
        if reader.out_of_range:
            self._note(
                f"skipped {reader.out_of_range} record(s) dated before 2000 or in the future"
                f" (this box's clock: {_fmt_time(int(self.clock()))}), e.g. {reader.bad_times[0]!r}"
            )

    # -- decisions

    def _handle_all(self, decided: list[Decided]) -> None:
        self.stats.answered += self.book.answered
        self.book.answered = 0
        for item in decided:
            self.stats.handled += 1
            try:
                self._handle(item)
            except StorageError:
                # The database, not the call (down, full, locked): stop before the position moves, so the
                # next run decides these calls again; claims keep that from mailing twice.
                raise
            except Exception as exc:  # one call is the unit of failure: park it, go on with the next
                self._park(item.callid, exc)

    def _park(self, callid: str, exc: Exception) -> None:
        """A call whose judging, recording or mailing raised: logged with its callid, its row (if it has
        one) failed with the reason, never tried again by this sweeper (the position moves on)."""
        self.stats.failed += 1
        reason = printable(f"sweep: {exc.__class__.__name__}: {exc}", limit=400)
        log.error(f"sweep: call {printable(callid, limit=64)}: {reason}; parked, going on with the next call")
        if self.verbose or self.dry_run:
            self._line(f"failed: {printable(callid, limit=64)}: {reason}")
        if self.dry_run or self.store is None:
            return
        try:
            row = self.store.get_call(verdict.clean_id(callid))
            if row is not None and row.status not in ("sent", "skipped"):
                self.store.update_call(row.callid, status="failed", last_error=reason)
            elif row is None:
                log.warning(f"sweep: call {printable(callid, limit=64)} has no row; nothing recorded or mailed for it")
        except StorageError as again:
            log.error(f"sweep: call {printable(callid, limit=64)}: cannot park it: {again}")

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
        if mailedmark.present(self.settings.spool_dir, call.callid):
            self._adopt(call, judged)
            return
        if self.record_only:
            # History, not news: recorded as nobody-was-told, so no mail and no storm-control window.
            call.status, call.last_error = "skipped", RECORD_ONLY
        if not self.store.claim_call(call):
            self.stats.already += 1
            if self.verbose:
                self._say("already recorded", call, judged)
            return
        if self.record_only:
            self.stats.recorded["skipped"] = self.stats.recorded.get("skipped", 0) + 1
            if self.verbose:
                self._say("recorded, not mailed (--record-only)", call, judged)
            return
        voicemail.mark(self.store, self.settings, call)  # FreePBX's failover to voicemail: only the CDR knows
        done = notify.notify(self.store, self.settings, call, timeout=self.settings.smtp_timeout)
        self.stats.recorded[done.status] = self.stats.recorded.get(done.status, 0) + 1
        log.info(
            f"sweep: missed call {call.callid} in queue {call.queue} ({call.reason}): {done.status}"
            + (f" - {done.last_error}" if done.last_error else "")
        )
        if self.verbose:
            self._say(f"recorded, {done.status}", call, judged)

    def _adopt(self, call: Any, judged: verdict.Verdict) -> None:
        """The hook mailed this call while nothing could record it (missedcall.detect.mailedmark): record it
        as sent, never mail it again."""
        assert self.store is not None
        call.status, call.attempts, call.last_error = "sent", 1, MAILED_BY_HOOK
        call.notified_at = datetime.now(timezone.utc).replace(microsecond=0)
        if self.store.claim_call(call):
            self.stats.recorded["sent"] = self.stats.recorded.get("sent", 0) + 1
            log.info(f"sweep: missed call {call.callid} was mailed by the AGI but not recorded; recorded as sent")
            if self.verbose:
                self._say("recorded as mailed by the AGI", call, judged)
        else:
            self.stats.already += 1
        mailedmark.forget(self.settings.spool_dir, call.callid)

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
        caller = printable(call.caller_num, limit=40).strip() or "-"
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
        if s.out_of_range:
            parts.append(f"skipped {s.out_of_range} record(s) dated before 2000 or in the future")
        recorded = ", ".join(f"{n} {status}" for status, n in sorted(s.recorded.items())) or "none"
        if self.dry_run:
            parts.append(f"{s.missed} missed (dry run: nothing recorded), {s.answered} answered")
        else:
            parts.append(
                f"{s.missed} missed (recorded: {recorded}; already recorded: {s.already}), "
                f"{s.answered} answered ({s.corrected} corrected)"
            )
        if s.failed:
            parts.append(f"{s.failed} call(s) failed and parked (see the log)")
        parts.append(f"open: {in_grace} within the grace period, {waiting} waiting")
        if book.dropped_waiting or book.dropped_overflow:
            parts.append(
                f"dropped {book.dropped_waiting} call(s) waiting over {HORIZON // 3600} h"
                f" and {book.dropped_overflow} over the {MAX_OPEN_CALLS} open-call limit"
            )
        return "sweep: " + "; ".join(parts)

    def _report(self) -> None:
        s = self.stats
        if s.any_calls() or s.garbage or s.unknown or s.out_of_range or s.failed:
            log.info(self.summary())
        if self.verbose or self.dry_run:
            self._line(self.summary())
