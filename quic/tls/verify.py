"""Server certificate verification (RFC 9846 §4.5.1.3, RFC 9525) and hash pinning.

Theory of operation
-------------------
The client hands the server's Certificate message (a list of DER certificates, leaf
first) to :func:`verify_server_certificate` together with the name it connected to, the
current wall-clock time (injected; this module never reads the clock) and a
:class:`VerifyOptions`. One of three modes applies:

1. ``verify=False`` — explicit opt-out: the leaf is parsed and returned, nothing else is
   checked (the rest of the chain is not even parsed). The handshake still checks the
   CertificateVerify signature, so the peer must hold the key of the certificate it
   sent, but anyone can be that peer.

2. Pinning (``certificate_hashes`` non-empty) — the model of the W3C WebTransport
   ``serverCertificateHashes`` option: no chain building and no name check. The leaf is
   accepted when SHA-256(leaf DER) is one of the pinned hashes and it meets the custom
   certificate requirements: X.509v3, ``now`` within notBefore..notAfter, total validity
   period at most 14 days, and a non-RSA key (ECDSA; Ed25519 is tolerated here).

3. Normal — path building and validation by ``cryptography.x509.verification`` (RFC 5280
   profile, with the CA/B-forum-style checks it applies), against roots from ``cadata``
   and/or ``cafile`` or, when neither is given, the system trust store (located via
   ``ssl.get_default_verify_paths()``, loaded once and cached). The server identity is
   matched per RFC 9525: against iPAddress SANs when ``server_name`` parses as an IP
   address, otherwise against dNSName SANs.

   A chain that verified is remembered (issue 10: a client that connects to one server
   again and again — reconnects, many connections to one origin — builds and checks
   the path once, as browsers' verifier caches do): keyed by the SHA-256 of the chain
   as sent, the server name and the trust store, for the window in which that result
   holds — from the latest notBefore to the earliest notAfter of the path that was
   built, and at most :data:`VERIFIED_TTL` after the check. Another chain, name, store
   or a ``now`` outside the window verifies anew. The CertificateVerify signature, the
   proof that the peer holds the leaf's key, is checked on every handshake all the same
   (:mod:`quic.tls.client`). At most ``_VERIFIED_LIMIT`` results are kept (the table is
   emptied when full).

Failures become fatal alerts (RFC 9846 §6.2):

- empty chain: ``decode_error`` (RFC 9846 §4.5.1.3: a server that sends an empty
  Certificate message makes the client abort with "decode_error");
- unparsable DER, name mismatch, bad extensions, pin mismatch, pinning requirements not
  met: ``bad_certificate``;
- outside the validity period (leaf or any chain certificate): ``certificate_expired``;
- no path to a trusted root: ``unknown_ca``.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from quic.tls.alerts import AlertDescription, TlsAlertError

__all__ = [
    "MAX_PINNED_VALIDITY",
    "VERIFIED_TTL",
    "VerifyOptions",
    "load_system_roots",
    "verify_server_certificate",
]

#: Longest total validity of a hash-pinned certificate (W3C WebTransport).
MAX_PINNED_VALIDITY = timedelta(days=14)
#: Longest time a verified chain is taken as verified without checking it again.
VERIFIED_TTL = timedelta(minutes=10)

# Used when ssl.get_default_verify_paths() points nowhere useful.
_FALLBACK_CA_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, BSDs
)
_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


@dataclass(frozen=True)
class VerifyOptions:
    """How the client authenticates the server."""

    verify: bool = True  # False: explicit opt-out, accept any certificate
    cafile: str | None = None  # PEM bundle; without cafile/cadata: system trust store
    cadata: bytes | None = None  # PEM bytes of trusted roots
    certificate_hashes: tuple[bytes, ...] = ()  # SHA-256 of leaf DER; non-empty: pinning


def _alert(alert: AlertDescription, reason: str) -> TlsAlertError:
    return TlsAlertError(alert, reason)


# -- trust anchors ---------------------------------------------------------------------


def _parse_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """Every parsable certificate of a PEM bundle; unparsable blocks are skipped."""
    certs: list[x509.Certificate] = []
    with warnings.catch_warnings():
        # Some system roots have non-positive serials; cryptography warns but loads them.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for block in _PEM_BLOCK.findall(data):
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue  # e.g. a legacy root with an encoding cryptography refuses
    return certs


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def load_system_roots() -> tuple[x509.Certificate, ...]:
    """The system trust store, loaded once (``ssl`` default paths, then common files)."""
    paths = ssl.get_default_verify_paths()
    candidates = [p for p in (paths.cafile, paths.openssl_cafile) if p]
    for path in (*candidates, *_FALLBACK_CA_FILES):
        data = _read(path)
        if data:
            certs = _parse_pem_certificates(data)
            if certs:
                return tuple(certs)
    for directory in (paths.capath, paths.openssl_capath):
        if not directory or not os.path.isdir(directory):
            continue
        certs_by_der: dict[bytes, x509.Certificate] = {}
        for entry in sorted(os.listdir(directory)):
            data = _read(os.path.join(directory, entry))
            for cert in _parse_pem_certificates(data or b""):
                certs_by_der.setdefault(cert.tbs_certificate_bytes, cert)
        if certs_by_der:
            return tuple(certs_by_der.values())
    return ()


@functools.lru_cache(maxsize=16)
def _store_from_pem(data: bytes) -> Store | None:
    certs = _parse_pem_certificates(data)
    return Store(certs) if certs else None


@functools.lru_cache(maxsize=16)
def _store_from_file(path: str, _mtime_ns: int, _size: int) -> Store | None:
    data = _read(path)
    return _store_from_pem(data) if data else None


@functools.lru_cache(maxsize=1)
def _system_store() -> Store | None:
    roots = load_system_roots()
    return Store(list(roots)) if roots else None


def _trust_store(options: VerifyOptions) -> Store | None:
    """Roots from cadata + cafile, else the system store (cached by content/file stat)."""
    if options.cadata is None and options.cafile is None:
        return _system_store()
    pem = options.cadata or b""
    if options.cafile is not None:
        try:
            st = os.stat(options.cafile)
        except OSError:
            raise _alert(
                AlertDescription.internal_error, f"cannot read cafile {options.cafile!r}"
            ) from None
        if not pem:
            return _store_from_file(options.cafile, st.st_mtime_ns, st.st_size)
        pem += b"\n" + (_read(options.cafile) or b"")
    return _store_from_pem(pem)


# -- helpers ---------------------------------------------------------------------------


def _utc(now: datetime) -> datetime:
    """``now`` as an aware UTC datetime (naive values are taken to be UTC)."""
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


# DER -> parsed certificate, for the few servers a client talks to again and again: a
# parsed object also keeps its public key, which would be decoded again per handshake
# (issue 10). Emptied when full: at most _PARSED_LIMIT certificates held.
_PARSED: dict[bytes, x509.Certificate] = {}
_PARSED_LIMIT = 8


def _parse(der: bytes) -> x509.Certificate:
    der = bytes(der)
    cert = _PARSED.get(der)
    if cert is not None:
        return cert
    try:
        with warnings.catch_warnings():
            # e.g. non-positive serial numbers: tolerated, not worth a warning per peer.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise _alert(AlertDescription.bad_certificate, f"unparsable certificate: {exc}") from None
    if len(_PARSED) >= _PARSED_LIMIT:
        _PARSED.clear()
    _PARSED[der] = cert
    return cert


def _subject(server_name: str) -> x509.DNSName | x509.IPAddress:
    """RFC 9525 §6: an IP reference identity matches iPAddress SANs, others dNSName SANs."""
    name = server_name.strip("[]")  # tolerate "[::1]" as written in URLs
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    name = server_name.rstrip(".").lower()
    try:
        if not name.isascii():
            name = name.encode("idna").decode("ascii")  # U-labels -> A-labels
        return x509.DNSName(name)
    except (UnicodeError, ValueError):
        raise _unusable_name(server_name) from None


def _unusable_name(server_name: str) -> TlsAlertError:
    return _alert(AlertDescription.bad_certificate, f"unusable server name {server_name!r}")


def _map_verification_error(exc: VerificationError) -> TlsAlertError:
    """Map cryptography's VerificationError (message-only) to an alert."""
    message = str(exc)
    if "not valid at validation time" in message:
        return _alert(AlertDescription.certificate_expired, message)
    if "subjectAltName" in message and "no matching" in message:
        return _alert(AlertDescription.bad_certificate, message)
    if "candidates exhausted" in message:
        return _alert(AlertDescription.unknown_ca, message)
    return _alert(AlertDescription.bad_certificate, message)


