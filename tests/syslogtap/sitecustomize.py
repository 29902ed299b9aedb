"""Test-only taps for processes the tests start (the AGI, missedcall-admin): put this folder on
PYTHONPATH and set

* MISSEDCALL_TEST_SYSLOG=FILE to get a copy of every syslog message the process writes (they
  still go to syslog, and argv stays what it was);
* MISSEDCALL_TEST_SCHEDSTAT=FILE to get, at exit, the seconds the process spent waiting for a
  CPU (/proc/self/schedstat), which the hook's budget does not count (missedcall/budget.py).
"""

import atexit
import os
import syslog

_log = os.environ.get("MISSEDCALL_TEST_SYSLOG")
if _log:
    _original = syslog.syslog

    def _tee(*args: object) -> None:
        with open(_log, "a", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(str(args[-1]).replace("\n", "\\n") + "\n")
        _original(*args)  # type: ignore[call-overload]

    syslog.syslog = _tee  # type: ignore[assignment]

_sched = os.environ.get("MISSEDCALL_TEST_SCHEDSTAT")
if _sched:

    def _write_wait() -> None:
        try:
            with open("/proc/self/schedstat", "rb") as handle:
                waited = int(handle.read().split()[1]) / 1e9
            with open(_sched, "a", encoding="ascii") as handle:
                handle.write(f"{os.getpid()} {waited:.3f}\n")
        except (OSError, IndexError, ValueError):
            pass

    atexit.register(_write_wait)
