"""The FastAGI service on a real Asterisk 22 (docs/fastagi.md), end to end.

missedcall is put in by ``install.sh``, then ``install.sh --service`` switches the
block to the service (the box has no systemd: the test starts ``missedcall-admin
serve`` inside the box as the asterisk user, and stops it by its pid). Scenarios:
an abandon and a timeout-then-overflow-abandon through the service, then the
service stopped and the same abandon handled by the process hook (the dialplan's
``AGISTATUS`` = ``FAILURE`` fallback); last, ``--uninstall``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pbx as e2e
import pytest
from fastagi_service import Service, free_port
from installed import CONFIG, OVERRIDE, Box
from processes import wait_for
from test_scenarios import ASTERISK_ETC, QUEUES, RECIPIENTS, check_notification, check_row, recipients_of

from tests.support.freepbx import make_freepbx_like, write_freepbx_conf
from tests.support.mariadb import MariaDBDatabase, MariaDBServer, temporary_mariadb


@pytest.fixture(scope="module")
def freepbx_db(mariadb_server: MariaDBServer) -> Iterator[MariaDBDatabase]:
    with temporary_mariadb(mariadb_server, prefix="mc_e2e_fa_") as db:
        make_freepbx_like(db, QUEUES)
        yield db


@pytest.fixture(scope="module")
def served(
    pbx_chroot: Path, freepbx_db: MariaDBDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Box, Service]]:
    with e2e.Pbx(pbx_chroot, asterisk_etc=ASTERISK_ETC) as pbx:
        conf = write_freepbx_conf(tmp_path_factory.mktemp("freepbx") / "freepbx.conf", freepbx_db)
        pbx.write_file("/etc/freepbx.conf", conf.read_bytes(), mode=0o640, owner="asterisk")
        box = Box(pbx, freepbx_db, RECIPIENTS)
        box.install()
        port = free_port()
        pbx.append_file(CONFIG, f"MISSEDCALL_FASTAGI_LISTEN=127.0.0.1:{port}\n")
        service = Service(pbx, port)
        service.start()  # listening before the dialplan calls it, as install.sh --service does with systemd
        output = box.install_sh("--service")
        assert f"agi://127.0.0.1:{port}/missed" in output, output[-3000:]
        live = pbx.rx("dialplan show h@ext-queues")
        assert f"AGI(agi://127.0.0.1:{port}/missed" in live and "AGI(missed.py" in live, live
        try:
            yield box, service
        finally:
            service.stop()


def ran(line: str, script: str) -> bool:
    """An ``Executing [h@ext-queues:N] AGI("chan", "script,args")`` line of Asterisk's log."""
    return "Executing [h@ext-queues:" in line and "AGI(" in line and f'"{script}' in line


def _abandon(box: Box, caller: str, name: str) -> tuple[object, str]:
    call = box.pbx.originate_local("600", caller_num=caller, caller_name=name, hangup_after=3)
    callid = call.uniqueid()
    call.wait_event("ABANDON", timeout=30)
    return call, callid


def test_1_abandon_through_the_service(served: tuple[Box, Service]) -> None:
    box, service = served
    call, callid = _abandon(box, "79161234567", "Ivan Petrov")
    copies = box.wait_mails(callid, len(recipients_of("600")), call=call)  # type: ignore[arg-type]
    box.settle(call)  # type: ignore[arg-type]
    check_notification(
        copies, callid=callid, queue="600", reason="ABANDON", caller="Ivan Petrov <79161234567>",
        wait=(2, 5), position=1, path=["600"],
    )  # fmt: skip
    (row,) = box.rows([callid])
    check_row(row, queue="600", reason="ABANDON", source="agi", path=["600"],
              caller_num="79161234567", caller_name="Ivan Petrov")  # fmt: skip
    lines = call.log_lines()  # type: ignore[attr-defined]
    assert any(ran(line, f"agi://127.0.0.1:{service.port}/missed") for line in lines), lines
    assert not any(ran(line, "missed.py") for line in lines), "the fallback ran although the service is up"
    said = box.agi_lines(call)  # type: ignore[arg-type]
    assert any(f"missed call {callid} in queue 600: recorded" in line for line in said), said


def test_2_timeout_then_overflow_abandon_through_the_service(served: tuple[Box, Service]) -> None:
    box, service = served
    call = box.pbx.originate_local("600", caller_num="5552004", caller_name="Overflow Caller", hangup_after=11)
    callid = call.uniqueid()
    call.wait_event("ABANDON", timeout=40)
    box.settle(call)
    copies = box.wait_mails(callid, len(recipients_of("601")), call=call)
    box.sweep()  # the sweeper sees the same call: it must not mail it again
    box.pbx.wait_mail_idle()
    assert len(box.mails(callid)) == len(copies)
    check_notification(
        box.mails(callid), callid=callid, queue="601", reason="ABANDON", caller="Overflow Caller <5552004>",
        wait=(1, 5), path=["600", "601"],
    )  # fmt: skip
    lines = call.log_lines()
    assert any(ran(line, f"agi://127.0.0.1:{service.port}/missed") for line in lines)
    assert not any(ran(line, "missed.py") for line in lines)


