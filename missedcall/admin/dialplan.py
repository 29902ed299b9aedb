"""Our ``[ext-queues]`` ``h`` override in FreePBX's extensions_override_freepbx.conf (docs/design.md).

Modelled on certbot's installers: everything we write sits between
``; BEGIN missedcall`` / ``; END missedcall`` markers, a timestamped backup is
taken before any change, and removing the block gives back the file exactly
as it was, byte for byte, even if the admin edited other parts of it since.

A hand-made ``[ext-queues]`` ``h`` outside our markers (the classic "add a
GotoIf to the h extension" recipe) would fight ours for priority 1, so we
refuse unless ``force`` is given; then its lines are commented out in place,
between ``; BEGIN missedcall-saved`` / ``; END missedcall-saved`` markers, and
uninstall uncomments them. Facts that uninstall needs (the file did not
exist, or had no final newline) are kept as ``; missedcall-note:`` lines in
our block, so nothing outside the file has to survive for a clean revert.

With the FastAGI service (``install.sh --service``, docs/fastagi.md) the block calls
``agi://127.0.0.1:4574/missed`` first and the process hook only when the service
cannot be reached (``AGISTATUS`` is ``FAILURE``), so no call is lost while it is down.

The text functions are pure (``dialplan_files`` reads and writes the files);
``dialplan_cli`` is the small command line that install.sh calls
(``python -m missedcall.admin.dialplan install|uninstall|check|snippet``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

BEGIN = "; BEGIN missedcall"
END = "; END missedcall"
SAVED_BEGIN = "; BEGIN missedcall-saved"
SAVED_END = "; END missedcall-saved"
SAVED_PREFIX = ";missedcall; "
NOTE_PREFIX = "; missedcall-note: "
NOTE_CREATED = "created-file"
NOTE_NEWLINE = "added-final-newline"
_EXPLAIN = "; Written by missedcall's install.sh: re-run it after a FreePBX upgrade; install.sh --uninstall removes it."
_SAVED_EXPLAIN = "; Commented out by missedcall's install.sh --force; install.sh --uninstall puts these lines back."

_MARKER = re.compile(r"^; (BEGIN|END) missedcall(-saved)?[ \t]*$")
_CONTEXT = re.compile(r"^\[([^\]]+)\]")
_EXTEN_H = re.compile(r"^exten\s*=>?\s*h\s*,", re.IGNORECASE)
_EXTEN = re.compile(r"^exten\s*=>?", re.IGNORECASE)
_SAME = re.compile(r"^same\s*=>?", re.IGNORECASE)
_APP = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\(.*\))?$")
_SERVICE_URL = re.compile(r"agi://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}/missed")

#: What a plain Asterisk admin adds by hand (install.sh prints it; the README shows it).
PLAIN_SNIPPET = """\
[queues]
exten => 600,1,Set(CHANNEL(hangup_handler_push)=missedcall-hangup,s,1(600))
 same => n,Queue(600,t,,,120)
 ; Optional: report a timeout / empty queue right away when the call goes on elsewhere.
 same => n,GotoIf($["${QUEUESTATUS}"="TIMEOUT"|"${QUEUESTATUS}"="JOINEMPTY"|"${QUEUESTATUS}"="LEAVEEMPTY"]?missed)
 same => n,Hangup()
 same => n(missed),AGI(missed.py,600,${QUEUESTATUS})
 same => n,VoiceMail(600@default)

[missedcall-hangup]
exten => s,1,GotoIf($["${ABANDONED}"!="TRUE"]?done)
 same => n,AGI(missed.py,${ARG1})
 same => n(done),Return()
"""


class DialplanError(ValueError):
    """The file cannot be handled safely; the message says why and what to do."""


class Refused(DialplanError):
    """A hand-made ``[ext-queues]`` ``h`` is in the way and ``force`` was not given."""


@dataclass
class Parsed:
    lines: list[str]  # with their line endings
    block: tuple[int, int] | None = None  # line indexes of BEGIN and END
    notes: list[str] = field(default_factory=list)
    saved: list[tuple[int, int]] = field(default_factory=list)
    foreign: list[tuple[int, int]] = field(default_factory=list)  # runs of h lines: [start, end)


def split_lines(text: str) -> list[str]:
    """Lines with their endings, split on "\n" only (str.splitlines would also split on \f, \x1c, ...)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _body(line: str) -> str:
    line = line[:-1] if line.endswith("\n") else line
    return line[:-1] if line.endswith("\r") else line


def code_part(line: str) -> str:
    """The line without its comment (``\\;`` is an escaped semicolon) and surrounding blanks."""
    text = _body(line)
    cut = re.search(r"(?<!\\);", text)
    return (text[: cut.start()] if cut else text).strip()


