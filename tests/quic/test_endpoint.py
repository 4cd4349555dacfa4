"""The Sans-I/O endpoint: routing, version negotiation, admission of new connections."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from quic.endpoint import ConnectionAccepted, ConnectionRemoved, QuicEndpoint
from quic.errors import TransportErrorCode
from quic.events import ConnectionTerminated
from quic.frames import PingFrame
from quic.packet import PacketType, encode_version_negotiation, parse_header
from quic.packet_builder import PacketAssembler
from quic.protection import initial_keys
from quic.tls.groups import NamedGroup
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, client_config, make_pair, server_config

UNKNOWN_VERSION = 0x1A2A3A4A


def _long_header_unknown_version(size: int) -> bytes:
    dcid, scid = bytes(range(8)), bytes(range(8, 16))
    head = b"\xc0" + UNKNOWN_VERSION.to_bytes(4, "big") + b"\x08" + dcid + b"\x08" + scid
    return head + bytes(size - len(head))


def test_server_answers_unknown_version_with_version_negotiation() -> None:
    server = QuicEndpoint(server_config())
    server.receive_datagram(_long_header_unknown_version(1200), CLIENT_ADDR, 0.0)
    out = server.datagrams_to_send(0.0)
    assert len(out) == 1
    data, addr = out[0]
    assert addr == CLIENT_ADDR
    vn = parse_header(data, 0, 8)
    assert vn.version == 0
    # RFC 9000 §17.2.1: connection IDs echoed, swapped
    assert vn.dcid == bytes(range(8, 16)) and vn.scid == bytes(range(8))
    assert 0x00000001 in vn.supported_versions
    assert not server.connections


def test_no_version_negotiation_for_small_datagrams() -> None:
    server = QuicEndpoint(server_config())
    server.receive_datagram(_long_header_unknown_version(600), CLIENT_ADDR, 0.0)
    assert server.datagrams_to_send(0.0) == []


def test_client_fails_cleanly_on_version_negotiation() -> None:
    client = QuicEndpoint()
    conn = client.connect(SERVER_ADDR, client_config(), 0.0)
    client.datagrams_to_send(0.0)
    vn = encode_version_negotiation(conn.host_cid, conn.original_dcid, [UNKNOWN_VERSION])
    client.receive_datagram(vn, SERVER_ADDR, 0.01)
    events = []
    while (item := client.next_event()) is not None:
        events.append(item[1])
    terms = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert terms and terms[0].error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR
    assert conn.is_closed
    client.datagrams_to_send(0.02)
    assert not client.connections  # reaped


def test_version_negotiation_listing_our_version_is_ignored() -> None:
    client = QuicEndpoint()
    conn = client.connect(SERVER_ADDR, client_config(), 0.0)
    vn = encode_version_negotiation(conn.host_cid, conn.original_dcid, [1, UNKNOWN_VERSION])
    client.receive_datagram(vn, SERVER_ADDR, 0.01)
    assert not conn.is_closed


def test_small_initial_and_garbage_do_not_create_connections() -> None:
    pair = make_pair()
    first = pair.client_endpoint.datagrams_to_send(pair.net.now)
    initial = first[0][0]
    server = QuicEndpoint(server_config())
    server.receive_datagram(initial[:1000], CLIENT_ADDR, 0.0)  # RFC 9000 §14.1
    server.receive_datagram(b"\x40" + bytes(50), CLIENT_ADDR, 0.0)
    server.receive_datagram(b"", CLIENT_ADDR, 0.0)
    assert not server.connections
    server.receive_datagram(initial, CLIENT_ADDR, 0.0)
    assert len(server.connections) == 1
    item = server.next_event()
    assert item is not None and isinstance(item[1], ConnectionAccepted)


def test_many_connections_on_one_endpoint() -> None:
    pair = make_pair()
    extra = [
        pair.client_endpoint.connect(SERVER_ADDR, client_config(), pair.net.now) for _ in range(20)
    ]
    pair.run(lambda: all(c.handshake_complete for c in [pair.client, *extra]), max_time=10)
    assert len(pair.server_endpoint.connections) == 21
    assert len({c.host_cid for c in pair.server_endpoint.connections}) == 21


def test_server_accepts_quic_v2_clients_by_default() -> None:
    """RFC 9369: a client starting with QUIC v2 is served in v2 (the server speaks both)."""
    pair = make_pair(client_kwargs={"supported_versions": (0x6B3343CF,)})
    pair.handshake()
    assert pair.client.version == pair.server.version == 0x6B3343CF
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"over v2", end_stream=True)
    pair.run(lambda: pair.stream_done(sid))
    assert bytes(pair.data["server"][sid]) == b"over v2"


# -- finding 13: a corrupted first Initial leaves no state ----------------------------------


def _first_flight(**client_kwargs: Any) -> tuple[list[bytes], int]:
    """The client's first datagrams, and the offset of the first packet's payload."""
    pair = make_pair(client_kwargs=client_kwargs)
    flight = [data for data, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
    return flight, parse_header(flight[0], 0, 8).pn_offset


@pytest.mark.parametrize("complete_hello", [False, True], ids=["two-packet-hello", "one-packet"])
def test_corrupted_first_initial_keeps_no_state(complete_hello: bool) -> None:
    """RFC 9001 §5.2, RFC 9000 §12.2: a packet that fails authentication is discarded
    and no state is kept: no connection, no route, no event, nothing sent (a Version
    Negotiation packet answers a corrupted *version*, RFC 9000 §6.1)."""
    kwargs = {"key_share_groups": (NamedGroup.x25519,)} if complete_hello else {}
    flight, payload_offset = _first_flight(**kwargs)
    first = flight[0]
    for pos in range(payload_offset + 40):  # every header byte and the first payload bytes
        bad = bytearray(first)
        bad[pos] ^= 0x01
        server = QuicEndpoint(server_config())
        server.receive_datagram(bytes(bad), CLIENT_ADDR, 0.0)
        assert server.connections == [], pos
        assert server.route_count == 0 and server.half_open_connections == 0, pos
        assert server.next_event() is None, pos
        sent = server.datagrams_to_send(0.0)
        if 1 <= pos <= 4:
            assert all(parse_header(d, 0, 8).version == 0 for d, _ in sent), pos
        else:
            assert sent == [], pos
        for data in flight:  # the intact retransmission is served as if nothing happened
            server.receive_datagram(data, CLIENT_ADDR, 0.1)
        assert len(server.connections) == 1, pos
        assert server.connections[0].peer_address == CLIENT_ADDR


@pytest.mark.parametrize("complete_hello", [False, True], ids=["two-packet-hello", "one-packet"])
def test_handshake_completes_at_once_after_a_corrupted_first_initial(
    complete_hello: bool,
) -> None:
    """Each byte of the first 64 of the client's first datagram corrupted in flight: the
    client's retransmission (PTO, ~1 s) completes the handshake at once, on the only
    connection the server ever accepted, and the server never closes anything (before
    the fix, a corrupted SCID made the server keep it and answer the intact
    retransmission with CONNECTION_CLOSE: the handshake took ~7 s)."""
    kwargs = {"key_share_groups": (NamedGroup.x25519,)} if complete_hello else {}
    for pos in range(64):
        pair = make_pair(client_kwargs=kwargs)
        link = pair.net.link(CLIENT_ADDR, SERVER_ADDR)
        schedule = link.schedule
        sent = [0]

        def corrupt_first(
            data: bytes,
            now: float,
            rng: Any,
            pos: int = pos,
            sent: list[int] = sent,
            schedule: Any = schedule,
        ) -> Any:
            sent[0] += 1
            if sent[0] == 1:
                bad = bytearray(data)
                bad[pos] ^= 0x01
                data = bytes(bad)
            return schedule(data, now, rng)

        link.schedule = corrupt_first  # type: ignore[method-assign]
        start = pair.net.now
        pair.handshake()
        assert pair.net.now - start < 1.2, pos  # one PTO of the client, then one RTT
        assert len(pair.events_of(ConnectionAccepted)) == 1, pos
        assert not pair.events_of(ConnectionTerminated), pos
        assert pair.server.peer_address == CLIENT_ADDR


# -- finding 12: tiny Initial datagrams on an existing connection ----------------------------


def _ping_initial(conn_dcid: bytes, scid: bytes, version: int, pad: bool) -> bytes:
    write, _ = initial_keys(version, conn_dcid, is_client=True)
    asm = PacketAssembler(1200)
    asm.begin_datagram(1200)
    assert asm.begin_packet(PacketType.INITIAL, version, conn_dcid, scid, write, 0, 10, None)
    asm.push(PingFrame().encode())
    asm.end_packet()
    asm.end_datagram(pad_initial=pad)
    return asm.datagrams[0]


@pytest.mark.parametrize("version", [0x00000001, 0x6B3343CF], ids=["v1", "v2"])
def test_server_discards_small_initial_datagrams_of_existing_connections(version: int) -> None:
    """RFC 9000 §14.1: a server discards an Initial packet in a datagram smaller than
    1200 bytes — for a connection that exists too (v1 and v2 type bits)."""
    pair = make_pair(client_kwargs={"supported_versions": (version,)})
    client = pair.client
    server = QuicEndpoint(server_config())
    for data, _ in pair.client_endpoint.datagrams_to_send(0.0):
        server.receive_datagram(data, CLIENT_ADDR, 0.0)
    assert len(server.connections) == 1 and server.connections[0].version == version
    server.datagrams_to_send(0.0)  # the server's first flight (amplification-limited)
    assert server.datagrams_to_send(0.0) == []
    small = _ping_initial(client.original_dcid, client.host_cid, version, pad=False)
    assert len(small) < 1200
    dropped = server.dropped
    server.receive_datagram(small, CLIENT_ADDR, 0.01)
    assert server.dropped == dropped + 1
    assert server.datagrams_to_send(0.01) == []  # not processed: no ACK, no budget
    full = _ping_initial(client.original_dcid, client.host_cid, version, pad=True)
    assert len(full) == 1200
    server.receive_datagram(full, CLIENT_ADDR, 0.02)
    assert server.dropped == dropped + 1
    assert server.datagrams_to_send(0.02) != []  # the same packet, padded: acknowledged


# -- no exception escapes the endpoint ------------------------------------------------------


@pytest.mark.parametrize("method", ["receive_datagram", "routed_datagrams_to_send", "handle_timer"])
def test_a_connection_that_raises_is_closed_and_the_others_are_served(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An internal bug in one connection: closed with INTERNAL_ERROR (its close is sent
    if it can be), logged once; the endpoint never raises and serves the others."""
    pair = make_pair()
    other = pair.client_endpoint.connect(SERVER_ADDR, client_config(), pair.net.now)
    pair.run(lambda: pair.client.handshake_complete and other.handshake_complete)
    if method == "handle_timer":
        pair.net.settle(0.5)  # the handshake's own traffic is over
    victim = pair.server
    original = getattr(victim, method)
    failures = [0]

    def broken(*args: Any) -> Any:
        if failures[0] < 1:
            failures[0] += 1
            raise RuntimeError("injected bug")
        return original(*args)

    setattr(victim, method, broken)
    sid = pair.client.create_stream()
    if method == "handle_timer":
        # one ack-eliciting packet: the server acknowledges it on its ACK timer
        pair.client.send_stream_data(sid, b"x", end_stream=True)
        pair.client.send_ping(1)
    else:
        pair.client.send_stream_data(sid, b"x" * 5000, end_stream=True)
    with caplog.at_level(logging.ERROR, logger="quic.endpoint"):
        pair.net.settle(2.0)
    assert failures[0] == 1
    assert pair.server_endpoint.internal_errors == 1
    assert len([r for r in caplog.records if "internal error" in r.getMessage()]) == 1
    terms = pair.events_of(ConnectionTerminated)
    assert [t.error_code for t in terms] == [TransportErrorCode.INTERNAL_ERROR]
    # the client hears the close: the victim sent its CONNECTION_CLOSE
    assert pair.client.is_closed or pair.client.state.value in ("closing", "draining")
    pair.data["server"].clear()  # stream IDs of the two connections are the same
    pair.fin["server"].clear()
    osid = other.create_stream()
    other.send_stream_data(osid, b"still served", end_stream=True)
    pair.run(lambda: pair.stream_done(osid))
    assert bytes(pair.data["server"][osid]) == b"still served"


