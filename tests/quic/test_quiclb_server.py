"""A QUIC server configured with QUIC-LB (quic/quiclb.py ``QuicLbConfig``) issues only
CIDs that a QUIC-LB load balancer routes to it (draft-ietf-quic-load-balancers-21,
"Server Actions"), in memory on the fake clock.

Wired the way pywebtransport's ServerConfig wires it — ``token_bytes`` and
``connection_id_length`` of :class:`quic.endpoint.QuicEndpoint` — for the three
algorithms: the Source CID of the handshake (and of a Retry), every CID a
NEW_CONNECTION_ID frame carries, and so every Destination CID the clients put on the
wire after their first Initial flight, through migrations, decode to the configured
server ID. With N and 4N clients the CIDs issued grow linearly and every one is ours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from quic.connection import QuicConnection
from quic.endpoint import QuicEndpoint
from quic.quiclb import QuicLbConfig
from tests.support.netsim import Addr, Network
from tests.support.quicpair import SERVER_ADDR, WakingEndpoint, client_config, server_config

KEY = bytes.fromhex("8f95f09245765f80256934e50c66207f")
SERVER_ID = bytes.fromhex("ed793a")

# one configuration per algorithm (plaintext; single pass: 3 + 13 = 16 bytes; four pass
# with the server ID inside the left half, and longer than the nonce)
CONFIGS = {
    "plaintext": (1, SERVER_ID, 6, None),
    "single-pass": (2, SERVER_ID, 13, KEY),
    "four-pass": (3, SERVER_ID, 6, KEY),
    "four-pass-long-id": (4, bytes(range(1, 11)), 5, KEY),
}


def _dcid(datagram: bytes, cid_length: int) -> bytes:
    """The Destination CID of the first packet of a datagram (RFC 9000 §17.2, §17.3)."""
    if datagram[0] & 0x80:
        return datagram[6 : 6 + datagram[5]]
    return datagram[1 : 1 + cid_length]


class Clients:
    """``count`` clients of one QUIC-LB server endpoint on a simulated network; records
    what each client learns of the server's CIDs and every DCID it sends."""

    def __init__(self, lb: QuicLbConfig, count: int, retry: str = "never") -> None:
        self.lb = lb
        self.net = Network(seed=count)
        self.server = QuicEndpoint(
            server_config(connection_id_length=lb.cid_length, retry=retry),
            token_bytes=lb.token_bytes,
        )
        self.net.add(SERVER_ADDR, WakingEndpoint(self.server))
        self.learned: list[bytes] = []  # handshake SCIDs and NEW_CONNECTION_ID CIDs
        self.initial: list[bytes] = []  # of those, the long-header SCIDs (Retry, Initial)
        self.dcids: list[bytes] = []  # DCIDs of client datagrams, but the first Initials
        self.conns: list[QuicConnection] = []
        self.addrs: list[Addr] = []
        self._first_dcids: set[bytes] = set()
        self.net.tap = self._tap
        for i in range(count):
            addr = ("127.0.0.2", 40000 + i)
            endpoint = QuicEndpoint()
            self.net.add(addr, WakingEndpoint(endpoint))
            conn = endpoint.connect(SERVER_ADDR, client_config(), self.net.now)
            self._first_dcids.add(conn.cids.peer_cid)  # chosen by the client
            self._watch(conn)
            self.conns.append(conn)
            self.addrs.append(addr)

    def _watch(self, conn: QuicConnection) -> None:
        cids = conn.cids
        set_initial: Callable[..., None] = cids.set_initial_peer_cid
        on_new: Callable[..., None] = cids.on_new_connection_id

        def initial(cid: bytes, reset_token: bytes | None = None) -> None:
            if cid not in self._first_dcids:
                self.learned.append(cid)
                self.initial.append(cid)
            set_initial(cid, reset_token)

        def new(sequence: int, retire_prior_to: int, cid: bytes, reset_token: bytes) -> None:
            self.learned.append(cid)
            on_new(sequence, retire_prior_to, cid, reset_token)

        cids.set_initial_peer_cid = initial  # type: ignore[method-assign]
        cids.on_new_connection_id = new  # type: ignore[method-assign]

    def _tap(self, src: Addr, dst: Addr, data: bytes) -> list[tuple[Addr, Addr, bytes]]:
        if dst == SERVER_ADDR:
            dcid = _dcid(data, self.lb.cid_length)
            if dcid not in self._first_dcids:
                self.dcids.append(dcid)
        return [(src, dst, data)]

    def connect(self) -> None:
        self.net.run(lambda: all(c.handshake_confirmed for c in self.conns), max_time=20)
        self.net.settle(0.5)  # NEW_CONNECTION_ID frames sent and acknowledged

    def exchange(self, payload: bytes) -> None:
        for conn in self.conns:
            conn.send_stream_data(conn.get_next_available_stream_id(), payload, end_stream=True)
        self.net.settle(2.0)

    def migrate_all(self, round_number: int) -> None:
        """Every client moves to a new local port (RFC 9000 §9.2) with a new CID."""
        for i, conn in enumerate(self.conns):
            conn.migrate(self.net.now)
            self.net.rebind(self.addrs[i], ("127.0.0.3", 41000 + 100 * round_number + i))
        self.exchange(b"after the move" * 200)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_cid_the_server_issues_routes_to_it_through_migrations(name: str) -> None:
    lb = QuicLbConfig(*CONFIGS[name])
    clients = Clients(lb, count=2)
    clients.connect()
    clients.exchange(b"x" * 4000)
    for round_number in range(3):
        clients.migrate_all(round_number)
    (server_conn, *_) = clients.server.connections
    assert server_conn.paths.migrations >= 3
    assert all(c.peer_address[0] == "127.0.0.3" for c in clients.server.connections)
    # handshake SCIDs (2) and the NEW_CONNECTION_ID frames that replaced the ones used
    assert len(clients.initial) == 2
    assert len(clients.learned) >= 2 + 2 * 3
    assert all(lb.server_id_of(cid) == lb.server_id for cid in clients.learned)
    assert len(set(clients.learned)) == len(clients.learned)
    # what the clients sent: every DCID after their first Initials is ours
    assert len(set(clients.dcids)) >= 2 * 4  # one per path at least
    assert all(lb.is_ours(dcid) for dcid in clients.dcids)
    # and so is every CID the server routes by
    for conn in clients.server.connections:
        assert all(lb.is_ours(entry.cid) for entry in conn.cids.local.values())


