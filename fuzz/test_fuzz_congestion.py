"""Stateful property test of loss recovery with each congestion controller (NewReno with
HyStart++, CUBIC with HyStart++ and the spurious-loss undo, BBR with its loss/ECN
bounds): random sends, ACK frames that acknowledge any subset of what was sent (packets
already declared lost included: spurious losses), ECN-CE, loss timers and time jumps.

Invariants after every step: the controller's bytes in flight are exactly the in-flight
packets loss recovery still tracks; the window never drops below the minimum; the lost
packets remembered stay within ``max_lost``; HyStart++ counts at most CSS_ROUNDS rounds
of CSS; an undo never leaves the window above the one before the reduction."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fuzz.profiles import examples
from quic.cc_bbr import Bbr
from quic.cc_cubic import Cubic
from quic.cc_hystart import CSS_ROUNDS
from quic.congestion import NewReno
from quic.controllers import create_controller
from quic.recovery import LossRecovery, SentPacket
from quic.rtt import RttEstimator

MDS = 1200
MAX_LOST = 8


class RecoveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.pn = 0
        self.recovery: LossRecovery | None = None
        self.cc: NewReno | Bbr | None = None
        self.ce = 0
        self.peak_before_undo = 0

    @initialize(name=st.sampled_from(["newreno", "cubic", "bbr"]))
    def start(self, name: str) -> None:
        rtt = RttEstimator()
        cc = create_controller(name, MDS, rtt, hystart=True)
        assert isinstance(cc, NewReno | Bbr)
        self.cc = cc
        self.recovery = LossRecovery(cc, rtt, is_client=False, max_lost=MAX_LOST, max_sent=256)
        self.recovery.handshake_confirmed = True

    @rule(count=st.integers(1, 30), size=st.integers(100, MDS))
    def send(self, count: int, size: int) -> None:
        assert self.recovery is not None
        for _ in range(count):
            self.recovery.on_packet_sent(SentPacket(2, self.pn, size), self.now)
            self.pn += 1

    @rule(dt=st.floats(0.0, 0.3))
    def wait(self, dt: float) -> None:
        self.now += dt

    @rule(
        data=st.data(),
        ce=st.booleans(),
    )
    def ack(self, data: st.DataObject, ce: bool) -> None:
        assert self.recovery is not None and self.cc is not None
        if not self.pn:
            return
        picked = sorted(
            data.draw(st.sets(st.integers(0, self.pn - 1), min_size=1, max_size=40)),
            reverse=True,
        )
        ranges: list[tuple[int, int]] = []
        for pn in picked:  # descending: extend the last range downwards
            if ranges and ranges[-1][0] == pn + 1:
                ranges[-1] = (pn, ranges[-1][1])
            else:
                ranges.append((pn, pn))
        if ce:
            self.ce += 1
        window = self.cc.congestion_window
        if isinstance(self.cc, Cubic):
            self.peak_before_undo = max(self.peak_before_undo, window, int(self.cc.cwnd_prior))
        undos = getattr(self.cc, "spurious_undos", 0)
        self.now += 0.001
        self.recovery.on_ack_received(2, ranges, 0.0, self.now, self.ce)
        if isinstance(self.cc, Cubic) and self.cc.spurious_undos > undos:
            assert self.cc.congestion_window <= self.peak_before_undo + 2 * MDS

    @rule()
    def timer(self) -> None:
        assert self.recovery is not None
        deadline = self.recovery.get_loss_detection_timer()
        if deadline is not None:
            self.now = max(self.now, deadline)
            self.recovery.on_loss_detection_timeout(self.now)

    @invariant()
    def consistent(self) -> None:
        if self.recovery is None or self.cc is None:
            return
        tracked = sum(p.size for p in self.recovery.spaces[2].sent.values() if p.in_flight)
        assert self.cc.bytes_in_flight == tracked
        assert self.cc.congestion_window >= self.cc.minimum_window
        assert len(self.recovery.spaces[2].lost) <= MAX_LOST
        if isinstance(self.cc, NewReno) and self.cc.hystart is not None:
            assert self.cc.hystart.css_rounds <= CSS_ROUNDS


RecoveryMachine.TestCase.settings = settings(max_examples=examples(150), deadline=None)
TestRecovery = RecoveryMachine.TestCase
