"""Paths and migration as Hypothesis state machines (RFC 9000 §8.2, §9).

* :class:`PathTable` drives a :class:`~quic.conn_paths.PathManager` directly with any
  interleaving of datagrams from a pool of addresses (migrating or not), challenges,
  responses (matching or not), timers and our own migrations: the tables stay within
  their limits, the current path always exists, the fallback is a validated path, no
  budget is negative and no datagram built for a path exceeds its budget.
* :class:`MovingPeer` drives an established in-memory pair (``tests/support``) whose
  client is rebound by its NAT, migrates actively, or has its packets copied by an
  attacker from another address, while both sides send stream data: no exception, no
  internal error, every queue within its limit, no peer connection ID held by two paths
  (RFC 9000 §9.5), and once the network is left alone the data of every stream arrives.

Deep profile by hand: ``FUZZ_PROFILE=deep python3 -m pytest -p no:timeout
fuzz/test_fuzz_paths.py``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fuzz.profiles import examples
from quic.conn_migrate import MigrationRefused
from quic.conn_paths import PathManager, path_key
from quic.connection import ConnectionState
from quic.packet import PacketType
from quic.packet_builder import PacketAssembler
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, make_pair

ADDRESSES = [("192.0.2.1", 1000 + i) for i in range(3)]
ADDRESSES += [("198.51.100.7", 4000 + i) for i in range(3)]
MAX_PATHS = 3
MAX_RESPONSES = 4


class PathTable(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.counter = 0
        self.paths = PathManager(
            False, 1500, MAX_RESPONSES, max_paths=MAX_PATHS, token_bytes=self._token
        )
        self.paths.peer_address = ADDRESSES[0]
        self.paths.validate_address()
        self.paths.handshake_done()
        self.now = 0.0
        self.sent_challenges: list[bytes] = []

    def _token(self, n: int) -> bytes:
        self.counter += 1
        return self.counter.to_bytes(n, "big")

    @rule(
        index=st.integers(0, len(ADDRESSES) - 1), size=st.integers(20, 1500), migrate=st.booleans()
    )
    def datagram(self, index: int, size: int, migrate: bool) -> None:
        addr = ADDRESSES[index]
        if self.paths.is_current(addr):
            self.paths.on_datagram_received(size)
        else:
            self.paths.on_authenticated_from(addr, size, migrate, self.now, 0.1)

    @rule(index=st.integers(0, len(ADDRESSES) - 1), value=st.binary(min_size=8, max_size=8))
    def challenge(self, index: int, value: bytes) -> None:
        self.paths.receiving = ADDRESSES[index]
        self.paths.on_path_challenge(value)

    @rule(pick=st.integers(0, 50), forged=st.booleans())
    def response(self, pick: int, forged: bool) -> None:
        if forged or not self.sent_challenges:
            self.paths.on_path_response(b"\xff" * 8)
        else:
            self.paths.on_path_response(self.sent_challenges[pick % len(self.sent_challenges)])

    @rule(dt=st.floats(0.0, 5.0))
    def timer(self, dt: float) -> None:
        self.now += dt
        self.paths.handle_timer(self.now)

    @rule()
    def our_migration(self) -> None:
        self.paths.restart_current(self.now, 0.1)

    @rule()
    def send(self) -> None:
        paths = self.paths
        for path in [paths.current, *paths.off_path_pending()]:
            budget = paths.path_budget(path)
            if budget < 64:
                continue
            asm = PacketAssembler(1500)
            asm.begin_datagram(budget)
            if not asm.begin_packet(*_packet_args()):
                continue
            before = len(path.challenges or ())
            paths.write(asm, path)
            if len(path.challenges or ()) > before or (path.challenges and before == 4):
                self.sent_challenges.append(path.challenges[-1])
            asm.end_packet()
            size = asm.end_datagram(pad_initial=False)
            assert size <= budget
            if path is paths.current:
                paths.on_datagram_sent(size)
            else:
                paths.on_path_datagram_sent(path, size)

    @invariant()
    def bounded(self) -> None:
        paths = self.paths
        assert paths.current is not None
        assert len(paths.others) <= MAX_PATHS
        assert paths.pending_responses <= MAX_RESPONSES
        assert all(len(p.challenges or ()) <= 4 for p in (paths.current, *paths.others.values()))
        assert paths.send_budget() >= 0
        assert paths.fallback is None or paths.fallback.validated
        assert path_key(paths.current.addr) not in paths.others
        timer = paths.get_timer()
        assert timer is None or timer >= 0


class _NullProtector:
    """Stands for packet protection: the sizes are what matters here."""

    key_phase = 0

    def encrypt_packet(self, header: bytes, payload: bytes, pn: int) -> bytes:
        return header + payload + bytes(16)

    def encrypt_short(
        self,
        dcid: bytes,
        pn_length: int,
        truncated_pn: int,
        key_phase: int,
        payload: bytes,
        pn: int,
    ) -> bytes:
        header = bytes((0x40 | (pn_length - 1),)) + dcid + truncated_pn.to_bytes(pn_length)
        return self.encrypt_packet(header, payload, pn)


def _packet_args() -> tuple[Any, ...]:
    return (PacketType.ONE_RTT, 1, b"\x01" * 8, b"", _NullProtector(), 2, 0, None)


PathTable.TestCase.settings = settings(
    max_examples=examples(200),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPathTable = PathTable.TestCase


NAT_POOL = [("127.0.0.2", 50001), ("127.0.0.2", 50002), ("127.0.0.5", 40000)]
ATTACKER = ("203.0.113.9", 9999)


class MovingPeer(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair = make_pair()
        self.pair.handshake()
        self.pair.run(lambda: self.pair.client.handshake_confirmed, max_time=2)
        self.pair.net.settle(0.3)
        self.streams: dict[int, bytes] = {}
        self.spoof_next = False
        self.pair.net.tap = self._tap

    def _tap(self, src: Any, dst: Any, data: bytes) -> list[tuple[Any, Any, bytes]]:
        if self.spoof_next and dst == SERVER_ADDR and not data[0] & 0x80:
            self.spoof_next = False
            return [(ATTACKER, dst, data), (src, dst, data)]
        return [(src, dst, data)]

    @rule(index=st.integers(0, len(NAT_POOL) - 1))
    def rebind(self, index: int) -> None:
        self.pair.net.rebind(CLIENT_ADDR, NAT_POOL[index])

    @rule()
    def migrate(self) -> None:
        try:
            self.pair.client.migrate(self.pair.net.now)
        except MigrationRefused:
            return

    @rule()
    def spoof(self) -> None:
        self.spoof_next = True

    @rule(size=st.integers(1, 30_000))
    def send(self, size: int) -> None:
        client = self.pair.client
        if client.state is not ConnectionState.CONNECTED:
            return
        sid = client.create_stream()
        payload = bytes([sid % 251]) * size
        client.send_stream_data(sid, payload, end_stream=True)
        self.streams[sid] = payload

    @rule(dt=st.floats(0.0, 0.5))
    def run(self, dt: float) -> None:
        self.pair.net.settle(dt)
        self.pair.pump()

    @invariant()
    def healthy(self) -> None:
        for conn in (self.pair.client, *self.pair.server_endpoint.connections):
            assert conn.last_internal_error is None
            sizes = conn.queue_sizes()
            assert sizes["paths"] <= conn.configuration.max_known_paths
            assert sizes["path_responses"] <= conn.configuration.max_pending_path_responses
            # RFC 9000 §9.5: each path other than the current one has its own peer ID
            held = [p.cid_seq for p in conn.paths.others.values() if p.cid_seq is not None]
            assert len(held) == len(set(held))
            assert conn.cids.peer_active_sequence not in held
            assert conn.cids.reserved_peer_cids <= len(held)

    def teardown(self) -> None:
        pair = self.pair
        pair.net.tap = None
        pending = dict(self.streams)
        pair.run(lambda: all(pair.stream_done(sid) for sid in pending), max_time=60)
        for sid, payload in pending.items():
            assert bytes(pair.data["server"][sid]) == payload
        assert pair.client.state is ConnectionState.CONNECTED


MovingPeer.TestCase.settings = settings(
    max_examples=examples(8),
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMovingPeer = MovingPeer.TestCase
