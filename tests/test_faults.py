"""Faults made for real: the database and the mail relay fail, the AGI is killed mid-run.

Every AGI run here is the real agi-bin/missed.py against a scripted Asterisk 22
peer; every database is a real MariaDB or SQLite; mail goes through the
sendmail stand-in or a real SMTP server on loopback. The promise checked: every
missed call reaches someone exactly once (at most one duplicate after a crash),
and the AGI exits 0 within 3 s whatever fails.

Set MISSEDCALL_FAULT_TIMES=/path to collect each fault's AGI wall time (the
README's table comes from there).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import stat
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from missedcall import config
from missedcall.deliver import notify, retry
from missedcall.deliver.health import health as delivery_health
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.storage import Store
from tests.agibox import MISSED, Pbx, abandon_lines, abandon_peer, callids_mailed, make_pbx
from tests.agipeer import AgiPeer, AgiRun
from tests.mailbox import SENDMAIL
from tests.support.mariadb import MariaDBDatabase

BOUND = 3.0  # the whole AGI run, whatever hangs (docs/design.md)
TAP = Path(__file__).resolve().parent / "syslogtap"


def timed(box: Pbx, peer: AgiPeer, args: list[str], **env: str) -> AgiRun:
    """box.run(), noting how long the hook waited for a CPU: the budget does not count that
    (missedcall/budget.py), so on a busy test box the 3 s bound applies to the rest."""
    waits = box.tmp / f"schedstat-{time.monotonic_ns()}"
    run = box.run(peer, args, PYTHONPATH=str(TAP), MISSEDCALL_TEST_SCHEDSTAT=str(waits), **env)
    try:
        run.cpu_wait = max(float(line.split()[1]) for line in waits.read_text().splitlines())  # type: ignore[attr-defined]
    except (OSError, ValueError):
        run.cpu_wait = 0.0  # type: ignore[attr-defined]
    return run


def record_time(fault: str, run: AgiRun) -> None:
    target = os.environ.get("MISSEDCALL_FAULT_TIMES")
    if target:
        wait = getattr(run, "cpu_wait", 0.0)
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"fault": fault, "seconds": round(run.duration, 3), "cpu_wait": wait}) + "\n")


def assert_agi_ok(run: AgiRun) -> None:
    assert run.ok, run
    assert run.stdout_garbage == [] and run.stderr == ""
    wait = getattr(run, "cpu_wait", 0.0)
    assert run.duration - wait < BOUND, f"AGI took {run.duration:.2f} s, {wait:.2f} s of it waiting for a CPU"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ============================================================================ database unreachable


def _bad_urls(db: MariaDBDatabase, silent: tuple[str, int], tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    return {
        "refused port": f"mysql://{db.user}:{db.password}@127.0.0.1:{free_port()}/{db.name}",
        "silent listener": f"mysql://{db.user}:{db.password}@{silent[0]}:{silent[1]}/{db.name}",
        "wrong password": f"mysql://{db.user}:wrong-{db.password}@127.0.0.1:3306/{db.name}",
        "database missing": f"mysql://{db.user}:{db.password}@127.0.0.1:3306/{db.name}_gone",
        "sqlite folder unusable": f"sqlite:///{blocker}/missedcall.sqlite3",
    }


DB_FAULTS = ("refused port", "silent listener", "wrong password", "database missing", "sqlite folder unusable")


@pytest.mark.parametrize("fault", DB_FAULTS)
@pytest.mark.parametrize("learned", ["by a call", "by recipients add"])
def test_database_unreachable_still_mails_and_spools(
    fault: str,
    learned: str,
    tmp_path: Path,
    mariadb_database: MariaDBDatabase,
    silent_tcp_server: tuple[str, int],
) -> None:
    box = make_pbx(tmp_path, mariadb_database.url, recipients=[])
    # The local copy of the recipients is refreshed by a successful look-up or by a change.
    assert box.admin("recipients", "add", "600", "ops600@example.com").returncode == 0
    assert box.admin("recipients", "add", "*", "boss@example.com").returncode == 0
    if learned == "by a call":
        with box.store() as store:
            store.add_recipient("600", "late600@example.com")  # behind the CLI's back: only a look-up sees it
        assert_agi_ok(timed(box, abandon_peer("1795700000.1"), ["600"]))
        expected = {"ops600@example.com", "late600@example.com", "boss@example.com"}
    else:
        expected = {"ops600@example.com", "boss@example.com"}
    cache = box.spool / "recipients.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o640
    before = len(box.stored())

    box.configure(MISSEDCALL_DB_URL=_bad_urls(mariadb_database, silent_tcp_server, tmp_path)[fault])
    run = timed(box, abandon_peer("1795700000.2", name="Outage Caller"), ["600"])
    record_time(f"database: {fault}", run)
    assert_agi_ok(run)
    assert any("database unreachable" in c and "spooled for retry" in c for c in run.commands), run.commands
    mails = box.stored()[before:]
    assert len(mails) == 1
    assert set(mails[0].recipients) == expected
    assert mails[0].message["X-Missedcall-Callid"] == "1795700000.2"
    [spooled] = box.spooled()
    assert spooled.name == "call-1795700000.2.json"
    assert stat.S_IMODE(spooled.stat().st_mode) == 0o640
    assert json.loads(spooled.read_text())["status"] == "sent"
    assert not list(box.spool.glob(".tmp-*"))

    # The database is back; retry (cron) later records the spooled call once, without resending it.
    box.configure(MISSEDCALL_DB_URL=mariadb_database.url)
    early = box.admin("retry")
    assert early.returncode == 0, early.stderr
    assert box.spooled() == [spooled]  # too fresh: the AGI that wrote it might still be at work
    box.age_spool()
    for _ in range(2):
        done = box.admin("retry")
        assert done.returncode == 0 and done.stderr == "", done
    assert box.spooled() == []
    rows = {c.callid: c for c in box.calls()}
    call = rows["1795700000.2"]
    assert (call.status, call.source, call.caller_name) == ("sent", "agi", "Outage Caller")
    assert set(call.recipients) == expected and call.notified_at is not None
    assert len(box.stored()) == before + 1


def test_spooled_call_that_was_not_mailed_is_sent_by_retry(
    tmp_path: Path, mariadb_database: MariaDBDatabase
) -> None:
    """No local copy, no fallback: the call waits in the spool and retry mails it once the database is back."""
    box = make_pbx(tmp_path, mariadb_database.url)
    box.configure(MISSEDCALL_DB_URL=f"mysql://x:y@127.0.0.1:{free_port()}/nothing")
    run = timed(box, abandon_peer("1795700001.1"), ["600"])
    assert_agi_ok(run)
    assert box.stored() == []
    [spooled] = box.spooled()
    assert json.loads(spooled.read_text())["status"] == "pending"
    box.configure(MISSEDCALL_DB_URL=mariadb_database.url)
    box.age_spool()
    assert box.admin("retry").returncode == 0
    assert box.admin("retry").returncode == 0
    [mail] = box.stored()
    assert sorted(mail.recipients) == ["boss@example.com", "ops600@example.com"]
    [call] = box.calls()
    assert call.status == "sent" and call.callid == "1795700001.1"


def test_sweeper_does_not_resend_a_call_the_agi_mailed_during_an_outage(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The sweeper may see the call before retry imports the spool: the notifier adopts the spooled mail."""
    box = make_pbx(tmp_path, sqlite_url)
    assert box.admin("recipients", "add", "600", "ops600@example.com").returncode == 0  # (already there) refresh
    now = int(time.time())
    box.write_queue_log(abandon_lines("1795700002.1", "600", at=now - 300))
    box.configure(MISSEDCALL_DB_URL=f"mysql://x:y@127.0.0.1:{free_port()}/nothing")
    assert_agi_ok(timed(box, abandon_peer("1795700002.1"), ["600"]))
    assert len(box.stored()) == 1
    box.configure(MISSEDCALL_DB_URL=sqlite_url)
    swept = box.admin("sweep", "--from-start", "--grace", "0")
    assert swept.returncode == 0, swept.stderr
    box.age_spool()
    assert box.admin("retry").returncode == 0
    assert len(box.stored()) == 1
    [call] = box.calls()
    assert call.status == "sent"
    assert box.spooled() == []


