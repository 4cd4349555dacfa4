"""The Retry Integrity Tag (RFC 9001 §5.8, RFC 9369 §3.3.3).

Theory of operation
-------------------
A Retry packet ends with a 16-byte tag: AEAD_AES_128_GCM under a key and nonce fixed
per QUIC version, over an empty plaintext, with the Retry Pseudo-Packet (the original
Destination Connection ID, length first, then the Retry packet without its tag) as
associated data. The server appends it (:func:`append_retry_integrity_tag`), the client
checks it (:func:`verify_retry_integrity`, constant time). One AEAD instance per
version serves every connection. :mod:`quic.protection` re-exports these names.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from quic.versions import QuicVersion

__all__ = [
    "RETRY_INTEGRITY_TAG_LENGTH",
    "append_retry_integrity_tag",
    "retry_integrity_tag",
    "retry_pseudo_packet",
    "verify_retry_integrity",
]

#: Length of the Retry Integrity Tag (RFC 9001 §5.8).
RETRY_INTEGRITY_TAG_LENGTH = 16

_Buffer = bytes | bytearray | memoryview

# Retry Integrity Tag AEAD_AES_128_GCM key and nonce (RFC 9001 §5.8, RFC 9369 §3.3.3).
_RETRY_KEY_NONCE: dict[int, tuple[bytes, bytes]] = {
    QuicVersion.VERSION_1: (
        bytes.fromhex("be0c690b9f66575a1d766b54e368c84e"),
        bytes.fromhex("461599d35d632bf2239825bb"),
    ),
    QuicVersion.VERSION_2: (
        bytes.fromhex("8fb4b01b56ac48e260fbcbcead7ccc92"),
        bytes.fromhex("d86969bc2d7c6d9990efb04a"),
    ),
}
_RETRY_AEAD: dict[int, tuple[AESGCM, bytes]] = {
    version: (AESGCM(key), nonce) for version, (key, nonce) in _RETRY_KEY_NONCE.items()
}


def retry_pseudo_packet(original_dcid: bytes, retry_without_tag: _Buffer) -> bytes:
    """Build the Retry Pseudo-Packet: ODCID length, ODCID, Retry packet sans tag (§5.8)."""
    if len(original_dcid) > 255:
        raise ValueError("original destination connection ID too long")
    return b"".join((bytes((len(original_dcid),)), original_dcid, retry_without_tag))


def retry_integrity_tag(version: int, pseudo_packet: _Buffer) -> bytes:
    """Compute the 16-byte Retry Integrity Tag (RFC 9001 §5.8, RFC 9369 §3.3.3).

    The tag is AEAD_AES_128_GCM with a fixed key and nonce, empty plaintext, and the
    Retry Pseudo-Packet as associated data.
    """
    entry = _RETRY_AEAD.get(version)
    if entry is None:
        raise ValueError(f"no Retry integrity key for QUIC version 0x{version:08x}")
    aead, nonce = entry
    return aead.encrypt(nonce, b"", pseudo_packet)


def append_retry_integrity_tag(
    version: int, original_dcid: bytes, retry_without_tag: _Buffer
) -> bytes:
    """Return the Retry packet with its integrity tag appended (server side, §5.8)."""
    pseudo = retry_pseudo_packet(original_dcid, retry_without_tag)
    return bytes(retry_without_tag) + retry_integrity_tag(version, pseudo)


def verify_retry_integrity(version: int, original_dcid: bytes, retry_packet: _Buffer) -> bool:
    """Check the Retry Integrity Tag at the end of ``retry_packet`` (client side, §5.8).

    Returns False for a packet shorter than the tag or a version without Retry keys.
    """
    end = len(retry_packet) - RETRY_INTEGRITY_TAG_LENGTH
    if end < 0 or version not in _RETRY_AEAD or len(original_dcid) > 255:
        return False
    expected = retry_integrity_tag(version, retry_pseudo_packet(original_dcid, retry_packet[:end]))
    return hmac.compare_digest(expected, bytes(retry_packet[end:]))
