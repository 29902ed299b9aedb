"""The cached Debian sid chroot with Asterisk 22 and Postfix that every e2e PBX runs on.

``ensure_chroot()`` builds it with debootstrap (asterisk, python3, python3-venv,
postfix, ...) once per machine and caches it (default
``/var/cache/missedcall-e2e/sid``, env ``MISSEDCALL_E2E_CHROOT``).  The cache is
never modified after it is built; a stamp written last names the recipe, and an
fcntl lock on ``<path>.lock`` keeps two runs from building at once (a running
PBX holds it shared, so nobody swaps the tree out from under it).

Standard library only; needs root, util-linux (unshare, mount) and, for the first
build, debootstrap (installed with apt-get when missing).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Optional

from processes import PbxError, clean_env, progress, run_host

DEFAULT_CHROOT = Path("/var/cache/missedcall-e2e/sid")
CHROOT_ENV = "MISSEDCALL_E2E_CHROOT"
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


def default_chroot_path() -> Path:
    return Path(os.environ.get(CHROOT_ENV) or DEFAULT_CHROOT)


def recipe_hash() -> str:
    """Identifies what ensure_chroot() would build; stored in the stamp."""
    h = hashlib.sha256()
    for part in (SUITE, str(RECIPE_REVISION), " ".join(PACKAGES), BUILD_SCRIPT, *POSTFIX_SETTINGS):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]



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
        probe = run_host(
            ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", tmp],
            timeout=30,
            check=False,
        )
    if probe.returncode != 0:
        return f"cannot create mount/PID namespaces or mount: {probe.stdout.strip()[:200]}"
    if stamp_ok(default_chroot_path()):
        return None
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        return "no debootstrap, and no apt-get to install it"
    return None


@contextlib.contextmanager
def flock(lock_path: Path, mode: int, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
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
                progress(f"waiting for the lock {lock_path} (another run is building?)")
                announced = True
            time.sleep(1)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def chroot_lock_path(path: Path) -> Path:
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


def stamp_ok(path: Path) -> bool:
    stamp = _read_stamp(path)
    return stamp is not None and stamp.get("recipe") == recipe_hash()


def mounts_under(path: Path) -> list[str]:
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


def remove_tree(path: Path) -> None:
    """rm -rf that refuses to run while anything is mounted beneath path."""
    if not path.exists() and not path.is_symlink():
        return
    mounted = mounts_under(path)
    if mounted:
        raise PbxError(f"refusing to delete {path}: still mounted: {', '.join(mounted)}")
    # --one-file-system: even a mount we failed to see is never descended into.
    run_host(["rm", "-rf", "--one-file-system", "--", str(path)], timeout=600)


def _ensure_debootstrap(log: IO[str]) -> str:
    found = shutil.which("debootstrap")
    if found:
        return found
    progress("installing debootstrap on the host (apt-get update; apt-get install debootstrap)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_host(["apt-get", "-q", "update"], timeout=HOST_TIMEOUT, env=env, log_to=log)
    run_host(["apt-get", "-q", "-y", "install", "debootstrap"], timeout=HOST_TIMEOUT, env=env, log_to=log)
    found = shutil.which("debootstrap")
    if not found:
        raise PbxError("apt-get installed debootstrap but it is not on PATH")
    return found


def _build(target: Path, log: IO[str]) -> dict[str, str]:
    """debootstrap + apt-get install into target (a fresh directory)."""
    debootstrap = _ensure_debootstrap(log)
    started = time.monotonic()
    progress(f"debootstrap {SUITE} into {target} (default mirror; log: {log.name})")
    # In a private mount namespace: debootstrap mounts /proc and /sys in the target,
    # and if it is killed half-way those mounts must not outlive it on the host.
    # No mirror argument: debootstrap's default (the Debian registry) is used.
    run_host(
        ["unshare", "--mount", "--propagation", "private", "--", debootstrap, "--variant=minbase", SUITE, str(target)],
        timeout=HOST_TIMEOUT * 2,
        log_to=log,
    )
    progress(f"debootstrap done in {time.monotonic() - started:.0f}s; installing {' '.join(PACKAGES)}")
    # debootstrap copied the host's resolv.conf in; keep it current for apt.
    with contextlib.suppress(OSError):
        shutil.copyfile("/etc/resolv.conf", target / "etc/resolv.conf")
    script = "set -eu\n" + BUILD_SCRIPT.format(
        packages=" ".join(PACKAGES),
        postfix_settings=" ".join(shlex.quote(s) for s in POSTFIX_SETTINGS),
    )
    # apt needs /proc inside the chroot; the private namespace takes it away again.
    run_host(
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
        env=clean_env(DEBIAN_FRONTEND="noninteractive"),
        log_to=log,
    )
    version = run_host(["chroot", str(target), "asterisk", "-V"], timeout=60, env=clean_env()).stdout.strip()
    python = run_host(["chroot", str(target), "python3", "-V"], timeout=60, env=clean_env()).stdout.strip()
    progress(f"built: {version}, {python}, in {time.monotonic() - started:.0f}s")
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
    lock = chroot_lock_path(path)
    # Fast path under a shared lock: a running Pbx holds one too, so a rebuild
    # never swaps the tree out from under a live PBX.
    with flock(lock, fcntl.LOCK_SH):
        if stamp_ok(path):
            return path
    old: Optional[Path] = None
    with flock(lock, fcntl.LOCK_EX):
        if stamp_ok(path):  # somebody else built it while we waited
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Leftovers of builds that died half-way (we hold the lock: nobody builds).
        for stale in path.parent.glob(f".{path.name}.build-*"):
            progress(f"removing incomplete build {stale}")
            remove_tree(stale)
        if path.exists():
            progress(f"{path} is incomplete or from another recipe: rebuilding")
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
                remove_tree(tmp)
            raise
    if old is not None:
        # after the lock is released: nobody needs to wait for this rm -rf (a
        # leftover is cleaned up by the next build)
        remove_tree(old)
    return path


