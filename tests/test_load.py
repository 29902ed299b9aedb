"""Load: 200 AGI processes at once, on MariaDB with max_connections lowered to 20, and on SQLite.

Promise: 200 rows, 200 mails, none lost, none twice, every process exits 0.
On 2 cores 200 Python processes cannot each finish within the 3 s budget: the
hook then defers the mail (pending, due at once) or, when it cannot get a
database connection in time, mails from the last known recipients or spools
the call. ``retry`` (cron, every minute) finishes the job; the test runs it
right after the burst, as the next cron minute would (the spool files are aged
past spool.SETTLE: every AGI has exited by then). Cron's sweep runs too (the
catch-all); the figures, printed with pytest -s, say how many calls it had to catch.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from missedcall.record.model import utcnow
from tests.agibox import Pbx, abandon_lines, abandon_peer, callids_mailed, make_pbx
from tests.support.mariadb import MariaDBServer

CALLS = 200


@contextlib.contextmanager
def max_connections(server: MariaDBServer, value: int) -> Iterator[None]:
    """Lower the server's max_connections for the block; restored whatever happens.

    The root connection is opened first and kept: MariaDB keeps one slot beyond the limit
    for an administrator, but there is no need to count on it.
    """
    conn = server.root()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.max_connections")
            (old,) = cur.fetchone()
            cur.execute(f"SET GLOBAL max_connections = {int(value)}")
        try:
            yield
        finally:
            with conn.cursor() as cur:
                cur.execute(f"SET GLOBAL max_connections = {int(old)}")
                cur.execute("SELECT @@GLOBAL.max_connections")
                assert cur.fetchone()[0] == int(old)
    finally:
        conn.close()


def _burst(box: Pbx, callids: list[str]) -> tuple[float, list]:
    jobs = [(abandon_peer(c, caller=f"5550{i:03d}"), ["600"]) for i, c in enumerate(callids)]
    started = time.monotonic()
    runs = box.run_many(jobs, timeout=180)
    return time.monotonic() - started, runs


@pytest.mark.parametrize("backend", ["mariadb", "sqlite"])
def test_200_agi_processes_at_once(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("mariadb_url" if backend == "mariadb" else "sqlite_url")
    box = make_pbx(tmp_path, url, MISSEDCALL_FLOOD_LIMIT="100000")
    assert box.admin("recipients", "add", "600", "ops600@example.com").returncode == 0  # the local copy
    base = int(time.time()) - 60
    callids = [f"{base}.{i}" for i in range(CALLS)]
    box.write_queue_log(line for i, c in enumerate(callids) for line in abandon_lines(c, "600", at=base + i % 30))

    if backend == "mariadb":
        with max_connections(request.getfixturevalue("mariadb_server"), 20):
            took, runs = _burst(box, callids)
    else:
        took, runs = _burst(box, callids)

    bad = [r for r in runs if not r.ok or r.stdout_garbage or r.stderr]
    assert not bad, bad[:3]
    at_once = Counter(callids_mailed(box.stored()))
    rows = {c.callid: c for c in box.calls()}
    states = Counter(rows[c].status if c in rows else "spooled" for c in callids)
    spooled = len(box.spooled())
    in_spool = {p.name[len("call-") : -len(".json")] for p in box.spooled()}
    unseen = [c for c in callids if c not in rows and c not in in_spool]  # left to the sweeper

    # The next cron minute: sweep (the catch-all, from queue_log) and retry (spool, deferred mails).
    swept = box.admin("sweep", "--from-start", "--grace", "0")
    assert swept.returncode == 0, swept.stderr
    box.age_spool()
    with box.store() as store:  # a failed attempt's back-off (1 min) is over by the time the next one runs
        store.execute("UPDATE missedcall_calls SET next_attempt_at = ? WHERE status = 'pending'", (utcnow(),))
    retry_started = time.monotonic()
    for _ in range(3):
        done = box.admin("retry", timeout=300)
        assert done.returncode == 0, done.stderr
        if all(c.status == "sent" for c in box.calls()) and len(box.calls()) == CALLS and not box.spooled():
            break
    retry_took = time.monotonic() - retry_started

    rows = {c.callid: c for c in box.calls()}
    assert sorted(rows) == sorted(callids)
    assert Counter(c.status for c in rows.values()) == {"sent": CALLS}
    mailed = Counter(callids_mailed(box.stored()))
    assert sorted(mailed) == sorted(callids), "a call was never mailed"
    twice = {c: n for c, n in mailed.items() if n != 1}
    said = {c: [cmd for cmd in runs[callids.index(c)].commands if cmd.startswith("VERBOSE")] for c in twice}
    assert not twice, (twice, said, swept.stdout[-1000:], done.stdout[-1000:], done.stderr[-2000:])
    assert box.spooled() == []
    durations = sorted(r.duration for r in runs)
    print(
        f"\nload {backend}: {CALLS} AGI processes exited 0 within {took:.1f} s"
        f" (each {durations[0]:.2f}..{durations[-1]:.2f} s, median {durations[len(durations) // 2]:.2f} s);"
        f" mailed by the AGIs: {len(at_once)}; rows right after: {dict(states)}; spool files: {spooled};"
        f" neither recorded nor spooled by the AGI (left to the sweeper): {len(unseen)};"
        f" retry delivered the rest in {retry_took:.1f} s; all {CALLS} delivered {took + retry_took:.1f} s"
        " after the burst began (plus the wait for the next cron minute)"
    )