# -- the three modes -------------------------------------------------------------------


def _verify_pinned(
    leaf_der: bytes, leaf: x509.Certificate, now: datetime, hashes: tuple[bytes, ...]
) -> None:
    """W3C WebTransport: "verify a certificate hash" + custom certificate requirements."""
    digest = hashlib.sha256(leaf_der).digest()
    if digest not in hashes:
        raise _alert(AlertDescription.bad_certificate, "certificate hash is not pinned")
    if leaf.version is not x509.Version.v3:
        raise _alert(AlertDescription.bad_certificate, "pinned certificate must be X.509v3")
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not not_before <= _utc(now) <= not_after:
        raise _alert(AlertDescription.certificate_expired, "pinned certificate is not valid now")
    if not_after - not_before > MAX_PINNED_VALIDITY:
        raise _alert(
            AlertDescription.bad_certificate, "pinned certificate validity exceeds 14 days"
        )
    try:
        key = leaf.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise _alert(
            AlertDescription.bad_certificate, "pinned certificate key must be ECDSA (not RSA)"
        )


# The Web PKI profile, except that a server (leaf) certificate may lack the Authority Key
# Identifier: RFC 5280 §4.2.1.1 lets self-signed certificates omit it, and such leaves
# are common in development (a certificate trusted as its own CA with --cafile).
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()
_EE_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None
)


