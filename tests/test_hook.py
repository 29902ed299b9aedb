"""agi-bin/missed.py run for real, over pipes, against a scripted Asterisk 22 peer.

Each test replays header blocks and replies recorded from a real Asterisk
(tests/fixtures) or made the way Asterisk makes them, lets the real script
write to a real database and hand its mail to the sendmail stand-in, then
parses the mail back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agibox import Pbx, make_pbx  # shared with the reliability suites
from tests.agipeer import AgiPeer, AgiRun, make_headers
from tests.mailbox import read_mail, text_part
from tests.paths import AGI_FIXTURES, QUEUE_LOG_FIXTURES

ROOT = Path(__file__).resolve().parents[1]
MISSED = ROOT / "agi-bin" / "missed.py"
FREEPBX_LOG = QUEUE_LOG_FIXTURES / "freepbx17-shaped.queue_log"
LAB_LOG = QUEUE_LOG_FIXTURES / "asterisk22-lab.queue_log"
SAFE_ON_DEAD_CHANNEL = ("GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE", "EXEC", "NOOP", "DATABASE")


@pytest.fixture
def pbx(tmp_path: Path, db_url: str) -> Pbx:
    return make_pbx(tmp_path, db_url, MISSEDCALL_TIMEZONE="Europe/Moscow")


def assert_clean_run(run: AgiRun) -> None:
    """Exit 0, nothing but AGI commands on stdout, only dead-channel-safe commands, no stderr."""
    assert run.ok, run
    assert run.stdout_garbage == []
    assert run.stderr == ""
    for command in run.commands:
        assert command.startswith(SAFE_ON_DEAD_CHANNEL), command
    assert run.duration < 3


def fixture_peer(name: str, **kwargs: object) -> AgiPeer:
    return AgiPeer.from_fixture(AGI_FIXTURES / name, **kwargs)  # type: ignore[arg-type]


def test_abandon_mails_queue_rows_and_star_rows(pbx: Pbx) -> None:
    run = pbx.run(fixture_peer("1600-h.json"), ["600"])
    assert_clean_run(run)
    [mail] = read_mail(pbx.maildir)
    assert sorted(mail.recipients) == ["boss@example.com", "ops600@example.com"]
    assert mail.message["To"] == "ops600@example.com, boss@example.com"
    assert mail.message["Subject"] == "Missed: 600 — John Doe 5551234"
    assert mail.message["X-Missedcall-Callid"] == "1795659165.1"
    [call] = pbx.calls()
    assert (call.queue, call.reason, call.source, call.status) == ("600", "ABANDON", "agi", "sent")
    assert call.caller_num == "5551234" and call.caller_name == "John Doe"
    assert call.recipients == ("ops600@example.com", "boss@example.com")
    assert call.callid == mail.message["X-Missedcall-Callid"]
    assert any("missedcall: missed call" in c for c in run.commands)  # reported on the VERBOSE channel


def test_unknown_queue_goes_to_the_fallback(pbx: Pbx) -> None:
    pbx.configure(MISSEDCALL_FALLBACK_TO="fallback@example.com")
    run = pbx.run(fixture_peer("1600-h.json"), ["777"])
    assert_clean_run(run)
    [mail] = read_mail(pbx.maildir)
    assert sorted(mail.recipients) == ["boss@example.com", "fallback@example.com"]


def test_no_recipients_no_fallback_is_recorded_with_a_warning(pbx: Pbx) -> None:
    with pbx.store() as store:
        store.remove_recipient("*", "boss@example.com")
    run = pbx.run(fixture_peer("1600-h.json"), ["777"])
    assert_clean_run(run)
    assert read_mail(pbx.maildir) == []
    [call] = pbx.calls()
    assert call.status == "skipped" and "no recipients" in call.last_error
    assert any("no recipients" in c for c in run.commands if c.startswith("VERBOSE"))


def test_connect_in_queue_log_means_answered_whatever_the_variables(pbx: Pbx) -> None:
    pbx.queue_log.write_text(FREEPBX_LOG.read_text())
    headers = make_headers(uniqueid="1795661276.19", callerid="5551234", calleridname="John", args=["602"])
    peer = AgiPeer(headers, {"ABANDONED": "TRUE", "QUEUESTATUS": "TIMEOUT"})
    run = pbx.run(peer, ["602"])
    assert_clean_run(run)
    assert read_mail(pbx.maildir) == []
    assert pbx.calls() == []


def test_timeout_then_abandon_in_overflow_queue(pbx: Pbx) -> None:
    """600 timed out, the caller gave up in 601: stale QUEUESTATUS=TIMEOUT must not win."""
    pbx.queue_log.write_text(FREEPBX_LOG.read_text())
    headers = make_headers(uniqueid="1795661261.11", callerid="5551234", calleridname="John", args=["601"])
    peer = AgiPeer(headers, {"ABANDONED": "TRUE", "QUEUESTATUS": "TIMEOUT", "QUEUENUM": "601"})
    run = pbx.run(peer, ["601"])
    assert_clean_run(run)
    [mail] = read_mail(pbx.maildir)
    assert sorted(mail.recipients) == ["boss@example.com", "ops601@example.com"]
    body = text_part(mail.message)
    assert "600 > 601" in body and "the caller hung up while waiting" in body
    [call] = pbx.calls()
    assert (call.queue, call.reason, call.path, call.wait_seconds) == ("601", "ABANDON", ("600", "601"), 3)


def test_same_overflow_case_without_queue_log_uses_abandoned(pbx: Pbx) -> None:
    headers = make_headers(uniqueid="1795661261.11", callerid="5551234", calleridname="John", args=["601"])
    peer = AgiPeer(headers, {"ABANDONED": "TRUE", "QUEUESTATUS": "TIMEOUT"})
    assert_clean_run(pbx.run(peer, ["601"]))
    [call] = pbx.calls()
    assert call.reason == "ABANDON" and call.queue == "601"


def test_reason_argument_timeout(pbx: Pbx) -> None:
    peer = fixture_peer("1603-cont.json")
    run = pbx.run(peer, ["600", "TIMEOUT"])
    assert run.returncode == 0 and run.stdout_garbage == [] and run.stderr == ""
    [call] = pbx.calls()
    assert call.reason == "TIMEOUT"
    [mail] = read_mail(pbx.maildir)
    assert "maximum wait time" in text_part(mail.message)


def test_sighup_on_a_live_channel_does_not_kill_the_script(pbx: Pbx) -> None:
    peer = fixture_peer("1603-cont.json", sighup_after_commands=1)
    run = pbx.run(peer, ["600", "TIMEOUT"])
    assert run.sighup_sent and run.returncode == 0
    assert len(read_mail(pbx.maildir)) == 1


def test_same_callid_twice_sends_one_mail(pbx: Pbx) -> None:
    assert_clean_run(pbx.run(fixture_peer("1602-h.json"), ["600"]))
    second = pbx.run(fixture_peer("1602-hh.json"), ["600"])  # the hangup handler, same channel
    assert_clean_run(second)
    assert len(read_mail(pbx.maildir)) == 1
    assert len(pbx.calls()) == 1
    assert any("already recorded" in c for c in second.commands)


@pytest.mark.parametrize(
    ("fixture", "subject_caller", "stored_name"),
    [
        ("2600-h.json", 'Doe, John "JJ" O\'Neil +1 555 123 4567', 'Doe, John "JJ" O\'Neil'),
        ("3600-h.json", "Иван Петров +7 916 123-45-67", "Иван Петров"),
        ("4600-h.json", "Line1 Line2 5550004", "Line1\nLine2"),
        ("5600-h.json", "a,b\\c d 555 12,34", "a,b\\c d"),
        ("0600-h.json", "unknown caller", ""),
    ],
)
def test_recorded_hostile_caller_ids(pbx: Pbx, fixture: str, subject_caller: str, stored_name: str) -> None:
    peer = fixture_peer(fixture)
    run = pbx.run(peer, ["600"])
    assert_clean_run(run)
    [mail] = read_mail(pbx.maildir)
    assert mail.message["Subject"] == f"Missed: 600 — {subject_caller}"
    assert sorted(mail.recipients) == ["boss@example.com", "ops600@example.com"]
    assert mail.message["Bcc"] is None and mail.message["Cc"] is None
    [call] = pbx.calls()
    assert call.caller_name == stored_name


def test_two_line_reply_does_not_desynchronise_the_session(pbx: Pbx) -> None:
    """4600: the name's newline corrupts the header block; every later reply must still match."""
    run = pbx.run(fixture_peer("4600-h.json"), ["600"])
    assert_clean_run(run)
    [call] = pbx.calls()
    assert call.linkedid == "1795659297.82" and call.position == 1


