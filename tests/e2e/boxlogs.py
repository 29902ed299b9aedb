"""What the box tells: Asterisk's logs and queue_log, Postfix's log, the channels up."""

from __future__ import annotations

from pathlib import Path

from processes import wait_for


class BoxLogs:
    """Mixed into Pbx: needs ``path(inside)`` and ``rx(command)``."""

    def path(self, inside: str) -> Path:
        raise NotImplementedError

    def rx(self, command: str, timeout: float = 20.0) -> str:
        raise NotImplementedError

    def read_text(self, inside: str) -> str:
        try:
            return self.path(inside).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def queue_log(self) -> list[list[str]]:
        """/var/log/asterisk/queue_log, each line split on '|'."""
        return [line.split("|") for line in self.read_text("/var/log/asterisk/queue_log").splitlines() if line]

    def full_log(self) -> str:
        return self.read_text("/var/log/asterisk/full")

    def messages_log(self) -> str:
        return self.read_text("/var/log/asterisk/messages")

    def postfix_log(self) -> str:
        return self.read_text("/var/log/postfix.log")

    def channels(self) -> list[str]:
        """Names of the channels up right now (``core show channels concise``)."""
        out = self.rx("core show channels concise")
        return [line.split("!", 1)[0] for line in out.splitlines() if "!" in line]

    def wait_no_channels(self, prefix: str = "", timeout: float = 30.0) -> None:
        """Wait until no channel whose name starts with prefix is up (prefix "": none at all)."""

        def gone() -> bool:
            return not any(name.startswith(prefix) for name in self.channels())

        wait_for(gone, timeout, f"channels {prefix or '(any)'}* to hang up", 0.1)
