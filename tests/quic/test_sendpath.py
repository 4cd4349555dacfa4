"""The per-packet send path's fast paths give the same bytes as the general code, and
full-size STREAM packets fill the datagram (no worst-case header reservation)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pytest

from quic.buffer import decode_varint, encode_varint
from quic.conn_streams import StreamController
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.frames_decode import decode_frame, decode_stream_fields
from quic.frames_defs import StreamFrame, encode_stream_frame_header
from quic.packet import PacketType, encode_short_header
from quic.packet_builder import PacketAssembler
from quic.packet_number import decode_packet_number
from quic.protection import PacketProtector, PacketUnprotector
from quic.recovery import LossRecovery, SentPacket
from quic.tls.suites import CipherSuite
from quic.versions import QuicVersion
from tests.quic.test_protection import CHACHA_PN, CHACHA_SECRET, V1_VECTORS
from tests.support.pnwindow import PN_LIMIT, window_edges
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, make_pair

SUITES = [
    CipherSuite.TLS_AES_128_GCM_SHA256,
    CipherSuite.TLS_AES_256_GCM_SHA384,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
]


def _reference_header(sid: int, offset: int, length: int, fin: bool) -> bytes:
    # RFC 9000 §19.8 with shortest varints (§16), field by field
    if offset:
        return (
            bytes((0x0E | fin,))
            + encode_varint(sid)
            + encode_varint(offset)
            + (encode_varint(length))
        )
    return bytes((0x0A | fin,)) + encode_varint(sid) + encode_varint(length)


def test_stream_header_fast_path_matches_the_general_encoding() -> None:
    edges = [0, 1, 0x3F, 0x40, 0x3FFF, 0x4000, 0x3FFFFFFF, 0x40000000, 1 << 40]
    for sid in (0, 4, 0x3F, 0x40, 1 << 20):
        for offset in edges:
            for length in (0, 1, 0x3F, 0x40, 1400, 0x3FFF, 0x4000, 70000):
                for fin in (False, True):
                    got = encode_stream_frame_header(sid, offset, length, fin)
                    assert got == _reference_header(sid, offset, length, fin)


def test_stream_header_fast_path_keeps_the_varint_bound() -> None:
    with pytest.raises(ValueError):
        encode_stream_frame_header(0, (1 << 62) - 10, 20, False)


def test_encrypt_short_rfc9001_a5_vector() -> None:
    # RFC 9001 Appendix A.5: ChaCha20-Poly1305 short header packet, header 4200bff4
    protector = PacketProtector(
        CipherSuite.TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET, QuicVersion.VERSION_1
    )
    packet = protector.encrypt_short(b"", 3, CHACHA_PN & 0xFFFFFF, 0, b"\x01", CHACHA_PN)
    assert packet == V1_VECTORS.chacha_packet
    assert protector.encrypted_packets == 1


def test_encrypt_short_run_rfc9001_a5_vector() -> None:
    protector = PacketProtector(
        CipherSuite.TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET, QuicVersion.VERSION_1
    )
    assert protector.encrypt_short_run(b"", 0, 3, CHACHA_PN, [b"\x01"]) == [
        V1_VECTORS.chacha_packet
    ]
    assert protector.encrypted_packets == 1


@pytest.mark.parametrize("suite", SUITES)
def test_encrypt_short_run_matches_encrypt_short(suite: CipherSuite) -> None:
    secret = os.urandom(48 if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else 32)
    dcid = os.urandom(8)
    for key_phase in (0, 1):
        run_keys = PacketProtector(suite, secret, QuicVersion.VERSION_1, key_phase=key_phase)
        one_keys = PacketProtector(suite, secret, QuicVersion.VERSION_1, key_phase=key_phase)
        made = 0
        assert run_keys.encrypt_short_run(dcid, key_phase, 2, 5, []) == []
        with pytest.raises(ValueError):
            run_keys.encrypt_short_run(dcid, key_phase, 1, 1, [b"\x01"])
        with pytest.raises(ValueError):  # one payload too short: nothing sealed
            run_keys.encrypt_short_run(dcid, key_phase, 2, 1, [bytes(30), b"\x01"])
        assert run_keys.encrypted_packets == 0
        # each packet number length (2: a bulk run's, the header in one pack), with a
        # connection ID of any length, the truncated number wrapping within the run
        for cid in (dcid, b"", os.urandom(20), os.urandom(21)):  # (21: beyond the packs)
            for n in (1, 2, 3, 4):
                first = (1 << (8 * n)) - 2 + 0x5000_0000_0000  # ...fe, ...ff, ...00
                payloads = [os.urandom(size) for size in (25, 1200, 60, 19)]
                got = run_keys.encrypt_short_run(cid, key_phase, n, first, payloads)
                want = [
                    one_keys.encrypt_short(cid, n, pn & ((1 << 8 * n) - 1), key_phase, p, pn)
                    for pn, p in enumerate(payloads, first)
                ]
                assert got == want
                made += len(payloads)
        assert run_keys.encrypted_packets == made


@pytest.mark.parametrize("suite", SUITES)
def test_open_short_with_batch_masks_matches_open_short(suite: CipherSuite) -> None:
    secret = os.urandom(48 if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else 32)
    dcid = os.urandom(8)
    protector = PacketProtector(suite, secret, QuicVersion.VERSION_1)
    run = [
        (n, 0x700 + i & ((1 << (8 * n)) - 1), os.urandom(30 + i), 0x700 + i)
        for i, n in enumerate((2, 1, 2, 4, 3))
    ]
    packets = [protector.encrypt_short_run(dcid, 0, n, pn, [p])[0] for n, _, p, pn in run]
    datagrams = [*packets[:2], b"\x40" + dcid + b"short", *packets[2:]]  # one without a sample
    receiver = PacketUnprotector(suite, secret, QuicVersion.VERSION_1)
    masks = receiver.short_masks(datagrams, 1 + len(dcid))
    if suite == CipherSuite.TLS_CHACHA20_POLY1305_SHA256:
        assert masks is None  # a call per sample: open_short makes it
        return
    assert masks is not None and len(masks) == 16 * len(datagrams)
    # every datagram with a sample (sliced in C) or one without (a blank in its place):
    # the same masks as one call per datagram
    each = [receiver.short_masks([d], 1 + len(dcid)) for d in datagrams]
    assert masks == b"".join(m for m in each if m is not None)
    assert receiver.short_masks(packets, 1 + len(dcid)) == b"".join(
        m for d, m in zip(datagrams, each, strict=True) if d in packets and m is not None
    )
    for at, data in enumerate(datagrams):
        if data not in packets:
            continue
        got = receiver.open_short(data, 1 + len(dcid), 0x6FF, masks, 16 * at)
        assert got == receiver.open_short(data, 1 + len(dcid), 0x6FF)
        assert got[1] == run[packets.index(data)][3]  # the full packet number
        assert got[2] == run[packets.index(data)][2]  # the payload


def test_open_short_decodes_packet_numbers_as_appendix_a3() -> None:
    """open_short's inline packet number decoding (the candidate in the window around
    the next expected number, kept within 0..2^62-1) gives decode_packet_number's
    result at every window edge, for each Packet Number Length, with and without the
    batch masks."""
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    secret = os.urandom(32)
    dcid = os.urandom(8)
    protector = PacketProtector(suite, secret, QuicVersion.VERSION_1)
    receiver = PacketUnprotector(suite, secret, QuicVersion.VERSION_1)
    checked = 0
    for pn_length in (1, 2, 3, 4):
        for largest, truncated in window_edges(pn_length):
            pn = decode_packet_number(truncated, 8 * pn_length, largest)
            assert 0 <= pn < PN_LIMIT
            payload = os.urandom(24)
            packet = protector.encrypt_short(dcid, pn_length, truncated, 0, payload, pn)
            masks = receiver.short_masks([packet], 1 + len(dcid))
            for given in (None, masks):
                got = receiver.open_short(packet, 1 + len(dcid), largest, given, 0)
                assert got[1:] == (pn, payload), (pn_length, largest, truncated)
            checked += 1
    assert checked > 250


@pytest.mark.parametrize("suite", SUITES)
def test_encrypt_short_matches_encrypt_packet(suite: CipherSuite) -> None:
    secret = os.urandom(48 if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else 32)
    dcid = os.urandom(8)
    payload = os.urandom(300)
    for key_phase in (0, 1):
        fast = PacketProtector(suite, secret, QuicVersion.VERSION_1, key_phase=key_phase)
        slow = PacketProtector(suite, secret, QuicVersion.VERSION_1, key_phase=key_phase)
        receiver = PacketUnprotector(suite, secret, QuicVersion.VERSION_1)
        for pn_length in (1, 2, 3, 4):
            pn = 0x1234567 + pn_length
            truncated = pn & ((1 << (8 * pn_length)) - 1)
            header = encode_short_header(dcid, pn_length, truncated, key_phase)
            packet = fast.encrypt_short(dcid, pn_length, truncated, key_phase, payload, pn)
            assert packet == slow.encrypt_packet(header, payload, pn)
            plain, got_pn, got = receiver.decrypt_packet(packet, 1 + len(dcid), pn - 1)
            assert (plain, got_pn, got) == (header, pn, payload)


def test_encrypt_short_rejects_a_payload_too_short_to_sample() -> None:
    protector = PacketProtector(SUITES[0], bytes(32), QuicVersion.VERSION_1)
    with pytest.raises(ValueError):
        protector.encrypt_short(b"", 1, 0, 0, b"\x01\x01", 0)


def test_bulk_stream_packets_fill_the_datagram() -> None:
    """RFC 9000 §19.8: a STREAM frame's header is reserved at its real size, so a
    bulk upload's datagrams are exactly the path's maximum size (they were ~11 bytes
    short with a worst-case 19-byte reservation)."""
    mtu = 1400  # DPLPMTUD off: no probe above it
    pair = make_pair(client_kwargs={"max_datagram_size": mtu, "pmtud_max_datagram_size": mtu})
    pair.handshake()
    sizes: list[int] = []
    link = pair.net.link(CLIENT_ADDR, SERVER_ADDR)
    schedule = link.schedule

    def record(data: bytes, now: float, rng: object) -> list[tuple[float, bytes]]:
        sizes.append(len(data))
        return schedule(data, now, rng)  # type: ignore[arg-type]

    link.schedule = record  # type: ignore[method-assign]
    sid = pair.client.create_stream()
    size = 200_000
    pair.client.send_stream_data(sid, b"\x5a" * size, end_stream=True)
    pair.run(lambda: pair.stream_done(sid))
    assert bytes(pair.data["server"][sid]) == b"\x5a" * size
    assert pair.client.max_datagram_size == mtu
    data = [n for n in sizes if n > mtu // 2]  # the STREAM datagrams (not ACK-only)
    assert len(data) >= size // mtu
    full = [n for n in data if n == mtu]
    # all but those of the first 16 KiB (2-byte offsets, 4 reserved), an ACK or the end
    assert len(full) >= len(data) * 0.85
    assert max(sizes) == mtu


def _general_stream_decode(frame: bytes) -> tuple[int, int, bytes, bool]:
    # RFC 9000 §19.8, field by field with decode_varint
    ftype = frame[0]
    sid, pos = decode_varint(frame, 1)
    offset = 0
    if ftype & 0x04:
        offset, pos = decode_varint(frame, pos)
    length, pos = decode_varint(frame, pos)
    return sid, offset, frame[pos : pos + length], bool(ftype & 1)


def test_stream_decode_fast_path_matches_the_general_decoding() -> None:
    edges = [0, 5, 0x3FFF, 0x4000, 0x3FFFFFFF, 0x40000000]
    for sid in (0, 0x3F, 0x40, 1 << 20):
        for offset in edges:
            for length in (0, 0x3F, 0x40, 1400):
                for fin in (False, True):
                    data = bytes(range(256)) * 6
                    frame = encode_stream_frame_header(sid, offset, length, fin) + data[:length]
                    decoded, end = decode_frame(frame + b"\x00\x00", 0)
                    assert isinstance(decoded, StreamFrame)
                    assert end == len(frame)
                    got = (decoded.stream_id, decoded.offset, decoded.data, decoded.fin)
                    assert got == _general_stream_decode(frame)
                    # the receive path's tuple decoder: the same fields, the same end
                    fields = decode_stream_fields(frame + b"\x00\x00", 0)
                    assert fields == (*got, len(frame))
    # non-minimal varints (RFC 9000 §16 allows them) take the same fields
    frame = b"\x0e\x05\x80\x00\x00\x07\x40\x02ab"
    decoded, end = decode_frame(frame, 0)
    assert isinstance(decoded, StreamFrame)
    assert (decoded.stream_id, decoded.offset, decoded.data, end) == (5, 7, b"ab", len(frame))
    assert decode_stream_fields(b"\x00" + frame, 1) == (5, 7, b"ab", False, len(frame) + 1)


def test_stream_decode_fast_path_rejects_a_truncated_frame() -> None:
    frame = encode_stream_frame_header(4, 0x10000, 1000, False) + bytes(999)
    with pytest.raises(QuicProtocolError) as info:
        decode_frame(frame, 0)
    assert info.value.error_code == TransportErrorCode.FRAME_ENCODING_ERROR
    # the tuple decoder, on its fast path and on the varint path (a 2-byte stream ID)
    slow = encode_stream_frame_header(0x40, 0x10000, 1000, False) + bytes(999)
    for truncated in (frame, slow, slow[:3]):
        with pytest.raises(QuicProtocolError) as info:
            decode_stream_fields(truncated, 0)
        assert info.value.error_code == TransportErrorCode.FRAME_ENCODING_ERROR


def _count_calls(obj: object, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    count = [0]
    real = getattr(obj, name)

    def counted(*args: object, **kwargs: object) -> object:
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return count


@pytest.mark.parametrize("loss", [0.0, 0.02])
def test_bulk_loop_serves_most_packets_and_keeps_every_byte(
    loss: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once only STREAM frames are left, a build call writes its further datagrams in
    the short loop (conn_send._write_bulk) instead of the general per-space path; a
    lossy link still delivers every byte in order."""
    pair = make_pair(seed=11, loss=loss)
    pair.handshake()
    sender = pair.client.sender
    general = _count_calls(sender, "_write_space", monkeypatch)
    short = [0]  # datagrams the short loop wrote
    real = sender._write_bulk

    def counted(*args: Any) -> tuple[int, int]:
        written, total = real(*args)
        short[0] += written
        return written, total

    monkeypatch.setattr(sender, "_write_bulk", counted)
    sid = pair.client.create_stream()
    payload = os.urandom(300_000)
    pair.client.send_stream_data(sid, payload, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=60)
    assert bytes(pair.data["server"][sid]) == payload
    packets = len(payload) // 1500
    # ACK-clocked on the simulated link, a build call sends a few datagrams: the
    # first of each goes the general way (it may carry ACKs and control frames)
    assert short[0] >= packets // 10
    assert general[0] + short[0] >= packets


