"""doctor's ``callbacks`` line: which CDR source, whether it can be read; WARN (feature off) without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from missedcall.admin import checks_resolve
from missedcall.admin.doctor import Doctor
from missedcall.config import load_settings
from tests.support.cdr import create_cdr_table
from tests.support.mariadb import MariaDBDatabase


def check(tmp_path: Path, **values: str) -> tuple[str, str]:
    doc = Doctor(str(tmp_path / "no-install.state"))
    doc.settings = load_settings({
        "MISSEDCALL_CONFIG": str(tmp_path / "absent.env"), "MISSEDCALL_SPOOL_DIR": str(tmp_path),
        "MISSEDCALL_DB_URL": f"sqlite:///{tmp_path}/mc.sqlite3",
        "MISSEDCALL_FREEPBX_CONF": str(tmp_path / "no-freepbx.conf"), **values,
    })  # fmt: skip
    found = checks_resolve.check_cdr(doc)
    assert found.name == "callbacks"
    return found.status, found.detail + " -> " + found.fix


def test_no_source_is_a_warning_that_says_how_to_turn_it_on(tmp_path: Path) -> None:
    status, detail = check(tmp_path, MISSEDCALL_CDR_URL="")
    assert status == "WARN" and "callbacks are not tracked" in detail and "MISSEDCALL_CDR_URL=" in detail


def test_master_csv(tmp_path: Path) -> None:
    master = tmp_path / "Master.csv"
    status, detail = check(tmp_path, MISSEDCALL_CDR_URL=f"csv:{master}")
    assert status == "WARN" and "does not exist" in detail
    master.write_text("")
    status, detail = check(tmp_path, MISSEDCALL_CDR_URL=f"csv:{master}", MISSEDCALL_RESOLVE_HOURS="48")
    assert (status, detail.split(" -> ")[0]) == (
        "OK",
        f"reading csv:{master} (MISSEDCALL_CDR_URL); misses watched for 48 h",
    )


def test_mariadb_table_readable_missing_and_a_wrong_password(tmp_path: Path, mariadb_database: MariaDBDatabase) -> None:
    url = mariadb_database.url
    status, detail = check(tmp_path, MISSEDCALL_CDR_URL=url + "?table=cdr")
    assert status == "WARN" and "no table cdr" in detail
    create_cdr_table(mariadb_database)
    status, detail = check(tmp_path, MISSEDCALL_CDR_URL=url + "?table=cdr")
    assert status == "OK" and f"/{mariadb_database.name} table cdr" in detail
    wrong = url.replace(mariadb_database.password, "Wr0ng-pw-123")
    status, detail = check(tmp_path, MISSEDCALL_CDR_URL=wrong)
    assert status == "WARN" and "Access denied" in detail
    assert "Wr0ng-pw-123" not in detail and mariadb_database.password not in detail


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MISSEDCALL_CDR_URL", "ftp://x"),
        ("MISSEDCALL_REGION", "ZZ"),
        ("MISSEDCALL_REPORT_HOUR", "25:00"),
        ("MISSEDCALL_FOLLOWUP", "sometimes"),
    ],
)
def test_a_bad_key_is_a_failure_naming_it(tmp_path: Path, key: str, value: str) -> None:
    status, detail = check(tmp_path, **{key: value})
    assert status == "FAIL" and key in detail
