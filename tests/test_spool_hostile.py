"""Spool files are untrusted: valid JSON with wrong types or out-of-range values, and files that are no files.

A spool file anyone in the Asterisk group can write must never crash ``retry``
before it reaches the other files, the resends and the digests, and a FIFO
where a spool file or ``recipients.json`` should be must never block the hook
or ``retry``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from missedcall.deliver import lastknown, spool
from missedcall.record import model
from missedcall.record.model import CallRecord, utcnow
from tests.agibox import abandon_peer, callids_mailed, make_pbx

GOOD = spool.to_json(
    CallRecord(callid="1796100000.9", queue="600", reason="ABANDON", source="agi", ended_at=utcnow(), wait_seconds=7)
)
#: (field, hostile value): each must be refused with the field's name in the reason.
HOSTILE = [
    ("caller_name", ["a", "list"]),
    ("queue", {"a": "map"}),
    ("callid", 1796100000),
    ("status", "sent\n"),
    ("attempts", 10**30),
    ("attempts", -1),
    ("attempts", True),
    ("wait_seconds", 1.5),
    ("position", "3"),
    ("ended_at", "0001-01-01T00:00:00+01:00"),
    ("ended_at", "9999-12-31T23:59:59-05:00"),
    ("entered_at", "1970-01-01T00:00:00+00:00"),
    ("notified_at", "yesterday"),
    ("caller_name", "x" * 100_000),
    ("last_error", "e" * 10_000),
    ("caller_num", "\ud800"),
    ("recipients", "boss@example.com"),
    ("recipients", [1, 2]),
    ("path", ["600", ["601"]]),
    ("extra", ["did"]),
    ("did", "9" * 1000),
]


@pytest.mark.parametrize(("name", "value"), HOSTILE, ids=[f"{n}-{i}" for i, (n, _) in enumerate(HOSTILE)])
def test_a_hostile_value_is_refused_naming_its_field(name: str, value: object) -> None:
    assert spool.from_json(GOOD).callid == "1796100000.9"  # the same record without the value is fine
    with pytest.raises(spool.SpoolError, match=name):
        spool.from_json({**GOOD, name: value})


def test_the_one_mapping_round_trips_a_call() -> None:
    call = CallRecord(
        callid="1796100000.8", queue="601", reason="TIMEOUT", source="sweep", path=("600", "601"),
        caller_num="+7 495", caller_name="Иван", wait_seconds=30, position=2, entered_at=utcnow(),
        ended_at=utcnow(), status="sent", attempts=2, recipients=("a@example.com",), notified_at=utcnow(),
        extra={"did": "74951234567"},
    )  # fmt: skip
    assert model.from_dict(json.loads(json.dumps(model.to_dict(call)))) == call
    # A version 1 file written before the DID had its own key still reads.
    old = {**spool.to_json(call), "extra": {"did": "74951234567"}}
    del old["did"]
    assert spool.from_json(old).extra == {"did": "74951234567"}


def test_hostile_spool_files_are_set_aside_and_the_good_ones_mailed(tmp_path: Path, db_url: str) -> None:
    box = make_pbx(tmp_path, db_url)
    spool.write(str(box.spool), model.from_dict(GOOD))
    hostile = HOSTILE[:: max(1, len(HOSTILE) // 6)]
    for index, (name, value) in enumerate(hostile):
        record = {**GOOD, "callid": f"1796100001.{index}", name: value}
        (box.spool / f"call-1796100001.{index}.json").write_text(json.dumps(record))
    last = CallRecord(callid="1796100002.1", queue="601", reason="ABANDON", source="agi", ended_at=utcnow())
    spool.write(str(box.spool), last)
    box.age_spool()
    done = box.admin("retry")
    assert done.returncode == 0, done.stderr
    assert f"{len(hostile)} unreadable file(s) set aside" in done.stdout
    assert sorted(callids_mailed(box.stored())) == ["1796100000.9", "1796100002.1"]
    assert sorted(p.name for p in box.spool.glob("bad-*")) == sorted(
        f"bad-call-1796100001.{i}.json" for i in range(len(hostile))
    )


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path, 0o640)


def test_a_fifo_at_a_spool_path_never_blocks(tmp_path: Path, db_url: str) -> None:
    box = make_pbx(tmp_path, db_url)
    # The spool file of the very call the hook is about, and the local copy of the recipients.
    _fifo(box.spool / "call-1796100003.1.json")
    _fifo(box.spool / lastknown.NAME)
    started = time.monotonic()
    run = box.run(abandon_peer("1796100003.1"), ["600"], timeout=10)
    assert run.ok and time.monotonic() - started < 10, run
    assert callids_mailed(box.stored()) == ["1796100003.1"]
    # The notifier replaced the FIFO with a real copy of the table.
    assert lastknown.load(str(box.spool)) == [
        ("600", "ops600@example.com"), ("601", "ops601@example.com"), ("*", "boss@example.com")
    ]
    with pytest.raises(spool.SpoolError, match="not a regular file"):
        _fifo(box.spool / "call-1796100003.2.json")
        spool.read(str(box.spool / "call-1796100003.2.json"))
    # retry: a pending call whose spool path is a FIFO, and a FIFO left where a settled file would be.
    with box.store() as store:
        call = CallRecord(callid="1796100003.3", queue="600", reason="ABANDON", source="agi", ended_at=utcnow())
        call.next_attempt_at = utcnow()
        assert store.claim_call(call)
    _fifo(box.spool / "call-1796100003.3.json")
    _fifo(box.spool / lastknown.NAME)
    box.age_spool()
    done = box.admin("retry", timeout=20)
    assert done.returncode == 0, done.stderr
    assert sorted(callids_mailed(box.stored())) == ["1796100003.1", "1796100003.3"]
