"""The spool: missed calls the AGI could not record because the database was unreachable.

One JSON file per call, ``<MISSEDCALL_SPOOL_DIR>/call-<callid>.json``, written
atomically (a private temporary file, fsync, rename, fsync of the folder) with
mode 0640, so a reader sees a whole file or none, and a crash leaves at worst a
``.tmp-*`` file that is never read. The file says whether the AGI mailed the
call (``status`` ``sent``), so ``retry`` records it without mailing it again;
``pending`` ones are recorded and then sent like any other pending call.

``retry`` takes only files older than :data:`SETTLE` seconds: the AGI that
wrote a file may still be mailing and rewrite it (its whole run is bounded to
3 s, far less under any load a PBX survives), and :data:`SETTLE` is shorter
than the claim lease (missedcall.record.storage.CLAIM_LEASE), so a spooled copy is always imported
before a row of the same call may be retried.

The folder also holds ``recipients.json``, the last known recipients
(:mod:`missedcall.deliver.lastknown`). Files written by root (the CLI) are given the
folder's owner and group, so the Asterisk user can still read and replace them.
"""

from __future__ import annotations

import os
import stat
import time

from missedcall.record import model
from missedcall.record.model import CallRecord
from missedcall.slots import Value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from typing import Any

SETTLE = 30
FILE_MODE = 0o640
DIR_MODE = 0o750


def _spool_name(name: str) -> bool:
    """``call-<callid>.json``: a file this module wrote (no regex: the AGI imports this module)."""
    return name.startswith("call-") and name.endswith(".json") and model.is_callid(name[5:-5])


class SpoolError(RuntimeError):
    """A spool file or folder that cannot be used; one line."""


class SpoolGone(SpoolError):
    """The file went away meanwhile: another retry took it."""


class Spooled(Value):
    __slots__ = ("path", "call", "mtime")  # noqa: RUF023

    def __init__(self, path: str, call: CallRecord, mtime: float) -> None:
        self.path = path
        self.call = call
        self.mtime = mtime

    @property
    def mailed(self) -> bool:
        """The mail went (``held``: the single mails went, digests are due)."""
        return self.call.status in ("sent", "held")


def path_for(spool_dir: str, callid: str) -> str:
    # Callids are cleaned to [A-Za-z0-9._-] before they get here; refuse anything else rather
    # than let a name reach outside the folder (the "call-" prefix keeps "." and ".." harmless).
    if not model.is_callid(callid):
        raise SpoolError(f"callid {callid[:80]!r} cannot name a spool file")
    return os.path.join(spool_dir, f"call-{callid}.json")


def atomic_write(directory: str, name: str, data: bytes, *, create_dir: bool = False) -> str:
    """Write ``directory/name`` whole or not at all, mode 0640; returns the path."""
    if create_dir:
        try:
            os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create {directory}: {exc.strerror}") from None
    final = os.path.join(directory, name)
    # os.urandom rather than secrets: secrets loads hashlib and OpenSSL, milliseconds on every hang-up.
    tmp = os.path.join(directory, f".tmp-{name}-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        raise SpoolError(f"cannot write in {directory}: {exc.strerror}") from None
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask
            if os.geteuid() == 0:
                folder = os.stat(directory)
                os.fchown(fd, folder.st_uid, folder.st_gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SpoolError(f"cannot write {final}: {exc.strerror}") from None
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # the rename is done; only its durability across a power cut is at stake
    return final


def to_json(call: CallRecord) -> dict[str, Any]:
    """The spool form: the one JSON form of a call (missedcall.record.model) with a version."""
    return {"version": 1, **model.to_dict(call)}


def from_json(data: Any) -> CallRecord:
    """The call a spool file holds; raises SpoolError when it is not one of ours or a value is not right."""
    if not isinstance(data, dict) or data.get("version") != 1:
        raise SpoolError("not a version 1 missedcall spool record")
    try:
        return model.from_dict(data)
    except model.RecordError as exc:
        raise SpoolError(f"not a missedcall spool record ({exc})") from None


def write(spool_dir: str, call: CallRecord, *, create_dir: bool = True) -> str:
    """Spool ``call`` as it stands (its ``status`` says whether it was mailed); returns the path."""
    import json  # here: a call that is mailed at once never spools, and json brings re with it

    payload = json.dumps(to_json(call), ensure_ascii=True, sort_keys=True).encode("ascii")
    return atomic_write(spool_dir, os.path.basename(path_for(spool_dir, call.callid)), payload, create_dir=create_dir)


def read_regular(path: str, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file at ``path``.

    Opened without blocking and without following a symlink, and refused unless
    it is a regular file: a FIFO or a device put at a spool path must never hang
    the AGI or retry. Raises SpoolGone when there is no such file, else SpoolError.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SpoolGone(f"{path} is gone") from None
    except OSError as exc:
        raise SpoolError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpoolError(f"{path} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = os.read(fd, min(1 << 16, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise SpoolError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def read(path: str) -> Spooled:
    raw = read_regular(path, 1 << 20)  # first: the AGI's look-up for a call never spooled stops here
    try:
        mtime = os.stat(path, follow_symlinks=False).st_mtime
    except OSError:
        raise SpoolGone(f"{path} is gone") from None
    import json

    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SpoolError(f"{path}: not JSON") from None
    return Spooled(path=path, call=from_json(data), mtime=mtime)


def find(spool_dir: str, callid: str) -> Spooled | None:
    """The spooled copy of one call, if any (one failed open when there is none: cheap for the AGI)."""
    try:
        return read(path_for(spool_dir, callid))
    except SpoolError:
        return None


def ready(spool_dir: str, *, now: float | None = None, settle: float = SETTLE) -> list[str]:
    """Spool files at least ``settle`` seconds old, oldest first."""
    now = time.time() if now is None else now
    found: list[tuple[float, str]] = []
    try:
        entries = list(os.scandir(spool_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SpoolError(f"cannot list {spool_dir}: {exc.strerror}") from None
    for entry in entries:
        if not _spool_name(entry.name):
            continue
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if now - mtime >= settle and entry.is_file(follow_symlinks=False):
            found.append((mtime, entry.path))
    return [path for _, path in sorted(found)]


def count(spool_dir: str) -> tuple[int, float | None]:
    """(spooled calls, mtime of the oldest) for doctor."""
    try:
        mtimes = [e.stat().st_mtime for e in os.scandir(spool_dir) if _spool_name(e.name)]
    except OSError:
        return 0, None
    return len(mtimes), (min(mtimes) if mtimes else None)


def bad_files(spool_dir: str) -> list[str]:
    """Names of the spool files moved aside (``bad-…``), for doctor."""
    try:
        return sorted(e.name for e in os.scandir(spool_dir) if e.name.startswith("bad-"))
    except OSError:
        return []


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def quarantine(path: str) -> str:
    """Move an unreadable spool file aside (``bad-...``) so it is kept for a human, not retried forever."""
    target = os.path.join(os.path.dirname(path), "bad-" + os.path.basename(path))
    try:
        os.rename(path, target)
    except OSError:
        return path
    return target
