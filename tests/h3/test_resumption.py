"""An HTTP/3 client connection resumed with a session ticket (RFC 9001 §4.5), over
UDP on 127.0.0.1: the ticket store lives in the client's QuicConfiguration, which
H3Client.connect passes down; the server's ticket keys in its QuicConfiguration."""

from __future__ import annotations

import pytest

from h3.aio import H3Client, H3Request, H3Response, serve_h3
from quic.aio import wall_clock
from quic.configuration import QuicConfiguration
from quic.tls.selfsigned import generate_self_signed
from quic.tls.tickets import InMemorySessionTicketStore, SessionTicketKeys

pytestmark = pytest.mark.timeout(60)


async def hello(request: H3Request) -> H3Response:
    return H3Response(200, [("x-path", request.path)], b"hello")


async def test_second_h3_connection_resumes() -> None:
    cert = generate_self_signed(wall_clock())
    server_config = QuicConfiguration(is_client=False, ticket_keys=SessionTicketKeys())
    server_config.certificate_chain = [cert.certificate]
    server_config.private_key = cert.private_key
    store = InMemorySessionTicketStore()
    resumed: list[bool] = []
    async with await serve_h3("127.0.0.1", 0, server_config, hello) as server:
        url = f"https://127.0.0.1:{server.port}/"
        for _ in range(2):
            config = QuicConfiguration(
                server_certificate_hashes=(cert.sha256,), session_ticket_store=store
            )
            async with H3Client.connect(url, configuration=config) as client:
                response = await client.get("/x")
                assert response.status == 200 and await response.read() == b"hello"
                resumed.append(client.session.connection.tls.session_resumed)
                for _ in range(100):  # the ticket follows the handshake
                    if len(store):
                        break
                    await client.session.wait_progress()
    assert resumed == [False, True]
