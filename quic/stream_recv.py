"""The receiving half of a QUIC stream (RFC 9000 §2.2, §3.2, §3.5, §4.5, §19.4, §19.8).

Theory of operation
-------------------
Reassembly keeps two structures:

* ``_ready``: a deque of ``bytes`` holding the contiguous data from the application's
  read offset up to ``_recv_offset`` (the first missing byte); ``None`` while empty (an
  idle stream holds no deque: ~760 bytes each, issue 10 memory per idle session);
* ``_ooo``: a :class:`ReassemblyBuffer` with the out-of-order data beyond
  ``_recv_offset``; ``None`` while there is none (made by the first out-of-order
  frame, let go once the data caught up: ~380 bytes per stream an idle connection
  does not hold, issue 10).

The bulk case, the next bytes in order on a stream with nothing out of order, no
final size and no reset, goes straight to ``_ready`` in one test
(:meth:`RecvStream.on_stream_frame`'s first branch); everything else takes the general
path below, which does the same for that case.

The out-of-order store is a :class:`~quic.reassembly.ReassemblyBuffer` (see
:mod:`quic.reassembly` for its cost and memory bounds); every stream of a connection
charges one shared :class:`~quic.reassembly.ReassemblyBudget`.

Final size rules (RFC 9000 §4.5): once a FIN or RESET_STREAM fixed the final size, a
different final size or data beyond it is FINAL_SIZE_ERROR, and a final size below
data already received is FINAL_SIZE_ERROR too.

Every input returns how far the stream's highest received offset moved, which the
connection adds to its own receive window (connection flow control counts the largest
offset of every stream). Bytes that leave the buffer without being returned by
:meth:`RecvStream.read` (discarded after a reset or after ``stop_sending``) are
reported through :meth:`RecvStream.pop_released` so the connection can credit them.

A reset that arrives after all data was received is suppressed and the data stays
readable (§3.2 allows this); otherwise buffered data is dropped and :meth:`read`
raises :class:`~quic.errors.StreamResetError` once, moving to "Reset Read".

RESET_STREAM_AT (draft-ietf-quic-reliable-stream-reset) is a reset that still delivers
the first ``reliable_size`` bytes. Like a FIN it fixes the final size and moves the
stream to "Size Known" (§5.3); data up to the reliable size keeps arriving and is
delivered, data beyond it is not kept. Once every byte below the reliable size has
arrived the reset takes effect as above, except that the contiguous bytes below the
reliable size stay readable: :meth:`read` returns them first and raises the reset
after. A later reset may lower the reliable size, never raise it (a higher one is
ignored, §5.2); RESET_STREAM counts as a reliable size of 0; a different error code
after a RESET_STREAM_AT is STREAM_STATE_ERROR and a different final size
FINAL_SIZE_ERROR (§5.2); a reliable size beyond the final size is refused by the codec
(FRAME_ENCODING_ERROR, §4).

States follow RFC 9000 §3.2, driven by the ``_TRANSITIONS`` table.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import Enum

from quic.errors import QuicProtocolError, StreamResetError, TransportErrorCode
from quic.flow_control import ReceiveWindow
from quic.reassembly import (
    DEFAULT_MAX_REASSEMBLY_BYTES,
    DEFAULT_MAX_REASSEMBLY_FRAGMENTS,
    DEFAULT_MAX_STREAM_FRAGMENTS,
    SMALL_CHUNK,
    ReassemblyBudget,
    ReassemblyBuffer,
)

__all__ = [
    "CRYPTO_MIN_BUFFER",
    "DEFAULT_CRYPTO_BUFFERS",
    "DEFAULT_MAX_CRYPTO_FRAGMENTS",
    "DEFAULT_MAX_REASSEMBLY_BYTES",
    "DEFAULT_MAX_REASSEMBLY_FRAGMENTS",
    "DEFAULT_MAX_STREAM_FRAGMENTS",
    "SMALL_CHUNK",
    "CryptoRecvStream",
    "ReassemblyBudget",
    "ReassemblyBuffer",
    "RecvEvent",
    "RecvState",
    "RecvStream",
]

#: CRYPTO data every endpoint must buffer out of order (RFC 9000 §7.5).
CRYPTO_MIN_BUFFER = 4096
#: CRYPTO data buffered beyond the first missing byte per level: Initial, Handshake,
#: application (RFC 9000 §7.5). Initial carries one ClientHello or ServerHello and is
#: open to anyone (spoofable), Handshake the certificate chain, 1-RTT session tickets.
DEFAULT_CRYPTO_BUFFERS = (16 * 1024, 256 * 1024, 64 * 1024)
#: Out-of-order CRYPTO fragments (holes) per level (RFC 9000 §7.5, §21.7).
DEFAULT_MAX_CRYPTO_FRAGMENTS = 128


class RecvState(Enum):
    """Receiving-part states, RFC 9000 §3.2 (Figure 3)."""

    RECV = "Recv"
    SIZE_KNOWN = "Size Known"
    DATA_RECVD = "Data Recvd"
    DATA_READ = "Data Read"
    RESET_RECVD = "Reset Recvd"
    RESET_READ = "Reset Read"

    # Members are singletons: identity hashing is exact and, unlike Enum.__hash__
    # (Python code), costs nothing on the per-packet state-table lookups.
    __hash__ = object.__hash__


class RecvEvent(Enum):
    """Events of the receiving state machine."""

    RECV_FIN = "recv STREAM + FIN"
    ALL_DATA = "recv all data"
    READ_ALL = "app read all data"
    RECV_RESET = "recv RESET_STREAM"
    READ_RESET = "app read reset"

    # Members are singletons: identity hashing is exact and, unlike Enum.__hash__
    # (Python code), costs nothing on the per-packet state-table lookups.
    __hash__ = object.__hash__


_S = RecvState
_E = RecvEvent

# RFC 9000 §3.2 as data. A reset in "Data Recvd" is suppressed (the optional arrow).
_TRANSITIONS: dict[RecvState, dict[RecvEvent, RecvState]] = {
    _S.RECV: {_E.RECV_FIN: _S.SIZE_KNOWN, _E.RECV_RESET: _S.RESET_RECVD},
    _S.SIZE_KNOWN: {_E.ALL_DATA: _S.DATA_RECVD, _E.RECV_RESET: _S.RESET_RECVD},
    _S.DATA_RECVD: {_E.READ_ALL: _S.DATA_READ},
    _S.DATA_READ: {},
    _S.RESET_RECVD: {_E.READ_RESET: _S.RESET_READ},
    _S.RESET_READ: {},
}

_TERMINAL = frozenset((_S.DATA_READ, _S.RESET_READ))
_RECEIVING = frozenset((_S.RECV, _S.SIZE_KNOWN))
_RECV = _S.RECV  # a module alias: Enum class attributes are slow on Python 3.11
_DATA_RECVD = _S.DATA_RECVD
_READ_ALL = _E.READ_ALL  # per stream: its last read
_RECV_FIN = _E.RECV_FIN
_ALL_DATA = _E.ALL_DATA
_RESET = frozenset((_S.RESET_RECVD, _S.RESET_READ))
_new_object = object.__new__


def _final_size_error(reason: str) -> QuicProtocolError:
    return QuicProtocolError(TransportErrorCode.FINAL_SIZE_ERROR, reason)


class RecvStream:
    """Receive half of a stream: reassembly, final size, flow control (RFC 9000 §3.2)."""

    __slots__ = (
        "_budget",
        "_discarding",
        "_final_size",
        "_limit_error",
        "_max_fragments",
        "_ooo",
        "_read_offset",
        "_ready",
        "_ready_len",
        "_recv_offset",
        "_released",
        "_reliable_size",
        "_reset_at",
        "_reset_code",
        "_state",
        "_stop_code",
        "_stop_pending",
        "_uncredited",
        "stream_id",
        "trace",
        "window",
    )

    def __init__(
        self,
        stream_id: int = 0,
        max_stream_data: int = 0,
        max_window: int | None = None,
        max_fragments: int = DEFAULT_MAX_STREAM_FRAGMENTS,
        budget: ReassemblyBudget | None = None,
        *,
        limit_error: int = TransportErrorCode.PROTOCOL_VIOLATION,
    ) -> None:
        """``max_fragments`` bounds the holes of this stream, ``budget`` (shared by the
        streams of a connection) the out-of-order bytes and holes of all of them;
        ``limit_error`` is the error code of a frame refused by either (RFC 9000 §21.7;
        CRYPTO_BUFFER_EXCEEDED for CRYPTO streams, §7.5)."""
        self.stream_id = stream_id
        # ReceiveWindow(max_stream_data, max_window) without its __init__ frame (per
        # stream; tests/quic/test_stream_inits.py keeps every slot as __init__ sets it)
        if max_stream_data < 0:
            raise ValueError("window must be non-negative")
        self.window = window = _new_object(ReceiveWindow)
        window.window = window.max_data = window._prev_limit = max_stream_data
        window.max_window = (
            max_stream_data if max_window is None or max_window < max_stream_data else max_window
        )
        window.highest_received = window.consumed = 0
        window._epoch_start = None
        window._now = window._rtt = 0.0
        window.resend = False
        self._state = _RECV
        self.trace: Callable[[int, bool, Enum, Enum], None] | None = None
        self._ready: deque[bytes] | None = None  # created by data, dropped when drained
        self._ready_len = 0
        self._read_offset = 0
        self._recv_offset = 0
        self._ooo: ReassemblyBuffer | None = None  # see the module docstring
        self._max_fragments = max_fragments
        self._budget = budget
        self._limit_error = limit_error
        self._final_size: int | None = None
        self._reset_code: int | None = None
        self._stop_code: int | None = None
        self._stop_pending = False
        self._discarding = False
        self._released = 0
        self._uncredited = 0  # read out (delivered) but not yet consumed by the application
        self._reliable_size: int | None = None  # a RESET_STREAM_AT's (smallest) one
        self._reset_at = False  # a RESET_STREAM_AT was received

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> RecvState:
        return self._state

    @property
    def is_finished(self) -> bool:
        """True in a terminal state (Data Read or Reset Read) with nothing left that the
        application has yet to consume."""
        return self._state in _TERMINAL and not self._uncredited

    @property
    def uncredited(self) -> int:
        """Bytes read out with ``credit=False`` that the application has not consumed."""
        return self._uncredited

    @property
    def readable(self) -> int:
        """Contiguous bytes ready for :meth:`read`."""
        return self._ready_len

    @property
    def at_eof(self) -> bool:
        """All data up to the final size has been read."""
        return self._final_size is not None and self._read_offset == self._final_size

    @property
    def final_size(self) -> int | None:
        return self._final_size

    @property
    def read_offset(self) -> int:
        return self._read_offset

    @property
    def highest_received(self) -> int:
        return self.window.highest_received

    @property
    def fragments(self) -> int:
        """Out-of-order segments held: the number of holes after the first missing byte."""
        ooo = self._ooo
        return 0 if ooo is None else len(ooo.starts)

    @property
    def out_of_order_bytes(self) -> int:
        """Bytes held beyond the first missing byte."""
        ooo = self._ooo
        return 0 if ooo is None else ooo.nbytes

    @property
    def reassembly(self) -> ReassemblyBuffer:
        """The out-of-order store (read-only use: accounting, tests); an empty one,
        not kept, while nothing is out of order."""
        ooo = self._ooo
        if ooo is None:
            return ReassemblyBuffer(self._max_fragments, self._budget, self._limit_error)
        return ooo

    @property
    def reset_error_code(self) -> int | None:
        return self._reset_code

    @property
    def is_reset(self) -> bool:
        return self._state in _RESET

    @property
    def reliable_size(self) -> int:
        """Bytes a reset still delivers: a RESET_STREAM_AT's reliable size, else 0."""
        return self._reliable_size or 0

    def _fire(self, event: RecvEvent) -> None:
        nxt = _TRANSITIONS[self._state].get(event)
        if nxt is not None:
            if self.trace is not None and nxt is not self._state:  # qlog (quic.qlog)
                self.trace(self.stream_id, False, self._state, nxt)
            self._state = nxt

    # ------------------------------------------------------------------ network input

    def on_stream_frame(self, offset: int, data: bytes | bytearray | memoryview, fin: bool) -> int:
        """Process a STREAM frame; return the growth of the highest received offset."""
        end = offset + len(data)
        window = self.window
        if (
            offset == self._recv_offset
            and end > offset
            and (not fin or (end >= window.highest_received and self.trace is None))
            and type(data) is bytes
            and self._state is _RECV
            and self._final_size is None
            and self._reliable_size is None
            and self._ooo is None
            and not self._discarding
            and end <= window.max_data
        ):
            # The bulk case: the next bytes in order, nothing held out of order, no
            # final size or reset yet: what the general path below does, in short.
            # Also a whole message with its FIN (a short exchange's one frame).
            ready = self._ready
            if ready is None:
                ready = self._ready = deque()
            ready.append(data)
            self._recv_offset = end
            self._ready_len += end - offset
            if fin:  # every byte is in: Recv -> Size Known -> Data Recvd at once (§3.2)
                self._final_size = end
                self._state = _DATA_RECVD
            highest = window.highest_received
            if end > highest:
                window.highest_received = end
                return end - highest
            return 0
        final_size = self._final_size
        # RFC 9000 §4.5: the final size cannot change, and no data lies beyond it.
        if final_size is not None:
            if end > final_size:
                raise _final_size_error(f"data up to {end} beyond final size {final_size}")
            if fin and end != final_size:
                raise _final_size_error(f"FIN changes final size {final_size} to {end}")
        elif fin and end < self.window.highest_received:
            raise _final_size_error(
                f"final size {end} below received offset {self.window.highest_received}"
            )
        window = self.window
        if end > window.max_data:
            window.on_data(end)  # raises FLOW_CONTROL_ERROR, RFC 9000 §4.1
        if self._state not in _RECEIVING:
            return window.on_data(end)  # late or duplicate data (§3.2): discarded
        # Storing may be refused (reassembly limits): before anything else changes.
        # After a RESET_STREAM_AT nothing beyond its reliable size is kept.
        reliable = self._reliable_size
        keep = end if reliable is None or reliable >= end else reliable
        if keep > self._recv_offset and keep > offset:
            if keep < end:
                data = memoryview(data)[: keep - offset]
            if offset <= self._recv_offset:
                self._append(offset, data)
            else:
                ooo = self._ooo
                if ooo is None:
                    ooo = self._ooo = ReassemblyBuffer(
                        self._max_fragments, self._budget, self._limit_error
                    )
                ooo.insert(offset, data)
        highest = window.highest_received  # window.on_data(end), whose limit check
        delta = 0  # passed above
        if end > highest:
            window.highest_received = end
            delta = end - highest
        if fin and final_size is None:
            self._final_size = final_size = end
            self._fire(_RECV_FIN)
        if reliable is not None:
            self._maybe_apply_reset()
        if final_size is not None and self._recv_offset == final_size:
            self._fire(_ALL_DATA)
        if self._discarding:
            self._discard_ready()
        return delta

    def _append(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        recv = self._recv_offset
        chunk: bytes
        if offset == recv and type(data) is bytes:
            chunk = data
        else:
            chunk = bytes(memoryview(data)[recv - offset :])
        ready = self._ready
        if ready is None:
            ready = self._ready = deque()
        ready.append(chunk)
        end = recv + len(chunk)
        ooo = self._ooo
        if ooo is not None and (starts := ooo.starts) and starts[0] <= end:
            # segments now reached move to the ready queue (their overlap is dropped)
            new_end = ooo.pop_reached(end, ready)
            if not ooo.starts:
                self._ooo = None  # caught up: the store goes (see the module docstring)
        else:
            new_end = end
        self._recv_offset = new_end
        self._ready_len += new_end - recv

    def on_reset(
        self, error_code: int, final_size: int, reliable_size: int = 0, *, at: bool = False
    ) -> int:
        """Process RESET_STREAM (RFC 9000 §3.2, §19.4) or, with ``at``, RESET_STREAM_AT
        (draft-ietf-quic-reliable-stream-reset §4, §5); return the flow-control delta."""
        known = self._final_size
        if known is not None and final_size != known:
            raise _final_size_error(f"reset changes final size {known} to {final_size}")
        if final_size < self.window.highest_received:
            raise _final_size_error(
                f"reset final size {final_size} below received offset "
                f"{self.window.highest_received}"
            )
        delta = self.window.on_data(final_size)  # FLOW_CONTROL_ERROR, RFC 9000 §4.1
        previous = self._reset_code
        if previous is not None and error_code != previous and (at or self._reset_at):
            # draft-ietf-quic-reliable-stream-reset §5.2
            raise QuicProtocolError(
                TransportErrorCode.STREAM_STATE_ERROR,
                f"reset changes error code {previous} to {error_code}",
            )
        if self._state not in _RECEIVING:
            return delta  # already reset, or all data received (§3.2: suppressed)
        current = self._reliable_size
        if current is not None and reliable_size >= current:
            return delta  # §5.2: a larger reliable size is ignored
        self._reset_code = error_code
        self._reliable_size = reliable_size
        self._reset_at = self._reset_at or at
        if known is None:
            self._final_size = final_size
            self._fire(_RECV_FIN)  # §5.3: "Size Known"
        self._maybe_apply_reset()
        return delta

    def _maybe_apply_reset(self) -> None:
        """The reset takes effect once every byte below the reliable size has arrived:
        later bytes are dropped and released to the connection; the contiguous bytes
        below the reliable size stay readable."""
        reliable = self._reliable_size
        if reliable is None or self._recv_offset < reliable or self._state not in _RECEIVING:
            return
        final = self._final_size
        assert final is not None
        read_offset = self._read_offset
        keep = reliable - read_offset
        if keep < self._ready_len:
            self._truncate_ready(keep if keep > 0 else 0)
        ready_end = read_offset + self._ready_len
        self._released += final - ready_end
        if self._ooo is not None:
            self._ooo.clear()
            self._ooo = None
        self._stop_pending = False
        if not self._ready_len:
            self._read_offset = final
        self._recv_offset = final
        self._fire(RecvEvent.RECV_RESET)

    def _truncate_ready(self, keep: int) -> None:
        """Drop the ready bytes after the first ``keep``."""
        ready = self._ready
        if ready is None:  # nothing ready (``keep`` may be negative: below the read offset)
            return
        excess = self._ready_len - keep
        while excess:
            last = ready[-1]
            if len(last) <= excess:
                ready.pop()
                excess -= len(last)
            else:
                ready[-1] = last[: len(last) - excess]
                excess = 0
        self._ready_len = keep
        if not keep:
            self._ready = None

    # ------------------------------------------------------------------ application

    def read(
        self, max_bytes: int = -1, *, now: float = 0.0, rtt: float = 0.0, credit: bool = True
    ) -> bytes:
        """Return up to ``max_bytes`` contiguous bytes (all when negative).

        Raises :class:`StreamResetError` when the peer reset the stream (first call
        moves the state to "Reset Read"). ``now`` and ``rtt`` feed window auto-tuning.
        With ``credit=False`` the bytes leave the buffer (they are handed to a consumer)
        but flow-control credit is only returned by :meth:`consume` (RFC 9000 §4.2:
        credit follows what the application has consumed).
        """
        if self._state in _RESET and not self._ready_len:
            self._fire(RecvEvent.READ_RESET)
            self._read_offset = self._final_size or self._read_offset
            code = self._reset_code if self._reset_code is not None else 0
            raise StreamResetError(self.stream_id, code, "stream reset by peer")
        avail = self._ready_len
        take = avail if max_bytes < 0 or max_bytes > avail else max_bytes
        data = self._take(take)
        if take:
            if credit:
                self.window.on_consumed(take, now, rtt)
            else:
                self._uncredited += take
        if self._state is _DATA_RECVD and self._read_offset == self._final_size:
            self._fire(_READ_ALL)
        return data

    def _take(self, take: int) -> bytes:
        if not take:
            return b""
        ready = self._ready
        assert ready is not None  # take <= _ready_len
        if take == self._ready_len and len(ready) > 1:
            # all of it (a bulk delivery: one chunk per packet of the batch): one join
            self._ready_len = 0
            self._read_offset += take
            self._ready = None  # drained: an idle stream holds no deque
            return b"".join(ready)
        self._ready_len -= take
        self._read_offset += take
        first = ready[0]
        if len(first) == take:
            ready.popleft()
            if not ready:
                self._ready = None  # drained: an idle stream holds no deque
            return first
        if len(first) > take:
            ready[0] = first[take:]
            return first[:take]
        parts: list[bytes] = []
        while take:
            chunk = ready[0]
            if len(chunk) <= take:
                parts.append(ready.popleft())
                take -= len(chunk)
            else:
                parts.append(chunk[:take])
                ready[0] = chunk[take:]
                take = 0
        if not ready:
            self._ready = None
        return b"".join(parts)

    def consume(self, n: int, now: float, rtt: float) -> int:
        """The consumer is done with ``n`` bytes read with ``credit=False``: return their
        credit to the stream window. Returns the bytes actually credited (at most what
        is outstanding)."""
        n = min(n, self._uncredited)
        if n > 0:
            self._uncredited -= n
            self.window.on_consumed(n, now, rtt)
            return n
        return 0

    def release_uncredited(self) -> int:
        """Credit everything still outstanding (the consumer dropped it: a reset, a stop
        of reading); returns how many bytes that was."""
        n = self._uncredited
        if n:
            self._uncredited = 0
            self.window.consumed += n
        return n

    def stop_sending(self, error_code: int) -> bool:
        """The application stops reading (RFC 9000 §3.5): buffered and future data is
        discarded; a STOP_SENDING frame is queued while the peer may still send.

        Returns True when a STOP_SENDING frame was queued.
        """
        if self._state in _RESET or self._discarding:
            return False
        self._discarding = True
        self._discard_ready()
        if self._state in _RECEIVING:
            self._stop_code = error_code
            self._stop_pending = True
            return True
        return False

    def _discard_ready(self) -> None:
        n = self._ready_len
        if n:
            self._take(n)
            self._released += n
            self.window.consumed += n
        if self._state is _DATA_RECVD:
            self._fire(_READ_ALL)

    def pop_released(self) -> int:
        """Bytes released without being read (reset, discard) since the last call;
        the connection adds them to its consumed count."""
        n = self._released
        self._released = 0
        return n

    # ------------------------------------------------------------------ control frames

    def max_stream_data_frame(self) -> int | None:
        """New MAX_STREAM_DATA limit to send, or None (only in "Recv", RFC 9000 §3.2)."""
        if self._state is not RecvState.RECV or self._discarding:
            return None
        if not self.window.should_update():
            return None
        return self.window.next_limit()

    def on_max_stream_data_lost(self, limit: int) -> None:
        if self._state is RecvState.RECV and not self._discarding:
            self.window.on_update_lost(limit)

    def stop_sending_frame(self) -> int | None:
        """Error code for a pending STOP_SENDING frame, or None."""
        if not self._stop_pending:
            return None
        self._stop_pending = False
        return self._stop_code

    def on_stop_sending_lost(self) -> None:
        # RFC 9000 §3.5: resend only while the peer may still be sending.
        if self._stop_code is not None and self._state in _RECEIVING:
            self._stop_pending = True


class CryptoRecvStream(RecvStream):
    """The receiving half of one encryption level's CRYPTO stream (RFC 9000 §7.5, §19.6).

    CRYPTO data has no flow control; ``buffer`` bounds the data held beyond the first
    missing byte: the limit slides forward as the TLS engine takes the contiguous
    bytes (:meth:`read`). Out-of-order holes are bounded by ``max_fragments``. Beyond
    either: CRYPTO_BUFFER_EXCEEDED (RFC 9000 §7.5).
    """

    __slots__ = ()

    def __init__(self, buffer: int, max_fragments: int = DEFAULT_MAX_CRYPTO_FRAGMENTS) -> None:
        super().__init__(
            -1,
            buffer,
            max_fragments=max_fragments,
            limit_error=TransportErrorCode.CRYPTO_BUFFER_EXCEEDED,
        )

    def on_stream_frame(self, offset: int, data: bytes | bytearray | memoryview, fin: bool) -> int:
        """Process a CRYPTO frame (``fin`` is always False)."""
        if offset + len(data) > self.window.max_data:
            raise QuicProtocolError(
                TransportErrorCode.CRYPTO_BUFFER_EXCEEDED,
                f"CRYPTO data up to {offset + len(data)} beyond {self.window.max_data}",
            )
        return super().on_stream_frame(offset, data, fin)

    def read(
        self, max_bytes: int = -1, *, now: float = 0.0, rtt: float = 0.0, credit: bool = True
    ) -> bytes:
        data = super().read(max_bytes, now=now, rtt=rtt, credit=credit)
        window = self.window
        limit = window.consumed + window.window
        if limit > window.max_data:
            window.max_data = limit
        return data
