"""Handshake failures: every one must surface as the right TlsAlertError.

Messages are forged or rewritten in flight: there is no encryption at this layer (QUIC
packet protection is elsewhere), so a test can change any handshake byte.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from quic.errors import QuicProtocolError
from quic.tls.alerts import AlertDescription, TlsAlertError
from quic.tls.engine import Epoch, TlsEngine
from quic.tls.extensions import KeyShareEntry
from quic.tls.groups import NamedGroup, generate_key_share
from quic.tls.messages import (
    Certificate,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    EndOfEarlyData,
    Finished,
    HandshakeMessage,
    HandshakeReader,
    HelloRetryRequest,
    KeyUpdate,
    ServerHello,
    decode_handshake,
    decode_message,
    encode_handshake,
)
from tests.tls.pair import (
    CLIENT_TP,
    NOW,
    SERVER_TP,
    client_config,
    run_handshake,
    self_signed,
    server_config,
)

A = AlertDescription


def split(data: bytes) -> list[HandshakeMessage]:
    reader = HandshakeReader()
    reader.feed(data)
    out: list[HandshakeMessage] = []
    while (item := reader.next_message()) is not None:
        out.append(decode_message(item[0], item[1]))
    return out


def rewrite_server_flight(
    fn: Callable[[HandshakeMessage], HandshakeMessage | None],
) -> Callable[[bool, Epoch, bytes], bytes]:
    """A tamper hook applying ``fn`` to each message of the server's HANDSHAKE flight."""

    def tamper(from_client: bool, epoch: Epoch, data: bytes) -> bytes:
        if from_client or epoch != Epoch.HANDSHAKE:
            return data
        out = b""
        for message in split(data):
            new = fn(message)
            if new is not None:
                out += encode_handshake(new)
        return out

    return tamper


def expect_alert(alert: AlertDescription, **kwargs: object) -> TlsAlertError:
    with pytest.raises(TlsAlertError) as exc:
        run_handshake(**kwargs)  # type: ignore[arg-type]
    assert exc.value.alert == alert, exc.value
    return exc.value


def client_hello_bytes(**overrides: object) -> bytes:
    """A real ClientHello from our client, with fields replaced."""
    client = TlsEngine(client_config(), CLIENT_TP)
    client.start()
    ((_, raw),) = client.pop_output()
    ch = decode_handshake(raw)
    assert isinstance(ch, ClientHello)
    return encode_handshake(dataclasses.replace(ch, **overrides))  # type: ignore[arg-type]


def server_receives(data: bytes, **overrides: Any) -> TlsAlertError:
    server = TlsEngine(server_config(**overrides), SERVER_TP)
    with pytest.raises(TlsAlertError) as exc:
        server.receive(Epoch.INITIAL, data)
    return exc.value


def started_client(**overrides: Any) -> tuple[TlsEngine, ClientHello]:
    client = TlsEngine(client_config(**overrides), CLIENT_TP)
    client.start()
    ((_, raw),) = client.pop_output()
    ch = decode_handshake(raw)
    assert isinstance(ch, ClientHello)
    return client, ch


def client_receives(client: TlsEngine, epoch: Epoch, message: HandshakeMessage) -> TlsAlertError:
    with pytest.raises(TlsAlertError) as exc:
        client.receive(epoch, encode_handshake(message))
    return exc.value


def server_hello_for(ch: ClientHello, **overrides: object) -> ServerHello:
    """A ServerHello answering ``ch`` with a fresh x25519 share (valid unless overridden)."""
    share = generate_key_share(NamedGroup.x25519)
    fields: dict[str, object] = {
        "random": os.urandom(32),
        "cipher_suite": 0x1301,
        "legacy_session_id_echo": ch.legacy_session_id,
        "supported_version": 0x0304,
        "key_share": KeyShareEntry(NamedGroup.x25519, share.public),
    }
    fields.update(overrides)
    return ServerHello(**fields)  # type: ignore[arg-type]


