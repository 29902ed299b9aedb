"""When a sendmail-compatible program overruns its timeout: stopped when stuck, never when it did the job.

A mail program killed after it queued the message makes the call look unsent,
and ``retry`` mails it a second time; one that hangs must still not hold the
AGI. These run real programs (small scripts in tmp_path) through
transport.send_sendmail and look at what they left on disk and in /proc, each
test with both ways of starting one (posix_spawn for the hook, subprocess for
the FastAGI service's threads).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from missedcall import config
from missedcall.deliver import mailprog, mime, transport

CPU_SECONDS = 0.8


@pytest.fixture(autouse=True, params=[mailprog.POSIX_SPAWN, mailprog.SUBPROCESS])
def start(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test once as the hook starts a mail program and once as the FastAGI service does."""
    mailprog.start_with(request.param)
    yield request.param
    mailprog.start_with(mailprog.POSIX_SPAWN)


def settings_for(tmp_path: Path, program: Path) -> config.Settings:
    return config.load_settings(
        {"MISSEDCALL_CONFIG": str(tmp_path / "absent.env"), "MISSEDCALL_SENDMAIL": str(program)}
    )


def send(tmp_path: Path, program: Path, *, timeout: float) -> None:
    """One message to ops@example.com through ``program``."""
    msg = mime.Draft()
    msg["Subject"] = "missed call"
    msg["To"] = "ops@example.com"
    msg.set_content("body\n")
    transport.send_sendmail(msg, ["ops@example.com"], settings_for(tmp_path, program), timeout=timeout)


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


def test_a_mail_program_still_computing_past_its_timeout_is_not_stopped(tmp_path: Path) -> None:
    # What an overloaded box looks like from here: the program is runnable all the time.
    program = script(
        tmp_path,
        "slow-sendmail",
        "import sys, time\n"
        "data = sys.stdin.buffer.read()\n"
        "start = time.process_time()\n"
        f"while time.process_time() - start < {CPU_SECONDS}:\n"
        "    pass\n"
        f"open({str(tmp_path / 'queued.eml')!r}, 'wb').write(data)\n",
    )
    started = time.monotonic()
    send(tmp_path, program, timeout=0.2)
    assert time.monotonic() - started >= CPU_SECONDS
    assert b"Subject: missed call" in (tmp_path / "queued.eml").read_bytes()


def test_a_blocked_mail_program_is_stopped_soon_after_its_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    program = script(
        tmp_path,
        "stuck-sendmail",
        "import os, sys, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "sys.stdin.buffer.read()\n"
        "time.sleep(60)\n",
    )
    started = time.monotonic()
    with pytest.raises(transport.TransportError, match="did not finish within"):
        send(tmp_path, program, timeout=0.3)
    assert time.monotonic() - started < 3.0
    assert not alive(int(pid_file.read_text()))


def test_a_mail_program_that_exited_is_believed_even_when_its_child_holds_the_pipes(tmp_path: Path) -> None:
    # Some mail programs queue the message, start delivery in the background and exit 0; the
    # background child inherits stdout and stderr. The mail was taken: no error, no kill.
    child_pid = tmp_path / "child.pid"
    program = script(
        tmp_path,
        "forking-sendmail",
        "import os, subprocess, sys\n"
        "data = sys.stdin.buffer.read()\n"
        f"open({str(tmp_path / 'queued.eml')!r}, 'wb').write(data)\n"
        "child = subprocess.Popen(['sleep', '30'])\n"
        f"open({str(child_pid)!r}, 'w').write(str(child.pid))\n",
    )
    try:
        started = time.monotonic()
        send(tmp_path, program, timeout=0.3)
        took = time.monotonic() - started
        assert (tmp_path / "queued.eml").exists()
        assert took < 0.3 + mailprog.DRAIN + 1.5
        assert alive(int(child_pid.read_text())), "the background delivery was killed"
    finally:
        if child_pid.exists():
            try:
                os.kill(int(child_pid.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_failing_mail_program_still_reports_its_exit_status(tmp_path: Path) -> None:
    program = script(
        tmp_path,
        "refusing-sendmail",
        "import sys\nsys.stdin.buffer.read()\nsys.stderr.write('queue file write error\\n')\nsys.exit(75)\n",
    )
    with pytest.raises(transport.TransportError, match="exited with 75: queue file write error"):
        send(tmp_path, program, timeout=5)


def test_a_message_larger_than_a_pipe_goes_whole_and_the_program_runs_in_a_session_of_its_own(
    tmp_path: Path,
) -> None:
    # In sh, not Python: Python ignores SIGPIPE for itself at start-up and would hide what it inherited.
    program = tmp_path / "recording-sendmail"
    program.write_text(
        "#!/bin/sh\n"
        f"cat > {tmp_path / 'queued.eml'}\n"
        "facts=\"$$ $(cut -d' ' -f6 /proc/$$/stat) $(grep SigIgn /proc/$$/status | cut -f2) $*\"\n"
        f"echo \"$facts\" > {tmp_path / 'facts'}\n"
        "echo 'queued as 4F2A1'\n"
    )
    program.chmod(0o755)
    msg = mime.Draft()
    msg["Subject"] = "big"
    msg.set_content("Строка текста\n" * 40000)  # about 1.3 MB once quoted-printable: many pipe buffers
    transport.send_sendmail(msg, ["ops@example.com"], settings_for(tmp_path, program), timeout=20)
    assert (tmp_path / "queued.eml").read_bytes() == msg.as_bytes()
    pid, session, ignored, args = (tmp_path / "facts").read_text().strip().split(" ", 3)
    assert pid == session  # a session of its own: on timeout it is killed with its helpers
    assert int(ignored, 16) & (1 << (signal.SIGPIPE - 1)) == 0  # SIGPIPE as any program expects it
    assert args.split()[-2:] == ["--", "ops@example.com"]  # the recipients, after "--", never -t


def test_a_program_that_exits_without_reading_is_believed(tmp_path: Path) -> None:
    program = script(tmp_path, "deaf-sendmail", "import sys\nsys.stderr.write('no queue today\\n')\nsys.exit(69)\n")
    msg = mime.Draft()
    msg.set_content("x" * 500_000 + "\n")
    with pytest.raises(transport.TransportError, match="exited with 69: no queue today"):
        transport.send_sendmail(msg, ["ops@example.com"], settings_for(tmp_path, program), timeout=5)


def test_a_mail_program_that_cannot_be_started_is_one_clear_error(tmp_path: Path) -> None:
    msg = mime.Draft()
    msg.set_content("x\n")
    with pytest.raises(transport.TransportError, match=r"cannot run .*missing-sendmail"):
        transport.send_sendmail(msg, ["ops@example.com"], settings_for(tmp_path, tmp_path / "missing-sendmail"),
                                timeout=5)  # fmt: skip


def test_a_reaped_mail_program_is_never_waited_for_again(tmp_path: Path, start: str) -> None:
    # The pid is reaped by Child (its pidfd); a Popen left believing it runs would wait for the pid
    # later, when it may belong to the next mail program, and take that one's exit status.
    program = tmp_path / "quick-sendmail"
    program.write_text("#!/bin/sh\ncat > /dev/null\n")
    program.chmod(0o755)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        for _ in range(20):
            send(tmp_path, program, timeout=5)
        import gc

        gc.collect()
    assert [str(w.message) for w in said if issubclass(w.category, ResourceWarning)] == []


def test_an_unknown_way_of_starting_a_mail_program_is_refused() -> None:
    with pytest.raises(ValueError, match="no such way to start a mail program: 'fork'"):
        mailprog.start_with("fork")
