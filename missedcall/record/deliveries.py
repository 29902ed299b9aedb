"""Chat targets in the tables: their URLs in ``missedcall_recipients.target`` and, per call, which target
has the notification already (``missedcall_deliveries``). Every query on them.

A call that has a chat target gets one ``missedcall_deliveries`` row per
target key (mail addresses included): ``sent``, ``failed`` (a permanent
refusal, with its reason) or ``pending``. ``retry`` sends only to the keys that
are not ``sent`` yet, so a Telegram 5xx never mails the team twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from missedcall.record.db import DuplicateError
from missedcall.record.model import utcnow
from missedcall.record.storage import Store

_CHUNK = 500


def states(store: Store, callid: str) -> dict[str, tuple[str, str]]:
    """{target key: (status, last_error)} of one call."""
    rows = store.rows("SELECT target, status, last_error FROM missedcall_deliveries WHERE callid = ?", (callid,))
    return {str(r[0]): (str(r[1]), str(r[2] or "")) for r in rows}


def mark(store: Store, callid: str, key: str, status: str, error: str = "", now: datetime | None = None,
         ref: str = "") -> None:
    """Record one target's outcome for one call (insert or update); ``ref``: the message's id, when given."""
    now = now or utcnow()
    error = error[:512]
    update = (
        "UPDATE missedcall_deliveries SET status = ?, last_error = ?, updated_at = ?, ref = CASE WHEN ? = '' THEN ref"
        " ELSE ? END WHERE callid = ? AND target = ?"
    )
    values = (status, error, now, ref[:64], ref[:64], callid, key)
    if store.execute(update, values).rowcount:
        return
    try:
        store.execute(
            "INSERT INTO missedcall_deliveries (callid, target, status, last_error, updated_at, ref)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (callid, key, status, error, now, ref[:64]),
        )
    except DuplicateError:  # another process inserted it meanwhile: ours is the later word
        store.execute(update, values)


def delivered(store: Store, callid: str) -> list[tuple[str, str]]:
    """(target key, ref) of every target that has this call, for follow-ups."""
    rows = store.rows(
        "SELECT target, ref FROM missedcall_deliveries WHERE callid = ? AND status = 'sent' ORDER BY target", (callid,)
    )
    return [(str(r[0]), str(r[1] or "")) for r in rows]


def urls(store: Store, keys: Sequence[str]) -> dict[str, str]:
    """{key: stored target} for the URL targets among ``keys`` (the ``target`` column)."""
    found: dict[str, str] = {}
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), _CHUNK):
        part = wanted[start : start + _CHUNK]
        marks = ", ".join("?" for _ in part)
        for key, target in store.rows(
            f"SELECT email, target FROM missedcall_recipients WHERE email IN ({marks}) AND target <> ''", part
        ):
            found[str(key)] = str(target)
    return found


def add(store: Store, queue: str, key: str, target: str, name: str, now: datetime | None = None) -> bool:
    """Add a recipient row for a target; False when (queue, key) is already there."""
    try:
        store.execute(
            "INSERT INTO missedcall_recipients (queue, email, name, created_at, target) VALUES (?, ?, ?, ?, ?)",
            (queue, key, name, now or utcnow(), target),
        )
    except DuplicateError:
        return False
    return True


def rename(store: Store, old_key: str, new_key: str) -> int:
    """A chat that moved (Telegram's migrate_to_chat_id): every row of ``old_key`` becomes ``new_key``.

    A queue that already has ``new_key`` just loses the old row. Returns the rows changed.
    """
    changed = 0
    with store.transaction():
        rows = store.rows("SELECT id, queue FROM missedcall_recipients WHERE email = ?", (old_key,))
        for row_id, queue in rows:
            if store.rows("SELECT 1 FROM missedcall_recipients WHERE queue = ? AND email = ?", (queue, new_key)):
                store.execute("DELETE FROM missedcall_recipients WHERE id = ?", (row_id,))
            else:
                store.execute("UPDATE missedcall_recipients SET email = ? WHERE id = ?", (new_key, row_id))
            changed += 1
    return changed


def requeue_failed(store: Store, now: datetime) -> int:
    """``retry --failed``: targets that refused a call are tried again, and their calls go back to pending."""
    if not store.table_exists("missedcall_deliveries"):
        return 0  # tables from before chat targets: nothing to requeue
    cursor = store.execute(
        "UPDATE missedcall_calls SET status = 'pending', attempts = 0, next_attempt_at = ?"
        " WHERE status = 'failed' AND EXISTS (SELECT 1 FROM missedcall_deliveries d"
        " WHERE d.callid = missedcall_calls.callid AND d.status = 'failed')",
        (now,),
    )
    calls = max(0, cursor.rowcount or 0)
    store.execute("UPDATE missedcall_deliveries SET status = 'pending' WHERE status = 'failed'")
    return calls


def failed(store: Store, limit: int = 5) -> list[tuple[str, int, str]]:
    """(target key, calls, latest reason) of targets that refused calls, for doctor."""
    rows = store.rows(
        "SELECT target, COUNT(*), MAX(last_error) FROM missedcall_deliveries WHERE status = 'failed'"
        f" GROUP BY target ORDER BY target LIMIT {int(limit)}"
    )
    return [(str(r[0]), int(r[1]), str(r[2] or "")) for r in rows]


def distinct_targets(store: Store) -> list[tuple[str, str]]:
    """Every distinct chat (key, stored target) in the recipients, for doctor."""
    rows = store.rows(
        "SELECT DISTINCT email, target FROM missedcall_recipients WHERE target <> '' OR email LIKE ? ORDER BY email",
        ("telegram:%",),  # a parameter: pymysql would read a literal % as a format character
    )
    return [(str(r[0]), str(r[1] or "")) for r in rows]
