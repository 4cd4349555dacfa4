"""UDP socket helpers of the asyncio driver.

Theory of operation
-------------------
asyncio's datagram transport reads one datagram per event-loop iteration and calls
``datagram_received`` for it. That works everywhere, and it is the fallback. On a
selector event loop the driver can do better: :func:`take_over_reading` replaces the
transport's reader with one that drains up to a batch of datagrams per wake-up, so a
burst is fed to the endpoint before anything is transmitted (one transmit pass per
burst instead of one per datagram).

That take-over needs three asyncio internals, and this module is the only place that
touches them (see :func:`take_over_reading`). Everything else here is public API:
socket buffer sizing and reading a batch from a raw socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["RECEIVE_BATCH", "enlarge_buffers", "read_batch", "take_over_reading"]

logger = logging.getLogger("quic")

#: Datagrams read per wake-up of the batched reader (and fed before one transmit).
RECEIVE_BATCH = 32
#: Requested UDP socket buffer sizes (the kernel caps them at net.core.rmem_max/wmem_max).
SOCKET_BUFFER = 4 * 1024 * 1024


def enlarge_buffers(transport: asyncio.BaseTransport) -> None:
    """Room for a whole congestion window of bursts: with the default (~200 KB, about 90
    datagrams) the kernel drops packets the peer's window allows."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


def take_over_reading(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.BaseTransport,
    on_readable: Callable[[socket.socket], None],
) -> bool:
    """Read the transport's socket ourselves; True if done, False to keep the fallback.

    The one function of the driver that uses asyncio internals:

    * ``transport._sock`` — the raw socket (``get_extra_info("socket")`` gives a
      wrapper that must not be read from);
    * ``transport.pause_reading()`` — the transport unregisters its own reader (closing
      the transport still unregisters the file descriptor);
    * ``loop._add_reader`` — registers ``on_readable(sock)`` for the descriptor; the
      public ``add_reader`` refuses a descriptor owned by a transport.

    Call it after ``connection_made`` returned (the transport registers its reader
    right after that callback). When any of these is missing or refuses — uvloop, the
    proactor loop on Windows, a future asyncio — nothing is changed and False is
    returned: the transport keeps calling ``datagram_received``, one datagram per loop
    iteration, which is correct, only slower under bursts.
    """
    raw = getattr(transport, "_sock", None)
    pause = getattr(transport, "pause_reading", None)
    add_reader = getattr(loop, "_add_reader", None)  # selector loops only
    if not isinstance(raw, socket.socket) or pause is None or add_reader is None:
        return False
    if transport.is_closing():
        return False
    try:
        pause()
        add_reader(raw.fileno(), on_readable, raw)
    except (NotImplementedError, RuntimeError, ValueError, OSError, AttributeError):
        logger.debug("batched UDP reading unavailable; using the transport's reader")
        resume = getattr(transport, "resume_reading", None)
        if resume is not None:
            with contextlib.suppress(Exception):
                resume()
        return False
    return True


def read_batch(
    sock: socket.socket,
    feed: Callable[[bytes, Any], None],
    on_error: Callable[[OSError], None],
    limit: int = RECEIVE_BATCH,
) -> int:
    """Feed up to ``limit`` waiting datagrams of a non-blocking socket; returns how many."""
    recvfrom = sock.recvfrom
    count = 0
    while count < limit:
        try:
            data, addr = recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:
            on_error(exc)
            break
        count += 1
        feed(data, addr)
    return count
