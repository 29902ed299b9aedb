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
COLUMNS = ("label", "language", "min_wait", "enabled")
LABEL_MAX = 128
MIN_WAIT_MAX = 86_400


class QueueSettings(Frozen):
    """What applies to one queue, and where each value comes from ("queue", "freepbx" or "global")."""

    __slots__ = ("queue", "label", "language", "min_wait", "enabled", "sources")  # noqa: RUF023
    _uncompared = ("sources",)  # a dict: unhashable

    def __init__(
        self, queue: str, label: str, language: str, min_wait: int, enabled: bool, sources: dict[str, str]
    ) -> None:
        self._set(queue=queue, label=label, language=language, min_wait=min_wait, enabled=enabled, sources=sources)


def _row(store: Store, queue: str) -> dict[str, Any] | None:
    try:
        rows = store.rows(f"SELECT {', '.join(COLUMNS)} FROM missedcall_queues WHERE queue = ?", (queue,))
    except StorageError:
        return None  # an older schema (init not run yet): nothing set per queue
    return dict(zip(COLUMNS, rows[0])) if rows else None


def _merge(queue: str, row: dict[str, Any] | None, freepbx_label: str, language: str, min_wait: int) -> QueueSettings:
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
    return QueueSettings(
        queue=queue,
        label=str(label),
        language=str(values["language"]) if values["language"] in LANGUAGES else language,
        min_wait=int(values["min_wait"]),
        enabled=bool(values["enabled"]),
        sources=sources,
    )


def effective(store: Store, queue: str, *, language: str, min_wait: int) -> QueueSettings:
    """The settings that apply to ``queue``, given the global ``language`` and ``min_wait``."""
    row = _row(store, queue)
    freepbx_label = "" if row and row.get("label") is not None else store.queue_label(queue)
    return _merge(queue, row, freepbx_label, language, min_wait)


def listing(store: Store, queues: list[str], *, language: str, min_wait: int) -> list[QueueSettings]:
    """Effective settings of ``queues`` plus every queue that has a row of its own, sorted."""
    try:
        rows = {str(r[0]): dict(zip(COLUMNS, r[1:])) for r in store.rows(
            f"SELECT queue, {', '.join(COLUMNS)} FROM missedcall_queues"
        )}  # fmt: skip
    except StorageError:
        rows = {}
    labels = store.freepbx_queues() or {}
    names = sorted(set(queues) | set(rows) | set(labels), key=lambda q: (q == "*", q.zfill(12)))
    return [_merge(q, rows.get(q), labels.get(q, ""), language, min_wait) for q in names]


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
            " AND min_wait IS NULL AND enabled IS NULL",
            (queue,),
        )
