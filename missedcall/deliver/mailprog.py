"""Run a mail program: start it, feed it the message, wait for its answer, all within a time limit.

``os.posix_spawn`` rather than ``subprocess`` in the hook: every missed call runs this once, and
``subprocess`` (with threading, selectors, locale, warnings) and the ``ctypes`` the old PR_SET_PDEATHSIG
needed cost a hang-up a few milliseconds of imports before the mail program even started.

The FastAGI service calls ``start_with(SUBPROCESS)`` once: ``os.posix_spawn`` keeps the GIL while
the kernel starts the child (vfork: until the child's exec), so on a loaded box every mail froze the
event loop and every other thread for the child's wait for a CPU (p99 8-10 ms, up to 40 ms, against
1.3 ms through ``subprocess``'s fork_exec, which lets go of it; docs/performance.md). Both start the
program the same way: vfork-fast, a session of its own, SIGPIPE and SIGXFSZ restored, the same pipes.

The program runs in a session of its own, so that on timeout its helpers (postdrop, a relay client)
are killed with it and the AGI leaves no process behind. Its stdout and stderr share one pipe: only
the last line said is kept, for the error message. Every other descriptor of ours is
non-inheritable already (PEP 446; SQLite opens its files close-on-exec).
"""

from __future__ import annotations

import os
import select
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the hook's imports)
if TYPE_CHECKING:
    from collections.abc import Callable
    from subprocess import Popen

try:  # signal's C half: the same functions with plain int numbers; signal.py adds enums (and enum, functools)
    import _signal as signal
except ImportError:  # an interpreter without it
    import signal  # type: ignore[no-redef]

#: Past the timeout, how long a mail program that is still *working* (runnable, in disk I/O) may go on:
#: the same cap as the run-queue credit of the AGI's own budget (missedcall.budget).
OVERLOAD_GRACE = 20.0
#: After the mail program exited, how long its output is still read (a background child of it may hold
#: the pipe open; its exit status has already said whether the mail was taken).
DRAIN = 0.5
#: Signals Python ignores for itself, which an exec'd program would inherit ignored (as subprocess restores them).
_RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)
_SAID = 8192  # what is kept of the program's output: its last line is all the error message shows


class Stuck(Exception):
    """The program was stopped (killed with its session) because it did not finish in time."""