def test_a_connection_that_keeps_raising_is_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    """A connection whose every send raises: closed, then forgotten (ConnectionRemoved,
    no route left); logged once; the endpoint goes on serving the other connection."""
    pair = make_pair()
    other = pair.client_endpoint.connect(SERVER_ADDR, client_config(), pair.net.now)
    pair.run(lambda: pair.client.handshake_complete and other.handshake_complete)
    victim = pair.server

    def broken(now: float) -> list[tuple[bytes, Any, int]]:
        raise RuntimeError("injected bug")

    victim.routed_datagrams_to_send = broken  # type: ignore[method-assign]
    pair.server_endpoint.wake(victim)
    with caplog.at_level(logging.ERROR, logger="quic.endpoint"):
        pair.net.settle(0.5)
    assert victim not in pair.server_endpoint.connections
    assert len(pair.events_of(ConnectionRemoved)) == 1
    assert all(c is not victim for c in pair.server_endpoint._routes.values())
    assert len([r for r in caplog.records if "internal error" in r.getMessage()]) == 1
    pair.data["server"].clear()  # stream IDs of the two connections are the same
    pair.fin["server"].clear()
    osid = other.create_stream()
    other.send_stream_data(osid, b"still served", end_stream=True)
    pair.run(lambda: pair.stream_done(osid))
    assert bytes(pair.data["server"][osid]) == b"still served"


