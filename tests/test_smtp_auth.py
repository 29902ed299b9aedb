"""SMTP credentials that are not ASCII (issue 9, class 2): a Cyrillic user or password logs in as UTF-8.

Against the real aiosmtpd relay of tests/conftest.py in its AUTH mode, with a Cyrillic login:
``missedcall-admin test`` sends, ``doctor`` says OK, and a real hang-up is mailed. A wrong
Cyrillic password is one line without the password in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agibox import Pbx, abandon_peer, make_pbx
from tests.support.cli import run_cli
from tests.support.smtp import SmtpServer

USER = "оператор"
PASSWORD = "пароль с пробелом"


@pytest.fixture
def relay(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.user, smtp_server.password = USER, PASSWORD
    return smtp_server


def _box(tmp_path: Path, sqlite_url: str, relay: SmtpServer, **extra: str) -> Pbx:
    return make_pbx(tmp_path, sqlite_url, **{**relay.config(), **extra})


@pytest.mark.parametrize("smtp_server", ["auth"], indirect=True)
def test_admin_test_logs_in_with_a_cyrillic_user_and_password(
    tmp_path: Path,
    sqlite_url: str,
    relay: SmtpServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _box(tmp_path, sqlite_url, relay).in_this_process(monkeypatch)
    code, out, err = run_cli(["test", "601"], capsys)
    assert (code, err) == (0, "")
    assert out == "test notification for queue 601 sent to ops601@example.com, boss@example.com via smtp\n"
    [mail] = relay.wait_for(1)
    assert mail.login == USER and mail.rcpt_tos == ["ops601@example.com", "boss@example.com"]


@pytest.mark.parametrize("smtp_server", ["auth"], indirect=True)
def test_doctor_logs_in_with_a_cyrillic_user_and_password(
    tmp_path: Path,
    sqlite_url: str,
    relay: SmtpServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _box(tmp_path, sqlite_url, relay).in_this_process(monkeypatch)
    _code, out, err = run_cli(["doctor", "--state", str(tmp_path / "no.state")], capsys)
    assert "Traceback" not in out + err
    [line] = [x for x in out.splitlines() if " mail: " in x]
    assert line == f"OK   mail: SMTP relay {relay.host}:{relay.port} (none) reachable, logged in as {USER}"


@pytest.mark.parametrize("smtp_server", ["auth"], indirect=True)
def test_a_hang_up_is_mailed_through_a_cyrillic_login(tmp_path: Path, sqlite_url: str, relay: SmtpServer) -> None:
    box = _box(tmp_path, sqlite_url, relay)
    run = box.run(abandon_peer("1795800700.1", "600"), ["600"])
    assert run.returncode == 0
    [mail] = relay.wait_for(1)
    assert mail.login == USER and "ops600@example.com" in mail.rcpt_tos
    [call] = box.calls()
    assert call.status == "sent" and call.attempts == 1


@pytest.mark.parametrize("smtp_server", ["auth"], indirect=True)
@pytest.mark.parametrize("wrong", ["неверный", "wrong-ascii", "ключ🙂"])
def test_a_refused_cyrillic_login_is_one_line_without_the_password(
    tmp_path: Path,
    sqlite_url: str,
    relay: SmtpServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    wrong: str,
) -> None:
    _box(tmp_path, sqlite_url, relay, MISSEDCALL_SMTP_PASSWORD=wrong).in_this_process(monkeypatch)
    code, out, err = run_cli(["test", "601"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"missedcall-admin: error: mail not sent: SMTP {relay.host}:{relay.port} answered 535 ")
    assert err.count("\n") == 1 and wrong not in err and "Traceback" not in err
    _code, out, err = run_cli(["doctor", "--state", str(tmp_path / "no.state")], capsys)
    [line] = [x for x in out.splitlines() if " mail: " in x]
    assert line == (
        f"FAIL mail: SMTP relay {relay.host}:{relay.port} (none) refused the login of {USER}"
        " -> fix: check MISSEDCALL_SMTP_USER/_PASSWORD"
    )
    assert relay.messages == []


class _NoPlainOrLogin:
    """A relay whose AUTH offers neither PLAIN nor LOGIN (aiosmtpd with both excluded)."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


def test_a_relay_without_plain_or_login_is_one_clear_line(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        _NoPlainOrLogin(),
        hostname="127.0.0.1",
        port=port,
        auth_require_tls=False,
        auth_exclude_mechanism=["PLAIN", "LOGIN"],
        authenticator=lambda *args: None,
        ready_timeout=10,
    )
    controller.start()
    try:
        settings = {
            "MISSEDCALL_TRANSPORT": "smtp",
            "MISSEDCALL_SMTP_HOST": "127.0.0.1",
            "MISSEDCALL_SMTP_PORT": str(port),
            "MISSEDCALL_SMTP_USER": USER,
            "MISSEDCALL_SMTP_PASSWORD": PASSWORD,
        }
        make_pbx(tmp_path, sqlite_url, **settings).in_this_process(monkeypatch)
        code, out, err = run_cli(["test", "601"], capsys)
    finally:
        controller.stop()
    assert (code, out) == (1, "")
    assert err == (
        f"missedcall-admin: error: mail not sent: SMTP 127.0.0.1:{port}: SMTPNotSupportedError:"
        " the relay offers no AUTH PLAIN or LOGIN, which a user or password that is not ASCII needs\n"
    )
