#!/usr/bin/env python3
"""How much does one hang-up cost the PBX? The real agi-bin/missed.py, against ``python3 -c pass``.

Runs the real hook N times against the scripted Asterisk 22 peer (tests/agipeer; headers modelled on
the recorded abandon tests/fixtures/asterisk22-agi/1600-h.json, a fresh callid each run), an SQLite
(or, with ``--db mariadb``, a throw-away MariaDB) database and a sendmail stand-in in plain sh, and
``python3 -c pass`` N times, interleaved in the same run (this box's start-up time is bimodal: runs
of one variant in a block would catch one mode and not the other). Prints the min and median of
each, the ratios of the medians and of the mins, and the peak RSS of each (measured in passes of
their own, so that each figure is one variant's). The hook is started as install.sh's ``#!`` line starts
it, with ``-IS`` (no site: missed.py adds the venv's packages itself); the ratios are given against plain
``python3 -c pass`` (issue 12's baseline) and against ``python3 -IS -c pass``. ``--importtime`` adds the
hook's slowest imports (``python -X importtime``), cumulative, largest first. Ratios, not seconds: the
machine's speed cancels out.

Measure what install.sh installs: a non-editable venv (``python3 -m venv V && V/bin/pip install .``),
then ``V/bin/python bench/agi_bench.py``. An editable install (``pip install -e``) adds a start-up
finder that doubles the baseline and halves the ratio: the bench refuses it unless ``--allow-editable``.

    V/bin/python bench/agi_bench.py [-n 40] [--db sqlite|mariadb] [--importtime]
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


from benchdb import database  # noqa: E402 - bench/benchdb.py: on sys.path when this runs as a script

from tests.paths import AGI_FIXTURES, REPO_ROOT  # noqa: E402 - needs the sys.path entry above

FIXTURE = AGI_FIXTURES / "1600-h.json"
HOOK = REPO_ROOT / "agi-bin" / "missed.py"

#: Runs the hook script as Asterisk would, except that its stderr stays open (the hook points fd 2
#: at /dev/null, which would swallow ``-X importtime``'s lines for every import made after that).
#: argv: hook path, where to write the hook's sys.modules ("" for nowhere), then the AGI arguments.
KEEP_STDERR = """\
import os, sys

def _exit(code):  # hook.run() leaves with os._exit: come back here to write the list
    raise SystemExit(code)

os._exit = _exit
_dup2 = os.dup2
os.dup2 = lambda fd, fd2, *rest: fd2 if fd2 == 2 else _dup2(fd, fd2, *rest)
hook, dump = sys.argv[1], sys.argv[2]
sys.argv = [hook, *sys.argv[3:]]
with open(hook, encoding="utf-8") as handle:
    code = compile(handle.read(), hook, "exec")
try:
    exec(code, {"__name__": "__main__", "__file__": hook})
except SystemExit:
    pass
if dump:
    with open(dump, "w", encoding="utf-8") as handle:
        handle.write("\\n".join(sorted(sys.modules)))
"""


def _recorded_headers() -> dict[str, str]:
    """The recorded abandon's header values (``agi_uniqueid``, ``agi_channel``, ...), by key."""
    lines = json.loads(FIXTURE.read_text(encoding="utf-8"))["header_lines"]
    pairs = (line.rstrip("\r\n").partition(": ") for line in lines if line.startswith("agi_"))
    return {key: value for key, _, value in pairs}


def _env(workdir: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MISSEDCALL_CONFIG": str(workdir / "missedcall.env"),
        "MISSEDCALL_TEST_MAILDIR": str(workdir / "mail"),
    }


def _peer(index: int):  # type: ignore[no-untyped-def]
    from tests.agipeer import AgiPeer, make_headers

    recorded = _recorded_headers()
    epoch = recorded["agi_uniqueid"].split(".")[0]
    headers = make_headers(
        uniqueid=f"{epoch}.{1000 + index}",
        callerid="79161234567",
        calleridname="Иван Петров",
        args=["600"],
        channel=recorded["agi_channel"],
        version=recorded["agi_version"],
    )
    return AgiPeer(headers, {"ABANDONED": "TRUE", "QUEUEPOSITION": "1"})


#: How install.sh's #! line starts the hook: -IS, no site (agi-bin/missed.py adds the venv's packages).
HOOK_FLAGS = ["-IS"]


