"""QUIC frames and their encoders (RFC 9000 §19, RFC 9221 §4).

Theory of operation
-------------------
Every frame is a small frozen, slotted dataclass with an ``encode()`` method and a
``frame_type`` attribute (the type byte ``encode()`` writes; for decoded STREAM and
DATAGRAM frames this can differ from the wire type in its OFF/LEN bits, which carry no
meaning once the frame is decoded). The type codes are :class:`~quic.frames_types.
FrameType`; the ACK, ACK_FREQUENCY and IMMEDIATE_ACK frames live in
:mod:`quic.frames_ack`; the :data:`Frame` union here covers them all. The decoders live
in :mod:`quic.frames_decode`; the per-type rules (allowed packet types, ack-eliciting,
...) in :mod:`quic.frames_info`; :mod:`quic.frames` re-exports them all.

Payload-carrying frames (STREAM, CRYPTO, DATAGRAM) hold their data as ``bytes``.

The send path does not build dataclasses. Every frame type has an encoder function
(``encode_<name>_frame``) that takes the field values and returns the frame's bytes;
the dataclasses' ``encode()`` methods call the same functions, so the round-trip tests
of the codec cover exactly the bytes the connection puts on the wire (logic modules
never assemble frame bytes themselves). Bulk data is framed with a header writer
(:func:`encode_stream_frame_header`, or the CRYPTO / DATAGRAM variants) placed next to
the payload the sender already holds, sizing packets with the matching
``*_header_size``. Fieldless frames are the constants :data:`PING_FRAME` and
:data:`HANDSHAKE_DONE_FRAME`.

Encoders validate their inputs and raise :class:`ValueError` (a programming error,
never network input); decoders raise :class:`~quic.errors.QuicProtocolError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from quic.buffer import VARINT_MAX, encode_varint, varint_size
from quic.frames_ack import AckFrame, AckFrequencyFrame, ImmediateAckFrame
from quic.frames_types import FrameType

__all__ = [
    "HANDSHAKE_DONE_FRAME",
    "MAX_STREAMS_LIMIT",
    "PING_FRAME",
    "STREAM_FIN_BIT",
    "STREAM_LEN_BIT",
    "STREAM_OFF_BIT",
    "ApplicationCloseFrame",
    "ConnectionCloseFrame",
    "CryptoFrame",
    "DataBlockedFrame",
    "DatagramFrame",
    "Frame",
    "HandshakeDoneFrame",
    "MaxDataFrame",
    "MaxStreamDataFrame",
    "MaxStreamsFrame",
    "NewConnectionIdFrame",
    "NewTokenFrame",
    "PaddingFrame",
    "PathChallengeFrame",
    "PathResponseFrame",
    "PingFrame",
    "ResetStreamAtFrame",
    "ResetStreamFrame",
    "RetireConnectionIdFrame",
    "StopSendingFrame",
    "StreamDataBlockedFrame",
    "StreamFrame",
    "StreamsBlockedFrame",
    "crypto_frame_header_size",
    "datagram_frame_header_size",
    "encode_application_close_frame",
    "encode_connection_close_frame",
    "encode_crypto_frame_header",
    "encode_data_blocked_frame",
    "encode_datagram_frame_header",
    "encode_frame",
    "encode_max_data_frame",
    "encode_max_stream_data_frame",
    "encode_max_streams_frame",
    "encode_new_connection_id_frame",
    "encode_new_token_frame",
    "encode_path_challenge_frame",
    "encode_path_response_frame",
    "encode_reset_stream_at_frame",
    "encode_reset_stream_frame",
    "encode_retire_connection_id_frame",
    "encode_stop_sending_frame",
    "encode_stream_data_blocked_frame",
    "encode_stream_frame_header",
    "encode_streams_blocked_frame",
    "pack_stream_bulk_header",
    "stream_frame_header_size",
]

#: Largest MAX_STREAMS / STREAMS_BLOCKED value (RFC 9000 §19.11, §19.14).
MAX_STREAMS_LIMIT = 1 << 60

#: Low bits of the STREAM frame type (RFC 9000 §19.8).
STREAM_OFF_BIT = 0x04
STREAM_LEN_BIT = 0x02
STREAM_FIN_BIT = 0x01

_ev = encode_varint
_pack_bh = struct.Struct("!BH").pack  # a frame type byte and a two-byte varint


def _check_token16(token: bytes) -> None:
    if len(token) != 16:
        raise ValueError("stateless reset token must be 16 bytes")


# -- frames without fields ------------------------------------------------------------

#: The whole PING frame (RFC 9000 §19.2).
PING_FRAME = b"\x01"
#: The whole HANDSHAKE_DONE frame (RFC 9000 §19.20).
HANDSHAKE_DONE_FRAME = b"\x1e"


@dataclass(frozen=True, slots=True)
class PaddingFrame:
    """A run of ``length`` PADDING bytes, decoded as one frame (RFC 9000 §19.1)."""

    length: int = 1
    frame_type: ClassVar[int] = FrameType.PADDING

    def encode(self) -> bytes:
        if self.length < 1:
            raise ValueError("padding length must be at least 1")
        return bytes(self.length)


@dataclass(frozen=True, slots=True)
class PingFrame:
    """RFC 9000 §19.2."""

    frame_type: ClassVar[int] = FrameType.PING

    def encode(self) -> bytes:
        return PING_FRAME


@dataclass(frozen=True, slots=True)
class HandshakeDoneFrame:
    """RFC 9000 §19.20."""

    frame_type: ClassVar[int] = FrameType.HANDSHAKE_DONE

    def encode(self) -> bytes:
        return HANDSHAKE_DONE_FRAME


# -- stream and flow control --------------------------------------------------------


def encode_reset_stream_frame(stream_id: int, error_code: int, final_size: int) -> bytes:
    """RESET_STREAM (RFC 9000 §19.4)."""
    return b"".join((b"\x04", _ev(stream_id), _ev(error_code), _ev(final_size)))


def encode_stop_sending_frame(stream_id: int, error_code: int) -> bytes:
    """STOP_SENDING (RFC 9000 §19.5)."""
    return b"".join((b"\x05", _ev(stream_id), _ev(error_code)))


@dataclass(frozen=True, slots=True)
class ResetStreamFrame:
    """RFC 9000 §19.4."""

    stream_id: int
    error_code: int
    final_size: int
    frame_type: ClassVar[int] = FrameType.RESET_STREAM

    def encode(self) -> bytes:
        return encode_reset_stream_frame(self.stream_id, self.error_code, self.final_size)


@dataclass(frozen=True, slots=True)
class StopSendingFrame:
    """RFC 9000 §19.5."""

    stream_id: int
    error_code: int
    frame_type: ClassVar[int] = FrameType.STOP_SENDING

    def encode(self) -> bytes:
        return encode_stop_sending_frame(self.stream_id, self.error_code)


def encode_reset_stream_at_frame(
    stream_id: int, error_code: int, final_size: int, reliable_size: int
) -> bytes:
    """RESET_STREAM_AT (draft-ietf-quic-reliable-stream-reset §4): a RESET_STREAM that
    still delivers the first ``reliable_size`` bytes; ``reliable_size <= final_size``."""
    if reliable_size > final_size:
        raise ValueError("RESET_STREAM_AT reliable size exceeds the final size")
    return b"".join((b"\x24", _ev(stream_id), _ev(error_code), _ev(final_size), _ev(reliable_size)))


@dataclass(frozen=True, slots=True)
class ResetStreamAtFrame:
    """draft-ietf-quic-reliable-stream-reset §4."""

    stream_id: int
    error_code: int
    final_size: int
    reliable_size: int
    frame_type: ClassVar[int] = FrameType.RESET_STREAM_AT

    def encode(self) -> bytes:
        return encode_reset_stream_at_frame(
            self.stream_id, self.error_code, self.final_size, self.reliable_size
        )


def encode_crypto_frame_header(offset: int, length: int) -> bytes:
    """Type, Offset and Length of a CRYPTO frame (RFC 9000 §19.6); data follows."""
    if offset + length > VARINT_MAX:
        raise ValueError("CRYPTO offset + length exceeds 2**62-1")
    return b"".join((b"\x06", _ev(offset), _ev(length)))


def crypto_frame_header_size(offset: int, length: int) -> int:
    """Size of :func:`encode_crypto_frame_header`."""
    return 1 + varint_size(offset) + varint_size(length)


@dataclass(frozen=True, slots=True)
class CryptoFrame:
    """RFC 9000 §19.6."""

    offset: int
    data: bytes
    frame_type: ClassVar[int] = FrameType.CRYPTO

    def encode(self) -> bytes:
        return encode_crypto_frame_header(self.offset, len(self.data)) + self.data


def encode_new_token_frame(token: bytes) -> bytes:
    """NEW_TOKEN (RFC 9000 §19.7); the token must not be empty."""
    if not token:
        raise ValueError("NEW_TOKEN token must not be empty")  # RFC 9000 §19.7
    return b"\x07" + _ev(len(token)) + token


@dataclass(frozen=True, slots=True)
class NewTokenFrame:
    """RFC 9000 §19.7."""

    token: bytes
    frame_type: ClassVar[int] = FrameType.NEW_TOKEN

    def encode(self) -> bytes:
        return encode_new_token_frame(self.token)


#: A STREAM frame header in mid-stream (RFC 9000 §19.8, §16), packed from the type
#: (0x0E | FIN), a stream ID below 0x40 (1 byte), an offset below 2**30 ORed with
#: 0x80000000 (4 bytes) and a length below 0x4000 ORed with 0x4000 (2 bytes): the
#: shortest encodings of :func:`encode_stream_frame_header` for offsets from 0x4000
#: and lengths from 0x40 (the bulk send path packs it itself).
pack_stream_bulk_header = struct.Struct(">BBIH").pack


def encode_stream_frame_header(stream_id: int, offset: int, length: int, fin: bool) -> bytes:
    """Header of a STREAM frame (RFC 9000 §19.8): always LEN, OFF only if offset > 0."""
    if stream_id < 0x40 and 0x4000 <= offset < 0x40000000 and 0x40 <= length < 0x4000:
        # the bulk case, the same shortest encodings in one pack (RFC 9000 §16)
        return pack_stream_bulk_header(0x0E | fin, stream_id, offset | 0x80000000, length | 0x4000)
    if offset + length > VARINT_MAX:
        raise ValueError("STREAM offset + length exceeds 2**62-1")
    if offset:
        return b"".join((bytes((0x0E | fin,)), _ev(stream_id), _ev(offset), _ev(length)))
    return b"".join((bytes((0x0A | fin,)), _ev(stream_id), _ev(length)))


def stream_frame_header_size(stream_id: int, offset: int, length: int) -> int:
    """Size of :func:`encode_stream_frame_header` for these values."""
    size = 1 + varint_size(stream_id) + varint_size(length)
    return size + varint_size(offset) if offset else size


@dataclass(frozen=True, slots=True)
class StreamFrame:
    """RFC 9000 §19.8. ``data`` is bytes; ``fin`` marks the end of the stream."""

    stream_id: int
    offset: int
    data: bytes
    fin: bool = False

    @property
    def frame_type(self) -> int:
        return 0x0A | (STREAM_OFF_BIT if self.offset else 0) | self.fin

    def encode(self) -> bytes:
        header = encode_stream_frame_header(self.stream_id, self.offset, len(self.data), self.fin)
        return header + self.data


def encode_max_data_frame(maximum_data: int) -> bytes:
    """MAX_DATA (RFC 9000 §19.9)."""
    return b"\x10" + _ev(maximum_data)


def encode_max_stream_data_frame(stream_id: int, maximum_stream_data: int) -> bytes:
    """MAX_STREAM_DATA (RFC 9000 §19.10)."""
    return b"".join((b"\x11", _ev(stream_id), _ev(maximum_stream_data)))


def encode_max_streams_frame(bidirectional: bool, maximum_streams: int) -> bytes:
    """MAX_STREAMS, 0x12 bidirectional or 0x13 unidirectional (RFC 9000 §19.11)."""
    if maximum_streams > MAX_STREAMS_LIMIT:
        raise ValueError("MAX_STREAMS exceeds 2**60")
    return (b"\x12" if bidirectional else b"\x13") + _ev(maximum_streams)


def encode_data_blocked_frame(maximum_data: int) -> bytes:
    """DATA_BLOCKED (RFC 9000 §19.12)."""
    return b"\x14" + _ev(maximum_data)


def encode_stream_data_blocked_frame(stream_id: int, maximum_stream_data: int) -> bytes:
    """STREAM_DATA_BLOCKED (RFC 9000 §19.13)."""
    return b"".join((b"\x15", _ev(stream_id), _ev(maximum_stream_data)))


def encode_streams_blocked_frame(bidirectional: bool, maximum_streams: int) -> bytes:
    """STREAMS_BLOCKED, 0x16 bidirectional or 0x17 unidirectional (RFC 9000 §19.14)."""
    if maximum_streams > MAX_STREAMS_LIMIT:
        raise ValueError("STREAMS_BLOCKED exceeds 2**60")
    return (b"\x16" if bidirectional else b"\x17") + _ev(maximum_streams)


@dataclass(frozen=True, slots=True)
class MaxDataFrame:
    """RFC 9000 §19.9."""

    maximum_data: int
    frame_type: ClassVar[int] = FrameType.MAX_DATA

    def encode(self) -> bytes:
        return encode_max_data_frame(self.maximum_data)


@dataclass(frozen=True, slots=True)
class MaxStreamDataFrame:
    """RFC 9000 §19.10."""

    stream_id: int
    maximum_stream_data: int
    frame_type: ClassVar[int] = FrameType.MAX_STREAM_DATA

    def encode(self) -> bytes:
        return encode_max_stream_data_frame(self.stream_id, self.maximum_stream_data)


@dataclass(frozen=True, slots=True)
class MaxStreamsFrame:
    """RFC 9000 §19.11: type 0x12 (bidirectional) or 0x13 (unidirectional)."""

    maximum_streams: int
    bidirectional: bool

    @property
    def frame_type(self) -> int:
        return FrameType.MAX_STREAMS_BIDI if self.bidirectional else FrameType.MAX_STREAMS_UNI

    def encode(self) -> bytes:
        return encode_max_streams_frame(self.bidirectional, self.maximum_streams)


@dataclass(frozen=True, slots=True)
class DataBlockedFrame:
    """RFC 9000 §19.12."""

    maximum_data: int
    frame_type: ClassVar[int] = FrameType.DATA_BLOCKED

    def encode(self) -> bytes:
        return encode_data_blocked_frame(self.maximum_data)


@dataclass(frozen=True, slots=True)
class StreamDataBlockedFrame:
    """RFC 9000 §19.13."""

    stream_id: int
    maximum_stream_data: int
    frame_type: ClassVar[int] = FrameType.STREAM_DATA_BLOCKED

    def encode(self) -> bytes:
        return encode_stream_data_blocked_frame(self.stream_id, self.maximum_stream_data)


@dataclass(frozen=True, slots=True)
class StreamsBlockedFrame:
    """RFC 9000 §19.14: type 0x16 (bidirectional) or 0x17 (unidirectional)."""

    maximum_streams: int
    bidirectional: bool

    @property
    def frame_type(self) -> int:
        if self.bidirectional:
            return FrameType.STREAMS_BLOCKED_BIDI
        return FrameType.STREAMS_BLOCKED_UNI

    def encode(self) -> bytes:
        return encode_streams_blocked_frame(self.bidirectional, self.maximum_streams)


# -- connection IDs and paths ---------------------------------------------------------


def encode_new_connection_id_frame(
    sequence_number: int, retire_prior_to: int, connection_id: bytes, stateless_reset_token: bytes
) -> bytes:
    """NEW_CONNECTION_ID (RFC 9000 §19.15)."""
    if not 1 <= len(connection_id) <= 20:
        raise ValueError("connection ID length must be 1..20")
    if retire_prior_to > sequence_number:
        raise ValueError("retire_prior_to exceeds sequence_number")
    _check_token16(stateless_reset_token)
    return b"".join(
        (
            b"\x18",
            _ev(sequence_number),
            _ev(retire_prior_to),
            bytes((len(connection_id),)),
            connection_id,
            stateless_reset_token,
        )
    )


def encode_retire_connection_id_frame(sequence_number: int) -> bytes:
    """RETIRE_CONNECTION_ID (RFC 9000 §19.16)."""
    return b"\x19" + _ev(sequence_number)


def encode_path_challenge_frame(data: bytes) -> bytes:
    """PATH_CHALLENGE with its 8 bytes of data (RFC 9000 §19.17)."""
    if len(data) != 8:
        raise ValueError("PATH_CHALLENGE data must be 8 bytes")
    return b"\x1a" + data


def encode_path_response_frame(data: bytes) -> bytes:
    """PATH_RESPONSE echoing 8 bytes of PATH_CHALLENGE data (RFC 9000 §19.18)."""
    if len(data) != 8:
        raise ValueError("PATH_RESPONSE data must be 8 bytes")
    return b"\x1b" + data


@dataclass(frozen=True, slots=True)
class NewConnectionIdFrame:
    """RFC 9000 §19.15."""

    sequence_number: int
    retire_prior_to: int
    connection_id: bytes
    stateless_reset_token: bytes
    frame_type: ClassVar[int] = FrameType.NEW_CONNECTION_ID

    def encode(self) -> bytes:
        return encode_new_connection_id_frame(
            self.sequence_number,
            self.retire_prior_to,
            self.connection_id,
            self.stateless_reset_token,
        )


@dataclass(frozen=True, slots=True)
class RetireConnectionIdFrame:
    """RFC 9000 §19.16."""

    sequence_number: int
    frame_type: ClassVar[int] = FrameType.RETIRE_CONNECTION_ID

    def encode(self) -> bytes:
        return encode_retire_connection_id_frame(self.sequence_number)


@dataclass(frozen=True, slots=True)
class PathChallengeFrame:
    """RFC 9000 §19.17: 8 bytes of data."""

    data: bytes
    frame_type: ClassVar[int] = FrameType.PATH_CHALLENGE

    def encode(self) -> bytes:
        return encode_path_challenge_frame(self.data)


@dataclass(frozen=True, slots=True)
class PathResponseFrame:
    """RFC 9000 §19.18: 8 bytes of data."""

    data: bytes
    frame_type: ClassVar[int] = FrameType.PATH_RESPONSE

    def encode(self) -> bytes:
        return encode_path_response_frame(self.data)


# -- closing ------------------------------------------------------------------------


def encode_connection_close_frame(error_code: int, frame_type: int, reason: bytes) -> bytes:
    """Transport CONNECTION_CLOSE, type 0x1c (RFC 9000 §19.19)."""
    return b"".join((b"\x1c", _ev(error_code), _ev(frame_type), _ev(len(reason)), reason))


def encode_application_close_frame(error_code: int, reason: bytes) -> bytes:
    """Application CONNECTION_CLOSE, type 0x1d (RFC 9000 §19.19)."""
    return b"".join((b"\x1d", _ev(error_code), _ev(len(reason)), reason))


@dataclass(frozen=True, slots=True)
class ConnectionCloseFrame:
    """Transport CONNECTION_CLOSE, type 0x1c (RFC 9000 §19.19).

    ``error_frame_type`` is the Frame Type field (the frame that triggered the error,
    0 if unknown). ``reason`` is the raw Reason Phrase (should be UTF-8).
    """

    error_code: int
    error_frame_type: int = 0
    reason: bytes = b""
    frame_type: ClassVar[int] = FrameType.CONNECTION_CLOSE

    def encode(self) -> bytes:
        return encode_connection_close_frame(self.error_code, self.error_frame_type, self.reason)


@dataclass(frozen=True, slots=True)
class ApplicationCloseFrame:
    """Application CONNECTION_CLOSE, type 0x1d (RFC 9000 §19.19); no Frame Type field."""

    error_code: int
    reason: bytes = b""
    frame_type: ClassVar[int] = FrameType.CONNECTION_CLOSE_APP

    def encode(self) -> bytes:
        return encode_application_close_frame(self.error_code, self.reason)


# -- datagrams ----------------------------------------------------------------------


def encode_datagram_frame_header(length: int, with_length: bool = True) -> bytes:
    """DATAGRAM frame header (RFC 9221 §4): 0x31 + Length, or 0x30 (data to packet end)."""
    if with_length:
        if 0 <= length < 0x40:  # a one-byte Length: built once (per datagram sent)
            return _DATAGRAM_HEADERS[length]
        if length < 0x4000:  # a two-byte Length, without encode_varint's call
            return _pack_bh(0x31, length | 0x4000)
        return b"\x31" + _ev(length)
    return b"\x30"


#: the DATAGRAM frame headers with a one-byte Length, by Length
_DATAGRAM_HEADERS = tuple(bytes((0x31, n)) for n in range(0x40))


def datagram_frame_header_size(length: int, with_length: bool = True) -> int:
    """Size of :func:`encode_datagram_frame_header`."""
    if not with_length:
        return 1
    if 0 <= length < 0x4000:  # varint_size(), inline: per datagram sent
        return 2 if length < 0x40 else 3
    return 1 + varint_size(length)


@dataclass(frozen=True, slots=True)
class DatagramFrame:
    """RFC 9221 §4. Encoded with a Length field (type 0x31)."""

    data: bytes
    frame_type: ClassVar[int] = FrameType.DATAGRAM_LEN

    def encode(self) -> bytes:
        return encode_datagram_frame_header(len(self.data)) + self.data


Frame: TypeAlias = (
    PaddingFrame
    | PingFrame
    | AckFrame
    | ResetStreamFrame
    | StopSendingFrame
    | CryptoFrame
    | NewTokenFrame
    | StreamFrame
    | MaxDataFrame
    | MaxStreamDataFrame
    | MaxStreamsFrame
    | DataBlockedFrame
    | StreamDataBlockedFrame
    | StreamsBlockedFrame
    | NewConnectionIdFrame
    | RetireConnectionIdFrame
    | PathChallengeFrame
    | PathResponseFrame
    | ConnectionCloseFrame
    | ApplicationCloseFrame
    | HandshakeDoneFrame
    | DatagramFrame
    | ResetStreamAtFrame
    | AckFrequencyFrame
    | ImmediateAckFrame
)


def encode_frame(frame: Frame) -> bytes:
    """Encode any frame; same as ``frame.encode()``."""
    return frame.encode()
