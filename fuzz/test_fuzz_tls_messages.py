"""Property tests for the TLS message codec and the handshake engine.

- decode(encode(m)) == m for every message type (hypothesis-built messages);
- arbitrary bytes into every decoder either decode or raise TlsAlertError;
- arbitrary bytes (and mutated real flights) into a fresh TlsEngine, both roles, raise
  nothing but TlsAlertError.
"""

from __future__ import annotations

import contextlib
import string
from datetime import UTC, datetime
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from quic.tls.alerts import AlertDescription, TlsAlertError
from quic.tls.config import TlsConfig
from quic.tls.engine import Epoch, TlsEngine
from quic.tls.extensions import RECOGNIZED_EXTENSIONS, KeyShareEntry, OfferedPsks, PskIdentity
from quic.tls.messages import (
    HRR_RANDOM,
    Certificate,
    CertificateEntry,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Finished,
    HandshakeMessage,
    HandshakeType,
    HelloRetryRequest,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    decode_handshake,
    decode_message,
    encode_handshake,
)
from quic.tls.selfsigned import generate_self_signed
from quic.tls.verify import VerifyOptions

T = TypeVar("T")
NOW = datetime(2025, 6, 1, tzinfo=UTC)
CERT = generate_self_signed(NOW)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u16_list = st.lists(u16, min_size=1, max_size=8).map(tuple)


