"""Building a QUIC connection's components (see :mod:`quic.connection`).

Theory of operation
-------------------
:class:`~quic.connection.QuicConnection` is a coordinator of owned components; this
module creates them, in dependency order, and gives each the narrow set of others and
the callbacks of the coordinator it works with. It holds no state of its own:
every component is an attribute of the connection (declared on its class), and the
connection is the only caller. First the transport core (keys, ACK state, CRYPTO
streams, paths, loss recovery, ECN, DPLPMTUD), then what the application and TLS use
(streams, datagrams, the handshake), then the coordinators that reach all of them (the
send scheduler, the frame dispatcher, the packet reader, migration and the first-flight
restarts). :func:`apply_peer_params` hands the peer's transport parameters to the
components that use them, once TLS has them, and :func:`hand_out_tls` everything else
TLS releases (CRYPTO data, keys, the Negotiated Version, the handshake's completion) to
the component it concerns — the coordinator's wiring, kept here with the rest of it.

The components, by attribute of the connection:

==============  ==================================================================
``keys``        :class:`~quic.conn_keys.PacketSpaces`: keys, packet numbers, key
                update (RFC 9001 §5, §6)
``acks``        :class:`~quic.conn_acks.AckState`: packets received, ACK frames
                (RFC 9000 §13.2), the peer's ACK_FREQUENCY
``ackfreq``     :class:`~quic.conn_ackfreq.AckFrequencySender`: our ACK_FREQUENCY
``crypto``      :class:`~quic.conn_crypto.CryptoStreams`: CRYPTO data per level
``handshake``   :class:`~quic.conn_handshake.HandshakeDriver`: TLS, transport
                parameters, tokens, the version in use, HANDSHAKE_DONE
``cids``        :class:`~quic.cid.ConnectionIdManager`: connection IDs (§5.1)
``paths``       :class:`~quic.conn_paths.PathManager`: address and path
                validation, anti-amplification (RFC 9000 §8)
``migration``   :class:`~quic.conn_migrate.Migration`: NAT rebinding, migration,
                preferred address (RFC 9000 §9)
``streams``     :class:`~quic.conn_streams.StreamController`: streams and flow
                control (RFC 9000 §2-§4)
``datagrams``   :class:`~quic.conn_datagrams.DatagramChannel`: RFC 9221
``recovery``    :class:`~quic.recovery.LossRecovery`: loss detection, congestion
                control (RFC 9002)
``closer``      :class:`~quic.conn_close.CloseState`: closing, draining (§10)
``ecn``         :class:`~quic.conn_ecn.EcnController`: ECN counts, marking and
                validation (§13.4)
``pmtu``        :class:`~quic.conn_pmtu.PmtuDiscovery`: DPLPMTUD, the path's
                maximum datagram size (§14, RFC 8899)
``sender``      :class:`~quic.conn_send.SendScheduler`: what goes into each packet
``reader``      :class:`~quic.conn_receive.PacketReader`: opening packets
``dispatcher``  :class:`~quic.conn_dispatch.FrameDispatcher`: frame → component
==============  ==================================================================

and ``first_flight``, a :class:`~quic.conn_restart.FirstFlight`: Version Negotiation,
compatible version switches and Retry (RFC 9000 §6.2, §17.2.5; RFC 9368; RFC 9369 §4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quic.configuration import QuicConfiguration
from quic.conn_ackfreq import AckFrequencySender
from quic.conn_acks import AckState
from quic.conn_close import CloseState
from quic.conn_crypto import CryptoStreams
from quic.conn_datagrams import DatagramChannel
from quic.conn_dispatch import FrameDispatcher
from quic.conn_early import settle_early_data
from quic.conn_ecn import EcnController
from quic.conn_handshake import HandshakeDriver
from quic.conn_keys import HANDSHAKE, PacketSpaces
from quic.conn_migrate import Migration, preferred_address_parameter
from quic.conn_paths import PathManager
from quic.conn_pmtu import START_DELAY_PTOS, PmtuDiscovery
from quic.conn_receive import PacketReader
from quic.conn_restart import FirstFlight
from quic.conn_send import SendScheduler
from quic.conn_state import ConnectionState
from quic.conn_streams import StreamController
from quic.controllers import create_controller
from quic.recovery import LossRecovery
from quic.rtt import RttEstimator
from quic.stream_manager import StreamLimits
from quic.tls.engine import Epoch
from quic.tparams import TransportParameters

if TYPE_CHECKING:
    from quic.connection import QuicConnection

__all__ = ["apply_peer_params", "build_components"]


def build_components(
    conn: QuicConnection,
    config: QuicConfiguration,
    version: int,
    original_dcid: bytes,
    peer_cid: bytes | None,
    retry_scid: bytes | None,
) -> None:
    """Create the connection's components and hand each the others it works with."""
    _build_transport(conn, config, version, original_dcid, retry_scid)
    _build_streams(conn, config, version, original_dcid, peer_cid, retry_scid)
    _build_coordinators(conn, config)


