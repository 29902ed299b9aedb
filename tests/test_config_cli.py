"""A named configuration that is missing is an error; read-only verbs create nothing (issue 9, class 7).

``--config`` / MISSEDCALL_CONFIG naming a file that is not there used to run on the defaults
(``recipients add`` wrote to the wrong database and said "added"). Only the default path may
be absent. ``log``, ``queues``, ``recipients list|export``, ``doctor`` and ``test --dry-run``
never create a database file or its folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agibox import Pbx, make_pbx

READ_ONLY = [
    ["log"],
    ["log", "--json"],
    ["queues"],
    ["recipients", "list"],
    ["recipients", "export"],
    ["test", "600", "--dry-run"],
    ["doctor"],
]
ALL_VERBS = [*READ_ONLY, ["recipients", "add", "600", "new@example.com"], ["init"], ["retry"]]


@pytest.fixture
def box(tmp_path: Path, sqlite_url: str) -> Pbx:
    return make_pbx(tmp_path, sqlite_url)


@pytest.mark.parametrize("argv", ALL_VERBS, ids=" ".join)
@pytest.mark.parametrize("how", ["--config", "MISSEDCALL_CONFIG"])
def test_a_named_config_that_is_missing_is_one_line(box: Pbx, tmp_path: Path, argv: list[str], how: str) -> None:
    missing = tmp_path / "typo" / "missedcall.env"
    elsewhere = tmp_path / "elsewhere" / "db.sqlite3"
    env = {"MISSEDCALL_DB_URL": f"sqlite:///{elsewhere}"}  # where the defaults would have gone
    if how == "--config":
        done = box.admin("--config", str(missing), *argv, **env)
    else:
        done = box.admin(*argv, **env, MISSEDCALL_CONFIG=str(missing))
    said = f"configuration: config file {missing} does not exist (named by --config or MISSEDCALL_CONFIG)"
    if argv == ["doctor"]:
        assert done.returncode == 1 and done.stderr == ""
        assert done.stdout.splitlines()[0] == (
            f"FAIL config: {said.removeprefix('configuration: ')} -> fix: point --config or MISSEDCALL_CONFIG"
            " at an existing file (install.sh writes /etc/missedcall/missedcall.env)"
        )
    else:
        assert (done.returncode, done.stdout, done.stderr) == (1, "", f"missedcall-admin: error: {said}\n")
    assert not elsewhere.parent.exists()


def test_the_default_path_may_be_absent(box: Pbx, tmp_path: Path) -> None:
    # Real settings from the environment, no file at all: the verb runs.
    done = box.admin("log", MISSEDCALL_CONFIG="", MISSEDCALL_DB_URL=box.db_url)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("argv", READ_ONLY, ids=" ".join)
def test_read_only_verbs_create_no_database_and_no_folder(box: Pbx, tmp_path: Path, argv: list[str]) -> None:
    absent = tmp_path / "not-yet" / "missedcall.sqlite3"
    box.configure(MISSEDCALL_DB_URL=f"sqlite:///{absent}")
    done = box.admin(*argv)
    assert not absent.parent.exists(), (argv, done)
    assert "Traceback" not in done.stderr
    if argv[0] == "doctor":
        assert done.returncode == 1
        assert f"FAIL database: database {absent} does not exist (run: missedcall-admin init)" in done.stdout
    elif argv[0] == "test":
        assert done.returncode == 0 and "Subject: " in done.stdout
        assert done.stderr.startswith(f"note: database {absent} does not exist (run: missedcall-admin init);")
    else:
        said = f"missedcall-admin: error: database {absent} does not exist (run: missedcall-admin init)\n"
        assert (done.returncode, done.stdout, done.stderr) == (1, "", said)


def test_writing_verbs_still_create_the_database(box: Pbx, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh" / "missedcall.sqlite3"
    box.configure(MISSEDCALL_DB_URL=f"sqlite:///{fresh}")
    done = box.admin("recipients", "add", "600", "new@example.com")
    assert (done.returncode, done.stdout) == (0, "added new@example.com for queue 600\n")
    assert fresh.is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "{missing}", "log"],
        ["log", "--config", "{missing}"],
        ["recipients", "list", "--config", "{missing}"],
        ["--config", "{good}", "recipients", "list", "--config", "{missing}"],  # the one after the verb wins
    ],
)
def test_config_before_or_after_the_verb(tmp_path: Path, argv: list[str]) -> None:
    good = tmp_path / "good.env"
    good.write_text("MISSEDCALL_DB_URL=sqlite:///" + str(tmp_path / "db.sqlite3") + "\n", encoding="utf-8")
    missing = tmp_path / "missing.env"
    argv = [a.format(missing=missing, good=good) for a in argv]
    done = subprocess.run(
        [sys.executable, "-m", "missedcall.admin.cli", *argv], capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("MISSEDCALL_")}, check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"missedcall-admin: error: configuration: config file {missing} does not exist"
        " (named by --config or MISSEDCALL_CONFIG)\n"
    )
