"""The last known recipients: a local copy of ``missedcall_recipients`` for when the database is down.

``<MISSEDCALL_SPOOL_DIR>/recipients.json`` (0640, written atomically) holds the
rows as ``[queue, email]`` pairs in the table's order. Every successful
look-up by the notifier refreshes it (it is rewritten only when the rows
changed, so a normal call costs one small read) and so does every change made
with ``missedcall-admin recipients``. The AGI reads it only when it cannot
reach the database, to mail the call anyway.

Whether the copy is current is decided on its bytes, not by parsing it: the
file is written in one fixed layout, so the rows we hold give the exact text it
starts with. That keeps ``json`` (and the ``re`` it imports) off a normal call;
a copy in any other layout (hand-edited, or an older version's) is simply
rewritten once. Strings are written by ``json``'s own C encoder, so the file is
the JSON that ``json.dumps`` would write for them.

The copy is never created in a folder that does not exist: the installer makes
the spool folder with the right owner, and a root-owned folder made here would
lock the Asterisk user out of it.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from missedcall import log
from missedcall.deliver.spool import SpoolError, atomic_write, read_regular

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

try:  # json.encoder's own C string encoder, without json's import of re; json.encoder is the fallback
    from _json import encode_basestring_ascii as _quote
except ImportError:  # a Python built without the accelerator
    from json.encoder import encode_basestring_ascii as _quote

NAME = "recipients.json"
Rows = list[tuple[str, str]]
#: The longest file this module reads back (ten thousand rows of long addresses fit).
_LIMIT = 4 << 20


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
    import json  # only when the database is down, or for the admin

    try:
        data = json.loads(read_regular(path(spool_dir), _LIMIT).decode("utf-8"))
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
    head = _head(rows)
    if _is_current(spool_dir, head):
        return True
    written_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    try:
        atomic_write(spool_dir, NAME, head + _quote(written_at).encode("ascii") + b"}\n")
    except SpoolError as exc:
        log.warning(f"cannot keep the local copy of the recipients: {exc}")
        return False
    return True


def _head(rows: Sequence[tuple[str, str]]) -> bytes:
    """The file's text up to its ``written_at`` value: ``{"version": 1, "rows": [[q, e], ...], "written_at": ``."""
    pairs = ", ".join(f"[{_quote(q)}, {_quote(e)}]" for q, e in rows)
    return f'{{"version": 1, "rows": [{pairs}], "written_at": '.encode("ascii")


def _is_current(spool_dir: str, head: bytes) -> bool:
    """The copy holds exactly these rows, in this module's layout, with a plain ``written_at`` after them."""
    try:
        data = read_regular(path(spool_dir), _LIMIT)
    except SpoolError:
        return False
    tail = data[len(head) :]
    stamp = tail[1:-3]
    return (
        data.startswith(head)
        and tail.startswith(b'"')
        and tail.endswith(b'"}\n')
        and len(stamp) <= 40
        and stamp.isascii()
        and b'"' not in stamp
        and b"\\" not in stamp
    )


def refresh(store: Any, spool_dir: str) -> bool:
    """Copy the table now (after ``recipients add/remove/import``)."""
    return save(spool_dir, all_rows(store))
