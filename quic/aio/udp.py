"""UDP socket helpers of the asyncio driver.

Theory of operation
-------------------
asyncio's datagram transport reads one datagram per event-loop iteration and calls
``datagram_received`` for it. That works everywhere, and it is the fallback. On a
selector event loop the driver can do better: :func:`take_over_reading` replaces the
transport's reader with one that drains up to a batch of datagrams per wake-up, so a
burst is fed to the endpoint before anything is transmitted (one transmit pass per
burst instead of one per datagram). It reads until the socket is empty, and learns
that from ``FIONREAD`` (:func:`_drained`) rather than from a read that fails with
``EAGAIN`` (a system call and an exception per wake-up: a ping-pong's every wake-up
ends that way).

That take-over needs three asyncio internals, and this module is the only place that
touches them (see :func:`take_over_reading`; :func:`soon_caller` uses a fourth, the
loop's ready queue, to schedule the pump's flush without a new handle each time, and
:func:`ready_queue` reads whether it is empty). On
other loops (uvloop) the driver binds the socket itself (:mod:`quic.aio.owned`) and
the same batched reader is registered with the public ``add_reader``. Everything else
here is public API: socket buffer sizing and reading a batch from a raw socket.

The IP header fields QUIC needs (:func:`configure_path_options`):

* ECN (RFC 9000 §13.4, RFC 3168): ``IP_RECVTOS`` / ``IPV6_RECVTCLASS`` make the kernel
  hand the ECN field of each datagram as ancillary data, which :func:`read_batch_ecn`
  reads with ``recvmsg``; :func:`send_marked` sets the codepoint of one datagram with
  an ``IP_TOS`` (IPv4, and IPv4-mapped addresses on a dual-stack socket) or
  ``IPV6_TCLASS`` control message on ``sendmsg``, so connections sharing the socket
  each mark as their own ECN validation decided. Where any of it is missing (another
  platform, the fallback reader, a socket without ``sendmsg``) nothing is marked or
  read: datagrams count as Not-ECT and the connections' ECN validation fails cleanly.
* Don't Fragment (RFC 9000 §14: "UDP datagrams MUST NOT be fragmented"; RFC 8899
  §4.4): on Linux ``IP_MTU_DISCOVER`` / ``IPV6_MTU_DISCOVER`` = ``*_PMTUDISC_PROBE``
  sets DF and lets datagrams larger than the kernel's cached path MTU be sent, as
  DPLPMTUD probes must be (:mod:`quic.conn_pmtu`); a datagram above the interface MTU
  fails to send and counts as a lost probe. On the BSDs and macOS ``IP_DONTFRAG`` /
  ``IPV6_DONTFRAG`` set DF (IPv4-mapped datagrams of a dual-stack socket excepted).
  Where none of these exists or the kernel refuses, DF is left off and
  ``PathOptions.dont_fragment`` says so: probes still work on paths that do not
  fragment, and a fragmented probe at worst proves a size that a black hole later
  takes back (RFC 8899 §4.3).

ICMP errors (client sockets, Linux): a UDP socket that is not ``connect``-ed hears
nothing of ICMP unless ``IP_RECVERR`` / ``IPV6_RECVERR`` is set (ip(7), ipv6(7)).
:func:`enable_error_queue` sets it; each ICMP error is then queued on the socket's
error queue (its original destination address included) and the next receive or send
fails once with the error (``ECONNREFUSED`` for a port unreachable).
:func:`read_error_queue` drains that queue — whoever enables it must drain it, or the
socket stays readable (``EPOLLERR``) and the queue holds receive-buffer memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import logging
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quic.aio.offload import GRO_ANCILLARY_SPACE, gro_segment_size, split_coalesced

__all__ = [
    "ERROR_QUEUE_BATCH",
    "RECEIVE_BATCH",
    "PathOptions",
    "configure_path_options",
    "ecn_messages",
    "enable_error_queue",
    "enlarge_buffers",
    "raw_socket",
    "read_batch",
    "read_batch_ecn",
    "read_error_queue",
    "ready_queue",
    "send_marked",
    "send_plain",
    "soon_caller",
    "take_over_reading",
]

logger = logging.getLogger("quic")

#: Datagrams read per wake-up of the batched reader (and fed before one transmit).
RECEIVE_BATCH = 32
#: Requested UDP socket buffer sizes (the kernel caps them at net.core.rmem_max/wmem_max).
SOCKET_BUFFER = 4 * 1024 * 1024

# Linux <linux/in.h>, <linux/in6.h> (Python's socket module does not export them)
_IP_MTU_DISCOVER = 10
_IPV6_MTU_DISCOVER = 23
_PMTUDISC_PROBE = 3  # set DF, ignore the cached path MTU (IP_ and IPV6_ alike)
# <netinet/in.h> IP_DONTFRAG of the BSDs and macOS (not exported by Python either);
# IPV6_DONTFRAG (RFC 3542 §11.2) is exported where the platform has it
_IP_DONTFRAG = {"darwin": 28, "freebsd": 67}
_IPV6_DONTFRAG: int | None = getattr(socket, "IPV6_DONTFRAG", None)
_IP_TOS: int | None = getattr(socket, "IP_TOS", None)
_IPPROTO_IP = socket.IPPROTO_IP
_IP_RECVTOS: int | None = getattr(socket, "IP_RECVTOS", None)
_IPV6_TCLASS: int | None = getattr(socket, "IPV6_TCLASS", None)
_IPV6_RECVTCLASS: int | None = getattr(socket, "IPV6_RECVTCLASS", None)
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_ERROR_LEVELS = ((socket.IPPROTO_IP, _IP_RECVERR), (socket.IPPROTO_IPV6, _IPV6_RECVERR))
#: struct sock_extended_err (<linux/errqueue.h>): ee_errno, origin, type, code, pad,
#: info, data; the offender's address follows
_EXTENDED_ERR = struct.Struct("=IBBBBII")
_MSG_ERRQUEUE: int = getattr(socket, "MSG_ERRQUEUE", 0x2000)
#: Errors taken off the error queue per call of :func:`read_error_queue`.
ERROR_QUEUE_BATCH = 64
#: Room for the ECN control messages of one datagram (an IPv4 and an IPv6 one at most).
_ANCILLARY_SPACE = socket.CMSG_SPACE(4) * 2 if hasattr(socket, "CMSG_SPACE") else 0

try:  # the "is anything left?" probe of the batched reader (see _drained)
    import fcntl
    import termios

    _ioctl: Callable[[int, int, bytearray], int] | None = fcntl.ioctl
    _FIONREAD: int = termios.FIONREAD
except ImportError:  # Windows: no ioctl; the reader stops at a failing read instead
    _ioctl = None
    _FIONREAD = 0
_NOTHING = bytes(4)


def has_input(sock: socket.socket) -> bool:
    """True if a datagram waits in ``sock`` (``FIONREAD``; see :func:`_drained`); False
    where that cannot be told."""
    if _ioctl is None:
        return False
    fd = sock.fileno()
    return fd >= 0 and not _drained(fd, bytearray(4))


def _drained(fd: int, room: bytearray) -> bool:
    """True if the socket has no datagram waiting: ``FIONREAD`` (Linux ``SIOCINQ``,
    udp(7): the size of the next datagram, 0 if there is none; the BSDs: the bytes
    queued) tells without a read that fails with ``EAGAIN``, which costs a system call
    *and* an exception. A hint only: a zero-length datagram also reads as 0 (it is read
    at the next wake-up: the socket stays readable), and a probe that fails says
    "not drained" (the read that follows decides, as before)."""
    try:
        _ioctl(fd, _FIONREAD, room)  # type: ignore[misc]  # fd >= 0: _ioctl is set
    except OSError:
        return False
    return room == _NOTHING


@dataclass(frozen=True, slots=True)
class PathOptions:
    """What :func:`configure_path_options` could set on a socket."""

    ecn: bool = False  # ECN fields are read (recvmsg) and set (sendmsg) per datagram
    dont_fragment: bool = False  # DF set, path-MTU probes allowed (Linux PMTUDISC_PROBE)


def configure_path_options(sock: socket.socket | None) -> PathOptions:
    """Ask the kernel for the ECN field of received datagrams and set Don't Fragment;
    whatever fails is left off (see the module docstring). Never raises."""
    if sock is None or sock.type != socket.SOCK_DGRAM:
        return PathOptions()
    family = sock.family
    ecn = False
    if _IP_TOS is not None and _IP_RECVTOS is not None and hasattr(sock, "recvmsg"):
        try:
            # dual-stack IPv6 sockets deliver IPv4 datagrams with IP_TOS ancillary data
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTOS, 1)
            if family == socket.AF_INET6:
                assert _IPV6_RECVTCLASS is not None and _IPV6_TCLASS is not None
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVTCLASS, 1)
            ecn = hasattr(sock, "sendmsg") and _ANCILLARY_SPACE > 0
        except (OSError, AssertionError):
            logger.debug("ECN fields unavailable on this socket; sending Not-ECT")
    return PathOptions(ecn=ecn, dont_fragment=_set_dont_fragment(sock, sys.platform))


def _dont_fragment_options(family: int, platform: str) -> list[tuple[int, int, int]]:
    """The ``setsockopt`` calls that set DF on a socket of ``family`` (see the module
    docstring); empty where the platform has none we know."""
    if platform.startswith("linux"):
        options = [(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _PMTUDISC_PROBE)]
        if family == socket.AF_INET6:
            options.append((socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER, _PMTUDISC_PROBE))
        return options
    bsd = next((v for k, v in _IP_DONTFRAG.items() if platform.startswith(k)), None)
    if family == socket.AF_INET6:
        # IPv6 datagrams only: IPv4-mapped ones of a dual-stack socket may fragment
        return [] if _IPV6_DONTFRAG is None else [(socket.IPPROTO_IPV6, _IPV6_DONTFRAG, 1)]
    return [] if bsd is None else [(socket.IPPROTO_IP, bsd, 1)]


def _set_dont_fragment(sock: socket.socket, platform: str) -> bool:
    """Set Don't Fragment (RFC 9000 §14, RFC 8899 §4.4); False where it cannot be."""
    options = _dont_fragment_options(sock.family, platform)
    if not options:
        return False
    try:
        for level, option, value in options:
            sock.setsockopt(level, option, value)
    except OSError:
        logger.debug("Don't Fragment unavailable on this socket")
        return False
    return True


