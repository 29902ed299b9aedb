"""The file side of the dialplan edit: read, back up, replace atomically, show or apply a change.

Nothing here knows what a dialplan is: :mod:`missedcall.admin.dialplan` computes the new text
(pure) and hands it here.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
import tempfile
import time


def backup(path: str, backup_dir: str) -> str:
    """Copy ``path`` to ``backup_dir/<name>.<YYYYmmdd-HHMMSS>`` (never over an older backup)."""
    os.makedirs(backup_dir, mode=0o750, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = os.path.join(backup_dir, f"{os.path.basename(path)}.{stamp}")
    number = 1
    while os.path.exists(target):
        target = os.path.join(backup_dir, f"{os.path.basename(path)}.{stamp}.{number}")
        number += 1
    shutil.copy2(path, target)
    return target


def write_like(path: str, text: str, like: str | None) -> None:
    """Replace ``path`` atomically, keeping its mode and owner (or those of ``like`` for a new file)."""
    reference = path if os.path.exists(path) else like
    st = os.stat(reference) if reference and os.path.exists(reference) else None
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".missedcall-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
            handle.write(text)
        os.chmod(temp, (st.st_mode & 0o7777) if st else 0o644)
        if st is not None and os.geteuid() == 0:
            os.chown(temp, st.st_uid, st.st_gid)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def read_text(path: str) -> str | None:
    """The file's text, None when it does not exist; other OSErrors are the caller's to word."""
    try:
        # surrogateescape: any bytes survive the round trip, so a revert is byte for byte.
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def diff(path: str, old: str | None, new: str | None) -> str:
    return "".join(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            (new or "").splitlines(keepends=True),
            fromfile=path if old is not None else "/dev/null",
            tofile=path if new is not None else "/dev/null",
        )
    )


def apply(path: str, old: str | None, new: str | None, args: argparse.Namespace, what: str) -> None:
    if new == old:
        print(f"dialplan: {path} already {what}; nothing to change")
        return
    if args.dry_run:
        print(f"dialplan: would change {path} ({what}):")
        sys.stdout.write(diff(path, old, new))
        return
    if old is not None and args.backup_dir:
        print(f"dialplan: backup of {path}: {backup(path, args.backup_dir)}")
    if new is None:
        os.unlink(path)
        print(f"dialplan: removed {path} (install.sh had created it)")
    else:
        write_like(path, new, getattr(args, "generated", None))
        print(f"dialplan: {path} now {what}")
