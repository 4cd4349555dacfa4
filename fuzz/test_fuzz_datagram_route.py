"""The per-datagram fast path of the WebTransport layers gives the general path's results.

``WebTransportConnection.datagram_route`` (and ``H3Connection.datagram_route`` under
it) answers "where does this QUIC DATAGRAM payload go" without handling it; the link
(``pywebtransport._link``) then hands the payload straight to its session instead of
calling ``handle_event`` and draining the events. That is only right if the answer, when
there is one, is exactly what the general path would have produced — one
``DatagramReceived(session_id, payload)`` and no other effect — and if asking changes
nothing.

A stateful machine drives one server connection (:mod:`tests.wt.fakequic`: no crypto)
through the states that matter — sessions established, requested, closed, unknown;
WebTransport and HTTP/3 events queued ahead; credit updates due; qlog on; the peer's
FIN on a CONNECT stream; the connection closed — and feeds it datagrams: well-formed
ones for every kind of session ID, Quarter Stream IDs in every varint length (RFC 9000
§16 allows non-minimal encodings), too large (RFC 9297 §2.1), truncated, empty and
random bytes. For each one the route is asked first (checked to change nothing), then
the general path handles it; with a route the general path must yield exactly that one
event and leave every table, the QUIC calls and the close state as they were.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from fuzz.profiles import examples
from h3 import events as he
from pywebtransport.protocol import (
    DatagramReceived,
    SessionDraining,
    WebTransportConnection,
    WebTransportError,
)
from quic import events as qe
from quic.buffer import encode_varint
from tests.wt.fakequic import FakeQuic, connect_block, feed, server_with_session

_SESSIONS = (0, 4, 8, 12)  # 0 established, 4 requested (then maybe accepted), 8, 12 unknown


def _qsid(quarter: int, length: int) -> bytes:
    """``quarter`` as a varint of ``length`` bytes (1, 2, 4, 8; RFC 9000 §16)."""
    prefix = {1: 0, 2: 1, 4: 2, 8: 3}[length]
    if quarter >= 1 << (8 * length - 2):
        return encode_varint(quarter)
    return ((prefix << (8 * length - 2)) | quarter).to_bytes(length, "big")


_payloads = st.binary(max_size=40)
_well_formed = st.builds(
    lambda sid, length, payload: _qsid(sid >> 2, length) + payload,
    st.sampled_from(_SESSIONS),
    st.sampled_from((1, 1, 1, 2, 4, 8)),
    _payloads,
)
_datagrams = st.one_of(
    _well_formed,
    st.builds(  # a Quarter Stream ID above 2**60 - 1: H3_DATAGRAM_ERROR (RFC 9297 §2.1)
        lambda quarter, payload: encode_varint(quarter) + payload,
        st.integers((1 << 60), (1 << 62) - 1),
        _payloads,
    ),
    st.sampled_from((b"", b"\x40", b"\x80\x00", b"\xc0\x00\x00\x00")),  # truncated
    st.binary(max_size=24),
)


class _Qlog:
    """Stands in for h3.qlog.H3Logger: records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args))

        return record


def _state(wt: WebTransportConnection, quic: FakeQuic) -> Any:
    """Everything a datagram could change, as a comparable value."""
    h3 = wt.h3
    qlog = h3._qlog
    return (
        wt.table_sizes(),
        h3.state_sizes(),
        h3.closed,
        quic.closed,
        {sid: len(data) for sid, data in quic.written.items()},
        dict(quic.resets),
        dict(quic.stops),
        dict(quic.consumed),
        list(qlog.calls) if isinstance(qlog, _Qlog) else None,
        {sid: s.state for sid, s in wt._sessions.items()},
    )


class DatagramRouteMachine(RuleBasedStateMachine):
    wt: WebTransportConnection
    quic: FakeQuic

    @initialize()
    def start(self) -> None:
        self.wt, self.quic, _ = server_with_session()
        feed(self.wt, qe.StreamDataReceived(4, connect_block(4), False))  # requested
        self.routed = 0

    @rule(data=_datagrams)
    def datagram(self, data: bytes) -> None:
        self._check(data)

    @rule(length=st.sampled_from((1, 1, 2, 8)), payload=_payloads)
    def datagram_for_session_zero(self, length: int, payload: bytes) -> None:
        self._check(_qsid(0, length) + payload)  # the established session: the common case

    def _check(self, data: bytes) -> None:
        wt, quic = self.wt, self.quic
        before = _state(wt, quic)
        route = wt.datagram_route(data)
        assert _state(wt, quic) == before  # asking changes nothing
        events = feed(wt, qe.DatagramReceived(data))  # the general path, the reference
        if route is None:
            return
        self.routed += 1
        assert events == [DatagramReceived(route[0], route[1])]
        assert _state(wt, quic) == before

    @rule()
    def queue_wt_event(self) -> None:
        self.wt._emit(SessionDraining(0))  # an event ahead of the datagram's

    @rule(sid=st.sampled_from(_SESSIONS), payload=_payloads)
    def queue_h3_event(self, sid: int, payload: bytes) -> None:
        self.wt.h3._emit(he.DatagramReceived(sid, payload))

    @rule()
    def credit_due(self) -> None:
        self.wt._flow_dirty[0] = None  # a WT_MAX_DATA to send after the next event

    @rule()
    def qlog_on(self) -> None:
        self.wt.h3._qlog = _Qlog()  # type: ignore[assignment]

    @rule()
    def accept_requested(self) -> None:
        with contextlib.suppress(WebTransportError):  # not (or no longer) requested
            self.wt.accept(4)

    @rule(sid=st.sampled_from((0, 4)))
    def close_session(self, sid: int) -> None:
        with contextlib.suppress(WebTransportError):  # not accepted, or over
            self.wt.close_session(sid, 7, "bye")

    @rule(sid=st.sampled_from((0, 4)))
    def peer_fin(self, sid: int) -> None:
        feed(self.wt, qe.StreamDataReceived(sid, b"", True))

    @rule()
    def close_connection(self) -> None:
        self.wt.h3.close(0x100, "done")


DatagramRouteMachine.TestCase.settings = settings(
    max_examples=examples(80),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDatagramRoute = DatagramRouteMachine.TestCase


def test_the_route_is_taken_for_an_established_session() -> None:
    """The fast path is not vacuous: an established session's datagram has a route,
    for a one-byte and a longer Quarter Stream ID alike."""
    wt, _quic, _ = server_with_session()
    for data in (b"\x00hello", b"\x40\x00hello", b"\x80\x00\x00\x00hello"):
        assert wt.datagram_route(data) == (0, b"hello")
        assert feed(wt, qe.DatagramReceived(data)) == [DatagramReceived(0, b"hello")]
    assert wt.datagram_route(b"\x01hello") is None  # session 4: unknown, buffered (§4.7)
    feed(wt, qe.StreamDataReceived(0, b"", True))  # the session ends with its CONNECT stream
    assert wt.h3.datagram_route(b"\x00hello") is None  # RFC 9297 §2.1: dropped by HTTP/3
    assert wt.datagram_route(b"\x00hello") is None
    assert feed(wt, qe.DatagramReceived(b"\x00hello")) == []
