"""Entry points never raise, events leave one way, version negotiation, stateless reset.

Issue 8 items for the QUIC connection: no exception escapes a Sans-I/O entry point (an
internal bug closes that connection with INTERNAL_ERROR and is logged once), QUIC
events leave only through ``next_event()`` and every internal queue drains, a Version
Negotiation packet is handled as RFC 9000 §6.2 and RFC 9368 §2.1/§4 say, and stateless
reset tokens are compared in constant time (RFC 9000 §10.3.1).
"""

from __future__ import annotations

import dataclasses
import hmac
import inspect
import logging
import typing
from typing import Any

import pytest

import quic.cid
from quic.conn_handshake import HandshakeDriver
from quic.connection import ConnectionState, QuicConnection
from quic.errors import TransportErrorCode
from quic.events import (
    ConnectionTerminated,
    DatagramReceived,
    PingAcknowledged,
    QuicEvent,
    StreamReset,
)
from quic.frames import encode_path_challenge_frame
from quic.packet import encode_version_negotiation
from quic.recovery import LossRecovery
from quic.tparams import TransportParameters, VersionInformation
from quic.versions import QuicVersion
from tests.support.quicinject import seal_1rtt
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

V1 = QuicVersion.VERSION_1
V2 = QuicVersion.VERSION_2


def _established() -> Pair:
    pair = make_pair()
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    return pair


def _terminations(pair: Pair, side: str) -> list[ConnectionTerminated]:
    return pair.events_of(ConnectionTerminated, side)


# -- no exception escapes an entry point ---------------------------------------------------


class Boom(RuntimeError):
    pass


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise Boom("a bug")


def _assert_internal_error(conn: QuicConnection, caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(conn.last_internal_error, Boom)
    assert conn._close_frame is not None
    assert conn._close_frame[1] == TransportErrorCode.INTERNAL_ERROR
    records = [r for r in caplog.records if r.name == "quic" and r.levelno == logging.ERROR]
    assert len(records) == 1  # logged once


def test_bug_in_the_receive_path_closes_with_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = _established()
    server = pair.server
    server.dispatcher.dispatch = _boom  # type: ignore[method-assign]
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"hello", end_stream=True)
    pair.run(lambda: bool(_terminations(pair, "client")), max_time=5)
    _assert_internal_error(server, caplog)
    term = _terminations(pair, "client")[0]
    assert term.by_peer and term.error_code == TransportErrorCode.INTERNAL_ERROR


def test_bug_in_the_send_path_closes_with_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = _established()
    server = pair.server
    server.sender.build = _boom  # type: ignore[method-assign]
    server.send_stream_data(server.create_stream(False), b"x", end_stream=True)
    out = server.datagrams_to_send(pair.net.now)  # no exception: the CONNECTION_CLOSE
    assert len(out) == 1
    _assert_internal_error(server, caplog)
    pair.client_endpoint.receive_datagram(out[0][0], SERVER_ADDR, pair.net.now)
    pair.pump()
    assert _terminations(pair, "client")[0].error_code == TransportErrorCode.INTERNAL_ERROR


