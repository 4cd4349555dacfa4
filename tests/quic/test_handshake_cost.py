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
