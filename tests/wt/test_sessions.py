"""WebTransport sessions over in-memory QUIC pairs, for drafts 02, 07, 13 and 16."""

from __future__ import annotations

import random

import pytest

from h3.capsules import encode_close_webtransport_session, grease_capsule
from h3.errors import H3ErrorCode
from h3.streams import StreamType, encode_uni_stream_header
from pywebtransport.protocol import (
    DatagramReceived,
    Draft,
    SessionClosed,
    SessionDraining,
    SessionEstablished,
    SessionRejected,
    SessionRequested,
    SessionState,
    StopSending,
    StreamData,
    StreamOpened,
    StreamReset,
    WebTransportError,
    webtransport_code_to_http_code,
)
from quic import events as qe
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR
from tests.wt.wtpair import WtPair, config, establish, wt_pair

DRAFTS = list(Draft)


def stream_text(p: WtPair, stream_id: int, side: str) -> bytes:
    return b"".join(e.data for e in p.of(StreamData, side) if e.stream_id == stream_id)


def stream_ended(p: WtPair, stream_id: int, side: str) -> bool:
    return any(e.fin for e in p.of(StreamData, side) if e.stream_id == stream_id)


def fin_seen(p: WtPair, stream_id: int, side: str) -> bool:
    return any(
        e.stream_id == stream_id and e.end_stream
        for e in quic_of(p, qe.StreamDataReceived, side)
        if isinstance(e, qe.StreamDataReceived)
    )


def quic_of(p: WtPair, kind: type, side: str) -> list[qe.QuicEvent]:
    return [e for e in p.quic_events[side] if isinstance(e, kind)]


# -- establishment and draft selection ---------------------------------------------------


@pytest.mark.parametrize("draft", DRAFTS)
def test_client_of_one_draft_and_server_of_all(draft: Draft) -> None:
    p = wt_pair(config(draft), config())
    sid = establish(p)
    request = p.of(SessionRequested)[0]
    established = p.of(SessionEstablished, "client")[0]
    assert request.draft is draft and established.draft is draft
    assert (request.authority, request.path) == ("localhost", "/wt")
    headers = dict(request.headers)
    assert headers[b":protocol"] == (
        b"webtransport-h3" if draft is Draft.DRAFT16 else b"webtransport"
    )
    response = dict(established.headers)
    assert response[b":status"] == b"200"
    if draft is Draft.DRAFT02:  # draft-02 §7
        assert headers[b"sec-webtransport-http3-draft02"] == b"1"
        assert response[b"sec-webtransport-http3-draft"] == b"draft02"
    else:
        assert b"sec-webtransport-http3-draft" not in response
    assert p.client.session_state(sid) is SessionState.ESTABLISHED
    assert p.server.session_state(sid) is SessionState.ESTABLISHED


@pytest.mark.parametrize("draft", DRAFTS)
def test_server_of_one_draft_and_client_of_all(draft: Draft) -> None:
    p = wt_pair(config(), config(draft))
    assert p.client.draft is draft
    sid = establish(p)
    assert p.server.session_draft(sid) is draft


def test_newest_common_draft_is_chosen() -> None:
    p = wt_pair(config(Draft.DRAFT02, Draft.DRAFT07), config(Draft.DRAFT07, Draft.DRAFT16))
    assert p.client.draft is Draft.DRAFT07
    p = wt_pair(config(), config())
    assert p.client.draft is Draft.DRAFT16


def test_connect_before_settings_waits_for_them() -> None:
    p = wt_pair(wait_settings=False)
    p.run(lambda: p.pair.client.handshake_complete)
    assert p.client.peer_settings is None
    sid = p.client.connect("localhost", "/early")
    assert p.client.session_state(sid) is SessionState.PENDING
    p.run(lambda: bool(p.of(SessionRequested)))
    assert p.of(SessionRequested)[0].path == "/early"


def test_no_common_draft_rejects_locally() -> None:
    p = wt_pair(config(Draft.DRAFT02), config(Draft.DRAFT16))
    assert p.client.draft is None
    sid = p.client.connect("localhost", "/wt")
    p.pump()
    rejected = p.of(SessionRejected, "client")
    assert rejected and rejected[0].session_id == sid and rejected[0].status == 0
    assert "WebTransport" in rejected[0].reason


