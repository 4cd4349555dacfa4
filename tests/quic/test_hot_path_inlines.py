"""Helpers the per-packet path calls no more (issue 10: fewer Python calls per small
packet) must still say what the inline copies decide: the path timer and the
anti-amplification check in ``earliest_deadline``, ``AckTracker.has_ranges`` (no
RangeSet ``__bool__``), the window-limited test of ``NewReno.on_packets_acked``, the
ACK delay ``AckState.write`` encodes, the fate handler of our ACK frames, the SentPacket
records the bulk send run fills without ``__init__``, the STREAM headers
``bulk_frames`` packs itself, NewReno acknowledging a frame's packets in one sum, and
the request ``AckFrequencySender.wants_send`` decides without ``wanted``."""

from __future__ import annotations

import collections
import random
import types
from typing import Any

import pytest

from quic.ack import SPENT_ACK_TRACKER, AckTracker
from quic.congestion import NewReno
from quic.conn_ackfreq import AckFrequencySender
from quic.conn_acks import AckState
from quic.conn_datagrams import DatagramChannel
from quic.conn_keys import APPLICATION
from quic.conn_paths import path_key
from quic.conn_streams import DeferredDelivery
from quic.conn_timers import earliest_deadline
from quic.connection import QuicConnection
from quic.errors import QuicProtocolError
from quic.events import DatagramReceived, QuicEvent, StreamDataReceived, stream_data_received
from quic.frames import decode_frame
from quic.packet_builder import PacketAssembler
from quic.recovery import SentPacket
from quic.stream_manager import StreamLimitReached, StreamLimits, StreamManager
from quic.stream_recv import RecvState, RecvStream
from quic.stream_send import SendState, SendStream
from tests.support.quicpair import make_pair

MDS = 1200


def _reference_deadline(conn: QuicConnection, idle: float | None) -> float | None:
    """earliest_deadline as it read before, through the paths' own methods."""
    candidates = [
        idle,
        conn.recovery.get_loss_detection_timer(),
        conn.paths.get_timer(),
        conn.sender.pacing_deadline,
        conn.pmtu.deadline,
    ]
    if not conn.paths.amplification_blocked():
        candidates.append(conn.acks.earliest_deadline(conn.keys.spaces))
    present = [c for c in candidates if c is not None]
    return min(present) if present else None


def test_earliest_deadline_reads_path_timers_and_amplification_as_the_paths_do() -> None:
    pair = make_pair(seed=3)
    pair.handshake()
    conn = pair.client
    current = conn.paths.current
    rng = random.Random(5)
    tracker = conn.acks.trackers[APPLICATION]
    seen_blocked = seen_open = seen_path = 0
    for _ in range(400):
        current.validated = rng.random() < 0.5
        current.received = rng.choice((0, 100, 1000))
        current.sent = rng.choice((0, 299, 300, 3000))
        current.abandon_at = rng.choice((None, None, 0.5, 50.0))
        current.next_challenge = rng.choice((None, 0.2, 80.0)) if current.abandon_at else None
        tracker.deadline = rng.choice((None, 0.01, 100.0))
        idle = rng.choice((None, 30.0))
        assert earliest_deadline(conn, idle) == _reference_deadline(conn, idle)
        seen_blocked += conn.paths.amplification_blocked()
        seen_open += not conn.paths.amplification_blocked()
        seen_path += conn.paths.get_timer() is not None
    assert seen_blocked and seen_open and seen_path  # every branch was taken