def test_long_and_injected_names(pbx: Pbx) -> None:
    name = "N" * 300
    headers = make_headers(uniqueid="1795660000.1", callerid="100", calleridname=name, args=["600"])
    assert_clean_run(pbx.run(AgiPeer(headers, {"ABANDONED": "TRUE"}), ["600"]))
    headers = make_headers(
        uniqueid="1795660000.2",
        callerid="200",
        calleridname="x\r\nBcc: evil@example.com\n\n200 result=1 (TRUE)",
        args=["600"],
    )
    assert_clean_run(pbx.run(AgiPeer(headers, {"ABANDONED": "TRUE"}), ["600"]))
    mails = read_mail(pbx.maildir)
    assert len(mails) == 2
    for mail in mails:
        assert "evil@example.com" not in mail.recipients and mail.message["Bcc"] is None
        assert len(mail.message["Subject"]) <= 200


def test_min_wait_records_without_mailing(pbx: Pbx) -> None:
    pbx.queue_log.write_text(LAB_LOG.read_text())  # 1795659165.1 abandoned after 3 s
    pbx.configure(MISSEDCALL_MIN_WAIT="10")
    headers = make_headers(uniqueid="1795659165.1", callerid="5551234", calleridname="J", args=["600"])
    assert_clean_run(pbx.run(AgiPeer(headers, {"ABANDONED": "TRUE"}), ["600"]))
    assert read_mail(pbx.maildir) == []
    [call] = pbx.calls()
    assert call.status == "skipped" and "MISSEDCALL_MIN_WAIT" in call.last_error and call.wait_seconds == 3


