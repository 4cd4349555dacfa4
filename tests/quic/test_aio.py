"""The asyncio layer over real UDP sockets on 127.0.0.1 (our client ↔ our server)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from quic.aio import (
    ConnectionClosed,
    QuicSession,
    QuicStreamReader,
    QuicStreamWriter,
    connect,
    serve,
)
from quic.configuration import QuicConfiguration
from quic.errors import StreamResetError
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


async def test_connect_to_silent_port_times_out_cleanly() -> None:
    cfg = client_config()
    cfg.idle_timeout = 0.5
    with pytest.raises(ConnectionClosed):
        async with connect("127.0.0.1", 9, cfg):
            pass
