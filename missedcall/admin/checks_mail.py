"""doctor's check of the mail path: the sendmail binary, or a real login to the SMTP relay."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from missedcall import config
from missedcall.admin.checks_access import FAIL, OK, WARN, Check, user_may
from missedcall.deliver import transport

if TYPE_CHECKING:
    from missedcall.admin.doctor import Doctor

_NET_TIMEOUT = 5.0


def check_mail(doc: Doctor) -> Check:
    name = "mail"
    settings = doc.settings
    if settings is None:
        return Check(WARN, name, "not checked: the configuration is unusable")
    if settings.transport == "sendmail":
        path = settings.sendmail
        fix = "install a mail server (postfix), or set MISSEDCALL_TRANSPORT=smtp and MISSEDCALL_SMTP_HOST"
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            return Check(FAIL, name, f"sendmail {path} is missing or not executable", fix)
        user = doc.for_user()
        if not user_may(path, user, 1):
            return Check(FAIL, name, f"sendmail {path} is not executable by {user.name}", f"chmod o+x {path}")
        return Check(OK, name, f"sendmail {path} is executable")
    return check_smtp(doc, settings)


def check_smtp(doc: Doctor, settings: config.Settings) -> Check:
    import smtplib
    import ssl

    name = "mail"
    where = f"SMTP relay {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security})"
    timeout = min(settings.smtp_timeout, _NET_TIMEOUT)
    opened: list[smtplib.SMTP] = []
    try:
        transport.open_smtp(settings, timeout=timeout, opened=opened)
    except smtplib.SMTPAuthenticationError:
        return Check(
            FAIL, name, f"{where} refused the login of {settings.smtp_user}", "check MISSEDCALL_SMTP_USER/_PASSWORD"
        )
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
        return Check(FAIL, name, f"cannot use {where}: {reason}", f"check MISSEDCALL_SMTP_* in {doc.config_path}")
    finally:
        for client in opened:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
    login = f", logged in as {settings.smtp_user}" if settings.smtp_user else ""
    return Check(OK, name, f"{where} reachable{login}")
