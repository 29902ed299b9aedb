"""Who to tell about a missed call: the queue's own rows, else the fallback, plus every ``*`` row."""

from __future__ import annotations

from collections.abc import Iterable

from missedcall.config import is_address
from missedcall.deliver.targets import is_chat


def resolve(own: Iterable[str], star: Iterable[str], fallback: Iterable[str]) -> list[str]:
    """Each address once (case-insensitively), in a stable order; invalid ones are dropped.

    ``*`` rows never count as the queue's own, so the fallback still applies to
    a queue that only has ``*`` copies (docs/design.md).
    """
    own = [a.strip() for a in own if a.strip()]
    chosen = own if own else [a.strip() for a in fallback]
    result: list[str] = []
    seen: set[str] = set()
    for address in [*chosen, *(a.strip() for a in star)]:
        key = address.lower()
        if key not in seen and (is_chat(address) or is_address(address)):  # chat keys: targets.problem checks
            seen.add(key)
            result.append(address)
    return result


def valid_queue(queue: str) -> bool:
    """A queue name we accept from users: FreePBX numbers, Asterisk names, or ``*``."""
    if queue == "*":
        return True
    return 0 < len(queue) <= 64 and all(c.isalnum() or c in "-_." for c in queue) and queue.isascii()
