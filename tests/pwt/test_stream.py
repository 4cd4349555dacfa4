"""WebTransport stream API over a real client/server pair on 127.0.0.1: read helpers,
iteration, write variants, backpressure, stop_receiving, resets, stream limits."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from pywebtransport import (
    StopReceiving,
    StreamClosed,
    StreamReset,
    WebTransportClient,
    WebTransportSession,
    WebTransportStream,
)
from tests.pwt.pwt_support import DRAFTS, TIMEOUT, client_config, running

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def pair(
    draft: str = "draft16", server: dict[str, Any] | None = None, **client: Any
) -> AsyncIterator[tuple[WebTransportSession, WebTransportSession]]:
    """(client session, server session)"""
    async with (
        running(**(server or {})) as h,
        WebTransportClient(client_config(draft, **client)) as c,
    ):
        session = await c.connect(h.url())
        yield session, await h.next_session()


async def stream_pair(
    client: WebTransportSession, server: WebTransportSession
) -> tuple[WebTransportStream, WebTransportStream]:
    ours = await client.create_bidirectional_stream()
    await ours.write(b"")  # the header opens the stream at the peer
    async with asyncio.timeout(TIMEOUT):
        theirs = await server.accept_bidirectional_stream()
    return ours, theirs


@pytest.mark.parametrize("draft", DRAFTS)
async def test_read_helpers(draft: str) -> None:
    async with pair(draft) as (client, server):
        ours, theirs = await stream_pair(client, server)
        await ours.write(b"line one\nline two\r\nHEADER:value;")
        await ours.write(bytearray(b"0123456789"))
        await ours.write(memoryview(b"xxtail-no-newline")[2:], end_stream=True)
        async with asyncio.timeout(TIMEOUT):
            assert await theirs.readline() == b"line one\n"
            assert await theirs.readuntil(b"\r\n") == b"line two\r\n"
            assert await theirs.readuntil(separator=b";") == b"HEADER:value;"
            assert await theirs.readexactly(4) == b"0123"
            assert await theirs.read(3) == b"456"
            assert await theirs.readexactly(3) == b"789"
            assert await theirs.readline() == b"tail-no-newline"  # at EOF: what is left
            assert await theirs.readline() == b""
            assert await theirs.read() == b""
            assert theirs.at_eof()
        with pytest.raises(StreamClosed):
            await ours.write(b"after the end")


async def test_readexactly_and_readuntil_at_end_of_stream() -> None:
    async with pair() as (client, server):
        ours, theirs = await stream_pair(client, server)
        await ours.write_all(b"abc")
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(asyncio.IncompleteReadError) as short:
                await theirs.readexactly(10)
            assert short.value.partial == b"abc"
        ours, theirs = await stream_pair(client, server)
        await ours.write_all(b"no separator here")
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(asyncio.IncompleteReadError) as missing:
                await theirs.readuntil(b"|")
            assert missing.value.partial == b"no separator here"


async def test_readuntil_limit_keeps_the_data() -> None:
    async with pair() as (client, server):
        ours, theirs = await stream_pair(client, server)
        await ours.write(b"x" * 100 + b"|rest")
        async with asyncio.timeout(TIMEOUT):
            while theirs._size < 105:  # all of it arrived
                await asyncio.sleep(0.01)
            with pytest.raises(asyncio.LimitOverrunError):
                await theirs.readuntil(b"|", limit=50)
            assert await theirs.readuntil(b"|") == b"x" * 100 + b"|"
            assert await theirs.readexactly(4) == b"rest"


async def test_readuntil_finds_a_separator_split_across_chunks() -> None:
    async with pair() as (client, server):
        ours, theirs = await stream_pair(client, server)
        reader = asyncio.create_task(theirs.readuntil(b"\r\n\r\n"))
        for piece in (b"GET / HTTP\r", b"\n\r", b"\nbody"):
            await ours.write(piece)
            await asyncio.sleep(0.02)
        async with asyncio.timeout(TIMEOUT):
            assert await reader == b"GET / HTTP\r\n\r\n"
            await ours.write_all(b"")
            assert await theirs.read_all() == b"body"


async def test_async_iteration_yields_chunks_until_fin() -> None:
    async with pair() as (client, server):
        ours, theirs = await stream_pair(client, server)
        parts = [b"alpha", b"beta", b"gamma"]

        async def send() -> None:
            for part in parts:
                await ours.write(part)
                await asyncio.sleep(0.02)
            await ours.close()

        sender = asyncio.create_task(send())
        async with asyncio.timeout(TIMEOUT):
            received = [chunk async for chunk in theirs]
            await sender
        assert b"".join(received) == b"".join(parts)
        assert len(received) >= 2  # delivered as it arrived, not all at the end


@pytest.mark.parametrize("draft", DRAFTS)
async def test_backpressure_writer_waits_until_the_reader_consumes(draft: str) -> None:
    # credit only returns as the application reads: a stream holds at most its window
    server = {"stream_receive_buffer": 64 * 1024, "initial_max_stream_data": 64 * 1024}
    total = 3 * 1024 * 1024
    chunk = bytes(range(256)) * 256  # 64 KiB
    async with pair(draft, server, stream_send_buffer=256 * 1024) as (client, srv):
        ours, theirs = await stream_pair(client, srv)
        written = 0

        async def writer() -> None:
            nonlocal written
            while written < total:
                await ours.write(chunk)
                written += len(chunk)
            await ours.close()

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.5)
        assert not task.done()
        stalled = written
        assert stalled < 2 * 1024 * 1024  # windows + buffers, far from the total
        assert theirs.unread <= 64 * 1024  # bounded by the stream window it advertised
        await asyncio.sleep(0.2)
        assert written == stalled  # really waiting, not just slow
        async with asyncio.timeout(TIMEOUT):
            received = [data async for data in theirs]
            await task
        assert b"".join(received) == chunk * (total // len(chunk))
        assert written == total


async def test_short_writes_ask_nothing_below_and_long_ones_still_drain() -> None:
    """While all a stream wrote (its header too) stays under the send buffer's mark,
    what QUIC holds of it cannot be above it: write() skips the question (a short
    exchange of the burst asks nothing below); past it, every write asks again."""
    async with pair(stream_send_buffer=4096) as (client, server):
        ours, _theirs = await stream_pair(client, server)
        link = ours._link
        asked: list[int] = []
        real = link.send_buffered

        def counting(stream_id: int) -> int:
            asked.append(stream_id)
            return real(stream_id)

        link.send_buffered = counting
        try:
            await ours.write(b"x" * 64)
            await ours.write(b"y" * 64)
            assert asked == []
            async with asyncio.timeout(TIMEOUT):
                await ours.write(b"z" * 8192)  # beyond the mark: drain() waits for ACKs
                after_big = len(asked)
                assert after_big >= 1 and set(asked) == {ours.stream_id}
                await ours.write(b"", end_stream=True)
            assert len(asked) > after_big  # every write past the mark asks again
        finally:
            link.send_buffered = real


async def test_stream_objects_hold_no_dict_and_no_event() -> None:
    """A stream is one object per side of every short exchange (issue 10, the burst of
    1,000 sessions): no instance dict unless the application sets an attribute of its
    own, and no asyncio.Event — a future exists only while a writer waits in drain()."""
    async with pair() as (client, server):
        ours, theirs = await stream_pair(client, server)
        for stream in (ours, theirs):
            held = gc.get_referents(stream)
            assert not any(type(obj) is dict for obj in held)
            assert not any(isinstance(obj, asyncio.Event) for obj in held)
            assert stream._writer is None
        ours.tag = "mine"  # type: ignore[attr-defined]  # an application's own attribute
        assert ours.tag == "mine"  # type: ignore[attr-defined]


async def test_stop_receiving_reaches_the_writer_with_its_code() -> None:
    async with pair() as (client, server):
        ours, theirs = await stream_pair(client, server)
        await ours.write(b"first")
        async with asyncio.timeout(TIMEOUT):
            assert await theirs.read(5) == b"first"
            theirs.stop_receiving(error_code=77)
            with pytest.raises(StreamClosed):
                await theirs.read()
            with pytest.raises(StopReceiving) as stopped:
                for _ in range(100):
                    await ours.write(b"more")
                    await asyncio.sleep(0.01)
        assert stopped.value.code == 77
        # the other direction is unaffected
        await theirs.write_all(b"still here")
        async with asyncio.timeout(TIMEOUT):
            assert await ours.read_all() == b"still here"


async def test_reset_before_any_read_and_after_fin() -> None:
    async with pair() as (client, server):
        ours, theirs = await stream_pair(client, server)
        ours.reset(error_code=12)
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(StreamReset) as reset:
                await theirs.readexactly(1)
        assert reset.value.code == 12 and reset.value.http_code > 0x52E4A40FA8DB
        with pytest.raises(StreamClosed):
            await ours.write(b"x")
        # a reset after everything was read changes nothing for the reader
        ours, theirs = await stream_pair(client, server)
        await ours.write_all(b"complete")
        async with asyncio.timeout(TIMEOUT):
            assert await theirs.read_all() == b"complete"


async def test_unidirectional_stream_halves() -> None:
    async with pair() as (client, server):
        out = await client.create_unidirectional_stream()
        assert not hasattr(out, "read")
        await out.write(b"one ")
        await out.write_all(b"two")
        async with asyncio.timeout(TIMEOUT):
            incoming = await server.accept_unidirectional_stream()
            assert not hasattr(incoming, "write")
            assert await incoming.read_all() == b"one two"
        assert out.is_write_closed


async def test_draft16_stream_limit_makes_create_wait() -> None:
    server = {"wt_initial_max_streams_bidi": 1}
    async with pair("draft16", server) as (client, srv):
        first, theirs = await stream_pair(client, srv)
        opening = asyncio.create_task(client.create_bidirectional_stream())
        await asyncio.sleep(0.3)
        assert not opening.done()  # WT_MAX_STREAMS_BIDI is 1 (draft-16 §5.6.2)
        await first.write_all(b"done")
        async with asyncio.timeout(TIMEOUT):
            assert await theirs.read_all() == b"done"
            await theirs.write_all(b"")
            assert await first.read_all() == b""
            second = await opening  # the finished stream's credit came back
        await second.write_all(b"second")
        async with asyncio.timeout(TIMEOUT):
            peer = await srv.accept_bidirectional_stream()
            assert await peer.read_all() == b"second"


async def test_draft16_session_data_limit_makes_write_wait() -> None:
    server = {"wt_initial_max_data": 64 * 1024}
    async with pair("draft16", server) as (client, srv):
        ours, theirs = await stream_pair(client, srv)
        payload = bytes(300 * 1024)
        writer = asyncio.create_task(ours.write_all(payload))
        async with asyncio.timeout(TIMEOUT):
            assert await theirs.read_all() == payload  # WT_MAX_DATA kept coming
            await writer


# -- the QUIC hook behind receive backpressure (Sans-I/O, fake clock) -------------------
