"""Hostile input in every field that comes from outside: no crash, no injected header or recipient,
a clear one-line error from the CLI, and the AGI always exits 0.

One table (HOSTILE, 60+ values: CR/LF, NUL, bytes that are not UTF-8, 64 KB strings, SQL and
shell metacharacters, RFC 2047 look-alikes, display-name tricks, path traversal, AGI reply
look-alikes) goes through: caller number and name (AGI headers), the queue and reason
arguments, the uniqueid, queue_log fields, configuration values, recipients CSV rows and
``missedcall-admin`` arguments. Values that an interface cannot carry are left out of that
interface only, with the reason next to it (a NUL cannot be in argv or an environment).
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest

from missedcall import config
from missedcall.deliver import notify
from missedcall.detect import queuelog, verdict
from missedcall.record.model import CallRecord, utcnow
from tests.agibox import Pbx, make_pbx
from tests.agipeer import AgiPeer, AgiRun, make_headers
from tests.mailbox import StoredMail
from tests.support.cli import run_cli
from tests.support.readme import config_defaults

BAD_UTF8 = b"\xff\xfe\xc3(".decode("utf-8", "surrogateescape")  # bytes that are not UTF-8, as Python keeps them

HOSTILE: list[str] = [
    "", " ", "\r\n", "a\rb", "a\nb", "\n\n\n",
    "x\r\nBcc: evil@example.com", "x\nTo: evil@example.com", "x\n\nbody takeover",
    "x\r\n.\r\nRCPT TO:<evil@example.com>",
    "\x00", "a\x00b", "\x00Bcc: evil@example.com",
    "\x1b[31mred\x1b[0m", "\x07\x08\x7f", "\x85\u2028\u2029", "\t\v\f",
    BAD_UTF8, "caf" + b"\xe9".decode("utf-8", "surrogateescape"), "ok" + b"\xc0\xaf".decode("utf-8", "surrogateescape"),
    "A" * 65536, "Я" * 32768, "9" * 65536, ("a\n" * 20000),
    "'; DROP TABLE missedcall_calls; --", "\" OR \"1\"=\"1", "1' OR '1'='1", "\\'; SELECT SLEEP(10); --",
    "$(touch /tmp/pwned)", "`id`", "; rm -rf / ;", "| cat /etc/shadow", "&& reboot", "> /etc/passwd",
    "${ABANDONED}", "${SHELL(id)}", "$caller $$ ${host}", "%s%s%s%n", "{0}{1}{__class__}",
    "=?utf-8?b?Qm9zcyA8Ym9zc0BleGFtcGxlLmNvbT4=?=", "=?utf-8?q?x=0D=0ABcc:_evil@example.com?=",
    "=?iso-8859-1?q?=E9vil?= <evil@example.com>",
    '"boss@example.com" <evil@example.com>', "evil@example.com, other@example.com", "<evil@example.com>",
    "Boss <boss@example.com>\nBcc: evil@example.com", "evil@example.com\r\nCc: evil@example.com", "@", "a@b@c",
    "../../../../etc/passwd", "/etc/passwd", "..", ".", "/", "~root", "/dev/zero", "C:\\Windows\\system32",
    "600|ABANDON|1|1|1", "1795659165.1|600|NONE|CONNECT|1|2|3", "200 result=1 (TRUE)", "HANGUP",
    "511 Command Not Permitted on a dead channel", "agi_uniqueid: 1", "unknown",
    "*", "%", "_", "\\", '"', "'", ",,,", "null", "-1", "99999999999999999999", "1e308",
    "\ufeffBOM", "\u202eRTL override", "🙂" * 100,
]  # fmt: skip
assert len(HOSTILE) >= 40


def short(thing: object) -> str:
    """For assertion messages: a 64 KB value would drown the report."""
    text = repr(thing)
    return text if len(text) <= 200 else text[:200] + f"... ({len(text)} chars)"


def for_argv(values: list[str]) -> list[str]:
    """argv and the environment are C strings: execve cannot carry a NUL, so those values stay out."""
    return [v for v in values if "\x00" not in v]


def as_argv(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


class RawPeer(AgiPeer):
    """Writes the header block as bytes, so values that are not UTF-8 reach the script as such."""

    @property
    def header_bytes(self) -> bytes:
        return "".join(self.header_lines).encode("utf-8", "surrogateescape")


EXPECTED_HEADERS = {"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "X-Auto-Response-Suppress",
                    "X-Missedcall-Callid", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
                    "Thread-Topic", "Thread-Index"}  # fmt: skip
#: What a repeat miss adds: it replies in the thread of the caller's open miss (docs/followups.md).
REPLY_HEADERS = {"In-Reply-To", "References"}


def assert_clean_mail(mail: StoredMail, recipients: set[str]) -> None:
    """Exactly these envelope and header recipients, only our headers, each on one line."""
    message: EmailMessage = mail.message
    assert set(mail.recipients) == recipients, mail.recipients
    assert {a for _, a in getaddresses([str(message["To"])])} == recipients
    assert set(message.keys()) <= EXPECTED_HEADERS | REPLY_HEADERS, message.keys()
    assert len(message.get_all("To", [])) == 1 and len(message.get_all("Subject", [])) == 1
    assert message["From"] == "pbx@example.com"
    assert message.defects == [] and not any(p.defects for p in message.walk())
    raw_headers = mail.raw.split(b"\n\n", 1)[0].decode("ascii")  # 7-bit clean: RFC 2047 where needed
    for line in raw_headers.split("\n"):
        assert line[:1] in (" ", "\t") or line.split(":", 1)[0] in EXPECTED_HEADERS | REPLY_HEADERS, line
    assert len(str(message["Subject"])) <= 210  # 200 as built; unfolding the encoded words may add a space


def assert_agi_ok(run: AgiRun) -> None:
    # (Wall time is test_faults.py's business: here three runs share two cores with everything else.)
    assert run.ok, short(run)
    assert run.stdout_garbage == [] and run.stderr == "", short(run)


@pytest.fixture
def box(tmp_path: Path, sqlite_url: str) -> Pbx:
    return make_pbx(tmp_path, sqlite_url, MISSEDCALL_FALLBACK_TO="fallback@example.com", MISSEDCALL_FLOOD_LIMIT="1000")


def _parallel(box: Pbx, jobs: list[tuple[AgiPeer, list[Any]]]) -> list[AgiRun]:
    return box.run_many(jobs, parallel=3, timeout=20)


# ============================================================================ AGI fields


def finish(box: Pbx) -> None:
    """What cron's next retry does: on a busy box the AGI may have left the mail to it (or spooled it)."""
    box.age_spool()
    with box.store() as store:
        store.execute("UPDATE missedcall_calls SET next_attempt_at = ? WHERE status = 'pending'", (utcnow(),))
    done = box.admin("retry")
    assert done.returncode == 0, short(done)


