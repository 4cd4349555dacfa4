"""Workers on one port over real sockets (127.0.0.1, a random free port): two worker
endpoints, each on its member of one SO_REUSEPORT group, 200 clients connected, each
migrating to a new local port mid-session and echoing again — once with the kernel's
steering program attached, once with forwarding only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator

import pytest

from quic.aio import QuicServer, QuicSession, connect, serve
from quic.aio.workers import WorkerSpec, attach_steering, reuseport_sockets
from quic.configuration import QuicConfiguration
from tests.quic.test_aio import client_config, echo_stream, server_config

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT") or not hasattr(socket, "AF_UNIX"),
    reason="SO_REUSEPORT and AF_UNIX sockets needed",
)

CLIENTS = 200
WORKERS = 2


@contextlib.asynccontextmanager
async def worker_group(steer: bool) -> AsyncIterator[tuple[int, list[QuicServer], bool]]:
    """Two workers (in this process: one event loop, two endpoints) on one port."""
    directory = tempfile.mkdtemp(prefix="pwt-wk-")
    sockets = reuseport_sockets("127.0.0.1", 0, WORKERS)
    port = sockets[0].getsockname()[1]
    key = os.urandom(32)
    specs = [WorkerSpec(i, WORKERS, sockets[i], directory, key) for i in range(WORKERS)]
    attached = attach_steering(sockets[0], specs[0].scheme()) if steer else False
    servers: list[QuicServer] = []
    try:
        for spec in specs:
            config: QuicConfiguration = server_config()
            config.max_connections_per_address = CLIENTS  # all clients come from 127.0.0.1
            config.retry = "never"
            servers.append(
                await serve("127.0.0.1", 0, config, stream_handler=echo_stream, worker=spec)
            )
        yield port, servers, attached
    finally:
        for server in servers:
            server.close()
        await asyncio.gather(*(s.wait_closed() for s in servers), return_exceptions=True)
        for sock in sockets:
            sock.close()
        shutil.rmtree(directory, ignore_errors=True)


async def echo(session: QuicSession, payload: bytes) -> bytes:
    reader, writer = await session.create_stream()
    writer.write(payload)
    writer.write_eof()
    return await reader.read()


async def one_client(port: int, index: int, moved: asyncio.Event, go: asyncio.Event) -> bool:
    async with connect("127.0.0.1", port, client_config()) as session:
        before = f"client {index} before".encode() * 20
        assert await echo(session, before) == before
        old_port = session._protocol.local_address[1]
        moved.set()
        await go.wait()  # every client is connected: move all at once
        await session.migrate()  # RFC 9000 §9.2: a new socket, a new local port
        assert session._protocol.local_address[1] != old_port
        after = f"client {index} after the move".encode() * 20
        assert await asyncio.wait_for(echo(session, after), 30) == after
        return True


@pytest.mark.timeout(600)
@pytest.mark.parametrize("steer", [True, False], ids=["bpf", "forwarding-only"])
async def test_200_clients_migrate_across_two_workers(steer: bool) -> None:
    async with worker_group(steer) as (port, servers, attached):
        if steer and not attached:
            pytest.skip("the kernel refused SO_ATTACH_REUSEPORT_CBPF")
        go = asyncio.Event()
        moved = [asyncio.Event() for _ in range(CLIENTS)]
        tasks = []
        for i in range(CLIENTS):
            tasks.append(asyncio.ensure_future(one_client(port, i, moved[i], go)))
            if i % 20 == 19:
                await asyncio.sleep(0.05)  # do not flood two cores with 200 handshakes
        await asyncio.wait_for(asyncio.gather(*(m.wait() for m in moved)), 240)
        owners = [len(s.sessions) for s in servers]
        assert sum(owners) == CLIENTS
        assert min(owners) > 0  # the hash spread the Initials over both workers
        go.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), 300)
        assert results == [True] * CLIENTS
        forwarders = [s.worker.forwarder for s in servers if s.worker is not None]
        assert len(forwarders) == WORKERS
        forwarded = sum(f.sent for f in forwarders if f is not None)
        dropped = sum(f.dropped for f in forwarders if f is not None)
        if attached:
            # the kernel steered every short header to its owner: nothing to hand over
            routing = [s.worker.routing for s in servers if s.worker is not None]
            assert sum(r.forwarded for r in routing if r is not None) == forwarded
            assert forwarded == 0
        else:
            assert forwarded > 0  # about half the moved clients hashed to the other worker
        assert dropped == 0
        for server in servers:  # every migrated connection is still served by its owner
            for session in server.sessions:
                assert session.connection.paths.migrations >= 1


async def test_forwarder_bounds_a_dead_and_a_stalled_owner() -> None:
    """Forwarding to a worker that is not there drops at once (counted, nothing kept);
    to one that never reads, at most ``max_pending`` wait for room, whatever the
    flood (N vs 4N)."""
    from quic.aio.workers import Forwarder

    loop = asyncio.get_running_loop()
    directory = tempfile.mkdtemp(prefix="pwt-fw-")
    try:
        me = Forwarder(directory, 0, 3, max_pending=16)
        me._loop = loop  # sending only: no pump behind it
        stalled = Forwarder(directory, 1, 3)  # bound, never read
        frame = b"\x01\x04\x00\x00\x00\x01\x7f\x00\x00\x01" + b"q" * 1200
        held = []
        for count in (500, 2000):
            me.send([(2, frame)] * count)  # worker 2: not there
            me.send([(1, frame)] * count)
            held.append((me.pending, me.sent))
            assert me.dropped > 0
        assert held[0] == held[1]  # the same held, the same delivered: the rest dropped
        pending, sent = held[0]
        assert pending == 16 and sent >= 1
        assert me.dropped == 2 * (500 + 2000) - pending - sent
        me.close()
        stalled.close()
        assert os.listdir(directory) == []  # the sockets' names leave with them
    finally:
        shutil.rmtree(directory, ignore_errors=True)
