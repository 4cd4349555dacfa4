"""The draft-15/16 rules of issue 11, one test each (draft-ietf-webtrans-http3-16),
plus the draft-13 variants of the rules it shares (flow control, session count):

* SETTINGS_WT_ENABLED above 1 is H3_SETTINGS_ERROR (§3.1);
* the ``webtransport-h3`` token, and the legacy ``webtransport`` a server also takes
  from a client whose SETTINGS select draft-16;
* the required peer parameters (§3.1): reset_stream_at, max_datagram_frame_size > 0,
  H3_DATAGRAM = 1, ENABLE_CONNECT_PROTOCOL = 1 (server); a server treats a session
  without them as malformed (H3_MESSAGE_ERROR), a client does not establish one (and
  may close with WT_REQUIREMENTS_NOT_MET); our endpoint always sends them;
* WT_MAX_DATA / WT_MAX_STREAMS that do not increase the limit, WT_MAX_STREAM_DATA and
  WT_STREAM_DATA_BLOCKED: WT_FLOW_CONTROL_ERROR (§5.6.2, §5.6.4, §5.4);
* one session at a time without flow control (§5.1);
* WT_ALPN_ERROR (§3.3);
* our resets of data streams are RESET_STREAM_AT covering the stream header, in every
  draft, whenever the peer sent reset_stream_at (§4.4).
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from h3.capsules import CapsuleType, encode_capsule, encode_varint_capsule
from h3.errors import H3ErrorCode
from pywebtransport.config import ClientConfig, ConfigurationError, ServerConfig
from pywebtransport.protocol import (
    Draft,
    FlowControlBlocked,
    SessionClosed,
    SessionRejected,
    SessionRequested,
    SessionState,
    StreamReset,
    WebTransportConfiguration,
    WebTransportConnection,
    WebTransportEvent,
)
from quic import events as qe
from quic.buffer import varint_size
from tests.wt.draftpeers import (
    CONNECT_PROTOCOL,
    H3_DATAGRAM,
    client_fed,
    peer_settings,
    server_fed,
)
from tests.wt.fakequic import feed
from tests.wt.hostile import capsule, connect_request, headers_frame
from tests.wt.wtpair import WtPair, config, establish, wt_pair

WT_ENABLED = 0x2C7CF000
NO_FC = {"initial_max_data": 0, "initial_max_streams_bidi": 0, "initial_max_streams_uni": 0}
FLOW_DRAFTS = [Draft.DRAFT13, Draft.DRAFT16]


def _connect(wt: WebTransportConnection, stream_id: int, token: bytes) -> list[WebTransportEvent]:
    frame = headers_frame(stream_id, connect_request("/wt", token))
    return feed(wt, qe.StreamDataReceived(stream_id, frame, False))


def _requested(events: list[WebTransportEvent]) -> list[SessionRequested]:
    return [e for e in events if isinstance(e, SessionRequested)]


def _quic_events(p: WtPair, kind: type, side: str) -> list[qe.QuicEvent]:
    return [e for e in p.quic_events[side] if isinstance(e, kind)]


# -- SETTINGS_WT_ENABLED: 0 or 1 (§3.1) ------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 2, 7, 2**62 - 1])
@pytest.mark.parametrize("role", ["client", "server"])
def test_wt_enabled_must_be_0_or_1(role: str, value: int) -> None:
    fed = client_fed if role == "client" else server_fed
    wt, quic = fed({**peer_settings([], server=role == "client"), WT_ENABLED: value})
    if value > 1:  # "Clients MUST treat values greater than 1 as ... H3_SETTINGS_ERROR"
        assert quic.closed == H3ErrorCode.H3_SETTINGS_ERROR
        assert wt.peer_settings is None
    else:
        assert quic.closed is None
        if role == "client":
            assert wt.draft is (Draft.DRAFT16 if value else None)


# -- upgrade tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_drafts", "token", "chosen"),
    [
        ([Draft.DRAFT16], b"webtransport-h3", Draft.DRAFT16),
        ([Draft.DRAFT16], b"webtransport", Draft.DRAFT16),  # legacy token, draft-16 peer
        ([Draft.DRAFT16, Draft.DRAFT02], b"webtransport", Draft.DRAFT16),
        ([Draft.DRAFT13, Draft.DRAFT07], b"webtransport", Draft.DRAFT13),
        ([Draft.DRAFT07, Draft.DRAFT02], b"webtransport", Draft.DRAFT07),
        ([Draft.DRAFT13], b"webtransport-h3", None),  # only draft-16 has that token
        ([Draft.DRAFT02], b"webtransport-h3", None),
        ([Draft.DRAFT16], b"webtransport-h4", None),  # not ours: a plain request
    ],
)
def test_upgrade_tokens(client_drafts: list[Draft], token: bytes, chosen: Draft | None) -> None:
    wt, quic = server_fed(peer_settings(client_drafts, server=False))
    requested = _requested(_connect(wt, 0, token))
    if chosen is not None:
        assert [r.draft for r in requested] == [chosen]
        wt.accept(0)
        assert wt.session_state(0) is SessionState.ESTABLISHED
    else:
        assert not requested and wt.table_sizes()["sessions"] == 0
        if token.startswith(b"webtransport-h3"):  # ours, but no common draft: malformed
            assert quic.resets[0] == H3ErrorCode.H3_MESSAGE_ERROR
        else:  # not a WebTransport request at all: answered with the plain status
            assert 0 not in quic.resets and 0 in quic.fins


def test_our_client_sends_webtransport_h3_for_draft16_only() -> None:
    for draft in Draft:
        p = wt_pair(config(draft), config())
        establish(p)
        token = dict(p.of(SessionRequested)[0].headers)[b":protocol"]
        assert token == (b"webtransport-h3" if draft is Draft.DRAFT16 else b"webtransport")


# -- required peer parameters (§3.1) --------------------------------------------------------


@pytest.mark.parametrize(
    "missing", ["reset_stream_at", "datagram_frames", "h3_datagram", "wt_enabled"]
)
def test_server_treats_session_of_incomplete_client_as_malformed(missing: str) -> None:
    settings = peer_settings([Draft.DRAFT16], server=False)
    if missing == "h3_datagram":
        del settings[H3_DATAGRAM]
    elif missing == "wt_enabled":
        del settings[WT_ENABLED]
    strict = WebTransportConfiguration(require_reset_stream_at=True)
    wt, quic = server_fed(settings, strict, reset_stream_at=missing != "reset_stream_at")
    if missing == "datagram_frames":
        quic.max_datagram_payload = 0
    assert not _requested(_connect(wt, 0, b"webtransport-h3"))
    # "the server MUST treat all ... newly incoming WebTransport sessions as malformed"
    assert quic.resets[0] == quic.stops[0] == H3ErrorCode.H3_MESSAGE_ERROR
    assert wt.table_sizes()["sessions"] == 0


def test_strict_server_requires_reset_stream_at_in_memory() -> None:
    """require_reset_stream_at=True: our client without reset_stream_at, offering
    draft-16 only, has its CONNECT refused as malformed; offering draft-13 as well, it
    still asks for draft-16 (the server did send the parameter) and is refused; a
    draft-07 client is served (draft-13 needs the parameter too)."""
    strict = config(require_reset_stream_at=True)
    no_rsa = {"reset_stream_at": False}
    p = wt_pair(config(Draft.DRAFT16), strict, client_quic=no_rsa)
    assert not p.server.quic.peer_accepts_reset_stream_at
    p.client.connect("localhost", "/wt")
    p.run(lambda: bool(p.of(SessionRejected, "client")))
    assert "0x10e" in p.of(SessionRejected, "client")[0].reason  # H3_MESSAGE_ERROR
    assert not p.of(SessionRequested)
    p = wt_pair(config(), strict, client_quic=no_rsa)
    assert p.client.draft is Draft.DRAFT16  # the server did send reset_stream_at
    p.client.connect("localhost", "/wt")
    p.run(lambda: bool(p.of(SessionRejected, "client")))
    p = wt_pair(config(Draft.DRAFT13, Draft.DRAFT07), strict, client_quic=no_rsa)
    assert p.client.draft is Draft.DRAFT13
    p.client.connect("localhost", "/wt")
    p.run(lambda: bool(p.of(SessionRejected, "client")))
    p = wt_pair(config(Draft.DRAFT07), strict, client_quic=no_rsa)
    establish(p)
    assert p.of(SessionRequested)[0].draft is Draft.DRAFT07


@pytest.mark.parametrize("client_side", [False, True], ids=["server-lacks", "client-lacks"])
def test_draft16_peer_without_reset_stream_at_is_served_by_default(client_side: bool) -> None:
    """pywebtransport 0.21.1 (quinn) speaks draft-16 without the reset_stream_at
    transport parameter: by default we still serve it (require_reset_stream_at=False)
    and reset our streams towards it with plain RESET_STREAM."""
    lacking = {"reset_stream_at": False}
    p = wt_pair(
        config(Draft.DRAFT16),
        config(Draft.DRAFT16),
        client_quic=lacking if client_side else None,
        server_quic=None if client_side else lacking,
    )
    sid = establish(p)
    assert p.of(SessionRequested)[0].draft is Draft.DRAFT16
    ours, peer = (p.server, "client") if client_side else (p.client, "server")
    stream = ours.open_stream(sid, False)
    ours.send_stream_data(stream, b"x")
    p.settle(0.05)
    ours.reset_stream(stream, 3)
    p.run(lambda: any(e.stream_id == stream for e in _quic_events(p, qe.StreamReset, peer)))
    (reset,) = [e for e in _quic_events(p, qe.StreamReset, peer) if e.stream_id == stream]  # type: ignore[attr-defined]
    assert reset.reliable_size == 0  # type: ignore[attr-defined]  # RESET_STREAM


@pytest.mark.parametrize(
    "missing", ["reset_stream_at", "datagram_frames", "h3_datagram", "connect", "wt_enabled"]
)
def test_client_does_not_establish_with_incomplete_server(missing: str) -> None:
    settings = peer_settings([Draft.DRAFT16], server=True)
    for setting, name in ((H3_DATAGRAM, "h3_datagram"), (CONNECT_PROTOCOL, "connect")):
        if missing == name:
            del settings[setting]
    if missing == "wt_enabled":
        settings[WT_ENABLED] = 0
    closing = WebTransportConfiguration(
        drafts=(Draft.DRAFT16,), close_on_requirements_not_met=True, require_reset_stream_at=True
    )
    plain = WebTransportConfiguration(drafts=(Draft.DRAFT16,), require_reset_stream_at=True)
    if missing == "datagram_frames":  # the server's max_datagram_frame_size was 0
        p = wt_pair(closing, config(), server_quic={"max_datagram_frame_size": None})
        p.run(lambda: bool(_quic_events(p, qe.ConnectionTerminated, "server")))
        (closed,) = _quic_events(p, qe.ConnectionTerminated, "server")
        assert closed.error_code == H3ErrorCode.WT_REQUIREMENTS_NOT_MET  # type: ignore[attr-defined]
        return
    wt, quic = client_fed(settings, plain, reset_stream_at=missing != "reset_stream_at")
    assert wt.draft is None and quic.closed is None
    wt.connect("localhost", "/wt")
    rejected = [e for e in iter(wt.next_event, None) if isinstance(e, SessionRejected)]
    assert len(rejected) == 1 and rejected[0].status == 0
    assert not any(stream_id % 4 == 0 for stream_id in quic.written)  # no CONNECT sent
    # "the client MAY close the HTTP/3 connection with a WT_REQUIREMENTS_NOT_MET"
    _, quic = client_fed(settings, closing, reset_stream_at=missing != "reset_stream_at")
    assert quic.closed == H3ErrorCode.WT_REQUIREMENTS_NOT_MET


def test_server_without_reset_stream_at_closes_a_strict_draft16_client_in_memory() -> None:
    closing = config(
        Draft.DRAFT16, close_on_requirements_not_met=True, require_reset_stream_at=True
    )
    p = wt_pair(closing, config(), server_quic={"reset_stream_at": False})
    p.run(lambda: bool(_quic_events(p, qe.ConnectionTerminated, "server")))
    (closed,) = _quic_events(p, qe.ConnectionTerminated, "server")
    assert closed.error_code == H3ErrorCode.WT_REQUIREMENTS_NOT_MET  # type: ignore[attr-defined]


def test_our_endpoints_always_send_the_requirements() -> None:
    p = wt_pair()
    for peer in (p.client, p.server):
        assert peer.quic.peer_accepts_reset_stream_at  # the empty transport parameter
        assert peer.quic.max_datagram_payload > 0  # max_datagram_frame_size > 0
        assert peer.peer_settings is not None
        assert peer.peer_settings[H3_DATAGRAM] == 1 and peer.peer_settings[WT_ENABLED] == 1
    assert p.client.peer_settings is not None and p.client.peer_settings[CONNECT_PROTOCOL] == 1
    for cfg in (ServerConfig(), ClientConfig()):
        quic = cfg._quic(isinstance(cfg, ClientConfig))
        assert quic.reset_stream_at and (quic.max_datagram_frame_size or 0) > 0
        cfg.max_datagram_frame_size = 0
        with pytest.raises(ConfigurationError):
            cfg._quic(isinstance(cfg, ClientConfig))


# -- flow-control capsules (§5.4, §5.6) -------------------------------------------------------

WINDOW = 1 << 20  # the client's initial_max_data (WebTransportConfiguration default)
BAD_CAPSULES = {
    "max_data_equal": encode_varint_capsule(CapsuleType.WT_MAX_DATA, WINDOW),
    "max_data_lower": encode_varint_capsule(CapsuleType.WT_MAX_DATA, 5),
    "max_streams_bidi_equal": encode_varint_capsule(CapsuleType.WT_MAX_STREAMS_BIDI, 100),
    "max_streams_uni_lower": encode_varint_capsule(CapsuleType.WT_MAX_STREAMS_UNI, 1),
    "max_stream_data": encode_capsule(0x190B4D3E, b"\x04\x01"),  # prohibited
    "stream_data_blocked": encode_capsule(0x190B4D42, b"\x04\x01"),  # prohibited
}


@pytest.mark.parametrize("name", list(BAD_CAPSULES))
@pytest.mark.parametrize("draft", list(Draft))
def test_flow_capsule_errors(draft: Draft, name: str) -> None:
    """Draft-13/16: WT_FLOW_CONTROL_ERROR ("MUST close the WebTransport session",
    §5.6.2, §5.6.4; "a session error", §5.4). Draft-02/07 have no such capsules: they
    are unknown capsule types there, skipped (RFC 9297 §3.2)."""
    p = wt_pair(config(draft), config())
    sid = establish(p)
    p.client.h3.send_data(sid, BAD_CAPSULES[name])
    if draft in FLOW_DRAFTS:
        p.run(lambda: bool(p.of(SessionClosed)) and bool(p.of(SessionClosed, "client")))
        (closed,) = p.of(SessionClosed)
        assert closed.http_code == H3ErrorCode.WT_FLOW_CONTROL_ERROR and not closed.by_peer
        assert p.of(SessionClosed, "client")[0].http_code == H3ErrorCode.WT_FLOW_CONTROL_ERROR
    else:
        p.settle(0.2)
        assert p.server.session_state(sid) is SessionState.ESTABLISHED
        assert not p.of(SessionClosed)


@pytest.mark.parametrize("draft", FLOW_DRAFTS)
def test_increasing_flow_capsules_are_fine(draft: Draft) -> None:
    p = wt_pair(config(draft), config())
    sid = establish(p)
    p.client.h3.send_data(sid, encode_varint_capsule(CapsuleType.WT_MAX_DATA, WINDOW + 1))
    p.client.h3.send_data(sid, encode_varint_capsule(CapsuleType.WT_MAX_STREAMS_BIDI, 101))
    p.settle(0.2)
    assert p.server.session_state(sid) is SessionState.ESTABLISHED


# -- one session without flow control (§5.1) -----------------------------------------------


@pytest.mark.parametrize("draft", FLOW_DRAFTS)
def test_one_session_without_flow_control(draft: Draft) -> None:
    """ "If flow control is not enabled, clients MUST NOT attempt to establish more than
    one simultaneous WebTransport session. A server that receives more than one ...
    MUST reset the excessive CONNECT streams with a H3_REQUEST_REJECTED status"."""
    p = wt_pair(config(draft, max_sessions=8, **NO_FC), config(max_sessions=8))
    assert not p.client.flow_control_for(draft) and not p.server.flow_control_for(draft)
    establish(p)
    second = p.client.connect("localhost", "/two")
    p.pump()
    (rejected,) = p.of(SessionRejected, "client")
    assert rejected.session_id == second and rejected.reason == "session limit reached"
    # a client that breaks the rule: the server resets the excess CONNECT
    p = wt_pair(config(draft, max_sessions=8, **NO_FC), config(max_sessions=8))
    p.client._session_limit = lambda draft: 8  # type: ignore[method-assign]  # misbehave
    establish(p)
    p.client.connect("localhost", "/two")
    p.run(lambda: bool(p.of(SessionRejected, "client")))
    assert "0x10b" in p.of(SessionRejected, "client")[0].reason  # H3_REQUEST_REJECTED
    assert len(p.of(SessionRequested)) == 1
    # the session ended: room for the next one
    p.client._session_limit = lambda draft: 1  # type: ignore[method-assign]
    first = p.of(SessionRequested)[0].session_id
    p.client.close_session(first)
    p.run(lambda: bool(p.of(SessionClosed)))
    establish(p, "/three")


