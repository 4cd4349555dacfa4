"""Capsule Protocol (RFC 9297 §3), WebTransport capsules (draft-16 §5.6, §6, §4.7) and
HTTP/3 Datagrams (RFC 9297 §2.1)."""

from __future__ import annotations

import random

import pytest

from h3.capsules import (
    CLOSE_SESSION_MAX_REASON,
    FLOW_CONTROL_CAPSULES,
    MAX_STREAMS_LIMIT,
    CapsuleReader,
    CapsuleType,
    decode_close_webtransport_session,
    decode_varint_capsule,
    encode_capsule,
    encode_close_webtransport_session,
    encode_datagram_capsule,
    encode_drain_webtransport_session,
    encode_varint_capsule,
    grease_capsule,
    is_reserved_capsule_type,
)
from h3.datagrams import (
    MAX_QUARTER_STREAM_ID,
    decode_h3_datagram,
    encode_h3_datagram,
    encode_h3_datagram_header,
)
from h3.errors import H3ConnectionError, H3ErrorCode, H3StreamError
from h3.frames import FrameReader, FrameType, encode_data_frame
from quic.buffer import VARINT_MAX, encode_varint

MESSAGE_ERROR = H3ErrorCode.H3_MESSAGE_ERROR


def sample_stream() -> bytes:
    return b"".join(
        [
            encode_datagram_capsule(b"dgram-1"),
            encode_varint_capsule(CapsuleType.WT_MAX_DATA, 1 << 20),
            grease_capsule(random.Random(2)),
            encode_capsule(0x12345, b"unknown value"),
            encode_datagram_capsule(b""),
            encode_varint_capsule(CapsuleType.WT_MAX_STREAMS_UNI, 100),
            encode_drain_webtransport_session(),
            encode_close_webtransport_session(7, "bye ✓"),
        ]
    )


def feed_chunks(reader: CapsuleReader, data: bytes, sizes: list[int]) -> list[tuple[int, bytes]]:
    items: list[tuple[int, bytes]] = []
    pos = 0
    for size in sizes:
        items += reader.feed(data[pos : pos + size])
        pos += size
    return items + reader.feed(data[pos:], fin=True)


def test_capsule_types() -> None:
    assert int(CapsuleType.DATAGRAM) == 0
    assert CapsuleType(0x2843).name == "CLOSE_WEBTRANSPORT_SESSION"  # WT_ name is an alias
    assert int(CapsuleType.WT_CLOSE_SESSION) == 0x2843
    assert CapsuleType["WT_DRAIN_SESSION"] is CapsuleType.DRAIN_WEBTRANSPORT_SESSION
    assert int(CapsuleType.WT_DRAIN_SESSION) == 0x78AE
    assert int(CapsuleType.WT_MAX_DATA) == 0x190B4D3D
    assert int(CapsuleType.WT_MAX_STREAMS_BIDI) == 0x190B4D3F
    assert int(CapsuleType.WT_MAX_STREAMS_UNI) == 0x190B4D40
    assert int(CapsuleType.WT_DATA_BLOCKED) == 0x190B4D41
    assert int(CapsuleType.WT_STREAMS_BLOCKED_BIDI) == 0x190B4D43
    assert int(CapsuleType.WT_STREAMS_BLOCKED_UNI) == 0x190B4D44
    assert len(FLOW_CONTROL_CAPSULES) == 6
    assert MAX_STREAMS_LIMIT == 2**60


def test_reserved_capsule_types() -> None:
    for value in (0x17, 0x40, 0x29 * 12345 + 0x17):
        assert is_reserved_capsule_type(value)
    for value in (0, 0x16, 0x18, 0x21, 0x2843):
        assert not is_reserved_capsule_type(value)
    rng = random.Random(4)
    for _ in range(100):
        (items,) = [CapsuleReader().feed(grease_capsule(rng), fin=True)]
        assert len(items) == 1 and is_reserved_capsule_type(items[0][0])


def test_explicit_bytes() -> None:
    assert encode_datagram_capsule(b"hi") == b"\x00\x02hi"
    assert encode_drain_webtransport_session() == b"\x80\x00\x78\xae\x00"
    assert encode_close_webtransport_session(0x01020304, "ok") == (
        b"\x68\x43\x06\x01\x02\x03\x04ok"
    )
    assert encode_varint_capsule(CapsuleType.WT_MAX_DATA, 5) == b"\x99\x0b\x4d\x3d\x01\x05"


