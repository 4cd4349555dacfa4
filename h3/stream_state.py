"""Receive-side state of HTTP/3 streams, the table that holds it, and the frames held
behind a QPACK-blocked field section (RFC 9114 §4.1, §6; RFC 9204 §2.1.2).

Theory of operation
-------------------
:class:`StreamTable` maps the IDs of the streams HTTP/3 is still reading to their
:class:`StreamState`. A stream leaves the table as soon as HTTP/3 is done with its
receive side — its end was processed, the peer reset it, a stream error reset it, or
we stopped reading it — and its ID is recorded as *closed*: one
:class:`~quic.rangeset.RangeSet` of stream indices per stream-ID space (the two low
bits of the ID, RFC 9000 §2.1). Events QUIC still reports for a closed stream (data it
had queued before we stopped reading, a late FIN or RESET_STREAM) and HTTP datagrams
for it (RFC 9297 §2.1) are then recognised and ignored, never mistaken for a new
stream. Closed IDs of a space are contiguous except around streams that are still
open in QUIC, so each RangeSet holds at most one range per open stream: its size is
bounded by the QUIC stream concurrency, not by the number of streams ever used.

The send side of a stream keeps no HTTP/3 state (QUIC holds the bytes), so the receive
side decides when a stream leaves: after the last exchange the table is back to its
idle size (the peer's control and QPACK streams).

Parking (RFC 9204 §2.1.2). While a request stream's field section waits for dynamic
table insertions, the frames that follow it wait too. :class:`Parking` holds them,
per stream and for the whole connection, within limits
(:class:`~h3.connection.H3Configuration`): the number of frames held per stream, the
bytes held per stream, and the bytes held in total. Consecutive DATA payloads are
merged into one held frame, and frames whose type we do not know are dropped
rather than held (they are ignored anyway, RFC 9114 §9), so legitimate traffic —
HEADERS, body, maybe interim responses and trailers — needs a handful of frames. DATA
payload held here has not been credited to QUIC (the receiver credits it when it
consumes it), so flow control bounds it as well; HEADERS are framing, credited on
receipt, and only these limits bound them. Going beyond a limit is a connection error
of type H3_EXCESSIVE_LOAD (RFC 9114 §10.5, §8.1).
"""

from __future__ import annotations

from collections.abc import Iterable

from h3.errors import H3ConnectionError, H3ErrorCode
from h3.frames import FrameReader, FrameType
from h3.streams import UniStreamHeaderReader
from quic.rangeset import RangeSet

__all__ = ["Parking", "StreamState", "StreamTable"]

_DATA = FrameType.DATA


class StreamState:
    """Receive-side state of one request, push, WebTransport or unidirectional stream."""

    __slots__ = (
        "blocked",
        "content_length",
        "ended",
        "frames",
        "headers_done",
        "pending",
        "pending_bytes",
        "pending_fin",
        "received_body",
        "session_id",
        "stream_id",
        "trailers_done",
        "uni_reader",
        "uni_type",
    )

    def __init__(self, stream_id: int, frames: FrameReader | None) -> None:
        self.stream_id = stream_id
        self.frames = frames
        self.headers_done = False
        self.trailers_done = False
        self.blocked = False  # a field section waits for QPACK (RFC 9204 §2.1.2)
        # frames held while blocked: (frame type, payload), DATA runs merged
        self.pending: list[tuple[int, bytearray | bytes]] | None = None
        self.pending_bytes = 0
        self.pending_fin = False
        self.content_length: int | None = None
        self.received_body = 0
        self.ended = False
        self.session_id: int | None = None  # WebTransport stream
        self.uni_reader: UniStreamHeaderReader | None = None
        self.uni_type: int | None = None


class StreamTable:
    """Live streams by ID, and the IDs of closed ones (see the module docstring)."""

    __slots__ = ("_closed", "_live")

    def __init__(self) -> None:
        self._live: dict[int, StreamState] = {}
        # per stream type (the ID's two low bits): a RangeSet from its first closed
        # stream (an idle connection closes none of most types; issue 10, memory)
        self._closed: list[RangeSet | None] = [None, None, None, None]

    def get(self, stream_id: int) -> StreamState | None:
        return self._live.get(stream_id)

    def open(self, stream_id: int, frames: FrameReader | None) -> StreamState:
        stream = self._live[stream_id] = StreamState(stream_id, frames)
        return stream

    def close(self, stream_id: int) -> StreamState | None:
        """Forget the stream and remember its ID as closed; returns its state."""
        kind = stream_id & 3
        closed = self._closed[kind]
        if closed is None:
            closed = self._closed[kind] = RangeSet()
        closed.add(stream_id >> 2)
        return self._live.pop(stream_id, None)

    def is_closed(self, stream_id: int) -> bool:
        closed = self._closed[stream_id & 3]
        return closed is not None and (stream_id >> 2) in closed

    def items(self) -> Iterable[tuple[int, StreamState]]:
        return self._live.items()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._live

    @property
    def closed_ranges(self) -> int:
        """Ranges held to remember closed IDs (bounded by the open streams)."""
        return sum(len(ranges) for ranges in self._closed if ranges is not None)


class Parking:
    """Frames held behind QPACK-blocked field sections, within limits."""

    __slots__ = ("max_frames", "max_stream_bytes", "max_total_bytes", "total_bytes")

    def __init__(self, max_frames: int, max_stream_bytes: int, max_total_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_stream_bytes = max_stream_bytes
        self.max_total_bytes = max_total_bytes
        self.total_bytes = 0

    def park(self, stream: StreamState, frame_type: int, payload: bytes) -> None:
        """Hold a DATA or HEADERS frame of a blocked stream; H3_EXCESSIVE_LOAD beyond the
        limits (RFC 9114 §10.5)."""
        pending = stream.pending
        if pending is None:
            pending = stream.pending = []
        if frame_type == _DATA and pending and pending[-1][0] == _DATA:
            last = pending[-1][1]
            assert isinstance(last, bytearray)
            last += payload  # one held frame per DATA run
        else:
            if len(pending) >= self.max_frames:
                raise H3ConnectionError(
                    H3ErrorCode.H3_EXCESSIVE_LOAD,
                    f"more than {self.max_frames} frames behind a blocked field section",
                )
            pending.append((frame_type, bytearray(payload) if frame_type == _DATA else payload))
        size = len(payload)
        stream.pending_bytes += size
        self.total_bytes += size
        if stream.pending_bytes > self.max_stream_bytes:
            raise H3ConnectionError(
                H3ErrorCode.H3_EXCESSIVE_LOAD,
                f"more than {self.max_stream_bytes} bytes behind a blocked field section",
            )
        if self.total_bytes > self.max_total_bytes:
            raise H3ConnectionError(
                H3ErrorCode.H3_EXCESSIVE_LOAD,
                f"more than {self.max_total_bytes} bytes held for blocked streams",
            )

    def take(self, stream: StreamState) -> tuple[list[tuple[int, bytes]], bool]:
        """The held frames (payloads as bytes) and whether the stream ended after them;
        the stream holds nothing afterwards."""
        pending = stream.pending or []
        fin = stream.pending_fin
        self.drop(stream)
        return [(ftype, bytes(payload)) for ftype, payload in pending], fin

    def drop(self, stream: StreamState) -> None:
        """Discard what the stream holds (it was reset, stopped, or unblocked)."""
        self.total_bytes -= stream.pending_bytes
        stream.pending = None
        stream.pending_bytes = 0
        stream.pending_fin = False