@pytest.mark.parametrize("factor", [1, 4])
@pytest.mark.parametrize("declared", ["nothing", "count", "windows"])
def test_draft13_session_count_at_scale(declared: str, factor: int) -> None:
    """N vs 4N CONNECTs (legacy token) from a draft-13 client on one connection: the
    sessions held stay at the limit (1 without flow control, max_sessions with it: the
    client declared flow control by windows or by a session count above 1), each excess
    one is reset with H3_REQUEST_REJECTED and leaves no state."""
    limit, n = 4, 16 * factor
    windows = (1000, 10, 10) if declared == "windows" else (0, 0, 0)
    settings = peer_settings([Draft.DRAFT13], server=False, windows=windows)
    settings[0x14E9CD29] = 1 if declared == "nothing" else 4
    flow_control = declared != "nothing"
    wt, quic = server_fed(settings, WebTransportConfiguration(max_sessions=limit))
    assert wt.flow_control_for(Draft.DRAFT13) is flow_control
    requested = [r for i in range(n) for r in _requested(_connect(wt, 4 * i, b"webtransport"))]
    held = limit if flow_control else 1
    assert [r.draft for r in requested] == [Draft.DRAFT13] * held
    sizes = wt.table_sizes()
    assert sizes["sessions"] == held and sizes["parked_requests"] == 0
    refused = [s for s, code in quic.resets.items() if code == H3ErrorCode.H3_REQUEST_REJECTED]
    assert len(refused) == n - held  # linear in N, nothing kept for them
    assert sizes["claimed_ids"] <= WebTransportConfiguration().max_claimed_session_ids


