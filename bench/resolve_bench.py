#!/usr/bin/env python3
"""How long does one resolver pass take: 10,000 open misses against 1,000,000 rows of FreePBX CDR in MariaDB?

Creates a throw-away database (``mc_bench_<random>``) on the local MariaDB as root
over its socket, with FreePBX's ``cdr`` table (its columns and its ``calldate``
index) and missedcall's own tables, and fills it:

* ``--rows`` CDR rows (default 1,000,000) over the last 24 hours, bulk-loaded with
  ``LOAD DATA LOCAL INFILE`` (multi-row INSERTs when the server refuses it):
  inbound queue calls from random outside numbers (answered or not), agents'
  outbound calls through a trunk whose caller ID is in ``src`` (the dialled
  number written 8916..., +7916..., 9 8916...), internal calls;
* ``--misses`` open misses (default 10,000) from 7,000 callers (repeat callers
  included), about a third of them called back later and a tenth calling in
  again and being answered, those rows among the million.

Then it times ``missedcall.resolve.run.run`` (one pass, as ``missedcall-admin
resolve`` and retry's minute run do it) twice: the first pass resolves, the
second finds the rest still open. The database is dropped at the end, whatever
happens. The figure goes in the issue's note; the target is under 10 s.

Run it from a non-editable install: ``python -m venv /tmp/bv && /tmp/bv/bin/pip install . &&
/tmp/bv/bin/python bench/resolve_bench.py``.
Usage: resolve_bench.py [--rows 1000000] [--misses 10000] [--socket /run/mysqld/mysqld.sock]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import pymysql

from missedcall.config import load_settings
from missedcall.dburl import parse_db_url
from missedcall.record.model import CallRecord
from missedcall.record.storage import Store
from missedcall.resolve import run

UTC = timezone.utc
CDR_DDL = """CREATE TABLE cdr (
  calldate datetime NOT NULL DEFAULT '1000-01-01 00:00:00', clid varchar(80) NOT NULL DEFAULT '',
  src varchar(80) NOT NULL DEFAULT '', dst varchar(80) NOT NULL DEFAULT '', dcontext varchar(80) NOT NULL DEFAULT '',
  channel varchar(80) NOT NULL DEFAULT '', dstchannel varchar(80) NOT NULL DEFAULT '',
  lastapp varchar(80) NOT NULL DEFAULT '', lastdata varchar(80) NOT NULL DEFAULT '',
  duration int(11) NOT NULL DEFAULT 0,
  billsec int(11) NOT NULL DEFAULT 0, disposition varchar(45) NOT NULL DEFAULT '', amaflags int(11) NOT NULL DEFAULT 0,
  accountcode varchar(20) NOT NULL DEFAULT '', uniqueid varchar(32) NOT NULL DEFAULT '',
  userfield varchar(255) NOT NULL DEFAULT '', did varchar(50) NOT NULL DEFAULT '',
  recordingfile varchar(255) NOT NULL DEFAULT '', cnum varchar(80) NOT NULL DEFAULT '',
  cnam varchar(80) NOT NULL DEFAULT '', outbound_cnum varchar(80) NOT NULL DEFAULT '',
  outbound_cnam varchar(80) NOT NULL DEFAULT '', dst_cnam varchar(80) NOT NULL DEFAULT '',
  linkedid varchar(32) NOT NULL DEFAULT '', peeraccount varchar(80) NOT NULL DEFAULT '',
  sequence int(11) NOT NULL DEFAULT 0,
  KEY calldate (calldate), KEY dst (dst), KEY accountcode (accountcode)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
COLUMNS = ("calldate", "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "billsec",
           "disposition", "uniqueid", "did", "cnum", "linkedid", "sequence")  # fmt: skip
AGENTS = ("101", "102", "103", "104", "105", "106", "107", "108")


def national(rng: random.Random) -> str:
    return "9" + "".join(rng.choice("0123456789") for _ in range(9))  # a Russian mobile, 10 digits


def written(number: str, rng: random.Random) -> str:
    """How an agent or a trunk may write the number: 8916..., +7916..., 7916..., 916..., 9 8916..."""
    return rng.choice(("8", "+7", "7", "", "98")) + number


def cdr_rows(
    rows: int, misses: list[tuple[str, datetime]], now: datetime, rng: random.Random
) -> list[tuple[object, ...]]:
    start = now - timedelta(hours=24)
    out: list[tuple[object, ...]] = []
    seq = 0

    def add(when: datetime, src: str, dst: str, channel: str, dstchannel: str, billsec: int, disp: str,
            cnum: str, app: str = "Dial", ctx: str = "from-internal") -> None:  # fmt: skip
        nonlocal seq
        seq += 1
        uid = f"{int(when.timestamp())}.{seq}"
        out.append((when.strftime("%Y-%m-%d %H:%M:%S"), f'"" <{src}>', src, dst, ctx, channel, dstchannel, app,
                    billsec, disp, uid, "", cnum, uid, seq))  # fmt: skip

    for number, ended in misses:  # the resolving rows, about a third called back and a tenth got through
        roll = rng.random()
        later = ended + timedelta(minutes=rng.randint(1, 600))
        if later >= now:
            continue
        if roll < 0.33:
            agent = rng.choice(AGENTS)
            add(later, "74951234567", written(number, rng), f"PJSIP/{agent}-{seq:08x}", f"PJSIP/trunk-{seq:08x}",
                rng.randint(5, 600), "ANSWERED", agent)  # fmt: skip
        elif roll < 0.43:
            agent = rng.choice(AGENTS)
            add(later, "8" + number, "600", f"PJSIP/trunk-{seq:08x}", f"Local/{agent}@from-queue-{seq:08x};1",
                rng.randint(5, 600), "ANSWERED", "8" + number, "Queue", "ext-queues")  # fmt: skip
    while len(out) < rows:
        when = start + timedelta(seconds=rng.randint(0, 86399))
        roll = rng.random()
        if roll < 0.55:
            answered = rng.random() < 0.8
            agent = rng.choice(AGENTS) if answered else ""
            add(when, "8" + national(rng), "600", f"PJSIP/trunk-{seq:08x}",
                f"Local/{agent}@from-queue-{seq:08x};1" if agent else "", rng.randint(1, 900), "ANSWERED",
                "", "Queue", "ext-queues")  # fmt: skip
        elif roll < 0.9:
            agent = rng.choice(AGENTS)
            answered = rng.random() < 0.6
            add(when, "74951234567", written(national(rng), rng), f"PJSIP/{agent}-{seq:08x}",
                f"PJSIP/trunk-{seq:08x}", rng.randint(1, 900) if answered else 0,
                "ANSWERED" if answered else rng.choice(("NO ANSWER", "BUSY", "FAILED")), agent)  # fmt: skip
        else:
            a, b = rng.sample(AGENTS, 2)
            add(when, a, b, f"PJSIP/{a}-{seq:08x}", f"PJSIP/{b}-{seq:08x}", rng.randint(0, 300), "ANSWERED", a)
    return out


def load(conn: pymysql.connections.Connection, rows: list[tuple[object, ...]]) -> str:
    """LOAD DATA LOCAL INFILE from a TSV file; multi-row INSERTs when the server will not."""
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False, encoding="utf-8") as handle:
        for row in rows:
            handle.write("\t".join(str(v).replace("\t", " ").replace("\\", "\\\\") for v in row) + "\n")
        path = handle.name
    try:
        with conn.cursor() as cur:
            cur.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE cdr ({', '.join(COLUMNS)})", (path,))
        conn.commit()
        return "LOAD DATA LOCAL INFILE"
    except pymysql.MySQLError:
        conn.rollback()
    finally:
        os.unlink(path)
    marks = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
    with conn.cursor() as cur:
        for first in range(0, len(rows), 5000):
            cur.executemany(f"INSERT INTO cdr ({', '.join(COLUMNS)}) VALUES {marks}", rows[first : first + 5000])
    conn.commit()
    return "multi-row INSERT"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="CDR rows (default 1,000,000)")
    parser.add_argument("--misses", type=int, default=10_000, help="open misses (default 10,000)")
    parser.add_argument("--socket", default="/run/mysqld/mysqld.sock", help="MariaDB's socket (root, no password)")
    args = parser.parse_args()
    rng = random.Random(11)
    now = datetime.now(UTC).replace(microsecond=0)
    callers = [national(rng) for _ in range(max(1, args.misses * 7 // 10))]
    misses = sorted(((rng.choice(callers), now - timedelta(seconds=rng.randint(600, 23 * 3600)))
                     for _ in range(args.misses)), key=lambda m: m[1])  # fmt: skip
    name = f"mc_bench_{secrets.token_hex(4)}"
    root = pymysql.connect(unix_socket=args.socket, user="root", charset="utf8mb4", local_infile=True,
                           autocommit=False, read_timeout=600, write_timeout=600)  # fmt: skip
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            cur.execute(f"USE `{name}`")
            cur.execute(CDR_DDL)
        t0 = time.perf_counter()
        rows = cdr_rows(args.rows, misses, now, rng)
        how = load(root, rows)
        print(f"loaded {len(rows):,} CDR rows with {how} in {time.perf_counter() - t0:.1f} s")
        url = f"mysql://root@localhost/{name}?unix_socket={args.socket}"
        settings = load_settings({
            "MISSEDCALL_CONFIG": "/nonexistent/missedcall.env", "MISSEDCALL_DB_URL": url,
            "MISSEDCALL_CDR_URL": url + "&table=cdr&tz=UTC", "MISSEDCALL_REGION": "RU",
            "MISSEDCALL_SPOOL_DIR": tempfile.gettempdir(),
        })  # fmt: skip
        with Store.open(parse_db_url(url), timeout=600) as store:
            store.init()
            with store.transaction():
                for i, (number, ended) in enumerate(misses):
                    store.claim_call(CallRecord(callid=f"{int(ended.timestamp())}.b{i}", queue="600",
                                                reason="ABANDON", source="agi", caller_num="+7" + number,
                                                ended_at=ended, status="sent"))  # fmt: skip
            for label in ("first pass", "second pass"):
                t0 = time.perf_counter()
                outcome = run.run(store, settings, now=now)
                took = time.perf_counter() - t0
                print(f"{label}: {took:.2f} s for {outcome.watched:,} open misses against {len(rows):,} CDR rows"
                      f" ({outcome.rows:,} candidate rows; {outcome.called_back:,} called back,"
                      f" {outcome.got_through:,} got through)")  # fmt: skip
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        root.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