def _one(kind: str, index: int, workdir: Path) -> float:
    env = _env(workdir)
    if kind in ("baseline", "baseline-IS"):
        # Started through the peer too, so both variants pay the same pipes and polling.
        from tests.agipeer import AgiPeer

        flags = HOOK_FLAGS if kind == "baseline-IS" else []
        result = AgiPeer([], {}).run([sys.executable, *flags, "-c", "pass"], env=env, timeout=30, cwd=workdir)
    else:
        argv = [sys.executable, *HOOK_FLAGS, str(HOOK), "600"]
        result = _peer(index).run(argv, env=env, timeout=30, cwd=workdir)
    if not result.ok:
        raise SystemExit(f"{kind} run {index} failed: {result}")
    return result.duration


def _driver(kinds: list[str], runs: int, first: int, workdir: Path) -> dict[str, object]:
    """Run the variants ``runs`` times each, interleaved (the order flips every round)."""
    durations: dict[str, list[float]] = {kind: [] for kind in kinds}
    for i in range(runs):
        order = kinds if i % 2 == 0 else kinds[::-1]
        for kind in order:
            durations[kind].append(_one(kind, first + i, workdir))
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"durations": durations, "peak_rss_kib": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime}


def _in_child(kinds: list[str], runs: int, first: int, workdir: Path) -> dict[str, object]:
    # A driver process of its own: RUSAGE_CHILDREN then sees only these children.
    out = subprocess.run(
        [sys.executable, __file__, "--driver", ",".join(kinds), "-n", str(runs), *("--first", str(first)),
         *("--workdir", str(workdir))],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return json.loads(out.stdout)


def importtime(workdir: Path, index: int, top: int) -> tuple[list[str], list[str]]:
    """The hook's ``-X importtime`` lines, largest cumulative first, and the modules it had loaded."""
    dump = workdir / "modules.txt"
    prefix = [sys.executable, "-X", "importtime", *HOOK_FLAGS, "-c", KEEP_STDERR]
    argv = [*prefix, str(HOOK), str(dump), "600"]
    result = _peer(index).run(argv, env=_env(workdir), timeout=30, cwd=workdir)
    if not result.ok:
        raise SystemExit(f"importtime run failed: {result}")
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative, name = line[len("import time:") :].split("|", 2)
        rows.append((int(cumulative), int(self_us), name.rstrip()))
    rows.sort(reverse=True)
    total = sum(s for _, s, _ in rows)
    lines = [f"  sum of self times: {total / 1000:.1f} ms over {len(rows)} modules"]
    lines += [f"  {c / 1000:7.1f} ms cumulative {s / 1000:6.1f} ms self  {name}" for c, s, name in rows[:top]]
    return lines, dump.read_text(encoding="utf-8").split("\n")


def _summary(label: str, values: list[float]) -> str:
    return f"{label:<22} min {min(values) * 1000:6.1f} ms   median {statistics.median(values) * 1000:6.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=40, help="runs per variant (default 40)")
    parser.add_argument("--db", choices=["sqlite", "mariadb"], default="sqlite", help="database (default sqlite)")
    parser.add_argument("--importtime", action="store_true", help="also list the hook's slowest imports")
    parser.add_argument("--top", type=int, default=25, help="how many imports --importtime lists (default 25)")
    parser.add_argument("--allow-editable", action="store_true", help="measure an editable install anyway")
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        print(json.dumps(_driver(args.driver.split(","), args.n, args.first, args.workdir)))
        return 0

    from venvcheck import editable_reason  # bench/venvcheck.py: on sys.path when this runs as a script

    why = editable_reason(sys.executable)
    if why:
        if not args.allow_editable:
            print(f"agi_bench: refusing an editable install ({why}).", file=sys.stderr)
            print("  Make a venv as install.sh does: python3 -m venv V && V/bin/pip install .", file=sys.stderr)
            print("  then run V/bin/python bench/agi_bench.py (or pass --allow-editable).", file=sys.stderr)
            return 2
        print(f"!!! EDITABLE INSTALL ({why}): the baseline is inflated, the ratios are NOT install.sh's !!!")
    else:
        print(f"install: non-editable ({sys.executable}), as install.sh makes it")

    with tempfile.TemporaryDirectory(prefix="missedcall-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "mail").mkdir()
        # A stand-in in plain sh: a Python one would add its own start-up to every run and blur the ratio.
        sendmail = workdir / "sendmail"
        sendmail.write_text('#!/bin/sh\ncat > "$MISSEDCALL_TEST_MAILDIR/$$.eml"\n')
        sendmail.chmod(0o755)
        runs_in_all = 2 * args.n + 20
        with database(args.db, workdir) as url:
            (workdir / "missedcall.env").write_text(
                f"MISSEDCALL_DB_URL={url}\n"
                f"MISSEDCALL_SENDMAIL={sendmail}\n"
                f"MISSEDCALL_QUEUE_LOG={workdir / 'queue_log'}\n"
                f"MISSEDCALL_FREEPBX_CONF={workdir / 'none'}\n"
                # Never the host's /var/spool/missedcall: the hook keeps its copy of the recipients there.
                f"MISSEDCALL_SPOOL_DIR={workdir / 'spool'}\n"
                # Storm control would hold mails past its limit: every run here must mail.
                f"MISSEDCALL_FLOOD_LIMIT={runs_in_all}\n"
                "MISSEDCALL_FROM=pbx@example.com\nMISSEDCALL_FALLBACK_TO=ops@example.com\n"
            )
            (workdir / "missedcall.env").chmod(0o640)
            # As on a PBX after install.sh: the settings were written a while ago, and an admin command run
            # as their owner (here: init) left python-dotenv's reading of them in the cache beside them
            # (missedcall.settingscache: a file younger than 2 s is never cached).
            time.sleep(2.2)
            admin = [sys.executable, "-m", "missedcall.admin.cli", "--config", str(workdir / "missedcall.env")]
            subprocess.run([*admin, "init"], check=True, capture_output=True, timeout=60, cwd=workdir)
            cached = (workdir / ".missedcall.env.parsed").exists()
            _one("hook", 0, workdir)  # warm the page cache and the .pyc files; not counted
            timed = _in_child(["baseline", "baseline-IS", "hook"], args.n, 1, workdir)
            # Peak RSS and CPU seconds per run, each variant alone (CPU time suffers less than wall time
            # from other people's work on a shared box).
            alone = max(5, args.n // 2)
            only_base = _in_child(["baseline"], alone, 0, workdir)
            only_hook = _in_child(["hook"], alone, args.n + 1, workdir)
            rss_base, rss_hook = only_base["peak_rss_kib"], only_hook["peak_rss_kib"]
            cpu_base, cpu_hook = only_base["cpu"] / alone, only_hook["cpu"] / alone  # type: ignore[operator]
            imports: list[str] = []
            if args.importtime:
                imports, modules = importtime(workdir, 10_000, args.top)
            mails = len(list((workdir / "mail").glob("*.eml")))
            expected = 1 + args.n + alone + (1 if args.importtime else 0)

    base = timed["durations"]["baseline"]  # type: ignore[index]
    base_is = timed["durations"]["baseline-IS"]  # type: ignore[index]
    hook = timed["durations"]["hook"]  # type: ignore[index]
    print(f"database: {args.db}; runs per variant: {args.n}, interleaved; mails handed to sendmail: {mails};"
          f" settings cache {'present' if cached else 'absent (a version without it?)'}")  # fmt: skip
    print(_summary("python3 -c pass", base) + f"   peak RSS {rss_base / 1024:5.1f} MiB")  # type: ignore[operator]
    print(_summary("python3 -IS -c pass", base_is))
    print(_summary("missed.py (as #! -IS)", hook) + f"   peak RSS {rss_hook / 1024:5.1f} MiB")  # type: ignore[operator]
    print(f"wall-time ratio, hook / python3 -c pass (issue 12's baseline): medians"
          f" {statistics.median(hook) / statistics.median(base):.2f}   mins {min(hook) / min(base):.2f}")  # fmt: skip
    print(f"wall-time ratio, hook / python3 -IS -c pass (the same start-up flags): medians"
          f" {statistics.median(hook) / statistics.median(base_is):.2f}   mins {min(hook) / min(base_is):.2f}")
    print(f"CPU seconds per run (user+sys, {alone} runs each alone; the hook's include sendmail's sh):"
          f" baseline {cpu_base * 1000:.1f} ms, hook {cpu_hook * 1000:.1f} ms, ratio {cpu_hook / cpu_base:.2f}")
    if args.importtime:
        print("hook imports (-X importtime), largest cumulative first:")
        print("\n".join(imports))
        heavy = [m for m in ("dataclasses", "inspect", "email", "logging", "six", "asterisk", "typing") if m in modules]
        print(f"  loaded by the end of the run: {', '.join(heavy) or 'none of'} (of dataclasses, inspect, email,"
              " logging, six, asterisk, typing)")  # fmt: skip
    if mails != expected:
        print(f"expected {expected} mails, got {mails}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
