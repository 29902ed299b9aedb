"""``missedcall-admin serve`` as a real subprocess for a test box, started and stopped by its pid.

Its syslog lines are copied to ``syslog.log`` in the box (tests/syslogtap), so a
test can count the one line per call the service writes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.agibox import Pbx

TAP = Path(__file__).resolve().parent / "syslogtap"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Service:
    """One running service; ``stop()`` (SIGTERM, then SIGKILL after a bound) or ``kill()``."""

    def __init__(self, box: Pbx, *args: str, port: int | None = None, **env: str) -> None:
        self.box = box
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.syslog = box.tmp / "syslog.log"
        self.stderr = box.tmp / f"serve-{self.port}.stderr"
        argv = [sys.executable, "-m", "missedcall.admin.cli", "serve", "--listen", f"{self.host}:{self.port}", *args]
        environ = box.environ(PYTHONPATH=str(TAP), MISSEDCALL_TEST_SYSLOG=str(self.syslog), **env)
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(argv, env=environ, stdout=subprocess.DEVNULL, stderr=err)
        self._wait_listening()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_listening(self, seconds: float = 20) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.stderr.read_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return  # a bare connect-and-close is garbage to the service: logged, harmless
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise AssertionError("serve did not listen in time")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self, seconds: float = 30) -> int:
        """SIGTERM and wait; SIGKILL if it overruns (then the test fails on the return code)."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                return self.proc.wait(seconds)
            except subprocess.TimeoutExpired:
                self.kill()
                return -999
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_lines(self) -> list[str]:
        try:
            return self.syslog.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Callable[[], object], seconds: float = 30) -> None:
    """Poll ``predicate`` until it is true; an AssertionError after ``seconds`` (a bound, not a timing)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
