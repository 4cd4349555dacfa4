"""The client's Finished datagram carries no ACK-only Initial packet (RFC 9001 §4.9.1).

The Handshake packet holding the client's Finished discards the Initial keys on both
sides (the client's when sent, the server's when processed), so an Initial packet with
only an ACK before it is needed by nobody; without it the datagram needs no padding to
1,200 bytes (RFC 9000 §14.1 pads only datagrams that carry an Initial packet).
"""

from __future__ import annotations

from typing import Any

import pytest

from quic.conn_keys import INITIAL
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, make_pair

LONG = 0x80
TYPE_INITIAL, TYPE_HANDSHAKE = 0, 2  # QUIC v1 long-header type bits (RFC 9000 §17.2)


def _tapped(seed: int, **link: Any) -> tuple[Any, list[bytes]]:
    pair = make_pair(seed=seed, **link)
    sent: list[bytes] = []

    def tap(src: Any, dst: Any, data: bytes) -> list[tuple[Any, Any, bytes]]:
        if src == CLIENT_ADDR and dst == SERVER_ADDR:
            sent.append(data)
        return [(src, dst, data)]

    pair.net.tap = tap
    return pair, sent


def _first_type(datagram: bytes) -> int | None:
    return (datagram[0] >> 4) & 3 if datagram[0] & LONG else None


@pytest.mark.parametrize("seed", range(4))
def test_the_finished_datagram_starts_with_handshake_and_is_not_padded(seed: int) -> None:
    pair, sent = _tapped(seed)
    pair.handshake()
    types = [_first_type(d) for d in sent]
    # the ClientHello, then the Finished: the first datagram to lead with a Handshake packet
    assert types[0] == TYPE_INITIAL and len(sent[0]) >= 1200
    finished = types.index(TYPE_HANDSHAKE)
    assert TYPE_INITIAL not in types[finished:]  # no Initial packet after it, in any datagram
    assert len(sent[finished]) < 1200  # no padding: no Initial packet in it
    # both sides dropped the Initial space, nothing of it left in flight
    for conn in (pair.client, pair.server):
        assert conn.keys.spaces[INITIAL].discarded
        assert not conn.recovery.spaces[INITIAL].sent
    assert pair.client.alpn_protocol == pair.server.alpn_protocol == "test"


@pytest.mark.parametrize("seed", range(6))
def test_handshakes_complete_on_a_lossy_link(seed: int) -> None:
    # the server's Initial is never acknowledged now: a lost Finished datagram must still
    # be recovered (the server's PTO probes in Handshake; the client retransmits)
    pair, sent = _tapped(seed, loss=0.3)
    pair.handshake()
    assert pair.client.alpn_protocol == pair.server.alpn_protocol == "test"
    assert pair.server.keys.spaces[INITIAL].discarded
    types = [_first_type(d) for d in sent]
    assert TYPE_INITIAL not in types[types.index(TYPE_HANDSHAKE) :]