# Chains verified lately (see the module docstring): (SHA-256 of the chain as sent,
# server name, trust store) -> (from, until) during which that result holds.
_VERIFIED: dict[tuple[bytes, str, Store], tuple[datetime, datetime]] = {}
_VERIFIED_LIMIT = 64


def _chain_digest(chain_der: Sequence[bytes]) -> bytes:
    digest = hashlib.sha256()
    for der in chain_der:
        digest.update(len(der).to_bytes(4, "big"))
        digest.update(der)
    return digest.digest()


def _remember(key: tuple[bytes, str, Store], path: list[x509.Certificate], now: datetime) -> None:
    """Keep a verification's result for the window in which it holds."""
    start = max(cert.not_valid_before_utc for cert in path)
    until = min(min(cert.not_valid_after_utc for cert in path), now + VERIFIED_TTL)
    if len(_VERIFIED) >= _VERIFIED_LIMIT:
        _VERIFIED.clear()
    _VERIFIED[key] = (start, until)


def _verify_chain(
    chain_der: Sequence[bytes],
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    server_name: str | None,
    now: datetime,
    options: VerifyOptions,
) -> None:
    if server_name is None or not server_name.strip("[]."):
        raise _alert(AlertDescription.bad_certificate, "no server name to verify against")
    store = _trust_store(options)
    if store is None:
        raise _alert(AlertDescription.unknown_ca, "no trusted root certificates available")
    now = _utc(now)
    key = (_chain_digest(chain_der), server_name, store)
    window = _VERIFIED.get(key)
    if window is not None and window[0] <= now <= window[1]:
        return  # this chain, name and store verified, and the result still holds
    subject = _subject(server_name)
    try:
        verifier = (
            PolicyBuilder()
            .store(store)
            .time(now)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
            .build_server_verifier(subject)
        )
    except ValueError:  # e.g. "a..b": not a valid DNS name for the verifier
        raise _unusable_name(server_name) from None
    try:
        path = verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise _map_verification_error(exc) from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # malformed contents
        raise _alert(AlertDescription.bad_certificate, f"unusable certificate: {exc}") from None
    _remember(key, path, now)


def verify_server_certificate(
    chain_der: Sequence[bytes], server_name: str | None, now: datetime, options: VerifyOptions
) -> x509.Certificate:
    """Authenticate the server's certificate chain (DER, leaf first); return the leaf.

    ``now`` is the current wall-clock time (naive values are taken as UTC). Raises
    :class:`TlsAlertError` as described in the module docstring. In normal mode a
    ``server_name`` is required (``bad_certificate`` without one).
    """
    if not chain_der:
        # RFC 9846 §4.5.1.3: empty server Certificate -> "decode_error".
        raise _alert(AlertDescription.decode_error, "server sent an empty certificate chain")
    leaf = _parse(chain_der[0])
    if not options.verify:
        return leaf
    if options.certificate_hashes:
        # Only the leaf matters when pinning; the rest of the chain is ignored.
        _verify_pinned(bytes(chain_der[0]), leaf, now, options.certificate_hashes)
    else:
        intermediates = [_parse(der) for der in chain_der[1:]]
        _verify_chain(chain_der, leaf, intermediates, server_name, now, options)
    return leaf
