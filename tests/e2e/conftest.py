"""Fixtures for the end-to-end suite: a real Asterisk 22 (Debian sid) in a chroot.

The chroot is built once per machine and cached (chroot.ensure_chroot); one PBX
runs for the whole session on top of it (pbx.Pbx), with the FreePBX-17-shaped
configuration from asterisk-etc/.  The suite skips only where no chroot can be
made at all, and never under CI=true: there it fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import chroot  # tests/e2e is on sys.path (pytest's rootdir-less conftest import)
import pbx as e2e
import pytest

ASTERISK_ETC = Path(__file__).with_name("asterisk-etc")
HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs the sid chroot with a real Asterisk (tests/e2e); -m 'not e2e' skips")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


SKIP_REASON = "e2e suite: cannot make the Asterisk chroot here"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # pytest reports a skip from a fixture at each test's own line, so -ra would
    # print one line per test; point them all at this file so they fold into one.
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and SKIP_REASON in str(longrepr[2]):
        report.longrepr = (str(Path(__file__)), 1, longrepr[2])


@pytest.fixture(scope="session")
def pbx_chroot() -> Path:
    """The cached sid chroot, built on first use (minutes), reused afterwards."""
    problem = chroot.chroot_support_problem()
    if problem is not None:
        reason = f"{SKIP_REASON}: {problem}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)
    return chroot.ensure_chroot()


@pytest.fixture(scope="session")
def pbx(pbx_chroot: Path) -> Iterator[e2e.Pbx]:
    """One running PBX for the session; stopped (by PID, mounts released) at the end."""
    with e2e.Pbx(pbx_chroot, asterisk_etc=ASTERISK_ETC) as box:
        yield box
