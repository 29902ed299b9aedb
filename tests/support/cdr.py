"""A FreePBX-shaped CDR table (``asteriskcdrdb.cdr``) in a temporary MariaDB database, filled as FreePBX fills it.

The columns and the calldate index are those FreePBX 15-17 creates; rows are
written the way cdr_adaptive_odbc writes them (calldate in the PBX's local time,
the agent's own number in ``cnum``, the trunk's outbound caller ID in ``src``).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tests.support.mariadb import MariaDBDatabase

CDR_DDL = """CREATE TABLE `{table}` (
  calldate datetime NOT NULL DEFAULT '1000-01-01 00:00:00',
  clid varchar(80) NOT NULL DEFAULT '',
  src varchar(80) NOT NULL DEFAULT '',
  dst varchar(80) NOT NULL DEFAULT '',
  dcontext varchar(80) NOT NULL DEFAULT '',
  channel varchar(80) NOT NULL DEFAULT '',
  dstchannel varchar(80) NOT NULL DEFAULT '',
  lastapp varchar(80) NOT NULL DEFAULT '',
  lastdata varchar(80) NOT NULL DEFAULT '',
  duration int(11) NOT NULL DEFAULT 0,
  billsec int(11) NOT NULL DEFAULT 0,
  disposition varchar(45) NOT NULL DEFAULT '',
  amaflags int(11) NOT NULL DEFAULT 0,
  accountcode varchar(20) NOT NULL DEFAULT '',
  uniqueid varchar(32) NOT NULL DEFAULT '',
  userfield varchar(255) NOT NULL DEFAULT '',
  did varchar(50) NOT NULL DEFAULT '',
  recordingfile varchar(255) NOT NULL DEFAULT '',
  cnum varchar(80) NOT NULL DEFAULT '',
  cnam varchar(80) NOT NULL DEFAULT '',
  outbound_cnum varchar(80) NOT NULL DEFAULT '',
  outbound_cnam varchar(80) NOT NULL DEFAULT '',
  dst_cnam varchar(80) NOT NULL DEFAULT '',
  linkedid varchar(32) NOT NULL DEFAULT '',
  peeraccount varchar(80) NOT NULL DEFAULT '',
  sequence int(11) NOT NULL DEFAULT 0,
  KEY calldate (calldate),
  KEY dst (dst),
  KEY accountcode (accountcode)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
COLUMNS = (
    "calldate", "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata", "duration",
    "billsec", "disposition", "amaflags", "accountcode", "uniqueid", "userfield", "did", "recordingfile",
    "cnum", "cnam", "outbound_cnum", "outbound_cnam", "dst_cnam", "linkedid", "peeraccount", "sequence",
)  # fmt: skip
_SEQUENCE = itertools.count(1)


def create_cdr_table(db: MariaDBDatabase, table: str = "cdr") -> None:
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute(CDR_DDL.format(table=table))


def callback(when: datetime, agent: str, dialled: str, billsec: int, *, outbound_cid: str = "74951234567",
             disposition: str = "ANSWERED", name: str = "") -> dict[str, Any]:  # fmt: skip
    """An agent's outbound call through the trunk, as FreePBX's CDR has it: the trunk's CID in src/clid,
    the agent in cnum and in the calling channel."""
    seq = next(_SEQUENCE)
    uid = f"{int(when.timestamp())}.{seq}"
    return {
        "calldate": when, "clid": f'"{name}" <{outbound_cid}>', "src": outbound_cid, "dst": dialled,
        "dcontext": "from-internal", "channel": f"PJSIP/{agent}-{seq:08x}", "dstchannel": f"PJSIP/trunk-{seq:08x}",
        "lastapp": "Dial", "lastdata": f"PJSIP/{dialled}@trunk,300,Tt", "duration": billsec + 7, "billsec": billsec,
        "disposition": disposition, "amaflags": 3, "uniqueid": uid, "cnum": agent, "cnam": name,
        "outbound_cnum": outbound_cid, "linkedid": uid, "sequence": seq,
    }  # fmt: skip


def inbound(when: datetime, caller: str, agent: str, billsec: int, *, queue: str = "600",
            uniqueid: str = "", disposition: str = "ANSWERED") -> dict[str, Any]:  # fmt: skip
    """A call from outside into a queue; ``agent`` "" = nobody answered (the queue answered the channel)."""
    seq = next(_SEQUENCE)
    uid = uniqueid or f"{int(when.timestamp())}.{seq}"
    return {
        "calldate": when, "clid": f'"" <{caller}>', "src": caller, "dst": queue, "dcontext": "ext-queues",
        "channel": f"PJSIP/trunk-{seq:08x}", "dstchannel": f"Local/{agent}@from-queue-{seq:08x};1" if agent else "",
        "lastapp": "Queue", "lastdata": f"{queue},t,,,300", "duration": billsec + 20, "billsec": billsec,
        "disposition": disposition, "amaflags": 3, "uniqueid": uid, "did": "74951234567", "cnum": caller,
        "linkedid": uid, "sequence": seq,
    }  # fmt: skip


def internal(when: datetime, src: str, dst: str, billsec: int) -> dict[str, Any]:
    seq = next(_SEQUENCE)
    uid = f"{int(when.timestamp())}.{seq}"
    return {
        "calldate": when, "clid": f'"Agent" <{src}>', "src": src, "dst": dst, "dcontext": "from-internal",
        "channel": f"PJSIP/{src}-{seq:08x}", "dstchannel": f"PJSIP/{dst}-{seq:08x}", "lastapp": "Dial",
        "duration": billsec + 3, "billsec": billsec, "disposition": "ANSWERED", "uniqueid": uid, "cnum": src,
        "linkedid": uid, "sequence": seq,
    }  # fmt: skip


def insert_rows(db: MariaDBDatabase, rows: Sequence[dict[str, Any]], table: str = "cdr") -> None:
    """Rows as FreePBX writes them: calldate as naive local time (the caller passes it already local)."""
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        for row in rows:
            names = list(row)
            values = [v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in row.values()]
            cur.execute(f"INSERT INTO `{table}` ({', '.join(names)}) VALUES ({', '.join('%s' for _ in names)})", values)
        conn.commit()
