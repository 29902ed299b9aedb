"""The AGI's time budget: wall time, less the time the box kept this process waiting for a CPU.

The budget exists so that a hung Asterisk, database or relay can never hold a
hang-up for long: every wait on one of them is bounded by it. Waiting for a CPU
is not such a wait. When fifty callers hang up at once on two cores, each hook
spends seconds in the run queue; charging that to the budget would leave every
mail to ``retry`` (a minute later) for no gain. Linux reports a task's run-queue
time in /proc/self/schedstat; it is credited back, up to a cap.
"""

from __future__ import annotations

import time

#: The most run-queue time credited: past this the box is not busy but drowning.
MAX_CREDIT = 20.0


def runqueue_wait() -> float:
    """Seconds this process has spent runnable but not running (0 where Linux does not say)."""
    try:
        with open("/proc/self/schedstat", "rb") as handle:
            fields = handle.read().split()
        return min(MAX_CREDIT, int(fields[1]) / 1e9)
    except (OSError, IndexError, ValueError):
        return 0.0


def left(deadline: float) -> float:
    """Seconds left before ``deadline`` (a time.monotonic() value), counting only time not stolen."""
    return deadline + runqueue_wait() - time.monotonic()
