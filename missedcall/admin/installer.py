"""The files install.sh writes, rendered in Python so that they are tested precisely.

- the commented configuration file (every key of :data:`missedcall.config.KEYS`
  with its default), written once and never overwritten;
- ``install.state`` beside it: where install.sh put things, read by
  ``missedcall-admin doctor``;
- the cron file for ``sweep`` and ``retry``;
- with ``--service``, the systemd unit of the FastAGI service and its ``agi://`` address;
- a hash of the source folder, so that re-running install.sh with the same
  code leaves the virtualenv alone and an upgrade replaces it.

``python -m missedcall.admin.installer VERB`` prints them for install.sh. Everything
but ``drop-tables`` needs only the standard library, so install.sh runs it from
the copied folder with the system Python, before any virtualenv exists (and in
``--dry-run``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence

from missedcall import __version__
from missedcall.config import DEFAULT_CONFIG, KEYS

STATE_NAME = "install.state"
#: install.state keys and their values on a default install (docs/design.md §8).
STATE_DEFAULTS: dict[str, str] = {
    "version": __version__,
    "prefix": "/opt/missedcall",
    "agi_dir": "/var/lib/asterisk/agi-bin",
    "asterisk_etc": "/etc/asterisk",
    "config_dir": os.path.dirname(DEFAULT_CONFIG),
    "data_dir": "/var/lib/missedcall",
    "cron_file": "/etc/cron.d/missedcall",
    "link": "/usr/local/bin/missedcall-admin",
    "asterisk_user": "asterisk",
    "asterisk_bin": "",
    "dialplan": "",  # freepbx | plain | none (--no-dialplan) | pending (FreePBX without queues yet)
    "service": "",  # the FastAGI address the dialplan calls first (install.sh --service), else empty
    "unit_file": "/etc/systemd/system/missedcall-fastagi.service",
}
UNIT_NAME = "missedcall-fastagi.service"
CRON_VERBS = ("sweep", "retry")


def render_env() -> str:
    """The configuration file install.sh writes when there is none: every key, commented, with its default."""
    lines = [
        "# missedcall configuration (python-dotenv syntax: KEY=value; a '#' line is a comment).",
        "# Every key is listed with its default, commented out: remove the '#' and edit to change one.",
        "# Real environment variables win over this file. The README explains each key.",
        "# install.sh wrote this file because there was none; it never overwrites it.",
        "# It may hold passwords: keep it 0640 root:asterisk.",
    ]
    for key, (default, meaning) in KEYS.items():
        lines += ["", f"# {meaning}", f"#{key}={default}"]
    return "\n".join(lines) + "\n"


def state_path(config_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(config_path)), STATE_NAME)


def render_state(values: Mapping[str, str]) -> str:
    unknown = sorted(set(values) - set(STATE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown install.state key {unknown[0]}")
    lines = ["# Written by missedcall's install.sh and read by missedcall-admin doctor; --uninstall removes it."]
    for key, default in STATE_DEFAULTS.items():
        value = values.get(key, default)
        if "\n" in value or "\r" in value:
            raise ValueError(f"install.state {key} contains a newline")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def read_state(path: str) -> dict[str, str] | None:
    """install.state as a dict with defaults filled in; None when there is no such file."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    values = dict(STATE_DEFAULTS)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if key.strip() in STATE_DEFAULTS:
            values[key.strip()] = value.strip()
    return values


