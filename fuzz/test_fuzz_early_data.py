"""Stateful: the server's 0-RTT request policy (h3.early) under random interleavings.

``EarlyGate`` feeds an :class:`~h3.early.EarlyRequests` what an HTTP/3 server connection
would: QUIC stream data marked early (or not) on request streams, request heads (safe,
unsafe, CONNECT, some marked ``Early-Data: 1``), body chunks, trailers, peer resets, the
handshake completing — and drains the application's side at random moments. The fake
connection records the 425 answers, STOP_SENDINGs and credit it is given. Checked after
every step:

* held state within ``max_early_requests_held`` / ``max_early_bytes_held``, nothing held
  once the handshake completed;
* every body byte is delivered to the application, credited by the policy, or still
  held (credit is never lost nor given twice);
* per stream, the application sees events in the order HTTP/3 produced them, nothing
  of a refused stream after its 425 (a peer reset aside), and each request head either
  reaches it or is refused, once;
* the policy holds: under "reject-unsafe" an early request reaching the application is
  safe, under "defer" one from 0-RTT only arrives after the handshake, no CONNECT from
  early data ever reaches it except after the handshake under "defer".

Deep run (>= 100,000 examples): ``FUZZ_PROFILE=deep pytest fuzz/test_fuzz_early_data.py``.
"""

from __future__ import annotations

from collections import deque

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fuzz.profiles import examples
from h3.early import EARLY_DATA_POLICIES, SAFE_METHODS, EarlyDataPolicy, EarlyRequests
from h3.events import DataReceived, H3Event, Headers, HeadersReceived, RequestStreamReset
from quic import events as qe

_STREAMS = [4 * i for i in range(6)]
_METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"CONNECT", b"OPTIONS", b"DELETE", b"TRACE"]
_MAX_HELD = 3
_MAX_BYTES = 500


class _Conn:
    """What the policy calls on the HTTP/3 connection."""

    def __init__(self) -> None:
        self.too_early: list[int] = []
        self.stopped: set[int] = set()
        self.credited = 0

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool = False) -> None:
        assert headers[0] == (b":status", b"425") and end_stream
        self.too_early.append(stream_id)

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        self.stopped.add(stream_id)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        raise AssertionError("a 425 is always possible here")

    def consume_data(self, stream_id: int, nbytes: int) -> None:
        self.credited += nbytes


