"""Faults made for real around ``missedcall-admin serve``: the database black-holed, the relay hung,
the service SIGKILLed in the middle of a burst.

The promise is the process hook's (tests/test_faults.py): every missed call reaches
someone, at most one duplicate per mail that was being handed over when the service
died; and Asterisk's channel is never held long, whatever hangs.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

from tests.agibox import abandon_lines, abandon_peer, callids_mailed, make_pbx
from tests.agipeer.network import run_many
from tests.fastagibox import Service
from tests.support.mariadb import MariaDBDatabase


def _held(runs: list) -> tuple[float, float]:  # type: ignore[type-arg]
    held = sorted(r.held for r in runs)
    return held[len(held) // 2], held[-1]


def test_black_holed_database_mails_spools_and_holds_no_channel(
    tmp_path: Path, mariadb_database: MariaDBDatabase, silent_tcp_server: tuple[str, int]
) -> None:
    box = make_pbx(tmp_path, mariadb_database.url, MISSEDCALL_FALLBACK_TO="fallback@example.com")
    host, port = silent_tcp_server
    db = mariadb_database
    box.configure(MISSEDCALL_DB_URL=f"mysql://{db.user}:{db.password}@{host}:{port}/{db.name}")
    base = int(time.time()) - 120
    callids = [f"{base}.{i}" for i in range(30)]
    box.write_queue_log(line for c in callids for line in abandon_lines(c, "600", at=base))
    with Service(box) as service:
        runs = run_many([abandon_peer(c) for c in callids], service.host, service.port, connections=10, timeout=30)
        assert all(r.ok for r in runs), [r for r in runs if not r.ok][:2]
        median, worst = _held(runs)
        # One connect timeout (1 s) for the first calls, then the breaker sends the rest straight to the spool.
        assert worst < 3.0 and median < 1.5, (median, worst)
        deadline = time.monotonic() + 60
        while len(callids_mailed(box.stored())) < len(callids) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert service.proc.returncode == 0
    assert Counter(callids_mailed(box.stored())) == Counter(callids)  # each once, from the fallback address
    assert len(box.spooled()) == len(callids)

    # The database is back: retry records every spooled call as sent, and mails nothing again.
    box.configure(MISSEDCALL_DB_URL=db.url)
    box.age_spool()
    done = box.admin("retry")
    assert done.returncode == 0, done.stderr
    rows = {c.callid: c for c in box.calls()}
    assert all(rows[c].status == "sent" for c in callids)
    assert Counter(callids_mailed(box.stored())) == Counter(callids) and box.spooled() == []


def test_hung_relay_holds_no_channel_and_retry_sends_later(
    tmp_path: Path, sqlite_url: str, smtp_server, silent_tcp_server: tuple[str, int]  # type: ignore[no-untyped-def]
) -> None:
    box = make_pbx(tmp_path, sqlite_url, MISSEDCALL_FLOOD_LIMIT="100000")
    box.configure(
        MISSEDCALL_TRANSPORT="smtp",
        MISSEDCALL_SMTP_HOST=silent_tcp_server[0],
        MISSEDCALL_SMTP_PORT=str(silent_tcp_server[1]),
        MISSEDCALL_SMTP_TIMEOUT="2",
    )
    base = int(time.time()) - 120
    callids = [f"{base}.{i}" for i in range(20)]
    box.write_queue_log(line for c in callids for line in abandon_lines(c, "600", at=base))
    with Service(box) as service:
        runs = run_many([abandon_peer(c) for c in callids], service.host, service.port, connections=20, timeout=30)
        assert all(r.ok for r in runs)
        median, worst = _held(runs)
        assert worst < 1.0, (median, worst)  # the relay's wait is the mail pool's, never the channel's
    rows = {c.callid: c for c in box.calls()}
    assert set(rows) == set(callids) and {r.status for r in rows.values()} == {"pending"}

    box.configure(MISSEDCALL_SMTP_HOST=smtp_server.host, MISSEDCALL_SMTP_PORT=str(smtp_server.port))
    with box.store() as store:
        store.execute("UPDATE missedcall_calls SET next_attempt_at = NULL WHERE status = 'pending'")
    assert box.admin("retry").returncode == 0
    mailed = Counter(str(m.message["X-Missedcall-Callid"]) for m in smtp_server.messages)
    assert mailed == Counter(callids)


def test_sigkill_mid_burst_loses_nothing(tmp_path: Path, sqlite_url: str, smtp_server) -> None:  # type: ignore[no-untyped-def]
    """The service dies mid-burst. Sessions it finished are recorded; the ones it never answered
    are refused (AGISTATUS=FAILURE: the dialplan runs missed.py); the ones it was in the middle
    of are the sweeper's. After cron's sweep and retry every call is mailed, at most one
    duplicate per mail that was being handed over (at most --workers)."""
    workers = 2
    box = make_pbx(
        tmp_path,
        sqlite_url,
        MISSEDCALL_FLOOD_LIMIT="100000",
        MISSEDCALL_TRANSPORT="smtp",
        MISSEDCALL_SMTP_HOST=smtp_server.host,
        MISSEDCALL_SMTP_PORT=str(smtp_server.port),
    )
    base = int(time.time()) - 600
    callids = [f"{base}.{i}" for i in range(300)]
    box.write_queue_log(line for c in callids for line in abandon_lines(c, "600", at=base))
    service = Service(box, "--workers", str(workers))
    killed = threading.Event()

    def killer() -> None:
        while len(box.calls()) < 60:
            time.sleep(0.01)
        service.signal(signal.SIGKILL)
        killed.set()

    thread = threading.Thread(target=killer)
    thread.start()
    runs = run_many([abandon_peer(c) for c in callids], service.host, service.port, connections=10, timeout=30)
    thread.join(60)
    assert killed.is_set()
    service.proc.wait(10)

    refused = [c for c, r in zip(callids, runs) if not r.connected]
    cut = [c for c, r in zip(callids, runs) if r.connected and not r.ok]
    assert refused, "the burst ended before the kill"
    # The dialplan's fallback for every refused session: the process hook.
    fallback = box.run_many([(abandon_peer(c), ["600"]) for c in refused], parallel=4)
    assert all(r.ok for r in fallback)

    # Cron: sweep (queue_log: the sessions cut mid-way), retry (pending rows whose lease is over).
    swept = box.admin("sweep", "--from-start", "--grace", "0")
    assert swept.returncode == 0, swept.stderr
    box.age_spool()
    with box.store() as store:
        store.execute("UPDATE missedcall_calls SET next_attempt_at = NULL WHERE status = 'pending'")
    assert box.admin("retry").returncode == 0
    rows = {c.callid: c for c in box.calls()}
    assert all(rows[c].status == "sent" for c in callids), Counter(rows[c].status for c in callids if c in rows)
    mailed = Counter(str(m.message["X-Missedcall-Callid"]) for m in smtp_server.messages)
    assert set(mailed) == set(callids)
    twice = [c for c in callids if mailed[c] > 1]
    assert all(mailed[c] <= 2 for c in callids) and len(twice) <= workers, twice
    print(f"\nSIGKILL mid-burst: {len(refused)} refused (fallback hook), {len(cut)} cut, duplicates {twice}")
