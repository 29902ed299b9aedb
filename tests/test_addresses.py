"""E-mail addresses are checked at the door the way the mail builder uses them (issue 9, class 1).

Every value here passed the old pattern or is one a careless admin types; each is refused with one
exact line by ``recipients add``, ``recipients import`` (nothing half-imported), MISSEDCALL_FROM
and MISSEDCALL_FALLBACK_TO, and one already in the table is a doctor FAIL naming the fix.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from missedcall import config
from missedcall.admin import cli
from tests.agibox import Pbx, make_pbx
from tests.support.cli import run_cli

#: Addresses the builder would change or choke on.
BAD = [
    "=?utf-8?q?x=0D=0ABcc:_evil?=@example.com",  # an RFC 2047 encoded word as the local part
    "ops=?x@example.com",  # "=?" anywhere
    "a..b@example.com",  # not a dot-atom: email writes it back with a defect
    ".ops@example.com",
    "ops.@example.com",
    '"a b"@example.com',  # quoted local part
    "ops\t@example.com",  # a control character
    "опс@example.com",  # non-ASCII local part
    "ops@exa_mple.com",
    "ops@-example.com",
    "x" * 65 + "@example.com",  # local part over 64
]
GOOD = ["ops@example.com", "o'brien+queue600@mail.example.com", "a@localhost", "x{y}|z~@example.com"]


@pytest.fixture
def box(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Pbx:
    made = make_pbx(tmp_path, sqlite_url)
    made.in_this_process(monkeypatch)
    return made


def test_the_cheap_check_and_the_round_trip_agree() -> None:
    # config checks with the import-free half (the AGI reads config on every call): it must
    # never let through what the round-trip through email refuses.
    for value in BAD:
        assert not config.is_address(value), value
        assert not config.is_plain_address(value), value
    for value in GOOD:
        assert config.is_address(value) and config.is_plain_address(value), value


@pytest.mark.parametrize("value", BAD)
def test_recipients_add_refuses(box: Pbx, capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, out, err = run_cli(["recipients", "add", "600", value], capsys)
    shown = cli.printable(value, 60)
    assert (code, out) == (2, "")
    assert err == (
        f"missedcall-admin recipients add: error: argument EMAIL: {shown!r} is not a plain e-mail address"
        " (like ops@example.com) (see --help)\n"
    )
    with box.store() as store:
        assert value not in [r.email for r in store.recipients()]


def test_recipients_add_refuses_an_address_longer_than_its_column(box: Pbx, capsys: pytest.CaptureFixture[str]) -> None:
    value = "a" * 64 + "@" + "b" * 62 + "." + "c" * 61 + ".ru"  # 192 characters: RFC 5321 allows it, the key not
    code, out, err = run_cli(["recipients", "add", "600", value], capsys)
    shown = cli.printable(value, 60)
    assert (code, out, err) == (
        2, "", f"missedcall-admin recipients add: error: argument EMAIL: {shown!r} is longer than 191 characters"
        " (see --help)\n",
    )  # fmt: skip
    assert run_cli(["recipients", "add", "600", value[1:]], capsys)[0] == 0


def test_recipients_add_takes_good_ones(box: Pbx, capsys: pytest.CaptureFixture[str]) -> None:
    for value in GOOD:
        assert run_cli(["recipients", "add", "600", value], capsys) == (0, f"added {value} for queue 600\n", "")


@pytest.mark.parametrize("value", BAD[:6])
def test_recipients_import_refuses_the_file_naming_the_line(
    box: Pbx, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    path = box.tmp / "team.csv"
    rows = [["queue", "email", "name"], ["600", "n1@example.com", "A"], ["601", value, "B"], ["602", "n2@example.com"]]
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    code, out, err = run_cli(["recipients", "import", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err == f"missedcall-admin: error: {path}:3: {cli.printable(value, 60)!r} is not a plain e-mail address\n"
    with box.store() as store:
        emails = {r.email for r in store.recipients()}
    assert not emails & {"n1@example.com", "n2@example.com", value}  # nothing half-imported


@pytest.mark.parametrize("key", ["MISSEDCALL_FROM", "MISSEDCALL_FALLBACK_TO"])
@pytest.mark.parametrize("value", [*BAD[:6], "ops@example.com, =?utf-8?b?eA==?=@example.com"])
def test_from_and_fallback_are_config_errors(
    box: Pbx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    bad = value.split(", ")[-1] if key == "MISSEDCALL_FALLBACK_TO" else value
    code, out, err = run_cli(["queues"], capsys)
    assert (code, out) == (1, "")
    assert err == f"missedcall-admin: error: configuration: {key}: {bad!r} is not a plain e-mail address\n"


def test_doctor_fails_a_bad_address_in_the_table_and_remove_clears_it(
    box: Pbx, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "=?utf-8?q?boss?=@example.com"
    with box.store() as store:
        store.add_recipient("601", bad, "")  # as an older version let in
    _code, out, _err = run_cli(["doctor", "--state", str(box.tmp / "no-install.state")], capsys)
    [line] = [x for x in out.splitlines() if x.startswith(("OK   recipients", "WARN recipients", "FAIL recipients"))]
    assert line == (
        f"FAIL recipients: {bad!r} (queue 601) is not a plain e-mail address: it is left out of every mail"
        f" -> fix: missedcall-admin recipients remove 601 '{bad}'"
    )
    assert run_cli(["recipients", "remove", "601", bad], capsys) == (0, f"removed {bad} from queue 601\n", "")
    _code, out, _err = run_cli(["doctor", "--state", str(box.tmp / "no-install.state")], capsys)
    assert "FAIL recipients" not in out and "recipients: " in out
