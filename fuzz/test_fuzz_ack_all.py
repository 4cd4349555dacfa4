"""The loss recovery's ACK shortcuts give the general path's results.

``LossRecovery.on_ack_received`` takes ``_on_ack_all`` for one range acknowledging
every tracked packet (no skipped packet number, no remembered lost packet),
``_on_ack_prefix`` for one range acknowledging the oldest of them, up to at least the
largest acknowledged before (the ACK that waited for a reply), and ``_on_ack_ranges``
for anything else. Two twins are driven alike through random sends (ack-eliciting or
not, in flight or not, in every space), skipped packet numbers, waits, loss-timer
expiries (which fill the lost-packet memory), flag changes and ACK frames — arbitrary
ranges, ranges acknowledging everything (the first shortcut's case) or a prefix (the
second's) from below or at ``lowest_unacked``, ranges above what was sent or covering
a skipped number (errors), with and without an ECN-CE count. One twin answers every ACK with
``on_ack_received``, the other with the general ``_on_ack_ranges``: their results, the
order in which packet handlers ran, the errors raised, and the recovery, RTT and
congestion state must stay equal.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fuzz.profiles import examples
from quic.controllers import create_controller
from quic.errors import QuicProtocolError
from quic.recovery import LossRecovery, SentPacket
from quic.rtt import RttEstimator

MDS = 1200


class _Twin:
    def __init__(self, controller: str, is_client: bool, max_lost: int = 8) -> None:
        rtt = RttEstimator()
        self.cc = create_controller(controller, MDS, rtt, hystart=True)
        self.recovery = LossRecovery(
            self.cc, rtt, is_client=is_client, max_lost=max_lost, max_sent=64
        )
        self.log: list[tuple[int, int, bool]] = []  # (space, pn, acked) as handlers ran

    def handler(self, acked: bool, space: int, pn: int) -> None:
        self.log.append((space, pn, acked))

    def state(self) -> Any:
        r = self.recovery
        rtt = r.rtt
        spaces = [
            (
                list(s.sent),
                s.lowest_unacked,
                s.largest_acked,
                s.largest_sent,
                s.loss_time,
                s.ack_eliciting_in_flight,
                s.ecn_ce_count,
                list(s.lost),
                list(s.ack_only) if s.ack_only is not None else None,
                s.time_of_last_ack_eliciting,
            )
            for s in r.spaces
        ]
        return (
            spaces,
            (rtt.latest_rtt, rtt.min_rtt, rtt.smoothed_rtt, rtt.rttvar, rtt.first_rtt_sample),
            (self.cc.congestion_window, self.cc.bytes_in_flight),
            (r.pto_count, r._pto_anchor, r._handshake_acked, r.get_loss_detection_timer()),
            list(self.log),
        )


def _result(outcome: Any) -> Any:
    if isinstance(outcome, Exception):
        return (type(outcome), str(outcome))
    return (
        [(p.space, p.packet_number) for p in outcome.acked],
        [(p.space, p.packet_number) for p in outcome.lost],
        outcome.rtt_sample,
    )


class AckAllMachine(RuleBasedStateMachine):
    @initialize(
        controller=st.sampled_from(["newreno", "cubic", "bbr"]),
        is_client=st.booleans(),
        max_lost=st.sampled_from((0, 0, 8)),  # 0: no lost-packet memory to keep off
    )
    def start(self, controller: str, is_client: bool, max_lost: int) -> None:
        self.fast = _Twin(controller, is_client, max_lost)
        self.general = _Twin(controller, is_client, max_lost)
        self.now = 0.0
        self.pn = [0, 0, 0]
        self.shortcuts = 0
        self.prefixes = 0

    def _both(self) -> tuple[_Twin, _Twin]:
        return self.fast, self.general

    @rule(
        space=st.sampled_from((0, 1, 2, 2, 2)),
        count=st.integers(1, 12),
        eliciting=st.booleans(),
        in_flight=st.booleans(),
        size=st.integers(40, MDS),
    )
    def send(self, space: int, count: int, eliciting: bool, in_flight: bool, size: int) -> None:
        for _ in range(count):
            pn = self.pn[space]
            self.pn[space] += 1
            for twin in self._both():
                packet = SentPacket(space, pn, size, eliciting, in_flight or eliciting)
                packet.handlers.append((twin.handler, (space, pn)))
                twin.recovery.on_packet_sent(packet, self.now)

    @rule(space=st.sampled_from((0, 1, 2)), go=st.integers(0, 7))
    def skip(self, space: int, go: int) -> None:
        if go:
            return  # rarely: a skipped number keeps the space off the shortcut for good
        pn = self.pn[space]
        self.pn[space] += 1
        for twin in self._both():
            twin.recovery.on_packet_number_skipped(space, pn)

    @rule(dt=st.sampled_from((0.0, 0.001, 0.01, 0.05, 0.3, 1.5)))
    def wait(self, dt: float) -> None:
        self.now += dt

    @rule(go=st.integers(0, 3))
    def timeout(self, go: int) -> None:
        if go:
            return  # now and then: lost packets are remembered for a few PTOs
        for twin in self._both():
            twin.recovery.on_loss_detection_timeout(self.now)

    @rule(confirmed=st.booleans())
    def confirm(self, confirmed: bool) -> None:
        for twin in self._both():
            twin.recovery.handshake_confirmed = confirmed

    def _ack(self, space: int, ranges: list[tuple[int, int]], delay: float, ce: int | None) -> None:
        st_fast = self.fast.recovery.spaces[space]
        if (
            ranges
            and len(ranges) == 1
            and ranges[0][1] == st_fast.largest_sent
            and st_fast.sent
            and ranges[0][0] <= st_fast.lowest_unacked
            and not st_fast.skipped
            and not st_fast.lost
        ):
            self.shortcuts += 1
        outcomes = []
        for call in (self.fast.recovery.on_ack_received, self.general.recovery._on_ack_ranges):
            try:
                outcomes.append(_result(call(space, tuple(ranges), delay, self.now, ce)))
            except QuicProtocolError as exc:
                outcomes.append(_result(exc))
        assert outcomes[0] == outcomes[1]

    @rule(
        space=st.sampled_from((0, 1, 2, 2, 2)),
        below=st.sampled_from((0, 1, 3, 1 << 20)),  # 1 << 20: from 0, over the lost ones
        delay=st.sampled_from((0.0, 0.002, 0.03)),
        ce=st.none() | st.integers(0, 6),
    )
    def ack_everything(self, space: int, below: int, delay: float, ce: int | None) -> None:
        """One range up to the largest sent from at or below the lowest unacknowledged:
        the shortcut's case (unless a skipped or lost number forbids it)."""
        s = self.fast.recovery.spaces[space]
        if s.largest_sent < 0:
            return
        low = max(0, min(s.lowest_unacked, s.largest_sent) - below)
        self._ack(space, [(low, s.largest_sent)], delay, ce)

    @rule(
        space=st.sampled_from((0, 1, 2, 2, 2)),
        below=st.sampled_from((0, 1, 1 << 20)),
        short=st.integers(1, 4),
        delay=st.sampled_from((0.0, 0.002, 0.03)),
        ce=st.none() | st.integers(0, 6),
    )
    def ack_prefix(self, space: int, below: int, short: int, delay: float, ce: int | None) -> None:
        """One range from at or below the lowest unacknowledged to below the largest
        sent: ``_on_ack_prefix``'s case (the ACK that waited for a reply), unless the
        largest acknowledged is above it or a skipped or lost number forbids it."""
        s = self.fast.recovery.spaces[space]
        top = s.largest_sent - short
        if top < 0:
            return
        low = max(0, min(s.lowest_unacked, top) - below)
        if (
            s.sent
            and low <= s.lowest_unacked <= top
            and top >= s.largest_acked
            and not s.skipped
            and not s.lost
        ):
            self.prefixes += 1
        self._ack(space, [(low, top)], delay, ce)

    @rule(
        space=st.sampled_from((0, 1, 2, 2, 2)),
        depth=st.integers(0, 3),
        delay=st.sampled_from((0.0, 0.002, 0.03)),
    )
    def ack_newest(self, space: int, depth: int, delay: float) -> None:
        """One range of the newest packets only: older ones stay tracked (a loss time
        may be set), and the range starts above ``lowest_unacked`` (no shortcut)."""
        s = self.fast.recovery.spaces[space]
        if s.largest_sent >= 0:
            self._ack(space, [(max(0, s.largest_sent - depth), s.largest_sent)], delay, None)

    @rule(
        space=st.sampled_from((0, 1, 2, 2, 2)),
        data=st.data(),
        delay=st.sampled_from((0.0, 0.002, 0.03)),
        ce=st.none() | st.integers(0, 6),
    )
    def ack_ranges(self, space: int, data: st.DataObject, delay: float, ce: int | None) -> None:
        """Arbitrary ranges, now and then beyond what was sent (PROTOCOL_VIOLATION)."""
        beyond = data.draw(st.integers(0, 4)) == 0
        top = self.fast.recovery.spaces[space].largest_sent + (2 if beyond else 0)
        if top < 0:
            return
        picked = sorted(data.draw(st.sets(st.integers(0, top), min_size=1, max_size=12)))
        ranges: list[tuple[int, int]] = []
        for pn in reversed(picked):  # descending, as decoded from a frame
            if ranges and ranges[-1][0] == pn + 1:
                ranges[-1] = (pn, ranges[-1][1])
            else:
                ranges.append((pn, pn))
        self._ack(space, ranges, delay, ce)

    @invariant()
    def twins_agree(self) -> None:
        if hasattr(self, "fast"):
            assert self.fast.state() == self.general.state()


