"""Measurement equipment for bench/e2e_bench.py: what it puts into the e2e PBX to
timestamp a call, and how it reads the stamps back.

Three clocks, all CLOCK_REALTIME of the one kernel (a PID/mount namespace does not
virtualise it), so instants taken inside the box compare with each other:

* **hang-up**: the caller's own side of the call (the ;1 half of the Local channel)
  runs ``[bench-caller]``: it waits until the epoch second in ``<token>.at`` (so that a
  burst of callers hangs up together however long placing them took), writes ``${STRFTIME(,UTC,...%6q)}`` (microseconds,
  Asterisk's ast_tvnow) to a file with ``FILE()`` (no process, no ``System``) and
  hangs up in the next priority. That is the instant the caller hung up; everything
  after it (Asterisk tearing the queue call down, its h extension, our hook) counts.
* **handed to the MTA**: ``MISSEDCALL_SENDMAIL`` (the product's own setting) points at
  ``WRAPPER_C``, a small static program that notes the time, reads the message, runs
  postfix's real ``/usr/sbin/sendmail`` on it and notes the time again once sendmail
  exited: postdrop has written the queue file into maildrop then, which is postfix
  accepting the mail. The message's X-Missedcall-Callid tells which call it was.
  bench/e2e_bench.py measures what the wrapper adds against the bare sendmail.
* **in between**: Asterisk's full log (``dateformat = %F %T.%3q``: milliseconds, taken
  when the line is logged) with ``agi set debug on``: the h extension's priorities,
  each AGI line Asterisk sent or received, and the end of the AGI.
"""

from __future__ import annotations

import datetime
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Optional

HARNESS_DIR = "/var/lib/asterisk/e2e-calls"  # tests/e2e/asterisk_conf.py's: the [callers] files
STAMP_DIR = "/var/lib/missedcall-bench"
WRAPPER_PATH = "/usr/local/sbin/sendmail-stamp"
BENCH_QUEUE = "690"

