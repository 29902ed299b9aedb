"""Read what the sendmail stand-in (tests/bin/sendmail) stored.

Import it as ``tests.mailbox``: a top-level ``mailbox`` would shadow the
standard library's module of that name (aiosmtpd imports it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast

from tests.paths import SENDMAIL_BIN

SENDMAIL = SENDMAIL_BIN  # the stand-in whose output this module reads


@dataclass(frozen=True)
class StoredMail:
    """One message as handed to sendmail, with its envelope."""

    path: Path
    raw: bytes
    message: EmailMessage
    envelope: dict[str, Any]

    @property
    def recipients(self) -> list[str]:
        return list(self.envelope["recipients"])

    @property
    def sender(self) -> str | None:
        return cast("str | None", self.envelope["sender"])


def text_part(message: EmailMessage) -> str:
    """The plain-text part of a notification (it is multipart/alternative when an HTML part goes with it)."""
    part = message.get_body(("plain",))
    assert part is not None, "no text/plain part"
    return cast(str, part.get_content())


def html_part(message: EmailMessage) -> str | None:
    part = message.get_body(("html",))
    return None if part is None else cast(str, part.get_content())


def read_mail(directory: str | Path) -> list[StoredMail]:
    """Every stored message, oldest first (file names start with a zero-padded time_ns)."""
    found: list[StoredMail] = []
    for eml in sorted(Path(directory).glob("[0-9]*.eml")):
        raw = eml.read_bytes()
        message = cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(raw))
        envelope = json.loads(eml.with_suffix(".json").read_text(encoding="utf-8"))
        found.append(StoredMail(path=eml, raw=raw, message=message, envelope=envelope))
    return found


def read_messages(directory: str | Path) -> list[EmailMessage]:
    """The stored messages, parsed with ``email.policy.default``, oldest first."""
    return [mail.message for mail in read_mail(directory)]


def read_envelopes(directory: str | Path) -> list[dict[str, Any]]:
    """The envelopes (argv, sender, recipients, ...) in the same order as read_messages()."""
    return [mail.envelope for mail in read_mail(directory)]


def wait_for_mail(directory: str | Path, count: int, timeout: float = 5.0) -> list[StoredMail]:
    """Poll until at least ``count`` messages are stored or ``timeout`` passes; return them."""
    deadline = time.monotonic() + timeout
    while True:
        mails = read_mail(directory)
        if len(mails) >= count or time.monotonic() >= deadline:
            return mails
        time.sleep(0.02)
