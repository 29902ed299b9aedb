"""A malformed MISSEDCALL_DB_URL never shows its password (issue 9, class 6).

A missing slash used to slide ``user:password@host`` into the database name, which every message
then quoted; a bracketed host that does not parse raised in every verb. Each URL below is refused
with one line that quotes it redacted, and the password is in no output, no syslog line, no
VERBOSE line of the AGI and no spool file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from missedcall.dburl import DbUrlError, parse_db_url, redact_url
from tests.agibox import Pbx, abandon_peer, make_pbx

TAP = Path(__file__).resolve().parent / "syslogtap"
SECRET = "Zx9-Пароль-q7"
FORMS = "(expected mysql://user[:pass]@host[:port]/db[?unix_socket=/path | ?ssl_ca=/path] or sqlite:////abs/path)"

#: (URL, the exact message it gets)
MALFORMED = [
    (f"mysql:/bob:{SECRET}@db.example.com/asterisk", "'mysql:/***@db.example.com/asterisk' must start with mysql://"),
    (f"mysql:bob:{SECRET}@db.example.com/asterisk", "'mysql:***@db.example.com/asterisk' must start with mysql://"),
    (f"mysql://bob:{SECRET}@[::1/asterisk", "'mysql://***@[::1/asterisk' has a bracketed host that does not parse"),
    (f"mysql://bob:{SECRET}@[db]:3306/asterisk", "'mysql://***@[db]:3306/asterisk' has a bracketed host that is not"),
    (f"mysql://bob:{SECRET}@db:33o6/asterisk", "'mysql://***@db:33o6/asterisk' has an invalid port"),
    (f"mysql://bob:{SECRET}@db/asterisk/extra", "'mysql://***@db/asterisk/extra' names no database"),
    (f"mysql://bob:{SECRET}@db/asterisk?ssl=1", "'mysql://***@db/asterisk?ssl=1' takes only ?unix_socket="),
    (f"bob:{SECRET}@db/asterisk", "'bob:***@db/asterisk' must start with mysql://"),
    (f"mysql://bob:a/{SECRET}@db/asterisk", "'mysql://***@db/asterisk' has no user@host/ part"),
    (f"mysql://bob:{SECRET}@db/asterisk?ssl_ca=ca.pem", "'mysql://***@db/asterisk?ssl_ca=ca.pem' takes only"),
    (f"mysql://bob:{SECRET}@db/a?ssl_ca=/a&ssl_ca=/b", "'mysql://***@db/a?ssl_ca=/a&ssl_ca=/b' takes only"),
    (f"mysql://bob:{SECRET}@localhost/a?unix_socket=/s&ssl_ca=/c", "'mysql://***@localhost/a?unix_socket=/s&ssl_ca=/c'"
     " asks for TLS over a Unix socket"),
]
VERBS = [["log"], ["queues"], ["recipients", "list"], ["recipients", "export"], ["test", "600", "--dry-run"], ["retry"]]


@pytest.mark.parametrize(("url", "said"), MALFORMED)
def test_parse_refuses_and_redacts(url: str, said: str) -> None:
    with pytest.raises(DbUrlError) as caught:
        parse_db_url(url)
    text = str(caught.value)
    assert text.startswith(f"MISSEDCALL_DB_URL {said}") and text.endswith(FORMS)
    assert SECRET not in text and "\n" not in text


def test_ssl_ca_asks_for_tls_over_tcp() -> None:
    target = parse_db_url(f"mysql://bob:{SECRET}@db.example.com:3307/asterisk?ssl_ca=/etc/my%20ca.pem")
    assert (target.host, target.port, target.unix_socket) == ("db.example.com", 3307, "")
    assert target.ssl_ca == "/etc/my ca.pem"
    assert target.describe() == "mysql://bob@db.example.com:3307/asterisk (TLS, CA /etc/my ca.pem)"
    assert SECRET not in repr(target)
    # localhost is the Unix socket to MySQL clients, but TLS is asked of a server over TCP.
    local = parse_db_url(f"mysql://bob:{SECRET}@localhost/asterisk?ssl_ca=/etc/ca.pem")
    assert (local.host, local.unix_socket, local.ssl_ca) == ("localhost", "", "/etc/ca.pem")
    both = parse_db_url(f"mysql://bob:{SECRET}@localhost/asterisk?unix_socket=/run/x.sock")
    assert (both.unix_socket, both.ssl_ca) == ("/run/x.sock", "")


def test_redact_url_leaves_urls_without_userinfo_alone() -> None:
    assert redact_url("sqlite:////var/lib/x.sqlite3") == "sqlite:////var/lib/x.sqlite3"
    assert redact_url(f"mysql://u:{SECRET}@h/db") == "mysql://***@h/db"
    assert redact_url(f"mysql://u:p@ss/{SECRET}@h/db") == "mysql://***@h/db"  # to the last "@"


@pytest.fixture
def box(tmp_path: Path, sqlite_url: str) -> Pbx:
    return make_pbx(tmp_path, sqlite_url)


@pytest.mark.parametrize(("url", "said"), MALFORMED[::2])
def test_no_verb_shows_the_password(box: Pbx, tmp_path: Path, url: str, said: str) -> None:
    log_file = tmp_path / "syslog.txt"
    env = {"PYTHONPATH": str(TAP), "MISSEDCALL_TEST_SYSLOG": str(log_file)}
    box.configure(MISSEDCALL_DB_URL=url)
    line = f"missedcall-admin: error: configuration: MISSEDCALL_DB_URL {said}"
    for argv in VERBS:
        done = box.admin(*argv, **env)
        assert (done.returncode, done.stdout) == (1, ""), (argv, done)
        assert done.stderr.startswith(line) and done.stderr.endswith(f"{FORMS}\n"), (argv, done.stderr)
        assert done.stderr.count("\n") == 1
    done = box.admin("doctor", **env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [config_line] = [x for x in done.stdout.splitlines() if x.startswith("FAIL config: ")]
    assert config_line.startswith(f"FAIL config: MISSEDCALL_DB_URL {said}")
    # The AGI says why on its VERBOSE channel (and syslog), without the password.
    run = box.run(abandon_peer("1796100000.1"), ["600"], **env)
    assert run.returncode == 0
    assert any(f"configuration error: MISSEDCALL_DB_URL {said}" in c for c in run.commands), run.commands
    assert f"configuration error: MISSEDCALL_DB_URL {said}" in log_file.read_text()
    spooled = b"".join(p.read_bytes() for p in box.spool.rglob("*") if p.is_file())
    outputs = [done.stdout, done.stderr, run.stderr, *run.commands, log_file.read_text()]
    assert all(SECRET not in out for out in outputs)
    assert SECRET.encode() not in spooled
