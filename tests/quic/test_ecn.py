"""ECN (RFC 9000 §13.4, RFC 9002 §7.1): counts, ACK_ECN, validation, CE response.

Unit tests drive :class:`quic.conn_ecn.EcnController` by hand; pair tests run a client
and a server on the fake clock through links that carry, bleach, remark or CE-mark the
ECN field (tests/support/netsim.py).
"""

from __future__ import annotations

import itertools
import sys

from quic.conn_ecn import (
    ECN_CE,
    ECN_ECT0,
    ECN_ECT1,
    ECN_NOT_ECT,
    TESTING_PACKETS,
    TESTING_PTOS,
    EcnController,
    EcnState,
)
from quic.frames import AckFrame, decode_frame
from quic.recovery import SentPacket
from tests.support.quicpair import Pair, make_pair

APP = 2


def _send(ecn: EcnController, space: int, count: int, first_pn: int = 0) -> list[SentPacket]:
    assert ecn.begin_send() == ECN_ECT0
    packets = []
    for pn in range(first_pn, first_pn + count):
        packet = SentPacket(space, pn, 1200)
        ecn.on_packet_sent(packet)
        packets.append(packet)
    return packets


def _fate(packets: list[SentPacket], acked: bool) -> None:
    for packet in packets:
        for handler, args in packet.frame_handlers():
            handler(acked, *args)


# -- receiving: counts per space ------------------------------------------------------------


def test_counts_per_space_and_codepoint() -> None:
    ecn = EcnController()
    assert ecn.counts(APP) is None  # nothing ECN-marked arrived: plain ACK frames
    for codepoint in (ECN_ECT0, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT):
        assert not ecn.on_packet_received(APP, codepoint)
    assert ecn.on_packet_received(APP, ECN_CE)  # CE: acknowledge at once
    assert ecn.counts(APP) == (2, 1, 1)
    assert ecn.counts(0) is None
    ecn.on_packet_received(0, ECN_ECT0)
    assert ecn.counts(0) == (1, 0, 0)


# -- sending and validation (RFC 9000 §13.4.2) --------------------------------------------


def test_testing_then_capable() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, 3 * TESTING_PACKETS)
    assert ecn.state is EcnState.TESTING
    assert ecn.begin_send() == ECN_ECT0  # every packet marked until the verdict
    _fate(packets[:4], True)
    assert not ecn.on_ack_frame(APP, 3, (4, 0, 0))
    assert ecn.state is EcnState.CAPABLE
    assert ecn.begin_send() == ECN_ECT0


def test_acked_marked_packets_without_counts_fail() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, 3)
    _fate(packets, True)
    ecn.on_ack_frame(APP, 2, None)  # a bleaching path or a peer that does not report
    assert ecn.state is EcnState.FAILED
    assert ecn.begin_send() == ECN_NOT_ECT
    assert not ecn.marking


def test_counts_that_go_backwards_fail() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, 4)
    _fate(packets[:2], True)
    ecn.on_ack_frame(APP, 1, (2, 0, 0))
    assert ecn.state is EcnState.CAPABLE
    _fate(packets[2:], True)
    ecn.on_ack_frame(APP, 3, (1, 0, 0))
    assert ecn.state is EcnState.FAILED


def test_counts_below_the_newly_acked_marked_packets_fail() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, 4)
    _fate(packets, True)
    ecn.on_ack_frame(APP, 3, (3, 0, 0))  # four ECT(0) packets acknowledged, three counted
    assert ecn.state is EcnState.FAILED


def test_capable_path_flags_its_packets_and_counts_them_when_acknowledged() -> None:
    """Once capable, a marked packet carries the ecn_marked flag instead of a handler;
    on_ack_frame counts the flagged packets among those newly acknowledged, so counts
    below them still fail validation (RFC 9000 §13.4.2.1) and counts that cover them
    pass."""
    for increase, state in ((5, EcnState.CAPABLE), (4, EcnState.FAILED)):
        ecn = EcnController()
        first = _send(ecn, APP, 2)
        _fate(first, True)
        assert not ecn.on_ack_frame(APP, 1, (2, 0, 0))
        assert ecn.state is EcnState.CAPABLE
        later = _send(ecn, APP, 5, first_pn=2)
        assert all(p.ecn_marked and not p.handlers for p in later)
        assert not any(p.ecn_marked for p in first)
        single = SentPacket(APP, 7, 1200)
        ecn.on_packets_sent([single], APP)  # the bulk loop's run: flagged too
        assert single.ecn_marked and not single.handlers
        assert not ecn.on_ack_frame(APP, 6, (2 + increase, 0, 0), later)
        assert ecn.state is state
    ecn = EcnController()
    _fate(_send(ecn, APP, 2), True)
    ecn.on_ack_frame(APP, 1, (2, 0, 0))
    later = _send(ecn, APP, 5, first_pn=2)
    # a reordered frame (largest not above the last) is not used, flagged or not
    assert not ecn.on_ack_frame(APP, 1, (2, 0, 0), later)
    assert ecn.state is EcnState.CAPABLE


