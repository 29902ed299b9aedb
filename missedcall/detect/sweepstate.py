"""The sweeper's saved state in ``missedcall_state``: where it stopped in queue_log, and the calls still open.

* ``queue_log_position``: JSON ``{"v": 1, "path": ..., "file": MARK, "prev": MARK|null,
  "pending_chunks": N, "pending_calls": C, "saved_at": ISO}`` (a MARK: see
  :mod:`missedcall.detect.tail`). ``prev`` is the file rotated away last, kept while
  it exists because Asterisk may write to it until it reopens its log.
* ``queue_log_pending`` (and ``queue_log_pending.1``, ... when it is long): JSON
  ``{"v": 1, "lines": [...]}``, the raw queue_log lines of the calls still open
  (exit seen but grace not over, or still waiting). Re-reading the file from the
  oldest open call instead would re-read hours of log every minute while one
  caller waits; the lines of the open calls are a few hundred bytes each and
  bounded, and the value is split into ASCII chunks below MariaDB's 64 KiB TEXT limit.

Position and pending lines are saved together in one transaction.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone

from missedcall.detect.tail import FileMark
from missedcall.record.storage import Store

POSITION_KEY = "queue_log_position"
PENDING_KEY = "queue_log_pending"
STATE_VERSION = 1
#: Pending-state chunk size, in ASCII characters: below MariaDB's TEXT limit of 65,535 bytes.
STATE_CHUNK = 60_000


def _state_name(index: int) -> str:
    return PENDING_KEY if index == 0 else f"{PENDING_KEY}.{index}"


@dataclass
class SavedState:
    mark: FileMark | None = None
    prev: FileMark | None = None
    lines: list[str] = field(default_factory=list)
    chunks: int = 0  # pending rows written last time (so that shorter state blanks the rest)
    note: str = ""


def load_state(store: Store, path: str) -> SavedState:
    """What the last run saved; an empty state (start at the end) when there is none or it is unusable."""
    raw = store.get_state(POSITION_KEY)
    if not raw:
        return SavedState()
    try:
        data = json.loads(raw)
        chunks = int(data.get("pending_chunks", 0))
    except (ValueError, TypeError, AttributeError):
        return SavedState(note=f"{POSITION_KEY} is unreadable; starting at the end of the file")
    state = SavedState(chunks=chunks)
    if data.get("path") != os.path.abspath(path):
        state.note = f"queue_log moved (was {data.get('path')}); starting at the end of {path}"
        return state
    state.mark = FileMark.from_json(data.get("file"))
    state.prev = FileMark.from_json(data.get("prev"))
    text = "".join(store.get_state(_state_name(i)) or "" for i in range(chunks))
    if text:
        try:
            lines = json.loads(text)["lines"]
            state.lines = [line for line in lines if isinstance(line, str)]
        except (ValueError, TypeError, KeyError):
            state.note = f"{PENDING_KEY} is unreadable; calls open at the last run are forgotten"
    return state


def save_state(
    store: Store,
    path: str,
    marks: tuple[FileMark | None, FileMark | None],
    lines: list[str],
    open_calls: int,
    previous_chunks: int,
) -> int:
    """Position (``marks``: the file followed and the one rotated away) and the open calls' ``lines``,
    in one transaction; returns how many pending rows it wrote."""
    mark, prev = marks
    text = json.dumps({"v": STATE_VERSION, "lines": lines}, ensure_ascii=True, separators=(",", ":"))
    chunks = [text[i : i + STATE_CHUNK] for i in range(0, len(text), STATE_CHUNK)]
    position = {
        "v": STATE_VERSION,
        "path": os.path.abspath(path),
        "file": mark.to_json() if mark else None,
        "prev": prev.to_json() if prev else None,
        "pending_chunks": len(chunks),
        "pending_calls": open_calls,
        "saved_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    with store.transaction():
        store.set_state(POSITION_KEY, json.dumps(position, separators=(",", ":")))
        for index, chunk in enumerate(chunks):
            store.set_state(_state_name(index), chunk)
        for index in range(len(chunks), previous_chunks):
            store.set_state(_state_name(index), "")
    return len(chunks)
