"""``--json`` on the verbs that report checks and runs: doctor and retry, for monitoring and scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from missedcall.record.model import utcnow
from tests.agibox import Pbx, abandon_lines, abandon_peer, make_pbx


@pytest.fixture
def box(tmp_path: Path, db_url: str) -> Pbx:
    return make_pbx(tmp_path, db_url)


def test_doctor_json_says_what_the_lines_say(box: Pbx) -> None:
    text = box.admin("doctor")
    as_json = box.admin("doctor", "--json")
    assert as_json.returncode == text.returncode  # exit 1 on a FAIL either way
    checks = json.loads(as_json.stdout)
    lines = text.stdout.splitlines()
    assert len(checks) == len(lines) > 5
    for check, line in zip(checks, lines):
        assert set(check) == {"status", "check", "detail", "fix"}
        assert line.startswith(f"{check['status']:<4} {check['check']}: {check['detail']}")
        assert (" -> fix: " in line) == bool(check["fix"])
    password = box.db_url.split(":", 2)[2].split("@", 1)[0] if box.db_url.startswith("mysql") else ""
    if password:
        assert password not in as_json.stdout


def test_retry_json_counts_what_it_did(box: Pbx) -> None:
    run = box.run(abandon_peer("1796100000.1"), ["600"], FAKE_SENDMAIL_EXIT="75")  # the relay fails: pending
    assert run.ok, run
    with box.store() as store:
        store.update_call("1796100000.1", next_attempt_at=utcnow())
    done = box.admin("retry", "--json")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["outcomes"] == {"sent": 1}
    assert report["handled"] == 1 and report["parked"] == [] and report["bad"] == 0
    assert report["summary"].startswith("retry: ")


def test_sweep_json_counts_one_pass(box: Pbx) -> None:
    now = int(utcnow().timestamp())
    box.write_queue_log([*abandon_lines(f"{now - 600}.1", "600", at=now - 600), "garbage without bars"])
    dry = box.admin("sweep", "--from-start", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    [report] = json.loads(dry.stdout)  # the verdict lines of --dry-run stay out of the JSON
    assert report["ran"] and report["dry_run"] and report["missed"] == 1 and report["garbage"] == 1
    done = box.admin("sweep", "--from-start", "--json")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["recorded"] == {"sent": 1} and report["lines"] == 3
    assert report["summary"].startswith("sweep: read 3 line(s)")
    again = json.loads(box.admin("sweep", "--json").stdout)[0]
    assert again["ran"] and again["lines"] == 0 and again["recorded"] == {}


@pytest.mark.parametrize("other", ["--follow", "-v"])
def test_sweep_json_is_one_quiet_pass(box: Pbx, other: str) -> None:
    done = box.admin("sweep", "--json", other)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "--json" in done.stderr
