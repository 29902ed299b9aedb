"""The pieces under ``retry``: schema versions 2 and 3 and their migration, the spool, the last known
recipients, ``missedcall-admin retry`` run by several processes at once, and what its mails say."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from missedcall.dburl import parse_db_url
from missedcall.deliver import lastknown, spool
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.schema import ADDED_INDEXES, SCHEMA_VERSION
from missedcall.record.storage import Store
from tests.agibox import abandon_peer, callids_mailed, make_pbx
from tests.mailbox import text_part

# ============================================================================ schema 2 and 3


SCHEMA_5_COLUMNS = ("resolution", "resolved_at", "resolved_by", "talk_seconds", "caller_key", "message_id",
                    "thread_of", "followup", "voicemail")  # fmt: skip


def _make_version_1(store: Store) -> None:
    """Turn a fresh database back into what version 1 created."""
    store.execute("DROP TABLE IF EXISTS missedcall_flood")
    store.execute("DROP TABLE IF EXISTS missedcall_held")
    store.execute("DROP TABLE IF EXISTS missedcall_queues")
    store.execute("ALTER TABLE missedcall_calls DROP COLUMN next_attempt_at")
    store.execute("ALTER TABLE missedcall_calls DROP COLUMN did")
    for index, _table, _columns in ADDED_INDEXES:
        store.execute(f"DROP INDEX {index}" if store.kind == "sqlite" else f"DROP INDEX {index} ON missedcall_calls")
    for column in SCHEMA_5_COLUMNS:
        store.execute(f"ALTER TABLE missedcall_calls DROP COLUMN {column}")
    store.set_state("schema_version", "1")
    store.execute(
        "INSERT INTO missedcall_calls (callid, queue, reason, source, status, attempts) VALUES (?, ?, ?, ?, ?, ?)",
        ("1797000000.1", "600", "ABANDON", "agi", "pending", 1),
    )


def test_migration_from_version_1_is_idempotent(db_url: str) -> None:
    assert SCHEMA_VERSION == 5
    with Store.open(parse_db_url(db_url)) as store:
        store.init()
        _make_version_1(store)
        assert not store.has_column("missedcall_calls", "next_attempt_at")
        assert store.init() == (1, 5)
        assert store.has_column("missedcall_calls", "next_attempt_at") and store.has_column("missedcall_calls", "did")
        assert store.table_exists("missedcall_flood") and store.table_exists("missedcall_held")
        assert store.table_exists("missedcall_queues")
        assert all(store.has_column("missedcall_calls", c) for c in SCHEMA_5_COLUMNS)
        assert store.init() == (5, 5)
        old = store.get_call("1797000000.1")
        assert old is not None and (old.status, old.attempts, old.next_attempt_at) == ("pending", 1, None)
        # A pending call from before the migration (no next_attempt_at) is due at once.
        assert [c.callid for c in store.due_calls(utcnow())] == ["1797000000.1"]


def test_migration_run_by_several_processes_at_once(db_url: str) -> None:
    with Store.open(parse_db_url(db_url)) as store:
        store.init()
        _make_version_1(store)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def migrate() -> None:
        try:
            with Store.open(parse_db_url(db_url), timeout=30) as own:
                barrier.wait()
                own.init()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with Store.open(parse_db_url(db_url)) as store:
        assert store.schema_version() == 5 and store.has_column("missedcall_calls", "did")
        assert store.table_exists("missedcall_queues") and store.has_column("missedcall_calls", "caller_key")


def test_the_hook_migrates_an_old_database_itself(tmp_path: Path, db_url: str) -> None:
    """install.sh runs init, but a hook that meets version 1 (upgrade without init) still records the call."""
    box = make_pbx(tmp_path, db_url)
    with box.store() as store:
        _make_version_1(store)
    run = box.run(abandon_peer("1797000001.1"), ["600"])
    assert run.ok and run.stderr == "", run
    with box.store() as store:
        assert store.schema_version() == 5
        call = store.get_call("1797000001.1")
        assert call is not None and call.status == "sent" and call.caller_key  # the key is filled from now on
    assert len(box.stored()) == 1


def test_a_mail_sent_later_by_retry_says_what_the_first_would_have(tmp_path: Path, db_url: str) -> None:
    """The DID is read from queue_log at hang-up; it is kept on the row, so retry's mail still shows it."""
    box = make_pbx(tmp_path, db_url)
    at = int(time.time()) - 30
    callid = f"{at}.7"
    box.write_queue_log(
        [
            f"{at}|{callid}|600|NONE|DID|74951234567",
            f"{at}|{callid}|600|NONE|ENTERQUEUE||79161234567|1",
            f"{at + 9}|{callid}|600|NONE|ABANDON|1|1|9",
        ]
    )
    # The relay is down at hang-up.
    run = box.run(abandon_peer(callid, caller="79161234567"), ["600"], FAKE_SENDMAIL_EXIT="75")
    assert run.ok, run
    [call] = box.calls()
    assert (call.status, call.extra) == ("pending", {"did": "74951234567"}), call
    with box.store() as store:
        store.update_call(callid, next_attempt_at=utcnow() - timedelta(seconds=1))
    done = box.admin("retry")
    assert done.returncode == 0, done.stderr
    [mail] = box.mails()
    body = text_part(mail)
    assert "74951234567" in body and "79161234567" in body and "9 s" in body, body
    assert box.calls()[0].status == "sent"
    listed = json.loads(box.admin("log", "--json").stdout)
    assert [(c["callid"], c["did"]) for c in listed] == [(callid, "74951234567")]


