"""The pump's clock (quic.aio.pump, "The clock"): asyncio's loops keep loop.time();
any other loop (uvloop: a cached millisecond clock, timers rounded to milliseconds)
hands the endpoint time.monotonic and arms no timer under COARSE_TIMER ahead."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from quic.aio.pump import COARSE_TIMER, QuicEndpointProtocol


class _Endpoint:
    """What _arm_timer asks of the endpoint: its earliest deadline."""

    def __init__(self) -> None:
        self.deadline: float | None = None

    def get_timer(self) -> float | None:
        return self.deadline


def _delays(protocol: QuicEndpointProtocol, ahead: tuple[float, ...]) -> list[float]:
    """The delays ``call_later`` got for deadlines ``ahead`` seconds from now."""
    loop = protocol.loop
    delays: list[float] = []
    call_later = loop.call_later

    def spy(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        delays.append(delay)
        return call_later(delay, callback, *args)

    protocol.loop = type("Spy", (), {"call_later": staticmethod(spy)})()  # type: ignore[assignment]
    endpoint = protocol.endpoint
    for seconds in ahead:
        protocol._timer_at = None  # a new deadline each time, not a later one
        if protocol._timer is not None:
            protocol._timer.cancel()
            protocol._timer = None
        endpoint.deadline = protocol.clock() + seconds  # type: ignore[attr-defined]
        protocol._arm_timer()
    protocol.loop = loop
    if protocol._timer is not None:
        protocol._timer.cancel()
    return delays


def test_asyncio_keeps_its_loop_clock_and_exact_timers() -> None:
    async def run() -> tuple[bool, list[float]]:
        protocol = QuicEndpointProtocol(_Endpoint())  # type: ignore[arg-type]
        same = protocol.clock is time.monotonic  # what asyncio's loop.time() returns
        return same, _delays(protocol, (0.0002, 0.01, -0.001))

    same, delays = asyncio.run(run())
    assert same
    assert delays[0] < COARSE_TIMER / 2  # not rounded up
    assert 0.009 < delays[1] <= 0.01
    assert delays[2] <= 0  # already due: at once


def test_an_asyncio_loop_with_a_clock_of_its_own_keeps_it() -> None:
    class Stepped(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return 42.0

    async def run() -> tuple[float, float]:
        protocol = QuicEndpointProtocol(_Endpoint())  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        loop.time = lambda: 7.0  # type: ignore[method-assign]  # an instance's own
        other = QuicEndpointProtocol(_Endpoint())  # type: ignore[arg-type]
        return protocol.clock(), other.clock()

    loop = Stepped()
    try:
        assert loop.run_until_complete(run()) == (42.0, 7.0)
    finally:
        loop.close()


def test_other_loops_get_a_fine_clock_and_no_timer_under_their_resolution() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def run() -> tuple[bool, float, float, list[float]]:
        loop = asyncio.get_running_loop()
        protocol = QuicEndpointProtocol(_Endpoint())  # type: ignore[arg-type]
        before = time.monotonic()
        now = protocol.clock()
        return (
            protocol.clock is time.monotonic,
            now - before,
            loop.time() - now,
            _delays(protocol, (0.0002, 0.01, -0.001)),
        )

    fine, step, behind, delays = uvloop.run(run())
    assert fine
    assert 0 <= step < 0.5  # the monotonic clock itself
    assert behind < COARSE_TIMER + 0.01  # the same base as uvloop's rounded clock
    assert delays[0] == COARSE_TIMER  # due in 0.2 ms: armed a millisecond ahead
    assert 0.009 < delays[1] <= 0.01
    assert delays[2] <= 0  # already due: at once
