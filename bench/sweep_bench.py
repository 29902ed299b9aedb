#!/usr/bin/env python3
"""How fast is ``missedcall-admin sweep --from-start`` on a big queue_log, and how much memory does it take?

Generates a realistic queue_log (default 1,000,000 lines: FreePBX DID lines, ENTERQUEUE,
RINGNOANSWER per agent, abandons, timeouts with and without an overflow queue,
EXITEMPTY, EXITWITHKEY, answered calls with COMPLETE*, member events, a few garbage
lines and unknown events, callers left waiting for ever; calls overlap in time), then
measures, each in a fresh child process (wall time, peak RSS from
``resource.getrusage(RUSAGE_CHILDREN)``):

* baselines over the same file: ``wc -l``, ``for line in f: pass`` and a Python loop that looks at
  each line (``line.count(b'|')``: issue 12's "plain Python line loop", the denominator of its 4x target);
* ``missedcall-admin sweep --from-start --dry-run`` against an initialised (empty) SQLite
  database, so every missed call is also looked up;
* with ``--real``: ``missedcall-admin sweep --from-start`` for real against that SQLite
  database (every missed call claimed and passed to the notifier; MISSEDCALL_REASONS=FULL,
  which no call in the log has, so the notifier records them as skipped instead of spawning
  tens of thousands of sendmails);
* with ``--lines-small N``: the dry run again on a file of N lines, to show that memory
  does not grow with the file.

The loops and the dry run are run ``--repeat`` times, interleaved (a shared box's load comes
and goes); the table gives the min and median of each and its ratios (min / median) to both loops.
Measure what install.sh installs: a non-editable venv (``python3 -m venv V && V/bin/pip install .``,
then ``V/bin/python bench/sweep_bench.py``); an editable install is refused unless ``--allow-editable``.

Usage: V/bin/python bench/sweep_bench.py [--lines 1000000] [--repeat 3] [--real] [--lines-small 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ADMIN = Path(sys.executable).with_name("missedcall-admin")
AGENTS = ("Agent One", "Agent Two", "Agent Three")


def generate(path: Path, lines: int, seed: int = 4) -> dict[str, int]:
    """Write ``lines`` queue_log lines (time-ordered, calls interleaved); return what was put in."""
    rng = random.Random(seed)
    now = int(time.time())
    clock = now - 86400 * 30  # a month-old log: every finished call is decidable at once
    pending: list[tuple[int, int, str]] = []
    seq = 0
    written = 0
    counts = {"calls": 0}
    uniq = 0

    def emit(at: int, text: str) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(pending, (at, seq, f"{at}|{text}\n"))

    with open(path, "w", encoding="utf-8") as out:
        out.write(f"{clock}|NONE|NONE|NONE|QUEUESTART|\n")
        written = 1
        while written < lines:
            clock += rng.randint(1, 4)
            uniq += 2
            callid = f"{clock}.{uniq}"
            caller = f"7916{rng.randint(1000000, 9999999)}"
            counts["calls"] += 1
            at = clock
            queues = ["600"]
            outcome = rng.random()
            if outcome < 0.07:
                queues = ["600", "601"]  # timeout, then an overflow queue
            for index, queue in enumerate(queues):
                emit(at, f"{callid}|{queue}|NONE|DID|5559000")
                emit(at, f"{callid}|{queue}|NONE|ENTERQUEUE||{caller}|1")
                rings = rng.randint(0, 4)
                for _ in range(rings):
                    at += rng.randint(2, 15)
                    for agent in AGENTS[: rng.randint(1, 3)]:
                        emit(at, f"{callid}|{queue}|{agent}|RINGNOANSWER|15000")
                at += rng.randint(1, 10)
                wait = at - clock
                last = index == len(queues) - 1
                if not last:
                    emit(at, f"{callid}|{queue}|NONE|EXITWITHTIMEOUT|1|1|{wait}")
                    continue
                if outcome < 0.035 or 0.07 <= outcome < 0.27:
                    emit(at, f"{callid}|{queue}|NONE|ABANDON|1|1|{wait}")
                elif 0.27 <= outcome < 0.32:
                    emit(at, f"{callid}|{queue}|NONE|EXITWITHTIMEOUT|1|1|{wait}")
                elif 0.32 <= outcome < 0.335:
                    emit(at, f"{callid}|{queue}|NONE|EXITEMPTY|1|1|{wait}")
                elif 0.335 <= outcome < 0.34:
                    emit(at, f"{callid}|{queue}|NONE|EXITWITHKEY|5|1|1|{wait}")
                elif 0.34 <= outcome < 0.3405:
                    pass  # entered, never left: dropped after the day's horizon
                else:
                    agent = rng.choice(AGENTS)
                    emit(at, f"{callid}|{queue}|{agent}|CONNECT|{wait}|{callid}1|{rng.randint(1, 9)}")
                    at += rng.randint(20, 900)
                    kind = "COMPLETEAGENT" if rng.random() < 0.5 else "COMPLETECALLER"
                    emit(at, f"{callid}|{queue}|{agent}|{kind}|{wait}|{at - clock}|1")
            if rng.random() < 0.01:
                emit(clock, f"NONE|600|Agent {rng.randint(1, 3)}|PAUSE|lunch")
            if rng.random() < 0.0005:
                emit(clock, "NONE|600|NONE|SOMENEWEVENT|x")
            # Flush what can no longer be overtaken by a later call's lines.
            while pending and pending[0][0] < clock - 1000 and written < lines:
                out.write(heapq.heappop(pending)[2])
                written += 1
                if written % 200_000 == 0:
                    out.write("this is not a queue_log line\n")
                    written += 1
        while pending and written < lines:
            out.write(heapq.heappop(pending)[2])
            written += 1
    counts["lines"] = written
    return counts


def measure(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``argv`` in a fresh child (via this script) so its peak RSS is its own."""
    wrapper = [sys.executable, __file__, "--measure-child", "--", *argv]
    done = subprocess.run(wrapper, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(argv: list[str]) -> None:
    with tempfile.TemporaryFile() as sink:
        started = time.perf_counter()
        done = subprocess.run(argv, stdout=sink, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - started
        sink.seek(max(0, sink.seek(0, os.SEEK_END) - 4096))
        tail = sink.read().decode("utf-8", "replace").strip().splitlines()
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        sys.exit(done.returncode)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": usage.ru_utime + usage.ru_stime,
                "rss_mb": usage.ru_maxrss / 1024,
                "last_line": tail[-1] if tail else "",
            }
        )
    )


