"""A real Asterisk 22 (Debian sid) in a cached chroot, for the end-to-end suite.

Two layers:

* ``ensure_chroot()`` builds a Debian sid root with debootstrap (asterisk, python3,
  python3-venv, postfix, ...) once per machine and caches it (default
  ``/var/cache/missedcall-e2e/sid``, env ``MISSEDCALL_E2E_CHROOT``).  The cache is
  never modified after it is built.
* ``Pbx`` runs one disposable PBX on top of that cache: a private mount+PID
  namespace holds an overlay (cache below, tmpfs above), /proc and a tmpfs /run;
  Asterisk and Postfix run inside it.  Everything a test writes or Asterisk logs
  lands in the tmpfs, so every run starts from the pristine cache and the cache can
  be shared by concurrent runs.

Why namespaces instead of bind mounts in the host's namespace: the mounts then
exist only inside a namespace whose init is our "holder" process.  The holder
exits when its stdin closes - that is, when ``Pbx.stop()`` closes it or when the
test process dies for any reason, SIGKILL included - and the kernel then kills
every process left in the PID namespace and drops every mount.  No run can leave
a mount (or an Asterisk) behind on the host, and ``rm -rf`` of a cache can never
wander into a mounted /proc or /dev.

Standard library only; needs root, util-linux (unshare, nsenter, mount) and, for
the first build, debootstrap (installed with apt-get when missing).
"""

from __future__ import annotations

import contextlib
import datetime
import email.message
import email.policy
import errno
import fcntl
import hashlib
import itertools
import json
import mailbox
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Optional, TypeVar, Union

T = TypeVar("T")

DEFAULT_CHROOT = Path("/var/cache/missedcall-e2e/sid")
CHROOT_ENV = "MISSEDCALL_E2E_CHROOT"
# Set to keep a stopped PBX's logs, mailboxes and AGI output under the run dir.
KEEP_ENV = "MISSEDCALL_E2E_KEEP"
STAMP_NAME = ".missedcall-e2e-stamp"
SUITE = "sid"

PACKAGES: tuple[str, ...] = (
    "asterisk",
    "python3",
    "python3-venv",
    "postfix",
    "ca-certificates",
    "procps",  # ps/pgrep inside the box, handy when a test needs to look around
)

# Postfix: "Local only", nothing listens on the network (so concurrent runs and a
# host MTA never clash on port 25), every domain is local and unknown users land in
# ops's mailbox: a test can mail anyone@anywhere and read it in /var/mail/ops, with
# the original recipient in X-Original-To.
POSTFIX_SETTINGS: tuple[str, ...] = (
    "myhostname = pbx.e2e.invalid",
    "mydomain = e2e.invalid",
    "myorigin = $myhostname",
    "mydestination = regexp:/etc/postfix/any-domain",
    "luser_relay = ops",
    "local_recipient_maps =",
    "inet_interfaces = loopback-only",
    "inet_protocols = ipv4",
    "mailbox_command =",
    "home_mailbox =",
    "mail_spool_directory = /var/mail",
    "maillog_file = /var/log/postfix.log",
    "alias_maps = cdb:/etc/aliases",
    "alias_database = cdb:/etc/aliases",
    "smtputf8_enable = yes",
)

