"""Packet header codec: parse and build long (Initial) and short (1-RTT) headers."""

from __future__ import annotations

from typing import Any

from quic.packet import PacketType, encode_long_header, encode_short_header, parse_header
from quic.versions import QuicVersion

DCID = bytes(range(8))
SCID = bytes(range(8, 16))
V1 = QuicVersion.VERSION_1
PAYLOAD = bytes(1150)


def test_build_short_header(benchmark: Any) -> None:
    header = benchmark(encode_short_header, DCID, 2, 0x1234, 0)
    assert len(header) == 1 + len(DCID) + 2


def test_build_initial_header(benchmark: Any) -> None:
    header = benchmark(
        encode_long_header, PacketType.INITIAL, V1, DCID, SCID, b"token", 1150 + 2, 2, 7
    )
    assert header[0] & 0x80  # long header form


def test_parse_short_header(benchmark: Any) -> None:
    packet = encode_short_header(DCID, 2, 0x1234, 0) + PAYLOAD
    header = benchmark(parse_header, packet, 0, len(DCID))
    assert not header.is_long and header.dcid == DCID and header.end == len(packet)


def test_parse_initial_header(benchmark: Any) -> None:
    packet = encode_long_header(PacketType.INITIAL, V1, DCID, SCID, b"tok", 1152, 2, 7) + PAYLOAD
    header = benchmark(parse_header, packet, 0, len(DCID))
    assert header.is_long and header.packet_type is PacketType.INITIAL
    assert header.token == b"tok" and header.end == len(packet)