def test_counts_above_what_was_sent_fail() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, 2)
    _fate(packets, True)
    ecn.on_ack_frame(APP, 1, (3, 0, 0))
    assert ecn.state is EcnState.FAILED


def test_ect1_count_fails_since_we_never_send_it() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, 2)
    _fate(packets, True)
    ecn.on_ack_frame(APP, 1, (0, 2, 0))  # remarked to ECT(1) on the way
    assert ecn.state is EcnState.FAILED


def test_reordered_ack_never_fails_validation() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, 4)
    _fate(packets, True)
    ecn.on_ack_frame(APP, 3, (4, 0, 0))
    assert not ecn.on_ack_frame(APP, 2, (0, 0, 0))  # older ACK, smaller counts
    assert ecn.state is EcnState.CAPABLE


def test_marked_packets_all_lost_fails() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, TESTING_PACKETS)
    _fate(packets[:-1], False)
    assert ecn.state is EcnState.TESTING  # one still outstanding
    _fate(packets[-1:], False)
    assert ecn.state is EcnState.FAILED


def test_lost_marked_packets_do_not_fail_once_one_was_acknowledged() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, 2 * TESTING_PACKETS)
    _fate(packets[:1], True)
    _fate(packets[1:], False)  # congestion losses, not an ECN black hole
    assert ecn.state is EcnState.TESTING


def test_ce_increase_is_reported_once_validated() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, 4)
    _fate(packets[:2], True)
    assert ecn.on_ack_frame(APP, 1, (1, 0, 1))  # one of two marked CE: congestion
    _fate(packets[2:3], True)
    assert not ecn.on_ack_frame(APP, 2, (2, 0, 1))  # CE count unchanged
    _fate(packets[3:], True)
    assert ecn.on_ack_frame(APP, 3, (2, 0, 2))
    assert ecn.ce_events == 2
    assert ecn.state is EcnState.CAPABLE


def test_ce_counts_on_a_failed_path_are_ignored() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, 2)
    _fate(packets, True)
    ecn.on_ack_frame(APP, 1, (0, 1, 1))
    assert ecn.state is EcnState.FAILED
    assert not ecn.on_ack_frame(APP, 5, (0, 1, 9))
    assert ecn.ce_events == 0


def test_disabled_never_marks_but_still_counts() -> None:
    ecn = EcnController(enabled=False)
    assert ecn.begin_send() == ECN_NOT_ECT
    ecn.on_packet_received(APP, ECN_ECT0)
    assert ecn.counts(APP) == (1, 0, 0)  # RFC 9000 §13.4.1: feedback regardless
    ecn.reset()
    assert ecn.state is EcnState.DISABLED


def test_reset_revalidates_a_new_path_from_the_old_baseline() -> None:
    ecn = EcnController()
    packets = _send(ecn, APP, 2)
    _fate(packets, True)
    ecn.on_ack_frame(APP, 1, None)
    assert ecn.state is EcnState.FAILED
    ecn.reset()  # connection migration (RFC 9000 §13.4.2)
    assert ecn.state is EcnState.TESTING
    packets = _send(ecn, APP, 2, first_pn=2)
    _fate(packets, True)
    ecn.on_ack_frame(APP, 3, (2, 0, 0))  # counts of the new path: baseline (0, 0, 0)
    assert ecn.state is EcnState.CAPABLE


# -- in memory, through the simulated network --------------------------------------------


def _transfer(pair: Pair, size: int, max_time: float = 60.0) -> bool:
    """Handshake, then send ``size`` bytes client → server; True if they arrived intact."""
    pair.handshake()
    sid = pair.client.create_stream()
    payload = bytes(i % 251 for i in range(size))
    pair.client.send_stream_data(sid, payload, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=max_time)
    return bytes(pair.data["server"][sid]) == payload


def _ack_ecn_seen(pair: Pair) -> list[tuple[int, int, int]]:
    """ECN counts of the ACK frames the server's ACK state would send now."""
    out = []
    for conn in (pair.client, pair.server):
        counts = conn.ecn.counts(APP)
        if counts is not None:
            out.append(counts)
    return out


