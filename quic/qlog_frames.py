"""qlog frame objects of decoded QUIC frames (qlog 0.3, draft-ietf-quic-qlog-quic-events
§"QUIC Frames"), for :mod:`quic.qlog`.

Theory of operation
-------------------
Tracing never touches the frame path of the connection: the plaintext payload of a
packet (received, or about to be sealed) is decoded a second time here, only when a
logger exists, with the codec's own decoder (:func:`quic.frames.decode_frame`). A
payload that does not decode ends the list with an ``unknown`` frame: the logger never
raises on peer input. Runs of PADDING are coalesced into one entry. Field names are
those of qlog 0.3 (``length`` of STREAM, CRYPTO and DATAGRAM data), which qvis reads.
"""

from __future__ import annotations

from typing import Any

from quic.errors import QuicProtocolError, TransportErrorCode
from quic.frames import (
    AckFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    decode_frame,
)

__all__ = ["close_error_name", "decode_frames_for_log", "frame_to_qlog"]


def close_error_name(code: int) -> str | None:
    try:
        return TransportErrorCode(code).name.lower()
    except ValueError:
        return None


def frame_to_qlog(frame: Any, ack_delay_exponent: int = 3) -> dict[str, Any]:
    """The qlog ``$QuicFrame`` of a decoded frame (quic-events §"QUIC Frames").

    ``ack_delay_exponent`` is the sender's (RFC 9000 §18.2), to log ACK delays in ms.
    """
    if isinstance(frame, StreamFrame):
        out: dict[str, Any] = {
            "frame_type": "stream",
            "stream_id": frame.stream_id,
            "offset": frame.offset,
            "length": len(frame.data),
        }
        if frame.fin:
            out["fin"] = True
        return out
    if isinstance(frame, AckFrame):
        out = {
            "frame_type": "ack",
            "ack_delay": (frame.ack_delay << ack_delay_exponent) / 1000.0,
            "acked_ranges": [[lo, hi] for lo, hi in sorted(frame.ranges)],
        }
        if frame.ecn is not None:
            out["ect0"], out["ect1"], out["ce"] = frame.ecn
        return out
    if isinstance(frame, CryptoFrame):
        return {"frame_type": "crypto", "offset": frame.offset, "length": len(frame.data)}
    if isinstance(frame, PaddingFrame):
        return {"frame_type": "padding", "length": frame.length}
    if isinstance(frame, ConnectionCloseFrame | ApplicationCloseFrame):
        app = isinstance(frame, ApplicationCloseFrame)
        out = {
            "frame_type": "connection_close",
            "error_space": "application" if app else "transport",
            "error_code": frame.error_code,
            "reason": frame.reason.decode("utf-8", "replace"),
        }
        if isinstance(frame, ConnectionCloseFrame):
            name = close_error_name(frame.error_code)
            if name is not None:
                out["error"] = name
            out["trigger_frame_type"] = frame.error_frame_type
        return out
    return _simple_frame(frame)


def _simple_frame(frame: Any) -> dict[str, Any]:
    if isinstance(frame, DatagramFrame):
        return {"frame_type": "datagram", "length": len(frame.data)}
    if isinstance(frame, MaxDataFrame):
        return {"frame_type": "max_data", "maximum": frame.maximum_data}
    if isinstance(frame, MaxStreamDataFrame):
        return {
            "frame_type": "max_stream_data",
            "stream_id": frame.stream_id,
            "maximum": frame.maximum_stream_data,
        }
    if isinstance(frame, MaxStreamsFrame | StreamsBlockedFrame):
        name = "max_streams" if isinstance(frame, MaxStreamsFrame) else "streams_blocked"
        kind = "bidirectional" if frame.bidirectional else "unidirectional"
        return {"frame_type": name, "stream_type": kind, "maximum": frame.maximum_streams}
    if isinstance(frame, DataBlockedFrame):
        return {"frame_type": "data_blocked", "limit": frame.maximum_data}
    if isinstance(frame, StreamDataBlockedFrame):
        return {
            "frame_type": "stream_data_blocked",
            "stream_id": frame.stream_id,
            "limit": frame.maximum_stream_data,
        }
    if isinstance(frame, ResetStreamFrame):
        return {
            "frame_type": "reset_stream",
            "stream_id": frame.stream_id,
            "error_code": frame.error_code,
            "final_size": frame.final_size,
        }
    if isinstance(frame, StopSendingFrame):
        return {
            "frame_type": "stop_sending",
            "stream_id": frame.stream_id,
            "error_code": frame.error_code,
        }
    if isinstance(frame, NewConnectionIdFrame):
        return {
            "frame_type": "new_connection_id",
            "sequence_number": frame.sequence_number,
            "retire_prior_to": frame.retire_prior_to,
            "connection_id_length": len(frame.connection_id),
            "connection_id": frame.connection_id.hex(),
            "stateless_reset_token": frame.stateless_reset_token.hex(),
        }
    if isinstance(frame, RetireConnectionIdFrame):
        return {"frame_type": "retire_connection_id", "sequence_number": frame.sequence_number}
    if isinstance(frame, PathChallengeFrame | PathResponseFrame):
        name = "path_challenge" if isinstance(frame, PathChallengeFrame) else "path_response"
        return {"frame_type": name, "data": frame.data.hex()}
    if isinstance(frame, NewTokenFrame):
        return {"frame_type": "new_token", "token": {"raw": {"data": frame.token.hex()}}}
    # PING, HANDSHAKE_DONE and anything without fields worth logging
    name = type(frame).__name__.removesuffix("Frame")
    snake = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return {"frame_type": snake}


def decode_frames_for_log(
    payload: bytes | memoryview, ack_delay_exponent: int = 3
) -> list[dict[str, Any]]:
    """Frames of a plaintext payload; stops (without raising) at the first bad frame."""
    data = bytes(payload)
    frames: list[dict[str, Any]] = []
    pos = 0
    end = len(data)
    padding = 0
    while pos < end:
        if data[pos] == 0:  # coalesce PADDING runs into one entry
            start = pos
            while pos < end and data[pos] == 0:
                pos += 1
            padding += pos - start
            continue
        try:
            frame, pos = decode_frame(data, pos)
        except QuicProtocolError:
            frames.append({"frame_type": "unknown", "length": end - pos})
            break
        frames.append(frame_to_qlog(frame, ack_delay_exponent))
    if padding:
        frames.append({"frame_type": "padding", "length": padding})
    return frames
