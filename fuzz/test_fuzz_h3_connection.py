"""Arbitrary bytes on HTTP/3 streams: the H3 connection turns them into H3 errors (a
stream reset or a connection close with an H3 code) and never raises anything else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from h3.connection import H3Configuration, H3Connection
from h3.errors import H3ErrorCode
from quic import events as qe
from tests.support.quicpair import make_pair

_H3_CODES = {int(c) for c in H3ErrorCode}

# client-initiated bidi (requests), client uni (control/QPACK/unknown), with data chunks
_stream_ids = st.sampled_from([0, 4, 8, 2, 6, 10, 14])
_chunks = st.lists(
    st.tuples(_stream_ids, st.binary(max_size=64), st.booleans()), min_size=1, max_size=12
)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_chunks, st.booleans())
def test_random_stream_data_into_server(chunks: list[tuple[int, bytes, bool]], wt: bool) -> None:
    pair = make_pair(
        client_kwargs={"alpn_protocols": ["h3"]}, server_kwargs={"alpn_protocols": ["h3"]}
    )
    pair.handshake()
    config = H3Configuration(
        enable_connect_protocol=wt, enable_datagrams=wt, enable_webtransport=wt
    )
    h3 = H3Connection(pair.server, config)
    h3.initialize()
    for sid, data, fin in chunks:
        h3.handle_event(qe.StreamDataReceived(sid, data, fin))
        while h3.next_event() is not None:  # one way out: drained, never returned
            pass
        if h3.closed:
            break
    h3.handle_event(qe.DatagramReceived(b"\x00\x01"))
    assert h3.last_internal_error is None
    close = pair.server._close_frame
    if close is not None:
        application, code, _ft, _reason = close
        assert application and code in _H3_CODES
    assert pair.server.last_internal_error is None
