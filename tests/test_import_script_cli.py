"""``missedcall-admin import-script``: the article's hook script moves into missedcall in one command.

Run for real (a subprocess, a real MariaDB or SQLite, the sendmail stand-in), as an admin moving over
from the article would: dry run, import, then a test mail reaches the addresses the script had.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from dotenv import dotenv_values

from tests.agibox import Pbx, make_pbx
from tests.mailbox import read_messages
from tests.paths import FIXTURES

ARTICLE = FIXTURES / "scripts" / "noanswer-article.sh"


@pytest.fixture
def box(tmp_path: Path, db_url: str) -> Pbx:
    return make_pbx(tmp_path, db_url, recipients=())


def fallback(box: Pbx) -> str | None:
    return dotenv_values(box.config_file).get("MISSEDCALL_FALLBACK_TO")


def rows(box: Pbx) -> list[tuple[str, str]]:
    with box.store() as store:
        return sorted((r.queue, r.email) for r in store.recipients())


def test_dry_run_prints_every_row_and_changes_nothing(box: Pbx) -> None:
    before = box.config_file.read_bytes()
    done = box.admin("import-script", str(ARTICLE), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "queue 600      sales@example.ru  (line 8)",
        "queue 601      support@example.ru  (line 9)",
        "queue 601      boss@example.ru  (line 9)",
        "queue 602      support@example.ru  (line 9)",
        "queue 602      boss@example.ru  (line 9)",
        "default  MISSEDCALL_FALLBACK_TO=admin@example.ru  (line 14)",
        "dry run: nothing changed",
    ]
    assert rows(box) == [] and box.config_file.read_bytes() == before


def test_import_then_a_test_mail_reaches_the_scripts_addresses(box: Pbx) -> None:
    done = box.admin("import-script", str(ARTICLE))
    assert done.returncode == 0, done.stderr
    assert "imported 5 new recipient(s), 0 already present" in done.stdout
    assert rows(box) == [
        ("600", "sales@example.ru"),
        ("601", "boss@example.ru"),
        ("601", "support@example.ru"),
        ("602", "boss@example.ru"),
        ("602", "support@example.ru"),
    ]
    # The default branch became the fallback, in the config file, which stays 0640.
    assert fallback(box) == "admin@example.ru"
    assert stat.S_IMODE(box.config_file.stat().st_mode) == 0o640
    assert f"set MISSEDCALL_FALLBACK_TO=admin@example.ru in {box.config_file}" in done.stdout

    assert box.admin("test", "601").returncode == 0
    assert box.admin("test", "777").returncode == 0  # a queue the script's "*)" covered
    first, second = read_messages(box.maildir)
    assert sorted(a.strip() for a in first["To"].split(",")) == ["boss@example.ru", "support@example.ru"]
    assert second["To"] == "admin@example.ru"

    again = box.admin("import-script", str(ARTICLE))  # idempotent
    assert again.returncode == 0
    assert "imported 0 new recipient(s), 5 already present" in again.stdout
    assert "MISSEDCALL_FALLBACK_TO is already admin@example.ru" in again.stdout


def test_default_as_star_rows_and_an_existing_fallback_is_left_alone(box: Pbx) -> None:
    box.configure(MISSEDCALL_FALLBACK_TO="ops@example.com")
    done = box.admin("import-script", str(ARTICLE), "--default", "star")
    assert done.returncode == 0, done.stderr
    assert ("*", "admin@example.ru") in rows(box)
    assert fallback(box) == "ops@example.com"

    other = box.admin("import-script", str(FIXTURES / "scripts" / "noanswer-ifelif.sh"))
    assert other.returncode == 0, other.stderr
    assert "MISSEDCALL_FALLBACK_TO is ops@example.com; left as it is." in other.stdout
    assert fallback(box) == "ops@example.com"


@pytest.mark.parametrize(
    "bad",
    ["=?utf-8?q?x?=@example.com", "a..b@example.com", "ops@exa_mple.com"],
)
def test_one_bad_address_refuses_the_whole_script_naming_its_line(box: Pbx, tmp_path: Path, bad: str) -> None:
    script = tmp_path / "hook.sh"
    script.write_text(
        f'case "$3" in\n600) TO=good@example.com ;;\n601) TO=\'{bad}\' ;;\nesac\nmail -s x $TO\n', encoding="utf-8"
    )
    done = box.admin("import-script", str(script))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"missedcall-admin: error: {script}:3: {bad!r} is not a plain e-mail address"
    ]
    assert rows(box) == []  # the good row was not imported either


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x7fELF\x00\x00", "this is not a shell script (it contains NUL bytes)"),
        (b'case "$3" in\n600) TO="a@example.com ;;\nesac\n', "line 2: unterminated double quote"),
        (b"echo nothing\n", "no queue → address rule found (expected a case or if on the queue and a mail command)"),
    ],
)
def test_scripts_it_cannot_read_are_one_line(box: Pbx, tmp_path: Path, content: bytes, message: str) -> None:
    script = tmp_path / "hook.sh"
    script.write_bytes(content)
    done = box.admin("import-script", str(script))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"missedcall-admin: error: {script}: {message}"]
    assert rows(box) == []


def test_a_missing_script_is_one_line(box: Pbx, tmp_path: Path) -> None:
    done = box.admin("import-script", str(tmp_path / "nope.sh"))
    assert done.returncode == 1
    missing = tmp_path / "nope.sh"
    assert done.stderr.splitlines() == [f"missedcall-admin: error: cannot read {missing}: No such file or directory"]
