"""A stand-in for QuicConnection's public API, for driving one WebTransport endpoint
with hand-made QUIC events (no crypto, no network): fast enough for scale tests and
property tests. Writes, resets, stops and credit are recorded."""

from __future__ import annotations

from typing import Any

from h3.frames import encode_headers_frame
from h3.qpack import QpackEncoder
from h3.settings import encode_settings_frame
from h3.streams import StreamType, encode_uni_stream_header
from pywebtransport.protocol import (
    Draft,
    SessionRequested,
    WebTransportConfiguration,
    WebTransportConnection,
    WebTransportEvent,
)
from pywebtransport.protocol.drafts import draft_settings
from quic import events as qe

__all__ = ["FakeQuic", "connect_block", "feed", "server_with_session", "wt_server"]


class FakeQuic:
    """Just enough of QuicConnection's public API for H3 and WebTransport."""

    def __init__(self, is_client: bool) -> None:
        self.is_client = is_client
        self.max_datagram_payload = 1200
        self._next = {True: 1 if not is_client else 0, False: 3 if not is_client else 2}
        self.closed: int | None = None
        self.resets: dict[int, int] = {}
        self.reliable_sizes: dict[int, int] = {}  # RESET_STREAM_AT: stream -> size
        self.reliable_floors: dict[int, int] = {}  # set_reliable_floor: stream -> size
        self.stop_answers: dict[int, int] = {}  # set_stop_sending_answer: stream -> code
        self.stops: dict[int, int] = {}
        self.written: dict[int, bytearray] = {}
        self.fins: set[int] = set()
        self.consumed: dict[int, int] = {}
        self.keep_writes = True  # False: scale tests keep no written bytes
        self.qlog = None  # no qlog tracing (QuicConnection.qlog)

    def create_stream(self, bidirectional: bool = True) -> int:
        sid = self._next[bidirectional]
        self._next[bidirectional] += 4
        return sid

    def send_stream_data(self, stream_id: int, data: Any, end_stream: bool = False) -> bool:
        if stream_id in self.fins:
            raise ValueError("write after FIN")
        if self.keep_writes:
            self.written.setdefault(stream_id, bytearray()).extend(data)
        if end_stream:
            self.fins.add(stream_id)
        return True

    # the peer sent reset_stream_at, as draft-16 §3.1 requires of a draft-16 client
    # (draft-ietf-quic-reliable-stream-reset); the reliable size is recorded too
    peer_accepts_reset_stream_at = True

    def reset_stream(
        self, stream_id: int, error_code: int, reliable_size: int | None = None
    ) -> None:
        self.resets.setdefault(stream_id, error_code)
        if reliable_size is not None:
            self.reliable_sizes.setdefault(stream_id, reliable_size)

    def set_stop_sending_answer(self, stream_id: int, error_code: int) -> None:
        self.stop_answers[stream_id] = error_code

    def set_reliable_floor(self, stream_id: int, size: int) -> None:
        self.reliable_floors[stream_id] = size

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        self.stops.setdefault(stream_id, error_code)

    def consume_stream_data(self, stream_id: int, nbytes: int) -> bool:
        self.consumed[stream_id] = self.consumed.get(stream_id, 0) + nbytes
        return True

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


def connect_block(stream_id: int, path: str = "/fuzz") -> bytes:
    """A draft-16 extended CONNECT as one HEADERS frame."""
    block = QpackEncoder().encode(
        stream_id,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"webtransport-h3"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
        ],
    )
    return encode_headers_frame(block)


def client_settings_event(flow_control: bool = True) -> qe.StreamDataReceived:
    windows = (1000, 10, 10) if flow_control else (0, 0, 0)
    settings = {0x1: 0, 0x7: 0, **draft_settings(list(Draft), True, 4, *windows)}
    control = encode_uni_stream_header(StreamType.CONTROL) + encode_settings_frame(settings)
    return qe.StreamDataReceived(2, control, False)


def wt_server(
    config: WebTransportConfiguration | None = None, settings: bool = True
) -> tuple[WebTransportConnection, FakeQuic]:
    """A server WebTransportConnection after the handshake (and the client's SETTINGS)."""
    quic = FakeQuic(is_client=False)
    wt = WebTransportConnection(quic, config)  # type: ignore[arg-type]
    feed(wt, qe.HandshakeCompleted("h3"))
    if settings:
        feed(wt, client_settings_event())
    return wt, quic


def server_with_session(
    config: WebTransportConfiguration | None = None,
) -> tuple[WebTransportConnection, FakeQuic, list[WebTransportEvent]]:
    """A server with session 0 established."""
    wt, quic = wt_server(config)
    events = feed(wt, qe.StreamDataReceived(0, connect_block(0), False))
    assert any(isinstance(e, SessionRequested) for e in events)
    wt.accept(0)
    while wt.next_event() is not None:
        pass
    return wt, quic, []
