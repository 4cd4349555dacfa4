"""CUBIC congestion control (RFC 9438) on QUIC's loss recovery (RFC 9002 §7).

Theory of operation
-------------------
:class:`Cubic` is a :class:`~quic.congestion.NewReno` in everything but two rules, so
it inherits the byte accounting, slow start, the recovery period (one reduction per
round trip, RFC 9002 §7.3.2), persistent congestion (§7.6.2), the §7.8 "no growth when
not window-limited" test and the MaybeSendOnePacket allowance:

* on a congestion event the window is multiplied by ``BETA_CUBIC = 0.7`` (RFC 9438
  §4.6) instead of 0.5, and ``W_max`` is remembered; with fast convergence (§4.7) a
  reduction that comes before the window regained the previous ``W_max`` lowers it
  to ``cwnd * (1 + beta) / 2``, releasing bandwidth to newer flows;
* in congestion avoidance the window follows the cubic function of §4.2::

      W_cubic(t) = C * (t - K)**3 + W_max       K = cbrt((W_max - cwnd_epoch) / C)

  in segments (``max_datagram_size`` bytes), with ``C = 0.4``, ``t`` the time since
  the congestion-avoidance epoch began (the first ACK in congestion avoidance after
  a reduction) and ``cwnd_epoch`` the window then. Per acknowledged byte the window
  moves towards ``target = W_cubic(t + RTT)`` clamped to ``[cwnd, 1.5 * cwnd]``
  (§4.4, §4.5), ``RTT`` being the smoothed RTT (RFC 9002 §5.3). The Reno-friendly
  estimate ``W_est`` (§4.3) grows by ``alpha_cubic`` segments per window acknowledged
  (``alpha_cubic = 3 * (1 - beta) / (1 + beta)``, 1 once ``W_est`` reached the window
  before the last reduction); while ``W_cubic(t) < W_est`` the window is ``W_est``.

Spurious congestion events (§4.9): a reduction saves the variables it changes; when
loss recovery reports that every packet declared lost in that loss event was
acknowledged after all (:meth:`~quic.congestion.NewReno.on_spurious_loss`, a reordering
path), and the window is still below ``cwnd_prior``, they are restored. A reduction for
ECN-CE or persistent congestion is never undone.

Slow start is NewReno's with HyStart++ (RFC 9406, :mod:`quic.cc_hystart`) on by
default, as §4.10 recommends ("CUBIC SHOULD use the HyStart++ slow start algorithm"):
it may leave the first slow start on a rising RTT, before any loss. Then W_max is still
0, so the first epoch takes W_max = cwnd and K = 0, which is what §4.10 asks for this
case. Time during which the sender was not window-limited
(§5.8 of RFC 9438, RFC 9002 §7.8) does not count in ``t``: the epoch start moves
forward by the application-limited stretch, so the window does not leap after an
idle period. Nothing here reads a clock: times are the ``now`` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from quic.congestion import NewReno

if TYPE_CHECKING:
    from quic.recovery import SentPacket
    from quic.rtt import RttEstimator

__all__ = ["ALPHA_CUBIC", "BETA_CUBIC", "C_CUBIC", "Cubic", "cubic_k", "w_cubic"]

_Saved = tuple[int | None, float, float, float | None, float, float, float, float | None, int]

#: RFC 9438 §5.1: C = 0.4 (segments per second cubed).
C_CUBIC = 0.4
#: RFC 9438 §4.6: multiplicative decrease factor.
BETA_CUBIC = 0.7
#: RFC 9438 §4.3: Reno-friendly additive increase factor, 3 * (1 - beta) / (1 + beta).
ALPHA_CUBIC = 3.0 * (1.0 - BETA_CUBIC) / (1.0 + BETA_CUBIC)
_MAX_GROWTH = 1.5  # RFC 9438 §4.2: target at most 1.5 * cwnd


def cubic_k(w_max: float, cwnd_epoch: float) -> float:
    """RFC 9438 Figure 2: K = cbrt((W_max - cwnd_epoch) / C), windows in segments."""
    diff = w_max - cwnd_epoch
    return (diff / C_CUBIC) ** (1.0 / 3.0) if diff > 0 else 0.0


def w_cubic(t: float, k: float, w_max: float) -> float:
    """RFC 9438 Figure 1: W_cubic(t) = C * (t - K)^3 + W_max, in segments."""
    return C_CUBIC * (t - k) ** 3 + w_max


class Cubic(NewReno):
    """RFC 9438 CUBIC with fast convergence and the Reno-friendly region."""

    __slots__ = (
        "_cwnd",
        "_cwnd_epoch",
        "_cwnd_prior",
        "_epoch_start",
        "_k",
        "_limited_pause",
        "_rtt",
        "_saved",
        "_w_est",
        "_w_max",
        "fast_convergence",
        "undo_spurious",
    )

    def __init__(
        self,
        max_datagram_size: int = 1200,
        rtt: RttEstimator | None = None,
        *,
        fast_convergence: bool = True,
        undo_spurious: bool = True,
        hystart: bool = True,
    ) -> None:
        # RFC 9438 §4.10: CUBIC SHOULD use HyStart++ (RFC 9406) for slow start
        super().__init__(max_datagram_size, hystart=hystart)
        #: RFC 9438 §4.9: restore the state from before a reduction found spurious.
        self.undo_spurious = undo_spurious
        # the state before the last reduction (§4.9's "_prior" variables): ssthresh,
        # W_max, K, epoch_start, W_est, the cwnd_prior before it, the fractional window,
        # the limited-pause start and the byte counter; None: nothing to restore
        self._saved: _Saved | None = None
        self._rtt = rtt
        self.fast_convergence = fast_convergence
        self._w_max = 0.0  # bytes; 0 = no congestion event yet
        self._cwnd_prior = 0.0  # window before the last reduction (§4.3)
        self._epoch_start: float | None = None
        self._cwnd_epoch = 0.0
        self._k = 0.0
        self._w_est = 0.0
        self._cwnd = float(self.congestion_window)  # fractional growth accumulates here
        self._limited_pause: float | None = None  # start of a non-window-limited stretch

    @property
    def w_max(self) -> float:
        """W_max in bytes (0 before the first congestion event)."""
        return self._w_max

    @property
    def cwnd_prior(self) -> float:
        """The window just before the last reduction, bytes (RFC 9438 §4.3)."""
        return self._cwnd_prior

    @property
    def w_est(self) -> float:
        """The Reno-friendly estimate W_est in bytes (RFC 9438 §4.3)."""
        return self._w_est

    @property
    def epoch_start(self) -> float | None:
        """Start of the current congestion avoidance epoch (None: not in one)."""
        return self._epoch_start

    @property
    def k(self) -> float:
        """K of the current epoch, seconds."""
        return self._k

    def on_packets_acked(self, packets: Sequence[SentPacket], now: float) -> None:
        # RFC 9438 §5.8: an application-limited stretch does not advance t.
        if self._epoch_start is not None:
            if not self._window_limited(self.bytes_in_flight):
                if self._limited_pause is None:
                    self._limited_pause = now
            elif self._limited_pause is not None:
                self._epoch_start += now - self._limited_pause
                self._limited_pause = None
        super().on_packets_acked(packets, now)

    def _avoidance(self, size: int, now: float) -> None:
        mds = self.max_datagram_size
        cwnd = self._cwnd
        if int(cwnd) != self.congestion_window:  # changed by slow start or a reduction
            cwnd = float(self.congestion_window)
        if self._epoch_start is None:  # §4.2: a new congestion avoidance epoch
            self._epoch_start = now
            self._limited_pause = None
            self._cwnd_epoch = cwnd
            self._w_est = cwnd
            if self._w_max < cwnd:
                self._w_max = cwnd
            self._k = cubic_k(self._w_max / mds, cwnd / mds)
        t = now - self._epoch_start
        rtt = self._rtt.smoothed_rtt if self._rtt is not None else 0.0
        # §4.3 Reno-friendly estimate: alpha_cubic segments per window acknowledged.
        alpha = 1.0 if self._w_est >= self._cwnd_prior else ALPHA_CUBIC
        self._w_est += alpha * mds * size / cwnd
        w_max_seg = self._w_max / mds
        if w_cubic(t, self._k, w_max_seg) * mds < self._w_est:
            cwnd = self._w_est  # §4.3 Reno-friendly region
        else:
            # §4.4/§4.5: move towards W_cubic(t + RTT), at most 1.5 * cwnd.
            target = w_cubic(t + rtt, self._k, w_max_seg) * mds
            if target < cwnd:
                target = cwnd
            elif target > _MAX_GROWTH * cwnd:
                target = _MAX_GROWTH * cwnd
            cwnd += (target - cwnd) * size / cwnd
        self._cwnd = cwnd
        self.congestion_window = int(cwnd)

    def _reduced_window(self, now: float) -> int:
        cwnd = float(self.congestion_window)
        # RFC 9438 §4.9: remember the state the reduction is about to change
        self._saved = (
            self.ssthresh,
            self._w_max,
            self._k,
            self._epoch_start,
            self._w_est,
            self._cwnd_prior,
            self._cwnd,
            self._limited_pause,
            self._ca_bytes_acked,
        )
        # §4.7 fast convergence: a flow losing before regaining W_max releases bandwidth.
        if self.fast_convergence and cwnd < self._w_max:
            self._w_max = cwnd * (1.0 + BETA_CUBIC) / 2.0
        else:
            self._w_max = cwnd
        self._cwnd_prior = cwnd
        self._epoch_start = None
        reduced = int(cwnd * BETA_CUBIC)  # §4.6: ssthresh = cwnd * beta_cubic
        self._cwnd = float(max(reduced, self.minimum_window))
        return reduced

    def _undo_spurious(self, now: float) -> bool:
        """RFC 9438 §4.9: every packet whose loss caused the last reduction was
        acknowledged after all. If the window is still below the one before the
        reduction (``cwnd_prior``), restore cwnd, ssthresh, W_max, K, epoch_start and
        W_est (and the recovery period, RFC 9002 §7.3.2) as they were; otherwise the
        window already regained it and the current values stay."""
        saved = self._saved
        if not self.undo_spurious or saved is None:
            return False
        self._saved = None
        prior = self._cwnd_prior
        if self.congestion_window >= prior:
            return False
        (
            self.ssthresh,
            self._w_max,
            self._k,
            self._epoch_start,
            self._w_est,
            self._cwnd_prior,
            self._cwnd,
            self._limited_pause,
            self._ca_bytes_acked,
        ) = saved
        self.congestion_window = int(prior)
        self._cwnd = prior
        if self.congestion_recovery_start_time == self._event_start:
            # unless something moved it since (a path change, RFC 9000 §9.4)
            self.congestion_recovery_start_time = self._prior_recovery_start
        self._may_send_one = False
        return True

    def on_persistent_congestion(self, now: float) -> None:
        self._saved = None
        super().on_persistent_congestion(now)
        self._epoch_start = None  # §4.8: the window restarts from slow start
        self._cwnd = float(self.congestion_window)

    def __repr__(self) -> str:
        return (
            f"Cubic(cwnd={self.congestion_window}, in_flight={self.bytes_in_flight}, "
            f"ssthresh={self.ssthresh}, w_max={self._w_max:.0f}, k={self._k:.3f})"
        )
