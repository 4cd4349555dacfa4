"""The local interface's MTU toward a peer: DPLPMTUD's MAX_PLPMTU (RFC 8899 §5.1.2).

Theory of operation
-------------------
RFC 8899 §5.1.2 bounds MAX_PLPMTU by the largest packet the outgoing interface can
send. Only the driver can ask: on Linux a UDP socket connected to the peer (``connect``
on a datagram socket sends nothing, it picks the route) reports the route's MTU with
``IP_MTU`` / ``IPV6_MTU``; the largest UDP payload is that less the IP and UDP headers
(28 bytes for IPv4; 48 for an IPv6 socket, even towards an IPv4-mapped address, where
it is 20 bytes too careful). When the connection's configuration opts in
(``pmtud_interface_mtu``, off by default) the pump tells a new connection
(:meth:`quic.conn_pmtu.PmtuDiscovery.set_local_limit`) before its search begins, so
the search goes on above the configured size (probed first) up to that one: 1472 on a
1500-byte IPv4 Ethernet link, 65507 on IPv4 loopback (MTU 65536), where a bulk
transfer then costs a fraction of the packets — and of the per-packet CPU — that
1452-byte datagrams cost. Paths narrower than the interface are found by the search as
before (RFC 8899 §5.3).

Where the option does not exist (another platform) or the kernel refuses, the answer
is None and the configured ``pmtud_max_datagram_size`` stays the bound. Answers are
kept per peer host in a table of at most :data:`CACHE_SIZE` entries (emptied when
full): a server accepting many connections from one host asks the kernel once.
"""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quic.connection import QuicConnection

__all__ = ["CACHE_SIZE", "InterfaceMtu", "interface_payload_limit"]

_IP_MTU = 14  # <linux/in.h>
_IPV6_MTU = 24  # <linux/in6.h>
#: IP + UDP headers subtracted from the route's MTU, per socket family.
_OVERHEAD: dict[int, int] = {socket.AF_INET: 20 + 8, socket.AF_INET6: 40 + 8}
_LEVEL: dict[int, tuple[int, int]] = {
    socket.AF_INET: (socket.IPPROTO_IP, _IP_MTU),
    socket.AF_INET6: (socket.IPPROTO_IPV6, _IPV6_MTU),
}
#: Peer hosts whose answer is kept (see the module docstring).
CACHE_SIZE = 256
_SMALLEST = 1200  # RFC 9000 §14: a path below this cannot carry QUIC at all


def interface_payload_limit(family: int, addr: Any) -> int | None:
    """The largest UDP payload the route to ``addr`` (an address of a ``family`` socket)
    can send from this host, or None where it cannot be read (see the module docstring)."""
    level = _LEVEL.get(family)
    if level is None or not sys.platform.startswith("linux"):
        return None
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(addr)
            mtu = probe.getsockopt(*level)
    except (OSError, TypeError, ValueError, OverflowError):
        return None
    size = mtu - _OVERHEAD[family]
    return size if size >= _SMALLEST else None


class InterfaceMtu:
    """:func:`interface_payload_limit` per peer host, remembered (bounded)."""

    __slots__ = ("_known", "family", "lookups")

    def __init__(self, family: int = 0) -> None:
        self.family = family  # the pump's socket's (0: unknown, nothing is asked)
        self._known: dict[Any, int | None] = {}
        self.lookups = 0  # questions the kernel was asked (tests)

    def __len__(self) -> int:
        return len(self._known)

    def limit(self, addr: Any) -> int | None:
        """The largest UDP payload toward ``addr`` (a peer's socket address), or None."""
        if not isinstance(addr, tuple) or len(addr) < 2 or self.family not in _LEVEL:
            return None
        host = addr[0] if len(addr) < 4 else (addr[0], addr[3])  # IPv6: and its scope
        known = self._known
        if host in known:
            return known[host]
        if len(known) >= CACHE_SIZE:
            known.clear()
        self.lookups += 1
        size = known[host] = interface_payload_limit(self.family, addr)
        return size

    def tell(self, conn: QuicConnection, addr: Any) -> None:
        """The interface's largest UDP payload toward ``addr`` bounds the new
        connection's DPLPMTUD search (RFC 8899 §5.1.2), if its configuration asks."""
        size = self.limit(addr) if conn.pmtu.wants_local_limit else None
        if size is not None:
            conn.pmtu.set_local_limit(size)