# Runs inside the new chroot (sh -eu) after debootstrap.  Part of the recipe hash,
# so editing it (or PACKAGES) makes every cache rebuild itself.
BUILD_SCRIPT = """
export DEBIAN_FRONTEND=noninteractive
# The registry serves a frozen sid whose Release file has expired: apt refuses it
# unless told not to check Valid-Until (debootstrap itself does not check it).
printf 'Acquire::Check-Valid-Until "false";\\n' > /etc/apt/apt.conf.d/99missedcall-e2e
# No daemon may start from a maintainer script: we are in a chroot on a test host.
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
printf '%s\\n' \\
  'postfix postfix/main_mailer_type select Local only' \\
  'postfix postfix/mailname string pbx.e2e.invalid' | debconf-set-selections
apt-get -q update
apt-get -q -y --no-install-recommends install {packages}
apt-get -q clean
id ops >/dev/null 2>&1 || useradd --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ops
printf '/./ OK\\n' > /etc/postfix/any-domain
printf 'postmaster: root\\nroot: ops\\n' > /etc/aliases
echo pbx.e2e.invalid > /etc/mailname
postconf -e {postfix_settings}
# No SMTP listener: mail enters through /usr/sbin/sendmail (postdrop + pickup) only.
postconf -M# smtp/inet
postalias cdb:/etc/aliases
# FreePBX's agi-bin, which install.sh defaults to; Debian's package uses another.
install -d -o asterisk -g asterisk /var/lib/asterisk/agi-bin
asterisk -V
"""

# Bump to force a rebuild for a reason the recipe text does not show.
RECIPE_REVISION = 1

HOST_TIMEOUT = 900  # one apt-get or debootstrap step on the host
BUILD_TIMEOUT = 2400  # the apt-get install inside the new chroot
LOCK_TIMEOUT = 3600  # waiting for another run's build

# The Asterisk configuration every Pbx writes before anything from asterisk_etc.
HARNESS_DIR = "/var/lib/asterisk/e2e-calls"

ASTERISK_CONF = """\
; written by tests/e2e/pbx.py
; no "(!)" here: the sample's "[directories](!)" is a template that Asterisk ignores
[directories]
astcachedir => /var/cache/asterisk
astetcdir => /etc/asterisk
astmoddir => {moddir}
astvarlibdir => /var/lib/asterisk
astdbdir => /var/lib/asterisk
astkeydir => /var/lib/asterisk
astdatadir => /usr/share/asterisk
; FreePBX's location (install.sh's default), not Debian's /usr/share/asterisk/agi-bin
astagidir => /var/lib/asterisk/agi-bin
astspooldir => /var/spool/asterisk
astrundir => /var/run/asterisk
astlogdir => /var/log/asterisk
astsbindir => /usr/sbin

[options]
runuser = asterisk
rungroup = asterisk
documentation_language = en_US
; keep the startup fast and the box quiet: no AMI/HTTP/SIP is loaded at all
"""

# autoload=no: only what the product touches, nothing that opens a port (no SIP,
# IAX, AMI, HTTP), so runs never clash with each other or with the host.
MODULES_CONF = """\
; written by tests/e2e/pbx.py
[modules]
autoload = no
load => pbx_config.so          ; extensions.conf
load => res_clioriginate.so    ; "channel originate" on the CLI
load => app_queue.so           ; Queue(), QueueLog(), queue_log
load => app_stack.so           ; Gosub/Return (FreePBX 17 has no Macro)
load => res_speech.so          ; res_agi fails to load without it (ast_speech_change)
load => res_agi.so             ; AGI()
load => app_exec.so            ; ExecIf, TryExec
load => app_verbose.so         ; Verbose, Log
load => app_dial.so
load => app_system.so
load => func_callerid.so       ; CALLERID()
load => func_channel.so        ; CHANNEL(linkedid), hangup_handler_push
load => func_env.so            ; FILE(), STAT(): the callers context reads caller IDs
load => func_logic.so          ; IF(), EXISTS()
load => func_strings.so        ; LEN(), REGEX(), ...
load => func_db.so             ; DB()
load => func_cut.so
load => func_math.so
load => func_timeout.so
load => func_global.so
load => func_hangupcause.so
load => func_uri.so
load => func_cdr.so            ; CDR() reads in FreePBX's macros; CDR itself is off
load => bridge_simple.so       ; an answered queue call is bridged
load => bridge_builtin_features.so
load => bridge_holding.so
load => codec_ulaw.so
load => codec_alaw.so
load => codec_gsm.so
"""

