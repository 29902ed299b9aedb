"""doctor's check of the chat targets: their settings parse, and each distinct target answers, without a message.

Telegram: ``getMe`` (the token works) and ``getChat`` (the bot can see that chat).
Slack, Mattermost, Teams and webhooks offer no request that is free of side effects
(a HEAD is refused by some and counted as a call by others), so for them doctor
only opens a TLS-verified connection to the host and sends nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from missedcall.admin.checks_access import FAIL, OK, WARN, Check
from missedcall.config import ConfigError
from missedcall.record.db import StorageError

if TYPE_CHECKING:
    from missedcall.admin.doctor import Doctor

_NET_TIMEOUT = 5.0
#: Targets probed at most per run (each costs up to two requests).
_MAX_PROBES = 20


def check_chat(doc: Doctor) -> Check | None:
    """None when no chat target is configured and no chat key is set."""
    name = "chat targets"
    if doc.settings is None or doc.store is None:
        return None
    from missedcall.deliver import chatsend, targets
    from missedcall.record import deliveries

    try:
        found = deliveries.distinct_targets(doc.store)
    except StorageError:
        return None  # a database without the target column yet: the database check says init
    doc.secrets |= {stored.partition(":")[2] for _, stored in found if stored}
    token_set = bool(doc.settings.raw.get("MISSEDCALL_TELEGRAM_TOKEN"))
    if not found and not token_set:
        return None
    try:
        opts = chatsend.options(doc.settings)
    except ConfigError as exc:
        return Check(FAIL, name, str(exc), f"edit {doc.config_path} (docs/chat.md)")
    doc.secrets |= set(opts.secrets)
    if not found:
        return Check(OK, name, "none configured (MISSEDCALL_TELEGRAM_TOKEN is set)")
    problems: list[tuple[str, str]] = []
    fine: list[str] = []
    for key, stored in found[:_MAX_PROBES]:
        try:
            said = chatsend.probe(key, stored, opts, timeout=_NET_TIMEOUT)
        except chatsend.ChatError as exc:
            problems.append((FAIL if not exc.temporary else WARN, f"{targets.show(key)}: {exc}"))
            continue
        except Exception as exc:  # one bad target costs only its own line
            problems.append((WARN, f"{targets.show(key)}: {exc.__class__.__name__}"))
            continue
        fine.append(f"{targets.show(key)} ({said})")
    try:
        refused = deliveries.failed(doc.store)
    except StorageError:
        refused = []
    for key, calls, error in refused:
        problems.append((WARN, f"{targets.show(key)} refused {calls} call(s): {error[:120]}"))
    skipped = f"; {len(found) - _MAX_PROBES} more not probed" if len(found) > _MAX_PROBES else ""
    if problems:
        status = FAIL if any(s == FAIL for s, _ in problems) else WARN
        fix = ("fix the target (missedcall-admin recipients remove/add) or the setting it names;"
               " then: missedcall-admin retry --failed")  # fmt: skip
        return Check(status, name, "; ".join(p for _, p in problems) + skipped, fix)
    return Check(OK, name, f"{len(found)} target(s) answer: " + ", ".join(fine[:5]) + skipped)
