"""benchmarks.micro.bench_handshake: in-memory handshakes complete and are timed per side."""

from __future__ import annotations

import pytest

from benchmarks.micro import bench_handshake
from benchmarks.micro.inmem import CLIENT_ADDR, SERVER_ADDR, Side, _step
from quic.endpoint import QuicEndpoint
from quic.tls.groups import KEYS_AHEAD, RESERVE_SIZE
from tests.support.keys_ahead import record_takes


def test_handshakes_complete_and_leave_no_connection() -> None:
    for shares in ("default", "x25519"):
        result = bench_handshake.run(
            bench_handshake.parse_args(["--count", "3", "--warmup", "1", "--key-shares", shares])
        )
        assert result["count"] == 3
        assert result["client_ms_median"] > 0 and result["server_ms_median"] > 0
        assert result["server_connections_left"] == 0  # every close was delivered


def test_verify_checks_the_chain_against_the_run_root() -> None:
    args = bench_handshake.parse_args(["--count", "3", "--warmup", "1", "--verify"])
    client = bench_handshake._config(True, args)
    assert client.verify_certificates and client.cadata and client.server_name == "localhost"
    result = bench_handshake.run(args)
    assert result["count"] == 3 and result["server_connections_left"] == 0


def test_verify_refuses_a_server_the_root_did_not_issue() -> None:
    # the --verify client against the default server (self-signed): no handshake, the
    # client closes with TLS's bad_certificate/unknown_ca (a crypto error, RFC 9001 §4.8)
    server = bench_handshake.new_server(bench_handshake.parse_args([]))
    client = Side(QuicEndpoint(), CLIENT_ADDR)
    verifying = bench_handshake._config(True, bench_handshake.parse_args(["--verify"]))
    conn = client.endpoint.connect(SERVER_ADDR, verifying, 0.0)
    for _ in range(4):
        _step(client, server, 0.0, None)
        _step(server, client, 0.0, None)
    assert not client.connected
    frame = conn._close_frame
    assert frame is not None and 0x100 <= frame[1] <= 0x1FF, frame


@pytest.mark.parametrize("ahead", [False, True])
def test_keys_ahead_are_made_outside_the_handshakes(
    ahead: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--keys-ahead``: after the warm-up, every handshake finds its keys made (the
    client's X25519 and ML-KEM keys, the server's X25519 key); without it, none does."""
    ready = record_takes(monkeypatch)
    KEYS_AHEAD.clear()
    argv = ["--count", "3", "--warmup", "1", *(["--keys-ahead"] if ahead else [])]
    result = bench_handshake.run(bench_handshake.parse_args(argv))
    assert result["count"] == 3 and result["server_connections_left"] == 0
    # per handshake: the client's X25519 and ML-KEM keys, then the server's X25519 key
    assert len(ready) == 12 and ready[:3] == [False, False, False]
    assert ready[3:] == [ahead] * 9
    assert KEYS_AHEAD.size == RESERVE_SIZE  # the benchmark's room for two sides, given back
