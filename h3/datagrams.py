"""HTTP/3 Datagrams (RFC 9297 §2.1): the Quarter Stream ID codec.

Theory of operation
-------------------
The payload of a QUIC DATAGRAM frame, when used by HTTP/3, is
``Quarter Stream ID (i), HTTP Datagram Payload (..)``. The Quarter Stream ID is the
ID of the client-initiated bidirectional stream the datagram belongs to, divided by
four; its largest legal value is 2**60 - 1. A datagram too short to hold the Quarter
Stream ID, or with a larger value, is a connection error of type H3_DATAGRAM_ERROR.

Sizes (RFC 9297 §2.1, RFC 9221 §5): an HTTP datagram must fit one QUIC DATAGRAM frame,
so the largest payload for a stream is the QUIC connection's current
``max_datagram_payload`` less its Quarter Stream ID (:func:`max_h3_datagram_payload`).
Like the QUIC figure it follows the path MTU up and down (docs/datagrams.md).

This is a hot path (every WebTransport datagram goes through it): the one-byte
Quarter Stream ID case is handled inline, and the send side can write the header
alone (:func:`encode_h3_datagram_header`) in front of a payload it already holds.
"""

from __future__ import annotations

from h3.errors import H3ConnectionError, H3ErrorCode
from quic.buffer import decode_varint, encode_varint, varint_size
from quic.errors import BufferReadError

__all__ = [
    "MAX_QUARTER_STREAM_ID",
    "QUARTER_PREFIX",
    "decode_h3_datagram",
    "encode_h3_datagram",
    "encode_h3_datagram_header",
    "max_h3_datagram_payload",
]

MAX_QUARTER_STREAM_ID = (1 << 60) - 1  # RFC 9297 §2.1
#: The one-byte Quarter Stream ID prefixes (varints, RFC 9000 §16), by quarter stream
#: ID: that of stream ``sid`` (``sid < 0x100``, ``sid & 3 == 0``) is ``[sid >> 2]``.
QUARTER_PREFIX = tuple(bytes((quarter,)) for quarter in range(0x40))
_QUARTER = QUARTER_PREFIX


def encode_h3_datagram_header(stream_id: int) -> bytes:
    """The Quarter Stream ID prefix for a datagram of request stream ``stream_id``."""
    if stream_id & 3 or not 0 <= stream_id <= 4 * MAX_QUARTER_STREAM_ID:
        raise ValueError(f"not a client-initiated bidirectional stream ID: {stream_id}")
    return encode_varint(stream_id >> 2)


def max_h3_datagram_payload(quic_max_payload: int, stream_id: int) -> int:
    """Largest HTTP datagram payload for ``stream_id`` when the QUIC connection takes
    DATAGRAM payloads up to ``quic_max_payload`` (0: none fits)."""
    room = quic_max_payload - varint_size(stream_id >> 2)
    return room if room > 0 else 0


def encode_h3_datagram(stream_id: int, payload: bytes | bytearray | memoryview) -> bytes:
    """The QUIC DATAGRAM payload carrying ``payload`` for stream ``stream_id`` (§2.1)."""
    if 0 <= stream_id < 0x100 and not stream_id & 3:  # a one-byte Quarter Stream ID
        return _QUARTER[stream_id >> 2] + bytes(payload)
    return encode_h3_datagram_header(stream_id) + bytes(payload)


def decode_h3_datagram(data: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """``(stream_id, payload)`` of an HTTP/3 datagram (RFC 9297 §2.1)."""
    if data and data[0] < 0x40:  # one-byte Quarter Stream ID
        return data[0] << 2, bytes(data[1:])
    try:
        quarter, pos = decode_varint(data, 0)
    except BufferReadError:
        raise H3ConnectionError(
            H3ErrorCode.H3_DATAGRAM_ERROR, "datagram too short for its Quarter Stream ID"
        ) from None
    if quarter > MAX_QUARTER_STREAM_ID:
        raise H3ConnectionError(
            H3ErrorCode.H3_DATAGRAM_ERROR, f"Quarter Stream ID {quarter} exceeds 2**60-1"
        )
    return quarter << 2, bytes(data[pos:])
