"""Flow-control credit returns on consumption, not on delivery (RFC 9000 §4.1, §4.2)."""

from __future__ import annotations

from tests.support.quicpair import Pair, make_pair

WINDOW = 64 * 1024


def _slow_reader_pair() -> Pair:
    pair = make_pair(
        server_kwargs={"initial_max_stream_data": WINDOW, "initial_max_data": 4 * WINDOW}
    )
    pair.consume = False  # the server application never consumes what it is given
    pair.handshake()
    return pair


def _delivered_while_unread(payload_size: int) -> int:
    pair = _slow_reader_pair()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"x" * payload_size, end_stream=True)
    pair.net.settle(2.0)
    pair.pump()
    return len(pair.data["server"].get(sid, b""))


def test_unread_stream_holds_only_its_window() -> None:
    small = _delivered_while_unread(1_000_000)
    large = _delivered_while_unread(4_000_000)
    assert small == large == WINDOW  # the window, whatever the peer has to send


def test_unread_streams_hold_only_the_connection_window() -> None:
    pair = _slow_reader_pair()
    sids = [pair.client.create_stream() for _ in range(16)]
    for sid in sids:
        pair.client.send_stream_data(sid, b"y" * WINDOW, end_stream=True)
    pair.net.settle(2.0)
    pair.pump()
    delivered = sum(len(pair.data["server"].get(sid, b"")) for sid in sids)
    assert delivered == 4 * WINDOW  # initial_max_data: nothing credited on delivery


def test_consuming_returns_credit_and_the_rest_arrives() -> None:
    pair = _slow_reader_pair()
    sid = pair.client.create_stream()
    payload = bytes(range(256)) * 1024  # four windows
    pair.client.send_stream_data(sid, payload, end_stream=True)
    pair.net.settle(1.0)
    pair.pump()
    assert len(pair.data["server"][sid]) == WINDOW
    pair.consume = True
    pair.server.consume_stream_data(sid, WINDOW)
    pair.run(lambda: pair.stream_done(sid))
    assert bytes(pair.data["server"][sid]) == payload


def test_finished_stream_stays_until_consumed() -> None:
    pair = _slow_reader_pair()
    sid = pair.client.create_stream(bidirectional=False)
    pair.client.send_stream_data(sid, b"z" * 1000, end_stream=True)
    pair.run(lambda: pair.stream_done(sid))
    manager = pair.server.streams.manager
    assert manager.get(sid) is not None  # the application still holds its bytes
    pair.server.consume_stream_data(sid, 1000)
    assert manager.get(sid) is None  # consumed: the stream leaves the table


def test_reset_returns_unconsumed_credit() -> None:
    pair = _slow_reader_pair()
    sid = pair.client.create_stream(bidirectional=False)
    pair.client.send_stream_data(sid, b"r" * WINDOW)
    pair.net.settle(1.0)
    pair.pump()
    window = pair.server.streams.window
    before = window.consumed
    pair.client.reset_stream(sid, 7)
    pair.net.settle(1.0)
    pair.pump()
    assert window.consumed - before == WINDOW  # dropped with the reset: credited
    assert pair.server.streams.manager.get(sid) is None


def test_public_stats_and_send_buffered() -> None:
    # what upper layers read instead of QUIC internals (pywebtransport, h3.aio)
    pair = make_pair()
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"q" * 50_000)
    assert pair.client.send_buffered(sid) == 50_000
    pair.run(lambda: len(pair.data["server"].get(sid, b"")) == 50_000)
    pair.net.settle(0.2)
    assert pair.client.send_buffered(sid) == 0  # all acknowledged
    stats = pair.client.stats()
    assert stats.smoothed_rtt > 0 and stats.min_rtt > 0 and stats.latest_rtt > 0
    assert stats.congestion_window > 0 and stats.bytes_sent > 50_000
    assert stats.bytes_received > 0 and stats.packets_received > 0
    assert stats.version == pair.client.version


def test_consume_says_whether_a_credit_frame_is_owed() -> None:
    """consume_stream_data is True only when it queued MAX_STREAM_DATA / MAX_DATA (the
    application layers wake the pump on that alone, not per read)."""
    pair = _slow_reader_pair()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"q" * WINDOW)
    pair.net.settle(1.0)
    pair.pump()
    assert len(pair.data["server"][sid]) == WINDOW
    assert pair.server.consume_stream_data(sid, 100) is False  # far from half a window
    assert not pair.server.streams.wants_control()
    assert pair.server.consume_stream_data(sid, WINDOW // 2) is True  # half: an update
    assert pair.server.streams.wants_control()
    assert pair.server.consume_stream_data(sid, 0) is False  # nothing credited
    assert pair.server.consume_stream_data(sid + 4, 10) is False  # an unknown stream
