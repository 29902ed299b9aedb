"""install.sh, run for real against staged trees (--root): FreePBX 16 and 17, plain Asterisk, a hand-made hook.

Every test copies the package folder first, as an admin copies it to the PBX, so
that an "upgrade" is an edit of that copy. One test builds its virtualenv the way
a PBX does (``python3 -m venv`` with its own pip); the others set
MISSEDCALL_INSTALL_PIP so that the virtualenv is made without pip and filled by
this interpreter's pip, which saves ten seconds a run.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from missedcall.admin import dialplan, installer
from tests.agipeer import AgiPeer, make_headers
from tests.paths import INSTALL_FIXTURES

REPO = Path(__file__).resolve().parent.parent
FIXTURES = INSTALL_FIXTURES
HANDMADE = (FIXTURES / "extensions_override_freepbx.handmade.conf").read_bytes()
OVERRIDE_START = b"; extensions_override_freepbx.conf: written by FreePBX, edited by nobody\n"
GOSUB = "Gosub(macro-hangupcall,s,1())"
MACRO = "Macro(hangupcall,)"
# A user that exists on Debian and RHEL alike, to stand for "asterisk" where ownership is checked.
OWNER = "daemon"
INSTALL_TIMEOUT = 600


def block(h_app: str) -> bytes:
    """The block of docs/design.md §4, spelled out here (not rendered by the code under test)."""
    return (
        "; BEGIN missedcall\n"
        "; Written by missedcall's install.sh: re-run it after a FreePBX upgrade; install.sh --uninstall removes it.\n"
        "[ext-queues]\n"
        'exten => h,1,GotoIf($["${ABANDONED}"!="TRUE"]?done)\n'
        "exten => h,n,AGI(missed.py,${QUEUENUM})\n"
        f"exten => h,n(done),{h_app}\n"
        "; END missedcall\n"
    ).encode()


def copy_source(dest: Path) -> Path:
    """The folder an admin copies to the PBX."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    dest.mkdir(parents=True)
    for name in ("install.sh", "setup.cfg", "pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "missedcall", dest / "missedcall", ignore=ignore)
    shutil.copytree(REPO / "agi-bin", dest / "agi-bin", ignore=ignore)
    return dest


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return copy_source(tmp_path / "missedcall-src")


def stage(root: Path, kind: str, override: bytes | None = OVERRIDE_START) -> Path:
    """A PBX's files under root: 'freepbx16', 'freepbx17', 'freepbx-noqueues' or 'plain'."""
    etc = root / "etc" / "asterisk"
    etc.mkdir(parents=True)
    (root / "var" / "lib" / "asterisk" / "agi-bin").mkdir(parents=True)
    shutil.copy(FIXTURES / "asterisk.conf", etc / "asterisk.conf")
    (etc / "extensions.conf").write_text("[general]\n#include extensions_override_freepbx.conf\n")
    if kind == "plain":
        return root
    shutil.copy(FIXTURES / "freepbx.conf", root / "etc" / "freepbx.conf")
    if kind == "freepbx-noqueues":
        (etc / "extensions_additional.conf").write_text("[from-internal-additional]\nexten => h,1,Macro(hangupcall,)\n")
    else:
        shutil.copy(FIXTURES / f"extensions_additional.{kind}.conf", etc / "extensions_additional.conf")
    if override is not None:
        (etc / "extensions_override_freepbx.conf").write_bytes(override)
    return root


@functools.cache
def fast_pip() -> bool:
    """Whether this interpreter's pip can install into another environment (pip --python, pip 22.3+)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", sys.executable, "--version"], capture_output=True, timeout=120
    )
    return done.returncode == 0


def install(
    source: Path, root: Path, *args: str, fast: bool = True, user: str = OWNER, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISSEDCALL_")}
    if fast and fast_pip():
        env["MISSEDCALL_INSTALL_PIP"] = sys.executable
    argv = ["./install.sh", "--root", str(root), *args]
    if user and "--uninstall" not in args:
        argv += ["--asterisk-user", user]
    # From inside the copied folder, as the admin runs it (its missedcall/ must not stand in for the installed one).
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT, input=stdin, cwd=source
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"install.sh exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def snapshot(root: Path) -> dict[str, tuple[str, ...]]:
    """Every path under root: type, mode, owner, and content hash or link target."""
    found: dict[str, tuple[str, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                what = "link:" + os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                what = "dir"
            else:
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (what, oct(st.st_mode), str(st.st_uid), str(st.st_gid))
    return found


def owner_of(path: Path) -> tuple[str, str]:
    st = path.stat()
    import grp

    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


def can_chown() -> bool:
    return os.geteuid() == 0


# ---------------------------------------------------------------------------------- FreePBX 17, whole life


def test_freepbx17_install_rerun_upgrade_uninstall(source: Path, tmp_path: Path) -> None:
    root = stage(tmp_path / "root", "freepbx17")
    before_install = snapshot(root)
    host = [Path(p) for p in ("/opt/missedcall", "/etc/cron.d/missedcall", "/usr/local/bin/missedcall-admin")]
    host_before = [p.exists() or p.is_symlink() for p in host]

    # The first run builds the virtualenv as on a PBX: python3 -m venv with its own pip.
    out = ok(install(source, root, fast=False))
    assert "FreePBX" in out and "skipped under --root" in out

    venv = root / "opt" / "missedcall" / "venv"
    done = subprocess.run([str(venv / "bin" / "missedcall-admin"), "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "missedcall-admin" in done.stdout
    assert (venv / "bin" / "pip").exists()  # a real, self-contained virtualenv

    agi = root / "var" / "lib" / "asterisk" / "agi-bin" / "missed.py"
    original_agi = (REPO / "agi-bin" / "missed.py").read_text().split("\n", 1)[1]
    assert agi.read_text() == "#!/opt/missedcall/venv/bin/python -IS\n" + original_agi
    assert stat.S_IMODE(agi.stat().st_mode) == 0o755
    # Started as its #! line says (-IS: no site), the hook still finds the venv's packages: it judges the call.
    peer = AgiPeer(make_headers(uniqueid="1795659165.9", callerid="100", args=["600"]), {"ABANDONED": "FALSE"})
    hook = peer.run([str(venv / "bin" / "python"), "-IS", str(agi), "600"], timeout=30,
                    env={"PATH": "/usr/bin:/bin", "MISSEDCALL_CONFIG": str(tmp_path / "absent.env")})  # fmt: skip
    said = " ".join(c for c in hook.commands if c.startswith("VERBOSE"))
    assert hook.ok and "1795659165.9" in said and "not missed" in said.lower(), (hook, said)

    link = root / "usr" / "local" / "bin" / "missedcall-admin"
    assert os.readlink(link) == "/opt/missedcall/venv/bin/missedcall-admin"

    env_file = root / "etc" / "missedcall" / "missedcall.env"
    assert env_file.read_text() == installer.render_env()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
    assert stat.S_IMODE(env_file.parent.stat().st_mode) == 0o750
    if can_chown():
        assert owner_of(agi) == (OWNER, OWNER)
        assert owner_of(env_file) == ("root", OWNER)
        assert owner_of(root / "var" / "spool" / "missedcall") == (OWNER, OWNER)

    override = root / "etc" / "asterisk" / "extensions_override_freepbx.conf"
    assert override.read_bytes() == OVERRIDE_START + block(GOSUB)
    backups = list((root / "etc" / "missedcall" / "backups").iterdir())
    assert [b.read_bytes() for b in backups] == [OVERRIDE_START]

    cron = root / "etc" / "cron.d" / "missedcall"
    cron_lines = cron.read_text().splitlines()
    for verb in ("sweep", "retry"):
        assert (
            f"* * * * * {OWNER} flock -n /var/lib/missedcall/cron-{verb}.lock "
            f"/opt/missedcall/venv/bin/missedcall-admin {verb} 2>&1 >/dev/null | logger -t missedcall-{verb}"
        ) in cron_lines
    assert stat.S_IMODE(cron.stat().st_mode) == 0o644

    state = installer.read_state(str(root / "etc" / "missedcall" / "install.state"))
    assert state is not None
    assert (state["dialplan"], state["prefix"], state["asterisk_user"]) == ("freepbx", "/opt/missedcall", OWNER)

    # Nothing outside the stage: the host's /opt, /etc/cron.d and /usr/local/bin are as they were.
    assert [p.exists() or p.is_symlink() for p in host] == host_before

    # --dry-run on an installed box, for a re-run and for a purge: nothing changes.
    installed = snapshot(root)
    assert "already holds this code" in ok(install(source, root, "--dry-run"))
    assert snapshot(root) == installed
    dry = ok(install(source, root, "--uninstall", "--purge", "--yes", "--dry-run"))
    assert "would run: rm -rf" in dry and "dry run: nothing was changed" in dry
    assert snapshot(root) == installed

    # Run again: same code, so nothing at all changes (not even in the virtualenv).
    out = ok(install(source, root))
    assert "already holds this code" in out and "unchanged:" in out
    assert snapshot(root) == installed
    assert override.read_bytes().count(b"; BEGIN missedcall\n") == 1
    assert cron.read_text().count("missedcall-admin sweep") == 1

    # Upgrade: new code in the folder, an admin's edit in the configuration.
    (source / "missedcall" / "upgrade_marker.py").write_text("UPGRADED = True\n")
    env_file.write_text(env_file.read_text() + "MISSEDCALL_LANGUAGE=ru\n")
    out = ok(install(source, root))
    assert "installed missedcall" in out
    # cwd: python -c puts the current folder first on sys.path, and pytest runs in the repository.
    argv = [str(venv / "bin" / "python"), "-c", "import missedcall.upgrade_marker"]
    done = subprocess.run(argv, capture_output=True, cwd=tmp_path)
    assert done.returncode == 0
    assert env_file.read_text().endswith("MISSEDCALL_LANGUAGE=ru\n")
    assert "kept the existing" in out
    assert override.read_bytes() == OVERRIDE_START + block(GOSUB)

    # Uninstall: the override file byte for byte, code gone, configuration and data kept; the copies derived
    # from the configuration (the hook's settings cache, FreePBX's From address, this host's) go with the code.
    derived = [root / "etc" / "missedcall" / name for name in (".missedcall.env.parsed", "freepbx-from", "host-from")]
    for copy in derived:
        copy.write_text("derived\n")
    out = ok(install(source, root, "--uninstall"))
    assert not any(copy.exists() for copy in derived)
    assert override.read_bytes() == OVERRIDE_START
    for gone in (venv, agi, link, cron, root / "etc" / "missedcall" / "install.state"):
        assert not gone.exists() and not gone.is_symlink(), gone
    assert env_file.read_text().endswith("MISSEDCALL_LANGUAGE=ru\n")
    assert (root / "var" / "spool" / "missedcall").is_dir()
    ok(install(source, root, "--uninstall"))  # again: nothing left to do, no error

    # --purge: configuration, spool and data go too; the tables are never touched under --root.
    out = ok(install(source, root, "--uninstall", "--purge", "--yes"))
    assert "touches no database" in out
    for gone in ("etc/missedcall", "var/spool/missedcall", "var/lib/missedcall", "opt/missedcall"):
        assert not (root / gone).exists(), gone
    # What is left is what was there, plus parents that exist on any PBX (/opt, /usr/local/bin, ...).
    parents = ("opt", "usr", "usr/local", "usr/local/bin", "etc/cron.d", "var/spool")
    assert {k: v for k, v in snapshot(root).items() if k not in parents} == before_install


# ------------------------------------------------------------------------------------ --service (docs/fastagi.md)


def service_block(h_app: str, url: str = "agi://127.0.0.1:4574/missed") -> bytes:
    return (
        "; BEGIN missedcall\n"
        "; Written by missedcall's install.sh: re-run it after a FreePBX upgrade; install.sh --uninstall removes it.\n"
        "[ext-queues]\n"
        'exten => h,1,GotoIf($["${ABANDONED}"!="TRUE"]?done)\n'
        f"exten => h,n,AGI({url},${{QUEUENUM}})\n"
        'exten => h,n,GotoIf($["${AGISTATUS}"!="FAILURE"]?done)\n'
        "exten => h,n,AGI(missed.py,${QUEUENUM})\n"
        f"exten => h,n(done),{h_app}\n"
        "; END missedcall\n"
    ).encode()


def test_service_install_switch_back_and_uninstall(source: Path, tmp_path: Path) -> None:
    root = stage(tmp_path / "root", "freepbx17")
    out = ok(install(source, root, "--service"))
    assert "FastAGI service at agi://127.0.0.1:4574/missed" in out
    assert "systemctl daemon-reload && systemctl enable --now missedcall-fastagi" in out  # no systemd under --root
    unit = root / "etc" / "systemd" / "system" / "missedcall-fastagi.service"
    text = unit.read_text()
    for line in (
        f"User={OWNER}",
        "After=network.target mariadb.service freepbx.service",
        "Restart=on-failure",
        "ExecStart=/opt/missedcall/venv/bin/missedcall-admin serve",
        "Environment=MISSEDCALL_CONFIG=/etc/missedcall/missedcall.env",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WantedBy=multi-user.target",
    ):
        assert line in text.splitlines(), line
    assert "NoNewPrivileges" not in text  # postfix's sendmail is setgid postdrop
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    override = root / "etc" / "asterisk" / "extensions_override_freepbx.conf"
    assert override.read_bytes() == OVERRIDE_START + service_block(GOSUB)
    state = installer.read_state(str(root / "etc" / "missedcall" / "install.state"))
    assert state is not None and state["service"] == "agi://127.0.0.1:4574/missed"
    assert state["unit_file"] == "/etc/systemd/system/missedcall-fastagi.service"

    # Another address in the configuration: the block follows it on the next run.
    env_file = root / "etc" / "missedcall" / "missedcall.env"
    env_file.write_text(env_file.read_text() + "MISSEDCALL_FASTAGI_LISTEN='[::1]:4600'  # moved\n")
    ok(install(source, root, "--service"))
    assert override.read_bytes() == OVERRIDE_START + service_block(GOSUB, "agi://[::1]:4600/missed")

    # A bad address is refused before anything changes.
    env_file.write_text(env_file.read_text() + "MISSEDCALL_FASTAGI_LISTEN=nowhere\n")
    before = snapshot(root)
    bad = install(source, root, "--service")
    assert bad.returncode == 1 and "MISSEDCALL_FASTAGI_LISTEN" in bad.stderr
    assert snapshot(root) == before

    # Plain install.sh: back to the process hook alone, the unit goes.
    env_file.write_text(installer.render_env())
    ok(install(source, root))
    assert override.read_bytes() == OVERRIDE_START + block(GOSUB)
    assert not unit.exists()
    state = installer.read_state(str(root / "etc" / "missedcall" / "install.state"))
    assert state is not None and state["service"] == ""

    # --service again, then --uninstall removes both the block and the unit.
    ok(install(source, root, "--service"))
    assert unit.exists()
    ok(install(source, root, "--uninstall"))
    assert override.read_bytes() == OVERRIDE_START and not unit.exists()


def test_service_on_plain_asterisk_prints_the_fallback(source: Path, tmp_path: Path) -> None:
    root = stage(tmp_path / "root", "plain")
    out = ok(install(source, root, "--service"))
    assert "AGI(agi://127.0.0.1:4574/missed,${ARG1}) first" in out
    assert (root / "etc" / "systemd" / "system" / "missedcall-fastagi.service").exists()


# ------------------------------------------------------------------------------------ FreePBX 16, other paths


def test_freepbx16_repeats_macro_and_honours_other_paths(source: Path, tmp_path: Path) -> None:
    root = stage(tmp_path / "root", "freepbx16", override=b"")
    agi_dir = root / "srv" / "agi"
    agi_dir.mkdir(parents=True)
    out = ok(install(source, root, "--prefix", "/srv/mc", "--config-dir", "/srv/mc-etc", "--agi-dir", "/srv/agi"))
    override = root / "etc" / "asterisk" / "extensions_override_freepbx.conf"
    assert override.read_bytes() == block(MACRO)
    assert "Macro(hangupcall,)" in out
    agi = (agi_dir / "missed.py").read_text()
    assert agi.startswith(
        "#!/srv/mc/venv/bin/python -IS\n"
        "import os  # install.sh: this installation keeps its configuration in /srv/mc-etc\n"
        'os.environ.setdefault("MISSEDCALL_CONFIG", "/srv/mc-etc/missedcall.env")\n'
    )
    assert "MISSEDCALL_CONFIG=/srv/mc-etc/missedcall.env\n" in (root / "etc" / "cron.d" / "missedcall").read_text()
    assert (root / "srv" / "mc-etc" / "missedcall.env").exists()
    assert (root / "srv" / "mc" / "venv" / "bin" / "python").exists()
    assert os.readlink(root / "usr" / "local" / "bin" / "missedcall-admin") == "/srv/mc/venv/bin/missedcall-admin"
    # Uninstall finds the prefix and the agi-bin in install.state (only the config folder is needed).
    ok(install(source, root, "--uninstall", "--config-dir", "/srv/mc-etc"))
    assert override.read_bytes() == b""
    assert not (agi_dir / "missed.py").exists() and not (root / "srv" / "mc" / "venv").exists()
    assert not (root / "usr" / "local" / "bin" / "missedcall-admin").is_symlink()


# ------------------------------------------------------------------------------------------- plain Asterisk


def test_plain_asterisk_gets_the_snippet_and_no_dialplan_edit(source: Path, tmp_path: Path) -> None:
    root = stage(tmp_path / "root", "plain")
    etc = root / "etc" / "asterisk"
    before = {p.name: p.read_bytes() for p in etc.iterdir()}
    out = ok(install(source, root))
    assert dialplan.PLAIN_SNIPPET.splitlines()[1] in out
    assert "plain Asterisk" in out
    assert {p.name: p.read_bytes() for p in etc.iterdir()} == before  # not one byte of the dialplan
    state = installer.read_state(str(root / "etc" / "missedcall" / "install.state"))
    assert state is not None and state["dialplan"] == "plain"
    assert (root / "var" / "lib" / "asterisk" / "agi-bin" / "missed.py").exists()
    assert (root / "etc" / "cron.d" / "missedcall").exists()


# ----------------------------------------------------------------------------------------- hand-made hook


def test_handmade_hook_is_refused_before_anything_changes(source: Path, tmp_path: Path) -> None:
    root = stage(tmp_path / "root", "freepbx17", override=HANDMADE)
    before = snapshot(root)
    result = install(source, root)
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    assert "refusing" in errors[0] and "[ext-queues] h" in errors[0] and "--force" in errors[0]
    assert "line 7-9" in errors[0]
    assert "import them with 'missedcall-admin import-script /usr/local/bin/missed-call-mail.sh'" in errors[0]
    assert snapshot(root) == before


def test_force_takes_the_hook_over_and_uninstall_gives_it_back(source: Path, tmp_path: Path) -> None:
    # Odd files (no final newline, CRLF, stray bytes) round-trip too: see test_dialplan.py.
    original = HANDMADE
    root = stage(tmp_path / "root", "freepbx17", override=original)
    override = root / "etc" / "asterisk" / "extensions_override_freepbx.conf"
    ok(install(source, root, "--force"))
    text = override.read_bytes()
    assert text.endswith(block(GOSUB))
    assert b";missedcall; exten => h,1,GotoIf" in text and b"; BEGIN missedcall-saved\n" in text
    assert dialplan.parse(text.decode()).foreign == []
    backups = list((root / "etc" / "missedcall" / "backups").iterdir())
    assert [b.read_bytes() for b in backups] == [original]
    again = snapshot(root)
    ok(install(source, root))  # the hook is ours now: no --force needed, nothing changes
    assert snapshot(root) == again
    ok(install(source, root, "--uninstall"))
    assert override.read_bytes() == original


# ------------------------------------------------------------------------------------------------ dry run


@pytest.mark.parametrize("kind", ["freepbx17", "plain", "freepbx-noqueues"])
def test_dry_run_on_a_fresh_box_changes_nothing(source: Path, tmp_path: Path, kind: str) -> None:
    root = stage(tmp_path / "root", kind)
    before = snapshot(root)
    source_before = snapshot(source)
    out = ok(install(source, root, "--dry-run"))
    assert "would run:" in out and "would write" in out and "dry run: nothing was changed" in out
    assert snapshot(root) == before
    assert snapshot(source) == source_before  # not even bytecode in the admin's folder
    if kind == "freepbx17":
        assert "+exten => h,n,AGI(missed.py,${QUEUENUM})" in out
    if kind == "freepbx-noqueues":
        assert "no queues" in out


# --------------------------------------------------------------------------------------------- refusals


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder any user can enter (pytest's own are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="missedcall-install-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_refuses_without_root(shared_tmp: Path) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run install.sh as another user")
    source = copy_source(shared_tmp / "src")
    for path in [source, *source.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.suffix == ".sh" else 0o644)
    result = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(source / "install.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=shared_tmp,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "install.sh: run me as root: sudo ./install.sh (or stage into a folder with --root DIR)"
    ]


def fake_python(directory: Path, version: str, *, no_ensurepip: bool = False) -> Path:
    """A python3 that reports ``version`` and, optionally, lacks ensurepip (Debian without python3-venv)."""
    major, minor, micro = (int(x) for x in version.split("."))
    path = directory / f"python{major}.{minor}"
    real = sys.executable
    path.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f"  *version_info\\ \\<*) exit {1 if (major, minor) < (3, 9) else 0} ;;\n"
        f'  *version_info*) echo "{major}.{minor}.{micro}"; exit 0 ;;\n'
        + ('  *ensurepip*) echo "No module named ensurepip" >&2; exit 1 ;;\n' if no_ensurepip else "")
        + f'esac\nexec "{real}" "$@"\n'
    )
    path.chmod(0o755)
    return path


def test_refuses_old_python_naming_what_it_found(source: Path, tmp_path: Path) -> None:
    root = stage(tmp_path / "root", "freepbx17")
    python = fake_python(tmp_path, "3.6.8")
    result = install(source, root, "--python", str(python))
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "\n" not in message
    assert "Python 3.6.8" in message and str(python) in message and "3.9 or newer" in message
    assert "--python" in message and "make altinstall" in message  # SNG7: how to get one


def test_refuses_missing_venv_module_naming_the_package(source: Path, tmp_path: Path) -> None:
    root = stage(tmp_path / "root", "freepbx17")
    python = fake_python(tmp_path, "3.11.2", no_ensurepip=True)
    env_python = {k: v for k, v in os.environ.items() if not k.startswith("MISSEDCALL_")}
    result = subprocess.run(
        ["bash", str(source / "install.sh"), "--root", str(root), "--python", str(python)],
        capture_output=True,
        text=True,
        env=env_python,
        timeout=120,
    )
    assert result.returncode == 1
    assert "python3-venv" in result.stderr and "RHEL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("missing", "flag"),
    [("var/lib/asterisk/agi-bin", "--agi-dir"), ("etc/asterisk", "--asterisk-etc")],
)
def test_refuses_without_asterisk_folders(source: Path, tmp_path: Path, missing: str, flag: str) -> None:
    root = stage(tmp_path / "root", "freepbx17")
    shutil.rmtree(root / missing)
    result = install(source, root)
    assert result.returncode == 1
    assert flag in result.stderr and str(root / missing) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_refuses_to_replace_a_foreign_command(source: Path, tmp_path: Path) -> None:
    root = stage(tmp_path / "root", "freepbx17")
    (root / "usr" / "local" / "bin").mkdir(parents=True)
    (root / "usr" / "local" / "bin" / "missedcall-admin").write_text("#!/bin/sh\necho mine\n")
    result = install(source, root)
    assert result.returncode == 1 and "is not a link" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--purge"], "--purge goes with --uninstall"), (["--bogus"], "unknown option --bogus"), (["--prefix"], "needs")],
)
def test_usage_errors_exit_2(source: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(["bash", str(source / "install.sh"), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr


def test_missing_asterisk_user_skips_owner_changes_with_a_note(source: Path, tmp_path: Path) -> None:
    root = stage(tmp_path / "root", "freepbx17")
    out = ok(install(source, root, "--dry-run", user="no-such-user-missedcall"))
    assert "user no-such-user-missedcall does not exist here: owner changes are skipped" in out


def test_readme_shows_the_snippet_install_sh_prints() -> None:
    assert dialplan.PLAIN_SNIPPET in (REPO / "README.md").read_text()


# ------------------------------------------------------------------- the real thing, in a private mount namespace

OVERLAID = ("/etc", "/opt", "/usr/local", "/var/lib", "/var/spool", "/var/log")
# "asterisk -rx" as a running Asterisk answers it; "dialplan show" reflects the override file on disk.
FAKE_ASTERISK = """\
#!/bin/sh
echo "$*" >> /var/log/fake-asterisk.log
case "$2" in
    "core show version") echo "Asterisk 22.10.1 built by fake @ test" ;;
    "dialplan reload") echo "Dialplan reloaded." ;;
    "dialplan show h@ext-queues")
        echo "[ Context 'ext-queues' created by 'pbx_config' ]"
        if grep -q 'AGI(missed.py' /etc/asterisk/extensions_override_freepbx.conf; then
            echo "  'h' =>  1. GotoIf(...)  [extensions_override_freepbx.conf:4]"
            echo "          2. AGI(missed.py,\\${QUEUENUM})  [extensions_override_freepbx.conf:5]"
        else
            echo "  'h' =>  1. Gosub(macro-hangupcall,s,1())  [extensions_additional.conf:39]"
        fi ;;
