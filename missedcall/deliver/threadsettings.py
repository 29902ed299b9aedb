"""The keys of threaded mail: MISSEDCALL_FOLLOWUP, MISSEDCALL_VOICEMAIL, MISSEDCALL_RESOLVE_HOURS. Pure.

``load_settings`` keeps them raw (they are off the hook's main path); each is
parsed here, on use, and by ``doctor`` through :func:`check`. No imports beyond
config, so the hook pays nothing for asking.
"""

from __future__ import annotations

from collections.abc import Mapping

from missedcall.config import KEYS, ConfigError, Settings


def _raw(settings: Settings | Mapping[str, str], key: str) -> str:
    values = settings.raw if isinstance(settings, Settings) else settings
    return (str(values.get(key, "") or "").strip() or KEYS[key][0]).strip()


def followup_enabled(settings: Settings | Mapping[str, str]) -> bool:
    """MISSEDCALL_FOLLOWUP: on (default) or off."""
    value = _raw(settings, "MISSEDCALL_FOLLOWUP").lower()
    if value in ("on", "yes", "true", "1"):
        return True
    if value in ("off", "no", "false", "0"):
        return False
    raise ConfigError(f"MISSEDCALL_FOLLOWUP: {value[:20]!r} is not on or off")


def voicemail_mode(settings: Settings | Mapping[str, str]) -> str:
    """MISSEDCALL_VOICEMAIL: ``mention`` (default: the mail says so) or ``suppress`` (no mail for such a miss)."""
    value = _raw(settings, "MISSEDCALL_VOICEMAIL").lower()
    if value not in ("mention", "suppress"):
        raise ConfigError(f"MISSEDCALL_VOICEMAIL: {value[:20]!r} is not mention or suppress")
    return value


def resolve_hours(settings: Settings | Mapping[str, str]) -> int:
    """MISSEDCALL_RESOLVE_HOURS: how long a miss stays open (1-720 hours, default 24)."""
    value = _raw(settings, "MISSEDCALL_RESOLVE_HOURS")
    if not (value.isascii() and value.isdigit() and 1 <= int(value[:6]) <= 720):
        raise ConfigError(f"MISSEDCALL_RESOLVE_HOURS: {value[:20]!r} is not a number of hours from 1 to 720")
    return int(value)


def check(settings: Settings) -> list[str]:
    """Every problem with these keys, one line each (doctor's config check)."""
    problems = []
    for parse in (followup_enabled, voicemail_mode, resolve_hours):
        try:
            parse(settings)  # type: ignore[operator]
        except ConfigError as exc:
            problems.append(str(exc))
    return problems
