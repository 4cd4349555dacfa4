"""Workers on one UDP port, the socket half: the reuseport group and the forwarding socket.

Theory of operation
-------------------
:func:`reuseport_sockets` binds N UDP sockets to one address with SO_REUSEPORT, **in
index order**: the kernel numbers the sockets of a group in the order they join it,
and that number is what the steering program of :mod:`quic.reuseport_bpf` returns,
so socket *i* must be the one worker *i* reads. :func:`attach_steering` attaches the
program to the group (one socket carries it for all, socket(7)); where the kernel
refuses (not Linux, an old kernel, a sandbox) it logs that and returns False: the
4-tuple hash then picks the socket, and forwarding (below) takes the datagrams of a
connection to the worker that owns it. The group's membership must not change while
it serves: a socket leaving a reuseport group makes the kernel move the last socket
into its slot, which would renumber the workers. So whoever creates the group keeps
every socket open (the supervisor of :mod:`pywebtransport.workers` does), and a
worker that drains or dies leaves its socket in place for its replacement.

:class:`Forwarder` is one worker's AF_UNIX SOCK_DGRAM socket, bound to
``<directory>/w<index>`` (a private directory of the supervisor's). At each transmit
the pump hands it what :class:`quic.workers.WorkerRouting` queued (datagrams of
another worker's connections, each with the peer's address, the ECN field and the
local address index: :func:`quic.workers.encode_forwarded`); it sends each at once,
non-blocking, on a socket connected to the owner's. An AF_UNIX datagram socket
holds only ``net.unix.max_dgram_qlen`` datagrams (10 by default) until its reader
wakes, so a burst may find it full (``EAGAIN``): then at most ``max_pending`` datagrams
per owner (``QuicConfiguration.max_pending_forwards``) wait for room (a connected
socket polls writable when the owner's queue has some); beyond, and for a worker that
is not there (``ENOENT``, ``ECONNREFUSED``: dead or restarting), a datagram is dropped
and counted (``dropped``) — a packet loss QUIC recovers from (RFC 9002 §6).
The owner's forwarder reads up to ``RECEIVE_BATCH`` datagrams per wake-up and feeds
each to its endpoint as if its own UDP socket had read it (:meth:`quic.aio.pump.
QuicEndpointProtocol.feed_forwarded`): the connection sees the client's real address
and answers from its own socket, which is bound to the shared address and port. The
local address travels as its index (0 the shared socket; a preferred address is not
supported with workers); with a wildcard bind the kernel picks the source address of
a reply as it does without workers.

:class:`WorkerSpec` is what :func:`quic.aio.serve` needs to run one worker: its index,
the group size, its socket, the forwarding directory and the key of the stateless
reset tokens, which all workers share (RFC 9000 §10.3.2: a worker's replacement can
then reset the connections its predecessor left behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quic.aio.reuseport import attach_reuseport_cbpf
from quic.aio.udp import RECEIVE_BATCH
from quic.configuration import QuicConfiguration
from quic.endpoint import QuicEndpoint
from quic.quiclb import WorkerCids
from quic.reuseport_bpf import build_worker_program
from quic.workers import WorkerRouting, decode_forwarded

if TYPE_CHECKING:
    from quic.aio.pump import QuicEndpointProtocol

__all__ = [
    "Forwarder",
    "WorkerSpec",
    "attach_steering",
    "forwarding_path",
    "reuseport_sockets",
    "worker_scheme",
]

logger = logging.getLogger("quic.workers")

#: Largest forwarded datagram: a UDP payload (65,527 bytes) plus the forwarding header.
_MAX_FRAME = 65536 + 64
#: Requested socket buffers of the forwarding sockets (the kernel caps them).
_BUFFER = 4 * 1024 * 1024
#: errno values that mean "the owner is not there right now": dropped, counted
#: RFC 9000 §19.17: PATH_CHALLENGE data is 8 bytes
PATH_CHALLENGE_LENGTH = 8
_GONE = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.ENOTCONN})


def reuseport_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` non-blocking UDP sockets on ``(host, port)`` in one SO_REUSEPORT group,
    bound in index order (port 0: the first bind picks the port, the others join it)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available here")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setblocking(False)
            sock.bind(addr)
            if not addr[1]:
                addr = (addr[0], sock.getsockname()[1], *addr[2:])
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def attach_steering(sock: socket.socket, scheme: WorkerCids) -> bool:
    """Attach the DCID steering program of ``scheme`` to ``sock``'s reuseport group;
    False (logged) where the kernel refuses: forwarding alone keeps connections whole."""
    if not scheme.steerable:
        logger.info("encrypted worker CIDs: no steering program, forwarding only")
        return False
    program = build_worker_program(scheme.workers, scheme.worker_offset)
    try:
        attach_reuseport_cbpf(sock, program)
    except OSError as exc:
        logger.warning("reuseport steering program refused (%s): forwarding only", exc)
        return False
    return True


def worker_scheme(
    workers: int,
    index: int,
    host_id: bytes = b"",
    config_rotation: int = 0,
    nonce_length: int = 7,
    key: bytes | None = None,
) -> WorkerCids:
    """Worker ``index``'s CID scheme (raises ValueError for settings QUIC-LB refuses, and
    for 8-byte CIDs: the size of PATH_CHALLENGE data, RFC 9000 §8.2.1, which the
    scheme's ``token_bytes`` would then make a CID)."""
    scheme = WorkerCids(
        workers, index, host_id, config_rotation=config_rotation, nonce_length=nonce_length, key=key
    )
    if scheme.cid_length == PATH_CHALLENGE_LENGTH:
        raise ValueError("worker CIDs of 8 bytes would collide with PATH_CHALLENGE data")
    return scheme


