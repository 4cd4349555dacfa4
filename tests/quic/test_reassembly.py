"""Out-of-order STREAM data: merged segments, bounded memory and work, limits (issue 8,
finding 5; RFC 9000 §2.2, §21.7).

Scale tests compare N with 4N inputs using counters: segments held, chunk objects,
bytes retained (tracemalloc) and Python lines executed (tests.support.opcount). No
clock is read.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Callable

import pytest

from quic import reassembly
from quic.connection import ConnectionState
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import ConnectionTerminated
from quic.frames import encode_stream_frame_header
from quic.stream_manager import StreamLimits, StreamManager
from quic.stream_recv import (
    DEFAULT_MAX_STREAM_FRAGMENTS,
    SMALL_CHUNK,
    ReassemblyBudget,
    RecvStream,
)
from tests.support.inject import one_rtt_from
from tests.support.opcount import count_lines
from tests.support.quicpair import CLIENT_ADDR, make_pair

WINDOW = 1 << 24


def message(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def retained(build: Callable[[], object]) -> tuple[int, object]:
    """Bytes still allocated after ``build()`` (its result kept alive)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, result


def holes(r: RecvStream) -> int:
    """Holes after the first missing byte, computed from the stored ranges."""
    ooo = r.reassembly
    return len(ooo.starts)


# ---------------------------------------------------------------------- merging


def test_adjacent_fragments_merge_into_one_segment() -> None:
    data = message(5000)
    r = RecvStream(0, WINDOW, max_fragments=5000)
    offsets = list(range(1, len(data)))
    random.Random(1).shuffle(offsets)
    for off in offsets:
        r.on_stream_frame(off, data[off : off + 1], False)
        assert r.fragments >= 1
    assert r.fragments == 1  # one hole (byte 0) -> one segment
    assert r.out_of_order_bytes == len(data) - 1
    # no two short chunks are adjacent: at most 2 b / SMALL_CHUNK + 1 chunk objects
    assert r.reassembly.chunk_count() <= 2 * len(data) // SMALL_CHUNK + 1
    r.on_stream_frame(0, data[:1], False)
    assert r.read() == data
    assert r.fragments == 0 and r.out_of_order_bytes == 0


def test_segment_count_equals_hole_count() -> None:
    rng = random.Random(7)
    data = message(20000, 7)
    r = RecvStream(0, WINDOW)
    covered = bytearray(len(data))  # model: which bytes were received
    for _ in range(400):
        off = rng.randrange(1, len(data))
        n = rng.randrange(0, 200)
        r.on_stream_frame(off, data[off : off + n], False)
        covered[off : off + n] = b"\x01" * len(covered[off : off + n])
        runs = 0
        prev = 0
        for b in covered:
            if b and not prev:
                runs += 1
            prev = b
        assert r.fragments == runs
        assert r.out_of_order_bytes == sum(covered)
    r.on_stream_frame(0, data, True)
    assert r.read() == data


def test_large_frames_are_kept_without_copy() -> None:
    r = RecvStream(0, WINDOW)
    frames = [bytes([i]) * 1200 for i in range(10)]
    for i in (3, 1, 2):
        r.on_stream_frame(1 + 1200 * i, frames[i], False)
    seg = r.reassembly.segments[0]
    assert [c is f for c, f in zip(seg, frames[1:4], strict=True)] == [True] * 3


# ---------------------------------------------------------------------- finding 5 at scale


def _tiny_fragments(window: int) -> Callable[[], RecvStream]:
    """1-byte frames every other byte, then the bytes between, in blocks of 64 bytes
    (so the holes never exceed the default limits), byte 0 never: all held out of order."""
    data = message(window, 3)
    rng = random.Random(4)
    order: list[int] = []
    for base in range(0, window, 64):
        odd = list(range(base + 1, min(base + 64, window), 2))
        even = [o for o in range(base, min(base + 64, window), 2) if o]
        rng.shuffle(odd)
        rng.shuffle(even)
        order += odd + even
    frames = [(o, data[o : o + 1]) for o in order]

    def build() -> RecvStream:
        r = RecvStream(0, window)
        for off, piece in frames:
            r.on_stream_frame(off, piece, False)
        return r

    return build


def test_tiny_fragments_cost_about_one_byte_per_byte() -> None:
    """Finding 5: tiny out-of-order fragments used to cost ~60x their size."""
    results = {}
    for window in (16 * 1024, 64 * 1024):  # N and 4N
        size, r = retained(_tiny_fragments(window))
        assert isinstance(r, RecvStream)
        assert r.out_of_order_bytes == window - 1
        assert r.fragments == 1
        results[window] = size
        assert size < 1.5 * window, f"{size / window:.1f} bytes per byte"
    ratio = results[64 * 1024] / results[16 * 1024]
    assert 3.0 < ratio < 5.0


