"""The pump hands a ``DatagramReceived`` to its session's ``event_listener`` itself
(``QuicSession._on_event``'s datagram case, inline in ``QuicEndpointProtocol._dispatch``:
a call less per datagram, issue 10). Whatever the listener does — absent, consumes,
declines, raises — and whether the session's own datagram handling raises, the session
sees what ``_on_event`` (called by the pump as before) made of it: the same calls, the
same errors reported, the same counters."""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

import pytest

from quic.aio import QuicEndpointProtocol, QuicSession, wall_clock
from quic.aio import session as session_module
from quic.connection import QuicConnection
from quic.events import DatagramReceived, QuicEvent
from tests.quic.test_aio import client_config


class _Endpoint:
    """Just what one pump pass reads: a queue of (connection, event)."""

    def __init__(self, items: list[tuple[QuicConnection, QuicEvent]]) -> None:
        self.events = deque(items)
        self.last_flushed: list[QuicConnection] = []

    def next_event(self) -> Any:
        return self.events.popleft() if self.events else None


def _pass(listener: str, handler_raises: bool, inline: bool) -> tuple[list[Any], int, int]:
    """One pump pass over two datagrams of one connection; what the session saw."""
    config = client_config()
    config.clock = wall_clock
    conn = QuicConnection(config)
    events = [DatagramReceived(b"one"), DatagramReceived(b"two")]
    protocol = QuicEndpointProtocol(_Endpoint([(conn, e) for e in events]))  # type: ignore[arg-type]
    session = QuicSession(protocol, conn)
    protocol.sessions[conn] = session
    log: list[Any] = []

    def listen(event: QuicEvent) -> bool:
        log.append(("listener", event))
        if listener == "raises":
            raise RuntimeError("listener")
        return listener == "consumes"

    if listener != "absent":
        session.event_listener = listen

    def on_datagram(self: QuicSession, event: DatagramReceived) -> None:
        log.append(("on_datagram", event))
        if handler_raises:
            raise RuntimeError("handler")

    def internal_error(self: QuicSession, what: str, exc: BaseException) -> None:
        log.append(("internal_error", what, str(exc)))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(QuicSession, "_on_datagram", on_datagram)
        mp.setattr(QuicSession, "_internal_error", internal_error)
        mp.setitem(session_module._HANDLERS, DatagramReceived, on_datagram)
        if inline:
            protocol._dispatch()
        else:  # the pump as it was: every event through _on_event
            for event in events:
                protocol.datagram_events += 1
                protocol.events_dispatched += 1
                try:
                    session._on_event(event)
                except Exception as exc:
                    session._internal_error("QUIC session", exc)
    return log, protocol.datagram_events, protocol.events_dispatched


@pytest.mark.parametrize(
    ("listener", "handler_raises"),
    list(itertools.product(("absent", "consumes", "declines", "raises"), (False, True))),
)
async def test_the_pump_hands_a_datagram_as_on_event_does(
    listener: str, handler_raises: bool
) -> None:
    inline = _pass(listener, handler_raises, inline=True)
    reference = _pass(listener, handler_raises, inline=False)
    assert inline == reference
    assert inline[1:] == (2, 2)
    assert inline[0]  # something was called


def test_the_session_handles_its_datagrams_with_on_datagram() -> None:
    # the inline copy calls QuicSession._on_datagram: what _on_event's table names
    assert session_module._HANDLERS[DatagramReceived] is QuicSession._on_datagram
