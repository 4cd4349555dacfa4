"""quic.conn_send_side.SideDatagrams: the CONNECTION_CLOSE datagrams (RFC 9000 §10.2.3)
and the owned component's place in the send scheduler; in-memory pairs on a fake clock
(seeded link). Probes of other paths are covered by the migration tests."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from quic.conn_send_side import SideDatagrams
from quic.errors import TransportErrorCode
from quic.events import ConnectionTerminated
from tests.support.quicpair import make_pair


def _terminations(pair_events: Sequence[object]) -> list[ConnectionTerminated]:
    return [e for e in pair_events if isinstance(e, ConnectionTerminated)]


def test_the_scheduler_owns_one_side_builder() -> None:
    pair = make_pair(seed=3)
    assert isinstance(pair.client.sender._side, SideDatagrams)


@pytest.mark.parametrize("length", [0, 40, 256, 1000, 5000])
def test_an_application_close_carries_at_most_256_bytes_of_its_reason(length: int) -> None:
    pair = make_pair(seed=length)
    pair.handshake()
    reason = "".join(chr(ord("a") + i % 26) for i in range(length))
    pair.client.close(7, reason)
    pair.run(lambda: bool(_terminations(pair.server_events)), max_time=5)
    (term,) = _terminations(pair.server_events)
    assert term.is_application and term.by_peer and term.error_code == 7
    assert term.reason_phrase == reason[:256]


def test_a_transport_close_keeps_its_frame_type() -> None:
    pair = make_pair(seed=11)
    pair.handshake()
    pair.client.close(TransportErrorCode.PROTOCOL_VIOLATION, "bad", application=False)
    pair.run(lambda: bool(_terminations(pair.server_events)), max_time=5)
    (term,) = _terminations(pair.server_events)
    assert not term.is_application and term.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    assert term.reason_phrase == "bad"


def test_an_application_close_before_the_handshake_is_an_application_error() -> None:
    """RFC 9000 §10.2.3: in Initial and Handshake packets an application close becomes a
    transport CONNECTION_CLOSE with APPLICATION_ERROR and no reason."""
    pair = make_pair(seed=5)
    pair.run(lambda: bool(pair.server_endpoint.connections), max_time=5)
    assert not pair.client.handshake_complete
    pair.client.close(9, "secret reason")
    pair.run(lambda: bool(_terminations(pair.server_events)), max_time=5)
    (term,) = _terminations(pair.server_events)
    assert not term.is_application
    assert term.error_code == TransportErrorCode.APPLICATION_ERROR
    assert term.reason_phrase == ""
