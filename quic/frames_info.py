"""Per-frame-type rules as data (RFC 9000 §12.4 Table 3, RFC 9221 §4-§5).

Theory of operation
-------------------
:data:`FRAME_INFO` maps every known wire frame type to a :class:`FrameInfo`: the
packet types it may appear in (Table 3 "Pkts" column) and the "Spec" column flags
turned into booleans — N (not ack-eliciting), C (not congestion controlled),
P (probing) and F (flow controlled). The table below is transcribed row by row from
the RFC so it can be checked against it at a glance; the connection consults it
instead of hard-coding frame rules.

DATAGRAM (RFC 9221) is ack-eliciting (§5.2), congestion controlled (§5.4), not flow
controlled (§5.3) and may only be sent with 0-RTT or 1-RTT keys (§6). RESET_STREAM_AT
(draft-ietf-quic-reliable-stream-reset §4) is ack-eliciting and only sent in the
application data space, like RESET_STREAM.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from quic.errors import QuicProtocolError, TransportErrorCode
from quic.frames_defs import Frame
from quic.packet import PacketType

__all__ = [
    "FRAME_INFO",
    "ONE_RTT_TAKES_ALL",
    "FrameInfo",
    "check_frame_allowed",
    "is_ack_eliciting",
    "is_probing_only",
]


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """Rules for one frame type."""

    name: str
    packet_types: frozenset[PacketType]
    ack_eliciting: bool
    congestion_controlled: bool
    probing: bool
    flow_controlled: bool

    def allowed(self, packet_type: PacketType) -> bool:
        """May this frame type appear in a packet of ``packet_type``? (RFC 9000 §12.4)."""
        return packet_type in self.packet_types


_PKT_LETTERS = {
    "I": PacketType.INITIAL,
    "H": PacketType.HANDSHAKE,
    "0": PacketType.ZERO_RTT,
    "1": PacketType.ONE_RTT,
}

# (wire types, name, "Pkts", "Spec") — RFC 9000 §12.4 Table 3; "ih" for 0x1c is
# written as "IH01" on its own row and 0x1d as "__01". DATAGRAM per RFC 9221.
_TABLE: tuple[tuple[range, str, str, str], ...] = (
    (range(0x00, 0x01), "PADDING", "IH01", "NP"),
    (range(0x01, 0x02), "PING", "IH01", ""),
    (range(0x02, 0x04), "ACK", "IH_1", "NC"),
    (range(0x04, 0x05), "RESET_STREAM", "__01", ""),
    (range(0x05, 0x06), "STOP_SENDING", "__01", ""),
    (range(0x06, 0x07), "CRYPTO", "IH_1", ""),
    (range(0x07, 0x08), "NEW_TOKEN", "___1", ""),
    (range(0x08, 0x10), "STREAM", "__01", "F"),
    (range(0x10, 0x11), "MAX_DATA", "__01", ""),
    (range(0x11, 0x12), "MAX_STREAM_DATA", "__01", ""),
    (range(0x12, 0x14), "MAX_STREAMS", "__01", ""),
    (range(0x14, 0x15), "DATA_BLOCKED", "__01", ""),
    (range(0x15, 0x16), "STREAM_DATA_BLOCKED", "__01", ""),
    (range(0x16, 0x18), "STREAMS_BLOCKED", "__01", ""),
    (range(0x18, 0x19), "NEW_CONNECTION_ID", "__01", "P"),
    (range(0x19, 0x1A), "RETIRE_CONNECTION_ID", "__01", ""),
    (range(0x1A, 0x1B), "PATH_CHALLENGE", "__01", "P"),
    (range(0x1B, 0x1C), "PATH_RESPONSE", "___1", "P"),
    (range(0x1C, 0x1D), "CONNECTION_CLOSE", "IH01", "N"),
    (range(0x1D, 0x1E), "CONNECTION_CLOSE", "__01", "N"),
    (range(0x1E, 0x1F), "HANDSHAKE_DONE", "___1", ""),
    (range(0x30, 0x32), "DATAGRAM", "__01", ""),
    # draft-ietf-quic-reliable-stream-reset §4: application data space only
    (range(0x24, 0x25), "RESET_STREAM_AT", "__01", ""),
    # draft-ietf-quic-ack-frequency §4, §5: ack-eliciting, congestion controlled, not
    # in 0-RTT (§3: the peer's min_ack_delay may not be remembered)
    (range(0x1F, 0x20), "IMMEDIATE_ACK", "___1", ""),
    (range(0xAF, 0xB0), "ACK_FREQUENCY", "___1", ""),
)


def _build() -> dict[int, FrameInfo]:
    table: dict[int, FrameInfo] = {}
    for types, name, pkts, spec in _TABLE:
        info = FrameInfo(
            name=name,
            packet_types=frozenset(_PKT_LETTERS[c] for c in pkts if c != "_"),
            ack_eliciting="N" not in spec,
            congestion_controlled="C" not in spec,
            probing="P" in spec,
            flow_controlled="F" in spec,
        )
        for frame_type in types:
            table[frame_type] = info
    return table


#: Wire frame type -> rules. Unknown types are absent.
FRAME_INFO: dict[int, FrameInfo] = _build()

#: Every known frame type may appear in a 1-RTT packet (RFC 9000 §12.4 Table 3, the
#: "1" column; RFC 9221 §4; draft-ietf-quic-ack-frequency §4, §5): the receive path
#: then checks only the other packet types (:func:`check_frame_allowed`).
ONE_RTT_TAKES_ALL: bool = all(PacketType.ONE_RTT in i.packet_types for i in FRAME_INFO.values())


def check_frame_allowed(frame_type: int, packet_type: PacketType) -> None:
    """Raise PROTOCOL_VIOLATION if ``frame_type`` may not appear in ``packet_type``.

    RFC 9000 §12.4: "An endpoint MUST treat receipt of a frame in a packet type that is
    not permitted as a connection error of type PROTOCOL_VIOLATION." Unknown frame types
    raise FRAME_ENCODING_ERROR.
    """
    info = FRAME_INFO.get(frame_type)
    if info is None:
        raise QuicProtocolError(
            TransportErrorCode.FRAME_ENCODING_ERROR, "unknown frame type", frame_type
        )
    if packet_type not in info.packet_types:
        raise QuicProtocolError(
            TransportErrorCode.PROTOCOL_VIOLATION,
            f"{info.name} not allowed in {packet_type.name} packet",
            frame_type,
        )


def is_ack_eliciting(frames: Iterable[Frame]) -> bool:
    """Does a packet holding ``frames`` elicit an ACK? (RFC 9000 §13.2, "N" flag)."""
    info = FRAME_INFO
    return any(info[f.frame_type].ack_eliciting for f in frames)


def is_probing_only(frames: Iterable[Frame]) -> bool:
    """Is a packet holding ``frames`` a probing packet? (RFC 9000 §9.1, "P" flag)."""
    info = FRAME_INFO
    return all(info[f.frame_type].probing for f in frames)