def test_every_other_byte_hits_the_fragment_limit_with_bounded_memory() -> None:
    """1-byte fragments every other byte in a 64 KiB window: N vs 4N fragments."""
    window = 64 * 1024
    data = message(window, 5)
    sizes = {}
    for n in (1000, 4000):
        offsets = list(range(1, 2 * n, 2))

        def build(offsets: list[int] = offsets) -> tuple[RecvStream, int]:
            r = RecvStream(0, window)
            refused = 0
            for off in offsets:
                try:
                    r.on_stream_frame(off, data[off : off + 1], False)
                except QuicProtocolError as exc:
                    assert exc.error_code == TransportErrorCode.PROTOCOL_VIOLATION
                    refused += 1
            return r, refused

        size, (r, refused) = retained(build)  # type: ignore[misc]
        assert r.fragments <= DEFAULT_MAX_STREAM_FRAGMENTS
        sizes[n] = size
        if n > DEFAULT_MAX_STREAM_FRAGMENTS:
            assert refused == n - DEFAULT_MAX_STREAM_FRAGMENTS
    # past the limit nothing more is kept
    assert sizes[4000] < 1.5 * sizes[1000]
    # and what is kept is a small constant per hole
    assert sizes[4000] < 200 * DEFAULT_MAX_STREAM_FRAGMENTS


def test_retransmission_over_merged_fragments_costs_constant_work() -> None:
    """Finding 5: a frame repeated over many adjacent fragments used to walk them all."""
    costs = {}
    for n in (1000, 4000):
        data = message(n + 1, 6)
        r = RecvStream(0, WINDOW)
        for off in range(1, n + 1):  # adjacent 1-byte frames, ascending
            r.on_stream_frame(off, data[off : off + 1], False)
        assert r.fragments == 1
        costs[n], _ = count_lines(r.on_stream_frame, 1, data[1:], False)
        again, _ = count_lines(r.on_stream_frame, 1, data[1:], False)
        assert again <= costs[n]
        r.on_stream_frame(0, data[:1], False)
        assert r.read() == data
    assert costs[4000] < 1.5 * costs[1000]


def test_frame_spanning_many_segments_is_linear_in_segments_merged() -> None:
    costs = {}
    for n in (500, 2000):
        data = message(2 * n + 2, 8)
        r = RecvStream(0, WINDOW, max_fragments=10 * n)
        for off in range(1, 2 * n + 1, 2):  # n holes
            r.on_stream_frame(off, data[off : off + 1], False)
        assert r.fragments == n
        costs[n], _ = count_lines(r.on_stream_frame, 1, data[1 : 2 * n + 1], False)
        assert r.fragments == 1
        repeat, _ = count_lines(r.on_stream_frame, 1, data[1 : 2 * n + 1], False)
        assert repeat < 40  # a duplicate now: two bisections
    assert costs[2000] < 6 * costs[500]


