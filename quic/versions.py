"""QUIC versions (RFC 9000 §15, RFC 9369, RFC 8999 §6)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["SUPPORTED_VERSIONS", "QuicVersion", "is_reserved_version"]


class QuicVersion(IntEnum):
    NEGOTIATION = 0x00000000  # Version Negotiation packets (RFC 8999 §6)
    VERSION_1 = 0x00000001  # RFC 9000
    VERSION_2 = 0x6B3343CF  # RFC 9369 §3.1


#: Versions this implementation speaks, most preferred first.
SUPPORTED_VERSIONS: tuple[int, ...] = (QuicVersion.VERSION_1, QuicVersion.VERSION_2)


def is_reserved_version(version: int) -> bool:
    """True for the greasing versions 0x?a?a?a?a (RFC 9000 §15)."""
    return version & 0x0F0F0F0F == 0x0A0A0A0A
