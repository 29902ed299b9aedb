"""Settings: a python-dotenv file plus the environment, validated into one frozen object.

Real environment variables win over the file, so an admin can try a value for
one command without editing anything. Every check here fails with a one-line
``ConfigError`` that names the key; nothing else in the package reads
``os.environ`` for settings.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

from missedcall import fromcopy, settingscache
from missedcall.dburl import DEFAULT_SQLITE_PATH, DbTarget, DbUrlError, parse_db_url, target_from_amp_conf
from missedcall.settings import REASONS, Settings

DEFAULT_CONFIG = "/etc/missedcall/missedcall.env"
MAX_FILE = 1 << 20  # configuration files are read up to this many characters
#: Longest address (and chat target key) accepted. RFC 5321 allows 254, but the key columns that hold one
#: (missedcall_recipients, _flood, _held, _deliveries) are VARCHAR(191): at 4 bytes a character that is 764
#: bytes, within the 767 that InnoDB indexes on MariaDB before 10.2.2 (SNG7's 5.5, 10.1) by default.
ADDRESS_MAX = 191


#: key -> (default, one-line meaning); the single source for the README table,
#: the commented config file that install.sh writes, and unknown-key warnings.
KEYS: dict[str, tuple[str, str]] = {
    "MISSEDCALL_DB_URL": (
        "",
        "mysql://user:pass@host:port/db or sqlite:////abs/path; empty: FreePBX's own database, else SQLite",
    ),
    "MISSEDCALL_FREEPBX_CONF": ("/etc/freepbx.conf", "where FreePBX keeps its database credentials"),
    "MISSEDCALL_TRANSPORT": ("sendmail", "sendmail or smtp"),
    "MISSEDCALL_SENDMAIL": ("/usr/sbin/sendmail", "sendmail-compatible binary"),
    "MISSEDCALL_SMTP_HOST": ("localhost", "SMTP relay host"),
    "MISSEDCALL_SMTP_PORT": ("25", "SMTP relay port"),
    "MISSEDCALL_SMTP_USER": ("", "SMTP login (empty: no login)"),
    "MISSEDCALL_SMTP_PASSWORD": ("", "SMTP password"),
    "MISSEDCALL_SMTP_SECURITY": ("none", "starttls, ssl or none"),
    "MISSEDCALL_SMTP_CAFILE": ("", "CA bundle to verify the relay's certificate (empty: system CAs)"),
    "MISSEDCALL_SMTP_TIMEOUT": ("10", "seconds before an SMTP relay is given up (the AGI caps it lower)"),
    "MISSEDCALL_FROM": (
        "", "From address (empty: FreePBX's Email \"From:\" Address, else missedcall@<this host's FQDN>)"
    ),
    "MISSEDCALL_FALLBACK_TO": ("", "comma-separated addresses for queues with no recipients of their own"),
    "MISSEDCALL_LANGUAGE": ("en", "en or ru"),
    "MISSEDCALL_TEMPLATE_DIR": ("", "folder whose subject.txt / body.txt replace the bundled templates"),
    "MISSEDCALL_REASONS": ("", "comma-separated reasons that notify (empty: all)"),
    "MISSEDCALL_MIN_WAIT": ("0", "abandons shorter than this many seconds are recorded, not mailed"),
    "MISSEDCALL_QUEUE_LOG": ("/var/log/asterisk/queue_log", "Asterisk's queue_log"),
    "MISSEDCALL_FLOOD_LIMIT": ("20", "single mails per recipient per window before a digest"),
    "MISSEDCALL_FLOOD_WINDOW": ("5", "flood window, minutes"),
    "MISSEDCALL_SPOOL_DIR": ("/var/spool/missedcall", "where calls wait when the database is unreachable"),
    "MISSEDCALL_TIMEZONE": ("", "time zone for mails, e.g. Europe/Moscow (empty: the system's)"),
    # Keys of the features outside the hook's path. Each feature parses its own from Settings.raw
    # (missedcall.resolve, the FastAGI service, business hours, chat targets), so the hook never
    # pays for them; doctor runs every feature's parser.
    "MISSEDCALL_CDR_URL": ("auto", "where callbacks are looked for: auto, mysql://.../asteriskcdrdb?table=cdr,"
                           " csv:/path/Master.csv; empty: off"),
    "MISSEDCALL_REGION": ("", "ISO country code for reading local numbers, e.g. RU (empty: compare last 10 digits)"),
    "MISSEDCALL_RESOLVE_HOURS": ("24", "hours a miss is watched for a callback before it is left open"),
    "MISSEDCALL_FOLLOWUP": ("on", "on or off: mail a follow-up in the same thread when a miss is resolved"),
    "MISSEDCALL_VOICEMAIL": ("mention", "mention or suppress: say in the mail that the caller left a voicemail"),
    "MISSEDCALL_REPORT_HOUR": ("09:00", "local time of the daily report of open misses (empty: none)"),
    "MISSEDCALL_AFTER_HOURS": ("digest", "digest, mail or ignore: a miss outside business hours"),
    "MISSEDCALL_FASTAGI_LISTEN": ("127.0.0.1:4574", "host:port of the FastAGI service (missedcall-admin serve)"),
    "MISSEDCALL_FASTAGI_MAX_SESSIONS": ("2000", "sessions the FastAGI service holds at once; past it Asterisk"
                                        " is told FAILURE and the dialplan runs missed.py"),
    "MISSEDCALL_FASTAGI_CACHE_SECONDS": ("5", "seconds the FastAGI service keeps the recipients and queue"
                                         " settings it read (0: none; systemctl reload drops them)"),
    "MISSEDCALL_TELEGRAM_TOKEN": ("", "Telegram bot token for telegram: targets (only ever kept here)"),
    "MISSEDCALL_TELEGRAM_API": ("https://api.telegram.org", "Telegram Bot API base URL"),
    "MISSEDCALL_WEBHOOK_SECRET": ("", "key that signs webhook: bodies with HMAC-SHA256 (empty: unsigned)"),
    "MISSEDCALL_HTTP_CAFILE": ("", "CA bundle for chat and webhook HTTPS (empty: system CAs)"),
}

# A dot-atom local part and a host name: the addr-spec that Python's ``email`` package writes back
# unchanged (no quoted local part, no comment, no domain literal, ASCII only). Character sets, not a
# regex: ``re`` (with the ``enum`` and ``functools`` it imports) is no longer on the AGI's path.
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ATEXT = _ALNUM | frozenset("!#$%&'*+/=?^_`{|}~-")  # RFC 5322 atext
_LABEL = _ALNUM | {"-"}


#: MISSEDCALL_* names that are not settings: the config path itself, and the test suite's taps.
_NOT_SETTINGS = ("MISSEDCALL_CONFIG", "MISSEDCALL_TEST_")


class ConfigError(ValueError):
    """A setting that cannot be used; the message is one line naming the key."""


def shown(text: str, limit: int = 100) -> str:
    """A path or value from outside, fit for a one-line message: control characters escaped, length capped."""
    head = text[:limit].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    head = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in head)
    return head + ("..." if len(text) > limit else "")


def is_plain_address(text: str) -> bool:
    """A bare ASCII addr-spec of RFC 5322 atoms (no display name, comment, quoting or domain literal).

    That is the only kind missedcall.deliver.mime writes into From and To, as it is: any reader takes it
    back as exactly this one address (tests/test_mime.py reads every accepted shape back with the
    ``email`` package's parser). "=?" is refused anywhere: a reader would take it for the start of an
    RFC 2047 encoded word.
    """
    local, at, domain = text.partition("@")
    if not at or len(text) > ADDRESS_MAX or len(local) > 64 or "=?" in text:
        return False
    atoms_ok = all(atom and _ATEXT.issuperset(atom) for atom in local.split("."))
    return atoms_ok and all(_is_label(label) for label in domain.split("."))


def _is_label(label: str) -> bool:
    """A host name label: letters, digits and inner hyphens, 1 to 63 characters."""
    return 0 < len(label) <= 63 and _LABEL.issuperset(label) and label[0] != "-" and label[-1] != "-"


def why_not_address(text: str) -> str:
    """What to tell an admin about an address :func:`is_plain_address` refuses ("" for one it takes)."""
    if is_plain_address(text):
        return ""
    if len(text) > ADDRESS_MAX:
        return f"is longer than {ADDRESS_MAX} characters"
    return "is not a plain e-mail address"


def is_address(text: str) -> bool:
    """A recipient or sender address we can write (``is_plain_address``; kept as the admin side's name)."""
    return is_plain_address(text)


def read_env_file(path: str, *, strict: bool = False) -> dict[str, str]:
    """The file's keys; an absent file is an empty config, an unreadable one an error.

    With ``strict``, a line python-dotenv cannot parse is a ConfigError naming the file and the
    line; without, it is skipped as python-dotenv itself does (the AGI keeps mailing on the rest).
    """
    try:
        with open(path, encoding="utf-8", errors="strict") as handle:
            source = os.fstat(handle.fileno())
            # The values python-dotenv read last time, while the file is unchanged (missedcall.settingscache).
            # Not for ``strict``: the admin's commands want every bad line reported, and they refresh the cache.
            cached = None if strict else settingscache.load(path, source)
            if cached is not None:
                return cached
            text = handle.read(MAX_FILE + 1)  # bounded: a path to /dev/zero must not eat the memory
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read config {shown(path)}: {exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if len(text) > MAX_FILE:
        raise ConfigError(f"config {shown(path)} is larger than {MAX_FILE // 1024} KB: not a configuration file")
    from io import StringIO

    from dotenv.parser import parse_stream

    # The parser itself, not dotenv_values: it says which line failed instead of logging a
    # warning nobody reads. No interpolation: a "$" in a password must stay a "$".
    values: dict[str, str] = {}
    for binding in parse_stream(StringIO(text)):
        if binding.error:
            if strict:
                # python-dotenv counts from the blank lines before the statement; name the line itself.
                raw = binding.original.string
                line = binding.original.line + raw[: len(raw) - len(raw.lstrip())].count("\n")
                raise ConfigError(
                    f"{shown(path)}:{line}: python-dotenv cannot parse this line (expected KEY=value, quotes closed)"
                )
            continue
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    if stat.S_ISREG(source.st_mode):  # never for a pipe or a device: they have no stable identity
        settingscache.save(path, source, values)
    return values


def _int(values: Mapping[str, str], key: str, low: int, high: int) -> int:
    text = values.get(key, "").strip() or KEYS[key][0]
    try:
        number = int(text)
    except ValueError:
        raise ConfigError(f"{key} must be a whole number, not {text[:40]!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{key} must be between {low} and {high}, not {number}")
    return number


def _addresses(values: Mapping[str, str], key: str) -> tuple[str, ...]:
    found: list[str] = []
    for part in values.get(key, "").split(","):
        address = part.strip()
        if not address:
            continue
        if not is_plain_address(address):
            raise ConfigError(f"{key}: {shown(address, 60)!r} {why_not_address(address)}")
        if address.lower() not in (a.lower() for a in found):
            found.append(address)
    return tuple(found)


def _choice(values: Mapping[str, str], key: str, allowed: tuple[str, ...]) -> str:
    text = (values.get(key, "").strip() or KEYS[key][0]).lower()
    if text not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}, not {text[:40]!r}")
    return text


def _read_freepbx(values: Mapping[str, str]) -> tuple[DbTarget | None, bool, str]:
    """FreePBX's credentials, from freepbx.conf then amportal.conf; (None, False) without FreePBX."""
    conf_path = values.get("MISSEDCALL_FREEPBX_CONF", "").strip() or KEYS["MISSEDCALL_FREEPBX_CONF"][0]
    candidates = [conf_path]
    if conf_path == KEYS["MISSEDCALL_FREEPBX_CONF"][0]:
        candidates.append("/etc/amportal.conf")
    for path in candidates:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read(MAX_FILE)  # freepbx.conf is a few lines; never read a device whole
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot read FreePBX config {shown(path)}: {exc.strerror}") from None
        from missedcall import freepbx  # only on a FreePBX box, where PyMySQL brings ``re`` anyway

        conf = freepbx.parse_amp_conf(text)
        if not conf.get("AMPDBUSER"):
            continue  # freepbx.conf without credentials: amportal.conf may have them
        try:
            return target_from_amp_conf(conf, path), True, conf_path
        except DbUrlError as exc:
            raise ConfigError(str(exc)) from None
    return None, False, conf_path


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise ConfigError(
            f"MISSEDCALL_TIMEZONE: unknown time zone {shown(name, 60)!r} (a name like Europe/Moscow;"
            " empty: the system's)"
        ) from None


def host_from() -> str:
    """missedcall@<this host's FQDN>, or missedcall@localhost when that is no address.

    A DNS look-up: for ``missedcall-admin init``, which keeps the answer for the hook (missedcall.fromcopy).
    """
    import socket

    address = f"missedcall@{socket.getfqdn()}"
    return address if is_plain_address(address) else "missedcall@localhost"


def node_from() -> str:
    """missedcall@<the kernel's host name>, or missedcall@localhost when that is no address: no DNS."""
    address = f"missedcall@{os.uname().nodename}"
    return address if is_plain_address(address) else "missedcall@localhost"


def salvage_paths(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(spool folder, queue_log) read as leniently as possible, for the hook when the settings do not load.

    A bad value elsewhere in the file must not lose the call: the hook still judges it from queue_log
    and spools it where ``retry`` will look once the configuration is fixed. Never raises.
    """
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    try:
        # Bytes that are not UTF-8 may be what broke the settings: read around them.
        with open(env.get("MISSEDCALL_CONFIG", "") or DEFAULT_CONFIG, "rb") as handle:
            text = handle.read(MAX_FILE).decode("utf-8", errors="replace")
        import io

        import dotenv

        values = {k: v for k, v in dotenv.dotenv_values(stream=io.StringIO(text)).items() if v is not None}
    except (OSError, ValueError):
        pass
    values.update({k: v for k, v in env.items() if k.startswith("MISSEDCALL_")})
    found = []
    for key in ("MISSEDCALL_SPOOL_DIR", "MISSEDCALL_QUEUE_LOG"):
        value = values.get(key, "").strip()
        ok = value.startswith("/") and len(value) < 4096 and value.isprintable()
        found.append(value if ok else KEYS[key][0])
    return found[0], found[1]


def load_settings(environ: Mapping[str, str] | None = None, *, strict: bool = False) -> Settings:
    """Read the config file named by MISSEDCALL_CONFIG (or the default) and the environment.

    ``strict`` is for the commands an admin runs (the CLI, cron's verbs, doctor), which report
    every bad value: a file named by MISSEDCALL_CONFIG or ``--config`` that is not there (running
    on the defaults would use another database than meant; only the default path may be
    absent), a line python-dotenv cannot parse, an unknown MISSEDCALL_TIMEZONE. The AGI reads
    leniently: it skips such a line and mails in the system's time zone rather than nobody.
    """
    env = os.environ if environ is None else environ
    config_path = env.get("MISSEDCALL_CONFIG", "") or DEFAULT_CONFIG
    if strict and config_path != DEFAULT_CONFIG and not os.path.lexists(config_path):
        raise ConfigError(f"config file {shown(config_path)} does not exist (named by --config or MISSEDCALL_CONFIG)")
    values: dict[str, str] = dict(read_env_file(config_path, strict=strict))
    values.update({k: v for k, v in env.items() if k.startswith("MISSEDCALL_")})
    for key, value in values.items():
        if "\x00" in value or "\n" in value or "\r" in value:
            raise ConfigError(f"{key} contains a control character")

    fpbx_target, is_freepbx, freepbx_conf = _read_freepbx(values)
    url = values.get("MISSEDCALL_DB_URL", "").strip()
    if url:
        try:
            db = parse_db_url(url)
        except DbUrlError as exc:
            raise ConfigError(str(exc)) from None
    elif fpbx_target is not None:
        db = fpbx_target
    else:
        db = DbTarget(kind="sqlite", path=DEFAULT_SQLITE_PATH, origin="default")

    reasons_text = values.get("MISSEDCALL_REASONS", "").strip()
    if reasons_text:
        chosen = {r.strip().upper() for r in reasons_text.split(",") if r.strip()}
        unknown = sorted(chosen - set(REASONS))
        if unknown:
            raise ConfigError(f"MISSEDCALL_REASONS: unknown reason {unknown[0][:40]!r} (known: {', '.join(REASONS)})")
        reasons = frozenset(chosen)
    else:
        reasons = frozenset(REASONS)

    mail_from = values.get("MISSEDCALL_FROM", "").strip()
    if mail_from and not is_plain_address(mail_from):
        raise ConfigError(f"MISSEDCALL_FROM: {shown(mail_from, 60)!r} {why_not_address(mail_from)}")
    if not mail_from:
        # FreePBX's own From, else this host's FQDN, as `missedcall-admin init` found them: a short read
        # each, no query and no DNS look-up per call (missedcall.fromcopy).
        copied = fromcopy.read(config_path, fromcopy.FREEPBX) if is_freepbx else ""
        if not is_plain_address(copied):
            copied = fromcopy.read(config_path, fromcopy.HOST)
        mail_from = copied if is_plain_address(copied) else node_from()

    template_dir = values.get("MISSEDCALL_TEMPLATE_DIR", "").strip()
    if template_dir and not os.path.isabs(template_dir):
        raise ConfigError("MISSEDCALL_TEMPLATE_DIR must be an absolute path")

    timezone = values.get("MISSEDCALL_TIMEZONE", "").strip()
    if strict and timezone:
        _check_timezone(timezone)

    return Settings(
        db=db,
        transport=_choice(values, "MISSEDCALL_TRANSPORT", ("sendmail", "smtp")),
        sendmail=values.get("MISSEDCALL_SENDMAIL", "").strip() or KEYS["MISSEDCALL_SENDMAIL"][0],
        smtp_host=values.get("MISSEDCALL_SMTP_HOST", "").strip() or "localhost",
        smtp_port=_int(values, "MISSEDCALL_SMTP_PORT", 1, 65535),
        smtp_user=values.get("MISSEDCALL_SMTP_USER", "").strip(),
        smtp_password=values.get("MISSEDCALL_SMTP_PASSWORD", ""),
        smtp_security=_choice(values, "MISSEDCALL_SMTP_SECURITY", ("none", "starttls", "ssl")),
        smtp_cafile=values.get("MISSEDCALL_SMTP_CAFILE", "").strip(),
        smtp_timeout=float(_int(values, "MISSEDCALL_SMTP_TIMEOUT", 1, 600)),
        mail_from=mail_from,
        fallback_to=_addresses(values, "MISSEDCALL_FALLBACK_TO"),
        language=_choice(values, "MISSEDCALL_LANGUAGE", ("en", "ru")),
        template_dir=template_dir,
        reasons=reasons,
        min_wait=_int(values, "MISSEDCALL_MIN_WAIT", 0, 86400),
        queue_log=values.get("MISSEDCALL_QUEUE_LOG", "").strip() or KEYS["MISSEDCALL_QUEUE_LOG"][0],
        flood_limit=_int(values, "MISSEDCALL_FLOOD_LIMIT", 1, 100000),
        flood_window=_int(values, "MISSEDCALL_FLOOD_WINDOW", 1, 1440),
        spool_dir=values.get("MISSEDCALL_SPOOL_DIR", "").strip() or KEYS["MISSEDCALL_SPOOL_DIR"][0],
        timezone=timezone,
        config_path=config_path,
        unknown_keys=tuple(sorted(k for k in values if k not in KEYS and not k.startswith(_NOT_SETTINGS))),
        freepbx_conf=freepbx_conf,
        is_freepbx=is_freepbx,
        raw=values,
    )
