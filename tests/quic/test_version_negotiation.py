"""QUIC v2 and version negotiation: compatible (RFC 9368 §2.3, RFC 9369 §4) and
incompatible (RFC 9000 §6, RFC 9368 §2.1), the Version Information checks (RFC 9368 §4)
and the endpoint's Version Negotiation answer to any unknown version (RFC 9000 §6.1).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from quic.conn_handshake import HandshakeDriver
from quic.connection import ConnectionState
from quic.endpoint import QuicEndpoint
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import ConnectionTerminated
from quic.packet import PacketType, parse_header
from quic.tparams import TransportParameters, VersionInformation
from quic.versions import QuicVersion, are_compatible, is_reserved_version
from tests.support.inject import client_initial
from tests.support.quicpair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    Pair,
    client_config,
    make_pair,
    server_config,
)

V1 = int(QuicVersion.VERSION_1)
V2 = int(QuicVersion.VERSION_2)


class Tap:
    """Records the long-header (version, type) of every packet an endpoint receives."""

    def __init__(self, inner: Any, cid_len: int = 8) -> None:
        self.inner = inner
        self.seen: list[tuple[int, PacketType]] = []
        self._cid_len = cid_len

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        pos = 0
        while pos < len(data) and data[pos] & 0x80:
            try:
                header = parse_header(data, pos, self._cid_len)
            except QuicProtocolError:
                break
            if header.version and header.packet_type is not None:
                self.seen.append((header.version, header.packet_type))
            pos = header.end
        self.inner.receive_datagram(data, addr, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _tapped_pair(client: dict[str, Any], server: dict[str, Any]) -> tuple[Pair, Tap, Tap]:
    pair = make_pair(client_kwargs=client, server_kwargs=server)
    to_client = Tap(pair.net.endpoints[CLIENT_ADDR])
    to_server = Tap(pair.net.endpoints[SERVER_ADDR])
    pair.net.endpoints[CLIENT_ADDR] = to_client
    pair.net.endpoints[SERVER_ADDR] = to_server
    return pair, to_client, to_server


def _handshake_time(pair: Pair) -> float:
    start = pair.net.now
    pair.handshake()
    return pair.net.now - start


# -- compatible version negotiation ---------------------------------------------------------


def test_client_starting_on_v1_offering_v2_ends_on_v2_in_one_round_trip() -> None:
    pair, to_client, to_server = _tapped_pair(
        {"supported_versions": (V2, V1), "initial_version": V1},
        {"supported_versions": (V2, V1)},
    )
    elapsed = _handshake_time(pair)
    assert pair.client.version == pair.server.version == V2
    # the client's first flight was v1; the server answered in v2 once it had read the
    # client's Version Information (§2.3) — before that it may acknowledge the first
    # packet of a ClientHello spanning two in v1 (§2.3) — and never went back
    assert to_server.seen[0] == (V1, PacketType.INITIAL)
    versions = [v for v, _ in to_client.seen]
    assert V2 in versions and V1 not in versions[versions.index(V2) :]
    assert (V1, PacketType.HANDSHAKE) not in to_client.seen
    # Handshake packets only in the Negotiated Version (RFC 9369 §4)
    assert (V1, PacketType.HANDSHAKE) not in to_server.seen
    # no extra round trip: as long as a plain v1 handshake
    plain = make_pair()
    assert elapsed <= _handshake_time(plain) + 1e-9
    # both sides' Version Information names v2 as chosen (RFC 9368 §4)
    client_info = pair.server.peer_params and pair.server.peer_params.version_information
    server_info = pair.client.peer_params and pair.client.peer_params.version_information
    assert client_info == VersionInformation(V1, (V2, V1))
    assert server_info is not None and server_info.chosen_version == V2
    # a connected server keeps no copy of the parameters it sent (issue 10, memory):
    # made again when asked, they are what the client received (v2 chosen included)
    assert pair.server.handshake._local_params is None
    assert pair.client.handshake._local_params is not None
    assert pair.server.handshake.local_params == pair.client.peer_params
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"over v2", end_stream=True)
    pair.run(lambda: pair.stream_done(sid))
    assert bytes(pair.data["server"][sid]) == b"over v2"
    assert pair.client.reader.dropped == pair.server.reader.dropped == 0


@pytest.mark.parametrize(
    ("client", "server", "expected"),
    [
        # the server prefers v1: it stays on the client's Chosen Version
        ({"supported_versions": (V2, V1), "initial_version": V1}, {}, V1),
        # the client does not offer v2: no switch, whatever the server prefers
        ({"supported_versions": (V1,)}, {"supported_versions": (V2, V1)}, V1),
        # a client starting on v2 offering v1, to a server preferring v1: v2 -> v1
        ({"supported_versions": (V2, V1)}, {"supported_versions": (V1, V2)}, V1),
        # the server speaks only v1: nothing to negotiate
        ({"supported_versions": (V1, V2)}, {"supported_versions": (V1,)}, V1),
    ],
)
def test_negotiated_version_follows_the_servers_preference_among_the_clients_offer(
    client: dict[str, Any], server: dict[str, Any], expected: int
) -> None:
    pair = make_pair(client_kwargs=client, server_kwargs=server)
    pair.handshake()
    assert pair.client.version == pair.server.version == expected


def test_compatible_negotiation_survives_loss_of_the_first_flights() -> None:
    for seed in range(6):
        pair = make_pair(
            seed=seed,
            client_kwargs={"supported_versions": (V2, V1), "initial_version": V1},
            server_kwargs={"supported_versions": (V2, V1)},
            loss=0.25,
        )
        pair.handshake()
        assert pair.client.version == pair.server.version == V2
        assert not pair.events_of(ConnectionTerminated, "client")


def test_only_v1_and_v2_are_compatible() -> None:
    assert are_compatible(V1, V2) and are_compatible(V2, V1) and are_compatible(V1, V1)
    assert not are_compatible(V1, 0x0A0A0A0A) and not are_compatible(0xFF00001D, V2)


# -- Version Information checks (RFC 9368 §4) -------------------------------------------------


def _server_driver(version: int, supported: tuple[int, ...]) -> HandshakeDriver:
    from collections import deque

    return HandshakeDriver(
        server_config(supported_versions=supported),
        deque(),
        version=version,
        original_dcid=bytes(8),
        host_cid=bytes(8),
        retry_scid=None,
        peer_initial_scid=bytes(8),
        reset_token=bytes(16),
    )


def _client_params(info: VersionInformation | None) -> bytes:
    return TransportParameters(
        initial_source_connection_id=bytes(8), version_information=info
    ).encode()


def test_server_refuses_a_chosen_version_other_than_the_initials() -> None:
    driver = _server_driver(V1, (V2, V1))
    with pytest.raises(QuicProtocolError) as info:
        driver._negotiate_version(_client_params(VersionInformation(V2, (V2, V1))))
    assert info.value.error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR


def test_server_switches_only_to_an_offered_compatible_version() -> None:
    driver = _server_driver(V1, (0x0A1A2A3A, V2, V1))
    driver._negotiate_version(_client_params(VersionInformation(V1, (V1, 0x0A1A2A3A, V2))))
    assert driver.version == V2 and driver.original_version == V1
    ours = driver.local_params.version_information
    assert ours is not None and ours.chosen_version == V2
    assert driver.progress().version == V2
    # without Version Information (a client that does not speak RFC 9368): no switch
    plain = _server_driver(V1, (V2, V1))
    plain._negotiate_version(_client_params(None))
    assert plain.version == V1


def test_client_detects_a_server_whose_chosen_version_is_not_the_one_in_use() -> None:
    # The server's packets switched us to v2 but its Version Information says v1: a
    # downgrade (or a broken server), VERSION_NEGOTIATION_ERROR (RFC 9368 §4).
    pair = make_pair(
        client_kwargs={"supported_versions": (V2, V1), "initial_version": V1},
        server_kwargs={"supported_versions": (V2, V1)},
    )
    real = HandshakeDriver._negotiate_version

    def lying(self: HandshakeDriver, raw: bytes) -> None:
        real(self, raw)
        self.local_params = dataclasses.replace(
            self.local_params, version_information=VersionInformation(V1, (V1, V2))
        )
        self.tls.transport_parameters = self.local_params.encode()

    try:
        HandshakeDriver._negotiate_version = lying  # type: ignore[method-assign]
        pair.run(lambda: bool(pair.events_of(ConnectionTerminated, "client")), max_time=5)
    finally:
        HandshakeDriver._negotiate_version = real  # type: ignore[method-assign]
    term = pair.events_of(ConnectionTerminated, "client")[0]
    assert term.error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR
    assert not term.by_peer


def test_client_ignores_a_server_packet_of_a_version_it_did_not_offer() -> None:
    pair = make_pair(client_kwargs={"supported_versions": (V1,)})
    handshake = pair.client.handshake
    assert not handshake.may_switch_to(V2)
    assert pair.client.version == V1
    pair.handshake()
    assert pair.client.version == V1


def test_an_unauthenticated_packet_of_the_other_version_does_not_switch_the_client() -> None:
    pair = make_pair(
        client_kwargs={"supported_versions": (V2, V1), "initial_version": V1},
        server_kwargs={"supported_versions": (V2, V1)},
    )
    client = pair.client
    assert client.handshake.may_switch_to(V2)
    # a v2 Initial that does not authenticate (wrong keys): dropped, still on v1
    forged = client_initial(client.host_cid, b"\x09" * 8, 0, b"\x01", version=V2)
    client.receive_datagram(forged, SERVER_ADDR, pair.net.now)
    assert client.version == client.handshake.version == V1
    assert not client.keys.reads_initial(V2) and client.reader.dropped == 1
    # the real server's v2 answer still switches it
    pair.handshake()
    assert client.version == pair.server.version == V2


# -- Version Negotiation (RFC 9000 §6) --------------------------------------------------------


def _probe(version: int, size: int = 1200, dcid: bytes = b"", scid: bytes = b"") -> bytes:
    head = (
        b"\xc0" + version.to_bytes(4, "big") + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    )
    return head + bytes(size - len(head))


@pytest.mark.parametrize(
    ("version", "dcid", "scid"),
    [
        (0x57414954, b"", b""),  # quic-interop-runner's readiness probe
        (0x0A0A0A0A, bytes(8), b"\x01\x02\x03\x04"),  # a reserved (greasing) version
        (0xFF00001D, bytes(range(20)), bytes(range(20, 40))),  # draft-29
        (0x12345678, b"x" * 40, b"y" * 3),  # invariants allow CIDs up to 255 bytes
    ],
)
def test_endpoint_answers_any_unknown_version_with_version_negotiation(
    version: int, dcid: bytes, scid: bytes
) -> None:
    endpoint = QuicEndpoint(server_config())
    endpoint.receive_datagram(_probe(version, dcid=dcid, scid=scid), CLIENT_ADDR, 0.0)
    out = endpoint.datagrams_to_send(0.0)
    assert len(out) == 1 and out[0][1] == CLIENT_ADDR
    vn = parse_header(out[0][0], 0, 0)
    assert vn.packet_type is PacketType.VERSION_NEGOTIATION and vn.version == 0
    # RFC 9000 §17.2.1: the connection IDs echoed, swapped
    assert (vn.dcid, vn.scid) == (scid, dcid)
    listed = vn.supported_versions
    assert V1 in listed and V2 in listed and version not in listed
    assert any(is_reserved_version(v) for v in listed)  # greased (RFC 9000 §6.3)
    assert not endpoint.connections


def test_no_version_negotiation_below_1200_bytes_nor_for_version_negotiation() -> None:
    endpoint = QuicEndpoint(server_config())
    endpoint.receive_datagram(_probe(0x57414954, size=1199), CLIENT_ADDR, 0.0)
    vn_like = b"\x80" + bytes(4) + b"\x00\x00" + V1.to_bytes(4, "big")
    endpoint.receive_datagram(vn_like + bytes(1200 - len(vn_like)), CLIENT_ADDR, 0.0)
    assert endpoint.datagrams_to_send(0.0) == []  # RFC 9000 §6.1, §14.1


def test_version_negotiation_answers_are_bounded_per_send() -> None:
    config = server_config(max_pending_stateless_packets=16)
    endpoint = QuicEndpoint(config)
    for n in (100, 400):
        for i in range(n):
            endpoint.receive_datagram(_probe(0x57414954), ("10.0.0.1", 1000 + i), 0.0)
        out = endpoint.datagrams_to_send(0.0)
        assert len(out) == 16  # the rest dropped: RFC 9000 §5.2.2 allows limiting them
        assert endpoint.dropped >= n - 16


def test_client_with_no_common_version_ends_with_version_negotiation_error() -> None:
    pair = make_pair(
        client_kwargs={"supported_versions": (V2,)}, server_kwargs={"supported_versions": (V1,)}
    )
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated, "client")), max_time=5)
    term = pair.events_of(ConnectionTerminated, "client")[0]
    assert term.error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR
    assert pair.client.state is ConnectionState.TERMINATED


# -- at scale ---------------------------------------------------------------------------------


def _upgraded_connections(n: int) -> tuple[int, int]:
    """n clients start on v1 and are upgraded to v2 by one server endpoint, then close;
    returns (datagrams the clients sent, what the server endpoint still holds after)."""
    compat = {"supported_versions": (V2, V1), "initial_version": V1}
    pair = make_pair(client_kwargs=compat, server_kwargs={"supported_versions": (V2, V1)})
    clients = [pair.client] + [
        pair.client_endpoint.connect(SERVER_ADDR, client_config(**compat), pair.net.now)
        for _ in range(n - 1)
    ]
    pair.run(lambda: all(c.handshake_complete for c in clients), max_time=30)
    server = pair.server_endpoint
    assert len(server.connections) == n
    assert {c.version for c in (*clients, *server.connections)} == {V2}
    for conn in clients:
        conn.close()
    pair.net.settle(5.0)
    sent = pair.net.link(CLIENT_ADDR, SERVER_ADDR).sent
    return sent, len(server.connections) + server.route_count


def test_many_upgraded_connections_cost_linear_and_leave_nothing_behind() -> None:
    sent1, left1 = _upgraded_connections(10)
    sent4, left4 = _upgraded_connections(40)
    assert left1 == left4 == 0
    assert 2 < sent4 / sent1 < 6
