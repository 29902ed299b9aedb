"""The manual, run: every fenced ``missedcall-admin`` example in README.md and docs/*.md works.

Each document's examples run in order, as a reader would type them, through bash (they use quotes,
``>`` and ``#`` comments), in a scratch box: its own config file, SQLite in a temporary folder, the
sendmail stand-in, a spool and a copy of a recorded queue_log, its tables made as install.sh makes them;
``sudo`` is dropped. Each must exit 0.

An example that cannot run on a scratch box is marked in the document itself, on the line before its
block, with a reason in parentheses (an HTML comment: readers do not see it)::

    <!-- doc-test: skip "sweep --follow" (runs until stopped) -->
    <!-- doc-test: exit 1 (a scratch box has no Asterisk, AGI script or cron file) -->

A quoted text limits the marker to the block's commands that contain it; without one it applies to the
whole block. ``<!-- doc-test: sample-mail -->`` marks the README's sample mail, compared with what
``missedcall-admin test --dry-run`` renders today. A verb that does not exist (yet) fails here, loudly.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from missedcall import config
from tests.paths import FIXTURES, REPO_ROOT, SENDMAIL_BIN
from tests.support.env import write_env_file
from tests.support.readme import config_examples

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
MARKER = re.compile(
    r'<!--\s*doc-test:\s*(?P<what>skip|exit \d+|sample-mail)\s*(?:"(?P<only>[^"]+)")?\s*(?P<why>\(.*\))?\s*-->'
)
FENCE = re.compile(r"^\s*```")
COMMAND = re.compile(r"^(?:sudo\s+)?(?P<cmd>missedcall-admin(?:\s.*)?)$")
#: Paths the examples name that a scratch box cannot have, and what stands in for them (kept small).
STAND_INS = {
    "/var/lib/asterisk/bin/noanswer.sh": str(FIXTURES / "scripts" / "noanswer-article.sh"),
    "/etc/missedcall/staging.env": "{box}/staging.env",
}
#: Files the examples read that a reader has at hand.
GIVEN_FILES = {
    "team.csv": "queue,email,name\n601,team@example.com,Team\n",
    "slack.url": "slack:https://hooks.slack.com/services/T000/B000/XXXXXXXX\n",
}


@dataclass
class Example:
    doc: str
    line: int
    command: str
    exit: int = 0
    skip: str = ""


def examples(path: Path) -> list[Example]:
    """The document's fenced missedcall-admin commands, with what their markers say."""
    found: list[Example] = []
    marker: re.Match[str] | None = None
    in_block = False
    previous = ""
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            if not in_block:
                marker = MARKER.search(previous)
                if "doc-test" in previous and marker is None:
                    raise AssertionError(f"{path.name}:{number - 1}: a doc-test marker this test cannot read")
            in_block = not in_block
            previous = line
            continue
        previous = line if line.strip() else previous
        if not in_block:
            continue
        match = COMMAND.match(line.strip())
        if not match:
            continue
        example = Example(path.name, number, match["cmd"])
        if marker is not None and (not marker["only"] or marker["only"] in example.command):
            what = marker["what"]
            if what != "sample-mail":
                assert marker["why"], f"{path.name}:{number}: a doc-test marker says why, in parentheses"
            if what == "skip":
                example.skip = marker["why"]
            elif what.startswith("exit"):
                example.exit = int(what.split()[1])
        found.append(example)
    return found


def scratch_box(root: Path) -> dict[str, str]:
    """A configuration a new user could have made: SQLite, no PBX; the environment to run it in."""
    for sub in ("spool", "maildir", "cwd"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    queue_log = root / "queue_log"
    shutil.copy(FIXTURES / "queue_log" / "freepbx17-shaped.queue_log", queue_log)
    keys = {
        "MISSEDCALL_DB_URL": f"sqlite:///{root}/missedcall.sqlite3",
        "MISSEDCALL_SENDMAIL": str(SENDMAIL_BIN),
        "MISSEDCALL_SPOOL_DIR": str(root / "spool"),
        "MISSEDCALL_QUEUE_LOG": str(queue_log),
        "MISSEDCALL_FREEPBX_CONF": str(root / "no-freepbx.conf"),
    }
    config_file = write_env_file(root, "missedcall.env", **keys)
    shutil.copy(config_file, root / "staging.env")
    for name, text in GIVEN_FILES.items():
        (root / "cwd" / name).write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISSEDCALL_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        MISSEDCALL_CONFIG=str(config_file),
        MISSEDCALL_TEST_MAILDIR=str(root / "maildir"),
        LC_ALL="C.UTF-8",
    )
    # What install.sh leaves behind: the tables (the README's examples start after it).
    subprocess.run(["missedcall-admin", "init"], env=env, check=True, capture_output=True, timeout=60)
    return env


