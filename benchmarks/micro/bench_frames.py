"""Frame codec hot path: STREAM and ACK frames, encode and decode."""

from __future__ import annotations

from typing import Any

from quic.frames import decode_frame, decode_frames, encode_ack_frame
from quic.frames_ack import AckFrame
from quic.frames_defs import StreamFrame, encode_stream_frame_header

DATA = bytes(1100)
ACK_RANGES = tuple((n * 10, n * 10 + 7) for n in range(31, -1, -1))  # 32 ranges, largest first


def test_encode_stream_frame_header(benchmark: Any) -> None:
    header = benchmark(encode_stream_frame_header, 4, 123_456_789, len(DATA), False)
    assert header[0] & 0x08  # STREAM frame type 0x08..0x0f


def test_decode_stream_frame(benchmark: Any) -> None:
    frame = encode_stream_frame_header(4, 123_456_789, len(DATA), False) + DATA
    decoded, end = benchmark(decode_frame, frame, 0)
    assert end == len(frame)
    assert isinstance(decoded, StreamFrame) and decoded.offset == 123_456_789


def test_encode_ack_frame_32_ranges(benchmark: Any) -> None:
    frame = benchmark(encode_ack_frame, ACK_RANGES, 100)
    assert frame[0] == 0x02


def test_decode_ack_frame_32_ranges(benchmark: Any) -> None:
    frame = encode_ack_frame(ACK_RANGES, 100)
    decoded, end = benchmark(decode_frame, frame, 0)
    assert end == len(frame)
    assert isinstance(decoded, AckFrame) and decoded.ranges == ACK_RANGES


def test_decode_packet_payload(benchmark: Any) -> None:
    payload = (
        encode_ack_frame(((0, 99),), 10)
        + encode_stream_frame_header(0, 5000, len(DATA), False)
        + DATA
    )
    frames = benchmark(decode_frames, payload)
    assert len(frames) == 2
