"""Threaded alerts: the Message-ID stored on the row, Outlook's Thread-Index, repeat callers replying in the
first miss's thread, and the voicemail mention. Every mail is parsed back from the bytes the sendmail
stand-in received; the rows come from real SQLite and MariaDB."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

from missedcall import config
from missedcall.deliver import notify, retry, spool, threads, threadsettings
from missedcall.record.model import CallRecord
from tests.agibox import Pbx, abandon_peer, make_pbx
from tests.mailbox import text_part

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)


def miss(callid: str, *, at: datetime = T0, caller: str = "+7 916 123-45-67", name: str = "Иван Петров",
         queue: str = "600", **more: object) -> CallRecord:  # fmt: skip
    values: dict[str, object] = {"wait_seconds": 30, "entered_at": at - timedelta(seconds=30), **more}
    return CallRecord(callid=callid, queue=queue, reason="ABANDON", source="agi", caller_num=caller,
                      caller_name=name, ended_at=at, **values)  # type: ignore[arg-type]  # fmt: skip


def mailed(box: Pbx, store_call: CallRecord, settings: config.Settings, *, now: datetime | None = None) -> CallRecord:
    with box.store() as store:
        assert store.claim_call(store_call)
        return notify.notify(store, settings, store_call, timeout=10, now=now or store_call.ended_at)


def thread_index(message: EmailMessage) -> bytes:
    value = str(message["Thread-Index"])
    raw = base64.b64decode(value, validate=True)
    assert base64.b64encode(raw).decode() == value
    return raw


def by_callid(box: Pbx, callid: str) -> EmailMessage:
    found = [m for m in box.mails() if m["X-Missedcall-Callid"] == callid]
    assert len(found) == 1, [m["X-Missedcall-Callid"] for m in box.mails()]
    return found[0]


def settings_of(box: Pbx, monkeypatch: pytest.MonkeyPatch, **keys: str) -> config.Settings:
    box.configure(**keys)
    return box.in_this_process(monkeypatch)


# ============================================================================ pure parts


def test_thread_index_layout() -> None:
    started = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
    first = base64.b64decode(threads.thread_index("1795659185.13", started))
    assert len(first) == 22 and first[0] == 1
    assert first[6:] == threads.thread_guid("1795659185.13")
    # The 40 bits after the reserved byte are the FILETIME's high bits (100 ns units since 1601).
    filetime = int((started.timestamp() + 11_644_473_600) * 10**7)
    assert int.from_bytes(first[1:6], "big") == filetime >> 24
    reply = base64.b64decode(threads.thread_index("1795659185.13", started, reply_at=started + timedelta(minutes=14)))
    assert len(reply) == 27 and reply[:22] == first
    code = int.from_bytes(reply[22:26], "big")
    assert code >> 31 == 0  # a difference under 1.8 years
    delta = (code & 0x7FFFFFFF) << 18
    assert abs(delta - ((filetime + 14 * 60 * 10**7) - ((filetime >> 24) << 24))) < 1 << 18
    assert threads.thread_guid("a") != threads.thread_guid("b") and len(threads.thread_guid("")) == 16


def test_message_id_is_the_callids_own_and_a_valid_msg_id() -> None:
    assert threads.message_id("1795659185.13", "pbx@example.com") == "<missedcall.1795659185.13@example.com>"
    assert threads.message_id("..x..y.", "pbx@example.com", "missedcall-followup") == (
        "<missedcall-followup.x.y@example.com>"
    )
    message = EmailMessage()
    message["Message-ID"] = threads.message_id("a..b", "pbx@example.com")
    assert not message["Message-ID"].defects


def test_ordinals_and_subject_prefixes() -> None:
    assert [threads.ordinal(n, "en") for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th",
    ]  # fmt: skip
    assert threads.ordinal(2, "ru") == "2-й"
    assert threads.topic("Re: RE: re:Missed call") == "Missed call"
    assert threads.reply_subject("Re: x") == "Re: x" and threads.reply_subject("x") == "Re: x"


def test_settings_parse_and_refuse() -> None:
    def of(**raw: str) -> config.Settings:
        return config.Settings(db=config.load_settings({"MISSEDCALL_DB_URL": "sqlite:////tmp/x.db"}).db, raw=raw)

    assert threadsettings.followup_enabled(of()) is True
    assert threadsettings.followup_enabled(of(MISSEDCALL_FOLLOWUP="off")) is False
    assert threadsettings.voicemail_mode(of()) == "mention"
    assert threadsettings.resolve_hours(of(MISSEDCALL_RESOLVE_HOURS="48")) == 48
    problems = threadsettings.check(
        of(MISSEDCALL_FOLLOWUP="maybe", MISSEDCALL_VOICEMAIL="shout", MISSEDCALL_RESOLVE_HOURS="1e9")
    )
    assert [p.split(":")[0] for p in problems] == [
        "MISSEDCALL_FOLLOWUP", "MISSEDCALL_VOICEMAIL", "MISSEDCALL_RESOLVE_HOURS",
    ]  # fmt: skip


# ============================================================================ the alert


def test_alert_carries_the_stored_message_id_and_a_thread_index(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, db_url)
    settings = box.in_this_process(monkeypatch)
    done = mailed(box, miss("1795700000.1"), settings)
    assert done.status == "sent"
    message = by_callid(box, "1795700000.1")
    assert message["Message-ID"] == "<missedcall.1795700000.1@example.com>"
    assert box.calls()[0].message_id == message["Message-ID"] and box.calls()[0].thread_of == ""
    assert message["In-Reply-To"] is None and message["References"] is None
    assert message["Thread-Topic"] == message["Subject"]
    index = thread_index(message)
    assert len(index) == 22 and index[6:] == threads.thread_guid("1795700000.1")


def test_a_resend_after_a_relay_failure_keeps_the_message_id(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    settings = box.in_this_process(monkeypatch)
    monkeypatch.setenv("FAKE_SENDMAIL_EXIT", "75")
    assert mailed(box, miss("1795700001.1"), settings).status == "pending"
    assert box.calls()[0].message_id == "<missedcall.1795700001.1@example.com>"
    monkeypatch.delenv("FAKE_SENDMAIL_EXIT")
    with box.store() as store:
        retry.run(store, settings, now=T0 + timedelta(minutes=2))
    assert by_callid(box, "1795700001.1")["Message-ID"] == "<missedcall.1795700001.1@example.com>"


def test_the_spool_keeps_the_message_id(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    box = make_pbx(tmp_path, sqlite_url, MISSEDCALL_FALLBACK_TO="fallback@example.com")
    settings = box.in_this_process(monkeypatch)
    call = miss("1795700002.1")
    outcome = notify.offline(settings, call, deadline=time.monotonic() + 5, reason="test: down")
    assert outcome.status == "sent" and outcome.spooled
    assert by_callid(box, "1795700002.1")["Message-ID"] == "<missedcall.1795700002.1@example.com>"
    assert spool.read(str(box.spooled()[0])).call.message_id == "<missedcall.1795700002.1@example.com>"
    box.age_spool()
    with box.store() as store:
        retry.run(store, settings)
    assert box.calls()[0].message_id == "<missedcall.1795700002.1@example.com>"


def test_an_adopted_mail_keeps_its_message_id(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook mailed while the database was down; the sweeper then claims the call: it is adopted, not resent,
    and its row gets the Message-ID the mail carried."""
    box = make_pbx(tmp_path, sqlite_url, MISSEDCALL_FALLBACK_TO="fallback@example.com")
    settings = box.in_this_process(monkeypatch)
    outcome = notify.offline(settings, miss("1795700003.1"), deadline=time.monotonic() + 5, reason="test: down")
    assert outcome.status == "sent"
    swept = miss("1795700003.1")
    swept.source = "queue_log"
    assert mailed(box, swept, settings).status == "sent"
    assert len(box.mails()) == 1
    assert box.calls()[0].message_id == box.mails()[0]["Message-ID"] == "<missedcall.1795700003.1@example.com>"


