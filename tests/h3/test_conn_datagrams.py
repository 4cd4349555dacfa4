"""h3.conn_datagrams: HTTP datagrams of one connection on their own (RFC 9297 §2.1,
RFC 9114 §7.2.4.2) — send, receive, and the per-datagram route query. The collaborators
it reads (QUIC connection, control streams, 0-RTT policy, qlog) are small recorders
here; the stream table is the real one. End to end over a pair: ``test_connection.py``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from h3.conn_datagrams import H3Datagrams
from h3.connection import H3Configuration, H3Connection
from h3.control import ControlStreams
from h3.early import EarlyRequests
from h3.errors import H3ConnectionError, H3ErrorCode
from h3.events import DatagramReceived, H3Event
from h3.qlog import H3Logger
from h3.settings import SettingId
from h3.stream_state import StreamTable
from quic import events as qe
from quic.connection import QuicConnection
from tests.support.quicpair import client_config

ON = {int(SettingId.H3_DATAGRAM): 1}
OFF = {int(SettingId.H3_DATAGRAM): 0}


class _Quic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.max_datagram_payload = 1000

    def send_datagram(self, data: bytes) -> None:
        self.sent.append(data)


class _Qlog:
    def __init__(self) -> None:
        self.logged: list[tuple[bool, int, int]] = []

    def datagram(self, created: bool, stream_id: int, length: int) -> None:
        self.logged.append((created, stream_id, length))


class _Setup:
    def __init__(
        self,
        *,
        enabled: bool = True,
        peer: dict[int, int] | None = ON,
        remembered: dict[int, int] | None = None,
        qlog: bool = False,
    ) -> None:
        self.quic = _Quic()
        self.config = H3Configuration(enable_datagrams=enabled)
        self.control = SimpleNamespace(
            peer_settings=peer, memory=SimpleNamespace(remembered=remembered)
        )
        self.streams = StreamTable()
        self.early = SimpleNamespace(passes_through=True)
        self.events: list[H3Event] = []
        self.qlog = _Qlog() if qlog else None
        self.datagrams = H3Datagrams(
            cast(QuicConnection, self.quic),
            self.config,
            cast(ControlStreams, self.control),
            self.streams,
            cast(EarlyRequests, self.early),
            self.events.append,
            cast(H3Logger, self.qlog),
        )


def test_send_writes_the_quarter_stream_id_in_front() -> None:
    s = _Setup()
    s.datagrams.send(4, b"hello")
    s.datagrams.send(400, memoryview(b"xy"))  # Quarter Stream ID 100: two-byte varint
    assert s.quic.sent == [b"\x01hello", b"\x40\x64xy"]


@pytest.mark.parametrize(
    ("peer", "remembered", "enabled"),
    [
        (None, None, False),  # no SETTINGS yet, nothing remembered
        (OFF, None, False),
        ({}, ON, False),  # the peer's own SETTINGS win over the remembered ones
        (None, ON, True),  # 0-RTT: the remembered SETTINGS (RFC 9114 §7.2.4.2)
        (ON, None, True),
    ],
)
def test_send_only_if_the_peer_enabled_them(
    peer: dict[int, int] | None, remembered: dict[int, int] | None, enabled: bool
) -> None:
    s = _Setup(peer=peer, remembered=remembered)
    assert s.datagrams.peer_enabled() is enabled
    assert s.datagrams.max_payload(0) == (999 if enabled else 0)
    if enabled:
        s.datagrams.send(0, b"x")
        assert s.quic.sent == [b"\x00x"]
    else:
        with pytest.raises(ValueError, match="did not enable"):
            s.datagrams.send(0, b"x")
        assert s.quic.sent == []


def test_max_payload_leaves_room_for_the_quarter_stream_id() -> None:
    s = _Setup()
    s.quic.max_datagram_payload = 100
    assert s.datagrams.max_payload(4) == 99
    assert s.datagrams.max_payload(4 * 64) == 98  # a two-byte Quarter Stream ID
    s.quic.max_datagram_payload = 1  # read live: it follows the path MTU
    assert s.datagrams.max_payload(4 * 64) == 0


def test_receive_queues_the_event_or_drops_for_a_closed_stream() -> None:
    s = _Setup()
    s.datagrams.receive(b"\x02payload")
    s.streams.close(4)
    s.datagrams.receive(b"\x01late")  # RFC 9297 §2.1: the receive side is closed
    assert s.events == [DatagramReceived(8, b"payload")]


@pytest.mark.parametrize(("enabled", "data"), [(False, b"\x01x"), (True, b""), (True, b"\x40")])
def test_receive_errors_are_h3_datagram_error(enabled: bool, data: bytes) -> None:
    s = _Setup(enabled=enabled)
    with pytest.raises(H3ConnectionError) as info:
        s.datagrams.receive(data)
    assert info.value.error_code == H3ErrorCode.H3_DATAGRAM_ERROR
    assert s.events == []


def test_qlog_sees_both_directions() -> None:
    s = _Setup(qlog=True)
    s.datagrams.send(8, b"abc")
    s.datagrams.receive(b"\x03hello")
    assert s.qlog is not None and s.qlog.logged == [(True, 8, 3), (False, 12, 5)]


def test_route_answers_only_when_the_event_would_be_all() -> None:
    s = _Setup()
    assert s.datagrams.route(b"\x01ping") == (4, b"ping")
    s.streams.close(4)
    assert s.datagrams.route(b"\x01ping") is None  # receive would drop it
    assert s.datagrams.route(b"") is None  # receive would raise H3_DATAGRAM_ERROR
    s.early.passes_through = False  # 0-RTT events held back: order matters
    assert s.datagrams.route(b"\x02ping") is None
    s.early.passes_through = True
    assert s.datagrams.route(b"\x02ping") == (8, b"ping")
    s.config.enable_datagrams = False  # receive would raise: read per datagram
    assert s.datagrams.route(b"\x02ping") is None
    assert s.events == [] and s.quic.sent == []  # a query: nothing queued, nothing sent
    logged = _Setup(qlog=True)
    assert logged.datagrams.route(b"\x01ping") is None  # receive would log it


def test_route_reads_closed_streams_as_the_table_does() -> None:
    """route() reads StreamTable.is_closed inline: the same answer for every quarter
    stream ID of one byte, with no stream closed and with some (of other kinds too)."""
    s = _Setup()
    seen = set()
    for closes in ((), (3, 7), (0, 4, 8, 400, 2, 6, 1, 5)):
        for sid in closes:
            s.streams.close(sid)
        for quarter in range(0x40):
            routed = s.datagrams.route(bytes((quarter,)) + b"x") is not None
            assert routed == (not s.streams.is_closed(quarter << 2))
            seen.add(routed)
    assert seen == {True, False}


def test_the_connection_routes_only_when_open_and_drained() -> None:
    """H3Connection.datagram_route adds the owner's own conditions: nothing queued, not
    closed; its datagram API is the component's."""
    conn = H3Connection(QuicConnection(client_config()), H3Configuration(enable_datagrams=True))
    assert conn.datagram_route(b"\x01ping") == (4, b"ping")
    conn.send_goaway()  # queues ConnectionShutdownInitiated
    assert conn.datagram_route(b"\x01ping") is None
    while conn.next_event() is not None:
        pass
    assert conn.datagram_route(b"\x01ping") == (4, b"ping")
    conn.handle_event(qe.DatagramReceived(b"\x01ping"))
    assert conn.next_event() == DatagramReceived(4, b"ping")
    assert conn.max_datagram_payload(4) == 0  # no SETTINGS from the peer yet
    conn.closed = True
    assert conn.datagram_route(b"\x01ping") is None
