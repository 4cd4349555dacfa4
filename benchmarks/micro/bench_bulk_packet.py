"""One bulk packet each way, without the connection around it: the send side's short
datagram (header, STREAM frame, seal) and the receive side's open and STREAM decode."""

from __future__ import annotations

from typing import Any

from quic.frames import decode_stream_fields, encode_stream_frame_header
from quic.packet_builder import PacketAssembler
from quic.protection import PacketProtector, PacketUnprotector
from quic.tls.suites import CipherSuite
from quic.versions import QuicVersion

SECRET = bytes(range(32))
DCID = bytes(8)
MTU = 1452
DATA = memoryview(bytes(64 * 1024))
SUITE = CipherSuite.TLS_AES_128_GCM_SHA256


def _short_datagram(asm: PacketAssembler, protector: PacketProtector, pn: int) -> int:
    del asm.datagrams[:-1], asm.packets[:-1]  # the benchmark's rounds keep no history
    assert asm.begin_short_datagram(MTU, DCID, protector, 2, pn, pn - 100, 0)
    room = asm.room - 8  # the 8-byte mid-stream STREAM header
    asm.push_frame(encode_stream_frame_header(0, 0x10000 + pn, room, False), DATA[:room])
    return asm.end_short_datagram()


def test_build_bulk_datagram(benchmark: Any) -> None:
    protector = PacketProtector(SUITE, SECRET, QuicVersion.VERSION_1)
    asm = PacketAssembler(MTU)
    size = benchmark(_short_datagram, asm, protector, 5000)
    assert size == MTU


def test_open_bulk_packet(benchmark: Any) -> None:
    protector = PacketProtector(SUITE, SECRET, QuicVersion.VERSION_1)
    unprotector = PacketUnprotector(SUITE, SECRET, QuicVersion.VERSION_1)
    asm = PacketAssembler(MTU)
    _short_datagram(asm, protector, 5000)
    packet = asm.datagrams[-1]

    def receive() -> tuple[int, int, bytes, bool, int]:
        _, _, payload = unprotector.open_short(packet, 1 + len(DCID), 4999)
        assert payload is not None
        return decode_stream_fields(payload, 0)

    sid, offset, data, fin, _ = benchmark(receive)
    assert (sid, offset, fin) == (0, 0x10000 + 5000, False) and len(data) > 1300
