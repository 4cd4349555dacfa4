"""Varint codec (RFC 9000 §16, Appendix A.1 examples) and the Buffer cursor."""

from __future__ import annotations

import pytest

from quic.buffer import (
    VARINT_MAX,
    Buffer,
    decode_varint,
    encode_varint,
    encode_varint_size,
    varint_size,
)
from quic.errors import BufferReadError

# RFC 9000 Appendix A.1 (Sample Variable-Length Integer Decoding)
RFC_EXAMPLES = [
    ("c2197c5eff14e88c", 151288809941952652),
    ("9d7f3e7d", 494878333),
    ("7bbd", 15293),
    ("25", 37),
    ("4025", 37),
]


@pytest.mark.parametrize(("hexdata", "value"), RFC_EXAMPLES)
def test_rfc9000_a1_examples(hexdata: str, value: int) -> None:
    data = bytes.fromhex(hexdata)
    assert decode_varint(data, 0) == (value, len(data))
    buf = Buffer(data)
    assert buf.pull_varint() == value
    assert buf.eof()


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 1), (63, 1), (64, 2), (16383, 2), (16384, 4), (2**30 - 1, 4), (2**30, 8), (VARINT_MAX, 8)],
)
def test_shortest_encoding_sizes(value: int, size: int) -> None:
    encoded = encode_varint(value)
    assert len(encoded) == size == varint_size(value)
    assert decode_varint(encoded, 0) == (value, size)


def test_out_of_range() -> None:
    for bad in (-1, VARINT_MAX + 1):
        with pytest.raises(ValueError):
            encode_varint(bad)
        with pytest.raises(ValueError):
            varint_size(bad)


def test_fixed_size_encoding() -> None:
    assert encode_varint_size(37, 2) == bytes.fromhex("4025")
    assert encode_varint_size(37, 8) == bytes.fromhex("c000000000000025")
    with pytest.raises(ValueError):
        encode_varint_size(64, 1)


@pytest.mark.parametrize(("hexdata", "_value"), RFC_EXAMPLES)
def test_truncated_varints_raise(hexdata: str, _value: int) -> None:
    data = bytes.fromhex(hexdata)
    for cut in range(len(data)):
        with pytest.raises(BufferReadError):
            decode_varint(data[:cut], 0)


def test_decode_at_offset_and_trailing_data() -> None:
    data = b"\xff" + encode_varint(15293) + b"tail"
    assert decode_varint(data, 1) == (15293, 3)


def test_buffer_roundtrip_all_field_kinds() -> None:
    out = Buffer()
    out.push_uint8(0xAB)
    out.push_uint16(0xBEEF)
    out.push_uint24(0x123456)
    out.push_uint32(0xDEADBEEF)
    out.push_uint64(0x0102030405060708)
    out.push_varint(494878333)
    out.push_vector(2, b"hello")
    out.push_bytes(b"!")
    buf = Buffer(out.data())
    assert buf.pull_uint8() == 0xAB
    assert buf.pull_uint16() == 0xBEEF
    assert buf.pull_uint24() == 0x123456
    assert buf.pull_uint32() == 0xDEADBEEF
    assert buf.pull_uint64() == 0x0102030405060708
    assert buf.pull_varint() == 494878333
    assert buf.pull_vector(2) == b"hello"
    assert buf.remaining == 1
    assert buf.pull_rest() == b"!"
    assert buf.eof()
    with pytest.raises(BufferReadError):
        buf.pull_uint8()


def test_vector_length_beyond_data_raises() -> None:
    with pytest.raises(BufferReadError):
        Buffer(b"\x00\x05abc").pull_vector(2)
    with pytest.raises(ValueError):
        Buffer().push_vector(1, bytes(256))


def test_in_place_reads_leave_the_position_on_error() -> None:
    """pull_uint8/pull_uint16/pull_vector read without a copy step: a short read raises
    BufferReadError and leaves the position where it was."""
    for data, length_size in ((b"", 1), (b"\x00", 2), (b"\x00\x00", 3), (b"\x03ab", 1)):
        buf = Buffer(data)
        with pytest.raises(BufferReadError):
            buf.pull_vector(length_size)
        assert buf.position == 0
    buf = Buffer(b"\x01")
    with pytest.raises(BufferReadError):
        buf.pull_uint16()
    assert buf.position == 0
    assert buf.pull_uint8() == 1
    assert Buffer(b"\x00\x00").pull_vector(2) == b""
    buf = Buffer(b"\x00\x02\xff\xfe\x07")
    assert buf.pull_vector(2) == b"\xff\xfe" and buf.pull_uint8() == 7 and buf.eof()
