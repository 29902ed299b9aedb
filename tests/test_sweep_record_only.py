"""``sweep --from-start --record-only``: back-fill the call log from an old queue_log without mailing anyone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.agibox import Pbx, abandon_lines, callids_mailed, make_pbx

# Three abandons an hour ago: the history to back-fill.
NOW = int(time.time())
OLD = [line for i in range(3) for line in abandon_lines(f"{NOW - 3600 + i}.{i}", "600", at=NOW - 3600 + i * 60)]


@pytest.fixture
def box(tmp_path: Path, db_url: str) -> Pbx:
    made = make_pbx(tmp_path, db_url, MISSEDCALL_FLOOD_LIMIT="1")  # a window would hold the next real call
    made.queue_log.write_text("\n".join(OLD) + "\n", encoding="utf-8")
    return made


def test_history_is_recorded_not_mailed_and_opens_no_storm_window(box: Pbx) -> None:
    done = box.admin("sweep", "--from-start", "--record-only", "-v")
    assert done.returncode == 0, done.stderr
    calls = sorted(box.calls(), key=lambda c: c.callid)
    assert [(c.queue, c.reason, c.status, c.last_error) for c in calls] == [
        ("600", "ABANDON", "skipped", "recorded by sweep --record-only (history): not mailed")
    ] * 3
    assert box.stored() == []
    assert done.stdout.count("recorded, not mailed (--record-only)") == 3

    # The next real abandon is mailed at once: the back-fill used up no storm-control allowance.
    new = f"{NOW}.9"
    with box.queue_log.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(abandon_lines(new, "600", at=NOW - 120)) + "\n")
    again = box.admin("sweep")
    assert again.returncode == 0, again.stderr
    [mail] = box.stored()
    assert callids_mailed([mail]) == [new]
    assert sorted(mail.recipients) == ["boss@example.com", "ops600@example.com"]  # queue 600's row and the '*' row
    assert len(box.calls()) == 4


@pytest.mark.parametrize("other", ["--follow", "--dry-run"])
def test_record_only_is_one_recording_pass(box: Pbx, other: str) -> None:
    done = box.admin("sweep", "--record-only", other)
    assert done.returncode == 1
    assert done.stderr == (
        "missedcall-admin: error: --record-only is for one pass that records: not with --follow or --dry-run\n"
    )
    assert box.calls() == []
