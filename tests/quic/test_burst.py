"""Many idle connections woken at once (the 1,000-session burst of issue 10), in memory.

Four findings, each shown at N and 4N connections (counts, not times):

* a peer that reads nothing for several PTOs (overloaded by the burst) while only small
  packets are outstanding set off the DPLPMTUD black-hole fallback on every connection
  (PTO expiries counted as evidence), and each then searched again with full-sized
  probes — more datagrams into the very buffers that overflowed. The PLPMTU now stays
  (RFC 8899 §4.3: a black hole drops packets larger than the base);
* a connection that returned datagrams stayed pending, so every transmit served the
  previous transmit's connections a second, empty time: now only one that stopped at
  its cap of datagrams per call is served again at once;
* each PTO of a connection with one small request outstanding sent two probes (two
  PINGs the overloaded peer must read and acknowledge): now one while less than a
  datagram is in flight (RFC 9002 §6.2.4: "at least one", "up to two");
* the response that ends an exchange (its FIN, on a stream whose FIN we sent) was
  acknowledged at the ACK timer, max_ack_delay later: one more wake-up and transmit per
  request, and 25 ms more for the responder's PTO to race. Now at once (RFC 9000
  §13.2.1: within max_ack_delay) — only on a stream we opened: the FIN that ends a
  stream the peer opened keeps the usual delay (acknowledging a browser's CONNECT-stream
  FIN at once made Chromium report "Connection lost" instead of our close capsule).
"""

from __future__ import annotations

import pytest

from quic.conn_keys import APPLICATION
from quic.conn_pmtu import PmtuState
from quic.connection import QuicConnection
from quic.endpoint import QuicEndpoint
from quic.events import StreamDataReceived
from tests.support.quicpair import SERVER_ADDR, Pair, client_config, make_pair

N = 8


def _idle_pair(n: int) -> tuple[Pair, list[QuicConnection]]:
    """``n`` client connections to one server, handshakes done and DPLPMTUD settled."""
    pair = make_pair()
    conns = [pair.client] + [
        pair.client_endpoint.connect(SERVER_ADDR, client_config(), pair.net.now)
        for _ in range(n - 1)
    ]
    servers = pair.server_endpoint

    def settled() -> bool:
        everyone = [*conns, *servers.connections]
        return len(servers.connections) == n and all(
            c.handshake_complete and c.pmtu.state is PmtuState.SEARCH_COMPLETE for c in everyone
        )

    pair.run(settled, max_time=30)
    assert all(c.max_datagram_size == 1452 for c in conns)
    pair.net.settle(2.0)  # idle: keys rested, nothing outstanding
    return pair, conns


def _silence(n: int) -> tuple[Pair, list[QuicConnection], int]:
    """Every client writes 64 bytes at once and the server reads nothing for 2 s: the
    pair, the clients' connections and the datagrams they sent meanwhile."""
    pair, conns = _idle_pair(n)
    link = pair.net.link(("127.0.0.2", 50000), SERVER_ADDR)
    sent_before = link.sent
    link.loss = 1.0  # what a server that cannot keep up amounts to for the clients
    for conn in conns:
        sid = conn.create_stream()
        conn.send_stream_data(sid, b"x" * 64, end_stream=True)
    pair.net.settle(2.0)
    return pair, conns, link.sent - sent_before


@pytest.mark.parametrize("n", [N, 4 * N])
def test_a_small_request_unanswered_costs_one_probe_per_pto(n: int) -> None:
    _, conns, sent = _silence(n)
    ptos = sum(c.recovery.pto_count for c in conns)
    assert ptos >= 3 * n  # PTOs fired on every connection
    # the request and one probe per PTO (before: two per PTO, 11 instead of 6 each)
    assert sent == n + ptos


def _silent_server_burst(n: int) -> tuple[list[QuicConnection], int]:
    """:func:`_silence`, then the server catches up. The clients' connections and the
    datagrams they sent in all."""
    pair, conns, silent = _silence(n)
    assert all(c.recovery.pto_count >= 3 for c in conns)  # PTOs fired on every one
    link = pair.net.link(("127.0.0.2", 50000), SERVER_ADDR)
    sent_before = link.sent
    link.loss = 0.0
    pair.run(lambda: all(c.recovery.ack_eliciting_in_flight == 0 for c in conns), max_time=60)
    return conns, silent + link.sent - sent_before


@pytest.mark.parametrize("n", [N, 4 * N])
def test_ptos_of_small_packets_keep_the_plpmtu_and_send_no_probes(n: int) -> None:
    conns, _ = _silent_server_burst(n)
    # before: every connection fell back to 1200 and searched again with 1452-byte probes
    assert [c.max_datagram_size for c in conns] == [1452] * n
    assert all(c.pmtu.black_holes == 0 for c in conns)
    assert all(c.pmtu.state is PmtuState.SEARCH_COMPLETE for c in conns)


def test_the_silent_burst_costs_datagrams_linear_in_connections() -> None:
    _, small = _silent_server_burst(N)
    _, large = _silent_server_burst(4 * N)
    assert large / small < 6  # linear: about 4


