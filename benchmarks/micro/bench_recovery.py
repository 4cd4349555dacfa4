"""ACK processing: loss recovery over a window of in-flight packets, and ACK generation."""

from __future__ import annotations

from typing import Any

from quic.ack import AckTracker
from quic.congestion import NewReno
from quic.recovery import LossRecovery, SentPacket

APPLICATION = 2
WINDOW = 256  # packets in flight, acknowledged two at a time


def _ack_window() -> int:
    recovery = LossRecovery(NewReno(1200), is_client=True)
    recovery.handshake_confirmed = True
    now = 0.0
    for pn in range(WINDOW):
        recovery.on_packet_sent(SentPacket(APPLICATION, pn, 1200), now)
    now = 0.01
    for pn in range(1, WINDOW, 2):
        recovery.on_ack_received(APPLICATION, ((0, pn),), 0.0, now)
    return len(recovery.spaces[APPLICATION].sent)


def test_on_ack_received_two_packets_per_ack(benchmark: Any) -> None:
    assert benchmark(_ack_window) == 0


def _track() -> int:
    tracker = AckTracker(0.025, immediate=False)
    for pn in range(WINDOW):
        tracker.on_packet(pn, True, 0.0)
        if pn & 1:
            tracker.ranges()
            tracker.on_ack_sent()
    return tracker.largest


def test_ack_tracker_in_order(benchmark: Any) -> None:
    assert benchmark(_track) == WINDOW - 1
