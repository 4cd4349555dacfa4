"""In-memory client/server handshakes: the full matrix and engine behaviour.

Matrix: every group x every cipher suite x every server signature setup, with and
without HelloRetryRequest. HRR is forced by having the client send a key share only for
a group the server does not accept (RFC 9846 §4.2.4). Non-RSA certificates are
verified by hash pinning when there is no HRR and through a CA (``cadata``) with HRR;
RSA certificates always go through a CA because pinning forbids RSA keys.
"""

from __future__ import annotations

from typing import Any

import pytest

from quic.errors import QuicProtocolError
from quic.tls.config import TlsConfig
from quic.tls.engine import Epoch, TlsEngine
from quic.tls.groups import NamedGroup
from quic.tls.handshake import HandshakeContext
from quic.tls.keylog import KeyLogFile, KeyLogLabel
from quic.tls.messages import (
    CertificateRequest,
    ClientHello,
    EncryptedExtensions,
    HandshakeMessage,
    HandshakeReader,
    HandshakeType,
    NewSessionTicket,
    decode_handshake,
    decode_message,
    encode_handshake,
)
from quic.tls.server import ServerRole, ServerState
from quic.tls.signatures import SignatureScheme
from quic.tls.suites import CipherSuite
from tests.tls.pair import (
    CLIENT_TP,
    SERVER_TP,
    HandshakeResult,
    ca_and_leaf,
    client_config,
    hrr_client_groups,
    pump,
    run_handshake,
    self_signed,
    server_config,
)

S = SignatureScheme
SIGNATURE_SETUPS: dict[str, tuple[str, SignatureScheme]] = {
    "ecdsa-p256": ("ec-p256", S.ecdsa_secp256r1_sha256),
    "ecdsa-p384": ("ec-p384", S.ecdsa_secp384r1_sha384),
    "rsa-pss-sha256": ("rsa2048", S.rsa_pss_rsae_sha256),
    "rsa-pss-sha384": ("rsa2048", S.rsa_pss_rsae_sha384),
    "rsa-pss-sha512": ("rsa2048", S.rsa_pss_rsae_sha512),
    "ed25519": ("ed25519", S.ed25519),
}


def split_messages(data: bytes) -> list[HandshakeMessage]:
    reader = HandshakeReader()
    reader.feed(data)
    out: list[HandshakeMessage] = []
    while (item := reader.next_message()) is not None:
        out.append(decode_message(item[0], item[1]))
    return out


def assert_agreement(result: HandshakeResult) -> None:
    client, server = result.client, result.server
    assert client.handshake_complete and server.handshake_complete
    for epoch in (Epoch.HANDSHAKE, Epoch.ONE_RTT):
        assert result.secret(True, epoch, True) == result.secret(False, epoch, False)
        assert result.secret(True, epoch, False) == result.secret(False, epoch, True)
        assert result.secret(True, epoch, True) != result.secret(True, epoch, False)
    for label, context in ((b"EXPORTER-WebTransport", b""), (b"test", b"ctx")):
        assert client.export_keying_material(label, context, 32) == (
            server.export_keying_material(label, context, 32)
        )
    assert client.alpn_protocol == server.alpn_protocol == "h3"
    assert client.peer_transport_parameters == SERVER_TP
    assert server.peer_transport_parameters == CLIENT_TP
    assert client.cipher_suite == server.cipher_suite
    assert client.group == server.group
    assert client.signature_scheme == server.signature_scheme
    assert not client.session_resumed and not server.session_resumed


