"""Where each received frame goes: the receive-side twin of :mod:`quic.conn_send`.

Theory of operation
-------------------
:class:`FrameDispatcher` decodes the frames of one decrypted packet payload with the
codec (:func:`~quic.frames.decode_frame`), checks that each may appear in the packet
type (RFC 9000 §12.4 Table 3, :func:`~quic.frames.check_frame_allowed`) and hands it to
the component that owns it, through ``_HANDLERS``, a table frame class → method:

==========================================  ==========================================
ACK                                         loss recovery (RFC 9002 §6), then ECN
                                            validation (RFC 9000 §13.4.2) and PMTU
                                            discovery (RFC 8899 §4.3)
CRYPTO                                      CRYPTO streams, then the TLS engine
STREAM, RESET_STREAM, STOP_SENDING, MAX_*,  stream controller (RFC 9000 §2-§4)
\\*_BLOCKED, RESET_STREAM_AT                (draft-ietf-quic-reliable-stream-reset)
NEW_CONNECTION_ID, RETIRE_CONNECTION_ID     connection IDs (RFC 9000 §5.1)
PATH_CHALLENGE, PATH_RESPONSE               path manager (RFC 9000 §8.2)
DATAGRAM                                    datagram channel (RFC 9221)
ACK_FREQUENCY, IMMEDIATE_ACK                ACK state (draft-ietf-quic-ack-frequency)
NEW_TOKEN, HANDSHAKE_DONE                   handshake driver (RFC 9000 §19.7, §19.20)
CONNECTION_CLOSE                            the connection (RFC 9000 §10.2)
==========================================  ==========================================

A STREAM frame whose FIN ends a bidirectional stream we opened and on which our own
sending part is done (the end of a response to our request) has its packet acknowledged
at once (:meth:`~quic.conn_acks.AckState.ack_at_once`): nothing of ours on that stream
could carry the ACK, so waiting for the ACK timer would only cost a wake-up and let the
peer's PTO race it (RFC 9000 §13.2.1 asks for an ACK within max_ack_delay). Streams the
peer opened keep the usual delay (see
:meth:`~quic.conn_streams.StreamController.ends_our_exchange`).

What concerns the connection as a whole — TLS released something, the handshake is
confirmed, the peer closed, connection IDs must be (un)routed — goes back through the
callbacks the connection gives at construction; the dispatcher holds no connection
state. Any rule a frame breaks raises :class:`~quic.errors.QuicProtocolError`, which
the connection turns into CONNECTION_CLOSE. A payload without frames is a
PROTOCOL_VIOLATION (§12.4); frames after a CONNECTION_CLOSE are not processed.

The frames of the common packets skip the frame objects and the table: STREAM
(:func:`~quic.frames.decode_stream_frame`), DATAGRAM with Length (decoded by its owner,
``DatagramChannel.on_frame_at``) and, in 1-RTT packets, ACK / ACK_ECN
(:func:`~quic.frames.decode_ack_body`, handled by ``_on_ack_fields``) are decoded
in one call each and handed to their owner directly, with the same errors. Any
other frame but PADDING and PING sets ``general``: a run of packets read together
(:meth:`~quic.conn_receive.PacketReader.read_short_run`) stops after its packet, so
that the connection sees what it changed before the next one is read.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from quic.ack import AckTracker
from quic.conn_ecn import EcnController
from quic.conn_keys import APPLICATION
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.frames import (
    FRAME_INFO,
    ONE_RTT_TAKES_ALL,
    AckFrame,
    AckFrequencyFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    HandshakeDoneFrame,
    ImmediateAckFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamAtFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    check_frame_allowed,
    decode_ack_body,
    decode_frame,
    decode_stream_fields,
    unpack_bulk_stream_fields,
)
from quic.packet import PacketType

if TYPE_CHECKING:
    from quic.cid import ConnectionIdManager
    from quic.conn_acks import AckState
    from quic.conn_crypto import CryptoStreams
    from quic.conn_datagrams import DatagramChannel
    from quic.conn_handshake import HandshakeDriver
    from quic.conn_paths import PathManager
    from quic.conn_pmtu import PmtuDiscovery
    from quic.conn_streams import StreamController
    from quic.qlog import QuicLogger
    from quic.recovery import LossRecovery

# An Enum class attribute (``PacketType.ONE_RTT``) goes through EnumType.__getattr__'s
# slot on Python 3.11, ~10x a global load: the per-packet code reads module aliases.
_ONE_RTT = PacketType.ONE_RTT
_STREAM_OFF_LEN = 0x0E  # STREAM with OFF and LEN, without FIN (RFC 9000 §19.8)
_BULK_STREAM_HEADER = 8  # type, 1-byte ID, 4-byte offset, 2-byte length
_AFTER_BULK_STREAM_HEADER = itemgetter(slice(_BULK_STREAM_HEADER, None))

__all__ = ["PROBING_FRAME_TYPES", "FrameDispatcher", "PeerCloseCallback"]

#: RFC 9000 §9.1: PADDING, NEW_CONNECTION_ID, PATH_CHALLENGE, PATH_RESPONSE
PROBING_FRAME_TYPES = frozenset({0x00, 0x18, 0x1A, 0x1B})

#: The tracked packets an ACK frame that waits for the reply may acknowledge (a
#: ping-pong's: one or two), and the fates they may carry: an ACK frame's
#: (AckTracker.on_ack_fate) and ECN validation's (EcnController._fate), which no event,
#: no send and no deadline waits on (FrameDispatcher._may_wait).
_MAX_WAITING = 4
_QUIET_FATES = frozenset({AckTracker.on_ack_fate, EcnController._fate})

#: on_peer_close(now, error_code, reason, frame_type or None, is_application)
PeerCloseCallback = Callable[[float, int, str, "int | None", bool], None]


class FrameDispatcher:
    """Routes the frames of received packets to the connection's components."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_acks",
        "_cids",
        "_closed",
        "_confirm_handshake",
        "_crypto",
        "_datagrams",
        "_dcid",
        "_ecn",
        "_flush_routing",
        "_handshake",
        "_is_client",
        "_on_peer_close",
        "_on_tls_progress",
        "_paths",
        "_peer_ack_delay_exponent",
        "_pmtu",
        "_qlog",
        "_recovery",
        "_streams",
        "acks_waited",
        "general",
        "non_probing",
    )

    def __init__(
        self,
        *,
        is_client: bool,
        recovery: LossRecovery,
        crypto: CryptoStreams,
        handshake: HandshakeDriver,
        streams: StreamController,
        cids: ConnectionIdManager,
        paths: PathManager,
        datagrams: DatagramChannel,
        acks: AckState,
        ecn: EcnController,
        pmtu: PmtuDiscovery,
        on_tls_progress: Callable[[float], None],
        confirm_handshake: Callable[[float], None],
        on_peer_close: PeerCloseCallback,
        flush_routing: Callable[[], None],
        qlog: QuicLogger | None = None,
    ) -> None:
        self._is_client = is_client
        self._recovery = recovery
        self._crypto = crypto
        self._handshake = handshake
        self._streams = streams
        self._cids = cids
        self._paths = paths
        self._datagrams = datagrams
        self._acks = acks
        self._ecn = ecn
        self._pmtu = pmtu
        self._on_tls_progress = on_tls_progress
        self._confirm_handshake = confirm_handshake
        self._on_peer_close = on_peer_close
        self._flush_routing = flush_routing
        self._qlog = qlog
        self._peer_ack_delay_exponent = 3  # RFC 9000 §18.2 default
        self._dcid = b""  # Destination Connection ID of the packet being dispatched
        self._closed = False  # a CONNECTION_CLOSE was dispatched
        #: The last packet dispatched held a non-probing frame (RFC 9000 §9.1).
        self.non_probing = False
        #: A frame went the general way (not STREAM, DATAGRAM, PADDING, PING, or ACK in
        #: 1-RTT) since the reader last cleared this: it may have changed the connection's state
        #: (a close, a validated path), which a run of packets stops to look at.
        self.general = False
        #: 1-RTT ACK frames set aside for the reply (:meth:`_may_wait`).
        self.acks_waited = 0

    def _may_wait(self, index: int, ranges: tuple[tuple[int, int], ...]) -> bool:
        """A 1-RTT ACK frame of ``ranges`` may wait until the reply to its packet is
        built (``LossRecovery.waiting_ack``; issue 10: the datagram ping-pong's
        critical path). Only one that acknowledges every tracked packet, none skipped
        or lost (``LossRecovery.acks_all``: it can declare nothing lost nor raise), at
        most ``_MAX_WAITING`` of them, with the handshake confirmed and no qlog, and
        whose packets carry only ACK frames' and ECN's fates: until it is processed
        the connection's view is only more cautious — bytes in flight not yet
        released, the window not grown, ACK ranges repeated — and no event, no PMTU
        step, no stream buffer, PING or connection ID waits on it."""
        if self._qlog is not None or not self._handshake.confirmed:
            return False
        st = self._recovery.spaces[index]
        sent = st.sent
        if not (  # LossRecovery.acks_all(), inline: per ACK frame (tests/quic/test_ack_waits)
            ranges
            and ranges[0][1] == st.largest_sent
            and len(ranges) == 1
            and sent
            and ranges[0][0] <= st.lowest_unacked
            and not st.has_skipped
            and not st.lost
        ):
            return False
        if len(sent) > _MAX_WAITING:
            return False
        for packet in sent.values():
            fate = packet.fate  # the bulk loop's STREAM frame: never quiet
            if fate is not None and getattr(fate, "__func__", None) not in _QUIET_FATES:
                return False
            for handler, _ in packet.handlers:
                if getattr(handler, "__func__", None) not in _QUIET_FATES:
                    return False
        return True

    def set_peer_ack_delay_exponent(self, exponent: int) -> None:
        """The peer's ack_delay_exponent transport parameter (RFC 9000 §18.2)."""
        self._peer_ack_delay_exponent = exponent

    def dispatch(
        self, payload: bytes, index: int, packet_type: PacketType, dcid: bytes, now: float
    ) -> bool:
        """Process every frame of a packet; True if the packet was ack-eliciting."""
        end = len(payload)
        if not end:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION, "packet without frames"
            )  # RFC 9000 §12.4
        recovery = self._recovery
        if recovery.waiting_ack is not None:
            recovery.process_waiting_ack()  # in order: before this packet's frames
        self._dcid = dcid
        pos = 0
        ack_eliciting = non_probing = False
        streams = self._streams
        application = index == APPLICATION
        check: bool | None = None  # the frame types need checking: set by a frame object
        while pos < end:
            ftype = payload[pos]
            if ftype & 0xF8 == 0x08 and application:  # 0x08..0x0F
                # STREAM (RFC 9000 §19.8), allowed in 0-RTT and 1-RTT: the bulk case
                if ftype & 0x06 == 0x06 and pos + 8 <= end:  # OFF and LEN
                    # decode_stream_fields' mid-stream case, inline: a call less per packet
                    sid, offset, length = unpack_bulk_stream_fields(payload, pos + 1)
                    stop = pos + 8 + (length & 0x3FFF)
                    if sid < 0x40 and offset >> 30 == 2 and length >> 14 == 1 and stop <= end:
                        data = payload[pos + 8 : stop]
                        offset &= 0x3FFFFFFF
                        fin = ftype & 0x01 == 0x01
                        pos = stop
                    else:  # other varint sizes, or truncated (the codec's error)
                        sid, offset, data, fin, pos = decode_stream_fields(payload, pos)
                else:
                    sid, offset, data, fin, pos = decode_stream_fields(payload, pos)
                ack_eliciting = non_probing = True
                streams.on_stream(sid, offset, data, fin, ftype, now)
                if fin and streams.ends_our_exchange(sid):
                    # The peer's FIN ends an exchange we finished sending our part of
                    # (a response to our request): no reply of ours on this stream can
                    # carry the ACK, so it goes now, not at the ACK timer (RFC 9000
                    # §13.2.1: within max_ack_delay; issue 10: one wake-up and one
                    # transmit fewer per request, and the peer's PTO is not raced).
                    self._acks.ack_at_once()
                continue
            if ftype == 0x31 and application:
                # DATAGRAM with Length (RFC 9221 §4), allowed in 0-RTT and 1-RTT,
                # ack-eliciting and not probing: the datagram case, no frame object
                pos = self._datagrams.on_frame_at(payload, pos)  # decoded there
                ack_eliciting = non_probing = True
                continue
            if ftype <= 0x03 and ftype >= 0x02 and packet_type is _ONE_RTT and ONE_RTT_TAKES_ALL:
                # ACK / ACK_ECN (RFC 9000 §19.3) in a 1-RTT packet: not ack-eliciting,
                # not probing (§9.1); decoded without a frame object
                ranges, delay, ecn, pos = decode_ack_body(payload, pos + 1, ftype)
                non_probing = True
                if recovery.waiting_ack is None and self._may_wait(index, ranges):
                    fields = (ftype, ranges, delay, ecn, index, now)
                    recovery.waiting_ack = (self._on_ack_fields, fields)
                    self.acks_waited += 1
                    continue
                recovery.process_waiting_ack()  # an earlier ACK frame of this packet
                self._on_ack_fields(ftype, ranges, delay, ecn, index, now)
                continue
            frame, pos = decode_frame(payload, pos)
            ftype = frame.frame_type
            if ftype > 0x01:  # beyond PADDING and PING (RFC 9000 §19.1, §19.2)
                self.general = True
            if check is None:
                # RFC 9000 §12.4: a frame decode_frame knows is allowed in any 1-RTT packet
                check = packet_type is not _ONE_RTT or not ONE_RTT_TAKES_ALL
            if check:
                check_frame_allowed(ftype, packet_type)
            if FRAME_INFO[ftype].ack_eliciting:
                ack_eliciting = True
            if ftype not in PROBING_FRAME_TYPES:
                non_probing = True
            _HANDLERS[type(frame)](self, frame, index, now)
            if self._closed:
                break  # RFC 9000 §10.2.2: the peer is draining; nothing more to do
        self.non_probing = non_probing
        return ack_eliciting

    def stream_run(self, stream_id: int, offset: int, payloads: list[bytes], now: float) -> None:
        """The packets ``payloads`` of a 1-RTT run, each one STREAM frame of
        ``stream_id`` with OFF and LEN, without FIN, in the shape
        :data:`~quic.frames.unpack_bulk_stream_fields` reads (its 8-byte header) and
        filling its payload, the first at ``offset`` and each starting where the one
        before ended (:meth:`~quic.conn_receive.PacketReader.read_short_run`'s bulk
        case): what :meth:`dispatch` does with each, as one frame spanning them — the
        same checks (RFC 9000 §4.1, §4.5, §19.8) and the same bytes, in one call."""
        recovery = self._recovery
        if recovery.waiting_ack is not None:
            recovery.process_waiting_ack()  # in order, as dispatch() does
        if len(payloads) == 1:
            data = payloads[0][_BULK_STREAM_HEADER:]
        else:
            data = b"".join(map(_AFTER_BULK_STREAM_HEADER, payloads))
        self._streams.on_stream(stream_id, offset, data, False, _STREAM_OFF_LEN, now)

    # -- handlers ---------------------------------------------------------------------

    def _on_nothing(self, frame: Any, index: int, now: float) -> None:
        """PADDING, PING; STREAMS_BLOCKED is informational (RFC 9000 §19.14): limits
        are refreshed as streams close."""

    def _on_data_blocked(self, frame: DataBlockedFrame, index: int, now: float) -> None:
        # RFC 9000 §19.12: a peer blocked at our current connection limit grows the
        # window (ReceiveWindow.on_peer_blocked); MAX_DATA follows as data is consumed
        self._streams.window.on_peer_blocked(frame.maximum_data)

    def _on_ack(self, frame: AckFrame, index: int, now: float) -> None:
        self._on_ack_fields(frame.frame_type, frame.ranges, frame.ack_delay, frame.ecn, index, now)

    def _on_ack_fields(
        self,
        frame_type: int,
        ranges: tuple[tuple[int, int], ...],
        ack_delay: int,
        ecn: tuple[int, int, int] | None,
        index: int,
        now: float,
    ) -> None:
        """An ACK frame's fields (:class:`~quic.frames.AckFrame`)."""
        if index == APPLICATION:
            delay = (ack_delay << self._peer_ack_delay_exponent) / 1_000_000
        else:
            delay = 0.0  # RFC 9002 §5.3: Initial and Handshake ACK delays are ignored
        recovery = self._recovery
        try:
            # ECN counts are validated before they are used (RFC 9000 §13.4.2.1): not here
            result = recovery.on_ack_received(index, ranges, delay, now)
        except QuicProtocolError as exc:
            exc.frame_type = frame_type
            raise
        qlog = self._qlog
        if qlog is not None:
            qlog.packets_acked(now, index, result.acked)
            if result.lost:
                qlog.packets_lost(now, result.lost, self._recovery)
        if self._ecn.on_ack_frame(index, ranges[0][1], ecn, result.acked) and result.acked:
            # RFC 9002 §7.1, B.7: a validated rise of the CE count is a congestion event
            recovery.congestion.on_ecn_ce(result.acked[-1].time_sent, now)
        if index == APPLICATION:
            pmtu = self._pmtu
            if result.lost or pmtu.suspicious:  # else on_ack changes nothing
                pmtu.on_ack(result.acked, result.lost, now)  # black holes (RFC 8899 §4.3)
        handshake = self._handshake
        if (
            result.acked
            and index == APPLICATION
            and self._is_client
            and handshake.complete
            and not handshake.confirmed
            and result.acked[-1].packet_number >= handshake.early.one_rtt_from
        ):
            self._confirm_handshake(now)  # RFC 9001 §4.1.2: a 1-RTT packet acknowledged

    def _on_crypto(self, frame: CryptoFrame, index: int, now: float) -> None:
        data = self._crypto.receive(index, frame.offset, frame.data)
        if not data:
            return
        handshake = self._handshake
        handshake.receive(index, data)
        self._on_tls_progress(now)
        if handshake.complete and not handshake.confirmed and not self._is_client:
            self._confirm_handshake(now)  # RFC 9001 §4.1.2: the server confirms at once

    def _on_new_token(self, frame: NewTokenFrame, index: int, now: float) -> None:
        if not self._is_client:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION, "client sent NEW_TOKEN", frame.frame_type
            )  # RFC 9000 §19.7
        self._handshake.on_new_token(frame.token)

    def _on_stream(self, frame: StreamFrame, index: int, now: float) -> None:
        self._streams.on_stream(
            frame.stream_id, frame.offset, frame.data, frame.fin, frame.frame_type, now
        )

    def _on_reset_stream(self, frame: ResetStreamFrame, index: int, now: float) -> None:
        self._streams.on_reset_stream(frame.stream_id, frame.error_code, frame.final_size, now)

    def _on_reset_stream_at(self, frame: ResetStreamAtFrame, index: int, now: float) -> None:
        self._streams.on_reset_stream_at(
            frame.stream_id, frame.error_code, frame.final_size, frame.reliable_size, now
        )

    def _on_stop_sending(self, frame: StopSendingFrame, index: int, now: float) -> None:
        self._streams.on_stop_sending(frame.stream_id, frame.error_code)

    def _on_max_data(self, frame: MaxDataFrame, index: int, now: float) -> None:
        self._streams.on_max_data(frame.maximum_data)

    def _on_max_stream_data(self, frame: MaxStreamDataFrame, index: int, now: float) -> None:
        self._streams.on_max_stream_data(frame.stream_id, frame.maximum_stream_data)

    def _on_max_streams(self, frame: MaxStreamsFrame, index: int, now: float) -> None:
        self._streams.on_max_streams(frame.bidirectional, frame.maximum_streams)

    def _on_stream_data_blocked(
        self, frame: StreamDataBlockedFrame, index: int, now: float
    ) -> None:
        self._streams.on_stream_data_blocked(frame.stream_id, frame.maximum_stream_data)

    def _on_new_connection_id(self, frame: NewConnectionIdFrame, index: int, now: float) -> None:
        self._cids.on_new_connection_id(
            frame.sequence_number,
            frame.retire_prior_to,
            frame.connection_id,
            frame.stateless_reset_token,
        )

    def _on_retire_connection_id(
        self, frame: RetireConnectionIdFrame, index: int, now: float
    ) -> None:
        self._cids.on_retire_connection_id(frame.sequence_number, self._dcid)
        self._flush_routing()

    def _on_path_challenge(self, frame: PathChallengeFrame, index: int, now: float) -> None:
        self._paths.on_path_challenge(frame.data)  # RFC 9000 §8.2.2

    def _on_path_response(self, frame: PathResponseFrame, index: int, now: float) -> None:
        self._paths.on_path_response(frame.data)

    def _on_connection_close(self, frame: ConnectionCloseFrame, index: int, now: float) -> None:
        self._closed = True
        reason = frame.reason.decode("utf-8", "replace")
        self._on_peer_close(now, frame.error_code, reason, frame.error_frame_type, False)

    def _on_application_close(self, frame: ApplicationCloseFrame, index: int, now: float) -> None:
        self._closed = True
        reason = frame.reason.decode("utf-8", "replace")
        self._on_peer_close(now, frame.error_code, reason, None, True)

    def _on_handshake_done(self, frame: HandshakeDoneFrame, index: int, now: float) -> None:
        if not self._is_client:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "client sent HANDSHAKE_DONE",
                frame.frame_type,
            )  # RFC 9000 §19.20
        self._confirm_handshake(now)

    def _on_datagram(self, frame: DatagramFrame, index: int, now: float) -> None:
        self._datagrams.on_frame(frame.data)

    def _on_ack_frequency(self, frame: AckFrequencyFrame, index: int, now: float) -> None:
        self._acks.on_ack_frequency(
            frame.sequence_number,
            frame.ack_eliciting_threshold,
            frame.request_max_ack_delay,
            frame.reordering_threshold,
            now,
        )

    def _on_immediate_ack(self, frame: ImmediateAckFrame, index: int, now: float) -> None:
        self._acks.on_immediate_ack()


