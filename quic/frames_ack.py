"""QUIC ACK, ACK_FREQUENCY and IMMEDIATE_ACK frames and their encoders (RFC 9000 §19.3,
draft-ietf-quic-ack-frequency §4, §5).

Theory of operation
-------------------
The frames that drive acknowledgement, apart from the rest of the codec
(:mod:`quic.frames_defs`) because the ACK encoder is on the hot path of every packet
that carries an ACK and has a shape of its own: the common ACK (one range, small
fields) is assembled from a table of one-byte varints (RFC 9000 §16) without a call
per field; several ranges are written gap by gap (§19.3.1). As everywhere in the codec,
each frame is a frozen slotted dataclass whose ``encode()`` calls the same
``encode_<name>_frame`` function the send path calls, so the round-trip tests cover
the bytes on the wire. The decoders are :mod:`quic.frames_decode`'s; :mod:`quic.frames`
re-exports both.

Encoders validate their inputs and raise :class:`ValueError` (a programming error,
never network input).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from quic.buffer import VARINT_MAX, encode_varint
from quic.frames_types import FrameType

__all__ = [
    "IMMEDIATE_ACK_FRAME",
    "AckFrame",
    "AckFrequencyFrame",
    "ImmediateAckFrame",
    "encode_ack_frame",
    "encode_ack_frequency_frame",
]

_ev = encode_varint
_pack_h = struct.Struct("!H").pack  # a two-byte varint: value | 0x4000 (RFC 9000 §16)
_pack_i = struct.Struct("!I").pack  # a four-byte varint: value | 0x80000000
_ONE_BYTE = tuple(bytes((value,)) for value in range(0x40))  # one-byte varints (RFC 9000 §16)


# -- ACK (RFC 9000 §19.3) ----------------------------------------------------------


def encode_ack_frame(
    ranges: tuple[tuple[int, int], ...] | list[tuple[int, int]],
    ack_delay: int,
    ecn: tuple[int, int, int] | None = None,
) -> bytes:
    """ACK (0x02) or, with ``ecn`` counts, ACK_ECN (0x03) frame (RFC 9000 §19.3).

    ``ranges`` are inclusive ``(smallest, largest)`` pairs in descending order,
    separated by at least one missing packet; ``ack_delay`` is the raw field value
    (already scaled down by the ack_delay_exponent).
    """
    if not ranges:
        raise ValueError("an ACK frame needs at least one range")
    smallest, largest = ranges[0]
    if not 0 <= smallest <= largest:
        raise ValueError(f"bad ACK range {ranges[0]}")
    if len(ranges) == 1:  # the common case: one range (ACK Range Count 0), no list
        # varints of one byte from a table and of two or four packed (RFC 9000 §16),
        # without a call: the packet numbers and ECN counts of a long exchange take two,
        # then four bytes
        first = largest - smallest
        head = (
            _ONE_BYTE[largest]
            if largest < 0x40
            else _pack_h(largest | 0x4000)
            if largest < 0x4000
            else _pack_i(largest | 0x80000000)  # past packet 16,383: a long exchange's
            if largest < 0x40000000
            else _ev(largest)
        )
        delay = (
            _ONE_BYTE[ack_delay]
            if 0 <= ack_delay < 0x40
            else _pack_h(ack_delay | 0x4000)
            if 0 <= ack_delay < 0x4000
            else _ev(ack_delay)
        )
        span = _ONE_BYTE[first] if first < 0x40 else _ev(first)
        if ecn is None:
            return b"".join((b"\x02", head, delay, b"\x00", span))
        ect0, ect1, ce = ecn
        return b"".join(
            (
                b"\x03",
                head,
                delay,
                b"\x00",
                span,
                _ONE_BYTE[ect0]
                if 0 <= ect0 < 0x40
                else _pack_h(ect0 | 0x4000)
                if 0 <= ect0 < 0x4000
                else _pack_i(ect0 | 0x80000000)
                if 0 <= ect0 < 0x40000000
                else _ev(ect0),
                _ONE_BYTE[ect1] if 0 <= ect1 < 0x40 else _ev(ect1),
                _ONE_BYTE[ce] if 0 <= ce < 0x40 else _ev(ce),
            )
        )  # RFC 9000 §19.3.2
    parts = [
        b"\x03" if ecn is not None else b"\x02",
        _ev(largest),
        _ev(ack_delay),
        _ev(len(ranges) - 1),
        _ev(largest - smallest),
    ]
    append = parts.append
    previous = smallest
    for smallest, largest in ranges[1:]:
        # RFC 9000 §19.3.1: largest = previous_smallest - gap - 2
        gap = previous - largest - 2
        if gap < 0 or not 0 <= smallest <= largest:
            raise ValueError("ACK ranges must be descending and separated by a gap")
        append(_ev(gap))
        append(_ev(largest - smallest))
        previous = smallest
    if ecn is not None:
        parts += (_ev(ecn[0]), _ev(ecn[1]), _ev(ecn[2]))  # RFC 9000 §19.3.2
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class AckFrame:
    """RFC 9000 §19.3: ``ranges`` descending inclusive ``(smallest, largest)`` pairs.

    ``ack_delay`` is the raw field (multiply by 2**ack_delay_exponent for
    microseconds). ``ecn`` is ``(ect0, ect1, ce)`` for type 0x03, else ``None``.
    """

    ranges: tuple[tuple[int, int], ...]
    ack_delay: int
    ecn: tuple[int, int, int] | None = None

    @property
    def frame_type(self) -> int:
        return FrameType.ACK if self.ecn is None else FrameType.ACK_ECN

    @property
    def largest_acknowledged(self) -> int:
        return self.ranges[0][1]

    def encode(self) -> bytes:
        return encode_ack_frame(self.ranges, self.ack_delay, self.ecn)


# -- ACK frequency (draft-ietf-quic-ack-frequency) ------------------------------------

#: The whole IMMEDIATE_ACK frame (draft-ietf-quic-ack-frequency §5).
IMMEDIATE_ACK_FRAME = b"\x1f"
_ACK_FREQUENCY_TYPE = _ev(FrameType.ACK_FREQUENCY)


def encode_ack_frequency_frame(
    sequence_number: int,
    ack_eliciting_threshold: int,
    request_max_ack_delay: int,
    reordering_threshold: int,
) -> bytes:
    """ACK_FREQUENCY, type 0xaf (draft-ietf-quic-ack-frequency §4); delay in µs."""
    for value in (
        sequence_number,
        ack_eliciting_threshold,
        request_max_ack_delay,
        reordering_threshold,
    ):
        if not 0 <= value <= VARINT_MAX:
            raise ValueError(f"ACK_FREQUENCY field out of range: {value}")
    return b"".join(
        (
            _ACK_FREQUENCY_TYPE,
            _ev(sequence_number),
            _ev(ack_eliciting_threshold),
            _ev(request_max_ack_delay),
            _ev(reordering_threshold),
        )
    )


@dataclass(frozen=True, slots=True)
class AckFrequencyFrame:
    """draft-ietf-quic-ack-frequency §4; ``request_max_ack_delay`` in microseconds."""

    sequence_number: int
    ack_eliciting_threshold: int
    request_max_ack_delay: int
    reordering_threshold: int
    frame_type: ClassVar[int] = FrameType.ACK_FREQUENCY

    def encode(self) -> bytes:
        return encode_ack_frequency_frame(
            self.sequence_number,
            self.ack_eliciting_threshold,
            self.request_max_ack_delay,
            self.reordering_threshold,
        )


@dataclass(frozen=True, slots=True)
class ImmediateAckFrame:
    """draft-ietf-quic-ack-frequency §5."""

    frame_type: ClassVar[int] = FrameType.IMMEDIATE_ACK

    def encode(self) -> bytes:
        return IMMEDIATE_ACK_FRAME