def test_caller_number_and_name_and_the_arguments(box: Pbx) -> None:
    """Caller number, caller name (headers), QUEUE and REASON (argv) all hostile at once."""
    jobs = []
    expected = {}
    for i, value in enumerate(HOSTILE):
        callid = f"1795800000.{i}"
        args: list[Any] = [as_argv(value), as_argv(value)] if "\x00" not in value else ["600"]  # argv: no NUL
        headers = make_headers(uniqueid=callid, callerid=value, calleridname=value, args=[value])
        jobs.append((RawPeer(headers, {"ABANDONED": "TRUE"}), args))
        queue = verdict.clean_id(os.fsdecode(args[0]) if isinstance(args[0], bytes) else args[0])
        queue = queue.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        expected[callid] = {"ops600@example.com" if queue == "600" else "fallback@example.com", "boss@example.com"}
    runs = _parallel(box, jobs)
    for run in runs:
        assert_agi_ok(run)
        assert not any(c.startswith(("ANSWER", "HANGUP", "EXEC", "SET")) for c in run.commands), short(run.commands)
    finish(box)
    mails = box.stored()
    assert sorted(str(m.message["X-Missedcall-Callid"]) for m in mails) == sorted(expected)
    for mail in mails:
        assert_clean_mail(mail, expected[str(mail.message["X-Missedcall-Callid"])])
    rows = box.calls()
    assert sorted(c.callid for c in rows) == sorted(expected)
    assert all(c.status == "sent" for c in rows)


def test_forged_header_lines_in_the_caller_name_change_nothing(box: Pbx) -> None:
    name = "Joe\nagi_uniqueid: 1795800200.99\nagi_callerid: 999\nagi_arg_1: 601"
    headers = make_headers(uniqueid="1795800200.1", callerid="100", calleridname=name, args=["600"])
    assert_agi_ok(box.run(AgiPeer(headers, {"ABANDONED": "TRUE"}), ["600"]))
    [call] = box.calls()
    assert (call.callid, call.caller_num, call.queue) == ("1795800200.1", "100", "600")


