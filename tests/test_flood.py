"""Storm control: at most MISSEDCALL_FLOOD_LIMIT single mails per recipient per MISSEDCALL_FLOOD_WINDOW,
the rest folded into one digest per recipient that ``retry`` sends when the window ends.

100 abandons in a minute through the real AGI: each recipient gets at most limit + 1 mails,
and together they list all 100 calls, each exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from missedcall import config
from missedcall.dburl import parse_db_url
from missedcall.deliver import digest, flood, notify, retry
from missedcall.record import held
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.storage import Store
from tests.agibox import Pbx, abandon_lines, abandon_peer, make_pbx
from tests.mailbox import StoredMail

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


# ============================================================================ the rule


def test_decide_counts_a_window_per_address() -> None:
    first = flood.decide(held.EPOCH, 0, T0, limit=2, window_minutes=5)
    assert (first.single, first.window_start, first.sent) == (True, T0, 1)
    second = flood.decide(T0, 1, T0 + timedelta(minutes=1), limit=2, window_minutes=5)
    assert (second.single, second.window_start, second.sent) == (True, T0, 2)
    third = flood.decide(T0, 2, T0 + timedelta(minutes=4), limit=2, window_minutes=5)
    assert (third.single, third.due_at) == (False, T0 + timedelta(minutes=5))
    later = flood.decide(T0, 2, T0 + timedelta(minutes=5), limit=2, window_minutes=5)
    assert (later.single, later.window_start, later.sent) == (True, T0 + timedelta(minutes=5), 1)
    clock_back = flood.decide(T0, 2, T0 - timedelta(minutes=1), limit=2, window_minutes=5)
    assert clock_back.single


def test_reserve_is_atomic_across_processes(db_url: str, tmp_path: Path) -> None:
    """Eight connections reserve for the same address at once: exactly LIMIT single mails."""
    with Store.open(parse_db_url(db_url)) as store:
        store.init()
    singles: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with Store.open(parse_db_url(db_url), timeout=30) as store:
                for i in range(10):
                    call = CallRecord(callid=f"c{n}-{i}", queue="600", reason="ABANDON", source="agi")
                    split = flood.reserve(store, call, ["Boss@example.com"], limit=20, window_minutes=5, now=T0)
                    with lock:
                        singles.extend(split.single)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(singles) == 20
    with Store.open(parse_db_url(db_url)) as store:
        assert flood.due_addresses(store, T0 + timedelta(minutes=5)) == ["Boss@example.com"]
        assert store.rows("SELECT COUNT(*) FROM missedcall_held")[0][0] == 60


# ============================================================================ through the notifier


def _settings(box: Pbx, monkeypatch: pytest.MonkeyPatch, **keys: str) -> config.Settings:
    box.configure(**keys)
    return box.in_this_process(monkeypatch)


def _mails_to(mails: list[StoredMail], address: str) -> list[StoredMail]:
    return [m for m in mails if address in m.recipients]


def _listed(mails: list[StoredMail]) -> list[str]:
    """Every call a set of mails tells about: single mails by their header, digests by their lines."""
    found: list[str] = []
    for mail in mails:
        if mail.message["X-Missedcall-Digest"]:
            found += digest.listed_callids(mail.message.get_content())
        else:
            found.append(str(mail.message["X-Missedcall-Callid"]))
    return found


def test_the_limit_is_per_recipient(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The boss (a '*' copy) is flooded by queue 600; queue 601's own team still gets single mails."""
    box = make_pbx(tmp_path, sqlite_url)
    settings = _settings(box, monkeypatch, MISSEDCALL_FLOOD_LIMIT="3", MISSEDCALL_FLOOD_WINDOW="5")
    with box.store() as store:
        for i in range(5):
            call = CallRecord(callid=f"1795900000.{i}", queue="600", reason="ABANDON", source="agi", ended_at=T0)
            assert store.claim_call(call)
            notify.notify(store, settings, call, timeout=5, now=T0 + timedelta(seconds=i))
        other = CallRecord(callid="1795900000.99", queue="601", reason="ABANDON", source="agi", ended_at=T0)
        assert store.claim_call(other)
        done = notify.notify(store, settings, other, timeout=5, now=T0 + timedelta(seconds=10))
        assert done.status == "held" and set(done.recipients) == {"ops601@example.com", "boss@example.com"}
        statuses = Counter(c.status for c in store.calls())
        assert statuses == {"sent": 3, "held": 3}
    mails = box.stored()
    assert len(_mails_to(mails, "ops601@example.com")) == 1
    assert len(_mails_to(mails, "boss@example.com")) == 3
    assert len(_mails_to(mails, "ops600@example.com")) == 3
    assert all(m.message["To"] != "ops601@example.com, boss@example.com" for m in mails)
    # The window ends: one digest per flooded address, and every call is sent.
    with box.store() as store:
        report = retry.run(store, settings, now=T0 + timedelta(minutes=5, seconds=1))
        assert report.digests == 2 and report.digest_calls == 2 + 3
        assert Counter(c.status for c in store.calls()) == {"sent": 6}
        assert retry.run(store, settings, now=T0 + timedelta(hours=2)).digests == 0
    mails = box.stored()
    boss = _mails_to(mails, "boss@example.com")
    assert len(boss) == 4 and sorted(_listed(boss)) == sorted(f"1795900000.{i}" for i in (0, 1, 2, 3, 4, 99))
    ops600 = _mails_to(mails, "ops600@example.com")
    assert len(ops600) == 4 and sorted(_listed(ops600)) == sorted(f"1795900000.{i}" for i in range(5))


