"""The callback-tracking keys of the configuration, parsed from ``Settings.raw``. Pure except ``cdr_source``'s
``auto``, which looks for FreePBX's config and Asterisk's Master.csv.

Every parser raises :class:`missedcall.config.ConfigError` with one line naming the key; no message
ever holds a password (a CDR URL is shown with its user part redacted).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timezone, tzinfo

from missedcall.config import KEYS, ConfigError, Settings, shown
from missedcall.dburl import DbTarget, DbUrlError, parse_db_url, redact_url, target_from_amp_conf

CDR_KEY = "MISSEDCALL_CDR_URL"
DEFAULT_CSV = "/var/log/asterisk/cdr-csv/Master.csv"
#: A table name goes into SQL text: only what MariaDB takes unquoted, and no more.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_HOUR = re.compile(r"([01]?[0-9]|2[0-3])(?::([0-5][0-9]))?")


@dataclass(frozen=True)
class CdrSource:
    """Where CDR rows come from: ``kind`` is "mysql", "csv" or "off"."""

    kind: str
    target: DbTarget | None = field(default=None, repr=False)
    table: str = "cdr"
    path: str = ""
    zone_name: str = ""  # "" = the source's default: local for MySQL (calldate), UTC for Master.csv
    origin: str = ""  # "MISSEDCALL_CDR_URL", "FreePBX (/etc/freepbx.conf)", "auto: Master.csv", ...

    def describe(self) -> str:
        if self.kind == "mysql" and self.target is not None:
            return f"{self.target.describe()} table {self.table}"
        if self.kind == "csv":
            return f"csv:{self.path}"
        return "off"

    def zone(self) -> tzinfo | None:
        """The zone CDR times are written in; None = the system's local zone."""
        name = self.zone_name or ("UTC" if self.kind == "csv" else "local")
        if name.upper() == "UTC":
            return timezone.utc
        if name == "local":
            return None
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)


def _raw(settings: Settings | Mapping[str, str], key: str) -> str:
    values = settings.raw if isinstance(settings, Settings) else settings
    return str(values.get(key, "")).strip()


def followup_enabled(settings: Settings | Mapping[str, str]) -> bool:
    """MISSEDCALL_FOLLOWUP: on (default) or off."""
    text = (_raw(settings, "MISSEDCALL_FOLLOWUP") or KEYS["MISSEDCALL_FOLLOWUP"][0]).lower()
    if text in ("on", "yes", "true", "1"):
        return True
    if text in ("off", "no", "false", "0"):
        return False
    raise ConfigError(f"MISSEDCALL_FOLLOWUP must be on or off, not {shown(text, 40)!r}")


def region(settings: Settings | Mapping[str, str]) -> str:
    """MISSEDCALL_REGION: a two-letter ISO country code in upper case, or "" (compare the last 10 digits)."""
    text = _raw(settings, "MISSEDCALL_REGION").upper()
    if not text:
        return ""
    if not (len(text) == 2 and text.isascii() and text.isalpha()):
        raise ConfigError(f"MISSEDCALL_REGION must be a two-letter country code such as RU, not {shown(text, 40)!r}")
    from phonenumbers import SUPPORTED_REGIONS

    if text not in SUPPORTED_REGIONS:
        raise ConfigError(f"MISSEDCALL_REGION: {text} is not a country code phonenumbers knows")
    return text


def resolve_hours(settings: Settings | Mapping[str, str]) -> int:
    """MISSEDCALL_RESOLVE_HOURS: 1..720 (default 24)."""
    text = _raw(settings, "MISSEDCALL_RESOLVE_HOURS") or KEYS["MISSEDCALL_RESOLVE_HOURS"][0]
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 720):
        raise ConfigError(f"MISSEDCALL_RESOLVE_HOURS must be whole hours from 1 to 720, not {shown(text, 40)!r}")
    return int(text)


