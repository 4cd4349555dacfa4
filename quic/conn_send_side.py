"""The datagrams a connection builds outside its send loop (RFC 9000 §8.2, §9, §10.2).

Theory of operation
-------------------
:class:`~quic.conn_send.SendScheduler` fills datagrams from everything the components
owe. Two kinds of datagram follow rules of their own, and this owned component of the
scheduler builds them:

* **CONNECTION_CLOSE while closing** (:meth:`SideDatagrams.build_close`, RFC 9000
  §10.2.3): one datagram with the close in every space we have keys for, within the
  amplification limit; full-length packet numbers, since the peer may have lost track;
  an application close is sent as a transport APPLICATION_ERROR without reason in
  Initial and Handshake packets; the reason phrase is cut to fit (at most 256 bytes).
* **Probes of another path** (:meth:`SideDatagrams.build_on_path`, RFC 9000 §8.2,
  §9.5): the path's PATH_CHALLENGE and PATH_RESPONSE frames in a 1-RTT packet to the
  path's own connection ID, expanded to 1200 bytes within the path's amplification
  limit; neither in flight nor ack-eliciting for loss recovery (§9.4), responses wait
  for the congestion window, challenges do not (§8.2.2).

* **DPLPMTUD probes** (:meth:`SideDatagrams.pmtu_probe`, RFC 9000 §14.4): a 1-RTT
  packet of its own, larger than the others, whose PING and PADDING the PMTU component
  writes; registered with loss recovery, ECN and the path like any sent packet.

:meth:`SideDatagrams.begin_one_rtt` opens a 1-RTT packet of its own in a datagram.
:func:`push_ping` puts a PING into an open packet (the scheduler's probes, its runs of
ACK-only packets). Nothing here is per packet of the send loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from quic.conn_keys import APPLICATION, INITIAL
from quic.conn_paths import MIN_SHORT_DATAGRAM
from quic.errors import TransportErrorCode
from quic.frames import (
    PING_FRAME,
    encode_application_close_frame,
    encode_connection_close_frame,
)
from quic.packet import PacketType
from quic.packet_builder import PacketAssembler

if TYPE_CHECKING:
    from quic.cid import ConnectionIdManager
    from quic.conn_close import CloseFrame
    from quic.conn_ecn import EcnController
    from quic.conn_handshake import HandshakeDriver
    from quic.conn_keys import PacketSpaces
    from quic.conn_paths import Path, PathManager
    from quic.conn_pmtu import PmtuDiscovery
    from quic.qlog import QuicLogger
    from quic.recovery import LossRecovery

__all__ = ["SideDatagrams", "push_ping"]

_PACKET_TYPES = (PacketType.INITIAL, PacketType.HANDSHAKE, PacketType.ONE_RTT)
_MAX_REASON = 256  # bytes of reason phrase we send at most


class SideDatagrams:
    """Closing datagrams and probes of other paths (see the module docstring)."""

    __slots__ = (
        "_cids",
        "_ecn",
        "_handshake",
        "_host_cid",
        "_is_client",
        "_keys",
        "_paths",
        "_pmtu",
        "_qlog",
        "_recovery",
    )

    def __init__(
        self,
        *,
        is_client: bool,
        host_cid: bytes,
        keys: PacketSpaces,
        cids: ConnectionIdManager,
        paths: PathManager,
        handshake: HandshakeDriver,
        recovery: LossRecovery,
        qlog: QuicLogger | None,
        pmtu: PmtuDiscovery,
        ecn: EcnController,
    ) -> None:
        self._is_client = is_client
        self._host_cid = host_cid
        self._keys = keys
        self._cids = cids
        self._paths = paths
        self._handshake = handshake
        self._recovery = recovery
        self._qlog = qlog
        self._pmtu = pmtu
        self._ecn = ecn

    def pmtu_probe(
        self, asm: PacketAssembler, size: int, now: float, version: int, marked: bool
    ) -> bool:
        """A DPLPMTUD probe of ``size`` bytes in a datagram of its own (RFC 9000 §14.4);
        the PMTU component writes it. True if it was sent."""
        space = self._keys.spaces[APPLICATION]
        write = space.write
        if write is None or not self._paths.address_validated:
            return False
        asm.begin_datagram(size)
        if not self.begin_one_rtt(asm, version, self._cids.peer_cid):
            return False
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

    def begin_one_rtt(self, asm: PacketAssembler, version: int, dcid: bytes) -> bool:
        """Open a 1-RTT packet of its own (a PMTU probe, a probe of another path) in the
        assembler's open datagram, taking the next packet number; False if no room."""
        space = self._keys.spaces[APPLICATION]
        write = space.write
        assert write is not None
        if not asm.begin_packet(
            PacketType.ONE_RTT,
            version,
            dcid,
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
        return True

    def build_on_path(self, now: float, version: int, path: Path, dcid: bytes) -> bytes | None:
        """One datagram for a path other than the current one: its PATH_CHALLENGE and
        PATH_RESPONSE frames in a 1-RTT packet to ``dcid`` (the path's own connection
        ID, RFC 9000 §9.5), expanded to 1200 bytes within the path's amplification
        limit (RFC 9000 §8.2.1, §8.2.2). None: nothing may go."""
        paths = self._paths
        space = self._keys.spaces[APPLICATION]
        write = space.write
        budget = paths.path_budget(path)
        if write is None or budget < MIN_SHORT_DATAGRAM:
            return None
        if not path.challenge_owed and self._recovery.congestion.available() < budget:
            return None  # responses wait for the window (RFC 9000 §8.2.2); challenges not
        asm = PacketAssembler(paths.max_datagram_size)
        asm.begin_datagram(budget)
        if not self.begin_one_rtt(asm, version, dcid):
            return None
        paths.write(asm, path)
        asm.end_packet()
        pending = asm.pending
        size = asm.end_datagram(pad_initial=False)
        if not size:
            return None
        paths.on_path_datagram_sent(path, size)
        for packet in asm.packets:
            # a probe of another path (RFC 9000 §9.4: "exceptions for probe packets so
            # that their loss ... does not unduly cause the congestion controller to
            # reduce its sending rate"): neither in flight nor ack-eliciting for loss
            # recovery; a challenge has its own timer (§8.2.1), a response is not resent
            packet.in_flight = packet.ack_eliciting = False
            self._recovery.on_packet_sent(packet, now)
        if self._qlog is not None:
            self._qlog.packets_sent(now, pending)
        return asm.datagrams[0]

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


def _fit_reason(encode: Callable[[bytes], bytes], reason: bytes, room: int) -> bytes:
    """The close frame with as much of the reason phrase as fits ``room``."""
    frame = encode(reason)
    if len(frame) <= room:
        return frame
    base = len(encode(b""))
    return encode(reason[: max(0, room - base - 1)])


def push_ping(asm: PacketAssembler) -> None:
    """A PING into the open packet if it has room: it becomes ack-eliciting."""
    if asm.room >= len(PING_FRAME):
        asm.push(PING_FRAME)
        packet = asm.packet
        packet.ack_eliciting = packet.in_flight = True
