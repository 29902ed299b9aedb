"""Hand a built message to the mail system: a sendmail-compatible binary or an SMTP relay.

Both are bounded by a timeout and raise ``TransportError`` with a one-line
reason; neither leaves a child process behind (``subprocess.run`` kills and
reaps the binary when its time is up).
"""

from __future__ import annotations

import subprocess
from email.message import EmailMessage
from email.policy import default as default_policy

from missedcall.config import Settings


class TransportError(RuntimeError):
    """The message was not accepted; ``temporary`` tells whether trying again may help."""

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


def send(message: EmailMessage, recipients: list[str], settings: Settings, *, timeout: float) -> None:
    if not recipients:
        raise TransportError("no recipients", temporary=False)
    if settings.transport == "smtp":
        send_smtp(message, recipients, settings, timeout=timeout)
    else:
        send_sendmail(message, recipients, settings, timeout=timeout)


def send_sendmail(message: EmailMessage, recipients: list[str], settings: Settings, *, timeout: float) -> None:
    # Recipients go in argv after "--" (never -t): only our validated list can receive it,
    # whatever the headers say. -oi: a line with a lone "." must not end the message.
    argv = [settings.sendmail, "-oi", "-f", settings.mail_from, "--", *recipients]
    data = message.as_bytes(policy=default_policy.clone(linesep="\n"))
    try:
        done = subprocess.run(argv, input=data, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TransportError(f"{settings.sendmail} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise TransportError(f"cannot run {settings.sendmail}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = f": {said[-1][:200]}" if said else ""
        # sysexits: 75 (EX_TEMPFAIL) is explicitly temporary; treat the rest as worth a retry too,
        # since a broken relay is fixed by an admin, not by giving up.
        raise TransportError(f"{settings.sendmail} exited with {done.returncode}{detail}")


def send_smtp(message: EmailMessage, recipients: list[str], settings: Settings, *, timeout: float) -> None:
    import smtplib
    import ssl

    context = None
    if settings.smtp_security in ("ssl", "starttls"):
        context = ssl.create_default_context(cafile=settings.smtp_cafile or None)
    client: smtplib.SMTP | None = None
    try:
        if settings.smtp_security == "ssl":
            client = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        client.ehlo_or_helo_if_needed()
        if settings.smtp_security == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if settings.smtp_user:
            client.login(settings.smtp_user, settings.smtp_password)
        refused = client.send_message(message, from_addr=settings.mail_from, to_addrs=recipients)
        if refused:
            first = next(iter(refused.items()))
            raise TransportError(
                f"relay refused {len(refused)} recipient(s), e.g. {first[0]}: {first[1][0]}", temporary=False
            )
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise TransportError(
            f"SMTP {settings.smtp_host}:{settings.smtp_port} answered {exc.smtp_code} {text[:200]}",
            temporary=400 <= exc.smtp_code < 500,
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise TransportError(f"SMTP relay refused every recipient ({len(exc.recipients)})", temporary=False) from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise TransportError(
            f"SMTP {settings.smtp_host}:{settings.smtp_port}: {exc.__class__.__name__}: {exc}"
        ) from None
    finally:
        if client is not None:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
