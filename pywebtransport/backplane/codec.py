"""The backplane's wire format: length-prefixed frames between instances.

Theory of operation
-------------------
Instances of one app (workers on a host, servers behind a balancer) tell each other
four things, each one *frame*:

* ``HELLO`` (type 1) — ``origin``: "I am up"; Redis instances answer with their counts.
* ``EVENT`` (type 2) — ``origin``, ``room``, ``kind`` (datagram | message), ``payload``:
  one broadcast to the room's members on the other instances.
* ``COUNTS`` (type 3) — ``origin``, a ``replace`` flag, ``(room, members)`` pairs: the
  origin's local member counts (``replace``: a snapshot, every room not listed has no
  member; else updates, 0 meaning "no member").
* ``BYE`` (type 4) — ``origin``: "I am leaving": forget my counts now.

A frame *body* is one type byte then its fields; strings are one length byte then
UTF-8 (1 to 255 bytes), counts are 32-bit big-endian, the payload is the rest of the
body. On a byte stream (:class:`~pywebtransport.backplane.mesh.MeshBackplane`'s
AF_UNIX sockets) each body is preceded by its length (32 bits, big-endian); a message
bus that keeps message boundaries (Redis pub/sub) carries bodies as they are.

:func:`decode_body` and :class:`FrameReader` (the incremental reader of a stream) are
pure: bytes in, frames out, and any malformed input raises :class:`FrameError` —
nothing else (``fuzz/test_fuzz_backplane.py``). The reader never holds more than one
frame of at most ``max_frame`` bytes: a longer length prefix is an error before any of
its bytes are buffered.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "COUNTS_PER_FRAME",
    "MAX_NAME",
    "Bye",
    "Counts",
    "EventKind",
    "Frame",
    "FrameError",
    "FrameReader",
    "Hello",
    "RoomEvent",
    "decode_body",
    "encode_body",
    "encode_counts",
    "encode_frame",
    "encode_frames",
]

#: the longest origin id or room name on the wire, in UTF-8 bytes
MAX_NAME = 255
#: at most this many (room, count) pairs in one COUNTS frame; snapshots are split
COUNTS_PER_FRAME = 4096

_U32 = struct.Struct(">I")
_T_HELLO, _T_EVENT, _T_COUNTS, _T_BYE = 1, 2, 3, 4


class FrameError(ValueError):
    """Malformed backplane input (the connection or message that carried it is dropped)."""


class EventKind(IntEnum):
    """What a room event delivers to each member."""

    DATAGRAM = 0  # Room.send_datagram
    MESSAGE = 1  # Room.send_message: one unidirectional stream per member


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One broadcast to room ``room``, published by instance ``origin``."""

    origin: str
    room: str
    kind: EventKind
    payload: bytes


@dataclass(frozen=True, slots=True)
class Hello:
    """Instance ``origin`` is up."""

    origin: str


@dataclass(frozen=True, slots=True)
class Counts:
    """Local member counts of instance ``origin``: a snapshot (``replace``) or updates."""

    origin: str
    replace: bool
    counts: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Bye:
    """Instance ``origin`` is leaving: forget its counts."""

    origin: str


Frame = Hello | RoomEvent | Counts | Bye


def _name(value: str) -> bytes:
    raw = value.encode()
    if not 1 <= len(raw) <= MAX_NAME:
        raise FrameError(f"a name must be 1..{MAX_NAME} bytes of UTF-8: {value[:40]!r}")
    return bytes((len(raw),)) + raw


def encode_body(item: Frame) -> bytes:
    """The body of one frame (no length prefix); FrameError for a name out of range or
    a count that does not fit 32 bits."""
    if isinstance(item, RoomEvent):
        head = bytes((_T_EVENT, int(item.kind))) + _name(item.origin) + _name(item.room)
        return head + item.payload
    if isinstance(item, Counts):
        parts = [bytes((_T_COUNTS, 1 if item.replace else 0)), _name(item.origin)]
        parts.append(_U32.pack(len(item.counts)))
        for room, count in item.counts:
            if not 0 <= count <= 0xFFFFFFFF:
                raise FrameError(f"count out of range: {count}")
            parts.append(_name(room))
            parts.append(_U32.pack(count))
        return b"".join(parts)
    if isinstance(item, Hello):
        return bytes((_T_HELLO,)) + _name(item.origin)
    return bytes((_T_BYE,)) + _name(item.origin)


