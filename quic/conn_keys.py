"""Packet number spaces and their keys, including 1-RTT key update (RFC 9001 §4.9, §6).

Theory of operation
-------------------
A connection has three packet number spaces (RFC 9000 §12.3): Initial, Handshake and
Application data. :class:`Space` holds what belongs to the keys of one of them: the next
packet number to send and the packet protection in both directions. Everything else a
space has is owned elsewhere — received packet numbers and ACKs by
:class:`~quic.conn_acks.AckState`, CRYPTO data by :class:`~quic.conn_crypto.
CryptoStreams`, sent packets by :class:`~quic.recovery.LossRecovery` — so that each
component can be discarded and tested on its own.

:class:`PacketSpaces` is the keys component of a connection. It installs the Initial
keys (RFC 9001 §5.2, derived from the client's first Destination Connection ID and the
version) and each secret the TLS engine releases (RFC 9001 §4.1.4), drops keys when a
space is discarded (RFC 9001 §4.9) and runs the 1-RTT key update (RFC 9001 §6):

* the application space's read keys are a :class:`OneRttReadKeys`: the current
  generation, the next one (derived on demand to try a flipped Key Phase bit), and the
  previous one (kept for reordered packets until the update is old, RFC 9001 §6.5);
* compatible version negotiation (RFC 9368 §2.3, RFC 9369 §4) re-derives the Initial
  keys for the Negotiated Version from the same connection ID
  (:meth:`PacketSpaces.switch_initial_version`) and keeps the previous version's
  Initial read keys, so Initial packets still in flight in it are read;
* header protection keys never change with a key update (RFC 9001 §6.1), so header
  protection is removed with the current object before the key phase is known;
* a peer-initiated update is answered by updating our write keys (RFC 9001 §6.2);
  we start one with :meth:`PacketSpaces.request_key_update`, refused until a packet
  sent with the current keys was acknowledged (RFC 9001 §6.1).

Resting keys: the AEAD contexts are native memory (about 5 KB per connection with
AES-GCM, a sixth of an idle connection's memory). :meth:`PacketSpaces.rest` lets them
go, keeping the key bytes; the next packet built or opened with a key builds its
context again (about 1 µs). The header-protection contexts (about 1.8 KB per
connection) stay: they cost more than twice as much to build again
(:class:`quic.protection.PacketProtector`). The connection rests its keys once it has
been quiet for ``QuicConfiguration.key_rest_delay``.

0-RTT keys (RFC 9001 §4.6) belong to the application space too (0-RTT and 1-RTT
packets share its packet numbers, RFC 9000 §12.3) but are kept apart: ``zero_rtt_write``
(client) and ``zero_rtt_read`` (server), each installed once from the ZERO_RTT secret
and dropped for good with :meth:`PacketSpaces.discard_zero_rtt` (RFC 9001 §4.9.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quic.errors import QuicProtocolError, TransportErrorCode
from quic.protection import (
    INTEGRITY_LIMIT,
    BytesLike,
    DecryptionError,
    PacketProtector,
    PacketUnprotector,
    initial_keys,
)
from quic.tls.engine import Epoch, SecretAvailable

if TYPE_CHECKING:
    from quic.qlog import QuicLogger
    from quic.rtt import RttEstimator

__all__ = [
    "APPLICATION",
    "EPOCH_SPACE",
    "HANDSHAKE",
    "INITIAL",
    "SPACE_EPOCH",
    "OneRttReadKeys",
    "PacketSpaces",
    "Space",
]

INITIAL = 0
HANDSHAKE = 1
APPLICATION = 2

#: TLS epoch -> packet number space (0-RTT keys are not used).
EPOCH_SPACE = {Epoch.INITIAL: INITIAL, Epoch.HANDSHAKE: HANDSHAKE, Epoch.ONE_RTT: APPLICATION}
#: packet number space -> TLS epoch of its CRYPTO data.
SPACE_EPOCH = {INITIAL: Epoch.INITIAL, HANDSHAKE: Epoch.HANDSHAKE, APPLICATION: Epoch.ONE_RTT}


#: A key update starts this many packets before the write key's confidentiality limit
#: (RFC 9001 §6.6): more than a build call sends, and time for the peer to acknowledge
#: the current phase first (§6.1).
KEY_UPDATE_MARGIN = 1 << 16
#: Packets kept under the limit when no update is possible: the CONNECTION_CLOSE.
LIMIT_RESERVE = 64


class Space:
    """The keys and next packet number of one packet number space (RFC 9000 §12.3)."""

    __slots__ = ("discarded", "index", "next_pn", "read", "write")

    def __init__(self, index: int) -> None:
        self.index = index
        self.next_pn = 0
        self.write: PacketProtector | None = None
        self.read: PacketUnprotector | OneRttReadKeys | None = None
        self.discarded = False

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


class PacketSpaces:
    """The keys component: three :class:`Space` objects and the 1-RTT key phases."""

    __slots__ = (
        "_initial_dcid",
        "_initial_version",
        "_is_client",
        "_other_initial_reads",
        "_qlog",
        "_rtt",
        "auth_failures",
        "key_phase_first_pn",
        "spaces",
        "zero_rtt_discarded",
        "zero_rtt_read",
        "zero_rtt_write",
    )

    def __init__(self, is_client: bool, rtt: RttEstimator, qlog: QuicLogger | None) -> None:
        self._is_client = is_client
        self._rtt = rtt
        self._qlog = qlog
        self.spaces = (Space(INITIAL), Space(HANDSHAKE), Space(APPLICATION))
        self.key_phase_first_pn: int | None = None  # first 1-RTT PN of our newest keys
        self.zero_rtt_write: PacketProtector | None = None  # client (RFC 9001 §4.6.1)
        self.zero_rtt_read: PacketUnprotector | None = None  # server
        self.zero_rtt_discarded = False
        #: Received packets that failed authentication, under every key the connection
        #: had (RFC 9001 §6.6: compared with the integrity limit)
        self.auth_failures = 0
        self._initial_dcid = b""
        self._initial_version = 0
        # Initial read keys of the other version after compatible version negotiation
        # (RFC 9369 §4: the original version's Initials are still read), by version
        self._other_initial_reads: dict[int, PacketUnprotector] = {}

    def install_initial(self, version: int, dcid: bytes) -> None:
        """Initial keys from the client's Destination Connection ID (RFC 9001 §5.2)."""
        write, read = initial_keys(version, dcid, self._is_client)
        space = self.spaces[INITIAL]
        space.write = write
        space.read = read
        self._initial_dcid = dcid
        self._initial_version = version
        self._other_initial_reads.clear()

    def switch_initial_version(self, version: int, keep_previous: bool = True) -> None:
        """Compatible version negotiation (RFC 9368 §2.3, RFC 9369 §4): Initial packets
        are sent and read in ``version`` from now on; those of the version used so far
        are still read (the server keeps them until a Handshake packet arrives, which
        discards the whole Initial space, RFC 9001 §4.9.1), unless ``keep_previous`` is
        False (a tentative switch undone)."""
        space = self.spaces[INITIAL]
        if space.discarded or version == self._initial_version:
            return
        old_read = space.read
        old_version = self._initial_version
        self.install_initial(version, self._initial_dcid)
        if keep_previous and isinstance(old_read, PacketUnprotector):
            self._other_initial_reads[old_version] = old_read

    def reads_initial(self, version: int) -> bool:
        """Whether Initial packets of ``version`` (not the current one) are still read."""
        return version in self._other_initial_reads and not self.spaces[INITIAL].discarded

    def install_secret(self, secret: SecretAvailable, version: int) -> int | None:
        """Install a traffic secret released by TLS (RFC 9001 §4.1.4).

        Returns the index of the space whose keys changed (APPLICATION for 0-RTT keys),
        or None (a discarded space, or discarded 0-RTT keys, get no keys again).
        """
        if secret.epoch == Epoch.ZERO_RTT:
            return self._install_zero_rtt(secret, version)
        index = EPOCH_SPACE.get(secret.epoch)
        if index is None:
            return None
        space = self.spaces[index]
        if space.discarded:
            return None
        if self._qlog is not None:
            self._qlog.key_updated(None, secret.epoch, secret.is_write)
        if secret.is_write:
            space.write = PacketProtector(secret.cipher_suite, secret.secret, version)
        else:
            read = PacketUnprotector(secret.cipher_suite, secret.secret, version)
            space.read = OneRttReadKeys(read) if index == APPLICATION else read
        return index

    def _install_zero_rtt(self, secret: SecretAvailable, version: int) -> int | None:
        if self.zero_rtt_discarded:
            return None
        if self._qlog is not None:
            self._qlog.key_updated(None, secret.epoch, secret.is_write)
        if secret.is_write:
            self.zero_rtt_write = PacketProtector(secret.cipher_suite, secret.secret, version)
        else:
            self.zero_rtt_read = PacketUnprotector(secret.cipher_suite, secret.secret, version)
        return APPLICATION

    def discard_zero_rtt(self) -> None:
        """Drop the 0-RTT keys for good (RFC 9001 §4.9.3)."""
        self.zero_rtt_discarded = True
        self.zero_rtt_write = None
        self.zero_rtt_read = None

    def open_zero_rtt(
        self, view: memoryview, pn_offset: int, largest_pn: int
    ) -> tuple[bytes, int, bytes] | None:
        """:meth:`open` for a 0-RTT packet (server), with the 0-RTT read keys."""
        read = self.zero_rtt_read
        if read is None:
            return None
        try:
            plain_header, pn = read.unprotect_header(view, pn_offset, largest_pn)
            payload = read.decrypt_payload(plain_header, pn, view)
        except DecryptionError:
            self.on_auth_failure()
            return None
        return plain_header, pn, payload

    def open(
        self,
        index: int,
        view: BytesLike,
        pn_offset: int,
        largest_pn: int,
        now: float,
        version: int | None = None,
    ) -> tuple[bytes, int, bytes] | None:
        """Remove packet protection (RFC 9001 §5.3, §5.4) with the keys of space
        ``index``; returns ``(plain_header, packet_number, payload)``, or None when the
        packet does not authenticate (it is then dropped, RFC 9001 §5.2). A 1-RTT
        packet that starts a new key phase answers the peer's key update (§6.2). An
        Initial packet of another ``version`` uses that version's kept read keys."""
        read: PacketUnprotector | OneRttReadKeys | None
        if index == INITIAL and version is not None and version != self._initial_version:
            read = self._other_initial_reads.get(version)
        else:
            read = self.spaces[index].read
        if read is None:
            return None
        try:
            plain_header, pn = read.unprotect_header(view, pn_offset, largest_pn)
            if isinstance(read, OneRttReadKeys):
                payload, updated = read.decrypt(plain_header, pn, view, now)
                if updated:
                    self._on_peer_key_update(now)
            else:
                payload = read.decrypt_payload(plain_header, pn, view)
        except DecryptionError:
            self.on_auth_failure()
            return None
        return plain_header, pn, payload

    def open_short(
        self, view: BytesLike, pn_offset: int, largest_pn: int, now: float
    ) -> tuple[bytes, int, bytes] | None:
        """:meth:`open` for a 1-RTT packet (the receive path's common case): the current
        generation's keys directly when the Key Phase bit matches them. ``view``: the
        datagram itself (bytes: the slices taken from it are cheaper than a
        memoryview's, even the copied payload of a full-sized packet)."""
        read = self.spaces[APPLICATION].read
        if type(read) is not OneRttReadKeys:
            return self.open(APPLICATION, memoryview(view), pn_offset, largest_pn, now)
        try:
            result = read.current.open_short(view, pn_offset, largest_pn)
            plain_header, pn, opened = result
            if opened is not None:  # the Key Phase bit of the current keys: as it came
                return result  # type: ignore[return-value]  # its payload is not None
            payload, updated = read.decrypt(plain_header, pn, view, now)  # RFC 9001 §6
            if updated:
                self._on_peer_key_update(now)
        except DecryptionError:
            self.on_auth_failure()
            return None
        return plain_header, pn, payload

    def on_auth_failure(self) -> None:
        """A packet failed authentication (or could not be; counted alike, which only
        makes the limit stricter). RFC 9001 §6.6: beyond the integrity limit of the
        AEAD in use the connection closes with AEAD_LIMIT_REACHED and processes no
        more packets."""
        self.auth_failures += 1
        read = self.spaces[APPLICATION].read
        current = read.current if isinstance(read, OneRttReadKeys) else read
        limit = current.integrity_limit if current is not None else min(INTEGRITY_LIMIT.values())
        if self.auth_failures > limit:
            raise QuicProtocolError(
                TransportErrorCode.AEAD_LIMIT_REACHED, "integrity limit reached (RFC 9001 §6.6)"
            )

    def confidentiality_ok(self, largest_acked: int, confirmed: bool) -> bool:
        """RFC 9001 §6.6 before 1-RTT packets are built: with fewer than
        :data:`KEY_UPDATE_MARGIN` packets left under the write key's confidentiality
        limit, start a key update (§6.1; refused until the current phase was
        acknowledged, then tried again at the next call); False once the key is
        within :data:`LIMIT_RESERVE` packets of the limit with no update possible —
        the connection must stop using it (its CONNECTION_CLOSE fits the reserve)."""
        write = self.spaces[APPLICATION].write
        if write is None:
            return True
        left = write.confidentiality_limit - write.encrypted_packets
        if left > KEY_UPDATE_MARGIN:
            return True
        if confirmed:
            try:
                self.request_key_update(largest_acked)
                return True
            except RuntimeError:
                pass
        return left > LIMIT_RESERVE

    @property
    def resident(self) -> bool:
        """True while the current 1-RTT keys hold their AEAD contexts (see :meth:`rest`)."""
        space = self.spaces[APPLICATION]
        write = space.write
        if write is not None and write.resident:
            return True
        read = space.read
        if isinstance(read, OneRttReadKeys):
            return read.current.resident
        return read is not None and read.resident

    def rest(self) -> None:
        """Let every key's AEAD context go (native memory, about 5 KB for a
        connection's two 1-RTT AES-GCM directions); the keys stay, and the next packet
        protected or opened with one builds its context again."""
        for space in self.spaces:
            if space.write is not None:
                space.write.rest()
            read = space.read
            if isinstance(read, OneRttReadKeys):
                for keys in (read.current, read.next, read.previous):
                    if keys is not None:
                        keys.rest()
            elif read is not None:
                read.rest()
        for zero_rtt in (self.zero_rtt_write, self.zero_rtt_read):
            if zero_rtt is not None:
                zero_rtt.rest()
        for other in self._other_initial_reads.values():
            other.rest()

    def discard(self, index: int) -> None:
        """Drop the keys of a space for good (RFC 9001 §4.9)."""
        space = self.spaces[index]
        if self._qlog is not None and not space.discarded:
            self._qlog.key_discarded(None, SPACE_EPOCH[index])
        space.discard()
        if index == INITIAL:
            self._other_initial_reads.clear()

    def _on_peer_key_update(self, now: float) -> None:
        """The peer's packet was the first of a new key phase (RFC 9001 §6.2, §6.5)."""
        space = self.spaces[APPLICATION]
        write = space.write
        read = space.read
        assert isinstance(read, OneRttReadKeys)
        peer_initiated = write is not None and write.key_phase != read.current.key_phase
        qlog = self._qlog
        if qlog is not None:  # our own update completes when the peer answers
            trigger = "remote_update" if peer_initiated else "local_update"
            qlog.key_updated(now, Epoch.ONE_RTT, False, trigger)
        if write is not None and peer_initiated:
            space.write = write.next_generation()  # RFC 9001 §6.2: respond in kind
            self.key_phase_first_pn = space.next_pn
            if qlog is not None:
                qlog.key_updated(now, Epoch.ONE_RTT, True, "remote_update")
        # RFC 9001 §6.5: old keys are kept for reordered packets for three PTOs
        read.set_previous_expiry(now + 3 * self._rtt.pto_base())

    def request_key_update(self, largest_acked: int) -> None:
        """Start a 1-RTT key update (RFC 9001 §6.1).

        ``largest_acked`` is the largest acknowledged 1-RTT packet number. Raises
        RuntimeError while no packet sent with the current keys has been acknowledged
        (no subsequent update before that, §6.1: the peer could not tell the phases
        apart) or without 1-RTT keys.
        """
        space = self.spaces[APPLICATION]
        read = space.read
        if space.write is None or not isinstance(read, OneRttReadKeys):
            raise RuntimeError("no 1-RTT keys")
        first = self.key_phase_first_pn
        if first is not None and largest_acked < first:
            raise RuntimeError("the current key phase is not acknowledged yet")
        space.write = space.write.next_generation()
        self.key_phase_first_pn = space.next_pn
        if read.next is None:
            read.next = read.current.next_generation()
        if self._qlog is not None:
            self._qlog.key_updated(None, Epoch.ONE_RTT, True, "local_update")
