"""TLS 1.3 client handshake for QUIC (RFC 9846 §4, Appendix A.1; RFC 9001 §4, §8).

Theory of operation
-------------------
States follow RFC 9846 Appendix A.1::

    START --send CH--> WAIT_SH --HRR: send CH2--> WAIT_SH
    WAIT_SH --SH--> WAIT_EE --EE--> WAIT_CERT_CR --(CR)--> WAIT_CERT
    --Certificate--> WAIT_CV --CertificateVerify--> WAIT_FINISHED
    --Finished: send [Certificate] Finished--> CONNECTED
    WAIT_EE --EE (resumed: the ServerHello selected our PSK)--> WAIT_FINISHED

Epochs (RFC 9001 §4): the ClientHello(s) go out and the ServerHello comes in at
INITIAL; on the ServerHello the client installs HANDSHAKE read and write secrets and
reads at HANDSHAKE; after verifying the server Finished it sends its own Finished at
HANDSHAKE, installs ONE_RTT read and write secrets, reports the handshake complete and
reads at ONE_RTT, where only NewSessionTicket is acceptable.

Resumption (:mod:`quic.tls.psk`): with ``config.session_ticket`` (valid now, of a
suite we offer) the ClientHello offers its PSK with (EC)DHE (psk_dhe_ke) and its
binder; if the ticket allows 0-RTT and ``config.early_data`` is set it also offers
early_data and releases the ZERO_RTT write secret (client_early_traffic_secret, RFC
9001 §4.6.1) right after the ClientHello. After a HelloRetryRequest the PSK is offered
again with a new binder if the suite's hash allows, never early_data (§4.2.10). A
ServerHello that selects the PSK must select identity 0 with a suite of its hash;
EncryptedExtensions' early_data then tells whether 0-RTT was accepted
(``early_data_accepted``). Each NewSessionTicket becomes a
:class:`~quic.tls.tickets.SessionTicket` handed to ``config.session_ticket_handler``.

Certificate authentication is delegated to :func:`quic.tls.verify.verify_server_certificate`
and :func:`quic.tls.signatures.verify`. A CertificateRequest is answered with an empty
Certificate (client certificates are not supported yet, RFC 9846 §4.5.1).

Two post-handshake errors are QUIC transport errors rather than TLS alerts, so they
raise :class:`quic.errors.QuicProtocolError` (PROTOCOL_VIOLATION): a CertificateRequest
after the handshake (RFC 9001 §4.4) and a NewSessionTicket whose early_data
max_early_data_size is not 0xffffffff (RFC 9001 §4.6.1).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import replace
from enum import Enum, auto
from functools import lru_cache
from typing import Any, ClassVar

from quic.errors import QuicProtocolError, TransportErrorCode
from quic.tls.alerts import AlertDescription
from quic.tls.extensions import ExtensionType, KeyShareEntry, PskKeyExchangeMode
from quic.tls.groups import KeyShare, NamedGroup, generate_key_share
from quic.tls.handshake import Epoch, HandshakeContext, Role, alert, is_ip_address
from quic.tls.messages import (
    TLS12,
    TLS13,
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Finished,
    HandshakeType,
    HelloRetryRequest,
    NewSessionTicket,
    ServerHello,
)
from quic.tls.psk import offer, ticket_from_message, with_binder
from quic.tls.signatures import SignatureScheme, certificate_verify_input, verify_with_certificate
from quic.tls.suites import SUITE_HASH, CipherSuite
from quic.tls.tickets import QUIC_MAX_EARLY_DATA, SessionTicket
from quic.tls.verify import verify_server_certificate

__all__ = ["ClientRole", "ClientState"]

#: NewSessionTickets kept for inspection (a server may send any number: bounded)
_KEEP_TICKETS = 4
_X25519_GROUPS = (NamedGroup.x25519, NamedGroup.X25519MLKEM768)  # with an X25519 key


class ClientState(Enum):
    START = auto()
    WAIT_SH = auto()
    WAIT_EE = auto()
    WAIT_CERT_CR = auto()
    WAIT_CERT = auto()
    WAIT_CV = auto()
    WAIT_FINISHED = auto()
    CONNECTED = auto()


@lru_cache(maxsize=64)  # a client's few server names (the IP-literal test raises twice)
def _sni(name: str | None) -> str | None:
    """SNI host_name: not for IP literals (RFC 6066 §3), IDNA-encoded, no trailing dot."""
    if not name or is_ip_address(name):
        return None
    name = name.rstrip(".")
    try:
        return name.encode("ascii").decode("ascii")
    except UnicodeEncodeError:
        return name.encode("idna").decode("ascii")


class ClientRole(Role):
    """The client side of the handshake (see module docstring)."""

    __slots__ = (
        "client_auth_context",
        "client_hello",
        "hrr",
        "key_shares",
        "new_session_tickets",
        "ticket",
    )

    TRANSITIONS: ClassVar[dict[Any, dict[int, Any]]] = {}

    def __init__(self, ctx: HandshakeContext) -> None:
        super().__init__(ctx, ClientState.START)
        self.key_shares: dict[int, KeyShare] = {}
        self.client_hello: ClientHello | None = None
        self.hrr: HelloRetryRequest | None = None
        self.client_auth_context: bytes | None = None
        self.new_session_tickets: deque[NewSessionTicket] = deque(maxlen=_KEEP_TICKETS)
        self.ticket: SessionTicket | None = None  # the ticket offered, if any

    # -- ClientHello -----------------------------------------------------------------
    def start(self) -> None:
        if self.state is not ClientState.START:
            raise RuntimeError("handshake already started")
        ctx, config = self.ctx, self.ctx.config
        ctx.client_random = os.urandom(32)
        # RFC 9846 §4.3.8: shares in the order of supported_groups, a subset of it.
        x25519_of: KeyShare | None = None  # one X25519 key for x25519 and the hybrid
        for group in config.groups:
            if group in config.key_share_groups:
                share = self.key_shares[group] = generate_key_share(group, x25519_of)
                if group in _X25519_GROUPS:
                    x25519_of = share
        alpn = tuple(p.encode() for p in config.alpn_protocols) or None
        ticket = self._usable_ticket()
        early = ticket is not None and self._may_send_early_data(ticket)
        self.client_hello = ClientHello(
            random=ctx.client_random,
            cipher_suites=tuple(config.cipher_suites),
            legacy_session_id=b"",  # RFC 9001 §8.4: no middlebox compatibility mode
            server_name=_sni(config.server_name),
            supported_versions=(TLS13,),  # RFC 9001 §4.2: nothing older than 1.3
            supported_groups=tuple(config.groups),
            key_share=self._key_share_entries(),
            signature_algorithms=tuple(config.signature_algorithms),
            alpn_protocols=alpn,
            psk_key_exchange_modes=(PskKeyExchangeMode.psk_dhe_ke,),
            quic_transport_parameters=ctx.transport_parameters,  # RFC 9001 §8.2
            early_data=early,
            pre_shared_key=offer(ticket, ctx.now()) if ticket is not None else None,
        )
        if ticket is not None:
            self.ticket = ticket
        self._send_client_hello(ticket)
        if ticket is not None and early:
            ctx.early_data_offered = True
            ctx.derive_early_secret(ticket.cipher_suite, ticket.psk, True)
        self.state = ClientState.WAIT_SH

    def _send_client_hello(self, ticket: SessionTicket | None) -> None:
        """Send :attr:`client_hello` at INITIAL and hash it; with ``ticket``, its PSK
        binder first written into it (:func:`~quic.tls.psk.with_binder`)."""
        ctx = self.ctx
        if ticket is None:
            ctx.send_and_hash(Epoch.INITIAL, self._offered())
            return
        self.client_hello, raw = with_binder(self._offered(), ticket, ctx.transcript)
        ctx.transcript.add(ctx.send_framed(Epoch.INITIAL, raw))

    def _usable_ticket(self) -> SessionTicket | None:
        """The configured ticket, if it may be offered now (RFC 9846 §4.6.1)."""
        config = self.ctx.config
        ticket = config.session_ticket
        if ticket is None or config.clock is None:
            return None
        if not ticket.is_valid(self.ctx.now()) or ticket.cipher_suite not in config.cipher_suites:
            return None
        return ticket

    def _may_send_early_data(self, ticket: SessionTicket) -> bool:
        """0-RTT with ``ticket``: allowed by it, wanted, same ALPN offered (§4.3.10)."""
        config = self.ctx.config
        if not config.early_data or not ticket.allows_early_data:
            return False
        return ticket.alpn_protocol is None or ticket.alpn_protocol in config.alpn_protocols

    def _key_share_entries(self) -> tuple[KeyShareEntry, ...]:
        return tuple(KeyShareEntry(g, share.public) for g, share in self.key_shares.items())

    def _offered(self) -> ClientHello:
        assert self.client_hello is not None
        return self.client_hello

    def _check_offered_extensions(
        self, types: frozenset[int], where: str, allowed: frozenset[int] = frozenset()
    ) -> None:
        """RFC 9846 §4.3: responses only to extensions we sent, else unsupported_extension."""
        extra = types - self._offered().extension_types() - allowed
        if extra:
            raise alert(
                AlertDescription.unsupported_extension,
                f"{where} has extensions we did not offer: {sorted(extra)}",
            )

    # -- ServerHello / HelloRetryRequest ---------------------------------------------
    def _check_server_hello(self, msg: ServerHello | HelloRetryRequest, where: str) -> None:
        """Checks shared by ServerHello and HelloRetryRequest (RFC 9846 §4.2.3, §4.3.1)."""
        if msg.supported_version is None:
            raise alert(AlertDescription.protocol_version, f"{where} negotiates TLS 1.2 or older")
        if msg.supported_version != TLS13:
            raise alert(
                AlertDescription.illegal_parameter,
                f"{where} selected version 0x{msg.supported_version:04x} we did not offer",
            )
        if msg.legacy_version != TLS12:
            raise alert(AlertDescription.protocol_version, "legacy_version is not 0x0303")
        offered = self._offered()
        if msg.legacy_session_id_echo != offered.legacy_session_id:
            raise alert(AlertDescription.illegal_parameter, "legacy_session_id_echo mismatch")
        if msg.cipher_suite not in offered.cipher_suites:
            raise alert(AlertDescription.illegal_parameter, "cipher suite was not offered")
        if msg.legacy_compression_method != 0:
            raise alert(AlertDescription.illegal_parameter, "legacy_compression_method != 0")
        if self.hrr is not None and msg.cipher_suite != self.hrr.cipher_suite:
            # RFC 9846 §4.2.4: the ServerHello must keep the HRR's suite.
            raise alert(AlertDescription.illegal_parameter, "cipher suite changed after HRR")

    def on_server_hello(self, msg: ServerHello | HelloRetryRequest, raw: bytes) -> None:
        if isinstance(msg, HelloRetryRequest):
            self._on_hello_retry_request(msg, raw)
        else:
            self._on_server_hello(msg, raw)

    def _on_hello_retry_request(self, hrr: HelloRetryRequest, raw: bytes) -> None:
        ctx, config = self.ctx, self.ctx.config
        if self.hrr is not None:
            # RFC 9846 §4.2.4: a second HelloRetryRequest.
            raise alert(AlertDescription.unexpected_message, "second HelloRetryRequest")
        self._check_server_hello(hrr, "HelloRetryRequest")
        self.hrr = hrr
        # RFC 9846 §4.3.2: a cookie is the one extension an HRR may send unsolicited.
        self._check_offered_extensions(
            hrr.extension_types(), "HelloRetryRequest", frozenset({ExtensionType.cookie})
        )
        if hrr.selected_group is None and hrr.cookie is None:
            raise alert(AlertDescription.illegal_parameter, "HelloRetryRequest changes nothing")
        if hrr.selected_group is not None:
            # RFC 9846 §4.3.8: offered in supported_groups, and not already shared.
            group = hrr.selected_group
            if group not in config.groups or group in self.key_shares:
                raise alert(
                    AlertDescription.illegal_parameter, f"HRR selected bad group 0x{group:04x}"
                )
            self.key_shares = {group: generate_key_share(NamedGroup(group))}
        suite = CipherSuite(hrr.cipher_suite)
        ctx.cipher_suite = suite
        # RFC 9846 §4.1: ClientHello1 becomes message_hash(Hash(ClientHello1)).
        ctx.transcript.restart_after_hrr(SUITE_HASH[suite])
        ctx.transcript.add(raw)
        # RFC 9846 §4.2.2: the same ClientHello except key_share, cookie, early_data.
        psk = self._offered().pre_shared_key
        ticket = self.ticket
        if ticket is not None and ticket.hash_name != SUITE_HASH[suite]:
            psk = None  # §4.2.11: no PSK of another hash in the updated ClientHello
            ticket = self.ticket = None
        self.client_hello = replace(
            self._offered(),
            key_share=self._key_share_entries(),
            cookie=hrr.cookie,
            early_data=False,
            pre_shared_key=psk,
        )
        ctx.hello_retry_request_received = True
        self._send_client_hello(ticket)

    def _on_server_hello(self, sh: ServerHello, raw: bytes) -> None:
        ctx = self.ctx
        self._check_server_hello(sh, "ServerHello")
        self._check_offered_extensions(sh.extension_types(), "ServerHello")
        if sh.key_share is None:
            raise alert(AlertDescription.missing_extension, "ServerHello has no key_share")
        group = sh.key_share.group
        share = self.key_shares.get(group)
        if share is None:
            raise alert(AlertDescription.illegal_parameter, "ServerHello key_share group not sent")
        if self.hrr is not None and self.hrr.selected_group not in (None, group):
            raise alert(AlertDescription.illegal_parameter, "group differs from HRR's")
        if sh.pre_shared_key is not None:
            self._accept_resumption(sh)
        shared_secret = share.shared_secret(sh.key_share.key_exchange)
        self.key_shares = {}  # forget the ephemeral keys
        ctx.cipher_suite = CipherSuite(sh.cipher_suite)
        ctx.group = NamedGroup(group)
        ctx.transcript.set_hash(SUITE_HASH[ctx.cipher_suite])
        ctx.transcript.add(raw)
        ctx.derive_handshake_secrets(shared_secret)
        ctx.install(Epoch.HANDSHAKE, False, ctx.server_handshake_secret)
        ctx.install(Epoch.HANDSHAKE, True, ctx.client_handshake_secret)
        ctx.set_recv_epoch(Epoch.HANDSHAKE)
        self.state = ClientState.WAIT_EE

    def _accept_resumption(self, sh: ServerHello) -> None:
        """The server selected our PSK (RFC 9846 §4.3.11): identity 0, same hash."""
        ticket = self.ticket
        if ticket is None or sh.pre_shared_key != 0:
            raise alert(AlertDescription.illegal_parameter, "server selected a PSK not offered")
        if SUITE_HASH[CipherSuite(sh.cipher_suite)] != ticket.hash_name:
            raise alert(AlertDescription.illegal_parameter, "suite hash differs from the PSK's")
        self.ctx.psk = ticket.psk
        self.ctx.session_resumed = True

    # -- EncryptedExtensions ---------------------------------------------------------
    def on_encrypted_extensions(self, ee: EncryptedExtensions, raw: bytes) -> None:
        ctx = self.ctx
        self._check_offered_extensions(ee.extension_types(), "EncryptedExtensions")
        if ee.quic_transport_parameters is None:
            raise alert(AlertDescription.missing_extension, "no quic_transport_parameters")
        offered = self._offered().alpn_protocols or ()
        if ee.alpn_protocol is not None:
            if ee.alpn_protocol not in offered:
                # RFC 9001 §8.1: an incompatible protocol is error 0x0178.
                raise alert(
                    AlertDescription.no_application_protocol, "server chose an ALPN not offered"
                )
            ctx.alpn_protocol = ee.alpn_protocol.decode("utf-8", "replace")
        elif offered:
            # RFC 9001 §8.1: clients MUST use 0x0178 when ALPN negotiation fails.
            raise alert(AlertDescription.no_application_protocol, "server selected no ALPN")
        if ee.early_data:
            # RFC 9846 §4.3.10: only with our PSK and its ALPN protocol
            ticket = self.ticket
            if (
                not ctx.session_resumed
                or ticket is None
                or ticket.alpn_protocol != ctx.alpn_protocol
            ):
                raise alert(AlertDescription.illegal_parameter, "early_data accepted wrongly")
            ctx.early_data_accepted = True
        ctx.peer_transport_parameters = ee.quic_transport_parameters
        ctx.transcript.add(raw)
        # a resumed handshake has no Certificate or CertificateVerify (§2.2)
        self.state = ClientState.WAIT_FINISHED if ctx.session_resumed else ClientState.WAIT_CERT_CR

    def on_certificate_request(self, cr: CertificateRequest, raw: bytes) -> None:
        if cr.certificate_request_context:
            # RFC 9846 §4.4.2: zero length outside post-handshake authentication.
            raise alert(AlertDescription.illegal_parameter, "non-empty request context")
        if cr.signature_algorithms is None:
            raise alert(AlertDescription.missing_extension, "CertificateRequest lacks sig algs")
        self.client_auth_context = cr.certificate_request_context
        self.ctx.transcript.add(raw)
        self.state = ClientState.WAIT_CERT

    # -- server authentication -------------------------------------------------------
    def on_certificate(self, cert: Certificate, raw: bytes) -> None:
        ctx, config = self.ctx, self.ctx.config
        if cert.certificate_request_context:
            raise alert(AlertDescription.illegal_parameter, "server certificate context not empty")
        if not cert.certificate_list:
            # RFC 9846 §4.5.1.3: an empty server Certificate is a decode_error.
            raise alert(AlertDescription.decode_error, "server sent no certificate")
        for entry in cert.certificate_list:
            self._check_offered_extensions(
                frozenset(t for t, _ in entry.extensions), "CertificateEntry"
            )
        chain = [entry.cert_data for entry in cert.certificate_list]
        ctx.peer_certificate = verify_server_certificate(
            chain, config.server_name, ctx.now(), config.verify
        )
        ctx.transcript.add(raw)
        self.state = ClientState.WAIT_CV

    def on_certificate_verify(self, cv: CertificateVerify, raw: bytes) -> None:
        ctx = self.ctx
        if cv.algorithm not in ctx.config.signature_algorithms:
            # RFC 9846 §4.5.2: the algorithm MUST be one the client offered.
            raise alert(AlertDescription.illegal_parameter, "signature scheme was not offered")
        assert ctx.peer_certificate is not None
        content = certificate_verify_input(True, ctx.transcript.digest())
        verify_with_certificate(ctx.peer_certificate, cv.algorithm, cv.signature, content)
        ctx.signature_scheme = SignatureScheme(cv.algorithm)
        ctx.transcript.add(raw)
        self.state = ClientState.WAIT_FINISHED

    def on_finished(self, fin: Finished, raw: bytes) -> None:
        ctx = self.ctx
        ctx.check_finished(ctx.server_handshake_secret, fin.verify_data)
        ctx.transcript.add(raw)
        ctx.derive_application_secrets()
        if self.client_auth_context is not None:
            # RFC 9846 §4.5.1: no suitable certificate -> an empty Certificate.
            ctx.send_and_hash(Epoch.HANDSHAKE, Certificate(self.client_auth_context, ()))
        client_finished = Finished(ctx.finished_data(ctx.client_handshake_secret))
        ctx.send_and_hash(Epoch.HANDSHAKE, client_finished)
        ctx.resumption_secret = ctx.schedule.resumption_secret(ctx.transcript.digest())
        ctx.set_recv_epoch(Epoch.ONE_RTT)
        ctx.install(Epoch.ONE_RTT, False, ctx.server_application_secret)
        ctx.install(Epoch.ONE_RTT, True, ctx.client_application_secret)
        # RFC 9001 §4.1.1: Finished sent and the peer's verified.
        ctx.handshake_complete = True
        self.state = ClientState.CONNECTED

    # -- post-handshake --------------------------------------------------------------
    def on_new_session_ticket(self, nst: NewSessionTicket, raw: bytes) -> None:
        del raw
        if nst.max_early_data_size is not None and nst.max_early_data_size != QUIC_MAX_EARLY_DATA:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "NewSessionTicket max_early_data_size is not 0xffffffff (RFC 9001 §4.6.1)",
            )
        self.new_session_tickets.append(nst)  # the latest few, for inspection
        ctx, handler = self.ctx, self.ctx.config.session_ticket_handler
        if handler is None or ctx.config.clock is None:
            return  # clients not resuming ignore tickets (§4.7.1)
        assert ctx.resumption_secret is not None
        ticket = ticket_from_message(
            nst,
            ctx.config,
            ctx.suite,
            ctx.resumption_secret,
            ctx.alpn_protocol,
            ctx.peer_transport_parameters or b"",
            ctx.now(),
        )
        if ticket is not None:
            handler(ticket)

    def unexpected(self, msg_type: int) -> None:
        if self.state is ClientState.CONNECTED and msg_type == HandshakeType.certificate_request:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "post-handshake CertificateRequest (RFC 9001 §4.4)",
            )


_T = HandshakeType
ClientRole.TRANSITIONS = {
    ClientState.WAIT_SH: {_T.server_hello: ClientRole.on_server_hello},
    ClientState.WAIT_EE: {_T.encrypted_extensions: ClientRole.on_encrypted_extensions},
    ClientState.WAIT_CERT_CR: {
        _T.certificate: ClientRole.on_certificate,
        _T.certificate_request: ClientRole.on_certificate_request,
    },
    ClientState.WAIT_CERT: {_T.certificate: ClientRole.on_certificate},
    ClientState.WAIT_CV: {_T.certificate_verify: ClientRole.on_certificate_verify},
    ClientState.WAIT_FINISHED: {_T.finished: ClientRole.on_finished},
    ClientState.CONNECTED: {_T.new_session_ticket: ClientRole.on_new_session_ticket},
}
del _T
