"""Self-signed and test-CA certificate generation."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from quic.tls.selfsigned import (
    KEY_TYPES,
    MAX_PINNED_VALIDITY,
    SelfSignedCertificate,
    generate_ca_and_leaf,
    generate_private_key,
    generate_self_signed,
)
from quic.tls.signatures import load_certificate_chain_pem, load_private_key_pem

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def default_cert() -> SelfSignedCertificate:
    return generate_self_signed(NOW)


def test_default_san_contents(default_cert: SelfSignedCertificate) -> None:
    cert = default_cert.certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert cert.subject.rfc4514_string() == "CN=localhost"
    assert cert.issuer == cert.subject


def test_custom_hostnames() -> None:
    generated = generate_self_signed(NOW, hostnames=("example.test", "*.example.test", "::1"))
    san = generated.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert san.get_values_for_type(x509.DNSName) == ["example.test", "*.example.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("::1")]
    with pytest.raises(ValueError):
        generate_self_signed(NOW, hostnames=())


def test_validity_window(default_cert: SelfSignedCertificate) -> None:
    cert = default_cert.certificate
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=1)
    assert cert.not_valid_after_utc == NOW - timedelta(minutes=1) + timedelta(days=13)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= MAX_PINNED_VALIDITY
    assert cert.version is x509.Version.v3


def test_days_limits_and_naive_now() -> None:
    longest = generate_self_signed(NOW.replace(tzinfo=None), days=14).certificate
    assert longest.not_valid_before_utc == NOW - timedelta(minutes=1)
    assert longest.not_valid_after_utc - longest.not_valid_before_utc == timedelta(days=14)
    for days in (0, 15, 365):
        with pytest.raises(ValueError):
            generate_self_signed(NOW, days=days)


def test_hashes(default_cert: SelfSignedCertificate) -> None:
    der = default_cert.certificate_der
    assert default_cert.sha256 == hashlib.sha256(der).digest()
    assert default_cert.certificate.public_bytes(Encoding.DER) == der
    spki = default_cert.certificate.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    assert default_cert.spki_sha256 == hashlib.sha256(spki).digest()
    assert default_cert.sha256_hex == hashlib.sha256(der).hexdigest()
    assert ":" not in default_cert.sha256_hex and default_cert.sha256_hex.islower()
    assert base64.b64decode(default_cert.sha256_base64) == default_cert.sha256
    assert base64.b64decode(default_cert.spki_sha256_base64) == default_cert.spki_sha256


def test_extensions(default_cert: SelfSignedCertificate) -> None:
    ext = default_cert.certificate.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = ext.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_pems_load_back(default_cert: SelfSignedCertificate) -> None:
    key = load_private_key_pem(default_cert.private_key_pem)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    [cert] = load_certificate_chain_pem(default_cert.certificate_pem)
    assert cert.public_bytes(Encoding.DER) == default_cert.certificate_der
    assert cert.public_key() == key.public_key()
    assert default_cert.private_key.public_key() == key.public_key()
    # Self-signed: the signature verifies with its own key.
    cert.verify_directly_issued_by(cert)


@pytest.mark.parametrize(
    ("key_type", "key_class"),
    [
        ("ec-p256", ec.EllipticCurvePrivateKey),
        ("ec-p384", ec.EllipticCurvePrivateKey),
        ("rsa2048", rsa.RSAPrivateKey),
        ("ed25519", ed25519.Ed25519PrivateKey),
    ],
)
def test_key_types(key_type: str, key_class: type) -> None:
    assert key_type in KEY_TYPES
    generated = generate_self_signed(NOW, key_type=key_type)
    key = load_private_key_pem(generated.private_key_pem)
    assert isinstance(key, key_class)
    generated.certificate.verify_directly_issued_by(generated.certificate)
    if key_type == "rsa2048":
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    if key_type == "ec-p384":
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"


def test_unknown_key_type() -> None:
    with pytest.raises(ValueError):
        generate_private_key("dsa1024")
    with pytest.raises(ValueError):
        generate_self_signed(NOW, key_type="ec-p521")


def test_serials_are_random() -> None:
    a = generate_self_signed(NOW).certificate
    b = generate_self_signed(NOW).certificate
    assert a.serial_number != b.serial_number
    assert a.serial_number > 0


def test_write(default_cert: SelfSignedCertificate, tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    default_cert.write(cert_path, str(key_path))
    assert cert_path.read_bytes() == default_cert.certificate_pem
    assert key_path.read_bytes() == default_cert.private_key_pem
    if os.name == "posix":
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    # Overwrite keeps working.
    default_cert.write(cert_path, key_path)
    assert key_path.read_bytes() == default_cert.private_key_pem


def test_ca_and_leaf() -> None:
    ca, leaf = generate_ca_and_leaf(NOW, hostnames=("svc.test", "10.0.0.1"), days=30)
    ca_cert, leaf_cert = ca.certificate, leaf.certificate
    leaf_cert.verify_directly_issued_by(ca_cert)
    assert leaf_cert.issuer == ca_cert.subject
    bc = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True and bc.path_length == 0
    assert ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    leaf_bc = leaf_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert leaf_bc.ca is False
    aki = leaf_cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    san = leaf_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["svc.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1")]
    # The leaf's validity is inside the CA's and not limited to 14 days here.
    assert ca_cert.not_valid_before_utc <= leaf_cert.not_valid_before_utc
    assert leaf_cert.not_valid_after_utc <= ca_cert.not_valid_after_utc
    assert leaf_cert.not_valid_after_utc - leaf_cert.not_valid_before_utc == timedelta(days=30)
    assert leaf.sha256 == hashlib.sha256(leaf.certificate_der).digest()
    # Two CAs never share a subject, so chains cannot be confused.
    other_ca, _ = generate_ca_and_leaf(NOW)
    assert other_ca.certificate.subject != ca_cert.subject
    with pytest.raises(ValueError):
        generate_ca_and_leaf(NOW, days=0)
