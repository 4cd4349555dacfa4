"""HTTP/3 frames (RFC 9114 §7), the incremental FrameReader, stream headers (§6.2) and
the H3 error codes (§8.1)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from h3.errors import (
    H3ConnectionError,
    H3Error,
    H3ErrorCode,
    H3StreamError,
    grease_error_code,
    is_reserved_codepoint,
    is_reserved_error,
    random_reserved_codepoint,
)
from h3.frames import (
    HTTP2_RESERVED_FRAME_TYPES,
    FrameReader,
    FrameType,
    decode_cancel_push,
    decode_goaway,
    decode_max_push_id,
    decode_push_promise,
    encode_cancel_push_frame,
    encode_data_frame,
    encode_data_frame_header,
    encode_frame,
    encode_goaway_frame,
    encode_headers_frame,
    encode_max_push_id_frame,
    encode_push_promise_frame,
    grease_frame,
    is_reserved_frame_type,
)
from h3.streams import (
    STREAM_TYPES_WITH_ID,
    WEBTRANSPORT_STREAM_SIGNAL,
    StreamType,
    UniStreamHeader,
    UniStreamHeaderReader,
    encode_uni_stream_header,
    encode_webtransport_bidi_header,
    grease_stream_type,
    is_reserved_stream_type,
    read_webtransport_bidi_header,
)
from quic.buffer import VARINT_MAX, encode_varint

DATA = FrameType.DATA
HEADERS = FrameType.HEADERS


def merge(items: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Join consecutive DATA / WebTransport-body chunks so chunkings compare equal."""
    out: list[tuple[int, bytes]] = []
    for frame_type, payload in items:
        streamed = frame_type in (DATA, FrameType.WEBTRANSPORT_STREAM)
        if out and streamed and out[-1][0] == frame_type and payload:
            out[-1] = (frame_type, out[-1][1] + payload)
        elif streamed and not payload and out and out[-1][0] == frame_type:
            continue
        else:
            out.append((frame_type, payload))
    return out


def feed_chunks(
    reader: FrameReader, data: bytes, sizes: list[int], fin: bool = True
) -> list[tuple[int, bytes]]:
    items: list[tuple[int, bytes]] = []
    pos = 0
    for size in sizes:
        items += reader.feed(data[pos : pos + size])
        pos += size
    items += reader.feed(data[pos:], fin=fin)
    return items


def sample_stream() -> bytes:
    return b"".join(
        [
            encode_headers_frame(b"\x00\x00\xd1\xd7"),
            encode_data_frame(b"hello "),
            encode_data_frame(b""),
            grease_frame(random.Random(1)),
            encode_data_frame(b"world" * 30),
            encode_frame(0x21, b"padding"),
            encode_headers_frame(b"trailers"),
        ]
    )


SAMPLE_RESULT = [
    (HEADERS, b"\x00\x00\xd1\xd7"),
    (DATA, b"hello "),
    (DATA, b""),
]


# -- error codes and GREASE ------------------------------------------------------------


def test_error_codes_match_the_rfcs() -> None:
    assert int(H3ErrorCode.H3_NO_ERROR) == 0x100
    assert int(H3ErrorCode.H3_GENERAL_PROTOCOL_ERROR) == 0x101
    assert int(H3ErrorCode.H3_FRAME_UNEXPECTED) == 0x105
    assert int(H3ErrorCode.H3_FRAME_ERROR) == 0x106
    assert int(H3ErrorCode.H3_EXCESSIVE_LOAD) == 0x107
    assert int(H3ErrorCode.H3_SETTINGS_ERROR) == 0x109
    assert int(H3ErrorCode.H3_MISSING_SETTINGS) == 0x10A
    assert int(H3ErrorCode.H3_MESSAGE_ERROR) == 0x10E
    assert int(H3ErrorCode.H3_VERSION_FALLBACK) == 0x110
    assert [c for c in H3ErrorCode if 0x100 <= c <= 0x110] == list(range(0x100, 0x111))
    assert int(H3ErrorCode.QPACK_DECOMPRESSION_FAILED) == 0x200
    assert int(H3ErrorCode.QPACK_ENCODER_STREAM_ERROR) == 0x201
    assert int(H3ErrorCode.QPACK_DECODER_STREAM_ERROR) == 0x202
    assert int(H3ErrorCode.H3_DATAGRAM_ERROR) == 0x33
    assert int(H3ErrorCode.WT_SESSION_GONE) == 0x170D7B68
    assert int(H3ErrorCode.WT_BUFFERED_STREAM_REJECTED) == 0x3994BD84