#: Uniqueids made only of what a callid may hold: such a one is kept verbatim.
PLAIN_ID = re.compile(r"[A-Za-z0-9.-]{1,64}")
BOTH_OWN = {"ops600@example.com", "boss@example.com"}  # queue 600's row and the '*' row
FALLBACK = {"fallback@example.com", "boss@example.com"}  # a queue without rows: the fallback and '*'


def callid_of(mail: StoredMail) -> str:
    # A long value is folded onto a continuation line; unfolded, it starts with that blank.
    return str(mail.message["X-Missedcall-Callid"]).strip()


def _hook_outcome(run: AgiRun) -> str:
    """The one line the hook reported on the VERBOSE channel."""
    said = [c for c in run.commands if c.startswith("VERBOSE")]
    assert len(said) == 1, short(said)
    assert "internal error" not in said[0], short(said)
    return said[0]


def test_uniqueid_and_queue_log_fields(box: Pbx) -> None:
    """The call's queue_log lines hostile in every field in turn: each call is still recorded once,
    mailed once to its recipients, and the sweeper reading the same file adds nothing. Then the
    uniqueid itself hostile: every run ends in a recorded, mailed call or a logged refusal."""
    base = 1795800300
    lines: list[str] = []
    jobs = []
    for i, value in enumerate(HOSTILE):
        callid = f"{base}.{i}"
        kind = i % 5
        if kind == 0:  # the caller ID field
            lines += [f"{base}|{callid}|600|NONE|ENTERQUEUE||{value}|1", f"{base + 5}|{callid}|600|NONE|ABANDON|1|1|5"]
        elif kind == 1:  # the queue field of the exit line
            lines += [f"{base}|{callid}|600|NONE|ENTERQUEUE||100|1", f"{base + 5}|{callid}|{value}|NONE|ABANDON|1|1|5"]
        elif kind == 2:  # agent and data fields
            lines += [f"{base}|{callid}|600|{value}|ENTERQUEUE|{value}|100|{value}",
                      f"{base + 5}|{callid}|600|{value}|ABANDON|{value}|{value}|{value}"]  # fmt: skip
        elif kind == 3:  # FreePBX's DID line, which the call's row keeps
            lines += [
                f"{base}|{callid}|600|NONE|DID|{value}",
                f"{base}|{callid}|600|NONE|ENTERQUEUE||100|1",
                f"{base + 5}|{callid}|600|NONE|ABANDON|1|1|5",
            ]
        else:  # a garbage line among the call's lines
            lines += [
                f"{base}|{callid}|600|NONE|ENTERQUEUE||100|1",
                value,
                f"{base + 5}|{callid}|600|NONE|ABANDON|1|1|5",
            ]
        headers = make_headers(uniqueid=callid, callerid="100", calleridname="", args=["600"])
        jobs.append((AgiPeer(headers, {"ABANDONED": "TRUE"}), ["600"]))
    box.write_queue_log(lines)
    for line in lines:  # the parser and the verdict never raise
        event = queuelog.parse_line(line)
        if event is not None:
            verdict.judge_events([event])
    runs = _parallel(box, jobs)
    for run in runs:
        assert_agi_ok(run)
        _hook_outcome(run)
    finish(box)

    expected = {f"{base}.{i}": i % 5 for i in range(len(HOSTILE))}
    rows = {call.callid: call for call in box.calls()}
    assert sorted(rows) == sorted(expected), "every call recorded, under its own callid"
    mails = box.stored()
    mailed = [callid_of(m) for m in mails]
    assert sorted(mailed) == sorted(expected), "every call mailed exactly once"
    for mail in mails:
        callid = callid_of(mail)
        row = rows[callid]
        assert (row.reason, row.source, row.status, row.caller_num) == ("ABANDON", "agi", "sent", "100"), short(row)
        if expected[callid] == 1:  # a hostile queue on the exit line: 600's own, or a queue without rows
            assert set(mail.recipients) in (BOTH_OWN, FALLBACK), short((callid, mail.recipients))
        else:
            assert row.queue == "600" and set(mail.recipients) == BOTH_OWN, short((callid, row.queue))
        assert_clean_mail(mail, set(mail.recipients))
        assert len(row.extra.get("did", "")) <= 64  # kept as FreePBX logged it, within the column
    # The sweeper reads the same file: every call is already recorded, so nothing is added or sent.
    swept = box.admin("sweep", "--from-start", "--grace", "0")
    assert swept.returncode == 0, short(swept)
    finish(box)
    assert len(box.calls()) == len(expected)
    assert len(box.stored()) == len(mails), "the sweeper mailed a call the hook had mailed"

    # Now the uniqueid itself hostile (no queue_log lines: the channel's ABANDONED decides).
    jobs = []
    for value in HOSTILE:
        headers = make_headers(uniqueid=value, callerid="", calleridname="", args=["600"])
        # (the linkedid is given: the peer would otherwise echo the uniqueid, and it writes replies as UTF-8)
        jobs.append((RawPeer(headers, {"ABANDONED": "TRUE", "CHANNEL(linkedid)": "1795800150.1"}), ["600"]))
    runs = _parallel(box, jobs)
    for value, run in zip(HOSTILE, runs):
        assert_agi_ok(run)
        said = _hook_outcome(run)
        if PLAIN_ID.fullmatch(value):
            assert f"missed call {value} in queue 600 (ABANDON)" in said, short((value, said))
    finish(box)
    new_rows = {call.callid: call for call in box.calls() if call.callid not in expected}
    plain = {value for value in HOSTILE if PLAIN_ID.fullmatch(value)}
    assert plain and plain <= set(new_rows), short(plain - set(new_rows))
    new_mails = [m for m in box.stored() if callid_of(m) not in expected]
    new_mailed = [callid_of(m) for m in new_mails]
    assert sorted(new_mailed) == sorted(new_rows), "each recorded call mailed exactly once"
    for mail in new_mails:
        assert set(mail.recipients) == BOTH_OWN
        assert_clean_mail(mail, BOTH_OWN)
    for callid, call in new_rows.items():
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", callid), short(callid)
        assert (call.queue, call.reason, call.status) == ("600", "ABANDON", "sent"), short(call)


