"""What `python -m build` ships: an sdist that is the whole project, a wheel that is a whole install.

The sdist must carry what it takes to install and test (install.sh, agi-bin/,
the tests with their recorded fixtures, the benches, the docs, README, LICENSE);
the wheel carries the package and, as package data, the AGI hook script, which
its ``missedcall-agi`` command prints or installs with a ``#!`` line naming the
virtualenv's Python. Both are built offline (``--no-isolation``: the test extras
bring setuptools and build) from a copy of this checkout.
"""

from __future__ import annotations

import email.parser
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from missedcall import __version__
from missedcall.admin import agiscript
from tests.paths import REPO_ROOT

REPO = REPO_ROOT
HOOK = REPO / "agi-bin" / "missed.py"
PACKAGED_HOOK = REPO / "missedcall" / "admin" / "agi-bin" / "missed.py"
NAME = f"missedcall-{__version__}"
#: What an sdist must hold to install and test with nothing else (paths inside its top folder).
SDIST_MUST_HAVE = (
    "README.md",
    "LICENSE",
    "pyproject.toml",
    "MANIFEST.in",
    "install.sh",
    "agi-bin/missed.py",
    "docs/design.md",
    "bench/agi_bench.py",
    "bench/sweep_bench.py",
    "tests/run",
    "tests/paths.py",
    "tests/agipeer/peer.py",
    "tests/conftest.py",
    "tests/bin/sendmail",
    "tests/fixtures/README.md",
    "tests/fixtures/asterisk22-agi/4600-h.json",
    "tests/fixtures/queue_log/freepbx17-shaped.queue_log",
    "tests/e2e/asterisk-etc/queues.conf",
    "missedcall/admin/agi-bin/missed.py",
    "missedcall/deliver/templates/en/body.txt",
)
#: Tracked files an sdist may leave out: CI wiring and git's own.
SDIST_MAY_OMIT = (".gitignore", ".ci/")
#: Executables that must stay executable in the sdist.
SDIST_EXECUTABLE = ("install.sh", "tests/bin/sendmail", "agi-bin/missed.py")


def _without_shebang(script: bytes) -> bytes:
    assert script.startswith(b"#!")
    return script.split(b"\n", 1)[1]


# --- the hook script: one file, two places ---------------------------------------------------------------


def test_packaged_hook_is_the_agi_bin_hook_byte_for_byte() -> None:
    """install.sh copies agi-bin/missed.py, the wheel ships missedcall/admin/agi-bin/missed.py: they cannot drift."""
    assert PACKAGED_HOOK.read_bytes() == HOOK.read_bytes(), (
        "agi-bin/missed.py and missedcall/admin/agi-bin/missed.py differ: edit one, copy it over the other"
    )
    assert agiscript.packaged_script() == HOOK.read_bytes()


def test_render_names_the_interpreter_and_keeps_the_rest() -> None:
    rendered = agiscript.render(HOOK.read_bytes(), "/opt/missedcall/venv/bin/python")
    assert rendered.split(b"\n", 1)[0] == b"#!/opt/missedcall/venv/bin/python -IS"
    assert _without_shebang(rendered) == _without_shebang(HOOK.read_bytes())


@pytest.mark.parametrize(
    "interpreter", ["python3", "bin/python", "/opt/my venv/bin/python", "/opt/x\n/bin/python", "/opt/\x00", ""]
)
def test_render_refuses_an_interpreter_no_shebang_can_name(interpreter: str) -> None:
    with pytest.raises(agiscript.AgiScriptError) as caught:
        agiscript.render(HOOK.read_bytes(), interpreter)
    message = str(caught.value)
    assert "\n" not in message and "\x00" not in message and "absolute path without blanks" in message


