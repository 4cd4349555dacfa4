"""quic.conn_close.CloseState: the transitions of the end of a connection return the
connection's new state (RFC 9000 §10.2, §10.3.1), and the CONNECTION_CLOSE is sent
while closing only when one is owed."""

from __future__ import annotations

from collections import deque

from quic.conn_close import CloseFrame, CloseState
from quic.conn_state import ConnectionState
from quic.errors import TransportErrorCode
from quic.events import ConnectionTerminated, QuicEvent


def test_each_transition_returns_the_new_state_and_reports_once() -> None:
    events: deque[QuicEvent] = deque()
    closing = CloseState(events, None)
    state = closing.begin_closing(True, 7, 0, "bye", False)
    assert state is ConnectionState.CLOSING
    draining = CloseState(events, None)
    state = draining.begin_draining(4.0, 0.3, 0x0A, "peer", 0x08, False)
    assert state is ConnectionState.DRAINING and draining.deadline == 4.3
    reset = CloseState(events, None)
    assert reset.on_stateless_reset(2.0, 0.6) is ConnectionState.DRAINING
    assert reset.deadline == 2.6
    terminated = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert [(e.error_code, e.by_peer) for e in terminated] == [
        (7, False),
        (0x0A, True),
        (TransportErrorCode.NO_ERROR, True),
    ]


def test_send_builds_the_close_only_when_owed_and_starts_the_period() -> None:
    closer = CloseState(deque(), None)
    built: list[tuple[float, int, CloseFrame]] = []

    def build(now: float, version: int, frame: CloseFrame) -> list[bytes]:
        built.append((now, version, frame))
        return [b"close"]

    assert closer.send(1.0, build, 1, 0.5) == []  # not closing: nothing owed
    closer.begin_closing(False, TransportErrorCode.PROTOCOL_VIOLATION, 0x08, "bad", False)
    assert closer.send(2.0, build, 1, 0.5) == [b"close"]
    assert closer.deadline == 2.5  # RFC 9000 §10.2: from the first CONNECTION_CLOSE sent
    assert closer.send(2.1, build, 1, 0.5) == []  # owed again only after a datagram
    closer.on_datagram_while_closing()
    assert closer.send(2.2, build, 1, 9.0) == [b"close"]
    assert closer.deadline == 2.5  # the period does not restart
    frame = (False, 0x0A, 0x08, "bad")  # PROTOCOL_VIOLATION in a STREAM frame
    assert built == [(2.0, 1, frame), (2.2, 1, frame)]
