"""The send path of a QUIC connection (RFC 9000 §12.2, §13, §14.1; RFC 9002 §6.2, §7).

Theory of operation
-------------------
:meth:`SendMixin.datagrams_to_send` fills datagrams until nothing is left or a limit
is hit. For each datagram it visits the spaces Initial → Handshake → Application and
opens at most one packet in each, so packets of different levels coalesce (§12.2).
What a packet may carry:

* an ACK frame whenever the space owes one (the ACK timer fired) or when the packet is
  sent anyway and acknowledgments are pending (§13.2.1); ACK-only packets are neither
  ack-eliciting nor congestion controlled (RFC 9002 §3);
* ack-eliciting frames only while the congestion window has room (RFC 9002 §7) or
  when a probe is owed (PTO, RFC 9002 §6.2.4): CRYPTO data in every space, and in the
  application space HANDSHAKE_DONE, PATH_RESPONSE, connection-ID frames, flow-control
  frames (via :class:`~quic.conn_streams.StreamController`), DATAGRAM frames, then
  STREAM frames;
* CONNECTION_CLOSE alone while closing (§10.2).

A server is limited to three times the bytes it received until the client's address
is validated (§8.1). Each finished datagram's packets are registered with loss
recovery at once, so the congestion window counts them before the next datagram is
built. After 16 ACK-only packets in a row, a PING makes the next one ack-eliciting so
that the peer acknowledges our ACKs and both sides can forget old ranges (§13.2.4).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from quic.conn_keys import APPLICATION, HANDSHAKE, INITIAL, Space
from quic.errors import TransportErrorCode
from quic.frames import (
    HANDSHAKE_DONE_FRAME,
    PING_FRAME,
    crypto_frame_header_size,
    encode_ack_frame,
    encode_application_close_frame,
    encode_connection_close_frame,
    encode_crypto_frame_header,
    encode_datagram_frame_header,
    encode_new_connection_id_frame,
    encode_path_response_frame,
    encode_retire_connection_id_frame,
)
from quic.packet import PacketType
from quic.packet_builder import MIN_INITIAL_DATAGRAM, PacketAssembler
from quic.stream_send import SendStream

if TYPE_CHECKING:
    from quic.cid import ConnectionIdManager
    from quic.configuration import QuicConfiguration
    from quic.conn_streams import StreamController
    from quic.events import QuicEvent
    from quic.qlog import QuicLogger
    from quic.recovery import LossRecovery

__all__ = ["SendMixin"]

_PACKET_TYPES = (PacketType.INITIAL, PacketType.HANDSHAKE, PacketType.ONE_RTT)
_PING = PING_FRAME
_HANDSHAKE_DONE = HANDSHAKE_DONE_FRAME
_MAX_ACK_ONLY_RUN = 16
_MAX_DATAGRAMS_PER_CALL = 256


class SendMixin:
    """Send-side half of :class:`~quic.connection.QuicConnection`."""

    # provided by QuicConnection
    configuration: QuicConfiguration
    is_client: bool
    version: int
    spaces: tuple[Space, Space, Space]
    recovery: LossRecovery
    streams: StreamController
    cids: ConnectionIdManager
    host_cid: bytes
    peer_address: Any
    max_datagram_size: int
    address_validated: bool
    handshake_complete: bool
    handshake_confirmed: bool
    state: Any
    _events: deque[QuicEvent]
    _bytes_received: int
    _bytes_sent: int
    _token: bytes
    _close_frame: tuple[bool, int, int, str] | None
    _close_pending: bool
    _close_deadline: float | None
    _last_activity: float | None
    _eliciting_since_receive: bool
    _peer_max_datagram_frame: int
    _qlog: QuicLogger | None

    def _discard_space(self, index: int, now: float) -> None: ...
    def _flush_routing(self) -> None: ...

    def _init_send_state(self) -> None:
        self._handshake_done_pending = False
        self._path_responses: list[bytes] = []
        self._probes: dict[int, int] = {}
        self._pending_reprocess: list[tuple[bytes, Any]] = []
        self._datagrams: deque[bytes] = deque()
        self._pings: list[int] = []
        self._current_dcid = b""
        self.new_token = b""

    # -- application API ----------------------------------------------------------------

    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        """Queue an unreliable DATAGRAM (RFC 9221); raises ValueError if it cannot fit."""
        peer_max = self._peer_max_datagram_frame
        if not peer_max:
            raise ValueError("the peer does not accept DATAGRAM frames")
        n = len(data)
        overhead = 1 + len(self.cids.peer_cid) + 4 + 16 + 3
        if n + 3 > peer_max or n + overhead > self.max_datagram_size:
            raise ValueError(f"datagram of {n} bytes does not fit in one packet")
        queue = self._datagrams
        if len(queue) >= self.configuration.max_datagram_queue:
            queue.popleft()  # unreliable: drop the oldest rather than grow without bound
        queue.append(bytes(data))

    def send_ping(self, uid: int) -> None:
        """Send a PING; a PingAcknowledged(uid) event follows its acknowledgment."""
        self._pings.append(uid)

    # -- scheduling helpers ---------------------------------------------------------------

    def _schedule_probe(self, space: int | None, count: int, others: tuple[int, ...]) -> None:
        """PTO fired: send ``count`` ack-eliciting probes (RFC 9002 §6.2.4)."""
        if space is None:
            return
        for index in (space, *others):
            if self.spaces[index].write is None:
                continue
            self._probes[index] = max(self._probes.get(index, 0), count if index == space else 1)
            if index != APPLICATION:
                self._requeue_crypto(index)

    def _requeue_crypto(self, index: int) -> None:
        # Retransmit all unacknowledged handshake data in the probe (RFC 9002 §6.2.4).
        fate = SendMixin._crypto_fate
        for packet in self.recovery.spaces[index].sent.values():
            for handler, args in packet.handlers:
                if handler is fate:
                    handler(False, *args)

    def _amplification_blocked(self) -> bool:
        return not self.address_validated and self._bytes_sent >= 3 * self._bytes_received

    # -- the send loop ------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        """Build every datagram that may be sent now; returns ``[(payload, addr)]``."""
        addr = self.peer_address
        if addr is None:
            return []
        state = self.state.value
        if state in ("draining", "terminated"):
            return []
        asm = PacketAssembler(self.max_datagram_size)
        if state == "closing":
            if self._close_pending:
                self._write_close(asm, now)
            return [(d, addr) for d in asm.datagrams]
        recovery = self.recovery
        qlog = self._qlog
        for _ in range(_MAX_DATAGRAMS_PER_CALL):
            budget = self.max_datagram_size
            if not self.address_validated:
                budget = min(budget, 3 * self._bytes_received - self._bytes_sent)
                if budget < MIN_INITIAL_DATAGRAM and not self.is_client:
                    recovery.amplification_limited = True
                    break
            asm.begin_datagram(budget)
            first = len(asm.packets)
            for index in (INITIAL, HANDSHAKE, APPLICATION):
                space = self.spaces[index]
                if space.write is not None:
                    self._write_space(asm, space, now)
            pending = asm.pending  # the datagram's packets, still in plaintext (qlog)
            size = asm.end_datagram(pad_initial=True)
            if not size:
                break
            self._bytes_sent += size
            eliciting = False
            for packet in asm.packets[first:]:
                recovery.on_packet_sent(packet, now)
                eliciting |= packet.ack_eliciting
                if (
                    packet.space == HANDSHAKE
                    and self.is_client
                    and not self.spaces[INITIAL].discarded
                ):
                    self._discard_space(INITIAL, now)  # RFC 9001 §4.9.1
            if qlog is not None:
                qlog.packets_sent(now, pending)
                qlog.metrics_updated(now, recovery)
            if eliciting and not self._eliciting_since_receive:
                self._eliciting_since_receive = True
                self._last_activity = now  # RFC 9000 §10.1
            if not eliciting:
                # An ACK-only datagram: the next one could only repeat its ACKs, since
                # whatever kept ack-eliciting frames out of it has not changed (RFC 9000
                # §13.2.1: ACK-only packets are not sent on their own beyond what is due).
                break
        return [(d, addr) for d in asm.datagrams]

    def _wants_eliciting(self, space: Space) -> bool:
        if space.crypto_send.needs_send:
            return True
        if space.index != APPLICATION:
            return False
        if not self.handshake_complete and self.is_client:
            return False
        streams = self.streams
        return bool(
            streams._sendable
            or self._datagrams
            or self._handshake_done_pending
            or self._path_responses
            or self._pings
            or streams.wants_control()
            or self._cid_frames_pending()
        )

    def _cid_frames_pending(self) -> bool:
        cids = self.cids
        if cids._retire_pending:
            return True
        if not cids.issue_pending or not self.handshake_complete or cids.cid_length == 0:
            return False
        return len(cids.local) < min(cids.peer_limit, 8) or any(
            not e.announced for e in cids.local.values()
        )

    def _write_space(self, asm: PacketAssembler, space: Space, now: float) -> None:
        index = space.index
        probe = self._probes.get(index, 0)
        ack = space.ack
        ack_due = ack.wants_ack(now)
        may_elicit = probe > 0 or self.recovery.congestion.available() >= self.max_datagram_size
        eliciting = may_elicit and (probe > 0 or self._wants_eliciting(space))
        if not ack_due and not eliciting:
            return
        if index == APPLICATION and not self.handshake_complete and self.is_client:
            if not ack_due:
                return
            eliciting = False
        write = space.write
        assert write is not None
        if not asm.begin_packet(
            _PACKET_TYPES[index],
            self.version,
            self.cids.peer_cid,
            self.host_cid,
            write,
            index,
            space.next_pn,
            self.recovery.spaces[index].largest_acked if index < 3 else None,
            self._token if index == INITIAL and self.is_client else b"",
            write.key_phase,
        ):
            return
        space.next_pn += 1
        packet = asm.packet
        if ack.has_ranges() and (ack_due or ack.deadline is not None or (eliciting and ack.fresh)):
            reserve = 0
            if eliciting and not ack_due and index == APPLICATION:
                reserve = self._datagram_room_needed(asm)
            self._write_ack(asm, space, now, reserve)
        if eliciting:
            self._write_crypto(asm, space)
            if index == APPLICATION:
                self._write_application(asm, now)
            if probe and not packet.ack_eliciting:
                asm.push(_PING)
                packet.ack_eliciting = packet.in_flight = True
            if probe:
                self._probes[index] = probe - 1
                if probe <= 1:
                    del self._probes[index]
        if not packet.ack_eliciting:
            space.sent_since_eliciting += 1
            if space.sent_since_eliciting >= _MAX_ACK_ONLY_RUN and may_elicit:
                asm.push(_PING)
                packet.ack_eliciting = packet.in_flight = True
        if packet.ack_eliciting:
            space.sent_since_eliciting = 0
        if index == INITIAL:
            packet.in_flight = True  # padded to 1200 bytes: counts in flight (RFC 9002 §2)
        asm.end_packet()

    # -- frame writers ------------------------------------------------------------------

    def _write_ack(self, asm: PacketAssembler, space: Space, now: float, reserve: int = 0) -> None:
        """Write the space's ACK frame; an ACK that is not due (``reserve`` > 0) is
        skipped when it would leave less than ``reserve`` bytes of room."""
        ack = space.ack
        ranges = ack.ranges()
        delay = int(ack.ack_delay(now) * 1_000_000) >> self.configuration.ack_delay_exponent
        frame = encode_ack_frame(ranges, delay)
        if len(frame) > asm.room:
            ranges = ranges[:4]
            frame = encode_ack_frame(ranges, delay)
        if reserve and len(frame) > asm.room - reserve:
            return  # not due: it waits for its timer or the next packet with room
        asm.push(frame)
        asm.packet.handlers.append((self._ack_fate, (space, ranges[0][1])))
        ack.on_ack_sent()

    @staticmethod
    def _ack_fate(acked: bool, space: Space, largest: int) -> None:
        if acked:
            space.ack.on_ack_acked(largest)

    def _write_crypto(self, asm: PacketAssembler, space: Space) -> None:
        send = space.crypto_send
        packet = asm.packet
        while send.needs_send:
            room = asm.room - crypto_frame_header_size(send.write_offset, asm.room)
            if room <= 0:
                break
            frame = send.next_frame(room, 1 << 62)
            if frame is None:
                break
            offset, data, _fin = frame
            asm.push(encode_crypto_frame_header(offset, len(data)))
            asm.push(data)
            packet.handlers.append((self._crypto_fate, (send, offset, len(data))))
            packet.ack_eliciting = packet.in_flight = packet.is_crypto = True

    @staticmethod
    def _crypto_fate(acked: bool, send: SendStream, offset: int, length: int) -> None:
        if acked:
            send.on_acked(offset, length, False)
        else:
            send.on_lost(offset, length, False)

    def _write_application(self, asm: PacketAssembler, now: float) -> None:
        packet = asm.packet
        handlers = packet.handlers
        if self._handshake_done_pending and asm.room > 1:
            self._handshake_done_pending = False
            asm.push(_HANDSHAKE_DONE)
            handlers.append((self._handshake_done_fate, ()))
            packet.ack_eliciting = packet.in_flight = True
        while self._path_responses and asm.room > 9:
            asm.push(encode_path_response_frame(self._path_responses.pop(0)))
            packet.ack_eliciting = packet.in_flight = True
        while self._pings and asm.room > 1:
            uid = self._pings.pop(0)
            asm.push(_PING)
            handlers.append((self._ping_fate, (uid,)))
            packet.ack_eliciting = packet.in_flight = True
        self._write_cid_frames(asm)
        streams = self.streams
        streams.now = now
        if streams.wants_control():
            streams.write_control(asm)
        self._write_datagrams(asm)
        streams.write_streams(asm)

    def _handshake_done_fate(self, acked: bool) -> None:
        if not acked:
            self._handshake_done_pending = True

    def _ping_fate(self, acked: bool, uid: int) -> None:
        if acked:
            from quic.events import PingAcknowledged

            self._events.append(PingAcknowledged(uid))

    def _write_cid_frames(self, asm: PacketAssembler) -> None:
        cids = self.cids
        if not cids._retire_pending and not cids.issue_pending:
            return
        packet = asm.packet
        for seq in cids.retire_frames():
            asm.push(encode_retire_connection_id_frame(seq))
            packet.handlers.append((self._retire_fate, (seq,)))
            packet.ack_eliciting = packet.in_flight = True
        if not self.handshake_complete or asm.room < 64:
            return
        entries = cids.new_connection_id_frames()
        if entries:
            self._flush_routing()
        for entry in entries:
            frame = encode_new_connection_id_frame(entry.sequence, 0, entry.cid, entry.reset_token)
            asm.push(frame)
            packet.handlers.append((self._new_cid_fate, (entry.sequence,)))
            packet.ack_eliciting = packet.in_flight = True

    def _retire_fate(self, acked: bool, seq: int) -> None:
        if not acked:
            self.cids.on_retire_lost(seq)

    def _new_cid_fate(self, acked: bool, seq: int) -> None:
        if acked:
            self.cids.on_new_connection_id_acked(seq)
        else:
            self.cids.on_new_connection_id_lost(seq)

    def _datagram_room_needed(self, asm: PacketAssembler) -> int:
        """Room the next queued DATAGRAM frame takes if it fits the open packet, else 0.

        A DATAGRAM frame is never split across packets (RFC 9221 §5). A piggybacked ACK
        (RFC 9000 §13.2.1) is repeated in every ack-eliciting packet until acknowledged,
        so a datagram sized to fill a whole packet would never fit behind it: such an
        optional ACK gives way (see :meth:`_write_ack`).
        """
        queue = self._datagrams
        if not queue:
            return 0
        n = len(queue[0])
        need = n + 3 if n < 0x4000 else n + 5
        return need if need <= asm.room else 0

    def _write_datagrams(self, asm: PacketAssembler) -> None:
        queue = self._datagrams
        if not queue:
            return
        packet = asm.packet
        while queue:
            data = queue[0]
            n = len(data)
            need = n + 3 if n < 0x4000 else n + 5
            if need > asm.room:
                if asm.payload_size <= 1 + 3:
                    queue.popleft()  # cannot fit even an empty packet: drop (RFC 9221 §5)
                    continue
                break
            queue.popleft()
            asm.push(encode_datagram_frame_header(n))
            asm.push(data)
            packet.ack_eliciting = packet.in_flight = True

    # -- closing --------------------------------------------------------------------------

    def _write_close(self, asm: PacketAssembler, now: float) -> None:
        """CONNECTION_CLOSE in every space we have keys for (RFC 9000 §10.2.3)."""
        assert self._close_frame is not None
        application, code, frame_type, reason = self._close_frame
        reason_bytes = reason.encode("utf-8")[:256]
        budget = self.max_datagram_size
        if not self.address_validated:
            budget = max(0, min(budget, 3 * self._bytes_received - self._bytes_sent))
        asm.begin_datagram(budget)
        for space in self.spaces:
            write = space.write
            if write is None:
                continue
            index = space.index
            if index == APPLICATION and not self.handshake_complete and self.is_client:
                continue
            if not asm.begin_packet(
                _PACKET_TYPES[index],
                self.version,
                self.cids.peer_cid,
                self.host_cid,
                write,
                index,
                space.next_pn,
                None,
                self._token if index == INITIAL and self.is_client else b"",
                write.key_phase,
            ):
                continue
            space.next_pn += 1
            if application and index != APPLICATION:
                # RFC 9000 §10.2.3: no application close in Initial/Handshake packets
                frame = encode_connection_close_frame(TransportErrorCode.APPLICATION_ERROR, 0, b"")
            elif application:
                frame = encode_application_close_frame(code, reason_bytes)
            else:
                frame = encode_connection_close_frame(code, frame_type, reason_bytes)
            asm.push(frame)
            asm.end_packet()
        pending = asm.pending  # plaintext packets of the datagram (qlog)
        size = asm.end_datagram(pad_initial=True)
        self._bytes_sent += size
        if self._qlog is not None:
            self._qlog.packets_sent(now, pending)
            self._qlog.flush_close(now)
        self._close_pending = False
        if self._close_deadline is None:
            self._close_deadline = now + 3 * self.recovery.rtt.pto_base()
