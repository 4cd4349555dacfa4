"""Configuration of one TLS 1.3 endpoint (client or server) for QUIC.

The handshake engine never reads the clock: ``clock`` is injected (tests pass a fixed
time, the asyncio layer the real one) and is used for certificate validity and for
session ticket ages. A client that verifies certificates must therefore be given a
clock; without one, no ticket is issued (server) or used (client).

Resumption (RFC 9846 §4.3.11, §4.7.1; RFC 9001 §4.5, §4.6): a client offers
``session_ticket`` (and 0-RTT if ``early_data`` and the ticket allow it); a server with
``ticket_keys`` issues one ticket after each handshake and accepts valid ones,
accepting 0-RTT only if ``accept_early_data``, ``anti_replay`` admits the ClientHello
and ``early_data_check`` (QUIC's transport-parameter rules) and
``early_data_application_check`` (the application's, given the ``ticket_application_data``
sealed into the ticket) agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from quic.tls.antireplay import AntiReplay
from quic.tls.groups import SUPPORTED_GROUPS, NamedGroup
from quic.tls.keylog import KeyLogCallback
from quic.tls.messages import DEFAULT_MAX_MESSAGE_SIZE
from quic.tls.signatures import (
    SUPPORTED_SIGNATURE_SCHEMES,
    PrivateKey,
    SignatureScheme,
    load_certificate_chain_pem,
    load_private_key_pem,
)
from quic.tls.suites import CipherSuite
from quic.tls.tickets import SessionTicket, SessionTicketKeys
from quic.tls.verify import VerifyOptions

__all__ = [
    "DEFAULT_CIPHER_SUITES",
    "DEFAULT_KEY_SHARE_GROUPS",
    "TlsConfig",
]

#: All three TLS 1.3 suites QUIC can use, AES-128-GCM first (RFC 9846 §9.1).
DEFAULT_CIPHER_SUITES: tuple[CipherSuite, ...] = (
    CipherSuite.TLS_AES_128_GCM_SHA256,
    CipherSuite.TLS_AES_256_GCM_SHA384,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
)

#: Groups the client sends key shares for up front (like Chromium: hybrid + X25519).
DEFAULT_KEY_SHARE_GROUPS: tuple[NamedGroup, ...] = (NamedGroup.X25519MLKEM768, NamedGroup.x25519)


@dataclass(kw_only=True)
class TlsConfig:
    """Settings of a :class:`quic.tls.engine.TlsEngine`.

    ``groups``, ``cipher_suites`` and ``signature_algorithms`` are in preference order;
    a server picks by its own preference among what the client offers. ``server_name``
    is the name the client verifies the certificate against (sent as SNI unless it is an
    IP address). ``keylog`` receives NSS key log lines (see :mod:`quic.tls.keylog`).
    """

    is_client: bool
    alpn_protocols: list[str] = field(default_factory=list)
    server_name: str | None = None
    certificate_chain: list[x509.Certificate] = field(default_factory=list)
    private_key: PrivateKey | None = None
    cipher_suites: tuple[CipherSuite, ...] = DEFAULT_CIPHER_SUITES
    groups: tuple[NamedGroup, ...] = SUPPORTED_GROUPS
    key_share_groups: tuple[NamedGroup, ...] = DEFAULT_KEY_SHARE_GROUPS
    signature_algorithms: tuple[SignatureScheme, ...] = SUPPORTED_SIGNATURE_SCHEMES
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    clock: Callable[[], datetime] | None = None
    keylog: KeyLogCallback | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    # -- resumption and 0-RTT (helper "resumption") --
    session_ticket: SessionTicket | None = None  # client: the ticket to offer
    # client: called with each ticket the server sends (RFC 9846 §4.7.1); None: dropped
    session_ticket_handler: Callable[[SessionTicket], None] | None = None
    early_data: bool = True  # client: offer 0-RTT when the ticket allows it
    ticket_keys: SessionTicketKeys | None = None  # server: None issues/accepts no ticket
    ticket_lifetime: int = 86400  # server: seconds (RFC 9846 §4.7.1: at most 604800)
    accept_early_data: bool = True  # server: tickets allow 0-RTT, offers may be accepted
    anti_replay: AntiReplay | None = None  # server: None never accepts 0-RTT (§8)
    # server: given the transport parameters remembered in a ticket, may 0-RTT be
    # accepted (RFC 9000 §7.4.1)? None: yes
    early_data_check: Callable[[bytes], bool] | None = None
    # server: sealed into each ticket issued (the application protocol's state, e.g.
    # HTTP/3 SETTINGS, RFC 9114 §7.2.4.2; at most 65535 bytes)
    ticket_application_data: bytes = b""
    # server: given the application data of a ticket, may 0-RTT be accepted (RFC 9114
    # §7.2.4.2: not if the remembered settings are incompatible)? None: yes
    early_data_application_check: Callable[[bytes], bool] | None = None

    def load_cert_chain(
        self, certfile: str, keyfile: str | None = None, password: bytes | None = None
    ) -> None:
        """Load a PEM chain (leaf first) and its private key (``keyfile`` or ``certfile``)."""
        with open(certfile, "rb") as fp:
            cert_pem = fp.read()
        key_pem = cert_pem
        if keyfile is not None:
            with open(keyfile, "rb") as fp:
                key_pem = fp.read()
        self.load_cert_chain_pem(cert_pem, key_pem, password)

    def load_cert_chain_pem(
        self, certificate_pem: bytes, private_key_pem: bytes, password: bytes | None = None
    ) -> None:
        """Like :meth:`load_cert_chain`, from PEM bytes."""
        self.certificate_chain = load_certificate_chain_pem(certificate_pem)
        self.private_key = load_private_key_pem(private_key_pem, password)

    def check(self) -> None:
        """Raise ValueError if the configuration cannot run a handshake."""
        if not self.cipher_suites:
            raise ValueError("no cipher suites configured")
        if not self.groups:
            raise ValueError("no key exchange groups configured")
        if not self.signature_algorithms:
            raise ValueError("no signature algorithms configured")
        if self.is_client:
            if self.verify.verify and self.clock is None:
                raise ValueError("certificate verification needs an injected clock")
        elif not self.certificate_chain or self.private_key is None:
            raise ValueError("a server needs a certificate chain and a private key")
        if len(self.ticket_application_data) > 0xFFFF:
            raise ValueError("ticket_application_data is at most 65535 bytes")
        if not 0 <= self.ticket_lifetime <= 604800:
            raise ValueError("ticket_lifetime must be 0..604800 seconds (RFC 9846 §4.7.1)")