AckAllMachine.TestCase.settings = settings(
    max_examples=examples(80),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAckAll = AckAllMachine.TestCase


@pytest.mark.parametrize("space", [0, 1, 2])
@pytest.mark.parametrize("confirmed", [False, True])
def test_the_shortcut_is_taken_in_a_ping_pong(space: int, confirmed: bool) -> None:
    """Not vacuous: one packet out, its ACK in (with an ACK delay, RTTs that vary), a
    hundred times: every ACK takes the shortcut, and the outcome is the general path's
    (Initial ACK delays ignored, RFC 9002 §5.3)."""
    fast, general = _Twin("cubic", False), _Twin("cubic", False)
    for twin in (fast, general):
        twin.recovery.handshake_confirmed = confirmed
    calls = 0
    original = LossRecovery._on_ack_ranges

    def counting(self: LossRecovery, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(self, *args)

    now = 0.0
    for pn in range(100):
        for twin in (fast, general):
            packet = SentPacket(space, pn, 100)
            packet.handlers.append((twin.handler, (space, pn)))
            twin.recovery.on_packet_sent(packet, now)
        now += (0.01, 0.05, 0.02, 0.04)[pn % 4]
        LossRecovery._on_ack_ranges = counting  # type: ignore[assignment]
        try:
            got = fast.recovery.on_ack_received(space, ((pn, pn),), 0.015, now)
        finally:
            LossRecovery._on_ack_ranges = original
        want = general.recovery._on_ack_ranges(space, ((pn, pn),), 0.015, now)
        assert _result(got) == _result(want)
        assert fast.state() == general.state()
    assert calls == 0


@pytest.mark.parametrize("case", ["lost", "skipped", "above"])
def test_the_shortcut_steps_aside(case: str) -> None:
    """The cases the shortcut must leave to the general path: packets declared lost
    lately that the range covers (a spurious loss, RFC 9438 §4.9), a skipped packet
    number under the range (PROTOCOL_VIOLATION, RFC 9000 §13.1), a range starting
    above the oldest tracked packet (not acknowledged: here declared lost)."""
    twins = (_Twin("cubic", False), _Twin("cubic", False))
    for twin in twins:
        r = twin.recovery
        for pn in range(6):
            packet = SentPacket(2, pn, 100)
            packet.handlers.append((twin.handler, (2, pn)))
            r.on_packet_sent(packet, 0.0)
        if case == "skipped":
            r.on_packet_number_skipped(2, 6)
            packet = SentPacket(2, 7, 100)
            packet.handlers.append((twin.handler, (2, 7)))
            r.on_packet_sent(packet, 0.0)
        if case == "lost":
            assert [p.packet_number for p in r.on_ack_received(2, ((5, 5),), 0.0, 0.01).lost] == [
                0,
                1,
                2,
            ]
    top = twins[0].recovery.spaces[2].largest_sent
    ranges = ((0, top),) if case != "above" else ((1, top),)
    outcomes = _both_paths(twins, ranges)
    assert outcomes[0] == outcomes[1]
    assert twins[0].state() == twins[1].state()
    if case == "lost":
        assert not twins[0].recovery.spaces[2].lost  # found spurious and forgotten
    if case == "skipped":
        assert outcomes[0][0] is QuicProtocolError
    if case == "above":
        assert outcomes[0][1] == [(2, 0)]  # packet 0: lost (packet threshold, RFC 9002 §6.1.1)


def _both_paths(twins: tuple[_Twin, _Twin], ranges: tuple[tuple[int, int], ...]) -> list[Any]:
    """The application-space ACK ``ranges`` at 20 ms: through ``on_ack_received`` on
    the first twin, through the general ``_on_ack_ranges`` on the second; each outcome
    (or error) as ``_result`` gives it."""
    outcomes = []
    for call in (twins[0].recovery.on_ack_received, twins[1].recovery._on_ack_ranges):
        try:
            outcomes.append(_result(call(2, ranges, 0.0, 0.02)))
        except QuicProtocolError as exc:
            outcomes.append(_result(exc))
    return outcomes


def _counting(name: str, counts: dict[str, int]) -> Any:
    original = getattr(LossRecovery, name)

    def counting(self: LossRecovery, *args: Any) -> Any:
        counts[name] += 1
        return original(self, *args)

    return counting


@pytest.mark.parametrize("space", [0, 1, 2])
@pytest.mark.parametrize("eliciting_reply", [False, True])
def test_the_prefix_shortcut_is_taken_for_the_ack_that_waited(
    space: int, eliciting_reply: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not vacuous: a ping-pong whose ACK is processed after the reply left (the reply
    tracked, above the range; ack-eliciting or an ACK-only packet): every ACK takes
    ``_on_ack_prefix``, none the general path, and the outcome is the general path's."""
    fast, general = _Twin("cubic", True), _Twin("cubic", True)
    for twin in (fast, general):
        twin.recovery.handshake_confirmed = True
    counts = {"_on_ack_prefix": 0, "_on_ack_ranges": 0, "_on_ack_all": 0}
    now = 0.0
    pn = 0

    def send(eliciting: bool) -> None:
        nonlocal pn
        for twin in (fast, general):
            packet = SentPacket(space, pn, 100, eliciting, eliciting)
            packet.handlers.append((twin.handler, (space, pn)))
            twin.recovery.on_packet_sent(packet, now)
        pn += 1

    send(True)
    for _ in range(100):
        acked = pn - 1
        now += 0.01
        send(eliciting_reply)  # the reply leaves before the ACK is processed
        for name in counts:
            monkeypatch.setattr(LossRecovery, name, _counting(name, counts))
        got = fast.recovery.on_ack_received(space, ((0, acked),), 0.002, now, 0)
        monkeypatch.undo()
        want = general.recovery._on_ack_ranges(space, ((0, acked),), 0.002, now, 0)
        assert _result(got) == _result(want)
        assert got.acked
        assert fast.state() == general.state()
    assert counts == {"_on_ack_prefix": 100, "_on_ack_ranges": 0, "_on_ack_all": 0}


@pytest.mark.parametrize("case", ["newer-acked", "lost", "skipped", "above", "nothing-new"])
def test_the_prefix_shortcut_steps_aside(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases ``_on_ack_prefix`` must leave to the general path: a newer packet
    acknowledged before (older ones at or below it may be lost, RFC 9002 A.10), lost
    packets remembered (spurious losses), a skipped number under the range, a range
    starting above the oldest tracked packet, a range below it (nothing new)."""
    lost_memory = 0 if case == "newer-acked" else 8  # none: the first lost ones forgotten
    twins = (_Twin("cubic", False, lost_memory), _Twin("cubic", False, lost_memory))
    for twin in twins:
        r = twin.recovery
        for pn in range(8):
            if case == "skipped" and pn == 2:
                r.on_packet_number_skipped(2, pn)
                continue
            packet = SentPacket(2, pn, 100)
            packet.handlers.append((twin.handler, (2, pn)))
            r.on_packet_sent(packet, 0.0)
        if case == "newer-acked":
            # 0..3 lost (packet threshold), 4 and 5 tracked, 6 acknowledged, 7 tracked
            assert len(r.on_ack_received(2, ((6, 6),), 0.0, 0.001).lost) == 4
            assert not r.spaces[2].lost
        if case == "lost":
            assert [p.packet_number for p in r.on_ack_received(2, ((5, 5),), 0.0, 0.01).lost]
        if case == "nothing-new":
            r.on_ack_received(2, ((0, 3),), 0.0, 0.001)
    ranges = {
        "newer-acked": ((0, 4),),
        "lost": ((0, 4),),
        "skipped": ((0, 4),),
        "above": ((1, 4),),
        "nothing-new": ((0, 2),),
    }[case]
    counts = {"_on_ack_prefix": 0}
    monkeypatch.setattr(LossRecovery, "_on_ack_prefix", _counting("_on_ack_prefix", counts))
    outcomes = _both_paths(twins, ranges)
    assert counts["_on_ack_prefix"] == 0
    assert outcomes[0] == outcomes[1]
    assert twins[0].state() == twins[1].state()
    if case == "newer-acked":
        assert outcomes[0][0] == [(2, 4)]
        # 5, below the largest acknowledged, keeps a loss time (RFC 9002 §6.1.2)
        assert twins[0].recovery.spaces[2].loss_time is not None
    if case == "skipped":
        assert outcomes[0][0] is QuicProtocolError
