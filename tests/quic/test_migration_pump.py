"""The asyncio pump of a server with a preferred address (RFC 9000 §9.6), over real UDP
sockets on 127.0.0.1: it keeps no state per peer address (each datagram leaves the
socket its connection chose), so a flood of datagrams from many addresses costs linear
work and no memory, and cannot take a live connection's socket away."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from typing import Any

from quic.aio import connect, serve
from quic.aio.pump import QuicEndpointProtocol
from tests.quic.test_aio import client_config, echo_stream, server_config


def _address(i: int) -> tuple[str, int]:
    return (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 443)


async def _flood_then_echo(n: int) -> tuple[int, int, dict[int, int]]:
    """A client moves to the server's preferred address; then ``n`` datagrams from
    ``n`` addresses arrive on each of the server's two sockets (too short to be QUIC:
    dropped). Returns the bytes the flood left allocated in the pump, the datagrams the
    endpoint dropped, and the datagrams of an echo afterwards by the server socket they
    left (0 main, 1 preferred)."""
    config = server_config()
    config.preferred_address = ("127.0.0.1", 0)
    server = await serve("127.0.0.1", 0, config, stream_handler=echo_stream)
    pump: QuicEndpointProtocol = server.protocol
    preferred = config.preferred_address
    sent_from: dict[int, int] = {0: 0, 1: 0}
    routed = pump._send_routed

    def count(out: list[tuple[bytes, Any, int, int]]) -> None:
        for item in out:
            sent_from[item[3]] += 1
        routed(out)

    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        conn = session.connection
        for _ in range(300):
            server_conns = pump.endpoint.connections
            if server_conns and server_conns[0].paths.current.local == 1:
                break
            await asyncio.sleep(0.01)
        assert conn.peer_address[1] == preferred[1]
        assert pump.endpoint.connections[0].paths.current.local == 1  # §9.6.2: moved
        extra = pump.extra_sockets[0]
        dropped = pump.endpoint.dropped
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for i in range(n):
                pump.datagram_received_on(extra, b"\x40", _address(i))
                pump.datagram_received(b"\x40", _address(i))
            await asyncio.sleep(0.05)  # the flushes scheduled by the flood
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        held = sum(
            stat.size_diff
            for stat in after.compare_to(before, "filename")
            if stat.traceback[0].filename.endswith(os.path.join("aio", "pump.py"))
        )
        dropped = pump.endpoint.dropped - dropped
        pump._send_routed = count  # type: ignore[method-assign]
        reader, writer = await session.create_stream()
        payload = os.urandom(100_000)
        writer.write(payload)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 20) == payload
    return held, dropped, sent_from


async def test_pump_state_does_not_grow_with_peer_addresses_n_vs_4n() -> None:
    """N vs 4N addresses: the endpoint drops every datagram (work linear), the pump
    keeps nothing for them (before: one reply-socket entry per address, up to 65,536,
    then the whole table cleared), and the live connection's datagrams still leave the
    preferred address's socket (the connection decides, RFC 9000 §9.6.2)."""
    held_n, dropped_n, sent_n = await _flood_then_echo(2_000)
    held_4n, dropped_4n, sent_4n = await _flood_then_echo(8_000)
    assert dropped_n == 4_000 and dropped_4n == 16_000  # two sockets each
    assert held_n < 4_096 and held_4n < 4_096  # no table: nothing per address
    for sent in (sent_n, sent_4n):
        assert sent[1] > 50  # the echo: all from the preferred socket
        assert sent[0] == 0
