"""HTTP/3 rules of issue 8 (finding 12 and the limits): push streams and MAX_PUSH_ID
(RFC 9114 §4.6, §6.2.2, §7.2.7), SETTINGS size, HTTP datagrams for closed streams
(RFC 9297 §2.1), QPACK queues, and internal errors that must not escape."""

from __future__ import annotations

import logging
import random

import pytest

from h3.connection import H3Configuration, H3Connection
from h3.errors import H3ConnectionError, H3ErrorCode
from h3.events import DatagramReceived, H3Event, HeadersReceived
from h3.frames import encode_max_push_id_frame
from h3.qpack import QpackDecoder
from tests.h3.h3pair import IDLE, REQUEST, H3LeanPair, idle_sizes, lean_pair


def close_code(p: H3LeanPair, side: str = "client") -> int | None:
    p.run(lambda: p.close_code(side) is not None)
    return p.close_code(side)


# -- push (RFC 9114 §4.6, §6.2.2, §7.2.7) ---------------------------------------------


def test_client_opened_push_stream_is_stream_creation_error() -> None:
    """RFC 9114 §6.2.2: only servers push; a client-initiated push stream is
    H3_STREAM_CREATION_ERROR (it used to be answered with H3_ID_ERROR)."""
    p = lean_pair()
    sid = p.pair.client.create_stream(False)
    p.pair.client.send_stream_data(sid, b"\x01\x00")  # type PUSH, push ID 0
    assert close_code(p) == H3ErrorCode.H3_STREAM_CREATION_ERROR


def test_server_push_without_max_push_id_is_id_error() -> None:
    """RFC 9114 §4.6: a client that sent no MAX_PUSH_ID treats a push stream as
    H3_ID_ERROR."""
    p = lean_pair()
    quic = p.pair.server
    sid = quic.create_stream(False)
    quic.send_stream_data(sid, b"\x01\x00")
    assert close_code(p, "server") == H3ErrorCode.H3_ID_ERROR


def test_reduced_max_push_id_is_id_error() -> None:
    """RFC 9114 §7.2.7: MAX_PUSH_ID cannot reduce the maximum push ID; repeating or
    raising it is fine."""
    p = lean_pair()
    control = p.client.control.control_id
    assert control is not None
    frames = encode_max_push_id_frame(10) + encode_max_push_id_frame(10)
    p.pair.client.send_stream_data(control, frames + encode_max_push_id_frame(12))
    p.settle(0.5)
    assert p.close_code("client") is None
    p.pair.client.send_stream_data(control, encode_max_push_id_frame(11))
    assert close_code(p) == H3ErrorCode.H3_ID_ERROR


def test_max_push_id_from_a_server_is_frame_unexpected() -> None:
    """RFC 9114 §7.2.7: a server MUST NOT send MAX_PUSH_ID."""
    p = lean_pair()
    control = p.server.control.control_id
    assert control is not None
    p.pair.server.send_stream_data(control, encode_max_push_id_frame(1))
    assert close_code(p, "server") == H3ErrorCode.H3_FRAME_UNEXPECTED


# -- SETTINGS --------------------------------------------------------------------------


def test_too_many_settings_is_excessive_load() -> None:
    """RFC 9114 §10.5: the number of SETTINGS identifiers is bounded
    (``max_peer_settings``); our client sends 4 (QPACK x2, field section, GREASE)."""
    p = lean_pair(server_cfg=H3Configuration(max_peer_settings=3), wait_settings=False)
    assert close_code(p) == H3ErrorCode.H3_EXCESSIVE_LOAD
    p = lean_pair(server_cfg=H3Configuration(max_peer_settings=4))
    assert p.close_code("client") is None


# -- HTTP datagrams (RFC 9297 §2.1) ----------------------------------------------------


def test_datagrams_for_closed_streams_are_dropped_and_nothing_is_held() -> None:
    """A datagram whose stream's receive side is closed is dropped (RFC 9297 §2.1);
    datagrams for streams not opened yet are handed up at once and not held: N and 4N
    of them leave the connection at its idle size."""
    cfg = H3Configuration(enable_datagrams=True)
    p = lean_pair(cfg, H3Configuration(enable_datagrams=True))
    seen: list[tuple[int, bytes]] = []
    requests: list[int] = []

    def handler(side: str, event: H3Event) -> None:
        if side != "server":
            return
        if isinstance(event, DatagramReceived):
            seen.append((event.stream_id, event.data))
        elif isinstance(event, HeadersReceived):
            requests.append(event.stream_id)

    p.handler = handler
    closed = p.client.get_next_available_stream_id()
    p.client.send_headers(closed, REQUEST, end_stream=True)
    open_sid = p.client.get_next_available_stream_id()
    p.client.send_headers(open_sid, REQUEST)
    p.run(lambda: len(requests) == 2)
    p.client.send_datagram(closed, b"late")
    p.client.send_datagram(open_sid, b"on time")
    p.settle(0.5)
    assert seen == [(open_sid, b"on time")]
    rng = random.Random(3)
    for n in (200, 800):
        seen.clear()
        for i in range(n):
            p.client.send_datagram(4 * rng.randrange(1000, 1 << 40), b"%d" % i)
            if i % 50 == 49:
                p.settle(0.02)
        p.settle(0.5)
        assert len(seen) > n // 2  # delivered (some may be dropped by QUIC's queue)
        assert idle_sizes(p.server) == {**IDLE, "streams": 4}  # the open request


# -- QPACK -------------------------------------------------------------------------------


def test_qpack_sections_queued_behind_a_blocked_one_are_bounded() -> None:
    decoder = QpackDecoder(4096, 16, max_queued_sections=3)
    blocked = b"\x02\x00\x80"  # references an entry not inserted yet
    assert decoder.feed_header(0, blocked) is None
    for _ in range(3):
        assert decoder.feed_header(0, blocked) is None
    assert decoder.queued_sections == 3
    with pytest.raises(H3ConnectionError) as info:
        decoder.feed_header(0, blocked)
    assert info.value.error_code == H3ErrorCode.H3_EXCESSIVE_LOAD
    decoder.cancel_stream(0)
    assert decoder.queued_sections == 0 and decoder.blocked_stream_count == 0


# -- no exception escapes handle_event ---------------------------------------------------


def test_internal_error_closes_with_h3_internal_error_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    p = lean_pair()

    def broken(self: H3Connection, *args: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(H3Connection, "_deliver_headers", broken)
    with caplog.at_level(logging.ERROR, logger="h3"):
        for _ in range(2):
            sid = p.client.get_next_available_stream_id()
            p.client.send_headers(sid, REQUEST, end_stream=True)
        assert close_code(p) == H3ErrorCode.H3_INTERNAL_ERROR
    assert isinstance(p.server.last_internal_error, KeyError)
    assert len([r for r in caplog.records if r.name == "h3"]) == 1
    assert p.server.closed


def test_events_after_close_are_ignored() -> None:
    p = lean_pair()
    p.server.close(H3ErrorCode.H3_NO_ERROR)
    before = p.server.state_sizes()
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(sid, REQUEST, end_stream=True)
    p.settle(0.5)
    assert p.server.state_sizes() == before
    assert idle_sizes(p.server) == IDLE
