"""Test-only: put this folder on PYTHONPATH and set MISSEDCALL_TEST_SYSLOG=FILE to get a copy of
every syslog message a process writes (the AGI, missedcall-admin, ...). Nothing else changes:
the messages still go to syslog, and argv stays what it was."""

import os
import syslog

_target = os.environ.get("MISSEDCALL_TEST_SYSLOG")
if _target:
    _original = syslog.syslog

    def _tee(*args: object) -> None:
        with open(_target, "a", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(str(args[-1]).replace("\n", "\\n") + "\n")
        _original(*args)  # type: ignore[call-overload]

    syslog.syslog = _tee  # type: ignore[assignment]
