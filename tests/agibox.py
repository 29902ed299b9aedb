"""A configured box for tests that run the real agi-bin/missed.py and missedcall-admin.

``Pbx`` (moved here from test_hook.py so every suite shares it): a database with
recipients, a config file, a maildir for the sendmail stand-in, a queue_log and
a spool folder, all under the test's tmp_path. ``run`` plays one AGI session
with a scripted Asterisk 22 peer; ``run_many`` plays many at once (each peer
runs its process in a thread of its own and stops it by its Popen handle);
``admin`` runs ``missedcall-admin`` as a separate process with the same
configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

import pytest

from missedcall.config import Settings, load_settings
from missedcall.dburl import parse_db_url
from missedcall.record.model import CallRecord
from missedcall.record.storage import Store
from tests.agipeer import AgiPeer, AgiRun, make_headers
from tests.mailbox import StoredMail, read_mail
from tests.paths import MISSED_PY, SENDMAIL_BIN
from tests.support.env import dotenv_quote

MISSED = MISSED_PY  # the name the reliability suites import
DEFAULT_RECIPIENTS = (
    ("600", "ops600@example.com", "Ops"),
    ("601", "ops601@example.com", ""),
    ("*", "boss@example.com", ""),
)


@dataclass
class Pbx:
    """One configured box: a database with recipients, a config file, a maildir, a queue_log, a spool."""

    tmp: Path
    db_url: str
    maildir: Path
    queue_log: Path
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Never the host's /var/spool/missedcall.
        self.settings.setdefault("MISSEDCALL_SPOOL_DIR", str(self.tmp / "spool"))
        Path(self.settings["MISSEDCALL_SPOOL_DIR"]).mkdir(mode=0o750, parents=True, exist_ok=True)

    @property
    def config_file(self) -> Path:
        return self.tmp / "missedcall.env"

    @property
    def spool(self) -> Path:
        return Path(self.settings["MISSEDCALL_SPOOL_DIR"])

    def configure(self, **keys: str | None) -> None:
        """Set (or, with None, remove) keys and rewrite the config file, mode 0640."""
        for key, value in keys.items():
            if value is None:
                self.settings.pop(key, None)
            else:
                self.settings[key] = value
        lines = [f"{k}={dotenv_quote(v)}" for k, v in self.settings.items()]
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            os.fchmod(handle.fileno(), 0o640)
            handle.write("\n".join(lines) + "\n")

    def in_this_process(self, monkeypatch: pytest.MonkeyPatch) -> Settings:
        """Point this test process at the box (for the CLI, notify or retry called in-process); its settings."""
        monkeypatch.setenv("MISSEDCALL_CONFIG", str(self.config_file))
        monkeypatch.setenv("MISSEDCALL_TEST_MAILDIR", str(self.maildir))
        return load_settings()

    def store(self, url: str | None = None) -> Store:
        return Store.open(parse_db_url(url or self.db_url))

    def environ(self, **env: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MISSEDCALL_CONFIG": str(self.config_file),
            "MISSEDCALL_TEST_MAILDIR": str(self.maildir),
            "PYTHONDONTWRITEBYTECODE": "1",
            **env,
        }

    def run(self, peer: AgiPeer, args: Sequence[str | bytes], *, timeout: float = 15, **env: str) -> AgiRun:
        return peer.run([sys.executable, str(MISSED), *args], env=self.environ(**env), timeout=timeout)

    def run_many(
        self,
        jobs: Sequence[tuple[AgiPeer, Sequence[str | bytes]]],
        *,
        parallel: int | None = None,
        timeout: float = 15,
        start: threading.Barrier | None = None,
        **env: str,
    ) -> list[AgiRun]:
        """Run every job, ``parallel`` at a time (all at once when None); results in job order."""
        results: list[AgiRun | None] = [None] * len(jobs)
        errors: list[BaseException] = []
        gate = threading.Semaphore(parallel or len(jobs) or 1)

        def work(index: int) -> None:
            peer, args = jobs[index]
            with gate:
                try:
                    if start is not None:
                        start.wait()
                    results[index] = self.run(peer, args, timeout=timeout, **env)
                except BaseException as exc:  # reported below, with the others
                    errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout + 120)
        assert not errors, errors
        assert all(r is not None for r in results), "a peer thread did not finish"
        return [r for r in results if r is not None]

    def admin(self, *argv: str | bytes, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        """``missedcall-admin ARGV...`` in its own process, with this box's configuration."""
        return subprocess.run(
            [sys.executable, "-m", "missedcall.admin.cli", *argv],
            env=self.environ(**env),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )

    def stored(self) -> list[StoredMail]:
        return read_mail(self.maildir)

    def mails(self) -> list[EmailMessage]:
        return [m.message for m in read_mail(self.maildir)]

    def calls(self) -> list[CallRecord]:
        with self.store() as store:
            return store.calls(limit=100_000)

    def spooled(self) -> list[Path]:
        return sorted(self.spool.glob("call-*.json"))

    def age_spool(self, seconds: float = 3600) -> None:
        """Make the spool files look ``seconds`` old, as if retry ran that much later."""
        past = time.time() - seconds
        for path in self.spooled():
            os.utime(path, (past, past))

    def write_queue_log(self, lines: Iterable[str]) -> None:
        with open(self.queue_log, "a", encoding="utf-8", errors="surrogateescape") as handle:
            handle.writelines(line + "\n" for line in lines)


