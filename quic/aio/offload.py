"""UDP segmentation offload for the asyncio driver: GSO on send, GRO on receive (Linux).

Theory of operation
-------------------
A bulk sender hands the socket dozens of datagrams per transmit, nearly all of one size
(the path's maximum) to one peer. With **GSO** (``UDP_SEGMENT``, Linux ≥ 4.18) such a
run goes to the kernel in one ``sendmsg``: the payloads as one gather list, and a
control message giving the segment size; the kernel (or the NIC) cuts it into the
original datagrams. :func:`send_segmented` groups consecutive datagrams into runs that
the kernel accepts — same destination, same ECN codepoint, every segment of the run's
size except a shorter last one, at most :data:`GSO_MAX_SEGMENTS` segments and
:data:`GSO_MAX_BYTES` bytes — and sends a run of one as a plain datagram. Order is
kept: runs leave in the order of the list.

With **GRO** (``UDP_GRO``, Linux ≥ 5.0) the kernel may hand the reader several
datagrams of one sender glued together, with a control message giving the segment
size; :func:`split_coalesced` cuts them apart again. GRO is switched on only for a
socket read with ``recvmsg`` by our own batched reader (:func:`enable_gro`), never for
a socket asyncio's transport reads: a reader that does not know the segment size would
take the glued datagrams for one.

Fallbacks: where the option is missing (another platform, an old kernel) nothing is
switched on. A send the kernel refuses with ``EIO``/``EINVAL``/``ENOPROTOOPT`` (a device
or route without segmentation) turns GSO off for the socket and the run goes again as
single datagrams; a full socket buffer (``BlockingIOError``) stops the batch and the
caller sends the rest through the transport, which queues it. ``QUIC_UDP_OFFLOAD=0`` in
the environment turns both off (troubleshooting, and before/after measurements).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Any

__all__ = [
    "GRO_ANCILLARY_SPACE",
    "GSO_MAX_BYTES",
    "GSO_MAX_SEGMENTS",
    "enable_gro",
    "gro_segment_size",
    "gso_available",
    "send_segmented",
    "split_coalesced",
]

_SOL_UDP = 17  # <netinet/in.h> IPPROTO_UDP
_UDP_SEGMENT = 103  # <linux/udp.h>
_UDP_GRO = 104
_IP_TOS: int | None = getattr(socket, "IP_TOS", None)
_IPV6_TCLASS: int | None = getattr(socket, "IPV6_TCLASS", None)
#: Segments per GSO send (the kernel's UDP_MAX_SEGMENTS is 64 on every version).
GSO_MAX_SEGMENTS = 64
#: Bytes per GSO send: one UDP datagram's payload can be at most 65,507 bytes (IPv4).
GSO_MAX_BYTES = 65000
#: Room for the GRO control message next to the ECN ones.
GRO_ANCILLARY_SPACE = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
_REFUSED = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})


def _allowed() -> bool:
    return sys.platform.startswith("linux") and os.environ.get("QUIC_UDP_OFFLOAD") != "0"


def gso_available(sock: socket.socket | None) -> bool:
    """Whether ``sock`` takes UDP_SEGMENT (asked with ``getsockopt``; never raises)."""
    if sock is None or not _allowed() or not hasattr(sock, "sendmsg"):
        return False
    try:
        sock.getsockopt(_SOL_UDP, _UDP_SEGMENT)
    except OSError:
        return False
    return True


def enable_gro(sock: socket.socket | None) -> bool:
    """Switch UDP_GRO on for a socket that only :func:`quic.aio.udp.read_batch_ecn`
    reads (see the module docstring); False where it is not available."""
    if sock is None or not _allowed() or not hasattr(sock, "recvmsg"):
        return False
    try:
        sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
    except OSError:
        return False
    return True


def gro_segment_size(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The segment size of a coalesced read, or 0 (one datagram)."""
    for level, kind, value in ancillary:
        if level == _SOL_UDP and kind == _UDP_GRO and len(value) >= 2:
            size: int = struct.unpack("=i", value[:4])[0] if len(value) >= 4 else value[0]
            return size
    return 0


def split_coalesced(data: bytes, segment: int) -> list[bytes]:
    """The datagrams GRO glued together: ``segment`` bytes each, the last shorter."""
    if segment <= 0 or len(data) <= segment:
        return [data]
    return [data[i : i + segment] for i in range(0, len(data), segment)]


def _ecn_message(sock: socket.socket, addr: Any, ecn: int) -> list[tuple[int, int, bytes]]:
    if not ecn:
        return []
    family = sock.family
    host = addr[0] if isinstance(addr, tuple) and addr else ""
    v4 = family == socket.AF_INET or (
        isinstance(host, str) and host.startswith("::ffff:") and "." in host
    )
    if v4:
        level, kind = socket.IPPROTO_IP, _IP_TOS
    else:
        level, kind = socket.IPPROTO_IPV6, _IPV6_TCLASS
    if kind is None:
        return []
    return [(level, kind, struct.pack("=i", ecn))]


def send_segmented(
    sock: socket.socket, out: Sequence[tuple[bytes, Any, int]], gso: bool = True
) -> tuple[int, bool]:
    """Send ``out`` (``(payload, addr, ecn)``, in order) on a non-blocking socket, runs of
    equal-size datagrams with GSO; returns ``(how many were sent, GSO still usable)``.
    Stops at the first datagram the socket buffer cannot take (the caller queues the
    rest). A run the kernel refuses goes again as single datagrams (and GSO is off from
    then on if the socket cannot segment at all); a single datagram that fails otherwise
    (an unreachable address, a probe above the path MTU) is skipped, as ``sendto``
    failing would be."""
    count = len(out)
    index = 0
    singles_until = 0  # a refused run is sent again one datagram at a time
    while index < count:
        data, addr, ecn = out[index]
        end = index + 1
        if gso and index >= singles_until:
            end = _run_end(out, index, count)
        ancillary = _ecn_message(sock, addr, ecn)
        try:
            if end - index > 1:
                buffers = [item[0] for item in out[index:end]]
                segment = (_SOL_UDP, _UDP_SEGMENT, struct.pack("=H", len(data)))
                sock.sendmsg(buffers, [*ancillary, segment], 0, addr)
            elif ancillary:
                sock.sendmsg([data], ancillary, 0, addr)
            else:
                sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            return index, gso
        except OSError as exc:
            if end - index > 1:
                if exc.errno in _REFUSED:
                    gso = False  # this socket or route cannot segment
                singles_until = end
                continue
        index = end
    return index, gso


def _run_end(out: Sequence[tuple[bytes, Any, int]], index: int, count: int) -> int:
    """One past the last datagram of the GSO run starting at ``index``."""
    data, addr, ecn = out[index]
    size = total = len(data)
    end = index + 1
    limit = min(count, index + GSO_MAX_SEGMENTS)
    while end < limit:
        nxt, nxt_addr, nxt_ecn = out[end]
        length = len(nxt)
        if nxt_addr != addr or nxt_ecn != ecn or length > size or total + length > GSO_MAX_BYTES:
            break
        total += length
        end += 1
        if length < size:
            break  # a shorter segment ends the run
    return end
