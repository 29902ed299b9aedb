"""Network peers that misbehave, for the bounded-wait tests."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def silent_tcp_listener() -> Iterator[tuple[str, int]]:
    """(host, port) of a listener that accepts connections and never says a word.

    The kernel completes the handshake from the backlog, so an SMTP or MySQL
    client connects fine and then waits for a greeting that never comes: a hung
    relay or database, for the "bounded waits" tests.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield "127.0.0.1", listener.getsockname()[1]
    finally:
        listener.close()
