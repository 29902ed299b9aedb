"""AgiPeer plays Asterisk 22 towards one AGI script; AgiRun is what happened.

Everything is bounded by the run's ``timeout``: a script that hangs is killed
through its ``Popen`` handle and the result says so (``timed_out``,
``returncode is None``).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.agipeer.commands import Session, find_command, is_false
from tests.agipeer.protocol import ASTERISK_ENV, header_args, parse_agi_args, replace_headers
from tests.agipeer.recordings import variables_from_exchanges

# Once the child has exited, how long a descendant may keep our pipes open
# before we stop reading and report it (a script must not leave children behind).
_PIPE_LINGER = 0.25
_POLL_INTERVAL = 0.05
_KILL_WAIT = 5.0


@dataclass
class AgiRun:
    """What happened during one :meth:`AgiPeer.run`."""

    returncode: int | None
    """The script's exit status; ``None`` when it overran the timeout and was killed."""
    commands: list[str]
    """Recognised AGI command lines, in order, without the trailing newline."""
    stdout_garbage: list[str]
    """Stdout lines that are no AGI command (Asterisk answered them with 510)."""
    stderr: str
    duration: float
    """Seconds from start until the child exited (or was killed)."""
    timed_out: bool = False
    sighup_sent: bool = False
    pipes_left_open: bool = False
    """The child exited but a descendant still held stdout/stderr open."""
    exchanges: list[tuple[str, str]] = field(default_factory=list)
    """Every stdout line with the exact reply text sent ("" when none was sent)."""
    unanswered: list[str] = field(default_factory=list)
    """Lines that got no reply (pipe closed, or the peer was told to stop answering)."""
    variables: dict[str, str] = field(default_factory=dict)
    """Channel variables at the end, including what the script set."""
    astdb: dict[str, str] = field(default_factory=dict)
    """AstDB contents at the end, keyed ``family/key``."""

    @property
    def ok(self) -> bool:
        """Exited 0 on its own, within time, leaving nothing behind."""
        return self.returncode == 0 and not self.timed_out and not self.pipes_left_open



@dataclass
class _Reply:
    due: float
    data: bytes
    then_hang_up: bool


