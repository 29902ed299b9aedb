"""Asterisk's own CDR file, ``cdr-csv/Master.csv``: its rows as :class:`CdrRow`. Parsing is pure.

cdr_csv writes, without a header: accountcode, src, dst, dcontext, clid,
channel, dstchannel, lastapp, lastdata, start, answer, end, duration, billsec,
disposition, amaflags, then ``uniqueid`` (``loguniqueid=yes``), ``userfield``
(``loguserfield=yes``) and, with ``newcdrcolumns=yes``, peeraccount, linkedid
and sequence. Times are UTC with ``usegmtime=yes`` (Debian's default), local
time otherwise. A row that does not read as a CDR is skipped, never guessed.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from datetime import datetime, timezone, tzinfo

from missedcall.resolve.match import CdrRow
from missedcall.text import plausible_epoch, small_int

DEFAULT_PATH = "/var/log/asterisk/cdr-csv/Master.csv"
MAX_ROW = 16 * 1024  # characters: a longer line is not a CDR row
_BASE = 16  # accountcode .. amaflags
FIRST_READ = 32 << 20  # bytes of an unknown file's end read the first time
CHUNK = 64 << 20  # bytes read in one call


def _time(text: str, zone: tzinfo) -> datetime | None:
    try:
        parsed = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    when = parsed.replace(tzinfo=zone).astimezone(timezone.utc)
    return when if plausible_epoch(when.timestamp()) else None


def parse_row(fields: list[str], zone: tzinfo = timezone.utc) -> CdrRow | None:
    """One Master.csv row, or None when it does not look like one."""
    if not _BASE <= len(fields) <= _BASE + 8:
        return None
    start = _time(fields[9], zone)
    billsec = small_int(fields[13].strip(), 9)
    if start is None or billsec is None:
        return None
    extra = fields[_BASE:]
    uniqueid = extra[0] if extra and _looks_like_uniqueid(extra[0]) else ""
    linkedid = ""
    if len(extra) >= 5 and _looks_like_uniqueid(extra[3]):  # uniqueid, userfield, peeraccount, linkedid, sequence
        linkedid = extra[3]
    return CdrRow(
        start=start,
        src=fields[1],
        dst=fields[2],
        clid=fields[4],
        channel=fields[5],
        dstchannel=fields[6],
        lastapp=fields[7],
        billsec=billsec,
        disposition=fields[14],
        uniqueid=uniqueid,
        linkedid=linkedid,
    )


def _looks_like_uniqueid(text: str) -> bool:
    head, dot, tail = text.partition(".")
    return bool(dot) and head.isascii() and head.isdigit() and tail.isascii() and tail.isdigit()


def parse_text(text: str, zone: tzinfo = timezone.utc) -> Iterator[CdrRow]:
    """Every CDR row in a chunk of Master.csv text made of whole lines."""
    for line in text.splitlines():
        if not line or len(line) > MAX_ROW:
            continue
        try:
            fields = next(csv.reader(io.StringIO(line)))
        except (csv.Error, StopIteration):
            continue
        row = parse_row(fields, zone)
        if row is not None:
            yield row


def read_new(path: str, offset: int, inode: int, zone: tzinfo = timezone.utc) -> tuple[list[CdrRow], int, int]:
    """Rows appended since ``offset`` of the file ``inode``; returns them, the new offset and the inode.

    A rotated or truncated file is read from its start. A first read (offset 0)
    of a big file starts ``FIRST_READ`` bytes before its end: years of history
    cannot resolve a miss of today. One call reads at most ``CHUNK`` bytes; the
    next call goes on from there.
    """
    with open(path, "rb") as handle:
        st = os.fstat(handle.fileno())
        if st.st_ino != inode or st.st_size < offset:
            offset = 0
        skip_partial = False
        if offset == 0 and st.st_size > FIRST_READ:
            offset = st.st_size - FIRST_READ
            skip_partial = True
        handle.seek(offset)
        data = handle.read(CHUNK)
    if skip_partial:
        first = data.find(b"\n") + 1
        data, offset = data[first:], offset + first
    end = data.rfind(b"\n") + 1
    text = data[:end].decode("utf-8", errors="replace")
    return list(parse_text(text, zone)), offset + end, st.st_ino
