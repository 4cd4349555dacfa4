"""The send path of a QUIC connection (RFC 9000 §12.2, §13, §14.1; RFC 9002 §6.2, §7).

Theory of operation
-------------------
:class:`SendScheduler` decides what goes into each packet; the components write their
own frames. :meth:`SendScheduler.build` fills datagrams until nothing is left or a
limit is hit. For each datagram it visits the spaces Initial → Handshake → Application
and opens at most one packet in each, so packets of different levels coalesce (§12.2).
What a packet may carry:

* an ACK frame (:class:`~quic.conn_acks.AckState`) whenever the space owes one (the
  ACK timer fired) or when the packet is sent anyway and acknowledgments are pending
  (§13.2.1); ACK-only packets are neither ack-eliciting nor congestion controlled
  (RFC 9002 §3). Once ECN-marked packets arrived in the space it is an ACK_ECN frame
  with the counts of :class:`~quic.conn_ecn.EcnController` (§13.4.1);
* ack-eliciting frames only while the congestion window has room (RFC 9002 §7) or
  when a probe is owed (PTO, RFC 9002 §6.2.4): CRYPTO data in every space
  (:class:`~quic.conn_crypto.CryptoStreams`), and in the application space, in this
  order, HANDSHAKE_DONE (:class:`~quic.conn_handshake.HandshakeDriver`), PATH_RESPONSE
  (:class:`~quic.conn_paths.PathManager`), application PINGs (owned here),
  connection-ID frames (:class:`~quic.cid.ConnectionIdManager`), flow-control and
  stream-state frames, DATAGRAM frames (:class:`~quic.conn_datagrams.DatagramChannel`)
  and STREAM frames (:class:`~quic.conn_streams.StreamController`);
* CONNECTION_CLOSE alone while closing (§10.2, :meth:`SendScheduler.build_close`).

Every writer checks the room left before it writes, so no datagram exceeds its budget:
the path's maximum datagram size, and for a server three times the bytes received
until the client's address is validated (§8.1). Each finished datagram's packets are
registered with loss recovery at once, so the congestion window counts them before the
next datagram is built; the handlers the writers registered on each packet tell every
component the fate of its frames. One ECN codepoint is chosen per call
(:meth:`~quic.conn_ecn.EcnController.begin_send`); when it is ECT(0) every packet is
reported to the ECN controller, which learns its fate for validation (§13.4.2).

A DPLPMTUD probe (:class:`~quic.conn_pmtu.PmtuDiscovery`, RFC 9000 §14.4) goes first,
in a datagram of its own larger than the others, when the PMTU component asks for one
and the congestion window has room for it; the component writes its PING and PADDING.

Probes (RFC 9002 §6.2.4) are owed per space: the loss-detection timeout asks for
them (:meth:`SendScheduler.schedule_probe`) and they bypass the congestion window;
handshake data not yet acknowledged is queued again for them. After 16 ACK-only
packets in a row, a PING makes the next one ack-eliciting so that the peer
acknowledges our ACKs and both sides can forget old ranges (§13.2.4).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from quic.conn_keys import APPLICATION, HANDSHAKE, INITIAL
from quic.errors import TransportErrorCode
from quic.events import PingAcknowledged, QuicEvent
from quic.frames import (
    PING_FRAME,
    encode_application_close_frame,
    encode_connection_close_frame,
)
from quic.packet import PacketType
from quic.packet_builder import MIN_INITIAL_DATAGRAM, PacketAssembler

if TYPE_CHECKING:
    from quic.cid import ConnectionIdManager
    from quic.conn_acks import AckState
    from quic.conn_close import CloseFrame
    from quic.conn_crypto import CryptoStreams
    from quic.conn_datagrams import DatagramChannel
    from quic.conn_ecn import EcnController
    from quic.conn_handshake import HandshakeDriver
    from quic.conn_keys import PacketSpaces
    from quic.conn_paths import PathManager
    from quic.conn_pmtu import PmtuDiscovery
    from quic.conn_streams import StreamController
    from quic.qlog import QuicLogger
    from quic.recovery import LossRecovery

__all__ = ["SendScheduler"]

_PACKET_TYPES = (PacketType.INITIAL, PacketType.HANDSHAKE, PacketType.ONE_RTT)
_MAX_ACK_ONLY_RUN = 16
_MAX_DATAGRAMS_PER_CALL = 256
_MAX_REASON = 256  # bytes of reason phrase we send at most


class SendScheduler:
    """Fills datagrams with the frames the connection's components owe."""

    def __init__(
        self,
        *,
        is_client: bool,
        host_cid: bytes,
        keys: PacketSpaces,
        acks: AckState,
        crypto: CryptoStreams,
        handshake: HandshakeDriver,
        cids: ConnectionIdManager,
        paths: PathManager,
        streams: StreamController,
        datagrams: DatagramChannel,
        ecn: EcnController,
        pmtu: PmtuDiscovery,
        recovery: LossRecovery,
        events: deque[QuicEvent],
        discard_space: Callable[[int, float], None],
        qlog: QuicLogger | None,
    ) -> None:
        self._is_client = is_client
        self._host_cid = host_cid
        self._keys = keys
        self._acks = acks
        self._crypto = crypto
        self._handshake = handshake
        self._cids = cids
        self._paths = paths
        self._streams = streams
        self._datagrams = datagrams
        self._ecn = ecn
        self._pmtu = pmtu
        self._recovery = recovery
        self._events = events
        self._discard_space = discard_space
        self._qlog = qlog
        self._probes: dict[int, int] = {}  # space -> probe packets owed
        self._pings: deque[int] = deque()  # uids of application PINGs to send
        self._ack_only_run = [0, 0, 0]  # ACK-only packets since the last eliciting one

    # -- what is owed -----------------------------------------------------------------

    def queue_ping(self, uid: int) -> None:
        self._pings.append(uid)

    @property
    def pending_pings(self) -> int:
        return len(self._pings)

    @property
    def pending_probes(self) -> int:
        return sum(self._probes.values())

    def schedule_probe(self, space: int | None, count: int, others: tuple[int, ...]) -> None:
        """PTO fired: send ``count`` ack-eliciting probes (RFC 9002 §6.2.4)."""
        if space is None:
            return
        spaces = self._keys.spaces
        for index in (space, *others):
            if spaces[index].write is None:
                continue
            self._probes[index] = max(self._probes.get(index, 0), count if index == space else 1)
            if index != APPLICATION:
                # retransmit all unacknowledged handshake data in the probe
                self._crypto.requeue_unacked(index)

    def discard(self, index: int) -> None:
        """A space was discarded: no probe is owed in it any more."""
        self._probes.pop(index, None)

    def _wants_eliciting(self, index: int) -> bool:
        if index != APPLICATION:
            return self._crypto.needs_send(index)
        handshake = self._handshake
        if not handshake.complete and self._is_client:
            return self._crypto.needs_send(index)
        streams = self._streams
        return bool(
            streams.has_data()  # the common case first
            or self._crypto.needs_send(index)
            or self._datagrams.pending
            or handshake.done_pending
            or self._paths.wants_send()
            or self._pings
            or streams.wants_control()
            or self._cids.wants_send(handshake.complete)
        )

    # -- the send loop ----------------------------------------------------------------

    def build(self, now: float, version: int) -> tuple[list[bytes], bool]:
        """Build every datagram that may be sent now.

        Returns the datagrams and whether any ack-eliciting packet went out.
        """
        paths = self._paths
        recovery = self._recovery
        spaces = self._keys.spaces
        qlog = self._qlog
        mtu = paths.max_datagram_size
        probe = self._pmtu.probe_size()
        asm = PacketAssembler(mtu if probe is None else max(mtu, probe))
        sent_eliciting = False
        validated_bytes = 0  # sent once the address is validated (counted at the end)
        ecn = self._ecn
        marked = ecn.begin_send() != 0  # one ECN codepoint for the whole call
        if probe is not None and recovery.congestion.available() >= probe:
            sent_eliciting = self._send_pmtu_probe(asm, probe, now, version, marked)
        for _ in range(_MAX_DATAGRAMS_PER_CALL):
            validated = paths.address_validated
            if not validated and paths.send_budget() < MIN_INITIAL_DATAGRAM:
                recovery.amplification_limited = True  # RFC 9002 §6.2.2.1 (a server)
                break
            asm.begin_datagram(mtu if validated else paths.send_budget())
            first = len(asm.packets)
            for index in (INITIAL, HANDSHAKE, APPLICATION):
                if spaces[index].write is not None:
                    self._write_space(asm, index, now, version)
            pending = asm.pending  # the datagram's packets, still in plaintext (qlog)
            size = asm.end_datagram(pad_initial=True)
            if not size:
                break
            if validated:
                validated_bytes += size
            else:
                paths.on_datagram_sent(size)  # the amplification limit needs it now
            eliciting = False
            for packet in asm.packets[first:]:
                if marked:
                    ecn.on_packet_sent(packet)  # RFC 9000 §13.4.2: learn its fate
                recovery.on_packet_sent(packet, now)
                eliciting |= packet.ack_eliciting
                if packet.space == HANDSHAKE and self._is_client and not spaces[INITIAL].discarded:
                    self._discard_space(INITIAL, now)  # RFC 9001 §4.9.1
            if qlog is not None:
                qlog.packets_sent(now, pending)
                qlog.metrics_updated(now, recovery)
            sent_eliciting |= eliciting
            if not eliciting:
                # An ACK-only datagram: the next one could only repeat its ACKs, since
                # whatever kept ack-eliciting frames out of it has not changed (RFC 9000
                # §13.2.1: ACK-only packets are not sent on their own beyond what is due).
                break
        if validated_bytes:
            paths.on_datagram_sent(validated_bytes)
        return asm.datagrams, sent_eliciting

    def _send_pmtu_probe(
        self, asm: PacketAssembler, size: int, now: float, version: int, marked: bool
    ) -> bool:
        """A DPLPMTUD probe of ``size`` bytes in a datagram of its own (RFC 9000 §14.4);
        the PMTU component writes it. True if it was sent."""
        space = self._keys.spaces[APPLICATION]
        write = space.write
        if write is None or not self._paths.address_validated:
            return False
        asm.begin_datagram(size)
        if not asm.begin_packet(
            PacketType.ONE_RTT,
            version,
            self._cids.peer_cid,
            self._host_cid,
            write,
            APPLICATION,
            space.next_pn,
            self._recovery.spaces[APPLICATION].largest_acked,
            b"",
            write.key_phase,
        ):
            return False
        space.next_pn += 1
        self._pmtu.write_probe(asm, now, self._recovery.rtt.pto_base())
        packet = asm.end_packet()
        pending = asm.pending
        asm.end_datagram(pad_initial=False)
        assert packet is not None
        if marked:
            self._ecn.on_packet_sent(packet)
        self._recovery.on_packet_sent(packet, now)
        self._paths.on_datagram_sent(size)
        if self._qlog is not None:
            self._qlog.packets_sent(now, pending)
        return True

    def _begin_close_packet(self, asm: PacketAssembler, index: int, version: int) -> bool:
        space = self._keys.spaces[index]
        write = space.write
        assert write is not None
        handshake = self._handshake
        if not asm.begin_packet(
            _PACKET_TYPES[index],
            version,
            self._cids.peer_cid,
            self._host_cid,
            write,
            index,
            space.next_pn,
            None,  # full-length packet numbers: the peer may have lost track
            handshake.token if index == INITIAL and self._is_client else b"",
            write.key_phase,
        ):
            return False
        space.next_pn += 1
        return True

    def _write_space(self, asm: PacketAssembler, index: int, now: float, version: int) -> None:
        probe = self._probes.get(index, 0)
        acks = self._acks
        ack_due = acks.due(index, now)
        congestion = self._recovery.congestion
        may_elicit = probe > 0 or congestion.available() >= self._paths.max_datagram_size
        eliciting = may_elicit and (probe > 0 or self._wants_eliciting(index))
        if not ack_due and not eliciting:
            return
        if index == APPLICATION and self._is_client and not self._handshake.complete:
            if not ack_due:
                return
            eliciting = False  # 1-RTT before completion: ACKs only
        space = self._keys.spaces[index]
        write = space.write
        assert write is not None
        if not asm.begin_packet(
            _PACKET_TYPES[index],
            version,
            self._cids.peer_cid,
            self._host_cid,
            write,
            index,
            space.next_pn,
            self._recovery.spaces[index].largest_acked,
            self._handshake.token if index == INITIAL and self._is_client else b"",
            write.key_phase,
        ):
            return
        space.next_pn += 1
        packet = asm.packet
        if acks.should_include(index, ack_due, eliciting):
            reserve = 0
            if eliciting and not ack_due and index == APPLICATION:
                reserve = self._datagrams.room_needed(asm.room)
            acks.write(asm, index, now, reserve, self._ecn.counts(index))
        if eliciting:
            self._crypto.write(asm, index)
            if index == APPLICATION:
                self._write_application(asm)
            if probe:
                if not packet.ack_eliciting:
                    self._push_ping(asm)
                if probe <= 1:
                    del self._probes[index]
                else:
                    self._probes[index] = probe - 1
        if packet.ack_eliciting:
            self._ack_only_run[index] = 0
        else:
            self._ack_only_run[index] += 1
            if self._ack_only_run[index] >= _MAX_ACK_ONLY_RUN and may_elicit:
                self._push_ping(asm)  # RFC 9000 §13.2.4: get our ACKs acknowledged
                self._ack_only_run[index] = 0
        if index == INITIAL:
            packet.in_flight = True  # padded to 1200 bytes: counts in flight (RFC 9002 §2)
        asm.end_packet()

    @staticmethod
    def _push_ping(asm: PacketAssembler) -> None:
        if asm.room >= len(PING_FRAME):
            asm.push(PING_FRAME)
            packet = asm.packet
            packet.ack_eliciting = packet.in_flight = True

    def _write_application(self, asm: PacketAssembler) -> None:
        handshake = self._handshake
        if handshake.done_pending:
            handshake.write_done(asm)
        paths = self._paths
        if paths.responses:
            paths.write(asm)
        pings = self._pings
        if pings:
            packet = asm.packet
            while pings and asm.room >= len(PING_FRAME):
                uid = pings.popleft()
                asm.push(PING_FRAME)
                packet.handlers.append((self._ping_fate, (uid,)))
                packet.ack_eliciting = packet.in_flight = True
        cids = self._cids
        if cids.wants_send(handshake.complete):
            cids.write(asm, handshake.complete)
        streams = self._streams
        if streams.wants_control():
            streams.write_control(asm)
        self._datagrams.write(asm)
        streams.write_streams(asm)

    def _ping_fate(self, acked: bool, uid: int) -> None:
        if acked:
            self._events.append(PingAcknowledged(uid))

    # -- closing ----------------------------------------------------------------------

    def build_close(self, now: float, version: int, close: CloseFrame) -> list[bytes]:
        """One datagram with CONNECTION_CLOSE in every space we have keys for
        (RFC 9000 §10.2.3), within the amplification limit."""
        application, code, frame_type, reason = close
        reason_bytes = reason.encode("utf-8")[:_MAX_REASON]
        paths = self._paths
        asm = PacketAssembler(paths.max_datagram_size)
        asm.begin_datagram(paths.send_budget())
        for space in self._keys.spaces:
            index = space.index
            if space.write is None:
                continue
            if index == APPLICATION and self._is_client and not self._handshake.complete:
                continue
            if not self._begin_close_packet(asm, index, version):
                continue
            if application and index != APPLICATION:
                # RFC 9000 §10.2.3: no application close in Initial/Handshake packets
                frame = encode_connection_close_frame(TransportErrorCode.APPLICATION_ERROR, 0, b"")
            elif application:
                frame = _fit_reason(
                    lambda r: encode_application_close_frame(code, r), reason_bytes, asm.room
                )
            else:
                frame = _fit_reason(
                    lambda r: encode_connection_close_frame(code, frame_type, r),
                    reason_bytes,
                    asm.room,
                )
            if len(frame) <= asm.room:
                asm.push(frame)
            asm.end_packet()
        pending = asm.pending  # plaintext packets of the datagram (qlog)
        size = asm.end_datagram(pad_initial=True)
        paths.on_datagram_sent(size)
        if self._qlog is not None:
            self._qlog.packets_sent(now, pending)
        return asm.datagrams


def _fit_reason(encode: Callable[[bytes], bytes], reason: bytes, room: int) -> bytes:
    """The close frame with as much of the reason phrase as fits ``room``."""
    frame = encode(reason)
    if len(frame) <= room:
        return frame
    base = len(encode(b""))
    return encode(reason[: max(0, room - base - 1)])
