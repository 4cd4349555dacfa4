"""TLS 1.3 handshake message codec for QUIC (RFC 9846 §4, RFC 9001 §4 and §8).

Theory of operation
-------------------
In QUIC there is no TLS record layer (RFC 9001 §4): CRYPTO frames carry the raw
handshake stream of each encryption level, a sequence of
``msg_type(1) || length(3) || body`` messages (RFC 9846 §4). :class:`HandshakeReader`
reassembles that stream: it accepts bytes in any chunking and yields whole messages
(``msg_type``, ``body`` and the raw framed bytes, which feed the transcript hash).

Each message is a frozen dataclass with ``encode_body()`` and a ``decode_body()``
classmethod; :func:`encode_handshake` adds the 4-byte header and :func:`decode_message`
dispatches on the type. Extensions are mapped to typed fields by per-message tables of
:class:`ExtField` rows (type, field, encoder, decoder); extensions the codec does not
implement are kept in ``other_extensions`` as raw ``(type, data)`` pairs, in order. A
recognised extension in a message RFC 9846 §4.3 does not list it for raises
``illegal_parameter``; a repeated extension type raises ``illegal_parameter`` (§4.3).

A ServerHello whose random equals the SHA-256 of "HelloRetryRequest" is decoded as
:class:`HelloRetryRequest` (RFC 9846 §4.2.3), whose ``key_share`` carries only the
selected group (§4.3.8).

The codec checks syntax only (vector bounds, exact lengths, no trailing bytes): any
malformed input raises ``TlsAlertError(decode_error)``; protocol rules (which values are
acceptable) live in the handshake logic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, TypeAlias

from quic.buffer import Buffer
from quic.tls.alerts import AlertDescription, TlsAlertError
from quic.tls.extensions import (
    RECOGNIZED_EXTENSIONS,
    ExtensionType,
    KeyShareEntry,
    OfferedPsks,
    RawExtension,
    decode_alpn,
    decode_alpn_selected,
    decode_cookie,
    decode_empty,
    decode_error,
    decode_key_share_client,
    decode_key_share_hrr,
    decode_key_share_server,
    decode_max_early_data,
    decode_offered_psks,
    decode_opaque,
    decode_psk_modes,
    decode_selected_identity,
    decode_server_name,
    decode_uint16_list,
    decode_versions_client,
    decode_versions_server,
    encode_alpn,
    encode_alpn_selected,
    encode_cookie,
    encode_empty,
    encode_extension_block,
    encode_key_share_client,
    encode_key_share_hrr,
    encode_key_share_server,
    encode_max_early_data,
    encode_offered_psks,
    encode_opaque,
    encode_psk_modes,
    encode_selected_identity,
    encode_server_name,
    encode_uint16_list,
    encode_versions_client,
    encode_versions_server,
    parse_extension_block,
    read_exact,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HRR_RANDOM",
    "TLS12",
    "TLS13",
    "Certificate",
    "CertificateEntry",
    "CertificateRequest",
    "CertificateVerify",
    "ClientHello",
    "EncryptedExtensions",
    "EndOfEarlyData",
    "ExtField",
    "Finished",
    "HandshakeMessage",
    "HandshakeReader",
    "HandshakeType",
    "HelloRetryRequest",
    "KeyUpdate",
    "NewSessionTicket",
    "ServerHello",
    "decode_handshake",
    "decode_message",
    "encode_handshake",
    "message_hash",
]

TLS12 = 0x0303
TLS13 = 0x0304

#: ServerHello.random of a HelloRetryRequest: SHA-256("HelloRetryRequest") (§4.2.3).
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

#: Largest handshake message we accept; certificate chains are the big ones.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 18


class HandshakeType(IntEnum):
    """HandshakeType (RFC 9846 §4)."""

    client_hello = 1
    server_hello = 2
    new_session_ticket = 4
    end_of_early_data = 5
    encrypted_extensions = 8
    certificate = 11
    certificate_request = 13
    certificate_verify = 15
    finished = 20
    key_update = 24
    message_hash = 254


# -- extension tables -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExtField:
    """One row of a message's extension table: wire type <-> dataclass field."""

    ext_type: int
    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _present(value: object) -> bool:
    return value is not None and value is not False


