"""Stream reassembly: STREAM frames in order, out of order and duplicated, then read."""

from __future__ import annotations

from typing import Any

from quic.stream_recv import RecvStream

FRAME = 1100
FRAMES = 256
DATA = bytes(FRAME)
WINDOW = FRAME * FRAMES * 2


def _receive(order: list[int]) -> int:
    stream = RecvStream(0, WINDOW)
    for index in order:
        stream.on_stream_frame(index * FRAME, DATA, index == FRAMES - 1)
    return len(stream.read())


def test_in_order(benchmark: Any) -> None:
    assert benchmark(_receive, list(range(FRAMES))) == FRAME * FRAMES


def test_reverse_order(benchmark: Any) -> None:
    # worst case for the hole list: every frame arrives before the one it follows
    assert benchmark(_receive, list(range(FRAMES - 1, -1, -1))) == FRAME * FRAMES


def test_pairs_swapped_with_duplicates(benchmark: Any) -> None:
    order = []
    for index in range(0, FRAMES, 2):
        order += [index + 1, index, index + 1]  # a reordered pair and a retransmission
    assert benchmark(_receive, order) == FRAME * FRAMES
