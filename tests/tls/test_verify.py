"""Server certificate verification: chains, names, times, pinning, opt-out."""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from quic.tls.alerts import AlertDescription, TlsAlertError
from quic.tls.selfsigned import SelfSignedCertificate, generate_ca_and_leaf, generate_self_signed
from quic.tls.verify import (
    MAX_PINNED_VALIDITY,
    VerifyOptions,
    load_system_roots,
    verify_server_certificate,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HOSTS = ("localhost", "example.test", "127.0.0.1", "::1")


@pytest.fixture(scope="module")
def pki() -> tuple[SelfSignedCertificate, SelfSignedCertificate]:
    return generate_ca_and_leaf(NOW, hostnames=HOSTS, days=10)


@pytest.fixture(scope="module")
def self_signed() -> SelfSignedCertificate:
    return generate_self_signed(NOW)


def _alert_of(
    chain: list[bytes], name: str | None, options: VerifyOptions, now: datetime = NOW
) -> AlertDescription:
    with pytest.raises(TlsAlertError) as exc:
        verify_server_certificate(chain, name, now, options)
    return exc.value.alert


def _tampered_signature(der: bytes) -> bytes:
    """Flip the last byte of the DER (inside the signature BIT STRING): still parses."""
    return der[:-1] + bytes([der[-1] ^ 0x01])


# -- normal mode -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["localhost", "example.test", "EXAMPLE.test", "example.test."])
def test_ca_chain_verifies_with_cadata(
    pki: tuple[SelfSignedCertificate, SelfSignedCertificate], name: str
) -> None:
    ca, leaf = pki
    options = VerifyOptions(cadata=ca.certificate_pem)
    result = verify_server_certificate([leaf.certificate_der], name, NOW, options)
    assert isinstance(result, x509.Certificate)
    assert result == leaf.certificate


def test_chain_including_root_and_naive_now(
    pki: tuple[SelfSignedCertificate, SelfSignedCertificate],
) -> None:
    ca, leaf = pki
    options = VerifyOptions(cadata=ca.certificate_pem)
    chain = [leaf.certificate_der, ca.certificate_der]
    naive_now = NOW.replace(tzinfo=None)
    assert verify_server_certificate(chain, "localhost", naive_now, options) == leaf.certificate


def test_cafile(pki: tuple[SelfSignedCertificate, SelfSignedCertificate], tmp_path: Path) -> None:
    ca, leaf = pki
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(ca.certificate_pem)
    options = VerifyOptions(cafile=str(cafile))
    assert verify_server_certificate([leaf.certificate_der], "localhost", NOW, options)
    # cafile and cadata combine.
    other_ca, other_leaf = generate_ca_and_leaf(NOW)
    both = VerifyOptions(cafile=str(cafile), cadata=other_ca.certificate_pem)
    assert verify_server_certificate([other_leaf.certificate_der], "localhost", NOW, both)
    assert verify_server_certificate([leaf.certificate_der], "localhost", NOW, both)
    missing = VerifyOptions(cafile=str(tmp_path / "missing.pem"))
    assert _alert_of([leaf.certificate_der], "localhost", missing) is (
        AlertDescription.internal_error
    )


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "[::1]"])
def test_ip_address_san(
    pki: tuple[SelfSignedCertificate, SelfSignedCertificate], address: str
) -> None:
    ca, leaf = pki
    options = VerifyOptions(cadata=ca.certificate_pem)
    assert verify_server_certificate([leaf.certificate_der], address, NOW, options)


@pytest.mark.parametrize("name", ["other.test", "127.0.0.2", "::2", "sub.localhost", "localhost2"])
def test_wrong_name_is_bad_certificate(
    pki: tuple[SelfSignedCertificate, SelfSignedCertificate], name: str
) -> None:
    ca, leaf = pki
    options = VerifyOptions(cadata=ca.certificate_pem)
    assert _alert_of([leaf.certificate_der], name, options) is AlertDescription.bad_certificate


def test_ip_literal_does_not_match_dns_san() -> None:
    """RFC 9525: an IP reference identity only matches iPAddress SANs."""
    ca, leaf = generate_ca_and_leaf(NOW, hostnames=("127.0.0.1.example",))
    options = VerifyOptions(cadata=ca.certificate_pem)
    assert _alert_of([leaf.certificate_der], "127.0.0.1", options) is (
        AlertDescription.bad_certificate
    )


