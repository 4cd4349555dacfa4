"""A batch of received datagrams costs the endpoint's bookkeeping once per connection
and reaches the application as one event per stream (issue 10: per-packet work).

Counters, not timings: how often a connection's deadline is recomputed
(``QuicConnection.get_timer``) and how many ``StreamDataReceived`` events a burst of
packets makes, with the bytes, their order against other events, and the state every
public entry point shows, unchanged.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from quic.conn_state import LIVE
from quic.connection import QuicConnection
from quic.endpoint import QuicEndpoint
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair


def _connected() -> Pair:
    pair = make_pair(seed=7)
    pair.handshake()
    return pair


def _client_burst(pair: Pair, payload: bytes, end: bool = False) -> tuple[int, list[bytes]]:
    """The client writes ``payload`` on a new stream; returns the stream ID and the
    datagrams it sends (taken straight from its endpoint, not delivered)."""
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, payload, end)
    pair.client_endpoint.wake(pair.client)
    datagrams = [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
    return sid, datagrams


def _drain(endpoint: QuicEndpoint) -> list[QuicEvent]:
    events = []
    while (item := endpoint.next_event()) is not None:
        events.append(item[1])
    return events


class _TimerCount:
    def __init__(self, conn: QuicConnection, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = conn.get_timer

        def counted() -> float | None:
            self.calls += 1
            return real()

        monkeypatch.setattr(conn, "get_timer", counted)


@pytest.mark.parametrize("packets", [2, 8])
def test_bookkeeping_runs_once_per_batch(packets: int, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = _connected()
    server = pair.server
    _, datagrams = _client_burst(pair, b"x" * (1000 * packets))
    assert len(datagrams) >= max(2, packets - 2)
    count = _TimerCount(server, monkeypatch)
    endpoint = pair.server_endpoint
    for data in datagrams:
        endpoint.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    assert count.calls == 0  # nothing re-filed per datagram
    endpoint.get_timer()  # any reader of the state settles the batch first...
    assert count.calls == 1  # ... once for the whole batch
    _drain(endpoint)
    assert count.calls == 1


def test_counters_and_timer_match_per_datagram_bookkeeping() -> None:
    """What the endpoint shows after a batch equals what it showed when every
    datagram was followed by its bookkeeping."""
    pair = _connected()
    _, datagrams = _client_burst(pair, b"y" * 20_000)
    endpoint = pair.server_endpoint
    for data in datagrams:
        endpoint.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    assert endpoint.route_count == len(endpoint._routes)
    assert endpoint.reset_token_count >= 0
    assert endpoint.half_open_connections == 0
    assert endpoint.get_timer() == pair.server.get_timer()


@pytest.mark.parametrize("size", [4_000, 10_000])  # within the initial window
def test_a_burst_is_one_event_per_stream(size: int) -> None:
    pair = _connected()
    payload = bytes(range(256)) * (size // 256)
    sid, datagrams = _client_burst(pair, payload, end=True)
    assert len(datagrams) >= size // 1500
    endpoint = pair.server_endpoint
    for data in datagrams:
        endpoint.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    received = [e for e in _drain(endpoint) if isinstance(e, StreamDataReceived)]
    assert [e.stream_id for e in received] == [sid]  # one event for every packet
    assert received[0].data == payload and received[0].end_stream


def test_two_streams_keep_their_first_places() -> None:
    pair = _connected()
    client = pair.client
    a = client.create_stream()
    b = client.create_stream()
    client.send_stream_data(a, b"a" * 2500)
    client.send_stream_data(b, b"b" * 2500)
    client.send_stream_data(a, b"A" * 2500, True)
    client.send_stream_data(b, b"B" * 2500, True)
    pair.client_endpoint.wake(client)
    endpoint = pair.server_endpoint
    for data, _ in pair.client_endpoint.datagrams_to_send(pair.net.now):
        endpoint.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    received = [e for e in _drain(endpoint) if isinstance(e, StreamDataReceived)]
    assert {e.stream_id for e in received} == {a, b}
    assert len(received) == 2
    by_id = {e.stream_id: e for e in received}
    assert by_id[a].data == b"a" * 2500 + b"A" * 2500 and by_id[a].end_stream
    assert by_id[b].data == b"b" * 2500 + b"B" * 2500 and by_id[b].end_stream


def test_data_then_reset_in_one_batch_keeps_the_order() -> None:
    """RESET_STREAM_AT after data in the same batch: the reliable bytes are delivered
    before the reset is reported."""
    pair = make_pair(
        seed=3, client_kwargs={"reset_stream_at": True}, server_kwargs={"reset_stream_at": True}
    )
    pair.handshake()
    client = pair.client
    sid = client.create_stream()
    client.send_stream_data(sid, b"r" * 5000)
    pair.client_endpoint.wake(client)
    first = [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
    client.reset_stream(sid, 7, reliable_size=5000)
    pair.client_endpoint.wake(client)
    second = [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
    endpoint = pair.server_endpoint
    for data in first + second:
        endpoint.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    events: list[Any] = [
        e for e in _drain(endpoint) if isinstance(e, (StreamDataReceived, StreamReset))
    ]
    kinds = [type(e) for e in events]
    assert kinds == [StreamDataReceived, StreamReset]
    assert events[0].data == b"r" * 5000
    assert events[1].reliable_size == 5000


def test_sans_io_user_sees_every_byte_through_next_event() -> None:
    """A caller driving one QuicConnection directly (no endpoint) still gets the data
    and FIN through next_event, in one event per stream per batch."""
    pair = _connected()
    payload = b"z" * 9000
    sid, datagrams = _client_burst(pair, payload, end=True)
    server = pair.server
    for data in datagrams:
        server.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    got = []
    while (event := server.next_event()) is not None:
        if isinstance(event, StreamDataReceived):
            got.append(event)
    assert len(got) == 1 and got[0].stream_id == sid
    assert got[0].data == payload and got[0].end_stream


def test_data_before_the_close_in_the_same_batch_comes_first() -> None:
    """Stream data and the peer's CONNECTION_CLOSE read in one batch: the data event
    keeps its place before ConnectionTerminated."""
    pair = _connected()
    _, first = _client_burst(pair, b"d" * 3000)
    pair.client.close(0, "bye")
    pair.client_endpoint.wake(pair.client)
    closing = [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
    endpoint = pair.server_endpoint
    for data in first + closing:
        endpoint.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    kinds = [
        type(e).__name__
        for e in _drain(endpoint)
        if isinstance(e, (StreamDataReceived, ConnectionTerminated))
    ]
    assert kinds == ["StreamDataReceived", "ConnectionTerminated"]


@pytest.mark.parametrize("packets", [2, 8])
def test_markers_held_per_batch_stay_one_per_stream_n_vs_4n(packets: int) -> None:
    """Bounded state: what a batch leaves on the connection's event queue is one
    DeferredDelivery per stream, whatever the number of packets (2 vs 8: 1 each)."""
    from quic.conn_streams import DeferredDelivery

    pair = _connected()
    _, datagrams = _client_burst(pair, b"m" * (1000 * packets))
    assert len(datagrams) >= max(2, packets - 2)
    server = pair.server
    for data in datagrams:
        server.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    markers = [e for e in server._events if isinstance(e, DeferredDelivery)]
    assert len(markers) == 1
    assert len(server.streams._deferred) == 1
    while server.next_event() is not None:
        pass
    assert not server.streams._deferred  # the table empties as the events are taken


def test_event_queue_keeps_no_storage_once_drained_and_stays_bounded() -> None:
    """The connection's event queue is a list of events and a count of those taken: a
    drained queue holds no storage (issue 10, memory per idle connection), a caller
    taking events one by one without ever draining keeps a bounded list, and the
    stream data a marker stands for still comes in the marker's place."""
    from quic.connection import _TAKEN_KEPT

    pair = _connected()
    server = pair.server
    sid, datagrams = _client_burst(pair, b"q" * 3000)
    for data in datagrams:
        server.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    server._events.append(ConnectionTerminated(0, "after the data", None, False))
    first = server.next_event()
    assert isinstance(first, StreamDataReceived) and first.stream_id == sid
    assert first.data == b"q" * 3000
    last = server.next_event()
    assert isinstance(last, ConnectionTerminated) and last.reason_phrase == "after the data"
    assert server.next_event() is None
    assert server._events == [] and server._taken == 0
    assert sys.getsizeof(server._events) == sys.getsizeof([])
    assert server.queue_sizes()["events"] == 0
    # taken one at a time, never drained (a few always wait): the taken prefix is let
    # go once past _TAKEN_KEPT and half the list; order is kept
    for i in range(3):
        server._events.append(ConnectionTerminated(i, "", None, False))
    for i in range(5 * _TAKEN_KEPT):
        server._events.append(ConnectionTerminated(i + 3, "", None, False))
        taken = server.next_event()
        assert isinstance(taken, ConnectionTerminated) and taken.error_code == i
        assert server._taken <= _TAKEN_KEPT + 1
        assert len(server._events) - server._taken == server.queue_sizes()["events"] == 3
    while server.next_event() is not None:
        pass
    assert server._events == [] and server._taken == 0


