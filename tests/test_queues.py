"""Per-queue settings: ``queues set`` and what the notifier does with them, on MariaDB and SQLite.

A queue's own label, language, minimum wait and on/off beat FreePBX's description and the global settings;
``queues`` says where every value comes from.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.agibox import Pbx, abandon_lines, abandon_peer, make_pbx
from tests.paths import FIXTURES


@pytest.fixture
def box(tmp_path: Path, db_url: str) -> Pbx:
    return make_pbx(tmp_path, db_url)


def listing(box: Pbx) -> dict[str, dict[str, object]]:
    done = box.admin("queues", "--json")
    assert done.returncode == 0, done.stderr
    return {q["queue"]: q for q in json.loads(done.stdout)}


def test_set_then_list_shows_each_value_and_its_source(box: Pbx) -> None:
    done = box.admin("queues", "set", "600", "--label", "Поддержка", "--language", "ru", "--min-wait", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "queue 600: label=Поддержка, language=ru, min_wait=5",
        "now: label 'Поддержка', language ru, minimum wait 5 s, mails on",
    ]
    q600, q601 = listing(box)["600"], listing(box)["601"]
    assert (q600["label"], q600["language"], q600["min_wait"], q600["enabled"]) == ("Поддержка", "ru", 5, True)
    assert q600["sources"] == {"label": "queue", "language": "queue", "min_wait": "queue", "enabled": "global"}
    assert (q601["label"], q601["language"], q601["sources"]) == (
        "", "en", {"label": "global", "language": "global", "min_wait": "global", "enabled": "global"},
    )
    table = box.admin("queues").stdout.splitlines()
    assert table[0].split() == ["QUEUE", "LABEL", "LANGUAGE", "MIN", "WAIT", "MAILS", "RECIPIENTS"]
    assert "Поддержка (queue)" in table[1] and "ru (queue)" in table[1] and "5 s (queue)" in table[1]


def test_the_mail_uses_the_queues_label_and_language(box: Pbx) -> None:
    assert box.admin("queues", "set", "600", "--label", "Поддержка", "--language", "ru").returncode == 0
    run = box.run(abandon_peer("1796200000.1"), ["600"])
    assert run.ok, run
    [mail] = box.mails()
    assert mail["Subject"] == "Пропущен: Поддержка (600) — Caller 5551234"


def test_off_records_without_mail_and_on_mails_again(box: Pbx) -> None:
    assert box.admin("queues", "set", "600", "--off").returncode == 0
    assert box.run(abandon_peer("1796200001.1"), ["600"]).ok
    [call] = box.calls()
    assert (call.status, call.last_error) == (
        "skipped", "queue 600 is switched off (missedcall-admin queues set 600 --on)",
    )
    assert box.stored() == []
    assert box.admin("queues", "set", "600", "--on").returncode == 0
    assert box.run(abandon_peer("1796200001.2"), ["600"]).ok
    assert len(box.stored()) == 1


def test_a_queues_minimum_wait_beats_the_global_one(box: Pbx) -> None:
    box.configure(MISSEDCALL_MIN_WAIT="0")
    assert box.admin("queues", "set", "600", "--min-wait", "30").returncode == 0
    now = int(time.time())
    # queue_log says both callers waited 12 s: under 600's own minimum, over the global one.
    lines = abandon_lines("1796200002.1", "600", at=now - 20) + abandon_lines("1796200002.2", "601", at=now - 20)
    box.queue_log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert box.run(abandon_peer("1796200002.1", "600"), ["600"]).ok
    assert box.run(abandon_peer("1796200002.2", "601"), ["601"]).ok
    calls = {c.callid: c for c in box.calls()}
    assert calls["1796200002.1"].status == "skipped"
    assert "less than queue 600's minimum wait of 30 s" in calls["1796200002.1"].last_error
    assert calls["1796200002.2"].status == "sent"


def test_clear_goes_back_to_the_global_value_and_drops_an_empty_row(box: Pbx) -> None:
    assert box.admin("queues", "set", "600", "--label", "X", "--off").returncode == 0
    assert box.admin("queues", "set", "600", "--clear", "enabled").returncode == 0
    assert listing(box)["600"]["sources"]["enabled"] == "global"
    assert box.admin("queues", "set", "600", "--clear", "all").returncode == 0
    with box.store() as store:
        assert store.rows("SELECT queue FROM missedcall_queues") == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["600"], "nothing to set: give --label, --language, --min-wait, --on, --off or --clear"),
        (["600", "--label", "A", "--clear", "label"], "--label and --clear label contradict each other"),
        (["600", "--off", "--clear", "enabled"], "--on/--off and --clear enabled contradict each other"),
        (["*", "--off"], "'*' is not a queue: per-queue settings name one queue (the global ones are in the config)"),
    ],
)
def test_contradictions_are_one_line(box: Pbx, argv: list[str], message: str) -> None:
    done = box.admin("queues", "set", *argv)
    assert done.returncode == 1
    assert done.stderr == f"missedcall-admin: error: {message}\n"


@pytest.mark.parametrize("hostile", ["a\nb", "x" * 500, "=?utf-8?q?evil?=", "<script>", "a\rBcc: x@example.com"])
def test_hostile_labels_are_cleaned_and_bounded(box: Pbx, hostile: str) -> None:
    done = box.admin("queues", "set", "600", "--label", hostile)
    assert done.returncode == 0, done.stderr
    label = str(listing(box)["600"]["label"])
    assert "\n" not in label and "\x00" not in label and len(label) <= 128


def test_import_script_stores_the_labels_it_finds(box: Pbx) -> None:
    done = box.admin("import-script", str(FIXTURES / "scripts" / "noanswer-ifelif.sh"))
    assert done.returncode == 0, done.stderr
    assert "queue 600 is labelled 'Отдел продаж' (missedcall-admin queues)" in done.stdout
    found = listing(box)
    assert (found["600"]["label"], found["601"]["label"]) == ("Отдел продаж", "Support")
