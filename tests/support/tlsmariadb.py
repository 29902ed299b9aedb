"""A private MariaDB server that speaks TLS, for the tests of TLS connections.

The shared server (tests/support/mariadb.py) runs without a certificate and is not
ours to restart; this one is started from a fresh data directory on a free loopback
port with a certificate for 127.0.0.1 from a throw-away CA (openssl), and stopped by
its pid. ``--skip-grant-tables``: any user name and password log in, which is enough
to tell a TLS session from a clear one (``Ssl_cipher``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.mariadb import MARIADBD


@dataclass(frozen=True)
class TlsServer:
    port: int
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that did not


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(folder: Path) -> None:
    for name in ("ca", "other"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
                 "-days", "2", "-subj", f"/CN=missedcall test {name}", cwd=folder)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=folder)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            return bool(conn.recv(1))  # the server's greeting
    except OSError:
        return False


@contextlib.contextmanager
def tls_mariadb(folder: Path) -> Iterator[TlsServer]:
    """Start the server in ``folder`` (made empty by the caller) and stop it on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    _certificates(folder)
    data = folder / "data"
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--skip-test-db", "--user=root",
         "--auth-root-authentication-method=normal"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = _free_port()
    with (folder / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={data}", f"--socket={folder / 'sock'}", f"--port={port}",
             "--bind-address=127.0.0.1", f"--pid-file={folder / 'pid'}", "--user=root", "--skip-grant-tables",
             f"--ssl-cert={folder / 'server.pem'}", f"--ssl-key={folder / 'server.key'}",
             f"--ssl-ca={folder / 'ca.pem'}", "--skip-log-bin", "--innodb-buffer-pool-size=16M"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the TLS MariaDB did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield TlsServer(port=port, ca=folder / "ca.pem", other_ca=folder / "other.pem")
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait(10)
