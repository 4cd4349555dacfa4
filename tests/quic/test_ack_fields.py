"""The ACK frame's fast paths against a plain reading of RFC 9000 §19.3.

- The receive path's decoder (:func:`quic.frames.decode_ack_body`, as the dispatcher
  calls it, and :func:`quic.frames.decode_ack_fields`: one- and two-byte varints (four-byte
  ones too for the Largest Acknowledged and the ECT(0) count) read
  inline, no frame object; a truncation raised as FRAME_ENCODING_ERROR by the decoder
  itself, a BufferReadError never escapes) against :func:`quic.buffer.decode_varint` for
  every field: same fields, same end, same errors — on random frames with varints of
  every length (minimal or not), on every truncation, and on random bytes.
- The one-range encoder (one-byte varints from a table) against
  :func:`quic.buffer.encode_varint` for every field, and the one-range
  :meth:`quic.rangeset.RangeSet.ack_ranges_descending` against the general one."""

from __future__ import annotations

import random

import pytest

from quic.buffer import decode_varint, encode_varint, encode_varint_size
from quic.errors import BufferReadError, QuicProtocolError, TransportErrorCode
from quic.frames import (
    AckFrame,
    decode_ack,
    decode_ack_body,
    decode_ack_fields,
    decode_frame,
    encode_ack_frame,
)
from quic.rangeset import RangeSet

FEE = TransportErrorCode.FRAME_ENCODING_ERROR
Fields = tuple[tuple[tuple[int, int], ...], int, tuple[int, int, int] | None, int]


def reference(data: bytes, pos: int) -> Fields:
    """RFC 9000 §19.3 read field by field (the codec before the inline varints)."""
    frame_type = data[pos]
    try:
        largest, pos = decode_varint(data, pos + 1)
        ack_delay, pos = decode_varint(data, pos)
        count, pos = decode_varint(data, pos)
        first_range, pos = decode_varint(data, pos)
        smallest = largest - first_range
        if smallest < 0:
            raise QuicProtocolError(FEE, "ACK range below packet number 0", frame_type)
        ranges = [(smallest, largest)]
        if count > (len(data) - pos) >> 1:
            raise QuicProtocolError(FEE, "ACK range count exceeds frame", frame_type)
        for _ in range(count):
            gap, pos = decode_varint(data, pos)
            length, pos = decode_varint(data, pos)
            largest = smallest - gap - 2  # RFC 9000 §19.3.1
            smallest = largest - length
            if smallest < 0:
                raise QuicProtocolError(FEE, "ACK range below packet number 0", frame_type)
            ranges.append((smallest, largest))
        ecn = None
        if frame_type & 1:
            ect0, pos = decode_varint(data, pos)
            ect1, pos = decode_varint(data, pos)
            ce, pos = decode_varint(data, pos)
            ecn = (ect0, ect1, ce)
    except BufferReadError:
        raise QuicProtocolError(FEE, "frame truncated", frame_type) from None
    return tuple(ranges), ack_delay, ecn, pos


def outcome(decode: object, data: bytes, pos: int) -> object:
    try:
        return decode(data, pos)  # type: ignore[operator]
    except QuicProtocolError as exc:
        return ("error", exc.error_code, exc.frame_type, exc.reason)


def via_decode_frame(data: bytes, pos: int) -> Fields:
    frame, end = decode_frame(data, pos)
    assert isinstance(frame, AckFrame)
    return frame.ranges, frame.ack_delay, frame.ecn, end


def as_dispatched(data: bytes, pos: int) -> Fields:
    """The body decoder as ``FrameDispatcher.dispatch`` calls it (past the type byte)."""
    return decode_ack_body(data, pos + 1, data[pos])


def direct_decode_ack(data: bytes, pos: int) -> Fields:
    """:func:`decode_ack` called directly (not through :func:`decode_frame`)."""
    frame, end = decode_ack(data, pos + 1, data[pos])
    return frame.ranges, frame.ack_delay, frame.ecn, end


def varint(rng: random.Random, value: int) -> bytes:
    """``value`` on a random length that holds it (RFC 9000 §16 allows longer forms)."""
    sizes = [s for s, top in ((1, 1 << 6), (2, 1 << 14), (4, 1 << 30), (8, 1 << 62)) if value < top]
    return encode_varint_size(value, rng.choice(sizes))


def value(rng: random.Random) -> int:
    bits = rng.choice((5, 6, 7, 13, 14, 15, 29, 30, 31, 61, 62))
    return rng.randrange(1 << bits)