PLAIN_LOOP = "import sys\nfor line in open(sys.argv[1], 'rb'):\n    pass"
PY_LOOP = "import sys\nn = 0\nfor line in open(sys.argv[1], 'rb'):\n    n += line.count(b'|') > 4\nprint(n)"
PLAIN = "for line in f: pass"
COUNT = "python loop, count '|'"


def bench_file(
    label: str, log: Path, env: dict[str, str], real: bool, repeat: int
) -> list[tuple[str, list[dict[str, float]]]]:
    variants = [
        (f"wc -l ({label})", ["wc", "-l", str(log)]),
        (f"{PLAIN} ({label})", [sys.executable, "-c", PLAIN_LOOP, str(log)]),
        (f"{COUNT} ({label})", [sys.executable, "-c", PY_LOOP, str(log)]),
        (f"sweep --from-start --dry-run ({label})", [str(ADMIN), "sweep", "--from-start", "--dry-run"]),
    ]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    for round_ in range(repeat):
        for name, argv in variants if round_ % 2 == 0 else variants[::-1]:
            runs[name].append(measure(argv, env))
    results = [(name, runs[name]) for name, _ in variants]
    if real:
        results.append((f"sweep --from-start, real ({label})", [measure([str(ADMIN), "sweep", "--from-start"], env)]))
    return results


