"""Credit-based data flow control (RFC 9000 §4), one object per direction and level.

Theory of operation
-------------------
QUIC flow control is a pair of monotonic byte offsets per stream and per connection.

:class:`SendCredit` is the sender's view: ``max_data`` is the largest limit the peer has
granted (initial transport parameter, then MAX_DATA / MAX_STREAM_DATA frames), ``used``
is how much of it has been spent (for a stream: the highest offset sent; for the
connection: the sum of those over all streams). Limits only ever grow: a frame that does
not raise the limit is ignored (RFC 9000 §4.1). When the sender has data but no credit it
reports the limit it is blocked at exactly once per limit (``blocked_at`` /
``mark_blocked_sent``), so DATA_BLOCKED / STREAM_DATA_BLOCKED are not repeated in every
packet; the connection re-arms the signal when such a frame is lost or when it wants a
periodic keep-alive (RFC 9000 §4.1, last paragraph).

:class:`ReceiveWindow` is the receiver's view: ``max_data`` is the limit we have
advertised, ``highest_received`` the largest offset (or sum of final offsets) the peer
has used, and ``consumed`` what the application has taken out of our buffers. Data
beyond ``max_data`` is a FLOW_CONTROL_ERROR (RFC 9000 §4.1, §19.9, §19.10). A new limit
``consumed + window`` is offered once half of the window has been consumed; if that
happened within two round trips of the previous update the sender is being throttled by
us rather than by the network, so the window doubles up to ``max_window`` (the
auto-tuning suggested in RFC 9000 §4.2). It doubles too when the peer reports it is
blocked at our current or previous limit while the application keeps up
(``on_peer_blocked``): the round-trip test alone missed it in the WebTransport echo,
whose credit loop waits for the application and was slower than the smoothed RTT (the
1 MiB stream window never grew; ~60 STREAM_DATA_BLOCKED per 50 MiB, ~10 with it).
A lost update is resent with the current value.

Both classes are plain arithmetic: no frames, no clock. Times are passed in as floats
(seconds, any epoch); an ``rtt`` of zero or less means "unknown" and disables tuning for
that sample.
"""

from __future__ import annotations

from quic.buffer import VARINT_MAX
from quic.errors import QuicProtocolError, TransportErrorCode

__all__ = ["ReceiveWindow", "SendCredit"]


class SendCredit:
    """Flow-control credit granted to us by the peer (RFC 9000 §4.1)."""

    __slots__ = ("_blocked_reported", "max_data", "used")

    def __init__(self, max_data: int = 0) -> None:
        self.max_data = max_data
        self.used = 0
        self._blocked_reported: int | None = None

    def available(self) -> int:
        """Bytes that may still be sent under the current limit."""
        left = self.max_data - self.used
        return left if left > 0 else 0

    def consume(self, n: int) -> None:
        """Spend ``n`` bytes of credit; spending more than is available is a local bug."""
        if n < 0 or self.used + n > self.max_data:
            raise ValueError(f"flow-control credit exceeded: {self.used}+{n} > {self.max_data}")
        self.used += n

    def update_limit(self, new_limit: int) -> bool:
        """Apply a MAX_DATA / MAX_STREAM_DATA value; decreases are ignored (§4.1).

        Returns True when the limit grew.
        """
        if new_limit <= self.max_data:
            return False
        self.max_data = new_limit
        return True

    @property
    def blocked_at(self) -> int | None:
        """The limit to put in a DATA_BLOCKED / STREAM_DATA_BLOCKED frame, or None.

        Non-None only when all credit is spent and this limit was not reported yet. The
        caller checks that it actually has data waiting (RFC 9000 §19.12, §19.13).
        """
        if self.used >= self.max_data and self._blocked_reported != self.max_data:
            return self.max_data
        return None

    def mark_blocked_sent(self) -> None:
        """Record that a BLOCKED frame for the current limit was sent."""
        self._blocked_reported = self.max_data

    def on_blocked_lost(self, limit: int) -> None:
        """A BLOCKED frame carrying ``limit`` was lost: report again if still blocked there."""
        if self._blocked_reported == limit:
            self._blocked_reported = None

    def rearm_blocked(self) -> None:
        """Allow the BLOCKED signal to be repeated (periodic resend, RFC 9000 §4.1)."""
        self._blocked_reported = None