@pytest.mark.parametrize("holder", ["released after 0.3 s", "held"])
def test_too_many_connections_is_waited_out_or_spooled(
    holder: str, tmp_path: Path, mariadb_database: MariaDBDatabase
) -> None:
    """The user's connection limit is reached (error 1226): the AGI tries again for a while,
    then mails from the local copy and spools the call."""
    box = make_pbx(tmp_path, mariadb_database.url)
    assert box.admin("recipients", "add", "602", "ops602@example.com").returncode == 0
    db = mariadb_database
    with db.server.root() as conn, conn.cursor() as cur:
        # Per user, so that nothing else on this server notices.
        cur.execute("ALTER USER %s@'127.0.0.1' WITH MAX_USER_CONNECTIONS 1", (db.user,))
    try:
        taken = db.connect()
        if holder == "held":
            release = None
        else:
            release = threading.Timer(0.3, taken.close)
            release.start()
        try:
            run = timed(box, abandon_peer("1795700003.1"), ["600"])
        finally:
            if release is not None:
                release.join()
            if taken.open:
                taken.close()
    finally:
        with db.server.root() as conn, conn.cursor() as cur:
            cur.execute("ALTER USER %s@'127.0.0.1' WITH MAX_USER_CONNECTIONS 0", (db.user,))
    record_time(f"database: connection limit reached ({holder})", run)
    assert_agi_ok(run)
    assert len(box.stored()) == 1
    if holder == "held":
        assert len(box.spooled()) == 1
    else:
        assert box.spooled() == [] and [c.status for c in box.calls()] == ["sent"]