def test_missing_server_name(pki: tuple[SelfSignedCertificate, SelfSignedCertificate]) -> None:
    ca, leaf = pki
    options = VerifyOptions(cadata=ca.certificate_pem)
    assert _alert_of([leaf.certificate_der], None, options) is AlertDescription.bad_certificate


@pytest.mark.parametrize(
    "when", [NOW + timedelta(days=11), NOW - timedelta(minutes=2), NOW + timedelta(days=400)]
)
def test_outside_validity_is_certificate_expired(
    pki: tuple[SelfSignedCertificate, SelfSignedCertificate], when: datetime
) -> None:
    ca, leaf = pki
    options = VerifyOptions(cadata=ca.certificate_pem)
    assert _alert_of([leaf.certificate_der], "localhost", options, when) is (
        AlertDescription.certificate_expired
    )


def test_expired_ca_is_certificate_expired() -> None:
    ca, leaf = generate_ca_and_leaf(NOW, days=10, ca_days=2)
    options = VerifyOptions(cadata=ca.certificate_pem)
    later = NOW + timedelta(days=3)
    assert _alert_of([leaf.certificate_der], "localhost", options, later) is (
        AlertDescription.certificate_expired
    )


def test_unknown_ca(pki: tuple[SelfSignedCertificate, SelfSignedCertificate]) -> None:
    _, leaf = pki
    other_ca, _ = generate_ca_and_leaf(NOW)
    options = VerifyOptions(cadata=other_ca.certificate_pem)
    assert _alert_of([leaf.certificate_der], "localhost", options) is AlertDescription.unknown_ca
    # Supplying the (untrusted) issuer as an intermediate does not help.
    rogue_ca, rogue_leaf = generate_ca_and_leaf(NOW)
    chain = [rogue_leaf.certificate_der, rogue_ca.certificate_der]
    assert _alert_of(chain, "localhost", options) is AlertDescription.unknown_ca


def test_system_store_rejects_private_ca(
    pki: tuple[SelfSignedCertificate, SelfSignedCertificate],
    self_signed: SelfSignedCertificate,
) -> None:
    _, leaf = pki
    if not load_system_roots():  # pragma: no cover - depends on the host
        pytest.skip("no system trust store on this host")
    assert _alert_of([leaf.certificate_der], "localhost", VerifyOptions()) is (
        AlertDescription.unknown_ca
    )
    assert _alert_of([self_signed.certificate_der], "localhost", VerifyOptions()) is (
        AlertDescription.unknown_ca
    )


def test_self_signed_as_its_own_trust_anchor(self_signed: SelfSignedCertificate) -> None:
    options = VerifyOptions(cadata=self_signed.certificate_pem)
    chain = [self_signed.certificate_der]
    assert verify_server_certificate(chain, "localhost", NOW, options) == self_signed.certificate


def test_bad_signature_rejected(pki: tuple[SelfSignedCertificate, SelfSignedCertificate]) -> None:
    ca, leaf = pki
    options = VerifyOptions(cadata=ca.certificate_pem)
    tampered = _tampered_signature(leaf.certificate_der)
    # cryptography reports "candidates exhausted: signature does not match".
    assert _alert_of([tampered], "localhost", options) is AlertDescription.unknown_ca


def test_empty_chain_is_decode_error() -> None:
    for options in (VerifyOptions(), VerifyOptions(verify=False)):
        assert _alert_of([], "localhost", options) is AlertDescription.decode_error


def _bad_version(der: bytes) -> bytes:
    """Set the explicit [0] version INTEGER to 5 (not a valid X.509 version)."""
    i = der.index(bytes.fromhex("a003020102"))
    return der[: i + 4] + b"\x05" + der[i + 5 :]


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x30\x03\x02\x01\x00",
        b"not DER at all",
        _bad_version(generate_self_signed(NOW).certificate_der),
    ],
)
def test_unparsable_der_is_bad_certificate(garbage: bytes) -> None:
    for options in (VerifyOptions(), VerifyOptions(verify=False)):
        assert _alert_of([garbage], "localhost", options) is AlertDescription.bad_certificate


# -- pinning mode ------------------------------------------------------------------------


def test_pinning_accepts_matching_hash_without_ca(self_signed: SelfSignedCertificate) -> None:
    digest = hashlib.sha256(self_signed.certificate_der).digest()
    assert digest == self_signed.sha256
    options = VerifyOptions(certificate_hashes=(b"\x00" * 32, digest))
    # No CA, and no name check: any server name (or none) is fine.
    for name in ("localhost", "unrelated.example", None):
        result = verify_server_certificate([self_signed.certificate_der], name, NOW, options)
        assert result == self_signed.certificate


