"""The callback keys (CDR source, region, horizon, report hour, follow-ups) and Master.csv read by the resolver."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from missedcall.config import ConfigError, load_settings
from missedcall.dburl import parse_db_url
from missedcall.record.model import CallRecord
from missedcall.record.storage import Store
from missedcall.resolve import run
from missedcall.resolve import settings as keys
from tests.paths import FIXTURES

UTC = timezone.utc


@pytest.mark.parametrize(
    ("url", "kind", "shown"),
    [
        ("", "off", "off"),
        ("csv:/var/log/asterisk/cdr-csv/Master.csv", "csv", "csv:/var/log/asterisk/cdr-csv/Master.csv"),
        (
            "mysql://cdr:pw@db.example:3307/asteriskcdrdb",
            "mysql",
            "mysql://cdr@db.example:3307/asteriskcdrdb table cdr",
        ),
        ("mysql://cdr:pw@localhost:3306/asteriskcdrdb?table=cdr_2026&tz=UTC", "mysql", "table cdr_2026"),
        ("mysql://cdr:pw@h/cdrdb?unix_socket=/run/mysqld/mysqld.sock&table=calls", "mysql", "table calls"),
    ],
)
def test_cdr_urls(url: str, kind: str, shown: str) -> None:
    source = keys.parse_cdr_url(url)
    assert source.kind == kind and shown in source.describe() and "pw" not in source.describe()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://cdr:s3cret@h/asteriskcdrdb?table=cdr;DROP TABLE x",
        "mysql://cdr:s3cret@h/asteriskcdrdb?table=`cdr`",
        "mysql://cdr:s3cret@h/asteriskcdrdb?table=" + "a" * 65,
        "mysql://cdr:s3cret@h/asteriskcdrdb?tz=Mars/Olympus",
        "mysql://cdr:s3cret@h/asteriskcdrdb?charset=latin1",
        "mysql://cdr:s3cret@/asteriskcdrdb",
        "postgres://cdr:s3cret@h/asteriskcdrdb",
        "csv:Master.csv",
        "csv:/x/Master.csv?table=cdr",
        "csv:/x/Master\x00.csv",
    ],
)
def test_bad_cdr_urls_are_refused_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        keys.parse_cdr_url(url)
    message = str(caught.value)
    assert "MISSEDCALL_CDR_URL" in message and "s3cret" not in message and "\n" not in message


def settings(tmp_path: Path, **values: str) -> object:
    env = {"MISSEDCALL_CONFIG": str(tmp_path / "absent.env"), "MISSEDCALL_SPOOL_DIR": str(tmp_path),
           "MISSEDCALL_DB_URL": f"sqlite:///{tmp_path}/mc.sqlite3", **values}  # fmt: skip
    return load_settings(env)


def test_auto_reads_freepbx_cdr_settings_falling_back_to_ampdb(tmp_path: Path) -> None:
    conf = tmp_path / "freepbx.conf"
    conf.write_text(
        "<?php\n$amp_conf['AMPDBUSER'] = 'freepbxuser';\n$amp_conf['AMPDBPASS'] = 'amp-pw';\n"
        "$amp_conf['AMPDBHOST'] = 'localhost';\n$amp_conf['AMPDBNAME'] = 'asterisk';\n",
        encoding="utf-8",
    )
    found = keys.cdr_source(settings(tmp_path, MISSEDCALL_FREEPBX_CONF=str(conf)))  # type: ignore[arg-type]
    assert (found.kind, found.table, found.target.database, found.target.user) == (  # type: ignore[union-attr]
        "mysql", "cdr", "asteriskcdrdb", "freepbxuser")  # fmt: skip
    assert found.target.password == "amp-pw" and "FreePBX" in found.origin  # type: ignore[union-attr]
    with conf.open("a", encoding="utf-8") as handle:
        handle.write("$amp_conf['CDRDBUSER'] = 'cdruser';\n$amp_conf['CDRDBNAME'] = 'cdrs';\n"
                     "$amp_conf['CDRDBTABLENAME'] = 'cdr_new';\n$amp_conf['CDRDBHOST'] = '10.0.0.5';\n")  # fmt: skip
    found = keys.cdr_source(settings(tmp_path, MISSEDCALL_FREEPBX_CONF=str(conf)))  # type: ignore[arg-type]
    target = found.target
    assert target is not None
    assert (target.user, target.password, target.host, target.database, found.table) == (
        "cdruser", "", "10.0.0.5", "cdrs", "cdr_new")  # fmt: skip
    with conf.open("a", encoding="utf-8") as handle:
        handle.write("$amp_conf['CDRDBTABLENAME'] = 'cdr; DROP TABLE cdr';\n")
    with pytest.raises(ConfigError, match="CDRDBTABLENAME"):
        keys.cdr_source(settings(tmp_path, MISSEDCALL_FREEPBX_CONF=str(conf)))  # type: ignore[arg-type]


def test_auto_without_freepbx_and_master_csv_is_off_and_empty_is_off(tmp_path: Path) -> None:
    plain = settings(tmp_path, MISSEDCALL_FREEPBX_CONF=str(tmp_path / "none.conf"))
    if not os.path.exists(keys.DEFAULT_CSV):
        assert keys.cdr_source(plain).kind == "off"  # type: ignore[arg-type]
    assert keys.cdr_source(settings(tmp_path, MISSEDCALL_CDR_URL="")).kind == "off"  # type: ignore[arg-type]


PARSERS = {"MISSEDCALL_REGION": keys.region, "MISSEDCALL_RESOLVE_HOURS": keys.resolve_hours,
           "MISSEDCALL_REPORT_HOUR": keys.report_hour, "MISSEDCALL_FOLLOWUP": keys.followup_enabled}  # fmt: skip


def test_the_small_keys(tmp_path: Path) -> None:
    assert keys.region({}) == "" and keys.region({"MISSEDCALL_REGION": " ru "}) == "RU"
    assert keys.resolve_hours({}) == 24 and keys.resolve_hours({"MISSEDCALL_RESOLVE_HOURS": "72"}) == 72
    assert keys.report_hour({}) == (9, 0) and keys.report_hour({"MISSEDCALL_REPORT_HOUR": "7:30"}) == (7, 30)
    assert keys.report_hour({"MISSEDCALL_REPORT_HOUR": ""}) is None
    assert keys.followup_enabled({}) and not keys.followup_enabled({"MISSEDCALL_FOLLOWUP": "OFF"})
    for key, bad in (("MISSEDCALL_REGION", "XX"), ("MISSEDCALL_REGION", "РФ"), ("MISSEDCALL_RESOLVE_HOURS", "0"),
                     ("MISSEDCALL_RESOLVE_HOURS", "٣"), ("MISSEDCALL_REPORT_HOUR", "24:00"),
                     ("MISSEDCALL_REPORT_HOUR", "9am"), ("MISSEDCALL_FOLLOWUP", "maybe")):  # fmt: skip
        parser = PARSERS[key]
        with pytest.raises(ConfigError, match=key):
            parser({key: bad})


def test_the_master_csv_fixture_resolves_and_its_position_survives_rotation(tmp_path: Path) -> None:
    master = tmp_path / "Master.csv"
    lines = (FIXTURES / "cdr" / "Master.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    master.write_text("".join(lines[:3]), encoding="utf-8")
    chosen = settings(tmp_path, MISSEDCALL_CDR_URL=f"csv:{master}", MISSEDCALL_REGION="RU")
    ended = datetime(2026, 11, 30, 7, 0, 42, tzinfo=UTC)
    now = ended + timedelta(hours=1)
    with Store.open(parse_db_url(f"sqlite:///{tmp_path}/mc.sqlite3")) as store:
        store.init()
        for callid, caller in (("1796022000.1", "+79161234567"), ("m.2", "79035550000")):
            store.claim_call(CallRecord(callid=callid, queue="600", reason="ABANDON", source="agi", status="sent",
                                        caller_num=caller, ended_at=ended))  # fmt: skip
        first = run.run(store, chosen, now=now)  # type: ignore[arg-type]
        assert (first.called_back, first.got_through) == (0, 0)  # only the internal call and a missed attempt yet
        with master.open("a", encoding="utf-8") as handle:
            handle.write(lines[3])
        master.rename(tmp_path / "Master.csv.1")  # rotated: the rest arrives in a new file
        master.write_text("".join(lines[4:]), encoding="utf-8")
        second = run.run(store, chosen, now=now)  # type: ignore[arg-type]
        calls = {c.callid: c for c in store.calls()}
    # The callback by 103 went into the rotated-away file after the first pass; the new file has the rest.
    assert (second.called_back, second.got_through) == (1, 1)
    assert (calls["m.2"].resolution, calls["m.2"].resolved_by) == ("got-through", "105")
    assert (calls["1796022000.1"].resolution, calls["1796022000.1"].resolved_by) == ("called-back", "103")


def test_a_garbled_position_is_read_afresh(tmp_path: Path) -> None:
    master = tmp_path / "Master.csv"
    master.write_text((FIXTURES / "cdr" / "Master.csv").read_text(encoding="utf-8"), encoding="utf-8")
    chosen = settings(tmp_path, MISSEDCALL_CDR_URL=f"csv:{master}")
    with Store.open(parse_db_url(f"sqlite:///{tmp_path}/mc.sqlite3")) as store:
        for garbage in ("{", '{"v": 1, "path": "x", "inode": 1, "marks": [-5]}', '{"marks": "abc"}', "[]"):
            store.set_state(run.CSV_STATE, garbage)
            assert run.run(store, chosen).rows >= 0  # type: ignore[arg-type]
