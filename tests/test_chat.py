"""Chat targets behind the one notifier, against a real HTTPS server on loopback (tests/support/chatserver.py).

Each test runs notify() and retry in this process on a real database, with the
sendmail stand-in for mail, and reads what the server received. Covered: every
channel, the webhook signature, permanent 4xx, 429 with retry_after, Telegram's
migrate_to_chat_id, 5xx retried without mailing twice, a server that never
answers, a certificate that is not trusted, storm control across mail and chat,
and the token never in a row, a log line or an error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from missedcall import config, log
from missedcall.deliver import notify, retry, targets
from missedcall.record import deliveries
from missedcall.record.model import CallRecord, utcnow
from tests.agibox import Pbx, make_pbx
from tests.support.chatserver import MIGRATED, RETRY_AFTER, TOKEN, ChatServer

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
SECRET = "webhook-signing-secret-42"


@pytest.fixture
def chat(tls_certificate: tuple[Path, Path]) -> Iterator[ChatServer]:
    server = ChatServer(*tls_certificate).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every line the product sends to syslog during the test."""
    lines: list[str] = []
    monkeypatch.setattr(log.syslog, "syslog", lambda _priority, message: lines.append(message))
    return lines


def _box(tmp_path: Path, db_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path], *,
         recipients: tuple[tuple[str, str, str], ...] = (("600", "ops600@example.com", "Ops"),),
         **keys: str) -> Pbx:  # fmt: skip
    return make_pbx(
        tmp_path, db_url, recipients=recipients,
        MISSEDCALL_TELEGRAM_TOKEN=TOKEN, MISSEDCALL_TELEGRAM_API=chat.base,
        MISSEDCALL_HTTP_CAFILE=str(tls_certificate[0]), MISSEDCALL_WEBHOOK_SECRET=SECRET, **keys,
    )  # fmt: skip


def _add(box: Pbx, queue: str, target: str) -> str:
    parsed = targets.parse(target)
    with box.store() as store:
        assert deliveries.add(store, queue, parsed.key, parsed.stored_target, "")
    return parsed.key


def _call(n: int = 1, queue: str = "600", **fields: object) -> CallRecord:
    values: dict[str, object] = {"caller_num": "+74951234567", "caller_name": "Ivan", "wait_seconds": 42,
                                 "ended_at": T0}  # fmt: skip
    values.update(fields)
    return CallRecord(callid=f"1795900000.{n}", queue=queue, reason="ABANDON", source="agi", **values)  # type: ignore[arg-type]


def _notify(box: Pbx, settings: config.Settings, call: CallRecord, *, now: datetime = T0, **kw: object) -> CallRecord:
    with box.store() as store:
        assert store.claim_call(call)
        return notify.notify(store, settings, call, timeout=5, now=now, **kw)  # type: ignore[arg-type]


