"""Stateful: a hostile HTTP/3 client against our server, mixed with normal requests.

``HostileClient`` drives an in-memory QUIC pair (fake clock) whose client writes raw
HTTP/3 on its streams: normal requests (static-table QPACK) with bodies, QPACK-blocked
requests and what follows them (DATA, HEADERS, reserved frames), the dynamic table
insertion that unblocks them, frames with huge lengths, resets and STOP_SENDING,
GOAWAY and MAX_PUSH_ID games on the control stream, reserved and push streams, and
HTTP datagrams for unknown, open and closed streams. The server is our H3Connection
with small limits. After every step:

* no exception has left ``handle_event`` (the pump would raise it) and no internal
  error was recorded;
* the server's queue is drained and its state is bounded: the frames and bytes held
  for blocked streams are within their limits, the stream table within the open
  streams QUIC allows, the QPACK decoder within SETTINGS_QPACK_BLOCKED_STREAMS;
* a closed connection carries an HTTP/3 error code.

Deep run (>= 100,000 examples): ``FUZZ_PROFILE=deep pytest fuzz/test_fuzz_h3_state.py``
(:mod:`fuzz.profiles`).
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fuzz.profiles import examples
from h3.connection import H3Configuration
from h3.errors import H3ErrorCode
from h3.events import DataReceived, H3Event, HeadersReceived, StopSendingReceived
from h3.frames import (
    encode_data_frame,
    encode_data_frame_header,
    encode_frame,
    encode_goaway_frame,
    encode_headers_frame,
    encode_max_push_id_frame,
)
from h3.qpack import QpackEncoder
from quic.buffer import encode_varint
from quic.errors import StreamResetError
from quic.events import StreamDataReceived
from quic.stream_manager import StreamLimitReached
from quic.stream_send import StreamUsageError
from tests.h3.h3pair import REQUEST, lean_pair

_H3_CODES = {int(code) for code in H3ErrorCode}
_LIMITS = H3Configuration(
    enable_datagrams=True,
    enable_webtransport=True,
    enable_connect_protocol=True,
    qpack_blocked_streams=4,
    max_frame_size=4096,
    max_blocked_frames_per_stream=6,
    max_blocked_bytes_per_stream=6000,
    max_blocked_bytes=10_000,
)
_MAX_INSERTS = 120  # keeps Required Insert Count in one prefix byte (RFC 9204 §4.5.1)
_STATIC = QpackEncoder()  # never given settings: static table only


def _section(headers: list[tuple[bytes, bytes]]) -> bytes:
    return encode_headers_frame(_STATIC.encode(0, headers))


class HostileClient(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.connections = 0
        self._connect()

    def _connect(self) -> None:
        self.connections += 1
        p = self.p = lean_pair(H3Configuration(enable_datagrams=True), _LIMITS)
        self.quic = p.pair.client
        decoder_stream = p.server.control.decoder_id
        # the hand-made blocked sections are unknown to the client's QPACK encoder: it
        # must not see the server's acknowledgments of them
        p.client_quic_filter = lambda e: getattr(e, "stream_id", None) != decoder_stream
        self.inserted = 0
        self.streams: list[int] = []  # raw request streams we opened
        self.blocked: list[int] = []
        self.answered = 0
        self.stopped: set[int] = set()  # request streams the client sent STOP_SENDING on
        p.handler = self._on_event

    def _on_event(self, side: str, event: H3Event) -> None:
        if side != "server" or self.p.server.closed:
            return
        if isinstance(event, StopSendingReceived):
            self.stopped.add(event.stream_id)  # our send side is reset: no answer possible
            return
        if (
            isinstance(event, (HeadersReceived, DataReceived))
            and event.stream_ended
            and event.stream_id not in self.stopped
        ):
            self.answered += 1
            self.p.server.send_headers(event.stream_id, [(b":status", b"200")], True)

    @property
    def open(self) -> bool:
        return not self.p.server.closed and self.p.close_code("client") is None

    def _new_stream(self) -> int | None:
        try:
            sid = self.quic.create_stream(True)
        except StreamLimitReached:
            return None
        self.streams.append(sid)
        return sid

    def _send(self, sid: int, data: bytes, fin: bool = False) -> None:
        with contextlib.suppress(ValueError, StreamResetError, StreamUsageError):
            self.quic.send_stream_data(sid, data, fin)  # unless reset, ended or gone

    # -- normal traffic ----------------------------------------------------------------

    @precondition(lambda self: self.open)
    @rule(body=st.binary(max_size=3000), trailers=st.booleans())
    def normal_request(self, body: bytes, trailers: bool) -> None:
        sid = self._new_stream()
        if sid is None:
            return
        head = [*REQUEST, (b"content-length", b"%d" % len(body))]
        data = _section(head) + encode_data_frame(body)
        if trailers:
            data += _section([(b"x-t", b"1")])
        self._send(sid, data, True)

    @precondition(lambda self: self.open)
    @rule(size=st.integers(0, 3000))
    def blocked_request(self, size: int) -> None:
        """A section that waits for the next insertion, then DATA behind it."""
        if self.inserted >= _MAX_INSERTS:
            return
        sid = self._new_stream()
        if sid is None:
            return
        ric = self.inserted + 1  # needs the entry not inserted yet (RFC 9204 §2.1.2)
        prefix = bytes([ric % 256 + 1, 0])
        section = prefix + b"\xd1\xd7\xc1\x50\x09localhost\x80"
        self._send(sid, encode_headers_frame(section) + encode_data_frame(b"b" * size))
        self.blocked.append(sid)

    @precondition(lambda self: self.open and self.blocked)
    @rule(
        index=st.integers(0, 100),
        what=st.sampled_from(["data", "headers", "reserved", "fin", "reset"]),
        count=st.integers(1, 2000),
    )
    def behind_blocked(self, index: int, what: str, count: int) -> None:
        sid = self.blocked[index % len(self.blocked)]
        if what == "data":
            self._send(sid, encode_data_frame(b"d" * count))
        elif what == "headers":
            self._send(sid, _section([(b"x-t", b"%d" % count)]))
        elif what == "reserved":
            self._send(sid, b"\x21\x00" * count)  # reserved type 0x21 (RFC 9114 §7.2.8)
        elif what == "fin":
            self._send(sid, b"", True)
        else:
            self.quic.reset_stream(sid, H3ErrorCode.H3_REQUEST_CANCELLED)
            self.blocked.remove(sid)

    @precondition(lambda self: self.open and self.inserted < _MAX_INSERTS)
    @rule()
    def insert(self) -> None:
        """The dynamic table entry the blocked sections wait for (RFC 9204 §4.3.3)."""
        assert self.p.client.control.encoder_id is not None
        self._send(self.p.client.control.encoder_id, b"\x43x-a\x01b")
        self.inserted += 1
        self.blocked.clear()

    # -- hostile framing ---------------------------------------------------------------

    @precondition(lambda self: self.open)
    @rule(
        frame_type=st.sampled_from([0x00, 0x01, 0x21, 0x40, 0x05, 0x0D]),
        length=st.sampled_from([0, 1, 4097, 1 << 20, (1 << 62) - 1]),
    )
    def huge_length(self, frame_type: int, length: int) -> None:
        sid = self._new_stream()
        if sid is not None:
            self._send(sid, encode_varint(frame_type) + encode_varint(length) + b"x" * 64)

    @precondition(lambda self: self.open)
    @rule(n=st.integers(1, 3000))
    def reserved_frames_on_a_request(self, n: int) -> None:
        sid = self._new_stream()
        if sid is not None:
            self._send(sid, _section(REQUEST) + b"\x21\x00" * n + encode_data_frame_header(0))

    @precondition(lambda self: self.open and self.streams)
    @rule(index=st.integers(0, 1000), stop=st.booleans())
    def reset(self, index: int, stop: bool) -> None:
        sid = self.streams[index % len(self.streams)]
        self.quic.reset_stream(sid, H3ErrorCode.H3_REQUEST_CANCELLED)
        if stop:
            self.quic.stop_stream(sid, H3ErrorCode.H3_REQUEST_CANCELLED)

    @precondition(lambda self: self.open)
    @rule(
        frame=st.sampled_from(["goaway", "max_push_id", "reserved", "cancel_push"]),
        value=st.integers(0, 1 << 20),
    )
    def control_games(self, frame: str, value: int) -> None:
        control = self.p.client.control.control_id
        assert control is not None
        if frame == "goaway":
            data = encode_goaway_frame(value)
        elif frame == "max_push_id":
            data = encode_max_push_id_frame(value)
        elif frame == "cancel_push":
            data = encode_frame(0x03, encode_varint(value))
        else:
            data = encode_frame(0x21 + 0x1F * (value % 100), b"r" * (value % 300))
        self._send(control, data)

    @precondition(lambda self: self.open)
    @rule(stream_type=st.sampled_from([0x01, 0x21, 0x54, 0x3F, 0x00]), size=st.integers(0, 500))
    def uni_stream(self, stream_type: int, size: int) -> None:
        try:
            sid = self.quic.create_stream(False)
        except StreamLimitReached:
            return
        header = encode_varint(stream_type) + (b"\x00" if stream_type in (1, 0x54) else b"")
        self._send(sid, header + b"u" * size, size % 2 == 0)

    @precondition(lambda self: self.open)
    @rule(which=st.sampled_from(["unknown", "open", "closed"]), n=st.integers(1, 50))
    def datagrams(self, which: str, n: int) -> None:
        if which == "unknown" or not self.streams:
            sid = 4 * (len(self.streams) + 1000)
        elif which == "open":
            sid = self.streams[-1]
        else:
            sid = self.streams[0]
        for i in range(n):
            self.quic.send_datagram(encode_varint(sid >> 2) + b"%d" % i)

    @precondition(lambda self: self.open)
    @rule()
    def server_goaway(self) -> None:
        self.p.server.send_goaway()

    @rule(duration=st.sampled_from([0.01, 0.05, 0.3]))
    def run(self, duration: float) -> None:
        self.p.settle(duration)

    @precondition(lambda self: not self.open and self.connections < 4)
    @rule()
    def reconnect(self) -> None:
        """A protocol error closed the connection: go on with a new one."""
        self.p.settle(0.3)
        term = self.p.terminated["client"]
        event(f"closed: {H3ErrorCode(term.error_code).name if term else 'by us'}")
        self._connect()

    # -- what must always hold -----------------------------------------------------------

    @invariant()
    def bounded(self) -> None:
        p = self.p
        p.settle(0.02)  # the network moves on after every step
        server = p.server
        assert server.last_internal_error is None
        sizes = server.state_sizes()
        assert sizes["events"] == 0
        assert sizes["blocked_bytes"] <= _LIMITS.max_blocked_bytes
        assert sizes["qpack_blocked_streams"] <= _LIMITS.qpack_blocked_streams
        assert sizes["qpack_queued_sections"] == 0
        assert sizes["head_requests"] == 0
        # live streams: at most those QUIC lets the peer open at once, and our 3 critical
        # ones; closed IDs fold into at most one range per live stream (+ one per space)
        quic_limits = self.p.pair.server.configuration
        bound = quic_limits.initial_max_streams_bidi + quic_limits.initial_max_streams_uni
        assert sizes["streams"] <= bound
        assert sizes["closed_ranges"] <= sizes["streams"] + 4
        if sizes["blocked_bytes"]:
            event("held bytes for a blocked stream")
        if self.answered:
            event("answered a request")
        for _sid, frames, held in server.blocked_stream_holdings():
            assert frames <= _LIMITS.max_blocked_frames_per_stream
            assert held <= _LIMITS.max_blocked_bytes_per_stream

    @invariant()
    def closes_with_an_h3_code(self) -> None:
        term = self.p.terminated["client"]
        if term is not None and term.is_application:
            assert term.error_code in _H3_CODES, term


def test_one_event_at_a_time_never_raises() -> None:
    """Direct feeding, outside any pump: handle_event returns None on garbage."""
    p = lean_pair()
    for data in (b"\x01\x40\x00", b"\x00" * 100, b"\xff" * 9, b"\x41\x00"):
        assert p.server.handle_event(StreamDataReceived(400, data, False)) is None  # type: ignore[func-returns-value]


TestHostileClient = HostileClient.TestCase
TestHostileClient.settings = settings(
    max_examples=examples(25),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
