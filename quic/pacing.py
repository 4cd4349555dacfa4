"""Token-bucket pacer (RFC 9002 §7.7).

Theory of operation
-------------------
The bucket fills at the pacing rate and holds at most a burst: the initial congestion
window (§7.7 "Senders SHOULD limit bursts to the initial congestion window", ten
datagrams of 1200 bytes), never more than the current window, never less than two
datagrams — or, when that is more, what the rate delivers in
:data:`PACING_QUANTUM` (2 ms): a timer cannot fire for every packet at high rates, and
a driver woken once per event-loop turn would otherwise be held to one burst per turn
(on loopback the rate is so high that pacing amounts to the window alone). Sending a
packet takes its size out of the bucket; the bucket may go into debt by one packet, so
a packet is never refused outright, only delayed.

The send path (:class:`~quic.conn_send.SendScheduler`) sets the rate before building
datagrams with :meth:`Pacer.set_rate`, from the congestion controller's
``pacing_rate`` (``N * cwnd / smoothed_rtt`` for window-based controllers, BBR's own
rate), asks :meth:`Pacer.next_send_time` before an ack-eliciting datagram and
reports it with :meth:`Pacer.on_packet_sent`. The earliest time the next one may
leave becomes a deadline of the connection's timer. :meth:`Pacer.update_rate` derives
the rate from a window and RTT with this pacer's multiplier N. With no rate (before
the first RTT sample) nothing is paced. ACK-only packets are not paced (§7.7): the
send path does not consult the pacer for them. Nothing here reads a clock.
"""

from __future__ import annotations

from quic.congestion import initial_window
from quic.rtt import K_GRANULARITY

__all__ = ["PACING_QUANTUM", "Pacer"]

#: Seconds of sending at the pacing rate a burst may hold (see the module docs).
PACING_QUANTUM = 0.002


class Pacer:
    """Leaky/token bucket in bytes; times are floats in seconds, passed in."""

    __slots__ = ("_capacity", "_last", "_rate", "_tokens", "max_datagram_size", "multiplier")

    def __init__(self, max_datagram_size: int = 1200, multiplier: float = 1.25) -> None:
        if multiplier < 1.0:
            raise ValueError("pacing multiplier N must be at least 1 (RFC 9002 §7.7)")
        self.max_datagram_size = max_datagram_size
        self.multiplier = multiplier
        self._rate: float | None = None  # bytes per second; None = not pacing yet
        self._capacity = float(initial_window(max_datagram_size))
        self._tokens = self._capacity
        self._last: float | None = None

    @property
    def rate(self) -> float | None:
        """Current pacing rate in bytes per second (``None`` before the first update)."""
        return self._rate

    @property
    def capacity(self) -> float:
        """Maximum burst in bytes."""
        return self._capacity

    def update_rate(self, congestion_window: int, smoothed_rtt: float, now: float) -> None:
        """Rate ``N * congestion_window / smoothed_rtt`` (RFC 9002 §7.7)."""
        rtt = smoothed_rtt if smoothed_rtt > K_GRANULARITY else K_GRANULARITY
        self.set_rate(self.multiplier * congestion_window / rtt, congestion_window, now)

    def set_rate(self, rate: float | None, congestion_window: int, now: float) -> None:
        """Pace at ``rate`` bytes per second (None: stop pacing); burst from the window.

        Called before every build (issue 10): :meth:`_refill` and
        :func:`~quic.congestion.initial_window` are inline here."""
        last = self._last
        if last is None or now > last:  # _refill(now)
            old = self._rate
            if last is not None and old is not None:
                tokens = self._tokens + (now - last) * old
                self._tokens = tokens if tokens < self._capacity else self._capacity
            self._last = now
        self._rate = rate if rate else None
        mds = self.max_datagram_size
        two = 2 * mds
        window = 10 * mds  # RFC 9002 §7.2: min(10 * mds, max(14720, 2 * mds))
        if window >= 14720:
            window = 14720 if two < 14720 else two
        burst = congestion_window if congestion_window < window else window
        capacity: float = burst if burst > two else two  # max(burst, 2 * mds)
        if rate:
            quantum = rate * PACING_QUANTUM  # min(quantum, congestion_window)
            if quantum > congestion_window:
                quantum = float(congestion_window)
            if quantum > capacity:
                capacity = quantum
        self._capacity = capacity
        if self._tokens > capacity:
            self._tokens = capacity

    def next_send_time(self, now: float, size: int | None = None) -> float:
        """Earliest time (>= ``now``) a packet of ``size`` bytes may leave.

        Returns ``now`` when it may leave immediately. ``size`` defaults to the maximum
        datagram size. Pure: does not change the bucket.
        """
        rate = self._rate
        if rate is None:
            return now
        if size is None:
            size = self.max_datagram_size
        capacity = self._capacity
        tokens = self._tokens  # _tokens_at(now), inline: asked before every reply
        last = self._last
        if last is not None and now > last:
            tokens += (now - last) * rate
            if tokens > capacity:
                tokens = capacity
        # A packet may always go out from a full bucket, whatever its size.
        need = size if size < capacity else capacity
        if tokens >= need:
            return now
        return now + (need - tokens) / rate

    def allowance(self, now: float, size: int) -> int:
        """How many ``size``-byte packets may leave at ``now``, one after the other:
        what :meth:`next_send_time` and :meth:`on_packet_sent` would allow packet by
        packet, counted at once (a build call's bulk loop; its bytes are then taken
        with one :meth:`on_packet_sent`). Unpaced: a number no call reaches."""
        rate = self._rate
        if rate is None:
            return 1 << 30
        tokens = self._tokens_at(now)
        need = size if size < self._capacity else self._capacity
        if tokens < need:
            return 0
        return int((tokens - need) // size) + 1

    def on_packet_sent(self, size: int, now: float) -> None:
        """Take ``size`` bytes out of the bucket."""
        rate = self._rate
        if rate is None:
            return
        tokens = self._tokens
        last = self._last
        if last is None or now > last:  # _refill(now), inline: once per datagram sent
            if last is not None:
                tokens += (now - last) * rate
                if tokens > self._capacity:
                    tokens = self._capacity
            self._last = now
        tokens -= size
        floor = -float(self.max_datagram_size)
        self._tokens = tokens if tokens > floor else floor

    # -- internals --------------------------------------------------------------------

    def _tokens_at(self, now: float) -> float:
        last = self._last
        tokens = self._tokens
        if last is not None and now > last and self._rate is not None:
            tokens += (now - last) * self._rate
            if tokens > self._capacity:
                tokens = self._capacity
        return tokens

    def _refill(self, now: float) -> None:
        self._tokens = self._tokens_at(now)
        if self._last is None or now > self._last:
            self._last = now