def test_bulk_loop_keeps_the_congestion_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 9002 §7: bytes in flight never exceed the window after a short-loop packet."""
    pair = make_pair(seed=5)
    pair.handshake()
    conn = pair.client
    cc = conn.recovery.congestion
    worst = [0]
    bulk = [0]
    seen = [0]  # short-loop datagrams checked
    recovery = conn.recovery
    real_sent = LossRecovery.on_packets_sent  # slotted: patched on the class
    real_bulk = conn.sender._write_bulk

    def in_bulk(*args: Any) -> tuple[int, int]:
        bulk[0] += 1
        try:
            return real_bulk(*args)
        finally:
            bulk[0] -= 1

    def registered(
        self: LossRecovery, packets: Sequence[SentPacket], sent_bytes: int, now: float
    ) -> None:
        assert sent_bytes == sum(p.size for p in packets)
        real_sent(self, packets, sent_bytes, now)
        if self is recovery and bulk[0]:  # a short loop's datagrams, now in flight
            worst[0] = max(worst[0], cc.bytes_in_flight - cc.congestion_window)
            seen[0] += len(packets)

    monkeypatch.setattr(conn.sender, "_write_bulk", in_bulk)
    monkeypatch.setattr(LossRecovery, "on_packets_sent", registered)
    sid = conn.create_stream()
    conn.send_stream_data(sid, b"\x01" * 400_000, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=60)
    assert worst[0] <= 0
    assert seen[0] > 20 and bulk[0] == 0


def test_a_short_datagram_that_took_everything_ends_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lone DATAGRAM (a ping-pong reply) is built in one pass: no second, empty pass
    over the spaces once nothing is left (conn_send._sent_everything). The pass is
    the reply path's (conn_send._write_reply, tests/quic/test_reply_path.py; for a lone
    datagram its one-function case, _write_datagram_reply) when only an ACK and
    datagrams are owed, else the general path's."""
    pair = make_pair(seed=4)
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed, max_time=5)
    conn = pair.client
    passes = _count_calls(conn.sender, "_write_space", monkeypatch)
    replies = _count_calls(conn.sender, "_write_reply", monkeypatch)
    lone = _count_calls(conn.sender, "_write_datagram_reply", monkeypatch)
    conn.send_datagram(b"p" * 64)
    out = conn.datagrams_to_send(pair.net.now)
    assert len(out) == 1
    assert passes[0] + replies[0] == 0 and lone[0] == 1
    conn.send_ping(1)  # something else owed: the general path, one pass still
    conn.send_datagram(b"p" * 64)
    out = conn.datagrams_to_send(pair.net.now)
    assert len(out) == 1
    assert passes[0] == 1 and replies[0] == 0 and lone[0] == 1
    conn.send_datagram(b"q" * 1000)
    conn.send_datagram(b"r" * 1000)  # does not fit beside the first: a second datagram
    out = conn.datagrams_to_send(pair.net.now)
    assert len(out) == 2


