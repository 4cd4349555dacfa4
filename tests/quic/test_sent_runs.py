"""A run of packets registered at once (the bulk send loop, quic.conn_send._write_bulk)
leaves loss recovery, the congestion controllers and ECN exactly as registering them one
by one would (RFC 9002 A.5, RFC 9000 §13.4.2)."""

from __future__ import annotations

from typing import Any

import pytest

from quic.conn_ecn import EcnController
from quic.controllers import create_controller
from quic.recovery import LossRecovery, PacketSpace, SentPacket
from quic.rtt import RttEstimator

APP = PacketSpace.APPLICATION
MDS = 1452


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[bool, int]] = []

    def handler(self, acked: bool, pn: int) -> None:
        self.events.append((acked, pn))


def _recovery(name: str, max_sent: int) -> LossRecovery:
    rtt = RttEstimator()
    cc = create_controller(name, MDS, rtt)
    recovery = LossRecovery(cc, rtt, is_client=False, max_sent=max_sent)
    recovery.handshake_confirmed = True
    return recovery


def _packets(log: Log, first: int, count: int, size: int = MDS) -> list[SentPacket]:
    packets = []
    for pn in range(first, first + count):
        packet = SentPacket(APP, pn, size - (pn % 3))  # sizes differ a little
        packet.handlers.append((log.handler, (pn,)))
        packets.append(packet)
    return packets


def _state(recovery: LossRecovery, packets: list[SentPacket]) -> dict[str, Any]:
    st = recovery.spaces[APP]
    cc: Any = recovery.congestion
    hystart = getattr(cc, "hystart", None)
    return {
        "sent": list(st.sent),
        "largest_sent": st.largest_sent,
        "lowest_unacked": st.lowest_unacked,
        "eliciting_in_flight": st.ack_eliciting_in_flight,
        "last_eliciting": st.time_of_last_ack_eliciting,
        "in_flight": cc.bytes_in_flight,
        "window": cc.congestion_window,
        "available": cc.available(),
        "hystart_largest": None if hystart is None else hystart.largest_sent,
        "stamps": [
            (p.time_sent, p.delivered, p.delivered_time, p.first_sent_time, p.is_app_limited)
            for p in packets
        ],
        "timer": recovery.get_loss_detection_timer(),
    }


@pytest.mark.parametrize("name", ["reno", "cubic", "bbr"])
@pytest.mark.parametrize("max_sent", [16384, 40])
def test_a_run_registers_as_its_packets_one_by_one(name: str, max_sent: int) -> None:
    """Two runs (the second beyond ``max_sent`` when it is 40: the oldest records are
    declared lost, as one-by-one registration does), then an ACK of everything."""
    one, run = _recovery(name, max_sent), _recovery(name, max_sent)
    log_one, log_run = Log(), Log()
    sent_one: list[SentPacket] = []
    sent_run: list[SentPacket] = []
    for first, count, now in ((0, 25, 1.0), (25, 30, 1.5)):
        batch = _packets(log_one, first, count)
        for packet in batch:
            one.on_packet_sent(packet, now)
        sent_one += batch
        batch = _packets(log_run, first, count)
        run.on_packets_sent(batch, sum(p.size for p in batch), now)
        sent_run += batch
        assert _state(run, sent_run) == _state(one, sent_one)
        assert log_run.events == log_one.events
    assert bool(log_run.events) == (max_sent == 40)  # the drops beyond max_sent
    ack = [(15, 54)]
    result_one = one.on_ack_received(APP, ack, 0.0, 1.6)
    result_run = run.on_ack_received(APP, ack, 0.0, 1.6)
    assert [p.packet_number for p in result_run.acked] == [
        p.packet_number for p in result_one.acked
    ]
    assert _state(run, sent_run) == _state(one, sent_one)
    assert log_run.events == log_one.events


def test_an_empty_run_changes_nothing() -> None:
    recovery = _recovery("reno", 100)
    before = _state(recovery, [])
    recovery.on_packets_sent([], 0, 1.0)
    assert _state(recovery, []) == before


def test_a_run_must_raise_packet_numbers() -> None:
    recovery = _recovery("reno", 100)
    log = Log()
    recovery.on_packets_sent(_packets(log, 0, 3), 3 * MDS, 1.0)
    with pytest.raises(ValueError):
        recovery.on_packets_sent(_packets(log, 2, 2), 2 * MDS, 1.0)


def test_ecn_counts_a_run_as_its_packets() -> None:
    """RFC 9000 §13.4.2: every marked packet is counted and learns its fate."""
    one, run = EcnController(), EcnController()
    log = Log()
    batch_one, batch_run = _packets(log, 0, 12), _packets(log, 0, 12)
    for packet in batch_one:
        one.on_packet_sent(packet)
    run.on_packets_sent(batch_run, APP)
    assert run._sent == one._sent and run._marked == one._marked
    for a, b in zip(batch_one, batch_run, strict=True):
        assert len(a.handlers) == len(b.handlers) == 2
        (fa, args_a), (fb, args_b) = a.handlers[1], b.handlers[1]
        fa(True, *args_a)
        fb(True, *args_b)
    assert run._newly_acked == one._newly_acked and run._acked_marked == one._acked_marked == 12
