"""An echo WebTransport server for the slow soak runs, in its own process so that its
memory (RSS) can be read from /proc while a client loads it.

``python -m tests.pwt.soak_server`` prints ``READY <port> <sha256 hex>`` (the pinned
certificate hash) and serves until its stdin closes. Every session echoes its
bidirectional streams (chunk by chunk, then FIN) and its datagrams.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

from pywebtransport import ServerConfig, SessionRequest, WebTransportServer
from quic.aio import wall_clock
from quic.tls.selfsigned import generate_self_signed


async def echo_session(request: SessionRequest) -> None:
    session = await request.accept()
    tasks: set[asyncio.Task[None]] = set()

    async def echo_stream(stream: Any) -> None:
        with contextlib.suppress(Exception):
            async for chunk in stream:
                await stream.write(chunk)
            await stream.close()

    async def streams() -> None:
        async for stream in session.incoming_bidirectional_streams():
            task = asyncio.create_task(echo_stream(stream))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def datagrams() -> None:
        with contextlib.suppress(Exception):
            while True:
                session.send_datagram(await session.receive_datagram())

    runners = [asyncio.create_task(streams()), asyncio.create_task(datagrams())]
    await session.wait_closed()
    for task in [*runners, *tasks]:
        task.cancel()


async def main() -> None:
    cert = generate_self_signed(wall_clock())
    config = ServerConfig(
        certificate_chain=[cert.certificate],
        private_key=cert.private_key,
        host="127.0.0.1",
        port=0,
        max_sessions=16,
        idle_timeout=120.0,
        max_connections_per_address=10_000,  # every soak client comes from 127.0.0.1
    )
    server = WebTransportServer(config)
    await server.listen()
    handlers: set[asyncio.Task[None]] = set()

    async def accept_all() -> None:
        async for request in server.incoming_sessions():
            task = asyncio.create_task(echo_session(request))
            handlers.add(task)
            task.add_done_callback(handlers.discard)

    runner = asyncio.create_task(accept_all())
    print(f"READY {server.port} {cert.sha256.hex()}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    runner.cancel()
    await server.shutdown(timeout=1.0)


if __name__ == "__main__":
    asyncio.run(main())
