"""Fail fast: an ICMP port unreachable ends a handshake at once; it never ends an
established connection (RFC 8085 §5.2: a hint). Real UDP sockets on 127.0.0.1 (Linux
reports ICMP errors there; elsewhere these tests are skipped)."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys

import pytest

from quic.aio import ConnectionClosed, ConnectionUnreachable, QuicSession, connect, serve
from quic.aio.pump import QuicEndpointProtocol
from quic.aio.udp import enable_error_queue, read_error_queue
from quic.configuration import QuicConfiguration
from tests.quic.test_aio import client_config, server_config

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux ICMP error queue")


def free_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` that nothing listens on (bound, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def has_ipv6_loopback() -> bool:
    try:
        free_port("::1")
    except OSError:
        return False
    return True


def pump_of(session: QuicSession) -> QuicEndpointProtocol:
    pump = session._protocol
    assert isinstance(pump, QuicEndpointProtocol)
    return pump


def test_error_queue_reports_the_refused_destination() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        assert enable_error_queue(sock)
        sock.settimeout(2.0)
        sock.sendto(b"x" * 100, ("127.0.0.1", port))
        with pytest.raises(ConnectionRefusedError):  # the report of the queued error
            sock.recvfrom(2048)
        sock.setblocking(False)
        assert read_error_queue(sock) == [(errno.ECONNREFUSED, ("127.0.0.1", port))]
        assert read_error_queue(sock) == []  # drained


def test_error_queue_is_off_without_a_socket() -> None:
    assert not enable_error_queue(None)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_connect_to_a_port_nobody_listens_on_fails_at_once(host: str) -> None:
    if ":" in host and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    loop = asyncio.get_running_loop()
    port = free_port(host)
    config = client_config()
    start = loop.time()
    with pytest.raises(ConnectionUnreachable) as info:
        async with asyncio.timeout(8.0):  # the old behaviour: this timeout (or later)
            async with connect(host, port, config):
                pass
    elapsed = loop.time() - start
    assert elapsed < 2.0, elapsed  # generous: it takes one round trip to the kernel
    exc = info.value
    assert isinstance(exc, ConnectionRefusedError) and isinstance(exc, ConnectionClosed)
    assert exc.errno == errno.ECONNREFUSED
    assert f"{host} port {port}" in str(exc)
    assert (exc.host, exc.port, exc.by_peer) == (host, port, False)
    assert exc.error_code == 0x02  # CONNECTION_REFUSED (RFC 9000 §20.1), our own close


async def ping_until_errors(session: QuicSession, pings: int) -> int:
    """Send ``pings`` PINGs to a peer that is gone, one per loop turn; wait for their ICMP
    errors to be drained; returns how many were counted."""
    pump = pump_of(session)
    before = pump.icmp_errors
    for uid in range(pings):
        session.connection.send_ping(uid)
        pump.transmit_now(session.connection)
        await asyncio.sleep(0)
    async with asyncio.timeout(5.0):
        while pump.icmp_errors - before < pings // 2:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # stragglers
    return pump.icmp_errors - before


async def test_icmp_errors_never_end_an_established_connection() -> None:
    server = await serve("127.0.0.1", 0, server_config())
    config: QuicConfiguration = client_config()
    config.idle_timeout = 60.0
    async with connect("127.0.0.1", server.port, config) as session:
        server.close()  # the server's socket is gone: every packet now draws an ICMP error
        await server.wait_closed()
        pump = pump_of(session)
        raw = pump._errors
        assert raw is not None
        counted = await ping_until_errors(session, 10)
        assert counted >= 5
        assert not session.is_closed  # a hint only: the peer had answered
        assert pump.unreachable == 0
        # every error was taken off the queue (but one that has just arrived: the
        # connection's own probe timeouts keep drawing errors too)
        assert len(read_error_queue(raw)) <= 1

        # bounded: the reader's work grows with the errors (no EPOLLERR busy loop)
        wakeups = pump.read_wakeups
        small = await ping_until_errors(session, 25)
        small_wakeups = pump.read_wakeups - wakeups
        wakeups = pump.read_wakeups
        large = await ping_until_errors(session, 100)
        large_wakeups = pump.read_wakeups - wakeups
        assert small and large
        assert small_wakeups <= 3 * small + 5, (small_wakeups, small)
        assert large_wakeups <= 3 * large + 5, (large_wakeups, large)
        assert large_wakeups / max(small_wakeups, 1) < 4 * 1.5 + 1
        assert len(read_error_queue(raw)) <= 1
        assert not session.is_closed
