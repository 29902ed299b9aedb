#!/usr/bin/env python3
"""Does starting a mail program stall the other threads of the process (the FastAGI service's event loop)?

``os.posix_spawn`` keeps the GIL while the kernel starts the child (vfork: the parent waits for the
child's exec); ``subprocess`` (fork_exec) lets go of it. On an idle box the child execs at once and
nobody notices; on a loaded one the child waits for a CPU first, and every thread of ours waits with
it. This starts ``--mails`` mail programs (a sh stand-in that reads the message) through
missedcall.deliver.mailprog, both ways, interleaved, while another thread wakes every 0.2 ms and
notes how late it got the GIL back; ``--load`` busy processes (stopped by pid) load the cores.

Run it in a virtualenv made like install.sh's (non-editable), from the repository root:

    python3 -m venv /tmp/mc-bench && /tmp/mc-bench/bin/pip install -q . \\
        && /tmp/mc-bench/bin/python bench/spawn_gil.py
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from missedcall.deliver import mailprog


def late_wakes(mails: int, program: str, kind: str) -> list[float]:
    """How late a sleeping thread woke (s), sorted, while ``mails`` messages went through ``program``."""
    mailprog.start_with(kind)
    stop = threading.Event()
    late: list[float] = []

    def waker() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            time.sleep(0.0002)
            late.append(time.perf_counter() - started - 0.0002)

    thread = threading.Thread(target=waker)
    thread.start()
    try:
        for _ in range(mails):
            code, _said = mailprog.Child([program]).run(b"Subject: x\n\nbody\n", 10)
            if code != 0:
                raise SystemExit(f"the stand-in exited with {code}")
    finally:
        stop.set()
        thread.join()
        mailprog.start_with(mailprog.POSIX_SPAWN)
    return sorted(late)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=300, help="mail programs started each way per round (300)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each way once per round (2)")
    parser.add_argument("--load", type=int, default=os.cpu_count() or 2, help="busy processes (default: one per CPU)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="missedcall-spawn-gil-") as tmp:
        program = Path(tmp) / "sendmail"
        program.write_text("#!/bin/sh\nexec cat > /dev/null\n")
        program.chmod(0o755)
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
        try:
            time.sleep(0.3)
            results: dict[str, list[float]] = {mailprog.POSIX_SPAWN: [], mailprog.SUBPROCESS: []}
            for _ in range(args.rounds):
                for kind in results:
                    results[kind].extend(late_wakes(args.mails, str(program), kind))
        finally:
            for proc in busy:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    print(f"{args.mails} mails x {args.rounds} rounds each way, {args.load} busy processes on {os.cpu_count()} CPUs")
    print("start         another thread woke late by: p50 / p99 / max (ms)")
    for kind, late in results.items():
        late.sort()
        p50, p99 = late[len(late) // 2], late[min(len(late) - 1, int(len(late) * 0.99))]
        print(f"{kind:<13} {p50 * 1000:6.2f} / {p99 * 1000:6.2f} / {late[-1] * 1000:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