def forwarding_path(directory: str, index: int) -> str:
    """The AF_UNIX address of worker ``index``'s forwarding socket."""
    return os.path.join(directory, f"w{index}")


class _Peer:
    """The connected socket to one other worker and what waits for room in it."""

    __slots__ = ("path", "queue", "sock", "writing")

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.queue: deque[bytes] = deque()
        self.writing = False


class Forwarder:
    """One worker's forwarding sockets (see the module docstring)."""

    def __init__(self, directory: str, index: int, workers: int, max_pending: int = 256) -> None:
        self.directory = directory
        self.index = index
        self.workers = workers
        self.max_pending = max_pending
        path = forwarding_path(directory, index)
        if os.path.exists(path):
            os.unlink(path)  # a predecessor's (a restarted worker)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
        self.sock.bind(path)
        self._peers = [_Peer(forwarding_path(directory, k)) for k in range(workers)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feed: Callable[[list[tuple[bytes, Any, int, int]]], None] | None = None
        self._closed = False
        self.sent = 0  # datagrams handed to another worker
        self.dropped = 0  # ... not: the owner was gone, or too many waited for room
        self.received = 0  # datagrams other workers handed to this one
        self.malformed = 0  # local datagrams that were not forwarding frames

    def start(self, loop: asyncio.AbstractEventLoop, pump: QuicEndpointProtocol) -> None:
        """Read forwarded datagrams into ``pump``; send what its endpoint forwards."""
        self._loop = loop
        self._feed = pump.feed_forwarded
        pump.forward = self.send
        loop.add_reader(self.sock.fileno(), self._readable)

    @property
    def pending(self) -> int:
        """Datagrams waiting for room in another worker's socket (at most
        ``max_pending`` per worker)."""
        return sum(len(peer.queue) for peer in self._peers)

    def send(self, frames: list[tuple[int, bytes]]) -> None:
        """Send each ``(worker, frame)``; what finds the owner's queue full waits (at
        most ``max_pending`` per worker); the rest is dropped and counted."""
        peers = self._peers
        for worker, frame in frames:
            if self._closed or not 0 <= worker < len(peers) or worker == self.index:
                self.dropped += 1
                continue
            peer = peers[worker]
            if peer.queue:
                self._enqueue(peer, frame)
                continue
            sock = peer.sock or self._connect(peer)
            if sock is None:
                self.dropped += 1
                continue
            try:
                sock.send(frame)
                self.sent += 1
            except (BlockingIOError, InterruptedError):
                self._enqueue(peer, frame)  # its queue is full: wait for room
            except OSError as exc:
                self._lost(peer, exc)
                self.dropped += 1

    def _connect(self, peer: _Peer) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
        try:
            sock.connect(peer.path)
        except OSError:
            sock.close()  # not there (dead, restarting): the caller drops
            return None
        peer.sock = sock
        return sock

    def _enqueue(self, peer: _Peer, frame: bytes) -> None:
        if len(peer.queue) >= self.max_pending:
            self.dropped += 1
            return
        peer.queue.append(frame)
        if not peer.writing and peer.sock is not None and self._loop is not None:
            # a connected AF_UNIX datagram socket polls writable once the peer's
            # receive queue has room again
            self._loop.add_writer(peer.sock.fileno(), self._writable, peer)
            peer.writing = True

    def _writable(self, peer: _Peer) -> None:
        sock = peer.sock
        queue = peer.queue
        while queue and sock is not None:
            try:
                sock.send(queue[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lost(peer, exc)
                return
            queue.popleft()
            self.sent += 1
        self._stop_writing(peer)

    def _stop_writing(self, peer: _Peer) -> None:
        if peer.writing and peer.sock is not None and self._loop is not None:
            self._loop.remove_writer(peer.sock.fileno())
        peer.writing = False

    def _lost(self, peer: _Peer, exc: OSError) -> None:
        """The owner's socket went away (it died or restarted): drop what waited;
        the next datagram for it connects again."""
        if exc.errno not in _GONE:
            logger.debug("forwarding to %s failed: %r", peer.path, exc)
        self._stop_writing(peer)
        self.dropped += len(peer.queue)
        peer.queue.clear()
        if peer.sock is not None:
            peer.sock.close()
            peer.sock = None

    def _readable(self) -> None:
        batch: list[tuple[bytes, Any, int, int]] = []
        recv = self.sock.recv
        for _ in range(RECEIVE_BATCH):
            try:
                frame = recv(_MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                logger.debug("forwarding socket: %r", exc)
                break
            decoded = decode_forwarded(frame)
            if decoded is None:
                self.malformed += 1
                continue
            batch.append(decoded)
        if batch and self._feed is not None:
            self.received += len(batch)
            try:
                self._feed(batch)
            except Exception:  # the pump guards its own work; a last resort
                logger.exception("feeding forwarded datagrams failed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for peer in self._peers:
            self._stop_writing(peer)
            peer.queue.clear()
            if peer.sock is not None:
                peer.sock.close()
                peer.sock = None
        if self._loop is not None and self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        path = forwarding_path(self.directory, self.index)
        with contextlib.suppress(OSError):
            os.unlink(path)


@dataclass
class WorkerSpec:
    """One worker of a group on one port (see the module docstring).

    ``sock``: its member of the reuseport group (made by :func:`reuseport_sockets`);
    ``directory``: where the forwarding sockets live; ``reset_key``: the stateless
    reset key all workers share (32 bytes); ``host_id``: an optional prefix of the
    server ID (several hosts behind one QUIC-LB balancer), with that balancer's
    ``config_rotation``, ``nonce_length`` and ``key`` (encrypted CIDs: not steerable,
    the workers forward instead; :class:`quic.quiclb.WorkerCids`)."""

    index: int
    workers: int
    sock: socket.socket
    directory: str
    reset_key: bytes
    host_id: bytes = b""
    config_rotation: int = 0
    nonce_length: int = 7
    key: bytes | None = None
    forwarder: Forwarder | None = field(default=None, init=False)
    routing: WorkerRouting | None = field(default=None, init=False)

    def scheme(self) -> WorkerCids:
        return worker_scheme(
            self.workers,
            self.index,
            self.host_id,
            self.config_rotation,
            self.nonce_length,
            self.key,
        )

    def endpoint(self, configuration: QuicConfiguration) -> QuicEndpoint:
        """The worker's endpoint: CIDs of its scheme, the shared reset key, routing."""
        scheme = self.scheme()
        configuration.connection_id_length = scheme.cid_length
        if configuration.stateless_reset_key is None:
            configuration.stateless_reset_key = self.reset_key
        endpoint = QuicEndpoint(configuration, token_bytes=scheme.token_bytes)
        self.routing = WorkerRouting(scheme, configuration.max_pending_forwards)
        endpoint.worker_routing = self.routing
        return endpoint

    def start(self, loop: asyncio.AbstractEventLoop, pump: QuicEndpointProtocol) -> None:
        """Open the forwarding socket and connect it to ``pump``."""
        routing = self.routing
        pending = routing.max_pending if routing is not None else 256
        self.forwarder = Forwarder(self.directory, self.index, self.workers, pending)
        self.forwarder.start(loop, pump)

    def drain(self) -> None:
        """Take no new connections: they go to the next worker (:mod:`quic.workers`)."""
        if self.routing is not None and self.workers > 1:
            self.routing.successor = (self.index + 1) % self.workers

    def close(self) -> None:
        if self.forwarder is not None:
            self.forwarder.close()
            self.forwarder = None