#: The control message data of each ECN codepoint (RFC 3168 §5), packed once.
_ECN_VALUES = tuple(struct.pack("=i", codepoint) for codepoint in range(4))


def _is_ipv4(family: int, addr: Any) -> bool:
    if family == socket.AF_INET:
        return True
    host = addr[0] if isinstance(addr, tuple) and addr else ""
    return isinstance(host, str) and host.startswith("::ffff:") and "." in host


def send_plain(transport: asyncio.DatagramTransport | None, out: list[tuple[bytes, Any]]) -> None:
    """``(data, addr)`` datagrams through the transport (a socket without ECN marking
    or segmentation offload); a datagram that cannot go is logged and dropped."""
    if out and transport is not None and not transport.is_closing():
        sendto = transport.sendto
        for data, addr in out:
            try:
                sendto(data, addr)
            except Exception as exc:  # e.g. an address the socket cannot reach
                logger.debug("UDP send to %r failed: %r", addr, exc)


def send_marked(sock: socket.socket, data: bytes, addr: Any, ecn: int, family: int = 0) -> None:
    """Send one datagram with ECN codepoint ``ecn`` (RFC 3168 §5) in its IP header;
    raises OSError as ``sendto`` would (BlockingIOError when the buffer is full).
    ``family``: the socket's address family if the caller knows it (else read)."""
    family = family or sock.family
    if family == socket.AF_INET or _is_ipv4(family, addr):  # the first test: no call
        level, kind = socket.IPPROTO_IP, _IP_TOS
    else:
        level, kind = socket.IPPROTO_IPV6, _IPV6_TCLASS
    if kind is None:
        raise OSError("no ECN control message on this platform")
    value = _ECN_VALUES[ecn] if 0 <= ecn < 4 else struct.pack("=i", ecn)
    sock.sendmsg([data], [(level, kind, value)], 0, addr)


