"""aioquic 1.7.2's HTTP/3 client sends a POST and a GET in 0-RTT to our HTTP/3 server
(serve_h3) on 127.0.0.1 (RFC 8470, RFC 9114 §10.9): under the default policy the POST
is answered 425 (Too Early) without reaching the handler, the GET reaches it marked as
early data, and the POST sent again after the handshake is served; under "defer" both
reach the handler after the handshake. Nothing from aioquic is imported here: the
client is a process (tests/peers/aioquic_h3_early.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from h3.aio import H3Request, H3Response, serve_h3
from h3.connection import H3Configuration
from quic.configuration import QuicConfiguration
from quic.tls.antireplay import AntiReplay
from quic.tls.tickets import SessionTicketKeys
from tests.peers import make_self_signed_cert

pytest.importorskip("aioquic")

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

PEER = Path(__file__).parents[1] / "peers" / "aioquic_h3_early.py"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed_cert(tmp_path_factory.mktemp("early-certs"))


async def _run(certs: tuple[Path, Path], policy: str) -> tuple[dict[str, Any], list[Any]]:
    seen: list[tuple[str, bool]] = []

    async def handler(request: H3Request) -> H3Response:
        body = await request.read()
        seen.append((request.method, request.early_data))
        return H3Response(200, [("x-early", "1" if request.early_data else "0")], body)

    config = QuicConfiguration(
        is_client=False, ticket_keys=SessionTicketKeys(), anti_replay=AntiReplay()
    )
    config.load_cert_chain(str(certs[0]), str(certs[1]))
    h3_config = H3Configuration(early_data_policy=policy)  # type: ignore[arg-type]
    async with await serve_h3(
        "127.0.0.1", 0, config, handler, h3_configuration=h3_config
    ) as server:
        command = [sys.executable, str(PEER), "--port", str(server.port)]
        process = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60
        )
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["ok"], (result, process.stderr)
    return result, seen


async def test_aioquic_post_in_zero_rtt_gets_too_early(certs: tuple[Path, Path]) -> None:
    result, seen = await _run(certs, "reject-unsafe")
    assert result["first"] == [200, "0"]
    assert result["early_data_accepted"] is True
    assert result["zero_rtt"] == [[425, ""], [200, "1"]]
    assert result["retried"] == [200, "0"]
    assert seen == [("GET", False), ("GET", True), ("POST", False)]


async def test_aioquic_requests_in_zero_rtt_deferred(certs: tuple[Path, Path]) -> None:
    result, seen = await _run(certs, "defer")
    assert result["early_data_accepted"] is True
    assert result["zero_rtt"] == [[200, "1"], [200, "1"]]
    assert "retried" not in result
    assert sorted(seen) == [("GET", False), ("GET", True), ("POST", True)]
