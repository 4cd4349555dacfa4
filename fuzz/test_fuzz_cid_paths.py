"""Peer connection IDs held by several paths (RFC 9000 §9.5) as a Hypothesis state
machine: :class:`~quic.cid.ConnectionIdManager` driven by any interleaving of
NEW_CONNECTION_ID frames (with growing Retire Prior To), reservations for other paths,
hand-overs when the current path changes, releases of abandoned paths, rotations and the
fate of RETIRE_CONNECTION_ID frames.

Invariants: the ID in use is known and never reserved; every reserved ID is known; no
ID is both known and being retired; the tables stay within ``active_connection_id_limit``
and ``max_pending_retirements``; a path's ID, once released or retired by the peer, is
never handed out again; a stateless reset is recognised only by the token of an ID in
use or reserved (§10.3.1).

Deep profile by hand: ``FUZZ_PROFILE=deep python3 -m pytest -p no:timeout
fuzz/test_fuzz_cid_paths.py``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fuzz.profiles import examples
from quic.cid import ConnectionIdManager
from quic.errors import QuicProtocolError
from quic.packet import PacketType
from quic.packet_builder import PacketAssembler

LIMIT = 4


def _cid(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


def _token(seq: int) -> bytes:
    return b"T" + seq.to_bytes(15, "big")


class _NullProtector:
    key_phase = 0

    def encrypt_packet(self, header: bytes, payload: bytes, pn: int) -> bytes:
        return header + payload + bytes(16)


class PeerIds(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cids = ConnectionIdManager(b"L" * 8, 8, LIMIT)
        self.cids.set_initial_peer_cid(_cid(0), _token(0))
        self.next_seq = 1
        self.retire_prior_to = 0
        self.held: list[int] = []  # sequences our "paths" hold
        self.gone: set[int] = set()  # sequences we stopped using (never used again)
        self.in_flight: list[int] = []  # RETIRE_CONNECTION_ID frames sent
        self.closed = False

    @rule(bump=st.integers(0, 3))
    def new_connection_id(self, bump: int) -> None:
        if self.closed:
            return
        seq = self.next_seq
        self.next_seq += 1
        self.retire_prior_to = min(seq, self.retire_prior_to + bump)
        try:
            self.cids.on_new_connection_id(seq, self.retire_prior_to, _cid(seq), _token(seq))
        except QuicProtocolError:
            self.closed = True  # the connection would close (§5.1.1, §5.1.2)

    @rule()
    def reserve(self) -> None:
        seq = self.cids.reserve_peer_cid()
        if seq is not None:
            assert seq not in self.gone
            assert self.cids.reserved_cid(seq) == _cid(seq)
            self.held.append(seq)

    @rule(pick=st.integers(0, 10))
    def release(self, pick: int) -> None:
        if self.held:
            seq = self.held.pop(pick % len(self.held))
            self.cids.release_peer_cid(seq)
            self.gone.add(seq)

    @rule(pick=st.integers(0, 10), own=st.booleans())
    def hand_over(self, pick: int, own: bool) -> None:
        """The current path changes to a path holding an ID (``own``) or a new one."""
        held = self.held[pick % len(self.held)] if own and self.held else None
        before = self.cids.peer_active_sequence
        previous = self.cids.hand_over(held)
        if previous is None:
            return
        assert previous == before
        if held is not None:
            self.held.remove(held)
        self.held.append(previous)  # the path left keeps it
        assert self.cids.peer_active_sequence not in self.gone

    @rule()
    def rotate(self) -> None:
        before = self.cids.peer_active_sequence
        if self.cids.rotate_peer_cid():
            self.gone.add(before)
            assert self.cids.peer_active_sequence not in self.gone

    @rule(acked=st.booleans())
    def send_retirements(self, acked: bool) -> None:
        cids = self.cids
        if not cids.wants_send(False):
            return
        asm = PacketAssembler(1500)
        asm.begin_datagram(1500)
        assert asm.begin_packet(
            PacketType.ONE_RTT, 1, b"\x01" * 8, b"", _NullProtector(), 2, 0, None
        )
        cids.write(asm, False)
        packet = asm.end_packet()
        if packet is not None:
            for handler, args in packet.frame_handlers():
                handler(acked, *args)

    @invariant()
    def consistent(self) -> None:
        cids = self.cids
        peer = cids.peer
        active = cids.peer_active_sequence
        assert active in peer
        reserved = [s for s in peer if cids.reserved_cid(s) is not None]
        assert active not in reserved
        assert cids.reserved_peer_cids == len(reserved)
        assert len(peer) <= LIMIT + 1  # the limit is checked after adding (then closed)
        assert cids.pending_retirements <= cids.max_pending_retirements + LIMIT
        for seq in peer:
            assert not cids._retiring(seq)
        # a path's ID may have been retired by the peer meanwhile: then it is gone
        for seq in self.held:
            assert seq in reserved or seq not in peer
        # §10.3.1: only tokens of IDs in use or reserved are recognised
        for seq in range(self.next_seq):
            expected = seq == active or seq in reserved
            assert cids.is_peer_stateless_reset(_token(seq)) == expected


PeerIds.TestCase.settings = settings(
    max_examples=examples(300),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPeerIds = PeerIds.TestCase
