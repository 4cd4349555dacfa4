"""WebTransport data streams and datagrams: routing, buffering, resets (mixin).

Theory of operation
-------------------
:class:`StreamsMixin` holds the stream half of
:class:`~pywebtransport.protocol.connection.WebTransportConnection`. A WebTransport
stream names its session in its header (draft-ietf-webtrans-http3-16 §4.2, §4.3):

* session ID not a client-initiated bidirectional stream ID → connection error
  H3_ID_ERROR (§4);
* session established → ``StreamOpened`` then ``StreamData`` (draft-16 flow control
  counts the stream and its body bytes, §5.6.2, §5.6.4);
* session closed → the stream is refused with WT_SESSION_GONE (§6);
* session unknown or not yet established → buffered, at most
  ``max_buffered_streams`` streams of ``max_buffered_stream_bytes`` each; beyond that
  the stream is refused with WT_BUFFERED_STREAM_REJECTED (§4.7). Buffered streams are
  replayed in stream-ID order when the session is established, refused the same way
  when it is rejected.

Datagrams follow the same rules (buffered up to ``max_buffered_datagrams``, then
dropped). Resets and STOP_SENDING reach the application with the WebTransport code
(§4.4); a peer reset's final size is charged to the session's data limit (§5.4).
"""

from __future__ import annotations

from collections import deque

from h3.connection import H3Connection
from h3.errors import H3ErrorCode
from pywebtransport.protocol import events as ev
from pywebtransport.protocol.errors import (
    SessionAbort,
    WebTransportError,
    http_code_to_webtransport_code,
    webtransport_code_to_http_code,
)
from pywebtransport.protocol.session import (
    Session,
    SessionState,
    WebTransportConfiguration,
    WtStream,
)
from quic.connection import QuicConnection

__all__ = ["FlowControlBlocked", "StreamsMixin"]

_SESSION_GONE = H3ErrorCode.WT_SESSION_GONE


class FlowControlBlocked(WebTransportError):
    """A draft-16 session limit forbids opening this stream now (§5.6.2); wait for
    :class:`~pywebtransport.protocol.events.FlowCreditAvailable`."""

    def __init__(self, session_id: int, kind: str) -> None:
        super().__init__(f"session {session_id}: {kind} stream limit reached")
        self.session_id = session_id
        self.kind = kind