@pytest.mark.parametrize("hrr", [False, True], ids=["1rtt", "hrr"])
@pytest.mark.parametrize("setup", list(SIGNATURE_SETUPS))
@pytest.mark.parametrize("suite", list(CipherSuite), ids=lambda s: s.name)
@pytest.mark.parametrize("group", list(NamedGroup), ids=lambda g: g.name)
def test_handshake_matrix(group: NamedGroup, suite: CipherSuite, setup: str, hrr: bool) -> None:
    key_type, scheme = SIGNATURE_SETUPS[setup]
    if key_type == "rsa2048" or hrr:
        ca, leaf = ca_and_leaf(key_type)
        server_cfg = server_config(leaf)
        client_cfg = client_config(cadata=ca.certificate_pem)
    else:
        cert = self_signed(key_type)
        server_cfg = server_config(cert)
        client_cfg = client_config(pin=cert)
    server_cfg.groups = (group,)
    server_cfg.cipher_suites = (suite,)
    if key_type == "rsa2048":
        client_cfg.signature_algorithms = (scheme,)
    client_cfg.key_share_groups = hrr_client_groups(group) if hrr else (group,)

    result = run_handshake(client_cfg, server_cfg)

    assert_agreement(result)
    assert result.client.group == group
    assert result.client.cipher_suite == suite
    assert result.client.signature_scheme == scheme
    assert result.client.hello_retry_request_received is hrr
    assert result.server.hello_retry_request_sent is hrr
    assert result.client.peer_certificate is not None
    initial_flights = [f for f in result.flights if f[1] == Epoch.INITIAL]
    assert len(initial_flights) == (4 if hrr else 2)  # CH, [HRR, CH2,] SH


def test_default_configuration_uses_hybrid_group() -> None:
    result = run_handshake()
    assert_agreement(result)
    assert result.client.group == NamedGroup.X25519MLKEM768
    assert result.client.cipher_suite == CipherSuite.TLS_AES_128_GCM_SHA256
    assert result.client.signature_scheme == S.ecdsa_secp256r1_sha256
    ch = decode_handshake(result.flights[0][2])
    assert isinstance(ch, ClientHello)
    assert ch.key_share is not None
    assert [e.group for e in ch.key_share] == [NamedGroup.X25519MLKEM768, NamedGroup.x25519]
    # draft-ietf-tls-hybrid-design §3.2: one X25519 key serves both shares
    assert ch.key_share[0].key_exchange[-32:] == ch.key_share[1].key_exchange
    assert ch.legacy_session_id == b""
    assert ch.supported_versions == (0x0304,)
    assert ch.server_name == "localhost"
    assert ch.quic_transport_parameters == CLIENT_TP


def test_server_picking_x25519_from_a_reused_key_share() -> None:
    """A server that takes the standalone x25519 share of a client whose hybrid share
    carries the same X25519 key completes the handshake (the key is used once)."""
    result = run_handshake(server_cfg=server_config(groups=(NamedGroup.x25519,)))
    assert_agreement(result)
    assert result.client.group == NamedGroup.x25519
    ch = decode_handshake(result.flights[0][2])
    assert isinstance(ch, ClientHello) and ch.key_share is not None
    assert ch.key_share[0].key_exchange[-32:] == ch.key_share[1].key_exchange


def test_secret_and_output_order() -> None:
    result = run_handshake()
    client_order = [(s.epoch, s.is_write) for s in result.client_secrets]
    server_order = [(s.epoch, s.is_write) for s in result.server_secrets]
    assert client_order == [
        (Epoch.HANDSHAKE, False),
        (Epoch.HANDSHAKE, True),
        (Epoch.ONE_RTT, False),
        (Epoch.ONE_RTT, True),
    ]
    # The server reads 1-RTT only after verifying the client Finished.
    assert server_order == [
        (Epoch.HANDSHAKE, False),
        (Epoch.HANDSHAKE, True),
        (Epoch.ONE_RTT, True),
        (Epoch.ONE_RTT, False),
    ]
    assert all(s.cipher_suite == result.client.cipher_suite for s in result.client_secrets)
    senders = [(is_client, epoch) for is_client, epoch, _ in result.flights]
    assert senders == [
        (True, Epoch.INITIAL),
        (False, Epoch.INITIAL),
        (False, Epoch.HANDSHAKE),
        (True, Epoch.HANDSHAKE),
    ]
    server_flight = split_messages(result.flights[2][2])
    assert [m.msg_type for m in server_flight] == [
        HandshakeType.encrypted_extensions,
        HandshakeType.certificate,
        HandshakeType.certificate_verify,
        HandshakeType.finished,
    ]