def test_get_timer_inline_is_earliest_deadline_of_idle_and_rest() -> None:
    """IdleTimer.deadline computes earliest_deadline(conn, idle, rest) inline (and reads
    the application space's ACK timer alone when the other two have none): the same
    answer for random mixes of every component's deadline, the paths' amplification
    state, keys at rest or resident, ACK deadlines in the handshake spaces, and a
    connection that is closing or gone."""
    pair = make_pair(seed=4)
    pair.handshake()
    pair.run(max_time=0.5)  # confirmed: the keys' rest counts
    conn = pair.client
    assert conn.handshake.confirmed
    idle = conn.idle
    current = conn.paths.current
    rng = random.Random(11)
    base = pair.net.now  # the loss timer is some 40 ms later: deadlines on both sides
    trackers = [AckTracker(0.025, immediate=False) for _ in range(3)]
    keys = conn.keys
    writes = [space.write for space in keys.spaces]
    live_state = conn.state
    pmtu = conn.pmtu
    pmtu_timers = [getattr(pmtu, name) for name in ("_search_at", "_probe_deadline", "_raise_at")]
    seen = collections.Counter()
    try:
        for step in range(1500):
            if step == 750:
                keys.rest()  # the second half with the keys at rest
            seen["resident"] += keys.resident
            conn.acks.trackers = (trackers[0], trackers[1], trackers[2])
            for index, tracker in enumerate(trackers):
                choices = (None, None, 0.01, 3.0, 40.0) if index else (None,) * 4 + (0.02,)
                at = rng.choice(choices)
                tracker.deadline = None if at is None else base + at
            for space in keys.spaces:
                space.write = rng.choice((None, writes[2]))
            current.validated = rng.random() < 0.7
            current.received = rng.choice((0, 100))
            current.sent = rng.choice((0, 299, 3000))
            current.abandon_at = rng.choice((None, None, None, base + 0.03, base + 50.0))
            conn.sender.pacing_deadline = rng.choice((None, None, base + 0.002, base + 60.0))
            for name in ("_search_at", "_probe_deadline", "_raise_at"):  # DPLPMTUD's timers
                setattr(pmtu, name, rng.choice((None, None, base + 0.001, base + 0.004, base + 70)))
            idle.last_activity = rng.choice((None, base - 30.0, base - 0.5, base))
            idle.rested_at = rng.choice((0.0, base - 20.0, base - 0.2, base + 1.0))
            idle.rest_delay = rng.choice((None, 0.005, 0.5, 30.0))
            idle.timeout = rng.choice((0.0, 0.001, 10.0, 60.0))
            conn.state = rng.choice((live_state,) * 6 + (type(live_state).CLOSING,))
            expected = earliest_deadline(conn, idle.idle_deadline(conn), idle.rest_deadline(conn))
            assert conn.get_timer() == expected
            seen[expected is None] += 1
            seen["handshake ack"] += trackers[1].deadline is not None
            seen["rest first"] += expected is not None and expected == idle.rest_deadline(conn)
            seen["idle first"] += expected is not None and expected == idle.idle_deadline(conn)
            seen["pmtu first"] += expected is not None and expected == pmtu.deadline
    finally:
        conn.state = live_state
        for space, write in zip(keys.spaces, writes, strict=True):
            space.write = write
        names = ("_search_at", "_probe_deadline", "_raise_at")
        for name, value in zip(names, pmtu_timers, strict=True):
            setattr(pmtu, name, value)
    firsts = ("rest first", "idle first", "pmtu first")
    assert all(seen[key] for key in (True, False, "handshake ack", *firsts))
    assert 0 < seen["resident"] < 1500


def test_has_ranges_is_the_received_set_being_non_empty() -> None:
    """largest >= 0 stands for bool(received): acknowledged ACKs keep the largest,
    forgetting keeps at least one range."""
    rng = random.Random(7)
    for max_ranges in (1, 2, 8):
        tracker = AckTracker(0.025, False, max_ranges=max_ranges)
        assert not tracker.has_ranges() and not tracker.received
        pn = 0
        for _ in range(300):
            pn += rng.choice((1, 1, 2, 5))
            tracker.on_packet(pn, rng.random() < 0.7, 0.0)
            if rng.random() < 0.3:
                tracker.on_ack_fate(rng.random() < 0.8, pn - rng.randrange(0, 4))
            assert tracker.has_ranges() == bool(tracker.received)
            assert tracker.has_ranges()
    assert not SPENT_ACK_TRACKER.has_ranges()


def test_ack_fate_handler_forgets_what_was_acknowledged_only() -> None:
    acks = AckState(0.025, 3)
    tracker = acks.trackers[APPLICATION]
    for pn in (0, 1, 2, 5, 6):
        tracker.on_packet(pn, True, 1.0)
    asm = PacketAssembler(MDS)
    _write_ack(acks, asm, 1.0)
    (handler, args) = asm.packet.handlers[-1]
    handler(False, *args)  # lost: the ranges are still repeated
    assert list(tracker.received) == [range(0, 3), range(5, 7)]
    handler(True, *args)  # acknowledged: below the largest goes (RFC 9000 §13.2.4)
    assert list(tracker.received) == [range(6, 7)] and tracker.floor == 6