# ============================================================================ repeat callers


def test_a_repeat_miss_replies_in_the_first_ones_thread(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, db_url)
    settings = box.in_this_process(monkeypatch)
    mailed(box, miss("1795710000.1", caller="+7 916 123-45-67"), settings)
    mailed(box, miss("1795710000.2", at=T0 + timedelta(minutes=10), caller="89161234567"), settings)
    mailed(box, miss("1795710000.3", at=T0 + timedelta(minutes=20), caller="9161234567", queue="601"), settings)
    first, second, third = (by_callid(box, f"1795710000.{n}") for n in (1, 2, 3))
    root_id = "<missedcall.1795710000.1@example.com>"
    assert second["In-Reply-To"] == root_id and second["References"] == root_id
    assert second["Message-ID"] == "<missedcall.1795710000.2@example.com>"
    assert second["Subject"] == f"Re: {first['Subject']} — 2nd missed call today"
    assert second["Thread-Topic"] == first["Subject"]
    assert third["Subject"] == f"Re: {first['Subject']} — 3rd missed call today"
    assert str(third["References"]).split() == [root_id, "<missedcall.1795710000.2@example.com>"]
    assert third["In-Reply-To"] == "<missedcall.1795710000.2@example.com>"
    indexes = [thread_index(m) for m in (first, second, third)]
    assert [len(i) for i in indexes] == [22, 27, 27]
    assert indexes[1][:22] == indexes[0] and indexes[2][:22] == indexes[0]
    rows = {c.callid: c for c in box.calls()}
    assert rows["1795710000.2"].thread_of == "1795710000.1" and rows["1795710000.3"].thread_of == "1795710000.1"
    assert rows["1795710000.1"].thread_of == ""


