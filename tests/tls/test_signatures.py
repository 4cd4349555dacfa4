"""Signature schemes, CertificateVerify input and key loading (RFC 9846 §4.3.3, §4.5.2)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from quic.tls.alerts import AlertDescription, TlsAlertError
from quic.tls.selfsigned import generate_self_signed
from quic.tls.signatures import (
    SUPPORTED_SIGNATURE_SCHEMES,
    PrivateKey,
    SignatureScheme,
    certificate_verify_input,
    choose_scheme,
    load_certificate_chain_pem,
    load_private_key_pem,
    schemes_for_key,
    sign,
    verify,
    verify_with_certificate,
)

S = SignatureScheme
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    return {
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


SCHEME_KEY = [
    (S.ecdsa_secp256r1_sha256, "p256"),
    (S.ecdsa_secp384r1_sha384, "p384"),
    (S.rsa_pss_rsae_sha256, "rsa"),
    (S.rsa_pss_rsae_sha384, "rsa"),
    (S.rsa_pss_rsae_sha512, "rsa"),
    (S.ed25519, "ed25519"),
]


def _alert(exc: pytest.ExceptionInfo[TlsAlertError]) -> AlertDescription:
    return exc.value.alert


def test_codepoints() -> None:
    expected = {
        "rsa_pkcs1_sha256": 0x0401,
        "rsa_pkcs1_sha384": 0x0501,
        "rsa_pkcs1_sha512": 0x0601,
        "ecdsa_secp256r1_sha256": 0x0403,
        "ecdsa_secp384r1_sha384": 0x0503,
        "ecdsa_secp521r1_sha512": 0x0603,
        "rsa_pss_rsae_sha256": 0x0804,
        "rsa_pss_rsae_sha384": 0x0805,
        "rsa_pss_rsae_sha512": 0x0806,
        "ed25519": 0x0807,
        "ed448": 0x0808,
        "rsa_pss_pss_sha256": 0x0809,
        "rsa_pss_pss_sha384": 0x080A,
        "rsa_pss_pss_sha512": 0x080B,
        "rsa_pkcs1_sha1": 0x0201,
        "ecdsa_sha1": 0x0203,
    }
    assert {s.name: int(s) for s in SignatureScheme} == expected
    assert list(SUPPORTED_SIGNATURE_SCHEMES) == [
        S.ecdsa_secp256r1_sha256,
        S.ecdsa_secp384r1_sha384,
        S.rsa_pss_rsae_sha256,
        S.rsa_pss_rsae_sha384,
        S.rsa_pss_rsae_sha512,
        S.ed25519,
    ]


def test_certificate_verify_input_rfc_example() -> None:
    """The §4.5.2 example: server context, transcript hash of 32 bytes of 0x01."""
    expected = bytes.fromhex(
        "20" * 64
        + "544c5320312e332c207365727665722043657274696669636174655665726966"
        + "79"
        + "00"
        + "01" * 32
    )
    assert certificate_verify_input(True, b"\x01" * 32) == expected


def test_certificate_verify_input_layout() -> None:
    digest = bytes(range(48))
    for is_server, context in (
        (True, b"TLS 1.3, server CertificateVerify"),
        (False, b"TLS 1.3, client CertificateVerify"),
    ):
        content = certificate_verify_input(is_server, digest)
        assert content[:64] == b" " * 64
        assert content[64 : 64 + len(context)] == context
        assert content[64 + len(context)] == 0
        assert content[65 + len(context) :] == digest
        assert len(content) == 64 + 33 + 1 + 48


def test_schemes_for_key(keys: dict[str, PrivateKey]) -> None:
    assert schemes_for_key(keys["p256"]) == [S.ecdsa_secp256r1_sha256]
    assert schemes_for_key(keys["p384"]) == [S.ecdsa_secp384r1_sha384]
    assert schemes_for_key(keys["p521"]) == []
    assert schemes_for_key(keys["rsa"]) == [
        S.rsa_pss_rsae_sha256,
        S.rsa_pss_rsae_sha384,
        S.rsa_pss_rsae_sha512,
    ]
    assert schemes_for_key(keys["ed25519"]) == [S.ed25519]


def test_choose_scheme(keys: dict[str, PrivateKey]) -> None:
    rsa_key = keys["rsa"]
    # Our preference among what the peer offers; unknown codepoints are ignored.
    assert choose_scheme(rsa_key, [0xFEFE, 0x0806, 0x0804, 0x0401]) is S.rsa_pss_rsae_sha256
    assert choose_scheme(rsa_key, [0x0806]) is S.rsa_pss_rsae_sha512
    assert choose_scheme(keys["p256"], list(SUPPORTED_SIGNATURE_SCHEMES)) is (
        S.ecdsa_secp256r1_sha256
    )
    assert choose_scheme(keys["ed25519"], [0x0807]) is S.ed25519
    for key, offered in (
        (rsa_key, [0x0401, 0x0501, 0x0601]),  # PKCS#1 only: not for CertificateVerify
        (keys["p256"], [0x0503]),  # wrong curve
        (keys["ed25519"], []),
        (keys["p521"], [0x0603]),  # we do not sign with P-521
    ):
        with pytest.raises(TlsAlertError) as exc:
            choose_scheme(key, offered)
        assert _alert(exc) is AlertDescription.handshake_failure


@pytest.mark.parametrize(("scheme", "key_name"), SCHEME_KEY)
def test_sign_verify_each_scheme(
    keys: dict[str, PrivateKey], scheme: SignatureScheme, key_name: str
) -> None:
    key = keys[key_name]
    data = certificate_verify_input(True, bytes(range(32)))
    signature = sign(key, scheme, data)
    verify(key.public_key(), int(scheme), signature, data)  # no exception

    # Tampered signature / tampered content -> decrypt_error (§4.5.2).
    for bad_sig, bad_data in (
        (signature[:-1] + bytes([signature[-1] ^ 1]), data),
        (signature, data[:-1] + b"\x02"),
        (b"", data),
        (b"\x30\x00", data),
    ):
        with pytest.raises(TlsAlertError) as exc:
            verify(key.public_key(), int(scheme), bad_sig, bad_data)
        assert _alert(exc) is AlertDescription.decrypt_error


def test_rsa_pss_salt_length_must_equal_hash_length(keys: dict[str, PrivateKey]) -> None:
    key = keys["rsa"]
    assert isinstance(key, rsa.RSAPrivateKey)
    data = b"content"
    short_salt = key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 0), hashes.SHA256())
    with pytest.raises(TlsAlertError) as exc:
        verify(key.public_key(), 0x0804, short_salt, data)
    assert _alert(exc) is AlertDescription.decrypt_error
    pkcs1 = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(TlsAlertError) as exc:
        verify(key.public_key(), 0x0804, pkcs1, data)
    assert _alert(exc) is AlertDescription.decrypt_error


def test_scheme_key_mismatch_rejected(keys: dict[str, PrivateKey]) -> None:
    data = b"x" * 40
    p256_sig = sign(keys["p256"], S.ecdsa_secp256r1_sha256, data)
    ed_sig = sign(keys["ed25519"], S.ed25519, data)
    rsa_key = keys["rsa"]
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    pkcs1_sig = rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    cases: list[tuple[object, int, bytes]] = [
        (keys["p256"].public_key(), 0x0503, p256_sig),  # ecdsa_secp384r1 on a P-256 key
        (keys["p384"].public_key(), 0x0403, p256_sig),  # ecdsa_secp256r1 on a P-384 key
        (rsa_key.public_key(), 0x0807, ed_sig),  # ed25519 on an RSA key
        (keys["ed25519"].public_key(), 0x0804, ed_sig),  # PSS on an Ed25519 key
        (rsa_key.public_key(), 0x0401, pkcs1_sig),  # PKCS#1 v1.5: never in CertificateVerify
        (rsa_key.public_key(), 0x0201, pkcs1_sig),  # SHA-1 legacy
        (keys["p256"].public_key(), 0x0203, p256_sig),  # ecdsa_sha1 legacy
        (rsa_key.public_key(), 0x0809, pkcs1_sig),  # rsa_pss_pss: not offered
        (keys["p521"].public_key(), 0x0603, p256_sig),  # not offered
        (ed448.Ed448PrivateKey.generate().public_key(), 0x0808, b"\x00" * 114),
        (keys["p256"].public_key(), 0xFEFE, p256_sig),  # unknown codepoint
    ]
    for public_key, scheme, signature in cases:
        with pytest.raises(TlsAlertError) as exc:
            verify(public_key, scheme, signature, data)  # type: ignore[arg-type]
        assert _alert(exc) is AlertDescription.illegal_parameter, hex(scheme)


def test_sign_rejects_unfit_scheme(keys: dict[str, PrivateKey]) -> None:
    for key, scheme in (
        (keys["p256"], S.ecdsa_secp384r1_sha384),
        (keys["rsa"], S.rsa_pkcs1_sha256),
        (keys["rsa"], S.ed25519),
        (keys["ed25519"], S.rsa_pss_rsae_sha256),
    ):
        with pytest.raises(ValueError):
            sign(key, scheme, b"data")


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa2048", "ed25519"])
def test_load_pem_and_verify_with_certificate(key_type: str) -> None:
    generated = generate_self_signed(NOW, key_type=key_type)
    key = load_private_key_pem(generated.private_key_pem)
    [cert] = load_certificate_chain_pem(generated.certificate_pem)
    assert cert.public_key() == key.public_key()
    scheme = schemes_for_key(key)[0]
    data = certificate_verify_input(False, b"\xaa" * 32)
    signature = sign(key, scheme, data)
    verify_with_certificate(cert, int(scheme), signature, data)
    with pytest.raises(TlsAlertError) as exc:
        verify_with_certificate(cert, int(scheme), signature, data + b"!")
    assert _alert(exc) is AlertDescription.decrypt_error


def test_load_private_key_pem_encrypted_and_unsupported(keys: dict[str, PrivateKey]) -> None:
    pem = keys["p256"].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    loaded = load_private_key_pem(pem, password=b"secret")
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.private_numbers() == keys["p256"].private_numbers()  # type: ignore[union-attr]
    with pytest.raises((ValueError, TypeError)):
        load_private_key_pem(pem, password=b"wrong")
    ed448_pem = ed448.Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(TypeError):
        load_private_key_pem(ed448_pem)
    with pytest.raises(ValueError):
        load_private_key_pem(b"not a pem")


def test_load_certificate_chain_pem_order() -> None:
    a = generate_self_signed(NOW, hostnames=("a.example",))
    b = generate_self_signed(NOW, hostnames=("b.example",))
    chain = load_certificate_chain_pem(a.certificate_pem + b"\n" + b.certificate_pem)
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=a.example", "CN=b.example"]
    with pytest.raises(ValueError):
        load_certificate_chain_pem(b"no certificates here")