def _write_ack(acks: AckState, asm: PacketAssembler, now: float) -> bytes:
    assert asm.begin_short_datagram(MDS, b"\x01" * 8, _Protector(), APPLICATION, 0, None, 0)
    assert acks.write(asm, APPLICATION, now)
    return bytes(asm._current.chunks[0])  # type: ignore[union-attr]


class _Protector:
    key_phase = 0


def test_ack_delay_written_is_the_trackers_and_never_negative() -> None:
    for largest_time, now in ((1.0, 1.0125), (2.0, 1.5), (1.0, 1.0)):
        acks = AckState(0.025, 3)
        tracker = acks.trackers[APPLICATION]
        tracker.on_packet(0, True, largest_time)
        frame = _write_ack(acks, PacketAssembler(MDS), now)
        decoded, _ = decode_frame(frame, 0)
        expected = int(tracker.ack_delay(now) * 1_000_000) >> 3
        assert decoded.ack_delay == expected  # type: ignore[attr-defined]
        assert (expected == 0) == (now <= largest_time)


def test_window_limited_inline_is_window_limited() -> None:
    """NewReno grows in slow start exactly when _window_limited(prior) says so."""
    outcomes = set()
    for prior_packets in range(0, 12):
        for extra in (0, 600):
            cc = NewReno(MDS)
            packets = [SentPacket(APPLICATION, pn, MDS) for pn in range(prior_packets)]
            for packet in packets:
                cc.on_packet_sent(packet.size, 0.0, packet)
            cc.bytes_in_flight += extra
            expected = cc._window_limited(cc.bytes_in_flight)
            before = cc.congestion_window
            if not packets:
                continue
            cc.on_packets_acked(packets[:1], 1.0)
            assert (cc.congestion_window > before) == expected
            outcomes.add(expected)
    assert outcomes == {True, False}


def test_control_pending_is_has_pending_control_after_every_step() -> None:
    """Streams opened and finished on both sides, MAX_STREAMS and STREAMS_BLOCKED taken
    and lost at random: the kept flag says what the four spaces say, each time."""
    rng = random.Random(11)
    limits = StreamLimits(max_streams_bidi=4, max_streams_uni=2, max_stream_data_bidi_local=100,
                          max_stream_data_bidi_remote=100, max_stream_data_uni=100)  # fmt: skip
    for is_client in (True, False):
        m = StreamManager(is_client, limits, limits)
        peer_bits = 0 if not is_client else 1
        next_peer = [0, 0]  # next index of peer bidi, uni streams
        taken: list[tuple[bool, int]] = []
        seen = set()
        for _ in range(600):
            op = rng.randrange(6)
            if op == 0:
                bidi = rng.random() < 0.5
                try:
                    sid = m.open_stream(bidi)
                except StreamLimitReached:
                    seen.add("blocked")
                else:
                    m.on_max_streams(bidi, m.peer_max_streams(bidi) + rng.randrange(2))
                    del sid
            elif op == 1:  # a peer stream arrives with its FIN and is read
                uni = rng.random() < 0.5
                sid = (next_peer[uni] << 2) | peer_bits | (2 if uni else 0)
                try:
                    stream = m.stream_for_frame(sid, 0x08)
                except Exception:
                    continue
                next_peer[uni] += 1
                if stream is not None and stream.recv is not None:
                    m.on_stream_frame(sid, 0, b"x", True)
                    stream.recv.read()
                    if stream.send is not None:
                        stream.send.reset(0)
                        stream.send.reset_frame()
                        stream.send.on_reset_acked()
            elif op == 2:
                for sid in list(m.streams):
                    m.maybe_discard(sid)
            elif op == 3:
                frames = m.max_streams_frames()
                taken.extend(frames)
                seen.add("max_streams" if frames else "none")
            elif op == 4:
                m.streams_blocked_frames()
            elif taken:
                bidi, limit = taken.pop(rng.randrange(len(taken)))
                m.on_max_streams_lost(bidi, limit)
                m.on_streams_blocked_lost(bidi, limit)
            assert m.control_pending == m.has_pending_control()
        assert {"blocked", "max_streams"} <= seen


