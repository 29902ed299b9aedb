"""The PBX bench/e2e_bench.py measures: tests/e2e's equipment (the cached sid chroot,
Asterisk 22 and postfix in a private namespace, missedcall put in by its own
install.sh), plus the stamps of bench/e2e_stamps.py.

``bench_box()`` yields a ``BenchBox`` and on the way out stops everything it started by
pid (the FastAGI service, Asterisk, postfix, the namespace's holder, with it every
mount) and drops the temporary MariaDB database and user; a MariaDB it had to start
itself it stops too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "tests" / "e2e"):  # the e2e modules import each other by bare name
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import chroot  # noqa: E402
import pbx as e2e  # noqa: E402
from calls import LocalCall  # noqa: E402
from e2e_stamps import BENCH_QUEUE, DIALPLAN, HARNESS_DIR, QUEUES, STAMP_DIR, WRAPPER_PATH, build_wrapper, parse_utc  # noqa: E402
from fastagi_service import Service, free_port  # noqa: E402
from installed import CONFIG, Box  # noqa: E402
from test_scenarios import ASTERISK_ETC, RECIPIENTS  # noqa: E402
from test_scenarios import QUEUES as E2E_QUEUES  # noqa: E402

from tests.support.freepbx import make_freepbx_like, write_freepbx_conf  # noqa: E402
from tests.support.mariadb import ensure_mariadb, stop_pid, temporary_mariadb  # noqa: E402

VENV = "/opt/missedcall/venv"  # where install.sh puts its (non-editable) virtualenv


class BenchBox:
    """The installed PBX, its FastAGI service (when switched on), and the stamp folder."""

    def __init__(self, box: Box, port: int) -> None:
        self.box = box
        self.pbx = box.pbx
        self.port = port
        self.service: Optional[Service] = None
        self.mode = "hook"  # what the dialplan calls: a plain install.sh put in the process hook

    @property
    def stamp_dir(self) -> Path:
        return self.pbx.path(STAMP_DIR)

    def install_kind(self) -> str:
        """What install.sh installed: pip's own word on it (an editable install has a direct_url)."""
        probe = self.pbx.run(
            [f"{VENV}/bin/python", "-c", "import missedcall, importlib.metadata as m; "
             "d = m.distribution('missedcall'); print(missedcall.__file__, d.version, "
             "'EDITABLE' if (d.read_text('direct_url.json') or '').find('editable') >= 0 else 'non-editable')"],
        )  # fmt: skip
        return probe.stdout.strip()

    # -- the two paths --------------------------------------------------------- #

    def use_service(self) -> None:
        """``install.sh --service``: the dialplan calls the FastAGI service first (started here, by pid)."""
        if self.mode == "service":
            return
        if self.service is None:
            self.service = Service(self.pbx, self.port)
            self.service.start()  # listening before the dialplan calls it, as with systemd
        output = self.box.install_sh("--service")
        if f"agi://127.0.0.1:{self.port}/missed" not in self.pbx.rx("dialplan show h@ext-queues"):
            raise RuntimeError(f"install.sh --service did not switch the dialplan:\n{output[-2000:]}")
        self.mode = "service"

    def use_hook(self) -> None:
        """A plain ``install.sh``: back to the process hook alone; the service is stopped."""
        if self.mode == "hook":
            return
        self.box.install_sh()
        if "agi://" in self.pbx.rx("dialplan show h@ext-queues"):
            raise RuntimeError("a plain install.sh left the FastAGI in the dialplan")
        self.stop_service()
        self.mode = "hook"

    def stop_service(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    # -- calls ----------------------------------------------------------------- #

    def place(self, exten: str, hang_up_at: float, caller_num: str, caller_name: str) -> LocalCall:
        """A caller into exten@ext-queues who hangs up at the epoch second hang_up_at (bench-caller)."""
        token = f"{next(self.pbx.tokens):04d}"
        base = f"{HARNESS_DIR}/{token}"
        files = {"num": caller_num, "name": caller_name, "did": "5559000", "context": "ext-queues",
                 "exten": exten, "at": f"{hang_up_at:.6f}"}  # fmt: skip
        for suffix, value in files.items():
            self.pbx.write_file(f"{base}.{suffix}", value, owner="asterisk")
        said = self.pbx.rx(f"channel originate Local/{token}@callers extension {token}@bench-caller").strip()
        if said:
            raise RuntimeError(f"channel originate said: {said}")
        return LocalCall(self.pbx, token)

    def hung_up_at(self, call: LocalCall) -> Optional[float]:
        try:
            return parse_utc(self.pbx.path(f"{HARNESS_DIR}/{call.token}.hangup").read_text())
        except (OSError, ValueError):
            return None

    def channels(self) -> int:
        out = self.pbx.rx("core show channels count")
        for line in out.splitlines():
            if "active channel" in line:
                return int(line.split()[0])
        return -1


def _settle_settings_cache(pbx: e2e.Pbx) -> str:
    """Let root write the settings cache the hook reads instead of importing python-dotenv.

    The file must be 2 s old first (settingscache's "racy" rule); then any missedcall-admin
    command run by root leaves ``.missedcall.env.parsed`` beside it.
    """
    time.sleep(2.2)
    pbx.run(["missedcall-admin", "recipients", "list"], timeout=60)
    env = pbx.path(CONFIG)
    cache = env.with_name("." + env.name + ".parsed")
    if cache.exists() and cache.stat().st_mtime >= env.stat().st_mtime:
        return "settings cache written after the last edit (the hook does not import python-dotenv)"
    return "NO settings cache: every hook parses missedcall.env with python-dotenv"


@contextlib.contextmanager
def bench_box(note: list[str]) -> Iterator[BenchBox]:
    """Build (or reuse) the chroot, start a PBX, install missedcall with install.sh, add the stamps."""
    root = chroot.ensure_chroot()  # waits on its lock while another run builds it
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mc-e2e-bench-")))
        server, started_pid = ensure_mariadb(work / "mariadb")
        if started_pid is not None:
            stack.callback(stop_pid, started_pid, 60)
        db = stack.enter_context(temporary_mariadb(server, prefix="mc_e2eb_"))
        make_freepbx_like(db, (*E2E_QUEUES, (BENCH_QUEUE, "Bench burst")))
        pbx = e2e.Pbx(root, asterisk_etc=ASTERISK_ETC)
        stack.callback(lambda: note.append("stopped by pid: " + "; ".join(pbx.stop_report)))  # after pbx.stop()
        stack.enter_context(pbx)
        conf = write_freepbx_conf(work / "freepbx.conf", db)
        pbx.write_file("/etc/freepbx.conf", conf.read_bytes(), mode=0o640, owner="asterisk")
        box = Box(pbx, db, RECIPIENTS)
        box.install()
        bench = BenchBox(box, free_port())
        stack.callback(bench.stop_service)  # before the PBX goes (ExitStack unwinds in reverse)
        wrapper, kind = build_wrapper(work)
        pbx.write_file(WRAPPER_PATH, wrapper, mode=0o755)
        note.append(f"MISSEDCALL_SENDMAIL={WRAPPER_PATH}: {kind}")
        stamps = pbx.path(STAMP_DIR)
        stamps.mkdir(parents=True, exist_ok=True)
        os.chown(stamps, *pbx.ids("asterisk"))
        pbx.append_file(
            CONFIG,
            "\n# bench/e2e_bench.py: the timestamping sendmail, no storm digest, the service's port\n"
            f"MISSEDCALL_SENDMAIL={WRAPPER_PATH}\nMISSEDCALL_FLOOD_LIMIT=100000\n"
            f"MISSEDCALL_FASTAGI_LISTEN=127.0.0.1:{bench.port}\n",
        )
        pbx.append_file("/etc/asterisk/extensions_custom.conf", DIALPLAN)
        pbx.append_file("/etc/asterisk/queues_custom.conf", QUEUES)
        pbx.reload()
        note.append(_settle_settings_cache(pbx))
        note.append(f"missedcall in the box: {bench.install_kind()} (install.sh's venv {VENV})")
        yield bench