def test_server_state_after_its_flight() -> None:
    client = TlsEngine(client_config(), CLIENT_TP)
    server = TlsEngine(server_config(), SERVER_TP)
    client.start()
    ((epoch, ch),) = client.pop_output()
    server.receive(epoch, ch)
    assert server.state == "WAIT_FINISHED"
    assert not server.handshake_complete
    # The exporter is usable once the server Finished is sent (0.5-RTT).
    assert len(server.export_keying_material(b"x", b"", 16)) == 16
    with pytest.raises(RuntimeError):
        client.export_keying_material(b"x", b"", 16)
    assert server.requested_server_name == "localhost"


def test_byte_by_byte_delivery() -> None:
    client = TlsEngine(client_config(), CLIENT_TP)
    server = TlsEngine(server_config(), SERVER_TP)
    result = HandshakeResult(client, server)
    client.start()
    for sender, receiver in ((client, server), (server, client), (client, server)):
        for epoch, data in sender.pop_output():
            for i in range(len(data)):
                receiver.receive(epoch, data[i : i + 1])
        result.client_secrets.extend(client.pop_secrets())
        result.server_secrets.extend(server.pop_secrets())
    assert_agreement(result)


def test_keylog_lines(tmp_path: Any) -> None:
    client_lines: list[str] = []
    path = tmp_path / "keys.log"
    keylog_file = KeyLogFile(str(path))
    result = run_handshake(
        client_config(keylog=client_lines.append), server_config(keylog=keylog_file)
    )
    keylog_file.close()
    server_lines = path.read_text().splitlines(keepends=True)
    client_random = decode_handshake(result.flights[0][2])
    assert isinstance(client_random, ClientHello)
    by_label = {}
    for line in client_lines:
        assert line.endswith("\n")
        label, random_hex, secret_hex = line.split()
        assert random_hex == client_random.random.hex()
        by_label[label] = bytes.fromhex(secret_hex)
    assert set(by_label) == {
        KeyLogLabel.CLIENT_HANDSHAKE_TRAFFIC_SECRET,
        KeyLogLabel.SERVER_HANDSHAKE_TRAFFIC_SECRET,
        KeyLogLabel.CLIENT_TRAFFIC_SECRET_0,
        KeyLogLabel.SERVER_TRAFFIC_SECRET_0,
        KeyLogLabel.EXPORTER_SECRET,
    }
    assert sorted(server_lines) == sorted(client_lines)
    assert by_label["CLIENT_HANDSHAKE_TRAFFIC_SECRET"] == result.secret(True, Epoch.HANDSHAKE, True)
    assert by_label["SERVER_TRAFFIC_SECRET_0"] == result.secret(True, Epoch.ONE_RTT, False)


def test_alpn_server_preference_and_none() -> None:
    result = run_handshake(
        client_config(alpn_protocols=["h3-29", "h3"]),
        server_config(alpn_protocols=["h3", "h3-29"]),
    )
    assert result.client.alpn_protocol == result.server.alpn_protocol == "h3"
    result = run_handshake(client_config(alpn_protocols=[]), server_config(alpn_protocols=[]))
    assert result.client.handshake_complete
    assert result.client.alpn_protocol is None and result.server.alpn_protocol is None


def test_ip_address_server_name_is_not_sent_as_sni() -> None:
    ca, leaf = ca_and_leaf("ec-p256")
    result = run_handshake(
        client_config(cadata=ca.certificate_pem, server_name="127.0.0.1"), server_config(leaf)
    )
    assert result.client.handshake_complete
    ch = decode_handshake(result.flights[0][2])
    assert isinstance(ch, ClientHello) and ch.server_name is None
    assert result.server.requested_server_name is None


def test_verification_disabled_accepts_unpinned_certificate() -> None:
    from quic.tls.verify import VerifyOptions

    result = run_handshake(client_config(verify=VerifyOptions(verify=False), clock=None))
    assert result.client.handshake_complete
    assert result.client.peer_certificate is not None


