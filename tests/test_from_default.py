"""From, when MISSEDCALL_FROM is empty: FreePBX's own Email "From:" Address, else missedcall@<fqdn>.

On a FreePBX-shaped MariaDB (freepbx.conf, queues_config, freepbx_settings), ``missedcall-admin init``
copies AMPUSERMANEMAILFROM beside the config file; mails then come from it, in the header and the
envelope (the hook reads it through the same ``config.load_settings``). Doctor WARNs on a stale copy and on a
From without a domain.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from missedcall import config
from tests.agibox import abandon_peer, callids_mailed, make_pbx
from tests.mailbox import read_mail
from tests.paths import SENDMAIL_BIN
from tests.support.cli import run_cli
from tests.support.env import write_env_file
from tests.support.freepbx import set_freepbx_setting
from tests.support.mariadb import MariaDBDatabase

FREEPBX_FROM = "pbx-notify@example.com"
#: From without MISSEDCALL_FROM and before init found the FQDN: the kernel's host name, no DNS.
NODE_FROM = f"missedcall@{os.uname().nodename}" if config.is_plain_address(f"missedcall@{os.uname().nodename}") else (
    "missedcall@localhost"
)


@pytest.fixture
def freepbx_box(
    tmp_path: Path, freepbx_database: MariaDBDatabase, freepbx_conf: Path, maildir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A config on FreePBX (no MISSEDCALL_DB_URL: FreePBX's own database), a recipient for 600."""
    (tmp_path / "etc").mkdir()
    path = write_env_file(
        tmp_path / "etc",
        MISSEDCALL_FREEPBX_CONF=str(freepbx_conf),
        MISSEDCALL_SENDMAIL=str(SENDMAIL_BIN),
        MISSEDCALL_SPOOL_DIR=str(tmp_path),
        MISSEDCALL_QUEUE_LOG=str(tmp_path / "queue_log"),
    )
    monkeypatch.setenv("MISSEDCALL_CONFIG", str(path))
    for key in [k for k in os.environ if k in config.KEYS]:
        monkeypatch.delenv(key)
    return path


