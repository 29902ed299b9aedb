"""Issue #5: the product on a real Asterisk 22, end to end.

One PBX (tests/e2e/asterisk-etc: FreePBX-17-shaped queues 600-604) for the whole
module, with missedcall put in by its own ``install.sh``, run as root inside the
box from a copy of this tree; its FreePBX database is a temporary database on the
host's MariaDB (reached over TCP on 127.0.0.1:3306: the box shares the host's
network namespace) with a FreePBX-like ``queues_config`` and a ``freepbxuser``-like
account, named by the box's ``/etc/freepbx.conf``.  Recipients are added with
``missedcall-admin``; postfix in the box delivers every recipient to ops's mailbox,
keeping the original address in ``X-Original-To``, and the tests read it there.

Calls are Local channels originated from the Asterisk CLI (pbx.originate_local);
the caller side hangs up after N seconds.  The scenarios run in file order; the
last one uninstalls.
"""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Iterator, Sequence
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Optional

import pbx as e2e
import pytest
from calls import LocalCall
from installed import OVERRIDE, Box, brief
from processes import PbxError, wait_for

from tests.support.freepbx import make_freepbx_like, write_freepbx_conf
from tests.support.mariadb import MariaDBDatabase, MariaDBServer, temporary_mariadb

ASTERISK_ETC = Path(__file__).with_name("asterisk-etc")

QUEUES = (
    ("600", "Sales"),
    ("601", "Sales overflow"),
    ("602", "Support"),
    ("603", "Billing"),
    ("604", "Support overflow"),
)
LABELS = dict(QUEUES)
# manager@ is both a '*' row and one of 600's: it must still get one copy per call.
RECIPIENTS = (
    ("600", "sales@example.com", "Sales desk"),
    ("600", "manager@example.com", "Manager"),
    ("601", "overflow@example.com", ""),
    ("602", "support@example.com", ""),
    ("603", "billing@example.com", ""),
    ("604", "support@example.com", ""),
    ("*", "manager@example.com", "Manager"),
)
EVERY_CALL = ("manager@example.com",)
DID = "5559000"  # originate_local's default FROM_DID: every mail, the hook's or retry's, shows it
# What the hook says when it ran out of time and left the mail to `missedcall-admin retry`.
DEFERRED = "not sent yet: the AGI ran out of time"
# The English reason lines a notification must carry, written out (not read from the code under test).
REASON_EN = {
    "ABANDON": "the caller hung up while waiting",
    "TIMEOUT": "the queue's maximum wait time ran out",
}

# The headers a delivered notification may carry: the product's own and what postfix adds.
ALLOWED_HEADERS = {
    "return-path", "x-original-to", "delivered-to", "received", "from", "to", "subject", "date",
    "message-id", "auto-submitted", "x-auto-response-suppress", "x-missedcall-callid", "mime-version", "content-type",
    "content-transfer-encoding",
}  # fmt: skip



def recipients_of(queue: str) -> list[str]:
    own = [email for q, email, _ in RECIPIENTS if q == queue]
    return sorted(set(own) | set(EVERY_CALL))


@pytest.fixture(scope="module")
def freepbx_db(mariadb_server: MariaDBServer) -> Iterator[MariaDBDatabase]:
    """A temporary stand-in for FreePBX's ``asterisk`` database (dropped afterwards)."""
    with temporary_mariadb(mariadb_server, prefix="mc_e2e_") as db:
        make_freepbx_like(db, QUEUES)
        yield db


