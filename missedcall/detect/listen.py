"""The FastAGI service's own keys (docs/fastagi.md): ``MISSEDCALL_FASTAGI_LISTEN``, where
``missedcall-admin serve`` listens, ``MISSEDCALL_FASTAGI_MAX_SESSIONS``, how many sessions
it holds at once, and ``MISSEDCALL_FASTAGI_CACHE_SECONDS``, how long it keeps the recipients and
the per-queue settings it read.

FastAGI has no authentication: whoever reaches the port can report calls. So the
default is loopback, and an address that is not loopback is taken only when it is
written in the configuration (or given with ``serve --listen``) — never by accident —
and then the service logs, and ``doctor`` warns, that a firewall must keep the port to
the site's PBXs. Pure: raises ``config.ConfigError`` with one line naming the key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import NamedTuple

from missedcall.config import ConfigError

KEY = "MISSEDCALL_FASTAGI_LISTEN"
DEFAULT = "127.0.0.1:4574"
MAX_SESSIONS_KEY = "MISSEDCALL_FASTAGI_MAX_SESSIONS"
MAX_SESSIONS_DEFAULT = 2000
MAX_SESSIONS_LIMIT = 100_000
CACHE_KEY = "MISSEDCALL_FASTAGI_CACHE_SECONDS"
CACHE_DEFAULT = 5
CACHE_LIMIT = 60


class Listen(NamedTuple):
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, script: str = "missed") -> str:
        """The ``agi://`` address the dialplan calls."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"agi://{host}:{self.port}/{script}"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str, *, key: str = KEY) -> Listen:
    """``host:port`` or ``[v6]:port``; the host an IP address or ``localhost``."""
    value = text.strip()
    if not value:
        value = DEFAULT
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"{key}: {value[:60]!r} is not [v6-address]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(f"{key}: {value[:60]!r} is not host:port (an IPv6 address goes in brackets)")
    if host != "localhost":
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            raise ConfigError(f"{key}: {host[:60]!r} is not an IP address (or localhost)") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{key}: port {port_text[:20]!r} is not between 1 and 65535")
    return Listen(host, int(port_text))


def from_raw(raw: Mapping[str, str]) -> Listen:
    """The service's address from ``Settings.raw`` (the default when the key is not set)."""
    return parse_listen(raw.get(KEY, "") or DEFAULT)


def max_sessions(raw: Mapping[str, str]) -> int:
    """``MISSEDCALL_FASTAGI_MAX_SESSIONS`` from ``Settings.raw``: one session more is told ``FAILURE``
    (Asterisk then sets ``AGISTATUS`` to ``FAILURE`` and the dialplan runs ``missed.py``)."""
    text = raw.get(MAX_SESSIONS_KEY, "").strip()
    if not text:
        return MAX_SESSIONS_DEFAULT
    if not (text.isascii() and text.isdigit() and len(text) <= 6) or not 1 <= int(text) <= MAX_SESSIONS_LIMIT:
        shown = text[:20].encode("ascii", "replace").decode()
        raise ConfigError(f"{MAX_SESSIONS_KEY} must be a whole number from 1 to {MAX_SESSIONS_LIMIT}, not {shown!r}")
    return int(text)


def cache_seconds(raw: Mapping[str, str]) -> int:
    """``MISSEDCALL_FASTAGI_CACHE_SECONDS`` from ``Settings.raw``: how stale the service's copy of the
    recipients and per-queue settings may be (0: read them for every call)."""
    text = raw.get(CACHE_KEY, "").strip()
    if not text:
        return CACHE_DEFAULT
    if not (text.isascii() and text.isdigit() and len(text) <= 3) or int(text) > CACHE_LIMIT:
        shown = text[:20].encode("ascii", "replace").decode()
        raise ConfigError(f"{CACHE_KEY} must be a whole number of seconds from 0 to {CACHE_LIMIT}, not {shown!r}")
    return int(text)
