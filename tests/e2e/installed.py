"""The e2e PBX with missedcall installed: install.sh run inside the box from a copy of
this tree, ``missedcall-admin`` as cron or an admin runs it, and what happened (rows in
the FreePBX database on the host's MariaDB, mails delivered to ops's mailbox)."""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Optional

import pymysql
import pytest
from calls import LocalCall
from pbx import Pbx
from processes import PbxError, wait_for

from tests.paths import REPO_ROOT
from tests.support.mariadb import MariaDBDatabase

SRC_IN_BOX = "/usr/src/missedcall"
OVERRIDE = "/etc/asterisk/extensions_override_freepbx.conf"
CONFIG = "/etc/missedcall/missedcall.env"
# Files of this tree that do not belong in the box.
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".*_cache", ".hypothesis", ".benchmarks", "*.egg-info", "build", "dist"
)


def brief(row: Optional[dict[str, Any]]) -> str:
    """A row in one line, for failure messages."""
    if row is None:
        return "none"
    return f"{row['source']}/{row['status']} attempts={row['attempts']} error={row['last_error']!r}"


@dataclass
class Box:
    """A PBX with missedcall put in by its own install.sh, and the FreePBX database it uses."""

    pbx: Pbx
    db: MariaDBDatabase
    recipients: Sequence[tuple[str, str, str]] = ()
    """(queue, address, name) rows added with ``missedcall-admin recipients add`` at the first install."""
    override_before: Optional[bytes] = None
    installed: bool = False
    configured: bool = False
    install_seconds: float = 0.0

    # -- install / uninstall ------------------------------------------------ #

    def install_sh(self, *args: str) -> str:
        """./install.sh ARGS as root inside the box, from the copy of this tree.

        pip in the box reaches the index with the host's CA bundle (PIP_CERT,
        SSL_CERT_FILE: install.sh passes its environment on to pip) and none of the
        host's PIP_* settings.
        """
        proc = self.pbx.run(
            ["bash", "-c", 'cd "$1" && shift && ./install.sh "$@"', "install", SRC_IN_BOX, *args],
            env=self.pbx.pip_env(),
            timeout=600,
            check=False,
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"install.sh {' '.join(args)} exited {proc.returncode}:\n{output[-6000:]}"
        return output

    def install(self) -> None:
        if self.override_before is None:
            self.override_before = self.pbx.path(OVERRIDE).read_bytes()
        target = self.pbx.path(SRC_IN_BOX)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(REPO_ROOT, target, ignore=COPY_IGNORE)
        started = time.monotonic()
        output = self.install_sh()
        self.install_seconds = time.monotonic() - started
        assert "FAIL" not in output, output[-4000:]
        assert "AGI(missed.py" in self.pbx.rx("dialplan show h@ext-queues"), output[-4000:]
        if not self.configured:  # an uninstall keeps the configuration and the tables
            # 50 calls at once must be 50 single mails, not a flood digest (default: 20 per 5 min).
            self.pbx.append_file(CONFIG, "\n# tests/e2e/installed.py\nMISSEDCALL_FLOOD_LIMIT=1000\n")
            for queue, address, name in self.recipients:
                self.admin("recipients", "add", queue, address, *(["--name", name] if name else []))
            # What cron does in its first minute: the sweeper's first run starts at the end of queue_log.
            self.sweep()
            self.configured = True
        self.installed = True

    def uninstall(self) -> str:
        output = self.install_sh("--uninstall")
        self.installed = False
        return output

    # -- missedcall-admin --------------------------------------------------- #

    def admin(self, *args: str, user: Optional[str] = None) -> str:
        proc = self.pbx.run(["missedcall-admin", *args], user=user, timeout=120, check=False)
        assert proc.returncode == 0, f"missedcall-admin {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
        return proc.stdout

    def sweep(self) -> str:
        """One sweeper run as cron would do it (as the asterisk user), deciding at once."""
        return self.admin("sweep", "--grace", "0", "--verbose", user="asterisk")

    # -- what happened -------------------------------------------------------- #

    def rows(self, callids: Sequence[str]) -> list[dict[str, Any]]:
        if not callids:
            return []
        with contextlib.closing(self.db.connect()) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
            marks = ", ".join(["%s"] * len(callids))
            cur.execute(f"SELECT * FROM missedcall_calls WHERE callid IN ({marks})", tuple(callids))
            return list(cur.fetchall())

    def row_count(self) -> int:
        with contextlib.closing(self.db.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM missedcall_calls")
            return int(cur.fetchone()[0])

    def mails(self, callid: Optional[str] = None) -> list[EmailMessage]:
        """Delivered copies (one per recipient), of one call's notification or of all."""
        box = self.pbx.messages("ops")
        if callid is None:
            return box
        return [m for m in box if m.get("X-Missedcall-Callid") == callid]

    def wait_mails(
        self, callid: str, copies: int, timeout: float = 30.0, call: Optional[LocalCall] = None
    ) -> list[EmailMessage]:
        try:
            wait_for(lambda: len(self.mails(callid)) >= copies, timeout, f"{copies} mail copies", 0.1)
        except PbxError as exc:
            said = self.agi_lines(call) if call is not None else "?"
            rows = [brief(row) for row in self.rows([callid])]
            pytest.fail(f"call {callid}: {exc}; {len(self.mails(callid))} arrived; rows {rows}; the hook said {said}")
        self.pbx.wait_mail_idle()
        return self.mails(callid)

    def retry_pending(self, callids: Sequence[str]) -> list[str]:
        """Run what cron runs every minute when a hook left a call pending; return those calls."""
        pending = [row["callid"] for row in self.rows(callids) if row["status"] == "pending"]
        if pending:
            self.admin("retry", user="asterisk")
        return pending

    def settle(self, *calls: LocalCall) -> None:
        """Wait until the calls are gone (h and any AGI done) and postfix has delivered everything."""
        for call in calls:
            call.wait_hungup()
        self.pbx.wait_mail_idle()

    def agi_lines(self, call: LocalCall) -> list[str]:
        """What missed.py said through VERBOSE for this call (not the AGI debug echo of it)."""
        return [
            line
            for line in call.thread_log_lines()
            if "missedcall: " in line and not re.search(r"AGI (Rx <<|Tx >>)", line)
        ]
