"""missedcall.record.mysqlsock: the socket a MariaDB connection in the clear runs on, without socket.py.

Against the real shared MariaDB (TCP on 127.0.0.1, and its Unix socket), a listener that never answers
and a port nobody listens on. The hook's own runs over both are in tests/test_mysql_connect.py (with
the guard that socket.py stays out) and tests/test_faults.py (refused, silent, wrong password).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from missedcall.dburl import parse_db_url
from missedcall.record import mysqlsock
from missedcall.record.db import Database, StorageError
from tests.support.mariadb import MariaDBDatabase
from tests.support.net import silent_tcp_listener


def _greeting(sock: mysqlsock.Socket) -> bytes:
    """The server's first packet (its handshake), read the way PyMySQL reads: through makefile("rb")."""
    reader = sock.makefile("rb")
    header = reader.read(4)
    body = reader.read(int.from_bytes(header[:3], "little"))
    reader.close()
    return body


def test_tcp_by_name_tries_each_address_and_reads_like_socket_makefile(mariadb_database: MariaDBDatabase) -> None:
    # "localhost" is ::1 and 127.0.0.1 here, the server listens on the second only: the loop goes on to it.
    with contextlib.closing(mysqlsock.tcp("localhost", mariadb_database.server.port, 5.0)) as sock:
        body = _greeting(sock)
    assert body[0] == 10 and b"MariaDB" in body  # protocol version 10, then the server's version text


def test_the_unix_socket_is_pymysqls_unix_socket(mariadb_database: MariaDBDatabase, tmp_path: Path) -> None:
    db = mariadb_database
    url = f"mysql://{quote(db.user, safe='')}:{quote(db.password, safe='')}@localhost/{db.name}"
    with Database.open(parse_db_url(f"{url}?unix_socket={db.server.unix_socket}"), timeout=5) as store:
        assert store.rows("SELECT 1") == [(1,)]
        conn = store._conn
        # As PyMySQL's own connect of a Unix socket leaves it: secure enough to send a password over.
        assert conn.get_host_info() == "Localhost via UNIX socket" and conn._secure is True
        assert isinstance(conn._sock, mysqlsock.Socket)
    with pytest.raises(StorageError, match="No such file or directory"):
        Database.open(parse_db_url(f"{url}?unix_socket={tmp_path}/gone.sock"), timeout=5)


def test_a_silent_server_times_out_and_a_refused_port_is_refused() -> None:
    with silent_tcp_listener() as (host, port), contextlib.closing(mysqlsock.tcp(host, port, 0.3)) as sock:
        with pytest.raises(TimeoutError):
            sock.makefile("rb").read(4)
    with silent_tcp_listener() as (host, port):
        pass  # closed again: nobody listens on that port now
    with pytest.raises(ConnectionRefusedError):
        mysqlsock.tcp(host, port, 5.0)


#: A local connection in a process of its own: no socket.py (a TLS connection after it in the same process
#: gets PyMySQL's own socket.socket, which ssl wraps: test_mysql_connect.py's test_tls_after_...).
NO_SOCKET_PY = """\
import json, os, sys
from missedcall.dburl import parse_db_url
from missedcall.record.db import Database

with Database.open(parse_db_url(os.environ["URL"]), timeout=5) as store:
    store.rows("SELECT NOW()")
    kind = type(store._conn._sock).__module__
print(json.dumps({"socket_py": "socket" in sys.modules, "kind": kind}))
"""


def test_a_local_connection_never_imports_socket_py(mariadb_database: MariaDBDatabase, tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "URL": mariadb_database.url}
    out = subprocess.run([sys.executable, "-c", NO_SOCKET_PY], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert json.loads(out.stdout) == {"socket_py": False, "kind": "missedcall.record.mysqlsock"}