@pytest.mark.parametrize("pattern", ["descending", "grow_left", "random"])
def test_hostile_orders_cost_linear_work(pattern: str) -> None:
    """Total work for N tiny frames grows linearly whatever their order (prepends to a
    large segment, repeated merges of a large segment into a new left neighbour)."""
    costs = {}
    for n in (1500, 6000):
        data = message(4 * n + 10, 9)
        frames: list[tuple[int, bytes]] = []
        top = 4 * n + 8
        # a large segment to the right, then the hostile pattern below it
        frames.append((top - 3000, data[top - 3000 : top]))
        if pattern == "descending":
            frames += [(off, data[off : off + 1]) for off in range(top - 3001, top - 3001 - n, -1)]
        elif pattern == "grow_left":
            # a 1-byte segment two bytes below the big one, then the byte between:
            # each round merges the big segment into its new left neighbour
            low = top - 3000
            for _ in range(n // 2):
                frames.append((low - 2, data[low - 2 : low - 1]))
                frames.append((low - 1, data[low - 1 : low]))
                low -= 2
        else:
            rng = random.Random(10)
            for _ in range(n):
                off = rng.randrange(1, top)
                frames.append((off, data[off : off + rng.randrange(1, 4)]))

        def feed(frames: list[tuple[int, bytes]] = frames) -> RecvStream:
            r = RecvStream(0, WINDOW, max_fragments=len(frames) + 1)
            for off, piece in frames:
                r.on_stream_frame(off, piece, False)
            return r

        costs[n], r = count_lines(feed)
        assert r.reassembly.chunk_count() <= 2 * r.out_of_order_bytes // SMALL_CHUNK + r.fragments
        r.on_stream_frame(0, data[:top], False)
        assert r.read() == data[:top]
    assert costs[6000] < 5 * costs[1500]


# ---------------------------------------------------------------------- limits


def test_stream_fragment_limit_refuses_before_any_change() -> None:
    r = RecvStream(0, 10_000, max_fragments=3)
    for off in (10, 20, 30):
        r.on_stream_frame(off, b"x", False)
    with pytest.raises(QuicProtocolError) as info:
        r.on_stream_frame(40, b"x", False)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    assert r.fragments == 3 and r.out_of_order_bytes == 3
    # growing or merging existing segments is always allowed
    r.on_stream_frame(11, b"y" * 9, False)
    assert r.fragments == 2
    r.on_stream_frame(40, b"x", False)
    assert r.fragments == 3


def test_crypto_limit_error_code() -> None:
    r = RecvStream(-1, 4096, max_fragments=2, limit_error=TransportErrorCode.CRYPTO_BUFFER_EXCEEDED)
    r.on_stream_frame(5, b"a", False)
    r.on_stream_frame(7, b"a", False)
    with pytest.raises(QuicProtocolError) as info:
        r.on_stream_frame(9, b"a", False)
    assert info.value.error_code == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED


def _manager(**kwargs: int) -> StreamManager:
    limits = StreamLimits(16, 16, WINDOW, WINDOW, WINDOW)
    return StreamManager(False, limits, limits, **kwargs)


def test_connection_budget_is_shared_by_streams() -> None:
    m = _manager(max_stream_fragments=100, max_reassembly_fragments=5)
    budget = m.reassembly
    for sid in (0, 4):
        for off in (10, 20):
            m.on_stream_frame(sid, off, b"x", False)
    assert budget.fragments == 4 and budget.bytes == 4
    m.on_stream_frame(8, 10, b"x", False)
    with pytest.raises(QuicProtocolError) as info:
        m.on_stream_frame(8, 20, b"x", False)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    assert info.value.frame_type == 0x08
    assert budget.fragments == 5


def test_connection_byte_budget() -> None:
    m = _manager(max_reassembly_bytes=1000)
    m.on_stream_frame(0, 1, b"x" * 600, False)
    with pytest.raises(QuicProtocolError) as info:
        m.on_stream_frame(4, 1, b"x" * 401, False)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    m.on_stream_frame(4, 1, b"x" * 400, False)
    assert m.reassembly.bytes == 1000
    # data overlapping what is held costs nothing more
    m.on_stream_frame(0, 1, b"x" * 600, False)
    assert m.reassembly.bytes == 1000


def test_budget_released_by_delivery_and_reset() -> None:
    m = _manager()
    budget = m.reassembly
    m.on_stream_frame(0, 5, b"abc", False)
    m.on_stream_frame(0, 10, b"abc", False)
    m.on_stream_frame(4, 10, b"abc", False)
    assert (budget.bytes, budget.fragments) == (9, 3)
    m.on_stream_frame(0, 0, b"01234", False)  # reaches the first segment only
    assert (budget.bytes, budget.fragments) == (6, 2)
    m.on_stream_frame(0, 8, b"xx", False)
    assert (budget.bytes, budget.fragments) == (3, 1)
    m.on_reset_stream(4, 0, 20)
    assert (budget.bytes, budget.fragments) == (0, 0)


def test_budget_repr_and_check() -> None:
    b = ReassemblyBudget(10, 2)
    b.check(10, 2)
    with pytest.raises(QuicProtocolError):
        b.check(11, 0)
    with pytest.raises(QuicProtocolError):
        b.check(0, 3)
    b.check(0, -5)  # merging never fails on fragments
    assert "0/10" in repr(b)


def test_overlap_with_ready_data_and_segments() -> None:
    data = message(3000, 11)
    r = RecvStream(0, WINDOW)
    r.on_stream_frame(100, data[100:200], False)
    r.on_stream_frame(300, data[300:1500], False)
    r.on_stream_frame(1600, data[1600:1700], False)
    # one frame from before the read point over the first two segments and past them
    r.on_stream_frame(0, data[0:1550], False)
    assert r.readable == 1550 and r.fragments == 1
    r.on_stream_frame(1500, data[1500:3000], True)
    assert r.read() == data
    assert r.fragments == 0 and r.out_of_order_bytes == 0


def test_memoryview_and_bytearray_input_are_copied() -> None:
    buf = bytearray(b"0123456789" * 300)
    r = RecvStream(0, WINDOW)
    r.on_stream_frame(10, memoryview(buf)[10:20], False)
    r.on_stream_frame(30, buf[30:2000], False)
    r.on_stream_frame(20, memoryview(buf)[20:30], False)
    expected = bytes(buf)
    buf[:] = b"x" * len(buf)
    r.on_stream_frame(0, expected[:10], False)
    r.on_stream_frame(2000, expected[2000:], True)
    assert r.read() == expected


# ---------------------------------------------------------------------- connection level


def _hostile_stream_frames(
    server_kwargs: dict[str, int], frames: list[tuple[int, int, bytes]]
) -> ConnectionTerminated | None:
    """The client sends ``(stream_id, offset, data)`` STREAM frames, 50 per packet;
    returns how the server closed (None if it did not)."""
    pair = make_pair(server_kwargs=server_kwargs)
    pair.handshake()
    server = pair.server
    now = pair.net.now
    for k in range(0, len(frames), 50):
        payload = b"".join(
            encode_stream_frame_header(sid, off, len(data), False) + data
            for sid, off, data in frames[k : k + 50]
        )
        pair.server_endpoint.receive_datagram(one_rtt_from(pair.client, payload), CLIENT_ADDR, now)
        if server.state is not ConnectionState.CONNECTED:
            break
    pair.pump()
    closed = pair.events_of(ConnectionTerminated, "server")
    if not closed:
        return None
    assert not closed[0].by_peer
    # the CONNECTION_CLOSE reaches the client with the same code
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated, "client")), max_time=1)
    seen = pair.events_of(ConnectionTerminated, "client")
    assert seen and seen[0].by_peer and seen[0].error_code == closed[0].error_code
    return closed[0]


