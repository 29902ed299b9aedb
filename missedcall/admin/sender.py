"""The From address when MISSEDCALL_FROM is empty: FreePBX's own, resolved once, else missedcall@<fqdn>.

FreePBX keeps the address its notifications come from in the database (``freepbx_settings``,
AMPUSERMANEMAILFROM). The hook does not look it up per call: ``missedcall-admin init``, which
install.sh runs on every install and upgrade, copies it into ``freepbx-from`` beside the
configuration file (missedcall.fromcopy), and ``config.load_settings`` reads that one line on
FreePBX only. So a mail
sent while the database is down has the same From as the others, and the hook pays no query.
``doctor`` says when FreePBX's value has changed since (fix: ``missedcall-admin init``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from missedcall import config, fromcopy
from missedcall.admin.checks_access import OK, WARN, Check
from missedcall.record.db import StorageError
from missedcall.record.pbxsettings import FROM_KEYWORD, freepbx_setting
from missedcall.record.storage import Store

if TYPE_CHECKING:
    from missedcall.admin.doctor import Doctor

SET_IT = "FreePBX: Settings > Advanced Settings > Email \"From:\" Address"


def freepbx_from(store: Store) -> tuple[str, str]:
    """(FreePBX's From address or "", why it is not usable when it is not)."""
    value = (freepbx_setting(store, FROM_KEYWORD) or "").strip()
    if not value:
        return "", "FreePBX has no Email \"From:\" Address"
    if not config.is_address(value):
        return "", f"FreePBX's Email \"From:\" Address {config.shown(value, 60)!r} is not a plain address"
    return value, ""


def refresh(settings: config.Settings, store: Store) -> str:
    """Copy FreePBX's address into the file load_settings reads (or remove a stale copy); one line saying so."""
    address, why = freepbx_from(store)
    problem = fromcopy.write(settings.config_path, fromcopy.FREEPBX, address)
    if problem:
        return f"note: {config.shown(problem, 200)}: From stays {settings.mail_from}"
    if address:
        kept = fromcopy.path(settings.config_path, fromcopy.FREEPBX)
        return f"From: {address} (FreePBX's Email \"From:\" Address, kept in {kept})"
    return f"From: {keep_host(settings)} ({why}; MISSEDCALL_FROM sets another)"


def keep_host(settings: config.Settings) -> str:
    """Resolve missedcall@<FQDN> now and keep it where the hook reads it (never resolved per call)."""
    address = config.host_from()
    problem = fromcopy.write(settings.config_path, fromcopy.HOST, address)
    return f"{address} (note: {config.shown(problem, 200)})" if problem else address


def check_from(doc: Doctor) -> Check:
    name = "from"
    settings = doc.settings
    if settings is None:
        return Check(WARN, name, "not checked: the configuration is unusable")
    sender = settings.mail_from
    if settings.raw.get("MISSEDCALL_FROM", "").strip():
        source = "MISSEDCALL_FROM"
    elif settings.is_freepbx and sender == fromcopy.read(settings.config_path, fromcopy.FREEPBX):
        source = "FreePBX's Email \"From:\" Address"
    else:
        source = "this host's name"
    if source != "MISSEDCALL_FROM" and settings.is_freepbx and doc.store is not None:
        try:
            live, _why = freepbx_from(doc.store)
        except StorageError:
            live = ""
        if live and live != sender:
            return Check(
                WARN, name, f"mails come from {sender}, but FreePBX's Email \"From:\" Address is now {live}",
                "missedcall-admin init (it copies FreePBX's address)",
            )
    domain = sender.rsplit("@", 1)[-1].lower()
    if domain == "localhost" or "." not in domain:
        where = f"{SET_IT}, then missedcall-admin init; or " if settings.is_freepbx else ""
        return Check(
            WARN, name, f"mails come from {sender} ({source}): relays often refuse or junk a host without a domain",
            f"{where}set MISSEDCALL_FROM=pbx@your-domain in {doc.config_path}",
        )
    return Check(OK, name, f"mails come from {sender} ({source})")
