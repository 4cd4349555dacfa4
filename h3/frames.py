"""HTTP/3 frames (RFC 9114 §7): frame types, an incremental reader and the encoders.

Theory of operation
-------------------
An HTTP/3 frame is ``Type (i), Length (i), Payload (..)`` (§7.1). Frames may span
QUIC packets, so a :class:`FrameReader` (one per stream) takes the stream bytes in
whatever chunks QUIC delivers (:meth:`FrameReader.feed`) and returns a list of
``(frame_type, payload)`` items:

- **DATA** payloads are *streamed*: each chunk of DATA payload that arrives is returned
  as soon as it arrives, as its own ``(FrameType.DATA, chunk)`` item; a DATA frame is
  never buffered whole (large bodies, capsules). A DATA frame produces at least one
  item (an empty one if its length is zero). Frame boundaries inside DATA carry no
  meaning (RFC 9297 §3.1: the data stream is the concatenation of DATA payloads).
- Frames whose semantics we know (HEADERS, CANCEL_PUSH, SETTINGS, PUSH_PROMISE,
  GOAWAY, MAX_PUSH_ID, plus any ``extra_types`` given by an extension) are buffered
  and returned whole, once complete. Their length is capped by ``max_frame_size``
  (H3_EXCESSIVE_LOAD, §10.5) and, for the single-varint frames, by the 8 bytes a
  varint can take (H3_FRAME_ERROR, §7.1: the payload must hold exactly its fields).
- Every other type is *unknown* — reserved ``0x1f * N + 0x21`` types (§7.2.8) and
  unknown extensions (§9). It is returned once as ``(type, b"")`` as soon as its
  header is read (so the logic can, e.g., reject a non-SETTINGS first frame) and its
  payload is then discarded as it arrives, without buffering.
- The HTTP/2-only types 0x02, 0x06, 0x08, 0x09 are rejected as soon as their header
  is read: H3_FRAME_UNEXPECTED on every stream (§7.2.8).
- With ``webtransport=True`` the reader also understands the WebTransport bidi signal
  (draft-ietf-webtrans-http3-16 §4.3, -02 §4.2): if the first "frame type" on the
  stream is 0x41 the next varint is the session ID (exposed as
  :attr:`FrameReader.session_id`), not a length, and everything after it is stream
  body, returned as ``(FrameType.WEBTRANSPORT_STREAM, chunk)`` items (the first one,
  possibly empty, as soon as the session ID is known). 0x41 anywhere else is
  H3_FRAME_ERROR. With ``webtransport=False`` 0x41 is just an unknown type.

``feed(data, fin=True)`` says the stream ended cleanly after ``data``; a frame cut
short by the end of the stream is H3_FRAME_ERROR (§7.1). Errors are
:class:`~h3.errors.H3ConnectionError`. Rules about *which* frame may appear on
*which* stream (§7.2, the table in §7) belong to the logic, not to this codec.

Encoders build whole frames (:func:`encode_frame` and the typed helpers) or just the
DATA frame header (:func:`encode_data_frame_header`) to write next to a payload the
caller already holds. They raise :class:`ValueError` on bad arguments (a programming
error, never network input).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from enum import IntEnum

from h3.errors import (
    H3ConnectionError,
    H3ErrorCode,
    is_reserved_codepoint,
    random_reserved_codepoint,
)
from quic.buffer import VARINT_MAX, decode_varint, encode_varint
from quic.errors import BufferReadError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "HTTP2_RESERVED_FRAME_TYPES",
    "FrameReader",
    "FrameType",
    "decode_cancel_push",
    "decode_goaway",
    "decode_max_push_id",
    "decode_push_promise",
    "encode_cancel_push_frame",
    "encode_data_frame",
    "encode_data_frame_header",
    "encode_frame",
    "encode_goaway_frame",
    "encode_headers_frame",
    "encode_max_push_id_frame",
    "encode_push_promise_frame",
    "grease_frame",
    "is_reserved_frame_type",
]


class FrameType(IntEnum):
    """HTTP/3 frame types (RFC 9114 §7.2, §11.2.1) and the WebTransport signal."""

    DATA = 0x00
    HEADERS = 0x01
    H2_PRIORITY = 0x02  # reserved: HTTP/2 only (§7.2.8)
    CANCEL_PUSH = 0x03
    SETTINGS = 0x04
    PUSH_PROMISE = 0x05
    H2_PING = 0x06  # reserved: HTTP/2 only
    GOAWAY = 0x07
    H2_WINDOW_UPDATE = 0x08  # reserved: HTTP/2 only
    H2_CONTINUATION = 0x09  # reserved: HTTP/2 only
    MAX_PUSH_ID = 0x0D
    # draft-ietf-webtrans-http3-16 §4.3 (WT_STREAM) / -02 §4.2 (WEBTRANSPORT_STREAM):
    # a signal value with no Length field, valid only as the first bytes of a bidi stream.
    WEBTRANSPORT_STREAM = 0x41


# RFC 9114 §7.2.8: receipt of these is a connection error of type H3_FRAME_UNEXPECTED.
HTTP2_RESERVED_FRAME_TYPES = frozenset(
    {
        FrameType.H2_PRIORITY,
        FrameType.H2_PING,
        FrameType.H2_WINDOW_UPDATE,
        FrameType.H2_CONTINUATION,
    }
)

# Frames that the reader buffers and returns whole (DATA is streamed, not listed).
_KNOWN_TYPES = frozenset(
    {
        FrameType.HEADERS,
        FrameType.CANCEL_PUSH,
        FrameType.SETTINGS,
        FrameType.PUSH_PROMISE,
        FrameType.GOAWAY,
        FrameType.MAX_PUSH_ID,
    }
)

# Frames whose payload is one varint (§7.2.3, §7.2.6, §7.2.7): at most 8 bytes.
_MAX_PAYLOAD_BY_TYPE: dict[int, int] = {
    FrameType.CANCEL_PUSH: 8,
    FrameType.GOAWAY: 8,
    FrameType.MAX_PUSH_ID: 8,
}

DEFAULT_MAX_FRAME_SIZE = 1 << 18  # largest buffered (non-DATA) frame payload accepted

_DATA = 0x00
_WT_SIGNAL = 0x41

# reader states
_HEADER = 0  # reading Type and Length
_DATA_PAYLOAD = 1  # streaming a DATA payload
_BUFFERED = 2  # collecting a known frame's payload
_SKIP = 3  # discarding an unknown frame's payload
_WT_BODY = 4  # after the WebTransport signal: the rest of the stream is body

_Item = tuple[int, bytes]


def is_reserved_frame_type(frame_type: int) -> bool:
    """True for the reserved frame types ``0x1f * N + 0x21`` (RFC 9114 §7.2.8)."""
    return is_reserved_codepoint(frame_type)


class FrameReader:
    """Incremental HTTP/3 frame parser for one stream; see the module docstring.

    ``max_frame_size`` caps the payload of buffered (non-DATA, known) frames;
    ``extra_types`` adds frame types (from extensions) to buffer and return whole
    instead of skipping; ``webtransport`` enables the 0x41 bidi stream signal.
    """

    __slots__ = (
        "_buffered_types",
        "_max_frame_size",
        "_payload",
        "_pending",
        "_remaining",
        "_started",
        "_state",
        "_type",
        "_webtransport",
        "session_id",
    )

    def __init__(
        self,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        *,
        extra_types: Iterable[int] = (),
        webtransport: bool = False,
    ) -> None:
        self._max_frame_size = max_frame_size
        # the shared set unless there are extra types (one frozenset less per stream)
        extra = frozenset(extra_types)
        self._buffered_types = _KNOWN_TYPES | extra if extra - _KNOWN_TYPES else _KNOWN_TYPES
        self._webtransport = webtransport
        self._state = _HEADER
        self._pending = b""  # incomplete frame header bytes (< 16)
        self._payload = bytearray()  # partial payload of a buffered frame
        self._type = 0
        self._remaining = 0  # payload bytes still to come in the current frame
        self._started = False  # a frame header has been read on this stream
        #: WebTransport session ID once the 0x41 signal was read, else None
        self.session_id: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes held inside the reader (a partial header or partial known frame)."""
        return len(self._pending) + len(self._payload)

    @property
    def remaining(self) -> int:
        """Payload bytes still expected for the current frame (0 between frames and in
        WebTransport body mode)."""
        return self._remaining

    @property
    def at_frame_boundary(self) -> bool:
        """True if the stream could end cleanly here (no frame is partly read)."""
        return self._state == _WT_BODY or (self._state == _HEADER and not self._pending)

    def feed(self, data: bytes | bytearray | memoryview, fin: bool = False) -> list[_Item]:
        """Consume ``data``; return the frames (or DATA/body chunks) it completes.

        ``fin`` marks a clean end of stream after ``data``: a truncated frame then
        raises H3_FRAME_ERROR (RFC 9114 §7.1).
        """
        if type(data) is not bytes:
            data = bytes(data)
        if self._pending:
            data = self._pending + data
            self._pending = b""
        out: list[_Item] = []
        append = out.append
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state == _HEADER:
                try:
                    frame_type, p = decode_varint(data, pos)
                    length, p = decode_varint(data, p)
                except BufferReadError:
                    self._pending = data[pos:]
                    break
                pos = self._start_frame(frame_type, length, data, p, append)
            elif state == _DATA_PAYLOAD:
                n = min(self._remaining, end - pos)
                append((_DATA, data if n == end else data[pos : pos + n]))
                pos += n
                self._remaining -= n
                if not self._remaining:
                    self._state = _HEADER
            elif state == _BUFFERED:
                n = min(self._remaining, end - pos)
                self._payload += memoryview(data)[pos : pos + n]
                pos += n
                self._remaining -= n
                if not self._remaining:
                    append((self._type, bytes(self._payload)))
                    self._payload = bytearray()
                    self._state = _HEADER
            elif state == _SKIP:
                n = min(self._remaining, end - pos)
                pos += n
                self._remaining -= n
                if not self._remaining:
                    self._state = _HEADER
            else:  # _WT_BODY
                append((_WT_SIGNAL, data if pos == 0 else data[pos:]))
                pos = end
        if fin and not self.at_frame_boundary:
            raise H3ConnectionError(
                H3ErrorCode.H3_FRAME_ERROR, "stream ended inside a frame (RFC 9114 §7.1)"
            )
        return out

    def _start_frame(
        self,
        frame_type: int,
        length: int,
        data: bytes,
        pos: int,
        append: Callable[[_Item], None],
    ) -> int:
        """Act on a frame header read from ``data``; return the position after what was
        consumed of the payload."""
        first = not self._started
        self._started = True
        end = len(data)
        if frame_type == _DATA:
            if not length:
                append((_DATA, b""))
                return pos
            self._state = _DATA_PAYLOAD
            self._remaining = length
            return pos
        if frame_type in self._buffered_types:
            limit = _MAX_PAYLOAD_BY_TYPE.get(frame_type)
            if limit is not None and length > limit:
                raise H3ConnectionError(
                    H3ErrorCode.H3_FRAME_ERROR,
                    f"frame 0x{frame_type:x} payload of {length} bytes (RFC 9114 §7.1)",
                )
            if length > self._max_frame_size:
                raise H3ConnectionError(
                    H3ErrorCode.H3_EXCESSIVE_LOAD,
                    f"frame 0x{frame_type:x} of {length} bytes exceeds the limit "
                    f"of {self._max_frame_size} (RFC 9114 §10.5)",
                )
            if end - pos >= length:
                append((frame_type, data[pos : pos + length]))
                return pos + length
            self._type = frame_type
            self._payload = bytearray(memoryview(data)[pos:])
            self._remaining = length - (end - pos)
            self._state = _BUFFERED
            return end
        if frame_type in HTTP2_RESERVED_FRAME_TYPES:
            raise H3ConnectionError(
                H3ErrorCode.H3_FRAME_UNEXPECTED,
                f"HTTP/2 frame type 0x{frame_type:x} (RFC 9114 §7.2.8)",
            )
        if frame_type == _WT_SIGNAL and self._webtransport:
            if not first:
                raise H3ConnectionError(
                    H3ErrorCode.H3_FRAME_ERROR,
                    "WebTransport stream signal after the start of a stream "
                    "(draft-ietf-webtrans-http3 §4.3)",
                )
            self.session_id = length  # no Length field: this varint is the session ID
            self._state = _WT_BODY
            append((_WT_SIGNAL, data[pos:]))
            return end
        # unknown or reserved type (§7.2.8, §9): report, then discard the payload
        append((frame_type, b""))
        if length:
            self._state = _SKIP
            self._remaining = length
        return pos


