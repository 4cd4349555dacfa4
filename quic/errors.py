"""Transport error codes and the typed exceptions that carry them.

Theory of operation
-------------------
Every codec and every rule of the transport raises :class:`QuicProtocolError` (or a
subclass) carrying a :class:`TransportErrorCode` named exactly as in RFC 9000 §20.1.
The connection turns such an exception into a CONNECTION_CLOSE frame in one place;
nothing raised from network input is allowed to escape as a bare Python exception.

TLS alerts map to ``CRYPTO_ERROR`` codes ``0x0100 + alert`` (RFC 9001 §4.8); see
:func:`crypto_error`.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "CRYPTO_ERROR_BASE",
    "BufferReadError",
    "QuicProtocolError",
    "StreamResetError",
    "TransportErrorCode",
    "crypto_error",
]

CRYPTO_ERROR_BASE = 0x0100


class TransportErrorCode(IntEnum):
    """QUIC transport error codes (RFC 9000 §20.1, RFC 9368 §10.2)."""

    NO_ERROR = 0x00
    INTERNAL_ERROR = 0x01
    CONNECTION_REFUSED = 0x02
    FLOW_CONTROL_ERROR = 0x03
    STREAM_LIMIT_ERROR = 0x04
    STREAM_STATE_ERROR = 0x05
    FINAL_SIZE_ERROR = 0x06
    FRAME_ENCODING_ERROR = 0x07
    TRANSPORT_PARAMETER_ERROR = 0x08
    CONNECTION_ID_LIMIT_ERROR = 0x09
    PROTOCOL_VIOLATION = 0x0A
    INVALID_TOKEN = 0x0B
    APPLICATION_ERROR = 0x0C
    CRYPTO_BUFFER_EXCEEDED = 0x0D
    KEY_UPDATE_ERROR = 0x0E
    AEAD_LIMIT_REACHED = 0x0F
    NO_VIABLE_PATH = 0x10
    VERSION_NEGOTIATION_ERROR = 0x11  # RFC 9368 §10.2
    CRYPTO_ERROR = 0x0100  # 0x0100-0x01ff: 0x0100 + TLS alert (RFC 9001 §4.8)


def crypto_error(alert: int) -> int:
    """Return the CRYPTO_ERROR code for a TLS alert description (RFC 9001 §4.8)."""
    if not 0 <= alert <= 0xFF:
        raise ValueError(f"TLS alert out of range: {alert}")
    return CRYPTO_ERROR_BASE + alert


class BufferReadError(ValueError):
    """Input ended before a field was complete, or a length was out of range.

    Codecs catch this and re-raise the error appropriate to their layer (for frames
    FRAME_ENCODING_ERROR, for transport parameters TRANSPORT_PARAMETER_ERROR, for TLS
    a ``decode_error`` alert).
    """


class QuicProtocolError(Exception):
    """A violation of the QUIC protocol that closes the connection.

    ``error_code`` is a :class:`TransportErrorCode` or a raw CRYPTO_ERROR value;
    ``frame_type`` is the type of the frame that triggered the error (0 when unknown,
    RFC 9000 §19.19); ``reason`` is the human-readable reason phrase.
    """

    closes_connection = True

    def __init__(self, error_code: int, reason: str = "", frame_type: int = 0) -> None:
        super().__init__(error_code, reason, frame_type)
        self.error_code = error_code
        self.reason = reason
        self.frame_type = frame_type

    def __str__(self) -> str:
        try:
            name = TransportErrorCode(self.error_code).name
        except ValueError:
            if CRYPTO_ERROR_BASE <= self.error_code <= 0x1FF:
                name = f"CRYPTO_ERROR(alert {self.error_code - CRYPTO_ERROR_BASE})"
            else:
                name = hex(self.error_code)
        text = f"{name}: {self.reason}" if self.reason else name
        if self.frame_type:
            text += f" (frame 0x{self.frame_type:x})"
        return text


class StreamResetError(Exception):
    """An error that resets one stream (RESET_STREAM / STOP_SENDING) but not the connection."""

    closes_connection = False

    def __init__(self, stream_id: int, error_code: int, reason: str = "") -> None:
        super().__init__(stream_id, error_code, reason)
        self.stream_id = stream_id
        self.error_code = error_code
        self.reason = reason
