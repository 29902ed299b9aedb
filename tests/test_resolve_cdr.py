"""The resolver against a FreePBX-shaped ``asteriskcdrdb.cdr`` in real MariaDB, our own tables on both engines."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from missedcall.config import ConfigError, Settings, load_settings
from missedcall.dburl import parse_db_url
from missedcall.record.model import CallRecord
from missedcall.record.storage import Store
from missedcall.resolve import run
from tests.support.cdr import callback, create_cdr_table, inbound, insert_rows, internal
from tests.support.freepbx import write_freepbx_conf
from tests.support.mariadb import MariaDBDatabase

UTC = timezone.utc
MISS = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
NOW = MISS + timedelta(hours=3)


@pytest.fixture
def cdr_db(mariadb_database: MariaDBDatabase) -> MariaDBDatabase:
    create_cdr_table(mariadb_database)
    return mariadb_database


def settings_for(db_url: str, cdr_url: str, tmp_path: Path, **more: str) -> Settings:
    env = {
        "MISSEDCALL_DB_URL": db_url, "MISSEDCALL_CDR_URL": cdr_url, "MISSEDCALL_REGION": "RU",
        "MISSEDCALL_CONFIG": str(tmp_path / "absent.env"), "MISSEDCALL_SPOOL_DIR": str(tmp_path), **more,
    }  # fmt: skip
    return load_settings(env)


def ours(url: str) -> Store:
    store = Store.open(parse_db_url(url))
    store.init()
    return store


def miss(store: Store, callid: str, caller: str, *, ended: datetime = MISS, status: str = "sent") -> None:
    store.claim_call(CallRecord(callid=callid, linkedid=callid, queue="600", reason="ABANDON", source="agi",
                                caller_num=caller, ended_at=ended, entered_at=ended - timedelta(seconds=40),
                                status=status))  # fmt: skip


def local(moment: datetime) -> datetime:
    return moment.astimezone(UTC)  # the URL says tz=UTC: FreePBX's calldate in the box's zone, here UTC


def test_prefix_variants_trunk_cid_and_the_agent_from_cnum(
    db_url: str, cdr_db: MariaDBDatabase, tmp_path: Path
) -> None:
    # Each caller is written one way in the miss and another in the agent's dial string.
    pairs = [("+79161234567", "89161234567", "102"), ("79031112233", "+79031112233", "103"),
             ("89035550000", "9035550000", "104"), ("+79267778899", "989267778899", "105")]  # fmt: skip
    rows = [callback(local(MISS + timedelta(minutes=10 + i)), agent, dialled, 60 + i)
            for i, (_, dialled, agent) in enumerate(pairs)]  # fmt: skip
    insert_rows(cdr_db, rows)
    with ours(db_url) as store:
        for i, (caller, _, _) in enumerate(pairs):
            miss(store, f"m.{i}", caller)
        done = run.run(store, settings_for(db_url, cdr_db.url + "?table=cdr&tz=UTC", tmp_path), now=NOW)
        calls = {c.callid: c for c in store.calls()}
    assert done.called_back == 4 and done.got_through == 0
    for i, (_, _, agent) in enumerate(pairs):
        call = calls[f"m.{i}"]
        assert (call.resolution, call.resolved_by, call.talk_seconds) == ("called-back", agent, 60 + i)
        assert call.resolved_at == MISS + timedelta(minutes=10 + i)
        assert call.followup == "pending"  # mailed and MISSEDCALL_FOLLOWUP on by default


def test_what_never_counts(db_url: str, cdr_db: MariaDBDatabase, tmp_path: Path) -> None:
    caller = "+79161234567"
    insert_rows(cdr_db, [
        callback(local(MISS - timedelta(minutes=5)), "102", "89161234567", 90),  # before the miss
        callback(local(MISS + timedelta(minutes=3)), "102", "89161234567", 0, disposition="NO ANSWER"),
        callback(local(MISS + timedelta(minutes=4)), "102", "89161234567", 0, disposition="BUSY"),
        internal(local(MISS + timedelta(minutes=5)), "102", "103", 40),
        # the miss itself: the queue answered the channel, so FreePBX writes ANSWERED
        inbound(local(MISS - timedelta(seconds=40)), "89161234567", "", 40, uniqueid="m.1"),
        # a second miss from the number: a member's channel rang, the queue had answered, nobody talked
        inbound(local(MISS + timedelta(minutes=6)), "89161234567", "102", 30, uniqueid="m.2"),
        callback(local(MISS + timedelta(minutes=7)), "102", "89169999999", 50),  # someone else
    ])  # fmt: skip
    with ours(db_url) as store:
        miss(store, "m.1", caller)
        miss(store, "m.2", caller, ended=MISS + timedelta(minutes=6, seconds=30))
        done = run.run(store, settings_for(db_url, cdr_db.url + "?tz=UTC", tmp_path), now=NOW)
        assert [c.resolution for c in store.calls()] == ["", ""]
    assert (done.watched, done.called_back, done.got_through) == (2, 0, 0)


def test_two_agents_the_first_wins_and_one_callback_closes_every_miss_of_the_number(
    db_url: str, cdr_db: MariaDBDatabase, tmp_path: Path
) -> None:
    insert_rows(cdr_db, [callback(local(MISS + timedelta(minutes=30)), "105", "+79161234567", 200),
                         callback(local(MISS + timedelta(minutes=20)), "102", "89161234567", 45,
                                  name="Иван\u202e Петров\n")])  # fmt: skip
    with ours(db_url) as store:
        miss(store, "m.1", "89161234567")
        miss(store, "m.2", "+7 916 123-45-67", ended=MISS + timedelta(minutes=5), status="held")
        miss(store, "m.3", "79161234567", ended=MISS + timedelta(minutes=8), status="skipped")
        run.run(store, settings_for(db_url, cdr_db.url + "?tz=UTC", tmp_path), now=NOW)
        calls = {c.callid: c for c in store.calls()}
    assert {k: (c.resolution, c.resolved_by, c.talk_seconds) for k, c in calls.items()} == {
        k: ("called-back", "102 (Иван  Петров)", 45) for k in ("m.1", "m.2", "m.3")
    }  # the agent's name from cnam, its bidi mark and line break made inert
    # a skipped call was never mailed: no follow-up for it
    assert [calls[k].followup for k in ("m.1", "m.2", "m.3")] == ["pending", "pending", "off"]


def test_got_through_and_followup_off(db_url: str, cdr_db: MariaDBDatabase, tmp_path: Path) -> None:
    insert_rows(cdr_db, [inbound(local(MISS + timedelta(minutes=12)), "89161234567", "107", 95)])
    with ours(db_url) as store:
        miss(store, "m.1", "+79161234567")
        settings = settings_for(db_url, cdr_db.url + "?tz=UTC", tmp_path, MISSEDCALL_FOLLOWUP="off")
        run.run(store, settings, now=NOW)
        call = store.get_call("m.1")
    assert call is not None
    assert (call.resolution, call.resolved_by, call.talk_seconds, call.followup) == ("got-through", "107", 95, "off")


def test_calldate_in_the_pbx_zone_and_the_horizon(db_url: str, cdr_db: MariaDBDatabase, tmp_path: Path) -> None:
    moscow = timezone(timedelta(hours=3))
    # 07:05 UTC is 10:05 in Moscow: read as UTC it would be three hours late, still a callback; 06:55 UTC
    # (09:55 Moscow) is before the miss and must not count when the zone is right.
    insert_rows(cdr_db, [callback((MISS - timedelta(minutes=5)).astimezone(moscow), "102", "89161234567", 30)])
    with ours(db_url) as store:
        miss(store, "m.1", "+79161234567")
        miss(store, "old", "+79031112233", ended=NOW - timedelta(hours=30))
        done = run.run(store, settings_for(db_url, cdr_db.url + "?tz=Europe/Moscow", tmp_path), now=NOW)
        assert store.get_call("m.1").resolution == ""  # type: ignore[union-attr]
    assert done.watched == 1  # the 30-hour-old miss is past MISSEDCALL_RESOLVE_HOURS (24)


def test_hostile_rows_are_skipped_and_the_rest_resolve(db_url: str, cdr_db: MariaDBDatabase, tmp_path: Path) -> None:
    hostile = callback(local(MISS + timedelta(minutes=2)), "102'; DROP TABLE cdr;--", "8916'||1234567", 10)
    hostile["cnum"] = "\x00\u202e102"
    absurd = callback(local(MISS + timedelta(minutes=1)), "104", "89161234567", 2_000_000_000)  # 63 years of talk
    insert_rows(cdr_db, [hostile, absurd, callback(local(MISS + timedelta(minutes=3)), "103", "89161234567", 12)])
    with ours(db_url) as store:
        miss(store, "m.1", "+79161234567")
        done = run.run(store, settings_for(db_url, cdr_db.url + "?tz=UTC", tmp_path), now=NOW)
        assert store.get_call("m.1").resolved_by == "103"  # type: ignore[union-attr]
    assert done.bad_rows == 1  # the absurd billsec
    with contextlib.closing(cdr_db.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM cdr")
        assert cur.fetchone()[0] == 3


def test_a_missing_table_is_one_clear_error_without_the_password(cdr_db: MariaDBDatabase, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/mc.sqlite3"
    with ours(db_url) as store:
        miss(store, "m.1", "+79161234567")
        with pytest.raises(run.CdrError) as caught:
            run.run(store, settings_for(db_url, cdr_db.url + "?table=nosuch", tmp_path), now=NOW)
        assert "no table nosuch" in str(caught.value) and cdr_db.password not in str(caught.value)
        with pytest.raises(ConfigError) as bad:
            run.run(store, settings_for(db_url, cdr_db.url + "?table=cdr`;DROP", tmp_path), now=NOW)
        assert cdr_db.password not in str(bad.value)
        wrong = cdr_db.url.replace(cdr_db.password, "not-the-password-xyz")
        with pytest.raises(run.CdrError) as refused:
            run.run(store, settings_for(db_url, wrong, tmp_path), now=NOW)
        assert "not-the-password-xyz" not in str(refused.value)
        # retry's minute run logs it and goes on
        assert run.run_isolated(store, settings_for(db_url, wrong, tmp_path), now=NOW)[0] == 0


def test_a_miss_whose_update_fails_is_skipped_and_the_others_recorded(
    mariadb_url: str, cdr_db: MariaDBDatabase, tmp_path: Path
) -> None:
    insert_rows(cdr_db, [callback(local(MISS + timedelta(minutes=5 + i)), "102", f"8916123456{i}", 30)
                         for i in range(3)])  # fmt: skip
    with ours(mariadb_url) as store:
        for i in range(3):
            miss(store, f"m.{i}", f"+7916123456{i}")
        with contextlib.closing(cdr_db.connect()) as conn, conn.cursor() as cur:  # the same database holds ours
            cur.execute(
                "CREATE TRIGGER refuse_m1 BEFORE UPDATE ON missedcall_calls FOR EACH ROW"
                " BEGIN IF NEW.callid = 'm.1' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; END IF; END"
            )
        done = run.run(store, settings_for(mariadb_url, cdr_db.url + "?tz=UTC", tmp_path), now=NOW)
        calls = {c.callid: c.resolution for c in store.calls()}
    assert done.failed == ["m.1"] and done.called_back == 2
    assert calls == {"m.0": "called-back", "m.1": "", "m.2": "called-back"}


def test_auto_finds_freepbx_cdr_database_from_its_config(cdr_db: MariaDBDatabase, tmp_path: Path) -> None:
    conf = write_freepbx_conf(tmp_path / "freepbx.conf", cdr_db, host="127.0.0.1")
    with conf.open("a", encoding="utf-8") as handle:  # FreePBX's CDR settings: another database name
        handle.write(f"$amp_conf['CDRDBNAME'] = '{cdr_db.name}';\n")
    # calldate as FreePBX writes it: the box's local time (auto reads it so)
    insert_rows(cdr_db, [callback((MISS + timedelta(minutes=9)).astimezone(), "102", "89161234567", 33)])
    db_url = f"sqlite:///{tmp_path}/mc.sqlite3"
    settings = settings_for(db_url, "auto", tmp_path, MISSEDCALL_FREEPBX_CONF=str(conf))
    with ours(db_url) as store:
        miss(store, "m.1", "+79161234567")
        done = run.run(store, settings, now=NOW)
        call = store.get_call("m.1")
    assert done.source.endswith(f"/{cdr_db.name} table cdr") and cdr_db.password not in done.source
    assert call is not None and (call.resolution, call.resolved_by, call.resolved_at) == (
        "called-back", "102", MISS + timedelta(minutes=9))  # fmt: skip
