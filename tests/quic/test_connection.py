"""In-memory QUIC connections on a fake clock: handshake, streams, datagrams, close."""

from __future__ import annotations

import hashlib
import random

import pytest

from quic.connection import ConnectionState
from quic.errors import TransportErrorCode
from quic.events import (
    ConnectionTerminated,
    DatagramReceived,
    HandshakeCompleted,
    StopSendingReceived,
    StreamReset,
)
from tests.support.quicpair import make_pair


def test_handshake_completes_in_one_round_trip() -> None:
    pair = make_pair()
    pair.run(lambda: pair.client.handshake_complete)
    # 10 ms one-way delay: the client completes after one round trip
    assert pair.net.now - 1000.0 == pytest.approx(0.020, abs=0.002)
    pair.handshake()
    assert pair.client.alpn_protocol == "test"
    assert pair.server.alpn_protocol == "test"
    assert pair.events_of(HandshakeCompleted, "client")
    assert pair.events_of(HandshakeCompleted, "server")
    pair.run(lambda: pair.client.handshake_confirmed, max_time=1)
    assert pair.client.spaces[0].discarded and pair.client.spaces[1].discarded
    assert pair.server.spaces[0].discarded and pair.server.spaces[1].discarded


def test_bidirectional_stream_echo_and_fin() -> None:
    pair = make_pair()
    pair.handshake()
    sid = pair.client.create_stream()
    payload = bytes(range(256)) * 40
    pair.client.send_stream_data(sid, payload, end_stream=True)
    pair.run(lambda: pair.stream_done(sid))
    assert bytes(pair.data["server"][sid]) == payload
    pair.server.send_stream_data(sid, b"reply", end_stream=True)
    pair.run(lambda: pair.stream_done(sid, "client"))
    assert bytes(pair.data["client"][sid]) == b"reply"


@pytest.mark.parametrize("seed", [1, 2])
def test_10mb_stream_under_loss_reordering_duplication(seed: int) -> None:
    pair = make_pair(seed=seed, loss=0.10, jitter=0.004, duplicate=0.02)
    pair.handshake()
    rng = random.Random(seed)
    payload = rng.randbytes(10 * 1024 * 1024)
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, payload, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=600)
    data = pair.data["server"][sid]
    assert hashlib.sha256(data).digest() == hashlib.sha256(payload).digest()
    assert pair.client.last_internal_error is None and pair.server.last_internal_error is None
    assert pair.client.state is ConnectionState.CONNECTED


def test_thousand_short_streams() -> None:
    """1,000 request/response streams through a 128-stream concurrency limit."""
    pair = make_pair(seed=3, loss=0.02)
    pair.handshake()
    sent: dict[int, bytes] = {}
    answered: set[int] = set()

    def progress() -> bool:
        while len(sent) < 1000 and pair.client.streams.manager.can_open(True):
            sid = pair.client.create_stream()
            sent[sid] = f"request {len(sent)}".encode()
            pair.client.send_stream_data(sid, sent[sid], end_stream=True)
        for sid in pair.fin["server"] - answered:
            answered.add(sid)
            pair.server.send_stream_data(sid, b"re: " + pair.data["server"][sid], end_stream=True)
        return len(pair.fin["client"]) == 1000

    pair.run(progress, max_time=120)
    assert pair.fin["client"] == set(sent)
    for sid, request in sent.items():
        assert bytes(pair.data["client"][sid]) == b"re: " + request
    # every stream finished on both sides and was forgotten once its FIN was acknowledged
    pair.run(max_time=1)
    assert len(pair.client.streams.manager.streams) == 0
    assert len(pair.server.streams.manager.streams) == 0


def test_server_initiated_and_unidirectional_streams() -> None:
    pair = make_pair()
    pair.handshake()
    uni = pair.client.create_stream(bidirectional=False)
    pair.client.send_stream_data(uni, b"uni", end_stream=True)
    sbidi = pair.server.create_stream()
    assert sbidi & 0x3 == 0x1
    pair.server.send_stream_data(sbidi, b"from server", end_stream=True)
    pair.run(lambda: pair.stream_done(uni) and pair.stream_done(sbidi, "client"))
    assert uni & 0x3 == 0x2
    assert bytes(pair.data["server"][uni]) == b"uni"
    assert bytes(pair.data["client"][sbidi]) == b"from server"


