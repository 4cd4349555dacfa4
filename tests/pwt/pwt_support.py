"""Helpers for the asyncio API tests: a real server on 127.0.0.1 (port 0), pinned
self-signed certificate, an echo handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from pywebtransport import (
    ClientConfig,
    ServerConfig,
    SessionClosed,
    SessionRequest,
    WebTransportServer,
    WebTransportSession,
)
from quic.aio import wall_clock
from quic.tls.selfsigned import SelfSignedCertificate, generate_self_signed

__all__ = [
    "DRAFTS",
    "TIMEOUT",
    "Harness",
    "certificate",
    "client_config",
    "echo",
    "running",
    "server_config",
]

TIMEOUT = 10.0
DRAFTS = ["draft16", "draft02"]
Handler = Callable[[SessionRequest], Awaitable[None]]


@lru_cache(maxsize=1)
def certificate() -> SelfSignedCertificate:
    return generate_self_signed(wall_clock())


def server_config(**kwargs: Any) -> ServerConfig:
    cert = certificate()
    return ServerConfig(
        certificate_chain=[cert.certificate], private_key=cert.private_key, port=0, **kwargs
    )


def client_config(draft: str | None = None, **kwargs: Any) -> ClientConfig:
    if draft is not None:
        kwargs["drafts"] = (draft,)
    kwargs.setdefault("server_certificate_hashes", [certificate().sha256])
    kwargs.setdefault("connect_timeout", 5.0)
    return ClientConfig(**kwargs)


class Harness:
    """A listening server whose requests go to ``handler`` (one task each)."""

    def __init__(self, server: WebTransportServer) -> None:
        self.server = server
        self.handler: Handler | None = None
        self.requests: list[SessionRequest] = []
        self.sessions: asyncio.Queue[WebTransportSession] = asyncio.Queue()
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, path: str = "/echo") -> str:
        return f"https://127.0.0.1:{self.server.port}{path}"

    async def run(self) -> None:
        async for request in self.server.incoming_sessions():
            self.requests.append(request)
            task = asyncio.create_task(self._handle(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, request: SessionRequest) -> None:
        try:
            if self.handler is not None:
                await self.handler(request)
            else:
                self.sessions.put_nowait(await request.accept())
        except (SessionClosed, asyncio.CancelledError):
            pass
        except Exception as exc:  # surfaced by the tests
            self.errors.append(exc)

    async def next_session(self) -> WebTransportSession:
        async with asyncio.timeout(TIMEOUT):
            return await self.sessions.get()


@asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[Harness]:
    server = WebTransportServer(server_config(**kwargs))
    await server.listen(host="127.0.0.1", port=0)
    harness = Harness(server)
    runner = asyncio.create_task(harness.run())
    try:
        yield harness
    finally:
        await server.shutdown(timeout=0.5)
        runner.cancel()
        await asyncio.gather(runner, *harness._tasks, return_exceptions=True)
    assert not harness.errors, harness.errors


async def echo(request: SessionRequest) -> None:
    """Echo bidi streams and datagrams; answer each uni stream with a uni stream."""
    session = await request.accept()

    async def bidi(stream: Any) -> None:
        async for chunk in stream:
            await stream.write(chunk)
        await stream.close()

    async def uni(stream: Any) -> None:
        data = await stream.read_all()
        out = await session.create_unidirectional_stream()
        await out.write_all(data)

    children: set[asyncio.Task[None]] = set()

    async def streams() -> None:
        async for stream in session.incoming_bidirectional_streams():
            children.add(asyncio.create_task(bidi(stream)))

    async def unis() -> None:
        async for stream in session.incoming_unidirectional_streams():
            children.add(asyncio.create_task(uni(stream)))

    async def datagrams() -> None:
        while True:
            data = await session.receive_datagram()
            # the client's path MTU may exceed ours (docs/datagrams.md): drop, as a
            # network would
            if len(data) <= session.max_datagram_size:
                session.send_datagram(data)

    tasks = [asyncio.create_task(c()) for c in (streams, unis, datagrams)]
    await session.wait_closed()
    for task in [*tasks, *children]:
        task.cancel()