def test_get_timer_of_a_raising_connection_does_not_escape() -> None:
    pair = make_pair()
    pair.handshake()
    victim = pair.server

    def broken() -> float | None:
        raise RuntimeError("injected bug")

    victim.get_timer = broken  # type: ignore[method-assign]
    pair.server_endpoint.wake(victim)
    pair.server_endpoint.datagrams_to_send(pair.net.now)  # served: its deadline unfiled
    pair.server_endpoint.get_timer()  # files it after the send: raises
    assert pair.server_endpoint.internal_errors == 1
    pair.server_endpoint.get_timer()
    pair.server_endpoint.handle_timer(pair.net.now + 100)


def test_get_timer_after_a_receive_sees_the_deadline_before_any_send() -> None:
    """The deadline of a connection that received datagrams is filed at its next serve
    (the transmit recomputes it anyway); get_timer and handle_timer called before that
    file it first, so they see the receive's deadline (here: the ACK it owes)."""
    pair = make_pair()
    pair.handshake()
    pair.run(max_time=1.0)  # settle: nothing outstanding
    client, server = pair.client_endpoint, pair.server_endpoint
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"x" * 100)
    client.wake(pair.client)
    now = pair.net.now
    for data, _ in client.datagrams_to_send(now):
        server.receive_datagram(data, CLIENT_ADDR, now)
    assert server.get_timer() == pair.server.get_timer()
    owed = pair.server.get_timer()
    assert owed is not None and owed <= now + 0.03  # max_ack_delay, RFC 9000 §13.2.1
    server.handle_timer(owed)  # fires the ACK deadline: an ACK-only packet is due
    assert server.datagrams_to_send(owed)


