"""PyMySQL, imported without OpenSSL when its connection stays on this machine.

PyMySQL imports ``ssl`` at module level, and ``hashlib`` (for the SHA-1 of
``mysql_native_password``), whose ``_hashlib`` loads OpenSSL's libcrypto as well:
on this project's test box 5 MiB of the process hook's peak RSS and some 7 ms of
every hang-up, for a connection over the Unix socket or loopback on which
missedcall.record.db turns TLS off anyway, and whose SHA-1 Python computes just as
well without OpenSSL. (``getpass``, for a default user name we never use, goes too.)

PyMySQL is written for a Python without ``ssl`` and ``getpass`` (it catches the
ImportError: ``SSL_ENABLED`` is then False). A ``None`` in ``sys.modules`` is how the
import system spells "not there"
(https://docs.python.org/3/reference/import.html#the-module-cache). So while
PyMySQL is imported those names are ``None``; afterwards they are taken out again,
so that anything imported later in the process (smtplib's STARTTLS, hmac) gets the
real modules. Only when this is the process's first PyMySQL import and no other
thread runs (another thread's import in that moment would see the stand-ins).

For ``hashlib`` PyMySQL gets a stand-in of its own (:class:`_OwnHashes`): the hashes
its ``_auth`` asks for (``hashlib.new("sha1")`` for ``mysql_native_password``,
``sha256`` for ``caching_sha2_password`` and ``sha256_password``, ``sha512`` for
MariaDB's ``client_ed25519``) from Python's own ``_sha1``... modules, each imported
the first time it is used: one module at the login instead of what hashlib without
OpenSSL imports up front (all six of md5, sha1, sha256, sha512, blake2 and sha3,
2-3 ms of every hang-up). Any other name, or a Python built without its own
hashes, gets the real hashlib's. Nobody else sees the stand-in: the name
``hashlib`` is taken out of ``sys.modules`` again with the ``None``s.

PyMySQL also imports ``traceback``, for one ``format_exc()`` on a failed connect. On
Python 3.13 and later that pulls in ``_colorize``, ``dataclasses`` and ``inspect``: about
45 ms of CPU at every hang-up on Debian's current Python (bench/e2e_bench.py). And
``pymysql.optionfile`` (with ``configparser``, 1.2-3 ms, its regular expressions compiled
at import), for a ``read_default_file`` missedcall never passes. So PyMySQL gets
stand-ins (:class:`_Later`) that import the real module the first time one of its names
is used (``Parser``, which PyMySQL takes from ``optionfile`` at import, the first time
it is called). The same for ``warnings`` (PyMySQL's deprecation notices), for ``socket``
when the connection is in the clear (missedcall.record.mysqlsock makes its socket from
``_socket``), and for the ``selectors`` and ``array`` of a ``socket`` first imported by
PyMySQL (its sendfile() and send_fds() alone); and ``contextlib``, whose ``suppress``, the
one name PyMySQL uses (closing a connection), comes from here (:class:`_OwnContextlib`).
Nobody else ever sees a stand-in, except that such a ``socket`` keeps its two (which
import the real modules when used).

PyMySQL compiles four regular expressions at import, one of them (``RE_INSERT_VALUES``,
for executemany alone) 1.5-2 ms of every hang-up. While PyMySQL is imported ``re`` is a
stand-in (:class:`_LaterRe`) whose ``compile`` gives PyMySQL's modules a pattern compiled
at its first use, and anyone else a real one; afterwards the real ``re`` is back. And
PyMySQL's DATETIME decoder, the one pattern a hang-up would use, is replaced by
:func:`_datetime`, which decodes MariaDB's own layout without it and hands anything
else to PyMySQL's: a hang-up on MariaDB need not import ``re`` at all.

A connection that wants TLS (a remote server, or an ``ssl_ca``) in a process whose
PyMySQL was imported that way re-imports ``pymysql.connections`` with ``ssl``
(importlib.reload re-runs its ``import ssl`` in the same module namespace), so TLS
is never lost to this module.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

#: What PyMySQL's import can do without, when its connection is local and in the clear.
_OPTIONAL = ("ssl", "getpass")
#: Python's own modules for the hashes PyMySQL's _auth uses, by hashlib name: (module, constructor). Python
#: 3.12 merged _sha256 and _sha512 into _sha2.
_SHA2 = ("_sha256", "_sha256", "_sha512", "_sha512") if sys.version_info < (3, 12) else ("_sha2",) * 4
_OWN_HASHES = {
    "md5": ("_md5", "md5"),
    "sha1": ("_sha1", "sha1"),
    "sha224": (_SHA2[0], "sha224"),
    "sha256": (_SHA2[1], "sha256"),
    "sha384": (_SHA2[2], "sha384"),
    "sha512": (_SHA2[3], "sha512"),
}

#: What PyMySQL imports but uses only on paths the hook never takes: a stand-in imports the real module when
#: used. With the names PyMySQL takes from it at import (``from .optionfile import Parser``), each put off
#: until it is called. ``warnings``: PyMySQL's deprecation notices; ``selectors`` and ``array``: what
#: ``socket`` (imported here first) uses for sendfile() and send_fds()/recv_fds() alone.
_LATER: dict[str, tuple[str, ...]] = {
    "traceback": (),
    "pymysql.optionfile": ("Parser",),
    "warnings": (),
    "selectors": (),
    "array": (),
    "contextlib": (),
}

#: True once this process's PyMySQL came without ``ssl`` (until :func:`load` brings it back).
held_back = False


def load(*, tls: bool) -> ModuleType:
    """The ``pymysql`` package; ``tls``: the connection about to be made may use TLS."""
    global held_back
    if "pymysql.connections" in sys.modules:
        import pymysql

        if tls and held_back:
            _bring_back_tls()
        return pymysql
    alone = _alone()
    hold = [] if tls or not alone else [name for name in _OPTIONAL if name not in sys.modules]
    # With ssl loaded, libcrypto is in the process already: the real hashlib then costs little.
    own_hashlib = "ssl" in hold and "hashlib" not in sys.modules
    for name in hold:
        sys.modules[name] = None  # type: ignore[assignment]
    if own_hashlib:
        sys.modules["hashlib"] = _OwnHashes("hashlib")
    # In the clear, missedcall.record.db hands PyMySQL a socket of missedcall.record.mysqlsock: socket.py is
    # then PyMySQL's only on a path of its own (a host name not in ASCII, TLS brought back by a reload).
    wanted = _LATER if tls else {**_LATER, "socket": ()}
    if not alone:
        # Another thread's import would get them too: _Later is the real module at first use to it as well,
        # but our contextlib.suppress and re.compile are PyMySQL's alone.
        wanted = {name: taken for name, taken in wanted.items() if name != "contextlib"}
    later = [name for name in wanted if name not in sys.modules]
    for name in later:
        sys.modules[name] = _OwnContextlib(name) if name == "contextlib" else _Later(name, wanted[name])
    lazy_re = _LaterRe(sys.modules.get("re"))
    if alone:
        sys.modules["re"] = lazy_re
    whole = True
    try:
        import pymysql
    except ImportError:
        if not hold:
            raise
        whole = False  # a PyMySQL that cannot do without one of them after all: imported in full below
    finally:
        for name in hold:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
        for name in later:
            if isinstance(sys.modules.get(name), _Later):
                del sys.modules[name]  # PyMySQL keeps its stand-in; an import from now on gets the real module
        if own_hashlib and isinstance(sys.modules.get("hashlib"), _OwnHashes):
            del sys.modules["hashlib"]  # PyMySQL's _auth keeps it; anyone else imports the real one
        if sys.modules.get("re") is lazy_re:
            if lazy_re._re is not None:
                sys.modules["re"] = lazy_re._re  # the real one, there before or imported meanwhile
            else:
                del sys.modules["re"]
    if not whole:
        for name in [m for m in sys.modules if m == "pymysql" or m.startswith("pymysql.")]:
            del sys.modules[name]
        hold = []
    import pymysql

    if whole:
        _decode_datetimes(pymysql)
    held_back = "ssl" in hold
    return pymysql


def _decode_datetimes(pymysql: ModuleType) -> None:
    """PyMySQL's DATETIME and TIMESTAMP decoders for every connection of this process: :func:`_datetime`."""
    import datetime

    global _convert_datetime, _datetime_type
    converters = pymysql.converters
    _convert_datetime, _datetime_type = converters.convert_datetime, datetime.datetime
    kinds = (pymysql.constants.FIELD_TYPE.DATETIME, pymysql.constants.FIELD_TYPE.TIMESTAMP)
    for table in (converters.decoders, converters.conversions):
        for kind in kinds:
            if table.get(kind) is _convert_datetime:
                table[kind] = _datetime


