"""Database locations: parse ``MISSEDCALL_DB_URL`` and FreePBX credentials into one shape.

The password lives here and nowhere else; ``DbTarget`` never shows it in
``repr()`` or ``describe()`` so that it cannot leak into a log line or a
``doctor`` report by accident.
"""

from __future__ import annotations

import os

from missedcall.slots import Frozen

DEFAULT_SQLITE_PATH = "/var/lib/missedcall/missedcall.sqlite3"
# Where MariaDB/MySQL put their socket on Debian and on CentOS/SNG7.
_SOCKET_CANDIDATES = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock")


class DbUrlError(ValueError):
    """A database URL or credential set that cannot be used."""


class DbTarget(Frozen):
    """Where the database is. The password never shows in ``repr()``."""

    __slots__ = ("kind", "database", "user", "password", "host", "port", "unix_socket", "path", "origin", "ssl_ca")  # noqa: RUF023
    _hidden = ("password",)

    def __init__(
        self,
        kind: str,  # "mysql" or "sqlite"
        database: str = "",
        user: str = "",
        password: str = "",
        host: str = "",
        port: int = 3306,
        unix_socket: str = "",
        path: str = "",  # sqlite file
        origin: str = "",  # where the settings came from, for messages
        ssl_ca: str = "",  # a CA file: TLS required, the server's certificate and name checked against it
    ) -> None:
        self._set(
            kind=kind,
            database=database,
            user=user,
            password=password,
            host=host,
            port=port,
            unix_socket=unix_socket,
            path=path,
            origin=origin,
            ssl_ca=ssl_ca,
        )

    def describe(self) -> str:
        """A human description with no secret in it."""
        if self.kind == "sqlite":
            return f"sqlite:{self.path}"
        where = f"socket {self.unix_socket}" if self.unix_socket else f"{self.host}:{self.port}"
        return f"mysql://{self.user}@{where}/{self.database}" + (f" (TLS, CA {self.ssl_ca})" if self.ssl_ca else "")


