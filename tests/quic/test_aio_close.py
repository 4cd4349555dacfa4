"""Closing a connection through quic.aio (issue 10, handshake row): ``aclose()`` sends
the close at once when nothing is in flight (no loop iteration), and ``wait_closed()``
gives each waiter a future of its own (cancelling one leaves the others waiting)."""

from __future__ import annotations

import asyncio

from quic.aio import connect, serve
from quic.events import ConnectionTerminated
from tests.quic.test_aio import client_config, server_config


class _Ticker:
    """Counts the loop iterations a task of its own sees."""

    def __init__(self) -> None:
        self.ticks = 0
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)


async def test_aclose_sends_the_close_without_a_loop_iteration() -> None:
    server = await serve("127.0.0.1", 0, server_config())
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        ticker = _Ticker()
        await asyncio.sleep(0)  # the ticker is running
        sent = session._protocol.datagrams_sent
        before = ticker.ticks
        await session.aclose()
        assert ticker.ticks == before  # aclose() never yielded to the loop
        assert session.is_closed
        assert session._protocol.datagrams_sent > sent  # the close left
        assert isinstance(await session.wait_closed(), ConnectionTerminated)
        ticker.task.cancel()


async def test_a_cancelled_wait_closed_leaves_the_other_waiters() -> None:
    server = await serve("127.0.0.1", 0, server_config())
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        first = asyncio.ensure_future(session.wait_closed())
        second = asyncio.ensure_future(session.wait_closed())
        third = asyncio.ensure_future(session.wait_closed())
        await asyncio.sleep(0)  # all three wait
        first.cancel()
        await asyncio.sleep(0)
        assert first.cancelled()
        assert session._closed is not None and len(session._closed) == 3
        fourth = asyncio.ensure_future(session.wait_closed())
        await asyncio.sleep(0)  # its arrival dropped the cancelled waiter
        assert len(session._closed) == 3
        session.close(7, "bye")
        for task in (second, third, fourth):
            termination = await task
            assert isinstance(termination, ConnectionTerminated)
            assert termination.error_code == 7 and not termination.by_peer
        assert session._closed is None


async def test_transmit_now_sends_unless_a_flush_is_on_its_way() -> None:
    """``QuicSession.transmit_now``: what was queued on the connection leaves before it
    returns; with a flush already scheduled it leaves at that flush instead."""
    server = await serve("127.0.0.1", 0, server_config())
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        await asyncio.sleep(0.05)  # the handshake's last packets are out of the way
        protocol = session._protocol
        conn = session.connection
        sent = protocol.datagrams_sent
        conn.send_stream_data(conn.get_next_available_stream_id(), b"now", end_stream=True)
        session.transmit_now()
        assert protocol.datagrams_sent == sent + 1
        session.schedule_flush()  # a flush on its way: the next one waits for it
        conn.send_stream_data(conn.get_next_available_stream_id(), b"later", end_stream=True)
        session.transmit_now()
        assert protocol.datagrams_sent == sent + 1
        await asyncio.sleep(0)  # the flush
        assert protocol.datagrams_sent >= sent + 2
