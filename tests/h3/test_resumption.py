"""An HTTP/3 client connection resumed with a session ticket (RFC 9001 §4.5), over
UDP on 127.0.0.1: the ticket store lives in the client's QuicConfiguration, which
H3Client.connect passes down; the server's ticket keys in its QuicConfiguration."""

from __future__ import annotations

from typing import Any

import pytest

from h3.aio import H3Client, H3Request, H3Response, serve_h3
from quic.aio import wall_clock
from quic.configuration import QuicConfiguration
from quic.qlog import QlogMemorySink
from quic.tls.antireplay import AntiReplay
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


@pytest.mark.parametrize(("method", "early"), [("GET", True), ("POST", False)])
async def test_second_h3_connection_sends_safe_requests_in_zero_rtt(
    method: str, early: bool
) -> None:
    """With a ticket that allows early data and a server with an anti-replay memory, the
    second H3Client connection sends its SETTINGS in 0-RTT packets (RFC 9001 §4.6.1,
    RFC 9114 §7.2.4.2) and the server accepts them; a GET rides in 0-RTT too, a POST
    (not safe, replayable: RFC 9114 §10.9) waits for the handshake."""
    cert = generate_self_signed(wall_clock())
    server_config = QuicConfiguration(
        is_client=False, ticket_keys=SessionTicketKeys(), anti_replay=AntiReplay()
    )
    server_config.certificate_chain = [cert.certificate]
    server_config.private_key = cert.private_key
    store = InMemorySessionTicketStore()
    zero_rtt: list[list[dict[str, object]]] = []  # frames of the 0-RTT packets, per connection
    accepted: list[bool] = []
    async with await serve_h3("127.0.0.1", 0, server_config, hello) as server:
        url = f"https://127.0.0.1:{server.port}/"
        for _ in range(2):
            sink = QlogMemorySink()

            def factory(is_client: bool, odcid: bytes, sink: QlogMemorySink = sink) -> Any:
                return sink

            config = QuicConfiguration(
                server_certificate_hashes=(cert.sha256,),
                session_ticket_store=store,
                qlog_factory=factory,
            )
            async with H3Client.connect(url, configuration=config) as client:
                response = await client.request(method, "/early")
                assert response.status == 200 and await response.read() == b"hello"
                accepted.append(client.session.connection.tls.early_data_accepted)
                for _ in range(100):  # the ticket follows the handshake
                    if len(store):
                        break
                    await client.session.wait_progress()
            zero_rtt.append(
                [
                    frame
                    for e in sink.events
                    if e["name"] == "transport:packet_sent"
                    and e["data"]["header"]["packet_type"] == "0RTT"
                    for frame in e["data"]["frames"]
                ]
            )
    assert accepted == [False, True]
    assert not zero_rtt[0] and zero_rtt[1]  # the second connection's SETTINGS at least
    request_stream = [f for f in zero_rtt[1] if f.get("stream_id") == 0]
    assert bool(request_stream) is early
