"""MeshBackplane: the rooms of the worker processes of one host, without a broker.

Theory of operation
-------------------
Worker ``i`` of ``N`` listens on the AF_UNIX stream socket ``directory/w<i>.sock`` and
dials every other worker's socket. Each ordered pair has its own connection: worker i
*writes* its frames (:mod:`pywebtransport.backplane.codec`, length-prefixed) on the
connection it dialed to j, and *reads* j's frames on the connection j dialed to it.
No connection carries both directions, so there is no tie to break when two workers
dial each other at once.

Dialing (one task per peer): connect; on success send HELLO and a snapshot of the
local counts, then write what the peer's :class:`~pywebtransport.backplane.base.
SendQueue` holds until the connection ends (the peer closes it or a write fails), and
a fresh snapshot every ``heartbeat`` seconds (so a lost update heals). On failure —
the peer is not up yet, or it went away and is restarting — count it and retry after a
short backoff (:class:`~pywebtransport.clients.Backoff`, 50 ms doubling to 1 s). While
a peer is not connected, an event for it is dropped at once and counted
(``stats.dropped_down``): a worker that is gone costs a counter and a retry timer,
never memory.

Accepting: each accepted connection is read with a
:class:`~pywebtransport.backplane.codec.FrameReader`: its first frame must be HELLO
(which names the peer), then COUNTS and EVENT frames go to
:meth:`~pywebtransport.backplane.base.Backplane._on_frame`. When it ends (EOF, or a
malformed frame: counted, connection closed) the peer's counts are forgotten — a dead
worker's members leave the totals at once. At most ``workers - 1`` accepted
connections are read at a time plus one spare for a restarting peer whose old
connection has not ended yet; more are closed at once.

The socket directory should be private to the app (the supervisor makes one, mode
0700); AF_UNIX paths are limited to about 100 bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from pathlib import Path

from pywebtransport.backplane.base import Backplane, BackplaneConfig, BackplaneError, SendQueue
from pywebtransport.backplane.codec import (
    Bye,
    Counts,
    FrameError,
    FrameReader,
    Hello,
    RoomEvent,
    encode_frame,
    encode_frames,
)
from pywebtransport.clients import Backoff

__all__ = ["MESH_BACKOFF", "MeshBackplane", "socket_path"]

logger = logging.getLogger("pywebtransport.backplane")

#: how a worker retries a peer that is not up (yet)
MESH_BACKOFF = Backoff(base=0.05, factor=2.0, max_delay=1.0, jitter=0.5)
_READ_CHUNK = 1 << 16


def socket_path(directory: str | os.PathLike[str], worker: int) -> Path:
    """Where worker ``worker`` listens."""
    return Path(directory) / f"w{worker}.sock"


class _Peer:
    """The connection this worker dialed to one other worker."""

    __slots__ = ("connected", "index", "queue", "task")

    def __init__(self, index: int, config: BackplaneConfig) -> None:
        self.index = index
        self.queue: SendQueue[bytes] = SendQueue(config.max_queue, config.max_queue_bytes)
        self.connected = False
        self.task: asyncio.Task[None] | None = None


class MeshBackplane(Backplane):
    """Worker ``worker`` (0-based) of ``workers``, meeting the others in ``directory``;
    see the module docstring."""

    def __init__(
        self,
        worker: int,
        workers: int,
        directory: str | os.PathLike[str],
        *,
        config: BackplaneConfig | None = None,
        backoff: Backoff = MESH_BACKOFF,
        instance_id: str | None = None,
    ) -> None:
        if not 0 <= worker < workers:
            raise BackplaneError(f"worker {worker} is not in 0..{workers - 1}")
        super().__init__(instance_id or f"w{worker}", config)
        self.worker = worker
        self.workers = workers
        self.directory = Path(directory)
        self.path = socket_path(directory, worker)
        self.backoff = backoff
        self._rng = random.Random()
        self._peers = [_Peer(j, self.config) for j in range(workers) if j != worker]
        self._server: asyncio.AbstractServer | None = None
        self._incoming: dict[asyncio.StreamWriter, str | None] = {}
        self._current: dict[str, asyncio.StreamWriter] = {}
        self._closing = False

    @property
    def connected_peers(self) -> int:
        """Peers this worker can send to right now."""
        return sum(peer.connected for peer in self._peers)

    @property
    def incoming_connections(self) -> int:
        return len(self._incoming)

    def queued(self) -> int:
        """Frames waiting in every peer's queue."""
        return sum(len(peer.queue) for peer in self._peers)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._server is not None:
            return
        self._closing = False
        with contextlib.suppress(FileNotFoundError):  # left by a worker that died
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))
        loop = asyncio.get_running_loop()
        for peer in self._peers:
            peer.task = loop.create_task(self._dial(peer))

    async def close(self) -> None:
        self._closing = True
        self._cancel_flush()
        tasks = [peer.task for peer in self._peers if peer.task is not None]
        for peer in self._peers:
            peer.task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in list(self._incoming):
            writer.close()
        self._incoming.clear()
        self._current.clear()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # ------------------------------------------------------------------ out

    def _send_event(self, event: RoomEvent) -> bool:
        return self._queue_all(encode_frame(event))

    def _send_counts(self, items: list[Counts]) -> None:
        self._queue_all(encode_frames(items))

    def _queue_all(self, data: bytes) -> bool:
        stats = self.stats
        every = True
        for peer in self._peers:
            if not peer.connected:
                stats.dropped_down += 1
                every = False
            elif peer.queue.put(data, len(data)):
                stats.published += 1
            else:
                stats.dropped_full += 1
                every = False
        return every

    async def _dial(self, peer: _Peer) -> None:
        path = str(socket_path(self.directory, peer.index))
        failures = 0
        while not self._closing:
            try:
                reader, writer = await asyncio.open_unix_connection(path)
            except OSError:
                self.stats.connect_failures += 1
                failures += 1
                await asyncio.sleep(self.backoff.delay(failures, self._rng))
                continue
            failures = 0
            self.stats.connects += 1
            try:
                await self._run_peer(peer, reader, writer)
            except (OSError, ConnectionError) as exc:
                logger.debug("backplane peer w%d: %r", peer.index, exc)
            finally:
                peer.connected = False
                self.stats.dropped_down += peer.queue.clear()  # never sent: lost
                if not self._closing:
                    self.stats.disconnects += 1
                writer.close()
            await asyncio.sleep(self.backoff.delay(1, self._rng))

    async def _run_peer(
        self, peer: _Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(encode_frames([Hello(self.instance_id), *self.snapshot()]))
        peer.connected = True
        pump = asyncio.ensure_future(self._pump(peer, writer))
        watch = asyncio.ensure_future(reader.read(1))  # the peer never writes: EOF = gone
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self._closing and not pump.done():
                with contextlib.suppress(Exception):
                    writer.write(encode_frame(Bye(self.instance_id)))
                    await asyncio.wait_for(writer.drain(), 0.5)
            for task in (pump, watch):
                task.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)

    async def _pump(self, peer: _Peer, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        next_snapshot = loop.time() + self.config.heartbeat
        while True:
            timeout = max(0.0, next_snapshot - loop.time())
            try:
                batch = await asyncio.wait_for(peer.queue.take(), timeout)
            except TimeoutError:
                batch = [encode_frames(self.snapshot())]
                next_snapshot = loop.time() + self.config.heartbeat
            writer.write(b"".join(batch))
            await writer.drain()
            self.stats.sent += len(batch)

    # ------------------------------------------------------------------ in

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing or len(self._incoming) >= max(1, self.workers):
            writer.close()
            return
        self._incoming[writer] = None
        decoder = FrameReader(self.config.max_frame)
        try:
            while data := await reader.read(_READ_CHUNK):
                for item in decoder.feed(data):
                    self._on_incoming(writer, item)
        except FrameError as exc:
            self.stats.frame_errors += 1
            logger.warning("backplane: malformed frame from a peer: %s", exc)
        except (OSError, ConnectionError):
            pass
        finally:
            origin = self._incoming.pop(writer, None)
            if origin is not None and self._current.get(origin) is writer:
                del self._current[origin]
                self.remote.forget(origin)
                if not self._closing:
                    self.stats.disconnects += 1
            writer.close()

    def _on_incoming(
        self, writer: asyncio.StreamWriter, item: Hello | RoomEvent | Counts | Bye
    ) -> None:
        origin = self._incoming.get(writer)
        if origin is None:
            if not isinstance(item, Hello):
                raise FrameError("the first frame of a peer must be HELLO")
            origin = item.origin
            self._incoming[writer] = origin
            self._current[origin] = writer  # a restarted peer replaces its old connection
            self.remote.forget(origin)  # its snapshot follows
            return
        if item.origin != origin:
            raise FrameError("a peer spoke for another instance")
        self._on_frame(item)
