"""ACK_FREQUENCY we send: asking the peer for fewer acknowledgments (draft-ietf-quic-ack-frequency).

Theory of operation
-------------------
A peer that sent the ``min_ack_delay`` transport parameter (draft §3) accepts
ACK_FREQUENCY and IMMEDIATE_ACK frames. :class:`AckFrequencySender` then chooses, from
the congestion window and the smoothed RTT, how often the peer should acknowledge our
ack-eliciting packets (draft §8.1):

* Ack-Eliciting Threshold: about four ACKs per congestion window —
  ``cwnd / (4 * max_datagram_size) - 1`` — between 1 (RFC 9000 §13.2.2's every second
  packet) and :data:`MAX_ACK_ELICITING_THRESHOLD` (an ACK at least every ten packets);
* Requested Max Ack Delay: a quarter of the smoothed RTT rounded down to whole
  milliseconds (at least one ACK per round trip), but not below
  ``QuicConfiguration.ack_frequency_min_delay`` (25 ms by default), never below the
  peer's ``min_ack_delay`` and never above its ``max_ack_delay`` transport parameter.
  The floor keeps the PTO (RFC 9002 §6.2.1 adds this delay) above what a busy peer
  needs to answer: with srtt/4 alone a loopback path asked for 1 ms, the PTO fell to
  ~3 ms, and a CPU-bound peer drew a storm of probes (1,000 sessions echoing at once:
  p99 1,309 / 1,434 / 1,646 ms without the floor, 775 / 745 / 804 ms with it, three
  alternating pairs on a quiet machine). The request still lowers the ACK count through
  the threshold;
* Reordering Threshold: 1, RFC 9000's behaviour — a gap is acknowledged at once, so
  loss detection (RFC 9002 §6.1) is as fast as without the extension.

A new frame (with the next sequence number) is written only when these values change,
at most once per smoothed RTT (draft §8.1: "not ... more than once per RTT"), and
again when the frame carrying the newest values is lost (draft §4). Until a frame is
acknowledged, loss recovery's ``max_ack_delay`` is the largest of the current value and
every value in flight (draft §7); once the newest acknowledged request arrived, it is
that request's delay. Frames in flight are tracked in a dict bounded by
:data:`MAX_REQUESTS_IN_FLIGHT` (no new request while it is full).

Probes: a PTO probe carries IMMEDIATE_ACK instead of PING when the peer supports it
(draft §7), so the probe is acknowledged without the peer's ACK delay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quic.frames import IMMEDIATE_ACK_FRAME, encode_ack_frequency_frame

if TYPE_CHECKING:
    from quic.packet_builder import PacketAssembler
    from quic.recovery import LossRecovery

__all__ = ["MAX_ACK_ELICITING_THRESHOLD", "MAX_REQUESTS_IN_FLIGHT", "AckFrequencySender"]

#: The largest Ack-Eliciting Threshold we request: an ACK at least every ten packets.
MAX_ACK_ELICITING_THRESHOLD = 9
#: ACK_FREQUENCY frames in flight at most.
MAX_REQUESTS_IN_FLIGHT = 4
_REORDERING_THRESHOLD = 1


class AckFrequencySender:
    """Chooses, sends and tracks our ACK_FREQUENCY requests."""

    __slots__ = (
        "_acked_delay",
        "_acked_seq",
        "_in_flight",
        "_last_sent",
        "_latest_seq",
        "_pending",
        "_recovery",
        "_requested",
        "_same_below",
        "_same_from",
        "_same_mds",
        "_same_rtt_below",
        "_sent_count",
        "enabled",
        "min_delay",
        "peer_max_ack_delay",
        "peer_min_ack_delay",
    )

    def __init__(self, recovery: LossRecovery, enabled: bool = True, min_delay: int = 0) -> None:
        self._recovery = recovery
        self.enabled = enabled  # QuicConfiguration.send_ack_frequency
        #: the smallest Requested Max Ack Delay we ask for, µs
        #: (QuicConfiguration.ack_frequency_min_delay; see the module docs)
        self.min_delay = min_delay
        self.peer_min_ack_delay: int | None = None  # microseconds; None: unsupported
        self.peer_max_ack_delay = 25_000  # microseconds (RFC 9000 §18.2 default)
        self._requested: tuple[int, int] | None = None  # (threshold, delay µs) last sent
        self._pending: tuple[int, int] | None = None  # what the next frame will ask
        self._latest_seq = -1
        self._last_sent: float | None = None
        self._in_flight: dict[int, int] = {}  # sequence number -> requested delay, µs
        self._acked_delay: int | None = None  # delay of the newest acknowledged request
        self._acked_seq = -1
        self._sent_count = 0
        # Where wanted() is known to be the request in force (see _remember_same): a
        # window in [_same_from, _same_below) with datagrams of _same_mds bytes and a
        # smoothed RTT below _same_rtt_below; empty until a build finds it so
        self._same_from = self._same_below = self._same_mds = 0
        self._same_rtt_below = 0.0

    def compact(self) -> None:
        """A quiet connection: an emptied table gives its storage back (issue 10)."""
        if not self._in_flight:
            self._in_flight.clear()

    @property
    def peer_supports(self) -> bool:
        """The peer accepts ACK_FREQUENCY and IMMEDIATE_ACK (draft §3)."""
        return self.peer_min_ack_delay is not None

    @property
    def pending(self) -> bool:
        """A frame is decided but not written yet (no room in the last packet)."""
        return self._pending is not None

    @property
    def frames_sent(self) -> int:
        return self._sent_count

    @property
    def requested(self) -> tuple[int, int] | None:
        """(Ack-Eliciting Threshold, Requested Max Ack Delay in µs) last sent."""
        return self._requested

    def set_peer_params(self, min_ack_delay: int | None, max_ack_delay_ms: int) -> None:
        """The peer's ``min_ack_delay`` (µs, None if absent) and ``max_ack_delay`` (ms)."""
        self.peer_min_ack_delay = min_ack_delay
        self.peer_max_ack_delay = max_ack_delay_ms * 1000
        self._same_below = 0  # the delay's bounds changed

    def wanted(
        self, congestion_window: int, max_datagram_size: int, smoothed_rtt: float
    ) -> tuple[int, int]:
        """The (threshold, delay µs) we would ask for now (see the module docs)."""
        threshold = congestion_window // (4 * max_datagram_size) - 1
        if threshold < 1:
            threshold = 1
        elif threshold > MAX_ACK_ELICITING_THRESHOLD:
            threshold = MAX_ACK_ELICITING_THRESHOLD
        delay = int(smoothed_rtt * 250) * 1000  # srtt / 4, whole milliseconds, in µs
        if delay < self.min_delay:
            delay = self.min_delay
        minimum = self.peer_min_ack_delay or 0
        if delay > self.peer_max_ack_delay:
            delay = self.peer_max_ack_delay
        if delay < minimum:
            delay = minimum
        return threshold, delay

    def wants_send(
        self,
        now: float,
        congestion_window: int,
        max_datagram_size: int,
        smoothed_rtt: float,
        has_rtt_sample: bool,
    ) -> bool:
        """Is a new ACK_FREQUENCY frame owed? Decides ``_pending`` as a side effect."""
        if not self.enabled or self.peer_min_ack_delay is None or not has_rtt_sample:
            return False
        if self._pending is not None:
            return True
        if (
            smoothed_rtt < self._same_rtt_below
            and self._same_from <= congestion_window < self._same_below
            and max_datagram_size == self._same_mds
        ):
            return False  # what wanted() says is still the request in force
        last = self._last_sent
        if last is not None and now - last < smoothed_rtt:
            return False  # draft §8.1: at most once per round trip
        if len(self._in_flight) >= MAX_REQUESTS_IN_FLIGHT:
            return False
        # wanted(), inline: per build (tests/quic/test_hot_path_inlines.py)
        threshold = congestion_window // (4 * max_datagram_size) - 1
        if threshold < 1:
            threshold = 1
        elif threshold > MAX_ACK_ELICITING_THRESHOLD:
            threshold = MAX_ACK_ELICITING_THRESHOLD
        delay = int(smoothed_rtt * 250) * 1000  # srtt / 4, whole milliseconds, in µs
        if delay < self.min_delay:
            delay = self.min_delay
        if delay > self.peer_max_ack_delay:
            delay = self.peer_max_ack_delay
        minimum = self.peer_min_ack_delay  # not None: checked above
        if delay < minimum:
            delay = minimum
        requested = self._requested
        if requested is not None and requested[0] == threshold and requested[1] == delay:
            self._remember_same(threshold, max_datagram_size, smoothed_rtt)
            return False
        self._pending = threshold, delay
        return True

    def write(self, asm: PacketAssembler, now: float) -> None:
        """Write the pending ACK_FREQUENCY frame if it fits (draft §4)."""
        pending = self._pending
        if pending is None:
            return
        threshold, delay = pending
        seq = self._latest_seq + 1
        frame = encode_ack_frequency_frame(seq, threshold, delay, _REORDERING_THRESHOLD)
        if len(frame) > asm.room:
            return
        asm.push(frame)
        packet = asm.packet
        packet.ack_eliciting = packet.in_flight = True
        packet.handlers.append((self._fate, (seq,)))
        self._latest_seq = seq
        self._pending = None
        self._requested = pending
        self._same_below = 0  # a new request in force
        self._last_sent = now
        self._sent_count += 1
        self._in_flight[seq] = delay
        self._apply_max_ack_delay()

    def _remember_same(self, threshold: int, max_datagram_size: int, smoothed_rtt: float) -> None:
        """wanted() just equalled the request in force: so it does, while no request is
        sent and the peer's bounds stay, for every window of the same threshold and,
        when the delay is the floor (``min_delay``), every smoothed RTT whose quarter
        in whole milliseconds stays at most the floor (the same clamps). The next
        builds then answer at once (issue 10: asked per build and per quiet check,
        while the window and the RTT move a little with every ACK)."""
        quantum = 4 * max_datagram_size  # the threshold is window // quantum - 1, clamped
        if threshold <= 1:
            low, high = 0, 3 * quantum
        elif threshold >= MAX_ACK_ELICITING_THRESHOLD:
            low, high = (MAX_ACK_ELICITING_THRESHOLD + 1) * quantum, 1 << 62
        else:
            low, high = (threshold + 1) * quantum, (threshold + 2) * quantum
        # below this, int(srtt * 250) * 1000 <= min_delay: the floor decides the delay
        below = (self.min_delay // 1000) / 250
        if smoothed_rtt < below:
            self._same_from, self._same_below = low, high
            self._same_mds, self._same_rtt_below = max_datagram_size, below

    def write_immediate_ack(self, asm: PacketAssembler) -> bool:
        """IMMEDIATE_ACK in a probe (draft §7); False if unsupported or no room."""
        if self.peer_min_ack_delay is None or asm.room < len(IMMEDIATE_ACK_FRAME):
            return False
        asm.push(IMMEDIATE_ACK_FRAME)
        packet = asm.packet
        packet.ack_eliciting = packet.in_flight = True
        return True

    def _fate(self, acked: bool, seq: int) -> None:
        delay = self._in_flight.pop(seq, None)
        if delay is None:
            return
        if acked:
            if seq > self._acked_seq:  # acknowledgments may arrive out of order
                self._acked_seq = seq
                self._acked_delay = delay
        elif seq == self._latest_seq and self._requested is not None:
            self._pending = self._requested  # draft §4: send the newest values again
        self._apply_max_ack_delay()

    def _apply_max_ack_delay(self) -> None:
        """Draft §7: the PTO uses the largest of the acknowledged and in-flight delays."""
        delay = self._acked_delay if self._acked_delay is not None else self.peer_max_ack_delay
        for pending in self._in_flight.values():
            if pending > delay:
                delay = pending
        self._recovery.max_ack_delay = delay / 1_000_000
