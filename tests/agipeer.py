"""A scripted Asterisk 22 AGI peer, for tests that run an AGI script for real.

The peer starts the script as a subprocess with pipes, writes the header block
exactly as Asterisk 22 does, then answers every command line the way
``res_agi.c`` answers it: same argument parsing, same dead-channel refusals,
same raw ``(value)`` replies, so a newline in a caller name spans two reply
lines just as in the recorded sessions under ``tests/fixtures/asterisk22-agi``.

Everything is bounded by the run's ``timeout``: a script that hangs is killed
through its ``Popen`` handle and the result says so (``timed_out``,
``returncode is None``).

Stdlib only, so the package can ship it and downstream dialplan tests can use it.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from missedcall.admin.dialplan import split_lines  # Asterisk's readers, like its config parser, split on "\n" only

__all__ = [
    "ASTERISK_VERSION",
    "REPLY_DEAD",
    "REPLY_UNKNOWN",
    "AgiPeer",
    "AgiRun",
    "header_args",
    "make_headers",
    "parse_agi_args",
    "parse_header_block",
    "split_lines",
    "variables_from_exchanges",
]

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
# before we stop reading and report it (a script must not leave children behind).
_PIPE_LINGER = 0.25
_POLL_INTERVAL = 0.05
_KILL_WAIT = 5.0

_HEADER_LINE = re.compile(r"agi_[a-z0-9_]+: ", re.ASCII)


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
        match = _HEADER_LINE.match(line)
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


def _replace_headers(
    lines: Sequence[str], *, args: Sequence[str] | None, request: str | None
) -> list[str]:
    """Keep a recorded block verbatim but for its request and/or argument lines."""
    out: list[str] = []
    dropping = False
    for raw in lines:
        line = raw.rstrip("\n")
        if line == "":
            break
        match = _HEADER_LINE.match(line)
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


@dataclass(frozen=True)
class _Command:
    words: tuple[str, ...]
    dead_ok: bool
    handler: str


# Asterisk 22's command table: the words, and whether the command may run on a
# dead channel (the ``dead`` column of res_agi.c's ``commands[]``).
_COMMANDS: tuple[_Command, ...] = tuple(
    _Command(tuple(words.split()), dead_ok, handler)
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
_KNOWN_FUNCTIONS = frozenset(
    {"CALLERID", "CHANNEL", "CDR", "CONNECTEDLINE", "REDIRECTING", "QUEUE_VARIABLES", "DB"}
)


def _find_command(words: Sequence[str]) -> _Command | None:
    # find_command(argv, 0): every word of the entry must match (case-insensitively);
    # extra words on the line are the command's arguments.
    for command in _COMMANDS:
        if len(words) < len(command.words):
            continue
        if all(a.lower() == b for a, b in zip(words, command.words)):
            return command
    return None


def _usage(command: _Command) -> str:
    name = " ".join(command.words).upper()
    return (
        "520-Invalid command syntax.  Proper usage follows:\n"
        f" Usage: {name}\n"
        "520 End of proper usage.\n"
    )


def _function_key(name: str) -> str:
    # Function names are case-insensitive in Asterisk, and so are CALLERID/CHANNEL items.
    func, _, rest = name.partition("(")
    return f"{func.strip().upper()}({rest[:-1].strip().lower()})"


def _false(value: str | None) -> bool:
    # ast_false(): the spellings Asterisk treats as "no".
    return value is not None and value.strip().lower() in {"no", "false", "n", "f", "0", "off"}


# --------------------------------------------------------------------------- results


@dataclass
class AgiRun:
    """What happened during one :meth:`AgiPeer.run`."""

    returncode: int | None
    """The script's exit status; ``None`` when it overran the timeout and was killed."""
    commands: list[str]
    """Recognised AGI command lines, in order, without the trailing newline."""
    stdout_garbage: list[str]
    """Stdout lines that are no AGI command (Asterisk answered them with 510)."""
    stderr: str
    duration: float
    """Seconds from start until the child exited (or was killed)."""
    timed_out: bool = False
    sighup_sent: bool = False
    pipes_left_open: bool = False
    """The child exited but a descendant still held stdout/stderr open."""
    exchanges: list[tuple[str, str]] = field(default_factory=list)
    """Every stdout line with the exact reply text sent ("" when none was sent)."""
    unanswered: list[str] = field(default_factory=list)
    """Lines that got no reply (pipe closed, or the peer was told to stop answering)."""
    variables: dict[str, str] = field(default_factory=dict)
    """Channel variables at the end, including what the script set."""
    astdb: dict[str, str] = field(default_factory=dict)
    """AstDB contents at the end, keyed ``family/key``."""

    @property
    def ok(self) -> bool:
        """Exited 0 on its own, within time, leaving nothing behind."""
        return self.returncode == 0 and not self.timed_out and not self.pipes_left_open


