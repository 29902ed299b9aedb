"""missedcall-admin doctor: all OK on a working setup; each broken piece is its own FAIL line and exit 1.

The setup is what install.sh leaves behind, built by hand in a temporary folder
and described by an install.state there: configuration, tables, the AGI script,
FreePBX's generated dialplan and our override block, the cron file, a queue_log,
and a stand-in ``asterisk`` command whose ``-rx`` answers come from files.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from missedcall.admin import cli, dialplan, installer
from missedcall.config import load_settings
from missedcall.record.storage import Store
from tests.paths import INSTALL_FIXTURES
from tests.support.env import write_env_file
from tests.support.freepbx import write_freepbx_conf
from tests.support.mariadb import MariaDBDatabase
from tests.support.smtp import SmtpServer

REPO = Path(__file__).resolve().parent.parent
FIXTURES = INSTALL_FIXTURES
GOSUB = "Gosub(macro-hangupcall,s,1())"
NAMES = (
    "config", "database", "recipients", "mail", "from", "agi", "dialplan file",
    "dialplan live", "queue_log", "cron", "delivery", "callbacks",
)  # fmt: skip
LINE = re.compile(r"^(OK|WARN|FAIL) +([a-z_ ]+): (.*)$")
LIVE = """\
[ Context 'ext-queues' created by 'pbx_config' ]
  'h' =>            1. GotoIf($["${ABANDONED}"!="TRUE"]?done)   [extensions_override_freepbx.conf:4]
                    2. AGI(missed.py,${QUEUENUM})              [extensions_override_freepbx.conf:5]
     [done]         3. Gosub(macro-hangupcall,s,1())           [extensions_override_freepbx.conf:6]

-= 1 extension (3 priorities) in 1 context. =-
"""
NOT_LIVE = """\
[ Context 'ext-queues' created by 'pbx_config' ]
  'h' =>            1. Gosub(macro-hangupcall,s,1())           [extensions_additional.conf:39]

-= 1 extension (1 priority) in 1 context. =-
"""
FAKE_ASTERISK = """\
#!/bin/sh
# Stand-in for "asterisk -rx COMMAND": prints rx-h (h@ext-queues) or rx-all; a "down" file means not running.
here=$(dirname "$0")
if [ -e "$here/down" ]; then
    echo "Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)"
    exit 1
fi
case "$2" in
    "dialplan show h@ext-queues") cat "$here/rx-h" ;;
    *) cat "$here/rx-all" ;;
