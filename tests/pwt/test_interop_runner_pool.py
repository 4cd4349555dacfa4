"""``WebTransportClient.connect(url, pool_with=session)``: several sessions on one QUIC
connection (draft-ietf-webtrans-http3-16 §3), which the runner's multi-endpoint
requests need (it counts exactly one handshake). In process, on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from pywebtransport import SessionRejected, SessionRequest, WebTransportClient
from tests.pwt.pwt_support import client_config, running

pytestmark = pytest.mark.timeout(60)


async def accept_or_reject(request: SessionRequest) -> None:
    if request.path == "/refused":
        await request.reject(404)
        return
    session = await request.accept()
    async for stream in session.incoming_bidirectional_streams():
        await stream.write_all(request.path.encode() + b":" + await stream.read_all())


async def roundtrip(session: object, data: bytes) -> bytes:
    stream = await session.create_bidirectional_stream()  # type: ignore[attr-defined]
    await stream.write_all(data)
    return bytes(await stream.read_all())


async def test_pooled_sessions_share_one_connection_and_close_it_last() -> None:
    async with running(max_sessions=8) as harness:
        harness.handler = accept_or_reject
        async with WebTransportClient(client_config("draft16", max_sessions=4)) as client:
            first = await client.connect(harness.url("/one"))
            second = await client.connect(harness.url("/two"), pool_with=first)
            third = await client.connect(harness.url("/three"), pool_with=second)
            assert first.link is second.link is third.link
            assert harness.server.stats()["connections_total"] == 1
            assert await roundtrip(second, b"x") == b"/two:x"
            # a refused pooled CONNECT leaves the shared connection alone
            with pytest.raises(SessionRejected):
                await client.connect(harness.url("/refused"), pool_with=first)
            await first.close()
            await second.close()
            assert await roundtrip(third, b"y") == b"/three:y"
            assert not third.link.is_closed
            await third.close()
            # the last session gone: the client closes the connection
            for _ in range(500):
                if third.link.is_closed:
                    break
                await asyncio.sleep(0.01)
            assert third.link.is_closed
        assert harness.server.stats()["connections_total"] == 1
