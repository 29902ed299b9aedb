"""How missedcall.record.db reaches MariaDB: OpenSSL left out for a local connection in the clear
(missedcall.record.mysqlimport), TLS kept where it is wanted, and required and verified with ``ssl_ca``.

Each case runs in a fresh interpreter (what a process has imported is the point), against the real
shared MariaDB (no TLS) or a private one with a certificate (tests/support/tlsmariadb.py). URLs, and
so passwords, reach those interpreters through the environment, never argv.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from missedcall import config, settingscache
from missedcall.dburl import parse_db_url
from missedcall.record.db import connect_options
from tests.agibox import make_pbx
from tests.agipeer import AgiPeer
from tests.mailbox import read_mail
from tests.paths import AGI_FIXTURES
from tests.support.mariadb import MariaDBDatabase
from tests.support.tlsmariadb import TlsServer, tls_mariadb

#: Opens each URL of $URLS (a JSON list) in turn, asks the server whether the session is TLS, and
#: prints, as JSON, one result per URL and then which modules of interest the process had loaded.
PROBE = """\
import json, os, sys
from missedcall import config, settingscache
from missedcall.dburl import parse_db_url
from missedcall.record.db import Database, StorageError

results = []
for url in json.loads(os.environ["URLS"]):
    try:
        with Database.open(parse_db_url(url), timeout=5, create=False) as db:
            [(_, cipher)] = db.rows("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            results.append({"cipher": cipher})
    except StorageError as exc:
        results.append({"error": str(exc)})
    results[-1]["ssl_loaded"] = "ssl" in sys.modules
watched = ("pymysql", "ssl", "_ssl", "_hashlib", "hashlib", "getpass", "encodings.idna", "unicodedata")
after = {"loaded": sorted(m for m in watched if m in sys.modules)}
if os.environ.get("THEN_HASHLIB"):
    import hashlib, hmac, ssl
    after["pbkdf2"] = hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 1).hex()
    after["hmac"] = hmac.new(b"k", b"m", "sha256").hexdigest()
    after["openssl_hashlib"] = "_hashlib" in sys.modules
    after["ssl_context"] = ssl.create_default_context() is not None
