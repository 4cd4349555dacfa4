"""Debian's ngtcp2 client (``gtlsclient``, HTTP/3) moving to our server's preferred
address (RFC 9000 §9.6): gtlsclient uses a preferred address unless given
``--no-preferred-addr``. Our HTTP/3 server (in process, :func:`h3.aio.serve_h3`) offers
one; the download must complete byte-exact, and most of it must leave the preferred
address's socket (the server moves there once the path is validated and the client's
non-probing packets arrive there, §9.6.2)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from h3.aio import serve_h3
from h3.cli import StaticFileHandler
from quic.aio import wall_clock
from quic.configuration import QuicConfiguration
from quic.tls.selfsigned import generate_self_signed
from tests.interop.test_h3_interop import (  # noqa: F401  (fixtures)
    BIG,
    require,
    run,
    sha256_file,
    tree,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


async def _download(tree: Path, tmp_path: Path, *flags: str) -> dict[int, int]:  # noqa: F811
    """gtlsclient downloads BIG; returns the server's datagrams by local address."""
    binary = require("gtlsclient", "ngtcp2-client")
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    cert = generate_self_signed(wall_clock())
    config.certificate_chain = [cert.certificate]
    config.private_key = cert.private_key
    config.preferred_address = ("127.0.0.1", 0)
    server = await serve_h3("127.0.0.1", 0, config, StaticFileHandler(tree / "www"))
    pump = server.quic_server.protocol
    sent: dict[int, int] = {0: 0, 1: 0}
    routed = pump._send_routed

    def count(out: list[tuple[bytes, Any, int, int]]) -> None:
        for item in out:
            sent[item[3]] += 1
        routed(out)

    pump._send_routed = count  # type: ignore[method-assign]
    try:
        port = server.port
        command = [binary, "127.0.0.1", str(port), f"https://127.0.0.1:{port}/{BIG}", "-q"]
        command += ["--exit-on-all-streams-close", "--download", str(tmp_path), *flags]
        done = await asyncio.to_thread(run, command)
    finally:
        await server.shutdown()
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert sha256_file(tmp_path / BIG) == sha256_file(tree / "www" / BIG)
    return sent


async def test_gtlsclient_moves_to_our_preferred_address(
    tree: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    sent = await _download(tree, tmp_path)
    print(f"server datagrams: {sent[0]} from the original address, {sent[1]} preferred")
    assert sent[1] > 1000  # the bulk of 10 MB left the preferred address's socket
    assert sent[1] > 5 * sent[0]


async def test_gtlsclient_declining_the_preferred_address_stays(
    tree: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``--no-preferred-addr``: the client never probes it, so nothing leaves it."""
    sent = await _download(tree, tmp_path, "--no-preferred-addr")
    assert sent[1] == 0 and sent[0] > 1000