def test_pinning_rejects_other_hash(self_signed: SelfSignedCertificate) -> None:
    options = VerifyOptions(certificate_hashes=(hashlib.sha256(b"other").digest(),))
    assert _alert_of([self_signed.certificate_der], "localhost", options) is (
        AlertDescription.bad_certificate
    )


def test_pinning_does_not_rescue_a_pinned_intermediate(self_signed: SelfSignedCertificate) -> None:
    other = generate_self_signed(NOW)
    options = VerifyOptions(certificate_hashes=(self_signed.sha256,))
    chain = [other.certificate_der, self_signed.certificate_der]
    assert _alert_of(chain, "localhost", options) is AlertDescription.bad_certificate


def test_pinning_rejects_validity_over_14_days() -> None:
    _, long_leaf = generate_ca_and_leaf(NOW, days=15)
    options = VerifyOptions(certificate_hashes=(long_leaf.sha256,))
    assert _alert_of([long_leaf.certificate_der], "localhost", options) is (
        AlertDescription.bad_certificate
    )
    _, ok_leaf = generate_ca_and_leaf(NOW, days=MAX_PINNED_VALIDITY.days)
    options = VerifyOptions(certificate_hashes=(ok_leaf.sha256,))
    assert verify_server_certificate([ok_leaf.certificate_der], None, NOW, options)


@pytest.mark.parametrize("when", [NOW + timedelta(days=14), NOW - timedelta(minutes=5)])
def test_pinning_requires_current_validity(
    self_signed: SelfSignedCertificate, when: datetime
) -> None:
    options = VerifyOptions(certificate_hashes=(self_signed.sha256,))
    assert _alert_of([self_signed.certificate_der], None, options, when) is (
        AlertDescription.certificate_expired
    )


def test_pinning_rejects_rsa_key() -> None:
    rsa_cert = generate_self_signed(NOW, key_type="rsa2048")
    options = VerifyOptions(certificate_hashes=(rsa_cert.sha256,))
    assert _alert_of([rsa_cert.certificate_der], None, options) is (
        AlertDescription.bad_certificate
    )


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "ed25519"])
def test_pinning_accepts_non_rsa_keys(key_type: str) -> None:
    cert = generate_self_signed(NOW, key_type=key_type)
    options = VerifyOptions(certificate_hashes=(cert.sha256,))
    assert verify_server_certificate([cert.certificate_der], None, NOW, options)


# -- opt-out -----------------------------------------------------------------------------


def test_verify_false_accepts_anything(
    pki: tuple[SelfSignedCertificate, SelfSignedCertificate],
) -> None:
    _, leaf = pki
    tampered = _tampered_signature(leaf.certificate_der)
    options = VerifyOptions(verify=False, certificate_hashes=(b"\x00" * 32,))
    far_future = NOW + timedelta(days=3650)
    result = verify_server_certificate([tampered, b"junk"], "wrong.example", far_future, options)
    assert result.public_bytes(Encoding.DER) == tampered
    assert result.subject == leaf.certificate.subject


# -- names and robustness --------------------------------------------------------------


def test_idn_server_name_matches_a_label_san() -> None:
    ca, leaf = generate_ca_and_leaf(NOW, hostnames=("xn--bcher-kva.example",))
    options = VerifyOptions(cadata=ca.certificate_pem)
    assert verify_server_certificate([leaf.certificate_der], "bücher.example", NOW, options)
    assert verify_server_certificate([leaf.certificate_der], "xn--bcher-kva.example", NOW, options)


@pytest.mark.parametrize(
    "name", ["", ".", "a..b", "*.localhost", "localhost ", "-x-", "a" * 300, "\ud800"]
)
def test_unusable_server_name_is_bad_certificate(
    pki: tuple[SelfSignedCertificate, SelfSignedCertificate], name: str
) -> None:
    ca, leaf = pki
    options = VerifyOptions(cadata=ca.certificate_pem)
    assert _alert_of([leaf.certificate_der], name, options) is AlertDescription.bad_certificate


_FUZZ_CA, _FUZZ_LEAF = generate_ca_and_leaf(NOW)
_FUZZ_OPTIONS = VerifyOptions(cadata=_FUZZ_CA.certificate_pem)


