"""The asyncio layer over real UDP sockets on 127.0.0.1 (our client ↔ our server)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from typing import Any

import pytest

import quic.aio.pump as pump_module
from quic.aio import (
    ConnectionClosed,
    QuicSession,
    QuicStreamReader,
    QuicStreamWriter,
    connect,
    serve,
)
from quic.aio.udp import take_over_reading
from quic.configuration import QuicConfiguration
from quic.errors import StreamResetError, TransportErrorCode
from quic.events import QuicEvent, StreamDataReceived
from tests.support.quicpair import certificate


def server_config() -> QuicConfiguration:
    cert = certificate()
    cfg = QuicConfiguration(is_client=False, alpn_protocols=["test"])
    cfg.certificate_chain = [cert.certificate]
    cfg.private_key = cert.private_key
    return cfg


def client_config() -> QuicConfiguration:
    return QuicConfiguration(
        is_client=True,
        alpn_protocols=["test"],
        server_certificate_hashes=(certificate().sha256,),
    )


async def echo_stream(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
    writer.write_eof()


async def echo_datagrams(session: QuicSession) -> None:
    while True:
        session.send_datagram(await session.receive_datagram())


async def test_echo_stream_and_datagrams_over_udp() -> None:
    server = await serve(
        "127.0.0.1", 0, server_config(), echo_datagrams, stream_handler=echo_stream
    )
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        assert session.alpn_protocol == "test"
        reader, writer = await session.create_stream()
        payload = os.urandom(2_000_000)
        writer.write(payload)
        writer.write_eof()
        echoed = await reader.read()
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
        session.send_datagram(b"dgram")
        assert await asyncio.wait_for(session.receive_datagram(), 5) == b"dgram"


async def test_concurrent_streams_and_application_close() -> None:
    closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def handler(session: QuicSession) -> None:
        term = await session.wait_closed()
        closed.set_result((term.error_code, term.reason_phrase))

    server = await serve("127.0.0.1", 0, server_config(), handler, stream_handler=echo_stream)
    async with server:
        async with connect("127.0.0.1", server.port, client_config()) as session:

            async def one(i: int) -> bytes:
                reader, writer = await session.create_stream()
                writer.write(b"stream %d" % i)
                writer.write_eof()
                return await reader.read()

            results = await asyncio.gather(*(one(i) for i in range(100)))
            assert results == [b"stream %d" % i for i in range(100)]
            await session.aclose(7, "done here")
        assert await asyncio.wait_for(closed, 5) == (7, "done here")


async def test_stream_reset_reaches_reader() -> None:
    async def resetter(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
        await reader.read(1)
        writer.reset(33)

    server = await serve("127.0.0.1", 0, server_config(), stream_handler=resetter)
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        reader, writer = await session.create_stream()
        writer.write(b"x")
        with pytest.raises(StreamResetError) as info:
            await asyncio.wait_for(reader.read(), 5)
        assert info.value.error_code == 33


async def test_reliable_reset_delivers_its_bytes_then_raises() -> None:
    # draft-ietf-quic-reliable-stream-reset: RESET_STREAM_AT through the asyncio streams
    payload = os.urandom(50_000)

    async def resetter(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
        await reader.read(1)
        writer.write(payload + b"never delivered" * 1000)
        writer.reset(33, reliable_size=len(payload))

    server = await serve("127.0.0.1", 0, server_config(), stream_handler=resetter)
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        assert session.connection.peer_accepts_reset_stream_at
        reader, writer = await session.create_stream()
        writer.write(b"x")
        got = await asyncio.wait_for(reader.readexactly(len(payload)), 5)
        assert got == payload
        with pytest.raises(StreamResetError) as info:
            await asyncio.wait_for(reader.read(), 5)
        assert info.value.error_code == 33


async def test_connect_to_silent_port_times_out_cleanly() -> None:
    cfg = client_config()
    cfg.idle_timeout = 0.5
    with pytest.raises(ConnectionClosed):
        async with connect("127.0.0.1", 9, cfg):
            pass


# -- finding 11: credit on consumption ------------------------------------------------------


async def _unread_stream(window: int) -> int:
    """A server stream nobody reads while the client tries to send 16 windows: the
    bytes it holds; then reading delivers everything, byte-exact."""
    cfg = server_config()
    cfg.initial_max_stream_data = window
    readers: asyncio.Queue[QuicStreamReader] = asyncio.Queue()

    def keep(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
        readers.put_nowait(reader)  # and never read (yet)

    payload = os.urandom(16 * window)
    server = await serve("127.0.0.1", 0, cfg, stream_handler=keep)
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        _, writer = await session.create_stream()
        writer.write(payload)
        writer.write_eof()
        reader = await asyncio.wait_for(readers.get(), 5)
        async with asyncio.timeout(10):
            while reader.buffered < window:
                await asyncio.sleep(0.01)
        held = []
        for _ in range(20):  # twenty more round trips: the sender stays blocked
            await asyncio.sleep(0.01)
            held.append(reader.buffered)
        sid = writer.stream_id
        assert session.connection.streams.send_buffered(sid) >= 15 * window
        data = await asyncio.wait_for(reader.read(), 20)
        assert hashlib.sha256(data).digest() == hashlib.sha256(payload).digest()
        return max(held)


async def test_a_stream_that_is_not_read_holds_at_most_its_window() -> None:
    """Before: quic.aio credited on delivery, so an unread stream buffered all it got
    (64 MB in 9 s). Now the reader returns credit as the application reads."""
    small = await _unread_stream(64 * 1024)
    large = await _unread_stream(256 * 1024)
    assert small <= 64 * 1024
    assert large <= 256 * 1024
    assert large / small <= 4.0  # bounded by the window, not by what the peer sends


async def test_reader_methods_over_quic() -> None:
    async def lines(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
        writer.write(b"one\ntwo\r\nthree|four" + bytes(10) + b"tail")
        writer.write_eof()

    server = await serve("127.0.0.1", 0, server_config(), stream_handler=lines)
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        reader, writer = await session.create_stream()
        writer.write(b"go")
        assert await reader.readline() == b"one\n"
        assert await reader.readuntil(b"\r\n") == b"two\r\n"
        assert await reader.readuntil(b"|") == b"three|"
        assert await reader.readexactly(4) == b"four"
        assert await reader.read(10) == bytes(10)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readexactly(10)
        assert info.value.partial == b"tail"
        assert reader.at_eof() and await reader.read() == b""


async def test_readline_beyond_the_limit_fails_instead_of_stalling() -> None:
    """The limit is at most the stream window: a peer cannot stall readline by filling
    the window without a newline."""
    cfg = client_config()
    cfg.initial_max_stream_data = 4096

    async def no_newline(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
        writer.write(b"x" * 10_000)
        writer.write_eof()

    server = await serve("127.0.0.1", 0, server_config(), stream_handler=no_newline)
    async with server, connect("127.0.0.1", server.port, cfg) as session:
        reader, writer = await session.create_stream()
        writer.write(b"go")
        with pytest.raises(ValueError):
            await asyncio.wait_for(reader.readline(), 5)


async def test_finished_streams_leave_the_session_tables() -> None:
    sessions: list[QuicSession] = []

    async def keep(session: QuicSession) -> None:
        sessions.append(session)

    server = await serve("127.0.0.1", 0, server_config(), keep, stream_handler=echo_stream)
    async with server:
        async with connect("127.0.0.1", server.port, client_config()) as session:

            async def one(i: int) -> bytes:
                reader, writer = await session.create_stream()
                writer.write(b"stream %d" % i)
                writer.write_eof()
                return await reader.read()

            for _ in range(3):
                results = await asyncio.gather(*(one(i) for i in range(100)))
                assert results == [b"stream %d" % i for i in range(100)]
            async with asyncio.timeout(5):
                while session.open_streams or sessions[0].open_streams:
                    await asyncio.sleep(0.01)
            assert len(server.protocol.sessions) == 1
        async with asyncio.timeout(5):
            while server.protocol.sessions:  # ConnectionRemoved: the session leaves too
                await asyncio.sleep(0.05)
        assert server.endpoint.connections == []


# -- no exception escapes an asyncio callback ----------------------------------------------


async def test_a_failing_event_listener_closes_only_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An application callback raising inside the pump: that connection is closed with
    INTERNAL_ERROR (logged once); the batch goes on and the others are served."""
    first: list[QuicSession] = []

    def setup(session: QuicSession) -> None:
        if first:
            return
        first.append(session)

        def broken(event: QuicEvent) -> bool:
            if isinstance(event, StreamDataReceived):
                raise RuntimeError("injected bug")
            return False

        session.event_listener = broken

    server = await serve(
        "127.0.0.1", 0, server_config(), stream_handler=echo_stream, session_setup=setup
    )
    with caplog.at_level(logging.ERROR, logger="quic"):
        async with (
            server,
            connect("127.0.0.1", server.port, client_config()) as victim,
            connect("127.0.0.1", server.port, client_config()) as other,
        ):
            (vr, vw), (orr, ow) = await victim.create_stream(), await other.create_stream()
            vw.write(b"boom")
            ow.write(b"fine")
            vw.write_eof()
            ow.write_eof()
            assert await asyncio.wait_for(orr.read(), 5) == b"fine"
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(vr.read(), 5)
            assert info.value.error_code == TransportErrorCode.INTERNAL_ERROR
            assert info.value.by_peer
    failures = [r for r in caplog.records if "event listener failed" in r.getMessage()]
    assert len(failures) == 1
    assert not [r for r in caplog.records if "Exception in callback" in r.getMessage()]


