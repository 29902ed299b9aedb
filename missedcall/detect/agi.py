"""The AGI session with Asterisk, on pyst2, hardened against what Asterisk 22 really sends.

pyst2 encodes commands well but trusts the stream: its header reader splits a
caller name with a newline into a bogus key, its reply parser raises on a
continuation line, it blocks forever on a silent Asterisk, and it writes debug
lines to stderr, which Asterisk copies into its log. ``AgiSession`` keeps
pyst2's command side and replaces the reading side:

* headers: a line that is not ``agi_xxx: value`` continues the previous value;
* replies: read with a deadline; lines that are not a status line are skipped;
* variables: one ``GET FULL VARIABLE`` framed by a random nonce, so a caller
  name that smuggles in a fake ``200 result=...`` line cannot be taken for the
  answer, and a reply one line behind is re-synchronised.

Only dead-channel-safe commands are sent (GET FULL VARIABLE, VERBOSE).
"""

from __future__ import annotations

import os
import re
import select
import signal
import time
from collections.abc import Sequence

from asterisk.agi import AGI

from missedcall import budget

_HEADER = re.compile(r"^(agi_[a-z0-9_]+): ?(.*)$")
_STATUS = re.compile(r"^(\d{3})[ -]")
_MAX_LINE = 128 * 1024


class AgiClosed(Exception):
    """Asterisk closed the pipe, stopped answering, or hung up: talk no more."""


class _NullWriter:
    """pyst2 writes debug text to its ``stderr``; Asterisk would log every line of it."""

    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        return None


class LineReader:
    """Lines from a file descriptor, each read bounded by the session deadline."""

    def __init__(self, fd: int, deadline: float) -> None:
        self.fd = fd
        self.deadline = deadline
        self._buffer = b""
        self.eof = False

    def readline(self, timeout: float | None = None) -> str:
        """The next line without its newline; "" at EOF or when time runs out."""
        limit = self.deadline if timeout is None else min(self.deadline, time.monotonic() + timeout)
        while b"\n" not in self._buffer:
            if self.eof:
                break
            # Past the deadline, still take what Asterisk already sent (select with 0 s): on an
            # overloaded box the budget can run out before a reply that is waiting in the pipe is read.
            remaining = max(0.0, budget.left(limit))
            try:
                ready, _, _ = select.select([self.fd], [], [], remaining)
            except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
                continue
            if not ready:
                if remaining <= 0:
                    raise AgiClosed("Asterisk did not answer in time")
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
                break
            self._buffer += chunk
            if len(self._buffer) > _MAX_LINE and b"\n" not in self._buffer:
                # A single endless line: keep the head, drop the rest.
                self._buffer = self._buffer[:_MAX_LINE]
        if b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
        else:
            line, self._buffer = self._buffer, b""
            if not line:
                raise AgiClosed("Asterisk closed the AGI pipe")
        return line.rstrip(b"\r").decode("utf-8", "replace")


def parse_headers(lines: Sequence[str]) -> dict[str, str]:
    """The AGI environment; a line that is no ``agi_`` header continues the previous value.

    Asterisk writes caller ID raw, so ``Line1<LF>Line2`` arrives as
    ``agi_calleridname: Line1`` followed by a bare ``Line2``. The first line of a
    key wins: a caller name holding ``<LF>agi_uniqueid: X`` cannot replace the real
    uniqueid (written before the caller ID), and the real line of a key it forged
    later is dropped with its continuations rather than glued onto the name.
    """
    env: dict[str, str] = {}
    last: str | None = None
    for line in lines:
        match = _HEADER.match(line)
        if match:
            key = match.group(1)
            if key in env:
                last = None  # a repeated key: the caller forged one of them; keep the first
                continue
            last = key
            env[last] = match.group(2)
        elif last is not None:
            env[last] += "\n" + line
    return env


def header_value(env: dict[str, str], key: str) -> str:
    """A header as the caller set it: Asterisk writes ``unknown`` for an absent caller ID."""
    value = env.get(key, "")
    return "" if value == "unknown" else value


