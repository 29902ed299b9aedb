"""Database locations: parse ``MISSEDCALL_DB_URL`` and FreePBX credentials into one shape.

The password lives here and nowhere else; ``DbTarget`` never shows it in
``repr()`` or ``describe()`` so that it cannot leak into a log line or a
``doctor`` report by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_SQLITE_PATH = "/var/lib/missedcall/missedcall.sqlite3"
# Where MariaDB/MySQL put their socket on Debian and on CentOS/SNG7.
_SOCKET_CANDIDATES = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock")


class DbUrlError(ValueError):
    """A database URL or credential set that cannot be used."""


@dataclass(frozen=True)
class DbTarget:
    kind: str  # "mysql" or "sqlite"
    database: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    host: str = ""
    port: int = 3306
    unix_socket: str = ""
    path: str = ""  # sqlite file
    origin: str = ""  # where the settings came from, for messages

    def describe(self) -> str:
        """A human description with no secret in it."""
        if self.kind == "sqlite":
            return f"sqlite:{self.path}"
        where = f"socket {self.unix_socket}" if self.unix_socket else f"{self.host}:{self.port}"
        return f"mysql://{self.user}@{where}/{self.database}"


def parse_db_url(url: str) -> DbTarget:
    """``mysql://user:pass@host:port/db[?unix_socket=/path]`` or ``sqlite:////abs/path``."""
    url = url.strip()
    if url.startswith("sqlite:"):
        # sqlite:////abs/path -> /abs/path (SQLAlchemy's spelling, which admins know).
        rest = url[len("sqlite:") :]
        if rest.startswith("///"):
            path = rest[3:] if rest.startswith("////") else rest[2:]
        else:
            path = rest
        path = unquote(path)
        if not path.startswith("/"):
            raise DbUrlError("MISSEDCALL_DB_URL: a sqlite path must be absolute (sqlite:////var/lib/...)")
        return DbTarget(kind="sqlite", path=path, origin="MISSEDCALL_DB_URL")
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
        raise DbUrlError(
            f"MISSEDCALL_DB_URL must start with mysql:// or sqlite:// (got scheme {parts.scheme or 'none'!r})"
        )
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise DbUrlError("MISSEDCALL_DB_URL names no database (mysql://user:pass@host/DBNAME)")
    try:
        port = parts.port or 3306
    except ValueError as exc:
        raise DbUrlError("MISSEDCALL_DB_URL has an invalid port") from exc
    query = parse_qs(parts.query)
    socket = query.get("unix_socket", [""])[0]
    host = parts.hostname or "localhost"
    return mysql_target(
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        host=host,
        port=port,
        database=database,
        unix_socket=socket,
        explicit_port=parts.port is not None,
        origin="MISSEDCALL_DB_URL",
    )


def mysql_target(
    *,
    user: str,
    password: str,
    host: str,
    port: int,
    database: str,
    unix_socket: str = "",
    explicit_port: bool = False,
    origin: str = "",
) -> DbTarget:
    """Build a MySQL target the way the mysql client would reach it.

    ``localhost`` means the Unix socket to MySQL clients (and FreePBX's
    ``freepbxuser`` is usually granted at ``localhost`` only), whereas PyMySQL
    would open TCP; so without an explicit port we use the socket when one exists.
    """
    if not unix_socket and host == "localhost" and not explicit_port:
        unix_socket = next((s for s in _SOCKET_CANDIDATES if os.path.exists(s)), "")
    return DbTarget(
        kind="mysql",
        database=database,
        user=user,
        password=password,
        host=host,
        port=port,
        unix_socket=unix_socket,
        origin=origin,
    )


def target_from_amp_conf(conf: dict[str, str], origin: str) -> DbTarget:
    """FreePBX's AMPDB* settings as a target; raises DbUrlError when they are unusable."""
    engine = conf.get("AMPDBENGINE", "mysql").lower()
    if engine not in ("mysql", "mariadb", ""):
        raise DbUrlError(f"{origin}: AMPDBENGINE={engine} is not supported (only mysql)")
    user = conf.get("AMPDBUSER", "")
    if not user:
        raise DbUrlError(f"{origin}: no AMPDBUSER found")
    port_text = conf.get("AMPDBPORT", "").strip()
    try:
        port = int(port_text) if port_text else 3306
    except ValueError as exc:
        raise DbUrlError(f"{origin}: AMPDBPORT is not a number") from exc
    return mysql_target(
        user=user,
        password=conf.get("AMPDBPASS", ""),
        host=conf.get("AMPDBHOST", "") or "localhost",
        port=port,
        database=conf.get("AMPDBNAME", "") or "asterisk",
        unix_socket=conf.get("AMPDBSOCK", ""),
        explicit_port=bool(port_text),
        origin=origin,
    )