def test_reasons_filter(pbx: Pbx) -> None:
    pbx.configure(MISSEDCALL_REASONS="TIMEOUT")
    assert_clean_run(pbx.run(fixture_peer("1600-h.json"), ["600"]))
    assert read_mail(pbx.maildir) == []
    assert pbx.calls()[0].status == "skipped"
    assert_clean_run(pbx.run(fixture_peer("1603-h.json"), ["600", "TIMEOUT"]))
    assert len(read_mail(pbx.maildir)) == 1


def test_russian_mail(pbx: Pbx) -> None:
    pbx.configure(MISSEDCALL_LANGUAGE="ru")
    assert_clean_run(pbx.run(fixture_peer("3600-h.json"), ["600"]))
    [mail] = read_mail(pbx.maildir)
    assert mail.message["Subject"] == "Пропущен: 600 — Иван Петров +7 916 123-45-67"
    assert "абонент положил трубку, не дождавшись ответа" in text_part(mail.message)


def test_not_abandoned_and_no_queue_log_is_not_missed(pbx: Pbx) -> None:
    run = pbx.run(fixture_peer("1600-h.json", variables={"ABANDONED": ""}), ["600"])
    assert_clean_run(run)
    assert pbx.calls() == [] and read_mail(pbx.maildir) == []


def test_eof_after_headers_still_records_from_queue_log(pbx: Pbx) -> None:
    pbx.queue_log.write_text(LAB_LOG.read_text())
    headers = make_headers(uniqueid="1795659165.1", callerid="5551234", calleridname="J", args=["600"])
    run = pbx.run(AgiPeer(headers, {"ABANDONED": "TRUE"}, eof_after_headers=True), ["600"])
    assert run.returncode == 0 and run.stderr == "" and run.duration < 3
    assert [c.callid for c in pbx.calls()] == ["1795659165.1"]


def test_silent_asterisk_is_bounded(pbx: Pbx) -> None:
    pbx.queue_log.write_text(LAB_LOG.read_text())
    headers = make_headers(uniqueid="1795659165.1", callerid="5551234", calleridname="J", args=["600"])
    run = pbx.run(AgiPeer(headers, {"ABANDONED": "TRUE"}, no_reply_after=0), ["600"])
    assert run.returncode == 0 and run.duration < 3
    assert [c.callid for c in pbx.calls()] == ["1795659165.1"]
    assert len(read_mail(pbx.maildir)) == 1


