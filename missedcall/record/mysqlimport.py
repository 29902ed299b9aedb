"""PyMySQL, imported without OpenSSL when its connection stays on this machine.

PyMySQL imports ``ssl`` at module level, and ``hashlib`` (for the SHA-1 of
``mysql_native_password``), whose ``_hashlib`` loads OpenSSL's libcrypto as well:
on this project's test box 5 MiB of the process hook's peak RSS and some 7 ms of
every hang-up, for a connection over the Unix socket or loopback on which
missedcall.record.db turns TLS off anyway, and whose SHA-1 Python computes just as
well without OpenSSL. (``getpass``, for a default user name we never use, goes too.)

PyMySQL is written for a Python without ``ssl`` and ``getpass`` (it catches the
ImportError: ``SSL_ENABLED`` is then False), and hashlib for one without
``_hashlib`` (it falls back on Python's own ``_sha1``...). A ``None`` in
``sys.modules`` is how the import system spells "not there"
(https://docs.python.org/3/reference/import.html#the-module-cache). So while
PyMySQL is imported those names are ``None``; afterwards they are taken out again,
together with the OpenSSL-less ``hashlib`` (PyMySQL keeps its own reference), so
that anything imported later in the process (smtplib's STARTTLS, hmac) gets the
real modules. Only when this is the process's first PyMySQL import and no other
thread runs (another thread's import in that moment would see the ``None``s).

PyMySQL also imports ``traceback``, for one ``format_exc()`` on a failed connect. On
Python 3.13 and later that pulls in ``_colorize``, ``dataclasses`` and ``inspect``: about
45 ms of CPU at every hang-up on Debian's current Python (bench/e2e_bench.py). So
PyMySQL gets a stand-in that imports the real module the first time one of its names
is used; nobody else ever sees the stand-in.

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

#: What PyMySQL's import can do without, when its connection is local and in the clear.
_OPTIONAL = ("ssl", "getpass")
#: What hashlib uses when ``_hashlib`` is missing (Python < 3.12, then 3.12 and later). Some distributions
#: build Python without them (OpenSSL only): then ``_hashlib`` is never held back.
_OWN_HASHES = (
    ("_md5", "_sha1", "_sha256", "_sha512", "_blake2", "_sha3")
    if sys.version_info < (3, 12)
    else ("_md5", "_sha1", "_sha2", "_blake2", "_sha3")
)

#: What PyMySQL imports but uses only on an error path: it gets a stand-in that imports the real thing when used.
_LATER = ("traceback",)

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
    hold = [] if tls or not _alone() else [name for name in _OPTIONAL if name not in sys.modules]
    # With ssl loaded, libcrypto is in the process already: _hashlib then costs little.
    own_hashlib = "ssl" in hold and "hashlib" not in sys.modules and _own_hashes()
    if own_hashlib:
        hold.append("_hashlib")
    for name in hold:
        sys.modules[name] = None  # type: ignore[assignment]
    later = [name for name in _LATER if name not in sys.modules]
    for name in later:
        sys.modules[name] = _Later(name)
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
        if own_hashlib:
            sys.modules.pop("hashlib", None)  # PyMySQL's _auth keeps it; anyone else imports the full one
    if not whole:
        for name in [m for m in sys.modules if m == "pymysql" or m.startswith("pymysql.")]:
            del sys.modules[name]
        hold = []
    import pymysql

    held_back = "ssl" in hold
    return pymysql


class _Later(type(sys)):  # type(sys) is types.ModuleType, without importing types
    """A module that is imported for real when one of its names is first looked up."""

    def __getattr__(self, attribute: str) -> object:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = __import__(name)
        return getattr(real, attribute)


def _alone() -> bool:
    """No other Python thread runs (none can import anything while the ``None`` entries stand)."""
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


def _own_hashes() -> bool:
    """Python's own hash modules are there (importing them is what hashlib would do without OpenSSL)."""
    try:
        for name in _OWN_HASHES:
            __import__(name)
    except ImportError:
        return False
    return True


def _bring_back_tls() -> None:
    global held_back
    import importlib

    import pymysql

    importlib.reload(pymysql.connections)
    held_back = False  # a Python really without ssl stays so, as it would without this module