def test_install_writes_refuses_and_forces(tmp_path: Path) -> None:
    content = agiscript.render(HOOK.read_bytes(), "/usr/bin/python3")
    said = agiscript.install(str(tmp_path), content)
    target = tmp_path / "missed.py"
    assert said.startswith("installed ") and target.read_bytes() == content
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert "unchanged" in agiscript.install(str(tmp_path), content)

    target.write_bytes(b"#!/bin/sh\necho someone else's hook\n")
    with pytest.raises(agiscript.AgiScriptError, match="differs from this hook: pass --force"):
        agiscript.install(str(tmp_path), content)
    assert target.read_bytes() == b"#!/bin/sh\necho someone else's hook\n"  # refused means untouched
    assert agiscript.install(str(tmp_path), content, force=True).startswith("replaced ")
    assert target.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["missed.py"]  # no temporary file left behind


def test_install_refuses_what_it_cannot_do_in_one_line(tmp_path: Path) -> None:
    content = agiscript.render(HOOK.read_bytes(), "/usr/bin/python3")
    with pytest.raises(agiscript.AgiScriptError, match="is not a folder"):
        agiscript.install(str(tmp_path / "absent"), content)
    (tmp_path / "link").mkdir()
    (tmp_path / "elsewhere").write_bytes(content)
    (tmp_path / "link" / "missed.py").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(agiscript.AgiScriptError, match="not a plain file"):
        agiscript.install(str(tmp_path / "link"), content, force=True)
    hostile = tmp_path / "bad\nname"
    with pytest.raises(agiscript.AgiScriptError) as caught:
        agiscript.install(str(hostile), content)
    assert "\n" not in str(caught.value)


# --- the artefacts --------------------------------------------------------------------------------------


def _copy_checkout(dest: Path) -> Path:
    """This checkout without what a build must not see or need (venv, caches, earlier builds)."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", ".ruff_cache", "build", "dist",
        "*.egg-info",
    )  # fmt: skip
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(sdist, wheel) built by `python -m build --sdist --wheel --no-isolation` from a copy of this checkout."""
    pytest.importorskip("build", reason="the test extras bring build: pip install -e '.[test]'")
    work = tmp_path_factory.mktemp("build")
    source = _copy_checkout(work / "src")
    out = work / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert [p.name for p in sdists] == [f"{NAME}.tar.gz"] and [p.name for p in wheels] == [
        f"{NAME}-py3-none-any.whl"
    ]
    yield sdists[0], wheels[0]


