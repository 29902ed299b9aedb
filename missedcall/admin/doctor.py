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
from urllib.parse import unquote

from missedcall import config
from missedcall.admin import checks_db, checks_mail, checks_pbx, installer
from missedcall.admin.checks_access import FAIL, OK, WARN, Check, User, find_user, group_name, has_uid, user_may
from missedcall.freepbx import parse_amp_conf
from missedcall.record.storage import Store

__all__ = ["FAIL", "OK", "WARN", "Check", "Doctor", "run"]


class Doctor:
    def __init__(self, state_file: str | None = None) -> None:
        self.config_path = os.environ.get("MISSEDCALL_CONFIG", "") or config.DEFAULT_CONFIG
        self.state_file = state_file or installer.state_path(self.config_path)
        found = installer.read_state(self.state_file)
        self.installed = found is not None
        self.state = found or dict(installer.STATE_DEFAULTS)
        self.settings: config.Settings | None = None
        self.store: Store | None = None
        self.user = find_user(self.state["asterisk_user"])
        self.secrets = _raw_secrets(self.config_path)

    # -- running -----------------------------------------------------------

    def run(self) -> list[Check]:
        steps = (
            self.check_config,
            lambda: checks_db.check_database(self),
            lambda: checks_db.check_recipients(self),
            lambda: checks_mail.check_mail(self),
            lambda: checks_pbx.check_agi(self),
            lambda: checks_pbx.check_dialplan_file(self),
            lambda: checks_pbx.check_dialplan_live(self),
            lambda: checks_pbx.check_queue_log(self),
            lambda: checks_pbx.check_cron(self),
            lambda: checks_db.check_delivery(self),
        )
        results: list[Check] = []
        try:
            for step in steps:
                results.append(step())
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

    def check_config(self) -> Check:
        path = self.config_path
        name = "config"
        try:
            self.settings = config.load_settings(named_must_exist=True)
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
    userinfo = re.match(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?/*(.*)@", values.get("MISSEDCALL_DB_URL", ""), re.DOTALL)
    password = userinfo[1].partition(":")[2] if userinfo else ""
    if password:
        found |= {password, unquote(password)}
    conf = values.get("MISSEDCALL_FREEPBX_CONF") or config.KEYS["MISSEDCALL_FREEPBX_CONF"][0]
    for path in (conf, "/etc/amportal.conf"):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                secret = parse_amp_conf(handle.read(checks_pbx.MAX_READ)).get("AMPDBPASS", "")
        except OSError:
            continue
        if secret:
            found.add(secret)
    return {s for s in found if s}


def run(state_file: str | None = None) -> int:
    """Print one line per check; 1 when any check FAILs."""
    doctor = Doctor(state_file)
    results = doctor.run()
    for check in results:
        print(doctor.redact(check.line()), flush=True)
    return 1 if any(c.status == FAIL for c in results) else 0
