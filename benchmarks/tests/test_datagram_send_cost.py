"""The send half of a WebTransport datagram round trip (issue 10, ``wt-dgram``): the
Python calls it makes, counted (not timed) on the whole stack of
:mod:`benchmarks.micro.bench_wt_datagram` — both sides on one loop over loopback.

Counted: every Python function called while a side is inside
``WebTransportSession.send_datagram`` (the API down to the QUIC datagram queue and the
pump's wake-up) or inside the pump's flush (the build, the endpoint's bookkeeping, the
deadline, the socket send), per round trip (one datagram sent by each side). Before the
reply path (``quic.conn_send.SendScheduler._write_reply``), the deadline and datagram
chain cuts it was 338 calls per round trip; a budget of 300 fails that code. N and 4N
round trips cost the same per round trip (linear, no growth)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.micro import bench_wt_datagram

BUDGET = 300  # Python calls per round trip, both sides' send halves (338 before)
N = 40


def _roots(frame: FrameType) -> bool:
    code = frame.f_code
    name = code.co_name
    if name == "send_datagram":
        return code.co_filename.endswith(("pywebtransport/session.py",))
    return name == "_flush" and code.co_filename.endswith("quic/aio/pump.py")


def _calls_per_round_trip(pair: Any, round_trips: int) -> float:
    depth = 0
    calls = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal depth, calls
        if event == "call":
            if _roots(frame):
                depth += 1
            elif depth:
                calls += 1
        elif event == "return" and _roots(frame):
            depth -= 1

    async def rounds() -> None:
        session = pair.session
        payload = bench_wt_datagram.PAYLOAD
        for _ in range(round_trips):
            await session.send_datagram(payload)
            assert await session.receive_datagram() == payload

    sys.setprofile(profile)
    try:
        pair.loop.run_until_complete(rounds())
    finally:
        sys.setprofile(None)
    return calls / round_trips


def test_send_half_calls_per_round_trip() -> None:
    with tempfile.TemporaryDirectory() as directory:
        pair = bench_wt_datagram._Echo(Path(directory))
        try:
            pair.loop.run_until_complete(pair.round())  # warm: timers and ACKs settle
            small = _calls_per_round_trip(pair, N)
            large = _calls_per_round_trip(pair, 4 * N)
        finally:
            pair.close()
    assert small <= BUDGET and large <= BUDGET, (small, large)
    assert 0.9 < large / small < 1.1  # the same per round trip: linear in round trips