def _build_transport(
    conn: QuicConnection,
    config: QuicConfiguration,
    version: int,
    original_dcid: bytes,
    retry_scid: bytes | None,
) -> None:
    """Keys, acknowledgements, paths, recovery: what a packet needs to leave."""
    is_client = conn.is_client
    events = conn._events
    rtt = RttEstimator()
    conn.closer = CloseState(events, conn._qlog)
    conn.ecn = EcnController(config.ecn)
    conn.keys = PacketSpaces(is_client, rtt, conn._qlog)
    # RFC 9001 §5.2: after a Retry, Initial keys come from the Retry's SCID
    conn.keys.install_initial(version, retry_scid or original_dcid)
    conn.acks = AckState(
        config.max_ack_delay,
        config.ack_delay_exponent,
        config.max_ack_ranges_tracked,
        config.min_ack_delay_us(),
    )
    conn.crypto = CryptoStreams(
        (
            config.max_crypto_buffer_initial,
            config.max_crypto_buffer_handshake,
            config.max_crypto_buffer_application,
        ),
        config.max_crypto_fragments,
    )
    conn.paths = PathManager(
        is_client,
        max(1200, config.max_datagram_size),
        config.max_pending_path_responses,
        config.max_known_paths,
        conn._token_bytes,
    )
    conn.recovery = LossRecovery(
        create_controller(
            config.congestion_control, conn.paths.max_datagram_size, rtt, config.hystart
        ),
        rtt,
        0.025,
        is_client=is_client,
        max_ack_only=config.max_ack_only_packets_tracked,
        max_sent=config.max_sent_packets_tracked,
    )
    conn.ackfreq = AckFrequencySender(
        conn.recovery,
        config.send_ack_frequency,
        int(config.ack_frequency_min_delay * 1_000_000),
    )
    conn.pmtu = PmtuDiscovery(
        config.max_datagram_size,
        config.pmtud_max_datagram_size,
        config.pmtud_raise_interval,
        conn._set_datagram_size,
        config.pmtud_interface_mtu,
    )


def _build_streams(
    conn: QuicConnection,
    config: QuicConfiguration,
    version: int,
    original_dcid: bytes,
    peer_cid: bytes | None,
    retry_scid: bytes | None,
) -> None:
    """Streams, datagrams and the handshake: what the application and TLS use."""
    is_client = conn.is_client
    events = conn._events
    conn.streams = StreamController(
        is_client,
        StreamLimits(
            max_streams_bidi=config.initial_max_streams_bidi,
            max_streams_uni=config.initial_max_streams_uni,
            max_stream_data_bidi_local=config.initial_max_stream_data,
            max_stream_data_bidi_remote=config.initial_max_stream_data,
            max_stream_data_uni=config.initial_max_stream_data,
        ),
        config.initial_max_data,
        config.max_data_window,
        config.max_stream_data_window,
        config.stream_send_buffer_high,
        events,
        conn.recovery.rtt,
        max_stream_fragments=config.max_stream_reassembly_fragments,
        max_reassembly_bytes=config.max_reassembly_bytes,
        max_reassembly_fragments=config.max_reassembly_fragments,
        reset_stream_at=config.reset_stream_at,
        qlog=conn._qlog,
    )
    conn.recovery.fire_acked = conn.streams.fire_acked  # STREAM frames acked by run
    conn.datagrams = DatagramChannel(
        config.max_datagram_frame_size, config.max_datagram_queue, events
    )
    conn.handshake = HandshakeDriver(
        config,
        events,
        version=version,
        original_dcid=original_dcid,
        host_cid=conn.host_cid,
        retry_scid=retry_scid,
        peer_initial_scid=None if is_client else peer_cid,
        reset_token=conn.cids.local[0].reset_token,
        preferred_address=None
        if is_client
        else preferred_address_parameter(config.preferred_address, conn.cids),
    )