def _fed(together: bool, close_after: int | None = None) -> tuple[Pair, int, list[Any]]:
    """A server fed a client's burst with QuicConnection.receive_datagrams or datagram
    by datagram (``close_after``: the client's CONNECTION_CLOSE goes after that many
    datagrams of the burst, the rest after it): the pair, the stream and the server's
    events."""
    pair = _connected()
    sid, datagrams = _client_burst(pair, bytes(range(256)) * 60, end=True)
    if close_after is not None:
        pair.client.close(0, "bye")
        pair.client_endpoint.wake(pair.client)
        closing = [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
        datagrams[close_after:close_after] = closing
    server = pair.server
    now = pair.net.now + 0.001
    if together:
        single = server.receive_datagram
        calls = [0]

        def counted(*args: Any) -> None:
            calls[0] += 1
            single(*args)

        server.receive_datagram = counted  # type: ignore[method-assign]
        server.receive_datagrams(datagrams, CLIENT_ADDR, now)
        # the batched path, not a loop over receive_datagram: only what follows a
        # close goes there (to be dropped while draining, RFC 9000 §10.2.2)
        after = 0 if close_after is None else len(datagrams) - close_after - 1
        assert calls[0] == after
    else:
        for data in datagrams:
            server.receive_datagram(data, CLIENT_ADDR, now)
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    return pair, sid, events


def test_a_connection_fed_datagrams_together_ends_as_fed_one_by_one() -> None:
    """QuicConnection.receive_datagrams (a GRO read's datagrams, the batched short-header
    path) leaves the connection as receive_datagram per datagram does: events, ACK
    ranges, byte and packet counts, idle timer."""
    one, _, events_one = _fed(False)
    many, _, events_many = _fed(True)
    assert len(events_many) == len(events_one) and events_many
    for a, b in zip(events_many, events_one, strict=True):
        assert type(a) is type(b)
        if isinstance(a, StreamDataReceived):
            assert (a.stream_id, a.data, a.end_stream) == (b.stream_id, b.data, b.end_stream)
    assert many.server.acks.trackers[2].received == one.server.acks.trackers[2].received
    stats_many, stats_one = many.server.stats(), one.server.stats()
    assert stats_many.bytes_received == stats_one.bytes_received > 0
    assert stats_many.packets_received == stats_one.packets_received
    assert many.server.idle.last_activity == one.server.idle.last_activity


def test_datagrams_after_a_close_in_the_batch_are_not_read() -> None:
    """A CONNECTION_CLOSE in the middle of a batch: what follows it goes through
    receive_datagram and is dropped, as one by one once the connection drains (RFC 9000
    §10.2.2)."""
    one, _, events_one = _fed(False, close_after=2)
    many, _, events_many = _fed(True, close_after=2)
    assert [type(e) for e in events_many] == [type(e) for e in events_one]
    assert any(isinstance(e, ConnectionTerminated) for e in events_many)
    received = many.server.stats().packets_received
    assert received == one.server.stats().packets_received
    full, _, _ = _fed(True)
    assert received < full.server.stats().packets_received  # the rest was not read


def test_a_stateless_reset_in_a_batch_ends_the_connection() -> None:
    """A stateless reset (RFC 9000 §10.3.1) among datagrams read together ends the
    connection at once; the datagrams after it are not read."""
    key = bytes(range(32))
    pair = make_pair(seed=7, server_kwargs={"stateless_reset_key": key})
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    client = pair.client
    token = pair.server_endpoint.reset_token(client.cids.peer_cid)
    reset = b"\x40" + bytes(range(1, 34)) + token
    server = pair.server
    sid = server.create_stream()
    server.send_stream_data(sid, b"s" * 3000)
    pair.server_endpoint.wake(server)
    data = [d for d, _ in pair.server_endpoint.datagrams_to_send(pair.net.now)]
    assert len(data) >= 2
    tracker = client.acks.trackers[2]
    before = tracker.received.total()
    client.receive_datagrams([data[0], reset, *data[1:]], SERVER_ADDR, pair.net.now)
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    terminated = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert terminated and terminated[0].reason_phrase == "stateless reset"
    assert tracker.received.total() - before == 1  # only the datagram before the reset


def test_a_key_update_inside_a_batch_opens_every_packet() -> None:
    """The batch's header-protection masks come from one call before its first packet
    (PacketReader.short_masks): a Key Phase change in the middle (RFC 9001 §6) keeps the
    header protection key, so the packets after it open as well."""
    pair = _connected()
    warm = pair.client.create_stream()
    pair.client.send_stream_data(warm, b"w", True)
    pair.run(lambda: pair.stream_done(warm) and not pair.client.recovery.spaces[2].sent)
    sid, first = _client_burst(pair, b"a" * 5000)
    pair.client.request_key_update()  # RFC 9001 §6.1: the packets after it, phase 1
    second_sid, second = _client_burst(pair, b"b" * 5000, True)
    assert pair.client.keys.spaces[2].write.key_phase == 1  # type: ignore[union-attr]
    assert first and second
    pair.server_endpoint.receive_datagrams(first + second, CLIENT_ADDR, pair.net.now)
    data: dict[int, bytes] = {}
    for event in _drain(pair.server_endpoint):
        if isinstance(event, StreamDataReceived):
            data[event.stream_id] = data.get(event.stream_id, b"") + event.data
    assert data == {sid: b"a" * 5000, second_sid: b"b" * 5000}
    assert pair.server.keys.spaces[2].read.current.key_phase == 1  # type: ignore[union-attr]


def _burst_with_reset(pair: Pair) -> tuple[list[bytes], int]:
    """Client datagrams: a burst on one stream, a datagram with a RESET_STREAM of
    another, a second burst; and the index of the reset's datagram."""
    other = pair.client.create_stream()
    pair.client.send_stream_data(other, b"x")
    pair.run(lambda: not pair.client.recovery.spaces[2].sent)
    _, first = _client_burst(pair, b"a" * 6000)
    pair.client.reset_stream(other, 7)
    pair.client_endpoint.wake(pair.client)
    resets = [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
    _, second = _client_burst(pair, b"b" * 6000)
    assert len(first) >= 3 and len(resets) == 1 and len(second) >= 3
    return first + resets + second, len(first)


def test_a_run_stops_after_a_frame_that_may_change_the_connection() -> None:
    """PacketReader.read_short_run reads 1-RTT datagrams until one held a frame beyond
    STREAM, DATAGRAM, ACK, PADDING and PING (FrameDispatcher.general): the connection
    looks at its state before the next one is read."""
    pair = _connected()
    datagrams, reset_at = _burst_with_reset(pair)
    server = pair.server
    reader = server.reader
    cid_len = server.cids.cid_length
    now = pair.net.now
    processed = reader.processed
    stop = reader.read_short_run(datagrams, 0, cid_len, now)
    assert stop == reset_at + 1 and not reader.run_failed
    assert reader.processed - processed == stop
    assert reader.read_short_run(datagrams, stop, cid_len, now) == len(datagrams)
    assert reader.processed - processed == len(datagrams)
    # a datagram read again is a duplicate: the run stops after it, run_failed set
    assert reader.read_short_run(datagrams, 1, cid_len, now) == 2 and reader.run_failed
    assert reader.read_short_run([b"\xc0" + bytes(40)], 0, cid_len, now) == 0  # long header


def test_a_run_cut_short_by_an_error_counts_what_it_read() -> None:
    """A packet that breaks a rule in the middle of a batch closes the connection; the
    datagrams read before it are counted once, the ones after it go through
    receive_datagram (counted while closing, RFC 9000 §10.2.1)."""
    pair = _connected()
    _, datagrams = _client_burst(pair, b"c" * 12000)
    assert len(datagrams) >= 6
    server = pair.server
    dispatcher = server.reader._dispatcher
    real = dispatcher.dispatch
    calls = [0]

    def failing(*args: Any) -> bool:
        calls[0] += 1
        if calls[0] == 3:
            raise QuicProtocolError(TransportErrorCode.FRAME_ENCODING_ERROR, "made up")
        return real(*args)

    dispatcher.dispatch = failing  # type: ignore[method-assign]
    single = server.receive_datagram
    after = [0]

    def counted(*args: Any) -> None:
        after[0] += 1
        single(*args)

    server.receive_datagram = counted  # type: ignore[method-assign]
    before = server.paths.bytes_received
    server.receive_datagrams(datagrams, CLIENT_ADDR, pair.net.now)
    assert after[0] == len(datagrams) - 3  # the three read (the third failed) are not fed again
    read = sum(map(len, datagrams[:3]))
    assert server.paths.bytes_received - before >= read
    assert server.state not in LIVE  # closing on our error (RFC 9000 §10.2)
    assert server.closer.frame is not None
    assert server.closer.frame[1] == TransportErrorCode.FRAME_ENCODING_ERROR


def test_endpoint_batch_with_a_foreign_datagram_inside_is_read_one_run_at_a_time() -> None:
    """The endpoint takes a batch whose datagrams all carry the first one's short-header
    connection ID as one run (one C-level check); one that does not (here a long
    header in the middle) sends the batch through the per-datagram loop: every stream
    byte still arrives, in order."""
    from quic.endpoint_batch import _one_run

    pair = _connected()
    sid, datagrams = _client_burst(pair, bytes(range(256)) * 40, end=True)
    assert len(datagrams) >= 4
    end = 1 + pair.server_endpoint.connection_id_length
    dcid = datagrams[0][1:end]
    assert _one_run(datagrams[1:], dcid)
    assert not _one_run([*datagrams[1:], b"\xc0" + datagrams[1][1:]], dcid)
    assert not _one_run([datagrams[1], b"\x40" + bytes(end)], dcid)
    assert not _one_run([datagrams[1], memoryview(datagrams[2])], dcid)  # type: ignore[list-item]
    foreign = b"\xc0" + bytes(60)  # a long header of no connection: dropped
    mixed = [*datagrams[:2], foreign, *datagrams[2:]]
    pair.server_endpoint.receive_datagrams(mixed, CLIENT_ADDR, pair.net.now)
    data = b""
    for event in _drain(pair.server_endpoint):
        if isinstance(event, StreamDataReceived) and event.stream_id == sid:
            data += event.data
    assert data == bytes(range(256)) * 40
