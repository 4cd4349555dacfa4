"""CRYPTO data buffered out of order: bounded per encryption level (issue 8, finding 4;
RFC 9000 §7.5: CRYPTO_BUFFER_EXCEEDED, at least 4096 bytes must be accepted).

A hostile client sends Initial packets full of tiny CRYPTO frames that never reach
offset 0, so the TLS engine never sees a byte and everything stays in the reassembly
buffer of a half-open connection. Memory is measured with tracemalloc, N against 4N
fragments; the limit closes the connection with CRYPTO_BUFFER_EXCEEDED.
"""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest

from quic.configuration import QuicConfiguration
from quic.connection import QuicConnection
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import ConnectionTerminated
from quic.frames import encode_crypto_frame_header
from quic.stream_recv import CRYPTO_MIN_BUFFER, DEFAULT_CRYPTO_BUFFERS, CryptoRecvStream
from quic.tls.selfsigned import generate_self_signed
from tests.support.inject import client_initial
from tests.support.quicpair import (
    CLIENT_ADDR,
    NOW,
    certificate,
    make_pair,
    server_config,
)

DCID = bytes(range(8))
SCID = bytes(range(10, 18))
FRAMES_PER_PACKET = 100  # 1-byte CRYPTO frames: 4 bytes each on the wire


def crypto(offset: int, data: bytes) -> bytes:
    return encode_crypto_frame_header(offset, len(data)) + data


def server(config: QuicConfiguration | None = None) -> QuicConnection:
    return QuicConnection(
        config or server_config(),
        original_destination_connection_id=DCID,
        peer_connection_id=SCID,
    )


