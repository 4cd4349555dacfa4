"""Objects a stream costs the garbage collector (issue 10: the 1,000-session burst).

Every stream's sending part kept two range lists (acknowledged out of order, lost),
each a ``_RangeList`` holding a ``list``: four GC-tracked objects per sending part that
most streams never use. They now share one empty list until the first out-of-order
acknowledgment or loss (and the chunk and start lists share empty lists until the first
write and once everything was acknowledged). Shown by counting tracked objects per
stream at N and 4N streams, and by random runs checking the shared lists against lists
of the stream's own from the start (the old code's state) and that they stay empty.
"""

from __future__ import annotations

import gc
import random

import pytest

from quic.stream_send import _NO_CHUNKS, _NO_RANGES, _NO_STARTS, SendStream, _RangeList
from tests.support.quicpair import make_pair

N = 25  # 4N stays under the default stream limit (128)


def _tracked_per_stream(n: int) -> float:
    """GC-tracked objects added per stream when a client opens ``n`` streams and
    writes 64 bytes and FIN on each (queued, not sent yet)."""
    pair = make_pair()
    pair.handshake()
    client = pair.client
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(n):
        sid = client.create_stream()
        client.send_stream_data(sid, b"x" * 64, end_stream=True)
    gc.collect()
    return (len(gc.get_objects()) - before) / n


@pytest.mark.parametrize("n", [N, 4 * N])
def test_an_open_stream_costs_few_tracked_objects(n: int) -> None:
    # QuicStream, SendStream, SendCredit, RecvStream, ReceiveWindow, the chunk and
    # start lists: 7 (before: 11, with two range lists of two objects each)
    assert _tracked_per_stream(n) < 8.5


def _own_lists(stream: SendStream) -> SendStream:
    """The stream as it was before: lists of its own from the start."""
    stream._acked = _RangeList()
    stream._lost = _RangeList()
    stream._chunks = []
    stream._starts = []
    return stream


def _run(stream: SendStream, ops: list[tuple[str, int, int, bool]]) -> list[object]:
    """Apply ``ops`` (write / send / ack / lose of recorded frames); what the stream
    reported after each step."""
    frames: list[tuple[int, int, bool]] = []
    seen: list[object] = []
    for op, a, b, flag in ops:
        if op == "write" and stream.final_size is None:
            stream.write(bytes(a), end_stream=flag)
        elif op == "send":
            frame = stream.next_frame(a, 1 << 30)
            if frame is not None:
                offset, data, fin = frame
                frames.append((offset, len(data), fin))
                seen.append((offset, bytes(data), fin))
        elif op in ("ack", "lose") and frames:
            offset, length, fin = frames.pop(b % len(frames))
            (stream.on_acked if op == "ack" else stream.on_lost)(offset, length, fin)
        seen.append((stream.state, stream.buffered, stream.needs_send, stream.highest_sent))
    return seen


@pytest.mark.parametrize("seed", range(40))
def test_the_shared_empty_range_list_gives_the_same_frames(seed: int) -> None:
    rng = random.Random(seed)
    ops = [
        (
            rng.choice(["write", "send", "send", "ack", "ack", "lose"]),
            rng.randrange(1, 3000),
            rng.randrange(1 << 20),
            rng.random() < 0.1,
        )
        for _ in range(200)
    ]
    ops += [("send", 1200, 0, False)] * 50 + [("ack", 0, 0, False)] * 100
    shared = SendStream(0, 1 << 30)
    assert shared._acked is _NO_RANGES and shared._lost is _NO_RANGES
    assert _run(shared, ops) == _run(_own_lists(SendStream(0, 1 << 30)), ops)
    assert _NO_RANGES.b == [] and _NO_CHUNKS == [] and _NO_STARTS == []  # never written to
