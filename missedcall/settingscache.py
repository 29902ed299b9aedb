"""What python-dotenv read from the settings file, kept next to it so that the AGI need not import it.

python-dotenv stays the one parser of the settings file; importing it (with the
``logging`` it pulls in) costs each hang-up more than everything else in reading
the settings. So whoever parses the file and may write the cache (root running any
``missedcall-admin`` command, install.sh, or the file's owner) leaves the parsed
values in ``.<name>.parsed`` beside it, and a later reader takes them from there
while the file is provably unchanged.

Why this is safe with a file that holds passwords:

* the cache has the file's owner, group and mode, so it is readable by exactly
  those who can read the file; it is created 0600 by its writer, given the file's
  owner, group and mode, filled, and renamed into place (a reader sees a whole
  old cache, a whole new one, or none);
* a reader believes a cache only when it is a regular file (never followed through
  a symlink) whose owner, group and mode equal the settings file's: only root or
  that owner can make such a file, and either can edit the settings file anyway;
* it is keyed by the file's device, inode, size, mtime, ctime, owner and mode and by
  the package version: ctime cannot be set from user space, so any edit, rename onto
  it, chmod or chown makes the cache stale; a file changed less than ``SETTLE``
  seconds before it was read is not cached at all, as a second edit within the
  file system's timestamp granularity would be invisible (git's "racy" rule);
* only the file's values are cached: the environment is laid over them on every
  read, as before, and every value is validated on every read, as before.

A stale or missing cache costs one python-dotenv parse, nothing more.

The cache is UTF-8 text in NUL-separated fields: a magic word, the key, the number
of values, then each name and its value. Not JSON: ``json`` imports ``re``, and with
``enum`` and ``functools`` behind it that was a few milliseconds of every hang-up
that nothing else on the AGI's path needs. A NUL cannot be in a setting that
python-dotenv read from a text file an admin edits; should one be there, the values
are simply not cached.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Mapping

from missedcall import __version__

FORMAT = 2
MAGIC = "missedcall-settings"
_SEP = "\x00"
#: The most a cache may weigh: the settings file itself is bounded by config.MAX_FILE.
MAX_BYTES = 4 << 20
#: Seconds a settings file must have been left alone before its values are cached.
SETTLE = 2.0


def cache_path(config_path: str) -> str:
    folder, name = os.path.split(config_path)
    return os.path.join(folder, f".{name}.parsed")


def _key(info: os.stat_result) -> list[str]:
    fields: list[object] = [
        FORMAT,
        __version__,
        info.st_dev,
        info.st_ino,
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
        info.st_uid,
        info.st_gid,
        info.st_mode,
    ]
    return [str(field) for field in fields]


def _same_owner_and_mode(cache: os.stat_result, source: os.stat_result) -> bool:
    return (
        stat.S_ISREG(cache.st_mode)
        and cache.st_uid == source.st_uid
        and cache.st_gid == source.st_gid
        and stat.S_IMODE(cache.st_mode) == stat.S_IMODE(source.st_mode)
    )


def load(config_path: str, source: os.stat_result) -> dict[str, str] | None:
    """The cached values of the settings file whose (f)stat is ``source``; None when there is no cache
    to believe."""
    try:
        fd = os.open(cache_path(config_path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not _same_owner_and_mode(info, source) or info.st_size > MAX_BYTES:
            return None
        chunks = []
        while True:
            chunk = os.read(fd, MAX_BYTES + 1)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        fields = b"".join(chunks).decode("utf-8").split(_SEP)
    except ValueError:  # hand-edited: parse the file instead
        return None
    key = _key(source)
    head = 1 + len(key)
    if fields[:head] != [MAGIC, *key] or len(fields) <= head:
        return None
    count, pairs = fields[head], fields[head + 1 :]
    if not (count.isascii() and count.isdigit()) or len(pairs) != 2 * int(count):  # torn, or a foreign file
        return None
    return dict(zip(pairs[::2], pairs[1::2]))


def save(config_path: str, source: os.stat_result, values: Mapping[str, str]) -> bool:
    """Leave ``values`` (what python-dotenv read from the file whose stat is ``source``) for the next reader.

    Never raises: a cache that cannot be written (no right to the folder, not root nor the file's
    owner, a read-only file system) only means the next reader parses the file itself.
    """
    if time.time() - source.st_mtime < SETTLE or time.time() - source.st_ctime < SETTLE:
        return False
    if os.geteuid() not in (0, source.st_uid):
        return False  # the cache would not have the file's owner, and no reader would believe it
    fields = [MAGIC, *_key(source), str(len(values))]
    for name, value in values.items():
        fields += (name, value)
    if any(_SEP in field for field in fields):
        return False  # a NUL in a setting: no field boundary left to trust, so no cache
    target = cache_path(config_path)
    temporary = f"{target}.{os.getpid()}.tmp"
    try:
        payload = _SEP.join(fields).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate python-dotenv let through
        return False
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        try:
            if (os.fstat(fd).st_uid, os.fstat(fd).st_gid) != (source.st_uid, source.st_gid):
                os.fchown(fd, source.st_uid, source.st_gid)
            os.fchmod(fd, stat.S_IMODE(source.st_mode))
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return False
    return True
