"""The private mount + PID namespace one e2e PBX lives in.

Its init is a "holder" process (HOLDER, host Python) that mounts an overlay (the
cached chroot below, a tmpfs above), /proc, a tmpfs /run and /dev/pts, says READY
and then waits for its stdin to close.  That happens when ``Namespace.close()``
closes it or when the test process dies for any reason, SIGKILL included; the
kernel then kills every process left in the PID namespace and drops every mount.
No run can leave a mount (or an Asterisk) behind on the host, and ``rm -rf`` of a
cache can never wander into a mounted /proc or /dev.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from chroot import mounts_under, remove_tree
from processes import PbxError, clean_env, progress, start_time, wait_child

# Runs as PID 1 of a fresh PID + mount namespace (host Python, not chrooted).
# Mounts the overlay and the pseudo file systems, says READY, then waits for its
# stdin to close while reaping orphans (it is init).  On EOF it kills everything
# else in the namespace, unmounts and says UNMOUNTED.
HOLDER = r"""
import os, select, signal, subprocess, sys
lower, rundir = sys.argv[1], sys.argv[2]
rw, merged = rundir + "/rw", rundir + "/root"
def sh(*argv):
    subprocess.run(argv, check=True, timeout=60, stdin=subprocess.DEVNULL)
def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
if os.getpid() != 1:
    # kill(-1) below would hit the whole host without a PID namespace of our own
    print("FAILED not PID 1 of a new PID namespace", flush=True)
    sys.exit(1)
