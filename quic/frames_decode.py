"""QUIC frame decoders (RFC 9000 §12.4, §19; RFC 9221 §4; RESET_STREAM_AT).

Theory of operation
-------------------
A decrypted packet payload is a sequence of frames, each starting with a Frame Type
varint. :func:`decode_frame` reads the type from one byte in the common case and
dispatches through :data:`_DECODERS`, a 64-entry list indexed by that byte (every
RFC 9000 type fits in one byte); extension types on more than one byte (ACK_FREQUENCY,
0xaf) go through :data:`_LONG_DECODERS`, keyed by the whole, minimally encoded type.
Each decoder takes ``(data, pos, frame_type)`` with
``pos`` just past the type and returns ``(frame, next_pos)``.

The receive path's common frames have decoders of their own that return plain values
without a frame object: :func:`decode_stream_fields`, :func:`decode_datagram_frame` and
:func:`decode_ack_fields` (one- and two-byte varints read inline); they raise what
:func:`decode_frame` raises for the same bytes.

Decoders read with :func:`quic.buffer.decode_varint`, which raises
:class:`~quic.errors.BufferReadError` at the end of input; :func:`decode_frame`
turns that into FRAME_ENCODING_ERROR carrying the frame type (the try block costs
nothing on the happy path). Explicit lengths are bounds-checked before slicing, since
slicing never fails on its own.

Errors (all :class:`~quic.errors.QuicProtocolError`, with ``frame_type`` set):

- truncated frame, unknown type (§12.4), ACK range below 0 (§19.3.1), STREAM/CRYPTO
  offset + length > 2**62-1 (§19.6, §19.8), MAX_STREAMS/STREAMS_BLOCKED > 2**60
  (§19.11, §19.14), NEW_CONNECTION_ID length outside 1..20 or Retire Prior To >
  Sequence Number (§19.15), empty NEW_TOKEN (§19.7), RESET_STREAM_AT Reliable Size >
  Final Size (draft-ietf-quic-reliable-stream-reset §4): FRAME_ENCODING_ERROR;
- frame type not minimally encoded (§12.4): PROTOCOL_VIOLATION;
- packet with no frames (§12.4), frame not allowed in the packet type: PROTOCOL_VIOLATION.

Decoded payload-carrying frames hold ``bytes`` slices of the input, which must be
``bytes``. A run of PADDING bytes decodes as one :class:`PaddingFrame`.

:func:`decode_stream_fields` returns a STREAM frame's fields as one tuple (a frozen
dataclass costs a ``__setattr__`` per field to build; on a bulk receiver that was ~8 %
of the CPU per packet); it shares its parsing and checks with :func:`decode_frame`'s
STREAM decoder.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from quic.buffer import VARINT_MAX, decode_varint, varint_size
from quic.errors import BufferReadError, QuicProtocolError, TransportErrorCode
from quic.frames_ack import AckFrame, AckFrequencyFrame, ImmediateAckFrame
from quic.frames_defs import (
    MAX_STREAMS_LIMIT,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    Frame,
    HandshakeDoneFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamAtFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
)
from quic.frames_info import FRAME_INFO
from quic.packet import PacketType

__all__ = [
    "decode_ack",
    "decode_ack_body",
    "decode_ack_fields",
    "decode_datagram_frame",
    "decode_frame",
    "decode_frames",
    "decode_stream_fields",
    "decode_stream_frame",
    "unpack_bulk_stream_fields",
]

_FEE = TransportErrorCode.FRAME_ENCODING_ERROR
_dv = decode_varint
_PING = PingFrame()
_HANDSHAKE_DONE = HandshakeDoneFrame()
_IMMEDIATE_ACK = ImmediateAckFrame()

_Decoder = Callable[[bytes, int, int], tuple[Frame, int]]


def _error(reason: str, frame_type: int) -> QuicProtocolError:
    return QuicProtocolError(_FEE, reason, frame_type)


def _take(data: bytes, pos: int, length: int, frame_type: int) -> tuple[bytes, int]:
    end = pos + length
    if end > len(data):
        raise _error("frame truncated", frame_type)
    return data[pos:end], end


def _decode_padding(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    # RFC 9000 §19.1: count the whole run of 0x00 bytes at C speed.
    rest = len(data) - pos
    if not rest or data[pos]:
        return PaddingFrame(1), pos
    run = rest - len(data[pos:].lstrip(b"\x00"))
    return PaddingFrame(run + 1), pos + run


def _decode_ping(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    return _PING, pos


def _decode_handshake_done(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    return _HANDSHAKE_DONE, pos


def decode_ack(data: bytes, pos: int, frame_type: int) -> tuple[AckFrame, int]:
    """Decode an ACK / ACK_ECN frame body starting at ``pos`` (just past the type).

    RFC 9000 §19.3. Raises FRAME_ENCODING_ERROR for negative packet numbers
    (§19.3.1) and on truncation (:func:`decode_ack_body`).
    """
    ranges, ack_delay, ecn, pos = decode_ack_body(data, pos, frame_type)
    return AckFrame(ranges, ack_delay, ecn), pos


def decode_ack_fields(
    data: bytes, pos: int
) -> tuple[tuple[tuple[int, int], ...], int, tuple[int, int, int] | None, int]:
    """:func:`decode_frame` for a frame whose type byte ``data[pos]`` is known to be
    ACK or ACK_ECN (0x02, 0x03; RFC 9000 §19.3): ``(ranges, ack_delay, ecn, next_pos)``
    as in :class:`AckFrame`, in one call and without a frame object; the same errors
    as :func:`decode_frame` (the receive path calls :func:`decode_ack_body` itself)."""
    return decode_ack_body(data, pos + 1, data[pos])


def decode_ack_body(
    data: bytes, pos: int, frame_type: int
) -> tuple[tuple[tuple[int, int], ...], int, tuple[int, int, int] | None, int]:
    """The fields of the ACK frame of type ``frame_type`` whose body starts at ``pos``
    (RFC 9000 §19.3), as :func:`decode_ack_fields` returns them, with the same errors
    (a truncation is FRAME_ENCODING_ERROR here, not :class:`BufferReadError`). Varints
    of one and two bytes (RFC 9000 §16: prefix 0b00, 0b01) are read inline, longer
    ones by :func:`~quic.buffer.decode_varint` — but the Largest Acknowledged and ECT(0)
    count of four bytes (prefix 0b10: a connection past 16,383 packets), inline too."""
    try:
        b = data[pos]
        if b < 0x40:
            largest, pos = b, pos + 1
        elif b < 0x80:
            largest, pos = (b & 0x3F) << 8 | data[pos + 1], pos + 2
        elif b < 0xC0:  # past packet 16383: a long ping-pong's every ACK
            largest = (b & 0x3F) << 24 | data[pos + 1] << 16 | data[pos + 2] << 8 | data[pos + 3]
            pos += 4
        else:
            largest, pos = _dv(data, pos)
        b = data[pos]
        if b < 0x40:
            ack_delay, pos = b, pos + 1
        elif b < 0x80:
            ack_delay, pos = (b & 0x3F) << 8 | data[pos + 1], pos + 2
        else:
            ack_delay, pos = _dv(data, pos)
        count = data[pos]
        if count < 0x40:
            pos += 1
        else:
            count, pos = _dv(data, pos)
        b = data[pos]
        if b < 0x40:
            first_range, pos = b, pos + 1
        elif b < 0x80:
            first_range, pos = (b & 0x3F) << 8 | data[pos + 1], pos + 2
        else:
            first_range, pos = _dv(data, pos)
    except (IndexError, BufferReadError):  # past the end, or a long varint cut off
        raise _error("frame truncated", frame_type) from None
    smallest = largest - first_range
    if smallest < 0:
        raise _error("ACK range below packet number 0", frame_type)
    ranges: tuple[tuple[int, int], ...]
    if not count:
        ranges = ((smallest, largest),)  # one range: the common case, no list
    else:
        try:
            ranges, pos = _more_ranges(data, pos, frame_type, count, smallest, largest)
        except BufferReadError:
            raise _error("frame truncated", frame_type) from None
    if not frame_type & 1:
        return ranges, ack_delay, None, pos
    try:  # RFC 9000 §19.3.2: ECT(0), ECT(1), ECN-CE counts
        b = data[pos]
        if b < 0x40:
            ect0, pos = b, pos + 1
        elif b < 0x80:
            ect0, pos = (b & 0x3F) << 8 | data[pos + 1], pos + 2
        elif b < 0xC0:  # past 16383 ECT(0) packets: as the largest above
            ect0 = (b & 0x3F) << 24 | data[pos + 1] << 16 | data[pos + 2] << 8 | data[pos + 3]
            pos += 4
        else:
            ect0, pos = _dv(data, pos)
        ect1 = data[pos]
        if ect1 < 0x40:
            pos += 1
        else:
            ect1, pos = _dv(data, pos)
        ce = data[pos]
        if ce < 0x40:
            pos += 1
        else:
            ce, pos = _dv(data, pos)
    except (IndexError, BufferReadError):  # past the end, or a long varint cut off
        raise _error("frame truncated", frame_type) from None
    return ranges, ack_delay, (ect0, ect1, ce), pos


def _more_ranges(
    data: bytes, pos: int, frame_type: int, count: int, smallest: int, largest: int
) -> tuple[tuple[tuple[int, int], ...], int]:
    """The first range and ``count`` further Gap/ACK Range pairs (RFC 9000 §19.3.1),
    descending, and the position after them."""
    if count > (len(data) - pos) >> 1:
        # Each further range takes at least two bytes: reject before looping.
        raise _error("ACK range count exceeds frame", frame_type)
    more = [(smallest, largest)]
    append = more.append
    for _ in range(count):
        gap, pos = _dv(data, pos)
        length, pos = _dv(data, pos)
        largest = smallest - gap - 2  # RFC 9000 §19.3.1
        smallest = largest - length
        if smallest < 0:
            raise _error("ACK range below packet number 0", frame_type)
        append((smallest, largest))
    return tuple(more), pos


def _decode_reset_stream(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    stream_id, pos = _dv(data, pos)
    error_code, pos = _dv(data, pos)
    final_size, pos = _dv(data, pos)
    return ResetStreamFrame(stream_id, error_code, final_size), pos


def _decode_reset_stream_at(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    stream_id, pos = _dv(data, pos)
    error_code, pos = _dv(data, pos)
    final_size, pos = _dv(data, pos)
    reliable_size, pos = _dv(data, pos)
    if reliable_size > final_size:
        # draft-ietf-quic-reliable-stream-reset §4: FRAME_ENCODING_ERROR
        raise _error("RESET_STREAM_AT reliable size exceeds the final size", frame_type)
    return ResetStreamAtFrame(stream_id, error_code, final_size, reliable_size), pos


def _decode_stop_sending(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    stream_id, pos = _dv(data, pos)
    error_code, pos = _dv(data, pos)
    return StopSendingFrame(stream_id, error_code), pos


def _decode_crypto(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    offset, pos = _dv(data, pos)
    length, pos = _dv(data, pos)
    if offset + length > VARINT_MAX:
        raise _error("CRYPTO offset + length exceeds 2**62-1", frame_type)  # RFC 9000 §19.6
    payload, pos = _take(data, pos, length, frame_type)
    return CryptoFrame(offset, payload), pos


def _decode_new_token(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    length, pos = _dv(data, pos)
    if not length:
        raise _error("empty NEW_TOKEN", frame_type)  # RFC 9000 §19.7
    token, pos = _take(data, pos, length, frame_type)
    return NewTokenFrame(token), pos


#: 1-byte stream ID, 4-byte offset, 2-byte length: a STREAM frame in mid-stream
_BULK_STREAM_FIELDS = struct.Struct(">BIH").unpack_from
#: ``(stream ID, offset, length)`` read raw after a STREAM type byte, varint prefixes
#: included: :func:`decode_stream_fields`' bulk case, for a caller that inlines it
#: (prefixes 0b00, 0b10, 0b01 checked and the frame inside the payload, else it calls
#: :func:`decode_stream_fields`)
unpack_bulk_stream_fields = _BULK_STREAM_FIELDS


def _decode_stream(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    sid, offset, payload, fin, end = _stream_fields(data, pos, frame_type)
    return StreamFrame(sid, offset, payload, fin), end


def _stream_fields(data: bytes, pos: int, frame_type: int) -> tuple[int, int, bytes, bool, int]:
    """A STREAM frame's (stream ID, offset, data, fin, next position); ``pos`` is just
    past the type byte."""
    if frame_type & 0x06 == 0x06 and pos + 7 <= len(data):  # OFF and LEN
        sid, offset, length = _BULK_STREAM_FIELDS(data, pos)
        if sid < 0x40 and offset >> 30 == 2 and length >> 14 == 1:  # varint prefixes
            pos += 7
            end = pos + (length & 0x3FFF)
            if end > len(data):
                raise _error("frame truncated", frame_type)
            # offset + length < 2**30 + 2**14: within VARINT_MAX (RFC 9000 §19.8)
            return sid, offset & 0x3FFFFFFF, data[pos:end], bool(frame_type & 0x01), end
    stream_id, pos = _dv(data, pos)
    offset = 0
    if frame_type & 0x04:  # OFF
        offset, pos = _dv(data, pos)
    if frame_type & 0x02:  # LEN
        length, pos = _dv(data, pos)
        end = pos + length
        if end > len(data):
            raise _error("frame truncated", frame_type)
    else:
        end = len(data)
    if offset + (end - pos) > VARINT_MAX:
        raise _error("STREAM offset + length exceeds 2**62-1", frame_type)  # RFC 9000 §19.8
    return stream_id, offset, data[pos:end], bool(frame_type & 0x01), end


def _decode_max_data(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    value, pos = _dv(data, pos)
    return MaxDataFrame(value), pos


def _decode_max_stream_data(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    stream_id, pos = _dv(data, pos)
    value, pos = _dv(data, pos)
    return MaxStreamDataFrame(stream_id, value), pos


def _decode_max_streams(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    value, pos = _dv(data, pos)
    if value > MAX_STREAMS_LIMIT:
        raise _error("MAX_STREAMS exceeds 2**60", frame_type)  # RFC 9000 §19.11
    return MaxStreamsFrame(value, frame_type == 0x12), pos


def _decode_data_blocked(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    value, pos = _dv(data, pos)
    return DataBlockedFrame(value), pos


def _decode_stream_data_blocked(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    stream_id, pos = _dv(data, pos)
    value, pos = _dv(data, pos)
    return StreamDataBlockedFrame(stream_id, value), pos


def _decode_streams_blocked(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    value, pos = _dv(data, pos)
    if value > MAX_STREAMS_LIMIT:
        raise _error("STREAMS_BLOCKED exceeds 2**60", frame_type)  # RFC 9000 §19.14
    return StreamsBlockedFrame(value, frame_type == 0x16), pos


def _decode_new_connection_id(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    # RFC 9000 §19.15
    sequence, pos = _dv(data, pos)
    retire_prior_to, pos = _dv(data, pos)
    if retire_prior_to > sequence:
        raise _error("Retire Prior To exceeds Sequence Number", frame_type)
    if pos >= len(data):
        raise _error("frame truncated", frame_type)
    cid_len = data[pos]
    if not 1 <= cid_len <= 20:
        raise _error("connection ID length outside 1..20", frame_type)
    cid, pos = _take(data, pos + 1, cid_len, frame_type)
    token, pos = _take(data, pos, 16, frame_type)
    return NewConnectionIdFrame(sequence, retire_prior_to, cid, token), pos


def _decode_retire_connection_id(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    sequence, pos = _dv(data, pos)
    return RetireConnectionIdFrame(sequence), pos


def _decode_path_challenge(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    payload, pos = _take(data, pos, 8, frame_type)
    return PathChallengeFrame(payload), pos


def _decode_path_response(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    payload, pos = _take(data, pos, 8, frame_type)
    return PathResponseFrame(payload), pos


def _decode_connection_close(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    # RFC 9000 §19.19
    error_code, pos = _dv(data, pos)
    if frame_type == 0x1C:
        error_frame_type, pos = _dv(data, pos)
    length, pos = _dv(data, pos)
    reason, pos = _take(data, pos, length, frame_type)
    if frame_type == 0x1C:
        return ConnectionCloseFrame(error_code, error_frame_type, reason), pos
    return ApplicationCloseFrame(error_code, reason), pos


def _decode_datagram(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    # RFC 9221 §4: LEN bit 0x01; without it the data runs to the end of the packet.
    if frame_type & 0x01:
        length, pos = _dv(data, pos)
        payload, pos = _take(data, pos, length, frame_type)
        return DatagramFrame(payload), pos
    return DatagramFrame(data[pos:]), len(data)


def _decode_immediate_ack(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    return _IMMEDIATE_ACK, pos  # draft-ietf-quic-ack-frequency §5


def _decode_ack_frequency(data: bytes, pos: int, frame_type: int) -> tuple[Frame, int]:
    """draft-ietf-quic-ack-frequency §4: four varints after the two-byte type."""
    seq, pos = _dv(data, pos)
    threshold, pos = _dv(data, pos)
    delay, pos = _dv(data, pos)
    reordering, pos = _dv(data, pos)
    return AckFrequencyFrame(seq, threshold, delay, reordering), pos


def _build_decoders() -> list[_Decoder | None]:
    table: list[_Decoder | None] = [None] * 0x40
    entries: tuple[tuple[range, _Decoder], ...] = (
        (range(0x00, 0x01), _decode_padding),
        (range(0x01, 0x02), _decode_ping),
        (range(0x02, 0x04), decode_ack),
        (range(0x04, 0x05), _decode_reset_stream),
        (range(0x05, 0x06), _decode_stop_sending),
        (range(0x06, 0x07), _decode_crypto),
        (range(0x07, 0x08), _decode_new_token),
        (range(0x08, 0x10), _decode_stream),
        (range(0x10, 0x11), _decode_max_data),
        (range(0x11, 0x12), _decode_max_stream_data),
        (range(0x12, 0x14), _decode_max_streams),
        (range(0x14, 0x15), _decode_data_blocked),
        (range(0x15, 0x16), _decode_stream_data_blocked),
        (range(0x16, 0x18), _decode_streams_blocked),
        (range(0x18, 0x19), _decode_new_connection_id),
        (range(0x19, 0x1A), _decode_retire_connection_id),
        (range(0x1A, 0x1B), _decode_path_challenge),
        (range(0x1B, 0x1C), _decode_path_response),
        (range(0x1C, 0x1E), _decode_connection_close),
        (range(0x1E, 0x1F), _decode_handshake_done),
        (range(0x24, 0x25), _decode_reset_stream_at),
        (range(0x30, 0x32), _decode_datagram),
        (range(0x1F, 0x20), _decode_immediate_ack),
    )
    for types, decoder in entries:
        for frame_type in types:
            table[frame_type] = decoder
    return table


_DECODERS = _build_decoders()


#: Frame types encoded on more than one byte (extensions), by type.
_LONG_DECODERS: dict[int, _Decoder] = {0xAF: _decode_ack_frequency}


def _decode_long(data: bytes, pos: int) -> tuple[Frame, int]:
    """A frame whose type takes more than one byte (RFC 9000 §12.4: minimal only)."""
    try:
        frame_type, end = _dv(data, pos)
    except BufferReadError:
        raise _error("frame type truncated", 0) from None
    decoder = _LONG_DECODERS.get(frame_type)
    if decoder is None or varint_size(frame_type) < end - pos:
        raise _long_type_error(data, pos)
    try:
        return decoder(data, end, frame_type)
    except BufferReadError:
        raise _error("frame truncated", frame_type) from None


def _peek_type(data: bytes, pos: int) -> int:
    """The frame type at ``pos`` (-1 if truncated: :func:`decode_frame` reports it)."""
    try:
        return _dv(data, pos)[0]
    except BufferReadError:
        return -1


def _long_type_error(data: bytes, pos: int) -> QuicProtocolError:
    """Error for a frame type encoded on more than one byte (never a known type)."""
    try:
        frame_type, end = _dv(data, pos)
    except BufferReadError:
        return _error("frame type truncated", 0)
    if varint_size(frame_type) < end - pos:
        # RFC 9000 §12.4: MAY be treated as PROTOCOL_VIOLATION.
        return QuicProtocolError(
            TransportErrorCode.PROTOCOL_VIOLATION, "frame type not minimally encoded", frame_type
        )
    return _error("unknown frame type", frame_type)  # RFC 9000 §12.4


def decode_frame(data: bytes, pos: int) -> tuple[Frame, int]:
    """Decode the frame at ``data[pos]``; return ``(frame, next_pos)``."""
    try:
        frame_type = data[pos]
    except IndexError:
        raise _error("no frame", 0) from None
    decoder = _DECODERS[frame_type] if frame_type < 0x40 else None
    if decoder is None:
        if frame_type < 0x40:
            raise _error("unknown frame type", frame_type)  # RFC 9000 §12.4
        return _decode_long(data, pos)
    try:
        return decoder(data, pos + 1, frame_type)
    except BufferReadError:
        raise _error("frame truncated", frame_type) from None


def decode_stream_frame(data: bytes, pos: int) -> tuple[StreamFrame, int]:
    """:func:`decode_frame` for a frame whose type byte ``data[pos]`` is known to be
    STREAM (0x08-0x0f, RFC 9000 §19.8): the receive path's common case, one call."""
    try:
        frame, end = _decode_stream(data, pos + 1, data[pos])
    except BufferReadError:
        raise _error("frame truncated", data[pos]) from None
    return frame, end  # type: ignore[return-value]  # _decode_stream makes StreamFrames


