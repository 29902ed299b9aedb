"""Host-side process helpers for the e2e harness: commands with a mandatory
timeout, a clean environment for anything that runs in the box, polling, and
PID checks that tell a live process from a zombie or a reused PID.

Only ever a PID the harness started is signalled, never a process found by name.
"""

from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Optional, TypeVar

T = TypeVar("T")


class PbxError(RuntimeError):
    """The chroot or the PBX inside it could not be built, started or driven."""


def progress(msg: str) -> None:
    # Progress for a build that takes minutes; pytest shows it with -s or on failure.
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[e2e {stamp}] {msg}", file=sys.stderr, flush=True)



def run_host(
    argv: Sequence[str],
    *,
    timeout: float,
    check: bool = True,
    env: Optional[Mapping[str, str]] = None,
    log_to: Optional[IO[str]] = None,
) -> subprocess.CompletedProcess[str]:
    """subprocess.run with a mandatory timeout; output to a log file or captured."""
    if log_to is not None:
        log_to.write(f"$ {shlex.join(argv)}\n")
        log_to.flush()
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_to if log_to is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PbxError(f"timed out after {timeout:.0f}s: {shlex.join(argv)}") from exc
    if check and proc.returncode != 0:
        tail = (proc.stdout or "")[-3000:]
        raise PbxError(f"exit {proc.returncode}: {shlex.join(argv)}\n{tail}")
    return proc


def clean_env(**extra: str) -> dict[str, str]:
    # The host's environment is full of PIP_*, SSL_* and proxy settings that point
    # at host paths; inside the chroot they are wrong, so nothing is inherited.
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "TERM": "dumb",
    }
    env.update(extra)
    return env



def wait_for(
    probe: Callable[[], Optional[T]],
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Poll probe() until it returns something truthy; PbxError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise PbxError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)



def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def wait_child(pid: int, timeout: float = 10.0) -> int:
    """The (first) child of pid: nsenter --pid forks the real command."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(pid)
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise PbxError(f"process {pid} started no child within {timeout:.0f}s")


def start_time(pid: int) -> Optional[str]:
    """Field 22 of /proc/PID/stat: tells a PID from a later process reusing it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None



def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