def test_what_never_threads(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolved first miss, a first miss past the horizon, an anonymous or internal caller: a new thread."""
    box = make_pbx(tmp_path, db_url)
    settings = settings_of(box, monkeypatch, MISSEDCALL_RESOLVE_HOURS="2")
    mailed(box, miss("1795720000.1", caller="anonymous"), settings)
    mailed(box, miss("1795720000.2", at=T0 + timedelta(minutes=1), caller="anonymous"), settings)
    mailed(box, miss("1795720000.3", caller="102"), settings)
    mailed(box, miss("1795720000.4", at=T0 + timedelta(minutes=1), caller="102"), settings)
    mailed(box, miss("1795720000.5", caller="5551000"), settings)
    mailed(box, miss("1795720000.6", at=T0 + timedelta(hours=3), caller="5551000"), settings)  # past 2 h
    mailed(box, miss("1795720000.7", caller="5552000"), settings)
    with box.store() as store:
        store.update_call("1795720000.7", resolution="called-back", resolved_at=T0 + timedelta(minutes=5))
    mailed(box, miss("1795720000.8", at=T0 + timedelta(minutes=9), caller="5552000"), settings)
    for n in range(1, 9):
        message = by_callid(box, f"1795720000.{n}")
        assert message["In-Reply-To"] is None, n
        assert len(thread_index(message)) == 22
    assert all(c.thread_of == "" for c in box.calls())


def test_a_first_miss_that_was_not_mailed_starts_no_thread(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    settings = settings_of(box, monkeypatch, MISSEDCALL_MIN_WAIT="60")
    skipped = mailed(box, miss("1795730000.1"), settings)  # waited 30 s: recorded, not mailed
    assert skipped.status == "skipped"
    mailed(box, miss("1795730000.2", at=T0 + timedelta(minutes=5), wait_seconds=None), settings)
    assert by_callid(box, "1795730000.2")["In-Reply-To"] is None


def test_russian_repeat_subject(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    settings = settings_of(box, monkeypatch, MISSEDCALL_LANGUAGE="ru", MISSEDCALL_TIMEZONE="Europe/Moscow")
    mailed(box, miss("1795740000.1", at=T0), settings)
    mailed(box, miss("1795740000.2", at=T0 + timedelta(hours=16)), settings)  # the next day in Moscow
    mailed(box, miss("1795740000.3", at=T0 + timedelta(hours=16, minutes=5)), settings)
    first = by_callid(box, "1795740000.1")["Subject"]
    assert by_callid(box, "1795740000.2")["Subject"] == f"Re: {first} — 2-й пропущенный звонок с 2026-11-26 12:00"
    assert by_callid(box, "1795740000.3")["Subject"] == f"Re: {first} — 3-й пропущенный звонок с 2026-11-26 12:00"


def test_hostile_caller_names_stay_inside_the_repeat_subject(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    settings = box.in_this_process(monkeypatch)
    for n, name in enumerate(["evil\r\nBcc: victim@example.com", "=?utf-8?q?x=0D=0ABcc:_evil@example.com?="]):
        mailed(box, miss(f"1795750000.{n}", at=T0 + timedelta(minutes=n), name=name), settings)
    for stored in box.stored():
        assert stored.message["Bcc"] is None and "victim" not in str(stored.recipients)
        assert "\n" not in str(stored.message["Subject"]) and "\n" not in str(stored.message["Thread-Topic"])
    assert by_callid(box, "1795750000.1")["In-Reply-To"] == "<missedcall.1795750000.0@example.com>"


# ============================================================================ voicemail


def test_voicemail_is_mentioned(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    settings = box.in_this_process(monkeypatch)
    mailed(box, miss("1795760000.1", voicemail=True), settings)
    mailed(box, miss("1795760000.2", caller="5553000"), settings)
    assert text_part(by_callid(box, "1795760000.1")).startswith("The caller left a voicemail.\n")
    assert "voicemail" not in text_part(by_callid(box, "1795760000.2"))
    assert [c.voicemail for c in sorted(box.calls(), key=lambda c: c.callid)] == [True, False]


def test_voicemail_suppress_records_without_mail(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    settings = settings_of(box, monkeypatch, MISSEDCALL_VOICEMAIL="suppress", MISSEDCALL_LANGUAGE="ru")
    done = mailed(box, miss("1795761000.1", voicemail=True), settings)
    assert done.status == "skipped" and "MISSEDCALL_VOICEMAIL=suppress" in done.last_error
    mailed(box, miss("1795761000.2", caller="5553000"), settings)
    assert [m["X-Missedcall-Callid"] for m in box.mails()] == ["1795761000.2"]


def test_voicemail_in_a_russian_template_override(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "body.txt").write_text("Пропущен $caller_num.\n$voicemail\n", encoding="utf-8")
    box = make_pbx(tmp_path, sqlite_url)
    settings = settings_of(box, monkeypatch, MISSEDCALL_LANGUAGE="ru", MISSEDCALL_TEMPLATE_DIR=str(folder))
    mailed(box, miss("1795762000.1", voicemail=True), settings)
    assert text_part(by_callid(box, "1795762000.1")) == (
        "Пропущен +7 916 123-45-67.\nАбонент оставил голосовое сообщение.\n"
    )


def test_the_hook_reads_vmstatus_in_the_same_round_trip(tmp_path: Path, sqlite_url: str) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    peer = abandon_peer("1795763000.1", caller="5554000")
    peer.variables["VMSTATUS"] = "SUCCESS"
    result = box.run(peer, ["600"])
    assert result.returncode == 0
    quiet = abandon_peer("1795763000.2", caller="5554001")
    assert box.run(quiet, ["600"]).returncode == 0
    rows = {c.callid: c for c in box.calls()}
    assert rows["1795763000.1"].voicemail and not rows["1795763000.2"].voicemail
    assert "The caller left a voicemail." in text_part(by_callid(box, "1795763000.1"))
    fetches = [c for c in result.commands if c.startswith("GET FULL VARIABLE")]
    assert len(fetches) == 1 and "${VMSTATUS}" in fetches[0]


def test_doctor_fails_on_a_bad_threading_key(tmp_path: Path, sqlite_url: str) -> None:
    box = make_pbx(tmp_path, sqlite_url, MISSEDCALL_VOICEMAIL="shout")
    done = box.admin("doctor", "--json", "--state", str(tmp_path / "no-install.state"))
    assert done.returncode == 1, done.stderr
    config_line = next(c for c in json.loads(done.stdout) if c["check"] == "config")
    assert config_line["status"] == "FAIL" and config_line["detail"].startswith("MISSEDCALL_VOICEMAIL: 'shout'")
    box.configure(MISSEDCALL_VOICEMAIL="suppress")
    fixed = box.admin("doctor", "--json", "--state", str(tmp_path / "no-install.state"))
    assert next(c for c in json.loads(fixed.stdout) if c["check"] == "config")["status"] != "FAIL"


def test_the_hook_loads_no_follow_up_code(tmp_path: Path, sqlite_url: str) -> None:
    """Threading costs the hook one small module and one query; the follow-up and the settings parser stay out."""
    box = make_pbx(tmp_path, sqlite_url)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import atexit, os, sys\n"
        "atexit.register(lambda: open(os.environ['MODULES_FILE'], 'w').write('\\n'.join(sorted(sys.modules))))\n"
    )
    modules_file = tmp_path / "modules"
    for n, caller in enumerate(("5557000", "5557000")):
        peer = abandon_peer(f"1795764000.{n}", caller=caller)
        assert box.run(peer, ["600"], PYTHONPATH=str(site), MODULES_FILE=str(modules_file)).returncode == 0
    assert by_callid(box, "1795764000.1")["In-Reply-To"] == by_callid(box, "1795764000.0")["Message-ID"]
    loaded = set(modules_file.read_text().split())
    assert "missedcall.deliver.threads" in loaded
    off_path = {"missedcall.deliver.followup", "missedcall.deliver.threadsettings", "missedcall.record.followups",
                "missedcall.deliver.plural", "missedcall.deliver.retry"}  # fmt: skip
    assert sorted(loaded & off_path) == []
