"""Client connections sharing one UDP socket (quic.aio.shared.SharedSockets), over real
UDP on 127.0.0.1: one socket for N connections, leases, migration off the shared
socket, per-connection ICMP errors, and the endpoint's tables emptied at the end."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import sys

import pytest

from quic.aio import ConnectionUnreachable, QuicSession, connect, serve
from quic.aio.pump import QuicEndpointProtocol
from quic.aio.shared import SharedSockets
from tests.quic.test_aio import client_config, echo_stream, server_config
from tests.quic.test_aio_failfast import free_port

TIMEOUT = 10.0


def pump_of(session: QuicSession) -> QuicEndpointProtocol:
    pump = session._protocol
    assert isinstance(pump, QuicEndpointProtocol)
    return pump


async def echo_once(session: QuicSession, payload: bytes) -> bytes:
    reader, writer = await session.create_stream()
    writer.write(payload)
    writer.write_eof()
    async with asyncio.timeout(TIMEOUT):
        return await reader.read()


async def open_many(
    stack: contextlib.AsyncExitStack, port: int, sockets: SharedSockets, count: int
) -> list[QuicSession]:
    return list(
        await asyncio.gather(
            *(
                stack.enter_async_context(
                    connect("127.0.0.1", port, client_config(), sockets=sockets)
                )
                for _ in range(count)
            )
        )
    )


@pytest.mark.parametrize("count", [4, 16])
async def test_connections_share_one_socket_and_leave_nothing_behind(count: int) -> None:
    """N connections opened at once: one socket (the racing acquires open one), every
    connection works; once they are closed the endpoint's tables are empty while the
    socket lives on, and the last lease closes the socket — the same at N and 4N."""
    sockets = SharedSockets()
    server = await serve("127.0.0.1", 0, server_config(), stream_handler=echo_stream)
    async with server:
        keeper = await sockets.acquire(socket.AF_INET)  # holds the socket past the sessions
        async with contextlib.AsyncExitStack() as stack:
            sessions = await open_many(stack, server.port, sockets, count)
            pump = pump_of(sessions[0])
            assert all(pump_of(s) is pump for s in sessions) and pump is keeper
            assert sockets.sockets == 1 and pump.shared and sockets.users(pump) == count + 1
            assert len(pump.endpoint.connections) == count
            echoes = await asyncio.gather(
                *(echo_once(s, b"%d" % i * 50) for i, s in enumerate(sessions))
            )
            assert echoes == [b"%d" % i * 50 for i in range(count)]
            cids = {s.connection.host_cid for s in sessions}
            assert len(cids) == count  # told apart by connection ID (RFC 9000 §5.2)
        assert sockets.users(pump) == 1
        async with asyncio.timeout(TIMEOUT):  # closing periods end (RFC 9000 §10.2)
            while pump.endpoint.connections or pump.sessions:
                await asyncio.sleep(0.02)
        assert pump.endpoint.route_count == 0 and pump.endpoint.reset_token_count == 0
        sockets.release(keeper)
        assert sockets.sockets == 0 and sockets.users(pump) == 0
        async with asyncio.timeout(TIMEOUT):
            await pump.closed  # the last lease closed the socket


async def test_a_failed_connect_gives_its_lease_back() -> None:
    """A handshake that fails (nobody answers: ICMP unreachable) releases its lease: with
    no other user the socket closes."""
    if sys.platform != "linux":
        pytest.skip("Linux ICMP error queue")
    sockets = SharedSockets()
    port = free_port()
    with pytest.raises(ConnectionUnreachable):
        async with asyncio.timeout(TIMEOUT):
            async with connect("127.0.0.1", port, client_config(), sockets=sockets):
                pass
    assert sockets.sockets == 0


async def test_icmp_unreachable_ends_only_the_connection_it_names() -> None:
    """With a live connection on the shared socket, a connect to a port nobody listens
    on fails at once with that port's error, and the live connection goes on."""
    if sys.platform != "linux":
        pytest.skip("Linux ICMP error queue")
    sockets = SharedSockets()
    server = await serve("127.0.0.1", 0, server_config(), stream_handler=echo_stream)
    async with server, connect("127.0.0.1", server.port, client_config(), sockets=sockets) as live:
        dead_port = free_port()
        with pytest.raises(ConnectionUnreachable) as info:
            async with asyncio.timeout(TIMEOUT):
                async with connect("127.0.0.1", dead_port, client_config(), sockets=sockets):
                    pass
        assert info.value.errno == errno.ECONNREFUSED and f"port {dead_port}" in str(info.value)
        assert live.unreachable == 0 and not live.is_closed
        assert await echo_once(live, b"still here") == b"still here"
        assert sockets.sockets == 1 and sockets.users(pump_of(live)) == 1


