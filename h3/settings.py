"""HTTP/3 SETTINGS (RFC 9114 §7.2.4): identifiers, payload codec and validation.

Theory of operation
-------------------
A SETTINGS payload is a sequence of ``Identifier (i), Value (i)`` pairs. The codec
turns it into a ``dict[int, int]`` and applies the rules that need no connection
state:

- a payload that ends inside a pair is H3_FRAME_ERROR (§7.1);
- a duplicate identifier is H3_SETTINGS_ERROR (§7.2.4);
- the HTTP/2 identifiers 0x02-0x05 are H3_SETTINGS_ERROR (§7.2.4.1);
- the boolean settings listed in :data:`BOOLEAN_SETTINGS` must be 0 or 1, else
  H3_SETTINGS_ERROR (RFC 8441 §3 via RFC 9220; RFC 9297 §2.1.1; WebTransport
  draft-02 §3.1, draft-16 §3.1: "Clients MUST treat values greater than 1 as a
  connection error of type H3_SETTINGS_ERROR" for SETTINGS_WT_ENABLED; we apply it
  in both roles, a value that can only be a broken peer).

Unknown and reserved (``0x1f * N + 0x21``) identifiers are kept in the result; the
logic ignores what it does not understand (§7.2.4). Rules that depend on state (a
second SETTINGS frame, 0-RTT compatibility, which WebTransport draft to pick) belong
to the logic.

:data:`SETTING_DEFAULTS` holds the default of every setting we know, as data
(``None`` = unlimited).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from enum import IntEnum
from typing import TypeVar

from h3.errors import (
    H3ConnectionError,
    H3ErrorCode,
    is_reserved_codepoint,
    random_reserved_codepoint,
)
from h3.frames import FrameType, encode_frame
from quic.buffer import VARINT_MAX, decode_varint, encode_varint
from quic.errors import BufferReadError

__all__ = [
    "BOOLEAN_SETTINGS",
    "HTTP2_RESERVED_SETTINGS",
    "SETTING_DEFAULTS",
    "SettingId",
    "decode_settings",
    "encode_settings",
    "encode_settings_frame",
    "grease_setting",
    "is_reserved_setting",
]

_Id = TypeVar("_Id", bound=int)


class SettingId(IntEnum):
    """HTTP/3 setting identifiers (without the ``SETTINGS_`` prefix)."""

    QPACK_MAX_TABLE_CAPACITY = 0x01  # RFC 9204 §5
    MAX_FIELD_SECTION_SIZE = 0x06  # RFC 9114 §7.2.4.1
    QPACK_BLOCKED_STREAMS = 0x07  # RFC 9204 §5
    ENABLE_CONNECT_PROTOCOL = 0x08  # RFC 9220 §3
    H3_DATAGRAM = 0x33  # RFC 9297 §2.1.1
    # draft-ietf-webtrans-http3-16 §9.2
    WT_INITIAL_MAX_DATA = 0x2B61
    WT_INITIAL_MAX_STREAMS_UNI = 0x2B64
    WT_INITIAL_MAX_STREAMS_BIDI = 0x2B65
    ENABLE_WEBTRANSPORT_DRAFT02 = 0x2B603742  # draft-ietf-webtrans-http3-02 §8.2
    WT_ENABLED = 0x2C7CF000  # draft-16's codepoint (it changes with each draft, §7.1)
    H3_DATAGRAM_DRAFT04 = 0xFFD277  # draft-ietf-masque-h3-datagram-04 (older browsers)
    WEBTRANSPORT_MAX_SESSIONS_DRAFT07 = 0xC671706A  # draft-ietf-webtrans-http3-07
    # draft-ietf-webtrans-http3-13's SETTINGS_WT_MAX_SESSIONS (Safari 26; its value is a
    # session count, not a boolean; the draft text is not in specs/, issue 11)
    WT_MAX_SESSIONS_DRAFT13 = 0x14E9CD29


# RFC 9114 §7.2.4.1, §11.2.2: HTTP/2 settings with no HTTP/3 meaning; receipt is an error.
HTTP2_RESERVED_SETTINGS = frozenset({0x02, 0x03, 0x04, 0x05})

# Settings whose value MUST be 0 or 1.
BOOLEAN_SETTINGS = frozenset(
    {
        SettingId.ENABLE_CONNECT_PROTOCOL,  # RFC 8441 §3 (HTTP/3: RFC 9220 §3)
        SettingId.H3_DATAGRAM,  # RFC 9297 §2.1.1
        SettingId.H3_DATAGRAM_DRAFT04,
        SettingId.ENABLE_WEBTRANSPORT_DRAFT02,  # draft-02 §3.1
        SettingId.WT_ENABLED,  # draft-16 §3.1
    }
)

SETTING_DEFAULTS: dict[int, int | None] = {
    SettingId.QPACK_MAX_TABLE_CAPACITY: 0,
    SettingId.MAX_FIELD_SECTION_SIZE: None,  # unlimited
    SettingId.QPACK_BLOCKED_STREAMS: 0,
    SettingId.ENABLE_CONNECT_PROTOCOL: 0,
    SettingId.H3_DATAGRAM: 0,
    SettingId.H3_DATAGRAM_DRAFT04: 0,
    SettingId.ENABLE_WEBTRANSPORT_DRAFT02: 0,
    SettingId.WT_ENABLED: 0,
    SettingId.WT_INITIAL_MAX_DATA: 0,
    SettingId.WT_INITIAL_MAX_STREAMS_UNI: 0,
    SettingId.WT_INITIAL_MAX_STREAMS_BIDI: 0,
    SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07: 0,
    SettingId.WT_MAX_SESSIONS_DRAFT13: 0,
}


def is_reserved_setting(setting_id: int) -> bool:
    """True for the reserved identifiers ``0x1f * N + 0x21`` (RFC 9114 §7.2.4.1)."""
    return is_reserved_codepoint(setting_id)


# GREASE values need no secrecy: one generator per module, not one (seeded from
# os.urandom, ~16 us) per call, i.e. per connection (issue 10, handshake cost)
_RNG = random.Random()


def grease_setting(rng: random.Random | None = None) -> tuple[int, int]:
    """A reserved identifier with a random value, to include in SETTINGS (§7.2.4.1)."""
    rng = rng or _RNG
    return random_reserved_codepoint(rng), rng.randint(0, VARINT_MAX)


def encode_settings(settings: Mapping[_Id, int]) -> bytes:
    """The SETTINGS payload for ``settings`` (identifier → value)."""
    parts: list[bytes] = []
    for setting_id, value in settings.items():
        if setting_id in HTTP2_RESERVED_SETTINGS:
            raise ValueError(f"setting 0x{setting_id:x} is reserved (RFC 9114 §7.2.4.1)")
        if setting_id in BOOLEAN_SETTINGS and value not in (0, 1):
            raise ValueError(f"setting 0x{setting_id:x} must be 0 or 1, not {value}")
        if not (0 <= setting_id <= VARINT_MAX and 0 <= value <= VARINT_MAX):
            raise ValueError(f"setting 0x{setting_id:x}={value} out of varint range")
        parts.append(encode_varint(setting_id))
        parts.append(encode_varint(value))
    return b"".join(parts)


def encode_settings_frame(settings: Mapping[_Id, int]) -> bytes:
    """A whole SETTINGS frame (RFC 9114 §7.2.4)."""
    return encode_frame(FrameType.SETTINGS, encode_settings(settings))


def decode_settings(payload: bytes | bytearray | memoryview) -> dict[int, int]:
    """Parse and validate a SETTINGS payload; see the module docstring for the rules."""
    settings: dict[int, int] = {}
    pos = 0
    end = len(payload)
    while pos < end:
        try:
            setting_id, pos = decode_varint(payload, pos)
            value, pos = decode_varint(payload, pos)
        except BufferReadError:
            raise H3ConnectionError(
                H3ErrorCode.H3_FRAME_ERROR, "SETTINGS: truncated parameter (RFC 9114 §7.1)"
            ) from None
        if setting_id in settings:
            raise H3ConnectionError(
                H3ErrorCode.H3_SETTINGS_ERROR,
                f"duplicate setting 0x{setting_id:x} (RFC 9114 §7.2.4)",
            )
        if setting_id in HTTP2_RESERVED_SETTINGS:
            raise H3ConnectionError(
                H3ErrorCode.H3_SETTINGS_ERROR,
                f"HTTP/2 setting 0x{setting_id:x} (RFC 9114 §7.2.4.1)",
            )
        if value > 1 and setting_id in BOOLEAN_SETTINGS:
            raise H3ConnectionError(
                H3ErrorCode.H3_SETTINGS_ERROR,
                f"setting 0x{setting_id:x} must be 0 or 1, got {value}",
            )
        settings[setting_id] = value
    return settings
