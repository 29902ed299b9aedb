"""The database a bench runs against: a new SQLite file, or a throw-away MariaDB database dropped after.

MariaDB is the tests' own (tests.support.mariadb): the running server, or one started for the run and
stopped by its pid afterwards; the database and its user are made for the run and dropped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """A database URL for the run: ``kind`` "sqlite" (a file in ``workdir``) or "mariadb"."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'missedcall.sqlite3'}"
        return
    from tests.support.mariadb import ensure_mariadb, stop_pid, temporary_mariadb

    server, started = ensure_mariadb(workdir / "mariadb")
    try:
        with temporary_mariadb(server, prefix="mc_bench_") as db:
            yield db.url
    finally:
        if started is not None:
            stop_pid(started, 60)