async def test_a_failing_stream_handler_closes_only_its_connection() -> None:
    calls = []
    tasks: set[asyncio.Task[None]] = set()

    def handler(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected bug")
        tasks.add(asyncio.ensure_future(echo_stream(reader, writer)))

    server = await serve("127.0.0.1", 0, server_config(), stream_handler=handler)
    async with server:
        async with connect("127.0.0.1", server.port, client_config()) as victim:
            reader, writer = await victim.create_stream()
            writer.write(b"boom")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(reader.read(), 5)
        async with connect("127.0.0.1", server.port, client_config()) as other:
            reader, writer = await other.create_stream()
            writer.write(b"fine")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b"fine"


# -- asyncio internals behind one function, with a fallback --------------------------------


async def test_batched_reading_is_used_on_the_selector_loop() -> None:
    server = await serve("127.0.0.1", 0, server_config(), stream_handler=echo_stream)
    async with server:
        await asyncio.sleep(0)
        assert server.protocol.batched_reading


def test_take_over_reading_declines_without_the_internals() -> None:
    class Plain:
        def is_closing(self) -> bool:
            return False

    async def run() -> bool:
        loop = asyncio.get_running_loop()
        return take_over_reading(loop, Plain(), lambda sock: None)  # type: ignore[arg-type]

    assert asyncio.run(run()) is False


async def test_fallback_reader_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the take-over (uvloop, proactor), the transport's own one-datagram-per-
    iteration reader feeds the pump: same bytes, same behaviour."""
    monkeypatch.setattr(pump_module, "take_over_reading", lambda *args: False)
    scfg, ccfg = server_config(), client_config()
    # 1452-byte datagrams, as the counts below assume (not loopback's 65,507)
    scfg.pmtud_interface_mtu = ccfg.pmtud_interface_mtu = False
    server = await serve("127.0.0.1", 0, scfg, stream_handler=echo_stream)
    async with server, connect("127.0.0.1", server.port, ccfg) as session:
        assert not server.protocol.batched_reading
        reader, writer = await session.create_stream()
        payload = os.urandom(1_000_000)
        writer.write(payload)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 20) == payload
        # the events of a burst's full-sized datagrams reach the session merged, not one
        # per datagram (before: ~730 datagrams, 0 merged, ~730 events dispatched); the
        # connection itself now delivers a batch's stream data as one event (quic.
        # conn_streams DeferredDelivery), so the pump rarely has anything left to merge
        pump = server.protocol
        assert pump.read_wakeups == 0 and pump.datagrams_read > 600
        assert pump.events_dispatched < pump.datagrams_read // 2


async def test_streams_beyond_the_peer_limit_wait_for_credit() -> None:
    cfg = server_config()
    cfg.initial_max_streams_bidi = 4
    server = await serve("127.0.0.1", 0, cfg, stream_handler=echo_stream)
    async with server, connect("127.0.0.1", server.port, client_config()) as session:

        async def one(i: int) -> bytes:
            reader, writer = await session.create_stream()
            writer.write(b"n%d" % i)
            writer.write_eof()
            return await reader.read()

        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(40))), 20)
        assert results == [b"n%d" % i for i in range(40)]


async def test_a_failing_callback_does_not_skip_the_rest_of_the_batch_or_its_transmit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One pump pass over events of two connections: the first one's listener raises;
    the second still gets its event, and the batch's datagrams are still sent."""
    from collections import deque

    from quic.aio import QuicEndpointProtocol, wall_clock
    from quic.connection import ConnectionState, QuicConnection

    config = client_config()
    config.clock = wall_clock
    victim, bystander = QuicConnection(config), QuicConnection(config)

    class Endpoint:
        last_flushed = [victim, bystander]

        def __init__(self) -> None:
            self.events = deque(
                [
                    (victim, StreamDataReceived(1, b"boom", False)),
                    (bystander, StreamDataReceived(1, b"fine", False)),
                ]
            )

        def next_event(self) -> Any:
            return self.events.popleft() if self.events else None

        def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
            return [(b"batch", ("127.0.0.1", 9))]

        has_pending_output = False  # no build stopped at its cap

        def get_timer(self) -> None:
            return None

        def wake(self, connection: QuicConnection) -> None:
            pass

    class Transport:
        sent: list[bytes] = []

        def is_closing(self) -> bool:
            return False

        def sendto(self, data: bytes, addr: Any) -> None:
            self.sent.append(data)

    protocol = QuicEndpointProtocol(Endpoint())  # type: ignore[arg-type]
    protocol.transport = Transport()  # type: ignore[assignment]
    sessions = {conn: QuicSession(protocol, conn) for conn in (victim, bystander)}
    protocol.sessions.update(sessions)

    def broken(event: QuicEvent) -> bool:
        raise RuntimeError("injected bug")

    sessions[victim].event_listener = broken
    with caplog.at_level(logging.ERROR, logger="quic"):
        protocol._transmit()
    reader, _ = sessions[bystander]._incoming.get_nowait()
    assert await reader.read(4) == b"fine"
    assert Transport.sent == [b"batch"]
    assert victim.state is ConnectionState.CLOSING  # closed with INTERNAL_ERROR
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1


def test_uvloop_reads_its_own_socket_in_batches() -> None:
    """uvloop has none of the selector-loop internals: the driver binds its own socket
    (quic.aio.owned) and the pump reads it in batches (tests/quic/test_aio_owned.py)."""
    uvloop = pytest.importorskip("uvloop")

    async def run() -> bool:
        server = await serve("127.0.0.1", 0, server_config(), stream_handler=echo_stream)
        async with server, connect("127.0.0.1", server.port, client_config()) as session:
            reader, writer = await session.create_stream()
            payload = os.urandom(500_000)
            writer.write(payload)
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 20) == payload
            return server.protocol.batched_reading

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(run()) is True


