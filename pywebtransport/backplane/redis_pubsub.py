"""RedisBackplane: rooms across hosts through Redis pub/sub (``pip install
pywebtransport[redis]``).

Theory of operation
-------------------
Channels (``prefix`` is ``channel_prefix``, default ``"pwt"``):

``<prefix>:room:<name>``
    the events (:class:`~pywebtransport.backplane.codec.RoomEvent` bodies) of room
    ``name``. One channel per room, subscribed while this instance has a member in the
    room and unsubscribed when its last one leaves: Redis sends an instance the traffic
    of its own rooms only, so the work of each instance grows with its rooms, not with
    every room of the cluster (one pattern subscription would deliver every room's
    traffic to every instance, to be thrown away there).
``<prefix>:control``
    HELLO, COUNTS and BYE bodies of every instance.

Member counts live in the instances, not in Redis: each publishes a snapshot of its
local counts when it connects and every ``BackplaneConfig.heartbeat`` seconds (its
heartbeat), an update on each join/leave (coalesced per loop turn), a snapshot in answer
to another's HELLO (so a newcomer learns the counts at once), and BYE when it closes.
Each instance keeps the others' counts until ``ttl`` seconds after their last COUNTS
frame (:class:`~pywebtransport.backplane.base.RemoteCounts`): an instance that dies
without BYE leaves the totals within ``ttl`` + ``heartbeat``. Redis keeps no state of
ours, so a restarted Redis (``--save ''``) loses nothing the backplane needs.

One task runs the connection: connect (a publishing client and a pub/sub connection,
redis-py's own retries off), subscribe to control and to the rooms with local members,
publish HELLO and a snapshot; then four loops until one fails — read messages, write
the :class:`~pywebtransport.backplane.base.SendQueue` (pipelined PUBLISH), the heartbeat
(a snapshot every ``heartbeat`` seconds) and the subscription changes (a room channel
subscribed when the room gets its first local member, unsubscribed after its last).
Every teardown is bounded (``CLOSE_TIMEOUT`` per step): the four loops cancelled, then
the pub/sub connection and the client closed. A redis-py read that does not end on its
cancellation, or a close that never returns, cannot hang :meth:`RedisBackplane.close` or
the reconnection (seen once: a CI run's ``close`` waited with no timer left); what did
not end in time is left to end when its connection is closed, its outcome consumed.
When Redis goes away, everything is closed and the task reconnects after a
:class:`~pywebtransport.clients.Backoff` delay (0.1 s doubling to 5 s, with jitter),
forever, until :meth:`RedisBackplane.close`. Another task, from
:meth:`RedisBackplane.start` to :meth:`RedisBackplane.close`, forgets every
``heartbeat`` seconds the instances not heard for ``ttl``.

**While Redis is down** (the outage rule): broadcasts still reach the local members;
for the other instances they are dropped at once and counted
(``stats.dropped_down``), as are the frames that were queued when the connection broke.
Nothing is buffered for later: after the reconnection new broadcasts flow again, and
each broadcast is delivered at most once. The other instances' counts are not heard
during the outage and expire ``ttl`` seconds into it; after the reconnection HELLO and
the snapshots it prompts bring them back.

redis-py is imported when a RedisBackplane is made (a clear
:class:`~pywebtransport.backplane.base.BackplaneError` when the extra is missing). The
instance id defaults to ``<host>:<pid>:<random>``, made again at :meth:`start` in a
process forked after construction, so workers never share one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import random
import secrets
import socket
from typing import Any

from pywebtransport.backplane.base import Backplane, BackplaneConfig, BackplaneError, SendQueue
from pywebtransport.backplane.codec import (
    Bye,
    Counts,
    FrameError,
    Hello,
    RoomEvent,
    decode_body,
    encode_body,
)
from pywebtransport.clients import Backoff

__all__ = ["CLOSE_TIMEOUT", "REDIS_BACKOFF", "RedisBackplane"]

logger = logging.getLogger("pywebtransport.backplane")

#: how the backplane retries Redis after it went away
REDIS_BACKOFF = Backoff(base=0.1, factor=2.0, max_delay=5.0, jitter=0.5)
_CONNECT_TIMEOUT = 5.0
_BYE_TIMEOUT = 1.0
#: the longest each step of a teardown is waited for (see the module docstring)
CLOSE_TIMEOUT = 2.0


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a finished task's outcome (no "exception was never retrieved")."""
    if not task.cancelled():
        task.exception()