def render_cron(
    prefix: str, user: str, data_dir: str, config_path: str = DEFAULT_CONFIG, report_at: tuple[int, int] | None = None
) -> str:
    """/etc/cron.d/missedcall: sweep and retry every minute, as the Asterisk user, never two at once; with
    ``report_at`` (hour, minute) also the daily mail of still-open misses (MISSEDCALL_REPORT_HOUR).

    Only stderr (the one-line errors) reaches syslog, tagged ``missedcall-<verb>``.
    """
    admin = os.path.join(prefix, "venv", "bin", "missedcall-admin")
    lines = [
        "# missedcall: periodic work, written by install.sh (install.sh --uninstall removes it).",
        "# sweep records missed calls from queue_log that the AGI did not see; retry re-sends what failed or waited.",
        "SHELL=/bin/sh",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    if os.path.abspath(config_path) != DEFAULT_CONFIG:
        lines.append(f"MISSEDCALL_CONFIG={config_path}")
    for verb in CRON_VERBS:
        lock = os.path.join(data_dir, f"cron-{verb}.lock")
        lines.append(f"* * * * * {user} flock -n {lock} {admin} {verb} 2>&1 >/dev/null | logger -t missedcall-{verb}")
    if report_at is not None:
        hour, minute = report_at
        lines.append("# the daily report of misses nobody called back (MISSEDCALL_REPORT_HOUR, the system's time)")
        lines.append(
            f"{minute} {hour} * * * {user} {admin} report --mail --status open --since 24h 2>&1 >/dev/null"
            " | logger -t missedcall-report"
        )
    return "\n".join(lines) + "\n"


def config_value(path: str, key: str) -> str | None:
    """``key``'s value in a KEY=value file as install.sh writes it (stdlib only: install.sh runs this with the
    system's Python), None when absent or unreadable; the last assignment wins."""
    import re

    found = None
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(1 << 20)
    except OSError:
        return None
    for line in text.splitlines():
        match = re.match(rf"\s*(?:export\s+)?{re.escape(key)}\s*=\s*(.*)$", line)
        if not match:
            continue
        value = match.group(1).strip()
        if value[:1] in ("'", '"') and value[:1] in value[1:]:  # quoted, perhaps with a comment after
            value = value[1 : value.index(value[0], 1)]
        else:
            value = value.split(" #", 1)[0].strip()
        found = value
    return found


def report_at(config_path: str) -> tuple[int, int] | None:
    """MISSEDCALL_REPORT_HOUR from the config file (default 09:00; empty: no daily report)."""
    from missedcall.resolve.settings import report_hour

    value = config_value(config_path, "MISSEDCALL_REPORT_HOUR")
    return report_hour({} if value is None else {"MISSEDCALL_REPORT_HOUR": value})


def render_unit(prefix: str, user: str, config_path: str = DEFAULT_CONFIG) -> str:
    """The systemd unit of ``missedcall-admin serve`` (docs/fastagi.md).

    It listens where MISSEDCALL_FASTAGI_LISTEN says (loopback by default). No
    NoNewPrivileges: postfix's sendmail needs its setgid postdrop to queue a mail.
    """
    for value in (prefix, user, config_path):
        if not value or any(ch in value for ch in "\n\r\"'\\ $%;"):
            raise ValueError(f"{value[:60]!r} cannot go into a unit file")
    return "\n".join(
        [
            "# Written by missedcall's install.sh --service; install.sh --uninstall removes it.",
            "# The dialplan falls back to agi-bin/missed.py whenever this service cannot be reached.",
            "[Unit]",
            "Description=missedcall FastAGI service: mails missed queue calls (missedcall-admin serve)",
            "After=network.target mariadb.service freepbx.service",
            "",
            "[Service]",
            "Type=simple",
            f"User={user}",
            f"Environment=MISSEDCALL_CONFIG={config_path}",
            f"ExecStart={prefix}/venv/bin/missedcall-admin serve",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "KillSignal=SIGTERM",
            "TimeoutStopSec=60",
            "Restart=on-failure",
            "RestartSec=2",
            "PrivateTmp=yes",
            "ProtectHome=yes",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


def env_value(path: str, key: str) -> str:
    """One key as install.sh needs it before any virtualenv exists: the environment wins, as it does for
    the product, then the file (config_value); "" when neither has it."""
    if key in os.environ:
        return os.environ[key]
    return config_value(path, key) or ""


def agi_url(config_path: str) -> str:
    """The ``agi://`` address the dialplan calls for the service configured in ``config_path``."""
    from missedcall.detect import listen

    where = listen.parse_listen(env_value(config_path, listen.KEY))
    wildcard = where.host in ("0.0.0.0", "::")  # noqa: S104 - not a bind: a wildcard bind is called locally
    host = "127.0.0.1" if wildcard else where.host
    return listen.Listen(host, where.port).url()


def source_hash(src: str) -> str:
    """sha256 over the files that make the installed package (paths and contents, sorted)."""
    digest = hashlib.sha256()
    names: list[str] = []
    for name in ("pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in"):
        if os.path.isfile(os.path.join(src, name)):
            names.append(name)
    for top, dirs, files in os.walk(os.path.join(src, "missedcall")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if not name.endswith((".pyc", ".pyo")):
                names.append(os.path.relpath(os.path.join(top, name), src))
    for name in sorted(names):
        digest.update(name.encode() + b"\0")
        with open(os.path.join(src, name), "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def drop_tables(*, describe_only: bool) -> str:
    """Drop every missedcall_* table of the configured database (needs the installed package's deps).

    Returns "<database>: <tables>" for the confirmation prompt and the report.
    """
    from missedcall.config import load_settings
    from missedcall.record.storage import Store

    settings = load_settings()
    with Store.open(settings.db, timeout=10.0, create=False) as store:
        tables = store.own_tables() if describe_only else store.drop_own_tables()
    return f"{settings.db.describe()}: {', '.join(tables) or 'no missedcall tables'}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m missedcall.admin.installer")
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("env", help="print the commented configuration file")
    sub = verbs.add_parser("state", help="print install.state from KEY=VALUE arguments")
    sub.add_argument("pairs", nargs="*", metavar="KEY=VALUE")
    sub = verbs.add_parser("cron", help="print the cron file")
    sub.add_argument("--prefix", required=True)
    sub.add_argument("--user", required=True)
    sub.add_argument("--data-dir", required=True)
    sub.add_argument("--config", default=DEFAULT_CONFIG)
    sub.add_argument("--read-config", help="where to read MISSEDCALL_REPORT_HOUR (install --root: the staged file)")
    sub = verbs.add_parser("unit", help="print the systemd unit of the FastAGI service")
    sub.add_argument("--prefix", required=True)
    sub.add_argument("--user", required=True)
    sub.add_argument("--config", default=DEFAULT_CONFIG)
    sub = verbs.add_parser("agi-url", help="print the agi:// address of the configured FastAGI service")
    sub.add_argument("--config", default=DEFAULT_CONFIG)
    sub = verbs.add_parser("source-hash", help="print the hash of a source folder")
    sub.add_argument("src")
    sub = verbs.add_parser("drop-tables", help="drop the missedcall tables of the configured database")
    sub.add_argument("--describe", action="store_true", help="only print which database that is")
    args = parser.parse_args(argv)
    try:
        if args.verb == "env":
            sys.stdout.write(render_env())
        elif args.verb == "state":
            values = dict(pair.split("=", 1) for pair in args.pairs)
            sys.stdout.write(render_state(values))
        elif args.verb == "cron":
            sys.stdout.write(
                render_cron(
                    args.prefix, args.user, args.data_dir, args.config, report_at(args.read_config or args.config)
                )
            )
        elif args.verb == "unit":
            sys.stdout.write(render_unit(args.prefix, args.user, args.config))
        elif args.verb == "agi-url":
            print(agi_url(args.config))
        elif args.verb == "source-hash":
            print(source_hash(args.src))
        else:
            print(drop_tables(describe_only=args.describe))
    except Exception as exc:
        print(f"install.sh: {args.verb}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