def test_requirements_not_met_closes_the_connection() -> None:
    p = wt_pair(config(Draft.DRAFT02, close_on_requirements_not_met=True), config(Draft.DRAFT16))
    p.run(lambda: bool(quic_of(p, qe.ConnectionTerminated, "server")))
    closed = quic_of(p, qe.ConnectionTerminated, "server")[0]
    assert isinstance(closed, qe.ConnectionTerminated)
    assert closed.error_code == H3ErrorCode.WT_REQUIREMENTS_NOT_MET


@pytest.mark.parametrize("draft", DRAFTS)
def test_reject(draft: Draft) -> None:
    p = wt_pair(config(draft), config())
    sid = p.client.connect("localhost", "/nope")
    p.run(lambda: bool(p.of(SessionRequested)))
    p.server.reject(sid, 404, [(b"x-why", b"no such path")])
    p.run(lambda: bool(p.of(SessionRejected, "client")))
    rejected = p.of(SessionRejected, "client")[0]
    assert rejected.status == 404 and (b"x-why", b"no such path") in rejected.headers
    assert p.client.session_state(sid) is SessionState.CLOSED
    with pytest.raises(WebTransportError):
        p.client.open_stream(sid)
    with pytest.raises(WebTransportError):
        p.server.accept(sid)
    with pytest.raises(ValueError):
        p.server.reject(sid, 200)


