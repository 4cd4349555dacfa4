"""Configuration of a QUIC connection or endpoint.

One mutable dataclass, filled in by the application and read (never changed) by the
connection. TLS settings are translated into a :class:`quic.tls.config.TlsConfig` by
:meth:`QuicConfiguration.tls_config`. Wall-clock needs (certificate validity) go
through ``clock``, which the asyncio layer fills in; Sans-I/O code never reads the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from cryptography import x509

from quic.ack import DEFAULT_MAX_ACK_RANGES_TRACKED
from quic.recovery import DEFAULT_MAX_ACK_ONLY_TRACKED, DEFAULT_MAX_SENT_TRACKED
from quic.stream_recv import (
    DEFAULT_CRYPTO_BUFFERS,
    DEFAULT_MAX_CRYPTO_FRAGMENTS,
    DEFAULT_MAX_REASSEMBLY_BYTES,
    DEFAULT_MAX_REASSEMBLY_FRAGMENTS,
    DEFAULT_MAX_STREAM_FRAGMENTS,
)
from quic.tls.antireplay import AntiReplay
from quic.tls.config import DEFAULT_CIPHER_SUITES, DEFAULT_KEY_SHARE_GROUPS, TlsConfig
from quic.tls.groups import SUPPORTED_GROUPS, NamedGroup
from quic.tls.keylog import KeyLogCallback
from quic.tls.signatures import PrivateKey, load_certificate_chain_pem, load_private_key_pem
from quic.tls.suites import CipherSuite
from quic.tls.tickets import SessionTicket, SessionTicketKeys, SessionTicketStore
from quic.tls.verify import VerifyOptions
from quic.tokens import TokenStore
from quic.versions import QuicVersion

if TYPE_CHECKING:
    from quic.qlog import QlogFactory

__all__ = ["QuicConfiguration"]


@dataclass(kw_only=True)
class QuicConfiguration:
    """Settings of one QUIC endpoint (client or server)."""

    is_client: bool = True
    alpn_protocols: list[str] = field(default_factory=list)
    server_name: str | None = None

    # -- certificates -----------------------------------------------------------------
    certificate_chain: list[x509.Certificate] = field(default_factory=list)
    private_key: PrivateKey | None = None
    verify_certificates: bool = True  # False: explicit insecure opt-out
    cafile: str | None = None
    cadata: bytes | None = None
    server_certificate_hashes: tuple[bytes, ...] = ()  # SHA-256 of the leaf DER (pinning)
    clock: Callable[[], datetime] | None = None  # injected wall clock (cert validity)

    # -- TLS ---------------------------------------------------------------------------
    cipher_suites: tuple[CipherSuite, ...] = DEFAULT_CIPHER_SUITES
    groups: tuple[NamedGroup, ...] = SUPPORTED_GROUPS
    key_share_groups: tuple[NamedGroup, ...] = DEFAULT_KEY_SHARE_GROUPS
    keylog: KeyLogCallback | None = None

    # -- qlog (quic.qlog) ----------------------------------------------------------------
    # factory(is_client, odcid) -> QlogSink | None, called once per connection (and
    # with odcid b"" by a server endpoint, for its stateless packets); else qlog_dir:
    # one "<ODCID hex>_<client|server>.sqlog" JSON-SEQ file per connection (qlog 0.3,
    # loads in qvis) and "endpoint-<tag>.sqlog" per server endpoint. Both None: off.
    qlog_factory: QlogFactory | None = None
    qlog_dir: str | None = None

    # -- transport ---------------------------------------------------------------------
    # In order of preference. A client offers them (RFC 9368 §5 Available Versions: those
    # compatible with the version it starts with) and starts with ``initial_version``
    # (None: the first). A server accepts all of them and, when the client offers
    # several compatible ones, switches to the first of its list that the client offers
    # (compatible version negotiation, RFC 9368 §2.3, RFC 9369 §4).
    supported_versions: tuple[int, ...] = (QuicVersion.VERSION_1, QuicVersion.VERSION_2)
    initial_version: int | None = None
    idle_timeout: float = 30.0
    # UDP payload we send from the start; DPLPMTUD searches above it (see below)
    max_datagram_size: int = 1200
    max_udp_payload_size: int = 65527  # what we accept (transport parameter)
    max_datagram_frame_size: int | None = 65536  # None: DATAGRAM frames disabled
    initial_max_data: int = 4 * 1024 * 1024
    initial_max_stream_data: int = 1024 * 1024
    max_data_window: int = 32 * 1024 * 1024  # auto-tuning ceiling, connection
    max_stream_data_window: int = 16 * 1024 * 1024  # auto-tuning ceiling, per stream
    initial_max_streams_bidi: int = 128
    initial_max_streams_uni: int = 128
    ack_delay_exponent: int = 3
    max_ack_delay: float = 0.025
    # RFC 9000 §18.2 (at least 2): the peer issues us at most this many connection IDs,
    # and we issue it at most its own limit. 4 leaves spares for migration (§9.5) at
    # about 0.6 KB less per connection than 8 (issue 10, memory per idle connection).
    active_connection_id_limit: int = 4
    connection_id_length: int = 8
    # "reno" (= "newreno", RFC 9002 §7), "cubic" (RFC 9438) or "bbr" (BBR v1); see
    # quic.controllers (helper "congestion", issue 9)
    congestion_control: str = "newreno"
    # HyStart++ (RFC 9406) for the initial slow start (helper "cc2", session 16).
    # None: each controller's default: on for CUBIC (RFC 9438 §4.10: CUBIC SHOULD use
    # it), off for NewReno (RFC 9002 §7.3.1's plain slow start); True/False force it
    # for both. BBR ignores it (its startup has its own exit).
    hystart: bool | None = None
    # ACK frequency (draft-ietf-quic-ack-frequency; helper "congestion", issue 9).
    # Our min_ack_delay transport parameter in seconds (§3): the shortest ACK delay a
    # peer's ACK_FREQUENCY may ask of us (a smaller request is PROTOCOL_VIOLATION, §4);
    # None: not advertised, and ACK_FREQUENCY / IMMEDIATE_ACK are PROTOCOL_VIOLATION.
    min_ack_delay: float | None = 0.001
    # Ask a peer that advertised min_ack_delay for fewer ACKs (quic.conn_ackfreq).
    send_ack_frequency: bool = True
    # The smallest Requested Max Ack Delay we ask for (seconds; RFC 9000 §18.2's default
    # max_ack_delay): below it the PTO gets shorter than a busy peer's answer (issue 10).
    ack_frequency_min_delay: float = 0.025
    disable_active_migration: bool = False
    # After this many seconds without a packet received (or a first one sent after a
    # receive), a connection whose handshake is confirmed lets its packet protection's
    # cipher contexts go (quic.conn_keys "Resting keys": about 7.6 KB of native memory
    # per connection); the next packet builds them again (about 10 µs). 0 or None:
    # never. Issue 10: memory per idle session.
    key_rest_delay: float | None = 1.0
    stream_send_buffer_high: int = 1024 * 1024  # writers wait above this many buffered bytes
    max_datagram_queue: int = 1024  # pending outgoing datagrams kept before dropping

    # -- endpoint admission (server; helper "endpoint", issue 8) -----------------------
    # A server creates state only for an Initial that authenticates (RFC 9001 §5.2,
    # RFC 9000 §12.2, §21.2). Beyond these limits new Initials are dropped silently:
    # RFC 9000 §5.2.2 says a server refusing a connection SHOULD send CONNECTION_REFUSED,
    # but a reply to an unvalidated (possibly spoofed) address is work and reflected
    # traffic an attacker chooses (§21.1.1.2 server-side DoS; see ``retry`` below).
    # A stalled handshake is abandoned silently like an idle connection (§10.1).
    max_half_open_connections: int = 1000  # handshake not complete yet
    # seconds from the first Initial (or the last progress of a client that proved it hears
    # us, RFC 9000 §8.1) to handshake complete
    handshake_timeout: float = 10.0
    max_connections_per_address: int = 128  # per source IP address
    # Version Negotiation, Retry and INVALID_TOKEN close packets awaiting send (RFC 9000
    # §5.2.2, §6.1: MAY be limited; beyond it a datagram gets no stateless reply)
    max_pending_stateless_packets: int = 256
    # Workers on one port (quic.workers): datagrams of another worker's connections held
    # between two transmits before being forwarded; beyond it a datagram is dropped and
    # counted (RFC 9000 §5.2: a datagram matching no connection may be dropped; a packet
    # loss QUIC recovers from, RFC 9002 §6)
    max_pending_forwards: int = 256

    # limits (issue 8, core)
    # Retired peer connection IDs whose RETIRE_CONNECTION_ID is not acknowledged yet;
    # beyond it CONNECTION_ID_LIMIT_ERROR (RFC 9000 §5.1.2 allows it). Never below twice
    # active_connection_id_limit (§5.1.2 SHOULD).
    max_pending_cid_retirements: int = 32
    # PATH_RESPONSE frames waiting to be sent; beyond it the oldest is dropped
    # (RFC 9000 §8.2.2, §21.9: an endpoint may limit its responses).
    max_pending_path_responses: int = 8
    # Packets kept until their decryption keys arrive; beyond it they are dropped
    # (RFC 9001 §5.7 allows buffering "a limited number").
    max_buffered_undecryptable_packets: int = 16

    # -- limits (issue 8, components) ---------------------------------------------------
    # Stream reassembly (RFC 9000 §21.7, stream fragmentation; §21.9 allows a connection
    # error): out-of-order holes per stream, and out-of-order bytes and holes over all
    # streams of a connection. Beyond any of them: PROTOCOL_VIOLATION. Flow control
    # already bounds the bytes by the connection window; keep max_reassembly_bytes at or
    # above max_data_window unless reassembly memory must stay below the windows.
    max_stream_reassembly_fragments: int = DEFAULT_MAX_STREAM_FRAGMENTS
    max_reassembly_bytes: int = DEFAULT_MAX_REASSEMBLY_BYTES
    max_reassembly_fragments: int = DEFAULT_MAX_REASSEMBLY_FRAGMENTS
    # CRYPTO data buffered beyond the first missing byte, per encryption level (RFC 9000
    # §7.5: at least 4096, smaller values are raised to it), and out-of-order CRYPTO
    # holes per level. Beyond them: CRYPTO_BUFFER_EXCEEDED.
    max_crypto_buffer_initial: int = DEFAULT_CRYPTO_BUFFERS[0]
    max_crypto_buffer_handshake: int = DEFAULT_CRYPTO_BUFFERS[1]
    max_crypto_buffer_application: int = DEFAULT_CRYPTO_BUFFERS[2]
    max_crypto_fragments: int = DEFAULT_MAX_CRYPTO_FRAGMENTS
    # Received packet-number ranges remembered per space (RFC 9000 §13.2.3): the oldest
    # is forgotten beyond it and packets below it then count as duplicates.
    max_ack_ranges_tracked: int = DEFAULT_MAX_ACK_RANGES_TRACKED
    # Sent-packet records per space (RFC 9000 §13.2.4, RFC 9002 §6): ACK-only packets
    # kept for ACK-of-ACK tracking (oldest dropped), and records of any kind (oldest
    # declared lost beyond it).
    max_ack_only_packets_tracked: int = DEFAULT_MAX_ACK_ONLY_TRACKED
    max_sent_packets_tracked: int = DEFAULT_MAX_SENT_TRACKED

    # -- address validation (helper "validation", issue 9; quic/retry.py, quic/tokens.py)
    # Server. Retry (RFC 9000 §8.1.2): "never"; "always"; "auto": when at least
    # retry_threshold handshakes are in flight (half-open connections), an Initial
    # without a valid token gets a stateless Retry instead of a connection (§21.1.1.2
    # lets a server defer its handshake state and work this way).
    retry: Literal["never", "always", "auto"] = "auto"
    retry_threshold: int = 200
    # Seconds a Retry token is accepted (§8.1.4: "only for a short time"; it is bound
    # to the client's IP address and port) and a NEW_TOKEN token (§8.1.3: SHOULD have
    # an expiration time; bound to the client's IP address).
    retry_token_lifetime: float = 10.0
    new_token_lifetime: float = 86400.0
    # Send one NEW_TOKEN frame once the handshake is complete (§8.1.3: MAY).
    send_new_token: bool = True
    # The token key rotates after this many seconds; retired keys are kept until the
    # tokens they sealed expire (at most floor(lifetime / rotation) + 2 keys).
    token_key_rotation: float = 3600.0
    # Client: NEW_TOKEN tokens kept for later connections (§8.1.3); share one
    # quic.tokens.TokenStore between configurations. None: tokens are not used.
    token_store: TokenStore | None = None
    # -- resumption and 0-RTT (helper "resumption", issue 9) -----------------------------
    # Client (RFC 9001 §4.5, §4.6; RFC 9846 §4.7.1): tickets the server sends go to
    # session_ticket_store (bounded: InMemorySessionTicketStore keeps a few per server
    # name, RFC 9001 §4.5 "clients SHOULD NOT reuse tickets") and to
    # session_ticket_handler; a connection resumes with session_ticket if given, else
    # with one taken from the store (needs server_name and clock). 0-RTT is sent when
    # the ticket allows it and enable_early_data is set.
    session_ticket_store: SessionTicketStore | None = None
    session_ticket: SessionTicket | None = None
    session_ticket_handler: Callable[[SessionTicket], None] | None = None
    enable_early_data: bool = True  # client: send 0-RTT; server: accept it
    # Server: ticket_keys (one object for every connection; None: no tickets) seal the
    # tickets, valid ticket_lifetime seconds (RFC 9846 §4.7.1: at most 7 days). 0-RTT is
    # accepted only with an anti_replay memory (RFC 9846 §8; bounded: AntiReplay's
    # window and max_entries, docs/limits.md) and needs the injected clock.
    ticket_keys: SessionTicketKeys | None = None
    ticket_lifetime: int = 86400
    anti_replay: AntiReplay | None = None
    # -- paths, migration, stateless reset (helper "paths", issue 9) ----------------------
    # Peer addresses a connection remembers besides the current one (paths a peer probed,
    # paths left after a migration); beyond it the oldest is forgotten (RFC 9000 §9.3:
    # an endpoint MAY skip validation of recently seen addresses, so it need not keep
    # them; §21.9 allows limiting work for probes).
    max_known_paths: int = 4
    # Endpoint: the static key from which stateless reset tokens are derived
    # (HMAC-SHA256(key, connection ID)[:16], RFC 9000 §10.3.2); None: a random key per
    # endpoint (connections do not survive a restart anyway). 32 bytes.
    stateless_reset_key: bytes | None = None
    # Endpoint: Stateless Resets sent for datagrams of unknown connections (RFC 9000
    # §10.3, §10.3.3 "an endpoint can remember the number of Stateless Resets that it has
    # sent and stop generating new Stateless Resets once a limit is reached"): a token
    # bucket of this many resets, refilled at stateless_reset_rate per second.
    stateless_reset_burst: int = 64
    stateless_reset_rate: float = 32.0
    # Server: (host, port) of a preferred address (RFC 9000 §9.6) sent in the
    # preferred_address transport parameter with a connection ID and reset token; the
    # asyncio server listens there too. A client migrates to it once the handshake is
    # confirmed and the address is validated (set ``use_preferred_address=False`` to
    # stay).
    preferred_address: tuple[str, int] | None = None
    use_preferred_address: bool = True
    # -- helper "conformance" (issue 9) --------------------------------------------------
    # Send the reset_stream_at transport parameter: the peer may reset a stream with
    # RESET_STREAM_AT (draft-ietf-quic-reliable-stream-reset §3). False: it must not
    # (a RESET_STREAM_AT frame is then FRAME_ENCODING_ERROR, RFC 9000 §12.4).
    reset_stream_at: bool = True
    # -- ECN and DPLPMTUD (helper "ecnpmtu", issue 9) -----------------------------------
    # ECN (RFC 9000 §13.4): report the ECN counts of received packets (always, when the
    # I/O layer can read them), and with ``ecn`` mark packets ECT(0), validate the path
    # (§13.4.2) and answer CE marks as congestion (RFC 9002 §7.1). False: never mark.
    ecn: bool = True
    # DPLPMTUD (RFC 8899; RFC 9000 §14.2-§14.4): once the handshake is confirmed, probe
    # with PING+PADDING packets from max_datagram_size up to MAX_PLPMTU, this value
    # capped by the peer's max_udp_payload_size; at or below max_datagram_size: no
    # probing (set 1200 to turn discovery off). -- helper "pmtu2" (session 16): on by
    # default. 1452 = a 1500-byte Ethernet MTU - 40 (IPv6 header) - 8 (UDP header):
    # the largest UDP payload that crosses a 1500-byte link in both IPv4 (which could
    # take 1472) and IPv6, so one value serves dual-stack sockets and paths that
    # change family; larger links are rare on the Internet, and tunnels below 1500
    # are found by the search (a black hole falls back to 1200, RFC 8899 §4.3). The
    # DATAGRAM payload offered to applications follows the PLPMTU up and down (see
    # docs/datagrams.md).
    pmtud_max_datagram_size: int = 1452
    # RFC 8899 §5.1.2: MAX_PLPMTU may be what the local interface can send. True: when
    # the driver reads that size from the route to the peer (quic.aio on Linux: IP_MTU /
    # IPV6_MTU less the IP and UDP headers: 1472 on a 1500-byte IPv4 link, 8972 on a
    # 9000-byte jumbo-frame link, 65507 on IPv4 loopback), the search goes up to it
    # instead of pmtud_max_datagram_size, which stays the bound wherever the interface
    # is unknown (Sans-I/O use, other platforms, a new peer host after migration). Only
    # while discovery is on (pmtud_max_datagram_size above max_datagram_size). Off by
    # default: like other QUIC stacks we stop at an Internet path's size unless told
    # (a local or data-centre link with a large MTU gains most: docs/datagrams.md).
    pmtud_interface_mtu: bool = False
    # PMTU_RAISE_TIMER (RFC 8899 §5.1.1): seconds after a search ended below MAX_PLPMTU
    # (or a black hole) before searching for a larger size again.
    pmtud_raise_interval: float = 600.0
    # -- application data in session tickets (helper "early2", session 16) --------------
    # Server: sealed into every ticket it issues (the application protocol's state to
    # check on resumption, e.g. HTTP/3's SETTINGS, RFC 9114 §7.2.4.2; at most 65535
    # bytes); early_data_application_check is given it back when a client resumes with
    # that ticket and says whether 0-RTT may be accepted (None: yes). h3.remembered.
    # remember_settings_in_tickets sets both for an HTTP/3 server.
    ticket_application_data: bytes = b""
    early_data_application_check: Callable[[bytes], bool] | None = None

    def load_cert_chain(
        self, certfile: str, keyfile: str | None = None, password: bytes | None = None
    ) -> None:
        """Load a PEM certificate chain (leaf first) and its key."""
        with open(certfile, "rb") as fp:
            cert_pem = fp.read()
        key_pem = cert_pem
        if keyfile is not None:
            with open(keyfile, "rb") as fp:
                key_pem = fp.read()
        self.certificate_chain = load_certificate_chain_pem(cert_pem)
        self.private_key = load_private_key_pem(key_pem, password)

    def min_ack_delay_us(self) -> int | None:
        """The min_ack_delay transport parameter (µs), never above max_ack_delay
        (draft-ietf-quic-ack-frequency §3); None when not advertised."""
        if self.min_ack_delay is None:
            return None
        ceiling = int(self.max_ack_delay * 1000) * 1000
        return min(int(self.min_ack_delay * 1_000_000), ceiling)

    def verify_options(self) -> VerifyOptions:
        return VerifyOptions(
            verify=self.verify_certificates,
            cafile=self.cafile,
            cadata=self.cadata,
            certificate_hashes=tuple(self.server_certificate_hashes),
        )

    def tls_config(self) -> TlsConfig:
        """The TLS engine settings this configuration implies."""
        return TlsConfig(
            is_client=self.is_client,
            alpn_protocols=list(self.alpn_protocols),
            server_name=self.server_name,
            certificate_chain=list(self.certificate_chain),
            private_key=self.private_key,
            cipher_suites=self.cipher_suites,
            groups=self.groups,
            key_share_groups=self.key_share_groups,
            verify=self.verify_options(),
            clock=self.clock,
            keylog=self.keylog,
            session_ticket_handler=self._ticket_handler() if self.is_client else None,
            early_data=self.enable_early_data,
            ticket_keys=self.ticket_keys,
            ticket_lifetime=self.ticket_lifetime,
            accept_early_data=self.enable_early_data,
            anti_replay=self.anti_replay,
            ticket_application_data=self.ticket_application_data,
            early_data_application_check=self.early_data_application_check,
        )

    def _ticket_handler(self) -> Callable[[SessionTicket], None] | None:
        """Where a client's new tickets go: the store, then the application's handler."""
        store, handler = self.session_ticket_store, self.session_ticket_handler
        if store is None:
            return handler
        if handler is None:
            return store.add

        def both(ticket: SessionTicket) -> None:
            store.add(ticket)
            handler(ticket)

        return both