def _general_short_datagram(
    protector: PacketProtector, dcid: bytes, pn: int, largest: int | None, frames: list[bytes]
) -> tuple[bytes, int]:
    asm = PacketAssembler(1452)
    asm.begin_datagram(1452)
    assert asm.begin_packet(PacketType.ONE_RTT, 1, dcid, b"", protector, 2, pn, largest)
    for frame in frames:
        asm.push(frame)
    packet = asm.end_packet()
    assert packet is not None
    asm.end_datagram(pad_initial=False)
    return asm.datagrams[0], packet.size


def test_short_datagram_path_matches_the_general_path() -> None:
    """begin_short_datagram's inline packet number encoding (1 or 2 bytes, else
    encode_packet_number) and its reused packet record give the general path's bytes
    and sizes for every range of unacknowledged packets (RFC 9000 Appendix A.2)."""
    secret = os.urandom(32)
    dcid = os.urandom(8)
    header = encode_stream_frame_header(4, 0x10000, 900, False)
    data = os.urandom(900)
    cases = [(0, None), (127, None), (128, None), (5000, 4000), (40000, 7232), (40000, 7231)]
    cases += [(1 << 20, 1000), ((1 << 31) + 5, 6), (7, 6), (300, -1)]
    fast = PacketAssembler(1452)
    for pn, largest in cases:
        ours = PacketProtector(SUITES[0], secret, QuicVersion.VERSION_1)
        reference = PacketProtector(SUITES[0], secret, QuicVersion.VERSION_1)
        assert fast.begin_short_datagram(1452, dcid, ours, 2, pn, largest, 0)
        fast.push_frame(header, data)
        sent = fast.packet
        size = fast.end_short_datagram()
        expected, expected_size = _general_short_datagram(
            reference, dcid, pn, largest, [header, data]
        )
        assert fast.datagrams[-1] == expected
        assert (size, sent.size, sent.packet_number) == (len(expected), expected_size, pn)
    # the bugs encode_packet_number refuses are still refused
    for pn, largest in [(5, 5), (1 << 33, 0)]:
        with pytest.raises(ValueError):
            fast.begin_short_datagram(1452, dcid, ours, 2, pn, largest, 0)