def test_exceptions_say_what_they_close() -> None:
    conn = H3ConnectionError(H3ErrorCode.H3_FRAME_ERROR, "bad")
    stream = H3StreamError(H3ErrorCode.H3_MESSAGE_ERROR, "malformed", stream_id=4)
    assert isinstance(conn, H3Error) and isinstance(stream, H3Error)
    assert conn.closes_connection and not stream.closes_connection
    assert (conn.error_code, conn.reason) == (0x106, "bad")
    assert (stream.error_code, stream.stream_id) == (0x10E, 4)
    assert str(conn) == "H3_FRAME_ERROR: bad"
    assert str(H3StreamError(0x1234)) == "0x1234"
    assert H3StreamError(0x10C).stream_id is None


def test_reserved_codepoints() -> None:
    reserved = [0x21, 0x40, 0x5F, 0x1F * 1000 + 0x21, 0x3FFFFFFFFFFFFFFE]
    for value in reserved:
        assert is_reserved_codepoint(value)
        assert is_reserved_error(value) and is_reserved_frame_type(value)
        assert is_reserved_stream_type(value)
    for value in [0, 1, 0x20, 0x22, 0x3F, 0x41, 0x100, 0x3FFFFFFFFFFFFFFF]:
        assert not is_reserved_codepoint(value)
    assert VARINT_MAX >= 0x3FFFFFFFFFFFFFFE
    rng = random.Random(7)
    for _ in range(200):
        for value in (random_reserved_codepoint(rng), grease_error_code(rng)):
            assert is_reserved_codepoint(value) and value <= VARINT_MAX
        assert is_reserved_stream_type(grease_stream_type(rng))
    assert is_reserved_error(grease_error_code())


# -- encoders ----------------------------------------------------------------------------


def test_explicit_frame_bytes() -> None:
    assert encode_frame(FrameType.HEADERS, b"abc") == b"\x01\x03abc"
    assert encode_data_frame(b"xy") == b"\x00\x02xy"
    assert encode_data_frame_header(0) == b"\x00\x00"
    assert encode_data_frame_header(63) == b"\x00\x3f"
    assert encode_data_frame_header(64) == b"\x00\x40\x40"
    assert encode_data_frame_header(100000) == b"\x00\x80\x01\x86\xa0"
    assert encode_goaway_frame(0) == b"\x07\x01\x00"
    assert encode_goaway_frame(1000) == b"\x07\x02\x43\xe8"
    assert encode_max_push_id_frame(5) == b"\x0d\x01\x05"
    assert encode_cancel_push_frame(64) == b"\x03\x02\x40\x40"
    assert encode_push_promise_frame(3, b"fs") == b"\x05\x03\x03fs"
    assert encode_headers_frame(b"") == b"\x01\x00"
    big = encode_frame(0x21, b"z" * 70)
    assert big[:3] == b"\x21\x40\x46" and len(big) == 73


def test_encoders_reject_bad_arguments() -> None:
    for bad in (-1, VARINT_MAX + 1):
        with pytest.raises(ValueError):
            encode_goaway_frame(bad)
        with pytest.raises(ValueError):
            encode_push_promise_frame(bad, b"")
    with pytest.raises(ValueError):
        encode_data_frame_header(-1)
    with pytest.raises(ValueError):
        encode_data_frame_header(VARINT_MAX + 1)


def test_id_payload_codecs_round_trip() -> None:
    for value in (0, 1, 63, 64, 16383, 16384, 2**30, VARINT_MAX):
        for encode, decode in (
            (encode_goaway_frame, decode_goaway),
            (encode_max_push_id_frame, decode_max_push_id),
            (encode_cancel_push_frame, decode_cancel_push),
        ):
            ((_, payload),) = FrameReader().feed(encode(value), fin=True)
            assert decode(payload) == value
    assert decode_push_promise(b"\x40\x40field") == (64, b"field")
    assert decode_push_promise(b"\x07") == (7, b"")


