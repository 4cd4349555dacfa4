"""A UDP transport that owns its socket: batched reading on any loop with ``add_reader``.

Theory of operation
-------------------
On asyncio's selector loop the pump reads its socket in batches by taking the reader
over from asyncio's own datagram transport (:func:`quic.aio.udp.take_over_reading`).
Other loops — uvloop in particular — have no such internals: their transport reads one
datagram per callback, never hands out its socket, and refuses ``add_reader`` on a
descriptor it owns. So there the driver does not ask the loop for a transport at all:
:func:`open_datagram_endpoint` binds the socket itself and wraps it in
:class:`OwnedDatagramTransport`, which uses only public loop API (``add_reader``,
``add_writer``, ``call_soon``) — and the pump gets everything the selector path has:
up to ``RECEIVE_BATCH`` datagrams per wake-up, ECN read with ``recvmsg``, GRO, GSO and
ECN-marked sends on the raw socket.

Reading: the registered callback drains up to ``RECEIVE_BATCH`` datagrams per wake-up
and hands each to ``protocol.datagram_received``; a protocol that reads for itself
(the pump) replaces that callback with :meth:`OwnedDatagramTransport.read_with`.

Writing: ``sendto`` sends at once on the non-blocking socket. When the kernel buffer is
full (``EAGAIN``) the datagram is queued and a writer is registered that sends the
queue in order as room appears; while anything is queued new datagrams queue behind it
(order is kept). The queue is bounded (:data:`SEND_QUEUE_BYTES`): beyond it a datagram
is dropped and counted (:attr:`OwnedDatagramTransport.dropped`) — UDP may lose it
anyway, and QUIC's loss recovery resends what mattered (RFC 9002 §6). Other send
errors go to ``protocol.error_received``, as with asyncio's transport.

Closing: ``close()`` stops reading, sends what is queued (as long as the kernel takes
it), then calls ``connection_lost`` and closes the socket; ``abort()`` drops the queue.

Where the loop has no working ``add_reader`` (the proactor loop on Windows)
:func:`open_datagram_endpoint` falls back to ``loop.create_datagram_endpoint``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from quic.aio.udp import RECEIVE_BATCH, read_batch

__all__ = ["SEND_QUEUE_BYTES", "OwnedDatagramTransport", "open_datagram_endpoint"]

logger = logging.getLogger("quic")

#: Bytes queued while the socket's send buffer is full; beyond it datagrams are dropped
#: (counted). A congestion window's worth of bursts fits (RFC 9002 §7: the sender is
#: limited by its window; a datagram lost here is a packet loss to recover).
SEND_QUEUE_BYTES = 4 * 1024 * 1024


class OwnedDatagramTransport(asyncio.DatagramTransport):
    """A datagram transport around a socket it owns (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.DatagramProtocol,
        waiter: asyncio.Future[None] | None = None,
    ) -> None:
        super().__init__({"socket": sock, "sockname": sock.getsockname(), "peername": None})
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._reader: Callable[[socket.socket], None] = self._read_default
        self._queue: deque[tuple[bytes, Any]] = deque()
        self._queued = 0  # bytes in _queue
        self._writing = False  # a writer is registered
        self._reading = False
        self._closing = False
        self.dropped = 0  # datagrams dropped because the send queue was full
        self.read_wakeups = 0  # times the socket was found readable
        # as asyncio's transports: connection_made, then reading, then the waiter
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading, waiter)

    # -- the socket -----------------------------------------------------------------------

    @property
    def sock(self) -> socket.socket:
        """The raw socket (for ``recvmsg``/``sendmsg``: ECN, GSO, GRO)."""
        return self._sock

    def read_with(self, on_readable: Callable[[socket.socket], None]) -> None:
        """Call ``on_readable(sock)`` when the socket is readable, instead of handing
        datagrams to ``protocol.datagram_received`` one by one."""
        self._reader = on_readable

    def _start_reading(self, waiter: asyncio.Future[None] | None = None) -> None:
        if not self._closing:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_readable(self) -> None:
        self.read_wakeups += 1
        try:
            self._reader(self._sock)
        except Exception:  # the reader guards its own work; a last resort
            logger.exception("UDP read failed")

    def _read_default(self, sock: socket.socket) -> None:
        protocol = self._protocol
        read_batch(sock, protocol.datagram_received, protocol.error_received, RECEIVE_BATCH)

    # -- writing --------------------------------------------------------------------------

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing:
            return
        if not self._queue:
            try:
                if addr is None:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass  # the kernel buffer is full: queue it
            except OSError as exc:
                self._protocol.error_received(exc)
                return
        self._enqueue(bytes(data), addr)

    def _enqueue(self, data: bytes, addr: Any) -> None:
        if self._queued + len(data) > SEND_QUEUE_BYTES:
            self.dropped += 1
            return
        self._queue.append((data, addr))
        self._queued += len(data)
        if not self._writing:
            self._loop.add_writer(self._fd, self._on_writable)
            self._writing = True

    def _on_writable(self) -> None:
        queue = self._queue
        sock = self._sock
        while queue:
            data, addr = queue[0]
            try:
                if addr is None:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return  # still full: wait for the next writable event
            except OSError as exc:
                self._protocol.error_received(exc)  # that datagram is lost
            queue.popleft()
            self._queued -= len(data)
        self._loop.remove_writer(self._fd)
        self._writing = False
        if self._closing:
            self._loop.call_soon(self._call_connection_lost, None)

    def get_write_buffer_size(self) -> int:
        return self._queued

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return 0, SEND_QUEUE_BYTES

    # -- life cycle -----------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]  # a datagram protocol

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._queue:
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        self._queue.clear()
        self._queued = 0
        self._closing = True
        self._stop_reading()
        self._loop.call_soon(self._call_connection_lost, None)  # runs once

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _call_connection_lost(self, exc: Exception | None) -> None:
        if self._sock.fileno() < 0:
            return  # already done (abort() after close())
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()