def test_wants_control_is_control_or_window_or_manager() -> None:
    """``wants_control`` inline says what the three owners' own methods say."""
    pair = make_pair(seed=4)
    pair.handshake()
    streams = pair.server.streams
    window = streams.window
    rng = random.Random(6)
    outcomes = set()
    for _ in range(400):
        window.max_data = rng.choice((1000, 2000, 4000))
        window.window = rng.choice((0, 500, 1000, 2000))
        window.consumed = rng.randrange(0, window.max_data + 1)
        window.resend = rng.random() < 0.2
        streams.manager.control_pending = rng.random() < 0.2
        expected = (
            bool(streams._control) or window.should_update() or streams.manager.control_pending
        )
        assert streams.wants_control() == expected
        outcomes.add(expected)
    assert outcomes == {True, False}


def test_send_stream_finished_attribute_is_its_terminal_state() -> None:
    """``SendStream.finished`` (read by ``StreamManager.maybe_discard`` in place of the
    ``is_finished`` property) is True exactly in Data Recvd and Reset Recvd, whatever
    sequence of writes, frames, acknowledgements, losses and resets led there."""
    terminal = {SendState.DATA_RECVD, SendState.RESET_RECVD}
    rng = random.Random(8)
    reached = set()
    for _ in range(300):
        send = SendStream(0, 10_000)
        sent: list[tuple[int, int, bool]] = []
        for _ in range(rng.randrange(1, 12)):
            op = rng.randrange(6)
            writable = send.state in (SendState.READY, SendState.SEND)
            if op == 0 and writable and send.final_size is None:
                send.write(b"x" * rng.randrange(0, 50), end_stream=rng.random() < 0.5)
            elif op == 1:
                frame = send.next_frame(100, 1 << 20)
                if frame is not None:
                    offset, data, fin = frame[:3]
                    sent.append((offset, len(data), fin))
            elif op == 2 and sent:
                send.on_acked(*sent.pop(rng.randrange(len(sent))))
            elif op == 3 and sent:
                send.on_lost(*sent.pop(rng.randrange(len(sent))))
            elif op == 4 and rng.random() < 0.3:
                send.reset(1)
            elif op == 5 and send.reset_frame() is not None:
                send.on_reset_acked()
            assert send.finished == (send.state in terminal) == send.is_finished
        reached.add(send.state)
    assert terminal <= reached


def test_send_says_above_the_mark_exactly_when_buffered_is() -> None:
    """``ConnStreams.send`` tests ``write_offset`` before the ``buffered`` property (no
    call while the stream never went past the mark): its answer is still ``buffered <=
    send_buffer_high``, before and after acknowledgements lower ``buffered`` below
    ``write_offset``."""
    pair = make_pair(seed=5, client_kwargs={"stream_send_buffer_high": 1000})
    pair.handshake()
    conn = pair.client
    sid = conn.create_stream(True)
    rng = random.Random(9)
    seen = set()
    for i in range(80):
        below = conn.send_stream_data(sid, b"x" * rng.randrange(0, 300))
        assert below == (conn.send_buffered(sid) <= 1000)
        past = conn.streams._live[sid].send.write_offset > 1000  # the first test passes
        seen.add((below, past))
        if i % 7 == 6:
            pair.run(lambda: conn.send_buffered(sid) == 0)
    # below the mark never written past it, and written past it: above, or below
    # because acknowledgements lowered buffered
    assert seen == {(True, False), (True, True), (False, True)}


def _slots(packet: SentPacket) -> dict[str, object]:
    return {name: getattr(packet, name) for name in SentPacket.__slots__}


