"""Workers on one port, in memory: the routing decision (a table), the forwarding
codec, every connection ID a worker's endpoint hands out names that worker (Initial,
Retry, NEW_CONNECTION_ID, preferred address, after migration and retirement), a
migrated client is forwarded to its owner, and a flood of unknown-CID datagrams keeps
counters only (N vs 4N)."""

from __future__ import annotations

import itertools
import random
import tracemalloc
from typing import Any

import pytest

from quic.endpoint import QuicEndpoint
from quic.events import ConnectionIdIssued
from quic.quiclb import WorkerCids
from quic.workers import (
    DROP,
    LOCAL,
    WorkerRouting,
    decode_forwarded,
    encode_forwarded,
    route_datagram,
)
from tests.support.netsim import Network
from tests.support.quicpair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    Pair,
    WakingEndpoint,
    client_config,
    server_config,
)

Addr = tuple[str, int]
NEW_PORT = ("127.0.0.2", 50001)
NEW_HOST = ("127.0.0.9", 40000)


def _seeded(seed: int) -> Any:
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


def scheme(worker: int, workers: int = 2, seed: int = 1) -> WorkerCids:
    return WorkerCids(workers, worker, random_bytes=_seeded(seed + worker))


def short(dcid: bytes, payload: int = 30) -> bytes:
    return bytes([0x40]) + dcid + b"\x00" * payload


def long_header(dcid: bytes, kind: int = 0, scid: bytes = b"\x11" * 8) -> bytes:
    """A long header (v1; kind 0 Initial, 2 Handshake) with the given DCID, padded."""
    first = 0xC0 | (kind << 4)
    head = bytes([first]) + (1).to_bytes(4, "big") + bytes([len(dcid)]) + dcid
    return head + bytes([len(scid)]) + scid + b"\x00" * 40


W0 = scheme(0)
W1 = scheme(1)
MINE = W0.new_cid()
THEIRS = W1.new_cid()
ODD_INDEX = WorkerCids(8, 5).new_cid()  # worker byte 5: not an index of a 2-worker group
INITIAL = long_header(b"\x42" * 8)
UNROUTABLE = bytes([0xE8]) + b"\x01" * 8  # config rotation 0b111 (load-balancers draft)

TABLE: list[tuple[str, bytes, dict[str, Any], int]] = [
    ("short, this worker's CID", short(MINE), {}, LOCAL),
    ("short, the other worker's CID", short(THEIRS), {}, 1),
    ("short, other worker, came forwarded: no loops", short(THEIRS), {"forwarded": True}, DROP),
    ("short, unroutable CID: stateless reset here", short(UNROUTABLE), {}, LOCAL),
    ("short, worker byte beyond the group", short(ODD_INDEX), {}, LOCAL),
    ("short, too short for a DCID", bytes([0x40]) + MINE[:4], {}, DROP),
    ("short while draining: not a new connection", short(UNROUTABLE), {"successor": 1}, LOCAL),
    ("empty datagram", b"", {}, DROP),
    ("Initial, client-chosen DCID", long_header(b"\x42" * 8), {}, LOCAL),
    ("Initial while draining: to the successor", long_header(b"\x42" * 8), {"successor": 1}, 1),
    ("Initial while draining, came forwarded", INITIAL, {"successor": 1, "forwarded": True}, LOCAL),
    ("Initial while draining, successor is itself", INITIAL, {"successor": 0}, LOCAL),
    ("Initial while draining, answering our Retry", long_header(MINE), {"successor": 1}, LOCAL),
    ("Handshake for the other worker's CID", long_header(THEIRS, kind=2), {}, 1),
    ("Handshake for this worker's CID (connection gone)", long_header(MINE, kind=2), {}, LOCAL),
    ("long header truncated", long_header(b"\x42" * 8)[:9], {}, DROP),
]  # fmt: skip