async def test_client_migrates_to_a_new_socket_mid_transfer() -> None:
    """RFC 9000 §9.2: QuicSession.migrate() moves to a new local port; the server
    follows (§9.3) and the transfer completes byte-exact."""
    server_sessions: list[QuicSession] = []

    def remember(session: QuicSession) -> None:
        server_sessions.append(session)

    server = await serve(
        "127.0.0.1", 0, server_config(), stream_handler=echo_stream, session_setup=remember
    )
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        protocol = session._protocol
        before = protocol.local_address
        for _ in range(100):  # the handshake must be confirmed before migrating
            if session.connection.handshake_confirmed:
                break
            await asyncio.sleep(0.01)
        reader, writer = await session.create_stream()
        payload = os.urandom(1_000_000)
        writer.write(payload[:300_000])
        await writer.drain()
        await session.migrate()
        after = protocol.local_address
        assert after[1] != before[1]
        writer.write(payload[300_000:])
        writer.write_eof()
        echoed = await asyncio.wait_for(reader.read(), 20)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
        server_conn = server_sessions[0].connection
        assert server_conn.peer_address[1] == after[1]
        assert server_conn.paths.migrations >= 1
        assert not protocol.closed.done()  # the old socket's close did not end the pump


async def test_client_moves_to_the_servers_preferred_address_over_udp() -> None:
    """RFC 9000 §9.6: the server listens on its preferred address too; the client
    validates it, moves there, and the transfer completes through that socket."""
    config = server_config()
    config.preferred_address = ("127.0.0.1", 0)
    server = await serve("127.0.0.1", 0, config, stream_handler=echo_stream)
    preferred = config.preferred_address
    assert preferred[1] != 0 and preferred[1] != server.port
    received: list[int] = []
    pump = server.protocol
    original = pump.datagram_received_on

    def count(transport: Any, data: bytes, addr: Any) -> None:
        received.append(len(data))
        original(transport, data, addr)

    pump.datagram_received_on = count  # type: ignore[method-assign]
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        conn = session.connection
        for _ in range(300):
            if conn.peer_address[1] == preferred[1]:
                break
            await asyncio.sleep(0.01)
        assert conn.peer_address[1] == preferred[1]
        assert conn.cids.peer_active_sequence == 1  # the preferred_address CID
        reader, writer = await session.create_stream()
        payload = os.urandom(500_000)
        writer.write(payload)
        writer.write_eof()
        echoed = await asyncio.wait_for(reader.read(), 20)
        assert echoed == payload
        assert sum(received) > len(payload)  # it all came in through the preferred socket


async def test_a_numeric_host_skips_the_resolver_a_name_uses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a numeric address needs no lookup: connect() parses it inline instead of a trip
    # through the loop's thread pool; a name still goes to loop.getaddrinfo
    loop = asyncio.get_running_loop()
    lookups: list[str] = []
    real = loop.getaddrinfo

    async def counting(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return await real(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", counting)
    server = await serve("127.0.0.1", 0, server_config(), echo_datagrams)
    async with server:
        async with connect("127.0.0.1", server.port, client_config()) as session:
            assert session.alpn_protocol == "test"
        assert lookups == []
        config = client_config()
        config.server_name = "localhost"
        with pytest.raises((OSError, ConnectionClosed, TimeoutError)):
            async with asyncio.timeout(0.5), connect("name.invalid", server.port, config):
                pass
        assert lookups == ["name.invalid"]