def test_reset_and_stop_sending_reach_the_peer() -> None:
    pair = make_pair()
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"partial")
    pair.run(lambda: sid in pair.data["server"])
    pair.client.reset_stream(sid, 77)
    pair.run(lambda: bool(pair.events_of(StreamReset)))
    reset = pair.events_of(StreamReset)[0]
    assert (reset.stream_id, reset.error_code, reset.final_size) == (sid, 77, 7)
    sid2 = pair.client.create_stream()
    pair.client.send_stream_data(sid2, b"x")
    pair.run(lambda: sid2 in pair.data["server"])
    pair.server.stop_stream(sid2, 99)
    pair.run(lambda: bool(pair.events_of(StopSendingReceived, "client")))
    assert pair.events_of(StopSendingReceived, "client")[0].error_code == 99
    # the client's sending half was reset with the same code (RFC 9000 §3.5)
    pair.run(lambda: any(e.stream_id == sid2 for e in pair.events_of(StreamReset)))
    assert [e.error_code for e in pair.events_of(StreamReset) if e.stream_id == sid2] == [99]


def test_datagrams_both_ways() -> None:
    pair = make_pair()
    pair.handshake()
    assert pair.client.max_datagram_payload > 1000
    for i in range(10):
        pair.client.send_datagram(b"ping %d" % i)
    pair.run(lambda: len(pair.events_of(DatagramReceived)) == 10)
    pair.server.send_datagram(b"pong")
    pair.run(lambda: bool(pair.events_of(DatagramReceived, "client")))
    assert sorted(e.data for e in pair.events_of(DatagramReceived)) == sorted(
        b"ping %d" % i for i in range(10)
    )
    with pytest.raises(ValueError):
        pair.client.send_datagram(bytes(5000))


def test_datagram_not_negotiated_is_refused_locally() -> None:
    pair = make_pair(server_kwargs={"max_datagram_frame_size": None})
    pair.handshake()
    with pytest.raises(ValueError):
        pair.client.send_datagram(b"x")


def test_application_close_with_code_and_reason() -> None:
    pair = make_pair()
    pair.handshake()
    pair.client.close(error_code=42, reason="bye now")
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated)))
    term = pair.events_of(ConnectionTerminated)[0]
    assert (term.error_code, term.reason_phrase, term.is_application, term.by_peer) == (
        42,
        "bye now",
        True,
        True,
    )
    pair.run(max_time=5)
    assert pair.client.is_closed and pair.server.is_closed
    assert not pair.server_endpoint.connections and not pair.client_endpoint.connections


def test_idle_timeout_closes_silently() -> None:
    pair = make_pair(client_kwargs={"idle_timeout": 2.0})
    pair.handshake()
    start = pair.net.now
    pair.run(max_time=10)
    terms = pair.events_of(ConnectionTerminated, "client")
    assert terms and terms[0].idle_timeout
    assert pair.client.is_closed and pair.server.is_closed
    assert pair.net.now - start < 3.0


def test_stream_limit_violation_is_stream_limit_error() -> None:
    pair = make_pair(server_kwargs={"initial_max_streams_bidi": 2})
    pair.handshake()
    for _ in range(2):
        pair.client.send_stream_data(pair.client.create_stream(), b"ok")
    # a misbehaving client that ignores the server's MAX_STREAMS
    pair.client.streams.manager.on_max_streams(True, 10)
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"too many")
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated, "client")))
    term = pair.events_of(ConnectionTerminated, "client")[0]
    assert term.error_code == TransportErrorCode.STREAM_LIMIT_ERROR
    assert term.by_peer and not term.is_application


def test_flow_control_violation_is_flow_control_error() -> None:
    pair = make_pair(server_kwargs={"initial_max_stream_data": 1000})
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, bytes(100))
    stream = pair.client.streams.manager.get(sid)
    assert stream is not None and stream.send is not None
    stream.send.credit.max_data = 10**6  # ignore the server's limit
    pair.client.send_stream_data(sid, bytes(5000))
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated, "client")))
    term = pair.events_of(ConnectionTerminated, "client")[0]
    assert term.error_code == TransportErrorCode.FLOW_CONTROL_ERROR


def test_alpn_mismatch_closes_with_crypto_error() -> None:
    pair = make_pair(client_kwargs={"alpn_protocols": ["other"]})
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated, "client")), max_time=5)
    term = pair.events_of(ConnectionTerminated, "client")[0]
    assert term.error_code == 0x178  # CRYPTO_ERROR + no_application_protocol


def test_wrong_certificate_pin_fails_handshake() -> None:
    pair = make_pair(client_kwargs={"server_certificate_hashes": (bytes(32),)})
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated, "server")), max_time=5)
    term = pair.events_of(ConnectionTerminated, "server")[0]
    assert term.error_code == 0x100 + 42  # bad_certificate, sent by the client
    assert not pair.client.handshake_complete


