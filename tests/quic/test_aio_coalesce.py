"""The pump hands a burst of one stream's data up as one event (quic/aio/pump.py)."""

from __future__ import annotations

from collections import deque
from typing import Any

from quic.aio import QuicEndpointProtocol, QuicSession, wall_clock
from quic.connection import QuicConnection
from quic.events import DatagramReceived, QuicEvent, StreamDataReceived
from tests.quic.test_aio import client_config


class _Endpoint:
    """Just what one pump pass reads: a queue of (connection, event)."""

    def __init__(self, items: list[tuple[QuicConnection, QuicEvent]]) -> None:
        self.events = deque(items)
        self.last_flushed: list[QuicConnection] = []

    def next_event(self) -> Any:
        return self.events.popleft() if self.events else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        return []

    def get_timer(self) -> None:
        return None


def _dispatch(
    build: Any,
) -> tuple[dict[QuicConnection, list[QuicEvent]], QuicConnection, QuicConnection]:
    """Run one pump pass over the events ``build(a, b)`` returns for two connections;
    what each connection's session was handed, in order."""
    config = client_config()
    config.clock = wall_clock
    a, b = QuicConnection(config), QuicConnection(config)
    protocol = QuicEndpointProtocol(_Endpoint(build(a, b)))  # type: ignore[arg-type]
    seen: dict[QuicConnection, list[QuicEvent]] = {a: [], b: []}
    for conn in (a, b):
        session = QuicSession(protocol, conn)
        session.event_listener = seen[conn].append  # type: ignore[assignment]
        protocol.sessions[conn] = session
    protocol._dispatch()
    return seen, a, b


async def test_a_burst_of_one_stream_is_one_event_whatever_its_length() -> None:
    for n in (10, 40):
        chunks = [bytes([i]) * 1200 for i in range(n)]
        seen, a, _ = _dispatch(
            lambda a, b, chunks=chunks: [(a, StreamDataReceived(1, c, False)) for c in chunks]
        )
        assert seen[a] == [StreamDataReceived(1, b"".join(chunks), False)]


async def test_only_neighbours_of_one_stream_merge_and_order_is_kept() -> None:
    datagram = DatagramReceived(b"d")

    def build(a: QuicConnection, b: QuicConnection) -> list[tuple[QuicConnection, QuicEvent]]:
        return [
            (a, StreamDataReceived(1, b"x1", False)),
            (a, StreamDataReceived(1, b"x2", False)),
            (a, StreamDataReceived(5, b"y1", False)),  # another stream: a boundary
            (a, StreamDataReceived(1, b"x3", False)),
            (b, StreamDataReceived(1, b"z1", False)),  # another connection
            (a, StreamDataReceived(1, b"x4", False)),
            (a, datagram),  # another kind of event
            (a, StreamDataReceived(1, b"x5", False)),
            (a, StreamDataReceived(1, b"", True)),  # the FIN joins, and ends the merge
            (a, StreamDataReceived(9, b"e1", False, early_data=True)),
            (a, StreamDataReceived(9, b"e2", False)),  # 1-RTT after 0-RTT: kept apart
        ]

    seen, a, b = _dispatch(build)
    assert seen[a] == [
        StreamDataReceived(1, b"x1x2", False),
        StreamDataReceived(5, b"y1", False),
        StreamDataReceived(1, b"x3", False),
        StreamDataReceived(1, b"x4", False),
        datagram,
        StreamDataReceived(1, b"x5", True),
        StreamDataReceived(9, b"e1", False, early_data=True),
        StreamDataReceived(9, b"e2", False),
    ]
    assert seen[b] == [StreamDataReceived(1, b"z1", False)]


async def test_a_merge_stops_at_the_fin() -> None:
    def build(a: QuicConnection, b: QuicConnection) -> list[tuple[QuicConnection, QuicEvent]]:
        return [
            (a, StreamDataReceived(1, b"a", False)),
            (a, StreamDataReceived(1, b"b", True)),
            (a, StreamDataReceived(1, b"late", False)),  # cannot happen; not merged anyway
        ]

    seen, a, _ = _dispatch(build)
    assert seen[a] == [
        StreamDataReceived(1, b"ab", True),
        StreamDataReceived(1, b"late", False),
    ]
