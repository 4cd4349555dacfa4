"""H3Client and serve_h3 with requests in 0-RTT, over UDP on 127.0.0.1 (RFC 8470):
the server's handler sees ``H3Request.early_data``, and a request the client sent in
0-RTT and got 425 (Too Early) for is sent again once after the handshake (§5.2)."""

from __future__ import annotations

import pytest

from h3.aio import H3Client, H3Request, H3Response, serve_h3
from quic.aio import wall_clock
from quic.configuration import QuicConfiguration
from quic.tls.antireplay import AntiReplay
from quic.tls.selfsigned import generate_self_signed
from quic.tls.tickets import InMemorySessionTicketStore, SessionTicketKeys

pytestmark = pytest.mark.timeout(60)


async def _two_connections(always_too_early: bool) -> tuple[list[list[bool]], list[int]]:
    """Two H3Client connections (the second resumed, with 0-RTT) each sending one GET;
    the handler answers 425 to early requests (to every request with
    ``always_too_early``). Returns the early_data flags the handler saw per connection
    and the statuses the client got."""
    cert = generate_self_signed(wall_clock())
    server_config = QuicConfiguration(
        is_client=False, ticket_keys=SessionTicketKeys(), anti_replay=AntiReplay()
    )
    server_config.certificate_chain = [cert.certificate]
    server_config.private_key = cert.private_key
    store = InMemorySessionTicketStore()
    seen: list[list[bool]] = []

    async def handler(request: H3Request) -> H3Response:
        seen[-1].append(request.early_data)
        if request.early_data or always_too_early:
            return H3Response(425)
        return H3Response(200, [], b"hello")

    statuses: list[int] = []
    async with await serve_h3("127.0.0.1", 0, server_config, handler) as server:
        url = f"https://127.0.0.1:{server.port}/"
        for _ in range(2):
            seen.append([])
            config = QuicConfiguration(
                server_certificate_hashes=(cert.sha256,), session_ticket_store=store
            )
            async with H3Client.connect(url, configuration=config) as client:
                response = await client.get("/x")
                statuses.append(response.status)
                await response.read()
                for _ in range(100):  # the ticket follows the handshake
                    if len(store):
                        break
                    await client.session.wait_progress()
    return seen, statuses


async def test_too_early_is_retried_after_the_handshake() -> None:
    seen, statuses = await _two_connections(always_too_early=False)
    # first connection: one plain request; second: the GET in 0-RTT got 425, its
    # retry after the handshake is not early and succeeds
    assert seen == [[False], [True, False]]
    assert statuses == [200, 200]


async def test_too_early_is_retried_once_only() -> None:
    seen, statuses = await _two_connections(always_too_early=True)
    assert seen == [[False], [True, False]]  # one retry, not more
    assert statuses == [425, 425]
