"""doctor's check of callback tracking: its keys, which CDR source it reads, and whether it can read it.

No source, or one it cannot read, is a WARN: alerts still work, only callbacks
are not tracked. A key that does not parse is a FAIL, as for every other key.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from missedcall.admin.checks_access import FAIL, OK, WARN, Check, user_may
from missedcall.config import ConfigError

if TYPE_CHECKING:
    from missedcall.admin.doctor import Doctor

_TIMEOUT = 5.0


def check_cdr(doc: Doctor) -> Check:
    from missedcall.resolve import settings as keys

    name = "callbacks"
    if doc.settings is None:
        return Check(WARN, name, "not checked: the configuration is unusable")
    try:
        keys.region(doc.settings)
        hours = keys.resolve_hours(doc.settings)
        keys.followup_enabled(doc.settings)
        keys.report_hour(doc.settings)
        source = keys.cdr_source(doc.settings)
    except ConfigError as exc:
        return Check(FAIL, name, str(exc), f"edit {doc.config_path} (see docs/resolution.md)")
    if source.kind == "off":
        return Check(
            WARN, name, f"no CDR source ({source.origin}): callbacks are not tracked",
            "set MISSEDCALL_CDR_URL=csv:/var/log/asterisk/cdr-csv/Master.csv or mysql://.../asteriskcdrdb?table=cdr",
        )  # fmt: skip
    where = f"{source.describe()} ({source.origin})"
    if source.kind == "csv":
        if not os.path.isfile(source.path):
            return Check(WARN, name, f"{where} does not exist: callbacks are not tracked",
                         "load cdr_csv in Asterisk (cdr.conf [csv]) or set MISSEDCALL_CDR_URL")  # fmt: skip
        user = doc.for_user()
        if not user_may(source.path, user, os.R_OK):
            return Check(WARN, name, f"{where} is not readable by {user.name}: callbacks are not tracked",
                         f"chmod g+r {source.path} (group of {user.name})")  # fmt: skip
        return Check(OK, name, f"reading {where}; misses watched for {hours} h")
    from missedcall.record import cdr
    from missedcall.record.db import Database, StorageError

    assert source.target is not None
    try:
        with Database.open(source.target, timeout=_TIMEOUT, create=False) as db:
            cdr.columns(db, source.table)
    except StorageError as exc:
        return Check(WARN, name, f"cannot read {where}: {exc}; callbacks are not tracked",
                     "grant SELECT on the CDR table, or set MISSEDCALL_CDR_URL")  # fmt: skip
    return Check(OK, name, f"reading {where}; misses watched for {hours} h")
