"""Read the recipients out of a hand-written bash hook of the well-known article's shape. Pure.

Admins who followed that article have a script run from ``h`` of ``[ext-queues]``
that picks the addresses with ``case "$3" in 600) address=...;; esac`` (or an
``if``/``elif`` chain on the queue number) and sends with ``mail``. This module
reads such a script without running it (words: :mod:`missedcall.admin.shellwords`;
statements: :mod:`missedcall.admin.shellparse`) and follows, for each queue
branch, the variable assignments into the mail command that comes after. What
it cannot follow is reported with its line number, never guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from missedcall.admin.shellparse import Assign, Command, Node, parse
from missedcall.admin.shellwords import ScriptError, expand

__all__ = ["Imported", "QueueRule", "ScriptError", "addresses_in", "read_script"]

#: Commands that send mail, and the option letters of theirs that take a value (so the value is not an address).
MAILERS: dict[str, frozenset[str]] = {
    "mail": frozenset("sacbrfqAEaSu"),
    "mailx": frozenset("sacbrfqAEaSu"),
    "bsd-mailx": frozenset("sacbrfqa"),
    "s-nail": frozenset("sacbrfqAEaSu"),
    "mutt": frozenset("sacbiFHe"),
    "sendmail": frozenset("fFroBNRVXCh"),
    "sendemail": frozenset("ftucbsmaoxlS"),
    "ssmtp": frozenset("frF"),
    "msmtp": frozenset("fFaCe"),
}
#: Variable names (lower case) that hold a queue's label when a branch sets one.
LABEL_NAMES = frozenset({"label", "name", "queue_name", "queuename", "qname", "otdel", "department", "dept"})
#: Variable names (lower case) that hold the subject when a branch sets one.
SUBJECT_NAMES = frozenset({"subject", "subj", "tema", "theme", "title"})

_SEPARATORS = re.compile(r"[\s,;<>()\"']+")


@dataclass
class QueueRule:
    """What the script does for one queue (``*`` for its default branch)."""

    queue: str
    line: int
    addresses: list[str] = field(default_factory=list)
    label: str = ""
    subject: str = ""


@dataclass
class Imported:
    rules: list[QueueRule]
    notes: list[str]  # what was skipped, with line numbers


def addresses_in(text: str) -> list[str]:
    """Every word of ``text`` with an ``@`` in it, whole (split on spaces, commas, semicolons, <>, quotes), once each.

    Whole words, never the part that looks valid: ``ops@exa_mple.com`` must reach the door's check as it
    is and be refused there, not slip in as ``ops@exa``.
    """
    seen: list[str] = []
    for word in _SEPARATORS.split(text):
        word = word.strip(".")
        if "@" in word and word not in seen:
            seen.append(word)
    return seen


# ---------------------------------------------------------------------------- evaluation

def _mail_recipients(command: Command, env: dict[str, str]) -> tuple[list[str], str] | None:
    """The addresses a mail command sends to and its ``-s`` subject, or None when it is not a mailer."""
    words = command.words
    while words and words[0].raw in ("sudo", "nohup", "exec", "command", "timeout"):
        words = words[2:] if words[0].raw == "timeout" and len(words) > 1 else words[1:]
    if not words:
        return None
    program = expand(words[0], env).rsplit("/", 1)[-1]
    valued = MAILERS.get(program)
    if valued is None:
        return None
    found: list[str] = []
    subject = ""
    option = ""
    for word in words[1:]:
        value = expand(word, env)
        if option:
            if option == "s" and program != "sendmail":
                subject = " ".join(value.split())
            elif option in "cb" and program not in ("sendmail", "sendemail"):
                found.extend(a for a in addresses_in(value) if a not in found)  # Cc and Bcc get the mail too
            option = ""
            continue
        if value.startswith("-") and len(value) > 1:
            letters = value.lstrip("-")
            option = letters[:1] if len(value) == 2 and letters[:1] in valued else ""
            continue
        found.extend(a for a in addresses_in(value) if a not in found)
    return found, subject


class _Run:
    """Follows the statements with one environment per path through the queue dispatch."""

    def __init__(self) -> None:
        self.rules: dict[str, QueueRule] = {}
        self.notes: list[str] = []

    def walk(self, nodes: list[Node], env: dict[str, str], rule: QueueRule | None, sent: list[str]) -> None:
        for index, node in enumerate(nodes):
            if isinstance(node, Assign):
                env[node.name] = expand(node.value, env) if node.value is not None else ""
            elif isinstance(node, Command):
                mailed = _mail_recipients(node, env)
                if mailed is not None:
                    sent.extend(a for a in mailed[0] if a not in sent)
                    if rule is not None and mailed[1] and not rule.subject:
                        rule.subject = mailed[1]
            elif node.on_queue and rule is None:
                rest = nodes[index + 1 :]
                for branch in node.branches:
                    for queue in branch.queues:
                        branch_env = dict(env)
                        if node.on:
                            branch_env[node.on] = queue  # so "$3" in a subject reads as the queue
                        branch_sent = list(sent)
                        branch_rule = QueueRule(queue, branch.line)
                        self.walk([*branch.body, *rest], branch_env, branch_rule, branch_sent)
                        self.finish(branch_rule, branch_env, branch_sent, branch.body)
                return
            else:
                for branch in node.branches:  # not about the queue: whatever any branch does may happen
                    self.walk(branch.body, env, rule, sent)

    def finish(self, rule: QueueRule, env: dict[str, str], sent: list[str], body: list[Node]) -> None:
        assigned = [node for node in body if isinstance(node, Assign)]
        rule.addresses = list(sent)
        if not rule.addresses:
            # A mailer we do not know (or sendmail -t): take the addresses the branch itself sets.
            for node in assigned:
                rule.addresses.extend(a for a in addresses_in(env.get(node.name, "")) if a not in rule.addresses)
        for node in assigned:
            lowered = node.name.lower()
            if lowered in LABEL_NAMES and not rule.label:
                rule.label = " ".join(env.get(node.name, "").split())
            elif lowered in SUBJECT_NAMES and not rule.subject:
                rule.subject = " ".join(env.get(node.name, "").split())
        if rule.queue in self.rules:
            self.notes.append(f"line {rule.line}: queue {rule.queue} appears again; the first branch counts")
            return
        if not rule.addresses:
            self.notes.append(f"line {rule.line}: no address found for queue {rule.queue}")
        self.rules[rule.queue] = rule


def read_script(text: str) -> Imported:
    """Every queue → addresses (and label, subject) rule the script encodes, default branch last as ``*``."""
    if "\x00" in text:
        raise ScriptError("this is not a shell script (it contains NUL bytes)")
    run = _Run()
    env: dict[str, str] = {}
    sent: list[str] = []
    nodes = parse(text)
    run.walk(nodes, env, None, sent)
    if not run.rules:
        if sent:
            run.rules["*"] = QueueRule("*", 1, list(sent))
            run.notes.append("no case or if on the queue number: every queue goes to the same addresses")
        else:
            raise ScriptError("no queue → address rule found (expected a case or if on the queue and a mail command)")
    ordered = sorted(run.rules.values(), key=lambda r: (r.queue == "*", r.line))
    return Imported(ordered, run.notes)