# -- negotiation failures ----------------------------------------------------------------


def test_alpn_mismatch_is_no_application_protocol() -> None:
    error = expect_alert(
        A.no_application_protocol,
        client_cfg=client_config(alpn_protocols=["h3"]),
        server_cfg=server_config(alpn_protocols=["webtransport"]),
    )
    assert error.quic_error_code == 0x178


def test_client_without_alpn_against_server_requiring_it() -> None:
    expect_alert(A.no_application_protocol, client_cfg=client_config(alpn_protocols=[]))


def test_server_selecting_no_alpn_fails_at_client() -> None:
    error = expect_alert(A.no_application_protocol, server_cfg=server_config(alpn_protocols=[]))
    assert error.quic_error_code == 0x178


def test_server_selecting_unoffered_alpn_fails_at_client() -> None:
    def change(message: HandshakeMessage) -> HandshakeMessage:
        if isinstance(message, EncryptedExtensions):
            return dataclasses.replace(message, alpn_protocol=b"h2")
        return message

    expect_alert(A.no_application_protocol, tamper=rewrite_server_flight(change))


def test_no_common_group_is_handshake_failure() -> None:
    expect_alert(
        A.handshake_failure,
        client_cfg=client_config(
            groups=(NamedGroup.x25519,), key_share_groups=(NamedGroup.x25519,)
        ),
        server_cfg=server_config(groups=(NamedGroup.secp256r1,)),
    )


def test_no_common_cipher_suite_is_handshake_failure() -> None:
    from quic.tls.suites import CipherSuite

    expect_alert(
        A.handshake_failure,
        client_cfg=client_config(cipher_suites=(CipherSuite.TLS_AES_128_GCM_SHA256,)),
        server_cfg=server_config(cipher_suites=(CipherSuite.TLS_AES_256_GCM_SHA384,)),
    )


def test_no_common_signature_scheme_is_handshake_failure() -> None:
    from quic.tls.signatures import SignatureScheme

    expect_alert(
        A.handshake_failure,
        client_cfg=client_config(signature_algorithms=(SignatureScheme.ed25519,)),
    )


@pytest.mark.parametrize("versions", [(0x0303,), (0x0303, 0x0302), None])
def test_client_offering_only_tls12_is_protocol_version(
    versions: tuple[int, ...] | None,
) -> None:
    error = server_receives(client_hello_bytes(supported_versions=versions))
    assert error.alert == A.protocol_version


def test_tls12_style_client_hello_without_extensions() -> None:
    ch = ClientHello(random=os.urandom(32), cipher_suites=(0xC02F, 0x1301))
    assert server_receives(encode_handshake(ch)).alert == A.protocol_version


@pytest.mark.parametrize(
    ("overrides", "alert"),
    [
        ({"quic_transport_parameters": None}, A.missing_extension),
        ({"signature_algorithms": None}, A.missing_extension),
        ({"supported_groups": None}, A.missing_extension),
        ({"key_share": None}, A.missing_extension),
        ({"legacy_compression_methods": b"\x00\x01"}, A.illegal_parameter),
        ({"legacy_version": 0x0301}, A.protocol_version),
        ({"key_share": (KeyShareEntry(0x0017, b"\x04" * 65),) * 2}, A.illegal_parameter),
        ({"key_share": (KeyShareEntry(0x0019, b"\x04" * 133),)}, A.illegal_parameter),
        ({"key_share": (KeyShareEntry(0x001D, b"\x00" * 32),)}, A.illegal_parameter),
        ({"key_share": (KeyShareEntry(0x001D, b"\x09" * 31),)}, A.illegal_parameter),
    ],
)
def test_server_rejects_bad_client_hello(overrides: dict[str, object], alert: A) -> None:
    assert server_receives(client_hello_bytes(**overrides)).alert == alert


