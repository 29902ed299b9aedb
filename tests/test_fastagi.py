"""``missedcall-admin serve`` for real: a subprocess on loopback, the scripted Asterisk 22 peer
over TCP (tests/agipeer/network.py), a real database and the sendmail stand-in.

The contract is the process hook's (tests/test_hook.py): the same verdicts, rows and
mails from the same recorded sessions, only dead-channel-safe commands, and the
channel released once the call is recorded.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from missedcall.deliver import smtpkeep
from tests.agibox import Pbx, abandon_lines, abandon_peer, callids_mailed, make_pbx
from tests.agipeer import AgiPeer, make_headers
from tests.agipeer.network import NetRun, converse, run_many, run_network
from tests.fastagibox import Service, wait_for
from tests.mailbox import read_mail, text_part
from tests.paths import AGI_FIXTURES, QUEUE_LOG_FIXTURES

SAFE_ON_DEAD_CHANNEL = ("GET FULL VARIABLE", "VERBOSE")
FREEPBX_LOG = QUEUE_LOG_FIXTURES / "freepbx17-shaped.queue_log"


@pytest.fixture
def pbx(tmp_path: Path, db_url: str) -> Pbx:
    return make_pbx(tmp_path, db_url, MISSEDCALL_TIMEZONE="Europe/Moscow", MISSEDCALL_FLOOD_LIMIT="100000")


@pytest.fixture
def service(pbx: Pbx) -> object:
    with Service(pbx) as running:
        yield running
    assert running.proc.returncode == 0, running.stderr.read_text()


def fixture_peer(name: str, **kwargs: object) -> AgiPeer:
    return AgiPeer.from_fixture(AGI_FIXTURES / name, **kwargs)  # type: ignore[arg-type]


def session(service: Service, peer: AgiPeer, args: list[str], **kwargs: object) -> NetRun:
    peer.header_lines = _with_args(peer.header_lines, args)
    return run_network(peer, service.host, service.port, **kwargs)


def _with_args(lines: list[str], args: list[str]) -> list[str]:
    kept = [line for line in lines if not line.startswith("agi_arg_") and line != "\n"]
    return [*kept, *(f"agi_arg_{n}: {a}\n" for n, a in enumerate(args, 1)), "\n"]


def assert_clean(run: NetRun) -> None:
    assert run.ok, run
    assert run.garbage == []
    for command in run.commands:
        assert command.startswith(SAFE_ON_DEAD_CHANNEL), command
    assert all(not reply.startswith("511") for _, reply in run.exchanges)


def sent(pbx: Pbx, count: int) -> bool:
    calls = pbx.calls()
    return len(calls) >= count and all(c.status not in ("pending",) for c in calls)


# ---------------------------------------------------------------------- the hook's contract


def test_abandon_is_recorded_then_mailed(pbx: Pbx, service: Service) -> None:
    run = session(service, fixture_peer("1600-h.json"), ["600"])
    assert_clean(run)
    wait_for(lambda: len(read_mail(pbx.maildir)) == 1)
    [mail] = read_mail(pbx.maildir)
    assert sorted(mail.recipients) == ["boss@example.com", "ops600@example.com"]
    assert mail.message["Subject"] == "Missed: 600 — John Doe 5551234"
    wait_for(lambda: sent(pbx, 1))
    [call] = pbx.calls()
    assert (call.queue, call.reason, call.source, call.status) == ("600", "ABANDON", "agi", "sent")
    assert any("missedcall: missed call 1795659165.1 in queue 600: recorded" in c for c in run.commands)
    # One syslog line per call, naming the session (uniqueid and PBX).
    wait_for(lambda: any("missed call 1795659165.1" in line for line in service.log_lines()))
    lines = [line for line in service.log_lines() if line.startswith("missed call 1795659165.1")]
    assert len(lines) == 1 and ": sent [1795659165.1@127.0.0.1:" in lines[0], lines


def test_a_voicemail_left_after_the_queue_is_said_as_the_hook_says_it(pbx: Pbx, service: Service) -> None:
    peer = fixture_peer("1600-h.json")
    peer.variables["VMSTATUS"] = "SUCCESS"  # app_voicemail's outcome, asked in the same round trip
    assert_clean(session(service, peer, ["600"]))
    wait_for(lambda: len(read_mail(pbx.maildir)) == 1)
    [mail] = read_mail(pbx.maildir)
    assert text_part(mail.message).startswith("The caller left a voicemail.\n")
    wait_for(lambda: sent(pbx, 1))
    assert pbx.calls()[0].voicemail


@pytest.mark.parametrize(
    ("fixture", "subject_caller", "stored_name"),
    [
        ("2600-h.json", 'Doe, John "JJ" O\'Neil +1 555 123 4567', 'Doe, John "JJ" O\'Neil'),
        ("3600-h.json", "Иван Петров +7 916 123-45-67", "Иван Петров"),
        ("4600-h.json", "Line1 Line2 5550004", "Line1\nLine2"),
        ("5600-h.json", "a,b\\c d 555 12,34", "a,b\\c d"),
        ("0600-h.json", "unknown caller", ""),
    ],
)
def test_recorded_sessions_give_the_hooks_mail(
    pbx: Pbx, service: Service, fixture: str, subject_caller: str, stored_name: str
) -> None:
    run = session(service, fixture_peer(fixture), ["600"])
    assert_clean(run)
    wait_for(lambda: len(read_mail(pbx.maildir)) == 1)
    [mail] = read_mail(pbx.maildir)
    assert mail.message["Subject"] == f"Missed: 600 — {subject_caller}"
    [call] = pbx.calls()
    assert call.caller_name == stored_name


def test_every_recorded_session_is_answered_cleanly(pbx: Pbx, service: Service) -> None:
    names = sorted(p.name for p in AGI_FIXTURES.glob("*.json"))
    assert len(names) == 10
    for name in names:
        run = session(service, fixture_peer(name), ["600"])
        assert_clean(run)
    # 1602-h and 1602-hh are the same channel (h, then its hangup handler): one call, one mail.
    callids = {c.callid for c in pbx.calls()}
    wait_for(lambda: sent(pbx, len(callids)))
    mailed = Counter(callids_mailed(pbx.stored()))
    assert set(mailed) == callids and set(mailed.values()) == {1}, mailed


def test_queue_log_verdict_wins_over_variables(pbx: Pbx, service: Service) -> None:
    """Answered in queue_log (CONNECT): nothing recorded, whatever ABANDONED says."""
    pbx.write_queue_log(
        ["1795659165|1795659165.1|600|NONE|ENTERQUEUE||5551234|1", "1795659170|1795659165.1|600|PJSIP/1|CONNECT|5|x|3"]
    )
    assert_clean(session(service, fixture_peer("1600-h.json"), ["600"]))
    time.sleep(0.5)
    assert pbx.calls() == [] and read_mail(pbx.maildir) == []


def test_timeout_then_abandon_in_overflow_queue_from_queue_log(pbx: Pbx, service: Service) -> None:
    lines = [line.rstrip("\n") for line in FREEPBX_LOG.read_text().splitlines()]
    pbx.write_queue_log(lines)
    for line in lines:
        parts = line.split("|")
        if len(parts) > 4 and parts[4] == "ABANDON" and parts[2] == "601":
            callid = parts[1]
            break
    peer = AgiPeer(make_headers(uniqueid=callid, callerid="5551", args=["601"]), {"ABANDONED": "TRUE"})
    assert_clean(session(service, peer, ["601"]))
    wait_for(lambda: sent(pbx, 1))
    [call] = pbx.calls()
    assert call.queue == "601" and call.path[0] == "600" and call.reason == "ABANDON"


def test_reason_argument_and_unknown_reason(pbx: Pbx, service: Service) -> None:
    run = session(service, fixture_peer("1603-cont.json", variables={"ABANDONED": ""}), ["600", "timeout"])
    assert_clean(run)
    wait_for(lambda: sent(pbx, 1))
    assert pbx.calls()[0].reason == "TIMEOUT"
    run = session(service, fixture_peer("1600-h.json", variables={"ABANDONED": ""}), ["600", "BOGUS"])
    assert_clean(run)
    assert any("ignoring unknown REASON" in c for c in run.commands)
    assert len(pbx.calls()) == 1  # not abandoned, no reason: not missed


def test_same_call_twice_is_mailed_once(pbx: Pbx, service: Service) -> None:
    assert_clean(session(service, fixture_peer("1602-h.json"), ["600"]))
    second = session(service, fixture_peer("1602-hh.json"), ["600"])
    assert_clean(second)
    assert any("already recorded" in c for c in second.commands)
    wait_for(lambda: sent(pbx, 1))
    assert len(read_mail(pbx.maildir)) == 1


# ---------------------------------------------------------------------- hostile and odd peers


def test_hangup_line_on_a_live_channel(pbx: Pbx, service: Service) -> None:
    """FastAGI gets a HANGUP line instead of SIGHUP: skipped, the call still recorded."""
    for after, callid in ((0, "1700000000.1"), (1, "1700000000.2")):
        peer = AgiPeer(make_headers(uniqueid=callid, args=["600"]), {"ABANDONED": "TRUE"}, dead=False)
        run = session(service, peer, ["600"], hangup_after=after)
        assert run.ok, run
    wait_for(lambda: sent(pbx, 2))
    assert sorted(c.callid for c in pbx.calls()) == ["1700000000.1", "1700000000.2"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\xff\xfe" * 1000 + b"\n\n",
        b"agi_network: yes\n" + b"A" * 300_000 + b"\n\n",
        b"agi_network: yes\n" + b"agi_x: y\n" * 40_000 + b"\n",
        b"agi_network: yes\nagi_network_script: ../../etc/passwd\nagi_uniqueid: 1.1\n\n",
    ],
    ids=["empty", "http", "binary", "endless-line", "endless-block", "other-script"],
)
def test_garbage_is_closed_and_the_service_goes_on(pbx: Pbx, service: Service, raw: bytes) -> None:
    run = run_network(abandon_peer("x"), service.host, service.port, raw=raw, half_close=True, timeout=10)
    assert run.closed_by_service and run.held < 5, run
    assert run.commands == []
    assert_clean(session(service, fixture_peer("1600-h.json"), ["600"]))
    wait_for(lambda: sent(pbx, 1))


def test_half_open_and_slow_peers_are_bounded(pbx: Pbx, service: Service) -> None:
    async def silent() -> float:
        """Connects and never writes: closed by the service after its header bound."""
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(service.host, service.port)
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        return time.monotonic() - started

    async def scene() -> tuple[float, list[NetRun]]:
        half = converse(abandon_peer("1700000001.1"), service.host, service.port, half_close=True, timeout=10)
        slow = abandon_peer("1700000001.2")
        slow.reply_delay = 5  # answers GET FULL VARIABLE after the service's reply bound
        slowrun = converse(slow, service.host, service.port, timeout=20)
        good = converse(fixture_peer("1600-h.json"), service.host, service.port, timeout=10)
        waited, *runs = await asyncio.gather(silent(), half, slowrun, good)
        return waited, runs

    waited, (half, slow, good) = asyncio.run(scene())
    assert waited < 5
    assert half.closed_by_service and half.held < 5
    assert slow.closed_by_service and slow.held < 15
    assert good.ok and good.held < 2
    # The good one is mailed while the others wait out their bounds.
    wait_for(lambda: any(c.callid == "1795659165.1" and c.status == "sent" for c in pbx.calls()))


def test_peers_that_never_read_do_not_slow_the_others(pbx: Pbx, service: Service) -> None:
    async def scene() -> tuple[list[NetRun], NetRun]:
        mute = [
            converse(abandon_peer(f"1700000003.{i}"), service.host, service.port, read_nothing=True, timeout=6)
            for i in range(50)
        ]
        waiting = asyncio.gather(*mute)
        await asyncio.sleep(0.5)  # every mute session is connected and waiting on its reply
        good = await converse(fixture_peer("1600-h.json"), service.host, service.port, timeout=10)
        return list(await waiting), good

    mute, good = asyncio.run(scene())
    assert all(r.connected for r in mute)
    assert good.ok and good.held < 2, good
    wait_for(lambda: any(c.callid == "1795659165.1" and c.status == "sent" for c in pbx.calls()))


def test_version_probe(service: Service) -> None:
    peer = AgiPeer(make_headers(uniqueid="probe"), {})
    run = run_network(peer, service.host, service.port, url=f"agi://{service.host}:{service.port}/version")
    assert run.ok
    [line] = run.commands
    assert "fastagi version=" in line and f"pid={service.pid}" in line


# ---------------------------------------------------------------------- load


def test_thousand_sessions_at_once(tmp_path: Path, sqlite_url: str, smtp_server) -> None:  # type: ignore[no-untyped-def]
    box = make_pbx(
        tmp_path,
        sqlite_url,
        MISSEDCALL_FLOOD_LIMIT="100000",
        MISSEDCALL_TRANSPORT="smtp",
        MISSEDCALL_SMTP_HOST=smtp_server.host,
        MISSEDCALL_SMTP_PORT=str(smtp_server.port),
    )
    base = int(time.time()) - 300
    callids = [f"{base}.{i}" for i in range(1000)]
    box.write_queue_log(line for c in callids for line in abandon_lines(c, "600", at=base))
    with Service(box, "--backlog", "2000", "--workers", "8") as service:
        runs = run_many([abandon_peer(c) for c in callids], service.host, service.port, timeout=120)
        assert all(r.ok for r in runs), [r for r in runs if not r.ok][:3]
        wait_for(lambda: len(smtp_server.messages) >= 1000, 300)
        during = smtp_server.messages
    # Each of the 8 mail threads kept its relay connection for up to 20 mails (missedcall.deliver.smtpkeep).
    assert len({m.peer for m in during}) <= len(during) // smtpkeep.PER_CONNECTION + 8
    # A call whose row SQLite kept locked past the bound was mailed and spooled instead: retry records it.
    box.age_spool()
    assert box.admin("retry").returncode == 0
    mailed = Counter(str(m.message["X-Missedcall-Callid"]) for m in smtp_server.messages)
    assert set(mailed) == set(callids) and set(mailed.values()) == {1}
    assert {c.status for c in box.calls()} == {"sent"}


def test_full_mail_queue_leaves_recorded_calls_to_retry(pbx: Pbx) -> None:
    base = int(time.time()) - 300
    callids = [f"{base}.{i}" for i in range(40)]
    pbx.write_queue_log(line for c in callids for line in abandon_lines(c, "600", at=base))
    with Service(pbx, "--backlog", "1", "--workers", "1", FAKE_SENDMAIL_SLEEP="0.3") as service:
        runs = run_many([abandon_peer(c) for c in callids], service.host, service.port, timeout=60)
        assert all(r.ok for r in runs)
        assert all(r.held < 5 for r in runs)
    assert service.proc.returncode == 0
    rows = {c.callid: c for c in pbx.calls()}
    assert set(rows) == set(callids)  # every call recorded, whatever the queue
    busy = [line for line in service.log_lines() if "service busy" in line]
    assert busy, "the backlog of 1 never filled"
    with pbx.store() as store:  # as if the claim lease had passed
        store.execute("UPDATE missedcall_calls SET next_attempt_at = NULL WHERE status = 'pending'")
    assert pbx.admin("retry").returncode == 0
    mailed = Counter(callids_mailed(pbx.stored()))
    assert set(mailed) == set(callids) and set(mailed.values()) == {1}, mailed


# ---------------------------------------------------------------------- signals


def test_sighup_rereads_the_configuration(pbx: Pbx, service: Service) -> None:
    pbx.configure(MISSEDCALL_REASONS="TIMEOUT")
    service.signal(signal.SIGHUP)
    wait_for(lambda: any("SIGHUP" in line for line in service.log_lines()))
    assert_clean(session(service, fixture_peer("1600-h.json"), ["600"]))
    wait_for(lambda: sent(pbx, 1))
    [call] = pbx.calls()
    assert call.status == "skipped" and "MISSEDCALL_REASONS" in call.last_error


def test_sigterm_finishes_sessions_in_flight(pbx: Pbx) -> None:
    service = Service(pbx)
    slow = abandon_peer("1700000002.1")
    slow.reply_delay = 0.8
    pbx.write_queue_log(abandon_lines("1700000002.1", "600", at=1700000000))

    async def scene() -> NetRun:
        task = asyncio.create_task(converse(slow, service.host, service.port, timeout=20))
        await asyncio.sleep(0.4)  # the session is waiting for our reply
        service.signal(signal.SIGTERM)
        return await task

    run = asyncio.run(scene())
    assert service.proc.wait(30) == 0
    assert run.ok
    [call] = pbx.calls()
    assert call.callid == "1700000002.1" and call.status in ("sent", "pending")
    refused = run_network(abandon_peer("1700000002.2"), service.host, service.port, timeout=2)
    assert not refused.connected  # AGISTATUS=FAILURE: the dialplan falls back to the process hook


# ---------------------------------------------------------------------- doctor


def _doctor_line(pbx: Pbx, service_url: str) -> dict[str, str]:
    import json

    from missedcall.admin import installer

    state = pbx.tmp / "install.state"
    state.write_text(installer.render_state({"service": service_url}))
    done = pbx.admin("doctor", "--state", str(state), "--json")
    [line] = [c for c in json.loads(done.stdout) if c["check"] == "fastagi"]
    return line


def test_doctor_checks_the_running_service(pbx: Pbx, service: Service) -> None:
    url = f"agi://127.0.0.1:{service.port}/missed"
    pbx.configure(MISSEDCALL_FASTAGI_LISTEN=f"127.0.0.1:{service.port}")
    assert_clean(session(service, fixture_peer("1600-h.json"), ["600"]))
    line = _doctor_line(pbx, url)
    assert line["status"] == "OK", line
    assert f"pid {service.pid}" in line["detail"] and "1 session(s)" in line["detail"]
    assert "last none" not in line["detail"]
    line = _doctor_line(pbx, "agi://127.0.0.1:1/missed")  # the dialplan names another address
    assert line["status"] == "WARN" and "dialplan was written for" in line["detail"]


def test_doctor_fails_when_nothing_listens_and_on_a_bad_address(pbx: Pbx) -> None:
    from tests.fastagibox import free_port

    port = free_port()
    pbx.configure(MISSEDCALL_FASTAGI_LISTEN=f"127.0.0.1:{port}")
    line = _doctor_line(pbx, f"agi://127.0.0.1:{port}/missed")
    assert line["status"] == "FAIL" and "falls back to missed.py" in line["detail"], line
    pbx.configure(MISSEDCALL_FASTAGI_LISTEN="example.com:80")
    line = _doctor_line(pbx, f"agi://127.0.0.1:{port}/missed")
    assert line["status"] == "FAIL" and "MISSEDCALL_FASTAGI_LISTEN" in line["detail"], line