def test_short_frame_run_records_packets_as_sent_packet_init_does() -> None:
    """``PacketAssembler.short_frame_run`` fills every slot of its SentPacket records
    itself (no ``__init__`` frame): each equals ``SentPacket(APPLICATION, pn, size)``
    with the frame's handler flat (``fate``, ``args``) and ``handlers`` empty."""
    pair = make_pair(seed=5)
    pair.handshake()
    protector = pair.client.keys.spaces[APPLICATION].write
    assert protector is not None
    asm = PacketAssembler(1452)
    handler = (print, (1, 2))
    frames = [(b"\x0e" + bytes(7), bytes(1000 + i), handler) for i in range(3)]

    def take(room: int, count: int) -> list[tuple[bytes, bytes | memoryview, object]]:
        out = frames[:count]
        del frames[:count]
        return out  # type: ignore[return-value]

    made, _ = asm.short_frame_run(3, 1 << 20, 1452, b"12345678", protector, 40, 30, take)  # type: ignore[arg-type]
    assert made == 3 and len(asm.packets) == 3
    for pn, packet in enumerate(asm.packets, 40):
        reference = SentPacket(APPLICATION, pn, packet.size)
        reference.fate, reference.args = handler
        assert type(packet) is SentPacket
        assert packet.handlers == () and reference.handlers == []
        reference.handlers = packet.handlers
        assert _slots(packet) == _slots(reference)
    # first byte, DCID, a 1-byte packet number (10 above the largest acked), tag, frame
    assert [p.size for p in asm.packets] == [1 + 8 + 1 + 16 + 8 + 1000 + i for i in range(3)]


class _LoopOnly(NewReno):
    """NewReno acknowledging packet by packet, as before ``_acked_together``."""

    __slots__ = ()

    def _acked_together(self, *args: object) -> bool:
        return False


def test_packets_acked_together_grow_the_window_as_the_loop_does() -> None:
    """``NewReno._acked_together`` (one sum for an ACK frame's in-flight packets) leaves
    the controller as the per-packet loop does, or declines: slow start, avoidance,
    the crossing between them, packets sent before the recovery start, not limited."""
    rng = random.Random(10)
    taken = 0
    for _ in range(400):
        ccs = [NewReno(MDS), _LoopOnly(MDS)]
        count = rng.randint(1, 30)
        sizes = [rng.choice((MDS, MDS, 300, 1199)) for _ in range(count)]
        ssthresh = rng.choice((None, 20_000, 40_000, 60_000))
        cwnd = rng.choice((12_000, 30_000, 50_000))
        recovery_start = rng.choice((float("-inf"), 0.5, 1.5))
        extra = rng.choice((0, 0, 20_000))
        for cc in ccs:
            cc.congestion_window = cwnd
            cc.ssthresh = ssthresh
            cc.congestion_recovery_start_time = recovery_start
            cc._ca_bytes_acked = 500
            cc.hystart = None
            cc.bytes_in_flight = extra
        runs = []
        for cc in ccs:
            packets = []
            for pn, size in enumerate(sizes):
                packet = SentPacket(APPLICATION, pn, size)
                packet.time_sent = 1.0 + pn * 0.01 if recovery_start != 1.5 else 1.0 + pn * 0.1
                cc.on_packet_sent(size, packet.time_sent, packet)
                packets.append(packet)
            runs.append(packets)
        limited = ccs[0]._window_limited(ccs[0].bytes_in_flight)
        prior = ccs[0].bytes_in_flight
        together = ccs[0]._acked_together(runs[0], limited, recovery_start, 1, 3.0)
        ccs[1].on_packets_acked(runs[1], 3.0)
        if together:
            taken += 1
            for name in ("congestion_window", "bytes_in_flight", "_ca_bytes_acked", "ssthresh"):
                assert getattr(ccs[0], name) == getattr(ccs[1], name), name
        else:
            assert ccs[0].bytes_in_flight == prior  # declined: nothing changed
    assert 50 < taken < 400  # both ways were exercised


def test_bulk_frames_headers_are_encode_stream_frame_headers() -> None:
    """``StreamController.bulk_frames`` packs the 8-byte STREAM headers of a list
    itself: each equals ``encode_stream_frame_header`` for its frame, below and above
    offset 0x4000 (the 2-byte and 4-byte offset varints), and the data is the
    stream's bytes at that offset."""
    from quic.frames import encode_stream_frame_header

    pair = make_pair(seed=6)
    pair.handshake()
    streams = pair.client.streams
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"x" * 100)  # sent: the stream is in "Send"
    pair.client_endpoint.wake(pair.client)
    assert pair.client_endpoint.datagrams_to_send(pair.net.now)
    payload = b"x" * 100 + bytes(range(256)) * 200  # one chunk: pieces never cross chunks
    pair.client.send_stream_data(sid, payload[100:])
    shapes = set()
    for _ in range(8):
        frames = streams.bulk_frames(1400, 6)
        if not frames:
            break
        for header, data, (_, args) in frames:
            _, _, offset, n, fin = args
            assert header == encode_stream_frame_header(sid, offset, n, fin)
            assert bytes(data) == payload[offset : offset + n]
            shapes.add(len(header))
    assert shapes == {6, 8}  # type, 1-byte ID, 2- or 4-byte offset, 2-byte length