@pytest.mark.parametrize("name", ["plaintext", "four-pass"])
def test_retry_source_cid_routes_to_the_server(name: str) -> None:
    """A Retry's Source CID becomes the client's Destination CID (RFC 9000 §17.2.5): it
    is made by the same ``token_bytes``, so it is routable too."""
    lb = QuicLbConfig(*CONFIGS[name])
    clients = Clients(lb, count=1, retry="always")
    clients.connect()
    clients.exchange(b"y" * 2000)
    assert clients.server.connections[0].handshake_complete
    assert clients.conns[0].handshake.retry_scid == clients.initial[0]  # a Retry came
    retry_scid, initial_scid = clients.initial  # the Retry's SCID, then the Initial's
    assert retry_scid != initial_scid
    assert lb.is_ours(retry_scid) and lb.is_ours(initial_scid)
    assert retry_scid in clients.dcids  # the client's second Initial went to it
    assert all(lb.is_ours(cid) for cid in clients.learned + clients.dcids)


def _issued(lb: QuicLbConfig, count: int) -> tuple[int, int, int]:
    """(CIDs the clients learned, distinct DCIDs sent, foreign ones) for ``count``
    clients that each connect and migrate once."""
    clients = Clients(lb, count=count)
    clients.connect()
    clients.migrate_all(0)
    foreign = sum(not lb.is_ours(c) for c in clients.learned + clients.dcids)
    return len(clients.learned), len(set(clients.dcids)), foreign


@pytest.mark.parametrize("name", ["plaintext", "four-pass"])
def test_cids_grow_linearly_with_clients_and_all_are_ours_n_vs_4n(name: str) -> None:
    lb = QuicLbConfig(*CONFIGS[name])
    n = 3
    learned_n, sent_n, foreign_n = _issued(lb, n)
    learned_4n, sent_4n, foreign_4n = _issued(lb, 4 * n)
    assert foreign_n == foreign_4n == 0
    assert learned_n >= 2 * n and sent_n >= 2 * n
    assert 3 <= learned_4n / learned_n <= 5  # linear: the same CIDs per connection
    assert 3 <= sent_4n / sent_n <= 5


def test_without_quic_lb_random_cids_are_not_ours() -> None:
    """The control: a server with random CIDs issues CIDs that do not decode to the
    server ID (so the checks above can fail)."""
    lb = QuicLbConfig(*CONFIGS["four-pass"])
    net = Network(seed=9)
    server = QuicEndpoint(server_config(connection_id_length=lb.cid_length))
    net.add(SERVER_ADDR, WakingEndpoint(server))
    client = QuicEndpoint()
    net.add(("127.0.0.2", 40000), WakingEndpoint(client))
    conn = client.connect(SERVER_ADDR, client_config(), net.now)
    net.run(lambda: conn.handshake_confirmed, max_time=10)
    net.settle(0.5)
    cids: list[Any] = [p.cid for p in conn.cids.peer.values()]
    assert len(cids) >= 2
    assert sum(lb.is_ours(cid) for cid in cids) == 0