def datagrams(offsets: list[int], size: int = 1) -> list[bytes]:
    out = []
    for k in range(0, len(offsets), FRAMES_PER_PACKET):
        frames = b"".join(crypto(o, b"\x16" * size) for o in offsets[k : k + FRAMES_PER_PACKET])
        out.append(client_initial(DCID, SCID, k // FRAMES_PER_PACKET, frames))
    return out


def feed(conn: QuicConnection, packets: list[bytes]) -> list[ConnectionTerminated]:
    now = 1000.0
    for data in packets:
        conn.receive_datagram(data, CLIENT_ADDR, now)
        conn.datagrams_to_send(now)
        now += 0.001
    events = []
    while (event := conn.next_event()) is not None:
        if isinstance(event, ConnectionTerminated):
            events.append(event)
    return events


def retained_after(packets: list[bytes]) -> tuple[int, list[ConnectionTerminated]]:
    conn = server()
    conn.receive_datagram(packets[0], CLIENT_ADDR, 999.0)  # warm up (keys, tables)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        terms = feed(conn, packets[1:])
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, terms


def test_tiny_crypto_fragments_close_with_crypto_buffer_exceeded() -> None:
    """Finding 4: 714 kB of tiny Initial fragments cost 8.9 MB per half-open connection."""
    sizes = {}
    for n in (2000, 8000):  # every other byte of the Initial buffer: N and 4N holes
        offsets = list(range(1, 2 * n, 2))
        random.Random(n).shuffle(offsets)
        sizes[n], terms = retained_after(datagrams(offsets))
        assert len(terms) == 1
        assert terms[0].error_code == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED
        assert not terms[0].by_peer
    # nothing grows past the limit: 4N costs what N costs, and little in absolute terms
    assert sizes[8000] < 1.5 * sizes[2000]
    assert sizes[8000] < 200_000


def test_adjacent_tiny_crypto_fragments_cost_about_one_byte_per_byte() -> None:
    """Tiny fragments that touch are merged: memory follows the bytes held. The cost of
    the packets themselves (ACK state) is measured with PING-only packets and removed."""
    per_byte = {}
    for n in (3000, 12000):  # N and 4N bytes, one 1-byte frame each, never offset 0
        order: list[int] = []
        rng = random.Random(n)
        for base in range(0, n, 64):  # shuffled within blocks: few holes at a time
            block = [o for o in range(base, min(base + 64, n)) if o]
            rng.shuffle(block)
            order += block
        packets = datagrams(order)
        size, terms = retained_after(packets)
        assert not terms  # within the limits: the connection is fine
        pings = [client_initial(DCID, SCID, k, b"\x01") for k in range(len(packets))]
        baseline, _ = retained_after(pings)
        per_byte[n] = (size - baseline) / n
        assert per_byte[n] < 2.0, f"{per_byte[n]:.1f} bytes per byte"
    assert per_byte[12000] < 1.3 * per_byte[3000] + 0.1


def test_crypto_beyond_the_initial_buffer_is_crypto_buffer_exceeded() -> None:
    limit = DEFAULT_CRYPTO_BUFFERS[0]
    conn = server()
    assert not feed(conn, [client_initial(DCID, SCID, 0, crypto(limit - 10, b"x" * 10))])
    terms = feed(conn, [client_initial(DCID, SCID, 1, crypto(limit - 10, b"x" * 11))])
    assert terms and terms[0].error_code == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED


@pytest.mark.parametrize(
    ("kwargs", "offset", "ok"),
    [
        ({"max_crypto_buffer_initial": 100}, CRYPTO_MIN_BUFFER - 1, True),  # RFC minimum
        ({"max_crypto_buffer_initial": 100}, CRYPTO_MIN_BUFFER, False),
        ({"max_crypto_buffer_initial": 10_000}, 9_999, True),
        ({"max_crypto_buffer_initial": 10_000}, 10_000, False),
    ],
)
def test_initial_buffer_is_configurable(kwargs: dict[str, int], offset: int, ok: bool) -> None:
    conn = server(server_config(**kwargs))
    terms = feed(conn, [client_initial(DCID, SCID, 0, crypto(offset, b"x"))])
    if ok:
        assert not terms
    else:
        assert terms[0].error_code == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED


def test_crypto_fragment_limit_is_configurable() -> None:
    conn = server(server_config(max_crypto_fragments=10))
    assert not feed(conn, datagrams(list(range(1, 20, 2))))  # 10 holes
    terms = feed(conn, [client_initial(DCID, SCID, 9, crypto(100, b"x"))])
    assert terms[0].error_code == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED


def test_configured_limits_reach_every_level() -> None:
    config = server_config(
        max_crypto_buffer_initial=5000,
        max_crypto_buffer_handshake=6000,
        max_crypto_buffer_application=7000,
        max_crypto_fragments=9,
    )
    conn = server(config)
    assert conn.crypto.receive(2, 0, b"") == b""  # the 1-RTT level's: made on first use
    for recv, window in zip(conn.crypto.recv, (5000, 6000, 7000), strict=True):
        assert recv.window.max_data == window
        assert recv.reassembly.max_fragments == 9


@pytest.mark.parametrize("seed", range(3))
def test_handshake_with_large_chain_and_mlkem_under_loss(seed: int) -> None:
    """Normal handshakes are unaffected: a ~55 kB certificate chain (Handshake level)
    and the ML-KEM key share (a ClientHello over two Initial packets), with loss and
    reordering so that CRYPTO data arrives out of order."""
    extra = generate_self_signed(NOW).certificate
    pair = make_pair(seed=seed, loss=0.15, jitter=0.02)
    config = pair.server_endpoint.server_configuration
    assert config is not None
    config.certificate_chain = [certificate().certificate] + [extra] * 120
    pair.handshake()
    assert pair.client.handshake_complete and pair.server.handshake_complete
    assert pair.client.crypto.received[1] > 50_000
    assert pair.server.crypto.received[0] > 1200  # ML-KEM share
    assert not pair.events_of(ConnectionTerminated, "client")


def test_crypto_buffer_slides_as_tls_consumes() -> None:
    """The limit is on data beyond the first missing byte, not on the level's total."""
    r = CryptoRecvStream(CRYPTO_MIN_BUFFER, max_fragments=4)
    total = 0
    for _ in range(10):  # 40 KiB in order through a 4 KiB buffer
        r.on_stream_frame(total, b"t" * CRYPTO_MIN_BUFFER, False)
        total += CRYPTO_MIN_BUFFER
        assert len(r.read()) == CRYPTO_MIN_BUFFER
    r.on_stream_frame(total + CRYPTO_MIN_BUFFER - 1, b"x", False)  # last byte of the buffer
    with pytest.raises(QuicProtocolError) as info:
        r.on_stream_frame(total + CRYPTO_MIN_BUFFER, b"x", False)
    assert info.value.error_code == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED
    for off in (1, 3, 5):
        r.on_stream_frame(total + off, b"x", False)
    with pytest.raises(QuicProtocolError) as info:
        r.on_stream_frame(total + 7, b"x", False)  # a fifth hole
    assert info.value.error_code == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED


@pytest.mark.parametrize("tickets", [False, True])
def test_one_rtt_crypto_halves_are_made_on_first_use(tickets: bool) -> None:
    """A connected server keeps no 1-RTT CRYPTO receiving half and a client no 1-RTT
    sending half (issue 10, memory per idle connection); the server's sending half and
    the client's receiving half come with a NewSessionTicket. 1-RTT CRYPTO data from
    the client still makes one and is refused: unexpected_message (0x10a, RFC 9001
    §4.8)."""
    from quic.conn_crypto import _LATER_RECV, _LATER_SEND
    from quic.tls.tickets import SessionTicketKeys

    server_kwargs = {"ticket_keys": SessionTicketKeys(), "clock": lambda: NOW} if tickets else {}
    pair = make_pair(seed=3, server_kwargs=server_kwargs)
    pair.handshake()
    pair.run(lambda: pair.server.handshake.confirmed and pair.client.handshake.confirmed, 5)
    pair.net.settle(0.5)
    server, client = pair.server, pair.client
    assert server.crypto.recv[2] is _LATER_RECV and client.crypto.send[2] is _LATER_SEND
    assert (server.crypto.send[2] is not _LATER_SEND) is tickets
    assert (client.crypto.recv[2] is not _LATER_RECV) is tickets
    assert (client.crypto.received[2] > 0) is tickets  # the ticket came
    client.crypto.queue(2, b"\x04\x00\x00\x02\x00")  # a partial NewSessionTicket
    assert client.crypto.send[2] is not _LATER_SEND
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated)), 5)
    (closed,) = pair.events_of(ConnectionTerminated)
    assert closed.error_code == 0x10A and not closed.by_peer