@pytest.mark.parametrize("decode", [decode_goaway, decode_max_push_id, decode_cancel_push])
@pytest.mark.parametrize("payload", [b"", b"\x40", b"\x80\x00\x00", b"\x00\x00", b"\x05x"])
def test_id_payload_malformed(decode: Callable[[bytes], int], payload: bytes) -> None:
    with pytest.raises(H3ConnectionError) as info:
        decode(payload)
    assert info.value.error_code == H3ErrorCode.H3_FRAME_ERROR


def test_push_promise_truncated() -> None:
    for payload in (b"", b"\x40", b"\xc0\x00\x00"):
        with pytest.raises(H3ConnectionError) as info:
            decode_push_promise(payload)
        assert info.value.error_code == H3ErrorCode.H3_FRAME_ERROR


def test_grease_frame_is_skipped() -> None:
    rng = random.Random(3)
    for _ in range(50):
        frame = grease_frame(rng)
        items = FrameReader().feed(frame, fin=True)
        assert len(items) == 1 and is_reserved_frame_type(items[0][0]) and items[0][1] == b""


# -- the reader ----------------------------------------------------------------------------


def test_reader_whole_stream() -> None:
    reader = FrameReader()
    items = reader.feed(sample_stream(), fin=True)
    assert items[:3] == SAMPLE_RESULT
    assert is_reserved_frame_type(items[3][0]) and items[3][1] == b""
    assert items[4:] == [(DATA, b"world" * 30), (0x21, b""), (HEADERS, b"trailers")]
    assert reader.buffered == 0 and reader.remaining == 0 and reader.at_frame_boundary


def test_reader_byte_by_byte_equals_whole() -> None:
    data = sample_stream()
    whole = merge(FrameReader().feed(data, fin=True))
    reader = FrameReader()
    items = feed_chunks(reader, data, [1] * len(data))
    assert merge(items) == whole


def test_reader_random_chunks_equal_whole() -> None:
    data = sample_stream()
    whole = merge(FrameReader().feed(data, fin=True))
    rng = random.Random(11)
    for _ in range(200):
        sizes, total = [], 0
        while total < len(data):
            size = rng.randint(0, 40)
            sizes.append(size)
            total += size
        assert merge(feed_chunks(FrameReader(), data, sizes)) == whole


def test_data_is_streamed_not_buffered() -> None:
    reader = FrameReader()
    header = encode_data_frame_header(1_000_000)
    assert reader.feed(header + b"a" * 10) == [(DATA, b"a" * 10)]
    assert reader.remaining == 999_990 and reader.buffered == 0
    assert not reader.at_frame_boundary
    chunk = b"b" * 500_000
    items = reader.feed(chunk)
    assert items == [(DATA, chunk)] and items[0][1] is chunk  # whole chunk, not copied
    assert reader.remaining == 499_990
    assert reader.feed(b"c" * 499_990 + encode_headers_frame(b"t"), fin=True) == [
        (DATA, b"c" * 499_990),
        (HEADERS, b"t"),
    ]


def test_known_frame_is_buffered_until_complete() -> None:
    reader = FrameReader()
    frame = encode_headers_frame(b"h" * 300)
    assert reader.feed(frame[:100]) == []
    assert reader.buffered == 100 - 3 and reader.remaining == 300 - 97
    assert reader.feed(frame[100:299]) == []
    assert reader.feed(frame[299:]) == [(HEADERS, b"h" * 300)]
    assert reader.buffered == 0 and reader.remaining == 0


def test_partial_header_is_buffered() -> None:
    reader = FrameReader()
    frame = encode_frame(HEADERS, b"x" * 20000)  # 4-byte length
    assert reader.feed(frame[:2]) == []
    assert reader.buffered == 2 and not reader.at_frame_boundary
    assert reader.feed(frame[2:], fin=True) == [(HEADERS, b"x" * 20000)]


def test_unknown_frame_reported_at_header_and_skipped() -> None:
    reader = FrameReader()
    frame = encode_frame(0xF0700, b"u" * 5000)  # e.g. PRIORITY_UPDATE: unknown here
    assert reader.feed(frame[:6]) == [(0xF0700, b"")]
    assert reader.buffered == 0 and reader.remaining == 5000
    assert reader.feed(frame[6:]) == []
    assert reader.at_frame_boundary


def test_extra_types_are_buffered() -> None:
    reader = FrameReader(extra_types=[0xF0700])
    assert reader.feed(encode_frame(0xF0700, b"u=1"), fin=True) == [(0xF0700, b"u=1")]


