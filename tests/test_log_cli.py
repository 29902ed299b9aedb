"""``missedcall-admin log``: times as the mails show them (MISSEDCALL_TIMEZONE, zone named), --until, --csv."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from missedcall.record.model import CallRecord
from tests.agibox import Pbx, make_pbx

UTC = timezone.utc
# Three calls: 30 Nov 05:00 UTC (08:00 in Moscow), 1 Dec 20:30 UTC (23:30 Moscow), 2 Dec 21:30 UTC (3 Dec 00:30 Moscow).
TIMES = [datetime(2026, 11, 30, 5, 0, tzinfo=UTC), datetime(2026, 12, 1, 20, 30, tzinfo=UTC),
         datetime(2026, 12, 2, 21, 30, tzinfo=UTC)]  # fmt: skip


@pytest.fixture
def box(tmp_path: Path, db_url: str) -> Pbx:
    made = make_pbx(tmp_path, db_url, MISSEDCALL_TIMEZONE="Europe/Moscow")
    with made.store() as store:
        for i, ended in enumerate(TIMES):
            call = CallRecord(
                callid=f"1796.{i}", queue="600", reason="ABANDON", source="agi", caller_num=f"7916000000{i}",
                ended_at=ended, entered_at=ended, wait_seconds=10 + i, status="sent",
                recipients=("ops@example.com", "boss@example.com"),
            )
            store.claim_call(call)
    return made


def test_times_are_shown_in_the_configured_zone_and_named(box: Pbx) -> None:
    done = box.admin("log")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("TIME (MSK)")
    assert [line[:19] for line in lines[1:]] == ["2026-12-03 00:30:00", "2026-12-01 23:30:00", "2026-11-30 08:00:00"]


def test_until_is_exclusive_and_works_with_since(box: Pbx) -> None:
    done = box.admin("log", "--since", "2026-11-01", "--until", "2026-12-02", "--json")
    assert done.returncode == 0, done.stderr
    # --until 2026-12-02 is that day's local midnight on the box running the command (UTC here).
    assert [c["callid"] for c in json.loads(done.stdout)] == ["1796.1", "1796.0"]
    refused = box.admin("log", "--since", "2026-12-02", "--until", "2026-12-01")
    assert refused.returncode == 1
    assert refused.stderr == "missedcall-admin: error: --until must be later than --since\n"


def test_csv_has_the_json_keys_and_values(box: Pbx) -> None:
    as_json = json.loads(box.admin("log", "--json").stdout)
    done = box.admin("log", "--csv")
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader(io.StringIO(done.stdout)))
    assert list(table[0].keys()) == list(as_json[0].keys())
    assert [row["callid"] for row in table] == ["1796.2", "1796.1", "1796.0"]
    assert table[0]["recipients"] == "ops@example.com boss@example.com"
    assert table[0]["ended_at"] == as_json[0]["ended_at"] == "2026-12-02T21:30:00+00:00"
    assert table[0]["wait_seconds"] == "12"


def test_json_and_csv_together_is_a_usage_error(box: Pbx) -> None:
    done = box.admin("log", "--json", "--csv")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not allowed with argument" in done.stderr