def ecn_messages(family: int) -> tuple[list[tuple[int, int, bytes]], ...] | None:
    """The control messages :func:`send_marked` passes to ``sendmsg`` for each ECN
    codepoint (index 0 to 3) on an IPv4 socket of ``family``, built once: a caller that
    sends one datagram per round trip calls ``sendmsg`` with them itself (issue 10).
    None for another family (an IPv6 socket decides per address) or without IP_TOS."""
    if family != socket.AF_INET or _IP_TOS is None:
        return None
    return tuple([(socket.IPPROTO_IP, _IP_TOS, value)] for value in _ECN_VALUES)


def _ecn_of(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The ECN field (the low two bits of TOS / Traffic Class) of a received datagram."""
    for level, kind, value in ancillary:
        if not value:
            continue
        if level == socket.IPPROTO_IP and kind == _IP_TOS:
            return value[0] & 3  # one byte (Linux), or an int whose first byte it is
        if level == socket.IPPROTO_IPV6 and kind == _IPV6_TCLASS and len(value) >= 4:
            tclass: int = struct.unpack("=i", value[:4])[0]
            return tclass & 3
    return 0


def enlarge_buffers(transport: asyncio.BaseTransport) -> tuple[int, int]:
    """Room for a whole congestion window of bursts: with the default (~200 KB, about 90
    datagrams) the kernel drops packets the peer's window allows. Returns the
    ``(SO_RCVBUF, SO_SNDBUF)`` the kernel granted (read back: Linux caps a request at
    ``net.core.rmem_max``/``wmem_max`` and reports twice the usable size; ``(0, 0)``
    without a socket); a grant under the request is logged at debug level."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0, 0
    granted = []
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        try:
            granted.append(int(sock.getsockopt(socket.SOL_SOCKET, option)))
        except OSError:
            granted.append(0)
    if min(granted) < SOCKET_BUFFER:
        logger.debug(
            "UDP socket buffers: asked %d, granted receive %d / send %d (raise "
            "net.core.rmem_max / wmem_max for bursts of many connections)",
            SOCKET_BUFFER,
            granted[0],
            granted[1],
        )
    return granted[0], granted[1]


def raw_socket(transport: asyncio.BaseTransport) -> socket.socket | None:
    """The transport's own socket, or None: ``get_extra_info("socket")`` where that is a
    real socket (:class:`quic.aio.owned.OwnedDatagramTransport`), else ``transport._sock``
    (an asyncio internal: asyncio's ``get_extra_info("socket")`` wrapper has no
    ``sendmsg``/``recvmsg``; uvloop's transport has neither)."""
    raw = transport.get_extra_info("socket")
    if type(raw) is socket.socket:
        return raw
    raw = getattr(transport, "_sock", None)
    return raw if isinstance(raw, socket.socket) else None


def soon_caller(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], None]
) -> Callable[[], object]:
    """A function of no arguments that has ``loop`` call ``callback`` at its next
    iteration, as ``loop.call_soon(callback)`` does (the pump's flush: once per round
    trip of a ping-pong, issue 10).

    On asyncio's own loops out of debug mode it appends one handle, made here, to the
    loop's ready queue (``loop._ready``, an asyncio internal: what ``call_soon`` ends
    with) — a C call instead of ``call_soon``'s checks, a new ``Handle`` and a copy of
    the context each time. The handle runs ``callback`` in an empty context of its own
    and is never cancelled; ``callback`` must be safe to find queued more than once
    (the pump's flush is guarded by its own flag). Any other loop (uvloop, a loop in
    debug mode, a future asyncio without the deque) gets ``loop.call_soon``.
    """
    ready = getattr(loop, "_ready", None)
    if (
        isinstance(loop, asyncio.BaseEventLoop)
        and isinstance(ready, collections.deque)
        and not loop.get_debug()
    ):
        handle = asyncio.Handle(callback, (), loop, contextvars.Context())
        return functools.partial(ready.append, handle)
    return functools.partial(loop.call_soon, callback)