async def _bound_socket(
    loop: asyncio.AbstractEventLoop, local_addr: tuple[str, int]
) -> socket.socket:
    """A non-blocking UDP socket bound to the first address of ``local_addr`` that
    binds (as ``create_datagram_endpoint`` does); the last error if none does."""
    host, port = local_addr
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    error: OSError = OSError(f"no address for {local_addr!r}")
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.bind(addr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error


def _add_reader_works(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bool:
    try:
        loop.add_reader(sock.fileno(), lambda: None)
    except (NotImplementedError, RuntimeError, ValueError, OSError, AttributeError):
        return False
    loop.remove_reader(sock.fileno())
    return True


def owned_by_default(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether :func:`open_datagram_endpoint` binds its own socket on ``loop``: on every
    loop but asyncio's selector loop, whose transport the pump takes over instead."""
    return getattr(loop, "_add_reader", None) is None


async def _wrap_owned(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
    protocol = protocol_factory()
    waiter: asyncio.Future[None] = loop.create_future()
    transport = OwnedDatagramTransport(loop, sock, protocol, waiter)
    try:
        await waiter  # connection_made has run, as with create_datagram_endpoint
    except BaseException:
        transport.abort()
        raise
    return transport, protocol


async def open_datagram_endpoint(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    local_addr: tuple[str, int],
    *,
    owned: bool | None = None,
    sock: socket.socket | None = None,
) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
    """``loop.create_datagram_endpoint(protocol_factory, local_addr=local_addr)``, with an
    :class:`OwnedDatagramTransport` where that pays (``owned``: None = where the loop is
    not asyncio's selector loop, see :func:`owned_by_default`). ``sock``: serve on this
    bound socket instead (a worker's member of a reuseport group); it is not closed if
    this fails."""
    if sock is not None:
        sock.setblocking(False)
        if owned is None:
            owned = owned_by_default(loop)
        if owned and _add_reader_works(loop, sock):
            return await _wrap_owned(loop, sock, protocol_factory)
        transport, protocol = await loop.create_datagram_endpoint(protocol_factory, sock=sock)
        return transport, protocol
    if owned is None:
        owned = owned_by_default(loop)
    if owned:
        sock = await _bound_socket(loop, local_addr)
        if _add_reader_works(loop, sock):
            return await _wrap_owned(loop, sock, protocol_factory)
        sock.close()
    transport, protocol = await loop.create_datagram_endpoint(
        protocol_factory, local_addr=local_addr
    )
    return transport, protocol
