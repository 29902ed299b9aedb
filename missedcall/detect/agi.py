"""The AGI session with Asterisk, hardened against what Asterisk 22 really sends.

pyst2 encodes commands well but trusts the stream: its header reader splits a
caller name with a newline into a bogus key, its reply parser raises on a
continuation line, it blocks forever on a silent Asterisk, and it writes debug
lines to stderr, which Asterisk copies into its log. ``AgiSession`` writes
commands exactly as pyst2's ``send_command`` and ``_quote`` do
(missedcall.detect.agiproto; importing pyst2 and ``six`` for those two lines cost
every hang-up more than the rest of this module) and replaces the reading side:

* headers: a line that is not ``agi_xxx: value`` continues the previous value;
* replies: read with a deadline; lines that are not a status line are skipped;
* variables: one ``GET FULL VARIABLE`` framed by a random nonce, so a caller
  name that smuggles in a fake ``200 result=...`` line cannot be taken for the
  answer, and a reply one line behind is re-synchronised.

Only dead-channel-safe commands are sent (GET FULL VARIABLE, VERBOSE).
"""

from __future__ import annotations

import os
import select
import time

try:  # signal's C half: the same functions with plain int numbers; signal.py adds enums (and enum, functools)
    import _signal as signal
except ImportError:  # an interpreter without it
    import signal  # type: ignore[no-redef]

from missedcall import budget
from missedcall.detect.agiproto import MAX_LINE as _MAX_LINE
from missedcall.detect.agiproto import Framed, command_line, is_status, parse_headers, parse_result, quote, verbose_line
from missedcall.detect.agiproto import header_value as header_value  # the hook's import of it

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Sequence


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


class AgiSession:
    """An AGI session (pyst2's command encoding) whose reading side survives a hostile or silent Asterisk."""

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

    def _handle_sighup(self, signum: int, frame: object) -> None:
        self._got_sighup = True

    @staticmethod
    def _quote(text: object) -> str:
        """pyst2's quoting: the text in double quotes, as it is (callers remove what would break it)."""
        return quote(str(text))

    def send_command(self, command: str, *args: object) -> None:
        if self.closed:
            raise AgiClosed("session closed")
        try:
            self.stdout.write(command_line(command, *args))
            self.stdout.flush()
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
            if is_status(line):
                break
        return {"result": parse_result(line), "code": (line[:3], line[4:])}

    def fetch(self, expressions: Sequence[str]) -> list[str] | None:
        """Evaluate dialplan expressions in one round trip; None when Asterisk could not say.

        The reply is framed by a random nonce on both sides and read line by line
        until the closing frame, so values that contain newlines come back whole.
        """
        if self.closed:
            return None
        framed = Framed(expressions, "mc" + os.urandom(6).hex())  # not secrets: 10 ms of imports
        try:
            self.send_command(framed.line.rstrip("\n"))
            while True:
                values = framed.feed(self.stdin.readline(timeout=1.0))
                if values is not None:
                    return values or None
        except AgiClosed:
            self.closed = True
            return None

    def say(self, message: str) -> None:
        """A VERBOSE line in Asterisk's log; silently nothing when the session is gone."""
        if self.closed:
            return
        try:
            self.send_command(verbose_line(message).rstrip("\n"))
            self.get_result()
        except AgiClosed:
            self.closed = True

    def verbose(self, message: str, level: int = 1) -> None:
        """pyst2's ``verbose``: one VERBOSE line (unlike :meth:`say`, the text is not cleaned)."""
        self.execute("VERBOSE", self._quote(message), level)

    def execute(self, command: str, *args: object) -> dict[str, tuple[str, str]]:
        """pyst2's ``execute``: send, then read the status line."""
        self.send_command(command, *args)
        return self.get_result()
