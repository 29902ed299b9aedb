"""Where the tests and the benches find their files: inside this repository, nowhere else.

A fresh clone with nothing beside it must be able to run every test, so every
recorded session, queue_log and config tree lives under ``tests/fixtures``;
``tests/test_self_contained.py`` checks that no test or bench path leaves the repo.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
AGI_FIXTURES = FIXTURES / "asterisk22-agi"
QUEUE_LOG_FIXTURES = FIXTURES / "queue_log"
INSTALL_FIXTURES = FIXTURES / "install"
SENDMAIL_BIN = REPO_ROOT / "tests" / "bin" / "sendmail"
"""The sendmail stand-in: stores each message and its envelope in $MISSEDCALL_TEST_MAILDIR."""
MISSED_PY = REPO_ROOT / "agi-bin" / "missed.py"
"""The AGI script Asterisk runs."""
