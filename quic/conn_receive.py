"""Reading packets: from a protected packet to frames handed to their owners.

Theory of operation
-------------------
The connection splits a datagram into its coalesced packets (RFC 9000 §12.2) and
routes Version Negotiation, Retry and packets of another version itself (an Initial
of the version a compatible version negotiation left is read with that version's
kept keys, RFC 9369 §4); every other packet goes to :class:`PacketReader`, which

1. picks the packet number space from the packet type (RFC 9000 §12.3); 0-RTT packets
   belong to the application space and are opened with the 0-RTT keys by a server that
   accepted 0-RTT (:meth:`PacketReader.read_zero_rtt`); a client drops them;
2. keeps a packet whose keys have not arrived yet — at most
   ``max_buffered_undecryptable_packets`` of them (RFC 9001 §5.7) — and releases them
   for another try when keys are installed (:meth:`PacketReader.release_buffered`);
3. removes packet protection with the space's keys (:meth:`~quic.conn_keys.
   PacketSpaces.open`); a packet that does not authenticate is dropped without any
   state change (RFC 9001 §5.2, RFC 9000 §12.2);
4. checks the reserved header bits (RFC 9000 §17.2, §17.3.1: PROTOCOL_VIOLATION) and
   drops duplicates (RFC 9000 §12.3);
5. dispatches the frames (:class:`~quic.conn_dispatch.FrameDispatcher`) and records
   the packet number for acknowledgment (:class:`~quic.conn_acks.AckState`), and the
   datagram's ECN codepoint in the space's ECN counts (:class:`~quic.conn_ecn.
   EcnController`, RFC 9000 §13.4.1: processed packets only; a CE-marked ack-eliciting
   packet is acknowledged at once, §13.2.1). Buffered packets keep their codepoint.

A datagram holding a single 1-RTT packet — the common case once the handshake is
confirmed — takes :meth:`PacketReader.read_short`, which needs no header object; a
batch of them (a GRO read, :mod:`quic.conn_batch`) takes
:meth:`PacketReader.read_short_run`, the same steps in one loop: what cannot change
between its packets is looked up once, in-order packets of one key phase are opened a
run at a time (``PacketUnprotector.open_short_run``, with the batch's header protection
masks), the processed and ECT(0) counts are added once,
in-order ack-eliciting packets are noted in the ACK tracker without a call (recorded
together by :meth:`~quic.ack.AckTracker.settle`, before any other use of the tracker),
and the run stops where the connection must look — a datagram of another shape, one
that did not open, a packet with a frame beyond STREAM, DATAGRAM, ACK, PADDING and PING
(``FrameDispatcher.general``: a close, a path response, new keys...). In such a run,
packets that each hold one STREAM frame (OFF and LEN, no FIN, the 8-byte header of
``unpack_bulk_stream_fields``) filling the payload, each starting where the one before
ended on the same stream — a bulk transfer's — are not dispatched one by one: they are
held and handed to the stream as one frame (``FrameDispatcher.stream_run``, the same
checks and bytes) before any other packet is dispatched and when the run ends, so
frames still reach their owners in packet order. Once a run is held, the opened
packets that go on with it, each with the next packet number, are taken in a tight
loop that only checks each one's frame header and holds it (the ACK tracker's note,
the newest packet and the counts are written once for them all). Without qlog only
(it logs each packet's frames).
Dropped packets are counted (``dropped``) and logged to qlog; processed ones too
(``processed``), so the endpoint can tell a connection that never authenticated a
packet.
"""

from __future__ import annotations

import struct
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any

from quic.conn_ecn import ECN_ECT0
from quic.conn_keys import APPLICATION, HANDSHAKE, INITIAL, OneRttReadKeys
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.frames import unpack_bulk_stream_fields
from quic.packet import PacketHeader, PacketType
from quic.protection import DecryptionError

