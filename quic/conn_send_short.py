"""The short passes of :meth:`SendScheduler.build <quic.conn_send.SendScheduler.build>`
(RFC 9000 §12.2, §13; RFC 9002 §7): one datagram of one 1-RTT packet with the frames a
reply carries (``write_reply``: a datagram ping-pong, an echo), and runs of 1-RTT packets
of STREAM frames (``write_bulk``: a bulk transfer). Each writes what the general
per-space loop would write in those cases, registered with loss recovery, ECN and the
pacer as it does; the scheduler takes them as its methods ``_write_reply`` and
``_write_bulk`` and decides when they apply (see :mod:`quic.conn_send`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quic.ack import MAX_ACK_RANGES
from quic.conn_keys import APPLICATION
from quic.conn_send_side import push_ping
from quic.frames_ack import encode_ack_frame
from quic.packet_builder import MIN_PACKET_ROOM
from quic.packet_number import MAX_PACKET_NUMBER
from quic.protection import AEAD_TAG_LENGTH, min_payload_length
from quic.recovery_state import SentPacket

if TYPE_CHECKING:
    from quic.conn_send import SendScheduler
    from quic.pacing import Pacer
    from quic.packet_builder import PacketAssembler

__all__ = ["MAX_ACK_ONLY_RUN", "write_bulk", "write_datagram_reply", "write_reply"]

_new_object = object.__new__
_ECN_BASE = APPLICATION * 3  # the space's ECT(0), ECT(1), CE counts in received_counts
_MIN_PAYLOAD_1 = min_payload_length(1)  # a one-byte packet number's (RFC 9001 §5.4.2)
_DATAGRAM_1 = tuple(bytes((0x31, n)) for n in range(0x40))  # DATAGRAM with Length, 1 byte

#: ACK-only packets in a row after which one carries a PING (RFC 9000 §13.2.4).
MAX_ACK_ONLY_RUN = 16


def write_reply(
    sched: SendScheduler,
    asm: PacketAssembler,
    pacer: Pacer,
    mtu: int,
    now: float,
    marked: bool,
    streamed: bool = False,
) -> tuple[int, bool] | None:
    """The first pass of ``SendScheduler.build``'s loop when ``SendScheduler._reply_kind``
    allows it (a datagram ping-pong, an echo): one datagram of one 1-RTT packet with the
    ACK ``SendScheduler._write_space`` would put in and the queued DATAGRAM frames that
    fit — ``streamed``: the control and STREAM frames too, in
    ``SendScheduler._write_application``'s order (with nothing ack-eliciting queued: the
    ACK if it is due, else nothing, no packet number taken), registered with loss
    recovery, ECN and the pacer as the loop does. Returns its size (0: nothing was
    written) and whether it is ack-eliciting; None, having changed nothing, when the
    window or the pacer holds ack-eliciting frames back or the datagram has no room (the
    general loop then decides)."""
    recovery = sched._recovery
    if recovery.congestion.available() < mtu or pacer.next_send_time(now, mtu) > now:
        return None  # RFC 9002 §7, §7.7: the general path knows what may go
    acks = sched._acks
    tracker = acks.trackers[APPLICATION]
    deadline = tracker.deadline  # acks.due(): wants_ack(), inline
    ack_due = deadline is not None and deadline <= now
    datagrams = sched._datagrams
    waiting = datagrams.pending > 0
    eliciting = waiting or streamed
    if not eliciting and not ack_due:
        return 0, False  # nothing may go (an ACK not due waits for its timer)
    space = sched._keys.spaces[APPLICATION]
    write = space.write
    assert write is not None
    if not asm.begin_short_datagram(
        mtu,
        sched._cids.peer_cid,
        write,
        APPLICATION,
        space.next_pn,
        recovery.spaces[APPLICATION].largest_acked,
        write.key_phase,
    ):
        return None
    space.next_pn += 1
    packet = asm.packet
    # acks.should_include(), inline (eliciting here unless ack_due: returned above)
    if tracker.largest >= 0 and (ack_due or deadline is not None or tracker.fresh):
        reserve = 0 if ack_due else datagrams.room_needed(asm.room)
        counts = sched._ecn.received_counts  # EcnController.counts(), inline
        ect0, ect1, ce = counts[_ECN_BASE], counts[_ECN_BASE + 1], counts[_ECN_BASE + 2]
        ecn = (ect0, ect1, ce) if ect0 or ect1 or ce else None
        acks.write(asm, APPLICATION, now, reserve, ecn)
    if streamed:
        streams = sched._streams
        if streams.wants_control():
            streams.write_control(asm)
        datagrams.write(asm)
        streams.write_streams(asm)
    elif waiting:
        datagrams.write(asm)
    run = sched._ack_only_run
    if packet.ack_eliciting:
        run[APPLICATION] = 0
    else:
        run[APPLICATION] += 1
        if run[APPLICATION] >= MAX_ACK_ONLY_RUN:
            push_ping(asm)  # RFC 9000 §13.2.4: get our ACKs acknowledged
            run[APPLICATION] = 0
    size = asm.end_short_datagram()
    if not size:
        return 0, False
    if marked:
        sched._ecn.on_packet_sent(packet)  # RFC 9000 §13.4.2: learn its fate
    recovery.on_packet_sent(packet, now)
    eliciting = packet.ack_eliciting
    if eliciting:
        pacer.on_packet_sent(size, now)
    return size, eliciting


def write_datagram_reply(
    sched: SendScheduler, pacer: Pacer, mtu: int, now: float, marked: bool
) -> bytes | None:
    """:func:`write_reply` for its most common case, written in one function without a
    :class:`~quic.packet_builder.PacketAssembler`: one DATAGRAM frame queued (a
    ping-pong, an echo), nothing else but the ACK, which fits in front of it with a
    one-byte packet number (RFC 9000 §17.1: under 128 packets unacknowledged), no
    truncated ranges. Returns the protected datagram, every record updated as
    ``write_reply`` updates it (the same bytes: tests/quic/test_reply_path.py); None,
    having changed nothing, in any other case (``write_reply`` then decides). The
    caller made sure of what ``write_reply``'s caller does (``_reply_kind`` 1)."""
    datagrams = sched._datagrams
    queue = datagrams._queue
    if datagrams.pending != 1 or queue is None:
        return None
    recovery = sched._recovery
    if recovery.congestion.available() < mtu or pacer.next_send_time(now, mtu) > now:
        return None  # RFC 9002 §7, §7.7: the general path knows what may go
    space = sched._keys.spaces[APPLICATION]
    pn = space.next_pn
    largest_acked = recovery.spaces[APPLICATION].largest_acked
    unacked = pn + 1 if largest_acked is None else pn - largest_acked
    if not 0 < unacked <= 0x80 or pn > MAX_PACKET_NUMBER:
        return None  # not a one-byte Packet Number field (RFC 9000 Appendix A.2)
    dcid = sched._cids.peer_cid
    header_size = 2 + len(dcid)  # first byte, DCID, one-byte packet number (§17.3.1)
    room = mtu - header_size - AEAD_TAG_LENGTH
    data = queue[0]
    n = len(data)
    if room < MIN_PACKET_ROOM or n >= 0x4000:
        return None
    # the DATAGRAM frame with its Length (RFC 9221 §4), as DatagramChannel.write has it
    frame = _DATAGRAM_1[n] + data if n < 0x40 else bytes((0x31, 0x40 | n >> 8, n & 0xFF)) + data
    acks = sched._acks
    tracker = acks.trackers[APPLICATION]
    deadline = tracker.deadline
    ack = None
    # acks.should_include() for an ack-eliciting packet, inline
    if tracker.largest >= 0 and (deadline is not None or tracker.fresh):
        # AckState.write's frame, inline: all ranges, as they fit or this declines
        ranges = tracker.received.ack_ranges_descending(MAX_ACK_RANGES)
        if ranges:
            elapsed = now - tracker.largest_time
            delay = int(elapsed * 1_000_000) >> acks._ack_delay_exponent if elapsed > 0.0 else 0
            counts = sched._ecn.received_counts  # EcnController.counts(), inline
            ect0, ect1, ce = counts[_ECN_BASE], counts[_ECN_BASE + 1], counts[_ECN_BASE + 2]
            ack = encode_ack_frame(ranges, delay, (ect0, ect1, ce) if ect0 or ect1 or ce else None)
            # with the datagram behind it: no room to reserve (AckState.write's reserve)
            payload = ack + frame
    if ack is None:
        payload = frame
    size = len(payload)
    if size >= room:
        return None  # the general path cuts the ACK, leaves the datagram for later, or
        # (a full datagram) goes on to its loop's second pass
    if size < _MIN_PAYLOAD_1:
        payload += bytes(_MIN_PAYLOAD_1 - size)  # PADDING frames (type 0x00)
    # -- nothing changed above: from here on, what write_reply does --------------
    write = space.write
    assert write is not None
    space.next_pn = pn + 1
    queue.popleft()
    datagrams.pending = 0
    # SentPacket(APPLICATION, pn, size), without __init__'s call (as short_frame_run)
    packet = _new_object(SentPacket)
    packet.space = APPLICATION
    packet.packet_number = pn
    packet.size = header_size + AEAD_TAG_LENGTH + len(payload)
    packet.ack_eliciting = packet.in_flight = True
    packet.is_crypto = packet.is_app_limited = packet.ecn_marked = False
    packet.time_sent = packet.delivered_time = packet.first_sent_time = 0.0
    packet.fate = None
    packet.args = ()
    packet.delivered = -1
    packet.loss_event = 0
    if ack is None:
        packet.handlers = []
    else:
        largest = ranges[0][1]
        # RFC 9000 §13.2.4: once an ACK of ours is acknowledged, stop repeating it
        packet.handlers = [(tracker.on_ack_fate, (largest,))]
        tracker.ack_eliciting_since_ack = 0  # tracker.on_ack_sent(largest), inline
        tracker.deadline = None
        tracker.fresh = False
        if largest > tracker.largest_acked_sent:
            tracker.largest_acked_sent = largest
    sched._ack_only_run[APPLICATION] = 0
    out = write.encrypt_short(dcid, 1, pn & 0xFF, write.key_phase, payload, pn)
    if marked:
        sched._ecn.on_packet_sent(packet)  # RFC 9000 §13.4.2: learn its fate
    recovery.on_packet_sent(packet, now)
    pacer.on_packet_sent(len(out), now)
    return out


