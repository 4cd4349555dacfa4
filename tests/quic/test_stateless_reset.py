"""Sending Stateless Resets (RFC 9000 §10.3): tokens derived from the connection ID with
the endpoint's static key, size rules, rate limit; and the peer recognising them."""

from __future__ import annotations

import tracemalloc

from quic.endpoint import QuicEndpoint
from quic.events import ConnectionTerminated
from tests.support.quicpair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    WakingEndpoint,
    make_pair,
    server_config,
)

KEY = bytes(range(32))


def _short(size: int, dcid: bytes = b"\x11" * 8) -> bytes:
    return b"\x40" + dcid + bytes(size - 1 - len(dcid))


def test_token_is_derived_from_the_connection_id_with_the_static_key() -> None:
    a = QuicEndpoint(server_config(stateless_reset_key=KEY))
    b = QuicEndpoint(server_config(stateless_reset_key=KEY))
    c = QuicEndpoint(server_config())
    cid = b"\x01" * 8
    assert a.reset_token(cid) == b.reset_token(cid)  # RFC 9000 §10.3.2: stateless
    assert a.reset_token(cid) != a.reset_token(b"\x02" * 8)
    assert a.reset_token(cid) != c.reset_token(cid)
    assert len(a.reset_token(cid)) == 16


def test_connections_issue_ids_with_derived_tokens() -> None:
    pair = make_pair(server_kwargs={"stateless_reset_key": KEY})
    pair.handshake()
    pair.net.settle(0.5)
    server = pair.server
    tokens = server.cids.local_reset_tokens()
    assert len(tokens) > 1
    for cid, token in tokens.items():
        assert token == pair.server_endpoint.reset_token(cid)


def test_reset_for_an_unknown_connection_id_has_the_right_shape() -> None:
    endpoint = QuicEndpoint(server_config(stateless_reset_key=KEY))
    dcid = b"\x22" * 8
    for size, expected in ((30, 29), (43, 42), (44, 43), (1200, 43)):
        endpoint.receive_datagram(_short(size, dcid), CLIENT_ADDR, 1.0)
        ((reset, addr),) = endpoint.datagrams_to_send(1.0)
        assert addr == CLIENT_ADDR
        assert len(reset) == expected < size  # RFC 9000 §10.3.3: smaller, no loops
        assert reset[0] & 0xC0 == 0x40  # looks like a short header (§10.3)
        assert reset[-16:] == endpoint.reset_token(dcid)
    assert endpoint.resets_sent == 4


def test_no_reset_for_datagrams_too_small_or_long_headers() -> None:
    endpoint = QuicEndpoint(server_config(stateless_reset_key=KEY))
    for size in (10, 21, 22, 28):  # under 1 + CID + 20: not a packet we could have sent
        endpoint.receive_datagram(_short(size), CLIENT_ADDR, 1.0)
    endpoint.receive_datagram(b"\xc0\x00\x00\x00\x01" + bytes(60), CLIENT_ADDR, 1.0)
    assert endpoint.datagrams_to_send(1.0) == []
    assert endpoint.resets_sent == 0
    endpoint.receive_datagram(_short(29), CLIENT_ADDR, 1.0)
    ((reset, _),) = endpoint.datagrams_to_send(1.0)
    assert len(reset) == 28


def _flood(count: int, duration: float) -> tuple[int, int]:
    """``count`` unknown-CID datagrams spread over ``duration`` seconds: resets sent and
    bytes the endpoint retains."""
    endpoint = QuicEndpoint(server_config(stateless_reset_burst=16, stateless_reset_rate=10.0))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    sent = 0
    for i in range(count):
        now = 1.0 + duration * i / count
        endpoint.receive_datagram(_short(100, i.to_bytes(8, "big")), ("10.0.0.1", i), now)
        if i % 100 == 99:
            sent += len(endpoint.datagrams_to_send(now))
    sent += len(endpoint.datagrams_to_send(1.0 + duration))
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert sent == endpoint.resets_sent
    return sent, retained


def test_reset_rate_limit_is_bounded_n_vs_4n() -> None:
    """RFC 9000 §10.3.3: a bounded number of resets. N vs 4N datagrams in the same
    second give the same number of resets and retain no more memory."""
    n = 2000
    sent_n, mem_n = _flood(n, 1.0)
    sent_4n, mem_4n = _flood(4 * n, 1.0)
    assert sent_n <= 16 + 10 + 1  # burst + one second of refill
    assert sent_4n <= 16 + 10 + 1
    assert mem_4n < max(4 * mem_n, 20_000)  # no per-datagram state
    # over time the bucket refills at the configured rate
    sent_long, _ = _flood(n, 10.0)
    assert 16 + 90 <= sent_long <= 16 + 100 + 1


def test_restarted_server_resets_and_the_client_recognises_it() -> None:
    pair = make_pair(server_kwargs={"stateless_reset_key": KEY})
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    pair.net.settle(0.5)
    # the server restarts: same static key, no connection state
    restarted = QuicEndpoint(server_config(stateless_reset_key=KEY))
    pair.net.add(SERVER_ADDR, WakingEndpoint(restarted))
    client = pair.client
    sid = client.create_stream()
    client.send_stream_data(sid, b"anyone there?", end_stream=True)
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated, "client")), max_time=2)
    (term,) = pair.events_of(ConnectionTerminated, "client")
    assert term.reason_phrase == "stateless reset" and term.by_peer
    assert restarted.resets_sent >= 1
    assert not restarted.connections


def test_reset_with_another_key_is_not_recognised() -> None:
    pair = make_pair(server_kwargs={"stateless_reset_key": KEY})
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    restarted = QuicEndpoint(server_config(stateless_reset_key=b"\x99" * 32))
    pair.net.add(SERVER_ADDR, WakingEndpoint(restarted))
    client = pair.client
    sid = client.create_stream()
    client.send_stream_data(sid, b"anyone there?", end_stream=True)
    pair.net.settle(1.0)
    pair.pump()
    assert restarted.resets_sent >= 1
    assert not pair.events_of(ConnectionTerminated, "client")  # §10.3.1: token mismatch