P = TypeVar("P", bound="Pbx")


def make_pbx(
    tmp_path: Path,
    db_url: str,
    *,
    recipients: Iterable[tuple[str, str, str]] = DEFAULT_RECIPIENTS,
    maildir: Path | None = None,
    kind: type[P] = Pbx,  # type: ignore[assignment]
    **config: str,
) -> P:
    """A box of ``kind`` (Pbx or a suite's subclass of it), its tables made and ``recipients`` added."""
    if maildir is None:
        maildir = tmp_path / "mail"
        maildir.mkdir(parents=True, exist_ok=True)
    box = kind(tmp=tmp_path, db_url=db_url, maildir=maildir, queue_log=tmp_path / "queue_log")
    defaults = {
        "MISSEDCALL_DB_URL": db_url,
        "MISSEDCALL_SENDMAIL": str(SENDMAIL_BIN),
        "MISSEDCALL_QUEUE_LOG": str(box.queue_log),
        "MISSEDCALL_FREEPBX_CONF": str(tmp_path / "no-freepbx.conf"),  # not FreePBX unless a test says so
        "MISSEDCALL_FROM": "pbx@example.com",
    }
    box.configure(**{**defaults, **config})
    with box.store() as store:
        store.init()
        for queue, email, name in recipients:
            store.add_recipient(queue, email, name)
    return box


def abandon_lines(callid: str, queue: str, *, at: int, wait: int = 12, caller: str = "5551234") -> list[str]:
    """queue_log lines of one call that entered ``queue`` at ``at`` and hung up ``wait`` s later."""
    return [
        f"{at}|{callid}|{queue}|NONE|ENTERQUEUE||{caller}|1",
        f"{at + wait}|{callid}|{queue}|NONE|ABANDON|1|1|{wait}",
    ]


def abandon_peer(callid: str, queue: str = "600", *, caller: str = "5551234", name: str = "Caller") -> AgiPeer:
    """An ``h``-extension session of an abandoned call (dead channel, ABANDONED=TRUE)."""
    headers = make_headers(uniqueid=callid, callerid=caller, calleridname=name, args=[queue])
    return AgiPeer(headers, {"ABANDONED": "TRUE", "QUEUEPOSITION": "1", "CHANNEL(linkedid)": callid})


def callids_mailed(mails: Iterable[StoredMail]) -> list[str]:
    """The call each single mail is about (X-Missedcall-Callid), one entry per mail."""
    return [str(m.message["X-Missedcall-Callid"]) for m in mails if m.message["X-Missedcall-Callid"]]
