"""The last known recipients: a local copy of ``missedcall_recipients`` for when the database is down.

``<MISSEDCALL_SPOOL_DIR>/recipients.json`` (0640, written atomically) holds the
rows as ``[queue, email]`` pairs in the table's order. Every successful
look-up by the notifier refreshes it (it is rewritten only when the rows
changed, so a normal call costs one small read) and so does every change made
with ``missedcall-admin recipients``. The AGI reads it only when it cannot
reach the database, to mail the call anyway.

The copy is never created in a folder that does not exist: the installer makes
the spool folder with the right owner, and a root-owned folder made here would
lock the Asterisk user out of it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from missedcall import log
from missedcall.deliver.spool import SpoolError, atomic_write, read_regular

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

NAME = "recipients.json"
Rows = list[tuple[str, str]]


def path(spool_dir: str) -> str:
    return os.path.join(spool_dir, NAME)


def all_rows(store: Any) -> Rows:
    """Every (queue, email) row in the table's order: one query, whatever the queue."""
    return store.recipient_rows()


def split(rows: Rows, queue: str) -> tuple[list[str], list[str]]:
    """(the queue's own addresses, the ``*`` addresses), each in the table's order."""
    own = [email for q, email in rows if q == queue and queue != "*"]
    star = [email for q, email in rows if q == "*"]
    return own, star


def load(spool_dir: str) -> Rows | None:
    """The saved rows; None when there is no usable copy."""
    try:
        data = json.loads(read_regular(path(spool_dir), 4 << 20).decode("utf-8"))
        rows = data["rows"]
        if not isinstance(rows, list):
            return None
        pairs = [r for r in rows if isinstance(r, list) and len(r) == 2]
        return [(q, e) for q, e in pairs if isinstance(q, str) and isinstance(e, str)]
    except (SpoolError, ValueError, KeyError, TypeError, IndexError, RecursionError):
        return None


def save(spool_dir: str, rows: Sequence[tuple[str, str]]) -> bool:
    """Write the copy when it differs from what is there; True when it is now current."""
    if not spool_dir or not os.path.isdir(spool_dir):
        return False
    rows = [(q, e) for q, e in rows]
    if load(spool_dir) == rows:
        return True
    payload = {
        "version": 1,
        "written_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "rows": [list(r) for r in rows],
    }
    try:
        atomic_write(spool_dir, NAME, json.dumps(payload, ensure_ascii=True, indent=0).encode("ascii"))
    except SpoolError as exc:
        log.warning(f"cannot keep the local copy of the recipients: {exc}")
        return False
    return True


def refresh(store: Any, spool_dir: str) -> bool:
    """Copy the table now (after ``recipients add/remove/import``)."""
    return save(spool_dir, all_rows(store))
