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
        # strictly later than the send before, FIN included: timers due at the same
        # instant may run in any order
        self.free_at = max(self.free_at, loop.time()) + max(len(data) / self.rate, 1e-6)
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


class _CutLink(_Link):
    """A link whose peer echoes ``cut`` bytes, then ends the echo (FIN) and reads no
    more: the writer is held back by the window from then on."""

    def __init__(self, rate: float, window: int, cut: int) -> None:
        super().__init__(rate, window)
        self.cut = cut
        self.sent = 0

    def _send(self, data: bytes) -> None:
        if self.sent >= self.cut:
            return  # swallowed: never echoed, never frees the window
        self.sent += len(data)
        super()._send(data)
        if self.sent >= self.cut:
            super()._send(b"")


def test_an_echo_that_ends_early_returns_at_once() -> None:
    async def main() -> tuple[int, list[float], float]:
        link = _CutLink(20e6, window=2 * MIB, cut=MIB + MIB // 2)
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def at_slice() -> None:
            pass

        async with asyncio.timeout(5):
            received, rates = await echo_in_slices(link, 8 * MIB, MIB, at_slice)
        return received, rates, loop.time() - start

    received, rates, took = asyncio.run(main())
    assert received == MIB + MIB // 2  # short: the caller reports the shortfall
    assert len(rates) == 1
    assert took < 1.0
