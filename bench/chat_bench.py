#!/usr/bin/env python3
"""What do chat targets cost the hook? Import time, as ratios to the notifier's own import.

Runs fresh interpreters N times each (bytecode as an install leaves it) and prints medians of:

- ``missedcall.deliver.targets`` (self time): what every hang-up pays, chat targets or not;
- the chat modules (chatroute, chatsend with urllib/http.client/ssl, chatformat, deliveries) imported on
  top of ``missedcall.deliver.notify``: what only a call with a chat target pays;

each as a ratio to the import of ``missedcall.deliver.notify`` itself. Ratios, not seconds.

    python bench/chat_bench.py [-n 15]        (missedcall installed, non-editable)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CHAT = (
    "missedcall.deliver.chatroute, missedcall.deliver.chatsend, missedcall.deliver.chatformat,"
    " missedcall.record.deliveries"
)
PROBE = f"""
import time
t0 = time.perf_counter()
import missedcall.deliver.notify
t1 = time.perf_counter()
import {CHAT}
t2 = time.perf_counter()
import sys
print(t1 - t0, t2 - t1, int(any(m in sys.modules for m in ("ssl", "urllib.request"))))
"""


def _targets_self() -> float:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import missedcall.deliver.notify"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "missedcall.deliver.targets":
            return int(parts[0].split()[-1]) / 1e6
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="runs of each measurement (default 15)")
    args = parser.parse_args()
    notify_s, chat_s, loaded = [], [], []
    for _ in range(args.n):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
        notify_s.append(float(out[0]))
        chat_s.append(float(out[1]))
        mail_only = subprocess.run(
            [sys.executable, "-c", "import sys, missedcall.deliver.notify; print(int('ssl' in sys.modules))"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        loaded.append(int(mail_only.stdout.strip()))
    targets = [_targets_self() for _ in range(args.n)]
    base = statistics.median(notify_s)
    print(f"notify import (median of {args.n}): 1.00")
    print(f"  targets module, on every hang-up:        {statistics.median(targets) / base:.4f}")
    print(f"  chat modules, only with a chat target:   {statistics.median(chat_s) / base:.3f}")
    print(f"  ssl loaded by a mail-only notify import: {'yes' if any(loaded) else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