def test_the_datagram_event_made_inline_equals_the_dataclass_one() -> None:
    """DatagramChannel.on_frame_at builds DatagramReceived without its __init__."""
    events: list[QuicEvent] = []
    channel = DatagramChannel(65536, 4, events)
    payload = b"\x31\x05hello\x31\x00"
    assert channel.on_frame_at(payload, 0) == 7
    assert channel.on_frame_at(payload, 7) == 9
    assert events == [DatagramReceived(b"hello"), DatagramReceived(b"")]
    assert all(type(e) is DatagramReceived for e in events)
    assert repr(events[0]) == repr(DatagramReceived(b"hello"))
    assert hash(events[0]) == hash(DatagramReceived(b"hello"))
    with pytest.raises(AttributeError):
        events[0].data = b"x"  # type: ignore[misc]  # still frozen


def test_ack_frequency_wants_send_asks_for_what_wanted_says() -> None:
    """``wants_send`` (per build) computes ``wanted`` inline: the request it decides,
    or its decision that the last request still stands, is ``wanted``'s."""
    rng = random.Random(11)
    seen = set()
    for _ in range(2000):
        sender = AckFrequencySender(None, min_delay=rng.choice((0, 1000, 5000)))  # type: ignore[arg-type]
        sender.set_peer_params(rng.choice((0, 1, 800, 4000, 30_000)), rng.choice((1, 25, 40)))
        cwnd = rng.randint(1200, 4_000_000)
        mds = rng.choice((1200, 1452, 9000))
        srtt = rng.choice((0.00005, 0.0003, 0.002, 0.0137, 0.2, 1.5))
        want = sender.wanted(cwnd, mds, srtt)
        if rng.random() < 0.5:  # the last request: sometimes this one, sometimes not
            sender._requested = want if rng.random() < 0.5 else (want[0] + 1, want[1])
        decided = sender.wants_send(1.0, cwnd, mds, srtt, True)
        if decided:
            assert sender._pending == want
        else:
            assert sender._requested == want
        seen.add(decided)
    assert seen == {True, False}


def test_ack_frequency_remembered_answer_is_the_computed_one() -> None:
    """``wants_send`` answers at once while the window and the smoothed RTT stay where
    ``wanted`` is known to equal the request in force (same threshold, delay at the
    floor): the same decisions and requests as a sender that computes every time,
    over random runs of windows, RTTs, datagram sizes, requests sent, lost and
    acknowledged, and new peer bounds."""
    rng = random.Random(7)
    hits = decided = 0

    def packet_sink() -> Any:
        packet = types.SimpleNamespace(ack_eliciting=False, in_flight=False, handlers=[])
        return types.SimpleNamespace(room=100, push=lambda frame: None, packet=packet)

    for _ in range(300):
        min_delay = rng.choice((0, 900, 1000, 5000, 25_000))
        pair = [
            AckFrequencySender(types.SimpleNamespace(max_ack_delay=0.0), min_delay=min_delay)  # type: ignore[arg-type]
            for _ in range(2)
        ]
        remembered, reference = pair
        params = (rng.choice((0, 1, 800, 4000, 30_000)), rng.choice((1, 25, 40)))
        for sender in pair:
            sender.set_peer_params(*params)
        now = 1.0
        cwnd = rng.randint(1200, 200_000)
        srtt = rng.choice((0.0003, 0.002, 0.0137, 0.09, 0.2))
        mds = 1200
        for _ in range(60):
            now += rng.choice((0.0, 0.001, 0.03, 0.3))
            cwnd = max(1200, cwnd + rng.choice((0, 0, 31, 1200, -1200, 9000, -20_000)))
            srtt = max(0.0001, srtt * rng.choice((1.0, 1.0, 0.97, 1.05, 1.5, 0.5)))
            mds = rng.choice((mds,) * 9 + (1452,))
            reference._same_below = 0  # computes every time
            hits += remembered._same_from <= cwnd < remembered._same_below
            answer = remembered.wants_send(now, cwnd, mds, srtt, True)
            assert answer == reference.wants_send(now, cwnd, mds, srtt, True)
            assert remembered._pending == reference._pending
            decided += answer
            if answer and rng.random() < 0.8:
                for sender in pair:
                    sender.write(packet_sink(), now)  # type: ignore[arg-type]
            seq = remembered._latest_seq
            if seq >= 0 and rng.random() < 0.2:
                fate = rng.random() < 0.7  # acknowledged, else lost: sent again
                for sender in pair:
                    sender._fate(fate, seq)
            if rng.random() < 0.02:
                params = (rng.choice((0, 800, 30_000)), rng.choice((1, 25, 40)))
                for sender in pair:
                    sender.set_peer_params(*params)
    assert hits > 1000 and decided > 100


