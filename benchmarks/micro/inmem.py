"""An in-memory bulk transfer between two Sans-I/O endpoints, timed per side.

Theory of operation
-------------------
No sockets and no event loop: a client and a server :class:`~quic.endpoint.QuicEndpoint`
exchange datagrams through two lists on a fake clock that advances by ``step`` seconds
per round. Each round, every datagram queued towards a side is fed to it, then that
side's ``datagrams_to_send`` is taken, so each side batches its receive processing
before transmitting, as the asyncio driver does. CPU time (``process_time``) is accumulated
separately for the work done by the sender and by the receiver of the bulk stream, so
the result is the protocol CPU cost per byte on each side, without the I/O.

With ``--ecn`` the datagrams carry the ECN codepoint their sender set (as the asyncio
pump does on Linux, where loopback keeps it): ECN validation succeeds and the sender
marks and tracks every packet, as on the real path. With ``--gro`` what one step sent
is fed with one :meth:`~quic.endpoint.QuicEndpoint.receive_datagrams` call, as the
pump feeds the datagrams of one GRO read; else one ``receive_datagram`` call each.

``python -m benchmarks.micro.inmem [--mb 20] [--ecn] [--gro] [--profile sender|receiver]``
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import pstats
import time
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any

from quic.configuration import QuicConfiguration
from quic.endpoint import QuicEndpoint
from quic.events import HandshakeCompleted, StreamDataReceived
from quic.tls.selfsigned import generate_self_signed

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
SERVER_ADDR = ("127.0.0.1", 4433)
CLIENT_ADDR = ("127.0.0.1", 50000)
CHUNK = b"\x5a" * 65536
_DATA, _ECN = itemgetter(0), itemgetter(2)  # of (data, addr, ecn) and (data, addr)


@dataclass
class Side:
    endpoint: QuicEndpoint
    addr: tuple[str, int]
    inbox: list[tuple[list[bytes], int]] = field(default_factory=list)  # (datagrams, ECN)
    cpu: float = 0.0
    received: int = 0
    fin: bool = False
    connected: bool = False
    packets_sent: int = 0
    ecn: bool = False  # the link keeps the ECN codepoint of each datagram
    gro: bool = False  # a step's datagrams are fed in one call


def _configs(packet_size: int) -> tuple[QuicConfiguration, QuicConfiguration]:
    cert = generate_self_signed(NOW)
    server = QuicConfiguration(
        is_client=False, alpn_protocols=["bench"], max_datagram_size=packet_size
    )
    server.certificate_chain = [cert.certificate]
    server.private_key = cert.private_key
    server.clock = lambda: NOW
    client = QuicConfiguration(
        is_client=True,
        alpn_protocols=["bench"],
        server_name="localhost",
        verify_certificates=False,
        max_datagram_size=packet_size,
        clock=lambda: NOW,
    )
    return client, server


def _step(side: Side, peer: Side, now: float, profiler: cProfile.Profile | None) -> None:
    """Feed ``side`` its inbox, fire its timer, collect events and what it sends."""
    start = time.process_time()
    if profiler is not None:
        profiler.enable()
    endpoint = side.endpoint
    inbox, side.inbox = side.inbox, []
    if side.gro:
        for batch, ecn in inbox:
            endpoint.receive_datagrams(batch, peer.addr, now, ecn)
    else:
        for batch, ecn in inbox:
            for data in batch:
                endpoint.receive_datagram(data, peer.addr, now, ecn)
    timer = endpoint.get_timer()
    if timer is not None and timer <= now:
        endpoint.handle_timer(now)
    while (item := endpoint.next_event()) is not None:
        event = item[1]
        if isinstance(event, StreamDataReceived):
            side.received += len(event.data)
            if event.data:
                item[0].consume_stream_data(event.stream_id, len(event.data))
                endpoint.wake(item[0])  # MAX_STREAM_DATA may be due
            side.fin |= event.end_stream
        elif isinstance(event, HandshakeCompleted):
            side.connected = True
    if side.ecn:
        marked = endpoint.marked_datagrams_to_send(now)
        if profiler is not None:
            profiler.disable()
        side.cpu += time.process_time() - start
        side.packets_sent += len(marked)
        for codepoint, run in groupby(marked, _ECN):  # one codepoint per step, mostly
            peer.inbox.append((list(map(_DATA, run)), codepoint))
        return
    out = endpoint.datagrams_to_send(now)
    if profiler is not None:
        profiler.disable()
    side.cpu += time.process_time() - start
    side.packets_sent += len(out)
    if out:
        peer.inbox.append((list(map(_DATA, out)), 0))


def run(
    size: int,
    packet_size: int = 1200,
    step: float = 0.0005,
    profile: str | None = None,
    ecn: bool = False,
    gro: bool = False,
) -> dict[str, Any]:
    """Upload ``size`` bytes client → server; returns per-side CPU seconds and counts."""
    client_cfg, server_cfg = _configs(packet_size)
    server = Side(QuicEndpoint(server_cfg), SERVER_ADDR, ecn=ecn, gro=gro)
    client = Side(QuicEndpoint(), CLIENT_ADDR, ecn=ecn, gro=gro)
    now = 0.0
    conn = client.endpoint.connect(SERVER_ADDR, client_cfg, now)
    while not (client.connected and server.connected):
        _step(client, server, now, None)
        _step(server, client, now, None)
        now += step
    profiler = cProfile.Profile() if profile else None
    sender_prof = profiler if profile == "sender" else None
    receiver_prof = profiler if profile == "receiver" else None
    sid = conn.create_stream()
    written = 0
    client.cpu = server.cpu = 0.0
    client.packets_sent = server.packets_sent = 0
    wall = time.perf_counter()
    while not server.fin:
        start = time.process_time()
        while written < size and conn.streams.send_buffered(sid) < (1 << 20):
            chunk = CHUNK[: size - written]
            written += len(chunk)
            conn.send_stream_data(sid, chunk, written >= size)
        client.endpoint.wake(conn)  # the application acted on the connection
        client.cpu += time.process_time() - start
        _step(client, server, now, sender_prof)
        _step(server, client, now, receiver_prof)
        now += step
        if now > 600:
            raise RuntimeError("in-memory transfer did not finish")
    wall = time.perf_counter() - wall
    if server.received != size:
        raise RuntimeError(f"received {server.received} of {size}")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return {
        "MB": size / 1e6,
        "sender_cpu_s": round(client.cpu, 3),
        "receiver_cpu_s": round(server.cpu, 3),
        "sender_MBps": round(size / client.cpu / 1e6, 2),
        "receiver_MBps": round(size / server.cpu / 1e6, 2),
        "wall_s": round(wall, 3),
        "packets": client.packets_sent,
        "acks": server.packets_sent,
        "fake_time_s": round(now, 3),
        "ecn": conn.ecn.state.value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro.inmem")
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--packet-size", type=int, default=1200)
    parser.add_argument("--profile", choices=("sender", "receiver"))
    parser.add_argument("--ecn", action="store_true", help="the link keeps ECN codepoints")
    parser.add_argument("--gro", action="store_true", help="a step's datagrams in one call")
    args = parser.parse_args()
    size = int(args.mb * 1e6)
    print(run(size, args.packet_size, profile=args.profile, ecn=args.ecn, gro=args.gro))


if __name__ == "__main__":
    main()
