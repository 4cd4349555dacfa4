"""Issue 8, limits of the WebTransport core (``WebTransportConfiguration``): streams and
datagrams waiting for their session (draft-16 §4.7), sessions per connection (§5.2),
CONNECTs parked until the client's SETTINGS (§7.1), capsule bytes before ``accept``
(§3.2). Each is driven with 4 and 16 times its value: what is kept stays at the limit
(N vs 4N inputs, the same state), the excess gets the error the draft names.
"""

from __future__ import annotations

import pytest

from h3.datagrams import encode_h3_datagram
from h3.errors import H3ErrorCode
from h3.frames import encode_data_frame
from h3.streams import StreamType, encode_uni_stream_header
from pywebtransport.protocol import (
    DatagramReceived,
    SessionClosed,
    SessionRequested,
    StreamOpened,
    WebTransportConfiguration,
)
from quic import events as qe
from tests.wt.fakequic import client_settings_event, connect_block, feed, wt_server

REJECTED = H3ErrorCode.WT_BUFFERED_STREAM_REJECTED
LIMIT = 8


def uni(stream_index: int) -> int:
    return 14 + 4 * stream_index  # client uni stream IDs after control/QPACK (2, 6, 10)


def wt_uni(session_id: int, body: bytes) -> bytes:
    return encode_uni_stream_header(StreamType.WEBTRANSPORT_UNI, session_id) + body


@pytest.mark.parametrize("factor", [4, 16])
def test_early_streams_are_bounded_in_number(factor: int) -> None:
    wt, quic = wt_server(WebTransportConfiguration(max_buffered_streams=LIMIT))
    feed(wt, qe.StreamDataReceived(0, connect_block(0), False))  # requested, not accepted
    count = factor * LIMIT
    for i in range(count):  # half for the requested session, half for unknown ones
        session_id = 0 if i % 2 else 400 + 4 * i
        feed(wt, qe.StreamDataReceived(uni(i), wt_uni(session_id, b"x" * 10), False))
    sizes = wt.table_sizes()
    assert sizes["early_streams"] == LIMIT and sizes["streams"] == LIMIT
    refused = [sid for sid, code in quic.stops.items() if code == REJECTED]
    assert len(refused) == count - LIMIT  # draft-16 §4.7
    wt.accept(0)
    events = list(iter(wt.next_event, None))
    opened = [e for e in events if isinstance(e, StreamOpened)]
    assert len(opened) == LIMIT // 2  # the ones of session 0
    assert wt.table_sizes()["early_streams"] == LIMIT // 2  # unknown sessions: still bounded


@pytest.mark.parametrize("factor", [4, 16])
def test_early_stream_bytes_are_bounded(factor: int) -> None:
    limit = 1000
    wt, quic = wt_server(WebTransportConfiguration(max_buffered_stream_bytes=limit))
    feed(wt, qe.StreamDataReceived(0, connect_block(0), False))
    sid = uni(0)
    feed(wt, qe.StreamDataReceived(sid, wt_uni(0, b""), False))
    for _ in range(factor):
        feed(wt, qe.StreamDataReceived(sid, bytes(limit // 2), False))
    assert quic.stops.get(sid) == REJECTED
    assert wt.table_sizes()["early_streams"] == 0 and wt.table_sizes()["streams"] == 0


@pytest.mark.parametrize("factor", [4, 16])
def test_early_datagrams_are_bounded_in_number_and_bytes(factor: int) -> None:
    config = WebTransportConfiguration(
        max_buffered_datagrams=LIMIT, max_buffered_datagram_bytes=600
    )
    wt, _ = wt_server(config)
    feed(wt, qe.StreamDataReceived(0, connect_block(0), False))
    for i in range(factor * LIMIT):  # small ones: the count limit applies
        feed(wt, qe.DatagramReceived(encode_h3_datagram(0, b"%02d" % i)))
    assert wt.table_sizes()["early_datagrams"] == LIMIT
    wt.accept(0)
    got = [e for e in iter(wt.next_event, None) if isinstance(e, DatagramReceived)]
    assert [e.data for e in got] == [b"%02d" % i for i in range(LIMIT)]  # later ones dropped
    # large ones for a session not seen yet: the byte limit applies
    for _ in range(factor * LIMIT):
        feed(wt, qe.DatagramReceived(encode_h3_datagram(404, bytes(200))))
    sizes = wt.table_sizes()
    assert sizes["early_datagrams"] == 3 and sizes["early_datagram_bytes"] == 600


def test_datagrams_of_a_closed_session_are_dropped() -> None:
    wt, _ = wt_server()
    feed(wt, qe.StreamDataReceived(0, connect_block(0), False))
    wt.accept(0)
    wt.close_session(0)
    for _ in range(100):
        feed(wt, qe.DatagramReceived(encode_h3_datagram(0, b"late")))
    assert wt.table_sizes()["early_datagrams"] == 0


@pytest.mark.parametrize("factor", [4, 16])
def test_sessions_per_connection(factor: int) -> None:
    limit = 4
    wt, quic = wt_server(WebTransportConfiguration(max_sessions=limit))
    requested = []
    for i in range(factor * limit):
        requested += [
            e
            for e in feed(wt, qe.StreamDataReceived(4 * i, connect_block(4 * i), False))
            if isinstance(e, SessionRequested)
        ]
    assert len(requested) == limit and wt.table_sizes()["sessions"] == limit
    refused = [sid for sid, code in quic.resets.items() if code == H3ErrorCode.H3_REQUEST_REJECTED]
    assert len(refused) == (factor - 1) * limit  # draft-16 §5.2
    for event in requested:  # ended sessions make room again
        wt.reject(event.session_id, 429)
    events = feed(wt, qe.StreamDataReceived(4 * factor * limit, connect_block(0), False))
    assert any(isinstance(e, SessionRequested) for e in events)


@pytest.mark.parametrize("factor", [4, 16])
def test_connects_parked_before_settings_are_bounded(factor: int) -> None:
    limit = 4
    wt, quic = wt_server(WebTransportConfiguration(max_sessions=limit), settings=False)
    for i in range(factor * limit):
        feed(wt, qe.StreamDataReceived(4 * i, connect_block(4 * i), False))
    assert wt.table_sizes()["parked_requests"] == limit
    assert len(quic.resets) == (factor - 1) * limit
    events = feed(wt, client_settings_event())
    assert sum(isinstance(e, SessionRequested) for e in events) == limit
    assert wt.table_sizes()["parked_requests"] == 0


@pytest.mark.parametrize("factor", [4, 16])
def test_capsule_bytes_before_accept_are_bounded(factor: int) -> None:
    limit = 1000
    wt, quic = wt_server(WebTransportConfiguration(max_buffered_capsule_bytes=limit))
    feed(wt, qe.StreamDataReceived(0, connect_block(0), False))
    events = []
    for _ in range(factor):
        events += feed(wt, qe.StreamDataReceived(0, encode_data_frame(bytes(limit // 2)), False))
    assert quic.resets.get(0) == H3ErrorCode.H3_EXCESSIVE_LOAD
    assert any(isinstance(e, SessionClosed) for e in events)
    assert wt.table_sizes()["sessions"] == 0
