"""A datagram for an established session goes from the QUIC event straight to the
session (``WebTransportConnection.datagram_route``, :mod:`pywebtransport._link`): no
HTTP/3 or WebTransport event is made for it, on either side, however many arrive.

Counters, not times: the calls of ``WebTransportConnection.handle_event`` with a QUIC
``DatagramReceived`` per datagram echoed, over N and 4N datagrams (the general path made
one per datagram received: two per echo, one on each side). The fast path's results
equal the general path's: ``fuzz/test_fuzz_datagram_route.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from pywebtransport import WebTransportClient
from pywebtransport.protocol import WebTransportConnection
from quic import events as qe
from tests.pwt.pwt_support import TIMEOUT, client_config, echo, running

pytestmark = pytest.mark.timeout(60)

N = 25


async def test_datagrams_skip_the_event_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"datagram": 0, "other": 0}
    handle_event = WebTransportConnection.handle_event

    def counting(self: WebTransportConnection, event: qe.QuicEvent) -> None:
        calls["datagram" if type(event) is qe.DatagramReceived else "other"] += 1
        handle_event(self, event)

    monkeypatch.setattr(WebTransportConnection, "handle_event", counting)
    async with running() as h, WebTransportClient(client_config()) as client:
        h.handler = echo
        session = await client.connect(h.url())
        per_run: list[tuple[int, int]] = []
        async with asyncio.timeout(TIMEOUT):
            for count in (N, 4 * N):
                before = calls["datagram"]
                for i in range(count):
                    await session.send_datagram(b"ping %d" % i)
                    assert await session.receive_datagram() == b"ping %d" % i
                per_run.append((count, calls["datagram"] - before))
        assert session.diagnostics()["datagrams_received"] == 5 * N
    assert per_run == [(N, 0), (4 * N, 0)]  # the general path: (N, 2N), (4N, 8N)
    assert calls["other"] > 0  # the counter sees the link's other events