# ============================================================================ spool


def _call(callid: str = "1797000100.1", **fields: object) -> CallRecord:
    base: dict[str, object] = {
        "callid": callid,
        "queue": "600",
        "reason": "ABANDON",
        "source": "agi",
        "caller_num": "5551234",
        "caller_name": "Иван\nПетров",
        "path": ("600", "601"),
        "wait_seconds": 12,
        "position": 1,
        "ended_at": utcnow(),
        "extra": {"did": "74950000000"},
    }
    base.update(fields)
    return CallRecord(**base)  # type: ignore[arg-type]


def test_spool_file_round_trip_atomic_and_0640(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    old = os.umask(0)
    try:
        path = spool.write(str(folder), _call(status="sent", recipients=("a@example.com",), notified_at=utcnow()))
    finally:
        os.umask(old)
    assert Path(path).name == "call-1797000100.1.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert [p.name for p in folder.iterdir()] == ["call-1797000100.1.json"]  # no temporary file left
    item = spool.read(path)
    assert item.mailed and item.call.caller_name == "Иван\nПетров" and item.call.path == ("600", "601")
    assert item.call.extra == {"did": "74950000000"} and item.call.recipients == ("a@example.com",)
    assert spool.find(str(folder), "1797000100.1") is not None
    assert spool.ready(str(folder)) == []  # too fresh
    assert spool.ready(str(folder), settle=0) == [path]


@pytest.mark.parametrize("callid", ["../../etc/passwd", "a/b", "", "x" * 65, "bad\nname", "\x00"])
def test_spool_refuses_names_that_leave_the_folder(tmp_path: Path, callid: str) -> None:
    with pytest.raises(spool.SpoolError):
        spool.path_for(str(tmp_path), callid)


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[]", b'{"version": 2}', b'{"version": 1, "callid": "x"}', b"\xff\xfe",
     json.dumps({"version": 1, "callid": "../x", "linkedid": "", "queue": "600", "caller_num": "", "caller_name": "",
                 "reason": "ABANDON", "source": "agi", "status": "sent", "last_error": ""}).encode()],
)  # fmt: skip
def test_an_unreadable_spool_file_is_set_aside_and_the_others_go_on(
    tmp_path: Path, sqlite_url: str, content: bytes
) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    (box.spool / "call-1797000200.1.json").write_bytes(content)
    spool.write(str(box.spool), _call("1797000200.2"))
    box.age_spool()
    done = box.admin("retry")
    assert done.returncode == 0, done.stderr
    assert "1 unreadable file(s) set aside" in done.stdout
    assert (box.spool / "bad-call-1797000200.1.json").exists()
    assert [c.callid for c in box.calls()] == ["1797000200.2"]
    assert callids_mailed(box.stored()) == ["1797000200.2"]


def test_retry_in_four_processes_at_once_records_and_mails_each_spooled_call_once(
    tmp_path: Path, mariadb_url: str
) -> None:
    box = make_pbx(tmp_path, mariadb_url, MISSEDCALL_FLOOD_LIMIT="1000")
    for i in range(60):
        mailed = i % 2 == 0
        spool.write(
            str(box.spool),
            _call(f"1797000300.{i}", status="sent" if mailed else "pending",
                  recipients=("ops600@example.com",) if mailed else (), notified_at=utcnow() if mailed else None),
        )  # fmt: skip
    box.age_spool()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "missedcall.admin.cli", "retry"],
            env=box.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert b"unreadable" not in out, out  # a file another retry took is not "unreadable"
    assert box.spooled() == []
    rows = box.calls()
    assert len(rows) == 60 and Counter(c.status for c in rows) == {"sent": 60}
    mailed = Counter(callids_mailed(box.stored()))
    assert sorted(mailed) == sorted(f"1797000300.{i}" for i in range(1, 60, 2))  # only the ones not mailed yet
    assert set(mailed.values()) == {1}


# ============================================================================ last known recipients


