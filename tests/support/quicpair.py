"""In-memory QUIC client/server pairs on a fake clock (see netsim)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from quic.configuration import QuicConfiguration
from quic.connection import QuicConnection
from quic.endpoint import QuicEndpoint
from quic.events import QuicEvent, StreamDataReceived
from quic.tls.selfsigned import SelfSignedCertificate, generate_self_signed
from tests.support.netsim import Network

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
SERVER_ADDR = ("127.0.0.1", 4433)
CLIENT_ADDR = ("127.0.0.2", 50000)


@lru_cache(maxsize=1)
def certificate() -> SelfSignedCertificate:
    return generate_self_signed(NOW)


def server_config(**kwargs: Any) -> QuicConfiguration:
    cert = certificate()
    kwargs.setdefault("alpn_protocols", ["test"])
    cfg = QuicConfiguration(is_client=False, **kwargs)
    cfg.certificate_chain = [cert.certificate]
    cfg.private_key = cert.private_key
    return cfg


def client_config(**kwargs: Any) -> QuicConfiguration:
    kwargs.setdefault("alpn_protocols", ["test"])
    kwargs.setdefault("server_certificate_hashes", (certificate().sha256,))
    return QuicConfiguration(is_client=True, server_name="localhost", clock=lambda: NOW, **kwargs)


@dataclass
class Pair:
    net: Network
    client_endpoint: QuicEndpoint
    server_endpoint: QuicEndpoint
    client: QuicConnection
    client_events: list[QuicEvent] = field(default_factory=list)
    server_events: list[QuicEvent] = field(default_factory=list)
    # stream data received, by side: {stream_id: bytearray}, and the ids that saw FIN
    data: dict[str, dict[int, bytearray]] = field(
        default_factory=lambda: {"client": {}, "server": {}}
    )
    fin: dict[str, set[int]] = field(default_factory=lambda: {"client": set(), "server": set()})

    _server: QuicConnection | None = None
    consume: bool = True  # False: the test application never consumes (slow reader)
    _consumed: bool = False

    @property
    def server(self) -> QuicConnection:
        if self._server is None:
            self._server = self.server_endpoint.connections[0]
        return self._server

    def pump(self) -> None:
        while (item := self.client_endpoint.next_event()) is not None:
            self._record("client", item[1])
            self._consume(item[0], item[1])
        while (item := self.server_endpoint.next_event()) is not None:
            if self._server is None:
                self._server = item[0]
            self._record("server", item[1])
            self._consume(item[0], item[1])

    def _consume(self, conn: QuicConnection, event: QuicEvent) -> None:
        # the test application consumes what it records: credit goes back (RFC 9000 §4.2)
        if self.consume and isinstance(event, StreamDataReceived) and event.data:
            conn.consume_stream_data(event.stream_id, len(event.data))
            self._consumed = True

    def _react(self) -> bool:
        self._consumed = False
        self.pump()
        return self._consumed

    def _record(self, side: str, event: QuicEvent) -> None:
        (self.client_events if side == "client" else self.server_events).append(event)
        if isinstance(event, StreamDataReceived):
            self.data[side].setdefault(event.stream_id, bytearray()).extend(event.data)
            if event.end_stream:
                self.fin[side].add(event.stream_id)

    def stream_done(self, stream_id: int, side: str = "server") -> bool:
        return stream_id in self.fin[side]

    def run(self, until: Callable[[], bool] | None = None, max_time: float = 30.0) -> None:
        def cond() -> bool:
            self.pump()
            return until() if until is not None else False

        self.net.run(until=cond if until is not None else None, max_time=max_time)
        self.pump()

    def events_of(self, kind: type, side: str = "server") -> list[Any]:
        events = self.server_events if side == "server" else self.client_events
        return [e for e in events if isinstance(e, kind)]

    def handshake(self) -> None:
        self.run(
            lambda: (
                self.client.handshake_complete
                and bool(self.server_endpoint.connections)
                and self.server.handshake_complete
            ),
            max_time=10,
        )


class WakingEndpoint:
    """What the simulated network drives for a :class:`QuicEndpoint`.

    The test application acts on connections directly (``pair.client.send_stream_data``)
    instead of through a driver that calls :meth:`QuicEndpoint.wake`, so every
    connection is woken before each send (a handful of connections: cheap).

    With ``ecn`` the datagrams carry their ECN codepoint (an ECN-capable socket); else
    the network sees Not-ECT, as from a socket that cannot set it.
    """

    def __init__(self, endpoint: QuicEndpoint, ecn: bool = False) -> None:
        self.endpoint = endpoint
        self.ecn = ecn

    def receive_datagram(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        self.endpoint.receive_datagram(data, addr, now, ecn)

    def datagrams_to_send(
        self, now: float
    ) -> list[tuple[bytes, Any]] | list[tuple[bytes, Any, int]]:
        endpoint = self.endpoint
        for conn in endpoint.connections:
            endpoint.wake(conn)
        if self.ecn:
            return endpoint.marked_datagrams_to_send(now)
        return endpoint.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        return self.endpoint.get_timer()

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)


def make_pair(
    seed: int = 0,
    client_kwargs: dict[str, Any] | None = None,
    server_kwargs: dict[str, Any] | None = None,
    ecn: bool = False,
    **link: Any,
) -> Pair:
    """A client and a server endpoint on a simulated network; ``link`` sets attributes
    of both links; ``ecn``: both sockets send the ECN codepoints (see WakingEndpoint)."""
    net = Network(seed=seed)
    server = QuicEndpoint(server_config(**(server_kwargs or {})))
    client = QuicEndpoint()
    net.add(SERVER_ADDR, WakingEndpoint(server, ecn))
    net.add(CLIENT_ADDR, WakingEndpoint(client, ecn))
    for src, dst in ((CLIENT_ADDR, SERVER_ADDR), (SERVER_ADDR, CLIENT_ADDR)):
        lk = net.link(src, dst)
        for key, value in link.items():
            setattr(lk, key, value)
    conn = client.connect(SERVER_ADDR, client_config(**(client_kwargs or {})), net.now)
    pair = Pair(net, client, server, conn)
    net.after_flush = pair._react
    return pair