def _decode_extensions(
    raw: Sequence[RawExtension],
    fields: Sequence[ExtField],
    allowed: frozenset[int],
    where: str,
) -> tuple[dict[str, Any], tuple[RawExtension, ...]]:
    """Split ``raw`` into typed field values and kept-raw extensions (RFC 9846 §4.3)."""
    by_type = {f.ext_type: f for f in fields}
    values: dict[str, Any] = {}
    other: list[RawExtension] = []
    for ext_type, data in raw:
        row = by_type.get(ext_type)
        if row is not None:
            values[row.name] = row.decode(data)
        elif ext_type in RECOGNIZED_EXTENSIONS and ext_type not in allowed:
            raise TlsAlertError(
                AlertDescription.illegal_parameter, f"extension {ext_type} not allowed in {where}"
            )
        else:
            other.append((ext_type, data))
    return values, tuple(other)


def _encode_extensions(
    msg: object,
    fields: Sequence[ExtField],
    other: Sequence[RawExtension],
    last: ExtField | None = None,
) -> bytes:
    out: list[RawExtension] = []
    for row in fields:
        value = getattr(msg, row.name)
        if value is not None and value is not False:  # _present, inlined
            out.append((row.ext_type, row.encode(value)))
    out.extend(other)
    if last is not None:
        value = getattr(msg, last.name)
        if _present(value):
            out.append((last.ext_type, last.encode(value)))
    return encode_extension_block(out)


def _extension_types(
    msg: object, fields: Sequence[ExtField], other: Sequence[RawExtension]
) -> frozenset[int]:
    types: set[int] = set()
    for row in fields:
        value = getattr(msg, row.name)
        if value is not None and value is not False:  # _present, inlined
            types.add(row.ext_type)
    types.update(t for t, _ in other)
    return frozenset(types)


E = ExtensionType
_CH_FIELDS: tuple[ExtField, ...] = (
    ExtField(E.server_name, "server_name", encode_server_name, decode_server_name),
    ExtField(E.supported_versions, "supported_versions", encode_versions_client,
             decode_versions_client),
    ExtField(E.supported_groups, "supported_groups", encode_uint16_list, decode_uint16_list),
    ExtField(E.key_share, "key_share", encode_key_share_client, decode_key_share_client),
    ExtField(E.signature_algorithms, "signature_algorithms", encode_uint16_list,
             decode_uint16_list),
    ExtField(E.signature_algorithms_cert, "signature_algorithms_cert", encode_uint16_list,
             decode_uint16_list),
    ExtField(E.application_layer_protocol_negotiation, "alpn_protocols", encode_alpn,
             decode_alpn),
    ExtField(E.psk_key_exchange_modes, "psk_key_exchange_modes", encode_psk_modes,
             decode_psk_modes),
    ExtField(E.early_data, "early_data", encode_empty, decode_empty),
    ExtField(E.cookie, "cookie", encode_cookie, decode_cookie),
    ExtField(E.quic_transport_parameters, "quic_transport_parameters", encode_opaque,
             decode_opaque),
)  # fmt: skip
_CH_PSK = ExtField(E.pre_shared_key, "pre_shared_key", encode_offered_psks, decode_offered_psks)
_CH_ALLOWED = RECOGNIZED_EXTENSIONS

_SH_FIELDS: tuple[ExtField, ...] = (
    ExtField(E.supported_versions, "supported_version", encode_versions_server,
             decode_versions_server),
    ExtField(E.key_share, "key_share", encode_key_share_server, decode_key_share_server),
    ExtField(E.pre_shared_key, "pre_shared_key", encode_selected_identity,
             decode_selected_identity),
)  # fmt: skip
_SH_ALLOWED = frozenset({E.supported_versions, E.key_share, E.pre_shared_key})

