"""Shared fixtures: thin wrappers over tests/support (one module per concern).

Real MariaDB (tests.support.mariadb), FreePBX's tables and freepbx.conf
(tests.support.freepbx), SQLite, the sendmail stand-in (tests/bin/sendmail),
a real SMTP server (tests.support.smtp), a silent peer (tests.support.net) and
the environment Asterisk gives agi-bin/missed.py (tests.support.env).
Import helpers from those modules, never from here. Everything a fixture starts
it stops by its own handle or pid; every database and user it creates it drops,
and checks that they are gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Callable, cast

import pytest

from tests.paths import SENDMAIL_BIN
from tests.support.env import AgiEnvironment, make_agi_env
from tests.support.freepbx import make_freepbx_like, write_freepbx_conf
from tests.support.mariadb import (
    MariaDBDatabase,
    MariaDBServer,
    MariaDBUnavailable,
    ensure_mariadb,
    mariadb_leftovers,
    old_server_defaults,
    stop_pid,
    temporary_mariadb,
    undo_interrupted_old_defaults,
)
from tests.support.net import silent_tcp_listener
from tests.support.smtp import SmtpServer, make_tls_certificate


def pytest_configure(config: pytest.Config) -> None:
    # The "auth" SMTP mode is AUTH without TLS on purpose.
    config.addinivalue_line("filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning")


# ---------------------------------------------------------------------- MariaDB


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """A running MariaDB reachable as root over its socket; started (and later stopped) if needed."""
    try:
        server, started_pid = ensure_mariadb(tmp_path_factory.mktemp("mariadb"))
    except MariaDBUnavailable as exc:
        pytest.fail(str(exc))
    undo_interrupted_old_defaults(server)
    yield server
    if started_pid is not None:
        stop_pid(started_pid, 60)


def _checked_database(server: MariaDBServer, *, old: bool = False) -> Iterator[MariaDBDatabase]:
    with contextlib.ExitStack() as stack:
        if old:
            stack.enter_context(old_server_defaults(server))
        db = stack.enter_context(temporary_mariadb(server, charset="latin1" if old else "utf8mb4"))
        yield db
    left = mariadb_leftovers(server, db.name, db.user)
    assert not left, f"temporary MariaDB objects survived teardown: {left}"


@pytest.fixture
def mariadb_database(mariadb_server: MariaDBServer) -> Iterator[MariaDBDatabase]:
    """A temporary database and user; verified gone after the test."""
    yield from _checked_database(mariadb_server)


@pytest.fixture
def mariadb_url(mariadb_database: MariaDBDatabase) -> str:
    """``mysql://user:pass@127.0.0.1:3306/mc_test_<random>`` for a fresh database."""
    return mariadb_database.url


@pytest.fixture
def old_mariadb_database(mariadb_server: MariaDBServer) -> Iterator[MariaDBDatabase]:
    """A temporary latin1 database on a server set to MariaDB 5.5's defaults (SNG7: FreePBX 13 to 16) for the
    test's duration: COMPACT rows (767-byte index columns), no strict modes."""
    yield from _checked_database(mariadb_server, old=True)


@pytest.fixture
def old_mariadb_url(old_mariadb_database: MariaDBDatabase) -> str:
    return old_mariadb_database.url


@pytest.fixture
def freepbx_database(mariadb_database: MariaDBDatabase) -> MariaDBDatabase:
    """A temporary database that looks like FreePBX's ``asterisk`` (queues_config filled)."""
    make_freepbx_like(mariadb_database)
    return mariadb_database


@pytest.fixture
def freepbx_conf(freepbx_database: MariaDBDatabase, tmp_path: Path) -> Path:
    """A freepbx.conf for :func:`freepbx_database`: point MISSEDCALL_FREEPBX_CONF at it."""
    return write_freepbx_conf(tmp_path / "freepbx.conf", freepbx_database)


# ---------------------------------------------------------------------- SQLite / both


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/missedcall.sqlite3"  # tmp_path is absolute: four slashes


#: Modules whose ``db_url`` tests also run on a server set to MariaDB 5.5's defaults ("mariadb-5.5"): the
#: ones that write every table (recipients, calls, storm control, chat deliveries, follow-ups, queues), and
#: the hostile values and faults, since without strict mode a value too long for its column is cut, not refused.
OLD_MARIADB_MODULES = frozenset(
    {
        "test_storage", "test_flood", "test_isolation", "test_afterhours", "test_chat", "test_queues",
        "test_followup", "test_threads", "test_retry", "test_hook", "test_resolve_cdr", "test_repeat_lookup",
        "test_notify_guards", "test_recipients_import", "test_old_mariadb", "test_hostile", "test_spool_hostile",
        "test_faults", "test_sweep", "test_log_cli", "test_resolve_cli", "test_json_cli",
    }
)  # fmt: skip


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_url" in metafunc.fixturenames:
        kinds = ["mariadb", "sqlite"]
        if metafunc.module.__name__.rpartition(".")[2] in OLD_MARIADB_MODULES:
            kinds.append("mariadb-5.5")
        metafunc.parametrize("db_url", kinds, indirect=True)


@pytest.fixture
def db_url(request: pytest.FixtureRequest) -> str:
    """Each storage test runs on both backends (and some on old MariaDB defaults); MariaDB is only touched
    for its own cases."""
    name = {"mariadb": "mariadb_url", "sqlite": "sqlite_url", "mariadb-5.5": "old_mariadb_url"}[request.param]
    return cast(str, request.getfixturevalue(name))


# ---------------------------------------------------------------------- sendmail


@pytest.fixture
def maildir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where tests/bin/sendmail stores messages; MISSEDCALL_TEST_MAILDIR is set to it."""
    path = tmp_path / "maildir"
    path.mkdir()
    monkeypatch.setenv("MISSEDCALL_TEST_MAILDIR", str(path))
    return path


@pytest.fixture
def sendmail_bin(maildir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sendmail stand-in; MISSEDCALL_SENDMAIL and MISSEDCALL_TEST_MAILDIR point at it."""
    monkeypatch.setenv("MISSEDCALL_SENDMAIL", str(SENDMAIL_BIN))
    monkeypatch.delenv("FAKE_SENDMAIL_EXIT", raising=False)
    monkeypatch.delenv("FAKE_SENDMAIL_SLEEP", raising=False)
    return SENDMAIL_BIN


# ---------------------------------------------------------------------- SMTP


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert.pem, key.pem)."""
    try:
        return make_tls_certificate(tmp_path_factory.mktemp("tls"))
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest, tls_certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """An SMTP server; plain by default, or ``@pytest.mark.parametrize("smtp_server",
    ["starttls", "ssl", "auth", ...], indirect=True)``."""
    mode = getattr(request, "param", "plain")
    server = SmtpServer(mode, tls_certificate)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def silent_tcp_server() -> Iterator[tuple[str, int]]:
    """(host, port) of a listener that accepts connections and never says a word."""
    with silent_tcp_listener() as address:
        yield address


# ---------------------------------------------------------------------- AGI environment


@pytest.fixture
def agi_env(tmp_path: Path) -> Callable[..., AgiEnvironment]:
    """``agi_env(**config)`` -> :class:`AgiEnvironment`; ``.env`` goes to ``AgiPeer.run(env=...)``.

    Mail sent through the stand-in lands in ``Path(result.env["MISSEDCALL_TEST_MAILDIR"])``.
    """

    def make(*, extra_env: Mapping[str, str] | None = None, **config: str | None) -> AgiEnvironment:
        return make_agi_env(tmp_path, extra_env=extra_env, **config)

    return make
