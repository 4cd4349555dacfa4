"""Resumption and 0-RTT between our QUIC client and server, in memory on a fake clock
(RFC 9001 §4.5-§4.7, §4.9.3; RFC 9000 §7.4.1, §12.4, §17.2.3).

A first connection brings a ticket into the client's store; a second connection from
the same client endpoint resumes with it and sends stream data before the handshake
completes. Each way 0-RTT can be refused is checked to still deliver the data (sent
again in 1-RTT packets), and the buffer for 0-RTT packets that arrive before the
ClientHello is complete is bounded (N vs 4N).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from quic.conn_early import EarlyData, accepts_remembered, remembered_parameters
from quic.connection import QuicConnection
from quic.endpoint import QuicEndpoint
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import ConnectionTerminated, HandshakeCompleted, StreamDataReceived
from quic.packet import PacketType, encode_retry, parse_header, retry_pseudo_packet
from quic.protection import retry_integrity_tag
from quic.tls.antireplay import AntiReplay
from quic.tls.groups import NamedGroup
from quic.tls.keylog import KeyLogLabel
from quic.tls.tickets import InMemorySessionTicketStore, SessionTicketKeys
from quic.tparams import TransportParameters
from tests.support.quicpair import (
    CLIENT_ADDR,
    NOW,
    SERVER_ADDR,
    Pair,
    client_config,
    make_pair,
)


def resumable_pair(**server: Any) -> tuple[Pair, InMemorySessionTicketStore]:
    """A pair whose first connection completed and left one ticket in the store."""
    store = InMemorySessionTicketStore()
    settings: dict[str, Any] = {
        "ticket_keys": SessionTicketKeys(),
        "anti_replay": AntiReplay(),
        "clock": lambda: NOW,
    }
    settings.update(server)
    pair = make_pair(client_kwargs={"session_ticket_store": store}, server_kwargs=settings)
    pair.handshake()
    pair.run(lambda: len(store) == 1, max_time=2)
    assert len(store) == 1
    return pair, store


def second_connection(
    pair: Pair, store: InMemorySessionTicketStore, payload: bytes = b"early request", **client: Any
) -> tuple[QuicConnection, int]:
    """Connect again with the store and write a stream at once (0-RTT if possible)."""
    client.setdefault("session_ticket_store", store)
    clock = client.pop("clock", None)
    config = client_config(**client)
    if clock is not None:
        config.clock = clock
    conn = pair.client_endpoint.connect(SERVER_ADDR, config, pair.net.now)
    pair.client = conn
    pair._server = None
    pair.client_events.clear()
    pair.server_events.clear()
    pair.data["server"].clear()
    pair.fin["server"].clear()
    if not conn.handshake.early.attempted:  # no 0-RTT: streams once the handshake is done
        pair.run(lambda: conn.handshake_complete, max_time=10)
    sid = conn.create_stream()
    conn.send_stream_data(sid, payload, end_stream=True)
    return conn, sid


def finish(pair: Pair, conn: QuicConnection, sid: int) -> QuicConnection:
    def done() -> bool:
        servers = pair.server_endpoint.connections
        return bool(
            conn.handshake_complete
            and sid in pair.fin["server"]
            and servers
            and servers[-1].handshake_complete
        )

    pair.run(done, max_time=10)
    assert done()
    return pair.server_endpoint.connections[-1]


def completed(pair: Pair, side: str) -> HandshakeCompleted:
    (event,) = pair.events_of(HandshakeCompleted, side)
    return event  # type: ignore[no-any-return]


def test_zero_rtt_accepted_delivers_data_before_the_handshake_completes() -> None:
    pair, store = resumable_pair()
    lines: list[str] = []
    conn, sid = second_connection(pair, store, keylog=lines.append)
    server = finish(pair, conn, sid)
    assert pair.data["server"][sid] == b"early request"
    client_done = completed(pair, "client")
    assert client_done.session_resumed and client_done.early_data_accepted
    assert completed(pair, "server").early_data_accepted
    assert server.reader.zero_rtt_processed >= 1
    # the stream data reached the server application before its handshake completed
    kinds = [type(e) for e in pair.server_events]
    assert kinds.index(StreamDataReceived) < kinds.index(HandshakeCompleted)
    assert any(line.startswith(KeyLogLabel.CLIENT_EARLY_TRAFFIC_SECRET) for line in lines)
    # 0-RTT keys are gone on both sides once the handshake is done (RFC 9001 §4.9.3)
    pair.run(lambda: server.handshake_confirmed and conn.handshake_confirmed, max_time=2)
    for side in (conn, server):
        assert side.keys.zero_rtt_write is None and side.keys.zero_rtt_read is None
    assert len(store) == 1  # the resumed connection brought a fresh ticket


def test_resumption_without_zero_rtt_when_the_client_does_not_want_it() -> None:
    pair, store = resumable_pair()
    conn, sid = second_connection(pair, store, enable_early_data=False)
    server = finish(pair, conn, sid)
    done = completed(pair, "client")
    assert done.session_resumed and not done.early_data_accepted
    assert server.reader.zero_rtt_processed == 0
    assert server.tls.early_data_refusal == "not offered"


def _rejected(pair: Pair, store: InMemorySessionTicketStore, reason: str, **client: Any) -> None:
    conn, sid = second_connection(pair, store, payload=b"x" * 5000, **client)
    server = finish(pair, conn, sid)
    assert pair.data["server"][sid] == b"x" * 5000  # sent again in 1-RTT (RFC 9001 §4.6.2)
    assert not completed(pair, "client").early_data_accepted
    assert conn.handshake.early.rejected
    assert server.tls.early_data_refusal == reason
    assert server.reader.zero_rtt_processed == 0
    assert server.dropped_packets >= 1  # the 0-RTT packets
    assert conn.state.value == "connected" and server.state.value == "connected"


def test_zero_rtt_rejected_when_the_server_disabled_it() -> None:
    pair, store = resumable_pair()
    pair.server_endpoint.server_configuration.enable_early_data = False
    _rejected(pair, store, "disabled")


def test_zero_rtt_rejected_when_the_server_reduced_a_limit() -> None:
    pair, store = resumable_pair()
    pair.server_endpoint.server_configuration.initial_max_streams_bidi = 64  # was 128
    _rejected(pair, store, "transport parameters")


def _closed_after_rejection(pair: Pair, store: InMemorySessionTicketStore, **client: Any) -> str:
    """The client gives up its 0-RTT streams (RFC 9001 §4.6.2) by closing; the reason."""
    conn, sid = second_connection(pair, store, payload=b"x" * 5000, **client)
    pair.run(lambda: conn.state.value != "handshake", max_time=10)
    pair.run(lambda: conn.is_closed, max_time=10)
    (terminated,) = pair.events_of(ConnectionTerminated, "client")
    assert terminated.error_code == TransportErrorCode.NO_ERROR and not terminated.by_peer
    assert sid not in pair.fin["server"]  # nothing of the 0-RTT stream was resent
    return str(terminated.reason_phrase)


def test_zero_rtt_rejected_for_another_alpn_closes() -> None:
    pair, store = resumable_pair()
    pair.server_endpoint.server_configuration.alpn_protocols = ["other", "test"]
    reason = _closed_after_rejection(pair, store, alpn_protocols=["other", "test"])
    assert "RFC 9001 §4.6.2" in reason
    server = pair.server_endpoint.connections[-1]
    assert server.tls.early_data_refusal == "alpn"


def test_zero_rtt_rejected_with_less_credit_than_was_sent_closes() -> None:
    pair, store = resumable_pair()
    pair.server_endpoint.server_configuration.initial_max_data = 4000  # < 5000 sent
    _closed_after_rejection(pair, store)
    assert pair.server_endpoint.connections[-1].tls.early_data_refusal == "transport parameters"


def test_replayed_ticket_gets_no_second_zero_rtt() -> None:
    pair, store = resumable_pair()
    ticket = store.take("localhost", NOW)
    assert ticket is not None
    conn, sid = second_connection(pair, store, session_ticket=ticket)
    finish(pair, conn, sid)
    assert completed(pair, "client").early_data_accepted
    _rejected(pair, store, "replay", session_ticket=ticket)


def test_expired_ticket_is_not_used() -> None:
    pair, store = resumable_pair()
    later = NOW + timedelta(days=1, seconds=1)
    conn, sid = second_connection(pair, store, clock=lambda: later)
    finish(pair, conn, sid)
    done = completed(pair, "client")
    assert not done.session_resumed and not done.early_data_accepted
    pair.run(lambda: len(store) == 1, max_time=2)
    assert len(store) == 1  # the new full handshake's ticket; the expired one is gone


def test_no_ticket_without_ticket_keys() -> None:
    store = InMemorySessionTicketStore()
    pair = make_pair(client_kwargs={"session_ticket_store": store})
    pair.handshake()
    pair.run(max_time=1)
    assert len(store) == 0


def test_remembered_parameters_drop_what_must_not_be_remembered() -> None:
    raw = TransportParameters(
        original_destination_connection_id=b"o" * 8,
        stateless_reset_token=b"r" * 16,
        ack_delay_exponent=10,
        max_ack_delay=100,
        initial_source_connection_id=b"s" * 8,
        initial_max_data=1000,
        initial_max_streams_bidi=7,
    ).encode()
    params = remembered_parameters(raw)
    assert params is not None
    assert params.initial_max_data == 1000 and params.initial_max_streams_bidi == 7
    assert params.ack_delay_exponent == 3 and params.max_ack_delay == 25  # §7.4.1
    assert params.stateless_reset_token is None and params.initial_source_connection_id is None
    assert remembered_parameters(b"\xff") is None
    local = TransportParameters(initial_max_data=1000, initial_max_streams_bidi=7)
    assert accepts_remembered(local, raw)
    assert not accepts_remembered(dataclasses.replace(local, initial_max_data=999), raw)
    assert not accepts_remembered(local, b"\xff")


def test_client_rejects_reduced_limits_after_accepted_zero_rtt() -> None:
    early = EarlyData(None)
    early.attempted = True
    early.remembered = TransportParameters(initial_max_data=1000)
    with pytest.raises(QuicProtocolError) as exc:
        early.complete(True, TransportParameters(initial_max_data=999))
    assert exc.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    early.complete(False, TransportParameters(initial_max_data=999))  # rejected: fine
    assert early.rejected


# -- 0-RTT before the ClientHello: bounded buffering (RFC 9001 §4.7) ---------------------


def _zero_rtt_burst(copies: int) -> tuple[int, int, int]:
    """Deliver a resumed client's 0-RTT datagrams, each ``copies`` times (a replaying
    attacker), before the second half of its ClientHello; returns (0-RTT datagrams
    delivered early, packets buffered at the peak, packets processed in 0-RTT)."""
    pair, store = resumable_pair()
    limit = pair.server_endpoint.server_configuration.max_buffered_undecryptable_packets
    server_ep: QuicEndpoint = pair.server_endpoint
    conn = pair.client_endpoint.connect(
        SERVER_ADDR, client_config(session_ticket_store=store), pair.net.now
    )
    for _ in range(8):
        sid = conn.create_stream()
        conn.send_stream_data(sid, b"z" * 4000, end_stream=True)
    now = pair.net.now
    initial: list[bytes] = []
    rest: list[bytes] = []
    for data, _ in conn.datagrams_to_send(now):
        header = parse_header(data, 0, 8)
        (initial if header.packet_type is PacketType.INITIAL else rest).append(data)
    assert len(initial) == 2 and rest  # the hybrid key share: the ClientHello spans two
    before = len(server_ep.connections)
    server_ep.receive_datagram(initial[0], CLIENT_ADDR, now)
    (server,) = server_ep.connections[before:]
    peak = 0
    early = rest * copies
    for data in early:
        server_ep.receive_datagram(data, CLIENT_ADDR, now)
        peak = max(peak, server.queue_sizes()["buffered_packets"])
    assert peak <= limit
    server_ep.receive_datagram(initial[1], CLIENT_ADDR, now)
    assert server.tls.early_data_accepted
    assert server.queue_sizes()["buffered_packets"] == 0
    assert server.queue_sizes()["reprocess"] == 0
    return len(early), peak, server.reader.zero_rtt_processed


def test_zero_rtt_before_the_client_hello_is_buffered_bounded_n_vs_4n() -> None:
    sent_n, peak_n, processed_n = _zero_rtt_burst(4)
    sent_4n, peak_4n, processed_4n = _zero_rtt_burst(16)
    assert sent_4n == 4 * sent_n  # 4x the 0-RTT packets arrived early...
    assert peak_n == peak_4n  # ...the buffer holds the same bounded number
    assert processed_n == processed_4n  # the buffered ones are used once keys exist
    assert processed_n >= 1


def test_ack_of_zero_rtt_does_not_confirm_the_handshake() -> None:
    """The server's first flight and its 1-RTT answer (with an ACK of our 0-RTT packet)
    arrive together: the client must still send its Finished (RFC 9001 §4.1.2 — only
    an acknowledged 1-RTT packet confirms; found against aioquic)."""
    pair, store = resumable_pair()
    client_ep, server_ep = pair.client_endpoint, pair.server_endpoint
    now = pair.net.now
    conn = client_ep.connect(SERVER_ADDR, client_config(session_ticket_store=store), now)
    sid = conn.create_stream()
    conn.send_stream_data(sid, b"ping", end_stream=True)
    for data, _ in client_ep.datagrams_to_send(now):
        server_ep.receive_datagram(data, CLIENT_ADDR, now)
    server = server_ep.connections[-1]
    while (item := server_ep.next_event()) is not None:  # answer the 0-RTT request
        if isinstance(item[1], StreamDataReceived) and item[1].end_stream:
            server.send_stream_data(item[1].stream_id, b"pong", end_stream=True)
            server_ep.wake(server)
    flight = [data for data, _ in server_ep.datagrams_to_send(now)]
    kinds = set()
    for data in flight:
        pos = 0
        while pos < len(data):
            header = parse_header(data, pos, 8)
            kinds.add(header.packet_type)
            pos = header.end
    assert {PacketType.HANDSHAKE, PacketType.ONE_RTT} <= kinds
    for data in flight:
        client_ep.receive_datagram(data, SERVER_ADDR, now)
    assert conn.handshake_complete and not conn.handshake_confirmed
    for data, _ in client_ep.datagrams_to_send(now):
        server_ep.receive_datagram(data, CLIENT_ADDR, now)
    assert server.handshake_complete  # the client's Finished arrived


def test_hello_retry_request_stops_zero_rtt_and_the_data_is_resent() -> None:
    groups = {"groups": (NamedGroup.secp256r1,)}  # the client sends no share for it
    pair, store = resumable_pair(**groups)
    conn, sid = second_connection(pair, store, payload=b"y" * 3000)
    assert conn.early_data_possible
    pair.run(lambda: conn.tls.hello_retry_request_received, max_time=5)
    assert not conn.early_data_possible  # no 0-RTT after an HRR (RFC 9001 §4.6.2)
    server = finish(pair, conn, sid)
    assert pair.data["server"][sid] == b"y" * 3000
    assert conn.handshake.early.rejected and conn.tls.session_resumed
    assert server.tls.early_data_refusal == "hello retry"


def test_retry_sends_the_zero_rtt_data_again_to_the_new_connection_id() -> None:
    pair, store = resumable_pair()
    now = pair.net.now
    conn = pair.client_endpoint.connect(SERVER_ADDR, client_config(session_ticket_store=store), now)
    sid = conn.create_stream()
    conn.send_stream_data(sid, b"early", end_stream=True)
    first = conn.datagrams_to_send(now)
    assert any(_packet_types(d, 8)[PacketType.ZERO_RTT] for d, _ in first)
    new_scid = b"R" * 8
    without_tag = encode_retry(conn.version, conn.host_cid, new_scid, b"token")
    tag = retry_integrity_tag(conn.version, retry_pseudo_packet(conn.original_dcid, without_tag))
    conn.receive_datagram(without_tag + tag, SERVER_ADDR, now)
    again = conn.datagrams_to_send(now)
    zero_rtt_dcids = [dcid for d, _ in again for dcid in _packet_types(d, 8)[PacketType.ZERO_RTT]]
    assert zero_rtt_dcids and set(zero_rtt_dcids) == {new_scid}


def _packet_types(data: bytes, cid_len: int) -> dict[PacketType, list[bytes]]:
    """Destination connection IDs of the long-header packets of a datagram, by type."""
    found: dict[PacketType, list[bytes]] = {t: [] for t in PacketType}
    pos = 0
    while pos < len(data):
        header = parse_header(data, pos, cid_len)
        if header.packet_type is not None:
            found[header.packet_type].append(header.dcid)
        if not header.is_long:
            break
        pos = header.end
    return found


def test_ticket_with_undecodable_parameters_sends_no_zero_rtt() -> None:
    pair, store = resumable_pair()
    ticket = store.take("localhost", NOW)
    assert ticket is not None
    broken = dataclasses.replace(ticket, transport_parameters=b"\xff")
    conn, sid = second_connection(pair, store, session_ticket=broken)
    assert not conn.early_data_possible and not conn.handshake.early.attempted
    finish(pair, conn, sid)
    assert conn.tls.session_resumed and conn.keys.zero_rtt_write is None