@pytest.fixture(scope="module")
def box(pbx_chroot: Path, freepbx_db: MariaDBDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    # A PBX of its own: the smoke tests' session PBX must keep FreePBX's own h extension.
    with e2e.Pbx(pbx_chroot, asterisk_etc=ASTERISK_ETC) as pbx:
        conf = write_freepbx_conf(tmp_path_factory.mktemp("freepbx") / "freepbx.conf", freepbx_db)
        # FreePBX's own file: asterisk:asterisk, 0640 (the AGI runs as asterisk and reads it).
        pbx.write_file("/etc/freepbx.conf", conf.read_bytes(), mode=0o640, owner="asterisk")
        yield Box(pbx, freepbx_db, RECIPIENTS)


@pytest.fixture
def mc(box: Box) -> Box:
    """The box with missedcall installed (again, should an uninstall have run before)."""
    if not box.installed:
        box.install()
    return box


# --------------------------------------------------------------------------- #
# Checking one notification, field by field
# --------------------------------------------------------------------------- #


def body_fields(message: EmailMessage) -> dict[str, str]:
    fields = {}
    for line in (message.get_body(("plain",)) or message).get_content().splitlines():
        match = re.match(r"^(Caller|Reason|Waited|Called at|Path|DID|Call ID):\s*(.*)$", line)
        if match:
            fields[match.group(1)] = match.group(2)
    return fields


def one_line(text: Optional[str]) -> str:
    """A stored caller field read the way the README promises it is shown: control characters
    (C0, DEL, C1, U+2028/2029) as one space, no blanks at the ends."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+", " ", text or "").strip()


def check_notification(
    copies: list[EmailMessage],
    *,
    callid: str,
    queue: str,
    reason: str,
    caller: str,
    wait: tuple[int, int],
    path: Sequence[str],
    position: Optional[int] = None,
    retried: bool = False,
    subject_caller: Optional[str] = None,
    tel: str = "",
) -> EmailMessage:
    """One message (one Message-ID) for the call, one copy per expected recipient, every field right."""
    assert copies, f"no mail for call {callid}"
    ids = {m["Message-ID"] for m in copies}
    assert len(ids) == 1, f"call {callid}: {len(ids)} different messages: {sorted(ids)}"
    expected = recipients_of(queue)
    assert sorted(m["X-Original-To"] for m in copies) == expected, "recipients (each once)"
    message = copies[0]
    assert sorted(addr for _, addr in getaddresses([str(message["To"])])) == expected
    for header in message:
        assert header.lower() in ALLOWED_HEADERS, f"unexpected header {header}: {message[header]!r}"
    for single in ("From", "To", "Subject", "Message-ID", "Date", "X-Missedcall-Callid"):
        assert len(message.get_all(single, [])) == 1, f"{single} appears {message.get_all(single)}"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Auto-Response-Suppress"] == "All"

    display = f"{queue} ({LABELS[queue]})"
    # Python's folder may put the whole subject on a continuation line ("Subject:\n Missed ..."):
    # valid, and mail readers drop the leading blank when they unfold; so does this check.
    subject = str(message["Subject"]).lstrip(" \t")
    assert "\n" not in subject and "\r" not in subject
    # "Missed: Sales (600) — Ivan Petrov +7 916 123-45-67, waited 4 s": queue, caller, wait first.
    head = f"Missed: {LABELS[queue]} ({queue}) — "
    assert subject.startswith(head) and len(subject) <= 200, subject
    said = re.search(r", waited (\d+) s$", subject)
    assert said and wait[0] <= int(said.group(1)) <= wait[1], subject
    if subject_caller is not None:
        assert subject == f"{head}{subject_caller}, waited {said.group(1)} s", subject
    # The HTML alternative next to the text: the number as a tel: link when it is one.
    assert message.get_content_type() == "multipart/alternative", message.get_content_type()
    html = message.get_body(("html",))
    assert html is not None and "<script" not in html.get_content().lower()
    if tel:
        assert f'href="{tel}"' in html.get_content(), html.get_content()

    fields = body_fields(message)
    content = (message.get_body(("plain",)) or message).get_content()
    assert f"A call in queue {display} was not answered." in content
    assert fields["Caller"] == caller
    assert fields["Reason"] == REASON_EN[reason]
    waited = re.fullmatch(r"(\d+) s \(position (\d+|—) in the queue\)", fields["Waited"])
    assert waited, fields["Waited"]
    assert wait[0] <= int(waited.group(1)) <= wait[1], f"waited {waited.group(1)} s, expected {wait}"
    if position is not None:
        assert waited.group(2) == str(position)
    else:
        assert waited.group(2).isdigit()
    assert fields["Path"] == " > ".join(path)
    assert fields["DID"] == DID, "DID" + (" (mail sent by retry)" if retried else "")
    assert fields["Call ID"] == callid
    return message


def check_row(
    row: dict[str, Any],
    *,
    queue: str,
    reason: str,
    source: str,
    path: Sequence[str],
    caller_num: str,
    caller_name: str,
) -> None:
    """``caller_num``/``caller_name``: what the row must hold, read on one line."""
    assert row["queue"] == queue
    assert row["reason"] == reason
    assert row["source"] == source, row
    assert row["status"] == "sent", row
    assert row["path"] == " > ".join(path)
    assert one_line(row["caller_num"]) == caller_num, row["caller_num"]
    assert one_line(row["caller_name"]) == caller_name, row["caller_name"]


# --------------------------------------------------------------------------- #
# The scenarios, in order (the last one uninstalls)
# --------------------------------------------------------------------------- #


def test_1_abandon_mails_at_once_through_the_hook(mc: Box) -> None:
    call = mc.pbx.originate_local("600", caller_num="79161234567", caller_name="Ivan Petrov", hangup_after=3)
    callid = call.uniqueid()
    expected = len(recipients_of("600"))

    # Poll queue_log and the mailbox together: hang-up (ABANDON) to delivered mail.
    hung_up = delivered = None
    deadline = time.monotonic() + 40
    while delivered is None and time.monotonic() < deadline:
        now = time.monotonic()
        if hung_up is None and "ABANDON" in call.events():
            hung_up = now
        if hung_up is not None and len(mc.mails(callid)) >= expected:
            delivered = now
        time.sleep(0.05)
    assert hung_up is not None, f"no ABANDON for {callid}: {call.queue_log()}"
    assert delivered is not None, f"no mail for {callid} within 40 s; AGI said {mc.agi_lines(call)}"
    assert delivered - hung_up <= 5.0, f"mail {delivered - hung_up:.1f} s after the hang-up"
    print(f"hang-up to delivered mail: {delivered - hung_up:.2f} s (install.sh took {mc.install_seconds:.0f} s)")

    mc.settle(call)
    check_notification(
        mc.mails(callid),
        callid=callid,
        queue="600",
        reason="ABANDON",
        caller="Ivan Petrov <79161234567>",
        subject_caller="Ivan Petrov +7 916 123-45-67",
        tel="tel:+79161234567",
        wait=(2, 5),
        position=1,
        path=["600"],
    )
    (row,) = mc.rows([callid])
    check_row(row, queue="600", reason="ABANDON", source="agi", path=["600"],
              caller_num="79161234567", caller_name="Ivan Petrov")  # fmt: skip
    assert 2 <= row["wait_seconds"] <= 5 and row["position"] == 1
    assert row["linkedid"], row
    said = mc.agi_lines(call)
    assert len(said) == 1 and said[0].endswith(": sent"), said


def test_2_answered_call_no_mail_no_row(mc: Box) -> None:
    before = len(mc.mails())
    call = mc.pbx.originate_local("602", caller_num="5552002", hangup_after=20)
    callid = call.uniqueid()
    call.wait_event("COMPLETEAGENT", "COMPLETECALLER", timeout=30)
    mc.settle(call)
    assert "CONNECT" in call.events()
    assert not any("AGI(" in line for line in call.log_lines()), "the hook ran for an answered call"
    assert mc.rows([callid]) == []
    assert mc.mails(callid) == [] and len(mc.mails()) == before


def test_3_timeout_then_overflow_answered_no_mail(mc: Box) -> None:
    before = len(mc.mails())
    call = mc.pbx.originate_local("604", caller_num="5552003", hangup_after=30)
    callid = call.uniqueid()
    call.wait_event("COMPLETEAGENT", "COMPLETECALLER", timeout=40)
    mc.settle(call)
    rows = call.queue_log()
    assert [r[2] for r in rows if r[4] == "ENTERQUEUE"] == ["604", "602"], rows
    assert "EXITWITHTIMEOUT" in call.events() and "CONNECT" in call.events()
    # The sweeper sees the timeout in 604 too; the CONNECT in 602 makes it answered.
    swept = mc.sweep()
    mc.pbx.wait_mail_idle()
    assert mc.rows([callid]) == [], swept
    assert mc.mails(callid) == [] and len(mc.mails()) == before


def test_4_timeout_then_overflow_abandoned_one_mail(mc: Box) -> None:
    # 600 gives up after 8 s and sends the call to 601, where the caller hangs up ~3 s later.
    call = mc.pbx.originate_local("600", caller_num="5552004", caller_name="Overflow Caller", hangup_after=11)
    callid = call.uniqueid()
    call.wait_event("ABANDON", timeout=40)
    mc.settle(call)
    events = [(r[2], r[4]) for r in call.queue_log() if r[4] in ("ENTERQUEUE", "EXITWITHTIMEOUT", "ABANDON")]
    assert events == [("600", "ENTERQUEUE"), ("600", "EXITWITHTIMEOUT"), ("601", "ENTERQUEUE"), ("601", "ABANDON")]
    copies = mc.wait_mails(callid, len(recipients_of("601")))
    mc.sweep()  # the sweeper sees the same call: it must not mail it again
    mc.pbx.wait_mail_idle()
    assert len(mc.mails(callid)) == len(copies)
    check_notification(
        mc.mails(callid),
        callid=callid,
        queue="601",
        reason="ABANDON",
        caller="Overflow Caller <5552004>",
        subject_caller="Overflow Caller 5552004",
        wait=(1, 5),  # queue_log's wait is the last queue's
        path=["600", "601"],
    )
    (row,) = mc.rows([callid])
    check_row(row, queue="601", reason="ABANDON", source="agi", path=["600", "601"],
              caller_num="5552004", caller_name="Overflow Caller")  # fmt: skip


def test_5_timeout_to_hangup_mailed_by_the_sweeper(mc: Box) -> None:
    # 603 gives up after 5 s and fails over to app-blackhole: [ext-queues]'s h never runs.
    call = mc.pbx.originate_local("603", caller_num="5552005", caller_name="Timed Out", hangup_after=30)
    callid = call.uniqueid()
    call.wait_event("EXITWITHTIMEOUT", timeout=30)
    mc.settle(call)
    assert not any("AGI(" in line for line in call.log_lines())
    assert mc.rows([callid]) == [] and mc.mails(callid) == []
    swept = mc.sweep()
    copies = mc.wait_mails(callid, len(recipients_of("603")), timeout=10)
    check_notification(
        copies,
        callid=callid,
        queue="603",
        reason="TIMEOUT",
        caller="5552005",  # queue_log has the caller's number (ENTERQUEUE), never the name
        subject_caller="5552005",
        wait=(4, 7),
        position=1,
        path=["603"],
    )
    (row,) = mc.rows([callid])
    check_row(row, queue="603", reason="TIMEOUT", source="queue_log", path=["603"],
              caller_num="5552005", caller_name="")  # fmt: skip
    mc.sweep()  # a second run finds nothing new
    mc.pbx.wait_mail_idle()
    assert len(mc.mails(callid)) == len(copies), swept


LONG_NAME = "".join(f"{i:02d}-name-" for i in range(38))[:300]
# label: (caller number, caller name as sent; the mail's Caller line; the row's number and name on one line)
HOSTILE_CALLERS: dict[str, tuple[Optional[str], Optional[str], str, str, str]] = {
    "quotes-commas": ("5556001", 'Doe, John "JJ" O\'Neil',
                      'Doe, John "JJ" O\'Neil <5556001>', "5556001", 'Doe, John "JJ" O\'Neil'),
    "cyrillic": ("5556002", "Иван Петрович Сидоров",
                 "Иван Петрович Сидоров <5556002>", "5556002", "Иван Петрович Сидоров"),
    "newline": ("5556003", "Line One\nBcc: intruder@example.net",
                "Line One Bcc: intruder@example.net <5556003>", "5556003", "Line One Bcc: intruder@example.net"),
    "comma-backslash": ("555 12,34", "a,b\\c d", "a,b\\c d <555 12,34>", "555 12,34", "a,b\\c d"),
    "none": (None, None, "unknown caller", "", ""),
    "300-chars": ("5556006", LONG_NAME, f"{LONG_NAME} <5556006>", "5556006", LONG_NAME),
}  # fmt: skip


def test_6_hostile_caller_ids(mc: Box) -> None:
    assert len(LONG_NAME) == 300
    output_before = mc.pbx.asterisk_output()
    mc.pbx.rx("agi set debug on")  # every line between Asterisk and missed.py lands in the full log
    try:
        calls = {
            label: mc.pbx.originate_local("600", caller_num=num, caller_name=name, hangup_after=3)
            for label, (num, name, *_expected) in HOSTILE_CALLERS.items()
        }
        for call in calls.values():
            call.wait_event("ABANDON", timeout=30)
        mc.settle(*calls.values())  # every hook has finished
    finally:
        mc.pbx.rx("agi set debug off")
    # On a loaded machine a hook may run out of its 2.7 s and leave the mail to cron's retry.
    deferred = mc.retry_pending([call.uniqueid() for call in calls.values()])
    if deferred:
        print(f"hostile callers: {len(deferred)} of {len(calls)} mails left to retry by the hook (machine load?)")
    for call in calls.values():
        mc.wait_mails(call.uniqueid(), len(recipients_of("600")), timeout=15, call=call)

    problems = []
    for label, call in calls.items():
        _num, _name, shown, stored_num, stored_name = HOSTILE_CALLERS[label]
        callid = call.uniqueid()
        try:
            check_notification(
                mc.mails(callid),
                callid=callid,
                queue="600",
                reason="ABANDON",
                caller=shown,
                wait=(2, 5),
                path=["600"],
                retried=callid in deferred,
            )
            (row,) = mc.rows([callid])
            check_row(row, queue="600", reason="ABANDON", source="agi", path=["600"],
                      caller_num=stored_num, caller_name=stored_name)  # fmt: skip
        except AssertionError as exc:
            problems.append(f"{label}: {exc}")
        # Nothing but AGI commands from the script, no error or warning about it.
        lines = call.thread_log_lines()
        sent = [line.split("AGI Rx << ", 1)[1] for line in lines if "AGI Rx << " in line]
        bad = [s for s in sent if not s.startswith(("GET FULL VARIABLE ", "GET VARIABLE ", "VERBOSE "))]
        if bad:
            problems.append(f"{label}: missed.py wrote non-commands: {bad}")
        warnings = [line for line in lines if re.search(r"\] (WARNING|ERROR)\[", line)]
        if warnings:
            problems.append(f"{label}: warnings: {warnings}")
        said = [line.split("missedcall: ", 1)[1] for line in mc.agi_lines(call)]
        if len(said) != 1 or not (said[0].endswith(": sent") or (callid in deferred and DEFERRED in said[0])):
            problems.append(f"{label}: the hook said {said}")
    # No injected recipient: nothing was ever delivered to an address that is not configured.
    strays = {m["X-Original-To"] for m in mc.mails()} - {address for _, address, _ in RECIPIENTS}
    assert not strays, f"mail to unexpected addresses: {strays}"
    added = mc.pbx.asterisk_output()[len(output_before) :]
    assert "missed" not in added and "Traceback" not in added, f"stderr of Asterisk/AGI: {added[-2000:]}"
    assert not problems, "\n".join(problems)


def test_7_fifty_abandons_at_once(mc: Box) -> None:
    rows_before = mc.row_count()
    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:

        def place(i: int) -> LocalCall:
            return mc.pbx.originate_local("600", caller_num=f"7000{i:03d}", caller_name=f"Burst {i}", hangup_after=3)

        calls = list(pool.map(place, range(50)))
    callids = [call.uniqueid() for call in calls]
    assert len(set(callids)) == 50
    for call in calls:
        call.wait_event("ABANDON", timeout=60)
    last_hangup = time.monotonic()
    # Every h extension (and the AGI in it) has finished once no Local channel is left.
    mc.pbx.wait_no_channels("Local/", timeout=120)
    hooks_done = time.monotonic() - last_hangup
    mc.pbx.wait_mail_idle()
    at_once = {m["X-Missedcall-Callid"] for m in mc.mails()} & set(callids)
    recorded = {r["callid"]: r for r in mc.rows(callids)}
    assert len(recorded) == 50, f"only {len(recorded)} of 50 calls recorded by the hook"

    # What cron does every minute: retry sends what a hook left pending (it ran out of time).
    mc.admin("retry", user="asterisk")
    try:
        wait_for(
            lambda: len({m["X-Missedcall-Callid"] for m in mc.mails()} & set(callids)) == 50,
            30,
            "mail for all 50 calls",
            0.2,
        )
    except PbxError:
        mailed = {m["X-Missedcall-Callid"] for m in mc.mails()}
        rows = {r["callid"]: r for r in mc.rows(callids)}
        report = [
            f"{call.uniqueid()}: row {brief(rows.get(call.uniqueid()))}; hook said {mc.agi_lines(call)}"
            for call in calls
            if call.uniqueid() not in mailed
        ]
        pytest.fail(f"{len(report)} of 50 calls without mail after retry:\n" + "\n".join(report))
    mc.pbx.wait_mail_idle()
    mc.sweep()  # the sweeper sees all 50 too, and a second retry finds nothing: still nothing twice
    mc.admin("retry", user="asterisk")
    mc.pbx.wait_mail_idle()
    print(
        f"50 abandons: every hook done {hooks_done:.1f} s after the last hang-up; "
        f"{len(at_once)} mailed by the hook at once, {50 - len(at_once)} left pending for retry "
        f"({sum(1 for r in recorded.values() if r['status'] == 'pending')} rows pending before retry)"
    )

    per_call = {callid: mc.mails(callid) for callid in callids}
    copies = len(recipients_of("600"))
    wrong = {cid: len(ms) for cid, ms in per_call.items() if len(ms) != copies}
    assert not wrong, f"copies per call (expected {copies}): {wrong}"
    assert len({m["Message-ID"] for ms in per_call.values() for m in ms}) == 50
    for i, callid in enumerate(callids):
        check_notification(
            per_call[callid],
            callid=callid,
            queue="600",
            reason="ABANDON",
            caller=f"Burst {i} <7000{i:03d}>",
            subject_caller=f"Burst {i} 7000{i:03d}",
            wait=(1, 8),
            path=["600"],
            retried=callid not in at_once,
        )
    rows = mc.rows(callids)
    assert len(rows) == 50 and mc.row_count() == rows_before + 50
    assert {row["status"] for row in rows} == {"sent"}, [(r["callid"], r["status"], r["last_error"]) for r in rows]
    assert {row["source"] for row in rows} == {"agi"}
    assert not list(mc.pbx.path("/var/spool/missedcall").glob("call-*")), "calls left in the spool"


def test_8_uninstall_leaves_no_hook(mc: Box) -> None:
    assert mc.override_before is not None
    mc.uninstall()
    mc.pbx.rx("dialplan reload")
    assert mc.pbx.path(OVERRIDE).read_bytes() == mc.override_before
    assert "missed.py" not in mc.pbx.rx("dialplan show h@ext-queues")
    assert not mc.pbx.path("/var/lib/asterisk/agi-bin/missed.py").exists()

    before = len(mc.mails())
    rows_before = mc.row_count()
    call = mc.pbx.originate_local("600", caller_num="5558008", hangup_after=3)
    callid = call.uniqueid()
    call.wait_event("ABANDON", timeout=30)
    mc.settle(call)
    lines = call.log_lines()
    assert any("Executing [h@ext-queues:1] Gosub(" in line for line in lines), "FreePBX's own h is back"
    assert not any("AGI(" in line for line in lines)
    assert mc.mails(callid) == [] and len(mc.mails()) == before
    assert mc.rows([callid]) == [] and mc.row_count() == rows_before

    # Over the whole module, Asterisk warned about nothing but our h overriding FreePBX's at reloads.
    expected = ("Unable to register extension 'h' priority 1 in 'ext-queues', already in use",
                "Unable to register extension at line")  # fmt: skip
    unexpected = [
        line
        for line in mc.pbx.full_log().splitlines()
        if re.search(r"\] (WARNING|ERROR)\[", line) and not any(text in line for text in expected)
    ]
    assert not unexpected, "\n".join(unexpected[:20])
