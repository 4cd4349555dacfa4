"""The datagram ping-pong's inline copies (issue 10, session 27) decide what the
helpers they stand for decide: ``DatagramChannel.on_frame_at`` (DATAGRAM decoded and
queued in one call) against ``decode_datagram_frame`` then ``on_frame``; the size check
of ``DatagramChannel.send`` against ``max_payload``; the PMTU ``on_ack`` skipped while
nothing is suspicious. ``AckFrequencySender.wants_send`` (which calls ``wanted`` again:
the copy saved one call per round trip) still asks for what ``wanted`` says."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import pytest

from quic.buffer import encode_varint
from quic.conn_ackfreq import AckFrequencySender
from quic.conn_acks import AckState
from quic.conn_datagrams import DatagramChannel
from quic.conn_keys import APPLICATION
from quic.conn_pmtu import BASE_PLPMTU, PmtuDiscovery
from quic.errors import QuicProtocolError
from quic.events import DatagramReceived, QuicEvent
from quic.frames import decode_datagram_frame
from quic.packet import peek_dcid
from quic.packet_builder import PacketAssembler
from quic.recovery import SentPacket
from tests.support.quicpair import CLIENT_ADDR, make_pair


def _outcome(call: Any, *args: Any) -> Any:
    try:
        return ("ok", call(*args))
    except QuicProtocolError as exc:
        return ("error", exc.error_code, exc.frame_type, str(exc))


def _frame(length: int, size: int, varint_len: int) -> bytes:
    """A DATAGRAM frame whose Length says ``length`` (in ``varint_len`` bytes) and which
    holds ``size`` bytes of data (``size < length``: truncated)."""
    if varint_len == 1:
        field = bytes((length,))
    elif varint_len == 2:
        field = (0x4000 | length).to_bytes(2, "big")
    else:
        field = (
            encode_varint(length) if length >= 0x4000 else (0x80000000 | length).to_bytes(4, "big")
        )
    return b"\x31" + field + bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def _decode_then_queue(channel: DatagramChannel, payload: bytes, pos: int) -> int:
    data, end = decode_datagram_frame(payload, pos)
    channel.on_frame(data)
    return end


def test_on_frame_at_is_decode_then_on_frame() -> None:
    rng = random.Random(11)
    seen: set[str] = set()
    for _ in range(3000):
        varint_len = rng.choice((1, 2, 2, 4))
        top = {1: 0x3F, 2: 0x3FFF, 4: 20000}[varint_len]
        length = rng.randint(0, min(top, 2000) if varint_len != 4 else top)
        size = length if rng.random() < 0.8 else rng.randint(0, length)
        prefix = bytes(rng.randint(0, 3))
        payload = prefix + _frame(length, size, varint_len) + bytes(rng.choice((0, 0, 3)))
        if rng.random() < 0.05:
            payload = (
                prefix + b"\x31" + payload[len(prefix) + 1 : len(prefix) + 2][: rng.randint(0, 1)]
            )
        limit = rng.choice((0, 1, 65, 66, 1200, 65535, length, length + 1))
        pos = len(prefix)

        inline_events: deque[QuicEvent] = deque()
        inline = DatagramChannel(limit, 4, inline_events)  # type: ignore[arg-type]
        got = _outcome(inline.on_frame_at, payload, pos)

        reference_events: deque[QuicEvent] = deque()
        reference = DatagramChannel(limit, 4, reference_events)  # type: ignore[arg-type]

        expected = _outcome(_decode_then_queue, reference, payload, pos)
        assert got == expected, (payload[:8].hex(), limit)
        assert list(inline_events) == list(reference_events)
        seen.add(got[0] if got[0] == "ok" else got[3])
    for outcome in ("ok", "frame truncated", "not negotiated", "larger than max_datagram"):
        assert any(outcome in text for text in seen), outcome


def test_on_frame_at_queues_the_data_of_a_two_byte_length() -> None:
    events: deque[QuicEvent] = deque()
    channel = DatagramChannel(65535, 4, events)  # type: ignore[arg-type]
    data = bytes(range(65))  # a 64-byte WebTransport payload and its quarter stream ID
    payload = b"\x31\x40\x41" + data + b"\x00\x00"
    assert channel.on_frame_at(payload, 0) == 3 + 65
    assert list(events) == [DatagramReceived(data)]


def test_send_accepts_exactly_what_max_payload_allows() -> None:
    rng = random.Random(5)
    taken = refused = 0
    for _ in range(4000):
        channel = DatagramChannel(65535, 4, deque())  # type: ignore[arg-type]
        peer_max = rng.choice((1, 3, 4, 70, 1200, 16386, 16387, 16388, 65535))
        channel.set_peer_max_frame_size(peer_max)
        dcid_len = rng.choice((0, 8, 20))
        mtu = rng.choice((1200, 1452, 16400, 16404, 16410, 65527))
        limit = channel.max_payload(dcid_len, mtu)
        n = max(0, limit + rng.randint(-3, 3)) if rng.random() < 0.7 else rng.randint(0, 70000)
        try:
            channel.send(bytes(n), dcid_len, mtu)
        except ValueError:
            assert n > limit
            refused += 1
        else:
            assert n <= limit and channel.pending == 1
            taken += 1
    assert taken and refused


def _ackfreq(rng: random.Random) -> AckFrequencySender:
    sender = AckFrequencySender(None, True, rng.choice((0, 1000, 25000)))  # type: ignore[arg-type]
    sender.set_peer_params(rng.choice((None, 0, 1000, 40000)), rng.choice((0, 1, 25, 100)))
    return sender


def test_wants_send_asks_for_what_wanted_says() -> None:
    rng = random.Random(3)
    asked = 0
    for _ in range(2000):
        sender = _ackfreq(rng)
        cwnd = rng.choice((1200, 4800, 12000, 120000, 10**7))
        mds = rng.choice((1200, 1452))
        srtt = rng.choice((0.0001, 0.004, 0.02, 0.3))
        wanted = sender.wanted(cwnd, mds, srtt)
        if rng.random() < 0.3:
            sender._requested = wanted  # already asked for: nothing owed
        owed = sender.wants_send(1.0, cwnd, mds, srtt, True)
        if sender.peer_min_ack_delay is None or sender._requested == wanted:
            assert not owed
            continue
        assert owed and sender._pending == wanted
        asked += 1
    assert asked


@pytest.mark.parametrize("plpmtu", [BASE_PLPMTU, 1452])
def test_pmtu_on_ack_changes_nothing_while_nothing_is_suspicious(plpmtu: int) -> None:
    """The ACK path skips ``on_ack`` when nothing was lost and ``suspicious`` is 0."""
    pmtu = PmtuDiscovery(BASE_PLPMTU, 1452, 600.0, lambda _size: None)
    pmtu.plpmtu = plpmtu
    assert pmtu.suspicious == 0
    before = {name: getattr(pmtu, name) for name in _slots(pmtu)}
    pmtu.on_ack([SentPacket(3, 7, 80), SentPacket(3, 8, plpmtu)], [], 1.0)
    assert {name: getattr(pmtu, name) for name in _slots(pmtu)} == before


def _slots(obj: object) -> list[str]:
    names: list[str] = []
    for cls in type(obj).__mro__:
        names.extend(getattr(cls, "__slots__", ()))
    return [name for name in names if hasattr(obj, name)]


class _Protector:
    key_phase = 0


def test_ack_written_leaves_the_tracker_as_on_ack_sent_does() -> None:
    """AckState.write sets what AckTracker.on_ack_sent sets, inline."""
    rng = random.Random(9)
    for _ in range(200):
        written, twin = AckState(0.025, 3), AckState(0.025, 3)
        pns = sorted(rng.sample(range(40), rng.randint(1, 12)))
        previous = rng.choice((-1, 5, 50))
        for acks in (written, twin):
            tracker = acks.trackers[APPLICATION]
            tracker.largest_acked_sent = previous
            for pn in pns:
                tracker.on_packet(pn, rng.random() < 0.9, 1.0)
        asm = PacketAssembler(1200)
        assert asm.begin_short_datagram(1200, b"\x01" * 8, _Protector(), APPLICATION, 0, None, 0)  # type: ignore[arg-type]
        assert written.write(asm, APPLICATION, 1.001)
        twin.trackers[APPLICATION].on_ack_sent(pns[-1])
        names = ("ack_eliciting_since_ack", "deadline", "fresh", "largest_acked_sent")
        got = [getattr(written.trackers[APPLICATION], name) for name in names]
        assert got == [getattr(twin.trackers[APPLICATION], name) for name in names]


def test_endpoint_reads_the_short_header_dcid_as_peek_dcid_does() -> None:
    """QuicEndpoint._receive reads a short header's Destination Connection ID inline:
    a datagram too short for it (or empty) is dropped as peek_dcid says; one of a known
    connection reaches it as bytes, bytearray or memoryview (peek_dcid then)."""
    pair = make_pair(seed=2)
    pair.handshake()
    server = pair.server_endpoint
    conn = pair.server
    cid = conn.host_cid
    for data in (b"", b"\x40", b"\x40" + cid[:-1]):
        before = server._replies.dropped
        server.receive_datagram(data, CLIENT_ADDR, pair.net.now)
        assert server._replies.dropped == before + 1, data
        with pytest.raises(QuicProtocolError):
            peek_dcid(data, len(cid))
    packet = b"\x40" + cid + bytes(40)  # routed to the connection: it fails to open it
    for data in (packet, bytearray(packet), memoryview(packet)):
        dropped = server._replies.dropped
        received = conn.paths.bytes_received
        server.receive_datagram(data, CLIENT_ADDR, pair.net.now)  # type: ignore[arg-type]
        assert server._replies.dropped == dropped  # not the endpoint's to drop
        assert conn.paths.bytes_received == received + len(packet)  # it reached conn
        assert peek_dcid(data, len(cid)) == cid


def test_endpoint_receive_datagram_takes_the_established_short_header_case_itself() -> None:
    """QuicEndpoint.receive_datagram feeds a short-header datagram of an established
    connection itself (``_receive``'s case, inline: a call less per datagram) and
    leaves every other datagram to ``_receive``: bytearray and memoryview data, an
    unknown connection ID, a long header, one too short for the ID. Either way the
    connection reads it, its events come out of the endpoint and it is served next."""
    pair = make_pair(
        seed=4,
        client_kwargs={"max_datagram_frame_size": 1200},
        server_kwargs={"max_datagram_frame_size": 1200},
    )
    pair.handshake()
    pair.run(max_time=1.0)
    server, conn = pair.server_endpoint, pair.server
    while server.next_event() is not None:
        pass
    routed: list[object] = []
    original = server._receive

    def counting(data: bytes, *args: Any) -> Any:
        routed.append(bytes(data))
        return original(data, *args)

    server._receive = counting  # type: ignore[method-assign]

    def from_client(payload: bytes) -> bytes:
        pair.client.send_datagram(payload)
        (data, _addr), *_ = pair.client.datagrams_to_send(pair.net.now)
        return data

    reader = conn.reader
    for kind in (bytes, bytearray, memoryview, bytes):
        payload = b"dgram %s" % kind.__name__.encode()
        data = from_client(payload)
        before = reader.processed
        server.receive_datagram(kind(data), CLIENT_ADDR, pair.net.now)  # type: ignore[arg-type]
        assert reader.processed == before + 1  # the connection read it
        assert server.next_event() == (conn, DatagramReceived(payload))
        assert server.next_event() is None
        assert server.has_pending_output  # served at the next send
        assert routed == ([] if kind is bytes else [data]), kind
        routed.clear()
        server.datagrams_to_send(pair.net.now)
    server.receive_datagram(data, CLIENT_ADDR, pair.net.now)  # a duplicate: read, no event
    assert server.next_event() is None and not routed
    cid = conn.host_cid
    for other in (b"\x40" + bytes(len(cid)) + bytes(30), b"\xc0" + bytes(40), b"\x40" + cid[:-1]):
        server.receive_datagram(other, CLIENT_ADDR, pair.net.now)
        assert routed == [other]  # not the connection's: _receive decides
        routed.clear()
    assert server.next_event() is None
