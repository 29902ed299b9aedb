"""The same storage behaviour on a real MariaDB (FreePBX-style user) and on SQLite."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

import pytest

from missedcall.dburl import parse_db_url
from missedcall.deliver import lastknown
from missedcall.record.db import StorageError
from missedcall.record.model import CallRecord
from missedcall.record.schema import SCHEMA_VERSION
from missedcall.record.storage import Store
from tests.paths import REPO_ROOT


@pytest.fixture
def store(db_url: str):
    with Store.open(parse_db_url(db_url)) as opened:
        opened.init()
        yield opened


def sample(callid: str = "1795659185.13", **overrides: object) -> CallRecord:
    values: dict[str, object] = {
        "callid": callid,
        "queue": "601",
        "reason": "ABANDON",
        "source": "agi",
        "path": ("600", "601"),
        "caller_num": "79161234567",
        "caller_name": "Иван Петров",
        "wait_seconds": 12,
        "position": 1,
        "entered_at": datetime(2026, 11, 26, 9, 0, 5, tzinfo=timezone.utc),
        "ended_at": datetime(2026, 11, 26, 9, 0, 17, tzinfo=timezone.utc),
    }
    values.update(overrides)
    return CallRecord(**values)  # type: ignore[arg-type]


def test_init_is_idempotent_and_records_the_version(db_url: str) -> None:
    with Store.open(parse_db_url(db_url)) as first:
        assert first.init() == (None, SCHEMA_VERSION)
        assert first.init() == (SCHEMA_VERSION, SCHEMA_VERSION)
        assert first.schema_version() == SCHEMA_VERSION
        for table in ("missedcall_recipients", "missedcall_calls", "missedcall_state"):
            assert first.table_exists(table)


def test_claim_is_once_per_callid(store: Store) -> None:
    assert store.claim_call(sample())
    assert not store.claim_call(sample(source="queue_log"))
    got = store.get_call("1795659185.13")
    assert got is not None
    assert got.source == "agi" and got.path == ("600", "601") and got.caller_name == "Иван Петров"
    assert got.entered_at == datetime(2026, 11, 26, 9, 0, 5, tzinfo=timezone.utc)
    assert got.status == "pending" and got.attempts == 0


def test_concurrent_claims_have_exactly_one_winner(db_url: str) -> None:
    with Store.open(parse_db_url(db_url)) as setup:
        setup.init()
    wins: list[bool] = []

    def claim() -> None:
        with Store.open(parse_db_url(db_url)) as own:
            wins.append(own.claim_call(sample("race.1")))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(wins) == [False] * 7 + [True]


def test_update_and_filters(store: Store) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    store.claim_call(sample("a.1", queue="600", ended_at=now - timedelta(days=3)))
    store.claim_call(sample("a.2", queue="601", ended_at=now - timedelta(hours=1)))
    store.claim_call(sample("a.3", queue="601", ended_at=now - timedelta(minutes=5)))
    store.update_call("a.3", status="sent", attempts=1, recipients=["x@example.com", "y@example.com"], notified_at=now)
    assert [c.callid for c in store.calls()] == ["a.3", "a.2", "a.1"]
    assert [c.callid for c in store.calls(since=now - timedelta(hours=2))] == ["a.3", "a.2"]
    assert [c.callid for c in store.calls(queue="601", status="sent")] == ["a.3"]
    assert [c.callid for c in store.calls(limit=1)] == ["a.3"]
    sent = store.get_call("a.3")
    assert sent and sent.recipients == ("x@example.com", "y@example.com") and sent.notified_at == now


def test_recipients(store: Store) -> None:
    assert store.add_recipient("600", "ops@example.com", "Ops")
    assert not store.add_recipient("600", "ops@example.com")
    assert store.add_recipient("*", "boss@example.com")
    assert store.add_recipient("601", "other@example.com")
    assert lastknown.split(store.recipient_rows(), "600") == (["ops@example.com"], ["boss@example.com"])
    assert lastknown.split(store.recipient_rows(), "602") == ([], ["boss@example.com"])
    assert lastknown.split(store.recipient_rows(), "*") == ([], ["boss@example.com"])
    assert [r.email for r in store.recipients("600")] == ["ops@example.com"]
    assert store.remove_recipient("600", "ops@example.com")
    assert not store.remove_recipient("600", "ops@example.com")


def test_an_address_is_one_recipient_whatever_its_case_on_both_engines(store: Store) -> None:
    assert store.add_recipient("600", "Ops@Example.com", "Ops")
    assert not store.add_recipient("600", "ops@example.COM")  # SQLite's own UNIQUE would have let it in
    assert store.add_recipient("601", "ops@example.com")  # another queue: another row
    assert [(r.queue, r.email) for r in store.recipients()] == [("600", "Ops@Example.com"), ("601", "ops@example.com")]
    assert store.remove_recipient("600", "OPS@example.com")
    assert [r.queue for r in store.recipients()] == ["601"]


def test_hostile_values_are_stored_verbatim_and_clipped(store: Store) -> None:
    name = "Robert'); DROP TABLE missedcall_calls;-- \x00 " + "я" * 600
    did = "1'; DELETE FROM missedcall_calls;-- \x00\U0001f4de" + "9" * 100
    assert store.claim_call(sample("h.1", caller_name=name, caller_num="1' OR '1'='1", extra={"did": did}))
    got = store.get_call("h.1")
    assert got is not None
    assert got.caller_num == "1' OR '1'='1"
    assert got.caller_name == name[:512]
    assert got.extra == {"did": did[:64]}
    assert store.table_exists("missedcall_calls")


def test_state(store: Store) -> None:
    assert store.get_state("queue_log_position") is None
    store.set_state("queue_log_position", "1:2:3")
    store.set_state("queue_log_position", "1:2:4")
    assert store.get_state("queue_log_position") == "1:2:4"


def test_unreachable_database_is_a_storage_error_without_the_password() -> None:
    target = parse_db_url("mysql://freepbxuser:S3cretPw@127.0.0.1:1/asterisk")
    with pytest.raises(StorageError) as caught:
        Store.open(target, timeout=1)
    assert "S3cretPw" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


def test_wrong_password_is_a_storage_error(mariadb_url: str) -> None:
    target = parse_db_url(mariadb_url)
    bad = parse_db_url(mariadb_url.replace(f":{target.password}@", ":wrong-Pw@"))
    with pytest.raises(StorageError) as caught:
        Store.open(bad, timeout=2)
    assert "Access denied" in str(caught.value) and "wrong-Pw" not in str(caught.value)


def test_freepbx_queue_labels(mariadb_url: str) -> None:
    with Store.open(parse_db_url(mariadb_url)) as store:
        assert store.freepbx_queues() is None
        assert store.queue_label("600") == ""
        store.execute("CREATE TABLE queues_config (extension VARCHAR(20) PRIMARY KEY, descr VARCHAR(35))")
        store.execute("INSERT INTO queues_config VALUES ('600', 'Продажи'), ('601', 'Support')")
        assert store.freepbx_queues() == {"600": "Продажи", "601": "Support"}
        assert store.queue_label("600") == "Продажи"


def test_no_statement_needs_an_sqlite_newer_than_centos_7s() -> None:
    """CentOS 7 (SNG7) ships SQLite 3.7.17, which a Python built there links: no UPSERT (3.24), RETURNING
    (3.35), window functions (3.25), UPDATE ... FROM (3.33), ->> (3.38) or STRICT tables (3.37) in our SQL."""
    # Our SQL is upper case, so prose never matches.
    newer = re.compile(r"ON CONFLICT\s*\(|\bRETURNING\b|\bOVER\s*\(|\bUPDATE\b[^\"']*\bFROM\b|->>|\)\s*STRICT\b")
    found = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in sorted((REPO_ROOT / "missedcall").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if newer.search(line) and not line.lstrip().startswith("#")
    ]
    assert not found, found
