#!/usr/bin/env python3
"""Hang-up to mail handed to postfix, on the real Asterisk 22 of the e2e suite (issue 12).

A bench, not a test: it prints figures. It starts one e2e PBX (tests/e2e: the cached
Debian sid chroot with Asterisk 22 and postfix, in a private namespace), installs
missedcall into it with its own ``install.sh`` (a non-editable virtualenv in
/opt/missedcall/venv, as on a real box; the FreePBX database is a throw-away database
on the host's MariaDB), adds the stamps of bench/e2e_stamps.py and measures, per call,
from the instant the caller hung up to the instant postfix's sendmail had accepted the
alert:

1. ``--single`` abandons one at a time through the process hook (``AGI(missed.py)``),
   with ``agi set debug on`` so that Asterisk's full log tells where the time went;
2. the same through the FastAGI service (``install.sh --service``, ``missedcall-admin
   serve`` started in the box as asterisk);
3. a burst of ``--burst`` callers hanging up together through the service: every call
   recorded (rows in the database) and mailed exactly once (postfix's mailbox), p50/p99;
4. with ``--hook-burst N``, a burst of N through the process hook for comparison.

Run it as root from the repository root with the test venv (the product it measures is
the one install.sh puts into the box, not the venv's):

    .venv/bin/python bench/e2e_bench.py [--single 20] [--burst 500] [--hook-burst 200]

Everything it started is stopped by pid on the way out, the namespace (and with it every
mount) released and the temporary database dropped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_box import VENV, BenchBox, LocalCall, bench_box
from e2e_stamps import (
    BENCH_QUEUE,
    PROFILE_FLAG,
    PROFILE_MODULE,
    PROFILE_REPORT,
    PROFILER,
    WRAPPER_PATH,
    Handoff,
    log_marks,
    quantile,
    read_handoffs,
    summary,
)

T = TypeVar("T")
TICK = os.sysconf("SC_CLK_TCK")
SINGLE_QUEUE = "600"  # the suite's queue: two agents ring, nobody answers
PHASES = (  # (name, from mark, to mark) of one call, in order
    ("Asterisk: caller hang-up -> h extension", "hang", "h1"),
    ("Asterisk: h,1 -> AGI() executing", "h1", "agi"),
    ("Asterisk: AGI() -> first line sent to the script", "agi", "tx"),
    ("the script: first line sent -> its first command", "tx", "rx"),
    ("the script: first command -> sendmail started", "rx", "t0"),
    ("sendmail (wrapper + postdrop) accepted", "t0", "t1"),
)


def _ms(a: float, b: float) -> float:
    return (b - a) * 1000.0


def _wait(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def cpu_seconds(pid: int | None) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of a running process, from /proc (clock ticks)."""
    if pid is None:
        return 0.0, 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK, (int(fields[13]) + int(fields[14])) / TICK


def _cpu_line(bench: BenchBox, before: dict[str, tuple[float, float]], calls: int) -> str:
    parts = []
    for name, pid in (("Asterisk", bench.pbx.asterisk_pid), ("service", bench.service.pid if bench.service else None)):
        if name not in before or pid is None:
            continue
        own, kids = cpu_seconds(pid)
        own0, kids0 = before[name]
        parts.append(f"{name} itself {(own - own0) / calls * 1000:.0f} ms")
        if kids - kids0 > 0:
            what = "its sendmail children"
            if name == "Asterisk":
                what = "the hook processes it reaped (their sendmail included)"
            parts.append(f"{what} {(kids - kids0) / calls * 1000:.0f} ms")
    return "    CPU per call: " + "; ".join(parts)


def _cpu_before(bench: BenchBox) -> dict[str, tuple[float, float]]:
    found = {"Asterisk": cpu_seconds(bench.pbx.asterisk_pid)}
    if bench.service is not None:
        found["service"] = cpu_seconds(bench.service.pid)
    return found


def _handoff_of(bench: BenchBox, callid: str) -> Handoff | None:
    for handoff in read_handoffs(bench.stamp_dir):
        if handoff.callid == callid:
            return handoff
    return None


