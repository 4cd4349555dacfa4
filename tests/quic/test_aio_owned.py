"""quic.aio.owned: a UDP socket of our own keeps batched reading (and ECN, GRO, GSO) on
loops without asyncio's selector internals (uvloop), over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

import quic.aio.owned as owned_module
from quic.aio import QuicEndpointProtocol, connect, serve
from quic.aio.owned import OwnedDatagramTransport, open_datagram_endpoint
from tests.quic.test_aio import client_config, echo_stream, server_config

T = TypeVar("T")


def run_on_uvloop(main: Callable[[], Awaitable[T]]) -> T:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())  # type: ignore[arg-type]


async def echo_upload(size: int) -> tuple[QuicEndpointProtocol, QuicEndpointProtocol]:
    """Our client uploads ``size`` bytes to our echo server; returns both pumps."""
    scfg, ccfg = server_config(), client_config()
    # 1452-byte datagrams, as the counts assume (not loopback's 65,507: quic.aio.mtu)
    scfg.pmtud_interface_mtu = ccfg.pmtud_interface_mtu = False
    server = await serve("127.0.0.1", 0, scfg, stream_handler=echo_stream)
    async with server, connect("127.0.0.1", server.port, ccfg) as session:
        reader, writer = await session.create_stream()
        payload = os.urandom(size)
        writer.write(payload)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 30) == payload
        return server.protocol, session._protocol


def test_uvloop_keeps_batched_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """On uvloop both pumps read their own socket: several datagrams per wake-up, and a
    burst reaches the session as few merged stream events (counters, not times)."""
    monkeypatch.setenv("QUIC_UDP_OFFLOAD", "0")  # one datagram per read: countable
    server, client = run_on_uvloop(lambda: echo_upload(2_000_000))
    for pump in (server, client):
        assert isinstance(pump.transport, OwnedDatagramTransport)
        assert pump.batched_reading
        assert pump.datagrams_read > 1000  # ~1,400 full datagrams each way
        assert pump.datagrams_read > 2 * pump.read_wakeups  # batches, not one by one
        # merged per batch by the connection (DeferredDelivery) or by the pump
        assert pump.events_dispatched < pump.datagrams_read // 2


def test_uvloop_gets_ecn_gro_and_gso_on_its_own_socket() -> None:
    """What the raw socket gives the selector loop, uvloop now has too (Linux)."""
    server, client = run_on_uvloop(lambda: echo_upload(1_000_000))
    for pump in (server, client):
        assert pump._raw is pump.transport.get_extra_info("socket")
        assert min(pump.socket_buffers) > 0  # the kernel's grant, read back
        if os.uname().sysname == "Linux":
            assert pump.path_options.ecn and pump.gro and pump._gso


def test_uvloop_fallback_reader_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without our own socket uvloop's transport feeds the pump datagram by datagram;
    the events of full-sized datagrams still reach the session merged per burst."""
    monkeypatch.setattr(owned_module, "owned_by_default", lambda loop: False)
    server, client = run_on_uvloop(lambda: echo_upload(1_000_000))
    for pump in (server, client):
        assert not isinstance(pump.transport, OwnedDatagramTransport)
        assert not pump.batched_reading and pump.read_wakeups == 0
        assert pump.events_dispatched < pump.datagrams_read  # merged per burst


def test_uvloop_client_migrates_to_a_new_socket() -> None:
    """rebind() opens the new socket, switches, and closes the old one (its
    connection_made has run when open_datagram_endpoint returns)."""

    async def run() -> None:
        server = await serve("127.0.0.1", 0, server_config(), stream_handler=echo_stream)
        async with server, connect("127.0.0.1", server.port, client_config()) as session:
            pump = session._protocol
            old = pump.transport
            for _ in range(200):  # the handshake must be confirmed before migrating
                if session.connection.handshake_confirmed:
                    break
                await asyncio.sleep(0.01)
            reader, writer = await session.create_stream()
            payload = os.urandom(300_000)
            writer.write(payload[:100_000])
            await writer.drain()
            await session.migrate()
            assert isinstance(pump.transport, OwnedDatagramTransport)
            assert pump.transport is not old and old is not None and old.is_closing()
            writer.write(payload[100_000:])
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 20) == payload
            assert not pump.closed.done()
            await asyncio.sleep(0)
            assert old.get_extra_info("socket").fileno() == -1  # the old socket is gone

    run_on_uvloop(run)


def test_uvloop_server_listens_on_its_preferred_address_too() -> None:
    async def run() -> None:
        config = server_config()
        config.preferred_address = ("127.0.0.1", 0)
        server = await serve("127.0.0.1", 0, config, stream_handler=echo_stream)
        assert config.preferred_address[1] not in (0, server.port)
        async with server, connect("127.0.0.1", server.port, client_config()) as session:
            assert isinstance(server.protocol.extra_sockets[0], OwnedDatagramTransport)
            reader, writer = await session.create_stream()
            writer.write(b"via the preferred address")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 20) == b"via the preferred address"

    run_on_uvloop(run)


