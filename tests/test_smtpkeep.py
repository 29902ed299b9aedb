"""The FastAGI service's mail threads keep their SMTP connection between mails (missedcall.deliver.smtpkeep).

Against the real aiosmtpd relay on loopback, through transport.send_smtp as the notifier calls it: how
many connections the mails came over (the client's port of each), that every mail arrives once, and
that a connection the relay dropped, a changed setting or a failed mail never costs a mail. The process
hook's one mail per process is the default: a connection per mail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from missedcall import config
from missedcall.deliver import mime, smtpkeep, transport
from tests.support.smtp import SmtpServer


@pytest.fixture
def keeping() -> Iterator[None]:
    transport.keep_smtp_connections()
    yield
    smtpkeep.forget()
    transport.keep_smtp_connections(False)


def _settings(server: SmtpServer, **extra: str) -> config.Settings:
    trust = {"MISSEDCALL_SMTP_CAFILE": str(server.cafile)} if server.security != "none" else {}
    return config.load_settings({"MISSEDCALL_CONFIG": "/nonexistent", **server.config(), **trust, **extra})


def _send(settings: config.Settings, number: int) -> None:
    msg = mime.Draft()
    msg["Subject"] = f"missed call {number}"
    msg["To"] = "ops@example.com"
    msg.set_content(f"Пропущенный звонок {number}\n")
    transport.send_smtp(msg, ["ops@example.com"], settings, timeout=5)


def _subjects(server: SmtpServer) -> list[str]:
    return sorted(str(m.message["Subject"]) for m in server.messages)


def _connections(server: SmtpServer) -> int:
    return len({m.peer for m in server.messages})


@pytest.mark.usefixtures("keeping")
@pytest.mark.parametrize("smtp_server", ["plain", "starttls+auth", "ssl+auth"], indirect=True)
def test_one_connection_carries_up_to_twenty_mails(smtp_server: SmtpServer) -> None:
    settings = _settings(smtp_server)
    for number in range(25):
        _send(settings, number)
    smtp_server.wait_for(25)
    assert _subjects(smtp_server) == sorted(f"missed call {n}" for n in range(25))
    assert _connections(smtp_server) == 2  # 20, then a new connection for the last 5
    if smtp_server.security != "none":
        assert all(m.tls and m.login == smtp_server.user for m in smtp_server.messages)


def test_the_process_hook_opens_a_connection_per_mail(smtp_server: SmtpServer) -> None:
    settings = _settings(smtp_server)
    for number in range(3):
        _send(settings, number)
    smtp_server.wait_for(3)
    assert _connections(smtp_server) == 3


@pytest.mark.usefixtures("keeping")
def test_a_connection_the_relay_dropped_costs_no_mail(tls_certificate: tuple) -> None:  # type: ignore[type-arg]
    server = SmtpServer("plain", tls_certificate)
    server.idle_timeout = 0.3  # the relay hangs up on a client quiet for 0.3 s
    server.start()
    try:
        settings = _settings(server)
        _send(settings, 1)
        time.sleep(1.0)  # the kept connection is closed by the relay meanwhile; the NOOP finds out
        _send(settings, 2)
        server.wait_for(2)
        assert _subjects(server) == ["missed call 1", "missed call 2"]
        assert _connections(server) == 2
    finally:
        server.stop()


@pytest.mark.usefixtures("keeping")
def test_a_connection_unused_for_a_while_is_not_reused(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smtpkeep, "IDLE", 0.2)
    settings = _settings(smtp_server)
    _send(settings, 1)
    time.sleep(0.4)
    _send(settings, 2)
    smtp_server.wait_for(2)
    assert _connections(smtp_server) == 2


@pytest.mark.usefixtures("keeping")
@pytest.mark.parametrize("smtp_server", ["auth"], indirect=True)
def test_changed_settings_get_a_new_connection(smtp_server: SmtpServer) -> None:
    _send(_settings(smtp_server), 1)
    _send(_settings(smtp_server, MISSEDCALL_FROM="other@example.com"), 2)  # the same relay and login: kept
    _send(_settings(smtp_server, MISSEDCALL_SMTP_TIMEOUT="7"), 3)
    # Another password (a SIGHUP after the admin changed it): a new login, which this relay refuses;
    # over the kept connection the mail would have gone.
    with pytest.raises(transport.TransportError, match="535"):
        _send(_settings(smtp_server, MISSEDCALL_SMTP_PASSWORD="changed"), 4)
    _send(_settings(smtp_server), 5)
    smtp_server.wait_for(4)
    by_subject = {str(m.message["Subject"]): m for m in smtp_server.messages}
    assert sorted(by_subject) == ["missed call 1", "missed call 2", "missed call 3", "missed call 5"]
    assert by_subject["missed call 2"].mail_from == "other@example.com"
    assert by_subject["missed call 1"].peer == by_subject["missed call 2"].peer == by_subject["missed call 3"].peer
    assert by_subject["missed call 5"].peer != by_subject["missed call 1"].peer


@pytest.mark.usefixtures("keeping")
def test_a_refused_mail_is_reported_and_the_next_one_goes_over_a_new_connection(smtp_server: SmtpServer) -> None:
    settings = _settings(smtp_server)
    _send(settings, 1)
    smtp_server.reply = "451 4.3.0 try again later"
    with pytest.raises(transport.TransportError, match="451"):
        _send(settings, 2)
    smtp_server.reply = None
    _send(settings, 3)
    smtp_server.wait_for(2)
    assert _subjects(smtp_server) == ["missed call 1", "missed call 3"]
    assert _connections(smtp_server) == 2  # the one the refusal came over was closed


@pytest.mark.usefixtures("keeping")
def test_each_thread_keeps_its_own_connection(smtp_server: SmtpServer) -> None:
    settings = _settings(smtp_server)
    errors: list[BaseException] = []

    def mail_five(first: int) -> None:
        try:
            for number in range(first, first + 5):
                _send(settings, number)
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            smtpkeep.forget()

    threads = [threading.Thread(target=mail_five, args=(n * 10,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    smtp_server.wait_for(15)
    assert len(smtp_server.messages) == 15
    assert _connections(smtp_server) == 3


@pytest.mark.usefixtures("keeping")
def test_a_switch_to_sendmail_lets_the_kept_connection_go(smtp_server: SmtpServer, tmp_path: Path) -> None:
    _send(_settings(smtp_server), 1)
    smtp_server.wait_for(1)
    program = tmp_path / "sendmail"
    program.write_text("#!/bin/sh\ncat > /dev/null\n")
    program.chmod(0o755)
    msg = mime.Draft()
    msg["Subject"] = "through sendmail"
    msg.set_content("x\n")
    settings = config.load_settings({"MISSEDCALL_CONFIG": "/nonexistent", "MISSEDCALL_SENDMAIL": str(program)})
    transport.send(msg, ["ops@example.com"], settings, timeout=5)  # a reload set MISSEDCALL_TRANSPORT back
    _send(_settings(smtp_server), 2)  # and forth: a new connection, the old one was closed (QUIT)
    smtp_server.wait_for(2)
    assert _connections(smtp_server) == 2


@pytest.mark.usefixtures("keeping")
def test_a_kept_connection_gone_silent_costs_the_noop_bound_not_the_mails_timeout(smtp_server: SmtpServer) -> None:
    settings = _settings(smtp_server, MISSEDCALL_SMTP_TIMEOUT="20")
    _send(settings, 1)
    smtp_server.noop_delay = 30  # the relay stops answering on the kept connection
    started = time.monotonic()
    msg = mime.Draft()
    msg["Subject"] = "missed call 2"
    msg.set_content("x\n")
    transport.send_smtp(msg, ["ops@example.com"], settings, timeout=20)
    took = time.monotonic() - started
    smtp_server.wait_for(2)
    assert _connections(smtp_server) == 2  # given up after smtpkeep.NOOP_TIMEOUT, then a new connection
    assert smtpkeep.NOOP_TIMEOUT <= took < smtpkeep.NOOP_TIMEOUT + 10
