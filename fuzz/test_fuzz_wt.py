"""Property tests for the WebTransport core: arbitrary capsule streams on an established
session and arbitrary WebTransport stream headers never raise; the session either stays
established or ends with exactly one SessionClosed; bad session IDs close the
connection with H3_ID_ERROR. A stateful machine interleaves hostile input with normal
sessions on an in-memory pair and checks bounded state (see below)."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fuzz.profiles import DEEP, examples
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
    SessionRequested,
    SessionState,
    WebTransportConfiguration,
    WebTransportError,
    WebTransportEvent,
)
from quic import events as qe
from quic.buffer import VARINT_MAX, encode_varint
from quic.stream_manager import StreamLimitReached
from tests.wt.fakequic import feed, server_with_session
from tests.wt.hostile import GET, connect_request, headers_frame, raw_datagram
from tests.wt.wtpair import wt_pair

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


@settings(max_examples=examples(150), deadline=None)
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


@settings(max_examples=examples(150), deadline=None)
@given(varints, st.binary(max_size=20), st.booleans(), st.booleans())
def test_stream_headers_never_raise(session_id: int, body: bytes, bidi: bool, fin: bool) -> None:
    wt, quic, _ = server_with_session()
    if bidi:
        sid, header = 4, encode_webtransport_bidi_header(session_id)
    else:
        sid, header = 6, encode_uni_stream_header(StreamType.WEBTRANSPORT_UNI, session_id)
    feed(wt, qe.StreamDataReceived(sid, header + body, fin))
    # the header alone reports the stream (h3 says so once it is read), so a session ID
    # that is not a client-initiated bidirectional stream is refused at once
    if session_id & 3:
        assert quic.closed == H3ErrorCode.H3_ID_ERROR
    else:
        assert quic.closed is None


# ======================================================================================
# Stateful: hostile WebTransport input interleaved with normal sessions (issue 8)
# ======================================================================================
#
# An in-memory pair (real QUIC, fake clock): the client runs normal sessions through its
# WebTransportConnection and, next to them, writes hostile bytes straight onto its QUIC
# connection — capsules of every type with bad values, WebTransport streams for unknown
# and closed sessions, resets, early streams and datagrams, WT_MAX_* games, GETs with
# trailers. After every step nothing is queued anywhere, every table is within its limit
# and no bug of ours closed the connection (H3_INTERNAL_ERROR). The default run is short;
# FUZZ_PROFILE=deep runs the deep profile by hand (fuzz/profiles.py).

LIMITS = WebTransportConfiguration(
    max_sessions=6,
    max_buffered_streams=6,
    max_buffered_stream_bytes=2000,
    max_buffered_datagrams=6,
    max_buffered_datagram_bytes=600,
    max_buffered_capsule_bytes=2000,
    max_claimed_session_ids=32,
    initial_max_data=4000,
    initial_max_streams_bidi=4,
    initial_max_streams_uni=4,
)
QUIC_STREAMS = 64  # each side's QUIC stream limits in the machine
CAPSULE_TYPES = [
    *sorted(FLOW_CONTROL_CAPSULES),
    CapsuleType.CLOSE_WEBTRANSPORT_SESSION,
    CapsuleType.DRAIN_WEBTRANSPORT_SESSION,
    CapsuleType.DATAGRAM,
    0x190B4D3E,  # WT_MAX_STREAM_DATA: forbidden over HTTP/3 (draft-16 §5.4)
    0x190B4D42,  # WT_STREAM_DATA_BLOCKED: forbidden
    0x17,  # reserved
    0x3FFF,  # unknown
]
bad_values = st.one_of(
    st.integers(0, VARINT_MAX).map(encode_varint),
    st.just(b""),
    st.binary(max_size=12),
    st.builds(lambda n: bytes(4) + b"\xff" * n, st.integers(0, 1100)),  # bad UTF-8 / too long
)


class HostileWebTransport(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        quic = {"initial_max_streams_bidi": QUIC_STREAMS, "initial_max_streams_uni": QUIC_STREAMS}
        self.p = wt_pair(
            WebTransportConfiguration(max_sessions=6), LIMITS, client_quic=quic, server_quic=quic
        )
        self.sessions: list[int] = []  # normal sessions of the client
        self.ended: list[int] = []  # session IDs that are over
        self.raw: list[int] = []  # client streams written by hand
        self.answered: set[int] = set()

    # -- helpers -------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return not self.p.pair.client.is_closed and self.p.pair.server.state.name in (
            "HANDSHAKE",
            "CONNECTED",
        )

    def step(self, duration: float = 0.05) -> None:
        p = self.p
        p.settle(duration)
        for request in p.of(SessionRequested):  # the server application
            sid = request.session_id
            if sid in self.answered or p.server.session_state(sid) is not SessionState.REQUESTED:
                continue
            self.answered.add(sid)
            if request.path.endswith("reject"):
                p.server.reject(sid, 403)
            else:
                p.server.accept(sid)
        p.settle(duration)
        for event in p.of(SessionClosed, "client") + p.of(SessionClosed):
            if event.session_id in self.sessions:
                self.sessions.remove(event.session_id)
                self.ended.append(event.session_id)
        p.clear()

    def raw_stream(self, bidi: bool, data: bytes, fin: bool) -> int | None:
        quic = self.p.pair.client
        try:
            sid = quic.create_stream(bidirectional=bidi)
        except StreamLimitReached:
            return None
        quic.send_stream_data(sid, data, fin)
        self.raw.append(sid)
        return sid

    def target(self, index: int, kind: str) -> int:
        if kind == "live" and self.sessions:
            return self.sessions[index % len(self.sessions)]
        if kind == "ended" and self.ended:
            return self.ended[index % len(self.ended)]
        return 4 * (1000 + index)  # a session that never was

    # -- normal traffic --------------------------------------------------------------------

    @rule(reject=st.booleans())
    def open_session(self, reject: bool) -> None:
        p = self.p
        if not self.alive or len(self.sessions) >= 4:
            return
        try:
            sid = p.client.connect("localhost", "/reject" if reject else "/ok")
        except WebTransportError:
            return
        self.step()
        if p.client.session_state(sid) is SessionState.ESTABLISHED:
            self.sessions.append(sid)

    @rule(index=st.integers(0, 7), by_server=st.booleans(), code=st.integers(0, 0xFFFFFFFF))
    def close_session(self, index: int, by_server: bool, code: int) -> None:
        if not self.sessions or not self.alive:
            return
        sid = self.sessions[index % len(self.sessions)]
        side = self.p.server if by_server else self.p.client
        with contextlib.suppress(WebTransportError):
            side.close_session(sid, code, "bye")
        self.step()

    @rule(
        index=st.integers(0, 7),
        bidi=st.booleans(),
        size=st.integers(0, 6000),
        end=st.sampled_from(["fin", "open", "reset"]),
    )
    def stream_traffic(self, index: int, bidi: bool, size: int, end: str) -> None:
        if not self.sessions or not self.alive:
            return
        client = self.p.client
        sid = self.sessions[index % len(self.sessions)]
        try:
            stream_id = client.open_stream(sid, bidirectional=bidi)
            client.send_stream_data(stream_id, bytes(size), end_stream=end == "fin")
            if end == "reset":
                client.reset_stream(stream_id, size)
        except (WebTransportError, StreamLimitReached):
            return
        self.step()

    @rule(index=st.integers(0, 7), size=st.integers(0, 300))
    def datagram(self, index: int, size: int) -> None:
        if self.sessions and self.alive:
            with contextlib.suppress(WebTransportError, ValueError):
                self.p.client.send_datagram(self.sessions[index % len(self.sessions)], bytes(size))
            self.step()

    # -- hostile input ---------------------------------------------------------------------

    @rule(
        index=st.integers(0, 7),
        kind=st.sampled_from(["live", "ended", "unknown"]),
        capsule_type=st.sampled_from(CAPSULE_TYPES),
        value=bad_values,
    )
    def capsule(self, index: int, kind: str, capsule_type: int, value: bytes) -> None:
        if not self.alive:
            return
        sid = self.target(index, kind)
        with contextlib.suppress(Exception):  # our side of it may be over
            self.p.pair.client.send_stream_data(
                sid, encode_data_frame(encode_capsule(capsule_type, value))
            )
        self.step()

    @rule(
        fin=st.booleans(),
        early=st.integers(0, 4),
        protocol=st.sampled_from([b"webtransport-h3", b"webtransport", b"nonsense"]),
    )
    def hostile_connect(self, fin: bool, early: int, protocol: bytes) -> None:
        """A CONNECT written by hand, maybe malformed, with streams and datagrams that
        may arrive before it is accepted (draft-16 §4.7)."""
        if not self.alive:
            return
        sid = self.raw_stream(True, headers_frame(0, connect_request("/hostile", protocol)), fin)
        if sid is None:
            return
        for i in range(early):
            self.raw_stream(i % 2 == 0, wt_header(sid, i % 2 == 0) + bytes(700 * i), i == 3)
            raw_datagram(self.p, sid, bytes(150 * i))
        self.step()

    @rule(
        index=st.integers(0, 7),
        kind=st.sampled_from(["live", "ended", "unknown"]),
        bidi=st.booleans(),
        size=st.integers(0, 5000),
        fin=st.booleans(),
    )
    def wt_stream_for(self, index: int, kind: str, bidi: bool, size: int, fin: bool) -> None:
        if self.alive:
            self.raw_stream(bidi, wt_header(self.target(index, kind), bidi) + bytes(size), fin)
            self.step()

    @rule(index=st.integers(0, 7), kind=st.sampled_from(["live", "ended", "unknown"]))
    def stray_datagram(self, index: int, kind: str) -> None:
        if self.alive:
            raw_datagram(self.p, self.target(index, kind), bytes(index * 40))
            self.step()

    @rule(index=st.integers(0, 63), code=st.integers(0, VARINT_MAX))
    def reset_raw(self, index: int, code: int) -> None:
        if self.raw and self.alive:
            sid = self.raw[index % len(self.raw)]
            quic = self.p.pair.client
            with contextlib.suppress(Exception):
                quic.reset_stream(sid, code)
                if not sid & 2:
                    quic.stop_stream(sid, code)
            self.step()

    @rule(index=st.integers(0, 7), streams=st.integers(1, 8), data=st.integers(0, 8000))
    def wt_max_games(self, index: int, streams: int, data: int) -> None:
        """A client that ignores WT_MAX_STREAMS / WT_MAX_DATA (draft-16 §5.6)."""
        if not self.sessions or not self.alive:
            return
        sid = self.sessions[index % len(self.sessions)]
        for i in range(streams):
            self.raw_stream(i % 2 == 0, wt_header(sid, i % 2 == 0) + bytes(data // streams), False)
        self.step()

    @rule(body=st.binary(max_size=40), trailers=st.booleans(), fin=st.booleans())
    def plain_request(self, body: bytes, trailers: bool, fin: bool) -> None:
        """A GET (with trailers: finding 10), all in one write."""
        if not self.alive:
            return
        parts = [headers_frame(0, GET), encode_data_frame(body)]
        if trailers:
            parts.append(headers_frame(0, [(b"x-trailer", b"1")]))
        self.raw_stream(True, b"".join(parts), fin)
        self.step()

    @precondition(lambda self: DEEP)  # connection-fatal: deep runs only
    @rule(session_id=st.integers(0, VARINT_MAX))
    def any_session_id(self, session_id: int) -> None:
        if self.alive:
            self.raw_stream(False, wt_header(session_id, False) + b"x", True)
            self.step()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def bounded_and_drained(self) -> None:
        p = self.p
        for conn in (p.client, p.server):
            assert conn.next_event() is None and conn.h3.next_event() is None
        sizes = p.server.table_sizes()
        assert sizes["sessions"] <= LIMITS.max_sessions
        assert sizes["early_streams"] <= LIMITS.max_buffered_streams
        assert sizes["early_datagrams"] <= LIMITS.max_buffered_datagrams
        assert sizes["early_datagram_bytes"] <= LIMITS.max_buffered_datagram_bytes
        assert sizes["parked_requests"] <= LIMITS.max_sessions
        assert sizes["claimed_ids"] <= LIMITS.max_claimed_session_ids
        assert sizes["events"] == sizes["final_sizes"] == 0
        assert sizes["streams"] + sizes["stopped"] + sizes["closing"] <= 4 * QUIC_STREAMS
        closes = [e for e in p.quic_events["server"] if isinstance(e, qe.ConnectionTerminated)]
        assert all(e.error_code != H3ErrorCode.H3_INTERNAL_ERROR for e in closes), closes

    def teardown(self) -> None:
        p = self.p
        if not self.alive:
            return
        for sid in list(self.sessions):
            with contextlib.suppress(WebTransportError):
                p.client.close_session(sid)
        quic = p.pair.client
        for sid in self.raw:  # end what we wrote by hand
            with contextlib.suppress(Exception):
                quic.reset_stream(sid, 0)
        self.step(1.0)
        if self.alive:  # streams for sessions that never came stay buffered (bounded)
            sizes = p.server.table_sizes()
            assert sizes["sessions"] == sizes["closing"] == sizes["session_streams"] == 0


def wt_header(session_id: int, bidi: bool) -> bytes:
    if bidi:
        return encode_webtransport_bidi_header(session_id)
    return encode_uni_stream_header(StreamType.WEBTRANSPORT_UNI, session_id)


TestHostileWebTransport = HostileWebTransport.TestCase
TestHostileWebTransport.settings = settings(
    max_examples=examples(12),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
