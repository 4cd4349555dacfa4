"""Runner case "v2" (compatible version negotiation, RFC 9368 §2.3, RFC 9369 §4) against
aioquic in both roles, and our endpoint's Version Negotiation answer to the
quic-interop-runner's readiness probe (RFC 9000 §6.1).

The client starts on v1 and offers v2; the connection must end on v2. Processes on
127.0.0.1 with OS-chosen ports, like ``test_hq_interop``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from quic.packet import PacketType, parse_header
from quic.versions import QuicVersion, is_reserved_version
from tests.interop.test_hq_interop import (
    BIG,
    SMALL,
    LineProcess,
    aioquic_server,
    our_endpoint,
    peer_client,
    run,
    sha256,
    tree,
)

__all__ = ["tree"]  # the fixture, shared with test_hq_interop

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

V1 = int(QuicVersion.VERSION_1)
V2 = int(QuicVersion.VERSION_2)


@pytest.fixture(scope="module")
def our_v2_server(tree: Path) -> Iterator[LineProcess]:
    server = LineProcess(
        our_endpoint(
            "server",
            *("--testcase", "v2", "--port", "0", "--host", "127.0.0.1"),
            *("--certs", str(tree / "certs"), "--www", str(tree / "www")),
        )
    )
    server.port()
    yield server
    assert server.stop() == 0, server.stderr()


def test_aioquic_client_starting_on_v1_is_upgraded_to_v2_by_our_server(
    tree: Path, our_v2_server: LineProcess, tmp_path: Path
) -> None:
    port = our_v2_server.port()
    urls = [f"https://127.0.0.1:{port}/{name}" for name in (SMALL, BIG)]
    versions = ["--quic-versions", f"{V1:#x},{V2:#x}", "--original-version", f"{V1:#x}"]
    result = peer_client(tmp_path, *urls, extra=versions)
    assert result["returncode"] == 0 and result["ok"], result
    assert result["versions"] == [V2]
    assert sha256(tmp_path / BIG) == sha256(tree / "www" / BIG)


def test_v1_only_client_still_served_by_our_v2_server(
    our_v2_server: LineProcess, tmp_path: Path
) -> None:
    url = f"https://127.0.0.1:{our_v2_server.port()}/{SMALL}"
    result = peer_client(tmp_path, url, extra=["--quic-versions", f"{V1:#x}"])
    assert result["returncode"] == 0 and result["ok"] and result["versions"] == [V1], result


@pytest.mark.parametrize(
    "server_versions", [f"{V1:#x},{V2:#x}", f"{V2:#x},{V1:#x}"], ids=["v1-first", "v2-first"]
)
def test_our_v2_client_ends_on_v2_with_aioquic_server(
    tree: Path, tmp_path: Path, server_versions: str
) -> None:
    pytest.importorskip("aioquic")
    server = aioquic_server(tree, "--quic-versions", server_versions)
    try:
        port, mark = server.port(), server.mark()
        url = f"https://127.0.0.1:{port}/{BIG}"
        done = run(our_endpoint("client", "--testcase", "v2", "--downloads", str(tmp_path), url))
        assert done.returncode == 0, done.stderr
        assert sha256(tmp_path / BIG) == sha256(tree / "www" / BIG)
        (connected,) = server.records("CONNECTED", 1, since=mark)
        assert connected["version"] == V2
    finally:
        server.stop()


def test_our_server_answers_the_runners_readiness_probe(our_v2_server: LineProcess) -> None:
    # quic-interop-runner checks that the server is up by sending a long header of
    # version 0x57414954 ("WAIT") with empty connection IDs, padded to 1200 bytes
    probe = bytes.fromhex("c0574149540000")
    probe += bytes(1200 - len(probe))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(probe, ("127.0.0.1", our_v2_server.port()))
        data, _ = sock.recvfrom(2048)
    vn = parse_header(data, 0, 0)
    assert vn.packet_type is PacketType.VERSION_NEGOTIATION
    assert (vn.dcid, vn.scid) == (b"", b"")
    assert V1 in vn.supported_versions and V2 in vn.supported_versions
    assert any(is_reserved_version(v) for v in vn.supported_versions)
