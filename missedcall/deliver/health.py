"""How delivery stands, for doctor: failed calls, calls stuck pending, parked items, the spool.

Read-only; ``retry`` does the work (missedcall.deliver.retry) and this module reports on what it left.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from missedcall import text
from missedcall.config import Settings
from missedcall.deliver import followup, spool, targets
from missedcall.deliver.retry import PARKED
from missedcall.record import followups, held
from missedcall.record.db import StorageError
from missedcall.record.model import utcnow
from missedcall.record.storage import Store


def health(store: Store, settings: Settings, *, now: datetime | None = None) -> tuple[str, str, str]:
    """(OK|WARN|FAIL, detail, fix) about delivery, for doctor: failed calls, stuck pending ones, the spool."""
    now = now or utcnow()
    problems: list[str] = []
    status = "OK"
    try:
        counts = store.status_counts()
    except StorageError as exc:
        return "WARN", f"cannot count calls: {exc}", "missedcall-admin init"
    if counts.get("failed"):
        status = "WARN"
        last = store.calls(status="failed", limit=1)
        why = f" (latest: {last[0].last_error[:120]})" if last and last[0].last_error else ""
        problems.append(f"{counts['failed']} call(s) failed{why}")
    stale = store.overdue(now - timedelta(minutes=10))
    if stale:
        status = "WARN"
        problems.append(f"{stale} pending call(s) overdue by 10+ minutes (is retry running from cron?)")
    spooled, oldest = spool.count(settings.spool_dir)
    if spooled:
        age = int(now.timestamp() - (oldest or now.timestamp()))
        if age > 10 * 60:
            status = "WARN"
        problems.append(f"{spooled} call(s) in the spool {settings.spool_dir}, oldest {age // 60} min")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no calls yet"
    poisoned = _poisoned(store, settings, counts.get("failed", 0))
    if poisoned:
        fix = (
            "read the reason, fix or delete the item (a bad-… spool file can be deleted once read,"
            " a bad recipient replaced with missedcall-admin recipients remove/add);"
            " then: missedcall-admin retry --failed"
        )
        return "FAIL", "; ".join([*poisoned, *problems]), fix
    if status == "OK":
        return "OK", f"calls: {summary}" + (f"; {problems[0]}" if problems else ""), ""
    fix = "missedcall-admin log --status failed; fix the cause (see last_error), then: missedcall-admin retry --failed"
    return status, "; ".join(problems), fix


def _poisoned(store: Store, settings: Settings, failed: int) -> list[str]:
    """Items a run parked after an unexpected error, each named with its reason."""
    found: list[str] = []
    if failed:
        for call in store.calls(status="failed", limit=200):
            if PARKED in call.last_error:
                found.append(f"call {call.callid} parked ({call.last_error[:160]})")
    for email, n, error in held.failed_digests(store):
        if PARKED in error:
            found.append(f"digest to {email} ({n} call(s)) parked ({error[:160]})")
    try:
        parked_followups = [(k, e) for k, e in followups.failed(store) if e.startswith(followup.PARKED)]
    except StorageError:
        parked_followups = []  # tables older than schema 5: nothing of ours to report
    for key, error in parked_followups:
        found.append(f"follow-up of call {key} parked ({error[:160]})")
    for queue, email in store.recipient_rows():
        problem = targets.problem(email)
        if problem:
            shown = text.printable(email, limit=254, replace="?")
            found.append(f"recipient {shown!r} of queue {queue} is skipped: it {problem}")
    bad = spool.bad_files(settings.spool_dir)
    if bad:
        shown = ", ".join(bad[:5]) + (", …" if len(bad) > 5 else "")
        found.append(f"{len(bad)} spool file(s) set aside in {settings.spool_dir}: {shown}")
    return found
