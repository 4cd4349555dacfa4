"""TLS 1.3 message and extension codec tests (RFC 9846 §4, RFC 9001 §8)."""

from __future__ import annotations

import pytest

from quic.tls.alerts import AlertDescription, TlsAlertError
from quic.tls.extensions import (
    ExtensionType,
    KeyShareEntry,
    OfferedPsks,
    PskIdentity,
    decode_alpn,
    decode_alpn_selected,
    decode_cookie,
    decode_empty,
    decode_key_share_client,
    decode_key_share_server,
    decode_offered_psks,
    decode_psk_modes,
    decode_server_name,
    decode_uint16_list,
    decode_versions_client,
    encode_alpn,
    encode_server_name,
)
from quic.tls.messages import (
    HRR_RANDOM,
    Certificate,
    CertificateEntry,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    EndOfEarlyData,
    Finished,
    HandshakeMessage,
    HandshakeReader,
    HandshakeType,
    HelloRetryRequest,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    decode_handshake,
    decode_message,
    encode_handshake,
)

PSKS = OfferedPsks(
    identities=(PskIdentity(b"ticket-1", 1234), PskIdentity(b"t2", 0)),
    binders=(b"\xaa" * 32, b"\xbb" * 48),
)

CLIENT_HELLO = ClientHello(
    random=bytes(range(32)),
    cipher_suites=(0x1301, 0x1302, 0x1303, 0x0A0A),
    server_name="example.com",
    supported_versions=(0x0304, 0x7A7A),
    supported_groups=(0x11EC, 0x001D, 0x0017),
    key_share=(KeyShareEntry(0x11EC, b"\x01" * 1216), KeyShareEntry(0x001D, b"\x02" * 32)),
    signature_algorithms=(0x0403, 0x0804, 0x0807),
    signature_algorithms_cert=(0x0401,),
    alpn_protocols=(b"h3", b"webtransport"),
    psk_key_exchange_modes=(1,),
    early_data=True,
    cookie=b"cookie!",
    quic_transport_parameters=b"\x01\x02\x03",
    pre_shared_key=PSKS,
    other_extensions=((0xFF01, b"\x00"), (0x1A1A, b"")),
)

MESSAGES: list[HandshakeMessage] = [
    CLIENT_HELLO,
    ClientHello(random=b"\x07" * 32, cipher_suites=(0x1301,)),
    ServerHello(
        random=b"\x09" * 32,
        cipher_suite=0x1302,
        legacy_session_id_echo=b"\x01" * 32,
        supported_version=0x0304,
        key_share=KeyShareEntry(0x0017, b"\x04" + b"\x05" * 64),
        pre_shared_key=1,
        other_extensions=((0x5A5A, b"xyz"),),
    ),
    HelloRetryRequest(
        cipher_suite=0x1301, supported_version=0x0304, selected_group=0x0018, cookie=b"c"
    ),
    EncryptedExtensions(
        server_name_ack=True,
        supported_groups=(0x001D,),
        alpn_protocol=b"h3",
        early_data=True,
        quic_transport_parameters=b"\x00" * 40,
        other_extensions=((0x4469, b"\x00\x03\x02h3"),),
    ),
    EncryptedExtensions(),
    CertificateRequest(
        certificate_request_context=b"",
        signature_algorithms=(0x0403,),
        signature_algorithms_cert=(0x0804,),
        other_extensions=((ExtensionType.server_name, b""),),
    ),
    Certificate(
        certificate_request_context=b"\x01\x02",
        certificate_list=(
            CertificateEntry(b"\x30\x82leaf", ((5, b"\x01ocsp"), (18, b"sct"))),
            CertificateEntry(b"\x30\x82intermediate"),
        ),
    ),
    Certificate(),
    CertificateVerify(0x0804, b"\x55" * 256),
    Finished(b"\x66" * 48),
    NewSessionTicket(
        ticket_lifetime=604800,
        ticket_age_add=0xDEADBEEF,
        ticket_nonce=b"\x00\x01",
        ticket=b"opaque ticket",
        max_early_data_size=0xFFFFFFFF,
        other_extensions=((0x2A2B, b"?"),),
    ),
    NewSessionTicket(1, 2, b"", b"t"),
    KeyUpdate(1),
    EndOfEarlyData(),
]


def _ids(message: HandshakeMessage) -> str:
    return type(message).__name__


