"""A queue's failover to voicemail: the hook never runs (FreePBX leaves [ext-queues]), the sweeper mails the
miss, and the caller's CDR row (lastapp VoiceMail) is what tells it that a voicemail was left."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.agibox import Pbx, make_pbx
from tests.mailbox import text_part
from tests.support.cdr import create_cdr_table, insert_rows
from tests.support.mariadb import MariaDBDatabase

NOW = int(time.time())
CALLID = f"{NOW - 300}.7"
OTHER = f"{NOW - 290}.8"


def timeout_lines(callid: str, at: int) -> list[str]:
    return [f"{at}|{callid}|600|NONE|ENTERQUEUE||79161234567|1", f"{at + 30}|{callid}|600|NONE|EXITWITHTIMEOUT|1|1|30"]


def master_row(callid: str, lastapp: str, *, linkedid: str = "") -> list[str]:
    """A Master.csv row as cdr_csv writes it (with uniqueid, userfield, and the newer linkedid fields)."""
    start = datetime.fromtimestamp(NOW - 300, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    end = datetime.fromtimestamp(NOW - 240, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return ["", "79161234567", "600", "ext-local", '"Ivan" <79161234567>', "PJSIP/trunk-00000001", "",
            lastapp, "100@default,u", start, start, end, "60", "55", "ANSWERED", "DOCUMENTATION", callid, "",
            "", linkedid or callid, "1"]  # fmt: skip


def write_master(path: Path, rows: list[list[str]], *, padding: int = 0) -> None:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for i in range(padding):  # a busy PBX: the row we want is at the end of a long file
        writer.writerow(master_row(f"{NOW - 99999}.{i}", "Dial"))
    for row in rows:
        writer.writerow(row)
    path.write_text(out.getvalue(), encoding="utf-8")


def box_with(tmp_path: Path, db_url: str, cdr_url: str, **keys: str) -> Pbx:
    box = make_pbx(tmp_path, db_url, MISSEDCALL_CDR_URL=cdr_url, **keys)
    box.queue_log.write_text("\n".join(timeout_lines(CALLID, NOW - 300) + timeout_lines(OTHER, NOW - 290)) + "\n")
    return box


def mail_of(box: Pbx, callid: str) -> str:
    [mail] = [m for m in box.stored() if m.message["X-Missedcall-Callid"] == callid]
    return text_part(mail.message)


def test_the_sweeper_says_a_voicemail_was_left_from_master_csv(tmp_path: Path, db_url: str) -> None:
    master = tmp_path / "Master.csv"
    write_master(master, [master_row(CALLID, "VoiceMail"), master_row(OTHER, "Hangup")], padding=6000)
    assert master.stat().st_size > 512 * 1024  # the lookup reads only the end of the file
    box = box_with(tmp_path, db_url, f"csv:{master}")
    done = box.admin("sweep", "--from-start")
    assert done.returncode == 0, done.stderr
    assert mail_of(box, CALLID).startswith("The caller left a voicemail.\n")
    assert "voicemail" not in mail_of(box, OTHER)
    calls = {c.callid: c for c in box.calls()}
    assert calls[CALLID].voicemail and not calls[OTHER].voicemail


def test_suppress_records_the_voicemail_miss_without_mail(tmp_path: Path, db_url: str) -> None:
    master = tmp_path / "Master.csv"
    write_master(master, [master_row(CALLID, "VoiceMail")])
    box = box_with(tmp_path, db_url, f"csv:{master}", MISSEDCALL_VOICEMAIL="suppress")
    assert box.admin("sweep", "--from-start").returncode == 0
    calls = {c.callid: c for c in box.calls()}
    assert calls[CALLID].status == "skipped" and calls[CALLID].voicemail
    assert calls[OTHER].status == "sent"


@pytest.mark.parametrize("hostile", ["\x00garbage,\"", "", "not,a,cdr,row"])
def test_an_unreadable_or_absent_cdr_never_stops_the_mail(tmp_path: Path, sqlite_url: str, hostile: str) -> None:
    master = tmp_path / "Master.csv"
    if hostile:
        master.write_text(hostile * 1000, encoding="utf-8")
    box = box_with(tmp_path, sqlite_url, f"csv:{master}")
    done = box.admin("sweep", "--from-start")
    assert done.returncode == 0, done.stderr
    assert {c.status for c in box.calls()} == {"sent"} and len(box.stored()) == 2


def test_the_sweeper_reads_freepbx_cdr_table(tmp_path: Path, sqlite_url: str,
                                             mariadb_database: MariaDBDatabase) -> None:  # fmt: skip
    create_cdr_table(mariadb_database)
    calldate = datetime.fromtimestamp(NOW - 300, timezone.utc).replace(tzinfo=None)
    row = {"calldate": calldate, "clid": '"Ivan" <79161234567>', "src": "79161234567", "dst": "600",
           "dcontext": "ext-local", "channel": "PJSIP/trunk-00000001", "lastapp": "VoiceMail",
           "lastdata": "100@default,u", "duration": 60, "billsec": 55, "disposition": "ANSWERED",
           "uniqueid": CALLID, "linkedid": CALLID, "sequence": 1}  # fmt: skip
    insert_rows(mariadb_database, [row])
    box = box_with(tmp_path, sqlite_url, mariadb_database.url + "?table=cdr&tz=UTC")
    assert box.admin("sweep", "--from-start").returncode == 0
    assert mail_of(box, CALLID).startswith("The caller left a voicemail.\n")
    assert "voicemail" not in mail_of(box, OTHER)