@pytest.mark.parametrize(
    ("args", "queue_600"),
    [([], False), (["600", "NAPTIME"], True), (["60\n0;rm -rf /", "ABANDON"], False), (["x" * 5000], False)],
)
def test_odd_arguments_never_break_the_script(pbx: Pbx, args: list[str], queue_600: bool) -> None:
    """Whatever the arguments, the abandoned call is recorded and mailed once; only a real queue 600
    argument brings in 600's own row, anything else is a queue without rows (the '*' row only)."""
    run = pbx.run(fixture_peer("1600-h.json"), args)
    assert run.returncode == 0 and run.stdout_garbage == [] and run.stderr == ""
    said = [c for c in run.commands if c.startswith("VERBOSE")]
    assert not any("internal error" in line for line in said), said
    [call] = pbx.calls()
    assert (call.callid, call.reason, call.source, call.status) == ("1795659165.1", "ABANDON", "agi", "sent")
    assert call.caller_num == "5551234" and call.caller_name == "John Doe"
    assert call.queue.isprintable() and 0 < len(call.queue) <= 64, call.queue
    [mail] = read_mail(pbx.maildir)
    assert mail.message["X-Missedcall-Callid"] == "1795659165.1"
    subject = str(mail.message["Subject"])
    assert subject.startswith("Missed: ") and subject.endswith(" — John Doe 5551234") and "\n" not in subject
    if queue_600:
        assert call.queue == "600" and subject.startswith("Missed: 600 — ")
        assert sorted(mail.recipients) == ["boss@example.com", "ops600@example.com"]
    else:
        assert call.queue != "600"
        assert mail.recipients == ["boss@example.com"]
    if "NAPTIME" in args:  # an unknown REASON is ignored, and says so
        assert any("ignoring unknown REASON argument 'NAPTIME'" in line for line in said), said


def test_smtp_transport(pbx: Pbx, smtp_server) -> None:
    pbx.configure(
        MISSEDCALL_TRANSPORT="smtp",
        MISSEDCALL_SMTP_HOST=smtp_server.host,
        MISSEDCALL_SMTP_PORT=str(smtp_server.port),
    )
    assert_clean_run(pbx.run(fixture_peer("3600-h.json"), ["600"]))
    [received] = smtp_server.messages
    assert sorted(received.rcpt_tos) == ["boss@example.com", "ops600@example.com"]
    assert received.message["Subject"] == "Missed: 600 — Иван Петров +7 916 123-45-67"


def test_sendmail_failure_is_recorded_pending(pbx: Pbx) -> None:
    run = pbx.run(fixture_peer("1600-h.json"), ["600"], FAKE_SENDMAIL_EXIT="75")
    assert_clean_run(run)
    [call] = pbx.calls()
    assert call.status == "pending" and "exited with 75" in call.last_error and call.attempts == 1


#: Modules a run on SQLite with sendmail has no use for: the MariaDB driver, SMTP and TLS, hashing
#: (secrets pulls in OpenSSL), asyncio. Each costs milliseconds per call, paid on every hang-up.
NOT_ON_THE_HOT_PATH = ("pymysql", "smtplib", "ssl", "hashlib", "secrets", "asyncio", "decimal")


def test_a_run_imports_only_what_the_call_needs(tmp_path: Path, sqlite_url: str) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    # sitecustomize runs in the real AGI process and writes down what it had loaded at exit.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import atexit, os, sys\n"
        "atexit.register(lambda: open(os.environ['MODULES_FILE'], 'w').write('\\n'.join(sorted(sys.modules))))\n"
    )
    modules_file = tmp_path / "modules"
    run = box.run(fixture_peer("1600-h.json"), ["600"], PYTHONPATH=str(site), MODULES_FILE=str(modules_file))
    assert_clean_run(run)
    assert len(read_mail(box.maildir)) == 1
    loaded = set(modules_file.read_text().split())
    assert "missedcall.deliver.notify" in loaded and "sqlite3" in loaded  # it did the whole job
    assert sorted(loaded.intersection(NOT_ON_THE_HOT_PATH)) == []