class StreamsMixin:
    """Stream and datagram handling of a WebTransport connection (see the module doc)."""

    quic: QuicConnection
    h3: H3Connection
    config: WebTransportConfiguration
    _events: deque[ev.WebTransportEvent]
    _sessions: dict[int, Session]
    _closed: set[int]
    _streams: dict[int, WtStream]
    _buffered_streams: int
    _datagrams: deque[tuple[int, bytes]]
    _final_sizes: dict[int, int]

    # provided by the connection
    def _abort(self, session: Session, code: int, reason: str) -> None:
        raise NotImplementedError

    def _usable(self, session_id: int) -> Session:
        raise NotImplementedError

    def _flush_flow_updates(self) -> None:
        raise NotImplementedError

    def _finish_session(self, session: Session, event: ev.WebTransportEvent | None) -> None:
        raise NotImplementedError

    # ==================================================================================
    # WebTransport streams (draft-16 §4.2, §4.3, §4.4, §4.7)
    # ==================================================================================

    def _on_stream_data(self, sid: int, session_id: int, data: bytes, fin: bool) -> None:
        if session_id & 3:
            self.h3.close(H3ErrorCode.H3_ID_ERROR, f"session ID {session_id} on stream {sid}")
            return  # draft-16 §4
        stream = self._streams.get(sid)
        if stream is None:
            if session_id in self._closed:
                self._refuse_stream(sid, _SESSION_GONE)
                return
            stream = WtStream(sid, session_id, local=False)
            session = self._sessions.get(session_id)
            if session is None or session.state is not SessionState.ESTABLISHED:
                if self._buffered_streams >= self.config.max_buffered_streams:
                    self._refuse_stream(sid, H3ErrorCode.WT_BUFFERED_STREAM_REJECTED)
                    return
                stream.buffer = []
                self._buffered_streams += 1
                self._streams[sid] = stream
            else:
                self._streams[sid] = stream
                if not self._open_incoming(session, stream):
                    return
        if stream.buffer is not None:
            stream.buffered_bytes += len(data)
            if stream.buffered_bytes > self.config.max_buffered_stream_bytes:
                self._unbuffer(stream)
                del self._streams[sid]
                self._refuse_stream(sid, H3ErrorCode.WT_BUFFERED_STREAM_REJECTED)
                return
            stream.buffer.append((data, fin))
            return
        self._deliver(stream, data, fin)

    def _open_incoming(self, session: Session, stream: WtStream) -> bool:
        session.streams.add(stream.stream_id)
        try:
            if session.flow is not None:
                session.flow.on_peer_stream(stream.bidi)
        except SessionAbort as exc:
            self._abort(session, exc.error_code, exc.reason)
            return False
        self._events.append(ev.StreamOpened(session.session_id, stream.stream_id, stream.bidi))
        return True

    def _deliver(self, stream: WtStream, data: bytes, fin: bool) -> None:
        session = self._sessions.get(stream.session_id)
        if session is None or stream.recv_done:
            return
        stream.received += len(data)
        if session.flow is not None and data:
            try:
                session.flow.on_data_received(len(data))
            except SessionAbort as exc:
                self._abort(session, exc.error_code, exc.reason)
                return
        if data or fin:
            self._events.append(ev.StreamData(session.session_id, stream.stream_id, data, fin))
        if fin:
            stream.recv_done = True
            self._maybe_forget(session, stream)

    def _release_buffered(self, session: Session) -> None:
        """The session is established: deliver what waited for it (§4.7)."""
        sid = session.session_id
        waiting = sorted(
            (s for s in self._streams.values() if s.session_id == sid and s.buffer is not None),
            key=lambda s: s.stream_id,
        )
        for stream in waiting:
            if session.state is not SessionState.ESTABLISHED:
                return  # aborted meanwhile: the rest was refused
            if stream.buffer is None:
                continue
            chunks = self._unbuffer(stream)
            if not self._open_incoming(session, stream):
                return
            for data, fin in chunks:
                self._deliver(stream, data, fin)
        kept: deque[tuple[int, bytes]] = deque()
        for owner, payload in self._datagrams:
            if owner == sid and session.state is SessionState.ESTABLISHED:
                self._events.append(ev.DatagramReceived(sid, payload))
            else:
                kept.append((owner, payload))
        self._datagrams = kept

    def _unbuffer(self, stream: WtStream) -> list[tuple[bytes, bool]]:
        chunks = stream.buffer or []
        if stream.buffer is not None:
            stream.buffer = None
            self._buffered_streams -= 1
        return chunks

    def _reject_buffered(self, session_id: int) -> None:
        """Streams and datagrams that waited for a session that will not come (§4.7)."""
        for stream in [s for s in self._streams.values() if s.session_id == session_id]:
            if stream.buffer is not None:
                self._unbuffer(stream)
                del self._streams[stream.stream_id]
                self._refuse_stream(stream.stream_id, H3ErrorCode.WT_BUFFERED_STREAM_REJECTED)
        self._datagrams = deque(d for d in self._datagrams if d[0] != session_id)

    def _refuse_stream(self, sid: int, code: int) -> None:
        """Stop reading (and reset the sending half of) a peer stream we cannot use."""
        self.quic.stop_stream(sid, code)
        if not sid & 2:
            self.quic.reset_stream(sid, code)

    def _stop_stream(self, stream: WtStream, code: int) -> None:
        if stream.buffer is not None:
            self._unbuffer(stream)
        if not stream.send_done:
            self.quic.reset_stream(stream.stream_id, code)
        if not stream.recv_done:
            self.quic.stop_stream(stream.stream_id, code)

    def _maybe_forget(self, session: Session, stream: WtStream) -> None:
        if not stream.finished:
            return
        self._streams.pop(stream.stream_id, None)
        session.streams.discard(stream.stream_id)
        if not stream.local and session.flow is not None:
            session.flow.on_peer_stream_closed(stream.bidi)  # credit back (§5.3)
            self._flush_flow_updates()

    def _on_reset(self, sid: int, http_code: int) -> None:
        final_size = self._final_sizes.pop(sid, None)
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
        stream.recv_done = True
        if session.flow is not None and final_size is not None:
            unseen = final_size - stream.header_size - stream.received
            try:
                if unseen > 0:
                    session.flow.on_data_received(unseen)  # draft-16 §5.4
            except SessionAbort as exc:
                self._abort(session, exc.error_code, exc.reason)
                return
        self._events.append(
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

    def _on_stop_sending(self, sid: int, http_code: int) -> None:
        session = self._sessions.get(sid)
        if session is not None:
            if session.state is not SessionState.ESTABLISHED:
                # before the final response STOP_SENDING only ends the request body
                # (RFC 9114 §4.1.1); a refusal comes as a response or a reset
                return
            self._on_connect_reset(session, http_code)
            return
        stream = self._streams.get(sid)
        if stream is None or stream.send_done or stream.buffer is not None:
            return
        session = self._sessions.get(stream.session_id)
        if session is None:
            return
        stream.send_done = True  # QUIC answers STOP_SENDING with RESET_STREAM
        self._events.append(
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
                self.h3.send_data(session_id, capsule)  # draft-16 §5.6.3
            raise FlowControlBlocked(session_id, kind)
        sid = self.h3.create_webtransport_stream(session_id, bidirectional)
        if flow is not None:
            flow.on_open(bidirectional)
        self._streams[sid] = WtStream(sid, session_id, local=True)
        session.streams.add(sid)
        return sid

    def send_stream_data(
        self, stream_id: int, data: bytes | bytearray | memoryview, end_stream: bool = False
    ) -> int:
        """Queue ``data``; returns how many bytes the draft-16 session data limit let
        through (all of them without flow control). FIN is sent only with the last byte."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.send_done:
            raise WebTransportError(f"stream {stream_id} cannot send")
        session = self._usable(stream.session_id)
        flow = session.flow
        size = len(data)
        if flow is not None and size > flow.send_credit():
            size = flow.send_credit()
            data = memoryview(data)[:size]
            end_stream = False
            capsule = flow.blocked_capsule("data")
            if capsule is not None:
                self.h3.send_data(session.session_id, capsule)  # draft-16 §5.6.5
        if flow is not None:
            flow.on_sent(size)
        if size or end_stream:
            self.quic.send_stream_data(stream_id, data, end_stream)
        if end_stream:
            stream.send_done = True
            self._maybe_forget(session, stream)
        return size

    def reset_stream(self, stream_id: int, code: int = 0) -> None:
        """Abandon sending on a stream with application error ``code`` (§4.4)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.send_done:
            raise WebTransportError(f"stream {stream_id} cannot be reset")
        self.quic.reset_stream(stream_id, webtransport_code_to_http_code(code))
        stream.send_done = True
        session = self._sessions.get(stream.session_id)
        if session is not None:
            self._maybe_forget(session, stream)

    def stop_sending(self, stream_id: int, code: int = 0) -> None:
        """Stop reading a stream with application error ``code`` (§4.4)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.recv_done:
            raise WebTransportError(f"stream {stream_id} is not being read")
        self.quic.stop_stream(stream_id, webtransport_code_to_http_code(code))
        stream.recv_done = True
        session = self._sessions.get(stream.session_id)
        if session is not None:
            self._maybe_forget(session, stream)

    # ==================================================================================
    # datagrams (draft-16 §4.5, §4.7)
    # ==================================================================================

    def _on_datagram(self, session_id: int, data: bytes) -> None:
        session = self._sessions.get(session_id)
        if session is not None and session.state is SessionState.ESTABLISHED:
            self._events.append(ev.DatagramReceived(session_id, data))
        elif (
            session_id not in self._closed
            and len(self._datagrams) < self.config.max_buffered_datagrams
        ):
            self._datagrams.append((session_id, data))  # else dropped (§4.7)

    def send_datagram(self, session_id: int, data: bytes | bytearray | memoryview) -> None:
        """Send a datagram; raises ValueError when it cannot fit a QUIC packet."""
        self._usable(session_id)
        self.h3.send_datagram(session_id, data)
