"""The QUIC connection: a Sans-I/O state machine (RFC 9000, 9001, 9002, 9221).

Theory of operation
-------------------
Driving API (DESIGN.md), the same at every layer::

    conn.receive_datagram(data, addr, now)    # feed a UDP payload
    conn.datagrams_to_send(now)               # -> [(bytes, addr)], ready to send
    conn.get_timer()                          # earliest deadline or None
    conn.handle_timer(now)                    # fire what is due (safe to call early)
    conn.next_event()                         # QuicEvent or None

Receiving: a datagram is split into its coalesced packets (RFC 9000 §12.2); each is
unprotected with the keys of its packet number space (:mod:`quic.conn_keys`), checked
(reserved bits, duplicates) and its frames are dispatched through ``_HANDLERS``, a
table frame class → method; which frames may appear in which packet type is checked by
:func:`~quic.frames.check_frame_allowed` (RFC 9000 §12.4). Every protocol violation is
raised as :class:`~quic.errors.QuicProtocolError` (TLS failures as
:class:`~quic.tls.alerts.TlsAlertError`) and turned into a CONNECTION_CLOSE in exactly
one place, :meth:`QuicConnection._fail`. Undecryptable packets are dropped silently.

Sending (:mod:`quic.conn_send`) walks the spaces Initial → Handshake → Application,
coalescing their packets into datagrams (:class:`~quic.packet_builder.PacketAssembler`)
within the congestion window and the anti-amplification limit (RFC 9000 §8.1). Every
subsystem writes its own frames and registers handlers on the packet, so loss recovery
(:mod:`quic.recovery`) tells each owner of the fate of its frames.

The TLS engine (:mod:`quic.tls.engine`) is fed CRYPTO bytes per epoch; the secrets it
releases become packet protection keys; its output becomes CRYPTO frames.

States: HANDSHAKE → CONNECTED → (CLOSING | DRAINING) → TERMINATED (RFC 9000 §10).
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

from quic.cid import ConnectionIdManager
from quic.configuration import QuicConfiguration
from quic.congestion import NewReno
from quic.conn_handshake import ConnectionState, HandshakeMixin
from quic.conn_keys import APPLICATION, HANDSHAKE, INITIAL, OneRttReadKeys, Space
from quic.conn_send import SendMixin
from quic.conn_streams import StreamController
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    DatagramReceived,
    QuicEvent,
)
from quic.frames import (
    FRAME_INFO,
    AckFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    FrameType,
    HandshakeDoneFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    check_frame_allowed,
    decode_frame,
)
from quic.packet import PacketHeader, PacketType, parse_header
from quic.protection import (
    DecryptionError,
)
from quic.qlog import QuicLogger, create_logger
from quic.recovery import LossRecovery
from quic.rtt import RttEstimator
from quic.stream_manager import StreamLimits
from quic.tls.alerts import TlsAlertError
from quic.tls.engine import Epoch, TlsEngine
from quic.tparams import TransportParameters

__all__ = ["ConnectionState", "QuicConnection"]

Addr = Any  # (host, port) tuple as given by the socket layer

_EPOCH_SPACE = {Epoch.INITIAL: INITIAL, Epoch.HANDSHAKE: HANDSHAKE, Epoch.ONE_RTT: APPLICATION}
_SPACE_EPOCH = {INITIAL: Epoch.INITIAL, HANDSHAKE: Epoch.HANDSHAKE, APPLICATION: Epoch.ONE_RTT}
_LONG_RESERVED_BITS = 0x0C  # RFC 9000 §17.2
_SHORT_RESERVED_BITS = 0x18  # RFC 9000 §17.3.1
_MAX_BUFFERED_UNDECRYPTABLE = 16  # packets kept until their keys arrive (RFC 9001 §5.7)


_LIVE = (ConnectionState.HANDSHAKE, ConnectionState.CONNECTED)


class QuicConnection(HandshakeMixin, SendMixin):
    """One QUIC connection, client or server (see the module docstring)."""

    def __init__(
        self,
        configuration: QuicConfiguration,
        *,
        original_destination_connection_id: bytes | None = None,
        peer_connection_id: bytes | None = None,
        version: int | None = None,
        retry_source_connection_id: bytes | None = None,
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        config = configuration
        self.configuration = config
        self.is_client = config.is_client
        self._token_bytes = token_bytes
        self.version = version if version is not None else config.supported_versions[0]
        self.state = ConnectionState.HANDSHAKE
        self._events: deque[QuicEvent] = deque()
        self.peer_address: Addr = None
        self.host_cid = token_bytes(config.connection_id_length)
        self.cids = ConnectionIdManager(
            self.host_cid,
            config.connection_id_length,
            config.active_connection_id_limit,
            token_bytes,
        )
        if self.is_client:
            self.original_dcid = token_bytes(8)  # RFC 9000 §7.2: at least 8 bytes
            self.cids.set_initial_peer_cid(self.original_dcid)
        else:
            if original_destination_connection_id is None or peer_connection_id is None:
                raise ValueError("a server connection needs the client's connection IDs")
            self.original_dcid = original_destination_connection_id
            self.cids.set_initial_peer_cid(peer_connection_id)
        self._retry_scid = retry_source_connection_id
        # qlog tracing: None when off (every hook is one ``is not None`` test)
        self._qlog: QuicLogger | None = create_logger(config, self.is_client, self.original_dcid)
        self._retry_received = False
        self._token = b""  # client: token from Retry / NEW_TOKEN
        self._peer_initial_scid: bytes | None = None if self.is_client else peer_connection_id
        self.spaces = (
            Space(
                INITIAL,
                config.max_ack_delay,
                crypto_buffer=config.max_crypto_buffer_initial,
                crypto_fragments=config.max_crypto_fragments,
                max_ack_ranges=config.max_ack_ranges_tracked,
            ),
            Space(
                HANDSHAKE,
                config.max_ack_delay,
                crypto_buffer=config.max_crypto_buffer_handshake,
                crypto_fragments=config.max_crypto_fragments,
                max_ack_ranges=config.max_ack_ranges_tracked,
            ),
            Space(
                APPLICATION,
                config.max_ack_delay,
                crypto_buffer=config.max_crypto_buffer_application,
                crypto_fragments=config.max_crypto_fragments,
                max_ack_ranges=config.max_ack_ranges_tracked,
            ),
        )
        self._install_initial_keys(self.original_dcid)
        self.max_datagram_size = max(1200, config.max_datagram_size)
        self.recovery = LossRecovery(
            NewReno(self.max_datagram_size),
            RttEstimator(),
            0.025,
            is_client=self.is_client,
            max_ack_only=config.max_ack_only_packets_tracked,
            max_sent=config.max_sent_packets_tracked,
        )
        self.streams = StreamController(
            self.is_client,
            StreamLimits(
                max_streams_bidi=config.initial_max_streams_bidi,
                max_streams_uni=config.initial_max_streams_uni,
                max_stream_data_bidi_local=config.initial_max_stream_data,
                max_stream_data_bidi_remote=config.initial_max_stream_data,
                max_stream_data_uni=config.initial_max_stream_data,
            ),
            config.initial_max_data,
            config.max_data_window,
            config.max_stream_data_window,
            config.stream_send_buffer_high,
            self._events,
            max_stream_fragments=config.max_stream_reassembly_fragments,
            max_reassembly_bytes=config.max_reassembly_bytes,
            max_reassembly_fragments=config.max_reassembly_fragments,
        )
        self._local_params = self._make_transport_parameters()
        self.peer_params: TransportParameters | None = None
        self.tls = TlsEngine(config.tls_config(), self._local_params.encode())
        self.alpn_protocol: str | None = None
        self.handshake_complete = False
        self.handshake_confirmed = False
        self._alpn_reported = False
        # addresses and anti-amplification (RFC 9000 §8.1)
        self.address_validated = self.is_client
        self._bytes_received = 0
        self._bytes_sent = 0
        # timers
        self._idle_timeout = config.idle_timeout
        self._last_activity: float | None = None
        self._eliciting_since_receive = False
        self._close_deadline: float | None = None
        # closing (RFC 9000 §10.2)
        self._close_frame: tuple[bool, int, int, str] | None = None
        self._close_pending = False
        self._close_resends = 0
        # send-side state shared with SendMixin
        self._init_send_state()
        self._peer_max_datagram_frame = 0
        self._peer_ack_delay_exponent = 3
        self._buffered: list[tuple[bytes, Addr]] = []
        self.dropped_packets = 0
        self.last_internal_error: BaseException | None = None
        self._key_phase_first_pn: int | None = None  # first 1-RTT PN of our newest keys

    # ==================================================================================
    # public API
    # ==================================================================================

    def connect(self, addr: Addr, now: float) -> None:
        """Client: start the handshake towards ``addr``."""
        if not self.is_client:
            raise RuntimeError("only a client connects")
        self.peer_address = addr
        self._last_activity = now
        if self._qlog is not None:
            self._qlog_start(now)
        self.tls.start()
        self._after_tls()

    def next_event(self) -> QuicEvent | None:
        events = self._events
        return events.popleft() if events else None

    @property
    def is_closed(self) -> bool:
        return self.state is ConnectionState.TERMINATED

    def create_stream(self, bidirectional: bool = True) -> int:
        """Open a new local stream; raises StreamLimitReached if the peer forbids it."""
        return self.streams.open_stream(bidirectional)

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        return self.create_stream(not is_unidirectional)

    def send_stream_data(
        self, stream_id: int, data: bytes | bytearray | memoryview, end_stream: bool = False
    ) -> bool:
        """Queue stream data; False when the stream's send buffer is above its mark."""
        return self.streams.send(stream_id, data, end_stream)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self.streams.reset(stream_id, error_code)

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        self.streams.stop_sending(stream_id, error_code)

    def consume_stream_data(self, stream_id: int, nbytes: int) -> None:
        """The application is done with ``nbytes`` of the data delivered on
        ``stream_id`` (:class:`~quic.events.StreamDataReceived`): their stream and
        connection flow-control credit goes back to the peer (RFC 9000 §4.2). Credit is
        never returned on delivery alone, so every consumer of stream data must call
        this (a stream reset by the peer, or one we stop reading, returns it at once).
        """
        self.streams.consume(stream_id, nbytes, self.streams.now)

    def pause_stream_receive(self, stream_id: int, paused: bool = True) -> None:
        """Hold back (or resume) delivery of a stream's data: receive backpressure
        through stream flow control (RFC 9000 §4.1)."""
        self.streams.pause_receive(stream_id, paused)

    @property
    def max_datagram_payload(self) -> int:
        """Largest DATAGRAM payload that fits one packet now (0: not supported)."""
        peer_max = self._peer_max_datagram_frame
        if not peer_max:
            return 0
        overhead = 1 + len(self.cids.peer_cid) + 4 + 16 + 1 + 2
        return max(0, min(peer_max - 3, self.max_datagram_size - overhead))

    def close(self, error_code: int = 0, reason: str = "", *, application: bool = True) -> None:
        """Close the connection (RFC 9000 §10.2); an application close by default."""
        if self.state in (ConnectionState.CLOSING, ConnectionState.DRAINING):
            return
        if self.state is ConnectionState.TERMINATED:
            return
        frame_type = 0
        self._enter_closing(application, error_code, frame_type, reason, by_peer=False)

    def export_keying_material(self, label: bytes, context: bytes, length: int) -> bytes:
        return self.tls.export_keying_material(label, context, length)

    # ==================================================================================
    # timers
    # ==================================================================================

    def get_timer(self) -> float | None:
        state = self.state
        if state is ConnectionState.TERMINATED:
            return None
        if state in (ConnectionState.CLOSING, ConnectionState.DRAINING):
            return self._close_deadline
        timer = self._idle_deadline()
        loss = self.recovery.get_loss_detection_timer()
        if loss is not None and (timer is None or loss < timer):
            timer = loss
        if not self._amplification_blocked():
            for space in self.spaces:
                deadline = space.ack.deadline
                if (
                    deadline is not None
                    and space.write is not None
                    and (timer is None or deadline < timer)
                ):
                    timer = deadline
        return timer

    def handle_timer(self, now: float) -> None:
        state = self.state
        if state is ConnectionState.TERMINATED:
            return
        if state in (ConnectionState.CLOSING, ConnectionState.DRAINING):
            if self._close_deadline is not None and now >= self._close_deadline:
                self.state = ConnectionState.TERMINATED
                if self._qlog is not None:
                    self._qlog.flush_close(now)
            return
        idle = self._idle_deadline()
        if idle is not None and now >= idle:
            self.state = ConnectionState.TERMINATED
            if self._qlog is not None:
                self._qlog.connection_closed(
                    now, trigger="idle_timeout", reason="idle timeout", by_peer=False
                )
            self._events.append(
                ConnectionTerminated(
                    TransportErrorCode.NO_ERROR, "idle timeout", None, False, False, True
                )
            )
            return
        try:
            probe = self.recovery.on_loss_detection_timeout(now)
            if probe.count:
                self._schedule_probe(probe.space, probe.count, probe.other_spaces)
        except QuicProtocolError as exc:
            self._fail(exc)

    def _idle_deadline(self) -> float | None:
        if self._last_activity is None or not self._idle_timeout:
            return None
        floor = 3 * self.recovery.rtt.pto_base()
        timeout = self._idle_timeout if self._idle_timeout > floor else floor
        return self._last_activity + timeout

    # ==================================================================================
    # receiving
    # ==================================================================================

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Process one UDP payload from ``addr``."""
        state = self.state
        if state is ConnectionState.TERMINATED or state is ConnectionState.DRAINING:
            return
        if self.peer_address is None:
            self.peer_address = addr
        qlog = self._qlog
        if qlog is not None and not qlog.started:
            self._qlog_start(now)
        self._bytes_received += len(data)
        if state is ConnectionState.CLOSING:
            if self._close_resends < 8:  # RFC 9000 §10.2.1: answer, rate limited
                self._close_resends += 1
                self._close_pending = True
            return
        try:
            self._receive(data, addr, now)
            while self._pending_reprocess and self.state in _LIVE:
                data, addr = self._pending_reprocess.pop(0)
                self._receive(data, addr, now)
        except QuicProtocolError as exc:
            self._fail(exc)
        except TlsAlertError as exc:
            self._fail(QuicProtocolError(exc.quic_error_code, str(exc), FrameType.CRYPTO))
        except Exception as exc:  # never let a bug escape into the event loop
            self.last_internal_error = exc
            self._fail(QuicProtocolError(TransportErrorCode.INTERNAL_ERROR, type(exc).__name__))
        if qlog is not None and self.state in _LIVE:
            qlog.metrics_updated(now, self.recovery)

    def _qlog_start(self, now: float) -> None:
        """First qlog events: connection_started, local parameters, Initial keys."""
        qlog = self._qlog
        assert qlog is not None
        qlog.connection_started(now, None, self.peer_address, self.host_cid)
        qlog.parameters_set(now, self._local_params, True)
        qlog.key_updated(now, Epoch.INITIAL, True)
        qlog.key_updated(now, Epoch.INITIAL, False)

    def _drop(self, now: float, trigger: str, packet_type: PacketType | None = None) -> None:
        """Count a dropped packet (and log it, qlog ``quic:packet_dropped``)."""
        self.dropped_packets += 1
        if self._qlog is not None:
            self._qlog.packet_dropped(now, trigger, packet_type)

    def _receive(self, data: bytes, addr: Addr, now: float) -> None:
        pos = 0
        end = len(data)
        processed = False
        cid_len = self.cids.cid_length
        if end > cid_len + 20 and data[0] & 0xC0 == 0x40 and self.handshake_confirmed:
            # Hot path: one 1-RTT packet; a short header runs to the end of the datagram
            # (RFC 9000 §12.2), so no header object is needed.
            processed = self._process_short(data, cid_len, now)
            end = 0
        while pos < end:
            try:
                header = parse_header(data, pos, cid_len)
            except QuicProtocolError:
                self._drop(now, "invalid")
                break
            if self._process_packet(data, pos, header, addr, now):
                processed = True
            if self.state not in _LIVE:
                return
            pos = header.end
        if processed:
            self._last_activity = now
            self._eliciting_since_receive = False
        elif end >= 21 and self.cids.is_peer_stateless_reset(bytes(data[-16:])):
            # RFC 9000 §10.3.1: a stateless reset ends the connection at once
            self.state = ConnectionState.DRAINING
            self._close_deadline = now + 3 * self.recovery.rtt.pto_base()
            self._events.append(
                ConnectionTerminated(TransportErrorCode.NO_ERROR, "stateless reset", by_peer=True)
            )
            if self._qlog is not None:
                self._qlog.connection_closed(
                    now, trigger="stateless_reset", reason="stateless reset", by_peer=True
                )

    def _space_for(self, header: PacketHeader) -> int | None:
        ptype = header.packet_type
        if ptype is PacketType.ONE_RTT:
            return APPLICATION
        if ptype is PacketType.INITIAL:
            return INITIAL
        if ptype is PacketType.HANDSHAKE:
            return HANDSHAKE
        return None

    def _process_packet(
        self, data: bytes, pos: int, header: PacketHeader, addr: Addr, now: float
    ) -> bool:
        """Unprotect and process one packet; True if it was processed."""
        if header.is_long:
            if header.version == 0:
                self._on_version_negotiation(header, now)
                return False
            if header.version != self.version:
                self._drop(now, "unsupported", header.packet_type)
                return False
            if header.packet_type is PacketType.RETRY:
                self._on_retry(data, pos, header)
                return False
        index = self._space_for(header)
        if index is None:  # 0-RTT (not accepted yet) or unknown
            self._drop(now, "unsupported", header.packet_type)
            return False
        space = self.spaces[index]
        if space.read is None:
            if not space.discarded and len(self._buffered) < _MAX_BUFFERED_UNDECRYPTABLE:
                self._buffered.append((bytes(data[pos : header.end]), addr))
            else:
                self._drop(now, "key_unavailable", header.packet_type)
            return False
        view = memoryview(data)[pos : header.end]
        read = space.read
        try:
            plain_header, pn = read.unprotect_header(
                view, header.pn_offset - pos, space.ack.largest
            )
            if isinstance(read, OneRttReadKeys):
                payload, updated = read.decrypt(plain_header, pn, view, now)
                if updated:
                    self._on_peer_key_update(now)
            else:
                payload = read.decrypt_payload(plain_header, pn, view)
        except DecryptionError:
            self._drop(now, "decryption_failure", header.packet_type)
            return False
        reserved = _LONG_RESERVED_BITS if header.is_long else _SHORT_RESERVED_BITS
        if plain_header[0] & reserved:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION, "reserved header bits set"
            )  # RFC 9000 §17.2, §17.3.1
        if space.ack.is_duplicate(pn):
            return False
        packet_type = header.packet_type
        assert packet_type is not None
        if self._qlog is not None:
            self._qlog.packet_received(now, packet_type, pn, payload, header.end - pos)
        if self.is_client and index == INITIAL and self._peer_initial_scid is None:
            # RFC 9000 §7.2: switch to the server's chosen connection ID
            self._peer_initial_scid = header.scid
            self.cids.set_initial_peer_cid(header.scid)
        self._current_dcid = header.dcid
        ack_eliciting = self._handle_payload(payload, index, packet_type, now)
        space.ack.on_packet(pn, ack_eliciting, now)
        if index == HANDSHAKE and not self.is_client and not self.address_validated:
            # RFC 9000 §8.1: a Handshake packet proves the client owns its address
            self.address_validated = True
            self.recovery.amplification_limited = False
        if index == HANDSHAKE and not self.is_client and not self.spaces[INITIAL].discarded:
            self._discard_space(INITIAL, now)  # RFC 9001 §4.9.1
        return True

    def _process_short(self, data: bytes, cid_len: int, now: float) -> bool:
        """:meth:`_process_packet` for a datagram holding one short-header packet."""
        space = self.spaces[APPLICATION]
        read = space.read
        if not isinstance(read, OneRttReadKeys):
            self._drop(now, "key_unavailable", PacketType.ONE_RTT)
            return False
        view = memoryview(data)
        try:
            plain_header, pn = read.unprotect_header(view, 1 + cid_len, space.ack.largest)
            payload, updated = read.decrypt(plain_header, pn, view, now)
        except DecryptionError:
            self._drop(now, "decryption_failure", PacketType.ONE_RTT)
            return False
        if updated:
            self._on_peer_key_update(now)
        if plain_header[0] & _SHORT_RESERVED_BITS:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION, "reserved header bits set"
            )  # RFC 9000 §17.3.1
        ack = space.ack
        if ack.is_duplicate(pn):
            return False
        if self._qlog is not None:
            self._qlog.packet_received(now, PacketType.ONE_RTT, pn, payload, len(data))
        self._current_dcid = data[1 : 1 + cid_len]
        ack.on_packet(pn, self._handle_payload(payload, APPLICATION, PacketType.ONE_RTT, now), now)
        return True

    def _handle_payload(
        self, payload: bytes, index: int, packet_type: PacketType, now: float
    ) -> bool:
        pos = 0
        end = len(payload)
        if not end:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION, "packet without frames"
            )  # RFC 9000 §12.4
        ack_eliciting = False
        handlers = _HANDLERS
        info = FRAME_INFO
        while pos < end:
            frame, pos = decode_frame(payload, pos)
            ftype = frame.frame_type
            check_frame_allowed(ftype, packet_type)
            if info[ftype].ack_eliciting:
                ack_eliciting = True
            handlers[type(frame)](self, frame, index, now)
            if self.state is ConnectionState.DRAINING:
                break
        return ack_eliciting

    # ----------------------------------------------------------------- frame handlers

    def _on_padding(self, frame: Any, index: int, now: float) -> None:
        pass

    def _on_ack(self, frame: AckFrame, index: int, now: float) -> None:
        if index == APPLICATION:
            delay = (frame.ack_delay << self._peer_ack_delay_exponent) / 1_000_000
        else:
            delay = 0.0
        ce = frame.ecn[2] if frame.ecn is not None else None
        try:
            result = self.recovery.on_ack_received(index, frame.ranges, delay, now, ce)
        except QuicProtocolError as exc:
            exc.frame_type = frame.frame_type
            raise
        if result.acked:
            self.streams.rtt = self.recovery.rtt.smoothed_rtt
            if (
                index == APPLICATION
                and self.is_client
                and self.handshake_complete
                and not self.handshake_confirmed
            ):
                self._confirm_handshake(now)  # RFC 9001 §4.1.2

    def _on_crypto(self, frame: CryptoFrame, index: int, now: float) -> None:
        space = self.spaces[index]
        recv = space.crypto_recv
        try:
            recv.on_stream_frame(frame.offset, frame.data, False)
        except QuicProtocolError as exc:
            raise QuicProtocolError(
                TransportErrorCode.CRYPTO_BUFFER_EXCEEDED,
                "too much CRYPTO data buffered",
                FrameType.CRYPTO,
            ) from exc
        if recv.readable:
            data = recv.read()
            try:
                self.tls.receive(_SPACE_EPOCH[index], data)
            except TlsAlertError as exc:
                raise QuicProtocolError(exc.quic_error_code, str(exc), FrameType.CRYPTO) from exc
            self._after_tls()
            if self.handshake_complete and not self.handshake_confirmed and not self.is_client:
                self._confirm_handshake(now)

    def _on_new_token(self, frame: NewTokenFrame, index: int, now: float) -> None:
        if not self.is_client:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION, "client sent NEW_TOKEN", frame.frame_type
            )  # RFC 9000 §19.7
        self.new_token = frame.token

    def _on_stream(self, frame: StreamFrame, index: int, now: float) -> None:
        self.streams.now = now
        self.streams.on_stream(frame.stream_id, frame.offset, frame.data, frame.fin, 0x08)

    def _on_reset_stream(self, frame: ResetStreamFrame, index: int, now: float) -> None:
        self.streams.on_reset_stream(frame.stream_id, frame.error_code, frame.final_size)

    def _on_stop_sending(self, frame: StopSendingFrame, index: int, now: float) -> None:
        self.streams.on_stop_sending(frame.stream_id, frame.error_code)

    def _on_max_data(self, frame: MaxDataFrame, index: int, now: float) -> None:
        self.streams.on_max_data(frame.maximum_data)

    def _on_max_stream_data(self, frame: MaxStreamDataFrame, index: int, now: float) -> None:
        self.streams.on_max_stream_data(frame.stream_id, frame.maximum_stream_data)

    def _on_max_streams(self, frame: MaxStreamsFrame, index: int, now: float) -> None:
        self.streams.on_max_streams(frame.bidirectional, frame.maximum_streams)

    def _on_data_blocked(self, frame: DataBlockedFrame, index: int, now: float) -> None:
        pass  # informational (RFC 9000 §19.12)

    def _on_stream_data_blocked(
        self, frame: StreamDataBlockedFrame, index: int, now: float
    ) -> None:
        self.streams.on_stream_data_blocked(frame.stream_id, frame.maximum_stream_data)

    def _on_streams_blocked(self, frame: StreamsBlockedFrame, index: int, now: float) -> None:
        pass  # informational (RFC 9000 §19.14); limits are refreshed as streams finish

    def _on_new_connection_id(self, frame: NewConnectionIdFrame, index: int, now: float) -> None:
        self.cids.on_new_connection_id(
            frame.sequence_number,
            frame.retire_prior_to,
            frame.connection_id,
            frame.stateless_reset_token,
        )

    def _on_retire_connection_id(
        self, frame: RetireConnectionIdFrame, index: int, now: float
    ) -> None:
        self.cids.on_retire_connection_id(frame.sequence_number, self._current_dcid)
        self._flush_routing()

    def _on_path_challenge(self, frame: PathChallengeFrame, index: int, now: float) -> None:
        self._path_responses.append(frame.data)  # RFC 9000 §8.2.2

    def _on_path_response(self, frame: PathResponseFrame, index: int, now: float) -> None:
        pass  # we never send PATH_CHALLENGE yet (no migration)

    def _on_connection_close(self, frame: ConnectionCloseFrame, index: int, now: float) -> None:
        reason = frame.reason.decode("utf-8", "replace")
        self._enter_draining(now, frame.error_code, reason, frame.error_frame_type, False)

    def _on_application_close(self, frame: ApplicationCloseFrame, index: int, now: float) -> None:
        reason = frame.reason.decode("utf-8", "replace")
        self._enter_draining(now, frame.error_code, reason, None, True)

    def _on_handshake_done(self, frame: HandshakeDoneFrame, index: int, now: float) -> None:
        if not self.is_client:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "client sent HANDSHAKE_DONE",
                frame.frame_type,
            )  # RFC 9000 §19.20
        if not self.handshake_confirmed:
            self._confirm_handshake(now)

    def _on_datagram(self, frame: DatagramFrame, index: int, now: float) -> None:
        limit = self.configuration.max_datagram_frame_size or 0
        if not limit:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "DATAGRAM frames were not negotiated",
                frame.frame_type,
            )  # RFC 9221 §3
        if 1 + len(frame.data) > limit:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "DATAGRAM frame larger than max_datagram_frame_size",
                frame.frame_type,
            )
        self._events.append(DatagramReceived(frame.data))

    # ==================================================================================
    # closing
    # ==================================================================================

    def _fail(self, exc: QuicProtocolError) -> None:
        """The single place where an error becomes a CONNECTION_CLOSE (RFC 9000 §10.2)."""
        if self.state in (
            ConnectionState.CLOSING,
            ConnectionState.DRAINING,
            ConnectionState.TERMINATED,
        ):
            return
        self._enter_closing(False, exc.error_code, exc.frame_type, exc.reason, by_peer=False)

    def _enter_closing(
        self, application: bool, code: int, frame_type: int, reason: str, by_peer: bool
    ) -> None:
        self.state = ConnectionState.CLOSING
        self._close_frame = (application, code, frame_type, reason)
        self._close_pending = True
        self._close_deadline = None  # set when the close is sent
        self._events.append(
            ConnectionTerminated(
                code, reason, None if application else frame_type, application, by_peer
            )
        )
        if self._qlog is not None:  # logged once the CONNECTION_CLOSE is sent
            self._qlog.connection_closing(
                by_peer=by_peer,
                application=application,
                code=code,
                reason=reason,
                trigger="error" if code and not application else "application",
            )

    def _enter_draining(
        self, now: float, code: int, reason: str, frame_type: int | None, application: bool
    ) -> None:
        self.state = ConnectionState.DRAINING
        self._close_deadline = now + 3 * self.recovery.rtt.pto_base()
        self._events.append(ConnectionTerminated(code, reason, frame_type, application, True))
        if self._qlog is not None:
            self._qlog.connection_closing(
                by_peer=True,
                application=application,
                code=code,
                reason=reason,
                trigger="error" if code and not application else "application",
            )
            self._qlog.flush_close(now)

    def _flush_routing(self) -> None:
        issued, retired = self.cids.pop_routing_changes()
        for cid in issued:
            self._events.append(ConnectionIdIssued(cid))
        for cid in retired:
            self._events.append(ConnectionIdRetired(cid))


_HANDLERS: dict[type, Callable[[QuicConnection, Any, int, float], None]] = {
    PaddingFrame: QuicConnection._on_padding,
    PingFrame: QuicConnection._on_padding,
    AckFrame: QuicConnection._on_ack,
    ResetStreamFrame: QuicConnection._on_reset_stream,
    StopSendingFrame: QuicConnection._on_stop_sending,
    CryptoFrame: QuicConnection._on_crypto,
    NewTokenFrame: QuicConnection._on_new_token,
    StreamFrame: QuicConnection._on_stream,
    MaxDataFrame: QuicConnection._on_max_data,
    MaxStreamDataFrame: QuicConnection._on_max_stream_data,
    MaxStreamsFrame: QuicConnection._on_max_streams,
    DataBlockedFrame: QuicConnection._on_data_blocked,
    StreamDataBlockedFrame: QuicConnection._on_stream_data_blocked,
    StreamsBlockedFrame: QuicConnection._on_streams_blocked,
    NewConnectionIdFrame: QuicConnection._on_new_connection_id,
    RetireConnectionIdFrame: QuicConnection._on_retire_connection_id,
    PathChallengeFrame: QuicConnection._on_path_challenge,
    PathResponseFrame: QuicConnection._on_path_response,
    ConnectionCloseFrame: QuicConnection._on_connection_close,
    ApplicationCloseFrame: QuicConnection._on_application_close,
    HandshakeDoneFrame: QuicConnection._on_handshake_done,
    DatagramFrame: QuicConnection._on_datagram,
}
