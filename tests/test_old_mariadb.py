"""The tables on MariaDB 5.5 and 10.1, what SNG7 runs under FreePBX 13 to 16.

Those servers keep InnoDB rows in COMPACT format, whose index columns hold at most 767 bytes, and
run without strict modes. A utf8mb4 VARCHAR(254) key (1,016 bytes) does not fit: ``init`` failed
there on four tables, so the product never started. The keys are VARCHAR(191) now (764 bytes),
and an address or chat key is at most 191 characters (config.ADDRESS_MAX).

The server here is today's MariaDB set to those defaults for the test's duration
(tests.support.mariadb.old_server_defaults); the first test checks that it really refuses the old
keys, so the others cannot pass on a server that would have taken anything. Many ``db_url`` tests
run there as well (tests/conftest.py, OLD_MARIADB_MODULES).
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pymysql
import pytest

from missedcall import config
from missedcall.dburl import parse_db_url
from missedcall.deliver import flood, targets
from missedcall.record import deliveries, schema
from missedcall.record.model import CallRecord
from missedcall.record.storage import Store
from tests.support.mariadb import MariaDBDatabase, MariaDBServer, old_server_defaults, undo_interrupted_old_defaults

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
#: 64 + 1 + 126 = 191 characters: the longest address accepted.
LONGEST = "a" * 64 + "@" + "b" * 61 + "." + "c" * 61 + ".ru"
TABLES = sorted(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", " ".join(schema.DDL_MYSQL)))


def _tables(db: MariaDBDatabase) -> dict[str, tuple[str, str]]:
    with contextlib.closing(db.server.root()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT table_name, row_format, table_collation FROM information_schema.tables WHERE table_schema = %s",
            (db.name,),
        )
        return {str(name): (str(row_format), str(collation)) for name, row_format, collation in cur.fetchall()}


def test_the_server_refuses_what_the_tables_had_before(old_mariadb_database: MariaDBDatabase) -> None:
    before = schema.DDL_MYSQL[1].replace("VARCHAR(191)", "VARCHAR(254)")  # missedcall_recipients until now
    assert "email VARCHAR(254)" in before
    with contextlib.closing(old_mariadb_database.connect()) as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as caught:
            cur.execute(before)
    assert caught.value.args[0] in (1071, 1709), caught.value  # key too long / index column too large


def test_init_makes_every_table_there(old_mariadb_database: MariaDBDatabase) -> None:
    with Store.open(parse_db_url(old_mariadb_database.url)) as store:
        assert store.init() == (None, schema.SCHEMA_VERSION)
        assert store.init() == (schema.SCHEMA_VERSION, schema.SCHEMA_VERSION)  # and again: nothing to do
        for name, table, _columns in schema.ADDED_INDEXES:
            assert name in store.index_names(table)
    made = _tables(old_mariadb_database)
    assert sorted(made) == TABLES
    for name, (row_format, collation) in made.items():
        # COMPACT proves the server's default applied; utf8mb4 in a latin1 database, that the tables say so.
        assert (row_format, collation.split("_")[0]) == ("Compact", "utf8mb4"), name


def test_the_longest_address_and_chat_key_go_through_every_keyed_table(db_url: str) -> None:
    assert targets.KEY_MAX == config.ADDRESS_MAX == 191  # the key columns, VARCHAR(191)
    assert len(LONGEST) == config.ADDRESS_MAX and config.is_address(LONGEST) and targets.problem(LONGEST) == ""
    hook = targets.parse("webhook:https://" + "h" * 60 + ".example.com/" + "p" * 200 + "/SECRET")
    assert targets.KEY_MAX - 2 <= len(hook.key) <= targets.KEY_MAX and targets.problem(hook.key) == ""
    first = CallRecord(callid="1796000000.1", queue="600", reason="ABANDON", source="agi")
    second = CallRecord(callid="1796000000.2", queue="600", reason="ABANDON", source="agi")
    with Store.open(parse_db_url(db_url)) as store:
        store.init()
        assert store.add_recipient("600", LONGEST, "Длинный адрес")
        assert not store.add_recipient("600", LONGEST, "")
        twin = LONGEST[:-1] + "s"  # the same but for the last character: the unique key sees the whole address
        assert store.add_recipient("600", twin, "") and store.remove_recipient("600", twin)
        assert deliveries.add(store, "600", hook.key, hook.stored_target, "")
        assert {(r.email, r.name) for r in store.recipients("600")} >= {(LONGEST, "Длинный адрес")}
        assert deliveries.urls(store, [hook.key]) == {hook.key: hook.stored_target}
        window = {"limit": 1, "window_minutes": 5}
        assert flood.reserve(store, first, [LONGEST, hook.key], now=T0, **window).single == [LONGEST, hook.key]
        split = flood.reserve(store, second, [LONGEST, hook.key], now=T0 + timedelta(seconds=1), **window)
        assert (split.single, sorted(split.held)) == ([], sorted([LONGEST, hook.key]))
        assert sorted(flood.held_addresses(store, second.callid)) == sorted([LONGEST, hook.key])
        deliveries.mark(store, first.callid, hook.key, "sent", now=T0)
        assert deliveries.states(store, first.callid) == {hook.key: ("sent", "")}
        assert store.remove_recipient("600", LONGEST)


def test_one_character_more_is_refused_saying_why(tmp_path: Path) -> None:
    longer = "x" + LONGEST
    assert not config.is_address(longer)
    assert config.why_not_address(longer) == f"is longer than {config.ADDRESS_MAX} characters"
    assert "longer than 191 characters" in targets.problem(longer)
    for text in (longer, "mailto:" + longer):
        with pytest.raises(targets.TargetError, match="is longer than 191 characters"):
            targets.parse(text)
    with pytest.raises(config.ConfigError, match=r"MISSEDCALL_FALLBACK_TO: .* is longer than 191 characters"):
        config.load_settings({"MISSEDCALL_CONFIG": str(tmp_path / "none.env"), "MISSEDCALL_FALLBACK_TO": longer})


def test_a_run_killed_inside_the_old_defaults_is_undone_by_the_next(mariadb_server: MariaDBServer) -> None:
    def row_format() -> str:
        with contextlib.closing(mariadb_server.root()) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.innodb_default_row_format")
            return str(cur.fetchone()[0]).lower()

    assert not undo_interrupted_old_defaults(mariadb_server)  # nothing to undo: left alone
    today = row_format()
    with old_server_defaults(mariadb_server):
        assert row_format() == "compact"
        assert undo_interrupted_old_defaults(mariadb_server)  # what the next run's first step does
        assert row_format() != "compact"
    assert row_format() == today
