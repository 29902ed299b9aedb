"""PyMySQL as missedcall.record.mysqlimport loads it for a local connection: its own hashlib stand-in, its
``re`` whose patterns compile when first used, its ``contextlib.suppress``, and the modules it gets only when
a name of theirs is used (``pymysql.optionfile``, ``warnings``, and ``selectors`` and ``array`` for
``socket``) must leave every login and every use of them working, against the real MariaDB.

Each case runs in a fresh interpreter (what a process has imported is the point). The users are made
here, with the plugin named, and dropped again. MariaDB 10.11 offers mysql_native_password and
unix_socket (and ed25519 as a plugin to install, for which PyMySQL wants PyNaCl, no dependency of
ours); caching_sha2_password and sha256_password are MySQL's: for those the scrambles PyMySQL would
send are compared with the same computed with the real hashlib.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT
from tests.support.mariadb import MariaDBDatabase, MariaDBServer

#: Python's own hash modules that hashlib without OpenSSL would import, all of them, up front.
OWN_HASHES = ("_md5", "_sha1", "_sha2", "_sha256", "_sha512", "_blake2", "_sha3")
WATCHED = ("hashlib", "_hashlib", "ssl", "configparser", "pymysql.optionfile", *OWN_HASHES)

#: Loads PyMySQL as the hook does, logs in with $LOGIN (JSON: PyMySQL's keyword arguments, password and
#: all: through the environment, never argv), and says what was loaded before and after the login.
LOGIN = """\
import json, os, sys
from missedcall.record import mysqlimport

watched = json.loads(os.environ["WATCHED"])
pymysql = mysqlimport.load(tls=False)
out = {"after_import": sorted(m for m in watched if m in sys.modules)}
conn = pymysql.connect(**json.loads(os.environ["LOGIN"]), ssl_disabled=True, connect_timeout=5)
with conn.cursor() as cur:
    cur.execute("SELECT CURRENT_USER(), @@character_set_client")
    out["who"], out["charset"] = cur.fetchone()
conn.close()
out["after_login"] = sorted(m for m in watched if m in sys.modules)
print(json.dumps(out))
"""


def run_login(tmp_path: Path, login: dict[str, object]) -> dict:  # type: ignore[type-arg]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LOGIN": json.dumps(login), "WATCHED": json.dumps(WATCHED)}
    out = subprocess.run([sys.executable, "-c", LOGIN], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@contextlib.contextmanager
def user_with(server: MariaDBServer, plugin_clause: str, password: str) -> Iterator[str]:
    """A user at localhost and 127.0.0.1 identified with ``plugin_clause`` (``%s`` for the password)."""
    user = f"mc_auth_{secrets.token_hex(5)}"
    try:
        with contextlib.closing(server.root()) as conn, conn.cursor() as cur:
            for host in ("localhost", "127.0.0.1"):
                cur.execute(f"CREATE USER %s@%s {plugin_clause}", (user, host, password))
        yield user
    finally:
        with contextlib.closing(server.root()) as conn, conn.cursor() as cur:
            for host in ("localhost", "127.0.0.1"):
                cur.execute("DROP USER IF EXISTS %s@%s", (user, host))
            cur.execute("SELECT COUNT(*) FROM mysql.user WHERE User = %s", (user,))
            assert cur.fetchone() == (0,)


def _where(server: MariaDBServer, how: str) -> dict[str, object]:
    return {"unix_socket": server.unix_socket} if how == "socket" else {"host": "127.0.0.1", "port": server.port}


@pytest.mark.parametrize("how", ["tcp", "socket"])
def test_mysql_native_password_logs_in_with_python_s_own_sha1(
    how: str, mariadb_server: MariaDBServer, tmp_path: Path
) -> None:
    password = "Pa55-w0rd-native"
    with user_with(mariadb_server, "IDENTIFIED VIA mysql_native_password USING PASSWORD(%s)", password) as user:
        seen = run_login(tmp_path, {"user": user, "password": password, **_where(mariadb_server, how)})
    assert seen["who"].startswith(f"{user}@") and seen["charset"] == "utf8mb4"
    # Imported: no hash module at all, no configparser, no OpenSSL; logged in: SHA-1 only.
    assert seen["after_import"] == []
    assert seen["after_login"] == ["_sha1"]


def test_a_wrong_password_is_still_refused(mariadb_server: MariaDBServer, tmp_path: Path) -> None:
    with user_with(mariadb_server, "IDENTIFIED BY %s", "Right-Pa55") as user:
        login = {"user": user, "password": "Wrong-Pa55", **_where(mariadb_server, "tcp")}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "WATCHED": "[]", "LOGIN": json.dumps(login)}
        out = subprocess.run([sys.executable, "-c", LOGIN], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert out.returncode != 0 and "1045" in out.stderr and "Access denied" in out.stderr


def test_an_empty_password_and_unix_socket_need_no_hash(mariadb_server: MariaDBServer, tmp_path: Path) -> None:
    with user_with(mariadb_server, "IDENTIFIED VIA mysql_native_password USING %s", "") as user:
        seen = run_login(tmp_path, {"user": user, "password": "", **_where(mariadb_server, "tcp")})
    assert seen["who"].startswith(f"{user}@") and seen["after_login"] == []
    root = run_login(tmp_path, {"user": "root", **_where(mariadb_server, "socket")})  # unix_socket: who we are
    assert root["who"] == "root@localhost" and root["after_login"] == []


#: The scrambles PyMySQL's _auth computes for caching_sha2_password (SHA-256) and the SHA-512 of MariaDB's
#: client_ed25519, with the stand-in; printed for comparison with the real hashlib's.
SCRAMBLES = """\
import json, sys
from missedcall.record import mysqlimport