class AgiPeer:
    """Plays Asterisk 22 towards one AGI script.

    ``variables`` holds channel variables (``ABANDONED``, ``QUEUESTATUS``, ...)
    and function values (``CALLERID(num)``, ``CHANNEL(linkedid)``, ...); what
    is not there falls back to the header block (caller ID, uniqueid, channel)
    or reads as unset, like on a real channel.

    ``sighup_after_commands`` (live channels only) hangs the channel up after
    that many replies: the child gets SIGHUP (unless ``AGISIGHUP`` is "no"),
    and later commands are answered as on a dead channel. Every stdout line
    counts as a command here, as it costs Asterisk a reply too.
    """

    def __init__(
        self,
        header_lines: Sequence[str],
        variables: Mapping[str, str] | None = None,
        *,
        dead: bool = True,
        sighup_after_commands: int | None = None,
        eof_after_headers: bool = False,
        reply_delay: float = 0,
        no_reply_after: int | None = None,
        astdb: Mapping[str, str] | None = None,
    ) -> None:
        if sighup_after_commands is not None and dead:
            raise ValueError("sighup_after_commands needs a live channel (dead=False)")
        if reply_delay < 0:
            raise ValueError("reply_delay must not be negative")
        self.header_lines = list(header_lines)
        self.variables: dict[str, str] = dict(variables or {})
        self.dead = dead
        self.sighup_after_commands = sighup_after_commands
        self.eof_after_headers = eof_after_headers
        self.reply_delay = reply_delay
        self.no_reply_after = no_reply_after
        self.astdb: dict[str, str] = dict(astdb or {})
        self.fixture: dict[str, Any] | None = None

    @property
    def header_bytes(self) -> bytes:
        return "".join(self.header_lines).encode("utf-8")

    @property
    def args(self) -> list[str]:
        """The AGI arguments named in the header block: pass them as the script's argv[1:]."""
        return header_args(self.header_lines)

    @classmethod
    def from_fixture(
        cls,
        path: str | os.PathLike[str],
        *,
        variables: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
        request: str | None = None,
        **kwargs: Any,
    ) -> AgiPeer:
        """A peer replaying one recorded session of ``tests/fixtures/asterisk22-agi``.

        The header block is used verbatim unless ``args`` / ``request`` replace
        those lines; ``variables`` are merged over the ones the recording
        reveals; ``dead`` defaults to the recording's ``where`` (``cont`` = live).
        """
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        header_lines: list[str] = list(data["header_lines"])
        if args is not None or request is not None:
            header_lines = replace_headers(header_lines, args=args, request=request)
        derived = variables_from_exchanges(data.get("exchanges", []))
        derived.update(variables or {})
        kwargs.setdefault("dead", data.get("where") != "cont")
        peer = cls(header_lines, derived, **kwargs)
        peer.fixture = data
        return peer

    # ------------------------------------------------------------------ run

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 10,
        cwd: str | os.PathLike[str] | None = None,
    ) -> AgiRun:
        """Start ``argv``, speak AGI to it until it exits, and report.

        ``env`` replaces the inherited environment (Asterisk's ``AST_*``
        variables are added unless present). Never blocks past ``timeout``.
        """
        child_env = dict(os.environ if env is None else env)
        for key, value in ASTERISK_ENV.items():
            child_env.setdefault(key, value)
        session = Session(self.header_lines, self.variables, self.astdb, dead=self.dead)
        start = time.monotonic()
        deadline = start + timeout
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
            cwd=cwd,
            close_fds=True,
        )
        try:
            return self._converse(proc, session, start, deadline)
        finally:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(timeout=_KILL_WAIT)
                except subprocess.TimeoutExpired:
                    pass
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass

    def _converse(
        self,
        proc: subprocess.Popen[bytes],
        session: Session,
        start: float,
        deadline: float,
    ) -> AgiRun:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        result = AgiRun(returncode=None, commands=[], stdout_garbage=[], stderr="", duration=0.0)
        stdin_fd: int | None = proc.stdin.fileno()
        os.set_blocking(stdin_fd, False)
        pending = bytearray(self.header_bytes)
        headers_left = len(pending)
        replies: deque[_Reply] = deque()
        last_due = start
        hang_up_after_write = False
        stdout_buf = bytearray()
        stderr_buf = bytearray()
        line_count = 0

        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ, "stdout")
        selector.register(proc.stderr, selectors.EVENT_READ, "stderr")
        open_readers = 2
        pidfd: int | None = None
        try:
            pidfd = os.pidfd_open(proc.pid)
            selector.register(pidfd, selectors.EVENT_READ, "exit")
        except (AttributeError, OSError):
            pidfd = None  # no pidfd (old kernel or Python): poll instead
        stdin_registered = False
        exited_at: float | None = None

        def close_stdin() -> None:
            nonlocal stdin_fd, stdin_registered
            if stdin_fd is None:
                return
            if stdin_registered:
                selector.unregister(proc.stdin)
                stdin_registered = False
            try:
                proc.stdin.close()
            except OSError:
                pass
            stdin_fd = None
            pending.clear()

        def hang_up() -> None:
            session.dead = True
            if proc.poll() is None and not is_false(session.lookup("AGISIGHUP")):
                proc.send_signal(signal.SIGHUP)
                result.sighup_sent = True

        def on_line(raw: bytes) -> None:
            nonlocal line_count, last_due
            text = raw.decode("utf-8", errors="replace")
            line_count += 1
            answering = stdin_fd is not None and (
                self.no_reply_after is None or line_count <= self.no_reply_after
            )
            if not answering:
                command = find_command(parse_agi_args(text))
                (result.commands if command else result.stdout_garbage).append(text)
                result.unanswered.append(text)
                result.exchanges.append((text, ""))
                return
            command, reply = session.handle(text)
            (result.commands if command else result.stdout_garbage).append(text)
            result.exchanges.append((text, reply))
            hang = session.hangup_pending or (
                not session.dead and self.sighup_after_commands == line_count
            )
            session.hangup_pending = False
            due = max(time.monotonic(), last_due) + self.reply_delay
            last_due = due
            replies.append(_Reply(due, reply.encode("utf-8"), hang))

        if self.sighup_after_commands == 0:
            hang_up_after_write = True  # hung up before the first command

        while True:
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and open_readers == 0:
                break
            if now >= deadline:
                result.timed_out = True
                break
            if exited_at is not None and now - exited_at >= _PIPE_LINGER:
                result.pipes_left_open = True
                break

            # Move due replies to the output buffer.
            while replies and replies[0].due <= now:
                reply = replies.popleft()
                if stdin_fd is not None:
                    pending.extend(reply.data)
                if reply.then_hang_up:
                    hang_up_after_write = True

            if pending and stdin_fd is not None:
                try:
                    written = os.write(stdin_fd, pending)
                    del pending[:written]
                    headers_left = max(0, headers_left - written)
                except BlockingIOError:
                    pass
                except OSError:  # EPIPE: the child closed stdin or exited
                    close_stdin()
            if hang_up_after_write and not pending:
                hang_up_after_write = False
                if not session.dead:
                    hang_up()
            if self.eof_after_headers and headers_left == 0 and stdin_fd is not None:
                close_stdin()

            want_write = bool(pending) and stdin_fd is not None
            if want_write != stdin_registered:
                if want_write:
                    selector.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
                else:
                    selector.unregister(proc.stdin)
                stdin_registered = want_write

            wait = deadline - now
            if replies:
                wait = min(wait, max(0.0, replies[0].due - now))
            if exited_at is not None:
                wait = min(wait, max(0.0, exited_at + _PIPE_LINGER - now))
            elif pidfd is None:
                wait = min(wait, _POLL_INTERVAL)
            for key, _events in selector.select(max(0.0, wait)):
                if key.data == "exit":
                    selector.unregister(key.fileobj)
                    continue
                if key.data == "stdin":
                    continue  # written at the top of the loop
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_readers -= 1
                    if key.data == "stdout" and stdout_buf:
                        # An unterminated last line never reaches Asterisk as a command.
                        result.stdout_garbage.append(stdout_buf.decode("utf-8", "replace"))
                        stdout_buf.clear()
                    continue
                if key.data == "stderr":
                    stderr_buf.extend(chunk)
                    continue
                stdout_buf.extend(chunk)
                while True:
                    newline = stdout_buf.find(b"\n")
                    if newline < 0:
                        break
                    line = bytes(stdout_buf[:newline])
                    del stdout_buf[: newline + 1]
                    on_line(line)

        end = time.monotonic()
        selector.close()
        if pidfd is not None:
            os.close(pidfd)
        if result.timed_out:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(timeout=_KILL_WAIT)
                except subprocess.TimeoutExpired:
                    pass
        else:
            result.returncode = proc.poll()
        result.duration = (exited_at if exited_at is not None else end) - start
        result.stderr = stderr_buf.decode("utf-8", errors="replace")
        result.variables = dict(session.variables)
        result.astdb = dict(session.astdb)
        return result

