"""PacketUnprotector.open_short_run (a bulk receive run's packets opened in one call)
opens exactly the packets open_short would open one by one with the same result, and
stops before the first it does not take: another packet number length or Key Phase,
reserved bits set, a number not above the one before, a bad tag, no sample, a long
header. It never counts a failure (open_short does, when the caller reads it)."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from quic.buffer import encode_varint
from quic.conn_keys import APPLICATION
from quic.events import StreamDataReceived
from quic.packet_number import decode_packet_number
from quic.protection import DecryptionError, PacketProtector, PacketUnprotector
from quic.tls.suites import CipherSuite
from quic.versions import QuicVersion
from tests.support.pnwindow import window_edges
from tests.support.quicpair import CLIENT_ADDR, make_pair

AES_SUITES = [CipherSuite.TLS_AES_128_GCM_SHA256, CipherSuite.TLS_AES_256_GCM_SHA384]


def _keys(suite: CipherSuite, key_phase: int = 0) -> tuple[PacketProtector, PacketUnprotector]:
    secret = os.urandom(48 if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else 32)
    sender = PacketProtector(suite, secret, QuicVersion.VERSION_1, key_phase=key_phase)
    receiver = PacketUnprotector(suite, secret, QuicVersion.VERSION_1, key_phase=key_phase)
    return sender, receiver


def _reference(
    receiver: PacketUnprotector,
    datagrams: list[bytes],
    index: int,
    pn_offset: int,
    largest: int,
    masks: bytes,
) -> tuple[list[int], list[bytes]]:
    """open_short one by one under open_short_run's rules."""
    pns: list[int] = []
    payloads: list[bytes] = []
    for at in range(index, len(datagrams)):
        data = datagrams[at]
        if len(data) < pn_offset + 20 or data[0] & 0xC0 != 0x40:
            break
        failed = receiver.failed_decryptions
        try:
            header, pn, payload = receiver.open_short(data, pn_offset, largest, masks, at << 4)
        except DecryptionError:
            receiver.failed_decryptions = failed  # the run never counts one
            break
        if payload is None or header[0] & 0x18 or header[0] & 0x03 > 1 or pn <= largest:
            break
        pns.append(pn)
        payloads.append(payload)
        largest = pn
    return pns, payloads


def _mixed_run(
    sender: PacketProtector, other: PacketProtector, dcid: bytes, rng: random.Random
) -> list[bytes]:
    """Datagrams mostly in order with 1- and 2-byte numbers, and now and then one the
    run must stop before."""
    out: list[bytes] = []
    pn = 0x3F0
    for _ in range(120):
        kind = rng.random()
        payload = os.urandom(rng.choice((20, 40, 1200)))
        if kind < 0.70:
            pn += rng.choice((1, 1, 1, 2, 5))
            n = rng.choice((1, 2))
            out.append(sender.encrypt_short(dcid, n, pn & ((1 << 8 * n) - 1), 0, payload, pn))
        elif kind < 0.75:  # an older number (reordered) or a duplicate
            old = pn - rng.choice((0, 1, 3))
            out.append(sender.encrypt_short(dcid, 2, old & 0xFFFF, 0, payload, old))
        elif kind < 0.80:  # a 4-byte number
            pn += 1
            out.append(sender.encrypt_short(dcid, 4, pn, 0, payload, pn))
        elif kind < 0.85:  # the other Key Phase (RFC 9001 §6)
            pn += 1
            out.append(sender.encrypt_short(dcid, 2, pn & 0xFFFF, 1, payload, pn))
        elif kind < 0.88:  # reserved bits set (RFC 9000 §17.3.1)
            pn += 1
            header = bytes((0x40 | 0x08 | 0x01,)) + dcid + (pn & 0xFFFF).to_bytes(2, "big")
            out.append(sender.encrypt_packet(header, payload, pn))
        elif kind < 0.91:  # other keys: a bad tag
            pn += 1
            out.append(other.encrypt_short(dcid, 2, pn & 0xFFFF, 0, payload, pn))
        elif kind < 0.94:  # one byte flipped in the ciphertext
            pn += 1
            packet = bytearray(sender.encrypt_short(dcid, 2, pn & 0xFFFF, 0, payload, pn))
            packet[-1] ^= 0x01
            out.append(bytes(packet))
        elif kind < 0.97:  # too short for a sample
            out.append(b"\x41" + dcid + b"short")
        else:  # a long header
            out.append(b"\xc0" + os.urandom(40))
    return out


