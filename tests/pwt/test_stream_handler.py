"""``WebTransportSession.set_stream_handler``: the streams the peer opens go to the
handler as they open instead of the incoming iterators; those queued before it was set
are handed to it first; ``None`` queues them again; no backlog applies to handed
streams; a handler that raises aborts its stream and the session goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pywebtransport import (
    SessionRequest,
    StreamReset,
    WebTransportClient,
    WebTransportReceiveStream,
    WebTransportSession,
    WebTransportStream,
)
from tests.pwt.pwt_support import TIMEOUT, client_config, running

pytestmark = pytest.mark.timeout(60)


async def _echo(stream: WebTransportStream, log: list[Any] | None = None) -> None:
    if log is not None:
        log.append(("task", stream.unread))
    data = await stream.read_all()
    await stream.write(data, end_stream=True)


async def test_the_handler_takes_streams_as_they_open() -> None:
    """Bidirectional and unidirectional streams reach the handler, not the iterators;
    the bytes that came with the opening are readable when the handler's task first
    runs (no read waits); queued streams are handed over when the handler is set;
    ``None`` queues them again."""
    handed: list[Any] = []
    log: list[Any] = []
    tasks: set[asyncio.Task[None]] = set()
    server_sessions: list[WebTransportSession] = []
    ready = asyncio.Event()

    def handler(stream: WebTransportStream | WebTransportReceiveStream) -> None:
        handed.append(stream)
        if isinstance(stream, WebTransportStream):
            task = asyncio.ensure_future(_echo(stream, log))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def accept(request: SessionRequest) -> None:
        session = await request.accept()
        server_sessions.append(session)
        ready.set()
        await session.wait_closed()

    async with running() as h, WebTransportClient(client_config()) as client:
        h.handler = accept
        session = await client.connect(h.url())
        async with asyncio.timeout(TIMEOUT):
            await ready.wait()
            (server,) = server_sessions
            early = await session.create_bidirectional_stream()
            await early.write(b"early", end_stream=True)
            while server.streams_accepted < 1:
                await asyncio.sleep(0.01)
            assert not handed  # queued: no handler yet
            server.set_stream_handler(handler)
            assert handed and handed[0].stream_id == early.stream_id  # handed when set
            assert await early.read_all() == b"early"
            for i in range(5):
                stream = await session.create_bidirectional_stream()
                await stream.write(b"request %d" % i, end_stream=True)
                assert await stream.read_all() == b"request %d" % i
            uni = await session.create_unidirectional_stream()
            await uni.write_all(b"one way")
            while len(handed) < 7:
                await asyncio.sleep(0.01)
            assert isinstance(handed[6], WebTransportReceiveStream)
            assert await handed[6].read_all() == b"one way"
            # each later request was readable at its task's first step
            assert log[1:] == [("task", len(b"request %d" % i)) for i in range(5)]
            assert server._incoming_bidi.qsize() == server._incoming_uni.qsize() == 0
            server.set_stream_handler(None)
            queued = await session.create_bidirectional_stream()
            await queued.write(b"queued again", end_stream=True)
            taken = await server.accept_bidirectional_stream()
            assert await taken.read_all() == b"queued again"
            assert len(handed) == 7
            assert server.streams_accepted == 8


async def test_no_backlog_for_handed_streams_and_a_failing_handler_aborts_its_stream() -> None:
    """``stream_backlog`` bounds queued streams only: with a handler, more than it are
    taken; a handler that raises has its stream reset and stopped (code 0), and the
    next stream is handled as usual."""
    backlog = 2
    server_sessions: list[WebTransportSession] = []
    tasks: set[asyncio.Task[None]] = set()
    calls = [0]

    def handler(stream: WebTransportStream | WebTransportReceiveStream) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("the application failed")
        assert isinstance(stream, WebTransportStream)
        task = asyncio.ensure_future(_echo(stream))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def accept(request: SessionRequest) -> None:
        session = await request.accept()
        session.set_stream_handler(handler)
        server_sessions.append(session)
        await session.wait_closed()

    async with running(stream_backlog=backlog) as h, WebTransportClient(client_config()) as client:
        h.handler = accept
        session = await client.connect(h.url())
        async with asyncio.timeout(TIMEOUT):
            failing = await session.create_bidirectional_stream()
            await failing.write(b"x", end_stream=True)
            with pytest.raises(StreamReset):
                await failing.read_all()
            streams = [await session.create_bidirectional_stream() for _ in range(4 * backlog)]
            for i, stream in enumerate(streams):  # all open before any is answered
                await stream.write(b"%d" % i, end_stream=True)
            echoes = [await stream.read_all() for stream in streams]
        assert echoes == [b"%d" % i for i in range(4 * backlog)]
        assert server_sessions[0].streams_accepted == 4 * backlog + 1


@pytest.mark.parametrize("factor", [1, 4])
async def test_handed_streams_stay_within_the_stream_limit(factor: int) -> None:
    """Bounded state: a handler that keeps every stream it is handed open holds at most
    the session's stream limit (``wt_initial_max_streams_bidi``), whether the peer tries
    N or 4N streams; the rest wait for credit at the peer, nothing more is kept here."""
    limit = 4
    held: list[WebTransportStream | WebTransportReceiveStream] = []
    server_sessions: list[WebTransportSession] = []

    async def accept(request: SessionRequest) -> None:
        session = await request.accept()
        session.set_stream_handler(held.append)
        server_sessions.append(session)
        await session.wait_closed()

    async with (
        running(wt_initial_max_streams_bidi=limit) as h,
        WebTransportClient(client_config()) as client,
    ):
        h.handler = accept
        session = await client.connect(h.url())

        async def open_one(i: int) -> None:
            stream = await session.create_bidirectional_stream()
            await stream.write(b"%d" % i)  # held open: no FIN

        openers = [asyncio.ensure_future(open_one(i)) for i in range(factor * limit)]
        async with asyncio.timeout(TIMEOUT):
            while len(held) < limit:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # time for any stream beyond the limit to arrive
        assert len(held) == limit
        assert server_sessions[0].streams_accepted == limit
        assert sum(not t.done() for t in openers) == (factor - 1) * limit
        for task in openers:
            task.cancel()
        await asyncio.gather(*openers, return_exceptions=True)