# The wrapper, in C (built on the host with cc -static, so it needs nothing in the box): one
# exec, the message read into memory (a few KB), fork + exec of postfix's sendmail fed from a
# pipe, waitpid, a stamp file "started accepted status callid". No shell, no tee.
WRAPPER_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_REALTIME, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    double t0 = now();
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    ssize_t got;
    while ((got = read(0, buf + len, cap - len)) > 0) {
        len += (size_t)got;
        if (len == cap) { cap *= 2; buf = realloc(buf, cap + 1); }
    }
    buf[len] = 0;
    int p[2];
    if (!buf || pipe(p) != 0) return 75;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[0], 0); close(p[0]); close(p[1]);
        argv[0] = "/usr/sbin/sendmail";
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[0]);
    for (size_t off = 0; off < len && (got = write(p[1], buf + off, len - off)) > 0; off += (size_t)got) {}
    close(p[1]);
    int status = 0, rc = 1;
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)) rc = WEXITSTATUS(status);
    double t1 = now();
    char callid[128] = "-";
    for (char *line = buf; line && *line && *line != '\n' && *line != '\r';
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : 0) {
        if (strncasecmp(line, "X-Missedcall-Callid:", 20) == 0) {
            char *v = line + 20; while (*v == ' ' || *v == '\t') v++;
            size_t n = strcspn(v, "\r\n"); if (n >= sizeof callid) n = sizeof callid - 1;
            memcpy(callid, v, n); callid[n] = 0;
            break;
        }
    }
    char name[256];
    snprintf(name, sizeof name, "%s/%d.%.6f.t", STAMP_DIR, (int)getpid(), t0);
    FILE *f = fopen(name, "w");
    if (f) { fprintf(f, "%.6f %.6f %d %s\n", t0, t1, rc, callid); fclose(f); }
    return rc;
}
"""

# Where no C compiler is at hand: the same in bash ($EPOCHREALTIME is a builtin), with tee
# keeping a copy to tell the call; bash start-up and the tee cost a few ms more.
SENDMAIL_WRAPPER_SH = f"""#!/bin/bash
# bench/e2e_bench.py's measurement equipment: when postfix's sendmail accepted a message.
t0=$EPOCHREALTIME
f={STAMP_DIR}/$BASHPID.$t0
tee "$f.eml" | /usr/sbin/sendmail "$@"
rc=${{PIPESTATUS[1]}}
t1=$EPOCHREALTIME
printf '%s %s %s\\n' "$t0" "$t1" "$rc" > "$f.t"
exit "$rc"
"""


def build_wrapper(workdir: Path) -> tuple[bytes, str]:
    """The wrapper's bytes and what it is: a static C binary if cc works here, else the bash script."""
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        src, binary = workdir / "sendmail-stamp.c", workdir / "sendmail-stamp"
        src.write_text(WRAPPER_C)
        built = subprocess.run(
            [cc, "-O2", "-static", f'-DSTAMP_DIR="{STAMP_DIR}"', "-o", str(binary), str(src)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if built.returncode == 0:
            return binary.read_bytes(), f"static C wrapper (built with {cc})"
    return SENDMAIL_WRAPPER_SH.encode(), "bash wrapper with tee (no C compiler on the host)"


# extensions_custom.conf: the caller's side of a bench call, and a queue without members
# (FreePBX-shaped like 600, an hour's max wait) for bursts of hundreds of callers:
# 2 channels a caller instead of 2 plus the ringing members' Local pairs.
DIALPLAN = f"""
; bench/e2e_bench.py
[bench-caller]
exten => _X.,1,Set(W=$[${{FILE({HARNESS_DIR}/${{EXTEN}}.at)}} - ${{STRFTIME(,UTC,%s.%6q)}}])
 same => n,Wait(${{IF($[${{W}} > 0]?${{W}}:0)}})
 same => n,Set(FILE({HARNESS_DIR}/${{EXTEN}}.hangup)=${{STRFTIME(,UTC,%Y-%m-%dT%H:%M:%S.%6q)}})
 same => n,Hangup()

[ext-queues-custom]
exten => {BENCH_QUEUE},1,Answer
exten => {BENCH_QUEUE},n,Set(QUEUENUM={BENCH_QUEUE})
exten => {BENCH_QUEUE},n,Set(QUEUEJOINTIME=${{EPOCH}})
exten => {BENCH_QUEUE},n,QueueLog({BENCH_QUEUE},${{UNIQUEID}},NONE,DID,${{FROM_DID}})
exten => {BENCH_QUEUE},n(qcall),Queue({BENCH_QUEUE},t,,,3600,,,,,)
exten => {BENCH_QUEUE},n,Goto(app-blackhole,hangup,1)
"""

QUEUES = f"""
; bench/e2e_bench.py: no members, callers just wait
[{BENCH_QUEUE}]
strategy=ringall
joinempty=yes
leavewhenempty=no
maxlen=0
announce-frequency=0
announce-holdtime=no
announce-position=no
periodic-announce-frequency=0
timeout=15
retry=5
"""


def parse_utc(text: str) -> float:
    """``2026-12-03T15:42:05.996082`` (UTC) as epoch seconds."""
    when = datetime.datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S.%f")
    return when.replace(tzinfo=datetime.timezone.utc).timestamp()


def _log_time(line: str) -> Optional[float]:
    # "[2026-12-03 15:42:05.996] VERBOSE[450][C-00000001] ..." (the box runs in UTC)
    if not line.startswith("[") or len(line) < 25:
        return None
    try:
        when = datetime.datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return None
    return when.replace(tzinfo=datetime.timezone.utc).timestamp()


class Handoff:
    """One run of the wrapper: when sendmail started and when it had accepted the message."""

    def __init__(self, callid: str, started: float, accepted: float, status: int) -> None:
        self.callid, self.started, self.accepted, self.status = callid, started, accepted, status


def _callid_of(eml: Path) -> str:
    with eml.open("rb") as fh:
        for raw in fh:
            if raw in (b"\n", b"\r\n"):
                break
            if raw.lower().startswith(b"x-missedcall-callid:"):
                return raw.split(b":", 1)[1].strip().decode("ascii", "replace")
    return ""


def read_handoffs(stamp_dir: Path) -> list[Handoff]:
    """Every wrapper run so far (one per message handed to postfix)."""
    found = []
    for stamp in sorted(stamp_dir.glob("*.t")):
        fields = stamp.read_text().split()
        if len(fields) == 3:  # the bash wrapper: the callid is in the copy tee kept
            fields.append(_callid_of(stamp.with_suffix(".eml")))
        if len(fields) != 4:
            continue
        callid = "" if fields[3] == "-" else fields[3]
        found.append(Handoff(callid, float(fields[0]), float(fields[1]), int(fields[2])))
    return found


# What the h extension of one call's ;2 half logged, and when (full log, agi debug on).
MARKS = {
    "h1": re.compile(r"Executing \[h@ext-queues:1\]"),
    "agi": re.compile(r"Executing \[h@ext-queues:2\] AGI\("),
    "tx": re.compile(r"AGI Tx >> agi_request"),
    "rx": re.compile(r"AGI Rx << "),
    "done": re.compile(r"AGI Script .* completed|<[^>]*>AGI Script"),
    "h_end": re.compile(r"Spawn extension \(ext-queues, h, |Executing \[h@ext-queues:\d+\] (NoOp|Gosub)\("),
}


def log_marks(lines: Iterable[str], channel_prefix: str) -> dict[str, float]:
    """First time of each MARKS event for the ;2 half of the call's channel."""
    found: dict[str, float] = {}
    for line in lines:
        if channel_prefix not in line or ";2" not in line:
            continue
        for name, pattern in MARKS.items():
            if name not in found and pattern.search(line):
                when = _log_time(line)
                if when is not None:
                    found[name] = when
    return found


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1): p99 of 500 is the 495th smallest."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered) - 1e-9)))
    return ordered[rank - 1]


def summary(values_ms: Sequence[float]) -> str:
    if not values_ms:
        return "no values"
    return (
        f"n={len(values_ms)} min {min(values_ms):.0f} / median {statistics.median(values_ms):.0f}"
        f" / p90 {quantile(values_ms, 0.9):.0f} / max {max(values_ms):.0f} ms"
    )


# --profile: a module in install.sh's venv, imported by a .pth file (Debian's own
# sitecustomize would shadow ours), that profiles the process hook when a flag file exists
# (the hook runs atexit callbacks before its os._exit). Diagnosis equipment: it is put in
# only for that pass and removed after it.
PROFILE_MODULE = "_mc_bench_profile"
PROFILE_FLAG = f"{STAMP_DIR}/profile-on"
PROFILER = f"""# bench/e2e_bench.py --profile (measurement equipment, not missedcall's)
import os, sys
if os.path.exists({PROFILE_FLAG!r}) and any(a.endswith("missed.py") for a in getattr(sys, "orig_argv", ())):
    import atexit, cProfile
    _bench_profile = cProfile.Profile()
    _bench_profile.enable()

    def _bench_dump():
        _bench_profile.disable()
        _bench_profile.dump_stats({STAMP_DIR!r} + "/hook.%d.prof" % os.getpid())
        with open({STAMP_DIR!r} + "/hook.%d.modules" % os.getpid(), "w") as fh:
            fh.write("\\n".join(sorted(sys.modules)) + "\\n")

    atexit.register(_bench_dump)
"""

PROFILE_REPORT = f"""
import glob, io, pstats, resource, subprocess, sys
files = sorted(glob.glob({STAMP_DIR!r} + "/hook.*.prof"))
out = io.StringIO()
stats = pstats.Stats(*files, stream=out)
stats.sort_stats("cumulative").print_stats(45)
print(f"{{len(files)}} profiled hook runs, cumulative seconds summed over all of them")
print(out.getvalue().split("Ordered by:", 1)[-1])
# The same imports again, unprofiled: what a hook run loaded that a bare interpreter does not.
python = sys.argv[1]
bare = set(subprocess.run([python, "-c", "import sys; print(chr(10).join(sys.modules))"],
                          capture_output=True, text=True, check=True).stdout.split())
hook = set(open(sorted(glob.glob({STAMP_DIR!r} + "/hook.*.modules"))[-1]).read().split())
extra = sorted(m for m in hook - bare if not m.startswith("_mc_bench") and m not in ("cProfile", "_lsprof", "profile"))
print(f"a hook run loads {{len(extra)}} modules beyond python -c pass;"
      " python -X importtime of them (top 25, cumulative):")
imp = subprocess.run([python, "-X", "importtime", "-c", "import " + ", ".join(extra)], capture_output=True, text=True)
rows = []
for line in imp.stderr.splitlines():
    if line.startswith("import time:") and "|" in line and "self" not in line:
        self_us, cum_us, raw = line[len("import time:"):].split("|")
        rows.append((int(cum_us), len(raw) - len(raw.lstrip()), raw.strip()))
ours = [r for r in rows if r[2] in extra]  # not the start-up's own (site, encodings)
level = min(r[1] for r in ours)
print(f"    the top-level ones together: {{sum(r[0] for r in ours if r[1] == level) / 1000:.1f}} ms wall")
def parent(i):  # -X importtime lists a module's imports before it, one level deeper
    for later in rows[i + 1:]:
        if later[1] < rows[i][1]:
            return later[2]
    return "the hook (top level)"
for cum, i in sorted(((r[0], i) for i, r in enumerate(rows) if r[2] in extra), reverse=True)[:25]:
    print(f"    {{cum / 1000:7.1f}} ms  {{rows[i][2]:34s}} imported by {{parent(i)}}")
def cpu(argv):
    best = None
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
        best = used if best is None else min(best, used)
    return best
print(f"    CPU, best of 5: python -c pass {{cpu([python, '-c', 'pass']):.0f}} ms;"
      f" importing those modules {{cpu([python, '-c', 'import ' + ', '.join(extra)]):.0f}} ms;"
      f" import pymysql {{cpu([python, '-c', 'import pymysql']):.0f}} ms;"
      f" import traceback {{cpu([python, '-c', 'import traceback']):.0f}} ms")
chain = subprocess.run([python, "-c", "import sys, pymysql; print('traceback' in sys.modules,"
                        " '_colorize' in sys.modules, 'dataclasses' in sys.modules, 'inspect' in sys.modules)"],
                       capture_output=True, text=True)
print(f"    import pymysql loads traceback, _colorize, dataclasses, inspect: {{chain.stdout.strip()}}")
"""
