"""Property tests for the WebTransport core: arbitrary capsule streams on an established
session and arbitrary WebTransport stream headers never raise; the session either stays
established or ends with exactly one SessionClosed; bad session IDs close the
connection with H3_ID_ERROR."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from h3.capsules import (
    FLOW_CONTROL_CAPSULES,
    CapsuleType,
    encode_capsule,
    encode_close_webtransport_session,
    encode_drain_webtransport_session,
)
from h3.errors import H3ErrorCode
from h3.frames import encode_data_frame
from h3.streams import StreamType, encode_uni_stream_header, encode_webtransport_bidi_header
from pywebtransport.protocol import (
    SessionClosed,
    SessionState,
    WebTransportEvent,
)
from quic import events as qe
from quic.buffer import VARINT_MAX, encode_varint
from tests.wt.fakequic import feed, server_with_session

varints = st.integers(0, VARINT_MAX)
capsules = st.one_of(
    st.builds(
        encode_close_webtransport_session,
        st.integers(0, 0xFFFFFFFF),
        st.text(max_size=20),
    ),
    st.just(encode_drain_webtransport_session()),
    st.builds(
        lambda t, v: encode_capsule(t, encode_varint(v)),
        st.sampled_from(sorted(FLOW_CONTROL_CAPSULES)),
        varints,
    ),
    st.builds(lambda v: encode_capsule(CapsuleType.DATAGRAM, v), st.binary(max_size=20)),
    st.builds(encode_capsule, varints, st.binary(max_size=20)),
    st.binary(max_size=24),  # raw garbage
)


@settings(max_examples=150, deadline=None)
@given(st.lists(capsules, max_size=8), st.integers(1, 16), st.booleans())
def test_capsule_streams_never_raise(parts: list[bytes], chunk: int, fin: bool) -> None:
    wt, quic, _ = server_with_session()
    data = b"".join(parts)
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    events: list[WebTransportEvent] = []
    offset = 0
    for index, piece in enumerate(pieces):
        last = fin and index == len(pieces) - 1
        frame = encode_data_frame(piece) if piece else b""
        events += feed(wt, qe.StreamDataReceived(0, frame, last))
        offset += len(frame)
    assert all(isinstance(e, WebTransportEvent) for e in events)
    closed = [e for e in events if isinstance(e, SessionClosed)]
    assert len(closed) <= 1
    state = wt.session_state(0)
    assert (state is SessionState.CLOSED) == bool(closed)
    if fin:
        assert closed
    if closed and closed[0].http_code is not None:
        assert quic.resets.get(0) == closed[0].http_code


@settings(max_examples=150, deadline=None)
@given(varints, st.binary(max_size=20), st.booleans(), st.booleans())
def test_stream_headers_never_raise(session_id: int, body: bytes, bidi: bool, fin: bool) -> None:
    wt, quic, _ = server_with_session()
    if bidi:
        sid, header = 4, encode_webtransport_bidi_header(session_id)
    else:
        sid, header = 6, encode_uni_stream_header(StreamType.WEBTRANSPORT_UNI, session_id)
    feed(wt, qe.StreamDataReceived(sid, header + body, fin))
    if session_id & 3 and (bidi or body or fin):
        assert quic.closed == H3ErrorCode.H3_ID_ERROR
    else:
        assert quic.closed is None