def report_hour(settings: Settings | Mapping[str, str]) -> tuple[int, int] | None:
    """MISSEDCALL_REPORT_HOUR: (hour, minute) of the daily report, None when it is set empty."""
    values = settings.raw if isinstance(settings, Settings) else settings
    if "MISSEDCALL_REPORT_HOUR" not in values:
        text = KEYS["MISSEDCALL_REPORT_HOUR"][0]
    else:
        text = str(values["MISSEDCALL_REPORT_HOUR"]).strip()
        if not text:
            return None
    match = _HOUR.fullmatch(text)
    if not match or not text.isascii():
        raise ConfigError(f"MISSEDCALL_REPORT_HOUR must be HH:MM (e.g. 09:00) or empty, not {shown(text, 40)!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def _refuse(url: str, why: str) -> ConfigError:
    return ConfigError(f"{CDR_KEY} {shown(redact_url(url), 120)!r} {why}")


def _zone_name(url: str, text: str) -> str:
    if text in ("local", "UTC", "utc"):
        return text
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(text)
    except (KeyError, ValueError, OSError):
        raise _refuse(url, f"has an unknown tz= {shown(text, 40)!r} (local, UTC or e.g. Europe/Moscow)") from None
    return text


def parse_cdr_url(url: str) -> CdrSource:
    """``mysql://user[:pass]@host[:port]/db[?table=cdr][&tz=..][&unix_socket=/path]``, ``csv:/abs/path[?tz=..]``,
    or "" (off). ``auto`` is not handled here (see :func:`cdr_source`)."""
    url = url.strip()
    if not url:
        return CdrSource("off", origin=CDR_KEY)
    if url.startswith("csv:"):
        path, _, query = url[len("csv:") :].partition("?")
        zone_name = ""
        if query:
            name, eq, value = query.partition("=")
            if name != "tz" or not eq or "&" in value:
                raise _refuse(url, "takes only ?tz=ZONE after a csv path")
            zone_name = _zone_name(url, value)
        if not path.startswith("/") or "\x00" in path or not path.isprintable():
            raise _refuse(url, "needs an absolute path (csv:/var/log/asterisk/cdr-csv/Master.csv)")
        return CdrSource("csv", path=os.path.normpath(path), zone_name=zone_name, origin=CDR_KEY)
    base, _, query = url.partition("?")
    table, zone_name, kept = "cdr", "", []
    for part in query.split("&") if query else ():
        name, eq, value = part.partition("=")
        if name == "table" and eq:
            if not _IDENTIFIER.fullmatch(value):
                raise _refuse(url, "has a table= that is not a plain table name (letters, digits, _)")
            table = value
        elif name == "tz" and eq:
            zone_name = _zone_name(url, value)
        else:
            kept.append(part)
    try:
        target = parse_db_url(base + ("?" + "&".join(kept) if kept else ""))
    except DbUrlError as exc:
        raise ConfigError(str(exc).replace("MISSEDCALL_DB_URL", CDR_KEY)) from None
    if target.kind != "mysql":
        raise _refuse(url, "must be mysql://..., csv:/path, auto or empty")
    return CdrSource("mysql", target=target, table=table, zone_name=zone_name, origin=CDR_KEY)


def freepbx_cdr(conf: Mapping[str, str], origin: str) -> CdrSource:
    """FreePBX's CDR database from its config: the CDRDB* settings, each falling back to its AMPDB* one."""
    merged = dict(conf)
    for name in ("HOST", "PORT", "USER", "PASS", "SOCK"):
        if conf.get(f"CDRDB{name}", ""):
            merged[f"AMPDB{name}"] = conf[f"CDRDB{name}"]
    if conf.get("CDRDBUSER", "") and not conf.get("CDRDBPASS", ""):
        merged["AMPDBPASS"] = ""  # another user's password is never right for this one
    merged["AMPDBNAME"] = conf.get("CDRDBNAME", "") or "asteriskcdrdb"
    merged["AMPDBENGINE"] = conf.get("CDRDBTYPE", "") or conf.get("AMPDBENGINE", "mysql")
    table = conf.get("CDRDBTABLENAME", "") or "cdr"
    if not _IDENTIFIER.fullmatch(table):
        raise ConfigError(f"{origin}: CDRDBTABLENAME {shown(table, 40)!r} is not a plain table name")
    try:
        target = target_from_amp_conf(merged, origin)
    except DbUrlError as exc:
        raise ConfigError(str(exc)) from None
    if not re.fullmatch(r"[A-Za-z0-9_$-]{1,64}", target.database):
        raise ConfigError(f"{origin}: CDRDBNAME {shown(target.database, 40)!r} is not a database name")
    return CdrSource("mysql", target=target, table=table, origin=f"FreePBX ({origin})")


def read_freepbx_conf(settings: Settings) -> tuple[dict[str, str], str]:
    """FreePBX's settings (freepbx.conf, then amportal.conf filling the gaps) and the file they came from;
    ({}, "") without FreePBX."""
    from missedcall import freepbx

    found: dict[str, str] = {}
    origin = ""
    paths = [settings.freepbx_conf]
    if settings.freepbx_conf == KEYS["MISSEDCALL_FREEPBX_CONF"][0]:
        paths.append("/etc/amportal.conf")
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                conf = freepbx.parse_amp_conf(handle.read(1 << 20))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot read FreePBX config {shown(path)}: {exc.strerror}") from None
        if conf.get("AMPDBUSER") or conf.get("CDRDBUSER"):
            origin = origin or path
            found = {**conf, **found}
    return found, origin


def cdr_source(settings: Settings) -> CdrSource:
    """MISSEDCALL_CDR_URL as a source. ``auto`` (default): FreePBX's CDR database when FreePBX is there,
    else Asterisk's Master.csv when it exists, else off."""
    values = settings.raw
    text = str(values.get(CDR_KEY, KEYS[CDR_KEY][0])).strip()
    if text.lower() != "auto":
        return parse_cdr_url(text)
    conf, origin = read_freepbx_conf(settings)
    if conf:
        return freepbx_cdr(conf, origin)
    if os.path.isfile(DEFAULT_CSV):
        return CdrSource("csv", path=DEFAULT_CSV, origin="auto: Asterisk's cdr-csv")
    return CdrSource("off", origin="auto: no FreePBX and no " + DEFAULT_CSV)
