"""A datagram for an established session goes from the QUIC event straight to the
session (``WebTransportConnection.datagram_route``, :mod:`pywebtransport._link`): no
HTTP/3 or WebTransport event is made for it, on either side, however many arrive.

Counters, not times: the calls of ``WebTransportConnection.handle_event`` with a QUIC
``DatagramReceived`` per datagram echoed, over N and 4N datagrams (the general path made
one per datagram received: two per echo, one on each side). The fast path's results
equal the general path's: ``fuzz/test_fuzz_datagram_route.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pywebtransport import SessionRequest, WebTransportClient
from pywebtransport.protocol import WebTransportConnection
from quic import events as qe
from tests.pwt.pwt_support import TIMEOUT, client_config, echo, running
from tests.support.flushcount import count_flushes

pytestmark = pytest.mark.timeout(60)

N = 25


async def test_datagrams_skip_the_event_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"datagram": 0, "other": 0}
    handle_event = WebTransportConnection.handle_event

    def counting(self: WebTransportConnection, event: qe.QuicEvent) -> None:
        calls["datagram" if type(event) is qe.DatagramReceived else "other"] += 1
        handle_event(self, event)

    monkeypatch.setattr(WebTransportConnection, "handle_event", counting)
    async with running() as h, WebTransportClient(client_config()) as client:
        h.handler = echo
        session = await client.connect(h.url())
        per_run: list[tuple[int, int]] = []
        async with asyncio.timeout(TIMEOUT):
            for count in (N, 4 * N):
                before = calls["datagram"]
                for i in range(count):
                    await session.send_datagram(b"ping %d" % i)
                    assert await session.receive_datagram() == b"ping %d" % i
                per_run.append((count, calls["datagram"] - before))
        assert session.diagnostics()["datagrams_received"] == 5 * N
    assert per_run == [(N, 0), (4 * N, 0)]  # the general path: (N, 2N), (4N, 8N)
    assert calls["other"] > 0  # the counter sees the link's other events


async def test_a_datagram_handler_takes_datagrams_and_its_echo_leaves_at_once() -> None:
    """``set_datagram_handler``: datagrams go to the handler as they arrive, not to the
    queue (``receive_datagram`` sees none); those queued before it was set are handed
    to it first; an echo sent from it leaves from the read callback, with no flush
    scheduled for the next loop iteration (quic.aio.pump "Replies made at once");
    ``None`` queues them again."""
    taken: list[bytes] = []
    ready = asyncio.Event()
    release = asyncio.Event()
    server_sessions: list[Any] = []

    async def handler_echo(request: SessionRequest) -> None:
        session = await request.accept()
        server_sessions.append(session)
        ready.set()
        await release.wait()  # the first datagrams are queued meanwhile

        def echo_back(data: bytes) -> None:
            taken.append(data)
            session.send_datagram(data)

        session.set_datagram_handler(echo_back)
        await session.wait_closed()

    async with running() as h, WebTransportClient(client_config()) as client:
        h.handler = handler_echo
        session = await client.connect(h.url())
        async with asyncio.timeout(TIMEOUT):
            await ready.wait()
            (server,) = server_sessions
            await session.send_datagram(b"early")
            while server.diagnostics()["datagrams_received"] < 1:
                await asyncio.sleep(0.01)
            assert not taken  # queued: no handler yet
            release.set()
            assert await session.receive_datagram() == b"early"  # handed over when set
            pump = server._link.quic_session._protocol
            flushes, schedule = count_flushes(pump)
            for i in range(N):
                await session.send_datagram(b"ping %d" % i)
                assert await session.receive_datagram() == b"ping %d" % i
            pump._flush_soon = schedule
            assert taken == [b"early", *(b"ping %d" % i for i in range(N))]
            assert flushes[0] < N / 5, flushes  # sent at the end of the read callback
            assert server.diagnostics()["datagrams_received"] == N + 1
            server.set_datagram_handler(None)
            await session.send_datagram(b"queued again")
            assert await server.receive_datagram() == b"queued again"
            assert len(taken) == N + 1


def test_on_uvloop_a_handler_echo_leaves_from_the_read_callback_too() -> None:
    """uvloop, whose ready queue the pump cannot see: an echo sent from the datagram
    handler wakes the connection while the read's events are handed up, and the pump
    transmits at once (quic.aio.pump "Replies made at once"): no flush scheduled per
    datagram, one transmit and one datagram per echo. Before: a flush per datagram, the
    reply one loop iteration later."""
    uvloop = pytest.importorskip("uvloop")

    server_sessions: list[Any] = []

    async def handler_echo(request: SessionRequest) -> None:
        session = await request.accept()
        server_sessions.append(session)
        session.set_datagram_handler(session.send_datagram)
        await session.wait_closed()

    async def measure() -> tuple[int, int, int, int]:
        async with running() as h, WebTransportClient(client_config()) as client:
            h.handler = handler_echo
            session = await client.connect(h.url())
            async with asyncio.timeout(TIMEOUT):
                for _ in range(10):  # warm-up: handshake confirmed, first ACKs out
                    await session.send_datagram(b"warm")
                    assert await session.receive_datagram() == b"warm"
                pump = server_sessions[0]._link.quic_session._protocol
                flushes, schedule = count_flushes(pump)
                transmits, sent = pump.transmits, pump.datagrams_sent
                for i in range(4 * N):
                    await session.send_datagram(b"ping %d" % i)
                    assert await session.receive_datagram() == b"ping %d" % i
                pump._flush_soon = schedule
                return (
                    flushes[0],
                    pump.transmits - transmits,
                    pump.datagrams_sent - sent,
                    4 * N,
                )

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        flushes, transmits, sent, echoes = runner.run(measure())
    assert flushes < echoes / 5, flushes  # before: one per echo
    assert transmits < echoes * 1.2, transmits
    assert sent < echoes * 1.2, sent  # the echo carries the ACK


async def test_a_waiting_receive_takes_the_datagram_itself_and_keeps_it_if_cancelled() -> None:
    """A datagram for a session whose ``receive_datagram`` waits goes to that call
    directly, not through the queue (a ping-pong never makes one); one that arrives
    before the woken call ran waits in the queue behind it; a call cancelled after its
    datagram came (a timeout in the same loop iteration) puts it back first in line."""
    async with running() as h, WebTransportClient(client_config()) as client:
        h.handler = echo
        session = await client.connect(h.url())
        async with asyncio.timeout(TIMEOUT):
            for i in range(N):
                await session.send_datagram(b"ping %d" % i)
                assert await session.receive_datagram() == b"ping %d" % i
            assert session._datagrams is None  # never queued
            assert session.diagnostics()["datagrams_received"] == N
            # handed to the waiting call, then one more before that call ran: in order
            waiting = asyncio.ensure_future(session.receive_datagram())
            await asyncio.sleep(0)
            session.on_datagram(b"first")
            session.on_datagram(b"second")
            assert await waiting == b"first"
            assert await session.receive_datagram() == b"second"
            # handed to a call cancelled before it ran: kept, first in line
            waiting = asyncio.ensure_future(session.receive_datagram())
            await asyncio.sleep(0)
            session.on_datagram(b"kept")
            session.on_datagram(b"next")
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert await session.receive_datagram() == b"kept"
            assert await session.receive_datagram() == b"next"
            assert session._datagram_bytes == 0
            # a call cancelled before any came: the datagram is queued for the next one
            waiting = asyncio.ensure_future(session.receive_datagram())
            await asyncio.sleep(0)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            session.on_datagram(b"later")
            assert await session.receive_datagram() == b"later"
            assert session._datagram_bytes == 0
