"""Our WebTransport adapter of the benchmark harness (``pywebtransport`` of this repo).

Theory of operation
-------------------
The server is a :class:`pywebtransport.WebTransportServer` with the default
:class:`ServerConfig` except what 1,000 sessions from one address need
(``max_connections_per_address``; ``--max-sessions``): each accepted session echoes
every incoming bidi stream chunk by chunk as it arrives (``read()`` → ``write()``, whose
backpressure paces the echo) and every datagram (from its datagram handler,
``set_datagram_handler``); its streams come from its stream handler
(``set_stream_handler``: a task per stream started as the stream opens, no task per
session; pywebtransport 0.21.1 offers no such hand-off — its stream events reach their
handlers through a task each, like its iterator — and the aioquic adapter echoes in its
event callback). The client is one
:class:`WebTransportClient` (default :class:`ClientConfig`, the self-signed certificate
accepted with ``insecure=True``) opening one session per QUIC connection (its
connections share one UDP socket, ``ClientConfig.share_socket``);
``--key-shares x25519`` offers only an x25519 key share instead of our default
(X25519MLKEM768 + x25519). The workloads are :mod:`benchmarks.wt_common`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from functools import partial
from typing import Any

from benchmarks.common import announce, install_stats_handlers, wait_for_stop
from benchmarks.wt_common import Stack, main
from pywebtransport import (
    ClientConfig,
    ServerConfig,
    SessionClosed,
    WebTransportClient,
    WebTransportError,
    WebTransportReceiveStream,
    WebTransportServer,
    WebTransportSession,
    WebTransportStream,
)
from quic.configuration import QuicConfiguration
from quic.tls.groups import NamedGroup

READ_SIZE = 1 << 20


async def _echo_stream(stream: WebTransportStream) -> None:
    with contextlib.suppress(WebTransportError):
        while chunk := await stream.read(READ_SIZE):
            await stream.write(chunk)
        await stream.close()


def _echo_datagrams(session: WebTransportSession) -> None:
    """Echo every datagram from the session's datagram handler (no task per datagram;
    the echo leaves with the ACK of the datagram it answers)."""

    def echo(data: bytes) -> None:
        try:  # noqa: SIM105  # not contextlib.suppress: three calls per datagram
            session.send_datagram(data)
        except (SessionClosed, WebTransportError):
            pass

    session.set_datagram_handler(echo)


def _serve_session(session: WebTransportSession, tasks: set[asyncio.Task[Any]]) -> None:
    """Echo the session's datagrams and streams from its handlers: each incoming stream
    is handed over as it opens (``set_stream_handler``), and its echo task runs before
    the transmit of the read that brought the request (the reply carries its ACK)."""
    _echo_datagrams(session)

    def echo(stream: WebTransportStream | WebTransportReceiveStream) -> None:
        if isinstance(stream, WebTransportStream):
            task = asyncio.ensure_future(_echo_stream(stream))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            stream.stop_receiving(0)  # the workloads open bidirectional streams only

    session.set_stream_handler(echo)


async def serve(args: argparse.Namespace) -> None:
    config = ServerConfig(
        certfile=args.cert,
        keyfile=args.key,
        max_sessions=args.max_sessions,
        max_connections_per_address=args.max_sessions,
    )
    server = WebTransportServer(config)
    await server.listen(args.host, args.port)
    install_stats_handlers(args.stats_file)
    if os.environ.get("BENCH_CENSUS"):  # bench_wt_burst --census (never the harness)
        from benchmarks.micro.census import install_from_environment

        install_from_environment()
    if os.environ.get("BENCH_PROFILE"):  # bench_wt_burst --server-process --profile
        from benchmarks.micro.census import install_profiler_from_environment

        install_profiler_from_environment()
    tasks: set[asyncio.Task[Any]] = set()

    async def accept_all() -> None:
        async for request in server.incoming_sessions():
            with contextlib.suppress(WebTransportError):
                _serve_session(await request.accept(), tasks)

    acceptor = asyncio.ensure_future(accept_all())
    announce(server.port)
    await wait_for_stop()
    acceptor.cancel()
    for task in list(tasks):
        task.cancel()


class _X25519Only(ClientConfig):
    def quic_configuration(self, server_name: str | None = None) -> QuicConfiguration:
        config = super().quic_configuration(server_name)
        config.key_share_groups = (NamedGroup.x25519,)
        return config


class _Stream:
    """The stream's own coroutine functions, no coroutine of ours around each (the
    burst: three per echo); pywebtransport 0.21.1's adapter does the same where its
    keyword-only API allows (write_eof and read)."""

    def __init__(self, stream: WebTransportStream) -> None:
        self.stream = stream
        self.write: Any = stream.write
        self.write_eof: Any = stream.close
        self.read: Any = partial(stream.read, READ_SIZE)


class _Session:
    def __init__(self, session: WebTransportSession) -> None:
        self.session = session
        # the session's own methods, no coroutine of ours around each (wt-dgram: two per
        # round trip); send_datagram's result is awaitable (DatagramSent)
        self.send_datagram: Any = session.send_datagram
        self.receive_datagram: Any = session.receive_datagram

    async def open_stream(self) -> _Stream:
        return _Stream(await self.session.create_bidirectional_stream())

    async def close(self) -> None:
        with contextlib.suppress(WebTransportError):
            await self.session.close()


_clients: dict[str, WebTransportClient] = {}


async def open_session(args: argparse.Namespace, url: str) -> _Session:
    client = _clients.get("client")
    if client is None:
        factory = _X25519Only if args.key_shares == "x25519" else ClientConfig
        client = _clients["client"] = WebTransportClient(factory(insecure=True))
    return _Session(await client.connect(url, timeout=30.0))


def describe(args: argparse.Namespace) -> str:
    shares = "x25519 only" if getattr(args, "key_shares", "") == "x25519" else "default"
    return f"ours: default ServerConfig/ClientConfig, key shares {shares}"


STACK = Stack("ours", serve, open_session, describe)

if __name__ == "__main__":
    main(STACK)
