"""QUIC packet protection keys from TLS secrets (RFC 9001 §5.1, §5.2, §6.1; RFC 9369
§3.3.1, §3.3.2): the Initial secrets from the version's salt and the client's first
Destination Connection ID, the AEAD key, IV and header protection key of a traffic
secret, and the next key phase's secret. :mod:`quic.protection` builds its keys from
these (and still exports the names).
"""

from __future__ import annotations

from quic.tls.hkdf import hkdf_expand_label, hkdf_expand_labels, hkdf_extract
from quic.tls.suites import SUITE_HASH, SUITE_KEY_LENGTH, CipherSuite
from quic.versions import QuicVersion

__all__ = [
    "INITIAL_SALT",
    "IV_LENGTH",
    "derive_packet_keys",
    "initial_secrets",
    "next_key_phase_secret",
]

#: AEAD nonce / IV length for every suite (RFC 9001 §5.1, RFC 5116 §3.2).
IV_LENGTH = 12

#: Initial salts (RFC 9001 §5.2, RFC 9369 §3.3.1).
INITIAL_SALT: dict[int, bytes] = {
    QuicVersion.VERSION_1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    QuicVersion.VERSION_2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
}

# HKDF labels (key, iv, hp, ku) without the "tls13 " prefix (RFC 9001 §5.1 and §6.1,
# RFC 9369 §3.3.2).
_LABELS: dict[int, tuple[bytes, bytes, bytes, bytes]] = {
    QuicVersion.VERSION_1: (b"quic key", b"quic iv", b"quic hp", b"quic ku"),
    QuicVersion.VERSION_2: (b"quicv2 key", b"quicv2 iv", b"quicv2 hp", b"quicv2 ku"),
}

_HASH_LENGTH = {"sha256": 32, "sha384": 48}


def _labels(version: int) -> tuple[bytes, bytes, bytes, bytes]:
    labels = _LABELS.get(version)
    if labels is None:
        raise ValueError(f"no packet protection defined for QUIC version 0x{version:08x}")
    return labels


def initial_secrets(version: int, dcid: bytes) -> tuple[bytes, bytes]:
    """Return ``(client_initial_secret, server_initial_secret)`` (RFC 9001 §5.2).

    ``dcid`` is the Destination Connection ID of the client's first Initial packet
    (or the one chosen by the server in a Retry). Raises :class:`ValueError` for a
    version without an initial salt.
    """
    salt = INITIAL_SALT.get(version)
    if salt is None:
        raise ValueError(f"no initial salt for QUIC version 0x{version:08x}")
    initial_secret = hkdf_extract("sha256", salt, dcid)
    return (
        hkdf_expand_label("sha256", initial_secret, b"client in", b"", 32),
        hkdf_expand_label("sha256", initial_secret, b"server in", b"", 32),
    )


def derive_packet_keys(
    suite: CipherSuite, secret: bytes, version: int
) -> tuple[bytes, bytes, bytes]:
    """Return ``(key, iv, hp_key)`` for a traffic secret (RFC 9001 §5.1, RFC 9369 §3.3.2)."""
    labels = _KEY_LABELS.get((suite, version))
    if labels is None:
        key_label, iv_label, hp_label, _ = _labels(version)
        key_length = SUITE_KEY_LENGTH[suite]
        labels = ((key_label, key_length), (iv_label, IV_LENGTH), (hp_label, key_length))
        _KEY_LABELS[(suite, version)] = labels  # a few suites x a few versions at most
    key, iv, hp_key = hkdf_expand_labels(SUITE_HASH[suite], secret, labels)
    return key, iv, hp_key


# (suite, version) -> the (label, length) of the packet key, IV and hp key
_KEY_LABELS: dict[tuple[int, int], tuple[tuple[bytes, int], ...]] = {}


def next_key_phase_secret(suite: CipherSuite, secret: bytes, version: int) -> bytes:
    """Derive ``secret_<n+1>`` from ``secret_<n>`` with the "quic ku" label (RFC 9001 §6.1)."""
    hash_name = SUITE_HASH[suite]
    return hkdf_expand_label(hash_name, secret, _labels(version)[3], b"", _HASH_LENGTH[hash_name])
