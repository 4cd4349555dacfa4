"""Client and server configuration of the asyncio WebTransport API.

Theory of operation
-------------------
:class:`ServerConfig` and :class:`ClientConfig` are plain keyword-only dataclasses that
users fill in. Each translates itself into the two lower-level configurations the stack
runs on: a :class:`~quic.configuration.QuicConfiguration` (TLS, ALPN ``h3``, datagram
support, transport limits) and a
:class:`~pywebtransport.protocol.WebTransportConfiguration` (drafts, session limits,
draft-13/16 flow-control windows). Drafts are named ``"draft16"``, ``"draft13"``,
``"draft07"`` and ``"draft02"`` (see :func:`parse_draft`); a client offers exactly the
drafts it is configured with, a server announces all of its drafts at once and picks
the newest one each peer also speaks (docs/webtransport-drafts.md).

Certificates (client): the system trust store by default; ``ca_certs`` (a PEM file)
instead; ``server_certificate_hashes`` pins SHA-256 hashes of the server's leaf
certificate with the semantics of the browser's ``serverCertificateHashes``;
``insecure=True`` disables verification explicitly.

QUIC-LB (server): with ``quic_lb_server_id`` set, :meth:`ServerConfig.quic_lb` is the
:class:`~quic.quiclb.QuicLbConfig` of the four ``quic_lb_*`` settings (plaintext without
a key; single- or four-pass encrypted with one), ``quic_configuration()`` sets the
connection ID length to its CIDs' length, and the server gives its
:meth:`~quic.quiclb.QuicLbConfig.token_bytes` to the QUIC endpoint, so that every
connection ID it issues carries the server ID a QUIC-LB load balancer routes by
(docs/quic-lb.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509

from h3.remembered import remember_settings_in_tickets
from pywebtransport.protocol import Draft, WebTransportConfiguration
from pywebtransport.protocol.connection import h3_configuration
from quic.configuration import QuicConfiguration
from quic.quiclb import QuicLbConfig
from quic.tls.antireplay import AntiReplay
from quic.tls.keylog import shared_keylog_file
from quic.tls.signatures import PrivateKey, load_certificate_chain_pem, load_private_key_pem
from quic.tls.tickets import SessionTicketKeys, SessionTicketStore
from quic.tokens import TokenStore

__all__ = [
    "ALPN",
    "DEFAULT_DRAFTS",
    "ClientConfig",
    "ConfigurationError",
    "ServerConfig",
    "draft_name",
    "parse_draft",
]

#: HTTP/3 ALPN token (RFC 9114 §3.1).
ALPN = "h3"
#: Draft names, newest first.
DEFAULT_DRAFTS: tuple[str, ...] = ("draft16", "draft13", "draft07", "draft02")

_DRAFTS_BY_NUMBER = {int(d): d for d in Draft}
_PATH_CHALLENGE_LENGTH = 8  # RFC 9000 §19.17


class ConfigurationError(ValueError):
    """A configuration value is missing or malformed."""


def parse_draft(name: str | int | Draft) -> Draft:
    """``"draft16"``, ``"draft-16"``, ``"16"``, ``16`` or ``Draft.DRAFT16`` → ``Draft``."""
    if isinstance(name, Draft):
        return name
    if isinstance(name, int):
        number = name
    else:
        text = name.strip().lower().removeprefix("draft").lstrip("-_ ")
        if not text.isdigit():
            raise ConfigurationError(f"unknown WebTransport draft: {name!r}")
        number = int(text)
    draft = _DRAFTS_BY_NUMBER.get(number)
    if draft is None:
        known = ", ".join(f"draft{int(d):02d}" for d in Draft)
        raise ConfigurationError(f"unsupported WebTransport draft {name!r} (known: {known})")
    return draft


def draft_name(draft: Draft) -> str:
    """``Draft.DRAFT02`` → ``"draft02"``."""
    return f"draft{int(draft):02d}"


def _drafts(names: tuple[str, ...] | list[str]) -> tuple[Draft, ...]:
    drafts = tuple(dict.fromkeys(parse_draft(n) for n in names))
    if not drafts:
        raise ConfigurationError("at least one WebTransport draft is required")
    return drafts


@dataclass(kw_only=True)
class _Common:
    """Settings shared by both roles."""

    #: WebTransport drafts spoken (names as in :data:`DEFAULT_DRAFTS`)
    drafts: tuple[str, ...] = DEFAULT_DRAFTS
    #: QUIC idle timeout in seconds
    idle_timeout: float = 30.0
    #: largest QUIC DATAGRAM frame we accept (RFC 9221 §3); datagrams need it
    max_datagram_frame_size: int = 65536
    #: append TLS secrets (NSS key log format) to this file, for Wireshark; None:
    #: ``$SSLKEYLOGFILE`` if set (see quic.tls.keylog)
    keylog_file: str | None = None
    #: write a qlog trace of each connection into this directory,
    #: ``<ODCID hex>_<client|server>.sqlog`` (see quic.qlog; None: no tracing)
    qlog_dir: str | None = None
    #: draft-16 §3.1: refuse draft-16 with a peer that did not send the reset_stream_at
    #: transport parameter (False: serve it, as pywebtransport 0.21.1 needs; see
    #: WebTransportConfiguration.require_reset_stream_at)
    require_reset_stream_at: bool = False
    #: draft-13/16 session flow-control windows we grant (SETTINGS_WT_INITIAL_MAX_*)
    wt_initial_max_data: int = 16 * 1024 * 1024
    wt_initial_max_streams_bidi: int = 100
    wt_initial_max_streams_uni: int = 100
    #: QUIC flow-control windows we grant (RFC 9000 §4)
    initial_max_data: int = 4 * 1024 * 1024
    initial_max_stream_data: int = 1024 * 1024
    initial_max_streams_bidi: int = 128
    initial_max_streams_uni: int = 128
    #: a stream writer waits while more than this many bytes are unacknowledged
    stream_send_buffer: int = 1024 * 1024
    #: most bytes one stream holds unread: credit returns only as the application
    #: reads, so this is the ceiling of a stream's QUIC receive window (its auto-tuning
    #: limit, RFC 9000 §4.1; never below ``initial_max_stream_data``)
    stream_receive_buffer: int = 16 * 1024 * 1024
    #: received datagrams kept per session for ``receive_datagram()``, and their total
    #: bytes (beyond either, the oldest are dropped; RFC 9221 §5 allows dropping)
    datagram_queue_size: int = 1024
    datagram_queue_bytes: int = 1024 * 1024
    #: streams the peer opened that the application has not taken yet, per session;
    #: further ones are refused with WT_BUFFERED_STREAM_REJECTED (draft-16 §4.7)
    stream_backlog: int = 256

    @property
    def draft_versions(self) -> tuple[Draft, ...]:
        return _drafts(self.drafts)

    def _quic(self, is_client: bool) -> QuicConfiguration:
        if self.max_datagram_frame_size <= 0:
            # draft-16 §3.1: both endpoints send max_datagram_frame_size > 0 (and the
            # empty reset_stream_at transport parameter, QuicConfiguration's default)
            raise ConfigurationError("WebTransport needs max_datagram_frame_size > 0")
        config = QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            idle_timeout=self.idle_timeout,
            max_datagram_frame_size=self.max_datagram_frame_size,
            initial_max_data=self.initial_max_data,
            initial_max_stream_data=self.initial_max_stream_data,
            initial_max_streams_bidi=self.initial_max_streams_bidi,
            initial_max_streams_uni=self.initial_max_streams_uni,
            max_stream_data_window=max(self.stream_receive_buffer, self.initial_max_stream_data),
            stream_send_buffer_high=self.stream_send_buffer,
            reset_stream_at=True,  # draft-16 §3.1 (and §4.4: reliable stream headers)
        )
        if self.keylog_file is not None:
            config.keylog = shared_keylog_file(self.keylog_file)
        config.qlog_dir = self.qlog_dir
        return config

    def _webtransport(self, max_sessions: int) -> WebTransportConfiguration:
        return WebTransportConfiguration(
            drafts=self.draft_versions,
            max_sessions=max_sessions,
            initial_max_data=self.wt_initial_max_data,
            initial_max_streams_bidi=self.wt_initial_max_streams_bidi,
            initial_max_streams_uni=self.wt_initial_max_streams_uni,
            require_reset_stream_at=self.require_reset_stream_at,
        )


@dataclass(kw_only=True)
class ServerConfig(_Common):
    """Configuration of a WebTransport server."""

    #: PEM certificate chain (leaf first) and key files; or pass the objects below
    certfile: str | None = None
    keyfile: str | None = None
    certificate_chain: list[x509.Certificate] | None = None
    private_key: PrivateKey | None = None
    host: str = "127.0.0.1"
    port: int = 4433
    #: concurrent sessions per connection (bounded further by each draft's rules)
    max_sessions: int = 100
    #: sessions still open after a graceful shutdown's timeout are closed with these
    shutdown_timeout: float = 5.0
    #: admission limits of the QUIC endpoint (docs/limits.md): connections from one
    #: source IP, connections whose handshake is not complete, and the seconds a
    #: handshake may take before the connection is abandoned
    max_connections_per_address: int = 128
    max_half_open_connections: int = 1000
    handshake_timeout: float = 10.0
    #: address validation (RFC 9000 §8.1.2): "never", "always", or "auto" — a
    #: stateless Retry once ``retry_threshold`` handshakes are in flight
    retry: Literal["never", "always", "auto"] = "auto"
    retry_threshold: int = 200
    #: session resumption (RFC 9846 §4.7.1): the keys that seal session tickets (None:
    #: no tickets), and the anti-replay memory without which 0-RTT is never accepted
    #: (RFC 9846 §8; see QuicConfiguration and docs/limits.md)
    ticket_keys: SessionTicketKeys | None = None
    anti_replay: AntiReplay | None = None
    #: QUIC-LB (draft-ietf-quic-load-balancers, docs/quic-lb.md): this server's ID
    #: (1..15 bytes), put in every connection ID it issues so that a QUIC-LB load
    #: balancer routes each connection here, through migration. None: random CIDs.
    #: The other three must match the balancer's configuration: the config rotation
    #: codepoint (0..6), the nonce length (4..18; server ID + nonce at most 19 bytes)
    #: and the 16-byte AES key (None: plaintext CIDs)
    quic_lb_server_id: bytes | None = None
    quic_lb_config_rotation: int = 0
    quic_lb_nonce_length: int = 8
    quic_lb_key: bytes | None = None

    def quic_lb(self) -> QuicLbConfig | None:
        """The QUIC-LB configuration of the ``quic_lb_*`` settings (None without a
        server ID); :class:`ConfigurationError` for values the draft does not allow."""
        if self.quic_lb_server_id is None:
            if self.quic_lb_key is not None:
                raise ConfigurationError("quic_lb_key needs quic_lb_server_id")
            return None
        try:
            lb = QuicLbConfig(
                self.quic_lb_config_rotation,
                self.quic_lb_server_id,
                self.quic_lb_nonce_length,
                self.quic_lb_key,
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if lb.cid_length == _PATH_CHALLENGE_LENGTH:
            # every request for cid_length random bytes gets a CID: PATH_CHALLENGE data
            # (8 bytes, RFC 9000 §8.2.1: unpredictable) would be one
            raise ConfigurationError(
                "QUIC-LB server ID + nonce of 7 bytes make 8-byte connection IDs, the "
                "size of PATH_CHALLENGE data: choose a longer nonce"
            )
        return lb

    def quic_configuration(self) -> QuicConfiguration:
        """The QUIC server configuration (loads the certificate and key)."""
        config = self._quic(is_client=False)
        lb = self.quic_lb()
        if lb is not None:
            config.connection_id_length = lb.cid_length  # what lb.token_bytes makes
        config.ticket_keys = self.ticket_keys
        config.anti_replay = self.anti_replay
        config.max_connections_per_address = self.max_connections_per_address
        config.max_half_open_connections = self.max_half_open_connections
        config.handshake_timeout = self.handshake_timeout
        config.retry = self.retry
        config.retry_threshold = self.retry_threshold
        if self.certificate_chain is not None:
            if self.private_key is None:
                raise ConfigurationError("certificate_chain given without private_key")
            config.certificate_chain = list(self.certificate_chain)
            config.private_key = self.private_key
        elif self.certfile is not None:
            try:
                with open(self.certfile, "rb") as fp:
                    cert_pem = fp.read()
                key_pem = cert_pem
                if self.keyfile is not None:
                    with open(self.keyfile, "rb") as fp:
                        key_pem = fp.read()
                config.certificate_chain = load_certificate_chain_pem(cert_pem)
                config.private_key = load_private_key_pem(key_pem, None)
            except (OSError, ValueError, TypeError) as exc:
                raise ConfigurationError(f"cannot load certificate/key: {exc}") from exc
        else:
            raise ConfigurationError(
                "a server needs a certificate: set certfile/keyfile or "
                "certificate_chain/private_key"
            )
        # RFC 9114 §7.2.4.2: our SETTINGS sealed into every ticket, 0-RTT accepted only
        # from clients that remembered compatible ones (h3.remembered)
        h3_settings = h3_configuration(self.webtransport_configuration(), is_client=False)
        remember_settings_in_tickets(config, h3_settings)
        return config

    def webtransport_configuration(self) -> WebTransportConfiguration:
        return self._webtransport(self.max_sessions)


@dataclass(kw_only=True)
class ClientConfig(_Common):
    """Configuration of a WebTransport client."""

    #: PEM file of trusted CA certificates (default: the system trust store)
    ca_certs: str | None = None
    #: SHA-256 hashes of accepted server leaf certificates (``serverCertificateHashes``)
    server_certificate_hashes: list[bytes] = field(default_factory=list)
    #: skip certificate verification entirely (explicit opt-out)
    insecure: bool = False
    #: seconds for the QUIC handshake plus the CONNECT exchange
    connect_timeout: float = 10.0
    #: extra request header fields sent with every CONNECT
    headers: dict[str, str] = field(default_factory=dict)
    #: TLS server name; default: the URL's host
    server_name: str | None = None
    #: sessions per connection we announce (draft-07 setting)
    max_sessions: int = 1
    #: NEW_TOKEN tokens of earlier connections, used by later ones to skip a Retry
    #: (RFC 9000 §8.1.3); share one store between clients. None: not used
    token_store: TokenStore | None = None
    #: where session tickets are kept for resumption (RFC 9001 §4.5): each new
    #: connection to a server name resumes with a ticket from it (None: no resumption;
    #: quic.tls.tickets.InMemorySessionTicketStore is bounded)
    session_ticket_store: SessionTicketStore | None = None
    #: the client's connections share one UDP socket per address family, told apart by
    #: connection ID (RFC 9000 §5.2; :mod:`quic.aio.shared`); False: a socket each
    share_socket: bool = True

    def quic_configuration(self, server_name: str | None = None) -> QuicConfiguration:
        """The QUIC client configuration."""
        config = self._quic(is_client=True)
        config.token_store = self.token_store
        config.session_ticket_store = self.session_ticket_store
        config.server_name = self.server_name or server_name
        config.verify_certificates = not self.insecure
        config.cafile = self.ca_certs
        config.server_certificate_hashes = tuple(self.server_certificate_hashes)
        return config

    def webtransport_configuration(self) -> WebTransportConfiguration:
        return self._webtransport(self.max_sessions)
