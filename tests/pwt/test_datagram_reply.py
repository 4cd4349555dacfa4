"""A datagram a task sends after a read leaves from the send call itself
(``QuicEndpointProtocol.wake`` with ``reply``, quic.aio.pump "Replies made at once"): with
the ACK of what was read, before the task's next await; the read's flush, queued behind
the task, then finds nothing left and transmits nothing. A second datagram before the
next read, or anything else woken meanwhile, still leaves at that flush.

Counters, not times: datagrams sent before any await, transmits per round trip, on
asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from pywebtransport import WebTransportClient
from tests.pwt.pwt_support import TIMEOUT, client_config, echo, running

pytestmark = pytest.mark.timeout(60)

N = 25


async def _round_trips() -> tuple[int, int, int, int, int]:
    """N round trips after a warm-up; returns (datagrams sent at once, transmits, echoes
    right, the burst's datagrams sent at once, the burst's datagrams sent after)."""
    async with running() as h, WebTransportClient(client_config()) as client:
        h.handler = echo
        session = await client.connect(h.url())
        pump = session._link.quic_session._protocol
        at_once = good = 0
        async with asyncio.timeout(TIMEOUT):
            for _ in range(5):  # warm-up: handshake confirmed, first ACKs out
                await session.send_datagram(b"warm")
                assert await session.receive_datagram() == b"warm"
            transmits = pump.transmits
            for i in range(N):
                sent = pump.datagrams_sent
                session.send_datagram(b"ping %d" % i)
                at_once += pump.datagrams_sent - sent  # gone before any await
                good += await session.receive_datagram() == b"ping %d" % i
            transmits = pump.transmits - transmits
            sent = pump.datagrams_sent
            session.send_datagram(b"one")
            session.send_datagram(b"two")  # waits for the flush: a burst leaves together
            burst_at_once = pump.datagrams_sent - sent
            got = sorted([await session.receive_datagram() for _ in range(2)])
            assert got == [b"one", b"two"]
            burst_after = pump.datagrams_sent - sent
        return at_once, transmits, good, burst_at_once, burst_after


def _check(result: tuple[int, int, int, int, int]) -> None:
    at_once, transmits, good, burst_at_once, burst_after = result
    assert good == N
    assert at_once == N  # before: 0, each left at the flush after the task's await
    assert transmits < N / 5, transmits  # the flushes found nothing (before: one per rt)
    assert burst_at_once == 1
    assert burst_after >= 2


async def test_a_task_reply_leaves_from_send_datagram_and_the_flush_sends_nothing() -> None:
    _check(await _round_trips())


def test_on_uvloop_too() -> None:
    uvloop = pytest.importorskip("uvloop")
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    main: Coroutine[Any, Any, tuple[int, int, int, int, int]] = _round_trips()
    with asyncio.Runner(loop_factory=factory) as runner:
        _check(runner.run(main))


async def test_something_woken_after_the_reply_leaves_at_the_flush() -> None:
    """Another connection woken between the reply's send and the flush (a second
    session's datagram, through wake()) is served by that flush: the quick path
    declines."""
    async with running() as h, WebTransportClient(client_config()) as client:
        h.handler = echo
        first = await client.connect(h.url())
        second = await client.connect(h.url())
        pump = first._link.quic_session._protocol
        assert second._link.quic_session._protocol is pump  # one shared socket
        async with asyncio.timeout(TIMEOUT):
            for _ in range(3):
                await first.send_datagram(b"warm")
                assert await first.receive_datagram() == b"warm"
            for i in range(N):
                sent = pump.datagrams_sent
                first.send_datagram(b"a %d" % i)  # the first since the read: at once
                second.send_datagram(b"b %d" % i)  # woken after it: at the flush
                assert pump.datagrams_sent == sent + 1
                assert await second.receive_datagram() == b"b %d" % i
                assert await first.receive_datagram() == b"a %d" % i


async def test_an_event_queued_after_the_reply_is_handed_up_by_the_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The flush after a reply that left at once hands up an event queued meanwhile and
    then transmits as usual; with none it transmits nothing (the quick path)."""
    async with running() as h, WebTransportClient(client_config()) as client:
        h.handler = echo
        session = await client.connect(h.url())
        pump = session._link.quic_session._protocol
        endpoint = pump.endpoint
        async with asyncio.timeout(TIMEOUT):
            for _ in range(3):
                await session.send_datagram(b"warm")
                assert await session.receive_datagram() == b"warm"
            for inject in (False, True):
                await session.send_datagram(b"ping")
                assert await session.receive_datagram() == b"ping"  # the read's flush queued
                sent = pump.datagrams_sent
                session.send_datagram(b"reply")
                assert pump.datagrams_sent == sent + 1  # left at once
                sentinel = (session._link.quic_session.connection, object())
                queued = [sentinel] if inject else []
                handed: list[Any] = []
                next_event = endpoint.next_event
                dispatch = pump._dispatch

                def injected(queued: list[Any] = queued, next_event: Any = next_event) -> Any:
                    return queued.pop() if queued else next_event()

                def recording(
                    item: Any = None,
                    dispatch: Any = dispatch,
                    handed: list[Any] = handed,
                    sentinel: Any = sentinel,
                ) -> None:
                    handed.append(item)
                    if item is not sentinel:
                        dispatch(item)

                monkeypatch.setattr(endpoint, "next_event", injected)
                monkeypatch.setattr(pump, "_dispatch", recording)
                transmits = pump.transmits
                await asyncio.sleep(0)  # the flush runs (queued before this step's end)
                monkeypatch.undo()
                if inject:
                    assert handed[:1] == [sentinel]
                    assert pump.transmits == transmits + 1  # and it transmitted
                else:
                    assert handed == []
                    assert pump.transmits == transmits  # nothing came: nothing to do
                assert await session.receive_datagram() == b"reply"
