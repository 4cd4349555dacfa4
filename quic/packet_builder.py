"""Assembling protected packets into UDP datagrams (RFC 9000 §12.2, §14.1, §17).

Theory of operation
-------------------
The connection decides *what* to send; this module decides *how it is laid out*.
A datagram is opened with a byte budget (path MTU, anti-amplification credit); then
packets are opened one at a time for a packet number space, frames are appended as
ready-made bytes, and each packet is closed. Several packets coalesce into one datagram
(Initial, then Handshake, then 1-RTT, §12.2). Headers and encryption are deferred to
:meth:`PacketAssembler.end_datagram`, because the last packet may still grow: a datagram
carrying an Initial packet is padded to 1200 bytes (§14.1) by appending PADDING to its
last packet, and every packet is padded to leave room for the header protection sample
(RFC 9001 §5.4.2).

Each open packet exposes a :class:`~quic.recovery.SentPacket` whose ``handlers`` the
frame writers fill, and whose flags (``ack_eliciting``, ``in_flight``, ``is_crypto``)
they set; the finished packets are returned so the connection can register them with
loss recovery. Payloads are lists of byte strings joined once, at encryption.

The bulk send path opens and seals a datagram of one 1-RTT packet with
:meth:`PacketAssembler.begin_short_datagram` / :meth:`PacketAssembler.end_short_datagram`:
1- and 2-byte packet numbers are encoded inline (the rest by
:func:`~quic.packet_number.encode_packet_number`), one packet record per assembler is
refilled rather than rebuilt, and a STREAM frame's header and data go in with one
:meth:`PacketAssembler.push_frame`.

A datagram never exceeds its budget: :meth:`PacketAssembler.push` refuses (ValueError,
a bug in the caller) a frame larger than :attr:`PacketAssembler.room`, so every frame
writer checks the room first and leaves what does not fit for the next packet. A
writer that needs the datagram expanded to 1200 bytes (PATH_RESPONSE, RFC 9000
§8.2.2) calls :meth:`PacketAssembler.expand_datagram`; like Initial padding it stays
within the budget (the anti-amplification limit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quic.packet import PacketType, encode_long_header, long_header_size
from quic.packet_number import MAX_PACKET_NUMBER, encode_packet_number
from quic.protection import AEAD_TAG_LENGTH, PacketProtector, min_payload_length
from quic.recovery import SentPacket
from quic.recovery_state import FrameHandler

__all__ = ["MIN_INITIAL_DATAGRAM", "PacketAssembler"]

#: RFC 9000 §14.1: datagrams carrying (ack-eliciting) Initial packets are this large.
MIN_INITIAL_DATAGRAM = 1200

#: Do not open a packet with less payload room than this (an ACK frame needs ~10).
MIN_PACKET_ROOM = 24


#: min_payload_length by packet number length (index 1..4), looked up per packet
_MIN_PAYLOAD = (0, *(min_payload_length(n) for n in (1, 2, 3, 4)))

# An Enum class attribute (``PacketType.ONE_RTT``) goes through EnumType.__getattr__'s
# slot on Python 3.11, ~10x a global load: the per-packet code reads module aliases.
_ONE_RTT = PacketType.ONE_RTT
_APPLICATION = 2  # PacketSpace.APPLICATION: 1-RTT packets (RFC 9000 §12.3)
_new_object = object.__new__
#: The handlers of the bulk loop's packets, whose one handler is flat (SentPacket.fate):
#: one shared empty tuple (an append raises, where a shared list would be corrupted)
_NO_HANDLERS: Any = ()

# Packets unacknowledged that 1 and 2 packet number bytes cover (RFC 9000 Appendix A.2)
_PN_RANGE_1 = 1 << 7
_PN_RANGE_2 = 1 << 15


class _Pending:
    __slots__ = (
        "chunks",
        "dcid",
        "key_phase",
        "packet_type",
        "pn_length",
        "protector",
        "scid",
        "sent",
        "size",
        "token",
        "truncated_pn",
        "version",
    )

    def __init__(
        self,
        packet_type: PacketType,
        version: int,
        dcid: bytes,
        scid: bytes,
        token: bytes,
        protector: PacketProtector,
        sent: SentPacket,
        pn_length: int,
        truncated_pn: int,
        key_phase: int,
    ) -> None:
        self.packet_type = packet_type
        self.version = version
        self.dcid = dcid
        self.scid = scid
        self.token = token
        self.protector = protector
        self.sent = sent
        self.pn_length = pn_length
        self.truncated_pn = truncated_pn
        self.key_phase = key_phase
        self.chunks: list[bytes | memoryview] = []
        self.size = 0  # payload bytes


class PacketAssembler:
    """Builds the datagrams of one ``datagrams_to_send`` call."""

    __slots__ = (
        "_budget",
        "_current",
        "_expand",
        "_has_initial",
        "_header_size",
        "_pending",
        "_short",
        "datagrams",
        "max_datagram_size",
        "packet",
        "packets",
        "room",
    )

    #: The open packet's recovery record (handlers, flags): an attribute set by the
    #: calls that open a packet (unset before the first), stale once it is closed.
    packet: SentPacket

    def __init__(self, max_datagram_size: int) -> None:
        self.max_datagram_size = max_datagram_size
        self.datagrams: list[bytes] = []
        self.packets: list[SentPacket] = []  # every finished packet, in send order
        self._pending: list[_Pending] = []
        self._current: _Pending | None = None
        self._budget = 0
        #: Payload bytes that still fit in the open packet (the open datagram's room
        #: before a packet is opened); an attribute, not a property: read per frame.
        self.room = 0
        self._header_size = 0
        self._has_initial = False
        self._expand = False
        self._short: _Pending | None = None  # begin_short_datagram's record, reused

    # -- datagrams --------------------------------------------------------------------

    def begin_datagram(self, budget: int) -> None:
        self._budget = self.room = min(budget, self.max_datagram_size)
        self._pending = []
        self._has_initial = False
        self._expand = False

    def expand_datagram(self) -> None:
        """Pad the open datagram to 1200 bytes when it ends (budget permitting)."""
        self._expand = True

    @property
    def datagram_room(self) -> int:
        """Bytes left in the open datagram (before any new packet's header and tag)."""
        return self.room

    @property
    def pending(self) -> list[_Pending]:
        """Packets of the open datagram, still in plaintext (read by qlog before sealing)."""
        return self._pending

    @property
    def datagram_empty(self) -> bool:
        return not self._pending and self._current is None

    def end_datagram(self, pad_initial: bool) -> int:
        """Encrypt and emit the open datagram; return its size (0 if it was empty).

        ``pad_initial``: pad to 1200 bytes if the datagram holds an Initial packet.
        """
        pending = self._pending
        if not pending:
            return 0
        if (pad_initial and self._has_initial) or self._expand:
            budget = self._budget
            missing = min(MIN_INITIAL_DATAGRAM, budget) - (budget - self.room)
            if missing > 0:
                last = pending[-1]
                last.chunks.append(bytes(missing))
                last.size += missing
                last.sent.size += missing
                self.room -= missing
        if len(pending) == 1:  # the bulk case: one 1-RTT packet per datagram
            out = self._seal(pending[0])
        else:
            out = b"".join([self._seal(p) for p in pending])
        self._pending = []
        self.datagrams.append(out)
        return len(out)

    # -- packets ----------------------------------------------------------------------

    def begin_packet(
        self,
        packet_type: PacketType,
        version: int,
        dcid: bytes,
        scid: bytes,
        protector: PacketProtector,
        space: int,
        packet_number: int,
        largest_acked: int | None,
        token: bytes = b"",
        key_phase: int = 0,
    ) -> bool:
        """Open a packet; False (nothing opened) if the datagram has too little room."""
        truncated, pn_length = encode_packet_number(packet_number, largest_acked)
        if packet_type is PacketType.ONE_RTT:
            header_size = 1 + len(dcid) + pn_length
        else:
            header_size = long_header_size(packet_type, len(dcid), len(scid), len(token), pn_length)
        if self.room - header_size - AEAD_TAG_LENGTH < MIN_PACKET_ROOM:
            return False
        sent = self.packet = SentPacket(
            space, packet_number, header_size + AEAD_TAG_LENGTH, False, False
        )
        self._current = _Pending(
            packet_type,
            version,
            dcid,
            scid,
            token,
            protector,
            sent,
            pn_length,
            truncated,
            key_phase,
        )
        self._header_size = header_size
        self.room -= header_size + AEAD_TAG_LENGTH
        return True

    def begin_short_datagram(
        self,
        budget: int,
        dcid: bytes,
        protector: PacketProtector,
        space: int,
        packet_number: int,
        largest_acked: int | None,
        key_phase: int,
    ) -> bool:
        """:meth:`begin_datagram` and :meth:`begin_packet` for a datagram of one 1-RTT
        packet (the send path's bulk loop); False (nothing opened) if it has too little
        room. Close it with :meth:`end_short_datagram`."""
        # encode_packet_number inline for 1 to 2**15 packets unacknowledged: 1 byte up
        # to 2**7, else 2 (RFC 9000 §17.1, Appendix A.2); the rest goes the long way
        unacked = packet_number + 1 if largest_acked is None else packet_number - largest_acked
        if 0 < unacked <= _PN_RANGE_2 and packet_number <= MAX_PACKET_NUMBER:
            if unacked <= _PN_RANGE_1:
                pn_length, truncated = 1, packet_number & 0xFF
            else:
                pn_length, truncated = 2, packet_number & 0xFFFF
        else:
            truncated, pn_length = encode_packet_number(packet_number, largest_acked)
        header_size = 1 + len(dcid) + pn_length  # RFC 9000 §17.3.1
        budget = budget if budget < self.max_datagram_size else self.max_datagram_size
        if budget - header_size - AEAD_TAG_LENGTH < MIN_PACKET_ROOM:
            return False
        self._budget = budget
        self._pending = []
        self._has_initial = self._expand = False
        sent = self.packet = SentPacket(
            space, packet_number, header_size + AEAD_TAG_LENGTH, False, False
        )
        current = self._short
        if current is None:
            current = self._short = _Pending(
                _ONE_RTT, 0, dcid, b"", b"", protector, sent, pn_length, truncated, key_phase
            )
        else:  # sealed and let go by end_short_datagram: refilled, not rebuilt
            current.dcid = dcid
            current.protector = protector
            current.sent = sent
            current.pn_length = pn_length
            current.truncated_pn = truncated
            current.key_phase = key_phase
            current.chunks = []
            current.size = 0
        self._current = current
        self._header_size = header_size
        self.room = budget - header_size - AEAD_TAG_LENGTH
        return True

    def end_short_datagram(self) -> int:
        """:meth:`end_packet` and :meth:`end_datagram` for a datagram opened by
        :meth:`begin_short_datagram`: its size, or 0 if the packet stayed empty."""
        current = self._current
        self._current = None
        if current is None or not current.size:
            return 0
        chunks = current.chunks
        short = _MIN_PAYLOAD[current.pn_length] - current.size
        if short > 0:
            chunks.append(bytes(short))  # PADDING frames (type 0x00)
            current.size += short
            current.sent.size += short
            self.room -= short
        self.packets.append(current.sent)
        payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        out = current.protector.encrypt_short(  # RFC 9000 §17.3.1
            current.dcid,
            current.pn_length,
            current.truncated_pn,
            current.key_phase,
            payload,
            current.sent.packet_number,
        )
        self.datagrams.append(out)
        return len(out)

    def short_frame_run(
        self,
        count: int,
        window: int,
        budget: int,
        dcid: bytes,
        protector: PacketProtector,
        packet_number: int,
        largest_acked: int | None,
        frames: Callable[[int, int], list[tuple[bytes, bytes | memoryview, FrameHandler]]],
    ) -> tuple[int, int]:
        """Up to ``count`` datagrams of one 1-RTT packet each (application space, the
        ``protector``'s key phase), numbered from ``packet_number``, each holding one
        frame of those ``frames(room, n)`` gives for ``n`` packets of ``room`` payload
        bytes — its header, its data and its fate handler (the send path's bulk loop:
        what :meth:`begin_short_datagram`, one :meth:`push_frame` and
        :meth:`end_short_datagram` would make, sealed one by one, without the open
        packet's record). A packet goes only while ``window`` (bytes the congestion
        window allows, less those sent) is at least ``budget``: ``n`` is never more than
        the packets of ``budget`` bytes the window takes, nor than those whose packet
        number has the same encoded length (the room would change), so every frame
        asked for is sent. The run ends after a list shorter than asked for (the next
        frame is not such a frame: nothing was taken for it). Returns how many
        datagrams were made and their bytes."""
        if budget > self.max_datagram_size:
            budget = self.max_datagram_size
        key_phase = protector.key_phase
        sealed = self.datagrams
        seal_run = protector.encrypt_short_run
        packets = self.packets
        sent_append = packets.append
        new_sent = _new_object
        base = 1 + len(dcid) + AEAD_TAG_LENGTH  # RFC 9000 §17.3.1, plus the AEAD tag
        pn = packet_number
        written = total = 0
        left = -1  # the last packet's room after its frame (the open packet's, as ever)
        while written < count and window >= budget:
            # begin_short_datagram's packet number encoding (RFC 9000 §17.1, A.2), once
            # per list of frames: each list stays within one encoded length
            unacked = pn + 1 if largest_acked is None else pn - largest_acked
            if 0 < unacked <= _PN_RANGE_2 and pn <= MAX_PACKET_NUMBER:
                if unacked <= _PN_RANGE_1:
                    pn_length = 1
                    same = _PN_RANGE_1 - unacked + 1  # packets at this length
                else:
                    pn_length = 2
                    same = _PN_RANGE_2 - unacked + 1
            else:
                pn_length = encode_packet_number(pn, largest_acked)[1]
                same = 1
            if budget - base - pn_length < MIN_PACKET_ROOM:
                break
            room = budget - base - pn_length
            asked = count - written
            fits = window // budget  # every frame asked for fits the window
            if fits < asked:
                asked = fits
            if same < asked:
                asked = same
            batch = frames(room, asked)
            if not batch:
                break
            minimum = _MIN_PAYLOAD[pn_length]
            overhead = base + pn_length  # the datagram's: header and AEAD tag
            first = pn  # the list's packets are sealed together: one header-protection call
            payloads: list[bytes] = []
            to_seal = payloads.append
            for header, data, handler in batch:
                payload = header + data
                size = len(payload)
                if size < minimum:
                    payload += bytes(minimum - size)  # PADDING frames (type 0x00)
                    size = minimum
                left = room - size
                size += overhead
                # SentPacket(_APPLICATION, pn, size) with its handler, without its
                # __init__ frame: every slot as __init__ sets it (an agreement test,
                # tests/quic/test_hot_path_inlines.py, keeps the two the same)
                sent = new_sent(SentPacket)
                sent.space = 2  # _APPLICATION
                sent.packet_number = pn
                sent.size = size
                sent.ack_eliciting = sent.in_flight = True
                sent.is_crypto = sent.is_app_limited = sent.ecn_marked = False
                sent.time_sent = sent.delivered_time = sent.first_sent_time = 0.0
                sent.handlers = _NO_HANDLERS
                sent.fate, sent.args = handler  # flat: no list, no tuple kept
                sent.delivered = -1
                sent.loss_event = 0
                sent_append(sent)
                to_seal(payload)
                pn += 1
                total += size
                window -= size
            sealed.extend(seal_run(dcid, key_phase, pn_length, first, payloads))
            self.room = left
            written += len(batch)
            if len(batch) < asked:
                break  # the list was short: the next frame is not one of them
        return written, total

    @property
    def payload_size(self) -> int:
        current = self._current
        return current.size if current is not None else 0

    def push(self, data: bytes | memoryview) -> None:
        """Append an encoded frame (or part of one) to the open packet."""
        current = self._current
        assert current is not None
        n = len(data)
        if n > self.room:
            raise ValueError(f"a {n}-byte frame does not fit the packet's room")
        current.chunks.append(data)
        current.size += n
        current.sent.size += n
        self.room -= n

    def push_frame(self, header: bytes, data: bytes | memoryview) -> None:
        """:meth:`push` of a frame header and its data (a STREAM frame) in one call."""
        current = self._current
        assert current is not None
        n = len(header) + len(data)
        if n > self.room:
            raise ValueError(f"a {n}-byte frame does not fit the packet's room")
        chunks = current.chunks
        chunks.append(header)
        chunks.append(data)
        current.size += n
        current.sent.size += n
        self.room -= n

    def end_packet(self) -> SentPacket | None:
        """Close the open packet; an empty one is abandoned (returns None)."""
        current = self._current
        self._current = None
        if current is None:
            return None
        if not current.size:
            self.room += self._header_size + AEAD_TAG_LENGTH
            return None
        short = _MIN_PAYLOAD[current.pn_length] - current.size
        if short > 0:
            current.chunks.append(bytes(short))  # PADDING frames (type 0x00)
            current.size += short
            current.sent.size += short
            self.room -= short
        if current.packet_type is PacketType.INITIAL:
            self._has_initial = True
        self._pending.append(current)
        self.packets.append(current.sent)
        return current.sent

    def _seal(self, p: _Pending) -> bytes:
        chunks = p.chunks
        payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if p.packet_type is PacketType.ONE_RTT:
            return p.protector.encrypt_short(  # RFC 9000 §17.3.1
                p.dcid, p.pn_length, p.truncated_pn, p.key_phase, payload, p.sent.packet_number
            )
        header = encode_long_header(
            p.packet_type,
            p.version,
            p.dcid,
            p.scid,
            p.token,
            p.pn_length + p.size + AEAD_TAG_LENGTH,
            p.pn_length,
            p.truncated_pn,
        )
        return p.protector.encrypt_packet(header, payload, p.sent.packet_number)
