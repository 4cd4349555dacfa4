"""``LossRecovery._on_ack_all`` (one ACK range over every tracked packet) learns
whether an acknowledged packet was ack-eliciting from the space's count of
ack-eliciting packets in flight, without a loop over the packets; the count is left at
zero, and an ack-eliciting packet that is not in flight is still found (RFC 9002
§5.1: an RTT sample needs a newly acknowledged ack-eliciting packet)."""

from __future__ import annotations

import pytest

from tests.quic.test_recovery import APP, Harness


@pytest.mark.parametrize("count", [1, 5, 20])
def test_every_packet_acknowledged_leaves_no_ack_eliciting_count(count: int) -> None:
    h = Harness()
    for i in range(count):
        h.send(1.0 + i * 0.001)
    h.send(1.1, ack_eliciting=False, in_flight=False, size=40)
    st = h.rec.spaces[APP]
    assert st.ack_eliciting_in_flight == count
    result = h.rec.on_ack_received(APP, [(0, count)], 0.0, 1.2)
    assert len(result.acked) == count + 1 and not st.sent
    assert st.ack_eliciting_in_flight == 0
    # RFC 9002 §5.1: ack-eliciting ones were newly acknowledged: the sample is the
    # largest acknowledged's (the ACK-only packet sent at 1.1)
    assert result.rtt_sample == pytest.approx(0.1)
    h.send(1.3)
    result = h.rec.on_ack_received(APP, [(count + 1, count + 1)], 0.0, 1.4)
    assert result.rtt_sample == pytest.approx(0.1)
    assert h.rec.spaces[APP].ack_eliciting_in_flight == 0
    assert h.acked() == list(range(count + 2))


def test_an_ack_eliciting_packet_not_in_flight_still_gives_a_sample() -> None:
    h = Harness()
    h.send(1.0, ack_eliciting=True, in_flight=False, size=40)
    assert h.rec.spaces[APP].ack_eliciting_in_flight == 0
    result = h.rec.on_ack_received(APP, [(0, 0)], 0.0, 1.25)
    assert result.rtt_sample == pytest.approx(0.25)


def test_only_ack_only_packets_give_no_sample() -> None:
    h = Harness()
    for i in range(3):
        h.send(1.0 + i, ack_eliciting=False, in_flight=False, size=40)
    result = h.rec.on_ack_received(APP, [(0, 2)], 0.0, 5.0)
    assert len(result.acked) == 3 and result.rtt_sample is None
    assert not h.rec.rtt.has_sample
