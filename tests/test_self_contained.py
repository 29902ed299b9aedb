"""The repository needs nothing beside it: no test, bench or product path leaves it.

A clone into an empty folder must run its tests (issue 10). Two checks: a scan
of the code for the ways a path used to climb out of the repo (to the recorded
fixtures in a sibling folder, to a design file outside it), and a real clone
with nothing beside it that runs a fixture-using test file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import paths

REPO = paths.REPO_ROOT
HERE = Path(__file__).resolve()

#: Where code lives that tests, benches or the product run.
CODE_GLOBS = ("tests/**/*.py", "bench/**/*.py", "missedcall/**/*.py", "agi-bin/*")
CODE_FILES = ("install.sh", "tests/run", "tests/bin/sendmail")
#: Prose that must not send a reader outside the repo either.
DOC_GLOBS = ("docs/**/*.md", "README.md", "tests/**/README.md")

#: Spellings of "outside the repository" that we once used; none may come back.
FORBIDDEN = (
    ("shared/fixtures", re.compile(r"shared/fixtures")),
    ("../shared", re.compile(r"\.\./shared")),
    ("MISSEDCALL_SHARED_FIXTURES", re.compile(r"MISSEDCALL_SHARED_FIXTURES")),
    ("DESIGN §N", re.compile(r"DESIGN §")),
    ("ROOT.parent", re.compile(r"\b(?:REPO_ROOT|ROOT|REPO)\.parents?\b")),
    ('"shared" / ...', re.compile(r"""["']shared["']\s*/""")),
)
# parents[N] and .parent chains are judged by where they land (see below): tests/e2e's
# Path(__file__).resolve().parents[2] is the repository root, while the same index from
# tests/ was how the tests once reached the fixtures beside the repo.
#: Relative paths that climb, as string literals ("../x").
_CLIMB = re.compile(r"""["'](\.\./[^"'\n]*)["']""")
#: Hostile-input values the tests feed to the product (spool names, template folders): they
#: aim at /etc through the code under test, they are not paths the tests read.
HOSTILE_CLIMBS = frozenset({"../../etc/passwd", "../x", "../../../../etc/passwd", "../../etc"})
#: Path(__file__)...parents[N] / .parent.parent...: how far a line climbs from its own file.
_PARENTS_INDEX = re.compile(r"__file__.*?\.parents\[(\d+)\]")
_PARENT_CHAIN = re.compile(r"__file__\)(?:\.resolve\(\))?((?:\.parent\b)+)")


def _files(globs: tuple[str, ...], names: tuple[str, ...] = (), *, data_too: bool = False) -> list[Path]:
    """The files the globs name, without this file, caches, the venv and (unless data_too) recorded data."""
    found = {p for g in globs for p in REPO.glob(g) if p.is_file()}
    found |= {REPO / n for n in names if (REPO / n).is_file()}
    skip = (REPO / ".venv",) if data_too else (REPO / ".venv", REPO / "tests" / "fixtures")
    return sorted(
        p for p in found if p != HERE and "__pycache__" not in p.parts and not any(s in p.parents for s in skip)
    )


def _lines(path: Path) -> list[tuple[int, str]]:
    return list(enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1))


def test_scan_covers_the_code() -> None:
    """The scan below must see the files it vouches for, or it proves nothing."""
    names = {p.relative_to(REPO).as_posix() for p in _files(CODE_GLOBS, CODE_FILES)}
    expected = {"install.sh", "agi-bin/missed.py", "tests/paths.py", "tests/conftest.py", "bench/agi_bench.py"}
    assert expected <= names
    assert any(name.startswith("missedcall/detect/") for name in names)
    docs = {p.relative_to(REPO).as_posix() for p in _files(DOC_GLOBS, data_too=True)}
    assert {"README.md", "docs/design.md", "tests/fixtures/README.md"} <= docs


def test_no_code_or_doc_points_outside_the_repository() -> None:
    hits: list[str] = []
    for path in _files(CODE_GLOBS, CODE_FILES) + _files(DOC_GLOBS, data_too=True):
        where = path.relative_to(REPO).as_posix()
        for number, line in _lines(path):
            hits += [f"{where}:{number}: {name}: {line.strip()}" for name, rx in FORBIDDEN if rx.search(line)]
    assert hits == [], "paths or references that leave the repository:\n" + "\n".join(hits)


