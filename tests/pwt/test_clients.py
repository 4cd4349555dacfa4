"""Client utilities: the backoff schedule (a pure function, seeded RNG),
ReconnectingClient (a real server on 127.0.0.1, restarted), ClientFleet, and pooled
connections (``WebTransportClient(pool=True)``). Tiny delays only."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from pywebtransport import (
    ConnectionFailed,
    SessionRequest,
    WebTransportClient,
    WebTransportServer,
    WebTransportSession,
)
from pywebtransport.client import pool_capacity
from pywebtransport.clients import Backoff, ClientEvent, ClientFleet, ReconnectingClient
from tests.pwt.pwt_support import Harness, client_config, echo, server_config

pytestmark = pytest.mark.timeout(120)

FAST = Backoff(base=0.01, factor=2.0, max_delay=0.05, jitter=0.5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def serving(port: int = 0, **kwargs: Any) -> AsyncIterator[Harness]:
    """A server on ``port`` (0: any) whose requests go to ``harness.handler`` (default:
    accept and queue)."""
    server = WebTransportServer(server_config(**kwargs))
    await server.listen(host="127.0.0.1", port=port)
    harness = Harness(server)
    runner = asyncio.create_task(harness.run())
    try:
        yield harness
    finally:
        await server.shutdown(timeout=0.5)
        runner.cancel()
        await asyncio.gather(runner, *harness._tasks, return_exceptions=True)


async def roundtrip(session: WebTransportSession, data: bytes) -> bytes:
    stream = await session.create_bidirectional_stream()
    await stream.write_all(data)
    return bytes(await stream.read_all())


def recorder(client: ReconnectingClient) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    for kind in ClientEvent:
        client.events.on(kind, lambda event: seen.append((event.type, event.data)))
    return seen


async def until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# -- the backoff schedule (pure) -------------------------------------------------------------


def test_backoff_without_jitter_is_exponential_and_capped() -> None:
    backoff = Backoff(base=1.0, factor=2.0, max_delay=10.0, max_attempts=7, jitter=0.0)
    assert list(backoff.schedule(random.Random(0))) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert not backoff.gives_up(6) and backoff.gives_up(7)


def test_backoff_jitter_is_seeded_and_within_bounds() -> None:
    backoff = Backoff(base=0.5, factor=3.0, max_delay=20.0, jitter=0.5)
    first = list(itertools.islice(backoff.schedule(random.Random(42)), 30))
    again = list(itertools.islice(backoff.schedule(random.Random(42)), 30))
    other = list(itertools.islice(backoff.schedule(random.Random(43)), 30))
    assert first == again and first != other
    for attempt, delay in enumerate(first, start=1):
        raw = min(20.0, 0.5 * 3.0 ** (attempt - 1))
        assert raw * 0.5 <= delay <= raw


def test_backoff_forever_never_overflows() -> None:
    backoff = Backoff(base=1.0, factor=10.0, max_delay=60.0, max_attempts=None, jitter=0.0)
    assert backoff.delay(10**6, random.Random(1)) == 60.0
    assert len(list(itertools.islice(backoff.schedule(random.Random(1)), 5000))) == 5000
    assert not backoff.gives_up(10**9)


@pytest.mark.parametrize(
    "kwargs",
    [{"base": -1.0}, {"factor": 0.5}, {"jitter": 1.5}, {"max_attempts": 0}, {"max_delay": -1}],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


# -- ReconnectingClient ----------------------------------------------------------------------


async def test_reconnects_after_the_server_restarts() -> None:
    port = free_port()
    config = client_config(connect_timeout=1.0)
    client = ReconnectingClient(
        f"https://127.0.0.1:{port}/echo", config, backoff=FAST, rng=random.Random(5)
    )
    seen = recorder(client)
    async with client:
        async with serving(port) as harness:
            harness.handler = echo
            first = await client.wait_session(timeout=10)
            assert await roundtrip(first, b"one") == b"one"
        # the server is gone (its shutdown closed the session): the client retries
        await until(lambda: any(kind == "retrying" for kind, _ in seen))
        assert client.session is None
        async with serving(port) as harness:
            harness.handler = echo
            second = await client.wait_session(timeout=10)
            assert second is not first and client.session is second
            assert await roundtrip(second, b"two") == b"two"
            kinds = [kind for kind, _ in seen]
            assert kinds[:2] == ["connected", "disconnected"]
            assert "retrying" in kinds and kinds[-1] == "reconnected"
            retry = next(data for kind, data in seen if kind == "retrying")
            assert retry["attempt"] == 1 and isinstance(retry["error"], ConnectionFailed)
            assert client.connects == 2 and client.failures == 0
    assert client.closed and client.session is None and second.is_closed


async def test_gives_up_after_max_attempts_with_the_seeded_schedule() -> None:
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:  # a fake clock: record, do not wait
        slept.append(delay)

    backoff = Backoff(base=1.0, factor=2.0, max_delay=8.0, max_attempts=4, jitter=0.5)
    client = ReconnectingClient(
        f"https://127.0.0.1:{free_port()}/echo",
        client_config(connect_timeout=1.0),
        backoff=backoff,
        rng=random.Random(11),
        sleep=fake_sleep,
    )
    seen = recorder(client)
    async with client:
        with pytest.raises(ConnectionFailed):
            await client.wait_session(timeout=30)
        assert client.gave_up and client.failures == 4
    assert slept == list(backoff.schedule(random.Random(11)))  # 3 retries, then give up
    kinds = [kind for kind, _ in seen]
    assert kinds == ["retrying"] * 3 + ["gave_up"]
    assert isinstance(seen[-1][1], ConnectionFailed)


async def test_no_reconnect_after_an_explicit_close() -> None:
    async with serving() as harness:
        harness.handler = echo
        client = ReconnectingClient(
            harness.url(), client_config(), backoff=FAST, rng=random.Random(2)
        )
        seen = recorder(client)
        async with client:
            session = await client.wait_session(timeout=10)
        assert session.is_closed and client.closed
        await asyncio.sleep(0.3)  # many backoff periods (FAST: at most 0.05 s)
        assert len(harness.requests) == 1
        assert "reconnected" not in [kind for kind, _ in seen]
        with pytest.raises(Exception, match="closed"):
            await client.wait_session(timeout=1)


async def _reconnect_cycles(cycles: int) -> dict[str, int]:
    """A server that closes every session at once: the client reconnects ``cycles``
    times; returns what it holds afterwards."""

    async def accept_and_close(request: SessionRequest) -> None:
        session = await request.accept()
        await session.close(7, "bye")

    async with serving() as harness:
        harness.handler = accept_and_close
        client = ReconnectingClient(
            harness.url(), client_config(), backoff=FAST, rng=random.Random(3)
        )
        async with client:
            await until(lambda: client.connects >= cycles + 1, timeout=60)
            await asyncio.sleep(0.1)
            inner = client.client
            gc.collect()
            held = {
                "sessions": len(inner._sessions),
                "connections": len(inner._connections),
                "tasks": len(inner._tasks),
                "handlers": sum(client.events.listener_count(k) for k in ClientEvent),
                "live_sessions": sum(  # client side (the server's requests keep theirs)
                    1
                    for o in gc.get_objects()
                    if isinstance(o, WebTransportSession) and o.link.is_client
                ),
            }
        assert len(harness.requests) >= cycles + 1
    return held


async def test_reconnects_hold_nothing_per_reconnect() -> None:
    small = await _reconnect_cycles(5)
    large = await _reconnect_cycles(20)
    for name, count in large.items():
        assert count <= 2, (name, small, large)  # one open session and its connection
        assert count <= small[name] + 1, (name, small, large)


# -- ClientFleet ------------------------------------------------------------------------------


async def test_fleet_opens_with_a_concurrency_limit_and_counts() -> None:
    refused = f"https://127.0.0.1:{free_port()}/echo"
    async with serving() as harness:
        harness.handler = echo
        urls = [harness.url("/a"), harness.url("/b")]
        fleet = ClientFleet(
            [*urls, refused], client_config(connect_timeout=2.0), sessions_per_url=3, concurrency=2
        )
        async with fleet:
            sessions = await fleet.connect_all()
            assert len(sessions) == 6 and fleet.peak_connecting == 2
            assert len(fleet.sessions_to(urls[0])) == 3 and not fleet.sessions_to(refused)
            for session in sessions:
                assert await roundtrip(session, b"12345") == b"12345"
                session.send_datagram(b"dgram")
            stats = fleet.stats()
            assert (stats.opened, stats.failed, stats.active) == (6, 3, 6)
            assert stats.bytes_sent == 30 and stats.bytes_received == 30
            assert stats.datagrams_sent == 6
            assert len(fleet.errors) == 3 and all(u == refused for u, _ in fleet.errors)
            await sessions[0].close()
            await until(lambda: fleet.stats().active == 5)
            assert fleet.stats().bytes_sent == 30  # the closed session's bytes stay counted
            again = await fleet.connect_all()  # only the missing ones
            assert len(again) == 6 and fleet.stats().opened == 7
        stats = fleet.stats()
        assert (stats.active, stats.closed) == (0, 7)
        assert not fleet.client._connections and not fleet._sessions


async def _fleet_held(count: int) -> tuple[int, int]:
    async with serving() as harness:
        fleet = ClientFleet([harness.url()], client_config(), sessions_per_url=count)
        async with fleet:
            await fleet.connect_all()
            during = len(fleet._sessions) + len(fleet.client._connections)
        after = len(fleet._sessions) + len(fleet.client._connections) + len(fleet.errors)
    return during, after


async def test_fleet_is_bounded_by_its_session_count() -> None:
    small = await _fleet_held(3)
    large = await _fleet_held(12)
    assert small == (6, 0) and large == (24, 0)  # a session and its connection each
    assert large[0] / small[0] == 4


# -- pooled connections -----------------------------------------------------------------------


async def test_pool_shares_one_connection_per_origin_on_draft16() -> None:
    async with serving(max_sessions=32) as harness:
        harness.handler = echo
        async with WebTransportClient(client_config("draft16"), pool=True) as client:
            sessions = await asyncio.gather(*(client.connect(harness.url()) for _ in range(6)))
            assert len({id(s.link) for s in sessions}) == 1
            assert pool_capacity(sessions[0].link) == 16
            assert harness.server.stats()["connections_total"] == 1
            assert await roundtrip(sessions[3], b"x") == b"x"


async def test_pool_shares_on_draft13_up_to_the_servers_count() -> None:
    """draft-13: flow control on both sides (a server offering draft-13 always announces
    windows), so sessions share a connection up to the server's WT_MAX_SESSIONS."""
    async with serving(max_sessions=3) as harness:
        harness.handler = echo
        async with WebTransportClient(client_config("draft13"), pool=True) as client:
            sessions = [await client.connect(harness.url()) for _ in range(4)]
            assert sessions[0].draft == "draft13"
            assert pool_capacity(sessions[0].link) == 3
            links = [s.link for s in sessions]
            assert links[0] is links[1] is links[2] and links[3] is not links[0]
            assert harness.server.stats()["connections_total"] == 2
            assert await roundtrip(sessions[1], b"y") == b"y"


