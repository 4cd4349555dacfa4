"""QPACK wrappers (h3/qpack.py): RFC 9204 Appendix B, dynamic-table round trips,
blocked streams, stream cancellation, field section size, error mapping."""

from __future__ import annotations

import pytest

from h3.errors import H3ConnectionError, H3ErrorCode, H3StreamError
from h3.qpack import (
    FIELD_LINE_OVERHEAD,
    FieldSectionTooLarge,
    Headers,
    QpackDecoder,
    QpackEncoder,
    check_field_section_size,
    field_section_size,
)


def _pair(
    capacity: int = 4096, blocked: int = 16, limit: int | None = None
) -> tuple[QpackEncoder, QpackDecoder]:
    decoder = QpackDecoder(capacity, blocked, limit)
    encoder = QpackEncoder()
    encoder.apply_settings(decoder.max_table_capacity, decoder.blocked_streams)
    return encoder, decoder


def _request(i: int) -> Headers:
    return [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"example.com:4433"),
        (b":path", b"/resource/%d" % (i % 3)),
        (b"user-agent", b"pywebtransport-test/1.0 with a long product token"),
        (b"x-session-token", b"0123456789abcdef" * 4),
        (b"cookie", b"a=b; c=d; e=%d" % (i % 2)),
    ]


# -- RFC 9204 Appendix B -------------------------------------------------------------


def test_appendix_b1_static_name_reference() -> None:
    decoder = QpackDecoder(220, 1)
    block = bytes.fromhex("0000510b2f696e6465782e68746d6c")
    assert decoder.feed_header(0, block) == [(b":path", b"/index.html")]
    # No dynamic reference, so no Section Acknowledgment (§2.2.2.1).
    assert decoder.pending_decoder_stream_data() == b""


def test_appendix_b_dynamic_table_sequence() -> None:
    decoder = QpackDecoder(220, 1)
    # B.2: capacity and two inserts; then stream 4 references them.
    encoder_data = bytes.fromhex(
        "3fbd01c00f7777772e6578616d706c652e636f6dc10c2f73616d706c652f70617468"
    )
    assert decoder.feed_encoder_stream(encoder_data) == []
    assert decoder.feed_header(4, bytes.fromhex("03811011")) == [
        (b":authority", b"www.example.com"),
        (b":path", b"/sample/path"),
    ]
    assert decoder.pending_decoder_stream_data() == b"\x84"  # Section Acknowledgment (4)
    # B.3: speculative insert with a literal name.
    decoder.feed_encoder_stream(bytes.fromhex("4a637573746f6d2d6b65790c637573746f6d2d76616c7565"))
    # B.4: the section for stream 8 arrives before the Duplicate: blocked, then cancelled.
    assert decoder.feed_header(8, bytes.fromhex("050080c181")) is None
    assert decoder.is_blocked(8)
    assert decoder.blocked_stream_count == 1
    decoder.cancel_stream(8)
    assert not decoder.is_blocked(8)
    assert decoder.pending_decoder_stream_data() == b"\x48"  # Stream Cancellation (8)
    assert decoder.feed_encoder_stream(b"\x02") == []  # Duplicate: stream 8 stays cancelled
    # B.5: insert with a dynamic name reference, evicting entry 0.
    decoder.feed_encoder_stream(bytes.fromhex("810d637573746f6d2d76616c756532"))
    # Entry 0 is evicted: a reference to it is a decompression failure (§2.2.3).
    with pytest.raises(H3ConnectionError) as info:
        decoder.feed_header(12, bytes.fromhex("060084"))  # RIC=5, Base=5, index 4 -> abs 0
    assert info.value.error_code == H3ErrorCode.QPACK_DECOMPRESSION_FAILED
    # The new entries decode: abs 4 (custom-key: custom-value2) and abs 3 (duplicate).
    # Encoded Required Insert Count = 5 mod (2 * (220 // 32)) + 1 = 6 (§4.5.1.1).
    assert decoder.feed_header(16, bytes.fromhex("06008081")) == [
        (b"custom-key", b"custom-value2"),
        (b":authority", b"www.example.com"),
    ]


# -- round trips ---------------------------------------------------------------------