def _assert_alert(exc: pytest.ExceptionInfo[TlsAlertError], alert: AlertDescription) -> None:
    assert exc.value.alert == alert, exc.value


@pytest.mark.parametrize("message", MESSAGES, ids=_ids)
def test_round_trip(message: HandshakeMessage) -> None:
    raw = encode_handshake(message)
    assert raw[0] == message.msg_type
    assert int.from_bytes(raw[1:4], "big") == len(raw) - 4
    decoded = decode_handshake(raw)
    assert decoded == message
    assert encode_handshake(decoded) == raw


def test_client_hello_encoding_layout() -> None:
    raw = encode_handshake(CLIENT_HELLO)
    body = raw[4:]
    assert body[:2] == b"\x03\x03"
    assert body[2:34] == bytes(range(32))
    assert body[34] == 0  # empty legacy_session_id (RFC 9001 §8.4)
    assert body[35:37] == b"\x00\x08"
    # pre_shared_key is the last extension (RFC 9846 §4.3.11)
    psk_type = ExtensionType.pre_shared_key.to_bytes(2, "big")
    assert raw.rfind(psk_type) > raw.rfind(b"\xff\x01")
    decoded = decode_handshake(raw)
    assert isinstance(decoded, ClientHello)
    assert decoded.extension_types() >= {0, 10, 13, 16, 41, 42, 43, 44, 45, 50, 51, 57, 0xFF01}


def test_hello_retry_request_recognised_by_random() -> None:
    hrr = HelloRetryRequest(cipher_suite=0x1301, supported_version=0x0304, selected_group=0x1D)
    raw = encode_handshake(hrr)
    assert raw[6:38] == HRR_RANDOM
    assert isinstance(decode_handshake(raw), HelloRetryRequest)
    with pytest.raises(TlsAlertError):
        ServerHello.decode_body(raw[4:])
    sh = ServerHello(random=b"\x01" * 32, cipher_suite=0x1301)
    with pytest.raises(TlsAlertError):
        HelloRetryRequest.decode_body(encode_handshake(sh)[4:])


# -- malformed input -----------------------------------------------------------------


def _hello_extension_boundary(message: HandshakeMessage) -> int | None:
    """Offset in the body where the extension block starts (hellos may omit it)."""
    body = message.encode_body()
    if isinstance(message, ClientHello):
        pos = 2 + 32
        pos += 1 + body[pos]
        pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
        return pos + 1 + body[pos]
    if isinstance(message, ServerHello | HelloRetryRequest):
        pos = 2 + 32
        return pos + 1 + body[pos] + 3
    return None


@pytest.mark.parametrize("message", [m for m in MESSAGES if m.encode_body()], ids=_ids)
def test_truncation_at_every_byte(message: HandshakeMessage) -> None:
    body = message.encode_body()
    boundary = _hello_extension_boundary(message)
    for cut in range(len(body)):
        if isinstance(message, Finished):
            break  # verify_data is opaque: its length is checked by the handshake
        if cut == boundary:
            # RFC 9846 §4.2.2: a hello without any extensions block is well formed.
            assert decode_message(message.msg_type, body[:cut]) is not None
            continue
        with pytest.raises(TlsAlertError) as exc:
            decode_message(message.msg_type, body[:cut])
        _assert_alert(exc, AlertDescription.decode_error)
    raw = encode_handshake(message)
    for cut in range(len(raw)):
        with pytest.raises(TlsAlertError) as exc:
            decode_handshake(raw[:cut])
        _assert_alert(exc, AlertDescription.decode_error)


@pytest.mark.parametrize("message", [m for m in MESSAGES if not isinstance(m, Finished)], ids=_ids)
def test_trailing_garbage(message: HandshakeMessage) -> None:
    with pytest.raises(TlsAlertError) as exc:
        decode_message(message.msg_type, message.encode_body() + b"\x00")
    _assert_alert(exc, AlertDescription.decode_error)
    raw = encode_handshake(message)
    with pytest.raises(TlsAlertError) as exc:
        decode_handshake(raw + b"\x00")
    _assert_alert(exc, AlertDescription.decode_error)