def test_client_with_empty_key_share_gets_hrr() -> None:
    result = run_handshake(client_config(key_share_groups=()))
    assert result.client.hello_retry_request_received
    assert result.client.group == NamedGroup.X25519MLKEM768
    assert_agreement(result)


def test_new_session_ticket_is_accepted_after_handshake() -> None:
    result = run_handshake()
    ticket = NewSessionTicket(3600, 7, b"\x00", b"ticket", max_early_data_size=0xFFFFFFFF)
    result.client.receive(Epoch.ONE_RTT, encode_handshake(ticket))
    result.client.receive(Epoch.ONE_RTT, encode_handshake(NewSessionTicket(1, 2, b"", b"t")))
    assert result.client.new_session_tickets == [ticket, NewSessionTicket(1, 2, b"", b"t")]
    assert result.client.pop_output() == []


def test_new_session_ticket_bad_early_data_is_protocol_violation() -> None:
    result = run_handshake()
    ticket = NewSessionTicket(3600, 7, b"\x00", b"ticket", max_early_data_size=16384)
    with pytest.raises(QuicProtocolError) as exc:
        result.client.receive(Epoch.ONE_RTT, encode_handshake(ticket))
    assert exc.value.error_code == 0x0A


def test_post_handshake_certificate_request_is_protocol_violation() -> None:
    result = run_handshake()
    request = CertificateRequest(signature_algorithms=(0x0403,))
    with pytest.raises(QuicProtocolError) as exc:
        result.client.receive(Epoch.ONE_RTT, encode_handshake(request))
    assert exc.value.error_code == 0x0A