pymysql = mysqlimport.load(tls=False)
auth = pymysql._auth
stand_in = auth.hashlib is not sys.modules.get("hashlib")
nonce = bytes(range(20))
print(json.dumps({
    "stand_in": stand_in,
    "native": auth.scramble_native_password(b"pw", nonce).hex(),
    "caching_sha2": auth.scramble_caching_sha2(b"pw", nonce).hex(),
    "sha512": auth.hashlib.sha512(b"pw" + nonce).hexdigest(),
    "new_sha256": auth.hashlib.new("SHA256", b"pw").hexdigest(),
    "md5_other": auth.hashlib.md5(b"pw").hexdigest(),
    "blake2b_from_hashlib": auth.hashlib.blake2b(b"pw").hexdigest(),
    "loaded": sorted(m for m in sys.modules if m.lstrip("_") in ("sha1", "sha2", "sha256", "sha512", "md5", "blake2")),
}))
"""


def _reference(password: bytes, nonce: bytes) -> dict[str, str]:
    """The same values from the real hashlib (the MySQL protocol's definitions)."""
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    native = bytes(a ^ b for a, b in zip(hashlib.sha1(nonce + stage2).digest(), stage1))
    p1 = hashlib.sha256(password).digest()
    p3 = hashlib.sha256(hashlib.sha256(p1).digest() + nonce).digest()
    return {
        "native": native.hex(),
        "caching_sha2": bytes(a ^ b for a, b in zip(p1, p3)).hex(),
        "sha512": hashlib.sha512(password + nonce).hexdigest(),
        "new_sha256": hashlib.sha256(password).hexdigest(),
        "md5_other": hashlib.md5(password).hexdigest(),
        "blake2b_from_hashlib": hashlib.blake2b(password).hexdigest(),
    }


def test_the_hashes_of_the_other_plugins_are_the_real_ones(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRAMBLES], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})  # fmt: skip
    seen = json.loads(out.stdout)
    assert seen.pop("stand_in") is True
    loaded = seen.pop("loaded")
    assert seen == _reference(b"pw", bytes(range(20)))
    assert "_blake2" in loaded  # a name the stand-in has no module for: the real hashlib's


OPTION_FILE = """\
import json, os, sys
from missedcall.record import mysqlimport

pymysql = mysqlimport.load(tls=False)
before = "configparser" in sys.modules
conn = pymysql.connect(read_default_file=os.environ["CNF"], ssl_disabled=True, connect_timeout=5)
with conn.cursor() as cur:
    cur.execute("SELECT CURRENT_USER()")
    [who] = cur.fetchone()
conn.close()
import configparser
print(json.dumps({"before": before, "who": who, "real": hasattr(configparser, "RawConfigParser")}))
"""


