"""The AGI protocol as Asterisk 22 really speaks it, with no I/O: shared by the process hook
(missedcall.detect.agi, over pipes) and the FastAGI service (missedcall.detect.fastagi, over TCP).

* headers: a line that is not ``agi_xxx: value`` continues the previous value, and
  the first line of a key wins (docs/design.md §2, §4);
* replies: a status line starts with three digits and a space or dash;
* variables: one ``GET FULL VARIABLE`` framed by a random nonce on both sides, so a
  caller name that smuggles in a fake ``200 result=...`` line cannot be taken for the
  answer, and a reply one line behind is re-synchronised (:class:`Framed`).

Stdlib only and no regular expressions: the process hook imports this on every call.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The longest line either reader keeps; the rest of an endless line is dropped.
MAX_LINE = 128 * 1024
#: The separator inside a framed request: the values asked for are Asterisk's own
#: (no caller ID), never holding "|".
SEP = "|"
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_CONTROL = frozenset(chr(c) for c in range(32)) | {'"', "\\"}


def header_key(line: str) -> tuple[str, str] | None:
    """``("agi_x", value)`` for an ``agi_x: value`` line (the space after the colon optional), else None."""
    if not line.startswith("agi_"):
        return None
    colon = line.find(":", 4)
    if colon <= 4:
        return None
    key = line[:colon]
    if not _KEY_CHARS.issuperset(key[4:]):  # in C: a per-character generator cost a session ~25 lines x 10 steps
        return None
    value = line[colon + 1 :]
    return key, value[1:] if value.startswith(" ") else value


def parse_headers(lines: Sequence[str]) -> dict[str, str]:
    """The AGI environment; a line that is no ``agi_`` header continues the previous value.

    Asterisk writes caller ID raw, so ``Line1<LF>Line2`` arrives as
    ``agi_calleridname: Line1`` followed by a bare ``Line2``. The first line of a
    key wins: a caller name holding ``<LF>agi_uniqueid: X`` cannot replace the real
    uniqueid (written before the caller ID), and the real line of a key it forged
    later is dropped with its continuations rather than glued onto the name.
    """
    env: dict[str, str] = {}
    last: str | None = None
    for line in lines:
        pair = header_key(line)
        if pair is not None:
            key = pair[0]
            if key in env:
                last = None  # a repeated key: the caller forged one of them; keep the first
                continue
            last = key
            env[last] = pair[1]
        elif last is not None:
            env[last] += "\n" + line
    return env


def header_value(env: dict[str, str], key: str) -> str:
    """A header as the caller set it: Asterisk writes ``unknown`` for an absent caller ID."""
    value = env.get(key, "")
    return "" if value == "unknown" else value


def agi_args(env: dict[str, str]) -> list[str]:
    """``agi_arg_1``, ``agi_arg_2``, ... in order, up to the first missing one (a FastAGI's argv)."""
    args: list[str] = []
    while f"agi_arg_{len(args) + 1}" in env:
        args.append(env[f"agi_arg_{len(args) + 1}"])
    return args


def is_status(line: str) -> bool:
    """A reply's status line: three digits, then a space or a dash (``520-`` starts a usage text)."""
    return len(line) >= 4 and line[:3].isdigit() and line[3] in " -"


def parse_result(line: str) -> tuple[str, str]:
    """``("1", "value")`` from ``200 result=1 (value)``; ``("", "")`` when the line has no result."""
    rest = line[4:]
    if not rest.startswith("result="):
        return "", ""
    rest = rest[len("result=") :]
    end = 0
    while end < len(rest) and (rest[end].isalnum() or rest[end] == "_" or (end == 0 and rest[end] == "-")):
        end += 1
    result, tail = rest[:end], rest[end:].lstrip()
    data = tail[1 : tail.rindex(")")] if tail.startswith("(") and ")" in tail else ""
    return result, data


def quote(text: str) -> str:
    """An argument as pyst2 quotes it (the command side is pyst2's encoding, docs/design.md §2)."""
    return '"' + text + '"'


def command_line(command: str, *args: object) -> str:
    """One command line, newline included, as pyst2's ``send_command`` writes it."""
    return f"{command.strip()} {' '.join(map(str, args))}".strip() + "\n"


def verbose_line(message: str, level: int = 1) -> str:
    """A ``VERBOSE`` command for Asterisk's log: quotes, backslashes and control characters would
    break its one quoted argument, so they become spaces."""
    if _CONTROL.isdisjoint(message):  # the usual line: nothing to replace, no per-character loop
        return command_line("VERBOSE", quote(f"missedcall: {message[:500]}"), level)
    out: list[str] = []
    in_run = False
    for ch in message:
        if ch in _CONTROL:
            if not in_run:
                out.append(" ")  # a run of them is one space
            in_run = True
        else:
            out.append(ch)
            in_run = False
    clean = "".join(out)[:500]
    return command_line("VERBOSE", quote(f"missedcall: {clean}"), level)


class Framed:
    """One framed ``GET FULL VARIABLE``: the command line, then the reply fed line by line.

    ``feed`` returns None while the closing frame has not been seen, then the
    values (or an empty list when the reply was not ours to trust). Lines before
    the opening frame are stray replies from before and are skipped.
    """

    MAX_LINES = 200

    def __init__(self, expressions: Sequence[str], nonce: str) -> None:
        self.count = len(expressions)
        self.nonce = nonce
        self.line = command_line("GET FULL VARIABLE", quote(nonce + SEP + SEP.join(expressions) + SEP + nonce))
        self._opening = f"({nonce}{SEP}"
        self._closing = f"{SEP}{nonce})"
        self._collected: list[str] = []

    def feed(self, line: str) -> list[str] | None:
        if not self._collected:
            start = line.find(self._opening)
            if start < 0 or not is_status(line):
                return None  # a stray line from before: skip to our reply
            self._collected.append(line[start + len(self._opening) :])
        else:
            self._collected.append(line)
        joined = "\n".join(self._collected)
        if joined.endswith(self._closing):
            values = joined[: -len(self._closing)].split(SEP)
            return values if len(values) == self.count else []
        if len(self._collected) > self.MAX_LINES:
            return []
        return None
