"""The receive path's ACK decoder (:func:`quic.frames.decode_ack_fields`: one- and
two-byte varints read inline, no frame object) against a plain reading of RFC 9000
§19.3 with :func:`quic.buffer.decode_varint` for every field: same fields, same end,
same errors — on random frames with varints of every length (minimal or not), on every
truncation, and on random bytes."""

from __future__ import annotations

import random

import pytest

from quic.buffer import decode_varint, encode_varint_size
from quic.errors import BufferReadError, QuicProtocolError, TransportErrorCode
from quic.frames import AckFrame, decode_ack_fields, decode_frame

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
    assert outcome(via_decode_frame, data, pos) == expected, data.hex()
    return expected[0] != "error"  # type: ignore[index]


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
    ],
)
def test_ack_fields_errors(wire: str, reason: str) -> None:
    data = bytes.fromhex(wire)
    result = outcome(decode_ack_fields, data, 0)
    assert result == ("error", FEE, data[0], reason)
    assert outcome(reference, data, 0) == result