def run(command: str, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for path, stand_in in STAND_INS.items():
        command = command.replace(path, stand_in.format(box=root))
    # bash, as the reader's terminal: the examples use quotes, redirections and comments. Its own process
    # group, so that an example that never ends (an unmarked --follow) is stopped whole, by its pid.
    with subprocess.Popen(
        ["bash", "-c", command], cwd=root / "cwd", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_example_runs(doc: Path, tmp_path: Path) -> None:
    found = examples(doc)
    if doc.name == "README.md":
        assert len(found) > 30, "the README's examples were not found: has the fence style changed?"
        skipped = [e for e in found if e.skip]
        assert len(skipped) <= 3, f"keep the examples that cannot run small: {skipped}"
    env = scratch_box(tmp_path)
    failures = []
    for example in found:
        if example.skip:
            continue
        try:
            done = run(example.command, tmp_path, env)
        except subprocess.TimeoutExpired:
            failures.append(f"{example.doc}:{example.line}: {example.command}\n    still running after 60 s")
            continue
        if done.returncode != example.exit:
            failures.append(
                f"{example.doc}:{example.line}: {example.command}\n    exit {done.returncode}"
                f" (expected {example.exit}): {(done.stderr or done.stdout).strip()[-400:]}"
            )
    assert not failures, "examples that do not work as documented:\n" + "\n".join(failures)


def test_skipped_examples_are_named_in_the_document() -> None:
    """A marker's quoted text must match a command of its block, or it silently skips nothing."""
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            marker = MARKER.search(line)
            if marker and marker["only"]:
                block = [e.command for e in examples(doc) if number < e.line < number + 40]
                assert any(marker["only"] in c for c in block), f"{doc.name}:{number}: matches no command"


def _normalised(text: str) -> list[str]:
    lines = []
    for line in text.strip("\n").splitlines():
        line = re.sub(r"^(Date|Message-ID): .*", r"\1: *", line)
        line = re.sub(r"^(From: [^@]+)@.*", r"\1@*", line)
        line = re.sub(r"test-\d+", "test-*", line)
        line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "*", line)
        line = re.sub(r"^missedcall on .*", "missedcall on *", line)
        lines.append(line.rstrip())
    return lines


def render_sample_mail(root: Path) -> str:
    """The README's sample mail as the product renders it now, on a scratch box of its own."""
    env = scratch_box(root)
    env.update(MISSEDCALL_TIMEZONE="Europe/Moscow", TZ="Europe/Moscow")
    for command in ("recipients add 600 ops@example.com", "queues set 600 --label Sales"):
        done = run("missedcall-admin " + command, root, env)
        assert done.returncode == 0, done.stderr
    done = run('missedcall-admin test 600 --caller 79161234567 --caller-name "Ivan Petrov" --dry-run', root, env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_sample_mail_is_what_the_product_renders(tmp_path: Path) -> None:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    sample = re.search(r"<!-- doc-test: sample-mail -->\n```\n(.*?)\n```", text, flags=re.S)
    assert sample, "README: the sample mail block is gone"
    assert _normalised(render_sample_mail(tmp_path)) == _normalised(sample.group(1)), (
        "README's sample mail differs from what the product renders now: paste the output of"
        " `python -m tests.test_readme_commands` into the README's sample-mail block"
    )


def test_every_key_has_an_example_that_loads(tmp_path: Path) -> None:
    """The configuration table's example column: one per key, and each one a value the product takes."""
    found = config_examples()
    assert set(found) == set(config.KEYS)
    assert all(found.values()), [k for k, v in found.items() if not v]
    path = write_env_file(tmp_path, "example.env", **found)
    settings = config.load_settings({"MISSEDCALL_CONFIG": str(path)}, strict=True)
    assert settings.timezone == found["MISSEDCALL_TIMEZONE"] and settings.mail_from == found["MISSEDCALL_FROM"]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_links_lead_somewhere(doc: Path) -> None:
    """Every #anchor names a heading of its page, and every relative link a file of the repository
    (a docs/*.md page that another branch adds is allowed to be missing until it is merged)."""
    text = doc.read_text(encoding="utf-8")
    outside_code = re.sub(r"```.*?```", "", text, flags=re.S)
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", outside_code, flags=re.M)}
    for target in re.findall(r"\]\(([^)\s]+)\)", outside_code):
        if target.startswith(("http://", "https://", "mailto:", "tel:")):
            continue
        path, _, anchor = target.partition("#")
        if not path:
            assert anchor in anchors, f"{doc.name}: no heading for #{anchor}"
            continue
        if re.fullmatch(r"docs/[a-z]+\.md", path) or re.fullmatch(r"[a-z]+\.md", path):
            continue  # a feature page: it may come with another branch
        assert (doc.parent / path).exists(), f"{doc.name}: {target} leads nowhere"


if __name__ == "__main__":
    # The sample mail to paste into the README after a change to the templates or the message.
    import socket
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        rendered = render_sample_mail(Path(scratch))
    # The README shows a PBX of its own, not the box this ran on.
    rendered = re.sub(r"(missedcall@)[^>\s]+", r"\1pbx.example.com", rendered)
    sys.stdout.write(rendered.replace(f"missedcall on {socket.gethostname()}", "missedcall on pbx"))
