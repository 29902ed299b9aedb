"""The test infrastructure tested: the sendmail stand-in, the SMTP server, the MariaDB
fixtures and the environment helpers must be real and right, or every test built on
them proves nothing. (The AGI peer has tests/test_agipeer.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Callable

import pymysql
import pytest
from dotenv import dotenv_values

from tests.agipeer import (
    AgiPeer,
    make_headers,
)
from tests.mailbox import read_envelopes, read_mail, read_messages
from tests.paths import SENDMAIL_BIN
from tests.support.env import AgiEnvironment, write_env_file
from tests.support.mariadb import MariaDBDatabase, MariaDBServer, mariadb_leftovers, temporary_mariadb
from tests.support.smtp import SmtpServer

# ============================================================================ AGI environment


def test_agi_env_runs_a_script_with_the_hermetic_config(tmp_path: Path, agi_env: Callable[..., AgiEnvironment]) -> None:
    setup = agi_env(MISSEDCALL_LANGUAGE="ru", MISSEDCALL_FREEPBX_CONF=None, extra_env={"EXTRA": "1"})
    script = tmp_path / "env.py"
    script.write_text("import json, os, sys\njson.dump(dict(os.environ), open(sys.argv[1], 'w'))\n")
    out = tmp_path / "env.json"
    result = AgiPeer(make_headers(uniqueid="1.1"), {}).run([sys.executable, str(script), str(out)], env=setup.env)
    assert result.ok, result.stderr
    seen = json.loads(out.read_text())
    assert seen["MISSEDCALL_CONFIG"] == str(setup.config_file)
    assert seen["HOME"] == str(setup.home) and seen["EXTRA"] == "1"
    assert seen["AST_AGI_DIR"] == "/usr/share/asterisk/agi-bin"  # as Asterisk sets it
    assert "LANG" not in seen
    values = dotenv_values(setup.config_file)
    assert values["MISSEDCALL_LANGUAGE"] == "ru"
    assert values["MISSEDCALL_SENDMAIL"] == str(SENDMAIL_BIN)
    assert "MISSEDCALL_FREEPBX_CONF" not in values
    assert values["MISSEDCALL_DB_URL"].startswith("sqlite:////")


# ============================================================================ sendmail


def sample_message(to: str = "Sales Team <sales@example.com>") -> bytes:
    message = EmailMessage()
    message["From"] = "Asterisk <asterisk@pbx.example.com>"
    message["To"] = to
    message["Cc"] = "boss@example.com"
    message["Subject"] = "Пропущенный звонок 600"
    message.set_content("Caller 5551234 waited 12 s.\n.\nStill here after a lone dot.\n")
    return bytes(message)


def run_sendmail(args: list[str], data: bytes, env: dict[str, str], timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run([str(SENDMAIL_BIN), *args], input=data, env=env, capture_output=True, timeout=timeout)


def test_sendmail_stand_in_stores_message_and_envelope(maildir: Path, sendmail_bin: Path) -> None:
    assert os.environ["MISSEDCALL_SENDMAIL"] == str(sendmail_bin)
    assert os.environ["MISSEDCALL_TEST_MAILDIR"] == str(maildir)
    done = run_sendmail(["-t", "-oi", "-f", "bounce@pbx.example.com", "-F", "Asterisk PBX"], sample_message(),
                        dict(os.environ))  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = run_sendmail(["-i", "--", "a@example.com", "b@example.com"], sample_message("x@example.com"),
                        dict(os.environ))  # fmt: skip
    assert done.returncode == 0, done.stderr

    messages = read_messages(maildir)
    envelopes = read_envelopes(maildir)
    assert len(messages) == len(envelopes) == 2
    assert str(messages[0]["Subject"]) == "Пропущенный звонок 600"
    assert "Still here after a lone dot." in messages[0].get_content()
    assert envelopes[0]["sender"] == "bounce@pbx.example.com"
    assert envelopes[0]["full_name"] == "Asterisk PBX"
    assert envelopes[0]["recipients"] == ["sales@example.com", "boss@example.com"]
    assert envelopes[1]["recipients"] == ["a@example.com", "b@example.com"]
    assert envelopes[1]["argv"][1:] == ["-i", "--", "a@example.com", "b@example.com"]
    assert [m.path.name for m in read_mail(maildir)] == sorted(p.name for p in maildir.glob("*.eml"))
    assert not list(maildir.glob(".*")), "no temporary files left behind"


def test_sendmail_without_i_ends_the_message_at_a_lone_dot(maildir: Path) -> None:
    done = run_sendmail(["x@example.com"], sample_message(), dict(os.environ))
    assert done.returncode == 0
    (message,) = read_messages(maildir)
    assert "Still here" not in message.get_content()


def test_sendmail_fault_knobs(maildir: Path) -> None:
    env = dict(os.environ, FAKE_SENDMAIL_EXIT="75")
    done = run_sendmail(["-t", "-i"], sample_message(), env)
    assert done.returncode == 75 and b"FAKE_SENDMAIL_EXIT" in done.stderr

    env = dict(os.environ, FAKE_SENDMAIL_SLEEP="5")
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_sendmail(["-t", "-i"], sample_message(), env, timeout=0.5)
    assert time.monotonic() - started < 3
    assert read_messages(maildir) == []


def test_sendmail_refuses_like_sendmail(maildir: Path) -> None:
    env = dict(os.environ)
    assert run_sendmail(["-i"], sample_message(), env).returncode == 64  # no recipients
    assert run_sendmail(["-Q", "x@example.com"], sample_message(), env).returncode == 64
    env.pop("MISSEDCALL_TEST_MAILDIR")
    assert run_sendmail(["-t", "-i"], sample_message(), env).returncode == 75
    assert read_messages(maildir) == []


# ============================================================================ SMTP


def send_with_smtplib(server: SmtpServer, *, login: bool = True) -> None:
    message = EmailMessage()
    message["From"] = "asterisk@pbx.example.com"
    message["To"] = "sales@example.com"
    message["Subject"] = f"missed call ({server.mode})"
    message.set_content("Иван Петров called.")
    context = server.client_context()
    if server.security == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(server.host, server.port, timeout=5, context=context)
    else:
        client = smtplib.SMTP(server.host, server.port, timeout=5)
    with client:
        client.ehlo()
        if server.security == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if server.auth and login:
            client.login(server.user, server.password)
        client.send_message(message, to_addrs=["sales@example.com", "boss@example.com"])


@pytest.mark.parametrize("smtp_server", ["plain", "starttls", "ssl", "auth", "starttls+auth", "ssl+auth"],
                         indirect=True)  # fmt: skip
def test_smtp_server_receives_in_every_mode(smtp_server: SmtpServer) -> None:
    send_with_smtplib(smtp_server)
    (mail,) = smtp_server.wait_for(1)
    assert mail.mail_from == "asterisk@pbx.example.com"
    assert mail.rcpt_tos == ["sales@example.com", "boss@example.com"]
    assert str(mail.message["Subject"]) == f"missed call ({smtp_server.mode})"
    assert mail.message.get_content().strip() == "Иван Петров called."
    assert mail.tls == (smtp_server.security != "none")
    assert mail.login == (smtp_server.user if smtp_server.auth else None)
    assert smtp_server.config()["MISSEDCALL_SMTP_PORT"] == str(smtp_server.port)


@pytest.mark.parametrize("smtp_server", ["auth"], indirect=True)
def test_smtp_auth_is_enforced(smtp_server: SmtpServer) -> None:
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send_with_smtplib(smtp_server, login=False)
    assert refused.value.smtp_code == 530
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client, pytest.raises(
        smtplib.SMTPAuthenticationError
    ):
        client.login(smtp_server.user, "wrong")
    assert smtp_server.messages == []


@pytest.mark.parametrize("smtp_server", ["starttls"], indirect=True)
def test_smtp_starttls_is_required_and_verifiable(smtp_server: SmtpServer) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nx\r\n")
    # The test certificate is not trusted by default: verification must fail...
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client, pytest.raises(ssl.SSLError):
        client.starttls(context=ssl.create_default_context())
    # ...and succeed for a child process given client_env().
    code = "import smtplib,ssl,sys; s=smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=5); " \
           "s.starttls(context=ssl.create_default_context()); s.quit()"  # fmt: skip
    env = {**os.environ, **smtp_server.client_env()}
    done = subprocess.run([sys.executable, "-c", code, smtp_server.host, str(smtp_server.port)], env=env,
                          capture_output=True, timeout=20)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_smtp_server_can_refuse_data(smtp_server: SmtpServer) -> None:
    smtp_server.reply = "451 4.3.0 Try again later"
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_with_smtplib(smtp_server)
    assert refused.value.smtp_code == 451
    assert smtp_server.messages == []


def test_silent_server_makes_clients_wait_until_their_timeout(silent_tcp_server: tuple[str, int]) -> None:
    host, port = silent_tcp_server
    started = time.monotonic()
    with pytest.raises((socket.timeout, smtplib.SMTPServerDisconnected)):
        smtplib.SMTP(host, port, timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 3


# ============================================================================ databases


def test_temporary_mariadb_creates_and_drops_db_and_user(mariadb_server: MariaDBServer) -> None:
    with temporary_mariadb(mariadb_server) as db:
        assert re.fullmatch(r"mc_test_[0-9a-f]{10}", db.name)
        with db.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20)) CHARACTER SET utf8mb4")
            cur.execute("INSERT INTO t VALUES (1, %s)", ("Иван",))
            cur.execute("SELECT name FROM t")
            assert cur.fetchall() == (("Иван",),)
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone() == (f"{db.user}@127.0.0.1",)
            with pytest.raises(pymysql.err.OperationalError):
                cur.execute("CREATE DATABASE mc_test_not_mine")  # granted on its own db only
        with mariadb_server.root() as conn, conn.cursor() as cur:
            cur.execute("SELECT Host FROM mysql.user WHERE User = %s ORDER BY Host", (db.user,))
            assert cur.fetchall() == (("127.0.0.1",), ("localhost",))
            cur.execute("SHOW GRANTS FOR %s@'localhost'", (db.user,))
            grants = " ".join(row[0] for row in cur.fetchall())
            assert f"GRANT ALL PRIVILEGES ON `{db.name}`.*" in grants and "IDENTIFIED BY PASSWORD" in grants
        stray = db.connect()  # a leaked connection must not block the drop
        stray.cursor().execute("SELECT 1")
        assert len(mariadb_leftovers(mariadb_server, db.name, db.user)) == 3
    assert mariadb_leftovers(mariadb_server, db.name, db.user) == []
    with contextlib.suppress(pymysql.err.MySQLError, OSError):
        stray.close()


def test_mariadb_url_fixture(mariadb_url: str, mariadb_database: MariaDBDatabase) -> None:
    match = re.fullmatch(r"mysql://(mc_user_[0-9a-f]+):([0-9a-f]+)@127\.0\.0\.1:3306/(mc_test_[0-9a-f]+)", mariadb_url)
    assert match and match.groups() == (mariadb_database.user, mariadb_database.password, mariadb_database.name)
    with pymysql.connect(host="127.0.0.1", port=3306, user=match[1], password=match[2], database=match[3],
                         connect_timeout=5) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == (match[3],)


def test_freepbx_database_has_queues_config(freepbx_database: MariaDBDatabase, freepbx_conf: Path) -> None:
    with freepbx_database.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'queues_config' AND COLUMN_NAME IN ('extension', 'descr') "
            "ORDER BY COLUMN_NAME",
            (freepbx_database.name,),
        )
        assert cur.fetchall() == (("descr", "varchar(35)", ""), ("extension", "varchar(20)", "PRI"))
        cur.execute("SELECT extension, descr FROM queues_config ORDER BY extension")
        assert cur.fetchall()[:2] == (("600", "Sales"), ("601", "Sales overflow"))
    text = freepbx_conf.read_text()
    assert f"$amp_conf['AMPDBNAME'] = '{freepbx_database.name}';" in text
    assert f"$amp_conf['AMPDBPASS'] = '{freepbx_database.password}';" in text
    assert freepbx_conf.stat().st_mode & 0o777 == 0o640


def test_sqlite_url(sqlite_url: str, tmp_path: Path) -> None:
    assert sqlite_url == f"sqlite:////{str(tmp_path).lstrip('/')}/missedcall.sqlite3"


def test_db_url_covers_both_backends(db_url: str, request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["db_url"]
    assert db_url.startswith({"mariadb": "mysql://", "sqlite": "sqlite:////"}[kind])


# ============================================================================ env files


def test_write_env_file_round_trips_hostile_values(tmp_path: Path) -> None:
    nasty = {
        "MISSEDCALL_SMTP_PASSWORD": "p@ss w'o\"rd ${HOME} #not-a-comment \\n",
        "MISSEDCALL_FROM": "Телефония <pbx@example.com>",
        "MULTI": "line1\nline2",
        "EMPTY": "",
    }
    path = write_env_file(tmp_path, **nasty)
    assert path == tmp_path / "missedcall.env"
    assert path.stat().st_mode & 0o777 == 0o640
    # python-dotenv expands ${...} in any quoting; missedcall.config reads with interpolate=False.
    assert dotenv_values(path, interpolate=False) == nasty
    with pytest.raises(ValueError):
        write_env_file(tmp_path, **{"BAD KEY": "x"})
