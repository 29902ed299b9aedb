"""The database password never shows: not in any process's argv (sampled from /proc/*/cmdline while
the AGI, retry and doctor run), not in syslog, not on the AGI's VERBOSE channel, not in doctor or
``--json`` output, not in spool files. Config, spool and recipients-copy files are 0640, whatever
the umask.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from missedcall.record.model import utcnow
from tests.agibox import MISSED, Pbx, abandon_peer, make_pbx
from tests.support.mariadb import MariaDBServer, temporary_mariadb

TAP = Path(__file__).resolve().parent / "syslogtap"


class ArgvWatch:
    """Reads every process's command line every few milliseconds; remembers what it saw."""

    def __init__(self, needles: list[bytes]) -> None:
        self.needles = needles
        self.leaks: list[str] = []
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as handle:
                        cmdline = handle.read()
                except OSError:
                    continue
                if any(n in cmdline for n in self.needles):
                    self.leaks.append(cmdline.replace(b"\0", b" ").decode("utf-8", "replace"))
                for mark in ("missed.py", "missedcall.admin.cli", "sendmail"):
                    if mark.encode() in cmdline:
                        self.seen.add(mark)
            time.sleep(0.002)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@contextmanager
def secret_box(tmp_path: Path, server: MariaDBServer) -> Iterator[tuple[Pbx, str]]:
    password = "Pw-" + secrets.token_hex(12) + "-$ecret"
    with temporary_mariadb(server, password=password) as db:
        box = make_pbx(tmp_path, db.url)
        yield box, password


def _env() -> dict[str, str]:
    return {"PYTHONPATH": str(TAP), "FAKE_SENDMAIL_SLEEP": "0.3"}


def test_the_password_never_shows(tmp_path: Path, mariadb_server: MariaDBServer) -> None:
    log_file = tmp_path / "syslog.txt"
    with secret_box(tmp_path, mariadb_server) as (box, password):
        quoted = box.settings["MISSEDCALL_DB_URL"].split(":", 2)[2].split("@", 1)[0]  # as written in the URL
        needles = [password.encode(), quoted.encode()]
        env = {**_env(), "MISSEDCALL_TEST_SYSLOG": str(log_file)}
        outputs: list[str] = []
        with ArgvWatch(needles) as watch:
            # The AGI: a normal call, then one whose relay fails (pending), retried by retry.
            run = box.run(abandon_peer("1796000000.1"), ["600"], **env)
            assert run.ok, run
            outputs += [*run.commands, run.stderr]
            run = box.run(abandon_peer("1796000000.2"), ["600"], FAKE_SENDMAIL_EXIT="75", **env)
            assert run.ok, run
            outputs += [*run.commands, run.stderr]
            with box.store() as store:
                store.update_call("1796000000.2", next_attempt_at=utcnow())
            for argv in (["retry"], ["doctor"], ["log", "--json"], ["recipients", "list", "--json"],
                         ["queues", "--json"], ["log", "--status", "failed"]):  # fmt: skip
                done = box.admin(*argv, **env)
                outputs += [done.stdout, done.stderr]
            assert [c.status for c in box.calls()] == ["sent", "sent"]

            # The same with a wrong password: every error message names the user, never the password.
            good = box.settings["MISSEDCALL_DB_URL"]
            box.configure(MISSEDCALL_DB_URL=good.replace(quoted, quoted + "-wrong", 1))
            run = box.run(abandon_peer("1796000000.3"), ["600"], **env)
            assert run.ok, run
            outputs += [*run.commands, run.stderr]
            assert any("Access denied" in c for c in run.commands), run.commands
            for argv in (["retry"], ["doctor"], ["log", "--json"]):
                done = box.admin(*argv, **env)
                assert done.returncode != 0
                outputs += [done.stdout, done.stderr]
            box.configure(MISSEDCALL_DB_URL=good)
        assert watch.seen >= {"missed.py", "missedcall.admin.cli", "sendmail"}, watch.seen
        assert watch.leaks == []
        logged = log_file.read_text()
        assert "missedcall" in logged or "mailed" in logged  # the tap did catch the log lines
        spooled = b"".join(p.read_bytes() for p in box.spool.iterdir() if p.is_file())
        for needle in needles:
            text = needle.decode()
            assert text not in logged
            assert all(text not in out for out in outputs)
            assert needle not in spooled
            for mail in box.stored():
                assert needle not in mail.raw and text not in json.dumps(mail.envelope)
        assert any("Access denied" in out for out in outputs)


def test_files_are_0640_whatever_the_umask(tmp_path: Path, mariadb_server: MariaDBServer) -> None:
    with secret_box(tmp_path, mariadb_server) as (box, _password):
        assert box.admin("recipients", "add", "600", "ops600@example.com").returncode == 0
        box.configure(MISSEDCALL_DB_URL="mysql://nobody:nothing@127.0.0.1:1/none")
        argv = ["/bin/sh", "-c", 'umask 000; exec "$@"', "sh", os.sys.executable, str(MISSED), "600"]
        run = abandon_peer("1796000001.1").run(argv, env=box.environ(), timeout=15)
        assert run.ok, run
        files = [box.config_file, box.spool / "recipients.json", *box.spooled()]
        assert len(files) == 3
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
        assert stat.S_IMODE(box.spool.stat().st_mode) & 0o007 == 0
