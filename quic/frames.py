"""QUIC frames: the public face of the frame codec (RFC 9000 §12.4, §19; RFC 9221).

Theory of operation
-------------------
The codec is split by responsibility and re-exported here, so users import from
``quic.frames`` only:

- :mod:`quic.frames_defs` — :class:`FrameType`, one frozen slotted dataclass per frame
  with ``encode()``, and allocation-light header writers for the send path
  (:func:`encode_stream_frame_header`, :func:`encode_crypto_frame_header`,
  :func:`encode_datagram_frame_header` and their ``*_header_size`` twins);
- :mod:`quic.frames_decode` — :func:`decode_frame`, :func:`decode_frames` and the hot
  :func:`decode_ack`; network input raises :class:`~quic.errors.QuicProtocolError`;
- :mod:`quic.frames_info` — :data:`FRAME_INFO`, RFC 9000 Table 3 as data, and
  :func:`check_frame_allowed`.
"""

from __future__ import annotations

from quic.frames_decode import decode_ack, decode_frame, decode_frames
from quic.frames_defs import (
    MAX_STREAMS_LIMIT,
    STREAM_FIN_BIT,
    STREAM_LEN_BIT,
    STREAM_OFF_BIT,
    AckFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    Frame,
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
    crypto_frame_header_size,
    datagram_frame_header_size,
    encode_ack_frame,
    encode_crypto_frame_header,
    encode_datagram_frame_header,
    encode_frame,
    encode_stream_frame_header,
    stream_frame_header_size,
)
from quic.frames_info import (
    FRAME_INFO,
    FrameInfo,
    check_frame_allowed,
    is_ack_eliciting,
    is_probing_only,
)

__all__ = [
    "FRAME_INFO",
    "MAX_STREAMS_LIMIT",
    "STREAM_FIN_BIT",
    "STREAM_LEN_BIT",
    "STREAM_OFF_BIT",
    "AckFrame",
    "ApplicationCloseFrame",
    "ConnectionCloseFrame",
    "CryptoFrame",
    "DataBlockedFrame",
    "DatagramFrame",
    "Frame",
    "FrameInfo",
    "FrameType",
    "HandshakeDoneFrame",
    "MaxDataFrame",
    "MaxStreamDataFrame",
    "MaxStreamsFrame",
    "NewConnectionIdFrame",
    "NewTokenFrame",
    "PaddingFrame",
    "PathChallengeFrame",
    "PathResponseFrame",
    "PingFrame",
    "ResetStreamFrame",
    "RetireConnectionIdFrame",
    "StopSendingFrame",
    "StreamDataBlockedFrame",
    "StreamFrame",
    "StreamsBlockedFrame",
    "check_frame_allowed",
    "crypto_frame_header_size",
    "datagram_frame_header_size",
    "decode_ack",
    "decode_frame",
    "decode_frames",
    "encode_ack_frame",
    "encode_crypto_frame_header",
    "encode_datagram_frame_header",
    "encode_frame",
    "encode_stream_frame_header",
    "is_ack_eliciting",
    "is_probing_only",
    "stream_frame_header_size",
]