# --------------------------------------------------------------------------- peer


class _Session:
    """Per-run channel state, so one peer can be run several times."""

    def __init__(self, peer: AgiPeer) -> None:
        self.peer = peer
        self.headers = parse_header_block(peer.header_lines)
        self.variables = dict(peer.variables)
        self.astdb = dict(peer.astdb)
        self.dead = peer.dead
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
        wanted = _function_key(name)
        func = wanted.partition("(")[0]
        for key, value in self.variables.items():
            if key.endswith(")") and "(" in key and _function_key(key) == wanted:
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
        return "" if func in _KNOWN_FUNCTIONS else None

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

    def handle(self, line: str) -> tuple[_Command | None, str]:
        words = parse_agi_args(line)
        command = _find_command(words)
        if command is None:
            return None, REPLY_UNKNOWN
        if self.dead and not command.dead_ok:
            return command, REPLY_DEAD
        handler: Callable[[list[str]], str | None] = getattr(self, f"_h_{command.handler}")
        reply = handler(words)
        return command, _usage(command) if reply is None else reply

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


@dataclass
class _Reply:
    due: float
    data: bytes
    then_hang_up: bool


class AgiPeer:
    """Plays Asterisk 22 towards one AGI script.

    ``variables`` holds channel variables (``ABANDONED``, ``QUEUESTATUS``, ...)
    and function values (``CALLERID(num)``, ``CHANNEL(linkedid)``, ...); what
    is not there falls back to the header block (caller ID, uniqueid, channel)
    or reads as unset, like on a real channel.

    ``sighup_after_commands`` (live channels only) hangs the channel up after
    that many replies: the child gets SIGHUP (unless ``AGISIGHUP`` is "no"),
    and later commands are answered as on a dead channel. Every stdout line
    counts as a command here, as it costs Asterisk a reply too.
    """

    def __init__(
        self,
        header_lines: Sequence[str],
        variables: Mapping[str, str] | None = None,
        *,
        dead: bool = True,
        sighup_after_commands: int | None = None,
        eof_after_headers: bool = False,
        reply_delay: float = 0,
        no_reply_after: int | None = None,
        astdb: Mapping[str, str] | None = None,
    ) -> None:
        if sighup_after_commands is not None and dead:
            raise ValueError("sighup_after_commands needs a live channel (dead=False)")
        if reply_delay < 0:
            raise ValueError("reply_delay must not be negative")
        self.header_lines = list(header_lines)
        self.variables: dict[str, str] = dict(variables or {})
        self.dead = dead
        self.sighup_after_commands = sighup_after_commands
        self.eof_after_headers = eof_after_headers
        self.reply_delay = reply_delay
        self.no_reply_after = no_reply_after
        self.astdb: dict[str, str] = dict(astdb or {})
        self.fixture: dict[str, Any] | None = None

    @property
    def header_bytes(self) -> bytes:
        return "".join(self.header_lines).encode("utf-8")

    @property
    def args(self) -> list[str]:
        """The AGI arguments named in the header block: pass them as the script's argv[1:]."""
        return header_args(self.header_lines)

    @classmethod
    def from_fixture(
        cls,
        path: str | os.PathLike[str],
        *,
        variables: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
        request: str | None = None,
        **kwargs: Any,
    ) -> AgiPeer:
        """A peer replaying one recorded session of ``tests/fixtures/asterisk22-agi``.

        The header block is used verbatim unless ``args`` / ``request`` replace
        those lines; ``variables`` are merged over the ones the recording
        reveals; ``dead`` defaults to the recording's ``where`` (``cont`` = live).
        """
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        header_lines: list[str] = list(data["header_lines"])
        if args is not None or request is not None:
            header_lines = _replace_headers(header_lines, args=args, request=request)
        derived = variables_from_exchanges(data.get("exchanges", []))
        derived.update(variables or {})
        kwargs.setdefault("dead", data.get("where") != "cont")
        peer = cls(header_lines, derived, **kwargs)
        peer.fixture = data
        return peer

    # ------------------------------------------------------------------ run

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 10,
        cwd: str | os.PathLike[str] | None = None,
    ) -> AgiRun:
        """Start ``argv``, speak AGI to it until it exits, and report.

        ``env`` replaces the inherited environment (Asterisk's ``AST_*``
        variables are added unless present). Never blocks past ``timeout``.
        """
        child_env = dict(os.environ if env is None else env)
        for key, value in ASTERISK_ENV.items():
            child_env.setdefault(key, value)
        session = _Session(self)
        start = time.monotonic()
        deadline = start + timeout
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
            cwd=cwd,
            close_fds=True,
        )
        try:
            return self._converse(proc, session, start, deadline)
        finally:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(timeout=_KILL_WAIT)
                except subprocess.TimeoutExpired:
                    pass
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass

    def _converse(
        self,
        proc: subprocess.Popen[bytes],
        session: _Session,
        start: float,
        deadline: float,
    ) -> AgiRun:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        result = AgiRun(returncode=None, commands=[], stdout_garbage=[], stderr="", duration=0.0)
        stdin_fd: int | None = proc.stdin.fileno()
        os.set_blocking(stdin_fd, False)
        pending = bytearray(self.header_bytes)
        headers_left = len(pending)
        replies: deque[_Reply] = deque()
        last_due = start
        hang_up_after_write = False
        stdout_buf = bytearray()
        stderr_buf = bytearray()
        line_count = 0

        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ, "stdout")
        selector.register(proc.stderr, selectors.EVENT_READ, "stderr")
        open_readers = 2
        pidfd: int | None = None
        try:
            pidfd = os.pidfd_open(proc.pid)
            selector.register(pidfd, selectors.EVENT_READ, "exit")
        except (AttributeError, OSError):
            pidfd = None  # no pidfd (old kernel or Python): poll instead
        stdin_registered = False
        exited_at: float | None = None

        def close_stdin() -> None:
            nonlocal stdin_fd, stdin_registered
            if stdin_fd is None:
                return
            if stdin_registered:
                selector.unregister(proc.stdin)
                stdin_registered = False
            try:
                proc.stdin.close()
            except OSError:
                pass
            stdin_fd = None
            pending.clear()

        def hang_up() -> None:
            session.dead = True
            if proc.poll() is None and not _false(session.lookup("AGISIGHUP")):
                proc.send_signal(signal.SIGHUP)
                result.sighup_sent = True

        def on_line(raw: bytes) -> None:
            nonlocal line_count, last_due
            text = raw.decode("utf-8", errors="replace")
            line_count += 1
            answering = stdin_fd is not None and (
                self.no_reply_after is None or line_count <= self.no_reply_after
            )
            if not answering:
                command = _find_command(parse_agi_args(text))
                (result.commands if command else result.stdout_garbage).append(text)
                result.unanswered.append(text)
                result.exchanges.append((text, ""))
                return
            command, reply = session.handle(text)
            (result.commands if command else result.stdout_garbage).append(text)
            result.exchanges.append((text, reply))
            hang = session.hangup_pending or (
                not session.dead and self.sighup_after_commands == line_count
            )
            session.hangup_pending = False
            due = max(time.monotonic(), last_due) + self.reply_delay
            last_due = due
            replies.append(_Reply(due, reply.encode("utf-8"), hang))

        if self.sighup_after_commands == 0:
            hang_up_after_write = True  # hung up before the first command

        while True:
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and open_readers == 0:
                break
            if now >= deadline:
                result.timed_out = True
                break
            if exited_at is not None and now - exited_at >= _PIPE_LINGER:
                result.pipes_left_open = True
                break

            # Move due replies to the output buffer.
            while replies and replies[0].due <= now:
                reply = replies.popleft()
                if stdin_fd is not None:
                    pending.extend(reply.data)
                if reply.then_hang_up:
                    hang_up_after_write = True

            if pending and stdin_fd is not None:
                try:
                    written = os.write(stdin_fd, pending)
                    del pending[:written]
                    headers_left = max(0, headers_left - written)
                except BlockingIOError:
                    pass
                except OSError:  # EPIPE: the child closed stdin or exited
                    close_stdin()
            if hang_up_after_write and not pending:
                hang_up_after_write = False
                if not session.dead:
                    hang_up()
            if self.eof_after_headers and headers_left == 0 and stdin_fd is not None:
                close_stdin()

            want_write = bool(pending) and stdin_fd is not None
            if want_write != stdin_registered:
                if want_write:
                    selector.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
                else:
                    selector.unregister(proc.stdin)
                stdin_registered = want_write

            wait = deadline - now
            if replies:
                wait = min(wait, max(0.0, replies[0].due - now))
            if exited_at is not None:
                wait = min(wait, max(0.0, exited_at + _PIPE_LINGER - now))
            elif pidfd is None:
                wait = min(wait, _POLL_INTERVAL)
            for key, _events in selector.select(max(0.0, wait)):
                if key.data == "exit":
                    selector.unregister(key.fileobj)
                    continue
                if key.data == "stdin":
                    continue  # written at the top of the loop
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_readers -= 1
                    if key.data == "stdout" and stdout_buf:
                        # An unterminated last line never reaches Asterisk as a command.
                        result.stdout_garbage.append(stdout_buf.decode("utf-8", "replace"))
                        stdout_buf.clear()
                    continue
                if key.data == "stderr":
                    stderr_buf.extend(chunk)
                    continue
                stdout_buf.extend(chunk)
                while True:
                    newline = stdout_buf.find(b"\n")
                    if newline < 0:
                        break
                    line = bytes(stdout_buf[:newline])
                    del stdout_buf[: newline + 1]
                    on_line(line)

        end = time.monotonic()
        selector.close()
        if pidfd is not None:
            os.close(pidfd)
        if result.timed_out:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(timeout=_KILL_WAIT)
                except subprocess.TimeoutExpired:
                    pass
        else:
            result.returncode = proc.poll()
        result.duration = (exited_at if exited_at is not None else end) - start
        result.stderr = stderr_buf.decode("utf-8", errors="replace")
        result.variables = dict(session.variables)
        result.astdb = dict(session.astdb)
        return result


# --------------------------------------------------------------------------- fixtures


def _take_reply(lines: Sequence[str], pos: int) -> tuple[str, int]:
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
        reply, pos = _take_reply(stream, pos)
        prefix = "200 result=1 ("
        if not reply.startswith(prefix) or not reply.endswith(")\n"):
            continue
        value = reply[len(prefix) : -2]
        argv = parse_agi_args(exchange.get("send", ""))
        words = [word.lower() for word in argv]
        if words[:2] == ["get", "variable"] and len(argv) == 3:
            variables[argv[2]] = value
        elif words[:3] == ["get", "full", "variable"] and len(argv) >= 4:
            variables.update(_match_expression(argv[3], value))
    return variables


def _match_expression(expr: str, value: str) -> dict[str, str]:
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
