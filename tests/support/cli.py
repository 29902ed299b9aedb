"""Running ``missedcall-admin`` in the test process, as its users see it: exit code, stdout, stderr."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from missedcall.admin import cli


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``missedcall-admin ARGV`` in-process; argparse's usage errors (SystemExit) count as their exit code."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
