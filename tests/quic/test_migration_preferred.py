"""The server's preferred address (RFC 9000 §9.6), both roles, in memory on the fake
clock. The server endpoint listens on two addresses: datagrams to the preferred one are
fed with ``local=1``, and each address sends what the connection routed to it
(:meth:`QuicEndpoint.routed_datagrams_to_send`), as the asyncio pump does with its two
sockets.

§9.6.2: "The server MUST send non-probing packets from its original address until it
receives a non-probing packet from the client at its preferred address and until the
server has validated the new path. The server MUST probe on the path toward the client
from its preferred address."
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from quic.conn_paths import PathManager
from quic.endpoint import QuicEndpoint
from tests.support.netsim import Addr
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

PREFERRED = ("127.0.0.1", 4434)


class TwoHomes:
    """One server endpoint behind two addresses (local 0 and 1)."""

    def __init__(self, endpoint: QuicEndpoint) -> None:
        self.endpoint = endpoint
        self.out: dict[int, list[tuple[bytes, Any]]] = {0: [], 1: []}

    def pull(self, now: float) -> None:
        endpoint = self.endpoint
        for conn in endpoint.connections:
            endpoint.wake(conn)
        for data, addr, _, local in endpoint.routed_datagrams_to_send(now):
            self.out[local].append((data, addr))


class Home:
    """The netsim endpoint at one of the server's addresses."""

    def __init__(self, homes: TwoHomes, local: int) -> None:
        self.homes = homes
        self.local = local

    def receive_datagram(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        self.homes.endpoint.receive_datagram(data, addr, now, ecn, self.local)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        self.homes.pull(now)
        out, self.homes.out[self.local] = self.homes.out[self.local], []
        return out

    def get_timer(self) -> float | None:
        return self.homes.endpoint.get_timer()

    def handle_timer(self, now: float) -> None:
        self.homes.endpoint.handle_timer(now)  # safe to call early (twice per step)


class Log:
    """Server datagrams by source address, with what the server's state was then."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.sent: list[tuple[Addr, Addr, int, bool]] = []  # src, dst, size, switched
        self.dcids: dict[Addr, set[bytes]] = {SERVER_ADDR: set(), PREFERRED: set()}
        self.client_dcids: dict[Addr, set[bytes]] = {SERVER_ADDR: set(), PREFERRED: set()}
        self.client_to_preferred_after_adoption = 0
        pair.net.tap = self

    def __call__(self, src: Addr, dst: Addr, data: bytes) -> list[tuple[Addr, Addr, bytes]]:
        conns = self.pair.server_endpoint.connections
        if src in (SERVER_ADDR, PREFERRED):
            switched = bool(conns) and conns[0].paths.current.local == 1
            self.sent.append((src, dst, len(data), switched))
            if data[0] & 0xC0 == 0x40:  # a short header: the client's 8-byte ID
                self.dcids[src].add(data[1:9])
        else:
            if data[0] & 0xC0 == 0x40 and dst in self.client_dcids:
                self.client_dcids[dst].add(data[1:9])  # the server's 8-byte ID
            if dst == PREFERRED and self.pair.client.paths.is_current(PREFERRED):
                self.client_to_preferred_after_adoption += 1  # non-probing packets, now
        return [(src, dst, data)]

    def from_preferred(self, switched: bool) -> int:
        return sum(1 for src, _, _, s in self.sent if src == PREFERRED and s == switched)

    def from_original(self, switched: bool) -> int:
        return sum(1 for src, _, _, s in self.sent if src == SERVER_ADDR and s == switched)


def _pair(**client_kwargs: Any) -> Pair:
    pair = make_pair(
        server_kwargs={"preferred_address": PREFERRED}, client_kwargs=client_kwargs or None
    )
    homes = TwoHomes(pair.server_endpoint)
    pair.net.add(SERVER_ADDR, Home(homes, 0))
    pair.net.add(PREFERRED, Home(homes, 1))
    return pair


def _echo(pair: Pair, payload: bytes, side_from: str = "client") -> None:
    conn = pair.client if side_from == "client" else pair.server
    sid = conn.create_stream()
    conn.send_stream_data(sid, payload, end_stream=True)
    other = "server" if side_from == "client" else "client"
    pair.run(lambda: pair.stream_done(sid, other), max_time=30)
    assert bytes(pair.data[other][sid]) == payload


def test_server_moves_to_its_preferred_address_after_validation_and_a_non_probing_packet() -> None:
    pair = _pair()
    log = Log(pair)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    client, server = pair.client, pair.server
    pair.run(lambda: server.paths.current.local == 1, max_time=3)
    # the client validated the preferred address and moved there (§9.6.1) ...
    assert client.peer_address == PREFERRED and client.cids.peer_active_sequence == 1
    # ... the server probed that path itself (§9.6.2 "MUST probe") and validated it
    assert server.paths.current.validated and server.paths.current.addr == CLIENT_ADDR
    assert log.client_to_preferred_after_adoption > 0  # the non-probing packet came first
    before = log.from_preferred(switched=False)
    assert 1 <= before <= 4  # only probes (PATH_RESPONSE, PATH_CHALLENGE) until then
    _echo(pair, b"up" * 20_000)
    _echo(pair, b"down" * 20_000, side_from="server")
    pair.net.settle(2)
    # §9.6.2: "exclusively from its preferred IP address" once switched
    assert log.from_original(switched=True) == 0
    assert log.from_preferred(switched=True) > 20
    assert server.cids.reserved_peer_cids == 0  # the original path's ID retired
    # §9.5: no connection ID of the client's was sent from both of our addresses
    assert log.dcids[PREFERRED] and log.dcids[SERVER_ADDR]
    assert log.dcids[PREFERRED].isdisjoint(log.dcids[SERVER_ADDR])
    # ... nor an ID of the server's sent by the client to both of its addresses
    assert log.client_dcids[PREFERRED] and log.client_dcids[SERVER_ADDR]
    assert log.client_dcids[PREFERRED].isdisjoint(log.client_dcids[SERVER_ADDR])
    assert server.state.value == "connected" and client.state.value == "connected"


def test_server_keeps_its_original_address_while_the_client_only_probes() -> None:
    """A client that validates the preferred address but stays on the original (only
    probing packets reach the preferred address): the server answers the probes from
    the preferred address and probes it too, but all its other packets — here a
    download — keep leaving the original address (§9.6.2)."""
    pair = _pair()
    pair.client.migration.adopt_preferred = lambda now: None  # type: ignore[method-assign]
    log = Log(pair)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    pair.net.settle(1)
    server = pair.server
    pref_path = server.paths.others.get((1, CLIENT_ADDR))
    assert pref_path is not None and pref_path.validated  # probed both ways
    _echo(pair, b"down" * 50_000, side_from="server")
    pair.net.settle(1)
    assert server.paths.current.local == 0  # never moved
    assert log.from_preferred(switched=True) == 0
    assert 1 <= log.from_preferred(switched=False) <= 4  # the probes only
    assert log.from_original(switched=False) > 100  # the download


def test_declined_preferred_address_is_never_probed() -> None:
    pair = _pair(use_preferred_address=False)
    log = Log(pair)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    _echo(pair, b"stay" * 1000)
    assert log.from_preferred(switched=False) == 0
    assert pair.server.paths.current.local == 0


def test_preferred_path_switch_needs_both_validation_and_a_non_probing_packet() -> None:
    """§9.6.2 at the path level: a non-probing packet alone does not move the server,
    nor does a validated path without one; both do."""
    for order in ("packet first", "validation first"):
        paths = PathManager(False, 1500, 8, token_bytes=lambda n: b"\x07" * n)
        paths.peer_address = CLIENT_ADDR
        paths.validate_address()
        paths.handshake_done()
        paths.on_authenticated_from(CLIENT_ADDR, 1200, False, 0.0, 0.1, local=1)
        path = paths.others[(1, CLIENT_ADDR)]
        paths.probe_local(path, order == "packet first", 0.0, 0.1)
        assert path.challenge_owed  # "The server MUST probe on the path"
        assert paths.local_switch_ready() is None
        path.challenges = deque([b"\x07" * 8], maxlen=4)  # as PathManager.write records it
        paths.on_path_response(b"\x07" * 8)
        assert path.validated
        if order == "validation first":
            assert paths.local_switch_ready() is None
            paths.probe_local(path, True, 0.1, 0.1)
        assert paths.local_switch_ready() is path
        change = paths.switch_local(path, 0.2, 0.1)
        assert paths.current is path and change.old_path.local == 0
        assert not change.old_path.validating  # the client did not move: no challenge


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_preferred_address_under_loss(seed: int) -> None:
    """10 % loss on every link, both server addresses: the client still validates and
    adopts the preferred address, the server still moves only once that path is
    validated, a download completes byte-exact, and no ID of the client's went out of
    both server addresses (§9.5)."""
    pair = _pair()
    pair.net.rng.seed(seed)
    for server_addr in (SERVER_ADDR, PREFERRED):
        for link in (
            pair.net.link(CLIENT_ADDR, server_addr),
            pair.net.link(server_addr, CLIENT_ADDR),
        ):
            link.loss = 0.1
    log = Log(pair)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=5)
    server = pair.server
    payload = bytes(range(256)) * 600
    _echo(pair, payload, side_from="server")
    pair.run(lambda: server.paths.current.local == 1, max_time=10)
    assert server.paths.current.validated
    assert log.from_original(switched=True) == 0
    _echo(pair, payload, side_from="server")
    assert log.dcids[PREFERRED].isdisjoint(log.dcids[SERVER_ADDR])
