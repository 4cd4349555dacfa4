"""Endpoint admission limits and cost at scale (issue 8, finding 2), in memory.

Spoofed Initials — valid-looking 1200-byte ones that do not authenticate, and ones that
do and never continue (:mod:`tests.support.spoof`) — from random source addresses, on a
fake clock. Work is measured by counting calls into connections, never by timing.

These servers never send Retry (``retry="never"``): they test what the admission limits
and eviction do on their own; Retry under a flood is tested in ``test_retry_flood.py``.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from quic.connection import QuicConnection
from quic.endpoint import ConnectionAccepted, ConnectionRemoved, QuicEndpoint
from quic.events import ConnectionTerminated
from tests.support.netsim import Network
from tests.support.quicpair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    WakingEndpoint,
    client_config,
    make_pair,
    server_config,
)
from tests.support.spoof import (
    client_initial_frames,
    decryptable_initial,
    random_address,
    sealed_initial,
    undecryptable_initial,
)

_COUNTED = (
    "receive_datagram",
    "routed_datagrams_to_send",  # what the endpoint calls (datagrams_to_send wraps it)
    "get_timer",
    "handle_timer",
    "next_event",
)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts every call of the main methods of every QuicConnection."""
    counter: Counter[str] = Counter()
    for name in _COUNTED:
        original = getattr(QuicConnection, name)

        def wrapper(
            self: QuicConnection, *args: Any, _name: str = name, _original: Any = original
        ) -> Any:
            counter[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(QuicConnection, name, wrapper)
    closed = QuicConnection.is_closed

    def is_closed(self: QuicConnection) -> bool:
        counter["is_closed"] += 1
        return bool(closed.fget(self))  # type: ignore[attr-defined]

    monkeypatch.setattr(QuicConnection, "is_closed", property(is_closed))
    return counter


def _drain(endpoint: QuicEndpoint) -> list[Any]:
    events = []
    while (item := endpoint.next_event()) is not None:
        events.append(item[1])
    return events


def _spoofs(rng: random.Random, decryptable_share: float) -> Iterator[bytes]:
    """Endless spoofed Initials; the undecryptable ones come from a pool (they leave no
    state, so repeating one is as good as a new one)."""
    pool = [undecryptable_initial(rng) for _ in range(64)]
    while True:
        if rng.random() < decryptable_share:
            yield decryptable_initial(rng)
        else:
            yield rng.choice(pool)


def _connect_real_client(server: QuicEndpoint, now: float) -> float:
    """A real client handshake through ``server``; returns the simulated time it took."""
    net = Network(seed=5, start=now)
    net.add(SERVER_ADDR, WakingEndpoint(server))
    client = QuicEndpoint()
    net.add(CLIENT_ADDR, WakingEndpoint(client))
    conn = client.connect(SERVER_ADDR, client_config(), net.now)
    net.run(lambda: conn.handshake_complete, max_time=5.0)
    return net.now - now


LIMIT = 200
DEADLINE = 2.0


def _limited_server() -> QuicEndpoint:
    return QuicEndpoint(
        server_config(max_half_open_connections=LIMIT, handshake_timeout=DEADLINE, retry="never")
    )


def _flood(n: int, calls: Counter[str]) -> dict[str, float]:
    """``n`` spoofed Initials at 5,000 per second into a limited server: the largest
    tables seen, the work done, and what is left after the deadline."""
    rng = random.Random(n)
    server = _limited_server()
    spoofs = _spoofs(rng, decryptable_share=0.25)
    now = 1000.0
    peak = Counter[str]()
    calls.clear()
    for i in range(n):
        now += 1 / 5000
        timer = server.get_timer()
        if timer is not None and timer <= now:
            server.handle_timer(now)
        server.receive_datagram(next(spoofs), random_address(rng), now)
        if i % 32 == 31:  # the pump transmits once per receive batch
            server.datagrams_to_send(now)
        _drain(server)
        peak["connections"] = max(peak["connections"], len(server._entries))
        peak["half_open"] = max(peak["half_open"], server.half_open_connections)
        peak["routes"] = max(peak["routes"], server.route_count)
        peak["heap"] = max(peak["heap"], len(server._deadlines))
    work = sum(calls.values())
    now += DEADLINE + 0.01
    server.handle_timer(now)
    server.datagrams_to_send(now)
    events = _drain(server)
    return {
        **peak,
        "work_per_datagram": work / n,
        "refused": server.refused,
        "evicted": server.evicted,
        "left": len(server.connections),
        "left_routes": server.route_count,
        "left_half_open": server.half_open_connections,
        "left_addresses": len(server._admission.per_address),
        "removed_at_deadline": sum(isinstance(e, ConnectionRemoved) for e in events),
        "handshake_time": _connect_real_client(server, now),
    }


def test_spoofed_initials_are_bounded_expire_and_cost_linear_work(calls: Counter[str]) -> None:
    """2,500 and 10,000 spoofed Initials (12 and 50 times the limit): the tables never
    exceed the limits, every spoofed connection is gone after the handshake deadline, a
    real client then connects at once, and the work per datagram is the same for N and
    4N."""
    small = _flood(2_500, calls)
    large = _flood(10_000, calls)
    for result in (small, large):
        assert result["connections"] <= LIMIT
        assert result["half_open"] <= LIMIT
        assert result["routes"] <= 2 * LIMIT  # our CID and the client's original DCID
        assert result["heap"] <= 64 + 4 * LIMIT
        assert result["evicted"] > 0  # the limit was reached: the oldest spoofs gave way
        assert result["left"] == result["left_routes"] == 0
        assert result["left_half_open"] == result["left_addresses"] == 0
        assert result["removed_at_deadline"] > 0
        assert result["handshake_time"] < 0.1  # two round trips of 10 ms and change
    assert large["work_per_datagram"] / small["work_per_datagram"] < 1.5


def _undecryptable_flood(n: int, calls: Counter[str]) -> float:
    """``n`` valid-looking Initials that fail authentication: no state at any time."""
    rng = random.Random(n)
    server = _limited_server()
    spoofs = _spoofs(rng, decryptable_share=0.0)
    calls.clear()
    for i in range(n):
        server.receive_datagram(next(spoofs), random_address(rng), i / 5000)
        assert not server._entries and not server.route_count and not server._admission.per_address
    assert server.datagrams_to_send(n / 5000) == [] and _drain(server) == []
    assert server.dropped == n and server.refused == 0
    return sum(calls.values()) / n


def test_initials_that_fail_authentication_leave_nothing(calls: Counter[str]) -> None:
    """Each one is tried on a tentative connection and forgotten (RFC 9001 §5.2)."""
    small = _undecryptable_flood(2_000, calls)
    large = _undecryptable_flood(8_000, calls)
    assert large / small < 1.2


def _half_open_server(n: int) -> tuple[QuicEndpoint, list[bytes]]:
    """A server holding ``n`` half-open connections (spoofs that authenticated)."""
    rng = random.Random(n)
    server = QuicEndpoint(
        server_config(
            max_half_open_connections=10**6,
            max_connections_per_address=10**6,
            handshake_timeout=1000.0,
            retry="never",
        ),
        max_connections=10**6,
    )
    dcids = []
    frames = client_initial_frames()
    for _ in range(n):
        dcid = rng.randbytes(8)
        dcids.append(dcid)
        server.receive_datagram(
            sealed_initial(frames, dcid, rng.randbytes(8)), random_address(rng), 0.0
        )
    server.datagrams_to_send(0.0)
    server.datagrams_to_send(0.0)
    _drain(server)
    assert len(server.connections) == n
    return server, dcids


def _per_datagram_calls(n: int, calls: Counter[str]) -> float:
    server, dcids = _half_open_server(n)
    rng = random.Random(1)
    frames = client_initial_frames()
    calls.clear()
    rounds = 64
    for i in range(rounds):
        now = 1.0 + i * 0.001
        # an Initial retransmission on an existing connection, and a spoof
        dcid = rng.choice(dcids)
        server.receive_datagram(
            sealed_initial(frames, dcid, b"\x01" * 8, 1, 1 + i), CLIENT_ADDR, now
        )
        server.receive_datagram(undecryptable_initial(rng), random_address(rng), now)
        server.datagrams_to_send(now)
        server.get_timer()
        server.handle_timer(now)
        _drain(server)
    return sum(calls.values()) / rounds


def test_per_datagram_work_does_not_grow_with_the_number_of_connections(
    calls: Counter[str],
) -> None:
    """Calls into connections per received datagram at 500 and 2,000 connections: the
    same (before: every send, timer query and timer walked every connection)."""
    at_500 = _per_datagram_calls(500, calls)
    at_2000 = _per_datagram_calls(2000, calls)
    assert at_2000 / at_500 < 1.2, (at_500, at_2000)


def _reap_work(n: int, calls: Counter[str]) -> float:
    server, _ = _half_open_server(n)
    server._entries  # noqa: B018  (white-box: every entry has a deadline 1000 s out)
    calls.clear()
    server.handle_timer(2000.0)
    server.datagrams_to_send(2000.0)
    assert server.connections == [] and server.route_count == 0
    removed = [e for e in _drain(server) if isinstance(e, ConnectionRemoved)]
    assert len(removed) == n
    return sum(calls.values())


def test_reaping_touches_only_the_removed_connections(calls: Counter[str]) -> None:
    """Expiring N and 4N connections: linear work (before: quadratic, every removal
    scanned every route and every connection)."""
    small = _reap_work(400, calls)
    large = _reap_work(1600, calls)
    assert large / small < 6, (small, large)


# -- each limit on its own --------------------------------------------------------------------


def _admit(server: QuicEndpoint, rng: random.Random, addr: Any, now: float = 0.0) -> bool:
    before = len(server.connections)
    server.receive_datagram(decryptable_initial(rng), addr, now)
    return len(server.connections) == before + 1


def test_full_half_open_table_evicts_the_oldest_silent_connection() -> None:
    """A full half-open table makes room by forgetting the oldest connection that got
    nothing after its first datagram (a spoof, likely): silently, nothing sent."""
    rng = random.Random(2)
    server = QuicEndpoint(server_config(max_half_open_connections=5, retry="never"))
    assert all(_admit(server, rng, random_address(rng)) for _ in range(5))
    server.datagrams_to_send(0.0)
    _drain(server)
    oldest = server.connections[0]
    before = len(server.connections)
    server.receive_datagram(decryptable_initial(rng), random_address(rng), 0.0)
    assert len(server.connections) == before and oldest not in server.connections
    assert server.evicted == 1 and server.refused == 0
    events = _drain(server)
    assert [type(e) for e in events if not isinstance(e, ConnectionAccepted)][-2:] == [
        ConnectionTerminated,
        ConnectionRemoved,
    ] or any(isinstance(e, ConnectionRemoved) for e in events)
    sent = server.datagrams_to_send(0.0)
    assert all(addr != oldest.peer_address for _, addr in sent)  # nothing to the evicted


def test_half_open_limit_refuses_when_every_connection_is_live() -> None:
    """Connections that received a second datagram (a live client answers) are never
    evicted: with only those in a full table, a new Initial is refused silently."""
    rng = random.Random(2)
    frames = client_initial_frames()
    server = QuicEndpoint(server_config(max_half_open_connections=5, retry="never"))
    for _ in range(5):
        dcid, scid, addr = rng.randbytes(8), rng.randbytes(8), random_address(rng)
        server.receive_datagram(sealed_initial(frames, dcid, scid), addr, 0.0)
        server.receive_datagram(sealed_initial(frames, dcid, scid, 1, 1), addr, 0.001)
    assert server.half_open_connections == 5
    server.datagrams_to_send(0.0)
    _drain(server)
    assert not _admit(server, rng, random_address(rng), 0.002)
    assert server.refused == 1 and server.evicted == 0
    assert server.datagrams_to_send(0.0) == [] and _drain(server) == []  # silently


class _FloodedServer(WakingEndpoint):
    """A server endpoint that also receives spoofed, authenticating Initials at
    ``rate`` per simulated second, from random addresses, whatever else happens."""

    def __init__(self, endpoint: QuicEndpoint, rate: float, start: float) -> None:
        super().__init__(endpoint)
        self.rng = random.Random(99)
        self.interval = 1 / rate
        self.next_spoof = start
        self.spoofs = 0

    def _flood_until(self, now: float) -> None:
        while self.next_spoof <= now:
            self.endpoint.receive_datagram(
                decryptable_initial(self.rng), random_address(self.rng), self.next_spoof
            )
            self.spoofs += 1
            self.next_spoof += self.interval

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self._flood_until(now)
        super().receive_datagram(data, addr, now)

    def get_timer(self) -> float | None:
        timer = super().get_timer()
        return self.next_spoof if timer is None else min(timer, self.next_spoof)

    def handle_timer(self, now: float) -> None:
        self._flood_until(now)
        super().handle_timer(now)


@pytest.mark.parametrize("rate", [2_000, 8_000])
def test_real_client_connects_during_a_spoofed_initial_flood(rate: int) -> None:
    """Spoofed Initials that authenticate keep the half-open table full; a real client
    still completes its handshake in about two round trips, because the silent spoofs
    are evicted before it (a real client answers within a round trip)."""
    server = QuicEndpoint(server_config(max_half_open_connections=LIMIT, retry="never"))
    net = Network(seed=8, start=0.0)
    flooded = _FloodedServer(server, rate, 0.0)
    net.add(SERVER_ADDR, flooded)
    client_endpoint = QuicEndpoint()
    net.add(CLIENT_ADDR, WakingEndpoint(client_endpoint))
    net.settle(2 * LIMIT / rate)  # the table is full of spoofs
    _drain(server)
    assert server.half_open_connections == LIMIT
    start = net.now
    conn = client_endpoint.connect(SERVER_ADDR, client_config(), net.now)
    net.run(lambda: conn.handshake_complete and bool(_drain(server) or True), max_time=5.0)
    assert net.now - start < 0.1  # 10 ms each way: two round trips and change
    assert server.evicted > 0 and server.half_open_connections <= LIMIT


def test_per_address_limit() -> None:
    rng = random.Random(3)
    server = QuicEndpoint(server_config(max_connections_per_address=3))
    addr = ("198.51.100.7", 4000)
    assert all(_admit(server, rng, (addr[0], 4000 + i)) for i in range(3))
    assert not _admit(server, rng, (addr[0], 5000))  # another port, same IP
    assert _admit(server, rng, ("198.51.100.8", 4000))


def test_max_connections_limit() -> None:
    rng = random.Random(4)
    server = QuicEndpoint(server_config(), max_connections=4)
    assert all(_admit(server, rng, random_address(rng)) for _ in range(4))
    assert not _admit(server, rng, random_address(rng))


def test_handshake_deadline_abandons_half_open_connections_only() -> None:
    """A half-open connection is abandoned at its deadline (ConnectionTerminated, then
    ConnectionRemoved, nothing sent); a completed one stays."""
    server = QuicEndpoint(server_config(handshake_timeout=3.0))
    net = Network(seed=6, start=0.0)
    net.add(SERVER_ADDR, WakingEndpoint(server))
    client_endpoint = QuicEndpoint()
    net.add(CLIENT_ADDR, WakingEndpoint(client_endpoint))
    real = client_endpoint.connect(SERVER_ADDR, client_config(), net.now)
    net.run(lambda: real.handshake_complete and not server.half_open_connections, max_time=2)
    rng = random.Random(7)
    server.receive_datagram(decryptable_initial(rng), random_address(rng), net.now)
    spoofed = server.connections[-1]
    assert server.half_open_connections == 1
    net.settle(0.5)
    events: list[tuple[QuicConnection, Any]] = []
    while (item := server.next_event()) is not None:
        events.append(item)
    assert (spoofed, ConnectionAccepted(spoofed)) in events
    events.clear()
    deadline = net.now + 3.0
    while net.now < deadline + 0.01:
        net.settle(0.25)
        while (item := server.next_event()) is not None:
            events.append(item)
    mine = [e for c, e in events if c is spoofed]
    assert [type(e) for e in mine] == [ConnectionTerminated, ConnectionRemoved]
    assert isinstance(mine[0], ConnectionTerminated)
    assert mine[0].reason_phrase == "handshake timeout"
    assert server.connections == [server.connections[0]] and not real.is_closed
    assert server.half_open_connections == 0 and server.expired == 1


def _server_dark_after(first: int, until: float, **server_kwargs: Any) -> tuple[Any, int]:
    """In memory, fake clock: the server's first ``first`` datagrams reach the client,
    then nothing it sends until ``until`` seconds in (a run of bad luck on a lossy path).
    Returns the pair and how many datagrams the server sent."""
    pair = make_pair(server_kwargs=server_kwargs)
    link = pair.net.link(SERVER_ADDR, CLIENT_ADDR)
    start, sent = pair.net.now, 0
    through = link.schedule

    def schedule(data: bytes, now: float, rng: random.Random) -> list[tuple[float, bytes]]:
        nonlocal sent
        sent += 1
        return through(data, now, rng) if sent <= first or now >= start + until else []

    link.schedule = schedule  # type: ignore[method-assign]
    with contextlib.suppress(TimeoutError):
        pair.run(lambda: pair.client.handshake_complete, max_time=45)
    return pair, sent


def test_handshake_deadline_restarts_while_a_proven_client_makes_progress() -> None:
    """The client got our first datagram, so it talks to the connection ID we chose
    (RFC 9000 §8.1): its datagrams during 11 dark seconds restart the 10 s handshake
    deadline, and the handshake completes once the path recovers. (Before: abandoned at
    10 s, the client left talking to a dead connection ID.)"""
    pair, _ = _server_dark_after(1, 11.0)
    assert pair.client.handshake_complete
    assert pair.server_endpoint.expired == 0


def test_handshake_deadline_holds_for_a_client_that_never_hears_us() -> None:
    """A client that never received anything from us (so, possibly a spoofer replaying
    its Initial) gives no proof: its retransmitted Initials, to its own original DCID,
    do not restart the deadline — the connection is abandoned 3 s after it began, though
    Initials kept arriving (at about 1 s and 3 s)."""
    pair = make_pair(server_kwargs={"handshake_timeout": 3.0})
    start = pair.net.now
    pair.net.link(SERVER_ADDR, CLIENT_ADDR).loss = 1.0
    pair.run(lambda: pair.server_endpoint.expired > 0, max_time=20)
    assert pair.net.now - start < 3.1
    assert not pair.client.handshake_complete


def test_timer_heap_stays_bounded_during_a_transfer() -> None:
    """Lazy invalidation leaves stale deadlines behind; the heap is rebuilt before they
    outnumber the live ones."""
    server = QuicEndpoint(server_config())
    net = Network(seed=8, start=0.0)
    net.add(SERVER_ADDR, WakingEndpoint(server))
    client_endpoint = QuicEndpoint()
    net.add(CLIENT_ADDR, WakingEndpoint(client_endpoint))
    conn = client_endpoint.connect(SERVER_ADDR, client_config(), net.now)
    net.run(lambda: conn.handshake_complete, max_time=2.0)
    sid = conn.create_stream()
    conn.send_stream_data(sid, bytes(2_000_000), end_stream=True)
    peak = 0
    received = 0

    def done() -> bool:
        nonlocal peak, received
        peak = max(peak, len(server._deadlines), len(client_endpoint._deadlines))
        while (item := server.next_event()) is not None:
            data = getattr(item[1], "data", b"")
            if data and hasattr(item[1], "stream_id"):
                item[0].consume_stream_data(item[1].stream_id, len(data))
                received += len(data)
        return received >= 2_000_000

    net.run(done, max_time=60)
    assert peak <= 64 + 4


def test_wake_is_needed_only_for_direct_actions() -> None:
    """A driver that acts on a connection without telling the endpoint is not served
    until something else happens to that connection (documents :meth:`wake`)."""
    server = QuicEndpoint(server_config())
    client = QuicEndpoint()
    conn = client.connect(SERVER_ADDR, client_config(), 0.0)
    pump: Callable[[float], None]

    def pump(now: float) -> None:
        for _ in range(20):
            moved = False
            for data, _ in client.datagrams_to_send(now):
                server.receive_datagram(data, CLIENT_ADDR, now)
                moved = True
            for data, _ in server.datagrams_to_send(now):
                client.receive_datagram(data, SERVER_ADDR, now)
                moved = True
            _drain(server)
            _drain(client)
            if not moved:
                return

    pump(0.0)
    assert conn.handshake_complete
    sid = conn.create_stream()
    conn.send_stream_data(sid, b"hello", end_stream=True)
    assert client.datagrams_to_send(0.1) == []  # not woken: not asked
    client.wake(conn)
    assert client.datagrams_to_send(0.1) != []
