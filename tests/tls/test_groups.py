"""Key exchange groups: round trips, encodings, hybrid layout, malformed shares."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from quic.tls.alerts import AlertDescription, TlsAlertError
from quic.tls.groups import (
    KEY_EXCHANGE_LENGTHS,
    SUPPORTED_GROUPS,
    KeyShare,
    NamedGroup,
    generate_key_share,
    server_key_exchange,
)

ALL_GROUPS = list(NamedGroup)
EXPECTED_LENGTHS = {
    NamedGroup.x25519: (32, 32, 32),
    NamedGroup.secp256r1: (65, 65, 32),
    NamedGroup.secp384r1: (97, 97, 48),
    NamedGroup.X25519MLKEM768: (1216, 1120, 64),
}
# RFC 7748 §5.2 / low-order u-coordinates: X25519 with these yields all zeros.
LOW_ORDER_X25519 = [bytes(32), (1).to_bytes(32, "little")]


def _illegal(exc: pytest.ExceptionInfo[TlsAlertError]) -> bool:
    return exc.value.alert is AlertDescription.illegal_parameter


def test_codepoints_and_preference() -> None:
    assert int(NamedGroup.secp256r1) == 0x0017
    assert int(NamedGroup.secp384r1) == 0x0018
    assert int(NamedGroup.x25519) == 0x001D
    assert int(NamedGroup.X25519MLKEM768) == 0x11EC
    assert list(SUPPORTED_GROUPS) == [
        NamedGroup.X25519MLKEM768,
        NamedGroup.x25519,
        NamedGroup.secp256r1,
        NamedGroup.secp384r1,
    ]


@pytest.mark.parametrize("group", ALL_GROUPS)
def test_round_trip(group: NamedGroup) -> None:
    share = generate_key_share(group)
    assert isinstance(share, KeyShare)
    assert share.group is group
    client_len, server_len, secret_len = EXPECTED_LENGTHS[group]
    assert KEY_EXCHANGE_LENGTHS[group] == (client_len, server_len)
    assert len(share.public) == client_len
    server_public, server_secret = server_key_exchange(group, share.public)
    assert len(server_public) == server_len
    assert len(server_secret) == secret_len
    assert share.shared_secret(server_public) == server_secret
    # Fresh ephemeral keys every time (RFC 9846 §4.3.8: no reuse across connections).
    assert generate_key_share(group).public != share.public
    assert server_key_exchange(group, share.public)[0] != server_public


@pytest.mark.parametrize("group", [NamedGroup.secp256r1, NamedGroup.secp384r1])
def test_ec_uncompressed_encoding_and_x_coordinate_secret(group: NamedGroup) -> None:
    curve: ec.EllipticCurve = ec.SECP256R1() if group is NamedGroup.secp256r1 else ec.SECP384R1()
    share = generate_key_share(group)
    assert share.public[0] == 0x04  # RFC 9846 §4.3.8.2 legacy_form = 4
    # An independent peer key: the secret must be the plain ECDH x-coordinate.
    peer = ec.generate_private_key(curve)
    peer_public = peer.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    expected = peer.exchange(
        ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(curve, share.public)
    )
    assert share.shared_secret(peer_public) == expected
    assert len(expected) == curve.key_size // 8


def test_x25519_matches_raw_primitive() -> None:
    share = generate_key_share(NamedGroup.x25519)
    peer = x25519.X25519PrivateKey.generate()
    expected = peer.exchange(x25519.X25519PublicKey.from_public_bytes(share.public))
    assert share.shared_secret(peer.public_key().public_bytes_raw()) == expected


@pytest.mark.parametrize("pick", [NamedGroup.x25519, NamedGroup.X25519MLKEM768])
@pytest.mark.parametrize("first", [NamedGroup.x25519, NamedGroup.X25519MLKEM768])
def test_x25519_key_reused_across_shares(first: NamedGroup, pick: NamedGroup) -> None:
    """draft-ietf-tls-hybrid-design §3.2: the second share takes the first's X25519 key
    (same 32 public bytes); whichever group the server picks, the exchange agrees."""
    other = NamedGroup.X25519MLKEM768 if first is NamedGroup.x25519 else NamedGroup.x25519
    shares = {first: generate_key_share(first)}
    shares[other] = generate_key_share(other, shares[first])
    assert shares[first].public[-32:] == shares[other].public[-32:]
    assert len(shares[NamedGroup.X25519MLKEM768].public) == 1216
    server_public, server_secret = server_key_exchange(pick, shares[pick].public)
    assert shares[pick].shared_secret(server_public) == server_secret
    # without a share to reuse (or one without an X25519 key), a fresh key
    assert generate_key_share(other).public[-32:] != shares[first].public[-32:]
    p256 = generate_key_share(NamedGroup.secp256r1)
    assert generate_key_share(other, p256).public[-32:] != shares[first].public[-32:]


def test_hybrid_client_layout_mlkem_first() -> None:
    """Client share = ek(1184) || x25519(32); secret = ML-KEM ss || X25519 ss."""
    share = generate_key_share(NamedGroup.X25519MLKEM768)
    ek = mlkem.MLKEM768PublicKey.from_public_bytes(share.public[:1184])
    kem_secret, ciphertext = ek.encapsulate()
    peer = x25519.X25519PrivateKey.generate()
    ecdh_secret = peer.exchange(x25519.X25519PublicKey.from_public_bytes(share.public[1184:]))
    server_share = ciphertext + peer.public_key().public_bytes_raw()
    assert share.shared_secret(server_share) == kem_secret + ecdh_secret


def test_hybrid_server_layout_mlkem_first() -> None:
    """Server share = ciphertext(1088) || x25519(32); secret = ML-KEM ss || X25519 ss."""
    kem_key = mlkem.MLKEM768PrivateKey.generate()
    x_key = x25519.X25519PrivateKey.generate()
    client_share = kem_key.public_key().public_bytes_raw() + x_key.public_key().public_bytes_raw()
    server_share, secret = server_key_exchange(NamedGroup.X25519MLKEM768, client_share)
    kem_secret = kem_key.decapsulate(server_share[:1088])
    ecdh_secret = x_key.exchange(x25519.X25519PublicKey.from_public_bytes(server_share[1088:]))
    assert secret == kem_secret + ecdh_secret
    assert len(kem_secret) == 32 and len(ecdh_secret) == 32


@pytest.mark.parametrize("group", ALL_GROUPS)
@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_lengths_rejected(group: NamedGroup, delta: int) -> None:
    share = generate_key_share(group)
    client_len, server_len = KEY_EXCHANGE_LENGTHS[group]
    with pytest.raises(TlsAlertError) as exc:
        server_key_exchange(group, share.public[: client_len + delta] + b"\x04" * max(delta, 0))
    assert _illegal(exc)
    server_public, _ = server_key_exchange(group, share.public)
    bad = server_public[: server_len + delta] + b"\x04" * max(delta, 0)
    with pytest.raises(TlsAlertError) as exc:
        share.shared_secret(bad)
    assert _illegal(exc)
    with pytest.raises(TlsAlertError) as exc:
        share.shared_secret(b"")
    assert _illegal(exc)


@pytest.mark.parametrize("group", [NamedGroup.secp256r1, NamedGroup.secp384r1])
def test_ec_point_not_on_curve_rejected(group: NamedGroup) -> None:
    share = generate_key_share(group)
    coord = (len(share.public) - 1) // 2
    # Keep X, corrupt Y: (x, y+1) is not on the curve.
    y = int.from_bytes(share.public[1 + coord :], "big")
    off_curve = share.public[: 1 + coord] + ((y + 1) % (1 << (8 * coord))).to_bytes(coord, "big")
    for bad in (off_curve, b"\x04" + bytes(2 * coord), b"\x04" + b"\xff" * (2 * coord)):
        with pytest.raises(TlsAlertError) as exc:
            share.shared_secret(bad)
        assert _illegal(exc)
        with pytest.raises(TlsAlertError) as exc:
            server_key_exchange(group, bad)
        assert _illegal(exc)


@pytest.mark.parametrize("group", [NamedGroup.secp256r1, NamedGroup.secp384r1])
def test_ec_non_uncompressed_forms_rejected(group: NamedGroup) -> None:
    curve: ec.EllipticCurve = ec.SECP256R1() if group is NamedGroup.secp256r1 else ec.SECP384R1()
    peer = ec.generate_private_key(curve).public_key()
    compressed = peer.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    uncompressed = peer.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    hybrid_form = bytes([0x06 | (uncompressed[-1] & 1)]) + uncompressed[1:]
    for bad in (compressed, hybrid_form, b"\x00" + uncompressed[1:]):
        with pytest.raises(TlsAlertError) as exc:
            server_key_exchange(group, bad)
        assert _illegal(exc)


@pytest.mark.parametrize("low_order", LOW_ORDER_X25519)
def test_x25519_all_zero_secret_rejected(low_order: bytes) -> None:
    with pytest.raises(TlsAlertError) as exc:
        server_key_exchange(NamedGroup.x25519, low_order)
    assert _illegal(exc)
    share = generate_key_share(NamedGroup.x25519)
    with pytest.raises(TlsAlertError) as exc:
        share.shared_secret(low_order)
    assert _illegal(exc)


def test_hybrid_all_zero_x25519_part_rejected() -> None:
    share = generate_key_share(NamedGroup.X25519MLKEM768)
    with pytest.raises(TlsAlertError) as exc:
        server_key_exchange(NamedGroup.X25519MLKEM768, share.public[:1184] + bytes(32))
    assert _illegal(exc)
    server_public, _ = server_key_exchange(NamedGroup.X25519MLKEM768, share.public)
    with pytest.raises(TlsAlertError) as exc:
        share.shared_secret(server_public[:1088] + bytes(32))
    assert _illegal(exc)


def test_hybrid_invalid_encapsulation_key_rejected() -> None:
    # Coefficients 0xfff > q = 3329 fail the FIPS 203 modulus check.
    x_public = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(TlsAlertError) as exc:
        server_key_exchange(NamedGroup.X25519MLKEM768, b"\xff" * 1184 + x_public)
    assert _illegal(exc)


def test_hybrid_garbage_ciphertext_gives_different_secret() -> None:
    """ML-KEM implicit rejection: a corrupted ciphertext decapsulates to another secret."""
    share = generate_key_share(NamedGroup.X25519MLKEM768)
    server_public, secret = server_key_exchange(NamedGroup.X25519MLKEM768, share.public)
    corrupted = bytes([server_public[0] ^ 1]) + server_public[1:]
    assert share.shared_secret(corrupted) != secret


def test_unknown_group_rejected() -> None:
    with pytest.raises(TlsAlertError) as exc:
        server_key_exchange(0x0019, b"\x04" * 133)  # type: ignore[arg-type]  # secp521r1
    assert _illegal(exc)
    with pytest.raises(TlsAlertError) as exc:
        generate_key_share(0x0100)  # type: ignore[arg-type]  # ffdhe2048
    assert _illegal(exc)


_CLIENT_SHARES = {g: generate_key_share(g) for g in ALL_GROUPS}


@settings(max_examples=200, deadline=None)
@given(group=st.sampled_from(ALL_GROUPS), data=st.binary(max_size=1300))
def test_fuzz_server_side_only_typed_errors(group: NamedGroup, data: bytes) -> None:
    try:
        public, secret = server_key_exchange(group, data)
    except TlsAlertError as exc:
        assert exc.alert is AlertDescription.illegal_parameter
    else:
        assert len(public) == KEY_EXCHANGE_LENGTHS[group][1]
        assert secret


@settings(max_examples=200, deadline=None)
@given(group=st.sampled_from(ALL_GROUPS), data=st.binary(max_size=1300))
def test_fuzz_client_side_only_typed_errors(group: NamedGroup, data: bytes) -> None:
    try:
        secret = _CLIENT_SHARES[group].shared_secret(data)
    except TlsAlertError as exc:
        assert exc.alert is AlertDescription.illegal_parameter
    else:
        assert len(data) == KEY_EXCHANGE_LENGTHS[group][1]
        assert secret


@settings(max_examples=100, deadline=None)
@given(group=st.sampled_from(ALL_GROUPS), data=st.data())
def test_fuzz_right_length_inputs(group: NamedGroup, data: st.DataObject) -> None:
    """Right-length random values reach the curve/KEM checks; still only typed errors."""
    client_len, server_len = KEY_EXCHANGE_LENGTHS[group]
    for length, call in (
        (client_len, lambda b: server_key_exchange(group, b)),
        (server_len, _CLIENT_SHARES[group].shared_secret),
    ):
        blob = data.draw(st.binary(min_size=length, max_size=length))
        try:
            call(blob)
        except TlsAlertError as exc:
            assert exc.alert is AlertDescription.illegal_parameter