def single_calls(bench: BenchBox, n: int, label: str, out: list[str]) -> list[float]:
    """n abandons one after another; the decomposition of each from the full log."""
    bench.pbx.rx("agi set debug on")
    calls: list[tuple[LocalCall, str]] = []
    cpu = _cpu_before(bench)
    try:
        for i in range(n):
            call = bench.place(SINGLE_QUEUE, time.time() + 2.0, f"7200{i:04d}", f"Single {i}")
            callid = call.uniqueid()
            _wait(lambda: _handoff_of(bench, callid), 30, f"the mail of {callid}")  # noqa: B023
            call.wait_hungup(30)
            bench.pbx.wait_mail_idle()
            calls.append((call, callid))
            time.sleep(0.3)
    finally:
        bench.pbx.rx("agi set debug off")
    cpu_line = _cpu_line(bench, cpu, max(1, len(calls)))
    log = bench.pbx.full_log().splitlines()
    handoffs = {h.callid: h for h in read_handoffs(bench.stamp_dir)}
    totals: list[float] = []
    phases: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
    held: list[float] = []
    for call, callid in calls:
        hang = bench.hung_up_at(call)
        handoff = handoffs.get(callid)
        if hang is None or handoff is None:
            out.append(f"  {callid}: no hang-up stamp or no mail stamp")
            continue
        marks = {**log_marks(log, call.channel_prefix), "hang": hang, "t0": handoff.started, "t1": handoff.accepted}
        totals.append(_ms(hang, handoff.accepted))
        for name, start, end in PHASES:
            if start in marks and end in marks:
                phases[name].append(_ms(marks[start], marks[end]))
        if "h1" in marks and "done" in marks:
            held.append(_ms(marks["h1"], marks["done"]))
    out.append(f"{label}: hang-up -> handed to postfix: {summary(totals)}")
    for name, values in phases.items():
        if values:
            out.append(f"    {name:52s} median {statistics.median(values):6.1f}  min {min(values):6.1f} ms")
    out.append(f"    {'channel held by the h extension (h,1 -> AGI done)':52s} {summary(held)}")
    out.append(cpu_line + " (Asterisk's own includes the bench's CLI polling)")
    return totals


