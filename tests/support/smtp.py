"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1, in every mode a relay
can have (plain, STARTTLS, implicit TLS, each with or without AUTH), and the
self-signed certificate its TLS modes use."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast


def make_tls_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert.pem, key.pem)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed for the TLS fixtures (tests/run installs it)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    login: str | None
    """The AUTH user the client logged in as, if it did."""
    tls: bool
    """Whether the message came over TLS (STARTTLS or implicit)."""
    peer: str = ""
    """The client's address and port: one per connection it came over."""


SMTP_MODES = ("plain", "starttls", "ssl", "auth", "starttls+auth", "ssl+auth")


class SmtpServer:
    """A real aiosmtpd server on 127.0.0.1 that keeps what it receives.

    Modes: ``plain``, ``starttls``, ``ssl`` (implicit TLS), and ``+auth``
    variants (``auth`` alone is AUTH LOGIN/PLAIN without TLS) that require
    ``user`` / ``password`` before MAIL FROM.
    """

    user = "relayuser"
    password = "s3cret pass"  # a space, as real relay passwords sometimes have

    def __init__(self, mode: str, certificate: tuple[Path, Path] | None) -> None:
        if mode not in SMTP_MODES:
            raise ValueError(f"unknown SMTP mode {mode!r}; one of {SMTP_MODES}")
        self.mode = mode
        self.security = "ssl" if mode.startswith("ssl") else "starttls" if mode.startswith("starttls") else "none"
        self.auth = mode.endswith("auth")
        self.host = "127.0.0.1"
        self.port = 0
        self.cafile: Path | None = certificate[0] if certificate else None
        self._certificate = certificate
        self._messages: list[ReceivedMail] = []
        self._cond = threading.Condition()
        self.noop_delay = 0.0
        """Seconds the server takes to answer NOOP (a relay gone silent on a kept connection)."""
        self.idle_timeout: float | None = None
        """Set before start() to drop a client that says nothing for that many seconds (as relays do)."""
        self.reply: str | None = None
        """Set to e.g. ``"451 4.3.0 try again later"`` to answer DATA with it instead of 250."""
        self._controller: Any = None

    # -- aiosmtpd hooks

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        message = cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(raw))
        mail = ReceivedMail(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            message=message,
            login=session.auth_data if session.authenticated else None,
            tls=self.security == "ssl" or session.ssl is not None,
            peer=f"{session.peer[0]}:{session.peer[1]}" if session.peer else "",
        )
        if self.reply is not None:
            return self.reply
        with self._cond:
            self._messages.append(mail)
            self._cond.notify_all()
        return "250 OK"

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        if self.noop_delay:
            import asyncio

            await asyncio.sleep(self.noop_delay)
        return "250 OK"

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            if login == self.user and auth_data.password.decode("utf-8", "replace") == self.password:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    # -- control

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        with socket.socket() as probe:
            # aiosmtpd's readiness probe needs the real port up front.
            probe.bind((self.host, 0))
            self.port = probe.getsockname()[1]
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": True, "ready_timeout": 10}
        if self.idle_timeout is not None:
            kwargs["timeout"] = self.idle_timeout
        if self.security != "none":
            assert self._certificate is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self._certificate[0]), str(self._certificate[1]))
            if self.security == "ssl":
                kwargs["ssl_context"] = context
            else:
                kwargs["tls_context"] = context
                kwargs["require_starttls"] = True
        if self.auth:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                # A relay offering STARTTLS wants it before AUTH; plain "auth" mode
                # (and implicit TLS, which aiosmtpd does not count) must allow it.
                auth_require_tls=self.security == "starttls",
            )
        self._controller = Controller(self, hostname=self.host, port=self.port, **kwargs)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._cond:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Block until ``count`` messages arrived or ``timeout`` passed; return what arrived."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._messages) >= count, timeout=timeout)
            return list(self._messages)

    def config(self) -> dict[str, str]:
        """The MISSEDCALL_* settings that point the product at this server."""
        conf = {
            "MISSEDCALL_TRANSPORT": "smtp",
            "MISSEDCALL_SMTP_HOST": self.host,
            "MISSEDCALL_SMTP_PORT": str(self.port),
            "MISSEDCALL_SMTP_SECURITY": self.security,
        }
        if self.auth:
            conf["MISSEDCALL_SMTP_USER"] = self.user
            conf["MISSEDCALL_SMTP_PASSWORD"] = self.password
        return conf

    def client_env(self) -> dict[str, str]:
        """Environment that makes OpenSSL in a child process trust this server's certificate."""
        return {"SSL_CERT_FILE": str(self.cafile)} if self.cafile else {}

    def client_context(self) -> ssl.SSLContext:
        """An SSL context (for smtplib in the test process) that trusts this server."""
        return ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)

