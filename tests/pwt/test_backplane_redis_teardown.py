"""RedisBackplane's teardown is bounded whatever redis-py does: a client whose blocking
read swallows its cancellation and whose closes never return (the shape of a hang seen
once in CI: ``close()`` waiting with no timer left) still lets ``close()`` return, and
the read ends once its connection is closed. A fake redis module, no server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pywebtransport.backplane import BackplaneConfig, RedisBackplane, redis_pubsub

pytestmark = pytest.mark.timeout(30)


class StubbornPubSub:
    """get_message blocks until the connection is closed and ignores cancellation;
    aclose closes the connection, then never returns."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.reads_cancelled = 0
        self.read_ended = False

    async def subscribe(self, *channels: bytes) -> None:
        pass

    async def unsubscribe(self, *channels: bytes) -> None:
        pass

    async def get_message(self, **_: Any) -> dict[str, Any] | None:
        while not self.closed.is_set():
            try:
                await self.closed.wait()
            except asyncio.CancelledError:
                self.reads_cancelled += 1  # the bug: swallowed, the read goes on
        self.read_ended = True
        raise ConnectionError("connection closed")

    async def aclose(self) -> None:
        self.closed.set()
        await asyncio.Event().wait()  # the bug: never returns


class Pipeline:
    def publish(self, channel: bytes, body: bytes) -> None:
        pass

    async def execute(self) -> list[int]:
        return []


class StubbornClient:
    def __init__(self) -> None:
        self.pubsubs: list[StubbornPubSub] = []

    async def ping(self) -> bool:
        return True

    def pubsub(self, **_: Any) -> StubbornPubSub:
        self.pubsubs.append(StubbornPubSub())
        return self.pubsubs[-1]

    def pipeline(self, **_: Any) -> Pipeline:
        return Pipeline()

    async def publish(self, channel: bytes, body: bytes) -> int:
        return 0

    async def aclose(self) -> None:
        await asyncio.Event().wait()  # the bug: never returns


class FakeRedisModule:
    def __init__(self) -> None:
        self.clients: list[StubbornClient] = []
        module = self

        class Redis:
            @staticmethod
            def from_url(url: str, **_: Any) -> StubbornClient:
                module.clients.append(StubbornClient())
                return module.clients[-1]

        self.Redis = Redis


async def test_close_returns_though_redis_py_never_lets_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_pubsub, "CLOSE_TIMEOUT", 0.2)
    bp = RedisBackplane("redis://127.0.0.1:1/0", config=BackplaneConfig(heartbeat=0.05))
    fake = FakeRedisModule()
    bp._redis = fake
    await bp.start()
    await bp.wait_connected(5.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with asyncio.timeout(10.0):  # unbounded before: close() never returned
        await bp.close()
    assert loop.time() - began < 2.0  # about three steps of 0.2 s
    (client,) = fake.clients
    (pubsub,) = client.pubsubs
    assert pubsub.reads_cancelled >= 1  # the read ignored its cancellation ...
    assert pubsub.closed.is_set()  # ... its connection was closed regardless ...
    for _ in range(100):
        if pubsub.read_ended:
            break
        await asyncio.sleep(0.01)
    assert pubsub.read_ended  # ... and that ended it: no task left behind
    assert not bp.connected