_HRR_FIELDS: tuple[ExtField, ...] = (
    ExtField(E.supported_versions, "supported_version", encode_versions_server,
             decode_versions_server),
    ExtField(E.key_share, "selected_group", encode_key_share_hrr, decode_key_share_hrr),
    ExtField(E.cookie, "cookie", encode_cookie, decode_cookie),
)  # fmt: skip
_HRR_ALLOWED = frozenset({E.supported_versions, E.key_share, E.cookie})

_EE_FIELDS: tuple[ExtField, ...] = (
    ExtField(E.server_name, "server_name_ack", encode_empty, decode_empty),
    ExtField(E.supported_groups, "supported_groups", encode_uint16_list, decode_uint16_list),
    ExtField(E.application_layer_protocol_negotiation, "alpn_protocol", encode_alpn_selected,
             decode_alpn_selected),
    ExtField(E.early_data, "early_data", encode_empty, decode_empty),
    ExtField(E.quic_transport_parameters, "quic_transport_parameters", encode_opaque,
             decode_opaque),
)  # fmt: skip
_EE_ALLOWED = frozenset(f.ext_type for f in _EE_FIELDS)

_CR_FIELDS: tuple[ExtField, ...] = (
    ExtField(E.signature_algorithms, "signature_algorithms", encode_uint16_list,
             decode_uint16_list),
    ExtField(E.signature_algorithms_cert, "signature_algorithms_cert", encode_uint16_list,
             decode_uint16_list),
)  # fmt: skip
_CR_ALLOWED = frozenset({E.server_name, E.signature_algorithms, E.signature_algorithms_cert})

_NST_FIELDS: tuple[ExtField, ...] = (
    ExtField(E.early_data, "max_early_data_size", encode_max_early_data, decode_max_early_data),
)
_NST_ALLOWED = frozenset({E.early_data})
_CT_ALLOWED: frozenset[int] = frozenset()
del E


def _vector(buf: Buffer, length_size: int, minimum: int, maximum: int, what: str) -> bytes:
    data = buf.pull_vector(length_size)
    if not minimum <= len(data) <= maximum:
        raise decode_error(f"{what}: length {len(data)} not in {minimum}..{maximum}")
    return data


def _optional_extensions(buf: Buffer) -> list[RawExtension]:
    """Extensions may be absent entirely in (TLS 1.2) hellos (RFC 9846 §4.2.2)."""
    return [] if buf.eof() else parse_extension_block(buf)


