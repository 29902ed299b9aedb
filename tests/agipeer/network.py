"""The scripted Asterisk 22 peer over TCP: what res_agi's launch_netscript() does for
``AGI(agi://host:port/script,args...)``.

Asterisk connects, writes ``agi_network: yes`` and ``agi_network_script: <script>``,
then the same header block as for a process AGI, and answers every command line
with the same :class:`~tests.agipeer.commands.Session` as the pipe peer. Instead of
SIGHUP a live channel that hangs up gets a ``HANGUP`` line. It waits for the
service to close the connection: :attr:`NetRun.held` is how long the channel was
held. Everything is bounded by ``timeout``.

:attr:`NetRun.agistatus` is what res_agi would set: ``FAILURE`` when the connection
could not be made or the service sent a line starting with ``failure`` (run_agi()'s
"inability to execute" case: Asterisk then says ``HANGUP`` and closes, and the dialplan
falls back), ``SUCCESS`` when the service closed the connection, however early.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.agipeer.commands import Session, find_command
from tests.agipeer.peer import AgiPeer
from tests.agipeer.protocol import parse_agi_args


@dataclass
class NetRun:
    """What one FastAGI session did."""

    connected: bool
    commands: list[str] = field(default_factory=list)
    garbage: list[str] = field(default_factory=list)
    exchanges: list[tuple[str, str]] = field(default_factory=list)
    held: float = 0.0
    """Seconds from connecting until the service closed the connection."""
    timed_out: bool = False
    closed_by_service: bool = False
    told_failure: bool = False
    """The service sent a line starting with ``failure``: Asterisk closed, AGISTATUS=FAILURE."""

    @property
    def agistatus(self) -> str:
        if not self.connected or self.told_failure:
            return "FAILURE"
        return "SUCCESS" if self.closed_by_service else ""

    @property
    def ok(self) -> bool:
        return self.connected and self.closed_by_service and not self.timed_out


def network_headers(peer: AgiPeer, url: str) -> list[str]:
    """The peer's header block as launch_netscript() sends it for ``url`` (agi://host:port/script)."""
    script = url.split("://", 1)[1].partition("/")[2]
    lines = ["agi_network: yes\n", f"agi_network_script: {script}\n"]
    for line in peer.header_lines:
        lines.append(f"agi_request: {url}\n" if line.startswith("agi_request: ") else line)
    return lines


async def converse(
    peer: AgiPeer,
    host: str,
    port: int,
    *,
    url: str | None = None,
    timeout: float = 10,
    hangup_after: int | None = None,
    raw: bytes | None = None,
    half_close: bool = False,
    read_nothing: bool = False,
) -> NetRun:
    """One session. ``hangup_after``: a ``HANGUP`` line after that many replies (0: after the
    headers); ``raw``: send these bytes instead of a header block; ``half_close``: shut our
    writing side after sending; ``read_nothing``: never read (a slow reader)."""
    url = url or f"agi://{host}:{port}/missed"
    run = NetRun(connected=False)
    start = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return run
    run.connected = True
    session = Session(peer.header_lines, peer.variables, peer.astdb, dead=peer.dead)
    try:
        try:
            writer.write(raw if raw is not None else "".join(network_headers(peer, url)).encode("utf-8"))
            if hangup_after == 0:
                writer.write(b"HANGUP\n")
                session.dead = True
            if half_close:
                writer.write_eof()
            await writer.drain()
        except OSError:  # reset or shut on us (a service that died, or refused garbage) while the headers went
            run.closed_by_service = True
            return run
        if read_nothing:
            await asyncio.sleep(timeout)
            run.timed_out = True
            return run
        replies = 0
        while True:
            remaining = timeout - (time.monotonic() - start)
            if remaining <= 0:
                run.timed_out = True
                break
            try:
                line = await asyncio.wait_for(reader.readline(), remaining)
            except asyncio.TimeoutError:
                run.timed_out = True
                break
            except ConnectionError:
                run.closed_by_service = True
                break
            if not line:
                run.closed_by_service = True
                break
            text = line.rstrip(b"\n").decode("utf-8", "replace")
            if text[:7].lower() == "failure":  # res_agi: strncasecmp(buf, "failure", 7)
                run.told_failure = True
                writer.write(b"HANGUP\n")  # AGISIGHUP's default, then fclose(): a FIN, not a reset
                writer.close()
                try:
                    await asyncio.wait_for(writer.wait_closed(), max(0.1, remaining))
                except (asyncio.TimeoutError, ConnectionError):
                    pass
                break
            command, reply = session.handle(text)
            (run.commands if command else run.garbage).append(text)
            run.exchanges.append((text, reply))
            if half_close:
                continue
            if peer.reply_delay:
                await asyncio.sleep(peer.reply_delay)
            writer.write(reply.encode("utf-8"))
            replies += 1
            if hangup_after is not None and replies == hangup_after and not session.dead:
                writer.write(b"HANGUP\n")
                session.dead = True
            try:
                await writer.drain()
            except ConnectionError:
                pass
    finally:
        run.held = time.monotonic() - start
        writer.transport.abort()
    return run


def run_network(peer: AgiPeer, host: str, port: int, **kwargs: object) -> NetRun:
    return asyncio.run(converse(peer, host, port, **kwargs))  # type: ignore[arg-type]


def run_many(
    peers: Sequence[AgiPeer], host: str, port: int, *, connections: int | None = None, **kwargs: object
) -> list[NetRun]:
    """Every peer's session, ``connections`` at a time (all at once when None); results in order."""

    async def all_of() -> list[NetRun]:
        gate = asyncio.Semaphore(connections or len(peers) or 1)

        async def one(peer: AgiPeer) -> NetRun:
            async with gate:
                return await converse(peer, host, port, **kwargs)  # type: ignore[arg-type]

        return list(await asyncio.gather(*(one(p) for p in peers)))

    return asyncio.run(all_of())


def is_command(line: str) -> bool:
    return find_command(parse_agi_args(line)) is not None
