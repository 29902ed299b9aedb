"""Hand a built message to the mail system: a sendmail-compatible binary or an SMTP relay.

Both are bounded by a timeout and raise ``TransportError`` with a one-line
reason. A mail program that is stuck is killed with its process group when
its time is up; one that is merely slow for want of a CPU is not, because a
mail killed after it was queued comes back as a duplicate from ``retry``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    import smtplib
    from collections.abc import Callable

    from missedcall.config import Settings
    from missedcall.deliver.mime import Draft

#: Seconds a busy (runnable or in disk I/O, not blocked) mail program may run past its timeout:
#: the same cap as the run-queue credit of the AGI's own budget (missedcall.budget).
OVERLOAD_GRACE = 20.0
#: After the mail program exited, how long its output is still waited for (a background child
#: of it may hold the pipes open; its exit status has already said whether the mail was taken).
DRAIN = 0.5


class TransportError(RuntimeError):
    """The message was not accepted; ``temporary`` tells whether trying again may help."""

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


def send(message: Draft, recipients: list[str], settings: Settings, *, timeout: float) -> None:
    if not recipients:
        raise TransportError("no recipients", temporary=False)
    if settings.transport == "smtp":
        send_smtp(message, recipients, settings, timeout=timeout)
    else:
        send_sendmail(message, recipients, settings, timeout=timeout)


def send_sendmail(message: Draft, recipients: list[str], settings: Settings, *, timeout: float) -> None:
    # Recipients go in argv after "--" (never -t): only our validated list can receive it,
    # whatever the headers say. -oi: a line with a lone "." must not end the message.
    argv = [settings.sendmail, "-oi", "-f", settings.mail_from, "--", *recipients]
    data = message.as_bytes(linesep="\n")  # a local mail program takes the system's line ends
    try:
        # A session of its own, so that on timeout its helpers (postdrop, a relay client) die
        # with it: the AGI must leave no process behind.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent(),  # only set when this process has a single thread
        )
    except OSError as exc:
        raise TransportError(f"cannot run {settings.sendmail}: {exc.strerror or exc}") from None
    try:
        try:
            _out, err = proc.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            _out, err = _wait_while_busy(proc)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise TransportError(f"{settings.sendmail} did not finish within {timeout:.1f} s (stopped)") from None
    except BaseException:
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        said = err.decode("utf-8", "replace").strip().splitlines()
        detail = f": {said[-1][:200]}" if said else ""
        # sysexits: 75 (EX_TEMPFAIL) is explicitly temporary; treat the rest as worth a retry too,
        # since a broken relay is fixed by an admin, not by giving up.
        raise TransportError(f"{settings.sendmail} exited with {proc.returncode}{detail}")


def _wait_while_busy(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Past its timeout, give a mail program that is still *working* up to OVERLOAD_GRACE more.

    A mail program that is blocked (on a relay, a lock: state S) is stopped at once. One that
    is runnable (R) or in disk I/O (D) is merely waiting on an overloaded box and may be a
    moment from having queued the mail: stopping it then would make the retry a duplicate.
    One that has exited has given its answer, even when this process was too starved to read
    it in time or a background child of it still holds the pipes. Raises TimeoutExpired when
    it should be stopped.
    """
    limit = time.monotonic() + OVERLOAD_GRACE
    idle = 0
    while True:
        try:
            return proc.communicate(timeout=0.05)
        except subprocess.TimeoutExpired:
            if proc.poll() is not None:
                return _drain(proc)
            idle = 0 if _busy(proc.pid) else idle + 1
            if idle >= 2 or time.monotonic() >= limit:  # blocked for two looks in a row, or out of grace
                raise


