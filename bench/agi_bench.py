#!/usr/bin/env python3
"""How much does one hang-up cost the PBX? The real agi-bin/missed.py, against a baseline.

Runs the real hook N times against the scripted Asterisk 22 peer (tests/agipeer.py;
headers modelled on the recorded abandon tests/fixtures/asterisk22-agi/1600-h.json,
a fresh callid each run), an SQLite database and the sendmail stand-in, and
``python3 -c pass`` N times in the same run, then prints the
median wall-time ratio and the peak RSS of each. Ratios, not seconds: the
machine's speed cancels out.

    python bench/agi_bench.py [-n 30]        (from the repository root; missedcall installed)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `python bench/agi_bench.py` puts bench/ on sys.path, not the repository. The test equipment in tests/
# is wanted from here, the package is not: appended, the repository comes after site-packages, so an
# installed (non-editable) missedcall is still the one measured.
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from tests.paths import AGI_FIXTURES, REPO_ROOT  # noqa: E402 - needs the sys.path entry above

FIXTURE = AGI_FIXTURES / "1600-h.json"
HOOK = REPO_ROOT / "agi-bin" / "missed.py"


def _recorded_headers() -> dict[str, str]:
    """The recorded abandon's header values (``agi_uniqueid``, ``agi_channel``, ...), by key."""
    lines = json.loads(FIXTURE.read_text(encoding="utf-8"))["header_lines"]
    pairs = (line.rstrip("\r\n").partition(": ") for line in lines if line.startswith("agi_"))
    return {key: value for key, _, value in pairs}


def _driver(kind: str, runs: int, workdir: Path) -> dict[str, object]:
    """Run one variant ``runs`` times in this (child) process; report times and children's peak RSS."""
    from tests.agipeer import AgiPeer, make_headers

    recorded = _recorded_headers()
    epoch = recorded["agi_uniqueid"].split(".")[0]
    durations: list[float] = []
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MISSEDCALL_CONFIG": str(workdir / "missedcall.env"),
        "MISSEDCALL_TEST_MAILDIR": str(workdir / "mail"),
    }
    for i in range(runs):
        if kind == "baseline":
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True, env=env, timeout=30)
            durations.append(time.perf_counter() - started)
            continue
        headers = make_headers(
            uniqueid=f"{epoch}.{1000 + i}",
            callerid="79161234567",
            calleridname="Иван Петров",
            args=["600"],
            channel=recorded["agi_channel"],
            version=recorded["agi_version"],
        )
        peer = AgiPeer(headers, {"ABANDONED": "TRUE", "QUEUEPOSITION": "1"})
        result = peer.run([sys.executable, str(HOOK), "600"], env=env, timeout=30)
        if not result.ok:
            raise SystemExit(f"hook run {i} failed: {result}")
        durations.append(result.duration)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"durations": durations, "peak_rss_kib": peak_kib}


def _variant(kind: str, runs: int, workdir: Path) -> dict[str, object]:
    # Each variant in its own driver process, so RUSAGE_CHILDREN sees only that variant's children.
    out = subprocess.run(
        [sys.executable, __file__, "--driver", kind, "-n", str(runs), "--workdir", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=30, help="runs per variant (default 30)")
    parser.add_argument("--driver", choices=["baseline", "hook"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        print(json.dumps(_driver(args.driver, args.n, args.workdir)))
        return 0

    with tempfile.TemporaryDirectory(prefix="missedcall-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "mail").mkdir()
        db = workdir / "missedcall.sqlite3"
        # A stand-in in plain sh: a Python one would add its own start-up to every run and blur the ratio.
        sendmail = workdir / "sendmail"
        sendmail.write_text('#!/bin/sh\ncat > "$MISSEDCALL_TEST_MAILDIR/$$.eml"\n')
        sendmail.chmod(0o755)
        (workdir / "missedcall.env").write_text(
            f"MISSEDCALL_DB_URL=sqlite:///{db}\n"
            f"MISSEDCALL_SENDMAIL={sendmail}\n"
            f"MISSEDCALL_QUEUE_LOG={workdir / 'queue_log'}\n"
            f"MISSEDCALL_FREEPBX_CONF={workdir / 'none'}\n"
            # Never the host's /var/spool/missedcall: the hook keeps its copy of the recipients there.
            f"MISSEDCALL_SPOOL_DIR={workdir / 'spool'}\n"
            "MISSEDCALL_FROM=pbx@example.com\nMISSEDCALL_FALLBACK_TO=ops@example.com\n"
        )
        subprocess.run(
            [sys.executable, "-m", "missedcall.admin.cli", "--config", str(workdir / "missedcall.env"), "init"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        baseline = _variant("baseline", args.n, workdir)
        hook = _variant("hook", args.n, workdir)
        mails = len(list((workdir / "mail").glob("*.eml")))

    base_median = statistics.median(baseline["durations"])  # type: ignore[arg-type]
    hook_median = statistics.median(hook["durations"])  # type: ignore[arg-type]
    print(f"runs per variant:          {args.n} (mails delivered by the hook: {mails})")
    print(
        f"python3 -c pass   median:  {base_median * 1000:.1f} ms   peak RSS {baseline['peak_rss_kib'] / 1024:.1f} MiB"
    )
    print(f"agi-bin/missed.py median:  {hook_median * 1000:.1f} ms   peak RSS {hook['peak_rss_kib'] / 1024:.1f} MiB")
    print(f"wall-time ratio (hook / baseline, medians): {hook_median / base_median:.2f}")
    print(f"peak RSS ratio (hook / baseline):           {hook['peak_rss_kib'] / baseline['peak_rss_kib']:.2f}")  # type: ignore[operator]
    return 0 if mails == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
