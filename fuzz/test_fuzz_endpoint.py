"""A hostile network around a server endpoint, with a real client in it (issue 8).

A :class:`RuleBasedStateMachine` interleaves garbage datagrams, spoofed Initials (that
authenticate and never continue, complete ClientHellos among them, and ones that fail
authentication), Version Negotiation packets, short headers for unknown connection IDs,
tiny Initials for existing connections, replays of the real client's datagrams from
other addresses, the real client's own traffic and jumps of the fake clock.

Invariants: nothing raises; the connection table, the half-open count, the per-address
counts, the routes and the timer heap stay within the limits; every accepted
connection is removed exactly once. At the end the real client's connection completes
(or, if it gave up while the server refused new connections, a new one completes at
once).

Default: a modest number of examples. Deep run by hand::

    FUZZ_PROFILE=deep python3 -m pytest -p no:cacheprovider -p no:timeout fuzz/test_fuzz_endpoint.py
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fuzz.profiles import examples
from quic.endpoint import ConnectionAccepted, ConnectionRemoved, QuicEndpoint
from quic.frames import PingFrame
from quic.packet import encode_short_header, encode_version_negotiation
from tests.support.netsim import Network
from tests.support.quicpair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    WakingEndpoint,
    client_config,
    server_config,
)
from tests.support.spoof import decryptable_initial, sealed_initial, undecryptable_initial

_EXAMPLES = examples(25)  # FUZZ_PROFILE=deep: >= 100,000 (fuzz/profiles.py)

MAX_CONNECTIONS = 12
MAX_HALF_OPEN = 6
PER_ADDRESS = 3
DEADLINE = 2.0
CID_LIMIT = 8  # active_connection_id_limit: CIDs a connection issues, at most

addresses = st.sampled_from(
    [("203.0.113.1", 1000), ("203.0.113.1", 1001), ("203.0.113.2", 1000)]
    + [(f"198.51.100.{i}", 443) for i in range(1, 9)]
)


class HostileNetwork(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = QuicEndpoint(
            server_config(
                max_half_open_connections=MAX_HALF_OPEN,
                max_connections_per_address=PER_ADDRESS,
                handshake_timeout=DEADLINE,
            ),
            max_connections=MAX_CONNECTIONS,
        )
        self.net = Network(seed=0, start=0.0)
        self.net.add(SERVER_ADDR, WakingEndpoint(self.server))
        self.client_endpoint = QuicEndpoint()
        self.net.add(CLIENT_ADDR, WakingEndpoint(self.client_endpoint))
        self.captured: list[bytes] = []
        link = self.net.link(CLIENT_ADDR, SERVER_ADDR)
        schedule = link.schedule

        def capture(data: bytes, now: float, rng: random.Random) -> Any:
            if len(self.captured) < 64:
                self.captured.append(data)
            return schedule(data, now, rng)

        link.schedule = capture  # type: ignore[method-assign]
        self.client = self.client_endpoint.connect(SERVER_ADDR, client_config(), self.net.now)
        self.live: set[Any] = set()

    def _feed(self, data: bytes, addr: Any) -> None:
        self.server.receive_datagram(data, addr, self.net.now)

    # -- hostile inputs ---------------------------------------------------------------------

    @rule(data=st.binary(max_size=1400), addr=addresses)
    def garbage(self, data: bytes, addr: Any) -> None:
        self._feed(data, addr)

    @rule(seed=st.integers(0, 2**32), complete=st.booleans(), addr=addresses)
    def spoofed_initial(self, seed: int, complete: bool, addr: Any) -> None:
        self._feed(decryptable_initial(random.Random(seed), complete), addr)

    @rule(seed=st.integers(0, 2**32), addr=addresses)
    def undecryptable(self, seed: int, addr: Any) -> None:
        self._feed(undecryptable_initial(random.Random(seed)), addr)

    @rule(
        versions=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4),
        cid=st.binary(min_size=0, max_size=20),
        addr=addresses,
    )
    def version_negotiation(self, versions: list[int], cid: bytes, addr: Any) -> None:
        self._feed(encode_version_negotiation(cid, self.client.host_cid, versions), addr)

    @rule(cid=st.binary(min_size=8, max_size=8), body=st.binary(max_size=200), addr=addresses)
    def short_header_for_nobody(self, cid: bytes, body: bytes, addr: Any) -> None:
        self._feed(encode_short_header(cid, 1, 0, 0) + body, addr)

    @rule(index=st.integers(0, 20), pad=st.booleans(), addr=addresses)
    def initial_for_an_existing_connection(self, index: int, pad: bool, addr: Any) -> None:
        connections = self.server.connections
        if not connections:
            return
        conn = connections[index % len(connections)]
        frames = PingFrame().encode()
        self._feed(
            sealed_initial(frames, conn.original_dcid, b"\x07" * 8, conn.version, 50, pad), addr
        )

    @rule(index=st.integers(0, 63), addr=addresses)
    def replay(self, index: int, addr: Any) -> None:
        if self.captured:
            self._feed(self.captured[index % len(self.captured)], addr)

    # -- time and the real client -----------------------------------------------------------

    @rule(dt=st.floats(0.0, 0.3))
    def real_traffic(self, dt: float) -> None:
        self.net.settle(dt)

    @rule(dt=st.floats(0.3, 5.0))
    def time_jump(self, dt: float) -> None:
        self.net.settle(dt)

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def tables_are_bounded(self) -> None:
        server = self.server
        while (item := server.next_event()) is not None:
            conn, event = item
            if isinstance(event, ConnectionAccepted):
                assert conn not in self.live
                self.live.add(conn)
            elif isinstance(event, ConnectionRemoved):
                self.live.remove(conn)
        connections = server.connections
        assert set(connections) == self.live
        assert len(connections) <= MAX_CONNECTIONS
        assert server.half_open_connections <= MAX_HALF_OPEN
        assert max(server._admission.per_address.values(), default=0) <= PER_ADDRESS
        assert server.route_count <= len(connections) * (2 + CID_LIMIT)
        assert len(server._deadlines) <= 64 + 4 * len(connections)
        assert len(server._pending) <= len(connections)
        for conn in connections:
            assert conn.last_internal_error is None, repr(conn.last_internal_error)

    def teardown(self) -> None:
        client = self.client
        try:
            self.net.run(lambda: client.handshake_complete or client.is_closed, max_time=60)
        finally:
            self.tables_are_bounded()
        if not client.handshake_complete:
            # it gave up while the server refused new connections (limits reached): the
            # spoofs have expired since, so a new client gets in at once
            assert self.server.refused > 0
            client = self.client_endpoint.connect(SERVER_ADDR, client_config(), self.net.now)
            start = self.net.now
            self.net.run(lambda: client.handshake_complete, max_time=5)
            assert self.net.now - start < 0.5
        assert client.handshake_complete


HostileNetwork.TestCase.settings = settings(
    max_examples=_EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestHostileNetwork = HostileNetwork.TestCase