def test_a_failing_digest_is_retried_then_failed_then_requeued(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, sqlite_url, recipients=[("600", "ops600@example.com", "")])
    settings = _settings(box, monkeypatch, MISSEDCALL_FLOOD_LIMIT="1", MISSEDCALL_FLOOD_WINDOW="1")
    with box.store() as store:
        for i in range(3):
            call = CallRecord(callid=f"1795900100.{i}", queue="600", reason="ABANDON", source="agi", ended_at=T0)
            assert store.claim_call(call)
            notify.notify(store, settings, call, timeout=5, now=T0)
        monkeypatch.setenv("FAKE_SENDMAIL_EXIT", "75")
        clock = T0 + timedelta(minutes=1)
        for _ in range(notify.MAX_ATTEMPTS):
            report = retry.run(store, settings, now=clock)
            assert report.digest_failures == 1
            clock += timedelta(hours=2)
        assert Counter(c.status for c in store.calls()) == {"sent": 1, "failed": 2}
        assert retry.run(store, settings, now=clock).digest_failures == 0  # given up: no loop
        monkeypatch.delenv("FAKE_SENDMAIL_EXIT")
        report = retry.run(store, settings, now=clock, failed=True)
        assert report.digests == 1 and report.digest_calls == 2
        assert Counter(c.status for c in store.calls()) == {"sent": 3}
    assert len(box.stored()) == 2


# ============================================================================ 100 abandons through the AGI


@pytest.mark.parametrize("backend", ["mariadb", "sqlite"])
def test_100_abandons_in_a_minute(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = request.getfixturevalue("mariadb_url" if backend == "mariadb" else "sqlite_url")
    box = make_pbx(tmp_path, url)
    settings = _settings(box, monkeypatch)  # defaults: 20 per 5 minutes
    assert (settings.flood_limit, settings.flood_window) == (20, 5)
    base = int(utcnow().timestamp()) - 60
    callids = [f"{base}.{i}" for i in range(100)]
    box.write_queue_log(line for i, c in enumerate(callids) for line in abandon_lines(c, "600", at=base + i // 2))
    runs = box.run_many([(abandon_peer(c), ["600"]) for c in callids], parallel=4, timeout=30)
    assert all(r.ok and r.stderr == "" for r in runs)
    # A busy box may leave some mails to the next retry (DEFERRED); that retry runs now.
    with box.store() as store:
        store.execute("UPDATE missedcall_calls SET next_attempt_at = ? WHERE status = 'pending'", (utcnow(),))
        retry.run(store, settings)
        statuses = Counter(c.status for c in store.calls())
        assert statuses == {"sent": 20, "held": 80}, statuses
    held = box.admin("log", "--status", "held", "--limit", "1000", "--json")
    assert held.returncode == 0 and held.stdout.count('"status": "held"') == 80
    with box.store() as store:
        report = retry.run(store, settings, now=utcnow() + timedelta(minutes=6))
        assert report.digests == 2 and report.digest_calls == 160
        assert Counter(c.status for c in store.calls()) == {"sent": 100}
    mails = box.stored()
    for address in ("ops600@example.com", "boss@example.com"):
        theirs = _mails_to(mails, address)
        assert len(theirs) <= settings.flood_limit + 1
        listed = _listed(theirs)
        assert sorted(listed) == sorted(callids), f"{address}: each of the 100 calls exactly once"