@pytest.mark.parametrize(("what", "data", "kwargs", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_route_table(what: str, data: bytes, kwargs: dict[str, Any], expected: int) -> None:
    assert route_datagram(data, W0, **kwargs) == expected


@pytest.mark.parametrize(
    "addr",
    [("127.0.0.1", 4433), ("10.1.2.3", 0), ("::1", 65535, 0, 0), ("fe80::1", 9, 7, 3)],
)
def test_forwarding_preserves_addresses(addr: Any) -> None:
    data = short(THEIRS)
    frame = encode_forwarded(data, addr, ecn=2, local=1)
    decoded = decode_forwarded(frame)
    assert decoded is not None
    got, peer, ecn, local = decoded
    assert (got, ecn, local) == (data, 2, 1)
    assert tuple(peer) == (addr if len(addr) == 4 else addr[:2])


def test_forwarding_codec_rejects_garbage() -> None:
    assert decode_forwarded(b"") is None
    assert decode_forwarded(b"\x02\x04\x00\x00\x00\x01" + b"\x7f\x00\x00\x01") is None  # version
    assert decode_forwarded(b"\x01\x05\x00\x00\x00\x01" + b"\x7f\x00\x00\x01") is None  # family
    assert decode_forwarded(b"\x01\x04\x00\x00\x00\x01\x7f") is None  # short address
    with pytest.raises(ValueError):
        encode_forwarded(b"x", ("not-an-ip", 1))


# -- every CID the server hands out names its worker ------------------------------------


class WireLog:
    """Every connection ID the server puts on the wire in a long header (Initial,
    Handshake and Retry SCIDs) and every DCID the client sends once it has heard the
    server (short headers and later long headers)."""

    def __init__(self, cid_length: int) -> None:
        self.server_scids: set[bytes] = set()
        self.client_dcids: set[bytes] = set()
        self.first_dcids: set[bytes] = set()
        self.retry_scids: set[bytes] = set()
        self._cid_length = cid_length

    def __call__(self, src: Addr, dst: Addr, data: bytes) -> list[tuple[Addr, Addr, bytes]]:
        if data and data[0] & 0x80:
            dcid = data[6 : 6 + data[5]]
            at = 6 + data[5]
            scid = data[at + 1 : at + 1 + data[at]]
            if src == SERVER_ADDR:
                self.server_scids.add(scid)
                if data[0] & 0x30 == 0x30:  # v1 Retry (RFC 9000 §17.2.5)
                    self.retry_scids.add(scid)
            elif not self.server_scids:
                self.first_dcids.add(dcid)  # the client's own random first DCID (§7.2)
            else:
                self.client_dcids.add(dcid)
        elif data and dst == SERVER_ADDR:
            self.client_dcids.add(data[1 : 1 + self._cid_length])
        return [(src, dst, data)]


def worker_pair(cids: WorkerCids, **server_kwargs: Any) -> tuple[Pair, WireLog]:
    net = Network(seed=3)
    config = server_config(connection_id_length=cids.cid_length, **server_kwargs)
    server = QuicEndpoint(config, token_bytes=cids.token_bytes)
    client = QuicEndpoint()
    net.add(SERVER_ADDR, WakingEndpoint(server))
    net.add(CLIENT_ADDR, WakingEndpoint(client))
    log = WireLog(cids.cid_length)
    net.tap = log
    conn = client.connect(SERVER_ADDR, client_config(), net.now)
    pair = Pair(net, client, server, conn)
    net.after_flush = pair._react
    return pair, log


def _echo(pair: Pair, payload: bytes) -> None:
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, payload, end_stream=True)
    pair.run(lambda: pair.stream_done(sid, "server"), max_time=30)
    assert bytes(pair.data["server"][sid]) == payload


@pytest.mark.parametrize(
    "server_kwargs",
    [{}, {"retry": "always"}, {"preferred_address": ("127.0.0.1", 4434)}],
    ids=["plain", "retry", "preferred-address"],
)
def test_every_server_cid_names_its_worker(server_kwargs: dict[str, Any]) -> None:
    cids = WorkerCids(4, 2)
    pair, log = worker_pair(cids, **server_kwargs)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    pair.net.settle(0.5)
    _echo(pair, b"before" * 500)
    for target in (NEW_PORT, NEW_HOST):  # migrate twice: old IDs retired, new ones issued
        pair.client.migrate(pair.net.now)
        pair.net.rebind(CLIENT_ADDR, target)
        _echo(pair, b"after the move" * 800)
        pair.net.settle(1.0)
        pair.pump()
    server = pair.server
    issued = {e.connection_id for e in pair.events_of(ConnectionIdIssued)}
    handed_out = issued | {server.host_cid} | log.server_scids | log.client_dcids
    handed_out |= {c.cid for c in pair.client.cids.peer.values()}
    assert len(issued) >= 4  # NEW_CONNECTION_ID after the retirements too
    assert server.paths.migrations >= 2
    assert {cids.worker_of(cid) for cid in handed_out} == {2}, handed_out
    if "retry" in server_kwargs:
        assert log.retry_scids  # the Retry's SCID is one of ours, too
        assert {cids.worker_of(cid) for cid in log.retry_scids} == {2}
    for first in log.first_dcids:  # the client chose it: no worker's
        assert first not in handed_out


# -- a migrated client reaches its owner through the other worker ----------------------


class Workers:
    """Two worker endpoints behind one address; the "kernel" hashes the 4-tuple (here:
    the client's port) to pick one; forwarded datagrams are handed over at each send."""

    def __init__(self, endpoints: list[QuicEndpoint], schemes: list[WorkerCids]) -> None:
        self.endpoints = endpoints
        for endpoint, cids in zip(endpoints, schemes, strict=True):
            endpoint.worker_routing = WorkerRouting(cids)
        self.delivered = [0, 0]

    def pick(self, addr: Any) -> int:
        return int(addr[1]) % len(self.endpoints)

    def receive_datagram(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        index = self.pick(addr)
        self.delivered[index] += 1
        self.endpoints[index].receive_datagram(data, addr, now, ecn)

    def _hand_over(self, now: float) -> None:
        for endpoint in self.endpoints:
            routing = endpoint.worker_routing
            assert routing is not None
            for target, frame in routing.take():
                decoded = decode_forwarded(frame)
                assert decoded is not None
                data, addr, ecn, local = decoded
                self.endpoints[target].receive_forwarded(data, addr, now, ecn, local)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        self._hand_over(now)
        out: list[tuple[bytes, Any]] = []
        for endpoint in self.endpoints:
            for conn in endpoint.connections:
                endpoint.wake(conn)
            out.extend(endpoint.datagrams_to_send(now))
        return out

    def get_timer(self) -> float | None:
        timers = [t for e in self.endpoints if (t := e.get_timer()) is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for endpoint in self.endpoints:
            endpoint.handle_timer(now)


def test_migrated_client_is_forwarded_to_its_owner() -> None:
    schemes = [scheme(0), scheme(1)]
    endpoints = [
        QuicEndpoint(
            server_config(connection_id_length=s.cid_length, stateless_reset_key=b"k" * 32),
            token_bytes=s.token_bytes,
        )
        for s in schemes
    ]
    group = Workers(endpoints, schemes)
    net = Network(seed=5)
    net.add(SERVER_ADDR, group)
    client = QuicEndpoint()
    net.add(CLIENT_ADDR, WakingEndpoint(client))
    conn = client.connect(SERVER_ADDR, client_config(), net.now)
    pair = Pair(net, client, endpoints[0], conn)
    net.after_flush = pair._react
    pair.run(lambda: conn.handshake_confirmed, max_time=5)
    owner = group.pick(CLIENT_ADDR)  # 50000 % 2: worker 0 took the Initial
    assert [len(e.connections) for e in endpoints] == [1 - owner, owner]
    assert schemes[owner].worker_of(conn.cids.peer_cid) == owner
    pair.net.settle(0.5)
    _echo(pair, b"before" * 100)
    conn.migrate(net.now)
    net.rebind(CLIENT_ADDR, NEW_PORT)  # port 50001: the hash picks the other worker
    _echo(pair, b"after the move" * 400)
    other = endpoints[1 - owner].worker_routing
    assert other is not None and other.forwarded > 0
    server = endpoints[owner].connections[0]
    assert server.peer_address == NEW_PORT  # the owner sees the client's real address
    assert endpoints[1 - owner].connections == []  # nothing kept by the forwarder
    assert endpoints[1 - owner].resets_sent == 0


# -- bounds: forwarding keeps no state ------------------------------------------------


def _flood(count: int) -> tuple[int, int, int]:
    """Feed ``count`` short-header datagrams for unknown CIDs of worker 1 to worker 0,
    taking the forwards every 64 (a transmit); returns (bytes retained, routes,
    most pending)."""
    cids = scheme(0)
    endpoint = QuicEndpoint(
        server_config(connection_id_length=cids.cid_length), token_bytes=cids.token_bytes
    )
    routing = WorkerRouting(scheme(0), max_pending=64)
    endpoint.worker_routing = routing
    other = scheme(1, seed=99)
    datagrams = [short(other.new_cid(), 60) for _ in range(count)]
    most = 0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, data in zip(itertools.count(), datagrams, strict=False):
            endpoint.receive_datagram(data, ("127.0.0.3", 1000 + i % 50_000), 1000.0)
            most = max(most, routing.pending)
            if i % 64 == 63:
                routing.take()
        routing.take()
        endpoint.datagrams_to_send(1000.0)
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert routing.forwarded == count
    assert endpoint.resets_sent == 0  # another worker's: never answered here
    return retained, endpoint.route_count, most


def test_forwarding_flood_keeps_counters_only() -> None:
    n = 2_000
    small, routes_small, most_small = _flood(n)
    large, routes_large, most_large = _flood(4 * n)
    assert routes_small == routes_large == 0
    assert most_small == most_large == 64  # never more than a transmit's worth
    assert large < 64 * 1024 and small < 64 * 1024  # no per-datagram state
    assert large <= 2 * max(small, 4096)


def test_forwarding_queue_is_bounded_between_transmits() -> None:
    routing = WorkerRouting(scheme(0), max_pending=8)
    for _ in range(100):
        routing.divert(short(THEIRS), ("127.0.0.1", 5))
    assert routing.pending == 8
    assert routing.forwarded == 8 and routing.overflow == 92
    assert len(routing.take()) == 8 and routing.pending == 0


def test_worker_scheme_carries_quic_lb_settings_and_refuses_8_byte_cids() -> None:
    from quic.aio.workers import worker_scheme

    key = bytes(range(16))
    scheme = worker_scheme(4, 3, b"\x0a\x01", config_rotation=2, nonce_length=9, key=key)
    assert not scheme.steerable and scheme.cid_length == 1 + 3 + 9
    assert scheme.worker_of(scheme.new_cid()) == 3
    assert worker_scheme(4, 3, b"\x0a\x01", nonce_length=9).steerable
    with pytest.raises(ValueError, match="PATH_CHALLENGE"):
        worker_scheme(2, 0, b"", nonce_length=6)  # 1 + 1 + 6 = 8 bytes
    with pytest.raises(ValueError):
        worker_scheme(2, 0, b"\x01", config_rotation=7)  # 0b111: unroutable
