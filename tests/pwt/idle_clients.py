"""Client side of tests/pwt/test_idle_memory_server.py, run in its own process (so the
server's tracemalloc counts only the server): ``python -m tests.pwt.idle_clients PORT N
CERT_SHA256_HEX`` opens N WebTransport sessions, each on its own QUIC connection,
prints ``OPEN n`` and keeps them (idle) until stdin closes."""

from __future__ import annotations

import asyncio
import sys

from pywebtransport import ClientConfig, WebTransportClient, WebTransportSession


async def main(port: int, count: int, cert_hash: bytes) -> None:
    client = WebTransportClient(
        ClientConfig(server_certificate_hashes=[cert_hash], connect_timeout=10.0)
    )
    url = f"https://127.0.0.1:{port}/idle"
    sessions: list[WebTransportSession] = [await client.connect(url) for _ in range(count)]
    print(f"OPEN {len(sessions)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), bytes.fromhex(sys.argv[3])))