# ============================================================================ mail relay failing


def _relay_fault(box: Pbx, fault: str, smtp_server, silent: tuple[str, int]) -> dict[str, str]:
    """Configure the fault; returns extra environment for the AGI."""
    if fault == "sendmail exits 75":
        return {"FAKE_SENDMAIL_EXIT": "75"}
    if fault == "sendmail exits 1":
        return {"FAKE_SENDMAIL_EXIT": "1"}
    if fault == "sendmail hangs":
        return {"FAKE_SENDMAIL_SLEEP": "30"}
    smtp = smtp_server.config()
    if fault == "smtp refused":
        smtp["MISSEDCALL_SMTP_PORT"] = str(free_port())
    elif fault == "smtp stalls":
        smtp["MISSEDCALL_SMTP_HOST"], smtp["MISSEDCALL_SMTP_PORT"] = silent[0], str(silent[1])
    elif fault == "smtp 4xx":
        smtp_server.reply = "451 4.3.0 Try again later"
    elif fault == "smtp 5xx":
        smtp_server.reply = "554 5.7.1 Relaying denied"
    box.configure(**smtp)
    return {}


RELAY_FAULTS = (
    "sendmail exits 75", "sendmail exits 1", "sendmail hangs", "smtp refused", "smtp 4xx", "smtp 5xx", "smtp stalls",
)  # fmt: skip


@pytest.mark.parametrize("fault", RELAY_FAULTS)
def test_relay_failure_leaves_the_call_pending_and_retry_sends_it_once(
    fault: str, tmp_path: Path, sqlite_url: str, smtp_server, silent_tcp_server: tuple[str, int]
) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    env = _relay_fault(box, fault, smtp_server, silent_tcp_server)
    run = timed(box, abandon_peer("1795700100.1"), ["600"], **env)
    record_time(f"relay: {fault}", run)
    assert_agi_ok(run)
    [call] = box.calls()
    assert call.status == "pending" and call.attempts == 1 and call.last_error, call
    assert call.next_attempt_at is not None and call.next_attempt_at > utcnow()
    assert box.stored() == [] and smtp_server.messages == []

    # Relay fixed; retry before the back-off is over does nothing, after it sends once.
    smtp_server.reply = None
    if fault.startswith("smtp"):
        box.configure(**smtp_server.config())
    assert box.admin("retry").returncode == 0
    assert box.calls()[0].status == "pending"
    with box.store() as store:
        store.update_call("1795700100.1", next_attempt_at=utcnow() - timedelta(seconds=1))
    for _ in range(2):
        done = box.admin("retry")
        assert done.returncode == 0, done.stderr
    [call] = box.calls()
    assert call.status == "sent" and call.attempts == 2 and call.last_error == ""
    delivered = len(smtp_server.messages) + len(box.stored())
    assert delivered == 1


