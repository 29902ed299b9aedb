"""What a recorded Asterisk session (tests/fixtures/asterisk22-agi/*.json) reveals:
the channel variables the script read, so a replay answers as the real channel did."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tests.agipeer.protocol import parse_agi_args


def take_reply(lines: Sequence[str], pos: int) -> tuple[str, int]:
    """One reply from a flat list of received lines, following raw multi-line values."""
    if pos >= len(lines):
        return "", pos
    first = lines[pos]
    pos += 1
    if first.startswith("520-"):
        chunk = [first]
        while pos < len(lines) and not chunk[-1].startswith("520 "):
            chunk.append(lines[pos])
            pos += 1
        return "".join(chunk), pos
    if first.startswith("200 result=1 (") and not first.rstrip("\n").endswith(")"):
        chunk = [first]
        while pos < len(lines) and not chunk[-1].rstrip("\n").endswith(")"):
            chunk.append(lines[pos])
            pos += 1
        return "".join(chunk), pos
    return first, pos


def variables_from_exchanges(exchanges: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Channel variables revealed by a recorded session's GET [FULL] VARIABLE replies."""
    exchanges = list(exchanges)
    stream = [line for exchange in exchanges for line in exchange.get("recv", [])]
    variables: dict[str, str] = {}
    pos = 0
    for exchange in exchanges:
        reply, pos = take_reply(stream, pos)
        prefix = "200 result=1 ("
        if not reply.startswith(prefix) or not reply.endswith(")\n"):
            continue
        value = reply[len(prefix) : -2]
        argv = parse_agi_args(exchange.get("send", ""))
        words = [word.lower() for word in argv]
        if words[:2] == ["get", "variable"] and len(argv) == 3:
            variables[argv[2]] = value
        elif words[:3] == ["get", "full", "variable"] and len(argv) >= 4:
            variables.update(match_expression(argv[3], value))
    return variables


def match_expression(expr: str, value: str) -> dict[str, str]:
    names = re.findall(r"\$\{([^{}]+)\}", expr)
    if not names:
        return {}
    if expr == "${" + names[0] + "}":
        return {names[0]: value}
    # ${A}|${B}|...: split the value along the literal separators.
    pieces = re.split(r"\$\{[^{}]+\}", expr)
    pattern = "(.*?)".join(re.escape(piece) for piece in pieces)
    match = re.fullmatch(pattern, value, flags=re.S)
    if not match:
        return {}
    return {name: got for name, got in zip(names, match.groups()) if got != ""}
