"""Property tests for the ACK frequency codec (draft-ietf-quic-ack-frequency §4, §5) and
the receiver policy it drives: round trips, arbitrary bytes after the 0xaf type either
decode or raise QuicProtocolError, and any sequence of ACK_FREQUENCY frames and packets
leaves the tracker consistent (an ACK is due no later than the threshold says)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from quic.ack import AckTracker
from quic.buffer import VARINT_MAX
from quic.errors import QuicProtocolError
from quic.frames import (
    IMMEDIATE_ACK_FRAME,
    AckFrequencyFrame,
    ImmediateAckFrame,
    decode_frame,
    decode_frames,
    encode_ack_frequency_frame,
)
from quic.packet import PacketType

varints = st.integers(0, VARINT_MAX)


@settings(max_examples=examples(300))
@given(varints, varints, varints, varints, st.binary(max_size=8))
def test_ack_frequency_round_trip(
    seq: int, threshold: int, delay: int, reorder: int, tail: bytes
) -> None:
    frame = encode_ack_frequency_frame(seq, threshold, delay, reorder)
    decoded, end = decode_frame(frame + tail, 0)
    assert decoded == AckFrequencyFrame(seq, threshold, delay, reorder)
    assert end == len(frame)
    assert decoded.encode() == frame


@settings(max_examples=examples(300))
@given(st.binary(max_size=40))
def test_arbitrary_bytes_after_the_type(body: bytes) -> None:
    for payload in (b"\x40\xaf" + body, IMMEDIATE_ACK_FRAME + body):
        try:
            frames = decode_frames(payload, PacketType.ONE_RTT)
        except QuicProtocolError:
            continue
        assert frames
        assert isinstance(frames[0], AckFrequencyFrame | ImmediateAckFrame)
        first = frames[0]
        assert decode_frame(first.encode(), 0)[0] == first  # re-encodes to itself


@settings(max_examples=examples(200))
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("af"), st.integers(0, 50), st.integers(0, 30), st.integers(0, 5)),
            st.tuples(st.just("pkt"), st.integers(0, 400), st.booleans(), st.just(0)),
            st.tuples(st.just("imm"), st.just(0), st.just(0), st.just(0)),
        ),
        max_size=120,
    )
)
def test_tracker_policy_invariants(ops: list[tuple[str, int, int | bool, int]]) -> None:
    tracker = AckTracker(0.025, immediate=False, max_ranges=16)
    now = 0.0
    for kind, a, b, c in ops:
        now += 0.001
        if kind == "af":
            tracker.on_ack_frequency(a, int(b), 0.01, c, now)
        elif kind == "imm":
            tracker.request_immediate_ack()
        else:
            if tracker.is_duplicate(a):
                continue
            tracker.on_packet(a, bool(b), now)
            # never more than threshold + 1 ack-eliciting packets without an ACK due
            if tracker.ack_eliciting_since_ack >= tracker.packet_tolerance:
                assert tracker.wants_ack(now)
            if tracker.ack_eliciting_since_ack:
                assert tracker.deadline is not None
                assert tracker.deadline <= now + tracker.max_ack_delay
            if tracker.wants_ack(now):
                tracker.on_ack_sent(tracker.largest)
        assert len(tracker.received) <= tracker.max_ranges