def test_read_default_file_still_reads_the_option_file(mariadb_database: MariaDBDatabase, tmp_path: Path) -> None:
    """PyMySQL's optionfile comes in only when a connection names an option file; it then works as before."""
    cnf = tmp_path / "my.cnf"
    server = mariadb_database.server
    cnf.write_text(f"[client]\nuser = {mariadb_database.user}\npassword = {mariadb_database.password}\n"
                   f"host = 127.0.0.1\nport = {server.port}\ndatabase = {mariadb_database.name}\n")  # fmt: skip
    cnf.chmod(0o600)
    out = subprocess.run([sys.executable, "-c", OPTION_FILE], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=True,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNF": str(cnf)})  # fmt: skip
    seen = json.loads(out.stdout)
    assert seen == {"before": False, "who": f"{mariadb_database.user}@127.0.0.1", "real": True}


#: In a process whose PyMySQL came that way: DATETIME values read (without re), then executemany (PyMySQL's
#: only use of RE_INSERT_VALUES: a multi-row INSERT when the pattern matches, one INSERT per row when not),
#: TIME and fractional DATETIME values (PyMySQL's patterns), PyMySQL's DeprecationWarning, socket.sendfile
#: (selectors) and send_fds (array); and the DATETIME decoder against PyMySQL's own on awkward text.
LATER_USES = """\
import os, sys
# No site (-S), as the hook: it would import warnings itself; no json until the end: it imports re.
sys.path[:0] = os.environ["PATHS"].split(os.pathsep)
from missedcall.record import mysqlimport

pymysql = mysqlimport.load(tls=False)
out = {"imported": sorted(m for m in ("selectors", "array", "warnings", "re") if m in sys.modules)}
# Over the socket: PyMySQL's own TCP connect gives getaddrinfo a str, whose IDNA codec imports re
# (missedcall.record.db connects with the host's bytes instead).
login = {k: os.environ["MC_" + k.upper()] for k in ("user", "password", "unix_socket", "database")}
conn = pymysql.connect(**login, ssl_disabled=True, connect_timeout=5)
with conn.cursor() as cur:
    cur.execute("CREATE TABLE t (n INT, at DATETIME, fine DATETIME(3), took TIME)")
    cur.execute("INSERT INTO t VALUES (%s, %s, %s, %s)",
                (1, "2026-01-02 03:04:05", "2026-01-02 03:04:05.5", "01:02:03"))
    cur.execute("SELECT at, NOW() FROM t")
    out["plain"] = [v.isoformat() for v in cur.fetchone()][:1]
    out["re_after_plain"] = "re" in sys.modules
    cur.executemany("INSERT INTO t (n, at, fine, took) VALUES (%s, %s, %s, %s)",
                    [(2, "2026-01-02 03:04:06", None, "-00:00:01"), (3, "0000-00-00 00:00:00", None, None)])
    cur.execute("SHOW SESSION STATUS LIKE 'Com_insert'")
    out["inserts"] = int(cur.fetchone()[1])
    cur.execute("SELECT n, at, fine, took FROM t ORDER BY n")
    out["rows"] = [[n, str(at), str(fine), str(took)] for n, at, fine, took in cur.fetchall()]
conn.close()
out["contextlib_after_close"] = "contextlib" in sys.modules  # close() used PyMySQL's suppress()
broken = pymysql.connect(**login, ssl_disabled=True, connect_timeout=5)
broken._sock.shutdown(2)  # SHUT_RDWR: the COM_QUIT that close() sends fails, and suppress() swallows it
broken.close()
out["closed_anyway"] = broken.open is False
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pymysql.connect(db=login.pop("database"), **login, ssl_disabled=True, connect_timeout=5).close()
out["warned"] = [str(w.message) for w in caught if w.category is DeprecationWarning]
import re, socket, tempfile
out.update({"real_re": sys.modules["re"] is re, "pattern": isinstance(re.compile("x"), re.Pattern)})
left, right = socket.socketpair()
with tempfile.TemporaryFile() as f:
    f.write(b"sent with sendfile"); f.flush(); f.seek(0)
    left.settimeout(5)  # a timeout makes sendfile wait on a selector
    left.sendfile(f)
out["sendfile"] = right.recv(100).decode()
socket.send_fds(left, [b"x"], [right.fileno()])
out["fds"] = len(socket.recv_fds(right, 10, 1)[1])
import selectors, array
out["real_later"] = hasattr(selectors, "DefaultSelector") and hasattr(array, "array")
ours, theirs = pymysql.converters.decoders[pymysql.constants.FIELD_TYPE.DATETIME], pymysql.converters.convert_datetime
awkward = ["2026-01-02 03:04:05", b"2026-01-02 03:04:05", "2026-02-31 03:04:05", "0000-00-00 00:00:00",
           "2026-01-02T03:04:05", "2026-01-02 03:04:05.123456", "\uff12026-01-02 03:04:05", "2026-1-2 3:4:5",
           "9999-12-31 23:59:59", "2026-01-02 24:00:00", "+026-01-02 03:04:05", "2026-01-02"]
out["differ"] = [repr(v) for v in awkward if repr(ours(v)) != repr(theirs(v))]
out["ours"] = ours is not theirs
import json
print(json.dumps(out))
"""


def test_what_pymysql_gets_later_works_when_used(mariadb_database: MariaDBDatabase, tmp_path: Path) -> None:
    db = mariadb_database
    paths = os.pathsep.join([str(REPO_ROOT), *site.getsitepackages()])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PATHS": paths, "MC_USER": db.user,
           "MC_PASSWORD": db.password, "MC_UNIX_SOCKET": db.server.unix_socket, "MC_DATABASE": db.name}  # fmt: skip
    out = subprocess.run([sys.executable, "-I", "-S", "-c", LATER_USES], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["imported"] == []  # by PyMySQL's import: none of them
    assert seen["plain"] == ["2026-01-02T03:04:05"] and seen["re_after_plain"] is False
    assert seen["inserts"] == 2  # the first INSERT, then both rows of executemany in one: RE_INSERT_VALUES matched
    assert seen["rows"] == [
        [1, "2026-01-02 03:04:05", "2026-01-02 03:04:05.500000", "1:02:03"],
        [2, "2026-01-02 03:04:06", "None", "-1 day, 23:59:59"],
        [3, "0000-00-00 00:00:00", "None", "None"],  # a zero date comes back as text, as PyMySQL gives it
    ]
    assert seen["contextlib_after_close"] is False and seen["closed_anyway"] is True
    assert seen["warned"] == ["'db' is deprecated, use 'database'"]
    assert seen["real_re"] and seen["pattern"]  # anyone but PyMySQL compiles with the real re, as before
    assert seen["sendfile"] == "sent with sendfile" and seen["fds"] == 1 and seen["real_later"]
    assert seen["ours"] and seen["differ"] == []  # the DATETIME decoder gives what PyMySQL's gives
