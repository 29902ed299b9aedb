"""The follow-up in the alert's thread: headers parsed back from the delivered bytes, retries after a relay
failure (the real SMTP server on loopback answering 451), no duplicate after success, storm control, hostile
text, MISSEDCALL_FOLLOWUP=off, one follow-up per repeat-caller thread, per-thread isolation.

The resolver is another module's: these tests write a row's resolution and ``followup='pending'`` with
Store.update_call, as it does."""

from __future__ import annotations

import base64
import threading
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

from missedcall import config
from missedcall.deliver import followup, notify, retry, threads
from missedcall.deliver.health import health as delivery_health
from missedcall.record import followups
from missedcall.record.model import CallRecord
from tests.agibox import Pbx, make_pbx
from tests.support.smtp import SmtpServer

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
MAILS = {"ops600@example.com", "boss@example.com"}


def miss(callid: str, *, at: datetime = T0, caller: str = "+7 916 123-45-67", name: str = "Иван Петров",
         queue: str = "600", **more: object) -> CallRecord:  # fmt: skip
    return CallRecord(callid=callid, queue=queue, reason="ABANDON", source="agi", caller_num=caller,
                      caller_name=name, wait_seconds=30, entered_at=at - timedelta(seconds=30), ended_at=at,
                      **more)  # type: ignore[arg-type]  # fmt: skip


def alert(box: Pbx, call: CallRecord, settings: config.Settings) -> CallRecord:
    with box.store() as store:
        assert store.claim_call(call)
        done = notify.notify(store, settings, call, timeout=10, now=call.ended_at)
    assert done.status in ("sent", "held"), done.last_error
    return done


def resolve(box: Pbx, callid: str, *, after: timedelta, how: str = "called-back", by: str = "102 (Ivan Petrov)",
            talk: int | None = 200) -> None:  # fmt: skip
    """What the resolver writes on a resolved, mailed miss."""
    with box.store() as store:
        call = store.get_call(callid)
        assert call is not None and call.ended_at is not None
        store.update_call(callid, resolution=how, resolved_at=call.ended_at + after, resolved_by=by,
                          talk_seconds=talk, followup="pending")  # fmt: skip


def send(box: Pbx, settings: config.Settings, now: datetime) -> followup.Outcome:
    with box.store() as store:
        return followup.send_due(store, settings, now=now, timeout=10)


def state(box: Pbx, callid: str) -> str:
    with box.store() as store:
        call = store.get_call(callid)
    assert call is not None
    return call.followup


def index(message: EmailMessage) -> bytes:
    return base64.b64decode(str(message["Thread-Index"]), validate=True)


def followups_in(messages: list[EmailMessage]) -> list[EmailMessage]:
    return [m for m in messages if str(m["Message-ID"]).startswith("<missedcall-followup.")]


def test_a_callback_is_followed_up_in_the_alerts_thread(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, db_url)
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795800000.1"), settings)
    resolve(box, "1795800000.1", after=timedelta(minutes=14, seconds=10))
    assert send(box, settings, T0 + timedelta(minutes=15)).counts == {"sent": 1}
    first, second = box.stored()
    original, follow = first.message, second.message
    assert set(second.recipients) == MAILS
    assert follow["Subject"] == f"Re: {original['Subject']}"
    assert follow["In-Reply-To"] == original["Message-ID"] == "<missedcall.1795800000.1@example.com>"
    assert str(follow["References"]).split() == [original["Message-ID"]]
    assert follow["Message-ID"] == "<missedcall-followup.1795800000.1@example.com>"
    assert follow["Thread-Topic"] == original["Subject"] == original["Thread-Topic"]
    assert len(index(original)) == 22 and len(index(follow)) == 27
    assert index(follow)[:22] == index(original) and index(original)[6:] == threads.thread_guid("1795800000.1")
    assert follow["Auto-Submitted"] == "auto-generated"
    body = follow.get_content()
    assert body.startswith("Called back by 102 (Ivan Petrov) 14 min after the miss, talked 3:20.\n")
    assert "Иван Петров <+7 916 123-45-67>" in body and "Call ID:   1795800000.1" in body
    assert state(box, "1795800000.1") == "sent"
    # Never twice: later runs (and retry's own) find nothing due.
    assert send(box, settings, T0 + timedelta(hours=3)).counts == {}
    with box.store() as store:
        report = retry.run(store, settings, now=T0 + timedelta(hours=4))
    assert report.followups == {} and len(box.stored()) == 2


