"""Backplanes: rooms (:mod:`pywebtransport.rooms`) that span worker processes and hosts.

* :class:`Backplane` — the interface (:mod:`pywebtransport.backplane.base`, which
  explains how events and member counts travel, and what is dropped when);
* :class:`MeshBackplane` — the workers of one host, over AF_UNIX sockets, no broker
  (:mod:`pywebtransport.backplane.mesh`);
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

__all__ = [
    "Backplane",
    "BackplaneConfig",
    "BackplaneError",
    "BackplaneSink",
    "BackplaneStats",
    "EventKind",
    "FrameError",
    "MeshBackplane",
    "RemoteCounts",
    "RoomEvent",
]
