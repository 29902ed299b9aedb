"""Guards for text that comes from outside: printable lines, bounded digit strings, plausible times. Pure.

Caller IDs, queue_log fields, spool files and settings all arrive as text an
attacker or a careless admin may shape. Each guard here is the one place its
rule lives, so the AGI, the sweeper, the CLI and the mail builder agree on it.
Standard library only and no regex compiled at import: the AGI imports this.
"""

from __future__ import annotations

import time

#: 2000-01-01T00:00:00Z. No queue_log or call older than this is real.
EPOCH_MIN = 946_684_800
#: How far ahead of this box's clock a time may be before it is refused (clock skew between hosts).
FUTURE_SKEW = 300


def printable(text: str, *, limit: int | None = None, replace: str = " ") -> str:
    """``text`` with every non-printable character (controls, line breaks, bidi marks) replaced, cut to ``limit``."""
    if limit is not None:
        text = text[: limit * 2]  # never walk a megabyte to keep a hundred characters
    if text.isprintable():  # the usual case, in C: the sweeper cleans tens of thousands of caller IDs a run
        return text if limit is None else text[:limit]
    cleaned = "".join(ch if ch.isprintable() else replace for ch in text)
    return cleaned if limit is None else cleaned[:limit]


#: ASCII letters, digits, "_" and "-": what a callid keeps in a header or a Message-ID.
WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def only(text: str, allowed: frozenset[str], replace: str) -> str:
    """``text`` with every character not in ``allowed`` replaced by ``replace`` (a character class, no regex)."""
    return "".join(ch if ch in allowed else replace for ch in text)


def small_int(text: str | bytes, max_digits: int = 9) -> int | None:
    """The value of a string of ASCII digits no longer than ``max_digits``, else None.

    ``int()`` accepts "²", " 7", "1_000" and raises on 4,300 digits; none of those is a count from Asterisk.
    """
    if isinstance(text, bytes):
        ok = text.isdigit() and 0 < len(text) <= max_digits  # bytes.isdigit() is ASCII-only already
    else:
        ok = text.isascii() and text.isdigit() and 0 < len(text) <= max_digits
    return int(text) if ok else None


def epoch_bounds(now: float | None = None) -> tuple[int, float]:
    """(earliest, latest) plausible Unix time, for a loop that checks many (the sweeper's million lines)."""
    return EPOCH_MIN, (time.time() if now is None else now) + FUTURE_SKEW


def plausible_epoch(value: float, now: float | None = None) -> bool:
    """True for a Unix time from 2000 up to a few minutes ahead of this box's clock."""
    earliest, latest = epoch_bounds(now)
    return earliest <= value <= latest


def epoch(text: str | bytes, now: float | None = None) -> int | None:
    """A plausible Unix time written as digits (queue_log's first field, QUEUEJOINTIME), else None."""
    value = small_int(text, 12)
    return value if value is not None and plausible_epoch(value, now) else None


def caller_key(number: str) -> str:
    """The caller's number reduced to its last 10 digits: the indexed key repeat misses and callbacks share.

    Cheap and import-free (it runs in the hook). ``8 916 123-45-67``, ``+7 916 1234567`` and
    ``79161234567`` give the same key; a number of fewer than 5 digits (an extension, "anonymous")
    gives none, so internal calls and hidden numbers never group together. The resolver refines a
    key match with E.164 parsing; this only narrows the search.
    """
    digits = "".join(ch for ch in number[:128] if "0" <= ch <= "9")
    return digits[-10:] if len(digits) >= 5 else ""