def burst(bench: BenchBox, n: int, label: str, out: list[str], workers: int = 6) -> None:
    """n callers in the bench queue who all hang up at the same second."""
    already = {h.callid for h in read_handoffs(bench.stamp_dir)}
    lead = 15.0 + n * 0.08  # time to place them all (nsenter + asterisk -rx each) before anyone hangs up
    hang_at = time.time() + lead
    started = time.monotonic()
    cpu = _cpu_before(bench)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        calls = list(pool.map(lambda i: bench.place(BENCH_QUEUE, hang_at, f"7300{i:04d}", f"Burst {i}"), range(n)))
    placed_in = time.monotonic() - started
    late = max(0.0, time.time() - hang_at)
    callids = [call.uniqueid(timeout=120) for call in calls]
    peak = bench.channels()
    out.append(f"{label}: {n} callers placed in {placed_in:.1f} s ({peak} channels up before the hang-up"
               f"{f'; the last {late:.1f} s late' if late else ''})")  # fmt: skip
    wanted = set(callids)

    def mailed() -> bool:  # one stamp per message handed over: counted, not parsed, while waiting
        return len(list(bench.stamp_dir.glob("*.t"))) >= len(already) + n

    try:
        _wait(mailed, lead + 600, f"{n} mails", 0.5)
    except RuntimeError as exc:
        out.append(f"  {exc}")
    bench.pbx.wait_no_channels("Local/", timeout=300)
    bench.pbx.wait_mail_idle(timeout=300)
    cpu_line = _cpu_line(bench, cpu, n)
    rows = bench.box.rows(callids)
    pending = [row["callid"] for row in rows if row["status"] == "pending"]
    if pending:
        why = Counter(str(row["last_error"])[:90] for row in rows if row["status"] == "pending")
        out.append(f"  {len(pending)} calls recorded but left pending ({dict(why)}): running retry as cron would")
        bench.box.admin("retry", user="asterisk")
        bench.pbx.wait_mail_idle(timeout=300)
        rows = bench.box.rows(callids)
    handoffs = [h for h in read_handoffs(bench.stamp_dir) if h.callid in wanted]
    per_call = Counter(h.callid for h in handoffs)
    boxed = Counter(m.get("X-Missedcall-Callid") for m in bench.box.mails())
    copies = Counter(boxed[c] for c in callids)
    statuses = Counter(str(row["status"]) for row in rows)
    out.append(f"  recorded: {len(rows)} of {n} rows ({dict(statuses)}); handed to postfix: {len(per_call)} calls,"
               f" {sum(per_call.values())} messages (more than once: {sum(1 for v in per_call.values() if v > 1)});"
               f" in the mailbox, copies per call: {dict(copies)}")  # fmt: skip
    recorded = {str(row["callid"]) for row in rows}
    if len(recorded) < n:
        # What the minute's cron would do next (install.sh's cron runs sweep and retry): a hook that ran out
        # of its budget leaves its call to the spool (retry) or to queue_log (sweep).
        bench.box.admin("sweep", "--grace", "0", user="asterisk")
        bench.box.admin("retry", user="asterisk")
        bench.pbx.wait_mail_idle(timeout=300)
        after = bench.box.rows(callids)
        boxed_after = Counter(m.get("X-Missedcall-Callid") for m in bench.box.mails())
        out.append(f"  the hooks themselves recorded {len(recorded)} of {n}; after one cron round (sweep, retry):"
                   f" {len(after)} rows, {sum(1 for c in callids if boxed_after[c] == 1)} mailed once,"
                   f" {sum(1 for c in callids if boxed_after[c] > 1)} more than once")  # fmt: skip
    if len(recorded) < n:  # say what Asterisk's log knows of each call that left no row
        log_lines = bench.pbx.full_log().splitlines()
        for call, callid in zip(calls, callids):
            if callid not in recorded:
                seen = [line[-220:] for line in log_lines if call.channel_prefix in line or callid in line]
                out.append(f"  no row for {callid} ({call.channel_prefix}); its last log lines:")
                out += [f"    {line}" for line in seen[-12:]]
    first = {}
    for h in handoffs:
        if h.callid not in first or h.accepted < first[h.callid].accepted:
            first[h.callid] = h
    hangs = {c.uniqueid(): bench.hung_up_at(c) for c in calls}
    latency = [_ms(hangs[c], first[c].accepted) for c in callids if c in first and hangs.get(c) is not None]
    known = [t for t in hangs.values() if t is not None]
    if latency and known:
        last = max(first[c].accepted for c in first)
        out.append(f"  hang-ups spread over {_ms(min(known), max(known)):.0f} ms;"
                   f" hang-up -> handed to postfix: p50 {quantile(latency, 0.5):.0f} ms,"
                   f" p90 {quantile(latency, 0.9):.0f},"
                   f" p99 {quantile(latency, 0.99):.0f}, max {max(latency):.0f} ms;"
                   f" first hang-up -> last mail accepted {_ms(min(known), last) / 1000:.2f} s")  # fmt: skip
    log = bench.pbx.full_log().splitlines()
    fallback = [c for c in calls if any(c.channel_prefix in line and 'AGI("' in line and "missed.py" in line
                                        and "Executing [h@ext-queues:" in line for line in log)]  # fmt: skip
    if bench.mode == "service":
        out.append(f"  calls the dialplan handed to the process hook (AGISTATUS FAILURE): {len(fallback)}")
    held = []
    for call in calls:
        marks = log_marks(log, call.channel_prefix)
        if "h1" in marks and "done" in marks:
            held.append(_ms(marks["h1"], marks["done"]))
    if held:
        out.append(f"  channel held by the h extension (h,1 -> AGI done): p50 {quantile(held, 0.5):.0f} ms,"
                   f" p99 {quantile(held, 0.99):.0f} ms, max {max(held):.0f} ms (n={len(held)})")  # fmt: skip
    out.append(cpu_line + " (placing the calls included)")