def parse(text: str) -> Parsed:
    lines = split_lines(text)
    parsed = Parsed(lines=lines)
    context = ""
    comment_depth = 0  # Asterisk's ;-- block comments --;
    in_block: int | None = None
    in_saved: int | None = None
    in_h = False  # inside an "exten => h" of [ext-queues], so "same =>" lines belong to it
    run_start: int | None = None

    def close_run(index: int) -> None:
        nonlocal run_start
        if run_start is not None:
            parsed.foreign.append((run_start, index))
            run_start = None

    for index, line in enumerate(lines):
        body = _body(line)
        marker = _MARKER.match(body)
        if marker:
            close_run(index)
            in_h = False
            kind, saved = marker.group(1), bool(marker.group(2))
            if kind == "BEGIN":
                if in_block is not None or in_saved is not None:
                    raise DialplanError(f"line {index + 1}: '{body}' inside another missedcall block; fix by hand")
                if saved:
                    in_saved = index
                else:
                    if parsed.block is not None:
                        raise DialplanError(f"line {index + 1}: a second '{BEGIN}' block; remove one by hand")
                    in_block = index
            elif saved:
                if in_saved is None:
                    raise DialplanError(f"line {index + 1}: '{SAVED_END}' without '{SAVED_BEGIN}'; fix by hand")
                parsed.saved.append((in_saved, index))
                in_saved = None
            else:
                if in_block is None:
                    raise DialplanError(f"line {index + 1}: '{END}' without '{BEGIN}'; fix by hand")
                parsed.block = (in_block, index)
                in_block = None
            continue
        if in_block is not None:
            if body.startswith(NOTE_PREFIX):
                parsed.notes.append(body[len(NOTE_PREFIX) :].strip())
            continue
        if in_saved is not None:
            continue
        # Block comments: an opening ";--" (not "--;") and the closing "--;".
        stripped = body.strip()
        if comment_depth:
            comment_depth += stripped.count(";--") - stripped.count("--;")
            comment_depth = max(comment_depth, 0)
            continue
        if stripped.startswith(";--") and "--;" not in stripped[3:]:
            comment_depth = 1
            close_run(index)
            continue
        code = code_part(line)
        if not code:
            continue  # blank or comment lines neither start nor end an h run
        header = _CONTEXT.match(code)
        if header:
            close_run(index)
            context = header.group(1).strip()
            in_h = False
            continue
        if context == "ext-queues" and _EXTEN_H.match(code):
            in_h = True
            if run_start is None:
                run_start = index
            continue
        if in_h and _SAME.match(code):
            continue
        in_h = False
        close_run(index)
    close_run(len(lines))
    if in_block is not None:
        raise DialplanError(f"line {in_block + 1}: '{BEGIN}' without '{END}'; fix by hand or restore a backup")
    if in_saved is not None:
        raise DialplanError(f"line {in_saved + 1}: '{SAVED_BEGIN}' without '{SAVED_END}'; fix by hand")
    # A run ends at its last h/same line, not at trailing comments or blanks.
    trimmed = []
    for start, end in parsed.foreign:
        while end > start and not code_part(lines[end - 1]):
            end -= 1
        trimmed.append((start, end))
    parsed.foreign = trimmed
    return parsed


def check_h_app(h_app: str) -> str:
    h_app = h_app.strip()
    if not h_app or "\n" in h_app or "\r" in h_app or not _APP.match(h_app):
        raise DialplanError(f"the generated [ext-queues] h line calls {h_app[:80]!r}, which is not an application")
    return h_app


def check_service(url: str) -> str:
    if not _SERVICE_URL.fullmatch(url):
        raise DialplanError(f"{url[:80]!r} is not an agi://HOST:PORT/missed address")
    return url


def render_block(h_app: str, notes: Sequence[str] = (), eol: str = "\n", *, service: str = "") -> str:
    """Our block, markers included; the last line repeats what FreePBX's own h line calls.

    With ``service`` (``agi://127.0.0.1:4574/missed``) the FastAGI service answers first and
    the process hook runs only when it could not be reached (``AGISTATUS`` ``FAILURE``).
    """
    h_app = check_h_app(h_app)
    if service:
        hook = [
            f"exten => h,n,AGI({check_service(service)},${{QUEUENUM}})",
            'exten => h,n,GotoIf($["${AGISTATUS}"!="FAILURE"]?done)',
            "exten => h,n,AGI(missed.py,${QUEUENUM})",
        ]
    else:
        hook = ["exten => h,n,AGI(missed.py,${QUEUENUM})"]
    lines = [
        BEGIN,
        _EXPLAIN,
        *(NOTE_PREFIX + note for note in notes),
        "[ext-queues]",
        'exten => h,1,GotoIf($["${ABANDONED}"!="TRUE"]?done)',
        *hook,
        f"exten => h,n(done),{h_app}",
        END,
    ]
    return "".join(line + eol for line in lines)


def block_h_app(text: str) -> str | None:
    """What the last line of our block calls, or None when there is no block."""
    parsed = parse(text)
    if parsed.block is None:
        return None
    begin, end = parsed.block
    for line in parsed.lines[begin:end]:
        match = re.match(r"^exten\s*=>\s*h\s*,\s*n\(done\)\s*,\s*(.+)$", _body(line))
        if match:
            return match.group(1).strip()
    return None