@pytest.mark.parametrize(
    "message",
    [
        ClientHello(
            random=b"\x00" * 32, cipher_suites=(0x1301,), other_extensions=((99, b""),) * 2
        ),
        ClientHello(
            random=b"\x00" * 32,
            cipher_suites=(0x1301,),
            server_name="a.example",
            other_extensions=((ExtensionType.server_name, b""),),
        ),
        EncryptedExtensions(other_extensions=((1234, b"a"), (1234, b"b"))),
        ServerHello(random=b"\x01" * 32, cipher_suite=0x1301, other_extensions=((7, b""),) * 2),
        NewSessionTicket(1, 2, b"", b"t", other_extensions=((77, b""), (77, b""))),
        Certificate(certificate_list=(CertificateEntry(b"x", ((5, b""), (5, b""))),)),
    ],
)
def test_duplicate_extension_is_illegal_parameter(message: HandshakeMessage) -> None:
    with pytest.raises(TlsAlertError) as exc:
        decode_handshake(encode_handshake(message))
    _assert_alert(exc, AlertDescription.illegal_parameter)


def test_recognised_extension_in_wrong_message() -> None:
    """RFC 9846 §4.3: a known extension not listed for the message -> illegal_parameter."""
    cases: list[HandshakeMessage] = [
        EncryptedExtensions(other_extensions=((ExtensionType.key_share, b""),)),
        EncryptedExtensions(other_extensions=((ExtensionType.signature_algorithms, b""),)),
        ServerHello(random=b"\x01" * 32, cipher_suite=0x1301, other_extensions=((0, b""),)),
        HelloRetryRequest(cipher_suite=0x1301, other_extensions=((42, b""),)),
        NewSessionTicket(1, 2, b"", b"t", other_extensions=((57, b""),)),
        CertificateRequest(other_extensions=((51, b""),)),
        Certificate(certificate_list=(CertificateEntry(b"x", ((43, b""),)),)),
    ]
    for message in cases:
        with pytest.raises(TlsAlertError) as exc:
            decode_handshake(encode_handshake(message))
        _assert_alert(exc, AlertDescription.illegal_parameter)


def test_pre_shared_key_must_be_last() -> None:
    ch = ClientHello(random=b"\x00" * 32, cipher_suites=(0x1301,), pre_shared_key=PSKS)
    raw = encode_handshake(ch)
    # Re-append an extension after pre_shared_key by rebuilding the extensions block.
    body = raw[4:]
    ext_start = 2 + 32 + 1 + 2 + 2 + 1 + 1 + 2  # after the extensions length
    block_len = int.from_bytes(body[ext_start - 2 : ext_start], "big")
    block = body[ext_start : ext_start + block_len] + b"\x12\x34\x00\x00"
    new_body = body[: ext_start - 2] + len(block).to_bytes(2, "big") + block
    with pytest.raises(TlsAlertError) as exc:
        decode_message(HandshakeType.client_hello, new_body)
    _assert_alert(exc, AlertDescription.illegal_parameter)


def test_truncated_for_binders() -> None:
    raw = encode_handshake(CLIENT_HELLO)
    partial = CLIENT_HELLO.truncated_for_binders()
    assert raw.startswith(partial)
    assert len(raw) - len(partial) == 2 + (1 + 32) + (1 + 48)
    with pytest.raises(ValueError):
        ClientHello(random=b"\x00" * 32, cipher_suites=(0x1301,)).truncated_for_binders()


def test_unknown_message_type_is_unexpected() -> None:
    with pytest.raises(TlsAlertError) as exc:
        decode_handshake(b"\x63\x00\x00\x00")
    _assert_alert(exc, AlertDescription.unexpected_message)
    with pytest.raises(TlsAlertError) as exc:
        decode_handshake(b"\xfe\x00\x00\x00")  # message_hash never goes on the wire
    _assert_alert(exc, AlertDescription.unexpected_message)


def test_key_update_value_and_eoed_body() -> None:
    with pytest.raises(TlsAlertError) as exc:
        decode_handshake(b"\x18\x00\x00\x01\x02")
    _assert_alert(exc, AlertDescription.illegal_parameter)
    assert decode_handshake(b"\x18\x00\x00\x01\x00") == KeyUpdate(0)
    with pytest.raises(TlsAlertError):
        decode_handshake(b"\x05\x00\x00\x01\x00")


