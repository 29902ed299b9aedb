"""The channel one AGI session talks to: res_agi's command table (which commands a
dead channel refuses), and the answers to each command, with channel variables,
dialplan functions and AstDB emulated the way Asterisk 22 evaluates them."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

from tests.agipeer.protocol import REPLY_DEAD, REPLY_UNKNOWN, parse_agi_args, parse_header_block


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    dead_ok: bool
    handler: str


# Asterisk 22's command table: the words, and whether the command may run on a
# dead channel (the ``dead`` column of res_agi.c's ``commands[]``).
COMMANDS: tuple[Command, ...] = tuple(
    Command(tuple(words.split()), dead_ok, handler)
    for words, dead_ok, handler in (
        ("answer", False, "answer"),
        ("asyncagi break", True, "result0"),
        ("channel status", False, "channel_status"),
        ("control stream file", False, "stream_file"),
        ("database del", True, "database_del"),
        ("database deltree", True, "database_deltree"),
        ("database get", True, "database_get"),
        ("database put", True, "database_put"),
        ("exec", True, "exec"),
        ("get data", False, "get_data"),
        ("get full variable", True, "get_full_variable"),
        ("get option", False, "stream_file"),
        ("get variable", True, "get_variable"),
        ("gosub", False, "result0"),
        ("hangup", False, "hangup"),
        ("noop", True, "result0"),
        ("receive char", False, "result0"),
        ("receive text", False, "result0"),
        ("record file", False, "result0"),
        ("say alpha", False, "result0"),
        ("say digits", False, "result0"),
        ("say number", False, "result0"),
        ("say phonetic", False, "result0"),
        ("say date", False, "result0"),
        ("say time", False, "result0"),
        ("say datetime", False, "result0"),
        ("send image", False, "result0"),
        ("send text", False, "result0"),
        ("set autohangup", False, "result0"),
        ("set callerid", False, "result1"),
        ("set context", False, "result0"),
        ("set extension", False, "result0"),
        ("set music", False, "result0"),
        ("set priority", False, "result0"),
        ("set variable", True, "set_variable"),
        ("speech activate grammar", False, "result0"),
        ("speech create", False, "result0"),
        ("speech deactivate grammar", False, "result0"),
        ("speech destroy", False, "result0"),
        ("speech load grammar", False, "result0"),
        ("speech recognize", False, "result0"),
        ("speech set", False, "result0"),
        ("speech unload grammar", False, "result0"),
        ("stream file", False, "stream_file"),
        ("tdd mode", False, "result0"),
        ("verbose", True, "verbose"),
        ("wait for digit", False, "result0"),
    )
)

# Dialplan functions that exist on any channel: reading an unset one yields "".
KNOWN_FUNCTIONS = frozenset(
    {"CALLERID", "CHANNEL", "CDR", "CONNECTEDLINE", "REDIRECTING", "QUEUE_VARIABLES", "DB"}
)


def find_command(words: Sequence[str]) -> Command | None:
    # find_command(argv, 0): every word of the entry must match (case-insensitively);
    # extra words on the line are the command's arguments.
    for command in COMMANDS:
        if len(words) < len(command.words):
            continue
        if all(a.lower() == b for a, b in zip(words, command.words)):
            return command
    return None


def usage(command: Command) -> str:
    name = " ".join(command.words).upper()
    return (
        "520-Invalid command syntax.  Proper usage follows:\n"
        f" Usage: {name}\n"
        "520 End of proper usage.\n"
    )


def function_key(name: str) -> str:
    # Function names are case-insensitive in Asterisk, and so are CALLERID/CHANNEL items.
    func, _, rest = name.partition("(")
    return f"{func.strip().upper()}({rest[:-1].strip().lower()})"


def is_false(value: str | None) -> bool:
    # ast_false(): the spellings Asterisk treats as "no".
    return value is not None and value.strip().lower() in {"no", "false", "n", "f", "0", "off"}


class Session:
    """Per-run channel state, so one peer can be run several times."""

    def __init__(
        self, header_lines: Sequence[str], variables: Mapping[str, str], astdb: Mapping[str, str], *, dead: bool
    ) -> None:
        self.headers = parse_header_block(header_lines)
        self.variables = dict(variables)
        self.astdb = dict(astdb)
        self.dead = dead
        self.hangup_pending = False

    # -- variable look-up, as pbx_retrieve_variable() / ast_func_read() would

    def _header(self, key: str) -> str:
        value = self.headers.get(f"agi_{key}", "")
        return "" if value == "unknown" and key in ("callerid", "calleridname") else value

    def _builtin(self, name: str) -> str | None:
        builtins: dict[str, Callable[[], str]] = {
            "UNIQUEID": lambda: self._header("uniqueid"),
            "CHANNEL": lambda: self._header("channel"),
            "CONTEXT": lambda: self._header("context"),
            "EXTEN": lambda: self._header("extension"),
            "PRIORITY": lambda: self._header("priority"),
            "EPOCH": lambda: str(int(time.time())),
        }
        getter = builtins.get(name)
        return getter() if getter else None

    def _function(self, name: str) -> str | None:
        wanted = function_key(name)
        func = wanted.partition("(")[0]
        for key, value in self.variables.items():
            if key.endswith(")") and "(" in key and function_key(key) == wanted:
                return value
        defaults = {
            "CALLERID(num)": lambda: self._header("callerid"),
            "CALLERID(name)": lambda: self._header("calleridname"),
            "CHANNEL(linkedid)": lambda: self._header("uniqueid"),
            "CHANNEL(uniqueid)": lambda: self._header("uniqueid"),
            "CHANNEL(name)": lambda: self._header("channel"),
            "CHANNEL(language)": lambda: self._header("language"),
            "CDR(uniqueid)": lambda: self._header("uniqueid"),
        }
        getter = defaults.get(wanted)
        if getter is not None:
            return getter()
        if func == "DB":  # ${DB(family/key)} reads the same AstDB as DATABASE GET
            return self.astdb.get(name.partition("(")[2][:-1].strip(), "")
        return "" if func in KNOWN_FUNCTIONS else None

    def lookup(self, name: str) -> str | None:
        if name in self.variables:
            return self.variables[name]
        if name.endswith(")") and "(" in name:
            return self._function(name)
        return self._builtin(name)

    def substitute(self, expr: str) -> str:
        """``${NAME}``, ``${FUNC(arg)}``, nesting and ``${X:offset:length}``; unknown -> ""."""
        out: list[str] = []
        i = 0
        while i < len(expr):
            if not expr.startswith("${", i):
                out.append(expr[i])
                i += 1
                continue
            depth, j = 1, i + 2
            while j < len(expr) and depth:
                if expr[j] == "{":
                    depth += 1
                elif expr[j] == "}":
                    depth -= 1
                j += 1
            if depth:  # unterminated: Asterisk copies the rest as it is
                out.append(expr[i:])
                break
            inner = expr[i + 2 : j - 1]
            if "${" in inner:
                inner = self.substitute(inner)
            out.append(self._expand(inner))
            i = j
        return "".join(out)

    def _expand(self, inner: str) -> str:
        # A ':' outside parentheses starts the substring spec, as in parse_variable_name().
        depth = 0
        cut = -1
        for pos, ch in enumerate(inner):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == ":" and depth == 0:
                cut = pos
                break
        name, spec = (inner, "") if cut < 0 else (inner[:cut], inner[cut + 1 :])
        value = self.lookup(name) or ""
        if spec:
            offset_text, _, length_text = spec.partition(":")
            try:
                offset = int(offset_text or 0)
                length = int(length_text) if length_text else None
            except ValueError:
                return value
            # Python slices mean what Asterisk means: negative offset counts from
            # the end, negative length drops that many characters from the end.
            value = value[offset:]
            if length is not None:
                value = value[:length]
        return value

    # -- command handlers: each returns the reply text

    def handle(self, line: str) -> tuple[Command | None, str]:
        words = parse_agi_args(line)
        command = find_command(words)
        if command is None:
            return None, REPLY_UNKNOWN
        if self.dead and not command.dead_ok:
            return command, REPLY_DEAD
        handler: Callable[[list[str]], str | None] = getattr(self, f"_h_{command.handler}")
        reply = handler(words)
        return command, usage(command) if reply is None else reply

    def _h_result0(self, argv: list[str]) -> str:
        return "200 result=0\n"

    def _h_result1(self, argv: list[str]) -> str:
        return "200 result=1\n"

    def _h_answer(self, argv: list[str]) -> str:
        return "200 result=0\n"

    def _h_channel_status(self, argv: list[str]) -> str:
        return "200 result=6\n"  # AST_STATE_UP, as recorded in 1603-cont.json

    def _h_stream_file(self, argv: list[str]) -> str | None:
        if len(argv) < 4:
            return None
        return "200 result=0 endpos=3520\n"

    def _h_get_data(self, argv: list[str]) -> str | None:
        if len(argv) < 3:
            return None
        return "200 result= (timeout)\n"

    def _h_hangup(self, argv: list[str]) -> str:
        if len(argv) > 1 and argv[1] != self._header("channel"):
            return "200 result=-1\n"
        self.hangup_pending = True
        return "200 result=1\n"

    def _h_verbose(self, argv: list[str]) -> str | None:
        return None if len(argv) < 2 else "200 result=1\n"

    def _h_exec(self, argv: list[str]) -> str | None:
        return None if len(argv) < 2 else "200 result=0\n"

    def _h_set_variable(self, argv: list[str]) -> str | None:
        if len(argv) != 4:
            return None
        self.variables[argv[2]] = argv[3]
        return "200 result=1\n"

    def _h_get_variable(self, argv: list[str]) -> str | None:
        if len(argv) != 3:
            return None
        value = self.lookup(argv[2])
        return "200 result=0\n" if value is None else f"200 result=1 ({value})\n"

    def _h_get_full_variable(self, argv: list[str]) -> str | None:
        if len(argv) not in (4, 5):
            return None
        return f"200 result=1 ({self.substitute(argv[3])})\n"

    def _h_database_get(self, argv: list[str]) -> str | None:
        if len(argv) != 4:
            return None
        value = self.astdb.get(f"{argv[2]}/{argv[3]}")
        return "200 result=0\n" if value is None else f"200 result=1 ({value})\n"

    def _h_database_put(self, argv: list[str]) -> str | None:
        if len(argv) != 5:
            return None
        self.astdb[f"{argv[2]}/{argv[3]}"] = argv[4]
        return "200 result=1\n"

    def _h_database_del(self, argv: list[str]) -> str | None:
        if len(argv) != 4:
            return None
        found = self.astdb.pop(f"{argv[2]}/{argv[3]}", None)
        return "200 result=0\n" if found is None else "200 result=1\n"

    def _h_database_deltree(self, argv: list[str]) -> str | None:
        if len(argv) not in (3, 4):
            return None
        prefix = "/".join(argv[2:]) + "/"
        doomed = [key for key in self.astdb if key.startswith(prefix)]
        for key in doomed:
            del self.astdb[key]
        return "200 result=1\n" if doomed else "200 result=0\n"

