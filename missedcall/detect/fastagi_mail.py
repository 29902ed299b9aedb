"""The FastAGI service's mail threads (missedcall.detect.fastagi): recorded calls mailed off the event loop.

A session that recorded its call puts it in a bounded queue and is done; one of ``count`` threads
takes it, lets the sessions being recorded go first (a little: the call is durable already), mails
it and reports. The event loop is not woken when a mail is done, and no future is made for it: a
mail costs the loop one ``put``. A full queue is the session's to report (``queue.Full``): the call
stays recorded, ``retry`` mails it.

Stop: each thread finishes the mail it is handing over; what is still queued is left to ``retry``
(its rows are pending, or its spool files), and counted.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

from missedcall import config, log
from missedcall.deliver import smtpkeep
from missedcall.detect import fastagi_work
from missedcall.detect.fastagi_work import Breaker, Recorded

#: The most a mail waits for the sessions in flight before it goes anyway.
MAIL_YIELD = 1.0


class Mailers:
    """``count`` threads taking recorded calls from one bounded queue, each with its own database connection."""

    def __init__(self, count: int, backlog: int, breaker: Breaker, deliver: Callable[[Recorded], None]) -> None:
        self.count = count
        self.queue: queue.Queue[Recorded | None] = queue.Queue(backlog)
        #: Set while no session is being recorded; the service clears and sets it (channels first).
        self.idle = threading.Event()
        self.idle.set()
        self._breaker = breaker
        self._deliver = deliver
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._left = 0  # taken from the queue after the stop began, so left to retry
        self._lock = threading.Lock()

    def start(self, loop: asyncio.AbstractEventLoop, settings: config.Settings | None) -> asyncio.Future[list[None]]:
        """Start the threads; the future is done once each has opened its database connection (or failed to)."""
        gate = threading.Barrier(self.count)  # every thread opens its own: none serves two warm-ups
        futures = [loop.create_future() for _ in range(self.count)]
        for number, warmed in enumerate(futures):
            thread = threading.Thread(
                target=self._run, args=(loop, warmed, settings, gate), name=f"mc-mail_{number}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return asyncio.gather(*futures)

    def put(self, done: Recorded) -> None:
        """Queue a recorded call for a thread; raises queue.Full when the backlog is full."""
        self.queue.put_nowait(done)

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        warmed: asyncio.Future[None],
        settings: config.Settings | None,
        gate: threading.Barrier,
    ) -> None:
        try:
            fastagi_work.warm(settings, fastagi_work.MAIL_DB_TIMEOUT, self._breaker, gate)
        except Exception as exc:  # the thread must live on: its first mail opens the connection instead
            log.error(f"fastagi: mail thread could not open its database connection: {exc.__class__.__name__}: {exc}")
        finally:
            loop.call_soon_threadsafe(_settle, warmed)
        while True:
            done = self.queue.get()
            if done is None:
                smtpkeep.forget()  # QUIT to the relay, if this thread kept a connection to it
                return
            if self._stopping:
                with self._lock:
                    self._left += 1
                continue
            if not self.idle.is_set():
                self.idle.wait(MAIL_YIELD)
            self._deliver(done)

    def stop(self) -> int:
        """Let each thread finish the mail it is sending, then end them; how many queued mails were left.
        Blocks (until the slowest mail being sent is handed over): run it off the event loop."""
        self._stopping = True
        left = 0
        while True:
            try:
                if self.queue.get_nowait() is not None:
                    left += 1
            except queue.Empty:
                break
        for _ in self._threads:
            self.queue.put(None)  # one each; a thread still sending takes its own when done
        for thread in self._threads:
            thread.join()
        with self._lock:
            return left + self._left


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