class Child:
    """One running mail program: its pid, the pipe we write to, the pipe it says things on."""

    def __init__(self, argv: list[str]) -> None:
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.pid, self._popen = _start(argv, in_r, out_w)
        except BaseException:
            for fd in (in_r, in_w, out_r, out_w):
                os.close(fd)
            raise
        os.close(in_r)
        os.close(out_w)
        os.set_blocking(in_w, False)
        os.set_blocking(out_r, False)
        self.stdin: int | None = in_w
        self.output: int | None = out_r
        self.said = b""
        self._unsent = memoryview(b"")
        self.returncode: int | None = None
        try:
            self._exited: int | None = os.pidfd_open(self.pid)  # readable once it exits: no polling for that
        except (AttributeError, OSError):
            self._exited = None

    def run(self, data: bytes, timeout: float) -> tuple[int, bytes]:
        """Write ``data``, wait for the exit; (exit status, what it said). Raises Stuck after killing it."""
        self._unsent = memoryview(data)
        try:
            try:
                self._talk(time.monotonic() + timeout)
            except TimeoutError:
                self._wait_while_busy()
        except TimeoutError:
            self.kill()
            raise Stuck from None
        except BaseException:
            self.kill()
            raise
        finally:
            self._close()
        assert self.returncode is not None
        return self.returncode, self.said

    def _talk(self, until: float) -> None:
        """Feed and read until the program exited and its output closed (or, after its exit, DRAIN ran out);
        TimeoutError at ``until`` if it has not exited by then."""
        if self.stdin is not None and not self._unsent:
            self._close_stdin()
        exited_at: float | None = None
        while True:
            if self.returncode is None:
                self._reap()
            now = time.monotonic()
            if self.returncode is not None:
                exited_at = exited_at or now
                if self.output is None or now >= exited_at + DRAIN:
                    return  # it has answered; whoever inherited its pipe is not waited for
            elif now >= until:
                raise TimeoutError
            poller = select.poll()
            if self.stdin is not None:
                poller.register(self.stdin, select.POLLOUT)
            if self.output is not None:
                poller.register(self.output, select.POLLIN)
            if self._exited is not None and self.returncode is None:
                poller.register(self._exited, select.POLLIN)
            limit = (exited_at + DRAIN if exited_at is not None else until) - now
            if self._exited is None and self.returncode is None:
                limit = min(limit, 0.01)  # no pidfd: look for its exit now and then
            for fd, _events in poller.poll(max(0.0, limit) * 1000):
                if fd == self.stdin:
                    self._feed()
                elif fd == self.output:
                    self._read()

    def _feed(self) -> None:
        assert self.stdin is not None
        try:
            written = os.write(self.stdin, self._unsent[:65536])
        except BlockingIOError:
            return
        except BrokenPipeError:  # it stopped reading: its exit status tells the rest
            written = len(self._unsent)
        self._unsent = self._unsent[written:]
        if not self._unsent:
            self._close_stdin()

    def _read(self) -> None:
        assert self.output is not None
        try:
            chunk = os.read(self.output, 65536)
        except BlockingIOError:
            return
        if chunk:
            self.said = (self.said + chunk)[-_SAID:]
        else:
            os.close(self.output)
            self.output = None

    def _wait_while_busy(self) -> None:
        """Past its timeout, give a mail program that is still *working* up to OVERLOAD_GRACE more.

        A mail program that is blocked (on a relay, a lock: state S) is stopped at once. One that is
        runnable (R) or in disk I/O (D) is merely waiting on an overloaded box and may be a moment from
        having queued the mail: stopping it then would make the retry a duplicate. One that has exited has
        given its answer. Raises TimeoutError when it should be stopped.
        """
        limit = time.monotonic() + OVERLOAD_GRACE
        idle = 0
        while True:
            try:
                self._talk(time.monotonic() + 0.05)
                return
            except TimeoutError:
                idle = 0 if busy(self.pid) else idle + 1
                if idle >= 2 or time.monotonic() >= limit:  # blocked for two looks in a row, or out of grace
                    raise

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else (a SIGCHLD handler): it is gone, its status unknown
            self.returncode = -signal.SIGKILL if self.returncode is None else self.returncode
            return
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)
            if self._popen is not None:
                self._popen.returncode = self.returncode  # reaped here: subprocess must never wait for the pid

    def _close_stdin(self) -> None:
        if self.stdin is not None:
            os.close(self.stdin)
            self.stdin = None

    def _close(self) -> None:
        self._close_stdin()
        for fd in (self.output, self._exited):
            if fd is not None:
                os.close(fd)
        self.output = self._exited = None

    def kill(self) -> None:
        """SIGKILL its whole session, and reap it if that takes no longer than DRAIN."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        until = time.monotonic() + DRAIN
        while self.returncode is None and time.monotonic() < until:
            self._reap()
            if self.returncode is None:
                time.sleep(0.005)
        # Still not reaped: stuck in the kernel (a dead NFS mount); SIGKILL takes it when it wakes.


def _posix_spawn(argv: list[str], stdin: int, output: int) -> tuple[int, None]:
    actions = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, output, 1), (os.POSIX_SPAWN_DUP2, output, 2)]
    spawn = os.posix_spawn if "/" in argv[0] else os.posix_spawnp
    try:
        return spawn(argv[0], argv, os.environ, file_actions=actions, setsid=True, setsigdef=_RESTORED), None
    except NotImplementedError:  # a C library without POSIX_SPAWN_SETSID: a process group will do
        return spawn(argv[0], argv, os.environ, file_actions=actions, setpgroup=0, setsigdef=_RESTORED), None


def _fork_exec(argv: list[str], stdin: int, output: int) -> tuple[int, Popen[bytes]]:
    import subprocess

    # restore_signals: SIGPIPE and SIGXFSZ, as _RESTORED. The Popen is kept only so that its
    # returncode can be set once Child reaps the pid itself (its pidfd, its kill and grace logic).
    proc = subprocess.Popen(argv, stdin=stdin, stdout=output, stderr=output, close_fds=True,
                            start_new_session=True, restore_signals=True)  # fmt: skip
    return proc.pid, proc


POSIX_SPAWN = "posix_spawn"
SUBPROCESS = "subprocess"
_STARTS = {POSIX_SPAWN: _posix_spawn, SUBPROCESS: _fork_exec}
_start: Callable[[list[str], int, int], tuple[int, Popen[bytes] | None]] = _posix_spawn


def start_with(kind: str) -> None:
    """How mail programs are started from now on: POSIX_SPAWN (the default: the hook, one thread) or
    SUBPROCESS (a threaded process: the FastAGI service). ValueError for anything else."""
    global _start
    try:
        _start = _STARTS[kind]
    except KeyError:
        raise ValueError(f"no such way to start a mail program: {kind!r}") from None


def busy(pid: int, depth: int = 0) -> bool:
    """Is ``pid`` or one of its descendants runnable or in disk I/O (Linux /proc)? False when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        if stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] in (b"R", b"D"):
            return True
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as handle:
            children = [int(c) for c in handle.read().split()]
    except (OSError, ValueError):
        return False
    return depth < 3 and any(busy(child, depth + 1) for child in children)
