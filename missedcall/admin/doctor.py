"""``missedcall-admin doctor``: one OK / WARN / FAIL line per check, each failure with its fix.

Where things were installed comes from ``install.state`` beside the
configuration file (written by install.sh; ``--state`` names another), with
the default layout when there is none. Checks run as whoever calls doctor
(usually root) but judge file permissions for the Asterisk user, since the AGI
and the cron jobs run as that user.

No line ever shows a password: messages are built from ``describe()`` texts,
and every known secret is masked once more before printing.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
from collections.abc import Callable
from urllib.parse import unquote

from missedcall import config
from missedcall.admin import (
    checks_chat,
    checks_db,
    checks_fastagi,
    checks_hours,
    checks_mail,
    checks_pbx,
    checks_resolve,
    installer,
    sender,
)
from missedcall.admin.checks_access import FAIL, OK, WARN, Check, User, find_user, group_name, has_uid, user_may
from missedcall.config import shown
from missedcall.freepbx import parse_amp_conf
from missedcall.record.storage import Store

__all__ = ["FAIL", "OK", "WARN", "Check", "Doctor", "run"]

#: install.sh writes a dozen short lines.
_STATE_MAX = 64 * 1024


class Doctor:
    def __init__(self, state_file: str | None = None) -> None:
        self.config_path = os.environ.get("MISSEDCALL_CONFIG", "") or config.DEFAULT_CONFIG
        self.state_file = state_file or installer.state_path(self.config_path)
        self.state_problem = _state_problem(self.state_file)
        found = None if self.state_problem else installer.read_state(self.state_file)
        self.installed = found is not None
        self.state = found or dict(installer.STATE_DEFAULTS)
        self.settings: config.Settings | None = None
        self.store: Store | None = None
        self.user = find_user(self.state["asterisk_user"])
        self.secrets = _raw_secrets(self.config_path)

    # -- running -----------------------------------------------------------

    def run(self) -> list[Check]:
        steps: tuple[Callable[[], Check | None], ...] = (
            self.check_state_file,
            self.check_config,
            self.check_config_keys,
            lambda: checks_db.check_database(self),
            lambda: checks_db.check_recipients(self),
            lambda: checks_hours.check_hours(self),
            lambda: checks_mail.check_mail(self),
            lambda: sender.check_from(self),
            lambda: checks_chat.check_chat(self),
            lambda: checks_pbx.check_agi(self),
            lambda: checks_pbx.check_dialplan_file(self),
            lambda: checks_pbx.check_dialplan_live(self),
            lambda: checks_pbx.check_queue_log(self),
            lambda: checks_pbx.check_cron(self),
            lambda: checks_fastagi.check_fastagi(self),
            lambda: checks_db.check_delivery(self),
            lambda: checks_resolve.check_cdr(self),
        )
        results: list[Check] = []
        try:
            for step in steps:
                result = step()
                if result is not None:
                    results.append(result)
        finally:
            if self.store is not None:
                self.store.close()
        return results

    def redact(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def user_note(self) -> str:
        return "" if self.user else f" (user {self.state['asterisk_user']} does not exist; judged for root)"

    def for_user(self) -> User:
        return self.user or User("root", 0, frozenset({0}))

    # -- checks ------------------------------------------------------------

    def check_state_file(self) -> Check | None:
        """Only when install.state cannot be used (the others then judge the default layout)."""
        if not self.state_problem:
            return None
        return Check(
            FAIL,
            "install state",
            f"{shown(self.state_file)} {self.state_problem}; the default layout is assumed",
            "sudo ./install.sh writes it again (or name the right file with --state)",
        )

    def check_config_keys(self) -> Check | None:
        """A MISSEDCALL_* key that means nothing is usually a typo of one that does."""
        if self.settings is None or not self.settings.unknown_keys:
            return None
        import difflib

        key = self.settings.unknown_keys[0]
        # Compared without the common prefix, which would make every key look alike.
        prefix = "MISSEDCALL_"
        names = [k.removeprefix(prefix) for k in config.KEYS]
        near = difflib.get_close_matches(key.removeprefix(prefix), names, n=1, cutoff=0.6)
        guess = f"did you mean {prefix}{near[0]}?" if near else "every key is listed in the README"
        more = f" (and {len(self.settings.unknown_keys) - 1} more)" if len(self.settings.unknown_keys) > 1 else ""
        return Check(
            WARN, "config keys", f"unknown key {shown(key, 60)}{more} is ignored: {guess}", f"edit {self.config_path}"
        )

    def check_config(self) -> Check:
        path = self.config_path
        name = "config"
        try:
            self.settings = config.load_settings(strict=True)
        except config.ConfigError as exc:
            if not os.path.lexists(path):
                fix = "point --config or MISSEDCALL_CONFIG at an existing file"
                fix += f" (install.sh writes {config.DEFAULT_CONFIG})"
                return Check(FAIL, name, str(exc), fix)
            return Check(FAIL, name, str(exc), f"edit {path} (every key is described in the README)")
        self.secrets |= {s for s in (self.settings.db.password, self.settings.smtp_password) if s}
        if not os.path.exists(path):
            return Check(WARN, name, f"{path} does not exist; built-in defaults apply", "sudo ./install.sh writes one")
        st = os.stat(path)
        user = self.for_user()
        if not user_may(path, user, 4):
            return Check(
                FAIL,
                name,
                f"{path} is not readable by {user.name}, who runs the AGI and the cron jobs",
                f"chown root:{self.state['asterisk_user']} {path} && chmod 0640 {path}",
            )
        if st.st_mode & 0o004:
            return Check(WARN, name, f"{path} is readable by every user and may hold passwords", f"chmod 0640 {path}")
        owner = f"{pwd.getpwuid(st.st_uid).pw_name if has_uid(st.st_uid) else st.st_uid}:{group_name(st.st_gid)}"
        return Check(OK, name, f"{path} readable ({stat.S_IMODE(st.st_mode):04o} {owner}){self.user_note()}")


def _raw_secrets(config_path: str) -> set[str]:
    """Passwords as written in the config file and FreePBX's, even when they do not parse."""
    found: set[str] = set()
    values: dict[str, str] = {}
    try:
        values.update(config.read_env_file(config_path))
    except config.ConfigError:
        pass
    values.update({k: v for k, v in os.environ.items() if k.startswith("MISSEDCALL_")})
    if values.get("MISSEDCALL_SMTP_PASSWORD"):
        found.add(values["MISSEDCALL_SMTP_PASSWORD"])
    # Whatever stands between the scheme and the last "@", even in a URL that does not parse
    # (a missing slash, a bracket): its password part is a secret.
    for key in ("MISSEDCALL_DB_URL", "MISSEDCALL_CDR_URL"):
        userinfo = re.match(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?/*(.*)@", values.get(key, ""), re.DOTALL)
        password = userinfo[1].partition(":")[2] if userinfo else ""
        if password:
            found |= {password, unquote(password)}
    conf = values.get("MISSEDCALL_FREEPBX_CONF") or config.KEYS["MISSEDCALL_FREEPBX_CONF"][0]
    for path in (conf, "/etc/amportal.conf"):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                amp = parse_amp_conf(handle.read(checks_pbx.MAX_READ))
        except OSError:
            continue
        found |= {amp.get("AMPDBPASS", ""), amp.get("CDRDBPASS", "")}
    return {s for s in found if s}


def _state_problem(path: str) -> str:
    """Why install.state cannot be read ("" when it can, or when there is none): bounded, UTF-8, a file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "is a directory" if stat.S_ISDIR(st.st_mode) else "is not a regular file"
    if st.st_size > _STATE_MAX:
        return f"is larger than {_STATE_MAX // 1024} KB, not install.sh's record"
    try:
        with open(path, "rb") as handle:
            handle.read(_STATE_MAX + 1).decode("utf-8")
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    except UnicodeDecodeError:
        return "is not UTF-8 text"
    return ""


def run(state_file: str | None = None, *, as_json: bool = False) -> int:
    """Print one line per check (or, ``as_json``, one object per check); 1 when any check FAILs."""
    doctor = Doctor(state_file)
    results = doctor.run()
    if as_json:
        import json

        shown = [
            {"status": c.status, "check": c.name, "detail": doctor.redact(c.detail), "fix": doctor.redact(c.fix)}
            for c in results
        ]
        print(json.dumps(shown, ensure_ascii=False, indent=2), flush=True)
    else:
        for check in results:
            print(doctor.redact(check.line()), flush=True)
    return 1 if any(c.status == FAIL for c in results) else 0
