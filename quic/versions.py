"""QUIC versions (RFC 9000 §15, RFC 9369, RFC 8999 §6)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["SUPPORTED_VERSIONS", "QuicVersion", "are_compatible", "is_reserved_version"]


class QuicVersion(IntEnum):
    NEGOTIATION = 0x00000000  # Version Negotiation packets (RFC 8999 §6)
    VERSION_1 = 0x00000001  # RFC 9000
    VERSION_2 = 0x6B3343CF  # RFC 9369 §3.1


#: Versions this implementation speaks, most preferred first.
SUPPORTED_VERSIONS: tuple[int, ...] = (QuicVersion.VERSION_1, QuicVersion.VERSION_2)


def is_reserved_version(version: int) -> bool:
    """True for the greasing versions 0x?a?a?a?a (RFC 9000 §15)."""
    return version & 0x0F0F0F0F == 0x0A0A0A0A


#: Versions whose first flights convert into each other (RFC 9368 §2.2): v1 and v2 are
#: compatible in both directions (RFC 9369 §4). No other pair is assumed (RFC 9368 §2.2).
_COMPATIBLE = frozenset({int(QuicVersion.VERSION_1), int(QuicVersion.VERSION_2)})


def are_compatible(original: int, negotiated: int) -> bool:
    """True if a first flight of ``original`` can be converted to ``negotiated``
    (RFC 9368 §2.2; identical versions trivially are)."""
    return original == negotiated or (original in _COMPATIBLE and negotiated in _COMPATIBLE)