def test_push_frame_keeps_the_room_rule() -> None:
    asm = PacketAssembler(1200)
    protector = PacketProtector(SUITES[0], bytes(32), QuicVersion.VERSION_1)
    assert asm.begin_short_datagram(1200, b"\x01" * 8, protector, 2, 0, None, 0)
    room = asm.room
    with pytest.raises(ValueError):
        asm.push_frame(b"\x0e" * 8, bytes(room - 7))
    asm.push_frame(b"\x0e" * 8, bytes(room - 8))
    assert asm.room == 0


def test_write_streams_says_whether_data_is_left() -> None:
    """write_streams returns has_data(): True while a stream has data for another
    packet, False once its last byte and FIN went (the bulk loop asks nothing else)."""
    pair = make_pair(seed=6)
    pair.handshake()
    conn = pair.client
    sid = conn.create_stream()
    conn.send_stream_data(sid, b"d" * 2500, end_stream=True)
    streams = conn.streams
    protector = PacketProtector(SUITES[0], bytes(32), QuicVersion.VERSION_1)
    asm = PacketAssembler(1200)
    left = []
    for pn in range(5):
        assert asm.begin_short_datagram(1200, b"\x01" * 8, protector, 2, pn, None, 0)
        left.append(streams.write_streams(asm))
        assert left[-1] == streams.has_data()
        if not asm.end_short_datagram():
            break
    assert left == [True, True, False, False]  # the last call finds nothing to write


