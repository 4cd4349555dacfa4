"""The long echo's slices (``benchmarks.wt_common.echo_in_slices``): each slice's rate is
the echo's, however long the server's figures take between slices."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.wt_common import MIB, echo_in_slices


class _Link:
    """A fake stream: what is written comes back through one serial link of ``rate``
    bytes per second, with at most ``window`` bytes written and not yet read (as a
    stream's flow-control window holds a writer back)."""

    def __init__(self, rate: float, window: int) -> None:
        self.rate = rate
        self.window = window
        self.outstanding = 0
        self.free_at = 0.0
        self.back: asyncio.Queue[bytes] = asyncio.Queue()
        self.room = asyncio.Event()
        self.written = 0

    def _send(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.free_at = max(self.free_at, loop.time()) + len(data) / self.rate
        loop.call_at(self.free_at, self.back.put_nowait, data)

    async def write(self, data: bytes) -> None:
        while self.outstanding + len(data) > self.window:
            self.room.clear()
            await self.room.wait()
        self.outstanding += len(data)
        self.written += len(data)
        self._send(bytes(data))

    async def write_eof(self) -> None:
        self._send(b"")

    async def read(self) -> bytes:
        data = await self.back.get()
        self.outstanding -= len(data)
        self.room.set()
        return data


def test_a_slow_stats_request_between_slices_does_not_inflate_the_next_slice() -> None:
    rate = 20e6  # bytes per second: each 1 MiB slice takes about 52 ms
    pauses: list[int] = []

    async def main() -> tuple[int, list[float], _Link]:
        link = _Link(rate, window=2 * MIB)

        async def at_slice() -> None:
            pauses.append(link.outstanding)  # nothing in flight when the figures are taken
            await asyncio.sleep(0.2)  # a server slow to write its stats: 4x a slice

        received, rates = await echo_in_slices(link, 4 * MIB + 1000, MIB, at_slice)
        return received, rates, link

    received, rates, link = asyncio.run(main())
    assert received == link.written == 4 * MIB + 1000
    assert len(rates) == 4  # whole slices only
    assert pauses == [0, 0, 0, 0]
    for measured in rates:  # the link's 20 MB/s, not what piled up during a pause
        assert 0.6 * rate / 1e6 <= measured <= 1.15 * rate / 1e6, rates


def test_a_slice_size_must_be_positive() -> None:
    async def main() -> None:
        async def at_slice() -> None:
            pass

        await echo_in_slices(_Link(1e6, MIB), MIB, 0, at_slice)

    with pytest.raises(ValueError):
        asyncio.run(main())
