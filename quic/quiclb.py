"""QUIC-LB connection IDs: routable server IDs in the CIDs a server issues.

Theory of operation
-------------------
draft-ietf-quic-load-balancers (-19/-21) lets a server put a *server ID* into every
connection ID it issues, so that a load balancer — or the kernel's SO_REUSEPORT
program of :mod:`quic.reuseport_bpf` — routes a packet by its Destination Connection
ID alone, across migrations and NAT rebinding. The draft's text is not in
``/work/shared/specs``: its sections are cited here by title (the numbers moved
between revisions); only its facts (bit layout, codepoints, lengths) are used.

The plaintext format (draft "Plaintext CID Algorithm"), the one made here::

    first octet | server ID (server_id_length bytes) | nonce (nonce_length bytes)

* First octet (draft "First CID Octet"): the three high bits are the *config
  rotation* codepoint (0..6 name a configuration; 0b111 marks an unroutable CID that
  a load balancer routes by its fallback: "Configuration Failover", "Unroutable
  Connection IDs"). The low five bits either self-encode the length of the CID
  *following* the first octet ("Length Self-Description"; so 0..19) or are random.
* Server ID: opaque bytes (not an integer: no byte order), 1..15 bytes
  ("Configuration Agent Actions").
* Nonce: random bytes, 4..18 bytes (same section), from an injected
  ``os.urandom``-like source; server ID + nonce is at most 19 bytes so that the whole
  connection ID is at most 20 bytes (RFC 9000 §17.2).

Of the encrypted formats, :class:`SinglePassCidConfig` makes the single-pass one
(draft "Encrypted Connection ID Algorithm", server ID + nonce exactly 16 bytes: that
block is encrypted with AES-128-ECB under the configuration's key; checked against
the draft's block-cipher test vectors). The four-pass Feistel format for other
lengths is not implemented.

:class:`WorkerCids` applies the format to ``--workers N`` on one host: the server ID
is an optional host prefix followed by one byte, the worker index, so that
``worker_of(cid)`` — and the kernel program, reading that one byte — find the worker
that owns a connection. Its :meth:`WorkerCids.token_bytes` has the shape of the
``token_bytes: Callable[[int], bytes]`` that :class:`quic.endpoint.QuicEndpoint`,
:class:`quic.connection.QuicConnection` and :class:`quic.cid.ConnectionIdManager`
use to make connection IDs (a CID when asked for ``cid_length`` bytes, plain random
bytes otherwise); ``connection_id_length`` must then be :attr:`WorkerCids.cid_length`.

Pure: no I/O, no clock; the randomness is injected.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "MAX_CID_LENGTH",
    "UNROUTABLE_CONFIG_ROTATION",
    "PlaintextCidConfig",
    "SinglePassCidConfig",
    "WorkerCids",
    "config_rotation_of",
    "is_unroutable",
    "make_unroutable_cid",
]

MAX_CID_LENGTH = 20  # RFC 9000 §17.2: a connection ID is at most 20 bytes
# draft-ietf-quic-load-balancers "Configuration Failover": 0b111 = unroutable
UNROUTABLE_CONFIG_ROTATION = 0b111
MIN_SERVER_ID_LENGTH = 1  # draft "Configuration Agent Actions": server ID 1..15
MAX_SERVER_ID_LENGTH = 15
MIN_NONCE_LENGTH = 4  # same section: nonce length 4..18 bytes
MAX_NONCE_LENGTH = 18
_LENGTH_MASK = 0x1F  # the low five bits of the first octet


def config_rotation_of(cid: bytes) -> int | None:
    """The config rotation codepoint of ``cid`` ("Config Rotation"), None for an empty CID."""
    return cid[0] >> 5 if cid else None


def is_unroutable(cid: bytes) -> bool:
    """True when ``cid`` carries the unroutable codepoint 0b111, or is
    empty (a zero-length CID has no first octet to route on) ("Unroutable Connection IDs")."""
    return not cid or cid[0] >> 5 == UNROUTABLE_CONFIG_ROTATION


def make_unroutable_cid(length: int, random_bytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """A random connection ID of ``length`` bytes with config rotation 0b111 (draft
    "Configuration Failover": what a server issues without a valid configuration)."""
    if not 1 <= length <= MAX_CID_LENGTH:
        raise ValueError(f"connection ID length {length} not in 1..{MAX_CID_LENGTH}")
    raw = random_bytes(length)
    return bytes([(UNROUTABLE_CONFIG_ROTATION << 5) | (raw[0] & _LENGTH_MASK)]) + raw[1:]


@dataclass(frozen=True, slots=True)
class PlaintextCidConfig:
    """One plaintext QUIC-LB configuration (draft "Plaintext CID Algorithm").

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
        if not 0 <= self.config_rotation < UNROUTABLE_CONFIG_ROTATION:
            raise ValueError("config rotation must be 0..6 (0b111 is unroutable)")
        if not MIN_SERVER_ID_LENGTH <= self.server_id_length <= MAX_SERVER_ID_LENGTH:
            raise ValueError(f"server ID length must be 1..{MAX_SERVER_ID_LENGTH}")
        if not MIN_NONCE_LENGTH <= self.nonce_length <= MAX_NONCE_LENGTH:
            raise ValueError(f"nonce length must be {MIN_NONCE_LENGTH}..{MAX_NONCE_LENGTH}")
        if self.cid_length > MAX_CID_LENGTH:
            raise ValueError("server ID + nonce longer than 19 bytes (RFC 9000 §17.2)")

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
        low = (self.cid_length - 1) if self.self_encode_length else first_random
        return bytes([(self.config_rotation << 5) | (low & _LENGTH_MASK)]) + server_id + nonce

    def generate(self, server_id: bytes, random_bytes: Callable[[int], bytes]) -> bytes:
        """A fresh connection ID for ``server_id``: random nonce (and random low bits
        of the first octet when the length is not self-encoded)."""
        raw = random_bytes(1 + self.nonce_length)
        return self.encode(server_id, raw[1:], raw[0])

    def decode(self, cid: bytes) -> tuple[bytes, bytes] | None:
        """``(server_id, nonce)`` of ``cid`` when it belongs to this configuration
        (same config rotation, length, and self-encoded length if used); else None."""
        if len(cid) != self.cid_length or cid[0] >> 5 != self.config_rotation:
            return None
        if self.self_encode_length and cid[0] & _LENGTH_MASK != self.cid_length - 1:
            return None
        split = 1 + self.server_id_length
        return cid[1:split], cid[split:]

    def server_id_of(self, cid: bytes) -> bytes | None:
        """The server ID in ``cid``, or None when it is not of this configuration."""
        decoded = self.decode(cid)
        return decoded[0] if decoded is not None else None


