"""Smoke tests of the e2e infrastructure itself: the chroot, Asterisk, Local-channel
calls into app_queue, AGI in the h extension, local mail delivery.

Product scenarios belong in other files; these only prove the harness works.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pbx as e2e
import pytest
from processes import wait_for

SMOKE_DIALPLAN = """
; --- test_smoke.py ---
[smoke-queue]
exten => s,1,Answer()
 same => n,Queue(smoke,,,,30)
 same => n,Hangup()

; members ring and never answer
[smoke-agents]
exten => _1XX,1,Ringing()
 same => n,Wait(3600)

[smoke-probe]
exten => s,1,Answer()
 same => n,Wait(30)
exten => h,1,AGI(probe.py,h,${CALLERID(num)},${CALLERID(name)})
"""

SMOKE_QUEUE = """
; --- test_smoke.py ---
[smoke]
strategy = ringall
timeout = 15
retry = 1
joinempty = yes
leavewhenempty = no
announce-frequency = 0
periodic-announce-frequency = 0
announce-holdtime = no
announce-position = no
member => Local/101@smoke-agents/n,0,Smoke One
member => Local/102@smoke-agents/n,0,Smoke Two
"""

# Runs with the box's python3 (3.14 in sid), as the asterisk user, in the h extension
# of a hung-up channel: reads the AGI header block, asks two dead-channel-safe
# questions, and leaves what it saw in /tmp/probe-<uniqueid>.json.
PROBE = r"""#!/usr/bin/env python3
import json, os, sys

headers = {}
for line in sys.stdin:
    if line in ("\n", ""):
        break
    key, _, value = line.rstrip("\n").partition(": ")
    headers[key] = value


def command(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return sys.stdin.readline().rstrip("\n")


replies = {
    "ABANDONED": command("GET VARIABLE ABANDONED"),
    "UNIQUEID": command("GET FULL VARIABLE ${UNIQUEID}"),
}
result = {"argv": sys.argv[1:], "headers": headers, "replies": replies,
          "python": sys.version.split()[0], "uid": os.getuid()}
path = "/tmp/probe-%s.json" % headers.get("agi_uniqueid", "unknown")
with open(path + ".tmp", "w") as fh:
    json.dump(result, fh)
os.rename(path + ".tmp", path)
"""


@pytest.fixture(scope="module")
def smoke(pbx: e2e.Pbx) -> Iterator[e2e.Pbx]:
    pbx.append_file("/etc/asterisk/extensions_custom.conf", SMOKE_DIALPLAN)
    pbx.append_file("/etc/asterisk/queues_custom.conf", SMOKE_QUEUE)
    pbx.install_agi("probe.py", PROBE)
    pbx.reload()
    assert "smoke" in pbx.rx("queue show smoke")
    yield pbx


def test_asterisk_is_22_from_sid(pbx: e2e.Pbx) -> None:
    version = pbx.rx("core show version")
    assert version.startswith("Asterisk 22."), version
    assert "app_queue.so" in pbx.rx("module show like app_queue")


def test_abandon_reaches_queue_log(smoke: e2e.Pbx) -> None:
    call = smoke.originate_local("s", "smoke-queue", hangup_after=3)
    abandon = call.wait_event("ABANDON", timeout=30)
    rows = call.queue_log()
    events = [row[4] for row in rows]
    assert events[0] == "ENTERQUEUE", rows
    assert events[-1] == "ABANDON", rows
    assert rows[0][2] == "smoke"
    assert rows[0][6] == "5551234"  # ENTERQUEUE|url|callerid|position
    # ABANDON|position|origposition|waitseconds: the caller hung up after ~3 s
    assert 2 <= int(abandon[7]) <= 5, abandon
    assert "CONNECT" not in events


def test_agi_in_h_extension(smoke: e2e.Pbx) -> None:
    call = smoke.originate_local("s", "smoke-probe", caller_num="5550001", caller_name="Smoke Test", hangup_after=1)
    uniqueid = call.uniqueid()
    out = smoke.path(f"/tmp/probe-{uniqueid}.json")
    wait_for(out.exists, 20, f"{out.name} from the AGI probe")
    seen = json.loads(out.read_text())
    assert seen["argv"] == ["h", "5550001", "Smoke Test"]
    assert seen["headers"]["agi_extension"] == "h"
    assert seen["headers"]["agi_context"] == "smoke-probe"
    assert seen["headers"]["agi_callerid"] == "5550001"
    assert seen["headers"]["agi_calleridname"] == "Smoke Test"
    assert seen["replies"]["UNIQUEID"] == f"200 result=1 ({uniqueid})"
    assert seen["replies"]["ABANDONED"] == "200 result=0"
    assert seen["python"].startswith("3.")
    assert seen["uid"] == smoke.ids("asterisk")[0]  # AGI runs as the asterisk user


def test_sendmail_delivers_to_local_mailbox(pbx: e2e.Pbx) -> None:
    before = len(pbx.mailbox("ops"))
    message = "From: asterisk@pbx.e2e.invalid\nTo: queue600@example.com\nSubject: e2e smoke\n\nhello from the box\n"
    pbx.run(["/usr/sbin/sendmail", "-t", "-i"], input=message, user="asterisk", timeout=30)
    mails = pbx.wait_for_mail(before + 1, "ops", timeout=30)
    assert mails[-1]["Subject"] == "e2e smoke"
    # every unknown recipient lands in ops's mailbox; the original is kept
    assert mails[-1]["X-Original-To"] == "queue600@example.com"


def test_freepbx_shaped_queues(pbx: e2e.Pbx) -> None:
    """asterisk-etc/ behaves as documented: abandon in 600, 602 answers, 603 times
    out to a hang-up context (whose h, not [ext-queues]'s, then runs)."""
    abandon = pbx.originate_local("600", hangup_after=3)
    answered = pbx.originate_local("602", hangup_after=6)
    timeout = pbx.originate_local("603", hangup_after=10)

    abandon.wait_event("ABANDON", timeout=30)
    rows = abandon.queue_log()
    assert [r[4] for r in rows][:2] == ["DID", "ENTERQUEUE"], rows
    assert rows[0][2:6] == ["600", "NONE", "DID", "5559000"]

    answered.wait_event("COMPLETEAGENT", "COMPLETECALLER", timeout=30)
    events = answered.events()
    assert "CONNECT" in events and "ABANDON" not in events, events

    timeout.wait_event("EXITWITHTIMEOUT", timeout=30)

    def failover_ran() -> bool:
        return any("Executing [hangup@app-blackhole:1]" in line for line in timeout.log_lines())

    wait_for(failover_ran, 15, "the 603 failover to reach app-blackhole")
    # FreePBX 17's h: Gosub into macro-hangupcall (Asterisk 22 has no Macro)
    assert any("Executing [h@ext-queues:1] Gosub(" in line for line in abandon.log_lines())
    assert not any("[h@ext-queues:1]" in line for line in timeout.log_lines())
