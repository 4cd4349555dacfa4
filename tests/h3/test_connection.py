"""HTTP/3 connections over in-memory QUIC pairs on a fake clock."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from h3.connection import H3Configuration, H3Connection
from h3.errors import H3ErrorCode
from h3.events import (
    DatagramReceived,
    DataReceived,
    GoAwayReceived,
    H3Event,
    HeadersReceived,
    RequestStreamReset,
    SettingsReceived,
    WebTransportStreamDataReceived,
)
from h3.frames import FrameReader, FrameType, encode_frame
from h3.settings import SettingId
from quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived
from tests.support.quicpair import Pair, make_pair


class H3Pair:
    def __init__(self, pair: Pair, client_cfg: H3Configuration, server_cfg: H3Configuration):
        self.pair = pair
        self.client = H3Connection(pair.client, client_cfg)
        self.server_cfg = server_cfg
        self.server: H3Connection | None = None
        self.events: dict[str, list[H3Event]] = {"client": [], "server": []}
        self.quic_events: dict[str, list[QuicEvent]] = {"client": [], "server": []}

    def pump(self) -> bool:
        pair = self.pair
        seen = False
        while (item := pair.client_endpoint.next_event()) is not None:
            seen = True
            self.quic_events["client"].append(item[1])
            self.client.handle_event(item[1])
            self._drain("client", self.client)
        while (item := pair.server_endpoint.next_event()) is not None:
            seen = True
            if self.server is None:
                self.server = H3Connection(item[0], self.server_cfg)
            self.quic_events["server"].append(item[1])
            self.server.handle_event(item[1])
            self._drain("server", self.server)
        return seen

    def _drain(self, side: str, conn: H3Connection) -> None:
        while (event := conn.next_event()) is not None:
            self.events[side].append(event)
            # the test application consumes every payload it is handed
            if isinstance(event, (DataReceived, WebTransportStreamDataReceived)) and event.data:
                conn.consume_data(event.stream_id, len(event.data))

    def run(self, until: Callable[[], bool], max_time: float = 10.0) -> None:
        def cond() -> bool:
            self.pump()
            return until()

        self.pair.net.run(cond, max_time=max_time)

    def of(self, kind: type, side: str = "server") -> list[Any]:
        return [e for e in self.events[side] if isinstance(e, kind)]


def h3pair(
    client_cfg: H3Configuration | None = None, server_cfg: H3Configuration | None = None, **kw: Any
) -> H3Pair:
    pair = make_pair(
        client_kwargs={"alpn_protocols": ["h3"]}, server_kwargs={"alpn_protocols": ["h3"]}, **kw
    )
    p = H3Pair(pair, client_cfg or H3Configuration(), server_cfg or H3Configuration())
    pair.net.after_flush = p.pump
    p.run(lambda: bool(p.of(SettingsReceived, "client")) and bool(p.of(SettingsReceived)))
    return p


REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/index.html"),
]


def body(p: H3Pair, sid: int, side: str) -> bytes:
    return b"".join(e.data for e in p.of(DataReceived, side) if e.stream_id == sid)


def ended(p: H3Pair, sid: int, side: str) -> bool:
    return any(
        e.stream_ended
        for e in p.events[side]
        if isinstance(e, (DataReceived, HeadersReceived)) and e.stream_id == sid
    )


def terminated(p: H3Pair) -> Any:
    return next((e for e in p.quic_events["client"] if isinstance(e, ConnectionTerminated)), None)


def test_settings_exchanged_with_qpack_values() -> None:
    p = h3pair()
    settings = p.of(SettingsReceived, "client")[0].settings
    assert settings[SettingId.QPACK_MAX_TABLE_CAPACITY] == 4096
    assert settings[SettingId.QPACK_BLOCKED_STREAMS] == 16
    assert settings[SettingId.MAX_FIELD_SECTION_SIZE] == 65536


def test_request_and_response_with_body_and_trailers() -> None:
    p = h3pair()
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(sid, [*REQUEST[:1], (b":method", b"POST")][1:] + REQUEST[1:])
    p.client.send_data(sid, b"request body")
    p.client.send_headers(sid, [(b"x-trailer", b"yes")], end_stream=True)
    p.run(lambda: ended(p, sid, "server"))
    assert body(p, sid, "server") == b"request body"
    assert p.server is not None
    heads = [e.headers for e in p.of(HeadersReceived) if e.stream_id == sid]
    assert heads[0][0] == (b":method", b"POST") and heads[1] == [(b"x-trailer", b"yes")]
    payload = bytes(range(256)) * 4000
    p.server.send_headers(
        sid, [(b":status", b"200"), (b"content-length", str(len(payload)).encode())]
    )
    p.server.send_data(sid, payload, end_stream=True)
    p.run(lambda: ended(p, sid, "client"))
    assert body(p, sid, "client") == payload
    assert p.of(HeadersReceived, "client")[0].headers[0] == (b":status", b"200")


def test_many_requests_use_the_dynamic_table() -> None:
    p = h3pair()
    sids = []
    for i in range(20):
        sid = p.client.get_next_available_stream_id()
        p.client.send_headers(
            sid,
            [*REQUEST, (b"user-agent", b"pywebtransport-test"), (b"x-n", str(i).encode())],
            end_stream=True,
        )
        sids.append(sid)
    p.run(lambda: all(ended(p, s, "server") for s in sids))
    assert p.client.encoder.max_table_capacity == 4096
    got = {e.stream_id: dict(e.headers) for e in p.of(HeadersReceived)}
    assert all(got[s][b"user-agent"] == b"pywebtransport-test" for s in sids)


def test_data_before_headers_is_frame_unexpected() -> None:
    p = h3pair()
    sid = p.client.get_next_available_stream_id()
    p.pair.client.send_stream_data(sid, encode_frame(FrameType.DATA, b"oops"))
    p.run(lambda: terminated(p) is not None)
    term = terminated(p)
    assert term.error_code == H3ErrorCode.H3_FRAME_UNEXPECTED


def test_malformed_request_is_stream_error_only() -> None:
    p = h3pair()
    bad = p.client.get_next_available_stream_id()
    p.client.send_headers(bad, [(b":method", b"GET"), (b"Upper", b"x")], end_stream=True)
    good = p.client.get_next_available_stream_id()
    p.client.send_headers(good, REQUEST, end_stream=True)
    p.run(lambda: ended(p, good, "server") and bool(p.of(RequestStreamReset, "client")))
    reset = p.of(RequestStreamReset, "client")[0]
    assert (reset.stream_id, reset.error_code) == (bad, H3ErrorCode.H3_MESSAGE_ERROR)


def test_second_settings_and_control_stream_close_are_connection_errors() -> None:
    p = h3pair()
    assert p.client.control.control_id is not None
    p.pair.client.send_stream_data(
        p.client.control.control_id, encode_frame(FrameType.SETTINGS, b"")
    )
    p.run(lambda: terminated(p) is not None)
    term = terminated(p)
    assert term.error_code == H3ErrorCode.H3_FRAME_UNEXPECTED

    p = h3pair()
    assert p.client.control.control_id is not None
    p.pair.client.send_stream_data(p.client.control.control_id, b"", end_stream=True)
    p.run(lambda: terminated(p) is not None)
    term = terminated(p)
    assert term.error_code == H3ErrorCode.H3_CLOSED_CRITICAL_STREAM


def test_goaway_rejects_later_requests() -> None:
    p = h3pair()
    first = p.client.get_next_available_stream_id()
    p.client.send_headers(first, REQUEST, end_stream=True)
    p.run(lambda: ended(p, first, "server"))
    assert p.server is not None
    p.server.send_goaway()
    p.run(lambda: bool(p.of(GoAwayReceived, "client")))
    assert p.of(GoAwayReceived, "client")[0].stream_id == first + 4
    with pytest.raises(RuntimeError):
        p.client.get_next_available_stream_id()


def test_http_datagrams_with_quarter_stream_id() -> None:
    cfg = H3Configuration(enable_datagrams=True)
    p = h3pair(cfg, H3Configuration(enable_datagrams=True))
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(sid, REQUEST)
    p.client.send_datagram(sid, b"hello datagram")
    p.run(lambda: bool(p.of(DatagramReceived)))
    event = p.of(DatagramReceived)[0]
    assert (event.stream_id, event.data) == (sid, b"hello datagram")


def test_datagram_without_setting_is_refused_locally() -> None:
    p = h3pair()
    sid = p.client.get_next_available_stream_id()
    assert p.client.max_datagram_payload(sid) == 0
    with pytest.raises(ValueError):
        p.client.send_datagram(sid, b"x")


def test_http_datagram_size_follows_the_path_mtu() -> None:
    """docs/datagrams.md: the QUIC payload less the Quarter Stream ID, read live; it grows
    once path MTU discovery (on by default) has proved 1452-byte packets."""
    p = h3pair(H3Configuration(enable_datagrams=True), H3Configuration(enable_datagrams=True))
    quic = p.pair.client
    sid = p.client.get_next_available_stream_id()
    far = 4 * 64  # Quarter Stream ID 64: a 2-byte varint
    p.run(lambda: quic.max_datagram_size == 1452)
    assert p.client.max_datagram_payload(sid) == quic.max_datagram_payload - 1 == 1419
    assert p.client.max_datagram_payload(far) == quic.max_datagram_payload - 2
    p.client.send_headers(sid, REQUEST)
    data = bytes(range(256)) * 5 + bytes(1419 - 1280)
    p.client.send_datagram(sid, data)
    p.run(lambda: bool(p.of(DatagramReceived)))
    assert p.of(DatagramReceived)[0].data == data
    with pytest.raises(ValueError):
        p.client.send_datagram(sid, bytes(1420))


def test_extended_connect_requires_the_setting() -> None:
    cfg = H3Configuration(enable_connect_protocol=True)
    p = h3pair(H3Configuration(), cfg)
    assert p.of(SettingsReceived, "client")[0].settings[SettingId.ENABLE_CONNECT_PROTOCOL] == 1
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(
        sid,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"webtransport"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/wt"),
        ],
    )
    p.run(lambda: bool(p.of(HeadersReceived)))
    assert dict(p.of(HeadersReceived)[0].headers)[b":protocol"] == b"webtransport"


@pytest.mark.parametrize(("method", "status"), [(b"HEAD", b"200"), (b"GET", b"204")])
def test_response_without_content_may_declare_a_length(method: bytes, status: bytes) -> None:
    """RFC 9114 §4.1.2: responses to HEAD, and 204/304, have no content whatever their
    content-length says; the stream is not treated as malformed."""
    p = h3pair()
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(sid, [(b":method", method), *REQUEST[1:]], end_stream=True)
    p.run(lambda: ended(p, sid, "server"))
    assert p.server is not None
    p.server.send_headers(sid, [(b":status", status), (b"content-length", b"1234")], True)
    p.run(lambda: ended(p, sid, "client"))
    with contextlib.suppress(TimeoutError):  # give a reset from the client time to arrive
        p.run(lambda: bool(p.of(RequestStreamReset)), max_time=0.5)
    assert [e.headers[0] for e in p.of(HeadersReceived, "client")] == [(b":status", status)]
    assert not p.of(RequestStreamReset)  # the client did not reset the stream
    assert p.client.quic.streams.send_buffered(sid) == 0 and not p.client._head_requests


def test_reply_on_own_webtransport_bidi_stream_is_raw_data() -> None:
    from h3.events import WebTransportStreamDataReceived

    wt = H3Configuration(enable_webtransport=True, enable_connect_protocol=True)
    p = h3pair(H3Configuration(enable_webtransport=True), wt)
    session = p.client.get_next_available_stream_id()
    sid = p.client.create_webtransport_stream(session, bidirectional=True)
    p.client.quic.send_stream_data(sid, b"hello")
    p.run(lambda: bool(p.of(WebTransportStreamDataReceived)))
    assert p.server is not None
    # the reply is not HTTP/3 frames: it must reach the client as WebTransport data
    p.server.quic.send_stream_data(sid, b"\x00\xffraw reply", end_stream=True)
    p.run(lambda: any(e.stream_ended for e in p.of(WebTransportStreamDataReceived, "client")))
    got = p.of(WebTransportStreamDataReceived, "client")
    assert b"".join(e.data for e in got) == b"\x00\xffraw reply"
    assert all(e.session_id == session and e.stream_id == sid for e in got)


@pytest.mark.parametrize(
    "first",
    [
        b"\x40\x41\x00hello",  # a whole header: read without a FrameReader
        b"\x40\x41\x00",  # the header alone: the stream is reported at once
        b"\x80\x00\x00\x41\x00hello",  # 0x41 in four bytes: by the FrameReader
        b"\x40",  # a split header: by the FrameReader
    ],
)
def test_peer_webtransport_bidi_stream_header_forms(
    first: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However a peer's WebTransport bidi stream header arrives, the stream reaches
    the application the same way: its session, then its data; it is read as raw data
    (a FrameReader is made only when the first bytes are not a whole usual header)."""
    import h3.connection

    readers: list[object] = []

    def counting_reader(*args: Any, **kwargs: Any) -> Any:
        readers.append(args)
        return FrameReader(*args, **kwargs)

    monkeypatch.setattr(h3.connection, "FrameReader", counting_reader)
    wt = H3Configuration(enable_webtransport=True, enable_connect_protocol=True)
    p = h3pair(H3Configuration(enable_webtransport=True), wt)
    sid = p.client.quic.create_stream(True)
    p.client.quic.send_stream_data(sid, first)
    p.run(lambda: p.server is not None and sid in dict(p.server._streams.items()))
    assert p.server is not None
    state = p.server._streams.get(sid)
    assert state is not None
    whole = first != b"\x40"  # the header complete: raw data from here on
    assert (state.frames is None) == whole
    assert len(readers) == (0 if first.startswith(b"\x40\x41") else 1)
    if whole:  # reported at once, even before any data
        assert [e.session_id for e in p.of(WebTransportStreamDataReceived)] == [0]
    rest = b"\x41\x00" if first == b"\x40" else b""
    p.client.quic.send_stream_data(sid, rest + b"\x01\x02raw", end_stream=True)
    p.run(lambda: any(e.stream_ended for e in p.of(WebTransportStreamDataReceived)))
    got = p.of(WebTransportStreamDataReceived)
    body = b"hello" if first.endswith(b"hello") else b""
    assert b"".join(e.data for e in got) == body + b"\x01\x02raw"
    assert all(e.session_id == 0 and e.stream_id == sid for e in got)
    assert p.server._streams.get(sid) is None and p.server._streams.is_closed(sid)


