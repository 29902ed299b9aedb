"""A FastAGI service over its cap (MISSEDCALL_FASTAGI_MAX_SESSIONS) tells Asterisk FAILURE, so the
dialplan runs missed.py: the call is mailed by the process hook instead of being dropped.

The scripted peer does what res_agi's run_agi() does with a line starting with ``failure``
(AGISTATUS=FAILURE, then ``HANGUP`` and close); tests/e2e/test_fastagi_e2e.py shows it on
a real Asterisk 22.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from missedcall import config
from missedcall.admin import checks_fastagi
from missedcall.detect import listen
from tests.agibox import Pbx, abandon_lines, abandon_peer, callids_mailed, make_pbx
from tests.agipeer.network import NetRun, converse
from tests.fastagibox import Service, wait_for


@pytest.fixture
def pbx(tmp_path: Path, db_url: str) -> Pbx:
    return make_pbx(tmp_path, db_url, MISSEDCALL_FLOOD_LIMIT="100000")


def _while_one_is_held(service: Service, held: str, others: list[str]) -> tuple[NetRun, list[NetRun]]:
    """``held``'s peer answers after the service's reply bound (its session lasts over 2 s), so it fills a
    cap of 1; ``others`` come a second later, one after the other."""
    # fastagibox's readiness probe (a bare connect) is a session too, until the service closed it.
    wait_for(lambda: any("no AGI header block" in line for line in service.log_lines()))
    slow = abandon_peer(held)
    slow.reply_delay = 5

    async def scene() -> tuple[NetRun, list[NetRun]]:
        first = asyncio.create_task(converse(slow, service.host, service.port, timeout=30))
        await asyncio.sleep(1.0)  # it has sent its headers and waits to answer GET FULL VARIABLE
        rest = [await converse(abandon_peer(c), service.host, service.port, timeout=10) for c in others]
        return await first, rest

    return asyncio.run(scene())


def test_a_session_over_the_cap_is_told_failure_and_the_process_hook_mails_it(pbx: Pbx) -> None:
    base = int(time.time()) - 300
    held, over, later = f"{base}.1", f"{base}.2", f"{base}.3"
    pbx.write_queue_log(line for c in (held, over, later) for line in abandon_lines(c, "600", at=base))
    with Service(pbx, MISSEDCALL_FASTAGI_MAX_SESSIONS="1") as service:
        first, [refused] = _while_one_is_held(service, held, [over])
        assert refused.told_failure and refused.agistatus == "FAILURE", refused
        assert refused.commands == [] and refused.garbage == []  # nothing asked, nothing else said
        assert refused.held < 2, refused
        assert first.ok and first.agistatus == "SUCCESS", first
        # What the dialplan does next: GotoIf(AGISTATUS != FAILURE) does not jump, AGI(missed.py,...) runs.
        assert pbx.run(abandon_peer(over), ["600"]).ok
        again = asyncio.run(converse(abandon_peer(later), service.host, service.port, timeout=10))
        assert again.ok and again.agistatus == "SUCCESS", again  # the cap is free again
        status = checks_fastagi.probe(listen.Listen(service.host, service.port))  # what doctor reads
        assert status["refused"] == "1", status
        wait_for(lambda: len(callids_mailed(pbx.stored())) >= 3)
    assert service.proc.returncode == 0, service.stderr.read_text()
    mailed = Counter(callids_mailed(pbx.stored()))
    assert mailed == Counter({held: 1, over: 1, later: 1}), mailed
    [line] = [s for s in service.log_lines() if "FAILURE" in s]
    assert "MISSEDCALL_FASTAGI_MAX_SESSIONS=1" in line and "missed.py" in line


def test_sighup_rereads_the_cap(pbx: Pbx) -> None:
    base = int(time.time()) - 300
    held, over = f"{base}.1", f"{base}.2"
    pbx.write_queue_log(line for c in (held, over) for line in abandon_lines(c, "600", at=base))
    with Service(pbx) as service:
        pbx.configure(MISSEDCALL_FASTAGI_MAX_SESSIONS="1")
        service.signal(signal.SIGHUP)
        wait_for(lambda: any("SIGHUP" in line for line in service.log_lines()))
        first, [refused] = _while_one_is_held(service, held, [over])
        assert first.ok and refused.agistatus == "FAILURE", (first, refused)
        pbx.configure(MISSEDCALL_FASTAGI_MAX_SESSIONS="zero")  # a bad value: logged, the last good cap kept
        service.signal(signal.SIGHUP)
        wait_for(lambda: any("keeping 1" in line for line in service.log_lines()))
    assert service.proc.returncode == 0


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "２", "100001", "9" * 5000, "ten"])
def test_a_bad_cap_stops_the_start_in_one_line(pbx: Pbx, value: str) -> None:
    with pytest.raises(config.ConfigError, match=listen.MAX_SESSIONS_KEY):
        listen.max_sessions({listen.MAX_SESSIONS_KEY: value})
    pbx.configure(MISSEDCALL_FASTAGI_MAX_SESSIONS=value)
    done = pbx.admin("serve", "--listen", "127.0.0.1:1", timeout=30)
    assert done.returncode == 1 and listen.MAX_SESSIONS_KEY in done.stderr, done
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_cap_parses() -> None:
    assert listen.max_sessions({}) == listen.MAX_SESSIONS_DEFAULT == int(config.KEYS[listen.MAX_SESSIONS_KEY][0])
    assert listen.max_sessions({listen.MAX_SESSIONS_KEY: " 1 "}) == 1
    assert listen.max_sessions({listen.MAX_SESSIONS_KEY: "100000"}) == 100_000


def test_doctor_fails_a_bad_cap(pbx: Pbx) -> None:
    import json

    from missedcall.admin import installer

    state = pbx.tmp / "install.state"
    state.write_text(installer.render_state({"service": "agi://127.0.0.1:4574/missed"}))
    pbx.configure(MISSEDCALL_FASTAGI_MAX_SESSIONS="0")
    done = pbx.admin("doctor", "--state", str(state), "--json")
    [line] = [c for c in json.loads(done.stdout) if c["check"] == "fastagi"]
    assert line["status"] == "FAIL" and listen.MAX_SESSIONS_KEY in line["detail"], line
