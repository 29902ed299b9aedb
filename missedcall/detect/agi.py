"""The AGI session with Asterisk, hardened against what Asterisk 22 really sends.

pyst2 encodes commands well but trusts the stream: its header reader splits a
caller name with a newline into a bogus key, its reply parser raises on a
continuation line, it blocks forever on a silent Asterisk, and it writes debug
lines to stderr, which Asterisk copies into its log. ``AgiSession`` writes
commands exactly as pyst2's ``send_command`` and ``_quote`` do (two lines of it:
importing pyst2 and ``six`` for them cost every hang-up more than all the rest of
this module) and replaces the reading side:

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
import signal
import time

from missedcall import budget

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Sequence

_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_DIGITS = frozenset("0123456789")
_MAX_LINE = 128 * 1024


def _header(line: str) -> tuple[str, str] | None:
    """``agi_[a-z0-9_]+: ?value`` as (key, value); None for any other line. No regex: start-up is the cost."""
    colon = line.find(":")
    if colon <= 4 or not line.startswith("agi_") or not _KEY_CHARS.issuperset(line[4:colon]):
        return None
    value = line[colon + 1 :]
    return line[:colon], value[1:] if value.startswith(" ") else value


def _is_status(line: str) -> bool:
    """A reply's status line: three ASCII digits, then a space or a hyphen."""
    return len(line) >= 4 and _DIGITS.issuperset(line[:3]) and line[3] in " -"


def _one_line(message: str) -> str:
    """VERBOSE takes one quoted argument: each run of controls, quotes and backslashes becomes one space."""
    out: list[str] = []
    in_run = False
    for ch in message:
        if ch < " " or ch == '"' or ch == "\\":
            if not in_run:
                out.append(" ")
            in_run = True
        else:
            out.append(ch)
            in_run = False
    return "".join(out)


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
        pair = _header(line)
        if pair is not None:
            key = pair[0]
            if key in env:
                last = None  # a repeated key: the caller forged one of them; keep the first
                continue
            last = key
            env[last] = pair[1]
        elif last is not None:
            env[last] += "\n" + line
    return env


def header_value(env: dict[str, str], key: str) -> str:
    """A header as the caller set it: Asterisk writes ``unknown`` for an absent caller ID."""
    value = env.get(key, "")
    return "" if value == "unknown" else value


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

    def _handle_sighup(self, signum: int, frame: object) -> None:
        self._got_sighup = True

    def test_hangup(self) -> None:
        # A hung-up channel still answers the commands we use (docs/design.md); keep going.
        return None

    @staticmethod
    def _quote(text: object) -> str:
        """pyst2's quoting: the text in double quotes, as it is (callers remove what would break it)."""
        return f'"{text}"'

    def send_command(self, command: str, *args: object) -> None:
        if self.closed:
            raise AgiClosed("session closed")
        # pyst2's send_command: "COMMAND arg arg", stripped, one newline.
        line = f"{command.strip()} {' '.join(map(str, args))}".strip()
        try:
            self.stdout.write(line + "\n")
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
            if _is_status(line):
                break
        code = int(line[:3])
        rest = line[4:]
        import re  # only here: the hook itself never parses a result (say() does not look at it)

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
                    if start < 0 or not _is_status(line):
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
        clean = _one_line(message)[:500]
        try:
            self.send_command("VERBOSE", self._quote(f"missedcall: {clean}"), 1)
            while not _is_status(self.stdin.readline(timeout=1.0)):
                pass  # stray lines before the reply; its result says nothing we act on
        except AgiClosed:
            self.closed = True

    def verbose(self, message: str, level: int = 1) -> None:
        """pyst2's ``verbose``: one VERBOSE line (unlike :meth:`say`, the text is not cleaned)."""
        self.execute("VERBOSE", self._quote(message), level)

    def execute(self, command: str, *args: object) -> dict[str, tuple[str, str]]:
        """pyst2's ``execute``: send, then read the status line."""
        self.send_command(command, *args)
        try:
            return self.get_result()
        except AgiClosed:
            raise
        except Exception as exc:  # an odd reply: talk no more
            self.closed = True
            raise AgiClosed(f"unreadable reply: {exc}") from None
