"""The receiving half of a QUIC stream (RFC 9000 §2.2, §3.2, §3.5, §4.5, §19.4, §19.8).

Theory of operation
-------------------
Reassembly keeps two structures:

* ``_ready``: a deque of ``bytes`` holding the contiguous data from the application's
  read offset up to ``_recv_offset`` (the first missing byte);
* ``_ooo``: out-of-order segments beyond ``_recv_offset``, stored as
  ``{start: bytes}`` with a sorted list of starts. Segments never overlap: an incoming
  frame is trimmed against what is already held, so duplicates and overlaps cost only
  the bisect (RFC 9000 §2.2: data already received can be discarded).

When a frame extends ``_recv_offset`` the following out-of-order segments that became
contiguous are moved to ``_ready``. Memory is bounded by the stream's receive window:
every byte buffered lies below the advertised limit, which is checked first
(FLOW_CONTROL_ERROR, RFC 9000 §4.1).

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

States follow RFC 9000 §3.2, driven by the ``_TRANSITIONS`` table.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from enum import Enum

from quic.errors import QuicProtocolError, StreamResetError, TransportErrorCode
from quic.flow_control import ReceiveWindow

__all__ = ["RecvEvent", "RecvState", "RecvStream"]


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
_RESET = frozenset((_S.RESET_RECVD, _S.RESET_READ))


def _final_size_error(reason: str) -> QuicProtocolError:
    return QuicProtocolError(TransportErrorCode.FINAL_SIZE_ERROR, reason)


class RecvStream:
    """Receive half of a stream: reassembly, final size, flow control (RFC 9000 §3.2)."""

    __slots__ = (
        "_discarding",
        "_final_size",
        "_ooo",
        "_ooo_starts",
        "_read_offset",
        "_ready",
        "_ready_len",
        "_recv_offset",
        "_released",
        "_reset_code",
        "_state",
        "_stop_code",
        "_stop_pending",
        "_uncredited",
        "stream_id",
        "window",
    )

    def __init__(
        self, stream_id: int = 0, max_stream_data: int = 0, max_window: int | None = None
    ) -> None:
        self.stream_id = stream_id
        self.window = ReceiveWindow(max_stream_data, max_window)
        self._state = RecvState.RECV
        self._ready: deque[bytes] = deque()
        self._ready_len = 0
        self._read_offset = 0
        self._recv_offset = 0
        self._ooo: dict[int, bytes] = {}
        self._ooo_starts: list[int] = []
        self._final_size: int | None = None
        self._reset_code: int | None = None
        self._stop_code: int | None = None
        self._stop_pending = False
        self._discarding = False
        self._released = 0
        self._uncredited = 0  # read out (delivered) but not yet consumed by the application

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
    def reset_error_code(self) -> int | None:
        return self._reset_code

    @property
    def is_reset(self) -> bool:
        return self._state in _RESET

    def _fire(self, event: RecvEvent) -> None:
        nxt = _TRANSITIONS[self._state].get(event)
        if nxt is not None:
            self._state = nxt

    # ------------------------------------------------------------------ network input

    def on_stream_frame(self, offset: int, data: bytes | bytearray | memoryview, fin: bool) -> int:
        """Process a STREAM frame; return the growth of the highest received offset."""
        end = offset + len(data)
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
        delta = self.window.on_data(end)  # FLOW_CONTROL_ERROR, RFC 9000 §4.1
        if self._state not in _RECEIVING:
            return delta  # late or duplicate data (§3.2): discarded after the checks
        if fin and final_size is None:
            self._final_size = final_size = end
            self._fire(RecvEvent.RECV_FIN)
        if end > self._recv_offset and end > offset:
            if offset <= self._recv_offset:
                self._append(offset, data)
            else:
                self._insert(offset, data)
        if final_size is not None and self._recv_offset == final_size:
            self._fire(RecvEvent.ALL_DATA)
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
        ready.append(chunk)
        recv += len(chunk)
        added = len(chunk)
        starts = self._ooo_starts
        if starts and starts[0] <= recv:
            ooo = self._ooo
            k = 0
            n = len(starts)
            while k < n and starts[k] <= recv:
                s = starts[k]
                seg = ooo.pop(s)
                e = s + len(seg)
                if e > recv:
                    part = seg if s == recv else seg[recv - s :]
                    ready.append(part)
                    added += len(part)
                    recv = e
                k += 1
            del starts[:k]
        self._recv_offset = recv
        self._ready_len += added

    def _insert(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Store an out-of-order segment, keeping only bytes not already held."""
        starts = self._ooo_starts
        ooo = self._ooo
        end = offset + len(data)
        i = bisect_right(starts, offset)
        cursor = offset
        if i:
            prev = starts[i - 1]
            prev_end = prev + len(ooo[prev])
            if prev_end >= end:
                return  # entirely duplicate
            if prev_end > cursor:
                cursor = prev_end
        j = i
        n = len(starts)
        pieces: list[tuple[int, int]] = []
        while j < n and starts[j] < end:
            s = starts[j]
            if s > cursor:
                pieces.append((cursor, s))
            e = s + len(ooo[s])
            if e > cursor:
                cursor = e
            j += 1
        if cursor < end:
            pieces.append((cursor, end))
        if not pieces:
            return
        if len(pieces) == 1 and pieces[0] == (offset, end) and type(data) is bytes:
            ooo[offset] = data
        else:
            view = memoryview(data)
            for s, e in pieces:
                ooo[s] = bytes(view[s - offset : e - offset])
        new_starts = [s for s, _ in pieces]
        if j > i:
            new_starts = sorted(starts[i:j] + new_starts)
        starts[i:j] = new_starts

    def on_reset(self, error_code: int, final_size: int) -> int:
        """Process RESET_STREAM (RFC 9000 §3.2, §19.4); return the flow-control delta."""
        known = self._final_size
        if known is not None and final_size != known:
            raise _final_size_error(f"RESET_STREAM changes final size {known} to {final_size}")
        if final_size < self.window.highest_received:
            raise _final_size_error(
                f"RESET_STREAM final size {final_size} below received offset "
                f"{self.window.highest_received}"
            )
        delta = self.window.on_data(final_size)  # FLOW_CONTROL_ERROR, RFC 9000 §4.1
        if self._state in _RECEIVING:
            self._final_size = final_size
            self._reset_code = error_code
            self._fire(RecvEvent.RECV_RESET)
            # Unread data, buffered or never received, is released to the connection.
            self._released += final_size - self._read_offset
            self._read_offset = self._recv_offset = final_size
            self._ready.clear()
            self._ready_len = 0
            self._ooo.clear()
            self._ooo_starts.clear()
            self._stop_pending = False
        return delta

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
        if self._state in _RESET:
            self._fire(RecvEvent.READ_RESET)
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
        if self._state is RecvState.DATA_RECVD and self._read_offset == self._final_size:
            self._fire(RecvEvent.READ_ALL)
        return data

    def _take(self, take: int) -> bytes:
        if not take:
            return b""
        ready = self._ready
        self._ready_len -= take
        self._read_offset += take
        first = ready[0]
        if len(first) == take:
            ready.popleft()
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
        if self._state is RecvState.DATA_RECVD:
            self._fire(RecvEvent.READ_ALL)

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
