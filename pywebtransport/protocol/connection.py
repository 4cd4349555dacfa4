"""WebTransport over HTTP/3, Sans-I/O: sessions, streams, datagrams on an H3Connection.

Theory of operation
-------------------
:class:`WebTransportConnection` owns an :class:`~h3.connection.H3Connection` (built
with the SETTINGS of every draft we speak, :mod:`pywebtransport.protocol.h3config`). It is fed QUIC
events (:meth:`handle_event`), passes them to HTTP/3, and turns the HTTP/3 events into
WebTransport events (:mod:`pywebtransport.protocol.events`). One way out: the HTTP/3
events are drained with ``H3Connection.next_event`` as they are produced, and the
WebTransport events leave only through :meth:`next_event` (``handle_event`` returns
nothing); their queue exists only while it holds events (issue 10, idle memory).
``datagram_route`` is a query, not a way out: it tells the owner that a QUIC datagram
would only become a ``DatagramReceived`` for an established session, and changes nothing.
Commands (``connect``, ``accept``, ``open_stream``, ...) write through the public
H3/QUIC API; the caller then drains ``quic.datagrams_to_send``.

Draft selection (draft-16 §7.1, :mod:`pywebtransport.protocol.drafts`; the owned
:class:`~pywebtransport.protocol.negotiation.Negotiation` keeps the peer's SETTINGS and
answers from them): the newest
common draft whose requirements the peer's SETTINGS and transport parameters meet. The
client waits for the server's SETTINGS before it sends a CONNECT (§3.1; ``connect()``
before that only reserves the stream). The server parks CONNECT requests until the
client's SETTINGS arrive (§7.1), then picks per request among the drafts that take its
upgrade token; a request no draft fits is malformed (H3_MESSAGE_ERROR, §3.1). Flow
control (§5.1) is on when both sides announced a window; without it a draft-13/16
connection carries one session.

Routing. The CONNECT stream carries the session's capsules (RFC 9297 §3) inside DATA
frames; WebTransport streams carry a session ID in their header (§4.2, §4.3) and
datagrams a Quarter Stream ID (§4.5). A session ID that is not a client-initiated
bidirectional stream ID closes the connection with H3_ID_ERROR (§4). Streams and
datagrams for a session that is not established yet are buffered within the limits
of :class:`~pywebtransport.protocol.session.WebTransportConfiguration` (§4.7); an
excess stream is refused with WT_BUFFERED_STREAM_REJECTED, an excess datagram
dropped. Streams for a closed session are refused with WT_SESSION_GONE (§6); which
sessions are over is kept in a bounded record of the stream IDs on which no session
can start any more (:mod:`pywebtransport.protocol.ids`).
Trailers on a request stream (a header section without pseudo-header fields, RFC 9114
§4.1) answer nothing; with the end of the stream they end a session like a FIN.

Credit follows consumption: stream data is credited when the application calls
:meth:`consume_stream_data` (:mod:`pywebtransport.protocol.streams`); capsule bytes on
a CONNECT stream and bodies of requests we refuse are consumed here as they are
parsed or dropped (the capsule reader and the pre-``accept`` buffer are bounded).

Bounded state: ended sessions and streams leave every table (:meth:`table_sizes`
lists them); per-connection limits are the fields of
:class:`~pywebtransport.protocol.session.WebTransportConfiguration`.

Errors: protocol errors of the peer become the WebTransport/HTTP/3 error they call for
(a session abort, a stream refusal, an HTTP/3 connection error). Nothing raised while
handling an event escapes :meth:`handle_event`: an unexpected exception is a bug of
ours, and closes that connection with H3_INTERNAL_ERROR (logged once per connection).

Termination (§6): WT_CLOSE_SESSION then FIN, a bare FIN (code 0), a reset CONNECT
stream, or a protocol error we detect (:class:`SessionAbort`, turned into a reset of
the CONNECT stream in :meth:`_abort` only). In every case the session's streams are
reset and stopped with WT_SESSION_GONE and one ``SessionClosed`` is reported.

Error codes: the application uses 32-bit codes; they are mapped into the
WT_APPLICATION_ERROR range both ways (:mod:`pywebtransport.protocol.errors`, §4.4).

A data stream we opened is reset with RESET_STREAM_AT, its header as Reliable Size,
when the peer sent the reset_stream_at transport parameter (draft-16 §4.4), so the
header that names its session is never lost; otherwise with RESET_STREAM.

Not supported: capsule-based WebTransport (the HTTP/2-style variant).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Sequence

from h3 import events as he
from h3.capsules import (
    FLOW_CONTROL_CAPSULES,
    CapsuleType,
    decode_close_webtransport_session,
    encode_close_webtransport_session,
    encode_drain_webtransport_session,
)
from h3.connection import H3Configuration, H3Connection
from h3.errors import H3ErrorCode, H3StreamError
from pywebtransport.protocol import conn_flow
from pywebtransport.protocol import events as ev
from pywebtransport.protocol.conn_flow import sent
from pywebtransport.protocol.drafts import PROFILES, Draft, select_draft
from pywebtransport.protocol.errors import (
    SessionAbort,
    WebTransportError,
)
from pywebtransport.protocol.h3config import h3_configuration, shared_h3_configuration
from pywebtransport.protocol.ids import ClaimedIds
from pywebtransport.protocol.negotiation import Negotiation
from pywebtransport.protocol.session import (
    USABLE_STATES,
    WEBTRANSPORT_TOKENS,
    Headers,
    Session,
    SessionState,
    WebTransportConfiguration,
    WtStream,
    connect_request_headers,
    header_value,
    offered_protocols,
)
from pywebtransport.protocol.sfv import parse_string_item, serialize_string
from pywebtransport.protocol.streams import FlowControlBlocked, StreamsMixin
from quic import events as qe
from quic.connection import QuicConnection
from quic.errors import StreamResetError

__all__ = ["FlowControlBlocked", "WebTransportConnection", "h3_configuration"]

_EXPORTER_LABEL = b"EXPORTER-WebTransport"  # draft-16 §4.8
# capsules of the HTTP/2 mapping that draft-16 §5.4 forbids over HTTP/3
_WT_MAX_STREAM_DATA = 0x190B4D3E
_WT_STREAM_DATA_BLOCKED = 0x190B4D42
_SESSION_GONE = H3ErrorCode.WT_SESSION_GONE

logger = logging.getLogger("pywebtransport.protocol")


class WebTransportConnection(StreamsMixin):
    """WebTransport sessions over one HTTP/3 connection (client or server)."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_claimed",
        "_closing",
        "_early",
        "_events",
        "_final_sizes",
        "_flow_dirty",
        "_internal_error_logged",
        "_parked",
        "_sessions",
        "_stopped",
        "_streams",
        "config",
        "h3",
        "is_client",
        "negotiation",
        "quic",
    )

    def __init__(
        self,
        quic: QuicConnection,
        configuration: WebTransportConfiguration | None = None,
        h3_config: H3Configuration | None = None,
    ) -> None:
        self.config = config = configuration or WebTransportConfiguration()
        self.quic = quic
        self.is_client = quic.is_client
        if h3_config is None:
            h3_config = shared_h3_configuration(
                tuple(config.drafts),
                quic.is_client,
                config.max_sessions,
                tuple(config.flow_control_windows),
            )
        else:
            h3_config = h3_configuration(config, quic.is_client, h3_config)
        self.h3 = H3Connection(quic, h3_config)
        #: the peer's SETTINGS, the draft, flow control (pywebtransport.protocol.negotiation)
        self.negotiation = Negotiation(quic, config)
        # made by the first event, let go when drained (issue 10: ~760 B per idle connection)
        self._events: deque[ev.WebTransportEvent] | None = None
        self._sessions: dict[int, Session] = {}
        # IDs of ended sessions (and of client bidi streams that are no session): bounded
        self._claimed = ClaimedIds(config.max_claimed_session_ids)
        self._streams: dict[int, WtStream] = {}
        # streams waiting for their session (§4.7): session ID -> {stream ID: stream}
        self._early: dict[int, dict[int, WtStream]] = {}
        self._buffered_streams = 0
        # datagrams waiting for their session; a deque from the first one (idle memory)
        self._datagrams: deque[tuple[int, bytes]] | None = None
        self._datagram_bytes = 0
        # server: CONNECTs before SETTINGS; None while there are none (one object fewer
        # per idle connection for the garbage collector, issue 10)
        self._parked: list[he.HeadersReceived] | None = None
        self._final_sizes: dict[int, int] = {}  # stream -> final size of a peer reset
        # CONNECT streams after WT_CLOSE_SESSION, before FIN: left on FIN, data or reset;
        # each is an open QUIC stream, so their number is bounded by the QUIC stream limit
        # a dict as a set: 64 B empty, not 216 (idle memory)
        self._closing: dict[int, None] = {}
        self._flow_dirty: dict[int, None] = {}  # sessions whose credit may have moved
        # streams we stopped reading, until FIN/reset (a dict as a set: 64 B empty)
        self._stopped: dict[int, None] = {}
        self._internal_error_logged = False

    # ==================================================================================
    # input
    # ==================================================================================

    # draft-16 §5.6 session flow control: the capsules in, the credit updates out
    # (pywebtransport.protocol.conn_flow; methods of this class)
    _on_flow_capsule = conn_flow.on_flow_capsule
    _flush_flow_updates = conn_flow.flush_flow_updates

    def _emit(self, event: ev.WebTransportEvent) -> None:
        """Queue a WebTransport event (the queue is made on demand, see ``next_event``)."""
        events = self._events
        if events is None:
            events = self._events = deque()
        events.append(event)

    def next_event(self) -> ev.WebTransportEvent | None:
        events = self._events
        if not events:
            return None
        event = events.popleft()
        if not events:  # drained: an idle connection holds no queue (issue 10, memory)
            self._events = None
        return event

    def handle_event(self, event: qe.QuicEvent) -> None:
        """Feed one QUIC event; the WebTransport events it causes are drained with
        :meth:`next_event` (one way out). Never raises (see the module docstring)."""
        try:
            self._handle(event)
        except Exception as exc:  # a bug of ours, not bad input: close this connection
            self._internal_error(exc)

    def _internal_error(self, exc: Exception) -> None:
        self._final_sizes.clear()
        if not self._internal_error_logged:
            self._internal_error_logged = True
            logger.error(
                "WebTransport internal error; closing the connection (H3_INTERNAL_ERROR)",
                exc_info=exc,
            )
        with contextlib.suppress(Exception):
            self.h3.close(H3ErrorCode.H3_INTERNAL_ERROR, "internal error")

    def _handle(self, event: qe.QuicEvent) -> None:
        # the QUIC events are final classes: type tests, no isinstance misses per event
        if type(event) is qe.StreamReset:
            self._final_sizes[event.stream_id] = event.final_size
        self.h3.handle_event(event)
        while (h3_event := self.h3.next_event()) is not None:
            self._on_h3_event(h3_event)
        if type(event) is qe.ConnectionTerminated:
            self._on_connection_closed(event.error_code, event.reason_phrase)
        self._final_sizes.clear()  # read by _on_reset while this event is handled
        if self._flow_dirty:  # flush_flow_updates' own first test: per stream chunk
            self._flush_flow_updates()

    def _on_h3_event(self, event: he.H3Event) -> None:
        if type(event) is he.DatagramReceived:  # the per-datagram case first
            self._on_datagram(event.stream_id, event.data)
        elif isinstance(event, he.WebTransportStreamDataReceived):
            self._on_stream_data(event.stream_id, event.session_id, event.data, event.stream_ended)
        elif isinstance(event, he.DataReceived):
            if event.data:  # capsules are parsed (or dropped) right away: bounded buffers
                self.h3.consume_data(event.stream_id, len(event.data))
            self._on_connect_data(event.stream_id, event.data, event.stream_ended)
        elif isinstance(event, he.DatagramReceived):
            self._on_datagram(event.stream_id, event.data)
        elif isinstance(event, he.HeadersReceived):
            self._on_headers(event)
        elif isinstance(event, he.RequestStreamReset):
            self._on_reset(event.stream_id, event.error_code)
        elif isinstance(event, he.StopSendingReceived):
            self._on_stop_sending(event.stream_id, event.error_code)
        elif isinstance(event, he.SettingsReceived):
            self._on_settings(event.settings)
        elif isinstance(event, he.GoAwayReceived):
            for session in self._sessions.values():  # draft-16 §4.6
                if session.state is SessionState.ESTABLISHED:
                    self._emit(ev.SessionDraining(session.session_id))

    def _on_headers(self, event: he.HeadersReceived) -> None:
        # a header section without the request's/response's pseudo-header is trailers
        # (RFC 9114 §4.1, §4.3; HTTP/3 validated them): nothing to answer; their end of
        # stream ends a session's CONNECT stream like a FIN (draft-16 §6)
        if header_value(event.headers, b":status" if self.is_client else b":method") is None:
            if event.stream_ended and event.stream_id in self._sessions:
                self._on_connect_data(event.stream_id, b"", True)
            return
        if self.is_client:
            self._on_response(event)
        else:
            self._on_request(event)

    # -- SETTINGS and draft selection (draft-16 §3.1, §7.1) --------------------------------

    @property
    def peer_settings(self) -> dict[int, int] | None:
        """The peer's HTTP/3 SETTINGS, None before they arrived."""
        return self.negotiation.peer_settings

    @property
    def draft(self) -> Draft | None:
        """Client: the draft chosen from the server's SETTINGS (None before / if none)."""
        return self.negotiation.draft

    @property
    def flow_control(self) -> bool:
        """Both sides announced draft-16 flow control (§5.1), known with the SETTINGS."""
        return self.negotiation.flow_control

    def flow_control_for(self, draft: Draft) -> bool:
        """Both endpoints declared flow control for ``draft`` (draft-16 §5.1, drafts.py)."""
        return self.negotiation.flow_control_for(draft)

    def _on_settings(self, settings: dict[int, int]) -> None:
        self.negotiation.on_settings(settings, self.h3.peer_settings)
        if self.is_client:
            for session in list(self._sessions.values()):
                if session.state is SessionState.PENDING:
                    self._send_connect(session)
            if self.draft is None and self.config.close_on_requirements_not_met:
                self.h3.close(H3ErrorCode.WT_REQUIREMENTS_NOT_MET, "no common WebTransport draft")
        else:
            parked, self._parked = self._parked, None
            for request in parked or ():
                self._on_request(request)

    def _session_limit(self, draft: Draft) -> int:
        return self.negotiation.session_limit(draft)

    def _active_sessions(self) -> int:
        return sum(
            1
            for s in self._sessions.values()
            if s.state
            in (SessionState.CONNECTING, SessionState.REQUESTED, SessionState.ESTABLISHED)
        )

    # ==================================================================================
    # client: connect
    # ==================================================================================

    def connect(
        self,
        authority: str,
        path: str,
        headers: Headers | None = None,
        protocols: Sequence[str] = (),
    ) -> int:
        """Start a session; returns its session ID. The CONNECT goes out once the
        server's SETTINGS have arrived (draft-16 §3.1)."""
        if not self.is_client:
            raise WebTransportError("only a client connects")
        try:
            session_id = self.h3.get_next_available_stream_id()
        except Exception as exc:  # GOAWAY received or the QUIC stream limit
            raise WebTransportError(str(exc)) from exc
        session = Session(session_id, SessionState.PENDING, None)
        session.authority, session.path = authority, path
        session.headers = tuple(headers or ())
        session.protocols = tuple(protocols)
        self._sessions[session_id] = session
        self._claimed.add(session_id)
        if self.peer_settings is not None:
            self._send_connect(session)
        return session_id

    def _send_connect(self, session: Session) -> None:
        draft = self.draft
        sid = session.session_id
        if draft is None:
            self._refuse_connect(session, "the server does not support WebTransport")
            return
        if self._active_sessions() >= self._session_limit(draft):
            self._refuse_connect(session, "session limit reached")
            return
        session.draft = draft
        session.flow = self.negotiation.new_flow(draft)
        headers = connect_request_headers(
            draft, session.authority, session.path, session.protocols, session.headers
        )
        if not sent(lambda: self.h3.send_headers(sid, headers)):
            self._refuse_connect(session, "the CONNECT request cannot be sent")
            return
        session.state = SessionState.CONNECTING

    def _refuse_connect(self, session: Session, reason: str) -> None:
        self.quic.reset_stream(session.session_id, H3ErrorCode.H3_REQUEST_CANCELLED)
        self._finish_session(session, ev.SessionRejected(session.session_id, 0, [], reason))

    def _on_response(self, event: he.HeadersReceived) -> None:
        session = self._sessions.get(event.stream_id)
        if session is None or session.state is not SessionState.CONNECTING:
            return
        try:
            status = int(header_value(event.headers, b":status") or b"0")
        except ValueError:
            status = 0
        if 100 <= status < 200:
            return  # interim response
        sid = session.session_id
        if not 200 <= status < 300:
            # the rest of the response is read and dropped (see _on_request)
            self._send_fin(sid)
            session.fin_sent = True
            self._finish_session(session, ev.SessionRejected(sid, status, event.headers))
            return
        assert session.draft is not None
        protocol = None
        if PROFILES[session.draft].protocol_negotiation:
            raw = header_value(event.headers, b"wt-protocol")
            protocol = parse_string_item(raw) if raw is not None else None
            if protocol is not None and protocol not in session.protocols:
                session.state = SessionState.ESTABLISHED
                self._abort(session, H3ErrorCode.WT_ALPN_ERROR, "WT-Protocol not offered")
                return  # draft-16 §3.3
        session.state = SessionState.ESTABLISHED
        self._emit(ev.SessionEstablished(sid, event.headers, session.draft, protocol))
        self._release_buffered(session)
        if event.stream_ended:
            self._on_connect_data(sid, b"", True)

    # ==================================================================================
    # server: requests, accept, reject
    # ==================================================================================

    def _on_request(self, event: he.HeadersReceived) -> None:
        sid = event.stream_id
        if sid in self._sessions:
            return  # HTTP/3 allows one request per stream: cannot happen
        if sid in self._claimed:
            # a request on a stream ID the bounded record already counts as over
            self._refuse_stream_pair(sid, H3ErrorCode.H3_REQUEST_REJECTED)
            return
        headers = event.headers
        method = header_value(headers, b":method")
        token = header_value(headers, b":protocol")
        if method != b"CONNECT" or token not in WEBTRANSPORT_TOKENS:
            self._claimed.add(sid)  # answered once; its trailers and body are ignored
            self._reject_buffered(sid)  # streams that waited for a session here: none
            status = str(self.config.plain_request_status).encode()
            response = [(b":status", status)]
            # The rest of the request is read and dropped (its bytes are credited as
            # they come) rather than stopped: aborting the read is only a MAY (RFC 9114
            # §4.1.2), and HTTP/3 would take a FIN after a discarded partial frame for a
            # truncated frame (H3_FRAME_ERROR on the whole connection).
            if not sent(lambda: self.h3.send_headers(sid, response, end_stream=True)):
                self._refuse_stream_pair(sid, H3ErrorCode.H3_REQUEST_REJECTED)
            return
        if self.peer_settings is None:
            parked = self._parked
            if parked is None:
                parked = self._parked = []
            if len(parked) >= self.config.max_sessions:
                self._refuse_stream_pair(sid, H3ErrorCode.H3_REQUEST_REJECTED)  # §5.2
            else:
                parked.append(event)  # draft-16 §7.1: wait for the client's SETTINGS
            return
        # the newest common draft by SETTINGS: the one the client chose from ours (§7.1);
        # its token, and the transport parameters it requires (§3.1), or malformed
        draft = select_draft(self.config.drafts, self.peer_settings, peer_is_server=False)
        if (
            draft is None
            or token not in PROFILES[draft].tokens
            or not self.negotiation.transport_meets(draft)
            or event.stream_ended
        ):  # draft-16 §3.1: the session is malformed (RFC 9114 §4.1.2)
            self._refuse_stream_pair(sid, H3ErrorCode.H3_MESSAGE_ERROR)
            self._reject_buffered(sid)
            return
        if self._active_sessions() >= self._session_limit(draft):
            self._refuse_stream_pair(sid, H3ErrorCode.H3_REQUEST_REJECTED)  # §5.2
            self._reject_buffered(sid)
            return
        session = Session(sid, SessionState.REQUESTED, draft)
        session.authority = (header_value(headers, b":authority") or b"").decode("latin-1")
        session.path = (header_value(headers, b":path") or b"").decode("latin-1")
        if PROFILES[draft].protocol_negotiation:
            session.protocols = offered_protocols(headers)
        session.flow = self.negotiation.new_flow(draft)
        self._sessions[sid] = session
        self._claimed.add(sid)
        self._emit(
            ev.SessionRequested(
                sid, session.authority, session.path, headers, draft, session.protocols
            )
        )

    def _refuse_stream_pair(self, stream_id: int, code: int) -> None:
        self.h3.stop_stream(stream_id, code)
        self.quic.reset_stream(stream_id, code)
        self._claimed.add(stream_id)

    def accept(
        self, session_id: int, headers: Headers | None = None, protocol: str | None = None
    ) -> None:
        """Server: accept a requested session with a 200 response (draft-16 §3.2)."""
        session = self._session(session_id, SessionState.REQUESTED)
        assert session.draft is not None
        profile = PROFILES[session.draft]
        response: Headers = [(b":status", b"200"), *profile.response_headers]
        if protocol is not None:
            if protocol not in session.protocols:
                raise WebTransportError(f"protocol {protocol!r} was not offered")  # §3.3
            response.append((b"wt-protocol", serialize_string(protocol).encode()))
        response.extend(headers or [])
        if not sent(lambda: self.h3.send_headers(session_id, response)):
            self._refuse_stream_pair(session_id, H3ErrorCode.H3_REQUEST_REJECTED)
            self._finish_session(session, ev.SessionClosed(session_id, 0, "", False))
            raise WebTransportError(f"session {session_id}: the response cannot be sent")
        session.state = SessionState.ESTABLISHED
        pending, session.pending_data = bytes(session.pending_data), bytearray()
        fin, session.pending_fin = session.pending_fin, False
        if pending or fin:
            self._on_connect_data(session_id, pending, fin)
        if session.state is SessionState.ESTABLISHED:
            self._release_buffered(session)
        self._flush_flow_updates()

    def reject(self, session_id: int, status: int = 404, headers: Headers | None = None) -> None:
        """Server: refuse a requested session with a non-2xx status (draft-16 §3.2);
        streams buffered for it are reset with WT_BUFFERED_STREAM_REJECTED."""
        if 200 <= status < 300 or not 100 <= status <= 999:
            raise ValueError(f"not a rejection status: {status}")
        session = self._session(session_id, SessionState.REQUESTED)
        response: Headers = [(b":status", str(status).encode()), *(headers or [])]
        session.fin_sent = True
        if not sent(lambda: self.h3.send_headers(session_id, response, end_stream=True)):
            self._refuse_stream_pair(session_id, H3ErrorCode.H3_REQUEST_REJECTED)
        session.pending_data.clear()  # what follows is read and dropped (_on_request)
        self._finish_session(session, None)

    # ==================================================================================
    # the CONNECT stream: capsules and termination (draft-16 §6)
    # ==================================================================================

    def _on_connect_data(self, sid: int, data: bytes, fin: bool) -> None:
        session = self._sessions.get(sid)
        if session is None:
            if sid in self._closing:
                if data:
                    self._after_close_data(sid)
                elif fin:
                    self._closing.pop(sid, None)
            return
        state = session.state
        if state is SessionState.REQUESTED:
            if len(session.pending_data) + len(data) > self.config.max_buffered_capsule_bytes:
                self._abort(session, H3ErrorCode.H3_EXCESSIVE_LOAD, "too many early capsules")
            else:
                session.pending_data += data  # §3.2: not processed before accept
                session.pending_fin = session.pending_fin or fin
            return
        if state is not SessionState.ESTABLISHED:
            return
        try:
            capsules = session.capsules.feed(data, fin)
            for index, (capsule_type, value) in enumerate(capsules):
                self._on_capsule(session, capsule_type, value)
                if session.close_received:
                    if index + 1 < len(capsules) or session.capsules.buffered:
                        self._after_close_data(sid)
                    elif not fin:
                        self._closing[sid] = None
                    return
        except (H3StreamError, SessionAbort) as exc:
            self._abort(session, exc.error_code, exc.reason)
            return
        if fin:
            session.fin_received = True
            self._close_from_peer(session, 0, "")

    def _after_close_data(self, sid: int) -> None:
        """Stream data after WT_CLOSE_SESSION: reset with H3_MESSAGE_ERROR (§6)."""
        self._closing.pop(sid, None)
        self.h3.stop_stream(sid, H3ErrorCode.H3_MESSAGE_ERROR)
        self.quic.reset_stream(sid, H3ErrorCode.H3_MESSAGE_ERROR)

    def _on_capsule(self, session: Session, capsule_type: int, value: bytes) -> None:
        sid = session.session_id
        if self.h3.qlog is not None:  # http:capsule_parsed (h3.qlog)
            self.h3.qlog.capsule_parsed(sid, capsule_type, value)
        if capsule_type == CapsuleType.CLOSE_WEBTRANSPORT_SESSION:
            code, reason = decode_close_webtransport_session(value)
            session.close_received = True
            self._close_from_peer(session, code, reason)
        elif capsule_type == CapsuleType.DRAIN_WEBTRANSPORT_SESSION:
            self._emit(ev.SessionDraining(sid))
        elif capsule_type == CapsuleType.DATAGRAM:
            self._emit(ev.DatagramReceived(sid, value))  # RFC 9297 §3.5
        elif capsule_type in FLOW_CONTROL_CAPSULES:
            if session.flow is not None:  # else ignored (draft-16 §5.1)
                self._on_flow_capsule(session, session.flow, capsule_type, value)
        elif (
            capsule_type in (_WT_MAX_STREAM_DATA, _WT_STREAM_DATA_BLOCKED)
            and session.draft is not None
            and PROFILES[session.draft].flow_control
        ):  # draft-16 §5.4: a session error
            raise SessionAbort(H3ErrorCode.WT_FLOW_CONTROL_ERROR, "forbidden capsule")
        # unknown and reserved capsule types are skipped (RFC 9297 §3.2)

    def _close_from_peer(self, session: Session, code: int, reason: str) -> None:
        """WT_CLOSE_SESSION or FIN received: answer with our FIN (draft-16 §6)."""
        if session.state is SessionState.CLOSED:
            return
        if not session.fin_sent:
            self._send_fin(session.session_id)
            session.fin_sent = True
        self._finish_session(session, ev.SessionClosed(session.session_id, code, reason, True))

    def _send_fin(self, stream_id: int) -> None:
        # already ended or reset below us: nothing left to close
        with contextlib.suppress(ValueError, RuntimeError, StreamResetError):
            self.quic.send_stream_data(stream_id, b"", True)

    def close_session(self, session_id: int, code: int = 0, reason: str = "") -> None:
        """Close a session: WT_CLOSE_SESSION then FIN (draft-16 §6). A session still
        waiting for its response is cancelled instead. Reports SessionClosed."""
        session = self._sessions.get(session_id)
        if session is None or session.state is SessionState.CLOSED:
            raise WebTransportError(f"no open session {session_id}")
        if session.state is SessionState.REQUESTED:
            raise WebTransportError("reject() a session that was not accepted")
        if session.state is not SessionState.ESTABLISHED:
            self.quic.reset_stream(session_id, H3ErrorCode.H3_REQUEST_CANCELLED)
            self.h3.stop_stream(session_id, H3ErrorCode.H3_REQUEST_CANCELLED)
        elif not session.fin_sent:
            capsule = encode_close_webtransport_session(code, reason)
            session.fin_sent = True
            if not sent(lambda: self._send_capsules(session_id, capsule, end_stream=True)):
                self.quic.reset_stream(session_id, _SESSION_GONE)  # the peer left already
        self._finish_session(session, ev.SessionClosed(session_id, code, reason, False))

    def drain_session(self, session_id: int) -> bool:
        """Ask the peer to wind the session down (WT_DRAIN_SESSION, draft-16 §4.6);
        False for draft-02, which has no such capsule."""
        session = self._session(session_id, SessionState.ESTABLISHED)
        assert session.draft is not None
        if not PROFILES[session.draft].drain:
            return False
        capsule = encode_drain_webtransport_session()
        return sent(lambda: self._send_capsules(session_id, capsule))

    def _abort(self, session: Session, code: int, reason: str) -> None:
        """End a session on a protocol error: reset and stop its CONNECT stream."""
        sid = session.session_id
        self.h3.stop_stream(sid, code)
        self.quic.reset_stream(sid, code)
        session.fin_sent = True
        event: ev.WebTransportEvent = ev.SessionClosed(sid, 0, reason, False, code)
        if session.state is SessionState.CONNECTING:
            event = ev.SessionRejected(sid, 0, [], reason)
        self._finish_session(session, event)

    def _finish_session(self, session: Session, event: ev.WebTransportEvent | None) -> None:
        """Terminate ``session``: reset its streams with WT_SESSION_GONE (§6)."""
        sid = session.session_id
        session.state = SessionState.CLOSED
        self._claimed.add(sid)
        del self._sessions[sid]
        self._flow_dirty.pop(sid, None)
        for stream_id in sorted(session.streams):
            stream = self._streams.pop(stream_id, None)
            if stream is not None:
                self._stop_stream(stream, _SESSION_GONE)
        session.streams.clear()
        self._reject_buffered(sid)
        if event is not None:
            self._emit(event)

    def _on_connection_closed(self, code: int, reason: str) -> None:
        for session in list(self._sessions.values()):
            sid = session.session_id
            event: ev.WebTransportEvent
            if session.state in (SessionState.PENDING, SessionState.CONNECTING):
                event = ev.SessionRejected(sid, 0, [], reason or "connection closed")
            else:
                event = ev.SessionClosed(sid, 0, reason, True, code)
            session.state = SessionState.CLOSED
            self._claimed.add(sid)
            del self._sessions[sid]
            self._emit(event)
        # the connection is gone: every table empties (the QUIC state goes with it)
        self._streams.clear()
        self._early.clear()
        self._buffered_streams = 0
        self._datagrams = None
        self._datagram_bytes = 0
        self._parked = None
        self._closing.clear()
        self._flow_dirty.clear()
        self._stopped.clear()

    # ==================================================================================
    # helpers
    # ==================================================================================

    def export_keying_material(
        self, session_id: int, label: bytes, context: bytes, length: int
    ) -> bytes:
        """A TLS exporter separated per session (draft-16 §4.8)."""
        if session_id not in self._sessions:
            raise WebTransportError(f"no session {session_id}")
        if not 0 < len(label) <= 255 or len(context) > 255:
            raise ValueError("exporter label must be 1..255 bytes and context at most 255")
        wt_context = (
            session_id.to_bytes(8, "big")
            + bytes([len(label)])
            + label
            + bytes([len(context)])
            + context
        )
        return self.quic.export_keying_material(_EXPORTER_LABEL, wt_context, length)

    def session_state(self, session_id: int) -> SessionState:
        session = self._sessions.get(session_id)
        if session is not None:
            return session.state
        if session_id in self._claimed:
            return SessionState.CLOSED
        raise WebTransportError(f"no session {session_id}")

    def session_draft(self, session_id: int) -> Draft | None:
        session = self._sessions.get(session_id)
        return None if session is None else session.draft

    def _session(self, session_id: int, state: SessionState) -> Session:
        session = self._sessions.get(session_id)
        if session is None or session.state is not state:
            raise WebTransportError(f"session {session_id} is not {state.value}")
        return session

    def _usable(self, session_id: int) -> Session:
        session = self._sessions.get(session_id)
        if session is None or session.state not in USABLE_STATES:  # usable: per datagram
            raise WebTransportError(f"session {session_id} is not open")
        return session

    def send_goaway(self) -> None:
        """Graceful shutdown of the connection: HTTP/3 GOAWAY (RFC 9114 §5.2), which
        asks the peer to end its sessions (draft-16 §4.6)."""
        self.h3.send_goaway()

    def table_sizes(self) -> dict[str, int]:
        """The size of every table this connection keeps: all 0 once its sessions and
        streams ended (``claimed_ids`` stays below ``max_claimed_session_ids``)."""
        return {
            "sessions": len(self._sessions),
            "session_streams": sum(len(s.streams) for s in self._sessions.values()),
            "streams": len(self._streams),
            "early_streams": self._buffered_streams,
            "early_sessions": len(self._early),
            "early_datagrams": len(self._datagrams) if self._datagrams else 0,
            "early_datagram_bytes": self._datagram_bytes,
            "parked_requests": len(self._parked or ()),
            "closing": len(self._closing),
            "stopped": len(self._stopped),
            "final_sizes": len(self._final_sizes),
            "flow_dirty": len(self._flow_dirty),
            "events": len(self._events or ()),
            "claimed_ids": len(self._claimed),
        }
