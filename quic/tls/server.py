"""TLS 1.3 server handshake for QUIC (RFC 9846 §4, Appendix A.2; RFC 9001 §4, §8).

Theory of operation
-------------------
States follow RFC 9846 Appendix A.2 (no client authentication)::

    WAIT_CH --CH: no usable key share--> send HRR, WAIT_CH2 --CH2--> ...
    WAIT_CH --CH--> send SH (INITIAL), EE, [Certificate, CertificateVerify,] Finished
                    (HANDSHAKE) --> WAIT_FINISHED --client Finished--> CONNECTED

Negotiation (RFC 9846 §4.2.1), all by server preference among what the client offers:
the cipher suite; the group -- the first of our groups for which the client sent a key
share, else (if a group is mutually supported) a HelloRetryRequest for our most
preferred common group, else ``handshake_failure``; the signature scheme
(:func:`quic.tls.signatures.choose_scheme`); the ALPN protocol -- the first of ours the
client offered, else ``no_application_protocol`` (RFC 9001 §8.1).

Resumption (:mod:`quic.tls.psk`): with ``ticket_keys`` configured, the first PSK
identity of a ClientHello is opened as one of our tickets; if usable, its cipher suite
is chosen, its binder must verify (else ``decrypt_error``), the ServerHello selects it
and the Certificate and CertificateVerify are left out (psk_dhe_ke: the key exchange
still runs). 0-RTT is accepted on the first ClientHello only, when every rule of
:func:`quic.tls.psk.early_data_refusal` passes: EncryptedExtensions then carries
early_data and the 0-RTT read secret is released. After the client Finished one
NewSessionTicket is sent (ONE_RTT).

Secrets (RFC 9001 §4.1.4): [ZERO_RTT read,] after the ServerHello, HANDSHAKE
read+write; after sending its Finished, ONE_RTT write (0.5-RTT data is possible);
ONE_RTT read only once the client Finished has been verified, so no 1-RTT data from an
unauthenticated handshake is ever decrypted. The legacy_session_id is echoed as sent
(RFC 9846 §4.2.3).
"""

from __future__ import annotations

import os
from enum import Enum, auto
from functools import lru_cache
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from quic.tls.alerts import AlertDescription
from quic.tls.extensions import KeyShareEntry
from quic.tls.groups import NamedGroup, server_key_exchange
from quic.tls.handshake import Epoch, HandshakeContext, Role, alert
from quic.tls.messages import (
    TLS12,
    TLS13,
    Certificate,
    CertificateEntry,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Finished,
    HandshakeType,
    HelloRetryRequest,
    ServerHello,
)
from quic.tls.psk import check_binder, early_data_refusal, issue_ticket, open_ticket
from quic.tls.signatures import certificate_verify_input, choose_scheme, sign
from quic.tls.suites import SUITE_HASH, CipherSuite
from quic.tls.tickets import TicketState

__all__ = ["ServerRole", "ServerState"]

#: ClientHello fields a second ClientHello must repeat unchanged (RFC 9846 §4.2.2).
_CH2_SAME_FIELDS = (
    "random",
    "legacy_version",
    "legacy_session_id",
    "cipher_suites",
    "legacy_compression_methods",
    "server_name",
    "supported_versions",
    "supported_groups",
    "signature_algorithms",
    "signature_algorithms_cert",
    "alpn_protocols",
    "psk_key_exchange_modes",
    "quic_transport_parameters",
)


class ServerState(Enum):
    WAIT_CH = auto()
    WAIT_CH2 = auto()
    WAIT_FINISHED = auto()
    CONNECTED = auto()