class ReceiveWindow:
    """Flow-control limit we advertise to the peer, with auto-tuning (RFC 9000 §4.1-§4.2)."""

    __slots__ = (
        "_epoch_start",
        "_now",
        "_prev_limit",
        "_rtt",
        "consumed",
        "highest_received",
        "max_data",
        "max_window",
        "resend",
        "window",
    )

    def __init__(self, window: int, max_window: int | None = None) -> None:
        if window < 0:
            raise ValueError("window must be non-negative")
        self.window = window
        self.max_window = window if max_window is None else max(window, max_window)
        self.max_data = window
        self._prev_limit = window  # the limit before the last update
        self.highest_received = 0
        self.consumed = 0
        self._epoch_start: float | None = None
        self._now = 0.0
        self._rtt = 0.0
        self.resend = False  # the last update was lost: send it again

    def on_data(self, final_offset: int) -> int:
        """The peer used credit up to ``final_offset``; return how far the high mark moved.

        Raises FLOW_CONTROL_ERROR when the offset exceeds the advertised limit
        (RFC 9000 §4.1, §19.9, §19.10).
        """
        if final_offset > self.max_data:
            raise QuicProtocolError(
                TransportErrorCode.FLOW_CONTROL_ERROR,
                f"data up to offset {final_offset} exceeds limit {self.max_data}",
            )
        delta = final_offset - self.highest_received
        if delta <= 0:
            return 0
        self.highest_received = final_offset
        return delta

    def on_received(self, delta: int) -> None:
        """Connection level: add ``delta`` newly used bytes (sum over streams, §4.1)."""
        if delta > 0:
            self.on_data(self.highest_received + delta)

    def on_consumed(self, n: int, now: float, rtt: float) -> None:
        """The application (or a reset / discard) released ``n`` bytes of buffer."""
        self.consumed += n
        self._now = now
        if rtt > 0:
            self._rtt = rtt
        if self._epoch_start is None:
            self._epoch_start = now

    def ensure_window(self, window: int) -> None:
        """Grow the window to at least ``window`` (e.g. a connection window that must
        stay larger than any stream window); also raises ``max_window`` if needed."""
        if window > self.window:
            self.window = window
            self.max_window = max(self.max_window, window)

    def on_peer_blocked(self, limit: int) -> bool:
        """The peer reports it is blocked at ``limit`` (DATA_BLOCKED / STREAM_DATA_BLOCKED,
        RFC 9000 §19.12, §19.13). At our current limit, that is direct evidence the window,
        not the path, limits throughput: double it up to ``max_window`` (§4.2 auto-tuning;
        the round-trip test alone misses it when the credit loop, which waits for the
        application to read, is slower than the smoothed RTT). ``limit`` may be our
        previous limit (the update crossed the frame). Only while the application keeps
        up (at most half a window unread), so a peer cannot grow the buffers of an
        application that does not read. True when the window grew."""
        if (
            (limit != self.max_data and limit != self._prev_limit)
            or self.window >= self.max_window
            or (self.highest_received - self.consumed) * 2 > self.window
        ):
            return False
        self.window = min(self.window * 2, self.max_window)
        return True

    def should_update(self) -> bool:
        """True when a MAX_DATA / MAX_STREAM_DATA frame should be sent now."""
        if self.resend:
            return True
        # _threshold_reached(), inline: asked before every packet built (issue 10)
        remaining = self.max_data - self.consumed
        return remaining * 2 <= self.window and self.consumed + self.window > self.max_data

    def _threshold_reached(self) -> bool:
        # Half of the window has been consumed since the last advertisement.
        remaining = self.max_data - self.consumed
        return remaining * 2 <= self.window and self.consumed + self.window > self.max_data

    def next_limit(self) -> int:
        """Commit and return the limit to advertise (call when ``should_update()``)."""
        if self._threshold_reached():
            start = self._epoch_start
            rtt = self._rtt
            if (
                start is not None
                and rtt > 0
                and self._now - start < 2 * rtt
                and self.window < self.max_window
            ):
                # Consumed half a window in under two RTTs: the window, not the path,
                # limits throughput. RFC 9000 §4.2 (auto-tuning).
                self.window = min(self.window * 2, self.max_window)
            self._epoch_start = self._now
            new_limit = min(self.consumed + self.window, VARINT_MAX)
            if new_limit > self.max_data:
                self._prev_limit = self.max_data
                self.max_data = new_limit
        self.resend = False
        return self.max_data

    def on_update_lost(self, limit: int) -> None:
        """A MAX_DATA / MAX_STREAM_DATA frame carrying ``limit`` was lost."""
        if limit == self.max_data:
            self.resend = True