def _retained_by_refused_connects(n: int) -> tuple[int, int]:
    """Bytes still allocated after ``n`` more CONNECTs beyond a draft-13 connection's
    one session (no flow control) were refused, and the sessions held."""
    settings = peer_settings([Draft.DRAFT13], server=False, windows=(0, 0, 0))
    wt, quic = server_fed({**settings, 0x14E9CD29: 1})
    quic.keep_writes = False
    for i in range(8):  # the session, and the first refusals (lazily made tables)
        _connect(wt, 4 * i, b"webtransport")

    def forget_fake_records() -> None:  # FakeQuic's own log of what it was told
        quic.resets.clear()
        quic.stops.clear()
        quic.consumed.clear()

    forget_fake_records()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(8, 8 + n):
            _connect(wt, 4 * i, b"webtransport")
        forget_fake_records()
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return retained, wt.table_sizes()["sessions"]


def test_draft13_refused_connects_retain_nothing() -> None:
    """N vs 4N refused CONNECTs: the bytes retained do not grow with N (the bounded
    record of used IDs keeps a floor, not a list)."""
    small, held_small = _retained_by_refused_connects(200)
    large, held_large = _retained_by_refused_connects(800)
    assert held_small == held_large == 1
    assert large <= small + 4096, (small, large)


