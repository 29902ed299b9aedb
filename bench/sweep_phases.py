#!/usr/bin/env python3
"""Where a ``sweep --from-start --dry-run`` pass spends its CPU: each step against the count loop, in one process.

sweep_bench.py times whole commands; this splits one pass over a queue_log (``--log``; make one
with ``sweep_bench.py --keep DIR``) into what each step adds, by CPU seconds (``time.process_time``),
each the min over ``--repeat`` interleaved rounds, as a multiple of the count loop measured in the
same rounds (``for line in f: n += line.count(b'|') > 4``, issue 12's denominator):

* split floor: the block split into lines, each line split once and its event name looked up
  (the least any exact per-line Python reader does);
* reader: :class:`missedcall.detect.queuelog.Reader` handing every record to a no-op;
* reader + book: the records into :class:`missedcall.detect.book.Book`, decided as the sweeper does
  after each block (``take_due``), and the end-of-file expiry;
* whole pass: :class:`missedcall.detect.sweeper.Sweeper` ``cycle()``, dry run, no database, output
  to memory (adds judging each missed call's row and its printed line);
* imports: ``missedcall.admin.cli`` (what ``missedcall-admin`` imports before it reads a line).

``--prefilter`` adds the floors of a reader that leaves the per-line work to C (bytes methods, a
compiled pattern called from ``filter``) and hands Python only the lines that matter; none of them
is a reader (no checks, no ints, no records), each is the least such a design costs:

* C drop: the block split into lines and the lines holding ``|RINGNOANSWER|`` dropped by
  ``itertools.filterfalse`` with a compiled pattern's ``search``: no Python step per line (inexact: a
  caller ID holding the marker would be dropped too);
* C drop, exact rule: the same with the reader's rule (field 5 an ignored event name), as a pattern;
* C drop + group: the C drop, then the lines kept split and grouped by callid in Python;
* per-hit: ``bytes.find`` of the markers of the lines the book needs (DID, ENTERQUEUE, CONNECT, the
  four other exits), each hit's line cut out, nothing parsed.

Usage: V/bin/python bench/sweep_phases.py --log DIR/queue_log.big [--repeat 3] [--prefilter]
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from itertools import filterfalse

READ_BLOCK = 1 << 20


def blocks(path: str) -> list[bytes]:
    """The file as the sweeper reads it: blocks of whole lines, without the last newline."""
    found: list[bytes] = []
    rest = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_BLOCK):
            chunk = rest + chunk
            cut = chunk.rfind(b"\n")
            found.append(chunk[:cut])
            rest = chunk[cut + 1 :]
    if rest:
        found.append(rest)
    return found


def cpu(step: Callable[[], object]) -> float:
    started = time.process_time()
    step()
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log", required=True, help="a queue_log (sweep_bench.py --keep DIR makes one)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--prefilter", action="store_true", help="add the floors of a C-level prefilter")
    args = parser.parse_args()
    os.environ.update(MISSEDCALL_QUEUE_LOG=args.log, MISSEDCALL_CONFIG=os.devnull)
    probe = "import time; t = time.process_time(); import missedcall.admin.cli; print(time.process_time() - t)"
    imports = [float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(args.repeat)]  # fmt: skip

    from missedcall import config
    from missedcall.detect import queuelog
    from missedcall.detect.book import Book
    from missedcall.detect.sweeper import Sweeper

    data = blocks(args.log)
    ignore = queuelog.OTHER_EVENTS - queuelog.CALL_EVENTS

    def count_loop() -> None:
        n = 0
        with open(args.log, "rb") as handle:
            for line in handle:
                n += line.count(b"|") > 4

    def split_floor() -> None:
        for block in data:
            for raw in block.decode("utf-8", "replace").split("\n"):
                parts = raw.split("|", 5)
                if len(parts) > 4 and parts[4] in ignore:
                    continue

    def reader_only() -> None:
        reader = queuelog.Reader(open_calls={})
        for block in data:
            reader.feed(block, lambda _event: None)

    def reader_book() -> None:
        book = Book(60)
        reader = queuelog.Reader(open_calls=book.calls)
        for block in data:
            reader.feed(block, book.add)
            book.take_due(book.watermark - 61)
        book.take_due(time.time())
        book.expire(time.time())

    def whole_pass() -> None:
        settings = config.load_settings()
        Sweeper(settings, None, from_start=True, dry_run=True, out=io.StringIO()).cycle()

    ring = re.compile(rb"\|RINGNOANSWER\|").search
    names = b"|".join(sorted((e.encode() for e in ignore), key=len, reverse=True))
    exact = re.compile(rb"[^|\n]*\|[^|\n]*\|[^|\n]*\|[^|\n]*\|(?:" + names + rb")(?:\||\r?\Z)").match
    two_bars = re.compile(rb"[^|]*\|[^|]*\|").match  # the callid field exists
    needed = [f"|{e}|".encode() for e in ("DID", "ENTERQUEUE", "CONNECT", "ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY",
                                          "EXITWITHKEY")]  # fmt: skip

    def c_drop() -> None:
        for block in data:
            list(filterfalse(ring, block.split(b"\n")))

    def c_drop_exact() -> None:
        for block in data:
            list(filterfalse(exact, block.split(b"\n")))

    def c_drop_group() -> None:
        for block in data:
            calls: dict[bytes, list[list[bytes]]] = {}
            for line in filter(two_bars, filterfalse(ring, block.split(b"\n"))):
                parts = line.split(b"|", 5)
                found = calls.get(parts[1])
                if found is None:
                    calls[parts[1]] = [parts]
                else:
                    found.append(parts)

    def per_hit() -> None:
        for block in data:
            find, rfind = block.find, block.rfind
            for marker in needed:
                at = find(marker)
                while at >= 0:
                    end = find(b"\n", at)
                    end = len(block) if end < 0 else end
                    block[rfind(b"\n", 0, at) + 1 : end]
                    at = find(marker, end)

    steps = {"count loop": count_loop, "split floor": split_floor, "reader": reader_only,
             "reader + book": reader_book, "whole pass": whole_pass}  # fmt: skip
    if args.prefilter:
        steps.update({"C drop": c_drop, "C drop, exact rule": c_drop_exact, "C drop + group": c_drop_group,
                      "per-hit": per_hit})  # fmt: skip
    runs: dict[str, list[float]] = {name: [] for name in steps}
    saved = gc.get_threshold()
    gc.set_threshold(100_000, *saved[1:])  # as a sweep pass runs (sweep._rare_collections)
    for _ in range(args.repeat):
        for name, step in steps.items():
            runs[name].append(cpu(step))
    gc.set_threshold(*saved)
    base = min(runs["count loop"])
    print(f"{args.log}: CPU seconds, min of {args.repeat} interleaved rounds; x = against the count loop")
    for name, values in [*runs.items(), ("imports (missedcall.admin.cli)", imports)]:
        low = min(values)
        each = " ".join(f"{v:.2f}" for v in values)
        print(f"  {name:<31} {low:6.3f} s  {low / base:5.2f}x   ({each})")
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f} on {} CPUs".format(*os.getloadavg(), os.cpu_count()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
