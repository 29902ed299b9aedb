"""One SMTP connection per thread, kept between mails: for the FastAGI service's mail threads.

The process hook opens a connection for its one mail and closes it. The service mails call after call
from a few threads, and a new connection for each (TCP, EHLO, STARTTLS or implicit TLS, AUTH) costs
the relay's round trips and, with TLS, a handshake's CPU on both sides for every missed call. Here each
thread keeps the connection it opened and sends its next mail over it when it is still fit:

- made with the same settings (host, port, security, CA file, user, password): a SIGHUP that changed
  them gets a new one;
- used less than :data:`IDLE` seconds ago (relays drop idle clients after 60-300 s) and for fewer than
  :data:`PER_CONNECTION` mails (Exchange refuses the 21st message of a connection by default);
- answering a ``NOOP`` within :data:`NOOP_TIMEOUT`. Only then does the mail go, once: a failure after
  that is the mail's own (TransportError, the call stays pending for ``retry``), never a second try
  that could duplicate it.

A connection that failed in any way is closed and forgotten, so the next mail starts afresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import smtplib

    from missedcall.config import Settings

#: Seconds a kept connection may sit unused before it is closed instead of reused.
IDLE = 30.0
#: Mails sent over one connection at most.
PER_CONNECTION = 20
#: Seconds the relay has to answer the NOOP: a kept connection that went silent (a dropped route, a relay
#: that hung) costs the mail this much, then a new connection, instead of the whole mail's timeout twice.
NOOP_TIMEOUT = 2.0

_local = threading.local()


class _Kept:
    __slots__ = ("client", "key", "sent", "used")

    def __init__(self, client: smtplib.SMTP, key: tuple[object, ...]) -> None:
        self.client = client
        self.key = key
        self.sent = 0
        self.used = time.monotonic()


def _key(settings: Settings) -> tuple[object, ...]:
    return (settings.smtp_host, settings.smtp_port, settings.smtp_security, settings.smtp_cafile,
            settings.smtp_user, settings.smtp_password)  # fmt: skip


def _fit(kept: _Kept, key: tuple[object, ...], timeout: float) -> bool:
    import smtplib

    if kept.key != key or kept.sent >= PER_CONNECTION or time.monotonic() - kept.used > IDLE:
        return False
    sock = kept.client.sock
    try:
        if sock is not None:
            sock.settimeout(min(timeout, NOOP_TIMEOUT))
        if kept.client.noop()[0] != 250:
            return False
        if sock is not None:
            sock.settimeout(timeout)  # the mail's own bound, as for a new connection
        return True
    except (smtplib.SMTPException, OSError):
        return False


def close(client: smtplib.SMTP) -> None:
    """QUIT politely, or just close when the relay is gone."""
    import smtplib

    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def sendmail(
    settings: Settings,
    recipients: list[str],
    data: bytes,
    *,
    timeout: float,
    connect: Callable[[list[smtplib.SMTP]], smtplib.SMTP],
) -> dict[str, tuple[int, bytes]]:
    """``data`` to ``recipients`` over this thread's kept connection (a new one when none is fit);
    smtplib's refusals as ``SMTP.sendmail`` returns them. Raises what smtplib, ssl and sockets raise;
    then nothing is kept. ``connect(opened)`` opens one the way transport.open_smtp does."""
    key = _key(settings)
    kept: _Kept | None = getattr(_local, "kept", None)
    _local.kept = None  # while a mail is on it: whatever goes wrong leaves nothing behind
    if kept is not None and not _fit(kept, key, timeout):
        close(kept.client)
        kept = None
    if kept is None:
        opened: list[smtplib.SMTP] = []
        try:
            kept = _Kept(connect(opened), key)
        except BaseException:
            for client in opened:
                close(client)
            raise
    try:
        refused = kept.client.sendmail(settings.mail_from, recipients, data)
    except BaseException:
        close(kept.client)
        raise
    kept.sent += 1
    kept.used = time.monotonic()
    _local.kept = kept
    return refused


def forget() -> None:
    """Close this thread's kept connection, if any (a thread that stops mailing)."""
    kept: _Kept | None = getattr(_local, "kept", None)
    _local.kept = None
    if kept is not None:
        if kept.client.sock is not None:
            kept.client.sock.settimeout(NOOP_TIMEOUT)  # a relay that hangs now must not hold up a stop
        close(kept.client)