esac
"""


@dataclass
class Setup:
    base: Path
    config: dict[str, str]
    user: str
    state: dict[str, str] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.base / "etc" / "missedcall.env"

    @property
    def state_file(self) -> Path:
        return self.base / "etc" / "install.state"

    @property
    def agi(self) -> Path:
        return Path(self.state["agi_dir"]) / "missed.py"

    @property
    def override(self) -> Path:
        return Path(self.state["asterisk_etc"]) / "extensions_override_freepbx.conf"

    @property
    def cron(self) -> Path:
        return Path(self.state["cron_file"])

    @property
    def asterisk_dir(self) -> Path:
        return Path(self.state["asterisk_bin"]).parent

    def write_config(self, **changes: str | None) -> None:
        for key, value in changes.items():
            if value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = value
        write_env_file(self.config_file.parent, self.config_file.name, **self.config)

    def store(self) -> Store:
        os.environ["MISSEDCALL_CONFIG"] = str(self.config_file)
        return Store.open(load_settings().db, create=True)


def build_setup(base: Path, *, db_url: str | None = None, freepbx_conf: Path | None = None) -> Setup:
    """A complete, working installation under base (as install.sh would leave it)."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    for sub in ("etc", "agi-bin", "asterisk", "bin", "prefix/venv/bin", "spool", "data", "cron.d"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    sendmail = base / "bin" / "sendmail"
    sendmail.write_text("#!/bin/sh\ncat >/dev/null\n")
    sendmail.chmod(0o755)
    queue_log = base / "queue_log"
    queue_log.write_text("1700000000|NONE|NONE|NONE|QUEUESTART|\n")
    queue_log.chmod(0o640)
    setup = Setup(
        base=base,
        user=user,
        config={
            "MISSEDCALL_DB_URL": db_url or f"sqlite:///{base}/data/missedcall.sqlite3",
            "MISSEDCALL_FREEPBX_CONF": str(freepbx_conf or base / "no-freepbx.conf"),
            "MISSEDCALL_SENDMAIL": str(sendmail),
            "MISSEDCALL_QUEUE_LOG": str(queue_log),
            "MISSEDCALL_SPOOL_DIR": str(base / "spool"),
            "MISSEDCALL_FROM": "asterisk@pbx.example.com",
            "MISSEDCALL_CDR_URL": f"csv:{base}/Master.csv",
        },
    )
    (base / "Master.csv").write_text("")
    if db_url is None and freepbx_conf is not None:
        del setup.config["MISSEDCALL_DB_URL"]  # FreePBX's own credentials, as on a real box
    setup.write_config()
    setup.state = {
        "prefix": str(base / "prefix"),
        "agi_dir": str(base / "agi-bin"),
        "asterisk_etc": str(base / "asterisk"),
        "config_dir": str(base / "etc"),
        "data_dir": str(base / "data"),
        "cron_file": str(base / "cron.d" / "missedcall"),
        "asterisk_user": user,
        "asterisk_bin": str(base / "bin" / "asterisk"),
        "dialplan": "freepbx",
    }
    setup.state_file.write_text(installer.render_state(setup.state))
    with setup.store() as store:
        store.init()
        queues = store.freepbx_queues() or {"600": ""}
        for queue in queues:
            store.add_recipient(queue, f"q{queue}@example.com")
    agi_body = (REPO / "agi-bin" / "missed.py").read_text().split("\n", 1)[1]
    setup.agi.write_text(f"#!{sys.executable}\n{agi_body}")
    setup.agi.chmod(0o755)
    shutil.copy(FIXTURES / "extensions_additional.freepbx17.conf", base / "asterisk" / "extensions_additional.conf")
    setup.override.write_text(dialplan.install_text("; override\n", GOSUB))
    admin = base / "prefix" / "venv" / "bin" / "missedcall-admin"
    admin.write_text("#!/bin/sh\nexit 0\n")
    admin.chmod(0o755)
    setup.cron.write_text(installer.render_cron(str(base / "prefix"), user, str(base / "data")))
    asterisk = Path(setup.state["asterisk_bin"])
    asterisk.write_text(FAKE_ASTERISK)
    asterisk.chmod(0o755)
    (base / "bin" / "rx-h").write_text(LIVE)
    (base / "bin" / "rx-all").write_text(LIVE)
    return setup


