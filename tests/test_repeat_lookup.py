"""The repeat-miss look-up of every mailed call (Store.open_misses) goes by the caller, on both engines.

It used to be served, on SQLite, by the (resolution, ended_at) index: every open miss of the last
hours was walked on every hang-up, a cost that grew with the day. These tests ask each engine's own
planner (EXPLAIN) about the exact statement the store runs, on a table with a day of other callers'
open misses, and check that ``init`` replaces the index of earlier versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from missedcall.dburl import parse_db_url
from missedcall.record.model import CallRecord, utcnow
from missedcall.record.schema import ADDED_INDEXES, DROPPED_INDEXES
from missedcall.record.storage import Store
from missedcall.text import caller_key

OPEN_INDEX = "missedcall_calls_caller_open"


class Recording(Store):
    """A real Store that also keeps the statements it ran."""

    said: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.said = (*self.said, (sql, tuple(params)))
        return super().rows(sql, params)


def _miss(callid: str, caller: str, minutes_ago: int) -> CallRecord:
    ended = utcnow() - timedelta(minutes=minutes_ago)
    return CallRecord(callid=callid, queue="600", reason="ABANDON", source="agi", caller_num=caller,
                      caller_key=caller_key(caller), entered_at=ended - timedelta(seconds=30),
                      ended_at=ended)  # fmt: skip


def _fill(store: Store, others: int) -> None:
    """``others`` open misses of as many callers within the last hours, and two of the caller 79161234567."""
    for n in range(others):
        store.claim_call(_miss(f"1797000000.{n}", f"7903{n:07d}", n % 600))
    for n, minutes in enumerate((90, 30)):
        store.claim_call(_miss(f"1797100000.{n}", "79161234567", minutes))


def _indexes(store: Store) -> set[str]:
    return store.index_names("missedcall_calls")


def _plan(store: Store, sql: str, params: tuple[Any, ...]) -> str:
    """What the engine's planner says it would do with ``sql``: the index names it would use."""
    if store.kind == "sqlite":
        return " ".join(str(row[-1]) for row in store.rows("EXPLAIN QUERY PLAN " + sql, params))
    store.execute("ANALYZE TABLE missedcall_calls")  # the statistics InnoDB would have after a day of calls
    cursor = store.execute("EXPLAIN " + sql, params)
    names = [d[0] for d in cursor.description]
    return " ".join(str(dict(zip(names, row))["key"]) for row in cursor.fetchall())


def test_a_repeat_miss_is_looked_up_by_the_callers_index_and_found(db_url: str) -> None:
    with Recording.open(parse_db_url(db_url)) as store:
        store.init()
        _fill(store, 1500)
        store.said = ()
        now = utcnow()
        found = store.open_misses(caller_key("79161234567"), now - timedelta(hours=24), now, exclude="1797100000.1")
        assert [c.callid for c in found] == ["1797100000.0"]
        ((sql, params),) = store.said
        plan = _plan(store, sql, params)
        assert OPEN_INDEX in plan, plan


def test_init_replaces_the_index_of_earlier_versions_and_stays_idempotent(db_url: str) -> None:
    with Store.open(parse_db_url(db_url)) as store:
        store.init()
        # What version 5 of the schema left: its (caller_key, ended_at) index, not ours.
        store.execute(f"DROP INDEX {OPEN_INDEX}" + (" ON missedcall_calls" if store.kind == "mysql" else ""))
        ((old, table),) = DROPPED_INDEXES
        store.execute(f"CREATE INDEX {old} ON {table} (caller_key, ended_at)")
        assert old in _indexes(store) and OPEN_INDEX not in _indexes(store)
        store.init()
        assert OPEN_INDEX in _indexes(store) and old not in _indexes(store)
        store.init()
        assert {name for name, _table, _columns in ADDED_INDEXES} <= _indexes(store)


class Executing(Store):
    """A real Store that also keeps every statement it executed."""

    ran: tuple[str, ...] = ()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.ran = (*self.ran, sql)
        return super().execute(sql, params)


def test_an_upgrade_on_mariadb_manages_indexes_without_if_exists(mariadb_url: str) -> None:
    """No "CREATE INDEX IF NOT EXISTS" or "DROP INDEX IF EXISTS": MariaDB before 10.1.4 cannot parse them."""
    with Executing.open(parse_db_url(mariadb_url)) as store:
        store.init()
        store.execute(f"DROP INDEX {OPEN_INDEX} ON missedcall_calls")
        ((old, table),) = DROPPED_INDEXES
        store.execute(f"CREATE INDEX {old} ON {table} (caller_key, ended_at)")
        store.ran = ()
        store.init()  # an upgrade: one index to add, one to drop
        assert OPEN_INDEX in _indexes(store) and old not in _indexes(store)
        said = " ".join(" ".join(sql.split()).upper() for sql in store.ran)
        assert "CREATE INDEX " + OPEN_INDEX.upper() in said and "DROP INDEX " + old.upper() in said
        assert "INDEX IF" not in said