def test_validation_succeeds_on_a_clean_link() -> None:
    pair = make_pair(ecn=True)
    assert _transfer(pair, 200_000)
    for conn in (pair.client, pair.server):
        assert conn.ecn.state is EcnState.CAPABLE
        assert conn.ecn_codepoint == ECN_ECT0
        ect0, ect1, ce = conn.ecn.counts(APP) or (0, 0, 0)
        assert ect0 > 0 and ect1 == 0 and ce == 0
    assert len(_ack_ecn_seen(pair)) == 2


def test_ack_ecn_frames_carry_the_counts() -> None:
    pair = make_pair(ecn=True)
    pair.handshake()
    server = pair.server
    seen: list[AckFrame] = []
    dispatch = server.dispatcher.dispatch

    def spy(payload: bytes, index: int, *args: object) -> bool:
        pos = 0
        while pos < len(payload):
            frame, pos = decode_frame(payload, pos)
            if isinstance(frame, AckFrame):
                seen.append(frame)
        return dispatch(payload, index, *args)  # type: ignore[arg-type]

    server.dispatcher.dispatch = spy  # type: ignore[method-assign]
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, bytes(50_000), end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=10)
    with_counts = [f.ecn for f in seen if f.ecn is not None]
    assert with_counts, "the client's ACK frames carry ECN counts"
    assert all(ect0 > 0 and ect1 == 0 and ce == 0 for ect0, ect1, ce in with_counts)
    assert with_counts == sorted(with_counts)  # counts never go backwards


def test_validation_fails_on_a_bleaching_link_and_data_still_flows() -> None:
    pair = make_pair(ecn=True, ecn_bleach=True)
    assert _transfer(pair, 100_000)
    for conn in (pair.client, pair.server):
        assert conn.ecn.state is EcnState.FAILED
        assert conn.ecn_codepoint == ECN_NOT_ECT
        assert conn.ecn.counts(APP) is None  # nothing marked ever arrived


def test_validation_fails_on_a_remarking_link() -> None:
    pair = make_pair(ecn=True, ecn_remark=ECN_ECT1)
    assert _transfer(pair, 100_000)
    for conn in (pair.client, pair.server):
        assert conn.ecn.state is EcnState.FAILED


def test_ptos_with_nothing_marked_acknowledged_stop_marking() -> None:
    ecn = EcnController()
    _send(ecn, 0, 1)
    for _ in range(TESTING_PTOS - 1):
        ecn.on_pto()
    assert ecn.state is EcnState.TESTING
    ecn.on_pto()
    assert ecn.state is EcnState.FAILED
    capable = EcnController()
    packets = _send(capable, APP, 2)
    _fate(packets, True)
    capable.on_ack_frame(APP, 1, (2, 0, 0))
    for _ in range(5):
        capable.on_pto()  # later PTOs are loss, not an ECN verdict
    assert capable.state is EcnState.CAPABLE


def test_a_path_that_drops_marked_packets_falls_back_to_not_ect() -> None:
    pair = make_pair(ecn=True, ecn_drop=True)
    assert _transfer(pair, 50_000)  # the handshake retransmits unmarked and completes
    for conn in (pair.client, pair.server):
        assert conn.ecn.state is EcnState.FAILED


def test_without_an_ecn_socket_validation_fails_quietly() -> None:
    pair = make_pair()  # the sockets cannot set the ECN field: everything Not-ECT
    assert _transfer(pair, 50_000)
    for conn in (pair.client, pair.server):
        assert conn.ecn.state is EcnState.FAILED
        assert conn.ecn.counts(APP) is None


def test_ecn_off_in_the_configuration_never_marks() -> None:
    pair = make_pair(ecn=True, client_kwargs={"ecn": False}, server_kwargs={"ecn": False})
    assert _transfer(pair, 50_000)
    for conn in (pair.client, pair.server):
        assert conn.ecn.state is EcnState.DISABLED
        assert conn.ecn.counts(APP) is None


def _ce_run(size: int, ce: float = 0.05) -> tuple[Pair, list[float], int, float]:
    """Transfer over a CE-marking link; (pair, times of cwnd reductions, ce events,
    seconds)."""
    pair = make_pair(ecn=True, ecn_ce=ce, bandwidth=2_000_000)
    pair.handshake()
    server_to_client = pair.net.link(("127.0.0.1", 4433), ("127.0.0.2", 50000))
    server_to_client.ecn_ce = 0.0  # only the data direction is congested
    cc = pair.client.recovery.congestion
    reductions: list[float] = []
    last = cc.congestion_window
    start = pair.net.now
    sid = pair.client.create_stream()
    payload = bytes(size)
    pair.client.send_stream_data(sid, payload, end_stream=True)

    def done() -> bool:
        nonlocal last
        if cc.congestion_window < last:
            reductions.append(pair.net.now)
        last = cc.congestion_window
        return pair.stream_done(sid)

    pair.run(done, max_time=120)
    assert bytes(pair.data["server"][sid]) == payload
    return pair, reductions, pair.client.ecn.ce_events, pair.net.now - start


