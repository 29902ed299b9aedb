"""A call placed through the harness's [callers] context, and what the box tells about it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

from asterisk_conf import HARNESS_DIR
from processes import PbxError, wait_for

if TYPE_CHECKING:
    from pbx import Pbx


class LocalCall:
    """A call placed by Pbx.originate_local(); token is its Local/<token>@callers."""

    def __init__(self, pbx: Pbx, token: str) -> None:
        self.pbx = pbx
        self.token = token
        self._uniqueid: Optional[str] = None

    def __repr__(self) -> str:
        return f"LocalCall({self.token!r})"

    def uniqueid(self, timeout: float = 15.0) -> str:
        """UNIQUEID of the caller channel (the ;2 half): queue_log's callid.

        (The ;1 half's UNIQUEID is the call's linkedid.)
        """
        if self._uniqueid is not None:
            return self._uniqueid
        path = self.pbx.path(f"{HARNESS_DIR}/{self.token}.uniqueid")

        def read() -> Optional[str]:
            try:
                return path.read_text().strip() or None
            except OSError:
                return None

        self._uniqueid = wait_for(read, timeout, f"call {self.token} to reach [callers]")
        return self._uniqueid

    @property
    def channel_prefix(self) -> str:
        """How the call's channels are named: Local/<token>@callers-<seq>;1 and ;2."""
        return f"Local/{self.token}@callers-"

    def log_lines(self) -> list[str]:
        """Lines of the full log that name this call's channels."""
        return [line for line in self.pbx.full_log().splitlines() if self.channel_prefix in line]

    def thread_log_lines(self) -> list[str]:
        """Lines of the full log tagged with this call's [C-xxxxxxxx] call ids.

        Some of Asterisk's lines about a call do not name its channel: res_agi
        logs what a script says through VERBOSE as "missed.py,600: ..." only.
        """
        lines = self.pbx.full_log().splitlines()
        tags = set()
        for line in lines:
            if self.channel_prefix in line:
                tags.update(re.findall(r"\[(C-[0-9a-f]{8})\]", line))
        return [line for line in lines if any(f"[{tag}]" in line for tag in tags)]

    def queue_log(self) -> list[list[str]]:
        """This call's queue_log lines, split on '|'."""
        callid = self.uniqueid()
        return [row for row in self.pbx.queue_log() if len(row) > 1 and row[1] == callid]

    def events(self) -> list[str]:
        return [row[4] for row in self.queue_log() if len(row) > 4]

    def wait_event(self, *events: str, timeout: float = 30.0) -> list[str]:
        """Wait until one of events appears for this call; return that row."""

        def find() -> Optional[list[str]]:
            for row in self.queue_log():
                if len(row) > 4 and row[4] in events:
                    return row
            return None

        return wait_for(find, timeout, f"{'/'.join(events)} for call {self.token}")

    def wait_hungup(self, timeout: float = 30.0) -> None:
        """Wait until both halves of the call are gone (its h extension, AGI included, has run)."""
        self.pbx.wait_no_channels(self.channel_prefix, timeout=timeout)

    @classmethod
    def originate(
        cls,
        pbx: Pbx,
        exten: str,
        context: str = "ext-queues",
        *,
        caller_num: Optional[str] = "5551234",
        caller_name: Optional[str] = "John Doe",
        did: Optional[str] = "5559000",
        hangup_after: float = 3.0,
    ) -> LocalCall:
        """Place a call from the CLI: Local/<token>@callers, which sets the caller ID
        and goes to exten@context (a queue's extension, usually).

        The caller side (the ;1 half) runs Wait(hangup_after) once the called side
        answers (FreePBX's [ext-queues] answers before Queue()), then hangs up: an
        abandon when the call is still queued then.  caller_num/caller_name None
        leaves that part of the caller ID unset; any text (commas, quotes, newlines,
        Cyrillic) is passed through unmangled.  did sets FROM_DID like a trunk would.
        """
        token = f"{next(pbx.tokens):04d}"
        base = f"{HARNESS_DIR}/{token}"
        aster = "asterisk"
        for suffix, value in (("num", caller_num), ("name", caller_name), ("did", did)):
            if value is not None:
                pbx.write_file(f"{base}.{suffix}", value, owner=aster)
        pbx.write_file(f"{base}.context", context, owner=aster)
        pbx.write_file(f"{base}.exten", exten, owner=aster)
        out = pbx.rx(f"channel originate Local/{token}@callers application Wait {hangup_after:g}")
        if out.strip():
            raise PbxError(f"channel originate said: {out.strip()}")
        return cls(pbx, token)
