"""FreePBX's Advanced Settings (its ``freepbx_settings`` table), read when the database is FreePBX's own."""

from __future__ import annotations

from missedcall.record.storage import Store

#: FreePBX's own "Email 'From:' Address" (User Management module, Advanced Settings).
FROM_KEYWORD = "AMPUSERMANEMAILFROM"


def freepbx_setting(store: Store, keyword: str) -> str | None:
    """The setting's value; None when the database has no such table or no such row (not FreePBX's)."""
    if not store.table_exists("freepbx_settings"):
        return None
    rows = store.rows("SELECT value FROM freepbx_settings WHERE keyword = ?", (keyword,))
    if not rows or rows[0][0] is None:
        return None
    value = rows[0][0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
