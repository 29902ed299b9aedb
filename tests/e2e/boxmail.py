"""Mail in the box: what Postfix still holds, and what it delivered to /var/mail.

Postfix there is "local only": every recipient lands in ops's mailbox with the
original address in X-Original-To.
"""

from __future__ import annotations

import email.message
import email.policy
import mailbox
from pathlib import Path
from typing import Optional

from processes import wait_for


class BoxMail:
    """Mixed into Pbx: needs only ``path(inside)``."""

    def path(self, inside: str) -> Path:
        raise NotImplementedError

    POSTFIX_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

    def mail_queued(self) -> list[str]:
        """Messages postfix still holds (submitted but not yet delivered), by queue/file."""
        found = []
        for queue in self.POSTFIX_QUEUES:
            top = self.path(f"/var/spool/postfix/{queue}")
            if top.is_dir():
                found += [f"{queue}/{f.name}" for f in top.rglob("*") if f.is_file()]
        return found

    def wait_mail_idle(self, timeout: float = 30.0) -> None:
        """Wait until postfix has delivered everything handed to it so far.

        A message handed to sendmail sits in maildrop until pickup moves it on; every
        later step is a rename, so an empty set of queues means all is delivered.
        """
        wait_for(lambda: not self.mail_queued(), timeout, "postfix to deliver what it was given", 0.1)

    def messages(self, user: str = "ops") -> list[email.message.EmailMessage]:
        """Like mailbox(), parsed with the modern policy: headers decoded, get_content() works."""
        path = self.path(f"/var/mail/{user}")
        if not path.exists():
            return []
        box = mailbox.mbox(str(path), create=False)
        try:
            parsed = []
            for key in box.keys():
                message = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
                assert isinstance(message, email.message.EmailMessage)
                parsed.append(message)
            return parsed
        finally:
            box.close()

    def mailbox(self, user: str = "ops") -> list[email.message.Message]:
        """Messages delivered to /var/mail/<user> (every unknown recipient lands in ops)."""
        path = self.path(f"/var/mail/{user}")
        if not path.exists():
            return []
        box = mailbox.mbox(str(path), create=False)
        try:
            return [email.message_from_bytes(box.get_bytes(key)) for key in box.keys()]
        finally:
            box.close()

    def wait_for_mail(self, count: int = 1, user: str = "ops", timeout: float = 30.0) -> list[email.message.Message]:
        def enough() -> Optional[list[email.message.Message]]:
            box = self.mailbox(user)
            return box if len(box) >= count else None

        return wait_for(enough, timeout, f"{count} message(s) in /var/mail/{user}", 0.2)
