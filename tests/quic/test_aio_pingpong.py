"""Datagram ping-pong over real sockets: one transmit and one datagram per side per round
trip — the reply leaves with the ACK of the ping (counters, not times)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from quic.aio import QuicEndpointProtocol, QuicServer, QuicSession, connect, serve
from quic.events import DatagramReceived, QuicEvent, StreamDataReceived
from tests.quic.test_aio import client_config, echo_datagrams, server_config
from tests.support.flushcount import count_flushes

ROUND_TRIPS = 300
COUNTERS = (
    "read_wakeups",
    "datagrams_read",
    "transmits",
    "datagrams_sent",
    "timer_rearms",
    "timer_fires",
)


def snapshot(pump: QuicEndpointProtocol) -> dict[str, int]:
    return {name: getattr(pump, name) for name in COUNTERS}


@contextlib.asynccontextmanager
async def datagram_pair() -> AsyncIterator[tuple[QuicServer, QuicSession]]:
    """An echo server and a client session with DATAGRAM support, warmed up: the
    handshake done and confirmed, the first ACKs out of the way."""
    config = client_config()
    config.max_datagram_frame_size = 65536
    server_cfg = server_config()
    server_cfg.max_datagram_frame_size = 65536
    server = await serve("127.0.0.1", 0, server_cfg, echo_datagrams)
    async with server, connect("127.0.0.1", server.port, config) as session:
        for _ in range(20):
            session.send_datagram(b"warm-up")
            await asyncio.wait_for(session.receive_datagram(), 5)
        yield server, session


async def ping_pong() -> dict[str, dict[str, float]]:
    """Per round trip, the counters of each pump over ``ROUND_TRIPS`` pings."""
    async with datagram_pair() as (server, session):
        pumps = {"client": session._protocol, "server": server.protocol}
        before = {side: snapshot(pump) for side, pump in pumps.items()}
        for _ in range(ROUND_TRIPS):
            session.send_datagram(b"x" * 64)
            async with asyncio.timeout(5):  # no task of its own (wait_for would add one)
                assert await session.receive_datagram() == b"x" * 64
        return {
            side: {
                name: (value - before[side][name]) / ROUND_TRIPS
                for name, value in snapshot(pump).items()
            }
            for side, pump in pumps.items()
        }


def loop_factories() -> list[Any]:
    factories: list[Any] = [pytest.param(None, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a test dependency
        return factories
    return [*factories, pytest.param(uvloop.new_event_loop, id="uvloop")]


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_a_reply_leaves_with_the_ack_in_one_transmit(
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        per_round_trip = runner.run(ping_pong())
    for side, counters in per_round_trip.items():
        # before: a transmit right after reading (an ACK of its own, or nothing) and
        # another for the reply — 2 transmits per round trip on each side
        assert counters["transmits"] < 1.2, (side, counters)
        assert counters["datagrams_sent"] < 1.2, (side, counters)
        assert counters["read_wakeups"] < 1.2, (side, counters)
        assert 0.9 < counters["datagrams_read"] < 1.2, (side, counters)
        # the loss-detection deadline moves later with every packet sent: the armed
        # loop timer is kept, and a new one is made only after it fired (early; how
        # often depends on the round trip time against the PTO, so on the machine's
        # load) — before: one new timer per transmit, whatever fired
        rearms_not_fired = counters["timer_rearms"] - counters["timer_fires"]
        assert rearms_not_fired < 0.5, (side, counters)


def test_a_deadline_is_computed_once_per_side_per_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection that received a datagram is served at the next transmit, which
    re-files its deadline: the endpoint does not compute it at the receive as well
    (``quic.endpoint_timers.Deadlines.unfiled``). Before: two ``get_timer`` per side per
    round trip."""
    from quic.connection import QuicConnection

    calls = [0]
    original = QuicConnection.get_timer

    def counting(self: QuicConnection) -> float | None:
        calls[0] += 1
        return original(self)

    async def measure() -> float:
        async with datagram_pair() as (_server, session):
            monkeypatch.setattr(QuicConnection, "get_timer", counting)
            for _ in range(ROUND_TRIPS):
                session.send_datagram(b"x" * 64)
                async with asyncio.timeout(5):
                    assert await session.receive_datagram() == b"x" * 64
            monkeypatch.setattr(QuicConnection, "get_timer", original)
        return calls[0] / ROUND_TRIPS

    per_round_trip = asyncio.run(measure())
    assert 1.9 < per_round_trip < 2.3, per_round_trip  # both sides together


