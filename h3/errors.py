"""HTTP/3 error codes, the typed exceptions that carry them, and GREASE codepoints.

Theory of operation
-------------------
Every HTTP/3 codec and rule raises one of two exceptions, each carrying an
:class:`H3ErrorCode` (or a raw code from an extension):

- :class:`H3ConnectionError` — a connection error (RFC 9114 §8): the HTTP/3 layer
  closes the whole QUIC connection with this application error code;
- :class:`H3StreamError` — a stream error (RFC 9114 §8): only the offending stream is
  reset (RESET_STREAM / STOP_SENDING) with this code.

Both derive from :class:`H3Error`, whose ``closes_connection`` attribute says which of
the two it is, so the single place that turns exceptions into wire signals can
dispatch on it. Codecs do not know stream IDs; the logic layer that catches an
:class:`H3StreamError` knows which stream it was reading.

The reserved ("GREASE") codepoints ``0x1f * N + 0x21`` exist in four HTTP/3 spaces —
error codes (§8.1), frame types (§7.2.8), setting identifiers (§7.2.4.1) and stream
types (§6.2.3). :func:`is_reserved_codepoint` and :func:`random_reserved_codepoint` are
shared by the codec modules for all four. Randomness comes from an injectable
:class:`random.Random` so tests stay deterministic.
"""

from __future__ import annotations

import random
from enum import IntEnum

from quic.buffer import VARINT_MAX

__all__ = [
    "GREASE_BASE",
    "GREASE_STEP",
    "H3ConnectionError",
    "H3Error",
    "H3ErrorCode",
    "H3StreamError",
    "grease_error_code",
    "is_reserved_codepoint",
    "is_reserved_error",
    "random_reserved_codepoint",
]

# RFC 9114 §6.2.3, §7.2.4.1, §7.2.8, §8.1: reserved codepoints are 0x1f * N + 0x21.
GREASE_BASE = 0x21
GREASE_STEP = 0x1F
_GREASE_MAX_N = (VARINT_MAX - GREASE_BASE) // GREASE_STEP

_default_rng = random.Random()


class H3ErrorCode(IntEnum):
    """HTTP/3 application error codes, named exactly as in their specifications."""

    # RFC 9297 §5.2 (IANA: "HTTP/3 Error Codes")
    H3_DATAGRAM_ERROR = 0x33
    # RFC 9114 §8.1
    H3_NO_ERROR = 0x0100
    H3_GENERAL_PROTOCOL_ERROR = 0x0101
    H3_INTERNAL_ERROR = 0x0102
    H3_STREAM_CREATION_ERROR = 0x0103
    H3_CLOSED_CRITICAL_STREAM = 0x0104
    H3_FRAME_UNEXPECTED = 0x0105
    H3_FRAME_ERROR = 0x0106
    H3_EXCESSIVE_LOAD = 0x0107
    H3_ID_ERROR = 0x0108
    H3_SETTINGS_ERROR = 0x0109
    H3_MISSING_SETTINGS = 0x010A
    H3_REQUEST_REJECTED = 0x010B
    H3_REQUEST_CANCELLED = 0x010C
    H3_REQUEST_INCOMPLETE = 0x010D
    H3_MESSAGE_ERROR = 0x010E
    H3_CONNECT_ERROR = 0x010F
    H3_VERSION_FALLBACK = 0x0110
    # RFC 9204 §6
    QPACK_DECOMPRESSION_FAILED = 0x0200
    QPACK_ENCODER_STREAM_ERROR = 0x0201
    QPACK_DECODER_STREAM_ERROR = 0x0202
    # draft-ietf-webtrans-http3-16 §9.5 (codepoints only; the rules live with WT logic)
    WT_FLOW_CONTROL_ERROR = 0x045D4487
    WT_ALPN_ERROR = 0x0817B3DD
    WT_SESSION_GONE = 0x170D7B68
    WT_REQUIREMENTS_NOT_MET = 0x212C0D48
    WT_BUFFERED_STREAM_REJECTED = 0x3994BD84


def is_reserved_codepoint(value: int) -> bool:
    """True if ``value`` has the reserved form ``0x1f * N + 0x21`` (RFC 9114 §8.1 etc.)."""
    return value >= GREASE_BASE and (value - GREASE_BASE) % GREASE_STEP == 0


def random_reserved_codepoint(rng: random.Random | None = None) -> int:
    """A random reserved codepoint ``0x1f * N + 0x21`` that fits in a varint."""
    n = (rng or _default_rng).randint(0, _GREASE_MAX_N)
    return GREASE_STEP * n + GREASE_BASE


def is_reserved_error(code: int) -> bool:
    """True if ``code`` is a reserved (GREASE) error code (RFC 9114 §8.1).

    A receiver treats such codes, like any unknown code, as H3_NO_ERROR.
    """
    return is_reserved_codepoint(code)


def grease_error_code(rng: random.Random | None = None) -> int:
    """A random reserved error code, to send now and then instead of H3_NO_ERROR (§8.1)."""
    return random_reserved_codepoint(rng)


class H3Error(Exception):
    """Base of the HTTP/3 errors; ``closes_connection`` says what the error kills."""

    closes_connection = True

    def __init__(self, error_code: int, reason: str = "") -> None:
        super().__init__(error_code, reason)
        self.error_code = error_code
        self.reason = reason

    def __str__(self) -> str:
        try:
            name = H3ErrorCode(self.error_code).name
        except ValueError:
            name = hex(self.error_code)
        return f"{name}: {self.reason}" if self.reason else name


class H3ConnectionError(H3Error):
    """A connection error (RFC 9114 §8): close the QUIC connection with ``error_code``."""

    closes_connection = True


class H3StreamError(H3Error):
    """A stream error (RFC 9114 §8): reset the stream with ``error_code``.

    Codecs raise it without a stream ID; the logic layer that knows the stream may pass
    ``stream_id`` when re-raising.
    """

    closes_connection = False

    def __init__(self, error_code: int, reason: str = "", stream_id: int | None = None) -> None:
        super().__init__(error_code, reason)
        self.stream_id = stream_id
