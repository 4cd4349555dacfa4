"""The pump keeps a bulk transfer flowing (quic/aio/pump.py, "Bulk transfers"): a
transmit that left a connection with more to send (its build stopped at the datagram
cap) is followed by another flush with nothing else to trigger it, and a long read
wake-up serves the connections fed long runs (``QuicEndpoint.take_busy``) every
``ACK_WITHIN_BATCH`` GRO datagrams, and only those, and ends at such a mark when none
is busy or it is ``LATE_ACKS`` old; the endpoint marks a connection busy for a long run
of its datagrams, not for datagrams of many connections."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quic.aio import QuicEndpointProtocol
from quic.aio.glued import ACK_WITHIN_BATCH, LATE_ACKS
from quic.endpoint_batch import BUSY_RUN
from tests.support.quicpair import CLIENT_ADDR, make_pair

_ADDR = ("127.0.0.1", 4433)


class _Endpoint:
    """What the pump's transmit and GRO feed read; ``capped`` transmits leave output;
    every feed of ``busy_per_feed`` or more datagrams makes a connection busy."""

    def __init__(self, capped: int = 0, busy_per_feed: int = 1 << 30) -> None:
        self.capped = capped
        self.busy_per_feed = busy_per_feed
        self.serves: list[Any] = []  # the ``only`` of each serve (None: all)
        self.fed = 0
        self.busy: dict[Any, None] = {}
        self.last_flushed: list[Any] = []

    def next_event(self) -> None:
        return None

    def datagrams_to_send(self, now: float, *only: Any) -> list[tuple[bytes, Any]]:
        self.serves.append(dict(only[0]) if only else None)
        return []

    @property
    def has_pending_output(self) -> bool:
        return len(self.serves) <= self.capped

    def receive_datagrams(self, datagrams: list[bytes], *args: Any) -> None:
        self.fed += len(datagrams)
        if len(datagrams) >= self.busy_per_feed:
            self.busy["conn"] = None

    def take_busy(self) -> dict[Any, None]:
        busy, self.busy = self.busy, {}
        return busy

    def get_timer(self) -> None:
        return None


async def test_a_capped_transmit_is_followed_by_another_flush() -> None:
    endpoint = _Endpoint(capped=3)
    protocol = QuicEndpointProtocol(endpoint)  # type: ignore[arg-type]
    protocol._transmit()
    for _ in range(10):
        await asyncio.sleep(0)
    assert endpoint.serves == [None] * 4  # three capped transmits, each followed by one more
    assert protocol.transmits == 4 and not protocol._flush_scheduled


async def test_a_transmit_with_nothing_left_schedules_nothing() -> None:
    endpoint = _Endpoint(capped=0)
    protocol = QuicEndpointProtocol(endpoint)  # type: ignore[arg-type]
    protocol._transmit()
    for _ in range(5):
        await asyncio.sleep(0)
    assert endpoint.serves == [None] and protocol.transmits == 1


async def test_a_long_wake_up_serves_its_busy_connections_every_ack_within_batch() -> None:
    endpoint = _Endpoint(busy_per_feed=16)
    protocol = QuicEndpointProtocol(endpoint)  # type: ignore[arg-type]
    protocol._read_at = protocol.loop.time()
    per_read = ACK_WITHIN_BATCH // 2 - 1  # three GRO reads pass the mark, two do not
    glued = [b"x" * 1200] * per_read
    ends = [protocol._receive_glued(glued, _ADDR, protocol._read_at, 2) for _ in range(6)]
    assert endpoint.fed == 6 * per_read
    assert endpoint.serves == [{"conn": None}] * 2  # after the 3rd and the 6th read: only busy
    assert protocol.busy_turns == 2
    assert not any(ends) and protocol.reads_ended == 0  # young, busy: the read goes on
    protocol._glued = 0  # what a new wake-up does (_read_ready)
    protocol._receive_glued(glued, _ADDR, protocol._read_at, 2)
    protocol._receive_glued(glued, _ADDR, protocol._read_at, 2)
    assert len(endpoint.serves) == 2  # a wake-up short of the mark sends at its flush only


async def test_a_long_wake_up_of_busy_connections_ends_once_late() -> None:
    """At a mark, a wake-up ``LATE_ACKS`` old serves its busy connections and then ends
    (its events are handed up; the rest waits in the socket)."""
    endpoint = _Endpoint(busy_per_feed=16)
    protocol = QuicEndpointProtocol(endpoint)  # type: ignore[arg-type]
    protocol._read_at = protocol.loop.time() - 2 * LATE_ACKS
    glued = [b"x" * 1200] * (ACK_WITHIN_BATCH // 2)
    assert not protocol._receive_glued(glued, _ADDR, protocol._read_at, 2)  # below the mark
    assert protocol._receive_glued(glued, _ADDR, protocol._read_at, 2)  # at it: late
    assert endpoint.serves == [{"conn": None}] and protocol.reads_ended == 1


async def test_a_long_wake_up_of_short_runs_ends_at_its_first_mark() -> None:
    """Glued datagrams of many connections (a peer's shared socket), none fed a long
    run: nothing is served early; the wake-up ends at the first mark, young or not, so
    the tasks its events wake can answer with the ACKs (quic.aio.glued)."""
    endpoint = _Endpoint(busy_per_feed=16)  # one datagram of each connection: never busy
    protocol = QuicEndpointProtocol(endpoint)  # type: ignore[arg-type]
    protocol._read_at = protocol.loop.time()
    ends = [
        protocol._receive_glued([b"x" * 64], _ADDR, protocol._read_at, 2)
        for _ in range(2 * ACK_WITHIN_BATCH)
    ]
    assert ends.index(True) == ACK_WITHIN_BATCH - 1 and ends.count(True) == 2
    assert endpoint.serves == [] and protocol.busy_turns == 0 and protocol.reads_ended == 2


def test_the_endpoint_marks_a_connection_busy_for_a_long_run_only() -> None:
    pair = make_pair(seed=11)
    pair.handshake()
    server = pair.server_endpoint
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"w" * 2_000_000)
    pair.run(lambda: len(pair.data["server"].get(sid, b"")) >= 2_000_000)  # cwnd grows
    pair.net.run(max_time=1.0)  # the last ACKs: nothing in flight

    def flight(byte: bytes) -> list[bytes]:
        pair.client.send_stream_data(sid, byte * 200_000)
        pair.client_endpoint.wake(pair.client)
        return [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]

    run = flight(b"z")
    now = pair.net.now
    assert len(run) > BUSY_RUN + 4
    server.receive_datagrams(run[:4], CLIENT_ADDR, now)  # a short run: not busy
    assert server.take_busy() == {}
    server.receive_datagrams(run[4:], CLIENT_ADDR, now)
    assert list(server.take_busy()) == [pair.server]
    assert server.take_busy() == {}  # taken
    server.receive_datagrams(flight(b"y"), CLIENT_ADDR, now)
    server.datagrams_to_send(now)  # a full serve empties the set too (its exit)
    assert server.take_busy() == {}


@pytest.mark.parametrize("runs", [25, 100])
def test_the_busy_set_holds_each_connection_once_however_many_runs(runs: int) -> None:
    """Bounded state: ``take_busy``'s set holds at most one entry per connection of the
    endpoint (its limit is the connection limit); N and 4N long runs of one connection,
    never taken, leave one entry."""
    pair = make_pair(seed=11)
    pair.handshake()
    server = pair.server_endpoint
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"w" * 2_000_000)
    pair.run(lambda: len(pair.data["server"].get(sid, b"")) >= 2_000_000)
    pair.net.run(max_time=1.0)
    pair.client.send_stream_data(sid, b"z" * 200_000)
    pair.client_endpoint.wake(pair.client)
    run = [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
    assert len(run) > BUSY_RUN
    for _ in range(runs):  # the same packets again: duplicates, still a long run each
        server.receive_datagrams(run, CLIENT_ADDR, pair.net.now)
    assert len(server._busy) == 1
    assert list(server.take_busy()) == [pair.server] and not server._busy
