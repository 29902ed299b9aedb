"""``missedcall-admin doctor``: one OK / WARN / FAIL line per check, each failure with its fix.

Where things were installed comes from ``install.state`` beside the
configuration file (written by install.sh; ``--state`` names another), with
the documented defaults when there is none. Checks run as whoever calls doctor
(usually root) but judge file permissions for the Asterisk user, since the AGI
and the cron jobs run as that user.

No line ever shows a password: messages are built from ``describe()`` texts,
and every known secret is masked once more before printing.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from missedcall import config
from missedcall.admin import dialplan, installer
from missedcall.deliver import transport
from missedcall.freepbx import ext_queues_h_line, parse_amp_conf
from missedcall.record.storage import SCHEMA_VERSION, StorageError, Store

#: The most doctor reads of any file: a setting pointing at /dev/zero must not eat the memory.
_MAX_READ = 16 * 1024 * 1024

OK, WARN, FAIL = "OK", "WARN", "FAIL"
_ASTERISK_TIMEOUT = 10.0
_NET_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4} {self.name}: {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix else text


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gids: frozenset[int]


def find_user(name: str) -> User | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return User(name, entry.pw_uid, frozenset(os.getgrouplist(name, entry.pw_gid)))


def user_may(path: str, user: User, want: int) -> bool:
    """Whether ``user`` has ``want`` (4 read, 2 write, 1 execute) on ``path`` and can reach it."""
    try:
        parents: set[str] = set()
        # The folders on the way to the link and to what it points at must both be searchable.
        for start in {os.path.abspath(path), os.path.realpath(path)}:
            current = os.path.dirname(start)
            while current not in parents:
                parents.add(current)
                current = os.path.dirname(current)
        return all(_bits(p, user, 1) for p in parents) and _bits(path, user, want)
    except OSError:
        return False


def _bits(path: str, user: User, want: int) -> bool:
    st = os.stat(path)
    mode = st.st_mode
    if user.uid == 0:
        # root reads and writes anything; it executes what has any x bit (or a directory).
        return not want & 1 or stat.S_ISDIR(mode) or bool(mode & 0o111)
    if st.st_uid == user.uid:
        bits = (mode >> 6) & 7
    elif st.st_gid in user.gids:
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return bits & want == want


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


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
            self.check_database,
            self.check_recipients,
            self.check_mail,
            self.check_agi,
            self.check_dialplan_file,
            self.check_dialplan_live,
            self.check_queue_log,
            self.check_cron,
            self.check_delivery,
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

    def _user_note(self) -> str:
        return "" if self.user else f" (user {self.state['asterisk_user']} does not exist; judged for root)"

    def _for_user(self) -> User:
        return self.user or User("root", 0, frozenset({0}))

    # -- checks ------------------------------------------------------------

    def check_config(self) -> Check:
        path = self.config_path
        name = "config"
        try:
            self.settings = config.load_settings()
        except config.ConfigError as exc:
            return Check(FAIL, name, str(exc), f"edit {path} (every key is described in the README)")
        self.secrets |= {s for s in (self.settings.db.password, self.settings.smtp_password) if s}
        if not os.path.exists(path):
            return Check(WARN, name, f"{path} does not exist; built-in defaults apply", "sudo ./install.sh writes one")
        st = os.stat(path)
        user = self._for_user()
        if not user_may(path, user, 4):
            return Check(
                FAIL,
                name,
                f"{path} is not readable by {user.name}, who runs the AGI and the cron jobs",
                f"chown root:{self.state['asterisk_user']} {path} && chmod 0640 {path}",
            )
        if st.st_mode & 0o004:
            return Check(WARN, name, f"{path} is readable by every user and may hold passwords", f"chmod 0640 {path}")
        owner = f"{pwd.getpwuid(st.st_uid).pw_name if _has_uid(st.st_uid) else st.st_uid}:{group_name(st.st_gid)}"
        return Check(OK, name, f"{path} readable ({stat.S_IMODE(st.st_mode):04o} {owner}){self._user_note()}")

    def check_database(self) -> Check:
        name = "database"
        if self.settings is None:
            return Check(WARN, name, "not checked: the configuration is unusable")
        where = self.settings.db.describe()
        fix_conn = f"check MISSEDCALL_DB_URL in {self.config_path}" + (
            f" (empty: FreePBX's credentials from {self.settings.freepbx_conf})" if self.settings.is_freepbx else ""
        )
        try:
            self.store = Store.open(self.settings.db, timeout=_NET_TIMEOUT, create=False)
        except StorageError as exc:
            return Check(FAIL, name, str(exc), fix_conn)
        version = self.store.schema_version()
        if version is None or version != SCHEMA_VERSION:
            # The later checks read the tables: they say "not checked" rather than fail again.
            self.store.close()
            self.store = None
        if version is None:
            return Check(FAIL, name, f"{where} is reachable but has no missedcall tables", "missedcall-admin init")
        if version < SCHEMA_VERSION:
            return Check(
                FAIL,
                name,
                f"{where}: schema version {version}, this code needs {SCHEMA_VERSION}",
                "missedcall-admin init",
            )
        if version > SCHEMA_VERSION:
            return Check(
                FAIL,
                name,
                f"{where}: schema version {version} is newer than this code ({SCHEMA_VERSION})",
                "install the newer missedcall: sudo ./install.sh from its folder",
            )
        if self.settings.db.kind == "sqlite":
            user = self._for_user()
            path = self.settings.db.path
            for target in (path, os.path.dirname(path)):
                if not user_may(target, user, 2):
                    return Check(
                        FAIL,
                        name,
                        f"{target} is not writable by {user.name}, who records the calls",
                        f"chown -R {user.name}: {os.path.dirname(path)}",
                    )
        return Check(OK, name, f"{where} reachable, tables at schema version {version}")

    def check_recipients(self) -> Check:
        name = "recipients"
        if self.settings is None or self.store is None:
            return Check(WARN, name, "not checked: no database")
        try:
            rows = self.store.recipients()
            queues = self.store.freepbx_queues()
        except StorageError as exc:
            return Check(FAIL, name, str(exc), "missedcall-admin init")
        own = {row.queue for row in rows if row.queue != "*"}
        star = any(row.queue == "*" for row in rows)
        fallback = bool(self.settings.fallback_to)
        add = "missedcall-admin recipients add QUEUE you@example.com (or set MISSEDCALL_FALLBACK_TO)"
        if queues is None:
            if not rows and not fallback:
                return Check(WARN, name, "no recipients and no fallback: missed calls are recorded, not mailed", add)
            return Check(OK, name, f"{len(rows)} recipient row(s)" + (", fallback set" if fallback else ""))
        if not queues:
            return Check(WARN, name, "FreePBX has no queues yet", "create a queue in FreePBX, then: " + add)
        missing = [q for q in sorted(queues, key=lambda q: q.zfill(12)) if q not in own]
        if missing and not fallback and not star:
            listed = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            return Check(
                WARN,
                name,
                f"no recipients for queue(s) {listed}: their missed calls are recorded, not mailed",
                add.replace("QUEUE", missing[0]),
            )
        covered = len(queues) - len(missing)
        extra = f"; {len(missing)} use " + ("the fallback" if fallback else "the '*' rows") if missing else ""
        return Check(OK, name, f"{covered} of {len(queues)} FreePBX queue(s) have their own recipients{extra}")

    def check_mail(self) -> Check:
        name = "mail"
        settings = self.settings
        if settings is None:
            return Check(WARN, name, "not checked: the configuration is unusable")
        if settings.transport == "sendmail":
            path = settings.sendmail
            fix = "install a mail server (postfix), or set MISSEDCALL_TRANSPORT=smtp and MISSEDCALL_SMTP_HOST"
            if not os.path.isfile(path) or not os.access(path, os.X_OK):
                return Check(FAIL, name, f"sendmail {path} is missing or not executable", fix)
            user = self._for_user()
            if not user_may(path, user, 1):
                return Check(FAIL, name, f"sendmail {path} is not executable by {user.name}", f"chmod o+x {path}")
            return Check(OK, name, f"sendmail {path} is executable")
        return self._check_smtp(settings)

    def _check_smtp(self, settings: config.Settings) -> Check:
        import smtplib
        import ssl

        name = "mail"
        where = f"SMTP relay {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security})"
        timeout = min(settings.smtp_timeout, _NET_TIMEOUT)
        opened: list[smtplib.SMTP] = []
        try:
            transport.open_smtp(settings, timeout=timeout, opened=opened)
        except smtplib.SMTPAuthenticationError:
            return Check(
                FAIL, name, f"{where} refused the login of {settings.smtp_user}", "check MISSEDCALL_SMTP_USER/_PASSWORD"
            )
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
            return Check(FAIL, name, f"cannot use {where}: {reason}", f"check MISSEDCALL_SMTP_* in {self.config_path}")
        finally:
            for client in opened:
                try:
                    client.quit()
                except (smtplib.SMTPException, OSError):
                    client.close()
        login = f", logged in as {settings.smtp_user}" if settings.smtp_user else ""
        return Check(OK, name, f"{where} reachable{login}")

    def check_agi(self) -> Check:
        name = "agi"
        path = os.path.join(self.state["agi_dir"], "missed.py")
        fix = "sudo ./install.sh (from the missedcall folder)"
        try:
            with open(path, "rb") as handle:
                head = handle.read(4096)
        except FileNotFoundError:
            return Check(FAIL, name, f"{path} is not installed", fix)
        except OSError as exc:
            return Check(FAIL, name, f"cannot read {path}: {exc.strerror}", fix)
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace")
        if not first.startswith("#!") or b"missedcall" not in head:
            return Check(FAIL, name, f"{path} is not missedcall's AGI script", fix)
        interpreter = first[2:].strip().split()[0] if first[2:].strip() else ""
        user = self._for_user()
        if not user_may(path, user, 1 | 4):
            return Check(
                FAIL,
                name,
                f"{path} is not readable and executable by {user.name}",
                f"chown {user.name}: {path} && chmod 0755 {path}",
            )
        if not interpreter or not os.path.exists(interpreter) or not user_may(interpreter, user, 1):
            return Check(FAIL, name, f"{path} names interpreter {interpreter or '(none)'}, which is missing", fix)
        try:
            probe = subprocess.run(
                [interpreter, "-I", "-c", "import missedcall.detect.hook"],  # -I: not the folder doctor runs in
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Check(FAIL, name, f"cannot run {interpreter}: {exc}", fix)
        if probe.returncode != 0:
            said = probe.stderr.decode("utf-8", "replace").strip().splitlines()
            return Check(FAIL, name, f"{interpreter} cannot import missedcall: {said[-1][:120] if said else '?'}", fix)
        return Check(OK, name, f"{path} is executable by {user.name} and runs {interpreter}{self._user_note()}")

    # -- dialplan ----------------------------------------------------------

    def _dialplan_kind(self) -> str:
        kind = self.state.get("dialplan", "")
        if kind:
            return kind
        generated = os.path.join(self.state["asterisk_etc"], "extensions_additional.conf")
        freepbx_conf = self.settings.freepbx_conf if self.settings else "/etc/freepbx.conf"
        if os.path.exists(freepbx_conf) and _has_ext_queues(generated):
            return "freepbx"
        return "plain"

    def check_dialplan_file(self) -> Check:
        name = "dialplan file"
        kind = self._dialplan_kind()
        etc = self.state["asterisk_etc"]
        if kind not in ("freepbx", "pending"):
            found = _files_calling_missed(etc)
            if found:
                return Check(OK, name, f"AGI(missed.py) is called in {', '.join(found)}")
            why = "install.sh ran with --no-dialplan" if kind == "none" else "plain Asterisk"
            return Check(
                WARN,
                name,
                f"{why}: no AGI(missed.py,...) in {etc}/*.conf",
                "add the hangup handler shown in the README (Plain Asterisk), then: asterisk -rx 'dialplan reload'",
            )
        override = os.path.join(etc, "extensions_override_freepbx.conf")
        generated = os.path.join(etc, "extensions_additional.conf")
        try:
            with open(generated, encoding="utf-8", errors="replace") as handle:
                wanted = ext_queues_h_line(handle.read(_MAX_READ))
        except OSError:
            wanted = None
        try:
            with open(override, encoding="utf-8", errors="surrogateescape", newline="") as handle:
                text = handle.read(_MAX_READ)
            parsed = dialplan.parse(text)
            ours = dialplan.block_h_app(text)
        except FileNotFoundError:
            text, parsed, ours = "", None, None
        except (OSError, dialplan.DialplanError) as exc:
            return Check(FAIL, name, f"{override}: {getattr(exc, 'strerror', None) or exc}", "fix the file by hand")
        if ours is None:
            if wanted is None:
                return Check(
                    WARN,
                    name,
                    "FreePBX has no queues yet ([ext-queues] h missing from extensions_additional.conf)",
                    "create a queue, Apply Config, then: sudo ./install.sh",
                )
            return Check(FAIL, name, f"no missedcall block in {override}", "sudo ./install.sh")
        if wanted is not None and wanted != ours:
            return Check(
                FAIL,
                name,
                f"our block ends with {ours} but FreePBX's [ext-queues] h now calls {wanted}"
                " (after a FreePBX upgrade?): queue calls' hang-up processing is wrong",
                "sudo ./install.sh (it rewrites the block)",
            )
        if parsed is not None and parsed.foreign:
            return Check(
                WARN,
                name,
                f"{override} also has a hand-made [ext-queues] h ({dialplan.describe_foreign(parsed)})",
                "remove it, or: sudo ./install.sh --force (comments it out; uninstall restores it)",
            )
        return Check(OK, name, f"{override} holds our [ext-queues] h block (ends with {ours})")

    def _asterisk(self) -> str | None:
        configured = self.state.get("asterisk_bin", "")
        if configured:
            return configured if os.access(configured, os.X_OK) else None
        path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin:/sbin"
        return shutil.which("asterisk", path=path)

    def check_dialplan_live(self) -> Check:
        name = "dialplan live"
        binary = self._asterisk()
        if binary is None:
            return Check(WARN, name, "no asterisk command found: cannot ask Asterisk", "run doctor on the PBX as root")
        kind = self._dialplan_kind()
        command = "dialplan show h@ext-queues" if kind in ("freepbx", "pending") else "dialplan show"
        try:
            done = subprocess.run([binary, "-rx", command], capture_output=True, timeout=_ASTERISK_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Check(WARN, name, f"cannot run {binary} -rx: {exc.__class__.__name__}", "is Asterisk running?")
        said = done.stdout.decode("utf-8", "replace")
        if done.returncode != 0 or "Unable to connect" in said or not said.strip():
            return Check(
                WARN,
                name,
                "Asterisk is not running, or this user cannot reach its console",
                "start Asterisk, then: sudo missedcall-admin doctor",
            )
        if "missed.py" in said:
            where = "h@ext-queues" if command.endswith("ext-queues") else "the dialplan"
            return Check(OK, name, f"Asterisk's {where} runs AGI(missed.py)")
        if kind in ("freepbx", "pending"):
            if kind == "pending" or "There is no existence" in said:
                return Check(WARN, name, "Asterisk has no [ext-queues] h yet (no queues?)", "create a queue first")
            return Check(
                FAIL,
                name,
                "Asterisk's h@ext-queues does not run missed.py",
                "asterisk -rx 'dialplan reload'; extensions.conf must #include extensions_override_freepbx.conf",
            )
        return Check(WARN, name, "no AGI(missed.py) in Asterisk's dialplan", "add the README's hangup handler")

    # -- the rest ----------------------------------------------------------

    def check_queue_log(self) -> Check:
        name = "queue_log"
        path = self.settings.queue_log if self.settings else config.KEYS["MISSEDCALL_QUEUE_LOG"][0]
        if not os.path.exists(path):
            return Check(
                WARN,
                name,
                f"{path} does not exist yet (Asterisk writes it at the first queue event)",
                "if it stays absent: queue_log = yes in logger.conf, or point MISSEDCALL_QUEUE_LOG at it",
            )
        user = self._for_user()
        if not os.access(path, os.R_OK) or not user_may(path, user, 4):
            return Check(
                FAIL,
                name,
                f"{path} is not readable by {user.name}: the sweeper cannot catch what the AGI misses",
                f"chown {user.name}: {path} (Asterisk, running as {user.name}, writes it)",
            )
        return Check(OK, name, f"{path} readable by {user.name}")

    def check_delivery(self) -> Check:
        """Failed calls, calls overdue for retry, and the spool (missedcall.deliver.retry.health)."""
        name = "delivery"
        if self.settings is None or self.store is None:
            return Check(WARN, name, "not checked: no database")
        from missedcall.deliver import retry

        spool_dir = self.settings.spool_dir
        user = self._for_user()
        if not os.path.isdir(spool_dir) or not user_may(spool_dir, user, 2 | 1):
            return Check(
                FAIL,
                name,
                f"spool {spool_dir} is missing or not writable by {user.name}: calls are lost while the database"
                " is down",
                f"install -d -m 0750 -o {user.name} -g {user.name} {spool_dir}",
            )
        status, detail, fix = retry.health(self.store, self.settings)
        return Check(status, name, detail, fix)

    def check_cron(self) -> Check:
        name = "cron"
        path = self.state["cron_file"]
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
        except FileNotFoundError:
            return Check(FAIL, name, f"{path} is missing: nothing runs sweep and retry", "sudo ./install.sh")
        except OSError as exc:
            return Check(FAIL, name, f"cannot read {path}: {exc.strerror}", "sudo ./install.sh")
        missing = [verb for verb in installer.CRON_VERBS if not any(f"missedcall-admin {verb}" in x for x in lines)]
        if missing:
            return Check(
                FAIL, name, f"{path} does not run missedcall-admin {' or '.join(missing)}", "sudo ./install.sh"
            )
        admin = os.path.join(self.state["prefix"], "venv", "bin", "missedcall-admin")
        if not os.access(admin, os.X_OK):
            return Check(FAIL, name, f"{path} runs {admin}, which is missing", "sudo ./install.sh")
        return Check(OK, name, f"{path} runs sweep and retry every minute as {self.state['asterisk_user']}")


def _has_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _has_ext_queues(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return any(re.match(r"\s*\[ext-queues\]", line) for line in handle)
    except OSError:
        return False


def _files_calling_missed(etc: str) -> list[str]:
    found = []
    for path in sorted(glob.glob(os.path.join(etc, "*.conf"))):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                if any("missed.py" in dialplan._code(line) for line in handle):
                    found.append(os.path.basename(path))
        except OSError:
            continue
    return found


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
    url = values.get("MISSEDCALL_DB_URL", "")
    try:
        password = urlsplit(url).password if "://" in url else None
    except ValueError:
        password = None
    if password:
        found |= {password, unquote(password)}
    conf = values.get("MISSEDCALL_FREEPBX_CONF") or config.KEYS["MISSEDCALL_FREEPBX_CONF"][0]
    for path in (conf, "/etc/amportal.conf"):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                secret = parse_amp_conf(handle.read(_MAX_READ)).get("AMPDBPASS", "")
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