# ============================================================================ configuration


def _settings_env(box: Pbx, key: str, value: str) -> dict[str, str]:
    return {"MISSEDCALL_CONFIG": str(box.config_file), key: value}


@pytest.mark.parametrize("key", sorted(config_defaults()))  # the manual is the list; test_dialplan ties it to KEYS
def test_every_configuration_key(box: Pbx, key: str) -> None:
    """Each value either loads or fails with one line naming the key; a message built from what
    loads still goes to exactly the configured recipients."""
    own = {"ops600@example.com", "boss@example.com"}
    call = CallRecord(callid="1795800400.1", queue="600", reason="ABANDON", source="agi", caller_name="N")
    rows = [("600", "ops600@example.com"), ("*", "boss@example.com")]
    for value in for_argv(HOSTILE):
        try:
            settings = config.load_settings(_settings_env(box, key, value))
        except config.ConfigError as exc:
            text = str(exc)
            assert "\n" not in text and "\r" not in text and len(text) < 400, short(text)
            continue
        if key == "MISSEDCALL_FALLBACK_TO":
            assert all(config.is_address(a) for a in settings.fallback_to)
        try:
            the_plan = notify.plan(call, settings, None, known_rows=rows)
        except Exception as exc:  # only a template folder can fail here, and with its own error
            assert key == "MISSEDCALL_TEMPLATE_DIR" and exc.__class__.__name__ == "TemplateError", short((value, exc))
            continue
        if the_plan.message is None:
            continue
        assert set(the_plan.recipients) == own, short((key, value, the_plan.recipients))
        raw = the_plan.message.as_bytes()
        assert b"evil@example.com" not in raw.split(b"\n\n", 1)[0]


CONFIG_KEYS_THROUGH_THE_AGI = (
    "MISSEDCALL_FALLBACK_TO", "MISSEDCALL_FROM", "MISSEDCALL_TEMPLATE_DIR", "MISSEDCALL_SENDMAIL",
)  # fmt: skip


