"""The notifier behind the door: an unknown wait is not zero, and one bad address costs only itself."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from missedcall.deliver import notify
from missedcall.deliver.health import health as delivery_health
from missedcall.record import held
from missedcall.record.model import CallRecord, utcnow
from tests.agibox import abandon_peer, callids_mailed, make_pbx

# ============================================================================ MISSEDCALL_MIN_WAIT


def test_min_wait_filters_only_a_known_wait(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    box = make_pbx(tmp_path, db_url, MISSEDCALL_MIN_WAIT="30")
    settings = box.in_this_process(monkeypatch)
    waits = {"1796200000.1": None, "1796200000.2": 5, "1796200000.3": 60, "1796200000.4": 0}
    with box.store() as store:
        for callid, wait in waits.items():
            call = CallRecord(callid=callid, queue="600", reason="ABANDON", source="agi", wait_seconds=wait)
            assert store.claim_call(call)
            notify.notify(store, settings, call, timeout=5)
    rows = {c.callid: c for c in box.calls()}
    assert {callid: rows[callid].status for callid in waits} == {
        "1796200000.1": "sent",  # unknown: mailed, not "waited 0 s"
        "1796200000.2": "skipped",
        "1796200000.3": "sent",
        "1796200000.4": "skipped",
    }
    assert rows["1796200000.2"].last_error == "waited 5 s, less than MISSEDCALL_MIN_WAIT=30"
    assert sorted(set(callids_mailed(box.stored()))) == ["1796200000.1", "1796200000.3"]


# ============================================================================ a bad address in the table

#: Addresses that passed the door once (or were written straight into the table) but break mail building.
POISONED = [
    "=?utf-8?q?a=0Ab?=@example.com",  # decodes to a line break
    "=?utf-8?b?w6k=?=@example.com",  # decodes to é: the header would name someone else than the envelope
    '"john doe"@example.com',
    "a\x01b@example.com",
    "a b@example.com",
]


@pytest.mark.parametrize("poison", POISONED, ids=range(len(POISONED)))
def test_a_bad_address_in_the_table_is_skipped_and_the_others_mailed(
    tmp_path: Path, db_url: str, poison: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = (("600", "first@example.com", ""), ("600", poison, ""), ("600", "last@example.com", ""))
    box = make_pbx(tmp_path, db_url, recipients=rows)
    run = box.run(abandon_peer("1796200001.1"), ["600"])
    assert run.ok, run
    [mailed] = box.stored()
    assert mailed.recipients == ["first@example.com", "last@example.com"]
    assert str(mailed.message["To"]) == "first@example.com, last@example.com"
    [call] = box.calls()
    assert call.status == "sent" and call.recipients == ("first@example.com", "last@example.com")
    settings = box.in_this_process(monkeypatch)
    with box.store() as store:
        status, detail, _ = delivery_health(store, settings)
    assert status == "FAIL" and "of queue 600 is skipped" in detail, detail


def test_an_address_longer_than_the_key_columns_is_skipped_and_the_others_mailed(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A table made before the columns were VARCHAR(191) may hold one; SQLite stores any length, so it shows here.
    long = "a" * 64 + "@" + "b" * 62 + "." + "c" * 61 + ".ru"  # 192 characters
    rows = (("600", "first@example.com", ""), ("600", long, ""), ("600", "last@example.com", ""))
    box = make_pbx(tmp_path, sqlite_url, recipients=rows)
    run = box.run(abandon_peer("1796200003.1"), ["600"])
    assert run.ok, run
    [mailed] = box.stored()
    assert mailed.recipients == ["first@example.com", "last@example.com"]
    [call] = box.calls()
    assert call.status == "sent" and call.recipients == ("first@example.com", "last@example.com")
    settings = box.in_this_process(monkeypatch)
    with box.store() as store:
        status, detail, _ = delivery_health(store, settings)
    assert status == "FAIL" and "is longer than 191 characters" in detail, detail


def test_a_bad_address_with_held_calls_loses_only_its_digest(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, db_url)
    now = utcnow()
    # Sorted as retry sends them: the poisoned one between the two good ones.
    addresses = {
        "1796200002.1": "0first@example.com",
        "1796200002.2": "=?utf-8?q?a=0Ab?=@example.com",
        "1796200002.3": "zlast@example.com",
    }
    with box.store() as store:
        for callid, email in addresses.items():
            call = CallRecord(callid=callid, queue="600", reason="ABANDON", source="agi", ended_at=now)
            call.status, call.notified_at = "held", now
            assert store.claim_call(call)
            held.hold(store, callid, email, now - timedelta(minutes=10), now - timedelta(minutes=1))
    done = box.admin("retry")
    assert done.returncode == 0, done.stderr
    assert sorted(m.recipients[0] for m in box.stored()) == ["0first@example.com", "zlast@example.com"]
    rows = {c.callid: c for c in box.calls()}
    assert rows["1796200002.1"].status == rows["1796200002.3"].status == "sent"
    assert rows["1796200002.2"].status == "failed" and "encoded word" in rows["1796200002.2"].last_error
    settings = box.in_this_process(monkeypatch)
    with box.store() as store:
        status, detail, _ = delivery_health(store, settings)
    assert status == "FAIL" and "digest to =?utf-8?q?a=0Ab?=@example.com" in detail, detail
