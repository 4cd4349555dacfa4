"""A minimal rebinding UDP relay (a NAT in front of the client) for migration tests.

The client talks to the relay's front socket; the relay forwards to the server from an
*upstream* socket, and back. :meth:`RebindingRelay.rebind` replaces the upstream socket
with a new one — a new port, or a new loopback address as well — and closes the old one,
as a NAT that drops a binding does: the server sees the client move (RFC 9000 §9.3) and
packets it still sends to the old address are lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

Addr = tuple[str, int]


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: RebindingRelay) -> None:
        self.relay = relay
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.relay.upstream is self:  # an old binding no longer forwards
            self.relay.to_client(data)


class RebindingRelay(asyncio.DatagramProtocol):
    """client ⇄ front socket ⇄ relay ⇄ upstream socket (rebindable) ⇄ server."""

    def __init__(self, server: Addr, host: str) -> None:
        self.server = server
        self.host = host
        self.front: asyncio.DatagramTransport | None = None
        self.upstream: _Upstream | None = None
        self.client: Any = None
        self.rebinds = 0
        self.upstream_addresses: list[Addr] = []

    @classmethod
    async def start(cls, server: Addr, host: str = "127.0.0.1") -> RebindingRelay:
        loop = asyncio.get_running_loop()
        relay = cls(server, host)
        await loop.create_datagram_endpoint(lambda: relay, local_addr=(host, 0))
        await relay._bind_upstream(host)
        return relay

    @property
    def port(self) -> int:
        assert self.front is not None
        return int(self.front.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.front = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client = addr
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.sendto(data, self.server)

    def to_client(self, data: bytes) -> None:
        if self.front is not None and self.client is not None:
            self.front.sendto(data, self.client)

    async def _bind_upstream(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        old = self.upstream
        _, upstream = await loop.create_datagram_endpoint(
            lambda: _Upstream(self), local_addr=(host, 0)
        )
        self.upstream = upstream
        assert upstream.transport is not None
        self.upstream_addresses.append(upstream.transport.get_extra_info("sockname")[:2])
        if old is not None and old.transport is not None:
            old.transport.close()

    async def rebind(self, host: str | None = None) -> None:
        """A new upstream binding: a new port, on ``host`` if given (a new address)."""
        self.rebinds += 1
        await self._bind_upstream(host or self.host)

    async def rebind_every(self, interval: float, hosts: Sequence[str] = ()) -> None:
        """Rebind every ``interval`` seconds until cancelled, cycling through ``hosts``
        (empty: port changes only)."""
        index = 0
        while True:
            await asyncio.sleep(interval)
            host = hosts[index % len(hosts)] if hosts else None
            index += 1
            await self.rebind(host)

    def close(self) -> None:
        if self.front is not None:
            self.front.close()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()
