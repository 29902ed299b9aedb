"""Issue #11 on a real Asterisk 22: an abandon, then an agent calls the caller back; Asterisk's cdr_csv writes
Master.csv for real and ``missedcall-admin resolve`` marks the miss called back by that extension.

The agent's phone is ``Local/102@e2e-phone`` (it answers and stays on the line); what it dials goes through
[e2e-internal], which sets the agent's caller ID and strips the outside-line prefix 9 as a FreePBX outbound
route does, to a Local "trunk" where the customer answers and talks for a few seconds. cdr_csv only: the
chroot has no ODBC driver for MariaDB (its package list is fixed), so cdr_adaptive_odbc is out of scope here;
the FreePBX CDR table is covered against real MariaDB in tests/test_resolve_cdr.py.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pbx as e2e
import pytest
from asterisk_conf import MODULES_CONF
from installed import CONFIG, Box
from processes import wait_for

from tests.support.freepbx import make_freepbx_like, write_freepbx_conf
from tests.support.mariadb import MariaDBDatabase, MariaDBServer, temporary_mariadb

ASTERISK_ETC = Path(__file__).with_name("asterisk-etc")
MASTER = "/var/log/asterisk/cdr-csv/Master.csv"
QUEUES = (("600", "Sales"),)
RECIPIENTS = (("600", "sales@example.com", "Sales desk"),)
CALLER = "+79161234567"
DIALLED = "989161234567"  # the outside-line prefix 9, then the number as Russians dial it: 8 916 ...
CDR_CONF = """\
; written by tests/e2e/test_callbacks.py
[general]
enable = yes
unanswered = yes
batch = no

[csv]
usegmtime = yes
loguniqueid = yes
loguserfield = yes
accountlogs = no
"""
DIALPLAN = """\
; written by tests/e2e/test_callbacks.py
[e2e-phone]
; extension 102's phone: picks up and stays on the line
exten => _XXX,1,Answer()
 same => n,Wait(30)
 same => n,Hangup()

[e2e-internal]
; what the agent dials: the agent's caller ID, the outside-line prefix 9 stripped, out through the trunk
exten => _9X.,1,Set(CALLERID(all)="Agent 102" <102>)
 same => n,Dial(Local/${EXTEN:1}@e2e-trunk,30)
 same => n,Hangup()

[e2e-internal-busy]
; agent 103 dials the same number first, and the line is busy
exten => _9X.,1,Set(CALLERID(all)="Agent 103" <103>)
 same => n,Dial(Local/${EXTEN:1}@e2e-busy,30)
 same => n,Hangup()

[e2e-busy]
exten => _X.,1,Busy(2)

[e2e-trunk]
; the customer answers and talks for four seconds
exten => _X.,1,Answer()
 same => n,Wait(4)
 same => n,Hangup()
"""


@pytest.fixture(scope="module")
def freepbx_db(mariadb_server: MariaDBServer) -> Iterator[MariaDBDatabase]:
    with temporary_mariadb(mariadb_server, prefix="mc_e2e_") as db:
        make_freepbx_like(db, QUEUES)
        yield db


@pytest.fixture(scope="module")
def box(pbx_chroot: Path, freepbx_db: MariaDBDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    files = {
        "/etc/asterisk/modules.conf": MODULES_CONF + "load => cdr_csv.so\n",
        "/etc/asterisk/cdr.conf": CDR_CONF,
        "/etc/asterisk/extensions_custom.conf": DIALPLAN,
    }
    with e2e.Pbx(pbx_chroot, asterisk_etc=ASTERISK_ETC, files=files) as pbx:
        conf = write_freepbx_conf(tmp_path_factory.mktemp("freepbx") / "freepbx.conf", freepbx_db)
        pbx.write_file("/etc/freepbx.conf", conf.read_bytes(), mode=0o640, owner="asterisk")
        # cdr_csv appends to Master.csv but does not make its folder.
        pbx.write_file(MASTER, "", mode=0o640, owner="asterisk")
        made = Box(pbx, freepbx_db, RECIPIENTS)
        made.install()
        pbx.append_file(CONFIG, f"MISSEDCALL_CDR_URL=csv:{MASTER}\nMISSEDCALL_REGION=RU\n")
        yield made


def cdr_rows(box: Box) -> list[list[str]]:
    text = box.pbx.path(MASTER).read_text(encoding="utf-8", errors="replace")
    return list(csv.reader(io.StringIO(text)))


def test_an_agent_calling_back_resolves_the_miss(box: Box) -> None:
    call = box.pbx.originate_local("600", caller_num=CALLER, caller_name="Ivan Petrov", hangup_after=3)
    callid = call.uniqueid()
    box.wait_mails(callid, 1, call=call)
    box.settle(call)
    (row,) = box.rows([callid])
    assert row["resolution"] == "" and row["status"] == "sent", row

    # Agent 103 tries first and finds the line busy: an attempt, not a callback.
    box.pbx.rx(f"channel originate Local/103@e2e-phone extension {DIALLED}@e2e-internal-busy")
    wait_for(lambda: any(r[2] == DIALLED and r[14] == "BUSY" for r in cdr_rows(box) if len(r) > 14), 40,
             "Asterisk's CDR of the busy attempt", 0.2)  # fmt: skip
    assert "0 called back" in box.admin("resolve", user="asterisk")
    box.pbx.rx(f"channel originate Local/102@e2e-phone extension {DIALLED}@e2e-internal")
    wait_for(
        lambda: any(r[2] == DIALLED and r[14] == "ANSWERED" and int(r[13]) > 0 for r in cdr_rows(box) if len(r) > 14),
        40,
        "Asterisk's CDR of the callback in Master.csv",
        0.2,
    )
    said = box.admin("resolve", user="asterisk")
    assert "1 called back" in said, (said, cdr_rows(box))
    (row,) = box.rows([callid])
    # The agent's name comes from the clid Asterisk wrote while the number in it was still the extension.
    assert (row["resolution"], row["resolved_by"]) == ("called-back", "102 (Agent 102)"), (row, cdr_rows(box))
    assert 3 <= row["talk_seconds"] <= 6 and row["resolved_at"] >= row["ended_at"], row
    assert row["followup"] == "pending"  # mailed, MISSEDCALL_FOLLOWUP on: the follow-up mail's job

    # Cron's next retry mails the follow-up into the alert's own thread, through the real postfix.
    (alert,) = box.mails(callid)
    box.admin("retry", user="asterisk")
    wait_for(lambda: len(box.mails(callid)) >= 2, 30, "the follow-up in postfix's mailbox", 0.2)
    (follow,) = [m for m in box.mails(callid) if m["In-Reply-To"]]
    assert follow["In-Reply-To"] == alert["Message-ID"] and follow["References"] == alert["Message-ID"]
    assert str(follow["Subject"]) == f"Re: {alert['Subject']}"
    assert follow.get_content().startswith("Called back by 102 (Agent 102) "), follow.get_content()
    (row,) = box.rows([callid])
    assert row["followup"] == "sent", row

    again = box.admin("retry", user="asterisk")  # the minute run finds nothing new and says nothing of it
    assert "resolved" not in again
    report = box.admin("report", "--json", user="asterisk")
    assert '"resolution": "called-back"' in report and '"resolved_by": "102 (Agent 102)"' in report