print(json.dumps({"results": results, **after}))
"""


def probe(urls: list[str], tmp_path: Path, **extra: str) -> dict:  # type: ignore[type-arg]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "URLS": json.dumps(urls), **extra}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    with tls_mariadb(tmp_path_factory.mktemp("tls-mariadb")) as server:
        yield server


def tls_url(server: TlsServer, ca: Path, password: str = "Pa55-w0rd-tls") -> str:
    return f"mysql://missedcall:{quote(password, safe='')}@127.0.0.1:{server.port}/mysql?ssl_ca={ca}"


def test_a_loopback_connection_leaves_openssl_and_idna_out(mariadb_database: MariaDBDatabase, tmp_path: Path) -> None:
    over_tcp = mariadb_database.url
    assert "@127.0.0.1:" in over_tcp
    over_socket = over_tcp.replace(f"@127.0.0.1:{mariadb_database.server.port}/", "@localhost/")
    for url in (over_tcp, over_socket):
        seen = probe([url], tmp_path, THEN_HASHLIB="1")
        assert seen["results"] == [{"cipher": "", "ssl_loaded": False}]
        assert seen["loaded"] == ["pymysql"]  # no ssl, no OpenSSL hashlib, no getpass, no IDNA codec
        # Whatever comes later in the process gets the real modules, OpenSSL and all.
        assert seen["openssl_hashlib"] and seen["ssl_context"]
        assert seen["pbkdf2"] == hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 1).hex()
        assert seen["hmac"] == hmac.new(b"k", b"m", "sha256").hexdigest()


def test_ssl_ca_gives_a_verified_tls_session(tls_server: TlsServer, tmp_path: Path) -> None:
    seen = probe([tls_url(tls_server, tls_server.ca)], tmp_path)
    [result] = seen["results"]
    assert result["cipher"], result  # the server's name for the cipher of this session; "" in the clear


def test_tls_after_a_connection_that_left_ssl_out(
    mariadb_database: MariaDBDatabase, tls_server: TlsServer, tmp_path: Path
) -> None:
    """A process whose PyMySQL came without ssl (a local connection first) still does TLS when asked."""
    seen = probe([mariadb_database.url, tls_url(tls_server, tls_server.ca)], tmp_path)
    local, remote = seen["results"]
    assert local == {"cipher": "", "ssl_loaded": False}
    assert remote["ssl_loaded"] and remote.get("cipher"), remote


def test_a_certificate_from_another_ca_is_refused_without_the_password(tls_server: TlsServer, tmp_path: Path) -> None:
    password = "S3cret-never-shown"
    seen = probe([tls_url(tls_server, tls_server.other_ca, password)], tmp_path)
    [result] = seen["results"]
    assert "error" in result and "cipher" not in result
    assert "certificate" in result["error"].lower() or "ssl" in result["error"].lower(), result
    assert password not in result["error"] and quote(password, safe="") not in result["error"]


def test_ssl_ca_with_a_server_without_tls_is_refused(mariadb_database: MariaDBDatabase, tls_server: TlsServer,
                                                     tmp_path: Path) -> None:  # fmt: skip
    """The shared server has no certificate: asked for TLS, the connection fails rather than go on in the clear."""
    url = f"{mariadb_database.url}?ssl_ca={tls_server.ca}"
    [result] = probe([url], tmp_path)["results"]
    assert "error" in result, result
    assert mariadb_database.password not in result["error"]


def test_with_another_thread_running_ssl_is_imported_as_usual(tmp_path: Path) -> None:
    code = (
        "import sys, threading\n"
        "stop = threading.Event(); t = threading.Thread(target=stop.wait); t.start()\n"
        "from missedcall.record import mysqlimport\n"
        "pymysql = mysqlimport.load(tls=False)\n"
        "stop.set(); t.join()\n"
        "print('ssl' in sys.modules, mysqlimport.held_back, type(pymysql.cursors.RE_INSERT_VALUES).__name__,\n"
        "      hasattr(pymysql.connections.contextlib, '__file__'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    # ... and PyMySQL's patterns and contextlib are the real ones (the thread could have imported re meanwhile).
    assert out.stdout.split() == ["True", "False", "Pattern", "True"]


def test_a_remote_server_keeps_pymysqls_tls() -> None:
    """No address outside loopback is contacted here: only what the connection would be asked to do."""
    remote = connect_options(parse_db_url("mysql://u:p@db.example.com/asterisk"), 1.0)
    assert "ssl_disabled" not in remote and "ssl_ca" not in remote  # PyMySQL's preferred TLS
    local = connect_options(parse_db_url("mysql://u:p@127.0.0.1/asterisk"), 1.0)
    assert local["ssl_disabled"] is True
    checked = connect_options(parse_db_url("mysql://u:p@127.0.0.1/asterisk?ssl_ca=/etc/ssl/ca.pem"), 1.0)
    assert checked["ssl_ca"] == "/etc/ssl/ca.pem" and checked["ssl_verify_identity"] is True
    assert "ssl_disabled" not in checked
    code = (
        "import sys\n"
        "from missedcall.record import mysqlimport\n"
        "pymysql = mysqlimport.load(tls=True)\n"
        "print('ssl' in sys.modules, pymysql.connections.SSL_ENABLED)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "True"]


#: What the process hook on a local MariaDB has no use for (each is milliseconds, or megabytes, a hang-up):
#: OpenSSL, getpass, the IDNA codec; PyMySQL's option-file reader; any hash but the login's SHA-1; socket.py
#: (missedcall.record.mysqlsock) and what it would import (missedcall.record.mysqlimport; PyMySQL's warnings
#: are left out too, but this process has site, which imports them: tests/test_mysql_standins.py checks that).
NOT_FOR_A_LOCAL_MARIADB = (
    "ssl", "_ssl", "_hashlib", "getpass", "encodings.idna", "pymysql.optionfile", "configparser", "hashlib",
    "_md5", "_sha2", "_sha256", "_sha512", "_blake2", "_sha3", "socket", "selectors", "array",
)  # fmt: skip


def _cache_settings(path: Path) -> None:
    """Leave the settings cache, as an admin command on a PBX does (without it python-dotenv is loaded,
    and with it tempfile and random, whose _sha512 would hide what PyMySQL imports)."""
    saved = settingscache.SETTLE
    settingscache.SETTLE = -1.0
    try:
        config.read_env_file(str(path), strict=True)
    finally:
        settingscache.SETTLE = saved


@pytest.mark.parametrize("where", ["tcp", "socket"])
def test_the_hook_on_a_local_mariadb_mails_without_openssl(
    where: str, mariadb_database: MariaDBDatabase, tmp_path: Path
) -> None:
    url = mariadb_database.url
    if where == "socket":
        url = url.replace(f"@127.0.0.1:{mariadb_database.server.port}/", "@localhost/")
    box = make_pbx(tmp_path, url)
    _cache_settings(box.config_file)
    site = tmp_path / "site"
    site.mkdir()
    # sitecustomize runs in the real AGI process and writes down what it had loaded at exit.
    (site / "sitecustomize.py").write_text(
        "import atexit, os, sys\n"
        "atexit.register(lambda: open(os.environ['MODULES_FILE'], 'w').write('\\n'.join(sorted(sys.modules))))\n"
    )
    modules_file = tmp_path / "modules"
    peer = AgiPeer.from_fixture(AGI_FIXTURES / "1600-h.json")
    run = box.run(peer, ["600"], PYTHONPATH=str(site), MODULES_FILE=str(modules_file))
    assert run.ok and run.stderr == "" and run.stdout_garbage == [], run
    assert len(read_mail(box.maildir)) == 1
    [call] = box.calls()
    assert call.status == "sent"
    loaded = set(modules_file.read_text().split())
    assert "pymysql" in loaded and "missedcall.deliver.notify" in loaded and "_sha1" in loaded  # the guard sees
    assert "dotenv" not in loaded  # read from the settings cache, as on a PBX
    assert sorted(loaded.intersection(NOT_FOR_A_LOCAL_MARIADB)) == []


def test_a_pymysql_that_needs_ssl_after_all_is_imported_whole(tmp_path: Path) -> None:
    """A future PyMySQL that imports ssl unconditionally (a stand-in package here) still loads, with ssl."""
    package = tmp_path / "stand-in" / "pymysql"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from . import connections\n")
    (package / "connections.py").write_text("import ssl, getpass\nSSL_ENABLED = True\n")
    code = (
        "import sys\n"
        "from missedcall.record import mysqlimport\n"
        "pymysql = mysqlimport.load(tls=False)\n"
        "tls = pymysql.connections.ssl.PROTOCOL_TLS_CLIENT > 0\n"
        "print(pymysql.__file__.startswith(sys.argv[1]), 'ssl' in sys.modules, tls, mysqlimport.held_back)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "stand-in")}
    out = subprocess.run([sys.executable, "-c", code, str(package)], env=env, capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    assert out.stdout.split() == ["True", "True", "True", "False"]


#: PyMySQL's traceback stand-in: nothing imports the real module until PyMySQL's error path uses it.
LATER = """\
import json, socket, sys
from missedcall.record import mysqlimport

pymysql = mysqlimport.load(tls=False)
before = "traceback" in sys.modules
free = socket.socket()
free.bind(("127.0.0.1", 0))  # bound, never listening: a connect is refused at once
port = free.getsockname()[1]
try:
    pymysql.connect(host="127.0.0.1", port=port, user="nobody", password="Pa55-w0rd-later", connect_timeout=2)
except pymysql.err.OperationalError as exc:
    said = exc.traceback
import traceback
print(json.dumps({"before": before, "said": said, "real": hasattr(traceback, "TracebackException"),
                  "same": traceback is sys.modules["traceback"]}))
"""


def test_pymysqls_traceback_is_imported_only_when_its_error_path_uses_it(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", LATER], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         check=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})  # fmt: skip
    found = json.loads(out.stdout)
    assert found["before"] is False  # the hook's connect did not pay for traceback (and, on 3.13+, dataclasses)
    assert "Traceback (most recent call last)" in found["said"] and "ConnectionRefusedError" in found["said"]
    assert found["real"] and found["same"]  # whoever imports it afterwards gets the real module