def opt(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.none() | strategy


def raw_extensions(max_size: int = 3) -> st.SearchStrategy[tuple[tuple[int, bytes], ...]]:
    ext_type = u16.filter(lambda t: t not in RECOGNIZED_EXTENSIONS)
    return st.lists(
        st.tuples(ext_type, st.binary(max_size=20)), max_size=max_size, unique_by=lambda e: e[0]
    ).map(tuple)


host_names = st.text(string.ascii_letters + string.digits + ".-", min_size=1, max_size=30)
key_share_entries = st.builds(KeyShareEntry, u16, st.binary(min_size=1, max_size=64))
alpn_names = st.binary(min_size=1, max_size=20)


@st.composite
def offered_psks(draw: st.DrawFn) -> OfferedPsks:
    n = draw(st.integers(1, 3))
    identities = tuple(
        PskIdentity(draw(st.binary(min_size=1, max_size=20)), draw(u32)) for _ in range(n)
    )
    binders = tuple(draw(st.binary(min_size=32, max_size=64)) for _ in range(n))
    return OfferedPsks(identities, binders)


client_hellos = st.builds(
    ClientHello,
    random=st.binary(min_size=32, max_size=32),
    cipher_suites=u16_list,
    legacy_session_id=st.binary(max_size=32),
    legacy_compression_methods=st.binary(min_size=1, max_size=4),
    legacy_version=u16,
    server_name=opt(host_names),
    supported_versions=opt(u16_list),
    supported_groups=opt(u16_list),
    key_share=opt(st.lists(key_share_entries, max_size=3).map(tuple)),
    signature_algorithms=opt(u16_list),
    signature_algorithms_cert=opt(u16_list),
    alpn_protocols=opt(st.lists(alpn_names, min_size=1, max_size=3).map(tuple)),
    psk_key_exchange_modes=opt(st.lists(u8, min_size=1, max_size=3).map(tuple)),
    early_data=st.booleans(),
    cookie=opt(st.binary(min_size=1, max_size=40)),
    quic_transport_parameters=opt(st.binary(max_size=60)),
    pre_shared_key=opt(offered_psks()),
    other_extensions=raw_extensions(),
)
server_hellos = st.builds(
    ServerHello,
    random=st.binary(min_size=32, max_size=32).filter(lambda r: r != HRR_RANDOM),
    cipher_suite=u16,
    legacy_session_id_echo=st.binary(max_size=32),
    legacy_compression_method=u8,
    legacy_version=u16,
    supported_version=opt(u16),
    key_share=opt(key_share_entries),
    pre_shared_key=opt(u16),
    other_extensions=raw_extensions(),
)
hello_retry_requests = st.builds(
    HelloRetryRequest,
    cipher_suite=u16,
    legacy_session_id_echo=st.binary(max_size=32),
    legacy_compression_method=u8,
    legacy_version=u16,
    supported_version=opt(u16),
    selected_group=opt(u16),
    cookie=opt(st.binary(min_size=1, max_size=40)),
    other_extensions=raw_extensions(),
)
encrypted_extensions = st.builds(
    EncryptedExtensions,
    server_name_ack=st.booleans(),
    supported_groups=opt(u16_list),
    alpn_protocol=opt(alpn_names),
    early_data=st.booleans(),
    quic_transport_parameters=opt(st.binary(max_size=60)),
    other_extensions=raw_extensions(),
)
certificate_requests = st.builds(
    CertificateRequest,
    certificate_request_context=st.binary(max_size=20),
    signature_algorithms=opt(u16_list),
    signature_algorithms_cert=opt(u16_list),
    other_extensions=raw_extensions(),
)
certificates = st.builds(
    Certificate,
    certificate_request_context=st.binary(max_size=20),
    certificate_list=st.lists(
        st.builds(CertificateEntry, st.binary(min_size=1, max_size=80), raw_extensions(2)),
        max_size=3,
    ).map(tuple),
)
certificate_verifies = st.builds(CertificateVerify, u16, st.binary(max_size=100))
finisheds = st.builds(Finished, st.binary(max_size=64))
new_session_tickets = st.builds(
    NewSessionTicket,
    ticket_lifetime=u32,
    ticket_age_add=u32,
    ticket_nonce=st.binary(max_size=40),
    ticket=st.binary(min_size=1, max_size=60),
    max_early_data_size=opt(u32),
    other_extensions=raw_extensions(),
)
key_updates = st.builds(KeyUpdate, st.integers(0, 1))

messages: st.SearchStrategy[HandshakeMessage] = st.one_of(
    client_hellos,
    server_hellos,
    hello_retry_requests,
    encrypted_extensions,
    certificate_requests,
    certificates,
    certificate_verifies,
    finisheds,
    new_session_tickets,
    key_updates,
)


@settings(max_examples=examples(300))
@given(messages)
def test_round_trip(message: HandshakeMessage) -> None:
    raw = encode_handshake(message)
    assert decode_handshake(raw) == message
    assert encode_handshake(decode_handshake(raw)) == raw


@settings(max_examples=examples(300))
@given(st.sampled_from(list(HandshakeType)), st.binary(max_size=300))
def test_decoders_accept_or_raise_alert(msg_type: HandshakeType, data: bytes) -> None:
    try:
        message = decode_message(msg_type, data)
    except TlsAlertError:
        return
    # Whatever decodes must re-encode to something that decodes the same way.
    assert decode_handshake(encode_handshake(message)) == message


@settings(max_examples=examples(300))
@given(st.binary(max_size=300))
def test_decode_handshake_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(TlsAlertError):
        decode_handshake(data)


@settings(max_examples=examples(200))
@given(client_hellos, st.integers(0, 10_000), st.integers(1, 255))
def test_mutated_client_hello_decodes_or_alerts(ch: ClientHello, pos: int, flip: int) -> None:
    raw = bytearray(encode_handshake(ch))
    raw[pos % len(raw)] ^= flip
    with contextlib.suppress(TlsAlertError):
        decode_handshake(bytes(raw))


# -- engine --------------------------------------------------------------------------


def _client_config() -> TlsConfig:
    return TlsConfig(
        is_client=True,
        alpn_protocols=["h3"],
        server_name="localhost",
        verify=VerifyOptions(certificate_hashes=(CERT.sha256,)),
        clock=lambda: NOW,
    )


def _server_config() -> TlsConfig:
    config = TlsConfig(is_client=False, alpn_protocols=["h3"], clock=lambda: NOW)
    config.load_cert_chain_pem(CERT.certificate_pem, CERT.private_key_pem)
    return config


CLIENT_CONFIG = _client_config()
SERVER_CONFIG = _server_config()


def _feed(engine: TlsEngine, epoch: Epoch, data: bytes) -> None:
    try:
        engine.receive(epoch, data)
    except TlsAlertError as exc:
        assert exc.alert != AlertDescription.internal_error, exc


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=3))
def test_engine_arbitrary_bytes(is_client: bool, chunks: list[bytes]) -> None:
    engine = TlsEngine(CLIENT_CONFIG if is_client else SERVER_CONFIG, b"tp")
    engine.start()
    engine.pop_output()
    for chunk in chunks:
        _feed(engine, Epoch.INITIAL, chunk)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(client_hellos)
def test_server_engine_structured_client_hellos(ch: ClientHello) -> None:
    engine = TlsEngine(SERVER_CONFIG, b"tp")
    _feed(engine, Epoch.INITIAL, encode_handshake(ch))


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["ch", "sh", "flight"]), st.integers(0, 100_000), st.integers(1, 255))
def test_engine_mutated_real_flights(which: str, pos: int, flip: int) -> None:
    client = TlsEngine(CLIENT_CONFIG, b"client-tp")
    server = TlsEngine(SERVER_CONFIG, b"server-tp")
    client.start()
    ((_, ch),) = client.pop_output()

    def mutate(data: bytes) -> bytes:
        buf = bytearray(data)
        buf[pos % len(buf)] ^= flip
        return bytes(buf)

    if which == "ch":
        _feed(server, Epoch.INITIAL, mutate(ch))
        return
    server.receive(Epoch.INITIAL, ch)
    (_, sh), (_, flight) = server.pop_output()
    if which == "sh":
        _feed(client, Epoch.INITIAL, mutate(sh))
        return
    client.receive(Epoch.INITIAL, sh)
    _feed(client, Epoch.HANDSHAKE, mutate(flight))
    assert not client.handshake_complete or flight == mutate(flight)
