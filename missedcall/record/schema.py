"""The tables (missedcall_state, _recipients, _calls, _flood, _held, _queues) on both engines, and their migrations.

``Store.init`` runs :data:`DDL` and adds the :data:`ADDED_COLUMNS` a table lacks,
so it is idempotent and safe when several processes run it at once.
"""

from __future__ import annotations

# 2: missedcall_calls.next_attempt_at (back-off and claim lease); missedcall_flood and
#    missedcall_held (storm control, see missedcall/record/held.py).
# 3: missedcall_calls.did (the DID from FreePBX's queue_log lines), so a mail sent later by
#    retry says what the first one would have said.
# 4: missedcall_queues: per-queue label, language, minimum wait and on/off (missedcall/record/queues.py).
# 5: how each miss ended (resolution, resolved_at/_by, talk_seconds, caller_key), the first mail's
#    Message-ID and the thread a repeat miss joins (message_id, thread_of), the follow-up's state,
#    whether the caller left a voicemail; missedcall_queues.hours (business hours); missedcall_followups
#    (a follow-up's attempts and the addresses still waiting for it).
SCHEMA_VERSION = 5
DDL_MYSQL = (
    """CREATE TABLE IF NOT EXISTS missedcall_state (
        name VARCHAR(64) NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS missedcall_recipients (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        queue VARCHAR(64) NOT NULL,
        email VARCHAR(191) NOT NULL,
        name VARCHAR(128) NOT NULL DEFAULT '',
        created_at DATETIME NOT NULL,
        UNIQUE KEY missedcall_recipients_queue_email (queue, email)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS missedcall_calls (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        callid VARCHAR(64) NOT NULL,
        linkedid VARCHAR(64) NOT NULL DEFAULT '',
        queue VARCHAR(64) NOT NULL,
        path VARCHAR(1024) NOT NULL DEFAULT '',
        caller_num VARCHAR(128) NOT NULL DEFAULT '',
        caller_name VARCHAR(512) NOT NULL DEFAULT '',
        reason VARCHAR(16) NOT NULL,
        wait_seconds INT NULL,
        position INT NULL,
        entered_at DATETIME NULL,
        ended_at DATETIME NULL,
        source VARCHAR(16) NOT NULL,
        status VARCHAR(16) NOT NULL DEFAULT 'pending',
        attempts INT NOT NULL DEFAULT 0,
        last_error VARCHAR(512) NOT NULL DEFAULT '',
        recipients TEXT NULL,
        notified_at DATETIME NULL,
        next_attempt_at DATETIME NULL,
        did VARCHAR(64) NOT NULL DEFAULT '',
        UNIQUE KEY missedcall_calls_callid (callid),
        KEY missedcall_calls_ended (ended_at),
        KEY missedcall_calls_status (status)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    # Storm control (missedcall/record/held.py): one counting window per recipient address ...
    """CREATE TABLE IF NOT EXISTS missedcall_flood (
        email VARCHAR(191) NOT NULL PRIMARY KEY,
        window_start DATETIME NOT NULL,
        sent INT NOT NULL DEFAULT 0
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    # ... and one row per (call, address) that waits for that address's digest.
    """CREATE TABLE IF NOT EXISTS missedcall_held (
        callid VARCHAR(64) NOT NULL,
        email VARCHAR(191) NOT NULL,
        held_at DATETIME NOT NULL,
        due_at DATETIME NOT NULL,
        status VARCHAR(16) NOT NULL DEFAULT 'held',
        attempts INT NOT NULL DEFAULT 0,
        last_error VARCHAR(512) NOT NULL DEFAULT '',
        lease VARCHAR(32) NOT NULL DEFAULT '',
        sent_at DATETIME NULL,
        PRIMARY KEY (callid, email),
        KEY missedcall_held_due (status, due_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    # Chat targets (missedcall/record/deliveries.py): one row per (call, target) of a call that has a
    # chat target, so a retry resends only to the targets that have not got it yet; ref is the message's
    # id where the service gives one (Telegram), which a follow-up replies to.
    """CREATE TABLE IF NOT EXISTS missedcall_deliveries (
        callid VARCHAR(64) NOT NULL,
        target VARCHAR(191) NOT NULL,
        status VARCHAR(16) NOT NULL DEFAULT 'pending',
        last_error VARCHAR(512) NOT NULL DEFAULT '',
        ref VARCHAR(64) NOT NULL DEFAULT '',
        updated_at DATETIME NOT NULL,
        PRIMARY KEY (callid, target)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS missedcall_queues (
        queue VARCHAR(64) NOT NULL PRIMARY KEY,
        label VARCHAR(128) NULL,
        language VARCHAR(8) NULL,
        min_wait INT NULL,
        enabled TINYINT NULL,
        updated_at DATETIME NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    # 5: one row per follow-up on its way (missedcall/record/followups.py), keyed by the thread's first
    # callid: its attempts and back-off, and the addresses that still wait for it.
    """CREATE TABLE IF NOT EXISTS missedcall_followups (
        callid VARCHAR(64) NOT NULL PRIMARY KEY,
        attempts INT NOT NULL DEFAULT 0,
        next_attempt_at DATETIME NULL,
        last_error VARCHAR(512) NOT NULL DEFAULT '',
        waiting TEXT NULL,
        granted TEXT NULL,
        sent_at DATETIME NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)

DDL_SQLITE = (
    """CREATE TABLE IF NOT EXISTS missedcall_state (
        name TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS missedcall_recipients (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        email TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        UNIQUE (queue, email)
    )""",
    """CREATE TABLE IF NOT EXISTS missedcall_calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        callid TEXT NOT NULL UNIQUE,
        linkedid TEXT NOT NULL DEFAULT '',
        queue TEXT NOT NULL,
        path TEXT NOT NULL DEFAULT '',
        caller_num TEXT NOT NULL DEFAULT '',
        caller_name TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL,
        wait_seconds INTEGER NULL,
        position INTEGER NULL,
        entered_at TEXT NULL,
        ended_at TEXT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        recipients TEXT NULL,
        notified_at TEXT NULL,
        next_attempt_at TEXT NULL,
        did TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS missedcall_calls_ended ON missedcall_calls (ended_at)",
    "CREATE INDEX IF NOT EXISTS missedcall_calls_status ON missedcall_calls (status)",
    """CREATE TABLE IF NOT EXISTS missedcall_flood (
        email TEXT NOT NULL PRIMARY KEY,
        window_start TEXT NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS missedcall_held (
        callid TEXT NOT NULL,
        email TEXT NOT NULL,
        held_at TEXT NOT NULL,
        due_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'held',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        lease TEXT NOT NULL DEFAULT '',
        sent_at TEXT NULL,
        PRIMARY KEY (callid, email)
    )""",
    "CREATE INDEX IF NOT EXISTS missedcall_held_due ON missedcall_held (status, due_at)",
    """CREATE TABLE IF NOT EXISTS missedcall_deliveries (
        callid TEXT NOT NULL,
        target TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        last_error TEXT NOT NULL DEFAULT '',
        ref TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL,
        PRIMARY KEY (callid, target)
    )""",
    """CREATE TABLE IF NOT EXISTS missedcall_queues (
        queue TEXT NOT NULL PRIMARY KEY,
        label TEXT NULL,
        language TEXT NULL,
        min_wait INTEGER NULL,
        enabled INTEGER NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS missedcall_followups (
        callid TEXT NOT NULL PRIMARY KEY,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        waiting TEXT NULL,
        granted TEXT NULL,
        sent_at TEXT NULL
    )""",
)
#: Columns added after version 1, as (table, column, MariaDB type, SQLite type): ``init`` adds
#: whichever a table lacks, so it is idempotent and safe when several processes run it at once.
ADDED_COLUMNS = (
    ("missedcall_calls", "next_attempt_at", "DATETIME NULL", "TEXT NULL"),
    ("missedcall_calls", "did", "VARCHAR(64) NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
    # 5: resolution is '' while the miss is open, else 'called-back' or 'got-through'.
    ("missedcall_calls", "resolution", "VARCHAR(16) NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
    ("missedcall_calls", "resolved_at", "DATETIME NULL", "TEXT NULL"),
    ("missedcall_calls", "resolved_by", "VARCHAR(128) NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
    ("missedcall_calls", "talk_seconds", "INT NULL", "INTEGER NULL"),
    # The caller's number reduced to a match key (E.164 or its last digits), so repeat callers and
    # callbacks are found by an indexed lookup instead of a scan.
    ("missedcall_calls", "caller_key", "VARCHAR(32) NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
    ("missedcall_calls", "message_id", "VARCHAR(255) NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
    ("missedcall_calls", "thread_of", "VARCHAR(64) NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
    # '' (none due), 'pending', 'sent', 'failed' or 'off'.
    ("missedcall_calls", "followup", "VARCHAR(16) NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
    ("missedcall_calls", "voicemail", "TINYINT NOT NULL DEFAULT 0", "INTEGER NOT NULL DEFAULT 0"),
    ("missedcall_queues", "hours", "VARCHAR(1024) NULL", "TEXT NULL"),
    # A chat target's URL (slack:, mattermost:, teams:, webhook:); ``email`` then holds its short key
    # (missedcall/deliver/targets.py), which keeps the (queue, email) key within InnoDB's index size.
    ("missedcall_recipients", "target", "VARCHAR(2048) NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
    # Why a call waits for a digest: '' storm control, 'hours' the queue was closed (the morning summary).
    ("missedcall_held", "kind", "VARCHAR(16) NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
)
#: Indexes on added columns, as (name, table, columns); created after ADDED_COLUMNS.
ADDED_INDEXES = (
    # A repeat miss's look-up (Store.open_misses, every mailed call): the caller's *open* misses.
    # With resolution in it the index has two equalities, so SQLite's planner takes it over
    # (resolution, ended_at), which it took before for (caller_key, ended_at): a walk over every
    # open miss of the last hours on every hang-up, growing with the day (143 us at 650 rows, 9 us now).
    ("missedcall_calls_caller_open", "missedcall_calls", "caller_key, resolution, ended_at"),
    ("missedcall_calls_resolution", "missedcall_calls", "resolution, ended_at"),
    ("missedcall_calls_followup", "missedcall_calls", "followup"),
)

#: Indexes of earlier versions that a newer one replaced, as (name, table); dropped by init.
DROPPED_INDEXES = (("missedcall_calls_caller_key", "missedcall_calls"),)


def ddl(kind: str) -> tuple[str, ...]:
    """The CREATE statements for ``kind`` ("sqlite" or "mysql")."""
    return DDL_SQLITE if kind == "sqlite" else DDL_MYSQL
