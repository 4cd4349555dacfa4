"""The endpoint's serve leaves unbuilt a pending connection that owes nothing
(:func:`quic.endpoint_batch.quiet`, issue 10: a third of the builds of a burst of short
exchanges wrote nothing): the skip agrees with what a build would have written, the
connection's deadline is still filed and its ACKs still leave within max_ack_delay
(RFC 9000 §13.2.1), and a closing connection is always built (RFC 9000 §10.2)."""

from __future__ import annotations

from typing import Any

import pytest

import quic.endpoint as endpoint_module
from quic.conn_send import SendScheduler
from quic.connection import QuicConnection
from quic.endpoint_batch import quiet
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair


def _counting_builds(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Patch ``SendScheduler.build``; one entry per call (True: the client's)."""
    calls: list[bool] = []
    original = SendScheduler.build

    def build(self: SendScheduler, now: float, version: int) -> Any:
        calls.append(self._is_client)
        return original(self, now, version)

    monkeypatch.setattr(SendScheduler, "build", build)
    return calls


def _ready_pair(seed: int = 3) -> Pair:
    pair = make_pair(seed=seed)
    pair.handshake()
    pair.net.run(max_time=1.0)  # the handshake's last ACKs: nothing owed on either side
    return pair


def _request(pair: Pair, payload: bytes = b"q" * 64) -> bytes:
    """One 1-RTT datagram of the client's carrying ``payload`` on a new stream."""
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, payload, end_stream=True)
    pair.client_endpoint.wake(pair.client)
    out = pair.client_endpoint.datagrams_to_send(pair.net.now)
    assert len(out) == 1
    return out[0][0]


def test_quiet_agrees_with_the_build_under_loss_and_reordering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whenever the serve finds a connection quiet, a build at that moment writes
    nothing (checked by building it there); streams both ways over a lossy,
    reordering link still complete."""
    skipped: list[QuicConnection] = []

    def checked_quiet(conn: QuicConnection, now: float) -> bool:
        if not quiet(conn, now):
            return False
        assert conn.routed_datagrams_to_send(now) == []
        skipped.append(conn)
        return True

    monkeypatch.setattr(endpoint_module, "quiet", checked_quiet)
    pair = make_pair(seed=21, loss=0.08, jitter=0.004)
    pair.handshake()
    sids = []
    for size in (10, 64, 3_000, 40_000, 64, 200_000):
        sid = pair.client.create_stream()
        pair.client.send_stream_data(sid, bytes([sid & 0xFF]) * size, end_stream=True)
        sids.append((sid, size))
        back = pair.server.create_stream()
        pair.server.send_stream_data(back, b"r" * size, end_stream=True)
        sids.append((back, -size))
        pair.client_endpoint.wake(pair.client)
        pair.server_endpoint.wake(pair.server)
        pair.run(lambda s=sid, b=back: pair.stream_done(s) and pair.stream_done(b, "client"))
    for sid, size in sids:
        side = "server" if size > 0 else "client"
        assert len(pair.data[side][sid]) == abs(size)
    assert len(skipped) >= 20  # the skip was exercised, on both sides
    assert {conn.is_client for conn in skipped} == {True, False}


def test_a_connection_fed_an_ack_only_packet_is_not_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client fed the server's ACK-only packet owes nothing: the serve builds
    nothing for it, yet lists it as flushed (its session learns of the ACK's progress)
    and files its deadline (the endpoint's timer is the connection's)."""
    pair = _ready_pair()
    server = pair.server_endpoint
    now = pair.net.now
    server.receive_datagram(_request(pair), CLIENT_ADDR, now)
    deadline = pair.server.get_timer()
    assert deadline is not None
    ack = server.datagrams_to_send(deadline)  # nothing to answer with: its ACK, when due
    assert len(ack) == 1
    builds = _counting_builds(monkeypatch)
    client = pair.client_endpoint
    client.receive_datagram(ack[0][0], SERVER_ADDR, deadline)
    assert client.has_pending_output
    assert client.datagrams_to_send(deadline) == []
    assert builds == []  # quiet: no build
    assert client.last_flushed == [pair.client]
    assert not client.has_pending_output
    assert client.get_timer() == pair.client.get_timer()


def test_a_request_without_its_reply_waits_and_its_ack_leaves_by_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request fed to the server, its reply not written: no build when served at
    once (the ACK is not due); the ACK leaves when the endpoint's timer fires, within
    max_ack_delay of the request (RFC 9000 §13.2.1); once the reply is written, it is
    built."""
    pair = _ready_pair()
    server = pair.server_endpoint
    now = pair.net.now
    request = _request(pair)
    builds = _counting_builds(monkeypatch)
    server.receive_datagram(request, CLIENT_ADDR, now)
    assert server.datagrams_to_send(now) == []
    assert builds == []
    when = server.get_timer()
    assert when is not None and now < when <= now + 0.025 + 1e-9
    server.handle_timer(when)
    out = server.datagrams_to_send(when)
    assert len(out) == 1 and builds == [False]  # the ACK
    pair.pump()
    sid = next(iter(pair.data["server"]))
    pair.server.send_stream_data(sid, b"a" * 64, end_stream=True)
    server.wake(pair.server)
    assert len(server.datagrams_to_send(when)) == 1 and builds == [False, False]


def test_a_closing_connection_is_never_quiet() -> None:
    """A connection closed by its application owes its CONNECTION_CLOSE (RFC 9000
    §10.2): not quiet, and the serve sends it."""
    pair = _ready_pair()
    now = pair.net.now
    assert quiet(pair.client, now)
    pair.client.close(0, "done")
    assert not quiet(pair.client, now)
    pair.client_endpoint.wake(pair.client)
    assert len(pair.client_endpoint.datagrams_to_send(now)) == 1


def test_routing_changes_or_a_datagram_queued_are_never_quiet() -> None:
    """quiet() reads the connection IDs' routing changes inline (has_routing_changes(),
    without its call) and leaves the queued-datagram test to owes_nothing(): a
    connection with an issued or retired ID the endpoint has not routed yet, or a
    DATAGRAM frame queued, is not quiet; once routed or sent, it is again."""
    pair = _ready_pair()
    conn, now = pair.client, pair.net.now
    cids = conn.cids
    assert quiet(conn, now) and not cids.has_routing_changes()
    for name in ("_issued_cids", "_retired_cids"):
        getattr(cids, name).append(b"\x01" * 8)
        assert cids.has_routing_changes() and not quiet(conn, now)
        getattr(cids, name).clear()
        assert not cids.has_routing_changes() and quiet(conn, now)
    conn.send_datagram(b"d")
    assert conn.datagrams.pending and not quiet(conn, now)
    pair.client_endpoint.wake(conn)
    assert len(pair.client_endpoint.datagrams_to_send(now)) == 1
    assert quiet(conn, now)


def test_a_timer_activation_computes_the_deadline_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection whose ACK timer fired is served at the next send, which files its
    deadline: ``handle_timer`` leaves it unfiled rather than computing it too (the
    deadline once per activation), and the endpoint's timer still is the
    connection's afterwards."""
    pair = _ready_pair()
    server = pair.server_endpoint
    now = pair.net.now
    server.receive_datagram(_request(pair), CLIENT_ADDR, now)
    assert server.datagrams_to_send(now) == []
    when = server.get_timer()
    assert when is not None
    asked: list[QuicConnection] = []
    original = QuicConnection.get_timer

    def get_timer(self: QuicConnection) -> float | None:
        asked.append(self)
        return original(self)

    monkeypatch.setattr(QuicConnection, "get_timer", get_timer)
    server.handle_timer(when)
    assert asked == []  # owed: filed after its build, not here
    assert len(server.datagrams_to_send(when)) == 1  # the ACK
    assert server.get_timer() == original(pair.server)
    assert asked == [pair.server]  # once for the whole activation
