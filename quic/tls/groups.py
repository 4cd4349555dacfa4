"""TLS 1.3 key exchange groups (RFC 9846 §4.3.7, §4.3.8; draft-ietf-tls-ecdhe-mlkem).

Theory of operation
-------------------
A TLS 1.3 client offers one ``KeyShareEntry`` per group it is willing to use up front
(RFC 9846 §4.3.8). :func:`generate_key_share` creates the ephemeral secret for one group
and exposes ``KeyShare.public``, the opaque ``key_exchange`` bytes for the ClientHello.
When the ServerHello arrives, ``KeyShare.shared_secret(server_key_exchange)`` completes
the exchange for the group the server picked.

The server never keeps an ephemeral object around: :func:`server_key_exchange` takes the
client's ``key_exchange`` bytes and returns both its own ``key_exchange`` bytes (for the
ServerHello) and the shared secret in one step. For Diffie-Hellman-style groups that is
"generate, then exchange"; for the hybrid KEM group it is "encapsulate".

Encodings (all fixed length, no internal length markers):

- ``x25519``: the 32-byte u-coordinate (RFC 9846 §4.3.8.2, RFC 7748 §6). An all-zero
  shared secret MUST abort the handshake (RFC 9846 §7.4.2).
- ``secp256r1`` / ``secp384r1``: ``UncompressedPointRepresentation``, i.e.
  ``0x04 || X || Y`` (RFC 9846 §4.3.8.2). Compressed or hybrid forms are not TLS 1.3
  encodings and are rejected; the point must lie on the curve (checked by
  ``cryptography`` when the key is loaded). The shared secret is the x-coordinate of the
  ECDH result (RFC 9846 §7.4.2), which is what ``exchange(ECDH())`` returns.
- ``X25519MLKEM768`` (0x11EC, draft-ietf-tls-ecdhe-mlkem): the ML-KEM component always
  comes first. Client share = ML-KEM-768 encapsulation key (1184) || X25519 public (32);
  server share = ML-KEM-768 ciphertext (1088) || X25519 public (32); shared secret =
  ML-KEM shared secret (32) || X25519 shared secret (32).

Any malformed peer value raises ``TlsAlertError(illegal_parameter)``; no ``ValueError``
from ``cryptography`` escapes this module.

Keys made ahead
---------------
Generating the ephemeral keys is most of the fixed cost of a handshake's first step on
either side: an X25519 key is about 440,000 instructions, an ML-KEM-768 key pair with
its encapsulation key's bytes about 1,430,000 — 59% of a client's ``connect`` with the
default offer, 9% of a server's answer to a ClientHello (issue 10, counted with
callgrind). :data:`KEYS_AHEAD`, a :class:`KeyReserve`, holds at most
:data:`RESERVE_SIZE` keys of each kind made before they are needed: a handshake takes
one (or makes it there and then if there is none), and :meth:`KeyReserve.refill` makes
new ones for the kinds taken since the last refill — which the event-loop driver
calls when its loop has nothing else to run (:mod:`quic.aio.ahead`): a client while it
waits for the server's flight, a server once its flight is out. So a process makes
only the kinds it uses (a server never makes an ML-KEM key: it encapsulates), and a
Sans-I/O user that never calls ``refill`` makes every key in the handshake, as before.

Every key is handed out once (taken out of the reserve, then used by one handshake
and dropped with it: RFC 9846 §4.3.8, no key share reused across connections), so
forward secrecy is that of a key made in the handshake. A forked child must not use
its parent's keys: the reserve is emptied in the child (``os.register_at_fork``) and,
should a fork bypass that hook, on the first use in a process other than the one that
filled it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import IntEnum
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from quic.tls.alerts import AlertDescription, TlsAlertError

__all__ = [
    "KEYS_AHEAD",
    "KEY_EXCHANGE_LENGTHS",
    "RESERVE_SIZE",
    "SUPPORTED_GROUPS",
    "KeyReserve",
    "KeyShare",
    "NamedGroup",
    "generate_key_share",
    "server_key_exchange",
]


class NamedGroup(IntEnum):
    """NamedGroup codepoints we implement (RFC 9846 §4.3.7, draft-ietf-tls-ecdhe-mlkem)."""

    secp256r1 = 0x0017
    secp384r1 = 0x0018
    x25519 = 0x001D
    X25519MLKEM768 = 0x11EC


#: Our preference order (most preferred first).
SUPPORTED_GROUPS: tuple[NamedGroup, ...] = (
    NamedGroup.X25519MLKEM768,
    NamedGroup.x25519,
    NamedGroup.secp256r1,
    NamedGroup.secp384r1,
)

_X25519_LEN = 32
_MLKEM768_EK_LEN = 1184  # encapsulation key
_MLKEM768_CT_LEN = 1088  # ciphertext
_ZERO32 = bytes(32)

_EC_CURVES: dict[NamedGroup, ec.EllipticCurve] = {
    NamedGroup.secp256r1: ec.SECP256R1(),
    NamedGroup.secp384r1: ec.SECP384R1(),
}
# Uncompressed point length: 1 + 2 * coordinate_length (RFC 9846 §4.3.8.2).
_EC_POINT_LEN: dict[NamedGroup, int] = {
    NamedGroup.secp256r1: 1 + 2 * 32,
    NamedGroup.secp384r1: 1 + 2 * 48,
}

#: (client key_exchange length, server key_exchange length) per group.
KEY_EXCHANGE_LENGTHS: dict[NamedGroup, tuple[int, int]] = {
    NamedGroup.x25519: (_X25519_LEN, _X25519_LEN),
    NamedGroup.secp256r1: (_EC_POINT_LEN[NamedGroup.secp256r1],) * 2,
    NamedGroup.secp384r1: (_EC_POINT_LEN[NamedGroup.secp384r1],) * 2,
    NamedGroup.X25519MLKEM768: (
        _MLKEM768_EK_LEN + _X25519_LEN,
        _MLKEM768_CT_LEN + _X25519_LEN,
    ),
}


def _illegal(reason: str) -> TlsAlertError:
    return TlsAlertError(AlertDescription.illegal_parameter, reason)


def _as_group(group: int) -> NamedGroup:
    try:
        return NamedGroup(group)
    except ValueError:
        raise _illegal(f"unsupported group 0x{group:04x}") from None


# -- primitive helpers -----------------------------------------------------------------


def _x25519_public(key: x25519.X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _x25519_exchange(key: x25519.X25519PrivateKey, peer: bytes) -> bytes:
    """X25519 with the RFC 7748 §6 all-zero check (RFC 9846 §7.4.2)."""
    if len(peer) != _X25519_LEN:
        raise _illegal("x25519 key_exchange must be 32 bytes")
    try:
        secret = key.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
    except ValueError:
        # cryptography refuses low-order points (all-zero output).
        raise _illegal("x25519 shared secret is all zero") from None
    if secret == _ZERO32:
        raise _illegal("x25519 shared secret is all zero")
    return secret


def _ec_load_peer(group: NamedGroup, peer: bytes) -> ec.EllipticCurvePublicKey:
    """Parse an UncompressedPointRepresentation and check it is on the curve (§4.3.8.2)."""
    if len(peer) != _EC_POINT_LEN[group] or peer[0] != 0x04:
        raise _illegal(f"{group.name} key_exchange must be an uncompressed point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_EC_CURVES[group], peer)
    except ValueError:
        raise _illegal(f"{group.name} point is not on the curve") from None


def _ec_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _ec_exchange(group: NamedGroup, key: ec.EllipticCurvePrivateKey, peer: bytes) -> bytes:
    public = _ec_load_peer(group, peer)
    try:
        return key.exchange(ec.ECDH(), public)
    except ValueError:  # pragma: no cover - on-curve points of prime-order curves
        raise _illegal(f"{group.name} exchange failed") from None


# -- keys made ahead ------------------------------------------------------------------

#: Keys of each kind (X25519, ML-KEM-768) the reserve holds at most: one per handshake
#: that starts before the loop is next idle (sequential connections need one).
RESERVE_SIZE = 1

_X25519_KIND = 1
_MLKEM_KIND = 2
_Key = TypeVar("_Key")


class KeyReserve:
    """Ephemeral keys made ahead of the handshakes that use them (see "Keys made
    ahead"); at most ``size`` of each kind."""

    __slots__ = ("_mlkem", "_pid", "_x25519", "size", "wanted")

    def __init__(self, size: int = RESERVE_SIZE) -> None:
        self._x25519: list[tuple[x25519.X25519PrivateKey, bytes]] = []
        self._mlkem: list[tuple[mlkem.MLKEM768PrivateKey, bytes]] = []
        self._pid = os.getpid()
        #: Keys of each kind held at most.
        self.size = size
        #: The kinds taken since the last refill (bits): non-zero when a refill would
        #: make keys. A plain attribute, read after every transmit.
        self.wanted = 0

    def __len__(self) -> int:
        return len(self._x25519) + len(self._mlkem)

    def x25519(self) -> tuple[x25519.X25519PrivateKey, bytes]:
        """An X25519 private key never handed out before, and its public bytes."""
        self.wanted |= _X25519_KIND
        return self._take(self._x25519, _new_x25519)

    def mlkem(self) -> tuple[mlkem.MLKEM768PrivateKey, bytes]:
        """An ML-KEM-768 private key never handed out before, and its encapsulation
        key's bytes."""
        self.wanted |= _MLKEM_KIND
        return self._take(self._mlkem, _new_mlkem)

    def _take(self, ready: list[_Key], make: Callable[[], _Key]) -> _Key:
        if ready and self._pid == os.getpid():  # not a parent's (see "Keys made ahead")
            try:
                return ready.pop()
            except IndexError:  # another thread took the last one
                pass
        return make()

    def refill(self) -> int:
        """Make keys of the kinds taken since the last refill, up to :attr:`size` of
        each; returns how many were made."""
        if self._pid != os.getpid():
            self.clear()
        wanted, self.wanted = self.wanted, 0
        made = 0
        if wanted & _X25519_KIND:
            made += self._top_up(self._x25519, _new_x25519)
        if wanted & _MLKEM_KIND:
            made += self._top_up(self._mlkem, _new_mlkem)
        return made

    def _top_up(self, ready: list[_Key], make: Callable[[], _Key]) -> int:
        missing = max(0, self.size - len(ready))
        ready.extend(make() for _ in range(missing))
        return missing

    def clear(self) -> None:
        """Drop every key made ahead (a forked child: they are its parent's)."""
        self._x25519.clear()
        self._mlkem.clear()
        self.wanted = 0
        self._pid = os.getpid()


def _new_x25519() -> tuple[x25519.X25519PrivateKey, bytes]:
    key = x25519.X25519PrivateKey.generate()
    return key, _x25519_public(key)


def _new_mlkem() -> tuple[mlkem.MLKEM768PrivateKey, bytes]:
    key = mlkem.MLKEM768PrivateKey.generate()
    return key, key.public_key().public_bytes_raw()


#: The process's reserve (every handshake of the process takes its keys here).
KEYS_AHEAD = KeyReserve()
if hasattr(os, "register_at_fork"):  # not on Windows (no fork there)
    os.register_at_fork(after_in_child=KEYS_AHEAD.clear)


# -- client side -----------------------------------------------------------------------


class KeyShare:
    """Client-side ephemeral key for one offered group.

    ``public`` is the ``key_exchange`` field of the ClientHello ``KeyShareEntry``;
    :meth:`shared_secret` consumes the ServerHello ``key_exchange`` for the same group.
    """

    __slots__ = ("_ec", "_mlkem", "_x25519", "group", "public")

    group: NamedGroup
    public: bytes

    def __init__(self, group: NamedGroup, x25519_of: KeyShare | None = None) -> None:
        self.group = group
        self._x25519: x25519.X25519PrivateKey | None = None
        self._ec: ec.EllipticCurvePrivateKey | None = None
        self._mlkem: mlkem.MLKEM768PrivateKey | None = None
        if group is NamedGroup.x25519 or group is NamedGroup.X25519MLKEM768:
            # draft-ietf-tls-hybrid-design §3.2: a client offering x25519 and a hybrid
            # with an X25519 component may use one ephemeral X25519 key for both.
            if x25519_of is not None and x25519_of._x25519 is not None:
                self._x25519 = x25519_of._x25519
                x25519_public = x25519_of.public[-_X25519_LEN:]  # its last 32 bytes
            else:
                self._x25519, x25519_public = KEYS_AHEAD.x25519()
            if group is NamedGroup.x25519:
                self.public = x25519_public
            else:
                # draft-ietf-tls-ecdhe-mlkem: ML-KEM encapsulation key first, then X25519.
                self._mlkem, encapsulation_key = KEYS_AHEAD.mlkem()
                self.public = encapsulation_key + x25519_public
        elif group in _EC_CURVES:
            self._ec = ec.generate_private_key(_EC_CURVES[group])
            self.public = _ec_public(self._ec)
        else:  # pragma: no cover - NamedGroup is closed
            raise ValueError(f"unsupported group {group!r}")

    def __repr__(self) -> str:
        return f"KeyShare(group={self.group.name}, public_len={len(self.public)})"

    def shared_secret(self, server_key_exchange: bytes) -> bytes:
        """Shared secret from the server's ``key_exchange``.

        Raises ``TlsAlertError(illegal_parameter)`` when the value is malformed.
        """
        peer = bytes(server_key_exchange)
        if self._mlkem is not None:
            assert self._x25519 is not None
            if len(peer) != _MLKEM768_CT_LEN + _X25519_LEN:
                raise _illegal("X25519MLKEM768 server share must be 1120 bytes")
            try:
                kem_secret = self._mlkem.decapsulate(peer[:_MLKEM768_CT_LEN])
            except ValueError:  # pragma: no cover - length already checked
                raise _illegal("invalid ML-KEM-768 ciphertext") from None
            return kem_secret + _x25519_exchange(self._x25519, peer[_MLKEM768_CT_LEN:])
        if self._x25519 is not None:
            return _x25519_exchange(self._x25519, peer)
        assert self._ec is not None
        return _ec_exchange(self.group, self._ec, peer)


def generate_key_share(group: NamedGroup, x25519_of: KeyShare | None = None) -> KeyShare:
    """Fresh ephemeral key share for ``group`` (client side, RFC 9846 §4.3.8).

    With ``x25519_of`` (a share of this ClientHello that holds an X25519 key: x25519 or
    X25519MLKEM768), an X25519 or X25519MLKEM768 share reuses its X25519 key instead of
    generating one, as draft-ietf-tls-hybrid-design §3.2 allows (one X25519 generation
    per handshake instead of two for our default offer). Only one of the two shares is
    ever completed (the server picks one group), so the secret is used once.
    """
    return KeyShare(_as_group(group), x25519_of)


# -- server side -----------------------------------------------------------------------


def server_key_exchange(group: NamedGroup, client_key_exchange: bytes) -> tuple[bytes, bytes]:
    """Server side of the exchange for the selected ``group``.

    Returns ``(server_key_exchange_bytes, shared_secret)``. Raises
    ``TlsAlertError(illegal_parameter)`` when the client's value is malformed.
    """
    group = _as_group(group)
    peer = bytes(client_key_exchange)
    if group is NamedGroup.x25519:
        key, x25519_public = KEYS_AHEAD.x25519()
        return x25519_public, _x25519_exchange(key, peer)
    if group is NamedGroup.X25519MLKEM768:
        if len(peer) != _MLKEM768_EK_LEN + _X25519_LEN:
            raise _illegal("X25519MLKEM768 client share must be 1216 bytes")
        try:
            # from_public_bytes performs the FIPS 203 encapsulation key check.
            encaps_key = mlkem.MLKEM768PublicKey.from_public_bytes(peer[:_MLKEM768_EK_LEN])
        except ValueError:
            raise _illegal("invalid ML-KEM-768 encapsulation key") from None
        kem_secret, ciphertext = encaps_key.encapsulate()
        key, x25519_public = KEYS_AHEAD.x25519()
        ecdh_secret = _x25519_exchange(key, peer[_MLKEM768_EK_LEN:])
        return ciphertext + x25519_public, kem_secret + ecdh_secret
    public = _ec_load_peer(group, peer)
    ec_key = ec.generate_private_key(_EC_CURVES[group])
    return _ec_public(ec_key), ec_key.exchange(ec.ECDH(), public)