def test_handshake_survives_lost_first_flights() -> None:
    pair = make_pair(drop_first=2)
    pair.handshake()
    assert pair.client.handshake_complete and pair.server.handshake_complete


def test_anti_amplification_limit() -> None:
    pair = make_pair()
    # drop everything from the client after its first datagram: the server may send
    # at most three times what it received (RFC 9000 §8.1)
    link = pair.net.link(("127.0.0.2", 50000), ("127.0.0.1", 4433))
    pair.net.step()
    link.loss = 1.0
    pair.run(max_time=3)
    received = pair.server.paths.bytes_received
    assert 0 < pair.server.paths.bytes_sent <= 3 * received


def test_key_update_initiated_by_client() -> None:
    pair = make_pair()
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed)
    pair.client.request_key_update()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"after update", end_stream=True)
    pair.run(lambda: pair.stream_done(sid))
    assert pair.server.spaces[2].write is not None
    assert pair.server.spaces[2].write.key_phase == 1
    pair.server.send_stream_data(sid, b"reply", end_stream=True)
    pair.run(lambda: pair.stream_done(sid, "client"))


def test_garbage_datagrams_are_ignored() -> None:
    pair = make_pair()
    pair.handshake()
    rng = random.Random(5)
    for _ in range(200):
        junk = rng.randbytes(rng.randrange(1, 1500))
        pair.server_endpoint.receive_datagram(junk, ("127.0.0.2", 50000), pair.net.now)
        pair.client_endpoint.receive_datagram(junk, ("127.0.0.1", 4433), pair.net.now)
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"still fine", end_stream=True)
    pair.run(lambda: pair.stream_done(sid))
    assert pair.server.state is ConnectionState.CONNECTED


def test_full_size_datagram_is_sent_despite_a_pending_ack() -> None:
    # Regression (found against aioquic): a DATAGRAM of max_datagram_payload bytes never
    # fit behind the ACK piggybacked on every ack-eliciting packet, so it was never sent
    # and each datagrams_to_send() call emitted 256 ACK-only packets instead.
    pair = make_pair()
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=1)
    client = pair.client
    assert client.acks.trackers[2].has_ranges()  # an ACK would ride along
    size = client.max_datagram_payload
    payloads = [bytes([i]) * size for i in range(3)]
    for payload in payloads:
        client.send_datagram(payload)
    out = client.datagrams_to_send(pair.net.now)
    assert 3 <= len(out) <= 4  # the datagrams (and at most one ACK-only packet)
    for data, _ in out:
        pair.server_endpoint.receive_datagram(data, ("127.0.0.2", 50000), pair.net.now)
    pair.pump()
    assert sorted(e.data for e in pair.events_of(DatagramReceived)) == payloads
    assert pair.server.state is ConnectionState.CONNECTED


def test_nothing_sendable_gives_at_most_one_ack_only_datagram() -> None:
    # A connection that wants to send but cannot place any ack-eliciting frame must not
    # spin out ACK-only packets (the flood seen against aioquic).
    pair = make_pair()
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=1)
    client = pair.client
    client.send_datagram(b"x" * client.max_datagram_payload)
    client.max_datagram_size -= 8  # the queued datagram can no longer fit any packet
    out = client.datagrams_to_send(pair.net.now)
    assert len(out) <= 1
    assert all(len(data) < 100 for data, _ in out)


def test_subsequent_key_update_waits_for_an_ack_of_the_current_phase() -> None:
    # RFC 9001 §6.1: no new key update before a packet sent with the current keys has
    # been acknowledged (two back-to-back updates would look like no update at all).
    pair = make_pair()
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed)
    client = pair.client
    client.request_key_update()
    with pytest.raises(RuntimeError, match="not acknowledged"):
        client.request_key_update()
    write = client.spaces[2].write
    assert write is not None and write.key_phase == 1
    sid = client.create_stream()
    client.send_stream_data(sid, b"phase one", end_stream=True)
    pair.run(lambda: pair.stream_done(sid) and not client.streams.send_buffered(sid))
    client.request_key_update()  # the phase-1 packet was acknowledged: allowed again
    write = client.spaces[2].write
    assert write is not None and write.key_phase == 0
    sid = client.create_stream()
    client.send_stream_data(sid, b"phase two", end_stream=True)
    pair.run(lambda: pair.stream_done(sid))
    assert bytes(pair.data["server"][sid]) == b"phase two"
