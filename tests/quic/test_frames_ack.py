"""quic.frames_ack: the ACK, ACK_FREQUENCY and IMMEDIATE_ACK encoders (RFC 9000 §19.3,
draft-ietf-quic-ack-frequency §4, §5), byte for byte and round trip."""

from __future__ import annotations

import pytest

from quic import frames
from quic import frames_ack as ack
from quic.buffer import VARINT_MAX, encode_varint
from quic.frames_decode import decode_frame
from quic.frames_types import FrameType


def _ack_by_the_book(
    ranges: tuple[tuple[int, int], ...], delay: int, ecn: tuple[int, int, int] | None
) -> bytes:
    """RFC 9000 §19.3 field by field, every field a plain varint (the reference the
    one-byte table of the fast path must agree with)."""
    ev = encode_varint
    smallest, largest = ranges[0]
    out = [b"\x03" if ecn else b"\x02", ev(largest), ev(delay), ev(len(ranges) - 1)]
    out.append(ev(largest - smallest))
    previous = smallest
    for low, high in ranges[1:]:
        out += (ev(previous - high - 2), ev(high - low))
        previous = low
    if ecn:
        out += [ev(count) for count in ecn]
    return b"".join(out)


ONE_RANGE = [
    (((0, 0),), 0, None),
    (((5, 9),), 3, None),
    (((0, 63),), 63, None),  # the largest one-byte fields
    (((0, 64),), 64, None),  # the first two-byte ones
    (((1000, 70000),), 1 << 20, None),
    (((0, VARINT_MAX),), 0, None),
    (((7, 7),), 0, (0, 0, 0)),
    (((7, 7),), 100, (63, 64, 1 << 30)),
]


@pytest.mark.parametrize(("ranges", "delay", "ecn"), ONE_RANGE)
def test_one_range_fast_path_matches_the_layout(
    ranges: tuple[tuple[int, int], ...], delay: int, ecn: tuple[int, int, int] | None
) -> None:
    data = ack.encode_ack_frame(ranges, delay, ecn)
    assert data == _ack_by_the_book(ranges, delay, ecn)
    frame, end = decode_frame(data + b"\x01", 0)
    assert end == len(data)
    assert frame == ack.AckFrame(ranges, delay, ecn)


def test_several_ranges_are_written_gap_by_gap() -> None:
    # largest 12, delay 7, 2 more ranges, first 2; gap 10-5-2=3 len 2; gap 3-0-2=1 len 0
    assert ack.encode_ack_frame(((10, 12), (3, 5), (0, 0)), 7).hex() == "020c07020203020100"
    ranges = ((500, 900), (100, 300), (50, 98))
    data = ack.encode_ack_frame(ranges, 77, (1, 2, 3))
    assert data == _ack_by_the_book(ranges, 77, (1, 2, 3))
    assert decode_frame(data, 0)[0] == ack.AckFrame(ranges, 77, (1, 2, 3))
    assert ack.encode_ack_frame([(3, 4), (0, 1)], 0) == ack.encode_ack_frame(((3, 4), (0, 1)), 0)


@pytest.mark.parametrize(
    "ranges",
    [
        (),
        ((5, 4),),  # smallest above largest
        ((-1, 3),),
        ((10, 12), (9, 9)),  # no gap: 9 is adjacent to 10 (RFC 9000 §19.3.1)
        ((10, 12), (11, 20)),  # not descending
        ((10, 12), (4, 3)),
    ],
)
def test_bad_ranges_are_refused(ranges: tuple[tuple[int, int], ...]) -> None:
    with pytest.raises(ValueError):
        ack.encode_ack_frame(ranges, 0)


def test_ack_frame_dataclass() -> None:
    frame = ack.AckFrame(((3, 8), (0, 1)), 2)
    assert frame.frame_type is FrameType.ACK and frame.largest_acknowledged == 8
    assert frame.encode() == ack.encode_ack_frame(((3, 8), (0, 1)), 2)
    assert ack.AckFrame(((0, 0),), 0, (0, 0, 1)).frame_type is FrameType.ACK_ECN


def test_ack_frequency_frame() -> None:
    data = ack.encode_ack_frequency_frame(1, 2, 25_000, 3)
    # type 0xaf as a two-byte varint, then four varints (draft-ietf-quic-ack-frequency §4)
    assert data.hex() == "40af" + "01" + "02" + "800061a8" + "03"
    frame = ack.AckFrequencyFrame(1, 2, 25_000, 3)
    assert frame.encode() == data and frame.frame_type is FrameType.ACK_FREQUENCY
    assert decode_frame(data, 0) == (frame, len(data))
    for fields in ((-1, 0, 0, 0), (0, VARINT_MAX + 1, 0, 0), (0, 0, 0, -5)):
        with pytest.raises(ValueError, match="ACK_FREQUENCY"):
            ack.encode_ack_frequency_frame(*fields)


def test_immediate_ack_frame() -> None:
    assert ack.IMMEDIATE_ACK_FRAME == b"\x1f" == ack.ImmediateAckFrame().encode()
    assert ack.ImmediateAckFrame.frame_type is FrameType.IMMEDIATE_ACK
    assert decode_frame(ack.IMMEDIATE_ACK_FRAME, 0) == (ack.ImmediateAckFrame(), 1)


def test_the_public_face_re_exports_them() -> None:
    assert frames.AckFrame is ack.AckFrame and frames.encode_ack_frame is ack.encode_ack_frame
    assert frames.AckFrequencyFrame is ack.AckFrequencyFrame
    assert frames.ImmediateAckFrame is ack.ImmediateAckFrame
    assert frames.FrameType is FrameType
    assert frames.encode_frame(ack.AckFrame(((0, 2),), 1)) == ack.encode_ack_frame(((0, 2),), 1)
