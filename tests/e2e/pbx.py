"""One disposable Asterisk 22 + Postfix on top of the cached sid chroot (chroot.py).

``Pbx`` runs inside a private mount + PID namespace (namespace.py): an overlay
(cache below, tmpfs above), /proc and a tmpfs /run; Asterisk and Postfix run
inside it.  Everything a test writes or Asterisk logs lands in the tmpfs, so
every run starts from the pristine cache and the cache can be shared by
concurrent runs.  The harness's own Asterisk configuration is asterisk_conf.py;
calls are calls.py; mail in the box boxmail.py; venvs and pip boxpip.py; host
process helpers processes.py.

Standard library only; needs root and util-linux (unshare, nsenter, mount).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional, Union

from asterisk_conf import (
    ASTERISK_CONF,
    CDR_CONF,
    DEFAULT_EXTENSIONS,
    HARNESS_DIR,
    HARNESS_EXTENSIONS,
    LOGGER_CONF,
    MODULES_CONF,
)
from boxlogs import BoxLogs
from boxmail import BoxMail
from boxpip import BoxPython
from calls import LocalCall
from chroot import chroot_lock_path, default_chroot_path, stamp_ok
from namespace import Namespace
from processes import PbxError, clean_env, pid_alive, wait_child, wait_for, wait_gone

# Set to keep a stopped PBX's logs, mailboxes and AGI output under the run dir.
KEEP_ENV = "MISSEDCALL_E2E_KEEP"

PathLike = Union[str, "os.PathLike[str]"]


class Pbx(BoxLogs, BoxMail, BoxPython):
    """One disposable Asterisk + Postfix on top of the cached chroot.

    Use as a context manager (or start()/stop()).  Files: ``pbx.path("/etc/...")``
    is the host-side path of a file inside the box (valid while it runs).
    """

    def __init__(
        self,
        chroot: Optional[Path] = None,
        *,
        asterisk_etc: Optional[PathLike] = None,
        files: Optional[Mapping[str, Union[str, bytes]]] = None,
        postfix: bool = True,
        tmpfs_size: str = "1g",
        keep: Optional[bool] = None,
        boot_timeout: float = 60.0,
    ) -> None:
        """chroot: a tree from ensure_chroot() (default: the default cache path).
        asterisk_etc: a directory whose files are copied over /etc/asterisk after the
        harness's own (asterisk.conf, modules.conf, logger.conf, cdr.conf, ...); its
        extensions.conf must ``#include extensions_harness.conf`` to get [callers].
        files: extra files {absolute path in the box: content} written before boot.
        keep: copy logs, mail and AGI output to the run dir at stop and keep it
        (default: env MISSEDCALL_E2E_KEEP).
        """
        # absolute: it becomes the overlay's lowerdir
        self.chroot = Path(os.path.abspath(chroot if chroot is not None else default_chroot_path()))
        self.asterisk_etc = Path(asterisk_etc) if asterisk_etc is not None else None
        self.files = dict(files or {})
        self.with_postfix = postfix
        self.tmpfs_size = tmpfs_size
        self.keep = bool(os.environ.get(KEEP_ENV)) if keep is None else keep
        self.boot_timeout = boot_timeout
        self.namespace = Namespace(self.chroot, tmpfs_size)
        self.asterisk: Optional[subprocess.Popen[bytes]] = None
        self.asterisk_pid: Optional[int] = None
        self.postfix: Optional[subprocess.Popen[bytes]] = None
        self.postfix_pid: Optional[int] = None
        self._lock_fd: Optional[int] = None
        self.tokens = itertools.count(1)  # LocalCall.originate numbers the calls
        self._ids: dict[str, tuple[int, int]] = {}
        self.stop_report: list[str] = []

    # -- lifecycle --------------------------------------------------------- #

    def __enter__(self) -> Pbx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Pbx:
        if self.namespace.holder is not None:
            raise PbxError("already started")
        if not stamp_ok(self.chroot):
            raise PbxError(f"{self.chroot} is not a complete chroot: call ensure_chroot() first")
        try:
            self._take_shared_lock()
            self.namespace.start()
            self._write_config()
            if self.with_postfix:
                self._start_postfix()
            self._start_asterisk()
        except BaseException:
            self.stop()
            raise
        return self

    def _take_shared_lock(self) -> None:
        # Held for the PBX's life: ensure_chroot() cannot replace the tree under us.
        fd = os.open(chroot_lock_path(self.chroot), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise PbxError(f"{self.chroot} is being rebuilt by another run") from None
        self._lock_fd = fd

    @property
    def rundir(self) -> Optional[Path]:
        """Host-side run dir: the daemons' output, and the artifacts when kept."""
        return self.namespace.rundir

    @property
    def root(self) -> Path:
        """Host-side path of the box's / (through /proc/<holder>/root)."""
        return self.namespace.root

    def path(self, inside: str) -> Path:
        """Host-side path of an absolute path inside the box."""
        return self.namespace.path(inside)

    def stop(self) -> None:
        """Stop Asterisk and Postfix by PID, tear the namespace down, drop the mounts.

        Safe to call more than once and after a failed start().
        """
        report = self.stop_report
        if self.asterisk is not None:
            if self.asterisk.poll() is None:
                # The clean way first; _stop_process signals the PID if it hangs.
                with contextlib.suppress(PbxError):
                    self.rx("core stop now", timeout=10)
            self._stop_process("asterisk", self.asterisk, self.asterisk_pid, report, grace=10)
            self.asterisk = None
        if self.postfix is not None:
            # SIGTERM is postfix master's own "stop": it ends its children and exits.
            self._stop_process("postfix", self.postfix, self.postfix_pid, report, grace=0)
            self.postfix = None
        if self.keep and self.namespace.running:
            with contextlib.suppress(Exception):
                self._save_artifacts()
        self.namespace.close(report, keep=self.keep)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _stop_process(
        self,
        name: str,
        popen: subprocess.Popen[bytes],
        pid: Optional[int],
        report: list[str],
        grace: float,
    ) -> None:
        # popen is nsenter; pid is the real daemon it forked inside the namespace.
        # Only ever that PID is signalled, never a process found by name.
        if pid is not None and pid_alive(pid) and not wait_gone(pid, grace):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                if wait_gone(pid, 10):
                    report.append(f"{name}: pid {pid} stopped with {sig.name}")
                    break
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)
        report.append(f"{name}: exit {popen.returncode}")

    def _save_artifacts(self) -> None:
        assert self.rundir is not None
        dest = self.rundir / "artifacts"
        for inside in ("/var/log/asterisk", "/var/mail", "/var/log/postfix.log", HARNESS_DIR, "/etc/asterisk", "/tmp"):
            src = self.path(inside)
            target = dest / inside.lstrip("/")
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True, symlinks=True)
            elif src.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)

    # -- running things inside -------------------------------------------- #

    def _enter(self, argv: Sequence[str], user: Optional[str] = None) -> list[str]:
        return self.namespace.enter(argv, user)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        check: bool = True,
        user: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        input: Optional[str] = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the box (clean environment, optional user)."""
        # coreutils timeout inside too: killing nsenter would not kill its child.
        cmd = self._enter(["timeout", "-k", "5", f"{timeout:g}", *argv], user=user)
        try:
            proc = subprocess.run(
                cmd,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout + 15,
                env=clean_env(**(env or {})),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PbxError(f"timed out after {timeout:g}s in the box: {shlex.join(argv)}") from exc
        if check and proc.returncode != 0:
            raise PbxError(
                f"exit {proc.returncode} in the box: {shlex.join(argv)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
        return proc

    def rx(self, command: str, timeout: float = 20.0) -> str:
        """asterisk -rx COMMAND inside the box; returns its output."""
        proc = self.run(["asterisk", "-rx", command], timeout=timeout, check=False)
        if proc.returncode != 0:
            raise PbxError(
                f"asterisk -rx {command!r}: exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-500:]}"
            )
        return proc.stdout

    def reload(self) -> None:
        """Re-read the dialplan and queues.conf after a test changed them."""
        self.rx("dialplan reload")
        self.rx("queue reload all")

    # -- files ------------------------------------------------------------- #

    def ids(self, user: str) -> tuple[int, int]:
        """uid/gid of a user of the box (its /etc/passwd, not the host's)."""
        if user not in self._ids:
            for line in self.path("/etc/passwd").read_text().splitlines():
                fields = line.split(":")
                if fields[0] == user:
                    self._ids[user] = (int(fields[2]), int(fields[3]))
                    break
            else:
                raise PbxError(f"no user {user!r} in the box")
        return self._ids[user]

    def write_file(
        self,
        inside: str,
        content: Union[str, bytes],
        *,
        mode: int = 0o644,
        owner: Optional[str] = None,
    ) -> Path:
        """Write a file inside the box (parent directories created, owned by owner)."""
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        target.write_bytes(data)
        target.chmod(mode)
        if owner is not None:
            uid, gid = self.ids(owner)
            os.chown(target, uid, gid)
        return target

    def append_file(self, inside: str, content: str) -> None:
        with self.path(inside).open("a", encoding="utf-8") as fh:
            fh.write(content)

    def install_agi(self, name: str, content: Union[str, bytes]) -> Path:
        """Put an executable AGI script into /var/lib/asterisk/agi-bin."""
        return self.write_file(f"/var/lib/asterisk/agi-bin/{name}", content, mode=0o755)

    def _write_config(self) -> None:
        moddirs = sorted(self.root.glob("usr/lib/*/asterisk/modules"))
        if not moddirs:
            raise PbxError("no asterisk modules directory in the chroot")
        moddir = "/" + str(moddirs[0].relative_to(self.root))
        etc = "/etc/asterisk"
        self.write_file(f"{etc}/asterisk.conf", ASTERISK_CONF.format(moddir=moddir))
        self.write_file(f"{etc}/modules.conf", MODULES_CONF)
        self.write_file(f"{etc}/logger.conf", LOGGER_CONF)
        self.write_file(f"{etc}/cdr.conf", CDR_CONF)
        self.write_file(f"{etc}/extensions_harness.conf", HARNESS_EXTENSIONS)
        # Debian ships the sample users.conf, which pbx_config turns into phones in
        # [default] (and warns that it is deprecated); FreePBX has none.
        self.path(f"{etc}/users.conf").unlink(missing_ok=True)
        for name in ("extensions_custom.conf", "queues_custom.conf"):
            self.write_file(f"{etc}/{name}", f"; {name}: tests add their own here\n")
        if self.asterisk_etc is None:
            self.write_file(f"{etc}/extensions.conf", DEFAULT_EXTENSIONS)
            self.write_file(f"{etc}/queues.conf", "[general]\n#include queues_custom.conf\n")
        else:
            for src in sorted(self.asterisk_etc.rglob("*")):
                if src.is_file():
                    rel = src.relative_to(self.asterisk_etc)
                    self.write_file(f"{etc}/{rel}", src.read_bytes())
        aster = self.ids("asterisk")
        for inside in (HARNESS_DIR, "/var/run/asterisk", "/var/lib/asterisk/agi-bin"):
            d = self.path(inside)
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, *aster)
        for inside, content in self.files.items():
            self.write_file(inside, content)

    # -- daemons ----------------------------------------------------------- #

    def _start_daemon(self, name: str, argv: Sequence[str]) -> tuple[subprocess.Popen[bytes], int]:
        assert self.rundir is not None
        out = open(self.rundir / f"{name}.out", "ab")  # the child keeps its own copy
        try:
            popen = subprocess.Popen(
                self._enter(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                # own session: a Ctrl-C at the terminal reaches pytest only, whose
                # teardown then stops the daemons in order
                start_new_session=True,
            )
        finally:
            out.close()
        return popen, wait_child(popen.pid)

    def _start_postfix(self) -> None:
        # start-fg: master stays in the foreground, so the PID we hold is master's.
        self.postfix, self.postfix_pid = self._start_daemon("postfix", ["postfix", "start-fg"])

        def master_up() -> bool:
            if self.postfix is not None and self.postfix.poll() is not None:
                raise PbxError(f"postfix exited {self.postfix.returncode}: {self._tail('postfix')}")
            return (
                self.path("/var/spool/postfix/pid/master.pid").exists()
                and self.run(["postfix", "status"], timeout=20, check=False).returncode == 0
            )

        wait_for(master_up, 30, "postfix to start", interval=0.2)

    def _start_asterisk(self) -> None:
        # -f: no fork, so the PID is Asterisk's; runuser/rungroup come from asterisk.conf.
        self.asterisk, self.asterisk_pid = self._start_daemon("asterisk", ["asterisk", "-f", "-n"])

        def booted() -> bool:
            if self.asterisk is not None and self.asterisk.poll() is not None:
                raise PbxError(f"asterisk exited {self.asterisk.returncode}: {self._tail('asterisk')}")
            proc = self.run(["asterisk", "-rx", "core waitfullybooted"], timeout=30, check=False)
            return proc.returncode == 0 and "fully booted" in proc.stdout.lower()

        wait_for(booted, self.boot_timeout, "asterisk to boot", interval=0.2)

    def _tail(self, name: str, size: int = 2000) -> str:
        assert self.rundir is not None
        try:
            return (self.rundir / f"{name}.out").read_text(errors="replace")[-size:]
        except OSError:
            return ""

    # -- calls --------------------------------------------------------------- #

    def originate_local(
        self,
        exten: str,
        context: str = "ext-queues",
        *,
        caller_num: Optional[str] = "5551234",
        caller_name: Optional[str] = "John Doe",
        did: Optional[str] = "5559000",
        hangup_after: float = 3.0,
    ) -> LocalCall:
        """Place a call from the CLI into exten@context: see :meth:`LocalCall.originate`."""
        return LocalCall.originate(
            self, exten, context, caller_num=caller_num, caller_name=caller_name, did=did, hangup_after=hangup_after
        )

    def asterisk_output(self) -> str:
        """What Asterisk (and every AGI script it ran, which inherit it) wrote on stdout/stderr."""
        return self._tail("asterisk", size=10**7)