def _bulk_datagrams(seed: int) -> tuple[Any, list[bytes], int]:
    pair = make_pair(seed=seed)
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"g" * 20_000, end_stream=True)
    pair.client_endpoint.wake(pair.client)
    datagrams = [d for d, _ in pair.client_endpoint.datagrams_to_send(pair.net.now)]
    assert len(datagrams) > 5
    return pair, datagrams, sid


def test_datagrams_received_together_are_fed_as_one_by_one() -> None:
    """receive_datagrams (the segments of a GRO read) leaves the endpoint as feeding
    each with receive_datagram would."""
    one, datagrams_one, sid = _bulk_datagrams(11)
    for data in datagrams_one:
        one.server_endpoint.receive_datagram(data, CLIENT_ADDR, one.net.now)
    many, datagrams_many, _ = _bulk_datagrams(11)
    many.server_endpoint.receive_datagrams(datagrams_many, CLIENT_ADDR, many.net.now)
    for pair in (one, many):
        pair.net.settle(1.0)
    assert len(datagrams_many) == len(datagrams_one)
    assert bytes(many.data["server"][sid]) == bytes(one.data["server"][sid]) == b"g" * 20_000
    assert many.server.acks.trackers[2].received == one.server.acks.trackers[2].received


def test_a_bug_on_one_of_datagrams_received_together_drops_that_one() -> None:
    pair, datagrams, _ = _bulk_datagrams(12)
    endpoint = pair.server_endpoint
    original = endpoint._receive
    calls = [0]

    def flaky(*args: Any) -> None:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("injected bug")
        original(*args)

    endpoint._receive = flaky  # type: ignore[method-assign]
    endpoint.receive_datagrams(datagrams, CLIENT_ADDR, pair.net.now)  # never raises
    assert calls[0] == len(datagrams)  # the datagrams after the bug were fed too
    assert pair.server.acks.trackers[2].received  # and processed