def test_missing_transport_parameters_at_client() -> None:
    def drop(message: HandshakeMessage) -> HandshakeMessage:
        if isinstance(message, EncryptedExtensions):
            return dataclasses.replace(message, quic_transport_parameters=None)
        return message

    error = expect_alert(A.missing_extension, tamper=rewrite_server_flight(drop))
    assert error.quic_error_code == 0x16D


# -- certificate and signature failures --------------------------------------------------


def test_wrong_pin_is_bad_certificate() -> None:
    other = self_signed("ec-p384")
    expect_alert(A.bad_certificate, client_cfg=client_config(pin=other))


def test_expired_certificate() -> None:
    later = NOW + timedelta(days=30)
    expect_alert(A.certificate_expired, client_cfg=client_config(clock=lambda: later))


def test_unknown_ca() -> None:
    from tests.tls.pair import ca_and_leaf

    ca, _ = ca_and_leaf("ec-p256")
    expect_alert(A.unknown_ca, client_cfg=client_config(cadata=ca.certificate_pem))


def test_tampered_certificate_verify_is_decrypt_error() -> None:
    def corrupt(message: HandshakeMessage) -> HandshakeMessage:
        if isinstance(message, CertificateVerify):
            signature = bytearray(message.signature)
            signature[-1] ^= 0x01
            return dataclasses.replace(message, signature=bytes(signature))
        return message

    for key_type in ("ed25519", "ec-p256"):
        cert = self_signed(key_type)
        expect_alert(
            A.decrypt_error,
            client_cfg=client_config(pin=cert),
            server_cfg=server_config(cert),
            tamper=rewrite_server_flight(corrupt),
        )


def test_certificate_verify_with_unoffered_scheme() -> None:
    def swap(message: HandshakeMessage) -> HandshakeMessage:
        if isinstance(message, CertificateVerify):
            return dataclasses.replace(message, algorithm=0x0401)  # rsa_pkcs1_sha256
        return message

    expect_alert(A.illegal_parameter, tamper=rewrite_server_flight(swap))


def test_tampered_server_finished_is_decrypt_error() -> None:
    def corrupt(message: HandshakeMessage) -> HandshakeMessage:
        if isinstance(message, Finished):
            return Finished(bytes(b ^ 0xFF for b in message.verify_data))
        return message

    expect_alert(A.decrypt_error, tamper=rewrite_server_flight(corrupt))


def test_short_server_finished_is_decode_error() -> None:
    def shorten(message: HandshakeMessage) -> HandshakeMessage:
        if isinstance(message, Finished):
            return Finished(message.verify_data[:-1])
        return message

    expect_alert(A.decode_error, tamper=rewrite_server_flight(shorten))


def test_tampered_client_finished_is_decrypt_error_at_server() -> None:
    def tamper(from_client: bool, epoch: Epoch, data: bytes) -> bytes:
        if from_client and epoch == Epoch.HANDSHAKE:
            return data[:-1] + bytes([data[-1] ^ 0x80])
        return data

    expect_alert(A.decrypt_error, tamper=tamper)


def test_modified_transcript_fails_finished() -> None:
    """Changing a server extension the client accepts breaks the Finished MAC."""

    def change(message: HandshakeMessage) -> HandshakeMessage:
        if isinstance(message, EncryptedExtensions):
            return dataclasses.replace(message, quic_transport_parameters=b"forged")
        return message

    expect_alert(A.decrypt_error, tamper=rewrite_server_flight(change))


def test_empty_server_certificate_is_decode_error() -> None:
    def empty(message: HandshakeMessage) -> HandshakeMessage:
        if isinstance(message, Certificate):
            return Certificate()
        return message

    expect_alert(A.decode_error, tamper=rewrite_server_flight(empty))


def test_unsolicited_extension_is_unsupported_extension() -> None:
    def add(message: HandshakeMessage) -> HandshakeMessage:
        if isinstance(message, EncryptedExtensions):
            return dataclasses.replace(message, other_extensions=((0x4469, b"x"),))
        return message

    expect_alert(A.unsupported_extension, tamper=rewrite_server_flight(add))