def test_configuration_through_the_agi(box: Pbx, tmp_path: Path) -> None:
    """The riskiest keys written into the real config file. Every run ends one of two ways: the
    value is refused in one VERBOSE line naming the key and the call is spooled (``retry`` mails it
    once the value is fixed), or it loads and the call is recorded, then either mailed once to
    exactly queue 600's recipients or left pending with its reason."""
    jobs = []
    boxes = []
    originals: list[str | None] = []
    for i, value in enumerate(HOSTILE):
        key = CONFIG_KEYS_THROUGH_THE_AGI[i % 4]
        # Every sub-box mails the same two addresses in one database: no storm control between them.
        sub = make_pbx(tmp_path / f"c{i}", box.db_url, recipients=[], MISSEDCALL_FLOOD_LIMIT="1000")
        originals.append(sub.settings.get(key))
        sub.configure(**{key: value})
        boxes.append(sub)
        headers = make_headers(uniqueid=f"1795800500.{i}", callerid="100", calleridname="C", args=["600"])
        jobs.append((sub, AgiPeer(headers, {"ABANDONED": "TRUE"})))

    def one(item: tuple[Pbx, AgiPeer]) -> AgiRun:
        return item[0].run(item[1], ["600"])

    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(one, jobs))
    rows = {call.callid: call for call in box.calls()}
    outcomes: dict[str, str] = {}
    for i, (value, run, sub) in enumerate(zip(HOSTILE, runs, boxes)):
        key = CONFIG_KEYS_THROUGH_THE_AGI[i % 4]
        callid = f"1795800500.{i}"
        assert_agi_ok(run)
        said = _hook_outcome(run)
        mails = sub.stored()
        if "configuration error: " in said:
            assert key in said or "cannot read config" in said, short((key, said))
            assert mails == [], short((key, value))
            # Refused settings never lose the call: it waits in the spool until the value is fixed.
            assert len(sub.spooled()) == 1, short((key, value, said))
            [spooled] = sub.spooled()
            assert spooled.name == f"call-{callid}.json", short((key, value, said))
            assert "retry records and mails it once the configuration is fixed" in said
            sub.configure(**{key: originals[i]})
            sub.age_spool()
            fixed = sub.admin("retry")
            assert fixed.returncode == 0, short((key, fixed.stdout, fixed.stderr))
            [mail] = sub.stored()
            assert callid_of(mail) == callid and set(mail.recipients) == BOTH_OWN, short((key, value))
            outcomes[callid] = "refused"
            continue
        call = rows.get(callid)
        assert call is not None, short((key, value, said))
        assert (call.queue, call.reason, call.source) == ("600", "ABANDON", "agi")
        outcomes[callid] = call.status
        if call.status == "sent":
            [mail] = mails
            assert callid_of(mail) == callid
            assert set(mail.recipients) == BOTH_OWN, short((key, value, mail.recipients))
            assert b"evil@example.com" not in mail.raw.split(b"\n\n", 1)[0]
            assert f"missed call {callid} in queue 600 (ABANDON): sent" in said
        else:
            assert call.status == "pending" and mails == [], short((key, value, call))
            assert call.last_error and "\n" not in call.last_error, short(call.last_error)
            assert key in ("MISSEDCALL_SENDMAIL", "MISSEDCALL_TEMPLATE_DIR"), short((key, value, call.last_error))
    # An empty fallback and a blank From are the defaults (600 has rows of its own): those calls are mailed.
    assert HOSTILE[:2] == ["", " "]
    assert (outcomes["1795800500.0"], outcomes["1795800500.1"]) == ("sent", "sent")


# ============================================================================ recipients CSV


def assert_one_line_error(code: int, err: str, context: object) -> None:
    assert code in (0, 1, 2), short((context, code))
    if code:
        assert err.endswith("\n") and err.count("\n") == 1, short((context, err))
        assert err.startswith("missedcall-admin"), short((context, err))
        assert "Traceback" not in err
        assert len(err) < 600, short((context, len(err)))


