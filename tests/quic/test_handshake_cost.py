"""Structural claims about the cost of a full handshake, counted (no timings).

Each handshake is an independent in-memory pair on the fake clock (tests/support/quicpair.py).
"""

from __future__ import annotations

from typing import Any

import pytest

import quic.tls.server as tls_server
from quic.tparams import TransportParameters
from tests.support.quicpair import make_pair


def _handshakes(n: int) -> None:
    for seed in range(n):
        pair = make_pair(seed=seed)
        pair.handshake()
        assert pair.client.alpn_protocol == pair.server.alpn_protocol == "test"


def test_the_server_decodes_the_clients_transport_parameters_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # version negotiation (RFC 9368 §2.3) reads them inside TLS; the checks of
    # RFC 9000 §7.3 reuse that decode instead of parsing the same bytes again
    calls: list[bool] = []
    real = TransportParameters.decode.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, raw: bytes, *, is_client_sender: bool) -> TransportParameters:
        calls.append(is_client_sender)
        result: TransportParameters = real(cls, raw, is_client_sender=is_client_sender)
        return result

    monkeypatch.setattr(TransportParameters, "decode", classmethod(counting))
    _handshakes(3)
    # per handshake: the server decodes the client's once, the client the server's once
    assert calls.count(True) == 3
    assert calls.count(False) == 3


def test_the_servers_certificate_chain_is_encoded_once_for_many_handshakes() -> None:
    tls_server._chain_der.cache_clear()
    _handshakes(4)
    info = tls_server._chain_der.cache_info()
    assert (info.misses, info.hits) == (1, 3)


def test_the_client_issues_connection_ids_after_confirmation_not_with_its_finished() -> None:
    # the client's Finished flight carries no NEW_CONNECTION_ID (RFC 9000 §5.1.1 sets no
    # time; no migration before confirmation, §9); HANDSHAKE_DONE (RFC 9001 §4.1.2)
    # releases them, and the server then holds as many as its limit allows
    pair = make_pair()
    pair.run(lambda: bool(pair.server_endpoint.connections) and pair.server.handshake_complete)
    assert not pair.client.handshake.confirmed
    assert pair.server.cids.unused_peer_cids() == 0
    assert len(pair.client.cids.local) == 1  # only the handshake's, sequence 0
    pair.run(lambda: pair.client.handshake.confirmed)
    pair.run(max_time=1.0)
    limit = pair.server.configuration.active_connection_id_limit
    assert pair.server.cids.unused_peer_cids() == limit - 1
    assert pair.client.cids.unused_peer_cids() == limit - 1  # the server's, as before