def test_backoff_then_failed_then_shown_by_log_and_doctor(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, db_url)
    monkeypatch.setenv("FAKE_SENDMAIL_EXIT", "75")
    settings = box.in_this_process(monkeypatch)
    clock = utcnow()
    call = CallRecord(callid="1795700200.1", queue="600", reason="ABANDON", source="agi", ended_at=clock)
    with box.store() as store:
        assert store.claim_call(call)
        done = notify.notify(store, settings, call, timeout=5, now=clock)
        assert (done.status, done.attempts) == ("pending", 1)
        waits = []
        while True:
            row = store.get_call(call.callid)
            assert row is not None and row.next_attempt_at is not None
            if row.status == "failed":
                break
            assert row.status == "pending"
            waits.append(int((row.next_attempt_at - clock).total_seconds()))
            # A second before the back-off is over nothing happens; at its end the next attempt is made.
            retry.run(store, settings, now=row.next_attempt_at - timedelta(seconds=1))
            assert store.get_call(call.callid).attempts == row.attempts  # type: ignore[union-attr]
            clock = row.next_attempt_at
            retry.run(store, settings, now=clock)
            assert store.get_call(call.callid).attempts == row.attempts + 1  # type: ignore[union-attr]
        assert row.attempts == notify.MAX_ATTEMPTS and "exited with 75" in row.last_error
        assert waits == list(notify.BACKOFF)
        status, detail, fix = delivery_health(store, settings)
        assert status == "WARN" and "1 call(s) failed" in detail and "retry --failed" in fix
    assert box.stored() == []
    shown = box.admin("log", "--status", "failed", "--json")
    assert shown.returncode == 0, shown.stderr
    [listed] = json.loads(shown.stdout)
    assert listed["callid"] == call.callid and listed["status"] == "failed" and listed["attempts"] == 5
    doctor = box.admin("doctor")
    assert "WARN delivery: 1 call(s) failed" in doctor.stdout, doctor.stdout
    # Once the relay is fixed (the admin's processes have no FAKE_SENDMAIL_EXIT), retry --failed sends it once.
    assert box.admin("retry", "--failed").returncode == 0
    assert box.admin("retry", "--failed").returncode == 0
    assert [c.status for c in box.calls()] == ["sent"]
    assert len(box.stored()) == 1