def test_client_answers_certificate_request_with_empty_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 9846 §4.5.1: no client certificate -> an empty Certificate, then Finished."""
    original_flight = ServerRole._send_server_flight
    received: list[HandshakeMessage] = []

    def flight_with_request(self: ServerRole, ch: ClientHello, alpn: str | None) -> None:
        ctx = self.ctx
        real_send = HandshakeContext.send_and_hash

        def send_and_hash(epoch: Epoch, message: HandshakeMessage) -> None:
            real_send(ctx, epoch, message)
            if isinstance(message, EncryptedExtensions):
                real_send(ctx, epoch, CertificateRequest(signature_algorithms=(0x0403,)))

        monkeypatch.setattr(ctx, "send_and_hash", send_and_hash)
        original_flight(self, ch, alpn)

    def on_certificate(self: ServerRole, message: HandshakeMessage, raw: bytes) -> None:
        received.append(message)
        self.ctx.transcript.add(raw)

    monkeypatch.setattr(ServerRole, "_send_server_flight", flight_with_request)
    monkeypatch.setitem(
        ServerRole.TRANSITIONS[ServerState.WAIT_FINISHED], HandshakeType.certificate, on_certificate
    )
    result = run_handshake()
    assert_agreement(result)
    assert len(received) == 1
    assert received[0] == decode_handshake(b"\x0b\x00\x00\x04\x00\x00\x00\x00")


def test_config_checks() -> None:
    with pytest.raises(ValueError):
        TlsEngine(TlsConfig(is_client=True), b"")  # verification needs a clock
    with pytest.raises(ValueError):
        TlsEngine(TlsConfig(is_client=False), b"")  # no certificate
    with pytest.raises(ValueError):
        TlsEngine(client_config(cipher_suites=()), b"")
    engine = TlsEngine(client_config(), b"")
    engine.start()
    with pytest.raises(RuntimeError):
        engine.start()


def test_load_cert_chain_from_files(tmp_path: Any) -> None:
    cert = self_signed("ed25519")
    cert.write(tmp_path / "cert.pem", tmp_path / "key.pem")
    config = TlsConfig(is_client=False, alpn_protocols=["h3"])
    config.load_cert_chain(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    result = run_handshake(client_config(pin=cert), config)
    assert_agreement(result)
    assert result.client.signature_scheme == S.ed25519


def test_pump_helper_detects_stuck_handshake() -> None:
    result = HandshakeResult(
        TlsEngine(client_config(), CLIENT_TP), TlsEngine(server_config(), SERVER_TP)
    )
    pump(result)  # nothing started: nothing moves
    assert not result.flights


# -- against an independent implementation ------------------------------------------------


def _aioquic_buffers() -> dict[Any, Any]:
    from aioquic import tls
    from aioquic.buffer import Buffer  # type: ignore[attr-defined]

    return {
        epoch: Buffer(capacity=65536)
        for epoch in (tls.Epoch.INITIAL, tls.Epoch.HANDSHAKE, tls.Epoch.ONE_RTT)
    }


def _drain_aioquic(buffers: dict[Any, Any]) -> list[tuple[Epoch, bytes]]:
    out = [(Epoch(epoch.value), buf.data) for epoch, buf in buffers.items() if buf.data]
    for buf in buffers.values():
        buf.seek(0)
    return out


def _same_secrets(ours: list[Any], theirs: list[tuple[Any, Any, bytes]]) -> None:
    from aioquic import tls

    by_key = {(s.epoch, s.is_write): s.secret for s in ours}
    assert len(theirs) == len(by_key) == 4
    for direction, epoch, secret in theirs:
        # Their ENCRYPT secret is our read secret and vice versa.
        assert by_key[(Epoch(epoch.value), direction == tls.Direction.DECRYPT)] == secret


@pytest.mark.interop
def test_aioquic_client_against_our_server() -> None:
    import ssl

    tls = pytest.importorskip("aioquic.tls")
    theirs: list[tuple[Any, Any, bytes]] = []
    client = tls.Context(
        is_client=True, alpn_protocols=["h3"], server_name="localhost", verify_mode=ssl.CERT_NONE
    )
    client.handshake_extensions = [(tls.ExtensionType.QUIC_TRANSPORT_PARAMETERS, b"aio-tp")]
    client.update_traffic_key_cb = lambda d, e, _cs, s: theirs.append((d, e, s))
    server = TlsEngine(server_config(), SERVER_TP)
    buffers = _aioquic_buffers()
    client.handle_message(b"", buffers)
    for _ in range(4):
        for epoch, data in _drain_aioquic(buffers):
            server.receive(epoch, data)
        for _epoch, data in server.pop_output():
            client.handle_message(data, buffers)
    assert server.handshake_complete
    assert client.state == tls.State.CLIENT_POST_HANDSHAKE
    assert server.alpn_protocol == "h3" and server.peer_transport_parameters == b"aio-tp"
    _same_secrets(server.pop_secrets(), theirs)


@pytest.mark.interop
def test_our_client_against_aioquic_server() -> None:
    tls = pytest.importorskip("aioquic.tls")
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    ca, leaf = ca_and_leaf("ec-p256")
    theirs: list[tuple[Any, Any, bytes]] = []
    server = tls.Context(is_client=False, alpn_protocols=["h3"])
    server.certificate = x509.load_pem_x509_certificate(leaf.certificate_pem)
    server.certificate_private_key = load_pem_private_key(leaf.private_key_pem, None)
    server.handshake_extensions = [(tls.ExtensionType.QUIC_TRANSPORT_PARAMETERS, b"aio-tp")]
    server.update_traffic_key_cb = lambda d, e, _cs, s: theirs.append((d, e, s))
    client = TlsEngine(client_config(cadata=ca.certificate_pem), CLIENT_TP)
    client.start()
    for _ in range(4):
        for _epoch, data in client.pop_output():
            buffers = _aioquic_buffers()
            server.handle_message(data, buffers)
            for epoch, reply in _drain_aioquic(buffers):
                client.receive(epoch, reply)
    assert client.handshake_complete
    assert server.state == tls.State.SERVER_POST_HANDSHAKE
    assert client.alpn_protocol == "h3" and client.peer_transport_parameters == b"aio-tp"
    _same_secrets(client.pop_secrets(), theirs)
