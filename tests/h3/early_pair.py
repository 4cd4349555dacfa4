"""HTTP/3 over a resumed QUIC pair in memory on the fake clock, for the 0-RTT tests.

A first connection completes and leaves a ticket in the client's store; the second one
(from the same client endpoint) resumes with it, and requests written at once ride in
0-RTT packets. Every QUIC connection on either endpoint gets its own H3Connection; the
server answers each request (200, or what ``respond`` says) once its body ended, and
records what it saw: ``requests`` (stream id, method, early_data flag, whether the
server's handshake was complete when the application got it) and ``responses`` on the
client side (stream id → status).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from h3.connection import H3Configuration, H3Connection
from h3.events import DataReceived, H3Event, HeadersReceived, RequestStreamReset
from h3.remembered import remember_settings_in_tickets
from quic.connection import QuicConnection
from quic.events import ConnectionTerminated, QuicEvent
from quic.tls.antireplay import AntiReplay
from quic.tls.tickets import InMemorySessionTicketStore, SessionTicketKeys
from tests.support.quicpair import NOW, SERVER_ADDR, Pair, client_config, make_pair


@dataclass
class Seen:
    stream_id: int
    method: bytes
    early_data: bool
    after_handshake: bool
    body: bytearray = field(default_factory=bytearray)


class EarlyH3:
    """Both endpoints of a pair, each QUIC connection with its H3Connection."""

    def __init__(
        self, pair: Pair, store: InMemorySessionTicketStore, server_cfg: H3Configuration
    ) -> None:
        self.pair = pair
        self.store = store
        self.server_cfg = server_cfg
        self.client_cfg = H3Configuration()
        self.h3: dict[QuicConnection, H3Connection] = {}
        self.requests: list[Seen] = []
        self._open: dict[tuple[int, int], Seen] = {}
        self.responses: dict[int, int] = {}  # client: stream id -> status (latest connection)
        self.resets: dict[int, int] = {}  # client: stream id -> error code
        self.respond: Callable[[Seen], int] = lambda seen: 200
        self.client: H3Connection | None = None
        self.terminated: dict[QuicConnection, ConnectionTerminated] = {}

    def pump(self) -> bool:
        seen = False
        for side, endpoint in (
            ("client", self.pair.client_endpoint),
            ("server", self.pair.server_endpoint),
        ):
            while (item := endpoint.next_event()) is not None:
                seen = True
                conn, event = item
                self._feed(side, conn, event)
        for conn, h3 in list(self.h3.items()):
            self._drain("client" if conn.is_client else "server", h3)
        return seen

    def _feed(self, side: str, conn: QuicConnection, event: QuicEvent) -> None:
        h3 = self.h3.get(conn)
        if h3 is None:
            h3 = self.h3[conn] = H3Connection(
                conn, self.client_cfg if side == "client" else self.server_cfg
            )
        if isinstance(event, ConnectionTerminated):
            self.terminated[conn] = event
        h3.handle_event(event)
        self._drain(side, h3)

    def _drain(self, side: str, h3: H3Connection) -> None:
        while (event := h3.next_event()) is not None:
            if isinstance(event, DataReceived) and event.data:
                h3.consume_data(event.stream_id, len(event.data))
            if side == "server":
                self._on_server(h3, event)
            elif h3 is self.client:
                self._on_client(event)

    def _on_server(self, h3: H3Connection, event: H3Event) -> None:
        key = (id(h3), getattr(event, "stream_id", -1))
        if isinstance(event, HeadersReceived) and key not in self._open:
            method = dict(event.headers).get(b":method", b"")
            seen = Seen(event.stream_id, method, event.early_data, h3.quic.handshake_complete)
            self.requests.append(seen)
            self._open[key] = seen
            if event.stream_ended:
                self._answer(h3, seen)
        elif isinstance(event, DataReceived) and key in self._open:
            seen = self._open[key]
            seen.body += event.data
            if event.stream_ended:
                self._answer(h3, seen)

    def _answer(self, h3: H3Connection, seen: Seen) -> None:
        del self._open[(id(h3), seen.stream_id)]
        status = str(self.respond(seen)).encode()
        h3.send_headers(seen.stream_id, [(b":status", status)], end_stream=True)

    def _on_client(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self.responses[event.stream_id] = int(dict(event.headers)[b":status"])
        elif isinstance(event, RequestStreamReset):
            self.resets[event.stream_id] = event.error_code

    def run(self, until: Callable[[], bool], max_time: float = 10.0) -> None:
        def cond() -> bool:
            self.pump()
            return until()

        self.pair.net.run(cond, max_time=max_time)
        self.pump()

    def set_server_settings(self, cfg: H3Configuration) -> None:
        """The server's HTTP/3 configuration for new connections, its SETTINGS sealed
        into the tickets it issues and checked on resumption (RFC 9114 §7.2.4.2)."""
        self.server_cfg = cfg
        quic_config = self.pair.server_endpoint.server_configuration
        assert quic_config is not None
        remember_settings_in_tickets(quic_config, cfg)

    # -- the resumed connection ---------------------------------------------------------

    def resume(self, **client: Any) -> H3Connection:
        """Connect again with the ticket; the client's HTTP/3 starts at once (0-RTT)."""
        client.setdefault("session_ticket_store", self.store)
        client.setdefault("alpn_protocols", ["h3"])
        conn = self.pair.client_endpoint.connect(
            SERVER_ADDR, client_config(**client), self.pair.net.now
        )
        self.responses.clear()
        self.resets.clear()
        self.client = self.h3[conn] = H3Connection(conn, self.client_cfg)
        if conn.early_data_possible:
            self.client.initialize()
        return self.client

    def request(
        self, method: str, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
    ) -> int:
        h3 = self.client
        assert h3 is not None
        sid = h3.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/"),
            *(headers or []),
        ]
        if method == "CONNECT":
            fields = [(b":method", b"CONNECT"), (b":authority", b"localhost")]
        h3.send_headers(sid, fields, end_stream=not body)
        if body:
            h3.send_data(sid, body, end_stream=True)
        return sid


def early_h3(server_cfg: H3Configuration | None = None, **server_quic: Any) -> EarlyH3:
    """A pair whose first HTTP/3 connection completed and left one ticket."""
    store = InMemorySessionTicketStore()
    settings: dict[str, Any] = {
        "ticket_keys": SessionTicketKeys(),
        "anti_replay": AntiReplay(),
        "clock": lambda: NOW,
        "alpn_protocols": ["h3"],
    }
    settings.update(server_quic)
    pair = make_pair(
        client_kwargs={"session_ticket_store": store, "alpn_protocols": ["h3"]},
        server_kwargs=settings,
    )
    env = EarlyH3(pair, store, server_cfg or H3Configuration())
    env.set_server_settings(env.server_cfg)
    env.client = env.h3[pair.client] = H3Connection(pair.client, env.client_cfg)
    pair.net.after_flush = env.pump
    env.run(lambda: len(store) == 1 and pair.client.handshake_complete)
    assert len(store) == 1
    return env
