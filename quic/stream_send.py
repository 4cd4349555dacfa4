"""The sending half of a QUIC stream (RFC 9000 §2, §3.1, §3.5, §4.5, §19.4, §19.8).

Theory of operation
-------------------
Application writes are kept as immutable ``bytes`` chunks in offset order (a list of
chunks plus a parallel list of their start offsets, searched with ``bisect``). A large
``bytes`` write is stored as is and frames are cut from it as ``memoryview`` slices, so
it is never copied; small writes are coalesced to keep the chunk list short. A chunk is
dropped once every byte of it has been acknowledged.

Three offsets describe the stream: ``acked_offset`` (every byte below it is
acknowledged), ``highest_sent`` (new data starts there) and the write offset (end of
the buffer). Byte ranges acknowledged out of order are kept in a small range list above
``acked_offset``; ranges declared lost are kept in a second list and are retransmitted
before any new data. Until the first out-of-order acknowledgment or loss both are the
one shared empty list (``_NO_RANGES``, never written to; replaced by a stream's own list
before the first range is added): most streams never need either, and each would be two
more objects for the garbage collector per stream (issue 10: the 1,000-session burst).
Likewise the chunk and start lists are shared empty lists (``_NO_CHUNKS``,
``_NO_STARTS``) until the first write and again once everything was acknowledged (a
sending part that never writes, such as a server's 1-RTT CRYPTO stream, holds none).
:meth:`SendStream.next_frame` returns, in order: the first lost range, a FIN-only frame
whose FIN was lost, new data (bounded by the stream credit and the connection credit
passed in), or a FIN-only frame for an empty tail.

The connection owns packet numbers; it remembers what each frame carried and reports
its fate with :meth:`SendStream.on_acked` / :meth:`SendStream.on_lost` (and the
``on_reset_*`` / ``on_blocked_lost`` counterparts for the control frames).

States follow RFC 9000 §3.1 and are driven by a transition table (``_TRANSITIONS``):
events that have no entry for the current state leave it unchanged.

Reliable resets (draft-ietf-quic-reliable-stream-reset): :meth:`SendStream.reset` with
a ``reliable_size`` abandons the stream like RESET_STREAM but keeps delivering its first
``reliable_size`` bytes. The write buffer is cut at ``max(reliable_size, highest
sent)`` — that offset is the final size — bytes below the reliable size are still sent
and retransmitted when lost, bytes above it are not (§5). The RESET_STREAM_AT frame
waits until every byte below the final size has been sent once (so it never exceeds
the flow-control credit, §4) and is retransmitted until acknowledged. Like a FIN it
moves the stream to "Data Sent"; once it and every byte below the reliable size are
acknowledged the stream is in "Data Recvd" (§5.3). A later reset may only lower the
reliable size (§5.2); one with a reliable size of 0 becomes a RESET_STREAM. The error
code and, once a frame carried it, the final size never change.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from enum import Enum

from quic.buffer import VARINT_MAX
from quic.errors import StreamResetError
from quic.flow_control import SendCredit

__all__ = ["SendEvent", "SendState", "SendStream", "StreamUsageError"]

_new_object = object.__new__

# Writes smaller than this are merged into the previous chunk (one small copy) so that
# many tiny writes do not produce a long chunk list.
_COALESCE_LIMIT = 1024


class StreamUsageError(RuntimeError):
    """The local application misused a stream (e.g. wrote after ending it)."""


class SendState(Enum):
    """Sending-part states, RFC 9000 §3.1 (Figure 2)."""

    READY = "Ready"
    SEND = "Send"
    DATA_SENT = "Data Sent"
    DATA_RECVD = "Data Recvd"
    RESET_SENT = "Reset Sent"
    RESET_RECVD = "Reset Recvd"

    # Members are singletons: identity hashing is exact and, unlike Enum.__hash__
    # (Python code), costs nothing on the per-packet state-table lookups.
    __hash__ = object.__hash__


class SendEvent(Enum):
    """Events of the sending state machine."""

    SEND_DATA = "send STREAM / STREAM_DATA_BLOCKED"
    SEND_FIN = "send STREAM + FIN"
    ALL_ACKED = "recv all ACKs"
    SEND_RESET = "send RESET_STREAM"
    RESET_ACKED = "recv ACK of RESET_STREAM"
    SEND_RESET_AT = "send RESET_STREAM_AT"  # draft-ietf-quic-reliable-stream-reset §5.3

    # Members are singletons: identity hashing is exact and, unlike Enum.__hash__
    # (Python code), costs nothing on the per-packet state-table lookups.
    __hash__ = object.__hash__


_S = SendState
_E = SendEvent

# RFC 9000 §3.1 as data: state -> {event: next state}.
_TRANSITIONS: dict[SendState, dict[SendEvent, SendState]] = {
    _S.READY: {
        _E.SEND_DATA: _S.SEND,
        _E.SEND_FIN: _S.DATA_SENT,
        _E.SEND_RESET: _S.RESET_SENT,
        _E.SEND_RESET_AT: _S.DATA_SENT,
    },
    _S.SEND: {
        _E.SEND_DATA: _S.SEND,
        _E.SEND_FIN: _S.DATA_SENT,
        _E.SEND_RESET: _S.RESET_SENT,
        _E.SEND_RESET_AT: _S.DATA_SENT,
    },
    _S.DATA_SENT: {_E.ALL_ACKED: _S.DATA_RECVD, _E.SEND_RESET: _S.RESET_SENT},
    _S.DATA_RECVD: {},
    _S.RESET_SENT: {_E.RESET_ACKED: _S.RESET_RECVD},
    _S.RESET_RECVD: {},
}

_TERMINAL = frozenset((_S.DATA_RECVD, _S.RESET_RECVD))
_CAN_RESET = frozenset((_S.READY, _S.SEND, _S.DATA_SENT))
_SENDING = frozenset((_S.READY, _S.SEND, _S.DATA_SENT))
# An Enum class attribute (``SendState.SEND``) goes through EnumType.__getattr__'s slot
# on Python 3.11, ~10x a global load: the per-packet code reads module aliases.
_SEND = _S.SEND
_SEND_DATA = _E.SEND_DATA
_READY = _S.READY  # per stream (its first state)
_SEND_FIN = _E.SEND_FIN  # ... and its end: once per stream each
_ALL_ACKED = _E.ALL_ACKED


class _RangeList:
    """Disjoint sorted half-open ranges stored as a flat boundary list [s0, e0, s1, e1...]."""

    __slots__ = ("b",)

    def __init__(self) -> None:
        self.b: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.b)

    def add(self, start: int, stop: int) -> None:
        if start >= stop:
            return
        b = self.b
        i = bisect_left(b, start)
        j = bisect_right(b, stop)
        # An even index means the boundary falls outside every range.
        new = [start] if not i & 1 else []
        if not j & 1:
            new.append(stop)
        b[i:j] = new

    def subtract(self, start: int, stop: int) -> None:
        if start >= stop:
            return
        b = self.b
        i = bisect_left(b, start)
        j = bisect_right(b, stop)
        new = [start] if i & 1 else []
        if j & 1:
            new.append(stop)
        b[i:j] = new

    def gaps(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Parts of [start, stop) not covered by any range."""
        b = self.b
        out: list[tuple[int, int]] = []
        i = bisect_right(b, start)
        cursor = start
        if i & 1:  # start lies inside a range
            cursor = b[i]
            i += 1
        n = len(b)
        while cursor < stop and i < n:
            s = b[i]
            if s >= stop:
                break
            if s > cursor:
                out.append((cursor, s))
            cursor = b[i + 1]
            i += 2
        if cursor < stop:
            out.append((cursor, stop))
        return out

    def ranges(self) -> list[tuple[int, int]]:
        b = self.b
        return [(b[k], b[k + 1]) for k in range(0, len(b), 2)]