def test_no_relative_path_climbs_out() -> None:
    hits: list[str] = []
    for path in _files(CODE_GLOBS, CODE_FILES):
        where = path.relative_to(REPO).as_posix()
        for number, line in _lines(path):
            for literal in _CLIMB.findall(line):
                if literal not in HOSTILE_CLIMBS:
                    hits.append(f"{where}:{number}: {literal!r} (a hostile test value? add it to HOSTILE_CLIMBS)")
    assert hits == [], "relative paths that climb:\n" + "\n".join(hits)


def test_no_path_climbs_above_the_repository_from_its_own_file() -> None:
    """Path(__file__).parents[N] or .parent.parent...: never above the repository root."""
    hits: list[str] = []
    for path in _files(CODE_GLOBS):
        where = path.relative_to(REPO).as_posix()
        for number, line in _lines(path):
            outside = [t for t in _landings(path, line) if not _inside(t)]
            hits += [f"{where}:{number}: climbs to {t}: {line.strip()}" for t in outside]
    assert hits == [], "paths that leave the repository:\n" + "\n".join(hits)


def _landings(path: Path, line: str) -> list[Path]:
    """Where each Path(__file__) climb on the line ends, for a line of ``path``."""
    steps = [int(n) + 1 for n in _PARENTS_INDEX.findall(line)]
    steps += [chain.count(".parent") for chain in _PARENT_CHAIN.findall(line)]
    landings = []
    for step in steps:
        target = path
        for _ in range(step):
            target = target.parent
        landings.append(target)
    return landings


def _inside(target: Path) -> bool:
    return target == REPO or REPO in target.parents


def test_the_climb_detector_sees_a_climb() -> None:
    """The detectors above must be able to fail: a line written as the old code wrote it."""
    old = 'FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "queue_log"'
    assert [name for name, rx in FORBIDDEN if rx.search(old)] == ['"shared" / ...']
    assert not any(_inside(t) for t in _landings(REPO / "tests" / "test_verdict.py", old))
    assert all(_inside(t) for t in _landings(REPO / "tests" / "e2e" / "test_scenarios.py", old))
    chain = "X = Path(__file__).resolve().parent.parent.parent"
    assert _landings(REPO / "tests" / "paths.py", chain) == [REPO.parent]
    assert any(rx.search("REPO_ROOT.parent / 'x'") for _, rx in FORBIDDEN)
    assert _CLIMB.findall('p = HERE / "../shared/fixtures"') == ["../shared/fixtures"]


def test_every_path_constant_of_tests_paths_is_inside_the_repo_and_exists() -> None:
    constants = {name: value for name, value in vars(paths).items() if name.isupper() and isinstance(value, Path)}
    assert {"REPO_ROOT", "FIXTURES", "AGI_FIXTURES", "QUEUE_LOG_FIXTURES"} <= set(constants)
    for name, value in constants.items():
        resolved = value.resolve()
        assert resolved == REPO or REPO in resolved.parents, f"tests.paths.{name} = {value} is outside {REPO}"
        assert resolved.exists(), f"tests.paths.{name} = {value} does not exist"
    assert (paths.FIXTURES / "README.md").is_file()
    assert any(paths.AGI_FIXTURES.glob("*.json")) and any(paths.QUEUE_LOG_FIXTURES.glob("*.queue_log"))


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout.strip()


def test_a_clone_with_nothing_beside_it_runs_its_fixture_tests(tmp_path: Path) -> None:
    """git clone of this checkout's HEAD into an empty folder; its own tests pass there, reading its own fixtures."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist, say): there is no HEAD to clone")
    head = _git("rev-parse", "HEAD", cwd=REPO)
    clone = tmp_path / "missedcall"
    _git("clone", "--quiet", "--no-checkout", str(REPO), str(clone), cwd=tmp_path)
    _git("checkout", "--quiet", "--detach", head, cwd=clone)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["missedcall"]  # nothing beside it
    assert not (clone / ".venv").exists()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MISSEDCALL_", "PYTEST_"))}
    env["PYTHONPATH"] = str(clone)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # The clone's package and test helpers, not this checkout's (the venv may hold an editable install of it).
    probe = subprocess.run(
        [sys.executable, "-c", "import missedcall, tests.paths as p; print(missedcall.__file__); print(p.FIXTURES)"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    package_file, fixtures = probe.stdout.split()
    assert Path(package_file).is_relative_to(clone) and Path(fixtures) == clone / "tests" / "fixtures"

    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_verdict.py"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", run.stdout) and " failed" not in run.stdout and "skipped" not in run.stdout
