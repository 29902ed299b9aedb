"""``missedcall-admin serve``: the FastAGI service, one asyncio process (docs/fastagi.md).

The dialplan calls ``AGI(agi://127.0.0.1:4574/missed,QUEUE[,REASON])`` with the process
hook's contract (docs/design.md §4). Asterisk waits without a timeout once connected,
so a session only reads what the call needs — the header block, then one framed
``GET FULL VARIABLE`` — records the call (missedcall.detect.fastagi_work.record, in a
thread), says one VERBOSE line and closes: the channel is free. The mail follows in a
bounded pool; a full queue leaves the recorded call to ``retry``.

Every read is bounded in size and time (a half-open, silent or garbage peer costs one
timeout); ``HANGUP`` lines, which a live channel sends instead of SIGHUP, are skipped.
A session is named by ``agi_uniqueid`` and the peer's address, as many PBXs may share
the service. The network script ``version`` answers a VERBOSE line with the version,
the pid and the last session's time (``doctor`` asks it).

SIGTERM: stop accepting, finish the sessions in flight and the mails being sent, and
leave queued mails to ``retry`` (their calls are recorded). SIGHUP: re-read the
configuration (a new listen address needs a restart).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from missedcall import __version__, config, log
from missedcall.detect import agiproto, fastagi_work, verdict
from missedcall.detect.fastagi_io import (
    Garbage,
    close,
    drain_input,
    peer_name,
    read_headers,
    readline,
    script_of,
    why,
    within,
)
from missedcall.detect.fastagi_work import Breaker, Job, Recorded
from missedcall.detect.listen import MAX_SESSIONS_DEFAULT, Listen
from missedcall.detect.listen import max_sessions as configured_cap

#: The scripts the service answers: ``agi://host:port/missed`` (and ``missed.py``, the hook's name).
CALL_SCRIPTS = ("missed", "missed.py")
VERSION_SCRIPT = "version"
HEADER_TIMEOUT = 2.0  # the whole header block; Asterisk writes it at once
REPLY_TIMEOUT = 2.0  # each reply; Asterisk answers GET FULL VARIABLE at once, even on a dead channel
MAIL_YIELD = 1.0  # the most a mail waits for sessions in flight before it goes anyway
#: What a session over the cap is told: res_agi sets AGISTATUS=FAILURE on a line starting with "failure".
FAILURE_LINE = b"FAILURE\n"
REFUSE_DRAIN = 2.0  # how long a refused connection is read (and dropped) for Asterisk to close it
REFUSED_EVERY = 10.0  # seconds between two log lines about refused sessions


class Service:
    """The listening socket, the sessions, the record and mail pools."""

    def __init__(
        self,
        listen: Listen,
        *,
        load: Callable[[], config.Settings] = config.load_settings,
        workers: int = 4,
        record_workers: int = 4,
        backlog: int = 1000,
        max_sessions: int | None = None,
    ) -> None:
        self.listen = listen
        self._load = load
        self.settings: config.Settings | None = None
        self.settings_error = ""
        self._fixed_cap = max_sessions  # None: MISSEDCALL_FASTAGI_MAX_SESSIONS, re-read on SIGHUP
        self.max_sessions = max_sessions or MAX_SESSIONS_DEFAULT
        self.reload()
        self.breaker = Breaker()
        self.record_workers = record_workers
        self.record_pool = ThreadPoolExecutor(record_workers, thread_name_prefix="mc-record")
        self.mail_pool = ThreadPoolExecutor(workers, thread_name_prefix="mc-mail")
        self.workers = workers
        self.backlog = backlog
        self.refused = 0
        self.draining = 0  # refused connections being read until Asterisk closes them
        self._refused_said = -REFUSED_EVERY
        self.sessions: set[asyncio.Task[None]] = set()
        self.mailing: set[asyncio.Future[None]] = set()
        self.queue: asyncio.Queue[Recorded] | None = None
        self.server: asyncio.base_events.Server | None = None
        self.last_session: datetime | None = None
        self.count = 0
        self.recording = 0  # sessions holding a channel while their call is recorded
        self._stopping: asyncio.Event | None = None

    # -- configuration

    def reload(self) -> None:
        try:
            self.settings = self._load()
            self.settings_error = ""
        except config.ConfigError as exc:
            if self.settings is None:
                self.settings_error = str(exc)
            log.error(f"fastagi: configuration error: {exc}" + ("; keeping the last good one" if self.settings else ""))
            return
        if self._fixed_cap is None:
            try:
                self.max_sessions = configured_cap(self.settings.raw)
            except config.ConfigError as exc:
                log.error(f"fastagi: configuration error: {exc}; keeping {self.max_sessions}")

    # -- life cycle

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()  # set while no session is being recorded
        self._idle.set()
        self.queue = asyncio.Queue(self.backlog)
        self.server = await asyncio.start_server(
            self._accept, self.listen.host, self.listen.port, limit=agiproto.MAX_LINE, backlog=1024, reuse_address=True
        )
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        await self._warm(loop)
        # What start-up built (modules, settings, connections) lives as long as the process: out of
        # the collector's sight, every collection a burst's mails trigger walks only what they made.
        gc.collect()
        gc.freeze()
        mailers = [asyncio.create_task(self._mailer()) for _ in range(self.workers)]
        exposed = "" if self.listen.loopback else "; NOT loopback: firewall it to your PBXs (FastAGI has no login)"
        log.info(f"fastagi: version {__version__} listening on {self.listen} (pid {os.getpid()}){exposed}")
        if ready is not None:
            ready()
        await self._stopping.wait()
        # Graceful stop: no new sessions; those in flight finish (each is bounded); queued mails
        # stay recorded for retry; mails being handed to the relay finish.
        self.server.close()
        if self.sessions:
            await asyncio.wait(set(self.sessions), timeout=HEADER_TIMEOUT + 3 * REPLY_TIMEOUT + 5)
        for task in mailers:
            task.cancel()
        left = self.queue.qsize()
        if self.mailing:
            await asyncio.wait(set(self.mailing))
        self.record_pool.shutdown(wait=True)
        self.mail_pool.shutdown(wait=True)
        log.info(f"fastagi: stopped; {left} queued mail(s) left to retry (their calls are recorded)")

    async def _warm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every worker thread's database connection, opened once before the first burst."""
        jobs = []
        for pool, count, timeout in (
            (self.record_pool, self.record_workers, fastagi_work.DB_TIMEOUT),
            (self.mail_pool, self.workers, fastagi_work.MAIL_DB_TIMEOUT),
        ):
            gate = threading.Barrier(count)
            jobs += [
                loop.run_in_executor(pool, fastagi_work.warm, self.settings, timeout, self.breaker, gate)
                for _ in range(count)
            ]
        await asyncio.gather(*jobs)

    def _on_sighup(self) -> None:
        log.info("fastagi: SIGHUP: re-reading the configuration")
        self.reload()

    # -- sessions

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = peer_name(writer)
        if len(self.sessions) >= self.max_sessions:
            await self._refuse(reader, writer, peer)
            return
        self.sessions.add(task)
        try:
            await self._session(reader, writer, peer)
        except Exception as exc:  # the last line of defence: one session never stops the others
            log.error(f"fastagi: session from {peer}: internal error: {exc.__class__.__name__}: {exc}")
        finally:
            self.sessions.discard(task)
            await close(writer)

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        """Over capacity: make Asterisk fall back rather than drop the call.

        res_agi's run_agi() takes a line from the script that starts with ``failure`` as the
        script's failure and sets ``AGISTATUS`` to ``FAILURE``, and the dialplan then runs
        missed.py (a connection merely closed or reset reads as ``SUCCESS``: the call would be
        left to the sweeper). The header block is not read; what Asterisk still sends (the
        headers, its ``HANGUP``) is drained until it closes, so that our close is a FIN and not a
        reset racing the line. Refusals being drained are bounded too: past as many again as the
        cap, the line is written and the connection aborted at once.
        """
        self.refused += 1
        now = time.monotonic()
        if now - self._refused_said >= REFUSED_EVERY:
            self._refused_said = now
            log.warning(
                f"fastagi: {len(self.sessions)} sessions open (MISSEDCALL_FASTAGI_MAX_SESSIONS={self.max_sessions});"
                f" told {peer} FAILURE, the dialplan runs missed.py; {self.refused} refused since the start"
            )
        try:
            writer.write(FAILURE_LINE)
            if self.draining >= self.max_sessions:
                await within(writer.drain(), REPLY_TIMEOUT)
                return
            self.draining += 1
            try:
                await within(drain_input(reader), REFUSE_DRAIN)
            finally:
                self.draining -= 1
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            await close(writer)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        try:
            lines = await within(read_headers(reader), HEADER_TIMEOUT)
        except (asyncio.TimeoutError, Garbage, ConnectionError) as exc:
            log.warning(f"fastagi: {peer}: no AGI header block ({why(exc)}); closed")
            return
        env = agiproto.parse_headers(lines)
        script = script_of(env)
        if script == VERSION_SCRIPT:
            await self._say(reader, writer, self.status_line())
            return
        if script not in CALL_SCRIPTS:
            shown = verdict.clean_id(script)[:40]
            log.warning(f"fastagi: {peer}: unknown script {shown!r} (agi://HOST:PORT/missed is ours); closed")
            return
        job = Job(env=env, args=agiproto.agi_args(env), values=[], peer=peer)
        job.callid = verdict.clean_id(env.get("agi_uniqueid", ""))
        self.count += 1
        self.last_session = datetime.now(timezone.utc)
        if job.callid:
            framed = agiproto.Framed(fastagi_work.ASKED, "mc" + os.urandom(6).hex())
            job.values = await self._ask(reader, writer, framed) or []
        loop = asyncio.get_running_loop()
        settings, error = self.settings, self.settings_error
        self.recording += 1
        self._idle.clear()
        try:
            done = await loop.run_in_executor(
                self.record_pool, fastagi_work.record, job, settings, error, self.breaker
            )
        finally:
            self.recording -= 1
            if not self.recording:
                self._idle.set()
        done.session = job.session
        for message, is_error in done.notes:
            fastagi_work.report(f"{message} [{job.session}]", is_error)
            await self._say(reader, writer, message)
        if done.kind == "done":
            fastagi_work.report(f"{done.message} [{job.session}]", done.error)
            await self._say(reader, writer, done.message)
            return
        assert done.call is not None
        await self._say(reader, writer, f"missed call {done.call.callid} in queue {done.call.queue}: recorded")
        if done.message:  # recorded, but with trouble worth a line now (not spooled)
            fastagi_work.report(f"{done.message} [{job.session}]", done.error)
        assert self.queue is not None
        try:
            self.queue.put_nowait(done)
        except asyncio.QueueFull:
            fastagi_work.report(f"{fastagi_work.left_for_retry(done)} [{job.session}]", True)

    async def _ask(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, framed: agiproto.Framed
    ) -> list[str] | None:
        """The framed variables, or None when Asterisk could not say in time (the verdict copes)."""
        try:
            writer.write(framed.line.encode("utf-8"))
            await within(writer.drain(), REPLY_TIMEOUT)
            while True:
                line = await within(readline(reader), REPLY_TIMEOUT)
                values = framed.feed(line)
                if values is not None:
                    return values or None
        except (asyncio.TimeoutError, Garbage, ConnectionError):
            return None

    async def _say(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: str) -> None:
        """One VERBOSE line in Asterisk's log (dead-channel safe); its reply is awaited, briefly."""
        if writer.is_closing() or reader.at_eof():
            return
        try:
            writer.write(agiproto.verbose_line(message).encode("utf-8"))
            await within(writer.drain(), REPLY_TIMEOUT)
            while True:
                line = await within(readline(reader), REPLY_TIMEOUT)
                if agiproto.is_status(line):
                    return
        except (asyncio.TimeoutError, Garbage, ConnectionError):
            return

    def status_line(self) -> str:
        last = self.last_session.isoformat(timespec="seconds") if self.last_session else "none"
        return (
            f"fastagi version={__version__} pid={os.getpid()} sessions={self.count} last_session={last}"
            f" refused={self.refused}"
        )

    # -- mail

    async def _mailer(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            done = await self.queue.get()
            # Channels first: while sessions are being recorded, a mail waits (a little) for the
            # database and the CPUs they need; it is recorded already, so waiting costs nothing.
            if self.recording:
                try:
                    await within(self._idle.wait(), MAIL_YIELD)
                except asyncio.TimeoutError:
                    pass
            future = loop.run_in_executor(self.mail_pool, self._deliver, done)
            self.mailing.add(future)
            try:
                await asyncio.shield(future)
            finally:
                self.mailing.discard(future)

    def _deliver(self, done: Recorded) -> None:
        try:
            line, error = fastagi_work.deliver(done, self.breaker)
        except Exception as exc:  # one call's trouble never stops the pool; the row stays pending
            callid = done.call.callid if done.call else "?"
            line, error = f"call {callid}: internal error while mailing: {exc.__class__.__name__}: {exc}", True
        fastagi_work.report(f"{line} [{done.session}]", error)


def serve(listen: Listen, *, workers: int = 4, backlog: int = 1000, ready: Callable[[], None] | None = None) -> int:
    """Run until SIGTERM; 0 on a clean stop. Raises OSError when the address cannot be bound."""
    service = Service(listen, workers=workers, backlog=backlog)
    if service.settings is None:
        raise config.ConfigError(service.settings_error)
    started = time.monotonic()
    asyncio.run(service.run(ready))
    log.info(f"fastagi: ran {time.monotonic() - started:.0f} s, {service.count} session(s)")
    return 0