def test_datagrams_received_together_skip_the_routing_only_behind_their_own_id() -> None:
    """In receive_datagrams a short-header datagram goes straight to the connection of
    the datagram before it only when it carries the same connection ID; anything else
    (here an unknown ID between two of them) is routed as usual, and every datagram of
    the connection is processed."""
    pair, datagrams, sid = _bulk_datagrams(13)
    endpoint = pair.server_endpoint
    original = endpoint._receive
    routed: list[bytes] = []

    def counting(data: bytes, *args: Any) -> Any:
        routed.append(data)
        return original(data, *args)

    endpoint._receive = counting  # type: ignore[method-assign]
    unknown = bytes([0x40]) + b"\xee" * 8 + bytes(40)  # a short header nobody owns
    batch = [*datagrams[:3], unknown, *datagrams[3:]]
    tracker = pair.server.acks.trackers[2]
    before = tracker.received.total()
    endpoint.receive_datagrams(batch, CLIENT_ADDR, pair.net.now)
    assert routed == [datagrams[0], unknown, datagrams[3]]  # the others went straight
    assert tracker.received.total() - before == len(datagrams)  # each one processed
    pair.net.settle(1.0)
    assert bytes(pair.data["server"][sid]) == b"g" * 20_000


def test_served_connection_is_settled_after_the_send() -> None:
    """A connection served by datagrams_to_send has its deadline filed at the caller's
    next call (after the datagrams left), and get_timer then sees the deadline the
    send armed."""
    pair = make_pair()
    pair.handshake()
    pair.run(max_time=1.0)
    endpoint, conn = pair.client_endpoint, pair.client
    calls = []
    real = conn.get_timer

    def counted() -> float | None:
        calls.append(1)
        return real()

    conn.get_timer = counted  # type: ignore[method-assign]
    sid = conn.create_stream()
    conn.send_stream_data(sid, b"x" * 100)
    endpoint.wake(conn)
    assert endpoint.datagrams_to_send(pair.net.now)
    assert calls == []  # nothing of its bookkeeping before the datagrams are handed out
    deadline = endpoint.get_timer()
    assert calls == [1]
    assert deadline is not None and deadline == real()  # the send's loss-detection timer