def test_unsolicited_certificate_entry_extension() -> None:
    def add(message: HandshakeMessage) -> HandshakeMessage:
        if isinstance(message, Certificate):
            entry = dataclasses.replace(message.certificate_list[0], extensions=((5, b""),))
            return dataclasses.replace(message, certificate_list=(entry,))
        return message

    expect_alert(A.unsupported_extension, tamper=rewrite_server_flight(add))


def test_skipped_certificate_is_unexpected_message() -> None:
    def drop(message: HandshakeMessage) -> HandshakeMessage | None:
        return None if isinstance(message, Certificate | CertificateVerify) else message

    expect_alert(A.unexpected_message, tamper=rewrite_server_flight(drop))


# -- ServerHello / HelloRetryRequest checks at the client -------------------------------


@pytest.mark.parametrize(
    ("overrides", "alert"),
    [
        ({"supported_version": None}, A.protocol_version),
        ({"supported_version": 0x0303}, A.illegal_parameter),
        ({"legacy_version": 0x0304}, A.protocol_version),
        ({"cipher_suite": 0x1304}, A.illegal_parameter),
        ({"legacy_session_id_echo": b"\x01" * 32}, A.illegal_parameter),
        ({"legacy_compression_method": 1}, A.illegal_parameter),
        ({"key_share": None}, A.missing_extension),
        ({"key_share": KeyShareEntry(0x0017, b"\x04" + b"\x01" * 64)}, A.illegal_parameter),
        ({"key_share": KeyShareEntry(0x001D, b"\x00" * 32)}, A.illegal_parameter),
        ({"pre_shared_key": 0}, A.unsupported_extension),
        ({"other_extensions": ((0x7777, b""),)}, A.unsupported_extension),
    ],
)
def test_client_rejects_bad_server_hello(overrides: dict[str, object], alert: A) -> None:
    client, ch = started_client()
    assert client_receives(client, Epoch.INITIAL, server_hello_for(ch, **overrides)).alert == alert


def test_second_hello_retry_request_is_unexpected_message() -> None:
    client, ch = started_client(key_share_groups=(NamedGroup.x25519,))
    hrr = HelloRetryRequest(cipher_suite=0x1301, supported_version=0x0304, selected_group=0x0017)
    client.receive(Epoch.INITIAL, encode_handshake(hrr))
    ((_, ch2_raw),) = client.pop_output()
    ch2 = decode_handshake(ch2_raw)
    assert isinstance(ch2, ClientHello)
    assert ch2.key_share is not None and [e.group for e in ch2.key_share] == [0x0017]
    assert ch2.random == ch.random
    again = HelloRetryRequest(cipher_suite=0x1301, supported_version=0x0304, cookie=b"c")
    assert client_receives(client, Epoch.INITIAL, again).alert == A.unexpected_message


@pytest.mark.parametrize(
    ("hrr", "alert"),
    [
        (HelloRetryRequest(cipher_suite=0x1301, supported_version=0x0304), A.illegal_parameter),
        (
            HelloRetryRequest(cipher_suite=0x1301, supported_version=0x0304, selected_group=0x1D),
            A.illegal_parameter,  # a group we already sent a share for
        ),
        (
            HelloRetryRequest(cipher_suite=0x1301, supported_version=0x0304, selected_group=0x19),
            A.illegal_parameter,  # secp521r1: not in our supported_groups
        ),
        (
            HelloRetryRequest(
                cipher_suite=0x1301,
                supported_version=0x0304,
                selected_group=0x17,
                other_extensions=((0x7777, b""),),
            ),
            A.unsupported_extension,
        ),
        (HelloRetryRequest(cipher_suite=0x1301, selected_group=0x17), A.protocol_version),
    ],
)
def test_client_rejects_bad_hello_retry_request(hrr: HelloRetryRequest, alert: A) -> None:
    client, _ = started_client(key_share_groups=(NamedGroup.x25519,))
    assert client_receives(client, Epoch.INITIAL, hrr).alert == alert


