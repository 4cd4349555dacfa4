"""TLS 1.3 extension codecs (RFC 9846 §4.3, RFC 6066 §3, RFC 7301 §3.1, RFC 9001 §8.2).

Theory of operation
-------------------
An extension block is ``Extension extensions<0..2^16-1>`` where each ``Extension`` is
``uint16 extension_type || opaque extension_data<0..2^16-1>`` (RFC 9846 §4.3).
:func:`parse_extension_block` splits a block into ``(type, data)`` pairs, rejecting a
repeated type with ``illegal_parameter`` ("There MUST NOT be more than one extension of
the same type in a given extension block", §4.3).

Each extension we implement has a pair of pure functions ``encode_X(value) -> bytes``
and ``decode_X(data) -> value``; the message codec (:mod:`quic.tls.messages`) maps the
extension types allowed in each message to typed dataclass fields with the tables in
that module. Extensions we do not implement are kept as raw ``(type, data)`` pairs and
ignored by the handshake logic ("Servers MUST ignore unrecognized extensions", §4.2.2).

Every decoder consumes its input exactly: a short read, an out-of-range vector length or
trailing bytes raise ``TlsAlertError(decode_error)`` ("receivers MUST abort the
handshake with a decode_error alert if there is data left over after parsing", §4.3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

from quic.buffer import Buffer
from quic.errors import BufferReadError
from quic.tls.alerts import AlertDescription, TlsAlertError

__all__ = [
    "RECOGNIZED_EXTENSIONS",
    "ExtensionType",
    "KeyShareEntry",
    "OfferedPsks",
    "PskIdentity",
    "PskKeyExchangeMode",
    "RawExtension",
    "decode_alpn",
    "decode_alpn_selected",
    "decode_cookie",
    "decode_empty",
    "decode_error",
    "decode_key_share_client",
    "decode_key_share_hrr",
    "decode_key_share_server",
    "decode_max_early_data",
    "decode_offered_psks",
    "decode_opaque",
    "decode_psk_modes",
    "decode_selected_identity",
    "decode_server_name",
    "decode_uint16_list",
    "decode_versions_client",
    "decode_versions_server",
    "encode_alpn",
    "encode_alpn_selected",
    "encode_binders",
    "encode_cookie",
    "encode_empty",
    "encode_extension_block",
    "encode_key_share_client",
    "encode_key_share_hrr",
    "encode_key_share_server",
    "encode_max_early_data",
    "encode_offered_psks",
    "encode_opaque",
    "encode_psk_modes",
    "encode_selected_identity",
    "encode_server_name",
    "encode_uint16_list",
    "encode_versions_client",
    "encode_versions_server",
    "parse_extension_block",
    "read_exact",
]

T = TypeVar("T")

#: A raw extension we do not interpret: ``(extension_type, extension_data)``.
RawExtension = tuple[int, bytes]


class ExtensionType(IntEnum):
    """ExtensionType values (RFC 9846 §4.3; RFC 9001 §8.2 for 0x39)."""

    server_name = 0
    status_request = 5
    supported_groups = 10
    signature_algorithms = 13
    application_layer_protocol_negotiation = 16
    padding = 21
    pre_shared_key = 41
    early_data = 42
    supported_versions = 43
    cookie = 44
    psk_key_exchange_modes = 45
    certificate_authorities = 47
    oid_filters = 48
    post_handshake_auth = 49
    signature_algorithms_cert = 50
    key_share = 51
    quic_transport_parameters = 57


#: Extensions this codec interprets. A recognised extension appearing in a message for
#: which RFC 9846 §4.3's table does not list it is an ``illegal_parameter``; any other
#: type is kept raw.
RECOGNIZED_EXTENSIONS: frozenset[int] = frozenset(
    {
        ExtensionType.server_name,
        ExtensionType.supported_groups,
        ExtensionType.signature_algorithms,
        ExtensionType.application_layer_protocol_negotiation,
        ExtensionType.pre_shared_key,
        ExtensionType.early_data,
        ExtensionType.supported_versions,
        ExtensionType.cookie,
        ExtensionType.psk_key_exchange_modes,
        ExtensionType.signature_algorithms_cert,
        ExtensionType.key_share,
        ExtensionType.quic_transport_parameters,
    }
)


class PskKeyExchangeMode(IntEnum):
    """PskKeyExchangeMode (RFC 9846 §4.3.9)."""

    psk_ke = 0
    psk_dhe_ke = 1


@dataclass(frozen=True, slots=True)
class KeyShareEntry:
    """``KeyShareEntry`` (RFC 9846 §4.3.8): a group and its opaque key_exchange."""

    group: int
    key_exchange: bytes


@dataclass(frozen=True, slots=True)
class PskIdentity:
    """``PskIdentity`` (RFC 9846 §4.3.11)."""

    identity: bytes
    obfuscated_ticket_age: int


@dataclass(frozen=True, slots=True)
class OfferedPsks:
    """``OfferedPsks`` (RFC 9846 §4.3.11): identities and their binders, same order."""

    identities: tuple[PskIdentity, ...]
    binders: tuple[bytes, ...]

    def binders_length(self) -> int:
        """Encoded size of the ``binders`` vector including its 2-byte length (§4.3.11.2)."""
        return 2 + sum(1 + len(b) for b in self.binders)


# -- errors and low-level helpers -------------------------------------------------------


def decode_error(reason: str) -> TlsAlertError:
    """The alert raised for any malformed input (RFC 9846 §6.2 decode_error)."""
    return TlsAlertError(AlertDescription.decode_error, reason)


def read_exact(data: bytes, reader: Callable[[Buffer], T], what: str) -> T:
    """Run ``reader`` over ``data``; it must consume everything (RFC 9846 §4.3)."""
    buf = Buffer(data)
    try:
        value = reader(buf)
    except BufferReadError as exc:
        raise decode_error(f"{what}: truncated ({exc})") from None
    if not buf.eof():
        raise decode_error(f"{what}: {buf.remaining} trailing bytes")
    return value


def _vector(buf: Buffer, length_size: int, minimum: int, maximum: int, what: str) -> bytes:
    """Read a TLS vector and check its length bounds (RFC 9846 §3.4)."""
    data = buf.pull_vector(length_size)
    if not minimum <= len(data) <= maximum:
        raise decode_error(f"{what}: length {len(data)} not in {minimum}..{maximum}")
    return data


def _uint16s(data: bytes, what: str) -> tuple[int, ...]:
    if len(data) % 2:
        raise decode_error(f"{what}: odd length")
    return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def _pack_uint16s(values: Sequence[int]) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


# -- extension blocks -------------------------------------------------------------------


def parse_extension_block(buf: Buffer) -> list[RawExtension]:
    """Read ``Extension extensions<0..2^16-1>`` (RFC 9846 §4.3).

    Duplicated types raise ``illegal_parameter``; truncation raises BufferReadError
    (converted by the caller through :func:`read_exact`).
    """
    block = buf.pull_vector(2)
    seen: set[int] = set()
    out: list[RawExtension] = []
    pos, end = 0, len(block)
    while pos < end:
        if pos + 4 > end:
            raise BufferReadError("extension header truncated")
        ext_type = (block[pos] << 8) | block[pos + 1]
        data_end = pos + 4 + ((block[pos + 2] << 8) | block[pos + 3])
        if data_end > end:
            raise BufferReadError("extension data truncated")
        if ext_type in seen:
            raise TlsAlertError(
                AlertDescription.illegal_parameter, f"duplicate extension {ext_type}"
            )
        seen.add(ext_type)
        out.append((ext_type, block[pos + 4 : data_end]))
        pos = data_end
    return out


def encode_extension_block(extensions: Sequence[RawExtension]) -> bytes:
    """Serialise ``Extension extensions<0..2^16-1>`` (RFC 9846 §4.3)."""
    body = b"".join(t.to_bytes(2, "big") + len(d).to_bytes(2, "big") + d for t, d in extensions)
    if len(body) > 0xFFFF:
        raise ValueError("extension block too long")
    return len(body).to_bytes(2, "big") + body


# -- individual extensions --------------------------------------------------------------


def encode_empty(value: bool) -> bytes:
    """``struct {} Empty`` (early_data in CH/EE, server_name in EE)."""
    return b""


def decode_empty(data: bytes) -> bool:
    if data:
        raise decode_error("extension must be empty")
    return True


def encode_opaque(value: bytes) -> bytes:
    """Opaque payload (quic_transport_parameters, RFC 9001 §8.2)."""
    return value


def decode_opaque(data: bytes) -> bytes:
    return data


def encode_uint16_list(values: Sequence[int]) -> bytes:
    """``NamedGroupList`` / ``SignatureSchemeList``: ``uint16 list<2..2^16-2>``."""
    body = _pack_uint16s(values)
    return len(body).to_bytes(2, "big") + body


def decode_uint16_list(data: bytes) -> tuple[int, ...]:
    """RFC 9846 §4.3.3 (``<2..2^16-2>``) and §4.3.7 (``<2..2^16-1>``)."""

    def reader(buf: Buffer) -> tuple[int, ...]:
        return _uint16s(_vector(buf, 2, 2, 0xFFFF, "uint16 list"), "uint16 list")

    return read_exact(data, reader, "uint16 list")


def encode_versions_client(versions: Sequence[int]) -> bytes:
    """ClientHello ``supported_versions``: ``ProtocolVersion versions<2..254>`` (§4.3.1)."""
    body = _pack_uint16s(versions)
    return bytes((len(body),)) + body


def decode_versions_client(data: bytes) -> tuple[int, ...]:
    def reader(buf: Buffer) -> tuple[int, ...]:
        return _uint16s(_vector(buf, 1, 2, 254, "supported_versions"), "supported_versions")

    return read_exact(data, reader, "supported_versions")


def encode_versions_server(version: int) -> bytes:
    """ServerHello/HRR ``supported_versions``: ``ProtocolVersion selected_version`` (§4.3.1)."""
    return version.to_bytes(2, "big")


def decode_versions_server(data: bytes) -> int:
    return read_exact(data, Buffer.pull_uint16, "supported_versions")


def encode_server_name(host_name: str) -> bytes:
    """ClientHello ``server_name`` with one ``host_name`` entry (RFC 6066 §3)."""
    name = host_name.encode("ascii")
    entry = b"\x00" + len(name).to_bytes(2, "big") + name
    return len(entry).to_bytes(2, "big") + entry


def decode_server_name(data: bytes) -> str:
    """Return the ``host_name`` of a ``ServerNameList`` (RFC 6066 §3).

    Other name types are skipped; a list without exactly one host_name is malformed.
    """

    def reader(buf: Buffer) -> str:
        entries = Buffer(_vector(buf, 2, 1, 0xFFFF, "server_name_list"))
        host: str | None = None
        while not entries.eof():
            name_type = entries.pull_uint8()
            name = _vector(entries, 2, 1, 0xFFFF, "server name")
            if name_type != 0:
                continue
            if host is not None:
                raise decode_error("server_name: more than one host_name")
            try:
                host = name.decode("ascii")
            except UnicodeDecodeError:
                raise decode_error("server_name: host_name is not ASCII") from None
        if host is None:
            raise decode_error("server_name: no host_name")
        return host

    return read_exact(data, reader, "server_name")


def encode_alpn(protocols: Sequence[bytes]) -> bytes:
    """``ProtocolNameList protocol_name_list<2..2^16-1>`` (RFC 7301 §3.1)."""
    body = b"".join(bytes((len(p),)) + p for p in protocols)
    return len(body).to_bytes(2, "big") + body


def decode_alpn(data: bytes) -> tuple[bytes, ...]:
    def reader(buf: Buffer) -> tuple[bytes, ...]:
        names = Buffer(_vector(buf, 2, 2, 0xFFFF, "protocol_name_list"))
        out: list[bytes] = []
        while not names.eof():
            out.append(_vector(names, 1, 1, 255, "ProtocolName"))
        return tuple(out)

    return read_exact(data, reader, "application_layer_protocol_negotiation")


def encode_alpn_selected(protocol: bytes) -> bytes:
    """Server ALPN response: a list with exactly one name (RFC 7301 §3.1)."""
    return encode_alpn((protocol,))


def decode_alpn_selected(data: bytes) -> bytes:
    protocols = decode_alpn(data)
    if len(protocols) != 1:
        raise decode_error("ALPN response must contain exactly one protocol")
    return protocols[0]


def _pull_key_share_entry(buf: Buffer) -> KeyShareEntry:
    group = buf.pull_uint16()
    return KeyShareEntry(group, _vector(buf, 2, 1, 0xFFFF, "key_exchange"))


def _push_key_share_entry(entry: KeyShareEntry) -> bytes:
    return (
        entry.group.to_bytes(2, "big")
        + len(entry.key_exchange).to_bytes(2, "big")
        + entry.key_exchange
    )


def encode_key_share_client(entries: Sequence[KeyShareEntry]) -> bytes:
    """``KeyShareClientHello``: ``KeyShareEntry client_shares<0..2^16-1>`` (§4.3.8)."""
    body = b"".join(_push_key_share_entry(e) for e in entries)
    return len(body).to_bytes(2, "big") + body


def decode_key_share_client(data: bytes) -> tuple[KeyShareEntry, ...]:
    def reader(buf: Buffer) -> tuple[KeyShareEntry, ...]:
        shares = Buffer(buf.pull_vector(2))
        out: list[KeyShareEntry] = []
        while not shares.eof():
            out.append(_pull_key_share_entry(shares))
        return tuple(out)

    return read_exact(data, reader, "key_share")


def encode_key_share_server(entry: KeyShareEntry) -> bytes:
    """``KeyShareServerHello``: a single ``KeyShareEntry`` (§4.3.8)."""
    return _push_key_share_entry(entry)


def decode_key_share_server(data: bytes) -> KeyShareEntry:
    return read_exact(data, _pull_key_share_entry, "key_share")


def encode_key_share_hrr(group: int) -> bytes:
    """``KeyShareHelloRetryRequest``: ``NamedGroup selected_group`` (§4.3.8)."""
    return group.to_bytes(2, "big")


def decode_key_share_hrr(data: bytes) -> int:
    return read_exact(data, Buffer.pull_uint16, "key_share")


def encode_cookie(cookie: bytes) -> bytes:
    """``opaque cookie<1..2^16-1>`` (§4.3.2)."""
    return len(cookie).to_bytes(2, "big") + cookie


def decode_cookie(data: bytes) -> bytes:
    return read_exact(data, lambda b: _vector(b, 2, 1, 0xFFFF, "cookie"), "cookie")


def encode_psk_modes(modes: Sequence[int]) -> bytes:
    """``PskKeyExchangeMode ke_modes<1..255>`` (§4.3.9)."""
    return bytes((len(modes),)) + bytes(modes)


def decode_psk_modes(data: bytes) -> tuple[int, ...]:
    def reader(buf: Buffer) -> tuple[int, ...]:
        return tuple(_vector(buf, 1, 1, 255, "ke_modes"))

    return read_exact(data, reader, "psk_key_exchange_modes")


def encode_max_early_data(size: int) -> bytes:
    """NewSessionTicket ``early_data``: ``uint32 max_early_data_size`` (§4.3.10)."""
    return size.to_bytes(4, "big")


def decode_max_early_data(data: bytes) -> int:
    return read_exact(data, Buffer.pull_uint32, "early_data")


def encode_selected_identity(index: int) -> bytes:
    """ServerHello ``pre_shared_key``: ``uint16 selected_identity`` (§4.3.11)."""
    return index.to_bytes(2, "big")


def decode_selected_identity(data: bytes) -> int:
    return read_exact(data, Buffer.pull_uint16, "pre_shared_key")


def encode_offered_psks(psks: OfferedPsks) -> bytes:
    """ClientHello ``pre_shared_key``: ``OfferedPsks`` (§4.3.11)."""
    ids = b"".join(
        len(i.identity).to_bytes(2, "big") + i.identity + i.obfuscated_ticket_age.to_bytes(4, "big")
        for i in psks.identities
    )
    return len(ids).to_bytes(2, "big") + ids + encode_binders(psks)


def encode_binders(psks: OfferedPsks) -> bytes:
    """The ``binders`` vector of ``psks`` with its 2-byte length: the end of a ClientHello
    that offers PSKs (pre_shared_key is its last extension, §4.3.11)."""
    binders = b"".join(bytes((len(b),)) + b for b in psks.binders)
    return len(binders).to_bytes(2, "big") + binders


def decode_offered_psks(data: bytes) -> OfferedPsks:
    def reader(buf: Buffer) -> OfferedPsks:
        ids_buf = Buffer(_vector(buf, 2, 7, 0xFFFF, "identities"))
        identities: list[PskIdentity] = []
        while not ids_buf.eof():
            identity = _vector(ids_buf, 2, 1, 0xFFFF, "identity")
            identities.append(PskIdentity(identity, ids_buf.pull_uint32()))
        binders_buf = Buffer(_vector(buf, 2, 33, 0xFFFF, "binders"))
        binders: list[bytes] = []
        while not binders_buf.eof():
            binders.append(_vector(binders_buf, 1, 32, 255, "PskBinderEntry"))
        if len(binders) != len(identities):
            raise TlsAlertError(
                AlertDescription.illegal_parameter, "pre_shared_key: binder count mismatch"
            )
        return OfferedPsks(tuple(identities), tuple(binders))

    return read_exact(data, reader, "pre_shared_key")