@pytest.mark.parametrize("suite", AES_SUITES)
def test_open_short_run_opens_what_open_short_opens(suite: CipherSuite) -> None:
    rng = random.Random(7)
    dcid = os.urandom(8)
    sender, receiver = _keys(suite)
    other, _ = _keys(suite)
    datagrams = _mixed_run(sender, other, dcid, rng)
    masks = receiver.short_masks(datagrams, 1 + len(dcid))
    assert masks is not None
    starts = stops = 0
    for index in range(len(datagrams)):
        for largest in (0x3EF, 0x3FF, 0x400 + index, 0x500):
            want = _reference(receiver, datagrams, index, 1 + len(dcid), largest, masks)
            got = receiver.open_short_run(datagrams, index, 1 + len(dcid), largest, masks, 999)
            assert got == want, (index, largest)
            assert receiver.failed_decryptions == 0
            starts += bool(got[0])
            stops += index + len(got[0]) < len(datagrams)
    assert starts > 100 and stops > 100  # both ways, many times


def test_open_short_run_long_runs_in_order() -> None:
    """A bulk run (2-byte numbers, after a few 1-byte ones) opens whole, each payload
    with its number."""
    dcid = os.urandom(8)
    sender, receiver = _keys(CipherSuite.TLS_AES_128_GCM_SHA256)
    run = [(1 if pn < 0x10 else 2, pn, os.urandom(1400), pn) for pn in range(3, 300)]
    datagrams = sender.encrypt_short_run(dcid, 0, 1, 3, [p for n, _, p, _ in run if n == 1])
    datagrams += sender.encrypt_short_run(dcid, 0, 2, 0x10, [p for n, _, p, _ in run if n == 2])
    masks = receiver.short_masks(datagrams, 1 + len(dcid))
    assert masks is not None
    pns, payloads = receiver.open_short_run(datagrams, 0, 1 + len(dcid), 2, masks, 999)
    assert pns == [pn for _, pn, _, _ in run]
    assert payloads == [p for _, _, p, _ in run]
    # a bytes-like view is open_short's
    views = [*datagrams[:5], memoryview(datagrams[5]), *datagrams[6:]]
    assert receiver.open_short_run(views, 0, 1 + len(dcid), 2, masks, 999)[0] == [3, 4, 5, 6, 7]
    # from the middle of the list, after the numbers before it
    pns, payloads = receiver.open_short_run(datagrams, 100, 1 + len(dcid), 102, masks, 999)
    assert pns == list(range(103, 300))


@pytest.mark.parametrize("key_phase", [0, 1])
def test_open_short_run_decodes_packet_numbers_as_appendix_a3(key_phase: int) -> None:
    """The numbers open_short_run takes are decode_packet_number's at each window edge;
    a candidate at or below the largest, or one moved by a window, is left to
    open_short."""
    dcid = os.urandom(4)
    sender, receiver = _keys(CipherSuite.TLS_AES_128_GCM_SHA256, key_phase)
    opened = left = 0
    for pn_length in (1, 2):
        half = 1 << (8 * pn_length - 1)
        window = half << 1
        for largest, truncated in window_edges(pn_length):
            pn = decode_packet_number(truncated, 8 * pn_length, largest)
            payload = os.urandom(24)
            packet = sender.encrypt_short(dcid, pn_length, truncated, key_phase, payload, pn)
            masks = receiver.short_masks([packet], 1 + len(dcid))
            assert masks is not None
            got = receiver.open_short_run([packet], 0, 1 + len(dcid), largest, masks, 1)
            # the candidate before a window move (below 0 or from 2^62 on):
            # such a packet is open_short's, as one not above the largest
            top = largest + 1 + half
            candidate = top - ((top - truncated) & (window - 1))
            if largest < pn == candidate:
                assert got == ([pn], [payload]), (pn_length, largest, truncated)
                opened += 1
            else:
                assert got == ([], []), (pn_length, largest, truncated)
                left += 1
    assert opened > 100 and left > 20


