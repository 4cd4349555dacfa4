"""RedisBackplane against a real redis-server (started here on a free port, no
persistence, stopped after; skipped only when the binary is missing): broadcasts once
per member across instances, member counts and their expiry, the outage rule across a
Redis restart (dropped and counted, never buffered), bounds (N vs 4N), and two
``serve --redis`` processes sharing a room."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from pywebtransport.backplane import (
    BackplaneConfig,
    BackplaneError,
    EventKind,
    RedisBackplane,
    RoomEvent,
)
from pywebtransport.backplane.codec import Counts, encode_body
from pywebtransport.client import WebTransportClient
from pywebtransport.config import ClientConfig
from pywebtransport.rooms import RoomPolicy, Rooms
from tests.pwt.test_backplane import join, wait_for
from tests.pwt.test_backplane_apps import status_of
from tests.pwt.test_cli import Server
from tests.support.redis_server import REDIS_SERVER, RedisServer

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not os.access(REDIS_SERVER, os.X_OK),
        reason=f"redis-server not installed ({REDIS_SERVER}; Debian package redis-server)",
    ),
]
TIMEOUT = 10.0
FAST = BackplaneConfig(heartbeat=0.2, ttl=1.0)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@asynccontextmanager
async def instances(
    url: str, n: int, config: BackplaneConfig = FAST
) -> AsyncIterator[tuple[list[Rooms], list[RedisBackplane]]]:
    backplanes = [
        RedisBackplane(url, config=config, instance_id=f"i{i}", channel_prefix="t")
        for i in range(n)
    ]
    rooms = [Rooms(RoomPolicy(), bp) for bp in backplanes]
    for bp in backplanes:
        await bp.start()
    try:
        for bp in backplanes:
            await bp.wait_connected(TIMEOUT)
        yield rooms, backplanes
    finally:
        for bp in backplanes:
            await bp.close()


async def test_broadcast_once_per_member_and_counts(redis_server: RedisServer) -> None:
    async with instances(redis_server.url, 3) as (rooms, bps):
        a, b = join(rooms[0], "r", "a"), join(rooms[0], "r", "b")
        c = join(rooms[1], "r", "c")
        other = join(rooms[2], "s", "other")
        await wait_for(lambda: all(r.count("r") == 3 and r.count("s") == 1 for r in rooms))
        assert bps[2]._subscribed == {"s"}  # a room channel only where there is a member
        await wait_for(lambda: all(bp._subscribed == bp._wanted for bp in bps))
        room = rooms[0].get("r")
        assert room is not None
        room.send_datagram(b"dg", exclude=a)  # type: ignore[arg-type]
        room.send_message(b"msg", exclude=a)  # type: ignore[arg-type]
        room_c = rooms[1].get("r")
        assert room_c is not None
        room_c.send_message(b"from c", exclude=c)  # type: ignore[arg-type]
        await wait_for(lambda: len(a.messages) == 1 and len(b.messages) == 2)
        await wait_for(lambda: c.datagrams == [b"dg"] and c.messages == [b"msg"])
        await asyncio.sleep(0.3)  # nothing arrives twice
        assert (a.datagrams, a.messages) == ([], [b"from c"])
        assert (b.datagrams, b.messages) == ([b"dg"], [b"msg", b"from c"])
        assert (c.datagrams, c.messages) == ([b"dg"], [b"msg"])
        assert other.datagrams == other.messages == []
        assert bps[0].stats.own_ignored == 2 and bps[1].stats.own_ignored == 1  # echoes
        assert bps[2].stats.delivered == 0  # not subscribed to "r"

        # the last member leaving unsubscribes; BYE on close removes counts at once
        other.events.emit("closed")
        await wait_for(lambda: not bps[2]._subscribed and rooms[0].count("s") == 0)
        await bps[1].close()
        await wait_for(lambda: rooms[0].count("r") == 2)
        assert "i1" not in bps[0].remote.instances


async def test_a_dead_instance_expires_and_bounds_n_vs_4n(redis_server: RedisServer) -> None:
    """COUNTS from instances that then fall silent expire after ``ttl``; at most
    ``max_instances`` are tracked whatever their number; malformed messages and events
    on the wrong channel are counted and ignored."""
    config = BackplaneConfig(heartbeat=0.2, ttl=2.0, max_instances=8)

    async def run(n: int) -> tuple[int, int, int, int]:
        async with instances(redis_server.url, 1, config) as (rooms, bps):
            join(rooms[0], "r", "m")
            raw = aioredis.Redis.from_url(redis_server.url)
            try:
                for i in range(n):
                    ghost = Counts(f"ghost{i}", True, (("r", 2),))
                    await raw.publish(b"t:control", encode_body(ghost))
                await raw.publish(b"t:control", b"\x09garbage")
                event = RoomEvent("ghost0", "elsewhere", EventKind.DATAGRAM, b"x")
                await raw.publish(b"t:room:r", encode_body(event))  # wrong channel
                await wait_for(lambda: bps[0].stats.frame_errors == 2)
                tracked, total = len(bps[0].remote.instances), rooms[0].count("r")
                await wait_for(lambda: rooms[0].count("r") == 1)  # the ghosts expired
                return tracked, total, bps[0].stats.instances_refused, bps[0].remote.rooms()
            finally:
                await raw.aclose()

    small, large = await run(10), await run(40)
    assert small[0] == large[0] == 8  # bounded by max_instances, not by n
    assert small[1] == large[1] == 1 + 2 * 8
    assert (small[2], large[2]) == (2, 32)  # the rest refused, counted
    assert small[3] == large[3] == 0  # nothing left once they expired


async def test_outage_drops_and_counts_then_recovers(redis_server: RedisServer) -> None:
    """Redis stopped and started again on the same port: broadcasts during the outage
    reach the local members only and are counted as dropped (N vs 4N: the queue stays
    empty); after the backplane reconnects, a broadcast reaches both instances."""
    async with instances(redis_server.url, 2) as (rooms, bps):
        a, b = join(rooms[0], "r", "a"), join(rooms[0], "r", "b")
        far = join(rooms[1], "r", "far")
        await wait_for(lambda: rooms[0].count("r") == rooms[1].count("r") == 3)
        await wait_for(lambda: all(bp._subscribed == {"r"} for bp in bps))
        room = rooms[0].get("r")
        assert room is not None
        redis_server.stop()
        await wait_for(lambda: not bps[0].connected and not bps[1].connected)
        drops = []
        for n in (25, 100):
            before = bps[0].stats.dropped_down
            for i in range(n):
                room.send_datagram(b"outage %d" % i, exclude=a)  # type: ignore[arg-type]
            drops.append((bps[0].stats.dropped_down - before, bps[0].queued()))
        assert drops == [(25, 0), (100, 0)]  # each dropped and counted; nothing held
        assert len(b.datagrams) == 125  # the local member got every one
        await wait_for(lambda: bps[0].stats.connect_failures >= 2)  # retrying, with backoff
        # nobody is heard from during the outage: remote counts expire after ttl
        await wait_for(lambda: rooms[0].count("r") == 2 and rooms[1].count("r") == 1)
        redis_server.start()
        for bp in bps:
            await bp.wait_connected(TIMEOUT)
        await wait_for(lambda: all(bp._subscribed == {"r"} for bp in bps))
        # HELLO and snapshots bring the counts back
        await wait_for(lambda: rooms[0].count("r") == rooms[1].count("r") == 3)
        room.send_datagram(b"after", exclude=a)  # type: ignore[arg-type]
        room_far = rooms[1].get("r")
        assert room_far is not None
        room_far.send_message(b"far after", exclude=far)  # type: ignore[arg-type]
        await wait_for(lambda: far.datagrams == [b"after"])  # none of the outage's
        await wait_for(lambda: a.messages == b.messages == [b"far after"])
        assert bps[0].stats.disconnects == 1 and bps[0].stats.connects == 2


async def test_queue_full_drops_and_counts(redis_server: RedisServer) -> None:
    config = BackplaneConfig(heartbeat=0.1, ttl=0.5, max_queue=16)

    async def run(n: int) -> tuple[int, int]:
        async with instances(redis_server.url, 1, config) as (rooms, bps):
            join(rooms[0], "r", "a")
            await asyncio.sleep(0.05)  # the join's count update is written
            room = rooms[0].get("r")
            assert room is not None
            before = bps[0].stats.dropped_full
            peak = 0
            for i in range(n):  # no await: the writer cannot run in between
                room.send_datagram(b"%d" % i)
                peak = max(peak, bps[0].queued())
            return peak, bps[0].stats.dropped_full - before

    small, large = await run(50), await run(200)
    assert small[0] == large[0] == 16
    assert (small[1], large[1]) == (50 - 16, 200 - 16)


def test_missing_extra_and_bad_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        RedisBackplane("http://not-redis")
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # as if not installed
    with pytest.raises(BackplaneError, match=r"pywebtransport\[redis\]"):
        RedisBackplane("redis://127.0.0.1:1/0")


# ======================================================================================
# two `serve --redis` processes
# ======================================================================================


async def status(client: WebTransportClient, server: Any) -> dict[str, Any]:
    """The ``rooms`` part of ``server``'s ``/status``."""
    return dict((await status_of(client, server.port))["rooms"])


