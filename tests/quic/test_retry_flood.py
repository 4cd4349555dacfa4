"""Retry under a spoofed-Initial flood, at scale, in memory (issue 9, address validation).

The issue-8 flood (``test_endpoint_limits.py``, Retry off) creates a tentative connection
for every spoofed Initial that authenticates and relies on eviction. With Retry on
(RFC 9000 §8.1.2, §21.1.1.2) the same flood creates no connection at all: every spoof
gets a stateless Retry and the spoofer never sees it. Cost is measured with counters
(calls into connections, Retry packets made) and tracemalloc, comparing N with 4N.
"""

from __future__ import annotations

import random
import tracemalloc
from collections import Counter
from typing import Any

import pytest

from quic.connection import QuicConnection
from quic.endpoint import QuicEndpoint
from quic.retry import AddressValidator
from tests.support.netsim import Network
from tests.support.quicpair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    WakingEndpoint,
    client_config,
    server_config,
)
from tests.support.spoof import client_initial_frames, decryptable_initial, random_address

THRESHOLD = 50


@pytest.fixture
def conn_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts connections made and datagrams handed to connections."""
    counter: Counter[str] = Counter()
    init, receive = QuicConnection.__init__, QuicConnection.receive_datagram

    def counting_init(self: QuicConnection, *args: Any, **kwargs: Any) -> None:
        counter["created"] += 1
        init(self, *args, **kwargs)

    def counting_receive(self: QuicConnection, *args: Any) -> Any:
        counter["received"] += 1
        return receive(self, *args)

    monkeypatch.setattr(QuicConnection, "__init__", counting_init)
    monkeypatch.setattr(QuicConnection, "receive_datagram", counting_receive)
    return counter


def _flood(server: QuicEndpoint, n: int, seed: int) -> dict[str, int]:
    """``n`` authenticating spoofed Initials from random addresses at 5,000/s; the
    pump sends every 32 datagrams. Returns peaks and what the endpoint holds after."""
    rng = random.Random(seed)
    now = 0.0
    peak: Counter[str] = Counter()
    sent = 0
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            now += 1 / 5000
            server.receive_datagram(decryptable_initial(rng), random_address(rng), now)
            if i % 32 == 31:
                sent += len(server.datagrams_to_send(now))
                while server.next_event() is not None:
                    pass
            peak["connections"] = max(peak["connections"], len(server.connections))
            peak["half_open"] = max(peak["half_open"], server.half_open_connections)
        sent += len(server.datagrams_to_send(now))
        retained = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    validator = server.address_validator
    assert validator is not None
    return {
        **peak,
        "sent": sent,
        "retries": validator.retries,
        "keys": validator.minter.key_count,
        "routes": server.route_count,
        "retained": retained,
    }


@pytest.mark.parametrize("n", [2000])
def test_flood_with_retry_always_creates_no_connection(n: int, conn_calls: Counter[str]) -> None:
    """retry="always": N and 4N spoofs → 0 connections, one Retry each, and the memory
    the endpoint keeps does not grow with N."""
    results = {}
    client_initial_frames(False)  # made once by a real client connection: not the server's
    for size in (n, 4 * n):
        conn_calls.clear()
        server = QuicEndpoint(server_config(retry="always"))
        results[size] = _flood(server, size, seed=size)
        results[size]["created"] = conn_calls["created"]
        results[size]["received"] = conn_calls["received"]
    small, large = results[n], results[4 * n]
    for size, r in results.items():
        assert r["connections"] == r["half_open"] == r["routes"] == 0
        assert r["created"] == r["received"] == 0  # no connection ever touched
        assert r["retries"] == r["sent"] == size  # linear: one Retry per spoof
        assert r["keys"] == 1
    # bounded memory: nothing per spoof is retained (the token key, caches: constant)
    assert large["retained"] < small["retained"] + 64 * 1024
    assert large["retained"] < 256 * 1024


@pytest.mark.parametrize("n", [2000])
def test_flood_with_auto_retry_is_bounded_by_the_threshold(
    n: int, conn_calls: Counter[str]
) -> None:
    """retry="auto": the first ``retry_threshold`` spoofs open connections (handshakes
    in flight), every later one gets a Retry; N and 4N spoofs leave the same number of
    connections, and the connection work does not grow with N."""
    results = {}
    client_initial_frames(False)  # made once by a real client connection: not the server's
    for size in (n, 4 * n):
        conn_calls.clear()
        server = QuicEndpoint(
            server_config(retry="auto", retry_threshold=THRESHOLD, handshake_timeout=60.0)
        )
        results[size] = _flood(server, size, seed=size)
        results[size]["created"] = conn_calls["created"]
    small, large = results[n], results[4 * n]
    for size, r in results.items():
        assert r["connections"] == r["half_open"] == THRESHOLD
        assert r["created"] == THRESHOLD
        assert r["retries"] == size - THRESHOLD
    assert large["created"] == small["created"]  # constant, not 4x
    assert large["retained"] < small["retained"] + 64 * 1024


def test_flood_without_retry_for_comparison(conn_calls: Counter[str]) -> None:
    """The same flood with Retry off makes a connection per authenticating spoof
    (eviction bounds the table, not the work): what Retry saves."""
    server = QuicEndpoint(server_config(retry="never", max_half_open_connections=THRESHOLD))
    r = _flood(server, 2000, seed=1)
    assert r["half_open"] == THRESHOLD and r["retries"] == 0
    assert conn_calls["created"] == 2000


class _FloodedServer(WakingEndpoint):
    """Spoofed, authenticating Initials at ``rate`` per simulated second."""

    def __init__(self, endpoint: QuicEndpoint, rate: float) -> None:
        super().__init__(endpoint)
        self.rng = random.Random(99)
        self.interval = 1 / rate
        self.next_spoof = 0.0

    def _flood_until(self, now: float) -> None:
        while self.next_spoof <= now:
            self.endpoint.receive_datagram(
                decryptable_initial(self.rng), random_address(self.rng), self.next_spoof
            )
            self.next_spoof += self.interval

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self._flood_until(now)
        super().receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        # the spoofer's Retries go nowhere: keep only what is for real peers
        return [(d, a) for d, a in super().datagrams_to_send(now) if a == CLIENT_ADDR]

    def get_timer(self) -> float | None:
        timer = super().get_timer()
        return self.next_spoof if timer is None else min(timer, self.next_spoof)

    def handle_timer(self, now: float) -> None:
        self._flood_until(now)
        super().handle_timer(now)


@pytest.mark.parametrize("rate", [2_000, 8_000])
def test_real_client_connects_through_retry_during_a_flood(rate: int) -> None:
    """Under a flood the auto-Retry server answers a real client with a Retry too; the
    client proves its address and completes in about three round trips, while the
    half-open table stays at the threshold and nothing is evicted."""
    server = QuicEndpoint(server_config(retry="auto", retry_threshold=THRESHOLD))
    net = Network(seed=8, start=0.0)
    net.add(SERVER_ADDR, _FloodedServer(server, rate))
    client_endpoint = QuicEndpoint()
    net.add(CLIENT_ADDR, WakingEndpoint(client_endpoint))
    net.settle(2 * THRESHOLD / rate)
    while server.next_event() is not None:
        pass
    assert server.half_open_connections == THRESHOLD
    start = net.now
    conn = client_endpoint.connect(SERVER_ADDR, client_config(), net.now)
    net.run(lambda: conn.handshake_complete, max_time=5.0)
    assert net.now - start < 0.1  # 10 ms each way: a Retry round trip, then two
    assert conn.handshake.retry_received
    assert server.evicted == 0 and server.half_open_connections <= THRESHOLD + 1
    validator = server.address_validator
    assert isinstance(validator, AddressValidator) and validator.retry_validated == 1
