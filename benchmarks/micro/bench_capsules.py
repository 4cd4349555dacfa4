"""HTTP capsules (RFC 9297) and WebTransport stream framing, build and parse."""

from __future__ import annotations

from typing import Any

from h3.capsules import (
    CapsuleReader,
    CapsuleType,
    encode_close_webtransport_session,
    encode_datagram_capsule,
)
from h3.frames import FrameReader, FrameType, encode_data_frame_header
from h3.streams import encode_webtransport_bidi_header

PAYLOAD = bytes(1100)
SESSION_ID = 4


def test_build_datagram_capsule(benchmark: Any) -> None:
    capsule = benchmark(encode_datagram_capsule, PAYLOAD)
    assert len(capsule) > len(PAYLOAD)


def test_build_close_session_capsule(benchmark: Any) -> None:
    capsule = benchmark(encode_close_webtransport_session, 7, "done")
    assert capsule


def test_parse_64_datagram_capsules(benchmark: Any) -> None:
    stream = encode_datagram_capsule(PAYLOAD) * 64

    def parse() -> list[Any]:
        return CapsuleReader().feed(stream)

    items = benchmark(parse)
    assert len(items) == 64 and items[0][0] == CapsuleType.DATAGRAM


def test_build_wt_bidi_stream_header(benchmark: Any) -> None:
    header = benchmark(encode_webtransport_bidi_header, SESSION_ID)
    assert header[0] == 0x40 and header[1] == 0x41  # 0x41 as a two-byte varint


def test_parse_wt_stream_64_chunks(benchmark: Any) -> None:
    """The WT bidi signal and session ID, then 64 chunks of stream body."""
    header = encode_webtransport_bidi_header(SESSION_ID)

    def parse() -> int:
        reader = FrameReader(webtransport=True)
        total = 0
        for index in range(64):
            data = header + PAYLOAD if index == 0 else PAYLOAD
            for frame_type, chunk in reader.feed(data, fin=index == 63):
                assert frame_type == FrameType.WEBTRANSPORT_STREAM
                total += len(chunk)
        return total

    assert benchmark(parse) == 64 * len(PAYLOAD)


def test_parse_h3_data_frames_64(benchmark: Any) -> None:
    stream = (encode_data_frame_header(len(PAYLOAD)) + PAYLOAD) * 64

    def parse() -> int:
        return sum(len(chunk) for _, chunk in FrameReader().feed(stream))

    assert benchmark(parse) == 64 * len(PAYLOAD)
