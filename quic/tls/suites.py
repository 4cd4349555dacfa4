"""TLS 1.3 cipher suites (RFC 9846 §B.4) and their parameters.

Used by the TLS key schedule (hash function) and by QUIC packet protection (AEAD and
header-protection algorithm, key length; RFC 9001 §5.3 and §5.4).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["SUITE_HASH", "SUITE_KEY_LENGTH", "CipherSuite"]


class CipherSuite(IntEnum):
    TLS_AES_128_GCM_SHA256 = 0x1301
    TLS_AES_256_GCM_SHA384 = 0x1302
    TLS_CHACHA20_POLY1305_SHA256 = 0x1303


#: Hash used by HKDF and the transcript for each suite.
SUITE_HASH: dict[CipherSuite, str] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: "sha256",
    CipherSuite.TLS_AES_256_GCM_SHA384: "sha384",
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: "sha256",
}

#: AEAD (and header protection) key length in bytes for each suite.
SUITE_KEY_LENGTH: dict[CipherSuite, int] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: 16,
    CipherSuite.TLS_AES_256_GCM_SHA384: 32,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: 32,
}