_FORMS = "mysql://user[:pass]@host[:port]/db[?unix_socket=/path | ?ssl_ca=/path] or sqlite:////abs/path"
# The userinfo of a URL, with or without the "//" a typo can drop: greedy to the last "@",
# because an unencoded "@" or "/" in a password must not end the redaction early.
# Patterns as text, compiled (and cached by re) on first use: the AGI imports this module on every call.
_USERINFO = r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:)?(?P<slashes>/*).*@"
# Host names and database names as character sets, not regexes: a hang-up on MariaDB parses this URL, and
# ``re`` (with ``enum``) is no longer on its path (PyMySQL compiles its patterns only when used).
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_HOST_CHARS = _ALNUM | frozenset(".-")
_DATABASE_CHARS = _ALNUM | frozenset("_$-")


def _is_host(text: str) -> bool:
    """1 to 254 letters, digits, dots and hyphens, starting and ending with a letter or digit."""
    return 0 < len(text) <= 254 and _HOST_CHARS.issuperset(text) and text[0] in _ALNUM and text[-1] in _ALNUM


def _is_database(text: str) -> bool:
    """1 to 64 letters, digits, "_", "$" and "-"."""
    return 0 < len(text) <= 64 and _DATABASE_CHARS.issuperset(text)



def unquote(text: str) -> str:
    """Percent-decoding, importing urllib only for text that has a "%" (the AGI reads a URL on every call)."""
    if "%" not in text:
        return text
    from urllib.parse import unquote as decode

    return decode(text)


def redact_url(url: str) -> str:
    """``url`` fit for a message: whatever stands before its last "@" (user, password) is ``***``."""
    if "@" not in url:
        return url
    import re  # here, not at the top: the AGI imports this module, and nothing else on its path needs re

    return re.sub(_USERINFO, lambda m: f"{m['scheme'] or ''}{m['slashes']}***@", url, count=1, flags=re.DOTALL)


def _refuse(url: str, why: str) -> DbUrlError:
    from missedcall.text import printable

    return DbUrlError(f"MISSEDCALL_DB_URL {printable(redact_url(url), limit=120)!r} {why} (expected {_FORMS})")


def parse_db_url(url: str) -> DbTarget:
    """``mysql://user[:pass]@host[:port]/db[?unix_socket=/path]`` or ``sqlite:////abs/path``; nothing else.

    Strict on purpose: a URL that misses a slash must not slide its ``user:password@host`` into
    the database name, which every message (doctor, the AGI's VERBOSE line, a spool file's
    last_error) then shows. Every error quotes the URL with its userinfo redacted.
    """
    url = url.strip()
    if url.startswith("sqlite:"):
        # sqlite:////abs/path -> /abs/path (SQLAlchemy's spelling, which admins know).
        rest = url[len("sqlite:") :]
        if not rest.startswith("///") or "@" in rest or "?" in rest or "#" in rest:
            raise _refuse(url, "is not a sqlite URL")
        path = unquote(rest[3:] if rest.startswith("////") else rest[2:])
        if not path.startswith("/") or "\x00" in path:
            raise DbUrlError("MISSEDCALL_DB_URL: a sqlite path must be absolute (sqlite:////var/lib/...)")
        return DbTarget(kind="sqlite", path=path, origin="MISSEDCALL_DB_URL")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("mysql", "mariadb", "mysql+pymysql"):
        raise _refuse(url, "must start with mysql:// or sqlite:///")
    netloc, slash, tail = rest.partition("/")
    if "@" not in netloc or not slash:
        # An "@" after the first "/" is a password with an unencoded "/" or a missing slash.
        raise _refuse(url, "has no user@host/ part")
    userinfo, _, hostport = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    path, _, query = tail.partition("?")
    if "#" in url:
        raise _refuse(url, "has a '#' (percent-encode it as %23 in the password)")
    if hostport.startswith("["):
        host, close, port_text = hostport[1:].partition("]")
        if not close or (port_text and not port_text.startswith(":")):
            raise _refuse(url, "has a bracketed host that does not parse")
        import ipaddress

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _refuse(url, "has a bracketed host that is not an IPv6 address") from None
        port_text = port_text[1:]
        explicit = bool(port_text)
    else:
        host, colon, port_text = hostport.partition(":")
        explicit = bool(colon)
        if not _is_host(host):
            raise _refuse(url, "has no valid host name")
    if explicit and not (port_text.isdigit() and port_text.isascii() and 0 < int(port_text) < 65536):
        raise _refuse(url, "has an invalid port")
    database = unquote(path)
    if not _is_database(database):
        raise _refuse(url, "names no database (letters, digits, _ $ -)" if database else "names no database")
    options = {"unix_socket": "", "ssl_ca": ""}
    for pair in query.split("&") if query else ():
        key, eq, value = pair.partition("=")
        if key not in options or options[key] or not eq or not unquote(value).startswith("/"):
            raise _refuse(url, "takes only ?unix_socket=/absolute/path or ?ssl_ca=/absolute/path (once each)")
        options[key] = unquote(value)
    socket = options["unix_socket"]
    if socket and options["ssl_ca"]:
        raise _refuse(url, "asks for TLS over a Unix socket (ssl_ca is for a server reached over the network)")
    if not user:
        raise _refuse(url, "names no user")
    return mysql_target(
        user=unquote(user),
        password=unquote(password),
        host=host,
        port=int(port_text) if explicit else 3306,
        database=database,
        unix_socket=socket,
        explicit_port=explicit,
        origin="MISSEDCALL_DB_URL",
        ssl_ca=options["ssl_ca"],
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
    ssl_ca: str = "",
) -> DbTarget:
    """Build a MySQL target the way the mysql client would reach it.

    ``localhost`` means the Unix socket to MySQL clients (and FreePBX's
    ``freepbxuser`` is usually granted at ``localhost`` only), whereas PyMySQL
    would open TCP; so without an explicit port we use the socket when one exists
    (not with ``ssl_ca``: TLS is asked of a server over TCP).
    """
    if not unix_socket and host == "localhost" and not explicit_port and not ssl_ca:
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
        ssl_ca=ssl_ca,
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
