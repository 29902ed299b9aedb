"""FreePBX as the product sees it: the queue tables of its ``asterisk`` database
and the /etc/freepbx.conf that names that database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from tests.support.mariadb import MariaDBDatabase

# FreePBX's queues module (module.xml, <database>): queues_config and queues_details.
QUEUES_CONFIG_DDL = """
CREATE TABLE IF NOT EXISTS `queues_config` (
  `extension` varchar(20) NOT NULL DEFAULT '',
  `descr` varchar(35) NOT NULL DEFAULT '',
  `grppre` varchar(100) NOT NULL DEFAULT '',
  `alertinfo` varchar(254) NOT NULL DEFAULT '',
  `ringing` tinyint(1) NOT NULL DEFAULT 0,
  `maxwait` varchar(8) NOT NULL DEFAULT '',
  `password` varchar(20) NOT NULL DEFAULT '',
  `ivr_id` varchar(8) NOT NULL DEFAULT '0',
  `dest` varchar(50) NOT NULL DEFAULT '',
  `cwignore` tinyint(1) NOT NULL DEFAULT 0,
  `queuewait` tinyint(1) DEFAULT 0,
  `use_queue_context` tinyint(1) DEFAULT 0,
  `togglehint` tinyint(1) DEFAULT 0,
  `qnoanswer` tinyint(1) DEFAULT 0,
  `callconfirm` tinyint(1) DEFAULT 0,
  `callconfirm_id` int(11) DEFAULT NULL,
  `qregex` varchar(255) DEFAULT NULL,
  `agentannounce_id` int(11) DEFAULT NULL,
  `joinannounce_id` int(11) DEFAULT NULL,
  `monitor_type` varchar(5) DEFAULT NULL,
  `monitor_heard` int(11) DEFAULT NULL,
  `monitor_spoken` int(11) DEFAULT NULL,
  `callback_id` varchar(8) NOT NULL DEFAULT '',
  PRIMARY KEY (`extension`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
QUEUES_DETAILS_DDL = """
CREATE TABLE IF NOT EXISTS `queues_details` (
  `id` varchar(45) NOT NULL DEFAULT '-1',
  `keyword` varchar(30) NOT NULL DEFAULT '',
  `data` varchar(150) NOT NULL DEFAULT '',
  `flags` int(11) NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`, `keyword`, `data`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
# The queues of tests/fixtures/queue_log/freepbx17-shaped.queue_log.
DEFAULT_FREEPBX_QUEUES: tuple[tuple[str, str], ...] = (
    ("600", "Sales"),
    ("601", "Sales overflow"),
    ("602", "Support"),
    ("603", "Billing"),
)


def make_freepbx_like(
    db: MariaDBDatabase, queues: Iterable[tuple[str, str]] = DEFAULT_FREEPBX_QUEUES
) -> None:
    """Give a database FreePBX's queue tables, with ``(extension, descr)`` rows."""
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute(QUEUES_CONFIG_DDL)
        cur.execute(QUEUES_DETAILS_DDL)
        for extension, descr in queues:
            cur.execute(
                "INSERT INTO queues_config (extension, descr, maxwait, dest) VALUES (%s, %s, %s, %s)",
                (extension, descr, "300", "app-blackhole,hangup,1"),
            )
            cur.execute(
                "INSERT INTO queues_details (id, keyword, data) VALUES (%s, 'strategy', 'ringall')",
                (extension,),
            )


def write_freepbx_conf(path: Path, db: MariaDBDatabase, *, host: str = "localhost") -> Path:
    """An /etc/freepbx.conf in FreePBX's own shape, pointing at ``db``."""
    def php(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    path.write_text(
        "<?php\n"
        "$amp_conf['AMPDBUSER'] = " + php(db.user) + ";\n"
        "$amp_conf['AMPDBPASS'] = " + php(db.password) + ";\n"
        "$amp_conf['AMPDBHOST'] = " + php(host) + ";\n"
        "$amp_conf['AMPDBPORT'] = '3306';\n"
        "$amp_conf['AMPDBNAME'] = " + php(db.name) + ";\n"
        "$amp_conf['AMPDBENGINE'] = 'mysql';\n"
        "$amp_conf['datasource'] = ''; //for sqlite3\n"
        "require_once('/var/www/html/admin/bootstrap.php');\n",
        encoding="utf-8",
    )
    path.chmod(0o640)
    return path



# FreePBX's Advanced Settings (framework's install SQL): one row per keyword.
FREEPBX_SETTINGS_DDL = """
CREATE TABLE IF NOT EXISTS `freepbx_settings` (
  `keyword` varchar(50) NOT NULL DEFAULT '',
  `value` varchar(255) DEFAULT NULL,
  `name` varchar(80) DEFAULT NULL,
  `level` tinyint(1) DEFAULT 0,
  `description` text DEFAULT NULL,
  `type` varchar(25) DEFAULT NULL,
  `options` text DEFAULT NULL,
  `defaultval` varchar(255) DEFAULT NULL,
  `readonly` tinyint(1) DEFAULT 0,
  `hidden` tinyint(1) DEFAULT 0,
  `category` varchar(50) DEFAULT NULL,
  `module` varchar(25) DEFAULT NULL,
  `emptyok` tinyint(1) DEFAULT 1,
  `sortorder` int(11) DEFAULT 0,
  PRIMARY KEY (`keyword`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""


def set_freepbx_setting(db: MariaDBDatabase, keyword: str, value: str | None) -> None:
    """Create freepbx_settings if needed and set one keyword, as Advanced Settings saves it."""
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute(FREEPBX_SETTINGS_DDL)
        cur.execute(
            "INSERT INTO freepbx_settings (keyword, value, name, type, defaultval, category, module)"
            " VALUES (%s, %s, 'Email \"From:\" Address', 'text', '', 'User Management Module', 'userman')"
            " ON DUPLICATE KEY UPDATE value = VALUES(value)",
            (keyword, value),
        )


# FreePBX 17's timeconditions module (module.xml, <database>) and core's inbound routes (``incoming``).
TIMECONDITIONS_DDL = (
    """CREATE TABLE IF NOT EXISTS `timeconditions` (
  `timeconditions_id` int(11) NOT NULL AUTO_INCREMENT,
  `displayname` varchar(50) DEFAULT NULL,
  `time` int(11) DEFAULT NULL,
  `truegoto` varchar(50) DEFAULT NULL,
  `falsegoto` varchar(50) DEFAULT NULL,
  `deptname` varchar(50) DEFAULT NULL,
  `generate_hint` tinyint(1) DEFAULT 0,
  `invert_hint` tinyint(1) DEFAULT 0,
  `fcc_password` varchar(20) DEFAULT '',
  `priority` varchar(50) DEFAULT NULL,
  `timezone` varchar(255) DEFAULT NULL,
  `mode` varchar(20) DEFAULT 'time-group',
  `calendar_id` varchar(150) DEFAULT NULL,
  `calendar_group_id` varchar(150) DEFAULT NULL,
  PRIMARY KEY (`timeconditions_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS `timegroups_groups` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `description` varchar(50) NOT NULL DEFAULT '',
  PRIMARY KEY (`id`),
  UNIQUE KEY `display` (`description`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS `timegroups_details` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `timegroupid` int(11) NOT NULL DEFAULT 0,
  `time` varchar(100) NOT NULL DEFAULT '',
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS `incoming` (
  `cidnum` varchar(80) DEFAULT NULL,
  `extension` varchar(50) NOT NULL,
  `destination` varchar(50) DEFAULT NULL,
  `privacyman` tinyint(1) DEFAULT NULL,
  `alertinfo` varchar(255) DEFAULT NULL,
  `ringing` varchar(20) DEFAULT NULL,
  `fanswer` varchar(20) DEFAULT NULL,
  `mohclass` varchar(80) NOT NULL DEFAULT 'default',
  `description` varchar(80) DEFAULT NULL,
  `grppre` varchar(80) DEFAULT NULL,
  `delay_answer` int(2) DEFAULT NULL,
  `pricid` varchar(20) DEFAULT NULL,
  `pmmaxretries` varchar(2) DEFAULT NULL,
  `pmminlength` varchar(2) DEFAULT NULL,
  `reversal` varchar(10) DEFAULT NULL,
  `rvolume` varchar(2) DEFAULT '',
  `indication_zone` varchar(20) DEFAULT 'default',
  PRIMARY KEY (`extension`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)


def add_time_condition(db: MariaDBDatabase, *, did: str, queue: str, rules: Iterable[str],
                       name: str = "Office hours") -> None:  # fmt: skip
    """An inbound route for ``did`` to a Time Condition whose Time Group (``rules``, FreePBX's
    ``09:00-18:00|mon-fri|*|*`` form) sends matching calls to ``queue`` and the rest to voicemail."""
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        for ddl in TIMECONDITIONS_DDL:
            cur.execute(ddl)
        cur.execute("INSERT INTO timegroups_groups (description) VALUES (%s)", (name,))
        group = cur.lastrowid
        for rule in rules:
            cur.execute("INSERT INTO timegroups_details (timegroupid, time) VALUES (%s, %s)", (group, rule))
        cur.execute(
            "INSERT INTO timeconditions (displayname, time, truegoto, falsegoto, mode) VALUES (%s, %s, %s, %s, %s)",
            (name, group, f"ext-queues,{queue},1", "ext-local,vmu100,1", "time-group"),
        )
        condition = cur.lastrowid
        cur.execute(
            "INSERT INTO incoming (cidnum, extension, destination, description) VALUES ('', %s, %s, %s)",
            (did, f"timeconditions,{condition},1", name),
        )


def add_direct_route(db: MariaDBDatabase, *, did: str, queue: str) -> None:
    """An inbound route straight to ``queue``, at any hour."""
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        for ddl in TIMECONDITIONS_DDL:
            cur.execute(ddl)
        cur.execute(
            "INSERT INTO incoming (cidnum, extension, destination, description) VALUES ('', %s, %s, 'direct')",
            (did, f"ext-queues,{queue},1"),
        )