def random_frame(rng: random.Random) -> bytes:
    """An ACK or ACK_ECN frame, often valid, sometimes with ranges below 0 or a range
    count beyond the frame."""
    frame_type = rng.choice((0x02, 0x03))
    count = rng.choice((0, 0, 0, 1, 2, 5, value(rng)))
    parts = [bytes((frame_type,)), varint(rng, value(rng)), varint(rng, value(rng))]
    parts.append(varint(rng, count))
    parts.append(varint(rng, rng.choice((0, 1, value(rng)))))
    for _ in range(min(count, 6)):
        parts.append(varint(rng, rng.choice((0, 1, value(rng)))))
        parts.append(varint(rng, rng.choice((0, 1, value(rng)))))
    if frame_type & 1:
        parts.extend(varint(rng, rng.choice((0, value(rng)))) for _ in range(3))
    return b"".join(parts)


def check(data: bytes, pos: int) -> bool:
    """The three agree; True if the frame decoded."""
    expected = outcome(reference, data, pos)
    assert outcome(decode_ack_fields, data, pos) == expected, data.hex()
    assert outcome(as_dispatched, data, pos) == expected, data.hex()
    assert outcome(direct_decode_ack, data, pos) == expected, data.hex()
    assert outcome(via_decode_frame, data, pos) == expected, data.hex()
    return not (isinstance(expected, tuple) and expected[0] == "error")


def test_ack_fields_match_the_plain_reading_with_every_truncation() -> None:
    rng = random.Random(9000)
    decoded = errors = 0
    for _ in range(3000):
        frame = random_frame(rng)
        prefix = bytes(rng.randrange(3))
        trailer = bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
        for cut in range(1, len(frame) + 1):
            data = prefix + frame[:cut] + (trailer if cut == len(frame) else b"")
            if check(data, len(prefix)):
                decoded += 1
            else:
                errors += 1
    assert decoded > 1000 and errors > 30000  # both outcomes exercised


def test_ack_fields_match_on_random_bytes() -> None:
    rng = random.Random(19)
    for _ in range(20000):
        data = bytes((rng.choice((0x02, 0x03)),)) + rng.randbytes(rng.randrange(24))
        check(data, 0)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("0205000006", "ACK range below packet number 0"),  # first range below 0
        ("03050001000104", "ACK range below packet number 0"),  # a gap below 0
        ("02050080ffffff00", "ACK range count exceeds frame"),
        ("02", "frame truncated"),
        ("0340", "frame truncated"),  # a two-byte varint cut after its first byte
        ("0305000000000080", "frame truncated"),  # an ECN count cut inside
        ("02050080", "frame truncated"),  # a four-byte range count cut inside
        ("02050001008000", "frame truncated"),  # a further range's four-byte gap cut inside
    ],
)
def test_ack_fields_errors(wire: str, reason: str) -> None:
    data = bytes.fromhex(wire)
    result = outcome(decode_ack_fields, data, 0)
    assert result == ("error", FEE, data[0], reason)
    assert outcome(reference, data, 0) == result
    assert outcome(as_dispatched, data, 0) == result
    assert outcome(direct_decode_ack, data, 0) == result


def plain_encoding(
    ranges: tuple[tuple[int, int], ...], delay: int, ecn: tuple[int, int, int] | None
) -> object:
    """One-range ACK / ACK_ECN, every field by encode_varint (or its ValueError)."""
    (smallest, largest) = ranges[0]
    try:
        if not 0 <= smallest <= largest:
            raise ValueError("bad range")
        fields = [largest, delay, 0, largest - smallest, *(ecn or ())]
        return (b"\x03" if ecn else b"\x02") + b"".join(encode_varint(v) for v in fields)
    except ValueError:
        return ValueError


def encoded(ranges: tuple[tuple[int, int], ...], delay: int, ecn: object) -> object:
    try:
        return encode_ack_frame(ranges, delay, ecn)  # type: ignore[arg-type]
    except ValueError:
        return ValueError


def test_one_range_encoding_matches_encode_varint() -> None:
    rng = random.Random(193)
    edges = (0, 1, 0x3F, 0x40, 0x3FFF, 0x4000, 0x3FFFFFFF, 0x40000000, (1 << 62) - 1)
    for _ in range(20000):

        def pick() -> int:
            return rng.choice(edges) if rng.random() < 0.5 else value(rng)

        largest = pick()
        smallest = largest - min(largest, pick()) if rng.random() < 0.95 else largest + 1
        delay = pick() if rng.random() < 0.98 else -rng.randrange(1, 100)
        ecn = None if rng.random() < 0.3 else (pick(), pick(), pick())
        if ecn and rng.random() < 0.02:
            ecn = (ecn[0], -1, ecn[2])
        ranges = ((smallest, largest),)
        assert encoded(ranges, delay, ecn) == plain_encoding(ranges, delay, ecn)


def test_one_range_ack_ranges_match_the_general_path() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        start = rng.randrange(1 << rng.choice((3, 20, 62)))
        rs = RangeSet()
        rs.add(start, start + rng.randrange(1, 1000))
        general = tuple((r.start, r.stop - 1) for r in reversed(list(rs)))
        for limit in (0, 1, 2, 256):
            assert rs.ack_ranges_descending(limit) == general[:limit]