def test_plain_http_request_gets_404() -> None:
    p = wt_pair()
    h3 = p.client.h3
    sid = h3.get_next_available_stream_id()
    h3.send_headers(
        sid,
        [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", b"/")],
        end_stream=True,
    )
    p.run(lambda: fin_seen(p, sid, "client"))
    assert not p.of(SessionRequested)


# -- streams and datagrams -----------------------------------------------------------------


@pytest.mark.parametrize("draft", DRAFTS)
def test_streams_both_directions(draft: Draft) -> None:
    p = wt_pair(config(draft), config())
    sid = establish(p)
    c_bidi = p.client.open_stream(sid, True)
    c_uni = p.client.open_stream(sid, False)
    p.client.send_stream_data(c_bidi, b"ping", end_stream=True)
    p.client.send_stream_data(c_uni, b"x" * 5000, end_stream=True)
    p.run(lambda: stream_ended(p, c_bidi, "server") and stream_ended(p, c_uni, "server"))
    opened = {(e.stream_id, e.bidirectional) for e in p.of(StreamOpened)}
    assert opened == {(c_bidi, True), (c_uni, False)}
    assert stream_text(p, c_bidi, "server") == b"ping"
    assert stream_text(p, c_uni, "server") == b"x" * 5000
    # the server answers on the client's bidi stream and opens its own streams
    p.server.send_stream_data(c_bidi, b"pong", end_stream=True)
    s_bidi = p.server.open_stream(sid, True)
    s_uni = p.server.open_stream(sid, False)
    p.server.send_stream_data(s_bidi, b"from server")
    p.server.send_stream_data(s_uni, b"uni from server", end_stream=True)
    p.run(lambda: stream_ended(p, c_bidi, "client") and stream_ended(p, s_uni, "client"))
    p.run(lambda: stream_text(p, s_bidi, "client") == b"from server")
    assert stream_text(p, c_bidi, "client") == b"pong"
    assert stream_text(p, s_uni, "client") == b"uni from server"
    client_opened = {(e.stream_id, e.bidirectional) for e in p.of(StreamOpened, "client")}
    assert client_opened == {(s_bidi, True), (s_uni, False)}
    assert all(e.session_id == sid for e in p.of(StreamData, "client"))
    # the client replies on the server's bidi stream
    p.client.send_stream_data(s_bidi, b"reply", end_stream=True)
    p.run(lambda: stream_ended(p, s_bidi, "server"))
    assert stream_text(p, s_bidi, "server") == b"reply"


@pytest.mark.parametrize("draft", DRAFTS)
def test_datagrams_both_directions(draft: Draft) -> None:
    p = wt_pair(config(draft), config())
    sid = establish(p)
    for i in range(5):
        p.client.send_datagram(sid, b"c%d" % i)
        p.server.send_datagram(sid, b"s%d" % i)
    p.run(lambda: len(p.of(DatagramReceived)) == 5 and len(p.of(DatagramReceived, "client")) == 5)
    assert {e.data for e in p.of(DatagramReceived)} == {b"c%d" % i for i in range(5)}
    assert {e.data for e in p.of(DatagramReceived, "client")} == {b"s%d" % i for i in range(5)}
    assert all(e.session_id == sid for e in p.of(DatagramReceived))


def test_datagram_too_large_raises() -> None:
    p = wt_pair()
    sid = establish(p)
    with pytest.raises(ValueError):
        p.client.send_datagram(sid, bytes(5000))


# -- closing -----------------------------------------------------------------------------


@pytest.mark.parametrize("draft", DRAFTS)
@pytest.mark.parametrize("closer", ["client", "server"])
def test_close_with_code_and_reason(draft: Draft, closer: str) -> None:
    p = wt_pair(config(draft), config())
    sid = establish(p)
    stream = p.client.open_stream(sid, True)
    p.client.send_stream_data(stream, b"open")
    p.run(lambda: bool(p.of(StreamOpened)))
    other = "server" if closer == "client" else "client"
    conn = p.client if closer == "client" else p.server
    conn.close_session(sid, 0xDEADBEEF, "done here ✓")
    p.run(lambda: bool(p.of(SessionClosed, other)))
    mine, theirs = p.of(SessionClosed, closer)[0], p.of(SessionClosed, other)[0]
    assert (mine.code, mine.reason, mine.by_peer) == (0xDEADBEEF, "done here ✓", False)
    assert (theirs.code, theirs.reason, theirs.by_peer) == (0xDEADBEEF, "done here ✓", True)
    assert theirs.http_code is None
    # both FINs went out; the stream was torn down with WT_SESSION_GONE (draft-16 §6)
    p.run(lambda: fin_seen(p, sid, "client") and fin_seen(p, sid, "server"))
    p.settle()
    resets = [e for e in quic_of(p, qe.StreamReset, "client") if e.stream_id == stream]
    assert resets and resets[0].error_code == H3ErrorCode.WT_SESSION_GONE  # type: ignore[attr-defined]
    assert p.client.session_state(sid) is SessionState.CLOSED
    with pytest.raises(WebTransportError):
        p.client.send_datagram(sid, b"late")


def test_fin_without_capsule_is_code_zero() -> None:
    p = wt_pair()
    sid = establish(p)
    p.client.quic.send_stream_data(sid, b"", True)
    p.run(lambda: bool(p.of(SessionClosed)))
    closed = p.of(SessionClosed)[0]
    assert (closed.code, closed.reason, closed.by_peer) == (0, "", True)
    p.run(lambda: bool(p.of(SessionClosed, "client")))  # the server's FIN answers


def test_data_after_close_capsule_is_message_error() -> None:
    p = wt_pair()
    sid = establish(p)
    p.client.h3.send_data(sid, encode_close_webtransport_session(3, "x") + grease_capsule())
    p.run(lambda: bool(p.of(SessionClosed)))
    assert p.of(SessionClosed)[0].code == 3
    p.run(lambda: any(e.stream_id == sid for e in quic_of(p, qe.StreamReset, "client")))
    reset = next(e for e in quic_of(p, qe.StreamReset, "client") if e.stream_id == sid)
    assert reset.error_code == H3ErrorCode.H3_MESSAGE_ERROR  # type: ignore[attr-defined]


def test_connect_stream_reset_closes_abruptly() -> None:
    p = wt_pair()
    sid = establish(p)
    p.client.quic.reset_stream(sid, H3ErrorCode.H3_REQUEST_CANCELLED)
    p.run(lambda: bool(p.of(SessionClosed)))
    assert p.of(SessionClosed)[0].http_code == H3ErrorCode.H3_REQUEST_CANCELLED


def test_connection_close_ends_every_session() -> None:
    p = wt_pair()
    sid = establish(p)
    p.server.h3.close(H3ErrorCode.H3_NO_ERROR, "bye")
    p.run(lambda: bool(p.of(SessionClosed, "client")))
    closed = p.of(SessionClosed, "client")[0]
    assert closed.session_id == sid and closed.http_code == H3ErrorCode.H3_NO_ERROR


@pytest.mark.parametrize("draft", [Draft.DRAFT07, Draft.DRAFT16])
def test_drain(draft: Draft) -> None:
    p = wt_pair(config(draft), config())
    sid = establish(p)
    assert p.server.drain_session(sid)
    p.run(lambda: bool(p.of(SessionDraining, "client")))
    assert p.of(SessionDraining, "client")[0].session_id == sid
    p.client.open_stream(sid, False)  # still usable (draft-16 §4.6)


def test_drain_is_not_sent_in_draft02() -> None:
    p = wt_pair(config(Draft.DRAFT02), config())
    sid = establish(p)
    assert not p.server.drain_session(sid)


def test_goaway_drains_sessions() -> None:
    p = wt_pair()
    sid = establish(p)
    p.server.h3.send_goaway()
    p.run(lambda: bool(p.of(SessionDraining, "client")))
    assert p.of(SessionDraining, "client")[0].session_id == sid


def test_grease_and_unknown_capsules_are_skipped() -> None:
    p = wt_pair()
    sid = establish(p)
    rng = random.Random(7)
    p.client.h3.send_data(sid, b"".join(grease_capsule(rng) for _ in range(5)))
    p.client.close_session(sid, 9, "after grease")
    p.run(lambda: bool(p.of(SessionClosed)))
    assert p.of(SessionClosed)[0].code == 9


# -- resets and error codes ----------------------------------------------------------------


@pytest.mark.parametrize("draft", DRAFTS)
def test_reset_and_stop_sending_carry_application_codes(draft: Draft) -> None:
    p = wt_pair(config(draft), config())
    sid = establish(p)
    stream = p.client.open_stream(sid, True)
    other = p.client.open_stream(sid, True)
    p.client.send_stream_data(stream, b"data")
    p.client.send_stream_data(other, b"data")
    p.run(lambda: len(p.of(StreamOpened)) == 2)
    p.client.reset_stream(stream, 0xAB)
    p.server.stop_sending(other, 0xFFFFFFFF)
    p.run(lambda: bool(p.of(StreamReset)) and bool(p.of(StopSending, "client")))
    reset = p.of(StreamReset)[0]
    assert (reset.session_id, reset.stream_id, reset.code) == (sid, stream, 0xAB)
    assert reset.http_code == webtransport_code_to_http_code(0xAB)
    stop = p.of(StopSending, "client")[0]
    assert (stop.session_id, stop.stream_id, stop.code) == (sid, other, 0xFFFFFFFF)
    # QUIC answered the STOP_SENDING with a reset carrying the same code
    p.run(lambda: any(e.stream_id == other for e in quic_of(p, qe.StreamReset, "server")))
    reset_other = next(e for e in quic_of(p, qe.StreamReset, "server") if e.stream_id == other)
    assert reset_other.error_code == webtransport_code_to_http_code(0xFFFFFFFF)  # type: ignore[attr-defined]
    # draft-16 §4.4: even that reset keeps the stream header reliable (RESET_STREAM_AT)
    assert p.client.quic.peer_accepts_reset_stream_at
    header = 2 + (1 if sid < 64 else 2 if sid < 16384 else 4)  # 0x41 signal, session ID
    assert reset_other.reliable_size == header  # type: ignore[attr-defined]


@pytest.mark.parametrize("draft", DRAFTS)
def test_stop_sending_answered_with_the_code_the_application_chose(draft: Draft) -> None:
    """RFC 9000 §3.5: the reset answering STOP_SENDING may carry any code; the
    application chose one beforehand (set_stop_sending_answer), as devious-baton's
    WHATEVER requires."""
    p = wt_pair(config(draft), config())
    sid = establish(p)
    stream = p.client.open_stream(sid, True)
    p.client.send_stream_data(stream, b"data")
    p.client.set_stop_sending_answer(stream, 0x02)
    p.run(lambda: bool(p.of(StreamOpened)))
    p.server.stop_sending(stream, 0x01)
    p.run(lambda: any(e.stream_id == stream for e in quic_of(p, qe.StreamReset, "server")))
    reset = next(e for e in quic_of(p, qe.StreamReset, "server") if e.stream_id == stream)
    assert reset.error_code == webtransport_code_to_http_code(0x02)  # type: ignore[attr-defined]


def test_reset_outside_the_application_range_has_no_code() -> None:
    p = wt_pair()
    sid = establish(p)
    stream = p.client.open_stream(sid, False)
    p.client.send_stream_data(stream, b"data")
    p.run(lambda: bool(p.of(StreamOpened)))
    p.client.quic.reset_stream(stream, H3ErrorCode.H3_INTERNAL_ERROR)
    p.run(lambda: bool(p.of(StreamReset)))
    reset = p.of(StreamReset)[0]
    assert reset.code is None and reset.http_code == H3ErrorCode.H3_INTERNAL_ERROR


# -- buffering of early streams and datagrams (draft-16 §4.7) ------------------------------


@pytest.mark.parametrize("draft", DRAFTS)
def test_early_streams_and_datagrams_wait_for_accept(draft: Draft) -> None:
    p = wt_pair(config(draft), config())
    sid = p.client.connect("localhost", "/wt")
    stream = p.client.open_stream(sid, False)  # optimistic (draft-16 §4)
    p.client.send_stream_data(stream, b"early bytes", end_stream=True)
    p.client.send_datagram(sid, b"early datagram")
    p.run(lambda: bool(p.of(SessionRequested)))
    p.settle(0.2)
    assert not p.of(StreamOpened) and not p.of(StreamData)
    p.server.accept(sid)
    p.pump()
    assert p.of(StreamOpened)[0].stream_id == stream
    assert stream_text(p, stream, "server") == b"early bytes" and stream_ended(p, stream, "server")
    assert [e.data for e in p.of(DatagramReceived)] == [b"early datagram"]


def test_early_stream_refused_when_session_rejected() -> None:
    p = wt_pair()
    sid = p.client.connect("localhost", "/wt")
    stream = p.client.open_stream(sid, True)
    p.client.send_stream_data(stream, b"early")
    p.run(lambda: bool(p.of(SessionRequested)))
    p.settle(0.2)
    p.server.reject(sid, 403)
    p.run(lambda: any(e.stream_id == stream for e in quic_of(p, qe.StopSendingReceived, "client")))
    stop = next(e for e in quic_of(p, qe.StopSendingReceived, "client") if e.stream_id == stream)
    assert stop.error_code == H3ErrorCode.WT_BUFFERED_STREAM_REJECTED  # type: ignore[attr-defined]


def test_buffered_stream_limit() -> None:
    p = wt_pair(config(), config(max_buffered_streams=1))
    sid = p.client.connect("localhost", "/wt")
    first = p.client.open_stream(sid, False)
    second = p.client.open_stream(sid, False)
    p.client.send_stream_data(first, b"1")
    p.client.send_stream_data(second, b"2")
    p.run(lambda: any(e.stream_id == second for e in quic_of(p, qe.StopSendingReceived, "client")))
    stop = next(e for e in quic_of(p, qe.StopSendingReceived, "client") if e.stream_id == second)
    assert stop.error_code == H3ErrorCode.WT_BUFFERED_STREAM_REJECTED  # type: ignore[attr-defined]
    p.run(lambda: bool(p.of(SessionRequested)))
    p.server.accept(sid)
    p.pump()
    assert [e.stream_id for e in p.of(StreamOpened)] == [first]


def test_buffered_stream_byte_limit() -> None:
    p = wt_pair(config(), config(max_buffered_stream_bytes=100))
    sid = p.client.connect("localhost", "/wt")
    stream = p.client.open_stream(sid, False)
    p.client.send_stream_data(stream, bytes(500))
    p.run(lambda: any(e.stream_id == stream for e in quic_of(p, qe.StopSendingReceived, "client")))


def test_stream_for_closed_session_is_refused_with_session_gone() -> None:
    p = wt_pair()
    sid = establish(p)
    p.client.close_session(sid)
    p.run(lambda: bool(p.of(SessionClosed)))
    raw = p.client.quic.create_stream(False)
    p.client.quic.send_stream_data(raw, encode_uni_stream_header(StreamType.WEBTRANSPORT_UNI, sid))
    p.client.quic.send_stream_data(raw, b"late")
    p.run(lambda: any(e.stream_id == raw for e in quic_of(p, qe.StopSendingReceived, "client")))
    stop = next(e for e in quic_of(p, qe.StopSendingReceived, "client") if e.stream_id == raw)
    assert stop.error_code == H3ErrorCode.WT_SESSION_GONE  # type: ignore[attr-defined]


def test_invalid_session_id_is_h3_id_error() -> None:
    p = wt_pair()
    establish(p)
    raw = p.client.quic.create_stream(False)
    p.client.quic.send_stream_data(
        raw, encode_uni_stream_header(StreamType.WEBTRANSPORT_UNI, 2) + b"data"
    )
    p.run(lambda: bool(quic_of(p, qe.ConnectionTerminated, "client")))
    closed = quic_of(p, qe.ConnectionTerminated, "client")[0]
    assert closed.error_code == H3ErrorCode.H3_ID_ERROR  # type: ignore[attr-defined]


# -- session limits ----------------------------------------------------------------------


def test_draft16_without_flow_control_allows_one_session() -> None:
    no_fc = {"initial_max_data": 0, "initial_max_streams_bidi": 0, "initial_max_streams_uni": 0}
    p = wt_pair(config(Draft.DRAFT16), config(Draft.DRAFT16, **no_fc))
    assert not p.client.flow_control
    establish(p)
    second = p.client.connect("localhost", "/two")
    p.pump()
    assert p.of(SessionRejected, "client")[0].session_id == second  # refused locally
    # a client that ignores the rule is refused with H3_REQUEST_REJECTED (draft-16 §5.1)
    p2 = wt_pair(config(Draft.DRAFT16, max_sessions=5), config(Draft.DRAFT16, **no_fc))
    p2.client._session_limit = lambda draft: 5  # type: ignore[method-assign]  # misbehave
    establish(p2)
    p2.client.connect("localhost", "/two")
    p2.run(lambda: bool(p2.of(SessionRejected, "client")))
    assert "0x10b" in p2.of(SessionRejected, "client")[0].reason


@pytest.mark.parametrize("draft", DRAFTS)
def test_server_session_limit(draft: Draft) -> None:
    p = wt_pair(config(draft, max_sessions=5), config(max_sessions=2))
    establish(p, "/1")
    establish(p, "/2")
    third = p.client.connect("localhost", "/3")
    p.run(lambda: bool(p.of(SessionRejected, "client")))
    rejected = p.of(SessionRejected, "client")[0]
    assert rejected.session_id == third and rejected.status == 0
    if draft not in (Draft.DRAFT07, Draft.DRAFT13):
        assert "0x10b" in rejected.reason  # H3_REQUEST_REJECTED by the server
    else:
        assert "limit" in rejected.reason  # the server's SETTINGS said 2


# -- protocol negotiation and exporters ------------------------------------------------------


def test_protocol_negotiation() -> None:
    p = wt_pair()
    sid = establish(p, protocols=("moq-01", "chat"), accept_protocol="chat")
    assert p.of(SessionRequested)[0].protocols == ("moq-01", "chat")
    assert p.of(SessionEstablished, "client")[0].protocol == "chat"
    assert dict(p.of(SessionRequested)[0].headers)[b"wt-available-protocols"] == b'"moq-01", "chat"'
    with pytest.raises(WebTransportError):
        sid2 = p.client.connect("localhost", "/x", protocols=("a",))
        p.run(lambda: any(e.session_id == sid2 for e in p.of(SessionRequested)))
        p.server.accept(sid2, protocol="b")
    assert p.client.session_state(sid) is SessionState.ESTABLISHED


def test_protocol_not_offered_is_alpn_error() -> None:
    p = wt_pair()
    sid = p.client.connect("localhost", "/x", protocols=("a", "b"))
    p.run(lambda: bool(p.of(SessionRequested)))
    p.server.accept(sid, headers=[(b"wt-protocol", b'"zzz"')])
    p.run(lambda: bool(p.of(SessionClosed, "client")))
    assert p.of(SessionClosed, "client")[0].http_code == H3ErrorCode.WT_ALPN_ERROR
    p.run(lambda: bool(p.of(SessionClosed)))
    assert p.of(SessionClosed)[0].http_code == H3ErrorCode.WT_ALPN_ERROR


def test_keying_material_export() -> None:
    p = wt_pair(config(Draft.DRAFT16, max_sessions=4), config())
    one = establish(p, "/1")
    two = establish(p, "/2")
    a = p.client.export_keying_material(one, b"label", b"ctx", 32)
    assert a == p.server.export_keying_material(one, b"label", b"ctx", 32)
    assert len(a) == 32
    assert a != p.client.export_keying_material(two, b"label", b"ctx", 32)
    assert a != p.client.export_keying_material(one, b"label", b"", 32)
    assert a != p.client.export_keying_material(one, b"other", b"ctx", 32)
    expected = p.client.quic.export_keying_material(
        b"EXPORTER-WebTransport", one.to_bytes(8, "big") + b"\x05label\x03ctx", 32
    )
    assert a == expected  # draft-16 §4.8
    with pytest.raises(ValueError):
        p.client.export_keying_material(one, b"", b"", 32)


def _reset_while_the_header_is_lost(server_accepts: bool) -> tuple[WtPair, int, int]:
    """The client opens a stream, writes its header and some data, and resets it while
    every datagram to the server is lost; then the path recovers."""
    p = wt_pair(server_quic={"reset_stream_at": server_accepts})
    sid = establish(p)
    assert p.client.quic.peer_accepts_reset_stream_at is server_accepts
    link = p.pair.net.link(CLIENT_ADDR, SERVER_ADDR)
    link.loss = 1.0
    stream = p.client.open_stream(sid, False)
    p.client.send_stream_data(stream, b"lost with the header")
    p.settle(0.05)
    p.client.reset_stream(stream, 0x2A)
    p.settle(0.05)
    link.loss = 0.0
    p.settle(3.0)
    return p, sid, stream


def test_reset_keeps_the_stream_header_reliable() -> None:
    """draft-16 §4.4: a data stream is reset with RESET_STREAM_AT whose Reliable Size
    covers the header, so the server learns which session the reset stream belonged to
    even though the header never arrived before the reset (it is retransmitted)."""
    p, sid, stream = _reset_while_the_header_is_lost(True)
    (quic_reset,) = [e for e in quic_of(p, qe.StreamReset, "server") if e.stream_id == stream]
    assert quic_reset.reliable_size > 0  # type: ignore[attr-defined]
    resets = [e for e in p.of(StreamReset) if e.stream_id == stream]
    assert [(r.session_id, r.code) for r in resets] == [(sid, 0x2A)]


def test_reset_without_reset_stream_at_may_lose_the_header() -> None:
    """A peer that did not send reset_stream_at gets a plain RESET_STREAM: the header
    was never delivered, so the reset cannot be tied to its session (the reason the
    draft requires RESET_STREAM_AT)."""
    p, _, stream = _reset_while_the_header_is_lost(False)
    (quic_reset,) = [e for e in quic_of(p, qe.StreamReset, "server") if e.stream_id == stream]
    assert quic_reset.reliable_size == 0  # type: ignore[attr-defined]
    assert not [e for e in p.of(StreamReset) if e.stream_id == stream]


@pytest.mark.parametrize("draft", DRAFTS)
def test_protocol_negotiation_in_every_draft(draft: Draft) -> None:
    """WT-Available-Protocols / WT-Protocol work whatever the draft (drafts.py)."""
    p = wt_pair(config(draft), config())
    sid = establish(p, protocols=("moq-01", "chat"), accept_protocol="chat")
    assert p.of(SessionEstablished, "client")[0].draft is draft
    assert p.of(SessionRequested)[0].protocols == ("moq-01", "chat")
    assert p.of(SessionEstablished, "client")[0].protocol == "chat"
    assert p.client.session_state(sid) is SessionState.ESTABLISHED


def test_send_stream_data_refuses_what_usable_refuses() -> None:
    """``send_stream_data`` checks the session inline (per write): in every session
    state it refuses exactly when ``_usable`` does, and sends otherwise."""
    from pywebtransport.protocol.session import SessionState

    p = wt_pair()
    sid = establish(p)
    session = p.client._sessions[sid]
    outcomes = set()
    for state in SessionState:
        stream = p.client.open_stream(sid)
        session.state = state
        try:
            p.client._usable(sid)
        except WebTransportError:
            usable = False
        else:
            usable = True
        if usable:
            assert p.client.send_stream_data(stream, b"x") == 1
        else:
            with pytest.raises(WebTransportError, match="is not open"):
                p.client.send_stream_data(stream, b"x")
        outcomes.add(usable)
        session.state = SessionState.ESTABLISHED
    assert outcomes == {True, False}
