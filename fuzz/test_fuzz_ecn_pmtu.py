"""Stateful tests of the ECN controller and the PMTU component (quic.conn_ecn,
quic.conn_pmtu) under any sequence of events a network and a peer can produce.

* ``EcnMachine`` sends packets (marked or not, as the controller says), has them
  acknowledged or lost in any order, and feeds ACK frames with arbitrary — honest or
  lying — ECN counts, reordered largest-acknowledged values and PTO expiries. The
  controller never raises; a failed path is never marked again; a CE event is only
  reported for an ACK whose counts passed validation; honest counts on a path that
  delivers marks never fail it.
* ``PmtuMachine`` sends probes of the sizes the component asks for, acknowledges or
  loses them (or lets their timer expire) against a path MTU that changes at random,
  reports loss batches, acknowledgments and PTOs. The PLPMTU stays within
  [BASE_PLPMTU, MAX_PLPMTU], every change reaches the send path, one probe at most is
  outstanding, every probe is larger than the PLPMTU and within the maximum, and a
  search on a stable path ends.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fuzz.profiles import examples
from quic.conn_ecn import ECN_ECT0, ECN_NOT_ECT, EcnController, EcnState
from quic.conn_pmtu import BASE_PLPMTU, PmtuDiscovery, PmtuState
from quic.recovery import SentPacket

APP = 2


class FakeAsm:
    """What ``PmtuDiscovery.write_probe`` needs of a packet assembler."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.packet = SentPacket(APP, 0, 0, False, False)

    def push(self, data: bytes) -> None:
        assert len(data) <= self.room
        self.room -= len(data)


class EcnMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ecn = EcnController()
        self.outstanding: list[SentPacket] = []
        self.marked: set[int] = set()  # packet numbers sent ECT(0)
        self.pn = 0
        self.largest = -1
        self.delivered = [0, 0]  # honest peer counts (ECT(0), CE) of what we sent marked
        self.honest = True  # every ACK so far carried the honest counts
        self.failed_seen = False

    @rule(count=st.integers(1, 5))
    def send(self, count: int) -> None:
        marked = self.ecn.begin_send() == ECN_ECT0
        for _ in range(count):
            packet = SentPacket(APP, self.pn, 1200)
            self.pn += 1
            if marked:
                self.ecn.on_packet_sent(packet)
                self.marked.add(packet.packet_number)
            self.outstanding.append(packet)

    @precondition(lambda self: self.outstanding)
    @rule(
        data=st.data(),
        ce=st.booleans(),
        counts=st.none() | st.tuples(*(st.integers(0, 50),) * 3),
        lie=st.booleans(),
    )
    def ack(
        self, data: st.DataObject, ce: bool, counts: tuple[int, int, int] | None, lie: bool
    ) -> None:
        n = data.draw(st.integers(1, len(self.outstanding)))
        acked = [
            self.outstanding.pop(data.draw(st.integers(0, len(self.outstanding) - 1)))
            for _ in range(n)
        ]
        for packet in acked:
            if packet.packet_number in self.marked:
                self.delivered[1 if ce else 0] += 1
            for handler, args in packet.frame_handlers():
                handler(True, *args)
        largest = max(p.packet_number for p in acked)
        before = self.ecn.state
        if lie:
            self.honest = False
            frame_counts = counts
        else:
            ect0, ce_count = self.delivered
            frame_counts = (ect0, 0, ce_count) if ect0 or ce_count else None
        reported = self.ecn.on_ack_frame(APP, largest, frame_counts)
        if reported:
            assert before is not EcnState.FAILED and self.ecn.state is not EcnState.FAILED
        if self.honest and before is not EcnState.FAILED:
            assert self.ecn.state is not EcnState.FAILED  # honest counts always validate
        self.largest = max(self.largest, largest)

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        packet = self.outstanding.pop(data.draw(st.integers(0, len(self.outstanding) - 1)))
        for handler, args in packet.frame_handlers():
            handler(False, *args)

    @rule()
    def pto(self) -> None:
        self.ecn.on_pto()

    @invariant()
    def consistent(self) -> None:
        state = self.ecn.state
        if state is EcnState.FAILED:
            self.failed_seen = True
            assert self.ecn.begin_send() == ECN_NOT_ECT
        assert not (self.failed_seen and state is not EcnState.FAILED)  # never revived
        assert self.ecn.marking == (state in (EcnState.TESTING, EcnState.CAPABLE))


