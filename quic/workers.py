"""Workers on one UDP port: which worker a datagram belongs to, and how it is handed over.

Theory of operation
-------------------
With ``--workers N`` every worker process has its own UDP socket in one SO_REUSEPORT
group on the shared port, and its own :class:`~quic.endpoint.QuicEndpoint`, which
issues connection IDs of a :class:`~quic.quiclb.WorkerCids` scheme: every connection ID
a worker hands out (the server's Initial SCID, NEW_CONNECTION_ID, the preferred address
CID, a Retry SCID) names that worker (draft-ietf-quic-load-balancers "Plaintext CID
Algorithm"; the text is not in ``/work/shared/specs``, only its layout is used). The
kernel delivers a datagram to the socket its BPF program chose (:mod:`quic.
reuseport_bpf`: the worker the DCID of a short header names) or, where that program
is not attached or falls back, to the socket the 4-tuple hash chose. When a client
migrates or is rebound by a NAT (RFC 9000 §9), the hash picks another socket: the
datagram reaches a worker that does not know the connection. That worker *forwards*
it to its owner — over a local socket, with the peer's address, the local address
index and the ECN field — and the owner handles it as if its own socket had read it,
answering from the shared port.

:func:`route_datagram` is the decision, pure, for a datagram no local connection claims
(the endpoint asks only on that rare path: a datagram of a known connection costs
nothing more; with one worker no routing exists at all):

* the DCID names another worker → forward to it (RFC 9000 §5.2: packets are matched to
  connections by their DCID — here across processes);
* a long header whose DCID names no worker while this worker *drains* (it takes no
  new connections during a graceful restart) → forward to the ``successor`` that takes
  them, so an Initial hashed to the draining worker is not lost (one whose DCID names
  this worker stays: it answers this worker's Retry, whose token only it can check);
* a datagram that arrived *by forwarding* and names yet another worker → drop (no
  forwarding loops, whatever the workers' schemes say);
* a datagram too short to hold the DCID → drop (RFC 9000 §17: not a QUIC packet we
  can route; the endpoint would drop it too);
* anything else → local: the endpoint's own rules (a new connection for an Initial,
  a Stateless Reset for an unknown short header, RFC 9000 §10.3).

:class:`WorkerRouting` applies it for an endpoint and holds what is to be forwarded
until the I/O layer takes it (:meth:`WorkerRouting.take`, at the next transmit): at
most ``max_pending`` datagrams (``QuicConfiguration.max_pending_forwards``); beyond,
a datagram is dropped and counted — a flood of unknown-CID datagrams costs counters
only. The I/O layer (:mod:`quic.aio.workers`) sends each to its worker's local socket
without queueing (a full or dead worker: dropped, counted).

:func:`encode_forwarded` / :func:`decode_forwarded` are the local wire format:
``version(1) family(1) ecn(1) local(1) port(2) [flowinfo(4) scope_id(4)] address(4|16)
datagram``. Pure: no I/O, no clock.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from quic.errors import QuicProtocolError
from quic.packet import peek_dcid
from quic.quiclb import WorkerCids

__all__ = [
    "DROP",
    "FORWARD_VERSION",
    "LOCAL",
    "WorkerRouting",
    "decode_forwarded",
    "encode_forwarded",
    "route_datagram",
]

#: :func:`route_datagram`: handle it here (the endpoint's own rules)
LOCAL = -1
#: :func:`route_datagram`: drop it (counted)
DROP = -2
_LONG_HEADER_BIT = 0x80  # RFC 9000 §17.2: Header Form

FORWARD_VERSION = 1
_HEAD = struct.Struct("!BBBBH")  # version, family, ecn, local, port
_V6_EXTRA = struct.Struct("!II")  # flowinfo, scope_id


def route_datagram(
    data: bytes,
    scheme: WorkerCids,
    *,
    successor: int | None = None,
    forwarded: bool = False,
) -> int:
    """Where a datagram no local connection claims goes: :data:`LOCAL`, :data:`DROP`,
    or the index of the worker to forward it to (see the module docstring)."""
    try:
        dcid = peek_dcid(data, scheme.cid_length)
    except QuicProtocolError:
        return DROP
    owner = scheme.worker_of(dcid)
    if owner is not None:
        if owner == scheme.worker:
            return LOCAL  # ours (e.g. an Initial answering our Retry: its token is ours)
        return DROP if forwarded else owner
    if (
        successor is not None
        and not forwarded
        and successor != scheme.worker
        and data[0] & _LONG_HEADER_BIT
    ):
        return successor  # draining: a new connection goes to a worker that takes them
    return LOCAL


def encode_forwarded(data: bytes, addr: Any, ecn: int = 0, local: int = 0) -> bytes:
    """``data`` from peer ``addr`` (an IPv4 ``(host, port)`` or IPv6 ``(host, port,
    flowinfo, scope_id)`` tuple), with its ECN field and local address index, as one
    local datagram. Raises ValueError for an address it cannot carry."""
    host, port = addr[0], int(addr[1])
    if not 0 <= ecn <= 3 or not 0 <= local <= 255 or not 0 <= port <= 0xFFFF:
        raise ValueError("ECN, local index or port out of range")
    try:
        ip = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        raise ValueError(f"not an IP address: {host!r}") from None
    if ip.version == 4:
        return _HEAD.pack(FORWARD_VERSION, 4, ecn, local, port) + ip.packed + data
    packed = ip.packed
    flow = int(addr[2]) if len(addr) > 2 else 0
    scope = int(addr[3]) if len(addr) > 3 else 0
    head = _HEAD.pack(FORWARD_VERSION, 6, ecn, local, port)
    return head + _V6_EXTRA.pack(flow, scope) + packed + data


def decode_forwarded(frame: bytes) -> tuple[bytes, Any, int, int] | None:
    """``(datagram, peer address, ecn, local)`` of a local datagram; None when it is not
    one of :func:`encode_forwarded` (never raises)."""
    if len(frame) < _HEAD.size:
        return None
    version, family, ecn, local, port = _HEAD.unpack_from(frame)
    if version != FORWARD_VERSION or ecn > 3:
        return None
    at = _HEAD.size
    if family == 4:
        if len(frame) < at + 4:
            return None
        host = str(ipaddress.IPv4Address(frame[at : at + 4]))
        return frame[at + 4 :], (host, port), ecn, local
    if family == 6:
        if len(frame) < at + 8 + 16:
            return None
        flow, scope = _V6_EXTRA.unpack_from(frame, at)
        host = str(ipaddress.IPv6Address(frame[at + 8 : at + 24]))
        return frame[at + 24 :], (host, port, flow, scope), ecn, local
    return None


class WorkerRouting:
    """The routing of one worker's endpoint (see the module docstring).

    ``successor``: while set, this worker drains — new connections go to that worker.
    Counters: ``forwarded`` (handed over), ``dropped`` (:data:`DROP`: too short, or a
    forwarding loop), ``overflow`` (more than ``max_pending`` waiting: dropped).
    """

    __slots__ = (
        "_out",
        "dropped",
        "forwarded",
        "max_pending",
        "overflow",
        "scheme",
        "successor",
    )

    def __init__(self, scheme: WorkerCids, max_pending: int = 256) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.scheme = scheme
        self.max_pending = max_pending
        self.successor: int | None = None
        self._out: list[tuple[int, bytes]] = []
        self.forwarded = 0
        self.dropped = 0
        self.overflow = 0

    @property
    def pending(self) -> int:
        """Datagrams waiting for :meth:`take`."""
        return len(self._out)

    def divert(
        self, data: bytes, addr: Any, ecn: int = 0, local: int = 0, forwarded: bool = False
    ) -> int:
        """Route a datagram no local connection claims: :data:`LOCAL` (the caller handles
        it), :data:`DROP` (counted here), or the worker it was queued for (or dropped
        for, when full: ``overflow``)."""
        target = route_datagram(data, self.scheme, successor=self.successor, forwarded=forwarded)
        if target == LOCAL:
            return LOCAL
        if target == DROP:
            self.dropped += 1
            return DROP
        if len(self._out) >= self.max_pending:
            self.overflow += 1
            return target
        try:
            frame = encode_forwarded(bytes(data), addr, ecn, local)
        except (ValueError, IndexError, TypeError):
            self.dropped += 1
            return DROP
        self._out.append((target, frame))
        self.forwarded += 1
        return target

    def take(self) -> list[tuple[int, bytes]]:
        """What is to be forwarded, ``(worker, local datagram)``; the queue is emptied."""
        out = self._out
        self._out = []
        return out
