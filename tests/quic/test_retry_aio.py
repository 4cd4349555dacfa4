"""Retry and NEW_TOKEN through the asyncio layer over real UDP on 127.0.0.1, and the
WebTransport configuration fields that reach them (RFC 9000 §8.1.2, §8.1.3)."""

from __future__ import annotations

import asyncio

import pytest

from pywebtransport.config import ClientConfig, ServerConfig
from quic.aio import QuicSession, QuicStreamReader, QuicStreamWriter, connect, serve, wall_clock
from quic.tls.selfsigned import generate_self_signed
from quic.tokens import TokenStore
from tests.quic.test_aio import client_config, server_config

pytestmark = pytest.mark.timeout(60)


async def _echo(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
    writer.write(await reader.read())
    writer.write_eof()


async def _ask(session: QuicSession, data: bytes) -> bytes:
    reader, writer = await session.create_stream()
    writer.write(data)
    writer.write_eof()
    return bytes(await asyncio.wait_for(reader.read(), 10))


async def test_retry_then_new_token_over_udp() -> None:
    """retry="always": the first connection goes through a Retry and gets a NEW_TOKEN
    token; the second presents it, skips the Retry and starts address-validated."""
    config = server_config()
    config.retry = "always"
    server = await serve("127.0.0.1", 0, config, stream_handler=_echo)
    store = TokenStore()
    async with server:
        cfg = client_config()
        cfg.token_store = store
        async with connect("127.0.0.1", server.port, cfg) as session:
            assert session.connection.handshake.retry_received
            assert await _ask(session, b"one") == b"one"
            async with asyncio.timeout(10):
                while not len(store):
                    await asyncio.sleep(0.01)
        cfg = client_config()
        cfg.token_store = store
        async with connect("127.0.0.1", server.port, cfg) as session:
            assert not session.connection.handshake.retry_received
            assert await _ask(session, b"two") == b"two"
        validator = server.endpoint.address_validator
        assert validator is not None
        assert validator.retry_validated == 1 and validator.token_validated == 1


def test_webtransport_configs_carry_retry_and_token_store() -> None:
    cert = generate_self_signed(wall_clock())
    server = ServerConfig(
        certificate_chain=[cert.certificate],
        private_key=cert.private_key,
        retry="always",
        retry_threshold=7,
    ).quic_configuration()
    assert (server.retry, server.retry_threshold) == ("always", 7)
    default = ServerConfig(certificate_chain=[cert.certificate], private_key=cert.private_key)
    assert default.quic_configuration().retry == "auto"
    store = TokenStore()
    assert ClientConfig(token_store=store).quic_configuration("h").token_store is store
    assert ClientConfig().quic_configuration("h").token_store is None
