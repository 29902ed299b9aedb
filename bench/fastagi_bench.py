#!/usr/bin/env python3
"""What does one missed call cost through the FastAGI service, against the process hook?

Both paths run for real against the scripted Asterisk 22 peer (tests/agipeer), an
SQLite (or ``--db``) database and a sendmail stand-in in plain sh (``exec cat`` into a
file: one process, the cheapest real program that takes a mail), with a flood limit
above the number of calls so storm control never holds a mail, and a caller number of
its own per call (a storm is many callers; ``--same-caller`` measures repeat callers,
whose alerts join the first one's thread):

* the process hook (agi-bin/missed.py) ``--hook-runs`` times, one process per call;
* ``missedcall-admin serve`` as a subprocess, then a burst of ``-n`` sessions (at least
  300) over ``--connections`` simultaneous connections, waited for until every mail went.

CPU seconds per missed call, counted the same way on both sides:

* the hook: its process and the sendmail it waits for (getrusage of children);
* the service: its process (/proc utime+stime) and its sendmail children (cutime+cstime);
* the stand-in alone, run as many times on a mail of the burst: its cost per mail.

The ratio is printed twice: with the sendmail children on both sides, and with the
stand-in's own cost taken off both sides (what is left is the hook, or the service with
whatever its children cost before they became the stand-in).

``--smtp plain|starttls+auth`` mails through an SMTP relay on loopback instead (the tests'
aiosmtpd server, run in this process, so its CPU counts on neither side; ``pip install
aiosmtpd`` into the venv): the set-up of a fleet that shares a relay. The hook then pays
smtplib and ssl at every call, the service keeps one relay connection per mail thread. Also the time each session
held the channel (median, p99) and whether every call was mailed exactly once. Ratios,
not asserts: the test suite checks correctness.

Run it in a virtualenv made like install.sh's (non-editable), from the repository root:

    python3 -m venv /tmp/mc-bench && /tmp/mc-bench/bin/pip install -q . \\
        && /tmp/mc-bench/bin/python bench/fastagi_bench.py
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # the test equipment; an installed missedcall still comes first

from benchdb import database  # noqa: E402 - bench/benchdb.py: on sys.path when this runs as a script

from tests.agipeer import AgiPeer, make_headers  # noqa: E402
from tests.agipeer.network import run_many  # noqa: E402
from tests.paths import REPO_ROOT  # noqa: E402

HOOK = REPO_ROOT / "agi-bin" / "missed.py"
TICK = os.sysconf("SC_CLK_TCK")


def _install_kind() -> str:
    import missedcall

    where = Path(missedcall.__file__).resolve()
    editable = ROOT in where.parents or any("__editable__" in p for p in sys.path)
    return f"{'EDITABLE (numbers are pessimistic)' if editable else 'non-editable'} install at {where.parent}"


def _cpu_of(pid: int) -> tuple[float, float]:
    """(own, own + waited-for children) CPU seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (utime + stime + cutime + cstime) / TICK


def _peer(callid: str, caller: str = "79161234567") -> AgiPeer:
    headers = make_headers(uniqueid=callid, callerid=caller, calleridname="Иван Петров", args=["600"])
    return AgiPeer(headers, {"ABANDONED": "TRUE", "QUEUEPOSITION": "1"})