def decode_stream_fields(data: bytes, pos: int) -> tuple[int, int, bytes, bool, int]:
    """:func:`decode_stream_frame` without the frame object: ``(stream_id, offset,
    data, fin, next_pos)`` of the STREAM frame at ``data[pos]`` (type byte 0x08-0x0f,
    RFC 9000 §19.8) — the receive path's bulk case, one call and one tuple per frame.
    Same checks and errors as :func:`decode_frame`."""
    frame_type = data[pos]
    if frame_type & 0x06 == 0x06 and pos + 8 <= len(data):  # OFF and LEN
        sid, offset, length = _BULK_STREAM_FIELDS(data, pos + 1)
        if sid < 0x40 and offset >> 30 == 2 and length >> 14 == 1:  # varint prefixes
            start = pos + 8
            end = start + (length & 0x3FFF)
            if end > len(data):
                raise _error("frame truncated", frame_type)
            # offset + length < 2**30 + 2**14: within VARINT_MAX (RFC 9000 §19.8)
            return sid, offset & 0x3FFFFFFF, data[start:end], bool(frame_type & 0x01), end
    try:
        return _stream_fields(data, pos + 1, frame_type)
    except BufferReadError:
        raise _error("frame truncated", frame_type) from None


def decode_datagram_frame(data: bytes, pos: int) -> tuple[bytes, int]:
    """:func:`decode_frame` for a frame whose type byte ``data[pos]`` is known to be
    DATAGRAM with a Length field (0x31, RFC 9221 §4): its data and the next position,
    in one call and without a frame object (the datagram receive path)."""
    # one- and two-byte Lengths (RFC 9000 §16) read inline, longer ones by decode_varint;
    # _take() inline: one frame per datagram received (issue 10)
    try:
        b = data[pos + 1]
        if b < 0x40:
            length, start = b, pos + 2
        elif b < 0x80:
            length, start = (b & 0x3F) << 8 | data[pos + 2], pos + 3
        else:
            length, start = _dv(data, pos + 1)
    except (IndexError, BufferReadError):
        raise _error("frame truncated", 0x31) from None
    end = start + length
    if end > len(data):
        raise _error("frame truncated", 0x31)
    return data[start:end], end


def decode_frames(payload: bytes, packet_type: PacketType | None = None) -> list[Frame]:
    """Decode a whole packet payload.

    With ``packet_type``, each frame is checked against RFC 9000 §12.4 Table 3
    (PROTOCOL_VIOLATION if not allowed). An empty payload is a PROTOCOL_VIOLATION
    (§12.4: a packet must contain at least one frame).
    """
    end = len(payload)
    if not end:
        raise QuicProtocolError(TransportErrorCode.PROTOCOL_VIOLATION, "packet without frames")
    frames: list[Frame] = []
    append = frames.append
    pos = 0
    while pos < end:
        if packet_type is not None:
            wire_type = payload[pos]
            if wire_type >= 0x40:  # a multi-byte type (extension frames)
                wire_type = _peek_type(payload, pos)
            info = FRAME_INFO.get(wire_type)
            if info is not None and packet_type not in info.packet_types:
                raise QuicProtocolError(
                    TransportErrorCode.PROTOCOL_VIOLATION,
                    f"{info.name} not allowed in {packet_type.name} packet",
                    wire_type,
                )
        frame, pos = decode_frame(payload, pos)
        append(frame)
    return frames
