"""Configuration as the product reads it: python-dotenv env files, and the bare
environment Asterisk gives agi-bin/missed.py."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.paths import MISSED_PY, SENDMAIL_BIN


def missed_argv(*args: str) -> list[str]:
    """argv for running agi-bin/missed.py with this interpreter, as AGI(missed.py,ARGS...)."""
    return [sys.executable, str(MISSED_PY), *args]


def dotenv_quote(value: str) -> str:
    # Single quotes: python-dotenv reads no escapes there but \\ and \', and a
    # newline may stand in them literally. (Nothing stops ${...} expansion in any
    # quoting: read such files with interpolate=False, as missedcall.config does.)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_env_file(directory: Path, filename: str = "missedcall.env", /, **keys: str) -> Path:
    """Write ``KEY='value'`` lines as python-dotenv reads them, mode 0640; return the path."""
    path = Path(directory) / filename
    lines = []
    for key, value in keys.items():
        if not key.isidentifier() or not key.isascii():
            raise ValueError(f"not an environment variable name: {key!r}")
        lines.append(f"{key}={dotenv_quote(str(value))}\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o640)  # whatever the umask
        handle.writelines(lines)
    return path


@dataclass
class AgiEnvironment:
    env: dict[str, str]
    config_file: Path
    config: dict[str, str]
    home: Path


def make_agi_env(
    tmp_path: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
    **config: str | None,
) -> AgiEnvironment:
    """The environment Asterisk would give agi-bin/missed.py, plus a config file.

    Hermetic defaults keep the script off the host (its own SQLite, spool and
    queue_log in ``tmp_path``, the sendmail stand-in, no FreePBX); a keyword
    overrides one, ``None`` removes it. ``extra_env`` goes to the real
    environment (which wins over the file).
    """
    base = tmp_path / "agi"
    for sub in ("home", "spool", "maildir"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    defaults: dict[str, str | None] = {
        "MISSEDCALL_DB_URL": f"sqlite:///{base}/missedcall.sqlite3",
        "MISSEDCALL_TRANSPORT": "sendmail",
        "MISSEDCALL_SENDMAIL": str(SENDMAIL_BIN),
        "MISSEDCALL_FROM": "asterisk@pbx.example.com",
        "MISSEDCALL_SPOOL_DIR": str(base / "spool"),
        "MISSEDCALL_QUEUE_LOG": str(base / "queue_log"),
        "MISSEDCALL_FREEPBX_CONF": str(base / "no-freepbx.conf"),
    }
    defaults.update(config)
    final = {key: value for key, value in defaults.items() if value is not None}
    config_file = write_env_file(base, "missedcall.env", **final)
    env = {
        # Asterisk runs scripts with a bare environment: no LANG, a short PATH.
        "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(base / "home"),
        "MISSEDCALL_CONFIG": str(config_file),
        "MISSEDCALL_TEST_MAILDIR": str(base / "maildir"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra_env or {})
    return AgiEnvironment(env=env, config_file=config_file, config=final, home=base / "home")