def test_ce_marks_reduce_the_window_at_most_once_per_round_trip() -> None:
    pair, reductions, ce_events, duration = _ce_run(1_000_000, ce=0.3)
    link = pair.net.link(("127.0.0.2", 50000), ("127.0.0.1", 4433))
    assert link.dropped == 0  # no loss at all: every reduction is a CE response
    assert pair.client.ecn.state is EcnState.CAPABLE
    assert link.ce_marked > 50
    assert ce_events >= 1 and len(reductions) >= 3
    rtt = pair.client.recovery.rtt.min_rtt
    assert rtt > 0
    # one reduction per recovery period (at least a round trip), however many packets
    # of that round trip were marked
    gaps = [b - a for a, b in itertools.pairwise(reductions)]
    assert min(gaps) >= rtt
    assert len(reductions) < link.ce_marked / 2
    assert len(reductions) <= duration / rtt + 1
    assert pair.client.recovery.congestion.ssthresh is not None


def _retained(ecn: EcnController) -> int:
    """Bytes held by the controller and everything it refers to (one level of lists)."""
    total = sys.getsizeof(ecn)
    for name in EcnController.__slots__:
        value = getattr(ecn, name)
        total += sys.getsizeof(value)
        if isinstance(value, (list, tuple)):
            total += sum(sys.getsizeof(item) for item in value)
    return total


def test_ecn_work_is_linear_and_its_state_constant() -> None:
    """Scale: a 4x longer transfer marks and validates about 4x the packets (one
    handler call per marked packet), and the ECN state stays the same size (counters
    only: no table grows with the packets sent or received)."""
    small, _, _, _ = _ce_run(250_000)
    large, _, _, _ = _ce_run(1_000_000)
    small_ecn, large_ecn = small.client.ecn, large.client.ecn
    ratio = large_ecn._sent[APP] / small_ecn._sent[APP]
    assert 2 < ratio < 6
    small_acks = (small.server.ecn.counts(APP) or (0, 0, 0))[0]
    large_acks = (large.server.ecn.counts(APP) or (0, 0, 0))[0]
    assert 2 < large_acks / small_acks < 6  # the counts the server reports, likewise
    assert _retained(large_ecn) <= _retained(small_ecn) + 64
    assert _retained(large.server.ecn) <= _retained(small.server.ecn) + 64


def _ecn_events(bleach: bool) -> list[dict[str, object]]:
    from quic.qlog import QlogMemorySink
    from tests.support.qlog_schema import check_events

    sink = QlogMemorySink()
    pair = make_pair(ecn=True, ecn_bleach=bleach, client_kwargs={"qlog_factory": lambda c, o: sink})
    _transfer(pair, 200_000)
    assert not check_events(sink.events)
    return [e["data"] for e in sink.events if e["name"] == "recovery:ecn_state_updated"]


def test_qlog_follows_the_ecn_state() -> None:
    """qlog quic-events ecn_state_updated (RFC 9000 Appendix A.4 states): testing, then
    capable on a clean link, failed on one that clears the ECN field."""
    assert _ecn_events(False) == [{"new": "testing"}, {"old": "testing", "new": "capable"}]
    assert _ecn_events(True) == [{"new": "testing"}, {"old": "testing", "new": "failed"}]


def test_every_packet_processed_on_a_clean_link_is_counted_once() -> None:
    """The receive path counts an ECT(0) 1-RTT packet itself (PacketReader.read_short)
    and every other through EcnController.on_packet_received: on a link that keeps the
    marks, each packet processed is counted once, in its own space (RFC 9000 §13.4.1)."""
    pair = make_pair(ecn=True)
    assert _transfer(pair, 200_000)
    for conn in (pair.client, pair.server):
        counts = [conn.ecn.counts(index) or (0, 0, 0) for index in range(3)]
        assert all(ect1 == ce == 0 for _, ect1, ce in counts)
        assert sum(ect0 for ect0, _, _ in counts) == conn.reader.processed
        assert counts[APP][0] > 20  # the 1-RTT packets: read_short's count
