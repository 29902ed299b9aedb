"""The shell subset hand-written hooks use, as words: quotes, ``$VAR``/``${VAR}``, operators, comments. Pure.

Enough of POSIX sh's token rules to read a script without running it: single
and double quotes, backslashes, ``$( )`` and backticks (their value is unknown
here, so they expand to nothing), here-documents (data, skipped), comments, and
the operators a script's structure hangs on. Nothing is ever executed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (";;", "&&", "||", ";", "|", "&", "(", ")", "\n")


class ScriptError(ValueError):
    """A script this module cannot read (one line, with the line number where it applies)."""


@dataclass(frozen=True)
class Word:
    """One shell word: its parts, each literal (single-quoted) or expandable, and the line it starts on."""

    parts: tuple[tuple[str, bool], ...]  # (text, expandable)
    line: int

    @property
    def raw(self) -> str:
        return "".join(text for text, _ in self.parts)


def tokenize(text: str) -> list[Word | tuple[str, int]]:
    """Words and operators of a shell script; comments and line continuations dropped."""
    tokens: list[Word | tuple[str, int]] = []
    parts: list[tuple[str, bool]] = []
    buf: list[str] = []
    line = 1
    start = 1
    line_start = 0  # index of the first token of the current line
    i = 0
    n = len(text)

    def flush_buf(expandable: bool = True) -> None:
        if buf:
            parts.append(("".join(buf), expandable))
            buf.clear()

    def end_word() -> None:
        flush_buf()
        if parts:
            tokens.append(Word(tuple(parts), start))
            parts.clear()

    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            if text[i + 1] == "\n":
                line += 1
            else:
                if not parts and not buf:
                    start = line
                flush_buf()
                parts.append((text[i + 1], False))
            i += 2
            continue
        if ch == "'":
            if not parts and not buf:
                start = line
            flush_buf()
            close = text.find("'", i + 1)
            if close < 0:
                raise ScriptError(f"line {line}: unterminated single quote")
            parts.append((text[i + 1 : close], False))
            line += text.count("\n", i, close)
            i = close + 1
            if not parts[-1][0]:
                parts[-1] = ("", False)
            continue
        if ch == '"':
            if not parts and not buf:
                start = line
            flush_buf()
            j = i + 1
            chunk: list[str] = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n and text[j + 1] in '$`"\\\n':
                    if text[j + 1] != "\n":
                        chunk.append("\\" + text[j + 1] if text[j + 1] == "$" else text[j + 1])
                    j += 2
                    continue
                chunk.append(text[j])
                j += 1
            if j >= n:
                raise ScriptError(f"line {line}: unterminated double quote")
            line += text.count("\n", i, j)
            parts.append(("".join(chunk), True))
            i = j + 1
            continue
        if ch == "`" or text.startswith("$(", i):
            # Command substitution (a mysql query, a date): its value is unknown here, so it expands to nothing.
            if not parts and not buf:
                start = line
            flush_buf()
            end = _substitution_end(text, i)
            if end < 0:
                raise ScriptError(f"line {line}: unterminated command substitution")
            line += text.count("\n", i, end)
            parts.append(("", False))
            i = end
            continue
        if ch == "#" and not parts and not buf:
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch in " \t\r":
            end_word()
            i += 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is not None:
            end_word()
            tokens.append((op, line))
            i += len(op)
            if op == "\n":
                line += 1
                delimiter = _heredoc_delimiter(tokens, line_start)
                if delimiter:
                    # A here-document is data (a mail body, headers for sendmail -t), not script.
                    while i < n:
                        end = text.find("\n", i)
                        end = n if end < 0 else end
                        body_line = text[i:end]
                        i = min(end + 1, n)
                        line += 1
                        if body_line.strip("\t") == delimiter:
                            break
                line_start = len(tokens)
            continue
        if not parts and not buf:
            start = line
        buf.append(ch)
        i += 1
    end_word()
    return tokens


def _heredoc_delimiter(tokens: list[Word | tuple[str, int]], first: int) -> str:
    """The delimiter of a ``<<WORD`` / ``<<-'WORD'`` / ``<< WORD`` on the line that starts at ``first``, or ""."""
    for index in range(first, len(tokens)):
        token = tokens[index]
        if isinstance(token, Word) and token.raw.startswith("<<") and not token.raw.startswith("<<<"):
            rest = token.raw[2:].lstrip("-")
            if not rest and index + 1 < len(tokens) and isinstance(tokens[index + 1], Word):
                rest = tokens[index + 1].raw  # type: ignore[union-attr]
            return rest
    return ""


def _substitution_end(text: str, i: int) -> int:
    """Index just past the `...` or $(...) starting at ``i`` (nesting and quotes honoured), or -1."""
    if text[i] == "`":
        close = text.find("`", i + 1)
        return close + 1 if close > 0 else -1
    depth = 0
    j = i + 1
    quote = ""
    while j < len(text):
        ch = text[j]
        if quote:
            if ch == "\\" and quote == '"':
                j += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


def expand(word: Word, env: dict[str, str]) -> str:
    """The word with ``$NAME``, ``${NAME}`` and ``$1``... replaced from ``env`` (unknown: empty)."""
    out: list[str] = []
    for text, expandable in word.parts:
        out.append(_expand_text(text, env) if expandable else text)
    return "".join(out)


def _expand_text(text: str, env: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("\\$", i):
            out.append("$")
            i += 2
            continue
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        if text.startswith("${", i):
            close = text.find("}", i)
            if close > 0:
                name = re.split(r"[:#%/-]", text[i + 2 : close], maxsplit=1)[0]
                out.append(env.get(name, ""))
                i = close + 1
                continue
        if i + 1 < len(text) and text[i + 1].isdigit():
            out.append(env.get(text[i + 1], ""))
            i += 2
            continue
        match = NAME.match(text, i + 1)
        if match:
            out.append(env.get(match.group(0), ""))
            i = match.end()
            continue
        out.append("$")
        i += 1
    return "".join(out)