_HANDLERS: dict[type, Callable[[FrameDispatcher, Any, int, float], None]] = {
    PaddingFrame: FrameDispatcher._on_nothing,
    PingFrame: FrameDispatcher._on_nothing,
    AckFrame: FrameDispatcher._on_ack,
    ResetStreamFrame: FrameDispatcher._on_reset_stream,
    ResetStreamAtFrame: FrameDispatcher._on_reset_stream_at,
    StopSendingFrame: FrameDispatcher._on_stop_sending,
    CryptoFrame: FrameDispatcher._on_crypto,
    NewTokenFrame: FrameDispatcher._on_new_token,
    StreamFrame: FrameDispatcher._on_stream,
    MaxDataFrame: FrameDispatcher._on_max_data,
    MaxStreamDataFrame: FrameDispatcher._on_max_stream_data,
    MaxStreamsFrame: FrameDispatcher._on_max_streams,
    DataBlockedFrame: FrameDispatcher._on_data_blocked,
    StreamDataBlockedFrame: FrameDispatcher._on_stream_data_blocked,
    StreamsBlockedFrame: FrameDispatcher._on_nothing,
    NewConnectionIdFrame: FrameDispatcher._on_new_connection_id,
    RetireConnectionIdFrame: FrameDispatcher._on_retire_connection_id,
    PathChallengeFrame: FrameDispatcher._on_path_challenge,
    PathResponseFrame: FrameDispatcher._on_path_response,
    ConnectionCloseFrame: FrameDispatcher._on_connection_close,
    ApplicationCloseFrame: FrameDispatcher._on_application_close,
    HandshakeDoneFrame: FrameDispatcher._on_handshake_done,
    DatagramFrame: FrameDispatcher._on_datagram,
    AckFrequencyFrame: FrameDispatcher._on_ack_frequency,
    ImmediateAckFrame: FrameDispatcher._on_immediate_ack,
}
