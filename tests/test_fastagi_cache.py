"""What the FastAGI service keeps between calls, and how it lets go of it (missedcall.detect.fastagi_cache,
missedcall.detect.fastagi_work): the copy of recipients and per-queue settings honours a change made with
``missedcall-admin`` once its bound is over or after SIGHUP, and a database connection the server closed
is opened again with the call still recorded in the database, not spooled.

Real service over TCP with the scripted peer, real SQLite and MariaDB, the sendmail stand-in.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.agibox import Pbx, abandon_peer, make_pbx
from tests.agipeer.network import run_network
from tests.fastagibox import Service, wait_for
from tests.mailbox import read_mail
from tests.support.mariadb import MariaDBDatabase

BOUND = 1  # MISSEDCALL_FASTAGI_CACHE_SECONDS in the test that waits the bound out


@pytest.fixture
def pbx(tmp_path: Path, db_url: str) -> Pbx:
    return make_pbx(tmp_path, db_url, MISSEDCALL_FLOOD_LIMIT="100000")


def call_and_mail(pbx: Pbx, service: Service, callid: str, caller: str) -> list[str]:
    """One abandoned call through the service; the recipients of its mail."""
    run = run_network(abandon_peer(callid, caller=caller), service.host, service.port)
    assert run.ok, run
    wait_for(lambda: any(m.message["X-Missedcall-Callid"] == callid for m in read_mail(pbx.maildir)))
    [mail] = [m for m in read_mail(pbx.maildir) if m.message["X-Missedcall-Callid"] == callid]
    return sorted(mail.recipients)


def admin_ok(pbx: Pbx, *argv: str) -> None:
    done = pbx.admin(*argv)
    assert done.returncode == 0, done.stderr


def test_a_recipient_added_or_removed_is_honoured_once_the_bound_is_over(pbx: Pbx) -> None:
    with Service(pbx, MISSEDCALL_FASTAGI_CACHE_SECONDS=str(BOUND)) as service:
        assert call_and_mail(pbx, service, "1795700000.1", "5550001") == ["boss@example.com", "ops600@example.com"]
        admin_ok(pbx, "recipients", "add", "600", "new600@example.com")
        time.sleep(BOUND + 0.2)  # the bound itself, not a measurement: the copy is older than BOUND now
        assert call_and_mail(pbx, service, "1795700000.2", "5550002") == [
            "boss@example.com",
            "new600@example.com",
            "ops600@example.com",
        ]
        admin_ok(pbx, "recipients", "remove", "600", "ops600@example.com")
        time.sleep(BOUND + 0.2)
        assert call_and_mail(pbx, service, "1795700000.3", "5550003") == ["boss@example.com", "new600@example.com"]
    assert service.proc.returncode == 0, service.stderr.read_text()


def test_the_copy_holds_within_its_bound_and_sighup_drops_it(pbx: Pbx) -> None:
    """With a long bound the change waits (the copy is really used), and a reload makes it count at once."""
    with Service(pbx, MISSEDCALL_FASTAGI_CACHE_SECONDS="60") as service:
        assert call_and_mail(pbx, service, "1795700001.1", "5550011") == ["boss@example.com", "ops600@example.com"]
        admin_ok(pbx, "recipients", "add", "600", "new600@example.com")
        admin_ok(pbx, "queues", "set", "600", "--label", "Sales")
        # Within the bound: the copy answers (these two calls take well under 60 s).
        assert call_and_mail(pbx, service, "1795700001.2", "5550012") == ["boss@example.com", "ops600@example.com"]
        service.signal(signal.SIGHUP)
        wait_for(lambda: any("SIGHUP" in line for line in service.log_lines()))
        assert call_and_mail(pbx, service, "1795700001.3", "5550013") == [
            "boss@example.com",
            "new600@example.com",
            "ops600@example.com",
        ]
        [mail] = [m for m in read_mail(pbx.maildir) if m.message["X-Missedcall-Callid"] == "1795700001.3"]
        assert "Sales" in str(mail.message["Subject"])
    assert service.proc.returncode == 0, service.stderr.read_text()


def test_no_copy_at_all_with_a_bound_of_zero(pbx: Pbx) -> None:
    with Service(pbx, MISSEDCALL_FASTAGI_CACHE_SECONDS="0") as service:
        assert call_and_mail(pbx, service, "1795700002.1", "5550021") == ["boss@example.com", "ops600@example.com"]
        admin_ok(pbx, "recipients", "add", "600", "new600@example.com")
        assert "new600@example.com" in call_and_mail(pbx, service, "1795700002.2", "5550022")
    assert service.proc.returncode == 0, service.stderr.read_text()


def test_a_bad_bound_stops_the_start_in_one_line(pbx: Pbx) -> None:
    with pytest.raises(AssertionError, match="MISSEDCALL_FASTAGI_CACHE_SECONDS must be a whole number"):
        Service(pbx, MISSEDCALL_FASTAGI_CACHE_SECONDS="soon")


def _kill_connections(db: MariaDBDatabase) -> int:
    """KILL every connection of the database's own user (the service's), as a server restart would."""
    root = db.server.root()
    try:
        with root.cursor() as cursor:
            cursor.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (db.user,))
            ids = [int(row[0]) for row in cursor.fetchall()]
            for number in ids:
                cursor.execute(f"KILL CONNECTION {number}")
    finally:
        root.close()
    return len(ids)


def test_connections_the_server_closed_are_reopened_and_the_call_recorded(
    tmp_path: Path, mariadb_url: str, mariadb_database: MariaDBDatabase
) -> None:
    pbx = make_pbx(tmp_path, mariadb_url, MISSEDCALL_FLOOD_LIMIT="100000", MISSEDCALL_FASTAGI_CACHE_SECONDS="0")
    with Service(pbx) as service:
        call_and_mail(pbx, service, "1795700003.1", "5550031")
        assert _kill_connections(mariadb_database) >= 2  # at least one record and one mail thread's
        assert call_and_mail(pbx, service, "1795700003.2", "5550032") == ["boss@example.com", "ops600@example.com"]
        wait_for(lambda: {c.callid: c.status for c in pbx.calls()}.get("1795700003.2") == "sent")
    assert service.proc.returncode == 0, service.stderr.read_text()
    assert pbx.spooled() == []  # recorded in the database itself, not kept for retry
    assert not [line for line in service.log_lines() if "database unreachable" in line]
