"""Statements of a hand-written hook: assignments, commands, and ``case``/``if`` that pick a queue. Pure.

Built on :mod:`missedcall.admin.shellwords`. A ``case`` whose patterns are all
queue numbers (or ``*``), and an ``if``/``elif`` chain whose every test compares
a variable with a queue number, is a *dispatch on the queue*; any other
conditional is kept as a dispatch too, so the evaluator can follow both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from missedcall.admin.shellwords import NAME, ScriptError, Word, tokenize

_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.S)
QUEUE = re.compile(r"[0-9A-Za-z_-]{1,64}")


@dataclass
class Assign:
    name: str
    value: Word | None  # None: the value is unknown (read, a loop variable)
    line: int


@dataclass
class Command:
    words: list[Word]
    line: int


@dataclass
class Branch:
    queues: list[str]  # empty for a branch that is not about one queue (else of a non-queue if)
    body: list[Node]
    line: int


@dataclass
class Dispatch:
    """A case or if/elif chain; ``on_queue`` when its branches pick queues."""

    branches: list[Branch]
    on_queue: bool
    line: int
    on: str = ""  # the variable or positional parameter the dispatch tests, when it is a plain "$NAME"


Node = "Assign | Command | Dispatch"
_KEYWORDS_SKIPPED = frozenset({"then", "do", "done", "{", "}", "!", "function", "while", "until", "for", "in"})
_DECLARERS = frozenset({"export", "local", "readonly", "declare", "typeset"})


class _Parser:
    def __init__(self, tokens: list[Word | tuple[str, int]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Word | tuple[str, int] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def is_word(self, *values: str) -> bool:
        tok = self.peek()
        return isinstance(tok, Word) and tok.raw in values

    def skip_separators(self) -> None:
        while isinstance(self.peek(), tuple) and self.peek()[0] in ("\n", ";", "&", "&&", "||", "|", "(", ")"):  # type: ignore[index]
            self.pos += 1

    def statements(self, stop: tuple[str, ...]) -> list[Node]:
        nodes: list[Node] = []
        while True:
            self.skip_separators()
            tok = self.peek()
            if tok is None or (tok.raw if isinstance(tok, Word) else tok[0]) in stop:
                return nodes
            nodes.extend(self.statement())

    def statement(self) -> list[Node]:
        tok = self.peek()
        assert tok is not None
        if isinstance(tok, tuple):  # ;; outside a case
            self.pos += 1
            return []
        if tok.raw == "case":
            return [self.case()]
        if tok.raw == "if":
            return [self.if_chain()]
        if tok.raw in _KEYWORDS_SKIPPED or tok.raw in ("elif", "else", "fi", "esac"):
            self.pos += 1
            return []
        words: list[Word] = []
        while isinstance(self.peek(), Word):
            words.append(self.peek())  # type: ignore[arg-type]
            self.pos += 1
        return self.simple(words)

    def simple(self, words: list[Word]) -> list[Node]:
        if words and words[0].raw in _DECLARERS:
            words = [w for w in words[1:] if not w.raw.startswith("-")]
            return [a for a in (self.assignment(w) for w in words) if a is not None]
        nodes: list[Node] = []
        while words:
            assign = self.assignment(words[0])
            if assign is None:
                break
            nodes.append(assign)
            words = words[1:]
        if words:
            if words[0].raw == "read":
                nodes.extend(Assign(w.raw, None, w.line) for w in words[1:] if NAME.fullmatch(w.raw))
            else:
                nodes.append(Command(words, words[0].line))
        return nodes

    @staticmethod
    def assignment(word: Word) -> Assign | None:
        first_text, first_expandable = word.parts[0]
        match = _ASSIGNMENT.fullmatch(first_text) if first_expandable else None
        if match is None:
            return None
        rest = ((match.group(2), True), *word.parts[1:])
        return Assign(match.group(1), Word(tuple(p for p in rest), word.line), word.line)

    def case(self) -> Dispatch:
        start = self.peek()
        assert isinstance(start, Word)
        self.pos += 1
        subject = self.peek()
        self.pos += 1
        on = ""
        if isinstance(subject, Word):
            match = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*|[0-9])\}?", subject.raw)
            on = match.group(1) if match else ""
        if not self.is_word("in"):
            raise ScriptError(f"line {start.line}: 'case' without 'in'")
        self.pos += 1
        branches: list[Branch] = []
        while True:
            while isinstance(self.peek(), tuple) and self.peek()[0] in ("\n", ";"):  # type: ignore[index]
                self.pos += 1
            tok = self.peek()
            if tok is None:
                raise ScriptError(f"line {start.line}: 'case' without 'esac'")
            if isinstance(tok, Word) and tok.raw == "esac":
                self.pos += 1
                break
            if isinstance(tok, tuple) and tok[0] == "(":
                self.pos += 1
            patterns: list[str] = []
            line = tok.line if isinstance(tok, Word) else tok[1]
            while True:
                tok = self.peek()
                if not isinstance(tok, Word):
                    raise ScriptError(f"line {line}: a case pattern was expected")
                patterns.append(tok.raw)
                self.pos += 1
                tok = self.peek()
                if isinstance(tok, tuple) and tok[0] == "|":
                    self.pos += 1
                    continue
                if isinstance(tok, tuple) and tok[0] == ")":
                    self.pos += 1
                    break
                raise ScriptError(f"line {line}: a case pattern must end with ')'")
            body = self.statements((";;", "esac"))
            if isinstance(self.peek(), tuple) and self.peek()[0] == ";;":  # type: ignore[index]
                self.pos += 1
            branches.append(Branch(patterns, body, line))
        on_queue = bool(branches) and all(_queue_pattern(p) for b in branches for p in b.queues)
        if not on_queue:
            for branch in branches:
                branch.queues = []
        return Dispatch(branches, on_queue, start.line, on)

    def if_chain(self) -> Dispatch:
        start = self.peek()
        assert isinstance(start, Word)
        branches: list[Branch] = []
        on_queue = True
        keyword = "if"
        while keyword in ("if", "elif"):
            line = self.peek().line  # type: ignore[union-attr]
            self.pos += 1
            condition: list[Word] = []
            while not self.is_word("then"):
                tok = self.peek()
                if tok is None:
                    raise ScriptError(f"line {line}: '{keyword}' without 'then'")
                if isinstance(tok, Word):
                    condition.append(tok)
                self.pos += 1
            self.pos += 1
            queue = _compared_queue(condition)
            on_queue = on_queue and queue is not None
            body = self.statements(("elif", "else", "fi"))
            branches.append(Branch([queue] if queue else [], body, line))
            tok = self.peek()
            if tok is None:
                raise ScriptError(f"line {start.line}: 'if' without 'fi'")
            keyword = tok.raw if isinstance(tok, Word) else ""
        if keyword == "else":
            line = self.peek().line  # type: ignore[union-attr]
            self.pos += 1
            body = self.statements(("fi",))
            branches.append(Branch(["*"], body, line))
        if not self.is_word("fi"):
            raise ScriptError(f"line {start.line}: 'if' without 'fi'")
        self.pos += 1
        if not on_queue:
            for branch in branches:
                branch.queues = []
        return Dispatch(branches, on_queue, start.line)


def _queue_pattern(pattern: str) -> bool:
    return pattern == "*" or QUEUE.fullmatch(pattern) is not None


def _compared_queue(condition: list[Word]) -> str | None:
    """The queue a test like ``[ "$3" = "600" ]`` or ``[[ $Q -eq 600 ]]`` compares with, if it is one."""
    raws = [w.raw for w in condition]
    for i, op in enumerate(raws):
        if op in ("=", "==", "-eq") and 0 < i < len(raws) - 1:
            left, right = condition[i - 1], condition[i + 1]
            for value, other in ((right, left), (left, right)):
                literal = value.raw if all(not e or "$" not in t for t, e in value.parts) else ""
                if literal and QUEUE.fullmatch(literal) and "$" in other.raw:
                    return literal
    return None


def parse(text: str) -> list[Node]:
    """The script as statements; ScriptError (one line) for what this reader cannot follow."""
    return _Parser(tokenize(text)).statements(())
