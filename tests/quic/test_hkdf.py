"""HKDF (RFC 5869 test case 1 and 3) and HKDF-Expand-Label layout (RFC 9846 §7.1)."""

from __future__ import annotations

import hashlib
import hmac

from quic.tls.hkdf import derive_secret, hkdf_expand, hkdf_expand_label, hkdf_extract


def test_rfc5869_case1() -> None:
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    prk = hkdf_extract("sha256", salt, ikm)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    okm = hkdf_expand("sha256", prk, info, 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_rfc5869_case3_empty_salt() -> None:
    ikm = bytes.fromhex("0b" * 22)
    prk = hkdf_extract("sha256", b"", ikm)
    assert prk.hex() == "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04"
    okm = hkdf_expand("sha256", prk, b"", 42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_expand_label_info_layout() -> None:
    secret = bytes(range(32))
    info = b"\x00\x10" + bytes([len(b"tls13 quic key")]) + b"tls13 quic key" + b"\x00"
    expected = hmac.digest(secret, info + b"\x01", "sha256")[:16]
    assert hkdf_expand_label("sha256", secret, b"quic key", b"", 16) == expected


def test_derive_secret_uses_hash_length() -> None:
    secret = bytes(48)
    th = hashlib.sha384(b"").digest()
    out = derive_secret("sha384", secret, b"derived", th)
    assert len(out) == 48
    assert out == hkdf_expand_label("sha384", secret, b"derived", th, 48)
