"""What the FastAGI service's notifier reads for every call and an admin changes rarely, kept a few seconds.

The recipients (``missedcall_recipients``), a queue's row and the ``*`` row of ``missedcall_queues``
(label, language, minimum wait, on/off, business hours) and FreePBX's label of a queue: three
queries of every mailed call on MariaDB, two on SQLite. :class:`CachedStore` answers them from one
:class:`Shelf` shared by the service's threads, each answer for at most ``MISSEDCALL_FASTAGI_CACHE_SECONDS``
(default 5, 0 for none); SIGHUP (``systemctl reload``) empties it. So a change made with
``missedcall-admin recipients ...`` or ``queues set ...`` is honoured by every call mailed that many
seconds after it, and by the next one after a reload (docs/fastagi.md).

Why a time bound, not SQLite's ``PRAGMA data_version`` or the file's mtime: the service's own
threads commit for every call, so both move all through a burst, which is when the copy is worth
having. Only successful answers are kept: a query that failed is asked again by the next call.
Everything else the notifier reads (the call's row, storm-control counters, earlier misses of the
caller) depends on the calls themselves and is read as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from missedcall.record import queues
from missedcall.record.storage import Store

_T = TypeVar("_T")


class Shelf:
    """Answers kept for ``seconds``, shared by threads; a miss is asked outside the lock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._items: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], _T]) -> _T:
        if self.seconds <= 0:
            return load()
        now = time.monotonic()
        with self._lock:
            kept = self._items.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]  # type: ignore[no-any-return]
        value = load()  # raises: nothing kept, the next call asks again
        with self._lock:
            self._items[key] = (now + self.seconds, value)
        return value

    def clear(self, seconds: float | None = None) -> None:
        with self._lock:
            self._items.clear()
            if seconds is not None:
                self.seconds = seconds


#: The service's one shelf (one service per process); set up and emptied by missedcall.detect.fastagi.
SHELF = Shelf(0)


class CachedStore(Store):
    """A Store whose settings look-ups come from :data:`SHELF`. Rows are handed out as new lists of
    tuples, so no caller can change what the next one gets."""

    def recipient_rows(self) -> list[tuple[str, str]]:
        return list(SHELF.get("recipients", lambda: tuple(Store.recipient_rows(self))))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if sql == queues.ROWS_SQL:
            key = ("queue", *params)
            return list(SHELF.get(key, lambda: tuple(Store.rows(self, sql, params))))
        return Store.rows(self, sql, params)

    def queue_label(self, queue: str) -> str:
        if self.kind != "mysql":
            return ""
        return SHELF.get(("label", queue), lambda: Store.queue_label(self, queue))
