"""WebTransport data streams and datagrams: routing, buffering, credit, resets (mixin).

Theory of operation
-------------------
:class:`StreamsMixin` holds the stream half of
:class:`~pywebtransport.protocol.connection.WebTransportConnection`. A WebTransport
stream names its session in its header (draft-ietf-webtrans-http3-16 §4.2, §4.3):

* session ID not a client-initiated bidirectional stream ID → connection error
  H3_ID_ERROR (§4);
* session established → ``StreamOpened`` then ``StreamData`` (draft-16 flow control
  counts the stream and its body bytes, §5.6.2, §5.6.4);
* session over (:class:`~pywebtransport.protocol.ids.ClaimedIds`) → the stream is
  refused with WT_SESSION_GONE (§6);
* session unknown or not yet established → buffered, at most
  ``max_buffered_streams`` streams of ``max_buffered_stream_bytes`` each; beyond that
  the stream is refused with WT_BUFFERED_STREAM_REJECTED (§4.7). Buffered streams are
  kept per session and replayed in stream-ID order when the session is established,
  refused the same way when it is rejected or ends.

Credit follows consumption (RFC 9000 §4.2, draft-16 §5.4): ``StreamData`` bytes are
delivered uncredited; the application calls :meth:`consume_stream_data` when it is
done with them, which returns their QUIC credit (``H3Connection.consume_data``) and,
with draft-16 flow control, their session credit (WT_MAX_DATA). A reader that does not
read therefore holds at most the windows we advertised. Bytes nobody will read (a
stream reset by the peer or stopped by us, a stream of a session that is over) are
credited at once. A stream leaves the table once both halves are over and its
delivered bytes were consumed; then its stream credit (WT_MAX_STREAMS) goes back.

Datagrams follow the buffering rules too (up to ``max_buffered_datagrams`` /
``max_buffered_datagram_bytes`` wait for their session, the rest are dropped; those
of a session that is over are dropped). Resets and STOP_SENDING reach the application
with the WebTransport code (§4.4); a peer reset's final size is charged to the
session's data limit (§5.4).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from h3.connection import H3Connection
from h3.errors import H3ErrorCode
from pywebtransport.protocol import events as ev
from pywebtransport.protocol.errors import (
    SessionAbort,
    WebTransportError,
    http_code_to_webtransport_code,
    webtransport_code_to_http_code,
)
from pywebtransport.protocol.ids import ClaimedIds
from pywebtransport.protocol.session import (
    USABLE_STATES,
    Session,
    SessionState,
    WebTransportConfiguration,
    WtStream,
)
from quic.connection import QuicConnection

__all__ = ["FlowControlBlocked", "StreamsMixin"]

_SESSION_GONE = H3ErrorCode.WT_SESSION_GONE
_REJECTED = H3ErrorCode.WT_BUFFERED_STREAM_REJECTED


class FlowControlBlocked(WebTransportError):
    """A draft-16 session limit forbids opening this stream now (§5.6.2); wait for
    :class:`~pywebtransport.protocol.events.FlowCreditAvailable`."""

    def __init__(self, session_id: int, kind: str) -> None:
        super().__init__(f"session {session_id}: {kind} stream limit reached")
        self.session_id = session_id
        self.kind = kind


# per datagram (datagram_route): an Enum class attribute costs ~10x a global on 3.11
_ESTABLISHED = SessionState.ESTABLISHED


class StreamsMixin:
    """Stream and datagram handling of a WebTransport connection (see the module doc)."""

    # what this mixin assigns; the rest of the state is WebTransportConnection's slots
    __slots__ = ("_buffered_streams", "_datagram_bytes", "_datagrams")

    quic: QuicConnection
    h3: H3Connection
    config: WebTransportConfiguration
    _events: deque[ev.WebTransportEvent] | None
    _sessions: dict[int, Session]
    _claimed: ClaimedIds
    _streams: dict[int, WtStream]
    _early: dict[int, dict[int, WtStream]]
    _buffered_streams: int
    _datagrams: deque[tuple[int, bytes]] | None
    _datagram_bytes: int
    _final_sizes: dict[int, int]
    _stopped: dict[int, None]
    _flow_dirty: dict[int, None]

    # provided by the connection

    if TYPE_CHECKING:

        def _emit(self, event: ev.WebTransportEvent) -> None: ...  # the connection's

    def _abort(self, session: Session, code: int, reason: str) -> None:
        raise NotImplementedError

    def _usable(self, session_id: int) -> Session:
        raise NotImplementedError

    def _flush_flow_updates(self) -> bool:
        raise NotImplementedError

    # ==================================================================================
    # WebTransport streams (draft-16 §4.2, §4.3, §4.4, §4.7)
    # ==================================================================================

    def _on_stream_data(self, sid: int, session_id: int, data: bytes, fin: bool) -> None:
        if session_id & 3:
            self.h3.close(H3ErrorCode.H3_ID_ERROR, f"session ID {session_id} on stream {sid}")
            return  # draft-16 §4
        if sid in self._stopped:  # what QUIC still reports after our STOP_SENDING
            if fin:
                self._stopped.pop(sid, None)
            return  # QUIC credited it
        stream = self._streams.get(sid)
        if stream is None:
            stream = self._new_peer_stream(sid, session_id)
            if stream is None:
                if fin:
                    self._stopped.pop(sid, None)
                return  # refused: QUIC credits what it delivered
        if stream.buffer is not None:
            stream.buffered_bytes += len(data)
            if stream.buffered_bytes > self.config.max_buffered_stream_bytes:
                self._unbuffer(stream)
                del self._streams[sid]
                self._refuse_stream(sid, _REJECTED)
                return
            stream.buffer.append((data, fin))
            return
        self._deliver(stream, data, fin)

    def _new_peer_stream(self, sid: int, session_id: int) -> WtStream | None:
        if not sid & 3:  # a client bidi stream ID that is not a session (§4.3)
            self._claimed.add(sid)
            if sid in self._early:
                self._reject_buffered(sid)  # streams that named it wait for nothing
        session = self._sessions.get(session_id)
        if session is None and session_id in self._claimed:
            self._refuse_stream(sid, _SESSION_GONE)  # §6
            return None
        stream = WtStream(sid, session_id, False)  # positional: no kwargs dict per stream
        if session is None or session.state is not _ESTABLISHED:
            if self._buffered_streams >= self.config.max_buffered_streams:
                self._refuse_stream(sid, _REJECTED)  # §4.7
                return None
            stream.buffer = []
            self._buffered_streams += 1
            self._early.setdefault(session_id, {})[sid] = stream
            self._streams[sid] = stream
            return stream
        self._streams[sid] = stream
        return stream if self._open_incoming(session, stream) else None

    def _open_incoming(self, session: Session, stream: WtStream) -> bool:
        session.streams[stream.stream_id] = None
        try:
            if session.flow is not None:
                session.flow.on_peer_stream(stream.bidi)
        except SessionAbort as exc:
            self._abort(session, exc.error_code, exc.reason)
            return False
        self._emit(ev.stream_opened(session.session_id, stream.stream_id, stream.bidi))
        return True

    def _deliver(self, stream: WtStream, data: bytes, fin: bool) -> None:
        session = self._sessions.get(stream.session_id)
        # stream.recv_done without its property call: per delivery
        if session is None or not stream.has_recv or stream.fin_received or stream.recv_aborted:
            if data:  # nobody will read these: credit them now
                self.h3.consume_data(stream.stream_id, len(data))
            return
        if data:
            stream.received += len(data)
            flow = session.flow
            if flow is not None:
                # flow.on_data_received(), inline: per delivery; over the limit, the
                # call itself raises (tests/wt/test_flow.py checks both agree)
                received = flow.received = flow.received + len(data)
                if received > flow.recv_max_data:
                    try:
                        flow.on_data_received(0)
                    except SessionAbort as exc:
                        self._abort(session, exc.error_code, exc.reason)
                        return
        if fin:
            stream.fin_received = True
        if data or fin:
            self._emit(ev.stream_data(session.session_id, stream.stream_id, data, fin))
        if fin and stream.send_done:  # (finished needs both): a bidi echo's is not yet
            self._maybe_forget(session, stream)

    def _release_buffered(self, session: Session) -> None:
        """The session is established: deliver what waited for it (§4.7)."""
        sid = session.session_id
        waiting = self._early.pop(sid, {})
        for stream_id in sorted(waiting):
            stream = waiting[stream_id]
            if session.state is not _ESTABLISHED:
                # aborted meanwhile: _finish_session refused the streams it knew of
                self._forget_buffered(stream)
                continue
            if stream.buffer is None:
                continue
            chunks = self._unbuffer(stream)
            if not self._open_incoming(session, stream):
                continue
            for data, fin in chunks:
                self._deliver(stream, data, fin)
        if self._datagrams and session.state is SessionState.ESTABLISHED:
            kept: deque[tuple[int, bytes]] = deque()
            for owner, payload in self._datagrams:
                if owner == sid:
                    self._datagram_bytes -= len(payload)
                    self._emit(ev.DatagramReceived(sid, payload))
                else:
                    kept.append((owner, payload))
            self._datagrams = kept or None

    def _unbuffer(self, stream: WtStream) -> list[tuple[bytes, bool]]:
        chunks = stream.buffer or []
        if stream.buffer is not None:
            stream.buffer = None
            self._buffered_streams -= 1
            waiting = self._early.get(stream.session_id)
            if waiting is not None:
                waiting.pop(stream.stream_id, None)
                if not waiting:
                    del self._early[stream.session_id]
        return chunks

    def _forget_buffered(self, stream: WtStream) -> None:
        if stream.buffer is not None:
            self._unbuffer(stream)
            self._streams.pop(stream.stream_id, None)
            self._refuse_stream(stream.stream_id, _REJECTED)

    def _reject_buffered(self, session_id: int) -> None:
        """Streams and datagrams that waited for a session that will not come (§4.7)."""
        for stream in list(self._early.get(session_id, {}).values()):
            self._forget_buffered(stream)
        if self._datagrams:
            kept = deque(d for d in self._datagrams if d[0] != session_id)
            self._datagram_bytes = sum(len(d[1]) for d in kept)
            self._datagrams = kept or None

    def _send_capsules(self, session_id: int, capsules: bytes, end_stream: bool = False) -> bool:
        """Write whole capsules on the CONNECT stream (h3 ``send_data``) and log them
        (qlog ``http:capsule_created``, h3.qlog) when tracing is on."""
        sent = self.h3.send_data(session_id, capsules, end_stream)
        if self.h3.qlog is not None:
            self.h3.qlog.capsules_created(session_id, capsules)
        return sent

    def _refuse_stream(self, sid: int, code: int) -> None:
        """Stop reading (and reset the sending half of) a peer stream we cannot use;
        QUIC credits what it delivered of it."""
        self._stop_reading(sid, code)
        if not sid & 2:
            self.quic.reset_stream(sid, code)

    def _reset_sending(self, stream: WtStream, http_code: int) -> None:
        """Reset the sending half of a WebTransport data stream. On a stream we opened,
        the header that ties it to its session is kept reliable: RESET_STREAM_AT with
        the header as Reliable Size when the peer accepts it (draft-ietf-webtrans-http3
        -16 §4.4, draft-ietf-quic-reliable-stream-reset), else RESET_STREAM (older
        peers, which may then discard the header with the data)."""
        quic = self.quic
        if stream.local and quic.peer_accepts_reset_stream_at:
            quic.reset_stream(stream.stream_id, http_code, reliable_size=stream.header_size)
        else:
            quic.reset_stream(stream.stream_id, http_code)

    def _stop_reading(self, sid: int, code: int) -> None:
        """STOP_SENDING: QUIC credits what is outstanding and discards what follows, but
        may still report data queued before and the end of the stream; those reports are
        ignored until the FIN or the reset (``_stopped``: each entry is a stream still
        open in QUIC, so their number is bounded by the QUIC stream limits)."""
        self.quic.stop_stream(sid, code)
        self._stopped[sid] = None

    def _stop_stream(self, stream: WtStream, code: int) -> None:
        if stream.buffer is not None:
            self._unbuffer(stream)
        if not stream.send_done:
            self._reset_sending(stream, code)
        if stream.has_recv and not stream.recv_aborted:
            if not stream.fin_received:
                self._stop_reading(stream.stream_id, code)
            else:  # the peer is done sending: nothing to stop, the rest is dropped
                self.quic.stop_stream(stream.stream_id, code)
            stream.recv_aborted = True

    def _maybe_forget(self, session: Session, stream: WtStream) -> None:
        if not stream.finished:
            return
        self._streams.pop(stream.stream_id, None)
        session.streams.pop(stream.stream_id, None)
        # credit back (§5.6.2); the session needs a flush only once a capsule is due
        flow = session.flow
        if not stream.local and flow is not None and flow.on_peer_stream_closed(stream.bidi):
            self._flow_dirty[session.session_id] = None

    def _abort_receive(self, session: Session, stream: WtStream) -> None:
        """Nobody reads the rest of ``stream``: its session credit goes back (§5.4)."""
        if session.flow is not None:
            session.flow.on_data_consumed(stream.unconsumed)
            self._flow_dirty[session.session_id] = None
        stream.recv_aborted = True

    def _on_reset(self, sid: int, http_code: int) -> None:
        final_size = self._final_sizes.pop(sid, None)
        self._stopped.pop(sid, None)
        session = self._sessions.get(sid)
        if session is not None:  # the CONNECT stream itself
            self._on_connect_reset(session, http_code)
            return
        stream = self._streams.get(sid)
        if stream is None or stream.recv_done:
            return
        if stream.buffer is not None:
            self._unbuffer(stream)
            del self._streams[sid]
            return
        session = self._sessions.get(stream.session_id)
        if session is None:
            return
        if session.flow is not None and final_size is not None:
            unseen = final_size - stream.header_size - stream.received
            try:
                if unseen > 0:
                    session.flow.on_data_received(unseen)  # draft-16 §5.4
                    session.flow.on_data_consumed(unseen)
            except SessionAbort as exc:
                self._abort(session, exc.error_code, exc.reason)
                return
        self._abort_receive(session, stream)  # QUIC credited the stream already
        self._emit(
            ev.StreamReset(session.session_id, sid, http_code_to_webtransport_code(http_code),
                           http_code)
        )  # fmt: skip
        self._maybe_forget(session, stream)

    def _on_connect_reset(self, session: Session, http_code: int) -> None:
        sid = session.session_id
        if not session.fin_sent:
            self.quic.reset_stream(sid, _SESSION_GONE)
            session.fin_sent = True
        event: ev.WebTransportEvent
        if session.state in (SessionState.CONNECTING, SessionState.PENDING):
            event = ev.SessionRejected(sid, 0, [], f"CONNECT stream reset (0x{http_code:x})")
        else:
            event = ev.SessionClosed(sid, 0, "", True, http_code)
        self._finish_session(session, event)

    def _finish_session(self, session: Session, event: ev.WebTransportEvent | None) -> None:
        raise NotImplementedError

    def _on_stop_sending(self, sid: int, http_code: int) -> None:
        session = self._sessions.get(sid)
        if session is not None:
            if session.state is SessionState.REQUESTED:
                # QUIC answers with RESET_STREAM: no response can reach the client
                session.fin_sent = True
                self._finish_session(session, ev.SessionClosed(sid, 0, "", True, http_code))
            elif session.state is SessionState.ESTABLISHED:
                self._on_connect_reset(session, http_code)
            # a client's CONNECT before the final response: STOP_SENDING only ends the
            # request body (RFC 9114 §4.1.1); a refusal comes as a response or a reset
            return
        stream = self._streams.get(sid)
        if stream is None or stream.send_done or stream.buffer is not None:
            return
        session = self._sessions.get(stream.session_id)
        if session is None:
            return
        stream.send_done = True  # QUIC answers STOP_SENDING with RESET_STREAM
        self._emit(
            ev.StopSending(session.session_id, sid, http_code_to_webtransport_code(http_code),
                           http_code)
        )  # fmt: skip
        self._maybe_forget(session, stream)

    # -- stream API -------------------------------------------------------------------------

    def open_stream(self, session_id: int, bidirectional: bool = True) -> int:
        """Open a WebTransport stream; returns its stream ID. Raises
        :class:`FlowControlBlocked` when the draft-16 session limit forbids it."""
        session = self._usable(session_id)
        kind = "bidi" if bidirectional else "uni"
        flow = session.flow
        if flow is not None and not flow.can_open(bidirectional):
            capsule = flow.blocked_capsule(kind)
            if capsule is not None:
                self._send_capsules(session_id, capsule)  # draft-16 §5.6.3
            raise FlowControlBlocked(session_id, kind)
        sid = self.h3.create_webtransport_stream(session_id, bidirectional)
        if flow is not None:
            flow.on_open(bidirectional)
        stream = self._streams[sid] = WtStream(sid, session_id, True)
        if self.quic.peer_accepts_reset_stream_at:
            # draft-16 §4.4: every reset keeps the header reliable, also the one QUIC
            # sends by itself to answer STOP_SENDING (RFC 9000 §3.5)
            self.quic.set_reliable_floor(sid, stream.header_size)
        session.streams[sid] = None
        self._claimed.add(sid)  # client: our bidi stream IDs are not sessions
        return sid

    def send_stream_data(
        self, stream_id: int, data: bytes | bytearray | memoryview, end_stream: bool = False
    ) -> int:
        """Queue ``data``; returns how many bytes the draft-16 session data limit let
        through (all of them without flow control). FIN is sent only with the last byte."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.send_done:
            raise WebTransportError(f"stream {stream_id} cannot send")
        session = self._sessions.get(stream.session_id)  # _usable(), inline: per write
        if session is None or session.state not in USABLE_STATES:
            raise WebTransportError(f"session {stream.session_id} is not open")
        flow = session.flow
        size = len(data)
        if flow is not None and size:  # a FIN alone takes no credit
            # flow.send_credit() and on_sent(), inline: per write (size > 0 here, so
            # send_credit's clamp at 0 changes nothing in the test)
            if size > flow.send_max_data - flow.sent:
                size = flow.send_credit()
                data = memoryview(data)[:size]
                end_stream = False
                capsule = flow.blocked_capsule("data")
                if capsule is not None:
                    self._send_capsules(session.session_id, capsule)  # draft-16 §5.6.5
            flow.sent += size
        if size or end_stream:
            self.quic.send_stream_data(stream_id, data, end_stream)
        if end_stream:
            stream.send_done = True
            self._maybe_forget(session, stream)
            if self._flow_dirty:
                self._flush_flow_updates()
        return size

    def consume_stream_data(self, stream_id: int, nbytes: int) -> bool:
        """The application is done with ``nbytes`` more bytes of the ``StreamData`` of
        ``stream_id``: their QUIC credit and (draft-16) session credit go back to the
        peer (RFC 9000 §4.2, draft-16 §5.4). Bytes of streams that are gone are ignored.
        True when that queued something to send (a credit frame or capsule): only then
        does the connection need a transmit."""
        stream = self._streams.get(stream_id)
        if stream is None or nbytes <= 0:
            return False
        n = min(nbytes, stream.unconsumed)
        if n <= 0:
            return False
        stream.consumed += n
        owed = self.h3.consume_data(stream_id, n)
        session = self._sessions.get(stream.session_id)
        if session is None:
            return owed
        if session.flow is not None and session.flow.on_data_consumed(n):
            self._flow_dirty[session.session_id] = None  # a WT_MAX_DATA is due
        if stream.send_done:  # finished needs it: no call while we still send
            self._maybe_forget(session, stream)
        # flush_flow_updates' own first test inline: nothing is due after most reads
        return (bool(self._flow_dirty) and self._flush_flow_updates()) or owed

    def reset_stream(self, stream_id: int, code: int = 0) -> None:
        """Abandon sending on a stream with application error ``code`` (§4.4)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.send_done:
            raise WebTransportError(f"stream {stream_id} cannot be reset")
        self._reset_sending(stream, webtransport_code_to_http_code(code))
        stream.send_done = True
        session = self._sessions.get(stream.session_id)
        if session is not None:
            self._maybe_forget(session, stream)
            self._flush_flow_updates()

    def set_stop_sending_answer(self, stream_id: int, code: int) -> None:
        """If the peer sends STOP_SENDING on ``stream_id``, QUIC resets it with
        application ``code`` (§4.4 mapping) instead of the STOP_SENDING's own code
        (RFC 9000 §3.5 allows any)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.send_done:
            raise WebTransportError(f"stream {stream_id} cannot send")
        self.quic.set_stop_sending_answer(stream_id, webtransport_code_to_http_code(code))

    def stop_sending(self, stream_id: int, code: int = 0) -> None:
        """Stop reading a stream with application error ``code`` (§4.4); what was
        delivered but not consumed is discarded (its credit goes back)."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.has_recv or stream.recv_aborted:
            raise WebTransportError(f"stream {stream_id} is not being read")
        if stream.fin_received and not stream.unconsumed:
            raise WebTransportError(f"stream {stream_id} was read to its end")
        # QUIC sends STOP_SENDING while the peer may still send and credits everything
        # outstanding (RFC 9000 §3.5)
        http_code = webtransport_code_to_http_code(code)
        if stream.fin_received:
            self.quic.stop_stream(stream_id, http_code)
        else:
            self._stop_reading(stream_id, http_code)
        session = self._sessions.get(stream.session_id)
        if session is None:
            stream.recv_aborted = True
            return
        self._abort_receive(session, stream)
        self._maybe_forget(session, stream)
        self._flush_flow_updates()

    def abandon_stream(self, stream_id: int, http_code: int) -> None:
        """Reset and stop reading a stream with HTTP/3 error ``http_code`` (not an
        application code): e.g. a peer stream the application has no room for is
        refused with WT_BUFFERED_STREAM_REJECTED (§4.7)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            raise WebTransportError(f"no stream {stream_id}")
        session = self._sessions.get(stream.session_id)
        if session is not None and session.flow is not None and not stream.recv_aborted:
            session.flow.on_data_consumed(stream.unconsumed)  # discarded: credit back
            self._flow_dirty[session.session_id] = None
        self._stop_stream(stream, http_code)
        stream.send_done = True
        if session is None:
            self._streams.pop(stream_id, None)
            return
        self._maybe_forget(session, stream)
        self._flush_flow_updates()

    # ==================================================================================
    # datagrams (draft-16 §4.5, §4.7)
    # ==================================================================================

    def datagram_route(self, data: bytes) -> tuple[int, bytes] | None:
        """``(session ID, payload)`` of a QUIC DATAGRAM payload if all ``handle_event``
        would do with it is queue a ``DatagramReceived`` of them for an established
        session as the next event out (:meth:`H3Connection.datagram_route`, nothing
        queued, no credit update due); None: hand it to ``handle_event``. A query that
        changes nothing: a caller that takes the answer delivers the payload itself,
        which is all the event would have led to (draft-16 §4.5; issue 10)."""
        if self._events or self._flow_dirty or self._final_sizes:
            return None
        route = self.h3.datagram_route(data)
        if route is None:
            return None
        session = self._sessions.get(route[0])
        if session is None or session.state is not _ESTABLISHED:
            return None
        return route

    def _on_datagram(self, session_id: int, data: bytes) -> None:
        session = self._sessions.get(session_id)
        if session is not None and session.state is SessionState.ESTABLISHED:
            self._emit(ev.DatagramReceived(session_id, data))
            return
        config = self.config
        if (
            (session is not None or session_id not in self._claimed)
            and (len(self._datagrams) if self._datagrams else 0) < config.max_buffered_datagrams
            and self._datagram_bytes + len(data) <= config.max_buffered_datagram_bytes
        ):
            if self._datagrams is None:
                self._datagrams = deque()
            self._datagrams.append((session_id, data))  # §4.7
            self._datagram_bytes += len(data)
        # else dropped: over the limits (§4.7) or the session is over

    def send_datagram(self, session_id: int, data: bytes | bytearray | memoryview) -> None:
        """Send a datagram; raises ValueError when it cannot fit a QUIC packet."""
        session = self._sessions.get(session_id)  # _usable(), inline: per datagram
        if session is None or session.state not in USABLE_STATES:
            raise WebTransportError(f"session {session_id} is not open")
        self.h3.datagrams.send(session_id, data)  # H3Connection.send_datagram, one call less