LOGGER_CONF = """\
; written by tests/e2e/pbx.py
[general]
queue_log = yes
queue_log_to_file = yes
queue_log_name = queue_log
dateformat = %F %T.%3q

[logfiles]
; verbose(4): dialplan execution ("-- Executing ...") is level 3
full => verbose(4),notice,warning,error,dtmf
messages => notice,warning,error
"""

CDR_CONF = """\
; written by tests/e2e/pbx.py
[general]
enable = no
"""

# Calls placed by Pbx.originate_local(): Local/<token>@callers.  The ;2 half lands
# here; caller ID and destination come from files the test wrote, so any byte
# string (commas, quotes, newlines, Cyrillic) reaches CALLERID() unmangled.
# FILE(..)= writes the UNIQUEID back so the test can find the call in queue_log.
HARNESS_EXTENSIONS = f"""\
; written by tests/e2e/pbx.py: the test harness, not part of FreePBX
[callers]
exten => _X.,1,Set(E2E={HARNESS_DIR}/${{EXTEN}})
 same => n,Set(FILE(${{E2E}}.uniqueid)=${{UNIQUEID}})
 same => n,GotoIf($[${{STAT(e,${{E2E}}.did)}}]?:nodid)
 same => n,Set(__FROM_DID=${{FILE(${{E2E}}.did)}})
 same => n(nodid),GotoIf($[${{STAT(e,${{E2E}}.num)}}]?:nonum)
 same => n,Set(CALLERID(num)=${{FILE(${{E2E}}.num)}})
 same => n(nonum),GotoIf($[${{STAT(e,${{E2E}}.name)}}]?:noname)
 same => n,Set(CALLERID(name)=${{FILE(${{E2E}}.name)}})
 same => n(noname),Goto(${{FILE(${{E2E}}.context)}},${{FILE(${{E2E}}.exten)}},1)
"""

DEFAULT_EXTENSIONS = """\
; written by tests/e2e/pbx.py (no asterisk_etc given)
[general]
static = yes
writeprotect = yes

#include extensions_harness.conf
#include extensions_custom.conf
"""

PathLike = Union[str, "os.PathLike[str]"]


class PbxError(RuntimeError):
    """The chroot or the PBX inside it could not be built, started or driven."""


def _log(msg: str) -> None:
    # Progress for a build that takes minutes; pytest shows it with -s or on failure.
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[e2e {stamp}] {msg}", file=sys.stderr, flush=True)


def default_chroot_path() -> Path:
    return Path(os.environ.get(CHROOT_ENV) or DEFAULT_CHROOT)