def test_one_call_reaches_mail_and_every_channel(
    tmp_path: Path, db_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    logged: list[str],
) -> None:  # fmt: skip
    box = _box(tmp_path, db_url, chat, tls_certificate)
    keys = [
        _add(box, "600", "telegram:-1001234567890"),
        _add(box, "600", f"slack:{chat.url('/ok/services/T000/B000/SLACKSECRET')}"),
        _add(box, "600", f"mattermost:{chat.url('/ok/hooks/MMSECRET')}"),
        _add(box, "600", f"teams:{chat.url('/ok/workflows/abc/triggers/manual/paths/invoke?sig=TEAMSSECRET')}"),
        _add(box, "600", f"webhook:{chat.url('/ok/hook/HOOKSECRET')}"),
    ]
    settings = box.in_this_process(monkeypatch)
    done = _notify(box, settings, _call())
    assert done.status == "sent", done.last_error
    assert set(done.recipients) == {"ops600@example.com", *keys}
    mails = box.mails()
    assert len(mails) == 1 and mails[0]["To"] == "ops600@example.com"
    [text] = chat.telegram_texts("-1001234567890")
    assert '<a href="tel:+74951234567">+74951234567</a>' in text and "<code>Ivan &lt;+74951234567&gt;</code>" in text
    assert chat.posts("/ok/services")[0].json()["text"].startswith("*Missed call*")
    assert "`Ivan <+74951234567>`" in chat.posts("/ok/hooks/")[0].json()["text"]
    card = chat.posts("/ok/workflows")[0].json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["body"][1]["type"] == "FactSet"
    [hook] = chat.posts("/ok/hook/")
    expected = "sha256=" + hmac.new(SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
    assert hook.headers["X-Missedcall-Signature"] == expected
    document = hook.json()
    assert document["event"] == "missed_call" and document["call"]["callid"] == "1795900000.1"
    assert document["call"]["caller_num"] == "+74951234567" and document["call"]["wait_seconds"] == 42
    # Nothing secret in the row, the log or the listing.
    secrets = ("SLACKSECRET", "MMSECRET", "TEAMSSECRET", "HOOKSECRET", TOKEN)
    listing = box.admin("recipients", "list")
    assert listing.returncode == 0 and "hooks.slack" not in listing.stdout
    assert "slack:127.0.0.1/ok/~" in listing.stdout
    shown = box.admin("log")
    for secret in secrets:
        assert secret not in " ".join(logged) and secret not in listing.stdout and secret not in shown.stdout
        assert secret not in json.dumps([c.recipients for c in box.calls()])
    with box.store() as store:
        assert {s for s, _ in deliveries.states(store, "1795900000.1").values()} == {"sent"}


def test_permanent_refusals_fail_that_target_at_once(
    tmp_path: Path, db_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    box = _box(tmp_path, db_url, chat, tls_certificate)
    blocked = _add(box, "600", "telegram:-403")
    gone = _add(box, "600", f"webhook:{chat.url('/gone/hook/X')}")
    settings = box.in_this_process(monkeypatch)
    done = _notify(box, settings, _call())
    assert done.status == "failed" and done.attempts == 1
    assert "Forbidden: bot was blocked by the user" in done.last_error and "HTTP 404" in done.last_error
    assert done.notified_at is not None and len(box.mails()) == 1  # the mail still went, once
    with box.store() as store:
        states = deliveries.states(store, done.callid)
        assert states[blocked][0] == "failed" and states[gone][0] == "failed"
        assert states["ops600@example.com"][0] == "sent"
        assert deliveries.failed(store)[0][0] in (blocked, gone)
        # retry --failed tries the refusing targets again, and only them.
        report = retry.run(store, settings, now=T0 + timedelta(minutes=1), failed=True)
        assert report.requeued >= 1
    assert len(box.mails()) == 1
    assert len(chat.telegram_texts("-403")) == 2


def test_a_5xx_target_is_retried_without_mailing_again(
    tmp_path: Path, db_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    box = _box(tmp_path, db_url, chat, tls_certificate, recipients=(
        ("600", "ops600@example.com", ""), ("*", "boss@example.com", "")))  # fmt: skip
    _add(box, "600", "telegram:-1005")
    hook = _add(box, "600", f"webhook:{chat.url('/ok/hook/A')}")
    chat.script["-1005"] = [502, 503]
    settings = box.in_this_process(monkeypatch)
    done = _notify(box, settings, _call())
    assert done.status == "pending" and "HTTP 502" in done.last_error
    assert len(box.mails()) == 1 and len(chat.posts("/ok/hook/")) == 1
    with box.store() as store:
        retry.run(store, settings, now=T0 + timedelta(minutes=2))
        assert store.get_call(done.callid).status == "pending"  # 503 this time
        retry.run(store, settings, now=T0 + timedelta(minutes=20))
        final = store.get_call(done.callid)
        assert final.status == "sent" and final.last_error == "" and final.attempts == 3
        assert deliveries.states(store, done.callid)[hook][0] == "sent"
    assert len(box.mails()) == 1 and len(chat.posts("/ok/hook/")) == 1
    assert len(chat.telegram_texts("-1005")) == 3


def test_429_waits_for_retry_after_and_migrate_moves_the_target(
    tmp_path: Path, db_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    box = _box(tmp_path, db_url, chat, tls_certificate, recipients=())
    _add(box, "600", "telegram:-429")
    _add(box, "601", "telegram:-111")
    _add(box, "602", f"slack:{chat.url('/limit/services/X')}")
    settings = box.in_this_process(monkeypatch)
    limited = _notify(box, settings, _call(1))
    assert limited.status == "pending" and f"retry after {RETRY_AFTER} s" in limited.last_error
    assert limited.next_attempt_at == T0 + timedelta(seconds=RETRY_AFTER)  # later than the 60 s back-off
    moved = _notify(box, settings, _call(2, queue="601"))
    assert moved.status == "sent", moved.last_error
    assert len(chat.telegram_texts(str(MIGRATED))) == 1
    with box.store() as store:
        assert store.recipient_rows()[-2:] == [("601", f"telegram:{MIGRATED}"), ("602", store.recipient_rows()[-1][1])]
    slow = _notify(box, settings, _call(3, queue="602"))
    assert slow.status == "pending" and "HTTP 429" in slow.last_error


def test_waits_are_bounded_and_certificates_checked(
    tmp_path: Path, sqlite_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch, silent_tcp_server: tuple[str, int], logged: list[str],
) -> None:  # fmt: skip
    box = _box(tmp_path, sqlite_url, chat, tls_certificate, recipients=())
    _add(box, "600", f"webhook:{chat.url('/slow/hook/S')}")
    host, port = silent_tcp_server
    _add(box, "601", f"mattermost:https://{host}:{port}/hooks/silent")
    settings = box.in_this_process(monkeypatch)
    started = time.monotonic()
    slow = _notify(box, settings, _call(1), deadline=time.monotonic() + 2.5)
    silent = _notify(box, settings, _call(2, queue="601"), deadline=time.monotonic() + 2.5)
    assert time.monotonic() - started < 15  # each within its 2.5 s budget, with room for a busy box
    assert slow.status == "pending" and "no answer" in slow.last_error
    assert silent.status == "pending" and silent.last_error
    # A certificate no CA vouches for: kept pending (an admin fixes it), said plainly.
    box.configure(MISSEDCALL_HTTP_CAFILE=None, MISSEDCALL_TELEGRAM_TOKEN="999:WRONG")
    _add(box, "603", "telegram:-5")
    _add(box, "604", f"webhook:{chat.url('/ok/hook/B')}")
    settings = box.in_this_process(monkeypatch)
    untrusted = _notify(box, settings, _call(3, queue="604"))
    assert untrusted.status == "pending" and "certificate" in untrusted.last_error
    box.configure(MISSEDCALL_HTTP_CAFILE=str(tls_certificate[0]))
    settings = box.in_this_process(monkeypatch)
    wrong = _notify(box, settings, _call(4, queue="603"))
    assert wrong.status == "pending" and "HTTP 401" in wrong.last_error
    assert "999:WRONG" not in wrong.last_error and "999:WRONG" not in " ".join(logged)


def test_storm_control_counts_mail_and_chat_targets_alike(
    tmp_path: Path, sqlite_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    box = _box(tmp_path, sqlite_url, chat, tls_certificate, MISSEDCALL_FLOOD_LIMIT="2", MISSEDCALL_FLOOD_WINDOW="5")
    _add(box, "600", "telegram:-77")
    hook = _add(box, "600", f"webhook:{chat.url('/ok/hook/D')}")
    settings = box.in_this_process(monkeypatch)
    statuses = [_notify(box, settings, _call(i), now=T0 + timedelta(seconds=i)).status for i in range(5)]
    assert statuses == ["sent", "sent", "held", "held", "held"]
    assert len(box.mails()) == 2 and len(chat.telegram_texts("-77")) == 2 and len(chat.posts("/ok/hook/")) == 2
    with box.store() as store:
        report = retry.run(store, settings, now=T0 + timedelta(minutes=5, seconds=1))
        assert report.digests == 3 and report.digest_calls == 9, report.summary()
        assert {c.status for c in store.calls()} == {"sent"}
    digest_text = chat.telegram_texts("-77")[-1]
    assert digest_text.startswith("<b>Digest: 3 missed call(s)</b>") and digest_text.count("<code>") == 3
    last = chat.posts("/ok/hook/")[-1].json()
    assert last["event"] == "missed_call.digest"
    assert [c["callid"] for c in last["calls"]] == [f"1795900000.{i}" for i in (2, 3, 4)]
    assert hook.startswith("webhook:127.0.0.1/ok/~")


def test_recipients_cli_validates_and_redacts(tmp_path: Path, sqlite_url: str, chat: ChatServer,
                                              tls_certificate: tuple[Path, Path]) -> None:  # fmt: skip
    box = _box(tmp_path, sqlite_url, chat, tls_certificate, recipients=())
    added = box.admin("recipients", "add", "600", "telegram:-1001234567890")
    assert added.returncode == 0, added.stderr
    assert "added telegram:-1001234567890" in added.stdout
    url = "https://hooks.slack.com/services/T0/B0/VERYSECRET"
    piped = subprocess_admin(box, ["recipients", "add", "600", "-"], stdin=f"slack:{url}\n")
    assert piped.returncode == 0 and "VERYSECRET" not in piped.stdout
    assert "slack:hooks.slack.com/services/~" in piped.stdout
    assert box.admin("recipients", "add", "600", "mailto:ops@example.com").returncode == 0
    listing = box.admin("recipients", "list", "--json")
    assert "VERYSECRET" not in listing.stdout and "ops@example.com" in listing.stdout
    for bad in ("telegram:abc", "slack:ftp://x/y", "teams:https://user:VERYSECRET@h/x", "webhook:https://h/a b"):
        refused = box.admin("recipients", "add", "600", bad)
        assert refused.returncode == 2 and "VERYSECRET" not in refused.stderr
        assert refused.stderr.strip().count("\n") <= 1
    key = targets.parse(f"slack:{url}").key
    removed = box.admin("recipients", "remove", "600", key)
    assert removed.returncode == 0 and "VERYSECRET" not in removed.stdout
    with box.store() as store:
        assert [e for _, e in store.recipient_rows()] == ["telegram:-1001234567890", "ops@example.com"]


def subprocess_admin(box: Pbx, argv: list[str], *, stdin: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "missedcall.admin.cli", *argv], env=box.environ(), input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_test_target_and_doctor_probe_without_sending(tmp_path: Path, db_url: str, chat: ChatServer,
                                                       tls_certificate: tuple[Path, Path]) -> None:  # fmt: skip
    box = _box(tmp_path, db_url, chat, tls_certificate, recipients=())
    _add(box, "600", "telegram:-100123")
    hook = _add(box, "600", f"webhook:{chat.url('/ok/hook/DOCTORSECRET')}")
    sent = box.admin("test", "600", "--target", "telegram:-100123")
    assert sent.returncode == 0, sent.stderr
    assert len(chat.telegram_texts("-100123")) == 1
    by_key = box.admin("test", "600", "--target", hook)
    assert by_key.returncode == 0 and "DOCTORSECRET" not in by_key.stdout
    assert len(chat.posts("/ok/hook/")) == 1 and chat.posts("/ok/hook/")[0].json()["call"]["source"] == "test"
    whole = box.admin("test", "600")  # the queue's every target: no mail program ever sees a chat key
    assert whole.returncode == 0, whole.stderr
    assert len(chat.telegram_texts("-100123")) == 2 and len(chat.posts("/ok/hook/")) == 2 and box.mails() == []
    refused = box.admin("test", "600", "--target", "telegram:-403")
    assert refused.returncode == 1 and "bot was blocked by the user" in refused.stderr
    assert TOKEN not in refused.stderr and refused.stderr.count("\n") == 1
    before = len(chat.seen)
    doctor = box.admin("doctor", "--json")
    checks = {c["check"]: c for c in json.loads(doctor.stdout)}
    assert checks["chat targets"]["status"] == "OK", checks["chat targets"]
    assert "2 target(s) answer" in checks["chat targets"]["detail"]
    probes = chat.seen[before:]
    assert [p.path.rsplit("/", 1)[-1] for p in probes] == ["getMe", "getChat"]  # no message, no webhook request
    _add(box, "601", "telegram:-400")
    doctor = box.admin("doctor", "--json")
    check = {c["check"]: c for c in json.loads(doctor.stdout)}["chat targets"]
    assert check["status"] == "FAIL" and "chat not found" in check["detail"]
    assert TOKEN not in doctor.stdout and "DOCTORSECRET" not in doctor.stdout


def test_a_call_mailed_offline_still_reaches_its_chat_targets(
    tmp_path: Path, sqlite_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The AGI could not reach the database: it mails from the local copy and spools; retry then sends the chat
    targets (which need the database for their URLs and outcomes) and never mails again."""
    from missedcall.deliver import lastknown

    box = _box(tmp_path, sqlite_url, chat, tls_certificate)
    _add(box, "600", "telegram:-88")
    settings = box.in_this_process(monkeypatch)
    with box.store() as store:
        assert lastknown.refresh(store, settings.spool_dir)
    outcome = notify.offline(settings, _call(), deadline=time.monotonic() + 5, reason="test: database down")
    assert outcome.status == "sent" and outcome.spooled
    assert len(box.mails()) == 1 and chat.telegram_texts("-88") == []
    with box.store() as store:
        retry.run(store, settings, now=utcnow() + timedelta(seconds=5), settle=0)  # the spool file's real age
        final = store.get_call("1795900000.1")
        assert final is not None and final.status == "sent", final
    assert len(box.mails()) == 1 and len(chat.telegram_texts("-88")) == 1


def test_followup_replies_to_the_first_telegram_message_and_posts_a_resolved_event(
    tmp_path: Path, sqlite_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from missedcall.deliver import chatroute

    box = _box(tmp_path, sqlite_url, chat, tls_certificate)
    _add(box, "600", "telegram:-99")
    _add(box, "600", f"webhook:{chat.url('/ok/hook/F')}")
    _add(box, "600", "telegram:-403")
    settings = box.in_this_process(monkeypatch)
    done = _notify(box, settings, _call(caller_name="<b>@channel</b>"))
    first = [s for s in chat.seen if s.path.endswith("/sendMessage") and s.json()["chat_id"] == -99]
    with box.store() as store:
        outcomes = chatroute.followup(store, settings, done, "called back by 102 after 14 min", timeout=5)
    assert outcomes == {"telegram:-99": "", hook_key(chat): ""}  # the blocked chat never had it: not told
    reply = [s for s in chat.seen if s.path.endswith("/sendMessage") and s.json()["chat_id"] == -99][-1].json()
    assert reply["reply_parameters"]["message_id"] == _message_id(chat, first[0])
    said = "<code>&lt;b&gt;@channel&lt;/b&gt; &lt;+74951234567&gt;</code>: called back by 102 after 14 min"
    assert reply["text"] == said
    event = chat.posts("/ok/hook/")[-1].json()
    assert event["event"] == "missed_call.resolved" and event["call"]["callid"] == done.callid


def hook_key(chat: ChatServer) -> str:
    return targets.parse(f"webhook:{chat.url('/ok/hook/F')}").key


def _message_id(chat: ChatServer, request: object) -> int:
    """The message_id the server gave that request (it numbers messages by requests seen)."""
    return chat.seen.index(request) + 1  # type: ignore[arg-type]


def test_export_and_import_carry_chat_targets(tmp_path: Path, db_url: str, chat: ChatServer,
                                              tls_certificate: tuple[Path, Path]) -> None:  # fmt: skip
    box = _box(tmp_path, db_url, chat, tls_certificate)
    _add(box, "600", "telegram:-42")
    _add(box, "*", "teams:https://prod.example.com/workflows/abc?sig=SECRET")
    exported = box.admin("recipients", "export")
    assert exported.returncode == 0 and "teams:https://prod.example.com/workflows/abc?sig=SECRET" in exported.stdout
    with box.store() as store:
        before = store.recipient_rows()
        store.execute("DELETE FROM missedcall_recipients")
    backup = tmp_path / "backup.csv"
    backup.write_text(exported.stdout + "601,telegram:not-an-id,\n", encoding="utf-8")
    refused = box.admin("recipients", "import", str(backup))
    assert refused.returncode == 1 and ":5: telegram:'not-an-id' is not a chat id" in refused.stderr
    backup.write_text(exported.stdout, encoding="utf-8")
    imported = box.admin("recipients", "import", str(backup))
    assert imported.returncode == 0 and "imported 3 new recipient(s)" in imported.stdout, imported.stderr
    with box.store() as store:
        assert sorted(store.recipient_rows()) == sorted(before)
        assert list(deliveries.urls(store, [k for _, k in before]).values()) == [
            "teams:https://prod.example.com/workflows/abc?sig=SECRET"
        ]


def test_names_are_looked_up_within_the_budget(chat: ChatServer, tls_certificate: tuple[Path, Path]) -> None:
    from missedcall.deliver import webpost

    cafile = str(tls_certificate[0])
    answer = webpost.post_json(f"https://localhost:{chat.port}/ok/hook/N", {"a": 1}, timeout=5, cafile=cafile)
    assert answer.status == 200 and chat.posts("/ok/hook/N")[0].json() == {"a": 1}
    with pytest.raises(webpost.ChatError) as caught:
        webpost.post_json("https://no-such-host.invalid/hook/SECRETPATH", {}, timeout=5, cafile=cafile)
    assert caught.value.temporary and "no-such-host.invalid" in str(caught.value)
    assert "SECRETPATH" not in str(caught.value)
    with pytest.raises(webpost.ChatError) as refused:
        webpost.post_json("file:///etc/passwd", {}, timeout=5, cafile=cafile)
    assert not refused.value.temporary


def test_a_digest_follows_a_chat_that_became_a_supergroup(
    tmp_path: Path, sqlite_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    box = _box(tmp_path, sqlite_url, chat, tls_certificate, recipients=(), MISSEDCALL_FLOOD_LIMIT="1",
               MISSEDCALL_FLOOD_WINDOW="5")  # fmt: skip
    _add(box, "600", "telegram:-111")
    chat.script["-111"] = [200]  # still a group for the first message
    settings = box.in_this_process(monkeypatch)
    assert [_notify(box, settings, _call(i), now=T0).status for i in range(3)] == ["sent", "held", "held"]
    with box.store() as store:
        report = retry.run(store, settings, now=T0 + timedelta(minutes=5, seconds=1))
        assert report.digests == 1 and report.digest_calls == 2, report.summary()
        assert store.recipient_rows() == [("600", f"telegram:{MIGRATED}")]
        assert {c.status for c in store.calls()} == {"sent"}
    assert len(chat.telegram_texts(str(MIGRATED))) == 1


@pytest.mark.parametrize(
    "name",
    ["\x1b[31m\x00<!channel> @all [x](https://evil.example)", "Я" * 5000, "\u202e&amp;🙂"],
    ids=["controls", "long", "rtl"],
)
def test_hostile_names_reach_every_real_endpoint_as_valid_json(
    tmp_path: Path, sqlite_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch, name: str,
) -> None:  # fmt: skip
    box = _box(tmp_path, sqlite_url, chat, tls_certificate, recipients=())
    for target in ("telegram:-5", f"slack:{chat.url('/ok/s/1')}", f"mattermost:{chat.url('/ok/m/1')}",
                   f"teams:{chat.url('/ok/workflows/1')}", f"webhook:{chat.url('/ok/w/1')}"):  # fmt: skip
        _add(box, "600", target)
    settings = box.in_this_process(monkeypatch)
    done = _notify(box, settings, _call(caller_name=name, caller_num=name))
    assert done.status == "sent", done.last_error
    bodies = [s.body for s in chat.seen]
    assert len(bodies) == 5
    for body in bodies:
        json.loads(body.decode("utf-8", "strict"))  # strict UTF-8, no lone surrogate escapes left
        assert b"\\udc" not in body


def test_adding_a_chat_target_to_older_tables_adds_what_they_lack(
    tmp_path: Path, db_url: str, chat: ChatServer, tls_certificate: tuple[Path, Path]
) -> None:
    """Tables made before chat targets, at the same schema number: add puts the column and table in itself."""
    box = _box(tmp_path, db_url, chat, tls_certificate)
    with box.store() as store:
        store.execute("ALTER TABLE missedcall_recipients DROP COLUMN target")
        store.execute("DROP TABLE missedcall_deliveries")
    added = box.admin("recipients", "add", "600", f"webhook:{chat.url('/ok/hook/OLD')}")
    assert added.returncode == 0, added.stderr
    with box.store() as store:
        assert store.has_column("missedcall_recipients", "target") and store.table_exists("missedcall_deliveries")
