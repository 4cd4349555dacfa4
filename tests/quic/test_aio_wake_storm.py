"""Wake storms (quic.aio.pump, "Wake storms"): when the application acts on more than
``WAKE_BATCH`` connections before the pump's flush — many sessions each sending at
once — the connections woken so far leave at once, all but the latest, instead of all
of them waiting for the last task; fewer than that never send early. Real UDP on
127.0.0.1, client connections sharing one socket."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from quic.aio import serve
from quic.aio.pump import WAKE_BATCH
from quic.aio.shared import SharedSockets
from tests.quic.test_aio import echo_stream, server_config
from tests.quic.test_aio_shared import TIMEOUT, open_many, pump_of


@pytest.mark.parametrize("extra", [0, 1, WAKE_BATCH + 3])
async def test_many_connections_woken_at_once_leave_in_batches(extra: int) -> None:
    count = WAKE_BATCH + extra
    sockets = SharedSockets()
    server = await serve("127.0.0.1", 0, server_config(), stream_handler=echo_stream)
    async with server, contextlib.AsyncExitStack() as stack:
        sessions = await open_many(stack, server.port, sockets, count)
        pump = pump_of(sessions[0])
        streams = [await s.create_stream() for s in sessions]
        await asyncio.sleep(0.2)  # handshake leftovers (ACKs, HANDSHAKE_DONE) settle
        sent, early = pump.datagrams_sent, pump.early_transmits
        for i, (_reader, writer) in enumerate(streams):  # one loop step, no await
            writer.write(b"%d" % i * 20)
            writer.write_eof()
        # More than WAKE_BATCH woken: every batch of them left already, the latest
        # connection of each batch waits for the next; the rest wait for the flush.
        batches = (count - 1) // WAKE_BATCH
        assert pump.early_transmits - early == batches
        assert pump.datagrams_sent - sent == batches * WAKE_BATCH  # one datagram each
        async with asyncio.timeout(TIMEOUT):
            echoes = [await reader.read() for reader, _writer in streams]
        assert echoes == [b"%d" % i * 20 for i in range(count)]


async def test_flushes_after_events_never_send_early() -> None:
    """QuicSession.flush_after_event (a layer's writes while an event is handed up):
    the connection is served at the flush, never in an early send, however many."""
    count = WAKE_BATCH + 5
    sockets = SharedSockets()
    server = await serve("127.0.0.1", 0, server_config(), stream_handler=echo_stream)
    async with server, contextlib.AsyncExitStack() as stack:
        sessions = await open_many(stack, server.port, sockets, count)
        pump = pump_of(sessions[0])
        streams = [await s.create_stream() for s in sessions]
        await asyncio.sleep(0.2)
        sent, early = pump.datagrams_sent, pump.early_transmits
        for i, session in enumerate(sessions):  # one loop step, no await
            session.connection.send_stream_data(streams[i][1].stream_id, b"e%d" % i, True)
            session.flush_after_event()
        assert pump.early_transmits == early and pump.datagrams_sent == sent
        await asyncio.sleep(0)  # the flush
        async with asyncio.timeout(TIMEOUT):
            while pump.datagrams_sent - sent < count:
                await asyncio.sleep(0.001)
            echoes = [await reader.read() for reader, _writer in streams]
        assert pump.early_transmits == early
        assert echoes == [b"e%d" % i for i in range(count)]