#: The empty range list every stream starts with (see the module docstring): read, never
#: written; :meth:`SendStream.on_acked` and :meth:`SendStream.on_lost` replace it with a
#: list of the stream's own before adding a range.
_NO_RANGES = _RangeList()
#: The chunk and start lists of a sending part holding no data (see the module
#: docstring): only :meth:`SendStream.write` adds to a stream's lists, and it gives the
#: stream lists of its own first.
_NO_CHUNKS: list[bytes] = []
_NO_STARTS: list[int] = []


class SendStream:
    """Send half of a stream: buffering, framing, retransmission, reset (RFC 9000 §3.1)."""

    __slots__ = (
        "_acked",
        "_acked_offset",
        "_chunks",
        "_fin_acked",
        "_fin_lost",
        "_fin_offset",
        "_fin_sent",
        "_head",
        "_lost",
        "_reliable_acked",
        "_reliable_floor",
        "_reliable_sent",
        "_reliable_size",
        "_reset_code",
        "_reset_final_size",
        "_starts",
        "_state",
        "_stop_answer",
        "credit",
        "finished",
        "highest_sent",
        "reset_pending",
        "stream_id",
        "trace",
        "write_offset",
    )

    def __init__(self, stream_id: int = 0, max_stream_data: int = 0) -> None:
        self.stream_id = stream_id
        # SendCredit(max_stream_data) without its __init__ frame (per stream; an agreement
        # test, tests/quic/test_stream_inits.py, keeps every slot as __init__ sets it)
        self.credit = credit = _new_object(SendCredit)
        credit.max_data = max_stream_data
        credit.used = 0
        credit._blocked_reported = None
        self._state = _READY
        #: :attr:`is_finished` kept as an attribute (read per stream retirement)
        self.finished = False
        self.trace: Callable[[int, bool, Enum, Enum], None] | None = None
        self._chunks = _NO_CHUNKS
        self._starts = _NO_STARTS
        self._head = 0  # index of the first chunk still held
        #: End of the data written (the next write's offset); an attribute, as
        #: :attr:`highest_sent` is. Read-only.
        self.write_offset = 0
        #: One past the highest offset ever sent (the stream's flow-control usage); an
        #: attribute, not a property: the send loop reads it per packet. Read-only.
        self.highest_sent = 0
        self._acked_offset = 0
        self._acked = _NO_RANGES
        self._lost = _NO_RANGES
        self._fin_offset: int | None = None
        self._fin_sent = False
        self._fin_acked = False
        self._fin_lost = False
        self._reset_code: int | None = None
        self._reset_final_size = 0
        #: A RESET_STREAM or RESET_STREAM_AT frame is owed (:attr:`reset_ready` says
        #: whether it may go now); an attribute the send loop reads per packet. Read-only.
        self.reset_pending = False
        # RESET_STREAM_AT (draft-ietf-quic-reliable-stream-reset): None when not used
        self._reliable_size: int | None = None
        self._reliable_sent = False  # a RESET_STREAM_AT carried the final size
        self._reliable_acked = False  # the one with the current reliable size was acked
        # every reset keeps at least this many bytes reliable (set_reliable_floor)
        self._reliable_floor = 0
        self._stop_answer: int | None = None  # set_stop_sending_answer

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> SendState:
        return self._state

    @property
    def is_finished(self) -> bool:
        """True in a terminal state (Data Recvd or Reset Recvd)."""
        return self.finished

    @property
    def buffered(self) -> int:
        """Bytes held for (re)transmission: written but not yet acknowledged."""
        return self.write_offset - self._acked_offset if self._state in _SENDING else 0

    @property
    def unsent(self) -> int:
        """Bytes written but never sent."""
        return self.write_offset - self.highest_sent if self._state in _SENDING else 0

    @property
    def final_size(self) -> int | None:
        """Final size once known: end of stream written, or reset final size."""
        if self._reset_code is not None:
            return self._reset_final_size
        return self._fin_offset

    @property
    def reset_error_code(self) -> int | None:
        return self._reset_code

    @property
    def reliable_size(self) -> int | None:
        """Reliable size of a RESET_STREAM_AT under way, else None."""
        return self._reliable_size

    @property
    def reset_ready(self) -> bool:
        """A RESET_STREAM or RESET_STREAM_AT frame is owed and may be sent now."""
        if not self.reset_pending:
            return False
        return self._reliable_size is None or self.highest_sent >= self.write_offset

    @property
    def needs_send(self) -> bool:
        """Whether :meth:`next_frame` or :meth:`reset_frame` would produce something
        (assuming connection credit is available)."""
        if self.reset_pending:
            return True
        if self._state not in _SENDING:
            return False
        if self._lost.b or self._fin_lost:  # .b: no __bool__ call per packet
            return True
        if self.write_offset > self.highest_sent:
            credit = self.credit  # credit.available() > 0, without the call
            return credit.max_data > credit.used
        return self._fin_offset is not None and not self._fin_sent

    def _fire(self, event: SendEvent) -> None:
        nxt = _TRANSITIONS[self._state].get(event)
        if nxt is not None:
            if self.trace is not None and nxt is not self._state:  # qlog (quic.qlog)
                self.trace(self.stream_id, True, self._state, nxt)
            self._state = nxt
            self.finished = nxt in _TERMINAL

    # ------------------------------------------------------------------ application

    def write(self, data: bytes | bytearray | memoryview, end_stream: bool = False) -> None:
        """Queue ``data``; ``end_stream`` marks the end of the stream (FIN)."""
        if self._reset_code is not None:
            raise StreamResetError(self.stream_id, self._reset_code, "stream was reset")
        if self._fin_offset is not None:
            raise StreamUsageError(f"stream {self.stream_id}: write after end of stream")
        n = len(data)
        if n:
            if self.write_offset + n > VARINT_MAX:
                raise StreamUsageError("stream offset would exceed 2^62-1")
            chunk = data if type(data) is bytes else bytes(data)
            chunks = self._chunks
            if chunks is _NO_CHUNKS:
                chunks = self._chunks = []
                self._starts = []
            if (
                n < _COALESCE_LIMIT
                and len(chunks) > self._head
                and len(chunks[-1]) < _COALESCE_LIMIT
            ):
                chunks[-1] += chunk
            else:
                chunks.append(chunk)
                self._starts.append(self.write_offset)
            self.write_offset += n
        if end_stream:
            self._fin_offset = self.write_offset

    def set_reliable_floor(self, size: int) -> None:
        """Make every later reset a RESET_STREAM_AT keeping at least the first ``size``
        bytes written reliable — the one answering STOP_SENDING included (a protocol
        above that ties a stream to its context with a header, as WebTransport does,
        draft-ietf-webtrans-http3-16 §4.4). The caller checks that the peer accepts
        RESET_STREAM_AT. ValueError beyond the data written."""
        if size < 0 or size > self.write_offset:
            raise ValueError(f"reliable floor {size} outside the {self.write_offset} bytes written")
        self._reliable_floor = size

    def reset(self, error_code: int, reliable_size: int = 0) -> bool:
        """Abandon the stream: queue RESET_STREAM (RFC 9000 §3.1, §19.4), or with a
        ``reliable_size`` RESET_STREAM_AT (draft-ietf-quic-reliable-stream-reset §5).
        The reliable size is never below the floor (:meth:`set_reliable_floor`).

        The final size is the amount of data sent so far (§4.5), or the reliable size
        if that is larger. Returns False when nothing changed: the stream is terminal or
        already reset, or a reliable reset did not lower the reliable size (§5.2). Raises
        ValueError for a reliable size beyond the data written.
        """
        if reliable_size < self._reliable_floor:
            reliable_size = self._reliable_floor
        current = self._reliable_size
        if current is not None and reliable_size >= current:
            return False  # §5.2: the reliable size never increases
        if reliable_size < 0 or reliable_size > self.write_offset:
            raise ValueError(
                f"reliable size {reliable_size} outside the {self.write_offset} bytes written"
            )
        if self._state not in _CAN_RESET:
            return False
        if current is not None:
            error_code = self._reset_code if self._reset_code is not None else error_code
        if reliable_size == 0:
            return self._reset_now(error_code)
        self._reset_code = error_code
        self._reliable_size = reliable_size
        self._reliable_acked = False
        self.reset_pending = True
        end = max(reliable_size, self.highest_sent)
        self._truncate(end)
        self._reset_final_size = end
        self._check_reliable_done()
        return True

    def _reset_now(self, error_code: int) -> bool:
        """RESET_STREAM: stop sending and retransmitting at once."""
        if self._reliable_size is None or not self._reliable_sent:
            self._reset_final_size = self.highest_sent
        self._reliable_size = None
        self._reset_code = error_code
        self.reset_pending = True
        self._fire(SendEvent.SEND_RESET)
        self._release_all()
        return True

    def _truncate(self, end: int) -> None:
        """Reliable reset: nothing at or beyond ``end`` is sent again (§5); the FIN goes
        unless it was sent (the RESET_STREAM_AT frame carries the final size)."""
        self.write_offset = end
        if not self._fin_sent:
            self._fin_offset = None
        self._fin_lost = False
        reliable = self._reliable_size
        assert reliable is not None
        if self._lost.b:
            self._lost.subtract(reliable, VARINT_MAX)
        starts = self._starts
        chunks = self._chunks
        while len(chunks) > self._head and starts[-1] >= end:
            chunks.pop()
            starts.pop()
        if len(chunks) > self._head:
            keep = end - starts[-1]
            if keep < len(chunks[-1]):
                chunks[-1] = chunks[-1][:keep]

    def _check_reliable_done(self) -> None:
        """§5.3: "Data Recvd" once the RESET_STREAM_AT with the smallest reliable size
        and every byte below that size are acknowledged."""
        reliable = self._reliable_size
        if reliable is None or not self._reliable_acked or self._acked_offset < reliable:
            return
        self._fire(_ALL_ACKED)
        self._release_all()

    def set_stop_sending_answer(self, error_code: int) -> None:
        """Answer a later STOP_SENDING with ``error_code`` instead of its own (RFC 9000
        §3.5: the reset SHOULD copy the code, "but it can use any application error
        code")."""
        self._stop_answer = error_code

    def on_stop_sending(self, error_code: int) -> bool:
        """Peer sent STOP_SENDING: reset with the same error code (RFC 9000 §3.5) or the
        one of :meth:`set_stop_sending_answer`, as a RESET_STREAM_AT when the stream has
        a reliable floor."""
        answer = self._stop_answer
        return self.reset(error_code if answer is None else answer)

    def on_max_stream_data(self, limit: int) -> bool:
        """Apply MAX_STREAM_DATA; decreases are ignored (RFC 9000 §4.1, §19.10)."""
        return self.credit.update_limit(limit)

    # ------------------------------------------------------------------ framing

    def next_frame(
        self, max_payload: int, credit: int
    ) -> tuple[int, memoryview | bytes, bool] | None:
        """Next STREAM frame payload as ``(offset, data, fin)``, or None.

        ``max_payload`` bounds the data length; ``credit`` is the connection-level
        credit, which (together with the stream credit) bounds only new data beyond
        :attr:`highest_sent`. The caller charges the connection with the growth of
        :attr:`highest_sent`.
        """
        if self._state not in _SENDING:
            return None
        if self._lost.b and max_payload > 0:
            return self._next_retransmission(max_payload)
        fin_offset = self._fin_offset
        if self._fin_lost and not self._lost.b and self.highest_sent == fin_offset:
            self._fin_lost = False
            return (fin_offset, b"", True)
        start = self.highest_sent
        n = self.write_offset - start
        if n > 0:
            avail = self.credit.max_data - start
            if credit < avail:
                avail = credit
            if max_payload < avail:
                avail = max_payload
            if avail <= 0:
                return None
            if n > avail:
                n = avail
            stop = start + n
            # _slice's common case inline: the data lies in one chunk (a 64 KiB write
            # fills ~45 packets)
            starts = self._starts
            i = bisect_right(starts, start, self._head) - 1
            chunk = self._chunks[i]
            base = starts[i]
            end = stop - base
            if end <= len(chunk):
                data: memoryview | bytes = (
                    chunk
                    if start == base and end == len(chunk)
                    else memoryview(chunk)[start - base : end]
                )
            else:
                data = self._slice(start, stop)
            self.highest_sent = stop
            self.credit.used = stop
            if stop == fin_offset:
                self._fin_sent = True
                self._fire(_SEND_FIN)
                return (start, data, True)
            if self._state is not _SEND:  # in Send, SEND_DATA changes nothing
                self._fire(_SEND_DATA)
            return (start, data, False)
        if fin_offset is not None and not self._fin_sent:
            self._fin_sent = True
            self._fire(_SEND_FIN)
            return (start, b"", True)
        return None

    def next_new_data(self, max_payload: int, credit: int) -> bytes | None:
        """:meth:`next_frame` for its bulk case, new data cut from one chunk in the Send
        state short of the final size with nothing lost to resend first: the frame's
        data, whose offset is :attr:`highest_sent` before the call. None, with nothing
        changed, in every other case (the caller then asks :meth:`next_frame`)."""
        if self._state is not _SEND or self._lost.b or self._fin_lost:
            return None
        start = self.highest_sent
        stop = self.write_offset
        limit = self.credit.max_data  # RFC 9000 §4.1: the stream's credit ...
        if limit < stop:
            stop = limit
        limit = start + credit  # ... the connection's ...
        if limit < stop:
            stop = limit
        limit = start + max_payload  # ... and the room
        if limit < stop:
            stop = limit
        if stop <= start or stop == self._fin_offset:
            return None
        starts = self._starts
        i = bisect_right(starts, start, self._head) - 1
        chunk = self._chunks[i]
        base = starts[i]
        end = stop - base
        size = len(chunk)
        if end > size:
            return None
        self.highest_sent = self.credit.used = stop
        return chunk if start == base and end == size else chunk[start - base : end]

    def next_new_run(self, size: int, count: int) -> list[bytes | memoryview]:
        """:meth:`next_new_data` ``count`` times for ``size`` bytes each, where the
        caller made sure that every piece ends short of the write offset, the stream's
        credit and the connection's: the pieces, in order, up to the first that is not
        within one chunk (empty: nothing changed). A piece that is not a whole chunk is
        a memoryview of it: the caller copies it once, with its frame header."""
        if self._state is not _SEND or self._lost.b or self._fin_lost or count < 1:
            return []
        start = self.highest_sent
        starts = self._starts
        chunks = self._chunks
        i = bisect_right(starts, start, self._head) - 1
        pieces: list[bytes | memoryview] = []
        append = pieces.append
        while True:
            chunk = chunks[i]
            first = start - starts[i]
            left = len(chunk) - first
            k = left // size  # whole pieces in this chunk
            if k > count:
                k = count
            if k == 1 and first == 0 and left == size:
                append(chunk)
            else:
                view = memoryview(chunk)
                for at in range(first, first + k * size, size):
                    append(view[at : at + size])
            start += k * size
            count -= k
            if not count or left != k * size:
                break  # done, or the next piece would cross into the next chunk
            i += 1  # the chunk ends exactly here: the next piece starts the next one
        if pieces:
            self.highest_sent = self.credit.used = start
        return pieces

    def _next_retransmission(self, max_payload: int) -> tuple[int, memoryview | bytes, bool]:
        b = self._lost.b
        start = b[0]
        stop = b[1]
        if stop - start > max_payload:
            stop = start + max_payload
        self._lost.subtract(start, stop)
        data = self._slice(start, stop)
        fin = stop == self._fin_offset and not self._fin_acked
        if fin:
            # Carry the FIN again (it was lost or may be), or for the first time when
            # the end of stream was written after this data went out.
            self._fin_lost = False
            if not self._fin_sent:
                self._fin_sent = True
                self._fire(_SEND_FIN)
        return (start, data, fin)

    def _slice(self, start: int, stop: int) -> memoryview | bytes:
        starts = self._starts
        chunks = self._chunks
        i = bisect_right(starts, start, self._head) - 1
        chunk = chunks[i]
        base = starts[i]
        if stop <= base + len(chunk):
            if start == base and stop == base + len(chunk):
                return chunk
            return memoryview(chunk)[start - base : stop - base]
        parts = [memoryview(chunk)[start - base :]]
        pos = base + len(chunk)
        while pos < stop:
            i += 1
            chunk = chunks[i]
            take = stop - pos
            parts.append(memoryview(chunk)[:take] if take < len(chunk) else memoryview(chunk))
            pos += len(chunk)
        return b"".join(parts)

    def blocked_frame(self) -> int | None:
        """Limit for a STREAM_DATA_BLOCKED frame if we are blocked by stream credit
        and have not reported this limit yet (RFC 9000 §4.1, §19.13); marks it sent."""
        if self._state not in (SendState.READY, SendState.SEND):
            return None
        if self.write_offset <= self.highest_sent:
            return None
        limit = self.credit.blocked_at
        if limit is None:
            return None
        self.credit.mark_blocked_sent()
        self._fire(SendEvent.SEND_DATA)
        return limit

    def on_blocked_lost(self, limit: int) -> None:
        self.credit.on_blocked_lost(limit)

    def reset_frame(self) -> tuple[int, int, int | None] | None:
        """Pending RESET_STREAM as ``(error_code, final_size, None)`` or RESET_STREAM_AT
        as ``(error_code, final_size, reliable_size)``, or None. A RESET_STREAM_AT waits
        until every byte below its final size was sent once (§4: within the credit)."""
        if not self.reset_ready or self._reset_code is None:
            return None
        self.reset_pending = False
        reliable = self._reliable_size
        if reliable is not None:
            self._reliable_sent = True
            self._fire(SendEvent.SEND_RESET_AT)
        return (self._reset_code, self._reset_final_size, reliable)

    # ------------------------------------------------------------------ fate of frames

    def on_acked(self, offset: int, length: int, fin: bool) -> int:
        """A STREAM frame (offset, length, fin) was acknowledged; returns
        :attr:`buffered` (the caller's next question, without the property call: 0 in
        a terminal state)."""
        if self._state not in _SENDING:
            return 0
        stop = offset + length
        if length and stop > self._acked_offset:
            if self._lost.b:
                self._lost.subtract(offset, stop)
            acked = self._acked
            b = acked.b
            if not b and offset <= self._acked_offset:  # in order: the common case
                self._acked_offset = stop
                chunks = self._chunks
                head = self._head
                # most ACKs end inside the oldest chunk (a 64 KiB write spans ~45
                # packets): _release_to only when it is done with, and not when this
                # ACK ends the stream (_release_all below drops every chunk)
                if (
                    head < len(chunks)
                    and self._starts[head] + len(chunks[head]) <= stop
                    and not (fin and stop == self._fin_offset)
                ):
                    self._release_to(stop)
            else:
                if acked is _NO_RANGES:
                    acked = self._acked = _RangeList()
                    b = acked.b
                acked.add(offset, stop)
                if b[0] <= self._acked_offset:
                    self._acked_offset = b[1]
                    del b[:2]
                    self._release_to(self._acked_offset)
        if fin:
            self._fin_acked = True
            self._fin_lost = False
        if self._fin_acked and self._acked_offset == self._fin_offset:
            self._fire(_ALL_ACKED)
            self._release_all()
        elif self._reliable_size is not None:
            self._check_reliable_done()
        else:  # still sending: no state change on this path
            return self.write_offset - self._acked_offset
        return self.write_offset - self._acked_offset if self._state in _SENDING else 0

    def on_lost(self, offset: int, length: int, fin: bool) -> None:
        """A STREAM frame (offset, length, fin) was declared lost: schedule a resend."""
        if self._state not in _SENDING:
            return
        start = offset if offset > self._acked_offset else self._acked_offset
        stop = offset + length
        reliable = self._reliable_size
        if reliable is not None:
            # draft-ietf-quic-reliable-stream-reset §5: only bytes below the reliable
            # size are sent again (the final size travels in RESET_STREAM_AT)
            fin = False
            if stop > reliable:
                stop = reliable
        if stop > start:
            lost = self._lost
            for s, e in self._acked.gaps(start, stop):
                if lost is _NO_RANGES:
                    lost = self._lost = _RangeList()
                lost.add(s, e)
        if fin and not self._fin_acked:
            self._fin_lost = True

    def on_reset_acked(self, reliable_size: int | None = None) -> None:
        """The RESET_STREAM (``reliable_size`` None) or RESET_STREAM_AT frame was
        acknowledged."""
        if reliable_size is None:
            self._fire(SendEvent.RESET_ACKED)
        elif reliable_size == self._reliable_size and self._state in _SENDING:
            self._reliable_acked = True
            self._check_reliable_done()

    def on_reset_lost(self, reliable_size: int | None = None) -> None:
        """The RESET_STREAM / RESET_STREAM_AT frame was lost: send it again unless a
        newer frame replaced it or the stream is done (§4)."""
        if reliable_size is None:
            if self._state is SendState.RESET_SENT:
                self.reset_pending = True
        elif (
            reliable_size == self._reliable_size
            and self._state in _SENDING
            and not self._reliable_acked
        ):
            self.reset_pending = True

    # ------------------------------------------------------------------ buffer release

    def _release_to(self, offset: int) -> None:
        chunks = self._chunks
        starts = self._starts
        head = self._head
        n = len(chunks)
        while head < n and starts[head] + len(chunks[head]) <= offset:
            chunks[head] = b""
            head += 1
        if head > 32 and head * 2 > n:
            del chunks[:head]
            del starts[:head]
            head = 0
        self._head = head

    def _release_all(self) -> None:
        self._chunks = _NO_CHUNKS
        self._starts = _NO_STARTS
        self._head = 0
        self._lost = _NO_RANGES
        self._acked = _NO_RANGES
        self._fin_lost = False
