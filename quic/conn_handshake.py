"""Handshake side of a QUIC connection: TLS driving, keys, transport parameters.

Theory of operation
-------------------
The TLS engine (:mod:`quic.tls.engine`) is fed the CRYPTO bytes of each epoch; what
it releases is applied here: its output becomes CRYPTO data of the matching packet
number space, each traffic secret becomes packet protection for one direction of one
space (RFC 9001 §4.1.4), and the peer's transport parameters are decoded, checked
against the connection IDs of the handshake (RFC 9000 §7.3) and applied. Handshake
confirmation discards the Handshake keys (RFC 9001 §4.9.2). Version Negotiation and
Retry packets seen by a client are handled here too (RFC 9000 §6.2, §17.2.5), as is
the 1-RTT key update (RFC 9001 §6).
"""

from __future__ import annotations

from collections import deque
from enum import Enum
from typing import TYPE_CHECKING, Any

from quic.conn_keys import APPLICATION, HANDSHAKE, INITIAL, OneRttReadKeys, Space
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import ConnectionTerminated, HandshakeCompleted, ProtocolNegotiated, QuicEvent
from quic.packet import PacketHeader
from quic.protection import (
    PacketProtector,
    PacketUnprotector,
    initial_keys,
    verify_retry_integrity,
)
from quic.stream_manager import StreamLimits
from quic.tls.engine import Epoch, SecretAvailable, TlsEngine
from quic.tparams import TransportParameters

if TYPE_CHECKING:
    from quic.cid import ConnectionIdManager
    from quic.configuration import QuicConfiguration
    from quic.conn_streams import StreamController
    from quic.qlog import QuicLogger
    from quic.recovery import LossRecovery

__all__ = ["ConnectionState", "HandshakeMixin"]


class ConnectionState(Enum):
    """RFC 9000 §10: the life of a connection."""

    HANDSHAKE = "handshake"
    CONNECTED = "connected"
    CLOSING = "closing"
    DRAINING = "draining"
    TERMINATED = "terminated"


_EPOCH_SPACE = {Epoch.INITIAL: INITIAL, Epoch.HANDSHAKE: HANDSHAKE, Epoch.ONE_RTT: APPLICATION}