def test_static_table_only_before_settings() -> None:
    encoder = QpackEncoder()
    decoder = QpackDecoder()
    for i in range(10):
        headers = _request(i)
        block = encoder.encode(4 * i, headers)
        assert encoder.pending_encoder_stream_data() == b""
        assert decoder.feed_header(4 * i, block) == headers
    assert decoder.pending_decoder_stream_data() == b""


def test_settings_without_dynamic_table() -> None:
    encoder = QpackEncoder()
    encoder.apply_settings(0, 0)
    headers = _request(0)
    for i in range(5):
        assert QpackDecoder(0, 0).feed_header(4 * i, encoder.encode(4 * i, headers)) == headers
    assert encoder.pending_encoder_stream_data() == b""
    with pytest.raises(RuntimeError):
        encoder.apply_settings(4096, 16)


def test_decoder_without_dynamic_table_keeps_no_engine() -> None:
    """Capacity 0 (RFC 9204 §3.2.3): nothing lasts between sections, so no ls-qpack
    engine is kept; sections still decode, Set Dynamic Table Capacity 0 (0x20) is
    accepted, anything else on the encoder stream is QPACK_ENCODER_STREAM_ERROR."""
    decoder = QpackDecoder(0, 16)
    assert decoder._decoder is None
    encoder = QpackEncoder()
    encoder.apply_settings(0, 0)
    for i in range(3):
        assert decoder.feed_header(4 * i, encoder.encode(4 * i, _request(i))) == _request(i)
    assert decoder.feed_encoder_stream(b"\x20\x20") == []
    decoder.cancel_stream(4)
    assert decoder.pending_decoder_stream_data() == b""
    # an insertion (§3.2.2), a Duplicate (§4.3.4), a capacity of 1 or of 31 and more
    for bad in (b"\x4a", b"\xc1\x01a", b"\x00", b"\x21", b"\x20\x3f", b"\x3f\x00"):
        with pytest.raises(H3ConnectionError) as info:
            QpackDecoder(0, 0).feed_encoder_stream(bad)
        assert info.value.error_code == H3ErrorCode.QPACK_ENCODER_STREAM_ERROR
    # a section that references the dynamic table cannot decode (§4.5.1.1)
    dynamic, _ = _pair()
    blocks = [dynamic.encode(4 * i, _request(0)) for i in range(3)]
    block = next(b for b in blocks if b[0])  # Required Insert Count > 0
    with pytest.raises(H3ConnectionError) as info:
        decoder.feed_header(0, block)
    assert info.value.error_code == H3ErrorCode.QPACK_DECOMPRESSION_FAILED


def test_static_encoder_keeps_no_engine_and_checks_decoder_instructions() -> None:
    """An encoder kept to the static table keeps no ls-qpack engine; on its decoder
    stream only Stream Cancellations (§4.4.2) are valid, even split across reads;
    a Section Acknowledgment (§4.4.1) or an Insert Count Increment (§4.4.3) is
    QPACK_DECODER_STREAM_ERROR, as is a stream ID beyond 62 bits."""
    encoder = QpackEncoder(dynamic_table=False)
    assert encoder._encoder is None
    encoder.apply_settings(4096, 16)
    decoder = QpackDecoder(4096, 16)
    for i in range(3):
        assert decoder.feed_header(4 * i, encoder.encode(4 * i, _request(i))) == _request(i)
    assert decoder.pending_decoder_stream_data() == b""  # nothing to acknowledge
    # Stream Cancellation of streams 4 and 1000 (6-bit prefix: 0x7f, then 1000 - 63)
    cancel = b"\x44" + bytes([0x7F, 0x80 | (937 & 0x7F), 937 >> 7])
    for i in range(len(cancel) + 1):
        encoder.feed_decoder_stream(cancel[:i])
        encoder.feed_decoder_stream(cancel[i:])
        assert encoder._decoder_input == b""
    encoder.feed_decoder_stream(b"\x7f\xff")
    assert encoder._decoder_input == b"\x7f\xff"  # partial, bounded (below)
    for bad in (b"\x84", b"\x01", b"\x00", b"\x7f" + b"\xff" * 9):
        fresh = QpackEncoder(dynamic_table=False)
        with pytest.raises(H3ConnectionError) as info:
            fresh.feed_decoder_stream(bad)
        assert info.value.error_code == H3ErrorCode.QPACK_DECODER_STREAM_ERROR
    fresh = QpackEncoder(dynamic_table=False)
    fresh.feed_decoder_stream(b"\x7f" + b"\xff" * 8 + b"\x01")  # 9 continuation bytes


