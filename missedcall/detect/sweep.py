"""``missedcall-admin sweep``: the queue_log sweeper, the catch-all detector (docs/design.md).

The AGI hook only runs when the caller hangs up inside ``[ext-queues]``; queue_log
sees every queue call. The sweeper reads queue_log from where its last run
stopped and records and mails the missed calls the hook did not. The parts:

* :mod:`missedcall.detect.tail`: complete lines from a saved mark onwards, across rotation;
* :mod:`missedcall.detect.book`: the calls still open, and which are decided (pure);
* :mod:`missedcall.detect.sweepstate`: the position and open calls saved between runs;
* :mod:`missedcall.detect.sweeper`: one pass, gluing them to the database and the notifier;
* this module: the command's options, its lock (one sweeper per database and log) and ``--follow``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any, Callable

from missedcall import log
from missedcall.config import Settings
from missedcall.detect.book import HORIZON
from missedcall.detect.sweeper import DEFAULT_GRACE, Sweeper
from missedcall.detect.tail import SweepError, digest
from missedcall.record.db import StorageError
from missedcall.record.schema import SCHEMA_VERSION
from missedcall.record.storage import Store
from missedcall.text import small_int

__all__ = ["DEFAULT_GRACE", "SweepError", "add_arguments", "exclusive", "lock_path", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``missedcall-admin sweep``."""

    def seconds(text: str) -> int:
        value = small_int(text.strip(), 6)
        if value is None or value > HORIZON:
            raise argparse.ArgumentTypeError(f"--grace takes whole seconds from 0 to {HORIZON}, not {text[:20]!r}")
        return value

    def interval(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0.05 <= value <= 3600:
            raise argparse.ArgumentTypeError(f"--interval takes seconds from 0.05 to 3600, not {text[:20]!r}")
        return value

    parser.add_argument(
        "--grace",
        type=seconds,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"decide a call this long after its last exit line (a timeout may lead to another queue; "
        f"default {DEFAULT_GRACE})",
    )
    parser.add_argument(
        "--from-start",
        action="store_true",
        help="read the whole file, not just what is new (a first run otherwise starts at its end)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the verdicts; record and send nothing")
    parser.add_argument(
        "--record-only",
        action="store_true",
        help="record the missed calls as history (status skipped) and mail nobody: with --from-start, back-fills"
        " the call log from an old queue_log without waking anyone or opening storm-control windows",
    )
    parser.add_argument("--follow", action="store_true", help="keep running and read new lines as they come")
    parser.add_argument(
        "--interval", type=interval, default=1.0, metavar="SECONDS", help="with --follow: how often to look (default 1)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print each call recorded and a summary")
    parser.add_argument(
        "--json", action="store_true", help="one pass's counts and summary as JSON (not with --follow or -v)"
    )


def lock_path(settings: Settings) -> str:
    key = digest(f"{settings.db.describe()}\0{os.path.abspath(settings.queue_log)}".encode())[:12]
    folder = "/run/lock" if os.path.isdir("/run/lock") and os.access("/run/lock", os.W_OK) else "/tmp"  # noqa: S108
    return os.path.join(folder, f"missedcall-sweep-{key}.lock")


@contextlib.contextmanager
def exclusive(settings: Settings, *, wait: Callable[[], bool] | None) -> Iterator[bool]:
    """One sweeper per database and queue_log. Yields False when another holds it (and ``wait`` is None)."""
    path = lock_path(settings)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY)  # someone else's lock file in a sticky folder: flock works read-only
        except OSError:
            yield True  # no lock to be had: run anyway; claims keep mails single
            return
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait is None or not wait():
                    yield False
                    return
        yield True
    finally:
        os.close(fd)


def run(
    settings: Settings,
    *,
    grace: int = DEFAULT_GRACE,
    from_start: bool = False,
    dry_run: bool = False,
    follow: bool = False,
    interval: float = 1.0,
    verbose: bool = False,
    out: IO[str] | None = None,
    record_only: bool = False,
    as_json: bool = False,
) -> int:
    """``missedcall-admin sweep``; raises SweepError for what the admin must fix."""
    out = out if out is not None else sys.stdout
    if record_only and (follow or dry_run):
        raise SweepError("--record-only is for one pass that records: not with --follow or --dry-run")
    if as_json:
        if follow or verbose:
            raise SweepError("--json reports one pass: not with --follow or -v")
        return _json_pass(settings, grace=grace, from_start=from_start, dry_run=dry_run, record_only=record_only,
                          out=out)
    if follow:
        return _follow(
            settings, grace=grace, dry_run=dry_run, interval=interval, verbose=verbose, out=out, from_start=from_start
        )
    if dry_run:
        return _once(settings, grace=grace, from_start=from_start, dry_run=True, verbose=verbose, out=out)
    with exclusive(settings, wait=None) as mine:
        if not mine:
            log.info("sweep: another sweep is running; this one does nothing")
            if verbose:
                out.write("sweep: another sweep is running (cron overlap or a --follow service); nothing done\n")
            return 0
        return _once(
            settings, grace=grace, from_start=from_start, dry_run=False, verbose=verbose, out=out,
            record_only=record_only,
        )


