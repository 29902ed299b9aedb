"""The socket of a MariaDB connection in the clear, made from ``_socket`` without importing ``socket``.

``socket.py`` is, for PyMySQL, a constructor, ``create_connection()`` and one method, ``makefile("rb")``:
the rest (its enums of every address family, socket kind, message flag and address-info flag, made at
import with ``IntEnum._convert_``, and ``enum`` itself, which the hook has no other use for) costs a
hang-up on MariaDB 1-3 ms. :class:`Socket` is the C socket with that method; :func:`unix` and :func:`tcp`
connect one the way PyMySQL and ``socket.create_connection()`` do, and missedcall.record.db hands it to
PyMySQL's ``connect(sock)``. TLS connections keep PyMySQL's own socket (``ssl`` wraps a ``socket.socket``).

The host is given as ASCII bytes: a ``str`` makes getaddrinfo() import the IDNA codec (``encodings.idna``,
``stringprep``, ``unicodedata``: 1.5 ms a call); the bytes of an ASCII name or address resolve the same.
"""

from __future__ import annotations

import _socket
import io


class Socket(_socket.socket):
    """``_socket.socket`` plus what PyMySQL asks of ``socket.socket`` beyond it: ``makefile("rb")``."""

    __slots__ = ()

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"only 'rb' is supported, not {mode!r}")
        return io.BufferedReader(_Reader(self))


class _Reader(io.RawIOBase):
    """What ``socket.SocketIO`` is to a reading ``makefile()``: ``recv_into`` as ``readinto``. A timeout
    raises TimeoutError, as there (PyMySQL then closes the connection); EINTR is retried by Python."""

    def __init__(self, sock: Socket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._sock.recv_into(buffer)

    def fileno(self) -> int:
        return self._sock.fileno()


def unix(path: str, timeout: float) -> Socket:
    """Connected to the server's Unix socket at ``path`` (as PyMySQL connects one)."""
    sock = Socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def tcp(host: str, port: int, timeout: float) -> Socket:
    """Connected over TCP as ``socket.create_connection()`` connects (each address getaddrinfo gives, in
    turn; the last one's error if none answers), with PyMySQL's TCP_NODELAY and SO_KEEPALIVE."""
    error: OSError | None = None
    for family, kind, proto, _, address in _socket.getaddrinfo(host.encode("ascii"), port, 0, _socket.SOCK_STREAM):
        sock = Socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
        except BaseException:
            sock.close()
            raise
    raise error if error is not None else OSError("getaddrinfo returned no address")
