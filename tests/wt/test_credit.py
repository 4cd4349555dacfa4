"""Issue 8, finding 11: credit follows consumption, not receipt.

The WebTransport core used to return QUIC credit as stream data arrived and grant new
WT_MAX_DATA as it was received, so a peer could push any amount at a reader that did
not read (WT_MAX_DATA accepted 120 MB against a 1 MiB window). Now the application
consumes (``consume_stream_data``) and only that returns credit: an unread stream holds
at most its QUIC stream window, an unread session at most its WT_MAX_DATA window, and a
peer that ignores WT_MAX_DATA gets WT_FLOW_CONTROL_ERROR (draft-16 §5.6.4). Each test
compares a window of N with one of 4N while the peer writes 16 windows.
"""

from __future__ import annotations

from h3.errors import H3ErrorCode
from pywebtransport.protocol import Draft, SessionClosed
from tests.wt.wtpair import WtPair, config, establish, wt_pair

KIB = 1024


def quic_windows(stream: int, connection: int) -> dict[str, int]:
    return {
        "initial_max_stream_data": stream,
        "max_stream_data_window": stream,  # no auto-tuning: the window stays put
        "initial_max_data": connection,
        "max_data_window": connection,
    }


def write(p: WtPair, stream_id: int, data: bytes, fin: bool = True) -> int:
    """Queue what the session's send credit allows now; returns the bytes queued."""
    return p.client.send_stream_data(stream_id, data, end_stream=fin)


def make(window: int, wt_window: int, stream_window: int | None = None) -> tuple[WtPair, int]:
    server = config(Draft.DRAFT16, initial_max_data=wt_window)
    quic = quic_windows(stream_window or window, 1 << 30)
    p = wt_pair(config(Draft.DRAFT16), server, server_quic=quic)
    p.record = False
    sid = establish(p)
    p.consume["server"] = False  # a reader that does not read
    return p, sid


def held_by_unread_stream(window: int) -> tuple[int, int]:
    p, sid = make(window, wt_window=1 << 30)
    stream_id = p.client.open_stream(sid, bidirectional=False)
    total = 16 * window
    assert write(p, stream_id, bytes(total)) == total
    p.settle(5.0)
    held = p.received["server"].get(stream_id, 0)
    # then the application reads: everything arrives
    p.consume["server"] = True
    for got in list(p.received["server"].values()):
        p.server.consume_stream_data(stream_id, got)
    p.run(lambda: stream_id in p.finished["server"], max_time=60)
    assert p.received["server"][stream_id] == total
    return held, total


def test_unread_stream_holds_at_most_its_window() -> None:
    small_window, large_window = 32 * KIB, 128 * KIB
    small, _ = held_by_unread_stream(small_window)
    large, _ = held_by_unread_stream(large_window)
    assert small_window // 2 <= small <= small_window  # not 16 windows
    assert large_window // 2 <= large <= large_window
    assert 3 <= large / small <= 5  # proportional to the window, not to what was sent


def held_by_unread_session(wt_window: int) -> tuple[int, list[SessionClosed]]:
    p, sid = make(wt_window, wt_window=wt_window, stream_window=1 << 24)
    total = 16 * wt_window
    streams = [p.client.open_stream(sid, bidirectional=False) for _ in range(8)]
    flow = p.client._sessions[sid].flow
    assert flow is not None
    flow.send_max_data = 1 << 60  # a peer that ignores WT_MAX_DATA (draft-16 §5.6.4)
    for stream_id in streams:
        write(p, stream_id, bytes(total // len(streams)))
    p.settle(5.0)
    return sum(p.received["server"].values()), p.of(SessionClosed, "client")


def test_peer_exceeding_wt_max_data_gets_flow_control_error() -> None:
    for window in (64 * KIB, 256 * KIB):
        held, closed = held_by_unread_session(window)
        assert closed and closed[0].http_code == H3ErrorCode.WT_FLOW_CONTROL_ERROR
        assert held <= window + 4 * KIB  # the excess is caught at the packet that crosses


def test_unread_session_holds_at_most_its_wt_window() -> None:
    """A well-behaved peer stops at WT_MAX_DATA: what an unread session holds is
    its window, whatever the peer wants to send (N vs 4N)."""
    helds = []
    for window in (64 * KIB, 256 * KIB):
        p, sid = make(window, wt_window=window, stream_window=1 << 24)
        streams = [p.client.open_stream(sid, bidirectional=False) for _ in range(8)]
        queued = sum(write(p, s, bytes(2 * window), fin=False) for s in streams)
        p.settle(5.0)
        assert queued == window  # the peer's credit: one window, never refreshed
        held = sum(p.received["server"].values())
        assert held == window
        assert not p.of(SessionClosed, "client")
        helds.append(held)
    assert helds[1] == 4 * helds[0]


def test_slow_reader_bounds_memory_to_the_windows_it_advertised() -> None:
    """The server reads 2 KiB per step while the peer writes 16 windows: the bytes it
    holds unread never exceed the stream window (N vs 4N)."""
    peaks = []
    for window in (32 * KIB, 128 * KIB):
        p, sid = make(window, wt_window=1 << 30)
        stream_id = p.client.open_stream(sid, bidirectional=False)
        total = 16 * window
        write(p, stream_id, bytes(total))
        consumed = peak = 0
        while consumed < total:
            p.settle(0.005)
            available = p.received["server"].get(stream_id, 0) - consumed
            peak = max(peak, available)
            step = min(available, 2 * KIB * (window // (32 * KIB)))
            if step:
                p.server.consume_stream_data(stream_id, step)
                consumed += step
        assert p.received["server"][stream_id] == total
        assert peak <= window
        peaks.append(peak)
    assert 3 <= peaks[1] / peaks[0] <= 5


def test_consume_says_whether_something_is_owed_to_the_peer() -> None:
    """consume_stream_data is True only when it queued credit (QUIC MAX_STREAM_DATA /
    MAX_DATA or a WT_MAX_DATA capsule): the link transmits on that alone."""
    window = 64 * KIB
    p, sid = make(window, wt_window=1 << 30)
    stream_id = p.client.open_stream(sid, bidirectional=False)
    write(p, stream_id, bytes(window - 1024), fin=False)  # the stream header counts too
    p.settle(5.0)
    assert p.received["server"].get(stream_id, 0) == window - 1024
    assert p.server.consume_stream_data(stream_id, 10) is False  # far from any update
    assert p.server.consume_stream_data(stream_id, window // 2) is True  # half the window
    assert p.server.consume_stream_data(stream_id, 0) is False
    assert p.server.consume_stream_data(stream_id + 4, 10) is False  # no such stream
