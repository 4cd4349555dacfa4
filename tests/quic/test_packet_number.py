"""Packet number encoding and decoding (RFC 9000 §17.1, Appendix A.2 and A.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quic.packet_number import (
    MAX_PACKET_NUMBER,
    decode_packet_number,
    encode_packet_number,
    packet_number_length,
)

# --- RFC 9000 Appendix A.2 examples ------------------------------------------------


def test_rfc_encoding_example_16_bits() -> None:
    # 29,519 outstanding packet numbers: twice that range needs 16 bits.
    assert encode_packet_number(0xAC5C02, 0xABE8B3) == (0x5C02, 2)


def test_rfc_encoding_example_24_bits() -> None:
    # Twice the range is 131,222 (0x020096): at least 18 bits, so 24.
    assert encode_packet_number(0xACE8FE, 0xABE8B3) == (0xACE8FE, 3)


# --- RFC 9000 Appendix A.3 example -------------------------------------------------


def test_rfc_decoding_example() -> None:
    assert decode_packet_number(0x9B32, 16, 0xA82F30EA) == 0xA82F9B32


# --- length boundaries -------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_unacked", "length"),
    [
        (1, 1),
        (128, 1),
        (129, 2),
        (1 << 15, 2),
        ((1 << 15) + 1, 3),
        (1 << 23, 3),
        ((1 << 23) + 1, 4),
        (1 << 31, 4),
    ],
)
def test_length_boundaries(num_unacked: int, length: int) -> None:
    largest_acked = 1000
    assert packet_number_length(largest_acked + num_unacked, largest_acked) == length
    # Without any acknowledgment the range counts from packet number 0.
    assert packet_number_length(num_unacked - 1, None) == length


def test_no_ack_yet_small_numbers() -> None:
    assert encode_packet_number(0, None) == (0, 1)
    assert encode_packet_number(127, None) == (127, 1)
    assert encode_packet_number(128, None) == (128, 2)


def test_truncation_keeps_low_bytes() -> None:
    assert encode_packet_number(0x12345678AB, 0x12345678AA) == (0xAB, 1)
    assert encode_packet_number(0x1234_5678, 0x1234_0000) == (0x5678, 2)
    assert encode_packet_number(0x1234_5678, 0x1230_0000) == (0x34_5678, 3)


@pytest.mark.parametrize(
    ("full_pn", "largest_acked"),
    [
        (5, 5),  # not above the largest acknowledged
        (4, 5),
        (-1, None),
        (MAX_PACKET_NUMBER + 1, MAX_PACKET_NUMBER),  # beyond 2^62 - 1
        ((1 << 31) + 1, 0),  # range needs more than 32 bits
    ],
)
def test_encode_rejects_bad_arguments(full_pn: int, largest_acked: int | None) -> None:
    with pytest.raises(ValueError):
        encode_packet_number(full_pn, largest_acked)


def test_encode_largest_packet_number() -> None:
    assert encode_packet_number(MAX_PACKET_NUMBER, MAX_PACKET_NUMBER - 1) == (0xFF, 1)


# --- decoding edges ----------------------------------------------------------------


def test_decode_first_packet() -> None:
    # Nothing received yet: largest_pn = -1, expected 0.
    assert decode_packet_number(0, 8, -1) == 0
    assert decode_packet_number(5, 8, -1) == 5
    # No underflow below zero: 0xff stays 0xff rather than -1.
    assert decode_packet_number(0xFF, 8, -1) == 0xFF


def test_decode_wraps_forward_and_backward() -> None:
    # Forward: largest 0xfe, expected 0xff, truncated 0x01 -> 0x101.
    assert decode_packet_number(0x01, 8, 0xFE) == 0x101
    # Backward: largest 0x101, expected 0x102, truncated 0xff -> 0xff (delayed packet).
    assert decode_packet_number(0xFF, 8, 0x101) == 0xFF
    # Window is (expected - 128, expected + 128].
    assert decode_packet_number(0x80, 8, 0xFF) == 0x180  # expected 0x100: +0x80 in window
    assert decode_packet_number(0x81, 8, 0xFF) == 0x81  # would be +0x81: goes back instead


def test_decode_no_overflow_past_2_62() -> None:
    largest = MAX_PACKET_NUMBER - 1
    # The candidate + window would exceed 2^62 - 1, so it is not incremented.
    assert decode_packet_number(0x00, 8, largest) == (1 << 62) - 256
    assert decode_packet_number(0xFF, 8, largest) == MAX_PACKET_NUMBER


@pytest.mark.parametrize("nbits", [8, 16, 24, 32])
def test_decode_identity_when_expected(nbits: int) -> None:
    full = 0x1_2345_6789
    truncated = full & ((1 << nbits) - 1)
    assert decode_packet_number(truncated, nbits, full - 1) == full


# --- properties --------------------------------------------------------------------


@given(
    largest_acked=st.one_of(st.none(), st.integers(0, MAX_PACKET_NUMBER - 1)),
    distance=st.integers(1, 1 << 31),
    data=st.data(),
)
def test_round_trip_with_any_receiver_state(
    largest_acked: int | None, distance: int, data: st.DataObject
) -> None:
    base = -1 if largest_acked is None else largest_acked
    full_pn = min(base + distance, MAX_PACKET_NUMBER)
    if full_pn <= base:
        return
    truncated, length = encode_packet_number(full_pn, largest_acked)
    assert 1 <= length <= 4
    assert truncated < 1 << (8 * length)
    # The receiver has processed at least largest_acked and at most full_pn - 1
    # (or anything above full_pn up to the same distance, for reordering); the
    # sender's choice must decode correctly for every largest_pn in between.
    largest_pn = data.draw(st.integers(base, full_pn - 1))
    assert decode_packet_number(truncated, 8 * length, largest_pn) == full_pn


@given(
    truncated=st.integers(0, (1 << 32) - 1),
    nbytes=st.sampled_from([1, 2, 3, 4]),
    largest_pn=st.integers(-1, MAX_PACKET_NUMBER - 1),
)
def test_decode_result_in_range_and_matches_truncation(
    truncated: int, nbytes: int, largest_pn: int
) -> None:
    nbits = 8 * nbytes
    truncated &= (1 << nbits) - 1
    pn = decode_packet_number(truncated, nbits, largest_pn)
    assert 0 <= pn <= MAX_PACKET_NUMBER
    assert pn & ((1 << nbits) - 1) == truncated
