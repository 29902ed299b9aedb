"""``recipients import`` takes the CSV files people really have: Excel's semicolons, tabs, Windows-1251."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agibox import Pbx, make_pbx


@pytest.fixture
def box(tmp_path: Path, db_url: str) -> Pbx:
    return make_pbx(tmp_path, db_url, recipients=())


def rows(box: Pbx) -> list[tuple[str, str, str]]:
    with box.store() as store:
        return sorted((r.queue, r.email, r.name) for r in store.recipients())


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        # Excel "CSV (разделители - точка с запятой)" on a Russian-locale Windows: cp1251, semicolons.
        ("queue;email;name\r\n600;sales@example.com;Иван Петров\r\n601;support@example.com;\r\n", "cp1251"),
        ("\ufeffqueue;email;name\n600;sales@example.com;Иван Петров\n601;support@example.com\n", "utf-8"),
        ("600\tsales@example.com\tИван Петров\n601\tsupport@example.com\n", "utf-8"),
        ('# our team\n600,sales@example.com,"Иван Петров"\n601,support@example.com\n', "utf-8"),
    ],
    ids=["excel-ru-cp1251-semicolon", "utf8-bom-semicolon", "tab", "comma"],
)
def test_every_common_shape_imports_the_same_rows(box: Pbx, tmp_path: Path, content: str, encoding: str) -> None:
    path = tmp_path / "team.csv"
    path.write_bytes(content.encode(encoding))
    done = box.admin("recipients", "import", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "imported 2 new recipient(s), 0 already present\n"
    assert rows(box) == [("600", "sales@example.com", "Иван Петров"), ("601", "support@example.com", "")]


def test_a_comma_inside_a_quoted_name_does_not_make_it_a_comma_file(box: Pbx, tmp_path: Path) -> None:
    path = tmp_path / "team.csv"
    path.write_text('600;sales@example.com;"Petrov, Ivan"\n', encoding="utf-8")
    done = box.admin("recipients", "import", str(path))
    assert done.returncode == 0, done.stderr
    assert rows(box) == [("600", "sales@example.com", "Petrov, Ivan")]


def test_a_bad_row_in_a_semicolon_file_refuses_it_all_naming_the_line(box: Pbx, tmp_path: Path) -> None:
    path = tmp_path / "team.csv"
    path.write_text("600;sales@example.com\n601;not-an-address\n", encoding="utf-8")
    done = box.admin("recipients", "import", str(path))
    assert done.returncode == 1
    assert done.stderr == f"missedcall-admin: error: {path}:2: 'not-an-address' is not a plain e-mail address\n"
    assert rows(box) == []


def test_bytes_that_no_encoding_takes_are_one_line(box: Pbx, tmp_path: Path) -> None:
    path = tmp_path / "team.csv"
    path.write_bytes(b"600,\x98\xff@example.com\n")  # 0x98 is no character in Windows-1251 either
    done = box.admin("recipients", "import", str(path))
    assert done.returncode == 1
    assert done.stderr == f"missedcall-admin: error: {path}: not a UTF-8 (or Windows-1251) CSV file\n"