def _stream_frames_sent(
    fast: bool, stream_window: int, monkeypatch: pytest.MonkeyPatch, max_data: int = 30000
) -> tuple[list[Any], bytes, int]:
    """The frames (their fate handler's name and numbers: STREAM's stream, offset,
    length, fin) of every packet the client sends in a lossy upload under small
    flow-control windows (blocked frames, retransmissions, the FIN), with or without
    write_streams' one-stream path and the bulk loop's frames (bulk_frames); what
    arrived; and how many frames bulk_frames gave."""
    given = [0]
    if fast:
        bulk_frames = StreamController.bulk_frames

        def counted(self: StreamController, room: int, count: int) -> Any:
            frames = bulk_frames(self, room, count)
            assert len(frames) <= count
            given[0] += len(frames)
            return frames

        monkeypatch.setattr(StreamController, "bulk_frames", counted)
    else:
        monkeypatch.setattr(StreamController, "write_streams", StreamController._write_streams)
        monkeypatch.setattr(StreamController, "bulk_frames", lambda self, room, count: [])
    pair = make_pair(
        seed=6,  # a run whose losses block both windows (not every seed's does)
        server_kwargs={"initial_max_data": max_data, "initial_max_stream_data": stream_window},
        loss=0.03,
    )
    pair.handshake()
    conn = pair.client
    frames: list[Any] = []
    original = LossRecovery.on_packets_sent
    single = LossRecovery.on_packet_sent

    def note(packet: SentPacket) -> None:
        frames.append(
            [
                (handler.__name__, *(a for a in args if isinstance(a, int)))
                for handler, args in packet.frame_handlers()
            ]
        )

    def on_packets_sent(self: LossRecovery, packets: Any, size: int, now: float) -> None:
        for packet in packets:
            note(packet)
        original(self, packets, size, now)

    def on_packet_sent(self: LossRecovery, packet: SentPacket, now: float) -> None:
        note(packet)
        single(self, packet, now)

    monkeypatch.setattr(LossRecovery, "on_packets_sent", on_packets_sent)
    monkeypatch.setattr(LossRecovery, "on_packet_sent", on_packet_sent)
    sid = conn.create_stream()
    payload = bytes(range(256)) * 800
    conn.send_stream_data(sid, payload[:150000])
    conn.send_stream_data(sid, payload[150000:], end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=60)
    monkeypatch.undo()
    return frames, bytes(pair.data["server"][sid]), given[0]