def ready_queue(loop: asyncio.AbstractEventLoop) -> collections.deque[Any] | None:
    """The loop's ready queue (``loop._ready``, the asyncio internal :func:`soon_caller`
    appends to) where :func:`soon_caller` uses it, else None: the pump reads whether
    anything is waiting to run in this iteration (see "Replies made at once" in
    :mod:`quic.aio.pump`). Only read, never changed."""
    ready = getattr(loop, "_ready", None)
    if (
        isinstance(loop, asyncio.BaseEventLoop)
        and isinstance(ready, collections.deque)
        and not loop.get_debug()
    ):
        return ready
    return None


def take_over_reading(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.BaseTransport,
    on_readable: Callable[[socket.socket], None],
) -> bool:
    """Read the transport's socket ourselves; True if done, False to keep the fallback.

    One of the two functions of the driver that use asyncio internals (the other is
    :func:`soon_caller`):

    * ``transport._sock`` — the raw socket (``get_extra_info("socket")`` gives a
      wrapper that must not be read from);
    * ``transport.pause_reading()`` — the transport unregisters its own reader (closing
      the transport still unregisters the file descriptor);
    * ``loop._add_reader`` — registers ``on_readable(sock)`` for the descriptor; the
      public ``add_reader`` refuses a descriptor owned by a transport.

    Call it after ``connection_made`` returned (the transport registers its reader
    right after that callback). A transport that owns its socket
    (:class:`quic.aio.owned.OwnedDatagramTransport`: uvloop and every loop but the
    selector loop) offers the same through its public ``read_with``. When neither
    works — the proactor loop on Windows, a future asyncio — nothing is changed and
    False is returned: the transport keeps calling ``datagram_received``, one datagram
    per callback, which is correct, only slower under bursts.
    """
    read_with = getattr(transport, "read_with", None)
    if read_with is not None:
        if transport.is_closing():
            return False
        read_with(on_readable)
        return True
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