try:
    # upper layer on tmpfs: works even where the host's own root is an overlay
    sh("mount", "-t", "tmpfs", "-o", "mode=0755,size=" + sys.argv[3], "e2e-rw", rw)
    os.makedirs(rw + "/upper", exist_ok=True)
    os.makedirs(rw + "/work", exist_ok=True)
    sh("mount", "-t", "overlay", "e2e-root", "-o",
       "lowerdir=%s,upperdir=%s/upper,workdir=%s/work" % (lower, rw, rw), merged)
    sh("mount", "-t", "proc", "proc", merged + "/proc")
    sh("mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "e2e-run", merged + "/run")
    sh("mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620",
       "devpts", merged + "/dev/pts")
except Exception as exc:
    print("FAILED", exc, flush=True)
    sys.exit(1)
print("READY", flush=True)
# Only the EOF on stdin ends us, so that Pbx.stop() tears down in order even
# after a Ctrl-C.
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    readable = select.select([0], [], [], 0.5)[0]
    reap()
    if readable and not os.read(0, 4096):
        break
try:
    # We are PID 1 of our own PID namespace (checked above): this kills every
    # other process in it, and nothing outside it.
    os.kill(-1, signal.SIGKILL)
except ProcessLookupError:
    pass
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
for point in (merged + "/dev/pts", merged + "/run", merged + "/proc", merged, rw):
    subprocess.run(["umount", point], timeout=60, stdin=subprocess.DEVNULL)
left = [l.split()[4] for l in open("/proc/self/mountinfo") if l.split()[4].startswith(rundir)]
print("UNMOUNTED" if not left else "LEFT " + " ".join(left), flush=True)
"""



RUNDIR_PREFIX = "missedcall-e2e-run-"


def reap_stale_rundirs(base: Path) -> None:
    """Delete run dirs whose owning test process is gone (it was SIGKILLed, say).

    Its namespace died with it, so nothing is mounted there and nothing runs; only
    empty mount points and daemon output files are left.
    """
    for rundir in base.glob(RUNDIR_PREFIX + "*"):
        try:
            pid_text, started = (rundir / "owner").read_text().split()
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if start_time(int(pid_text)) == started:
            continue  # its owner still runs
        with contextlib.suppress(PbxError, OSError):
            remove_tree(rundir)




class Namespace:
    """One holder process and its run dir (<tmp>/missedcall-e2e-run-*: rw/, root/, owner)."""

    def __init__(self, chroot: Path, tmpfs_size: str) -> None:
        self.chroot = chroot
        self.tmpfs_size = tmpfs_size
        self.rundir: Optional[Path] = None
        self.holder: Optional[subprocess.Popen[str]] = None
        self.holder_pid: Optional[int] = None  # PID 1 of the namespace, host view

    @property
    def running(self) -> bool:
        return self.holder_pid is not None and self.rundir is not None

    def start(self) -> None:
        base = Path(os.environ.get("MISSEDCALL_E2E_RUNDIR") or tempfile.gettempdir())
        reap_stale_rundirs(base)
        self.rundir = Path(tempfile.mkdtemp(prefix=RUNDIR_PREFIX, dir=base))
        (self.rundir / "rw").mkdir()
        (self.rundir / "root").mkdir()
        (self.rundir / "owner").write_text(f"{os.getpid()} {start_time(os.getpid())}\n")
        # stdin is a pipe that only we hold: it closes when we stop() or die.
        self.holder = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--propagation",
                "private",
                "--",
                sys.executable,
                "-I",
                "-c",
                HOLDER,
                str(self.chroot),
                str(self.rundir),
                self.tmpfs_size,
            ],
            start_new_session=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=clean_env(),
        )
        assert self.holder.stdout is not None
        ready = self._read_holder_line(timeout=60)
        if ready != "READY":
            rest = self._drain_holder(timeout=5)
            raise PbxError(f"namespace setup failed: {ready} {rest}".strip())
        self.holder_pid = wait_child(self.holder.pid)

    def _read_holder_line(self, timeout: float) -> str:
        assert self.holder is not None and self.holder.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.holder.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                return "<no answer>"
            return self.holder.stdout.readline().strip()
        finally:
            sel.close()

    def _drain_holder(self, timeout: float) -> str:
        assert self.holder is not None
        try:
            out, _ = self.holder.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return ""
        return (out or "").strip()

    @property
    def root(self) -> Path:
        """Host-side path of the box's / (through /proc/<holder>/root)."""
        if self.holder_pid is None or self.rundir is None:
            raise PbxError("the PBX is not running")
        return Path(f"/proc/{self.holder_pid}/root") / str(self.rundir / "root").lstrip("/")

    def path(self, inside: str) -> Path:
        """Host-side path of an absolute path inside the box."""
        return self.root / inside.lstrip("/")

    def enter(self, argv: Sequence[str], user: Optional[str] = None) -> list[str]:
        """argv that runs a command chrooted into the box, inside the namespace."""
        if self.holder_pid is None or self.rundir is None:
            raise PbxError("the PBX is not running")
        inner = list(argv)
        if user is not None:
            inner = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *inner]
        return [
            "nsenter",
            f"--target={self.holder_pid}",
            "--mount",
            "--pid",
            "--",
            "chroot",
            str(self.rundir / "root"),
            *inner,
        ]

    def close(self, report: list[str], *, keep: bool) -> None:
        """End the holder (and with it everything in the namespace), then the run dir.

        Safe to call more than once and after a failed start().
        """
        if self.holder is not None:
            holder = self.holder
            try:
                # input="" closes its stdin: on that EOF the holder kills what is
                # left in the namespace, unmounts and exits.
                out, _ = holder.communicate(input="", timeout=60)
            except subprocess.TimeoutExpired:
                # The namespace dies with its init; unshare follows.
                if self.holder_pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.holder_pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(holder.pid, signal.SIGKILL)
                out, _ = holder.communicate(timeout=30)
            report.append(f"holder: {(out or '').strip().splitlines()[-1:] or ['?']}")
            self.holder = None
            self.holder_pid = None
        if self.rundir is not None:
            mounted = mounts_under(self.rundir)
            if mounted:  # cannot happen: those mounts were never in our namespace
                report.append(f"host mounts left: {mounted}")
            elif not keep:
                with contextlib.suppress(PbxError):
                    remove_tree(self.rundir)
            if keep:
                # without an owner file, reap_stale_rundirs() leaves it alone
                (self.rundir / "owner").unlink(missing_ok=True)
                progress(f"PBX run kept in {self.rundir}")