def test_crash_between_sent_and_recorded_costs_one_duplicate_never_a_loop(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_pbx(tmp_path, db_url)
    settings = box.in_this_process(monkeypatch)
    now = utcnow()

    # 1. The real process is SIGKILLed at the real moment: its mail program has accepted the mail and
    #    exits, the notifier has not recorded it yet. For the hook and for retry, the next retry sends it
    #    again once, and never again after that.
    killer = tmp_path / "sendmail-then-kill-parent"
    killer.write_text(f'#!/bin/sh\n"{SENDMAIL}" "$@"\nstatus=$?\nkill -KILL $PPID\nexit $status\n')
    killer.chmod(0o755)
    run = box.run(abandon_peer("1795700300.4"), ["600"], MISSEDCALL_SENDMAIL=str(killer))
    assert not run.ok  # the hook died with the mail sent and its row still pending
    call = CallRecord(callid="1795700300.1", queue="600", reason="ABANDON", source="agi", ended_at=now)
    call.next_attempt_at = now - timedelta(seconds=1)
    with box.store() as store:
        assert store.claim_call(call)
    died = box.admin("retry", MISSEDCALL_SENDMAIL=str(killer))
    assert died.returncode == -signal.SIGKILL, (died.returncode, died.stderr)
    with box.store() as store:
        for callid in ("1795700300.1", "1795700300.4"):
            row = store.get_call(callid)
            assert row is not None and (row.status, row.attempts) == ("pending", 1), row
        for minutes in (0, 2, 10, 60, 600):
            retry.run(store, settings, now=now + timedelta(minutes=minutes))
        assert store.get_call("1795700300.1").status == "sent"  # type: ignore[union-attr]
        assert store.get_call("1795700300.4").status == "sent"  # type: ignore[union-attr]
    mailed = Counter(callids_mailed(box.stored()))
    assert mailed["1795700300.1"] == mailed["1795700300.4"] == 2  # at most one duplicate each

    # 2. The row cannot be written after the mail went (a lock timeout, the database gone that instant):
    #    the notifier keeps the truth in the spool, and retry records it instead of mailing again.
    def crash(*args: object, **kwargs: object) -> None:
        raise StorageError("simulated: the outcome cannot be recorded")

    second = CallRecord(callid="1795700300.2", queue="600", reason="ABANDON", source="agi", ended_at=now)
    with box.store() as store:
        assert store.claim_call(second)
        with monkeypatch.context() as patch:
            patch.setattr(Store, "update_call", crash)
            notify.notify(store, settings, second, timeout=5, now=now)
        assert store.get_call(second.callid).status == "pending"  # type: ignore[union-attr]
        for minutes in (0, 2, 10, 60):
            retry.run(store, settings, now=now + timedelta(minutes=minutes), settle=0)
        assert store.get_call(second.callid).status == "sent"  # type: ignore[union-attr]
    assert Counter(callids_mailed(box.stored()))["1795700300.2"] == 1

    # 3. A process that dies after every send, with no spool to fall back on: bounded by MAX_ATTEMPTS.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    broken = config.load_settings({"MISSEDCALL_CONFIG": str(box.config_file), "MISSEDCALL_SPOOL_DIR": f"{blocker}/x"})
    third = CallRecord(callid="1795700300.3", queue="600", reason="ABANDON", source="agi", ended_at=now)
    with box.store() as store:
        assert store.claim_call(third)
        monkeypatch.setattr(Store, "update_call", crash)
        for minutes in range(0, 24 * 60, 7):
            retry.run(store, broken, now=now + timedelta(minutes=minutes))
    assert Counter(callids_mailed(box.stored()))["1795700300.3"] == notify.MAX_ATTEMPTS


# ============================================================================ SIGKILL at random points


def _stand_ins(maildir: Path) -> list[int]:
    """pids of sendmail stand-ins still storing into ``maildir`` (orphans of killed AGIs)."""
    mine = f"MISSEDCALL_TEST_MAILDIR={maildir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if mine in handle.read().split(b"\0") and b"sendmail" in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _reap_stand_ins(maildir: Path) -> None:
    deadline = time.monotonic() + 10
    while _stand_ins(maildir) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in _stand_ins(maildir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_sigkill_at_random_points_loses_nothing(tmp_path: Path, db_url: str) -> None:
    """100 AGI runs, each SIGKILLed at a random moment: afterwards retry and sweep leave every call sent."""
    box = make_pbx(tmp_path, db_url, MISSEDCALL_FLOOD_LIMIT="100000")
    rng = random.Random(int(os.environ.get("MISSEDCALL_KILL_SEED", "0")) or None)
    base = int(time.time()) - 600
    callids = [f"{base}.{i}" for i in range(100)]
    box.write_queue_log(line for c in callids for line in abandon_lines(c, "600", at=base))

    # How long an undisturbed run takes here, to spread the kills over a whole run.
    probe = timed(box, abandon_peer(f"{base}.999"), ["600"])
    assert_agi_ok(probe)
    span = probe.duration * 1.2
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def one(index: int) -> None:
        callid = callids[index]
        pidfile = pid_dir / f"{index}.pid"
        argv = ["/bin/sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pidfile), sys.executable, str(MISSED), "600"]
        delay = rng.uniform(0, span)

        def killer() -> None:
            started = time.monotonic()
            while not pidfile.exists() and time.monotonic() - started < 10:
                time.sleep(0.002)
            time.sleep(delay)
            try:
                os.kill(int(pidfile.read_text().strip() or "0"), signal.SIGKILL)
                kind = "killed"
            except (ProcessLookupError, ValueError):
                kind = "finished first"
            with lock:
                outcomes[kind] += 1

        thread = threading.Thread(target=killer)
        thread.start()
        run = abandon_peer(callid).run(argv, env=box.environ(), timeout=15)
        thread.join()
        assert run.returncode in (0, -signal.SIGKILL), run

    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(one, index) for index in range(100)]:
            future.result()
    _reap_stand_ins(box.maildir)
    assert outcomes["killed"] >= 50, outcomes

    before = {c.callid: c for c in box.calls()}
    states = Counter(
        "no row (sweep)" if c not in before
        else f"{before[c].status} after {before[c].attempts} attempt(s)"
        for c in callids
    )  # fmt: skip

    # Recovery, as cron does it: sweep (queue_log) and retry, later.
    swept = box.admin("sweep", "--from-start", "--grace", "0")
    assert swept.returncode == 0, swept.stderr
    box.age_spool()
    with box.store() as store:
        store.execute("UPDATE missedcall_calls SET next_attempt_at = ? WHERE status = 'pending'", (utcnow(),))
    assert box.admin("retry").returncode == 0
    assert box.admin("retry").returncode == 0

    rows = {c.callid: c for c in box.calls()}
    assert all(rows[c].status == "sent" for c in callids), Counter(rows[c].status for c in callids if c in rows)
    mailed = Counter(callids_mailed(box.stored()))
    assert all(1 <= mailed[c] <= 2 for c in callids), {c: mailed[c] for c in callids if not 1 <= mailed[c] <= 2}
    assert box.spooled() == []
    print(
        f"\nSIGKILL runs: {dict(outcomes)}; left behind: {dict(states)};"
        f" duplicates after recovery: {sum(1 for c in callids if mailed[c] == 2)}"
    )