async def poll_status(client: WebTransportClient, server: Server, check: Any) -> None:
    async with asyncio.timeout(TIMEOUT * 2):
        while not check(await status(client, server)):
            await asyncio.sleep(0.1)


async def expect_message(session: Any, data: bytes) -> None:
    async with asyncio.timeout(TIMEOUT):
        stream = await session.accept_unidirectional_stream()
        assert bytes(await stream.read_all()) == data


async def test_two_serve_processes_share_a_room_across_a_redis_restart(
    redis_server: RedisServer,
) -> None:
    servers = [Server("--redis", redis_server.url) for _ in range(2)]
    try:
        hashes = [s.cert_hash for s in servers]
        config = ClientConfig(server_certificate_hashes=hashes, connect_timeout=5.0)
        async with WebTransportClient(config=config) as client:
            url = "https://127.0.0.1:{}/rooms/lobby"
            a1 = await client.connect(url.format(servers[0].port))
            a2 = await client.connect(url.format(servers[0].port))
            b1 = await client.connect(url.format(servers[1].port))
            for server, local in zip(servers, (2, 1), strict=True):
                await poll_status(
                    client, server, lambda r, n=local: (r["members"], r["total_members"]) == (n, 3)
                )

            stream = await a1.create_bidirectional_stream()
            await stream.write(b"hello both servers", end_stream=True)
            for session in (a2, b1):
                await expect_message(session, b"hello both servers")
            b1.send_datagram(b"from b1")
            for session in (a1, a2):
                assert await session.receive_datagram(timeout=TIMEOUT) == b"from b1"

            redis_server.stop()  # the outage
            for server in servers:
                await poll_status(client, server, lambda r: not r["backplane"]["connected"])
            a1.send_datagram(b"during the outage")
            assert await a2.receive_datagram(timeout=TIMEOUT) == b"during the outage"
            await poll_status(client, servers[0], lambda r: r["backplane"]["dropped_down"] >= 1)

            redis_server.start()  # same port: both servers reconnect by themselves
            for server in servers:
                await poll_status(
                    client,
                    server,
                    lambda r: r["backplane"]["connected"] and r["total_members"] == 3,
                )
            await asyncio.sleep(0.3)  # the room channels are subscribed again
            a1.send_datagram(b"after")
            assert await a2.receive_datagram(timeout=TIMEOUT) == b"after"
            # b1 gets the broadcast after recovery, and never the one of the outage
            assert await b1.receive_datagram(timeout=TIMEOUT) == b"after"
            stream = await b1.create_bidirectional_stream()
            await stream.write(b"after, by stream", end_stream=True)
            for session in (a1, a2):
                await expect_message(session, b"after, by stream")
            await asyncio.sleep(0.3)
            received = [s.diagnostics()["datagrams_received"] for s in (a1, a2, b1)]
            assert received == [1, 3, 1]  # each broadcast once, the outage's only locally
            for session in (a1, a2, b1):
                await session.close()
    finally:
        for server in servers:
            code, err = server.stop()
            assert code == 0, err