def test_capacity_beyond_engine_range_falls_back_to_static_table() -> None:
    encoder = QpackEncoder()
    encoder.apply_settings(1 << 40, 1 << 40, 1 << 20)
    assert encoder.max_table_capacity == 0
    assert encoder.peer_max_field_section_size == 1 << 20
    decoder = QpackDecoder(0, 0)
    for i in range(5):
        block = encoder.encode(4 * i, _request(i))
        assert decoder.feed_header(4 * i, block) == _request(i)
    assert encoder.pending_encoder_stream_data() == b""


def test_dynamic_table_round_trip_in_order() -> None:
    encoder, decoder = _pair()
    sizes = []
    encoder_stream_total = 0
    for i in range(40):
        stream_id = 4 * i
        headers = _request(i)
        block = encoder.encode(stream_id, headers)
        sizes.append(len(block))
        instructions = encoder.pending_encoder_stream_data()
        encoder_stream_total += len(instructions)
        assert decoder.feed_encoder_stream(instructions) == []
        assert decoder.feed_header(stream_id, block) == headers
        encoder.feed_decoder_stream(decoder.pending_decoder_stream_data())
    assert encoder_stream_total > 0  # entries were inserted
    assert sizes[-1] < sizes[0] // 4  # and referenced: later blocks are tiny


def test_blocked_streams_resume_after_encoder_stream_out_of_order() -> None:
    encoder, decoder = _pair()
    encoder.encode(0, _request(0))  # the encoder inserts what it has seen before
    instructions = [encoder.pending_encoder_stream_data()]
    blocks: dict[int, bytes] = {}
    for stream_id in (4, 8, 12):
        blocks[stream_id] = encoder.encode(stream_id, _request(stream_id))
        instructions.append(encoder.pending_encoder_stream_data())
    encoder_data = b"".join(instructions)
    assert encoder_data
    # HEADERS frames overtake the encoder stream.
    for stream_id in (12, 4, 8):
        assert decoder.feed_header(stream_id, blocks[stream_id]) is None
    assert decoder.blocked_stream_count == 3
    assert decoder.pending_decoder_stream_data() == b""
    # The encoder stream trickles in byte by byte.
    results = []
    for i in range(len(encoder_data)):
        results.extend(decoder.feed_encoder_stream(encoder_data[i : i + 1]))
    assert sorted(results) == sorted((sid, _request(sid)) for sid in (4, 8, 12))
    assert decoder.blocked_stream_count == 0
    acks = decoder.pending_decoder_stream_data()
    assert sorted(acks) == [0x84, 0x88, 0x8C]  # one Section Acknowledgment per stream
    encoder.feed_decoder_stream(acks)
    # Everything is acknowledged: new sections never block.
    for stream_id in (16, 20):
        block = encoder.encode(stream_id, _request(stream_id))
        decoder.feed_encoder_stream(encoder.pending_encoder_stream_data())
        assert decoder.feed_header(stream_id, block) == _request(stream_id)


def test_sections_queued_behind_a_blocked_one_come_out_in_order() -> None:
    encoder, decoder = _pair()
    encoder.encode(0, _request(0))
    head = encoder.encode(4, _request(0))
    trailers: Headers = [(b"x-checksum", b"abc")]
    tail = encoder.encode(4, trailers)
    assert decoder.feed_header(4, head) is None
    assert decoder.feed_header(4, tail) is None  # waits behind the blocked section
    assert decoder.blocked_stream_count == 1
    results = decoder.feed_encoder_stream(encoder.pending_encoder_stream_data())
    assert results == [(4, _request(0)), (4, trailers)]
    assert not decoder.is_blocked(4)


def test_too_many_blocked_streams_is_a_connection_error() -> None:
    decoder = QpackDecoder(4096, 1)
    encoder = QpackEncoder()
    encoder.apply_settings(4096, 8)  # the encoder believes 8 may block
    encoder.encode(0, _request(0))
    first = encoder.encode(4, _request(0))
    second = encoder.encode(8, _request(0))
    assert decoder.feed_header(4, first) is None
    with pytest.raises(H3ConnectionError) as info:
        decoder.feed_header(8, second)
    assert info.value.error_code == H3ErrorCode.QPACK_DECOMPRESSION_FAILED


