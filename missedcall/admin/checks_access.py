"""Who may do what with a file: doctor judges permissions for the Asterisk user, not for whoever runs it."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4} {self.name}: {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix else text


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gids: frozenset[int]


def find_user(name: str) -> User | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return User(name, entry.pw_uid, frozenset(os.getgrouplist(name, entry.pw_gid)))


def user_may(path: str, user: User, want: int) -> bool:
    """Whether ``user`` has ``want`` (4 read, 2 write, 1 execute) on ``path`` and can reach it."""
    try:
        parents: set[str] = set()
        # The folders on the way to the link and to what it points at must both be searchable.
        for start in {os.path.abspath(path), os.path.realpath(path)}:
            current = os.path.dirname(start)
            while current not in parents:
                parents.add(current)
                current = os.path.dirname(current)
        return all(_bits(p, user, 1) for p in parents) and _bits(path, user, want)
    except OSError:
        return False


def _bits(path: str, user: User, want: int) -> bool:
    st = os.stat(path)
    mode = st.st_mode
    if user.uid == 0:
        # root reads and writes anything; it executes what has any x bit (or a directory).
        return not want & 1 or stat.S_ISDIR(mode) or bool(mode & 0o111)
    if st.st_uid == user.uid:
        bits = (mode >> 6) & 7
    elif st.st_gid in user.gids:
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return bits & want == want


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def has_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True
