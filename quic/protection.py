"""QUIC packet protection: keys, AEAD, header protection, key update, Retry tags.

Theory of operation
-------------------
Every packet other than Version Negotiation and Retry is protected in two steps
(RFC 9001 §5):

1. **AEAD** (§5.3). The payload is encrypted with the suite's AEAD under a key and IV
   derived from a traffic secret with HKDF-Expand-Label (§5.1; labels "quic key",
   "quic iv", or "quicv2 key", "quicv2 iv" for QUIC v2, RFC 9369 §3.3.2). The nonce is
   the IV XOR the full packet number, left-padded; the associated data is the header
   up to and including the *unprotected* packet number.
2. **Header protection** (§5.4). A 16-byte sample of ciphertext, taken 4 bytes after
   the start of the Packet Number field, is turned into a 5-byte mask by AES-ECB or raw
   ChaCha20 under the "quic hp" key. The mask hides the low 4 (long header) or 5
   (short header) bits of the first byte and the Packet Number field.

A :class:`PacketProtector` does both for one direction at one encryption level; the
caller hands it the header exactly as built by the header encoder (first byte already
carrying the Packet Number Length bits and, for 1-RTT, the Key Phase bit; the
truncated packet number at its end), the plaintext payload and the full packet number.
The payload must be long enough for the sample (:func:`min_payload_length`), and a
long header's Length field must already count the packet number, payload and the
16-byte tag (:data:`AEAD_TAG_LENGTH`).

A :class:`PacketUnprotector` reverses it: :meth:`~PacketUnprotector.unprotect_header`
removes header protection and recovers the full packet number,
:meth:`~PacketUnprotector.decrypt_payload` authenticates and decrypts. They are
separate so that a 1-RTT receiver can read the Key Phase bit before choosing which
generation of keys to decrypt with (§6); :meth:`~PacketUnprotector.decrypt_packet`
does both. Any failure (packet too short to sample, bad tag) raises
:class:`DecryptionError`, which is *not* a connection error: the packet is dropped
(§5.3, §9.5).

Key update (§6.1): ``next_generation()`` derives the next secret with the "quic ku"
label and returns a new object with the new AEAD key and IV and the *same* header
protection key, and the Key Phase bit flipped.

AEAD limits (§6.6): each protector counts the packets it encrypted against the suite's
confidentiality limit, each unprotector the packets that failed authentication; the
integrity limit applies to the connection, which sums the counters of all its keys.

Initial keys (§5.2, RFC 9369 §3.3.1) come from :func:`initial_secrets`; Retry packets
carry an integrity tag (§5.8, RFC 9369 §3.3.3) computed by :func:`retry_integrity_tag`.
The key derivations live in :mod:`quic.packet_keys`, the Retry tag in
:mod:`quic.retry_integrity` (both re-exported here).

Per packet the hot path allocates only what the ``cryptography`` API forces (the AEAD
output and the mask) plus the header copy: the AEAD object and the header protection
cipher context (AES-ECB, or ChaCha20 with its nonce reset per packet) are built once
per key, and the IV is kept as an int. 1-RTT packets, the bulk of the traffic, go
through :meth:`PacketProtector.encrypt_short`, which builds the short header itself
instead of having it encoded by the caller and re-parsed here. (``AESGCM.encrypt_into``
into a preallocated datagram buffer was measured and not kept: for ~1.4 kB packets the
zeroed bytearray, the memoryviews and the final ``bytes`` copy cost more than the one
copy it saves.)

On the receive side 1-RTT packets go through :meth:`PacketUnprotector.open_short`:
header protection off, the packet number recovered (RFC 9000 Appendix A.3, inline) and
the payload decrypted in one call, or ``None`` for the payload when the Key Phase bit
is not this key's (the caller then tries the other generation, RFC 9001 §6). A batch's run of
in-order packets of one key phase goes through :meth:`PacketUnprotector.open_short_run`,
one call for the run; it stops before any packet it does not take, which the caller
reads with ``open_short``.

After a successful decryption the caller still checks the Reserved Bits of the plain
header (RFC 9000 §17.2, §17.3.1: non-zero is a PROTOCOL_VIOLATION) and, for 1-RTT,
the key phase rules of RFC 9001 §6; this module only knows keys.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from itertools import islice
from operator import itemgetter

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from quic.packet_keys import (  # here before quic.packet_keys had them: kept
    INITIAL_SALT,
    IV_LENGTH,
    derive_packet_keys,
    initial_secrets,
    next_key_phase_secret,
)
from quic.packet_number import decode_packet_number
from quic.retry_integrity import (  # here before quic.retry_integrity had them: kept
    RETRY_INTEGRITY_TAG_LENGTH,
    append_retry_integrity_tag,
    retry_integrity_tag,
    retry_pseudo_packet,
    verify_retry_integrity,
)
from quic.tls.suites import CipherSuite

__all__ = [
    "AEAD_TAG_LENGTH",
    "CONFIDENTIALITY_LIMIT",
    "INITIAL_SALT",
    "INTEGRITY_LIMIT",
    "IV_LENGTH",
    "RETRY_INTEGRITY_TAG_LENGTH",
    "SAMPLE_LENGTH",
    "SAMPLE_OFFSET",
    "BytesLike",
    "DecryptionError",
    "HeaderProtection",
    "PacketProtector",
    "PacketUnprotector",
    "append_retry_integrity_tag",
    "derive_packet_keys",
    "initial_keys",
    "initial_secrets",
    "min_payload_length",
    "next_key_phase_secret",
    "retry_integrity_tag",
    "retry_pseudo_packet",
    "verify_retry_integrity",
]

BytesLike = bytes | bytearray | memoryview

#: All suites usable with QUIC have a 16-byte tag (RFC 9001 §5.3).
AEAD_TAG_LENGTH = 16
#: Header protection sample length (RFC 9001 §5.4.2-§5.4.4).
SAMPLE_LENGTH = 16
#: The sample starts this many bytes after the start of the Packet Number field
#: (RFC 9001 §5.4.2: the Packet Number field is assumed to be 4 bytes long).
SAMPLE_OFFSET = 4

#: Confidentiality limit: packets encrypted under one key (RFC 9001 §6.6).
CONFIDENTIALITY_LIMIT: dict[CipherSuite, int] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: 1 << 23,
    CipherSuite.TLS_AES_256_GCM_SHA384: 1 << 23,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: 1 << 62,  # > any packet number: disregarded
}
#: Integrity limit: packets failing authentication within a connection (RFC 9001 §6.6).
INTEGRITY_LIMIT: dict[CipherSuite, int] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: 1 << 52,
    CipherSuite.TLS_AES_256_GCM_SHA384: 1 << 52,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: 1 << 36,
}

_ZERO5 = bytes(5)
#: ECB holds no state: one instance serves every header-protection context
_ECB = modes.ECB()
_from_bytes = int.from_bytes
#: the one-byte ``bytes`` objects, by value: a header's first byte without a
#: ``bytes((b,))`` call per packet
_BYTE = tuple(bytes((i,)) for i in range(256))


#: by connection ID length (0-20, RFC 9000 §17.2): the packer of a short header with a
#: 2-byte packet number (RFC 9000 §17.3.1) — first byte, DCID, number — in one call
_SHORT_HEADER_PACK2: tuple[Callable[[int, BytesLike, int], bytes], ...] = tuple(
    struct.Struct(f">B{n}sH").pack for n in range(21)
)
#: ... and with a 1-byte packet number
_SHORT_HEADER_PACK1: tuple[Callable[[int, BytesLike, int], bytes], ...] = tuple(
    struct.Struct(f">B{n}sB").pack for n in range(21)
)


def _short_header(first: int, dcid: BytesLike, truncated: int) -> bytes:
    """A short header, its Packet Number Length from ``first`` (no struct code for 3
    bytes)."""
    return _BYTE[first] + bytes(dcid) + truncated.to_bytes((first & 0x03) + 1, "big")


#: by packet number length (1-4), then connection ID length: the short header's packer
_SHORT_HEADER_PACK: tuple[tuple[Callable[[int, BytesLike, int], bytes], ...], ...] = (
    (),
    _SHORT_HEADER_PACK1,
    _SHORT_HEADER_PACK2,
    (_short_header,) * 21,
    tuple(struct.Struct(f">B{n}sI").pack for n in range(21)),
)


_LONG_HEADER_BIT = 0x80
_LONG_HEADER_MASK = 0x0F  # RFC 9001 §5.4.1: reserved bits and packet number length
_SHORT_HEADER_MASK = 0x1F  # ... plus the Key Phase bit for short headers
_PN_LIMIT = 1 << 62  # packet numbers are below it (RFC 9000 §12.3)


class DecryptionError(Exception):
    """A packet could not be unprotected (too short to sample, or bad AEAD tag).

    Not a connection error: the packet is silently dropped (RFC 9001 §5.3, §9.5).
    """


def min_payload_length(pn_length: int) -> int:
    """Minimum plaintext payload for a packet whose packet number has ``pn_length`` bytes.

    The packet number plus ciphertext must reach 4 bytes past the packet number start
    plus a full sample (RFC 9001 §5.4.2): 3 bytes of frames with a 1-byte packet
    number, 2 with 2 bytes, and so on. The caller pads with PADDING frames.
    """
    return max(0, SAMPLE_OFFSET + SAMPLE_LENGTH - AEAD_TAG_LENGTH - pn_length)


class HeaderProtection:
    """Header protection mask function for one "quic hp" key (RFC 9001 §5.4.3, §5.4.4).

    ``mask(sample)`` takes exactly :data:`SAMPLE_LENGTH` bytes and returns at least 5
    bytes of mask. One cipher context is built per key and reused for every packet:
    the AES variant feeds whole 16-byte blocks to an ECB context (callers check
    lengths first, since ECB would buffer a partial block), and the ChaCha20 variant
    resets the context's nonce to the sample.

    The context is native memory (about 0.9 KB for AES) and lives as long as the key:
    a connection's rest lets its AEAD contexts go but not this one, which costs more
    than twice as much to build again (see :class:`PacketProtector`).
    """

    __slots__ = ("mask", "suite")

    def __init__(self, suite: CipherSuite, hp_key: bytes) -> None:
        self.suite = suite
        #: the mask function
        self.mask: Callable[[BytesLike], bytes] = self._build(hp_key)

    def _build(self, hp_key: bytes) -> Callable[[BytesLike], bytes]:
        if self.suite == CipherSuite.TLS_CHACHA20_POLY1305_SHA256:
            # RFC 9001 §5.4.4: counter = sample[0..3] (little-endian), nonce =
            # sample[4..15]; cryptography's 16-byte ChaCha20 "nonce" is exactly that
            # counter || nonce, so the sample is used as is.
            context = Cipher(algorithms.ChaCha20(hp_key, bytes(16)), None).encryptor()
            reset_nonce = context.reset_nonce
            update = context.update

            def chacha20_mask(sample: BytesLike) -> bytes:
                reset_nonce(bytes(sample))
                return update(_ZERO5)  # mask = ChaCha20(hp_key, counter, nonce, 5 zeros)

            return chacha20_mask
        # RFC 9001 §5.4.3: mask = AES-ECB(hp_key, sample)
        return Cipher(algorithms.AES(hp_key), _ECB).encryptor().update


_AEAD_BY_SUITE: dict[int, type[AESGCM] | type[ChaCha20Poly1305]] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: AESGCM,
    CipherSuite.TLS_AES_256_GCM_SHA384: AESGCM,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: ChaCha20Poly1305,
}


def _make_aead(suite: CipherSuite, key: bytes) -> AESGCM | ChaCha20Poly1305:
    # RFC 9001 §5.3: the AEAD negotiated by TLS (a table: built again at every wake
    # of resting keys, no Enum attribute lookups)
    aead = _AEAD_BY_SUITE.get(suite)
    if aead is None:
        raise ValueError(f"unsupported cipher suite 0x{suite:04x}")
    return aead(key)


class _PacketKeys:
    """Key material common to both directions: AEAD, IV and header protection.

    The AEAD context holds native memory (about 2.5 KB per direction with AES-GCM);
    :meth:`rest` drops it while the connection is quiet and the next packet builds it
    again from the key (``_wake_aead``). The header-protection context (about 0.9 KB
    for AES) stays: building it again costs about 17,000 instructions against 7,000 for
    the AEAD, so after a rest it was two thirds of the keys' wake-up (issue 10: 6.6% of
    a burst of echoes on rested connections, for 1.8 KB per connection at rest).
    """

    __slots__ = (
        "_aead",
        "_hp",
        "_iv",
        "_key",
        "_secret",
        "header_protection",
        "key_phase",
        "suite",
        "version",
    )

    def __init__(
        self,
        suite: CipherSuite,
        secret: bytes,
        version: int,
        *,
        key_phase: int = 0,
        header_protection: HeaderProtection | None = None,
    ) -> None:
        # ValueError for a suite QUIC cannot use (TLS and Initial keys give the member)
        self.suite = suite if type(suite) is CipherSuite else CipherSuite(suite)
        key, iv, hp_key = derive_packet_keys(self.suite, secret, version)
        self.version = version
        #: Key Phase bit value for this generation of 1-RTT keys (RFC 9001 §6).
        self.key_phase = key_phase
        self._secret = secret
        self._key = key
        self._aead: AESGCM | ChaCha20Poly1305 | None = _make_aead(self.suite, key)
        self._iv = int.from_bytes(iv, "big")
        if header_protection is None:
            header_protection = HeaderProtection(self.suite, hp_key)
        self.header_protection = header_protection
        self._hp: Callable[[BytesLike], bytes] = header_protection.mask

    def _next_secret(self) -> bytes:
        return next_key_phase_secret(self.suite, self._secret, self.version)

    @property
    def resident(self) -> bool:
        """True while the AEAD context is built (see :meth:`rest`)."""
        return self._aead is not None

    def rest(self) -> None:
        """Drop the AEAD context; the key stays, and the next packet protected or
        opened builds it again. The header-protection context is kept (see above)."""
        self._aead = None

    def _wake_aead(self) -> AESGCM | ChaCha20Poly1305:
        aead = self._aead = _make_aead(self.suite, self._key)
        return aead


class PacketProtector(_PacketKeys):
    """Protects packets sent in one direction at one encryption level (RFC 9001 §5)."""

    __slots__ = ("confidentiality_limit", "encrypted_packets")

    def __init__(
        self,
        suite: CipherSuite,
        secret: bytes,
        version: int,
        *,
        key_phase: int = 0,
        header_protection: HeaderProtection | None = None,
    ) -> None:
        super().__init__(
            suite, secret, version, key_phase=key_phase, header_protection=header_protection
        )
        #: Packets encrypted with this key; compare with ``confidentiality_limit``.
        self.encrypted_packets = 0
        self.confidentiality_limit = CONFIDENTIALITY_LIMIT[self.suite]

    @property
    def confidentiality_limit_reached(self) -> bool:
        """True once this key must not encrypt any more packets (RFC 9001 §6.6)."""
        return self.encrypted_packets >= self.confidentiality_limit

    def next_generation(self) -> PacketProtector:
        """Keys for the next key phase: new key and IV, same hp key (RFC 9001 §6.1)."""
        return PacketProtector(
            self.suite,
            self._next_secret(),
            self.version,
            key_phase=self.key_phase ^ 1,
            header_protection=self.header_protection,
        )

    def encrypt_packet(self, header: BytesLike, payload: BytesLike, packet_number: int) -> bytes:
        """Return the protected packet: protected header followed by the ciphertext.

        ``header`` ends with the truncated packet number whose length is given by the
        low two bits of its first byte; ``packet_number`` is the full packet number.
        Raises :class:`ValueError` if ``payload`` is shorter than
        :func:`min_payload_length` (a bug in the caller, who must pad).
        """
        first = header[0]
        pn_length = (first & 0x03) + 1
        if len(payload) + pn_length < SAMPLE_OFFSET:
            raise ValueError("payload too short for the header protection sample")
        pn_offset = len(header) - pn_length
        # RFC 9001 §5.3: nonce = iv XOR packet number; AAD = unprotected header.
        nonce = (self._iv ^ packet_number).to_bytes(IV_LENGTH, "big")
        ciphertext = (self._aead or self._wake_aead()).encrypt(nonce, payload, header)
        self.encrypted_packets += 1
        # RFC 9001 §5.4.2: sample starts 4 bytes after the Packet Number field start.
        sample_start = SAMPLE_OFFSET - pn_length
        hp = self._hp
        mask = hp(ciphertext[sample_start : sample_start + SAMPLE_LENGTH])
        # RFC 9001 §5.4.1: mask the first byte's low bits and the packet number.
        first ^= mask[0] & (_LONG_HEADER_MASK if first & _LONG_HEADER_BIT else _SHORT_HEADER_MASK)
        pn_end = pn_offset + pn_length
        protected_pn = _from_bytes(header[pn_offset:pn_end], "big") ^ _from_bytes(
            mask[1 : 1 + pn_length], "big"
        )
        return b"".join(
            (
                _BYTE[first],
                header[1:pn_offset],
                protected_pn.to_bytes(pn_length, "big"),
                ciphertext,
            )
        )

    def encrypt_short(
        self,
        dcid: bytes,
        pn_length: int,
        truncated_pn: int,
        key_phase: int,
        payload: BytesLike,
        packet_number: int,
    ) -> bytes:
        """:meth:`encrypt_packet` for a 1-RTT packet whose short header (RFC 9000
        §17.3.1: fixed bit, ``key_phase`` as the Key Phase bit, no spin bit) is built
        here, so the per-packet path neither encodes nor re-parses it.

        ``payload`` must be at least :func:`min_payload_length` bytes (ValueError).
        """
        if len(payload) + pn_length < SAMPLE_OFFSET:
            raise ValueError("payload too short for the header protection sample")
        first = 0x40 | (pn_length - 1) | (0x04 if key_phase else 0)
        # a one-byte packet number (a ping-pong's) from the table, without to_bytes()
        pn_bytes = (
            _BYTE[truncated_pn] if pn_length == 1 else truncated_pn.to_bytes(pn_length, "big")
        )
        # RFC 9001 §5.3: nonce = iv XOR packet number; AAD = unprotected header.
        nonce = (self._iv ^ packet_number).to_bytes(IV_LENGTH, "big")
        aead = self._aead or self._wake_aead()
        ciphertext = aead.encrypt(nonce, payload, b"".join((_BYTE[first], dcid, pn_bytes)))
        self.encrypted_packets += 1
        # RFC 9001 §5.4.2 sample; §5.4.1: mask the low 5 bits and the packet number.
        sample_start = SAMPLE_OFFSET - pn_length
        hp = self._hp
        mask = hp(ciphertext[sample_start : sample_start + SAMPLE_LENGTH])
        if pn_length == 1:
            pn_bytes = _BYTE[truncated_pn ^ mask[1]]
        else:
            protected_pn = truncated_pn ^ _from_bytes(mask[1 : 1 + pn_length], "big")
            pn_bytes = protected_pn.to_bytes(pn_length, "big")
        return b"".join((_BYTE[first ^ (mask[0] & _SHORT_HEADER_MASK)], dcid, pn_bytes, ciphertext))

    def encrypt_short_run(
        self,
        dcid: bytes,
        key_phase: int,
        pn_length: int,
        packet_number: int,
        payloads: Sequence[BytesLike],
    ) -> list[bytes]:
        """:meth:`encrypt_short` for each of ``payloads``, numbered one after another
        from ``packet_number``, each with a ``pn_length``-byte Packet Number field (the
        number's low bytes): the protected packets, in order. With AES header
        protection the masks come from one call for the whole run (RFC 9001 §5.4.3:
        AES-ECB of the samples one after the other is their masks one after the other),
        not one per packet. Same checks (ValueError) as :meth:`encrypt_short`."""
        if not payloads:
            return []
        if min(map(len, payloads)) + pn_length < SAMPLE_OFFSET:
            raise ValueError("payload too short for the header protection sample")
        encrypt = (self._aead or self._wake_aead()).encrypt
        iv = self._iv
        # fixed bit, Key Phase and the Packet Number Length (RFC 9000 §17.3.1)
        first = (0x44 if key_phase else 0x40) | (pn_length - 1)
        truncate = (1 << 8 * pn_length) - 1  # the truncated number: the low bytes
        packs = type(dcid) is bytes and len(dcid) <= 20
        header = _SHORT_HEADER_PACK[pn_length][len(dcid)] if packs else _short_header
        sealed: list[bytes] = []
        seal = sealed.append
        pn = packet_number
        for payload in payloads:
            # RFC 9001 §5.3: nonce = iv XOR pn; AAD = the header
            seal(
                encrypt(
                    (iv ^ pn).to_bytes(IV_LENGTH, "big"),
                    payload,
                    header(first, dcid, pn & truncate),
                )
            )
            pn += 1
        self.encrypted_packets += len(sealed)
        # RFC 9001 §5.4.2: each sample starts 4 bytes after the Packet Number field,
        # at the same place in every packet of the run: sliced in C
        start = SAMPLE_OFFSET - pn_length
        samples = map(itemgetter(slice(start, start + SAMPLE_LENGTH)), sealed)
        if self.suite != CipherSuite.TLS_CHACHA20_POLY1305_SHA256:
            masks = self._hp(b"".join(samples))
            step = SAMPLE_LENGTH
        else:  # a ChaCha20 mask is a keystream of its own per sample (§5.4.4)
            hp = self._hp
            masks = b"".join([hp(sample) for sample in samples])  # 5 bytes each
            step = len(_ZERO5)
        out: list[bytes] = []
        put = out.append
        at = 0
        pn = packet_number
        if pn_length == 2 and packs:  # a bulk run's: the header in one pack
            pack = _SHORT_HEADER_PACK2[len(dcid)]
            for ciphertext in sealed:
                # RFC 9001 §5.4.1: mask the low 5 bits and the packet number
                put(
                    pack(
                        first ^ (masks[at] & _SHORT_HEADER_MASK),
                        dcid,
                        pn & 0xFFFF ^ (masks[at + 1] << 8 | masks[at + 2]),
                    )
                    + ciphertext
                )
                at += step
                pn += 1
            return out
        join = b"".join
        for ciphertext in sealed:
            # RFC 9001 §5.4.1: mask the low 5 bits and the packet number
            protected = pn & truncate ^ _from_bytes(masks[at + 1 : at + 1 + pn_length], "big")
            first_byte = _BYTE[first ^ (masks[at] & _SHORT_HEADER_MASK)]
            put(join((first_byte, dcid, protected.to_bytes(pn_length, "big"), ciphertext)))
            at += step
            pn += 1
        return out


class PacketUnprotector(_PacketKeys):
    """Removes protection from packets received at one encryption level (RFC 9001 §5)."""

    __slots__ = ("failed_decryptions", "integrity_limit")

    def __init__(
        self,
        suite: CipherSuite,
        secret: bytes,
        version: int,
        *,
        key_phase: int = 0,
        header_protection: HeaderProtection | None = None,
    ) -> None:
        super().__init__(
            suite, secret, version, key_phase=key_phase, header_protection=header_protection
        )
        #: Packets that failed authentication with this key (RFC 9001 §6.6); the
        #: connection sums this over all its keys and compares with ``integrity_limit``.
        self.failed_decryptions = 0
        self.integrity_limit = INTEGRITY_LIMIT[self.suite]

    def next_generation(self) -> PacketUnprotector:
        """Keys for the next key phase: new key and IV, same hp key (RFC 9001 §6.1)."""
        return PacketUnprotector(
            self.suite,
            self._next_secret(),
            self.version,
            key_phase=self.key_phase ^ 1,
            header_protection=self.header_protection,
        )

    def unprotect_header(
        self, data: BytesLike, pn_offset: int, largest_pn: int
    ) -> tuple[bytes, int]:
        """Remove header protection; return ``(plain_header, packet_number)``.

        ``data`` holds the packet from its first byte to its end (for a long header,
        as given by its Length field; slice coalesced packets with a memoryview).
        ``pn_offset`` is the offset of the Packet Number field and ``largest_pn`` the
        largest packet number processed in this space (-1 if none). The plain header,
        which ends with the unprotected packet number, is the AEAD associated data.
        Raises :class:`DecryptionError` if the packet is too short to sample.
        """
        sample_start = pn_offset + SAMPLE_OFFSET
        if len(data) < sample_start + SAMPLE_LENGTH or pn_offset < 1:
            # RFC 9001 §5.4.2: packets too short for a complete sample are discarded.
            raise DecryptionError("packet too short for the header protection sample")
        mask = self._hp(data[sample_start : sample_start + SAMPLE_LENGTH])
        first = data[0]
        first ^= mask[0] & (_LONG_HEADER_MASK if first & _LONG_HEADER_BIT else _SHORT_HEADER_MASK)
        pn_length = (first & 0x03) + 1
        pn_end = pn_offset + pn_length
        truncated_pn = _from_bytes(data[pn_offset:pn_end], "big") ^ _from_bytes(
            mask[1 : 1 + pn_length], "big"
        )
        plain_header = b"".join(
            (_BYTE[first], data[1:pn_offset], truncated_pn.to_bytes(pn_length, "big"))
        )
        # RFC 9000 §17.1 / Appendix A.3
        return plain_header, decode_packet_number(truncated_pn, pn_length << 3, largest_pn)

    def decrypt_payload(self, plain_header: bytes, packet_number: int, data: BytesLike) -> bytes:
        """Authenticate and decrypt the payload that follows ``plain_header`` in ``data``.

        Raises :class:`DecryptionError` (and counts the failure) on a bad tag.
        """
        # RFC 9001 §5.3: nonce = iv XOR packet number; AAD = unprotected header.
        nonce = (self._iv ^ packet_number).to_bytes(IV_LENGTH, "big")
        try:
            aead = self._aead or self._wake_aead()
            return aead.decrypt(nonce, data[len(plain_header) :], plain_header)
        except InvalidTag:
            self.failed_decryptions += 1
            raise DecryptionError("packet failed authentication") from None

    def short_masks(self, datagrams: list[bytes], pn_offset: int) -> bytes | None:
        """The header-protection masks of ``datagrams``, each taken as one short-header
        packet whose Packet Number field starts at ``pn_offset``: 16 bytes per datagram,
        in order, from one AES-ECB call (RFC 9001 §5.4.3; the mask of a datagram too
        short for a sample is meaningless). None with ChaCha20 header protection
        (§5.4.4: a call per sample), which :meth:`open_short` then makes."""
        if self.suite == CipherSuite.TLS_CHACHA20_POLY1305_SHA256:
            return None
        start = pn_offset + SAMPLE_OFFSET
        stop = start + SAMPLE_LENGTH
        joined = b"".join(map(itemgetter(slice(start, stop)), datagrams))  # sliced in C
        if len(joined) == SAMPLE_LENGTH * len(datagrams):  # every one had a whole sample
            return self._hp(joined)
        blank = bytes(SAMPLE_LENGTH)
        samples = [data[start:stop] if len(data) >= stop else blank for data in datagrams]
        return self._hp(b"".join(samples))

    def open_short(
        self,
        data: BytesLike,
        pn_offset: int,
        largest_pn: int,
        masks: BytesLike | None = None,
        at: int = 0,
    ) -> tuple[bytes, int, bytes | None]:
        """:meth:`unprotect_header` then :meth:`decrypt_payload` for a short-header
        (1-RTT) packet, in one call: ``(plain_header, packet_number, payload)``, the
        payload None when the Key Phase bit is not this key's (RFC 9001 §6: the
        caller picks the other generation). Same checks and errors. ``masks`` from
        :meth:`short_masks` (this packet's mask at ``at``) saves the mask's call."""
        sample_start = pn_offset + SAMPLE_OFFSET
        if len(data) < sample_start + SAMPLE_LENGTH or pn_offset < 1:
            # RFC 9001 §5.4.2: packets too short for a complete sample are discarded.
            raise DecryptionError("packet too short for the header protection sample")
        if masks is None:
            masks = self._hp(data[sample_start : sample_start + SAMPLE_LENGTH])
            at = 0
        first = data[0] ^ (masks[at] & _SHORT_HEADER_MASK)  # RFC 9001 §5.4.1
        pn_length = (first & 0x03) + 1
        pn_end = pn_offset + pn_length
        # RFC 9000 Appendix A.3 (decode_packet_number, inline): the candidate closest
        # to the next expected packet number — the one in (expected - window/2,
        # expected + window/2], ``top`` minus the distance below it modulo the window
        # — moved back into 0..2^62-1 by a window when it falls outside
        if pn_length == 2:  # a bulk sender's usual length: two bytes, without slices
            truncated_pn = (data[pn_offset] ^ masks[at + 1]) << 8 | (
                data[pn_offset + 1] ^ masks[at + 2]
            )
            window = 0x10000
            top = largest_pn + 0x8001  # expected + window/2
            pn = top - ((top - truncated_pn) & 0xFFFF)
            pn_bytes = truncated_pn.to_bytes(2, "big")
        elif pn_length == 1:  # a ping-pong's: one byte, its byte from the table
            truncated_pn = data[pn_offset] ^ masks[at + 1]
            window = 0x100
            top = largest_pn + 0x81
            pn = top - ((top - truncated_pn) & 0xFF)
            pn_bytes = _BYTE[truncated_pn]
        else:
            truncated_pn = _from_bytes(data[pn_offset:pn_end], "big") ^ _from_bytes(
                masks[at + 1 : at + 1 + pn_length], "big"
            )
            window = 1 << (pn_length << 3)
            top = largest_pn + 1 + (window >> 1)
            pn = top - ((top - truncated_pn) & (window - 1))
            pn_bytes = truncated_pn.to_bytes(pn_length, "big")
        if pn < 0:
            pn += window
        elif pn >= _PN_LIMIT:
            pn -= window
        plain_header = b"".join((_BYTE[first], data[1:pn_offset], pn_bytes))
        if (first >> 2) & 1 != self.key_phase:
            return plain_header, pn, None
        # RFC 9001 §5.3: nonce = iv XOR packet number; AAD = unprotected header.
        nonce = (self._iv ^ pn).to_bytes(IV_LENGTH, "big")
        try:
            payload = (self._aead or self._wake_aead()).decrypt(nonce, data[pn_end:], plain_header)
        except InvalidTag:
            self.failed_decryptions += 1
            raise DecryptionError("packet failed authentication") from None
        return plain_header, pn, payload

    def open_short_run(
        self,
        datagrams: list[bytes],
        index: int,
        pn_offset: int,
        largest_pn: int,
        masks: bytes,
        limit: int,
    ) -> tuple[list[int], list[bytes]]:
        """:meth:`open_short` for up to ``limit`` of ``datagrams[index:]`` (their masks from
        :meth:`short_masks` of the whole list) while each is a short-header packet
        with a sample, a 1- or 2-byte packet number above the one before (above
        ``largest_pn`` for the first) and below 2^62, this key's Key Phase, zero
        Reserved Bits (RFC 9000 §17.3.1) and a payload that authenticates: their
        packet numbers and payloads, in order, from one call (a bulk receive run's).
        It stops before the first datagram that is not such a packet, which the caller
        reads with :meth:`open_short` (the checks, errors and the failure count are
        its: a failed datagram is not counted here), and before one not ``bytes``."""
        decrypt = (self._aead or self._wake_aead()).decrypt
        iv = self._iv
        header1 = _SHORT_HEADER_PACK1[pn_offset - 1]  # the AAD (RFC 9001 §5.3)
        header2 = _SHORT_HEADER_PACK2[pn_offset - 1]
        # the first byte's low bits: Key Phase, no Reserved Bits, a 1- or 2-byte number
        one = 0x04 if self.key_phase else 0x00
        two = one | 0x01
        shortest = pn_offset + SAMPLE_OFFSET + SAMPLE_LENGTH  # RFC 9001 §5.4.2
        after1 = pn_offset + 1
        after2 = pn_offset + 2
        pns: list[int] = []
        payloads: list[bytes] = []
        number = pns.append
        put = payloads.append
        largest = largest_pn
        at = index << 4
        for data in islice(datagrams, index, index + limit):
            if type(data) is not bytes or len(data) < shortest or data[0] & 0xC0 != 0x40:
                break  # (a bytes-like view: open_short's, the AAD is packed from bytes)
            first = data[0] ^ (masks[at] & _SHORT_HEADER_MASK)  # RFC 9001 §5.4.1
            low = first & _SHORT_HEADER_MASK
            # RFC 9000 Appendix A.3, as open_short: the candidate nearest the next number
            if low == two:  # a bulk sender's usual length
                truncated = (data[pn_offset] ^ masks[at + 1]) << 8 | (data[after1] ^ masks[at + 2])
                top = largest + 0x8001
                pn = top - ((top - truncated) & 0xFFFF)
                aad = header2(first, data[1:pn_offset], truncated)
                ciphertext = data[after2:]
            elif low == one:
                truncated = data[pn_offset] ^ masks[at + 1]
                top = largest + 0x81
                pn = top - ((top - truncated) & 0xFF)
                aad = header1(first, data[1:pn_offset], truncated)
                ciphertext = data[after1:]
            else:
                break
            if pn <= largest or pn >= _PN_LIMIT:
                break  # reordered, a duplicate, or a window move: open_short's
            try:  # RFC 9001 §5.3: nonce = iv XOR packet number; AAD = plain header
                put(decrypt((iv ^ pn).to_bytes(IV_LENGTH, "big"), ciphertext, aad))
            except InvalidTag:
                break
            number(pn)
            largest = pn
            at += 16
        return pns, payloads

    def decrypt_packet(
        self, data: BytesLike, pn_offset: int, largest_pn: int
    ) -> tuple[bytes, int, bytes]:
        """Unprotect a whole packet; return ``(plain_header, packet_number, payload)``.

        See :meth:`unprotect_header` for the arguments. Raises :class:`DecryptionError`.
        """
        plain_header, packet_number = self.unprotect_header(data, pn_offset, largest_pn)
        return plain_header, packet_number, self.decrypt_payload(plain_header, packet_number, data)


def initial_keys(
    version: int, dcid: bytes, is_client: bool
) -> tuple[PacketProtector, PacketUnprotector]:
    """Return ``(send, receive)`` Initial packet protection for one endpoint (RFC 9001 §5.2).

    Initial packets always use AEAD_AES_128_GCM with SHA-256 (RFC 9001 §5).
    """
    client_secret, server_secret = initial_secrets(version, dcid)
    send_secret, receive_secret = (
        (client_secret, server_secret) if is_client else (server_secret, client_secret)
    )
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    return (
        PacketProtector(suite, send_secret, version),
        PacketUnprotector(suite, receive_secret, version),
    )
