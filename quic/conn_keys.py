"""Packet number spaces and their keys, including 1-RTT key update (RFC 9001 §4.9, §6).

Theory of operation
-------------------
A connection has three packet number spaces (RFC 9000 §12.3): Initial, Handshake and
Application data. :class:`Space` holds what belongs to one of them: the next packet
number, the :class:`~quic.ack.AckTracker` for received packets, the CRYPTO byte streams
in both directions (the TLS handshake bytes of that encryption level) and its keys.
Keys are installed as the TLS engine releases secrets and dropped when the space is
discarded (RFC 9001 §4.9).

The application space's read keys are a :class:`OneRttReadKeys`: the current
generation, the next one (derived on demand to try a flipped Key Phase bit), and the
previous one (kept for reordered packets until the update is old, RFC 9001 §6.5).
Header protection keys never change with a key update (RFC 9001 §6.1), so header
protection is removed with the current object before the key phase is known.
"""

from __future__ import annotations

from quic.ack import DEFAULT_MAX_ACK_RANGES_TRACKED, AckTracker
from quic.protection import BytesLike, DecryptionError, PacketProtector, PacketUnprotector
from quic.stream_recv import CRYPTO_MIN_BUFFER, DEFAULT_MAX_CRYPTO_FRAGMENTS, CryptoRecvStream
from quic.stream_send import SendStream

__all__ = ["APPLICATION", "HANDSHAKE", "INITIAL", "OneRttReadKeys", "Space"]

INITIAL = 0
HANDSHAKE = 1
APPLICATION = 2

#: CRYPTO data we buffer out of order before CRYPTO_BUFFER_EXCEEDED (RFC 9000 §7.5).
CRYPTO_BUFFER = 256 * 1024
_CRYPTO_CREDIT = (1 << 62) - 1


class Space:
    """One packet number space (RFC 9000 §12.3)."""

    __slots__ = (
        "ack",
        "crypto_recv",
        "crypto_send",
        "discarded",
        "index",
        "next_pn",
        "read",
        "sent_since_eliciting",
        "write",
    )

    def __init__(
        self,
        index: int,
        max_ack_delay: float,
        *,
        crypto_buffer: int = CRYPTO_BUFFER,
        crypto_fragments: int = DEFAULT_MAX_CRYPTO_FRAGMENTS,
        max_ack_ranges: int = DEFAULT_MAX_ACK_RANGES_TRACKED,
    ) -> None:
        self.index = index
        self.next_pn = 0
        self.ack = AckTracker(
            max_ack_delay, immediate=index != APPLICATION, max_ranges=max_ack_ranges
        )
        self.crypto_send = SendStream(-1, _CRYPTO_CREDIT)
        # RFC 9000 §7.5: bytes beyond the first missing one and holes are bounded per level
        self.crypto_recv = CryptoRecvStream(max(CRYPTO_MIN_BUFFER, crypto_buffer), crypto_fragments)
        self.write: PacketProtector | None = None
        self.read: PacketUnprotector | OneRttReadKeys | None = None
        self.discarded = False
        self.sent_since_eliciting = 0  # ACK-only packets since the last ack-eliciting one

    def discard(self) -> None:
        self.discarded = True
        self.write = None
        self.read = None


class OneRttReadKeys:
    """Current, next and previous 1-RTT read keys (RFC 9001 §6)."""

    __slots__ = ("current", "current_start_pn", "next", "previous", "previous_until")

    def __init__(self, current: PacketUnprotector) -> None:
        self.current = current
        self.current_start_pn = 0  # lowest packet number seen with the current keys
        self.next: PacketUnprotector | None = None
        self.previous: PacketUnprotector | None = None
        self.previous_until = 0.0

    def unprotect_header(
        self, data: BytesLike, pn_offset: int, largest_pn: int
    ) -> tuple[bytes, int]:
        return self.current.unprotect_header(data, pn_offset, largest_pn)

    def decrypt(
        self, plain_header: bytes, pn: int, data: BytesLike, now: float
    ) -> tuple[bytes, bool]:
        """Decrypt with the generation the Key Phase bit selects.

        Returns ``(payload, updated)``; ``updated`` is True when the peer started a new
        key phase with this packet (the caller updates its write keys to match).
        """
        phase = (plain_header[0] >> 2) & 1
        current = self.current
        if phase == current.key_phase:
            return current.decrypt_payload(plain_header, pn, data), False
        previous = self.previous
        if previous is not None and pn < self.current_start_pn:
            if now > self.previous_until:
                raise DecryptionError("previous key phase expired")
            return previous.decrypt_payload(plain_header, pn, data), False
        nxt = self.next
        if nxt is None:
            nxt = self.next = current.next_generation()
        payload = nxt.decrypt_payload(plain_header, pn, data)  # raises DecryptionError
        self.previous = current
        self.current = nxt
        self.next = None
        self.current_start_pn = pn
        return payload, True

    def set_previous_expiry(self, when: float) -> None:
        self.previous_until = when

    @property
    def failed_decryptions(self) -> int:
        total = self.current.failed_decryptions
        if self.previous is not None:
            total += self.previous.failed_decryptions
        if self.next is not None:
            total += self.next.failed_decryptions
        return total
