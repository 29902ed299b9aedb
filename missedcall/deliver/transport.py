"""Hand a built message to the mail system: a sendmail-compatible binary or an SMTP relay.

Both are bounded by a timeout and raise ``TransportError`` with a one-line
reason. A mail program that is stuck is killed with its session when its time
is up; one that is merely slow for want of a CPU is not, because a mail killed
after it was queued comes back as a duplicate from ``retry``
(missedcall.deliver.mailprog runs it).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    import smtplib

    from missedcall.config import Settings
    from missedcall.deliver.mime import Draft


class TransportError(RuntimeError):
    """The message was not accepted; ``temporary`` tells whether trying again may help."""

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


_keep_connections = False


def keep_smtp_connections(keep: bool = True) -> None:
    """From now on each thread keeps its SMTP connection between mails (missedcall.deliver.smtpkeep):
    for a long-running process that mails call after call, the FastAGI service. False: one per mail."""
    global _keep_connections
    _keep_connections = keep


def send(message: Draft, recipients: list[str], settings: Settings, *, timeout: float) -> None:
    if not recipients:
        raise TransportError("no recipients", temporary=False)
    if settings.transport == "smtp":
        send_smtp(message, recipients, settings, timeout=timeout)
    else:
        if _keep_connections:  # a reload switched to sendmail: the relay connection this thread kept goes
            from missedcall.deliver import smtpkeep

            smtpkeep.forget()
        send_sendmail(message, recipients, settings, timeout=timeout)


def send_sendmail(message: Draft, recipients: list[str], settings: Settings, *, timeout: float) -> None:
    from missedcall.deliver import mailprog

    # Recipients go in argv after "--" (never -t): only our validated list can receive it,
    # whatever the headers say. -oi: a line with a lone "." must not end the message.
    argv = [settings.sendmail, "-oi", "-f", settings.mail_from, "--", *recipients]
    data = message.as_bytes(linesep="\n")  # a local mail program takes the system's line ends
    try:
        child = mailprog.Child(argv)
    except OSError as exc:
        raise TransportError(f"cannot run {settings.sendmail}: {exc.strerror or exc}") from None
    try:
        code, said = child.run(data, timeout)
    except mailprog.Stuck:
        raise TransportError(f"{settings.sendmail} did not finish within {timeout:.1f} s (stopped)") from None
    if code != 0:
        lines = said.decode("utf-8", "replace").strip().splitlines()
        detail = f": {lines[-1][:200]}" if lines else ""
        # sysexits: 75 (EX_TEMPFAIL) is explicitly temporary; treat the rest as worth a retry too,
        # since a broken relay is fixed by an admin, not by giving up.
        raise TransportError(f"{settings.sendmail} exited with {code}{detail}")


def open_smtp(settings: Settings, *, timeout: float, opened: list[smtplib.SMTP]) -> smtplib.SMTP:
    """Connect, secure and log in as configured; the client is appended to ``opened`` as soon as it
    exists, so the caller can close it whatever fails after that. Shared with ``doctor``."""
    import smtplib

    from missedcall.deliver import trust

    context = None
    if settings.smtp_security in ("ssl", "starttls"):
        context = trust.client_context(settings.smtp_cafile)
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
        # Bytes with CRLF line ends: smtplib sends them as they are (dot-stuffed); every address is ASCII.
        data = message.as_bytes(linesep="\r\n")
        if _keep_connections:
            from missedcall.deliver import smtpkeep

            def connect(new: list[smtplib.SMTP]) -> smtplib.SMTP:
                return open_smtp(settings, timeout=timeout, opened=new)

            refused = smtpkeep.sendmail(settings, recipients, data, timeout=timeout, connect=connect)
        else:
            client = open_smtp(settings, timeout=timeout, opened=opened)
            refused = client.sendmail(settings.mail_from, recipients, data)
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