def write_bulk(
    sched: SendScheduler, asm: PacketAssembler, mtu: int, allowed: int, now: float, marked: bool
) -> tuple[int, int]:
    """Up to ``allowed`` datagrams of one 1-RTT packet of STREAM frames each (see
    ``SendScheduler._only_stream_data``), each under the same window rule as
    ``SendScheduler._write_space``; returns how many were written and their bytes. It
    stops early when the window has no room, no stream has data, or every stream is
    blocked; runs of bulk_frames' packets are made in one call (module docstring). What
    a build call cannot change (keys, connection ID, the largest acknowledged) is read
    once. The window's room is counted down here and the run is registered with loss
    recovery (and ECN) in one call at the end — all its packets leave at ``now``, and
    nothing in the loop reads what registration changes — unless loss recovery's table
    cannot take the whole run: then each packet is registered as it is built (a drop
    beyond the table's bound is a congestion event the next packet must see)."""
    recovery = sched._recovery
    congestion = recovery.congestion
    streams = sched._streams
    space = sched._keys.spaces[APPLICATION]
    write = space.write
    assert write is not None
    dcid = sched._cids.peer_cid
    largest_acked = recovery.spaces[APPLICATION].largest_acked
    key_phase = write.key_phase
    packets = asm.packets
    first = len(packets)
    each = recovery.sent_room(APPLICATION) < allowed
    bulk = streams.bulk_frames
    ecn = sched._ecn
    # RFC 9002 §7: what the window allows, less what the run puts in flight (the
    # one-packet allowance of B.6 is the controller's datagram size, the path's:
    # spent by the first packet, as available() would say)
    room = congestion.available()
    written = total = 0
    more = streams.has_data()
    while more and written < allowed and room >= mtu:
        if not each:  # packets of one plain STREAM frame each, in one call
            made, size = asm.short_frame_run(
                allowed - written, room, mtu, dcid, write, space.next_pn, largest_acked, bulk
            )
            if made:  # the stream has data left (bulk_frames' condition)
                space.next_pn += made
                written += made
                total += size
                room -= size
                continue
        if not asm.begin_short_datagram(
            mtu, dcid, write, APPLICATION, space.next_pn, largest_acked, key_phase
        ):
            break
        space.next_pn += 1
        more = streams.write_streams(asm)
        size = asm.end_short_datagram()
        if not size:
            break  # every stream blocked, nothing written
        written += 1
        total += size
        room -= size
        if each:
            packet = packets[-1]
            if marked:
                ecn.on_packet_sent(packet)  # RFC 9000 §13.4.2: learn its fate
            recovery.on_packet_sent(packet, now)
            room = congestion.available()
    if written and not each:
        run = packets[first:]
        if marked:
            ecn.on_packets_sent(run, APPLICATION)  # RFC 9000 §13.4.2
        recovery.on_packets_sent(run, total, now)
    return written, total
