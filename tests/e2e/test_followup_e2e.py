"""Threads on a real Asterisk 22: an abandon mailed by the hook with its Message-ID stored, a second abandon
from the same number mailed as a reply in that thread, then the follow-up (sent by ``missedcall-admin retry`` as
cron runs it) delivered by postfix with the right In-Reply-To.

The resolver (callbacks from the CDR) is another module's: here the rows are marked resolved the way it marks
them, directly in the FreePBX database on the host's MariaDB.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pbx as e2e
import pymysql
import pytest
from installed import Box

from tests.support.freepbx import make_freepbx_like, write_freepbx_conf
from tests.support.mariadb import MariaDBDatabase, MariaDBServer, temporary_mariadb

ASTERISK_ETC = Path(__file__).with_name("asterisk-etc")
QUEUES = (("600", "Sales"), ("601", "Sales overflow"), ("602", "Support"), ("603", "Billing"),
          ("604", "Support overflow"))  # fmt: skip
RECIPIENTS = (("600", "sales@example.com", "Sales desk"), ("*", "manager@example.com", "Manager"))
COPIES = 2


@pytest.fixture(scope="module")
def freepbx_db(mariadb_server: MariaDBServer) -> Iterator[MariaDBDatabase]:
    with temporary_mariadb(mariadb_server, prefix="mc_e2e_thr_") as db:
        make_freepbx_like(db, QUEUES)
        yield db


@pytest.fixture(scope="module")
def mc(pbx_chroot: Path, freepbx_db: MariaDBDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    with e2e.Pbx(pbx_chroot, asterisk_etc=ASTERISK_ETC) as pbx:
        conf = write_freepbx_conf(tmp_path_factory.mktemp("freepbx") / "freepbx.conf", freepbx_db)
        pbx.write_file("/etc/freepbx.conf", conf.read_bytes(), mode=0o640, owner="asterisk")
        box = Box(pbx, freepbx_db, RECIPIENTS)
        box.install()
        yield box


def alerts(mc: Box, callid: str) -> list[EmailMessage]:
    return [m for m in mc.mails(callid) if str(m["Message-ID"]).startswith("<missedcall.")]


def followups(mc: Box, callid: str) -> list[EmailMessage]:
    return [m for m in mc.mails(callid) if str(m["Message-ID"]).startswith("<missedcall-followup.")]


def abandon(mc: Box, caller: str) -> str:
    call = mc.pbx.originate_local("600", caller_num=caller, caller_name="Anna Smirnova", hangup_after=3)
    callid = call.uniqueid()
    call.wait_event("ABANDON", timeout=30)
    mc.settle(call)
    mc.retry_pending([callid])  # a hook out of time on a loaded machine leaves the mail to cron's retry
    mc.wait_mails(callid, COPIES, timeout=30, call=call)
    return callid


def test_abandon_repeat_and_follow_up_in_one_thread(mc: Box) -> None:
    first = abandon(mc, "79161234567")
    second = abandon(mc, "+7 916 123-45-67")
    (row1,) = mc.rows([first])
    (row2,) = mc.rows([second])
    alert1, alert2 = alerts(mc, first)[0], alerts(mc, second)[0]
    assert row1["message_id"] == alert1["Message-ID"] == f"<missedcall.{first}@{alert1['From'].split('@')[1]}>"
    assert row2["thread_of"] == first and row2["message_id"] == alert2["Message-ID"]
    assert alert2["In-Reply-To"] == alert1["Message-ID"]
    assert str(alert2["Subject"]).strip().endswith("— 2nd missed call today")
    index1 = base64.b64decode(str(alert1["Thread-Index"]))
    assert len(index1) == 22 and base64.b64decode(str(alert2["Thread-Index"]))[:22] == index1

    # What the resolver writes when extension 102 called the number back 5 minutes after the miss.
    with contextlib.closing(mc.db.connect()) as conn, conn.cursor() as cur:
        for callid in (first, second):
            cur.execute(
                "UPDATE missedcall_calls SET resolution = 'called-back', resolved_at = ended_at + INTERVAL 5 MINUTE,"
                " resolved_by = '102 (Ivan Petrov)', talk_seconds = 200, followup = 'pending' WHERE callid = %s",
                (callid,),
            )
        conn.commit()
    said = mc.admin("retry", "--json", user="asterisk")
    assert json.loads(said)[0]["followups"] == {"sent": 1}, said
    deadline = time.monotonic() + 30
    while len(followups(mc, first)) < COPIES and time.monotonic() < deadline:
        time.sleep(0.2)
    mc.pbx.wait_mail_idle()
    copies = followups(mc, first)
    assert sorted(m["X-Original-To"] for m in copies) == ["manager@example.com", "sales@example.com"]
    follow = copies[0]
    assert follow["In-Reply-To"] == alert2["Message-ID"]
    assert str(follow["References"]).split() == [alert1["Message-ID"], alert2["Message-ID"]]
    assert str(follow["Subject"]).strip() == f"Re: {str(alert1['Subject']).strip()}"
    assert base64.b64decode(str(follow["Thread-Index"]))[:22] == index1
    body = follow.get_content()
    assert body.startswith("Called back by 102 (Ivan Petrov) 5 min after the miss, talked 3:20.\n"), body
    assert "This closes 2 missed calls from this number." in body
    with contextlib.closing(mc.db.connect()) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SELECT callid, followup FROM missedcall_calls WHERE callid IN (%s, %s)", (first, second))
        assert {r["followup"] for r in cur.fetchall()} == {"sent"}
    # Cron's next minute sends nothing more.
    mc.admin("retry", user="asterisk")
    mc.pbx.wait_mail_idle()
    assert len(followups(mc, first)) == COPIES
