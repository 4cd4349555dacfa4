"""QUIC-LB connection IDs: routable server IDs in the CIDs a server issues.

Theory of operation
-------------------
draft-ietf-quic-load-balancers lets a server put a *server ID* into every connection ID
it issues, so that a load balancer — or the kernel's SO_REUSEPORT program of
:mod:`quic.reuseport_bpf` — routes a packet by its Destination Connection ID alone,
across migrations and NAT rebinding. The draft's text is not in ``/work/shared/specs``:
its sections are cited here by title (the numbers moved between revisions); only its
facts (bit layout, codepoints, lengths, the cipher construction and test vectors) are
used. The revision followed is **draft-ietf-quic-load-balancers-21** (the layout of the
``expand`` function dates from -19; the test vectors in tests/quic/test_quiclb.py are
that revision's).

Every format has the same shape (draft "CID format")::

    first octet | server ID (server_id_length bytes) | nonce (nonce_length bytes)

* First octet (draft "First CID Octet"): the three high bits are the *config
  rotation* codepoint (0..6 name a configuration; 0b111 marks an unroutable CID that
  a load balancer routes by its fallback: "Configuration Failover", "Unroutable
  Connection IDs"). The low five bits either self-encode the length of the CID
  *following* the first octet ("Length Self-Description"; so 0..19) or are random.
  It is never encrypted.
* Server ID: opaque bytes (not an integer: no byte order), at least 1 byte
  ("Configuration Agent Actions"); 1..15 here, as the draft's YANG model allows.
* Nonce: at least 4 bytes, from an injected ``os.urandom``-like source; server ID +
  nonce is at most 19 bytes so that the whole connection ID is at most 20 bytes
  (RFC 9000 §17.2).

Three algorithms fill the bytes after the first octet ("Server Actions"):

* no key — **plaintext** (:class:`PlaintextCidConfig`): server ID and nonce as they are;
* a 16-byte key and server ID + nonce exactly 16 bytes — **single pass**
  (:class:`SinglePassCidConfig`, "Special Case: Single Pass Encryption"): that block
  encrypted once with AES-128-ECB;
* a key and any other length (5..15, 17..19) — **four pass**
  (:class:`FourPassCidConfig`, "General Case: Four-Pass Encryption"): a four-round
  Feistel network whose round function is AES-128-ECB. The plaintext is split into two
  halves of ``half_len = ceil(len / 2)`` bytes; with an odd length the middle octet is
  shared — the left half keeps its high nibble (its last four bits cleared), the right
  half its low nibble (its first four bits cleared), and every round result is cleared
  the same way. Round ``pass`` (1..4) encrypts the block ``expand(len, pass, half)`` =
  ``half || zero bytes || len (1 octet) || pass (1 octet)`` (16 bytes) and XORs its
  first ``half_len`` bytes into the other half: right ^= F(left, 1); left ^= F(right, 2);
  right ^= F(left, 3); left ^= F(right, 4). Decryption runs the rounds backwards;
  finding the server ID needs only three of them when it lies within the left half.

:class:`QuicLbConfig` is the one type a server is configured with: config rotation,
its server ID, nonce length and an optional key choose the algorithm. Its
:meth:`QuicLbConfig.token_bytes` — like :meth:`WorkerCids.token_bytes` — has the shape
of the ``token_bytes: Callable[[int], bytes]`` that :class:`quic.endpoint.QuicEndpoint`,
:class:`quic.connection.QuicConnection` and :class:`quic.cid.ConnectionIdManager` use to
make connection IDs (a CID when asked for ``cid_length`` bytes, plain random bytes
otherwise); ``connection_id_length`` must then be the configuration's ``cid_length``.
So the handshake's Source CID, a Retry's Source CID and every NEW_CONNECTION_ID CID
carry the server ID. One caveat of that shape: a request for exactly ``cid_length``
bytes always gets a CID, so ``cid_length`` must differ from the other sizes a server
connection draws for values that must be unpredictable: 8, the PATH_CHALLENGE data
(RFC 9000 §8.2.1) — pywebtransport's ``ServerConfig`` refuses 8-byte CIDs. (Reset
tokens are derived from the CID by the endpoint, not drawn; a stateless reset's
random prefix may take the shape of a CID, which is harmless.)

:class:`WorkerCids` applies the format to ``--workers N`` on one host: the server ID
is an optional host prefix followed by one byte, the worker index, so that
``worker_of(cid)`` — and, for plaintext CIDs, the kernel program reading that one byte
— find the worker that owns a connection. With a key (``WorkerCids(..., key=)``) the
worker byte is encrypted: :attr:`WorkerCids.steerable` is then False (no kernel program
can read it; forwarding decrypts instead) and ``worker_of`` decrypts.

Pure: no I/O, no clock, no table (making or reading CIDs keeps no state); the
randomness is injected.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "KEY_LENGTH",
    "MAX_CID_LENGTH",
    "UNROUTABLE_CONFIG_ROTATION",
    "CidFormat",
    "FourPassCidConfig",
    "PlaintextCidConfig",
    "QuicLbConfig",
    "SinglePassCidConfig",
    "WorkerCids",
    "config_rotation_of",
    "is_unroutable",
    "make_cid_format",
    "make_unroutable_cid",
]

MAX_CID_LENGTH = 20  # RFC 9000 §17.2: a connection ID is at most 20 bytes
# draft-ietf-quic-load-balancers "Configuration Failover": 0b111 = unroutable
UNROUTABLE_CONFIG_ROTATION = 0b111
MIN_SERVER_ID_LENGTH = 1  # draft "Configuration Agent Actions" (and its YANG model): 1..15
MAX_SERVER_ID_LENGTH = 15
MIN_NONCE_LENGTH = 4  # same section: nonce length 4..18 bytes
MAX_NONCE_LENGTH = 18
KEY_LENGTH = 16  # draft "Configuration Agent Actions": an optional 16-octet key (AES-128)
_BLOCK = 16  # AES block
_LENGTH_MASK = 0x1F  # the low five bits of the first octet


def _check_rotation(config_rotation: int) -> None:
    if not 0 <= config_rotation < UNROUTABLE_CONFIG_ROTATION:
        raise ValueError(
            f"QUIC-LB config rotation must be 0..6, not {config_rotation} "
            '(0b111 = 7 is the unroutable codepoint: draft "Config Rotation")'
        )


def _check_lengths(server_id_length: int, nonce_length: int) -> None:
    if not MIN_SERVER_ID_LENGTH <= server_id_length <= MAX_SERVER_ID_LENGTH:
        raise ValueError(
            f"QUIC-LB server ID length must be 1..{MAX_SERVER_ID_LENGTH} bytes, "
            f"not {server_id_length}"
        )
    if not MIN_NONCE_LENGTH <= nonce_length <= MAX_NONCE_LENGTH:
        raise ValueError(
            f"QUIC-LB nonce length must be {MIN_NONCE_LENGTH}..{MAX_NONCE_LENGTH} bytes, "
            f"not {nonce_length}"
        )
    if 1 + server_id_length + nonce_length > MAX_CID_LENGTH:
        raise ValueError(
            f"QUIC-LB server ID ({server_id_length}) + nonce ({nonce_length}) bytes make a "
            f"{1 + server_id_length + nonce_length}-byte connection ID: at most 19 + the "
            "first octet = 20 bytes (RFC 9000 §17.2)"
        )


def _check_key(key: bytes) -> None:
    if len(key) != KEY_LENGTH:
        raise ValueError(f"the QUIC-LB key is 16 bytes (AES-128-ECB), not {len(key)}")


def _first_octet(rotation: int, self_encode: bool, cid_length: int, first_random: int) -> int:
    """draft "First CID Octet": config rotation, then the length or random bits."""
    low = (cid_length - 1) if self_encode else first_random
    return (rotation << 5) | (low & _LENGTH_MASK)


def _is_own_shape(cid: bytes, rotation: int, self_encode: bool, cid_length: int) -> bool:
    """Same length and config rotation (and self-encoded length, if used)."""
    if len(cid) != cid_length or cid[0] >> 5 != rotation:
        return False
    return not self_encode or cid[0] & _LENGTH_MASK == cid_length - 1


class CidFormat(Protocol):
    """What every QUIC-LB algorithm offers (plaintext, single pass, four pass)."""

    @property
    def config_rotation(self) -> int: ...
    @property
    def server_id_length(self) -> int: ...
    @property
    def nonce_length(self) -> int: ...
    @property
    def cid_length(self) -> int: ...

    def encode(self, server_id: bytes, nonce: bytes, first_random: int = 0) -> bytes: ...
    def generate(self, server_id: bytes, random_bytes: Callable[[int], bytes]) -> bytes: ...
    def decode(self, cid: bytes) -> tuple[bytes, bytes] | None: ...
    def server_id_of(self, cid: bytes) -> bytes | None: ...


def config_rotation_of(cid: bytes) -> int | None:
    """The config rotation codepoint of ``cid`` ("Config Rotation"), None for an empty CID."""
    return cid[0] >> 5 if cid else None


def is_unroutable(cid: bytes) -> bool:
    """True when ``cid`` carries the unroutable codepoint 0b111, or is
    empty (a zero-length CID has no first octet to route on) ("Unroutable Connection IDs")."""
    return not cid or cid[0] >> 5 == UNROUTABLE_CONFIG_ROTATION


def make_unroutable_cid(length: int, random_bytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """A random connection ID of ``length`` bytes with config rotation 0b111 (draft
    "Configuration Failover": what a server issues without a valid configuration; such
    CIDs MUST self-encode their length, so the low five bits are ``length - 1``)."""
    if not 1 <= length <= MAX_CID_LENGTH:
        raise ValueError(f"connection ID length {length} not in 1..{MAX_CID_LENGTH}")
    raw = random_bytes(length)
    return bytes([(UNROUTABLE_CONFIG_ROTATION << 5) | (length - 1)]) + raw[1:]


@dataclass(frozen=True, slots=True)
class PlaintextCidConfig:
    """One plaintext QUIC-LB configuration (draft "CID format", no key).

    ``config_rotation``: 0..6 (0b111 is the unroutable codepoint).
    ``server_id_length``: 1..15 bytes; ``nonce_length``: 4..18 bytes; together at most
    19, so the connection ID (one more octet) is at most 20 bytes (RFC 9000 §17.2).
    ``self_encode_length``: put the length of the CID after the first octet in its low
    five bits ("Length Self-Description"), else those bits are random."""

    config_rotation: int
    server_id_length: int
    nonce_length: int
    self_encode_length: bool = True

    def __post_init__(self) -> None:
        _check_rotation(self.config_rotation)
        _check_lengths(self.server_id_length, self.nonce_length)

    @property
    def cid_length(self) -> int:
        """The length of every connection ID of this configuration."""
        return 1 + self.server_id_length + self.nonce_length

    def encode(self, server_id: bytes, nonce: bytes, first_random: int = 0) -> bytes:
        """The connection ID for ``server_id`` and ``nonce``. ``first_random`` gives
        the low five bits of the first octet when the length is not self-encoded."""
        if len(server_id) != self.server_id_length:
            raise ValueError(f"server ID must be {self.server_id_length} bytes")
        if len(nonce) != self.nonce_length:
            raise ValueError(f"nonce must be {self.nonce_length} bytes")
        first = _first_octet(
            self.config_rotation, self.self_encode_length, self.cid_length, first_random
        )
        return bytes([first]) + server_id + nonce

    def generate(self, server_id: bytes, random_bytes: Callable[[int], bytes]) -> bytes:
        """A fresh connection ID for ``server_id``: random nonce (and random low bits
        of the first octet when the length is not self-encoded)."""
        raw = random_bytes(1 + self.nonce_length)
        return self.encode(server_id, raw[1:], raw[0])

    def decode(self, cid: bytes) -> tuple[bytes, bytes] | None:
        """``(server_id, nonce)`` of ``cid`` when it belongs to this configuration
        (same config rotation, length, and self-encoded length if used); else None."""
        if not _is_own_shape(cid, self.config_rotation, self.self_encode_length, self.cid_length):
            return None
        split = 1 + self.server_id_length
        return cid[1:split], cid[split:]

    def server_id_of(self, cid: bytes) -> bytes | None:
        """The server ID in ``cid``, or None when it is not of this configuration."""
        decoded = self.decode(cid)
        return decoded[0] if decoded is not None else None


class SinglePassCidConfig:
    """One single-pass encrypted QUIC-LB configuration (draft "Special Case: Single
    Pass Encryption"): server ID + nonce is one 16-byte AES block, encrypted with
    AES-128-ECB under ``key``; the first octet stays in the clear (config rotation,
    length). ``server_id_length`` 1..12 (the nonce is then 4..15 bytes)."""

    __slots__ = (
        "_decrypt",
        "_encrypt",
        "config_rotation",
        "self_encode_length",
        "server_id_length",
    )

    BLOCK = _BLOCK  # AES block: server ID + nonce
    cid_length = 1 + _BLOCK

    def __init__(
        self,
        config_rotation: int,
        server_id_length: int,
        key: bytes,
        self_encode_length: bool = True,
    ) -> None:
        _check_rotation(config_rotation)
        if not MIN_SERVER_ID_LENGTH <= server_id_length <= self.BLOCK - MIN_NONCE_LENGTH:
            raise ValueError("single-pass server ID length must be 1..12")
        _check_key(key)
        self.config_rotation = config_rotation
        self.server_id_length = server_id_length
        self.self_encode_length = self_encode_length
        cipher = Cipher(algorithms.AES(key), modes.ECB())
        # ECB contexts keep no state between whole blocks: one of each serves every CID
        self._encrypt = cipher.encryptor()
        self._decrypt = cipher.decryptor()

    @property
    def nonce_length(self) -> int:
        return self.BLOCK - self.server_id_length

    def encode(self, server_id: bytes, nonce: bytes, first_random: int = 0) -> bytes:
        """The connection ID for ``server_id`` and ``nonce`` (lengths checked)."""
        if len(server_id) != self.server_id_length or len(nonce) != self.nonce_length:
            raise ValueError("server ID + nonce must fill the 16-byte block exactly")
        first = _first_octet(
            self.config_rotation, self.self_encode_length, self.cid_length, first_random
        )
        return bytes([first]) + self._encrypt.update(server_id + nonce)

    def generate(self, server_id: bytes, random_bytes: Callable[[int], bytes]) -> bytes:
        """A fresh connection ID for ``server_id`` (random nonce and low bits)."""
        raw = random_bytes(1 + self.nonce_length)
        return self.encode(server_id, raw[1:], raw[0])

    def decode(self, cid: bytes) -> tuple[bytes, bytes] | None:
        """``(server_id, nonce)`` of ``cid`` when it has this configuration's
        rotation and length; else None."""
        if not _is_own_shape(cid, self.config_rotation, self.self_encode_length, self.cid_length):
            return None
        block = self._decrypt.update(cid[1:])
        return block[: self.server_id_length], block[self.server_id_length :]

    def server_id_of(self, cid: bytes) -> bytes | None:
        """The server ID in ``cid``, or None when it is not of this configuration."""
        decoded = self.decode(cid)
        return decoded[0] if decoded is not None else None


class FourPassCidConfig:
    """One four-pass encrypted QUIC-LB configuration (draft "General Case: Four-Pass
    Encryption"): for a key and server ID + nonce of any length but 16 (5..15 or
    17..19 bytes), a four-round Feistel network with AES-128-ECB as its round function
    (see the module docstring). The first octet stays in the clear."""

    __slots__ = (
        "_aes",
        "_left_mask",
        "_odd",
        "_right_mask",
        "_shift",
        "config_rotation",
        "half_length",
        "nonce_length",
        "self_encode_length",
        "server_id_length",
    )

    def __init__(
        self,
        config_rotation: int,
        server_id_length: int,
        nonce_length: int,
        key: bytes,
        self_encode_length: bool = True,
    ) -> None:
        _check_rotation(config_rotation)
        _check_lengths(server_id_length, nonce_length)
        if server_id_length + nonce_length == _BLOCK:
            raise ValueError("server ID + nonce of 16 bytes is single pass (SinglePassCidConfig)")
        _check_key(key)
        self.config_rotation = config_rotation
        self.server_id_length = server_id_length
        self.nonce_length = nonce_length
        self.self_encode_length = self_encode_length
        length = server_id_length + nonce_length
        #: draft "Useful functions": half_len = plaintext_len / 2, rounded up
        self.half_length = (length + 1) // 2
        self._odd = length & 1
        # the halves as integers: an odd length shares the middle octet — the left half
        # keeps its high nibble (last four bits cleared), the right half its low nibble
        self._shift = 8 * self.half_length - 4 * self._odd  # bits of the right half
        self._right_mask = (1 << self._shift) - 1
        self._left_mask = ((1 << (8 * self.half_length)) - 1) ^ (0xF if self._odd else 0)
        self._aes = Cipher(algorithms.AES(key), modes.ECB()).encryptor()

    @property
    def cid_length(self) -> int:
        return 1 + self.server_id_length + self.nonce_length

    def _round(self, half: int, pass_number: int) -> int:
        """``truncate(AES_ECB(key, expand(plaintext_len, pass, half)), half_len)``."""
        n = self.half_length
        block = (
            half.to_bytes(n)
            + bytes(14 - n)
            + bytes((self.server_id_length + self.nonce_length, pass_number))
        )
        return int.from_bytes(self._aes.update(block)[:n])

    def _split(self, data: bytes) -> tuple[int, int]:
        whole = int.from_bytes(data)
        return (whole >> self._shift) << (4 * self._odd), whole & self._right_mask

    def _join(self, left: int, right: int) -> bytes:
        whole = ((left >> (4 * self._odd)) << self._shift) | right
        return whole.to_bytes(self.server_id_length + self.nonce_length)

    def encrypt(self, plaintext: bytes) -> bytes:
        """Server ID + nonce → the bytes after the first octet (four passes)."""
        left, right = self._split(plaintext)
        right = (right ^ self._round(left, 1)) & self._right_mask
        left = (left ^ self._round(right, 2)) & self._left_mask
        right = (right ^ self._round(left, 3)) & self._right_mask
        left = (left ^ self._round(right, 4)) & self._left_mask
        return self._join(left, right)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """The bytes after the first octet → server ID + nonce (the passes reversed)."""
        left, right = self._split(ciphertext)
        left = (left ^ self._round(right, 4)) & self._left_mask
        right = (right ^ self._round(left, 3)) & self._right_mask
        left = (left ^ self._round(right, 2)) & self._left_mask
        right = (right ^ self._round(left, 1)) & self._right_mask
        return self._join(left, right)

    def encode(self, server_id: bytes, nonce: bytes, first_random: int = 0) -> bytes:
        """The connection ID for ``server_id`` and ``nonce`` (lengths checked)."""
        if len(server_id) != self.server_id_length:
            raise ValueError(f"server ID must be {self.server_id_length} bytes")
        if len(nonce) != self.nonce_length:
            raise ValueError(f"nonce must be {self.nonce_length} bytes")
        first = _first_octet(
            self.config_rotation, self.self_encode_length, self.cid_length, first_random
        )
        return bytes([first]) + self.encrypt(server_id + nonce)

    def generate(self, server_id: bytes, random_bytes: Callable[[int], bytes]) -> bytes:
        """A fresh connection ID for ``server_id`` (random nonce and low bits)."""
        raw = random_bytes(1 + self.nonce_length)
        return self.encode(server_id, raw[1:], raw[0])

    def decode(self, cid: bytes) -> tuple[bytes, bytes] | None:
        """``(server_id, nonce)`` of ``cid`` when it has this configuration's rotation
        and length; else None."""
        if not _is_own_shape(cid, self.config_rotation, self.self_encode_length, self.cid_length):
            return None
        plaintext = self.decrypt(cid[1:])
        return plaintext[: self.server_id_length], plaintext[self.server_id_length :]

    def server_id_of(self, cid: bytes) -> bytes | None:
        """The server ID in ``cid``, or None when it is not of this configuration. Three
        passes when the server ID lies within the left half (draft "Load Balancer
        Actions"), four otherwise."""
        if not _is_own_shape(cid, self.config_rotation, self.self_encode_length, self.cid_length):
            return None
        left, right = self._split(cid[1:])
        left = (left ^ self._round(right, 4)) & self._left_mask
        right = (right ^ self._round(left, 3)) & self._right_mask
        left = (left ^ self._round(right, 2)) & self._left_mask
        if 8 * self.server_id_length > self._shift:  # reaches into the right half
            right = (right ^ self._round(left, 1)) & self._right_mask
        return self._join(left, right)[: self.server_id_length]


def make_cid_format(
    config_rotation: int,
    server_id_length: int,
    nonce_length: int,
    key: bytes | None = None,
    self_encode_length: bool = True,
) -> PlaintextCidConfig | SinglePassCidConfig | FourPassCidConfig:
    """The algorithm the draft prescribes for these parameters ("Server Actions"):
    plaintext without a key; with one, single pass when server ID + nonce is 16 bytes,
    else four pass. Raises ValueError (with the reason) for a configuration the draft
    does not allow."""
    _check_rotation(config_rotation)
    _check_lengths(server_id_length, nonce_length)
    if key is None:
        return PlaintextCidConfig(
            config_rotation, server_id_length, nonce_length, self_encode_length
        )
    _check_key(key)
    if server_id_length + nonce_length == _BLOCK:
        return SinglePassCidConfig(config_rotation, server_id_length, key, self_encode_length)
    return FourPassCidConfig(
        config_rotation, server_id_length, nonce_length, key, self_encode_length
    )


class QuicLbConfig:
    """The QUIC-LB configuration of one server: what its load balancer was configured
    with (draft "Configuration Agent Actions").

    ``config_rotation`` 0..6; ``server_id`` this server's ID (1..15 bytes);
    ``nonce_length`` 4..18 bytes (server ID + nonce at most 19); ``key`` None
    (plaintext) or 16 bytes (single pass when server ID + nonce is 16 bytes, else four
    pass). Every CID self-encodes its length unless ``self_encode_length=False``.
    Bad values raise ValueError naming the rule."""

    __slots__ = ("_random", "cid_format", "key", "server_id")

    def __init__(
        self,
        config_rotation: int,
        server_id: bytes,
        nonce_length: int,
        key: bytes | None = None,
        *,
        self_encode_length: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.cid_format: PlaintextCidConfig | SinglePassCidConfig | FourPassCidConfig = (
            make_cid_format(config_rotation, len(server_id), nonce_length, key, self_encode_length)
        )
        self.server_id = bytes(server_id)
        self.key = key
        self._random = random_bytes

    def __repr__(self) -> str:
        return (
            f"QuicLbConfig(config_rotation={self.config_rotation}, "
            f"server_id={self.server_id.hex()}, nonce_length={self.nonce_length}, "
            f"algorithm={self.algorithm!r})"  # never the key
        )

    @property
    def config_rotation(self) -> int:
        return self.cid_format.config_rotation

    @property
    def nonce_length(self) -> int:
        return self.cid_format.nonce_length

    @property
    def cid_length(self) -> int:
        """What ``QuicConfiguration.connection_id_length`` must be set to."""
        return self.cid_format.cid_length

    @property
    def algorithm(self) -> Literal["plaintext", "single-pass", "four-pass"]:
        if isinstance(self.cid_format, PlaintextCidConfig):
            return "plaintext"
        return "single-pass" if isinstance(self.cid_format, SinglePassCidConfig) else "four-pass"

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    def generate(self, random_bytes: Callable[[int], bytes] | None = None) -> bytes:
        """A fresh connection ID naming this server (``random_bytes``: the source of the
        nonce, default the one given at construction)."""
        return self.cid_format.generate(self.server_id, random_bytes or self._random)

    def server_id_of(self, cid: bytes) -> bytes | None:
        """The server ID a load balancer with this configuration reads from ``cid``
        (None: not of this configuration — other rotation or length)."""
        return self.cid_format.server_id_of(cid)

    def is_ours(self, cid: bytes) -> bool:
        """True when ``cid`` routes to this server."""
        return self.cid_format.server_id_of(cid) == self.server_id

    def token_bytes(self, n: int) -> bytes:
        """Drop-in for the ``token_bytes(n)`` of :mod:`quic.endpoint` / :mod:`quic.cid`:
        a connection ID of this server when ``n`` is :attr:`cid_length`, else ``n``
        random bytes."""
        if n == self.cid_format.cid_length:
            return self.generate()
        return self._random(n)


class WorkerCids:
    """Connection IDs that name one of ``workers`` processes on one host.

    The server ID is ``host_id`` (may be empty) followed by one byte, the worker index
    (so at most 256 workers). :attr:`worker_offset` is where that byte sits in the
    plaintext connection ID — the ``k`` for :func:`quic.reuseport_bpf.build_worker_program`.
    With ``key`` (16 bytes) the CIDs are encrypted (single or four pass, see
    :func:`make_cid_format`): :attr:`steerable` is then False — no kernel program can
    read the worker byte; forwarding between workers decrypts it with
    :meth:`worker_of` instead.
    """

    __slots__ = ("_random", "config", "host_id", "worker", "workers")

    def __init__(
        self,
        workers: int,
        worker: int,
        host_id: bytes = b"",
        config_rotation: int = 0,
        nonce_length: int = 7,
        random_bytes: Callable[[int], bytes] = os.urandom,
        *,
        key: bytes | None = None,
    ) -> None:
        if not 1 <= workers <= 256:
            raise ValueError("workers must be 1..256 (one byte names the worker)")
        if not 0 <= worker < workers:
            raise ValueError(f"worker {worker} not in 0..{workers - 1}")
        self.config: PlaintextCidConfig | SinglePassCidConfig | FourPassCidConfig = make_cid_format(
            config_rotation, len(host_id) + 1, nonce_length, key
        )
        self.host_id = host_id
        self.workers = workers
        self.worker = worker
        self._random = random_bytes

    @property
    def cid_length(self) -> int:
        """What ``QuicConfiguration.connection_id_length`` must be set to."""
        return self.config.cid_length

    @property
    def worker_offset(self) -> int:
        """Offset of the worker byte inside the (plaintext) connection ID."""
        return 1 + len(self.host_id)

    @property
    def steerable(self) -> bool:
        """True when the worker byte is in the clear at :attr:`worker_offset`, so the
        reuseport program can steer by it; False for encrypted CIDs."""
        return isinstance(self.config, PlaintextCidConfig)

    def new_cid(self) -> bytes:
        """A fresh connection ID that names this worker."""
        return self.config.generate(self.host_id + bytes([self.worker]), self._random)

    def token_bytes(self, n: int) -> bytes:
        """Drop-in for the ``token_bytes(n)`` of :mod:`quic.cid` / :mod:`quic.connection`:
        a connection ID of this worker when ``n`` is the CID length, else ``n`` random
        bytes (reset tokens, keys and other random values keep their randomness)."""
        if n == self.config.cid_length:
            return self.new_cid()
        return self._random(n)

    def worker_of(self, cid: bytes) -> int | None:
        """The worker that issued ``cid`` (decrypting it when encrypted); None when it
        is not one of ours (other configuration, other host, unroutable, or an index
        beyond ``workers``)."""
        server_id = self.config.server_id_of(cid)
        if server_id is None or server_id[:-1] != self.host_id:
            return None
        index = server_id[-1]
        return index if index < self.workers else None