def test_reader_whole_stream() -> None:
    reader = CapsuleReader()
    items = reader.feed(sample_stream(), fin=True)
    types = [t for t, _ in items]
    assert types[:2] == [CapsuleType.DATAGRAM, CapsuleType.WT_MAX_DATA]
    assert is_reserved_capsule_type(types[2])
    assert types[3:] == [
        0x12345,
        CapsuleType.DATAGRAM,
        CapsuleType.WT_MAX_STREAMS_UNI,
        CapsuleType.DRAIN_WEBTRANSPORT_SESSION,
        CapsuleType.CLOSE_WEBTRANSPORT_SESSION,
    ]
    assert items[0][1] == b"dgram-1" and items[3][1] == b"unknown value"
    assert decode_varint_capsule(items[1][1]) == 1 << 20
    assert decode_varint_capsule(items[5][1]) == 100
    assert items[6][1] == b""
    assert decode_close_webtransport_session(items[7][1]) == (7, "bye ✓")
    assert reader.buffered == 0 and reader.remaining == 0 and reader.at_capsule_boundary


def test_chunked_feeding_equals_whole() -> None:
    data = sample_stream()
    whole = CapsuleReader().feed(data, fin=True)
    assert feed_chunks(CapsuleReader(), data, [1] * len(data)) == whole
    rng = random.Random(8)
    for _ in range(200):
        sizes, total = [], 0
        while total < len(data):
            sizes.append(rng.randint(0, 30))
            total += sizes[-1]
        assert feed_chunks(CapsuleReader(), data, sizes) == whole


def test_through_data_frames() -> None:
    data = sample_stream()
    stream = encode_data_frame(data[:13]) + encode_data_frame(data[13:])
    frames = FrameReader()
    capsules = CapsuleReader()
    items = []
    for i in range(0, len(stream), 7):
        for frame_type, chunk in frames.feed(stream[i : i + 7]):
            assert frame_type == FrameType.DATA
            items += capsules.feed(chunk)
    items += capsules.feed(b"", fin=True)
    assert items == CapsuleReader().feed(data, fin=True)


def test_truncation_at_every_byte_is_message_error() -> None:
    capsules = [
        encode_datagram_capsule(b"0123456789"),
        encode_close_webtransport_session(1, "reason"),
        encode_varint_capsule(CapsuleType.WT_MAX_STREAMS_BIDI, 2**40),
        encode_drain_webtransport_session(),
        encode_capsule(0x3FFF, b"z" * 100),
    ]
    for capsule in capsules:
        for cut in range(1, len(capsule)):
            with pytest.raises(H3StreamError) as info:
                CapsuleReader().feed(capsule[:cut], fin=True)
            assert info.value.error_code == MESSAGE_ERROR
            assert not info.value.closes_connection
            reader = CapsuleReader()
            reader.feed(capsule[:cut])
            assert not reader.at_capsule_boundary
            with pytest.raises(H3StreamError):
                reader.feed(b"", fin=True)
        assert len(CapsuleReader().feed(capsule, fin=True)) == 1


def test_oversized_capsule_is_discarded_without_buffering() -> None:
    reader = CapsuleReader(max_capsule_size=10)
    big = encode_datagram_capsule(b"x" * 5000)
    assert reader.feed(big[:100]) == []
    assert reader.buffered == 0 and reader.discarded == 1
    assert reader.remaining == 5000 - (100 - 3)
    items = reader.feed(big[100:] + encode_datagram_capsule(b"small"), fin=True)
    assert items == [(CapsuleType.DATAGRAM, b"small")]
    # a truncated discarded capsule is still an error at the end of the stream
    reader = CapsuleReader(max_capsule_size=10)
    reader.feed(big[:-1])
    with pytest.raises(H3StreamError):
        reader.feed(b"", fin=True)


@pytest.mark.parametrize("capsule_type", sorted(FLOW_CONTROL_CAPSULES))
def test_flow_control_capsules(capsule_type: int) -> None:
    for value in (0, 63, 64, 2**30, MAX_STREAMS_LIMIT, VARINT_MAX):
        capsule = encode_varint_capsule(capsule_type, value)
        ((ctype, body),) = CapsuleReader().feed(capsule, fin=True)
        assert ctype == capsule_type and decode_varint_capsule(body) == value
    # a length that cannot hold exactly one varint is rejected at the header
    for length in (0, 9, 100):
        with pytest.raises(H3StreamError) as info:
            CapsuleReader().feed(encode_varint(capsule_type) + encode_varint(length))
        assert info.value.error_code == MESSAGE_ERROR


@pytest.mark.parametrize("value", [b"", b"\x40", b"\x05\x00", b"\x80\x00\x00\x01\xff"])
def test_decode_varint_capsule_malformed(value: bytes) -> None:
    with pytest.raises(H3StreamError) as info:
        decode_varint_capsule(value)
    assert info.value.error_code == MESSAGE_ERROR


def test_encode_varint_capsule_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        encode_varint_capsule(CapsuleType.DATAGRAM, 1)
    with pytest.raises(ValueError):
        encode_varint_capsule(CapsuleType.WT_MAX_DATA, VARINT_MAX + 1)


def test_drain_must_be_empty() -> None:
    with pytest.raises(H3StreamError) as info:
        CapsuleReader().feed(encode_capsule(CapsuleType.DRAIN_WEBTRANSPORT_SESSION, b"\x00"))
    assert info.value.error_code == MESSAGE_ERROR