def test_empty_feed_and_bytearray_input() -> None:
    reader = FrameReader()
    assert reader.feed(b"") == []
    assert reader.feed(bytearray(encode_data_frame(b"q"))) == [(DATA, b"q")]
    assert reader.feed(memoryview(encode_headers_frame(b"m")), fin=True) == [(HEADERS, b"m")]
    assert reader.feed(b"", fin=True) == []


def test_truncation_at_every_byte_is_frame_error() -> None:
    frames = [
        encode_headers_frame(b"abcdef"),
        encode_data_frame(b"0123456789"),
        encode_frame(0x21, b"pad"),
        encode_goaway_frame(16384),
        encode_frame(HEADERS, b"y" * 100),
    ]
    for frame in frames:
        for cut in range(1, len(frame)):
            with pytest.raises(H3ConnectionError) as info:
                FrameReader().feed(frame[:cut], fin=True)
            assert info.value.error_code == H3ErrorCode.H3_FRAME_ERROR
            reader = FrameReader()  # same when the cut arrives as a separate fin
            reader.feed(frame[:cut])
            with pytest.raises(H3ConnectionError):
                reader.feed(b"", fin=True)
        assert FrameReader().feed(frame, fin=True)


@pytest.mark.parametrize("frame_type", sorted(HTTP2_RESERVED_FRAME_TYPES))
def test_http2_frame_types_are_unexpected(frame_type: int) -> None:
    reader = FrameReader()
    with pytest.raises(H3ConnectionError) as info:
        reader.feed(encode_frame(frame_type, b"\x00" * 4))
    assert info.value.error_code == H3ErrorCode.H3_FRAME_UNEXPECTED
    with pytest.raises(H3ConnectionError):  # even before the payload arrives
        FrameReader().feed(encode_varint(frame_type) + encode_varint(1000))


def test_frame_size_limit_is_excessive_load() -> None:
    reader = FrameReader(max_frame_size=100)
    assert reader.feed(encode_headers_frame(b"a" * 100)) == [(HEADERS, b"a" * 100)]
    with pytest.raises(H3ConnectionError) as info:
        reader.feed(encode_varint(HEADERS) + encode_varint(101))
    assert info.value.error_code == H3ErrorCode.H3_EXCESSIVE_LOAD
    # DATA and unknown frames are not limited: they are never buffered
    reader = FrameReader(max_frame_size=100)
    assert reader.feed(encode_data_frame(b"d" * 1000))[0][0] == DATA
    assert reader.feed(encode_frame(0x40, b"p" * 1000), fin=True) == [(0x40, b"")]


@pytest.mark.parametrize(
    "frame_type", [FrameType.GOAWAY, FrameType.MAX_PUSH_ID, FrameType.CANCEL_PUSH]
)
def test_oversized_single_varint_frame_is_frame_error(frame_type: int) -> None:
    assert FrameReader().feed(encode_frame(frame_type, encode_varint(VARINT_MAX)))
    with pytest.raises(H3ConnectionError) as info:
        FrameReader().feed(encode_varint(frame_type) + encode_varint(9))
    assert info.value.error_code == H3ErrorCode.H3_FRAME_ERROR


# -- WebTransport bidi signal ------------------------------------------------------------


def test_webtransport_signal_switches_to_body() -> None:
    header = encode_webtransport_bidi_header(4)
    assert header == b"\x40\x41\x04"
    reader = FrameReader(webtransport=True)
    assert reader.feed(header) == [(FrameType.WEBTRANSPORT_STREAM, b"")]
    assert reader.session_id == 4 and reader.at_frame_boundary
    # bytes after the header are body, even if they look like frames
    assert reader.feed(b"\x01\x02ab") == [(FrameType.WEBTRANSPORT_STREAM, b"\x01\x02ab")]
    assert reader.feed(b"", fin=True) == []


def test_webtransport_signal_with_body_in_one_chunk() -> None:
    reader = FrameReader(webtransport=True)
    data = encode_webtransport_bidi_header(2**40) + b"payload"
    assert reader.feed(data, fin=True) == [(FrameType.WEBTRANSPORT_STREAM, b"payload")]
    assert reader.session_id == 2**40


def test_webtransport_signal_byte_by_byte() -> None:
    data = encode_webtransport_bidi_header(16384) + b"xyz"
    reader = FrameReader(webtransport=True)
    items = feed_chunks(reader, data, [1] * len(data))
    assert merge(items) == [(FrameType.WEBTRANSPORT_STREAM, b"xyz")]
    assert reader.session_id == 16384


