"""N idle WebTransport sessions on one in-memory server, each its own QUIC connection:
what the server retains per session (tracemalloc), with the clients dropped."""

from __future__ import annotations

import gc
import tracemalloc
import types
from typing import Any

from pywebtransport.protocol import (
    SessionRequested,
    WebTransportConfiguration,
    WebTransportConnection,
)
from quic.connection import QuicConnection
from quic.endpoint import QuicEndpoint
from tests.support.netsim import Network
from tests.support.quicpair import SERVER_ADDR, WakingEndpoint, client_config, server_config


class IdleServer:
    """One server endpoint; clients connect one after the other and open one session."""

    def __init__(self, seed: int = 0) -> None:
        self.net = Network(seed=seed)
        self.endpoint = QuicEndpoint(server_config(alpn_protocols=["h3"]))
        self.net.add(SERVER_ADDR, WakingEndpoint(self.endpoint))
        self.wt: dict[QuicConnection, WebTransportConnection] = {}
        self.cfg = WebTransportConfiguration()
        self._clients: list[tuple[QuicEndpoint, WebTransportConnection]] = []
        self.net.after_flush = self._react

    def _react(self) -> bool:
        self.pump()
        return False

    def pump(self) -> None:
        for endpoint, client in self._clients:
            while (item := endpoint.next_event()) is not None:
                client.handle_event(item[1])
            while client.next_event() is not None:
                pass
        while (item := self.endpoint.next_event()) is not None:
            conn, event = item
            wt = self.wt.get(conn)
            if wt is None:
                wt = self.wt[conn] = WebTransportConnection(conn, self.cfg)
            wt.handle_event(event)
        for wt in self.wt.values():
            while (event := wt.next_event()) is not None:
                if isinstance(event, SessionRequested):
                    wt.accept(event.session_id)

    def add_session(self, index: int) -> None:
        """Connect client ``index`` and open one session; settle until it is idle."""
        addr = (f"127.1.{index // 250}.{index % 250 + 1}", 50000)
        endpoint = QuicEndpoint()
        self.net.add(addr, WakingEndpoint(endpoint))
        conn = endpoint.connect(SERVER_ADDR, client_config(alpn_protocols=["h3"]), self.net.now)
        client = WebTransportConnection(conn, WebTransportConfiguration())
        self._clients.append((endpoint, client))
        self.net.settle(0.2)
        client.connect("localhost", "/wt")
        self.net.settle(0.5)

    def drop_clients(self) -> None:
        """Forget every client (their state is not the server's); the links go too."""
        self.net.settle(1.0)
        for endpoint, _ in self._clients:
            for addr, ep in list(self.net.endpoints.items()):
                if isinstance(ep, WakingEndpoint) and ep.endpoint is endpoint:
                    del self.net.endpoints[addr]
        self._clients.clear()
        self.net.links.clear()
        self.net._queue.clear()


def server_bytes(n: int, seed: int = 0) -> tuple[int, Any]:
    """Bytes the server side retains for ``n`` idle sessions (and the snapshot)."""
    gc.collect()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(8)
    try:
        base = tracemalloc.take_snapshot()
        before = tracemalloc.get_traced_memory()[0]
        server = IdleServer(seed)
        for i in range(n):
            server.add_session(i)
        server.drop_clients()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        snap = tracemalloc.take_snapshot()
        assert len(server.wt) == n
        established = sum(len(wt._sessions) for wt in server.wt.values())
        assert established == n, established
        return used, (snap, base, server)
    finally:
        if started:
            tracemalloc.stop()


#: What every reachability walk stops at: classes, modules and code are shared by all.
OPAQUE: tuple[type, ...] = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
)


def reachable(root: object, stop: tuple[type, ...]) -> list[object]:
    """Objects reachable from ``root`` (through gc referents), not entering ``stop`` types
    (shared state: the endpoint, configurations, classes, modules, functions)."""
    seen: set[int] = set()
    out: list[object] = []
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, stop):
            continue
        seen.add(id(obj))
        out.append(obj)
        stack.extend(gc.get_referents(obj))
    return out