_convert_datetime: Any = None
_datetime_type: Any = None


def _datetime(value: str | bytes) -> object:
    """A DATETIME as MariaDB sends it, ``YYYY-MM-DD HH:MM:SS``, decoded without PyMySQL's regular expression
    (whose ``re`` a hang-up otherwise does without); any other text (a fraction of a second, a zero date)
    is PyMySQL's own to decode, so that the values are those PyMySQL gives."""
    text = value.decode("ascii") if isinstance(value, (bytes, bytearray)) else value
    if len(text) == 19 and text[4] + text[7] + text[10] + text[13] + text[16] == "-- ::":
        digits = text[:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:]
        if digits.isascii() and digits.isdigit():
            try:
                return _datetime_type(
                    int(text[:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]), int(text[17:])
                )
            except ValueError:
                pass  # 0000-00-00 00:00:00 and the like: PyMySQL gives them back as text
    return _convert_datetime(text)


class _Later(type(sys)):  # type(sys) is types.ModuleType, without importing types
    """A module that is imported for real when one of its names is first looked up (``taken``: names
    looked up at import, by ``from ... import``, that stand for a callable: imported when first called)."""

    def __init__(self, name: str, taken: tuple[str, ...] = ()) -> None:
        super().__init__(name)
        self._taken = taken

    def __getattr__(self, attribute: str) -> object:
        if attribute.startswith("__"):
            # The import system's own questions (a ``from`` import asks for __path__): not a use.
            raise AttributeError(attribute)
        if attribute in self._taken:
            return _LaterName(self, attribute)
        return getattr(self._real(), attribute)

    def _real(self) -> ModuleType:
        name = str(self.__name__)
        if sys.modules.get(name) is self:
            del sys.modules[name]
        __import__(name)
        return sys.modules[name]