def test_webtransport_header_truncated_is_frame_error() -> None:
    data = encode_webtransport_bidi_header(16384)
    for cut in range(1, len(data)):
        with pytest.raises(H3ConnectionError) as info:
            FrameReader(webtransport=True).feed(data[:cut], fin=True)
        assert info.value.error_code == H3ErrorCode.H3_FRAME_ERROR


def test_webtransport_signal_later_in_stream_is_frame_error() -> None:
    reader = FrameReader(webtransport=True)
    reader.feed(encode_headers_frame(b"h"))
    with pytest.raises(H3ConnectionError) as info:
        reader.feed(encode_webtransport_bidi_header(0))
    assert info.value.error_code == H3ErrorCode.H3_FRAME_ERROR


def test_read_webtransport_bidi_header_whole_header_only() -> None:
    for session_id in (0, 4, 16384, 2**40):
        header = encode_webtransport_bidi_header(session_id)
        assert read_webtransport_bidi_header(header + b"\x01\x02ab") == (session_id, b"\x01\x02ab")
        assert read_webtransport_bidi_header(header) == (session_id, b"")
        for cut in range(len(header)):  # split: left to the FrameReader
            assert read_webtransport_bidi_header(header[:cut]) is None
    # 0x41 in four bytes, HTTP/3 frames: left to the FrameReader
    assert read_webtransport_bidi_header(b"\x80\x00\x00\x41\x04data") is None
    assert read_webtransport_bidi_header(encode_headers_frame(b"h")) is None
    assert read_webtransport_bidi_header(b"\x41\x04") is None  # 0x41 is no one-byte varint


def test_webtransport_signal_unknown_without_webtransport() -> None:
    reader = FrameReader()
    assert reader.feed(encode_frame(0x41, b"abc"), fin=True) == [(0x41, b"")]
    assert reader.session_id is None


# -- unidirectional stream headers -----------------------------------------------------------


def test_stream_types() -> None:
    assert [int(t) for t in StreamType] == [0, 1, 2, 3, 0x54]
    assert WEBTRANSPORT_STREAM_SIGNAL == 0x41
    assert encode_uni_stream_header(StreamType.CONTROL) == b"\x00"
    assert encode_uni_stream_header(StreamType.PUSH, 7) == b"\x01\x07"
    assert encode_uni_stream_header(StreamType.WEBTRANSPORT_UNI, 0) == b"\x40\x54\x00"
    with pytest.raises(ValueError):
        encode_uni_stream_header(StreamType.PUSH)
    with pytest.raises(ValueError):
        encode_uni_stream_header(StreamType.CONTROL, 1)
    with pytest.raises(ValueError):
        encode_uni_stream_header(StreamType.PUSH, -1)
    with pytest.raises(ValueError):
        encode_webtransport_bidi_header(VARINT_MAX + 1)


@pytest.mark.parametrize(
    ("stream_type", "header_id"),
    [
        (StreamType.CONTROL, None),
        (StreamType.QPACK_ENCODER, None),
        (StreamType.QPACK_DECODER, None),
        (StreamType.PUSH, 123456),
        (StreamType.WEBTRANSPORT_UNI, 8),
        (0x1F * 5 + 0x21, None),
        (0x12345678, None),
    ],
)
def test_uni_header_reader(stream_type: int, header_id: int | None) -> None:
    data = encode_uni_stream_header(stream_type, header_id) + b"rest"
    whole = UniStreamHeaderReader().feed(data)
    assert whole == UniStreamHeader(stream_type, header_id, b"rest")
    reader = UniStreamHeaderReader()
    header_len = len(data) - 4
    for i in range(header_len - 1):
        assert reader.feed(data[i : i + 1]) is None
        assert reader.buffered == i + 1 and not reader.done
    assert reader.feed(data[header_len - 1 :]) == whole
    assert reader.done and reader.buffered == 0
    with pytest.raises(RuntimeError):
        reader.feed(b"more")


def test_uni_header_reader_without_webtransport() -> None:
    reader = UniStreamHeaderReader(types_with_id=STREAM_TYPES_WITH_ID - {0x54})
    assert reader.feed(b"\x40\x54\x09") == UniStreamHeader(0x54, None, b"\x09")