def _reference_short_only(conn: QuicConnection) -> bool:
    """SendScheduler._short_only as it read with the paths' and the connection-ID
    manager's own wants_send()."""
    keys, handshake, paths, sender = conn.keys, conn.handshake, conn.paths, conn.sender
    spaces = keys.spaces
    return not (
        spaces[0].write is not None
        or spaces[1].write is not None
        or spaces[APPLICATION].write is None
        or keys.zero_rtt_write is not None
        or not handshake.complete
        or sender._probes
        or sender._pings
        or not paths.current.validated
        or paths.wants_send()
        or handshake.done_pending
        or handshake.tokens_pending
        or sender._crypto.send[APPLICATION].needs_send
        or conn.cids.wants_send(True)
    )


def test_short_only_asks_paths_and_cids_as_their_wants_send() -> None:
    """_short_only reads the current path's challenge, the queued responses, the
    retirements and the pending issue itself, calling the managers' wants_send only
    when responses are queued or new IDs may be owed: the same answer as with the
    calls, for every mix (responses on this path or another, IDs to issue or not)."""
    pair = make_pair(seed=2)
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed, max_time=5)
    conn = pair.client
    paths, cids = conn.paths, conn.cids
    here = (paths.current.addr, paths.current.local)
    key_here = path_key(*here)
    key_other = path_key(("10.9.9.9", 4433), 0)
    rng = random.Random(11)
    answers = set()
    real_local = dict(cids.local)
    for _ in range(600):
        paths.current.challenge_owed = rng.random() < 0.2
        paths.responses = rng.choice(
            (
                None,
                collections.deque(),
                collections.deque([(b"12345678", key_other)]),
                collections.deque([(b"12345678", key_here)]),
            )
        )
        cids._retire_unsent = {7: None} if rng.random() < 0.2 else {}
        cids.issue_pending = rng.random() < 0.5
        cids._unannounced = {3: None} if rng.random() < 0.3 else {}
        cids.local = dict(real_local) if rng.random() < 0.5 else {}
        expected = _reference_short_only(conn)
        assert conn.sender._short_only() == expected
        answers.add(expected)
    assert answers == {True, False}


def test_recv_in_order_fast_path_equals_the_general_path() -> None:
    """``RecvStream.on_stream_frame``'s fast path (``bytes`` in order, also with the FIN
    of a whole message) leaves the stream as the general path does (a ``bytearray``
    never takes it): the same deltas, errors, states, final size and data, whatever
    the frames (in order, out of order, duplicated, FIN early or late)."""
    rng = random.Random(11)
    fast_fins = 0
    for _ in range(400):
        fast, general = RecvStream(4, 1000, 1000), RecvStream(4, 1000, 1000)
        for _ in range(rng.randrange(1, 8)):
            offset = rng.choice((fast.window.highest_received, rng.randrange(0, 120)))
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
            fin = rng.random() < 0.4
            outcomes = []
            for stream, payload in ((fast, data), (general, bytearray(data))):
                try:
                    outcomes.append(stream.on_stream_frame(offset, payload, fin))
                except QuicProtocolError as exc:
                    outcomes.append((exc.error_code, str(exc)))
            assert outcomes[0] == outcomes[1]
            assert fast.state is general.state
            assert fast.final_size == general.final_size
            assert fast.readable == general.readable
            assert fast.window.highest_received == general.window.highest_received
            if fin and offset == 0 and fast.state is RecvState.DATA_RECVD:
                fast_fins += 1
        assert fast.read() == general.read()
        assert fast.state is general.state
    assert fast_fins > 20  # the whole-message case was taken


