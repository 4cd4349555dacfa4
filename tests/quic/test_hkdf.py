"""HKDF (RFC 5869 test case 1 and 3), HKDF-Expand-Label layout (RFC 9846 §7.1) and the
HMAC the module makes (an HMAC object's digest, not the one-shot ``hmac.digest``)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from quic.stateless_reset import StatelessResetter
from quic.tls.hkdf import (
    derive_secret,
    hkdf_expand,
    hkdf_expand_label,
    hkdf_expand_labels,
    hkdf_extract,
    hmac_digest,
)
from quic.tls.key_schedule import finished_key, verify_data


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


def test_hmac_digest_rfc4231_case2() -> None:
    # RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?"
    out = hmac_digest(b"Jefe", b"what do ya want for nothing?", "sha256")
    assert out.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


@pytest.mark.parametrize("hash_name", ["sha256", "sha384"])
@pytest.mark.parametrize("key_length", [0, 1, 16, 32, 48, 64, 65, 128, 200])
def test_hmac_digest_agrees_with_the_standard_library(hash_name: str, key_length: int) -> None:
    key = bytes((7 * i + 3) & 0xFF for i in range(key_length))  # beyond a block: hashed
    for msg in (b"", b"\x01", bytes(range(64)), bytes(1000)):
        assert hmac_digest(key, msg, hash_name) == hmac.digest(key, msg, hash_name)
    # any bytes-like key and message (a connection ID may be a slice of a datagram)
    msg = memoryview(b"..." + bytes(range(20)))[3:]
    expected = hmac.digest(key, bytes(msg), hash_name)
    assert hmac_digest(bytearray(key), msg, hash_name) == expected
    assert hmac_digest(memoryview(key), bytearray(msg), hash_name) == expected


def test_the_module_s_hmacs_agree_with_the_standard_library() -> None:
    # hkdf_extract, hkdf_expand_label(s) and verify_data write the HMAC call out: each
    # must give what HMAC (hmac.digest) over the same input gives
    secret = bytes(range(32))
    assert hkdf_extract("sha256", b"salt", b"ikm") == hmac.digest(b"salt", b"ikm", "sha256")
    labels = ((b"quic key", 16), (b"quic iv", 12), (b"quic hp", 16))
    expanded = hkdf_expand_labels("sha256", secret, labels)
    for (label, length), out in zip(labels, expanded, strict=True):
        full = b"tls13 " + label
        info = length.to_bytes(2, "big") + bytes((len(full),)) + full + b"\x00\x01"
        assert out == hmac.digest(secret, info, "sha256")[:length]
        assert out == hkdf_expand_label("sha256", secret, label, b"", length)
    transcript = hashlib.sha256(b"messages").digest()
    expected = hmac.digest(finished_key("sha256", secret), transcript, "sha256")
    assert verify_data("sha256", secret, transcript) == expected


def test_stateless_reset_token_is_hmac_sha256_of_the_cid() -> None:
    # RFC 9000 §10.3.2: a static key and the connection ID; the first 16 bytes
    key = bytes(range(32))
    resetter = StatelessResetter(key, 8, 10.0, 1.0, bytes)
    for cid in (b"", bytes(8), bytes(range(20))):
        assert resetter.token(cid) == hmac.digest(key, cid, "sha256")[:16]