# -- encoders ------------------------------------------------------------------------


def encode_frame(frame_type: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """A whole frame: ``Type (i), Length (i), Payload`` (RFC 9114 §7.1)."""
    return encode_varint(frame_type) + encode_varint(len(payload)) + bytes(payload)


def encode_data_frame_header(length: int) -> bytes:
    """The header of a DATA frame of ``length`` payload bytes (RFC 9114 §7.2.1)."""
    if length < 0x40:
        if length < 0:
            raise ValueError(f"negative DATA length: {length}")
        return bytes((0, length))
    return b"\x00" + encode_varint(length)


def encode_data_frame(data: bytes | bytearray | memoryview) -> bytes:
    """A whole DATA frame (RFC 9114 §7.2.1)."""
    return encode_data_frame_header(len(data)) + bytes(data)


def encode_headers_frame(field_section: bytes | bytearray | memoryview) -> bytes:
    """A HEADERS frame around a QPACK-encoded field section (RFC 9114 §7.2.2)."""
    return encode_frame(FrameType.HEADERS, field_section)


def _id_frame(frame_type: int, value: int) -> bytes:
    if not 0 <= value <= VARINT_MAX:
        raise ValueError(f"ID out of varint range: {value}")
    body = encode_varint(value)
    return encode_varint(frame_type) + bytes((len(body),)) + body


def encode_cancel_push_frame(push_id: int) -> bytes:
    """A CANCEL_PUSH frame (RFC 9114 §7.2.3)."""
    return _id_frame(FrameType.CANCEL_PUSH, push_id)


def encode_goaway_frame(stream_or_push_id: int) -> bytes:
    """A GOAWAY frame (RFC 9114 §7.2.6)."""
    return _id_frame(FrameType.GOAWAY, stream_or_push_id)


def encode_max_push_id_frame(push_id: int) -> bytes:
    """A MAX_PUSH_ID frame (RFC 9114 §7.2.7)."""
    return _id_frame(FrameType.MAX_PUSH_ID, push_id)


def encode_push_promise_frame(push_id: int, field_section: bytes | bytearray | memoryview) -> bytes:
    """A PUSH_PROMISE frame: push ID then the encoded field section (RFC 9114 §7.2.5)."""
    if not 0 <= push_id <= VARINT_MAX:
        raise ValueError(f"push ID out of varint range: {push_id}")
    return encode_frame(FrameType.PUSH_PROMISE, encode_varint(push_id) + bytes(field_section))


# GREASE values need no secrecy: one generator per module, not one (seeded from
# os.urandom, ~16 us) per call, i.e. per connection (issue 10, handshake cost)
_RNG = random.Random()


def grease_frame(rng: random.Random | None = None, max_payload: int = 16) -> bytes:
    """A reserved-type frame with a random payload of 0..``max_payload`` bytes (§7.2.8)."""
    rng = rng or _RNG
    payload = rng.randbytes(rng.randint(0, max_payload))
    return encode_frame(random_reserved_codepoint(rng), payload)


# -- payload decoders ----------------------------------------------------------------


def _decode_id_payload(payload: bytes | bytearray | memoryview, name: str) -> int:
    """A payload made of exactly one varint; anything else is H3_FRAME_ERROR (§7.1)."""
    try:
        value, pos = decode_varint(payload, 0)
    except BufferReadError:
        raise H3ConnectionError(H3ErrorCode.H3_FRAME_ERROR, f"{name}: truncated") from None
    if pos != len(payload):
        raise H3ConnectionError(
            H3ErrorCode.H3_FRAME_ERROR, f"{name}: {len(payload) - pos} trailing bytes"
        )
    return value


def decode_cancel_push(payload: bytes | bytearray | memoryview) -> int:
    """The push ID of a CANCEL_PUSH payload (RFC 9114 §7.2.3)."""
    return _decode_id_payload(payload, "CANCEL_PUSH")


def decode_goaway(payload: bytes | bytearray | memoryview) -> int:
    """The stream ID or push ID of a GOAWAY payload (RFC 9114 §7.2.6)."""
    return _decode_id_payload(payload, "GOAWAY")


def decode_max_push_id(payload: bytes | bytearray | memoryview) -> int:
    """The push ID of a MAX_PUSH_ID payload (RFC 9114 §7.2.7)."""
    return _decode_id_payload(payload, "MAX_PUSH_ID")


def decode_push_promise(payload: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """``(push_id, encoded_field_section)`` of a PUSH_PROMISE payload (RFC 9114 §7.2.5)."""
    try:
        push_id, pos = decode_varint(payload, 0)
    except BufferReadError:
        raise H3ConnectionError(
            H3ErrorCode.H3_FRAME_ERROR, "PUSH_PROMISE: truncated push ID"
        ) from None
    return push_id, bytes(payload[pos:])
