"""Per-queue settings, ``missedcall_queues``: label, language, minimum wait and on/off for one queue.

A NULL column means "as the global settings say": a row only holds what the
admin set for that queue. The label falls back to FreePBX's own queue
description (``queues_config``), then to nothing. :func:`effective` is what the
notifier asks once per call (one query on our table, plus FreePBX's only when no
label of ours is set); :func:`listing` is what ``missedcall-admin queues`` shows,
each value with where it comes from.
"""

from __future__ import annotations

from missedcall.record.db import StorageError
from missedcall.record.model import utcnow
from missedcall.record.storage import Store
from missedcall.slots import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from typing import Any

LANGUAGES = ("en", "ru")
COLUMNS = ("label", "language", "min_wait", "enabled", "hours")
#: The text of ``hours``: the schedule, then (optionally) a line ``holidays: 01-01, 2026-12-31``.
HOURS_MAX = 1024
LABEL_MAX = 128
MIN_WAIT_MAX = 86_400


class QueueSettings(Frozen):
    """What applies to one queue, and where each value comes from ("queue", "freepbx" or "global")."""

    __slots__ = ("queue", "label", "language", "min_wait", "enabled", "sources", "hours", "hours_source")  # noqa: RUF023
    _uncompared = ("sources",)  # a dict: unhashable

    def __init__(
        self,
        queue: str,
        label: str,
        language: str,
        min_wait: int,
        enabled: bool,
        sources: dict[str, str],
        hours: str = "",
        hours_source: str = "global",
    ) -> None:
        #: hours: the business hours as stored (see :func:`split_hours`), "" for always open; hours_source
        #: says whose: "queue", "*" (the default row) or "global" (none). FreePBX's are looked up on demand.
        self._set(
            queue=queue, label=label, language=language, min_wait=min_wait, enabled=enabled, sources=sources,
            hours=hours, hours_source=hours_source,
        )  # fmt: skip


#: The one query the notifier makes per call (the FastAGI service keeps its answers a few seconds).
ROWS_SQL = f"SELECT queue, {', '.join(COLUMNS)} FROM missedcall_queues WHERE queue = ? OR queue = '*'"


def _rows(store: Store, queue: str) -> tuple[dict[str, Any] | None, str]:
    """The queue's own row and the ``*`` row's hours, in the one query the notifier makes per call."""
    try:
        rows = store.rows(ROWS_SQL, (queue,))
    except StorageError:
        return None, ""  # an older schema (init not run yet): nothing set per queue
    own = next((dict(zip(COLUMNS, r[1:])) for r in rows if str(r[0]) == queue), None)
    star = next((str(r[-1] or "") for r in rows if str(r[0]) == "*"), "")
    return own, star


def split_hours(stored: str) -> tuple[str, str]:
    """(schedule, holidays) from the stored text of ``hours``."""
    schedule, _, rest = stored.partition("\n")
    holidays = rest.strip()
    return schedule.strip(), holidays.removeprefix("holidays:").strip()


def join_hours(schedule: str, holidays: str = "") -> str:
    return f"{schedule.strip()}\nholidays: {holidays.strip()}" if holidays.strip() else schedule.strip()


def _merge(queue: str, row: dict[str, Any] | None, freepbx_label: str, language: str, min_wait: int,
           star_hours: str = "") -> QueueSettings:  # fmt: skip
    row = row or {}
    sources = {}
    label = row.get("label")
    if label is not None:
        sources["label"] = "queue"
    elif freepbx_label:
        label, sources["label"] = freepbx_label, "freepbx"
    else:
        label, sources["label"] = "", "global"
    values: dict[str, Any] = {}
    for column, default in (("language", language), ("min_wait", min_wait), ("enabled", True)):
        own = row.get(column)
        values[column] = default if own is None else own
        sources[column] = "global" if own is None else "queue"
    hours = row.get("hours") or ""
    hours_source = "queue" if hours else ("*" if star_hours and queue != "*" else "global")
    if not hours and queue != "*":
        hours = star_hours
    return QueueSettings(
        queue=queue,
        label=str(label),
        language=str(values["language"]) if values["language"] in LANGUAGES else language,
        min_wait=int(values["min_wait"]),
        enabled=bool(values["enabled"]),
        sources=sources,
        hours=str(hours),
        hours_source=hours_source,
    )


