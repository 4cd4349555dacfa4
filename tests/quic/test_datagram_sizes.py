"""DATAGRAM sizes offered to applications follow the path MTU (docs/datagrams.md).

DPLPMTUD is on by default (``pmtud_max_datagram_size`` = 1452): these pairs use the
default configuration, on the fake clock, through netsim links with a path MTU (netsim
drops larger datagrams, as a router does with the Don't Fragment bit set).
"""

from __future__ import annotations

import tracemalloc
from collections import deque

import pytest

from quic.configuration import QuicConfiguration
from quic.conn_datagrams import DatagramChannel
from quic.conn_pmtu import BASE_PLPMTU, MAX_PROBES, SEARCH_PRECISION, PmtuState
from quic.events import DatagramReceived
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

# 1-RTT overhead around a DATAGRAM payload with 8-byte connection IDs: first byte,
# DCID, 4-byte packet number allowance, AEAD tag, frame type and 2-byte length
OVERHEAD = 1 + 8 + 4 + 16 + 3


def _pair(mtu: int = 1500, **client: object) -> Pair:
    pair = make_pair(client_kwargs=dict(client), mtu=mtu)
    pair.handshake()
    return pair


def _settled(pair: Pair) -> bool:
    return all(c.pmtu.state is PmtuState.SEARCH_COMPLETE for c in (pair.client, pair.server))


def _received(pair: Pair, side: str = "server") -> list[bytes]:
    return [e.data for e in pair.events_of(DatagramReceived, side)]


def test_discovery_is_on_by_default_for_ipv4_and_ipv6_ethernet() -> None:
    config = QuicConfiguration()
    assert config.pmtud_max_datagram_size == 1500 - 40 - 8  # fits IPv6, so IPv4 too
    assert config.max_datagram_size == BASE_PLPMTU  # starts at the base (RFC 9000 §14.1)


def test_the_offered_payload_grows_when_a_probe_is_acknowledged() -> None:
    pair = _pair()
    client = pair.client
    # before the handshake is confirmed nothing is probed: the base size
    assert client.max_datagram_payload == BASE_PLPMTU - OVERHEAD == 1168
    pair.run(lambda: _settled(pair), max_time=5)
    assert client.max_datagram_size == 1452
    assert client.max_datagram_payload == 1452 - OVERHEAD == 1420
    stats = client.stats()
    assert (stats.max_datagram_size, stats.max_datagram_payload) == (1452, 1420)
    big = bytes(range(256)) * 5 + bytes(1420 - 1280)
    client.send_datagram(big)
    pair.run(lambda: bool(_received(pair)), max_time=2)
    assert _received(pair) == [big]  # byte-exact, in one packet of 1452 bytes
    with pytest.raises(ValueError, match="1421 bytes does not fit"):
        client.send_datagram(bytes(1421))


def test_discovery_off_keeps_the_base_payload() -> None:
    pair = _pair(pmtud_max_datagram_size=1200)
    pair.run(lambda: pair.server.pmtu.state is PmtuState.SEARCH_COMPLETE, max_time=5)
    assert pair.client.pmtu.state is PmtuState.DISABLED
    assert pair.client.max_datagram_payload == 1168