@settings(max_examples=150, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=len(_FUZZ_LEAF.certificate_der) - 1),
    value=st.integers(min_value=0, max_value=255),
    truncate=st.booleans(),
)
def test_fuzz_mutated_leaf_only_typed_errors(position: int, value: int, truncate: bool) -> None:
    der = bytearray(_FUZZ_LEAF.certificate_der)
    der[position] = value
    blob = bytes(der[:position] if truncate else der)
    for options in (_FUZZ_OPTIONS, VerifyOptions(certificate_hashes=(_FUZZ_LEAF.sha256,))):
        try:
            verify_server_certificate([blob], "localhost", NOW, options)
        except TlsAlertError as exc:
            assert exc.alert in (
                AlertDescription.bad_certificate,
                AlertDescription.unknown_ca,
                AlertDescription.certificate_expired,
            )
        else:
            # Accepted: the signed part (CA mode) or the whole DER (pinning) is untouched.
            if options is _FUZZ_OPTIONS:
                parsed = x509.load_der_x509_certificate(blob)
                assert parsed.tbs_certificate_bytes == _FUZZ_LEAF.certificate.tbs_certificate_bytes
            else:
                assert blob == _FUZZ_LEAF.certificate_der


@settings(max_examples=150, deadline=None)
@given(chain=st.lists(st.binary(max_size=64), max_size=3), name=st.text(max_size=40))
def test_fuzz_random_chain_and_name_only_typed_errors(chain: list[bytes], name: str) -> None:
    for options in (_FUZZ_OPTIONS, VerifyOptions(verify=False)):
        try:
            verify_server_certificate(chain, name, NOW, options)
        except TlsAlertError as exc:
            assert exc.alert in (AlertDescription.decode_error, AlertDescription.bad_certificate)
        else:  # pragma: no cover - random bytes are never a certificate
            raise AssertionError("random bytes accepted as a certificate")


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=80))
def test_fuzz_server_name_only_typed_errors(name: str) -> None:
    try:
        verify_server_certificate([_FUZZ_LEAF.certificate_der], name, NOW, _FUZZ_OPTIONS)
    except TlsAlertError as exc:
        assert exc.alert is AlertDescription.bad_certificate
    else:
        assert _names_localhost(name)


def _names_localhost(name: str) -> bool:
    try:
        return ipaddress.ip_address(name.strip("[]")) == ipaddress.ip_address("127.0.0.1")
    except ValueError:
        pass
    normalized = name.rstrip(".").lower()
    try:
        normalized = normalized.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return normalized == "localhost"


