"""One bad item never silences the others: ``retry`` parks a poisoned spool file, call or digest and goes on.

Each test puts one poisoned item between two good ones, runs the real
``missedcall-admin retry`` (its own process, the sendmail stand-in, the real
database) and shows the good ones mailed, the bad one parked with its reason,
named by doctor's delivery check, and never tried again.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from missedcall.deliver import retry, spool
from missedcall.deliver.health import health as delivery_health
from missedcall.record import held
from missedcall.record.model import CallRecord, utcnow
from tests.agibox import Pbx, callids_mailed, make_pbx

#: A time every database keeps but no zone east of UTC can show: formatting it in the mail overflows.
FAR = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


def _call(callid: str, **fields: object) -> CallRecord:
    values: dict[str, object] = {"queue": "600", "reason": "ABANDON", "source": "agi", "ended_at": utcnow()}
    values.update(fields)
    return CallRecord(callid=callid, **values)  # type: ignore[arg-type]


def _box(tmp_path: Path, db_url: str) -> Pbx:
    return make_pbx(tmp_path, db_url, MISSEDCALL_TIMEZONE="Asia/Tokyo")


def _health(box: Pbx, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, str]:
    settings = box.in_this_process(monkeypatch)
    with box.store() as store:
        return delivery_health(store, settings)


def test_a_poisoned_spool_file_is_set_aside_and_the_others_are_mailed(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = _box(tmp_path, db_url)
    spool.write(str(box.spool), _call("1796000000.1"))
    # Valid JSON, a version 1 record, but a caller name no database can store (a lone surrogate).
    poisoned = spool.to_json(_call("1796000000.2"))
    poisoned["caller_name"] = "\ud800"
    (box.spool / "call-1796000000.2.json").write_text(json.dumps(poisoned))
    spool.write(str(box.spool), _call("1796000000.3"))
    box.age_spool()

    done = box.admin("retry")
    assert done.returncode == 0, done.stderr
    assert sorted(callids_mailed(box.stored())) == ["1796000000.1", "1796000000.3"]
    assert {c.callid: c.status for c in box.calls()} == {"1796000000.1": "sent", "1796000000.3": "sent"}
    assert (box.spool / "bad-call-1796000000.2.json").is_file() and box.spooled() == []
    status, detail, fix = _health(box, monkeypatch)
    assert status == "FAIL" and "bad-call-1796000000.2.json" in detail and "retry --failed" in fix
    # Nothing is tried again: the next run has nothing to do.
    again = box.admin("retry")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert len(box.stored()) == 2


def test_a_run_where_everything_was_parked_exits_non_zero(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = _box(tmp_path, db_url)
    with box.store() as store:
        assert store.claim_call(_call("1796000001.1", ended_at=FAR, next_attempt_at=utcnow() - timedelta(minutes=1)))
    done = box.admin("retry")
    assert done.returncode == 1 and "call 1796000001.1" in done.stdout, (done.stdout, done.stderr)
    assert box.stored() == []


def test_a_poisoned_call_is_parked_and_the_others_are_mailed(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = _box(tmp_path, db_url)
    due = utcnow() - timedelta(minutes=1)
    with box.store() as store:
        assert store.claim_call(_call("1796000002.1", next_attempt_at=due))
        assert store.claim_call(_call("1796000002.2", ended_at=FAR, next_attempt_at=due))
        assert store.claim_call(_call("1796000002.3", next_attempt_at=due))

    done = box.admin("retry")
    assert done.returncode == 0, done.stderr
    assert sorted(callids_mailed(box.stored())) == ["1796000002.1", "1796000002.3"]
    rows = {c.callid: c for c in box.calls()}
    assert rows["1796000002.1"].status == rows["1796000002.3"].status == "sent"
    bad = rows["1796000002.2"]
    assert bad.status == "failed" and bad.last_error.startswith(retry.PARKED + "OverflowError"), bad.last_error
    status, detail, _ = _health(box, monkeypatch)
    assert status == "FAIL" and "call 1796000002.2 parked" in detail
    for _ in range(2):  # never again, never in a loop
        assert box.admin("retry").returncode == 0
    assert len(box.stored()) == 2 and {c.callid: c.status for c in box.calls()}["1796000002.2"] == "failed"


def test_a_poisoned_digest_is_parked_and_the_other_digests_go(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = _box(tmp_path, db_url)
    now = utcnow()
    addresses = {"1796000003.1": "a@example.com", "1796000003.2": "b@example.com", "1796000003.3": "c@example.com"}
    with box.store() as store:
        for callid, email in addresses.items():
            ended = FAR if callid.endswith(".2") else now
            assert store.claim_call(_call(callid, ended_at=ended, status="held", notified_at=now))
            held.hold(store, callid, email, now - timedelta(minutes=10), now - timedelta(minutes=1))

    done = box.admin("retry")
    assert done.returncode == 0, done.stderr
    digests = [m for m in box.stored() if m.message["X-Missedcall-Digest"]]
    assert sorted(m.recipients[0] for m in digests) == ["a@example.com", "c@example.com"]
    rows = {c.callid: c for c in box.calls()}
    assert rows["1796000003.1"].status == rows["1796000003.3"].status == "sent"
    assert rows["1796000003.2"].status == "failed" and retry.PARKED in rows["1796000003.2"].last_error
    status, detail, _ = _health(box, monkeypatch)
    assert status == "FAIL" and "digest to b@example.com" in detail
    assert box.admin("retry").returncode == 0
    assert Counter(m.recipients[0] for m in box.stored()) == {"a@example.com": 1, "c@example.com": 1}


def test_a_poisoned_call_in_a_backlog_sent_in_parallel(tmp_path: Path, db_url: str) -> None:
    """Past retry.PARALLEL_FROM due calls, WORKERS connections share them: the poison is parked there too."""
    # A flood limit above the backlog, so that every good call gets its own single mail.
    box = make_pbx(tmp_path, db_url, MISSEDCALL_TIMEZONE="Asia/Tokyo", MISSEDCALL_FLOOD_LIMIT="100")
    due = utcnow() - timedelta(minutes=1)
    count = retry.PARALLEL_FROM + 2
    with box.store() as store:
        for index in range(count):
            ended = FAR if index == count // 2 else utcnow()
            assert store.claim_call(_call(f"1796000004.{index}", ended_at=ended, next_attempt_at=due))
    done = box.admin("retry")
    assert done.returncode == 0, done.stderr
    poisoned = f"1796000004.{count // 2}"
    good = sorted(f"1796000004.{i}" for i in range(count) if i != count // 2)
    assert sorted(callids_mailed(box.stored())) == good, done.stdout
    statuses = Counter(c.status for c in box.calls())
    assert statuses == {"sent": count - 1, "failed": 1}
    assert f"call {poisoned}" in done.stdout


def test_an_unexpected_error_on_one_spool_file_parks_only_that_file(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault injected at the real step (reading the second file) for an error no validation foresaw."""
    box = _box(tmp_path, db_url)
    for index in (1, 2, 3):
        spool.write(str(box.spool), _call(f"1796000005.{index}"))
    box.age_spool()
    settings = box.in_this_process(monkeypatch)
    real_read = spool.read

    def read(path: str) -> spool.Spooled:
        if path.endswith("call-1796000005.2.json"):
            raise MemoryError("injected")
        return real_read(path)

    monkeypatch.setattr(spool, "read", read)
    with box.store() as store:
        report = retry.run(store, settings)
    assert report.parked == ["spool file call-1796000005.2.json"] and not report.all_failed()
    assert sorted(callids_mailed(box.stored())) == ["1796000005.1", "1796000005.3"]
    assert (box.spool / "bad-call-1796000005.2.json").is_file()
