"""HTTP/3 stream types and stream headers (RFC 9114 §6.2; WebTransport drafts).

Theory of operation
-------------------
A unidirectional stream starts with a ``Stream Type (i)`` (RFC 9114 §6.2). Two types
carry a second varint in their header: a push stream is followed by its push ID
(§6.2.2) and a WebTransport stream (type 0x54, draft-ietf-webtrans-http3-16 §4.2)
by its session ID. :class:`UniStreamHeaderReader` reads this header incrementally
(it may arrive split across STREAM frames) and hands back what follows it.
Unknown and reserved (``0x1f * N + 0x21``, §6.2.3) types end the header right after
the type; the logic then aborts reading or discards the rest (§6.2).

Bidirectional streams carry HTTP/3 frames, except WebTransport streams, which start
with the signal value 0x41 (``FrameType.WEBTRANSPORT_STREAM``) and a session ID; the
:class:`~h3.frames.FrameReader` recognises that signal (``webtransport=True``),
:func:`encode_webtransport_bidi_header` writes it, and
:func:`read_webtransport_bidi_header` reads it whole from a stream's first bytes, the
usual case, so that such a stream needs no frame reader (issue 10: one per stream of a
burst).

A stream that ends before its header is complete is tolerated (§6.2: "A receiver
MUST tolerate unidirectional streams being closed or reset prior to the reception of
the unidirectional stream header"), so this reader raises no protocol error at all.
"""

from __future__ import annotations

import random
from enum import IntEnum
from typing import NamedTuple

from h3.errors import is_reserved_codepoint, random_reserved_codepoint
from h3.frames import FrameType
from quic.buffer import VARINT_MAX, decode_varint, encode_varint
from quic.errors import BufferReadError

__all__ = [
    "STREAM_TYPES_WITH_ID",
    "WEBTRANSPORT_STREAM_SIGNAL",
    "StreamType",
    "UniStreamHeader",
    "UniStreamHeaderReader",
    "encode_uni_stream_header",
    "encode_webtransport_bidi_header",
    "grease_stream_type",
    "is_reserved_stream_type",
    "read_webtransport_bidi_header",
]


class StreamType(IntEnum):
    """Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2, WebTransport)."""

    CONTROL = 0x00  # RFC 9114 §6.2.1
    PUSH = 0x01  # RFC 9114 §6.2.2
    QPACK_ENCODER = 0x02  # RFC 9204 §4.2
    QPACK_DECODER = 0x03  # RFC 9204 §4.2
    WEBTRANSPORT_UNI = 0x54  # draft-ietf-webtrans-http3-02 §4.1 / -16 §4.2


#: Signal value that opens a bidirectional WebTransport stream (draft-16 §4.3).
WEBTRANSPORT_STREAM_SIGNAL = FrameType.WEBTRANSPORT_STREAM

#: Stream types whose header carries a second varint (push ID / session ID).
STREAM_TYPES_WITH_ID = frozenset({StreamType.PUSH, StreamType.WEBTRANSPORT_UNI})


def is_reserved_stream_type(stream_type: int) -> bool:
    """True for the reserved stream types ``0x1f * N + 0x21`` (RFC 9114 §6.2.3)."""
    return is_reserved_codepoint(stream_type)


def grease_stream_type(rng: random.Random | None = None) -> int:
    """A random reserved stream type (RFC 9114 §6.2.3)."""
    return random_reserved_codepoint(rng)


def encode_uni_stream_header(stream_type: int, header_id: int | None = None) -> bytes:
    """The header of a unidirectional stream; ``header_id`` is the push ID of a push
    stream or the session ID of a WebTransport stream, and only those."""
    if header_id is None:
        if stream_type in STREAM_TYPES_WITH_ID:
            raise ValueError(f"stream type 0x{stream_type:x} needs an ID")
        return encode_varint(stream_type)
    if stream_type not in STREAM_TYPES_WITH_ID:
        raise ValueError(f"stream type 0x{stream_type:x} takes no ID")
    if not 0 <= header_id <= VARINT_MAX:
        raise ValueError(f"ID out of varint range: {header_id}")
    return encode_varint(stream_type) + encode_varint(header_id)


def encode_webtransport_bidi_header(session_id: int) -> bytes:
    """Signal value 0x41 and the session ID that open a bidi WebTransport stream."""
    if not 0 <= session_id <= VARINT_MAX:
        raise ValueError(f"session ID out of varint range: {session_id}")
    return encode_varint(WEBTRANSPORT_STREAM_SIGNAL) + encode_varint(session_id)


_WT_BIDI_SIGNAL = encode_varint(WEBTRANSPORT_STREAM_SIGNAL)  # b"\x40\x41"


def read_webtransport_bidi_header(data: bytes) -> tuple[int, bytes] | None:
    """``(session ID, the bytes after the header)`` when ``data``, the first bytes of a
    bidirectional stream, start with a whole WebTransport stream header whose signal
    has its usual two-byte encoding; else None (a header split across frames, another
    encoding of 0x41, or HTTP/3 frames: the stream is read by a FrameReader)."""
    if data[:2] != _WT_BIDI_SIGNAL:
        return None
    try:
        session_id, pos = decode_varint(data, 2)
    except BufferReadError:
        return None
    return session_id, data[pos:]


class UniStreamHeader(NamedTuple):
    """A parsed unidirectional stream header and the stream bytes that followed it."""

    stream_type: int
    header_id: int | None  # push ID (PUSH) or session ID (WEBTRANSPORT_UNI), else None
    rest: bytes


class UniStreamHeaderReader:
    """Incremental reader of a unidirectional stream header.

    :meth:`feed` returns ``None`` until the header is complete, then the
    :class:`UniStreamHeader` (once). ``types_with_id`` lists the stream types whose
    header carries a second varint; pass a smaller set when, e.g., WebTransport is not
    enabled, so that 0x54 is treated as an unknown type.
    """

    __slots__ = ("_done", "_pending", "_types_with_id")

    def __init__(self, types_with_id: frozenset[int] = STREAM_TYPES_WITH_ID) -> None:
        self._types_with_id = types_with_id
        self._pending = b""
        self._done = False

    @property
    def buffered(self) -> int:
        """Header bytes received so far but not yet parsed."""
        return len(self._pending)

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, data: bytes | bytearray | memoryview) -> UniStreamHeader | None:
        if self._done:
            raise RuntimeError("stream header already read")
        buf = self._pending + bytes(data)
        try:
            stream_type, pos = decode_varint(buf, 0)
            header_id: int | None = None
            if stream_type in self._types_with_id:
                header_id, pos = decode_varint(buf, pos)
        except BufferReadError:
            self._pending = buf
            return None
        self._pending = b""
        self._done = True
        return UniStreamHeader(stream_type, header_id, buf[pos:])
