"""Reading queue_log from a saved mark onwards, across log rotation: :class:`FileMark` and :class:`Tail`.

A MARK is ``{"dev", "ino", "offset", "head_len", "head"}``: the file's identity,
the byte offset after the last complete line read, and a hash of its first
``head_len`` (<= 1024) bytes, which tells a truncated or recreated file (same
inode, new content) from the one we were reading.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO, Any

HEAD_BYTES = 1024
READ_CHUNK = 1 << 20
MAX_LINE = 64 * 1024
_ROTATED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z")


class SweepError(Exception):
    """A failure the admin can act on (unreadable queue_log, say): one line, exit 1."""


@dataclass
class FileMark:
    """Where we are in one file: its identity, the offset after the last complete line, its head's hash."""

    dev: int
    ino: int
    offset: int = 0
    head_len: int = 0
    head: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> FileMark | None:
        if not isinstance(data, dict):
            return None
        try:
            mark = cls(int(data["dev"]), int(data["ino"]), int(data["offset"]))
            mark.head_len = int(data.get("head_len", 0))
            mark.head = str(data.get("head", ""))
        except (KeyError, TypeError, ValueError):
            return None
        return mark if mark.offset >= 0 and 0 <= mark.head_len <= HEAD_BYTES else None


def digest(data: bytes) -> str:
    """A short, stable hash (of a file's head, say)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _head_ok(handle: IO[bytes], mark: FileMark) -> bool:
    """Does this file start with the bytes the mark saw? (Always, for a mark at 0.)"""
    if mark.head_len == 0:
        return True
    data = os.pread(handle.fileno(), mark.head_len, 0)
    return len(data) == mark.head_len and digest(data) == mark.head


def _refresh_head(handle: IO[bytes], mark: FileMark) -> None:
    if mark.head_len < HEAD_BYTES and mark.offset > mark.head_len:
        data = os.pread(handle.fileno(), min(mark.offset, HEAD_BYTES), 0)
        mark.head_len, mark.head = len(data), digest(data)


def _line_start(handle: IO[bytes], size: int) -> int:
    """The offset just after the last newline before ``size`` (where a first run starts)."""
    if size == 0:
        return 0
    start = max(0, size - MAX_LINE)
    block = os.pread(handle.fileno(), size - start, start)
    cut = block.rfind(b"\n")
    return start + cut + 1 if cut >= 0 else size


class Tail:
    """Complete queue_log lines from a saved mark onwards, across log rotation.

    * Same file, grown: read from the mark to the last complete line; a partial
      last line is left for next time.
    * Same file but shorter than the mark, or its first bytes changed (truncated by
      ``copytruncate``, or recreated on the same inode): finish the old content from
      the rotated copy whose first bytes match, if there is one, then read from 0.
    * Another file at the path, or none (renamed or deleted): finish the old file
      (a file held open, or a sibling ``queue_log*`` with the same inode and head),
      then read the new one from 0. The old one is remembered as ``prev`` and read
      again while it exists: Asterisk writes to it until it reopens its log.

    Handles stay open between :meth:`batches` calls (``--follow``), so a rotated
    file is finished even after it was deleted. :meth:`close` closes them.
    """

    def __init__(
        self, path: str, mark: FileMark | None = None, prev: FileMark | None = None, *, from_start: bool = False
    ) -> None:
        self.path = path
        self.mark = mark
        self.prev = prev
        self.from_start = from_start
        self.notes: list[str] = []
        self.garbage = 0  # over-long lines skipped by the reader itself
        self._handles: dict[tuple[int, int], IO[bytes]] = {}
        self._seen: tuple[int, int, int, int] | None = None

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    # -- what is there

    def _open_path(self) -> tuple[IO[bytes] | None, os.stat_result | None]:
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise SweepError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        st = os.fstat(handle.fileno())
        held = self._handles.get((st.st_dev, st.st_ino))
        if held is not None:
            handle.close()
            return held, st
        self._handles[(st.st_dev, st.st_ino)] = handle
        return handle, st

    def _siblings(self) -> list[tuple[str, os.stat_result]]:
        """Other files in the log's folder whose name starts with its name (rotated copies), newest first."""
        folder, base = os.path.split(os.path.abspath(self.path))
        found: list[tuple[str, os.stat_result]] = []
        try:
            names = os.listdir(folder)
        except OSError:
            return found
        for name in names:
            if name == base or not name.startswith(base) or name.endswith(_ROTATED_SUFFIXES):
                continue
            full = os.path.join(folder, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            if os.path.isfile(full):
                found.append((full, st))
        found.sort(key=lambda item: item[1].st_mtime_ns, reverse=True)
        return found

    def _hold(self, full: str, st: os.stat_result, mark: FileMark) -> IO[bytes] | None:
        try:
            handle = open(full, "rb")
        except OSError:
            return None
        now = os.fstat(handle.fileno())
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not _head_ok(handle, mark):
            handle.close()
            return None
        self._handles[(now.st_dev, now.st_ino)] = handle
        return handle

    def _find(self, mark: FileMark) -> tuple[IO[bytes], str] | None:
        """The file a mark was taken on, wherever it went: held open, or renamed beside the log."""
        held = self._handles.get((mark.dev, mark.ino))
        if held is not None and _head_ok(held, mark):
            return held, "the rotated file"
        for full, st in self._siblings():
            if (st.st_dev, st.st_ino) == (mark.dev, mark.ino):
                handle = self._hold(full, st, mark)
                if handle is not None:
                    return handle, full
        return None

    def _find_copy(self, mark: FileMark, exclude: tuple[int, int]) -> tuple[IO[bytes], str, FileMark] | None:
        """A rotated copy (``copytruncate``) of the content a mark was taken on: same first bytes, long enough."""
        if mark.head_len == 0:
            return None
        for full, st in self._siblings():
            if (st.st_dev, st.st_ino) == exclude or st.st_size < mark.offset:
                continue
            handle = self._hold(full, st, mark)
            if handle is not None:
                copy = FileMark(st.st_dev, st.st_ino, mark.offset, mark.head_len, mark.head)
                return handle, full, copy
        return None

    def changed(self) -> bool:
        """Anything new since the last :meth:`batches`? One stat (and an fstat of a held rotated file)."""
        try:
            st = os.stat(self.path)
            seen: tuple[int, int, int, int] | None = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            seen = None
        if seen != self._seen:
            return True
        for mark in (self.mark, self.prev):
            # A rotated file that Asterisk still writes to (the path is gone, or already a new file).
            if mark is None or (seen is not None and (seen[0], seen[1]) == (mark.dev, mark.ino)):
                continue
            held = self._handles.get((mark.dev, mark.ino))
            if held is not None and os.fstat(held.fileno()).st_size > mark.offset:
                return True
        return False

    # -- reading

    def batches(self) -> Iterator[bytes]:
        """Complete lines in file order, a block at a time: lines joined by newlines, without the last one.

        The marks advance past a batch once the caller asks for the next one (or
        the generator ends), so what :attr:`mark` says has been handed over.
        """
        handle, st = self._open_path()
        self._seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else None
        try:
            yield from self._batches(handle, st)
        finally:
            self._collect()

    def _batches(self, handle: IO[bytes] | None, st: os.stat_result | None) -> Iterator[bytes]:
        if self.prev is not None:
            found = None
            if st is None or (st.st_dev, st.st_ino) != (self.prev.dev, self.prev.ino):
                found = self._find(self.prev)
            if found is None:
                self.prev = None  # compressed or deleted: Asterisk has long moved on
            else:
                yield from self._read(found[0], self.prev, final=False)

        if self.mark is None:
            if handle is None or st is None:
                raise SweepError(f"cannot read {self.path}: no such file (is MISSEDCALL_QUEUE_LOG right?)")
            start = 0 if self.from_start else _line_start(handle, st.st_size)
            self.mark = FileMark(st.st_dev, st.st_ino, start)
            _refresh_head(handle, self.mark)
            yield from self._read(handle, self.mark, final=False)
            return

        mark = self.mark
        if handle is not None and st is not None and (st.st_dev, st.st_ino) == (mark.dev, mark.ino):
            if st.st_size < mark.offset or not _head_ok(handle, mark):
                copy = self._find_copy(mark, exclude=(st.st_dev, st.st_ino))
                if copy is not None:
                    self.notes.append(f"{self.path} was truncated; finished its old lines from {copy[1]}")
                    yield from self._read(copy[0], copy[2], final=True)
                else:
                    self.notes.append(f"{self.path} was truncated; reading it again from the start")
                self.mark = mark = FileMark(st.st_dev, st.st_ino, 0)
            yield from self._read(handle, mark, final=False)
            return

        # The file we followed is no longer at the path: rotated (renamed or deleted).
        old = self._find(mark)
        if old is not None:
            yield from self._read(old[0], mark, final=False)
        if handle is None or st is None:
            # Renamed and not recreated yet: Asterisk still writes to the old file; keep following it.
            if old is None:
                self.notes.append(f"{self.path} is gone and its last file was not found")
            return
        if old is not None:
            self.notes.append(f"{self.path} was rotated; finished the old file ({old[1]}) first")
            self.prev = mark
        else:
            self.notes.append(f"{self.path} was rotated and the old file is gone; its unread lines are lost")
            self.prev = None
        self.mark = mark = FileMark(st.st_dev, st.st_ino, 0)
        yield from self._read(handle, mark, final=False)

    def _read(self, handle: IO[bytes], mark: FileMark, *, final: bool) -> Iterator[bytes]:
        """Lines from ``mark.offset`` to the file's size at this moment; ``final`` also hands over a last
        line without its newline (a file that is done being written)."""
        end = os.fstat(handle.fileno()).st_size
        pos = mark.offset  # first byte not handed over yet
        carry = b""
        skipping = False  # inside an over-long line: drop everything up to its newline
        handle.seek(pos)
        while pos + len(carry) < end:
            block = handle.read(min(READ_CHUNK, end - pos - len(carry)))
            if not block:
                break
            data = carry + block
            carry = b""
            if skipping:
                newline = data.find(b"\n")
                if newline < 0:
                    pos += len(data)
                    continue
                pos += newline + 1
                data = data[newline + 1 :]
                skipping = False
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) > MAX_LINE:
                    self.garbage += 1
                    skipping = True
                    pos += len(data)
                else:
                    carry = data
                continue
            carry = data[cut + 1 :]
            yield data[:cut]
            pos += cut + 1
            mark.offset = pos
        if carry and final:
            yield carry
            pos += len(carry)
        mark.offset = pos
        _refresh_head(handle, mark)

    def _collect(self) -> None:
        """Close handles of files that are neither followed nor a rotated file we may still finish."""
        keep = {(m.dev, m.ino) for m in (self.mark, self.prev) if m is not None}
        for key in [k for k in self._handles if k not in keep]:
            self._handles.pop(key).close()
