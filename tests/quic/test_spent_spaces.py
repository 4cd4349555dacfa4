"""Discarded Initial and Handshake spaces (RFC 9001 §4.9) keep no per-connection state
once the connection rests (issue 10, memory per idle connection): their ACK tracker and
loss-detection state give way to one shared, empty, read-only object each."""

from __future__ import annotations

import pytest

from quic.ack import SPENT_ACK_TRACKER
from quic.conn_keys import APPLICATION, HANDSHAKE, INITIAL
from quic.recovery import LossRecovery
from tests.support.quicpair import Pair, make_pair


def _rested_pair() -> Pair:
    pair = make_pair(seed=5)
    pair.run(lambda: pair.client.handshake.confirmed and pair.server.handshake.confirmed, 5)
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(sid, b"x" * 3000, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), 5)
    pair.net.settle(pair.server.configuration.key_rest_delay * 3)
    return pair


def test_rested_connections_share_the_spent_spaces() -> None:
    pair = _rested_pair()
    for conn in (pair.client, pair.server):
        assert not conn.keys.resident  # rested
        trackers, spaces = conn.acks.trackers, conn.recovery.spaces
        assert trackers[INITIAL] is trackers[HANDSHAKE] is SPENT_ACK_TRACKER
        assert trackers[APPLICATION] is not SPENT_ACK_TRACKER
        assert spaces[INITIAL] is spaces[HANDSHAKE]
        assert spaces[APPLICATION] is not spaces[INITIAL]
    assert pair.client.recovery.spaces[INITIAL] is pair.server.recovery.spaces[HANDSHAKE]
    # and the connection goes on working: data both ways, acknowledged
    sid = pair.server.get_next_available_stream_id()
    pair.server.send_stream_data(sid, b"y" * 5000, end_stream=True)
    pair.run(lambda: pair.stream_done(sid, "client"), 5)
    assert pair.data["client"][sid] == b"y" * 5000
    pair.net.settle(1.0)
    assert not pair.server.recovery.spaces[APPLICATION].sent


def test_spent_state_refuses_changes() -> None:
    """A change to the shared state would be a bug: it raises (INTERNAL_ERROR on the
    connection that tried) instead of reaching every other connection."""
    with pytest.raises(RuntimeError):
        SPENT_ACK_TRACKER.on_packet(0, True, 0.0)
    with pytest.raises(RuntimeError):
        SPENT_ACK_TRACKER.deadline = 1.0
    assert SPENT_ACK_TRACKER.largest == -1 and not SPENT_ACK_TRACKER.has_ranges()
    recovery = _rested_pair().server.recovery
    spent = recovery.spaces[INITIAL]
    with pytest.raises(RuntimeError):
        spent.loss_time = 1.0
    with pytest.raises(TypeError):
        spent.sent[0] = None  # type: ignore[assignment]
    assert spent.loss_time is None and not spent.ack_eliciting_in_flight
    recovery.discard_space(INITIAL, 0.0)  # again: nothing to do
    with pytest.raises(ValueError):
        recovery.retire_space(APPLICATION)
    assert isinstance(recovery, LossRecovery)
