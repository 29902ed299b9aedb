"""The daily report's cron line: at MISSEDCALL_REPORT_HOUR (default 09:00), none when it is empty."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from missedcall.admin import installer
from missedcall.config import ConfigError
from tests.paths import REPO_ROOT


def cron_for(tmp_path: Path, config_text: str | None) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "missedcall.env"
    if config_text is not None:
        config.write_text(config_text, encoding="utf-8")
    # As install.sh runs it: the system's Python, from the source tree, no site packages.
    return subprocess.run(
        [sys.executable, "-s", "-B", "-m", "missedcall.admin.installer", "cron", "--prefix", "/opt/missedcall",
         "--user", "asterisk", "--data-dir", "/var/lib/missedcall", "--config", "/etc/missedcall/missedcall.env",
         "--read-config", str(config)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("config_text", "line"),
    [
        (None, "0 9 * * * asterisk /opt/missedcall/venv/bin/missedcall-admin report --mail --status open --since 24h"),
        ("MISSEDCALL_REPORT_HOUR='7:45'\n", "45 7 * * * asterisk "),
        ('MISSEDCALL_REPORT_HOUR="18:00"\nMISSEDCALL_REPORT_HOUR=08:30 # later wins\n', "30 8 * * * asterisk "),
    ],
)
def test_the_report_line(tmp_path: Path, config_text: str | None, line: str) -> None:
    done = cron_for(tmp_path, config_text)
    assert done.returncode == 0, done.stderr
    [report] = [x for x in done.stdout.splitlines() if " report " in x and not x.startswith("#")]
    assert report.startswith(line) and report.endswith("| logger -t missedcall-report")
    assert done.stdout.count("* * * * * asterisk flock -n") == 2  # sweep and retry as before


def test_empty_means_no_report_line_and_a_bad_value_stops_the_install(tmp_path: Path) -> None:
    done = cron_for(tmp_path, "MISSEDCALL_REPORT_HOUR=\n")
    assert done.returncode == 0 and " report " not in done.stdout
    bad = cron_for(tmp_path, "MISSEDCALL_REPORT_HOUR=9am\n")
    assert bad.returncode == 1 and "MISSEDCALL_REPORT_HOUR" in bad.stderr and bad.stdout == ""
    with pytest.raises(ConfigError):
        installer.report_at(str(tmp_path / "missedcall.env"))