def test_peer_webtransport_bidi_stream_whole_with_fin_keeps_no_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Header, data and FIN in one chunk (the usual short WebTransport request): one
    event, no stream state made for it, the stream closed; more of it is ignored."""
    import h3.stream_state

    opened: list[int] = []
    real_open = h3.stream_state.StreamTable.open

    def counting_open(self: Any, stream_id: int, frames: Any) -> Any:
        opened.append(stream_id)
        return real_open(self, stream_id, frames)

    monkeypatch.setattr(h3.stream_state.StreamTable, "open", counting_open)
    wt = H3Configuration(enable_webtransport=True, enable_connect_protocol=True)
    p = h3pair(H3Configuration(enable_webtransport=True), wt)
    sid = p.client.quic.create_stream(True)
    p.client.quic.send_stream_data(sid, b"\x40\x41\x00hello", end_stream=True)
    p.run(lambda: any(e.stream_ended for e in p.of(WebTransportStreamDataReceived)))
    assert p.server is not None
    got = p.of(WebTransportStreamDataReceived)
    assert [(e.stream_id, e.session_id, e.data, e.stream_ended) for e in got] == [
        (sid, 0, b"hello", True)
    ]
    assert sid not in opened  # the server kept nothing for it
    assert p.server._streams.get(sid) is None and p.server._streams.is_closed(sid)
    p.server.handle_event(StreamDataReceived(stream_id=sid, data=b"more", end_stream=True))
    p._drain("server", p.server)
    assert len(p.of(WebTransportStreamDataReceived)) == 1  # a closed stream: ignored


def test_locally_reset_malformed_response_is_reported() -> None:
    """A stream error we raise (RFC 9114 §8) reaches the application as an event."""
    p = h3pair()
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(sid, REQUEST, end_stream=True)
    p.run(lambda: ended(p, sid, "server"))
    assert p.server is not None
    p.server.send_headers(sid, [(b":status", b"2000")], end_stream=True)  # invalid status
    p.run(lambda: bool(p.of(RequestStreamReset, "client")))
    event = p.of(RequestStreamReset, "client")[0]
    assert (event.stream_id, event.error_code, event.local) == (
        sid,
        H3ErrorCode.H3_MESSAGE_ERROR,
        True,
    )