def test_cancel_blocked_stream_emits_stream_cancellation() -> None:
    encoder, decoder = _pair()
    encoder.encode(0, _request(0))
    block = encoder.encode(4, _request(0))
    other = encoder.encode(8, _request(0))
    assert decoder.feed_header(4, block) is None
    assert decoder.feed_header(8, other) is None
    decoder.cancel_stream(4)
    assert decoder.pending_decoder_stream_data() == b"\x44"  # Stream Cancellation (4)
    assert decoder.blocked_stream_count == 1
    results = decoder.feed_encoder_stream(encoder.pending_encoder_stream_data())
    assert results == [(8, _request(0))]  # the cancelled stream does not come back
    # The encoder accepts the cancellation and the acknowledgment.
    encoder.feed_decoder_stream(b"\x44" + decoder.pending_decoder_stream_data())


def test_cancel_without_dynamic_table_sends_nothing() -> None:
    decoder = QpackDecoder(0, 0)
    decoder.cancel_stream(4)
    assert decoder.pending_decoder_stream_data() == b""


def test_cancel_unknown_stream_with_dynamic_table() -> None:
    decoder = QpackDecoder()
    decoder.cancel_stream(100)
    assert decoder.pending_decoder_stream_data() == b"\x7f\x25"  # 6-bit prefix: 63 + 37


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "block",
    [
        b"",
        b"\x00",
        b"\x00\x00\x51",  # literal with name reference, truncated
        b"\x00\x00\xff\xff\xff\xff\xff\xff",  # static index out of range
        b"\x00\x00\x80",  # dynamic reference with Required Insert Count 0
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00",  # Required Insert Count too large
    ],
)
def test_bad_header_block_is_decompression_failed(block: bytes) -> None:
    decoder = QpackDecoder()
    with pytest.raises(H3ConnectionError) as info:
        decoder.feed_header(0, block)
    assert info.value.error_code == H3ErrorCode.QPACK_DECOMPRESSION_FAILED
    assert info.value.closes_connection


def test_truncated_section_detected_after_unblocking() -> None:
    encoder, decoder = _pair()
    encoder.encode(0, _request(0))
    block = encoder.encode(4, _request(0))
    assert decoder.feed_header(4, block[:-1]) is None
    with pytest.raises(H3ConnectionError) as info:
        decoder.feed_encoder_stream(encoder.pending_encoder_stream_data())
    assert info.value.error_code == H3ErrorCode.QPACK_DECOMPRESSION_FAILED


@pytest.mark.parametrize(
    "data",
    [
        b"\x3f\xe1\x3f",  # Set Dynamic Table Capacity above the maximum
        b"\xff\xff\xff\xff\x0f\x01a",  # Insert With Name Reference, bad static index
        b"\x00",  # Duplicate of an entry that does not exist
        b"\x80\x01a",  # Insert With Name Reference to a dynamic entry that does not exist
    ],
)
def test_bad_encoder_stream_is_encoder_stream_error(data: bytes) -> None:
    decoder = QpackDecoder()
    with pytest.raises(H3ConnectionError) as info:
        decoder.feed_encoder_stream(data)
    assert info.value.error_code == H3ErrorCode.QPACK_ENCODER_STREAM_ERROR


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",  # Insert Count Increment of 0 (§4.4.3)
        b"\x05",  # Insert Count Increment beyond what was sent
        b"\x84",  # Section Acknowledgment for a stream without outstanding sections
    ],
)
def test_bad_decoder_stream_is_decoder_stream_error(data: bytes) -> None:
    encoder = QpackEncoder()
    encoder.apply_settings(4096, 16)
    with pytest.raises(H3ConnectionError) as info:
        encoder.feed_decoder_stream(data)
    assert info.value.error_code == H3ErrorCode.QPACK_DECODER_STREAM_ERROR


def test_encode_rejects_unencodable_headers() -> None:
    encoder = QpackEncoder()
    with pytest.raises(ValueError):
        encoder.encode(0, [(b"", b"value")])


