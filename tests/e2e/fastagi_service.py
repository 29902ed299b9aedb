"""``missedcall-admin serve`` inside an e2e PBX: started as the asterisk user from the
venv install.sh made, stopped by its own pid (the box has no systemd to do it)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from typing import Optional

import pbx as e2e
from installed import CONFIG
from processes import clean_env, wait_child, wait_for, wait_gone

from missedcall.admin import checks_fastagi
from missedcall.detect.listen import Listen

SERVE = ["env", f"MISSEDCALL_CONFIG={CONFIG}", "/opt/missedcall/venv/bin/missedcall-admin", "serve"]


def free_port() -> int:
    with socket.socket() as probe:  # the box shares the host's network: a port nobody else holds
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Service:
    """``missedcall-admin serve`` inside the box as asterisk; ``pid`` is its host-side pid."""

    def __init__(self, pbx: e2e.Pbx, port: int) -> None:
        self.pbx, self.port = pbx, port
        self.popen: Optional[subprocess.Popen[bytes]] = None
        self.pid: Optional[int] = None

    def start(self) -> None:
        assert self.pbx.rundir is not None
        with open(self.pbx.rundir / "fastagi.out", "ab") as out:
            self.popen = subprocess.Popen(
                self.pbx.namespace.enter(SERVE, user="asterisk"),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                start_new_session=True,
            )
        self.pid = wait_child(self.popen.pid)
        wait_for(self.listening, 30, "the FastAGI service listening", 0.1)

    def listening(self) -> bool:
        try:
            checks_fastagi.probe(Listen("127.0.0.1", self.port), timeout=1)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            if not wait_gone(self.pid, 30):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        if self.popen is not None:
            self.popen.wait(30)
            self.popen = None
