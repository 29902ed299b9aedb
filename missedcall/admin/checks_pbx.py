"""doctor's checks of the PBX side: the AGI script, the dialplan (file and live), queue_log and cron."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from typing import TYPE_CHECKING

from missedcall import config
from missedcall.admin import dialplan, installer
from missedcall.admin.checks_access import FAIL, OK, WARN, Check, user_may
from missedcall.freepbx import ext_queues_h_line

if TYPE_CHECKING:
    from missedcall.admin.doctor import Doctor

#: The most doctor reads of any file: a setting pointing at /dev/zero must not eat the memory.
MAX_READ = 16 * 1024 * 1024
_ASTERISK_TIMEOUT = 10.0


def check_agi(doc: Doctor) -> Check:
    name = "agi"
    path = os.path.join(doc.state["agi_dir"], "missed.py")
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
    user = doc.for_user()
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
    return Check(OK, name, f"{path} is executable by {user.name} and runs {interpreter}{doc.user_note()}")


# -- dialplan ----------------------------------------------------------


def dialplan_kind(doc: Doctor) -> str:
    kind = doc.state.get("dialplan", "")
    if kind:
        return kind
    generated = os.path.join(doc.state["asterisk_etc"], "extensions_additional.conf")
    freepbx_conf = doc.settings.freepbx_conf if doc.settings else "/etc/freepbx.conf"
    if os.path.exists(freepbx_conf) and _has_ext_queues(generated):
        return "freepbx"
    return "plain"


def check_dialplan_file(doc: Doctor) -> Check:
    name = "dialplan file"
    kind = dialplan_kind(doc)
    etc = doc.state["asterisk_etc"]
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
            wanted = ext_queues_h_line(handle.read(MAX_READ))
    except OSError:
        wanted = None
    try:
        with open(override, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            text = handle.read(MAX_READ)
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


def asterisk(doc: Doctor) -> str | None:
    configured = doc.state.get("asterisk_bin", "")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin:/sbin"
    return shutil.which("asterisk", path=path)


def check_dialplan_live(doc: Doctor) -> Check:
    name = "dialplan live"
    binary = asterisk(doc)
    if binary is None:
        return Check(WARN, name, "no asterisk command found: cannot ask Asterisk", "run doctor on the PBX as root")
    kind = dialplan_kind(doc)
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


def check_queue_log(doc: Doctor) -> Check:
    name = "queue_log"
    path = doc.settings.queue_log if doc.settings else config.KEYS["MISSEDCALL_QUEUE_LOG"][0]
    if not os.path.exists(path):
        return Check(
            WARN,
            name,
            f"{path} does not exist yet (Asterisk writes it at the first queue event)",
            "if it stays absent: queue_log = yes in logger.conf, or point MISSEDCALL_QUEUE_LOG at it",
        )
    user = doc.for_user()
    if not os.access(path, os.R_OK) or not user_may(path, user, 4):
        return Check(
            FAIL,
            name,
            f"{path} is not readable by {user.name}: the sweeper cannot catch what the AGI misses",
            f"chown {user.name}: {path} (Asterisk, running as {user.name}, writes it)",
        )
    return Check(OK, name, f"{path} readable by {user.name}")


def check_cron(doc: Doctor) -> Check:
    name = "cron"
    path = doc.state["cron_file"]
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
    except FileNotFoundError:
        return Check(FAIL, name, f"{path} is missing: nothing runs sweep and retry", "sudo ./install.sh")
    except OSError as exc:
        return Check(FAIL, name, f"cannot read {path}: {exc.strerror}", "sudo ./install.sh")
    missing = [verb for verb in installer.CRON_VERBS if not any(f"missedcall-admin {verb}" in x for x in lines)]
    if missing:
        return Check(FAIL, name, f"{path} does not run missedcall-admin {' or '.join(missing)}", "sudo ./install.sh")
    admin = os.path.join(doc.state["prefix"], "venv", "bin", "missedcall-admin")
    if not os.access(admin, os.X_OK):
        return Check(FAIL, name, f"{path} runs {admin}, which is missing", "sudo ./install.sh")
    return Check(OK, name, f"{path} runs sweep and retry every minute as {doc.state['asterisk_user']}")


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
                if any("missed.py" in dialplan.code_part(line) for line in handle):
                    found.append(os.path.basename(path))
        except OSError:
            continue
    return found