def test_2b_fifty_abandons_at_once_through_the_service(served: tuple[Box, Service]) -> None:
    """All recorded and mailed by the service itself: nothing left for retry."""
    box, _ = served
    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
        calls = list(
            pool.map(
                lambda i: box.pbx.originate_local(
                    "600", caller_num=f"7100{i:03d}", caller_name=f"Burst {i}", hangup_after=3
                ),
                range(50),
            )
        )
    callids = [call.uniqueid() for call in calls]
    for call in calls:
        call.wait_event("ABANDON", timeout=60)
    last_hangup = time.monotonic()
    box.pbx.wait_no_channels("Local/", timeout=120)
    channels_done = time.monotonic() - last_hangup
    wait_for(
        lambda: len({m["X-Missedcall-Callid"] for m in box.mails()} & set(callids)) == 50, 60, "50 mailed", 0.2
    )
    mailed_in = time.monotonic() - last_hangup
    box.pbx.wait_mail_idle()
    copies = len(recipients_of("600"))
    wrong = {c: len(box.mails(c)) for c in callids if len(box.mails(c)) != copies}
    assert not wrong, wrong
    rows = box.rows(callids)
    assert len(rows) == 50 and {r["status"] for r in rows} == {"sent"} and {r["source"] for r in rows} == {"agi"}
    print(f"\n50 abandons through the service: channels gone {channels_done:.1f} s, all mailed {mailed_in:.1f} s"
          " after the last hang-up")  # fmt: skip


def _hold_a_session(port: int, seconds: float) -> None:
    """A session that fills a cap of 1 for about ``seconds``: its header block trickles in (under the
    service's 2 s header bound), then it answers neither GET FULL VARIABLE nor VERBOSE (2 s each)."""
    lines = [b"agi_network: yes\n", b"agi_network_script: missed\n", b"agi_request: agi://127.0.0.1/missed\n",
             b"agi_channel: Local/holder\n", b"agi_uniqueid: 1000000000.999\n", b"agi_arg_1: 600\n", b"\n"]  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=seconds + 5) as conn:
        for line in lines:
            conn.sendall(line)
            time.sleep(1.6 / len(lines))
        until = time.monotonic() + seconds
        with contextlib.suppress(OSError):
            while time.monotonic() < until and conn.recv(4096):
                pass


def test_2c_over_the_cap_asterisk_is_told_failure_and_the_process_hook_mails(served: tuple[Box, Service]) -> None:
    """MISSEDCALL_FASTAGI_MAX_SESSIONS=1 and one session in flight: the abandon's FastAGI is told FAILURE,
    Asterisk sets AGISTATUS=FAILURE and the dialplan runs missed.py, which mails it."""
    box, service = served
    assert service.pid is not None
    box.pbx.append_file(CONFIG, "MISSEDCALL_FASTAGI_MAX_SESSIONS=1\n")
    os.kill(service.pid, signal.SIGHUP)
    time.sleep(1.0)  # the reload is one line in the event loop
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        holder = pool.submit(_hold_a_session, service.port, 6.0)
        time.sleep(0.2)
        call, callid = _abandon(box, "5552777", "Over Cap")
        copies = box.wait_mails(callid, len(recipients_of("600")), call=call)  # type: ignore[arg-type]
        box.settle(call)  # type: ignore[arg-type]
        holder.result(30)
    assert len(copies) == len(recipients_of("600"))
    lines = call.log_lines()  # type: ignore[attr-defined]
    assert any(ran(line, f"agi://127.0.0.1:{service.port}/missed") for line in lines), lines
    # res_agi takes the line before its debug echo, so the log shows its effect: the GotoIf after the
    # AGI evaluated "${AGISTATUS}"!="FAILURE" to 0, and missed.py ran.
    assert any("Executing [h@ext-queues:" in line and 'GotoIf(' in line and '"0?done")' in line for line in lines), [
        line for line in lines if "h@ext-queues" in line
    ]
    assert any(ran(line, "missed.py") for line in lines), "AGISTATUS was not FAILURE: the fallback did not run"
    said = box.agi_lines(call)  # type: ignore[arg-type]
    assert said and said[-1].endswith(": sent"), said  # missed.py's own line
    (row,) = box.rows([callid])
    assert row["status"] == "sent"
    # The cap free again, the next abandon goes through the service alone.
    later, later_id = _abandon(box, "5552778", "Under Cap")
    box.wait_mails(later_id, len(recipients_of("600")), call=later)  # type: ignore[arg-type]
    box.settle(later)  # type: ignore[arg-type]
    assert not any(ran(line, "missed.py") for line in later.log_lines())  # type: ignore[attr-defined]


def test_3_service_stopped_the_process_hook_mails(served: tuple[Box, Service]) -> None:
    box, service = served
    service.stop()
    call, callid = _abandon(box, "5553003", "Fallback Caller")
    copies = box.wait_mails(callid, len(recipients_of("600")), call=call)  # type: ignore[arg-type]
    box.settle(call)  # type: ignore[arg-type]
    check_notification(
        copies, callid=callid, queue="600", reason="ABANDON", caller="Fallback Caller <5553003>",
        wait=(2, 5), position=1, path=["600"],
    )  # fmt: skip
    lines = call.log_lines()  # type: ignore[attr-defined]
    assert any(ran(line, f"agi://127.0.0.1:{service.port}/missed") for line in lines)  # tried first
    assert any(ran(line, "missed.py") for line in lines), "the fallback did not run"
    said = box.agi_lines(call)  # type: ignore[arg-type]
    assert len(said) == 1 and said[0].endswith(": sent"), said


def test_4_uninstall_removes_block_and_unit(served: tuple[Box, Service]) -> None:
    box, _ = served
    box.uninstall()
    box.pbx.rx("dialplan reload")
    assert box.pbx.path(OVERRIDE).read_bytes() == box.override_before
    assert not box.pbx.path("/etc/systemd/system/missedcall-fastagi.service").exists()
    assert "agi://" not in box.pbx.rx("dialplan show h@ext-queues")