class EarlyGate(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.conn = _Conn()
        self.events: deque[H3Event] = deque()
        self.gate: EarlyRequests
        self.policy: EarlyDataPolicy = "reject-unsafe"
        self.handshake = False
        self.closed: set[int] = set()  # HTTP/3 is done with these (ended, reset, stopped)
        self.headed: dict[int, tuple[bytes, bool, bool]] = {}  # method, 0-RTT, header
        self.early_seen: set[int] = set()
        self.ended: set[int] = set()
        self.produced: dict[int, list[H3Event]] = {}
        self.delivered: dict[int, list[H3Event]] = {}
        self.enqueued_bytes = 0
        self.delivered_bytes = 0
        self.refused_at: dict[int, int] = {}  # stream -> delivered count at the 425

    @initialize(policy=st.sampled_from(EARLY_DATA_POLICIES))
    def start(self, policy: EarlyDataPolicy) -> None:
        self.policy = policy
        self.gate = EarlyRequests(False, policy, _MAX_HELD, _MAX_BYTES, self._is_closed)

    def _is_closed(self, sid: int) -> bool:
        return sid in self.closed or sid in self.conn.stopped

    def _produce(self, event: H3Event, sid: int) -> None:
        self.events.append(event)
        self.produced.setdefault(sid, []).append(event)

    # -- what QUIC and HTTP/3 produce ----------------------------------------------------

    @rule(sid=st.sampled_from(_STREAMS))
    def stream_data(self, sid: int) -> None:
        """QUIC delivers bytes of the stream (a field section still blocked, a body):
        early exactly while the handshake is not complete (RFC 9001 §5.7)."""
        early = not self.handshake
        self.gate.on_quic_event(qe.StreamDataReceived(sid, b"x", False, early_data=early))
        if early and not self._is_closed(sid):
            self.early_seen.add(sid)

    @rule(
        sid=st.sampled_from(_STREAMS),
        method=st.sampled_from(_METHODS),
        marked=st.booleans(),
        fin=st.booleans(),
    )
    def head(self, sid: int, method: bytes, marked: bool, fin: bool) -> None:
        if self._is_closed(sid) or sid in self.headed:
            return
        self.stream_data(sid)  # the bytes that carried it
        self.headed[sid] = (method, sid in self.early_seen, marked)
        headers = [(b":method", method), (b":path", b"/")]
        if marked:
            headers.append((b"early-data", b"1"))
        self._produce(HeadersReceived(sid, headers, fin), sid)
        if fin:
            self._end(sid)

    @rule(sid=st.sampled_from(_STREAMS), size=st.integers(0, 300), fin=st.booleans())
    def data(self, sid: int, size: int, fin: bool) -> None:
        if self._is_closed(sid) or sid not in self.headed:
            return
        self.stream_data(sid)
        self.enqueued_bytes += size
        self._produce(DataReceived(sid, b"d" * size, fin), sid)
        if fin:
            self._end(sid)

    @rule(sid=st.sampled_from(_STREAMS))
    def trailers(self, sid: int) -> None:
        if self._is_closed(sid) or sid not in self.headed:
            return
        self.stream_data(sid)
        self._produce(HeadersReceived(sid, [(b"x-trailer", b"1")], True), sid)
        self._end(sid)

    @rule(sid=st.sampled_from(_STREAMS))
    def peer_reset(self, sid: int) -> None:
        if sid in self.closed or sid not in self.headed:
            return
        self._produce(RequestStreamReset(sid, 0x10C), sid)
        self._end(sid)

    def _end(self, sid: int) -> None:
        self.closed.add(sid)
        self.gate.forget(sid)

    @precondition(lambda self: not self.handshake)
    @rule()
    def handshake_completes(self) -> None:
        self.handshake = True
        self.gate.on_quic_event(qe.HandshakeCompleted("h3"))

    # -- the application ------------------------------------------------------------------

    @rule(count=st.integers(1, 8))
    def drain(self, count: int) -> None:
        for _ in range(count):
            before = len(self.conn.too_early)
            event = self.gate.next_event(self.events, self.conn)
            for sid in self.conn.too_early[before:]:
                assert sid not in self.refused_at, "refused twice"
                self.refused_at[sid] = len(self.delivered.get(sid, []))
            if event is None:
                return
            self._deliver(event)

    def _deliver(self, event: H3Event) -> None:
        sid = event.stream_id  # type: ignore[attr-defined]
        got = self.delivered.setdefault(sid, [])
        if sid in self.refused_at:
            assert isinstance(event, RequestStreamReset), "an event after the 425"
        got.append(event)
        if isinstance(event, DataReceived):
            self.delivered_bytes += len(event.data)
        if isinstance(event, HeadersReceived) and event.early_data:
            method, zero_rtt, marked = self.headed[sid]
            assert zero_rtt or marked
            if self.policy == "reject-unsafe" or (self.policy == "defer" and not zero_rtt):
                assert method in SAFE_METHODS
            if self.policy == "defer" and zero_rtt:
                assert self.handshake, "a deferred request before the handshake"
            if method == b"CONNECT":
                assert self.policy == "defer" and zero_rtt

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def bounded(self) -> None:
        sizes = self.gate.state_sizes()
        assert sizes["early_held_requests"] <= _MAX_HELD
        assert sizes["early_held_bytes"] <= _MAX_BYTES
        if self.handshake:
            assert sizes["early_held_requests"] == sizes["early_held_bytes"] == 0
        assert sizes["early_streams"] <= len(_STREAMS)

    @invariant()
    def credit_conserved(self) -> None:
        held = self.gate.state_sizes()["early_held_bytes"]
        queued = sum(len(e.data) for e in self.events if isinstance(e, DataReceived))
        ready = sum(len(e.data) for e in self.gate._ready or () if isinstance(e, DataReceived))
        accounted = self.delivered_bytes + self.conn.credited + held + queued + ready
        assert accounted == self.enqueued_bytes

    @invariant()
    def in_order(self) -> None:
        for sid, got in self.delivered.items():
            produced = self.produced[sid]
            position = 0
            for event in got:
                plain = event
                if isinstance(event, HeadersReceived) and event.early_data:
                    plain = HeadersReceived(sid, event.headers, event.stream_ended)
                while produced[position] != plain:
                    position += 1  # skipped: dropped by the policy
                position += 1
            heads = [e for e in got if isinstance(e, HeadersReceived) and _is_head(e)]
            assert len(heads) <= 1
            assert not (heads and sid in self.refused_at), "delivered and refused"

    def teardown(self) -> None:
        if not hasattr(self, "gate"):
            return
        if not self.handshake:
            self.handshake_completes()
        while self.events or self.gate._ready:
            self.drain(8)
        sizes = self.gate.state_sizes()
        assert sizes["early_held_requests"] == sizes["early_ready"] == 0
        self.credit_conserved()
        self.in_order()
        for sid, (_, zero_rtt, marked) in self.headed.items():
            if zero_rtt or marked:  # every early request head reached the app or got 425
                delivered = any(_is_head(e) for e in self.delivered.get(sid, []))
                assert delivered or sid in self.refused_at or self._reset_first(sid)

    def _reset_first(self, sid: int) -> bool:
        """A held request the peer reset before the handshake: dropped silently."""
        return any(isinstance(e, RequestStreamReset) for e in self.produced[sid])


def _is_head(event: H3Event) -> bool:
    return isinstance(event, HeadersReceived) and event.headers[0][0] == b":method"


TestEarlyGate = EarlyGate.TestCase
TestEarlyGate.settings = settings(
    max_examples=examples(400),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