def _mailed(maildir: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for path in maildir.glob("*.eml"):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("X-Missedcall-Callid:"):
                found[line.split(":", 1)[1].strip()] += 1
                break
            if not line:
                break
    return found


class Maildir:
    """Where the sendmail stand-in leaves each mail it took."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def count(self) -> int:
        return len(list(self.path.glob("*.eml")))

    def mailed(self) -> Counter[str]:
        return _mailed(self.path)

    def connections(self, since: int) -> str:
        return ""


class Relay:
    """An SMTP relay on loopback (the tests' aiosmtpd server, in this process: its CPU is on neither side)."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def count(self) -> int:
        return len(self.server.messages)

    def mailed(self) -> Counter[str]:
        return Counter(str(m.message["X-Missedcall-Callid"]) for m in self.server.messages)

    def connections(self, since: int) -> str:
        """How many connections the mails from the ``since``-th on came over."""
        return f" over {len({m.peer for m in self.server.messages[since:]})} relay connections"


def _workdir(tmp: Path, db_url: str, extra: dict[str, str] | None = None,
             openssl: dict[str, str] | None = None) -> dict[str, str]:  # fmt: skip
    """Settings, sendmail stand-in and settings cache for both sides; ``db_url`` from benchdb.database."""
    (tmp / "mail").mkdir()
    sendmail = tmp / "sendmail"
    # One process per mail: sh execs cat. Its pid names the file; noclobber turns a reused pid
    # into a failed (and so counted: "missing") mail instead of an overwritten one.
    sendmail.write_text('#!/bin/sh\nset -C\nexec cat > "$MISSEDCALL_TEST_MAILDIR/$$.eml"\n')
    sendmail.chmod(0o755)
    (tmp / "missedcall.env").write_text(
        f"MISSEDCALL_DB_URL={db_url}\n"
        f"MISSEDCALL_SENDMAIL={sendmail}\n"
        f"MISSEDCALL_QUEUE_LOG={tmp / 'queue_log'}\n"
        f"MISSEDCALL_FREEPBX_CONF={tmp / 'none'}\n"
        f"MISSEDCALL_SPOOL_DIR={tmp / 'spool'}\n"
        "MISSEDCALL_FLOOD_LIMIT=100000\n"  # the bench's own setting: storm control never holds a mail here
        "MISSEDCALL_FROM=pbx@example.com\nMISSEDCALL_FALLBACK_TO=ops@example.com\n"
        + "".join(f"{key}={value}\n" for key, value in (extra or {}).items())
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MISSEDCALL_CONFIG": str(tmp / "missedcall.env"),
        "MISSEDCALL_TEST_MAILDIR": str(tmp / "mail"),
        **(openssl or {}),
    }
    (tmp / "missedcall.env").chmod(0o640)
    # As on a PBX: the settings were written a while ago and a root command (init) left python-dotenv's
    # reading of them in the cache the hook uses (a file younger than 2 s is never cached). Without it the
    # hook would parse the file with python-dotenv at every call and flatter the ratio.
    time.sleep(2.2)
    argv = [sys.executable, "-m", "missedcall.admin.cli", "init"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"missedcall-admin init failed: {done.stderr.strip()}")
    if not (tmp / ".missedcall.env.parsed").exists():
        raise SystemExit("the settings cache was not written: the hook's figure would include python-dotenv")
    return env


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _caller(i: int, same: bool) -> str:
    return "79161234567" if same else f"7916{i:07d}"


def bench_hook(runs: int, env: dict[str, str], same_caller: bool) -> float:
    """CPU seconds per call of the process hook (its process and its sendmail)."""
    before = _children_cpu()
    for i in range(runs):
        peer = _peer(f"{int(time.time())}.{900000 + i}", _caller(9_000_000 + i, same_caller))
        result = peer.run([sys.executable, "-IS", str(HOOK), "600"], env=env, timeout=30)
        if not result.ok:
            raise SystemExit(f"hook run {i} failed: {result}")
    return (_children_cpu() - before) / runs


def bench_standin(runs: int, env: dict[str, str], maildir: Path) -> float:
    """CPU seconds per mail of the sendmail stand-in alone, fed one of the mails it took."""
    sample = next(maildir.glob("*.eml")).read_bytes()
    sink = maildir.parent / "standin"
    sink.mkdir()
    alone = {**env, "MISSEDCALL_TEST_MAILDIR": str(sink)}
    sendmail = str(maildir.parent / "sendmail")
    before = _children_cpu()
    for _ in range(runs):
        subprocess.run([sendmail, "-oi", "-f", "pbx@example.com", "--", "ops@example.com"], input=sample,
                       env=alone, check=True)  # fmt: skip
    return (_children_cpu() - before) / runs


def bench_service(
    calls: int, connections: int, env: dict[str, str], sink: Maildir | Relay, same_caller: bool, workers: int
) -> dict[str, object]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "missedcall.admin.cli", "serve", "--listen", f"127.0.0.1:{port}",
            "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > until or proc.poll() is not None:
                    raise SystemExit("the service did not start") from None
                time.sleep(0.05)
        time.sleep(0.3)
        before = sink.count()
        own0, all0 = _cpu_of(proc.pid)
        base = int(time.time())
        callids = [f"{base}.{i}" for i in range(calls)]
        started = time.monotonic()
        peers = [_peer(c, _caller(i, same_caller)) for i, c in enumerate(callids)]
        runs = run_many(peers, "127.0.0.1", port, connections=connections, timeout=60)
        sessions_done = time.monotonic() - started
        until = time.monotonic() + 300
        while sink.count() - before < calls and time.monotonic() < until:
            time.sleep(0.05)
        mailed_in = time.monotonic() - started
        time.sleep(0.5)  # let the last sendmail children be reaped
        own1, all1 = _cpu_of(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    held = sorted(r.held for r in runs)
    mailed = sink.mailed()
    return {
        "ok": all(r.ok for r in runs) and code == 0,
        "own": (own1 - own0) / calls,
        "all": (all1 - all0) / calls,
        "held_p50": statistics.median(held),
        "held_p99": held[min(len(held) - 1, int(len(held) * 0.99))],
        "sessions_s": sessions_done,
        "mailed_s": mailed_in,
        "once": sum(1 for c in callids if mailed[c] == 1),
        "missing": sum(1 for c in callids if mailed[c] == 0),
        "twice": sum(1 for c in callids if mailed[c] > 1),
        "connections": sink.connections(before),
    }


def _relay(mode: str, tmp: Path) -> Any:
    try:
        from tests.support.smtp import SmtpServer, make_tls_certificate
    except ImportError as exc:  # aiosmtpd: the tests' relay, not a dependency of missedcall
        raise SystemExit(f"--smtp needs aiosmtpd in this venv (pip install aiosmtpd): {exc}") from None
    server = SmtpServer(mode, make_tls_certificate(tmp))
    server.start()
    return server


def _system_cas(trust: str, cafile: Path, tmp: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(settings, environment) that make the relay's certificate trusted the way ``--trust`` says."""
    if trust == "cafile":
        return {"MISSEDCALL_SMTP_CAFILE": str(cafile)}, {}
    system = Path("/etc/ssl/certs")
    if trust == "bundle":  # the whole system bundle plus the relay's CA, parsed at every handshake (RHEL, SNG7)
        bundle = tmp / "ca-bundle.crt"
        bundle.write_bytes((system / "ca-certificates.crt").read_bytes() + cafile.read_bytes())
        return {}, {"SSL_CERT_FILE": str(bundle)}
    # Debian's directory of hash links with the relay's CA added, as update-ca-certificates would.
    certs = tmp / "certs"
    certs.mkdir()
    for link in system.glob("*.0"):
        (certs / link.name).symlink_to(link.resolve())
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(cafile)], check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    (certs / f"{digest}.0").symlink_to(cafile)
    return {}, {"SSL_CERT_DIR": str(certs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="sessions in the burst (at least 300; default 300)")
    parser.add_argument("--connections", type=int, default=30, help="simultaneous connections (default 30)")
    parser.add_argument("--db", choices=["sqlite", "mariadb"], default="sqlite",
                        help="a new SQLite file, or a throw-away MariaDB database dropped after (sqlite)")  # fmt: skip
    parser.add_argument("--hook-runs", type=int, default=30, help="process hook runs for its per-call cost (30)")
    parser.add_argument("--workers", type=int, default=4, help="the service's mail threads (serve --workers; 4)")
    parser.add_argument("--same-caller", action="store_true", help="one caller number for every call (repeats)")
    parser.add_argument("--smtp", choices=("plain", "starttls+auth"), default=None,
                        help="mail through an SMTP relay on loopback (aiosmtpd), not a sendmail")  # fmt: skip
    parser.add_argument("--trust", choices=("cafile", "system", "bundle"), default="cafile",
                        help="with --smtp starttls+auth, how the relay's certificate is trusted: MISSEDCALL_SMTP_CAFILE"
                             " (default), the system's CAs from Debian's directory of hash links, or a whole"
                             " bundle in SSL_CERT_FILE (RHEL/SNG7's layout)")  # fmt: skip
    args = parser.parse_args()
    calls = max(300, args.n)
    callers = "one caller for all (repeat alerts)" if args.same_caller else "a caller of its own per call"
    mail = f"SMTP relay on loopback ({args.smtp}, CAs: {args.trust})" if args.smtp else "sendmail stand-in"
    print(f"missedcall: {_install_kind()}; database: {args.db}; {callers}; {mail}")
    with tempfile.TemporaryDirectory(prefix="missedcall-fastagi-bench-") as tmp, database(args.db, Path(tmp)) as url:
        relay = _relay(args.smtp, Path(tmp)) if args.smtp else None
        try:
            extra: dict[str, str] = {}
            openssl: dict[str, str] = {}
            if relay is not None:
                extra, openssl = _system_cas(args.trust, relay.cafile, Path(tmp))
                extra.update(relay.config())
            env = _workdir(Path(tmp), url, extra, openssl)
            sink: Maildir | Relay = Relay(relay) if relay is not None else Maildir(Path(tmp) / "mail")
            hook = bench_hook(args.hook_runs, env, args.same_caller)
            service = bench_service(calls, args.connections, env, sink, args.same_caller, args.workers)
            standin = bench_standin(calls, env, Path(tmp) / "mail") if relay is None else 0.0
        finally:
            if relay is not None:
                relay.stop()
    own, everything = float(service["own"]), float(service["all"])  # type: ignore[arg-type]
    children = everything - own
    ms = 1000
    if relay is None:
        print(f"sendmail stand-in alone: {standin * ms:.2f} ms CPU per mail ({calls} runs)")
        print(f"process hook: {hook * ms:.1f} ms CPU per call with its sendmail, {(hook - standin) * ms:.1f} ms"
              f" without the stand-in's own cost ({args.hook_runs} runs)")  # fmt: skip
        print(f"service:      {everything * ms:.2f} ms CPU per call with its sendmail children"
              f" ({own * ms:.2f} ms the service process, {children * ms:.2f} ms its children);"
              f" {(everything - standin) * ms:.2f} ms without the stand-in's own cost ({calls} sessions)")  # fmt: skip
        print(f"ratio (hook / service, CPU per call): {hook / everything:.1f}x with sendmail on both sides,"
              f" {(hook - standin) / max(everything - standin, 1e-9):.1f}x with it on neither")  # fmt: skip
    else:
        print(f"process hook: {hook * ms:.1f} ms CPU per call ({args.hook_runs} runs)")
        print(f"service:      {everything * ms:.2f} ms CPU per call ({calls} sessions)")
        print(f"ratio (hook / service, CPU per call): {hook / everything:.1f}x (the relay's CPU on neither side)")
    print(
        f"burst of {calls} over {args.connections} connections: sessions done in {service['sessions_s']:.2f} s,"
        f" all mailed in {service['mailed_s']:.2f} s{service['connections']}"
    )
    print(
        f"channel held: median {service['held_p50'] * 1000:.1f} ms, p99 {service['held_p99'] * 1000:.1f} ms"  # type: ignore[operator]
    )
    print(f"mailed once: {service['once']}/{calls}, missing {service['missing']}, twice {service['twice']}")
    return 0 if service["ok"] and service["once"] == calls else 1


if __name__ == "__main__":
    sys.exit(main())
