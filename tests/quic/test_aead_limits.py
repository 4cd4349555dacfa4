"""RFC 9001 §6.6 AEAD limits: a key update before the confidentiality limit, a close
with AEAD_LIMIT_REACHED when no update is possible, and a close beyond the integrity
limit of packets that fail authentication."""

from __future__ import annotations

import os

import pytest

from quic.conn_keys import (
    APPLICATION,
    KEY_UPDATE_MARGIN,
    LIMIT_RESERVE,
    OneRttReadKeys,
    PacketSpaces,
)
from quic.connection import ConnectionState
from quic.errors import TransportErrorCode
from quic.events import ConnectionTerminated
from quic.protection import PacketProtector
from tests.support.quicpair import CLIENT_ADDR, Pair, make_pair


def _connected(seed: int = 1) -> Pair:
    pair = make_pair(seed=seed)
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed, max_time=5)
    return pair


def _write_key(pair: Pair) -> PacketProtector:
    write = pair.client.keys.spaces[APPLICATION].write
    assert write is not None
    return write


def test_key_update_starts_before_the_confidentiality_limit() -> None:
    pair = _connected()
    first = _write_key(pair)
    # 100 packets before the margin: the update must start within this transfer
    first.confidentiality_limit = first.encrypted_packets + KEY_UPDATE_MARGIN + 100
    sid = pair.client.create_stream()
    payload = os.urandom(600_000)
    pair.client.send_stream_data(sid, payload, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=60)
    assert bytes(pair.data["server"][sid]) == payload
    now_key = _write_key(pair)
    assert now_key is not first and now_key.key_phase != first.key_phase
    assert first.encrypted_packets < first.confidentiality_limit
    assert not pair.events_of(ConnectionTerminated, "client")


def test_no_update_possible_closes_with_aead_limit_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = _connected(2)
    key = _write_key(pair)

    def refuse(self: PacketSpaces, largest_acked: int) -> None:
        raise RuntimeError("the current key phase is not acknowledged yet")

    monkeypatch.setattr(PacketSpaces, "request_key_update", refuse)
    key.confidentiality_limit = key.encrypted_packets + LIMIT_RESERVE + 20
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, os.urandom(200_000), end_stream=True)
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated, "server")), max_time=30)
    (closed,) = pair.events_of(ConnectionTerminated, "server")
    assert closed.error_code == TransportErrorCode.AEAD_LIMIT_REACHED
    assert key.encrypted_packets <= key.confidentiality_limit  # the key never went past it


def test_integrity_limit_closes_the_connection() -> None:
    pair = _connected(3)
    server = pair.server
    read = server.keys.spaces[APPLICATION].read
    assert isinstance(read, OneRttReadKeys)
    read.current.integrity_limit = 5
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"q" * 3000)
    pair.client_endpoint.wake(pair.client)
    datagrams = [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
    assert datagrams
    forged = bytearray(datagrams[0])
    forged[-1] ^= 0x01  # the AEAD tag no longer matches
    for _ in range(5):
        server.receive_datagram(bytes(forged), CLIENT_ADDR, pair.net.now)
    assert server.keys.auth_failures == 5
    assert server.state is ConnectionState.CONNECTED  # at the limit, not beyond it
    server.receive_datagram(bytes(forged), CLIENT_ADDR, pair.net.now)
    assert server.state is ConnectionState.CLOSING
    processed = server.packets_processed
    server.receive_datagram(datagrams[0], CLIENT_ADDR, pair.net.now)  # an authentic one
    assert server.packets_processed == processed  # no more packets processed
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated, "client")), max_time=10)
    (closed,) = pair.events_of(ConnectionTerminated, "client")
    assert closed.error_code == TransportErrorCode.AEAD_LIMIT_REACHED


def test_failed_packets_of_a_batch_are_counted_and_the_rest_is_read() -> None:
    """A GRO batch (receive_datagrams, the bulk path's inline opening of 1-RTT packets
    with the current keys): each forged packet is dropped and counted against the
    integrity limit once; the authentic ones around it are processed."""
    pair = _connected(4)
    server = pair.server
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"q" * 6000)
    pair.client_endpoint.wake(pair.client)
    datagrams = [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
    assert len(datagrams) >= 3
    forged = bytearray(datagrams[1])
    forged[-1] ^= 0x01  # the AEAD tag no longer matches
    processed = server.packets_processed
    failures = server.keys.auth_failures
    batch = [datagrams[0], bytes(forged), bytes(forged), *datagrams[1:]]
    server.receive_datagrams(batch, CLIENT_ADDR, pair.net.now)
    assert server.keys.auth_failures == failures + 2
    assert server.packets_processed == processed + len(datagrams)
    assert server.state is ConnectionState.CONNECTED