def _drain(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """The output of a mail program that has exited, without waiting on whoever inherited its pipes."""
    try:
        return proc.communicate(timeout=DRAIN)
    except subprocess.TimeoutExpired:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        return b"", b""


def _busy(pid: int, depth: int = 0) -> bool:
    """Is ``pid`` or one of its descendants runnable or in disk I/O (Linux /proc)? False when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        if stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] in (b"R", b"D"):
            return True
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as handle:
            children = [int(c) for c in handle.read().split()]
    except (OSError, ValueError):
        return False
    return depth < 3 and any(_busy(child, depth + 1) for child in children)


def _die_with_parent() -> Callable[[], None] | None:
    """Make the mail program die with this process (Linux PR_SET_PDEATHSIG).

    Killed half-way (SIGKILL, the OOM killer), the AGI leaves its call pending and retry
    sends it; a mail program that lived on would deliver it as well, and the retry would
    be a duplicate. With this, the duplicate window shrinks to the moment between the mail
    program queueing the message and the row saying so. Only for a process with one
    thread (the AGI; a small retry): preexec_fn is unsafe once threads exist.
    """
    if threading.active_count() != 1:
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: do not send on its behalf
            os._exit(75)

    return arm


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    try:
        proc.wait(timeout=DRAIN)
    except subprocess.TimeoutExpired:
        pass  # stuck in the kernel (a dead NFS mount): SIGKILL takes it when it wakes; do not hang with it
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def open_smtp(settings: Settings, *, timeout: float, opened: list[smtplib.SMTP]) -> smtplib.SMTP:
    """Connect, secure and log in as configured; the client is appended to ``opened`` as soon as it
    exists, so the caller can close it whatever fails after that. Shared with ``doctor``."""
    import smtplib
    import ssl

    context = None
    if settings.smtp_security in ("ssl", "starttls"):
        context = ssl.create_default_context(cafile=settings.smtp_cafile or None)
    client: smtplib.SMTP
    if settings.smtp_security == "ssl":
        client = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    opened.append(client)
    client.ehlo_or_helo_if_needed()
    if settings.smtp_security == "starttls":
        client.starttls(context=context)
        client.ehlo()
    if settings.smtp_user:
        login(client, settings.smtp_user, settings.smtp_password)
    return client


def login(client: smtplib.SMTP, user: str, password: str) -> None:
    """Log in; credentials that are not ASCII go as UTF-8 over AUTH PLAIN or LOGIN (RFC 4616).

    smtplib encodes what it sends as ASCII and raises UnicodeEncodeError on a Cyrillic user or
    password, so for those the exchange is done here through its public ``docmd``. Errors are
    smtplib's own (SMTPAuthenticationError with the server's reply); none quotes the password.
    """
    import smtplib
    from base64 import b64encode

    if user.isascii() and password.isascii():
        client.login(user, password)
        return
    client.ehlo_or_helo_if_needed()
    offered = client.esmtp_features.get("auth", "").upper().split() if client.has_extn("auth") else []
    name, secret = user.encode("utf-8"), password.encode("utf-8")

    def b64(data: bytes) -> str:
        return b64encode(data).decode("ascii")

    if "PLAIN" in offered:
        code, reply = client.docmd("AUTH", "PLAIN " + b64(b"\0" + name + b"\0" + secret))
    elif "LOGIN" in offered:
        code, reply = client.docmd("AUTH", "LOGIN " + b64(name))
        if code == 334:
            code, reply = client.docmd(b64(secret))
    else:
        raise smtplib.SMTPNotSupportedError(
            "the relay offers no AUTH PLAIN or LOGIN, which a user or password that is not ASCII needs"
        )
    if code not in (235, 503):  # 503: already logged in
        raise smtplib.SMTPAuthenticationError(code, reply)


def send_smtp(message: Draft, recipients: list[str], settings: Settings, *, timeout: float) -> None:
    import smtplib
    import ssl

    opened: list[smtplib.SMTP] = []
    try:
        client = open_smtp(settings, timeout=timeout, opened=opened)
        # Bytes with CRLF line ends: smtplib sends them as they are (dot-stuffed); every address is ASCII.
        refused = client.sendmail(settings.mail_from, recipients, message.as_bytes(linesep="\r\n"))
        if refused:
            first = next(iter(refused.items()))
            raise TransportError(
                f"relay refused {len(refused)} recipient(s), e.g. {first[0]}: {first[1][0]}", temporary=False
            )
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise TransportError(
            f"SMTP {settings.smtp_host}:{settings.smtp_port} answered {exc.smtp_code} {text[:200]}",
            # A 5xx refusal of the whole message is retried like a 4xx: it is usually the relay's
            # configuration (relaying denied, a full mailbox), which an admin fixes, and giving up
            # at once would lose the call. The attempts (notify.MAX_ATTEMPTS) still run out.
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise TransportError(f"SMTP relay refused every recipient ({len(exc.recipients)})") from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise TransportError(
            f"SMTP {settings.smtp_host}:{settings.smtp_port}: {exc.__class__.__name__}: {exc}"
        ) from None
    finally:
        for opened_client in opened:
            try:
                opened_client.quit()
            except (smtplib.SMTPException, OSError):
                opened_client.close()
