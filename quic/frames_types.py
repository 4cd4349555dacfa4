"""QUIC frame type codes (RFC 9000 §12.4 Table 3, §19; RFC 9221 §4).

The one table of frame type values, shared by the encoder modules
(:mod:`quic.frames_defs`, :mod:`quic.frames_ack`) and re-exported by
:mod:`quic.frames`.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["FrameType"]


class FrameType(IntEnum):
    """Frame types (RFC 9000 §19 / §12.4 Table 3, RFC 9221 §4)."""

    PADDING = 0x00
    PING = 0x01
    ACK = 0x02
    ACK_ECN = 0x03
    RESET_STREAM = 0x04
    STOP_SENDING = 0x05
    CRYPTO = 0x06
    NEW_TOKEN = 0x07
    STREAM = 0x08  # 0x08-0x0f: OFF 0x04, LEN 0x02, FIN 0x01
    STREAM_FIN = 0x09
    STREAM_LEN = 0x0A
    STREAM_LEN_FIN = 0x0B
    STREAM_OFF = 0x0C
    STREAM_OFF_FIN = 0x0D
    STREAM_OFF_LEN = 0x0E
    STREAM_OFF_LEN_FIN = 0x0F
    MAX_DATA = 0x10
    MAX_STREAM_DATA = 0x11
    MAX_STREAMS_BIDI = 0x12
    MAX_STREAMS_UNI = 0x13
    DATA_BLOCKED = 0x14
    STREAM_DATA_BLOCKED = 0x15
    STREAMS_BLOCKED_BIDI = 0x16
    STREAMS_BLOCKED_UNI = 0x17
    NEW_CONNECTION_ID = 0x18
    RETIRE_CONNECTION_ID = 0x19
    PATH_CHALLENGE = 0x1A
    PATH_RESPONSE = 0x1B
    CONNECTION_CLOSE = 0x1C
    CONNECTION_CLOSE_APP = 0x1D
    HANDSHAKE_DONE = 0x1E
    RESET_STREAM_AT = 0x24  # draft-ietf-quic-reliable-stream-reset §4
    DATAGRAM = 0x30  # RFC 9221 §4: no Length field
    DATAGRAM_LEN = 0x31
    # draft-ietf-quic-ack-frequency §4, §5 (helper "congestion", issue 9)
    IMMEDIATE_ACK = 0x1F
    ACK_FREQUENCY = 0xAF  # two-byte varint on the wire
