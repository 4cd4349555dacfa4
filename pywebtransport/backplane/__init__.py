"""Backplanes: rooms (:mod:`pywebtransport.rooms`) that span worker processes and hosts.

* :class:`Backplane` — the interface (:mod:`pywebtransport.backplane.base`, which
  explains how events and member counts travel, and what is dropped when);
* :class:`MeshBackplane` — the workers of one host, over AF_UNIX sockets, no broker
  (:mod:`pywebtransport.backplane.mesh`);
* :class:`RedisBackplane` — hosts, through Redis pub/sub with redis-py's asyncio client
  (``pip install pywebtransport[redis]``; :mod:`pywebtransport.backplane.redis_pubsub`,
  which also says what happens to broadcasts while Redis is down);
* the wire format both use: :mod:`pywebtransport.backplane.codec`.

``ServerApp(backplane=...)`` (or ``app.backplane = ...`` before serving) attaches one to
the app's rooms; ``serve`` starts it before listening and closes it after shutdown.
"""

from __future__ import annotations

from pywebtransport.backplane.base import (
    Backplane,
    BackplaneConfig,
    BackplaneError,
    BackplaneSink,
    BackplaneStats,
    RemoteCounts,
)
from pywebtransport.backplane.codec import EventKind, FrameError, RoomEvent
from pywebtransport.backplane.mesh import MeshBackplane
from pywebtransport.backplane.redis_pubsub import RedisBackplane

__all__ = [
    "Backplane",
    "BackplaneConfig",
    "BackplaneError",
    "BackplaneSink",
    "BackplaneStats",
    "EventKind",
    "FrameError",
    "MeshBackplane",
    "RedisBackplane",
    "RemoteCounts",
    "RoomEvent",
]
