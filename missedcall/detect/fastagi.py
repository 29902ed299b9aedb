"""``missedcall-admin serve``: the FastAGI service, one asyncio process (docs/fastagi.md).

The dialplan calls ``AGI(agi://127.0.0.1:4574/missed,QUEUE[,REASON])`` with the process
hook's contract (docs/design.md §4). Asterisk waits without a timeout once connected,
so a session only reads what the call needs — the header block, then one framed
``GET FULL VARIABLE`` — records the call (missedcall.detect.fastagi_work.record, in a
thread), says one VERBOSE line and closes: the channel is free. The mail follows from
a bounded queue and threads of its own (missedcall.detect.fastagi_mail); a full queue leaves the
recorded call to ``retry``.

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
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from missedcall import __version__, config, log
from missedcall.deliver import mailprog, transport, trust
from missedcall.detect import agiproto, fastagi_cache, fastagi_work, verdict
from missedcall.detect.fastagi_io import (
    Garbage,
    Lines,
    close,
    drain_input,
    flush,
    peer_name,
    read_headers,
    script_of,
    why,
    within,
)
from missedcall.detect.fastagi_mail import Mailers
from missedcall.detect.fastagi_work import Breaker, Job, Recorded
from missedcall.detect.listen import MAX_SESSIONS_DEFAULT, Listen, cache_seconds
from missedcall.detect.listen import max_sessions as configured_cap

#: The scripts the service answers: ``agi://host:port/missed`` (and ``missed.py``, the hook's name).
CALL_SCRIPTS = ("missed", "missed.py")
VERSION_SCRIPT = "version"
HEADER_TIMEOUT = 2.0  # the whole header block; Asterisk writes it at once
REPLY_TIMEOUT = 2.0  # each reply; Asterisk answers GET FULL VARIABLE at once, even on a dead channel
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
        self.mailers = Mailers(workers, backlog, self.breaker, self._deliver)
        self.workers = workers
        self.backlog = backlog
        self.refused = 0
        self.draining = 0  # refused connections being read until Asterisk closes them
        self._refused_said = -REFUSED_EVERY
        self.sessions: set[asyncio.Task[None]] = set()
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
        trust.forget()  # a CA file named by the new settings, or changed on disk, is read afresh
        # A reload is also how an admin says "now": the copy of recipients and queue settings goes.
        try:
            fastagi_cache.SHELF.clear(cache_seconds(self.settings.raw))
        except config.ConfigError as exc:
            fastagi_cache.SHELF.clear()
            log.error(f"fastagi: configuration error: {exc}; keeping {fastagi_cache.SHELF.seconds:g} s")

    # -- life cycle

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
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
        left = await loop.run_in_executor(None, self.mailers.stop)  # returns once the mails being sent went
        self.record_pool.shutdown(wait=True)
        log.info(f"fastagi: stopped; {left} queued mail(s) left to retry (their calls are recorded)")

    async def _warm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every worker thread's database connection, opened once before the first burst."""
        gate = threading.Barrier(self.record_workers)
        jobs = [
            loop.run_in_executor(
                self.record_pool, fastagi_work.warm, self.settings, fastagi_work.DB_TIMEOUT, self.breaker, gate
            )
            for _ in range(self.record_workers)
        ]
        await asyncio.gather(self.mailers.start(loop, self.settings), *jobs)

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
        stream = Lines(reader)
        try:
            lines = await within(read_headers(stream), HEADER_TIMEOUT)
        except (asyncio.TimeoutError, Garbage, ConnectionError) as exc:
            log.warning(f"fastagi: {peer}: no AGI header block ({why(exc)}); closed")
            return
        env = agiproto.parse_headers(lines)
        script = script_of(env)
        if script == VERSION_SCRIPT:
            await self._say(stream, writer, self.status_line())
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
            job.values = await self._ask(stream, writer, framed) or []
        loop = asyncio.get_running_loop()
        settings, error = self.settings, self.settings_error
        self.recording += 1
        self.mailers.idle.clear()
        try:
            done = await loop.run_in_executor(self.record_pool, fastagi_work.record, job, settings, error, self.breaker)
        finally:
            self.recording -= 1
            if not self.recording:
                self.mailers.idle.set()
        done.session = job.session
        for message, is_error in done.notes:
            fastagi_work.report(f"{message} [{job.session}]", is_error)
            await self._say(stream, writer, message)
        if done.kind == "done":
            fastagi_work.report(f"{done.message} [{job.session}]", done.error)
            await self._say(stream, writer, done.message)
            return
        assert done.call is not None
        await self._say(stream, writer, f"missed call {done.call.callid} in queue {done.call.queue}: recorded")
        if done.message:  # recorded, but with trouble worth a line now (not spooled)
            fastagi_work.report(f"{done.message} [{job.session}]", done.error)
        try:
            self.mailers.put(done)
        except queue.Full:
            fastagi_work.report(f"{fastagi_work.left_for_retry(done)} [{job.session}]", True)

    async def _ask(self, stream: Lines, writer: asyncio.StreamWriter, framed: agiproto.Framed) -> list[str] | None:
        """The framed variables, or None when Asterisk could not say in time (the verdict copes)."""
        try:
            writer.write(framed.line.encode("utf-8"))
            await flush(writer, REPLY_TIMEOUT)
            return await within(_framed_reply(stream, framed), REPLY_TIMEOUT)
        except (asyncio.TimeoutError, Garbage, ConnectionError):
            return None

    async def _say(self, stream: Lines, writer: asyncio.StreamWriter, message: str) -> None:
        """One VERBOSE line in Asterisk's log (dead-channel safe); its reply is awaited, briefly."""
        if writer.is_closing() or stream.at_eof():
            return
        try:
            writer.write(agiproto.verbose_line(message).encode("utf-8"))
            await flush(writer, REPLY_TIMEOUT)
            await within(_status(stream), REPLY_TIMEOUT)
        except (asyncio.TimeoutError, Garbage, ConnectionError):
            return

    def status_line(self) -> str:
        last = self.last_session.isoformat(timespec="seconds") if self.last_session else "none"
        return (
            f"fastagi version={__version__} pid={os.getpid()} sessions={self.count} last_session={last}"
            f" refused={self.refused}"
        )

    # -- mail

    def _deliver(self, done: Recorded) -> None:
        try:
            line, error = fastagi_work.deliver(done, self.breaker)
        except Exception as exc:  # one call's trouble never stops the pool; the row stays pending
            callid = done.call.callid if done.call else "?"
            line, error = f"call {callid}: internal error while mailing: {exc.__class__.__name__}: {exc}", True
        fastagi_work.report(f"{line} [{done.session}]", error)


async def _framed_reply(stream: Lines, framed: agiproto.Framed) -> list[str] | None:
    """Lines up to the closing frame (one deadline for the whole reply, set by the caller)."""
    while True:
        values = framed.feed(await stream.readline())
        if values is not None:
            return values or None


async def _status(stream: Lines) -> None:
    """Lines up to a reply's status line."""
    while not agiproto.is_status(await stream.readline()):
        pass


def serve(listen: Listen, *, workers: int = 4, backlog: int = 1000, ready: Callable[[], None] | None = None) -> int:
    """Run until SIGTERM; 0 on a clean stop. Raises OSError when the address cannot be bound."""
    mailprog.start_with(mailprog.SUBPROCESS)  # a mail thread's start must not hold the GIL the event loop needs
    transport.keep_smtp_connections()  # a relay's handshake once per thread, not once per call
    trust.keep_contexts()  # and its CAs read once, not once per connection or chat post
    service = Service(listen, workers=workers, backlog=backlog)
    if service.settings is None:
        raise config.ConfigError(service.settings_error)
    started = time.monotonic()
    asyncio.run(service.run(ready))
    log.info(f"fastagi: ran {time.monotonic() - started:.0f} s, {service.count} session(s)")
    return 0
