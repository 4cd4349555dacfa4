"""Work done ahead, when the event loop is idle: the ephemeral keys of the next handshakes.

Theory of operation
-------------------
A handshake takes its ephemeral keys from :data:`quic.tls.groups.KEYS_AHEAD` (see
"Keys made ahead" there); what it took is made again here, off the critical path. After
every transmit the pump calls :func:`after_transmit`, which is one attribute test
unless keys were taken since the last refill; then it queues :func:`_refill` once
(one queued at a time per process, on whichever loop queued it, unless that loop was
closed before it ran).

The refill runs when the loop has nothing else to run, on a timer (:data:`IDLE_DELAY`
after the transmit) rather than from the ready queue, which the pump reads to decide
whether a reply leaves at once ("Replies made at once" in :mod:`quic.aio.pump`): a
callback waiting there would make every read look busy. When the timer fires the loop
has polled its sockets and runs this iteration's callbacks; if others are still queued
behind it (:func:`quic.aio.udp.ready_queue` on asyncio's own loops), the loop is busy
and the refill tries again later, each delay twice the one before, at most
:data:`IDLE_TRIES` times (0.5 ms to 64 ms: a busy loop sees about 60 tries a second,
not 2,000). So a client makes its next keys while the server works on its ClientHello,
a server once its flight is out; a loop that never goes idle (a server under a burst of
handshakes) gives up and its handshakes make their keys in line, as without a reserve.
On loops whose ready queue is not visible (uvloop) the refill runs when the timer fires.

Nothing escapes the callback: a failure to make keys is logged and the handshakes make
theirs in line.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from quic.tls.groups import KEYS_AHEAD

__all__ = ["IDLE_DELAY", "IDLE_TRIES", "after_transmit"]

logger = logging.getLogger("quic")

#: Times the refill is put off because the loop was busy before it gives up until the
#: next transmit.
IDLE_TRIES = 8

#: Seconds after a transmit at which the refill first looks for an idle loop (doubled
#: at each try after): a client's ClientHello is answered, and a server's flight is
#: acknowledged, a round trip and a handshake step later (milliseconds on loopback).
IDLE_DELAY = 0.0005

_queued: asyncio.AbstractEventLoop | None = None  # the loop a refill is queued on


def after_transmit(loop: asyncio.AbstractEventLoop, ready: collections.deque[Any] | None) -> None:
    """Queue a refill of the key reserve if keys were taken from it (see the module
    docstring); ``ready``: the loop's ready queue, or None where it is not visible."""
    global _queued
    if not KEYS_AHEAD.wanted or (_queued is not None and not _queued.is_closed()):
        return
    _queued = loop
    loop.call_later(IDLE_DELAY, _refill, loop, ready, 1)


def _refill(
    loop: asyncio.AbstractEventLoop, ready: collections.deque[Any] | None, tries: int
) -> None:
    global _queued
    if ready and tries < IDLE_TRIES:  # others run after this callback: busy
        loop.call_later(IDLE_DELAY * (1 << tries), _refill, loop, ready, tries + 1)
        return
    _queued = None
    if ready:
        return  # never idle: the handshakes make their keys in line until next time
    try:
        KEYS_AHEAD.refill()
    except Exception:  # pragma: no cover - cryptography failing to make a key
        logger.exception("making ephemeral keys ahead failed")