def test_server_hello_after_hrr_must_keep_suite_and_group() -> None:
    client, _ = started_client(key_share_groups=(NamedGroup.x25519,))
    hrr = HelloRetryRequest(cipher_suite=0x1301, supported_version=0x0304, selected_group=0x0017)
    client.receive(Epoch.INITIAL, encode_handshake(hrr))
    ((_, ch2_raw),) = client.pop_output()
    ch2 = decode_handshake(ch2_raw)
    assert isinstance(ch2, ClientHello)
    sh = server_hello_for(ch2, cipher_suite=0x1302)
    assert client_receives(client, Epoch.INITIAL, sh).alert == A.illegal_parameter


def test_hrr_cookie_is_echoed() -> None:
    client, _ = started_client()
    hrr = HelloRetryRequest(cipher_suite=0x1301, supported_version=0x0304, cookie=b"state")
    client.receive(Epoch.INITIAL, encode_handshake(hrr))
    ((_, ch2_raw),) = client.pop_output()
    ch2 = decode_handshake(ch2_raw)
    assert isinstance(ch2, ClientHello) and ch2.cookie == b"state"


def test_server_rejects_changed_second_client_hello() -> None:
    client = TlsEngine(client_config(key_share_groups=(NamedGroup.x25519,)), CLIENT_TP)
    server = TlsEngine(server_config(groups=(NamedGroup.secp256r1,)), SERVER_TP)
    client.start()
    server.receive(Epoch.INITIAL, client.pop_output()[0][1])
    hrr = server.pop_output()[0][1]
    client.receive(Epoch.INITIAL, hrr)
    ch2 = decode_handshake(client.pop_output()[0][1])
    assert isinstance(ch2, ClientHello)
    changed = dataclasses.replace(ch2, alpn_protocols=(b"other",))
    with pytest.raises(TlsAlertError) as exc:
        server.receive(Epoch.INITIAL, encode_handshake(changed))
    assert exc.value.alert == A.illegal_parameter


def test_server_rejects_second_client_hello_without_requested_share() -> None:
    client = TlsEngine(client_config(key_share_groups=(NamedGroup.x25519,)), CLIENT_TP)
    server = TlsEngine(server_config(groups=(NamedGroup.secp256r1,)), SERVER_TP)
    client.start()
    ch1 = client.pop_output()[0][1]
    server.receive(Epoch.INITIAL, ch1)
    assert isinstance(decode_handshake(server.pop_output()[0][1]), HelloRetryRequest)
    with pytest.raises(TlsAlertError) as exc:
        server.receive(Epoch.INITIAL, ch1)  # the same ClientHello again
    assert exc.value.alert == A.illegal_parameter


# -- framing, epochs and forbidden messages ----------------------------------------------


def test_key_update_is_unexpected_message() -> None:
    result = run_handshake()
    for engine in (result.client, result.server):
        with pytest.raises(TlsAlertError) as exc:
            engine.receive(Epoch.ONE_RTT, encode_handshake(KeyUpdate(0)))
        assert exc.value.alert == A.unexpected_message
        assert exc.value.quic_error_code == 0x10A
    server = TlsEngine(server_config(), SERVER_TP)
    with pytest.raises(TlsAlertError) as exc:
        server.receive(Epoch.INITIAL, encode_handshake(KeyUpdate(1)))
    assert exc.value.alert == A.unexpected_message


def test_end_of_early_data_is_unexpected_message() -> None:
    result = run_handshake()
    with pytest.raises(TlsAlertError) as exc:
        result.server.receive(Epoch.ONE_RTT, encode_handshake(EndOfEarlyData()))
    assert exc.value.alert == A.unexpected_message