@pytest.fixture
def doctor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MISSEDCALL_* from the outside; MISSEDCALL_CONFIG, which the tests set, is undone afterwards."""
    for key in list(os.environ):
        if key.startswith("MISSEDCALL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MISSEDCALL_CONFIG", "/nonexistent/missedcall.env")


@pytest.fixture
def setup(tmp_path: Path, doctor_env: None) -> Setup:
    return build_setup(tmp_path)


Result = tuple[int, dict[str, tuple[str, str]], str]


def run_doctor(setup: Setup, capsys: pytest.CaptureFixture[str]) -> Result:
    os.environ["MISSEDCALL_CONFIG"] = str(setup.config_file)
    capsys.readouterr()
    code = cli.main(["doctor", "--state", str(setup.state_file)])
    captured = capsys.readouterr()
    lines: dict[str, tuple[str, str]] = {}
    for line in captured.out.splitlines():
        match = LINE.match(line)
        assert match, f"not a doctor line: {line!r}"
        lines[match.group(2)] = (match.group(1), line)
    assert tuple(lines) == NAMES, captured.out
    return code, lines, captured.out + captured.err


def statuses(lines: dict[str, tuple[str, str]], status: str) -> set[str]:
    return {name for name, (got, _) in lines.items() if got == status}


# ------------------------------------------------------------------------------------------- all OK


def test_working_sqlite_setup_is_all_ok(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, out = run_doctor(setup, capsys)
    assert statuses(lines, "OK") == set(NAMES), out
    assert code == 0
    assert "runs AGI(missed.py)" in lines["dialplan live"][1]


def test_working_freepbx_setup_is_all_ok_and_never_shows_the_password(
    tmp_path: Path, doctor_env: None, freepbx_database: MariaDBDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_freepbx_conf(tmp_path / "freepbx.conf", freepbx_database, host="127.0.0.1")
    setup = build_setup(tmp_path / "box", freepbx_conf=conf)
    code, lines, out = run_doctor(setup, capsys)
    assert code == 0 and statuses(lines, "OK") == set(NAMES), out
    assert "4 of 4 FreePBX queue(s)" in lines["recipients"][1]
    assert freepbx_database.password not in out

    # Queue 603 loses its recipient: a WARN (recipients come after install), still exit 0.
    with setup.store() as store:
        store.remove_recipient("603", "q603@example.com")
    code, lines, out = run_doctor(setup, capsys)
    assert code == 0 and lines["recipients"][0] == "WARN" and "603" in lines["recipients"][1]
    assert "recipients add 603" in lines["recipients"][1]

    # A wrong password in freepbx.conf: FAIL, and neither password appears.
    wrong = "Wr0ng-pass-" + freepbx_database.password[:6]
    conf.write_text(conf.read_text().replace(freepbx_database.password, wrong))
    code, lines, out = run_doctor(setup, capsys)
    assert code == 1 and lines["database"][0] == "FAIL", out
    assert "Access denied" in lines["database"][1]
    assert freepbx_database.password not in out and wrong not in out


def test_password_in_db_url_never_printed(
    setup: Setup, mariadb_database: MariaDBDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    password = mariadb_database.password
    setup.write_config(MISSEDCALL_DB_URL=mariadb_database.url.replace(password, password + "x"))
    code, lines, out = run_doctor(setup, capsys)
    assert code == 1 and lines["database"][0] == "FAIL"
    assert password not in out
    setup.write_config(MISSEDCALL_DB_URL=mariadb_database.url)  # reachable, but no tables yet
    code, lines, out = run_doctor(setup, capsys)
    assert lines["database"][0] == "FAIL" and "missedcall-admin init" in lines["database"][1]
    assert password not in out


# ------------------------------------------------------------------------------------- broken pieces


def _reset_schema(s: Setup) -> None:
    with s.store() as store:
        store.set_state("schema_version", "0")


def _no_recipients(s: Setup) -> None:
    with s.store() as store:
        store.remove_recipient("600", "q600@example.com")


def _closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


BREAKERS: dict[str, tuple[str, Callable[[Setup], object]]] = {
    "config-invalid": ("config", lambda s: s.write_config(MISSEDCALL_TRANSPORT="pigeon")),
    "db-unreachable": (
        "database",
        lambda s: s.write_config(MISSEDCALL_DB_URL=f"sqlite:///{s.base}/no/such/dir/x.sqlite3"),
    ),
    "db-no-tables": (
        "database",
        lambda s: (
            (s.base / "empty.sqlite3").write_bytes(b""),
            s.write_config(MISSEDCALL_DB_URL=f"sqlite:///{s.base}/empty.sqlite3"),
        ),
    ),
    "db-old-schema": ("database", _reset_schema),
    "sendmail-missing": ("mail", lambda s: s.write_config(MISSEDCALL_SENDMAIL="/nonexistent/sendmail")),
    "smtp-unreachable": (
        "mail",
        lambda s: s.write_config(
            MISSEDCALL_TRANSPORT="smtp", MISSEDCALL_SMTP_HOST="127.0.0.1", MISSEDCALL_SMTP_PORT=_closed_port()
        ),
    ),
    "agi-missing": ("agi", lambda s: s.agi.unlink()),
    "agi-not-executable": ("agi", lambda s: s.agi.chmod(0o644)),
    "agi-interpreter-gone": (
        "agi",
        lambda s: s.agi.write_text("#!/nonexistent/venv/bin/python\n" + s.agi.read_text().split("\n", 1)[1]),
    ),
    "agi-not-ours": ("agi", lambda s: s.agi.write_text("#!/bin/sh\necho hello\n")),
    "dialplan-block-missing": ("dialplan file", lambda s: s.override.write_text("; override\n")),
    "dialplan-macro-on-17": (
        "dialplan file",
        lambda s: s.override.write_text(dialplan.install_text("; override\n", "Macro(hangupcall,)")),
    ),
    "dialplan-markers-broken": ("dialplan file", lambda s: s.override.write_text("; BEGIN missedcall\n")),
    "dialplan-not-live": ("dialplan live", lambda s: (s.asterisk_dir / "rx-h").write_text(NOT_LIVE)),
    "cron-missing": ("cron", lambda s: s.cron.unlink()),
    "cron-without-retry": (
        "cron",
        lambda s: s.cron.write_text("".join(x for x in s.cron.read_text().splitlines(True) if " retry " not in x)),
    ),
    "cron-code-gone": ("cron", lambda s: (s.base / "prefix" / "venv" / "bin" / "missedcall-admin").unlink()),
}


@pytest.mark.parametrize("case", sorted(BREAKERS))
def test_each_broken_piece_is_its_own_fail(setup: Setup, capsys: pytest.CaptureFixture[str], case: str) -> None:
    name, breaker = BREAKERS[case]
    breaker(setup)
    code, lines, out = run_doctor(setup, capsys)
    assert code == 1, out
    assert statuses(lines, "FAIL") == {name}, out
    line = lines[name][1]
    assert " -> fix: " in line, line  # every FAIL says what to do


def test_a_broken_config_marks_dependent_checks_not_checked(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    setup.write_config(MISSEDCALL_TRANSPORT="pigeon")
    _, lines, _ = run_doctor(setup, capsys)
    for name in ("database", "recipients", "mail"):
        assert lines[name][0] == "WARN" and "not checked" in lines[name][1]


# ---------------------------------------------------------------------------------------- WARN only


WARNERS: dict[str, tuple[str, Callable[[Setup], object]]] = {
    "no-recipients": ("recipients", _no_recipients),
    "asterisk-down": ("dialplan live", lambda s: (s.asterisk_dir / "down").write_text("")),
    "no-asterisk-command": ("dialplan live", lambda s: (s.asterisk_dir / "asterisk").unlink()),
    "no-queue-log-yet": ("queue_log", lambda s: Path(s.config["MISSEDCALL_QUEUE_LOG"]).unlink()),
    "config-world-readable": ("config", lambda s: s.config_file.chmod(0o644)),
    "handmade-hook-beside-ours": (
        "dialplan file",
        lambda s: s.override.write_text("[ext-queues]\nexten => h,1,Hangup()\n" + s.override.read_text()),
    ),
}


@pytest.mark.parametrize("case", sorted(WARNERS))
def test_warnings_do_not_fail(setup: Setup, capsys: pytest.CaptureFixture[str], case: str) -> None:
    name, warner = WARNERS[case]
    warner(setup)
    code, lines, out = run_doctor(setup, capsys)
    assert code == 0, out
    assert statuses(lines, "WARN") == {name}, out


def test_plain_asterisk_looks_for_the_handler_in_the_dialplan(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    setup.state["dialplan"] = "plain"
    setup.state_file.write_text(installer.render_state(setup.state))
    etc = Path(setup.state["asterisk_etc"])
    for path in etc.iterdir():
        path.unlink()
    code, lines, _ = run_doctor(setup, capsys)
    assert code == 0 and lines["dialplan file"][0] == "WARN" and "README" in lines["dialplan file"][1]
    (etc / "extensions.conf").write_text(dialplan.PLAIN_SNIPPET)
    code, lines, out = run_doctor(setup, capsys)
    assert lines["dialplan file"][0] == "OK" and "extensions.conf" in lines["dialplan file"][1], out
    assert lines["dialplan live"][0] == "OK"


# ------------------------------------------------------------------------------------------------ SMTP


def test_smtp_relay_reachable_is_ok(setup: Setup, smtp_server: SmtpServer, capsys: pytest.CaptureFixture[str]) -> None:
    setup.write_config(**smtp_server.config())
    code, lines, out = run_doctor(setup, capsys)
    assert code == 0 and lines["mail"][0] == "OK" and f":{smtp_server.port}" in lines["mail"][1], out


@pytest.mark.parametrize("smtp_server", ["starttls+auth"], indirect=True)
def test_smtp_login_is_checked_and_its_password_never_printed(
    setup: Setup, smtp_server: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.write_config(**smtp_server.config(), MISSEDCALL_SMTP_CAFILE=str(smtp_server.cafile))
    code, lines, out = run_doctor(setup, capsys)
    assert code == 0 and lines["mail"][0] == "OK" and "logged in as relayuser" in lines["mail"][1], out
    setup.write_config(MISSEDCALL_SMTP_PASSWORD="Not the password 7")
    code, lines, out = run_doctor(setup, capsys)
    assert code == 1 and lines["mail"][0] == "FAIL" and "refused the login" in lines["mail"][1]
    assert "Not the password 7" not in out and smtp_server.password not in out


# --------------------------------------------------------------------- permissions, for the Asterisk user


@pytest.fixture
def daemon_setup(doctor_env: None) -> Iterator[Setup]:
    """A working setup whose Asterisk user is 'daemon', in a folder that user can enter."""
    if os.geteuid() != 0:
        pytest.skip("needs root to hand files to another user")
    base = Path(tempfile.mkdtemp(prefix="missedcall-doctor-"))
    try:
        base.chmod(0o755)
        setup = build_setup(base / "box")
        setup.state["asterisk_user"] = "daemon"
        setup.state_file.write_text(installer.render_state(setup.state))
        for path in [setup.base, *setup.base.rglob("*")]:
            os.chown(path, pwd.getpwnam("daemon").pw_uid, pwd.getpwnam("daemon").pw_gid)
        yield setup
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize(
    ("name", "path"),
    [("config", "etc/missedcall.env"), ("queue_log", "queue_log"), ("agi", "agi-bin/missed.py")],
)
def test_files_the_asterisk_user_cannot_use_fail(
    daemon_setup: Setup, capsys: pytest.CaptureFixture[str], name: str, path: str
) -> None:
    target = daemon_setup.base / path
    os.chown(target, 0, 0)
    target.chmod(0o700 if name == "agi" else 0o600)
    code, lines, out = run_doctor(daemon_setup, capsys)
    assert code == 1 and lines[name][0] == "FAIL" and "daemon" in lines[name][1], out


# ---------------------------------------------------------------------------------------- the real CLI


def test_cli_process_exit_codes_and_one_line_per_check(setup: Setup) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISSEDCALL_")}
    env["MISSEDCALL_CONFIG"] = str(setup.config_file)
    argv = [sys.executable, "-m", "missedcall.admin.cli", "doctor", "--state", str(setup.state_file)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == len(NAMES) and done.stderr == ""
    setup.cron.unlink()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and [x for x in done.stdout.splitlines() if x.startswith("FAIL")] == [
        next(x for x in done.stdout.splitlines() if x.startswith("FAIL cron:"))
    ]


def test_state_file_defaults_to_the_one_beside_the_config(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    os.environ["MISSEDCALL_CONFIG"] = str(setup.config_file)
    assert setup.state_file == Path(installer.state_path(str(setup.config_file)))
    assert cli.main(["doctor"]) == 0
    assert "FAIL" not in capsys.readouterr().out
