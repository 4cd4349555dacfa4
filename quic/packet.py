"""QUIC packet headers: parse and build (RFC 8999, RFC 9000 §17, RFC 9369 §3.2).

Theory of operation
-------------------
This module is a pure codec for the *unprotected* parts of packet headers. It knows
nothing of keys: header protection (RFC 9001 §5.4) hides the low bits of the first
byte and the packet number, so :func:`parse_header` stops at the packet-number field
and reports where it starts (``pn_offset``); the protection layer removes header
protection, learns the packet-number length and decrypts ``data[pn_offset:end]``.

A UDP datagram may hold several coalesced packets (RFC 9000 §12.2). The receiver
loops::

    pos = 0
    while pos < len(datagram):
        header = parse_header(datagram, pos, short_dcid_len)
        ...  # unprotect datagram[pos:header.end]
        pos = header.end

Long headers of v1/v2 Initial, 0-RTT and Handshake packets carry a Length field, so
``end`` is exact; a short-header, Retry or Version Negotiation packet always runs to
the end of the datagram. The long-header type bits differ between QUIC v1 and v2
(RFC 9369 §3.2); both directions of that mapping are tables
(:data:`LONG_TYPE_BITS` and :data:`LONG_TYPE_FROM_BITS`).

Packets of versions this module does not know are parsed per the invariants
(RFC 8999 §5.1: version and connection IDs of up to 255 bytes), with
``packet_type=None``, so the endpoint can answer with Version Negotiation.

Errors
~~~~~~
Every malformed header raises :class:`~quic.errors.QuicProtocolError` with
``PROTOCOL_VIOLATION`` — truncated input, a Length running past the datagram, a
connection ID longer than 20 bytes in a v1/v2 packet, a zero fixed bit. These are
never connection errors: the endpoint catches the exception and *drops* the packet
(and, for a coalesced datagram, the rest of the datagram), RFC 9000 §12.2 and §17.2.
A single error code keeps that handling uniform.

Builders write unprotected headers; the caller appends the payload and applies
packet and header protection.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from quic.buffer import decode_varint, encode_varint, encode_varint_size, varint_size
from quic.errors import BufferReadError, QuicProtocolError, TransportErrorCode
from quic.versions import QuicVersion

__all__ = [
    "LONG_TYPE_BITS",
    "LONG_TYPE_FROM_BITS",
    "MAX_CID_LENGTH",
    "RETRY_INTEGRITY_TAG_SIZE",
    "STATELESS_RESET_MIN_SIZE",
    "STATELESS_RESET_TOKEN_SIZE",
    "PacketHeader",
    "PacketType",
    "encode_long_header",
    "encode_retry",
    "encode_short_header",
    "encode_version_negotiation",
    "long_header_size",
    "looks_like_stateless_reset",
    "parse_header",
    "parse_version_negotiation",
    "peek_dcid",
    "retry_pseudo_packet",
    "starts_with_initial",
    "stateless_reset_token",
]

#: Connection IDs of QUIC v1/v2 are at most 20 bytes (RFC 9000 §17.2).
MAX_CID_LENGTH = 20
#: Retry Integrity Tag length (RFC 9001 §5.8).
RETRY_INTEGRITY_TAG_SIZE = 16
#: Stateless reset token length (RFC 9000 §10.3).
STATELESS_RESET_TOKEN_SIZE = 16
#: Smallest datagram that can be a stateless reset: 5 bytes + token (RFC 9000 §10.3).
STATELESS_RESET_MIN_SIZE = 21

_HEADER_FORM_BIT = 0x80
_FIXED_BIT = 0x40
_SPIN_BIT = 0x20
_KEY_PHASE_BIT = 0x04
_V1 = int(QuicVersion.VERSION_1)
_V2 = int(QuicVersion.VERSION_2)

_unpack_version = struct.Struct("!L").unpack_from
_pack_version = struct.Struct("!L").pack
_pack_first_version = struct.Struct("!BL").pack


class PacketType(IntEnum):
    """Version-independent packet types; wire bits come from :data:`LONG_TYPE_BITS`."""

    INITIAL = 0
    ZERO_RTT = 1
    HANDSHAKE = 2
    RETRY = 3
    VERSION_NEGOTIATION = 4
    ONE_RTT = 5


#: Long Packet Type bits (mask 0x30 >> 4) per version: RFC 9000 §17.2 Table 5,
#: RFC 9369 §3.2.
LONG_TYPE_BITS: dict[int, dict[PacketType, int]] = {
    _V1: {
        PacketType.INITIAL: 0,
        PacketType.ZERO_RTT: 1,
        PacketType.HANDSHAKE: 2,
        PacketType.RETRY: 3,
    },
    _V2: {
        PacketType.INITIAL: 1,
        PacketType.ZERO_RTT: 2,
        PacketType.HANDSHAKE: 3,
        PacketType.RETRY: 0,
    },
}

#: Reverse of :data:`LONG_TYPE_BITS`: version -> 4-tuple indexed by the type bits.
LONG_TYPE_FROM_BITS: dict[int, tuple[PacketType, ...]] = {
    version: tuple(sorted(table, key=table.__getitem__))
    for version, table in LONG_TYPE_BITS.items()
}


@dataclass(frozen=True, slots=True)
class PacketHeader:
    """One parsed (still protected) packet header.

    ``version`` is ``None`` for short headers (the header does not carry it) and 0
    for Version Negotiation. ``packet_type`` is ``None`` for long headers of a version
    this module does not know (the endpoint answers with Version Negotiation).
    ``first_byte`` is the byte as received (its low bits are header-protected).
    ``pn_offset`` is the absolute offset of the packet-number field in the datagram;
    Retry, Version Negotiation and unknown-version packets have no (known) packet
    number and report ``pn_offset == end``. ``end`` is the absolute offset just past
    this packet. The codec does not check that ``end - pn_offset`` leaves room for a
    packet number and header-protection sample; the protection layer does.
    """

    is_long: bool
    version: int | None
    packet_type: PacketType | None
    first_byte: int
    dcid: bytes
    scid: bytes
    pn_offset: int
    end: int
    token: bytes = b""
    integrity_tag: bytes = b""
    supported_versions: tuple[int, ...] = ()


def _drop(reason: str) -> QuicProtocolError:
    return QuicProtocolError(TransportErrorCode.PROTOCOL_VIOLATION, reason)


def parse_header(
    data: bytes | bytearray | memoryview,
    pos: int = 0,
    short_dcid_len: int = 0,
    *,
    allow_fixed_bit_zero: bool = False,
) -> PacketHeader:
    """Parse the header of the packet starting at ``data[pos]``.

    ``short_dcid_len`` is the length of the connection IDs this endpoint issues; a
    short header does not carry it (RFC 8999 §5.2). ``allow_fixed_bit_zero`` is for an
    endpoint that negotiated RFC 9287 (greasing the QUIC bit). Raises
    :class:`QuicProtocolError` (PROTOCOL_VIOLATION) for anything malformed; the caller
    drops the packet.
    """
    length = len(data)
    if pos >= length:
        raise _drop("empty packet")
    first = data[pos]
    if not first & _HEADER_FORM_BIT:
        return _parse_short(data, pos, first, short_dcid_len, allow_fixed_bit_zero)
    # RFC 8999 §5.1: first byte, version, DCID length, DCID, SCID length, SCID.
    if pos + 6 > length:
        raise _drop("long header truncated")
    version: int = _unpack_version(data, pos + 1)[0]
    dcid_len = data[pos + 5]
    known = version in LONG_TYPE_FROM_BITS
    if known and dcid_len > MAX_CID_LENGTH:
        raise _drop("destination connection ID too long")  # RFC 9000 §17.2
    scid_len_pos = pos + 6 + dcid_len
    if scid_len_pos >= length:
        raise _drop("long header truncated")
    scid_len = data[scid_len_pos]
    if known and scid_len > MAX_CID_LENGTH:
        raise _drop("source connection ID too long")  # RFC 9000 §17.2
    cursor = scid_len_pos + 1 + scid_len
    if cursor > length:
        raise _drop("long header truncated")
    dcid = bytes(data[pos + 6 : scid_len_pos])
    scid = bytes(data[scid_len_pos + 1 : cursor])
    if version == 0:
        return _parse_vn_body(data, first, dcid, scid, cursor)
    if not known:
        # RFC 8999 §5.1: the rest is version specific; it runs to the datagram end.
        return PacketHeader(True, version, None, first, dcid, scid, length, length)
    if not first & _FIXED_BIT and not allow_fixed_bit_zero:
        raise _drop("fixed bit is zero")  # RFC 9000 §17.2
    packet_type = LONG_TYPE_FROM_BITS[version][(first & 0x30) >> 4]
    if packet_type is PacketType.RETRY:
        return _parse_retry_body(data, first, version, dcid, scid, cursor)
    return _parse_long_body(data, first, version, packet_type, dcid, scid, cursor)


def _parse_short(
    data: bytes | bytearray | memoryview,
    pos: int,
    first: int,
    dcid_len: int,
    allow_fixed_bit_zero: bool,
) -> PacketHeader:
    # RFC 9000 §17.3.1: a 1-RTT packet; fixed bit must be 1.
    if not first & _FIXED_BIT and not allow_fixed_bit_zero:
        raise _drop("fixed bit is zero")
    pn_offset = pos + 1 + dcid_len
    length = len(data)
    if pn_offset > length:
        raise _drop("short header truncated")
    return PacketHeader(
        False,
        None,
        PacketType.ONE_RTT,
        first,
        bytes(data[pos + 1 : pn_offset]),
        b"",
        pn_offset,
        length,
    )


def _parse_long_body(
    data: bytes | bytearray | memoryview,
    first: int,
    version: int,
    packet_type: PacketType,
    dcid: bytes,
    scid: bytes,
    cursor: int,
) -> PacketHeader:
    token = b""
    try:
        if packet_type is PacketType.INITIAL:
            # RFC 9000 §17.2.2: Token Length (i), Token (..).
            token_len, cursor = decode_varint(data, cursor)
            token_end = cursor + token_len
            if token_end > len(data):
                raise _drop("token runs past the datagram")
            token = bytes(data[cursor:token_end])
            cursor = token_end
        # RFC 9000 §17.2: Length (i) covers packet number and payload.
        payload_len, pn_offset = decode_varint(data, cursor)
    except BufferReadError:
        raise _drop("long header truncated") from None
    end = pn_offset + payload_len
    if end > len(data):
        raise _drop("Length runs past the datagram")
    return PacketHeader(True, version, packet_type, first, dcid, scid, pn_offset, end, token)


def _parse_retry_body(
    data: bytes | bytearray | memoryview,
    first: int,
    version: int,
    dcid: bytes,
    scid: bytes,
    cursor: int,
) -> PacketHeader:
    # RFC 9000 §17.2.5: Retry Token (..), Retry Integrity Tag (128); whole datagram.
    length = len(data)
    tag_start = length - RETRY_INTEGRITY_TAG_SIZE
    if tag_start < cursor:
        raise _drop("Retry packet truncated")
    if tag_start == cursor:
        # RFC 9000 §17.2.5.2: a client MUST discard a Retry with an empty token.
        raise _drop("Retry token is empty")
    return PacketHeader(
        True,
        version,
        PacketType.RETRY,
        first,
        dcid,
        scid,
        length,
        length,
        token=bytes(data[cursor:tag_start]),
        integrity_tag=bytes(data[tag_start:length]),
    )


def _parse_vn_body(
    data: bytes | bytearray | memoryview,
    first: int,
    dcid: bytes,
    scid: bytes,
    cursor: int,
) -> PacketHeader:
    # RFC 8999 §6: Supported Version (32) ...; the packet fills the datagram.
    length = len(data)
    if (length - cursor) % 4:
        raise _drop("Version Negotiation list is not a multiple of 4 bytes")
    versions = struct.unpack_from(f"!{(length - cursor) // 4}L", data, cursor)
    return PacketHeader(
        True,
        0,
        PacketType.VERSION_NEGOTIATION,
        first,
        dcid,
        scid,
        length,
        length,
        supported_versions=versions,
    )


def parse_version_negotiation(data: bytes | bytearray | memoryview) -> PacketHeader:
    """Parse a whole datagram that must be a Version Negotiation packet (RFC 8999 §6)."""
    header = parse_header(data, 0)
    if header.packet_type is not PacketType.VERSION_NEGOTIATION:
        raise _drop("not a Version Negotiation packet")
    return header


def peek_dcid(data: bytes | bytearray | memoryview, short_dcid_len: int) -> bytes:
    """Destination connection ID of the first packet in a datagram, for routing.

    Version independent (RFC 8999 §5): long headers carry the length; short headers
    use ``short_dcid_len``. Raises PROTOCOL_VIOLATION if the datagram is too short.
    """
    try:
        if data[0] & _HEADER_FORM_BIT:
            end = 6 + data[5]
            if end > len(data):
                raise _drop("long header truncated")
            return bytes(data[6:end])
    except IndexError:
        raise _drop("header truncated") from None
    end = 1 + short_dcid_len
    if end > len(data):
        raise _drop("short header truncated")
    return bytes(data[1:end])


# -- builders ---------------------------------------------------------------------


def _check_cid(cid: bytes, what: str) -> None:
    if len(cid) > MAX_CID_LENGTH:
        raise ValueError(f"{what} longer than {MAX_CID_LENGTH} bytes")


def long_header_size(
    packet_type: PacketType,
    dcid_len: int,
    scid_len: int,
    token_len: int,
    pn_length: int,
    payload_length_with_pn: int = 0,
) -> int:
    """Size of the header :func:`encode_long_header` writes, packet number included.

    The Length field takes 2 bytes whenever ``payload_length_with_pn`` < 2**14, so the
    size is known before the payload is built.
    """
    size = 7 + dcid_len + scid_len + pn_length
    if packet_type is PacketType.INITIAL:
        size += varint_size(token_len) + token_len
    return size + max(2, varint_size(payload_length_with_pn))


def encode_long_header(
    packet_type: PacketType,
    version: int,
    dcid: bytes,
    scid: bytes,
    token: bytes,
    payload_length_with_pn: int,
    pn_length: int,
    packet_number_truncated: int,
) -> bytes:
    """Unprotected long header of an Initial, 0-RTT or Handshake packet (RFC 9000 §17.2).

    ``payload_length_with_pn`` is the Length field: packet number plus protected
    payload (AEAD tag included). It is written on 2 bytes when it fits (< 16384) so
    the header size is predictable, else minimally. Reserved bits are 0; the packet
    number length goes in the low two bits. ``token`` is only for Initial packets.
    """
    bits_table = LONG_TYPE_BITS.get(version)
    if bits_table is None:
        raise ValueError(f"unsupported version 0x{version:08x}")
    if packet_type is PacketType.RETRY or packet_type not in bits_table:
        raise ValueError(f"{packet_type!r} has no long header with Length")
    if not 1 <= pn_length <= 4:
        raise ValueError("packet number length must be 1..4")
    if not 0 <= packet_number_truncated < 1 << (8 * pn_length):
        raise ValueError("truncated packet number does not fit its length")
    if payload_length_with_pn < pn_length:
        raise ValueError("Length must cover at least the packet number")
    if token and packet_type is not PacketType.INITIAL:
        raise ValueError("only Initial packets carry a token")
    _check_cid(dcid, "DCID")
    _check_cid(scid, "SCID")
    first = 0xC0 | (bits_table[packet_type] << 4) | (pn_length - 1)
    parts = [_pack_first_version(first, version), bytes((len(dcid),)), dcid]
    parts += (bytes((len(scid),)), scid)
    if packet_type is PacketType.INITIAL:
        parts += (encode_varint(len(token)), token)
    if payload_length_with_pn < 0x4000:
        parts.append(encode_varint_size(payload_length_with_pn, 2))
    else:
        parts.append(encode_varint(payload_length_with_pn))
    parts.append(packet_number_truncated.to_bytes(pn_length, "big"))
    return b"".join(parts)


def encode_short_header(
    dcid: bytes,
    pn_length: int,
    truncated_pn: int,
    key_phase: bool | int = 0,
    spin_bit: bool | int = 0,
) -> bytes:
    """Unprotected 1-RTT short header (RFC 9000 §17.3.1), packet number included."""
    if not 1 <= pn_length <= 4:
        raise ValueError("packet number length must be 1..4")
    if not 0 <= truncated_pn < 1 << (8 * pn_length):
        raise ValueError("truncated packet number does not fit its length")
    _check_cid(dcid, "DCID")
    first = _FIXED_BIT | (pn_length - 1)
    if spin_bit:
        first |= _SPIN_BIT
    if key_phase:
        first |= _KEY_PHASE_BIT
    return bytes((first,)) + dcid + truncated_pn.to_bytes(pn_length, "big")


def encode_version_negotiation(
    dcid: bytes,
    scid: bytes,
    versions: tuple[int, ...] | list[int],
    first_byte_random: int = 0,
) -> bytes:
    """A Version Negotiation packet (RFC 8999 §6, RFC 9000 §17.2.1).

    The caller swaps the connection IDs: ``dcid`` is the client's SCID and ``scid``
    the client's DCID. The unused bits take ``first_byte_random``; 0x40 is always set
    so the packet looks like it has the fixed bit (RFC 9000 §17.2.1).
    """
    if len(dcid) > 255 or len(scid) > 255:
        raise ValueError("connection ID longer than 255 bytes")
    first = _HEADER_FORM_BIT | _FIXED_BIT | (first_byte_random & 0x3F)
    parts = [_pack_first_version(first, 0), bytes((len(dcid),)), dcid]
    parts += (bytes((len(scid),)), scid)
    parts.extend(_pack_version(v) for v in versions)
    return b"".join(parts)


def _retry_without_tag(
    version: int, dcid: bytes, scid: bytes, token: bytes, unused_bits: int
) -> bytes:
    bits_table = LONG_TYPE_BITS.get(version)
    if bits_table is None:
        raise ValueError(f"unsupported version 0x{version:08x}")
    _check_cid(dcid, "DCID")
    _check_cid(scid, "SCID")
    if not token:
        raise ValueError("a Retry token must not be empty")  # RFC 9000 §17.2.5.2
    first = 0xC0 | (bits_table[PacketType.RETRY] << 4) | (unused_bits & 0x0F)
    return b"".join(
        (
            _pack_first_version(first, version),
            bytes((len(dcid),)),
            dcid,
            bytes((len(scid),)),
            scid,
            token,
        )
    )


def encode_retry(
    version: int,
    dcid: bytes,
    scid: bytes,
    token: bytes,
    integrity_tag: bytes = b"",
    first_byte_random: int = 0,
) -> bytes:
    """A Retry packet (RFC 9000 §17.2.5); the 4 unused bits take ``first_byte_random``.

    With an empty ``integrity_tag`` this returns the packet *without* a tag, the form
    :func:`retry_pseudo_packet` needs; the protection layer computes the tag
    (RFC 9001 §5.8) and the packet is then built again with it (or the tag appended).
    """
    if integrity_tag and len(integrity_tag) != RETRY_INTEGRITY_TAG_SIZE:
        raise ValueError("Retry Integrity Tag must be 16 bytes")
    return _retry_without_tag(version, dcid, scid, token, first_byte_random) + integrity_tag


def retry_pseudo_packet(original_dcid: bytes, retry_packet_without_tag: bytes) -> bytes:
    """The Retry Pseudo-Packet, input of the Retry Integrity Tag (RFC 9001 §5.8)."""
    if len(original_dcid) > 255:
        raise ValueError("original DCID longer than 255 bytes")
    return bytes((len(original_dcid),)) + original_dcid + retry_packet_without_tag


# -- stateless reset ---------------------------------------------------------------


def looks_like_stateless_reset(data: bytes | bytearray | memoryview) -> bool:
    """Could ``data`` be a Stateless Reset? (RFC 9000 §10.3).

    True when the datagram is at least 21 bytes; the caller then compares
    :func:`stateless_reset_token` in constant time (``hmac.compare_digest``) with the
    tokens of connection IDs it has used. Any header form qualifies: RFC 9000 §10.3
    requires treating any packet ending in a valid token as a reset.
    """
    return len(data) >= STATELESS_RESET_MIN_SIZE


def stateless_reset_token(data: bytes | bytearray | memoryview) -> bytes:
    """The candidate stateless reset token: the last 16 bytes (RFC 9000 §10.3.1)."""
    if len(data) < STATELESS_RESET_MIN_SIZE:
        raise ValueError("datagram too short to be a stateless reset")
    return bytes(data[-STATELESS_RESET_TOKEN_SIZE:])


def starts_with_initial(data: bytes) -> bool:
    """Cheap first-byte check: does the datagram start with a long-header Initial of a
    version we know (v1 and v2 use different type bits, RFC 9369 §3.2)?"""
    if len(data) < 5 or not data[0] & 0x80:
        return False
    types = LONG_TYPE_FROM_BITS.get(int.from_bytes(data[1:5], "big"))
    return types is not None and types[(data[0] & 0x30) >> 4] is PacketType.INITIAL