# -- the transport itself, on the asyncio loop -----------------------------------------------


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.errors: list[Exception] = []
        self.lost = asyncio.get_running_loop().create_future()
        self.made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


async def open_owned() -> tuple[OwnedDatagramTransport, Collector]:
    loop = asyncio.get_running_loop()
    transport, protocol = await open_datagram_endpoint(
        loop, Collector, ("127.0.0.1", 0), owned=True
    )
    assert isinstance(transport, OwnedDatagramTransport) and isinstance(protocol, Collector)
    await asyncio.sleep(0)  # connection_made, then reading starts
    return transport, protocol


async def test_owned_transport_reads_a_burst_per_wake_up_and_sends() -> None:
    transport, protocol = await open_owned()
    assert protocol.made and transport.get_extra_info("sockname")[0] == "127.0.0.1"
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        address = transport.get_extra_info("sockname")
        for i in range(50):  # all queued in the kernel before the loop looks
            peer.sendto(b"d%d" % i, address)
        await until(lambda: len(protocol.received) == 50)
        assert protocol.received == [b"d%d" % i for i in range(50)]
        assert transport.read_wakeups <= 3  # RECEIVE_BATCH (32) per wake-up
        transport.sendto(b"back", peer.getsockname())
        peer.settimeout(5)
        assert peer.recv(100) == b"back"
    finally:
        peer.close()
        transport.close()
    assert await asyncio.wait_for(protocol.lost, 5) is None
    assert transport.get_extra_info("socket").fileno() == -1


class FullSocket(socket.socket):
    """A real UDP socket whose send buffer is full while ``full`` is set."""

    full = False
    fail: OSError | None = None

    def sendto(self, data: Any, *args: Any) -> int:  # type: ignore[override]
        if self.fail is not None:
            raise self.fail
        if self.full:
            raise BlockingIOError
        return super().sendto(data, *args)


async def test_a_full_send_buffer_queues_in_order_up_to_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(owned_module, "SEND_QUEUE_BYTES", 1000)
    loop = asyncio.get_running_loop()
    sock = FullSocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(5)
    protocol = Collector()
    transport = OwnedDatagramTransport(loop, sock, protocol)
    try:
        await asyncio.sleep(0)
        sock.full = True
        for i in range(12):  # 12 x 100 bytes: 10 fit the 1,000-byte queue
            transport.sendto(bytes([i]) * 100, sink.getsockname())
        assert transport.get_write_buffer_size() == 1000
        assert transport.dropped == 2
        sock.full = False  # room again: the writer sends the queue, in order
        await until(lambda: transport.get_write_buffer_size() == 0)
        assert [sink.recv(200)[0] for _ in range(10)] == list(range(10))
        transport.sendto(b"direct", sink.getsockname())
        assert sink.recv(200) == b"direct"
        sock.fail = OSError(113, "No route to host")  # other errors: error_received
        transport.sendto(b"x", sink.getsockname())
        assert [e.errno for e in protocol.errors if isinstance(e, OSError)] == [113]
        sock.fail = None
        sock.full = True
        transport.sendto(b"last", sink.getsockname())
        transport.close()  # what is queued still goes before the socket closes
        assert not protocol.lost.done()
        sock.full = False
        assert await asyncio.wait_for(protocol.lost, 5) is None
        assert sink.recv(200) == b"last"
    finally:
        sink.close()
        transport.abort()


async def test_abort_drops_the_queue() -> None:
    loop = asyncio.get_running_loop()
    sock = FullSocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    protocol = Collector()
    transport = OwnedDatagramTransport(loop, sock, protocol)
    await asyncio.sleep(0)
    sock.full = True
    transport.sendto(b"queued", ("127.0.0.1", 9))
    transport.close()
    transport.abort()
    assert transport.get_write_buffer_size() == 0
    assert await asyncio.wait_for(protocol.lost, 5) is None
    assert sock.fileno() == -1


async def test_a_loop_without_add_reader_gets_the_loops_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proactor loop (Windows) has no add_reader: the loop's own transport is used."""
    monkeypatch.setattr(owned_module, "_add_reader_works", lambda loop, sock: False)
    loop = asyncio.get_running_loop()
    transport, _ = await open_datagram_endpoint(loop, Collector, ("127.0.0.1", 0), owned=True)
    try:
        assert not isinstance(transport, OwnedDatagramTransport)
    finally:
        transport.close()


async def test_the_selector_loop_keeps_asyncios_transport() -> None:
    server = await serve("127.0.0.1", 0, server_config(), stream_handler=echo_stream)
    async with server:
        await asyncio.sleep(0)
        assert not isinstance(server.transport, OwnedDatagramTransport)
        assert server.protocol.batched_reading