def admin(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run_cli(list(argv), capsys)


def test_init_copies_freepbx_from_and_every_mail_uses_it(
    freepbx_box: Path, freepbx_database: MariaDBDatabase, maildir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_freepbx_setting(freepbx_database, "AMPUSERMANEMAILFROM", FREEPBX_FROM)
    code, out, err = admin(capsys, "init")
    assert code == 0, err
    assert f"From: {FREEPBX_FROM} (FreePBX's" in out
    assert (freepbx_box.parent / "freepbx-from").read_text() == FREEPBX_FROM + "\n"
    assert config.load_settings(strict=True).mail_from == FREEPBX_FROM
    assert admin(capsys, "recipients", "add", "600", "ops@example.com")[0] == 0
    code, out, err = admin(capsys, "test", "600")
    assert code == 0, err
    [mail] = read_mail(maildir)
    assert mail.sender == FREEPBX_FROM and mail.message["From"] == FREEPBX_FROM
    code, out, _ = admin(capsys, "doctor")
    assert f"OK   from: mails come from {FREEPBX_FROM} (FreePBX's" in out


def test_a_changed_freepbx_from_is_named_by_doctor_until_init(
    freepbx_box: Path, freepbx_database: MariaDBDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    set_freepbx_setting(freepbx_database, "AMPUSERMANEMAILFROM", FREEPBX_FROM)
    assert admin(capsys, "init")[0] == 0
    set_freepbx_setting(freepbx_database, "AMPUSERMANEMAILFROM", "new-notify@example.com")
    _, out, _ = admin(capsys, "doctor")
    [line] = [x for x in out.splitlines() if " from: " in x]
    assert line.startswith("WARN from: mails come from pbx-notify@example.com, but FreePBX's")
    assert line.endswith("-> fix: missedcall-admin init (it copies FreePBX's address)")
    assert admin(capsys, "init")[0] == 0
    assert config.load_settings().mail_from == "new-notify@example.com"


@pytest.mark.parametrize(
    "value",
    ["", None, "Name <a@example.com>", "a@example.com\r\nBcc: evil@example.com", "a@example.com, b@example.com",
     "=?utf-8?q?x?=@example.com", "x" * 65 + "@example.com"],
)
def test_no_usable_freepbx_from_falls_back_to_the_host(
    freepbx_box: Path, freepbx_database: MariaDBDatabase, capsys: pytest.CaptureFixture[str], value: str | None
) -> None:
    set_freepbx_setting(freepbx_database, "AMPUSERMANEMAILFROM", FREEPBX_FROM)
    assert admin(capsys, "init")[0] == 0  # a copy from before, which must not outlive the setting
    set_freepbx_setting(freepbx_database, "AMPUSERMANEMAILFROM", value)
    code, out, err = admin(capsys, "init")
    assert code == 0, err
    assert not (freepbx_box.parent / "freepbx-from").exists()
    assert config.load_settings().mail_from == config.host_from()
    [line] = [x for x in out.splitlines() if x.startswith("From: ")]
    assert "\r" not in line and "evil" not in line.split("(")[0]


def test_freepbx_without_the_settings_table(freepbx_box: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = admin(capsys, "init")
    assert code == 0, err
    assert f"From: {config.host_from()} (FreePBX has no Email" in out
    assert not (freepbx_box.parent / "freepbx-from").exists()


def test_plain_asterisk_ignores_a_freepbx_copy_and_uses_missedcall_at_the_fqdn_init_found(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "freepbx-from").write_text(FREEPBX_FROM + "\n")  # left over from a FreePBX past
    path = write_env_file(tmp_path, MISSEDCALL_DB_URL=sqlite_url, MISSEDCALL_FREEPBX_CONF=str(tmp_path / "none"))
    settings = config.load_settings({"MISSEDCALL_CONFIG": str(path)})
    assert not settings.is_freepbx and settings.mail_from == NODE_FROM  # before init: no DNS, the kernel's name
    monkeypatch.setenv("MISSEDCALL_CONFIG", str(path))
    code, out, err = admin(capsys, "init")
    assert code == 0, err
    expected = f"missedcall@{socket.getfqdn()}"
    expected = expected if config.is_plain_address(expected) else "missedcall@localhost"
    assert f"From: {expected} (this host's name" in out
    assert (tmp_path / "host-from").read_text() == expected + "\n"
    assert stat.S_IMODE((tmp_path / "host-from").stat().st_mode) == 0o644
    assert config.load_settings({"MISSEDCALL_CONFIG": str(path)}).mail_from == expected


def test_init_keeps_no_host_copy_when_missedcall_from_is_set(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_env_file(tmp_path, MISSEDCALL_DB_URL=sqlite_url, MISSEDCALL_FROM="pbx@example.com",
                          MISSEDCALL_FREEPBX_CONF=str(tmp_path / "none"))  # fmt: skip
    monkeypatch.setenv("MISSEDCALL_CONFIG", str(path))
    code, out, err = admin(capsys, "init")
    assert code == 0 and "From:" not in out, err
    assert not (tmp_path / "host-from").exists()


@pytest.mark.parametrize(
    ("sender", "status"),
    [("asterisk@localhost", "WARN"), ("asterisk@pbx", "WARN"), ("pbx@example.com", "OK")],
)
def test_doctor_warns_about_a_from_without_a_domain(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    sender: str, status: str,
) -> None:
    path = write_env_file(
        tmp_path, MISSEDCALL_DB_URL=sqlite_url, MISSEDCALL_FROM=sender, MISSEDCALL_FREEPBX_CONF=str(tmp_path / "no")
    )
    monkeypatch.setenv("MISSEDCALL_CONFIG", str(path))
    _, out, _ = admin(capsys, "doctor", "--json")

    [check] = [c for c in json.loads(out) if c["check"] == "from"]
    assert check["status"] == status and sender in check["detail"] and "(MISSEDCALL_FROM)" in check["detail"]
    if status == "WARN":
        assert check["fix"] == f"set MISSEDCALL_FROM=pbx@your-domain in {path}"


def test_the_hook_mails_from_the_copy_even_with_the_database_down(
    tmp_path: Path, freepbx_database: MariaDBDatabase, freepbx_conf: Path
) -> None:
    """A real hang-up through agi-bin/missed.py: From is FreePBX's address, also when the database is down
    (the reason it is copied to a file rather than looked up per call)."""
    set_freepbx_setting(freepbx_database, "AMPUSERMANEMAILFROM", FREEPBX_FROM)
    box = make_pbx(tmp_path / "box", freepbx_database.url)
    box.configure(MISSEDCALL_FROM=None, MISSEDCALL_FREEPBX_CONF=str(freepbx_conf))
    init = box.admin("init")
    assert init.returncode == 0 and f"From: {FREEPBX_FROM}" in init.stdout, init.stderr
    assert box.run(abandon_peer("1796200000.1"), ["600"]).ok
    box.configure(MISSEDCALL_DB_URL="mysql://nobody:x@127.0.0.1:1/asterisk")  # refused: mailed, then spooled
    assert box.run(abandon_peer("1796200000.2"), ["600"]).ok
    assert [path.name for path in box.spooled()] == ["call-1796200000.2.json"]  # the database-down path
    mails = box.stored()
    assert sorted(callids_mailed(mails)) == ["1796200000.1", "1796200000.2"]
    assert {(m.sender, str(m.message["From"])) for m in mails} == {(FREEPBX_FROM, FREEPBX_FROM)}


@pytest.mark.parametrize(
    "content", [b"a@example.com\r\nBcc: evil@example.com\n", b"\xff\xfe@example.com", b"x" * 10_000, b""]
)
def test_a_hostile_copy_is_not_used(tmp_path: Path, freepbx_conf: Path, content: bytes) -> None:
    path = write_env_file(tmp_path, MISSEDCALL_FREEPBX_CONF=str(freepbx_conf))
    (tmp_path / "freepbx-from").write_bytes(content)
    (tmp_path / "host-from").write_bytes(content)
    settings = config.load_settings({"MISSEDCALL_CONFIG": str(path)})
    assert settings.is_freepbx and settings.mail_from == NODE_FROM


def test_a_fifo_at_the_copy_neither_blocks_nor_counts(tmp_path: Path, freepbx_conf: Path) -> None:
    path = write_env_file(tmp_path, MISSEDCALL_FREEPBX_CONF=str(freepbx_conf))
    os.mkfifo(tmp_path / "freepbx-from")  # a reader of a FIFO without a writer would wait for ever
    os.mkfifo(tmp_path / "host-from")
    assert config.load_settings({"MISSEDCALL_CONFIG": str(path)}).mail_from == NODE_FROM
