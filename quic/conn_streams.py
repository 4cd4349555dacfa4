"""The streams of one connection: frames in, frames out, connection flow control.

Theory of operation
-------------------
:class:`StreamController` owns the :class:`~quic.stream_manager.StreamManager` (stream
ids, limits, the stream objects) and the connection-level flow control of RFC 9000 §4.1
(our :class:`ReceiveWindow`, the peer's :class:`SendCredit`). The connection routes the
stream-related frames to its ``on_*`` methods and asks it to write frames into 1-RTT
packets; each frame written registers a handler on the packet so the controller learns
whether it was acknowledged or lost (RFC 9000 §13.3) and repairs accordingly.

Data is delivered in push style: in-order bytes are read out of a stream and reported as
:class:`~quic.events.StreamDataReceived`. A 1-RTT STREAM frame queues a
:class:`DeferredDelivery` marker (one per stream until it is taken) instead of an event:
when the connection's owner takes it (:meth:`QuicConnection.next_event`), everything the
stream has in order by then leaves as one event in the marker's place, so the packets of
a received batch cost one read and one event per stream, and order against every other
event of the connection is kept (a reset delivers what is pending first). 0-RTT data is
delivered frame by frame, each event carrying its origin. Flow-control credit is
*not* returned on delivery: the consumer calls :meth:`StreamController.consume` when it
is done with the bytes (RFC 9000 §4.2), so memory held by a slow reader is bounded by the
windows we advertised. A reset stream or one we stop reading returns its outstanding
credit at once (the consumer drops those bytes). A stream leaves the table once both
halves are finished and its delivered bytes consumed — also when its FIN arrives in a
frame of its own, after the data was delivered (RFC 9000 §3.2 "Data Read").

Sending is round-robin over streams with data ready (``_sendable``, insertion-ordered),
bounded by stream and connection credit; when a stream is blocked by credit a
STREAM_DATA_BLOCKED / DATA_BLOCKED frame is sent once per limit (§4.1). Every frame is
built by the codec's encoders and written only if it fits the open packet; what does
not fit stays owed for the next packet.

Resets: RESET_STREAM, and RESET_STREAM_AT (draft-ietf-quic-reliable-stream-reset) when
the application gives a reliable size and the peer sent the ``reset_stream_at``
transport parameter (§3). After a RESET_STREAM_AT the bytes below the reliable size keep
flowing (and are retransmitted) until the frame and they are acknowledged. On receipt,
every contiguous byte is delivered as :class:`~quic.events.StreamDataReceived` first
and the reset is reported once all bytes below the reliable size were delivered, as one
:class:`~quic.events.StreamReset` carrying that size (0 for RESET_STREAM).

Time is an argument of every method that needs it (flow-control auto-tuning reads it
when credit is released); the smoothed RTT is read from the connection's
:class:`~quic.rtt.RttEstimator`, which the controller is given at construction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quic.errors import QuicProtocolError, StreamResetError, TransportErrorCode
from quic.events import (
    QuicEvent,
    StopSendingReceived,
    StreamReset,
    StreamWritable,
    stream_data_received,
)
from quic.flow_control import ReceiveWindow, SendCredit
from quic.frames import (
    FrameType,
    encode_data_blocked_frame,
    encode_max_data_frame,
    encode_max_stream_data_frame,
    encode_max_streams_frame,
    encode_reset_stream_at_frame,
    encode_reset_stream_frame,
    encode_stop_sending_frame,
    encode_stream_data_blocked_frame,
    encode_stream_frame_header,
    encode_streams_blocked_frame,
    pack_stream_bulk_header,
)
from quic.packet_builder import PacketAssembler
from quic.recovery_state import FrameHandler
from quic.rtt import RttEstimator
from quic.stream_acks import merging_fire_acked
from quic.stream_manager import (
    FRAME_RESET_STREAM,
    FRAME_RESET_STREAM_AT,
    StreamLimits,
    StreamManager,
)
from quic.stream_recv import (
    DEFAULT_MAX_REASSEMBLY_BYTES,
    DEFAULT_MAX_REASSEMBLY_FRAGMENTS,
    DEFAULT_MAX_STREAM_FRAGMENTS,
    RecvState,
    RecvStream,
)
from quic.stream_send import SendState, SendStream
from quic.tparams import TransportParameters

#: Sending parts that may still send data or a FIN (RFC 9000 §3.1).
_STILL_SENDING = frozenset((SendState.READY, SendState.SEND))

if TYPE_CHECKING:
    from quic.qlog import QuicLogger

__all__ = ["StreamController"]

_STREAM_HEADER_MAX = 1 + 8 + 8 + 2  # worst case; STREAM_DATA_BLOCKED fits in it
_BULK_END = 0x40000000  # the offsets of a 4-byte varint end here (RFC 9000 §16)
_VARINT_FRAME_MAX = 1 + 8  # MAX_DATA, MAX_STREAMS, DATA_BLOCKED, STREAMS_BLOCKED
# RESET_STREAM_AT (1+8+8+8+8) + STOP_SENDING (1+8+8) + MAX_STREAM_DATA (1+8+8) of one stream
_STREAM_CONTROL_MAX = 33 + 17 + 17


@dataclass(frozen=True, slots=True)
class DeferredDelivery(QuicEvent):
    """A place in the connection's event queue where a stream's in-order bytes are
    delivered when the event is taken (internal: never leaves the connection)."""

    stream_id: int


_new_event = object.__new__  # a marker per delivery: no dataclass __init__ (frozen)
_set_deferred_id = vars(DeferredDelivery)["stream_id"].__set__


class StreamController:
    """Streams and connection-level flow control of one connection."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_control",
        "_deferred",
        "_eof_reported",
        "_events",
        "_live",
        "_qlog",
        "_rtt_estimator",
        "_sendable",
        "_write_blocked",
        "credit",
        "early_data",
        "is_client",
        "local_reset_stream_at",
        "manager",
        "peer_reset_stream_at",
        "send_buffer_high",
        "window",
    )

    def __init__(
        self,
        is_client: bool,
        local: StreamLimits,
        initial_max_data: int,
        max_data_window: int,
        max_stream_window: int,
        send_buffer_high: int,
        events: list[QuicEvent],
        rtt: RttEstimator,
        *,
        max_stream_fragments: int = DEFAULT_MAX_STREAM_FRAGMENTS,
        max_reassembly_bytes: int = DEFAULT_MAX_REASSEMBLY_BYTES,
        max_reassembly_fragments: int = DEFAULT_MAX_REASSEMBLY_FRAGMENTS,
        reset_stream_at: bool = False,
        qlog: QuicLogger | None = None,
    ) -> None:
        self.is_client = is_client
        self._qlog = qlog  # stream_state_updated: each state, and gone from every table
        self.manager = StreamManager(
            is_client,
            local,
            max_stream_window=max_stream_window,
            max_stream_fragments=max_stream_fragments,
            max_reassembly_bytes=max_reassembly_bytes,
            max_reassembly_fragments=max_reassembly_fragments,
        )
        self.manager.stream_trace = qlog.stream_side_updated if qlog is not None else None
        self._live = self.manager.streams  # the manager's table itself (read, per packet)
        self.credit = SendCredit(0)  # the peer's initial_max_data, then MAX_DATA
        self.window = ReceiveWindow(initial_max_data, max_data_window)
        self.send_buffer_high = send_buffer_high
        self._events = events
        self._sendable: dict[int, None] = {}  # streams with data/FIN ready, in order
        self._control: dict[int, None] = {}  # streams with control frames to check
        # dicts as sets: 64 B empty, not 216 (idle memory)
        self._write_blocked: dict[int, None] = {}
        self._eof_reported: dict[int, None] = {}
        self._deferred: dict[int, None] = {}  # streams with a DeferredDelivery queued
        self._rtt_estimator = rtt
        self._fate = self._stream_fate  # one object: fire_acked finds its frames by identity
        #: LossRecovery.fire_acked for this connection (the connection puts it there)
        self.fire_acked = merging_fire_acked(self._fate)
        # the peer accepts RESET_STREAM_AT (draft-ietf-quic-reliable-stream-reset §3)
        self.peer_reset_stream_at = False
        # we advertised reset_stream_at: the peer may send RESET_STREAM_AT
        self.local_reset_stream_at = reset_stream_at
        # server, until the handshake completes: stream data can only have come in
        # 0-RTT packets (RFC 9001 §5.7); reported in StreamDataReceived.early_data
        self.early_data = not is_client

    @property
    def rtt(self) -> float:
        """Smoothed RTT for flow-control auto-tuning (RFC 9002 §5.3; the initial RTT
        before the first sample)."""
        return self._rtt_estimator.smoothed_rtt

    # -- configuration ------------------------------------------------------------------

    def apply_peer_params(self, params: TransportParameters) -> None:
        """The peer's stream and connection limits (RFC 9000 §18.2)."""
        peer = StreamLimits(
            max_streams_bidi=params.initial_max_streams_bidi,
            max_streams_uni=params.initial_max_streams_uni,
            max_stream_data_bidi_local=params.initial_max_stream_data_bidi_local,
            max_stream_data_bidi_remote=params.initial_max_stream_data_bidi_remote,
            max_stream_data_uni=params.initial_max_stream_data_uni,
        )
        self.set_peer_limits(peer, params.initial_max_data)
        self.peer_reset_stream_at = params.reset_stream_at

    def set_peer_limits(self, peer: StreamLimits, initial_max_data: int) -> None:
        self.manager.set_peer_limits(peer)
        self.credit.update_limit(initial_max_data)
        for sid, stream in self.manager.streams.items():
            if stream.send is not None and stream.send.needs_send:
                self._sendable[sid] = None

    # -- application API --------------------------------------------------------------

    def compact(self) -> None:
        """A quiet connection (its keys rest): tables that grew and emptied give their
        storage back (``dict.clear`` on an empty dict frees its table; issue 10)."""
        for table in (self._sendable, self._deferred):
            if not table:
                table.clear()

    def open_stream(self, bidi: bool) -> int:
        """Open a local stream (raises StreamLimitReached when the peer forbids it)."""
        return self.manager.open_stream(bidi)

    def send(self, stream_id: int, data: bytes | bytearray | memoryview, end: bool) -> bool:
        """Queue data; returns False when the send buffer is above its high mark."""
        stream = self._live.get(stream_id)
        if stream is None:
            stream = self.manager.stream_for_frame(stream_id, FrameType.MAX_STREAM_DATA)
        if stream is None or stream.send is None:
            raise ValueError(f"stream {stream_id} cannot send (closed or receive-only)")
        send = stream.send
        send.write(data, end)
        self._sendable[stream_id] = None
        high = self.send_buffer_high
        # buffered never exceeds write_offset: the attribute first, the property only then
        if send.write_offset > high and send.buffered > high:
            self._write_blocked[stream_id] = None
            return False
        return True

    def consume(self, stream_id: int, n: int, now: float) -> bool:
        """The application is done with ``n`` delivered bytes of ``stream_id``: return
        their stream and connection credit (RFC 9000 §4.1, §4.2). True when a credit
        frame (MAX_DATA, MAX_STREAM_DATA, MAX_STREAMS) is owed: only then is a send due."""
        stream = self._live.get(stream_id)
        if stream is None or stream.recv is None:
            return False
        recv = stream.recv
        rtt = self._rtt_estimator.smoothed_rtt
        credited = recv.consume(n, now, rtt)
        if not credited:
            return False
        self.window.on_consumed(credited, now, rtt)
        if recv.window.should_update():
            self._control[stream_id] = None
        send = stream.send  # maybe_discard's cheap test first: an echo's reply pending
        if send is None or send.finished:
            self._maybe_discard(stream_id)
        return self.wants_control()

    def send_buffered(self, stream_id: int) -> int:
        stream = self._live.get(stream_id)
        if stream is None or stream.send is None:
            return 0
        return stream.send.buffered

    def reset(self, stream_id: int, error_code: int, reliable_size: int | None = None) -> None:
        """Reset our sending half: RESET_STREAM, or RESET_STREAM_AT delivering the first
        ``reliable_size`` bytes (raises ValueError if the peer does not accept it, §3,
        or for a size beyond the data written)."""
        stream = self._live.get(stream_id)
        if stream is None or stream.send is None:
            return
        send = stream.send
        if reliable_size and not self.peer_reset_stream_at:
            raise ValueError("the peer does not accept RESET_STREAM_AT (reset_stream_at)")
        if send.reset(error_code, reliable_size or 0):
            self._control[stream_id] = None
            if send.needs_send:
                self._sendable[stream_id] = None
        self._write_blocked.pop(stream_id, None)

    def set_reliable_floor(self, stream_id: int, size: int) -> None:
        """See :meth:`QuicConnection.set_reliable_floor`."""
        if not self.peer_reset_stream_at:
            raise ValueError("the peer does not accept RESET_STREAM_AT (reset_stream_at)")
        stream = self._live.get(stream_id)
        if stream is not None and stream.send is not None:
            stream.send.set_reliable_floor(size)

    def set_stop_sending_answer(self, stream_id: int, error_code: int) -> None:
        """See :meth:`QuicConnection.set_stop_sending_answer`."""
        stream = self._live.get(stream_id)
        if stream is not None and stream.send is not None:
            stream.send.set_stop_sending_answer(error_code)

    def stop_sending(self, stream_id: int, error_code: int, now: float) -> None:
        stream = self._live.get(stream_id)
        if stream is None or stream.recv is None:
            return
        if stream.recv.stop_sending(error_code):
            self._control[stream_id] = None
        self._release(stream.recv.pop_released() + stream.recv.release_uncredited(), now)
        self._maybe_discard(stream_id)

    # -- frames received --------------------------------------------------------------

    def on_stream(
        self, stream_id: int, offset: int, data: bytes, fin: bool, ftype: int, now: float
    ) -> None:
        stream = self._live.get(stream_id)
        recv = stream.recv if stream is not None else None
        if recv is None:  # not open yet, gone, or no receiving part: the manager's checks
            delta = self.manager.on_stream_frame(stream_id, offset, data, fin, ftype)
        else:  # manager.on_stream_frame's common case, without the call
            try:
                delta = recv.on_stream_frame(offset, data, fin)
            except QuicProtocolError as exc:
                exc.frame_type = exc.frame_type or ftype
                raise
        if delta:  # _count_received, inline: once per packet on a bulk receiver
            window = self.window
            total = window.highest_received + delta
            if total > window.max_data:  # FLOW_CONTROL_ERROR (RFC 9000 §4.1)
                self._count_received(delta, ftype)
            window.highest_received = total
        if self.early_data:
            self._deliver(stream_id, now)  # 0-RTT: each event carries its origin
        elif stream_id not in self._deferred:
            # Delivery waits until the event is taken (deliver_deferred): the bytes of
            # every packet of a batch leave as one event, in this event's place.
            self._deferred[stream_id] = None
            marker = _new_event(DeferredDelivery)  # DeferredDelivery(stream_id), inline
            _set_deferred_id(marker, stream_id)  # (tests/quic/test_hot_path_inlines.py)
            self._events.append(marker)
        if self.manager.opened_by_peer:  # most frames open none
            self._deliver_new_peer_streams()

    def ends_our_exchange(self, stream_id: int) -> bool:
        """``stream_id`` is a bidirectional stream *we* opened whose sending part has
        sent its FIN or was reset: the peer's FIN on it ends an exchange we started (a
        response to our request) and nothing of ours will follow on it. False for a
        stream the peer opened, one without a sending part, or one no longer in the
        table. (A peer-opened stream is left out on purpose: acknowledging at once the
        FIN that ends a peer's stream, e.g. a browser's CONNECT stream after our close
        capsule, changed the order in which Chromium saw its stream end and the close
        capsule: it reported "Connection lost" under load.)"""
        if (stream_id & 1) != (not self.is_client):  # RFC 9000 §2.1: the initiator bit
            return False
        stream = self._live.get(stream_id)
        send = stream.send if stream is not None else None
        return send is not None and send.state not in _STILL_SENDING

    def deliver_deferred(self, stream_id: int, now: float) -> QuicEvent | None:
        """The connection took a :class:`DeferredDelivery` off its event queue: what
        the stream has in order now is returned, to leave in the marker's place, ahead
        of every queued event (None if a reset or an earlier delivery took it already;
        a reset found now is queued behind the others, as ever)."""
        self._deferred.pop(stream_id, None)
        return self._deliver(stream_id, now, front=True)

    def _count_received(self, delta: int, frame_type: int) -> None:
        """New bytes against the connection's limit: FLOW_CONTROL_ERROR beyond it (RFC
        9000 §4.1), naming the frame that carried them (§19.19)."""
        try:
            self.window.on_received(delta)
        except QuicProtocolError as exc:
            exc.frame_type = exc.frame_type or frame_type
            raise

    def _deliver(self, stream_id: int, now: float, front: bool = False) -> QuicEvent | None:
        """Deliver what ``stream_id`` has in order: its event is queued, or returned
        with ``front`` (:meth:`deliver_deferred`)."""
        stream = self._live.get(stream_id)
        if stream is None or stream.recv is None:
            return None
        recv = stream.recv
        # Delivered, not yet credited: credit returns through consume() once the
        # application is done with the bytes (RFC 9000 §4.2), so a reader that does not
        # keep up holds at most the windows we advertised.
        # read() also when only the FIN is new: it moves the half to "Data Read" so
        # that the finished stream can leave the table (RFC 9000 §3.2)
        reset = recv.is_reset
        data = b""
        if recv.readable or (recv.at_eof and not reset):
            data = recv.read(-1, now=now, rtt=self._rtt_estimator.smoothed_rtt, credit=False)
        released = recv.pop_released()
        if released:
            self._release(released, now)
        end = not reset and recv.at_eof and stream_id not in self._eof_reported
        if end:
            self._eof_reported[stream_id] = None
        event = None
        if data or end:
            event = stream_data_received(stream_id, data, end, self.early_data)
            if not front:
                self._events.append(event)
                event = None
        if reset:
            if recv.state is RecvState.RESET_RECVD:
                self._report_reset(stream_id, recv, now)
            return event
        if recv.window.should_update():
            self._control[stream_id] = None
        # maybe_discard's tests first: delivered bytes wait for consume(), which retires
        if end and not recv.uncredited and (stream.send is None or stream.send.finished):
            self._maybe_discard(stream_id)
        return event

    def _deliver_new_peer_streams(self) -> None:
        # Streams opened implicitly (§3.2) exist now; nothing to deliver until data.
        manager = self.manager
        if manager.opened_by_peer:  # most frames open none: no call, no new list
            manager.take_opened_by_peer()  # qlog: each half logs its states itself

    def on_reset_stream(
        self,
        stream_id: int,
        error_code: int,
        final_size: int,
        now: float,
        reliable_size: int | None = None,
    ) -> None:
        """RESET_STREAM, or RESET_STREAM_AT with ``reliable_size``: the bytes below the
        reliable size are delivered before the reset is reported."""
        delta = self.manager.on_reset_stream(stream_id, error_code, final_size, reliable_size)
        if delta:
            reset_type = FRAME_RESET_STREAM if reliable_size is None else FRAME_RESET_STREAM_AT
            self._count_received(delta, reset_type)
        self._deliver(stream_id, now)
        self._deliver_new_peer_streams()

    def on_reset_stream_at(
        self,
        stream_id: int,
        error_code: int,
        final_size: int,
        reliable_size: int,
        now: float,
    ) -> None:
        """RESET_STREAM_AT (draft-ietf-quic-reliable-stream-reset §4). Unless we sent
        the reset_stream_at transport parameter the frame type is not one we know: RFC
        9000 §12.4 makes that FRAME_ENCODING_ERROR (the draft names no other code)."""
        if not self.local_reset_stream_at:
            raise QuicProtocolError(
                TransportErrorCode.FRAME_ENCODING_ERROR,
                "RESET_STREAM_AT without the reset_stream_at transport parameter",
                FRAME_RESET_STREAM_AT,
            )
        self.on_reset_stream(stream_id, error_code, final_size, now, reliable_size)

    def _report_reset(self, stream_id: int, recv: RecvStream, now: float) -> None:
        """Every byte the reset delivers was delivered: report it, once."""
        code = recv.reset_error_code or 0
        final = recv.final_size or 0
        self._events.append(StreamReset(stream_id, code, final, recv.reliable_size))
        with contextlib.suppress(StreamResetError):
            recv.read()  # moves the receive half to "Reset Read" (RFC 9000 §3.2)
        # the consumer drops what it held of a reset stream: its credit comes back too
        self._release(recv.pop_released() + recv.release_uncredited(), now)
        self._maybe_discard(stream_id)

    def on_stop_sending(self, stream_id: int, error_code: int) -> None:
        if self.manager.on_stop_sending(stream_id, error_code):
            self._control[stream_id] = None
            self._write_blocked.pop(stream_id, None)
            self._events.append(StopSendingReceived(stream_id, error_code))

    def on_max_data(self, limit: int) -> None:
        if self.credit.update_limit(limit):
            for sid, stream in self.manager.streams.items():
                if stream.send is not None and stream.send.unsent:
                    self._sendable[sid] = None

    def on_max_stream_data(self, stream_id: int, limit: int) -> None:
        if self.manager.on_max_stream_data(stream_id, limit):
            self._sendable[stream_id] = None

    def on_max_streams(self, bidi: bool, limit: int) -> None:
        self.manager.on_max_streams(bidi, limit)

    def on_stream_data_blocked(self, stream_id: int, limit: int) -> None:
        stream = self.manager.on_stream_data_blocked(stream_id, limit)
        if stream is not None and stream.recv is not None and stream.recv.window.should_update():
            self._control[stream_id] = None  # a grown window: its MAX_STREAM_DATA now
        self._deliver_new_peer_streams()

    # -- frames to send ---------------------------------------------------------------

    def has_data(self) -> bool:
        return bool(self._sendable)

    def wants_control(self) -> bool:
        # window.should_update(), manager.has_pending_control() inline: asked per packet
        w = self.window  # (tests/quic/test_hot_path_inlines.py)
        return bool(self._control or self.manager.control_pending or w.resend) or (
            (w.max_data - w.consumed) * 2 <= w.window and w.consumed + w.window > w.max_data
        )

    def write_control(self, b: PacketAssembler) -> None:
        """MAX_DATA, MAX_STREAM(S)_DATA, BLOCKED, RESET_STREAM, STOP_SENDING frames.

        A frame is taken from its owner only when the packet has room for it; what
        does not fit stays owed for the next packet."""
        handlers = b.packet.handlers
        written = False
        window = self.window
        if window.should_update() and b.room >= _VARINT_FRAME_MAX:
            limit = window.next_limit()
            b.push(encode_max_data_frame(limit))
            handlers.append((self._max_data_fate, (limit,)))
            written = True
        manager = self.manager
        if b.room >= 2 * _VARINT_FRAME_MAX:  # at most one frame per direction
            for bidi, limit in manager.max_streams_frames():
                b.push(encode_max_streams_frame(bidi, limit))
                handlers.append((self._max_streams_fate, (bidi, limit)))
                written = True
        if b.room >= 2 * _VARINT_FRAME_MAX:
            for bidi, limit in manager.streams_blocked_frames():
                b.push(encode_streams_blocked_frame(bidi, limit))
                handlers.append((self._streams_blocked_fate, (bidi, limit)))
                written = True
        control = self._control
        while control and b.room >= _STREAM_CONTROL_MAX:
            sid = next(iter(control))
            del control[sid]
            written |= self._write_stream_control(b, sid)
        if written:
            b.packet.ack_eliciting = True
            b.packet.in_flight = True

    def _write_stream_control(self, b: PacketAssembler, sid: int) -> bool:
        """RESET_STREAM, STOP_SENDING and MAX_STREAM_DATA of one stream (at most
        :data:`_STREAM_CONTROL_MAX` bytes, checked by the caller)."""
        stream = self._live.get(sid)
        if stream is None:
            return False
        handlers = b.packet.handlers
        written = False
        send, recv = stream.send, stream.recv
        if send is not None:
            reset = send.reset_frame()
            if reset is not None:
                code, final, reliable = reset
                if reliable is None:
                    b.push(encode_reset_stream_frame(sid, code, final))
                else:
                    b.push(encode_reset_stream_at_frame(sid, code, final, reliable))
                handlers.append((self._reset_fate, (sid, send, reliable)))
                written = True
        if recv is not None:
            code_stop = recv.stop_sending_frame()
            if code_stop is not None:
                b.push(encode_stop_sending_frame(sid, code_stop))
                handlers.append((self._stop_sending_fate, (sid, recv)))
                written = True
            limit = recv.max_stream_data_frame()
            if limit is not None:
                b.push(encode_max_stream_data_frame(sid, limit))
                handlers.append((self._max_stream_data_fate, (sid, recv, limit)))
                written = True
        return written

    def write_streams(self, b: PacketAssembler) -> bool:
        """Fill the packet with STREAM frames, round-robin over ready streams; returns
        :meth:`has_data` (the bulk send loop's next question). The bulk case, one
        stream whose frame :meth:`bulk_frames` gives, needs no loop and no rotation;
        every other case goes to the general loop (:meth:`_write_streams`)."""
        sendable = self._sendable
        if len(sendable) == 1:
            frames = self.bulk_frames(b.room, 1)
            if frames:
                header, data, handler = frames[0]
                b.push_frame(header, data)
                packet = b.packet
                packet.handlers.append(handler)
                packet.ack_eliciting = packet.in_flight = True
                return True  # bulk_frames' condition: the stream has data left
        return self._write_streams(b) if sendable else False

    def bulk_frames(
        self, room: int, count: int
    ) -> list[tuple[bytes, bytes | memoryview, FrameHandler]]:
        """The STREAM frames of up to ``count`` packets with ``room`` payload bytes each
        that :meth:`_write_streams` would write, leaving all its bookkeeping as it was:
        one stream sendable, not resetting, whose new data fills each frame from one
        chunk and goes on beyond it within the stream's and the connection's credit.
        Each is ``(header, data, fate handler)``, the connection's credit charged
        (:meth:`write_streams`; :meth:`PacketAssembler.short_frame_run`, the bulk send
        loop); the list ends before the first frame that is not such a frame (empty:
        nothing changed), which the general loop writes."""
        sendable = self._sendable
        if len(sendable) != 1:
            return []
        sid = next(iter(sendable))
        stream = self._live.get(sid)
        send = stream.send if stream is not None else None
        if send is None or send.reset_pending:
            return []
        offset = send.highest_sent
        if send.write_offset - offset <= room - 21:  # the test below's (end <= write
            return []  # offset, header <= 21 bytes) without its sums: a short message
        n = room - (  # the STREAM header this frame can have (_write_streams)
            (1 if sid < 0x40 else 8)
            + (4 if send.write_offset < 0x40000000 else 8)
            + (2 if room < 0x4000 else 4)
            + 1
        )
        credit = self.credit
        # a frame must end short of the data, the stream's and the connection's credit
        end = min(send.write_offset, send.credit.max_data, offset + credit.max_data - credit.used)
        if n < 1 or end - offset <= n:
            return []
        most = (end - offset - 1) // n
        pieces = send.next_new_run(n, most if most < count else count)
        credit.used += n * len(pieces)
        fate = self._fate
        frames: list[tuple[bytes, bytes | memoryview, FrameHandler]] = []
        append = frames.append
        if sid < 0x40 and 0x40 <= n < 0x4000 and 0x4000 <= offset <= _BULK_END - n * len(pieces):
            # every header in encode_stream_frame_header's 8-byte shape: packed here
            raw = offset | 0x80000000
            length = n | 0x4000
            for data in pieces:
                header = pack_stream_bulk_header(0x0E, sid, raw, length)
                append((header, data, (fate, (sid, send, offset, n, False))))
                offset += n
                raw += n
            return frames
        for data in pieces:
            header = encode_stream_frame_header(sid, offset, n, False)
            append((header, data, (fate, (sid, send, offset, n, False))))
            offset += n
        return frames

    def _write_streams(self, b: PacketAssembler) -> bool:
        """:meth:`write_streams`' general loop."""
        sendable = self._sendable
        credit = self.credit
        live = self._live
        packet = b.packet
        handlers = packet.handlers
        fate = self._fate
        for sid in list(sendable):
            stream = live.get(sid)
            send = stream.send if stream is not None else None
            if send is None:
                del sendable[sid]
                continue
            # Reserve the STREAM header this frame can have, not the worst case: its
            # offset is below the write offset and its length below the room (§19.8).
            space = b.room
            room = (
                space
                - (1 if sid < 0x40 else 8)
                - (4 if send.write_offset < 0x40000000 else 8)
                - (2 if space < 0x4000 else 4)
                - 1
            )
            if room <= 0:
                break
            before = send.highest_sent
            # credit.available() unclamped: next_frame treats <= 0 alike
            frame = send.next_frame(room, credit.max_data - credit.used)
            if frame is None:
                if space < _STREAM_HEADER_MAX:
                    break  # no room for STREAM_DATA_BLOCKED: look again next packet
                del sendable[sid]
                limit = send.blocked_frame()  # room >= _STREAM_HEADER_MAX: it fits
                if limit is not None:
                    b.push(encode_stream_data_blocked_frame(sid, limit))
                    handlers.append((self._stream_blocked_fate, (send, limit)))
                    packet.ack_eliciting = packet.in_flight = True
                continue
            offset, data, fin = frame
            grown = send.highest_sent - before
            if grown:
                credit.used += grown
            n = len(data)
            b.push_frame(encode_stream_frame_header(sid, offset, n, fin), data)
            handlers.append((fate, (sid, send, offset, n, fin)))
            packet.ack_eliciting = packet.in_flight = True
            # rotate: a stream that still has data goes to the back of the queue
            del sendable[sid]
            stream_credit = send.credit
            if (  # new data within its credit (needs_send's usual True), or just out of
                send.write_offset > send.highest_sent  # it: STREAM_DATA_BLOCKED next (§4.1)
                and (stream_credit.max_data > stream_credit.used or stream_credit.blocked_at)
            ) or send.needs_send:  # (a frame was just written: the limit is above 0)
                sendable[sid] = None
            if send.reset_pending and send.reset_ready:
                self._control[sid] = None  # a RESET_STREAM_AT waited for these bytes
        if sendable and credit.max_data <= credit.used and self._blocked_by_connection():
            limit_c = credit.blocked_at
            if limit_c is not None and b.room >= _VARINT_FRAME_MAX:
                credit.mark_blocked_sent()
                b.push(encode_data_blocked_frame(limit_c))
                handlers.append((self._data_blocked_fate, (limit_c,)))
                packet.ack_eliciting = packet.in_flight = True
        return bool(sendable)

    def _blocked_by_connection(self) -> bool:
        for sid in self._sendable:
            stream = self._live.get(sid)
            if stream is not None and stream.send is not None and stream.send.unsent:
                return True
        return False

    # -- fate of frames ---------------------------------------------------------------

    def _stream_fate(
        self, acked: bool, sid: int, send: SendStream, offset: int, n: int, fin: bool
    ) -> None:
        if acked:
            buffered = send.on_acked(offset, n, fin)
            if sid in self._write_blocked and buffered <= self.send_buffer_high // 2:
                self._write_blocked.pop(sid, None)
                self._events.append(StreamWritable(sid))
            if not buffered and send.finished:  # a finished stream holds no data
                self._maybe_discard(sid)
        else:
            send.on_lost(offset, n, fin)
            if send.needs_send:
                self._sendable[sid] = None

    def _reset_fate(self, acked: bool, sid: int, send: SendStream, reliable: int | None) -> None:
        if acked:
            send.on_reset_acked(reliable)
            self._maybe_discard(sid)
        else:
            send.on_reset_lost(reliable)
            if send.reset_ready:
                self._control[sid] = None

    def _stop_sending_fate(self, acked: bool, sid: int, recv: object) -> None:
        if not acked:
            stream = self._live.get(sid)
            if stream is not None and stream.recv is not None:
                stream.recv.on_stop_sending_lost()
                self._control[sid] = None

    def _max_stream_data_fate(self, acked: bool, sid: int, recv: object, limit: int) -> None:
        if not acked:
            stream = self._live.get(sid)
            if stream is not None and stream.recv is not None:
                stream.recv.on_max_stream_data_lost(limit)
                self._control[sid] = None

    def _max_data_fate(self, acked: bool, limit: int) -> None:
        if not acked:
            self.window.on_update_lost(limit)

    def _max_streams_fate(self, acked: bool, bidi: bool, limit: int) -> None:
        if not acked:
            self.manager.on_max_streams_lost(bidi, limit)

    def _streams_blocked_fate(self, acked: bool, bidi: bool, limit: int) -> None:
        if not acked:
            self.manager.on_streams_blocked_lost(bidi, limit)

    def _stream_blocked_fate(self, acked: bool, send: SendStream, limit: int) -> None:
        if not acked:
            send.on_blocked_lost(limit)

    def _data_blocked_fate(self, acked: bool, limit: int) -> None:
        if not acked:
            self.credit.on_blocked_lost(limit)

    # -- housekeeping -----------------------------------------------------------------

    def _release(self, n: int, now: float) -> None:
        if n:
            self.window.on_consumed(n, now, self._rtt_estimator.smoothed_rtt)

    def _maybe_discard(self, sid: int) -> None:
        if self.manager.maybe_discard(sid):
            if self._qlog is not None:
                self._qlog.stream_state_updated(sid, "destroyed")
            self._eof_reported.pop(sid, None)
            self._sendable.pop(sid, None)
            self._control.pop(sid, None)
            self._write_blocked.pop(sid, None)


FrameFate = Callable[..., None]
