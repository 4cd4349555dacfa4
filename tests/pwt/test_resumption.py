"""A WebTransport client connection resumed with a session ticket (RFC 9001 §4.5):
ClientConfig.session_ticket_store and ServerConfig.ticket_keys pass down to QUIC."""

from __future__ import annotations

import asyncio

import pytest

from h3.remembered import decode_remembered, local_settings
from pywebtransport import WebTransportClient
from pywebtransport.config import ServerConfig
from pywebtransport.protocol.connection import h3_configuration
from quic.tls.tickets import InMemorySessionTicketStore, SessionTicketKeys
from tests.pwt.pwt_support import client_config, echo, running

pytestmark = pytest.mark.timeout(60)


async def test_second_webtransport_connection_resumes() -> None:
    store = InMemorySessionTicketStore()
    resumed: list[bool] = []
    async with running(ticket_keys=SessionTicketKeys()) as h:
        h.handler = echo
        for _ in range(2):
            config = client_config("draft16", session_ticket_store=store)
            async with WebTransportClient(config) as client:
                session = await client.connect(url=h.url("/echo"))
                stream = await session.create_bidirectional_stream()
                await stream.write(b"ping")
                await stream.close()
                assert await stream.read_all() == b"ping"
                resumed.append(session.link.quic_session.connection.tls.session_resumed)
                for _ in range(100):  # the ticket follows the handshake
                    if len(store):
                        break
                    await asyncio.sleep(0.01)
                await session.close()
    assert resumed == [False, True]
    assert len(store) == 1
    # the ticket carries the server's HTTP/3 SETTINGS (RFC 9114 §7.2.4.2): the WebTransport
    # ones included, so a 0-RTT client would use them and the server can check them
    ((ticket,),) = store._tickets.values()
    remembered = decode_remembered(ticket.application_data)
    server = h3_configuration(ServerConfig(certfile="unused").webtransport_configuration(), False)
    assert remembered == local_settings(server)