class _CountingAead:
    """An AEAD whose decrypt calls are counted."""

    def __init__(self, aead: Any) -> None:
        self.aead = aead
        self.decrypts = 0

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        self.decrypts += 1
        return bytes(self.aead.decrypt(nonce, data, aad))


@pytest.mark.parametrize("packets", [8, 32])
def test_packets_opened_ahead_of_a_run_end_cost_at_most_one_more_decryption_each(
    packets: int,
) -> None:
    """PacketReader.read_short_run stops after a packet with a frame that may change the
    connection (here MAX_DATA, every third packet); what the run opened ahead is opened
    again by the next read. The runs double (from 16 at the batch's start, then from one
    packet), so the decryptions stay within twice the packets and 15, not one per
    packet left per read (quadratic)."""
    pair = make_pair(seed=11)
    pair.handshake()
    server = pair.server
    reader = server.reader
    cid_len = server.cids.cid_length
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"x", True)
    pair.client_endpoint.wake(pair.client)
    sample = pair.client_endpoint.datagrams_to_send(pair.net.now)[0][0]
    dcid = sample[1 : 1 + cid_len]
    write = pair.client.keys.spaces[APPLICATION].write
    assert isinstance(write, PacketProtector)
    largest = server.acks.trackers[APPLICATION].largest
    limit = server.streams.window.max_data
    datagrams = []
    for i in range(packets):
        pn = largest + 1 + i
        if i % 3 == 2:  # MAX_DATA: the run ends after it
            payload = b"\x10" + encode_varint(limit + 1000 * (i + 1)) + bytes(30)
        else:  # PING: the run goes on
            payload = b"\x01" + bytes(30)
        datagrams.append(write.encrypt_short(dcid, 2, pn & 0xFFFF, write.key_phase, payload, pn))
    read = server.keys.spaces[APPLICATION].read
    current = read.current  # type: ignore[union-attr]
    counting = _CountingAead(current._aead or current._wake_aead())
    current._aead = counting  # type: ignore[assignment]
    masks = reader.short_masks(datagrams, cid_len)
    assert masks is not None
    processed = reader.processed
    index = 0
    reads = 0
    while index < packets:
        stop = reader.read_short_run(datagrams, index, cid_len, pair.net.now, 0, masks)
        assert not reader.run_failed
        assert stop == min(index + 3 - index % 3, packets)  # after each MAX_DATA
        index = stop
        reads += 1
    assert reads == (packets + 2) // 3
    assert reader.processed - processed == packets
    assert counting.decrypts <= 2 * packets + 15  # twice those read, and 15 a batch


def test_a_batch_of_views_is_read_as_a_batch_of_bytes() -> None:
    """Datagrams given as memoryviews (the opener takes bytes only) reach the stream
    through open_short, the same bytes."""
    pair = make_pair(seed=5)
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"v" * 6000, True)
    pair.client_endpoint.wake(pair.client)
    datagrams = [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
    assert len(datagrams) >= 4
    pair.server.receive_datagrams(
        [memoryview(d) for d in datagrams], CLIENT_ADDR, pair.net.now, 0, 0
    )
    got = b""
    while (event := pair.server.next_event()) is not None:
        if isinstance(event, StreamDataReceived) and event.stream_id == sid:
            got += event.data
    assert got == b"v" * 6000