def _build_coordinators(conn: QuicConnection, config: QuicConfiguration) -> None:
    """The send and receive paths, which reach every component."""
    is_client = conn.is_client
    events = conn._events
    conn.sender = SendScheduler(
        is_client=is_client,
        host_cid=conn.host_cid,
        keys=conn.keys,
        acks=conn.acks,
        crypto=conn.crypto,
        handshake=conn.handshake,
        cids=conn.cids,
        paths=conn.paths,
        streams=conn.streams,
        datagrams=conn.datagrams,
        ecn=conn.ecn,
        pmtu=conn.pmtu,
        recovery=conn.recovery,
        ackfreq=conn.ackfreq,
        events=events,
        discard_space=conn._discard_space,
        qlog=conn._qlog,
    )
    conn.dispatcher = FrameDispatcher(
        is_client=is_client,
        recovery=conn.recovery,
        crypto=conn.crypto,
        handshake=conn.handshake,
        streams=conn.streams,
        cids=conn.cids,
        paths=conn.paths,
        datagrams=conn.datagrams,
        acks=conn.acks,
        ecn=conn.ecn,
        pmtu=conn.pmtu,
        on_tls_progress=conn._after_tls,
        confirm_handshake=conn._confirm_handshake,
        on_peer_close=conn._on_peer_close,
        flush_routing=conn._flush_routing,
        qlog=conn._qlog,
    )
    conn.reader = PacketReader(
        is_client=is_client,
        keys=conn.keys,
        acks=conn.acks,
        dispatcher=conn.dispatcher,
        handshake=conn.handshake,
        cids=conn.cids,
        ecn=conn.ecn,
        buffer_limit=config.max_buffered_undecryptable_packets,
        qlog=conn._qlog,
    )
    conn.migration = Migration(
        is_client=is_client,
        disable_active_migration=config.disable_active_migration,
        paths=conn.paths,
        cids=conn.cids,
        reader=conn.reader,
        recovery=conn.recovery,
        handshake=conn.handshake,
        keys=conn.keys,
        sender=conn.sender,
        new_congestion=lambda: create_controller(
            config.congestion_control,
            conn.paths.max_datagram_size,
            conn.recovery.rtt,
            config.hystart,
        ),
        use_preferred_address=config.use_preferred_address,
        on_new_path=conn._on_new_path,
    )
    conn.first_flight = FirstFlight(
        is_client=is_client,
        handshake=conn.handshake,
        keys=conn.keys,
        cids=conn.cids,
        crypto=conn.crypto,
        recovery=conn.recovery,
        sender=conn.sender,
        reader=conn.reader,
        events=events,
        token_bytes=conn._token_bytes,
        on_restart=conn._after_tls,
        qlog=conn._qlog,
    )


def apply_peer_params(conn: QuicConnection, params: TransportParameters) -> None:
    """The peer's transport parameters (RFC 9000 §18.2), to each component that uses them."""
    if conn._qlog is not None:
        conn._qlog.parameters_set(None, params, False)
    conn.streams.apply_peer_params(params)
    conn.recovery.max_ack_delay = params.max_ack_delay / 1000
    conn.ackfreq.set_peer_params(params.min_ack_delay, params.max_ack_delay)
    conn.dispatcher.set_peer_ack_delay_exponent(params.ack_delay_exponent)
    if params.max_idle_timeout:
        conn.idle.set_peer_timeout(params.max_idle_timeout / 1000)  # RFC 9000 §10.1
    conn.cids.set_peer_limit(params.active_connection_id_limit)
    conn.datagrams.set_peer_max_frame_size(params.max_datagram_frame_size)
    conn.paths.limit_datagram_size(params.max_udp_payload_size)
    conn.pmtu.set_peer_limit(params.max_udp_payload_size)
    if conn.is_client and params.stateless_reset_token is not None:
        conn.cids.set_peer_reset_token(0, params.stateless_reset_token)
    if conn.is_client and params.preferred_address is not None:
        conn.migration.on_preferred_address(params.preferred_address)  # RFC 9000 §9.6