async def test_pool_never_shares_on_draft02() -> None:
    async with serving() as harness:
        harness.handler = echo
        async with WebTransportClient(client_config("draft02"), pool=True) as client:
            sessions = [await client.connect(harness.url()) for _ in range(3)]
            assert len({id(s.link) for s in sessions}) == 3
            assert pool_capacity(sessions[0].link) == 1


async def test_pool_opens_another_connection_when_the_server_limit_is_reached() -> None:
    async with serving(max_sessions=2) as harness:
        harness.handler = echo
        async with WebTransportClient(client_config("draft16"), pool=4) as client:
            sessions = [await client.connect(harness.url()) for _ in range(3)]
            links = [s.link for s in sessions]
            assert links[0] is links[1] and links[2] is not links[0]
            assert harness.server.stats()["connections_total"] == 2
            assert await roundtrip(sessions[2], b"z") == b"z"


async def _pooled_connections(count: int) -> tuple[int, int]:
    async with (
        serving(max_sessions=64) as harness,
        WebTransportClient(client_config("draft16"), pool=4) as client,
    ):
        await asyncio.gather(*(client.connect(harness.url()) for _ in range(count)))
        opened = harness.server.stats()["connections_total"]
        held = len(client._connections) + len(client._origin_locks)
    return opened, held


