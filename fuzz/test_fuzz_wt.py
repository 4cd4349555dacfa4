"""Property tests for the WebTransport core: arbitrary capsule streams on an established
session and arbitrary WebTransport stream headers never raise; the session either stays
established or ends with exactly one SessionClosed; bad session IDs close the
connection with H3_ID_ERROR."""

from __future__ import annotations

from typing import Any

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
from h3.frames import encode_data_frame, encode_headers_frame
from h3.qpack import QpackEncoder
from h3.settings import encode_settings_frame
from h3.streams import StreamType, encode_uni_stream_header, encode_webtransport_bidi_header
from pywebtransport.protocol import (
    Draft,
    SessionClosed,
    SessionRequested,
    SessionState,
    WebTransportConnection,
    WebTransportEvent,
)
from pywebtransport.protocol.drafts import draft_settings
from quic import events as qe
from quic.buffer import VARINT_MAX, encode_varint


class FakeQuic:
    """Just enough of QuicConnection's public API for H3 and WebTransport."""

    def __init__(self, is_client: bool) -> None:
        self.is_client = is_client
        self.max_datagram_payload = 1200
        self._next = {True: 1 if not is_client else 0, False: 3 if not is_client else 2}
        self.closed: int | None = None
        self.resets: dict[int, int] = {}
        self.stops: dict[int, int] = {}
        self.written: dict[int, bytearray] = {}
        self.fins: set[int] = set()
        self.consumed: dict[int, int] = {}

    def create_stream(self, bidirectional: bool = True) -> int:
        sid = self._next[bidirectional]
        self._next[bidirectional] += 4
        return sid

    def send_stream_data(self, stream_id: int, data: Any, end_stream: bool = False) -> bool:
        if stream_id in self.fins:
            raise ValueError("write after FIN")
        self.written.setdefault(stream_id, bytearray()).extend(data)
        if end_stream:
            self.fins.add(stream_id)
        return True

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self.resets.setdefault(stream_id, error_code)

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        self.stops.setdefault(stream_id, error_code)

    def consume_stream_data(self, stream_id: int, nbytes: int) -> None:
        self.consumed[stream_id] = self.consumed.get(stream_id, 0) + nbytes

    def send_datagram(self, data: Any) -> None:
        pass

    def close(self, error_code: int = 0, reason: str = "", *, application: bool = True) -> None:
        if self.closed is None:
            self.closed = error_code


def feed(wt: WebTransportConnection, event: qe.QuicEvent) -> list[WebTransportEvent]:
    """Handle one QUIC event and drain what it caused (events leave by next_event only)."""
    assert wt.handle_event(event) is None  # type: ignore[func-returns-value]
    events: list[WebTransportEvent] = []
    while (item := wt.next_event()) is not None:
        events.append(item)
    assert wt.h3.next_event() is None  # HTTP/3's queue is drained too
    return events


def server_with_session() -> tuple[WebTransportConnection, FakeQuic, list[WebTransportEvent]]:
    quic = FakeQuic(is_client=False)
    wt = WebTransportConnection(quic)  # type: ignore[arg-type]
    events: list[WebTransportEvent] = []
    events += feed(wt, qe.HandshakeCompleted("h3"))
    client_settings = {0x1: 0, 0x7: 0, **draft_settings(list(Draft), True, 4, 1000, 10, 10)}
    control = encode_uni_stream_header(StreamType.CONTROL) + encode_settings_frame(client_settings)
    events += feed(wt, qe.StreamDataReceived(2, control, False))
    block = QpackEncoder().encode(
        0,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"webtransport-h3"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/fuzz"),
        ],
    )
    events += feed(wt, qe.StreamDataReceived(0, encode_headers_frame(block), False))
    assert any(isinstance(e, SessionRequested) for e in events)
    wt.accept(0)
    while wt.next_event() is not None:
        pass
    return wt, quic, []


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