# -- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientHello:
    """ClientHello (RFC 9846 §4.2.2) with its typed extensions."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.client_hello

    random: bytes
    cipher_suites: tuple[int, ...]
    legacy_session_id: bytes = b""
    legacy_compression_methods: bytes = b"\x00"
    legacy_version: int = TLS12
    server_name: str | None = None
    supported_versions: tuple[int, ...] | None = None
    supported_groups: tuple[int, ...] | None = None
    key_share: tuple[KeyShareEntry, ...] | None = None
    signature_algorithms: tuple[int, ...] | None = None
    signature_algorithms_cert: tuple[int, ...] | None = None
    alpn_protocols: tuple[bytes, ...] | None = None
    psk_key_exchange_modes: tuple[int, ...] | None = None
    early_data: bool = False
    cookie: bytes | None = None
    quic_transport_parameters: bytes | None = None
    pre_shared_key: OfferedPsks | None = None
    other_extensions: tuple[RawExtension, ...] = ()

    def extension_types(self) -> frozenset[int]:
        return _extension_types(self, (*_CH_FIELDS, _CH_PSK), self.other_extensions)

    def encode_body(self) -> bytes:
        buf = Buffer()
        buf.push_uint16(self.legacy_version)
        buf.push_bytes(self.random)
        buf.push_vector(1, self.legacy_session_id)
        buf.push_vector(2, b"".join(c.to_bytes(2, "big") for c in self.cipher_suites))
        buf.push_vector(1, self.legacy_compression_methods)
        buf.push_bytes(_encode_extensions(self, _CH_FIELDS, self.other_extensions, _CH_PSK))
        return buf.data()

    @classmethod
    def decode_body(cls, body: bytes) -> ClientHello:
        def reader(buf: Buffer) -> ClientHello:
            legacy_version = buf.pull_uint16()
            random = buf.pull_bytes(32)
            session_id = _vector(buf, 1, 0, 32, "legacy_session_id")
            suites = _vector(buf, 2, 2, 0xFFFE, "cipher_suites")
            if len(suites) % 2:
                raise decode_error("cipher_suites: odd length")
            compression = _vector(buf, 1, 1, 255, "legacy_compression_methods")
            raw = _optional_extensions(buf)
            # RFC 9846 §4.3.11: pre_shared_key MUST be the last extension.
            for ext_type, _ in raw[:-1]:
                if ext_type == ExtensionType.pre_shared_key:
                    raise TlsAlertError(
                        AlertDescription.illegal_parameter, "pre_shared_key is not last"
                    )
            values, other = _decode_extensions(
                raw, (*_CH_FIELDS, _CH_PSK), _CH_ALLOWED, "ClientHello"
            )
            return cls(
                random=random,
                cipher_suites=tuple(
                    int.from_bytes(suites[i : i + 2], "big") for i in range(0, len(suites), 2)
                ),
                legacy_session_id=session_id,
                legacy_compression_methods=compression,
                legacy_version=legacy_version,
                other_extensions=other,
                **values,
            )

        return read_exact(body, reader, "ClientHello")

    def truncated_for_binders(self) -> bytes:
        """The framed message without the binders list (RFC 9846 §4.3.11.2).

        Length fields keep the values they have with the binders present.
        """
        if self.pre_shared_key is None:
            raise ValueError("ClientHello has no pre_shared_key")
        full = encode_handshake(self)
        return full[: len(full) - self.pre_shared_key.binders_length()]


@dataclass(frozen=True, slots=True)
class ServerHello:
    """ServerHello (RFC 9846 §4.2.3)."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.server_hello

    random: bytes
    cipher_suite: int
    legacy_session_id_echo: bytes = b""
    legacy_compression_method: int = 0
    legacy_version: int = TLS12
    supported_version: int | None = None
    key_share: KeyShareEntry | None = None
    pre_shared_key: int | None = None
    other_extensions: tuple[RawExtension, ...] = ()

    def extension_types(self) -> frozenset[int]:
        return _extension_types(self, _SH_FIELDS, self.other_extensions)

    def encode_body(self) -> bytes:
        return _encode_server_hello(
            self, self.random, _encode_extensions(self, _SH_FIELDS, self.other_extensions)
        )

    @classmethod
    def decode_body(cls, body: bytes) -> ServerHello:
        message = decode_server_hello(body)
        if not isinstance(message, ServerHello):
            raise decode_error("HelloRetryRequest where a ServerHello was expected")
        return message


