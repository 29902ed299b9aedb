"""``missedcall-agi``: the AGI hook script, for an install made with pip alone.

install.sh copies ``agi-bin/missed.py`` into Asterisk's agi-bin. A wheel has no
agi-bin, so it carries the same file as package data
(``missedcall/admin/agi-bin/missed.py``, kept byte-identical to the repo's by
tests/test_packaging.py), and this command hands it out with its first line
pointing at the Python it runs under: Asterisk executes the script directly,
so that line decides which virtualenv's missedcall the hook imports.

    missedcall-agi                       print the script
    missedcall-agi --install DIR         write DIR/missed.py (mode 0755, atomically)
    missedcall-agi --install DIR --force ... even over a different missed.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from importlib import resources

from missedcall import __version__
from missedcall.text import printable

PROG = "missedcall-agi"
SCRIPT = "missed.py"


class AgiScriptError(RuntimeError):
    """The script cannot be written; the message is one line saying why and what to do."""


def packaged_script() -> bytes:
    """The hook script as shipped in this package, first line and all."""
    return (resources.files("missedcall.admin") / "agi-bin" / SCRIPT).read_bytes()


def render(script: bytes, interpreter: str) -> bytes:
    """``script`` with its ``#!`` line replaced by one naming ``interpreter``, with ``-IS``: missed.py skips
    site (a sizeable part of every hang-up's start-up) and adds a virtualenv's packages itself."""
    if not os.path.isabs(interpreter) or not interpreter.isprintable() or any(c.isspace() for c in interpreter):
        # A shebang line ends at the first blank and cannot be quoted.
        raise AgiScriptError(
            f"cannot name {printable(interpreter, limit=200)!r} on a #! line: not an absolute path without blanks;"
            " run missedcall-agi from a virtualenv that lives at such a path"
        )
    body = script.split(b"\n", 1)[1] if script.startswith(b"#!") else script
    return b"#!" + os.fsencode(interpreter) + b" -IS\n" + body


def install(folder: str, content: bytes, *, force: bool = False) -> str:
    """Write ``folder/missed.py`` atomically with mode 0755; say what was done in one line.

    A missed.py that differs (another version, a hand-edited copy, someone else's
    script) is replaced only with ``force``; the owner and group of a file it
    replaces are kept where we may set them (Asterisk must still be able to run it).
    """
    shown = printable(folder, limit=200)
    if not os.path.isdir(folder):
        raise AgiScriptError(f"{shown} is not a folder: pass Asterisk's agi-bin (astagidir in asterisk.conf)")
    target = os.path.join(folder, SCRIPT)
    target_shown = printable(target, limit=220)
    old: os.stat_result | None = None
    try:
        old = os.lstat(target)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise AgiScriptError(f"cannot look at {target_shown}: {exc.strerror}") from None
    if old is not None:
        if not os.path.isfile(target) or os.path.islink(target):
            raise AgiScriptError(f"{target_shown} exists and is not a plain file: move it away and run again")
        try:
            with open(target, "rb") as handle:
                current = handle.read(len(content) + 1)
        except OSError as exc:
            raise AgiScriptError(f"cannot read {target_shown}: {exc.strerror}") from None
        if current == content and (old.st_mode & 0o777) == 0o755:
            return f"{target_shown} is already this hook; unchanged"
        if current != content and not force:
            raise AgiScriptError(f"{target_shown} exists and differs from this hook: pass --force to replace it")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{SCRIPT}.", dir=folder)
    except OSError as exc:
        raise AgiScriptError(f"cannot write in {shown}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fchmod(handle.fileno(), 0o755)
            if old is not None:
                try:
                    os.fchown(handle.fileno(), old.st_uid, old.st_gid)
                except PermissionError:
                    pass  # not root: the file stays ours, which is who asked for it
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise AgiScriptError(f"cannot write {target_shown}: {exc.strerror}") from None
    _sync_folder(folder)
    return f"{'replaced' if old is not None else 'installed'} {target_shown} (runs {printable(sys.executable)})"


def _sync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename itself is done
    finally:
        os.close(fd)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {printable(message, limit=300)} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Print missedcall's AGI hook script (missed.py) with its first line naming this Python, "
        "or install it into Asterisk's agi-bin.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--install", metavar="DIR", help="write DIR/missed.py (mode 0755) instead of printing it")
    parser.add_argument("--force", action="store_true", help="with --install: replace a missed.py that differs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.force and not args.install:
        print(f"{PROG}: error: --force goes with --install DIR (see --help)", file=sys.stderr)
        return 2
    try:
        content = render(packaged_script(), sys.executable)
        if args.install:
            print(install(args.install, content, force=args.force))
        else:
            sys.stdout.buffer.write(content)
            sys.stdout.flush()
    except AgiScriptError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the packaged script unreadable: a broken installation
        print(f"{PROG}: error: cannot read the packaged hook: {printable(str(exc), limit=300)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