def test_got_through_in_russian_with_the_local_time(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, sqlite_url, MISSEDCALL_LANGUAGE="ru", MISSEDCALL_TIMEZONE="Europe/Moscow")
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795801000.1"), settings)
    resolve(box, "1795801000.1", after=timedelta(minutes=32), how="got-through", by="105", talk=None)
    send(box, settings, T0 + timedelta(minutes=33))
    follow = box.mails()[-1]
    assert follow["Subject"].startswith("Re: Пропущен: 600 — Иван Петров +7 916 123-45-67")
    assert follow.get_content().startswith("Абонент позвонил снова в 12:32, ответил 105.\n")


def test_russian_callback_after_hours(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    box = make_pbx(tmp_path, sqlite_url, MISSEDCALL_LANGUAGE="ru")
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795802000.1"), settings)
    resolve(box, "1795802000.1", after=timedelta(hours=2, minutes=5), by="", talk=3723)
    send(box, settings, T0 + timedelta(hours=3))
    assert box.mails()[-1].get_content().startswith(
        "Перезвонили через 2 ч 05 мин после пропущенного звонка, разговор 1:02:03.\n"
    )


def test_a_relay_failure_is_retried_with_back_off_then_sent_once(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpServer
) -> None:
    box = make_pbx(tmp_path, sqlite_url, **smtp_server.config())
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795810000.1"), settings)
    resolve(box, "1795810000.1", after=timedelta(minutes=5))
    smtp_server.reply = "451 4.3.0 try again later"
    now = T0 + timedelta(minutes=6)
    assert send(box, settings, now).counts == {"pending": 1}
    assert state(box, "1795810000.1") == "pending"
    with box.store() as store:
        kept = followups.get(store, "1795810000.1")
    assert kept is not None and kept.attempts == 1 and "451" in kept.last_error
    assert kept.next_attempt_at == now + timedelta(minutes=1)
    assert send(box, settings, now + timedelta(seconds=30)).counts == {}  # backing off
    smtp_server.reply = None
    with box.store() as store:
        report = retry.run(store, settings, now=now + timedelta(minutes=1))
    assert report.followups == {"sent": 1}
    assert [m.message["In-Reply-To"] for m in smtp_server.messages] == [None, "<missedcall.1795810000.1@example.com>"]
    assert state(box, "1795810000.1") == "sent"
    with box.store() as store:
        assert retry.run(store, settings, now=now + timedelta(hours=5)).followups == {}
    assert len(smtp_server.messages) == 2


def test_the_attempt_limit_fails_it_with_the_reason_and_retry_failed_requeues(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795811000.1"), settings)
    resolve(box, "1795811000.1", after=timedelta(minutes=5))
    monkeypatch.setenv("FAKE_SENDMAIL_EXIT", "75")
    now = T0 + timedelta(minutes=6)
    for _ in range(notify.MAX_ATTEMPTS):
        send(box, settings, now)
        now += timedelta(hours=2)
    assert state(box, "1795811000.1") == "failed"
    with box.store() as store:
        assert followups.failed(store) == [("1795811000.1", followups.get(store, "1795811000.1").last_error)]  # type: ignore[union-attr]
        assert "exited with 75" in followups.failed(store)[0][1]
    assert send(box, settings, now).counts == {}
    monkeypatch.delenv("FAKE_SENDMAIL_EXIT")
    with box.store() as store:
        report = retry.run(store, settings, now=now, failed=True)
    assert report.followups == {"sent": 1} and state(box, "1795811000.1") == "sent"
    assert len(followups_in(box.mails())) == 1


def test_storm_control_counts_the_follow_up(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Limit 1 per 5 min: the alert fills boss's and ops600's windows; the follow-up waits for them to close."""
    box = make_pbx(tmp_path, sqlite_url, MISSEDCALL_FLOOD_LIMIT="1", MISSEDCALL_FLOOD_WINDOW="5")
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795820000.1"), settings)
    resolve(box, "1795820000.1", after=timedelta(minutes=1))
    assert send(box, settings, T0 + timedelta(minutes=2)).counts == {"held": 1}
    assert len(box.mails()) == 1 and state(box, "1795820000.1") == "pending"
    assert send(box, settings, T0 + timedelta(minutes=4)).counts == {}  # not before the window closes
    assert send(box, settings, T0 + timedelta(minutes=5)).counts == {"sent": 1}
    follow = followups_in(box.mails())
    assert len(follow) == 1 and set(box.stored()[-1].recipients) == MAILS
    # It counted: a miss in the new window is held for the digest.
    done = alert(box, miss("1795820000.2", at=T0 + timedelta(minutes=6), caller="5559999"), settings)
    assert done.status == "held"


def test_storm_control_lets_the_quiet_address_have_it_now(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, sqlite_url, MISSEDCALL_FLOOD_LIMIT="2", MISSEDCALL_FLOOD_WINDOW="5")
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795821000.1"), settings)  # ops600 and boss: 1 of 2
    alert(box, miss("1795821000.2", queue="601", caller="5550001"), settings)  # ops601 and boss: boss 2 of 2
    resolve(box, "1795821000.1", after=timedelta(minutes=1))
    assert send(box, settings, T0 + timedelta(minutes=2)).counts == {"held": 1}
    assert box.stored()[-1].recipients == ["ops600@example.com"]
    assert send(box, settings, T0 + timedelta(minutes=5)).counts == {"sent": 1}
    assert box.stored()[-1].recipients == ["boss@example.com"]
    assert len(followups_in(box.mails())) == 2 and state(box, "1795821000.1") == "sent"


HOSTILE = [
    "evil\r\nBcc: victim@example.com",
    "=?utf-8?q?x=0D=0ABcc:_evil@example.com?=",
    "x\r\n\r\nInjected body",
    "$outcome ${callid} $$",
    "\x00nul\x07bell\x1b[31mred",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_in_the_follow_up(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, hostile: str
) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795830000.1", name=hostile), settings)
    resolve(box, "1795830000.1", after=timedelta(minutes=3), by=hostile)
    assert send(box, settings, T0 + timedelta(minutes=4)).counts == {"sent": 1}
    stored = box.stored()[-1]
    follow = stored.message
    assert set(stored.recipients) == MAILS and follow["Bcc"] is None
    for header in ("Subject", "Thread-Topic", "In-Reply-To", "References"):
        assert "\n" not in str(follow[header]).strip() and "\r" not in str(follow[header])
    body = follow.get_content()
    assert "\x00" not in body and "\x1b" not in body and "\nBcc:" not in body and "\n\nInjected" not in body
    assert body.startswith("Called back by ")


def test_followups_off_sends_nothing(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    box = make_pbx(tmp_path, sqlite_url, MISSEDCALL_FOLLOWUP="off")
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795840000.1"), settings)
    resolve(box, "1795840000.1", after=timedelta(minutes=3))
    with box.store() as store:
        report = retry.run(store, settings, now=T0 + timedelta(minutes=4))
    assert report.followups == {"off": 1}
    assert state(box, "1795840000.1") == "off" and len(box.mails()) == 1


def test_one_follow_up_closes_a_repeat_callers_thread(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, db_url)
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795850000.1"), settings)
    alert(box, miss("1795850000.2", at=T0 + timedelta(minutes=10), caller="89161234567", voicemail=True), settings)
    for callid in ("1795850000.1", "1795850000.2"):
        resolve(box, callid, after=timedelta(minutes=20))
    assert send(box, settings, T0 + timedelta(hours=1)).counts == {"sent": 1}
    first, second, follow = box.mails()
    assert follow["In-Reply-To"] == second["Message-ID"]
    assert str(follow["References"]).split() == [first["Message-ID"], second["Message-ID"]]
    assert follow["Subject"] == f"Re: {first['Subject']}" and index(follow)[:22] == index(first)
    body = follow.get_content()
    assert "20 min after the miss" in body
    assert "This closes 2 missed calls from this number.\nThe caller left a voicemail.\n" in body
    assert {state(box, c) for c in ("1795850000.1", "1795850000.2")} == {"sent"}


def test_russian_plural_in_the_thread_count() -> None:
    assert followup._TEXT["ru"]["closes"].format(count=followup.plural.count(5, "missed call", "ru")) == (
        "Закрыто: 5 пропущенных звонков с этого номера."
    )


def test_one_bad_thread_is_parked_and_the_others_go(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolution time no clock can show (CDR garbage) stops only its own thread, and doctor names it."""
    box = make_pbx(tmp_path, db_url, MISSEDCALL_TIMEZONE="Europe/Moscow")
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795860000.1"), settings)
    alert(box, miss("1795860000.2", caller="5550002"), settings)
    alert(box, miss("1795860000.3", caller="5550003"), settings)
    for callid in ("1795860000.1", "1795860000.2", "1795860000.3"):
        resolve(box, callid, after=timedelta(minutes=3), how="got-through")
    with box.store() as store:
        store.update_call("1795860000.2", resolved_at=datetime(9999, 12, 31, 23, 59, tzinfo=timezone.utc))
    with box.store() as store:
        report = retry.run(store, settings, now=T0 + timedelta(minutes=4))
    assert report.followups == {"sent": 2}
    assert report.parked == ["follow-up of call 1795860000.2"]
    assert [state(box, f"1795860000.{n}") for n in (1, 2, 3)] == ["sent", "failed", "sent"]
    with box.store() as store:
        status, detail, _fix = delivery_health(store, settings)
        assert status == "FAIL" and "follow-up of call 1795860000.2 parked" in detail
        # Parked, never retried in a loop.
        assert retry.run(store, settings, now=T0 + timedelta(hours=3)).followups == {}
    assert len(followups_in(box.mails())) == 2
    # Once the row is mended, `retry --failed` sends it (it was never sent, so it is no duplicate).
    with box.store() as store:
        store.update_call("1795860000.2", resolved_at=T0 + timedelta(minutes=3))
        report = retry.run(store, settings, now=T0 + timedelta(hours=4), failed=True)
    assert report.followups == {"sent": 1} and state(box, "1795860000.2") == "sent"
    assert len(followups_in(box.mails())) == 3


def test_addresses_in_a_hand_edited_row_are_checked_again(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795861000.1"), settings)
    resolve(box, "1795861000.1", after=timedelta(minutes=3))
    with box.store() as store:
        followups.start(store, "1795861000.1", ["ops600@example.com", "=?utf-8?q?evil?=@example.com", "a b@c.d"])
    send(box, settings, T0 + timedelta(minutes=4))
    assert box.stored()[-1].recipients == ["ops600@example.com"]


def test_outcome_sentences() -> None:
    call = miss("1", resolution="called-back", resolved_at=T0 + timedelta(seconds=45), resolved_by="", talk_seconds=0)
    assert followup.outcome_text(call, language="en", zone=timezone.utc) == "Called back 45 s after the miss."
    call.resolution, call.resolved_at = "got-through", T0 + timedelta(days=1, minutes=3)
    assert followup.outcome_text(call, language="en", zone=timezone.utc) == (
        "Called again at 2026-11-27 09:03 and was answered."
    )
    assert followup.outcome_text(call, language="ru", zone=timezone.utc) == (
        "Абонент позвонил снова в 2026-11-27 09:03, звонок принят."
    )
    assert [followup.talk_time(s) for s in (0, 59, 200, 3723)] == ["0:00", "0:59", "3:20", "1:02:03"]
    assert [followup.span(s, "en") for s in (-5, 59, 60, 3599, 3600, 7500)] == [
        "0 s", "59 s", "1 min", "59 min", "1 h 00 min", "2 h 05 min",
    ]  # fmt: skip


def test_an_unreadable_template_waits_like_a_relay_failure(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    settings = box.in_this_process(monkeypatch)
    alert(box, miss("1795870000.1"), settings)
    resolve(box, "1795870000.1", after=timedelta(minutes=3))
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "followup_body.txt").write_bytes(b"\xff\xfe not UTF-8 $outcome\n")
    box.configure(MISSEDCALL_TEMPLATE_DIR=str(folder))
    settings = box.in_this_process(monkeypatch)
    assert send(box, settings, T0 + timedelta(minutes=4)).counts == {"pending": 1}
    with box.store() as store:
        kept = followups.get(store, "1795870000.1")
    assert kept is not None and "cannot read template" in kept.last_error
    (folder / "followup_body.txt").write_text("Closed: $outcome\n$notes", encoding="utf-8")
    assert send(box, settings, T0 + timedelta(minutes=6)).counts == {"sent": 1}
    assert box.mails()[-1].get_content() == (
        "Closed: Called back by 102 (Ivan Petrov) 3 min after the miss, talked 3:20.\n"
    )


def test_two_retries_at_once_send_it_once(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    box = make_pbx(tmp_path, db_url)
    settings = box.in_this_process(monkeypatch)
    for n in range(6):
        alert(box, miss(f"1795880000.{n}", caller=f"555800{n}"), settings)
        resolve(box, f"1795880000.{n}", after=timedelta(minutes=2))
    results: list[followup.Outcome] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(send(box, settings, T0 + timedelta(minutes=3)))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker) for _ in range(3)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(120)
    assert not errors, errors
    assert sum(r.counts.get("sent", 0) for r in results) == 6, results
    sent = [m["X-Missedcall-Callid"] for m in followups_in(box.mails())]
    assert sorted(sent) == [f"1795880000.{n}" for n in range(6)]