def test_draft13_peer_declaring_by_session_count_starts_at_zero() -> None:
    """A draft-13 client that declared flow control by its session count alone sent no
    windows: every limit towards it starts at 0 (draft-16 §5.5) until its capsules
    raise it."""
    settings = peer_settings([Draft.DRAFT13], server=False, windows=(0, 0, 0))
    wt, _ = server_fed(settings)
    _connect(wt, 0, b"webtransport")
    wt.accept(0)
    with pytest.raises(FlowControlBlocked):
        wt.open_stream(0, True)
    feed(wt, qe.StreamDataReceived(0, capsule(CapsuleType.WT_MAX_STREAMS_BIDI, b"\x01"), False))
    stream = wt.open_stream(0, True)
    assert wt.send_stream_data(stream, b"x") == 0  # no data credit yet
    feed(wt, qe.StreamDataReceived(0, capsule(CapsuleType.WT_MAX_DATA, b"\x01"), False))
    assert wt.send_stream_data(stream, b"xy") == 1
    # without a count above 1 (and without windows) there is no flow control at all
    wt, _ = server_fed({**settings, 0x14E9CD29: 1})
    assert not wt.flow_control_for(Draft.DRAFT13)


# -- WT_ALPN_ERROR (§3.3) ------------------------------------------------------------------