esac
"""
NAMESPACE_SCRIPT = """\
set -eu
for dir in {dirs}; do
    name=$(printf %s "$dir" | tr / _)
    mkdir -p "$OVL/upper$name" "$OVL/work$name"
    mount -t overlay overlay -o "lowerdir=$dir,upperdir=$OVL/upper$name,workdir=$OVL/work$name" "$dir"
done
exec "$@"
"""


def in_namespace(overlay: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv as root where /etc, /opt, /usr/local, /var/{lib,spool,log} are the host's plus writes kept in overlay.

    The host's files are never written: every change lands in overlay/upper_*; the
    next call sees them again, like one box over several sessions.
    """
    script = NAMESPACE_SCRIPT.format(dirs=" ".join(OVERLAID))
    full_env = {**(env or os.environ), "OVL": str(overlay)}
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=INSTALL_TIMEOUT,
        stdin=subprocess.DEVNULL,  # no terminal, as under cron or ssh -T
    )


@pytest.fixture
def namespace(tmp_path: Path) -> Path:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    probe = in_namespace(overlay, "true")
    if probe.returncode != 0:
        pytest.skip(f"no overlay mounts in a private namespace here: {probe.stderr.strip()[:200]}")
    return overlay


def test_real_install_on_a_freepbx17_box_then_the_admin_commands_then_purge(
    namespace: Path, source: Path, tmp_path: Path, freepbx_database: object
) -> None:
    """Without --root: real root checks, user asterisk, tables in FreePBX's database, doctor at the end."""
    from tests.paths import SENDMAIL_BIN
    from tests.support.freepbx import set_freepbx_setting, write_freepbx_conf
    from tests.support.mariadb import MariaDBDatabase

    assert isinstance(freepbx_database, MariaDBDatabase)
    conf = write_freepbx_conf(tmp_path / "freepbx.conf", freepbx_database, host="127.0.0.1")
    set_freepbx_setting(freepbx_database, "AMPUSERMANEMAILFROM", "pbx-notify@example.com")
    maildir = tmp_path / "maildir"
    maildir.mkdir()
    fake_asterisk = tmp_path / "asterisk"
    fake_asterisk.write_text(FAKE_ASTERISK)
    env_file = "/etc/missedcall/missedcall.env"
    prepare = f"""\
set -eu
getent passwd asterisk >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin asterisk
mkdir -p /etc/asterisk /var/lib/asterisk/agi-bin /etc/missedcall /usr/local/sbin
cp {FIXTURES}/asterisk.conf /etc/asterisk/asterisk.conf
cp {FIXTURES}/extensions_additional.freepbx17.conf /etc/asterisk/extensions_additional.conf
printf '; override\\n' > /etc/asterisk/extensions_override_freepbx.conf
cp {conf} /etc/freepbx.conf
cp {SENDMAIL_BIN} /usr/local/sbin/sendmail
install -m 0755 {fake_asterisk} /usr/local/sbin/asterisk
chown -R asterisk:asterisk /etc/asterisk /var/lib/asterisk
printf 'MISSEDCALL_SENDMAIL=/usr/local/sbin/sendmail\\nMISSEDCALL_FROM=pbx@example.com\\n' > {env_file}
chmod 0640 {env_file}
"""
    done = in_namespace(namespace, "sh", "-c", prepare)
    assert done.returncode == 0, done.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISSEDCALL_")}
    if fast_pip():
        env["MISSEDCALL_INSTALL_PIP"] = sys.executable

    # 1. sudo ./install.sh
    done = in_namespace(namespace, "bash", str(source / "install.sh"), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "tables in mysql://" in out and "(created)" in out
    assert "+ /usr/local/sbin/asterisk -rx dialplan\\ reload" in out, out
    assert "live: Asterisk's h@ext-queues now runs AGI(missed.py" in out
    doctor_lines = [x.strip() for x in out.split("==> doctor", 1)[1].splitlines() if x.startswith("    ")]
    assert doctor_lines and not [x for x in doctor_lines if x.startswith("FAIL")], out
    assert any(x.startswith("WARN recipients:") for x in doctor_lines)
    assert freepbx_database.password not in out + done.stderr
    upper_etc = namespace / "upper_etc"
    assert (upper_etc / "asterisk" / "extensions_override_freepbx.conf").read_bytes() == b"; override\n" + block(GOSUB)
    assert (upper_etc / "missedcall" / "missedcall.env").read_text().startswith("MISSEDCALL_SENDMAIL=")  # kept
    assert (upper_etc / "cron.d" / "missedcall").exists()
    # FreePBX's own From address, copied by init where the hook reads it (MISSEDCALL_FROM still wins here).
    assert "From: pbx-notify@example.com (FreePBX's" in out
    copied = upper_etc / "missedcall" / "freepbx-from"
    assert copied.read_text() == "pbx-notify@example.com\n" and copied.stat().st_mode & 0o777 == 0o644
    assert os.readlink(namespace / "upper_usr_local" / "bin" / "missedcall-admin") == (
        "/opt/missedcall/venv/bin/missedcall-admin"
    )
    with freepbx_database.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES LIKE 'missedcall%'")
        assert {"missedcall_calls", "missedcall_recipients", "missedcall_state"} <= {r[0] for r in cur.fetchall()}

    # 2. the admin's next two commands, from PATH, as root would type them
    admin_env = {**env, "PATH": "/usr/local/bin:/usr/bin:/bin", "MISSEDCALL_TEST_MAILDIR": str(maildir)}
    done = in_namespace(namespace, "missedcall-admin", "recipients", "add", "600", "ops@example.com", env=admin_env)
    assert done.returncode == 0, done.stderr
    done = in_namespace(namespace, "missedcall-admin", "test", "600", env=admin_env)
    assert done.returncode == 0 and "sent to ops@example.com" in done.stdout, done.stdout + done.stderr
    assert len(list(maildir.glob("*.eml"))) == 1

    # 3. doctor as the troubleshooting section shows it
    done = in_namespace(namespace, "missedcall-admin", "doctor", env=admin_env)
    assert done.returncode == 0, done.stdout
    assert "OK   agi:" in done.stdout and "executable by asterisk" in done.stdout
    assert "OK   dialplan live: Asterisk's h@ext-queues runs AGI(missed.py)" in done.stdout

    # 4. --purge without a terminal to confirm on, and without --yes: refused before anything goes.
    done = in_namespace(namespace, "bash", str(source / "install.sh"), "--uninstall", "--purge", env=env)
    assert done.returncode == 1 and "add --yes" in done.stderr
    assert (upper_etc / "cron.d" / "missedcall").exists()

    # 5. sudo ./install.sh --uninstall --purge --yes
    done = in_namespace(namespace, "bash", str(source / "install.sh"), "--uninstall", "--purge", "--yes", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    with freepbx_database.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES LIKE 'missedcall%'")
        assert cur.fetchall() == ()
    assert (upper_etc / "asterisk" / "extensions_override_freepbx.conf").read_bytes() == b"; override\n"
    reloads = (namespace / "upper_var_log" / "fake-asterisk.log").read_text().count("-rx dialplan reload")
    assert reloads == 2  # after install, after uninstall
    done = in_namespace(namespace, "sh", "-c", "ls /opt/missedcall /etc/missedcall /etc/cron.d/missedcall 2>&1; true")
    assert done.stdout.count("No such file") == 3, done.stdout