def test_connected_server_keeps_no_reader_or_key_schedule() -> None:
    """Once connected, a server's engine keeps no handshake reader and no key schedule
    (issue 10, memory per idle connection): a partial handshake message at 1-RTT is
    refused at once (every client message would be unexpected), and the exporter,
    from the exporter secret and the suite's hash, still agrees with the client's."""
    result = run_handshake()
    server, client = result.server, result.client
    assert server.handshake_complete and server.key_schedule is None and not server.readers
    assert client.key_schedule is not None and Epoch.ONE_RTT in client.readers
    exported = server.export_keying_material(b"EXPORTER-test", b"ctx", 32)
    assert exported == client.export_keying_material(b"EXPORTER-test", b"ctx", 32)
    with pytest.raises(TlsAlertError) as exc:
        server.receive(Epoch.ONE_RTT, encode_handshake(KeyUpdate(0))[:3])
    assert exc.value.alert == A.unexpected_message


def test_data_at_wrong_epoch_is_unexpected_message() -> None:
    client, _ = started_client()
    for epoch in (Epoch.HANDSHAKE, Epoch.ONE_RTT, Epoch.ZERO_RTT):
        engine, _ = started_client()
        with pytest.raises(TlsAlertError) as exc:
            engine.receive(epoch, b"\x08\x00\x00\x02\x00\x00")
        assert exc.value.alert == A.unexpected_message
    client.receive(Epoch.HANDSHAKE, b"")  # empty data is always fine
    server = TlsEngine(server_config(), SERVER_TP)
    with pytest.raises(TlsAlertError) as exc:
        server.receive(Epoch.ZERO_RTT, b"\x01")
    assert exc.value.alert == A.unexpected_message


def test_message_spanning_key_change_is_unexpected_message() -> None:
    """RFC 9846 §5.1: no bytes may follow the ServerHello at INITIAL."""
    client = TlsEngine(client_config(), CLIENT_TP)
    server = TlsEngine(server_config(), SERVER_TP)
    client.start()
    server.receive(Epoch.INITIAL, client.pop_output()[0][1])
    initial = server.pop_output()[0][1]
    with pytest.raises(TlsAlertError) as exc:
        client.receive(Epoch.INITIAL, initial + b"\x08\x00")
    assert exc.value.alert == A.unexpected_message


def test_unexpected_message_order() -> None:
    client, _ = started_client()
    assert client_receives(client, Epoch.INITIAL, EncryptedExtensions()).alert == (
        A.unexpected_message
    )
    server = TlsEngine(server_config(), SERVER_TP)
    with pytest.raises(TlsAlertError) as exc:
        server.receive(Epoch.INITIAL, encode_handshake(Finished(b"\x00" * 32)))
    assert exc.value.alert == A.unexpected_message


def test_failed_engine_stays_failed() -> None:
    server = TlsEngine(server_config(), SERVER_TP)
    with pytest.raises(TlsAlertError) as first:
        server.receive(Epoch.INITIAL, b"\x01\x00\x00\x01\x00")
    with pytest.raises(TlsAlertError) as second:
        server.receive(Epoch.INITIAL, client_hello_bytes())
    assert second.value is first.value


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00",
        b"\xff\xff\xff\xff",
        b"\x01\x00\x00\x00",
        b"\x01\x00\x00\x05hello",
        b"\x02\x00\x00\x02\x03\x03",
        b"\x01\xff\xff\xff" + b"\x00" * 64,
        os.urandom(300),
        b"\x01\x00\x01\x00" + bytes(range(256)),
    ],
)
def test_garbage_raises_only_tls_alerts(garbage: bytes) -> None:
    for config in (client_config(), server_config()):
        engine = TlsEngine(config, b"")
        engine.start()
        engine.pop_output()
        try:
            engine.receive(Epoch.INITIAL, garbage)
        except TlsAlertError as exc:
            assert exc.alert != A.internal_error, exc
        except QuicProtocolError:  # pragma: no cover - not reachable before the handshake
            pytest.fail("transport error before the handshake")
