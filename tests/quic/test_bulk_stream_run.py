"""The bulk case of a batch read: packets of one STREAM frame each, in order on one
stream, are handed to the stream as one frame (``PacketReader.read_short_run`` and
``FrameDispatcher.stream_run``) with the same bytes, checks and order as when each
packet is dispatched.

Each scenario runs twice on pairs of the same seed: the server fed the datagrams as
one batch (``receive_datagrams``), and one by one (``receive_datagram``, which never
takes a run); what the application sees must be the same. Counters, not timings: how
many packets go through ``FrameDispatcher.dispatch`` and how many runs through
``stream_run``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from quic.conn_receive import _BULK_HEADER, _bulk_next_header
from quic.conn_state import LIVE
from quic.errors import TransportErrorCode
from quic.events import StreamDataReceived
from quic.frames import pack_stream_bulk_header, unpack_bulk_stream_fields
from quic.recovery import SentPacket
from tests.support.quicpair import CLIENT_ADDR, Pair, make_pair

PREFIX = 0x4000  # offsets from here have the 4-byte varint of the bulk shape


def _pair_with_streams(count: int = 1) -> tuple[Pair, list[int]]:
    """A connected pair with ``count`` client streams past their first ``PREFIX``
    bytes, read by the server."""
    pair = make_pair(seed=11)
    pair.handshake()
    sids = []
    for _ in range(count):
        sid = pair.client.create_stream()
        pair.client.send_stream_data(sid, b"p" * PREFIX)
        pair.run(lambda s=sid: len(pair.data["server"].get(s, b"")) == PREFIX, max_time=5)
        sids.append(sid)
    return pair, sids


def _burst(pair: Pair, writes: list[tuple[int, bytes, bool]]) -> list[bytes]:
    for sid, payload, end in writes:
        pair.client.send_stream_data(sid, payload, end)
    pair.client_endpoint.wake(pair.client)
    return [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]


class _Counts:
    """Calls of the server's dispatcher: packets dispatched, runs and their sizes."""

    def __init__(self, pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
        dispatcher = pair.server.reader._dispatcher
        self.dispatched = 0
        self.runs: list[int] = []
        dispatch, stream_run = dispatcher.dispatch, dispatcher.stream_run

        def counted_dispatch(*args: Any) -> bool:
            self.dispatched += 1
            return dispatch(*args)

        def counted_run(sid: int, offset: int, payloads: list[bytes], now: float) -> None:
            self.runs.append(len(payloads))
            stream_run(sid, offset, payloads, now)

        monkeypatch.setattr(dispatcher, "dispatch", counted_dispatch)
        monkeypatch.setattr(dispatcher, "stream_run", counted_run)


def _bulk_shaped(pair: Pair, datagrams: list[bytes]) -> list[bool]:
    """Which of ``datagrams`` hold one STREAM frame of the bulk shape filling the
    packet (the server opens them to look, changing nothing)."""
    server = pair.server
    cid_len = server.cids.cid_length
    read = server.reader._keys.spaces[2].read
    largest = server.reader._acks.trackers[2].largest
    shaped = []
    for data in datagrams:
        _, pn, payload = read.current.open_short(data, 1 + cid_len, largest)
        largest = max(largest, pn)
        assert payload is not None
        ok = False
        if payload[0] == 0x0E and len(payload) > 8:
            _, raw, length = unpack_bulk_stream_fields(payload, 1)
            ok = raw >> 30 == 2 and length == len(payload) + 0x3FF8
        shaped.append(ok)
    return shaped


Scenario = Callable[[Pair, list[int]], list[bytes]]


def _received(
    scenario: Scenario,
    streams: int,
    together: bool,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> tuple[dict[int, bytes], set[int], Pair, _Counts | None, list[bytes]]:
    """The bytes and FINs the server's application gets from ``scenario``'s datagrams."""
    pair, sids = _pair_with_streams(streams)
    datagrams = scenario(pair, sids)
    counts = _Counts(pair, monkeypatch) if monkeypatch is not None else None
    server = pair.server
    if together:
        server.receive_datagrams(datagrams, CLIENT_ADDR, pair.net.now)
    else:
        for data in datagrams:
            server.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    data: dict[int, bytes] = {}
    ends = set()
    while (event := server.next_event()) is not None:
        if isinstance(event, StreamDataReceived):
            data[event.stream_id] = data.get(event.stream_id, b"") + event.data
            if event.end_stream:
                ends.add(event.stream_id)
    return data, ends, pair, counts, datagrams


def _same_as_one_by_one(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, streams: int = 1
) -> tuple[_Counts, list[bytes], dict[int, bytes], Pair]:
    alone, alone_ends, _, _, _ = _received(scenario, streams, together=False)
    data, ends, pair, counts, datagrams = _received(scenario, streams, True, monkeypatch)
    assert data == alone and ends == alone_ends
    assert data  # the scenario delivers something
    assert counts is not None
    return counts, datagrams, data, pair


def test_an_in_order_burst_is_one_run_without_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = bytes(range(256)) * 60
    shaped: list[bool] = []

    def scenario(pair: Pair, sids: list[int]) -> list[bytes]:
        datagrams = _burst(pair, [(sids[0], payload, False)])
        shaped[:] = _bulk_shaped(pair, datagrams)
        return datagrams

    counts, datagrams, data, pair = _same_as_one_by_one(scenario, monkeypatch)
    assert len(datagrams) >= 8 and all(shaped[:-1])  # the tail may have its own length
    assert counts.runs == [sum(shaped)] and counts.dispatched == len(datagrams) - sum(shaped)
    received = next(iter(data.values()))
    assert payload.startswith(received) and len(received) > 7 * 1200
    assert pair.server.streams.window.highest_received == 2 * PREFIX + len(received) - PREFIX


def test_a_reordered_burst_keeps_every_byte_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = bytes(range(251)) * 60
    shaped: list[bool] = []

    def scenario(pair: Pair, sids: list[int]) -> list[bytes]:
        d = _burst(pair, [(sids[0], payload, False)])
        shaped[:] = _bulk_shaped(pair, d)
        return [*d[:2], d[4], d[3], d[2], *d[5:]]

    counts, datagrams, _, _ = _same_as_one_by_one(scenario, monkeypatch)
    # a piece not where the run ends starts a run of its own (the stream reassembles)
    assert all(shaped[:-1]) and counts.runs == [2, 1, 1, 1, sum(shaped) - 5]
    assert counts.dispatched == len(datagrams) - sum(shaped)


def _tracker_state(pair: Pair) -> tuple[object, ...]:
    tracker = pair.server.reader._acks.trackers[2]
    tracker.has_ranges()  # settles the noted packets
    return (
        list(tracker.received),
        tracker.largest,
        tracker.largest_time,
        tracker.ack_eliciting_since_ack,
        tracker.deadline,
        pair.server.reader.processed,
    )


@pytest.mark.parametrize(("lost", "gaps"), [([], 0), ([3], 1), ([2, 3, 6], 2), ([1, 7], 2)])
def test_a_burst_with_gaps_keeps_the_bytes_and_the_acks_of_one_by_one(
    lost: list[int], gaps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's packets taken together (the tight loop over opened packets) stop at a
    gap in the packet numbers — a lost packet — and go on after it: the stream, the
    ACK tracker (ranges, largest, count and timer) and the reader's counts end as when
    each datagram is read alone."""
    payload = bytes(range(253)) * 80
    states: list[tuple[object, ...]] = []
    before: list[int] = []

    def scenario(pair: Pair, sids: list[int]) -> list[bytes]:
        before.append(len(_tracker_state(pair)[0]))  # type: ignore[arg-type]
        d = _burst(pair, [(sids[0], payload, False)])
        assert len(d) > 8 and all(_bulk_shaped(pair, d)[:-1])
        return [data for i, data in enumerate(d) if i not in lost]

    for together in (False, True):
        data, ends, pair, counts, datagrams = _received(
            scenario, 1, together, monkeypatch if together else None
        )
        states.append((data, ends, _tracker_state(pair)))
    assert states[0] == states[1]
    cid_len = pair.server.cids.cid_length
    assert pair.server.reader.newest_dcid == datagrams[-1][1 : 1 + cid_len]
    assert counts is not None
    assert sum(counts.runs) + counts.dispatched == len(datagrams)
    # a run holds the packets up to the first lost one (the stream reassembles after)
    assert counts.runs[0] == (lost[0] if lost else len(datagrams) - counts.dispatched)
    ranges = states[1][2][0]
    assert isinstance(ranges, list) and len(ranges) >= before[-1] + gaps  # (and a skipped pn)


def test_a_skipped_packet_number_in_a_run_is_a_gap_in_the_acks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Packets whose STREAM data goes on but whose packet numbers do not (a number the
    sender skipped, RFC 9000 §21.4, or a lost ACK-only packet): one run for the stream,
    and the ACK tracker has the gap, as when each datagram is read alone."""
    states: list[tuple[object, ...]] = []

    def scenario(pair: Pair, sids: list[int]) -> list[bytes]:
        first = _burst(pair, [(sids[0], b"s" * 3600, False)])
        pair.client.spaces[2].next_pn += 1  # skipped
        second = _burst(pair, [(sids[0], b"t" * 3600, False)])
        assert all(_bulk_shaped(pair, first + second))
        return first + second

    for together in (False, True):
        data, ends, pair, counts, datagrams = _received(
            scenario, 1, together, monkeypatch if together else None
        )
        states.append((data, ends, _tracker_state(pair)))
    assert states[0] == states[1]
    assert counts is not None and counts.runs == [len(datagrams)] and not counts.dispatched
    ranges = states[1][2][0]
    assert isinstance(ranges, list) and ranges[-1].start == ranges[-2].stop + 1  # the skip


def test_a_bulk_header_read_as_one_number_is_the_next_piece_when_its_fields_are() -> None:
    """The tight loop's check (the 8-byte header as one number against
    ``_bulk_next_header``) agrees with reading the fields (``unpack_bulk_stream_fields``)
    and checking each: type 0x0E, the run's stream, the next offset, a length field that
    fills the payload — for the right header, each byte of it changed, and a payload a
    byte longer or shorter."""
    rng = random.Random(7)
    for _ in range(2000):
        sid = rng.randrange(0x40)
        raw = rng.choice([0x80000000, 0xBFFF0000, rng.randrange(0x80000000, 0xBFFF0000)])
        size = rng.choice([9, 0x4007, rng.randrange(9, 0x4008)])
        want = _bulk_next_header(sid, raw)
        good = pack_stream_bulk_header(0x0E, sid, raw, (size - 8) | 0x4000)
        headers = [good]
        for i in range(8):
            flipped = good[i] ^ (1 << rng.randrange(8))
            headers.append(good[:i] + bytes([flipped]) + good[i + 1 :])
        for header in headers:
            for length in (n for n in (size - 1, size, size + 1) if 9 <= n < 0x4008):
                payload = header + bytes(length - 8)
                fsid, fraw, flength = unpack_bulk_stream_fields(payload, 1)
                fields = payload[0] == 0x0E and fsid == sid and fraw == raw
                fields = fields and flength == length + 0x3FF8
                assert (_BULK_HEADER(payload)[0] == want + length) is fields
        assert _BULK_HEADER(good + bytes(size - 8))[0] == want + size


def test_two_streams_interleaved_make_a_run_per_stretch(monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario(pair: Pair, sids: list[int]) -> list[bytes]:
        first = _burst(pair, [(sids[0], b"A" * 6000, False)])
        second = _burst(pair, [(sids[1], b"B" * 6000, False)])
        assert all(_bulk_shaped(pair, first[:2] + second[:2]))
        return [*first[:2], *second[:2], *first[2:], *second[2:]]

    counts, datagrams, data, _ = _same_as_one_by_one(scenario, monkeypatch, streams=2)
    assert len(data) == 2 and counts.runs[:2] == [2, 2]
    assert sum(counts.runs) + counts.dispatched == len(datagrams)


def test_a_packet_of_another_shape_ends_the_run_before_it_is_dispatched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A FIN (type 0x0F) after a run: the run reaches the stream first, then the FIN
    packet is dispatched, and the stream ends after every byte."""
    payload = b"f" * 4000

    def scenario(pair: Pair, sids: list[int]) -> list[bytes]:
        return _burst(pair, [(sids[0], payload, True)])

    counts, datagrams, data, _ = _same_as_one_by_one(scenario, monkeypatch)
    assert counts.dispatched >= 1 and counts.runs
    assert sum(counts.runs) + counts.dispatched == len(datagrams)
    assert next(iter(data.values())) == payload


def _overrun(shrink: Callable[[Pair, int], None]) -> Pair:
    pair, sids = _pair_with_streams()
    datagrams = _burst(pair, [(sids[0], b"w" * 8000, False)])
    assert sum(_bulk_shaped(pair, datagrams)) >= 4
    shrink(pair, sids[0])
    pair.server.receive_datagrams(datagrams, CLIENT_ADDR, pair.net.now)
    return pair


def _stream_limit(pair: Pair, sid: int) -> None:
    stream = pair.server.streams.manager.get(sid)
    assert stream is not None and stream.recv is not None
    stream.recv.window.max_data = PREFIX + 3000  # as if the peer overran our limit


def _connection_limit(pair: Pair, sid: int) -> None:
    window = pair.server.streams.window
    window.max_data = window.highest_received + 3000


@pytest.mark.parametrize("shrink", [_stream_limit, _connection_limit])
def test_a_run_beyond_a_window_is_a_flow_control_error(
    shrink: Callable[[Pair, int], None],
) -> None:
    """RFC 9000 §4.1: the bytes of a run count against the stream's and the
    connection's limits as each packet's would: beyond one, FLOW_CONTROL_ERROR."""
    server = _overrun(shrink).server
    assert server.state not in LIVE
    assert server.closer.frame is not None
    assert server.closer.frame[1] == TransportErrorCode.FLOW_CONTROL_ERROR
    assert server.closer.frame[2] == 0x0E  # a STREAM frame (RFC 9000 §19.19)


def test_a_batch_fed_twice_delivers_each_byte_once() -> None:
    """The second feeding: duplicates (RFC 9000 §12.3), nothing delivered again."""
    pair, sids = _pair_with_streams()
    datagrams = _burst(pair, [(sids[0], b"d" * 7000, False)])
    server = pair.server
    server.receive_datagrams(datagrams, CLIENT_ADDR, pair.net.now)
    got = b""
    for _ in range(2):
        while (event := server.next_event()) is not None:
            if isinstance(event, StreamDataReceived):
                got += event.data
        server.receive_datagrams(datagrams, CLIENT_ADDR, pair.net.now)
    assert (b"d" * 7000).startswith(got) and len(got) > 4000
    assert server.state in LIVE and server.next_event() is None


def _frameless(pair: Pair) -> bytes:
    """A 1-RTT packet of the client with a 4-byte packet number and no frames at all:
    the shortest that header protection can sample (RFC 9001 §5.4.2)."""
    client = pair.client
    space = client.spaces[2]
    write = space.write
    assert write is not None
    pn = space.next_pn
    space.next_pn += 1
    data = write.encrypt_short(client.cids.peer_cid, 4, pn, write.key_phase, b"", pn)
    client.recovery.on_packet_sent(SentPacket(2, pn, len(data), False, False), pair.net.now)
    return data


@pytest.mark.parametrize("after_run", [False, True])
def test_a_packet_without_frames_in_a_batch_is_a_protocol_violation(after_run: bool) -> None:
    """RFC 9000 §12.4: a packet with no frames is a PROTOCOL_VIOLATION, in a batch too
    (alone, or after a run of bulk-shaped packets): the connection closes, and nothing
    escapes the reader."""
    pair, sids = _pair_with_streams()
    datagrams = _burst(pair, [(sids[0], b"e" * 5000, False)]) if after_run else []
    datagrams.append(_frameless(pair))
    server = pair.server
    server.receive_datagrams(datagrams, CLIENT_ADDR, pair.net.now)
    assert server.state not in LIVE
    assert server.closer.frame is not None
    assert server.closer.frame[1] == TransportErrorCode.PROTOCOL_VIOLATION
