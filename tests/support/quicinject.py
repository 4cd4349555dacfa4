"""Hostile-peer helpers: arbitrary frames in authenticated 1-RTT packets.

:func:`seal_1rtt` seals a payload with a connection's own 1-RTT keys and packet number
space, exactly as if that connection had sent it, so the peer authenticates and
processes whatever frames the payload holds. The sealing connection's loss recovery
learns the packet number (not ack-eliciting, not in flight), so an ACK of it from the
peer is not mistaken for an acknowledgment of a packet never sent.
"""

from __future__ import annotations

from quic.connection import QuicConnection
from quic.frames import encode_ack_frame
from quic.packet import PacketType
from quic.packet_builder import PacketAssembler
from quic.recovery import SentPacket

__all__ = ["ack_everything", "seal_1rtt", "seal_handshake"]

_BUDGET = 60_000


def seal_1rtt(sender: QuicConnection, payload: bytes, now: float) -> bytes:
    """A datagram holding one 1-RTT packet of ``sender`` carrying ``payload``."""
    return _seal(sender, 2, PacketType.ONE_RTT, payload, now)


def seal_handshake(sender: QuicConnection, payload: bytes, now: float) -> bytes:
    """A datagram holding one Handshake packet of ``sender`` carrying ``payload`` (the
    handshake is under way: ``sender`` has Handshake keys)."""
    return _seal(sender, 1, PacketType.HANDSHAKE, payload, now)


def _seal(
    sender: QuicConnection, index: int, packet_type: PacketType, payload: bytes, now: float
) -> bytes:
    space = sender.spaces[index]
    write = space.write
    assert write is not None, f"no keys for packet number space {index}"
    asm = PacketAssembler(_BUDGET)
    asm.begin_datagram(_BUDGET)
    pn = space.next_pn
    assert asm.begin_packet(
        packet_type,
        sender.version,
        sender.cids.peer_cid,
        sender.host_cid,
        write,
        index,
        pn,
        None,
        b"",
        write.key_phase if index == 2 else 0,
    )
    space.next_pn += 1
    asm.push(payload)
    asm.end_packet()
    asm.end_datagram(pad_initial=False)
    data = asm.datagrams[0]
    sender.recovery.on_packet_sent(SentPacket(index, pn, len(data), False, False), now)
    return data


def ack_everything(receiver: QuicConnection) -> bytes:
    """An ACK frame (for the peer to seal) acknowledging every 1-RTT packet
    ``receiver`` has sent so far; empty if it sent none."""
    sent = receiver.recovery.spaces[2].largest_sent
    if sent < 0:
        return b""
    return encode_ack_frame([(0, sent)], 0)