def recipe_hash() -> str:
    """Identifies what ensure_chroot() would build; stored in the stamp."""
    h = hashlib.sha256()
    for part in (SUITE, str(RECIPE_REVISION), " ".join(PACKAGES), BUILD_SCRIPT, *POSTFIX_SETTINGS):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _run(
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


def _clean_env(**extra: str) -> dict[str, str]:
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


# --------------------------------------------------------------------------- #
# Host capability and locking
# --------------------------------------------------------------------------- #


def chroot_support_problem() -> Optional[str]:
    """Why this machine cannot run the e2e PBX at all, or None if it can.

    Only fundamental reasons count (not root, no namespaces/mounts, no way to get
    debootstrap).  A build that fails for any other reason is an error, not a skip.
    """
    if not sys.platform.startswith("linux"):
        return f"needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, mount namespaces)"
    missing = [t for t in ("unshare", "nsenter", "mount", "umount") if shutil.which(t) is None]
    if missing:
        return f"util-linux tools missing: {', '.join(missing)}"
    with tempfile.TemporaryDirectory(prefix="missedcall-e2e-probe-") as tmp:
        probe = _run(
            ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", tmp],
            timeout=30,
            check=False,
        )
    if probe.returncode != 0:
        return f"cannot create mount/PID namespaces or mount: {probe.stdout.strip()[:200]}"
    if _stamp_ok(default_chroot_path()):
        return None
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        return "no debootstrap, and no apt-get to install it"
    return None


@contextlib.contextmanager
def _flock(lock_path: Path, mode: int, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """fcntl lock on a side file; polls so that a stuck peer turns into an error."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                raise PbxError(f"gave up waiting for {lock_path} after {timeout:.0f}s")
            if not announced:
                _log(f"waiting for the lock {lock_path} (another run is building?)")
                announced = True
            time.sleep(1)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


# --------------------------------------------------------------------------- #
# The cached chroot
# --------------------------------------------------------------------------- #


def _read_stamp(path: Path) -> Optional[dict[str, str]]:
    try:
        data = json.loads((path / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stamp_ok(path: Path) -> bool:
    stamp = _read_stamp(path)
    return stamp is not None and stamp.get("recipe") == recipe_hash()


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path in *this* mount namespace."""
    root = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.split()
            # mountinfo escapes blanks as octal (\040)
            point = fields[4].encode().decode("unicode_escape")
            if point == root or point.startswith(root.rstrip("/") + "/"):
                found.append(point)
    return found


def _remove_tree(path: Path) -> None:
    """rm -rf that refuses to run while anything is mounted beneath path."""
    if not path.exists() and not path.is_symlink():
        return
    mounted = _mounts_under(path)
    if mounted:
        raise PbxError(f"refusing to delete {path}: still mounted: {', '.join(mounted)}")
    # --one-file-system: even a mount we failed to see is never descended into.
    _run(["rm", "-rf", "--one-file-system", "--", str(path)], timeout=600)


def _ensure_debootstrap(log: IO[str]) -> str:
    found = shutil.which("debootstrap")
    if found:
        return found
    _log("installing debootstrap on the host (apt-get update; apt-get install debootstrap)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "-q", "update"], timeout=HOST_TIMEOUT, env=env, log_to=log)
    _run(["apt-get", "-q", "-y", "install", "debootstrap"], timeout=HOST_TIMEOUT, env=env, log_to=log)
    found = shutil.which("debootstrap")
    if not found:
        raise PbxError("apt-get installed debootstrap but it is not on PATH")
    return found


def _build(target: Path, log: IO[str]) -> dict[str, str]:
    """debootstrap + apt-get install into target (a fresh directory)."""
    debootstrap = _ensure_debootstrap(log)
    started = time.monotonic()
    _log(f"debootstrap {SUITE} into {target} (default mirror; log: {log.name})")
    # In a private mount namespace: debootstrap mounts /proc and /sys in the target,
    # and if it is killed half-way those mounts must not outlive it on the host.
    # No mirror argument: debootstrap's default (the Debian registry) is used.
    _run(
        ["unshare", "--mount", "--propagation", "private", "--", debootstrap, "--variant=minbase", SUITE, str(target)],
        timeout=HOST_TIMEOUT * 2,
        log_to=log,
    )
    _log(f"debootstrap done in {time.monotonic() - started:.0f}s; installing {' '.join(PACKAGES)}")
    # debootstrap copied the host's resolv.conf in; keep it current for apt.
    with contextlib.suppress(OSError):
        shutil.copyfile("/etc/resolv.conf", target / "etc/resolv.conf")
    script = "set -eu\n" + BUILD_SCRIPT.format(
        packages=" ".join(PACKAGES),
        postfix_settings=" ".join(shlex.quote(s) for s in POSTFIX_SETTINGS),
    )
    # apt needs /proc inside the chroot; the private namespace takes it away again.
    _run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-euc",
            'mount -t proc proc "$1/proc"; exec chroot "$1" sh -euc "$2"',
            "sh",
            str(target),
            script,
        ],
        timeout=BUILD_TIMEOUT,
        env=_clean_env(DEBIAN_FRONTEND="noninteractive"),
        log_to=log,
    )
    version = _run(["chroot", str(target), "asterisk", "-V"], timeout=60, env=_clean_env()).stdout.strip()
    python = _run(["chroot", str(target), "python3", "-V"], timeout=60, env=_clean_env()).stdout.strip()
    _log(f"built: {version}, {python}, in {time.monotonic() - started:.0f}s")
    return {"asterisk": version, "python": python}


def ensure_chroot(path: Optional[Path] = None) -> Path:
    """Return a complete cached sid chroot at path, building it first if needed.

    path defaults to $MISSEDCALL_E2E_CHROOT or /var/cache/missedcall-e2e/sid.
    A chroot is complete when its stamp (written last, after everything else)
    names the current recipe; anything else there is deleted and rebuilt.  The
    build goes to a sibling temp directory that is renamed into place, under an
    exclusive fcntl lock on <path>.lock so that two runs never build at once.
    """
    path = Path(path) if path is not None else default_chroot_path()
    path = Path(os.path.abspath(path))
    lock = _lock_path(path)
    # Fast path under a shared lock: a running Pbx holds one too, so a rebuild
    # never swaps the tree out from under a live PBX.
    with _flock(lock, fcntl.LOCK_SH):
        if _stamp_ok(path):
            return path
    old: Optional[Path] = None
    with _flock(lock, fcntl.LOCK_EX):
        if _stamp_ok(path):  # somebody else built it while we waited
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Leftovers of builds that died half-way (we hold the lock: nobody builds).
        for stale in path.parent.glob(f".{path.name}.build-*"):
            _log(f"removing incomplete build {stale}")
            _remove_tree(stale)
        if path.exists():
            _log(f"{path} is incomplete or from another recipe: rebuilding")
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.build-", dir=path.parent))
        os.chmod(tmp, 0o755)
        log_path = path.with_name(path.name + ".build.log")
        started = time.monotonic()
        try:
            with open(log_path, "w", encoding="utf-8") as log:
                info = _build(tmp, log)
            stamp = {
                "recipe": recipe_hash(),
                "suite": SUITE,
                "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "build_seconds": f"{time.monotonic() - started:.0f}",
                **info,
            }
            # Written last: its presence means every step above succeeded.
            (tmp / STAMP_NAME).write_text(json.dumps(stamp, indent=1) + "\n")
            if path.exists():
                old = path.with_name(f".{path.name}.build-old-{os.getpid()}")
                os.rename(path, old)
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                _remove_tree(tmp)
            raise
    if old is not None:
        # after the lock is released: nobody needs to wait for this rm -rf (a
        # leftover is cleaned up by the next build)
        _remove_tree(old)
    return path


# --------------------------------------------------------------------------- #
# The running PBX
# --------------------------------------------------------------------------- #

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


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _wait_child(pid: int, timeout: float = 10.0) -> int:
    """The (first) child of pid: nsenter --pid forks the real command."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = _children(pid)
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise PbxError(f"process {pid} started no child within {timeout:.0f}s")


def _start_time(pid: int) -> Optional[str]:
    """Field 22 of /proc/PID/stat: tells a PID from a later process reusing it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


RUNDIR_PREFIX = "missedcall-e2e-run-"


def _reap_stale_rundirs(base: Path) -> None:
    """Delete run dirs whose owning test process is gone (it was SIGKILLed, say).

    Its namespace died with it, so nothing is mounted there and nothing runs; only
    empty mount points and daemon output files are left.
    """
    for rundir in base.glob(RUNDIR_PREFIX + "*"):
        try:
            pid_text, started = (rundir / "owner").read_text().split()
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if _start_time(int(pid_text)) == started:
            continue  # its owner still runs
        with contextlib.suppress(PbxError, OSError):
            _remove_tree(rundir)


def _pid_alive(pid: int) -> bool:
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


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return not _pid_alive(pid)


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


class LocalCall:
    """A call placed by Pbx.originate_local(); token is its Local/<token>@callers."""

    def __init__(self, pbx: Pbx, token: str) -> None:
        self.pbx = pbx
        self.token = token
        self._uniqueid: Optional[str] = None

    def __repr__(self) -> str:
        return f"LocalCall({self.token!r})"

    def uniqueid(self, timeout: float = 15.0) -> str:
        """UNIQUEID of the caller channel (the ;2 half): queue_log's callid.

        (The ;1 half's UNIQUEID is the call's linkedid.)
        """
        if self._uniqueid is not None:
            return self._uniqueid
        path = self.pbx.path(f"{HARNESS_DIR}/{self.token}.uniqueid")

        def read() -> Optional[str]:
            try:
                return path.read_text().strip() or None
            except OSError:
                return None

        self._uniqueid = wait_for(read, timeout, f"call {self.token} to reach [callers]")
        return self._uniqueid

    @property
    def channel_prefix(self) -> str:
        """How the call's channels are named: Local/<token>@callers-<seq>;1 and ;2."""
        return f"Local/{self.token}@callers-"

    def log_lines(self) -> list[str]:
        """Lines of the full log that name this call's channels."""
        return [line for line in self.pbx.full_log().splitlines() if self.channel_prefix in line]

    def thread_log_lines(self) -> list[str]:
        """Lines of the full log tagged with this call's [C-xxxxxxxx] call ids.

        Some of Asterisk's lines about a call do not name its channel: res_agi
        logs what a script says through VERBOSE as "missed.py,600: ..." only.
        """
        lines = self.pbx.full_log().splitlines()
        tags = set()
        for line in lines:
            if self.channel_prefix in line:
                tags.update(re.findall(r"\[(C-[0-9a-f]{8})\]", line))
        return [line for line in lines if any(f"[{tag}]" in line for tag in tags)]

    def queue_log(self) -> list[list[str]]:
        """This call's queue_log lines, split on '|'."""
        callid = self.uniqueid()
        return [row for row in self.pbx.queue_log() if len(row) > 1 and row[1] == callid]

    def events(self) -> list[str]:
        return [row[4] for row in self.queue_log() if len(row) > 4]

    def wait_event(self, *events: str, timeout: float = 30.0) -> list[str]:
        """Wait until one of events appears for this call; return that row."""

        def find() -> Optional[list[str]]:
            for row in self.queue_log():
                if len(row) > 4 and row[4] in events:
                    return row
            return None

        return wait_for(find, timeout, f"{'/'.join(events)} for call {self.token}")

    def wait_hungup(self, timeout: float = 30.0) -> None:
        """Wait until both halves of the call are gone (its h extension, AGI included, has run)."""
        self.pbx.wait_no_channels(self.channel_prefix, timeout=timeout)


class Pbx:
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
        self.rundir: Optional[Path] = None
        self.holder: Optional[subprocess.Popen[str]] = None
        self.holder_pid: Optional[int] = None  # PID 1 of the namespace, host view
        self.asterisk: Optional[subprocess.Popen[bytes]] = None
        self.asterisk_pid: Optional[int] = None
        self.postfix: Optional[subprocess.Popen[bytes]] = None
        self.postfix_pid: Optional[int] = None
        self._lock_fd: Optional[int] = None
        self._tokens = itertools.count(1)
        self._ids: dict[str, tuple[int, int]] = {}
        self.stop_report: list[str] = []

    # -- lifecycle --------------------------------------------------------- #

    def __enter__(self) -> Pbx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Pbx:
        if self.holder is not None:
            raise PbxError("already started")
        if not _stamp_ok(self.chroot):
            raise PbxError(f"{self.chroot} is not a complete chroot: call ensure_chroot() first")
        try:
            self._take_shared_lock()
            self._start_namespace()
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
        fd = os.open(_lock_path(self.chroot), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise PbxError(f"{self.chroot} is being rebuilt by another run") from None
        self._lock_fd = fd

    def _start_namespace(self) -> None:
        base = Path(os.environ.get("MISSEDCALL_E2E_RUNDIR") or tempfile.gettempdir())
        _reap_stale_rundirs(base)
        self.rundir = Path(tempfile.mkdtemp(prefix=RUNDIR_PREFIX, dir=base))
        (self.rundir / "rw").mkdir()
        (self.rundir / "root").mkdir()
        (self.rundir / "owner").write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
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
            env=_clean_env(),
        )
        assert self.holder.stdout is not None
        ready = self._read_holder_line(timeout=60)
        if ready != "READY":
            rest = self._drain_holder(timeout=5)
            raise PbxError(f"namespace setup failed: {ready} {rest}".strip())
        self.holder_pid = _wait_child(self.holder.pid)

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
        if self.keep and self.holder_pid is not None:
            with contextlib.suppress(Exception):
                self._save_artifacts()
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
            mounted = _mounts_under(self.rundir)
            if mounted:  # cannot happen: those mounts were never in our namespace
                report.append(f"host mounts left: {mounted}")
            elif not self.keep:
                with contextlib.suppress(PbxError):
                    _remove_tree(self.rundir)
            if self.keep:
                # without an owner file, _reap_stale_rundirs() leaves it alone
                (self.rundir / "owner").unlink(missing_ok=True)
                _log(f"PBX run kept in {self.rundir}")
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
        if pid is not None and _pid_alive(pid) and not _wait_gone(pid, grace):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                if _wait_gone(pid, 10):
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
                env=_clean_env(**(env or {})),
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
                env=_clean_env(),
                # own session: a Ctrl-C at the terminal reaches pytest only, whose
                # teardown then stops the daemons in order
                start_new_session=True,
            )
        finally:
            out.close()
        return popen, _wait_child(popen.pid)

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
        """Place a call from the CLI: Local/<token>@callers, which sets the caller ID
        and goes to exten@context (a queue's extension, usually).

        The caller side (the ;1 half) runs Wait(hangup_after) once the called side
        answers (FreePBX's [ext-queues] answers before Queue()), then hangs up: an
        abandon when the call is still queued then.  caller_num/caller_name None
        leaves that part of the caller ID unset; any text (commas, quotes, newlines,
        Cyrillic) is passed through unmangled.  did sets FROM_DID like a trunk would.
        """
        token = f"{next(self._tokens):04d}"
        base = f"{HARNESS_DIR}/{token}"
        aster = "asterisk"
        for suffix, value in (("num", caller_num), ("name", caller_name), ("did", did)):
            if value is not None:
                self.write_file(f"{base}.{suffix}", value, owner=aster)
        self.write_file(f"{base}.context", context, owner=aster)
        self.write_file(f"{base}.exten", exten, owner=aster)
        out = self.rx(f"channel originate Local/{token}@callers application Wait {hangup_after:g}")
        if out.strip():
            raise PbxError(f"channel originate said: {out.strip()}")
        return LocalCall(self, token)

    # -- what happened --------------------------------------------------------- #

    def read_text(self, inside: str) -> str:
        try:
            return self.path(inside).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def queue_log(self) -> list[list[str]]:
        """/var/log/asterisk/queue_log, each line split on '|'."""
        return [line.split("|") for line in self.read_text("/var/log/asterisk/queue_log").splitlines() if line]

    def full_log(self) -> str:
        return self.read_text("/var/log/asterisk/full")

    def messages_log(self) -> str:
        return self.read_text("/var/log/asterisk/messages")

    def postfix_log(self) -> str:
        return self.read_text("/var/log/postfix.log")

    def asterisk_output(self) -> str:
        """What Asterisk (and every AGI script it ran, which inherit it) wrote on stdout/stderr."""
        return self._tail("asterisk", size=10**7)

    def channels(self) -> list[str]:
        """Names of the channels up right now (``core show channels concise``)."""
        out = self.rx("core show channels concise")
        return [line.split("!", 1)[0] for line in out.splitlines() if "!" in line]

    def wait_no_channels(self, prefix: str = "", timeout: float = 30.0) -> None:
        """Wait until no channel whose name starts with prefix is up (prefix "": none at all)."""

        def gone() -> bool:
            return not any(name.startswith(prefix) for name in self.channels())

        wait_for(gone, timeout, f"channels {prefix or '(any)'}* to hang up", 0.1)

    POSTFIX_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

    def mail_queued(self) -> list[str]:
        """Messages postfix still holds (submitted but not yet delivered), by queue/file."""
        found = []
        for queue in self.POSTFIX_QUEUES:
            top = self.path(f"/var/spool/postfix/{queue}")
            if top.is_dir():
                found += [f"{queue}/{f.name}" for f in top.rglob("*") if f.is_file()]
        return found

    def wait_mail_idle(self, timeout: float = 30.0) -> None:
        """Wait until postfix has delivered everything handed to it so far.

        A message handed to sendmail sits in maildrop until pickup moves it on; every
        later step is a rename, so an empty set of queues means all is delivered.
        """
        wait_for(lambda: not self.mail_queued(), timeout, "postfix to deliver what it was given", 0.1)

    def messages(self, user: str = "ops") -> list[email.message.EmailMessage]:
        """Like mailbox(), parsed with the modern policy: headers decoded, get_content() works."""
        path = self.path(f"/var/mail/{user}")
        if not path.exists():
            return []
        box = mailbox.mbox(str(path), create=False)
        try:
            parsed = []
            for key in box.keys():
                message = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
                assert isinstance(message, email.message.EmailMessage)
                parsed.append(message)
            return parsed
        finally:
            box.close()

    def mailbox(self, user: str = "ops") -> list[email.message.Message]:
        """Messages delivered to /var/mail/<user> (every unknown recipient lands in ops)."""
        path = self.path(f"/var/mail/{user}")
        if not path.exists():
            return []
        box = mailbox.mbox(str(path), create=False)
        try:
            return [email.message_from_bytes(box.get_bytes(key)) for key in box.keys()]
        finally:
            box.close()

    def wait_for_mail(self, count: int = 1, user: str = "ops", timeout: float = 30.0) -> list[email.message.Message]:
        def enough() -> Optional[list[email.message.Message]]:
            box = self.mailbox(user)
            return box if len(box) >= count else None

        return wait_for(enough, timeout, f"{count} message(s) in /var/mail/{user}", 0.2)

    def pip_env(self) -> dict[str, str]:
        """Environment for a process in the box that should reach pip over HTTPS.

        pip in the box must use the host's CA bundle (copied in by
        host_ca_bundle()) and nothing of the host's PIP_*/proxy environment.
        """
        return {
            "PIP_CERT": self.host_ca_bundle(),
            "SSL_CERT_FILE": self.host_ca_bundle(),
            "REQUESTS_CA_BUNDLE": self.host_ca_bundle(),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        }

    def host_ca_bundle(self) -> str:
        """Copy the host's CA bundle into the box; return its path inside."""
        inside = "/etc/ssl/certs/host-ca-bundle.crt"
        if not self.path(inside).exists():
            src = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
            self.write_file(inside, Path(src).read_bytes())
        return inside

    def make_venv(self, venv: str, *requirements: str, timeout: float = 600.0) -> str:
        """python3 -m venv VENV in the box and pip install requirements into it."""
        self.run(["python3", "-m", "venv", venv], timeout=120)
        if requirements:
            self.pip(venv, "install", *requirements, timeout=timeout)
        return f"{venv}/bin/python"

    def pip(self, venv: str, *args: str, timeout: float = 600.0) -> str:
        """VENV/bin/pip ARGS in the box, with the host's CA bundle and a clean env."""
        env = self.pip_env()
        return self.run([f"{venv}/bin/pip", *args], timeout=timeout, env=env).stdout