def start_qlog(conn: QuicConnection, now: float) -> None:
    """The connection's first qlog events: connection_started, local parameters, the
    Initial keys (called once, before the first datagram is traced)."""
    qlog = conn._qlog
    assert qlog is not None
    qlog.connection_started(now, None, conn.paths.peer_address, conn.host_cid, conn.cids.peer_cid)
    qlog.version_information(now, conn.version)
    qlog.parameters_set(now, conn.handshake.local_params, True)
    qlog.key_updated(now, Epoch.INITIAL, True)
    qlog.key_updated(now, Epoch.INITIAL, False)
    qlog.ecn_state(now, conn.ecn.state.value)


def confirm_handshake(conn: QuicConnection, now: float) -> None:
    """RFC 9001 §4.1.2: the handshake is confirmed: the server's NEW_TOKEN, 0-RTT keys and
    Handshake keys dropped (§4.9.2, §4.9.3), DPLPMTUD started, connection IDs routed
    (``QuicConnection._confirm_handshake``)."""
    if not conn.handshake.confirm():
        return
    conn.recovery.handshake_confirmed = True
    if conn._issue_token is not None:  # server: RFC 9000 §8.1.3
        conn.handshake.queue_new_token(conn._issue_token(conn.paths.peer_address, now))
    conn.keys.discard_zero_rtt()  # RFC 9001 §4.9.3
    # RFC 9000 §14.2.1: DPLPMTUD after the handshake (quic.conn_pmtu "Start")
    conn.pmtu.start(now, START_DELAY_PTOS * conn.recovery.rtt.pto_base())
    if not conn.keys.spaces[HANDSHAKE].discarded:
        conn._discard_space(HANDSHAKE, now)
    conn._flush_routing()
    conn.migration.on_handshake_confirmed(now)


def hand_out_tls(conn: QuicConnection, now: float) -> None:
    """Hand what TLS released to the components it concerns: the Negotiated Version
    (server, RFC 9368 §2.3), CRYPTO data, new keys (the reader's buffered packets,
    Handshake keys for recovery, 0-RTT refused or rejected by an HRR, RFC 9001 §4.6.2),
    the peer's transport parameters, and the handshake's completion."""
    progress = conn.handshake.progress()
    if progress.version is not None:  # server: the Negotiated Version (RFC 9368 §2.3)
        conn.first_flight.switch(progress.version)
    for index, data in progress.output:
        conn.crypto.queue(index, data)
    for secret in progress.secrets:
        installed = conn.keys.install_secret(secret, conn.version)
        if installed is None:
            continue
        if not secret.is_write:
            conn.reader.release_buffered()
        if installed == HANDSHAKE:
            conn.recovery.has_handshake_keys = True
            if not conn.is_client and conn.keys.zero_rtt_read is None:
                conn.keys.discard_zero_rtt()  # 0-RTT refused: none will come
    if conn.tls.hello_retry_request_received and conn.keys.zero_rtt_write is not None:
        conn.keys.discard_zero_rtt()  # RFC 9001 §4.6.2: an HRR rejects 0-RTT
    if progress.peer_params is not None:
        apply_peer_params(conn, progress.peer_params)
    if progress.completed:
        conn.state = ConnectionState.CONNECTED
        conn.paths.handshake_done()
        conn.streams.early_data = False  # 1-RTT from here on (RFC 9001 §5.7)
        conn.reader.release_buffered()
        if conn._qlog is not None:
            conn._qlog.alpn_information(now, conn.alpn_protocol)
        if conn.is_client:
            settle_early_data(conn, now)  # quic.conn_early
