"""Byte-level helpers: QUIC variable-length integers (RFC 9000 §16) and a cursor.

Theory of operation
-------------------
Hot paths (packet and frame parsing) use the free functions :func:`decode_varint` and
:func:`encode_varint`, which work on ``(data, offset)`` pairs and allocate nothing but
the result tuple. :class:`Buffer` is a convenience reader/writer for colder code
(transport parameters, TLS messages). Both raise :class:`~quic.errors.BufferReadError`
on truncated input; callers translate it into their layer's error.
"""

from __future__ import annotations

import struct

from quic.errors import BufferReadError

__all__ = [
    "VARINT_MAX",
    "Buffer",
    "decode_varint",
    "encode_varint",
    "varint_size",
]

VARINT_MAX = (1 << 62) - 1

_pack_h = struct.Struct("!H").pack
_pack_i = struct.Struct("!I").pack
_pack_q = struct.Struct("!Q").pack
_unpack_h = struct.Struct("!H").unpack_from
_unpack_i = struct.Struct("!I").unpack_from
_unpack_q = struct.Struct("!Q").unpack_from


def varint_size(value: int) -> int:
    """Number of bytes the shortest encoding of ``value`` takes (RFC 9000 §16)."""
    if value < 0x40:
        if value < 0:
            raise ValueError(f"varint out of range: {value}")
        return 1
    if value < 0x4000:
        return 2
    if value < 0x40000000:
        return 4
    if value <= VARINT_MAX:
        return 8
    raise ValueError(f"varint out of range: {value}")


def encode_varint(value: int) -> bytes:
    """Shortest encoding of ``value`` (RFC 9000 §16)."""
    if value < 0x40:
        if value < 0:
            raise ValueError(f"varint out of range: {value}")
        return bytes((value,))
    if value < 0x4000:
        return _pack_h(value | 0x4000)
    if value < 0x40000000:
        return _pack_i(value | 0x80000000)
    if value <= VARINT_MAX:
        return _pack_q(value | 0xC000000000000000)
    raise ValueError(f"varint out of range: {value}")


def encode_varint_size(value: int, size: int) -> bytes:
    """Encode ``value`` on exactly ``size`` bytes (1, 2, 4 or 8)."""
    if size == 1 and 0 <= value < 0x40:
        return bytes((value,))
    if size == 2 and 0 <= value < 0x4000:
        return _pack_h(value | 0x4000)
    if size == 4 and 0 <= value < 0x40000000:
        return _pack_i(value | 0x80000000)
    if size == 8 and 0 <= value <= VARINT_MAX:
        return _pack_q(value | 0xC000000000000000)
    raise ValueError(f"cannot encode {value} on {size} bytes")


def decode_varint(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; return ``(value, next_pos)``.

    Raises :class:`BufferReadError` if ``data`` ends inside the integer.
    """
    try:
        first = data[pos]
    except IndexError:
        raise BufferReadError("varint: end of input") from None
    prefix = first >> 6
    if prefix == 0:
        return first, pos + 1
    if prefix == 1:
        if pos + 2 > len(data):
            raise BufferReadError("varint: end of input")
        return _unpack_h(data, pos)[0] & 0x3FFF, pos + 2
    if prefix == 2:
        if pos + 4 > len(data):
            raise BufferReadError("varint: end of input")
        return _unpack_i(data, pos)[0] & 0x3FFFFFFF, pos + 4
    if pos + 8 > len(data):
        raise BufferReadError("varint: end of input")
    return _unpack_q(data, pos)[0] & 0x3FFFFFFFFFFFFFFF, pos + 8


class Buffer:
    """A read cursor over bytes and an append-only writer.

    Reading: ``Buffer(data=b"...")`` then ``pull_*``. Writing: ``Buffer()`` then
    ``push_*`` and :meth:`data`. Reads past the end raise :class:`BufferReadError`.
    """

    __slots__ = ("_data", "_out", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview = b"") -> None:
        self._data = bytes(data)
        self._pos = 0
        self._out = bytearray()

    # -- reading -----------------------------------------------------------------
    @property
    def position(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def eof(self) -> bool:
        return self._pos >= len(self._data)

    def _take(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise BufferReadError(f"need {n} bytes, have {len(self._data) - self._pos}")
        start = self._pos
        self._pos = start + n
        return self._data[start : self._pos]

    def pull_bytes(self, n: int) -> bytes:
        return self._take(n)

    def pull_rest(self) -> bytes:
        return self._take(len(self._data) - self._pos)

    def pull_uint8(self) -> int:
        pos = self._pos
        if pos >= len(self._data):
            raise BufferReadError(f"need 1 bytes, have {len(self._data) - pos}")
        self._pos = pos + 1
        return self._data[pos]

    def pull_uint16(self) -> int:
        data, pos = self._data, self._pos
        end = pos + 2
        if end > len(data):
            raise BufferReadError(f"need 2 bytes, have {len(data) - pos}")
        self._pos = end
        return (data[pos] << 8) | data[pos + 1]

    def pull_uint24(self) -> int:
        return int.from_bytes(self._take(3), "big")

    def pull_uint32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def pull_uint64(self) -> int:
        return int.from_bytes(self._take(8), "big")

    def pull_varint(self) -> int:
        value, self._pos = decode_varint(self._data, self._pos)
        return value

    def pull_vector(self, length_size: int) -> bytes:
        """Read a length-prefixed opaque vector (TLS style, 1/2/3 byte length)."""
        data, pos = self._data, self._pos
        start = pos + length_size
        if start > len(data):
            raise BufferReadError(f"need {length_size} bytes, have {len(data) - pos}")
        end = start + int.from_bytes(data[pos:start], "big")
        if end > len(data):
            raise BufferReadError(f"need {end - start} bytes, have {len(data) - start}")
        self._pos = end
        return data[start:end]

    # -- writing -----------------------------------------------------------------
    def push_bytes(self, value: bytes | bytearray | memoryview) -> None:
        self._out += value

    def push_uint8(self, value: int) -> None:
        self._out.append(value)

    def push_uint16(self, value: int) -> None:
        self._out += value.to_bytes(2, "big")

    def push_uint24(self, value: int) -> None:
        self._out += value.to_bytes(3, "big")

    def push_uint32(self, value: int) -> None:
        self._out += value.to_bytes(4, "big")

    def push_uint64(self, value: int) -> None:
        self._out += value.to_bytes(8, "big")

    def push_varint(self, value: int) -> None:
        self._out += encode_varint(value)

    def push_vector(self, length_size: int, value: bytes | bytearray | memoryview) -> None:
        """Write a length-prefixed opaque vector (TLS style)."""
        if len(value) >= 1 << (8 * length_size):
            raise ValueError("vector too long for its length prefix")
        self._out += len(value).to_bytes(length_size, "big")
        self._out += value

    def data(self) -> bytes:
        return bytes(self._out)
