"""Issue 8, finding 10: no exception escapes ``WebTransportConnection.handle_event``.

A GET with trailers in one STREAM frame used to be answered twice (the trailers were
taken for a second request), the second answer raised ``StreamUsageError`` out of
``handle_event``, and the rest of the receive batch was skipped. Protocol errors of the
peer become their error code; a bug of ours closes the connection with
H3_INTERNAL_ERROR and is logged once.
"""

from __future__ import annotations

import logging

import pytest

from h3.errors import H3ErrorCode
from h3.frames import FrameReader, FrameType, encode_data_frame
from pywebtransport.protocol import DatagramReceived, SessionRequested, StreamData
from quic import events as qe
from tests.wt.hostile import GET, connect_request, headers_frame, raw_bidi
from tests.wt.wtpair import WtPair, establish, wt_pair

TRAILERS = [(b"x-checksum", b"abc")]


def response_frames(p: WtPair, stream_id: int) -> tuple[list[int], bool]:
    """Frame types the client received on ``stream_id`` and whether FIN came."""
    data = b"".join(
        e.data
        for e in p.quic_events["client"]
        if isinstance(e, qe.StreamDataReceived) and e.stream_id == stream_id
    )
    fin = any(
        e.end_stream
        for e in p.quic_events["client"]
        if isinstance(e, qe.StreamDataReceived) and e.stream_id == stream_id
    )
    return [t for t, _ in FrameReader(1 << 20).feed(data, fin)], fin


def get_with_trailers(p: WtPair, stream_id_hint: int = 0) -> int:
    """HEADERS(GET) + DATA + HEADERS(trailers) + FIN in one write (one STREAM frame)."""
    return raw_bidi(
        p,
        [
            headers_frame(stream_id_hint, GET),
            encode_data_frame(b"body"),
            headers_frame(stream_id_hint, TRAILERS),
        ],
        fin=True,
    )


@pytest.mark.parametrize("count", [25, 100])
def test_get_with_trailers_in_one_frame_is_answered_once(count: int) -> None:
    p = wt_pair()
    sid = establish(p)
    gets = [get_with_trailers(p) for _ in range(count)]
    for i in range(count):  # the real session keeps working in between
        p.client.send_datagram(sid, b"%d" % i)
    p.settle(1.0)  # handle_event raised here before the fix
    for stream_id in gets:
        frames, fin = response_frames(p, stream_id)
        assert frames == [FrameType.HEADERS] and fin  # one 404, then FIN
    assert len(p.of(DatagramReceived)) == count
    sizes = p.server.table_sizes()
    assert sizes["sessions"] == 1 and sizes["claimed_ids"] == 0
    assert not any(v for k, v in sizes.items() if k != "sessions")


def test_trailers_with_fin_end_a_session_like_a_fin() -> None:
    p = wt_pair()
    connect = raw_bidi(p, [headers_frame(0, connect_request())], fin=False)
    p.run(lambda: connect in {e.session_id for e in p.of(SessionRequested)})
    p.server.accept(connect)
    p.settle(0.2)
    p.pair.client.send_stream_data(connect, headers_frame(0, TRAILERS), True)
    p.settle(0.5)
    assert p.server.table_sizes()["sessions"] == 0  # ended by the trailers' FIN (§6)


def test_internal_bug_closes_the_connection_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    p = wt_pair()
    sid = establish(p)

    def bug(session_id: int, data: bytes) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(p.server, "_on_datagram", bug)
    caplog.set_level(logging.ERROR, logger="pywebtransport.protocol")
    for _ in range(5):
        p.client.send_datagram(sid, b"boom")
    p.settle(2.0)  # no exception reaches the driver
    closes = [e for e in p.quic_events["client"] if isinstance(e, qe.ConnectionTerminated)]
    assert closes and closes[0].error_code == H3ErrorCode.H3_INTERNAL_ERROR
    errors = [r for r in caplog.records if r.name == "pywebtransport.protocol"]
    assert len(errors) == 1 and errors[0].exc_info is not None


def test_stream_data_for_a_plain_request_is_dropped_and_credited() -> None:
    """Bodies of requests we refuse are consumed at once: a client can keep posting
    without exhausting the connection's flow-control window."""
    p = wt_pair()
    sid = establish(p)
    body = bytes(64 * 1024)
    for _ in range(128):  # 8 MiB of request bodies > the 4 MiB connection window
        raw_bidi(p, [headers_frame(0, GET), encode_data_frame(body)], fin=True)
        p.settle(0.02)
    p.client.send_datagram(sid, b"still alive")
    p.settle(1.0)
    assert p.of(DatagramReceived)[-1].data == b"still alive"
    assert not p.of(StreamData)
