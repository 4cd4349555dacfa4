"""In-memory WebTransport client/server pairs on a fake clock (over tests.support)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from h3.events import SettingsReceived
from pywebtransport.protocol import (
    Draft,
    SessionEstablished,
    SessionRequested,
    StreamData,
    WebTransportConfiguration,
    WebTransportConnection,
    WebTransportEvent,
)
from quic.events import QuicEvent
from tests.support.quicpair import Pair, make_pair


class WtPair:
    def __init__(
        self,
        pair: Pair,
        client_cfg: WebTransportConfiguration,
        server_cfg: WebTransportConfiguration,
    ) -> None:
        self.pair = pair
        self.client = WebTransportConnection(pair.client, client_cfg)
        self.server_cfg = server_cfg
        self._server: WebTransportConnection | None = None
        self.events: dict[str, list[WebTransportEvent]] = {"client": [], "server": []}
        self.quic_events: dict[str, list[QuicEvent]] = {"client": [], "server": []}
        self.settings_seen = {"client": False, "server": False}
        # hook: called with each raw QUIC event before the server handles it
        self.server_filter: Callable[[QuicEvent], bool] | None = None
        # the test application consumes the stream data it records (credit goes back,
        # RFC 9000 §4.2, draft-16 §5.4); False on a side: a reader that never reads
        self.consume = {"client": True, "server": True}
        self._consumed = False
        # False: keep no QUIC events and no StreamData payloads (bulk and scale tests
        # measure memory); ``received`` counts stream bytes either way
        self.record = True
        self.received: dict[str, dict[int, int]] = {"client": {}, "server": {}}
        self.finished: dict[str, set[int]] = {"client": set(), "server": set()}  # FIN seen

    @property
    def server(self) -> WebTransportConnection:
        assert self._server is not None
        return self._server

    def react(self) -> bool:
        """Network hook: handle what the last flush produced (see Network.after_flush);
        True when the application consumed data (credit to send)."""
        self._consumed = False
        self.pump()
        return self._consumed

    def pump(self) -> bool:
        pair = self.pair
        seen = False
        while (item := pair.client_endpoint.next_event()) is not None:
            seen = True
            if self.record:
                self.quic_events["client"].append(item[1])
            self.client.handle_event(item[1])
        while (item := pair.server_endpoint.next_event()) is not None:
            seen = True
            if self._server is None:
                self._server = WebTransportConnection(item[0], self.server_cfg)
            if self.record:
                self.quic_events["server"].append(item[1])
            if self.server_filter is not None and not self.server_filter(item[1]):
                continue
            self._server.handle_event(item[1])
        for side, conn in (("client", self.client), ("server", self._server)):
            if conn is None:
                continue
            received = self.received[side]
            while (event := conn.next_event()) is not None:
                if isinstance(event, StreamData):
                    received[event.stream_id] = received.get(event.stream_id, 0) + len(event.data)
                    if self.consume[side] and event.data:
                        conn.consume_stream_data(event.stream_id, len(event.data))
                        self._consumed = True
                    if event.fin:
                        self.finished[side].add(event.stream_id)
                    if not self.record:
                        continue
                self.events[side].append(event)
            if conn.peer_settings is not None:
                self.settings_seen[side] = True
        return seen

    def run(self, until: Callable[[], bool] | None = None, max_time: float = 10.0) -> None:
        def cond() -> bool:
            self.pump()
            return until() if until is not None else False

        self.pair.net.run(cond if until is not None else None, max_time=max_time)
        self.pump()

    def settle(self, duration: float = 0.5) -> None:
        """Run the network for ``duration`` seconds of fake time."""
        net = self.pair.net
        deadline = net.now + duration
        while True:
            self.pump()
            net._flush()
            times = [t for t in (net._next_timer(), net._queue[0][0] if net._queue else None)]
            due = [t for t in times if t is not None]
            if not due or min(due) > deadline:
                break
            net.step()
        net.now = max(net.now, deadline)
        self.pump()

    def of(self, kind: type, side: str = "server") -> list[Any]:
        return [e for e in self.events[side] if isinstance(e, kind)]

    def clear(self) -> None:
        self.events = {"client": [], "server": []}


def wt_pair(
    client_cfg: WebTransportConfiguration | None = None,
    server_cfg: WebTransportConfiguration | None = None,
    *,
    wait_settings: bool = True,
    client_quic: dict[str, Any] | None = None,
    server_quic: dict[str, Any] | None = None,
    **link: Any,
) -> WtPair:
    """A connected pair; ``client_quic`` / ``server_quic`` are QuicConfiguration
    fields of each side, ``link`` the netsim Link fields."""
    pair = make_pair(
        client_kwargs={"alpn_protocols": ["h3"], **(client_quic or {})},
        server_kwargs={"alpn_protocols": ["h3"], **(server_quic or {})},
        **link,
    )
    p = WtPair(
        pair, client_cfg or WebTransportConfiguration(), server_cfg or WebTransportConfiguration()
    )
    pair.net.after_flush = p.react
    if wait_settings:
        p.run(lambda: p.settings_seen["client"] and p.settings_seen["server"])
    return p


def config(*drafts: Draft, **kwargs: Any) -> WebTransportConfiguration:
    return WebTransportConfiguration(drafts=drafts or tuple(Draft), **kwargs)


def establish(
    p: WtPair,
    path: str = "/wt",
    protocols: tuple[str, ...] = (),
    accept_protocol: str | None = None,
) -> int:
    """Client connects, server accepts; returns the session ID."""
    sid = p.client.connect("localhost", path, protocols=protocols)
    p.run(lambda: any(e.session_id == sid for e in p.of(SessionRequested)))
    p.server.accept(sid, protocol=accept_protocol)
    p.run(lambda: any(e.session_id == sid for e in p.of(SessionEstablished, "client")))
    return sid


__all__ = ["SettingsReceived", "WtPair", "config", "establish", "wt_pair"]
