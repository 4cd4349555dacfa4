"""TLS 1.3 signature schemes (RFC 9846 §4.3.3) and CertificateVerify (§4.5.2).

Theory of operation
-------------------
A ``SignatureScheme`` names a key type, a hash and (for ECDSA) a curve. One table,
``_SCHEMES``, maps every scheme we can produce or check to that triple; signing,
verification and key/scheme compatibility are all derived from it.

The signed content of a CertificateVerify is built by :func:`certificate_verify_input`:
64 octets of 0x20, the context string ("TLS 1.3, server CertificateVerify" or
"TLS 1.3, client CertificateVerify"), a 0x00 separator and the transcript hash
(RFC 9846 §4.5.2).

Rules enforced here (RFC 9846 §4.3.3, §4.5.2):

- RSASSA-PKCS1-v1_5 and SHA-1 schemes are only for certificates; they are never valid in
  a CertificateVerify and are not in :data:`SUPPORTED_SIGNATURE_SCHEMES`.
- RSASSA-PSS uses MGF1 with the same hash and a salt as long as the digest.
- ECDSA schemes are bound to a curve in TLS 1.3: ``ecdsa_secp384r1_sha384`` with a P-256
  key is a mismatch.
- EdDSA is PureEdDSA (no prehash).

:func:`verify` raises ``TlsAlertError(illegal_parameter)`` when the peer picked a scheme we
did not offer or one that does not fit the certificate key, and
``TlsAlertError(decrypt_error)`` when the signature itself is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from quic.tls.alerts import AlertDescription, TlsAlertError

__all__ = [
    "SUPPORTED_SIGNATURE_SCHEMES",
    "PrivateKey",
    "SignatureScheme",
    "certificate_verify_input",
    "choose_scheme",
    "load_certificate_chain_pem",
    "load_private_key_pem",
    "schemes_for_key",
    "sign",
    "verify",
    "verify_with_certificate",
]


class SignatureScheme(IntEnum):
    """SignatureScheme codepoints (RFC 9846 §4.3.3)."""

    rsa_pkcs1_sha256 = 0x0401
    rsa_pkcs1_sha384 = 0x0501
    rsa_pkcs1_sha512 = 0x0601
    ecdsa_secp256r1_sha256 = 0x0403
    ecdsa_secp384r1_sha384 = 0x0503
    ecdsa_secp521r1_sha512 = 0x0603
    rsa_pss_rsae_sha256 = 0x0804
    rsa_pss_rsae_sha384 = 0x0805
    rsa_pss_rsae_sha512 = 0x0806
    ed25519 = 0x0807
    ed448 = 0x0808
    rsa_pss_pss_sha256 = 0x0809
    rsa_pss_pss_sha384 = 0x080A
    rsa_pss_pss_sha512 = 0x080B
    rsa_pkcs1_sha1 = 0x0201
    ecdsa_sha1 = 0x0203


#: What we offer in "signature_algorithms" and accept in CertificateVerify, preferred first.
SUPPORTED_SIGNATURE_SCHEMES: tuple[SignatureScheme, ...] = (
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.ecdsa_secp384r1_sha384,
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pss_rsae_sha512,
    SignatureScheme.ed25519,
)
_SUPPORTED_SET = frozenset(int(s) for s in SUPPORTED_SIGNATURE_SCHEMES)

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]  # noqa: UP007

_EC, _RSA_PSS, _ED25519 = "ec", "rsa-pss", "ed25519"

# scheme -> (key kind, hash factory, EC curve name or None). RFC 9846 §4.3.3.
_SCHEMES: dict[SignatureScheme, tuple[str, type[hashes.HashAlgorithm] | None, str | None]] = {
    SignatureScheme.ecdsa_secp256r1_sha256: (_EC, hashes.SHA256, "secp256r1"),
    SignatureScheme.ecdsa_secp384r1_sha384: (_EC, hashes.SHA384, "secp384r1"),
    SignatureScheme.rsa_pss_rsae_sha256: (_RSA_PSS, hashes.SHA256, None),
    SignatureScheme.rsa_pss_rsae_sha384: (_RSA_PSS, hashes.SHA384, None),
    SignatureScheme.rsa_pss_rsae_sha512: (_RSA_PSS, hashes.SHA512, None),
    SignatureScheme.ed25519: (_ED25519, None, None),
}

_CONTEXT_SERVER = b"TLS 1.3, server CertificateVerify"
_CONTEXT_CLIENT = b"TLS 1.3, client CertificateVerify"
_PAD = b"\x20" * 64


def _key_kind(key: object) -> str | None:
    """Classify a private or public key; ``None`` for types we do not use."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return _EC
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return _RSA_PSS
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return _ED25519
    return None


def _fits(scheme: SignatureScheme, key: object) -> bool:
    """True when ``scheme`` can be used with ``key`` (private or public)."""
    entry = _SCHEMES.get(scheme)
    if entry is None:
        return False
    kind, _, curve = entry
    if _key_kind(key) != kind:
        return False
    if kind == _EC:
        assert isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
        return key.curve.name == curve  # TLS 1.3 binds ECDSA schemes to a curve
    return True


def _pss(hash_cls: type[hashes.HashAlgorithm]) -> padding.PSS:
    # RFC 9846 §4.3.3: MGF1 with the same hash, salt length = digest length.
    algorithm = hash_cls()
    return padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)


