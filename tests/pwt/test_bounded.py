"""Issue 8 on the asyncio API, over real sockets on 127.0.0.1: a reader that does not
read holds at most the windows it advertised (finding 11), datagram queues and the
backlog of untaken streams are bounded, every table is back to idle after N and 4N
sessions (finding 9), and nothing escapes the QUIC event callback (finding 10).
Memory is measured by counters (unread bytes, queue lengths, table sizes)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from h3.errors import H3ErrorCode
from pywebtransport import (
    ConnectionFailed,
    SessionClosed,
    WebTransportClient,
    WebTransportSession,
    WebTransportStream,
)
from tests.pwt.pwt_support import TIMEOUT, Harness, client_config, running

pytestmark = pytest.mark.timeout(120)

KIB = 1024


@asynccontextmanager
async def pair(
    server: dict[str, Any] | None = None, **client: Any
) -> AsyncIterator[tuple[WebTransportSession, WebTransportSession, Harness]]:
    async with (
        running(**(server or {})) as h,
        WebTransportClient(client_config("draft16", **client)) as c,
    ):
        session = await c.connect(h.url())
        yield session, await h.next_session(), h


async def until_quiet(probe: Any, rounds: int = 5, pause: float = 0.05) -> Any:
    """Wait until ``probe()`` stops changing for ``rounds`` checks in a row."""
    last, same = probe(), 0
    while same < rounds:
        await asyncio.sleep(pause)
        value = probe()
        same = same + 1 if value == last else 0
        last = value
    return last


async def accepted_streams(server: WebTransportSession, count: int) -> list[WebTransportStream]:
    async with asyncio.timeout(TIMEOUT):
        return [await server.accept_bidirectional_stream() for _ in range(count)]


@pytest.mark.parametrize("window", [64 * KIB, 256 * KIB])
async def test_unread_streams_hold_at_most_their_windows(window: int) -> None:
    """Four streams each written 16 windows, none read: each holds at most its stream
    window, the session at most WT_MAX_DATA; then everything arrives intact."""
    server = {
        "initial_max_stream_data": window,
        "stream_receive_buffer": window,
        "wt_initial_max_data": 2 * window,
    }
    total = 16 * window
    payload = bytes(range(256)) * (total // 256)
    async with pair(server) as (client, srv, _):
        ours = [await client.create_bidirectional_stream() for _ in range(4)]
        writers = [asyncio.create_task(s.write_all(payload)) for s in ours]
        theirs = await accepted_streams(srv, 4)
        held = await until_quiet(lambda: [s.unread for s in theirs])
        assert max(held) <= window  # a stream: its QUIC window, not 16 of them
        assert sum(held) <= 2 * window  # the session: its WT_MAX_DATA window
        assert not any(w.done() for w in writers)  # the writers are blocked
        async with asyncio.timeout(TIMEOUT):
            received = await asyncio.gather(*(s.read_all() for s in theirs))
            await asyncio.gather(*writers)
        assert all(r == payload for r in received)


@pytest.mark.parametrize("factor", [4, 16])
async def test_datagram_queue_is_bounded(factor: int) -> None:
    limit = 16
    server = {"datagram_queue_size": limit, "datagram_queue_bytes": 8 * 100}
    async with pair(server) as (client, srv, _):
        for i in range(factor * limit):
            client.send_datagram(b"%03d" % i + bytes(97))
            if i % 8 == 7:
                await asyncio.sleep(0.01)
        received = await until_quiet(lambda: srv.datagrams_received)
        assert received > limit  # most arrived (loopback)
        assert srv.diagnostics()["datagrams_dropped"] == received - 8  # bytes: 8 of 100
        kept = [await srv.receive_datagram(timeout=TIMEOUT) for _ in range(8)]
        assert [d[:3] for d in kept] == sorted(d[:3] for d in kept)  # the newest, in order


@pytest.mark.parametrize("factor", [2, 8])
async def test_untaken_streams_are_bounded(factor: int) -> None:
    backlog = 8
    async with pair({"stream_backlog": backlog, "initial_max_streams_uni": 1000}) as (
        client,
        srv,
        h,
    ):
        for _ in range(factor * backlog):
            stream = await client.create_unidirectional_stream()
            await stream.write_all(b"")  # empty: it ends at once, its credit comes back
        await until_quiet(lambda: srv.streams_accepted)
        assert srv.streams_accepted == backlog  # the rest were refused (§4.7)
        assert h.server.table_sizes()["link_streams"] <= backlog


async def session_round(client: WebTransportClient, h: Harness, index: int) -> None:
    session = await client.connect(h.url(f"/round{index}"))
    stream = await session.create_bidirectional_stream()
    await stream.write_all(b"ping %d" % index)
    async with asyncio.timeout(TIMEOUT):
        assert await stream.read_all() == b"ping %d" % index
    session.send_datagram(b"dgram")
    uni = await session.create_unidirectional_stream()
    await uni.write_all(b"one way")
    doomed = await session.create_bidirectional_stream()
    await doomed.write(b"abandoned")
    doomed.reset(3)
    await session.close(index % 5, "done")


async def echo_handler(request: Any) -> None:
    session = await request.accept()

    async def bidi() -> None:
        async for stream in session.incoming_bidirectional_streams():
            try:
                data = await stream.read_all()
                await stream.write_all(data)
            except Exception:  # the reset one
                stream.stop_receiving(1)

    async def unis() -> None:
        async for stream in session.incoming_unidirectional_streams():
            await stream.read_all()

    tasks = [asyncio.create_task(bidi()), asyncio.create_task(unis())]
    await session.wait_closed()
    for task in tasks:
        task.cancel()


@pytest.mark.parametrize("count", [8, 32])
async def test_tables_are_idle_after_sessions(count: int) -> None:
    async with running() as h, WebTransportClient(client_config("draft16")) as client:
        h.handler = echo_handler
        for index in range(count):
            await session_round(client, h, index)
        sizes = await until_quiet(lambda: h.server.table_sizes())
        assert sizes["sessions"] == 0 and sizes["pending_requests"] == 0
        assert not any(v for k, v in sizes.items() if k.startswith(("link_", "core_")))
        assert h.server.stats()["sessions_total"] == count


async def test_a_bug_in_the_link_closes_only_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    async with running() as h, WebTransportClient(client_config("draft16")) as client:
        session = await client.connect(h.url())
        await h.next_session()
        (link,) = h.server._links

        def bug(event: Any) -> None:
            raise RuntimeError("a bug of ours")

        link.wt.handle_event = bug  # type: ignore[method-assign]
        link.wt.datagram_route = bug  # type: ignore[method-assign,assignment]  # datagrams ask first
        for _ in range(5):
            session.send_datagram(b"boom")
        async with asyncio.timeout(TIMEOUT):
            closed = await session.wait_closed()
        assert closed.http_code == H3ErrorCode.H3_INTERNAL_ERROR
        with pytest.raises((SessionClosed, ConnectionFailed)):
            session.send_datagram(b"after")
        # the server goes on serving other connections
        other = await client.connect(h.url())
        second = await h.next_session()
        stream = await other.create_bidirectional_stream()
        await stream.write_all(b"fine")
        async with asyncio.timeout(TIMEOUT):
            theirs = await second.accept_bidirectional_stream()
            assert await theirs.read_all() == b"fine"
    failures = [r for r in caplog.records if r.name == "pywebtransport" and r.exc_info]
    assert len(failures) == 1  # logged once for the connection
    assert not [r for r in caplog.records if r.name == "asyncio"]  # nothing escaped


def test_server_config_carries_the_admission_limits() -> None:
    from pywebtransport import ServerConfig
    from quic.aio import wall_clock
    from quic.tls.selfsigned import generate_self_signed

    cert = generate_self_signed(wall_clock())
    config = ServerConfig(
        certificate_chain=[cert.certificate],
        private_key=cert.private_key,
        max_connections_per_address=7,
        max_half_open_connections=9,
        handshake_timeout=3.5,
    )
    quic = config.quic_configuration()
    assert quic.max_connections_per_address == 7
    assert quic.max_half_open_connections == 9
    assert quic.handshake_timeout == 3.5