def effective(store: Store, queue: str, *, language: str, min_wait: int) -> QueueSettings:
    """The settings that apply to ``queue``, given the global ``language`` and ``min_wait``."""
    row, star_hours = _rows(store, queue)
    freepbx_label = "" if row and row.get("label") is not None else store.queue_label(queue)
    return _merge(queue, row, freepbx_label, language, min_wait, star_hours)


def listing(store: Store, queues: list[str], *, language: str, min_wait: int) -> list[QueueSettings]:
    """Effective settings of ``queues`` plus every queue that has a row of its own, sorted."""
    try:
        rows = {str(r[0]): dict(zip(COLUMNS, r[1:])) for r in store.rows(
            f"SELECT queue, {', '.join(COLUMNS)} FROM missedcall_queues"
        )}  # fmt: skip
    except StorageError:
        rows = {}
    labels = store.freepbx_queues() or {}
    star_hours = str((rows.get("*") or {}).get("hours") or "")
    names = sorted(set(queues) | set(rows) | set(labels), key=lambda q: (q == "*", q.zfill(12)))
    return [_merge(q, rows.get(q), labels.get(q, ""), language, min_wait, star_hours) for q in names]


def update(store: Store, queue: str, changes: dict[str, Any]) -> None:
    """Set (a value) or clear (None) the given columns of ``queue``'s row; the row is made when missing."""
    unknown = set(changes) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown queue setting {sorted(unknown)[0]!r}")
    now = utcnow()  # Store.execute stores times as naive UTC text on both engines
    with store.transaction():
        if not store.rows("SELECT 1 FROM missedcall_queues WHERE queue = ?", (queue,)):
            store.execute("INSERT INTO missedcall_queues (queue, updated_at) VALUES (?, ?)", (queue, now))
        if changes:
            assignments = ", ".join(f"{column} = ?" for column in changes)  # names checked against COLUMNS above
            store.execute(
                f"UPDATE missedcall_queues SET {assignments}, updated_at = ? WHERE queue = ?",
                (*changes.values(), now, queue),
            )
        # A row with nothing set is no row: `queues` then shows the queue as it was.
        store.execute(
            "DELETE FROM missedcall_queues WHERE queue = ? AND label IS NULL AND language IS NULL"
            " AND min_wait IS NULL AND enabled IS NULL AND hours IS NULL",
            (queue,),
        )


def stored_hours(store: Store) -> list[tuple[str, str]]:
    """Every (queue, stored hours) of ours, for doctor."""
    rows = store.rows("SELECT queue, hours FROM missedcall_queues WHERE hours IS NOT NULL ORDER BY queue")
    return [(str(r[0]), str(r[1] or "")) for r in rows]


def freepbx_hours(store: Store, queue: str) -> list[str] | None:
    """The Time Group rules (``09:00-18:00|mon-fri|*|*``) FreePBX applies before ``queue``, read-only.

    A rule set comes from every Time Condition whose "matched" destination is the queue and which
    an inbound route leads to. None when this is not a FreePBX database, when no route reaches the
    queue through a Time Condition, or when some inbound route reaches it directly (then FreePBX
    itself lets calls in at any hour).
    """
    if store.kind != "mysql":
        return None
    target = f"ext-queues,{queue},1"
    try:  # one query; on a database without FreePBX's tables it fails, which says "not known" just as well
        rows = store.rows(
            "SELECT 'direct', '' FROM incoming WHERE destination = ?"
            " UNION ALL SELECT 'rule', d.time FROM timeconditions tc"
            " JOIN timegroups_details d ON d.timegroupid = tc.time"
            " WHERE tc.truegoto = ? AND (tc.mode IS NULL OR tc.mode = '' OR tc.mode = 'time-group')"
            " AND EXISTS (SELECT 1 FROM incoming i WHERE i.destination ="
            " CONCAT('timeconditions,', tc.timeconditions_id, ',1'))",
            (target, target),
        )
    except StorageError:
        return None
    if any(str(r[0]) == "direct" for r in rows):
        return None
    rules = [str(r[1] or "").strip() for r in rows]
    return [r for r in rules if r] or None