if TYPE_CHECKING:
    from collections.abc import Callable

    from quic.cid import ConnectionIdManager
    from quic.conn_acks import AckState
    from quic.conn_dispatch import FrameDispatcher
    from quic.conn_ecn import EcnController
    from quic.conn_handshake import HandshakeDriver
    from quic.conn_keys import PacketSpaces
    from quic.qlog import QuicLogger

__all__ = ["PacketReader"]

_LONG_RESERVED_BITS = 0x0C  # RFC 9000 §17.2
_SHORT_RESERVED_BITS = 0x18  # RFC 9000 §17.3.1
_ECT0 = ECN_ECT0
_APPLICATION_ECT0 = APPLICATION * 3  # its count in EcnController.received_counts
# An Enum class attribute (``PacketType.ONE_RTT``) goes through EnumType.__getattr__'s
# slot on Python 3.11, ~10x a global load: the per-packet code reads module aliases.
_ONE_RTT = PacketType.ONE_RTT
_SPACE_OF_TYPE = {
    PacketType.INITIAL: INITIAL,
    PacketType.HANDSHAKE: HANDSHAKE,
    PacketType.ONE_RTT: APPLICATION,
}


def _no_append(payload: bytes) -> None:  # never called: no run is held yet
    raise AssertionError


#: A bulk STREAM frame's 8-byte header (type, one-byte stream ID, 4-byte offset, 2-byte
#: length: ``unpack_bulk_stream_fields``' shape) read as one big-endian number.
_BULK_HEADER = struct.Struct(">Q").unpack_from
#: A held run is taken this way while its offset field stays below this whatever its
#: pieces (under 2^14 bytes each): within the 4-byte varint's range (0b10 prefix), so
#: the number never carries from one field into the next.
_BULK_RAW_CEILING = 0xC0000000


def _bulk_next_header(sid: int, raw: int) -> int:
    """The header, as :data:`_BULK_HEADER` reads it, of the bulk STREAM frame of
    stream ``sid`` (below 0x40) at ``raw`` (the offset field, with its 0b10 varint
    prefix) whose packet payload is ``size`` bytes, less ``size``: type 0x0E (OFF and
    LEN, no FIN), and a length field of ``size - 8`` with its 0b01 prefix."""
    return (0x0E << 56 | sid << 48 | raw << 16) + 0x3FF8


def _reserved_bits_error() -> QuicProtocolError:
    return QuicProtocolError(TransportErrorCode.PROTOCOL_VIOLATION, "reserved header bits set")