@contextlib.contextmanager
def _rare_collections() -> Iterator[None]:
    """A pass makes a record object for every call line of the log, freed by reference count once the call is
    decided; the cyclic collector walking them every 700 allocations cost a sixth of a million-line sweep.
    Collections still run, a hundred times less often; the usual thresholds come back after the pass."""
    saved = gc.get_threshold()
    gc.set_threshold(max(saved[0], 100_000), *saved[1:])
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def _open(settings: Settings, *, dry_run: bool) -> Store | None:
    try:
        store = Store.open(settings.db, timeout=10.0, create=not dry_run)
    except StorageError as exc:
        if dry_run:
            print(f"note: {exc}; no saved position and no check against recorded calls", file=sys.stderr)
            return None
        raise SweepError(str(exc)) from None
    if not dry_run and (store.schema_version() or 0) < SCHEMA_VERSION:
        store.init()  # as the hook does: the tables appear, or catch up, on first use
    return store


def _json_pass(
    settings: Settings, *, grace: int, from_start: bool, dry_run: bool, record_only: bool, out: IO[str]
) -> int:
    """One pass as ``[{"ran": ..., counts..., "summary": ...}]``; the per-call lines are not printed."""
    import io
    import json
    from dataclasses import asdict

    report: dict[str, Any] = {"ran": False, "summary": "sweep: another sweep is running; nothing done"}
    quiet = io.StringIO()  # --dry-run's verdict lines would break the JSON
    with contextlib.nullcontext(True) if dry_run else exclusive(settings, wait=None) as mine:
        if mine:
            sweeper = _pass(
                settings, grace=grace, from_start=from_start, dry_run=dry_run, verbose=False, out=quiet,
                record_only=record_only,
            )
            in_grace, waiting = sweeper.book.counts()
            report = {
                "ran": True, "dry_run": dry_run, "record_only": record_only, **asdict(sweeper.stats),
                "open_in_grace": in_grace, "open_waiting": waiting, "summary": sweeper.summary(),
            }
    out.write(json.dumps([report], ensure_ascii=False, indent=2) + "\n")
    return 0


def _once(
    settings: Settings, *, grace: int, from_start: bool, dry_run: bool, verbose: bool, out: IO[str],
    record_only: bool = False,
) -> int:
    _pass(
        settings, grace=grace, from_start=from_start, dry_run=dry_run, verbose=verbose, out=out,
        record_only=record_only,
    )
    return 0


def _pass(
    settings: Settings, *, grace: int, from_start: bool, dry_run: bool, verbose: bool, out: IO[str],
    record_only: bool = False,
) -> Sweeper:
    """One pass; the sweeper is returned closed, with its counts."""
    store = _open(settings, dry_run=dry_run)
    sweeper = Sweeper(
        settings, store, grace=grace, from_start=from_start, dry_run=dry_run, verbose=verbose, out=out,
        record_only=record_only,
    )
    try:
        with _rare_collections():
            stats = sweeper.cycle()
    except StorageError as exc:
        raise SweepError(str(exc)) from None
    finally:
        sweeper.close()
        if store is not None:
            store.close()
    if stats.all_failed():
        raise SweepError(f"every call of this pass failed ({stats.failed}); see the log for the first error")
    return sweeper


def _follow(
    settings: Settings, *, grace: int, dry_run: bool, interval: float, verbose: bool, out: IO[str], from_start: bool
) -> int:
    """Run until SIGTERM/SIGINT: look at the file every ``interval`` s (one stat when idle), cycle when
    something is new or due. Database trouble is logged and retried with back-off; the in-memory state is
    then dropped and rebuilt from the last saved one, so nothing decided is lost."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        lock = contextlib.nullcontext(True) if dry_run else exclusive(settings, wait=lambda: not stop.wait(interval))
        with lock as mine:
            if not mine:
                return 0  # stopped while waiting for the lock
            store: Store | None = None
            sweeper: Sweeper | None = None
            delay = interval
            last_cycle = 0.0
            first = True
            while not stop.is_set():
                try:
                    if sweeper is None:
                        store = _open(settings, dry_run=dry_run)
                        sweeper = Sweeper(
                            settings,
                            store,
                            grace=grace,
                            from_start=from_start and first,
                            dry_run=dry_run,
                            verbose=verbose,
                            out=out,
                        )
                        sweeper.load()
                        first = False
                        with _rare_collections():
                            sweeper.cycle()
                        last_cycle = time.monotonic()
                    elif sweeper.has_work() or time.monotonic() - last_cycle >= 60:
                        with _rare_collections():
                            sweeper.cycle()
                        last_cycle = time.monotonic()
                    out.flush()
                    delay = interval
                except StorageError as exc:
                    log.error(f"sweep --follow: {exc}; retrying in {delay:.0f} s")
                    print(f"sweep: {exc}; retrying", file=sys.stderr, flush=True)
                    if sweeper is not None:
                        sweeper.close()
                    if store is not None:
                        store.close()
                    sweeper, store = None, None
                    delay = min(max(delay * 2, 1.0), 60.0)
                stop.wait(delay)
            if sweeper is not None:
                sweeper.close()
            if store is not None:
                store.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
