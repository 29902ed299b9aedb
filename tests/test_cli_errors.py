"""Where one line is promised, one line comes (issue 9, class 9): never a traceback.

``log --since`` far back, ``doctor --state`` on a folder, a device or a file that is not UTF-8,
an unknown MISSEDCALL_TIMEZONE, a .env line python-dotenv cannot parse, an unknown MISSEDCALL_*
key. Each asserts the exact line and the exit code.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from missedcall.record.model import CallRecord, utcnow
from tests.agibox import Pbx, make_pbx
from tests.support.cli import run_cli

VERBS = [["log"], ["queues"], ["recipients", "list"], ["test", "600", "--dry-run"], ["retry"], ["sweep"]]


@pytest.fixture
def box(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Pbx:
    made = make_pbx(tmp_path, sqlite_url)
    made.in_this_process(monkeypatch)
    return made


def _doctor_line(out: str, name: str) -> str:
    [line] = [x for x in out.splitlines() if x.split(" ", 1)[1].lstrip().startswith(f"{name}: ")]
    return line


@pytest.mark.parametrize("since", ["999999d", "999999h", "999999m", "0001-01-01", "1900-01-01"])
def test_log_since_far_back_lists_everything(box: Pbx, capsys: pytest.CaptureFixture[str], since: str) -> None:
    with box.store() as store:
        now = utcnow()
        call = CallRecord(callid="1796200000.1", queue="600", path=("600",), caller_num="5550001", reason="ABANDON",
                          entered_at=now - timedelta(seconds=30), ended_at=now, source="agi")  # fmt: skip
        assert store.claim_call(call)
    code, out, err = run_cli(["log", "--since", since, "--json"], capsys)
    assert (code, err) == (0, "")
    assert '"callid": "1796200000.1"' in out


def test_log_since_far_ahead_lists_nothing(box: Pbx, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["log", "--since", "9999-12-31"], capsys) == (0, "no missed calls recorded for that filter\n", "")


@pytest.mark.parametrize(
    ("make", "said"),
    [
        ("folder", "is a directory"),
        ("device", "is not a regular file"),
        ("latin1", "is not UTF-8 text"),
        ("huge", "is larger than 64 KB, not install.sh's record"),
    ],
)
def test_doctor_state_that_is_not_a_state_file(
    box: Pbx, capsys: pytest.CaptureFixture[str], make: str, said: str
) -> None:
    path = box.tmp / "install.state"
    if make == "folder":
        path.mkdir()
    elif make == "device":
        path = Path("/dev/zero")
    elif make == "latin1":
        path.write_bytes("asterisk_user=asterisk\nprefix=/opt/caf\xe9\n".encode("latin-1"))
    else:
        path.write_bytes(b"# " + b"x" * (70 * 1024) + b"\n")
    code, out, err = run_cli(["doctor", "--state", str(path)], capsys)
    assert code == 1 and err == "" and "Traceback" not in out
    assert out.splitlines()[0] == (
        f"FAIL install state: {path} {said}; the default layout is assumed"
        " -> fix: sudo ./install.sh writes it again (or name the right file with --state)"
    )


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe/Moskva", "../../etc/passwd", "/etc/localtime", "UTC+3"])
def test_an_unknown_timezone_is_a_config_error(
    box: Pbx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    monkeypatch.setenv("MISSEDCALL_TIMEZONE", zone)
    said = f"MISSEDCALL_TIMEZONE: unknown time zone {zone!r} (a name like Europe/Moscow; empty: the system's)"
    for argv in VERBS:
        assert run_cli(argv, capsys) == (1, "", f"missedcall-admin: error: configuration: {said}\n"), argv
    code, out, _err = run_cli(["doctor"], capsys)
    assert code == 1
    assert _doctor_line(out, "config").startswith(f"FAIL config: {said} -> fix: edit ")


def test_a_known_timezone_is_fine(
    box: Pbx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISSEDCALL_TIMEZONE", "Europe/Moscow")
    code, out, _err = run_cli(["test", "600", "--dry-run"], capsys)
    assert code == 0 and "MSK" in out


@pytest.mark.parametrize(
    ("lines", "number"),
    [
        (['MISSEDCALL_FROM="unclosed'], 1),
        (["", "", "this is not a setting"], 3),
        (["MISSEDCALL_LANGUAGE=ru", "export = nothing", "MISSEDCALL_MIN_WAIT=5"], 2),
        (["MISSEDCALL_LANGUAGE=ru", "MISSEDCALL_SMTP_PASSWORD='it''s"], 2),
    ],
)
def test_a_line_dotenv_cannot_parse_names_file_and_line(
    box: Pbx, capsys: pytest.CaptureFixture[str], lines: list[str], number: int
) -> None:
    good = box.config_file.read_text()
    box.config_file.write_text("\n".join(lines) + "\n" + good)
    said = f"{box.config_file}:{number}: python-dotenv cannot parse this line (expected KEY=value, quotes closed)"
    for argv in VERBS:
        assert run_cli(argv, capsys) == (1, "", f"missedcall-admin: error: configuration: {said}\n"), argv
    code, out, err = run_cli(["doctor"], capsys)
    assert code == 1 and "python-dotenv" not in err  # its own warning is not printed beside ours
    assert _doctor_line(out, "config") == (
        f"FAIL config: {said} -> fix: edit {box.config_file} (every key is described in the README)"
    )


@pytest.mark.parametrize(
    ("key", "guess"),
    [
        ("MISSEDCALL_FALLBACK", "did you mean MISSEDCALL_FALLBACK_TO?"),
        ("MISSEDCALL_SMTP_PASS", "did you mean MISSEDCALL_SMTP_PASSWORD?"),
        ("MISSEDCALL_TIMEZOME", "did you mean MISSEDCALL_TIMEZONE?"),
        ("MISSEDCALL_XYZZY", "every key is listed in the README"),
    ],
)
def test_an_unknown_key_is_a_doctor_warning_with_a_guess(
    box: Pbx, capsys: pytest.CaptureFixture[str], key: str, guess: str
) -> None:
    box.config_file.write_text(box.config_file.read_text() + f"{key}=x\n")
    assert run_cli(["queues"], capsys)[0] == 0  # the verbs still run
    _code, out, _err = run_cli(["doctor"], capsys)
    assert _doctor_line(out, "config keys") == (
        f"WARN config keys: unknown key {key} is ignored: {guess} -> fix: edit {box.config_file}"
    )
