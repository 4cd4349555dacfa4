"""QUIC DATAGRAM ping-pong between two Sans-I/O endpoints in memory: the QUIC share of
the ``wt-dgram`` round trip, without sockets, asyncio, HTTP/3 or WebTransport.

Each round trip: the client queues a 70-byte DATAGRAM (a 64-byte WebTransport payload
with its HTTP/3 prefix, and some), its endpoint builds the packet, the server endpoint
reads it, its application echoes the datagram, its endpoint builds the reply (with the
ACK), and the client reads it — one 1-RTT packet each way, as on the wire. The clock
advances 50 us per half round trip, so the timers behave the same in every run.

``python -m benchmarks.micro.bench_quic_datagram [--round-trips N] [--profile]`` prints
the CPU time per round trip (both sides). Instructions per round trip (load-independent):
run it under ``valgrind --tool=callgrind`` with N = 200 and N = 1200
(``PYTHONHASHSEED=0``) and divide the difference by 1,000 (at 2cd42d6: 462,091; both
sides; repeatable to about 0.05 %).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from benchmarks.micro.inmem import CLIENT_ADDR, SERVER_ADDR, _configs
from quic.connection import QuicConnection
from quic.endpoint import QuicEndpoint
from quic.events import DatagramReceived

PAYLOAD = b"x" * 70
STEP = 0.00005  # seconds of the fake clock per half round trip


def _carry(src: QuicEndpoint, dst: QuicEndpoint, src_addr: tuple[str, int], now: float) -> int:
    """What ``src`` sends, fed to ``dst``; ``dst``'s due timers fired and its events
    drained (a DATAGRAM echoed where ``dst`` is the server); the DATAGRAMs received."""
    for data, _addr, ecn in src.marked_datagrams_to_send(now):
        dst.receive_datagram(data, src_addr, now, ecn)
    timer = dst.get_timer()
    if timer is not None and timer <= now:
        dst.handle_timer(now)
    got = 0
    while (item := dst.next_event()) is not None:
        conn, event = item
        if type(event) is DatagramReceived:
            got += 1
            if not conn.is_client:
                conn.send_datagram(event.data)
                dst.wake(conn)
    return got


class PingPong:
    """A connected pair, DATAGRAM frames negotiated, the handshake's traffic done."""

    def __init__(self) -> None:
        client_cfg, server_cfg = _configs(1200)
        client_cfg.max_datagram_frame_size = server_cfg.max_datagram_frame_size = 65535
        self.server = QuicEndpoint(server_cfg)
        self.client = QuicEndpoint()
        self.now = 0.0
        self.conn: QuicConnection = self.client.connect(SERVER_ADDR, client_cfg, self.now)
        for _ in range(50):
            _carry(self.client, self.server, CLIENT_ADDR, self.now)
            _carry(self.server, self.client, SERVER_ADDR, self.now)
            self.now += 0.001
        self.run(500)  # warm: ACK ranges, RTT estimate, pacer and timers settled

    def run(self, round_trips: int) -> None:
        client, server, conn = self.client, self.server, self.conn
        now = self.now
        for _ in range(round_trips):
            conn.send_datagram(PAYLOAD)
            client.wake(conn)
            _carry(client, server, CLIENT_ADDR, now)
            now += STEP
            if _carry(server, client, SERVER_ADDR, now) != 1:
                raise RuntimeError("the echo did not come back")
            now += STEP
        self.now = now


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro.bench_quic_datagram")
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true", help="cProfile, by own time")
    args = parser.parse_args()
    pair = PingPong()
    profiler = cProfile.Profile() if args.profile else None
    start = time.process_time()
    if profiler is not None:
        profiler.enable()
    pair.run(args.round_trips)
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - start
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    print(f"{cpu * 1e6 / args.round_trips:.2f} us CPU per round trip (both sides, QUIC only)")


if __name__ == "__main__":
    main()