def test_a_1280_path_converges_and_stays_there() -> None:
    """Probes above 1280 are lost (RFC 8899 §5.3): the search settles within
    SEARCH_PRECISION below 1280, a transfer then uses that size with no black hole,
    and the offered payload is that size's."""
    pair = _pair(mtu=1280)
    pair.run(lambda: _settled(pair), max_time=30)
    client = pair.client
    found = client.pmtu.plpmtu
    assert 1280 - SEARCH_PRECISION < found <= 1280
    assert client.max_datagram_payload == found - OVERHEAD
    sid = client.create_stream()
    payload = bytes(i % 251 for i in range(400_000))
    client.send_stream_data(sid, payload, end_stream=True)
    sent: list[bytes] = []
    for i in range(50):  # datagrams of the offered size all through, interleaved
        data = i.to_bytes(2, "big") * (client.max_datagram_payload // 2)
        client.send_datagram(data)
        sent.append(data)
        pair.net.settle(0.005)
        pair.pump()
    pair.run(lambda: pair.stream_done(sid) and len(_received(pair)) == 50, max_time=60)
    assert bytes(pair.data["server"][sid]) == payload
    assert client.pmtu.plpmtu == found and client.pmtu.black_holes == 0
    assert client.pmtu.state is PmtuState.SEARCH_COMPLETE
    assert _received(pair) == sent  # loss-free link: every one arrived
    assert client.stats().datagrams_dropped_too_large == 0


def test_datagram_traffic_through_a_black_hole() -> None:
    """An application sends a datagram of the offered size every 10 ms; the path MTU
    drops to 1300 mid-way. The lost 1452-byte packets are black-hole evidence, the
    size falls back to 1200 and the search finds ~1300 again; datagrams sized by the
    live ``max_datagram_payload`` keep arriving after the drop."""
    pair = _pair()
    pair.run(lambda: _settled(pair), max_time=5)
    client = pair.client
    sizes: list[int] = []

    def tick(n: int) -> None:
        for _ in range(n):
            size = client.max_datagram_payload
            sizes.append(size)
            client.send_datagram(bytes([len(sizes) % 256]) * size)
            pair.net.settle(0.010)
            pair.pump()

    tick(100)
    before = len(_received(pair))
    assert before == 100 and set(sizes) == {1420}
    for src, dst in ((CLIENT_ADDR, SERVER_ADDR), (SERVER_ADDR, CLIENT_ADDR)):
        pair.net.link(src, dst).mtu = 1300
    tick(400)
    pair.run(lambda: _settled(pair), max_time=30)
    assert client.pmtu.black_holes == 1
    assert BASE_PLPMTU - OVERHEAD in sizes  # told the base size at the fallback ...
    assert 1300 - SEARCH_PRECISION - OVERHEAD < sizes[-1] <= 1300 - OVERHEAD  # ... then more
    after = _received(pair)[before:]
    # after the drop, only the large ones sent before the fallback were lost
    assert len(after) >= 400 - 2 * MAX_PROBES * 10
    assert all(len(d) <= 1300 - OVERHEAD for d in after)
    assert client.state.name == "CONNECTED"


def _queue_then_black_hole(count: int) -> tuple[Pair, int, int]:
    """Queue ``count`` large and ``count`` small datagrams at 1452 without sending,
    then a black hole drops the size to the base; returns the pair, the bytes the
    queue retained right after, and the bytes it retained before."""
    pair = _pair(max_datagram_queue=4 * count)
    pair.run(lambda: _settled(pair), max_time=5)
    client = pair.client
    large, small = client.max_datagram_payload, 1000
    tracemalloc.start()
    try:
        for i in range(count):
            client.send_datagram(i.to_bytes(4, "big") * (large // 4))
            client.send_datagram(i.to_bytes(4, "big") * (small // 4))
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(MAX_PROBES):  # RFC 8899 §4.3: PTOs at the larger size
            client.pmtu.on_pto(pair.net.now)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert client.max_datagram_size == BASE_PLPMTU
    return pair, after, before


def test_queued_datagrams_that_no_longer_fit_are_dropped_and_counted() -> None:
    pair, _, _ = _queue_then_black_hole(20)
    client = pair.client
    stats = client.stats()
    assert stats.datagrams_dropped_too_large == 20  # the reason is counted
    assert stats.datagrams_dropped_queue_full == 0
    assert client.datagrams.pending == 20
    pair.run(lambda: len(_received(pair)) == 20, max_time=5)
    assert {len(d) for d in _received(pair)} == {1000}  # the small ones, all of them
    with pytest.raises(ValueError):
        client.send_datagram(bytes(1420))  # the size offered is the base one now


def test_dropping_on_shrink_is_linear_and_leaves_nothing_n_vs_4n() -> None:
    """Scale: N vs 4N queued datagrams through the fallback: the dropped count is
    exact, and the queue retains what the small ones hold, no more."""
    n = 150
    small, small_after, small_before = _queue_then_black_hole(n)
    large, large_after, large_before = _queue_then_black_hole(4 * n)
    assert small.client.stats().datagrams_dropped_too_large == n
    assert large.client.stats().datagrams_dropped_too_large == 4 * n
    assert (small.client.datagrams.pending, large.client.datagrams.pending) == (n, 4 * n)
    # the large datagrams' bytes are released: at most the small ones' stay
    freed_small, freed_large = small_before - small_after, large_before - large_after
    assert freed_small >= n * 1000  # 1420-byte datagrams gone
    assert 3 < freed_large / freed_small < 5  # linear in what was queued


def test_queue_limit_still_bounds_and_counts_separately() -> None:
    channel = DatagramChannel(65536, 4, deque())
    channel.set_peer_max_frame_size(65536)
    for i in range(10):
        channel.send(bytes([i]) * 100, 8, 1452)
    assert channel.pending == 4 and channel.dropped_queue_full == 6
    channel.shrink(50)
    assert channel.pending == 0 and channel.dropped_too_large == 4
    assert channel.dropped == 10