def report(rows: list[tuple[str, list[dict[str, float]]]]) -> None:
    """The table: each run against both loops over the same file, measured in the same rounds."""
    plain: dict[str, tuple[float, float]] = {}
    count: dict[str, tuple[float, float]] = {}
    count_cpu: dict[str, float] = {}
    for name, result in rows:
        walls = [r["wall"] for r in result]
        for prefix, into in ((PLAIN, plain), (COUNT, count)):
            if name.startswith(prefix):
                into[name.split("(")[-1]] = (min(walls), statistics.median(walls))
        if name.startswith(COUNT):
            count_cpu[name.split("(")[-1]] = min(r["cpu"] for r in result)
    print(f"x count: against `{COUNT}`, the loop issue 12's target (sweep <= 4x) was measured against")
    print(f"x plain: against `{PLAIN}` (a loop that does not look at its lines: the stretch)")
    print("both: min / median wall time over the same file, the loops and the sweep interleaved in the same rounds")
    print(f"{'run':<46} {'wall min':>8} {'median':>7} {'cpu min':>7} {'peak RSS MB':>11}", end="")
    print(f"  {'x count min / med':<17} {'x plain min / med'}")
    for name, result in rows:
        walls = [r["wall"] for r in result]
        low, mid = min(walls), statistics.median(walls)
        key = name.split("(")[-1]
        cpu = min(r["cpu"] for r in result)
        rss = max(r["rss_mb"] for r in result)
        (cmin, cmid), (pmin, pmid) = count[key], plain[key]
        ratios = f"{low / cmin:>5.1f} / {mid / cmid:<5.1f} {low / pmin:>5.1f} / {mid / pmid:<5.1f}"
        print(f"{name:<46} {low:>8.2f} {mid:>7.2f} {cpu:>7.2f} {rss:>11.1f}  {ratios}")
    for name, result in rows:
        if name.startswith("sweep --from-start --dry-run"):
            key = name.split("(")[-1]
            low = min(r["wall"] for r in result)
            cpu = min(r["cpu"] for r in result)
            verdict = "met" if low <= 4 * count[key][0] else "NOT met"
            print(
                f"issue 12 target, {name}: {low / count[key][0]:.1f}x the count loop (<= 4x: {verdict});"
                f" {low / plain[key][0]:.1f}x the bare loop (stretch <= 4x)"
            )
            # On a loaded box wall times stretch with other people's work; CPU seconds much less.
            print(f"  by CPU seconds (min / min): {cpu / count_cpu[key]:.1f}x the count loop")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--lines-small", type=int, default=0, help="also run on a file this long (memory check)")
    parser.add_argument("--real", action="store_true", help="also run the real sweep against SQLite")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each variant (default 3)")
    parser.add_argument("--allow-editable", action="store_true", help="measure an editable install anyway")
    args = parser.parse_args()
    from venvcheck import editable_reason  # bench/venvcheck.py: on sys.path when this runs as a script

    why = editable_reason(sys.executable)
    if why and not args.allow_editable:
        print(f"sweep_bench: refusing an editable install ({why}); make a venv as install.sh does:", file=sys.stderr)
        print("  python3 -m venv V && V/bin/pip install . && V/bin/python bench/sweep_bench.py", file=sys.stderr)
        return 2
    print(f"!!! EDITABLE INSTALL ({why}): not what install.sh makes !!!" if why else
          f"install: non-editable ({sys.executable}), as install.sh makes it")  # fmt: skip

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        sizes = [("big", args.lines)] + ([("small", args.lines_small)] if args.lines_small else [])
        rows: list[tuple[str, list[dict[str, float]]]] = []
        for label, count in sizes:
            log = work / f"queue_log.{label}"
            started = time.perf_counter()
            made = generate(log, count)
            print(
                f"generated {log} ({made['lines']} lines, {log.stat().st_size / 1e6:.0f} MB, "
                f"{made['calls']} calls started) in {time.perf_counter() - started:.1f} s"
            )
            db = work / f"{label}.sqlite3"
            db.unlink(missing_ok=True)
            conf = work / f"{label}.env"
            conf.write_text(
                f"MISSEDCALL_DB_URL=sqlite:///{db}\nMISSEDCALL_QUEUE_LOG={log}\n"
                f"MISSEDCALL_FREEPBX_CONF={work}/no-freepbx.conf\nMISSEDCALL_REASONS=FULL\n"
                f"MISSEDCALL_SENDMAIL=/bin/false\n"
            )
            env = {**os.environ, "MISSEDCALL_CONFIG": str(conf)}
            subprocess.run([str(ADMIN), "init"], env=env, check=True, capture_output=True)
            results = bench_file(f"{count} lines", log, env, args.real, args.repeat)
            for name, result in results:
                if name.startswith("sweep"):
                    print(f"  {name}: {result[-1]['last_line']}")
            rows += results
        print()
        report(rows)
        print(
            "load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f} on {} CPUs".format(
                *os.getloadavg(), os.cpu_count()
            )
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--measure-child":
        child(sys.argv[3:])
        sys.exit(0)
    sys.exit(main())