class AgiSession(AGI):  # type: ignore[misc]
    """A pyst2 AGI whose reading side survives a hostile or silent Asterisk."""

    def __init__(self, fd_in: int, fd_out: int, deadline: float, *, header_timeout: float = 1.0) -> None:
        # pyst2's __init__ prints to stderr and reads headers naively: set up its state ourselves.
        self.stdin = LineReader(fd_in, deadline)
        self.stdout = os.fdopen(os.dup(fd_out), "w", encoding="utf-8", errors="replace")
        self.stderr = _NullWriter()
        self._got_sighup = False
        self.closed = False
        self.env: dict[str, str] = {}
        self.header_lines: list[str] = []
        # On a live channel Asterisk sends SIGHUP at hang-up; its default action would kill
        # us before the call is recorded. The flag is all we need.
        signal.signal(signal.SIGHUP, self._handle_sighup)
        self._header_timeout = header_timeout
        self._get_agi_env()

    def _get_agi_env(self) -> None:
        # Asterisk writes the block at once; without it there is no call to record. So the block
        # gets header_timeout even when the budget is already gone (an overloaded box can spend
        # it all on start-up before the peer's write is scheduled), then the budget applies again.
        budget = self.stdin.deadline
        self.stdin.deadline = max(budget, time.monotonic() + self._header_timeout)
        try:
            while True:
                line = self.stdin.readline(timeout=self._header_timeout)
                if line == "":
                    break
                self.header_lines.append(line)
        except AgiClosed:
            self.closed = True
        finally:
            self.stdin.deadline = budget
        self.env = parse_headers(self.header_lines)

    def test_hangup(self) -> None:
        # A hung-up channel still answers the commands we use (docs/design.md); keep going.
        return None

    def send_command(self, command: str, *args: object) -> None:
        if self.closed:
            raise AgiClosed("session closed")
        try:
            super().send_command(command, *args)
        except (BrokenPipeError, OSError, ValueError) as exc:
            self.closed = True
            raise AgiClosed(f"cannot write to Asterisk: {exc}") from None

    def get_result(self, stdin: object = None) -> dict[str, tuple[str, str]]:
        """The next status line as pyst2's result dict; stray lines before it are skipped."""
        while True:
            try:
                line = self.stdin.readline(timeout=1.0)
            except AgiClosed:
                self.closed = True
                raise
            if _STATUS.match(line):
                break
        code = int(line[:3])
        rest = line[4:]
        match = re.match(r"result=(-?\w*)(?:\s*\((.*)\))?", rest)
        result = (match.group(1), match.group(2) or "") if match else ("", "")
        return {"result": result, "code": (str(code), rest)}

    def fetch(self, expressions: Sequence[str]) -> list[str] | None:
        """Evaluate dialplan expressions in one round trip; None when Asterisk could not say.

        The reply is framed by a random nonce on both sides and read line by line
        until the closing frame, so values that contain newlines come back whole.
        """
        if self.closed:
            return None
        nonce = "mc" + os.urandom(6).hex()  # not secrets: it costs the AGI 10 ms of imports
        sep = "|"  # the values we ask for are Asterisk's own (no caller ID), never holding "|"
        expression = nonce + sep + sep.join(expressions) + sep + nonce
        try:
            self.send_command("GET FULL VARIABLE", self._quote(expression))
            collected: list[str] = []
            opening = f"({nonce}{sep}"
            while True:
                line = self.stdin.readline(timeout=1.0)
                if not collected:
                    start = line.find(opening)
                    if start < 0 or not _STATUS.match(line):
                        continue  # a stray line from before: skip to our reply
                    collected.append(line[start + len(opening) :])
                else:
                    collected.append(line)
                joined = "\n".join(collected)
                closing = f"{sep}{nonce})"
                if joined.endswith(closing):
                    body = joined[: -len(closing)]
                    values = body.split(sep)
                    return values if len(values) == len(expressions) else None
                if len(collected) > 200:
                    return None
        except AgiClosed:
            self.closed = True
            return None

    def say(self, message: str) -> None:
        """A VERBOSE line in Asterisk's log; silently nothing when the session is gone."""
        if self.closed:
            return
        # VERBOSE takes one quoted argument: quotes, backslashes and newlines would break it.
        clean = re.sub(r'[\x00-\x1f"\\]+', " ", message)[:500]
        try:
            self.verbose(f"missedcall: {clean}", 1)
        except AgiClosed:
            self.closed = True
        except Exception:  # pyst2 raises its own errors on odd replies; the call goes on
            self.closed = True
