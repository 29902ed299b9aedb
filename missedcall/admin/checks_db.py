"""doctor's checks of what lives in the database: the tables, the recipients, and delivery's backlog."""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

from missedcall.admin.checks_access import FAIL, OK, WARN, Check, user_may
from missedcall.config import shown, why_not_address
from missedcall.deliver import targets
from missedcall.deliver.health import health as delivery_health
from missedcall.record.db import StorageError
from missedcall.record.schema import SCHEMA_VERSION
from missedcall.record.storage import Store

if TYPE_CHECKING:
    from missedcall.admin.doctor import Doctor

_NET_TIMEOUT = 5.0


def check_database(doc: Doctor) -> Check:
    name = "database"
    if doc.settings is None:
        return Check(WARN, name, "not checked: the configuration is unusable")
    where = doc.settings.db.describe()
    fix_conn = f"check MISSEDCALL_DB_URL in {doc.config_path}" + (
        f" (empty: FreePBX's credentials from {doc.settings.freepbx_conf})" if doc.settings.is_freepbx else ""
    )
    try:
        doc.store = Store.open(doc.settings.db, timeout=_NET_TIMEOUT, create=False)
    except StorageError as exc:
        return Check(FAIL, name, str(exc), fix_conn)
    version = doc.store.schema_version()
    if version is None or version != SCHEMA_VERSION:
        # The later checks read the tables: they say "not checked" rather than fail again.
        doc.store.close()
        doc.store = None
    if version is None:
        return Check(FAIL, name, f"{where} is reachable but has no missedcall tables", "missedcall-admin init")
    if version < SCHEMA_VERSION:
        return Check(
            FAIL,
            name,
            f"{where}: schema version {version}, this code needs {SCHEMA_VERSION}",
            "missedcall-admin init",
        )
    if version > SCHEMA_VERSION:
        return Check(
            FAIL,
            name,
            f"{where}: schema version {version} is newer than this code ({SCHEMA_VERSION})",
            "install the newer missedcall: sudo ./install.sh from its folder",
        )
    if doc.settings.db.kind == "sqlite":
        user = doc.for_user()
        path = doc.settings.db.path
        for target in (path, os.path.dirname(path)):
            if not user_may(target, user, 2):
                return Check(
                    FAIL,
                    name,
                    f"{target} is not writable by {user.name}, who records the calls",
                    f"chown -R {user.name}: {os.path.dirname(path)}",
                )
    return Check(OK, name, f"{where} reachable, tables at schema version {version}")


def _why(key: str) -> str:
    return targets.problem(key) if targets.is_chat(key) else why_not_address(key)


def check_recipients(doc: Doctor) -> Check:
    name = "recipients"
    if doc.settings is None or doc.store is None:
        return Check(WARN, name, "not checked: no database")
    try:
        rows = doc.store.recipients()
        queues = doc.store.freepbx_queues()
    except StorageError as exc:
        return Check(FAIL, name, str(exc), "missedcall-admin init")
    bad = [row for row in rows if _why(row.email)]
    if bad:
        row = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return Check(
            FAIL,
            name,
            f"{shown(row.email, 80)!r} (queue {row.queue}) {_why(row.email)}{more}: it is left out of every mail",
            f"missedcall-admin recipients remove {shlex.quote(row.queue)} {shlex.quote(shown(row.email, 80))}",
        )
    own = {row.queue for row in rows if row.queue != "*"}
    star = any(row.queue == "*" for row in rows)
    fallback = bool(doc.settings.fallback_to)
    add = "missedcall-admin recipients add QUEUE you@example.com (or set MISSEDCALL_FALLBACK_TO)"
    if queues is None:
        if not rows and not fallback:
            return Check(WARN, name, "no recipients and no fallback: missed calls are recorded, not mailed", add)
        return Check(OK, name, f"{len(rows)} recipient row(s)" + (", fallback set" if fallback else ""))
    if not queues:
        return Check(WARN, name, "FreePBX has no queues yet", "create a queue in FreePBX, then: " + add)
    missing = [q for q in sorted(queues, key=lambda q: q.zfill(12)) if q not in own]
    if missing and not fallback and not star:
        listed = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        return Check(
            WARN,
            name,
            f"no recipients for queue(s) {listed}: their missed calls are recorded, not mailed",
            add.replace("QUEUE", missing[0]),
        )
    covered = len(queues) - len(missing)
    extra = f"; {len(missing)} use " + ("the fallback" if fallback else "the '*' rows") if missing else ""
    return Check(OK, name, f"{covered} of {len(queues)} FreePBX queue(s) have their own recipients{extra}")


def check_delivery(doc: Doctor) -> Check:
    """Failed calls, calls overdue for retry, and the spool (missedcall.deliver.health)."""
    name = "delivery"
    if doc.settings is None or doc.store is None:
        return Check(WARN, name, "not checked: no database")

    spool_dir = doc.settings.spool_dir
    user = doc.for_user()
    if not os.path.isdir(spool_dir) or not user_may(spool_dir, user, 2 | 1):
        return Check(
            FAIL,
            name,
            f"spool {spool_dir} is missing or not writable by {user.name}: calls are lost while the database is down",
            f"install -d -m 0750 -o {user.name} -g {user.name} {spool_dir}",
        )
    status, detail, fix = delivery_health(doc.store, doc.settings)
    return Check(status, name, detail, fix)
