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

from quic.conn_keys import APPLICATION
from quic.conn_send_side import push_ping

if TYPE_CHECKING:
    from quic.conn_send import SendScheduler
    from quic.pacing import Pacer
    from quic.packet_builder import PacketAssembler

__all__ = ["MAX_ACK_ONLY_RUN", "write_bulk", "write_reply"]

_ECN_BASE = APPLICATION * 3  # the space's ECT(0), ECT(1), CE counts in received_counts

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
