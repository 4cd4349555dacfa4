"""A lean in-memory HTTP/3 client/server pair on a fake clock, for scale tests.

Unlike the pair in ``test_connection.py`` it keeps no history: each HTTP/3 event is
handed to ``handler(side, event)`` (if set) and dropped, the payload of every
``DataReceived`` / ``WebTransportStreamDataReceived`` is consumed (credit goes back to
the peer) unless ``consume`` is False, and :meth:`H3LeanPair.pump` drains both
H3Connections completely — so what the connections hold afterwards is what they
retain, not what the test harness kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from h3.connection import H3Configuration, H3Connection
from h3.events import DataReceived, H3Event, SettingsReceived, WebTransportStreamDataReceived
from quic.events import ConnectionTerminated, QuicEvent
from tests.support.quicpair import Pair, make_pair

Handler = Callable[[str, H3Event], None]

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]


class H3LeanPair:
    def __init__(self, pair: Pair, client_cfg: H3Configuration, server_cfg: H3Configuration):
        self.pair = pair
        self.client = H3Connection(pair.client, client_cfg)
        self.server_cfg = server_cfg
        self._server: H3Connection | None = None
        self.handler: Handler | None = None
        self.consume = True
        self.settings = {"client": False, "server": False}
        self.terminated: dict[str, ConnectionTerminated | None] = {"client": None, "server": None}
        self.events_handled = 0
        # hooks: see every QUIC event before the H3Connection does; False drops it
        self.server_quic_filter: Callable[[QuicEvent], bool] | None = None
        self.client_quic_filter: Callable[[QuicEvent], bool] | None = None

    @property
    def server(self) -> H3Connection:
        assert self._server is not None
        return self._server

    def h3(self, side: str) -> H3Connection:
        return self.client if side == "client" else self.server

    def pump(self) -> bool:
        pair = self.pair
        seen = False
        while (item := pair.client_endpoint.next_event()) is not None:
            seen = True
            if self.client_quic_filter is not None and not self.client_quic_filter(item[1]):
                continue
            self._feed("client", self.client, item[1])
        while (item := pair.server_endpoint.next_event()) is not None:
            seen = True
            if self._server is None:
                self._server = H3Connection(item[0], self.server_cfg)
            if self.server_quic_filter is not None and not self.server_quic_filter(item[1]):
                continue
            self._feed("server", self._server, item[1])
        # events queued by API calls (e.g. send_goaway) rather than by handle_event
        self._drain("client", self.client)
        if self._server is not None:
            self._drain("server", self._server)
        return seen

    def _feed(self, side: str, conn: H3Connection, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated[side] = event
        conn.handle_event(event)
        self._drain(side, conn)

    def _drain(self, side: str, conn: H3Connection) -> None:
        handler = self.handler
        while (h3_event := conn.next_event()) is not None:
            self.events_handled += 1
            if isinstance(h3_event, SettingsReceived):
                self.settings[side] = True
            if (
                self.consume
                and isinstance(h3_event, (DataReceived, WebTransportStreamDataReceived))
                and h3_event.data
            ):
                conn.consume_data(h3_event.stream_id, len(h3_event.data))
            if handler is not None:
                handler(side, h3_event)

    def run(self, until: Callable[[], bool], max_time: float = 30.0) -> None:
        def cond() -> bool:
            self.pump()
            return until()

        self.pair.net.run(cond, max_time=max_time)

    def settle(self, duration: float = 0.2) -> None:
        self.pair.net.settle(duration)
        self.pump()

    def close_code(self, side: str = "client") -> int | None:
        """Error code of the close the ``side`` endpoint saw, once it terminated."""
        term = self.terminated[side]
        return None if term is None else term.error_code


def lean_pair(
    client_cfg: H3Configuration | None = None,
    server_cfg: H3Configuration | None = None,
    client_quic: dict[str, Any] | None = None,
    server_quic: dict[str, Any] | None = None,
    *,
    wait_settings: bool = True,
    **link: Any,
) -> H3LeanPair:
    pair = make_pair(
        client_kwargs={"alpn_protocols": ["h3"], **(client_quic or {})},
        server_kwargs={"alpn_protocols": ["h3"], **(server_quic or {})},
        **link,
    )
    p = H3LeanPair(pair, client_cfg or H3Configuration(), server_cfg or H3Configuration())
    pair.net.after_flush = p.pump
    if wait_settings:
        p.run(lambda: p.settings["client"] and p.settings["server"])
    return p


def idle_sizes(h3: H3Connection) -> dict[str, int]:
    """What a connection holds with no request in flight: the peer's three critical
    streams, nothing else (closed IDs fold into at most one range per space)."""
    sizes = h3.state_sizes()
    assert sizes["closed_ranges"] <= 4, sizes
    return {**sizes, "closed_ranges": 0}


IDLE = {
    "events": 0,
    "streams": 3,
    "closed_ranges": 0,
    "head_requests": 0,
    "blocked_bytes": 0,
    "qpack_blocked_streams": 0,
    "qpack_queued_sections": 0,
    "early_streams": 0,
    "early_held_requests": 0,
    "early_held_bytes": 0,
    "early_ready": 0,
}
