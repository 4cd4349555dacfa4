"""``QuicEndpoint._after_activity`` passes a connection's events on itself (``_drain``
inline, issue 10: a call less per datagram received) and hands the rest to ``_drain``
at the first connection-ID event: the queue it leaves and the routes it changes equal
``_drain``'s, whatever the mix of events."""

from __future__ import annotations

import os
import random

from quic.endpoint import QuicEndpoint
from quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    DatagramReceived,
    PingAcknowledged,
    QuicEvent,
    StreamDataReceived,
)
from tests.support.quicpair import SERVER_ADDR, client_config


def _endpoint() -> tuple[QuicEndpoint, object]:
    endpoint = QuicEndpoint()
    conn = endpoint.connect(SERVER_ADDR, client_config(), 0.0)
    while endpoint.next_event() is not None:
        pass  # what connect queued
    return endpoint, endpoint._entries[conn]


def _events(rng: random.Random, cids: list[bytes]) -> list[QuicEvent]:
    events: list[QuicEvent] = []
    for _ in range(rng.randrange(8)):
        kind = rng.randrange(5)
        if kind == 0:
            events.append(DatagramReceived(rng.randbytes(4)))
        elif kind == 1:
            events.append(StreamDataReceived(0, rng.randbytes(3), rng.random() < 0.3))
        elif kind == 2:
            events.append(PingAcknowledged(rng.randrange(9)))
        elif kind == 3:
            cid = os.urandom(8)
            cids.append(cid)
            events.append(ConnectionIdIssued(cid))
        elif cids:
            events.append(ConnectionIdRetired(rng.choice(cids)))
    return events


def _run(events: list[QuicEvent], via_drain: bool) -> tuple[list[object], dict[bytes, bool]]:
    endpoint, entry = _endpoint()
    conn = entry.conn  # type: ignore[attr-defined]
    conn._events.extend(events)
    if via_drain:
        endpoint._drain(entry)  # type: ignore[arg-type]
    else:
        endpoint._after_activity(entry, False)  # type: ignore[arg-type]
    queued = [event for c, event in endpoint._events if c is conn]
    routes = {cid: endpoint._routes.get(cid) is conn for e in events for cid in [_cid(e)] if cid}
    return queued, routes


def _cid(event: QuicEvent) -> bytes:
    return getattr(event, "connection_id", b"")


def test_after_activity_passes_events_on_as_drain_does() -> None:
    rng = random.Random(27)
    with_cids = 0
    for _ in range(300):
        events = _events(rng, [])
        with_cids += any(_cid(e) for e in events)
        assert _run(events, via_drain=False) == _run(events, via_drain=True)
        queued, _ = _run(events, via_drain=False)
        assert queued == events  # every one, in order
    assert with_cids > 50  # the connection-ID branch exercised
