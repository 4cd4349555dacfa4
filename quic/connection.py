"""The QUIC connection: a Sans-I/O coordinator of owned components (RFC 9000, 9001, 9002).

Theory of operation
-------------------
Driving API (DESIGN.md), the same at every layer::

    conn.receive_datagram(data, addr, now)    # feed a UDP payload (ecn=, local=)
    conn.datagrams_to_send(now)               # -> [(bytes, addr)], ready to send
    conn.routed_datagrams_to_send(now)        # -> [(bytes, addr, local)]
    conn.ecn_codepoint                        # ECN field for what it just returned
    conn.get_timer()                          # earliest deadline or None
    conn.handle_timer(now)                    # fire what is due (safe to call early)
    conn.next_event()                         # QuicEvent or None: the one way out

:class:`QuicConnection` holds no protocol rule of its own beyond coordination. It owns
one object per concern, each with a narrow interface that takes ``now`` as an
argument, writes its own frames through the codec's encoders and learns the fate of
those frames from the handlers it registers on the packets that carry them. The
components, and which RFC sections each owns, are listed in :mod:`quic.conn_build`,
which creates them; :mod:`quic.conn_restart` owns Version Negotiation, compatible
version switches and Retry.

Receiving: a datagram is split here into its coalesced packets (RFC 9000 §12.2);
Version Negotiation and Retry are handled here, and so is the version of a long header
that is not the one in use (RFC 9369 §4: the client's first packet of the server's
Negotiated Version switches the connection to it, an Initial of the version a
compatible negotiation left is still read, anything else of another version is
dropped); the others are opened by the reader and their frames routed by the
dispatcher's table. What TLS releases is handed out by
:func:`quic.conn_build.hand_out_tls`. Timers: the connection's deadline and what fires
when it is due are computed by :mod:`quic.conn_timers` from the components' own
deadlines and the owned :class:`~quic.conn_timers.IdleTimer` (RFC 9000 §10.1: the last
activity, the idle timeout, when the keys last rested).
A connection quiet for ``key_rest_delay`` rests: its keys let their cipher contexts go
(:mod:`quic.conn_keys`) and the tables that grew and emptied (streams with output,
connection IDs to announce or retire, ACK_FREQUENCY requests, sent and lost packets)
give their storage back (issue 10, memory per idle connection).

Errors: every protocol violation is raised as :class:`~quic.errors.QuicProtocolError`
and turned into a CONNECTION_CLOSE in exactly one place, :meth:`QuicConnection._fail`.
Undecryptable packets are dropped silently. No exception escapes an entry point: a
bug (any other exception) closes the connection with INTERNAL_ERROR and is logged once
on the ``quic`` logger (:meth:`QuicConnection._internal_error`). The application API
is a no-op on a connection that is closing or closed; calls that lack a ``now`` use
the latest time an entry point was given.

Events leave only through :meth:`QuicConnection.next_event`: every component that
reports something appends to the one queue it was given. :meth:`QuicConnection.
queue_sizes` exposes the size of every internal queue for tests and diagnostics.

States: HANDSHAKE → CONNECTED → (CLOSING | DRAINING) → TERMINATED (RFC 9000 §10); the
transitions of the end are :class:`~quic.conn_close.CloseState`'s, which returns the new
state (``state`` stays an attribute: it is read per datagram).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from itertools import repeat
from typing import Any

from quic.cid import ConnectionIdManager
from quic.configuration import QuicConfiguration
from quic.conn_ackfreq import AckFrequencySender
from quic.conn_acks import AckState
from quic.conn_batch import receive_datagram, receive_datagrams
from quic.conn_build import build_components, confirm_handshake, hand_out_tls, start_qlog
from quic.conn_close import CloseFrame, CloseState
from quic.conn_crypto import CryptoStreams
from quic.conn_datagrams import DatagramChannel
from quic.conn_dispatch import FrameDispatcher
from quic.conn_ecn import EcnController
from quic.conn_handshake import HandshakeDriver
from quic.conn_keys import APPLICATION, HANDSHAKE, INITIAL, PacketSpaces, Space
from quic.conn_migrate import Migration, MigrationRefused
from quic.conn_paths import PathManager
from quic.conn_pmtu import PmtuDiscovery
from quic.conn_receive import PacketReader
from quic.conn_restart import FirstFlight
from quic.conn_send import SendScheduler
from quic.conn_state import LIVE, ConnectionState
from quic.conn_streams import DeferredDelivery, StreamController
from quic.conn_timers import IdleTimer, linger
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    QuicEvent,
)
from quic.packet import PacketHeader, parse_header
from quic.qlog import QuicLogger, create_logger
from quic.recovery import LossRecovery
from quic.stats import ConnectionStats, queue_sizes
from quic.tls.engine import TlsEngine
from quic.tparams import TransportParameters

__all__ = ["ConnectionState", "QuicConnection"]

logger = logging.getLogger("quic")

Addr = Any  # (host, port) tuple as given by the socket layer


_LIVE = LIVE
# An Enum class attribute (``PacketType.ONE_RTT``) goes through EnumType.__getattr__'s
# slot on Python 3.11, ~10x a global load: the per-packet code reads module aliases.
_TERMINATED = ConnectionState.TERMINATED
_DRAINING = ConnectionState.DRAINING
_CLOSING = ConnectionState.CLOSING
_TAKEN_KEPT = 64  # taken events a never-drained queue keeps (beyond: up to half of it)


class QuicConnection:
    """One QUIC connection, client or server (see the module docstring)."""

    # the components (module docstring), created by quic.conn_build
    closer: CloseState
    ecn: EcnController
    keys: PacketSpaces
    acks: AckState
    crypto: CryptoStreams
    paths: PathManager
    recovery: LossRecovery
    ackfreq: AckFrequencySender
    pmtu: PmtuDiscovery
    streams: StreamController
    datagrams: DatagramChannel
    handshake: HandshakeDriver
    sender: SendScheduler
    dispatcher: FrameDispatcher
    reader: PacketReader
    migration: Migration
    first_flight: FirstFlight

    # more than 30 attributes: in slots, no per-instance dict (1.3 KB per connection;
    # issue 10, memory); ``__dict__`` keeps other attributes possible (tests patch some)
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_events",
        "_issue_token",
        "_now",
        "_qlog",
        "_taken",
        "_token_bytes",
        "ackfreq",
        "acks",
        "cids",
        "closer",
        "configuration",
        "crypto",
        "datagrams",
        "dispatcher",
        "ecn",
        "ecn_codepoint",
        "first_flight",
        "handshake",
        "host_cid",
        "idle",
        "is_client",
        "keys",
        "last_internal_error",
        "migration",
        "more_to_send",
        "paths",
        "pmtu",
        "reader",
        "recovery",
        "sender",
        "state",
        "streams",
    )

    def __init__(
        self,
        configuration: QuicConfiguration,
        *,
        original_destination_connection_id: bytes | None = None,
        peer_connection_id: bytes | None = None,
        version: int | None = None,
        retry_source_connection_id: bytes | None = None,
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
        address_validated: bool = False,
        issue_token: Callable[[Addr, float], bytes] | None = None,
        reset_token: Callable[[bytes], bytes] | None = None,
    ) -> None:
        """A server connection gets the client's connection IDs from the endpoint,
        and, after a Retry, the Retry's Source Connection ID (RFC 9000 §7.3);
        ``address_validated`` if a token validated the client's address (§8.1) and
        ``issue_token(addr, now)`` to mint the NEW_TOKEN it sends (§8.1.3).
        ``reset_token(cid)``: the stateless reset token of each connection ID we
        issue (the endpoint derives it with its static key, RFC 9000 §10.3.2)."""
        config = configuration
        self.configuration = config
        self.is_client = config.is_client
        self._token_bytes = token_bytes
        if version is None:  # a client: the version of its first Initial
            version = config.initial_version or config.supported_versions[0]
        self.state = ConnectionState.HANDSHAKE
        # events (every component appends) and how many were taken: a list emptied when
        # drained (an idle deque keeps a 64-slot block, 0.7 KB; issue 10)
        self._events: list[QuicEvent] = []
        self._taken = 0
        self._now = 0.0  # the latest time an entry point was given (for the app API)
        self.host_cid = token_bytes(config.connection_id_length)
        self.cids = ConnectionIdManager(
            self.host_cid,
            config.connection_id_length,
            config.active_connection_id_limit,
            token_bytes,
            config.max_pending_cid_retirements,
            reset_token,
        )
        if self.is_client:
            original_dcid = token_bytes(8)  # RFC 9000 §7.2: at least 8 bytes
            self.cids.set_initial_peer_cid(original_dcid)
        else:
            if original_destination_connection_id is None or peer_connection_id is None:
                raise ValueError("a server connection needs the client's connection IDs")
            original_dcid = original_destination_connection_id
            self.cids.set_initial_peer_cid(peer_connection_id)
        # qlog tracing: None when off (every hook is one ``is not None`` test)
        self._qlog: QuicLogger | None = create_logger(config, self.is_client, original_dcid)
        build_components(
            self, config, version, original_dcid, peer_connection_id, retry_source_connection_id
        )
        self._issue_token = issue_token
        if address_validated:
            self.paths.validate_address()  # RFC 9000 §8.1: a token proved the address
        #: the idle timeout and key rest, and the last activity (quic.conn_timers)
        self.idle = IdleTimer(config.idle_timeout, config.key_rest_delay)
        #: The last datagrams-to-send call may have left datagrams that could go now
        #: (it stopped at its cap): call again. Else the next input, timer or
        #: application action is what gives it more to send.
        self.more_to_send = False
        #: The ECN codepoint (0 Not-ECT, 2 ECT(0)) the I/O layer sets on the datagrams
        #: of the latest :meth:`datagrams_to_send` call (RFC 9000 §13.4.2): an attribute
        #: the build call sets (the endpoint reads it per connection served).
        self.ecn_codepoint = self.ecn.send_codepoint
        self.last_internal_error: BaseException | None = None

    # -- state the layers above read ---------------------------------------------------------

    @property
    def version(self) -> int:
        """The QUIC version in use (it changes with a compatible negotiation)."""
        return self.handshake.version

    @property
    def original_dcid(self) -> bytes:
        """The DCID of the client's first Initial (RFC 9000 §7.3), new after a VN restart."""
        return self.handshake.original_dcid

    @property
    def spaces(self) -> tuple[Space, Space, Space]:
        """The three packet number spaces (keys, next packet number)."""
        return self.keys.spaces

    @property
    def tls(self) -> TlsEngine:
        return self.handshake.tls

    @property
    def handshake_complete(self) -> bool:
        return self.handshake.complete

    @property
    def handshake_confirmed(self) -> bool:
        return self.handshake.confirmed

    @property
    def alpn_protocol(self) -> str | None:
        return self.handshake.alpn_protocol

    @property
    def early_data_possible(self) -> bool:
        """Client: stream data and datagrams written now go out in 0-RTT packets (a
        resumed connection whose ticket allows 0-RTT, before the handshake completes)."""
        return self.keys.zero_rtt_write is not None

    @property
    def peer_params(self) -> TransportParameters | None:
        return self.handshake.peer_params

    @property
    def new_token(self) -> bytes:
        """Client: the latest NEW_TOKEN received (RFC 9000 §19.7), else b""."""
        return self.handshake.new_token

    @property
    def peer_address(self) -> Addr:
        return self.paths.peer_address

    @peer_address.setter
    def peer_address(self, addr: Addr) -> None:
        self.paths.peer_address = addr

    @property
    def address_validated(self) -> bool:
        return self.paths.address_validated

    @property
    def max_datagram_size(self) -> int:
        """Largest UDP payload we send on the path."""
        return self.paths.max_datagram_size

    @max_datagram_size.setter
    def max_datagram_size(self, size: int) -> None:
        self.paths.max_datagram_size = size

    def _set_datagram_size(self, size: int) -> None:
        """The PMTU component changed the PLPMTU: the send path and the congestion
        controller follow it (RFC 9000 §14.3, RFC 9002 §7.2)."""
        if self._qlog is not None:
            self._qlog.mtu_updated(None, self.paths.max_datagram_size, size)
        shrunk = size < self.paths.max_datagram_size
        self.paths.max_datagram_size = size
        setter = getattr(self.recovery.congestion, "set_max_datagram_size", None)
        if setter is not None:
            setter(size)
        if shrunk:  # queued DATAGRAMs that no longer fit are dropped (RFC 9221 §5)
            self.datagrams.shrink(self.max_datagram_payload)

    @property
    def dropped_packets(self) -> int:
        """Packets dropped so far (undecryptable, unsupported, malformed)."""
        return self.reader.dropped

    @property
    def has_authenticated_packet(self) -> bool:
        """True once a packet from the peer passed AEAD authentication, even if it then
        broke a rule (the endpoint keeps a new server connection only then)."""
        return self.reader.authenticated

    @property
    def packets_processed(self) -> int:
        """Packets successfully processed so far (0: the peer never authenticated)."""
        return self.reader.processed

    @property
    def _close_frame(self) -> CloseFrame | None:
        """The CONNECTION_CLOSE we close with (None: open, or the peer closed)."""
        return self.closer.frame

    @property
    def qlog(self) -> QuicLogger | None:
        """The qlog logger of this connection (None: tracing off); the layers above
        log their own events through it (:mod:`h3.qlog`)."""
        return self._qlog

    @property
    def is_closed(self) -> bool:
        return self.state is _TERMINATED  # per datagram (the endpoint's bookkeeping)

    def queue_sizes(self) -> dict[str, int]:
        """Size of every internal queue and table a peer or the application can grow
        (tests assert they drain and stay within their limits; :mod:`quic.stats`)."""
        return queue_sizes(self, len(self._events) - self._taken)

    # -- application API ---------------------------------------------------------------------

    def connect(self, addr: Addr, now: float) -> None:
        """Client: start the handshake towards ``addr``."""
        if not self.is_client:
            raise RuntimeError("only a client connects")
        self.paths.peer_address = addr
        self._now = now
        self.idle.last_activity = now
        if self._qlog is not None:
            start_qlog(self, now)
        self.handshake.load_token(addr)  # a NEW_TOKEN token of an earlier connection
        self.handshake.start()
        self._after_tls(now)
        remembered = self.handshake.early.start(self.tls.early_data_offered)
        if remembered is not None:  # 0-RTT: remembered limits until completion (§7.4.1)
            self.streams.apply_peer_params(remembered)
            self.datagrams.set_peer_max_frame_size(remembered.max_datagram_frame_size)
        else:
            self.keys.discard_zero_rtt()  # no usable remembered parameters: no 0-RTT

    def next_event(self) -> QuicEvent | None:
        """The next event, or None: the only way events leave the connection."""
        events = self._events
        while events:
            event = events[self._taken]
            taken = self._taken + 1
            if taken == len(events):
                events.clear()  # drained: the list's storage goes
                taken = 0
            elif taken > _TAKEN_KEPT and taken * 2 > len(events):  # never drained: bounded
                del events[:taken]
                taken = 0
            self._taken = taken
            if type(event) is not DeferredDelivery:
                return event
            # stream data waiting in its place (quic.conn_streams): delivered now
            delivered = self.streams.deliver_deferred(event.stream_id, self._now)
            if delivered is not None:
                return delivered
        return None

    def create_stream(self, bidirectional: bool = True) -> int:
        """Open a new local stream; raises StreamLimitReached if the peer forbids it."""
        return self.streams.open_stream(bidirectional)

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        return self.create_stream(not is_unidirectional)

    def send_stream_data(
        self, stream_id: int, data: bytes | bytearray | memoryview, end_stream: bool = False
    ) -> bool:
        """Queue stream data; False when the stream's send buffer is above its mark.

        On a connection that is closing or closed the data is dropped (True)."""
        if self.state not in _LIVE:
            return True
        return self.streams.send(stream_id, data, end_stream)

    def reset_stream(
        self, stream_id: int, error_code: int, reliable_size: int | None = None
    ) -> None:
        """Abandon our sending half: RESET_STREAM (RFC 9000 §19.4), or with
        ``reliable_size`` RESET_STREAM_AT, which still delivers the first
        ``reliable_size`` bytes written (draft-ietf-quic-reliable-stream-reset §4). A
        second call may lower the reliable size, never raise it (§5.2). ValueError if
        the peer did not send the reset_stream_at transport parameter
        (:attr:`peer_accepts_reset_stream_at`) or beyond the bytes written."""
        if self.state in _LIVE:
            self.streams.reset(stream_id, error_code, reliable_size)

    def set_reliable_floor(self, stream_id: int, size: int) -> None:
        """Every later reset of ``stream_id``'s sending half — ours, or the one that
        answers the peer's STOP_SENDING (RFC 9000 §3.5) — is a RESET_STREAM_AT keeping
        at least its first ``size`` bytes reliable (draft-ietf-quic-reliable-stream-reset
        §4; WebTransport's stream header, draft-ietf-webtrans-http3-16 §4.4). ValueError
        if the peer did not send reset_stream_at or beyond the bytes written."""
        if self.state in _LIVE:
            self.streams.set_reliable_floor(stream_id, size)

    def set_stop_sending_answer(self, stream_id: int, error_code: int) -> None:
        """Answer a later STOP_SENDING on ``stream_id`` with a reset carrying
        ``error_code`` instead of the STOP_SENDING's own code (RFC 9000 §3.5: SHOULD
        copy it, "but it can use any application error code"; a protocol above may
        require another, as devious-baton's WHATEVER)."""
        if self.state in _LIVE:
            self.streams.set_stop_sending_answer(stream_id, error_code)

    @property
    def peer_accepts_reset_stream_at(self) -> bool:
        """The peer sent reset_stream_at (draft-ietf-quic-reliable-stream-reset §3):
        :meth:`reset_stream` may be given a ``reliable_size``."""
        return self.streams.peer_reset_stream_at

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        if self.state in _LIVE:
            self.streams.stop_sending(stream_id, error_code, self._now)

    def stats(self) -> ConnectionStats:
        """A snapshot of RTT, congestion window and counters (see :mod:`quic.stats`)."""
        return ConnectionStats.of(
            self.version,
            self.recovery,
            self.paths,
            self.reader,
            self.datagrams,
            len(self.cids.peer_cid),
        )

    def send_buffered(self, stream_id: int) -> int:
        """Bytes of ``stream_id`` queued or in flight and not yet acknowledged (0 for an
        unknown or receive-only stream): what a graceful shutdown waits for."""
        return self.streams.send_buffered(stream_id)

    def consume_stream_data(self, stream_id: int, nbytes: int) -> bool:
        """The application is done with ``nbytes`` of the data delivered on
        ``stream_id`` (:class:`~quic.events.StreamDataReceived`): their stream and
        connection flow-control credit goes back to the peer (RFC 9000 §4.2). Credit is
        never returned on delivery alone, so every consumer of stream data must call
        this (a stream reset by the peer, or one we stop reading, returns it at once).
        True when a credit frame is now owed (a send is due), else nothing to send."""
        return self.state in _LIVE and self.streams.consume(stream_id, nbytes, self._now)

    @property
    def max_datagram_payload(self) -> int:
        """Largest DATAGRAM payload that fits one packet now (0: not supported)."""
        return self.datagrams.max_payload(len(self.cids.peer_cid), self.paths.max_datagram_size)

    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        """Queue an unreliable DATAGRAM (RFC 9221); raises ValueError if it cannot fit.
        The queue keeps the newest ``max_datagram_queue`` datagrams; dropped silently
        on a connection that is closing or closed."""
        if self.state in _LIVE:
            self.datagrams.send(data, len(self.cids.peer_cid), self.paths.max_datagram_size)

    def send_ping(self, uid: int) -> None:
        """Send a PING; a PingAcknowledged(uid) event follows its acknowledgment."""
        if self.state in _LIVE:
            self.sender.queue_ping(uid)

    def request_key_update(self) -> None:
        """Start a 1-RTT key update (RFC 9001 §6.1).

        Raises RuntimeError before the handshake is confirmed, and while no packet sent
        with the current keys has been acknowledged (a subsequent update, §6.1).
        """
        if self.state not in _LIVE:
            return
        if not self.handshake.confirmed:
            raise RuntimeError("key update before the handshake is confirmed")
        self.keys.request_key_update(self.recovery.spaces[APPLICATION].largest_acked)

    def migrate(self, now: float) -> None:
        """Client: we moved (or are about to move) to a new local address (RFC 9000
        §9.2). Switches to an unused connection ID of the peer, resets congestion
        control and RTT, and validates the new path; the driver sends from the new
        address from now on. Raises :class:`~quic.conn_migrate.MigrationRefused` when
        migration is not allowed (server, handshake not confirmed, the peer's
        disable_active_migration, no unused connection ID)."""
        if now > self._now:
            self._now = now
        self.check_migration()
        self.migration.migrate(now)

    def check_migration(self) -> None:
        """Raise :class:`~quic.conn_migrate.MigrationRefused` if :meth:`migrate` would."""
        if self.state is not ConnectionState.CONNECTED:
            raise MigrationRefused("the connection is not established")
        self.migration.check()

    def close(self, error_code: int = 0, reason: str = "", *, application: bool = True) -> None:
        """Close the connection (RFC 9000 §10.2); an application close by default."""
        if self.state in _LIVE:
            self.state = self.closer.begin_closing(application, error_code, 0, reason, False)

    def export_keying_material(self, label: bytes, context: bytes, length: int) -> bytes:
        return self.handshake.export_keying_material(label, context, length)

    # -- sending -----------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        """Build every datagram that may be sent now; returns ``[(payload, addr)]``."""
        return [(data, addr) for data, addr, _ in self.routed_datagrams_to_send(now)]

    def routed_datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr, int]]:
        """:meth:`datagrams_to_send` with the index of the local address each datagram
        leaves from (0, or 1: a server's preferred address, RFC 9000 §9.6.2)."""
        if now > self._now:
            self._now = now
        try:
            return self._datagrams_to_send(now)
        except Exception as exc:  # a bug: close with INTERNAL_ERROR, never raise
            self._internal_error(exc)
            try:
                return self._datagrams_to_send(now)  # the CONNECTION_CLOSE
            except Exception:
                self.state = ConnectionState.TERMINATED
                return []

    def _datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr, int]]:
        self.more_to_send = False
        current = self.paths.current
        addr = current.addr  # the peer_address property, without a call
        local = current.local
        state = self.state
        if addr is None or state is _TERMINATED or state is _DRAINING:
            return []
        if state is _CLOSING:  # only our CONNECTION_CLOSE, when one is owed (§10.2.1)
            datagrams = self.closer.send(now, self.sender.build_close, self.version, linger(self))
            return list(zip(datagrams, repeat(addr), repeat(local)))
        handshake = self.handshake
        if handshake.complete and not self.keys.confidentiality_ok(
            self.recovery.spaces[APPLICATION].largest_acked, handshake.confirmed
        ):
            self._fail(QuicProtocolError(TransportErrorCode.AEAD_LIMIT_REACHED, "RFC 9001 §6.6"))
            return self._datagrams_to_send(now)  # the CONNECTION_CLOSE
        version = self.handshake.version  # the version property, read once
        # other paths (RFC 9000 §8.2), asked only when there are some
        out = self.migration.datagrams(now, version) if self.paths.others else []
        sender = self.sender
        datagrams, eliciting = sender.build(now, version)
        self.ecn_codepoint = self.ecn.send_codepoint  # the one the build call chose
        # more may go at once only if the build stopped at its cap (or other paths sent)
        self.more_to_send = sender.capped or bool(out)
        if eliciting and not (idle := self.idle).eliciting_since_receive:
            idle.eliciting_since_receive = True
            idle.last_activity = now  # RFC 9000 §10.1
        if (cids := self.cids)._issued_cids or cids._retired_cids:  # has_routing_changes()
            self._flush_routing()
        if len(datagrams) == 1 and not out:  # a reply, a ping-pong: no comprehension
            return [(datagrams[0], addr, local)]
        out.extend(zip(datagrams, repeat(addr), repeat(local)))  # a fresh list (conn_migrate)
        return out

    # -- timers ------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """Earliest absolute deadline, or None (no side effects)."""
        try:
            return self.idle.deadline(self)  # quic.conn_timers
        except Exception as exc:  # a bug: close with INTERNAL_ERROR, never raise
            self._internal_error(exc)
            return self.closer.deadline

    def handle_timer(self, now: float) -> bool:
        """Fire everything that is due (safe to call early); False when that was only
        the keys' rest (:mod:`quic.conn_keys`): nothing to send, no build needed."""
        if now > self._now:
            self._now = now
        try:
            if not self.idle.fire(self, now):  # quic.conn_timers
                return False
            if self._qlog is not None and self.state in _LIVE:
                self._qlog.ecn_state(now, self.ecn.state.value)  # PTOs may fail ECN
        except QuicProtocolError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug: close with INTERNAL_ERROR, never raise
            self._internal_error(exc)
        return True

    def _on_new_path(self, now: float, host_changed: bool) -> None:
        """A new path (Migration): ECN is validated on it from the start (RFC 9000
        §13.4.2); a new host may have another path MTU, so DPLPMTUD starts over (§14.3)."""
        self.ecn.reset()
        if host_changed:
            self.pmtu.reset(now, self.handshake.confirmed)

    # -- receiving ---------------------------------------------------------------------------

    # receive_datagram(data, addr, now, ecn=0, local=0): one UDP payload (quic.conn_batch)
    receive_datagram = receive_datagram

    def receive_datagrams(
        self, datagrams: list[bytes], addr: Addr, now: float, ecn: int = 0, local: int = 0
    ) -> None:
        """:meth:`receive_datagram` for the datagrams of one GRO read (quic.conn_batch)."""
        receive_datagrams(self, datagrams, addr, now, ecn, local)

    def _receive(self, data: bytes, addr: Addr, now: float, ecn: int) -> bool:
        """Read the packets of a datagram; True if one was processed."""
        pos = 0
        end = len(data)
        processed = False
        cid_len = self.cids.cid_length
        if end > cid_len + 20 and data[0] & 0xC0 == 0x40 and self.handshake.confirmed:
            # Hot path: one 1-RTT packet; a short header runs to the end of the datagram
            # (RFC 9000 §12.2), so no header object is needed.
            processed = self.reader.read_short(data, cid_len, now, ecn)
            end = 0
        while pos < end:
            try:
                header = parse_header(data, pos, cid_len)
            except QuicProtocolError:
                self.reader.drop(now, "invalid")
                break
            if self._read_packet(data, pos, header, addr, now, ecn):
                processed = True
            if self.state not in _LIVE:
                return processed
            pos = header.end
        if processed:
            idle = self.idle
            idle.last_activity = now
            idle.eliciting_since_receive = False
        elif len(data) >= 21 and self.cids.is_peer_stateless_reset(bytes(data[-16:])):
            # RFC 9000 §10.3.1: a stateless reset ends the connection at once
            self.state = self.closer.on_stateless_reset(now, linger(self))
        return processed

    def _read_packet(
        self, data: bytes, pos: int, header: PacketHeader, addr: Addr, now: float, ecn: int
    ) -> bool:
        """Route one packet; True if it was processed."""
        if header.is_long:  # VN, Retry and other versions: quic.conn_restart
            index = self.first_flight.read_long(data, pos, header, addr, now, ecn)
            if self.first_flight.ended:
                self.state = ConnectionState.TERMINATED
        else:
            index = self.reader.read_long(data, pos, header, addr, now, ecn)
        if index == HANDSHAKE and not self.is_client:
            if not self.paths.address_validated:
                # RFC 9000 §8.1: a Handshake packet proves the client owns its address
                self.paths.validate_address()
                self.recovery.amplification_limited = False
            if not self.keys.spaces[INITIAL].discarded:
                self._discard_space(INITIAL, now)  # RFC 9001 §4.9.1
        return index is not None

    # -- handshake coordination --------------------------------------------------------------

    def _after_tls(self, now: float) -> None:
        """Hand what TLS released to the components it concerns (quic.conn_build)."""
        hand_out_tls(self, now)

    def _confirm_handshake(self, now: float) -> None:
        confirm_handshake(self, now)  # quic.conn_build (RFC 9001 §4.1.2, §4.9.2)

    def _discard_space(self, index: int, now: float) -> None:
        """Drop a packet number space from every component (RFC 9001 §4.9)."""
        self.keys.discard(index)
        self.crypto.discard(index)
        self.recovery.discard_space(index, now)
        self.sender.discard(index)

    # -- closing -----------------------------------------------------------------------------

    def _fail(self, exc: QuicProtocolError) -> None:
        """The single place where an error becomes a CONNECTION_CLOSE (RFC 9000 §10.2)."""
        if self.state in _LIVE:
            code, frame_type = exc.error_code, exc.frame_type
            self.state = self.closer.begin_closing(False, code, frame_type, exc.reason, False)

    def _internal_error(self, exc: Exception) -> None:
        """A bug (not a protocol error): close with INTERNAL_ERROR, log it once."""
        first = self.last_internal_error is None
        self.last_internal_error = exc
        if first:
            logger.error(
                "QUIC connection %s: internal error, closing with INTERNAL_ERROR",
                self.original_dcid.hex(),
                exc_info=exc,
            )
        try:
            self._fail(QuicProtocolError(TransportErrorCode.INTERNAL_ERROR, type(exc).__name__))
        except Exception:
            self.state = ConnectionState.TERMINATED

    def _on_peer_close(
        self, now: float, code: int, reason: str, frame_type: int | None, application: bool
    ) -> None:
        """CONNECTION_CLOSE received: drain (RFC 9000 §10.2.2)."""
        closer = self.closer
        self.state = closer.begin_draining(now, linger(self), code, reason, frame_type, application)

    def _flush_routing(self) -> None:
        issued, retired = self.cids.pop_routing_changes()
        for cid in issued:
            self._events.append(ConnectionIdIssued(cid))
        for cid in retired:
            self._events.append(ConnectionIdRetired(cid))