@pytest.mark.parametrize(
    ("decoder", "data"),
    [
        (decode_uint16_list, b"\x00\x03\x00\x1d\x00"),  # odd length
        (decode_uint16_list, b"\x00\x00"),  # below the minimum of 2
        (decode_versions_client, b"\x00"),
        (decode_versions_client, b"\x03\x03\x04\x03"),
        (decode_server_name, b"\x00\x00"),
        (decode_server_name, b"\x00\x04\x00\x00\x01\xff"),  # not ASCII
        (decode_server_name, b"\x00\x05\x01\x00\x02ab"),  # no host_name
        (decode_alpn, b"\x00\x01\x00"),  # empty protocol name
        (decode_alpn, b"\x00\x00"),
        (decode_alpn_selected, encode_alpn((b"h3", b"h2"))),
        (decode_cookie, b"\x00\x00"),
        (decode_psk_modes, b"\x00"),
        (decode_key_share_client, b"\x00\x04\x00\x1d\x00\x00"),  # empty key_exchange
        (decode_key_share_server, b"\x00\x1d\x00\x02\x01"),
        (decode_empty, b"\x00"),
        (decode_offered_psks, b"\x00\x07\x00\x01x\x00\x00\x00\x00\x00\x05\x04abcd"),  # short binder
    ],
)
def test_extension_decoders_reject_malformed(decoder: object, data: bytes) -> None:
    assert callable(decoder)
    with pytest.raises(TlsAlertError) as exc:
        decoder(data)
    _assert_alert(exc, AlertDescription.decode_error)


def test_extension_details() -> None:
    assert decode_server_name(encode_server_name("a.b")) == "a.b"
    # Entries of other name types are skipped (RFC 6066 §3).
    data = b"\x00\x0a" + b"\x07\x00\x02zz" + b"\x00\x00\x02ab"
    assert decode_server_name(data) == "ab"
    with pytest.raises(TlsAlertError) as exc:
        decode_server_name(b"\x00\x0a" + b"\x00\x00\x02ab" + b"\x00\x00\x02cd")
    _assert_alert(exc, AlertDescription.decode_error)
    mismatch = OfferedPsks((PskIdentity(b"a", 0),), (b"\x00" * 32, b"\x01" * 32))
    from quic.tls.extensions import encode_offered_psks

    with pytest.raises(TlsAlertError) as exc:
        decode_offered_psks(encode_offered_psks(mismatch))
    _assert_alert(exc, AlertDescription.illegal_parameter)


# -- reassembly -----------------------------------------------------------------------


def test_reader_reassembles_any_chunking() -> None:
    stream = b"".join(encode_handshake(m) for m in MESSAGES)
    expected = [encode_handshake(m) for m in MESSAGES]
    for chunk in (1, 3, 7, 100, len(stream)):
        reader = HandshakeReader()
        got: list[bytes] = []
        for i in range(0, len(stream), chunk):
            reader.feed(stream[i : i + chunk])
            while (item := reader.next_message()) is not None:
                msg_type, body, raw = item
                assert raw[0] == msg_type and raw[4:] == body
                got.append(raw)
        assert got == expected
        assert reader.pending == 0


def test_reader_pending_and_limit() -> None:
    reader = HandshakeReader(max_message_size=100)
    reader.feed(b"\x14\x00\x00")
    assert reader.next_message() is None and reader.pending == 3
    reader.feed(b"\x02ab\x14")
    assert reader.next_message() == (20, b"ab", b"\x14\x00\x00\x02ab")
    assert reader.pending == 1
    reader.feed(b"\x00\x00\x65")  # 101 bytes announced
    with pytest.raises(TlsAlertError) as exc:
        reader.next_message()
    _assert_alert(exc, AlertDescription.decode_error)


@pytest.mark.parametrize(
    "block",
    [
        b"\x00\x03\x00\x10\x00",  # extension header cut
        b"\x00\x05\x00\x10\x00\x02\x01",  # extension data cut
        b"\x00\x04\x00\x10\x00\x01",  # data length beyond the block
    ],
)
def test_truncated_extension_block_is_decode_error(block: bytes) -> None:
    from quic.buffer import Buffer
    from quic.errors import BufferReadError
    from quic.tls.extensions import parse_extension_block

    with pytest.raises(BufferReadError):
        parse_extension_block(Buffer(block))


def test_extension_block_parsed_in_order() -> None:
    from quic.buffer import Buffer
    from quic.tls.extensions import parse_extension_block

    block = b"\x00\x0b" + b"\x00\x10\x00\x02ab" + b"\xff\x01\x00\x01c"
    assert parse_extension_block(Buffer(block)) == [(0x10, b"ab"), (0xFF01, b"c")]
