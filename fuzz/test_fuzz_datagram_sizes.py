"""Stateful test of DATAGRAM sizes against a changing path MTU (quic.conn_datagrams with
quic.conn_pmtu; docs/datagrams.md).

``DatagramSizeMachine`` runs a :class:`~quic.conn_pmtu.PmtuDiscovery` against a path
whose MTU changes at random (probes acknowledged or lost, black holes from PTOs) and
wires its changes to a :class:`~quic.conn_datagrams.DatagramChannel` as the connection
does (a decrease drops queued datagrams that no longer fit). The application sends
datagrams of any size around the offered maximum; packets of the current size are
built. Invariants: a send above the offered size is refused and never queued; no
DATAGRAM frame ever exceeds its packet; the queue stays within its limit; and every
accepted datagram is accounted for exactly once — written, dropped because the queue
was full, dropped because the path shrank, or still pending.
"""

from __future__ import annotations

from collections import deque

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fuzz.profiles import examples
from quic.conn_datagrams import DatagramChannel
from quic.conn_pmtu import BASE_PLPMTU, PmtuDiscovery
from quic.events import QuicEvent
from quic.frames import datagram_frame_header_size
from quic.recovery import SentPacket

DCID = 8
QUEUE = 16
HEADER = 1 + DCID + 4  # short header with a 4-byte packet number
TAG = 16


class PacketOf:
    """What DatagramChannel.write needs of a PacketAssembler: one open packet."""

    def __init__(self, datagram_size: int) -> None:
        self.room = datagram_size - HEADER - TAG
        self.payload_size = 0
        self.packet = SentPacket(2, 0, 0, False, False)
        self.frames: list[int] = []  # payload length of each DATAGRAM frame

    def push(self, data: bytes) -> None:
        assert len(data) <= self.room  # nothing overflows its packet
        self.room -= len(data)
        self.payload_size += len(data)


class DatagramSizeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.channel = DatagramChannel(65536, QUEUE, deque[QuicEvent]())
        self.channel.set_peer_max_frame_size(65536)
        self.size = BASE_PLPMTU
        self.pmtu = PmtuDiscovery(BASE_PLPMTU, 1500, 600.0, self._apply)
        self.path_mtu = 1400
        self.now = 0.0
        self.accepted = 0
        self.written = 0
        self.pn = 0

    def _apply(self, size: int) -> None:  # as QuicConnection._set_datagram_size
        shrunk = size < self.size
        self.size = size
        if shrunk:
            self.channel.shrink(self.channel.max_payload(DCID, size))

    @rule()
    def confirm(self) -> None:
        self.pmtu.start(self.now)

    @rule(mtu=st.integers(1200, 1600))
    def path_changes(self, mtu: int) -> None:
        self.path_mtu = mtu

    @rule()
    def probe(self) -> None:
        size = self.pmtu.probe_size()
        if size is not None:
            packet = PacketOf(size)
            self.pmtu.write_probe(packet, self.now, 0.1)  # type: ignore[arg-type]
            for handler, args in packet.packet.handlers:
                handler(size <= self.path_mtu, *args)

    @rule()
    def pto(self) -> None:
        self.now += 1.0
        self.pmtu.on_pto(self.now)

    @rule(delta=st.integers(-200, 5))
    def app_sends(self, delta: int) -> None:
        offered = self.channel.max_payload(DCID, self.size)
        n = max(0, offered + delta)
        pending = self.channel.pending
        try:
            self.channel.send(bytes(n), DCID, self.size)
        except ValueError:
            assert n > offered  # refused only above the offered size ...
            assert self.channel.pending == pending  # ... and never queued
            return
        assert n <= offered
        self.accepted += 1

    @rule()
    def build_packet(self) -> None:
        packet = PacketOf(self.size)
        before = self.channel.pending + self.channel.dropped
        self.channel.write(packet)  # type: ignore[arg-type]
        self.written += before - self.channel.pending - self.channel.dropped

    @invariant()
    def accounted(self) -> None:
        channel = self.channel
        assert channel.pending <= QUEUE
        assert self.accepted == (
            self.written + channel.dropped_queue_full + channel.dropped_too_large + channel.pending
        )


TestDatagramSizeMachine = DatagramSizeMachine.TestCase
TestDatagramSizeMachine.settings = settings(
    max_examples=examples(150), stateful_step_count=60, deadline=None
)


def test_frame_header_size_is_what_the_overhead_assumes() -> None:
    # max_payload allows 3 bytes of frame header: type and a 2-byte length
    assert datagram_frame_header_size(1500) == 3