async def test_pool_connections_grow_with_sessions_over_pool_size() -> None:
    small = await _pooled_connections(4)
    large = await _pooled_connections(16)
    assert small[0] == 1 and large[0] == 4  # ceil(n / 4): linear, never one per session
    assert small[1] == 1 + 1 and large[1] == 4 + 1  # connections and one origin lock


# -- one UDP socket for a client's connections ---------------------------------------------


def _client_pumps(sessions: list[WebTransportSession]) -> set[int]:
    return {id(s.link.quic_session._protocol) for s in sessions}


@pytest.mark.parametrize("count", [3, 12])
async def test_a_clients_connections_share_one_socket(count: int) -> None:
    """Default ClientConfig: N sessions on N connections use one UDP socket (RFC 9000
    §5.2), every one of them works, and close() leaves no socket — the same at N and 4N."""
    async with serving(max_sessions=64) as harness:
        harness.handler = echo
        client = WebTransportClient(client_config())
        sessions = await asyncio.gather(*(client.connect(harness.url()) for _ in range(count)))
        assert len({id(s.link) for s in sessions}) == count  # a connection each
        assert len(_client_pumps(sessions)) == 1
        pump = sessions[0].link.quic_session._protocol
        assert pump.shared and len(pump.endpoint.connections) == count
        echoed = await asyncio.gather(*(roundtrip(s, b"%d" % i) for i, s in enumerate(sessions)))
        assert echoed == [b"%d" % i for i in range(count)]
        await client.close()
        assert client._sockets is not None and client._sockets.sockets == 0
        async with asyncio.timeout(10):
            await pump.closed


async def test_share_socket_false_gives_each_connection_its_own_socket() -> None:
    async with serving(max_sessions=8) as harness:
        harness.handler = echo
        async with WebTransportClient(client_config(share_socket=False)) as client:
            sessions = [await client.connect(harness.url()) for _ in range(3)]
            assert len(_client_pumps(sessions)) == 3
            assert all(not s.link.quic_session._protocol.shared for s in sessions)
            assert await roundtrip(sessions[2], b"own") == b"own"


def test_bad_urls_fail_at_construction() -> None:
    with pytest.raises(ValueError):
        ReconnectingClient("http://127.0.0.1:4433/x")
    with pytest.raises(ValueError):
        ClientFleet(["https://127.0.0.1:1/ok", "https:///nohost"])
    with pytest.raises(ValueError):
        ClientFleet(["https://127.0.0.1:1/ok"], concurrency=0)