def test_bug_in_the_timers_closes_with_internal_error(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = _established()
    server = pair.server
    now = pair.net.now
    monkeypatch.setattr(LossRecovery, "get_loss_detection_timer", _boom)
    timer = server.get_timer()  # no exception; the connection is closing
    assert server.state is ConnectionState.CLOSING
    assert timer is None or timer >= now
    _assert_internal_error(server, caplog)
    monkeypatch.undo()

    caplog.clear()
    other = _established()
    monkeypatch.setattr(LossRecovery, "on_loss_detection_timeout", _boom)
    other.server.handle_timer(other.net.now + 0.001)
    monkeypatch.undo()
    assert other.server.state is ConnectionState.CLOSING
    _assert_internal_error(other.server, caplog)


def test_application_api_on_a_closed_connection_raises_nothing() -> None:
    pair = _established()
    client, server = pair.client, pair.server
    sid = client.create_stream()
    client.send_stream_data(sid, b"x" * 10_000)
    pair.run(lambda: sid in pair.data["server"], max_time=2)
    client.close(0, "bye")
    for state in (ConnectionState.CLOSING, ConnectionState.DRAINING, ConnectionState.TERMINATED):
        for conn in (client, server):
            if conn.state is ConnectionState.CONNECTED:
                continue
            conn.state = state
            for stream_id in (sid, 4 * 999, 3):
                conn.send_stream_data(stream_id, b"more", end_stream=True)
                conn.reset_stream(stream_id, 1)
                conn.stop_stream(stream_id, 2)
                conn.consume_stream_data(stream_id, 5)
            conn.send_datagram(b"d" * 100_000)  # would not fit: dropped, no ValueError
            conn.send_ping(7)
            conn.request_key_update()
            conn.close(5, "again")
            conn.export_keying_material(b"label", b"", 16)
            assert conn.max_datagram_payload >= 0
            conn.receive_datagram(b"\x40" + bytes(60), CLIENT_ADDR, pair.net.now)
            conn.handle_timer(pair.net.now + 1)
            conn.get_timer()
            conn.datagrams_to_send(pair.net.now + 1)
            while conn.next_event() is not None:
                pass
            assert conn.last_internal_error is None
        pair.run(max_time=0.2)


# -- one way out -----------------------------------------------------------------------------


def test_events_leave_only_through_next_event() -> None:
    # No method but next_event() returns events (the other entry points return None,
    # datagrams or a deadline). Methods defined in other modules (receive_datagram, in
    # quic.conn_batch) name QuicConnection only for the type checker: resolved here.
    names = {"QuicConnection": QuicConnection}
    for name, function in inspect.getmembers(QuicConnection, inspect.isfunction):
        hints = typing.get_type_hints(function, localns=names)
        returned = str(hints.get("return"))
        if name != "next_event":
            assert "QuicEvent" not in returned, name
    assert "QuicEvent" in str(typing.get_type_hints(QuicConnection.next_event)["return"])


def test_every_internal_queue_drains_after_a_busy_pair() -> None:
    pair = _established()
    client, server = pair.client, pair.server
    # streams both ways, of every type, some reset or stopped
    bidis = []
    for i in range(20):
        sid = client.create_stream(bidirectional=i % 2 == 0)
        client.send_stream_data(sid, bytes([i]) * 5000, end_stream=True)
        if i % 2 == 0:
            bidis.append(sid)
    sid = server.create_stream(False)
    server.send_stream_data(sid, b"s" * 20_000, end_stream=True)
    doomed = client.create_stream()
    client.send_stream_data(doomed, b"z" * 3000)
    client.reset_stream(doomed, 9)
    # datagrams, pings, a key update, path challenges
    for i in range(30):
        client.send_datagram(bytes([i]) * 100)
        server.send_datagram(bytes([i]) * 200)
    for uid in range(5):
        client.send_ping(uid)
    pair.run(lambda: len(pair.events_of(PingAcknowledged, "client")) == 5, max_time=5)
    client.request_key_update()
    for i in range(10):
        data = seal_1rtt(client, encode_path_challenge_frame(i.to_bytes(8, "big")), pair.net.now)
        pair.server_endpoint.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    pair.run(lambda: bool(pair.events_of(StreamReset, "server")), max_time=5)
    for bidi in [*bidis, doomed]:  # the server ends its half of each bidi stream
        server.send_stream_data(bidi, b"", end_stream=True)
    pair.net.settle(3.0)
    assert len(pair.events_of(DatagramReceived, "server")) == 30
    assert len(pair.events_of(DatagramReceived, "client")) == 30
    for conn in (client, server):
        sizes = conn.queue_sizes()
        for name in ("peer_cids", "local_cids"):  # tables bounded by the peer's limit
            assert 1 <= sizes.pop(name) <= 8
        assert sizes == dict.fromkeys(sizes, 0), sizes
    assert pair.client_endpoint.next_event() is None
    assert pair.server_endpoint.next_event() is None


# -- version negotiation (RFC 9000 §6.2, RFC 9368 §2.1, §4) ----------------------------------


def test_version_negotiation_listing_only_v2_reconnects_in_v2() -> None:
    # a client configured for v1 then v2, a server that only speaks v2: the server
    # answers v1 with Version Negotiation listing v2, which is a version we support
    pair = make_pair(
        client_kwargs={"supported_versions": (V1, V2)}, server_kwargs={"supported_versions": (V2,)}
    )
    pair.handshake()
    assert pair.client.version == pair.server.version == V2
    assert not _terminations(pair, "client")
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"after version negotiation", end_stream=True)
    pair.run(lambda: pair.stream_done(sid))
    peer = pair.client.peer_params
    assert peer is not None and peer.version_information is not None
    assert peer.version_information.chosen_version == V2


