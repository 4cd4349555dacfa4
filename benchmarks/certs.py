"""The harness's throwaway certificates: a root and a server certificate it issued.

Every server of a run presents the same ECDSA P-256 certificate for ``127.0.0.1`` and
``localhost`` (two days valid), issued by a root made with it. Clients do not verify it,
except in the handshake row's ``verified`` profile (:mod:`benchmarks.rows`), where each
stack's client checks the chain against that root (``--cafile``), as a client in its
default configuration does with a real server: the root stands in for the system trust
store, so no stack reads a large bundle per handshake and none gets a shortcut.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Certificates", "write_certificates"]


@dataclass(frozen=True)
class Certificates:
    cert: Path  # the server's certificate (PEM)
    key: Path  # its private key (PEM, PKCS#8)
    ca: Path  # the root that issued it (PEM): ``--cafile`` of a verifying client


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_certificates(directory: Path) -> Certificates:
    """A root and a server certificate it issued, written to ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    before, after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=2)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("pywebtransport benchmark root"))
        .issuer_name(_name("pywebtransport benchmark root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(before)
        .not_valid_after(after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(before)
        .not_valid_after(after)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    paths = Certificates(directory / "cert.pem", directory / "key.pem", directory / "ca.pem")
    paths.cert.write_bytes(_pem(cert))
    paths.ca.write_bytes(_pem(root))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths
