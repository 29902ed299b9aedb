"""The AGI protocol as Asterisk 22 speaks it: the header block, command-line
parsing (res_agi.c's parse_args), the fixed replies, and the environment
launch_script() gives a script."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from missedcall.admin.dialplan import split_lines  # Asterisk's readers, like its config parser, split on "\n" only

ASTERISK_VERSION = "22.10.1+dfsg+~cs6.17.60671434-1"
REPLY_DEAD = "511 Command Not Permitted on a dead channel or intercept routine\n"
REPLY_UNKNOWN = "510 Invalid or unknown command\n"

# What launch_script() in res_agi.c puts in the script's environment (Debian paths).
ASTERISK_ENV = {
    "AST_CONFIG_DIR": "/etc/asterisk",
    "AST_CONFIG_FILE": "/etc/asterisk/asterisk.conf",
    "AST_MODULE_DIR": "/usr/lib/x86_64-linux-gnu/asterisk/modules",
    "AST_SPOOL_DIR": "/var/spool/asterisk",
    "AST_MONITOR_DIR": "/var/spool/asterisk/monitor",
    "AST_VAR_DIR": "/var/lib/asterisk",
    "AST_DATA_DIR": "/usr/share/asterisk",
    "AST_LOG_DIR": "/var/log/asterisk",
    "AST_AGI_DIR": "/usr/share/asterisk/agi-bin",
    "AST_KEY_DIR": "/usr/share/asterisk/keys",
    "AST_RUN_DIR": "/var/run/asterisk",
}

# Once the child has exited, how long a descendant may keep our pipes open

HEADER_LINE = re.compile(r"agi_[a-z0-9_]+: ", re.ASCII)


# --------------------------------------------------------------------------- headers


def make_headers(
    *,
    uniqueid: str,
    callerid: str = "",
    calleridname: str = "",
    args: Sequence[str] = (),
    context: str = "ext-queues",
    extension: str = "h",
    channel: str = "PJSIP/trunk-00000001",
    request: str = "missed.py",
    priority: int | str = 2,
    language: str = "en",
    dnid: str = "",
    rdnis: str = "",
    accountcode: str = "",
    callingpres: int | None = None,
    threadid: int | str = 139716726929088,
    version: str = ASTERISK_VERSION,
    enhanced: bool = False,
) -> list[str]:
    """The header block as Asterisk 22's ``setup_env()`` writes it, blank line included.

    Values are written raw, exactly like Asterisk: a newline inside
    ``calleridname`` or an argument yields the corrupted block of ``4600-h.json``.
    """
    if callingpres is None:
        # 67 = "number unavailable" is what Asterisk reports with no caller ID at all.
        callingpres = 67 if not callerid and not calleridname else 0
    pairs: list[tuple[str, object]] = [
        ("request", request),
        ("channel", channel),
        ("language", language),
        ("type", channel.split("/", 1)[0]),
        ("uniqueid", uniqueid),
        ("version", version),
        ("callerid", callerid or "unknown"),
        ("calleridname", calleridname or "unknown"),
        ("callingpres", callingpres),
        ("callingani2", 0),
        ("callington", 0),
        ("callingtns", 0),
        ("dnid", dnid or "unknown"),
        ("rdnis", rdnis or "unknown"),
        ("context", context),
        ("extension", extension),
        ("priority", priority),
        ("enhanced", "1.0" if enhanced else "0.0"),
        ("accountcode", accountcode),
        ("threadid", threadid),
    ]
    pairs.extend((f"arg_{n}", value) for n, value in enumerate(args, start=1))
    text = "".join(f"agi_{key}: {value}\n" for key, value in pairs) + "\n"
    return split_lines(text)


def parse_header_block(lines: Iterable[str]) -> dict[str, str]:
    """Headers as a dict (``agi_`` prefix kept); a stray line continues the previous value.

    This is how the corrupted block must be read: ``agi_calleridname: Line1``
    followed by ``Line2`` means the name was ``Line1\\nLine2``.
    """
    headers: dict[str, str] = {}
    last: str | None = None
    for raw in lines:
        line = raw[:-1] if raw.endswith("\n") else raw
        if line == "":
            break
        match = HEADER_LINE.match(line)
        if match:
            key = line[: match.end() - 2]
            headers[key] = line[match.end() :]
            last = key
        elif last is not None:
            headers[last] += "\n" + line
    return headers


def header_args(lines: Iterable[str]) -> list[str]:
    """The ``agi_arg_N`` values of a header block, in order (the script's argv[1:])."""
    headers = parse_header_block(lines)
    found = {
        int(key[len("agi_arg_") :]): value
        for key, value in headers.items()
        if key.startswith("agi_arg_") and key[len("agi_arg_") :].isdigit()
    }
    return [found[n] for n in sorted(found)]


def replace_headers(
    lines: Sequence[str], *, args: Sequence[str] | None, request: str | None
) -> list[str]:
    """Keep a recorded block verbatim but for its request and/or argument lines."""
    out: list[str] = []
    dropping = False
    for raw in lines:
        line = raw.rstrip("\n")
        if line == "":
            break
        match = HEADER_LINE.match(line)
        if match:
            key = line[: match.end() - 2]
            dropping = args is not None and key.startswith("agi_arg_")
            if request is not None and key == "agi_request":
                out.append(f"agi_request: {request}\n")
                continue
        if not dropping:
            out.append(raw)
    text = "".join(out)
    if args is not None:
        text += "".join(f"agi_arg_{n}: {value}\n" for n, value in enumerate(args, start=1))
    return split_lines(text + "\n")


# --------------------------------------------------------------------------- commands


def parse_agi_args(line: str) -> list[str]:
    """Split a command line exactly like ``parse_args()`` in res_agi.c.

    Double quotes group (and may open an empty argument), a backslash makes the
    next character literal, spaces and tabs separate. Nothing else is special.
    """
    parts: list[list[str]] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                parts.append([])
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            parts.append([])
            whitespace = False
        parts[-1].append(ch)
        escaped = False
    return ["".join(part) for part in parts]