@dataclass(frozen=True, slots=True)
class HelloRetryRequest:
    """HelloRetryRequest: a ServerHello with the special random (RFC 9846 §4.2.4)."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.server_hello

    cipher_suite: int
    legacy_session_id_echo: bytes = b""
    legacy_compression_method: int = 0
    legacy_version: int = TLS12
    supported_version: int | None = None
    selected_group: int | None = None
    cookie: bytes | None = None
    other_extensions: tuple[RawExtension, ...] = ()

    @property
    def random(self) -> bytes:
        return HRR_RANDOM

    def extension_types(self) -> frozenset[int]:
        return _extension_types(self, _HRR_FIELDS, self.other_extensions)

    def encode_body(self) -> bytes:
        return _encode_server_hello(
            self, HRR_RANDOM, _encode_extensions(self, _HRR_FIELDS, self.other_extensions)
        )

    @classmethod
    def decode_body(cls, body: bytes) -> HelloRetryRequest:
        message = decode_server_hello(body)
        if not isinstance(message, HelloRetryRequest):
            raise decode_error("ServerHello where a HelloRetryRequest was expected")
        return message


def _encode_server_hello(
    msg: ServerHello | HelloRetryRequest, random: bytes, extensions: bytes
) -> bytes:
    buf = Buffer()
    buf.push_uint16(msg.legacy_version)
    buf.push_bytes(random)
    buf.push_vector(1, msg.legacy_session_id_echo)
    buf.push_uint16(msg.cipher_suite)
    buf.push_uint8(msg.legacy_compression_method)
    buf.push_bytes(extensions)
    return buf.data()


def decode_server_hello(body: bytes) -> ServerHello | HelloRetryRequest:
    """Decode a ``server_hello`` body, telling HRR apart by its random (§4.2.3)."""

    def reader(buf: Buffer) -> ServerHello | HelloRetryRequest:
        legacy_version = buf.pull_uint16()
        random = buf.pull_bytes(32)
        session_id = _vector(buf, 1, 0, 32, "legacy_session_id_echo")
        cipher_suite = buf.pull_uint16()
        compression = buf.pull_uint8()
        raw = _optional_extensions(buf)
        if random == HRR_RANDOM:
            values, other = _decode_extensions(raw, _HRR_FIELDS, _HRR_ALLOWED, "HelloRetryRequest")
            return HelloRetryRequest(
                cipher_suite=cipher_suite,
                legacy_session_id_echo=session_id,
                legacy_compression_method=compression,
                legacy_version=legacy_version,
                other_extensions=other,
                **values,
            )
        values, other = _decode_extensions(raw, _SH_FIELDS, _SH_ALLOWED, "ServerHello")
        return ServerHello(
            random=random,
            cipher_suite=cipher_suite,
            legacy_session_id_echo=session_id,
            legacy_compression_method=compression,
            legacy_version=legacy_version,
            other_extensions=other,
            **values,
        )

    return read_exact(body, reader, "ServerHello")


@dataclass(frozen=True, slots=True)
class EncryptedExtensions:
    """EncryptedExtensions (RFC 9846 §4.4.1)."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.encrypted_extensions

    server_name_ack: bool = False
    supported_groups: tuple[int, ...] | None = None
    alpn_protocol: bytes | None = None
    early_data: bool = False
    quic_transport_parameters: bytes | None = None
    other_extensions: tuple[RawExtension, ...] = ()

    def extension_types(self) -> frozenset[int]:
        return _extension_types(self, _EE_FIELDS, self.other_extensions)

    def encode_body(self) -> bytes:
        return _encode_extensions(self, _EE_FIELDS, self.other_extensions)

    @classmethod
    def decode_body(cls, body: bytes) -> EncryptedExtensions:
        def reader(buf: Buffer) -> EncryptedExtensions:
            raw = parse_extension_block(buf)
            values, other = _decode_extensions(raw, _EE_FIELDS, _EE_ALLOWED, "EE")
            return cls(other_extensions=other, **values)

        return read_exact(body, reader, "EncryptedExtensions")


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """CertificateRequest (RFC 9846 §4.4.2)."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.certificate_request

    certificate_request_context: bytes = b""
    signature_algorithms: tuple[int, ...] | None = None
    signature_algorithms_cert: tuple[int, ...] | None = None
    other_extensions: tuple[RawExtension, ...] = ()

    def encode_body(self) -> bytes:
        return (
            bytes((len(self.certificate_request_context),))
            + self.certificate_request_context
            + _encode_extensions(self, _CR_FIELDS, self.other_extensions)
        )

    @classmethod
    def decode_body(cls, body: bytes) -> CertificateRequest:
        def reader(buf: Buffer) -> CertificateRequest:
            context = buf.pull_vector(1)
            raw = parse_extension_block(buf)
            values, other = _decode_extensions(raw, _CR_FIELDS, _CR_ALLOWED, "CR")
            return cls(certificate_request_context=context, other_extensions=other, **values)

        return read_exact(body, reader, "CertificateRequest")


@dataclass(frozen=True, slots=True)
class CertificateEntry:
    """CertificateEntry (RFC 9846 §4.5.1): DER certificate and its raw extensions."""

    cert_data: bytes
    extensions: tuple[RawExtension, ...] = ()


@dataclass(frozen=True, slots=True)
class Certificate:
    """Certificate (RFC 9846 §4.5.1), X.509 certificate type only."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.certificate

    certificate_request_context: bytes = b""
    certificate_list: tuple[CertificateEntry, ...] = ()

    def encode_body(self) -> bytes:
        entries = b"".join(
            len(e.cert_data).to_bytes(3, "big") + e.cert_data + encode_extension_block(e.extensions)
            for e in self.certificate_list
        )
        return (
            bytes((len(self.certificate_request_context),))
            + self.certificate_request_context
            + len(entries).to_bytes(3, "big")
            + entries
        )

    @classmethod
    def decode_body(cls, body: bytes) -> Certificate:
        def reader(buf: Buffer) -> Certificate:
            context = buf.pull_vector(1)
            entries_buf = Buffer(buf.pull_vector(3))
            entries: list[CertificateEntry] = []
            while not entries_buf.eof():
                cert_data = _vector(entries_buf, 3, 1, 0xFFFFFF, "cert_data")
                raw = parse_extension_block(entries_buf)
                _, other = _decode_extensions(raw, (), _CT_ALLOWED, "CertificateEntry")
                entries.append(CertificateEntry(cert_data, other))
            return cls(context, tuple(entries))

        return read_exact(body, reader, "Certificate")


