"""DPLPMTUD (RFC 8899, RFC 9000 §14): search, probes, black holes, the send path.

Unit tests drive :class:`quic.conn_pmtu.PmtuDiscovery` by hand; pair tests run on the
fake clock through links with a path MTU (netsim drops larger datagrams, as the Don't
Fragment bit makes a router do), changed mid-connection for black holes.
"""

from __future__ import annotations

from typing import Any

from quic.conn_pmtu import (
    BASE_PLPMTU,
    MAX_PROBES,
    PROBE_TIMEOUT_PTOS,
    SEARCH_PRECISION,
    START_DELAY_PTOS,
    PmtuDiscovery,
    PmtuState,
)
from quic.frames import PaddingFrame, PingFrame, decode_frame
from quic.recovery import SentPacket
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

PMTUD = {"pmtud_max_datagram_size": 1452}


class FakeAsm:
    """What write_probe needs of a PacketAssembler: room, push, the open packet."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.chunks: list[bytes] = []
        self.packet = SentPacket(2, 0, 0, False, False)

    def push(self, data: bytes) -> None:
        assert len(data) <= self.room
        self.chunks.append(bytes(data))
        self.room -= len(data)


def _pmtu(start: int = 1200, ceiling: int = 1452) -> tuple[PmtuDiscovery, list[int]]:
    applied: list[int] = []
    return PmtuDiscovery(start, ceiling, 600.0, applied.append), applied


def _probe(pmtu: PmtuDiscovery, now: float = 0.0) -> tuple[int, SentPacket]:
    size = pmtu.probe_size()
    assert size is not None
    asm = FakeAsm(size - 30)
    pmtu.write_probe(asm, now, 0.1)  # type: ignore[arg-type]
    return size, asm.packet


def _fate(packet: SentPacket, acked: bool) -> None:
    for handler, args in packet.frame_handlers():
        handler(acked, *args)


def _large(pn: int, size: int = 1452) -> SentPacket:
    return SentPacket(2, pn, size)


# -- the state machine --------------------------------------------------------------------


def test_disabled_when_the_ceiling_is_not_above_the_start() -> None:
    pmtu, applied = _pmtu(1200, 1200)
    pmtu.start(0.0)
    assert pmtu.state is PmtuState.DISABLED
    assert pmtu.probe_size() is None
    assert pmtu.deadline is None
    assert applied == []


def test_probe_is_ping_and_padding_not_in_flight() -> None:
    pmtu, _ = _pmtu()
    assert pmtu.probe_size() is None  # BASE: not before the handshake is confirmed
    pmtu.start(0.0)
    asm = FakeAsm(1400)
    pmtu.write_probe(asm, 0.0, 0.1)  # type: ignore[arg-type]
    payload = b"".join(asm.chunks)
    assert asm.room == 0 and len(payload) == 1400  # padded to the datagram's end
    frame, pos = decode_frame(payload, 0)
    assert isinstance(frame, PingFrame)
    frame, pos = decode_frame(payload, pos)
    assert isinstance(frame, PaddingFrame) and pos == len(payload)
    # PING makes the peer acknowledge it, but recovery takes no congestion action on
    # its loss (RFC 9000 §14.4): recorded as neither in flight nor ack-eliciting
    assert not asm.packet.ack_eliciting and not asm.packet.in_flight
    assert pmtu.probe_size() is None  # one probe at a time
    assert pmtu.deadline == PROBE_TIMEOUT_PTOS * 0.1


def test_a_delayed_start_searches_at_its_deadline() -> None:
    pmtu, _ = _pmtu()
    pmtu.start(1.0, 0.5)  # confirmed at 1.0: the search begins at 1.5
    assert pmtu.state is PmtuState.BASE and pmtu.probe_size() is None
    assert pmtu.deadline == 1.5  # a deadline of its own: an idle connection searches too
    pmtu.handle_timer(1.4)  # early: nothing
    assert pmtu.probe_size() is None and pmtu.deadline == 1.5
    pmtu.handle_timer(1.5)
    assert pmtu.state is PmtuState.SEARCHING and pmtu.probe_size() == 1452
    assert pmtu.deadline is None  # no probe out yet, nothing to raise
    _, packet = _probe(pmtu, now=1.5)
    _fate(packet, True)
    assert pmtu.plpmtu == 1452 and pmtu.state is PmtuState.SEARCH_COMPLETE


def test_a_delayed_start_on_a_path_with_nothing_to_search_sets_no_deadline() -> None:
    pmtu, _ = _pmtu()
    pmtu.start(1.0, 0.5)
    pmtu.set_peer_limit(1200)  # the peer takes nothing larger: DISABLED
    assert pmtu.state is PmtuState.DISABLED and pmtu.deadline is None
    pmtu.handle_timer(2.0)
    assert pmtu.probe_size() is None


def test_maximum_first_then_complete_then_raise_timer() -> None:
    pmtu, applied = _pmtu()
    pmtu.start(0.0)
    size, packet = _probe(pmtu, now=1.0)
    assert size == 1452
    _fate(packet, True)
    assert applied == [1452] and pmtu.plpmtu == 1452
    assert pmtu.state is PmtuState.SEARCH_COMPLETE
    assert pmtu.deadline is None  # at the maximum: nothing to raise


def test_losses_bisect_down_to_the_path_mtu() -> None:
    path_mtu = 1300
    pmtu, applied = _pmtu()
    pmtu.start(0.0)
    probes = 0
    while pmtu.state is PmtuState.SEARCHING:
        size, packet = _probe(pmtu)
        probes += 1
        _fate(packet, size <= path_mtu)
        assert probes < 100
    assert path_mtu - SEARCH_PRECISION < pmtu.plpmtu <= path_mtu
    assert applied[-1] == pmtu.plpmtu
    assert pmtu.probes_lost % MAX_PROBES == 0  # each failing size tried MAX_PROBES times
    # the raise timer (RFC 8899 §5.1.1 PMTU_RAISE_TIMER) searches again later
    assert pmtu.deadline is not None
    pmtu.handle_timer(pmtu.deadline)
    assert pmtu.state is PmtuState.SEARCHING and pmtu.probe_size() == 1452


def test_probe_timeout_counts_as_a_loss_and_late_ack_still_counts() -> None:
    pmtu, applied = _pmtu()
    pmtu.start(0.0)
    size, packet = _probe(pmtu)
    deadline = pmtu.deadline
    assert deadline is not None
    pmtu.handle_timer(deadline - 0.001)
    assert pmtu.probes_lost == 0  # not yet
    pmtu.handle_timer(deadline)
    assert pmtu.probes_lost == 1 and pmtu.probe_size() == size  # tried again
    _fate(packet, True)  # the first probe's ACK arrives after all
    assert pmtu.plpmtu == size == applied[-1]


def test_peer_limit_caps_the_search() -> None:
    pmtu, _ = _pmtu()
    pmtu.set_peer_limit(1350)
    pmtu.start(0.0)
    assert pmtu.probe_size() == 1350
    small, _ = _pmtu()
    small.set_peer_limit(1200)
    small.start(0.0)
    assert small.state is PmtuState.DISABLED


def test_a_start_above_the_ceiling_is_kept() -> None:
    pmtu, applied = _pmtu(1452, 1200)  # max_datagram_size set, no discovery
    pmtu.set_peer_limit(65527)
    pmtu.start(0.0)
    assert pmtu.plpmtu == 1452 and applied == []
    assert pmtu.state is PmtuState.DISABLED


def test_peer_limit_below_the_start_lowers_it() -> None:
    pmtu, applied = _pmtu(1400, 1452)
    pmtu.set_peer_limit(1300)
    assert pmtu.plpmtu == 1300 and applied == [1300]


def _at_1452() -> tuple[PmtuDiscovery, list[int]]:
    pmtu, applied = _pmtu()
    pmtu.start(0.0)
    _, packet = _probe(pmtu)
    _fate(packet, True)
    assert pmtu.plpmtu == 1452
    return pmtu, applied


def test_black_hole_falls_back_to_base_and_searches_below() -> None:
    pmtu, applied = _at_1452()
    for pn in range(MAX_PROBES):
        pmtu.on_ack([SentPacket(2, 100 + pn, 60)], [_large(pn)], 1.0)  # small acked, large lost
    assert pmtu.plpmtu == BASE_PLPMTU and applied[-1] == BASE_PLPMTU
    assert pmtu.black_holes == 1
    assert pmtu.state is PmtuState.SEARCHING
    size = pmtu.probe_size()
    assert size is not None and BASE_PLPMTU < size < 1452  # below the size that failed


def test_pto_expiries_are_black_hole_evidence() -> None:
    pmtu, _ = _at_1452()
    for _ in range(MAX_PROBES):
        pmtu.on_pto(1.0)
    assert pmtu.plpmtu == BASE_PLPMTU


def test_a_large_packet_acknowledged_clears_the_suspicion() -> None:
    pmtu, _ = _at_1452()
    for round_ in range(5):
        for pn in range(MAX_PROBES - 1):
            pmtu.on_lost([_large(10 * round_ + pn)], 1.0)
        pmtu.on_ack([_large(1000 + round_)], [_large(2000 + round_)], 1.0)  # congestion
    assert pmtu.plpmtu == 1452 and pmtu.black_holes == 0


def test_lost_probes_are_not_black_hole_evidence() -> None:
    pmtu, _ = _at_1452()
    for pn in range(10):
        pmtu.on_lost([_large(pn, 1500)], 1.0)  # larger than the PLPMTU: a probe
        pmtu.on_lost([SentPacket(2, 100 + pn, 1100)], 1.0)  # small: not evidence
    assert pmtu.plpmtu == 1452


def test_reset_starts_over() -> None:
    pmtu, applied = _at_1452()
    pmtu.reset(5.0, confirmed=True)  # a new path (RFC 9000 §14.3)
    assert pmtu.plpmtu == 1200 and applied[-1] == 1200
    assert pmtu.state is PmtuState.SEARCHING and pmtu.probe_size() == 1452


# -- in memory, through the simulated network --------------------------------------------


def _pair(mtu: int, **link: Any) -> Pair:
    pair = make_pair(client_kwargs=dict(PMTUD), server_kwargs=dict(PMTUD), mtu=mtu, **link)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    return pair


def _settled(pair: Pair) -> bool:
    return all(conn.pmtu.state is PmtuState.SEARCH_COMPLETE for conn in (pair.client, pair.server))


def _send(pair: Pair, size: int, max_time: float = 60.0) -> int:
    sid = pair.client.create_stream()
    payload = bytes(i % 253 for i in range(size))
    pair.client.send_stream_data(sid, payload, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=max_time)
    assert bytes(pair.data["server"][sid]) == payload  # byte-exact
    return sid


def test_discovery_reaches_the_maximum_on_a_wide_path() -> None:
    pair = _pair(1500)
    pair.run(lambda: _settled(pair), max_time=5)
    for conn in (pair.client, pair.server):
        assert conn.pmtu.plpmtu == conn.max_datagram_size == 1452
        assert conn.recovery.congestion.max_datagram_size == 1452  # type: ignore[attr-defined]
        assert conn.pmtu.probes_sent == 1
    _send(pair, 300_000)
    assert pair.net.link(CLIENT_ADDR, SERVER_ADDR).dropped == 0


def test_a_connection_closed_soon_after_the_handshake_sends_no_probe() -> None:
    """The search waits START_DELAY_PTOS PTOs after confirmation: a handshake followed
    by a close costs neither side a probe (nor the peer its acknowledgment); a
    connection that stays searches once that time has passed."""
    short = _pair(1500)
    client, server = short.client, short.server
    assert client.pmtu.state is server.pmtu.state is PmtuState.BASE
    start = client.pmtu.deadline
    assert start is not None
    assert start - short.net.now >= (START_DELAY_PTOS - 1) * client.recovery.rtt.pto_base()
    client.close()
    short.run(lambda: server.state.name in ("DRAINING", "TERMINATED"), max_time=2)
    assert client.pmtu.probes_sent == server.pmtu.probes_sent == 0
    long = _pair(1500)
    long.run(lambda: _settled(long), max_time=5)  # idle, yet searched after the wait
    assert long.client.pmtu.probes_sent == long.server.pmtu.probes_sent == 1


def test_discovery_finds_the_path_mtu_and_the_transfer_uses_it() -> None:
    pair = _pair(1400)
    pair.run(lambda: _settled(pair), max_time=30)
    for conn in (pair.client, pair.server):
        assert 1400 - SEARCH_PRECISION < conn.pmtu.plpmtu <= 1400
    sizes: list[int] = []
    link = pair.net.link(CLIENT_ADDR, SERVER_ADDR)
    schedule = link.schedule

    def spy(data: bytes, now: float, rng: Any) -> list[tuple[float, bytes]]:
        sizes.append(len(data))
        return schedule(data, now, rng)

    link.schedule = spy  # type: ignore[method-assign]
    _send(pair, 300_000)
    plpmtu = pair.client.pmtu.plpmtu
    assert plpmtu - SEARCH_PRECISION < max(sizes) <= plpmtu  # full packets, no larger


def test_probe_losses_do_not_shrink_the_congestion_window() -> None:
    pair = _pair(1300)
    cc = pair.client.recovery.congestion
    windows = [cc.congestion_window]

    def watch() -> bool:
        windows.append(cc.congestion_window)
        return _settled(pair)

    pair.run(watch, max_time=30)
    link = pair.net.link(CLIENT_ADDR, SERVER_ADDR)
    assert link.dropped_mtu >= MAX_PROBES  # probes above the path MTU were lost ...
    assert pair.client.pmtu.probes_lost >= MAX_PROBES
    assert cc.ssthresh is None  # ... and no congestion event came of it
    assert min(windows[1:]) >= windows[0]


def _black_hole(size: int) -> tuple[Pair, int]:
    """Run at 1452, drop the path MTU to 1300 in the middle of a ``size``-byte
    transfer; returns the pair and the PMTU probes sent in all."""
    pair = _pair(1500)
    pair.run(lambda: _settled(pair), max_time=5)
    assert pair.client.max_datagram_size == 1452
    sid = pair.client.create_stream()
    payload = bytes(i % 249 for i in range(size))
    pair.client.send_stream_data(sid, payload, end_stream=True)
    half = size // 2

    def halfway() -> bool:
        return len(pair.data["server"].get(sid, b"")) >= half

    pair.run(halfway, max_time=30)
    for src, dst in ((CLIENT_ADDR, SERVER_ADDR), (SERVER_ADDR, CLIENT_ADDR)):
        pair.net.link(src, dst).mtu = 1300  # the path MTU drops mid-transfer
    pair.run(lambda: pair.stream_done(sid), max_time=120)
    assert bytes(pair.data["server"][sid]) == payload  # byte-exact
    return pair, pair.client.pmtu.probes_sent


def test_black_hole_falls_back_and_the_transfer_completes() -> None:
    pair, _ = _black_hole(600_000)
    client = pair.client
    assert client.pmtu.black_holes == 1
    assert client.state.name == "CONNECTED"
    pair.run(lambda: _settled(pair), max_time=60)  # searched again below 1452
    assert 1300 - SEARCH_PRECISION < client.pmtu.plpmtu <= 1300
    assert client.max_datagram_size == client.pmtu.plpmtu


def test_probing_cost_does_not_grow_with_the_transfer() -> None:
    """Scale: a 4x longer transfer through the same black hole sends no more probes and
    falls back once: probing is bounded by the search, not by the data."""
    small, small_probes = _black_hole(300_000)
    large, large_probes = _black_hole(1_200_000)
    assert small.client.pmtu.black_holes == large.client.pmtu.black_holes == 1
    assert large_probes <= small_probes + MAX_PROBES
    assert large.client.queue_sizes() == small.client.queue_sizes()


def test_late_ack_of_an_earlier_probe_ends_the_search() -> None:
    """Found by fuzz/test_fuzz_ecn_pmtu.py: a probe timed out, a second one of the same
    size is outstanding, then the first one's ACK arrives; the search must not ask for
    a probe that is not larger than the PLPMTU."""
    pmtu, _ = _pmtu()
    pmtu.set_peer_limit(1216)
    pmtu.start(0.0)
    size, first = _probe(pmtu, now=0.0)
    pmtu.handle_timer(1.0)  # the first probe's timer expires
    _probe(pmtu, now=1.0)  # a second probe of the same size
    _fate(first, True)  # late: proves 1216
    assert pmtu.plpmtu == size == 1216
    pmtu.handle_timer(2.0)  # the second one's timer
    assert pmtu.probe_size() is None
    assert pmtu.state is PmtuState.SEARCH_COMPLETE


def test_qlog_reports_each_plpmtu_change() -> None:
    """qlog quic-events mtu_updated: DPLPMTUD's one probe on a wide path moves the
    datagram size from 1200 to 1452, and the trace stays valid."""
    from quic.qlog import QlogMemorySink
    from tests.support.qlog_schema import check_events

    sink = QlogMemorySink()
    kwargs = {**PMTUD, "qlog_factory": lambda c, o: sink}
    pair = make_pair(client_kwargs=kwargs, server_kwargs=dict(PMTUD), mtu=1500)
    pair.handshake()
    pair.run(lambda: _settled(pair), max_time=5)
    assert not check_events(sink.events)
    updates = [e["data"] for e in sink.events if e["name"] == "connectivity:mtu_updated"]
    assert updates == [{"old": 1200, "new": 1452}]


def test_pto_with_only_small_packets_in_flight_is_no_black_hole_evidence() -> None:
    """RFC 8899 §4.3: a black hole drops packets larger than the base; a PTO while only
    small ones are outstanding (a peer too busy to read) says nothing of the path MTU."""
    pmtu, _ = _at_1452()
    for _ in range(2 * MAX_PROBES):
        pmtu.on_pto(1.0, 120)
    assert pmtu.plpmtu == 1452 and pmtu.black_holes == 0
    for _ in range(MAX_PROBES):
        pmtu.on_pto(1.0, 1452)  # a full-sized packet unanswered: evidence
    assert pmtu.plpmtu == BASE_PLPMTU and pmtu.black_holes == 1