class HandshakeMixin:
    """Handshake half of :class:`~quic.connection.QuicConnection`."""

    # provided by QuicConnection
    configuration: QuicConfiguration
    is_client: bool
    version: int
    spaces: tuple[Space, Space, Space]
    recovery: LossRecovery
    streams: StreamController
    cids: ConnectionIdManager
    tls: TlsEngine
    host_cid: bytes
    original_dcid: bytes
    state: Any
    alpn_protocol: str | None
    handshake_complete: bool
    handshake_confirmed: bool
    peer_params: TransportParameters | None
    max_datagram_size: int
    _events: deque[QuicEvent]
    _alpn_reported: bool
    _buffered: list[tuple[bytes, Any]]
    _pending_reprocess: list[tuple[bytes, Any]]
    _retry_scid: bytes | None
    _retry_received: bool
    _token: bytes
    _peer_initial_scid: bytes | None
    _peer_ack_delay_exponent: int
    _peer_max_datagram_frame: int
    _idle_timeout: float
    _handshake_done_pending: bool
    _probes: dict[int, int]
    _key_phase_first_pn: int | None
    dropped_packets: int
    _qlog: QuicLogger | None

    def _flush_routing(self) -> None: ...

    # ==================================================================================
    # handshake: TLS, keys, transport parameters
    # ==================================================================================

    def _install_initial_keys(self, dcid: bytes) -> None:
        write, read = initial_keys(self.version, dcid, self.is_client)
        space = self.spaces[INITIAL]
        space.write = write
        space.read = read

    def _after_tls(self) -> None:
        tls = self.tls
        for epoch, data in tls.pop_output():
            space = self.spaces[_EPOCH_SPACE[epoch]]
            space.crypto_send.write(data)
        for secret in tls.pop_secrets():
            self._install_secret(secret)
        if self.peer_params is None and tls.peer_transport_parameters is not None:
            self._apply_peer_params(tls.peer_transport_parameters)
        if not self._alpn_reported and (tls.alpn_protocol or tls.handshake_complete):
            self._alpn_reported = True
            self.alpn_protocol = tls.alpn_protocol
            self._events.append(ProtocolNegotiated(tls.alpn_protocol))
        if tls.handshake_complete and not self.handshake_complete:
            self.handshake_complete = True
            self.state = ConnectionState.CONNECTED
            self._events.append(
                HandshakeCompleted(tls.alpn_protocol, session_resumed=tls.session_resumed)
            )
            self._retry_buffered()

    def _install_secret(self, secret: SecretAvailable) -> None:
        index = _EPOCH_SPACE.get(secret.epoch)
        if index is None:
            return  # 0-RTT keys: not used yet
        space = self.spaces[index]
        if space.discarded:
            return
        if self._qlog is not None:
            self._qlog.key_updated(None, secret.epoch, secret.is_write)
        if secret.is_write:
            space.write = PacketProtector(secret.cipher_suite, secret.secret, self.version)
        else:
            read = PacketUnprotector(secret.cipher_suite, secret.secret, self.version)
            space.read = OneRttReadKeys(read) if index == APPLICATION else read
            self._retry_buffered()
        if index == HANDSHAKE:
            self.recovery.has_handshake_keys = True

    def _retry_buffered(self) -> None:
        buffered = self._buffered
        if not buffered:
            return
        self._buffered = []
        for data, addr in buffered:
            self._pending_reprocess.append((data, addr))

    def _on_peer_key_update(self, now: float) -> None:
        space = self.spaces[APPLICATION]
        write = space.write
        read = space.read
        assert isinstance(read, OneRttReadKeys)
        peer_initiated = write is not None and write.key_phase != read.current.key_phase
        if self._qlog is not None:  # our own update completes when the peer answers
            trigger = "remote_update" if peer_initiated else "local_update"
            self._qlog.key_updated(now, Epoch.ONE_RTT, False, trigger)
        if write is not None and peer_initiated:
            space.write = write.next_generation()  # RFC 9001 §6.2: respond in kind
            self._key_phase_first_pn = space.next_pn
            if self._qlog is not None:
                self._qlog.key_updated(now, Epoch.ONE_RTT, True, "remote_update")
        read.set_previous_expiry(now + 3 * self.recovery.rtt.pto_base())

    def request_key_update(self) -> None:
        """Start a 1-RTT key update (RFC 9001 §6.1).

        Raises RuntimeError before the handshake is confirmed, and while no packet sent
        with the current keys has been acknowledged (a subsequent update, §6.1).
        """
        if not self.handshake_confirmed:
            raise RuntimeError("key update before the handshake is confirmed")
        space = self.spaces[APPLICATION]
        read = space.read
        if space.write is None or not isinstance(read, OneRttReadKeys):
            raise RuntimeError("no 1-RTT keys")
        first = self._key_phase_first_pn
        if first is not None and self.recovery.spaces[APPLICATION].largest_acked < first:
            # RFC 9001 §6.1: no subsequent update before a packet sent with the current
            # keys is acknowledged (else the peer cannot tell the phases apart).
            raise RuntimeError("the current key phase is not acknowledged yet")
        space.write = space.write.next_generation()
        self._key_phase_first_pn = space.next_pn
        if read.next is None:
            read.next = read.current.next_generation()
        if self._qlog is not None:
            self._qlog.key_updated(None, Epoch.ONE_RTT, True, "local_update")

    def _make_transport_parameters(self) -> TransportParameters:
        config = self.configuration
        server = not self.is_client
        return TransportParameters(
            original_destination_connection_id=self.original_dcid if server else None,
            max_idle_timeout=int(config.idle_timeout * 1000),
            stateless_reset_token=self.cids.local[0].reset_token if server else None,
            max_udp_payload_size=config.max_udp_payload_size,
            initial_max_data=config.initial_max_data,
            initial_max_stream_data_bidi_local=config.initial_max_stream_data,
            initial_max_stream_data_bidi_remote=config.initial_max_stream_data,
            initial_max_stream_data_uni=config.initial_max_stream_data,
            initial_max_streams_bidi=config.initial_max_streams_bidi,
            initial_max_streams_uni=config.initial_max_streams_uni,
            ack_delay_exponent=config.ack_delay_exponent,
            max_ack_delay=int(config.max_ack_delay * 1000),
            disable_active_migration=config.disable_active_migration,
            active_connection_id_limit=config.active_connection_id_limit,
            initial_source_connection_id=self.host_cid,
            retry_source_connection_id=self._retry_scid if server else None,
            max_datagram_frame_size=config.max_datagram_frame_size or 0,
        )

    def _apply_peer_params(self, raw: bytes) -> None:
        params = TransportParameters.decode(raw, is_client_sender=not self.is_client)
        self._check_cid_params(params)
        self.peer_params = params
        if self._qlog is not None:
            self._qlog.parameters_set(None, params, False)
        self.streams.set_peer_limits(
            StreamLimits(
                max_streams_bidi=params.initial_max_streams_bidi,
                max_streams_uni=params.initial_max_streams_uni,
                max_stream_data_bidi_local=params.initial_max_stream_data_bidi_local,
                max_stream_data_bidi_remote=params.initial_max_stream_data_bidi_remote,
                max_stream_data_uni=params.initial_max_stream_data_uni,
            ),
            params.initial_max_data,
        )
        self.recovery.max_ack_delay = params.max_ack_delay / 1000
        self._peer_ack_delay_exponent = params.ack_delay_exponent
        if params.max_idle_timeout:
            peer_idle = params.max_idle_timeout / 1000
            if not self._idle_timeout or peer_idle < self._idle_timeout:
                self._idle_timeout = peer_idle  # RFC 9000 §10.1: the minimum of both
        self.cids.peer_limit = params.active_connection_id_limit
        self.cids.issue_pending = True
        self._peer_max_datagram_frame = params.max_datagram_frame_size
        if params.max_udp_payload_size < self.max_datagram_size:
            self.max_datagram_size = params.max_udp_payload_size
        if self.is_client and params.stateless_reset_token is not None:
            self.cids.set_peer_reset_token(0, params.stateless_reset_token)

    def _check_cid_params(self, params: TransportParameters) -> None:
        """RFC 9000 §7.3: authenticate the connection IDs of the handshake."""

        def fail(reason: str) -> QuicProtocolError:
            return QuicProtocolError(TransportErrorCode.TRANSPORT_PARAMETER_ERROR, reason)

        if params.initial_source_connection_id is None:
            raise fail("initial_source_connection_id missing")
        if params.initial_source_connection_id != self._peer_initial_scid:
            raise fail("initial_source_connection_id does not match")
        if not self.is_client:
            return
        if params.original_destination_connection_id != self.original_dcid:
            raise fail("original_destination_connection_id does not match")
        if self._retry_received:
            if params.retry_source_connection_id != self._retry_scid:
                raise fail("retry_source_connection_id does not match the Retry")
        elif params.retry_source_connection_id is not None:
            raise fail("retry_source_connection_id without a Retry")

    def _confirm_handshake(self, now: float) -> None:
        """RFC 9001 §4.1.2: confirmed; drop Handshake keys (§4.9.2)."""
        self.handshake_confirmed = True
        self.recovery.handshake_confirmed = True
        if not self.is_client:
            self._handshake_done_pending = True
        if not self.spaces[HANDSHAKE].discarded:
            self._discard_space(HANDSHAKE, now)
        self._flush_routing()

    def _discard_space(self, index: int, now: float) -> None:
        self.spaces[index].discard()
        self.recovery.discard_space(index, now)
        self._probes.pop(index, None)

    def _on_version_negotiation(self, header: PacketHeader, now: float) -> None:
        # RFC 9000 §6.2: only before any other packet was processed, and only if it
        # does not list the version we tried.
        if not self.is_client or self._peer_initial_scid is not None:
            return
        if header.dcid != self.host_cid or self.version in header.supported_versions:
            return
        versions = ", ".join(f"0x{v:08x}" for v in header.supported_versions)
        self.state = ConnectionState.TERMINATED
        self._events.append(
            ConnectionTerminated(
                TransportErrorCode.VERSION_NEGOTIATION_ERROR,
                f"server offers no version we support ({versions})",
                by_peer=True,
            )
        )
        if self._qlog is not None:
            self._qlog.connection_closed(
                now, trigger="version_mismatch", reason=versions, by_peer=True
            )

    def _on_retry(self, data: bytes, pos: int, header: PacketHeader) -> None:
        # RFC 9000 §17.2.5.2: one Retry, before any Initial from the server
        if not self.is_client or self._retry_received or self._peer_initial_scid is not None:
            return
        if header.scid == self.cids.peer_cid:
            return
        if not verify_retry_integrity(self.version, self.original_dcid, data[pos : header.end]):
            self.dropped_packets += 1
            return
        self._retry_received = True
        self._retry_scid = header.scid
        self._token = header.token
        self.cids.set_initial_peer_cid(header.scid)
        self._install_initial_keys(header.scid)
        crypto = self.spaces[INITIAL].crypto_send
        crypto.on_lost(0, crypto.highest_sent, False)
        self.recovery.discard_space(INITIAL)
