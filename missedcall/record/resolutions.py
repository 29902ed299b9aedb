"""How misses ended: the open ones the resolver watches, recording a resolution, and the report's rows.

A resolution is written once: the UPDATE only touches a row that is still open,
so two resolvers running at once (cron overlapping a manual ``resolve``) cannot
both claim a call, and a follow-up is queued at most once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from missedcall.record.model import CALL_COLUMNS, CallRecord, clip, from_row
from missedcall.record.storage import Store

#: The delivery states in which recipients got the alert (its own mail, or a digest for held ones).
MAILED = ("sent", "held")


def _select(store: Store, clause: str, params: Iterable[Any]) -> list[CallRecord]:
    rows = store.rows(f"SELECT {', '.join(CALL_COLUMNS)} FROM missedcall_calls {clause}", tuple(params))
    return [from_row(row) for row in rows]


def open_misses(store: Store, since: datetime, *, limit: int = 100_000) -> list[CallRecord]:
    """Misses still open that ended at or after ``since``, oldest first (index resolution, ended_at)."""
    return _select(store, f"WHERE resolution = '' AND ended_at >= ? ORDER BY ended_at, id LIMIT {int(limit)}", (since,))


def miss_ids_since(store: Store, since: datetime) -> set[str]:
    """callid and linkedid of every miss recorded since ``since``: their own CDR rows never resolve anything
    (a queue answers the channel, so an abandoned call's CDR reads ANSWERED)."""
    rows = store.rows("SELECT callid, linkedid FROM missedcall_calls WHERE ended_at >= ?", (since,))
    return {str(value) for row in rows for value in row if value}


def record_resolution(
    store: Store, callid: str, *, resolution: str, at: datetime, by: str, talk_seconds: int, followup_on: bool
) -> bool:
    """Mark an open miss resolved; False when it was not open any more. ``followup`` becomes 'pending' when
    follow-ups are on and the alert went out (status sent or held), else 'off'."""
    marks = ", ".join("?" for _ in MAILED)
    cursor = store.execute(
        "UPDATE missedcall_calls SET resolution = ?, resolved_at = ?, resolved_by = ?, talk_seconds = ?,"
        f" followup = CASE WHEN ? = 1 AND status IN ({marks}) THEN 'pending' ELSE 'off' END"
        " WHERE callid = ? AND resolution = ''",
        (
            clip("resolution", resolution),
            at,
            clip("resolved_by", by),
            max(0, min(int(talk_seconds), 10**7 - 1)),
            1 if followup_on else 0,
            *MAILED,
            callid,
        ),
    )
    return (cursor.rowcount or 0) > 0


def report_calls(
    store: Store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    queue: str | None = None,
    resolution: str | None = None,
    limit: int = 100_000,
) -> list[CallRecord]:
    """Calls for the report, oldest first; ``resolution`` "" = the open ones."""
    clauses: list[str] = ["ended_at IS NOT NULL"]
    params: list[Any] = []
    if since is not None:
        clauses.append("ended_at >= ?")
        params.append(since)
    if until is not None:
        clauses.append("ended_at < ?")
        params.append(until)
    if queue is not None:
        clauses.append("queue = ?")
        params.append(queue)
    if resolution is not None:
        clauses.append("resolution = ?")
        params.append(resolution)
    where = "WHERE " + " AND ".join(clauses)
    return _select(store, f"{where} ORDER BY ended_at, id LIMIT {int(limit)}", params)