def in_box_baselines(bench: BenchBox, out: list[str], n: int = 15) -> None:
    """What the wrapper adds to sendmail, and what a bare interpreter costs, in the box as asterisk."""
    script = f"""
import resource, statistics, subprocess, time
msg = b"From: bench@pbx.e2e.invalid\\nTo: probe@example.com\\nSubject: wrapper probe\\n\\nprobe\\n"
def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN); return r.ru_utime + r.ru_stime
def t(argv, data=None):
    c, s = cpu(), time.perf_counter(); subprocess.run(argv, input=data, check=True)
    wall = (time.perf_counter() - s) * 1000; cpus.setdefault(argv[0] + " " + argv[1], []).append((cpu() - c) * 1000)
    return wall
runs, cpus = {{}}, {{}}
mail = ["-oi", "-f", "bench@pbx.e2e.invalid", "--", "probe@example.com"]
for _ in range({n}):
    for name, argv, data in (("sendmail", ["/usr/sbin/sendmail", *mail], msg),
                             ("wrapper", ["{WRAPPER_PATH}", *mail], msg),
                             ("venv python -c pass", ["{VENV}/bin/python", "-c", "pass"], None),
                             ("python3 -c pass", ["python3", "-c", "pass"], None),
                             ("python3 -I -S -c pass", ["python3", "-I", "-S", "-c", "pass"], None)):
        runs.setdefault(name, []).append(t(argv, data))
for (name, v), c in zip(runs.items(), cpus.values()):
    print(f"{{name:24s}} wall min {{min(v):6.1f}}  median {{statistics.median(v):6.1f}} ms;"
          f" CPU mean {{statistics.mean(c):5.1f}} ms")
"""
    probe = bench.pbx.run(["python3", "-c", script], user="asterisk", timeout=300)
    out.append(f"in the box, as asterisk, {n} runs each, interleaved (wall time of the whole process):")
    out += ["    " + line for line in probe.stdout.splitlines()]


def profile_hook(bench: BenchBox, n: int, out: list[str]) -> None:
    """n more single calls through the process hook under cProfile (slower: only where the time goes)."""
    site = bench.pbx.run([f"{VENV}/bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    custom = [f"{site.stdout.strip()}/{PROFILE_MODULE}.py", f"{site.stdout.strip()}/{PROFILE_MODULE}.pth"]
    bench.pbx.write_file(custom[0], PROFILER)
    bench.pbx.write_file(custom[1], f"import {PROFILE_MODULE}\n")
    bench.pbx.write_file(PROFILE_FLAG, "", owner="asterisk")
    # The installed hook starts with -IS (no site, so no .pth): for this pass only, without them.
    hook = bench.pbx.path("/var/lib/asterisk/agi-bin/missed.py")
    installed = hook.read_bytes()
    first, rest = installed.split(b"\n", 1)
    hook.write_bytes(first.removesuffix(b" -IS") + b"\n" + rest)
    try:
        single_calls(bench, n, f"process hook under cProfile, {n} single calls (inflated by the profiler)", out)
    finally:
        hook.write_bytes(installed)
        bench.pbx.path(PROFILE_FLAG).unlink(missing_ok=True)
        for path in custom:
            bench.pbx.path(path).unlink(missing_ok=True)
    report = bench.pbx.run(["python3", "-c", PROFILE_REPORT, f"{VENV}/bin/python"], timeout=120)
    out.extend(report.stdout.rstrip().splitlines())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=20, help="single calls per path (default 20)")
    parser.add_argument("--burst", type=int, default=500, help="callers in the burst through the service")
    parser.add_argument("--profile", type=int, default=0, help="then N hook calls under cProfile: where the time goes")
    parser.add_argument("--hook-burst", type=int, default=0, help="callers in a burst through the process hook")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (namespaces, chroot, mounts), like the e2e suite", file=sys.stderr)
        return 2
    note: list[str] = []
    out: list[str] = []
    started = time.monotonic()
    try:
        with bench_box(note) as bench:
            print("\n".join(note), flush=True)
            del note[:]
            in_box_baselines(bench, out)
            print("\n".join(out), flush=True)
            for label, switch in (("process hook", bench.use_hook), ("FastAGI service", bench.use_service)):
                if args.single:
                    switch()
                    mark = len(out)
                    single_calls(bench, args.single, f"{label}, {args.single} single calls", out)
                    print("\n".join(out[mark:]), flush=True)
                if args.profile and label == "process hook":
                    mark = len(out)
                    profile_hook(bench, args.profile, out)
                    print("\n".join(out[mark:]), flush=True)
            if args.burst:
                bench.use_service()
                mark = len(out)
                burst(bench, args.burst, "burst through the FastAGI service", out)
                print("\n".join(out[mark:]), flush=True)
            if args.hook_burst:
                bench.use_hook()
                mark = len(out)
                burst(bench, args.hook_burst, "burst through the process hook", out)
                print("\n".join(out[mark:]), flush=True)
    finally:
        print("\n".join(note), flush=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at the end: {load}; the bench ran {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