def test_fragmenting_client_is_closed_with_protocol_violation() -> None:
    frames = [(0, off, b"x") for off in range(1, 2 * (DEFAULT_MAX_STREAM_FRAGMENTS + 50), 2)]
    term = _hostile_stream_frames({}, frames)
    assert term is not None
    assert term.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    assert term.frame_type == 0x0E  # the STREAM frame type received (OFF and LEN bits)


@pytest.mark.parametrize(
    ("kwargs", "frames", "closes"),
    [
        ({"max_stream_reassembly_fragments": 20}, [(0, o, b"x") for o in range(1, 41, 2)], False),
        ({"max_stream_reassembly_fragments": 20}, [(0, o, b"x") for o in range(1, 43, 2)], True),
        (
            {"max_reassembly_fragments": 30},
            [(sid, o, b"x") for sid in (0, 4) for o in range(1, 31, 2)],
            False,
        ),
        (
            {"max_reassembly_fragments": 30},
            [(sid, o, b"x") for sid in (0, 4, 8) for o in range(1, 23, 2)],
            True,
        ),
        ({"max_reassembly_bytes": 3000}, [(0, 1, b"x" * 1000), (4, 1, b"x" * 1000)], False),
        ({"max_reassembly_bytes": 3000}, [(sid, 1, b"x" * 1000) for sid in (0, 4, 8, 12)], True),
    ],
)
def test_reassembly_limits_are_configurable(
    kwargs: dict[str, int], frames: list[tuple[int, int, bytes]], closes: bool
) -> None:
    term = _hostile_stream_frames(kwargs, frames)
    if closes:
        assert term is not None and term.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    else:
        assert term is None


@pytest.mark.parametrize("seed", range(30))
def test_ropes_join_in_order_with_tiny_chunk_threshold(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a 4-byte threshold almost every segment is a rope of many chunks, so every
    way of joining ropes (shorter onto longer, on either side, short boundary chunks
    coalesced) is exercised; the data must come out exactly."""
    monkeypatch.setattr(reassembly, "SMALL_CHUNK", 4)
    rng = random.Random(seed)
    data = message(4000, seed)
    r = RecvStream(0, WINDOW, max_fragments=10_000)
    frames = []
    pos = 1
    while pos < len(data):
        n = rng.choice((1, 2, 3, 5, 8, 13, 40))
        frames.append((pos, n))
        pos += n
    rng.shuffle(frames)
    for off, n in frames:
        r.on_stream_frame(off, data[off : off + n], False)
        if rng.random() < 0.2:  # and an overlapping re-cut
            cut = max(1, off - rng.randrange(10))
            r.on_stream_frame(cut, data[cut : off + n + rng.randrange(20)], False)
        assert r.reassembly.chunk_count() <= 2 * r.out_of_order_bytes // 4 + r.fragments
    r.on_stream_frame(0, data[:1], False)
    assert r.read() == data


def test_out_of_order_store_exists_only_while_needed() -> None:
    """No store while data arrives in order; one for a hole; gone once the data caught up
    (issue 10: an idle stream keeps none)."""
    r = RecvStream(0, WINDOW)
    r.on_stream_frame(0, b"a" * 100, False)
    assert r._ooo is None and r.fragments == 0 and r.out_of_order_bytes == 0
    r.on_stream_frame(200, b"c" * 100, False)
    assert r._ooo is not None and r.fragments == 1 and r.out_of_order_bytes == 100
    r.on_stream_frame(100, b"b" * 100, False)
    assert r._ooo is None and r.read() == b"a" * 100 + b"b" * 100 + b"c" * 100
    assert len(r.reassembly) == 0  # an empty one for the asking, not kept
    assert r._ooo is None