class PacketReader:
    """Opens the packets of one connection and dispatches their frames."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_acks",
        "_buffer_limit",
        "_buffered",
        "_cids",
        "_dispatcher",
        "_ecn",
        "_ecn_counts",
        "_handshake",
        "_is_client",
        "_keys",
        "_qlog",
        "authenticated",
        "dropped",
        "newest_dcid",
        "newest_non_probing",
        "processed",
        "reprocess",
        "run_end",
        "run_failed",
        "zero_rtt_processed",
    )

    def __init__(
        self,
        *,
        is_client: bool,
        keys: PacketSpaces,
        acks: AckState,
        dispatcher: FrameDispatcher,
        handshake: HandshakeDriver,
        cids: ConnectionIdManager,
        ecn: EcnController,
        buffer_limit: int,
        qlog: QuicLogger | None,
    ) -> None:
        self._is_client = is_client
        self._keys = keys
        self._acks = acks
        self._dispatcher = dispatcher
        self._handshake = handshake
        self._cids = cids
        self._ecn = ecn
        self._ecn_counts = ecn.received_counts  # read_short's ECT(0) count, no call
        self._buffer_limit = buffer_limit
        self._qlog = qlog
        # (packet, address, ECN codepoint) waiting for their keys; both deques are made
        # by their first packet (most connections never need them: no idle memory)
        self._buffered: deque[tuple[bytes, Any, int]] | None = None
        # keys arrived: to be tried again (the connection pops them; read-only elsewhere;
        # once made, never replaced: the connection holds it while it drains it)
        self.reprocess: deque[tuple[bytes, Any, int]] | None = None
        self.dropped = 0
        self.processed = 0
        self.zero_rtt_processed = 0  # 0-RTT packets opened (server)
        # a long-header packet passed AEAD (1-RTT only follows one): the endpoint keeps a
        # new server connection only then (RFC 9001 §5.2, RFC 9000 §12.2)
        self.authenticated = False
        # RFC 9000 §9.3: the datagram being read held a 1-RTT packet that was non-probing
        # and the highest-numbered so far (the connection resets it per datagram)
        self.newest_non_probing = False
        self.newest_dcid = b""  # Destination Connection ID of the highest 1-RTT packet
        # the last datagram read_short_run looked at was read as read_short returning
        # False would (not opened, or a duplicate): the connection checks it for a
        # stateless reset (RFC 9000 §10.3.1)
        self.run_failed = False
        self.run_end = 0  # read_short_run's end, also when an error cut it short

    # -- bookkeeping ------------------------------------------------------------------

    def drop(self, now: float, trigger: str, packet_type: PacketType | None = None) -> None:
        """Count a dropped packet (and log it, qlog ``transport:packet_dropped``)."""
        self.dropped += 1
        if self._qlog is not None:
            self._qlog.packet_dropped(now, trigger, packet_type)

    @property
    def pending_buffered(self) -> int:
        return len(self._buffered) if self._buffered else 0

    @property
    def pending_reprocess(self) -> int:
        return len(self.reprocess) if self.reprocess else 0

    def _buffer(self, item: tuple[bytes, Any, int]) -> None:
        if self._buffered is None:
            self._buffered = deque()
        self._buffered.append(item)

    def release_buffered(self) -> None:
        """New read keys: the buffered packets get another try."""
        buffered = self._buffered
        if not buffered:
            return
        reprocess = self.reprocess
        if reprocess is None:
            reprocess = self.reprocess = deque()
        while buffered:
            reprocess.append(buffered.popleft())

    # -- packets ----------------------------------------------------------------------

    def read_long(
        self, data: bytes, pos: int, header: PacketHeader, addr: Any, now: float, ecn: int = 0
    ) -> int | None:
        """Process one packet of our version; returns its space, or None if dropped."""
        packet_type = header.packet_type
        index = _SPACE_OF_TYPE.get(packet_type) if packet_type is not None else None
        if packet_type is PacketType.ZERO_RTT and not self._is_client:
            return self.read_zero_rtt(data, pos, header, addr, now)
        if index is None or packet_type is None:  # 0-RTT at a client, or unknown
            self.drop(now, "unsupported", packet_type)
            return None
        space = self._keys.spaces[index]
        if space.read is None:
            if not space.discarded and self.pending_buffered < self._buffer_limit:
                self._buffer((bytes(data[pos : header.end]), addr, ecn))  # RFC 9001 §5.7
            else:
                self.drop(now, "key_unavailable", packet_type)
            return None
        acks = self._acks
        view = memoryview(data)[pos : header.end]
        opened = self._keys.open(
            index, view, header.pn_offset - pos, acks.largest(index), now, header.version
        )
        if opened is None:
            self.drop(now, "decryption_failure", packet_type)
            return None
        self.authenticated = True
        plain_header, pn, payload = opened
        reserved = _LONG_RESERVED_BITS if header.is_long else _SHORT_RESERVED_BITS
        if plain_header[0] & reserved:
            raise _reserved_bits_error()  # RFC 9000 §17.2, §17.3.1
        if acks.is_duplicate(index, pn):
            return None
        if self._qlog is not None:
            self._qlog.packet_received(
                now, packet_type, pn, payload, header.end - pos, header.dcid, header.scid
            )
        if self._is_client and index == INITIAL and self._handshake.peer_initial_scid is None:
            # RFC 9000 §7.2: switch to the server's chosen connection ID
            self._handshake.on_server_initial(header.scid)
            self._cids.set_initial_peer_cid(header.scid)
        largest = acks.largest(index)
        eliciting = self._dispatcher.dispatch(payload, index, packet_type, header.dcid, now)
        if index == APPLICATION and pn > largest:
            self._note_newest(header.dcid)
        ce = bool(ecn) and self._ecn.on_packet_received(index, ecn)
        acks.on_packet(index, pn, eliciting, now, ce)  # CE: RFC 9000 §13.2.1, ack-frequency §6.3
        self.processed += 1
        return index

    def read_zero_rtt(
        self, data: bytes, pos: int, header: PacketHeader, addr: Any, now: float, ecn: int = 0
    ) -> int | None:
        """A 0-RTT packet at a server (RFC 9001 §4.6): kept until the ClientHello has
        been processed (RFC 9001 §4.7, within the buffer limit), dropped once 0-RTT is
        refused or its keys are discarded; else opened and dispatched like a 1-RTT one."""
        keys = self._keys
        if keys.zero_rtt_read is None:
            if (
                not keys.zero_rtt_discarded
                and keys.spaces[HANDSHAKE].read is None  # TLS has not decided yet
                and self.pending_buffered < self._buffer_limit
            ):
                self._buffer((bytes(data[pos : header.end]), addr, ecn))
            else:
                self.drop(now, "key_unavailable", PacketType.ZERO_RTT)
            return None
        acks = self._acks
        view = memoryview(data)[pos : header.end]
        opened = keys.open_zero_rtt(view, header.pn_offset - pos, acks.largest(APPLICATION))
        if opened is None:
            self.drop(now, "decryption_failure", PacketType.ZERO_RTT)
            return None
        self.authenticated = True
        plain_header, pn, payload = opened
        if plain_header[0] & _LONG_RESERVED_BITS:
            raise _reserved_bits_error()  # RFC 9000 §17.2
        if acks.is_duplicate(APPLICATION, pn):
            return None
        if self._qlog is not None:
            self._qlog.packet_received(now, PacketType.ZERO_RTT, pn, payload, header.end - pos)
        dispatcher = self._dispatcher
        eliciting = dispatcher.dispatch(payload, APPLICATION, PacketType.ZERO_RTT, header.dcid, now)
        acks.on_packet(APPLICATION, pn, eliciting, now)
        self.processed += 1
        self.zero_rtt_processed += 1
        return APPLICATION

    def _note_newest(self, dcid: bytes) -> None:
        """The packet just dispatched is the highest-numbered 1-RTT packet yet."""
        self.newest_dcid = bytes(dcid)
        if self._dispatcher.non_probing:
            self.newest_non_probing = True

    def short_masks(self, datagrams: list[bytes], cid_len: int) -> bytes | None:
        """The header-protection masks of ``datagrams`` as short-header packets, for
        :meth:`read_short` (``PacketUnprotector.short_masks``; the 1-RTT header
        protection key never changes, RFC 9001 §6); None without 1-RTT keys."""
        read = self._keys.spaces[APPLICATION].read
        if type(read) is not OneRttReadKeys:
            return None
        return read.current.short_masks(datagrams, 1 + cid_len)

    def read_short(
        self,
        data: bytes,
        cid_len: int,
        now: float,
        ecn: int = 0,
        masks: bytes | None = None,
        at: int = 0,
    ) -> bool:
        """:meth:`read_long` for a datagram holding one short-header packet (the bulk
        path: the application space's ACK tracker is used directly); its header
        protection mask at ``at`` in ``masks`` if given (:meth:`short_masks`)."""
        tracker = self._acks.trackers[APPLICATION]
        keys = self._keys
        read = keys.spaces[APPLICATION].read
        opened: tuple[bytes, int, bytes | None] | None
        if type(read) is OneRttReadKeys:  # PacketSpaces.open_short's common case, inline:
            try:  # a call less per packet of a bulk transfer
                opened = read.current.open_short(data, 1 + cid_len, tracker.largest, masks, at)
            except DecryptionError:
                keys.on_auth_failure()  # RFC 9001 §6.6 (may raise AEAD_LIMIT_REACHED)
                opened = None
            if opened is not None and opened[2] is None:
                # the other Key Phase (RFC 9001 §6): the generations, the whole way
                opened = keys.open_short(data, 1 + cid_len, tracker.largest, now)
        else:
            opened = keys.open_short(data, 1 + cid_len, tracker.largest, now)
        if opened is None:
            self.drop(now, "decryption_failure", PacketType.ONE_RTT)
            return False
        plain_header, pn, payload = opened
        if payload is None:  # never: PacketSpaces.open_short opens either phase
            return False
        if plain_header[0] & _SHORT_RESERVED_BITS:
            raise _reserved_bits_error()  # RFC 9000 §17.3.1
        if pn <= tracker.largest and tracker.is_duplicate(pn):  # above it: never seen
            return False
        dcid = data[1 : 1 + cid_len]
        largest = tracker.largest
        if self._qlog is not None:
            self._qlog.packet_received(now, PacketType.ONE_RTT, pn, payload, len(data), dcid)
        eliciting = self._dispatcher.dispatch(payload, APPLICATION, _ONE_RTT, dcid, now)
        if pn > largest:  # _note_newest, inline
            self.newest_dcid = dcid if type(dcid) is bytes else bytes(dcid)
            if self._dispatcher.non_probing:
                self.newest_non_probing = True
        if ecn == _ECT0:  # what an ECN-capable sender marks: counted here, not CE
            self._ecn_counts[_APPLICATION_ECT0] += 1  # as EcnController.on_packet_received
            ce = False
        else:
            ce = bool(ecn) and self._ecn.on_packet_received(APPLICATION, ecn)
        tracker.on_packet(pn, eliciting, now, ce)  # CE: RFC 9000 §13.2.1, ack-frequency §6.3
        self.processed += 1
        return True

    def read_short_run(
        self,
        datagrams: list[bytes],
        start: int,
        cid_len: int,
        now: float,
        ecn: int = 0,
        masks: bytes | None = None,
    ) -> int:
        """:meth:`read_short` for ``datagrams[start:]`` while each is one short-header
        packet (their header protection masks in ``masks``, 16 bytes per datagram of
        the list, if given); returns the index of the first datagram not read. It
        stops before a datagram of another shape and after one that did not open or was
        a duplicate (``run_failed`` tells), held a frame that may have changed the
        connection's state (``FrameDispatcher.general``; new keys, which make packets to
        reprocess, come only with such frames)."""
        self.run_failed = False
        read = self._keys.spaces[APPLICATION].read
        if type(read) is not OneRttReadKeys:  # no 1-RTT keys: read_short's way
            self.run_failed = not self.read_short(datagrams[start], cid_len, now, ecn)
            return start + 1
        keys = self._keys
        tracker = self._acks.trackers[APPLICATION]
        on_packet = tracker.on_packet
        dispatcher = self._dispatcher
        dispatch = dispatcher.dispatch
        dispatcher.general = False
        qlog = self._qlog
        pn_offset = 1 + cid_len
        shortest = cid_len + 20  # the sample must fit (RFC 9001 §5.4.2)
        other_ecn = ecn and ecn != _ECT0  # ECT(1), CE: EcnController counts them
        current = read.current
        # in-order ack-eliciting packets are noted in the tracker, recorded once
        # (AckTracker.settle): not CE-marked, no reordering threshold to check
        noting = not other_ecn and tracker.reordering_threshold <= 1 and not tracker.immediate
        expect = tracker.largest + 1  # the next packet number (the tracker is settled)
        processed = 0
        non_probing = False  # that packet was non-probing (RFC 9000 §9.3)
        index = start
        end = len(datagrams)
        # The bulk case, packets of one STREAM frame each, in order on one stream: held
        # and handed to the dispatcher as one frame (FrameDispatcher.stream_run), before
        # any other packet is dispatched and at the end of the run (without qlog, which
        # logs each packet's frames)
        bulk = qlog is None
        unpack_stream = unpack_bulk_stream_fields
        bulk_header = _BULK_HEADER
        stream_run = dispatcher.stream_run
        held: list[bytes] | None = None
        held_append: Callable[[bytes], None] = _no_append
        run_sid = run_next = -1  # the held frames' stream, the raw offset after them
        run_offset = 0  # the first held frame's
        # Runs of plain in-order packets are opened in one call (open_short_run, with
        # the batch's masks); the datagram it stops before is opened here
        opened_pns: list[int] = []
        opened: list[bytes] = []
        taken = count = 0  # of the opened packets: those handled, all
        open_run = current.open_short_run if masks is not None else None
        run_masks = masks or b""  # (for open_run: never empty when it is set)
        # packets opened ahead and not read (after a frame that ends the run) are opened
        # again by the next read: the runs double, from 16 at a batch's start and from
        # one after a run that ended so, so at most as many as read, and 15 a batch
        chunk = 16 if start == 0 else 1
        newest_at = -1  # the index of the highest-numbered packet's datagram, once one came
        try:
            while index < end:
                largest = expect - 1
                if held and noting and taken < count:
                    # A run is held: the opened packets that go on with it, each the next
                    # packet number (so the newest, and noted), are taken in a tight loop
                    # — what the general steps below do for such a packet, the tracker's
                    # note, the newest packet and the counts written once for them all.
                    # The opened numbers only rise: those up to count are the next ones
                    # when the last is as far from the first as their count says
                    stop = count
                    if opened_pns[count - 1] - expect != count - 1 - taken:  # a gap
                        stop = taken
                        while stop < count and opened_pns[stop] == expect + stop - taken:
                            stop += 1
                    before = len(held)
                    # each one's 8-byte header read as one number: the next piece's (plus
                    # the packet's size, its length field) or not (_bulk_next_header),
                    # while the offset field cannot leave its 4-byte range
                    want = _bulk_next_header(run_sid, run_next)
                    if run_next + ((stop - taken) << 14) >= _BULK_RAW_CEILING:
                        stop = taken  # (a run past 1 GiB: the general steps, below)
                    for payload in islice(opened, taken, stop):
                        size = len(payload)
                        if size <= 8 or size >= 0x4008 or bulk_header(payload)[0] != want + size:
                            break
                        held_append(payload)
                        want += (size - 8) << 16  # the next piece starts after its data
                    n = len(held) - before
                    if n:
                        run_next = ((want - 0x3FF8) >> 16) & 0xFFFFFFFF
                        if tracker.noted_first < 0:
                            tracker.noted_first = expect
                            tracker.noted_time = now
                        tracker.noted_stop = expect = expect + n
                        index += n
                        processed += n
                        taken += n
                        newest_at = index - 1
                        non_probing = True  # STREAM frames (RFC 9000 §9.1)
                        continue
                if taken < count:  # an opened packet: new, this key, reserved bits clear
                    pn = opened_pns[taken]
                    payload = opened[taken]
                    taken += 1
                    index += 1
                else:
                    if open_run is not None:
                        opened_pns, opened = open_run(
                            datagrams, index, pn_offset, largest, run_masks, chunk
                        )
                        chunk <<= 1
                        count = len(opened)
                        if count:
                            taken = 0
                            continue
                    data = datagrams[index]
                    if len(data) <= shortest or data[0] & 0xC0 != 0x40:
                        break  # not one 1-RTT packet: the connection's general way
                    at = index << 4
                    index += 1
                    try:
                        plain_header, pn, opened_payload = current.open_short(
                            data, pn_offset, largest, masks, at
                        )
                    except DecryptionError:
                        keys.on_auth_failure()  # RFC 9001 §6.6 (may raise AEAD_LIMIT_REACHED)
                        self.drop(now, "decryption_failure", _ONE_RTT)
                        self.run_failed = True
                        break
                    if opened_payload is None:
                        # the other Key Phase (RFC 9001 §6): the generations, the whole way
                        reopened = keys.open_short(data, pn_offset, largest, now)
                        current = read.current
                        if open_run is not None:
                            open_run = current.open_short_run
                        if reopened is None:
                            self.drop(now, "decryption_failure", _ONE_RTT)
                            self.run_failed = True
                            break
                        plain_header, pn, opened_payload = reopened
                    if plain_header[0] & _SHORT_RESERVED_BITS:
                        raise _reserved_bits_error()  # RFC 9000 §17.3.1
                    if pn <= largest and tracker.is_duplicate(pn):  # above it: never seen
                        self.run_failed = True
                        break
                    payload = opened_payload
                if bulk and 8 < (size := len(payload)) < 0x4008 and payload[0] == 0x0E:
                    sid, raw, length = unpack_stream(payload, 1)  # varint prefixes kept
                    fills = length == size + 0x3FF8  # one STREAM frame filling it
                else:
                    fills = False
                if fills and raw == run_next and sid == run_sid:  # the run's next piece
                    held_append(payload)
                    run_next = raw + size - 8
                    eliciting = True
                    if pn > largest:
                        newest_at = index - 1
                        non_probing = True  # a STREAM frame (RFC 9000 §9.1)
                elif fills and sid < 0x40 and raw >> 30 == 2:  # the start of a run
                    if held:
                        stream_run(run_sid, run_offset, held, now)
                    held = [payload]
                    held_append = held.append
                    run_sid = sid
                    run_offset = raw & 0x3FFFFFFF
                    run_next = raw + size - 8
                    eliciting = True
                    if pn > largest:
                        newest_at = index - 1
                        non_probing = True
                else:
                    data = datagrams[index - 1]
                    dcid = data[1:pn_offset]
                    if qlog is not None:
                        qlog.packet_received(now, _ONE_RTT, pn, payload, len(data), dcid)
                    if held:
                        stream_run(run_sid, run_offset, held, now)
                        held = None
                        run_next = -1
                    eliciting = dispatch(payload, APPLICATION, _ONE_RTT, dcid, now)
                    if pn > largest:
                        newest_at = index - 1
                        if dispatcher.non_probing:
                            non_probing = True
                if pn == expect and eliciting and noting:  # AckTracker.on_packet, noted
                    if tracker.noted_first < 0:  # (a frame's call may have settled it)
                        tracker.noted_first = pn
                        tracker.noted_time = now
                    tracker.noted_stop = expect = pn + 1
                else:
                    # CE: RFC 9000 §13.2.1, ack-frequency §6.3 (ECT(0) is counted below)
                    if other_ecn:
                        ce = self._ecn.on_packet_received(APPLICATION, ecn)
                        on_packet(pn, eliciting, now, ce)
                    else:
                        on_packet(pn, eliciting, now)
                    expect = tracker.largest + 1
                processed += 1
                if dispatcher.general:  # (packets to reprocess only follow such frames)
                    break  # the connection looks before the next packet is read
            if held:
                stream_run(run_sid, run_offset, held, now)
        finally:
            if tracker.noted_first >= 0:
                tracker.settle()
            self.run_end = index
            self.processed += processed
            if ecn == _ECT0:
                self._ecn_counts[_APPLICATION_ECT0] += processed  # EcnController's count
            if newest_at >= 0:  # _note_newest, once
                self.newest_dcid = bytes(datagrams[newest_at][1:pn_offset])
                if non_probing:
                    self.newest_non_probing = True
        return index
