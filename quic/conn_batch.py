"""Datagrams read together, fed to one connection in one call (RFC 9000 §12.2, §5.2).

Theory of operation
-------------------
A GRO read (:mod:`quic.aio.offload`) holds up to ~45 datagrams of one sender, and in a
bulk transfer each is one short-header packet of the same connection. The endpoint
hands such a run to :meth:`QuicConnection.receive_datagrams
<quic.connection.QuicConnection.receive_datagrams>`, which calls
:func:`receive_batch` here. When the connection is established with its handshake
confirmed, the datagrams came to and from the current path, qlog is off and no
preferred-address switch or amplification limit is pending, what
:meth:`~quic.connection.QuicConnection.receive_datagram` does per datagram that cannot
change within the batch is done once — the clock, the path's byte counts, the path the
datagrams came on, the peer's connection ID on it, the idle timer (RFC 9000 §10.1) —
and runs of datagrams of one short-header packet each are read by the reader in one
loop (:meth:`~quic.conn_receive.PacketReader.read_short_run`); anything else in the
batch goes the general way (``_receive``). A run stops where the connection must
look: after a datagram that did not open (a stateless reset?) or a packet with a frame
that may have changed the connection's state, whose state is checked before the next
datagram: once a packet closed it (CONNECTION_CLOSE, RFC 9000 §10.2.2; a stateless
reset, §10.3.1; an error of ours) the rest of the batch goes through
``receive_datagram``, which drops it or counts it while closing (§10.2.1), as it would
have one by one. Errors end the connection as they do there.

One datagram (:func:`receive_datagram`, which is ``QuicConnection.receive_datagram``)
goes the same way in its common case: on the current path, one 1-RTT packet of a
confirmed connection, the path's counts and ``PacketReader.read_short``'s common case
(the current keys' Key Phase, a new packet number, no qlog) are done here without
``received_on_current``, ``_receive`` and ``read_short`` (issue 10: three calls less per
datagram); anything else goes to ``read_short``. tests/quic/test_receive_inline.py holds
them to the general way, with loss, duplicates, reordering, corruption, key updates
and ECN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quic.conn_build import start_qlog
from quic.conn_ecn import ECN_ECT0
from quic.conn_keys import APPLICATION, OneRttReadKeys
from quic.conn_state import LIVE, ConnectionState
from quic.conn_timers import linger
from quic.errors import QuicProtocolError
from quic.frames import FrameType
from quic.packet import PacketType
from quic.protection import DecryptionError
from quic.tls.alerts import TlsAlertError

if TYPE_CHECKING:
    from quic.connection import QuicConnection

__all__ = ["receive_batch", "receive_datagram", "receive_datagrams"]

_CONNECTED = ConnectionState.CONNECTED  # a module alias: no EnumType lookup per datagram
_TERMINATED = ConnectionState.TERMINATED
_DRAINING = ConnectionState.DRAINING
_CLOSING = ConnectionState.CLOSING
_ONE_RTT = PacketType.ONE_RTT
_ECT0 = ECN_ECT0
_APPLICATION_ECT0 = APPLICATION * 3  # its count in EcnController.received_counts


def _close_on_error(conn: QuicConnection, exc: Exception) -> None:
    """The one way an error raised while reading datagrams closes ``conn`` (never
    raising): the protocol's own error as it is, a TLS alert raised outside a CRYPTO
    frame's handling as a CRYPTO_ERROR (RFC 9001 §4.8), anything else — a bug — as
    INTERNAL_ERROR."""
    if isinstance(exc, QuicProtocolError):
        conn._fail(exc)
    elif isinstance(exc, TlsAlertError):
        conn._fail(QuicProtocolError(exc.quic_error_code, str(exc), FrameType.CRYPTO))
    else:
        conn._internal_error(exc)


def receive_datagram(
    self: QuicConnection, data: bytes, addr: Any, now: float, ecn: int = 0, local: int = 0
) -> None:
    """Process one UDP payload from ``addr``; ``ecn`` is the ECN field of its IP
    header (0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE; RFC 9000 §13.4.1) when the I/O
    layer can read it; ``local`` the index of our local address it came to (1: a
    server's preferred address, RFC 9000 §9.6). (``QuicConnection.receive_datagram``;
    the per-datagram case — on the current path, one 1-RTT packet of a confirmed
    connection — runs ``PathManager.received_on_current``, ``_receive`` and
    ``PacketReader.read_short``'s common case inline, without their calls:
    tests/quic/test_receive_inline.py compares them.)"""
    if now > self._now:
        self._now = now
    state = self.state
    if state is _TERMINATED or state is _DRAINING:
        return
    try:
        paths = self.paths
        current = paths.current
        if current.addr is None:  # the peer_address property, without a call
            paths.peer_address = addr
        qlog = self._qlog
        if qlog is not None:
            if not qlog.started:
                start_qlog(self, now)
            qlog.datagram_received(now, len(data))
        migration = self.migration
        if local == current.local and addr == current.addr:  # received_on_current, inline
            size = len(data)
            paths.bytes_received += size
            current.received += size
            on_path = True
        else:
            on_path = paths.received_on_current(addr, local, len(data))
            if not on_path and not migration.admit(data, addr, self.cids.cid_length, local):
                return  # RFC 9000 §9: dropped
        if state is _CLOSING:
            self.closer.on_datagram_while_closing()  # RFC 9000 §10.2.1
            return
        recovery = self.recovery
        if recovery.amplification_limited and not paths.send_blocked():
            recovery.amplification_limited = False  # RFC 9002 §6.2.2.1: may send again
        paths.receiving, paths.receiving_local = addr, local
        reader = self.reader
        if on_path:
            cid_len = self.cids.cid_length
            if len(data) > cid_len + 20 and data[0] & 0xC0 == 0x40 and self.handshake.confirmed:
                # _receive()'s one 1-RTT packet, inline: per datagram
                read = self.keys.spaces[APPLICATION].read
                processed = False
                if type(read) is OneRttReadKeys and qlog is None and type(data) is bytes:
                    # PacketReader.read_short's common case, inline: the current keys'
                    # Key Phase, no Reserved Bits, above the largest packet number seen
                    # (not a duplicate); anything else is read by read_short itself
                    # (opening again has no effect but a failure's count, taken here)
                    tracker = self.acks.trackers[APPLICATION]
                    largest = tracker.largest
                    try:
                        plain, pn, payload = read.current.open_short(
                            data, 1 + cid_len, largest, None, 0
                        )
                    except DecryptionError:
                        self.keys.on_auth_failure()  # RFC 9001 §6.6
                        reader.drop(now, "decryption_failure", _ONE_RTT)
                    else:
                        if payload is None or pn <= largest or plain[0] & 0x18:
                            processed = reader.read_short(data, cid_len, now, ecn & 3)
                        else:
                            dispatcher = self.dispatcher
                            dcid = data[1 : 1 + cid_len]
                            eliciting = dispatcher.dispatch(
                                payload, APPLICATION, _ONE_RTT, dcid, now
                            )
                            reader.newest_dcid = dcid
                            if dispatcher.non_probing:
                                reader.newest_non_probing = True
                            if ecn & 3 == _ECT0:
                                self.ecn.received_counts[_APPLICATION_ECT0] += 1
                                ce = False
                            else:
                                ce = bool(ecn & 3) and self.ecn.on_packet_received(
                                    APPLICATION, ecn & 3
                                )
                            tracker.on_packet(pn, eliciting, now, ce)
                            reader.processed += 1
                            processed = True
                else:
                    processed = reader.read_short(data, cid_len, now, ecn & 3)
                if processed:
                    idle = self.idle
                    idle.last_activity = now
                    idle.eliciting_since_receive = False
                elif len(data) >= 21 and self.cids.is_peer_stateless_reset(bytes(data[-16:])):
                    # RFC 9000 §10.3.1: a stateless reset ends the connection at once
                    self.state = self.closer.on_stateless_reset(now, linger(self))
            else:
                self._receive(data, addr, now, ecn & 3)
            migration.path_dcid = reader.newest_dcid  # the peer's ID on this path
        else:  # what before_datagram resets only after_datagram reads
            previous_dcid = migration.before_datagram()
            processed = self._receive(data, addr, now, ecn & 3)
            if self.state in LIVE:
                migration.after_datagram(addr, len(data), processed, previous_dcid, now, local)
        if paths.preferred_ready:
            migration.adopt_preferred(now)  # RFC 9000 §9.6.2
        reprocess = reader.reprocess
        while reprocess and self.state in LIVE:
            again, again_addr, again_ecn = reprocess.popleft()
            self._receive(again, again_addr, now, again_ecn)
        if qlog is not None and self.state in LIVE:
            qlog.metrics_updated(now, recovery)
            qlog.ecn_state(now, self.ecn.state.value)
    except Exception as exc:
        _close_on_error(self, exc)


def receive_batch(
    conn: QuicConnection, datagrams: list[bytes], addr: Any, now: float, ecn: int, local: int
) -> bool:
    """Feed ``datagrams`` (from ``addr``, to our address ``local``) to ``conn`` as one
    batch; False, with nothing done, when the batch must go datagram by datagram (see
    the module docstring)."""
    paths = conn.paths
    current = paths.current
    if (
        conn.state is not _CONNECTED
        or local != current.local
        or addr != current.addr
        or conn._qlog is not None
        or not conn.handshake.confirmed
        or paths.preferred_ready
        or conn.recovery.amplification_limited
    ):
        return False
    if now > conn._now:
        conn._now = now
    paths.receiving, paths.receiving_local = addr, local
    reader = conn.reader
    read_run = reader.read_short_run
    cid_len = conn.cids.cid_length
    ecn &= 3
    processed_before = reader.processed
    processed = False  # by the general way (its packets may not all count in processed)
    end = len(datagrams)
    taken = 0  # datagrams handled here; the rest (after a close) go the general way
    reader.run_end = 0
    try:
        masks = reader.short_masks(datagrams, cid_len) if end > 1 else None
        while taken < end and conn.state is _CONNECTED:
            # a closing packet ends the batch: receive_datagram decides the rest
            stop = read_run(datagrams, taken, cid_len, now, ecn, masks)
            if stop == taken:  # not one 1-RTT packet: the general way
                taken = stop = taken + 1
                if conn._receive(datagrams[taken - 1], addr, now, ecn):
                    processed = True
            elif reader.run_failed:
                data = datagrams[stop - 1]
                if len(data) >= 21 and conn.cids.is_peer_stateless_reset(bytes(data[-16:])):
                    # RFC 9000 §10.3.1: a stateless reset ends the connection at once
                    conn.state = conn.closer.on_stateless_reset(now, linger(conn))
            taken = stop
            if paths.preferred_ready:
                conn.migration.adopt_preferred(now)  # RFC 9000 §9.6.2
            reprocess = reader.reprocess
            while reprocess and conn.state in LIVE:
                again, again_addr, again_ecn = reprocess.popleft()
                conn._receive(again, again_addr, now, again_ecn)
    except Exception as exc:
        _close_on_error(conn, exc)
    if reader.run_end > taken:  # a run an error cut short: the datagrams it read
        taken = reader.run_end
    size = sum(map(len, datagrams if taken >= end else datagrams[:taken]))
    paths.bytes_received += size  # received_on_current's counts, for the batch
    current.received += size
    conn.migration.path_dcid = reader.newest_dcid  # the peer's ID on this path
    if processed or reader.processed != processed_before:
        idle = conn.idle
        idle.last_activity = now
        idle.eliciting_since_receive = False  # RFC 9000 §10.1
    for data in datagrams[taken:]:  # dropped, or counted while closing (RFC 9000 §10.2.1)
        conn.receive_datagram(data, addr, now, ecn, local)
    return True


def receive_datagrams(
    conn: QuicConnection,
    datagrams: list[bytes],
    addr: Any,
    now: float,
    ecn: int = 0,
    local: int = 0,
) -> None:
    """``QuicConnection.receive_datagram`` for datagrams that came together from one
    address (a GRO read's): on the current path of a confirmed connection, read as one
    batch (:func:`receive_batch`); else one by one."""
    if not receive_batch(conn, datagrams, addr, now, ecn, local):
        for data in datagrams:
            conn.receive_datagram(data, addr, now, ecn, local)
