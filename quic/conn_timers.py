"""The timers of a QUIC connection (see :mod:`quic.connection`).

Theory of operation
-------------------
A connection has one deadline for its owner (:meth:`QuicConnection.get_timer`): the
earliest of what its components wait for, and one entry point when it is due
(:meth:`QuicConnection.handle_timer`). This module holds both computations, as
functions of the connection (like :mod:`quic.conn_build`; no state of their own), and
the one component with timer state the connection owns, :class:`IdleTimer`: the last
activity (RFC 9000 §10.1: a packet processed, or the first ack-eliciting packet sent
since the last one was received), the idle timeout (ours, then the minimum of both
sides') and when the keys last rested; its :meth:`~IdleTimer.deadline` and
:meth:`~IdleTimer.fire` are the connection's ``get_timer`` and ``handle_timer``:

* :func:`earliest_deadline`: while the handshake or the connection is live, the idle
  deadline (RFC 9000 §10.1, never shorter than three PTOs), when the keys rest
  (:mod:`quic.conn_keys`; the connection fires that one itself), loss detection (RFC 9002
  §6.2), path validation and migration (RFC 9000 §8.2, §9), pacing (RFC 9002 §7.7),
  DPLPMTUD (RFC 9000 §14.3), and the ACK timers of the spaces that can still send —
  unless the anti-amplification limit blocks every send (RFC 9000 §8.1); while closing
  or draining, the end of that period (RFC 9000 §10.2);
* :func:`fire_due`: what is due at ``now`` — the end of closing/draining, the idle
  timeout, a path lost with no validated one left (RFC 9000 §9.3.2: drop all state
  silently), loss detection and the PTO probes it asks for (with what DPLPMTUD and ECN
  learn from them), then DPLPMTUD's own timer.

Both read the components' deadlines; none is cached here, so the answer is always the
components' current one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quic.conn_keys import APPLICATION, HANDSHAKE, INITIAL
from quic.conn_state import ConnectionState

if TYPE_CHECKING:
    from quic.connection import QuicConnection

# per get_timer (every batch): module aliases, not Enum class attributes (an Enum class
# attribute goes through EnumType's getattr slot on Python 3.11, ~10x a global load)
_TERMINATED = ConnectionState.TERMINATED
_HANDSHAKE = ConnectionState.HANDSHAKE
_CONNECTED = ConnectionState.CONNECTED
_CLOSING = ConnectionState.CLOSING
_DRAINING = ConnectionState.DRAINING

__all__ = [
    "IdleTimer",
    "earliest_deadline",
    "fire_due",
    "idle_deadline",
    "linger",
    "rest_connection",
    "rest_deadline",
]


def linger(conn: QuicConnection) -> float:
    """How long closing and draining last: three PTOs (RFC 9000 §10.2)."""
    return 3 * conn.recovery.rtt.pto_base()


def idle_deadline(
    conn: QuicConnection, last_activity: float | None, timeout: float
) -> float | None:
    """When the connection times out idle, or None (RFC 9000 §10.1: never shorter
    than three PTOs)."""
    if last_activity is None or not timeout:
        return None
    three_ptos = 3 * conn.recovery.rtt.pto  # linger(conn), inline: every batch
    return last_activity + (timeout if timeout > three_ptos else three_ptos)


def rest_deadline(
    conn: QuicConnection, delay: float | None, last_activity: float | None, rested_at: float
) -> float | None:
    """When the packet protection's cipher contexts may go (``delay``, the
    configuration's ``key_rest_delay``, after the last activity, at most once per
    delay; :mod:`quic.conn_keys` "Resting keys"), or None."""
    if not delay or last_activity is None or not conn.handshake.confirmed:
        return None
    if last_activity > rested_at:
        # Activity since the last rest went through the 1-RTT keys, which rebuilt their
        # contexts: resident without asking (the property's walk, per build call)
        return last_activity + delay
    if not conn.keys.resident:
        return None
    return rested_at + delay


def rest_connection(conn: QuicConnection) -> None:
    """A quiet connection rests: its keys release their cipher contexts, and the
    tables that grew and emptied give their storage back; a discarded Initial or
    Handshake space becomes the shared spent state (issue 10, memory). Done at rest,
    never at discard: a packet of that space may still be being processed then."""
    conn.keys.rest()
    conn.streams.compact()
    conn.cids.compact()
    conn.ackfreq.compact()
    conn.recovery.compact()
    for index in (INITIAL, HANDSHAKE):
        if conn.keys.spaces[index].discarded:
            conn.recovery.retire_space(index)
            conn.acks.discard(index)


def earliest_deadline(
    conn: QuicConnection, idle: float | None, rest: float | None = None
) -> float | None:
    """The earliest absolute deadline of ``conn`` (``idle``: its idle deadline;
    ``rest``: when its keys' cipher contexts may go, see :mod:`quic.conn_keys`)."""
    state = conn.state
    if state is _TERMINATED:
        return None
    if state is not _HANDSHAKE and state is not _CONNECTED:
        return conn.closer.deadline
    timer = idle
    if rest is not None and (timer is None or rest < timer):
        timer = rest
    loss = conn.recovery.get_loss_detection_timer()
    if loss is not None and (timer is None or loss < timer):
        timer = loss
    paths = conn.paths
    current = paths.current
    if paths.others or current.abandon_at is not None:  # else get_timer() says None
        path = paths.get_timer()  # what conn.migration.get_timer() returns
        if path is not None and (timer is None or path < timer):
            timer = path
    pacing = conn.sender.pacing_deadline  # RFC 9002 §7.7
    if pacing is not None and (timer is None or pacing < timer):
        timer = pacing
    pmtu = conn.pmtu.deadline
    if pmtu is not None and (timer is None or pmtu < timer):
        timer = pmtu
    # paths.amplification_blocked(), inline: else no ACK could be sent (§8.1)
    if current.validated or current.sent < 3 * current.received:
        ack = conn.acks.earliest_deadline(conn.keys.spaces)
        if ack is not None and (timer is None or ack < timer):
            timer = ack
    return timer


def fire_due(conn: QuicConnection, now: float, idle: float | None) -> None:
    """Fire what is due at ``now`` (``idle``: the idle deadline); safe to call early."""
    state = conn.state
    if state is _TERMINATED:
        return
    if state is _CLOSING or state is _DRAINING:
        if conn.closer.expired(now):
            conn.state = _TERMINATED
        return
    if idle is not None and now >= idle:
        conn.state = _TERMINATED
        conn.closer.on_idle_timeout(now)
        return
    if not conn.migration.handle_timer(now):
        # RFC 9000 §9.3.2: no validated path left: drop all state silently
        conn.state = _TERMINATED
        conn.closer.on_idle_timeout(now)
        return
    pmtu = conn.pmtu
    probe = conn.recovery.on_loss_detection_timeout(now)
    if probe.lost:
        pmtu.on_lost(probe.lost, now)
        if conn.qlog is not None:
            conn.qlog.packets_lost(now, probe.lost, conn.recovery, "time_threshold")
    if probe.count:
        # before the probes are built: they follow a fallback
        pmtu.on_pto(now, conn.recovery.largest_eliciting_in_flight())
        conn.ecn.on_pto()
        conn.sender.schedule_probe(probe.space, probe.count, probe.other_spaces)
    pmtu.handle_timer(now)


class IdleTimer:
    """The idle timeout (RFC 9000 §10.1) and the key rest (:mod:`quic.conn_keys`) of a
    connection: the last activity both count from, and the deadlines they set."""

    __slots__ = ("eliciting_since_receive", "last_activity", "rest_delay", "rested_at", "timeout")

    def __init__(self, timeout: float, rest_delay: float | None) -> None:
        self.timeout = timeout  # ours; the minimum of both once the peer's is known
        self.rest_delay = rest_delay  # the configuration's key_rest_delay
        self.rested_at = 0.0  # when the keys last rested
        #: the latest activity (None: not started); the connection sets it
        self.last_activity: float | None = None
        #: an ack-eliciting packet was sent since the last packet processed (§10.1)
        self.eliciting_since_receive = False

    def set_peer_timeout(self, peer_timeout: float) -> None:
        """The peer's max_idle_timeout (seconds, not 0): the minimum of both (§10.1)."""
        if not self.timeout or peer_timeout < self.timeout:
            self.timeout = peer_timeout

    def idle_deadline(self, conn: QuicConnection) -> float | None:
        return idle_deadline(conn, self.last_activity, self.timeout)

    def rest_deadline(self, conn: QuicConnection) -> float | None:
        return rest_deadline(conn, self.rest_delay, self.last_activity, self.rested_at)

    def deadline(self, conn: QuicConnection) -> float | None:
        """The earliest deadline of ``conn``: :func:`earliest_deadline` of
        :meth:`idle_deadline` and :meth:`rest_deadline`, all three inline while the
        connection is live, without their calls (after every build and every batch
        received; tests/quic/test_reply_path.py and tests/quic/test_hot_path_inlines.py
        compare them). After the handshake only the application space's ACK timer
        is read (the other trackers spent, their deadlines None)."""
        recovery = conn.recovery
        if recovery.waiting_ack is not None:
            recovery.process_waiting_ack()  # an ACK set aside for the reply: first
        last = self.last_activity
        state = conn.state
        if last is None or (state is not _CONNECTED and state is not _HANDSHAKE):
            return earliest_deadline(conn, None, None)  # neither idle nor rest counts then
        timer = None
        timeout = self.timeout
        if timeout:  # idle_deadline: never shorter than three PTOs (RFC 9000 §10.1)
            three_ptos = 3 * recovery.rtt.pto
            timer = last + (timeout if timeout > three_ptos else three_ptos)
        delay = self.rest_delay
        if delay and conn.handshake.confirmed:  # rest_deadline
            rested_at = self.rested_at
            if last > rested_at:
                rest = last + delay  # activity since the rest: the keys are resident
                if timer is None or rest < timer:
                    timer = rest
            elif conn.keys.resident:
                rest = rested_at + delay
                if timer is None or rest < timer:
                    timer = rest
        # earliest_deadline(conn, idle, rest) from here, inline
        loss = recovery.get_loss_detection_timer()
        if loss is not None and (timer is None or loss < timer):
            timer = loss
        paths = conn.paths
        current = paths.current
        if paths.others or current.abandon_at is not None:  # else get_timer() says None
            path = paths.get_timer()  # what conn.migration.get_timer() returns
            if path is not None and (timer is None or path < timer):
                timer = path
        pacing = conn.sender.pacing_deadline  # RFC 9002 §7.7
        if pacing is not None and (timer is None or pacing < timer):
            timer = pacing
        pmtu = conn.pmtu  # its deadline property, inline (a property call per batch)
        at = pmtu._search_at  # BASE: neither of the others is set
        if at is None:
            at = pmtu._probe_deadline
            raise_at = pmtu._raise_at
            if at is None or (raise_at is not None and raise_at < at):
                at = raise_at
        if at is not None and (timer is None or at < timer):
            timer = at
        # paths.amplification_blocked(), inline: else no ACK could be sent (§8.1)
        if current.validated or current.sent < 3 * current.received:
            acks = conn.acks
            initial, handshake, application = acks.trackers
            if initial.deadline is None and handshake.deadline is None:
                ack = application.deadline  # AckState.earliest_deadline, one space left
                if ack is not None and conn.keys.spaces[APPLICATION].write is None:
                    ack = None
            else:
                ack = acks.earliest_deadline(conn.keys.spaces)
            if ack is not None and (timer is None or ack < timer):
                timer = ack
        return timer

    def fire(self, conn: QuicConnection, now: float) -> bool:
        """Fire what is due at ``now`` for ``conn``: its rest, then :func:`fire_due`.
        False when the rest was all that was due (nothing else fired, and no ACK or
        paced packet is due: the connection has nothing to send), else True.
        (:meth:`rest_deadline` and :meth:`idle_deadline` inline, as in
        :meth:`deadline`: tests/quic/test_conn_timers.py compares them.)"""
        recovery = conn.recovery
        if recovery.waiting_ack is not None:
            recovery.process_waiting_ack()  # an ACK set aside for the reply: first
        last = self.last_activity
        delay = self.rest_delay
        if delay and last is not None and conn.handshake.confirmed:  # rest_deadline
            rested_at = self.rested_at
            if last > rested_at:
                rest: float | None = last + delay  # activity since: the keys are resident
            else:
                rest = rested_at + delay if conn.keys.resident else None
            if rest is not None and now >= rest:
                rest_connection(conn)  # keys and emptied tables
                self.rested_at = now
                after = self.deadline(conn)  # every deadline but the rest's, now gone
                if after is None or after > now:
                    return False
        idle = None
        timeout = self.timeout
        if timeout and last is not None:  # idle_deadline: never under three PTOs (§10.1)
            three_ptos = 3 * recovery.rtt.pto
            idle = last + (timeout if timeout > three_ptos else three_ptos)
        fire_due(conn, now, idle)
        return True
