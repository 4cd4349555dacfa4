"""The HTTP/3 connection over a QUIC connection (RFC 9114, RFC 9204, RFC 9220, RFC 9297).

Theory of operation
-------------------
:class:`H3Connection` is Sans-I/O and sits on the *public* API of
:class:`quic.connection.QuicConnection`: it opens streams and writes to them, and it is
fed the QUIC events (:meth:`H3Connection.handle_event`), turning them into HTTP/3
events (:mod:`h3.events`) that :meth:`H3Connection.next_event` hands out.

Streams (RFC 9114 §6):

* each side opens one control stream (first frame SETTINGS, §6.2.1), one QPACK encoder
  and one QPACK decoder stream (RFC 9204 §4.2) as soon as :meth:`initialize` runs;
  closing any of them is H3_CLOSED_CRITICAL_STREAM, a second one of a kind
  H3_STREAM_CREATION_ERROR. These connection-wide streams, ours and the peer's, and the
  rules of the control stream's frames belong to :class:`~h3.control.ControlStreams`
  (``self.control``). Reserved and unknown stream types are ignored with
  STOP_SENDING (§6.2.3, §9); push streams are refused (see Push below);
* request streams (client-initiated bidirectional) carry HEADERS, DATA*, optional
  trailing HEADERS (§4.1); anything else, or frames out of that order, is
  H3_FRAME_UNEXPECTED; a malformed message is a stream error H3_MESSAGE_ERROR;
* WebTransport streams (bidirectional signal 0x41, unidirectional type 0x54) are
  reported as :class:`~h3.events.WebTransportStreamDataReceived` when WebTransport is
  enabled; the session logic lives above this layer.

Header sections go through QPACK (:mod:`h3.qpack`); a section that is blocked on the
dynamic table parks the stream, and the frames behind it wait (in
:class:`~h3.stream_state.Parking`, within per-stream and per-connection limits) until
the encoder stream unblocks it (RFC 9204 §2.1.2).

One way out. :meth:`H3Connection.handle_event` returns nothing: the HTTP/3 events it
causes are queued and leave only through :meth:`H3Connection.next_event`, which the
owner drains after each call. Nothing else is queued for anyone. The queue itself is
made by the first event and let go once drained, so an idle connection holds none
(issue 10, memory per idle session). ``datagram_route`` is a query, not a way out: a
datagram whose only effect would be its event may be taken from its answer instead.

HTTP datagrams (RFC 9297) are the owned :class:`~h3.conn_datagrams.H3Datagrams`
(``self.datagrams``): sending, receiving (H3_DATAGRAM_ERROR, closed streams) and the
per-datagram shortcut behind ``datagram_route``; their events leave through the same
queue.

Bounded state. A stream leaves every table (:class:`~h3.stream_state.StreamTable`,
``_head_requests``, the QPACK decoder) once HTTP/3 is done with its receive side
(ended, reset, stopped, stream error); its ID is remembered compactly as closed so
late events for it are ignored. :meth:`H3Connection.state_sizes` reports every table
and queue. Limits (:class:`H3Configuration`, RFC 9114 §10.5): frames and bytes held
behind blocked field sections, per stream and in total (H3_EXCESSIVE_LOAD beyond
them), buffered frame size, number of peer SETTINGS, and the field section size and
QPACK blocked streams we advertise. HTTP datagrams for a stream whose receive side is
closed are dropped (RFC 9297 §2.1); none is held here.

Push (RFC 9114 §4.6): we never send MAX_PUSH_ID, so a push stream received by a client
is H3_ID_ERROR; a push stream opened by a client is H3_STREAM_CREATION_ERROR (§6.2.2).
A server checks that the client's MAX_PUSH_ID never decreases (H3_ID_ERROR, §7.2.7).

0-RTT: requests a server received in early data pass the policy of :mod:`h3.early`
(``early_data_policy``: 425, held until the handshake, or passed marked) on their way
out of :meth:`H3Connection.next_event`; SETTINGS remembered with the session ticket
(RFC 9114 §7.2.4.2) are :mod:`h3.remembered`'s (the QPACK encoder's settings go
through it).

Errors: :class:`~h3.errors.H3ConnectionError` closes the QUIC connection with the
HTTP/3 code; :class:`~h3.errors.H3StreamError` resets the stream and stops reading it.
Both are raised anywhere and handled in :meth:`H3Connection.handle_event` only, which
also turns any other exception (a bug of ours, never the peer's input) into a close
with H3_INTERNAL_ERROR, logged once: no exception leaves ``handle_event``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from h3.conn_datagrams import H3Datagrams
from h3.control import CRITICAL_STREAM_TYPES, ControlStreams
from h3.early import EarlyDataPolicy, EarlyRequests
from h3.errors import H3ConnectionError, H3ErrorCode, H3StreamError
from h3.events import (
    ConnectionShutdownInitiated,
    DataReceived,
    H3Event,
    Headers,
    HeadersReceived,
    RequestStreamReset,
    StopSendingReceived,
    webtransport_stream_data,
)
from h3.frames import (
    FrameReader,
    FrameType,
    encode_data_frame_header,
    encode_headers_frame,
)
from h3.headers import validate_request_headers, validate_response_headers, validate_trailers
from h3.qlog import H3Logger
from h3.qpack import QpackDecoder, QpackEncoder
from h3.stream_state import Parking, StreamState, StreamTable
from h3.streams import (
    StreamType,
    UniStreamHeaderReader,
    encode_uni_stream_header,
    encode_webtransport_bidi_header,
    read_webtransport_bidi_header,
)
from quic import events as qe
from quic.connection import QuicConnection

__all__ = ["H3Configuration", "H3Connection"]

logger = logging.getLogger("h3")

# RFC 9114 §7.2.3, §7.2.4, §7.2.6, §7.2.7: control-stream frames on a request stream
_CONTROL_ONLY = frozenset(
    {FrameType.SETTINGS, FrameType.GOAWAY, FrameType.MAX_PUSH_ID, FrameType.CANCEL_PUSH}
)
_DATA = FrameType.DATA
_HEADERS = FrameType.HEADERS


@dataclass(kw_only=True)
class H3Configuration:
    """HTTP/3 settings of one endpoint, and the limits on what a peer can make it hold."""

    max_field_section_size: int | None = 65536  # SETTINGS_MAX_FIELD_SECTION_SIZE, §4.2.2
    qpack_max_table_capacity: int = 4096  # RFC 9204 §5
    #: Does our QPACK *encoder* use the dynamic table the peer allows? False: static
    #: table and literals only (RFC 9204 §3.2.3: the encoder may keep the capacity at
    #: 0), sparing the engine's dynamic-table state, about 4.4 KB of native memory per
    #: connection. None: True, except on WebTransport connections (one response per
    #: session), which set False.
    qpack_encoder_dynamic_table: bool | None = None
    qpack_blocked_streams: int = 16  # RFC 9204 §2.1.2: more is QPACK_DECOMPRESSION_FAILED
    enable_connect_protocol: bool = False  # RFC 9220
    enable_datagrams: bool = False  # RFC 9297 SETTINGS_H3_DATAGRAM
    enable_webtransport: bool = False  # recognise WT stream types / signals
    extra_settings: dict[int, int] = field(default_factory=dict)
    #: Largest buffered (non-DATA) frame payload: H3_EXCESSIVE_LOAD beyond (§10.5).
    max_frame_size: int = 1 << 18
    grease: bool = True
    # -- limits on peer-driven state (RFC 9114 §10.5: "SHOULD track ... and set limits",
    #    excess treated as a connection error of type H3_EXCESSIVE_LOAD, §8.1) ---------
    #: Frames held behind one QPACK-blocked field section (RFC 9204 §2.1.2); a run of
    #: DATA counts once, unknown frame types are dropped, not held.
    max_blocked_frames_per_stream: int = 32
    #: Bytes (HEADERS and DATA payload) held behind one blocked field section. DATA is
    #: bounded by the stream's flow-control window too: keep this above
    #: QuicConfiguration.initial_max_stream_data.
    max_blocked_bytes_per_stream: int = 2 * 1024 * 1024
    #: Bytes held behind blocked field sections on the whole connection.
    max_blocked_bytes: int = 16 * 1024 * 1024
    #: Identifiers in the peer's SETTINGS frame (§7.2.4 sets no bound; §10.5 allows one).
    max_peer_settings: int = 256
    # -- requests received in 0-RTT (RFC 9114 §10.9, RFC 8470; helper "early2"): see
    #    h3.early. "reject-unsafe": 425 for unsafe methods; "defer": held until the
    #    handshake completes, within the two bounds below (RFC 9114 §10.5), 425 beyond;
    #    "accept-all": the application decides (HeadersReceived.early_data).
    early_data_policy: EarlyDataPolicy = "reject-unsafe"
    max_early_requests_held: int = 16
    max_early_bytes_held: int = 256 * 1024


class H3Connection:
    """HTTP/3 on top of one QUIC connection (client or server)."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_early",
        "_events",
        "_head_requests",
        "_max_request_seen",
        "_parking",
        "_payload_taken",
        "_qlog",
        "_streams",
        "closed",
        "config",
        "control",
        "datagrams",
        "decoder",
        "encoder",
        "is_client",
        "last_internal_error",
        "qlog",
        "quic",
    )

    def __init__(self, quic: QuicConnection, configuration: H3Configuration | None = None):
        self.quic = quic
        self.config = configuration or H3Configuration()
        self.is_client = quic.is_client
        # made by the first event, let go when drained (issue 10: ~760 B per idle connection)
        self._events: deque[H3Event] | None = None
        # qlog (h3.qlog): into the QUIC connection's trace; None when tracing is off
        self._qlog = H3Logger(quic.qlog) if quic.qlog is not None else None
        self.qlog = self._qlog  # public: the layers above log their capsules through it
        self._payload_taken = 0  # payload bytes of the stream event being handled
        config = self.config
        self.decoder = QpackDecoder(
            config.qpack_max_table_capacity,
            config.qpack_blocked_streams,
            config.max_field_section_size,
        )
        self.encoder = QpackEncoder(dynamic_table=config.qpack_encoder_dynamic_table is not False)
        if self._qlog is not None:  # QPACK events (h3.qlog_qpack)
            self._qlog.watch_qpack(self.encoder, self.decoder)
        # the control and QPACK streams, ours and the peer's (h3.control)
        self.control = ControlStreams(
            quic, config, self.encoder, self.decoder, self._emit, self._qlog
        )
        self._streams = StreamTable()
        self._early = EarlyRequests(  # the 0-RTT request policy (h3.early)
            quic.is_client,
            config.early_data_policy,
            config.max_early_requests_held,
            config.max_early_bytes_held,
            self._streams.is_closed,
        )
        self._parking = Parking(
            config.max_blocked_frames_per_stream,
            config.max_blocked_bytes_per_stream,
            config.max_blocked_bytes,
        )
        # HTTP datagrams: send, receive, the per-datagram shortcut (h3.conn_datagrams)
        self.datagrams = H3Datagrams(
            quic, config, self.control, self._streams, self._early, self._emit, self._qlog
        )
        self._max_request_seen = -1
        # client: streams whose request is HEAD (a dict as a set: 64 B empty, not 216)
        self._head_requests: dict[int, None] = {}
        self.closed = False
        #: The first exception that was a bug of ours (closed with H3_INTERNAL_ERROR).
        self.last_internal_error: BaseException | None = None

    # ==================================================================================
    # API
    # ==================================================================================

    @property
    def peer_settings(self) -> dict[int, int] | None:
        """The peer's SETTINGS (None until they arrive)."""
        return self.control.peer_settings

    @property
    def local_settings(self) -> dict[int, int]:
        """The SETTINGS we send (without GREASE)."""
        return self.control.local_settings

    def _emit(self, event: H3Event) -> None:
        """Queue an HTTP/3 event (the queue is made on demand, see :meth:`next_event`)."""
        events = self._events
        if events is None:
            events = self._events = deque()
        events.append(event)

    def next_event(self) -> H3Event | None:
        """The next HTTP/3 event, or None: the only way events leave this object."""
        event = self._early.next_event(self._events, self)  # the 0-RTT policy (h3.early)
        if not self._events:
            self._events = None  # drained: an idle connection holds no queue
        return event

    def state_sizes(self) -> dict[str, int]:
        """Sizes of the tables and queues this connection holds (tests, monitoring)."""
        streams = self._streams
        return {
            "events": len(self._events or ()),
            "streams": len(streams),
            "closed_ranges": streams.closed_ranges,
            "head_requests": len(self._head_requests),
            "blocked_bytes": self._parking.total_bytes,
            "qpack_blocked_streams": self.decoder.blocked_stream_count,
            "qpack_queued_sections": self.decoder.queued_sections,
            **self._early.state_sizes(),
        }

    def blocked_stream_holdings(self) -> list[tuple[int, int, int]]:
        """``(stream_id, frames held, bytes held)`` of each QPACK-blocked stream."""
        return [
            (sid, len(stream.pending or ()), stream.pending_bytes)
            for sid, stream in self._streams.items()
            if stream.blocked
        ]

    def initialize(self) -> None:
        """Open our control and QPACK streams and send SETTINGS (RFC 9114 §6.2.1)."""
        self.control.open()

    def get_next_available_stream_id(self) -> int:
        """Open a new request stream (client) and return its id."""
        if self.control.received_goaway is not None and self.is_client:
            raise RuntimeError("the server sent GOAWAY: no new requests")
        sid = self.quic.create_stream(bidirectional=True)
        if self._qlog is not None and self.is_client:  # h3-events §"stream_type_set"
            self._qlog.stream_type_set(sid, True, "request")
        return sid

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool = False) -> None:
        """Send a HEADERS frame (request, response or trailers)."""
        self.encoder.check_peer_limit(headers, stream_id)
        if (
            self.is_client
            and (b":method", b"HEAD") in headers
            and not self._streams.is_closed(stream_id)
        ):
            self._head_requests[stream_id] = None
        block = self.encoder.encode(stream_id, headers)
        if self._qlog is not None:
            self._qlog.frame_created(stream_id, _HEADERS, len(block), headers=headers)
        self.control.flush_encoder()
        self.quic.send_stream_data(stream_id, encode_headers_frame(block), end_stream)

    def send_data(
        self, stream_id: int, data: bytes | bytearray | memoryview, end_stream: bool = False
    ) -> bool:
        """Send body bytes in one DATA frame; False when the send buffer is full."""
        quic = self.quic
        if data:
            quic.send_stream_data(stream_id, encode_data_frame_header(len(data)))
            if self._qlog is not None:
                self._qlog.frame_created(stream_id, _DATA, len(data))
        return quic.send_stream_data(stream_id, data, end_stream)

    def end_stream(self, stream_id: int) -> None:
        self.quic.send_stream_data(stream_id, b"", True)

    def consume_data(self, stream_id: int, nbytes: int) -> bool:
        """The application is done with ``nbytes`` of payload delivered on ``stream_id``
        (:class:`DataReceived`, :class:`~h3.events.WebTransportStreamDataReceived`):
        their QUIC flow-control credit goes back to the peer. HTTP/3 credits its own framing
        itself; every receiver of payload must call this as it consumes it. True when
        QUIC now owes a credit frame (a send is due)."""
        return nbytes > 0 and self.quic.consume_stream_data(stream_id, nbytes)

    def max_datagram_payload(self, stream_id: int) -> int:
        """Largest HTTP datagram payload for ``stream_id`` now (0: none); follows the
        path MTU (docs/datagrams.md)."""
        return self.datagrams.max_payload(stream_id)

    def send_datagram(self, stream_id: int, data: bytes | bytearray | memoryview) -> None:
        """Send an HTTP datagram for ``stream_id`` (RFC 9297 §2.1); ValueError if it is
        larger than :meth:`max_datagram_payload` (docs/datagrams.md)."""
        self.datagrams.send(stream_id, data)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self.quic.reset_stream(stream_id, error_code)

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        """Stop reading ``stream_id`` (STOP_SENDING): its receive state is dropped and
        nothing more is reported for it, except a reset by the peer."""
        self.quic.stop_stream(stream_id, error_code)
        if not self._streams.is_closed(stream_id):
            self.decoder.cancel_stream(stream_id)  # RFC 9204 §2.2.2.2
            self.control.flush_decoder()
            self._close_stream(stream_id)

    def create_webtransport_stream(self, session_id: int, bidirectional: bool) -> int:
        """Open a WebTransport stream for ``session_id`` and write its header."""
        quic = self.quic
        sid = quic.create_stream(bidirectional)
        if bidirectional:
            header = encode_webtransport_bidi_header(session_id)
            # the peer's half of this stream is raw WebTransport data, not frames
            self._streams.open(sid, None).session_id = session_id
        else:
            header = encode_uni_stream_header(StreamType.WEBTRANSPORT_UNI, session_id)
        quic.send_stream_data(sid, header)
        if self._qlog is not None:
            self._qlog.stream_type_set(sid, True, "webtransport")
        return sid

    def send_goaway(self) -> None:
        """Graceful shutdown (RFC 9114 §5.2): no requests above the ones seen so far."""
        if self.is_client:
            last = 0
        else:
            last = self._max_request_seen + 4 if self._max_request_seen >= 0 else 0
        last = self.control.send_goaway(last)
        self._emit(ConnectionShutdownInitiated(last))

    def close(self, error_code: int = H3ErrorCode.H3_NO_ERROR, reason: str = "") -> None:
        self.closed = True
        self.quic.close(error_code, reason)

    # ==================================================================================
    # input
    # ==================================================================================

    def handle_event(self, event: qe.QuicEvent) -> None:
        """Feed one QUIC event; the HTTP/3 events it causes are queued for
        :meth:`next_event`. Never raises: protocol errors close the connection or
        reset the stream with their HTTP/3 code, a bug of ours closes with
        H3_INTERNAL_ERROR."""
        if self.closed and not isinstance(event, qe.ConnectionTerminated):
            return  # closing: nothing more is processed
        try:
            self._handle(event)
        except H3ConnectionError as exc:
            # the QUIC layer reports the close (ConnectionTerminated) to the application
            self.close(exc.error_code, exc.reason)
        except Exception as exc:
            self._internal_error(exc)

    def _internal_error(self, exc: Exception) -> None:
        if self.last_internal_error is None:
            self.last_internal_error = exc
            logger.error("HTTP/3 internal error; closing the connection", exc_info=exc)
        try:
            self.close(H3ErrorCode.H3_INTERNAL_ERROR, "internal error")
        except Exception:  # the QUIC connection is beyond use already
            self.closed = True

    def _handle(self, event: qe.QuicEvent) -> None:
        if type(event) is qe.DatagramReceived:  # per datagram: no 0-RTT policy matter
            self.datagrams.receive(event.data)
            return
        self._early.on_quic_event(event)
        if isinstance(event, qe.StreamDataReceived):
            self._on_stream_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, qe.DatagramReceived):
            self.datagrams.receive(event.data)
        elif isinstance(event, qe.StreamReset):
            self._on_reset(event.stream_id, event.error_code)
        elif isinstance(event, qe.StopSendingReceived):
            if self.control.is_ours(event.stream_id):
                raise H3ConnectionError(
                    H3ErrorCode.H3_CLOSED_CRITICAL_STREAM, "STOP_SENDING on a critical stream"
                )
            self._emit(StopSendingReceived(event.stream_id, event.error_code))
        elif isinstance(event, (qe.HandshakeCompleted, qe.ProtocolNegotiated)):
            self.initialize()
        elif isinstance(event, qe.ConnectionTerminated):
            self.closed = True

    def _on_stream_data(self, sid: int, data: bytes, fin: bool) -> None:
        self._payload_taken = 0
        try:
            if self._streams.is_closed(sid):
                pass  # queued before we stopped reading, or a late FIN: ignored
            elif sid & 2:
                self._on_uni_data(sid, data, fin)
            else:
                self._on_bidi_data(sid, data, fin)
        except H3StreamError as exc:
            self._stream_error(sid, exc)
        finally:
            # Framing is ours: its credit goes back now. Payload bytes handed up (or
            # parked for a blocked stream) are credited when the application calls
            # consume_data() (RFC 9000 §4.2 via QUIC).
            own = len(data) - self._payload_taken
            if own > 0:
                self.quic.consume_stream_data(sid, own)
        if self.decoder.instructions:  # only a field section makes some (RFC 9204 §4.4)
            self.control.flush_decoder()

    def _stream_error(self, stream_id: int, exc: H3StreamError) -> None:
        """RFC 9114 §8: a stream error resets the stream and stops reading it."""
        quic = self.quic
        quic.stop_stream(stream_id, exc.error_code)
        if not stream_id & 2 or (stream_id & 1) != (0 if self.is_client else 1):
            quic.reset_stream(stream_id, exc.error_code)
        self.decoder.cancel_stream(stream_id)
        self._close_stream(stream_id)
        # tell the application, which may be waiting for this stream's message
        self._emit(RequestStreamReset(stream_id, exc.error_code, local=True))

    def _close_stream(self, stream_id: int) -> None:
        """HTTP/3 is done with the receive side of ``stream_id``: it leaves every table."""
        stream = self._streams.close(stream_id)
        if stream is not None and stream.pending is not None:
            self._parking.drop(stream)
        self._head_requests.pop(stream_id, None)
        self._early.forget(stream_id)

    # -- unidirectional streams (RFC 9114 §6.2) --------------------------------------------

    def _on_uni_data(self, sid: int, data: bytes, fin: bool) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            stream = self._streams.open(sid, None)
            stream.uni_reader = UniStreamHeaderReader()
        started = False  # the header ends in this chunk
        if stream.uni_type is None:
            started = True
            assert stream.uni_reader is not None
            header = stream.uni_reader.feed(data)
            if header is None:
                if fin:
                    self._close_stream(sid)  # ended before its type: ignored (§6.2)
                return
            stream.uni_reader = None
            data = bytes(header.rest)
            if not self._start_uni(stream, header.stream_type, header.header_id):
                self._close_stream(sid)
                return
        kind = stream.uni_type
        if kind == StreamType.CONTROL:
            self.control.on_control_data(stream, data, fin)
        elif kind == StreamType.QPACK_ENCODER:
            if data:
                self._on_unblocked(self.decoder.feed_encoder_stream(data))
            if fin:
                raise H3ConnectionError(
                    H3ErrorCode.H3_CLOSED_CRITICAL_STREAM, "QPACK encoder stream closed"
                )
        elif kind == StreamType.QPACK_DECODER:
            if data:
                self.encoder.feed_decoder_stream(data)
            if fin:
                raise H3ConnectionError(
                    H3ErrorCode.H3_CLOSED_CRITICAL_STREAM, "QPACK decoder stream closed"
                )
        else:  # StreamType.WEBTRANSPORT_UNI
            assert stream.session_id is not None
            self._payload_taken += len(data)
            # reported as soon as its header is read, even without payload: the session
            # then knows the stream, whose reset may come next (a RESET_STREAM_AT that
            # keeps only the header, draft-ietf-webtrans-http3-16 §4.4)
            if data or fin or started:
                self._emit(webtransport_stream_data(sid, stream.session_id, data, fin))
            if fin:
                self._close_stream(sid)

    def _start_uni(self, stream: StreamState, kind: int, header_id: int | None) -> bool:
        """Act on a unidirectional stream's type; False when the stream is not read."""
        sid = stream.stream_id
        if self._qlog is not None:
            self._qlog.stream_type_set(sid, False, kind)
        if kind in CRITICAL_STREAM_TYPES:
            self.control.accept(stream, kind)
            return True
        if kind == StreamType.PUSH:
            if not self.is_client:
                # RFC 9114 §6.2.2: only servers push
                raise H3ConnectionError(
                    H3ErrorCode.H3_STREAM_CREATION_ERROR, "push stream opened by a client"
                )
            # RFC 9114 §4.6: we never sent MAX_PUSH_ID, so no push ID is valid
            raise H3ConnectionError(H3ErrorCode.H3_ID_ERROR, "push stream without MAX_PUSH_ID")
        if kind == StreamType.WEBTRANSPORT_UNI and self.config.enable_webtransport:
            stream.uni_type = kind
            stream.session_id = header_id
            return True
        # unknown or reserved type: abort reading (RFC 9114 §6.2, §6.2.3)
        self.quic.stop_stream(sid, H3ErrorCode.H3_STREAM_CREATION_ERROR)
        return False

    # -- bidirectional streams (RFC 9114 §4.1) ----------------------------------------------

    def _on_bidi_data(self, sid: int, data: bytes, fin: bool) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            if not self.is_client and sid & 1 == 0:
                self._on_new_request_stream(sid)
            wt = read_webtransport_bidi_header(data) if self.config.enable_webtransport else None
            if wt is not None:  # a whole WebTransport header: no frame reader (issue 10)
                session_id, data = wt
                if not fin:  # with its FIN already: no state to keep, only its close
                    self._streams.open(sid, None).session_id = session_id
                if self._qlog is not None:
                    self._qlog.stream_type_set(sid, False, "webtransport")
                self._payload_taken += len(data)
                self._emit(webtransport_stream_data(sid, session_id, data, fin))
                if fin:
                    self._close_stream(sid)
                return
            stream = self._streams.open(
                sid, FrameReader(self.config.max_frame_size, webtransport=True)
            )
        if stream.session_id is not None:
            self._payload_taken += len(data)
            if data or fin:
                self._emit(webtransport_stream_data(sid, stream.session_id, data, fin))
            if fin:
                self._close_stream(sid)
            return
        assert stream.frames is not None
        items = stream.frames.feed(data, fin)
        if stream.blocked:
            self._park(stream, items, fin)
            return
        self._process_frames(stream, items, fin)
        if stream.ended:
            self._close_stream(sid)

    def _on_new_request_stream(self, sid: int) -> None:
        sent_goaway = self.control.sent_goaway
        if sent_goaway is not None and sid >= sent_goaway:
            # RFC 9114 §5.2: requests above the GOAWAY identifier are refused
            self.quic.stop_stream(sid, H3ErrorCode.H3_REQUEST_REJECTED)
            self.quic.reset_stream(sid, H3ErrorCode.H3_REQUEST_REJECTED)
            raise H3StreamError(H3ErrorCode.H3_REQUEST_REJECTED, "after GOAWAY")
        if sid > self._max_request_seen:
            self._max_request_seen = sid
        if self._qlog is not None:
            self._qlog.stream_type_set(sid, False, "request")

    def _process_frames(
        self, stream: StreamState, items: Iterable[tuple[int, bytes]], fin: bool
    ) -> None:
        sid = stream.stream_id
        items = list(items)
        if (
            items
            and self.is_client
            and sid & 1
            and not stream.headers_done
            and items[0][0] != FrameType.WEBTRANSPORT_STREAM
        ):
            raise H3ConnectionError(
                H3ErrorCode.H3_STREAM_CREATION_ERROR, "server-initiated bidirectional stream"
            )  # RFC 9114 §6.1
        for index, (ftype, payload) in enumerate(items):
            last = fin and index == len(items) - 1
            if ftype == FrameType.WEBTRANSPORT_STREAM:
                self._on_webtransport_bidi(stream, payload, last)
                return
            if self._qlog is not None and ftype != _HEADERS:  # HEADERS: once decoded
                self._qlog.frame_parsed(sid, ftype, len(payload))
            if ftype == _HEADERS:
                self._on_headers(stream, payload, last)
                if stream.blocked:
                    self._park(stream, items[index + 1 :], fin)
                    return
            elif ftype == _DATA:
                self._on_data(stream, payload, last)
            else:
                self._check_request_frame(ftype, sid)
        if fin and not stream.ended:
            self._on_end(stream)

    def _check_request_frame(self, ftype: int, sid: int) -> None:
        """Frames other than DATA and HEADERS on a request stream: errors for the ones
        that never belong there, nothing for unknown types (ignored, §9)."""
        if ftype in _CONTROL_ONLY:
            raise H3ConnectionError(
                H3ErrorCode.H3_FRAME_UNEXPECTED, f"{FrameType(ftype).name} on stream {sid}"
            )  # RFC 9114 §7.2.3, §7.2.4, §7.2.6, §7.2.7
        if ftype == FrameType.PUSH_PROMISE:
            if not self.is_client:
                raise H3ConnectionError(
                    H3ErrorCode.H3_FRAME_UNEXPECTED, "PUSH_PROMISE from a client"
                )
            raise H3ConnectionError(
                H3ErrorCode.H3_ID_ERROR, "PUSH_PROMISE without MAX_PUSH_ID"
            )  # RFC 9114 §7.2.5

    def _park(self, stream: StreamState, items: Iterable[tuple[int, bytes]], fin: bool) -> None:
        """Hold the frames behind a field section that waits for QPACK (RFC 9204
        §2.1.2), within the limits of :class:`~h3.stream_state.Parking`. Their DATA
        payload is credited when the application consumes it; unknown frames are
        dropped (RFC 9114 §9), frames never allowed here are rejected at once."""
        parking = self._parking
        for ftype, payload in items:
            if ftype in (_DATA, _HEADERS):
                if stream.headers_done:  # the blocked section is the trailers (§4.1)
                    raise H3ConnectionError(
                        H3ErrorCode.H3_FRAME_UNEXPECTED,
                        f"{FrameType(ftype).name} after trailers",
                    )
                if ftype == _DATA:
                    self._payload_taken += len(payload)
                parking.park(stream, ftype, payload)
            else:
                self._check_request_frame(ftype, stream.stream_id)
        if fin:
            stream.pending_fin = True

    def _on_webtransport_bidi(self, stream: StreamState, payload: bytes, fin: bool) -> None:
        if stream.headers_done or not self.config.enable_webtransport:
            raise H3ConnectionError(
                H3ErrorCode.H3_FRAME_ERROR, "WebTransport signal in the middle of a stream"
            )
        assert stream.frames is not None
        stream.session_id = stream.frames.session_id
        assert stream.session_id is not None
        if self._qlog is not None:
            self._qlog.stream_type_set(stream.stream_id, False, "webtransport")
        stream.frames = None  # raw data from here on
        self._payload_taken += len(payload)
        self._emit(webtransport_stream_data(stream.stream_id, stream.session_id, payload, fin))
        if fin:
            stream.ended = True

    def _on_headers(self, stream: StreamState, block: bytes, fin: bool) -> None:
        if stream.trailers_done:
            raise H3ConnectionError(H3ErrorCode.H3_FRAME_UNEXPECTED, "HEADERS after trailers")
        headers = self.decoder.feed_header(stream.stream_id, block)
        if headers is None:
            stream.blocked = True  # the caller parks the frames behind it (RFC 9204 §2.1.2)
            return
        self._deliver_headers(stream, headers, fin)

    def _deliver_headers(self, stream: StreamState, headers: Headers, fin: bool) -> None:
        sid = stream.stream_id
        if self._qlog is not None:
            self._qlog.frame_parsed(sid, _HEADERS, None, headers=headers)
        if not stream.headers_done:
            if self.is_client:
                head = validate_response_headers(headers)
                if head.is_interim:
                    self._emit(HeadersReceived(sid, headers, False))
                    return
                # RFC 9114 §4.1.2: a response defined to have no content (RFC 9110
                # §6.4.1: to HEAD, 204, 304) may carry a non-zero content-length
                no_content = head.status in (204, 304) or sid in self._head_requests
                self._head_requests.pop(sid, None)
                stream.content_length = None if no_content else head.content_length
            else:
                req = validate_request_headers(
                    headers, enable_connect_protocol=self.config.enable_connect_protocol
                )
                stream.content_length = req.content_length
            stream.headers_done = True
        else:
            validate_trailers(headers)
            stream.trailers_done = True
        self._emit(HeadersReceived(sid, headers, fin))
        if fin:
            self._finish(stream)

    def _on_data(self, stream: StreamState, data: bytes, fin: bool) -> None:
        if not stream.headers_done:
            raise H3ConnectionError(H3ErrorCode.H3_FRAME_UNEXPECTED, "DATA before HEADERS")
        if stream.trailers_done:
            raise H3ConnectionError(H3ErrorCode.H3_FRAME_UNEXPECTED, "DATA after trailers")
        stream.received_body += len(data)
        limit = stream.content_length
        if limit is not None and stream.received_body > limit:
            raise H3StreamError(H3ErrorCode.H3_MESSAGE_ERROR, "body longer than content-length")
        self._payload_taken += len(data)
        if data or fin:
            self._emit(DataReceived(stream.stream_id, data, fin))
        if fin:
            self._finish(stream)

    def _on_end(self, stream: StreamState) -> None:
        if not stream.headers_done:
            raise H3StreamError(H3ErrorCode.H3_REQUEST_INCOMPLETE, "stream ended before HEADERS")
        self._emit(DataReceived(stream.stream_id, b"", True))
        self._finish(stream)

    def _finish(self, stream: StreamState) -> None:
        limit = stream.content_length
        if limit is not None and stream.received_body != limit:
            raise H3StreamError(H3ErrorCode.H3_MESSAGE_ERROR, "body shorter than content-length")
        stream.ended = True

    def _on_unblocked(self, sections: list[tuple[int, Any]]) -> None:
        # the parked frames' payload was counted when they were parked (see _park), and
        # this runs while another stream's (the encoder stream's) bytes are accounted
        saved = self._payload_taken
        try:
            self._deliver_unblocked(sections)
        finally:
            self._payload_taken = saved

    def _deliver_unblocked(self, sections: list[tuple[int, Any]]) -> None:
        for sid, headers in sections:
            stream = self._streams.get(sid)
            if stream is None:
                continue
            try:
                if isinstance(headers, Exception):
                    raise headers
                items, fin = self._parking.take(stream)
                stream.blocked = False
                self._deliver_headers(stream, headers, fin and not items)
                if not stream.ended:
                    self._process_frames(stream, items, fin)
                if stream.ended:
                    self._close_stream(sid)
            except H3StreamError as exc:
                self._stream_error(sid, exc)

    def _on_reset(self, sid: int, error_code: int) -> None:
        stream = self._streams.get(sid)
        if stream is not None and stream.uni_type in CRITICAL_STREAM_TYPES:
            raise H3ConnectionError(
                H3ErrorCode.H3_CLOSED_CRITICAL_STREAM, "critical stream reset"
            )  # RFC 9114 §6.2.1
        if not self._streams.is_closed(sid):
            self.decoder.cancel_stream(sid)  # RFC 9204 §2.2.2.2
            self.control.flush_decoder()
            self._close_stream(sid)
        self._emit(RequestStreamReset(sid, error_code))

    def datagram_route(self, data: bytes) -> tuple[int, bytes] | None:
        """``(stream ID, payload)`` if all :meth:`handle_event` would do with this QUIC
        DATAGRAM payload is queue them as the next event out (RFC 9297 §2.1); else None:
        hand it to :meth:`handle_event`. A query (changes nothing; see the module doc
        and :meth:`h3.conn_datagrams.H3Datagrams.route`)."""
        if self.closed or self._events:
            return None
        return self.datagrams.route(data)
