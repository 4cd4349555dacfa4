"""The Capsule Protocol (RFC 9297 §3.2) and the WebTransport capsules.

Theory of operation
-------------------
On a stream that uses the Capsule Protocol, the *data stream* (the concatenation of
the DATA frame payloads, RFC 9297 §3.1) is a sequence of capsules
``Capsule Type (i), Capsule Length (i), Capsule Value (..)``. A :class:`CapsuleReader`
(one per stream) is fed the DATA payload chunks returned by
:class:`~h3.frames.FrameReader` and returns ``(capsule_type, value)`` for every
complete capsule, known or not: the caller drops the types it does not know
(§3.2: "MUST silently drop that Capsule and skip over it").

Limits and errors. Every error here makes the HTTP message malformed (§3.3, which
defers to RFC 9114 §4.1.2): a *stream* error of type H3_MESSAGE_ERROR, raised as
:class:`~h3.errors.H3StreamError`.

- A capsule cut short by a clean end of stream (``feed(..., fin=True)``) (§3.3).
- A capsule whose length cannot hold exactly its fields, checked as soon as the
  header is read for the capsules with bounded values: flow-control capsules (one
  varint, 1..8 bytes), WT_DRAIN_SESSION (empty) and WT_CLOSE_SESSION (4..1028 bytes).
- A capsule longer than ``max_capsule_size`` is not an error: its value is discarded
  as it arrives without buffering (§3.5 recommends exactly this for DATAGRAM capsules
  "known to be so large as to not be usable"; for unknown types the value is ignored
  anyway). :attr:`CapsuleReader.discarded` counts such capsules.

The typed codecs below encode whole capsules and decode capsule *values* (what the
reader returns). Rules that need session state (a WT_MAX_* value that does not
increase, limits above 2**60, flow control not negotiated) are the WebTransport
logic's; :data:`MAX_STREAMS_LIMIT` is provided for it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import IntEnum

from h3.errors import H3ErrorCode, H3StreamError
from quic.buffer import VARINT_MAX, decode_varint, encode_varint
from quic.errors import BufferReadError

__all__ = [
    "CLOSE_SESSION_MAX_REASON",
    "DEFAULT_MAX_CAPSULE_SIZE",
    "FLOW_CONTROL_CAPSULES",
    "MAX_STREAMS_LIMIT",
    "CapsuleReader",
    "CapsuleType",
    "decode_close_webtransport_session",
    "decode_varint_capsule",
    "encode_capsule",
    "encode_close_webtransport_session",
    "encode_datagram_capsule",
    "encode_drain_webtransport_session",
    "encode_varint_capsule",
    "grease_capsule",
    "is_reserved_capsule_type",
]


class CapsuleType(IntEnum):
    """Capsule types (RFC 9297 §5.4; draft-ietf-webtrans-http3-16 §9.6)."""

    DATAGRAM = 0x00  # RFC 9297 §3.5
    CLOSE_WEBTRANSPORT_SESSION = 0x2843  # draft-02 §5; draft-16 §6 names it WT_CLOSE_SESSION
    DRAIN_WEBTRANSPORT_SESSION = 0x78AE  # draft-16 §4.7 names it WT_DRAIN_SESSION
    WT_MAX_DATA = 0x190B4D3D  # draft-16 §5.6.4
    WT_MAX_STREAMS_BIDI = 0x190B4D3F  # draft-16 §5.6.2
    WT_MAX_STREAMS_UNI = 0x190B4D40
    WT_DATA_BLOCKED = 0x190B4D41  # draft-16 §5.6.5
    WT_STREAMS_BLOCKED_BIDI = 0x190B4D43  # draft-16 §5.6.3
    WT_STREAMS_BLOCKED_UNI = 0x190B4D44
    # draft-16 names (aliases of the members above)
    WT_CLOSE_SESSION = 0x2843
    WT_DRAIN_SESSION = 0x78AE


#: The capsules that carry a single varint (draft-16 §5.6).
FLOW_CONTROL_CAPSULES = frozenset(
    {
        CapsuleType.WT_MAX_DATA,
        CapsuleType.WT_MAX_STREAMS_BIDI,
        CapsuleType.WT_MAX_STREAMS_UNI,
        CapsuleType.WT_DATA_BLOCKED,
        CapsuleType.WT_STREAMS_BLOCKED_BIDI,
        CapsuleType.WT_STREAMS_BLOCKED_UNI,
    }
)

#: Largest Maximum Streams a WT_MAX_STREAMS / WT_STREAMS_BLOCKED may carry (draft-16 §5.6.2).
MAX_STREAMS_LIMIT = 1 << 60

#: Longest Application Error Message of WT_CLOSE_SESSION, in bytes (draft-16 §6).
CLOSE_SESSION_MAX_REASON = 1024

DEFAULT_MAX_CAPSULE_SIZE = 1 << 16

# RFC 9297 §5.4: reserved capsule types are 0x29 * N + 0x17.
_RESERVED_BASE = 0x17
_RESERVED_STEP = 0x29
_RESERVED_MAX_N = (VARINT_MAX - _RESERVED_BASE) // _RESERVED_STEP

# (min, max) value length for the capsules whose value has a bounded size.
_VALUE_BOUNDS: dict[int, tuple[int, int]] = {
    **{t: (1, 8) for t in FLOW_CONTROL_CAPSULES},
    CapsuleType.DRAIN_WEBTRANSPORT_SESSION: (0, 0),
    CapsuleType.CLOSE_WEBTRANSPORT_SESSION: (4, 4 + CLOSE_SESSION_MAX_REASON),
}

# reader states
_HEADER = 0
_VALUE = 1
_DISCARD = 2

_Item = tuple[int, bytes]


def is_reserved_capsule_type(capsule_type: int) -> bool:
    """True for the reserved capsule types ``0x29 * N + 0x17`` (RFC 9297 §5.4)."""
    return capsule_type >= _RESERVED_BASE and (capsule_type - _RESERVED_BASE) % _RESERVED_STEP == 0


def _malformed(reason: str) -> H3StreamError:
    return H3StreamError(H3ErrorCode.H3_MESSAGE_ERROR, reason)


class CapsuleReader:
    """Incremental capsule parser for one data stream; see the module docstring."""

    __slots__ = ("_max_size", "_pending", "_remaining", "_state", "_type", "_value", "discarded")

    def __init__(self, max_capsule_size: int = DEFAULT_MAX_CAPSULE_SIZE) -> None:
        self._max_size = max_capsule_size
        self._state = _HEADER
        self._pending = b""  # incomplete capsule header bytes (< 16)
        self._value = bytearray()  # partial value of the current capsule
        self._type = 0
        self._remaining = 0
        #: number of capsules skipped because they exceeded ``max_capsule_size``
        self.discarded = 0

    @property
    def buffered(self) -> int:
        """Bytes held inside the reader (a partial header or partial capsule value)."""
        return len(self._pending) + len(self._value)

    @property
    def remaining(self) -> int:
        """Value bytes still expected for the current capsule (0 between capsules)."""
        return self._remaining

    @property
    def at_capsule_boundary(self) -> bool:
        """True if the data stream could end cleanly here."""
        return self._state == _HEADER and not self._pending

    def feed(self, data: bytes | bytearray | memoryview, fin: bool = False) -> list[_Item]:
        """Consume ``data``; return the ``(type, value)`` of each capsule it completes.

        ``fin`` marks a clean end of the data stream after ``data``; a truncated
        capsule then raises H3_MESSAGE_ERROR (RFC 9297 §3.3).
        """
        if type(data) is not bytes:
            data = bytes(data)
        if self._pending:
            data = self._pending + data
            self._pending = b""
        out: list[_Item] = []
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state == _HEADER:
                try:
                    capsule_type, p = decode_varint(data, pos)
                    length, p = decode_varint(data, p)
                except BufferReadError:
                    self._pending = data[pos:]
                    break
                pos = self._start_capsule(capsule_type, length, data, p, out.append)
            else:
                n = min(self._remaining, end - pos)
                if state == _VALUE:
                    self._value += memoryview(data)[pos : pos + n]
                pos += n
                self._remaining -= n
                if not self._remaining:
                    if state == _VALUE:
                        out.append((self._type, bytes(self._value)))
                        self._value = bytearray()
                    self._state = _HEADER
        if fin and not self.at_capsule_boundary:
            raise _malformed("data stream ended inside a capsule (RFC 9297 §3.3)")
        return out

    def _start_capsule(
        self,
        capsule_type: int,
        length: int,
        data: bytes,
        pos: int,
        append: Callable[[_Item], None],
    ) -> int:
        bounds = _VALUE_BOUNDS.get(capsule_type)
        if bounds is not None and not bounds[0] <= length <= bounds[1]:
            raise _malformed(
                f"capsule 0x{capsule_type:x} with a {length}-byte value (RFC 9297 §3.3)"
            )
        end = len(data)
        if length > self._max_size:
            self.discarded += 1
            self._state = _DISCARD
            self._remaining = length
            return pos
        if end - pos >= length:
            append((capsule_type, data[pos : pos + length]))
            return pos + length
        self._type = capsule_type
        self._value = bytearray(memoryview(data)[pos:])
        self._remaining = length - (end - pos)
        self._state = _VALUE
        return end


# -- encoders and value decoders -------------------------------------------------------


def encode_capsule(capsule_type: int, value: bytes | bytearray | memoryview = b"") -> bytes:
    """A whole capsule: ``Type (i), Length (i), Value`` (RFC 9297 §3.2)."""
    return encode_varint(capsule_type) + encode_varint(len(value)) + bytes(value)


def encode_datagram_capsule(payload: bytes | bytearray | memoryview) -> bytes:
    """A DATAGRAM capsule carrying an HTTP Datagram payload (RFC 9297 §3.5)."""
    return encode_capsule(CapsuleType.DATAGRAM, payload)


# GREASE values need no secrecy: one generator per module, not one (seeded from
# os.urandom, ~16 us) per call, i.e. per connection (issue 10, handshake cost)
_RNG = random.Random()


def grease_capsule(rng: random.Random | None = None, max_value: int = 16) -> bytes:
    """A reserved-type capsule (``0x29 * N + 0x17``) with a random value (RFC 9297 §5.4)."""
    rng = rng or _RNG
    capsule_type = _RESERVED_STEP * rng.randint(0, _RESERVED_MAX_N) + _RESERVED_BASE
    return encode_capsule(capsule_type, rng.randbytes(rng.randint(0, max_value)))


def _truncate_utf8(reason: str, limit: int) -> bytes:
    raw = reason.encode("utf-8")
    if len(raw) <= limit:
        return raw
    cut = limit
    while cut > 0 and (raw[cut] & 0xC0) == 0x80:  # do not split a character (draft-16 §6)
        cut -= 1
    return raw[:cut]


def encode_close_webtransport_session(error_code: int, reason: str = "") -> bytes:
    """A WT_CLOSE_SESSION capsule: 32-bit error code and a UTF-8 message
    (draft-16 §6); a message over 1024 bytes is truncated at a character boundary."""
    if not 0 <= error_code <= 0xFFFFFFFF:
        raise ValueError(f"WebTransport error code out of 32-bit range: {error_code}")
    value = error_code.to_bytes(4, "big") + _truncate_utf8(reason, CLOSE_SESSION_MAX_REASON)
    return encode_capsule(CapsuleType.CLOSE_WEBTRANSPORT_SESSION, value)


def decode_close_webtransport_session(
    value: bytes | bytearray | memoryview,
) -> tuple[int, str]:
    """``(error_code, reason)`` of a WT_CLOSE_SESSION value (draft-16 §6).

    Too short, a message over 1024 bytes or one that is not UTF-8 is H3_MESSAGE_ERROR.
    """
    if len(value) < 4:
        raise _malformed("WT_CLOSE_SESSION: value shorter than its error code")
    if len(value) > 4 + CLOSE_SESSION_MAX_REASON:
        raise _malformed("WT_CLOSE_SESSION: message longer than 1024 bytes")
    try:
        reason = bytes(value[4:]).decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("WT_CLOSE_SESSION: message is not UTF-8") from None
    return int.from_bytes(value[:4], "big"), reason


def encode_drain_webtransport_session() -> bytes:
    """A WT_DRAIN_SESSION capsule (draft-16 §4.7): no value."""
    return encode_capsule(CapsuleType.DRAIN_WEBTRANSPORT_SESSION)


def encode_varint_capsule(capsule_type: int, value: int) -> bytes:
    """A flow-control capsule (WT_MAX_DATA, WT_MAX_STREAMS_*, WT_DATA_BLOCKED,
    WT_STREAMS_BLOCKED_*) carrying ``value`` (draft-16 §5.6)."""
    if capsule_type not in FLOW_CONTROL_CAPSULES:
        raise ValueError(f"capsule 0x{capsule_type:x} is not a flow-control capsule")
    if not 0 <= value <= VARINT_MAX:
        raise ValueError(f"value out of varint range: {value}")
    return encode_capsule(capsule_type, encode_varint(value))


def decode_varint_capsule(value: bytes | bytearray | memoryview) -> int:
    """The single varint of a flow-control capsule value; anything else is
    H3_MESSAGE_ERROR (RFC 9297 §3.3: exactly the identified fields)."""
    try:
        result, pos = decode_varint(value, 0)
    except BufferReadError:
        raise _malformed("flow-control capsule: truncated value") from None
    if pos != len(value):
        raise _malformed("flow-control capsule: trailing bytes")
    return result