def encode_frame(item: Frame) -> bytes:
    """``item`` with its 32-bit length prefix (for a byte stream)."""
    body = encode_body(item)
    return _U32.pack(len(body)) + body


def encode_counts(
    origin: str, counts: Sequence[tuple[str, int]], *, replace: bool
) -> Iterator[Counts]:
    """COUNTS frames of at most :data:`COUNTS_PER_FRAME` pairs; for a snapshot
    (``replace``) only the first replaces — the rest update — and an empty snapshot is
    one empty replacing frame."""
    first = True
    for start in range(0, max(1, len(counts)), COUNTS_PER_FRAME):
        chunk = tuple(counts[start : start + COUNTS_PER_FRAME])
        if chunk or (replace and first):
            yield Counts(origin, replace and first, chunk)
        first = False


class _Cursor:
    """Reads fields from one body; FrameError when it runs out."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise FrameError("frame truncated")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u32(self) -> int:
        end = self.pos + 4
        if end > len(self.data):
            raise FrameError("frame truncated")
        (value,) = _U32.unpack_from(self.data, self.pos)
        self.pos = end
        return int(value)

    def name(self) -> str:
        size = self.byte()
        end = self.pos + size
        if size == 0 or end > len(self.data):
            raise FrameError("bad name length")
        try:
            value = self.data[self.pos : end].decode()
        except UnicodeDecodeError as exc:
            raise FrameError("a name is not UTF-8") from exc
        self.pos = end
        return value

    def rest(self) -> bytes:
        value = self.data[self.pos :]
        self.pos = len(self.data)
        return value

    def done(self) -> None:
        if self.pos != len(self.data):
            raise FrameError("trailing bytes after a frame")


def decode_body(body: bytes) -> Frame:
    """The frame in ``body``; FrameError for anything malformed."""
    cursor = _Cursor(bytes(body))
    kind = cursor.byte()
    item: Frame
    if kind == _T_EVENT:
        try:
            event_kind = EventKind(cursor.byte())
        except ValueError as exc:
            raise FrameError("unknown event kind") from exc
        origin, room = cursor.name(), cursor.name()
        item = RoomEvent(origin, room, event_kind, cursor.rest())
    elif kind == _T_COUNTS:
        flag = cursor.byte()
        if flag > 1:
            raise FrameError("bad COUNTS flag")
        origin = cursor.name()
        number = cursor.u32()
        if number > COUNTS_PER_FRAME:
            raise FrameError("too many counts in one frame")
        pairs = tuple((cursor.name(), cursor.u32()) for _ in range(number))
        item = Counts(origin, bool(flag), pairs)
    elif kind == _T_HELLO:
        item = Hello(cursor.name())
    elif kind == _T_BYE:
        item = Bye(cursor.name())
    else:
        raise FrameError(f"unknown frame type {kind}")
    cursor.done()
    return item


class FrameReader:
    """Splits a byte stream into frames of at most ``max_frame`` body bytes."""

    __slots__ = ("_buffer", "max_frame")

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held: never more than 4 + ``max_frame``."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """The frames completed by ``data``; FrameError (and the stream is unusable)
        for a malformed one or a length above ``max_frame``."""
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        pos = 0
        while len(buffer) - pos >= 4:
            (size,) = _U32.unpack_from(buffer, pos)
            if size > self.max_frame:
                raise FrameError(f"frame of {size} bytes above the limit {self.max_frame}")
            if size == 0:
                raise FrameError("empty frame")
            end = pos + 4 + size
            if end > len(buffer):
                break
            frames.append(decode_body(bytes(buffer[pos + 4 : end])))
            pos = end
        del buffer[:pos]
        return frames


def encode_frames(items: Iterable[Frame]) -> bytes:
    """Several frames, each length-prefixed, as one write."""
    return b"".join(encode_frame(item) for item in items)