class SinglePassCidConfig:
    """One single-pass encrypted QUIC-LB configuration (draft "Encrypted Connection ID
    Algorithm"): server ID + nonce is one 16-byte AES block, encrypted with AES-128-ECB
    under ``key``; the first octet stays in the clear (config rotation, length).
    ``server_id_length`` 1..12 (the nonce is then 4..15 bytes)."""

    __slots__ = ("_cipher", "config_rotation", "self_encode_length", "server_id_length")

    BLOCK = 16  # AES block: server ID + nonce
    cid_length = 1 + BLOCK

    def __init__(
        self,
        config_rotation: int,
        server_id_length: int,
        key: bytes,
        self_encode_length: bool = True,
    ) -> None:
        if not 0 <= config_rotation < UNROUTABLE_CONFIG_ROTATION:
            raise ValueError("config rotation must be 0..6 (0b111 is unroutable)")
        if not MIN_SERVER_ID_LENGTH <= server_id_length <= self.BLOCK - MIN_NONCE_LENGTH:
            raise ValueError("single-pass server ID length must be 1..12")
        if len(key) != 16:
            raise ValueError("the key is 16 bytes (AES-128)")
        self.config_rotation = config_rotation
        self.server_id_length = server_id_length
        self.self_encode_length = self_encode_length
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())

    @property
    def nonce_length(self) -> int:
        return self.BLOCK - self.server_id_length

    def _first_octet(self, first_random: int) -> int:
        low = (self.cid_length - 1) if self.self_encode_length else first_random
        return (self.config_rotation << 5) | (low & _LENGTH_MASK)

    def encode(self, server_id: bytes, nonce: bytes, first_random: int = 0) -> bytes:
        """The connection ID for ``server_id`` and ``nonce`` (lengths checked)."""
        if len(server_id) != self.server_id_length or len(nonce) != self.nonce_length:
            raise ValueError("server ID + nonce must fill the 16-byte block exactly")
        block = self._cipher.encryptor().update(server_id + nonce)
        return bytes([self._first_octet(first_random)]) + block

    def generate(self, server_id: bytes, random_bytes: Callable[[int], bytes]) -> bytes:
        """A fresh connection ID for ``server_id`` (random nonce and low bits)."""
        raw = random_bytes(1 + self.nonce_length)
        return self.encode(server_id, raw[1:], raw[0])

    def decode(self, cid: bytes) -> tuple[bytes, bytes] | None:
        """``(server_id, nonce)`` of ``cid`` when it has this configuration's
        rotation and length; else None."""
        if len(cid) != self.cid_length or cid[0] >> 5 != self.config_rotation:
            return None
        if self.self_encode_length and cid[0] & _LENGTH_MASK != self.cid_length - 1:
            return None
        block = self._cipher.decryptor().update(cid[1:])
        return block[: self.server_id_length], block[self.server_id_length :]

    def server_id_of(self, cid: bytes) -> bytes | None:
        """The server ID in ``cid``, or None when it is not of this configuration."""
        decoded = self.decode(cid)
        return decoded[0] if decoded is not None else None


class WorkerCids:
    """Connection IDs that name one of ``workers`` processes on one host.

    The server ID is ``host_id`` (may be empty) followed by one byte, the worker index
    (so at most 256 workers). :attr:`worker_offset` is where that byte sits in the
    connection ID — the ``k`` for :func:`quic.reuseport_bpf.build_worker_program`.
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
    ) -> None:
        if not 1 <= workers <= 256:
            raise ValueError("workers must be 1..256 (one byte names the worker)")
        if not 0 <= worker < workers:
            raise ValueError(f"worker {worker} not in 0..{workers - 1}")
        self.config = PlaintextCidConfig(config_rotation, len(host_id) + 1, nonce_length)
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
        """Offset of the worker byte inside the connection ID."""
        return 1 + len(self.host_id)

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
        """The worker that issued ``cid``; None when it is not one of ours (other
        configuration, other host, unroutable, or an index beyond ``workers``)."""
        server_id = self.config.server_id_of(cid)
        if server_id is None or server_id[:-1] != self.host_id:
            return None
        index = server_id[-1]
        return index if index < self.workers else None
