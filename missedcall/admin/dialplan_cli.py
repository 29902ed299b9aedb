"""The command line install.sh calls: ``python -m missedcall.admin.dialplan install|uninstall|check|snippet``.

The text work is :mod:`missedcall.admin.dialplan` (pure); the files are
:mod:`missedcall.admin.dialplan_files`. ``--service URL`` puts the FastAGI service
first in the block, with the process hook as its fallback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from missedcall.admin import dialplan_files
from missedcall.admin.dialplan import (
    PLAIN_SNIPPET,
    DialplanError,
    Refused,
    check_h_app,
    import_hint,
    install_text,
    parse,
    uninstall_text,
)
from missedcall.freepbx import ext_queues_h_line


def _read(path: str) -> str | None:
    try:
        return dialplan_files.read_text(path)
    except OSError as exc:
        raise DialplanError(f"cannot read {path}: {exc.strerror or exc}") from None


def generated_h_app(generated: str) -> str:
    text = _read(generated)
    if text is None:
        raise DialplanError(f"{generated} does not exist: is this FreePBX? (fwconsole reload writes it)")
    h_app = ext_queues_h_line(text)
    if h_app is None:
        raise DialplanError(
            f"{generated} has no [ext-queues] h line to repeat; create a queue in FreePBX and Apply Config first"
        )
    return check_h_app(h_app)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m missedcall.admin.dialplan", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name in ("check", "install"):
        sub = verbs.add_parser(name)
        sub.add_argument("--file", required=True, help="extensions_override_freepbx.conf")
        sub.add_argument("--generated", required=True, help="extensions_additional.conf")
        sub.add_argument("--force", action="store_true")
        sub.add_argument("--service", default="", help="agi://HOST:PORT/missed: the FastAGI service first")
    sub = verbs.add_parser("uninstall")
    sub.add_argument("--file", required=True)
    for sub in verbs.choices.values():
        sub.add_argument("--dry-run", action="store_true")
        sub.add_argument("--backup-dir", default="")
    verbs.add_parser("snippet")
    args = parser.parse_args(argv)
    try:
        if args.verb == "snippet":
            sys.stdout.write(PLAIN_SNIPPET)
            return 0
        old = _read(args.file)
        if args.verb == "uninstall":
            if old is None:
                print(f"dialplan: {args.file} does not exist; nothing to remove")
                return 0
            dialplan_files.apply(args.file, old, uninstall_text(old), args, "without the missedcall block")
            return 0
        h_app = generated_h_app(args.generated)
        new = install_text(old, h_app, force=args.force, service=args.service)
        hint = import_hint(parse(old or "")) if args.force else ""
        if hint:
            print(f"dialplan: the hand-made hook goes; {hint}")
        if args.verb == "check":
            change = "unchanged" if new == old else "updated"
            print(f"dialplan: FreePBX's [ext-queues] h calls {h_app}; {args.file} will be {change}")
            return 0
        via = f"{args.service}, falling back to missed.py" if args.service else "missed.py"
        dialplan_files.apply(args.file, old, new, args, f"holds the missedcall block ({via}; h ends with {h_app})")
    except Refused as exc:
        print(f"install.sh: refusing to edit {args.file}: {exc}", file=sys.stderr)
        return 1
    except (DialplanError, OSError) as exc:
        print(f"install.sh: dialplan: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