async def _end(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    """Cancel ``tasks`` and wait for them, at most ``timeout`` seconds; those that have
    not ended by then are left, their outcome consumed when they end."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in done:
        _consume(task)
    for task in pending:
        logger.warning("backplane: a Redis task did not end on its cancellation: %r", task)
        task.add_done_callback(_consume)


async def _close_quietly(closable: Any) -> None:
    """``await closable.aclose()``, at most ``CLOSE_TIMEOUT`` seconds, errors ignored."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await closable.aclose()


def _import_redis() -> Any:
    try:
        return importlib.import_module("redis.asyncio")
    except ImportError as exc:
        raise BackplaneError(
            "RedisBackplane needs redis-py: pip install 'pywebtransport[redis]'"
        ) from exc


def _default_id() -> str:
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{secrets.token_hex(4)}"


class RedisBackplane(Backplane):
    """Rooms across instances through Redis at ``url`` (``redis://host:port/db``); see
    the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        channel_prefix: str = "pwt",
        instance_id: str | None = None,
        config: BackplaneConfig | None = None,
        backoff: Backoff = REDIS_BACKOFF,
    ) -> None:
        self._redis = _import_redis()
        self._redis.connection.parse_url(url)  # a bad URL fails here (ValueError)
        super().__init__(instance_id or _default_id(), config)
        self.url = url
        self.backoff = backoff
        self._own_id = instance_id is not None
        self._pid = os.getpid()
        self._prefix = channel_prefix.encode()
        self._control = self._prefix + b":control"
        self._room_prefix = self._prefix + b":room:"
        self._queue: SendQueue[tuple[bytes, bytes]] = SendQueue(
            self.config.max_queue, self.config.max_queue_bytes
        )
        self._wanted: set[str] = set()  # rooms with a local member: subscribed
        self._subscribed: set[str] = set()
        self._resubscribe = asyncio.Event()
        self._snapshot_due = False
        self._rng = random.Random()
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._client: Any = None
        self._connected = asyncio.Event()
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def queued(self) -> int:
        """Frames waiting to be published."""
        return len(self._queue)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until Redis is connected and subscribed (TimeoutError after ``timeout``)."""
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    def channel(self, room: str) -> bytes:
        """The pub/sub channel of room ``room``."""
        return self._room_prefix + room.encode()

    def status(self) -> dict[str, Any]:
        return {**super().status(), "connected": self.connected, "queued": self.queued()}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._task is not None:
            return
        if not self._own_id and os.getpid() != self._pid:  # forked: an id of our own
            self.instance_id, self._pid = _default_id(), os.getpid()
        self._closing = False
        self._wanted = {room for room, count in self._local_counts() if count}
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        self._expiry = loop.create_task(self._expire())

    async def close(self) -> None:
        self._closing = True
        self._cancel_flush()
        client = self._client
        if client is not None and self.connected:
            with contextlib.suppress(Exception):
                body = encode_body(Bye(self.instance_id))
                await asyncio.wait_for(client.publish(self._control, body), _BYE_TIMEOUT)
        tasks = [task for task in (self._task, self._expiry) if task is not None]
        self._task = self._expiry = None
        # the connection task's own teardown takes at most three steps of CLOSE_TIMEOUT
        await _end(tasks, 4 * CLOSE_TIMEOUT)
        self._queue.clear()

    # ------------------------------------------------------------------ out

    def _send_event(self, event: RoomEvent) -> bool:
        return self._put(self.channel(event.room), encode_body(event))

    def _send_counts(self, frames: list[Counts]) -> None:
        for item in frames:
            self._put(self._control, encode_body(item))

    def _put(self, channel: bytes, body: bytes) -> bool:
        if not self.connected:
            self.stats.dropped_down += 1
            return False
        if not self._queue.put((channel, body), len(body)):
            self.stats.dropped_full += 1
            return False
        self.stats.published += 1
        return True

    def local_count_changed(self, room: str, count: int) -> None:
        super().local_count_changed(room, count)
        wanted = count > 0
        if wanted != (room in self._wanted):
            if wanted:
                self._wanted.add(room)
            else:
                self._wanted.discard(room)
            self._resubscribe.set()

    def _on_hello(self, origin: str) -> None:
        if not self._snapshot_due:  # many HELLOs in one turn: one snapshot
            self._snapshot_due = True
            asyncio.get_running_loop().call_soon(self._send_snapshot)

    def _send_snapshot(self) -> None:
        self._snapshot_due = False
        self._send_counts(self.snapshot())

    def _local_counts(self) -> list[tuple[str, int]]:
        return self._sink.local_counts() if self._sink is not None else []

    # ------------------------------------------------------------------ the connection

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            client = self._redis.Redis.from_url(
                self.url,
                retry=None,  # no retries inside redis-py: this loop reconnects
                socket_connect_timeout=_CONNECT_TIMEOUT,
                socket_timeout=_CONNECT_TIMEOUT,  # a Redis that hangs fails a PUBLISH
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await self._connect(client, pubsub)
                failures = 0
                await self._serve(client, pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis.ConnectionError, OSError, TimeoutError...
                if self.connected:
                    self.stats.disconnects += 1
                    logger.warning("backplane: lost Redis at %s: %s", self.url, exc)
                else:
                    self.stats.connect_failures += 1
                    logger.debug("backplane: cannot reach Redis at %s: %r", self.url, exc)
                failures += 1
            finally:
                self._connected.clear()
                self.stats.dropped_down += self._queue.clear()  # never published: lost
                self._client = None
                self._subscribed.clear()
                await _close_quietly(pubsub)
                await _close_quietly(client)
            await asyncio.sleep(self.backoff.delay(max(1, failures), self._rng))

    async def _connect(self, client: Any, pubsub: Any) -> None:
        async with asyncio.timeout(_CONNECT_TIMEOUT):
            await client.ping()
            rooms = sorted(self._wanted)
            await pubsub.subscribe(self._control, *(self.channel(room) for room in rooms))
            self._subscribed = set(rooms)
        self._client = client
        self._connected.set()
        self.stats.connects += 1
        self._put(self._control, encode_body(Hello(self.instance_id)))
        self._send_snapshot()

    async def _serve(self, client: Any, pubsub: Any) -> None:
        tasks = [
            asyncio.ensure_future(self._read(pubsub)),
            asyncio.ensure_future(self._write(client)),
            asyncio.ensure_future(self._heartbeat()),
            asyncio.ensure_future(self._subscriptions(pubsub)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises what ended it
            raise ConnectionError("the Redis connection ended")
        finally:
            await _end(tasks, CLOSE_TIMEOUT)

    async def _read(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is None or message.get("type") != "message":
                continue
            data = message["data"]
            if not isinstance(data, bytes) or len(data) > self.config.max_frame:
                self.stats.frame_errors += 1
                continue
            try:
                item = decode_body(data)
            except FrameError:
                self.stats.frame_errors += 1
                continue
            expected = self.channel(item.room) if isinstance(item, RoomEvent) else self._control
            if message["channel"] != expected:  # events on their room's channel, the rest
                self.stats.frame_errors += 1  # on control: anything else is not ours
                continue
            self._on_frame(item, expires=loop.time() + self.config.ttl)

    async def _write(self, client: Any) -> None:
        while True:
            batch = await self._queue.take()
            pipe = client.pipeline(transaction=False)
            for channel, body in batch:
                pipe.publish(channel, body)
            await pipe.execute()
            self.stats.sent += len(batch)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat)
            self._send_snapshot()

    async def _expire(self) -> None:
        """Forget the instances not heard for ``ttl`` — connected to Redis or not."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.heartbeat)
            self.remote.expire(loop.time())

    async def _subscriptions(self, pubsub: Any) -> None:
        """Follow ``_wanted``: subscribe to rooms that got a local member, unsubscribe
        from those that lost their last one."""
        while True:
            await self._resubscribe.wait()
            self._resubscribe.clear()
            add = sorted(self._wanted - self._subscribed)
            remove = sorted(self._subscribed - self._wanted)
            if add:
                await pubsub.subscribe(*(self.channel(room) for room in add))
                self._subscribed.update(add)
            if remove:
                await pubsub.unsubscribe(*(self.channel(room) for room in remove))
                self._subscribed.difference_update(remove)
