"""Processes for the endpoint flood soak (tests/soak/test_endpoint_flood.py).

``python3 flood_peers.py server <cert.pem> <key.pem>`` — a :mod:`quic.aio` server on
127.0.0.1 (default limits). It prints its port, then every 0.25 s a line
``stats <json>`` (RSS and the endpoint's tables and counters). A stream carrying
``GET <n>\\n`` is answered with ``n`` bytes of ``random.Random(n).randbytes(n)`` and
a FIN.

``python3 flood_peers.py flood <port> <initials> <random> <rate>`` — sends
``initials`` spoofed Initials (half of them authenticate and never continue, half fail
authentication) and ``random`` random datagrams (random bytes, unknown short headers,
long headers of unknown versions) to the port, interleaved, at ``rate`` datagrams per
second, from 64 source addresses 127.0.1.1-64 (standing in for spoofed sources). Prints
``sent <n>`` at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from quic.aio import QuicServer, QuicStreamReader, QuicStreamWriter, serve
from quic.configuration import QuicConfiguration
from tests.support.spoof import decryptable_initial, undecryptable_initial

CHUNK = 256 * 1024


def rss_kb() -> int:
    with open("/proc/self/status") as fp:
        for line in fp:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def answer(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
    line = await reader.readline()
    if not line.startswith(b"GET "):
        writer.reset(1)
        return
    size = int(line[4:])
    payload = random.Random(size).randbytes(size)
    for start in range(0, size, CHUNK):
        writer.write(payload[start : start + CHUNK])
        await writer.drain()
    writer.write_eof()


async def run_server(certfile: str, keyfile: str) -> None:
    config = QuicConfiguration(is_client=False, alpn_protocols=["test"])
    config.load_cert_chain(certfile, keyfile)
    server: QuicServer = await serve("127.0.0.1", 0, config, stream_handler=answer)
    print(server.port, flush=True)
    endpoint = server.endpoint
    while True:
        stats = {
            "rss_kb": rss_kb(),
            "connections": len(endpoint._entries),
            "half_open": endpoint.half_open_connections,
            "routes": endpoint.route_count,
            "sessions": len(server.protocol.sessions),
            "refused": endpoint.refused,
            "dropped": endpoint.dropped,
            "expired": endpoint.expired,
            "internal_errors": endpoint.internal_errors,
        }
        print("stats " + json.dumps(stats), flush=True)
        await asyncio.sleep(0.25)


def random_datagram(rng: random.Random) -> bytes:
    kind = rng.randrange(3)
    body = rng.randbytes(rng.randrange(1, 1400))
    if kind == 0:  # a short header for nobody
        return bytes([0x40 | rng.randrange(64)]) + body
    if kind == 1:  # a long header of an unknown (or reserved) version
        return bytes([0xC0 | rng.randrange(64)]) + rng.randbytes(4) + body
    return body


def flood(port: int, initials: int, randoms: int, rate: float) -> None:
    rng = random.Random(port)
    sockets = []
    for i in range(1, 65):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((f"127.0.1.{i}", 0))
        sockets.append(sock)
    pool = [undecryptable_initial(rng) for _ in range(256)]
    kinds = ["good"] * (initials // 2) + ["bad"] * (initials - initials // 2)
    kinds += ["random"] * randoms
    rng.shuffle(kinds)
    target = ("127.0.0.1", port)
    start = time.monotonic()
    sent = 0
    for i, kind in enumerate(kinds):
        if kind == "good":
            data = decryptable_initial(rng)
        elif kind == "bad":
            data = rng.choice(pool)
        else:
            data = random_datagram(rng)
        try:
            sockets[i % len(sockets)].sendto(data, target)
            sent += 1
        except OSError:
            pass
        ahead = start + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    print(f"sent {sent}", flush=True)


def main() -> None:
    if sys.argv[1] == "server":
        asyncio.run(run_server(sys.argv[2], sys.argv[3]))
    else:
        port, initials, randoms = (int(a) for a in sys.argv[2:5])
        flood(port, initials, randoms, float(sys.argv[5]))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