@dataclass(frozen=True, slots=True)
class CertificateVerify:
    """CertificateVerify (RFC 9846 §4.5.2)."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.certificate_verify

    algorithm: int
    signature: bytes

    def encode_body(self) -> bytes:
        return (
            self.algorithm.to_bytes(2, "big")
            + len(self.signature).to_bytes(2, "big")
            + self.signature
        )

    @classmethod
    def decode_body(cls, body: bytes) -> CertificateVerify:
        def reader(buf: Buffer) -> CertificateVerify:
            algorithm = buf.pull_uint16()
            return cls(algorithm, buf.pull_vector(2))

        return read_exact(body, reader, "CertificateVerify")


@dataclass(frozen=True, slots=True)
class Finished:
    """Finished (RFC 9846 §4.5.3); the length (Hash.length) is checked by the logic."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.finished

    verify_data: bytes

    def encode_body(self) -> bytes:
        return self.verify_data

    @classmethod
    def decode_body(cls, body: bytes) -> Finished:
        return cls(bytes(body))


@dataclass(frozen=True, slots=True)
class NewSessionTicket:
    """NewSessionTicket (RFC 9846 §4.7.1)."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.new_session_ticket

    ticket_lifetime: int
    ticket_age_add: int
    ticket_nonce: bytes
    ticket: bytes
    max_early_data_size: int | None = None
    other_extensions: tuple[RawExtension, ...] = ()

    def encode_body(self) -> bytes:
        buf = Buffer()
        buf.push_uint32(self.ticket_lifetime)
        buf.push_uint32(self.ticket_age_add)
        buf.push_vector(1, self.ticket_nonce)
        buf.push_vector(2, self.ticket)
        buf.push_bytes(_encode_extensions(self, _NST_FIELDS, self.other_extensions))
        return buf.data()

    @classmethod
    def decode_body(cls, body: bytes) -> NewSessionTicket:
        def reader(buf: Buffer) -> NewSessionTicket:
            lifetime = buf.pull_uint32()
            age_add = buf.pull_uint32()
            nonce = buf.pull_vector(1)
            ticket = _vector(buf, 2, 1, 0xFFFF, "ticket")
            raw = parse_extension_block(buf)
            values, other = _decode_extensions(raw, _NST_FIELDS, _NST_ALLOWED, "NST")
            return cls(lifetime, age_add, nonce, ticket, other_extensions=other, **values)

        return read_exact(body, reader, "NewSessionTicket")


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """KeyUpdate (RFC 9846 §4.7.3); forbidden in QUIC (RFC 9001 §6)."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.key_update

    request_update: int = 0

    def encode_body(self) -> bytes:
        return bytes((self.request_update,))

    @classmethod
    def decode_body(cls, body: bytes) -> KeyUpdate:
        value = read_exact(body, Buffer.pull_uint8, "KeyUpdate")
        if value not in (0, 1):
            raise TlsAlertError(AlertDescription.illegal_parameter, "bad request_update")
        return cls(value)


