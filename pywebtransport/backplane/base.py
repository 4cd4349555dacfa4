"""The backplane interface: rooms that span worker processes and hosts.

Theory of operation
-------------------
A :class:`Backplane` connects the :class:`~pywebtransport.rooms.Rooms` of several
instances of one app (worker processes on a host, servers on many hosts). Each instance
has an ``instance_id``, unique among the instances sharing the backplane.

Out: ``Room.send_datagram`` / ``Room.send_message`` fan out to the local members first,
then call :meth:`Backplane.publish` (room, :class:`~pywebtransport.backplane.codec.
EventKind`, payload). ``publish`` never waits: it puts one frame on a bounded queue
toward the backplane (at most ``BackplaneConfig.max_queue`` frames and
``max_queue_bytes`` bytes; per peer for the mesh) and a writer task sends it. A full
queue drops the event and counts it (``stats.dropped_full``); so does a backplane that
is down at that moment (``stats.dropped_down``: a peer not connected, Redis away) —
nothing is buffered without bound, and a broadcast is at most once, never late by an
outage. A payload above ``max_message`` (1 MiB, the ``/rooms`` route's limit) is not
published (``stats.too_large``).

In: an event from another instance reaches :meth:`BackplaneSink.deliver` —
``Rooms``, which fans it out to its *local* members only (never republished), with the
same per-member backpressure as a local broadcast. Events whose origin is this instance
are ignored (Redis pub/sub echoes a publisher's own messages). So each broadcast
reaches each member once: locally from its own instance, remotely from the others.

Counts: each instance tells the others its local member count per room (a coalesced
update on each join/leave, a snapshot when a peer appears or on each heartbeat);
:class:`RemoteCounts` keeps them per instance with an expiry time (the mesh: until the
peer's connection ends; Redis: heartbeat TTL), and a running total per room, so
``Rooms.count(name)`` is local + remote in O(1). Bounds: at most ``max_instances``
remote instances (a new one beyond is ignored and counted) and ``max_rooms`` rooms per
instance (beyond: ignored, counted).

A backplane is attached to one ``Rooms`` (``ServerApp(backplane=...)`` or
``app.backplane = ...`` before serving); ``ServerApp.serve`` calls :meth:`start` before
it listens and :meth:`close` after its shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import math
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Generic, Protocol, TypeVar

from pywebtransport.backplane.codec import (
    MAX_NAME,
    Bye,
    Counts,
    EventKind,
    Frame,
    Hello,
    RoomEvent,
    encode_counts,
)

__all__ = [
    "Backplane",
    "BackplaneConfig",
    "BackplaneError",
    "BackplaneSink",
    "BackplaneStats",
    "RemoteCounts",
    "SendQueue",
]

logger = logging.getLogger("pywebtransport.backplane")
T = TypeVar("T")


class BackplaneError(Exception):
    """A backplane that cannot be set up (a missing extra, a bad argument)."""


@dataclass(frozen=True, slots=True)
class BackplaneConfig:
    """Bounds and timers of a backplane (each listed in docs/limits.md)."""

    #: the largest payload published (the /rooms route's 1 MiB message limit)
    max_message: int = 1 << 20
    #: frames waiting to be sent (per peer for the mesh); beyond: dropped, counted
    max_queue: int = 1024
    #: bytes waiting to be sent (per peer for the mesh); beyond: dropped, counted
    max_queue_bytes: int = 8 << 20
    #: other instances whose counts are tracked; a new one beyond is ignored
    max_instances: int = 256
    #: rooms tracked per other instance; beyond: ignored, counted
    max_rooms: int = 10_000
    #: seconds between count snapshots (Redis heartbeat); the mesh uses its connections
    heartbeat: float = 5.0
    #: seconds after its last heartbeat an instance's counts expire (Redis)
    ttl: float = 15.0

    def __post_init__(self) -> None:
        if min(self.max_message, self.max_queue, self.max_queue_bytes) < 1:
            raise ValueError("backplane bounds must be positive")
        if self.max_instances < 1 or self.max_rooms < 1:
            raise ValueError("backplane bounds must be positive")
        if not 0 < self.heartbeat < self.ttl:
            raise ValueError("need 0 < heartbeat < ttl")

    @property
    def max_frame(self) -> int:
        """The largest frame body accepted from a peer: a full event, or a full COUNTS
        frame (4096 pairs of at most 260 bytes)."""
        return max(self.max_message + 2 * (MAX_NAME + 1) + 2, 2 + MAX_NAME + 5 + 4096 * 260)


@dataclass(slots=True)
class BackplaneStats:
    """Counters of one backplane (monotonic)."""

    published: int = 0  # events handed to the queue (per peer for the mesh)
    sent: int = 0  # frames written to the backplane
    delivered: int = 0  # events from other instances handed to the rooms
    own_ignored: int = 0  # events of this instance coming back (Redis echo)
    dropped_full: int = 0  # events dropped: the outgoing queue was full
    dropped_down: int = 0  # events dropped: the peer / Redis was not connected
    too_large: int = 0  # payloads above max_message, or names above 255 bytes
    frame_errors: int = 0  # malformed input from the backplane (its connection dropped)
    connects: int = 0  # connections made (to peers / Redis)
    connect_failures: int = 0  # attempts that failed (peer not up, Redis away)
    disconnects: int = 0  # connections lost
    instances_refused: int = 0  # other instances beyond max_instances
    rooms_refused: int = 0  # room counts beyond max_rooms per instance
    instances_expired: int = 0  # instances whose counts expired or were forgotten

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class BackplaneSink(Protocol):
    """What a backplane delivers to: :class:`~pywebtransport.rooms.Rooms`."""

    def deliver(self, event: RoomEvent) -> None: ...

    def local_counts(self) -> list[tuple[str, int]]: ...


class RemoteCounts:
    """Member counts of the other instances, per room, with a running total per room.

    Pure (times are passed in). ``update`` adds or replaces an instance's counts;
    ``forget`` drops an instance; ``expire(now)`` drops those not refreshed in time.
    """

    __slots__ = ("_expires", "_instances", "_totals", "max_instances", "max_rooms", "stats")

    def __init__(self, max_instances: int, max_rooms: int, stats: BackplaneStats) -> None:
        self.max_instances = max_instances
        self.max_rooms = max_rooms
        self.stats = stats
        self._instances: dict[str, dict[str, int]] = {}
        self._expires: dict[str, float] = {}
        self._totals: dict[str, int] = {}

    @property
    def instances(self) -> list[str]:
        return list(self._instances)

    def rooms(self) -> int:
        """Rooms with a member on another instance."""
        return len(self._totals)

    def members(self) -> int:
        """Members of every room on the other instances."""
        return sum(self._totals.values())

    def total(self, room: str) -> int:
        return self._totals.get(room, 0)

    def counts_of(self, origin: str) -> dict[str, int]:
        return dict(self._instances.get(origin, {}))

    def _set(self, counts: dict[str, int], room: str, count: int) -> None:
        old = counts.get(room, 0)
        if count == old:
            return
        if count and not old and len(counts) >= self.max_rooms:
            self.stats.rooms_refused += 1
            return
        total = self._totals.get(room, 0) - old + count
        if total > 0:
            self._totals[room] = total
        else:
            self._totals.pop(room, None)
        if count:
            counts[room] = count
        else:
            del counts[room]

    def update(
        self, origin: str, pairs: tuple[tuple[str, int], ...], *, replace: bool, expires: float
    ) -> bool:
        """Apply a COUNTS frame of ``origin``; False when ``origin`` is refused (more
        than ``max_instances`` instances)."""
        counts = self._instances.get(origin)
        if counts is None:
            if len(self._instances) >= self.max_instances:
                self.stats.instances_refused += 1
                return False
            counts = self._instances[origin] = {}
        self._expires[origin] = expires
        if replace:
            listed = {room for room, _ in pairs}
            for room in [room for room in counts if room not in listed]:
                self._set(counts, room, 0)
        for room, count in pairs:
            self._set(counts, room, count)
        return True

    def forget(self, origin: str) -> None:
        counts = self._instances.pop(origin, None)
        self._expires.pop(origin, None)
        if counts is None:
            return
        self.stats.instances_expired += 1
        for room in list(counts):
            self._set(counts, room, 0)

    def expire(self, now: float) -> list[str]:
        """Forget the instances whose counts expired at ``now``; their ids."""
        gone = [origin for origin, expires in self._expires.items() if expires <= now]
        for origin in gone:
            self.forget(origin)
        return gone


class SendQueue(Generic[T]):
    """Bounded items waiting for one writer: at most ``max_items`` items and
    ``max_bytes`` bytes (each item's size told by ``put``); ``put`` never waits and
    returns False when full."""

    __slots__ = ("_items", "_wakeup", "bytes", "max_bytes", "max_items")

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: deque[tuple[T, int]] = deque()
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, size: int) -> bool:
        if len(self._items) >= self.max_items or self.bytes + size > self.max_bytes:
            return False
        self._items.append((item, size))
        self.bytes += size
        self._wakeup.set()
        return True

    def clear(self) -> int:
        """Drop everything queued; how many items were dropped."""
        dropped = len(self._items)
        self._items.clear()
        self.bytes = 0
        return dropped

    async def take(self, limit: int = 64) -> list[T]:
        """Wait for items; up to ``limit`` of them, in order."""
        while not self._items:
            self._wakeup.clear()
            await self._wakeup.wait()
        batch: list[T] = []
        while self._items and len(batch) < limit:
            item, size = self._items.popleft()
            self.bytes -= size
            batch.append(item)
        return batch


class Backplane(ABC):
    """Connects the rooms of several instances; see the module docstring.

    Subclasses implement :meth:`start`, :meth:`close`, :meth:`_send_event` and
    :meth:`_send_counts`, and hand what they receive to :meth:`_on_frame`.
    """

    def __init__(self, instance_id: str, config: BackplaneConfig | None = None) -> None:
        if not 1 <= len(instance_id.encode()) <= MAX_NAME:
            raise BackplaneError(f"an instance id is 1..{MAX_NAME} bytes: {instance_id!r}")
        self.instance_id = instance_id
        self.config = config or BackplaneConfig()
        self.stats = BackplaneStats()
        self.remote = RemoteCounts(self.config.max_instances, self.config.max_rooms, self.stats)
        self._sink: BackplaneSink | None = None
        self._dirty: dict[str, int] = {}
        self._flush: asyncio.Handle | None = None

    # ------------------------------------------------------------------ the rooms' side

    def attach(self, sink: BackplaneSink) -> None:
        """Deliver remote events to ``sink`` (the app's ``Rooms``)."""
        self._sink = sink

    def publish(self, room: str, kind: EventKind, payload: bytes) -> bool:
        """Send one broadcast to the other instances; never waits. False when it was
        not published (too large, queue full, backplane down: each counted)."""
        if len(payload) > self.config.max_message or not 1 <= len(room.encode()) <= MAX_NAME:
            self.stats.too_large += 1
            return False
        return self._send_event(RoomEvent(self.instance_id, room, kind, payload))

    def local_count_changed(self, room: str, count: int) -> None:
        """Room ``room`` has ``count`` local members now; told to the others on the
        next turn of the event loop (changes in one turn go as one COUNTS frame)."""
        if not 1 <= len(room.encode()) <= MAX_NAME:
            return
        self._dirty[room] = count
        if self._flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop: the snapshot at start tells it
                return
            self._flush = loop.call_soon(self._flush_counts)

    def remote_members(self, room: str) -> int:
        """Members of ``room`` on the other instances (as last told)."""
        return self.remote.total(room)

    def snapshot(self) -> list[Counts]:
        """This instance's counts as COUNTS frames replacing what the others know."""
        counts = self._sink.local_counts() if self._sink is not None else []
        return list(encode_counts(self.instance_id, counts, replace=True))

    def status(self) -> dict[str, Any]:
        """JSON-ready: instances and rooms seen elsewhere, and the counters."""
        return {
            "instance": self.instance_id,
            "remote_instances": len(self.remote.instances),
            "remote_rooms": self.remote.rooms(),
            **self.stats.as_dict(),
        }

    # ------------------------------------------------------------------ lifecycle

    @abstractmethod
    async def start(self) -> None:
        """Begin: listen / connect in the background (a peer or broker that is not up
        yet is retried, never an error here)."""

    @abstractmethod
    async def close(self) -> None:
        """Stop every task and connection; say BYE where that is possible."""

    # ------------------------------------------------------------------ for subclasses

    @abstractmethod
    def _send_event(self, event: RoomEvent) -> bool:
        """Queue ``event`` for the other instances; never waits."""

    @abstractmethod
    def _send_counts(self, frames: list[Counts]) -> None:
        """Queue COUNTS frames for the other instances; never waits."""

    def _flush_counts(self) -> None:
        self._flush = None
        dirty, self._dirty = self._dirty, {}
        if dirty:
            self._send_counts(
                list(encode_counts(self.instance_id, list(dirty.items()), replace=False))
            )

    def _cancel_flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._dirty.clear()

    def _on_frame(self, item: Frame, expires: float = math.inf) -> str | None:
        """Act on one frame from another instance; its origin (None for our own)."""
        if item.origin == self.instance_id:
            if isinstance(item, RoomEvent):
                self.stats.own_ignored += 1
            return None
        if isinstance(item, RoomEvent):
            if self._sink is not None:
                self.stats.delivered += 1
                try:
                    self._sink.deliver(item)
                except Exception:  # a member's failure never stops the backplane
                    logger.exception("backplane: delivering to room %r failed", item.room)
        elif isinstance(item, Counts):
            self.remote.update(item.origin, item.counts, replace=item.replace, expires=expires)
        elif isinstance(item, Bye):
            self.remote.forget(item.origin)
        elif isinstance(item, Hello):
            self._on_hello(item.origin)
        return item.origin

    def _on_hello(self, origin: str) -> None:  # noqa: B027 (a hook: the mesh needs none)
        """Another instance appeared: Redis answers with a snapshot; the mesh sends its
        own when it dials that instance."""
