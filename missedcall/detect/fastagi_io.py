"""The FastAGI service's stream helpers (missedcall.detect.fastagi): every read bounded in size and
time, a close that never waits long, and ``within``, a deadline without a task of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from missedcall.detect import agiproto

MAX_HEADER_BYTES = 256 * 1024
MAX_HEADER_LINES = 400
CLOSE_TIMEOUT = 1.0
_T = TypeVar("_T")


class Garbage(Exception):
    """The peer sent something that is no AGI session, or too much, or nothing in time."""


def peer_name(writer: asyncio.StreamWriter) -> str:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return f"[{name[0]}]:{name[1]}" if ":" in str(name[0]) else f"{name[0]}:{name[1]}"
    return "?"


def why(exc: BaseException) -> str:
    return "timed out" if isinstance(exc, asyncio.TimeoutError) else (str(exc) or exc.__class__.__name__)


def script_of(env: dict[str, str]) -> str:
    """The network script (``agi://host/missed`` -> ``missed``), from ``agi_network_script`` or the request."""
    script = env.get("agi_network_script", "")
    if not script:
        request = env.get("agi_request", "")
        script = request.split("://", 1)[-1].partition("/")[2] if "://" in request else ""
    return script.split("?", 1)[0].strip()


class Lines:
    """Lines from a stream, read a segment at a time: Asterisk writes a header block (or a reply) at once,
    so one read usually brings all of it and the lines are split in memory, without an await for each.

    The same bounds as ``StreamReader.readuntil`` with ``limit=MAX_LINE``: a line over 128 KiB, or EOF
    before a newline, is Garbage.
    """

    __slots__ = ("_buf", "_pos", "_reader")

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buf = b""
        self._pos = 0

    def buffered(self) -> str | None:
        """The next line when it has arrived already, else None (nothing is awaited)."""
        end = self._buf.find(b"\n", self._pos)
        if end < 0:
            if len(self._buf) - self._pos >= agiproto.MAX_LINE:
                raise Garbage("a line over 128 KiB")
            return None
        if end + 1 - self._pos > agiproto.MAX_LINE:
            raise Garbage("a line over 128 KiB")
        raw = self._buf[self._pos : end]
        self._pos = end + 1
        return raw.rstrip(b"\r").decode("utf-8", "replace")

    async def readline(self) -> str:
        """One line without its newline."""
        while True:
            line = self.buffered()
            if line is not None:
                return line
            chunk = await self._reader.read(65536)
            if not chunk:
                raise Garbage("the peer closed the connection")
            self._buf = self._buf[self._pos :] + chunk
            self._pos = 0

    def at_eof(self) -> bool:
        return self._pos >= len(self._buf) and self._reader.at_eof()


async def read_headers(lines: Lines) -> list[str]:
    block: list[str] = []
    size = 0
    while True:
        line = lines.buffered()
        if line is None:
            line = await lines.readline()
        if line == "":
            break
        if line == "HANGUP":  # a live channel hung up before the block was read: not part of it
            continue
        size += len(line) + 1
        block.append(line)
        if size > MAX_HEADER_BYTES or len(block) > MAX_HEADER_LINES:
            raise Garbage("a header block over 256 KiB")
    if not any(agiproto.header_key(line) for line in block[:1]):
        raise Garbage("the first line is no agi_ header")
    return block


_TIMEOUT = getattr(asyncio, "timeout", None)  # 3.11+: a deadline on this task, no task of its own


async def within(awaitable: Awaitable[_T], seconds: float) -> _T:
    """``asyncio.wait_for`` without the task it wraps every step in (several per session)."""
    if _TIMEOUT is None:
        return await asyncio.wait_for(awaitable, seconds)
    async with _TIMEOUT(seconds):
        return await awaitable


async def drain_input(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def flush(writer: asyncio.StreamWriter, seconds: float) -> None:
    """``drain`` only when the kernel did not take the line at once (it almost always does): a deadline
    set up for nothing costs a timer, and a lost connection shows on the next read anyway."""
    if writer.transport.get_write_buffer_size():
        await within(writer.drain(), seconds)


async def close(writer: asyncio.StreamWriter) -> None:
    if not writer.transport.get_write_buffer_size():
        writer.close()  # nothing left to send: the socket is closed now, nothing to wait for
        return
    try:
        writer.close()
        await within(writer.wait_closed(), CLOSE_TIMEOUT)
    except (asyncio.TimeoutError, ConnectionError, OSError):
        writer.transport.abort()