def test_serve_refuses_a_bad_redis_url() -> None:
    import subprocess

    from pywebtransport.cli import EXIT_FAILURE, build_parser

    assert "--redis" in build_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    done = subprocess.run(
        [sys.executable, "-m", "pywebtransport", "serve", "--port", "0", "--redis", "http://x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_FAILURE and "error: --redis" in done.stderr
    assert done.stdout == ""  # refused before making a certificate or binding


async def test_workers_and_another_server_share_a_room_over_redis(
    redis_server: RedisServer,
) -> None:
    """``serve --workers 2 --redis URL`` and a second ``serve --redis URL``: each worker
    is its own instance on Redis, so a room with members on both workers and on the
    other server gets each broadcast once everywhere."""
    from tests.pwt.test_workers_serve import Workers

    workers = Workers("--redis", redis_server.url)
    other = Server("--redis", redis_server.url)
    try:
        config = ClientConfig(  # a socket per connection: the 4-tuple hash spreads them
            server_certificate_hashes=[workers.cert_hash, other.cert_hash],
            connect_timeout=5.0,
            share_socket=False,
        )
        async with WebTransportClient(config=config) as client:
            there = await client.connect(f"https://127.0.0.1:{other.port}/rooms/hall")
            here: list[Any] = []
            while True:  # until the hash has put members on both workers
                assert len(here) < 24, "the hash never reached the other worker"
                here.append(await client.connect(f"https://127.0.0.1:{workers.port}/rooms/hall"))
                rooms = await status(client, workers)  # from whichever worker answers
                if rooms["total_members"] != len(here) + 1:
                    await asyncio.sleep(0.2)  # the counts travel through Redis
                    rooms = await status(client, workers)
                if rooms["total_members"] == len(here) + 1 and rooms["members"] < len(here):
                    break
            total = len(here) + 1
            await poll_status(client, other, lambda r: r["total_members"] == total)
            stream = await there.create_bidirectional_stream()
            await stream.write(b"to every worker", end_stream=True)
            for session in here:
                await expect_message(session, b"to every worker")
            here[0].send_datagram(b"from a worker")
            assert await there.receive_datagram(timeout=TIMEOUT) == b"from a worker"
            for session in here[1:]:
                assert await session.receive_datagram(timeout=TIMEOUT) == b"from a worker"
            await asyncio.sleep(0.3)
            counts = [s.diagnostics()["datagrams_received"] for s in (there, *here)]
            assert counts == [1, 0] + [1] * (len(here) - 1)  # once each, never to the sender
            for session in (there, *here):
                await session.close()
    finally:
        code, err = workers.stop()
        assert code == 0, err[-3000:]
        code, err = other.stop()
        assert code == 0, err