@pytest.mark.parametrize("draft", FLOW_DRAFTS)
def test_wt_protocol_not_offered_is_alpn_error(draft: Draft) -> None:
    """ "If the client receives a WT-Protocol value that was not included in its
    WT-Available-Protocols list, the client MUST close the WebTransport session with
    a WT_ALPN_ERROR error code"."""
    p = wt_pair(config(draft), config())
    sid = p.client.connect("localhost", "/x", protocols=("a", "b"))
    p.run(lambda: bool(p.of(SessionRequested)))
    assert p.of(SessionRequested)[0].protocols == ("a", "b")
    p.server.accept(sid, headers=[(b"wt-protocol", b'"zzz"')])
    p.run(lambda: bool(p.of(SessionClosed, "client")) and bool(p.of(SessionClosed)))
    assert p.of(SessionClosed, "client")[0].http_code == H3ErrorCode.WT_ALPN_ERROR
    assert p.of(SessionClosed)[0].http_code == H3ErrorCode.WT_ALPN_ERROR


# -- RESET_STREAM_AT for our resets (§4.4) ---------------------------------------------------


@pytest.mark.parametrize("bidi", [False, True], ids=["uni", "bidi"])
@pytest.mark.parametrize("draft", list(Draft))
def test_our_resets_keep_the_header(draft: Draft, bidi: bool) -> None:
    """Every draft, both directions: a data stream we opened and reset goes out as
    RESET_STREAM_AT whose Reliable Size is exactly its WebTransport header (signal or
    stream type, then the session ID: §4.2, §4.3), so the peer ties the reset to it."""
    p = wt_pair(config(draft), config())
    sid = establish(p)
    header = varint_size(0x41 if bidi else 0x54) + varint_size(sid)
    for opener, peer in (("client", "server"), ("server", "client")):
        conn = p.client if opener == "client" else p.server
        stream = conn.open_stream(sid, bidi)
        conn.send_stream_data(stream, b"some data")
        p.settle(0.05)
        conn.reset_stream(stream, 7)
        p.run(lambda s=stream, side=peer: any(e.stream_id == s for e in p.of(StreamReset, side)))  # type: ignore[misc]
        (quic_reset,) = [
            e
            for e in _quic_events(p, qe.StreamReset, peer)
            if e.stream_id == stream  # type: ignore[attr-defined]
        ]
        assert quic_reset.reliable_size == header  # type: ignore[attr-defined]
        resets = [e for e in p.of(StreamReset, peer) if e.stream_id == stream]
        assert [(r.session_id, r.code) for r in resets] == [(sid, 7)]


@pytest.mark.parametrize("draft", list(Draft))
def test_session_end_resets_keep_the_header(draft: Draft) -> None:
    """Closing a session resets its streams with WT_SESSION_GONE (§6): the streams we
    opened go out as RESET_STREAM_AT over their header too, in every draft."""
    p = wt_pair(config(draft), config())
    sid = establish(p)
    streams = {p.client.open_stream(sid, bidi): bidi for bidi in (False, True)}
    for stream in streams:
        p.client.send_stream_data(stream, b"unfinished")
    p.settle(0.05)
    p.client.close_session(sid, 5, "bye")
    p.run(lambda: len([e for e in _quic_events(p, qe.StreamReset, "server")]) >= 2)
    resets = {e.stream_id: e for e in _quic_events(p, qe.StreamReset, "server")}  # type: ignore[attr-defined]
    for stream, bidi in streams.items():
        header = varint_size(0x41 if bidi else 0x54) + varint_size(sid)
        assert resets[stream].reliable_size == header  # type: ignore[attr-defined]
        assert resets[stream].error_code == H3ErrorCode.WT_SESSION_GONE  # type: ignore[attr-defined]
