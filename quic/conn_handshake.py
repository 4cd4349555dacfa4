"""Handshake driving: TLS, transport parameters, version negotiation, HANDSHAKE_DONE.

Theory of operation
-------------------
:class:`HandshakeDriver` is the handshake component of a connection. It owns the TLS
engine (:mod:`quic.tls.engine`), our transport parameters and the peer's, the facts
the handshake established (ALPN, completion, confirmation) and the connection IDs it
must authenticate (RFC 9000 §7.3).

* The connection feeds it the contiguous CRYPTO bytes of each space
  (:meth:`HandshakeDriver.receive`), then collects what TLS released with
  :meth:`HandshakeDriver.progress`: handshake bytes to send per space, traffic secrets
  (RFC 9001 §4.1.4), the peer's transport parameters — decoded and checked here
  (RFC 9000 §7.3, §18.2; RFC 9368 §4) — and whether the handshake just completed. The
  connection hands each item to the component it concerns (CRYPTO streams, keys,
  streams, connection IDs, ...). :class:`~quic.events.ProtocolNegotiated` and
  :class:`~quic.events.HandshakeCompleted` go onto the connection's event queue.
* Confirmation (RFC 9001 §4.1.2): a server confirms when the handshake completes and
  owes HANDSHAKE_DONE (§19.20), which this component writes and sends again if lost;
  a client confirms on HANDSHAKE_DONE or on an acknowledged 1-RTT packet.
* Retry (RFC 9000 §17.2.5): :meth:`HandshakeDriver.accept_retry` checks the integrity
  tag and remembers the token and the Retry's Source Connection ID.
* Address validation tokens (RFC 9000 §8.1.3): a server sends the NEW_TOKEN token the
  endpoint minted for it once the handshake is complete (:meth:`HandshakeDriver.
  queue_new_token`), again if it is lost (§13.3). A client with a
  ``QuicConfiguration.token_store`` puts every NEW_TOKEN token there and takes one for
  the Initial packets of a later connection to the same server
  (:meth:`HandshakeDriver.load_token`); a Retry's token replaces it and is never kept.
* Version negotiation (RFC 9000 §6.2, RFC 9368 §2.1, §4): our transport parameters
  carry Version Information. A client lists, as Available Versions, the versions it
  supports that its Chosen Version is compatible with (RFC 9368 §2.2, §5: v1 and v2,
  RFC 9369 §4), in its order of preference, inviting compatible negotiation; after a
  Version Negotiation packet only the Chosen Version. A server lists every version it
  supports.
* Compatible version negotiation (RFC 9368 §2.3): while TLS reads the ClientHello the
  server reads the client's Version Information (the TLS engine's
  ``on_client_transport_parameters`` hook, before the server flight is built); the
  Chosen Version must be the version of the client's Initial packets (§4, else
  VERSION_NEGOTIATION_ERROR). The server then takes the first version of its own
  ``supported_versions`` (its preference) that the client offers and that the Chosen
  Version is compatible with: that Negotiated Version goes into the server's Version
  Information and :meth:`HandshakeDriver.progress` reports it, so the connection sends
  every CRYPTO frame in it (RFC 9369 §4). A client learns the Negotiated Version from
  the first server long header of another version it offered
  (:meth:`HandshakeDriver.may_switch_to`; the connection switches if that packet
  authenticates), before any CRYPTO frame of the server was read; the server's Chosen
  Version must then be it (§4).
* On a Version Negotiation packet the client picks, in its own order of preference, a
  version the server offers (:meth:`HandshakeDriver.choose_version`) and the
  connection starts a new first flight with it (:meth:`HandshakeDriver.restart`). To
  defeat forged Version Negotiation packets, that new attempt then requires the
  server's Version Information and checks that the client would have picked the same
  version from the server's Available Versions (RFC 9368 §4); otherwise
  VERSION_NEGOTIATION_ERROR.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from quic.configuration import QuicConfiguration
from quic.conn_early import EarlyData, accepts_remembered, pick_ticket
from quic.conn_keys import EPOCH_SPACE, SPACE_EPOCH
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import HandshakeCompleted, ProtocolNegotiated, QuicEvent
from quic.frames import HANDSHAKE_DONE_FRAME, FrameType, encode_new_token_frame
from quic.packet import PacketHeader
from quic.packet_builder import PacketAssembler
from quic.protection import verify_retry_integrity
from quic.tls.alerts import TlsAlertError
from quic.tls.config import TlsConfig
from quic.tls.engine import SecretAvailable, TlsEngine
from quic.tokens import token_store_key
from quic.tparams import PreferredAddress, TransportParameters, VersionInformation
from quic.versions import are_compatible

__all__ = ["HandshakeDriver", "HandshakeProgress"]


@dataclass(slots=True)
class HandshakeProgress:
    """What the TLS engine released since the last call (see the module docstring)."""

    output: list[tuple[int, bytes]] = field(default_factory=list)  # (space, data)
    secrets: list[SecretAvailable] = field(default_factory=list)
    peer_params: TransportParameters | None = None  # decoded and checked, once
    completed: bool = False  # the handshake completed just now
    version: int | None = None  # server: the Negotiated Version differs (RFC 9368 §2.3)


class HandshakeDriver:
    """TLS, transport parameters and the handshake's milestones of one connection."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_alpn_reported",
        "_early_decode",
        "_events",
        "_local_params",
        "_preferred_address",
        "_reset_token",
        "_switched_to",
        "_token_key",
        "_tokens_out",
        "alpn_protocol",
        "complete",
        "configuration",
        "confirmed",
        "done_pending",
        "early",
        "host_cid",
        "is_client",
        "new_token",
        "original_dcid",
        "original_version",
        "peer_initial_scid",
        "peer_params",
        "reacted_to_vn",
        "retry_received",
        "retry_scid",
        "tls",
        "token",
        "tokens_pending",
        "tokens_resent",
        "version",
    )

    def __init__(
        self,
        configuration: QuicConfiguration,
        events: list[QuicEvent],
        *,
        version: int,
        original_dcid: bytes,
        host_cid: bytes,
        retry_scid: bytes | None,
        peer_initial_scid: bytes | None,
        reset_token: bytes,
        preferred_address: PreferredAddress | None = None,
    ) -> None:
        self.configuration = configuration
        self.is_client = configuration.is_client
        self._events = events
        self.original_dcid = original_dcid
        self.host_cid = host_cid
        self._reset_token = reset_token
        self._preferred_address = preferred_address  # server (RFC 9000 §9.6.1)
        self.retry_scid = retry_scid  # server: the Retry it sent; client: the one received
        self.retry_received = False
        self.token = b""  # client: the token of a Retry, echoed in our Initials
        self.new_token = b""  # client: the latest NEW_TOKEN, for a future connection
        self._token_key: str | None = None  # client: this server in the token store
        # server: NEW_TOKEN frames owed (a deque from the first one: no idle memory)
        self._tokens_out: deque[bytes] | None = None
        #: NEW_TOKEN frames owed (an attribute kept with the queue: read per build call)
        self.tokens_pending = 0
        self.tokens_resent = 0  # server: NEW_TOKEN frames sent again after a loss
        self.peer_initial_scid = peer_initial_scid
        self.reacted_to_vn = False
        self.complete = False
        self.confirmed = False
        self.done_pending = False  # server: HANDSHAKE_DONE owed (RFC 9000 §19.20)
        self.alpn_protocol: str | None = None
        self._alpn_reported = False
        self.peer_params: TransportParameters | None = None
        # server: the client's parameters as decoded for version negotiation, reused
        # when they are checked and released (one decode per handshake)
        self._early_decode: tuple[bytes, TransportParameters] | None = None
        self.version = version
        self.original_version = version  # of the client's first Initial (RFC 9368 §4)
        self._switched_to: int | None = None  # server: Negotiated Version to report
        self._local_params: TransportParameters | None = self._make_transport_parameters()
        self.early = EarlyData(pick_ticket(configuration) if self.is_client else None)
        self.tls = self._make_tls()

    @property
    def local_params(self) -> TransportParameters:
        """Our transport parameters. Once a server's handshake is complete they were
        sent and nothing keeps them (issue 10, memory per idle connection): asked for
        then (qlog, tests), they are made again from what they were made of (the
        Negotiated Version included)."""
        params = self._local_params
        return params if params is not None else self._make_transport_parameters()

    @local_params.setter
    def local_params(self, params: TransportParameters) -> None:
        self._local_params = params

    def _tls_config(self) -> TlsConfig:
        """TLS settings: the configuration's, with this connection's ticket (client) or
        the RFC 9000 §7.4.1 check of remembered transport parameters (server)."""
        tls_config = self.configuration.tls_config()
        if self.is_client:
            tls_config.session_ticket = self.early.ticket
            # new tickets carry the application's data (quic.conn_early)
            tls_config.session_ticket_handler = self.early.ticket_handler(
                tls_config.session_ticket_handler
            )
        else:
            tls_config.early_data_check = functools.partial(accepts_remembered, self.local_params)
        return tls_config

    # -- starting ---------------------------------------------------------------------

    def start(self) -> None:
        """Client: queue the ClientHello."""
        self.tls.start()

    def restart(self, version: int, original_dcid: bytes) -> None:
        """A new first flight with ``version`` after Version Negotiation (RFC 9368 §2.1)."""
        self.version = self.original_version = version
        self.original_dcid = original_dcid
        self.reacted_to_vn = True
        self.local_params = self._make_transport_parameters()
        self.tls = self._make_tls()
        self.tls.start()

    def _make_tls(self) -> TlsEngine:
        tls = TlsEngine(self._tls_config(), self.local_params.encode())
        if not self.is_client:
            tls.on_client_transport_parameters = self._negotiate_version
        return tls

    def _available_versions(self) -> tuple[int, ...]:
        """Our Version Information's Available Versions (RFC 9368 §5)."""
        versions = tuple(self.configuration.supported_versions)
        if not self.is_client:
            return versions
        if self.reacted_to_vn:
            return (self.version,)
        chosen = self.version
        available = tuple(v for v in versions if are_compatible(chosen, v))
        return available if chosen in available else (*available, chosen)

    def _make_transport_parameters(self) -> TransportParameters:
        config = self.configuration
        server = not self.is_client
        available = self._available_versions()
        return TransportParameters(
            original_destination_connection_id=self.original_dcid if server else None,
            max_idle_timeout=int(config.idle_timeout * 1000),
            stateless_reset_token=self._reset_token if server else None,
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
            retry_source_connection_id=self.retry_scid if server else None,
            max_datagram_frame_size=config.max_datagram_frame_size or 0,
            version_information=VersionInformation(self.version, available),  # RFC 9368 §3
            preferred_address=self._preferred_address if server else None,
            reset_stream_at=config.reset_stream_at,  # draft-ietf-quic-reliable-stream-reset
            min_ack_delay=config.min_ack_delay_us(),  # draft-ietf-quic-ack-frequency §3
        )

    # -- TLS --------------------------------------------------------------------------

    def receive(self, index: int, data: bytes) -> None:
        """Feed contiguous CRYPTO bytes of space ``index`` to TLS."""
        try:
            self.tls.receive(SPACE_EPOCH[index], data)
        except TlsAlertError as exc:
            raise QuicProtocolError(exc.quic_error_code, str(exc), FrameType.CRYPTO) from exc

    def progress(self) -> HandshakeProgress:
        """Collect what TLS released (see :class:`HandshakeProgress`)."""
        tls = self.tls
        result = HandshakeProgress()
        for epoch, data in tls.pop_output():
            index = EPOCH_SPACE.get(epoch)
            if index is not None:
                result.output.append((index, data))
        result.secrets = tls.pop_secrets()
        result.version, self._switched_to = self._switched_to, None
        if self.peer_params is None and tls.peer_transport_parameters is not None:
            result.peer_params = self.peer_params = self._decode_peer_params(
                tls.peer_transport_parameters
            )
        if not self._alpn_reported and (tls.alpn_protocol or tls.handshake_complete):
            self._alpn_reported = True
            self.alpn_protocol = tls.alpn_protocol
            self._events.append(ProtocolNegotiated(tls.alpn_protocol))
        if tls.handshake_complete and not self.complete:
            self.complete = result.completed = True
            if not self.is_client:  # sent, and no longer checked against: made again
                self._local_params = None  # if asked (a client's could have changed)
            self._events.append(
                HandshakeCompleted(
                    tls.alpn_protocol,
                    session_resumed=tls.session_resumed,
                    early_data_accepted=tls.early_data_accepted,
                )
            )
        return result

    def export_keying_material(self, label: bytes, context: bytes, length: int) -> bytes:
        return self.tls.export_keying_material(label, context, length)

    # -- transport parameters ---------------------------------------------------------

    def _decode_peer_params(self, raw: bytes) -> TransportParameters:
        early, self._early_decode = self._early_decode, None
        if early is not None and early[0] == raw:
            params = early[1]
        else:
            params = TransportParameters.decode(raw, is_client_sender=not self.is_client)
        self._check_cid_params(params)
        self._check_version_information(params.version_information)
        return params

    def _check_cid_params(self, params: TransportParameters) -> None:
        """RFC 9000 §7.3: authenticate the connection IDs of the handshake."""

        def fail(reason: str) -> QuicProtocolError:
            return QuicProtocolError(TransportErrorCode.TRANSPORT_PARAMETER_ERROR, reason)

        if params.initial_source_connection_id is None:
            raise fail("initial_source_connection_id missing")
        if params.initial_source_connection_id != self.peer_initial_scid:
            raise fail("initial_source_connection_id does not match")
        if not self.is_client:
            return
        if params.original_destination_connection_id != self.original_dcid:
            raise fail("original_destination_connection_id does not match")
        if self.retry_received:
            if params.retry_source_connection_id != self.retry_scid:
                raise fail("retry_source_connection_id does not match the Retry")
        elif params.retry_source_connection_id is not None:
            raise fail("retry_source_connection_id without a Retry")

    def _check_version_information(self, info: VersionInformation | None) -> None:
        """RFC 9368 §4: version downgrade prevention."""

        def fail(reason: str) -> QuicProtocolError:
            return QuicProtocolError(TransportErrorCode.VERSION_NEGOTIATION_ERROR, reason)

        if not self.is_client:
            if info is not None and info.chosen_version != self.original_version:
                raise fail("client's Chosen Version is not the version of its Initial")
            return
        if info is None:
            if self.reacted_to_vn:
                raise fail("no Version Information after Version Negotiation")
            return
        if info.chosen_version != self.version:  # we offered no other version
            raise fail("server's Chosen Version was not offered")
        if self.reacted_to_vn:
            offered = (*info.available_versions, info.chosen_version)
            if self.choose_version(offered) != self.version:
                raise fail("Version Negotiation was forged (downgrade)")

    # -- compatible version negotiation (RFC 9368 §2.3, RFC 9369 §4) ------------------

    def _negotiate_version(self, raw: bytes) -> None:
        """Server, from inside TLS: the client's transport parameters arrived; pick the
        Negotiated Version before our own parameters are sent (module docstring)."""
        params = TransportParameters.decode(raw, is_client_sender=True)
        self._early_decode = (raw, params)
        info = params.version_information
        self._check_version_information(info)
        if info is None:
            return
        chosen = self.original_version
        for version in self.configuration.supported_versions:
            if version in info.available_versions and are_compatible(chosen, version):
                break
        else:
            return  # nothing else offered: the Chosen Version it is
        if version == self.version:
            return
        self.version = self._switched_to = version
        self.local_params = self._make_transport_parameters()
        self.tls.transport_parameters = self.local_params.encode()

    def may_switch_to(self, version: int) -> bool:
        """Client: a server long header of ``version``, not ours: may it be the
        Negotiated Version of a compatible negotiation we invited (RFC 9369 §4)? The
        connection switches to it (setting :attr:`version`) if the packet authenticates."""
        info = self.local_params.version_information
        return not (
            not self.is_client
            or self.reacted_to_vn
            or self.peer_params is not None
            or self.version != self.original_version  # learned once
            or info is None
            or version not in info.available_versions
            or not are_compatible(self.version, version)
        )

    # -- version negotiation and Retry (client) ---------------------------------------

    def on_new_token(self, token: bytes) -> None:
        """Client: a NEW_TOKEN for future connections (RFC 9000 §8.1.3, §19.7); the
        latest one is kept, and put in the token store."""
        self.new_token = token
        store = self.configuration.token_store
        if store is not None and self._token_key is not None:
            store.put(self._token_key, token)

    def load_token(self, addr: Any) -> None:
        """Client: use a NEW_TOKEN token of an earlier connection to this server in
        our Initial packets (RFC 9000 §8.1.3: SHOULD), taken out of the store."""
        store = self.configuration.token_store
        if store is None:
            return
        self._token_key = token_store_key(self.configuration.server_name, addr)
        self.token = store.take(self._token_key) or b""

    def on_server_initial(self, scid: bytes) -> None:
        """Client: the server's first Initial chose this connection ID (RFC 9000 §7.2);
        its transport parameters must authenticate it (§7.3)."""
        self.peer_initial_scid = scid

    def choose_version(self, offered: tuple[int, ...]) -> int | None:
        """Our most preferred version among ``offered`` (RFC 9368 §2.1), or None."""
        for version in self.configuration.supported_versions:
            if version in offered:
                return version
        return None

    def accept_retry(self, data: bytes, pos: int, header: PacketHeader, peer_cid: bytes) -> bool:
        """Check a Retry (RFC 9000 §17.2.5.2); True if the client must start over with it."""
        if not self.is_client or self.retry_received or self.peer_initial_scid is not None:
            return False  # one Retry, before any Initial from the server
        if header.scid == peer_cid:
            return False
        if not verify_retry_integrity(self.version, self.original_dcid, data[pos : header.end]):
            return False
        self.retry_received = True
        self.retry_scid = header.scid
        self.token = header.token
        return True

    # -- confirmation and HANDSHAKE_DONE ----------------------------------------------

    def confirm(self) -> bool:
        """The handshake is confirmed (RFC 9001 §4.1.2); False if it already was."""
        if self.confirmed:
            return False
        self.confirmed = True
        if not self.is_client:
            self.done_pending = True  # RFC 9000 §19.20
        return True

    def write_done(self, asm: PacketAssembler) -> None:
        """Write the owed HANDSHAKE_DONE frame if it fits."""
        if not self.done_pending or asm.room < len(HANDSHAKE_DONE_FRAME):
            return
        self.done_pending = False
        asm.push(HANDSHAKE_DONE_FRAME)
        packet = asm.packet
        packet.handlers.append((self._done_fate, ()))
        packet.ack_eliciting = packet.in_flight = True

    def _done_fate(self, acked: bool) -> None:
        if not acked:
            self.done_pending = True  # RFC 9000 §13.3: sent again until acknowledged

    # -- NEW_TOKEN (server, RFC 9000 §8.1.3, §19.7) -------------------------------------

    def queue_new_token(self, token: bytes) -> None:
        """Server: send ``token`` in a NEW_TOKEN frame (1-RTT only, §19.7)."""
        if token and not self.is_client:
            self._owe_token(token)

    def write_tokens(self, asm: PacketAssembler) -> None:
        """Write the owed NEW_TOKEN frames that fit."""
        tokens = self._tokens_out
        packet = asm.packet
        while tokens:
            frame = encode_new_token_frame(tokens[0])
            if len(frame) > asm.room:
                return
            asm.push(frame)
            packet.handlers.append((self._token_fate, (tokens.popleft(),)))
            packet.ack_eliciting = packet.in_flight = True
            self.tokens_pending -= 1
        self._tokens_out = None  # all sent: no idle deque
        self.tokens_pending = 0

    def _token_fate(self, acked: bool, token: bytes) -> None:
        if not acked:
            self.tokens_resent += 1
            self._owe_token(token)  # RFC 9000 §13.3: retransmitted if lost

    def _owe_token(self, token: bytes) -> None:
        if self._tokens_out is None:
            self._tokens_out = deque()
        self._tokens_out.append(token)
        self.tokens_pending = len(self._tokens_out)
