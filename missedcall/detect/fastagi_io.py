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


async def readline(reader: asyncio.StreamReader) -> str:
    """One line without its newline; a line over MAX_LINE or EOF is Garbage."""
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        raise Garbage("the peer closed the connection") from None
    except asyncio.LimitOverrunError:
        raise Garbage("a line over 128 KiB") from None
    return raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")


async def read_headers(reader: asyncio.StreamReader) -> list[str]:
    lines: list[str] = []
    size = 0
    while True:
        line = await readline(reader)
        if line == "":
            break
        if line == "HANGUP":  # a live channel hung up before the block was read: not part of it
            continue
        size += len(line) + 1
        lines.append(line)
        if size > MAX_HEADER_BYTES or len(lines) > MAX_HEADER_LINES:
            raise Garbage("a header block over 256 KiB")
    if not any(agiproto.header_key(line) for line in lines[:1]):
        raise Garbage("the first line is no agi_ header")
    return lines


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


async def close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await within(writer.wait_closed(), CLOSE_TIMEOUT)
    except (asyncio.TimeoutError, ConnectionError, OSError):
        writer.transport.abort()
