"""A trace, in memory-backed /dev/shm, of a call the hook mailed while it could write neither a row nor a spool file.

A full disk (database, spool and state on it) leaves the hook able to mail but
not to record: without a trace, the sweeper finds the call in queue_log once
space returns and mails it a second time (6 mails for 3 calls). /dev/shm is RAM,
so it has room when the disk has none; the sweeper takes the trace and records
the call as sent instead of mailing it. A reboot loses the traces (at worst the
duplicate the README allows). The folder is private to this user (0700, owned by
it, never a symlink): nobody else can plant a trace to silence a call. One
folder per spool folder, so two configurations on one box (or the test suite)
keep apart. Standard library only: the hook imports this.
"""

from __future__ import annotations

import os
import stat
import zlib

SHM = "/dev/shm"  # noqa: S108 - a private 0700 folder inside it, checked before use


def _folder(spool_dir: str, *, create: bool) -> str | None:
    key = zlib.crc32(os.path.abspath(spool_dir).encode("utf-8", "surrogateescape"))
    folder = os.path.join(SHM, f"missedcall-{os.geteuid()}-{key:08x}")
    if create:
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return None
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    return folder


def _name(callid: str) -> str | None:
    ok = callid and len(callid) <= 64 and all(c.isascii() and (c.isalnum() or c in "._-") for c in callid)
    return f"mailed-{callid}" if ok else None


def leave(spool_dir: str, callid: str) -> bool:
    """Note that ``callid`` was mailed though nothing could record it; False when even that failed."""
    folder, name = _folder(spool_dir, create=True), _name(callid)
    if folder is None or name is None:
        return False
    try:
        fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.close(fd)
    except OSError:
        return False
    return True


def present(spool_dir: str, callid: str) -> bool:
    """Was ``callid`` mailed by the hook while nothing could record it?"""
    folder, name = _folder(spool_dir, create=False), _name(callid)
    return folder is not None and name is not None and os.path.isfile(os.path.join(folder, name))


def forget(spool_dir: str, callid: str) -> None:
    """The call is recorded now: drop its trace."""
    folder, name = _folder(spool_dir, create=False), _name(callid)
    if folder is not None and name is not None:
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass
