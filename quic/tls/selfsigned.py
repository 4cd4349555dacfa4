"""Self-signed and test-CA certificates for development and browser hash pinning.

Theory of operation
-------------------
Browsers can connect to a WebTransport server without Web PKI by pinning the SHA-256 of
the server certificate (W3C WebTransport ``serverCertificateHashes``). Such a certificate
must be X.509v3, use an ECDSA key (P-256 is the one every browser supports; RSA is
refused), be currently valid, and have a total validity period of at most 14 days.
:func:`generate_self_signed` produces exactly that by default and returns the PEMs plus
the two hashes a developer needs: ``sha256`` (DER of the certificate, for
``serverCertificateHashes``) and ``spki_sha256`` (DER of the SubjectPublicKeyInfo, for
Chromium's ``--ignore-certificate-errors-spki-list``).

:func:`generate_ca_and_leaf` produces a throw-away CA and a leaf it issued, for tests of
ordinary chain verification with a given CA file or bytes.

The current time is always an argument (Sans-I/O: this module never reads the clock), so
there is no command-line entry point here.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from quic.tls.signatures import PrivateKey, load_private_key_pem
from quic.tls.verify import MAX_PINNED_VALIDITY

__all__ = [
    "KEY_TYPES",
    "MAX_PINNED_VALIDITY",
    "SelfSignedCertificate",
    "generate_ca_and_leaf",
    "generate_private_key",
    "generate_self_signed",
]

#: Backdating of notBefore to tolerate small clock differences (kept inside the 14 days).
_BACKDATE = timedelta(minutes=1)

#: Accepted ``key_type`` values.
KEY_TYPES: tuple[str, ...] = ("ec-p256", "ec-p384", "rsa2048", "ed25519")


@dataclass(frozen=True)
class SelfSignedCertificate:
    """A generated certificate, its private key, and the hashes clients pin."""

    certificate_pem: bytes
    private_key_pem: bytes
    certificate_der: bytes
    sha256: bytes  # SHA-256 of certificate_der (serverCertificateHashes)
    spki_sha256: bytes  # SHA-256 of the SubjectPublicKeyInfo DER (Chromium SPKI list)

    @property
    def sha256_hex(self) -> str:
        """Lowercase hex of :attr:`sha256`, no colons."""
        return self.sha256.hex()

    @property
    def sha256_base64(self) -> str:
        """Standard base64 of :attr:`sha256`."""
        return base64.b64encode(self.sha256).decode("ascii")

    @property
    def spki_sha256_base64(self) -> str:
        """Standard base64 of :attr:`spki_sha256` (``--ignore-certificate-errors-spki-list``)."""
        return base64.b64encode(self.spki_sha256).decode("ascii")

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.load_der_x509_certificate(self.certificate_der)

    @property
    def private_key(self) -> PrivateKey:
        """The parsed private key."""
        return load_private_key_pem(self.private_key_pem)

    def write(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
        """Write the certificate PEM and the private key PEM (the key with mode 0600)."""
        with open(cert_path, "wb") as f:
            f.write(self.certificate_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.private_key_pem)


def generate_private_key(key_type: str = "ec-p256") -> PrivateKey:
    """A fresh private key of ``key_type`` (one of :data:`KEY_TYPES`)."""
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key_type {key_type!r}; expected one of {KEY_TYPES}")


def _signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None  # PureEdDSA
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _subject_alt_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _package(cert: x509.Certificate, key: PrivateKey) -> SelfSignedCertificate:
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SelfSignedCertificate(
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
        private_key_pem=key_pem,
        certificate_der=der,
        sha256=hashlib.sha256(der).digest(),
        spki_sha256=hashlib.sha256(spki).digest(),
    )


def _leaf_subject(hostnames: Sequence[str]) -> x509.Name:
    if not hostnames:
        raise ValueError("at least one hostname is required")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])


def _leaf_builder(
    hostnames: Sequence[str], key: PrivateKey, not_before: datetime, not_after: datetime
) -> x509.CertificateBuilder:
    """Builder for a server (end-entity) certificate; issuer and AKI are set by the caller."""
    subject = _leaf_subject(hostnames)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def generate_self_signed(
    now: datetime,
    hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 13,
    key_type: str = "ec-p256",
) -> SelfSignedCertificate:
    """A self-signed server certificate usable with browser hash pinning.

    ``notBefore = now - 1 minute``, ``notAfter = notBefore + days``; ``days`` must be in
    1..14 so the total validity stays within the 14 days browsers allow. Hostnames that
    parse as IP addresses become iPAddress SANs, the others dNSName SANs. Raises
    ``ValueError`` for bad arguments.
    """
    if not 1 <= days <= MAX_PINNED_VALIDITY.days:
        raise ValueError(f"days must be within 1..{MAX_PINNED_VALIDITY.days} for pinning")
    key = generate_private_key(key_type)
    not_before = _utc(now) - _BACKDATE
    builder = _leaf_builder(hostnames, key, not_before, not_before + timedelta(days=days))
    # A self-issued AKI (= own SKI) lets the certificate also serve as its own trust
    # anchor (cafile=cert.pem) with verifiers that require AKI on end-entity certificates.
    own_ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        builder.issuer_name(_leaf_subject(hostnames))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(own_ski),
            critical=False,
        )
        .sign(key, _signature_hash(key))
    )
    return _package(cert, key)


def generate_ca_and_leaf(
    now: datetime,
    hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 13,
    key_type: str = "ec-p256",
    ca_days: int = 365,
) -> tuple[SelfSignedCertificate, SelfSignedCertificate]:
    """A throw-away CA and a server certificate issued by it: ``(ca, leaf)``.

    The leaf is valid from ``now - 1 minute`` for ``days`` days (no 14-day limit here;
    this is for ordinary chain verification tests). The CA (ECDSA P-256) is valid from
    ``now - 1 day`` for ``ca_days`` days.
    """
    if days < 1 or ca_days < 1:
        raise ValueError("days and ca_days must be positive")
    start = _utc(now)
    ca_key = generate_private_key("ec-p256")
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pywebtransport test"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"pywebtransport test CA {os.urandom(4).hex()}"
            ),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - timedelta(days=1))
        .not_valid_after(start - timedelta(days=1) + timedelta(days=ca_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = generate_private_key(key_type)
    not_before = start - _BACKDATE
    leaf_cert = (
        _leaf_builder(hostnames, leaf_key, not_before, not_before + timedelta(days=days))
        .issuer_name(ca_name)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _package(ca_cert, ca_key), _package(leaf_cert, leaf_key)
