"""The send path of a QUIC connection (RFC 9000 §12.2, §13, §14.1; RFC 9002 §6.2, §7).

Theory of operation
-------------------
:class:`SendScheduler` decides what goes into each packet; the components write their
own frames. :meth:`SendScheduler.build` fills datagrams until nothing is left or a
limit is hit. For each datagram it visits the spaces Initial → Handshake → Application
and opens at most one packet in each, so packets of different levels coalesce (§12.2).
What a packet may carry:

* an ACK frame (:class:`~quic.conn_acks.AckState`) whenever the space owes one (the
  ACK timer fired) or when the packet is sent anyway and acknowledgments are pending
  (§13.2.1); ACK-only packets are neither ack-eliciting nor congestion controlled
  (RFC 9002 §3). Once ECN-marked packets arrived in the space it is an ACK_ECN frame
  with the counts of :class:`~quic.conn_ecn.EcnController` (§13.4.1);
* ack-eliciting frames only while the congestion window has room (RFC 9002 §7) or
  when a probe is owed (PTO, RFC 9002 §6.2.4): CRYPTO data in every space
  (:class:`~quic.conn_crypto.CryptoStreams`), and in the application space, in this
  order, HANDSHAKE_DONE (:class:`~quic.conn_handshake.HandshakeDriver`), PATH_CHALLENGE
  and PATH_RESPONSE (:class:`~quic.conn_paths.PathManager`), application PINGs (owned here),
  connection-ID frames (:class:`~quic.cid.ConnectionIdManager`), flow-control and
  stream-state frames, DATAGRAM frames (:class:`~quic.conn_datagrams.DatagramChannel`)
  and STREAM frames (:class:`~quic.conn_streams.StreamController`);
* ACK_FREQUENCY (:class:`~quic.conn_ackfreq.AckFrequencySender`) when the peer
  supports it and our request changes, after HANDSHAKE_DONE; IMMEDIATE_ACK in PTO
  probes of the application space (draft-ietf-quic-ack-frequency §7);
* CONNECTION_CLOSE alone while closing (§10.2, :meth:`SendScheduler.build_close`, built by
  the owned :class:`~quic.conn_send_side.SideDatagrams`).

A client holding 0-RTT keys (RFC 9001 §4.6.1) and no 1-RTT keys yet writes 0-RTT
packets in the application space (:meth:`SendScheduler._write_zero_rtt`, from
:mod:`quic.conn_send_early`): PINGs, flow-control and stream-state frames, DATAGRAM
and STREAM frames — never ACK, CRYPTO, NEW_TOKEN, HANDSHAKE_DONE, PATH_RESPONSE or
RETIRE_CONNECTION_ID (RFC 9000 §12.4, §17.2.3).
A path other than the current one (a peer probing a new address, the path we left
after a migration) gets its PATH_CHALLENGE and PATH_RESPONSE frames in a datagram of
its own (:meth:`SendScheduler.build_on_path`, also built by
:class:`~quic.conn_send_side.SideDatagrams`), sent to that path (RFC 9000 §8.2.2).

Every writer checks the room left before it writes, so no datagram exceeds its budget:
the path's maximum datagram size, and for a server three times the bytes received
until the client's address is validated (§8.1). Each finished datagram's packets are
registered with loss recovery at once, so the congestion window counts them before the
next datagram is built; the handlers the writers registered on each packet tell every
component the fate of its frames. One ECN codepoint is chosen per call
(:meth:`~quic.conn_ecn.EcnController.begin_send`); when it is ECT(0) every packet is
reported to the ECN controller, which learns its fate for validation (§13.4.2).

The bulk case: once a full-size ack-eliciting datagram leaves and nothing but STREAM
frames is left to send in the application space (no other space has keys, no probe,
no ACK due or pending, no control, DATAGRAM, PING, path or connection-ID frame, no
CRYPTO data; :meth:`SendScheduler._only_stream_data`), nothing the rest of the call
does can change that, so the call goes on in a short loop
(:meth:`SendScheduler._write_bulk`, one call for the rest of the build call): one
1-RTT packet of STREAM frames per datagram under the same window and pacing checks,
without the per-space visits; runs of packets of one frame that changes none of the
stream bookkeeping (:meth:`~quic.conn_streams.StreamController.bulk_frames`, cut in
one call) are made in one call
(:meth:`~quic.packet_builder.PacketAssembler.short_frame_run`). With qlog
on, every datagram takes the general path.

The reply case (a datagram ping-pong, an echo, a short request or response on a
stream): when nothing could go in the call's first datagram but an ACK, DATAGRAM
frames, flow-control and stream-state frames and STREAM data — 1-RTT keys only, the
handshake complete, the address validated, no probe, PMTU probe, PING, path,
connection-ID, ACK_FREQUENCY, HANDSHAKE_DONE, NEW_TOKEN or CRYPTO frame owed
(:meth:`SendScheduler._reply_kind`) — and the window and the pacer let an
ack-eliciting datagram go, the first pass of the loop is
:meth:`SendScheduler._write_reply`: one 1-RTT packet with the frames the general pass
would write, in its order, registered the same way; the loop goes on from its second
pass only when something is left over (in its short loop when only stream data is,
as the general pass decides after a full datagram). With nothing ack-eliciting owed
the same pass writes the ACK if it is due, else nothing (most builds of a burst of
short exchanges). Anything else (or qlog on) declines it before anything changed.
Its commonest case — one DATAGRAM frame queued behind the ACK (a ping-pong, an echo) —
is written without a packet assembler (:meth:`SendScheduler._write_datagram_reply`).

An ACK set aside for the reply (``LossRecovery.waiting_ack``, issue 10: a ping-pong's
ACK of every packet in flight, see ``FrameDispatcher._may_wait``) stays unprocessed
through a build only when DATAGRAM frames are queued, the first datagram is a reply of
an ACK and DATAGRAM frames (``_reply_kind`` 1: no STREAM, control, PMTU probe or other
frame owed) and the window as it is has room for every queued datagram and one packet
more; any other build processes it first. Until it is processed the scheduler only
sees a smaller window and more bytes in flight — the view of a sender the ACK has not
reached yet, whose choices (the pacer's rate, ACK_FREQUENCY) are as valid — and, with
that room, nothing that ACK would let out is held back: nothing waits on it after the
build, and the deadline asked next processes it before a timer is computed.

A DPLPMTUD probe (:class:`~quic.conn_pmtu.PmtuDiscovery`, RFC 9000 §14.4) goes first,
in a datagram of its own larger than the others, when the PMTU component asks for one
and the congestion window has room for it; the component writes its PING and PADDING.

Pacing (RFC 9002 §7.7): before building, the scheduler sets its
:class:`~quic.pacing.Pacer` to the controller's ``pacing_rate`` (once an RTT sample
exists); every datagram that carries ack-eliciting frames is taken out of the bucket,
and while the bucket is empty no ack-eliciting frame is written (ACK-only packets and
probes are not paced). When that stopped a datagram that had data and window,
:attr:`SendScheduler.pacing_deadline` is the time the next one may leave; the
connection adds it to its timer. When the window had room but nothing wanted to be
sent, the controller hears ``on_app_limited`` (RFC 9002 §7.8; BBR's delivery-rate
samples need it).

Probes (RFC 9002 §6.2.4) are owed per space: the loss-detection timeout asks for
them (:meth:`SendScheduler.schedule_probe`) and they bypass the congestion window;
handshake data not yet acknowledged is queued again for them. After 16 ACK-only
packets in a row, a PING makes the next one ack-eliciting so that the peer
acknowledges our ACKs and both sides can forget old ranges (§13.2.4).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from quic.conn_keys import APPLICATION, HANDSHAKE, INITIAL
from quic.conn_send_early import write_zero_rtt
from quic.conn_send_short import (
    MAX_ACK_ONLY_RUN,
    write_bulk,
    write_datagram_reply,
    write_reply,
)
from quic.conn_send_side import SideDatagrams, push_ping
from quic.events import PingAcknowledged, QuicEvent
from quic.frames import PING_FRAME
from quic.pacing import Pacer
from quic.packet import PacketType
from quic.packet_builder import PacketAssembler

if TYPE_CHECKING:
    from quic.cid import ConnectionIdManager
    from quic.conn_ackfreq import AckFrequencySender
    from quic.conn_acks import AckState
    from quic.conn_close import CloseFrame
    from quic.conn_crypto import CryptoStreams
    from quic.conn_datagrams import DatagramChannel
    from quic.conn_ecn import EcnController
    from quic.conn_handshake import HandshakeDriver
    from quic.conn_keys import PacketSpaces
    from quic.conn_paths import Path, PathManager
    from quic.conn_pmtu import PmtuDiscovery
    from quic.conn_streams import StreamController
    from quic.qlog import QuicLogger
    from quic.recovery import LossRecovery

__all__ = ["SendScheduler"]

_PACKET_TYPES = (PacketType.INITIAL, PacketType.HANDSHAKE, PacketType.ONE_RTT)
_MAX_DATAGRAMS_PER_CALL = 256


class SendScheduler:
    """Fills datagrams with the frames the connection's components owe."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_ack_only_run",
        "_ackfreq",
        "_ackfreq_due",
        "_acks",
        "_cids",
        "_crypto",
        "_datagrams",
        "_discard_space",
        "_ecn",
        "_events",
        "_handshake",
        "_host_cid",
        "_is_client",
        "_keys",
        "_keys_final",
        "_paced",
        "_pacing_held",
        "_paths",
        "_pings",
        "_pmtu",
        "_probes",
        "_qlog",
        "_recovery",
        "_side",
        "_side",
        "_streams",
        "capped",
        "pacer",
        "pacing_deadline",
    )

    def __init__(
        self,
        *,
        is_client: bool,
        host_cid: bytes,
        keys: PacketSpaces,
        acks: AckState,
        crypto: CryptoStreams,
        handshake: HandshakeDriver,
        cids: ConnectionIdManager,
        paths: PathManager,
        streams: StreamController,
        datagrams: DatagramChannel,
        ecn: EcnController,
        pmtu: PmtuDiscovery,
        recovery: LossRecovery,
        ackfreq: AckFrequencySender,
        events: list[QuicEvent],
        discard_space: Callable[[int, float], None],
        qlog: QuicLogger | None,
    ) -> None:
        self._is_client = is_client
        self._host_cid = host_cid
        self._keys = keys
        self._keys_final = False  # 1-RTT keys only, the handshake complete: for good
        self._acks = acks
        self._crypto = crypto
        self._handshake = handshake
        self._cids = cids
        self._paths = paths
        self._streams = streams
        self._datagrams = datagrams
        self._ecn = ecn
        self._pmtu = pmtu
        self._recovery = recovery
        self._ackfreq = ackfreq
        self._ackfreq_due = False  # an ACK_FREQUENCY frame is owed in this build
        self._events = events
        self._discard_space = discard_space
        self._qlog = qlog
        self._probes: dict[int, int] = {}  # space -> probe packets owed
        # uids of application PINGs to send (a deque from the first one: no idle memory)
        self._pings: deque[int] | None = None
        self._ack_only_run = [0, 0, 0]  # ACK-only packets since the last eliciting one
        self.pacer = Pacer(paths.max_datagram_size)
        self._paced = False  # the pacer holds ack-eliciting frames back right now
        self._pacing_held = False  # ... and that stopped a datagram with data and window
        #: When the pacer lets the next ack-eliciting datagram go, if it holds one back.
        self.pacing_deadline: float | None = None
        #: The last :meth:`build` stopped at its cap of datagrams: it may have more now.
        self.capped = False
        # the datagrams outside the loop: closing, PMTU probes, probes of another path
        self._side = SideDatagrams(
            is_client=is_client, host_cid=host_cid, keys=keys, cids=cids, paths=paths,
            handshake=handshake, recovery=recovery, qlog=qlog, pmtu=pmtu, ecn=ecn,
        )  # fmt: skip

    # -- what is owed -----------------------------------------------------------------

    def queue_ping(self, uid: int) -> None:
        if self._pings is None:
            self._pings = deque()
        self._pings.append(uid)

    @property
    def pending_pings(self) -> int:
        return len(self._pings) if self._pings else 0

    @property
    def pending_probes(self) -> int:
        return sum(self._probes.values())

    def schedule_probe(self, space: int | None, count: int, others: tuple[int, ...]) -> None:
        """PTO fired: send ``count`` ack-eliciting probes (RFC 9002 §6.2.4)."""
        if space is None:
            return
        spaces = self._keys.spaces
        for index in (space, *others):
            if spaces[index].write is None:
                continue
            self._probes[index] = max(self._probes.get(index, 0), count if index == space else 1)
            if index != APPLICATION:
                # retransmit all unacknowledged handshake data in the probe
                self._crypto.requeue_unacked(index)

    def discard(self, index: int) -> None:
        """A space was discarded: no probe is owed in it any more."""
        self._probes.pop(index, None)

    def _wants_eliciting(self, index: int) -> bool:
        if index != APPLICATION:
            return self._crypto.needs_send(index)
        handshake = self._handshake
        if not handshake.complete and self._is_client:
            return self._crypto.needs_send(index)
        return self._streams.has_data() or self._wants_frames_besides_stream()  # common first

    def _finished_follows(self) -> bool:
        """A client's Handshake packet with its Finished goes into this datagram: it
        discards the Initial keys here when sent and at the server when processed (RFC
        9001 §4.9.1), so an ACK-only Initial packet before it would be needed by nobody
        — and without it the datagram carries no Initial packet, so no padding (RFC 9000
        §14.1). Both packets share the datagram's fate: if it is lost, so is the ACK."""
        return (
            self._is_client
            and self._keys.spaces[HANDSHAKE].write is not None
            and self._crypto.needs_send(HANDSHAKE)
        )

    def _wants_frames_besides_stream(self) -> bool:
        """An ack-eliciting frame other than STREAM is owed in 1-RTT packets: CRYPTO,
        DATAGRAM, HANDSHAKE_DONE, NEW_TOKEN (RFC 9000 §8.1.3), path frames, PING,
        ACK_FREQUENCY, flow-control and stream-state frames, connection-ID frames."""
        handshake = self._handshake
        return bool(
            self._datagrams.pending  # first: a datagram waiting is the common case
            or self._crypto.needs_send(APPLICATION)
            or handshake.done_pending
            or handshake.tokens_pending
            or self._paths.wants_send()
            or self._pings
            or self._ackfreq_due
            or self._streams.wants_control()
            or self._cids.wants_send(handshake.confirmed)  # see quic.cid: "Issuing"
        )

    # -- the send loop ----------------------------------------------------------------

    def build(self, now: float, version: int) -> tuple[list[bytes], bool]:
        """Build every datagram that may be sent now.

        Returns the datagrams and whether any ack-eliciting packet went out.
        """
        paths = self._paths
        recovery = self._recovery
        spaces = self._keys.spaces
        qlog = self._qlog
        mtu = paths.max_datagram_size
        if recovery.waiting_ack is not None and not self._datagrams.pending:
            recovery.process_waiting_ack()  # only a reply of datagrams goes before it
        if not self._datagrams.pending and self._owes_nothing(now):  # it says no then
            # what the rest would do for a build that writes nothing (see _owes_nothing)
            self._update_pacer(now, mtu)
            self._pacing_held = False
            self._ackfreq_due = False  # wants_send() just said so
            self._ecn.begin_send()
            self.capped = False
            self._after_build(now, mtu, True)
            return [], False
        probe = self._pmtu.probe_size()
        sent_eliciting = False
        # _update_pacer(), inline: once per build (RFC 9002 §7.7; unpaced before any
        # RTT sample: the rate would rest on the 333 ms initial RTT)
        pacer = self.pacer
        rtt = recovery.rtt
        cc = recovery.congestion
        pacer.max_datagram_size = mtu
        rate = cc.pacing_rate(rtt.smoothed_rtt) if rtt.first_rtt_sample is not None else None
        pacer.set_rate(rate, cc.congestion_window, now)
        self._pacing_held = False
        if self._handshake.confirmed:
            self._ackfreq_due = self._ackfreq.wants_send(
                now,
                recovery.congestion.congestion_window,
                mtu,
                rtt.smoothed_rtt,
                rtt.first_rtt_sample is not None,  # has_sample, without the property
            )
        validated_bytes = 0  # sent once the address is validated (counted at the end)
        ecn = self._ecn
        marked = ecn.begin_send() != 0  # one ECN codepoint for the whole call
        kind = self._reply_kind() if probe is None and qlog is None else 0
        if recovery.waiting_ack is not None and (
            kind != 1 or cc.available() < (self._datagrams.pending + 1) * mtu
        ):
            recovery.process_waiting_ack()  # see the module docstring: "An ACK set aside"
        if kind == 1 and (out := self._write_datagram_reply(pacer, mtu, now, marked)):
            # the reply pass's commonest case, in one function (see the module docstring)
            self.capped = False
            size = len(out)  # paths.on_datagram_sent(size), inline
            paths.bytes_sent += size
            paths.current.sent += size
            if cc.app_limited_hook:
                self._after_build(now, mtu, True)
            else:  # _after_build() without the pacer held: nothing else to do
                self._paced = False
                self.pacing_deadline = None
            return [out], True
        asm = PacketAssembler(mtu if probe is None else max(mtu, probe))
        if probe is not None and recovery.congestion.available() >= probe:
            sent_eliciting = self._side.pmtu_probe(asm, probe, now, version, marked)
        capped = False
        drained = False  # nothing ack-eliciting left in any space (_sent_everything)
        bulk = False  # only stream data left: the short loop (_write_bulk)
        paced = 0  # datagrams the pacer lets out in the short loop (RFC 9002 §7.7)
        bulk_bytes = 0  # ... taken from its bucket at once when the loop ends
        start = 0
        if kind:
            streamed = kind == 2
            reply = self._write_reply(asm, pacer, mtu, now, marked, streamed)
            if reply is not None:  # else declined, nothing changed: the general loop
                size, sent_eliciting = reply
                validated_bytes = size
                if not sent_eliciting or (
                    size < mtu
                    and not self._datagrams.pending
                    # _sent_everything() reduced: _reply_kind's _short_only() ruled out the rest
                    # (a waiting ACK processed since declares nothing lost: _may_wait)
                    and not (streamed and ((st := self._streams).has_data() or st.wants_control()))
                ):
                    # where the loop's first pass would stop (an empty or ACK-only
                    # datagram; a short one that took everything, _sent_everything)
                    self.capped = False
                    if size:
                        paths.on_datagram_sent(size)
                    if cc.app_limited_hook:
                        self._after_build(now, mtu, sent_eliciting)
                    else:  # _after_build() without the pacer held: nothing else to do
                        self._paced = False
                        self.pacing_deadline = None
                    return asm.datagrams, sent_eliciting
                if streamed and size == mtu and self._only_stream_data(now):
                    bulk = True  # as the loop's first pass decides after a full datagram
                    paced = pacer.allowance(now, mtu)
                start = 1  # more queued: the loop goes on from its second pass
        for count in range(start, _MAX_DATAGRAMS_PER_CALL):
            if bulk:
                # the rest of the call in one short loop (at most ``paced`` datagrams
                # and the call's cap); it ends the call like the loop's own ends
                limit = _MAX_DATAGRAMS_PER_CALL - count
                allowed = paced if paced < limit else limit
                written, bulk_bytes = self._write_bulk(asm, mtu, allowed, now, marked)
                if written < allowed:
                    break  # the window, or nothing more may go
                if written == limit:
                    capped = True  # the call's cap, as when the loop runs out
                    break
                if self._streams.has_data():
                    self._pacing_held = True  # the pacer's allowance is spent
                break
            validated = paths.address_validated
            if not validated and paths.send_blocked():
                recovery.amplification_limited = True  # RFC 9002 §6.2.2.1 (a server)
                break
            asm.begin_datagram(mtu if validated else paths.send_budget())
            first = len(asm.packets)
            self._paced = pacer.next_send_time(now, mtu) > now
            for index in (INITIAL, HANDSHAKE, APPLICATION):
                if spaces[index].write is not None:
                    self._write_space(asm, index, now, version)
                elif index == APPLICATION and self._keys.zero_rtt_write is not None:
                    self._write_zero_rtt(asm, version)
            pending = asm.pending  # the datagram's packets, still in plaintext (qlog)
            size = asm.end_datagram(pad_initial=True)
            if not size:
                break
            if validated:
                validated_bytes += size
            else:
                paths.on_datagram_sent(size)  # the amplification limit needs it now
            eliciting = False
            for packet in asm.packets[first:]:
                if marked:
                    ecn.on_packet_sent(packet)  # RFC 9000 §13.4.2: learn its fate
                recovery.on_packet_sent(packet, now)
                eliciting |= packet.ack_eliciting
                if packet.space == HANDSHAKE and self._is_client and not spaces[INITIAL].discarded:
                    self._discard_space(INITIAL, now)  # RFC 9001 §4.9.1
            if qlog is not None:
                qlog.packets_sent(now, pending)
                qlog.metrics_updated(now, recovery)
            sent_eliciting |= eliciting
            if eliciting:
                pacer.on_packet_sent(size, now)
                bulk = qlog is None and size == mtu and self._only_stream_data(now)
                if bulk:
                    paced = pacer.allowance(now, mtu)
                elif size < mtu and self._sent_everything():
                    drained = True  # _after_build need not ask again
                    break  # a short datagram that took everything: no empty pass
            else:
                # An ACK-only datagram: the next one could only repeat its ACKs, since
                # whatever kept ack-eliciting frames out of it has not changed (RFC 9000
                # §13.2.1: ACK-only packets are not sent on their own beyond what is due).
                break
        else:
            capped = True  # every other way out of the loop means nothing more may go now
        self.capped = capped
        if bulk_bytes:
            pacer.on_packet_sent(bulk_bytes, now)
            validated_bytes += bulk_bytes
        if validated_bytes:
            paths.on_datagram_sent(validated_bytes)
        self._after_build(now, mtu, drained)
        return asm.datagrams, sent_eliciting

    def _owes_nothing(self, now: float) -> bool:
        """Nothing may be written by this build call, whatever the window and the pacer
        say: the handshake confirmed, 1-RTT keys only, the address validated, no qlog,
        no PMTU probe the window has room for, no probe, PING, path, connection-ID,
        HANDSHAKE_DONE, NEW_TOKEN, CRYPTO, ACK_FREQUENCY (asked here, as the build
        asks), DATAGRAM, control or STREAM frame owed, and the application space's ACK
        not due. A connection woken with nothing to send — an ACK-only packet
        received, a read that returns no credit yet: a third of the builds of a burst
        of short exchanges — then skips the build's set-up; :meth:`build` does for it
        what its reply pass does when it writes nothing."""
        handshake = self._handshake
        if not handshake.confirmed or self._qlog is not None:
            return False
        deadline = self._acks.trackers[APPLICATION].deadline  # wants_ack(), inline
        if deadline is not None and deadline <= now:
            return False
        streams = self._streams
        probe = self._pmtu.probe_size()
        recovery = self._recovery
        if (
            self._datagrams.pending
            or streams.has_data()
            or streams.wants_control()
            or not self._short_only()
            # a probe goes only when the window has room for it (build)
            or (probe is not None and recovery.congestion.available() >= probe)
        ):
            return False
        paths = self._paths
        rtt = recovery.rtt
        return not self._ackfreq.wants_send(
            now,
            recovery.congestion.congestion_window,
            paths.max_datagram_size,
            rtt.smoothed_rtt,
            rtt.first_rtt_sample is not None,
        )

    def owes_nothing(self, now: float) -> bool:
        """A build now would write nothing: no DATAGRAM frame queued and
        :meth:`_owes_nothing`. The endpoint then skips the build of a connection that
        received packets needing no answer yet (an ACK-only packet, a request whose
        reply the application has not written): :func:`quic.endpoint_batch.quiet`."""
        return not self._datagrams.pending and self._owes_nothing(now)

    def _only_stream_data(self, now: float) -> bool:
        """Nothing but STREAM frames is left to send in 1-RTT packets, and nothing a
        build call does can change that: no other space, probe, ACK, control frame,
        datagram, PING or path work. The rest of the call then repeats what
        :meth:`_write_space` would do for such packets, without its checks."""
        spaces = self._keys.spaces
        paths = self._paths
        acks = self._acks
        return not (
            spaces[INITIAL].write is not None
            or spaces[HANDSHAKE].write is not None
            or self._keys.zero_rtt_write is not None
            or not self._handshake.complete
            or self._probes
            or not paths.address_validated
            or paths.current.challenge_owed
            or acks.should_include(APPLICATION, acks.due(APPLICATION, now), True)
            or not self._streams.has_data()
            or self._wants_frames_besides_stream()
        )

    def _sent_everything(self) -> bool:
        """After a datagram that was not full: nothing is left for another one — no
        other space has keys, no probe is owed, and the application space wants no
        ack-eliciting frame (its ACK, if due, just left; one not due waits for its
        timer). The small-packet case (a reply, a ping-pong) then skips a pass that
        would build nothing."""
        spaces = self._keys.spaces
        return not (
            self._probes
            or spaces[INITIAL].write is not None
            or spaces[HANDSHAKE].write is not None
            or self._keys.zero_rtt_write is not None
            or self._wants_eliciting(APPLICATION)
        )

    def _short_only(self) -> bool:
        """Only 1-RTT packets may be owed, none of the frames the general loop writes
        itself: no other space's or 0-RTT keys, the handshake complete, the address
        validated, no probe, PING, path, HANDSHAKE_DONE, NEW_TOKEN, CRYPTO or
        connection-ID frame owed (what :meth:`_owes_nothing` and :meth:`_reply_kind`
        both ask first). The keys and the handshake are asked until they first say
        yes: Initial, Handshake and 0-RTT keys once dropped never come back, the
        handshake stays complete and 1-RTT write keys are only ever replaced."""
        handshake = self._handshake
        if not self._keys_final:
            keys = self._keys
            spaces = keys.spaces
            if (
                spaces[INITIAL].write is not None
                or spaces[HANDSHAKE].write is not None
                or spaces[APPLICATION].write is None
                or keys.zero_rtt_write is not None
                or not handshake.complete
            ):
                return False
            self._keys_final = True
        paths = self._paths
        return not (
            self._probes
            or self._pings
            or not (current := paths.current).validated  # address_validated, inline
            # wants_send(): PATH_CHALLENGE owed on the current path, or a RESPONSE (asked
            # only with some queued)
            or current.challenge_owed
            or (paths.responses and paths.wants_send())
            or handshake.done_pending
            or handshake.tokens_pending
            or self._crypto.send[APPLICATION].needs_send  # needs_send(), without its call
            # wants_send(True): a retirement, or (asked only then) new IDs to issue
            or (cids := self._cids)._retire_unsent
            or (cids.issue_pending and cids.wants_send(True))
        )

    def _reply_kind(self) -> int:
        """What this call's first datagram may be built as in one short pass, one 1-RTT
        packet of the frames a reply carries: 0, no (the general loop decides); 1, an
        ACK and DATAGRAM frames; 2, an ACK, flow-control and stream-state frames,
        DATAGRAM and STREAM frames (a short response or request on a stream). Either
        needs no other space or 0-RTT keys, the handshake complete, the address
        validated, no probe owed, and no other frame of
        :meth:`_wants_frames_besides_stream` owed. With nothing ack-eliciting waiting it
        is an ACK-only packet or nothing (an echo's ACK, the answer to a probe, a build
        after a packet that needs no ACK yet: most builds of a burst of short
        exchanges)."""
        if self._ackfreq_due or not self._short_only():
            return 0
        streams = self._streams
        return 2 if streams._sendable or streams.wants_control() else 1  # _sendable: has_data()

    # the short passes of build() (quic.conn_send_short): methods, without a call more
    _write_reply = write_reply
    _write_datagram_reply = write_datagram_reply
    _write_bulk = write_bulk
    _write_zero_rtt = write_zero_rtt  # quic.conn_send_early

    def _update_pacer(self, now: float, mtu: int) -> Pacer:
        """The pacer at the controller's rate (RFC 9002 §7.7); unpaced before any RTT
        sample (the rate would rest on the 333 ms initial RTT)."""
        pacer = self.pacer
        recovery = self._recovery
        rtt = recovery.rtt
        cc = recovery.congestion
        pacer.max_datagram_size = mtu
        rate = cc.pacing_rate(rtt.smoothed_rtt) if rtt.first_rtt_sample is not None else None
        pacer.set_rate(rate, cc.congestion_window, now)
        return pacer

    def _after_build(self, now: float, mtu: int, drained: bool = False) -> None:
        """Arm the pacing deadline, or tell the controller it is application-limited
        (``drained``: the build just found nothing ack-eliciting left to send)."""
        self._paced = False
        if self._pacing_held:
            self.pacing_deadline = self.pacer.next_send_time(now, mtu)
            return
        self.pacing_deadline = None
        cc = self._recovery.congestion
        if (
            cc.app_limited_hook  # else on_app_limited does nothing: no question asked
            and cc.available() >= mtu
            and self._handshake.complete
            and self._paths.current.validated  # address_validated, without the property
            and (drained or (not self._probes and not self._wants_eliciting(APPLICATION)))
        ):
            cc.on_app_limited(now)  # RFC 9002 §7.8

    def _write_space(self, asm: PacketAssembler, index: int, now: float, version: int) -> None:
        probe = self._probes.get(index, 0)
        acks = self._acks
        ack_due = acks.due(index, now)
        congestion = self._recovery.congestion
        # our PATH_CHALLENGE (paced by its own timer) is not held back by the window
        # or the pacer: the first packet to a new path carries it (RFC 9000 §9.4 lets
        # probes be exempt); a PATH_RESPONSE waits for the window like anything else
        # (§8.2.2)
        challenge = index == APPLICATION and self._paths.current.challenge_owed
        may_elicit = (
            probe > 0 or challenge or congestion.available() >= self._paths.max_datagram_size
        )
        if may_elicit and self._paced and not probe and not challenge:  # RFC 9002 §7.7
            may_elicit = False
            if self._wants_eliciting(index):
                self._pacing_held = True
        eliciting = may_elicit and (probe > 0 or self._wants_eliciting(index))
        if not ack_due and not eliciting:
            return
        if index == INITIAL and not eliciting and self._finished_follows():
            return
        if index == APPLICATION and self._is_client and not self._handshake.complete:
            if not ack_due:
                return
            eliciting = False  # 1-RTT before completion: ACKs only
        space = self._keys.spaces[index]
        write = space.write
        assert write is not None
        if not asm.begin_packet(
            _PACKET_TYPES[index],
            version,
            self._cids.peer_cid,
            self._host_cid,
            write,
            index,
            space.next_pn,
            self._recovery.spaces[index].largest_acked,
            self._handshake.token if index == INITIAL and self._is_client else b"",
            write.key_phase,
        ):
            return
        space.next_pn += 1
        packet = asm.packet
        if acks.should_include(index, ack_due, eliciting):
            reserve = 0
            if eliciting and not ack_due and index == APPLICATION:
                reserve = self._datagrams.room_needed(asm.room)
            acks.write(asm, index, now, reserve, self._ecn.counts(index))
        if eliciting:
            self._crypto.write(asm, index)
            if index == APPLICATION:
                self._write_application(asm, now)
            if probe:
                # draft-ietf-quic-ack-frequency §7: a probe asks for an immediate ACK
                if index == APPLICATION:
                    self._ackfreq.write_immediate_ack(asm)
                if not packet.ack_eliciting:
                    push_ping(asm)
                if probe <= 1:
                    del self._probes[index]
                else:
                    self._probes[index] = probe - 1
        if packet.ack_eliciting:
            self._ack_only_run[index] = 0
        else:
            self._ack_only_run[index] += 1
            if self._ack_only_run[index] >= MAX_ACK_ONLY_RUN and may_elicit:
                push_ping(asm)  # RFC 9000 §13.2.4: get our ACKs acknowledged
                self._ack_only_run[index] = 0
        if index == INITIAL:
            packet.in_flight = True  # padded to 1200 bytes: counts in flight (RFC 9002 §2)
        asm.end_packet()

    def _write_application(self, asm: PacketAssembler, now: float) -> None:
        handshake = self._handshake
        if handshake.done_pending:
            handshake.write_done(asm)
        if handshake.tokens_pending:
            handshake.write_tokens(asm)  # NEW_TOKEN (RFC 9000 §8.1.3)
        if self._ackfreq_due:
            self._ackfreq.write(asm, now)
            self._ackfreq_due = self._ackfreq.pending
        paths = self._paths
        if paths.wants_send():
            paths.write(asm)
        if self._pings:
            self._write_pings(asm)
        cids = self._cids
        if cids.wants_send(handshake.confirmed):  # see quic.cid: "Issuing"
            cids.write(asm, handshake.confirmed)
        streams = self._streams
        if streams.wants_control():
            streams.write_control(asm)
        self._datagrams.write(asm)
        streams.write_streams(asm)

    def _write_pings(self, asm: PacketAssembler) -> None:
        """The PINGs the application asked for that fit, each told its fate."""
        pings = self._pings
        packet = asm.packet
        while pings and asm.room >= len(PING_FRAME):
            uid = pings.popleft()
            asm.push(PING_FRAME)
            packet.handlers.append((self._ping_fate, (uid,)))
            packet.ack_eliciting = packet.in_flight = True

    def _ping_fate(self, acked: bool, uid: int) -> None:
        if acked:
            self._events.append(PingAcknowledged(uid))

    # -- other paths (RFC 9000 §8.2, §9) -----------------------------------------------

    def build_on_path(self, now: float, version: int, path: Path, dcid: bytes) -> bytes | None:
        """One datagram for a path other than the current one (see
        :meth:`~quic.conn_send_side.SideDatagrams.build_on_path`)."""
        return self._side.build_on_path(now, version, path, dcid)

    def build_close(self, now: float, version: int, close: CloseFrame) -> list[bytes]:
        """CONNECTION_CLOSE while closing (see
        :meth:`~quic.conn_send_side.SideDatagrams.build_close`)."""
        return self._side.build_close(now, version, close)