async def test_a_migrating_connection_moves_to_a_socket_of_its_own() -> None:
    """migrate() on a shared socket (RFC 9000 §9.2): that connection alone moves to a
    new socket and goes on from there; the others stay on the shared one; each socket
    closes when its last user is done."""
    sockets = SharedSockets()
    server = await serve("127.0.0.1", 0, server_config(), stream_handler=echo_stream)
    async with server:
        async with contextlib.AsyncExitStack() as stack:
            first, second, third = await open_many(stack, server.port, sockets, 3)
            shared = pump_of(first)
            for session in (first, second, third):
                async with asyncio.timeout(TIMEOUT):
                    while not session.connection.handshake_confirmed:
                        await asyncio.sleep(0.01)
            reader, writer = await second.create_stream()
            writer.write(b"before " * 100)
            await second.migrate()
            own = pump_of(second)
            assert own is not shared and not own.shared
            assert own.local_address[1] != shared.local_address[1]
            assert second.connection not in shared.sessions
            assert second.connection in own.endpoint.connections
            assert sockets.users(shared) == 2 and len(shared.endpoint.connections) == 2
            writer.write(b"after " * 100)
            writer.write_eof()
            async with asyncio.timeout(TIMEOUT):
                assert await reader.read() == b"before " * 100 + b"after " * 100
            for session in (first, third):
                assert await echo_once(session, b"unmoved") == b"unmoved"
        async with asyncio.timeout(TIMEOUT):
            await shared.closed
            await own.closed
        assert sockets.sockets == 0


async def test_connect_refuses_a_local_port_with_a_shared_socket() -> None:
    with pytest.raises(ValueError):
        async with connect("127.0.0.1", 9, client_config(), local_port=5555,
                           sockets=SharedSockets()):  # fmt: skip
            pass


async def test_close_ends_every_shared_socket() -> None:
    sockets = SharedSockets()
    server = await serve("127.0.0.1", 0, server_config(), stream_handler=echo_stream)
    async with server, connect("127.0.0.1", server.port, client_config(), sockets=sockets) as s:
        pump = pump_of(s)
        sockets.close()
        async with asyncio.timeout(TIMEOUT):
            await pump.closed
            await s.wait_closed()
        assert sockets.sockets == 0


async def test_racing_acquires_survive_a_socket_that_fails_to_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two acquires race; the first one's bind fails: it raises, the other does not hang
    but opens the socket itself, and both leases count on that one socket."""
    import quic.aio.shared as shared_module

    real = shared_module.open_client_pump
    calls: list[int] = []

    async def flaky(*args: object, **kwargs: object) -> QuicEndpointProtocol:
        calls.append(1)
        await asyncio.sleep(0.01)  # the second acquire arrives while this one opens
        if len(calls) == 1:
            raise OSError(errno.EADDRINUSE, "bind failed")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shared_module, "open_client_pump", flaky)
    sockets = SharedSockets()
    first, second = await asyncio.gather(
        sockets.acquire(socket.AF_INET), sockets.acquire(socket.AF_INET), return_exceptions=True
    )
    assert isinstance(first, OSError) and isinstance(second, QuicEndpointProtocol)
    assert len(calls) == 2 and sockets.sockets == 1 and sockets.users(second) == 1
    third = await sockets.acquire(socket.AF_INET)
    assert third is second and sockets.users(second) == 2 and len(calls) == 2
    sockets.release(second)
    sockets.release(third)
    assert sockets.sockets == 0
    async with asyncio.timeout(TIMEOUT):
        await second.closed