@dataclass(frozen=True, slots=True)
class EndOfEarlyData:
    """EndOfEarlyData (RFC 9846 §4.6); never sent in QUIC (RFC 9001 §8.3)."""

    msg_type: ClassVar[HandshakeType] = HandshakeType.end_of_early_data

    def encode_body(self) -> bytes:
        return b""

    @classmethod
    def decode_body(cls, body: bytes) -> EndOfEarlyData:
        if body:
            raise decode_error("EndOfEarlyData must be empty")
        return cls()


HandshakeMessage: TypeAlias = (
    ClientHello
    | ServerHello
    | HelloRetryRequest
    | EncryptedExtensions
    | CertificateRequest
    | Certificate
    | CertificateVerify
    | Finished
    | NewSessionTicket
    | KeyUpdate
    | EndOfEarlyData
)

_DECODERS: dict[int, Callable[[bytes], HandshakeMessage]] = {
    HandshakeType.client_hello: ClientHello.decode_body,
    HandshakeType.server_hello: decode_server_hello,
    HandshakeType.encrypted_extensions: EncryptedExtensions.decode_body,
    HandshakeType.certificate_request: CertificateRequest.decode_body,
    HandshakeType.certificate: Certificate.decode_body,
    HandshakeType.certificate_verify: CertificateVerify.decode_body,
    HandshakeType.finished: Finished.decode_body,
    HandshakeType.new_session_ticket: NewSessionTicket.decode_body,
    HandshakeType.key_update: KeyUpdate.decode_body,
    HandshakeType.end_of_early_data: EndOfEarlyData.decode_body,
}


# -- framing ----------------------------------------------------------------------------


def encode_handshake(message: HandshakeMessage) -> bytes:
    """``msg_type(1) || uint24 length || body`` (RFC 9846 §4)."""
    body = message.encode_body()
    if len(body) > 0xFFFFFF:
        raise ValueError("handshake message too long")
    return bytes((message.msg_type,)) + len(body).to_bytes(3, "big") + body


def decode_message(msg_type: int, body: bytes) -> HandshakeMessage:
    """Decode one message body; an unknown type is an ``unexpected_message`` (§4)."""
    decoder = _DECODERS.get(msg_type)
    if decoder is None:
        raise TlsAlertError(
            AlertDescription.unexpected_message, f"unknown handshake type {msg_type}"
        )
    return decoder(body)


def decode_handshake(data: bytes) -> HandshakeMessage:
    """Decode exactly one framed handshake message."""
    if len(data) < 4:
        raise decode_error("handshake header truncated")
    length = int.from_bytes(data[1:4], "big")
    if len(data) != 4 + length:
        raise decode_error("handshake length does not match the data")
    return decode_message(data[0], bytes(data[4:]))


def message_hash(client_hello_hash: bytes) -> bytes:
    """Synthetic ``message_hash`` message replacing ClientHello1 (RFC 9846 §4.1)."""
    return (
        bytes((HandshakeType.message_hash,))
        + len(client_hello_hash).to_bytes(3, "big")
        + client_hello_hash
    )


@dataclass(slots=True)
class HandshakeReader:
    """Reassembles one encryption level's handshake byte stream into messages.

    :meth:`feed` appends bytes (any chunking); :meth:`next_message` returns
    ``(msg_type, body, raw)`` for the next complete message or None. ``pending`` is
    the number of buffered bytes not yet returned (RFC 9846 §5.1: no message may span a
    key change, so the handshake checks it is zero when keys change).
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    _buffer: bytearray = field(default_factory=bytearray)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    def next_message(self) -> tuple[int, bytes, bytes] | None:
        buf = self._buffer
        if len(buf) < 4:
            return None
        length = int.from_bytes(buf[1:4], "big")
        if length > self.max_message_size:
            raise decode_error(f"handshake message of {length} bytes exceeds our limit")
        end = 4 + length
        if len(buf) < end:
            return None
        raw = bytes(buf[:end])
        del buf[:end]
        return raw[0], raw[4:], raw