class ServerRole(Role):
    """The server side of the handshake (see module docstring)."""

    __slots__ = ("client_hello", "hrr", "requested_server_name")

    TRANSITIONS: ClassVar[dict[Any, dict[int, Any]]] = {}

    def __init__(self, ctx: HandshakeContext) -> None:
        super().__init__(ctx, ServerState.WAIT_CH)
        self.client_hello: ClientHello | None = None
        self.hrr: HelloRetryRequest | None = None
        #: The SNI host_name the client asked for, if any.
        self.requested_server_name: str | None = None

    # -- ClientHello validation ------------------------------------------------------
    def _check_client_hello(self, ch: ClientHello) -> None:
        """Version and mandatory-extension rules (RFC 9846 §4.2.2, §4.3.1, §9.2)."""
        if ch.supported_versions is None or TLS13 not in ch.supported_versions:
            raise alert(AlertDescription.protocol_version, "client does not offer TLS 1.3")
        if ch.legacy_version != TLS12:
            raise alert(AlertDescription.protocol_version, "legacy_version is not 0x0303")
        if ch.legacy_compression_methods != b"\x00":
            raise alert(AlertDescription.illegal_parameter, "compression methods must be [0]")
        if ch.quic_transport_parameters is None:
            # RFC 9001 §8.2: error 0x016d.
            raise alert(AlertDescription.missing_extension, "no quic_transport_parameters")
        # §9.2: a certificate handshake needs signature_algorithms and supported_groups;
        # supported_groups and key_share come together.
        if ch.signature_algorithms is None:
            raise alert(AlertDescription.missing_extension, "no signature_algorithms")
        if ch.supported_groups is None or ch.key_share is None:
            raise alert(AlertDescription.missing_extension, "no supported_groups/key_share")
        if ch.pre_shared_key is not None and ch.psk_key_exchange_modes is None:
            raise alert(AlertDescription.missing_extension, "pre_shared_key without modes")
        seen: set[int] = set()
        for entry in ch.key_share:
            # §4.3.8: one share per group, each for a group in supported_groups.
            if entry.group in seen or entry.group not in ch.supported_groups:
                raise alert(AlertDescription.illegal_parameter, "bad key_share entries")
            seen.add(entry.group)

    def _check_second_client_hello(self, ch: ClientHello) -> None:
        """The CH after our HRR: same ClientHello, one share for our group (§4.2.2)."""
        first, hrr = self.client_hello, self.hrr
        assert first is not None and hrr is not None
        for name in _CH2_SAME_FIELDS:
            if getattr(ch, name) != getattr(first, name):
                raise alert(
                    AlertDescription.illegal_parameter, f"second ClientHello changed {name}"
                )
        if ch.early_data or ch.cookie is not None:
            raise alert(AlertDescription.illegal_parameter, "bad early_data/cookie in CH2")
        key_share = ch.key_share or ()
        if len(key_share) != 1 or key_share[0].group != hrr.selected_group:
            raise alert(AlertDescription.illegal_parameter, "CH2 key_share is not for our group")

    # -- negotiation -----------------------------------------------------------------
    def _choose_suite(self, ch: ClientHello) -> CipherSuite:
        for suite in self.ctx.config.cipher_suites:
            if suite in ch.cipher_suites:
                return suite
        raise alert(AlertDescription.handshake_failure, "no common cipher suite")

    def _choose_alpn(self, ch: ClientHello) -> str | None:
        ours = self.ctx.config.alpn_protocols
        if not ours:
            return None
        offered = ch.alpn_protocols or ()
        for protocol in ours:
            if protocol.encode() in offered:
                return protocol
        # RFC 9001 §8.1: no application protocol negotiated -> 0x0178.
        raise alert(AlertDescription.no_application_protocol, "no common ALPN protocol")

    def _choose_group(self, ch: ClientHello) -> tuple[NamedGroup, KeyShareEntry | None]:
        """Our first group with a client share; else our first common group (-> HRR)."""
        shares = {entry.group: entry for entry in ch.key_share or ()}
        offered = ch.supported_groups or ()
        common = [g for g in self.ctx.config.groups if g in offered]
        if not common:
            # RFC 9846 §4.2.1: no overlap -> handshake_failure.
            raise alert(AlertDescription.handshake_failure, "no common key exchange group")
        for group in common:
            if group in shares:
                return group, shares[group]
        return common[0], None

    # -- ClientHello -----------------------------------------------------------------
    def on_client_hello(self, ch: ClientHello, raw: bytes) -> None:
        ctx = self.ctx
        self._check_client_hello(ch)
        second = self.state is ServerState.WAIT_CH2
        if second:
            self._check_second_client_hello(ch)
        ticket = open_ticket(ctx.config, ch, ctx.now())
        if ticket is not None and (self.hrr is None or ticket.suite == self.hrr.cipher_suite):
            suite = ticket.suite  # RFC 9846 §4.2.11: a suite of the PSK's hash
        else:
            ticket = None
            suite = self._choose_suite(ch)
        if second and self.hrr is not None and suite != self.hrr.cipher_suite:
            raise alert(AlertDescription.illegal_parameter, "cipher suite changed after HRR")
        alpn = self._choose_alpn(ch)
        group, share = self._choose_group(ch)
        if share is None:
            if second:  # pragma: no cover - _check_second_client_hello guarantees a share
                raise alert(AlertDescription.illegal_parameter, "no share after HRR")
            self._send_hello_retry_request(ch, raw, suite, group)
            return
        server_share, shared_secret = server_key_exchange(group, share.key_exchange)
        ctx.cipher_suite = suite
        ctx.group = group
        ctx.alpn_protocol = alpn
        ctx.peer_transport_parameters = ch.quic_transport_parameters
        hook = ctx.on_client_transport_parameters
        if hook is not None and ch.quic_transport_parameters is not None:
            hook(ch.quic_transport_parameters)  # may set ctx.transport_parameters
        ctx.client_random = ch.random
        self.requested_server_name = ch.server_name
        self.client_hello = ch
        if ticket is not None:
            check_binder(ticket, suite, ctx.transcript, ch, raw)  # before the CH joins it
            ctx.psk = ticket.psk
            ctx.session_resumed = True
        ctx.transcript.add(raw)
        ctx.transcript.set_hash(SUITE_HASH[suite])
        self._decide_early_data(ch, ticket, suite, alpn, second)
        self._send_server_hello(ch, suite, KeyShareEntry(group, server_share))
        ctx.derive_handshake_secrets(shared_secret)
        ctx.install(Epoch.HANDSHAKE, False, ctx.client_handshake_secret)
        ctx.install(Epoch.HANDSHAKE, True, ctx.server_handshake_secret)
        ctx.set_recv_epoch(Epoch.HANDSHAKE)
        self._send_server_flight(ch, alpn)
        ctx.derive_application_secrets()
        ctx.install(Epoch.ONE_RTT, True, ctx.server_application_secret)
        self.state = ServerState.WAIT_FINISHED

    def _decide_early_data(
        self,
        ch: ClientHello,
        ticket: TicketState | None,
        suite: CipherSuite,
        alpn: str | None,
        second: bool,
    ) -> None:
        """Accept 0-RTT or say why not (RFC 9846 §4.3.10; :mod:`quic.tls.psk`)."""
        ctx = self.ctx
        if ticket is None:
            ctx.early_data_refusal = "no usable ticket" if ch.early_data else None
            return
        refusal = (
            "hello retry" if second else early_data_refusal(ctx.config, ch, ticket, alpn, ctx.now())
        )
        ctx.early_data_refusal = refusal
        if refusal is None:
            ctx.early_data_accepted = True
            ctx.derive_early_secret(suite, ticket.psk, False)  # before the ServerHello

    def _send_hello_retry_request(
        self, ch: ClientHello, raw: bytes, suite: CipherSuite, group: NamedGroup
    ) -> None:
        """RFC 9846 §4.2.4; the transcript restarts with message_hash (§4.1)."""
        ctx = self.ctx
        self.hrr = HelloRetryRequest(
            cipher_suite=suite,
            legacy_session_id_echo=ch.legacy_session_id,
            supported_version=TLS13,
            selected_group=group,
        )
        self.client_hello = ch
        ctx.cipher_suite = suite
        ctx.transcript.add(raw)
        ctx.transcript.restart_after_hrr(SUITE_HASH[suite])
        ctx.send_and_hash(Epoch.INITIAL, self.hrr)
        ctx.hello_retry_request_sent = True
        self.state = ServerState.WAIT_CH2

    def _send_server_hello(self, ch: ClientHello, suite: CipherSuite, share: KeyShareEntry) -> None:
        server_hello = ServerHello(
            random=os.urandom(32),
            cipher_suite=suite,
            legacy_session_id_echo=ch.legacy_session_id,
            supported_version=TLS13,
            key_share=share,
            pre_shared_key=0 if self.ctx.session_resumed else None,
        )
        self.ctx.send_and_hash(Epoch.INITIAL, server_hello)

    def _send_server_flight(self, ch: ClientHello, alpn: str | None) -> None:
        """EncryptedExtensions, Certificate, CertificateVerify, Finished (RFC 9846 §4.4-4.5)."""
        ctx = self.ctx
        ee = EncryptedExtensions(
            alpn_protocol=alpn.encode() if alpn is not None else None,
            early_data=ctx.early_data_accepted,
            quic_transport_parameters=ctx.transport_parameters,
        )
        ctx.send_and_hash(Epoch.HANDSHAKE, ee)
        if not ctx.session_resumed:
            self._send_certificate(ch)
        ctx.send_and_hash(Epoch.HANDSHAKE, Finished(ctx.finished_data(ctx.server_handshake_secret)))

    def _send_certificate(self, ch: ClientHello) -> None:
        """Certificate and CertificateVerify (RFC 9846 §4.5.1, §4.5.2)."""
        ctx, config = self.ctx, self.ctx.config
        chain = _chain_der(tuple(config.certificate_chain))
        entries = tuple(CertificateEntry(der) for der in chain)
        ctx.send_and_hash(Epoch.HANDSHAKE, Certificate(b"", entries))
        key = config.private_key
        assert key is not None and ch.signature_algorithms is not None
        scheme = choose_scheme(key, ch.signature_algorithms)
        content = certificate_verify_input(True, ctx.transcript.digest())
        ctx.send_and_hash(Epoch.HANDSHAKE, CertificateVerify(scheme, sign(key, scheme, content)))
        ctx.signature_scheme = scheme

    # -- client Finished -------------------------------------------------------------
    def on_finished(self, fin: Finished, raw: bytes) -> None:
        ctx = self.ctx
        ctx.check_finished(ctx.client_handshake_secret, fin.verify_data)
        ctx.transcript.add(raw)
        ctx.resumption_secret = ctx.schedule.resumption_secret(ctx.transcript.digest())
        ctx.set_recv_epoch(Epoch.ONE_RTT)
        ctx.install(Epoch.ONE_RTT, False, ctx.client_application_secret)
        # RFC 9001 §4.1.1-4.1.2: complete (and confirmed) once the client Finished verifies.
        ctx.handshake_complete = True
        self.state = ServerState.CONNECTED
        ticket = issue_ticket(
            ctx.config,
            ctx.suite,
            ctx.resumption_secret,
            ctx.alpn_protocol,
            self.requested_server_name,
            ctx.transport_parameters,
            ctx.now(),
        )
        if ticket is not None:
            ctx.send(Epoch.ONE_RTT, ticket)  # RFC 9846 §4.7.1, RFC 9001 §4.5
        # RFC 9001 §4.1.2: the server's handshake is confirmed here; what only the
        # handshake needed goes (memory per idle connection): the ClientHello (its key
        # shares), the HelloRetryRequest, the INITIAL/HANDSHAKE readers and secrets
        self.client_hello = None
        self.hrr = None
        ctx.release_handshake_state()


@lru_cache(maxsize=16)
def _chain_der(chain: tuple[x509.Certificate, ...]) -> tuple[bytes, ...]:
    """The DER of a certificate chain, encoded once per chain (a server sends the same
    chain in every full handshake; certificates hash and compare by their encoding)."""
    return tuple(c.public_bytes(Encoding.DER) for c in chain)


_T = HandshakeType
ServerRole.TRANSITIONS = {
    ServerState.WAIT_CH: {_T.client_hello: ServerRole.on_client_hello},
    ServerState.WAIT_CH2: {_T.client_hello: ServerRole.on_client_hello},
    ServerState.WAIT_FINISHED: {_T.finished: ServerRole.on_finished},
    ServerState.CONNECTED: {},
}
del _T
