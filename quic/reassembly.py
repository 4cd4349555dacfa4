"""Out-of-order stream data: one stream's reassembly buffer and the connection's budget.

Theory of operation
-------------------
The out-of-order store keeps one *segment* per maximal run of received bytes, in three
parallel sorted lists (starts, ends, segment data). Adjacent or overlapping data is
merged on arrival, so the number of segments is the number of holes, whatever the
number of frames (RFC 9000 §2.2: data already received can be discarded). A frame is
placed with two bisections and merges the ``k`` segments it touches in O(log n + k)
Python steps (plus one C-level move of the three lists when the number of holes
changes). A frame that only repeats held data costs the two bisections.

A segment's bytes are one chunk (``bytes``/``bytearray``) or, when larger, a deque of
chunks (a rope). Chunks shorter than :data:`SMALL_CHUNK` are coalesced with a short
neighbour, so no two short chunks are adjacent: a segment of ``b`` bytes holds at most
``2 b / SMALL_CHUNK + 1`` chunk objects and memory stays close to one byte per byte
stored, however tiny the fragments. Frames of full size are kept as received (no copy).
Ropes merge by moving the chunks of the smaller one onto the larger (union by size),
so no sequence of frames moves a chunk more than O(log n) times, and coalescing a
short fragment copies at most :data:`SMALL_CHUNK` bytes.

When a frame reaches the stream's first missing byte, the segments that became
contiguous are handed to the stream's ready queue (:meth:`ReassemblyBuffer.pop_reached`).
Memory is bounded by the stream's receive window: every byte buffered lies
below the advertised limit, which is checked first (FLOW_CONTROL_ERROR, RFC 9000 §4.1).
The number of holes is bounded too (RFC 9000 §21.7, stream fragmentation): at most
``max_fragments`` per stream, and every stream of a connection charges one shared
:class:`ReassemblyBudget` (out-of-order bytes and fragments over all streams). Beyond a
limit the frame is refused with ``limit_error`` (PROTOCOL_VIOLATION for streams,
CRYPTO_BUFFER_EXCEEDED for CRYPTO, RFC 9000 §7.5) before any state changes.

:class:`~quic.stream_recv.RecvStream` owns one :class:`ReassemblyBuffer` (its data
beyond the first missing byte) and moves what becomes contiguous to its ready queue
with :meth:`ReassemblyBuffer.pop_reached`; the final-size, reset and flow-control rules
stay there.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable
from itertools import islice

from quic.errors import QuicProtocolError, TransportErrorCode

__all__ = [
    "DEFAULT_MAX_REASSEMBLY_BYTES",
    "DEFAULT_MAX_REASSEMBLY_FRAGMENTS",
    "DEFAULT_MAX_STREAM_FRAGMENTS",
    "SMALL_CHUNK",
    "ReassemblyBudget",
    "ReassemblyBuffer",
]

#: Out-of-order fragments (holes) one stream may have (RFC 9000 §21.7).
DEFAULT_MAX_STREAM_FRAGMENTS = 1024
#: Out-of-order fragments over all streams of a connection (RFC 9000 §21.7).
DEFAULT_MAX_REASSEMBLY_FRAGMENTS = 4096
#: Out-of-order bytes over all streams of a connection (RFC 9000 §21.7). Flow control
#: already bounds them by the connection window; this caps overcommitted windows.
DEFAULT_MAX_REASSEMBLY_BYTES = 32 * 1024 * 1024
#: Chunks shorter than this are coalesced with a short neighbour (see module doc).
SMALL_CHUNK = 1024


Chunk = bytes | bytearray
# One segment's data: a single chunk, or a rope of two or more chunks in offset order.
Segment = bytes | bytearray | deque[bytes | bytearray]


def _limit_error(code: int, reason: str) -> QuicProtocolError:
    return QuicProtocolError(code, reason)


class ReassemblyBudget:
    """Out-of-order bytes and fragments buffered by all streams of one connection.

    Shared by the :class:`ReassemblyBuffer` of every stream (RFC 9000 §21.7: limit the
    size of tracking structures). ``bytes`` and ``fragments`` are the current totals.
    """

    __slots__ = ("bytes", "error_code", "fragments", "max_bytes", "max_fragments")

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_REASSEMBLY_BYTES,
        max_fragments: int = DEFAULT_MAX_REASSEMBLY_FRAGMENTS,
        error_code: int = TransportErrorCode.PROTOCOL_VIOLATION,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_fragments = max_fragments
        self.error_code = error_code
        self.bytes = 0
        self.fragments = 0

    def check(self, nbytes: int, nfragments: int) -> None:
        """Raise the limit error if adding ``nbytes`` and ``nfragments`` would exceed it."""
        if self.bytes + nbytes > self.max_bytes:
            raise _limit_error(
                self.error_code,
                f"out-of-order data over all streams exceeds {self.max_bytes} bytes",
            )
        if nfragments > 0 and self.fragments + nfragments > self.max_fragments:
            raise _limit_error(
                self.error_code,
                f"out-of-order data over all streams exceeds {self.max_fragments} fragments",
            )

    def __repr__(self) -> str:
        return (
            f"ReassemblyBudget(bytes={self.bytes}/{self.max_bytes}, "
            f"fragments={self.fragments}/{self.max_fragments})"
        )


def _push_right(rope: deque[Chunk], chunk: Chunk) -> None:
    """Append ``chunk`` to ``rope``, coalescing two short chunks (bounded copy)."""
    last = rope[-1]
    if len(chunk) < SMALL_CHUNK and len(last) < SMALL_CHUNK:
        if type(last) is bytearray:
            last += chunk
        else:
            grown = bytearray(last)
            grown += chunk
            rope[-1] = grown
    else:
        rope.append(chunk)


def _push_left(rope: deque[Chunk], chunk: Chunk) -> None:
    """Prepend ``chunk`` to ``rope``, coalescing two short chunks (bounded copy)."""
    first = rope[0]
    if len(chunk) < SMALL_CHUNK and len(first) < SMALL_CHUNK:
        if type(first) is bytearray:
            first[0:0] = chunk
        else:
            grown = bytearray(chunk)
            grown += first
            rope[0] = grown
    else:
        rope.appendleft(chunk)


def _join(parts: list[Segment]) -> Segment:
    """Concatenate contiguous ``parts`` (chunks and ropes) into one segment.

    The longest rope is the base and the others are moved onto it (union by size), so
    the work is proportional to the chunks of the shorter ones.
    """
    base_index = -1
    base_len = 1
    for index, part in enumerate(parts):
        if isinstance(part, deque) and len(part) > base_len:
            base_index = index
            base_len = len(part)
    if base_index < 0:
        base_index = 0
        first = parts[0]
        assert not isinstance(first, deque)
        rope: deque[Chunk] = deque((first,))
    else:
        base = parts[base_index]
        assert isinstance(base, deque)
        rope = base
    for part in reversed(parts[:base_index]):
        if isinstance(part, deque):
            # the boundary chunk may coalesce; the rest already alternate short/long
            _push_left(rope, part[-1])
            rope.extendleft(islice(reversed(part), 1, None))
        else:
            _push_left(rope, part)
    for part in islice(parts, base_index + 1, None):
        if isinstance(part, deque):
            _push_right(rope, part[0])
            rope.extend(islice(part, 1, None))
        else:
            _push_right(rope, part)
    return rope[0] if len(rope) == 1 else rope


class ReassemblyBuffer:
    """Out-of-order data of one stream: merged segments, one per hole (RFC 9000 §2.2).

    ``starts``/``ends`` are the sorted half-open ranges ``[start, end)`` held, never
    touching each other; ``segments`` their bytes. ``nbytes`` is the total held.
    """

    __slots__ = (
        "budget",
        "ends",
        "error_code",
        "max_fragments",
        "nbytes",
        "segments",
        "starts",
    )

    def __init__(
        self,
        max_fragments: int = DEFAULT_MAX_STREAM_FRAGMENTS,
        budget: ReassemblyBudget | None = None,
        error_code: int = TransportErrorCode.PROTOCOL_VIOLATION,
    ) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.segments: list[Segment] = []
        self.nbytes = 0
        self.max_fragments = max_fragments
        self.budget = budget
        self.error_code = error_code

    def __len__(self) -> int:
        return len(self.starts)

    def _charge(self, nbytes: int, nfragments: int) -> None:
        """Account for a change; raises before anything changed if over a limit."""
        if nfragments > 0 and len(self.starts) + nfragments > self.max_fragments:
            raise _limit_error(
                self.error_code,
                f"out-of-order data exceeds {self.max_fragments} fragments on one stream",
            )
        budget = self.budget
        if budget is not None:
            budget.check(nbytes, nfragments)
            budget.bytes += nbytes
            budget.fragments += nfragments
        self.nbytes += nbytes

    def _release(self, nbytes: int, nfragments: int) -> None:
        self.nbytes -= nbytes
        budget = self.budget
        if budget is not None:
            budget.bytes -= nbytes
            budget.fragments -= nfragments

    def insert(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``offset`` (beyond the first missing byte), merging it with
        every segment it touches; already-held bytes are kept, not replaced."""
        end = offset + len(data)
        starts = self.starts
        ends = self.ends
        i = bisect_left(ends, offset)  # first segment ending at or after offset
        if i == len(ends) or starts[i] > end:
            self._charge(end - offset, 1)  # a new hole
            starts.insert(i, offset)
            ends.insert(i, end)
            self.segments.insert(i, data if type(data) is bytes else bytes(data))
            return
        if starts[i] <= offset and end <= ends[i]:
            return  # entirely duplicate
        j = bisect_right(starts, end, i)  # segments i..j-1 touch [offset, end)
        segments = self.segments
        parts: list[Segment] = []
        cursor = offset
        added = 0
        for k in range(i, j):
            s = starts[k]
            if s > cursor:
                parts.append(_piece(data, cursor - offset, s - offset))
                added += s - cursor
            parts.append(segments[k])
            cursor = ends[k]
        if end > cursor:
            parts.append(_piece(data, cursor - offset, end - offset))
            added += end - cursor
            cursor = end
        self._charge(added, i + 1 - j)
        new_start = starts[i] if starts[i] < offset else offset
        merged = _join(parts)
        if j == i + 1:
            starts[i] = new_start
            ends[i] = cursor
            segments[i] = merged
        else:
            starts[i:j] = (new_start,)
            ends[i:j] = (cursor,)
            segments[i:j] = (merged,)

    def pop_reached(self, offset: int, ready: deque[bytes]) -> int:
        """Move the segments starting at or below ``offset`` (the first missing byte)
        to ``ready``, without the bytes below ``offset``; return the new first missing
        byte."""
        starts = self.starts
        ends = self.ends
        segments = self.segments
        n = len(starts)
        k = 0
        released = 0
        while k < n and starts[k] <= offset:
            s = starts[k]
            e = ends[k]
            released += e - s
            if e > offset:
                _deliver(segments[k], offset - s, ready)
                offset = e
            k += 1
        if k:
            del starts[:k]
            del ends[:k]
            del segments[:k]
            self._release(released, k)
        return offset

    def clear(self) -> None:
        """Drop everything (reset), returning it to the budget."""
        if self.starts:
            self._release(self.nbytes, len(self.starts))
            self.starts.clear()
            self.ends.clear()
            self.segments.clear()

    def chunk_count(self) -> int:
        """Chunk objects held (memory accounting in tests)."""
        return sum(len(seg) if isinstance(seg, deque) else 1 for seg in self.segments)


def _piece(data: bytes | bytearray | memoryview, start: int, stop: int) -> bytes:
    """``data[start:stop]`` as an independent ``bytes`` (the frame itself when whole)."""
    if start == 0 and stop == len(data) and type(data) is bytes:
        return data
    return bytes(memoryview(data)[start:stop])


def _deliver(segment: Segment, skip: int, ready: deque[bytes]) -> None:
    """Append ``segment``'s bytes after the first ``skip`` to ``ready`` as ``bytes``."""
    chunks: Iterable[Chunk] = segment if isinstance(segment, deque) else (segment,)
    for chunk in chunks:
        n = len(chunk)
        if skip >= n:
            skip -= n
            continue
        if skip:
            chunk = chunk[skip:]
            skip = 0
        ready.append(chunk if type(chunk) is bytes else bytes(chunk))