def test_decoder_rejects_settings_out_of_range() -> None:
    with pytest.raises(ValueError):
        QpackDecoder(1 << 32, 16)
    with pytest.raises(ValueError):
        QpackDecoder(4096, -1)
    with pytest.raises(ValueError):
        QpackDecoder(4096, 16, -1)


# -- field section size (RFC 9114 §4.2.2) ---------------------------------------------


def test_field_section_size() -> None:
    headers: Headers = [(b"a", b"bc"), (b"def", b"")]
    assert field_section_size(headers) == 1 + 2 + 3 + 0 + 2 * FIELD_LINE_OVERHEAD
    assert field_section_size([]) == 0
    assert check_field_section_size(headers, 70) == 70
    assert check_field_section_size(headers, None) == 70
    with pytest.raises(FieldSectionTooLarge) as info:
        check_field_section_size(headers, 69, stream_id=8)
    assert isinstance(info.value, H3StreamError)
    assert info.value.error_code == H3ErrorCode.H3_EXCESSIVE_LOAD
    assert (info.value.size, info.value.limit, info.value.stream_id) == (70, 69, 8)


def test_encoder_checks_peer_limit() -> None:
    encoder = QpackEncoder()
    headers = _request(0)
    assert encoder.check_peer_limit(headers) == field_section_size(headers)  # no limit yet
    encoder.apply_settings(4096, 16, field_section_size(headers) - 1)
    with pytest.raises(FieldSectionTooLarge):
        encoder.check_peer_limit(headers, stream_id=0)


def test_decoded_section_over_our_limit() -> None:
    headers = _request(0)
    limit = field_section_size(headers) - 1
    encoder, decoder = _pair(limit=limit)
    encoder.encode(0, headers)
    decoder.feed_encoder_stream(encoder.pending_encoder_stream_data())
    block = encoder.encode(4, headers)
    decoder.feed_encoder_stream(encoder.pending_encoder_stream_data())
    with pytest.raises(FieldSectionTooLarge) as info:
        decoder.feed_header(4, block)
    assert info.value.stream_id == 4
    assert not info.value.closes_connection
    # The section was processed all the same: its acknowledgment keeps QPACK in sync.
    ack = decoder.pending_decoder_stream_data()
    assert ack == b"\x84"
    encoder.feed_decoder_stream(ack)
    small: Headers = [(b":status", b"200")]
    assert decoder.feed_header(8, encoder.encode(8, small)) == small


def test_huge_block_rejected_before_decoding() -> None:
    decoder = QpackDecoder(4096, 16, 100)
    encoder = QpackEncoder()
    block = encoder.encode(4, [(b"x-big", b"v" * 1000)])
    with pytest.raises(FieldSectionTooLarge) as info:
        decoder.feed_header(4, block)
    assert info.value.limit == 100
    assert decoder.pending_decoder_stream_data() == b"\x44"  # abandoned: Stream Cancellation


def test_oversized_section_among_unblocked_ones() -> None:
    big: Headers = [(b"x-big", b"v" * 200)]
    small: Headers = [(b"x-small", b"v")]
    encoder, decoder = _pair(limit=field_section_size(big) - 1)
    encoder.encode(0, big)
    encoder.encode(0, small)
    block_big = encoder.encode(4, big)
    block_small = encoder.encode(8, small)
    assert decoder.feed_header(4, block_big) is None
    assert decoder.feed_header(8, block_small) is None
    results = dict(decoder.feed_encoder_stream(encoder.pending_encoder_stream_data()))
    assert results[8] == small
    error = results[4]
    assert isinstance(error, FieldSectionTooLarge)
    assert error.stream_id == 4
    # Both sections were acknowledged.
    assert sorted(decoder.pending_decoder_stream_data()) == [0x84, 0x88]


def test_empty_field_section() -> None:
    # RFC 9204 §4.5: the sequence of field lines may be empty (ls-qpack refuses it).
    encoder, decoder = _pair()
    block = encoder.encode(0, [])
    assert block == b"\x00\x00"
    assert decoder.feed_header(0, block) == []
    assert decoder.pending_decoder_stream_data() == b""
    with pytest.raises(H3ConnectionError):
        decoder.feed_header(4, b"\x00\xff")  # negative Base
