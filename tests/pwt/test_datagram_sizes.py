"""WebTransport datagram sizes follow the path MTU (docs/datagrams.md), over loopback.

Path MTU discovery is on by default; loopback carries the 1452-byte probes, so a
session is offered 1452 - 32 (QUIC) - 1 (Quarter Stream ID) = 1419 bytes once the
probe is acknowledged, and a datagram of that size goes both ways between our client
and our server.
"""

from __future__ import annotations

import asyncio

import pytest

from pywebtransport import DatagramTooLarge, WebTransportClient, WebTransportSession
from tests.pwt.pwt_support import TIMEOUT, client_config, echo, running

BASE = 1200 - 32 - 1
DISCOVERED = 1452 - 32 - 1


async def _discovered(session: WebTransportSession) -> None:
    async with asyncio.timeout(TIMEOUT):
        while session.max_datagram_size != DISCOVERED:
            assert session.max_datagram_size in (BASE, DISCOVERED)  # never anything else
            await asyncio.sleep(0.01)


async def test_session_is_offered_the_discovered_size_and_it_round_trips() -> None:
    async with running() as h, WebTransportClient(client_config()) as client:
        h.handler = echo
        session = await client.connect(h.url())
        await _discovered(session)
        diag = session.diagnostics()
        assert diag["path_max_datagram_size"] == 1452
        assert diag["max_datagram_size"] == DISCOVERED
        data = bytes(i % 256 for i in range(DISCOVERED))
        async with asyncio.timeout(TIMEOUT):
            # the echo server probed its own path to 1452 too; retry until it has
            while True:
                session.send_datagram(data)
                try:
                    async with asyncio.timeout(0.2):
                        assert await session.receive_datagram() == data
                    break
                except TimeoutError:
                    continue
        with pytest.raises(DatagramTooLarge) as info:
            session.send_datagram(bytes(DISCOVERED + 1))
        assert info.value.max_size == DISCOVERED
        assert session.diagnostics()["datagrams_dropped_too_large"] == 0