def _probe(sock: socket.socket) -> tuple[int, bytearray]:
    """``(descriptor, buffer)`` for :func:`_drained`; descriptor -1 where there is no
    ``FIONREAD`` (the reader then stops at the first read that fails)."""
    if _ioctl is None:
        return -1, bytearray()
    return sock.fileno(), bytearray(4)


def read_batch(
    sock: socket.socket,
    feed: Callable[[bytes, Any], None],
    on_error: Callable[[OSError], None],
    limit: int = RECEIVE_BATCH,
) -> int:
    """Feed up to ``limit`` waiting datagrams of a non-blocking socket; returns how many."""
    recvfrom = sock.recvfrom
    count = 0
    fd, room = _probe(sock)
    while count < limit:
        if count and fd >= 0 and _drained(fd, room):
            break  # the batch took everything: no read that fails with EAGAIN
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


def read_batch_ecn(
    sock: socket.socket,
    feed: Callable[[bytes, Any, float, int], None],
    on_error: Callable[[OSError], None],
    limit: int = RECEIVE_BATCH,
    feed_many: Callable[[list[bytes], Any, float, int], object] | None = None,
    now: float = 0.0,
) -> int:
    """:func:`read_batch` that also reads each datagram's ECN field (``recvmsg``; the
    socket was set up by :func:`configure_path_options`) and feeds ``(data, addr, now,
    ecn)`` — ``now``: the batch's time, passed through, so that ``feed`` can be
    ``QuicEndpoint.receive_datagram`` itself (no call between, per datagram); the
    datagrams of one GRO read go to ``feed_many`` in one call when it is given, and a
    true result from it ends the batch there (the rest stays in the socket)."""
    space = _ANCILLARY_SPACE + GRO_ANCILLARY_SPACE
    count = 0
    ioctl = _ioctl
    fd = -1 if ioctl is None else sock.fileno()  # _probe(), inline: per wake-up
    room = bytearray(4)
    while count < limit:
        if count and fd >= 0:  # _drained(fd, room), inline: per wake-up
            try:
                ioctl(fd, _FIONREAD, room)  # type: ignore[misc]  # fd >= 0: set
            except OSError:
                pass  # "not drained": the read decides
            else:
                if room == _NOTHING:
                    break  # the batch took everything: no read that fails with EAGAIN
        try:
            data, ancillary, _flags, addr = sock.recvmsg(65536, space)  # no bound method
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:
            on_error(exc)
            break
        count += 1
        if not ancillary:
            feed(data, addr, now, 0)
            continue
        if len(ancillary) == 1:  # per datagram, the common case: the ECN field alone
            level, kind, value = ancillary[0]
            if kind == _IP_TOS and level == _IPPROTO_IP and value:
                feed(data, addr, now, value[0] & 3)  # as _ecn_of; no GRO segment size
                continue
        ecn = _ecn_of(ancillary)
        segment = gro_segment_size(ancillary)  # several datagrams glued by GRO
        if segment and len(data) > segment:
            pieces = split_coalesced(data, segment)
            if feed_many is not None:
                if feed_many(pieces, addr, now, ecn):
                    break
            else:
                for piece in pieces:
                    feed(piece, addr, now, ecn)
        else:
            feed(data, addr, now, ecn)
    return count


def enable_error_queue(sock: socket.socket | None) -> bool:
    """Make ICMP errors reach an unconnected socket (Linux ``IP_RECVERR`` /
    ``IPV6_RECVERR``; see the module docstring); False where it cannot be set."""
    if sock is None or sys.platform != "linux":
        return False
    options = _ERROR_LEVELS if sock.family == socket.AF_INET6 else _ERROR_LEVELS[:1]
    enabled = False
    for level, option in options:  # a dual-stack socket: IPv4-mapped peers need both
        try:
            sock.setsockopt(level, option, 1)
            enabled = True
        except OSError:
            pass
    return enabled


def read_error_queue(sock: socket.socket, limit: int = ERROR_QUEUE_BATCH) -> list[tuple[int, Any]]:
    """Take up to ``limit`` errors off the socket's error queue: ``(errno, address the
    failed datagram was sent to)`` each (errno 0: not an extended error)."""
    errors: list[tuple[int, Any]] = []
    while len(errors) < limit:
        try:
            _data, ancillary, _flags, addr = sock.recvmsg(1, 256, _MSG_ERRQUEUE)
        except OSError:  # empty (EAGAIN), or nothing of the kind on this platform
            break
        code = 0
        for level, kind, payload in ancillary:
            if (level, kind) in _ERROR_LEVELS and len(payload) >= _EXTENDED_ERR.size:
                code = _EXTENDED_ERR.unpack_from(payload)[0]
        errors.append((code, addr))
    return errors
