"""STREAM_DATA_BLOCKED grows a stream's receive window only while the application reads
(quic.flow_control.ReceiveWindow.on_peer_blocked), through the connection's stream
controller (what the frame dispatcher calls)."""

from __future__ import annotations

from quic.connection import QuicConnection
from tests.support.quicpair import Pair, make_pair

_SERVER = {"initial_max_stream_data": 4096, "max_stream_data_window": 65536}


def _blocked_pair(**server: int) -> tuple[Pair, int]:
    """A client stream blocked at the server's 4096 bytes, none of it read."""
    pair = make_pair(server_kwargs={**_SERVER, **server})
    pair.consume = False
    pair.handshake()
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(sid, b"x" * 200_000, end_stream=True)
    pair.run(None, max_time=1.0)
    assert len(pair.data["server"][sid]) == 4096
    return pair, sid


def _slow_reader(**server: int) -> tuple[QuicConnection, int]:
    """A server that has read nothing of a client stream blocked at 4096 bytes."""
    pair, sid = _blocked_pair(**server)
    return pair.server, sid


def _window(server: QuicConnection, sid: int) -> int:
    stream = server.streams.manager.get(sid)
    assert stream is not None and stream.recv is not None
    return stream.recv.window.window


def test_a_slow_reader_keeps_its_window_however_often_the_peer_is_blocked() -> None:
    server, sid = _slow_reader()
    for _ in range(3):
        server.streams.on_stream_data_blocked(sid, 4096)
    assert _window(server, sid) == 4096
    assert not server.streams.wants_control()  # no credit: nothing was read


def test_a_reader_that_keeps_up_gets_a_larger_window_and_its_update_at_once() -> None:
    server, sid = _slow_reader()
    server.consume_stream_data(sid, 4096)  # reads it all: MAX_STREAM_DATA 8192 owed
    server.streams.on_stream_data_blocked(sid, 4096)  # blocked at our limit
    assert _window(server, sid) == 8192
    assert server.streams.wants_control()
    server.streams.on_stream_data_blocked(sid, 1000)  # a limit we never advertised
    assert _window(server, sid) == 8192


def test_a_stream_that_spends_its_credit_says_it_is_blocked() -> None:
    # RFC 9000 §4.1, §19.13: the frame that spends the last of a stream's credit is
    # followed by STREAM_DATA_BLOCKED (the stream used to leave the send queue unheard)
    pair, sid = _blocked_pair()
    stream = pair.client.streams.manager.get(sid)
    assert stream is not None and stream.send is not None
    assert stream.send.credit.used == 4096
    assert stream.send.credit.blocked_at is None  # reported: 4096 was sent in the frame
    assert stream.send.blocked_frame() is None


def test_blocked_frames_n_and_4n_grow_windows_to_their_ceilings_and_no_further() -> None:
    # a peer repeating STREAM_DATA_BLOCKED / DATA_BLOCKED at our limits, to a reader that
    # keeps up: each window stops at its configured ceiling, one control entry per stream
    grown = []
    for n in (16, 64):
        # ceilings that no doubling lands on exactly
        ceilings = {"max_stream_data_window": 50_000, "max_data_window": 3_000_000}
        server, sid = _slow_reader(initial_max_data=1_000_000, **ceilings)
        server.consume_stream_data(sid, 4096)
        streams = server.streams
        conn_window = streams.window
        for _ in range(n):
            streams.on_stream_data_blocked(sid, 4096)
            conn_window.on_peer_blocked(conn_window.max_data)  # what DATA_BLOCKED does
        stream = streams.manager.get(sid)
        assert stream is not None and stream.recv is not None
        assert stream.recv.window.window == stream.recv.window.max_window == 50_000
        assert conn_window.window == conn_window.max_window == 3_000_000
        assert list(streams._control) == [sid]
        grown.append((stream.recv.window.window, conn_window.window, len(streams._control)))
    assert grown[0] == grown[1]  # 4N frames hold no more than N
