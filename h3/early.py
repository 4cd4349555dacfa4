"""Server: what happens to HTTP/3 requests received in 0-RTT (RFC 8470, RFC 9114 §10.9).

Theory of operation
-------------------
0-RTT data can be replayed by an attacker (RFC 9001 §9.2, RFC 9846 §8): the anti-replay
memory of the TLS layer (``quic.tls.antireplay``) admits a ticket's early data once per
server, but not across servers or restarts. RFC 9114 §10.9 requires the mitigations of
RFC 8470 for HTTP/3. The QUIC layer marks the stream bytes it delivered before the
handshake completed (:attr:`quic.events.StreamDataReceived.early_data`: they came in
0-RTT packets, RFC 9001 §5.7); :class:`EarlyRequests` is the component of
:class:`~h3.connection.H3Connection` that applies the configured policy
(``H3Configuration.early_data_policy``) to a request whose header section came, in whole
or in part, in early data — or that carries ``Early-Data: 1``, added by an intermediary
that forwarded it from its own early data (RFC 8470 §5.1):

* ``"reject-unsafe"`` (the default): a request with a safe method (GET, HEAD, OPTIONS,
  TRACE: RFC 9110 §9.2.1) reaches the application; any other is answered
  ``425 Too Early`` (RFC 8470 §5.2) without reaching it, and if its body is still
  coming the server stops reading it with STOP_SENDING(H3_NO_ERROR) (RFC 9114 §4.1.1:
  a complete response before the request is complete). The client retries after the
  handshake (RFC 8470 §5.2; :class:`h3.aio.H3Client` does, once).
* ``"defer"``: every request received in 0-RTT is held, events and body, until the
  handshake completes, then delivered in order (RFC 8470 §3: "delay the processing of
  early data until after the handshake completes"). A replayed flight never completes
  a handshake, so nothing it carries reaches the application. Held state is bounded
  (RFC 9114 §10.5): at most ``max_early_requests_held`` requests and
  ``max_early_bytes_held`` body bytes; a request beyond the first bound, or the
  largest one held when the second is exceeded, is answered 425
  (it came in early data, so the client can retry it: RFC 8470 §5.2). A request marked
  ``Early-Data: 1`` by an intermediary is not helped by our handshake: it is treated as
  under ``"reject-unsafe"``.
* ``"accept-all"``: every request reaches the application, which decides.

Under every policy a request delivered from early data carries
:attr:`h3.events.HeadersReceived.early_data` (the application may still answer 425, RFC
8470 §5.2). CONNECT, extended CONNECT (WebTransport) included, is not safe (RFC 9110
§9.2.1): clients do not initiate WebTransport sessions in 0-RTT (draft-ietf-webtrans-
http3-16 §3.2, "the CONNECT method is not considered safe (see Section 10.9 of
HTTP3)"), so a CONNECT received in 0-RTT is answered 425 under ``"accept-all"`` too, and
held like any request under ``"defer"``.

The policy sits on the way out of the HTTP/3 connection (:meth:`EarlyRequests.
next_event`, called by ``H3Connection.next_event``): the protocol state machine is not
touched, only what the application sees. Body bytes of a refused or dropped request are
credited back to QUIC here (nobody else will read them). Bounded state: ``_early`` holds
request streams with early bytes whose header section is not decided yet (it leaves on
the decision or on a reset), ``_settled`` those decided whose body is still being read
(they leave when HTTP/3 closes the stream, :meth:`EarlyRequests.forget`), ``_held`` the
deferred requests (bounded as above, emptied
when the handshake completes), ``_dropped`` the streams refused whose queued events are
still to be skipped (emptied whenever the event queue is).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Literal, Protocol, TypeAlias

from h3.errors import H3ErrorCode
from h3.events import DataReceived, H3Event, Headers, HeadersReceived, RequestStreamReset
from h3.events import WebTransportStreamDataReceived as _WtData
from quic import events as qe

__all__ = [
    "EARLY_DATA_POLICIES",
    "SAFE_METHODS",
    "TOO_EARLY",
    "EarlyDataPolicy",
    "EarlyRequests",
]

logger = logging.getLogger("h3")

EarlyDataPolicy: TypeAlias = Literal["reject-unsafe", "defer", "accept-all"]
EARLY_DATA_POLICIES: tuple[EarlyDataPolicy, ...] = ("reject-unsafe", "defer", "accept-all")
#: RFC 9110 §9.2.1: the safe methods.
SAFE_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
#: RFC 8470 §5.2: 425 (Too Early).
TOO_EARLY = 425
_TOO_EARLY_HEAD: Headers = [(b":status", b"425"), (b"content-length", b"0")]


class _Connection(Protocol):
    """What the policy needs of :class:`~h3.connection.H3Connection`."""

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool = False) -> None: ...

    def stop_stream(self, stream_id: int, error_code: int) -> None: ...

    def reset_stream(self, stream_id: int, error_code: int) -> None: ...

    def consume_data(self, stream_id: int, nbytes: int) -> object: ...


class _Held:
    __slots__ = ("events", "nbytes")

    def __init__(self, first: H3Event) -> None:
        self.events: list[H3Event] = [first]
        self.nbytes = 0


def _method(headers: Headers) -> bytes | None:
    for name, value in headers:
        if name == b":method":
            return value
    return None


class EarlyRequests:
    """The 0-RTT request policy of one server connection (see the module docstring)."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_dropped",
        "_early",
        "_held",
        "_held_bytes",
        "_is_closed",
        "_ready",
        "_settled",
        "deferred",
        "handshake_complete",
        "is_client",
        "max_held_bytes",
        "max_held_requests",
        "passes_through",
        "policy",
        "refused",
    )

    def __init__(
        self,
        is_client: bool,
        policy: EarlyDataPolicy = "reject-unsafe",
        max_held_requests: int = 16,
        max_held_bytes: int = 256 * 1024,
        is_closed: Callable[[int], bool] = lambda stream_id: False,
    ) -> None:
        if policy not in EARLY_DATA_POLICIES:
            raise ValueError(f"early_data_policy must be one of {EARLY_DATA_POLICIES}")
        self.is_client = is_client
        self.policy: EarlyDataPolicy = policy
        self.max_held_requests = max_held_requests
        self.max_held_bytes = max_held_bytes
        self._is_closed = is_closed  # HTTP/3 is done with the stream's receive side
        self.handshake_complete = is_client  # a client receives no early data
        # sets as dicts (64 B empty, not 216: every connection has them, few use them)
        self._early: dict[int, None] = {}
        self._held: dict[int, _Held] = {}
        self._held_bytes = 0
        # released held events (a deque from the first release: no idle memory)
        self._ready: deque[H3Event] | None = None
        self._dropped: dict[int, None] = {}
        self._settled: dict[int, None] = {}  # early request streams decided, being read
        #: Nothing released waits and no queued event is to be skipped: the next event
        #: queued is the next out (:meth:`H3Connection.datagram_route`, per datagram).
        #: An attribute kept with ``_ready`` and ``_dropped``.
        self.passes_through = True
        #: requests answered 425 / held until the handshake (counters, for tests and
        #: monitoring)
        self.refused = 0
        self.deferred = 0

    def state_sizes(self) -> dict[str, int]:
        return {
            "early_streams": len(self._early) + len(self._settled),
            "early_held_requests": len(self._held),
            "early_held_bytes": self._held_bytes,
            "early_ready": len(self._ready) if self._ready else 0,
        }

    # -- input: the QUIC events, before HTTP/3 handles them ----------------------------

    def on_quic_event(self, event: qe.QuicEvent) -> None:
        if self.is_client:
            return
        if isinstance(event, qe.StreamDataReceived):
            sid = event.stream_id
            if (
                event.early_data
                and not sid & 3  # a request stream (RFC 9114 §6.1)
                and sid not in self._settled
                and not self._is_closed(sid)
            ):
                self._early[sid] = None
        elif isinstance(event, qe.HandshakeCompleted):
            self.handshake_complete = True
            for held in self._held.values():
                if self._ready is None:
                    self._ready = deque()
                self._ready.extend(held.events)
                self.passes_through = False
            self._held.clear()
            self._held_bytes = 0

    def forget(self, stream_id: int) -> None:
        """HTTP/3 is done with the stream's receive side (it left every table)."""
        self._settled.pop(stream_id, None)

    # -- output: the HTTP/3 events, on their way to the application --------------------

    def next_event(self, events: deque[H3Event] | None, conn: _Connection) -> H3Event | None:
        """The next event for the application: ``events`` filtered by the policy."""
        while True:
            ready = self._ready
            if ready:
                event = ready.popleft()
                if not ready:
                    self.passes_through = not self._dropped
                return event
            if not events:
                if self._dropped:
                    self._dropped.clear()  # nothing queued is left to skip
                    self.passes_through = True
                return None
            event = events.popleft()
            if self.is_client or not isinstance(
                event, (HeadersReceived, DataReceived, RequestStreamReset, _WtData)
            ):
                return event
            if type(event) is _WtData and not (self._dropped or self._held or self._early):
                return event  # what _filter returns then: per WebTransport stream chunk
            passed = self._filter(event, conn)
            if passed is not None:
                return passed

    def _filter(
        self,
        event: HeadersReceived | DataReceived | RequestStreamReset | _WtData,
        conn: _Connection,
    ) -> H3Event | None:
        sid = event.stream_id
        if sid in self._dropped:
            if isinstance(event, DataReceived):
                conn.consume_data(sid, len(event.data))
            return None
        held = self._held.get(sid)
        if held is not None:
            self._hold_more(held, event, conn)
            return None
        if isinstance(event, HeadersReceived):
            if sid in self._early and _method(event.headers) is not None:  # not trailers
                self._early.pop(sid, None)
                if not self._is_closed(sid):  # more of it may come: decided already
                    self._settled[sid] = None
                return self._decide(event, conn, from_zero_rtt=True)
            if (b"early-data", b"1") in event.headers and _method(event.headers) is not None:
                return self._decide(event, conn, from_zero_rtt=False)  # RFC 8470 §5.1
        elif not isinstance(event, DataReceived):
            self._early.pop(sid, None)  # reset, or a WebTransport stream: no request head
        return event

    def _decide(
        self, event: HeadersReceived, conn: _Connection, *, from_zero_rtt: bool
    ) -> H3Event | None:
        method = _method(event.headers)
        marked = replace(event, early_data=True)
        policy = self.policy
        if policy == "defer" and from_zero_rtt:
            if self.handshake_complete:
                return marked  # drained after the handshake completed: no longer held
            if len(self._held) >= self.max_held_requests:
                self._refuse(event.stream_id, event.stream_ended, conn)
                return None
            self._held[event.stream_id] = _Held(marked)
            self.deferred += 1
            return None
        if method == b"CONNECT":  # draft-ietf-webtrans-http3-16 §3.2, RFC 9114 §10.9
            self._refuse(event.stream_id, event.stream_ended, conn)
            return None
        if policy == "accept-all" or method in SAFE_METHODS:
            return marked
        self._refuse(event.stream_id, event.stream_ended, conn)
        return None

    def _hold_more(
        self,
        held: _Held,
        event: HeadersReceived | DataReceived | RequestStreamReset | _WtData,
        conn: _Connection,
    ) -> None:
        sid = event.stream_id
        if isinstance(event, RequestStreamReset):
            self._drop_held(sid, conn)  # the application never saw this request
            self._dropped[sid] = None
            self.passes_through = False
            return
        held.events.append(event)
        if isinstance(event, DataReceived):
            held.nbytes += len(event.data)
            self._held_bytes += len(event.data)
            while self._held_bytes > self.max_held_bytes:  # refuse the largest one
                largest = max(self._held, key=lambda key: self._held[key].nbytes)
                last = self._held[largest].events[-1]
                ended = isinstance(last, (DataReceived, HeadersReceived)) and last.stream_ended
                self._drop_held(largest, conn)
                self._refuse(largest, ended, conn)

    def _drop_held(self, sid: int, conn: _Connection) -> None:
        held = self._held.pop(sid)
        self._held_bytes -= held.nbytes
        if held.nbytes:
            conn.consume_data(sid, held.nbytes)

    def _refuse(self, sid: int, ended: bool, conn: _Connection) -> None:
        """RFC 8470 §5.2: 425 (Too Early); stop reading a body still coming (RFC 9114
        §4.1.1 allows STOP_SENDING with H3_NO_ERROR after a complete response)."""
        self.refused += 1
        self._dropped[sid] = None
        self.passes_through = False
        try:
            conn.send_headers(sid, list(_TOO_EARLY_HEAD), end_stream=True)
            if not ended:
                conn.stop_stream(sid, H3ErrorCode.H3_NO_ERROR)
        except Exception as exc:  # the stream is gone already (reset by the peer)
            logger.debug("stream %d: cannot answer 425: %s", sid, exc)
            with contextlib.suppress(Exception):
                conn.reset_stream(sid, H3ErrorCode.H3_REQUEST_REJECTED)
