"""The 1,000-session burst at the QUIC layer, in memory: work per echo, repeatable.

Theory of operation
-------------------
One client :class:`~quic.endpoint.QuicEndpoint` holds ``N`` connections to one server
endpoint; datagrams pass between them through lists on a fake clock that advances by
``STEP`` per round (each side is fed everything the other sent, its events are handled,
then its ``datagrams_to_send`` is taken, as the asyncio pump does). After the
handshakes the connections rest (their keys rest, see ``key_rest_delay``), then every
client connection opens a stream and writes 64 bytes and FIN; the server echoes them
with FIN; the client reads the reply; trailing ACKs settle. No sockets, no asyncio,
no HTTP/3: the per-datagram and per-activation work of the QUIC endpoints only (the
minimum of three datagrams per echo: the request, the reply carrying its ACK, the
client's ACK of the reply).

The burst runs inside :func:`functools.reduce`, so callgrind counts only it::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \\
        python3.11 -m benchmarks.micro.bench_burst_inmem 300

Printed: CPU per echo (both sides), datagrams per echo each way, and the connections'
``build`` calls and ``get_timer`` calls per echo. (The server admits at most 128
connections per address by default: raised here, all connections share one address.)
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import time
from typing import Any

from quic.configuration import QuicConfiguration
from quic.conn_send import SendScheduler
from quic.connection import QuicConnection
from quic.endpoint import QuicEndpoint
from quic.events import StreamDataReceived
from quic.tls.selfsigned import generate_self_signed

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
SERVER_ADDR = ("127.0.0.1", 4433)
CLIENT_ADDR = ("127.0.0.2", 50000)
STEP = 0.0005  # seconds of fake time per round
PAYLOAD = b"q" * 64


class Burst:
    """Two endpoints, ``n`` connections, the rounds that drive them."""

    def __init__(self, n: int) -> None:
        cert = generate_self_signed(NOW)
        server = QuicConfiguration(
            is_client=False, alpn_protocols=["bench"], max_connections_per_address=n + 10
        )
        server.certificate_chain = [cert.certificate]
        server.private_key = cert.private_key
        server.clock = lambda: NOW
        self.server = QuicEndpoint(server)
        self.client = QuicEndpoint()
        self.now = 1000.0
        self.conns = [
            self.client.connect(
                SERVER_ADDR,
                QuicConfiguration(
                    is_client=True,
                    alpn_protocols=["bench"],
                    server_name="localhost",
                    verify_certificates=False,
                    clock=lambda: NOW,
                ),
                self.now,
            )
            for _ in range(n)
        ]
        self.done: set[QuicConnection] = set()
        self.sent = {"client": 0, "server": 0}

    def _events(self, endpoint: QuicEndpoint, echo: bool) -> None:
        while (item := endpoint.next_event()) is not None:
            conn, event = item
            if type(event) is not StreamDataReceived:
                continue
            if event.data:
                conn.consume_stream_data(event.stream_id, len(event.data))
            if event.end_stream:
                if echo:
                    conn.send_stream_data(event.stream_id, PAYLOAD, end_stream=True)
                    endpoint.wake(conn)
                else:
                    self.done.add(conn)

    def round(self) -> None:
        out = self.client.datagrams_to_send(self.now)
        self.sent["client"] += len(out)
        for data, _ in out:
            self.server.receive_datagram(data, CLIENT_ADDR, self.now)
        self._events(self.server, True)
        out = self.server.datagrams_to_send(self.now)
        self.sent["server"] += len(out)
        for data, _ in out:
            self.client.receive_datagram(data, SERVER_ADDR, self.now)
        self._events(self.client, False)
        self.now += STEP
        for endpoint in (self.client, self.server):
            deadline = endpoint.get_timer()
            if deadline is not None and deadline <= self.now:
                endpoint.handle_timer(self.now)

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.round()

    def burst(self, *_: Any) -> int:
        for conn in self.conns:
            stream_id = conn.create_stream()
            conn.send_stream_data(stream_id, PAYLOAD, end_stream=True)
            self.client.wake(conn)
        while len(self.done) < len(self.conns):
            self.round()
        self.run_for(0.1)  # the trailing ACKs
        return 0  # for functools.reduce (see the module docstring)


def prepared(sessions: int, rest: float) -> Burst:
    """A :class:`Burst` of ``sessions`` connections, every handshake complete, rested
    ``rest`` seconds, its counters zeroed and the garbage of the handshakes collected:
    ready for :meth:`Burst.burst`."""
    bench = Burst(sessions)
    # The server admits a bounded number of new connections at a time (its half-open
    # limits): beyond a few hundred, the rest complete after their Initials' PTOs.
    for _ in range(60):  # at most 15 s of fake time
        bench.run_for(0.25)
        if all(conn.handshake_complete for conn in bench.conns):
            break
    else:
        raise SystemExit("not every handshake completed")
    bench.run_for(rest)
    bench.sent = {"client": 0, "server": 0}
    # The garbage owed from the handshakes first, as the harness's burst does (a full
    # collection of ~290,000 objects inside the burst: 220 ms at 1,000 sessions here)
    gc.collect()
    return bench


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro.bench_burst_inmem")
    parser.add_argument("sessions", type=int, nargs="?", default=300)
    parser.add_argument("--rest", type=float, default=1.5, help="idle seconds before it")
    args = parser.parse_args()
    bench = prepared(args.sessions, args.rest)
    calls = {"build": 0, "get_timer": 0}
    build, get_timer = SendScheduler.build, QuicConnection.get_timer

    def counted_build(self: SendScheduler, now: float, version: int) -> Any:
        calls["build"] += 1
        return build(self, now, version)

    def counted_get_timer(self: QuicConnection) -> float | None:
        calls["get_timer"] += 1
        return get_timer(self)

    SendScheduler.build = counted_build  # type: ignore[method-assign]
    QuicConnection.get_timer = counted_get_timer  # type: ignore[method-assign]
    cpu = time.process_time()
    try:
        functools.reduce(bench.burst, [0, 0])
    finally:
        cpu = time.process_time() - cpu
        SendScheduler.build = build  # type: ignore[method-assign]
        QuicConnection.get_timer = get_timer  # type: ignore[method-assign]
    n = len(bench.conns)
    print(
        {
            "sessions": n,
            "cpu_us_per_echo": round(cpu / n * 1e6, 1),  # both sides, counters included
            "client_datagrams_per_echo": round(bench.sent["client"] / n, 3),
            "server_datagrams_per_echo": round(bench.sent["server"] / n, 3),
            "builds_per_echo": round(calls["build"] / n, 3),
            "get_timer_per_echo": round(calls["get_timer"] / n, 3),
        }
    )


if __name__ == "__main__":
    main()
