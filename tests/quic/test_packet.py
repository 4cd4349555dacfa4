"""Packet header codec (RFC 8999, RFC 9000 §17, RFC 9001 Appendix A, RFC 9369)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from quic.errors import QuicProtocolError, TransportErrorCode
from quic.packet import (
    LONG_TYPE_BITS,
    LONG_TYPE_FROM_BITS,
    PacketHeader,
    PacketType,
    encode_long_header,
    encode_retry,
    encode_short_header,
    encode_version_negotiation,
    long_header_size,
    looks_like_stateless_reset,
    parse_header,
    parse_version_negotiation,
    peek_dcid,
    retry_pseudo_packet,
    stateless_reset_token,
)
from quic.versions import QuicVersion

V1 = int(QuicVersion.VERSION_1)
V2 = int(QuicVersion.VERSION_2)
CLIENT_DCID = bytes.fromhex("8394c8f03e515708")
SERVER_SCID = bytes.fromhex("f067a5502a4262b5")

# RFC 9001 A.2 / RFC 9369 A.2: unprotected client Initial header (Length 1182, pn 2).
CLIENT_INITIAL_V1 = bytes.fromhex("c300000001088394c8f03e5157080000449e00000002")
CLIENT_INITIAL_V2 = bytes.fromhex("d36b3343cf088394c8f03e5157080000449e00000002")
# RFC 9001 A.3 / RFC 9369 A.3: unprotected server Initial header (Length 117, pn 1).
SERVER_INITIAL_V1 = bytes.fromhex("c1000000010008f067a5502a4262b50040750001")
SERVER_INITIAL_V2 = bytes.fromhex("d16b3343cf0008f067a5502a4262b50040750001")
# RFC 9001 A.4 / RFC 9369 A.4: Retry packets.
RETRY_V1 = bytes.fromhex("ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba")
RETRY_V2 = bytes.fromhex("cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6")
# RFC 9001 §5.8 / RFC 9369 §3.3.3: Retry integrity key and nonce.
RETRY_KEYS = {
    V1: ("be0c690b9f66575a1d766b54e368c84e", "461599d35d632bf2239825bb"),
    V2: ("8fb4b01b56ac48e260fbcbcead7ccc92", "d86969bc2d7c6d9990efb04a"),
}


def _assert_dropped(data: bytes, pos: int = 0, short_dcid_len: int = 0) -> None:
    with pytest.raises(QuicProtocolError) as info:
        parse_header(data, pos, short_dcid_len)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION


# -- version-specific type bits ---------------------------------------------------------


def test_type_bits_tables() -> None:
    assert LONG_TYPE_BITS[V1] == {
        PacketType.INITIAL: 0,
        PacketType.ZERO_RTT: 1,
        PacketType.HANDSHAKE: 2,
        PacketType.RETRY: 3,
    }
    assert LONG_TYPE_BITS[V2] == {
        PacketType.INITIAL: 1,
        PacketType.ZERO_RTT: 2,
        PacketType.HANDSHAKE: 3,
        PacketType.RETRY: 0,
    }
    for version, table in LONG_TYPE_BITS.items():
        for packet_type, bits in table.items():
            assert LONG_TYPE_FROM_BITS[version][bits] is packet_type


# -- RFC 9001 / RFC 9369 Appendix A headers ---------------------------------------------


@pytest.mark.parametrize(("header", "version"), [(CLIENT_INITIAL_V1, V1), (CLIENT_INITIAL_V2, V2)])
def test_parse_rfc_client_initial(header: bytes, version: int) -> None:
    datagram = header + bytes(1182 - 4)
    parsed = parse_header(datagram, 0, 8)
    assert parsed == PacketHeader(
        is_long=True,
        version=version,
        packet_type=PacketType.INITIAL,
        first_byte=header[0],
        dcid=CLIENT_DCID,
        scid=b"",
        pn_offset=18,
        end=18 + 1182,
        token=b"",
    )
    assert parsed.end == len(datagram) == 1200
    assert datagram[parsed.pn_offset : parsed.pn_offset + 4] == bytes.fromhex("00000002")


@pytest.mark.parametrize(("header", "version"), [(CLIENT_INITIAL_V1, V1), (CLIENT_INITIAL_V2, V2)])
def test_encode_rfc_client_initial(header: bytes, version: int) -> None:
    encoded = encode_long_header(PacketType.INITIAL, version, CLIENT_DCID, b"", b"", 1182, 4, 2)
    assert encoded == header
    assert long_header_size(PacketType.INITIAL, 8, 0, 0, 4, 1182) == len(header)


@pytest.mark.parametrize(("header", "version"), [(SERVER_INITIAL_V1, V1), (SERVER_INITIAL_V2, V2)])
def test_rfc_server_initial(header: bytes, version: int) -> None:
    assert encode_long_header(PacketType.INITIAL, version, b"", SERVER_SCID, b"", 117, 2, 1) == (
        header
    )
    parsed = parse_header(header + bytes(115), 0)
    assert (parsed.version, parsed.packet_type, parsed.dcid, parsed.scid) == (
        version,
        PacketType.INITIAL,
        b"",
        SERVER_SCID,
    )
    assert parsed.pn_offset == len(header) - 2
    assert parsed.end == parsed.pn_offset + 117


@pytest.mark.parametrize(("packet", "version"), [(RETRY_V1, V1), (RETRY_V2, V2)])
def test_rfc_retry_parse_encode_and_tag(packet: bytes, version: int) -> None:
    parsed = parse_header(packet, 0)
    assert parsed.packet_type is PacketType.RETRY
    assert parsed.version == version
    assert parsed.dcid == b""
    assert parsed.scid == SERVER_SCID
    assert parsed.token == b"token"
    assert parsed.integrity_tag == packet[-16:]
    assert parsed.end == parsed.pn_offset == len(packet)
    rebuilt = encode_retry(
        version, b"", SERVER_SCID, b"token", parsed.integrity_tag, first_byte_random=0x0F
    )
    assert rebuilt == packet
    # The pseudo-packet (RFC 9001 §5.8) authenticates to the RFC's tag.
    without_tag = encode_retry(version, b"", SERVER_SCID, b"token", first_byte_random=0x0F)
    pseudo = retry_pseudo_packet(CLIENT_DCID, without_tag)
    assert pseudo == b"\x08" + CLIENT_DCID + packet[:-16]
    key, nonce = RETRY_KEYS[version]
    tag = AESGCM(bytes.fromhex(key)).encrypt(bytes.fromhex(nonce), b"", pseudo)
    assert tag == parsed.integrity_tag


def test_rfc9001_chacha_short_header() -> None:
    # RFC 9001 A.5: unprotected header 4200bff4 (3-byte pn 0x00bff4, empty DCID).
    assert encode_short_header(b"", 3, 0x00BFF4) == bytes.fromhex("4200bff4")
    parsed = parse_header(bytes.fromhex("4200bff4") + b"payload", 0, 0)
    assert parsed.packet_type is PacketType.ONE_RTT
    assert not parsed.is_long
    assert parsed.version is None
    assert parsed.pn_offset == 1
    assert parsed.end == 4 + 7


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("version", [V1, V2])
@pytest.mark.parametrize(
    "packet_type", [PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE]
)
@pytest.mark.parametrize("pn_length", [1, 2, 3, 4])
def test_long_header_round_trip(version: int, packet_type: PacketType, pn_length: int) -> None:
    token = b"tok" * 5 if packet_type is PacketType.INITIAL else b""
    dcid, scid = b"\x01" * 20, b"\x02" * 3
    payload_len = 50
    header = encode_long_header(
        packet_type, version, dcid, scid, token, payload_len, pn_length, (1 << (8 * pn_length)) - 1
    )
    assert len(header) == long_header_size(packet_type, 20, 3, len(token), pn_length, payload_len)
    assert header[0] & 0x03 == pn_length - 1
    assert header[0] & 0x0C == 0  # reserved bits
    assert (header[0] & 0x30) >> 4 == LONG_TYPE_BITS[version][packet_type]
    packet = header + bytes(payload_len - pn_length)
    parsed = parse_header(packet + b"trailing", 0)
    assert parsed.version == version
    assert parsed.packet_type is packet_type
    assert (parsed.dcid, parsed.scid, parsed.token) == (dcid, scid, token)
    assert parsed.pn_offset == len(header) - pn_length
    assert parsed.end == len(packet)  # stops before trailing data
    assert packet[parsed.pn_offset : len(header)] == b"\xff" * pn_length


def test_long_header_large_length_uses_minimal_varint() -> None:
    header = encode_long_header(PacketType.HANDSHAKE, V1, b"a", b"b", b"", 20000, 2, 7)
    assert len(header) == long_header_size(PacketType.HANDSHAKE, 1, 1, 0, 2, 20000)
    assert header[-6] >> 6 == 2  # 4-byte varint
    parsed = parse_header(header + bytes(20000 - 2), 0)
    assert parsed.end == len(header) - 2 + 20000


def test_long_header_length_two_bytes_even_if_small() -> None:
    header = encode_long_header(PacketType.HANDSHAKE, V1, b"", b"", b"", 5, 1, 0)
    assert header[-3:-1] == b"\x40\x05"


@pytest.mark.parametrize("pn_length", [1, 2, 3, 4])
@pytest.mark.parametrize(("key_phase", "spin"), [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_short_header_round_trip(pn_length: int, key_phase: int, spin: int) -> None:
    dcid = b"\xaa" * 8
    header = encode_short_header(dcid, pn_length, 5, key_phase, spin)
    assert header[0] & 0xC0 == 0x40
    assert bool(header[0] & 0x20) == bool(spin)
    assert bool(header[0] & 0x04) == bool(key_phase)
    assert header[0] & 0x18 == 0
    assert header[0] & 0x03 == pn_length - 1
    packet = header + b"x" * 30
    parsed = parse_header(packet, 0, 8)
    assert parsed.dcid == dcid
    assert parsed.pn_offset == 9
    assert parsed.end == len(packet)
    assert int.from_bytes(packet[9 : 9 + pn_length], "big") == 5


def test_coalesced_datagram() -> None:
    initial = encode_long_header(PacketType.INITIAL, V1, b"d" * 8, b"s" * 8, b"", 30, 2, 0)
    initial += bytes(28)
    handshake = encode_long_header(PacketType.HANDSHAKE, V1, b"d" * 8, b"s" * 8, b"", 25, 1, 0)
    handshake += bytes(24)
    short = encode_short_header(b"d" * 8, 1, 0) + bytes(20)
    datagram = initial + handshake + short
    types = []
    pos = 0
    while pos < len(datagram):
        header = parse_header(datagram, pos, 8)
        types.append(header.packet_type)
        assert header.dcid == b"d" * 8
        pos = header.end
    assert types == [PacketType.INITIAL, PacketType.HANDSHAKE, PacketType.ONE_RTT]
    assert parse_header(datagram, len(initial), 8).end == len(initial) + len(handshake)


def test_memoryview_input() -> None:
    packet = CLIENT_INITIAL_V1 + bytes(1178)
    parsed = parse_header(memoryview(packet), 0, 8)
    assert parsed.dcid == CLIENT_DCID
    assert isinstance(parsed.dcid, bytes)


# -- version negotiation ----------------------------------------------------------------


def test_version_negotiation_round_trip() -> None:
    versions = [V1, V2, 0x1A2A3A4A]
    packet = encode_version_negotiation(b"client-scid", b"client-dcid", versions, 0xFF)
    assert packet[0] == 0xFF  # 0x80 | 0x40 | random low bits
    assert packet[1:5] == b"\x00\x00\x00\x00"
    parsed = parse_version_negotiation(packet)
    assert parsed.packet_type is PacketType.VERSION_NEGOTIATION
    assert parsed.version == 0
    assert parsed.dcid == b"client-scid"
    assert parsed.scid == b"client-dcid"
    assert parsed.supported_versions == tuple(versions)
    assert parsed.end == len(packet)
    assert encode_version_negotiation(b"", b"", [V1], 0)[0] == 0xC0


def test_version_negotiation_explicit_bytes() -> None:
    packet = encode_version_negotiation(b"\x01", b"\x02\x03", [V1], 0x05)
    assert packet == bytes.fromhex("c500000000010102020300000001")


def test_version_negotiation_long_cids_and_bad_length() -> None:
    packet = encode_version_negotiation(b"a" * 255, b"b" * 200, [V1])
    assert parse_header(packet).dcid == b"a" * 255
    _assert_dropped(packet + b"\x00\x00")
    with pytest.raises(ValueError):
        encode_version_negotiation(b"a" * 256, b"", [V1])


def test_version_negotiation_fixed_bit_ignored() -> None:
    packet = bytearray(encode_version_negotiation(b"x", b"y", [V1]))
    packet[0] = 0x80
    assert parse_header(bytes(packet)).supported_versions == (V1,)


def test_parse_version_negotiation_rejects_other_packets() -> None:
    with pytest.raises(QuicProtocolError):
        parse_version_negotiation(RETRY_V1)


# -- invariants and errors ----------------------------------------------------------------


def test_unknown_version_parsed_per_invariants() -> None:
    packet = b"\xc0" + b"\x1a\x2a\x3a\x4a" + b"\x30" + b"D" * 48 + b"\x21" + b"S" * 33 + b"junk"
    parsed = parse_header(packet, 0)
    assert parsed.is_long
    assert parsed.version == 0x1A2A3A4A
    assert parsed.packet_type is None
    assert parsed.dcid == b"D" * 48
    assert parsed.scid == b"S" * 33
    assert parsed.end == len(packet)
    # Fixed bit is version specific: zero is fine for an unknown version.
    assert parse_header(b"\x80" + packet[1:], 0).version == 0x1A2A3A4A


@pytest.mark.parametrize("version", [V1, V2])
def test_connection_id_too_long(version: int) -> None:
    good = encode_long_header(PacketType.HANDSHAKE, version, b"d" * 20, b"s" * 20, b"", 2, 1, 0)
    good += b"\x00"
    parse_header(good)
    long_dcid = good[:5] + b"\x15" + b"d" * 21 + good[26:]
    _assert_dropped(long_dcid)
    long_scid = good[:26] + b"\x15" + b"s" * 21 + good[47:]
    _assert_dropped(long_scid)


def test_fixed_bit_zero() -> None:
    packet = CLIENT_INITIAL_V1 + bytes(1178)
    cleared = bytes((packet[0] & ~0x40,)) + packet[1:]
    _assert_dropped(cleared, 0, 8)
    assert parse_header(cleared, 0, 8, allow_fixed_bit_zero=True).packet_type is PacketType.INITIAL
    short = encode_short_header(b"12345678", 1, 0) + bytes(20)
    short_cleared = bytes((short[0] & ~0x40,)) + short[1:]
    _assert_dropped(short_cleared, 0, 8)
    assert parse_header(short_cleared, 0, 8, allow_fixed_bit_zero=True).dcid == b"12345678"


def test_empty_and_out_of_range_position() -> None:
    _assert_dropped(b"")
    _assert_dropped(CLIENT_INITIAL_V1, len(CLIENT_INITIAL_V1))


def test_retry_empty_token_and_too_short() -> None:
    _assert_dropped(RETRY_V1[:15] + RETRY_V1[-16:])  # header + tag, no token
    _assert_dropped(RETRY_V1[:15] + RETRY_V1[-10:])  # tag truncated


def _truncation_cases() -> list[tuple[str, bytes, int, int]]:
    """(name, packet, short_dcid_len, first length that parses)."""
    initial = encode_long_header(PacketType.INITIAL, V1, b"d" * 8, b"s" * 5, b"T" * 70, 40, 2, 9)
    initial += bytes(38)
    zero_rtt = encode_long_header(PacketType.ZERO_RTT, V2, b"d" * 4, b"", b"", 300, 4, 9)
    zero_rtt += bytes(296)
    handshake = encode_long_header(PacketType.HANDSHAKE, V2, b"", b"s", b"", 3, 3, 1)
    short = encode_short_header(b"c" * 12, 2, 1) + b"p"
    vn = encode_version_negotiation(b"a" * 3, b"b" * 4, [V1, V2])
    return [
        ("initial", initial, 0, len(initial)),
        ("zero_rtt", zero_rtt, 0, len(zero_rtt)),
        ("handshake", handshake, 0, len(handshake)),
        ("short", short, 12, 13),
        ("retry", RETRY_V1, 0, len(RETRY_V1) - len(b"token") + 1),
        ("vn", vn, 0, 14),  # header only: an empty version list still parses
    ]


@pytest.mark.parametrize(("name", "packet", "dcid_len", "min_ok"), _truncation_cases())
def test_truncated_at_every_position(name: str, packet: bytes, dcid_len: int, min_ok: int) -> None:
    for cut in range(min_ok):
        _assert_dropped(packet[:cut], 0, dcid_len)
    full = parse_header(packet, 0, dcid_len)
    assert full.end == len(packet)
    if name == "vn":
        for cut in range(min_ok, len(packet)):
            if (cut - min_ok) % 4:
                _assert_dropped(packet[:cut])
    # With trailing data, long headers with Length still end at the same offset.
    if full.packet_type in (PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE):
        assert parse_header(packet + b"\x00" * 7, 0, dcid_len).end == len(packet)


def test_parse_at_offset() -> None:
    packet = encode_long_header(PacketType.HANDSHAKE, V1, b"dd", b"ss", b"", 4, 1, 0) + bytes(3)
    parsed = parse_header(b"prefix" + packet, 6)
    assert parsed.pn_offset == 6 + len(packet) - 4
    assert parsed.end == 6 + len(packet)


# -- peek_dcid -----------------------------------------------------------------------------


def test_peek_dcid() -> None:
    assert peek_dcid(CLIENT_INITIAL_V1, 5) == CLIENT_DCID
    assert peek_dcid(encode_short_header(b"route-me", 1, 0), 8) == b"route-me"
    assert peek_dcid(b"\x40", 0) == b""
    for bad, n in [
        (b"", 8),
        (CLIENT_INITIAL_V1[:5], 0),
        (CLIENT_INITIAL_V1[:13], 0),
        (b"\x40abc", 8),
    ]:
        with pytest.raises(QuicProtocolError):
            peek_dcid(bad, n)


# -- stateless reset -------------------------------------------------------------------------


def test_stateless_reset_helpers() -> None:
    token = bytes(range(16))
    datagram = b"\x45" + b"\x99" * 4 + token
    assert looks_like_stateless_reset(datagram)
    assert stateless_reset_token(datagram) == token
    assert not looks_like_stateless_reset(datagram[1:])
    with pytest.raises(ValueError):
        stateless_reset_token(datagram[1:])


# -- builder validation ----------------------------------------------------------------------


def test_builder_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        encode_long_header(PacketType.RETRY, V1, b"", b"", b"", 10, 1, 0)
    with pytest.raises(ValueError):
        encode_long_header(PacketType.ONE_RTT, V1, b"", b"", b"", 10, 1, 0)
    with pytest.raises(ValueError):
        encode_long_header(PacketType.INITIAL, 0x1A2A3A4A, b"", b"", b"", 10, 1, 0)
    with pytest.raises(ValueError):
        encode_long_header(PacketType.HANDSHAKE, V1, b"", b"", b"tok", 10, 1, 0)
    with pytest.raises(ValueError):
        encode_long_header(PacketType.HANDSHAKE, V1, b"x" * 21, b"", b"", 10, 1, 0)
    with pytest.raises(ValueError):
        encode_long_header(PacketType.HANDSHAKE, V1, b"", b"", b"", 10, 5, 0)
    with pytest.raises(ValueError):
        encode_long_header(PacketType.HANDSHAKE, V1, b"", b"", b"", 10, 1, 256)
    with pytest.raises(ValueError):
        encode_long_header(PacketType.HANDSHAKE, V1, b"", b"", b"", 1, 2, 0)
    with pytest.raises(ValueError):
        encode_short_header(b"", 0, 0)
    with pytest.raises(ValueError):
        encode_short_header(b"", 2, 0x10000)
    with pytest.raises(ValueError):
        encode_retry(V1, b"", b"s", b"")
    with pytest.raises(ValueError):
        encode_retry(V1, b"", b"s", b"t", b"short-tag")
    with pytest.raises(ValueError):
        encode_retry(0x1A2A3A4A, b"", b"s", b"t")