def test_self_signed_leaf_without_authority_key_identifier_verifies_as_its_own_ca() -> None:
    """RFC 5280 §4.2.1.1: a self-signed certificate may omit the AKI extension."""
    import datetime as _dt

    from cryptography import x509 as _x509
    from cryptography.hazmat.primitives import hashes as _hashes
    from cryptography.hazmat.primitives import serialization as _ser
    from cryptography.hazmat.primitives.asymmetric import ec as _ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from quic.tls.verify import VerifyOptions as _VO
    from quic.tls.verify import verify_server_certificate as _verify

    now = _dt.datetime(2026, 11, 25, tzinfo=_dt.UTC)
    key = _ec.generate_private_key(_ec.SECP256R1())
    name = _x509.Name([_x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        _x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(hours=1))
        .not_valid_after(now + _dt.timedelta(days=5))
        .add_extension(_x509.SubjectAlternativeName([_x509.DNSName("localhost")]), False)
        .add_extension(_x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(key, _hashes.SHA256())
    )
    pem = cert.public_bytes(_ser.Encoding.PEM)
    der = cert.public_bytes(_ser.Encoding.DER)
    leaf = _verify([der], "localhost", now, _VO(cadata=pem))
    assert leaf.serial_number == cert.serial_number


def test_parsed_certificates_are_reused_and_bounded() -> None:
    """A server's certificate seen again is not parsed again (same object, so its public
    key is decoded once); the table stays bounded; bad DER is still refused."""
    from quic.tls import verify as verify_module

    now = datetime(2026, 1, 1, tzinfo=UTC)
    options = VerifyOptions(verify=False)
    first = generate_self_signed(now)
    leaf = verify_server_certificate([first.certificate_der], "localhost", now, options)
    again = verify_server_certificate([first.certificate_der], "localhost", now, options)
    assert again is leaf
    limit = verify_module._PARSED_LIMIT
    for count in (limit + 2, 4 * (limit + 2)):  # N and 4N servers: the same bound
        for _ in range(count):
            other = generate_self_signed(now)
            verify_server_certificate([other.certificate_der], "localhost", now, options)
        assert len(verify_module._PARSED) <= limit
    with pytest.raises(TlsAlertError) as exc:
        verify_server_certificate([b"\x30\x03junk"], "localhost", now, options)
    assert exc.value.alert is AlertDescription.bad_certificate


# -- verified chains remembered ----------------------------------------------------------


class _CountingBuilder:
    """Stands in for ``PolicyBuilder`` in :mod:`quic.tls.verify`: counts the paths built."""

    def __init__(self) -> None:
        self.built = 0

    def __call__(self) -> object:
        from cryptography.x509.verification import PolicyBuilder

        self.built += 1
        return PolicyBuilder()


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> _CountingBuilder:
    from quic.tls import verify as verify_module

    counter = _CountingBuilder()
    monkeypatch.setattr(verify_module, "PolicyBuilder", counter)
    monkeypatch.setattr(verify_module, "_VERIFIED", {})
    return counter


def test_a_verified_chain_is_checked_once_while_the_result_holds(
    pki: tuple[SelfSignedCertificate, SelfSignedCertificate], builds: _CountingBuilder
) -> None:
    """Issue 10 (handshake cost): the same chain, name and trust store verify once; the
    result holds until the path's earliest notAfter and at most VERIFIED_TTL."""
    from quic.tls.verify import VERIFIED_TTL

    ca, leaf = pki
    options = VerifyOptions(cadata=ca.certificate_pem)
    chain = [leaf.certificate_der]
    for _ in range(3):
        assert verify_server_certificate(chain, "localhost", NOW, options) == leaf.certificate
    assert builds.built == 1
    verify_server_certificate(chain, "localhost", NOW + timedelta(minutes=9), options)
    assert builds.built == 1
    verify_server_certificate(chain, "example.test", NOW, options)  # another name
    assert builds.built == 2
    verify_server_certificate([*chain, ca.certificate_der], "localhost", NOW, options)
    assert builds.built == 3  # another chain as sent
    later = NOW + VERIFIED_TTL + timedelta(seconds=1)  # the certificate still valid
    verify_server_certificate(chain, "localhost", later, options)
    assert builds.built == 4
    # past the leaf's notAfter (10 days) or before its notBefore: checked, and refused
    expired = leaf.certificate.not_valid_after_utc + timedelta(seconds=1)
    assert _alert_of(chain, "localhost", options, expired) is AlertDescription.certificate_expired
    early = leaf.certificate.not_valid_before_utc - timedelta(seconds=1)
    assert _alert_of(chain, "localhost", options, early) is AlertDescription.certificate_expired
    assert builds.built == 6


def test_a_remembered_result_belongs_to_its_trust_store_and_chain(
    pki: tuple[SelfSignedCertificate, SelfSignedCertificate], builds: _CountingBuilder
) -> None:
    ca, leaf = pki
    chain = [leaf.certificate_der]
    verify_server_certificate(chain, "localhost", NOW, VerifyOptions(cadata=ca.certificate_pem))
    other_ca, _ = generate_ca_and_leaf(NOW, hostnames=HOSTS, days=10)
    other = VerifyOptions(cadata=other_ca.certificate_pem)
    assert _alert_of(chain, "localhost", other) is AlertDescription.unknown_ca
    tampered = [_tampered_signature(leaf.certificate_der)]
    options = VerifyOptions(cadata=ca.certificate_pem)
    assert _alert_of(tampered, "localhost", options) is AlertDescription.unknown_ca
    assert builds.built == 3  # neither reused the first result
    with pytest.raises(TlsAlertError):  # a name the certificate does not carry
        verify_server_certificate(chain, "other.test", NOW, options)


def test_the_table_of_verified_chains_is_bounded(
    pki: tuple[SelfSignedCertificate, SelfSignedCertificate],
    builds: _CountingBuilder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from quic.tls import verify as verify_module

    monkeypatch.setattr(verify_module, "_VERIFIED_LIMIT", 3)
    ca, leaf = pki
    options = VerifyOptions(cadata=ca.certificate_pem)
    for count in (5, 20):  # N and 4N verifications of distinct keys: the same bound
        for index in range(count):
            name = HOSTS[index % len(HOSTS)]
            chain = [leaf.certificate_der, *[ca.certificate_der] * (index // len(HOSTS))]
            verify_server_certificate(chain, name, NOW, options)
            assert len(verify_module._VERIFIED) <= 3
