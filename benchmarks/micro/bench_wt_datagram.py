"""WebTransport datagram ping-pong through the whole stack, both sides in one process.

A :class:`~pywebtransport.WebTransportServer` echoing datagrams (``benchmarks.wt_ours``)
and a :class:`~pywebtransport.WebTransportClient` on one asyncio loop, over loopback
UDP: one round is ``ROUND_TRIPS`` 64-byte datagrams, one in flight — the QUIC, HTTP/3,
WebTransport and asyncio work of both sides per round trip, plus two ``sendmsg``. The
``wt-dgram`` row of ``python -m benchmarks.harness`` runs the same with the two sides in
separate processes.

``python -m pytest benchmarks/micro/bench_wt_datagram.py``

Instructions per round trip (load-independent): run
``python -m benchmarks.micro.bench_wt_datagram --rounds R --clock-step 0.00003`` under
``valgrind --tool=callgrind`` with R = 1 and R = 6 (``PYTHONHASHSEED=0``, the tree
byte-compiled first) and divide the difference by 1,000. ``--clock-step`` replaces the
loop's clock by one that advances that many seconds per reading, so timers fire at the
same points in every run (run to run, the count still moves by about 1 %).

Critical path (load-independent): in the ``wt-dgram`` row the two sides overlap, so
what a side does after its ``sendmsg`` runs while the peer works, on another core.
Add ``--dump-before=sock_recvmsg --dump-before=sock_sendmsg`` to the callgrind run
(R = 1): each dump then holds the instructions since the previous one, and the parts
that run from a ``recvmsg`` dump to a ``sendmsg`` dump are a side's work from reading a
datagram to sending the reply (at 41524d2: median 291,024 per datagram, 51,964 from
``sendmsg`` to the next ``recvmsg``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import wt_ours
from benchmarks.micro.wt_inproc import serve_here, server_args

ROUND_TRIPS = 200
PAYLOAD = os.urandom(64)


class _Echo:
    """The server and one client session on a loop of their own."""

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.args = server_args(directory, 16)
        self.stop = asyncio.Event()
        self.session: Any = None
        self.server: asyncio.Future[None] | None = None
        self.loop.run_until_complete(self._open())

    async def _open(self) -> None:
        self.server, self.stop = await serve_here(self.args)
        port = self.args.port
        self.session = await wt_ours.open_session(self.args, f"https://127.0.0.1:{port}/echo")
        await self.round()  # warm: the handshake's ACKs and DPLPMTUD out of the way

    async def round(self) -> int:
        session = self.session
        for _ in range(ROUND_TRIPS):
            await session.send_datagram(PAYLOAD)
            await session.receive_datagram()
        return ROUND_TRIPS

    def close(self) -> None:
        async def shut() -> None:
            await self.session.close()
            self.stop.set()
            if self.server is not None:
                await self.server

        self.loop.run_until_complete(shut())
        wt_ours._clients.clear()
        self.loop.close()


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[_Echo]:
    pair = _Echo(tmp_path)
    yield pair
    pair.close()


def test_wt_datagram_round_trips(benchmark: Any, echo: _Echo) -> None:
    """200 round trips per round (divide the mean by 200 for one)."""
    done = benchmark.pedantic(
        lambda: echo.loop.run_until_complete(echo.round()), rounds=10, iterations=1
    )
    assert done == ROUND_TRIPS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="rounds of 200 round trips")
    parser.add_argument("--clock-step", type=float, default=0.0, help="seconds per clock read")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        pair = _Echo(Path(directory))
        if args.clock_step:
            clock = [pair.loop.time()]

            def step() -> float:
                clock[0] += args.clock_step
                return clock[0]

            pair.loop.time = step  # type: ignore[method-assign]
            # the pumps read their own clock (bound when they were made: the loop's
            # time(), or time.monotonic): the stepped one too, else the timers follow
            # the wall clock, which valgrind slows down by a varying factor
            import gc

            from quic.aio.pump import QuicEndpointProtocol

            for obj in gc.get_objects():
                if isinstance(obj, QuicEndpointProtocol):
                    obj.clock = step
            pair.loop.run_until_complete(pair.round())  # warm on the stepped clock
        for _ in range(args.rounds):
            pair.loop.run_until_complete(pair.round())
        pair.close()


if __name__ == "__main__":
    main()