def test_recipients_csv_rows(box: Pbx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    box.in_this_process(monkeypatch)
    path = box.tmp / "team.csv"
    for value in HOSTILE:
        for row in ([value, "a@example.com"], ["600", value], ["600", "named@example.com", value], [value]):
            buffer = io.StringIO()
            csv.writer(buffer).writerow(row)
            path.write_bytes(buffer.getvalue().encode("utf-8", "surrogateescape"))
            code, _out, err = run_cli(["recipients", "import", str(path)], capsys)
            assert_one_line_error(code, err, row)
    with box.store() as store:
        for row in store.recipients():
            assert config.is_address(row.email) and (row.queue == "*" or row.queue.isascii())
            assert not any(ch in row.name for ch in "\r\n\x00")
            assert row.email != "evil@example.com"


# ============================================================================ CLI arguments


CLI_SLOTS: list[list[str]] = [
    ["recipients", "add", "{}", "a@example.com"],
    ["recipients", "add", "600", "{}"],
    ["recipients", "add", "600", "named@example.com", "--name", "{}"],
    ["recipients", "remove", "{}", "{}"],
    ["recipients", "list", "--queue", "{}"],
    ["recipients", "import", "{}"],
    ["test", "{}", "--dry-run"],
    ["test", "600", "--caller", "{}", "--caller-name", "{}", "--dry-run"],
    ["test", "600", "--wait", "{}", "--dry-run"],
    ["test", "600", "--reason", "{}", "--dry-run"],
    ["log", "--since", "{}"],
    ["log", "--queue", "{}"],
    ["log", "--status", "{}"],
    ["log", "--limit", "{}"],
    ["log", "--json", "--since", "{}"],
    ["--config", "{}", "queues"],
    ["retry", "{}"],
    ["{}"],
]


def test_cli_arguments(box: Pbx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    box.in_this_process(monkeypatch)
    monkeypatch.setenv("MISSEDCALL_DB_URL", box.db_url)  # --config naming nothing must not reach the host's files
    monkeypatch.setenv("MISSEDCALL_SPOOL_DIR", str(box.spool))
    caller_mails = 0
    for value in for_argv(HOSTILE):
        for slot in CLI_SLOTS:
            argv = [value if part == "{}" else part for part in slot]
            code, out, err = run_cli(argv, capsys)
            assert_one_line_error(code, err, argv)
            if "--caller" in slot:
                # Any text is a caller: the sample mail is always built, whatever the value.
                assert code == 0, short((argv, err))
                caller_mails += 1
            if "--dry-run" in argv and code == 0:
                head = out.split("\n\n", 1)[0]
                fields = [line.split(": ", 1) for line in head.splitlines()]
                # Exactly our headers, each once, each on one line: a value cannot add or split one.
                # The terminal view shows the headers we set; the MIME structure (MIME-Version, Content-Type,
                # each part's transfer encoding) is what --raw shows.
                top = EXPECTED_HEADERS - {"Content-Transfer-Encoding", "MIME-Version", "Content-Type"}
                assert sorted(f[0] for f in fields) == sorted(top), short((argv, head))
                headers = dict(fields)
                assert headers["From"] == "pbx@example.com", short((argv, head))
                if argv[1] == "600":
                    # The box's own, plus what the "add" slots put in for 600 or "*" (named@, a@), nothing else.
                    mailed = set(headers["To"].split(", "))
                    team = {"ops600@example.com", "boss@example.com"}
                    assert team <= mailed <= {*team, "named@example.com", "a@example.com"}, short(head)
                # A hostile value may show as text in the subject (and Thread-Topic, the same subject for
                # Outlook), never in another header.
                shown = ("Subject", "Thread-Topic")
                assert not any("evil@example.com" in v for k, v in headers.items() if k not in shown), short(head)
    assert caller_mails == len(for_argv(HOSTILE)) > 40
    with box.store() as store:
        for row in store.recipients():
            assert config.is_address(row.email) and row.email != "evil@example.com"


def test_cli_arguments_that_are_not_utf8_in_a_real_process(box: Pbx) -> None:
    for argv in (
        ["recipients", "add", "600", "named@example.com", "--name", BAD_UTF8],
        ["recipients", "add", BAD_UTF8, "a@example.com"],
        ["test", "600", "--caller", BAD_UTF8, "--caller-name", BAD_UTF8, "--dry-run"],
        ["log", "--since", BAD_UTF8],
        ["recipients", "import", BAD_UTF8],
    ):
        done = box.admin(*(as_argv(a) for a in argv))
        assert_one_line_error(done.returncode, done.stderr, argv)
        assert "Traceback" not in done.stdout


def test_hostile_values_never_reach_sendmail_argv(box: Pbx) -> None:
    """Recipients are the only thing after "--" in sendmail's argv, and they are validated addresses."""
    headers = make_headers(uniqueid="1795800600.1", callerid="-t", calleridname="-bs -oQ/tmp", args=["600"])
    assert_agi_ok(box.run(AgiPeer(headers, {"ABANDONED": "TRUE"}), ["600"]))
    [mail] = box.stored()
    argv = mail.envelope["argv"]
    assert argv[1:5] == ["-oi", "-f", "pbx@example.com", "--"]
    assert all(config.is_address(a) for a in argv[5:])
    assert os.path.basename(argv[0]) == "sendmail" and sys.executable  # the stand-in
