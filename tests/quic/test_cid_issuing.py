"""When connection IDs are issued (quic/cid.py, "Issuing"): once the handshake is
confirmed — a server at its completion, a client at HANDSHAKE_DONE — so the client's
Finished flight is its Handshake packet alone (issue 10, handshake row: no 1-RTT packet
of NEW_CONNECTION_ID frames on the critical path), and both sides still end up with the
peer's spare IDs before either may move to a new path (RFC 9000 §9)."""

from __future__ import annotations

from quic.cid import MAX_ISSUED
from quic.endpoint import QuicEndpoint
from quic.packet import PacketType, parse_header
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, client_config, make_pair, server_config


def _packet_types(datagram: bytes) -> list[PacketType | None]:
    types: list[PacketType | None] = []
    pos = 0
    while pos < len(datagram):
        header = parse_header(datagram, pos, 8)
        types.append(header.packet_type)
        if header.version is None:  # a short header runs to the datagram's end
            break
        pos = header.end
    return types


def test_the_clients_finished_flight_carries_no_new_connection_ids() -> None:
    server = QuicEndpoint(server_config())
    client = QuicEndpoint()
    conn = client.connect(SERVER_ADDR, client_config(), 0.0)
    for data, _ in client.datagrams_to_send(0.0):
        server.receive_datagram(data, CLIENT_ADDR, 0.0)
    for data, _ in server.datagrams_to_send(0.0):
        client.receive_datagram(data, SERVER_ADDR, 0.0)
    assert conn.handshake_complete and not conn.handshake_confirmed
    finished = client.datagrams_to_send(0.0)
    assert [_packet_types(data) for data, _ in finished] == [[PacketType.HANDSHAKE]]
    assert len(conn.cids.local) == 1  # only the handshake's own ID so far


def test_both_sides_hold_spare_ids_once_confirmed() -> None:
    pair = make_pair()
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    pair.run(max_time=0.5)  # the client's NEW_CONNECTION_ID frames reach the server
    client, server = pair.client, pair.server
    assert len(server.cids.local) > 1  # issued at completion (= confirmation)
    assert len(client.cids.local) > 1  # issued once HANDSHAKE_DONE confirmed it
    limit = min(MAX_ISSUED, client.cids.peer_limit)
    assert len(server.cids.peer) == limit  # the client's IDs arrived
    assert len(client.cids.peer) == min(MAX_ISSUED, server.cids.peer_limit)
