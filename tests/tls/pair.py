"""In-memory driver for TLS engine tests: a client and a server wired back to back.

Not a test module. :func:`run_handshake` pumps handshake bytes between two
:class:`~quic.tls.engine.TlsEngine` objects until both are quiet, recording every
secret each side installs; an optional ``tamper`` hook may rewrite bytes in flight.
Certificates are generated once per key type (RSA generation is slow) at the fixed
time :data:`NOW`, which is also the clock both engines see.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from quic.tls.config import TlsConfig
from quic.tls.engine import Epoch, SecretAvailable, TlsEngine
from quic.tls.groups import NamedGroup
from quic.tls.selfsigned import SelfSignedCertificate, generate_ca_and_leaf, generate_self_signed
from quic.tls.verify import VerifyOptions

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
CLIENT_TP = b"\x01\x02client-transport-parameters"
SERVER_TP = b"\x03\x04server-transport-parameters"

#: tamper(sender_is_client, epoch, data) -> data actually delivered
Tamper = Callable[[bool, Epoch, bytes], bytes]


def clock() -> datetime:
    return NOW


@functools.cache
def self_signed(key_type: str = "ec-p256") -> SelfSignedCertificate:
    return generate_self_signed(NOW, key_type=key_type)


@functools.cache
def ca_and_leaf(key_type: str = "ec-p256") -> tuple[SelfSignedCertificate, SelfSignedCertificate]:
    return generate_ca_and_leaf(NOW, key_type=key_type)


def server_config(cert: SelfSignedCertificate | None = None, **overrides: object) -> TlsConfig:
    cert = cert or self_signed()
    config = TlsConfig(is_client=False, alpn_protocols=["h3"], clock=clock)
    config.load_cert_chain_pem(cert.certificate_pem, cert.private_key_pem)
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def client_config(
    pin: SelfSignedCertificate | None = None,
    cadata: bytes | None = None,
    **overrides: object,
) -> TlsConfig:
    if cadata is not None:
        options = VerifyOptions(cadata=cadata)
    else:
        options = VerifyOptions(certificate_hashes=((pin or self_signed()).sha256,))
    config = TlsConfig(
        is_client=True,
        alpn_protocols=["h3"],
        server_name="localhost",
        verify=options,
        clock=clock,
    )
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


@dataclass
class HandshakeResult:
    client: TlsEngine
    server: TlsEngine
    client_secrets: list[SecretAvailable] = field(default_factory=list)
    server_secrets: list[SecretAvailable] = field(default_factory=list)
    flights: list[tuple[bool, Epoch, bytes]] = field(default_factory=list)

    def secret(self, is_client: bool, epoch: Epoch, is_write: bool) -> bytes:
        secrets = self.client_secrets if is_client else self.server_secrets
        found = [s.secret for s in secrets if s.epoch == epoch and s.is_write == is_write]
        assert len(found) == 1, (is_client, epoch, is_write, found)
        return found[0]


def pump(result: HandshakeResult, tamper: Tamper | None = None, max_rounds: int = 20) -> None:
    """Move bytes both ways until neither side has anything to send."""
    for _ in range(max_rounds):
        moved = False
        for sender, receiver, is_client in (
            (result.client, result.server, True),
            (result.server, result.client, False),
        ):
            secrets = result.client_secrets if is_client else result.server_secrets
            secrets.extend(sender.pop_secrets())
            for epoch, data in sender.pop_output():
                moved = True
                result.flights.append((is_client, epoch, data))
                if tamper is not None:
                    data = tamper(is_client, epoch, data)
                receiver.receive(epoch, data)
            other = result.server_secrets if is_client else result.client_secrets
            other.extend(receiver.pop_secrets())
        if not moved:
            return
    raise AssertionError("handshake did not settle")


def run_handshake(
    client_cfg: TlsConfig | None = None,
    server_cfg: TlsConfig | None = None,
    tamper: Tamper | None = None,
) -> HandshakeResult:
    client = TlsEngine(client_cfg or client_config(), CLIENT_TP)
    server = TlsEngine(server_cfg or server_config(), SERVER_TP)
    result = HandshakeResult(client, server)
    client.start()
    pump(result, tamper)
    return result


def hrr_client_groups(target: NamedGroup) -> tuple[NamedGroup, ...]:
    """key_share_groups that make a server accepting only ``target`` send an HRR."""
    return (NamedGroup.secp256r1,) if target == NamedGroup.x25519 else (NamedGroup.x25519,)