def test_the_ping_pong_packet_is_read_without_frame_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each side receives one 1-RTT packet per round trip: an ACK and a DATAGRAM frame,
    both decoded without a frame object (quic.frames ``decode_ack_fields``,
    ``decode_datagram_frame``): the general decoder is not called. Before: one
    ``decode_frame`` (the ACK) per packet, two per round trip."""
    import quic.conn_dispatch

    calls = [0]
    original = quic.conn_dispatch.decode_frame

    def counting(data: bytes, pos: int) -> Any:
        calls[0] += 1
        return original(data, pos)

    async def measure() -> float:
        async with datagram_pair() as (_server, session):
            monkeypatch.setattr(quic.conn_dispatch, "decode_frame", counting)
            for _ in range(ROUND_TRIPS):
                session.send_datagram(b"x" * 64)
                async with asyncio.timeout(5):
                    assert await session.receive_datagram() == b"x" * 64
            monkeypatch.setattr(quic.conn_dispatch, "decode_frame", original)
        return calls[0] / ROUND_TRIPS

    per_round_trip = asyncio.run(measure())
    assert per_round_trip < 0.2, per_round_trip  # a PTO probe's PING at most, under load


def echo_in_callback(session: QuicSession) -> None:
    """An echo made inside the event's dispatch (a layer's listener), no task."""

    def listener(event: QuicEvent) -> bool:
        if type(event) is DatagramReceived:
            session.send_datagram(event.data)
            return True
        return False

    session.event_listener = listener


@pytest.mark.parametrize("loop_factory", loop_factories())
@pytest.mark.parametrize("in_callback", [True, False], ids=["callback", "task"])
def test_a_reply_made_in_the_dispatch_leaves_without_a_flush(
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None, in_callback: bool
) -> None:
    """A reply made while a read's events are handed up, with no task woken, leaves at
    once (one transmit, the ACK in it) instead of at a flush scheduled for the next
    loop iteration ("Replies made at once" in quic.aio.pump); a reply from a task still
    waits for the flush, after the task ran. On uvloop, whose ready queue the pump
    cannot see, a reply made in the dispatch leaves at once too (before: at the flush)."""

    async def measure() -> tuple[float, float, float]:
        config = client_config()
        config.max_datagram_frame_size = 65536
        server_cfg = server_config()
        server_cfg.max_datagram_frame_size = 65536
        if in_callback:  # set before the session sees any event
            server = await serve("127.0.0.1", 0, server_cfg, session_setup=echo_in_callback)
        else:
            server = await serve("127.0.0.1", 0, server_cfg, echo_datagrams)
        async with server, connect("127.0.0.1", server.port, config) as session:
            pump = server.protocol
            for _ in range(20):  # warm-up: handshake confirmed, first ACKs out
                session.send_datagram(b"warm-up")
                await asyncio.wait_for(session.receive_datagram(), 5)
            flushes, _ = count_flushes(pump)
            before = snapshot(pump)
            for _ in range(ROUND_TRIPS):
                session.send_datagram(b"x" * 64)
                async with asyncio.timeout(5):
                    assert await session.receive_datagram() == b"x" * 64
            after = snapshot(pump)
        sent = (after["datagrams_sent"] - before["datagrams_sent"]) / ROUND_TRIPS
        transmits = (after["transmits"] - before["transmits"]) / ROUND_TRIPS
        return flushes[0] / ROUND_TRIPS, transmits, sent

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        flushes, transmits, sent = runner.run(measure())
    assert sent < 1.2, sent  # the reply carries the ACK
    if loop_factory is None:  # asyncio: one transmit per round trip
        assert transmits < 1.2, transmits
    if in_callback:
        assert flushes < 0.1, flushes  # sent at the end of the read callback
        assert transmits < 1.2, transmits  # uvloop too: no flush after it
    else:
        assert 0.9 < flushes < 1.2, flushes  # a task's reply: at the flush


def echo_stream_in_callback(session: QuicSession) -> None:
    """A stream echo made inside the event's dispatch, waking the connection as a layer
    above does after each stream event (h3.aio_link)."""

    def listener(event: QuicEvent) -> bool:
        if type(event) is StreamDataReceived and event.data:
            session.connection.send_stream_data(event.stream_id, event.data)
            session.schedule_flush()
            return True
        return False

    session.event_listener = listener


def test_on_uvloop_a_stream_event_batch_still_waits_for_the_flush() -> None:
    """uvloop transmits at the end of the read only for a batch of datagram events
    ("Replies made at once" in quic.aio.pump): a batch with a stream event, whose layer
    wakes the connection after it, keeps its flush (the ACK waits there for what the
    tasks it woke write); the echo still arrives. Datagrams: see above."""
    uvloop = pytest.importorskip("uvloop")

    async def measure() -> tuple[float, float]:
        server_cfg = server_config()
        server = await serve("127.0.0.1", 0, server_cfg, session_setup=echo_stream_in_callback)
        async with server, connect("127.0.0.1", server.port, client_config()) as session:
            pump = server.protocol
            reader, writer = await session.create_stream()
            for _ in range(10):  # warm-up
                writer.write(b"warm")
                assert await asyncio.wait_for(reader.read(4), 5) == b"warm"
            flushes, _ = count_flushes(pump)
            before = snapshot(pump)
            for _ in range(ROUND_TRIPS):
                writer.write(b"y" * 64)
                async with asyncio.timeout(5):
                    assert await reader.readexactly(64) == b"y" * 64
            after = snapshot(pump)
        transmits = (after["transmits"] - before["transmits"]) / ROUND_TRIPS
        return flushes[0] / ROUND_TRIPS, transmits

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        flushes, transmits = runner.run(measure())
    assert 0.9 < flushes < 1.2, flushes  # at the flush, as before
    assert transmits < 1.2, transmits
