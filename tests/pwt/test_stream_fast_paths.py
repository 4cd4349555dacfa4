"""The short exchange's stream calls (issue 10, the burst of 1,000 sessions): opening a
stream, closing it and reading a message already queued complete without suspending
and without coroutines of their own; each inline copy agrees with the helper it copies."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from pywebtransport import StreamClosed, WebTransportStream
from pywebtransport.stream import _StreamBase
from tests.pwt.pwt_support import TIMEOUT
from tests.pwt.test_stream import pair

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


def at_once(coro: Coroutine[Any, Any, T]) -> T:
    """The coroutine's result from its first step: it must not suspend."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the call suspended")


class _Session:
    def __init__(self) -> None:
        self.link = object()


def test_stream_init_agrees_with_the_base_init() -> None:
    session: Any = _Session()
    inline = WebTransportStream(session, 8)
    base = object.__new__(WebTransportStream)
    _StreamBase.__init__(base, session, 8, readable=True, writable=True)
    for name in _StreamBase.__slots__:
        if name in ("__dict__", "__weakref__"):
            continue
        mine, theirs = getattr(inline, name), getattr(base, name)
        assert type(mine) is type(theirs) and mine == theirs, name


async def test_open_write_close_read_do_not_suspend() -> None:
    async with pair() as (client, server):
        got: list[bytes] = []
        finished = asyncio.Event()

        async def echo(stream: WebTransportStream) -> None:
            got.append(await stream.read(1 << 20))
            got.append(await stream.read(1 << 20))
            await stream.write(got[0])
            await stream.close()
            finished.set()

        server.set_stream_handler(lambda s: asyncio.ensure_future(echo(s)))  # type: ignore[arg-type]
        stream = at_once(client.create_bidirectional_stream())
        at_once(stream.write(b"q" * 64))
        at_once(stream.close())
        assert stream.is_write_closed
        async with asyncio.timeout(TIMEOUT):
            await finished.wait()
            while stream.unread < 64 or not stream._eof:
                await asyncio.sleep(0.01)
        assert got == [b"q" * 64, b""]
        # data queued and the FIN in: both reads complete at once, the stream is gone
        assert at_once(stream.read(1 << 20)) == b"q" * 64
        assert stream.unread == 0 and stream._taken == stream._credited == 64
        assert at_once(stream.read(1 << 20)) == b""
        assert client.open_streams == 0
        at_once(stream.close())  # closed already: nothing happens
        with pytest.raises(StreamClosed):
            at_once(stream.write(b"late"))


async def test_read_of_part_of_a_chunk_still_takes_the_general_path() -> None:
    async with pair() as (client, server):
        stream = await client.create_bidirectional_stream()
        await stream.write(b"")
        async with asyncio.timeout(TIMEOUT):
            theirs = await server.accept_bidirectional_stream()
        await stream.write(b"abcdef", end_stream=True)
        async with asyncio.timeout(TIMEOUT):
            while theirs.unread < 6:
                await asyncio.sleep(0.01)
        assert at_once(theirs.read(4)) == b"abcd"
        assert theirs._credited == 0  # a partial take waits for its batch (or the end)
        assert at_once(theirs.read(4)) == b"ef"
        assert theirs._credited == 6
        assert at_once(theirs.read(4)) == b""


async def test_close_after_the_session_closed_is_quiet_and_write_raises() -> None:
    """As before the inline FIN: the session's end fails the stream's sending half, so
    close() has nothing to do (no error) and a write raises."""
    async with pair() as (client, _server):
        stream = await client.create_bidirectional_stream()
        await client.close()
        at_once(stream.close())
        with pytest.raises(Exception) as raised:
            at_once(stream.write(b"x"))
        assert raised.type.__name__ in ("SessionClosed", "ConnectionFailed", "StreamClosed")


async def test_stream_opened_routing_of_the_link() -> None:
    """The link's StreamOpened case (first in its routing, per peer stream): to its
    session, or refused when the link holds no session of that ID."""
    from pywebtransport.protocol import events as ev

    async with pair() as (client, _server):
        link: Any = client.link
        refused: list[int] = []
        opened: list[tuple[int, bool]] = []
        link.refuse_stream = refused.append
        real = client.on_stream_opened
        client.on_stream_opened = lambda sid, bidi: opened.append((sid, bidi))  # type: ignore[method-assign]
        try:
            link._route(ev.StreamOpened(client.session_id + 4000, 7, False))
            link._route(ev.StreamOpened(client.session_id, 11, False))
        finally:
            client.on_stream_opened = real  # type: ignore[method-assign]
            del link.refuse_stream
        assert refused == [7] and opened == [(11, False)]