def test_stream_events_made_without_init_equal_the_dataclass_ones() -> None:
    """``stream_data_received`` (per delivery) and the DeferredDelivery marker that
    ``StreamController.on_stream`` queues are made without the dataclass __init__:
    equal to the constructed ones, of their type, hashed and shown alike, still frozen."""
    for args in ((0, b"", False, False), (4, b"abc", True, True)):
        made, ref = stream_data_received(*args), StreamDataReceived(*args)
        assert made == ref and type(made) is StreamDataReceived
        assert repr(made) == repr(ref) and hash(made) == hash(ref)
        with pytest.raises(AttributeError):
            made.data = b"x"  # type: ignore[misc]  # still frozen
    pair = make_pair(seed=5)
    pair.handshake()
    streams = pair.server.streams
    queue = streams._events
    before = len(queue)
    streams.on_stream(0, 0, b"hello", False, 0x0A, pair.net.now)
    marker = queue[before]
    assert marker == DeferredDelivery(0) and type(marker) is DeferredDelivery
    assert repr(marker) == repr(DeferredDelivery(0)) and hash(marker) == hash(DeferredDelivery(0))
    event = pair.server.next_event()
    assert event == StreamDataReceived(0, b"hello", False, False)


def _check_short_only_everywhere(pair: Any, answers: collections.Counter[bool]) -> None:
    """After every flush of the simulated network, each live connection's _short_only
    (whose key and handshake conditions latch once they hold) agrees with the
    reference that asks them all every time."""
    react = pair._react

    def checked() -> bool:
        for endpoint in (pair.client_endpoint, pair.server_endpoint):
            for conn in endpoint.connections:
                expected = _reference_short_only(conn)
                assert conn.sender._short_only() == expected
                answers[expected] += 1
        return bool(react())

    pair.net.after_flush = checked


def test_short_only_key_latch_agrees_through_handshakes_retry_zero_rtt_and_key_updates() -> None:
    """_short_only stops asking the keys and the handshake once they first allowed
    1-RTT packets only (SendScheduler._keys_final): through a handshake after a Retry,
    an echo, key updates on both sides, and a resumed connection with 0-RTT accepted,
    its answer equals the reference's at every step, and the latch is set by the end."""
    from tests.quic.test_zero_rtt import finish, resumable_pair, second_connection

    answers: collections.Counter[bool] = collections.Counter()
    pair = make_pair(seed=5, server_kwargs={"retry": "always"})
    _check_short_only_everywhere(pair, answers)
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed, max_time=5)
    client, server = pair.client, pair.server
    for side in (client, server, client):
        sid = client.create_stream()
        client.send_stream_data(sid, b"x" * 300, end_stream=True)
        pair.run(lambda sid=sid: pair.stream_done(sid), max_time=5)
        keys, sent = side.keys, side.recovery.spaces[APPLICATION]
        pair.run(
            lambda keys=keys, sent=sent: (
                keys.key_phase_first_pn is None
                or (sent.largest_acked or -1) >= keys.key_phase_first_pn
            ),
            max_time=5,
        )
        generation = keys.spaces[APPLICATION].write
        side.request_key_update()
        sid = client.create_stream()
        client.send_stream_data(sid, b"y" * 300, end_stream=True)
        pair.run(lambda sid=sid: pair.stream_done(sid), max_time=5)
        assert side.keys.spaces[APPLICATION].write is not generation  # the update went
    assert client.sender._keys_final and server.sender._keys_final
    assert answers[True] > 10 and answers[False] > 10

    resumed, store = resumable_pair()
    _check_short_only_everywhere(resumed, answers)
    conn, sid = second_connection(resumed, store)
    assert conn.handshake.early.attempted
    assert conn.keys.zero_rtt_write is not None and not conn.sender._short_only()
    server_conn = finish(resumed, conn, sid)
    resumed.run(lambda: conn.handshake.confirmed, max_time=5)
    assert conn.keys.zero_rtt_write is None
    assert conn.sender._keys_final and server_conn.sender._keys_final
