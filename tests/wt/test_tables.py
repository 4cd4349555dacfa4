"""Issue 8, finding 9: ended WebTransport sessions and streams leave every table.

Sessions are opened and ended in every way (closed by either side, CONNECT stream
reset, rejected), each carrying streams that finish, are reset or stopped, and
datagrams; then every table of both WebTransport connections is back to its idle size
(``table_sizes()``: all 0, the record of used session IDs below its bound) for N and
4N sessions alike, and no Session / WtStream object survives. ``slow``: 20,000 vs
80,000.

The QUIC stream limits keep their defaults (128 per type), far below the streams a
run opens: a stream QUIC never released (one whose FIN arrived after all its data was
read used to stay in "Data Recvd") would stall the run on MAX_STREAMS; and the QUIC
stream tables beneath are checked to be empty as well.
"""

from __future__ import annotations

import gc

import pytest

from pywebtransport.protocol import (
    SessionEstablished,
    SessionRequested,
    StopSending,
    StreamOpened,
    StreamReset,
    WebTransportConnection,
)
from pywebtransport.protocol.ids import ClaimedIds
from pywebtransport.protocol.session import Session, WtStream
from tests.wt.wtpair import WtPair, wt_pair

IDLE = {"sessions": 0, "claimed_ids": 0}


def idle(conn: WebTransportConnection) -> dict[str, int]:
    return {k: v for k, v in conn.table_sizes().items() if v}


def live_objects() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, (Session, WtStream)))


def one_session(p: WtPair, index: int) -> None:
    """A session with streams that end every way, then an end of one kind."""
    client, server = p.client, p.server
    sid = client.connect("localhost", f"/s{index}")
    p.run(lambda: any(e.session_id == sid for e in p.of(SessionRequested)))
    if index % 7 == 6:
        server.reject(sid, 404)
        p.settle(0.05)
        p.clear()
        return
    server.accept(sid)
    p.run(lambda: any(e.session_id == sid for e in p.of(SessionEstablished, "client")))
    uni = client.open_stream(sid, bidirectional=False)
    client.send_stream_data(uni, b"one way", end_stream=True)
    bidi = client.open_stream(sid)
    client.send_stream_data(bidi, b"ping", end_stream=True)
    doomed = client.open_stream(sid)
    client.send_stream_data(doomed, b"abandoned")
    stopped = client.open_stream(sid)
    client.send_stream_data(stopped, b"unwanted")
    client.send_datagram(sid, b"dgram")
    p.run(lambda: sum(1 for e in p.of(StreamOpened) if e.session_id == sid) == 4)
    server_uni = server.open_stream(sid, bidirectional=False)
    server.send_stream_data(server_uni, b"back", end_stream=True)
    server.send_stream_data(bidi, b"pong", end_stream=True)
    client.reset_stream(doomed, 5)
    server.reset_stream(doomed, 7)
    server.stop_sending(stopped, 6)
    server.send_stream_data(stopped, b"", end_stream=True)
    p.run(lambda: len(p.of(StreamReset)) == 1 and len(p.of(StreamReset, "client")) == 1)
    p.run(lambda: bool(p.of(StopSending, "client")))
    p.settle(0.05)
    kind = index % 3
    if kind == 0:
        client.close_session(sid, 1, "client done")
    elif kind == 1:
        server.close_session(sid, 2, "server done")
    else:
        p.pair.client.reset_stream(sid, 0x10C)  # the CONNECT stream reset (§6)
        p.pair.client.stop_stream(sid, 0x10C)
    p.settle(0.1)
    p.clear()


def run_sessions(count: int) -> tuple[dict[str, int], dict[str, int], int]:
    p = wt_pair()
    p.record = False
    for index in range(count):
        one_session(p, index)
    p.settle(1.0)
    for conn in (p.client, p.server):
        assert conn.next_event() is None and conn.h3.next_event() is None
    # the QUIC streams beneath left their table too (only HTTP/3's critical streams stay)
    for quic in (p.pair.client, p.pair.server):
        assert len(quic.streams.manager.streams) <= 6, quic.streams.manager.streams
    return idle(p.client), idle(p.server), live_objects()


@pytest.mark.parametrize("count", [100, 400])
def test_sessions_and_streams_leave_every_table(count: int) -> None:
    client, server, objects = run_sessions(count)
    assert client == {} and server == {}
    assert objects == 0


@pytest.mark.slow
@pytest.mark.timeout(14_400)
def test_sessions_and_streams_leave_every_table_at_scale() -> None:
    for count in (20_000, 80_000):
        client, server, objects = run_sessions(count)
        print(f"{count} sessions: client tables {client}, server tables {server}, "
              f"live Session/WtStream objects {objects}")  # fmt: skip
        assert client == {} and server == {}, (count, client, server)
        assert objects == 0


def test_claimed_ids_stay_bounded_behind_a_gap() -> None:
    """A stream ID that never ends (a gap) stops the floor; the record of IDs above it
    stays within its limit however many sessions follow (N vs 4N)."""
    for count in (2_000, 8_000):
        ids = ClaimedIds(limit=64)
        for n in range(1, count):  # ID 0 is the gap: never claimed
            ids.add(4 * n)
        assert len(ids) <= 64
        assert 4 * (count - 1) in ids and 4 * count not in ids
    ids = ClaimedIds(limit=64)
    for n in reversed(range(1000)):  # claimed in reverse: compacts at the end
        ids.add(4 * n)
    assert len(ids) <= 64 and ids.floor >= 4 * 936


def test_claimed_ids_in_order_keep_nothing() -> None:
    ids = ClaimedIds(limit=4)
    for n in range(100_000):
        ids.add(4 * n)
        assert len(ids) == 0
        assert ids._heap is None  # no heap object while nothing is above the floor
    ids.add(3)  # not a client bidi stream ID: ignored
    assert 3 not in ids and 4 * 99_999 in ids


def test_claimed_ids_next_id_skips_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next ID with nothing above the floor only moves the floor; with IDs waiting
    above it, the heap still orders them."""
    import pywebtransport.protocol.ids as ids_module

    ids = ClaimedIds(limit=8)
    ids.add(8)  # above the floor: waits
    ids.add(0)  # the floor's ID, with 8 waiting: the heap path, floor 4 (8 still above)
    assert ids.floor == 4 and 8 in ids and 4 not in ids and len(ids) == 1
    ids.add(4)
    assert ids.floor == 12 and len(ids) == 0 and ids._heap is None

    def no_heap(*args: object) -> None:
        raise AssertionError("the next ID needs no heap")

    monkeypatch.setattr(ids_module.heapq, "heappush", no_heap)
    for n in range(3, 50):
        ids.add(4 * n)
    assert ids.floor == 200 and 196 in ids and 200 not in ids