def test_close_session_round_trip() -> None:
    for code, reason in [(0, ""), (0xFFFFFFFF, "x" * 1024), (42, "ünïcödé")]:
        ((ctype, value),) = CapsuleReader().feed(
            encode_close_webtransport_session(code, reason), fin=True
        )
        assert ctype == CapsuleType.CLOSE_WEBTRANSPORT_SESSION
        assert decode_close_webtransport_session(value) == (code, reason)


def test_close_session_truncates_long_reason_at_character_boundary() -> None:
    reason = "a" + "é" * 600  # 1201 bytes; 'é' is two bytes
    capsule = encode_close_webtransport_session(1, reason)
    ((_, value),) = CapsuleReader().feed(capsule, fin=True)
    code, decoded = decode_close_webtransport_session(value)
    assert code == 1 and reason.startswith(decoded)
    assert len(decoded.encode()) == 1023  # 1024 would split a character
    with pytest.raises(ValueError):
        encode_close_webtransport_session(2**32, "")
    with pytest.raises(ValueError):
        encode_close_webtransport_session(-1, "")


def test_close_session_malformed() -> None:
    for value in (b"", b"\x00\x00\x01", b"\x00\x00\x00\x01\xff\xfe", b"\x00" * 4 + b"a" * 1025):
        with pytest.raises(H3StreamError) as info:
            decode_close_webtransport_session(value)
        assert info.value.error_code == MESSAGE_ERROR
    # too long or too short is caught as soon as the capsule header is read
    for length in (0, 3, 4 + CLOSE_SESSION_MAX_REASON + 1):
        with pytest.raises(H3StreamError):
            CapsuleReader().feed(encode_varint(0x2843) + encode_varint(length))


def test_bytearray_and_memoryview_input() -> None:
    reader = CapsuleReader()
    assert reader.feed(bytearray(encode_datagram_capsule(b"a"))) == [(0, b"a")]
    assert reader.feed(memoryview(encode_datagram_capsule(b"b")), fin=True) == [(0, b"b")]


# -- HTTP/3 datagrams ------------------------------------------------------------------------


def test_h3_datagram_explicit_bytes() -> None:
    assert encode_h3_datagram(0, b"ping") == b"\x00ping"
    assert encode_h3_datagram(4, b"") == b"\x01"
    assert encode_h3_datagram(256, b"x") == b"\x40\x40x"
    assert encode_h3_datagram_header(4 * 64) == b"\x40\x40"
    assert decode_h3_datagram(b"\x00ping") == (0, b"ping")
    assert decode_h3_datagram(b"\x40\x40x") == (256, b"x")
    assert decode_h3_datagram(bytearray(b"\x02")) == (8, b"")
    assert decode_h3_datagram(memoryview(b"\x81\x00\x00\x00z")) == (4 * 0x1000000, b"z")


def test_h3_datagram_round_trip() -> None:
    for stream_id in (0, 4, 252, 256, 65532, 2**32, 4 * MAX_QUARTER_STREAM_ID):
        for payload in (b"", b"p", bytes(range(256))):
            assert decode_h3_datagram(encode_h3_datagram(stream_id, payload)) == (
                stream_id,
                payload,
            )


def test_h3_datagram_encode_rejects_non_request_streams() -> None:
    for stream_id in (1, 2, 3, 6, -4, 4 * (MAX_QUARTER_STREAM_ID + 1)):
        with pytest.raises(ValueError):
            encode_h3_datagram(stream_id, b"")


def test_h3_datagram_malformed() -> None:
    for data in (b"", b"\x40", b"\x80\x00\x00", b"\xc0" + b"\x00" * 6):
        with pytest.raises(H3ConnectionError) as info:
            decode_h3_datagram(data)
        assert info.value.error_code == H3ErrorCode.H3_DATAGRAM_ERROR
    # Quarter Stream ID above 2**60 - 1
    too_big = encode_varint(MAX_QUARTER_STREAM_ID + 1) + b"x"
    with pytest.raises(H3ConnectionError) as info:
        decode_h3_datagram(too_big)
    assert info.value.error_code == H3ErrorCode.H3_DATAGRAM_ERROR
    assert decode_h3_datagram(encode_varint(MAX_QUARTER_STREAM_ID))[0] == 4 * MAX_QUARTER_STREAM_ID


def test_h3_datagram_one_byte_fast_path_matches_the_header() -> None:
    """encode_h3_datagram writes a one-byte Quarter Stream ID inline: the same bytes as
    encode_h3_datagram_header, for every stream ID around the one-byte limit."""
    for stream_id in range(0, 0x140, 4):
        for payload in (b"", b"p" * 64, bytearray(b"ab"), memoryview(b"xyz")):
            assert encode_h3_datagram(stream_id, payload) == (
                encode_h3_datagram_header(stream_id) + bytes(payload)
            )