def test_forged_version_negotiation_is_detected_as_a_downgrade() -> None:
    # The server speaks v1 and v2; an attacker forges a Version Negotiation listing only
    # v2 before the server answers. The client retries in v2, and the server's Version
    # Information shows it would have chosen v1: VERSION_NEGOTIATION_ERROR (§4).
    pair = make_pair(drop_first=1)  # the first Initial never reaches the server
    client = pair.client
    pair.net.step()
    vn = encode_version_negotiation(client.host_cid, client.original_dcid, [V2, 0x1A2A3A4A])
    pair.client_endpoint.receive_datagram(vn, SERVER_ADDR, pair.net.now)
    assert client.version == V2 and client.state is ConnectionState.HANDSHAKE
    pair.run(lambda: bool(_terminations(pair, "client")), max_time=10)
    term = _terminations(pair, "client")[0]
    assert term.error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR
    assert not term.by_peer


def test_only_one_version_negotiation_is_acted_on() -> None:
    pair = make_pair(drop_first=1)
    client = pair.client
    pair.net.step()
    first = encode_version_negotiation(client.host_cid, client.original_dcid, [V2])
    pair.client_endpoint.receive_datagram(first, SERVER_ADDR, pair.net.now)
    assert client.version == V2
    second = encode_version_negotiation(client.host_cid, client.original_dcid, [V1])
    pair.client_endpoint.receive_datagram(second, SERVER_ADDR, pair.net.now)
    assert client.version == V2 and client.state is ConnectionState.HANDSHAKE


def test_version_negotiation_with_wrong_connection_ids_is_ignored() -> None:
    pair = make_pair(drop_first=1)
    client = pair.client
    pair.net.step()
    wrong = encode_version_negotiation(client.host_cid, b"\x00" * 8, [V2])
    pair.client_endpoint.receive_datagram(wrong, SERVER_ADDR, pair.net.now)
    assert client.version == V1


def test_server_rejects_a_chosen_version_that_is_not_the_one_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = HandshakeDriver._make_transport_parameters

    def lying(self: HandshakeDriver) -> TransportParameters:
        params = original(self)
        if not self.is_client:
            return params
        return dataclasses.replace(params, version_information=VersionInformation(V2, (V2,)))

    monkeypatch.setattr(HandshakeDriver, "_make_transport_parameters", lying)
    pair = make_pair()  # the client speaks v1 but claims v2 as its Chosen Version
    pair.run(lambda: bool(_terminations(pair, "client")), max_time=10)
    term = _terminations(pair, "client")[0]
    assert term.by_peer and term.error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR


# -- stateless reset (RFC 9000 §10.3.1) ------------------------------------------------------


def test_stateless_reset_tokens_are_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = _established()
    pair.net.settle(0.5)
    client = pair.client
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(quic.cid.hmac, "compare_digest", compare)
    active = client.cids.peer[client.cids.peer_active_sequence].reset_token
    in_use = client.cids.peer_active_sequence
    unused = [e.reset_token for s, e in client.cids.peer.items() if s != in_use]
    assert active is not None and unused and unused[0] is not None
    # the token of an ID we never used is not a reset (§10.3.1)
    junk = b"\x40" + client.host_cid + bytes(30)  # routed to the client, undecryptable
    pair.client_endpoint.receive_datagram(junk + unused[0], SERVER_ADDR, pair.net.now)
    assert client.state is ConnectionState.CONNECTED
    assert calls and all(b == unused[0] for _, b in calls)
    pair.client_endpoint.receive_datagram(junk + active, SERVER_ADDR, pair.net.now)
    assert client.state is ConnectionState.DRAINING
    pair.pump()
    assert _terminations(pair, "client")[-1].reason_phrase == "stateless reset"


def test_no_quic_event_type_is_returned_by_an_entry_point() -> None:
    pair = _established()
    conn = pair.client
    now = pair.net.now
    assert conn.receive_datagram(b"\x40" + bytes(40), SERVER_ADDR, now) is None  # type: ignore[func-returns-value]
    assert conn.handle_timer(now) in (True, False)  # whether a send may be owed
    out = conn.datagrams_to_send(now)
    assert all(not isinstance(item, QuicEvent) for item in out)
