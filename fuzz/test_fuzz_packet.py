"""Property tests for packet headers: arbitrary datagrams either parse or raise
QuicProtocolError; built headers parse back to what was built."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from quic.errors import QuicProtocolError
from quic.packet import (
    PacketType,
    encode_long_header,
    encode_retry,
    encode_short_header,
    encode_version_negotiation,
    long_header_size,
    parse_header,
    peek_dcid,
)
from quic.versions import QuicVersion

VERSIONS = st.sampled_from([int(QuicVersion.VERSION_1), int(QuicVersion.VERSION_2)])
CIDS = st.binary(max_size=20)


@given(st.binary(max_size=200), st.integers(0, 20), st.integers(0, 10), st.booleans())
def test_arbitrary_datagram(data: bytes, dcid_len: int, pos: int, allow_zero: bool) -> None:
    try:
        header = parse_header(data, pos, dcid_len, allow_fixed_bit_zero=allow_zero)
    except QuicProtocolError:
        return
    assert pos < header.end <= len(data)
    assert pos < header.pn_offset <= header.end


@given(st.binary(max_size=100), st.integers(0, 20))
def test_peek_dcid_arbitrary(data: bytes, dcid_len: int) -> None:
    try:
        dcid = peek_dcid(data, dcid_len)
    except QuicProtocolError:
        return
    assert dcid in data


@given(st.binary(max_size=1500), st.integers(0, 20))
def test_coalesced_walk_terminates(data: bytes, dcid_len: int) -> None:
    pos = 0
    while pos < len(data):
        try:
            header = parse_header(data, pos, dcid_len)
        except QuicProtocolError:
            break
        assert header.end > pos
        pos = header.end


@given(
    st.sampled_from([PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE]),
    VERSIONS,
    CIDS,
    CIDS,
    st.binary(max_size=100),
    st.integers(1, 4),
    st.data(),
)
def test_long_header_round_trip(
    packet_type: PacketType,
    version: int,
    dcid: bytes,
    scid: bytes,
    token: bytes,
    pn_length: int,
    data: st.DataObject,
) -> None:
    if packet_type is not PacketType.INITIAL:
        token = b""
    length = data.draw(st.integers(pn_length, 20000))
    pn = data.draw(st.integers(0, (1 << (8 * pn_length)) - 1))
    header = encode_long_header(packet_type, version, dcid, scid, token, length, pn_length, pn)
    assert len(header) == long_header_size(
        packet_type, len(dcid), len(scid), len(token), pn_length, length
    )
    packet = header + bytes(length - pn_length)
    parsed = parse_header(packet + b"\xff" * 3, 0)
    assert (parsed.version, parsed.packet_type) == (version, packet_type)
    assert (parsed.dcid, parsed.scid, parsed.token) == (dcid, scid, token)
    assert parsed.end == len(packet)
    assert parsed.pn_offset == len(header) - pn_length
    assert int.from_bytes(packet[parsed.pn_offset : len(header)], "big") == pn


@given(CIDS, st.integers(1, 4), st.data(), st.booleans(), st.booleans(), st.binary(max_size=50))
def test_short_header_round_trip(
    dcid: bytes,
    pn_length: int,
    data: st.DataObject,
    key_phase: bool,
    spin: bool,
    payload: bytes,
) -> None:
    pn = data.draw(st.integers(0, (1 << (8 * pn_length)) - 1))
    header = encode_short_header(dcid, pn_length, pn, key_phase, spin)
    parsed = parse_header(header + payload, 0, len(dcid))
    assert parsed.packet_type is PacketType.ONE_RTT
    assert parsed.dcid == dcid
    assert parsed.pn_offset == 1 + len(dcid)
    assert parsed.first_byte & 0x03 == pn_length - 1


@given(
    st.binary(max_size=255),
    st.binary(max_size=255),
    st.lists(st.integers(0, 0xFFFFFFFF), max_size=10),
    st.integers(0, 255),
)
def test_version_negotiation_round_trip(
    dcid: bytes, scid: bytes, versions: list[int], random_bits: int
) -> None:
    parsed = parse_header(encode_version_negotiation(dcid, scid, versions, random_bits), 0)
    assert parsed.packet_type is PacketType.VERSION_NEGOTIATION
    assert (parsed.dcid, parsed.scid) == (dcid, scid)
    assert parsed.supported_versions == tuple(versions)


@given(
    VERSIONS, CIDS, CIDS, st.binary(min_size=1, max_size=100), st.binary(min_size=16, max_size=16)
)
def test_retry_round_trip(version: int, dcid: bytes, scid: bytes, token: bytes, tag: bytes) -> None:
    parsed = parse_header(encode_retry(version, dcid, scid, token, tag), 0)
    assert parsed.packet_type is PacketType.RETRY
    assert (parsed.dcid, parsed.scid, parsed.token, parsed.integrity_tag) == (
        dcid,
        scid,
        token,
        tag,
    )
