"""Where the product reports what it did: syslog always, stderr for the CLI.

The AGI must print nothing but AGI commands and must keep Asterisk's log clean,
so it never writes to stderr; it mirrors problems to the AGI VERBOSE channel
itself.
"""

from __future__ import annotations

import sys
import syslog

from missedcall.text import printable

_opened = False


def _open() -> None:
    global _opened
    if not _opened:
        syslog.openlog("missedcall", syslog.LOG_PID, syslog.LOG_USER)
        _opened = True


def _clean(message: str) -> str:
    return printable(message, limit=1000)


def info(message: str) -> None:
    _open()
    syslog.syslog(syslog.LOG_INFO, _clean(message))


def warning(message: str) -> None:
    _open()
    syslog.syslog(syslog.LOG_WARNING, _clean(message))


def error(message: str) -> None:
    _open()
    syslog.syslog(syslog.LOG_ERR, _clean(message))


class StderrToSyslog:
    """Stands in for sys.stderr in the AGI: anything a library prints goes to syslog, not Asterisk."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                warning(line)
        return len(text)

    def flush(self) -> None:
        return None


def redirect_stderr() -> None:
    sys.stderr = StderrToSyslog()  # type: ignore[assignment]
