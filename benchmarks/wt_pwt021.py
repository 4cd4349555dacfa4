"""pywebtransport 0.21.1 (PyPI; Rust core on quinn) adapter of the benchmark harness.

Theory of operation
-------------------
PyPI's pywebtransport 0.21.1 has the same import name as this repository's package, so
it runs from its own virtual environment (Python 3.12, ``/work/venvs/pwt021`` by default;
the harness creates it with ``--setup-peers``) with the working directory set to a
scratch folder holding only a ``benchmarks`` symlink, so ``import pywebtransport``
finds the installed 0.21.1 and never this repository.

Server: ``WebTransportServer(config=ServerConfig(...))`` with 0.21.1's defaults except
the certificate, the bind address, and ``max_connections`` / ``max_sessions`` raised to
``--max-sessions`` (its defaults, 100 connections and 10 sessions, would refuse the
1,000-session rows). Its ``bind_port`` must be 1-65535, so the adapter asks the OS for
a free UDP port first (bind to port 0, read it, close) — a tiny race, reported as a
failed start if it loses. Every accepted session echoes each incoming bidi stream
chunk by chunk and every datagram, in reads of at most 64 KiB (:data:`READ_SIZE`). Client:
``WebTransportClient`` with 0.21.1's default
``ClientConfig`` except ``verify_mode=CERT_NONE`` (throwaway certificate) and
``max_connections`` (default 100) above ``--sessions``; its key
shares are rustls's defaults (not configurable), so ``--key-shares`` is ignored and
reported. One client, one session per connection.

Read size: 64 KiB, 0.21.1's own stream chunk (``_READ_CHUNK_SIZE`` and
``_WRITE_CHUNK_SIZE`` of its ``stream.py``: ``readuntil`` reads and ``write_all``
writes in 64 KiB pieces). Its sockets keep the kernel's default receive buffer
(``net.core.rmem_default``: ``ss -uam`` shows rb212992 on them; no 0.21.1 setting
changes it), so a burst larger than that, arriving while the receiving reactor thread is busy,
is dropped by the kernel, and a lost tail stalls the stream for 26-28 ms (a probe
timeout: RTT plus QUIC's default 25 ms ``max_ack_delay``). The earlier 1 MiB reads
made the echo server write 1 MiB bursts: 1,400-3,000 drops and 15-24 MB/s per 50 MiB
echo, against 450-810 drops and 55-75 MB/s with 64 KiB reads (5 runs each, asyncio,
2026-12-06). Reading all that is buffered (``read()``'s default) behaves like 1 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import ssl
from functools import partial
from typing import Any

from benchmarks.common import announce, install_stats_handlers, wait_for_stop
from benchmarks.wt_common import Stack, main
from pywebtransport import (
    ClientConfig,
    ServerConfig,
    WebTransportClient,
    WebTransportError,
    WebTransportServer,
    WebTransportSession,
)
from pywebtransport import __version__ as PEER_VERSION

READ_SIZE = 1 << 16  # see the module docstring


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


async def _echo_stream(stream: Any) -> None:
    with contextlib.suppress(WebTransportError):
        while chunk := await stream.read(max_size=READ_SIZE):
            await stream.write(data=chunk)
        await stream.write(data=b"", end_stream=True)


async def _echo_datagrams(session: WebTransportSession) -> None:
    with contextlib.suppress(WebTransportError):
        while True:
            await session.send_datagram(data=await session.read_datagram())


async def _serve_session(session: WebTransportSession, tasks: set[asyncio.Task[Any]]) -> None:
    await session.accept()
    datagrams = asyncio.ensure_future(_echo_datagrams(session))
    try:
        with contextlib.suppress(WebTransportError):
            async for stream in session.incoming_bidirectional_streams():
                _spawn(tasks, _echo_stream(stream))
    finally:
        datagrams.cancel()


async def _serve_connection(connection: Any, tasks: set[asyncio.Task[Any]]) -> None:
    with contextlib.suppress(WebTransportError):
        async for session in connection.incoming_sessions():
            _spawn(tasks, _serve_session(session, tasks))


def _spawn(tasks: set[asyncio.Task[Any]], coroutine: Any) -> None:
    task = asyncio.ensure_future(coroutine)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def serve(args: argparse.Namespace) -> None:
    port = args.port or _free_udp_port(args.host)
    config = ServerConfig(
        certfile=args.cert,
        keyfile=args.key,
        bind_host=args.host,
        bind_port=port,
        max_connections=args.max_sessions,
        max_sessions=args.max_sessions,
    )
    server = WebTransportServer(config=config)
    await server.listen()
    install_stats_handlers(args.stats_file)
    tasks: set[asyncio.Task[Any]] = set()

    async def accept_all() -> None:
        async for connection in server.incoming_connections():
            _spawn(tasks, _serve_connection(connection, tasks))

    acceptor = asyncio.ensure_future(accept_all())
    announce(port)
    await wait_for_stop()
    acceptor.cancel()
    for task in list(tasks):
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.close(), 5.0)


class _Stream:
    """The stream's own coroutine functions where its keyword-only API allows (write_eof
    and read, as wt_ours binds its stream's); write keeps a wrapper (``data=``)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.write_eof: Any = partial(stream.write, data=b"", end_stream=True)
        self.read: Any = partial(stream.read, max_size=READ_SIZE)

    async def write(self, data: bytes) -> None:
        await self.stream.write(data=data)


class _Session:
    def __init__(self, session: WebTransportSession) -> None:
        self.session = session
        # the session's own method, no coroutine of ours around it (as wt_ours does)
        self.receive_datagram: Any = session.read_datagram

    async def open_stream(self) -> _Stream:
        return _Stream(await self.session.create_bidirectional_stream())

    async def send_datagram(self, data: bytes) -> None:
        await self.session.send_datagram(data=data)  # keyword only: a wrapper stays

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.session.close()


_clients: dict[str, WebTransportClient] = {}


async def open_session(args: argparse.Namespace, url: str) -> _Session:
    client = _clients.get("client")
    if client is None:
        # its client also counts connections (default 100): 1,000 sessions need more
        config = ClientConfig(verify_mode=ssl.CERT_NONE, max_connections=args.sessions + 10)
        client = _clients["client"] = WebTransportClient(config=config)
    return _Session(await client.connect(url=url, timeout=30.0))


def describe(args: argparse.Namespace) -> str:
    return (
        f"pywebtransport {PEER_VERSION}: default ServerConfig/ClientConfig "
        "(+max_connections, max_sessions), rustls default key shares, 64 KiB reads"
    )


STACK = Stack("pwt021", serve, open_session, describe)

if __name__ == "__main__":
    main(STACK)