def _sdist_members(sdist: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(sdist) as archive:
        members = {m.name: m for m in archive.getmembers() if m.isfile()}
    assert all(name.startswith(f"{NAME}/") for name in members)
    return {name[len(NAME) + 1 :]: info for name, info in members.items()}


def test_sdist_holds_everything_to_install_and_test(built: tuple[Path, Path]) -> None:
    members = _sdist_members(built[0])
    missing = [name for name in SDIST_MUST_HAVE if name not in members]
    assert missing == []
    for name in SDIST_EXECUTABLE:
        assert members[name].mode & 0o111, f"{name} lost its executable bit in the sdist"
    # Every recording the tests replay, and every test module.
    for folder in ("tests/fixtures", "tests/e2e/asterisk-etc", "tests/syslogtap"):
        on_disk = {p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*") if p.is_file()}
        on_disk = {n for n in on_disk if "__pycache__" not in n and not n.endswith(".pyc")}
        assert on_disk and on_disk <= set(members), sorted(on_disk - set(members))[:10]
    assert {p.relative_to(REPO).as_posix() for p in (REPO / "tests").glob("test_*.py")} <= set(members)


def test_sdist_holds_every_tracked_file(built: tuple[Path, Path]) -> None:
    """Whatever git tracks ships (but CI wiring): nobody has to guess what a new file needs."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files to compare with")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, timeout=60, check=True
    ).stdout.decode().split("\0")
    tracked = {name for name in listed if name and (REPO / name).is_file()}
    members = set(_sdist_members(built[0]))
    left_out = sorted(n for n in tracked - members if not n.startswith(SDIST_MAY_OMIT))
    assert left_out == []


def test_sdist_holds_no_venv_cache_or_bytecode(built: tuple[Path, Path]) -> None:
    members = _sdist_members(built[0])
    junk = [
        n
        for n in members
        if n.startswith((".venv/", ".git/", "build/", "dist/"))
        or any(part in {"__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache"} for part in n.split("/"))
        or n.endswith((".pyc", ".pyo"))
    ]
    assert junk == []


def test_wheel_is_the_package_with_its_hook_and_metadata(built: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(built[1]) as wheel:
        names = set(wheel.namelist())
        hook = wheel.read("missedcall/admin/agi-bin/missed.py")
        metadata = email.parser.Parser().parsestr(wheel.read(f"{NAME}.dist-info/METADATA").decode())
        entry_points = wheel.read(f"{NAME}.dist-info/entry_points.txt").decode()
        license_text = wheel.read(f"{NAME}.dist-info/licenses/LICENSE").decode()
    package = {p.relative_to(REPO).as_posix() for p in (REPO / "missedcall").rglob("*.py")}
    package = {n for n in package if "__pycache__" not in n}
    assert package <= names, sorted(package - names)
    for language in ("en", "ru"):
        assert {f"missedcall/deliver/templates/{language}/{n}.txt" for n in ("subject", "body")} <= names
    assert hook == HOOK.read_bytes()
    # Test equipment and the project around the package stay out of the wheel.
    assert not [n for n in names if n.startswith(("tests/", "bench/", "docs/", "agi-bin/"))]
    assert not [n for n in names if n.endswith(".pyc") or "agipeer" in n]

    assert metadata["Name"] == "missedcall" and metadata["Version"] == __version__
    assert metadata["Requires-Python"] == ">=3.9"
    assert metadata["License-Expression"] == "MIT" and "MIT License" in license_text
    classifiers = set(metadata.get_all("Classifier") or [])
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in range(9, 15)} <= classifiers
    requires = metadata.get_all("Requires-Dist") or []
    assert {r.split(";")[0].split("<")[0].split(">")[0] for r in requires if "extra ==" not in r} == {
        "PyMySQL",
        "python-dotenv",
        "phonenumberslite",
    }
    assert "missedcall-admin = missedcall.admin.cli:main" in entry_points
    assert "missedcall-agi = missedcall.admin.agiscript:main" in entry_points


def test_wheel_installed_alone_prints_and_installs_the_hook(built: tuple[Path, Path], tmp_path: Path) -> None:
    """A fresh virtualenv with just the wheel: missedcall-agi gives the very hook install.sh would, for this venv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
         str(built[1])],
        check=True,
        timeout=300,
    )  # fmt: skip
    command = venv / "bin" / "missedcall-agi"
    assert command.is_file() and (venv / "bin" / "missedcall-admin").is_file()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}

    printed = subprocess.run([str(command)], capture_output=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert printed.returncode == 0 and printed.stderr == b""
    assert printed.stdout.split(b"\n", 1)[0] == b"#!" + os.fsencode(str(python)) + b" -IS"
    assert _without_shebang(printed.stdout) == _without_shebang(HOOK.read_bytes())

    agi_bin = tmp_path / "agi-bin"
    agi_bin.mkdir()
    installed = subprocess.run(
        [str(command), "--install", str(agi_bin)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.startswith(f"installed {agi_bin / 'missed.py'}")
    script = agi_bin / "missed.py"
    assert script.read_bytes() == printed.stdout
    assert stat.S_IMODE(script.stat().st_mode) == 0o755

    script.write_bytes(b"#!/bin/sh\nexit 0\n")
    refused = subprocess.run(
        [str(command), "--install", str(agi_bin)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "pass --force to replace it" in refused.stderr
    assert script.read_bytes() == b"#!/bin/sh\nexit 0\n"
    forced = subprocess.run(
        [str(command), "--install", str(agi_bin), "--force"], capture_output=True, env=env, timeout=60, check=False
    )
    assert forced.returncode == 0 and script.read_bytes() == printed.stdout

    # The installed hook imports the missedcall of its own virtualenv.
    probe = subprocess.run(
        [str(python), "-I", "-c", "import missedcall.detect.verdict as v; print(v.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0 and probe.stdout.startswith(str(venv)), probe.stderr