def block_service(text: str) -> str | None:
    """The FastAGI address our block calls first, or None (no block, or the process hook only)."""
    parsed = parse(text)
    if parsed.block is None:
        return None
    begin, end = parsed.block
    for line in parsed.lines[begin:end]:
        match = re.match(r"^exten\s*=>\s*h\s*,\s*n\s*,\s*AGI\((agi://[^,)]+)", _body(line))
        if match:
            return match.group(1)
    return None


_SCRIPT_CALL = re.compile(r"\b(?:Try)?System\(\s*[\"']?(/[^\s\"',)&]+)")


def hook_scripts(parsed: Parsed) -> list[str]:
    """The scripts a hand-made hook runs (``System(/path/noanswer.sh ...)``), for the import hint."""
    found: list[str] = []
    for start, end in parsed.foreign:
        for line in parsed.lines[start:end]:
            for path in _SCRIPT_CALL.findall(_body(line)):
                if path not in found:
                    found.append(path)
    return found


def import_hint(parsed: Parsed) -> str:
    """One sentence naming the hand-made hook's script and the command that reads its recipients, or ""."""
    scripts = hook_scripts(parsed)
    if not scripts:
        return ""
    command = f"missedcall-admin import-script {scripts[0]}"
    return f"its script {scripts[0]} holds your queue -> address rules: import them with '{command}'"


def describe_foreign(parsed: Parsed) -> str:
    start, _ = parsed.foreign[0]
    where = ", ".join(f"line {s + 1}" + (f"-{e}" if e - s > 1 else "") for s, e in parsed.foreign)
    return f"{where}: {_body(parsed.lines[start]).strip()[:100]}"


def _eol(lines: Sequence[str]) -> str:
    return "\r\n" if lines and lines[0].endswith("\r\n") else "\n"


def install_text(text: str | None, h_app: str, *, force: bool = False, service: str = "") -> str:
    """The file's new text with our block in place; ``text`` None means the file does not exist."""
    parsed = parse(text or "")
    lines = list(parsed.lines)
    eol = _eol(lines)
    if parsed.foreign:
        if not force:
            hint = import_hint(parsed)
            raise Refused(
                "it already defines [ext-queues] h outside our markers ("
                + describe_foreign(parsed)
                + "); remove that hand-made hook, or re-run with --force to comment it out (uninstall restores it)"
                + (f"; {hint}" if hint else "")
            )
        for start, end in reversed(parsed.foreign):
            saved = [SAVED_BEGIN + eol, _SAVED_EXPLAIN + eol]
            saved += [
                SAVED_PREFIX + line if line.endswith("\n") else SAVED_PREFIX + line + "\n" for line in lines[start:end]
            ]
            if not lines[end - 1].endswith("\n"):
                # The hook was the file's last line, without a newline: remember to give that back.
                saved.append(NOTE_PREFIX + NOTE_NEWLINE + eol)
            saved.append(SAVED_END + eol)
            lines[start:end] = saved
        parsed = parse("".join(lines))
        lines = list(parsed.lines)
    if parsed.block is not None:
        begin, end = parsed.block
        last = lines[end]
        block = render_block(h_app, parsed.notes, eol, service=service)
        if not last.endswith("\n"):
            block = block[: -len(eol)]
        lines[begin : end + 1] = [block]
        return "".join(lines)
    notes = []
    prefix = "".join(lines)
    if text is None:
        notes.append(NOTE_CREATED)
    elif prefix and not prefix.endswith("\n"):
        notes.append(NOTE_NEWLINE)
        prefix += "\n"
    return prefix + render_block(h_app, notes, eol, service=service)


def uninstall_text(text: str) -> str | None:
    """The file without our block and with saved lines restored; None when the file should go."""
    parsed = parse(text)
    lines = list(parsed.lines)
    spans = [(b, e, "block") for b, e in ([parsed.block] if parsed.block else [])]
    spans += [(b, e, "saved") for b, e in parsed.saved]
    created = NOTE_CREATED in parsed.notes
    for begin, end, kind in sorted(spans, reverse=True):
        if kind == "block":
            lines[begin : end + 1] = []
            if NOTE_NEWLINE in parsed.notes and begin > 0 and begin == len(lines) and lines[-1].endswith("\n"):
                lines[-1] = lines[-1][:-1]
            continue
        inner = lines[begin + 1 : end]
        restored = [line[len(SAVED_PREFIX) :] for line in inner if line.startswith(SAVED_PREFIX)]
        if any(_body(line) == NOTE_PREFIX + NOTE_NEWLINE for line in inner) and restored[-1:]:
            if restored[-1].endswith("\n"):
                restored[-1] = restored[-1][:-1]
        lines[begin : end + 1] = restored
    result = "".join(lines)
    if created and not result:
        return None
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """The command line install.sh calls; it lives in missedcall.admin.dialplan_cli."""
    from missedcall.admin import dialplan_cli

    return dialplan_cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