def _serves(endpoint: QuicEndpoint, now: float) -> int:
    endpoint.datagrams_to_send(now)
    return len(endpoint.last_flushed)


@pytest.mark.parametrize("n", [N, 4 * N])
def test_a_connection_that_sent_everything_is_not_served_again(n: int) -> None:
    pair, conns = _idle_pair(n)
    client = pair.client_endpoint
    now = pair.net.now
    for conn in conns:
        sid = conn.create_stream()
        conn.send_stream_data(sid, b"x" * 64, end_stream=True)
        client.wake(conn)
    assert _serves(client, now) == n  # each sends its datagram
    # before: all n served again, for nothing (2n serves per transmit's worth of work)
    assert _serves(client, now) == 0
    assert not client.has_pending_output


def test_a_connection_capped_by_one_call_is_served_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call stops at its cap of datagrams (256; 2 here) with more that may go: the
    connection stays pending and the next call sends on, as before."""
    pair, conns = _idle_pair(1)
    conn = conns[0]
    client = pair.client_endpoint
    monkeypatch.setattr("quic.conn_send._MAX_DATAGRAMS_PER_CALL", 2)
    sid = conn.create_stream()
    conn.send_stream_data(sid, b"y" * 5000)  # 4 full datagrams: within the window
    client.wake(conn)
    now = pair.net.now
    assert len(client.datagrams_to_send(now)) == 2
    assert conn.more_to_send and client.has_pending_output
    assert len(client.datagrams_to_send(now)) == 2  # served again without a wake
    for _ in range(10):
        if not client.has_pending_output:
            break
        client.datagrams_to_send(now)
    assert not conn.more_to_send and not client.has_pending_output
    assert conn.streams.send_buffered(sid) == 5000  # all sent, none acknowledged yet


def _exchanges(n: int) -> tuple[Pair, list[QuicConnection]]:
    """Every client sends a 64-byte request with FIN; the server answers each with 64
    bytes and FIN once the request is in; the pair is run until every client has the
    end of its response (and has sent what that made due at once)."""
    pair, conns = _idle_pair(n)
    for conn in conns:
        sid = conn.create_stream()
        conn.send_stream_data(sid, b"q" * 64, end_stream=True)

    def ended(side: str) -> list[StreamDataReceived]:
        return [e for e in pair.events_of(StreamDataReceived, side) if e.end_stream]

    pair.run(lambda: len(ended("server")) == n, max_time=10)
    for server in pair.server_endpoint.connections:
        server.send_stream_data(0, b"r" * 64, end_stream=True)
    pair.run(lambda: len(ended("client")) == n, max_time=10)
    return pair, conns


@pytest.mark.parametrize("n", [N, 4 * N])
def test_the_end_of_a_response_is_acknowledged_at_once(n: int) -> None:
    pair, conns = _exchanges(n)
    # before: every client held its ACK for max_ack_delay (n ACK timers still armed)
    assert [c for c in conns if c.acks.trackers[APPLICATION].deadline is not None] == []
    servers = pair.server_endpoint.connections
    pair.net.settle(0.015)  # one-way delay 10 ms, max_ack_delay 25 ms: the ACKs are there
    assert [s for s in servers if s.recovery.ack_eliciting_in_flight] == []


def test_the_end_of_a_request_waits_for_the_response_to_carry_its_ack() -> None:
    """The server's sending part is still open when the request ends: its ACK may
    ride on the response, so it is not sent alone at once."""
    pair, _ = _idle_pair(1)
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"q" * 64, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=10)
    assert pair.server.acks.trackers[APPLICATION].deadline is not None


def test_the_end_of_a_peer_unidirectional_stream_waits_for_the_ack_timer() -> None:
    """No reply can follow on a stream we cannot send on, but neither is it the end
    of an exchange of ours: its ACK keeps the usual delay (and can ride along)."""
    pair, _ = _idle_pair(1)
    sid = pair.server.create_stream(bidirectional=False)
    pair.server.send_stream_data(sid, b"u" * 64, end_stream=True)
    pair.run(lambda: pair.stream_done(sid, "client"), max_time=10)
    assert pair.client.acks.trackers[APPLICATION].deadline is not None


def test_the_end_of_a_peer_stream_we_answered_waits_for_the_ack_timer() -> None:
    """The client opens a stream, the server answers with FIN, then the client's FIN
    ends the stream (a browser closing its CONNECT stream after our close capsule): the
    stream is the peer's, so its ACK keeps the usual delay."""
    pair, _ = _idle_pair(1)
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"q" * 64)
    pair.run(lambda: bool(pair.events_of(StreamDataReceived)), max_time=10)
    pair.server.send_stream_data(sid, b"r" * 64, end_stream=True)
    pair.run(lambda: pair.stream_done(sid, "client"), max_time=10)
    pair.net.settle(0.1)  # the server's FIN acknowledged: its sending part is done
    pair.client.send_stream_data(sid, b"", end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=10)
    assert pair.server.acks.trackers[APPLICATION].deadline is not None
