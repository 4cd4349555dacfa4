"""Property tests for the frame codec: decode(encode(f)) == f for every frame type, and
arbitrary bytes either decode or raise QuicProtocolError. Also the varint round trip."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from quic.buffer import VARINT_MAX, decode_varint, encode_varint, encode_varint_size, varint_size
from quic.errors import QuicProtocolError
from quic.frames import (
    MAX_STREAMS_LIMIT,
    AckFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    Frame,
    HandshakeDoneFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamAtFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    decode_frame,
    decode_frames,
    decode_stream_fields,
)
from quic.packet import PacketType

varints = st.integers(0, VARINT_MAX)
small_bytes = st.binary(max_size=64)


@st.composite
def ack_frames(draw: st.DrawFn) -> AckFrame:
    largest = draw(varints)
    smallest = largest - draw(st.integers(0, min(largest, 1 << 20)))
    ranges = [(smallest, largest)]
    for _ in range(draw(st.integers(0, 8))):
        if smallest < 2:
            break
        top = smallest - 2 - draw(st.integers(0, min(smallest - 2, 1000)))
        bottom = top - draw(st.integers(0, min(top, 1000)))
        ranges.append((bottom, top))
        smallest = bottom
    ecn = draw(st.none() | st.tuples(varints, varints, varints))
    return AckFrame(tuple(ranges), draw(varints), ecn)


@st.composite
def stream_frames(draw: st.DrawFn) -> StreamFrame:
    data = draw(small_bytes)
    offset = draw(st.integers(0, VARINT_MAX - len(data)))
    return StreamFrame(draw(varints), offset, data, draw(st.booleans()))


@st.composite
def crypto_frames(draw: st.DrawFn) -> CryptoFrame:
    data = draw(small_bytes)
    return CryptoFrame(draw(st.integers(0, VARINT_MAX - len(data))), data)


@st.composite
def new_connection_id_frames(draw: st.DrawFn) -> NewConnectionIdFrame:
    sequence = draw(varints)
    return NewConnectionIdFrame(
        sequence,
        draw(st.integers(0, sequence)),
        draw(st.binary(min_size=1, max_size=20)),
        draw(st.binary(min_size=16, max_size=16)),
    )


stream_counts = st.integers(0, MAX_STREAMS_LIMIT)
eight_bytes = st.binary(min_size=8, max_size=8)

frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(PaddingFrame, st.integers(1, 50)),
    st.just(PingFrame()),
    ack_frames(),
    st.builds(ResetStreamFrame, varints, varints, varints),
    # draft-ietf-quic-reliable-stream-reset §4: Reliable Size <= Final Size
    st.tuples(varints, varints, varints, varints).map(
        lambda t: ResetStreamAtFrame(t[0], t[1], max(t[2], t[3]), min(t[2], t[3]))
    ),
    st.builds(StopSendingFrame, varints, varints),
    crypto_frames(),
    st.builds(NewTokenFrame, st.binary(min_size=1, max_size=64)),
    stream_frames(),
    st.builds(MaxDataFrame, varints),
    st.builds(MaxStreamDataFrame, varints, varints),
    st.builds(MaxStreamsFrame, stream_counts, st.booleans()),
    st.builds(DataBlockedFrame, varints),
    st.builds(StreamDataBlockedFrame, varints, varints),
    st.builds(StreamsBlockedFrame, stream_counts, st.booleans()),
    new_connection_id_frames(),
    st.builds(RetireConnectionIdFrame, varints),
    st.builds(PathChallengeFrame, eight_bytes),
    st.builds(PathResponseFrame, eight_bytes),
    st.builds(ConnectionCloseFrame, varints, varints, small_bytes),
    st.builds(ApplicationCloseFrame, varints, small_bytes),
    st.just(HandshakeDoneFrame()),
    st.builds(DatagramFrame, small_bytes),
)


def _assert_canonical(result: list[Frame]) -> None:
    """Whatever decodes re-encodes (with our canonical choices) to the same frames."""
    assert result
    assert decode_frames(b"".join(f.encode() for f in result)) == result


@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    data = frame.encode()
    assert decode_frame(data, 0) == (frame, len(data))


@given(st.lists(frames, min_size=1, max_size=10))
def test_payload_round_trip(frame_list: list[Frame]) -> None:
    # Adjacent PADDING runs merge on decode; compare after merging.
    merged: list[Frame] = []
    for frame in frame_list:
        if merged and isinstance(frame, PaddingFrame) and isinstance(merged[-1], PaddingFrame):
            merged[-1] = PaddingFrame(merged[-1].length + frame.length)
        else:
            merged.append(frame)
    assert decode_frames(b"".join(f.encode() for f in frame_list)) == merged


@given(stream_frames(), st.binary(max_size=8))
def test_stream_fields_match_the_frame_decoder(frame: StreamFrame, tail: bytes) -> None:
    """The receive path's tuple decoder gives the frame decoder's fields and end."""
    data = frame.encode() + tail
    decoded, end = decode_frame(data, 0)
    assert decoded == frame
    assert decode_stream_fields(data, 0) == (
        frame.stream_id,
        frame.offset,
        frame.data,
        frame.fin,
        end,
    )


@given(st.integers(0x08, 0x0F), st.binary(max_size=40))
def test_stream_fields_of_arbitrary_bytes(frame_type: int, body: bytes) -> None:
    """Arbitrary STREAM-typed bytes: the tuple decoder agrees with the frame decoder,
    or both raise QuicProtocolError."""
    data = bytes((frame_type,)) + body
    try:
        expected = decode_frame(data, 0)
    except QuicProtocolError:
        try:
            decode_stream_fields(data, 0)
        except QuicProtocolError:
            return
        raise AssertionError("the tuple decoder accepted what decode_frame refused") from None
    frame, end = expected
    assert isinstance(frame, StreamFrame)
    assert decode_stream_fields(data, 0) == (
        frame.stream_id,
        frame.offset,
        frame.data,
        frame.fin,
        end,
    )


@given(st.binary(max_size=300), st.sampled_from([None, *PacketType]))
def test_arbitrary_payload(data: bytes, packet_type: PacketType | None) -> None:
    try:
        result = decode_frames(data, packet_type)
    except QuicProtocolError:
        return
    _assert_canonical(result)


@given(st.lists(frames, max_size=3), st.binary(max_size=40))
def test_valid_prefix_then_garbage(frame_list: list[Frame], garbage: bytes) -> None:
    prefix = b"".join(f.encode() for f in frame_list)
    try:
        result = decode_frames(prefix + garbage)
    except QuicProtocolError:
        return
    _assert_canonical(result)


@given(varints)
def test_varint_round_trip(value: int) -> None:
    data = encode_varint(value)
    assert len(data) == varint_size(value)
    assert decode_varint(data, 0) == (value, len(data))
    for size in (1, 2, 4, 8):
        if size >= len(data):
            assert decode_varint(encode_varint_size(value, size), 0) == (value, size)
