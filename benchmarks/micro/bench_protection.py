"""Packet protection hot path: 1-RTT AEAD + header protection, both directions."""

from __future__ import annotations

from typing import Any

from quic.packet import encode_short_header
from quic.protection import PacketProtector, PacketUnprotector
from quic.tls.suites import CipherSuite
from quic.versions import QuicVersion

SECRET = bytes(range(32))
DCID = bytes(8)
PAYLOAD = bytes(1150)


def _keys(suite: CipherSuite) -> tuple[PacketProtector, PacketUnprotector]:
    v1 = QuicVersion.VERSION_1
    return PacketProtector(suite, SECRET, v1), PacketUnprotector(suite, SECRET, v1)


def test_encrypt_packet_aes128gcm(benchmark: Any) -> None:
    send, _ = _keys(CipherSuite.TLS_AES_128_GCM_SHA256)
    header = encode_short_header(DCID, 2, 0x1234, 0)
    packet = benchmark(send.encrypt_packet, header, PAYLOAD, 0x1234)
    assert len(packet) == len(header) + len(PAYLOAD) + 16


def test_decrypt_packet_aes128gcm(benchmark: Any) -> None:
    send, recv = _keys(CipherSuite.TLS_AES_128_GCM_SHA256)
    header = encode_short_header(DCID, 2, 0x1234, 0)
    packet = send.encrypt_packet(header, PAYLOAD, 0x1234)
    _, pn, payload = benchmark(recv.decrypt_packet, packet, 1 + len(DCID), 0x1233)
    assert pn == 0x1234 and payload == PAYLOAD


def test_encrypt_packet_chacha20(benchmark: Any) -> None:
    send, _ = _keys(CipherSuite.TLS_CHACHA20_POLY1305_SHA256)
    header = encode_short_header(DCID, 2, 0x1234, 0)
    packet = benchmark(send.encrypt_packet, header, PAYLOAD, 0x1234)
    assert len(packet) == len(header) + len(PAYLOAD) + 16


def test_open_short_aes128gcm(benchmark: Any) -> None:
    """The 1-RTT receive path's one call: header protection off, packet number, AEAD."""
    send, recv = _keys(CipherSuite.TLS_AES_128_GCM_SHA256)
    packet = send.encrypt_short(DCID, 2, 0x1234, 0, PAYLOAD, 0x1234)
    _, pn, payload = benchmark(recv.open_short, packet, 1 + len(DCID), 0x1233)
    assert pn == 0x1234 and payload == PAYLOAD
