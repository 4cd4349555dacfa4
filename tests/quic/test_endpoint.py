"""The Sans-I/O endpoint: routing, version negotiation, admission of new connections."""

from __future__ import annotations

from quic.endpoint import ConnectionAccepted, QuicEndpoint
from quic.errors import TransportErrorCode
from quic.events import ConnectionTerminated
from quic.packet import encode_version_negotiation, parse_header
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
