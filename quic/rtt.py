"""Round-trip time estimation (RFC 9002 §5).

Theory of operation
-------------------
One :class:`RttEstimator` exists per network path. Loss recovery feeds it one sample per
ACK frame that newly acknowledges the largest acknowledged packet and at least one
ack-eliciting packet (RFC 9002 §5.1); the estimator itself does not decide which ACKs
qualify. All values are floats in seconds.

* ``latest_rtt`` is the raw sample: ``ack_time - send_time_of_largest_acked``.
* ``min_rtt`` ignores acknowledgment delay and is the floor below which an ack-delay
  adjustment may not push a sample (§5.2, §5.3).
* ``smoothed_rtt``/``rttvar`` are the RFC 6298-style EWMA of the adjusted samples
  (§5.3). They start at ``initial_rtt`` (333 ms, §6.2.2) and ``initial_rtt / 2``; the
  first sample replaces them outright so no history of the initial guess survives.

The ack delay reported by the peer is capped by ``max_ack_delay`` only once the
handshake is confirmed (§5.3): the caller passes ``max_ack_delay=None`` before that.

:meth:`RttEstimator.pto_base` is ``smoothed_rtt + max(4 * rttvar, kGranularity)``, the
part of the PTO period (§6.2.1) that is independent of the packet number space; the
estimator keeps it in its ``pto`` attribute, recomputed with every sample and reset
(read after every build, without a call).
:meth:`RttEstimator.loss_delay` is the time-threshold reordering window (§6.1.2).
"""

from __future__ import annotations

__all__ = [
    "K_GRANULARITY",
    "K_INITIAL_RTT",
    "K_TIME_THRESHOLD",
    "RttEstimator",
]

K_GRANULARITY = 0.001  # RFC 9002 §6.1.2: 1 ms timer granularity
K_INITIAL_RTT = 0.333  # RFC 9002 §6.2.2: initial RTT before any sample
K_TIME_THRESHOLD = 9 / 8  # RFC 9002 §6.1.2: time reordering threshold (RTT multiplier)


class RttEstimator:
    """RTT state of one path (RFC 9002 §5, Appendix A.3 variables)."""

    __slots__ = (
        "first_rtt_sample",
        "initial_rtt",
        "latest_rtt",
        "min_rtt",
        "pto",
        "rttvar",
        "smoothed_rtt",
    )

    def __init__(self, initial_rtt: float = K_INITIAL_RTT) -> None:
        if not initial_rtt > 0:
            raise ValueError(f"initial_rtt must be positive: {initial_rtt!r}")
        self.initial_rtt = initial_rtt
        self.latest_rtt = 0.0
        self.min_rtt = 0.0
        self.smoothed_rtt = initial_rtt
        self.rttvar = initial_rtt / 2
        #: :meth:`pto_base`, kept up to date with every sample (an attribute: the
        #: connection's deadline reads it after every build, issue 10)
        self.pto = 0.0
        self._set_pto()
        #: Time the first sample was taken; ``None`` until then (RFC 9002 §A.3).
        self.first_rtt_sample: float | None = None

    @property
    def has_sample(self) -> bool:
        """True once at least one RTT sample has been taken."""
        return self.first_rtt_sample is not None

    def reset(self, initial_rtt: float | None = None) -> None:
        """Forget every sample (new path, RFC 9000 §9.4); optionally change initial_rtt."""
        if initial_rtt is not None:
            if not initial_rtt > 0:
                raise ValueError(f"initial_rtt must be positive: {initial_rtt!r}")
            self.initial_rtt = initial_rtt
        self.latest_rtt = 0.0
        self.min_rtt = 0.0
        self.smoothed_rtt = self.initial_rtt
        self.rttvar = self.initial_rtt / 2
        self._set_pto()
        self.first_rtt_sample = None

    def update(
        self,
        latest_rtt: float,
        ack_delay: float,
        now: float,
        max_ack_delay: float | None = None,
    ) -> None:
        """Add one RTT sample.

        ``ack_delay`` is the decoded ACK Delay of the frame (seconds). ``max_ack_delay``
        is the peer's transport parameter, to be passed only once the handshake is
        confirmed; ``None`` means "do not cap" (RFC 9002 §5.3).
        """
        if latest_rtt < 0.0:  # a clock that went backwards; never let RTT go negative
            latest_rtt = 0.0
        self.latest_rtt = latest_rtt
        if self.first_rtt_sample is None:
            # RFC 9002 §5.2, §5.3: the first sample resets the estimator.
            self.min_rtt = latest_rtt
            self.smoothed_rtt = latest_rtt
            self.rttvar = latest_rtt / 2
            self.first_rtt_sample = now
            self._set_pto()
            return
        # RFC 9002 §5.2: min_rtt ignores the acknowledgment delay.
        if latest_rtt < self.min_rtt:
            self.min_rtt = latest_rtt
        # RFC 9002 §5.3: cap ack_delay by max_ack_delay only after handshake confirmation.
        if max_ack_delay is not None and ack_delay > max_ack_delay:
            ack_delay = max_ack_delay
        # RFC 9002 §5.3: do not subtract the delay if the result would be below min_rtt.
        adjusted_rtt = latest_rtt
        if latest_rtt >= self.min_rtt + ack_delay:
            adjusted_rtt = latest_rtt - ack_delay
        smoothed = self.smoothed_rtt
        spread = smoothed - adjusted_rtt  # abs(), without the call
        if spread < 0.0:
            spread = -spread
        rttvar = self.rttvar = 0.75 * self.rttvar + 0.25 * spread
        smoothed = self.smoothed_rtt = 0.875 * smoothed + 0.125 * adjusted_rtt
        var = 4.0 * rttvar  # _set_pto(), inline: one sample per round trip
        self.pto = smoothed + (var if var > K_GRANULARITY else K_GRANULARITY)

    def on_persistent_congestion(self) -> None:
        """RFC 9002 §5.2: after persistent congestion, min_rtt restarts at the newest sample."""
        if self.first_rtt_sample is not None:
            self.min_rtt = self.latest_rtt

    def pto_base(self) -> float:
        """``smoothed_rtt + max(4 * rttvar, kGranularity)`` (RFC 9002 §6.2.1): the
        :attr:`pto` attribute."""
        return self.pto

    def _set_pto(self) -> None:
        var = 4.0 * self.rttvar
        self.pto = self.smoothed_rtt + (var if var > K_GRANULARITY else K_GRANULARITY)

    def loss_delay(self) -> float:
        """``max(kTimeThreshold * max(smoothed_rtt, latest_rtt), kGranularity)`` (§6.1.2)."""
        rtt = self.latest_rtt if self.latest_rtt > self.smoothed_rtt else self.smoothed_rtt
        delay = K_TIME_THRESHOLD * rtt
        return delay if delay > K_GRANULARITY else K_GRANULARITY

    def __repr__(self) -> str:
        return (
            f"RttEstimator(latest={self.latest_rtt:.6f}, min={self.min_rtt:.6f}, "
            f"smoothed={self.smoothed_rtt:.6f}, var={self.rttvar:.6f})"
        )