class _OwnContextlib(_Later):
    """``contextlib`` for PyMySQL, whose one use of it is ``suppress(Exception)`` around the COM_QUIT that
    ``Connection.close()`` sends (at every hang-up): that one from here, anything else the real module's."""

    class suppress:  # contextlib's name, as PyMySQL looks it up
        """contextlib.suppress as PyMySQL uses it: an exception of one of the given classes ends at the block."""

        def __init__(self, *exceptions: type[BaseException]) -> None:
            self._exceptions = exceptions

        def __enter__(self) -> None:
            return None

        def __exit__(self, kind: type[BaseException] | None, value: object, traceback: object) -> bool:
            return kind is not None and issubclass(kind, self._exceptions)


class _LaterName:
    """A callable that a stand-in module handed out at import: the real module's, looked up at the call."""

    def __init__(self, module: _Later, name: str) -> None:
        self._module = module
        self._name = name

    def __call__(self, *args: object, **kwargs: object) -> object:
        return getattr(self._module._real(), self._name)(*args, **kwargs)


class _OwnHashes(type(sys)):  # type(sys) is types.ModuleType, without importing types
    """``hashlib`` for PyMySQL without OpenSSL: Python's own hashes, each module imported when first used."""

    def new(self, name: str, data: bytes = b"", **kwargs: object) -> object:
        return getattr(self, name.lower())(data, **kwargs)

    def __getattr__(self, attribute: str) -> object:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        own = _OWN_HASHES.get(attribute)
        if own is not None:
            try:
                return getattr(__import__(own[0]), own[1])
            except ImportError:
                pass  # a Python built without its own hashes (OpenSSL only): hashlib's then
        if sys.modules.get("hashlib") is self:
            del sys.modules["hashlib"]
        import hashlib

        return getattr(hashlib, attribute)


class _LaterRe(type(sys)):  # type(sys) is types.ModuleType, without importing types
    """``re`` for PyMySQL's import: the patterns PyMySQL's modules compile at import are compiled when first
    used, and the real ``re`` is imported only then; everything else, and anyone else's ``compile``, is the
    real module's."""

    # re.IGNORECASE and re.DOTALL as re defines them: what pymysql.cursors combines at import.
    IGNORECASE = 2
    DOTALL = 16

    def __init__(self, real: ModuleType | None) -> None:
        super().__init__("re")
        self._re = real

    def compile(self, pattern: str, flags: int = 0) -> object:
        frame = getattr(sys, "_getframe", None)
        caller = frame(1).f_globals.get("__name__", "") if frame is not None else ""
        if str(caller).startswith("pymysql."):
            return _LaterPattern(self, pattern, flags)
        return self._real().compile(pattern, flags)

    def __getattr__(self, attribute: str) -> object:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(self._real(), attribute)

    def _real(self) -> ModuleType:
        if self._re is None:
            standing = sys.modules.get("re") is self
            if standing:
                del sys.modules["re"]  # while PyMySQL is imported: import the real one, then stand in again
            try:
                import re
            finally:
                if standing:
                    sys.modules["re"] = self
            self._re = re
        return self._re


class _LaterPattern:
    """A compiled pattern, compiled at its first use (PyMySQL calls ``.match`` or ``.fullmatch`` on it)."""

    __slots__ = ("_compiled", "_how")

    def __init__(self, module: _LaterRe, pattern: str, flags: int) -> None:
        self._how = (module, pattern, flags)
        self._compiled: object = None

    def __getattr__(self, attribute: str) -> object:
        compiled = self._compiled
        if compiled is None:
            module, pattern, flags = self._how
            compiled = self._compiled = module._real().compile(pattern, flags)
        return getattr(compiled, attribute)


def _alone() -> bool:
    """No other Python thread runs (none can import anything while the ``None`` entries stand)."""
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


def _bring_back_tls() -> None:
    global held_back
    import importlib

    import pymysql

    importlib.reload(pymysql.connections)
    held_back = False  # a Python really without ssl stays so, as it would without this module
