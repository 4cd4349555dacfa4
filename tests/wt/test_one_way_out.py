"""Issue 8, finding 1: one way out of each layer.

``H3Connection.handle_event`` used to queue each HTTP/3 event *and* return it; the
WebTransport core used the returned list and never drained the queue, so 8 MB on one
WebTransport stream left 7,241 events holding 8.3 MB. Now the core drains HTTP/3 with
``next_event`` and ``WebTransportConnection.handle_event`` returns nothing: its events
leave through ``next_event`` only. After pumping, every queue below is empty and the
memory retained does not grow with the bytes transferred (N vs 4N).
"""

from __future__ import annotations

import gc
import tracemalloc

from pywebtransport.protocol import DatagramReceived, WebTransportConnection
from quic import events as qe
from tests.wt.wtpair import WtPair, establish, wt_pair

MIB = 1 << 20


def assert_drained(*conns: WebTransportConnection) -> None:
    for conn in conns:
        assert conn.next_event() is None
        assert conn.h3.next_event() is None  # nothing left queued beneath
        assert conn.table_sizes()["events"] == 0


def send_all(p: WtPair, stream_id: int, data: bytes) -> None:
    """Write ``data`` and FIN, waiting for draft-16 session credit as needed."""
    view = memoryview(data)
    while True:
        sent = p.client.send_stream_data(stream_id, view, end_stream=True)
        view = view[sent:]
        if not view:
            return
        p.settle(0.05)


def retained_after_stream(size: int) -> int:
    """Bytes still allocated once ``size`` bytes went over one WT stream and were read."""
    p = wt_pair()
    p.record = False
    sid = establish(p)
    payload = bytes(size)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        stream_id = p.client.open_stream(sid, bidirectional=False)
        send_all(p, stream_id, payload)
        p.run(lambda: stream_id in p.finished["server"], max_time=120)
        p.settle(0.5)
        assert p.received["server"][stream_id] == size
        assert_drained(p.client, p.server)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_handle_event_returns_nothing() -> None:
    p = wt_pair()
    establish(p)
    result = p.server.handle_event(qe.PingAcknowledged(1))  # type: ignore[func-returns-value]
    assert result is None


def test_bulk_stream_leaves_no_queued_events_and_flat_memory() -> None:
    small = retained_after_stream(1 * MIB)
    large = retained_after_stream(4 * MIB)
    # with the double queue, retained memory was about the bytes received (1 and 4 MiB)
    assert small < MIB // 4, small
    assert large < MIB // 4, large
    assert large < small + MIB // 8  # flat: does not grow with the bytes transferred


def retained_after_datagrams(count: int) -> int:
    p = wt_pair()
    p.record = False
    sid = establish(p)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            p.client.send_datagram(sid, i.to_bytes(4, "big") * 64)
            if i % 50 == 49:
                p.settle(0.02)
        p.settle(0.5)
        got = p.of(DatagramReceived)
        assert len(got) == count
        p.clear()
        del got
        assert_drained(p.client, p.server)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_datagrams_leave_no_queued_events() -> None:
    small = retained_after_datagrams(500)
    large = retained_after_datagrams(2000)
    # the double queue kept every datagram (256-byte payloads: ~0.5 MiB for 2000)
    assert large < small + 64 * 1024, (small, large)