def test_last_known_recipients_follow_lookups_and_changes(tmp_path: Path, sqlite_url: str) -> None:
    box = make_pbx(tmp_path, sqlite_url)
    copy = box.spool / "recipients.json"
    assert not copy.exists()
    assert box.admin("recipients", "add", "602", "ops602@example.com").returncode == 0
    rows = lastknown.load(str(box.spool))
    assert rows is not None and ("602", "ops602@example.com") in rows and ("*", "boss@example.com") in rows
    assert box.admin("recipients", "remove", "602", "ops602@example.com").returncode == 0
    assert ("602", "ops602@example.com") not in (lastknown.load(str(box.spool)) or [])
    csv_file = tmp_path / "team.csv"
    csv_file.write_text("queue,email,name\n603,ops603@example.com,Ops\n")
    assert box.admin("recipients", "import", str(csv_file)).returncode == 0
    assert ("603", "ops603@example.com") in (lastknown.load(str(box.spool)) or [])
    # A look-up by the notifier refreshes it too, and rewrites it only when something changed.
    with box.store() as store:
        store.add_recipient("600", "sql-added@example.com")
    before = copy.stat().st_mtime_ns
    assert box.run(abandon_peer("1797000400.1"), ["600"]).ok
    assert ("600", "sql-added@example.com") in (lastknown.load(str(box.spool)) or [])
    changed = copy.stat().st_mtime_ns
    assert changed != before
    assert box.run(abandon_peer("1797000400.2"), ["600"]).ok
    assert copy.stat().st_mtime_ns == changed
    assert stat.S_IMODE(copy.stat().st_mode) == 0o640


def test_files_root_writes_in_the_spool_take_the_folders_owner(tmp_path: Path, sqlite_url: str) -> None:
    """(As root, like tests/run and an admin's missedcall-admin.)"""
    box = make_pbx(tmp_path, sqlite_url)
    os.chown(box.spool, 65534, 65534)
    assert box.admin("recipients", "add", "602", "ops602@example.com").returncode == 0
    st = (box.spool / "recipients.json").stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)


def test_pending_calls_are_not_retried_before_their_time(tmp_path: Path, sqlite_url: str) -> None:
    """A fresh claim is left to its claimer for the lease; a due call is taken by one retry only."""
    box = make_pbx(tmp_path, sqlite_url)
    now = utcnow()
    with box.store() as store:
        call = _call("1797000500.1")
        assert store.claim_call(call)
        assert call.next_attempt_at is not None and call.next_attempt_at > now + timedelta(seconds=50)
        assert store.due_calls(now) == []
        assert [c.callid for c in store.due_calls(now + timedelta(seconds=61))] == ["1797000500.1"]
        first = store.get_call("1797000500.1")
        second = store.get_call("1797000500.1")
        assert first is not None and second is not None
        assert store.begin_attempt(first, next_attempt_at=now + timedelta(minutes=1))
        assert not store.begin_attempt(second, next_attempt_at=now + timedelta(minutes=1))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=20)), max_size=6))
def test_the_copy_is_json_of_the_rows_and_is_written_only_when_they_change(
    tmp_path: Path, rows: list[tuple[str, str]]
) -> None:
    """Its bytes decide whether it is current (no json on a call), so they must read back as the rows."""
    folder = tmp_path / f"spool-{os.urandom(4).hex()}"
    folder.mkdir()
    copy = folder / "recipients.json"
    assert lastknown.save(str(folder), rows) and lastknown.load(str(folder)) == rows
    assert json.loads(copy.read_bytes())["rows"] == [list(r) for r in rows] and copy.read_bytes().isascii()
    inode = copy.stat().st_ino
    assert lastknown.save(str(folder), rows) and copy.stat().st_ino == inode  # current: not rewritten
    assert lastknown.save(str(folder), [*rows, ("*", "x")]) and copy.stat().st_ino != inode


def test_a_copy_in_another_layout_is_rewritten_once_and_a_tampered_one_too(tmp_path: Path) -> None:
    rows = [("600", "ops@example.com"), ("*", 'bo"ss\\@example.com')]
    copy = tmp_path / "recipients.json"
    older = {"version": 1, "written_at": "2026-11-01T00:00:00+00:00", "rows": [list(r) for r in rows]}
    copy.write_text(json.dumps(older, ensure_ascii=True, indent=0))  # how earlier versions wrote it
    assert lastknown.load(str(tmp_path)) == rows
    inode = copy.stat().st_ino
    assert lastknown.save(str(tmp_path), rows) and copy.stat().st_ino != inode
    inode = copy.stat().st_ino
    assert lastknown.save(str(tmp_path), rows) and copy.stat().st_ino == inode
    current = copy.read_bytes()
    # Cut, a second "rows" after the stamp (json.loads keeps the last one), and one with a plain ending.
    second_rows = (current.replace(b'}\n', b'}, "rows": []}\n'), current[:-3] + b'", "rows": [], "x": "y"}\n')
    for tampered in (current[:-1], *second_rows):
        copy.write_bytes(tampered)
        assert lastknown.save(str(tmp_path), rows)
        assert copy.read_bytes() != tampered and lastknown.load(str(tmp_path)) == rows
