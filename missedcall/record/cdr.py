"""Read FreePBX's CDR table (``asteriskcdrdb.cdr``): the answered calls that may resolve open misses.

One indexed query per run: ``calldate`` (indexed by FreePBX) bounds the rows to
the watched window, and the server keeps only answered rows whose ``src`` or
``dst`` ends in the last digits of an open miss's number. The exact match (E.164,
trunk prefixes) is done afterwards in Python (missedcall.resolve.match) on those
few rows, so 1,000,000 rows of CDR cost one range scan on the server, not a
million Python objects.

The table name comes from configuration and goes into the SQL text, so the
caller validates it as a plain identifier; it is quoted with backticks here too.
Every value is a parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from missedcall.record.db import Database, StorageError

#: The columns the resolver reads; older tables lack some (cnum before FreePBX 2.x, linkedid before 12).
WANTED = ("calldate", "src", "dst", "cnum", "cnam", "clid", "channel", "dstchannel", "disposition", "billsec",
          "lastapp", "uniqueid", "linkedid")  # fmt: skip
REQUIRED = ("calldate", "src", "dst", "disposition", "billsec")
#: Digits at the end of a number the server compares: enough to be selective, few enough that every way of
#: writing one number (8916..., +7916..., 9 8916...) ends in them. The exact match happens in Python.
SUFFIX = 7
#: Suffixes per query at most (each is a parameter, twice); more are split into several queries.
BATCH = 20_000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class CdrTableError(StorageError):
    """The CDR table is missing or lacks the columns resolution needs."""


def columns(db: Database, table: str) -> tuple[str, ...]:
    """The WANTED columns ``table`` has, in WANTED's order; raises CdrTableError when it is unusable."""
    _check(table)
    rows = db.rows(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?",
        (table,),
    )
    have = {str(row[0]).lower() for row in rows}
    if not have:
        raise CdrTableError(f"{db.target.describe()}: no table {table}")
    missing = [name for name in REQUIRED if name not in have]
    if missing:
        raise CdrTableError(f"{db.target.describe()}: table {table} has no column {', '.join(missing)}")
    return tuple(name for name in WANTED if name in have)


def answered_rows(
    db: Database, table: str, have: Sequence[str], since: datetime, suffixes: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """Answered rows (billsec > 0) from ``since`` on (naive, in the table's own time) whose src or dst ends
    in one of ``suffixes``; each as {column: value} with "" for a column the table lacks."""
    _check(table)
    wanted = sorted({s for s in suffixes if s.isascii() and s.isdigit() and len(s) == SUFFIX})
    picked = ", ".join(f"`{name}`" for name in have)
    for start in range(0, len(wanted), BATCH):
        part = wanted[start : start + BATCH]
        marks = ", ".join("?" for _ in part)
        sql = (
            f"SELECT {picked} FROM `{table}` WHERE calldate >= ? AND billsec > 0 AND disposition = 'ANSWERED'"
            f" AND (RIGHT(dst, {SUFFIX}) IN ({marks}) OR RIGHT(src, {SUFFIX}) IN ({marks}))"
        )
        for row in db.rows(sql, (since.strftime("%Y-%m-%d %H:%M:%S"), *part, *part)):
            found = dict.fromkeys(WANTED, "")
            found.update(zip(have, row))
            yield found


def _check(table: str) -> None:
    if not _IDENTIFIER.fullmatch(table):
        raise CdrTableError(f"CDR table name {table[:40]!r} is not a plain identifier")


def voicemail_left(db: Database, table: str, ids: Sequence[str], since: datetime) -> bool:
    """Did a CDR row of this call (its uniqueid or linkedid) end in VoiceMail, at or after ``since``?"""
    _check(table)
    ids = [i for i in ids if i]
    if not ids:
        return False
    marks = ", ".join("?" for _ in ids)
    sql = (
        f"SELECT 1 FROM `{table}` WHERE calldate >= ? AND lastapp = 'VoiceMail'"
        f" AND (uniqueid IN ({marks}) OR linkedid IN ({marks})) LIMIT 1"
    )
    return bool(db.rows(sql, (since.strftime("%Y-%m-%d %H:%M:%S"), *ids, *ids)))