@pytest.mark.parametrize(
    ("stream_window", "max_data", "blocked"),
    [
        (6000, 30000, "_stream_blocked_fate"),
        (20000, 30000, "_data_blocked_fate"),
        (60000, 90000, "_stream_fate"),  # wider windows
    ],
)
def test_one_stream_path_writes_the_general_loops_frames(
    stream_window: int, max_data: int, blocked: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_streams' one-stream path and the bulk loop's frames (bulk_frames, sealed by
    PacketAssembler.short_frame_run) write the frames the general loop
    (StreamController._write_streams) writes, packet by packet, through blocked windows
    (the stream's, the connection's), losses and the FIN."""
    general, got_general, none = _stream_frames_sent(False, stream_window, monkeypatch, max_data)
    fast, got_fast, bulk = _stream_frames_sent(True, stream_window, monkeypatch, max_data)
    payload = bytes(range(256)) * 800
    assert got_general == got_fast == payload
    assert fast == general
    assert none == 0 and bulk > 0
    kinds = {f[0] for packet in fast for f in packet}
    assert {"_stream_fate", blocked} <= kinds
    assert any(f[-1] for packet in fast for f in packet if f[0] == "_stream_fate")  # FIN
    assert len(fast) > 150


@pytest.mark.parametrize(("first_pn", "largest_acked"), [(100, None), (5000, 4900), (40000, 7000)])
def test_short_frame_run_matches_packets_made_one_by_one(
    first_pn: int, largest_acked: int | None
) -> None:
    """PacketAssembler.short_frame_run makes the datagrams, packet records and room that
    begin_short_datagram + push_frame + end_short_datagram make packet by packet, across
    a change of the packet number's encoded length (1 -> 2 bytes past 128 unacknowledged,
    2 -> 3 past 2**15: a list of frames is asked for per length); a list shorter than
    asked for ends the run, and the window bounds it."""
    secret = os.urandom(32)
    dcid = os.urandom(8)
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    run_keys = PacketProtector(suite, secret, QuicVersion.VERSION_1)
    one_keys = PacketProtector(suite, secret, QuicVersion.VERSION_1)
    asked: list[tuple[int, int]] = []
    frames_given: list[tuple[bytes, bytes, Any]] = []

    def frames(room: int, count: int) -> list[tuple[bytes, bytes, Any]]:
        asked.append((room, count))
        if len(frames_given) >= 45:
            return []
        made = []
        for _ in range(min(count, 45 - len(frames_given))):
            data = os.urandom(room - 8 if len(frames_given) % 7 else 3)  # some padded
            made.append((b"\x0e" + os.urandom(7), data, (print, (len(frames_given),))))
            frames_given.append(made[-1])
        return made

    asm = PacketAssembler(1452)
    written, total = asm.short_frame_run(
        60, 100 * 1452, 1452, dcid, run_keys, first_pn, largest_acked, frames
    )
    assert written == len(frames_given) == 45
    assert asked[-1][1] > 0 and len(asked) >= 2  # the last list came back short (empty)
    lengths = {room for room, _ in asked}
    if (
        first_pn + 45 - (largest_acked if largest_acked is not None else -1)
        > 128
        > (first_pn - (largest_acked if largest_acked is not None else -1))
    ):
        assert len(lengths) == 2  # asked per packet number length
    ref = PacketAssembler(1452)
    for i, (header, data, handler) in enumerate(frames_given):
        assert ref.begin_short_datagram(1452, dcid, one_keys, 2, first_pn + i, largest_acked, 0)
        ref.push_frame(header, data)
        ref.packet.handlers.append(handler)
        ref.end_short_datagram()
    assert asm.datagrams == ref.datagrams
    assert total == sum(len(d) for d in ref.datagrams)
    assert asm.room == ref.room
    assert [(p.packet_number, p.size, p.space, p.frame_handlers()) for p in asm.packets] == [
        (p.packet_number, p.size, p.space, p.frame_handlers()) for p in ref.packets
    ]
    # the window: only the packets of 1452 bytes it takes whole
    small = PacketAssembler(1452)
    frames_given.clear()
    asked.clear()
    window = 5 * 1452 + 100
    made, size = small.short_frame_run(60, window, 1452, dcid, run_keys, 10, None, frames)
    assert made == sum(count for _, count in asked) == len(frames_given)  # all sent
    assert made >= 5 and size <= window < size + 1452  # it stops below one full packet