TestEcnMachine = EcnMachine.TestCase
TestEcnMachine.settings = settings(
    max_examples=examples(200), stateful_step_count=50, deadline=None
)


class PmtuMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.applied: list[int] = []
        self.pmtu = PmtuDiscovery(1200, 1500, 600.0, self.applied.append)
        self.path_mtu = 1400
        self.now = 0.0
        self.probes: list[tuple[SentPacket, int]] = []
        self.pn = 0
        self.confirmed = False

    @rule()
    def confirm(self) -> None:
        self.pmtu.start(self.now)
        self.confirmed = True

    @rule(limit=st.integers(1200, 1600))
    def peer_limit(self, limit: int) -> None:
        self.pmtu.set_peer_limit(limit)

    @rule(mtu=st.integers(1200, 1600))
    def path_changes(self, mtu: int) -> None:
        self.path_mtu = mtu

    @rule()
    def send_probe(self) -> None:
        size = self.pmtu.probe_size()
        if size is None:
            return
        assert self.pmtu.plpmtu < size <= self.pmtu._limit
        asm = FakeAsm(size - 30)
        self.pmtu.write_probe(asm, self.now, 0.1)  # type: ignore[arg-type]
        self.probes.append((asm.packet, size))
        assert self.pmtu.probe_size() is None  # one probe at a time

    @precondition(lambda self: self.probes)
    @rule(data=st.data())
    def probe_fate(self, data: st.DataObject) -> None:
        packet, size = self.probes.pop(data.draw(st.integers(0, len(self.probes) - 1)))
        for handler, args in packet.frame_handlers():
            handler(size <= self.path_mtu, *args)

    @rule(dt=st.floats(0.0, 700.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        deadline = self.pmtu.deadline
        if deadline is not None and deadline <= self.now:
            self.pmtu.handle_timer(self.now)

    @rule(size=st.integers(100, 1600), acked=st.booleans())
    def traffic(self, size: int, acked: bool) -> None:
        packet = SentPacket(APP, self.pn, size)
        self.pn += 1
        if acked:
            self.pmtu.on_ack([packet], [], self.now)
        else:
            self.pmtu.on_ack([], [packet], self.now)

    @rule()
    def pto(self) -> None:
        self.pmtu.on_pto(self.now)

    @invariant()
    def bounded(self) -> None:
        pmtu = self.pmtu
        assert BASE_PLPMTU <= pmtu.plpmtu <= 1500
        assert pmtu.plpmtu == (self.applied[-1] if self.applied else 1200)
        if not self.confirmed and pmtu.black_holes == 0:
            assert pmtu.state in (PmtuState.BASE, PmtuState.DISABLED)


TestPmtuMachine = PmtuMachine.TestCase
TestPmtuMachine.settings = settings(
    max_examples=examples(200), stateful_step_count=60, deadline=None
)


def test_search_on_a_stable_path_ends_at_the_path_mtu() -> None:
    """Deterministic companion: any path MTU in range is found within the precision."""
    for path_mtu in range(1200, 1501, 7):
        applied: list[int] = []
        pmtu = PmtuDiscovery(1200, 1500, 600.0, applied.append)
        pmtu.start(0.0)
        for _ in range(200):
            size = pmtu.probe_size()
            if size is None:
                break
            asm = FakeAsm(size - 30)
            pmtu.write_probe(asm, 0.0, 0.1)  # type: ignore[arg-type]
            for handler, args in asm.packet.handlers:
                handler(size <= path_mtu, *args)
        assert pmtu.state in (PmtuState.SEARCH_COMPLETE, PmtuState.DISABLED)
        assert path_mtu - 16 < pmtu.plpmtu <= max(path_mtu, 1200)