def schemes_for_key(key: PrivateKey) -> list[SignatureScheme]:
    """Schemes from :data:`SUPPORTED_SIGNATURE_SCHEMES` usable with ``key``, preferred first.

    Empty for keys we cannot sign CertificateVerify with (e.g. a P-521 key).
    """
    schemes = _KEY_SCHEMES.get(key)
    if schemes is None:
        schemes = tuple(s for s in SUPPORTED_SIGNATURE_SCHEMES if _fits(s, key))
        if len(_KEY_SCHEMES) >= 8:  # a server's few keys: bounded all the same
            _KEY_SCHEMES.clear()
        _KEY_SCHEMES[key] = schemes
    return list(schemes)


# our private key -> its schemes (a server answers every handshake with the same key;
# the key classification asks isinstance of abstract classes, about 5 us each time)
_KEY_SCHEMES: dict[PrivateKey, tuple[SignatureScheme, ...]] = {}


def choose_scheme(key: PrivateKey, peer_schemes: Sequence[int]) -> SignatureScheme:
    """Pick the scheme for our CertificateVerify (RFC 9846 §4.5.2).

    Returns the first of our schemes for ``key`` (our preference order) that the peer
    listed in "signature_algorithms". Raises ``TlsAlertError(handshake_failure)`` if
    there is none.
    """
    offered = set(peer_schemes)
    for scheme in schemes_for_key(key):
        if scheme in offered:
            return scheme
    raise TlsAlertError(
        AlertDescription.handshake_failure, "no common signature scheme for our certificate key"
    )


def certificate_verify_input(is_server: bool, transcript_hash: bytes) -> bytes:
    """Content covered by a CertificateVerify signature (RFC 9846 §4.5.2).

    ``0x20 * 64 || context string || 0x00 || transcript_hash``.
    """
    context = _CONTEXT_SERVER if is_server else _CONTEXT_CLIENT
    return b"".join((_PAD, context, b"\x00", transcript_hash))


def sign(key: PrivateKey, scheme: SignatureScheme, data: bytes) -> bytes:
    """Sign ``data`` (the :func:`certificate_verify_input`) with ``scheme``.

    Raises ``ValueError`` if ``scheme`` is unsupported or does not fit ``key`` (a local
    configuration error, not a peer error).
    """
    if not _fits(scheme, key):
        raise ValueError(f"signature scheme {scheme!r} cannot be used with this key")
    kind, hash_cls, _ = _SCHEMES[scheme]
    if kind == _ED25519:
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key.sign(data)
    assert hash_cls is not None
    if kind == _EC:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key.sign(data, ec.ECDSA(hash_cls()))
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.sign(data, _pss(hash_cls), hash_cls())


def verify(
    public_key: CertificatePublicKeyTypes, scheme: int, signature: bytes, data: bytes
) -> None:
    """Check a peer's CertificateVerify signature (RFC 9846 §4.5.2).

    Raises ``TlsAlertError(illegal_parameter)`` if ``scheme`` is not one we offered
    (which excludes PKCS#1 v1.5 and SHA-1) or does not fit ``public_key``, and
    ``TlsAlertError(decrypt_error)`` if the signature does not verify.
    """
    if scheme not in _SUPPORTED_SET:
        raise TlsAlertError(
            AlertDescription.illegal_parameter,
            f"signature scheme 0x{scheme:04x} not allowed in CertificateVerify",
        )
    tls_scheme = SignatureScheme(scheme)
    if not _fits(tls_scheme, public_key):
        raise TlsAlertError(
            AlertDescription.illegal_parameter,
            f"signature scheme {tls_scheme.name} does not match the certificate key",
        )
    kind, hash_cls, _ = _SCHEMES[tls_scheme]
    try:
        if kind == _ED25519:
            assert isinstance(public_key, ed25519.Ed25519PublicKey)
            public_key.verify(signature, data)
        elif kind == _EC:
            assert isinstance(public_key, ec.EllipticCurvePublicKey) and hash_cls is not None
            public_key.verify(signature, data, ec.ECDSA(hash_cls()))
        else:
            assert isinstance(public_key, rsa.RSAPublicKey) and hash_cls is not None
            public_key.verify(signature, data, _pss(hash_cls), hash_cls())
    except (InvalidSignature, ValueError):
        raise TlsAlertError(
            AlertDescription.decrypt_error, "CertificateVerify signature is invalid"
        ) from None


def verify_with_certificate(
    certificate: x509.Certificate, scheme: int, signature: bytes, data: bytes
) -> None:
    """:func:`verify` with the key of ``certificate``, plus the key-OID rule.

    rsa_pss_rsae_* requires the rsaEncryption OID in the certificate (RFC 9846 §4.3.3);
    a key we cannot parse or use is rejected with ``illegal_parameter``.
    """
    try:
        public_key = certificate.public_key()
        key_oid = certificate.public_key_algorithm_oid
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # unknown key / bad encoding
        raise TlsAlertError(
            AlertDescription.illegal_parameter, f"unusable certificate key: {exc}"
        ) from None
    if (
        isinstance(public_key, rsa.RSAPublicKey)
        and key_oid != x509.oid.PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5
    ):
        raise TlsAlertError(
            AlertDescription.illegal_parameter, "rsa_pss_rsae requires an rsaEncryption key"
        )
    verify(public_key, scheme, signature, data)


def load_private_key_pem(data: bytes, password: bytes | None = None) -> PrivateKey:
    """Load an EC, RSA or Ed25519 private key from PEM.

    Raises ``ValueError`` for undecodable data and ``TypeError`` for other key types.
    """
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise TypeError(f"unsupported private key type {type(key).__name__}")
    return key


def load_certificate_chain_pem(data: bytes) -> list[x509.Certificate]:
    """Load every certificate of a PEM bundle, in file order (leaf first).

    Raises ``ValueError`` if there is no certificate.
    """
    return x509.load_pem_x509_certificates(data)
