"""Self-test of the aioquic interop peer: its client scenarios against its own server.

Both sides run as separate processes on 127.0.0.1 (the server binds port 0 and reports
the port it got). This proves the peer script before our own stack is tested against it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import PeerServer, make_self_signed_cert, run_peer_client

pytest.importorskip("aioquic")

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

ALPN = "pwt-interop"
VERSION_1 = 0x00000001
VERSION_2 = 0x6B3343CF  # RFC 9369 §3.1
NO_APPLICATION_PROTOCOL = 0x100 + 120  # RFC 9001 §4.8: CRYPTO_ERROR carrying TLS alert 120


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed_cert(tmp_path_factory.mktemp("peer-certs"))


def _server(certs: tuple[Path, Path], mode: str) -> Iterator[PeerServer]:
    with PeerServer(certs[0], certs[1], ALPN, mode=mode) as server:
        yield server


@pytest.fixture(scope="module")
def echo_server(certs: tuple[Path, Path]) -> Iterator[PeerServer]:
    yield from _server(certs, "echo")


@pytest.fixture(scope="module")
def sink_server(certs: tuple[Path, Path]) -> Iterator[PeerServer]:
    yield from _server(certs, "sink")


@pytest.fixture(scope="module")
def source_server(certs: tuple[Path, Path]) -> Iterator[PeerServer]:
    yield from _server(certs, "source")


def _ok(result: dict[str, object]) -> dict[str, object]:
    assert result["returncode"] == 0 and result["ok"] is True, result
    return result


def test_handshake_reports_negotiated_parameters(echo_server: PeerServer) -> None:
    result = _ok(run_peer_client(echo_server.port, ALPN, "handshake"))
    assert result["alpn"] == ALPN
    assert result["version"] == VERSION_1
    assert result["cipher_suite"] in {
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    }
    assert result["session_resumed"] is False
    closed = echo_server.wait_closed(peer_port=int(str(result["local_port"])))
    assert closed["error_code"] == 0 and closed["commanded"] is False


def test_handshake_quic_v2(echo_server: PeerServer) -> None:
    result = _ok(run_peer_client(echo_server.port, ALPN, "handshake", "--quic-version", "2"))
    assert result["version"] == VERSION_2


def test_handshake_chacha20_and_keylog(echo_server: PeerServer, tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    result = _ok(
        run_peer_client(
            echo_server.port,
            ALPN,
            "handshake",
            "--cipher-suites",
            "0x1303",
            "--keylog",
            str(keylog),
        )
    )
    assert result["cipher_suite"] == "TLS_CHACHA20_POLY1305_SHA256"
    labels = {line.split()[0] for line in keylog.read_text().splitlines() if line}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"} <= labels


def test_alpn_mismatch_fails_with_crypto_error(echo_server: PeerServer) -> None:
    result = run_peer_client(echo_server.port, "not-" + ALPN, "handshake", timeout=5.0)
    assert result["ok"] is False and result["returncode"] == 3
    assert result["terminated"]["error_code"] == NO_APPLICATION_PROTOCOL
    closed = echo_server.wait_closed(peer_port=int(str(result["local_port"])))
    assert closed["error_code"] == NO_APPLICATION_PROTOCOL
    assert closed["frame_type"] is not None  # a transport CONNECTION_CLOSE (0x1c)


@pytest.mark.parametrize("packet_size", [1200, 1452])
def test_bulk_echo(echo_server: PeerServer, packet_size: int) -> None:
    result = _ok(
        run_peer_client(
            echo_server.port,
            ALPN,
            "bulk",
            "--size",
            "400000",
            "--max-datagram-size",
            str(packet_size),
        )
    )
    assert result["received_bytes"] == 400_000
    assert result["sent_sha256"] == result["received_sha256"]


def test_hundred_concurrent_streams(echo_server: PeerServer) -> None:
    result = _ok(
        run_peer_client(echo_server.port, ALPN, "streams", "--count", "100", "--size", "600")
    )
    assert result["count"] == 100 and result["mismatched"] == []


def test_datagram_echo(echo_server: PeerServer) -> None:
    result = _ok(run_peer_client(echo_server.port, ALPN, "datagrams", "--count", "50"))
    assert result["sent"] == result["received"] == 50
    assert result["unexpected"] == 0


def test_client_close_is_recorded_by_server(echo_server: PeerServer) -> None:
    result = _ok(
        run_peer_client(echo_server.port, ALPN, "close", "--code", "42", "--reason", "bye now")
    )
    closed = echo_server.wait_closed(peer_port=int(str(result["local_port"])))
    assert closed == {
        "error_code": 42,
        "reason": "bye now",
        "frame_type": None,  # application CONNECTION_CLOSE (0x1d)
        "commanded": False,
        "peer": ["127.0.0.1", result["local_port"]],
    }


def test_close_command_closes_from_server(echo_server: PeerServer) -> None:
    result = _ok(
        run_peer_client(echo_server.port, ALPN, "remote-close", "--code", "7", "--reason", "done")
    )
    assert (result["error_code"], result["reason"], result["frame_type"]) == (7, "done", None)
    closed = echo_server.wait_closed(peer_port=int(str(result["local_port"])))
    assert (closed["error_code"], closed["reason"], closed["commanded"]) == (7, "done", True)


def test_download_from_source(source_server: PeerServer) -> None:
    size = 600_000
    result = _ok(run_peer_client(source_server.port, ALPN, "download", "--size", str(size)))
    expected = hashlib.shake_128(b"SEND %d" % size).digest(size)
    assert result["received_bytes"] == size
    assert result["received_sha256"] == hashlib.sha256(expected).hexdigest()


def test_upload_to_sink(sink_server: PeerServer) -> None:
    result = _ok(run_peer_client(sink_server.port, ALPN, "upload", "--size", "600000"))
    assert result["server_sha256"] == result["sent_sha256"]
    assert len(str(result["server_sha256"])) == 64


def test_sink_mode_echoes_datagrams_too(sink_server: PeerServer) -> None:
    result = _ok(run_peer_client(sink_server.port, ALPN, "datagrams", "--count", "10"))
    assert result["received"] == 10
